"""`raftkv txn`: transactions from --if/--then/--else or a JSON body, on a real node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmdline.nodes import InProcess


def text(kv: InProcess, *argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    code, out, err = kv(*argv, stdin=stdin)
    return code, out.decode(), err


def test_create_if_absent_then_compare_and_swap(kv: InProcess) -> None:
    create = ("txn", "--if", "version(lock) = 0", "--then", "put lock alice", "--else", "get lock")
    code, out, err = text(kv, *create)
    assert (code, err) == (0, "")
    rev = int(out.split("(revision ")[1].split(")")[0])
    assert out.splitlines() == [
        f"SUCCEEDED: the comparisons held, --then ran (revision {rev})",
        "put 'lock': OK (it was at revision 0)",
    ]
    code, out, _ = text(kv, *create)  # again: the lock is taken, --else ran
    assert code == 0
    assert out.splitlines() == [
        f"FAILED: a comparison did not hold, --else ran (revision {rev})",
        f"get 'lock': 'lock' = 'alice' (revision {rev})",
    ]
    code, out, _ = text(
        kv, "txn", "--if", "value(lock) = alice", "--if", f"mod(lock) = {rev}",
        "--then", "put lock bob", "--then", 'put "a b" "c d"', "--then", "get lock",
    )  # fmt: skip
    assert code == 0 and out.splitlines()[1:] == [
        f"put 'lock': OK (it was at revision {rev})",
        "put 'a b': OK (it was at revision 0)",
        f"get 'lock': 'lock' = 'bob' (revision {rev + 1})",
    ]


def test_prefix_delete_and_values_from_stdin_and_files(kv: InProcess, tmp_path: Path) -> None:
    (tmp_path / "v").write_bytes(b"from a file")
    code, _, err = text(
        kv, "txn", "--then", "put q/1 -", "--then", f"put q/2 @{tmp_path / 'v'}", stdin=b"in\n"
    )
    assert code == 0, err
    code, out, _ = text(kv, "txn", "--then", "get q/ --prefix", "--then", "delete q/ --prefix")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4
    assert lines[1].startswith("get 'q/' --prefix: 'q/1' = 'in\\n' (revision ")
    assert lines[2].startswith("get 'q/' --prefix: 'q/2' = 'from a file' (revision ")
    assert lines[3] == "delete 'q/' --prefix: 2 deleted"


def test_a_json_body_from_a_file_or_stdin_and_json_output(kv: InProcess, tmp_path: Path) -> None:
    body = {
        "compare": [{"key": "j", "target": "version", "op": "=", "value": 0}],
        "success": [{"put": {"key": "j", "value_b64": "AP8="}}],
        "failure": [],
    }
    (tmp_path / "t.json").write_text(json.dumps(body))
    code, out, err = text(kv, "txn", "--file", str(tmp_path / "t.json"), "--json")
    doc = json.loads(out)
    assert (code, err, doc["succeeded"]) == (0, "", True)
    assert set(doc) == {"succeeded", "revision", "index", "responses"}
    assert doc["responses"] == [{"put": {"prev_revision": 0}}]
    code, out, _ = text(kv, "txn", "-f", "-", "--json", stdin=json.dumps(body).encode())
    assert (code, json.loads(out)["succeeded"]) == (0, False)  # j exists now
    assert kv("get", "j")[:2] == (0, b"\x00\xff\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--if", "size(k) = 1", "--then", "get k"], "TARGET one of value, version, create, mod"),
        (["--if", "mod(k) = x", "--then", "get k"], "mod compares with an integer"),
        (["--if", "mod(k) ~ 1", "--then", "get k"], "expected TARGET(KEY) OP OPERAND"),
        (["--then", "put k"], "expected `put KEY VALUE`, `delete KEY [--prefix]`"),
        (["--then", "increment k"], "expected `put KEY VALUE`"),
        (["--then", "put 'k v"], "No closing quotation"),
        (["--if", "version(k) = 0"], "nothing to do"),
        (["--file", "-", "--then", "get k"], "exclude each other"),
    ],
)
def test_bad_transactions_are_usage_errors(kv: InProcess, argv: list[str], message: str) -> None:
    code, out, err = text(kv, "txn", *argv)
    assert (code, out) == (2, "") and message in err


def test_the_server_checks_a_json_body(kv: InProcess, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"success": [{"put": {"key": "k", "value": 1}}]}')
    code, _, err = text(kv, "txn", "-f", str(tmp_path / "bad.json"))
    assert code == 1 and "success[0].value must be a string" in err
    (tmp_path / "x.json").write_text('{"sucess": []}')
    code, _, err = text(kv, "txn", "-f", str(tmp_path / "x.json"))
    assert code == 2 and "unknown field(s) sucess" in err
