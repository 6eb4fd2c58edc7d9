"""Ready-made models: Porcupine's etcd register and kv append store, and raftkv's kv store."""

from raftkv.check.history import UNKNOWN_OUTPUT
from raftkv.check.models.kv_append import AppendOp, KvAppendInput, KvAppendModel
from raftkv.check.models.kv_register import KvInput, KvOp, KvRegisterModel, KvState
from raftkv.check.models.register import (
    EtcdRegisterModel,
    RegisterInput,
    RegisterOp,
    RegisterState,
)

__all__ = [
    "UNKNOWN_OUTPUT",
    "AppendOp",
    "EtcdRegisterModel",
    "KvAppendInput",
    "KvAppendModel",
    "KvInput",
    "KvOp",
    "KvRegisterModel",
    "KvState",
    "RegisterInput",
    "RegisterOp",
    "RegisterState",
]
