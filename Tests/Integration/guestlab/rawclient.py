"""A raw QMP socket client that keeps every byte it sent and received, for byte-exactness
checks (what crossed the socket must equal what a recording says crossed it)."""
from __future__ import annotations

import json
import socket
import time
from typing import Optional, Union


class RawClient:
    def __init__(self, address: Union[str, tuple], timeout: float = 10.0):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.sent = b""
        self.received = b""
        self.timeout = timeout
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += data

    def _recv_once(self, timeout: float) -> bool:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not chunk:
            self.eof = True
            return False
        self.received += chunk
        return True

    def messages(self) -> list[dict]:
        """Every complete CRLF-terminated JSON line received so far, parsed."""
        out = []
        for line in self.received.split(b"\r\n")[:-1]:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_for(self, pred, timeout: Optional[float] = None) -> dict:
        """Read until a received message satisfies ``pred``; return it."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for m in self.messages():
                if pred(m):
                    return m
            if self.eof:
                raise EOFError(f"connection closed; received {self.received[-500:]!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching message; received {self.received[-500:]!r}")
            self._recv_once(left)

    def wait_reply(self, id_=None, timeout: Optional[float] = None, count_before: int = 0) -> dict:
        """Wait for a return/error with this id (or, when id_ is None, a reply without id
        beyond the first ``count_before`` such replies)."""
        if id_ is None:
            deadline = time.monotonic() + (timeout or self.timeout)
            while True:
                plain = [m for m in self.messages() if ("return" in m or "error" in m) and "id" not in m]
                if len(plain) > count_before:
                    return plain[count_before]
                if self.eof or time.monotonic() > deadline:
                    raise TimeoutError(f"no reply without id; received {self.received[-500:]!r}")
                self._recv_once(deadline - time.monotonic())
        return self.wait_for(lambda m: ("return" in m or "error" in m) and m.get("id") == id_, timeout)

    def drain(self, quiet: float = 0.3) -> None:
        """Read until nothing arrives for ``quiet`` seconds."""
        while self._recv_once(quiet):
            pass

    def greeting(self) -> dict:
        return self.wait_for(lambda m: "QMP" in m)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def negotiated(path: str) -> RawClient:
    """A raw client on `path` that has read the greeting and negotiated."""
    c = RawClient(path)
    c.greeting()
    c.send(b'{"execute": "qmp_capabilities"}\r\n')
    c.wait_reply(None)
    return c


def burst(n: int, start: int = 0) -> bytes:
    """n pipelined commands with ids, sent in one write (QEMU answers them in order)."""
    return b"".join(b'{"execute": "query-status", "id": %d}\r\n' % i for i in range(start, start + n))
