"""One unix socket in front of several QEMU monitors, so that one proxy can serve several
clients at once, each with its own real QEMU session (QEMU serves one client per monitor)."""
from __future__ import annotations

import socket
import threading


class MonitorPool:
    """One unix socket in front of several QEMU monitors: each connection gets the next free
    monitor (QEMU serves one client per monitor), so that one proxy can serve several
    clients at once, each with its own real QEMU session. A connection that finds every
    monitor taken waits for one to be let go (as it would in QEMU's listen backlog): the
    proxy's version probe, for one, frees its monitor only after it has closed.

    With ``keep_bytes`` it is also a tap: ``sessions`` gets, per connection, the bytes each
    side sent (``client``, ``qemu``) and an event set once both directions closed."""

    def __init__(self, path: str, monitors: list[str], wait: float = 10.0, keep_bytes: bool = False):
        self.path = path
        self.keep_bytes = keep_bytes
        self.sessions: list[dict] = []
        self.free = list(monitors)
        self.wait = wait
        self.cond = threading.Condition()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.free, timeout=self.wait):
                c.close()
                return
            mon = self.free.pop(0)
        u = socket.socket(socket.AF_UNIX)
        u.connect(mon)
        state = {"open": 2}
        kept = {"client": bytearray(), "qemu": bytearray(), "done": threading.Event()}
        if self.keep_bytes:
            with self.cond:
                self.sessions.append(kept)

        def pump(a, b, into):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    if self.keep_bytes:
                        into.extend(d)
                    b.sendall(d)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self.cond:
                state["open"] -= 1
                if state["open"] == 0:
                    a.close()
                    b.close()
                    self.free.append(mon)
                    kept["done"].set()
                    self.cond.notify()

        threading.Thread(target=pump, args=(c, u, kept["client"]), daemon=True).start()
        threading.Thread(target=pump, args=(u, c, kept["qemu"]), daemon=True).start()

    def close(self) -> None:
        self.sock.close()
