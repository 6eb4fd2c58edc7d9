"""The JSON form of transactions (POST /v1/txn) and of key-values in responses.

Request (etcd-style; every list may be omitted):

    {"compare": [{"key": "a", "target": "value", "op": "=", "value": "x"},
                 {"key": "b", "target": "mod", "op": "<", "value": 5}],
     "success": [{"put": {"key": "a", "value": "y"}},
                 {"delete": {"key": "tmp/", "prefix": true}},
                 {"get": {"key": "c"}}],
     "failure": [{"get": {"key": "a"}}]}

- target: "value" | "version" | "create" (create_revision) | "mod" (mod_revision);
  op: "=" | "!=" | "<" | ">". The operand "value" is a string for target "value" (or give
  "value_b64" for binary) and an integer otherwise. A value compare on an absent key is false.
- put takes "value" (UTF-8 text) or "value_b64"; delete and get take an optional "prefix".
- All writes of the branch that runs share one new revision.

Response: {"succeeded": bool, "revision": n, "index": i, "responses": [one per op, in order:
{"put": {"prev_revision": r}} | {"delete": {"deleted": n}} | {"get": {"kvs": [kv, ...]}}]}.

A kv is {"key", "value" (when UTF-8) or "value_b64" (otherwise), "create_revision",
"mod_revision", "version"}.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from raftkv.errors import BadRequest
from raftkv.kv.commands import (
    Compare,
    CompareOp,
    CompareTarget,
    Txn,
    TxnDelete,
    TxnGet,
    TxnOp,
    TxnPut,
)
from raftkv.kv.model import KeyValue
from raftkv.kv.results import DeleteResponse, GetResponse, OpResponse, PutResponse, Result

_OPS = {"=": CompareOp.EQ, "==": CompareOp.EQ, "!=": CompareOp.NE, "<": CompareOp.LT}
_OPS[">"] = CompareOp.GT
_TARGETS = {t.value: t for t in CompareTarget}


def decode_json(body: bytes) -> Any:
    if not body:
        raise BadRequest("expected a JSON body")
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # (invalid UTF-8 in a string)
        raise BadRequest(f"malformed JSON: {e}") from None


def parse_txn(doc: Any) -> Txn:
    obj = _object(doc, "txn")
    _only(obj, {"compare", "success", "failure"}, "txn")
    compares = tuple(_compare(c, i) for i, c in enumerate(_list(obj, "compare")))
    success = tuple(_op(o, f"success[{i}]") for i, o in enumerate(_list(obj, "success")))
    failure = tuple(_op(o, f"failure[{i}]") for i, o in enumerate(_list(obj, "failure")))
    return Txn(compares, success, failure)


def txn_result_json(result: Result, index: int) -> dict[str, Any]:
    return {
        "succeeded": result.succeeded,
        "revision": result.revision,
        "index": index,
        "responses": [_response(r) for r in result.responses],
    }


def kv_json(kv: KeyValue) -> dict[str, Any]:
    out: dict[str, Any] = {"key": kv.key}
    out.update(value_json(kv.value))
    out["create_revision"] = kv.create_revision
    out["mod_revision"] = kv.mod_revision
    out["version"] = kv.version
    return out


def value_json(value: bytes) -> dict[str, str]:
    """{"value": text} for UTF-8 values, {"value_b64": ...} for anything else."""
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_b64": base64.b64encode(value).decode("ascii")}


# --- parsing helpers ----------------------------------------------------------------------


def _response(r: OpResponse) -> dict[str, Any]:
    match r:
        case PutResponse(prev_revision=prev):
            return {"put": {"prev_revision": prev}}
        case DeleteResponse(deleted=deleted):
            return {"delete": {"deleted": deleted}}
        case GetResponse(kvs=kvs):
            return {"get": {"kvs": [kv_json(kv) for kv in kvs]}}


def _compare(doc: Any, i: int) -> Compare:
    where = f"compare[{i}]"
    obj = _object(doc, where)
    _only(obj, {"key", "target", "op", "value", "value_b64"}, where)
    key = _str(obj, "key", where)
    target = _TARGETS.get(_str(obj, "target", where))
    if target is None:
        raise BadRequest(f"{where}.target must be one of {', '.join(_TARGETS)}")
    op = _OPS.get(_str(obj, "op", where))
    if op is None:
        raise BadRequest(f"{where}.op must be one of =, !=, <, >")
    operand: bytes | int
    if target is CompareTarget.VALUE:
        operand = _bytes(obj, where)
    else:
        value = obj.get("value")
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{where}.value must be an integer for target {target.value!r}")
        operand = value
    return Compare(key, target, op, operand)


def _op(doc: Any, where: str) -> TxnOp:
    obj = _object(doc, where)
    if len(obj) != 1:
        raise BadRequest(f'{where} must have exactly one of "put", "delete", "get"')
    kind, args = next(iter(obj.items()))
    body = _object(args, f"{where}.{kind}")
    match kind:
        case "put":
            _only(body, {"key", "value", "value_b64"}, where)
            return TxnPut(_str(body, "key", where), _bytes(body, where))
        case "delete":
            _only(body, {"key", "prefix"}, where)
            return TxnDelete(_str(body, "key", where), _bool(body, "prefix", where))
        case "get":
            _only(body, {"key", "prefix"}, where)
            return TxnGet(_str(body, "key", where), _bool(body, "prefix", where))
    raise BadRequest(f'{where}: unknown operation {kind!r} (use "put", "delete" or "get")')


def _object(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise BadRequest(f"{where} must be a JSON object")
    return doc


def _only(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(obj) - allowed
    if unknown:
        raise BadRequest(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")


def _list(obj: dict[str, Any], name: str) -> list[Any]:
    value = obj.get(name, [])
    if not isinstance(value, list):
        raise BadRequest(f'"{name}" must be a JSON list')
    return value


def _str(obj: dict[str, Any], name: str, where: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{where}.{name} must be a string")
    return value


def _bool(obj: dict[str, Any], name: str, where: str) -> bool:
    value = obj.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{where}.{name} must be true or false")
    return value


def _bytes(obj: dict[str, Any], where: str) -> bytes:
    if "value" in obj and "value_b64" in obj:
        raise BadRequest(f'{where}: give "value" or "value_b64", not both')
    if "value_b64" in obj:
        text = obj["value_b64"]
        if not isinstance(text, str):
            raise BadRequest(f"{where}.value_b64 must be a base64 string")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{where}.value_b64 is not valid base64") from None
    value = obj.get("value")
    if not isinstance(value, str):
        raise BadRequest(f'{where}.value must be a string (or use "value_b64")')
    return value.encode("utf-8", "surrogatepass")
