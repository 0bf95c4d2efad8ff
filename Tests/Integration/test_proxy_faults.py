"""Faults in proxy mode (`record --listen ... --upstream ...`) against a real QEMU: the
upstream QEMU killed in the middle of a burst, the client killed in the middle of a
command, and the recorder killed with SIGKILL while traffic flows (a filesystem that fills up:
test_recorder_guarantees.py). In every case forwarding continues or stops cleanly, and the recording holds every
byte that was forwarded up to the failure: the recorded QEMU-to-client stream is exactly
what the client received (or, when the recorder itself died, a prefix of it ending at a
record boundary)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from guestlab.monitorpool import MonitorPool
from guestlab.rawclient import RawClient, burst, negotiated
from guestlab.recorder import qmpreplay, read_qmprec


def only_conn(r):
    conns = r.message_connections()
    assert len(conns) == 1, conns
    return conns[0]


def test_upstream_killed_mid_burst(plab, recorders):
    rec, path = recorders.start_proxy(plab)
    c = negotiated(path)
    c.send(burst(400))
    c.wait_reply(5)                     # the burst is under way
    plab.kill(signal.SIGKILL)
    while not c.eof:                    # the proxy closes the client's side when QEMU goes
        c._recv_once(5)
    c.close()
    time.sleep(0.3)
    assert rec.running, "the proxy must keep listening when one upstream dies"
    assert rec.stop(signal.SIGINT) == 3, rec.describe()     # complete, but QEMU was lost (no SHUTDOWN)
    r = rec.read()
    assert r.bad_lines == []
    conn = only_conn(r)
    # Everything the client received came through the recorder, byte for byte.
    assert r.stream("qemu", conn) == c.received
    # What was forwarded upstream is what the client sent, up to where QEMU stopped reading.
    assert c.sent.startswith(r.stream("client", conn))
    assert len(r.commands(conn=conn)) >= 6
    closes = [x for x in r.records if x.kind == "close" and x.get("c") == conn]
    assert closes, "the lost upstream is recorded as a close"
    assert qmpreplay("info", str(r.path)).returncode == 0


def test_client_killed_mid_command(plab, recorders, tmp_path):
    rec, path = recorders.start_proxy(plab)
    # A separate process, killed with SIGKILL while its command is outstanding.
    script = tmp_path / "client.py"
    script.write_text(
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile('rb')\n"
        "f.readline(); s.sendall(b'{\"execute\": \"qmp_capabilities\"}\\r\\n'); f.readline()\n"
        "s.sendall(b'{\"execute\": \"query-status\", \"id\": \"before\"}\\r\\n'); f.readline()\n"
        "print('ready', flush=True)\n"
        "s.sendall(b'{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"info qtree\"}, \"id\": \"cut\"}\\r\\n')\n"
        "time.sleep(60)\n")
    p = subprocess.Popen([os.environ.get("PYTHON", "python3"), str(script), path], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.05)
        p.kill()
        p.wait(5)
    finally:
        if p.poll() is None:
            p.kill()
    time.sleep(0.5)
    assert rec.running, "the proxy must survive a client that vanishes mid-command"
    # The proxy still serves the next client, with a fresh upstream session.
    c = negotiated(path)
    c.send(b'{"execute": "query-status", "id": "after"}\r\n')
    assert c.wait_reply("after")["return"]["status"] == "running"
    c.close()
    time.sleep(0.3)
    assert rec.stop(signal.SIGINT) == 0, rec.describe()
    r = rec.read()
    assert r.bad_lines == []
    conns = r.message_connections()
    assert len(conns) == 2, conns
    first, second = conns
    ids = [x.msg.get("id") for x in r.commands(conn=first)]
    assert ids[-2:] == ["before", "cut"], ids       # the command in flight was forwarded and recorded
    assert r.stream("qemu", second) == c.received
    assert qmpreplay("validate", str(r.path)).returncode in (0, 1)


def test_recorder_sigkilled_during_traffic(plab, recorders):
    rec, path = recorders.start_proxy(plab)
    c = negotiated(path)
    for i in range(20):
        c.send(burst(10, start=i * 10))
        c.wait_reply(i * 10 + 9)
    time.sleep(0.02)        # far less than the flush interval (100 ms); records reach the file within ~1 ms
    rec.signal(signal.SIGKILL)
    assert rec.wait(10) == -signal.SIGKILL
    c.drain(0.3)
    c.close()
    r = read_qmprec(rec.out)
    assert r.trailer is None
    assert len(r.bad_lines) <= 1                     # at most a torn last line
    conn = only_conn(r)
    recorded = r.stream("qemu", conn)
    # The recorder forwards first and its writer thread hands records to the kernel within
    # about a millisecond, so a SIGKILL after 20 ms of quiet loses nothing.
    assert recorded == c.received
    assert len(r.replies(conn=conn)) == 201
    assert qmpreplay("info", str(rec.out)).returncode == 0


def test_stalled_client_delays_no_other_client(labs, recorders):
    """Two sessions through one proxy (--max-clients 2, each with its own QEMU monitor): one
    client stops reading while QEMU answers it with ~6 MB of schema; the other keeps getting
    every reply meanwhile (the proxy reads on and holds QEMU's output for the stalled client
    in that client's own buffer). No timing is asserted: a proxy that waited for the stalled
    client would leave a reply unanswered and the reader's wait would fail."""
    lab = labs(monitors=("up1", "up2", "ctl"))
    pool = MonitorPool(str(lab.dir / "pool.sock"), [lab.qmp_path("up1"), lab.qmp_path("up2")])
    try:
        path = str(lab.dir / "proxy.sock")
        rec = recorders.proxy(f"unix:{path}", str(lab.dir / "pool.sock"), None, "--max-clients", "2")
        rec.start()
        rec.wait_listening()
        stalled = socket.socket(socket.AF_UNIX)
        stalled.connect(path)
        asked = 40
        stalled.sendall(b'{"execute": "qmp_capabilities"}\r\n'
                        + b"".join(b'{"execute": "query-qmp-schema", "id": %d}\r\n' % i for i in range(asked)))
        reader = negotiated(path)
        n = 0
        while True:
            reader.send(b'{"execute": "query-status", "id": "r%d"}\r\n' % n)
            assert reader.wait_reply(f"r{n}", timeout=10)["return"]["status"] == "running"
            n += 1
            if n % 20 == 0:
                schemas = [x for x in read_qmprec(rec.out).replies() if isinstance(x.msg.get("return"), list)]
                if len(schemas) >= asked:
                    break                   # QEMU answered the stalled client in full meanwhile
            assert n < 100_000, rec.describe()
        reader.drain(0.2)
        assert rec.stop(signal.SIGTERM) == 0, rec.describe()
        r = rec.read()
        assert r.bad_lines == [] and r.trailer["reason"] == "signal"
        stalled_conn, reader_conn = r.message_connections()
        assert r.stream("qemu", reader_conn) == reader.received
        assert len(r.replies(conn=reader_conn)) == n + 1          # every round trip and the negotiation
        closes = {x.get("c"): x for x in r.records if x.kind == "close"}
        assert closes[stalled_conn]["reason"] == "stopped by SIGTERM", "the stalled client was still connected"
        stalled.close()
        reader.close()
    finally:
        pool.close()


# A filesystem that fills up while proxying: test_recorder_guarantees.py (the client keeps
# talking to QEMU, the loss is counted exactly, the file ends at its last complete record).
