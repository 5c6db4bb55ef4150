// Weir console: Prometheus text parsing and the figures derived from two scrapes. Pure
// functions only (no DOM, no fetch), so that node can test them (core/admin/testdata).
"use strict";

var WeirProm = (function () {
  // parse reads the Prometheus text exposition format (and OpenMetrics' subset of it) into
  // {types: {family: "counter"|"histogram"|…}, samples: [{name, labels, value}]}. Lines it
  // cannot read are skipped and counted in errors, so one odd line never blanks the console.
  function parse(text) {
    var out = { types: {}, samples: [], errors: 0 };
    var lines = String(text).split("\n");
    for (var i = 0; i < lines.length; i++) {
      var line = lines[i].replace(/\r$/, "");
      if (line.trim() === "") continue;
      if (line.charAt(0) === "#") {
        var m = /^#\s*TYPE\s+(\S+)\s+(\S+)/.exec(line);
        if (m) out.types[m[1]] = m[2].toLowerCase();
        continue;
      }
      var s = parseSample(line);
      if (s) out.samples.push(s);
      else out.errors++;
    }
    return out;
  }

  // parseSample reads `name{label="value",…} value [timestamp]`, or null.
  function parseSample(line) {
    var i = 0, n = line.length;
    while (i < n && /[A-Za-z0-9_:]/.test(line.charAt(i))) i++;
    if (i === 0 || /[0-9]/.test(line.charAt(0))) return null;
    var name = line.slice(0, i);
    var labels = {};
    while (line.charAt(i) === " " || line.charAt(i) === "\t") i++;
    if (line.charAt(i) === "{") {
      i++;
      for (;;) {
        while (line.charAt(i) === " " || line.charAt(i) === ",") i++;
        if (i >= n) return null;
        if (line.charAt(i) === "}") { i++; break; }
        var ls = i;
        while (i < n && /[A-Za-z0-9_]/.test(line.charAt(i))) i++;
        var lname = line.slice(ls, i);
        while (line.charAt(i) === " ") i++;
        if (lname === "" || line.charAt(i) !== "=") return null;
        i++;
        while (line.charAt(i) === " ") i++;
        if (line.charAt(i) !== '"') return null;
        i++;
        var v = "";
        for (;;) {
          if (i >= n) return null;
          var c = line.charAt(i);
          if (c === '"') { i++; break; }
          if (c === "\\") {
            var e = line.charAt(i + 1);
            v += e === "n" ? "\n" : e; // \\ \" \n are the only escapes
            i += 2;
            continue;
          }
          v += c;
          i++;
        }
        labels[lname] = v;
      }
    }
    var rest = line.slice(i).trim().split(/\s+/);
    if (rest.length < 1 || rest.length > 2 || rest[0] === "") return null;
    var value = parseValue(rest[0]);
    if (value === null) return null;
    return { name: name, labels: labels, value: value };
  }

  function parseValue(s) {
    switch (s) {
      case "+Inf": case "Inf": return Infinity;
      case "-Inf": return -Infinity;
      case "NaN": return NaN;
    }
    if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) return null;
    return Number(s);
  }

  // sum adds the samples named name by the label keys given, into {"v1\u0000v2": total}.
  function sum(scrape, name, keys) {
    var out = {};
    scrape.samples.forEach(function (s) {
      if (s.name !== name) return;
      var k = keys.map(function (key) { return s.labels[key] || ""; }).join("\u0000");
      out[k] = (out[k] || 0) + s.value;
    });
    return out;
  }

  // buckets returns, per value of label key, the cumulative buckets of histogram family
  // (samples family_bucket) as [{le, count}] sorted by le.
  function buckets(scrape, family, key) {
    var by = {};
    scrape.samples.forEach(function (s) {
      if (s.name !== family + "_bucket" || s.labels.le === undefined) return;
      var le = parseValue(s.labels.le);
      if (le === null) return;
      var k = s.labels[key] || "";
      var m = by[k] || (by[k] = {});
      m[le] = (m[le] || 0) + s.value;
    });
    var out = {};
    Object.keys(by).forEach(function (k) {
      out[k] = Object.keys(by[k]).map(function (le) { return { le: Number(le), count: by[k][le] }; })
        .sort(function (a, b) { return a.le - b.le; });
    });
    return out;
  }

  // delta is cur − prev for a counter, or cur when the counter went down (the gateway
  // restarted, so it counts from zero again) or prev did not have it.
  function delta(cur, prev) {
    if (prev === undefined || cur < prev) return cur;
    return cur - prev;
  }

  // bucketDelta is the buckets observed between two scrapes. A reset anywhere takes cur whole,
  // so that the buckets stay cumulative.
  function bucketDelta(cur, prev) {
    if (!prev) return cur;
    var old = {};
    prev.forEach(function (b) { old[b.le] = b.count; });
    var reset = cur.some(function (b) { return old[b.le] !== undefined && b.count < old[b.le]; });
    if (reset) return cur;
    return cur.map(function (b) { return { le: b.le, count: b.count - (old[b.le] || 0) }; });
  }

  // quantile estimates the q-quantile (0..1) from cumulative buckets the way Prometheus'
  // histogram_quantile does: linear interpolation inside the bucket the rank falls in, the
  // first bucket starting at 0, and the highest finite bound when the rank falls in +Inf.
  // NaN when nothing was observed.
  function quantile(q, bs) {
    if (!bs || bs.length === 0) return NaN;
    var total = bs[bs.length - 1].count;
    if (bs[bs.length - 1].le !== Infinity || !(total > 0)) return NaN;
    var rank = q * total;
    for (var i = 0; i < bs.length; i++) {
      if (bs[i].count >= rank) {
        if (bs[i].le === Infinity) return i > 0 ? bs[i - 1].le : NaN;
        var lower = i > 0 ? bs[i - 1].le : 0, below = i > 0 ? bs[i - 1].count : 0;
        if (i === 0 && bs[0].le <= 0) return bs[0].le;
        var inBucket = bs[i].count - below;
        if (inBucket <= 0) return bs[i].le;
        return lower + (bs[i].le - lower) * (rank - below) / inBucket;
      }
    }
    return NaN;
  }

  // The "code" labels that count as failed: a 5xx answer, or none at all (an upstream attempt
  // refused, reset or timed out).
  var FAILED = ["5xx", "error"];

  // window derives, for each value of label key, the figures between scrape prev and scrape
  // cur taken seconds apart: requests per second, p50 and p99 in seconds (NaN with no requests)
  // and the share that failed (0..1, NaN with no requests); total is the count so far.
  // requests is a counter family with a "code" label ("2xx".."5xx", "error"), or "" to count
  // the observations of histogram duration instead (errors are then NaN).
  function window(cur, prev, seconds, requests, duration, key) {
    var count = requests || duration + "_count";
    var curReq = sum(cur, count, [key]), prevReq = prev ? sum(prev, count, [key]) : {};
    var cur5 = requests ? sum(cur, requests, [key, "code"]) : {};
    var prev5 = requests && prev ? sum(prev, requests, [key, "code"]) : {};
    var curB = buckets(cur, duration, key), prevB = prev ? buckets(prev, duration, key) : {};
    var out = {};
    Object.keys(curReq).concat(Object.keys(curB)).forEach(function (k) {
      if (out[k]) return;
      var total = curReq[k] || 0;
      var f = { total: total, rate: NaN, p50: NaN, p99: NaN, errors: NaN };
      out[k] = f;
      if (!prev || !(seconds > 0)) return;
      var n = delta(total, prevReq[k]);
      f.rate = n / seconds;
      if (requests && n > 0) {
        var failed = 0;
        FAILED.forEach(function (code) {
          var kc = k + "\u0000" + code;
          if (cur5[kc] !== undefined) failed += delta(cur5[kc], prev5[kc]);
        });
        f.errors = failed / n;
      }
      if (curB[k]) {
        var d = bucketDelta(curB[k], prevB[k]);
        f.p50 = quantile(0.5, d);
        f.p99 = quantile(0.99, d);
      }
    });
    return out;
  }

  return {
    parse: parse, sum: sum, buckets: buckets, delta: delta, bucketDelta: bucketDelta,
    quantile: quantile, window: window
  };
})();

if (typeof module === "object" && module.exports) module.exports = WeirProm;
