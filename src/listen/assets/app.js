// The dashboard: polls /api/state every second and redraws. Everything
// the server sends is put in the page as text, never as markup.
"use strict";

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function bytes(n) {
  if (n == null) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function secs(s) {
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

function notice(text, ok) {
  const n = $("notice");
  n.textContent = text;
  n.className = ok ? "ok" : "bad";
}

let actionsOn = false;

async function act(fileId, action) {
  const token = $("token").value;
  sessionStorage.setItem("minimax-dl-token", token);
  try {
    const r = await fetch(`/api/jobs/${encodeURIComponent(fileId)}/${action}`, {
      method: "POST",
      headers: { "X-Minimax-Dl-Token": token },
    });
    const body = await r.json().catch(() => ({}));
    if (r.ok) notice(`${action}: job ${fileId}: ${body.result}`, true);
    else notice(`${action} of job ${fileId} refused (${r.status}): ${body.error || r.statusText}`, false);
  } catch (e) {
    notice(`${action} of job ${fileId} failed: ${e}`, false);
  }
  poll();
}

function actionButton(fileId, action) {
  const b = el("button", { type: "button", className: action, textContent: action === "retry" ? "Retry" : "Cancel" });
  b.dataset.id = fileId;
  b.addEventListener("click", () => act(fileId, action));
  return b;
}

function fill(tbody, rows, empty) {
  tbody.replaceChildren(...rows);
  empty.hidden = rows.length > 0;
}

function drawCounts(counts) {
  for (const state of ["queued", "running", "done", "failed", "cancelled"]) {
    $("count-" + state).textContent = counts ? counts[state] : "–";
  }
  $("count-bytes").textContent = counts ? bytes(counts.bytes_done) : "–";
}

function drawTasks(tasks) {
  for (const key of ["generating", "done", "failed", "polls"]) {
    $("task-" + key).textContent = tasks ? tasks[key] : "–";
  }
}

function drawGate(gate) {
  const parts = [];
  const calls = gate.calls_in_window == null ? "?" : gate.calls_in_window;
  const cap = gate.per_minute == null ? ""
    : gate.mode === "auto"
      ? ` (auto: ${gate.per_minute} a minute found so far, at most ${gate.ceiling}; lowered ${gate.decreases} times)`
      : ` (cap ${gate.per_minute} a minute)`;
  parts.push(`${calls} API calls in the last ${gate.window_secs} s by every process sharing the queue${cap}`);
  if (gate.cooldown_secs > 0) parts.push(`cooling down after a rate-limit answer: ${secs(gate.cooldown_secs)} left`);
  if (gate.held) parts.push(`held: ${gate.held}`);
  $("gate").textContent = parts.join(" · ");
}

// Why a pool pauses (the `reason` of /api/state's pause, as /metrics
// labels it) and what the operator can do about it.
const PAUSE_REASONS = {
  account: ["an account-level answer from the API",
    "Fix the key or the account; work resumes by itself once a check succeeds."],
  disk: ["the archive disk",
    "Free space on the archive disk; work resumes by itself once a check succeeds."],
  api_unreachable: ["an API this host cannot connect to",
    "Check this host's network and api_base; work resumes by itself once a connection succeeds."],
  archive: ["the archive bucket",
    "Check the bucket and its credentials; work resumes by itself once a check succeeds."],
};

function drawPause(pause) {
  const box = $("pause");
  box.hidden = !pause;
  if (!pause) return;
  const [why, todo] = PAUSE_REASONS[pause.reason] ||
    [`${pause.reason}`, "Work resumes by itself once a check succeeds."];
  box.textContent = `Paused since ${when(pause.since_ms)} because of ${why}: ${pause.message}. ` +
    `Next check ${when(pause.next_probe_ms)}. ${todo}`;
}

function drawInFlight(flights) {
  const rows = flights.map((f) => {
    const pct = f.total ? Math.min(100, (100 * f.bytes_done) / f.total) : 0;
    const bar = el("div", { className: "bar" }, el("div"));
    bar.firstChild.style.width = pct.toFixed(1) + "%";
    const row = el("tr", {},
      el("td", {}, f.file_id),
      el("td", {}, bar),
      el("td", {}, `${bytes(f.bytes_done)} / ${bytes(f.total)}`),
      el("td", {}, bytes(f.bytes_per_sec) + "/s"),
      el("td", {}, secs(f.elapsed_secs)),
      el("td", {}, actionsOn ? actionButton(f.file_id, "cancel") : ""));
    row.dataset.id = f.file_id;
    return row;
  });
  fill($("in-flight").tBodies[0], rows, $("in-flight-empty"));
}

function drawFailed(jobs) {
  const rows = jobs.map((j) => {
    const row = el("tr", {},
      el("td", {}, j.file_id),
      el("td", {}, j.attempts),
      el("td", { className: "error" }, j.last_error),
      el("td", {}, when(j.updated_ms)),
      el("td", {}, actionsOn ? actionButton(j.file_id, "retry") : ""));
    row.dataset.id = j.file_id;
    return row;
  });
  fill($("failed").tBodies[0], rows, $("failed-empty"));
}

function drawErrors(errors) {
  const items = errors.map((e) =>
    el("li", {}, `${when(e.at_ms)} · job ${e.file_id} · ${e.outcome}: `, el("span", { className: "error" }, e.error)));
  $("errors").replaceChildren(...items);
  $("errors-empty").hidden = items.length > 0;
}

function draw(s) {
  actionsOn = s.actions;
  $("token-box").hidden = !s.actions;
  $("version").textContent = s.version;
  const health = $("health");
  health.textContent = s.healthy ? "healthy" : "stalled";
  health.className = "badge " + (s.healthy ? "ok" : "bad");
  $("queue-error").hidden = !s.queue_error;
  $("queue-error").textContent = s.queue_error ? "Queue unreachable: " + s.queue_error : "";
  drawCounts(s.counts);
  drawTasks(s.tasks);
  drawGate(s.gate);
  drawPause(s.pause);
  drawInFlight(s.in_flight);
  drawFailed(s.failed);
  drawErrors(s.recent_errors);
}

async function poll() {
  try {
    const r = await fetch("/api/state", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    draw(await r.json());
  } catch (e) {
    const health = $("health");
    health.textContent = "daemon unreachable";
    health.className = "badge bad";
  }
}

async function search(event) {
  event.preventDefault();
  const id = $("search-id").value.trim();
  const box = $("job");
  if (!id) { box.hidden = true; return; }
  const r = await fetch(`/api/jobs/${encodeURIComponent(id)}`, { cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  box.hidden = false;
  if (!r.ok) { box.replaceChildren(el("p", { className: "muted" }, body.error || r.statusText)); return; }
  const lines = (body.events || []).map((e) => `${when(e.at)}  ${e.kind}${e.message ? ": " + e.message : ""}`);
  const buttons = [];
  if (actionsOn && (body.state === "failed" || body.state === "cancelled")) buttons.push(actionButton(body.file_id, "retry"));
  if (actionsOn && (body.state === "queued" || body.state === "running")) buttons.push(actionButton(body.file_id, "cancel"));
  box.replaceChildren(
    el("p", {}, `job ${body.file_id}: ${body.state}, ${body.attempts} failed attempts, ${bytes(body.bytes_done)} of ${bytes(body.bytes_expected)}`, ...buttons),
    el("p", { className: "muted" }, body.path || body.last_error || ""),
    el("pre", {}, lines.join("\n")));
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem("minimax-dl-token") || "";
  $("search").addEventListener("submit", search);
  poll();
  setInterval(poll, POLL_MS);
});
