"""The demo page in a real browser (Debian's chromium, headless, driven by Playwright) against
a real 3-node cluster of OS processes: commit, network cut, failed read, heal, crash/restart.

Screenshots go to test-artifacts/demo/. With RAFTKV_DOCS_SCREENSHOT=1 the one of the cut
network also refreshes docs/demo-screenshot.png (the README's picture).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .harness import ARTIFACTS, Demo, node_pids, pid_alive, running_demo

CHROMIUM = Path("/usr/bin/chromium")
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "demo-screenshot.png"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing: pip install playwright"
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.timeout(150)

WAIT_MS = 20_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with running_demo(tmp_path_factory.mktemp("demo") / "data", slow=2.0) as d:
        yield d
    assert d.proc.returncode == 0, d.text()
    assert "stopping the nodes" in d.text()
    pids = node_pids(d)
    assert len(pids) == 3, d.text()
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in pids), "a node outlived the demo"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


@contextlib.contextmanager
def open_page(browser: Browser, demo: Demo, width: int = 1440, height: int = 960) -> Iterator[Page]:
    """A fresh page (its own narrator and feed) on the demo; no JavaScript error allowed."""
    pg = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(demo.url)
    yield pg
    pg.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture(scope="module")
def page(browser: Browser, demo: Demo) -> Iterator[Page]:
    with open_page(browser, demo) as pg:
        yield pg


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def wait_js(page: Page, expr: str, arg: Any = None, timeout: int = WAIT_MS) -> Any:
    """Wait until the JS function expr(arg) is truthy; returns its value."""
    handle = page.wait_for_function(expr, arg=arg, timeout=timeout)
    return handle.json_value()


LEADER = """() => {
  const l = document.querySelectorAll('.card[data-role="leader"]');
  return l.length === 1 ? l[0].dataset.node : null;
}"""

ENTRY_ON = """([node, text, committed]) => {
  const card = document.querySelector(`.card[data-node="${node}"]`);
  return [...card.querySelectorAll('.entry')].some(
    (e) => e.dataset.text === text && e.dataset.committed === String(committed));
}"""

ON_ALL = """([text]) => {
  const cards = [...document.querySelectorAll('.card')];
  return cards.length === 3 && cards.every((c) => [...c.querySelectorAll('.entry')].some(
    (e) => e.dataset.text === text && e.dataset.committed === 'true'));
}"""

CONVERGED = """([absent]) => {
  const cards = [...document.querySelectorAll('.card')];
  const key = (e) => [e.dataset.index, e.dataset.term, e.dataset.text, e.dataset.committed];
  const logs = cards.map((c) => [...c.querySelectorAll('.entry')].map(
    (e) => key(e).join(':')).join('|'));
  return cards.length === 3 && logs.every((l) => l === logs[0]) && !logs[0].includes(absent)
    && !logs[0].includes(':false') && cards.every((c) => c.dataset.up === 'true');
}"""


NO_ENTRY = "(no such entry)"  # CONVERGED's "absent" text when no entry must be gone


def entry_on(page: Page, node: str, text: str, committed: bool) -> bool:
    return bool(page.evaluate(ENTRY_ON, [node, text, committed]))


def send(page: Page, value: str, via: str = "auto") -> None:
    page.select_option("#via", via)
    page.fill("#value", value)
    page.click("#send")


def test_commit_cut_read_heal_and_crash(page: Page) -> None:
    # 1. a leader is elected; SET X=99 turns committed (green) on all three cards
    leader = wait_js(page, LEADER)
    assert page.locator(".card").count() == 3
    send(page, "99")
    wait_js(page, ON_ALL, ["SET X=99"])
    wait_js(page, "() => document.querySelector('#client-result').dataset.outcome === 'ok'")
    assert "committed" in page.inner_text("#status-line") or page.inner_text("#feed")
    shot(page, "01-committed.png")

    # 2. isolate the leader, send again: the entry stays uncommitted (yellow) on the old leader
    page.click("#isolate-leader")
    wait_js(page, "() => document.querySelector('#net-result').dataset.outcome === 'ok'")
    assert page.get_attribute(f'.card[data-node="{leader}"]', "data-isolated") == "true"
    send(page, "77")
    wait_js(page, ENTRY_ON, [leader, "SET X=77", False])

    # 3. a linearizable read through the isolated leader fails clearly
    page.select_option("#via", leader)
    page.click("#read")
    wait_js(
        page,
        "() => document.querySelector('#read-result').dataset.outcome === 'error'",
        timeout=15_000,
    )
    assert "Read failed" in page.inner_text("#read-result")

    # 4. the majority side elects a new leader and keeps committing; 77 stays yellow on the old one
    new_leader = wait_js(
        page,
        """(old) => {
          const l = [...document.querySelectorAll('.card[data-role="leader"]')]
            .map((c) => c.dataset.node).filter((n) => n !== old);
          return l.length === 1 ? l[0] : null;
        }""",
        leader,
    )
    assert new_leader != leader
    send(page, "55")
    others = [n for n in ("n1", "n2", "n3") if n != leader]
    for n in others:
        wait_js(page, ENTRY_ON, [n, "SET X=55", True])
        assert not entry_on(page, n, "SET X=77", False)
    assert entry_on(page, leader, "SET X=77", False), "the old leader's entry must stay uncommitted"
    wait_js(page, "() => document.querySelector('#client-result').dataset.outcome !== 'pending'")
    wait_js(page, """() => document.querySelector('[data-lesson="isolated"]').dataset.seen""")
    wait_js(page, """() => document.querySelector('[data-lesson="elect"]').dataset.seen""")
    page.check("#heartbeats")  # show the live heartbeats (and the lost ones) in the picture
    page.wait_for_timeout(400)
    shot(page, "02-isolated-leader.png")
    page.screenshot(path=str(ARTIFACTS / "docs-screenshot.png"))
    if os.environ.get("RAFTKV_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "docs-screenshot.png", DOCS_SHOT)
    page.uncheck("#heartbeats")

    # 5. heal: the old leader's uncommitted entry is replaced and the three logs converge
    page.click("#heal")
    wait_js(page, CONVERGED, ["SET X=77"])
    wait_js(page, """() => document.querySelector('[data-lesson="heal"]').dataset.seen""")
    assert entry_on(page, leader, "SET X=55", True)
    shot(page, "03-healed.png")

    # 6. crash a follower (kill -9), restart it, and it catches up from its own data
    victim = next(n for n in ("n1", "n2", "n3") if n != wait_js(page, LEADER))
    page.click(f'.card[data-node="{victim}"] [data-action="crash"]')
    wait_js(
        page,
        f"""() => document.querySelector('.card[data-node="{victim}"]').dataset.role === 'down'""",
    )
    send(page, "42")
    wait_js(
        page,
        "() => document.querySelector('#client-result').textContent.includes('X=42: committed')",
    )
    shot(page, "04-crashed.png")
    page.click(f'.card[data-node="{victim}"] [data-action="restart"]')
    wait_js(page, ON_ALL, ["SET X=42"], timeout=30_000)
    wait_js(page, CONVERGED, ["SET X=77"])
    shot(page, "05-restarted.png")


# --- issue #17: what a new user tripped on --------------------------------------------------


def test_legend_says_yellow_is_not_known_committed_here_yet(page: Page) -> None:
    """A follower's entry stays yellow until the leader's next message tells it the commit
    index, so yellow cannot mean "no majority yet"."""
    legend = page.inner_text(".legend")
    assert "not known committed here yet" in legend
    assert "no majority" not in legend


# Elements sticking out to the right of the viewport, unless a box inside the page scrolls or
# clips them sideways (the comparison table scrolls inside its own box; that is intended).
OVERFLOWING = """() => {
  const vw = document.documentElement.clientWidth;
  const clipped = (e) => {
    for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible') return true;
    }
    return false;
  };
  return [...document.body.querySelectorAll('*')]
    .filter((e) => {
      const r = e.getBoundingClientRect();
      return r.width > 0 && r.right > vw + 0.5;
    })
    .filter((e) => !clipped(e))
    .map((e) => `${e.tagName.toLowerCase()}.${e.getAttribute('class') || ''}#${e.id}`
      + ` right=${Math.round(e.getBoundingClientRect().right)}`);
}"""


def assert_fits(pg: Page, width: int, when: str) -> None:
    scroll_width = pg.evaluate("() => document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{when}: the page scrolls sideways ({scroll_width} px)"
    assert pg.evaluate(OVERFLOWING) == [], f"{when}: wider than the {width} px viewport"


def test_nothing_is_wider_than_a_390px_phone(browser: Browser, demo: Demo) -> None:
    with open_page(browser, demo, 390, 844) as pg:
        leader = wait_js(pg, LEADER)
        wait_js(pg, "() => document.querySelectorAll('.card .entry').length > 0")
        pg.wait_for_timeout(300)
        assert_fits(pg, 390, "three nodes, one leader")
        # The longest card head: a cut-off follower, "pre-candidate" with its "isolated" badge.
        victim = next(n for n in ("n1", "n2", "n3") if n != leader)
        pg.click(f'.card[data-node="{victim}"] [data-action="isolate"]')
        wait_js(
            pg,
            f"""() => document.querySelector('.card[data-node="{victim}"]')
                .dataset.role === 'pre-candidate'""",
        )
        shot(pg, "06-phone-390.png")
        assert_fits(pg, 390, f"{victim} isolated, pre-candidate")
        pg.click("#heal")
        wait_js(pg, CONVERGED, [NO_ENTRY])


def test_client_panel_is_as_wide_as_the_control_column(browser: Browser, demo: Demo) -> None:
    box = """(sel) => { const r = document.querySelector(sel).getBoundingClientRect();
                        return [r.left, r.right]; }"""
    panels = """() => [...document.querySelectorAll('#controls fieldset')].map((f) => {
                  const r = f.getBoundingClientRect();
                  return [f.querySelector('legend').textContent, r.left, r.right]; })"""
    with open_page(browser, demo) as pg:
        wait_js(pg, LEADER)
        for width, height in ((1440, 960), (1000, 800), (390, 844)):
            pg.set_viewport_size({"width": width, "height": height})
            pg.wait_for_timeout(200)
            left, right = pg.evaluate(box, "#controls")
            for name, f_left, f_right in pg.evaluate(panels):
                assert (round(f_left), round(f_right)) == (round(left), round(right)), (
                    f"{width} px: the {name} panel spans {f_left:.0f}-{f_right:.0f}, "
                    f"the control column {left:.0f}-{right:.0f}"
                )
            if width <= 1100:  # one column: the controls line up with the cluster above them
                s_left, s_right = pg.evaluate(box, ".stage-wrap")
                assert (round(left), round(right)) == (round(s_left), round(s_right)), width


FEED = """() => [...document.querySelectorAll('#feed li')].map(
  (li) => [Number(li.dataset.ts), li.textContent])"""


def test_no_network_cut_line_after_the_heal(browser: Browser, demo: Demo) -> None:
    """The narrator collects the drops of a cut for a moment before saying them; a heal in that
    moment must not leave the cut's line after "network healed" in the event log. Pausing the
    display makes the moment certain: on resume the queued drops and the heal arrive at once."""
    with open_page(browser, demo) as pg:
        wait_js(pg, LEADER)
        pg.click("#pause")
        pg.click("#isolate-leader")
        wait_js(pg, "() => document.querySelector('#net-result').dataset.outcome === 'ok'")
        pg.wait_for_timeout(1500)  # heartbeats to the other two are dropped meanwhile
        pg.click("#heal")
        wait_js(pg, "() => document.querySelector('#net-result').textContent.includes('healed')")
        pg.click("#pause")  # resume: the queued events are narrated now
        pg.wait_for_timeout(1500)  # longer than the narrator's drop-collecting moment
        feed = pg.evaluate(FEED)  # newest first
        texts = [text for _, text in feed]
        healed = [i for i, t in enumerate(texts) if "network healed" in t]
        cut = [i for i, t in enumerate(texts) if "(network cut)" in t]
        assert len(healed) == 1, texts
        assert cut, f"the cut was never narrated: {texts}"
        assert min(cut) > healed[0], f"a network-cut line comes after the heal: {texts}"
        stamps = [ts for ts, _ in feed]
        assert stamps == sorted(stamps, reverse=True), f"the log is not in time order: {feed}"
        wait_js(pg, CONVERGED, [NO_ENTRY])


def test_results_from_before_the_heal_are_marked(browser: Browser, demo: Demo) -> None:
    outcome = "(sel) => document.querySelector(sel).dataset.outcome"
    with open_page(browser, demo) as pg:
        leader = wait_js(pg, LEADER)
        send(pg, "31")
        wait_js(pg, "() => document.querySelector('#client-result').dataset.outcome === 'ok'")
        pg.click("#isolate-leader")
        wait_js(pg, "() => document.querySelector('#net-result').dataset.outcome === 'ok'")
        pg.select_option("#via", leader)
        pg.click("#read")
        wait_js(
            pg,
            "() => document.querySelector('#read-result').dataset.outcome === 'error'",
            timeout=15_000,
        )
        before = {sel: pg.inner_text(sel) for sel in ("#client-result", "#read-result")}
        pg.click("#heal")
        for sel, text in before.items():
            wait_js(
                pg, f"() => document.querySelector('{sel}').dataset.stale === 'true'", timeout=5_000
            )
            assert pg.inner_text(sel) == f"Before the network healed: {text}"
        assert pg.evaluate(outcome, "#read-result") == "error"  # still says what happened
        shot(pg, "07-stale-after-heal.png")
        # A new answer is not stale.
        wait_js(pg, CONVERGED, [NO_ENTRY])
        send(pg, "32", via="auto")
        wait_js(pg, "() => document.querySelector('#client-result').textContent.includes('X=32')")
        wait_js(pg, "() => document.querySelector('#client-result').dataset.outcome === 'ok'")
        assert pg.get_attribute("#client-result", "data-stale") is None
        assert pg.get_attribute("#read-result", "data-stale") == "true"
