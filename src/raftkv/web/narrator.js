// Turns live events into one-line narrations and lights the "what Raft is doing" lessons.
// Input: the events of docs/events.md (state, trace, message) and the demo's own ("demo").
// Nothing here invents an event: every sentence is caused by one the cluster sent.

const IDLE_AFTER_MS = 3500;
const DROP_REPORT_MS = 2500;
const DROP_COLLECT_MS = 400;

export class Narrator {
  /**
   * @param {object} model  shared page model (nodes, cluster)
   * @param {(n: {text: string, tone?: string, level?: string}) => void} say
   * @param {(lesson: string) => void} lesson
   */
  constructor(model, say, lesson) {
    this.model = model;
    this.say = say;
    this.lesson = lesson;
    this.acks = new Map(); // leader id -> {term, match: Map(follower -> acked index)}
    this.lastMain = 0;
    this.idle = false;
    this.dropReports = new Map(); // node id -> {at, since, peers:Set, timer}
    this.quorumLost = new Set(); // leaders that just stepped down by check-quorum
    this.ts = undefined; // time of the event being narrated (its "ts")
    this.healedAt = -Infinity; // time of the last "network healed"
  }

  main(text, tone = "info", ts = this.ts) {
    this.lastMain = Date.now();
    this.idle = false;
    this.say({ text, tone, level: "main", ts });
  }

  detail(text, tone = "detail", ts = this.ts) {
    this.say({ text, tone, level: "detail", ts });
  }

  majority() {
    return Math.floor(this.model.nodes.size / 2) + 1;
  }

  role(id) {
    const n = this.model.nodes.get(id);
    return n && n.state ? n.state.role : "unknown";
  }

  entryText(id, index) {
    const n = this.model.nodes.get(id);
    const e = n && n.state ? n.state.log.find((x) => x.index === index) : undefined;
    return e ? e.text : `entry ${index}`;
  }

  // --- state: diff against the previous state of the same node ---------------------------
  onState(ev, prev) {
    this.ts = ev.ts;
    const id = ev.node;
    if (!prev) return;
    const before = new Map(prev.log.map((e) => [e.index, e]));
    for (const e of ev.log) {
      const old = before.get(e.index);
      if (old && old.term !== e.term) {
        this.main(
          `${id} replaced its uncommitted "${old.text}" (term ${old.term}) at index ${e.index} ` +
            `with the leader's "${e.text}" (term ${e.term})`,
          "warn",
        );
        this.lesson("heal");
      } else if (!old && e.index > prev.last_index) {
        if (ev.role === "leader") {
          const state = e.committed ? "committed" : "uncommitted";
          this.main(`Leader ${id} appended ${e.text} at index ${e.index} (${state})`, "warn");
        } else {
          this.detail(`${id} appended ${e.text} at index ${e.index} from ${ev.leader ?? "the leader"} and ACKs it`);
        }
      }
    }
    if (ev.term !== prev.term && ev.role === prev.role && ev.role === "follower") {
      this.detail(`${id} moved to term ${ev.term}`);
    }
  }

  // --- trace: what the Raft core itself narrates ---------------------------------------------
  onTrace(ev) {
    this.ts = ev.ts;
    const id = ev.node;
    const d = ev.detail || "";
    switch (ev.event) {
      case "pre_vote_started":
        if (this.model.nodes.get(id)?.isolated) {
          this.detail(`${id} is cut off: its pre-vote for term ${ev.term + 1} reaches nobody (and its term does not grow)`, "warn");
          break;
        }
        this.main(`${id} heard no leader for an election timeout: asks for pre-votes for term ${ev.term + 1}`, "warn");
        break;
      case "election_started":
        this.main(`${id} started an election for term ${ev.term}: votes for itself, sends RequestVote`, "warn");
        break;
      case "vote_granted":
        if (d.startsWith("pre-vote ")) this.detail(`${id} would vote for ${d.slice(9)} (pre-vote, term ${ev.term + 1})`);
        else this.main(`${id} votes for ${d} in term ${ev.term}`);
        break;
      case "vote_rejected":
        this.detail(`${id} refuses its ${d.startsWith("pre-vote ") ? "pre-vote" : "vote"} to ${d.replace("pre-vote ", "")} (it still hears a leader, or its log is newer)`);
        break;
      case "became_leader": {
        const others = [...this.model.nodes.values()].filter((n) => n.id !== id);
        const cut = others.filter((n) => n.isolated || !n.running).map((n) => n.id);
        const why = cut.length ? ` while ${cut.join(", ")} ${cut.length > 1 ? "are" : "is"} cut off or down` : "";
        this.main(`${id} won a majority: LEADER of term ${ev.term}${why}`, "good");
        this.acks.set(id, { term: ev.term, match: new Map() });
        this.lesson("elect");
        break;
      }
      case "became_follower":
        this.detail(`${id} is a follower in term ${ev.term}${d ? `, leader ${d}` : ""}`);
        break;
      case "stepped_down":
        if (this.quorumLost.delete(id)) this.detail(`${id} is a follower now (term ${ev.term})`);
        else this.main(`Leader ${id} saw a newer term (${ev.term}) and stepped down to follower`, "warn");
        break;
      case "quorum_lost":
        this.quorumLost.add(id);
        this.main(`Leader ${id} heard from no majority for a whole election timeout: it steps down (check-quorum)`, "bad");
        this.lesson("isolated");
        break;
      case "truncated":
        this.detail(`${id} removed its conflicting entries from index ${ev.index} on: the leader's log wins`, "warn");
        this.lesson("heal");
        break;
      case "appended":
        break; // narrated from the state event that follows (it carries the entry's text)
      case "committed":
        this.onCommitted(ev);
        break;
      case "read_confirmed":
        this.main(`${id} heard from a majority in a heartbeat round: still leader, reads up to index ${ev.index} are safe`, "good");
        this.lesson("read");
        break;
      case "transfer_started":
        this.main(`Leader ${id} hands leadership to ${d}: catches it up, then sends TimeoutNow`, "warn");
        break;
      default:
        this.detail(`${id}: ${ev.event} ${d}`.trim());
    }
  }

  onCommitted(ev) {
    const id = ev.node;
    if (this.role(id) !== "leader") {
      this.detail(`${id} learned that index ${ev.index} is committed and applies it`);
      return;
    }
    const acks = this.acks.get(id);
    let count = 1;
    if (acks) for (const idx of acks.match.values()) if (idx >= ev.index) count += 1;
    const n = this.model.nodes.size;
    const text = this.entryText(id, ev.index);
    const who = count >= this.majority() ? `${count}/${n} acknowledged` : "a majority acknowledged";
    this.main(`${who} index ${ev.index} (${text}): committed`, "good");
  }

  // --- messages -----------------------------------------------------------------------------
  onMessage(ev) {
    this.ts = ev.ts;
    const id = ev.node;
    if (ev.dir === "recv" && ev.type === "AppendEntriesResponse" && id === ev.to) {
      let acks = this.acks.get(id);
      if (!acks || acks.term !== ev.term) {
        acks = { term: ev.term, match: new Map() };
        this.acks.set(id, acks);
      }
      if (ev.success) {
        acks.match.set(ev.from, Math.max(acks.match.get(ev.from) ?? 0, ev.index));
      } else if (ev.index === 0) {
        this.detail(`${ev.from} rejects ${id}'s AppendEntries: it is already in term ${ev.term}`, "warn");
      } else {
        this.detail(`${ev.from} rejected AppendEntries at index ${ev.index} (logs differ): ${id} backs up and retries`, "warn");
      }
    } else if (ev.dir === "send" && ev.type === "AppendEntries" && ev.entries > 0) {
      this.detail(`${ev.from} → ${ev.to} AppendEntries: ${ev.entries} entr${ev.entries > 1 ? "ies" : "y"} up to index ${ev.index}`);
    } else if (ev.dir === "send" && ev.type === "TimeoutNow") {
      this.main(`${ev.from} → ${ev.to} TimeoutNow: "start an election now" (leadership transfer)`, "warn");
    } else if (ev.dir === "drop") {
      this.onDrop(ev);
    } else if (ev.dir === "recv" && ev.type === "Heartbeat") {
      this.maybeIdle();
    }
  }

  onDrop(ev) {
    if (ev.ts <= this.healedAt) return; // lost during a cut that has healed since (arrived late)
    const id = ev.node;
    const outbound = id === ev.from;
    let rep = this.dropReports.get(id);
    if (!rep) {
      rep = { at: 0, since: ev.ts, peers: new Set(), timer: null, outbound };
      this.dropReports.set(id, rep);
    }
    if (!rep.peers.size) rep.since = ev.ts;
    rep.peers.add(outbound ? ev.to : ev.from);
    rep.outbound = rep.outbound || outbound;
    if (rep.timer !== null || Date.now() - rep.at < DROP_REPORT_MS) return;
    // Collect the peers lost over a short moment, then say it once (at the first drop's time).
    rep.timer = setTimeout(() => this.reportDrops(id, rep), DROP_COLLECT_MS);
  }

  reportDrops(id, rep) {
    clearTimeout(rep.timer);
    const peers = [...rep.peers].sort().join(", ");
    const outbound = rep.outbound;
    const ts = rep.since;
    rep.at = Date.now();
    rep.timer = null;
    rep.peers.clear();
    rep.outbound = false;
    const node = this.model.nodes.get(id);
    const st = node && node.state;
    if (st && st.role === "leader" && outbound) {
      if (st.last_index > st.commit_index) {
        this.main(
          `No quorum: leader ${id} cannot reach ${peers} (network cut); retrying, ` +
            `index ${st.last_index} stays uncommitted`,
          "bad",
          ts,
        );
        this.lesson("isolated");
      } else {
        this.main(`Leader ${id} cannot reach ${peers} (network cut): its heartbeats are lost`, "warn", ts);
      }
    } else {
      this.detail(`${id} ${outbound ? "cannot exchange messages with" : "drops messages from"} ${peers} (network cut)`, "warn", ts);
    }
  }

  maybeIdle() {
    if (this.idle || Date.now() - this.lastMain < IDLE_AFTER_MS) return;
    const nodes = [...this.model.nodes.values()];
    const live = nodes.filter((n) => n.running && n.connected && n.state);
    if (!live.some((n) => n.state.role === "leader")) return;
    if (live.some((n) => n.state.commit_index !== n.state.last_index || n.isolated)) return;
    this.idle = true;
    this.lastMain = Date.now();
    this.say({ text: "System idle. Waiting for client.", tone: "info", level: "main", ts: this.ts });
  }

  // --- the demo's own events ----------------------------------------------------------------------
  onDemo(ev) {
    this.ts = ev.ts;
    switch (ev.event) {
      case "client":
        this.onClient(ev);
        break;
      case "net":
        if (ev.action === "heal") {
          // Drops still being collected happened during the cut: say them now, before the heal.
          for (const [id, rep] of this.dropReports) if (rep.timer !== null) this.reportDrops(id, rep);
          this.healedAt = ev.ts;
        }
        this.main(ev.text, ev.action === "heal" ? "good" : "warn");
        if (ev.errors && Object.keys(ev.errors).length) {
          this.detail(`could not reach ${Object.keys(ev.errors).join(", ")}: ${Object.values(ev.errors).join("; ")}`, "bad");
        }
        break;
      case "process":
        this.main(ev.text, ev.state === "started" ? "good" : "bad");
        break;
      case "stream":
        if (ev.connected) this.detail(`connected to ${ev.node}'s event stream`);
        else this.main(`lost ${ev.node}'s event stream: the node is down or restarting`, "bad");
        break;
      default:
        break;
    }
  }

  onClient(ev) {
    const key = ev.key || "X";
    if (ev.phase === "sent") {
      if (ev.op === "SET") this.main(`Client → ${ev.node}: SET ${key}=${ev.value}`);
      else if (ev.op === "READ") this.main(`Client → ${ev.node}: linearizable read of ${key}; the leader must first confirm with a majority that it still leads`);
      else this.main(`Client → ${ev.node}: transfer leadership${ev.to ? ` to ${ev.to}` : ""}`);
      return;
    }
    if (ev.phase === "ok") {
      if (ev.op === "SET") this.main(`${ev.node} → client: OK, ${key}=${ev.value} is committed at index ${ev.index} (${ev.ms} ms)`, "good");
      else if (ev.op === "READ") this.main(ev.value === null ? `${ev.node} → client: ${key} is not set yet (confirmed by a majority)` : `${ev.node} → client: ${key} = ${ev.value} (a linearizable read, ${ev.ms} ms)`, "good");
      else this.main(`leadership moved to ${ev.leader} (term ${ev.term})`, "good");
      return;
    }
    const code = ev.status ? `${ev.status} ${ev.error}` : ev.error;
    if (ev.op === "READ") {
      this.main(`Read refused by ${ev.node}: ${code}: ${ev.message}. No majority, no answer: never a stale one.`, "bad");
      this.lesson("read");
    } else {
      this.main(`${ev.node} → client: ${ev.op} failed: ${code}: ${ev.message}`, "bad");
    }
  }
}
