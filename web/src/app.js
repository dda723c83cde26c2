// The Trainyard dashboard: one page served by `yard server` under `/`, reading
// the API under /v1 with the page's session cookie. Live data comes from the
// job's event stream (one EventSource, only on a job's page) and from JSON
// routes read again every few seconds. No framework: small render functions
// that rebuild their part of the page.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const STATES = ["waiting", "requesting", "starting", "running", "succeeded", "failed", "cancelled"];
const LINE_HEIGHT = 18;
const BLOCK = 1000;  // lines per ranged fetch of a log
const EPOCH_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6, 1e7];

// Everything a view starts (timers, streams) is stopped when the next view
// is shown.
let cleanups = [];
function onLeave(fn) { cleanups.push(fn); }
function leaveView() { for (const fn of cleanups.splice(0)) { try { fn(); } catch (e) { /* gone */ } } }

// Charts by name, so tests and curious users can read their data:
// window.yardCharts["loss"].data -> [[x...], [y...], ...].
window.yardCharts = {};

// ------------------------------------------------------------------ helpers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, opts = {}) {
  const init = { credentials: "same-origin", headers: { "X-Yard-Dashboard": "1" }, ...opts };
  if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
  if (!res.ok) {
    const err = body && body.error ? body.error : { code: "unknown", message: text || res.statusText };
    throw new ApiError(res.status, err.code, err.message);
  }
  return body;
}

function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t * 1000);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function fmtDuration(s) {
  if (s === undefined || s === null || !isFinite(s)) return "";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${sec}s` : `${sec}s`;
}
function fmtMoney(v) { return v === undefined || v === null ? "" : "$" + Number(v).toFixed(v < 1 ? 4 : 2); }
function fmtNum(v) {
  if (typeof v !== "number") return String(v);
  return Math.abs(v) >= 1000 || Number.isInteger(v) ? String(v) : v.toPrecision(4);
}
function stateBadge(s) { return el("span", { class: `state state-${s}`, "data-state": s }, s); }
function jobDuration(j, now) {
  const end = TERMINAL.has(j.state) ? j.updated_at : now;
  return end - j.created_at;
}
function metricsText(m) {
  if (!m) return "";
  return Object.entries(m).filter(([k]) => !SKIP_KEYS.has(k))
    .map(([k, v]) => `${k} ${fmtNum(v)}`).join("  ");
}
const SKIP_KEYS = new Set(["epoch", "epochs", "event", "seconds", "samples_per_s", "step", "steps"]);

// Polls `fn` every `ms` while the view is shown (and once at once).
function every(ms, fn) {
  let stopped = false, timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { if (e instanceof ApiError && e.status === 401) return showSignIn(e.message); }
    if (!stopped) timer = setTimeout(tick, document.hidden ? ms * 3 : ms);
  };
  tick();
  onLeave(() => { stopped = true; clearTimeout(timer); });
}

// ------------------------------------------------------------------ routing

function go(path) {
  history.pushState(null, "", path);
  route();
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a");
  if (!a || a.target || a.hasAttribute("download") || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/v1/")) return;
  ev.preventDefault();
  go(url.pathname + url.search);
});
window.addEventListener("popstate", () => route());

let me = null;

async function route() {
  leaveView();
  const path = location.pathname;
  for (const a of document.querySelectorAll("[data-nav]"))
    a.classList.toggle("active", path.startsWith("/" + a.dataset.nav));
  if (!me) return;
  const m = path.match(/^\/jobs\/([A-Za-z0-9_-]+)$/);
  if (m) return showJob(m[1]);
  if (path.startsWith("/compare")) return showCompare(new URLSearchParams(location.search));
  if (path.startsWith("/machines")) return showMachines();
  if (path.startsWith("/cost")) return showCost();
  return showJobs();
}

// ------------------------------------------------------------------ sign-in

async function boot() {
  setupTheme();
  // A login link: /login#code=... Drop the code from the address (and so from
  // the history) before anything else, then trade it for a session cookie.
  if (location.pathname === "/login" && location.hash.startsWith("#code=")) {
    const code = location.hash.slice(6);
    history.replaceState(null, "", "/jobs");
    try {
      await api("/v1/dashboard/session", { method: "POST", body: { code } });
    } catch (e) {
      return showSignIn(e.message);
    }
  } else if (location.pathname === "/login") {
    history.replaceState(null, "", "/jobs");
  }
  try {
    me = await api("/v1/dashboard/me");
  } catch (e) {
    return showSignIn(e.status === 401 ? "" : e.message);
  }
  showWho();
  route();
}

// A session of a read token watches only: no Cancel or End (the API would
// answer 403 naming the scope needed).
const mayChange = () => !!me && me.scope !== "read";

function showWho() {
  const who = $("#who");
  who.replaceChildren(me.user, me.scope === "read" ? " (read only)" : "", " · ", el("a", { href: "#", onclick: async (ev) => {
    ev.preventDefault();
    await api("/v1/dashboard/logout", { method: "POST", body: {} });
    me = null;
    showSignIn("");
  } }, "sign out"));
}

function showSignIn(message) {
  leaveView();
  me = null;
  $("#who").replaceChildren();
  const input = el("input", { type: "password", placeholder: "yut_…", autocomplete: "off", id: "token" });
  const form = el("form", { class: "signin", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api("/v1/dashboard/session", { method: "POST", body: { token: input.value.trim() } });
      input.value = "";
      me = await api("/v1/dashboard/me");
      showWho();
      route();
    } catch (e) { $(".error", form).textContent = e.message; }
  } },
    el("h1", {}, "Sign in"),
    el("p", { class: "muted" }, "Run ", el("code", {}, "yard dashboard"),
      " to open this page signed in, or paste a user token (", el("code", {}, "yard token create USER"), ")."),
    input, el("button", { type: "submit" }, "Sign in"),
    el("p", { class: "error" }, message || ""));
  main().replaceChildren(form);
}

function setupTheme() {
  const saved = localStorage.getItem("yard-theme");
  if (saved) document.documentElement.dataset.theme = saved;
  $("#theme").addEventListener("click", () => {
    const dark = document.documentElement.dataset.theme
      ? document.documentElement.dataset.theme === "dark"
      : matchMedia("(prefers-color-scheme: dark)").matches;
    const next = dark ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("yard-theme", next);
    for (const fn of themeListeners) fn();
  });
}
const themeListeners = new Set();

// ------------------------------------------------------------------ jobs

const selected = new Set();  // job ids chosen for Compare

function showJobs() {
  const params = new URLSearchParams(location.search);
  const state = el("select", { id: "state-filter" }, el("option", { value: "" }, "all states"),
    STATES.map((s) => el("option", { value: s }, s)));
  state.value = params.get("state") || "";
  const search = el("input", { type: "search", id: "search", placeholder: "search descriptions",
    value: params.get("q") || "" });
  const compare = el("button", { id: "compare-selected", onclick: () => go("/compare?jobs=" + [...selected].join(",")) });
  const body = el("tbody");
  const table = el("div", { class: "table-wrap" }, el("table", { id: "jobs" },
    el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "job"), el("th", {}, "state"),
      el("th", {}, "description"), el("th", { class: "hide-narrow" }, "machine type"),
      el("th", { class: "hide-narrow" }, "instance"), el("th", { class: "hide-narrow" }, "started"),
      el("th", { class: "num" }, "duration"), el("th", {}, "latest metrics"), el("th", { class: "num" }, "cost"))),
    body));
  main().replaceChildren(el("h1", {}, "Jobs"),
    el("div", { class: "toolbar" }, state, search, compare), table);
  let jobs = [];
  const updateCompare = () => {
    compare.textContent = `Compare selected (${selected.size})`;
    compare.disabled = selected.size === 0;
  };
  const render = (now) => {
    body.replaceChildren(...jobs.map((j) => el("tr", { "data-job": j.id },
      el("td", {}, el("input", { type: "checkbox", checked: selected.has(j.id), "aria-label": "select " + j.id,
        onchange: (ev) => { ev.target.checked ? selected.add(j.id) : selected.delete(j.id); updateCompare(); } })),
      el("td", {}, el("a", { href: "/jobs/" + j.id }, j.id)),
      el("td", {}, stateBadge(j.state)),
      el("td", { class: "desc" }, j.description),
      el("td", { class: "hide-narrow" }, j.machine_type),
      el("td", { class: "hide-narrow" }, j.instance),
      el("td", { class: "hide-narrow" }, fmtTime(j.created_at)),
      el("td", { class: "num" }, fmtDuration(jobDuration(j, now))),
      el("td", { class: "metrics" }, metricsText(j.latest_metrics)),
      el("td", { class: "num" }, fmtMoney(j.cost)))));
    if (!jobs.length) body.append(el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No jobs yet: yard submit train.py")));
  };
  const load = async () => {
    const q = new URLSearchParams();
    if (state.value) q.set("state", state.value);
    if (search.value) q.set("q", search.value);
    const r = await api("/v1/dashboard/jobs?" + q);
    jobs = r.jobs;
    render(r.as_of);
  };
  const refilter = () => {
    const q = new URLSearchParams();
    if (state.value) q.set("state", state.value);
    if (search.value) q.set("q", search.value);
    history.replaceState(null, "", "/jobs" + (q.toString() ? "?" + q : ""));
    load();
  };
  state.addEventListener("change", refilter);
  search.addEventListener("input", refilter);
  updateCompare();
  every(2000, load);
}

// ------------------------------------------------------------------ one job

async function showJob(id) {
  let job;
  try {
    job = (await api("/v1/jobs/" + id)).job;
  } catch (e) {
    if (e.status === 401) return showSignIn(e.message);
    main().replaceChildren(el("h1", {}, "No such job"),
      el("p", { class: "muted", id: "not-found" }, `${id}: ${e.message}`));
    return;
  }
  const facts = el("div", { class: "facts" });
  const cancel = el("button", { class: "danger", id: "cancel", onclick: async () => {
    if (!confirm(`Cancel ${id}? It ends the job and everything it started.`)) return;
    cancel.disabled = true;
    cancel.textContent = "Cancelling…";
    // The job's state then arrives as events (the reply may predate them).
    try { await api(`/v1/jobs/${id}/cancel`, { method: "POST", body: {} }); }
    catch (e) { alert(e.message); cancel.disabled = false; cancel.textContent = "Cancel"; }
  } }, "Cancel");
  const title = el("h1", {}, id, " ", el("span", { id: "job-state" }));
  const curves = new Curves(el("div", { class: "charts", id: "charts" }));
  const log = new LogView(id);
  const timeline = el("ul", { class: "timeline", id: "timeline" });
  const files = el("div", { id: "files" });
  const cmd = el("div", { id: "command" });
  main().replaceChildren(title, el("div", { class: "toolbar" }, cancel,
    el("a", { href: `/compare?jobs=${id}` }, "compare with…")), facts,
    el("h2", {}, "Curves"), curves.root,
    el("h2", {}, "Output"), log.root,
    el("h2", {}, "Timeline"), timeline,
    el("h2", {}, "Checkpoints, logs, outputs and work files"), files,
    el("h2", {}, "Command and settings"), cmd);
  let cost = 0;
  const renderHead = () => {
    $("#job-state").replaceChildren(stateBadge(job.state));
    cancel.hidden = TERMINAL.has(job.state) || !mayChange();
    const now = Date.now() / 1000;
    facts.replaceChildren(...[
      ["description", job.description || "—"], ["machine type", job.machine_type || "—"],
      ["instance", job.instance || "—"], ["started", fmtTime(job.created_at)],
      ["duration", fmtDuration(jobDuration(job, now))], ["cost so far", fmtMoney(cost)],
      ["attempt", job.attempt], ["exit code", job.exit_code ?? "—"], ["message", job.message || "—"],
    ].map(([k, v]) => el("div", {}, el("span", {}, k), String(v))));
    cmd.replaceChildren(el("pre", { class: "cmd" }, job.command.join(" ")),
      el("div", { class: "muted" }, "machines: " + job.machines.join(", ")),
      el("div", { class: "muted" }, "settings: " + (job.settings ?
        Object.entries(job.settings).map(([k, v]) => `${k}=${v}`).join(" ") : "none")));
  };
  renderHead();
  const addTimeline = (ev) => {
    if (ev.kind === "metric" || ev.kind === "artifact_part") return;  // parts: for mirrors
    const what = ev.kind === "state" ? `${ev.state}${ev.message ? ": " + ev.message : ""}`
      : ev.kind === "artifact" ? `${ev.dir}/${ev.entry && ev.entry.path}` : ev.message || ev.kind;
    timeline.append(el("li", { "data-kind": ev.kind }, el("time", {}, fmtTime(ev.time)), `${ev.kind} · ${what}`));
  };
  const refreshFiles = async () => {
    const { artifacts } = await api(`/v1/jobs/${id}/artifacts`);
    files.replaceChildren(artifacts.length ? el("div", { class: "table-wrap" }, el("table", {}, el("tbody", {},
      artifacts.map((a) => el("tr", {}, el("td", {}, a.dir), el("td", {}, el("a", {
        href: `/v1/jobs/${id}/file?dir=${encodeURIComponent(a.dir)}&path=${encodeURIComponent(a.entry.path)}`,
        download: a.entry.path.split("/").pop() }, a.entry.path)),
      el("td", { class: "num" }, (a.entry.size ?? 0) + " B")))))) : el("p", { class: "muted" }, "None yet."));
  };
  const applyState = (ev) => {
    if (ev.kind !== "state") return;
    job.state = ev.state;
    job.updated_at = ev.time;
    if (ev.message) job.message = ev.message;
    if (ev.exit_code !== undefined) job.exit_code = ev.exit_code;
  };
  // History first (timeline and the log's tail), then the stream after it.
  const [tl] = await Promise.all([api(`/v1/jobs/${id}/timeline`), log.open()]);
  for (const ev of tl.events) { addTimeline(ev); curves.add(ev); applyState(ev); }
  renderHead();
  curves.draw();
  refreshFiles();
  every(5000, async () => {
    const c = await api("/v1/cost");
    cost = c.by_job[id] || 0;
    renderHead();
  });
  // The stream starts after what both the timeline and the log have read.
  const after = Math.min(tl.seq, log.seq);
  if (TERMINAL.has(job.state) && after >= job.last_seq) return;
  const es = follow(id, after, (ev) => {
    if (ev.seq <= tl.seq && ev.kind !== "output") return;  // already shown
    if (ev.kind === "output") { if (ev.seq > log.seq) log.append(ev.data, ev.seq); return; }
    addTimeline(ev);
    curves.add(ev);
    curves.draw();
    if (ev.kind === "artifact") refreshFiles();
    if (ev.kind === "state") {
      applyState(ev);
      renderHead();
      // The server ends the stream after the final state; EventSource would
      // reconnect, so close it.
      if (TERMINAL.has(ev.state)) es.close();
    }
  });
}

// One EventSource for the job (the server holds a worker thread per stream);
// it resumes by itself with Last-Event-ID after a broken connection.
function follow(id, after, onEvent) {
  const es = new EventSource(`/v1/jobs/${id}/events?after=${after}`);
  es.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (e) { console.error(e); } };
  es.onerror = () => { if (es.readyState === EventSource.CLOSED) es.close(); };
  onLeave(() => es.close());
  return es;
}

// ------------------------------------------------------------------ the log

// A virtualised view of a job's output: only the lines on screen are in the
// page; blocks of BLOCK lines are fetched when scrolled to. Opens at the
// tail and follows it while scrolled to the bottom.
class LogView {
  constructor(id) {
    this.id = id;
    this.total = 0;
    this.partial = false;  // the last line has no newline yet
    this.blocks = new Map();  // block index -> array of lines
    this.loading = new Set();
    this.seq = 0;
    this.hits = new Set();
    this.spacer = el("div", { class: "spacer" });
    this.rows = el("div", { class: "rows" });
    this.box = el("div", { class: "log", id: "log", tabindex: 0 }, this.spacer, this.rows);
    this.box.addEventListener("scroll", () => this.paint());
    const search = el("input", { type: "search", placeholder: "search output", id: "log-search" });
    const hits = el("span", { class: "muted", id: "log-hits" });
    const next = el("button", { type: "button", onclick: () => this.nextHit(1) }, "next");
    search.addEventListener("change", () => this.search(search.value, hits));
    this.root = el("div", {}, el("div", { class: "toolbar" }, search, next, hits,
      el("span", { class: "muted", id: "log-count" }),
      el("a", { href: `/v1/jobs/${id}/log`, download: `${id}.log`, id: "log-download" }, "download whole log")),
      this.box);
    this.hitList = [];
    this.hitAt = -1;
    new ResizeObserver(() => this.paint()).observe(this.box);
  }

  async open() {
    const r = await api(`/v1/jobs/${this.id}/lines?from=-${BLOCK}&count=${BLOCK}`);
    this.total = r.total;
    this.partial = r.partial;
    this.seq = r.seq;
    this.store(r.from, r.lines);
    this.resize();
    this.box.scrollTop = this.box.scrollHeight;
    this.paint();
  }

  store(from, lines) {
    for (let i = 0; i < lines.length; i++) {
      const n = from + i, b = Math.floor(n / BLOCK);
      if (!this.blocks.has(b)) this.blocks.set(b, []);
      this.blocks.get(b)[n % BLOCK] = lines[i];
    }
  }
  line(n) { const b = this.blocks.get(Math.floor(n / BLOCK)); return b ? b[n % BLOCK] : undefined; }

  atBottom() { return this.box.scrollTop + this.box.clientHeight >= this.box.scrollHeight - 2 * LINE_HEIGHT; }

  // Chrome caps an element's height at ~16M px; past that, lines share pixels.
  scale() { return Math.min(1, 15e6 / Math.max(1, this.total * LINE_HEIGHT)); }
  resize() {
    this.spacer.style.height = Math.ceil(this.total * LINE_HEIGHT * this.scale()) + "px";
    $("#log-count", this.root).textContent = `${this.total.toLocaleString()} lines`;
  }

  append(data, seq) {
    this.seq = seq;
    if (!data) return;
    const stick = this.atBottom();
    let n = this.total, text = data;
    if (this.partial && n > 0) { n -= 1; text = (this.line(n) || "") + data; }
    const pieces = text.split("\n");
    this.partial = pieces[pieces.length - 1] !== "";
    if (!this.partial) pieces.pop();
    this.store(n, pieces);
    this.total = n + pieces.length;
    this.resize();
    if (stick) this.box.scrollTop = this.box.scrollHeight;
    this.paint();
  }

  paint() {
    const s = this.scale(), h = LINE_HEIGHT * s;
    const first = Math.max(0, Math.floor(this.box.scrollTop / h) - 5);
    const count = Math.ceil(this.box.clientHeight / LINE_HEIGHT) + 10;
    const last = Math.min(this.total, first + count);
    const missing = [];
    const rows = [];
    for (let n = first; n < last; n++) {
      const text = this.line(n);
      if (text === undefined) missing.push(n);
      const marker = text !== undefined && text.startsWith("-----") && text.includes("requeued");
      rows.push(el("div", { class: "row" + (this.hits.has(n) ? " hit" : "") + (marker ? " marker" : ""),
        "data-line": n }, text === undefined ? "…" : text));
    }
    this.rows.style.top = Math.floor(first * h) + "px";
    this.rows.replaceChildren(...rows);
    for (const b of new Set(missing.map((n) => Math.floor(n / BLOCK)))) this.fetchBlock(b);
  }

  async fetchBlock(b) {
    if (this.loading.has(b)) return;
    this.loading.add(b);
    try {
      const r = await api(`/v1/jobs/${this.id}/lines?from=${b * BLOCK}&count=${BLOCK}`);
      this.store(r.from, r.lines);
      this.paint();
    } finally { this.loading.delete(b); }
  }

  async search(text, hitsEl) {
    this.hits.clear();
    this.hitList = [];
    this.hitAt = -1;
    if (text) {
      const r = await api(`/v1/jobs/${this.id}/lines?grep=${encodeURIComponent(text)}`);
      this.hitList = r.matches;
      for (const n of r.matches) this.hits.add(n);
      hitsEl.textContent = `${r.matches.length}${r.more ? "+" : ""} matching lines`;
      this.nextHit(1);
    } else hitsEl.textContent = "";
    this.paint();
  }

  nextHit(dir) {
    if (!this.hitList.length) return;
    this.hitAt = (this.hitAt + dir + this.hitList.length) % this.hitList.length;
    const n = this.hitList[this.hitAt];
    this.box.scrollTop = n * LINE_HEIGHT * this.scale() - this.box.clientHeight / 2;
    this.paint();
  }
}

// ------------------------------------------------------------------ curves

// Metric events become one chart per metric name (val_X drawn beside X),
// x = epoch (fractional within an epoch when progress events give
// step/steps). A later attempt of a requeued job replaces the epochs it
// reports again; each requeue is marked by a dashed line.
class Curves {
  constructor(root) {
    this.root = root;
    this.points = new Map();  // family -> Map(series -> Map(x -> y))
    this.requeues = [];
    this.lastX = 0;
    this.charts = new Map();
    this.dirty = false;
    this.empty = el("p", { class: "muted" }, "No metrics reported yet (write JSON lines to $YARD_METRICS).");
    root.append(this.empty);
    themeListeners.add(() => { for (const c of this.charts.values()) c.destroy(); this.charts.clear(); this.draw(); });
  }

  add(ev) {
    if (ev.kind === "state" && ev.state === "requesting" && /requeued/.test(ev.message || "")) {
      this.requeues.push(this.lastX);
      this.dirty = true;
      return;
    }
    if (ev.kind !== "metric" || !ev.values || typeof ev.values !== "object") return;
    const v = ev.values;
    let x;
    if (v.event === "progress" && typeof v.step === "number" && v.steps) x = (v.epoch || 1) - 1 + v.step / v.steps;
    else if (v.event) return;
    else if (typeof v.epoch === "number") x = v.epoch;
    else if (typeof v.step === "number") x = v.step;
    else x = this.lastX + 1;
    this.lastX = x;
    for (const [k, y] of Object.entries(v)) {
      if (SKIP_KEYS.has(k) || typeof y !== "number" || !isFinite(y)) continue;
      const family = k.startsWith("val_") ? k.slice(4) : k;
      const series = v.event === "progress" ? k + " (within epoch)" : k;
      if (!this.points.has(family)) this.points.set(family, new Map());
      const fam = this.points.get(family);
      if (!fam.has(series)) fam.set(series, new Map());
      fam.get(series).set(x, y);
    }
    this.dirty = true;
  }

  // Rebuilds the data of every chart (cheap: a few series of epochs).
  draw() {
    if (!this.dirty && this.charts.size) return;
    this.dirty = false;
    if (this.points.size) this.empty.remove();
    for (const [family, fam] of this.points) {
      const names = [...fam.keys()].sort();
      const xs = [...new Set(names.flatMap((n) => [...fam.get(n).keys()]))].sort((a, b) => a - b);
      const data = [xs, ...names.map((n) => xs.map((x) => fam.get(n).has(x) ? fam.get(n).get(x) : null))];
      let chart = this.charts.get(family);
      if (chart && chart.series.length - 1 !== names.length) { chart.destroy(); chart.root.parentNode.remove(); chart = null; }
      if (!chart) chart = this.create(family, names, data);
      else chart.setData(data);
      chart.requeues = this.requeues;
    }
  }

  create(family, names, data) {
    const box = el("div", { class: "chart", "data-metric": family }, el("h3", {}, family));
    this.root.append(box);
    const styles = getComputedStyle(document.documentElement);
    const fg = styles.getPropertyValue("--muted").trim() || "#888";
    const grid = styles.getPropertyValue("--line").trim() || "#ddd";
    const palette = ["#0b62d6", "#e36209", "#1a7f37", "#8250df", "#cf222e", "#0598bc"];
    const curves = this;
    const opts = {
      width: Math.max(280, box.clientWidth - 12), height: 220,
      scales: { x: { time: false } },
      // Ticks on whole epochs (points within an epoch fall between them).
      axes: [{ stroke: fg, grid: { stroke: grid }, label: "epoch", incrs: EPOCH_TICKS },
        { stroke: fg, grid: { stroke: grid } }],
      series: [{ label: "epoch" }, ...names.map((n, i) => ({
        label: n, stroke: palette[i % palette.length], width: 2, spanGaps: true,
        dash: n.startsWith("val_") ? [6, 3] : undefined,
        points: { show: true, size: n.includes("within") ? 0 : 5 } }))],
      hooks: { draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "#d29922";
        ctx.setLineDash([4, 4]);
        for (const x of curves.requeues) {
          const px = u.valToPos(x, "x", true);
          ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke();
        }
        ctx.restore();
      }] },
    };
    const chart = new uPlot(opts, data, box);
    new ResizeObserver(() => chart.setSize({ width: Math.max(280, box.clientWidth - 12), height: 220 })).observe(box);
    this.charts.set(family, chart);
    window.yardCharts[family] = chart;
    onLeave(() => { chart.destroy(); delete window.yardCharts[family]; });
    return chart;
  }
}

// ------------------------------------------------------------------ compare

function paramsOf(job) {
  const out = {};
  const cmd = job.command || [];
  for (let i = 0; i < cmd.length; i++) {
    const m = /^--([A-Za-z0-9_.-]+)(?:=(.*))?$/.exec(cmd[i]);
    if (!m) continue;
    if (m[2] !== undefined) out[m[1]] = m[2];
    else if (i + 1 < cmd.length && !cmd[i + 1].startsWith("--")) out[m[1]] = cmd[++i];
    else out[m[1]] = "true";
  }
  return out;
}

// Jobs submitted together with the same command but other --options: a sweep.
function sweepOf(job, jobs) {
  const base = (j) => (j.command || []).filter((a) => !a.startsWith("--")).slice(0, 2).join(" ");
  return jobs.filter((j) => base(j) === base(job) && Math.abs(j.created_at - job.created_at) < 30);
}

async function showCompare(params) {
  const ids = (params.get("jobs") || "").split(",").filter(Boolean);
  const { jobs: all } = await api("/v1/dashboard/jobs?limit=200");
  const chooser = el("div", { class: "toolbar" }, "Jobs: ", all.slice(0, 50).map((j) =>
    el("label", {}, el("input", { type: "checkbox", checked: ids.includes(j.id), onchange: (ev) => {
      const next = new Set(ids);
      ev.target.checked ? next.add(j.id) : next.delete(j.id);
      go("/compare?jobs=" + [...next].join(","));
    } }), " ", j.id, j.description ? ` (${j.description})` : "")));
  if (ids.length === 1) {
    const one = all.find((j) => j.id === ids[0]);
    const sweep = one ? sweepOf(one, all) : [];
    if (sweep.length > 1) chooser.prepend(el("button", { onclick: () =>
      go("/compare?jobs=" + sweep.map((j) => j.id).join(",")) }, `select its sweep (${sweep.length})`));
  }
  const charts = el("div", { class: "charts", id: "charts" });
  const table = el("div", { class: "table-wrap" });
  main().replaceChildren(el("h1", {}, "Compare"), chooser, el("h2", {}, "Curves"), charts,
    el("h2", {}, "Parameters"), table);
  if (!ids.length) { charts.append(el("p", { class: "muted" }, "Select jobs above (or on the Jobs page).")); return; }
  const chosen = ids.map((id) => all.find((j) => j.id === id)).filter(Boolean);
  const params2 = chosen.map(paramsOf);
  const keys = [...new Set(params2.flatMap((p) => Object.keys(p)))].sort();
  const metricKeys = [...new Set(chosen.flatMap((j) => Object.keys(j.latest_metrics || {})))]
    .filter((k) => !SKIP_KEYS.has(k)).sort();
  table.append(el("table", { id: "params" }, el("thead", {}, el("tr", {}, el("th", {}, "job"), el("th", {}, "state"),
    el("th", {}, "description"), keys.map((k) => el("th", {}, k)), metricKeys.map((k) => el("th", { class: "num" }, k)))),
  el("tbody", {}, chosen.map((j, i) => el("tr", {}, el("td", {}, el("a", { href: "/jobs/" + j.id }, j.id)),
    el("td", {}, stateBadge(j.state)), el("td", { class: "desc" }, j.description),
    keys.map((k) => el("td", {}, params2[i][k] ?? "")),
    metricKeys.map((k) => el("td", { class: "num" }, j.latest_metrics && k in j.latest_metrics ? fmtNum(j.latest_metrics[k]) : "")))))));
  // One Curves per job gives its epochs; overlay them per metric name.
  const perJob = await Promise.all(chosen.map(async (j) => {
    const tl = await api(`/v1/jobs/${j.id}/timeline`);
    const c = new Curves(el("div"));
    for (const ev of tl.events) c.add(ev);
    return c;
  }));
  const overlay = new Curves(charts);
  for (let i = 0; i < chosen.length; i++)
    for (const [family, fam] of perJob[i].points)
      for (const [series, pts] of fam) {
        if (series.includes("within")) continue;
        if (!overlay.points.has(family)) overlay.points.set(family, new Map());
        overlay.points.get(family).set(`${chosen[i].id} ${series}`, pts);
      }
  overlay.dirty = true;
  overlay.draw();
}

// ------------------------------------------------------------------ machines

function showMachines() {
  const body = el("tbody");
  main().replaceChildren(el("h1", {}, "Machines"), el("div", { class: "table-wrap" }, el("table", { id: "instances" },
    el("thead", {}, el("tr", {}, ["instance", "state", "type", "market", "age", "idle", "price / h", "job", ""]
      .map((h, i) => el("th", { class: i >= 4 && i <= 6 ? "num" : "" }, h)))), body)),
  el("p", { class: "muted" }, "A cooling spot instance costs its spot price for 10 minutes, then more each minute up to on-demand: end it when you are done."));
  every(2000, async () => {
    const { instances } = await api("/v1/machines");
    body.replaceChildren(...instances.map((i) => el("tr", { "data-instance": i.id },
      el("td", {}, i.id), el("td", {}, stateBadge(i.state)), el("td", {}, i.machine_type), el("td", {}, i.market),
      el("td", { class: "num" }, fmtDuration(i.age_s)), el("td", { class: "num" }, i.idle_s ? fmtDuration(i.idle_s) : ""),
      el("td", { class: "num price" }, i.price_per_hour !== undefined ? fmtMoney(i.price_per_hour) : ""),
      el("td", {}, i.job ? el("a", { href: "/jobs/" + i.job }, i.job) : ""),
      el("td", {}, mayChange() && (i.state === "cooling" || i.state === "idle") ? el("button", { class: "danger", onclick: async (ev) => {
        ev.target.disabled = true;
        try { await api("/v1/instances/down", { method: "POST", body: { instance: i.id } }); }
        catch (e) { alert(e.message); }
      } }, "End") : ""))));
    if (!instances.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No live instances.")));
  });
}

// ------------------------------------------------------------------ cost

function showCost() {
  const box = el("div");
  main().replaceChildren(el("h1", {}, "Cost"), box);
  const sumBy = (entries, key) => {
    const m = new Map();
    for (const e of entries) {
      const k = key(e);
      const row = m.get(k) || { running: 0, cooling: 0 };
      row[e.kind === "cooling" ? "cooling" : "running"] += e.cost;
      m.set(k, row);
    }
    return [...m.entries()].sort((a, b) => (b[1].running + b[1].cooling) - (a[1].running + a[1].cooling));
  };
  const table = (title, rows, link) => el("div", {}, el("h2", {}, title), el("div", { class: "table-wrap" },
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, title.replace("Per ", "")), el("th", { class: "num" }, "running"),
      el("th", { class: "num" }, "cooling"), el("th", { class: "num" }, "total"))),
    el("tbody", {}, rows.map(([k, r]) => el("tr", {}, el("td", {}, link ? link(k) : k),
      el("td", { class: "num" }, fmtMoney(r.running)), el("td", { class: "num" }, fmtMoney(r.cooling)),
      el("td", { class: "num" }, fmtMoney(r.running + r.cooling))))))));
  every(5000, async () => {
    const c = await api("/v1/cost");
    const day = (e) => new Date(e.start * 1000).toISOString().slice(0, 10);
    box.replaceChildren(
      el("div", { class: "facts", id: "cost-totals" },
        el("div", {}, el("span", {}, "total"), fmtMoney(c.total)),
        el("div", {}, el("span", {}, "running"), fmtMoney(c.by_kind.running || 0)),
        el("div", {}, el("span", {}, "cooling"), fmtMoney(c.by_kind.cooling || 0))),
      table("Per job", sumBy(c.entries.filter((e) => e.job), (e) => e.job), (k) => el("a", { href: "/jobs/" + k }, k)),
      table("Per instance", sumBy(c.entries, (e) => e.instance)),
      table("Per day", sumBy(c.entries, day)));
  });
}

boot();
