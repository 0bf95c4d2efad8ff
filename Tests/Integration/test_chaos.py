"""Adversarial replay for clients under test (docs/TESTING-CLIENTS.md): chaos schedules and
fault rules against qemu.qmp's QMPClient and raw sockets, byte-identical schedules from one
seed, and `qmpreplay explore` finding (and shrinking) the ordering bug planted in
docs/examples/vmstatus_naive.py. No QEMU process: the recordings are small and shipped.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guestlab.recorder import qmpreplay_binary
from guestlab.serve import Raw

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = str(REPO / "docs/examples/status-events.qmprec")
NAIVE = str(REPO / "docs/examples/vmstatus_naive.py")
WITH_QEMU_QMP = str(REPO / "docs/examples/vmstatus_qemu_qmp.py")


def check(path: str) -> dict:
    """The example's check with qemu.qmp: status, the RTC_CHANGE, name, version."""
    from qemu.qmp import EventListener, QMPClient

    async def main():
        qmp = QMPClient("chaos-test")
        listener = EventListener()
        qmp.register_listener(listener)
        await qmp.connect(path)
        try:
            out = {"status": await asyncio.wait_for(qmp.execute("query-status"), 5)}
            out["name"] = await asyncio.wait_for(qmp.execute("query-name"), 5)
            out["version"] = await asyncio.wait_for(qmp.execute("query-version"), 5)
            events = []
            while len(events) < 3:
                events.append((await asyncio.wait_for(listener.get(), 5))["event"])
            out["events"] = events
            return out
        finally:
            await qmp.disconnect()

    return asyncio.run(main())


def expect_example(out: dict):
    assert out["status"]["status"] == "running"
    assert out["name"] == {"name": "vm1"}
    assert out["version"]["qemu"]["major"] == 7
    assert out["events"] == ["RTC_CHANGE", "BALLOON_CHANGE", "BALLOON_CHANGE"]


# --------------------------------------------------------------------------- each boundary
def test_events_between_each_command_and_its_reply(serve, qemu_qmp_available):
    srv = serve(EXAMPLE, "--chaos-schedule", "events=b1,b2,b3")
    expect_example(check(srv.path))
    raw = Raw(serve(EXAMPLE, "--chaos-schedule", "events=b1,b2,b3").path)
    raw.line()
    assert raw.call(b'{"execute":"qmp_capabilities"}') == b'{"return": {}}'
    raw.send(b'{"execute":"query-status","id":1}')
    assert raw.msg()["event"] == "RTC_CHANGE" and raw.msg()["id"] == 1


def test_a_burst_right_after_negotiation(serve, qemu_qmp_available):
    expect_example(check(serve(EXAMPLE, "--chaos-schedule", "events=a0,a0,a0").path))
    raw = Raw(serve(EXAMPLE, "--chaos-schedule", "events=a0,a0,a0").path)
    raw.line()
    raw.send(b'{"execute":"qmp_capabilities"}')
    msgs = [raw.msg() for _ in range(4)]
    assert msgs[0] == {"return": {}} and [m["event"] for m in msgs[1:]] == ["RTC_CHANGE", "BALLOON_CHANGE", "BALLOON_CHANGE"]


def test_messages_split_across_reads(serve, qemu_qmp_available):
    cuts = ",".join(f"{n}:1ms" for n in range(7, 900, 7))
    spec = f"events=b1,a1,b3;cuts={cuts}"
    expect_example(check(serve(EXAMPLE, "--chaos-schedule", spec).path))
    s = socket.socket(socket.AF_UNIX)
    s.connect(serve(EXAMPLE, "--chaos-schedule", spec).path)
    s.settimeout(5)
    chunks = []
    while sum(map(len, chunks)) < 100:
        chunks.append(s.recv(65536))
    # The greeting came in pieces cut inside the JSON text: every read ends at a cut (a
    # multiple of 7 bytes; a slow reader may get several pieces in one read, never less).
    ends = [sum(map(len, chunks[:i + 1])) for i in range(len(chunks))]
    assert all(e % 7 == 0 for e in ends[:-1]) and len(chunks) >= 3, [len(c) for c in chunks]
    assert b"".join(chunks).startswith(b'{"QMP": {"version"')


def test_a_stall_before_the_rest(serve, qemu_qmp_available):
    expect_example(check(serve(EXAMPLE, "--chaos-schedule", "events=a1,a2,a3;cuts=115:400ms").path))
    raw = Raw(serve(EXAMPLE, "--chaos-schedule", "events=a1,a2,a3;cuts=115:400ms").path)
    raw.line()  # the greeting: 110 bytes
    t0 = time.monotonic()
    assert raw.call(b'{"execute":"qmp_capabilities"}') == b'{"return": {}}'
    assert time.monotonic() - t0 >= 0.4, "the reply crosses byte 115, so it waits for the stall"


def test_event_between_negotiation_and_its_reply(serve, qemu_qmp_available):
    """QEMU may write an event there (docs/QEMU-FACTS.md, "Where events can fall"); qemu.qmp
    0.0.6 takes it for the reply and gives up (qmp_client.py, _negotiate). A later qemu.qmp
    that gets this right passes too."""
    from qemu.qmp import ConnectError, QMPClient
    from qemu.qmp.qmp_client import NegotiationError

    raw = Raw(serve(EXAMPLE, "--chaos-schedule", "events=b0,a2,a3").path)
    raw.line()
    raw.send(b'{"execute":"qmp_capabilities"}')
    assert raw.msg()["event"] == "RTC_CHANGE" and raw.msg() == {"return": {}}

    async def connect(path):
        qmp = QMPClient("chaos-test")
        try:
            await qmp.connect(path)
            return await asyncio.wait_for(qmp.events.get(), 5)
        finally:
            await qmp.disconnect()

    try:
        event = asyncio.run(connect(serve(EXAMPLE, "--chaos-schedule", "events=b0,a2,a3").path))
    except ConnectError as e:
        assert isinstance(e.exc, NegotiationError)  # qemu.qmp 0.0.6
    else:
        assert event["event"] == "RTC_CHANGE"  # a qemu.qmp that reads events while negotiating


def test_nothing_before_the_greeting_or_negotiation(serve):
    raw = Raw(serve(EXAMPLE, "--chaos", "3", "--chaos-idle", "50ms").path)
    assert json.loads(raw.line())["QMP"]["capabilities"] == ["oob"]
    assert raw.quiet(0.3), "no event before qmp_capabilities, however long the client waits"


# --------------------------------------------------------------------------- seeds
def session_bytes(serve, seed: str) -> tuple[bytes, dict, str]:
    srv = serve(EXAMPLE, "--chaos", seed, "--chaos-stall", "100ms", "--chaos-splits", "8", "--once")
    s = socket.socket(socket.AF_UNIX)
    s.connect(srv.path)
    s.settimeout(5)
    got = b""
    for cmd in [b'{"execute":"qmp_capabilities"}', b'{"execute":"query-status","id":1}',
                b'{"execute":"query-name","id":2}', b'{"execute":"query-version","id":3}']:
        s.sendall(cmd)
        want = got.count(b'"return"') + 1
        while got.count(b'"return"') < want:
            got += s.recv(65536)
    while got.count(b'"event"') < 3:  # the idle client gets the rest
        got += s.recv(65536)
    s.close()
    assert srv.wait() == 0
    return got, srv.sessions()[0]["chaos"], srv.stderr()


def test_a_seed_gives_the_same_bytes_twice(serve):
    a, ra, ea = session_bytes(serve, "11")
    b, rb, eb = session_bytes(serve, "11")
    assert a == b
    assert ra == rb and ra["seed"] == 11
    printed = [l for l in ea.splitlines() if "--chaos-schedule" in l]
    assert printed == [l for l in eb.splitlines() if "--chaos-schedule" in l]
    assert f"--chaos-schedule '{ra['schedule']}'" in printed[0]
    c, rc, _ = session_bytes(serve, "12")
    assert rc["schedule"] != ra["schedule"]


# --------------------------------------------------------------------------- faults
def test_each_fault_kind_against_qemu_qmp(serve, qemu_qmp_available):
    from qemu.qmp import EventListener, ExecuteError, QMPClient

    srv = serve(EXAMPLE, "--fault", 'query-name error DeviceNotFound "Device \'vm1\' not found"',
                "--fault", "query-status#2 delay 400ms",
                "--fault", 'query-version event DEVICE_DELETED {"path": "/machine/peripheral/net0"}',
                "--fault", 'after query-name: query-status return {"status": "paused", "singlestep": false, "running": false}')

    async def main():
        qmp = QMPClient("faults")
        listener = EventListener("DEVICE_DELETED")
        qmp.register_listener(listener)
        await qmp.connect(srv.path)
        assert (await qmp.execute("query-status"))["status"] == "running"
        with pytest.raises(ExecuteError) as e:
            await qmp.execute("query-name")
        assert e.value.error_class == "DeviceNotFound" and e.value.error.error.desc == "Device 'vm1' not found"
        t0 = time.monotonic()
        assert (await qmp.execute("query-status"))["status"] == "paused"  # the state changed, and late
        assert time.monotonic() - t0 >= 0.4
        assert (await qmp.execute("query-version"))["qemu"]["minor"] == 2
        ev = await asyncio.wait_for(listener.get(), 5)
        assert ev["data"] == {"path": "/machine/peripheral/net0"} and "seconds" in ev["timestamp"]
        await qmp.disconnect()

    asyncio.run(main())
    srv.stop()
    assert [f["fired"] for f in srv.sessions()[0]["faults"]] == [1, 1, 1, 1]


def test_close_fault_and_migration_failure(serve, qemu_qmp_available):
    from qemu.qmp import QMPClient

    srv = serve("migration.qmprec", "--match", "name", "--clock-only",
                "--fault", 'after migrate: query-migrate return {"status": "failed", "error-desc": "Unable to write to socket: Broken pipe"}',
                "--fault", 'migrate event MIGRATION {"status": "failed"}')

    async def migrate():
        qmp = QMPClient("migration")
        await qmp.connect(srv.path)
        await qmp.execute("migrate", {"uri": "unix:/tmp/elsewhere.sock"})
        st = await qmp.execute("query-migrate")
        await qmp.disconnect()
        return st

    assert asyncio.run(migrate())["status"] == "failed"

    closing = serve(EXAMPLE, "--fault", "query-name close", "--once")

    async def crash():
        qmp = QMPClient("crash")
        await qmp.connect(closing.path)
        await qmp.execute("query-status")
        try:
            await asyncio.wait_for(qmp.execute("query-name"), 5)
        finally:
            await qmp.disconnect()

    with pytest.raises(Exception) as e:
        asyncio.run(crash())
    assert not isinstance(e.value, asyncio.TimeoutError), "the close was noticed, not waited out"
    assert closing.wait() == 0
    assert closing.sessions()[0]["close_reason"] == "fault rule --fault 1 closed the connection"


def test_strict_reports_rules_that_never_fired(serve, tmp_path):
    rules = tmp_path / "faults.txt"
    rules.write_text("# what the test exercises\nquery-status error GenericError busy\n\nmigrate close\n")
    srv = serve(EXAMPLE, "--faults", str(rules), "--strict", "--once")
    raw = Raw(srv.path)
    raw.line()
    raw.call(b'{"execute":"qmp_capabilities"}')
    assert json.loads(raw.call(b'{"execute":"query-status"}'))["error"] == {"class": "GenericError", "desc": "busy"}
    raw.sock.close()
    assert srv.wait() == 1
    s = srv.sessions()[0]
    assert [(f["source"], f["fired"]) for f in s["faults"]] == [(f"{rules}:2", 1), (f"{rules}:4", 0)]
    assert any(d["kind"] == "rule-never-fired" for d in s["strict"]["divergences"])
    assert f"{rules}:4 never" in srv.stderr()


def test_bad_rule_is_a_usage_error():
    r = subprocess.run([qmpreplay_binary(), "serve", EXAMPLE, "--listen", "/tmp/never.sock", "--fault", "stop error Oops"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 64
    assert "--fault 1: unknown error class 'Oops'" in r.stderr


# --------------------------------------------------------------------------- explore
def explore(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([qmpreplay_binary(), "explore", EXAMPLE, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "VMSTATUS_TIMEOUT": "0.5", **(env or {})})


def test_explore_finds_the_planted_bug_and_shrinks_it():
    r = explore("--json", "--", sys.executable, NAIVE, "{socket}")
    assert r.returncode == 1, r.stderr
    f = json.loads(r.stdout)["failing"]
    assert len(f) == 1 and f[0]["found_by"] == "systematic walk"
    assert f[0]["schedule"] == "events=a0,a2,a3"
    assert f[0]["changes"] == ["RTC_CHANGE (line 8) after the reply to request 0 (qmp_capabilities), "
                               "recorded after the reply to request 1 (query-status)"]
    # From a seed's schedule (events moved, output split and stalled), shrinking keeps only
    # the one placement that breaks the client.
    r = explore("--no-walk", "--seeds", "20", "--chaos-stall", "50ms", "--json", "--", sys.executable, NAIVE, "{socket}")
    assert r.returncode == 1, r.stderr
    f = json.loads(r.stdout)["failing"][0]
    assert f["found_by"].startswith("seed ") and f["first_failing"] != f["schedule"]
    assert f["schedule"] == "events=a0,a2,a3", f


def test_qemu_qmp_passes_the_same_schedules():
    r = explore("--spare-negotiation", "--seeds", "10", "--chaos-stall", "50ms", "--", sys.executable, WITH_QEMU_QMP, "{socket}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the client passed every one" in r.stdout
    # Without sparing negotiation, its one weak point is found: an event before the
    # qmp_capabilities reply.
    r = explore("--json", "--", sys.executable, WITH_QEMU_QMP, "{socket}")
    f = json.loads(r.stdout)["failing"]
    assert [x["schedule"] for x in f] in (["events=b0,a2,a3"], [])  # [] once qemu.qmp reads events while negotiating
