"""`qmpreplay serve` and `qmpreplay replay`: the fake QEMU, driven by real clients.

qemu.qmp (QEMU's own Python library) must not notice it is not talking to QEMU; raw socket
clients check QEMU's exact answers to bad input, several clients at once, and that a client
that never reads is dropped without holding up the others. No QEMU process is needed: the
recordings in Recordings/ are real QEMU 7.2 sessions.
"""
from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from guestlab.recorder import qmpreplay, qmpreplay_binary
from guestlab.serve import Raw

REPO = Path(__file__).resolve().parents[2]
REC = REPO / "Recordings"


# --------------------------------------------------------------------------- qemu.qmp end to end
def test_qemu_qmp_client_sees_a_qemu(serve, qemu_qmp_available):
    from qemu.qmp import QMPClient

    srv = serve("lifecycle-qemu.qmprec")

    async def main():
        qmp = QMPClient("replay-test")
        await qmp.connect(srv.path)
        assert qmp.greeting is not None
        st = await qmp.execute("query-status")
        assert st == {"status": "running", "singlestep": False, "running": True}
        # STOP was recorded while `stop` ran: it arrives with the reply.
        assert await qmp.execute("stop") == {}
        ev = await asyncio.wait_for(qmp.events.get(), 5)
        assert ev["event"] == "STOP" and ev["timestamp"] == {"seconds": 1795320060, "microseconds": 928519}
        assert (await qmp.execute("query-status"))["status"] == "paused"
        assert await qmp.execute("cont") == {}
        assert (await asyncio.wait_for(qmp.events.get(), 5))["event"] == "RESUME"
        assert await qmp.execute("system_reset") == {}
        ev = await asyncio.wait_for(qmp.events.get(), 5)
        assert ev["event"] == "RESET" and ev["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
        # Never seen in the recording, but QEMU 7.2 has it (its shipped schema applies, the
        # recording has none of its own): not "not found", but no recorded answer.
        from qemu.qmp import ExecuteError
        with pytest.raises(ExecuteError) as e:
            await qmp.execute("query-balloon")
        assert e.value.error_class == "GenericError" and "no recorded reply matched" in str(e.value)
        with pytest.raises(ExecuteError) as e:
            await qmp.execute("no-such-command")
        assert e.value.error_class == "CommandNotFound"
        assert e.value.error.error.desc == "The command no-such-command has not been found"
        await qmp.disconnect()

    asyncio.run(main())
    time.sleep(0.3)
    s = srv.sessions()[0]
    assert s["negotiated"] and s["events_sent"] == 3 and s["events_with_replies"] == 3
    assert s["commands"] == {"received": 8, "matched": 5, "repeated": 0, "unmatched": 2}


def test_qemu_qmp_balloon_events_on_the_clock(serve, qemu_qmp_available):
    from qemu.qmp import QMPClient

    srv = serve("guest-balloon.qmprec", "--speed", "20", "--max-gap", "0.5s")
    want = []
    with open(REC / "guest-balloon.qmprec") as f:
        for line in f:
            r = json.loads(line)
            if r.get("k") == "event":
                want.append(r["msg"]["data"]["actual"])

    async def main():
        qmp = QMPClient("balloon-test")
        await qmp.connect(srv.path)
        assert await qmp.execute("query-balloon") == {"actual": 268435456}
        assert await qmp.execute("balloon", {"value": 201326592}) == {}
        got = []
        t0 = time.monotonic()
        # The events after balloon's reply are on the clock; the later ones wait for their
        # own commands' replies, which this client sends as the recording did.
        got.append((await asyncio.wait_for(qmp.events.get(), 5))["data"]["actual"])
        got.append((await asyncio.wait_for(qmp.events.get(), 5))["data"]["actual"])
        assert time.monotonic() - t0 < 3
        await qmp.disconnect()
        return got

    got = asyncio.run(main())
    assert got == want[:2]


def recorded_events(name: str) -> list[dict]:
    out = []
    with open(REC / name) as f:
        for line in f:
            r = json.loads(line)
            if r.get("k") == "event":
                out.append(r["msg"])
    return out


@pytest.mark.parametrize("first", [[], ["query-balloon"]], ids=["listens", "one-command-then-listens"])
def test_qemu_qmp_listener_receives_every_event_by_default(serve, qemu_qmp_available, first):
    """Default options: a client that does not send the recorded commands (qemu.qmp's
    QMPClient after qmp_capabilities, or after one command) still gets every event, in order;
    the session says once why it stopped holding events back."""
    from qemu.qmp import QMPClient

    srv = serve("guest-balloon.qmprec")
    want = recorded_events("guest-balloon.qmprec")
    assert len(want) == 8

    async def main():
        qmp = QMPClient("listener")
        await qmp.connect(srv.path)
        for c in first:
            await qmp.execute(c)
        got = []
        while len(got) < len(want):
            got.append(await asyncio.wait_for(qmp.events.get(), 15))
        await qmp.disconnect()
        return got

    got = asyncio.run(main())
    assert got == want
    time.sleep(0.3)
    s = srv.sessions()[0]
    assert s["events_sent"] == 8
    assert len(s["notes"]) == 1 and "events no longer wait for commands" in s["notes"][0]


def test_replay_connect_to_a_listening_consumer_ends(qemu_qmp_available, short_dir):
    """`replay --connect-to` with default options and a consumer that only listens
    (qemu.qmp accepting the connection): every event arrives and the replay exits."""
    from qemu.qmp import QMPClient

    path = str(short_dir / "consumer.sock")
    want = recorded_events("guest-balloon.qmprec")

    async def main():
        qmp = QMPClient("consumer")
        proc = None

        async def start_replay():
            nonlocal proc
            while not Path(path).exists():
                await asyncio.sleep(0.02)
            proc = subprocess.Popen([qmpreplay_binary(), "replay", str(REC / "guest-balloon.qmprec"), "--connect-to", path,
                                     "--speed", "4", "--linger", "0.2s", "--quiet"], stderr=subprocess.PIPE)

        starter = asyncio.create_task(start_replay())
        await qmp.start_server_and_accept(path)
        await starter
        got = []
        while len(got) < len(want):
            got.append(await asyncio.wait_for(qmp.events.get(), 15))
        rc = await asyncio.get_running_loop().run_in_executor(None, lambda: proc.wait(timeout=20))
        try:
            await qmp.disconnect()
        except EOFError:
            pass  # the replay ended the connection first: qemu.qmp reports that here
        return got, rc

    got, rc = asyncio.run(main())
    assert got == want and rc == 0


# --------------------------------------------------------------------------- raw sockets
def test_negotiation_errors_and_bad_input_as_qemu_answers(serve):
    srv = serve("lifecycle-qemu.qmprec")
    c = Raw(srv.path)
    greeting = c.line()
    assert greeting == (REC / "lifecycle-qemu.qmprec").read_text().splitlines()[2].split(',"msg":', 1)[1][:-1].encode()
    assert c.call(b'{"execute":"query-status","id":"early"}\n') == \
        b'{"id": "early", "error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with \'qmp_capabilities\'"}}'
    assert c.quiet(0.3)  # no events before negotiation
    assert c.call(b'{"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":{"n":[1,2.5,null,true]}}\n') == \
        b'{"return": {}, "id": {"n": [1, 2.5, null, true]}}'
    assert c.call(b'{"execute":"qmp_capabilities"}\n') == \
        b'{"error": {"class": "CommandNotFound", "desc": "Capabilities negotiation is already complete, command ignored"}}'
    c.send(b"garbage here\n")
    assert json.loads(c.line())["error"]["desc"] == "JSON parse error, invalid keyword 'garbage'"
    assert json.loads(c.line())["error"]["desc"] == "JSON parse error, invalid keyword 'here'"
    assert c.call(b"[1, 2]\n") == b'{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}'
    # QEMU's lexer: one stray error per bad byte, then the rest of the line is skipped.
    c.send(b"\xff\xfe\x00 binary\n")
    assert [json.loads(c.line())["error"]["desc"] for _ in range(3)] == \
        ["JSON parse error, stray '\ufffd'", "JSON parse error, stray '\ufffd'", "JSON parse error, stray ''"]
    # In QEMU 7.2's schema (shipped; the recording has none) but never recorded: no recorded answer.
    r = json.loads(c.call(b'{"execute":"balloon","arguments":{"value":1},"id":42}\n'))
    assert r["id"] == 42 and r["error"]["class"] == "GenericError"
    r = json.loads(c.call(b'{"execute":"ballon","arguments":{"value":1},"id":43}\n'))
    assert r["id"] == 43 and r["error"] == {"class": "CommandNotFound", "desc": "The command ballon has not been found"}
    # After all that the connection still works.
    assert json.loads(c.call(b'{"execute":"query-status","id":7}\n')) == \
        {"return": {"status": "running", "singlestep": False, "running": True}, "id": 7}
    c.close()


def test_huge_line_is_answered_and_the_server_stays_up(serve):
    srv = serve("lifecycle-qemu.qmprec")
    c = Raw(srv.path)
    other = Raw(srv.path)
    c.line()
    other.line()
    c.call(b'{"execute":"qmp_capabilities"}\n')
    chunk = b"a" * (1 << 20)
    c.send(b'{"execute":"x","arguments":{"s":"')
    for _ in range(100):
        c.send(chunk)
    c.send(b'"}}\n')
    # As QEMU answers it: the string token is cut at 64 MiB, the rest of the a's are a
    # keyword (its error cut to QEMU's 1023-byte message), then '"}}' ends at the newline.
    # (This client sends none of the recorded commands, so the recorded events reach it on
    # the clock meanwhile: they are skipped here.)
    replies = (m for m in (json.loads(c.line(timeout=60)) for _ in range(20)) if "event" not in m)
    errors = [next(replies)["error"]["desc"] for _ in range(3)]
    assert errors[0] == "JSON token size limit exceeded"
    assert errors[1].startswith("JSON parse error, invalid keyword 'aaaa") and len(errors[1]) == 18 + 1023
    assert errors[2] == "JSON parse error, stray '\"}}\n'"
    c.send(b'{"execute":"query-status","id":1}\n')
    assert next(m for m in (json.loads(c.line()) for _ in range(20)) if "event" not in m)["id"] == 1
    # The other client was served all along.
    assert json.loads(other.call(b'{"execute":"qmp_capabilities"}\n')) == {"return": {}}
    c.close()
    other.close()


def test_clients_have_their_own_timelines(serve):
    srv = serve("lifecycle-qemu.qmprec", "--clock-only", "--speed", "100")
    clients = [Raw(srv.path) for _ in range(5)]
    for c in clients:
        c.line()
    for i, c in enumerate(clients):
        c.send(b'{"execute":"qmp_capabilities"}\n')
        assert c.msg() == {"return": {}}
        time.sleep(0.05)
    for c in clients:
        names = [c.msg()["event"] for _ in range(5)]
        assert names == ["STOP", "RESUME", "RESET", "POWERDOWN", "SHUTDOWN"]
        c.close()
    time.sleep(0.3)
    assert len(srv.sessions()) == 5


def test_shared_timeline_late_joiner_gets_events_from_now(serve):
    srv = serve("guest-balloon.qmprec", "--shared", "--speed", "20")
    a = Raw(srv.path)
    a.line()
    a.call(b'{"execute":"qmp_capabilities"}\n')
    first = a.msg()
    assert first["event"] == "BALLOON_CHANGE" and first["data"]["actual"] == 267386880
    b = Raw(srv.path)
    b.line()
    b.call(b'{"execute":"qmp_capabilities"}\n')
    nb = b.msg()
    na = a.msg()
    assert nb == na and nb["data"]["actual"] != 267386880
    a.close()
    b.close()


@pytest.mark.parametrize("mode", [
    # Own timelines at max speed follow each reader: a non-reader is dropped when stalled.
    ("--stall-timeout", "1s"),
    # A shared timeline runs for the readers: a non-reader's queue overflows.
    ("--shared", "--client-buffer", "64k"),
])
def test_client_that_never_reads_is_dropped_others_proceed(serve, mode):
    srv = serve("synthetic-mixed.qmprec", "--speed", "max", "--loop", "--clock-only", *mode)
    slow = Raw(srv.path)
    slow.line()
    slow.send(b'{"execute":"qmp_capabilities"}\n')
    # ... and never reads again.
    fast = Raw(srv.path)
    fast.line()
    assert fast.call(b'{"execute":"qmp_capabilities"}\n') == b'{"return": {}}'
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 1.5:
        fast.msg()
        n += 1
    assert n > 2000
    # Keep reading while waiting for the slow client to be dropped.
    deadline = time.time() + 10
    while "client 1 dropped: not reading" not in srv.stderr() and time.time() < deadline:
        for _ in range(500):
            fast.msg()
    assert "client 1 dropped: not reading" in srv.stderr()
    for _ in range(1000):
        fast.msg()
    assert "client 2 dropped" not in srv.stderr()
    fast.close()
    slow.close()


def test_strict_divergence_report_and_exit_status(serve):
    srv = serve("lifecycle-qemu.qmprec", "--strict", "--once")
    c = Raw(srv.path)
    c.line()
    c.call(b'{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}\n')
    c.call(b'{"execute":"query-status"}\n')
    c.call(b'{"execute":"balloon","arguments":{"value":5}}\n')
    c.close()
    assert srv.wait() == 1
    s = srv.sessions()[0]
    d = s["strict"]["divergences"]
    assert not s["strict"]["ok"]
    assert d[0]["kind"] == "unexpected" and d[0]["received"] == {"execute": "balloon", "arguments": {"value": 5}}
    assert d[0]["expected"] == {"execute": "stop"}
    assert {x["path"] for x in d[0]["diff"]} == {"execute", "arguments"}
    assert d[-1]["kind"] == "missing"
    assert "divergence:" in srv.stderr()


def test_replay_stdout_is_the_qemu_side_stream():
    p = qmpreplay("replay", str(REC / "lifecycle-qemu.qmprec"), "--stdout", "--speed", "max", "--quiet", check=True)
    raw = qmpreplay("cat", str(REC / "lifecycle-qemu.qmprec"), "--format", "raw", "--direction", "qemu", "--connection", "1", check=True)
    assert p.stdout == raw.stdout


def test_replay_to_a_listening_consumer():
    d = Path(tempfile.mkdtemp(prefix="qmpreplay-to-"))
    path = str(d / "consumer.sock")
    ls = socket.socket(socket.AF_UNIX)
    ls.bind(path)
    ls.listen(1)
    # A bare socket path, as qmp-shell takes it (unix:PATH works too).
    proc = subprocess.Popen([qmpreplay_binary(), "replay", str(REC / "lifecycle-qemu.qmprec"), "--connect-to", path,
                             "--linger", "0.2s", "--quiet"], stderr=subprocess.PIPE)
    ls.settimeout(10)
    conn, _ = ls.accept()
    c = Raw.__new__(Raw)
    c.sock, c.buf = conn, b""
    assert b'"QMP"' in c.line()
    assert c.call(b'{"execute":"qmp_capabilities"}\n') == b'{"return": {}}'
    assert c.call(b'{"execute":"stop","id":1}\n').startswith(b'{"timestamp"')
    assert c.line() == b'{"return": {}, "id": 1}'
    assert proc.wait(timeout=10) == 0
    conn.close()


def test_tcp_listen_and_clean_shutdown_on_sigint():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    d = Path(tempfile.mkdtemp(prefix="qmpreplay-tcp-"))
    report = d / "report.json"
    proc = subprocess.Popen([qmpreplay_binary(), "serve", str(REC / "lifecycle-qemu.qmprec"), "--listen", f"tcp::{port}",
                             "--report", str(report)], stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    c = Raw.__new__(Raw)
    c.sock, c.buf = s, b""
    assert b'"QMP"' in c.line()
    assert c.call(b'{"execute":"qmp_capabilities"}\n') == b'{"return": {}}'
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    # As QEMU does on SIGINT/SIGTERM: SHUTDOWN (host-signal) to a negotiated client, then EOF.
    assert b'"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-signal"}' in c.line()
    with pytest.raises((EOFError, ConnectionResetError)):
        c.line()
    sessions = json.loads(report.read_text())["sessions"]
    assert sessions[0]["close_reason"].startswith("server stopped") and sessions[0]["peer"].startswith("tcp:127.0.0.1:")
