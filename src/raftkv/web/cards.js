// One card per node: role, term, commit and applied index, and its log (the last 20 entries
// of the node's latest "state" event), plus crash / restart / isolate / make-leader buttons.

const ROLE_TEXT = {
  leader: "★ LEADER",
  follower: "follower",
  candidate: "candidate",
  "pre-candidate": "pre-candidate",
  down: "DOWN",
  unknown: "…",
};

/** What a log entry's colour says, from this node's point of view. */
function state(entry) {
  return entry.committed ? "committed" : "not known committed here yet";
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

export class Cards {
  /** @param {HTMLElement} container @param {(action: string, node: string) => void} onAction */
  constructor(container, onAction) {
    this.container = container;
    this.onAction = onAction;
    this.cards = new Map();
  }

  ensure(ids) {
    if (ids.length === this.cards.size && ids.every((id) => this.cards.has(id))) return false;
    this.container.replaceChildren();
    this.cards.clear();
    this.container.style.setProperty("--n", String(Math.min(ids.length, 5)));
    for (const id of ids) this.cards.set(id, this.build(id));
    return true;
  }

  build(id) {
    const role = el("span", { class: "role", text: "…" });
    const badges = el("span", { class: "badges" });
    const stat = (name) => el("dd", { class: name, text: "–" });
    const dd = { term: stat("term"), commit: stat("commit"), applied: stat("applied"), last: stat("last") };
    const pair = (label, dd) => el("div", { class: "stat" }, el("dt", { text: label }), dd);
    const stats = el(
      "dl",
      { class: "stats" },
      pair("term", dd.term),
      pair("commit", dd.commit),
      pair("applied", dd.applied),
      pair("last", dd.last),
    );
    const knows = el("p", { class: "knows", text: "leader: ?" });
    const log = el("ol", { class: "log", "aria-label": `${id} log` });
    const btn = (action, text, cls = "btn") => {
      const b = el("button", { class: cls, "data-action": action, text });
      b.addEventListener("click", () => this.onAction(action, id));
      return b;
    };
    const buttons = {
      crash: btn("crash", "Crash (kill -9)", "btn warn"),
      restart: btn("restart", "Restart", "btn ok"),
      isolate: btn("isolate", "Isolate", "btn warn"),
      lead: btn("transfer", "Make leader"),
    };
    const foot = el("div", { class: "card-foot" }, buttons.crash, buttons.restart, buttons.isolate, buttons.lead);
    const card = el(
      "article",
      { class: "card", "data-node": id, "data-role": "unknown", "data-up": "true", "aria-label": `node ${id}` },
      el("div", { class: "card-head" }, el("span", { class: "node-id", text: id }), role, badges),
      stats,
      knows,
      el("div", { class: "log-label", text: "log" }),
      log,
      foot,
    );
    this.container.append(card);
    return { card, role, badges, dd, knows, log, buttons, seen: new Set(), lastKey: "" };
  }

  /** node: {id, state, connected, running, isolated} */
  update(node) {
    const c = this.cards.get(node.id);
    if (!c) return;
    const st = node.state;
    const up = node.running && node.connected;
    const role = !node.running ? "down" : st && up ? st.role : "unknown";
    c.card.dataset.role = role;
    c.card.dataset.up = String(node.running);
    c.card.dataset.isolated = String(Boolean(node.isolated));
    c.role.textContent = ROLE_TEXT[role] ?? role;
    c.badges.replaceChildren(
      ...(!node.running ? [el("span", { class: "badge down", text: "kill -9" })] : []),
      ...(node.isolated ? [el("span", { class: "badge cut", text: "✂ isolated" })] : []),
      ...(node.running && !node.connected ? [el("span", { class: "badge cut", text: "no stream" })] : []),
    );
    c.buttons.crash.hidden = !node.running;
    c.buttons.restart.hidden = node.running;
    c.buttons.isolate.disabled = !node.running || Boolean(node.isolated);
    c.buttons.lead.disabled = !up || role === "leader";
    if (!st) return;
    this.set(c.dd.term, st.term);
    this.set(c.dd.commit, st.commit_index);
    this.set(c.dd.applied, st.applied_index);
    this.set(c.dd.last, st.last_index);
    c.knows.textContent = `${node.running ? "" : "last known · "}leader: ${st.leader ?? "unknown"}`;
    this.renderLog(c, st.log);
  }

  set(dd, value) {
    const text = String(value);
    if (dd.textContent !== text) {
      if (dd.textContent !== "–") {
        dd.classList.remove("flash");
        void dd.offsetWidth; // restart the animation
        dd.classList.add("flash");
      }
      dd.textContent = text;
    }
  }

  renderLog(c, log) {
    const key = log.map((e) => `${e.index}:${e.term}:${e.committed}`).join(",");
    if (key === c.lastKey) return;
    c.lastKey = key;
    if (!log.length) {
      c.log.replaceChildren(el("li", { class: "empty", text: "Empty" }));
      return;
    }
    const items = log.map((e) => {
      const id = `${e.index}:${e.term}`;
      const fresh = c.seen.size > 0 && !c.seen.has(id);
      const li = el(
        "li",
        {
          class: fresh ? "entry new" : "entry",
          "data-index": String(e.index),
          "data-term": String(e.term),
          "data-kind": e.kind,
          "data-committed": String(e.committed),
          "data-text": e.text,
          title: `index ${e.index}, term ${e.term}: ${e.text} (${state(e)})`,
        },
        el(
          "span",
          { class: "idx" },
          el("span", { text: `#${e.index}` }),
          el("span", { class: "mark", "aria-hidden": "true", text: e.committed ? "✓" : "…" }),
          el("span", { text: `t${e.term}` }),
        ),
        el("span", { class: "txt", text: e.text }),
        el("span", { class: "sr", text: state(e) }),
      );
      return li;
    });
    c.seen = new Set(log.map((e) => `${e.index}:${e.term}`));
    if (c.seen.size === 0) c.seen.add("-");
    c.log.replaceChildren(...items);
    c.log.scrollLeft = c.log.scrollWidth;
    c.log.dataset.overflow = String(c.log.scrollWidth > c.log.clientWidth + 1);
  }
}
