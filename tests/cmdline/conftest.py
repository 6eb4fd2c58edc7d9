from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No RAFTKV_* variables of the developer's shell, no ./raftkv-data of theirs."""
    for var in [v for v in os.environ if v.startswith("RAFTKV_")]:
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
