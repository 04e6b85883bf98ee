/* entropy-sentinel dashboard: reads the service's JSON API and renders it.
 *
 * Everything shown is a record of the API, formatted (3 decimals for accuracies):
 *   chart  <- GET /v1/estimates?by=DIM&since=FIRST&until=END&window=W&reference=none, where
 *             FIRST..END is the part of the range that has traffic (found with a coarse
 *             by=* series) and W is sized to it (minutes to months)
 *   table  <- GET /v1/estimates?by=DIM&since=RANGE&reference=RANGE   (one window, worst first)
 *   KPIs   <- the same two with by=*, GET /v1/alerts?status=open
 *   alerts <- GET /v1/alerts?status=open;  label next <- GET /v1/priorities;  card <- GET /v1/model
 *   queue  <- the label requests of GET /v1/priorities, one at a time; labels and skips go to
 *             POST /v1/labels, then the page reloads its estimates
 *   models <- GET /v1/models: the model selector (every call above then takes model=NAME) and
 *   "compare with": GET /v1/estimates?by=DIM&model=A&model=B, one record set per model
 * The state (dimension, range, search, budget, plotted slices) lives in the URL hash, so a
 * view can be bookmarked. `window.sentinel` exposes what was rendered (used by the tests).
 */
"use strict";

(function () {
  const RANGES = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000, all: null };
  const WINDOWS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800,
    604800, 1209600, 2592000];
  const POINTS = 48; // windows across the range, at most
  const MIN_POINTS = 4; // ... and at least
  const PER_WINDOW = 10; // traces per slice and window wanted, on average
  const PROBE_POINTS = 240; // resolution of the search for the first traffic in the range
  const DAY = 86400;
  // time-axis tick spacings (uPlot's, from a minute up); none finer than the chart's windows
  const TICKS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 14400, 21600, 28800, 43200,
    DAY, 2 * DAY, 3 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 60 * DAY, 91 * DAY, 182 * DAY, 365 * DAY,
    2 * 365 * DAY, 5 * 365 * DAY, 10 * 365 * DAY];
  const COLORS = ["#2f6fdf", "#e4572e", "#17a398", "#f2a541", "#8e44ad", "#c0392b",
    "#3d9970", "#ff6f91", "#5d6d7e", "#b8860b", "#1abc9c", "#d35400"];
  const DEFAULT_PLOTTED = 5;
  const REFRESH_MS = 30000;

  const state = { by: null, range: "6h", q: "", budget: 50, plotted: null, auto: true, model: null, vs: null };
  const view = { renders: 0, data: null, chart: null, reliability: null, config: null, error: null,
    xLabels: [], queue: null, redraw: false };
  window.sentinel = view;

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "style") node.setAttribute("style", v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  };

  // ------------------------------------------------------------------ formatting
  const fmt3 = (x) => (x === null || x === undefined || Number.isNaN(x) ? "—" : x.toFixed(3));
  const signed3 = (x) => (x === null || x === undefined ? "—" : (x > 0 ? "+" : x < 0 ? "−" : "±") + Math.abs(x).toFixed(3));
  const count = (n) => (n === null || n === undefined ? "—" : n.toLocaleString("en-US"));
  const pad = (n) => String(n).padStart(2, "0");
  const utc = (t) => {
    const d = new Date(t * 1000);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  };
  const ago = (iso) => {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  };
  // Labels of the time axis for ticks `incr` seconds apart: as precise as the spacing
  // needs (seconds, minutes, days, months), the date under the first tick of each day (or
  // the year under the first tick of each year), so no two labels read the same.
  const timeLabels = (ticks, incr) => {
    let prevDay = null, prevYear = null;
    return ticks.map((t) => {
      const d = new Date(t * 1000);
      const y = d.getUTCFullYear(), mo = pad(d.getUTCMonth() + 1), da = pad(d.getUTCDate());
      const day = `${y}-${mo}-${da}`;
      let label;
      if (incr >= 28 * DAY) label = `${y}-${mo}`;
      else if (incr >= DAY) label = y !== prevYear ? `${mo}-${da}\n${y}` : `${mo}-${da}`;
      else {
        const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}` + (incr < 60 ? `:${pad(d.getUTCSeconds())}` : "");
        label = day !== prevDay ? `${hm}\n${mo}-${da}` : hm;
      }
      prevDay = day; prevYear = y;
      return label;
    });
  };
  const durationText = (s) => {
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) if (s % size === 0) return `${s / size}${unit}`;
    return `${s}s`;
  };
  const iso = (t) => new Date(t * 1000).toISOString();
  const sliceText = (slice) => {
    const parts = Object.entries(slice || {});
    return parts.length ? parts.map(([k, v]) => `${k}=${v}`).join(", ") : "all traffic";
  };
  // Text that may wrap after "_", "-", "/", "." or "=" (slice names), never inside a word.
  const breakable = (text) => {
    const frag = document.createDocumentFragment();
    for (const part of String(text).split(/(?<=[_\-/.=])/)) {
      if (frag.childNodes.length) frag.append(document.createElement("wbr"));
      frag.append(part);
    }
    return frag;
  };
  const valueOf = (rec, by) => (by === "*" ? "all traffic" : rec.slice[by]);
  // A y range that fits the intervals (rounded to 0.1, at least 0.3 tall, within 0..1):
  // accuracies of 0.05-0.35 are unreadable on a 0..1 axis.
  const yRange = (lines) => {
    const lows = [], highs = [];
    for (const l of lines) {
      for (const v of l.lower) if (v !== null) lows.push(v);
      for (const v of l.upper) if (v !== null) highs.push(v);
    }
    if (!lows.length) return [0, 1];
    let lo = Math.max(0, Math.floor((Math.min(...lows) - 0.02) * 10) / 10);
    let hi = Math.min(1, Math.ceil((Math.max(...highs) + 0.02) * 10) / 10);
    while (hi - lo < 0.3) { if (hi < 1) hi = Math.min(1, hi + 0.1); else lo = Math.max(0, lo - 0.1); }
    return [lo, hi];
  };
  const changeClass = (change, z) =>
    change === null || z === null || Math.abs(z) < 2 ? "flat" : change < 0 ? "bad" : "good";

  // ------------------------------------------------------------------ URL state
  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    if (p.get("by")) state.by = p.get("by");
    if (p.get("range") in RANGES) state.range = p.get("range");
    state.q = p.get("q") || "";
    const b = parseInt(p.get("budget") || "", 10);
    if (b > 0) state.budget = b;
    state.plotted = p.has("plot") ? new Set(p.get("plot").split(",").filter(Boolean)) : null;
    state.model = p.has("model") ? p.get("model") : null;
    state.vs = p.has("vs") ? p.get("vs") : null;
  }
  function writeHash() {
    const p = new URLSearchParams();
    if (state.by) p.set("by", state.by);
    p.set("range", state.range);
    if (state.q) p.set("q", state.q);
    if (state.budget !== 50) p.set("budget", String(state.budget));
    if (state.plotted) p.set("plot", [...state.plotted].join(","));
    if (state.model !== null) p.set("model", state.model);
    if (state.vs !== null) p.set("vs", state.vs);
    history.replaceState(null, "", "#" + p.toString());
  }

  // ------------------------------------------------------------------ API
  class AuthNeeded extends Error {}
  const storedKey = () => sessionStorage.getItem("sentinel-key") || "";
  async function api(path, params, body) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (Array.isArray(v)) for (const x of v) url.searchParams.append(k, x); // "" is a model key
      else if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
    }
    const headers = {};
    if (storedKey()) headers.Authorization = "Bearer " + storedKey();
    const init = { headers };
    if (body !== undefined) {
      init.method = "POST";
      init.body = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    const r = await fetch(url, init);
    if (r.status === 401 || r.status === 403) {
      const body = await r.json().catch(() => ({}));
      throw new AuthNeeded(typeof body.detail === "string" ? body.detail : r.statusText);
    }
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || "");
      throw new Error(`${path}: HTTP ${r.status} ${detail}`);
    }
    return r;
  }
  const getJSON = async (path, params) => (await api(path, params)).json();
  const postJSON = async (path, body) => (await api(path, {}, body)).json();

  // Window lengths the database can answer: multiples of its storage bucket.
  const windowsFor = (bucket) => [bucket, ...WINDOWS.filter((w) => w > bucket && w % bucket === 0)];

  // The window of the time series: short enough for at least MIN_POINTS windows across
  // the span, long enough for PER_WINDOW traces per slice and window (a typical slice:
  // the median count) and at most POINTS windows; a multiple of the storage bucket.
  function chooseWindow(span, bucket, counts) {
    const fit = windowsFor(bucket);
    const sorted = counts.slice().sort((a, b) => a - b);
    const typical = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
    const wanted = Math.max(span / POINTS, typical ? (PER_WINDOW * span) / typical : 0);
    const longest = fit.filter((w) => w <= span / MIN_POINTS).pop() || fit[0];
    return Math.min(fit.find((w) => w >= wanted) || longest, longest);
  }

  // ------------------------------------------------------------------ load
  async function load() {
    const cfg = (view.config = view.config || (await getJSON("/dashboard/config.json")));
    const span = RANGES[state.range];
    const since = span ? state.range : null;
    const reference = span ? state.range : "none";
    const models = await getJSON("/v1/models");
    const names = models.models.map((m) => m.name);
    const scored = models.models.filter((m) => m.estimator).map((m) => m.name);
    if (state.model !== null && !names.includes(state.model)) state.model = null;
    if (state.vs !== null && (state.model === null || state.vs === state.model || !scored.includes(state.vs))) state.vs = null;
    const mp = state.model === null ? {} : { model: [state.model] };
    // one model's view: priorities and the model card need one (there is one, or it is chosen)
    const one = state.model !== null || scored.length === 1;
    const slices = await getJSON("/v1/slices", { since: since || "36500d", ...mp });
    // slice dimensions, the most common first (ties: the one with more values); "*" (all
    // traffic) is offered last, not opened on
    const dims = Object.entries(slices.dimensions)
      .filter(([d]) => d !== "*")
      .map(([d, vals]) => [d, Object.values(vals).reduce((a, b) => a + b, 0), Object.keys(vals).length])
      .sort((a, b) => b[1] - a[1] || b[2] - a[2] || a[0].localeCompare(b[0]))
      .map(([d]) => d);
    const fits = state.by && (state.by === "*" || dims.includes(state.by));
    const by = fits ? state.by : dims[0] || "*";
    if (dims.length) state.by = by; // a model without traces keeps the chosen dimension
    const [overall, ranked, compared] = await Promise.all([
      getJSON("/v1/estimates", { by: "*", since, reference, ...mp }),
      getJSON("/v1/estimates", { by, since, reference, ...mp }),
      state.vs === null
        ? Promise.resolve(null)
        : getJSON("/v1/estimates", { by, since, reference, model: [state.model, state.vs] }),
    ]);
    // The chart spans the part of the range that has traffic: from the first window with
    // traces (a coarse all-traffic series finds it) to the end of the range.
    const end = Date.parse(overall.until) / 1000;
    const rangeStart = Date.parse(overall.since) / 1000;
    const wins = windowsFor(cfg.bucket);
    const probeWin = wins.find((w) => w >= (end - rangeStart) / PROBE_POINTS) || wins[wins.length - 1];
    const probe = await getJSON("/v1/estimates",
      { by: "*", since: overall.since, until: overall.until, window: durationText(probeWin), reference: "none", ...mp });
    const first = probe.records.length ? Date.parse(probe.records[0].window_start) / 1000 : rangeStart;
    const start = Math.max(rangeStart, first);
    const win = chooseWindow(Math.max(cfg.bucket, end - start), cfg.bucket, ranked.records.map((r) => r.n));
    const windowed = { since: iso(start), until: overall.until, window: durationText(win), reference: "none", ...mp };
    const modelReady = one && (state.model === null || scored.includes(state.model));
    const redraw = view.redraw; // a new budget asked for a new sample (the budget input)
    view.redraw = false;
    const [series, overallSeries, alerts, model, health, priorities] = await Promise.all([
      getJSON("/v1/estimates", { by, ...windowed }),
      getJSON("/v1/estimates", { by: "*", ...windowed }),
      getJSON("/v1/alerts", { status: "open", ...mp }),
      modelReady ? getJSON("/v1/model", mp) : Promise.resolve(null),
      fetch("/healthz").then((r) => r.json()).catch(() => ({ status: "unreachable", problems: [] })),
      modelReady
        ? getJSON("/v1/priorities", { budget: state.budget, by, since: since || "36500d",
            ...(redraw ? { new: true } : {}), ...mp })
        : Promise.resolve(null),
    ]);
    return { dims, by, since, reference, window: win, overall, ranked, series, overallSeries,
      alerts, model, health, priorities, config: cfg, models, compared, chosen: state.model, vs: state.vs };
  }

  // ------------------------------------------------------------------ render
  function colorMap(ranked, by) {
    const map = new Map();
    ranked.records.forEach((r, i) => map.set(valueOf(r, by), COLORS[i % COLORS.length]));
    return map;
  }

  function renderFilters(d) {
    const sel = $("by");
    const options = [...d.dims, "*"];
    if ([...sel.options].map((o) => o.value).join() !== options.join()) {
      sel.replaceChildren(...options.map((v) => el("option", { value: v, text: v === "*" ? "(all traffic)" : v })));
    }
    sel.value = d.by;
    for (const b of $("range").querySelectorAll("button")) b.classList.toggle("active", b.dataset.range === state.range);
    $("q").value = state.q;
    $("budget").value = String(state.budget);
    $("auto").checked = state.auto;
  }

  const modelName = (name) => (name === "" ? "(no model named)" : name);
  const fittedText = (e) => (e.fitted_on ? `fitted on the traces of ${e.fitted_on}` : "whose training traces named no model");

  function renderModels(d) {
    const list = d.models.models;
    $("model-filter").hidden = list.length < 2;
    const sel = $("model-select");
    const options = [el("option", { value: "all", text: "all models" }),
      ...list.map((m) => el("option", { value: "m:" + m.name,
        text: modelName(m.name) + (m.estimator ? "" : ` · no estimator (${count(m.traces.waiting)} waiting)`) +
          (m.estimator && m.estimator.other_model ? " · other model's estimator" : "") }))];
    sel.replaceChildren(...options);
    sel.value = d.chosen === null ? "all" : "m:" + d.chosen;
    const others = list.filter((m) => m.estimator && m.name !== d.chosen);
    $("vs-filter").hidden = d.chosen === null || !others.length;
    $("vs-select").replaceChildren(el("option", { value: "none", text: "—" }),
      ...others.map((m) => el("option", { value: "m:" + m.name, text: modelName(m.name) })));
    $("vs-select").value = d.vs === null ? "none" : "m:" + d.vs;
    // what the numbers shown are not: unscored, or scored by another model's estimator
    const notes = [];
    const chosen = list.find((m) => m.name === d.chosen);
    if (chosen && !chosen.estimator) {
      notes.push(`Model ${modelName(chosen.name)} has no estimator yet: ${count(chosen.traces.waiting)} traces are stored ` +
        "unscored and will be scored when one is registered.");
    }
    for (const m of list) {
      if (m.estimator && m.estimator.other_model && (d.chosen === null || m.name === d.chosen)) {
        notes.push(`Estimates of ${modelName(m.name)} come from an estimator ${fittedText(m.estimator)}.`);
      }
    }
    const unscored = list.filter((m) => !m.estimator && m.traces.waiting && d.chosen === null);
    if (unscored.length) {
      notes.push(`Not in these numbers: ${unscored.map((m) => `${modelName(m.name)} (${count(m.traces.waiting)} traces waiting for an estimator)`).join(", ")}.`);
    }
    $("model-note").textContent = notes.join(" ");
    $("model-note").hidden = !notes.length;
  }

  function renderCompare(d) {
    const card = $("compare-card");
    card.hidden = !d.compared;
    if (!d.compared) return;
    const [a, b] = [d.chosen, d.vs];
    const rows = new Map();
    for (const r of d.compared.records) {
      const v = valueOf(r, d.by);
      if (!rows.has(v)) rows.set(v, {});
      rows.get(v)[r.model === a ? "a" : "b"] = r;
    }
    for (const th of card.querySelectorAll("th.model-a")) th.textContent = modelName(a);
    for (const th of card.querySelectorAll("th.model-b")) th.textContent = modelName(b);
    const cells = (r) => (r
      ? [el("td", { class: "num est", text: fmt3(r.estimate) }),
        el("td", { class: "small muted", text: `[${fmt3(r.lower)}, ${fmt3(r.upper)}]` }),
        el("td", { class: "num", text: count(r.n) })]
      : [el("td", { class: "num est", text: "—" }), el("td", {}), el("td", { class: "num", text: "0" })]);
    const ordered = [...rows.entries()].sort((x, y) => (x[1].a ? x[1].a.estimate : 2) - (y[1].a ? y[1].a.estimate : 2) || x[0].localeCompare(y[0]));
    $("compare").tBodies[0].replaceChildren(...ordered.map(([v, pair]) => {
      const diff = pair.a && pair.b && pair.a.estimate !== null && pair.b.estimate !== null ? pair.b.estimate - pair.a.estimate : null;
      return el("tr", { "data-value": v }, el("td", { class: "slice", title: v, text: v }), ...cells(pair.a), ...cells(pair.b),
        el("td", { class: "num diff", text: signed3(diff) }));
    }));
    $("compare-by").textContent = d.by === "*" ? "· all traffic" : `· by ${d.by}`;
    $("compare-note").textContent = `${modelName(a)} vs ${modelName(b)}`;
  }

  function renderKpis(d) {
    const all = d.overall.records[0];
    const lvl = Math.round(d.config.level * 100);
    if (!all) {
      $("kpi-est").textContent = "—";
      $("kpi-iv").textContent = "no traces in this range";
      $("kpi-n").textContent = "0";
      $("kpi-change").textContent = "—";
      $("kpi-change-note").textContent = "";
    } else {
      $("kpi-est").textContent = fmt3(all.estimate);
      $("kpi-iv").textContent = `${lvl}% interval [${fmt3(all.lower)}, ${fmt3(all.upper)}]`;
      $("kpi-n").textContent = count(all.n);
      $("kpi-n-note").textContent = `${utc(Date.parse(all.window_start) / 1000)} – ${utc(Date.parse(all.window_end) / 1000)} UTC`;
      const ch = $("kpi-change");
      ch.textContent = signed3(all.change);
      ch.className = "k-value " + changeClass(all.change, all.change_z);
      $("kpi-change-note").textContent = all.reference
        ? `previous ${d.reference}: ${fmt3(all.reference.estimate)} (n=${count(all.reference.n)})` +
          (all.change_z !== null ? ` · z ${all.change_z.toFixed(1).replace("-", "−")}` : "")
        : "no previous period";
    }
    const open = d.alerts.alerts;
    const mine = open.filter((a) => Object.keys(a.slice)[0] === d.by || (d.by === "*" && !Object.keys(a.slice).length));
    $("kpi-alerts").textContent = String(open.length);
    $("kpi-alerts").className = "k-value " + (open.length ? "bad" : "");
    $("kpi-alerts-note").textContent = open.length ? `${mine.length} on ${d.by === "*" ? "all traffic" : d.by}` : "all quiet";
  }

  function intervalBar(r) {
    if (r.lower === null || r.upper === null) return el("span", { class: "muted", text: "—" });
    return el("div", { class: "ivbar", title: `[${fmt3(r.lower)}, ${fmt3(r.upper)}]` },
      el("div", { class: "band", style: `left:${r.lower * 100}%;width:${(r.upper - r.lower) * 100}%` }),
      el("div", { class: "dot", style: `left:${r.estimate * 100}%` }));
  }

  // Per-slice series of the windowed estimates, for the table's trend column.
  function trendsOf(d) {
    const xs = [...new Set(d.series.records.map((r) => Date.parse(r.window_start) / 1000))].sort((a, b) => a - b);
    const at = new Map(xs.map((x, i) => [x, i]));
    const out = new Map();
    for (const r of d.series.records) {
      const v = valueOf(r, d.by);
      if (!out.has(v)) out.set(v, { est: xs.map(() => null), lower: xs.map(() => null), upper: xs.map(() => null) });
      const line = out.get(v);
      const i = at.get(Date.parse(r.window_start) / 1000);
      line.est[i] = r.estimate; line.lower[i] = r.lower; line.upper[i] = r.upper;
    }
    out.xs = xs;
    return out;
  }

  function sparkline(line, xs, color, range, overall) {
    const NS = "http://www.w3.org/2000/svg";
    const w = 88, h = 26;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("width", String(w));
    svg.setAttribute("height", String(h));
    svg.setAttribute("class", "spark");
    if (!line || !xs.length) return svg;
    const X = (i) => (xs.length === 1 ? w / 2 : 2 + (i * (w - 4)) / (xs.length - 1));
    const [lo, hi] = range;
    const Y = (v) => 1 + (1 - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * (h - 2);
    const runs = [];
    let run = [];
    xs.forEach((_, i) => {
      if (line.est[i] !== null) run.push(i);
      else if (run.length) { runs.push(run); run = []; }
    });
    if (run.length) runs.push(run);
    const add = (tag, attrs) => {
      const node = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      svg.append(node);
    };
    if (overall !== null && overall !== undefined) {
      add("line", { x1: 0, x2: w, y1: Y(overall), y2: Y(overall), stroke: "#9aa6b8", "stroke-width": 1, "stroke-dasharray": "3 2" });
    }
    for (const r of runs) {
      const up = r.map((i) => `${X(i)},${Y(line.upper[i] ?? line.est[i])}`);
      const lo = r.slice().reverse().map((i) => `${X(i)},${Y(line.lower[i] ?? line.est[i])}`);
      if (r.length > 1) add("polygon", { points: [...up, ...lo].join(" "), fill: color, "fill-opacity": 0.18 });
      else add("rect", { x: X(r[0]) - 2, y: Y(line.upper[r[0]] ?? 0), width: 4,
        height: Math.max(1, Y(line.lower[r[0]] ?? 0) - Y(line.upper[r[0]] ?? 0)), fill: color, "fill-opacity": 0.18 });
      add("polyline", { points: r.map((i) => `${X(i)},${Y(line.est[i])}`).join(" "), fill: "none",
        stroke: color, "stroke-width": 1.6, "stroke-linejoin": "round" });
    }
    const last = runs.length ? runs[runs.length - 1].slice(-1)[0] : null;
    if (last !== null) add("circle", { cx: X(last), cy: Y(line.est[last]), r: 2, fill: color });
    return svg;
  }

  function renderTable(d, colors) {
    const by = d.by;
    const trends = trendsOf(d);
    const sparkRange = yRange([...trends.values()]);
    const overallEstimate = d.overall.records[0] ? d.overall.records[0].estimate : null;
    const alerting = new Set(d.alerts.alerts.filter((a) => a.slice[by] !== undefined).map((a) => a.slice[by]));
    const rows = d.ranked.records.map((r, i) => {
      const value = valueOf(r, by);
      const ref = r.reference;
      const check = el("input", { type: "checkbox", "aria-label": `plot ${value}` });
      check.checked = plottedSet(d).has(value);
      check.addEventListener("change", () => togglePlot(value, check.checked));
      const corrected = r.label_corrected
        ? `${fmt3(r.label_corrected.estimate)} [${fmt3(r.label_corrected.lower)}, ${fmt3(r.label_corrected.upper)}]`
        : "";
      const tr = el("tr", { "data-value": value, class: alerting.has(value) ? "alerting" : null },
        el("td", {}, check),
        el("td", { class: "rank", text: String(i + 1) }),
        el("td", { class: "slice", title: value },
          el("span", { class: "swatch", style: `background:${colors.get(value)}` }), value,
          alerting.has(value) ? el("span", { class: "tag", text: "alert" }) : "",
          r.other_model ? el("span", { class: "tag other-model", text: "other model's estimator",
            title: "scored by an estimator fitted on another model's traces" }) : "",
          el("span", { class: "shift small" + (r.shift !== null && r.shift >= 0.75 ? " unlike" : ""),
            title: r.shift !== null ? `shift score ${fmt3(r.shift)} (0.5: like the training traces, 1: unlike)` : "",
            text: r.shift_word || (r.unseen_fraction ? "shift unknown" : "") })),
        el("td", { class: "num n", text: count(r.n) }),
        el("td", { class: "trend" }, sparkline(trends.get(value), trends.xs, colors.get(value), sparkRange, overallEstimate)),
        el("td", { class: "num est", text: fmt3(r.estimate) }),
        el("td", { class: "iv", title: `parts: sampling sd ${fmt3(r.sampling_sd)}, calibration sd ${fmt3(r.calibration_sd)}, ` +
          `transfer ±${fmt3(r.transfer_half_width)} (${fmt3(r.unseen_fraction)} of it unseen in training)` }, intervalBar(r), " ",
          el("span", { class: "small muted ivtext", text: `[${fmt3(r.lower)}, ${fmt3(r.upper)}]` })),
        el("td", { class: "num ref", title: ref ? `n=${count(ref.n)}` : "", text: ref ? fmt3(ref.estimate) : "—" }),
        el("td", { class: "num change" },
          el("span", { class: "delta " + changeClass(r.change, r.change_z), text: signed3(r.change),
            title: r.change_z !== null ? `z = ${r.change_z.toFixed(1)}` : "" })),
        el("td", { class: "num lab", text: r.n_labelled ? count(r.n_labelled) : "—" }),
        el("td", { class: "num corrected", text: r.label_corrected ? fmt3(r.label_corrected.estimate) : "—",
          title: corrected ? `label-corrected estimate ${corrected} from ${count(r.n_labelled)} labels (${count(r.n_plain)} plain)` : "no labels" }));
      return tr;
    });
    $("slices").tBodies[0].replaceChildren(...rows);
    $("slices-empty").hidden = rows.length > 0;
    $("slices-by").textContent = by === "*" ? "· all traffic" : `· by ${by}`;
    $("slices-note").textContent = d.reference === "none"
      ? "whole range" : `change vs the previous ${d.reference}; red: |z| ≥ 2`;
    applySearch();
  }

  function applySearch() {
    const q = state.q.toLowerCase();
    for (const tr of $("slices").tBodies[0].rows) tr.classList.toggle("hidden-row", !!q && !tr.dataset.value.toLowerCase().includes(q));
  }

  function plottedSet(d) {
    if (state.plotted) return state.plotted;
    return new Set(d.ranked.records.slice(0, DEFAULT_PLOTTED).map((r) => valueOf(r, d.by)));
  }

  function chartSeries(d) {
    const by = d.by;
    const plotted = plottedSet(d);
    const q = state.q.toLowerCase();
    const xs = [...new Set([...d.series.records, ...d.overallSeries.records].map((r) => Date.parse(r.window_start) / 1000))].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    // by=* has one line, all traffic: drawn once, as the dashed all-traffic series
    const values = by === "*" ? [] : d.ranked.records.map((r) => valueOf(r, by)).filter((v) => plotted.has(v) && (!q || v.toLowerCase().includes(q)));
    const lines = values.map((v) => ({ value: v, est: xs.map(() => null), lower: xs.map(() => null), upper: xs.map(() => null), n: xs.map(() => null) }));
    const byValue = new Map(lines.map((l) => [l.value, l]));
    const fill = (line, r) => {
      const i = index.get(Date.parse(r.window_start) / 1000);
      line.est[i] = r.estimate; line.lower[i] = r.lower; line.upper[i] = r.upper; line.n[i] = r.n;
    };
    for (const r of d.series.records) { const line = byValue.get(valueOf(r, by)); if (line) fill(line, r); }
    const all = { value: "all traffic", est: xs.map(() => null), lower: xs.map(() => null), upper: xs.map(() => null), n: xs.map(() => null) };
    for (const r of d.overallSeries.records) fill(all, r);
    return { xs, lines, all };
  }

  function drawBands(u, lines) {
    const ctx = u.ctx;
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
    const xs = u.data[0];
    lines.forEach((line, k) => {
      if (u.series[k + 1] && u.series[k + 1].show === false) return;
      ctx.fillStyle = line.color + "24";
      let run = [];
      const flush = () => {
        if (!run.length) return;
        ctx.beginPath();
        const px = run.map((i) => u.valToPos(xs[i], "x", true));
        const half = run.length === 1 ? 4 * devicePixelRatio : 0;
        run.forEach((i, j) => ctx.lineTo(px[j] - (j === 0 ? half : 0), u.valToPos(line.upper[i], "y", true)));
        if (half) ctx.lineTo(px[0] + half, u.valToPos(line.upper[run[0]], "y", true));
        if (half) ctx.lineTo(px[0] + half, u.valToPos(line.lower[run[0]], "y", true));
        for (let j = run.length - 1; j >= 0; j--) ctx.lineTo(px[j] - (j === 0 ? half : 0), u.valToPos(line.lower[run[j]], "y", true));
        ctx.closePath();
        ctx.fill();
        run = [];
      };
      xs.forEach((_, i) => { if (line.upper[i] !== null && line.lower[i] !== null) run.push(i); else flush(); });
      flush();
    });
    ctx.restore();
  }

  function renderChart(d, colors) {
    const box = $("trend");
    const { xs, lines, all } = chartSeries(d);
    view.plotted = lines.map((l) => l.value);
    view.chartData = { xs, lines, all };
    if (view.chart) { view.chart.destroy(); view.chart = null; }
    box.replaceChildren();
    $("trend-by").textContent = d.by === "*" ? "· all traffic" : `· by ${d.by}`;
    const from = Date.parse(d.series.since) / 1000, to = Date.parse(d.series.until) / 1000;
    $("trend-note").textContent = `${durationText(d.window)} windows · ${utc(from)} – ${utc(to).slice(to - from < DAY ? 11 : 0)} UTC`;
    for (const s of document.querySelectorAll(".level")) s.textContent = `${Math.round(d.config.level * 100)}%`;
    if (!xs.length) { box.append(el("p", { class: "empty", text: "No traces in this range." })); return; }
    const fmtN = (line) => (u, v, si, i) => (v === null || v === undefined ? "—" : `${fmt3(v)} (n=${line.n[i] ?? "—"})`);
    const half = d.window / 2;
    const single = d.by === "*";
    const bands = single ? [{ ...all, color: "#4a5568" }] : lines.map((l) => ({ ...l, color: colors.get(l.value) }));
    const opts = {
      ...chartSize(box),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      // the x axis spans the windows with traffic, each point at its window's middle
      scales: { x: { time: true, auto: false, range: [from, to] }, y: { auto: false, range: yRange([...lines, all]) } },
      axes: [
        { stroke: "#687385", grid: { stroke: "#eef1f5" }, space: 64,
          incrs: TICKS.filter((t) => t >= d.window),
          values: (u, ticks, ax, space, incr) => (view.xLabels = timeLabels(ticks, incr)) },
        { stroke: "#687385", grid: { stroke: "#eef1f5" }, label: "estimated accuracy", size: 46,
          values: (u, vals) => vals.map((v) => v.toFixed(2)) },
      ],
      series: [
        { label: "window (UTC)", value: (u, v) => (v === null || v === undefined ? "—" : `${utc(v - half)} – ${utc(v + half).slice(11)}`) },
        ...lines.map((line) => ({ label: line.value, stroke: colors.get(line.value), width: 2,
          points: { show: true, size: 5 }, spanGaps: false, value: fmtN(line) })),
        { label: "all traffic", stroke: "#4a5568", width: 2, dash: single ? undefined : [6, 4],
          points: { show: single, size: 5 }, spanGaps: false, value: fmtN(all) },
      ],
      hooks: { drawAxes: [(u) => drawBands(u, bands)] },
      focus: { alpha: 0.3 },
      cursor: { points: { size: 7 }, focus: { prox: 24 } },
    };
    view.chart = new uPlot(opts, [xs.map((x) => x + half), ...lines.map((l) => l.est), all.est], box);
  }

  // The time chart's size: its card's width, shorter on a phone.
  const chartSize = (box) => ({ width: Math.max(200, box.clientWidth), height: innerWidth < 640 ? 260 : 330 });

  function renderAlerts(d) {
    const list = d.alerts.alerts;
    $("alerts-count").textContent = String(list.length);
    $("alerts-count").className = "badge" + (list.length ? " bad" : "");
    const items = list.map((a) => {
      const ev = a.last_evidence || a.evidence || {};
      const dim = Object.keys(a.slice)[0] || "*";
      return el("li", { class: dim === d.by ? "" : "other-dim", "data-rule": a.rule, "data-slice": sliceText(a.slice) },
        el("div", { class: "what", text: `${sliceText(a.slice)}` },
          a.model ? el("span", { class: "muted small", text: ` · ${modelName(a.model)}` }) : ""),
        el("div", { class: "small", text: `${a.rule} · opened ${ago(a.opened_at)}` }),
        el("div", { class: "ev small", text: `estimate ${fmt3(ev.estimate)} [${fmt3(ev.lower)}, ${fmt3(ev.upper)}], n=${count(ev.n)}` +
          (ev.threshold !== undefined && ev.threshold !== null ? ` · threshold ${ev.threshold}` : "") +
          (ev.shift_word ? ` · ${ev.shift_word}` : "") +
          (ev.drop !== undefined && ev.drop !== null
            ? ` · previous ${fmt3(ev.reference_estimate)} (n=${count(ev.reference_n)}), drop ${fmt3(ev.drop)}, z ${ev.drop_z === null ? "—" : ev.drop_z.toFixed(1)}`
            : "") }));
    });
    $("alerts").replaceChildren(...(items.length ? items : [el("li", { class: "none", text: "No open alerts." })]));
    const rules = d.config.alert_rules;
    $("alert-rules").textContent = rules.length ? "Rules: " + rules.join("; ") : "No alert rules configured.";
  }

  function renderPriorities(d) {
    const body = $("priorities").tBodies[0];
    if (!d.priorities) {
      const why = "Choose a model: labels are per model.";
      body.replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "muted", text: why })));
      $("prio-target").textContent = "";
      return;
    }
    body.replaceChildren(...d.priorities.slices.map((s) =>
      el("tr", { "data-value": s.value },
        el("td", { text: String(s.rank) }),
        el("td", { class: "slice", title: s.value }, breakable(s.value === "*" ? "all traffic" : s.value)),
        el("td", { class: "num", text: fmt3(s.estimate) }),
        el("td", { class: "num", text: fmt3(s.uncertainty) }),
        el("td", { class: "num", text: fmt3(s.gap) }),
        el("td", { class: "num alloc", text: count(s.allocated) }))));
    $("prio-target").textContent = `Target: ${fmt3(d.priorities.target)} (all traffic).`;
  }

  // ------------------------------------------------------------------ labelling queue
  // The queue is the label requests of one /v1/priorities answer (the pending items of the
  // open labelling design for the dimension shown), kept while the dimension, range and
  // budget stay the same and the design is the same: the service keeps a design open
  // until none of its items is pending, then draws a new one; a sample is only unbiased
  // when all of it is labelled. Counts come from the answer's `design` (from what was
  // labelled and skipped in this page when an answer has none).
  const queueKey = (d) => `${d.chosen}|${d.by}|${d.since}|${state.budget}`;
  const SKIP = "skip";

  function syncQueue(d) {
    const p = d.priorities;
    const q = view.queue;
    const design = p.design || null;
    if (!q || q.key !== queueKey(d) || q.reload || (design && q.design && design.id !== q.design.id)) {
      view.queue = { key: queueKey(d), items: p.requests.slice(), done: {}, design, busy: false,
        status: q && q.key === queueKey(d) ? q.status : "", last: null };
    } else if (design) {
      q.design = design;
    }
  }

  const currentItem = (q) => q.items.find((it) => !(it.trace_id in q.done)) || null;

  function queueCounts(q) {
    if (q.design) return { size: q.design.size, labelled: q.design.labelled, skipped: q.design.skipped, pending: q.design.pending };
    const verdicts = Object.values(q.done);
    const skipped = verdicts.filter((v) => v === SKIP).length;
    const labelled = verdicts.length - skipped;
    return { size: q.items.length, labelled, skipped, pending: q.items.length - labelled - skipped };
  }

  // A prompt as text blocks: a string, or OpenAI chat messages (role, then content).
  function promptNodes(prompt) {
    if (typeof prompt === "string") return [prompt];
    if (!Array.isArray(prompt)) return [JSON.stringify(prompt)];
    return prompt.flatMap((m) => {
      const content = Array.isArray(m.content)
        ? m.content.map((part) => (typeof part === "string" ? part : part.text ?? "")).join("")
        : String(m.content ?? "");
      return [el("span", { class: "role", text: m.role || "message" }), content];
    });
  }

  // The label-corrected estimate of an item's slice (in the dimension shown), or null.
  function correctedOf(d, item) {
    const value = d.by === "*" ? "all traffic" : item.slice[d.by] ?? item.value;
    const rec = d.ranked.records.find((r) => valueOf(r, d.by) === value);
    return { value, estimate: rec && rec.label_corrected ? rec.label_corrected.estimate : null, n: rec ? rec.n_labelled : 0 };
  }

  function renderQueue(d) {
    if (!d.priorities) { // several models and none chosen: labels are per model
      view.queue = null;
      $("queue-by").textContent = "";
      $("queue-progress").textContent = "";
      $("queue-why").textContent = "Choose a model: labels are per model.";
      $("queue-item").hidden = true;
      $("queue-empty").hidden = true;
      return;
    }
    syncQueue(d);
    const q = view.queue;
    const c = queueCounts(q);
    const item = currentItem(q);
    $("queue-by").textContent = d.by === "*" ? "· all traffic" : `· by ${d.by}`;
    $("queue-progress").textContent = item ? `item ${q.items.indexOf(item) + 1} of ${q.items.length}` : "";
    const missing = c.pending + c.skipped;
    $("queue-why").replaceChildren(
      `${count(c.labelled)} of ${count(c.size)} drawn items labelled; `,
      el("span", { class: missing ? "missing" : "", text: `${count(missing)} still missing` }),
      c.skipped ? ` (${count(c.skipped)} skipped). ` : ". ",
      "The label-corrected estimates take these items as a random sample of their slice: " +
      "each missing one weakens them, and skipping the hard ones biases them (accuracy looks better than it is).");
    $("queue-item").hidden = !item;
    $("queue-empty").hidden = !!item;
    if (!item) {
      $("queue-empty").replaceChildren(
        q.items.length ? `Every item of this sample is done (${c.labelled} labelled, ${c.skipped} skipped). `
          : "Nothing to label in this range: every trace is labelled, or there is none. ",
        el("button", { type: "button", class: "button plain", id: "queue-reload", text: "Draw a new sample",
          onclick: () => { view.queue.reload = true; refresh(); } }));
    } else {
      // the estimator's P(correct) is not shown: it would anchor the annotator's verdict
      const facts = [
        `slice ${sliceText(item.slice)}`,
        typeof item.inclusion_probability === "number" ? `inclusion probability ${item.inclusion_probability.toPrecision(3)}` : null,
        `${utc(Date.parse(item.timestamp) / 1000)} UTC`,
        `id ${item.trace_id}`,
      ].filter(Boolean);
      $("queue-meta").replaceChildren(breakable(facts.join(" · ")));
      const hasText = item.prompt != null || item.answer != null; // null: not stored, or hidden
      const fill = (id, nodes) => {
        const box = $(id);
        box.classList.toggle("none", !nodes);
        box.replaceChildren(...(nodes || ["(not stored)"]));
      };
      fill("queue-prompt", item.prompt ? promptNodes(item.prompt) : null);
      fill("queue-answer", item.answer ? [String(item.answer)] : null);
      $("queue-item").querySelector(".qa").hidden = !hasText;
      const notext = $("queue-notext");
      notext.hidden = hasText;
      if (!hasText) {
        const meta = Object.keys(item.meta || {}).length ? JSON.stringify(item.meta) : "";
        notext.replaceChildren(
          "The service sent no prompt or response text with this item: it keeps text only when ",
          "configured to (opt-in, a privacy choice) and shows it only to API keys with the text ",
          "scope; see the service's docs (docs/service.md). Label it from its id",
          meta ? ", or from its metadata: " : ".",
          meta ? el("code", { text: meta.length > 400 ? meta.slice(0, 400) + "…" : meta }) : "");
      }
    }
    for (const b of $("queue-item").querySelectorAll("button")) b.disabled = q.busy;
    $("queue-status").textContent = q.status;
  }

  // Label (or skip) the queue's current item, then reload the page's estimates.
  async function verdict(kind) {
    const q = view.queue;
    const item = q && currentItem(q);
    if (!item || q.busy || !view.data) return;
    q.busy = true;
    renderQueue(view.data);
    const before = correctedOf(view.data, item);
    const label = kind === SKIP ? { id: item.trace_id, skipped: true } : { id: item.trace_id, correct: kind === "correct" };
    try {
      const out = await postJSON("/v1/labels", { labels: [label], source: "dashboard" });
      const problem = out.unknown.length ? `unknown id ${out.unknown[0]}` : out.rejections[0];
      if (problem) throw new Error(problem);
      q.done[item.trace_id] = kind;
      q.status = kind === SKIP ? `Skipped ${item.trace_id}.` : `Labelled ${item.trace_id} ${kind}.`;
      q.busy = false;
      await refresh();
      if (kind !== SKIP && view.data) {
        const after = correctedOf(view.data, item);
        view.queue.status += ` Label-corrected estimate of ${before.value}: ${fmt3(before.estimate)} → ${fmt3(after.estimate)} (${count(after.n)} labels).`;
      }
    } catch (err) {
      q.status = err instanceof AuthNeeded
        ? `Labelling needs an API key with the ingest scope: ${err.message}`
        : `Could not save the label: ${err.message || err}`;
      if (err instanceof AuthNeeded) { $("auth-why").textContent = q.status; $("auth").hidden = false; }
    } finally {
      q.busy = false;
      if (view.data) renderQueue(view.data);
    }
  }

  function renderModel(d) {
    const m = d.model;
    if (!m) {
      $("model").replaceChildren(el("dt", { text: "model" }), el("dd", { "data-fact": "model",
        text: "Choose a model to see its estimator's card." }));
      $("scorer").textContent = "";
      $("model-line").textContent = `${d.models.models.length} models`;
      if (view.reliability) { view.reliability.destroy(); view.reliability = null; }
      $("reliability").replaceChildren();
      return;
    }
    const card = m.card || {};
    const p = card.params || {}, f = card.features || {}, t = card.training || {}, met = card.metrics || {}, tu = card.tuning || {};
    const source = f.source === "logprobs" ? `top-${f.k} logprobs` : f.source === "precomputed" ? "precomputed per-token entropies" : (f.source || "—");
    const facts = [
      ...(m.model !== "" || m.other_model ? [["model", modelName(m.model) +
        (m.other_model ? ` · estimator ${fittedText({ fitted_on: m.fitted_on })}` : "")]] : []),
      ["family", `${p.family || "—"} · ${p.calibration || "no"} calibration${p.balance ? " · balanced" : ""}${p.blend && p.blend.length ? " · blended with " + p.blend.join(", ") : ""}`],
      ["features", `${f.set || "—"} (${f.n_features ?? (m.features || []).length}) · entropy ${f.entropy_mode || m.entropy_mode} from ${source}`],
      ["trained on", t.n !== undefined ? `${count(t.n)} labelled responses, accuracy ${fmt3(t.accuracy)}` +
        (t.slices ? ` · ${Object.keys(t.slices).length} ${t.slice_dimension || "slice"}s` : "") : "—"],
      ["CV AUROC", fmt3(met.cv_auroc)],
      ["Brier score", met.brier !== undefined ? `${fmt3(met.brier)} (before calibration ${fmt3(met.brier_uncalibrated)})` : "—"],
      ["calibration error", fmt3(met.ece)],
      ["model_sd", `${fmt3(m.model_sd)} (the classifier's error in its training distribution; intervals add calibration and transfer per slice)`],
      ["best setting", tu.best_params ? Object.entries(tu.best_params).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(", ") : "—"],
      ["recalibration", m.calibration ? (m.note || "active") : "none"],
      ["rescoring pending", count(m.rescore_pending)],
    ];
    $("model").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { "data-fact": k, text: v })]));
    $("scorer").textContent = `scorer ${m.scorer_id} · ${String(m.estimator_sha256 || "").slice(0, 12)}`;
    $("model-line").textContent = `${m.model ? modelName(m.model) + " · " : ""}model ${p.family || ""} · AUROC ${fmt3(met.cv_auroc)}`;
    const bins = (met.reliability || []).slice().sort((a, b) => a.mean_p - b.mean_p);
    const box = $("reliability");
    if (view.reliability) { view.reliability.destroy(); view.reliability = null; }
    box.replaceChildren();
    if (!bins.length) return;
    const xs = [0, ...bins.map((b) => b.mean_p), 1];
    view.reliability = new uPlot({
      width: Math.min(340, Math.max(200, box.clientWidth)), height: 240,
      scales: { x: { time: false, auto: false, range: [0, 1] }, y: { auto: false, range: [0, 1] } },
      axes: [{ label: "mean P(correct)", stroke: "#687385", grid: { stroke: "#eef1f5" } },
        { label: "observed accuracy", stroke: "#687385", grid: { stroke: "#eef1f5" } }],
      legend: { show: false },
      cursor: { show: false },
      series: [{}, { stroke: "#8a94a6", dash: [4, 4], width: 1, points: { show: false } },
        { stroke: "#2f6fdf", width: 2, points: { show: true, size: 6, fill: "#2f6fdf" } }],
    }, [xs, xs, [null, ...bins.map((b) => b.accuracy), null]], box);
  }

  function renderHealth(d) {
    const h = d.health;
    const pill = $("health");
    pill.textContent = h.status === "ok" ? "service ok" : `service ${h.status}`;
    pill.className = "pill " + (h.status === "ok" ? "ok" : "bad");
    pill.title = (h.problems || []).join("; ") || `${h.pending_traces ?? 0} traces queued`;
    $("updated").textContent = `updated ${utc(Date.now() / 1000).slice(11)} UTC · v${d.config.version}`;
  }

  function render(d) {
    const colors = colorMap(d.ranked, d.by);
    view.colors = Object.fromEntries(colors);
    renderFilters(d);
    renderModels(d);
    renderKpis(d);
    renderTable(d, colors);
    renderChart(d, colors);
    renderCompare(d);
    renderAlerts(d);
    renderPriorities(d);
    renderQueue(d);
    renderModel(d);
    renderHealth(d);
    view.data = d;
    view.renders += 1;
    document.body.dataset.renders = String(view.renders);
  }

  // ------------------------------------------------------------------ control
  let running = null;
  let again = false;
  async function refresh() {
    if (running) { again = true; return running; }
    running = (async () => {
      try {
        const d = await load();
        $("auth").hidden = true;
        view.error = null;
        $("error").hidden = true;
        render(d);
        writeHash();
      } catch (err) {
        view.error = String(err.message || err);
        if (err instanceof AuthNeeded) {
          $("auth-why").textContent = err.message;
          $("auth").hidden = false;
        } else {
          $("error").textContent = `Could not load: ${view.error}`;
          $("error").hidden = false;
        }
        document.body.dataset.error = view.error;
      } finally {
        running = null;
      }
      if (again) { again = false; await refresh(); }
    })();
    return running;
  }

  function togglePlot(value, on) {
    const set = new Set(plottedSet(view.data));
    if (on) set.add(value); else set.delete(value);
    state.plotted = set;
    writeHash();
    renderChart(view.data, new Map(Object.entries(view.colors)));
  }

  function wire() {
    $("by").addEventListener("change", (e) => { state.by = e.target.value; state.plotted = null; refresh(); });
    $("model-select").addEventListener("change", (e) => {
      state.model = e.target.value === "all" ? null : e.target.value.slice(2);
      state.vs = null; state.plotted = null; refresh();
    });
    $("vs-select").addEventListener("change", (e) => { state.vs = e.target.value === "none" ? null : e.target.value.slice(2); refresh(); });
    for (const b of $("range").querySelectorAll("button")) {
      b.addEventListener("click", () => { state.range = b.dataset.range; refresh(); });
    }
    let timer = null;
    $("q").addEventListener("input", (e) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        state.q = e.target.value.trim();
        writeHash();
        if (view.data) { applySearch(); renderChart(view.data, new Map(Object.entries(view.colors))); }
      }, 150);
    });
    $("budget").addEventListener("change", (e) => {
      const b = parseInt(e.target.value, 10);
      if (!(b > 0)) return;
      // the service keeps the open design whatever budget is asked; a new budget draws a
      // new sample only when asked to, since closing a design with items still pending
      // leaves those out (as skips would) and can bias its estimate
      const open = view.queue && view.queue.design;
      const pending = open ? open.pending : 0;
      view.redraw = b !== state.budget && (pending === 0 || window.confirm(
        `Draw a new sample for a budget of ${b}? ${pending} item(s) of the open one are not `
        + "labelled yet; leaving them out can bias the label-corrected estimates."));
      state.budget = b;
      refresh();
    });
    $("auto").addEventListener("change", (e) => { state.auto = e.target.checked; });
    $("download").addEventListener("click", async () => {
      if (!view.data || !view.data.priorities) return;
      const mp = view.data.chosen === null ? {} : { model: [view.data.chosen] };
      const r = await api("/v1/priorities", { budget: state.budget, by: view.data.by, since: view.data.since || "36500d", format: "csv", ...mp });
      const url = URL.createObjectURL(await r.blob());
      const a = el("a", { href: url, download: `to_label_${view.data.by === "*" ? "all" : view.data.by}.csv` });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    });
    for (const b of $("queue-item").querySelectorAll("button[data-verdict]")) {
      b.addEventListener("click", () => verdict(b.dataset.verdict));
    }
    const KEYS = { c: "correct", x: "incorrect", s: SKIP };
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || e.repeat || !(e.key in KEYS)) return;
      if (e.target.closest && e.target.closest("input, select, textarea, [contenteditable]")) return;
      if (!$("auth").hidden || $("queue-item").hidden) return;
      e.preventDefault();
      verdict(KEYS[e.key]);
    });
    $("auth-form").addEventListener("submit", (e) => {
      e.preventDefault();
      sessionStorage.setItem("sentinel-key", $("key").value.trim());
      refresh();
    });
    window.addEventListener("hashchange", () => { readHash(); refresh(); });
    let resize = null;
    window.addEventListener("resize", () => {
      clearTimeout(resize);
      resize = setTimeout(() => view.chart && view.chart.setSize(chartSize($("trend"))), 150);
    });
    setInterval(() => { if (state.auto && !document.hidden) refresh(); }, REFRESH_MS);
  }

  readHash();
  wire();
  refresh();
})();
