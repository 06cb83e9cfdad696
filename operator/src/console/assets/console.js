// The operator console: the job list (/console/) and a job page (/console/jobs/<ns>/<name>/),
// each fed by server-sent events every two seconds. No framework, no build step.
"use strict";

const ago = (ms) => {
  if (ms === null || ms === undefined) return "–";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return s + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
};
const fill = (sel, rows) => { const b = $(sel + " tbody"); b.replaceChildren(...rows); };

function feed(url, apply, badge) {
  const events = new EventSource(url);
  events.addEventListener("live", (e) => { badge.textContent = "live"; badge.className = "badge live"; apply(JSON.parse(e.data)); });
  events.addEventListener("error", () => {
    if (events.readyState !== EventSource.OPEN) { badge.textContent = "disconnected"; badge.className = "badge down"; }
  });
}

// ---- the list --------------------------------------------------------------------------

function applyList(u) {
  $("#empty").hidden = u.jobs.length > 0;
  fill("#jobs", u.jobs.map((j) => {
    const link = el("a", { href: `jobs/${encodeURIComponent(j.namespace)}/${encodeURIComponent(j.name)}/`, text: j.name });
    // Not ready because a person suspended it is no alarm.
    const readyClass = !j.ready ? "" : j.ready.status === "True" ? "ok" : j.state === "Suspended" ? "muted" : "bad";
    const ready = j.ready ? el("span", { class: readyClass, title: j.ready.message, text: j.ready.status === "True" ? "yes" : j.ready.reason }) : "–";
    return el("tr", { "data-job": `${j.namespace}/${j.name}` },
      el("td", { text: j.namespace }), el("td", {}, link),
      el("td", { class: "state", text: j.state }), el("td", {}, ready),
      el("td", { text: j.pods || "–" }),
      el("td", { title: `the spec asks for ${j.desiredParallelism}`, text: j.parallelism === null || j.parallelism === undefined ? "–"
        : String(j.parallelism) + (j.parallelism !== j.desiredParallelism ? ` → ${j.desiredParallelism}` : "") }),
      el("td", { class: "rate", "data-rate": String(j.recordsPerS ?? 0), text: num(j.recordsPerS) }),
      el("td", { text: num(j.lag) }),
      el("td", { text: ago(j.lastCheckpointAtMs) }),
      el("td", { text: bytes(j.lastCheckpointBytes) }),
      el("td", { title: j.lastRestartReason || "", text: String(j.restarts) }));
  }));
}

// ---- a job -----------------------------------------------------------------------------

function applyJob(d) {
  if (d.missing) { $("#health").hidden = false; $("#health").textContent = d.missing; return; }
  const r = d.row, s = d.status || {};
  $("#job-name").textContent = `${r.namespace}/${r.name}`;
  document.title = `Weir: ${r.name}`;
  $("#state").textContent = r.state; $("#state").className = "badge " + r.state;
  $("#ready").textContent = r.ready ? (r.ready.status === "True" ? "yes" : r.ready.reason) : "–";
  $("#pods").textContent = r.pods || "–";
  $("#parallelism").textContent = r.parallelism ?? "–";
  $("#rate").textContent = num(r.recordsPerS);
  $("#rate").dataset.rate = String(r.recordsPerS ?? 0);
  $("#lag").textContent = num(r.lag);
  $("#checkpoint-age").textContent = ago(r.lastCheckpointAtMs);
  $("#restarts").textContent = String(r.restarts);
  const bad = r.ready && r.ready.status !== "True" && r.state !== "Suspended";
  $("#health").hidden = !bad;
  if (bad) $("#health").textContent = `${r.ready.reason}: ${r.ready.message}`;
  $("#restart-reason").textContent = r.restarts ? `${r.restarts} automatic restart(s); the last: ${r.lastRestartReason || "?"}` : "none";
  fill("#savepoints", (s.savepoints || []).slice().reverse().map((p) =>
    el("tr", {}, el("td", { text: p.completedAt || "" }), el("td", { text: p.trigger || "" }), el("td", { class: "path", text: p.path }))));
  fill("#events", d.events.map((e) =>
    el("tr", { class: e.type }, el("td", { text: e.time ? ago(Date.parse(e.time)) : "" }), el("td", { text: e.type }),
      el("td", { class: "reason", text: e.reason }), el("td", { text: e.note }))));
  $("#events-error").hidden = !d.eventsError; $("#events-error").textContent = d.eventsError || "";
  $("#spec").textContent = d.spec;
  const c = d.lastChange;
  $("#change").textContent = `generation ${d.generation ?? "?"}` + (c ? `, last changed by ${c.manager} (${c.operation}) ${c.time ? ago(Date.parse(c.time)) : ""}` : "");
  $("#pending").hidden = d.pending.length === 0;
  $("#pending").textContent = `Not rolled out yet: ${d.pending.join(", ")}`;
  const running = r.state === "Running";
  const frame = $("#runtime");
  if (running && frame.hidden) { frame.src = "runtime/?embedded"; frame.hidden = false; }
  if (!running && !frame.hidden) { frame.hidden = true; frame.removeAttribute("src"); }
  $("#no-runtime").hidden = running;
}

async function act(action) {
  const out = $("#action-result");
  const headers = {};
  const token = $("#token").value.trim();
  if (token) headers.Authorization = "Bearer " + token;
  out.className = ""; out.textContent = action + "…";
  try {
    const r = await fetch(`actions/${action}`, { method: "POST", headers });
    const text = await r.text();
    out.className = r.ok ? "accepted" : "refused";
    out.textContent = r.ok ? text : `${action} refused (${r.status}): ${text}`;
  } catch (e) {
    out.className = "refused"; out.textContent = `${action} failed: ${e}`;
  }
}

function start() {
  if (document.body.dataset.page === "list") {
    feed("/console/live", applyList, $("#conn"));
  } else {
    for (const b of document.querySelectorAll("button[data-action]")) {
      b.addEventListener("click", () => {
        const a = b.dataset.action;
        if ((a === "suspend" || a === "restart") && !confirm(`${a} this job?`)) return;
        act(a);
      });
    }
    feed("live", applyJob, $("#state"));
  }
}

document.addEventListener("DOMContentLoaded", start);
