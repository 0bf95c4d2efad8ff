"""Load and hostile clients against `qmpreplay serve`.

100 well-behaved clients replay one recording at once, each on its own timeline, while five
hostile clients attack the same server: binary garbage, a line that never ends, a flood of
commands, connect-and-vanish (hundreds of times, some with a TCP-style reset), and one that
negotiates, floods and never reads. Every well-behaved client must receive every recorded
event, byte for byte and in order; the hostile reader must be dropped; the server must stay
up and its memory bounded. Lateness is printed from the server's own report (timing targets
live in `qmpreplay bench replay`, not in assertions).
"""
from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import threading
import time

from guestlab.lab import REPO

RECORDING = REPO / "Recordings" / "synthetic-mixed.qmprec"
GOOD = 100
SPEED = "100"          # synthetic-mixed lasts 5m44s: about 3.4 s per client at 100x


def expected_events() -> list[bytes]:
    """The QEMU-side event lines of the replayed connection (the first with a greeting),
    after its negotiation, as exact bytes without the CRLF."""
    records = [json.loads(line) for line in RECORDING.read_text().splitlines()[1:]]
    conn = next(r["c"] for r in records if r.get("k") == "greeting")
    negotiated = next(i for i, r in enumerate(records)
                      if r.get("c") == conn and r.get("k") == "return" and r.get("from") == "qemu")
    out = []
    raw_lines = RECORDING.read_text().splitlines()[1:]
    for i, r in enumerate(records):
        if i > negotiated and r.get("c") == conn and r.get("k") == "event":
            # The recorded message text is the value of "msg" in the record line, verbatim.
            line = raw_lines[i]
            start = line.index('"msg":') + len('"msg":')
            out.append(line[start:-1].encode())
    return out


class GoodClients:
    """GOOD clients on one selector thread: each negotiates and collects every event line."""

    def __init__(self, path: str, count: int):
        self.sel = selectors.DefaultSelector()
        self.events: dict[int, list[bytes]] = {}
        self.bufs: dict[int, bytes] = {}
        self.errors: list[str] = []
        self.socks = []
        for i in range(count):
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.setblocking(False)
            self.socks.append(s)
            self.events[i] = []
            self.bufs[i] = b""
            self.sel.register(s, selectors.EVENT_READ, i)
        self.negotiated = set()

    def run(self, want: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        open_ = len(self.socks)
        while time.monotonic() < deadline and open_ and any(len(v) < want for v in self.events.values()):
            for key, _ in self.sel.select(0.5):
                i = key.data
                s = key.fileobj
                try:
                    chunk = s.recv(1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    self.errors.append(f"client {i}: server closed the connection")
                    self.sel.unregister(s)
                    open_ -= 1
                    continue
                self.bufs[i] += chunk
                *lines, self.bufs[i] = self.bufs[i].split(b"\r\n")
                for line in lines:
                    if line.startswith(b'{"QMP"'):
                        s.setblocking(True)
                        s.sendall(b'{"execute": "qmp_capabilities"}\r\n')
                        s.setblocking(False)
                    elif b'"event"' in line and line.startswith(b'{"timestamp"'):
                        self.events[i].append(line)
                    elif line.startswith(b'{"return"'):
                        self.negotiated.add(i)

    def close(self) -> None:
        for s in self.socks:
            s.close()


def hostile(path: str, kind: str, stop: threading.Event, notes: dict) -> None:
    def conn() -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.settimeout(2)
        return s

    def drain(s: socket.socket) -> int:
        n = 0
        s.setblocking(False)
        try:
            while True:
                c = s.recv(1 << 16)
                if not c:
                    break
                n += len(c)
        except (BlockingIOError, ConnectionResetError):
            pass
        s.setblocking(True)
        return n

    try:
        if kind == "garbage":
            s = conn()
            for _ in range(64):
                if stop.is_set():
                    break
                s.sendall(os.urandom(32 << 10))
                notes["garbage_answers"] = notes.get("garbage_answers", 0) + drain(s)
            s.close()
        elif kind == "endless-line":
            s = conn()
            s.sendall(b'{"execute": "')
            sent = 0
            block = b"x" * (1 << 20)
            while sent < (40 << 20) and not stop.is_set():      # 40 MiB without a newline
                s.sendall(block)
                sent += len(block)
                drain(s)
            notes["endless_sent"] = sent
            s.close()
        elif kind == "flood":
            s = conn()
            s.sendall(b'{"execute": "qmp_capabilities"}\r\n')
            cmd = b'{"execute": "query-status", "id": 1}\r\n' * 500
            for _ in range(100):                                 # 50,000 commands, read as they come
                if stop.is_set():
                    break
                s.sendall(cmd)
                notes["flood_answers"] = notes.get("flood_answers", 0) + drain(s)
            s.close()
        elif kind == "vanish":
            for k in range(300):
                if stop.is_set():
                    break
                s = conn()
                if k % 3 == 0:
                    s.sendall(b'{"execute": "qmp_capa')
                if k % 2 == 0:                                   # close with a reset
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            notes["vanished"] = 300
        elif kind == "never-reads":
            s = conn()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b'{"execute": "qmp_capabilities"}\r\n')
            cmd = b'{"execute": "query-status"}\r\n' * 1000
            # Not tied to `stop`: it goes on until the server drops it (or 60 s pass), so the
            # drop does not depend on how fast the well-behaved clients finish.
            deadline = time.monotonic() + 60
            try:
                while time.monotonic() < deadline:               # replies it will never read
                    s.sendall(cmd)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                notes["never_reads_dropped"] = True
            s.close()
    except (BrokenPipeError, ConnectionResetError) as e:
        notes.setdefault("resets", []).append(f"{kind}: {e}")


def peak_rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def test_100_clients_and_5_hostile_ones(serve):
    want = expected_events()
    assert len(want) > 50
    srv = serve(str(RECORDING), "--speed", SPEED, "--clock-only", "--quiet", "--max-clients", "200")
    stop = threading.Event()
    notes: dict = {}
    attackers = [threading.Thread(target=hostile, args=(srv.path, k, stop, notes), daemon=True)
                 for k in ("garbage", "endless-line", "flood", "vanish", "never-reads")]
    for t in attackers:
        t.start()
    good = GoodClients(srv.path, GOOD)
    try:
        good.run(len(want), timeout=120)
    finally:
        stop.set()
        good.close()
    for t in attackers:
        t.join(70)
    assert srv.proc.poll() is None, f"the server died:\n{srv.stderr()}"
    rss = peak_rss_kib(srv.proc.pid)
    assert srv.stop() == 0, srv.stderr()

    assert good.errors == []
    assert len(good.negotiated) == GOOD
    short = {i: len(v) for i, v in good.events.items() if v != want}
    assert not short, f"clients that did not get every event in order (got/want {len(want)}): {short}"

    sessions = srv.sessions()
    dropped = [s for s in sessions if s.get("dropped")]
    assert any("not reading" in s["dropped"] and s["commands"]["received"] > 10_000 for s in dropped), \
        f"the client that floods and never reads was not dropped: {dropped}"
    assert rss < 400 * 1024, f"server peak RSS {rss} KiB"
    good_reports = [s for s in sessions if s.get("events_sent") == len(want)]
    late = sorted(s["lateness"]["p99_us"] for s in good_reports if s.get("lateness"))
    print(f"\n{len(good_reports)} full sessions; per-session p99 lateness (µs): median {late[len(late) // 2] if late else '-'}, "
          f"worst {late[-1] if late else '-'}; server peak RSS {rss // 1024} MiB; hostile: {notes}")
