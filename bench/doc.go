// Package bench holds the gateway's benchmarks that span packages: the request path through
// the engine with each built-in filter and a WebAssembly plugin (pipeline_test.go). The load
// harness lives beside it: compare.sh and soak.sh with their helpers backend/, miniproxy/,
// probe/ and chart/; see README.md.
package bench
