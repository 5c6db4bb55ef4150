module github.com/weir-gateway/weir/sdk/go

go 1.24
