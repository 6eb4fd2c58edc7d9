// The demo page: one EventSource on /api/events (every node's live events, merged by the demo
// server), a model of the cluster built only from those events, and the control buttons.

import { Cards } from "./cards.js";
import { Narrator } from "./narrator.js";
import { Wires, describe, isHeartbeat } from "./wires.js";

const $ = (sel) => document.querySelector(sel);
const FEED_MAX = 200;
const BUFFER_MAX = 20000;
const LESSON_LIT_MS = 9000;

const model = {
  cluster: null, // the demo's "cluster" event: nodes, timing
  nodes: new Map(), // id -> {id, state, connected, running, isolated, pid}
  readsPending: 0,
};

// Times on the page are the cluster's (each event's "ts", ms since the epoch on the machine
// that runs the nodes); skew converts the browser's clock for lines the page itself writes.
const display = { paused: false, buffer: [], heartbeats: false, t0: null, skew: 0, statusTs: -Infinity };

const cards = new Cards($("#cards"), (action, node) => cardAction(action, node));
const wires = new Wires($("#wires"), $("#stage"));
const narrator = new Narrator(model, say, lightLesson);

// --- narration -------------------------------------------------------------------------------

function clusterNow() {
  return Date.now() + display.skew;
}

/** One narration, at the time of the event that caused it (ts). The event log stays in time
 * order, newest first, whatever order the lines are written in; the status line only ever
 * moves forward in time. */
function say({ text, tone = "info", level = "main", ts = clusterNow() }) {
  if (display.t0 === null) display.t0 = ts;
  if (level === "main" && ts >= display.statusTs) {
    display.statusTs = ts;
    const line = $("#status-line");
    line.textContent = text;
    line.dataset.tone = tone;
  }
  const li = document.createElement("li");
  li.dataset.ts = String(ts);
  const t = document.createElement("span");
  t.className = "t";
  const s = (ts - display.t0) / 1000;
  t.textContent = `${s < 0 ? "−" : "+"}${Math.abs(s).toFixed(1)}s`;
  const m = document.createElement("span");
  m.className = level === "detail" ? "detail" : tone;
  m.textContent = text;
  li.append(t, m);
  const feed = $("#feed");
  let next = feed.firstElementChild;
  while (next && Number(next.dataset.ts) > ts) next = next.nextElementSibling;
  feed.insertBefore(li, next);
  while (feed.childElementCount > FEED_MAX) feed.lastElementChild.remove();
}

const lessonTimers = new Map();
function lightLesson(name) {
  const li = document.querySelector(`[data-lesson="${name}"]`);
  if (!li) return;
  li.dataset.lit = "true";
  li.dataset.seen = "true";
  clearTimeout(lessonTimers.get(name));
  lessonTimers.set(name, setTimeout(() => (li.dataset.lit = "false"), LESSON_LIT_MS));
}

// --- the model ---------------------------------------------------------------------------------

function node(id) {
  let n = model.nodes.get(id);
  if (!n) {
    n = { id, state: null, connected: false, running: true, isolated: false, pid: null };
    model.nodes.set(id, n);
  }
  return n;
}

function onCluster(ev) {
  model.cluster = ev;
  for (const info of ev.nodes) {
    const n = node(info.id);
    n.running = info.running;
    n.isolated = info.isolated;
    n.pid = info.pid;
  }
  const ids = ev.nodes.map((n) => n.id);
  const rebuilt = cards.ensure(ids);
  if (rebuilt) fillSelects(ids);
  for (const n of model.nodes.values()) cards.update(n);
  wires.setNodes(ids, new Set(ev.nodes.filter((n) => n.isolated).map((n) => n.id)));
  const maj = Math.floor(ids.length / 2) + 1;
  const el = ev.election_timeout_ms / 1000;
  $("#meta").textContent =
    `${ids.length} nodes · majority ${maj} · tick ${Math.round(ev.tick_ms)} ms · ` +
    `election timeout ${el.toFixed(1)}–${(2 * el).toFixed(1)} s · --slow ${ev.slow}`;
  $("#key-name").textContent = ev.key;
  const slow = $("#slow");
  if (document.activeElement !== slow) slow.value = String(ev.factor);
  showSlow(ev.factor, ev.extra_delay_ms);
  const isolated = ev.nodes.filter((n) => n.isolated).map((n) => n.id);
  const down = ev.nodes.filter((n) => !n.running).map((n) => n.id);
  const net = $("#net-result");
  if (net.dataset.outcome !== "pending") {
    net.textContent = isolated.length ? `Cut off: ${isolated.join(", ")}.` : "All links up.";
    if (down.length) net.textContent += ` Down: ${down.join(", ")}.`;
  }
}

function fillSelects(ids) {
  const via = $("#via");
  const to = $("#transfer-to");
  via.replaceChildren(new Option("via the leader", "auto"), ...ids.map((id) => new Option(`via ${id}`, id)));
  to.replaceChildren(new Option("the most caught-up follower", ""), ...ids.map((id) => new Option(id, id)));
}

function transitMs() {
  const c = model.cluster;
  return c ? c.message_delay_ms + c.extra_delay_ms : 0;
}

function handle(ev, animate) {
  switch (ev.kind) {
    case "demo":
      if (ev.event === "cluster") onCluster(ev);
      else if (ev.event === "net" && ev.action === "heal") markStale();
      else if (ev.event === "stream") {
        node(ev.node).connected = ev.connected;
        cards.update(node(ev.node));
      } else if (ev.event === "client" && ev.op === "READ") {
        model.readsPending += ev.phase === "sent" ? 1 : -1;
        model.readsPending = Math.max(0, model.readsPending);
      }
      narrator.onDemo(ev);
      break;
    case "state": {
      const n = node(ev.node);
      const prev = n.state;
      narrator.onState(ev, prev);
      n.state = ev;
      cards.update(n);
      break;
    }
    case "trace":
      narrator.onTrace(ev);
      break;
    case "message":
      narrator.onMessage(ev);
      if (animate) animateMessage(ev);
      break;
    default:
      break;
  }
}

function animateMessage(ev) {
  const hb = isHeartbeat(ev);
  const readRound = hb && model.readsPending > 0;
  if (hb && !display.heartbeats && !readRound) return;
  const [kind, label] = describe(ev, readRound);
  const high = !ev.type.endsWith("Response");
  if (ev.dir === "send") {
    wires.fly({ from: ev.from, to: ev.to, kind, label, duration: transitMs(), high, dropAt: null });
  } else if (ev.dir === "drop") {
    if (ev.node === ev.from) {
      wires.fly({ from: ev.from, to: ev.to, kind, label, duration: transitMs(), high, dropAt: 0.3 });
    } else {
      wires.burstAt(ev.node);
    }
  }
}

// --- the event stream ---------------------------------------------------------------------------------

function connect() {
  const es = new EventSource("/api/events");
  const conn = $("#conn");
  es.onopen = () => {
    conn.dataset.state = display.paused ? "paused" : "live";
    conn.textContent = display.paused ? "paused" : "live";
  };
  es.onerror = () => {
    conn.dataset.state = "lost";
    conn.textContent = "reconnecting…";
  };
  es.onmessage = (m) => {
    let ev;
    try {
      ev = JSON.parse(m.data);
    } catch {
      return;
    }
    if (typeof ev.ts === "number") display.skew = ev.ts - Date.now();
    if (display.paused) {
      display.buffer.push(ev);
      if (display.buffer.length > BUFFER_MAX) display.buffer.shift();
      $("#pause").textContent = `Resume (${display.buffer.length} waiting)`;
      return;
    }
    handle(ev, true);
  };
}

function setPaused(paused) {
  display.paused = paused;
  const b = $("#pause");
  b.setAttribute("aria-pressed", String(paused));
  const conn = $("#conn");
  conn.dataset.state = paused ? "paused" : "live";
  conn.textContent = paused ? "paused" : "live";
  if (paused) {
    b.textContent = "Resume events";
    say({ text: "Display paused: the cluster keeps running; events wait here.", tone: "warn" });
    return;
  }
  b.textContent = "Pause events";
  const queued = display.buffer;
  display.buffer = [];
  const now = Date.now();
  for (const ev of queued) handle(ev, now - ev.ts < 1500);
}

// --- controls ------------------------------------------------------------------------------------------

async function post(path, body) {
  const resp = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let doc;
  try {
    doc = await resp.json();
  } catch {
    doc = { ok: false, error: `http_${resp.status}`, message: resp.statusText };
  }
  return doc;
}

function show(sel, outcome, text) {
  const el = $(sel);
  el.dataset.outcome = outcome;
  delete el.dataset.stale;
  el.textContent = text;
}

/** The network healed: answers given before it describe the cut, not the cluster now. An
 * answer still pending is left alone (it arrives after the heal). */
function markStale() {
  for (const sel of ["#client-result", "#read-result"]) {
    const el = $(sel);
    if (el.dataset.stale === "true" || !["ok", "error"].includes(el.dataset.outcome)) continue;
    el.dataset.stale = "true";
    el.textContent = `Before the network healed: ${el.textContent}`;
  }
}

function failure(doc) {
  const code = doc.status ? `${doc.status} ${doc.error}` : doc.error;
  return `${doc.node ? `${doc.node}: ` : ""}${code}: ${doc.message}`;
}

async function send() {
  const input = $("#value");
  const value = input.value.trim();
  if (!value) {
    show("#client-result", "error", "Type a value first.");
    return;
  }
  const via = $("#via").value;
  show("#client-result", "pending", `SET X=${value} sent ${via === "auto" ? "to the leader" : `via ${via}`}; waiting for a majority…`);
  if (/^\d+$/.test(value)) input.value = String(Number(value) + 1);
  const doc = await post("/api/set", { value, via });
  if (doc.ok) show("#client-result", "ok", `SET X=${value}: committed at index ${doc.index} by ${doc.node} (${doc.ms} ms)`);
  else show("#client-result", "error", `SET X=${value} failed: ${failure(doc)}`);
}

async function read() {
  const via = $("#via").value;
  show("#read-result", "pending", `Reading X ${via === "auto" ? "from the leader" : `via ${via}`}: the leader confirms with a majority first…`);
  const doc = await post("/api/read", { via });
  if (doc.ok) {
    const v = doc.value === null ? "X is not set yet" : `X = ${doc.value}`;
    show("#read-result", "ok", `${v} (linearizable, answered by ${doc.node} in ${doc.ms} ms)`);
  } else {
    show("#read-result", "error", `Read failed: ${failure(doc)}`);
  }
}

async function net(action, nodeId) {
  show("#net-result", "pending", "asking the nodes…");
  const doc = await post("/api/net", nodeId ? { action, node: nodeId } : { action });
  show("#net-result", doc.ok ? "ok" : "error", doc.ok ? doc.text : `refused: ${doc.message}`);
}

async function transfer(to) {
  show("#client-result", "pending", `Transferring leadership${to ? ` to ${to}` : ""}…`);
  const doc = await post("/api/transfer", to ? { to } : {});
  if (doc.ok) show("#client-result", "ok", `Leader is now ${doc.leader} (term ${doc.term}).`);
  else show("#client-result", "error", `Transfer failed: ${failure(doc)}`);
}

async function cardAction(action, nodeId) {
  if (action === "transfer") return transfer(nodeId);
  if (action === "isolate") return net("isolate", nodeId);
  show("#net-result", "pending", `${action} ${nodeId}…`);
  const doc = await post(`/api/${action}`, { node: nodeId });
  show("#net-result", doc.ok ? "ok" : "error", doc.ok ? doc.text : `refused: ${doc.message}`);
}

function showSlow(factor, extraMs) {
  const base = model.cluster ? model.cluster.message_delay_ms : 0;
  $("#slow-text").textContent = `×${Number(factor).toFixed(1)}`;
  $("#slow-hint").textContent =
    `Each message between nodes takes ≈${Math.round(base + extraMs)} ms ` +
    `(${Math.round(base)} ms from --slow + ${Math.round(extraMs)} ms from this slider).`;
}

function wire() {
  $("#send").addEventListener("click", send);
  $("#value").addEventListener("keydown", (e) => {
    if (e.key === "Enter") send();
  });
  $("#read").addEventListener("click", read);
  for (const b of document.querySelectorAll("[data-net]")) {
    b.addEventListener("click", () => net(b.dataset.net));
  }
  $("#transfer").addEventListener("click", () => transfer($("#transfer-to").value));
  $("#pause").addEventListener("click", () => setPaused(!display.paused));
  $("#heartbeats").addEventListener("change", (e) => {
    display.heartbeats = e.target.checked;
  });
  const slow = $("#slow");
  slow.addEventListener("input", () => ($("#slow-text").textContent = `×${Number(slow.value).toFixed(1)}`));
  slow.addEventListener("change", async () => {
    const doc = await post("/api/slow", { factor: Number(slow.value) });
    if (!doc.ok) show("#net-result", "error", `slow motion: ${doc.message || JSON.stringify(doc.errors)}`);
  });
}

wire();
connect();
