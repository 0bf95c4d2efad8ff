"""Incident analysis on live recordings: three incident scenarios recorded fresh against
the real QEMU, exactly as the captures in Recordings/ are made (`record_scenario` from
`python -m guestlab capture`: the scenario's qemu.qmp client through `qmpreplay record
--listen ... --once`), then the binary's `analyze triage --format json` (and `shell`) on
the new file must say what the shipped captures say:

- panic_pause: an error `guest-panic` (incidents) naming "action pause", an error
  `runstate`/`paused`, and the shell's state at the STOP record is "panicked";
- qemu_killed: the top finding is the error `qemu-gone`, and a warning `unanswered` exists;
- migration: no warning or error (the switch-over STOP is not an alarm), the final run
  state is paused.
"""
from __future__ import annotations

import json

from guestlab.__main__ import CAPTURES, capture_options, record_scenario
from guestlab.recorder import Recording, check_well_formed, qmpreplay


def record_capture(labs, recorders, capture: str) -> Recording:
    """Record capture ``capture`` (a CAPTURES key) on a fresh lab into the test's tmp dir.
    The lab and the recorder come from the fixtures, which dump their logs on a failure."""
    lab = labs(name=capture, **capture_options(capture))
    out = recorders.out_dir / f"{capture}.qmprec"
    rec = record_scenario(lab, CAPTURES[capture][0], out, "--label", f"scenario={capture}",
                          "--label", "made-by=test_incidents_live", proxy=recorders.proxy)
    r = rec.read()
    check_well_formed(r, "proxy")
    return r


def triage(r: Recording) -> dict:
    p = qmpreplay("analyze", "triage", str(r.path), "--format", "json", check=True)
    return json.loads(p.stdout_text)


def show(report: dict) -> str:
    """The findings, one a line, for assertion messages."""
    return "\n".join(f"  {f['severity']:7} {f['analysis']}/{f['code']} {f['records']}: {f['message']}"
                     for f in report["findings"])


def record_index(r: Recording, event: str) -> int:
    """The #N (as `cat` and `shell` number records) of the first ``event`` record."""
    return next(i for i, x in enumerate(r.records) if x.kind == "event" and x.get("n") == event)


def test_incidents_live_panic_pause(guest_available, labs, recorders):
    r = record_capture(labs, recorders, "panic-pause")
    assert r.event_names()[:2] == ["GUEST_PANICKED", "STOP"], r.event_names()
    t = triage(r)
    panicked = record_index(r, "GUEST_PANICKED")
    gp = [f for f in t["findings"] if f["code"] == "guest-panic"]
    assert len(gp) == 1, show(t)
    assert gp[0]["severity"] == "error" and gp[0]["analysis"] == "incidents", show(t)
    assert "action pause" in gp[0]["message"], show(t)
    assert gp[0]["records"][0] == panicked, show(t)
    assert any(f["severity"] == "error" and f["analysis"] == "runstate" and f["code"] == "paused"
               for f in t["findings"]), show(t)

    stop = record_index(r, "STOP")
    p = qmpreplay("shell", str(r.path), "-c", f"goto #{stop}; state", check=True)
    lines = [ln.strip() for ln in p.stdout_text.splitlines()]
    assert any(ln.startswith("run state   panicked") for ln in lines), p.stdout_text + p.stderr_text


def test_incidents_live_qemu_killed(labs, recorders):
    r = record_capture(labs, recorders, "qemu-killed")
    closes = [x for x in r.records if x.kind == "close"]
    assert closes and closes[-1].get("by") == "qemu", [x.data for x in closes]
    t = triage(r)
    assert t["findings"], "triage found nothing"
    top = t["findings"][0]
    assert top["code"] == "qemu-gone" and top["severity"] == "error", show(t)
    unanswered = [f for f in t["findings"] if f["code"] == "unanswered" and f["severity"] == "warning"]
    assert unanswered, show(t)
    assert "dump-guest-memory" in unanswered[0]["message"], show(t)


def test_incidents_live_migration(labs, recorders):
    r = record_capture(labs, recorders, "migration")
    assert "STOP" in r.event_names(), r.event_names()
    t = triage(r)
    alarms = [f for f in t["findings"] if f["severity"] in ("warning", "error")]
    assert alarms == [], show(t)
    assert t["results"]["runstate"]["final_state"] == "paused", json.dumps(t["results"]["runstate"])[:2000]
