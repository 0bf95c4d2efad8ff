"""Faults: QEMU killed mid-session, the recorder killed, a full filesystem. The recording
must stay readable, and the recorder must say what happened."""
from __future__ import annotations

import json
import signal
import time

from guestlab.recorder import qmpreplay, read_qmprec


def test_qemu_killed_mid_session(lab, recorders):
    rec = recorders.client(lab.qmp_path("rec"), None, "--init", "query-status", "--poll", "query-status@100ms")
    rec.start()
    rec.wait_ready(replies=2)
    ctl = lab.qmp("ctl")
    ctl.cmd("stop")
    ctl.cmd("cont")
    rec.wait_until(lambda r: len(r.events("RESUME")) == 1, what="RESUME")
    lab.kill(signal.SIGKILL)
    rc = rec.wait(15)
    assert rc == 3, f"QEMU lost without SHUTDOWN is exit status 3:\n{rec.describe()}"
    r = rec.read()
    assert r.bad_lines == []
    assert r.event_names() == ["STOP", "RESUME"]
    assert r.trailer is not None, "no trailer after losing QEMU"
    reason = r.trailer["reason"].lower()
    assert "lost" in reason or "upstream" in reason, r.trailer
    info = qmpreplay("info", str(r.path))
    assert info.returncode == 0, info.stderr_text
    j = json.loads(qmpreplay("info", "--json", str(r.path), check=True).stdout)
    assert j["trailer"]["reason"] == r.trailer["reason"]
    assert j["events"] == {"STOP": 1, "RESUME": 1}


def test_recorder_killed(lab, recorders):
    rec = recorders.client(lab.qmp_path("rec"), None, "--poll", "query-status@20ms")
    rec.start()
    rec.wait_ready(replies=4)
    rec.wait_until(lambda r: len(r.commands("query-status")) >= 10, what="10 polls")
    rec.signal(signal.SIGKILL)
    assert rec.wait(10) == -signal.SIGKILL
    data = rec.out.read_bytes()
    lines = data.split(b"\n")
    complete = lines[:-1]
    for i, line in enumerate(complete, 1):
        json.loads(line)                 # every complete line parses
    r = read_qmprec(rec.out)
    assert r.trailer is None
    assert len(r.bad_lines) <= 1                 # at most the torn last line
    assert not r.bad_lines or r.bad_lines[0][0] == len(lines)
    assert len(r.commands("query-status")) >= 10
    info = qmpreplay("info", str(rec.out))
    assert info.returncode == 0, info.stderr_text
    assert "trailer" in (info.stdout_text + info.stderr_text).lower()
    j = json.loads(qmpreplay("info", "--json", str(rec.out), check=True).stdout)
    assert j["trailer"] is None
    assert any("trailer" in w["message"].lower() for w in j["warnings"]), j["warnings"]


def test_full_filesystem(lab, recorders, tiny_fs):
    # The default init's query-qmp-schema reply (~150 KB) alone overflows 64 KiB.
    out = tiny_fs / "full.qmprec"
    rec = recorders.client(lab.qmp_path("rec"), out)
    rec.start()
    t0 = time.monotonic()
    rc = rec.wait(30)
    assert rc == 4, f"client mode stops on a full disk, recording incomplete:\n{rec.describe()}"
    assert time.monotonic() - t0 < 30
    err = rec.stderr
    assert str(out) in err, f"the error does not name the file:\n{err}"
    assert "space" in err.lower() or "full" in err.lower() or "ENOSPC" in err, err
    # whatever did get written is still a readable recording
    # the file ends at its last complete record (the torn write was cut off again)
    data = out.read_bytes()
    assert data.endswith(b"\n")
    r = read_qmprec(out)
    assert r.bad_lines == []
