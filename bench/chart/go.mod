module github.com/weir-gateway/weir/bench/chart

go 1.26

require golang.org/x/image v0.33.0
