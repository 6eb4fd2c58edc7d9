"""The latency-over-time PNG of one run: every operation's latency by outcome, OK throughput,
and the fault windows shaded. Needs matplotlib (optional): without it no plot is written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from raftkv.chaos.history import FINAL_CLIENT, OpRecord
from raftkv.chaos.nemesis import FaultEvent
from raftkv.check import OpOutcome

FAMILY_COLORS = {
    "partition": "#4c72b0",
    "kill": "#c44e52",
    "pause": "#8172b2",
    "delay": "#ccb974",
    "lossy": "#64b5cd",
    "power": "#dd8452",
    "torn": "#937860",
    "disk": "#da8bc3",
    "clock": "#55a868",
}
OUTCOME_STYLE = {  # outcome -> (colour, marker, label)
    OpOutcome.OK: ("#2ca02c", ".", "ok"),
    OpOutcome.FAIL: ("#ff7f0e", "x", "fail (no effect)"),
    OpOutcome.UNKNOWN: ("#d62728", "^", "unknown (write may have committed)"),
}
BIN_S = 0.5


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def plot_latency(
    path: Path,
    records: Sequence[OpRecord],
    events: Sequence[FaultEvent],
    title: str,
    duration: float,
) -> bool:
    """Write the PNG; False (and nothing written) when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        from matplotlib.patches import Patch  # noqa: PLC0415
    except ImportError:
        return False

    done = [r for r in records if r.ret is not None and r.client != FINAL_CLIENT]
    fig, (ax, tput) = plt.subplots(
        2, 1, figsize=(14, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for axis in (ax, tput):
        for ev in events:
            end = ev.end if ev.end is not None else duration
            axis.axvspan(ev.start, end, color=FAMILY_COLORS[ev.family], alpha=0.18, lw=0)
    for ev in events:
        ax.annotate(
            ev.name,
            xy=(ev.start, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -10),
            textcoords="offset points",
            fontsize=7,
            rotation=90,
            va="top",
            color=FAMILY_COLORS[ev.family],
        )
    for outcome, (color, marker, label) in OUTCOME_STYLE.items():
        pts = [
            (r.call, 1000.0 * (r.ret - r.call))
            for r in done
            if r.outcome is outcome and r.ret is not None
        ]
        if pts:
            xs, ys = zip(*pts, strict=True)
            size = 4 if outcome is OpOutcome.OK else 14
            ax.scatter(xs, [max(y, 0.05) for y in ys], s=size, c=color, marker=marker, label=label)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    families = sorted({ev.family for ev in events})
    handles += [Patch(color=FAMILY_COLORS[f], alpha=0.3) for f in families]
    labels += [f"{f} fault" for f in families]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)

    bins = max(1, int(duration / BIN_S) + 1)
    counts = [0] * bins
    for r in done:
        if r.outcome is OpOutcome.OK and r.ret is not None:
            counts[min(bins - 1, int(r.ret / BIN_S))] += 1
    tput.step([i * BIN_S for i in range(bins)], [c / BIN_S for c in counts], where="post", c="#333")
    tput.set_ylabel("ok ops/s")
    tput.set_xlabel("time since the clients started (s)")
    tput.set_xlim(0, duration)
    tput.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
