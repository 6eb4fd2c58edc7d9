"""The demo page in a real browser (Debian's chromium, headless, driven by Playwright) against
a real 3-node cluster of OS processes: commit, network cut, failed read, heal, crash/restart.

Screenshots go to test-artifacts/demo/. With RAFTKV_DOCS_SCREENSHOT=1 the one of the cut
network also refreshes docs/demo-screenshot.png (the README's picture).
"""

from __future__ import annotations

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
    from playwright.sync_api import Page

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
def page(demo: Demo) -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        pg = browser.new_page(viewport={"width": 1440, "height": 960})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(demo.url)
        yield pg
        browser.close()
        assert not errors, f"JavaScript errors: {errors}"


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
