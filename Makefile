# Weir — the two commands a newcomer needs are `make run` and `make test`.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
CONFIG   ?= config/weir.yaml
FUZZTIME ?= 30s

.PHONY: all build run test check vet fmt deps tidy deadcode race bench soak fuzz clean plugins

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/weir ./cmd/weir

run: build
	@echo "Weir is starting on $(CONFIG). In another terminal try:"
	@echo "  curl -i http://127.0.0.1:8080/hello"
	@echo "  curl -i http://127.0.0.1:8080/api/users/42"
	@echo "  curl -ik --http2 https://localhost:8443/hello   # the TLS listener (demo certificate)"
	@echo "  curl -i http://127.0.0.1:8081/hello             # redirect_https: 308 to :8443"
	@echo "  curl -s http://127.0.0.1:9901/routes        # admin API"
	@echo "  open http://127.0.0.1:9901/console/ in a browser   # web console"
	@echo "  curl -s -XPOST -H 'Content-Type: application/json' http://127.0.0.1:9901/reload  # reload (also: edit the file, or SIGHUP)"
	@echo "Ctrl-C drains and stops it."
	./bin/weir run -c $(CONFIG)

# The full suite; the reload hammer test runs under the race detector. The race stage runs even
# when the first fails, so one run reports both.
test:
	@rc=0; \
	$(GO) test -count=1 ./... || rc=1; \
	$(GO) test -count=1 -race -run 'Hammer|Reload|Shared' ./core/... ./plugins/... || rc=$$((rc + 2)); \
	case $$rc in 0) ;; 1) echo "make test: the suite failed (the race stage passed)"; exit 1 ;; \
	2) echo "make test: the race stage failed (the suite passed)"; exit 1 ;; \
	*) echo "make test: the suite and the race stage failed"; exit 1 ;; esac

check: fmt vet deps tidy deadcode test

# The dependency rule (DESIGN.md): core imports nothing from filters/ or plugins/, config nothing
# from core, filters neither each other nor the engine or the plugin host. Run first by check so
# a broken arrow is named before the long test run.
deps:
	$(GO) test -count=1 -run 'TestForbidden|TestDependencyRule' ./core/filter

# go.mod and go.sum list exactly what the code imports: direct requirements are not marked
# indirect, and nothing unused stays.
tidy:
	$(GO) mod tidy -diff

# Every function in a package that a binary of this module links (cmd/weir, the bench tools) is
# reachable from a main. Code only tests use belongs in a _test.go file or in a test-support
# package no binary links (core/testkit, filters/internal/filtertest, plugins/wasmhost/wasmtest),
# which deadcode then never sees. The tool's version is pinned by go.mod's tool directive, so
# after the first download it runs from the module cache.
#
# DEADCODE_ALLOW lists, as file:function, what is kept on purpose until it is wired in; an entry
# that is no longer reported fails the check as well, so the list only shrinks.
#   plugins/wasmhost IsTimeout: the guest API's timeout test, beside IsStale, for the plugin ABIs.
DEADCODE_ALLOW := plugins/wasmhost/guest.go:IsTimeout

deadcode:
	@mains=$$($(GO) list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./...) || exit 1; \
	raw=$$($(GO) tool deadcode $$mains) || exit 1; \
	found=$$(printf '%s\n' "$$raw" | sed -E 's/:[0-9]+:[0-9]+: unreachable func: /:/'); \
	allow=" $(strip $(DEADCODE_ALLOW)) "; status=0; \
	for f in $$found; do case "$$allow" in *" $$f "*) ;; *) \
		echo "unreachable from every main: $$f (delete it, or move test-only code into a _test.go file)"; status=1;; esac; done; \
	for a in $$allow; do case " $$(echo $$found) " in *" $$a "*) ;; *) \
		echo "$$a is no longer reported: drop it from DEADCODE_ALLOW"; status=1;; esac; done; \
	exit $$status

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go') ); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Go micro-benchmarks with allocations (router, pipeline, every filter, plugin calls), then the
# wrk comparison against nginx, HAProxy and a bare fasthttp proxy (bench/README.md): it writes
# bench/RESULTS.md and bench/results.png; the scale figures (10,000 routes, 1,000 upstreams: load,
# reload, RSS, latency while reloading; startup with 10 plugins, bench/scale_test.go); then the CPU
# each front-door filter adds per request through the gateway (bench/filters.sh, on the bin/weir
# compare.sh built; needs redis-server).
# Raw output goes to bench/out/ (not committed).
bench:
	@mkdir -p bench/out
	$(GO) test -run '^$$' -bench . -benchmem ./core/... ./filters/... ./plugins/... ./bench/... | tee bench/out/go-bench.txt
	cd bench/chart && $(GO) test ./...
	$(GO) test -count=1 -run 'TestScale$$|TestStartupPlugins$$' -v ./bench -scale | tee bench/out/scale.txt
	./bench/compare.sh
	./bench/idle.sh | tee bench/out/idle.txt
	./bench/overhead.sh | tee bench/out/overhead.txt
	NO_BUILD=1 ./bench/filters.sh

# Long-running checks under load: 1,000 reloads, a backend killed and restored, 1,000 slow
# clients (bench/README.md). Each prints a one-line verdict; any FAIL fails the target. Then
# 1,000 clients stall their bodies on a plugin route while normal traffic must keep >= 99%
# success (make test runs it with 100 for 2s). Last, rate-limit accuracy: 64 clients for 10 s, local (±1%),
# two gateways on one Redis (±2%), Redis killed mid-run (needs redis-server). Then the breaker's
# open answers (p99 < 1 ms over 20,000) and the mirror beside a down or slow shadow (client p99
# within 10% of an unmirrored route in the same run, 20,000 requests each). Last, 1,000 WebSocket
# tunnels open at once, each echoing, then drained with nothing lost (make test runs 50).
soak: build
	./bench/soak.sh
	$(GO) test -count=1 -run 'TestSlowBodyLoad$$' -v ./core/engine -slow-bodies=1000 -load-for=10s
	$(GO) test -count=1 -run 'TestRatelimitAccuracy$$' -v ./core/engine -ratelimit-soak
	$(GO) test -count=1 -run 'TestBreakerBackendKilled$$|TestMirrorShadowDownOrSlow$$' -v ./core/engine -breaker-soak -mirror-soak
	$(GO) test -count=1 -run 'TestWebSocketManyTunnels$$' -v ./core/engine -websocket-soak=1000

# Every SDK example built from source into sdk/out/<lang>-<example>.wasm by `weir plugin build`;
# a missing toolchain is reported and skipped (WEIR_REQUIRE_ALL=1 makes it an error).
plugins: build
	GO=$(GO) WEIR=$(CURDIR)/bin/weir ./sdk/build.sh

# Every fuzz target for FUZZTIME each; a failing input becomes testdata/fuzz/<Target>/regression-NNN
# in its package, and the target fails listing them (bench/fuzz.sh).
fuzz:
	FUZZTIME=$(FUZZTIME) ./bench/fuzz.sh

clean:
	rm -rf bin
