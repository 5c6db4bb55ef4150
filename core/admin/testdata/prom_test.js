// Tests of the console's Prometheus parsing and derived figures (console/prom.js), run by
// node from TestConsoleJS.
"use strict";
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const test = require("node:test");
const P = require("../console/prom.js");

const read = (f) => P.parse(fs.readFileSync(path.join(__dirname, f), "utf8"));
const near = (got, want, msg) => assert.ok(Math.abs(got - want) < 1e-9, `${msg}: got ${got}, want ${want}`);

test("parse reads samples, labels, escapes and special values", () => {
  const s = P.parse([
    "# HELP x_total a counter",
    "# TYPE x_total counter",
    'x_total{a="1",b="q\\"uote\\\\ and \\n newline"} 3 1700000000000',
    "y 1.5e3",
    'z{le="+Inf"} +Inf',
    "n NaN",
    "neg -Inf",
    'spaced { a = "1" , } 2',
    "",
    "# EOF",
  ].join("\n"));
  assert.equal(s.types.x_total, "counter");
  assert.equal(s.errors, 0);
  assert.deepEqual(s.samples[0], { name: "x_total", labels: { a: "1", b: 'q"uote\\ and \n newline' }, value: 3 });
  assert.equal(s.samples[1].value, 1500);
  assert.equal(s.samples[2].value, Infinity);
  assert.ok(Number.isNaN(s.samples[3].value));
  assert.equal(s.samples[4].value, -Infinity);
  assert.deepEqual(s.samples[5], { name: "spaced", labels: { a: "1" }, value: 2 });
});

test("parse skips and counts lines it cannot read", () => {
  const bad = [
    "x{a=\"1\" 2",       // unterminated label set
    "x{a=1} 2",          // unquoted value
    "x{a=\"1} 2",        // unterminated string
    "1x 2",              // name starting with a digit
    "x",                 // no value
    "x 12abc",           // not a number
    "x 1 2 3",           // too many fields
    "{a=\"1\"} 2",       // no name
  ];
  const s = P.parse(bad.concat(["ok 1"]).join("\r\n"));
  assert.equal(s.errors, bad.length);
  assert.deepEqual(s.samples, [{ name: "ok", labels: {}, value: 1 }]);
});

test("quantile interpolates like histogram_quantile", () => {
  const bs = [{ le: 0.1, count: 10 }, { le: 1, count: 20 }, { le: Infinity, count: 20 }];
  near(P.quantile(0.5, bs), 0.1, "p50 at a bucket's top");
  near(P.quantile(0.25, bs), 0.05, "first bucket starts at 0");
  near(P.quantile(0.75, bs), 0.55, "inside the second bucket");
  const tail = [{ le: 0.1, count: 1 }, { le: Infinity, count: 10 }];
  near(P.quantile(0.99, tail), 0.1, "+Inf bucket answers the highest finite bound");
  assert.ok(Number.isNaN(P.quantile(0.5, [{ le: 1, count: 0 }, { le: Infinity, count: 0 }])), "nothing observed");
  assert.ok(Number.isNaN(P.quantile(0.5, [])), "no buckets");
  assert.ok(Number.isNaN(P.quantile(0.5, [{ le: 1, count: 3 }])), "no +Inf bucket");
});

test("window: rates, quantiles from bucket deltas, and the 5xx share", () => {
  const a = read("scrape1.prom"), b = read("scrape2.prom");
  assert.equal(a.errors + b.errors, 0);
  const w = P.window(b, a, 10, "weir_requests_total", "weir_request_duration_seconds", "route");
  assert.deepEqual(Object.keys(w).sort(), ["", "api", "hello"]);
  assert.equal(w.hello.total, 300);
  near(w.hello.rate, 20, "hello rate");
  near(w.hello.errors, 0.05, "hello 5xx share");
  // Deltas: 0 ≤1ms, 150 ≤10ms, 198 ≤100ms, 200 in all.
  near(w.hello.p50, 0.001 + 0.009 * 100 / 150, "hello p50");
  near(w.hello.p99, 0.1, "hello p99");
  // No requests on api between the reads: a rate of 0, and no latency or error figure.
  assert.equal(w.api.rate, 0);
  assert.ok(Number.isNaN(w.api.p50) && Number.isNaN(w.api.errors));
  assert.equal(w[""].total, 3);

  const up = P.window(b, a, 10, "", "weir_upstream_duration_seconds", "upstream");
  near(up.api.rate, 3, "upstream rate from the histogram's count");
  near(up.api.p50, 0.0075, "upstream p50");
  near(up.api.p99, 0.01, "upstream p99 in the +Inf bucket");
  assert.ok(Number.isNaN(up.api.errors));
  // With the attempts counter, a 5xx answer and no answer at all both count as failed.
  const att = P.window(b, a, 10, "weir_upstream_requests_total", "weir_upstream_duration_seconds", "upstream");
  near(att.api.rate, 3, "upstream attempts per second");
  near(att.api.errors, 4 / 30, "upstream failed share");
});

test("window: the first read has totals only; a restart counts from zero", () => {
  const a = read("scrape1.prom"), b = read("scrape2.prom");
  const first = P.window(a, null, 0, "weir_requests_total", "weir_request_duration_seconds", "route");
  assert.equal(first.hello.total, 100);
  assert.ok(Number.isNaN(first.hello.rate));
  // b then a: the counters went down, so the gateway restarted and a's values are all new.
  const w = P.window(a, b, 10, "weir_requests_total", "weir_request_duration_seconds", "route");
  near(w.hello.rate, 10, "rate after a reset");
  near(w.hello.p50, 0.001 * 50 / 50, "p50 after a reset uses the new buckets whole");
});

test("window over a histogram alone, with exponent-written bounds", () => {
  const a = read("scrape1.prom"), b = read("scrape2.prom");
  const w = P.window(b, a, 10, "", "weir_plugin_call_duration_seconds", "plugin");
  // Deltas: 20 ≤10µs, 30 ≤25µs, 30 in all.
  near(w.hello.rate, 3, "calls per second");
  near(w.hello.p50, 1e-5 * 15 / 20, "p50");
  near(w.hello.p99, 1e-5 + 1.5e-5 * (29.7 - 20) / 10, "p99");
});

test("sum groups by labels", () => {
  const b = read("scrape2.prom");
  assert.deepEqual(P.sum(b, "weir_ratelimit_decisions_total", ["route", "decision"]), { "hello\u0000allowed": 7 });
  assert.deepEqual(P.sum(b, "weir_requests_total", ["code"]), { "2xx": 300, "5xx": 10, "4xx": 3 });
});
