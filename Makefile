# Weir — the two commands a newcomer needs are `make run` and `make test`.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
CONFIG   ?= config/weir.yaml
FUZZTIME ?= 30s

.PHONY: all build run test check vet fmt race bench fuzz clean plugins

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/weir ./cmd/weir

run: build
	@echo "Weir is starting on $(CONFIG). In another terminal try:"
	@echo "  curl -i http://127.0.0.1:8080/hello"
	@echo "  curl -i http://127.0.0.1:8080/api/users/42"
	@echo "  curl -s http://127.0.0.1:9901/routes        # admin API"
	@echo "  curl -s -XPOST http://127.0.0.1:9901/reload  # reload (also: edit the file, or SIGHUP)"
	@echo "Ctrl-C drains and stops it."
	./bin/weir run -c $(CONFIG)

# The full suite; the reload hammer test runs under the race detector.
test:
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race -run 'Hammer|Reload|Shared' ./core/...

check: fmt vet test

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go') ); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Go micro-benchmarks with allocations, then the wrk comparison against nginx.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./core/... ./filters/... | tee bench/out-go.txt
	./bench/compare.sh

# Every SDK example built from source into sdk/out/<lang>-<example>.wasm; a missing toolchain
# is reported and skipped (WEIR_REQUIRE_ALL=1 makes it an error).
plugins:
	GO=$(GO) ./sdk/build.sh

# Every fuzz target for FUZZTIME each.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
