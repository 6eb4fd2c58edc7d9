"""A TCP listener that accepts every connection and resets it at once (SO_LINGER 0), as a
dying or restarting process can; in a thread, so the reset is not ordered by the test's loop."""

from __future__ import annotations

import socket
import struct
import threading
import time


class ResettingListener(threading.Thread):
    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:  # a just-killed node's sockets may hold the port for a moment
            try:
                self.sock.bind((host, port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise
                time.sleep(0.05)
        self.sock.listen(128)
        self.sock.settimeout(0.05)
        self.halt = threading.Event()
        self.resets = 0

    def run(self) -> None:
        with self.sock:
            while not self.halt.is_set():
                try:
                    conn, _ = self.sock.accept()
                except TimeoutError:
                    continue
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                self.resets += 1

    def stop(self) -> None:
        """Stop and close the port (it is free to bind once this returns)."""
        self.halt.set()
        self.join(5)
