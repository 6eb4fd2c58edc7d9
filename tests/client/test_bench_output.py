"""`raftkv bench` output: the progress bar and the percentile summary (no timing involved)."""

from __future__ import annotations

import io

from raftkv.client.bench import BenchConfig, BenchResult, ProgressBar, report


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    out = _Tty()
    bar = ProgressBar(4.0, out, width=8)
    bar(1.0, 100, 100.0, 0)
    bar(4.0, 450, 120.0, 2)
    bar.close()
    text = out.getvalue()
    assert text.startswith("\r[##......]   1.0/4s")
    assert "\r[########]   4.0/4s" in text and "450 ops" in text and "2 errors" in text
    assert text.endswith("\n") and text.count("\n") == 1


def test_progress_bar_prints_lines_elsewhere() -> None:
    out = io.StringIO()
    bar = ProgressBar(2.0, out)
    bar(1.0, 10, 10.0, 0)
    bar(2.0, 25, 15.0, 0)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert "15 ops/s" in lines[1]


def test_report_lists_hdr_style_percentiles() -> None:
    result = BenchResult(BenchConfig(["http://x"]), elapsed=2.0, cpu_seconds=0.5)
    result.latencies = [i / 1000.0 for i in range(1, 1001)]  # 1..1000 ms
    text = report(result)
    assert "throughput   500 ops/s" in text
    assert "min 1.000  mean 500.500" in text
    rows = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()[4:]}
    assert rows == {"p50": 500.0, "p90": 900.0, "p99": 990.0, "p99.9": 999.0, "max": 1000.0}
