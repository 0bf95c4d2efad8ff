"""`qmpreplay diff-qemu` against the installed QEMU, and `serve --record-missing`.

The guest lab's captures (Recordings/README.md, "Real captures") are replayed, command by
command, to a fresh qemu-system-x86_64 started with the lab's own machine for that capture
(same devices, disks and, in the recorded lab directory, the same paths), and diff-qemu must
explain every difference it finds (docs/DIFF-QEMU.md). A few fast captures run by default;
QMPREPLAY_DIFF_ALL=1 runs all of them and prints a table (the figures in the report).
"""
from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from guestlab import Lab, qemu_img
from guestlab.__main__ import CAPTURES, capture_options
from guestlab.recorder import qmpreplay_binary
from guestlab.serve import REC, Server

FAST = ["lifecycle-qemu", "quirky-ids", "unplug-stuck", "job-error-cancelled", "migration"]

# Images the scenarios made with qemu-img during the capture, outside QMP (their blockdev-add
# names them): name, format, size.
SCENARIO_FILES = {
    "block-jobs": [("tgt0.qcow2", "qcow2", "32M"), ("tgt1.qcow2", "qcow2", "32M")],
    "block-jobs-reuse": [("tgt0.qcow2", "qcow2", "16M"), ("tgt1.qcow2", "qcow2", "16M")],
    "job-error-cancelled": [("tgt.raw", "raw", "32M")],
}


@contextmanager
def lab_machine(name: str):
    """The QEMU command line (without monitors) the capture's lab used, its disks and the
    scenario's own images made, in the recorded lab directory (so that the recorded paths
    exist); for `migration`, a destination QEMU waits on the recorded migration socket."""
    header = json.loads((REC / f"{name}.qmprec").open().readline())
    workdir = Path(header["source"].removeprefix("unix:")).parent
    fresh = not workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    opts = capture_options(name)
    lab = Lab(name=name, monitors=(), workdir=workdir, **opts)
    dst = None
    try:
        for d in lab.disks:
            if d.path is None:
                if d.backing is not None and d.backing.path is None:
                    d.backing.create(lab.dir)
                d.create(lab.dir)
        for f, fmt, size in SCENARIO_FILES.get(name, []):
            subprocess.run([qemu_img(), "create", "-q", "-f", fmt, str(workdir / f), size], check=True)
        if name == "migration":
            dst = Lab(name=f"{name}-dst", monitors=("ctl",), workdir=workdir, incoming=f"unix:{workdir}/mig1.sock", **opts)
            dst.start()
        yield lab.command_line()
    finally:
        if dst is not None:
            dst.stop()
        if fresh:
            shutil.rmtree(workdir, ignore_errors=True)


def diff(name: str, *extra: str) -> tuple[int, dict]:
    with lab_machine(name) as argv:
        p = subprocess.run([qmpreplay_binary(), "diff-qemu", str(REC / f"{name}.qmprec"), "--qemu", shlex.join(argv),
                            "--json", *extra], capture_output=True, timeout=300)
    assert p.returncode in (0, 1), p.stderr.decode()
    return p.returncode, json.loads(p.stdout)


def unexplained(rep: dict) -> list[str]:
    return [f"{it['name']} line {it['line']}: {d['path']} recorded {d.get('recorded')} live {d.get('live')}"
            for it in rep["items"] for d in it["differences"] if d["kind"] == "unexplained"]


@pytest.mark.parametrize("name", FAST)
def test_lab_captures_differ_only_in_explained_ways(name, qemu_available):
    rc, rep = diff(name)
    assert rep["live_version"] == rep["recorded_version"] == "7.2.22"
    assert rep["commands_sent"] > 0 and rep["replies_compared"] > 0
    assert unexplained(rep) == [] and rc == 0
    assert "stopped_early" not in rep
    kinds = {d["kind"] for it in rep["items"] for d in it["differences"]}
    if name in ("lifecycle-qemu", "unplug-stuck"):
        # Every recorded event came again, from the same commands: only their times differ.
        assert kinds <= {"timestamp"} and rep["events_live"] == rep["events_recorded"]


def test_an_unexplained_difference_fails(tmp_path, qemu_available):
    """A recording edited to claim QEMU answered `stop` with an error: diff-qemu exits 1
    and names the reply, the path and both values."""
    src = (REC / "lifecycle-qemu.qmprec").read_text().splitlines()
    edited = []
    for line in src:
        r = json.loads(line)
        if r.get("k") == "return" and r.get("msg", {}).get("id") == "__qmp#00001":
            line = line.replace('"msg":{"return": {}, "id": "__qmp#00001"}',
                                '"msg":{"id": "__qmp#00001", "error": {"class": "GenericError", "desc": "made up"}}')
            line = line.replace('"k":"return"', '"k":"error"')
        edited.append(line)
    f = tmp_path / "edited.qmprec"
    f.write_text("\n".join(edited) + "\n")
    p = subprocess.run([qmpreplay_binary(), "diff-qemu", str(f)], capture_output=True, timeout=60)
    out = p.stdout.decode()
    assert p.returncode == 1, out + p.stderr.decode()
    assert "reply stop: error recorded" in out and "[unexplained]" in out
    assert "1 unexplained difference" in out or "2 unexplained differences" in out


def test_print_command_suggests_the_recorded_machine():
    p = subprocess.run([qmpreplay_binary(), "diff-qemu", str(REC / "guest-rx-filter.qmprec"), "--print-command"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0
    cmd = p.stdout.decode().splitlines()[0]
    assert cmd.startswith("qemu-system-x86_64 ") and "-machine q35" in cmd
    assert "virtio-net-pci,netdev=host-net0,id=net0,mac=52:54:00:12:34:01" in cmd


@pytest.mark.skipif(not os.environ.get("QMPREPLAY_DIFF_ALL"), reason="set QMPREPLAY_DIFF_ALL=1 to diff every lab capture")
def test_every_lab_capture(qemu_available, capsys):
    rows = []
    for name in CAPTURES:
        rc, rep = diff(name)
        counts = ", ".join(f"{n} {k}" for k, n in rep["explained"].items())
        rows.append((name, rep["commands_sent"], rep["unexplained"], counts, rep.get("stopped_early", "")))
        for u in unexplained(rep):
            rows.append(("", "", "", "  " + u[:200], ""))
    with capsys.disabled():
        print()
        for r in rows:
            print(" | ".join(str(c) for c in r))


def test_record_missing_adds_what_the_recording_lacks(tmp_path, qemu_available, qemu_qmp_available):
    """A qemu.qmp client sends `query-uuid` and `query-kvm`, which lifecycle-qemu.qmprec never
    shows: a real QEMU answers them, and the new recording serves them by itself."""
    from qemu.qmp import QMPClient

    out = tmp_path / "more.qmprec"
    srv = Server("lifecycle-qemu.qmprec", "--record-missing", str(out))

    async def talk(path: str) -> tuple:
        qmp = QMPClient("record-missing-test")
        await qmp.connect(path)
        st = await qmp.execute("query-status")
        uuid = await qmp.execute("query-uuid")
        kvm = await qmp.execute("query-kvm")
        await qmp.disconnect()
        return st, uuid, kvm

    try:
        st, uuid, kvm = asyncio.run(talk(srv.path))
        assert st["status"] == "running"           # from the recording
        assert uuid == {"UUID": "00000000-0000-0000-0000-000000000000"}
        assert kvm == {"enabled": False, "present": kvm["present"]}
    finally:
        assert srv.stop() == 0
        err = srv.stderr()
        shutil.rmtree(srv.dir, ignore_errors=True)
    assert "record-missing: 2 command(s) answered by QEMU 7.2.22" in err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["n"] for r in records if r.get("k") == "command"][-3:] == ["query-uuid", "query-kvm", "quit"]
    v = subprocess.run([qmpreplay_binary(), "validate", str(out)], capture_output=True)
    assert v.returncode == 0, v.stdout.decode()
    # The new recording answers them without QEMU (no --record-missing).
    again = Server(str(out))
    try:
        st2, uuid2, kvm2 = asyncio.run(talk(again.path))
        assert (st2, uuid2, kvm2) == (st, uuid, kvm)
    finally:
        again.stop()
        shutil.rmtree(again.dir, ignore_errors=True)
    # An existing file is not replaced without --force.
    p = subprocess.run([qmpreplay_binary(), "serve", str(REC / "lifecycle-qemu.qmprec"), "--listen", str(tmp_path / "x.sock"),
                        "--record-missing", str(out)], capture_output=True, timeout=30)
    assert p.returncode == 64 and b"--force" in p.stderr


def test_record_missing_keeps_the_events_a_command_raised(tmp_path, qemu_available, qemu_qmp_available):
    """`stop`, which quirky-ids.qmprec never shows: the real QEMU's STOP reaches the client
    before the reply, and the new recording has command, STOP and reply in that order, so
    serving it sends the STOP with the reply, as QEMU does."""
    from qemu.qmp import QMPClient

    out = tmp_path / "stop.qmprec"

    async def stop(path: str) -> str:
        qmp = QMPClient("record-missing-events")
        await qmp.connect(path)
        assert await qmp.execute("stop") == {}
        ev = await asyncio.wait_for(qmp.events.get(), 5)
        await qmp.disconnect()
        return ev["event"]

    for args in (("quirky-ids.qmprec", "--record-missing", str(out)), (str(out),)):
        srv = Server(*args)
        try:
            assert asyncio.run(stop(srv.path)) == "STOP"
        finally:
            assert srv.stop() == 0
            shutil.rmtree(srv.dir, ignore_errors=True)
    added = [json.loads(line) for line in out.read_text().splitlines()][-5:]
    assert [(r.get("k"), r.get("n")) for r in added[:3]] == [("command", "stop"), ("event", "STOP"), ("return", None)]
