"""`qmpreplay serve --control`: a test drives the replay event by event.

A qemu.qmp client (QEMU's own Python library) is connected to `serve --paused --control
SOCKET`; the test steps the recorded events one at a time and checks what the client has
seen between two events, holds the replay before an event or before a command's reply and
releases it, without sleeping for the replay: each control reply comes after the events it
released were written to the client's socket (docs/REPLAY.md, "Control API").
"""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time

from guestlab.recorder import qmpreplay_binary
from guestlab.serve import REC


class Control:
    """A line client of the control socket: one request, one JSON reply."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX)
        deadline = time.monotonic() + 10
        while True:    # serve listens on its control socket just after its QMP socket
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.sock.settimeout(10)
        self.buf = b""

    def __call__(self, cmd: str, **members) -> dict:
        self.sock.sendall(json.dumps({"cmd": cmd, **members}).encode() + b"\n")
        return self.read()

    def read(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "the control socket closed"
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)


def balloon_events() -> list[tuple[int, int]]:
    """(record number, actual) of each BALLOON_CHANGE of guest-balloon.qmprec (record n is
    the file's line n + 2: the header comes first)."""
    out = []
    with open(REC / "guest-balloon.qmprec") as f:
        for n, line in enumerate(f):
            r = json.loads(line)
            if r.get("k") == "event" and r.get("n") == "BALLOON_CHANGE":
                out.append((n - 1, r["msg"]["data"]["actual"]))
    return out


def test_step_events_one_by_one_and_check_the_client_between_them(serve, qemu_qmp_available, tmp_path):
    from qemu.qmp import QMPClient

    ctl_path = str(tmp_path / "ctl.sock")
    srv = serve("guest-balloon.qmprec", "--paused", "--control", ctl_path)
    want = balloon_events()

    async def main():
        qmp = QMPClient("control-test")
        await qmp.connect(srv.path)
        ctl = Control(ctl_path)
        st = ctl("status")
        assert st["ok"] and st["paused"] and st["clients"][0]["negotiated"]
        assert st["next_record"] == want[0][0]
        # The client's state: the balloon size it last heard of.
        seen = []
        for k, (record, actual) in enumerate(want[:3]):
            r = ctl("step", n=1, id=k)
            assert r["ok"] and r["id"] == k and r["released"] == 1 and r["paused"]
            ev = await asyncio.wait_for(qmp.events.get(), 5)
            seen.append(ev["data"]["actual"])
            # Between two events: exactly this one arrived, and no other is on its way.
            assert seen[-1] == actual and qmp.events.empty()
            assert r["next_record"] == want[k + 1][0]
        # A command still gets its recorded reply while the timeline is paused.
        assert (await qmp.execute("query-balloon"))["actual"] > 0
        # Two at once, in one write.
        assert ctl("burst", n=2)["released"] == 2
        assert [(await asyncio.wait_for(qmp.events.get(), 5))["data"]["actual"] for _ in range(2)] == \
            [a for _, a in want[3:5]]
        # Hold before the 7th event, play at max speed: the 6th arrives, then nothing.
        h = ctl("hold", before_event=want[6][0])
        assert h["ok"] and h["holds"] == [{"hold": h["hold"], "before_event": want[6][0], "holding": False}]
        ctl("speed", speed="max")
        assert ctl("resume")["ok"]
        assert (await asyncio.wait_for(qmp.events.get(), 5))["data"]["actual"] == want[5][1]
        st = ctl("wait", until="held", timeout=5)   # answered when the timeline reaches the hold
        assert st["ok"], st
        assert st["clients"][0]["held_by"] == h["hold"] and st["next_record"] == want[6][0]
        assert qmp.events.empty()
        r = ctl("release", hold=h["hold"])
        assert r["released_holds"] == [h["hold"]]
        rest = [(await asyncio.wait_for(qmp.events.get(), 5))["data"]["actual"] for _ in want[6:]]
        assert rest == [a for _, a in want[6:]]
        await qmp.disconnect()

    asyncio.run(main())


def test_hold_before_a_reply_then_release(serve, qemu_qmp_available, tmp_path):
    from qemu.qmp import QMPClient

    srv = serve("lifecycle-qemu.qmprec", "--control", str(tmp_path / "ctl.sock"))
    ctl = None

    async def main():
        nonlocal ctl
        qmp = QMPClient("control-test")
        await qmp.connect(srv.path)
        ctl = Control(str(tmp_path / "ctl.sock"))
        h = ctl("hold", before_reply="stop")["hold"]
        task = asyncio.ensure_future(qmp.execute("stop"))
        # The wait is answered when the command has reached the server and is held; the
        # client's reader runs meanwhile (the request goes out on another thread).
        st = await asyncio.get_running_loop().run_in_executor(None, lambda: ctl("wait", until="held", timeout=5))
        assert st["ok"], st
        assert not task.done() and qmp.events.empty()
        assert ctl("status")["clients"][0]["held_by"] == h
        ctl("release")
        assert await asyncio.wait_for(task, 5) == {}
        assert (await asyncio.wait_for(qmp.events.get(), 5))["event"] == "STOP"
        await qmp.disconnect()

    asyncio.run(main())
    bad = ctl("hold", before_event=1)
    assert not bad["ok"] and bad["error"] == "not-found" and "not an event" in bad["message"]
    assert ctl("fly") == {"ok": False, "error": "unknown-command",
                          "message": ctl("fly")["message"]}
    # Nothing holds now: a wait times out, and the requests after it are answered in order.
    ctl.sock.sendall(b'{"cmd":"wait","until":"held","timeout":0.2,"id":1}\n{"cmd":"status","id":2}\n')
    first, second = ctl.read(), ctl.read()
    assert first["id"] == 1 and first["error"] == "timeout" and second["id"] == 2 and second["ok"]


def test_control_on_stdin_and_stop(tmp_path):
    sock = str(tmp_path / "q.sock")
    p = subprocess.Popen([qmpreplay_binary(), "serve", str(REC / "lifecycle-qemu.qmprec"), "--listen", sock,
                          "--control", "-", "--quiet"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def ask(line: str) -> dict:
            p.stdin.write(line.encode() + b"\n")
            p.stdin.flush()
            return json.loads(p.stdout.readline())

        st = ask('{"cmd": "status", "id": "s"}')
        assert st["ok"] and st["id"] == "s" and st["clients"] == [] and not st["paused"]
        assert ask("not json")["error"] == "bad-request"
        assert ask('{"cmd": "pause"}')["paused"]
        assert ask('{"cmd": "stop"}')["ok"]
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
