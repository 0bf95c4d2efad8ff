"""`qmpreplay merge` on live sources.

1. Both QEMUs of a real migration, each recorded in client mode (about 1 s; the lab, no guest).
2. One session seen by two sources: libvirt's monitor (its debug log, imported) and a second
QMP monitor recorded by `qmpreplay record` in proxy mode (guestlab/libvirtsession.py). Runs only with QMPREPLAY_LIBVIRT=1 (libvirt is optional:
QMPREPLAY_LIBVIRT=1 Scripts/install-deps installs it) as root; skipped otherwise, CI included.
About 60 s, most of it libvirt probing QEMU's capabilities again when the domain starts
(`virsh create` takes 35 s on a 2-core TCG host); the shipped pair
Recordings/libvirt-merge-*.qmprec is checked in every run by Tests/CLITests/RepairCLITests.
"""
from __future__ import annotations

import json
import os

import pytest

from guestlab.libvirtsession import LibvirtUnavailable, libvirt_available, run_session
from guestlab.recorder import qmpreplay, qmpreplay_binary, read_qmprec


def _messages(path, conn):
    """(direction, kind, message text) of connection ``conn``, in file order."""
    out = []
    for line in open(path):
        r = json.loads(line)
        if r.get("c") == conn and "from" in r:
            out.append((r["from"], r["k"], json.dumps(r.get("msg"), sort_keys=True)))
    return out


def test_merge_libvirt_log_and_proxy_capture(tmp_path):
    if not os.environ.get("QMPREPLAY_LIBVIRT"):
        pytest.skip("libvirt session: set QMPREPLAY_LIBVIRT=1 (needs root and libvirt-daemon-system)")
    ok, why = libvirt_available()
    if not ok:
        pytest.skip(f"libvirt: {why}")
    try:
        paths = run_session(tmp_path, qmpreplay_binary())
    except LibvirtUnavailable as e:
        pytest.skip(f"libvirt: {e}")
    libvirt = tmp_path / "libvirt.qmprec"
    qmpreplay("import", str(paths["log"]), "--format", "libvirt-log", "-o", str(libvirt), check=True)
    merged = tmp_path / "merged.qmprec"
    p = qmpreplay("merge", str(paths["proxy"]), str(libvirt), "-o", str(merged), "--json", check=True)
    report = json.loads(p.stdout_text)
    second = report["sources"][1]
    # STOP, RESUME, STOP, RESUME, RESET and SHUTDOWN reach both monitors with one timestamp.
    assert second["method"] == "shared-events" and second["events"] >= 5, report
    assert second["residual_max_ns"] - second["residual_min_ns"] < 200_000_000, report

    # Per-source order: every message of each source, in its order, on its own connection.
    assert _messages(merged, 1) == _messages(paths["proxy"], 1)
    for old, new in second["connections"].items():
        assert _messages(merged, new) == _messages(libvirt, int(old))

    # The merged file is sound: doctor finds no damage (exit 3) and it reads back whole.
    doctor = qmpreplay("doctor", str(merged))
    assert doctor.returncode in (0, 1), doctor.stdout_text + doctor.stderr_text
    assert len(read_qmprec(merged).records) == report["records"]


def test_merge_both_qemus_of_a_migration(labs, recorders, tmp_path):
    """The source and the destination QEMU of a real migration, each recorded in client mode
    on its own monitor: no event is shared, so merge aligns them through each QEMU's event
    timestamps (one host clock here). About 1 s."""
    src = labs(memory="64M")
    uri = f"unix:{src.dir / 'mig.sock'}"
    dst = labs(memory="64M", incoming=uri, name=f"{src.name}-dst")
    rec_src = recorders.client(src.qmp_path("rec"), tmp_path / "src.qmprec", "--no-init")
    rec_dst = recorders.client(dst.qmp_path("rec"), tmp_path / "dst.qmprec", "--no-init")
    rec_src.start(); rec_dst.start()
    rec_src.wait_ready(); rec_dst.wait_ready()
    q, d = src.qmp("ctl"), dst.qmp("ctl")
    caps = [{"capability": "events", "state": True}]
    q.cmd("migrate-set-capabilities", capabilities=caps)
    d.cmd("migrate-set-capabilities", capabilities=caps)
    since_d = d.mark()
    q.cmd("migrate", uri=uri)
    q.wait_event("MIGRATION", timeout=30, where=lambda e: e["data"]["status"] == "completed")
    d.wait_event("RESUME", timeout=30, since=since_d)
    # Both recorders have seen the last event before they stop.
    rec_src.wait_until(lambda r: any(x.get("n") == "MIGRATION" and '"completed"' in x.line for x in r.records), what="completed")
    rec_dst.wait_until(lambda r: any(x.get("n") == "RESUME" for x in r.records), what="RESUME")
    q.close(); d.close()
    assert rec_src.stop() == 0 and rec_dst.stop() == 0

    merged = tmp_path / "merged.qmprec"
    p = qmpreplay("merge", str(rec_src.out), str(rec_dst.out), "-o", str(merged), "--json", check=True)
    second = json.loads(p.stdout_text)["sources"][1]
    assert second["method"] == "event-timestamps", second
    assert _messages(merged, 1) == _messages(rec_src.out, 1)
    assert _messages(merged, 2) == _messages(rec_dst.out, 1)
    # On the merged timeline the source stops before the destination resumes.
    recs = [json.loads(l) for l in open(merged)][1:]
    stop = next(i for i, r in enumerate(recs) if r.get("c") == 1 and r.get("n") == "STOP")
    resume = next(i for i, r in enumerate(recs) if r.get("c") == 2 and r.get("n") == "RESUME")
    assert stop < resume
