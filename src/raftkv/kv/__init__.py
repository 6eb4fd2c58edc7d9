"""The replicated key-value state machine (pure): commands in, deterministic results out.

Typical use by the runtime:
    data = encode_command(Put("x", b"99"), Session("7-a1b2", seq=1))     # propose data
    result = store.apply(entry.index, entry.data)                         # once committed
"""

from raftkv.kv.commands import (
    COMMAND_FORMAT,
    Cas,
    Command,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    OpenSession,
    Put,
    Session,
    Txn,
    TxnDelete,
    TxnGet,
    TxnOp,
    TxnPut,
    decode_command,
    encode_command,
    validate_command,
    validate_session,
)
from raftkv.kv.history import Compacted
from raftkv.kv.limits import (
    MAX_CLIENT_ID_SIZE,
    MAX_COMMAND_SIZE,
    MAX_KEY_SIZE,
    MAX_TXN_OPS,
    MAX_VALUE_SIZE,
    validate_key,
    validate_prefix,
    validate_value,
)
from raftkv.kv.model import Event, EventType, KeyValue
from raftkv.kv.results import (
    DeleteResponse,
    GetResponse,
    OpResponse,
    PutResponse,
    Result,
    ResultStatus,
)
from raftkv.kv.sessions import SessionLimits
from raftkv.kv.store import KvConfig, KvStore

__all__ = [
    "COMMAND_FORMAT",
    "MAX_CLIENT_ID_SIZE",
    "MAX_COMMAND_SIZE",
    "MAX_KEY_SIZE",
    "MAX_TXN_OPS",
    "MAX_VALUE_SIZE",
    "Cas",
    "Command",
    "Compacted",
    "Compare",
    "CompareOp",
    "CompareTarget",
    "Delete",
    "DeleteResponse",
    "Event",
    "EventType",
    "GetResponse",
    "KeyValue",
    "KvConfig",
    "KvStore",
    "OpResponse",
    "OpenSession",
    "Put",
    "PutResponse",
    "Result",
    "ResultStatus",
    "Session",
    "SessionLimits",
    "Txn",
    "TxnDelete",
    "TxnGet",
    "TxnOp",
    "TxnPut",
    "decode_command",
    "encode_command",
    "validate_command",
    "validate_key",
    "validate_prefix",
    "validate_session",
    "validate_value",
]
