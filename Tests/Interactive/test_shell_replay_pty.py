"""The shell's background replay on a real pseudo-terminal, driven by a real QMP client.

`replay start` serves the open recording while the prompt stays usable; qemu.qmp connects
to the socket, negotiates and runs a recorded command; the user controls the timeline from
the prompt (status, pause, speed, seek, stop) and quitting the shell stops the server.
"""
from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import pexpect
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("QMPREPLAY_BIN") or str(ROOT / ".build" / "debug" / "qmpreplay")
RECORDING = str(ROOT / "Recordings" / "lifecycle-qemu.qmprec")
PROMPT = re.compile(r"\] qmp> ")

qmp = pytest.importorskip("qemu.qmp")


def spawn(tmp: Path) -> pexpect.spawn:
    env = dict(os.environ, TERM="xterm", HOME=str(tmp), QMPREPLAY_HISTORY=str(tmp / "hist"), NO_COLOR="1")
    child = pexpect.spawn(BIN, ["shell", RECORDING], env=env, encoding="utf-8", timeout=20, dimensions=(40, 160))
    child.logfile_read = sys.stdout if os.environ.get("PTY_DEBUG") else None
    child.expect(PROMPT)
    return child


def run(child: pexpect.spawn, line: str) -> str:
    child.sendline(line)
    child.expect(PROMPT)
    return child.before


class Client(threading.Thread):
    """qemu.qmp in a thread: connects, negotiates, runs `query-status` and `stop`, collects
    events, then stays connected until told to leave (so the shell has a timeline to move)."""

    def __init__(self, path: str):
        super().__init__(daemon=True)
        self.path = path
        self.ready = threading.Event()
        self.leave = threading.Event()
        self.status: dict = {}
        self.events: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self.main())
        except BaseException as e:      # reported by the test
            self.error = e
            self.ready.set()

    async def main(self) -> None:
        c = qmp.QMPClient("shell-replay-test")
        await c.connect(self.path)
        self.status = await c.execute("query-status")
        await c.execute("stop")
        try:
            while True:
                self.events.append((await asyncio.wait_for(c.events.get(), 1.0))["event"])
        except asyncio.TimeoutError:
            pass
        self.ready.set()
        while not self.leave.is_set():
            await asyncio.sleep(0.05)
        await c.disconnect()


def test_background_replay_from_the_prompt():
    with tempfile.TemporaryDirectory(prefix="qsr-") as d:
        tmp = Path(d)
        sock = tmp / "fake.sock"
        child = spawn(tmp)
        try:
            out = run(child, f"replay start --listen unix:{sock} --speed 10")
            assert f"serving {RECORDING} on unix:{sock}" in out, out
            assert sock.exists()
            assert "no client is connected" in run(child, "replay seek #5")
            client = Client(str(sock))
            client.start()
            assert client.ready.wait(20) and client.error is None, client.error
            assert client.status["status"] == "running"
            assert "STOP" in client.events          # recorded while `stop` ran: sent with its reply
            # The prompt works while the server runs, and controls the client's timeline.
            assert "[#8 " in run(child, "next STOP") + child.after
            out = run(child, "replay status")
            assert "playing on unix:" in out and "1 client(s) (1 negotiated)" in out, out
            assert "paused at +" in run(child, "replay pause")
            assert "paused on unix:" in run(child, "replay status")
            assert "resumed at +" in run(child, "replay resume")
            assert "speed 100x" in run(child, "replay speed 100")
            assert "moved to #8" in run(child, "replay seek here")
            assert "already serving" in run(child, f"replay start --listen unix:{tmp / 'other.sock'}")
            client.leave.set()
            client.join(10)
            deadline = time.time() + 10
            while "1 session(s) finished" not in run(child, "replay status") and time.time() < deadline:
                time.sleep(0.1)
            out = run(child, "replay stop")
            assert "replay stopped" in out and "commands 2 matched, 0 unmatched" in out, out
            assert "no replay is running" in run(child, "replay pause")
            # A server left running is stopped when the shell quits.
            run(child, f"replay start --listen unix:{sock}")
            child.sendline("quit")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        assert child.exitstatus == 0
