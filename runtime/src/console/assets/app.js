// The Weir console: draws the dataflow from /console/graph once, then applies the live
// updates of /console/live (server-sent events, one a second). No framework, no build step.
"use strict";

const ago = (ms) => {
  if (ms < 0) ms = 0;
  if (ms < 1000) return "now";
  const s = ms / 1000;
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return (s / 3600).toFixed(1) + " h ago";
};
const duration = (ms) => (ms === null || ms === undefined ? "–" : ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(2) + " s");
// A span of time as a person reads it: event time can be days behind the clock.
const span = (ms) => {
  if (ms === null || ms === undefined) return "–";
  if (ms < 120 * 1000) return duration(ms);
  const m = ms / 60000;
  if (m < 120) return m.toFixed(0) + " min";
  const h = m / 60;
  return h < 48 ? h.toFixed(1) + " h" : (h / 24).toFixed(1) + " days";
};
const kindText = (k) => (typeof k === "string" ? k : k.stop ? (k.stop.savepoint ? "stop + savepoint" : "stop") : JSON.stringify(k));

let graph = null;
let live = null;

// ---- dataflow ----------------------------------------------------------------------------

function opRow(id, text, stateful) {
  // A source reads no records from upstream: only its output is counted.
  return el("div", { class: "op" + (stateful ? " stateful" : ""), "data-op": id },
    el("div", { class: "text", text }),
    el("div", { class: "nums" },
      id === "source" ? "" : el("span", {}, "in ", el("b", { class: "in", "data-rate": "0", text: "–" }), "/s"),
      el("span", {}, "out ", el("b", { class: "out", "data-rate": "0", text: "–" }), "/s"),
      stateful ? el("span", {}, "state ", el("b", { class: "state", text: "–" })) : ""));
}

function drawGraph(g) {
  const box = $("#graph");
  box.textContent = "";
  $("#form").textContent = `${g.form} · ${g.stages.length} stage(s) × ${g.parallelism} · ${g.maxParallelism} key groups`;
  const depth = [];
  const depthOf = (i) => {
    if (depth[i] !== undefined) return depth[i];
    const ins = g.edges.filter((e) => e.to === i);
    depth[i] = ins.length ? 1 + Math.max(...ins.map((e) => depthOf(e.from))) : 0;
    return depth[i];
  };
  g.stages.forEach((s) => depthOf(s.index));
  const last = Math.max(0, ...depth) + 1;
  const columns = Array.from({ length: last + 1 }, () => el("div", { class: "column" }));
  for (const s of g.stages) {
    const ins = g.edges.filter((e) => e.to === s.index).map((e) => `stage ${e.from} by ${e.how}`);
    const node = el("div", { class: "node", id: "stage-" + s.index },
      el("h4", { text: `stage ${s.index} × ${g.parallelism}` }, ins.length ? el("small", { text: " ← " + ins.join(", ") }) : ""),
      el("div", { class: "subtasks", "data-stage": String(s.index), title: "each subtask's share of time working (busy) and waiting on a full channel downstream (bp: backpressure)" }),
      el("div", { class: "stage-wm", "data-stage": String(s.index), title: "the event time every operator of this stage has reached: the lowest watermark of its subtasks" }));
    if (s.source) node.append(opRow("source", "source " + s.source, false));
    for (const o of s.operators) node.append(opRow(o.id, o.text, o.stateful));
    columns[depth[s.index]].append(node);
  }
  const sinks = el("div", { class: "node", id: "sinks" }, el("h4", { text: "sinks" }));
  sinks.append(opRow("sinks", "all sinks", false));
  for (const s of g.sinks) sinks.append(el("div", { class: "op", "data-sink": s.id }, el("div", { class: "text", text: `${s.id}: ${s.text}` })));
  columns[last].append(sinks);
  for (const c of columns) if (c.childElementCount) box.append(c);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "wires");
  box.append(svg);
  requestAnimationFrame(() => wire(g));
}

function wire(g) {
  const box = $("#graph");
  const svg = box.querySelector("svg.wires");
  if (!svg) return;
  const origin = box.getBoundingClientRect();
  svg.setAttribute("width", box.scrollWidth);
  svg.setAttribute("height", box.scrollHeight);
  svg.textContent = "";
  const ns = "http://www.w3.org/2000/svg";
  const link = (from, to) => {
    const a = from.getBoundingClientRect(), b = to.getBoundingClientRect();
    const x1 = a.right - origin.left + box.scrollLeft, y1 = a.top + a.height / 2 - origin.top;
    const x2 = b.left - origin.left + box.scrollLeft, y2 = b.top + Math.min(b.height / 2, 40) - origin.top;
    const p = document.createElementNS(ns, "path");
    const mx = (x1 + x2) / 2;
    p.setAttribute("d", `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 6},${y2} l-5,-4 m5,4 l-5,4`);
    svg.append(p);
  };
  for (const e of g.edges) {
    const a = $("#stage-" + e.from), b = $("#stage-" + e.to);
    if (a && b) link(a, b);
  }
  const fed = new Set(g.sinks.map((s) => s.from).filter((f) => f !== null));
  for (const f of fed) {
    const a = $("#stage-" + f);
    if (a) link(a, $("#sinks"));
  }
}

// ---- live updates ------------------------------------------------------------------------

function setRate(cell, v) {
  if (!cell) return;
  cell.dataset.rate = String(v);
  cell.textContent = num(v);
}

function fill(tbody, rows) {
  tbody.textContent = "";
  for (const r of rows) tbody.append(r);
}

const history = [];

function chart(id, key) {
  const svg = $("#chart-" + id);
  const pts = history.filter((p) => p[key] !== null && p[key] !== undefined);
  svg.textContent = "";
  if (pts.length < 2) { $("#range-" + id).textContent = "collecting…"; return; }
  const t0 = pts[0].atMs, t1 = pts[pts.length - 1].atMs;
  const max = Math.max(1, ...pts.map((p) => p[key]));
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts.map((p) => `${((p.atMs - t0) / Math.max(1, t1 - t0)) * 300},${88 - (p[key] / max) * 84}`).join(" "));
  svg.append(line);
  const r = $("#range-" + id);
  r.textContent = "";
  r.append(el("span", { text: ago(Date.now() - t0) }), el("span", { text: "max " + num(max) }), el("span", { text: "now " + num(pts[pts.length - 1][key]) }));
}

function apply(u) {
  live = u;
  const j = u.job;
  $("#job-name").textContent = j.name;
  const st = $("#state");
  st.textContent = j.state;
  st.className = "badge " + j.state;
  $("#parallelism").textContent = `${j.parallelism} (max ${j.maxParallelism})`;
  const src = u.operators.find((o) => o.id === "source");
  $("#rate").textContent = src ? num(src.outPerS) : "–";
  $("#lag").textContent = j.sourceLag.length ? num(j.sourceLag.reduce((a, l) => a + l.lag, 0)) : "–";
  $("#checkpoint-age").textContent = j.lastCheckpoint
    ? `#${j.lastCheckpoint.id}, ${ago(u.atMs - j.lastCheckpoint.triggeredAtMs)}` : "none yet";
  $("#backpressure").textContent = (u.backpressure * 100).toFixed(0) + " %";
  $("#restored-from").textContent = j.restoredFrom || "empty state";
  const f = $("#failure");
  f.hidden = !j.failure;
  f.textContent = j.failure || "";

  for (const o of u.operators) {
    const row = document.querySelector(`[data-op="${CSS.escape(o.id)}"]`);
    if (!row) continue;
    setRate(row.querySelector(".in"), o.inPerS);
    setRate(row.querySelector(".out"), o.outPerS);
    const s = row.querySelector(".state");
    if (s) s.textContent = bytes(o.stateBytes);
  }

  // Busy time and backpressure per subtask, under its stage's header.
  const byStage = new Map();
  for (const t of u.tasks) {
    const m = /^s(\d+)-t(\d+)$/.exec(t.task);
    if (!m) continue;
    if (!byStage.has(m[1])) byStage.set(m[1], []);
    const hot = t.backpressure > 0.5 || t.busy > 0.8;
    byStage.get(m[1]).push(el("span", { class: "subtask" + (hot ? " hot" : ""), "data-task": t.task, "data-busy": String(t.busy), "data-backpressure": String(t.backpressure) },
      `t${m[2]} busy ${(t.busy * 100).toFixed(0)}% bp ${(t.backpressure * 100).toFixed(0)}%`));
  }
  for (const box of document.querySelectorAll(".subtasks")) {
    box.textContent = "";
    const spans = byStage.get(box.dataset.stage) || [];
    if (spans.length) box.append(...spans);
  }

  // Checkpoints: newest first; the newest completed is what a restore would use, and the
  // newest `retained` completed ones are kept.
  const done = j.checkpoints.filter((c) => c.status === "completed").map((c) => c.id).sort((a, b) => b - a);
  const kept = new Set(done.slice(0, graph ? graph.retained : 1));
  fill($("#checkpoints tbody"), [...j.checkpoints].reverse().map((c) => {
    const tags = el("td", { class: "tags" });
    if (c.id === done[0]) tags.append(el("span", { class: "tag restore", text: "restore point" }));
    if (kept.has(c.id)) tags.append(el("span", { class: "tag", text: "kept" }));
    const tr = el("tr", { class: c.status, "data-id": String(c.id), title: c.error || c.path || "" },
      el("td", { text: "#" + c.id }), el("td", { text: kindText(c.kind) }), el("td", { text: c.status }),
      el("td", { text: ago(u.atMs - c.triggeredAtMs) }), el("td", { text: duration(c.durationMs) }),
      el("td", { text: bytes(c.sizeBytes) }), el("td", { text: bytes(c.writtenBytes ?? c.sizeBytes) }),
      el("td", { text: duration(c.alignmentMs) }), tags);
    return tr;
  }));
  fill($("#savepoints tbody"), [...j.savepoints].reverse().map((s) =>
    el("tr", { class: s.status, "data-id": s.id, "data-status": s.status },
      el("td", { text: s.id }), el("td", { text: s.status }), el("td", { text: s.checkpoint ?? "–" }),
      el("td", { class: "path", text: s.path || s.error || "" }))));
  fill($("#actions tbody"), [...u.actions].reverse().map((a) =>
    el("tr", { class: a.outcome.startsWith("refused") ? "failed" : "" },
      el("td", { text: new Date(a.atMs).toLocaleTimeString() }), el("td", { text: a.action }),
      el("td", { text: a.outcome }), el("td", { text: a.authenticated ? "yes" : "no" }))));
  // Event time per stage, and so per operator: the lowest watermark of the stage's subtasks.
  for (const box of document.querySelectorAll(".stage-wm")) {
    const marks = j.watermarks.filter((w) => String(w.task.stage) === box.dataset.stage).map((w) => w.watermark);
    const known = marks.filter((m) => m !== null);
    box.textContent = !marks.length ? "" : known.length < marks.length ? "event time: none yet"
      : `event time ${new Date(Math.min(...known)).toISOString().replace(".000Z", "Z")} (${span(u.atMs - Math.min(...known))} behind)`;
  }
  const inFlight = u.inFlight || [];
  fill($("#sinks tbody"), j.sinks.map((s) => {
    const mine = inFlight.filter((t) => t.sink === s.id);
    return el("tr", { "data-sink": s.id }, el("td", { text: s.id }), el("td", { text: s.name }), el("td", { text: s.guarantee }),
      el("td", { class: "in-flight", text: mine.length ? `${mine.length} (oldest #${Math.min(...mine.map((t) => t.checkpoint))})` : "none" }));
  }));
  fill($("#in-flight tbody"), inFlight.map((t) =>
    el("tr", { "data-sink": t.sink }, el("td", { text: t.sink }), el("td", { text: "t" + t.subtask }), el("td", { text: "#" + t.checkpoint }),
      el("td", { text: t.kind }), el("td", { class: "path", text: t.detail }))));
  fill($("#watermarks tbody"), j.watermarks.map((w) =>
    el("tr", {}, el("td", { text: `s${w.task.stage}-t${w.task.subtask}` }),
      el("td", { text: w.watermark === null ? "none yet" : new Date(w.watermark).toISOString() }),
      el("td", { text: w.watermark === null ? "–" : span(u.atMs - w.watermark) }))));
  fill($("#source-lag tbody"), j.sourceLag.map((l) =>
    el("tr", {}, el("td", { text: l.topic }), el("td", { text: String(l.partition) }), el("td", { text: num(l.lag) }))));

  const hour = u.atMs - 3600 * 1000;
  while (history.length && history[0].atMs < hour) history.shift();
  chart("rate", "recordsPerS");
  chart("lag", "lag");
  chart("checkpoint", "checkpointMs");
}

// ---- actions -----------------------------------------------------------------------------

async function act(path, body, what) {
  const out = $("#action-result");
  const headers = { "Content-Type": "application/json" };
  const token = $("#token").value.trim();
  if (token) headers.Authorization = "Bearer " + token;
  out.className = "";
  out.textContent = what + "…";
  try {
    const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
    const text = await r.text();
    if (r.ok) {
      out.className = "accepted";
      let detail = text;
      try { const j = JSON.parse(text); detail = j.id ? "request " + j.id : "accepted"; } catch (_) { /* plain text */ }
      out.textContent = `${what}: ${detail}`;
    } else {
      out.className = "refused";
      out.textContent = `${what} refused (${r.status}): ${text}`;
    }
  } catch (e) {
    out.className = "refused";
    out.textContent = `${what} failed: ${e}`;
  }
}

function start() {
  // Inside the operator's console the job is acted on there, with Kubernetes authorisation;
  // this page's own actions (the job's control token) are not offered.
  if (new URLSearchParams(location.search).has("embedded")) {
    $("#act").hidden = true;
    $("#action-result").textContent = "Act on this job from the operator console's job page.";
    document.body.classList.add("embedded");
  }
  $("#savepoint").addEventListener("click", () => act("../v1/savepoints", {}, "Savepoint"));
  $("#stop").addEventListener("click", () => {
    if (confirm("Stop the job? It takes a final savepoint, commits and exits.")) act("../v1/stop", { savepoint: true }, "Stop");
  });
  fetch("graph").then((r) => r.json()).then((g) => { graph = g; drawGraph(g); if (live) apply(live); });
  window.addEventListener("resize", () => graph && wire(graph));
  const events = new EventSource("live");
  events.addEventListener("live", (e) => {
    const u = JSON.parse(e.data);
    history.push(...u.history);
    apply(u);
  });
  events.addEventListener("error", () => {
    const st = $("#state");
    if (events.readyState !== EventSource.OPEN) { st.textContent = "disconnected"; st.className = "badge failed"; }
  });
}

document.addEventListener("DOMContentLoaded", start);
