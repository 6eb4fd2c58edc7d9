from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmdline.nodes import InProcess, one_node


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No RAFTKV_* variables of the developer's shell, no ./raftkv-data of theirs."""
    for var in [v for v in os.environ if v.startswith("RAFTKV_")]:
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real single-node cluster per test module; its HTTP URL."""
    with one_node(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])) as node_url:
        yield node_url


@pytest.fixture
def kv(
    url: str, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> InProcess:
    """The raftkv command, run in this process against `url`."""
    return InProcess(capsysbinary, monkeypatch, url)
