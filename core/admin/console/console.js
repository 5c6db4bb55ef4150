// Weir console: reads the admin API every few seconds and draws it. Plain DOM and canvas; text
// from the API is only ever set as textContent, never parsed as markup.
"use strict";

(function () {
  var TOKEN_KEY = "weir-admin-token";
  var POINTS = 90; // chart history per route: 90 reads, 3 to 7.5 minutes
  var CHART_ROUTES = 8; // lines per chart
  var PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777",
    "#65a30d", "#9333ea", "#ea580c", "#0d9488", "#4f46e5"];

  var state = {
    interval: 3000,
    timer: null,
    busy: false,
    prevScrape: null, // last /metrics, parsed
    prevTime: 0, // when it was read (performance.now, ms)
    prevStats: null,
    history: {}, // route → [{t, rate, p50, p99, errors}]
    colors: {},
    configHash: null,
    needToken: false
  };

  function $(id) { return document.getElementById(id); }

  // el builds an element: el("td", {class: "num"}, "12", child…).
  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function replace(parent) {
    while (parent.firstChild) parent.removeChild(parent.firstChild);
    for (var i = 1; i < arguments.length; i++) if (arguments[i]) parent.appendChild(arguments[i]);
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  // api fetches an admin endpoint relative to the console (so it works under a path prefix
  // too), with the token when there is one; it resolves to {status, body}.
  function api(path, init) {
    init = init || {};
    init.headers = init.headers || {};
    if (token()) init.headers.Authorization = "Bearer " + token();
    init.cache = "no-store";
    init.credentials = "omit";
    return fetch("../" + path, init).then(function (r) {
      return r.text().then(function (body) { return { status: r.status, body: body }; });
    }, function (err) { return { status: 0, body: String(err) }; });
  }

  function json(r) {
    try { return JSON.parse(r.body); } catch (e) { return null; }
  }

  function errorText(r) {
    var j = json(r);
    if (r.status === 0) return "admin api unreachable (" + r.body + ")";
    return "HTTP " + r.status + (j && j.error ? ": " + j.error : "");
  }

  // Formatting.
  function fmtNum(n) {
    if (!isFinite(n)) return "–";
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return String(Math.round(n * 100) / 100);
  }
  function fmtRate(n) { return isFinite(n) ? (n >= 100 ? n.toFixed(0) : n.toFixed(1)) : "–"; }
  function fmtSeconds(s) {
    if (!isFinite(s)) return "–";
    if (s === 0) return "0";
    if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + " ms";
    return s.toFixed(2) + " s";
  }
  function fmtShare(x) { return isFinite(x) ? (x * 100).toFixed(x < 0.1 && x > 0 ? 2 : 1) + " %" : "–"; }
  function fmtTime(iso) {
    var d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }
  function ago(iso) {
    var s = (Date.now() - new Date(iso).getTime()) / 1000;
    if (!isFinite(s)) return "";
    if (s < 1) return "just now";
    if (s < 120) return Math.round(s) + " s ago";
    return Math.round(s / 60) + " min ago";
  }

  function color(route) {
    if (!state.colors[route]) {
      state.colors[route] = PALETTE[Object.keys(state.colors).length % PALETTE.length];
    }
    return state.colors[route];
  }

  function routeLabel(name) { return name === "" ? "(no route)" : name; }

  function setStatus(text, cls) {
    var s = $("status");
    s.textContent = text;
    s.className = "status" + (cls ? " " + cls : "");
  }

  // One read of everything: the JSON endpoints always, /metrics when the gateway has it.
  function refresh() {
    if (state.busy || state.needToken) return;
    state.busy = true;
    var now = performance.now();
    Promise.all([api("routes"), api("upstreams"), api("reloads"), api("stats"), api("metrics")])
      .then(function (rs) {
        if (rs.some(function (r) { return r.status === 401; })) return askToken(true);
        var failed = rs.slice(0, 4).filter(function (r) { return r.status !== 200; });
        if (failed.length) setStatus(errorText(failed[0]), "bad");
        else setStatus("updated " + new Date().toLocaleTimeString() + " · every " + state.interval / 1000 + " s", "ok");
        $("main").hidden = false;
        $("controls").hidden = false;
        $("forget").hidden = !token();
        var scrape = rs[4].status === 200 ? WeirProm.parse(rs[4].body) : null;
        var win = null, upWin = null, plugWin = null;
        var secs = state.prevScrape ? (now - state.prevTime) / 1000 : 0;
        if (scrape && state.prevScrape && secs < state.interval / 2000) {
          // An extra read (after Reload config) soon after the last: figures over so short a
          // window would be noise, so the last ones stay and the baseline is kept.
          win = state.lastWin;
          upWin = state.lastUpWin;
          plugWin = state.lastPlugWin;
        } else if (scrape) {
          win = WeirProm.window(scrape, state.prevScrape, secs, "weir_requests_total", "weir_request_duration_seconds", "route");
          var upReqs = scrape.types.weir_upstream_requests_total ? "weir_upstream_requests_total" : "";
          upWin = WeirProm.window(scrape, state.prevScrape, secs, upReqs, "weir_upstream_duration_seconds", "upstream");
          plugWin = WeirProm.window(scrape, state.prevScrape, secs, "", "weir_plugin_call_duration_seconds", "plugin");
          state.prevScrape = scrape;
          state.prevTime = now;
          state.lastWin = win;
          state.lastUpWin = upWin;
          state.lastPlugWin = plugWin;
          record(win);
        }
        metricsNote(rs[4]);
        if (rs[0].status === 200) {
          state.routes = json(rs[0]) || [];
          renderRoutes(state.routes, win);
        }
        drawCharts();
        if (rs[1].status === 200) renderUpstreams(json(rs[1]) || [], upWin);
        var stats = rs[3].status === 200 ? json(rs[3]) : null;
        if (stats) renderGroups(stats, scrape, plugWin);
        if (rs[2].status === 200) renderReloads(json(rs[2]));
      })
      .catch(function (e) { setStatus("console error: " + e, "bad"); })
      .then(function () { state.busy = false; });
  }

  function metricsNote(r) {
    var note = $("metrics-note");
    if (r.status === 200) { note.hidden = true; return; }
    note.hidden = false;
    note.textContent = r.status === 404
      ? "This gateway has no /metrics endpoint, so request rates, latencies and errors cannot be shown."
      : "/metrics: " + errorText(r);
  }

  // record appends this read's figures to each route's history.
  function record(win) {
    var t = Date.now();
    Object.keys(win).forEach(function (route) {
      var f = win[route];
      if (!isFinite(f.rate)) return; // the first read only sets the baseline
      var h = state.history[route] || (state.history[route] = []);
      h.push({ t: t, rate: f.rate, p50: f.p50, p99: f.p99, errors: f.errors });
      if (h.length > POINTS) h.shift();
    });
  }

  function matchText(m) {
    if (!m) return "any";
    var parts = [];
    Object.keys(m).forEach(function (k) {
      var v = m[k];
      if (v === null || v === undefined || v === "" || (Array.isArray(v) && !v.length)) return;
      parts.push(k + " " + (typeof v === "object" ? JSON.stringify(v) : v));
    });
    return parts.length ? parts.join(", ") : "any";
  }

  function renderRoutes(routes, win) {
    var rows = [];
    var seen = {};
    var cell = function (cls, text) { return el("td", { class: cls }, text); };
    var figures = function (name) {
      var f = win && win[name];
      return [
        cell("num total", f ? fmtNum(f.total) : "–"),
        cell("num rate", f ? fmtRate(f.rate) : "–"),
        cell("num p50", f ? fmtSeconds(f.p50) : "–"),
        cell("num p99", f ? fmtSeconds(f.p99) : "–"),
        cell("num errors" + (f && f.errors > 0 ? " bad" : ""), f ? fmtShare(f.errors) : "–")
      ];
    };
    routes.forEach(function (r) {
      seen[r.name] = true;
      var upstream = r.upstream || (r.split ? "split" : "");
      var swatch = el("span", { class: "swatch" });
      swatch.style.background = color(r.name);
      var tr = el("tr", { "data-route": r.name },
        el("td", { class: "name" }, swatch, r.name),
        cell("match", matchText(r.match)),
        cell("", upstream),
        cell("filters", (r.filters || []).join(", ")));
      figures(r.name).forEach(function (td) { tr.appendChild(td); });
      rows.push(tr);
    });
    // Requests no route took (404, 405) and routes of a config since replaced.
    if (win) Object.keys(win).sort().forEach(function (name) {
      if (seen[name]) return;
      var swatch = el("span", { class: "swatch" });
      swatch.style.background = color(name);
      var tr = el("tr", { "data-route": name, class: "extra" },
        el("td", { class: "name" }, swatch, routeLabel(name)), cell("", ""), cell("", ""), cell("", ""));
      figures(name).forEach(function (td) { tr.appendChild(td); });
      rows.push(tr);
    });
    var tbody = $("routes-table").tBodies[0];
    replace.apply(null, [tbody].concat(rows));
  }

  function drawCharts() {
    // More lines than this cannot be told apart: the charts show the busiest routes (by their
    // latest rate); the table has every route.
    var routes = Object.keys(state.history).sort(function (a, b) {
      return lastRate(b) - lastRate(a) || (a < b ? -1 : 1);
    });
    var note = $("charts-note");
    note.hidden = routes.length <= CHART_ROUTES;
    note.textContent = "The charts show the " + CHART_ROUTES + " busiest of " + routes.length + " routes.";
    routes = routes.slice(0, CHART_ROUTES);
    var series = function (field, dash) {
      return routes.map(function (r) {
        return { color: color(r), dash: dash, points: state.history[r].map(function (p) { return { t: p.t, v: p[field] }; }) };
      });
    };
    drawChart($("chart-rate"), series("rate"), fmtNum);
    drawChart($("chart-latency"), series("p99").concat(series("p50", true)), fmtSeconds);
    drawChart($("chart-errors"), series("errors"), fmtShare, 1);
  }

  function lastRate(route) {
    var h = state.history[route];
    return h.length ? h[h.length - 1].rate : 0;
  }

  // drawChart draws line series [{color, dash, points: [{t, v}]}] over the last POINTS reads;
  // a NaN value (no requests in that read) leaves a gap. minMax is the least top of the y axis.
  function drawChart(canvas, series, fmt, minMax) {
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var css = getComputedStyle(canvas);
    var ink = css.color, grid = css.getPropertyValue("--grid").trim() || "#ddd";
    var padL = 56, padR = 8, padT = 8, padB = 18;
    var pw = w - padL - padR, ph = h - padT - padB;
    // The time axis covers the reads so far (at least ten), up to POINTS of them.
    var t1 = Date.now(), first = t1;
    series.forEach(function (s) { if (s.points.length && s.points[0].t < first) first = s.points[0].t; });
    var span = Math.min(POINTS * state.interval, Math.max(t1 - first, 10 * state.interval)), t0 = t1 - span;

    var max = 0, drawn = 0;
    series.forEach(function (s) {
      s.points.forEach(function (p) {
        if (p.t < t0 || !isFinite(p.v)) return;
        drawn++;
        if (p.v > max) max = p.v;
      });
    });
    canvas.dataset.points = drawn; // how many values the chart shows (the browser test reads it)
    max = niceCeil(Math.max(max * 1.1, minMax ? minMax * 0.05 : 0));
    if (max === 0) max = minMax || 1;
    if (minMax && max > minMax) max = minMax;

    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (var i = 0; i <= 4; i++) {
      var v = max * i / 4, y = padT + ph - ph * i / 4;
      ctx.strokeStyle = grid;
      ctx.beginPath(); ctx.moveTo(padL, Math.round(y) + 0.5); ctx.lineTo(padL + pw, Math.round(y) + 0.5); ctx.stroke();
      ctx.fillStyle = ink;
      ctx.fillText(fmt(v), padL - 6, y);
    }
    ctx.textBaseline = "top";
    ctx.textAlign = "left";
    ctx.fillText("−" + Math.round(span / 1000) + " s", padL, padT + ph + 4);
    ctx.textAlign = "right";
    ctx.fillText("now", padL + pw, padT + ph + 4);

    var x = function (t) { return padL + pw * (t - t0) / span; };
    var y = function (v) { return padT + ph - ph * Math.min(v, max) / max; };
    ctx.save();
    ctx.beginPath(); ctx.rect(padL, padT - 2, pw, ph + 4); ctx.clip();
    series.forEach(function (s) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.75;
      ctx.setLineDash(s.dash ? [4, 3] : []);
      ctx.beginPath();
      var pen = false;
      s.points.forEach(function (p) {
        if (!isFinite(p.v)) { pen = false; return; }
        if (pen) ctx.lineTo(x(p.t), y(p.v));
        else { ctx.moveTo(x(p.t), y(p.v)); pen = true; }
      });
      ctx.stroke();
      // A lone point (a route with one read of traffic) would draw nothing: mark it.
      s.points.forEach(function (p, j) {
        var alone = isFinite(p.v) && !(j > 0 && isFinite(s.points[j - 1].v)) && !(j + 1 < s.points.length && isFinite(s.points[j + 1].v));
        if (alone) { ctx.fillStyle = s.color; ctx.fillRect(x(p.t) - 1.5, y(p.v) - 1.5, 3, 3); }
      });
    });
    ctx.restore();
  }

  // niceCeil rounds up to 1, 2, 2.5 or 5 times a power of ten, so that the four grid lines
  // fall on round values.
  function niceCeil(v) {
    if (!(v > 0)) return 0;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
  }

  function renderUpstreams(ups, win) {
    var body = $("upstreams-body");
    if (!ups.length) { replace(body, el("p", { class: "note" }, "No http upstreams in the running config.")); return; }
    var blocks = ups.map(function (u) {
      var f = win && win[u.name];
      var head = el("h3", null, u.name, el("span", { class: "note" }, " " + u.balance +
        (f ? " · " + fmtRate(f.rate) + " attempts/s · p50 " + fmtSeconds(f.p50) + " · p99 " + fmtSeconds(f.p99) +
          (isFinite(f.errors) ? " · failed " + fmtShare(f.errors) : "") : "")));
      var rows = (u.targets || []).map(function (t) {
        var check = "–";
        if (t.last_check) {
          check = (t.last_check.ok ? "ok" : (t.last_check.error || ("status " + t.last_check.status))) + " · " + ago(t.last_check.time);
        }
        var stateText = t.state + (t.ejected_until ? " until " + new Date(t.ejected_until).toLocaleTimeString() : "");
        return el("tr", { "data-target": t.address },
          el("td", null, t.address),
          el("td", null, el("span", { class: "badge " + t.state }, stateText)),
          el("td", { class: "num" }, String(t.weight)),
          el("td", { class: "num" }, String(t.in_flight)),
          el("td", { class: "num" }, String(t.connections)),
          el("td", { class: "num" }, t.ewma_latency_ns >= 0 ? fmtSeconds(t.ewma_latency_ns / 1e9) : t.ewma_latency),
          el("td", { class: t.last_check && !t.last_check.ok ? "bad" : "" }, check));
      });
      var table = el("table", { class: "targets" },
        el("thead", null, el("tr", null, el("th", null, "target"), el("th", null, "health"), el("th", { class: "num" }, "weight"),
          el("th", { class: "num" }, "in flight"), el("th", { class: "num" }, "conns"), el("th", { class: "num" }, "latency"), el("th", null, "last check"))),
        el("tbody", null));
      rows.forEach(function (r) { table.tBodies[0].appendChild(r); });
      return el("div", { class: "upstream", "data-upstream": u.name }, head, table);
    });
    replace.apply(null, [body].concat(blocks));
  }

  // groupTable shows {name: {counter: n}} with the columns in order first, then any others;
  // a counter that rose since the last read is marked.
  function groupTable(group, prevGroup, first, label, empty, extra, format) {
    var names = Object.keys(group || {}).sort();
    if (!names.length) return el("p", { class: "note" }, empty);
    var cols = first.slice();
    names.forEach(function (n) {
      Object.keys(group[n]).sort().forEach(function (c) { if (cols.indexOf(c) < 0) cols.push(c); });
    });
    cols = cols.filter(function (c) { return names.some(function (n) { return group[n][c] !== undefined; }); });
    var head = el("tr", null, el("th", null, label));
    cols.forEach(function (c) { head.appendChild(el("th", { class: "num" }, c.replace(/_/g, " "))); });
    if (extra) head.appendChild(el("th", { class: "num" }, extra.title));
    var tbody = el("tbody");
    names.forEach(function (n) {
      var tr = el("tr", { "data-name": n }, el("td", { class: "name" }, n));
      cols.forEach(function (c) {
        var v = group[n][c], old = prevGroup && prevGroup[n] ? prevGroup[n][c] : undefined;
        var show = format && format[c] ? format[c] : fmtNum;
        var td = el("td", { class: "num", "data-counter": c }, v === undefined ? "" : show(v));
        if (old !== undefined && v > old) { td.className += " rose"; td.title = "+" + (v - old) + " since the last read"; }
        tr.appendChild(td);
      });
      if (extra) tr.appendChild(el("td", { class: "num " + extra.cls }, extra.value(group[n], n)));
      tbody.appendChild(tr);
    });
    return el("table", { class: "group" }, el("thead", null, head), tbody);
  }

  function renderGroups(stats, scrape, plugWin) {
    var prev = state.prevStats || {};
    replace($("plugins-body"), groupTable(stats.plugins, prev.plugins,
      ["calls", "traps", "timeouts", "failures", "pool_waits", "pool_timeouts", "instances"], "plugin",
      "No WebAssembly plugins loaded.", plugWin && Object.keys(plugWin).length ? {
        // From a sample of the calls (weir_plugin_call_duration_seconds), over the last read.
        title: "call p99", cls: "p99", value: function (g, name) {
          return plugWin[name] ? fmtSeconds(plugWin[name].p99) : "–";
        }
      } : null));
    replace($("cache-body"), groupTable(stats.cache, prev.cache,
      ["hits", "misses", "stale", "revalidated", "coalesced", "bypass", "stored", "entries", "bytes"], "route",
      "No route uses the cache filter.", {
        title: "hit ratio", cls: "ratio", value: function (g) {
          var n = (g.hits || 0) + (g.misses || 0);
          return n ? fmtShare((g.hits || 0) / n) : "–";
        }
      }));
    replace($("breakers-body"), groupTable(stats.breakers, prev.breakers, ["state", "opened", "rejected", "probes"],
      "breaker", "No route uses the breaker filter.", null, {
        state: function (v) { return ["closed", "open", "half-open"][v] || String(v); }
      }));
    // Rate-limit and access decisions are only in /metrics: per route and filter, per verdict.
    decisions("ratelimit-body", "weir_ratelimit_decisions_total", "decision", ["allowed", "limited", "error"],
      ["ratelimit"], "rate-limit", scrape);
    decisions("auth-body", "weir_auth_decisions_total", "result", ["allowed", "denied"],
      ["apikey", "basicauth", "jwt", "extauth", "acl", "ipfilter"], "access", scrape);
    state.prevStats = stats;
  }

  // decisions shows counter family (labels route, filter and verdict) in the element id, a row
  // per route and filter; with none counted, it says which routes have such filters.
  function decisions(id, family, verdict, first, filters, what, scrape) {
    var group = {};
    if (scrape) {
      var sums = WeirProm.sum(scrape, family, ["route", "filter", verdict]);
      Object.keys(sums).forEach(function (k) {
        var p = k.split("\u0000"), name = p[0] + (p[1] ? " · " + p[1] : "");
        (group[name] = group[name] || {})[p[2]] = sums[k];
      });
    }
    var routes = (state.routes || []).filter(function (r) {
      return (r.filters || []).some(function (f) { return filters.indexOf(f) >= 0; });
    }).map(function (r) { return r.name; });
    var none = !routes.length ? (filters.length > 1 ? "No route uses any of the " + filters.join(", ") + " filters."
      : "No route uses the " + filters[0] + " filter.")
      : !scrape ? "The " + what + " decisions need /metrics."
        : "No " + what + " decisions counted yet (routes: " + routes.join(", ") + ").";
    state.prevDecisions = state.prevDecisions || {};
    replace($(id), groupTable(group, state.prevDecisions[id], first, "route · filter", none));
    state.prevDecisions[id] = group;
  }

  function renderReloads(r) {
    if (!r) return;
    var s = r.stats || {};
    $("reloads-summary").textContent = (s.reloads || 0) + " reloads applied, " + (s.reload_failures || 0) + " rejected since start.";
    var history = (r.history || []).slice().reverse();
    var rows = history.slice(0, 20).map(function (ev) {
      var result = ev.ok ? (ev.unchanged ? "unchanged" : "applied") : "rejected";
      return el("tr", { class: ev.ok ? "" : "rejected" },
        el("td", { class: "time" }, fmtTime(ev.time)),
        el("td", null, ev.trigger),
        el("td", null, el("span", { class: "badge " + (ev.ok ? "healthy" : "unhealthy") }, result)),
        el("td", { class: "hash" }, ev.hash ? ev.hash.slice(0, 12) : ""),
        el("td", { class: "error" }, ev.error || ""));
    });
    replace.apply(null, [$("reloads-table").tBodies[0]].concat(rows));
    // The config in effect is the last one applied; read it again only when that changes.
    var current = null;
    history.some(function (ev) { if (ev.ok && ev.hash) { current = ev.hash; return true; } return false; });
    if (current !== state.configHash) {
      state.configHash = current;
      api("config").then(function (c) {
        $("config-hash").textContent = current ? current.slice(0, 12) : "";
        $("config-text").textContent = c.status === 200 ? c.body : errorText(c);
        // What /config says beside the running config: settings the file changes that only a
        // restart applies, or a file that does not load.
        var v = c.status === 200 ? json(c) : null, note = "";
        if (v && v.restart_required && v.restart_required.length) {
          note = "Restart required for " + v.restart_required.join(", ") + ": the file changes " +
            "settings that apply only when the gateway starts; the running values stay until then.";
        } else if (v && v.file_error) {
          note = "The config file does not load: " + v.file_error;
        }
        $("config-note").textContent = note;
        $("config-note").hidden = !note;
      });
    }
  }

  function askToken(rejected) {
    state.needToken = true;
    stop();
    $("main").hidden = true;
    $("controls").hidden = true;
    $("login").hidden = false;
    var e = $("token-error");
    e.hidden = !(rejected && token());
    e.textContent = "The admin API refused this token (401). Enter it again.";
    setStatus("admin token needed", "bad");
    $("token").focus();
  }

  function start() {
    stop();
    refresh();
    state.timer = setInterval(refresh, state.interval);
  }
  function stop() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
  }

  // A new token or interval starts the charts over: rates need two reads the same distance apart.
  function reset() {
    state.prevScrape = null;
    state.lastWin = state.lastUpWin = state.lastPlugWin = null;
    state.prevStats = null;
    state.history = {};
    state.configHash = null;
  }

  $("token-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    $("login").hidden = true;
    state.needToken = false;
    reset();
    start();
  });
  $("forget").addEventListener("click", function () {
    sessionStorage.removeItem(TOKEN_KEY);
    reset();
    askToken(false);
  });
  $("interval").addEventListener("change", function () {
    state.interval = Number($("interval").value) || 3000;
    reset();
    start();
  });
  $("reload").addEventListener("click", function () {
    // Same-origin JSON POST: what the admin API's cross-site checks let through.
    api("reload", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" }).then(function (r) {
      if (r.status === 401) return askToken(true);
      var ev = json(r), out = $("reload-result");
      if (r.status === 200) out.textContent = ev && ev.unchanged ? "config unchanged" : "new config applied";
      else out.textContent = "reload rejected: " + (ev && ev.error ? ev.error : errorText(r));
      out.title = out.textContent;
      out.className = "status " + (r.status === 200 ? "ok" : "bad");
      out.hidden = false;
      refresh();
    });
  });
  window.addEventListener("resize", drawCharts);
  // A tab in the background reads nothing; back in front it reads at once. Rates use the real
  // time between reads, so the gap does not distort them.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) stop();
    else if (!state.needToken) start();
  });
  start();
})();
