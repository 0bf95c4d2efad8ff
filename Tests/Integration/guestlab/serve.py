"""Helpers for tests of `qmpreplay serve`: the server process and a raw line client."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .lab import REPO
from .recorder import qmpreplay_binary

REC = REPO / "Recordings"


class Server:
    """A `qmpreplay serve` process on a unix socket in a fresh directory."""

    def __init__(self, recording: str, *extra: str):
        self.dir = Path(tempfile.mkdtemp(prefix="qmpreplay-serve-"))
        self.path = str(self.dir / "qmp.sock")
        self.report = self.dir / "report.json"
        self.args = [qmpreplay_binary(), "serve", str(REC / recording), "--listen", f"unix:{self.path}",
                     "--report", str(self.report), *extra]
        self.stderr_path = self.dir / "stderr.txt"
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=open(self.stderr_path, "wb"))
        deadline = time.time() + 10
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"serve did not start: {self.stderr()}")
            time.sleep(0.02)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def wait(self, timeout: float = 10) -> int:
        return self.proc.wait(timeout=timeout)

    def sessions(self) -> list[dict]:
        return json.loads(self.report.read_text())["sessions"]


class Raw:
    """A line client on a raw socket: every byte the server sends is kept."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self, timeout: float = 5) -> bytes:
        self.sock.settimeout(timeout)
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def msg(self, timeout: float = 5) -> dict:
        return json.loads(self.line(timeout))

    def call(self, data: bytes) -> bytes:
        self.send(data)
        return self.line()

    def quiet(self, seconds: float) -> bool:
        """True when nothing arrives for `seconds`."""
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        self.buf += chunk
        return False

    def close(self) -> None:
        self.sock.close()
