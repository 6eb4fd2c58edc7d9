"""faultfs: a FUSE file system that forgets what was not fsynced, for power-cut testing.

    python -m raftkv.faultfs MOUNTPOINT --backing DIR --control SOCK   (or `raftkv faultfs`)

Reads and writes pass to the backing directory only when made durable (file fsync for data,
directory fsync for names); until then they live in the FS process's memory. Through the
control socket it loses every unsynced write (a power cut), tears the newest one, fails the
next fsync with EIO, and answers ENOSPC past a quota. state.py states the exact model;
control.py the commands; FaultMount (mount.py) runs one from Python.
"""

from raftkv.faultfs.control import ControlError, command, command_async
from raftkv.faultfs.mount import FaultMount

__all__ = ["ControlError", "FaultMount", "command", "command_async"]
