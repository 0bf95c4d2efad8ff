"""`qmpreplay merge` on one live session seen by two sources: libvirt's monitor (its debug
log, imported) and a second QMP monitor recorded by `qmpreplay record` in proxy mode
(guestlab/libvirtsession.py). Runs only with QMPREPLAY_LIBVIRT=1 (libvirt is optional:
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
