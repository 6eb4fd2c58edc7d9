// Messages in flight, drawn as dots travelling on arcs above the node cards (SVG).
// Each dot is one "message" event (dir "send") from a node's live stream; its travel time is
// the cluster's real per-message delay (--slow plus the slow-motion slider), so a dot lands
// when the real message does. Lost messages (dir "drop") end in a red burst.

const SVG = "http://www.w3.org/2000/svg";
const MAX_DOTS = 160;
const MIN_VISIBLE_MS = 220;
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;

/** Kind (colour) and label of a message event. */
export function describe(ev, readRound) {
  switch (ev.type) {
    case "AppendEntries":
      return ev.entries > 0 ? ["ae", `AE ${ev.index}`] : ["ae", "AE"];
    case "AppendEntriesResponse":
      return ev.success ? ["ack", `ACK ${ev.index}`] : ["nack", `NACK ${ev.index}`];
    case "Heartbeat":
      return readRound ? ["read", "♥ read?"] : ["hb", "♥"];
    case "HeartbeatResponse":
      return readRound ? ["read", "♥ ok"] : ["hb", "♥"];
    case "RequestVote":
      return ["vote", ev.pre_vote ? `PRE-VOTE? t${ev.term}` : `VOTE? t${ev.term}`];
    case "RequestVoteResponse":
      return ["voteok", ev.granted ? (ev.pre_vote ? "pre: yes" : "YES") : "no"];
    case "TimeoutNow":
      return ["other", "TimeoutNow"];
    case "InstallSnapshot":
      return ["other", `SNAP ${ev.index}`];
    default:
      return ["other", ev.type];
  }
}

export function isHeartbeat(ev) {
  return ev.type === "Heartbeat" || ev.type === "HeartbeatResponse";
}

export class Wires {
  constructor(svg, stage) {
    this.svg = svg;
    this.stage = stage;
    this.dots = [];
    this.tracks = new Map();
    this.ids = [];
    this.cut = new Set();
    this.tracksLayer = document.createElementNS(SVG, "g");
    this.dotsLayer = document.createElementNS(SVG, "g");
    svg.append(this.tracksLayer, this.dotsLayer);
    this.frame = this.frame.bind(this);
    new ResizeObserver(() => this.drawTracks()).observe(stage);
    requestAnimationFrame(this.frame);
  }

  setNodes(ids, cut) {
    this.ids = ids;
    this.cut = cut;
    this.drawTracks();
  }

  anchor(id) {
    const card = this.stage.querySelector(`.card[data-node="${CSS.escape(id)}"]`);
    if (!card) return null;
    const s = this.stage.getBoundingClientRect();
    const r = card.getBoundingClientRect();
    return { x: r.left - s.left + r.width / 2, y: r.top - s.top };
  }

  /** Control point of the arc from a to b; requests fly higher than responses. */
  control(a, b, high) {
    const dx = Math.abs(b.x - a.x);
    const lift = Math.min(118, 30 + dx * 0.2) * (high ? 1 : 0.55);
    return { x: (a.x + b.x) / 2, y: Math.min(a.y, b.y) - 2 * lift };
  }

  drawTracks() {
    this.tracksLayer.replaceChildren();
    for (let i = 0; i < this.ids.length; i++) {
      for (let j = i + 1; j < this.ids.length; j++) {
        const a = this.anchor(this.ids[i]);
        const b = this.anchor(this.ids[j]);
        if (!a || !b) continue;
        const c = this.control(a, b, true);
        const p = document.createElementNS(SVG, "path");
        p.setAttribute("d", `M${a.x},${a.y} Q${c.x},${c.y} ${b.x},${b.y}`);
        const cut = this.cut.has(this.ids[i]) || this.cut.has(this.ids[j]);
        p.setAttribute("class", cut ? "track cut" : "track");
        this.tracksLayer.append(p);
      }
    }
  }

  /**
   * Launch a dot. opts: {from, to, kind, label, duration, high, dropAt (0..1 or null)}.
   */
  fly(opts) {
    if (this.dots.length >= MAX_DOTS) this.remove(this.dots.shift());
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", `msg ${opts.kind}`);
    const c = document.createElementNS(SVG, "circle");
    c.setAttribute("r", opts.kind === "hb" ? "4" : "6");
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("text-anchor", "middle");
    t.setAttribute("dy", "-10");
    t.textContent = opts.label;
    g.append(c, t);
    this.dotsLayer.append(g);
    const duration = reducedMotion ? 0 : Math.max(MIN_VISIBLE_MS, opts.duration);
    this.dots.push({ ...opts, g, start: performance.now(), duration, hold: reducedMotion ? 600 : 0 });
  }

  /** A red burst where a message was lost: at node id (its top), or along an arc. */
  burst(x, y) {
    const c = document.createElementNS(SVG, "circle");
    c.setAttribute("class", "burst");
    c.setAttribute("cx", x);
    c.setAttribute("cy", y);
    c.setAttribute("r", "4");
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("class", "burst-text");
    t.setAttribute("x", x);
    t.setAttribute("y", y + 5);
    t.setAttribute("text-anchor", "middle");
    t.textContent = "✕";
    this.dotsLayer.append(c, t);
    const start = performance.now();
    const step = (now) => {
      const k = (now - start) / 700;
      if (k >= 1) {
        c.remove();
        t.remove();
        return;
      }
      c.setAttribute("r", String(4 + 16 * k));
      c.setAttribute("opacity", String(1 - k));
      t.setAttribute("opacity", String(1 - k));
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }

  burstAt(id) {
    const a = this.anchor(id);
    if (a) this.burst(a.x, a.y - 14);
  }

  point(d, k) {
    const a = this.anchor(d.from);
    const b = this.anchor(d.to);
    if (!a || !b) return null;
    const c = this.control(a, b, d.high);
    const u = 1 - k;
    return { x: u * u * a.x + 2 * u * k * c.x + k * k * b.x, y: u * u * a.y + 2 * u * k * c.y + k * k * b.y };
  }

  remove(d) {
    if (d) d.g.remove();
  }

  frame(now) {
    const keep = [];
    for (const d of this.dots) {
      const k = d.duration ? Math.min(1, (now - d.start) / d.duration) : 1;
      const end = d.dropAt ?? 1;
      const p = this.point(d, Math.min(k, end));
      if (!p) {
        this.remove(d);
        continue;
      }
      d.g.setAttribute("transform", `translate(${p.x},${p.y})`);
      if (k >= end && now - d.start >= d.duration * end + d.hold) {
        this.remove(d);
        if (d.dropAt !== null && d.dropAt !== undefined) this.burst(p.x, p.y);
        continue;
      }
      keep.push(d);
    }
    this.dots = keep;
    requestAnimationFrame(this.frame);
  }
}
