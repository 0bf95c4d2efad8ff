"""`qmpreplay record --connect`: qmpreplay is a QMP client of a real QEMU (no guest).

The lab has two monitors: "rec" for the recorder and "ctl" where the test's own qemu.qmp
client runs commands. Events are broadcast to every monitor with the same timestamp, so
the events in the recording must equal, member for member, what the ctl client received.
"""
from __future__ import annotations

import json
import signal
import time

from guestlab import scenarios as S
from guestlab.recorder import check_well_formed, qmpreplay, read_qmprec

DEFAULT_INIT = ["query-version", "query-status", "query-qmp-schema"]


def qemu_version(q) -> str:
    v = q.cmd("query-version")["qemu"]
    return f"{v['major']}.{v['minor']}.{v['micro']}"


def test_greeting_init_replies_and_header(lab, recorders):
    ctl = lab.qmp("ctl")
    version = qemu_version(ctl)
    rec = recorders.client(lab.qmp_path("rec"))
    rec.start()
    rec.wait_ready(replies=1 + len(DEFAULT_INIT))
    assert rec.stop(signal.SIGINT) == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "client")
    assert r.header["qemu"] == version
    assert r.header["source"] == f"unix:{lab.qmp_path('rec')}"
    assert "signal" in r.trailer["reason"]

    kinds = [x.kind for x in r.records]
    assert kinds.index("open") < kinds.index("greeting")
    (greeting,) = r.messages("qemu", "greeting")
    assert greeting.msg == ctl.greeting                      # same QEMU, same greeting
    assert greeting.get("eol") == "\r\n"

    names = [c.get("n") for c in r.commands()]
    assert names == ["qmp_capabilities"] + DEFAULT_INIT
    for c in r.commands():
        reply = r.reply_to(c)
        assert reply is not None, f"no reply to {c.line}"
        assert reply.kind == "return" and reply.line_no > c.line_no
    by_name = {c.get("n"): r.reply_to(c) for c in r.commands() if "id" in c.msg}
    assert by_name["query-version"].msg["return"] == ctl.cmd("query-version")
    assert by_name["query-status"].msg["return"]["status"] == "running"
    assert any(e["meta-type"] == "command" for e in by_name["query-qmp-schema"].msg["return"])

    v = qmpreplay("validate", str(r.path))
    assert v.returncode == 0, v.stdout_text + v.stderr_text
    info = json.loads(qmpreplay("info", "--json", str(r.path), check=True).stdout)
    assert info["records"] == len(r.records) and info["trailer"]["reason"] == r.trailer["reason"]
    assert info["commands"]["query-qmp-schema"] == 1


def test_events_triggered_by_another_client(lab, recorders):
    rec = recorders.client(lab.qmp_path("rec"))
    rec.start()
    rec.wait_ready(replies=1 + len(DEFAULT_INIT))
    ctl = lab.qmp("ctl")
    result = S.lifecycle(lab, ctl, quit=False)
    want = result.events                                    # STOP RESUME RESET POWERDOWN
    rec.wait_until(lambda r: len(r.events()) >= len(want), what=f"{len(want)} events")
    assert rec.stop(signal.SIGINT) == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "client")
    assert r.events() == want                               # same data, same QEMU timestamps
    assert r.event_names() == ["STOP", "RESUME", "RESET", "POWERDOWN"]
    stop, resume = r.events("STOP")[0], r.events("RESUME")[0]
    assert "data" not in stop and "data" not in resume
    assert r.events("RESET")[0]["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
    for ev in r.messages("qemu", "event"):
        assert ev.get("n") == ev.msg["event"] and ev.get("c") == r.connections()[0]
    # the recorder's receive clock agrees with QEMU's event timestamps (same host)
    info = json.loads(qmpreplay("info", "--json", str(r.path), check=True).stdout)
    ts = info["qemu_timestamps"]
    assert ts["events"] == 4
    assert -1_000_000 < ts["skew_min_us"] <= ts["skew_max_us"] < 1_000_000, ts
    assert qmpreplay("validate", str(r.path)).returncode == 0


def test_qemu_quit_ends_recording(lab, recorders):
    rec = recorders.client(lab.qmp_path("rec"))
    rec.start()
    rec.wait_ready(replies=1 + len(DEFAULT_INIT))
    ctl = lab.qmp("ctl")
    ctl.cmd("stop")
    ctl.quit()
    assert rec.wait(15) == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "client")
    assert "eof" in r.trailer["reason"].lower(), r.trailer
    assert r.events("SHUTDOWN")[-1]["data"] == {"guest": False, "reason": "host-qmp-quit"}
    closes = [x for x in r.records if x.kind == "close"]
    assert closes and closes[-1].get("by") == "qemu", [c.line for c in closes]


def test_sigterm_and_duration(lab, recorders, tmp_path):
    rec = recorders.client(lab.qmp_path("rec"), tmp_path / "term.qmprec")
    rec.start()
    rec.wait_ready(replies=1 + len(DEFAULT_INIT))
    assert rec.stop(signal.SIGTERM) == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "client")
    assert "signal" in r.trailer["reason"]

    t0 = time.monotonic()
    rec = recorders.client(lab.qmp_path("rec"), tmp_path / "dur.qmprec", "--duration", "1.5s", "--no-init")
    rec.start()
    assert rec.wait(20) == 0, rec.describe()
    took = time.monotonic() - t0
    assert 1.4 < took < 10, took
    r = rec.read()
    check_well_formed(r, "client")
    assert r.trailer["reason"] == "duration"
    assert r.trailer["t"] >= 1_400_000_000


def test_no_init_custom_init_and_poll(lab, recorders, tmp_path):
    rec = recorders.client(lab.qmp_path("rec"), tmp_path / "noinit.qmprec", "--no-init", "--duration", "1s")
    rec.start()
    assert rec.wait(20) == 0, rec.describe()
    r = rec.read()
    assert [c.get("n") for c in r.commands()] == ["qmp_capabilities"]

    rec = recorders.client(lab.qmp_path("rec"), tmp_path / "init.qmprec", "--init", "query-kvm",
                           "--init", "query-name", "--duration", "1s")
    rec.start()
    assert rec.wait(20) == 0, rec.describe()
    r = rec.read()
    names = [c.get("n") for c in r.commands()]
    assert names[0] == "qmp_capabilities"
    assert names.index("query-kvm") < names.index("query-name")
    for c in r.commands("query-kvm") + r.commands("query-name"):
        assert r.reply_to(c) is not None and r.reply_to(c).kind == "return"
    assert r.reply_to(r.commands("query-name")[0]).msg["return"] == {"name": "lab"}

    rec = recorders.client(lab.qmp_path("rec"), tmp_path / "poll.qmprec", "--no-init",
                           "--poll", "query-status@200ms", "--duration", "1.5s")
    rec.start()
    assert rec.wait(20) == 0, rec.describe()
    r = rec.read()
    polls = r.commands("query-status")
    assert 4 <= len(polls) <= 10, len(polls)
    assert all(r.reply_to(p) is not None for p in polls[:-1])


def test_oob_negotiation(lab, recorders):
    rec = recorders.client(lab.qmp_path("rec"), None, "--oob", "--no-init")
    rec.start()
    rec.wait_ready(replies=1)
    assert rec.stop() == 0, rec.describe()
    r = rec.read()
    (caps,) = r.commands("qmp_capabilities")
    assert caps.msg.get("arguments") == {"enable": ["oob"]}
    assert r.replies()[0].msg["return"] == {}


def test_existing_output_is_kept_unless_force(lab, recorders, tmp_path):
    """A recording is evidence: an existing file is never replaced silently (--force
    replaces it; --overwrite, its former name, still works)."""
    out = tmp_path / "exists.qmprec"
    out.write_text("old contents\n")
    rec = recorders.client(lab.qmp_path("rec"), out, "--no-init", "--duration", "0.5s")
    rec.start()
    assert rec.wait(15) == 2, rec.describe()
    assert rec.stderr.splitlines()[0] == (f"qmpreplay: error: {out} already exists; not overwriting it "
                                          "(recordings are evidence): choose another name or add --force")
    assert out.read_text() == "old contents\n"
    rec = recorders.client(lab.qmp_path("rec"), out, "--no-init", "--duration", "0.5s", "--force")
    rec.start()
    assert rec.wait(15) == 0, rec.describe()
    r = read_qmprec(out)
    check_well_formed(r, "client")
    assert b"old contents" not in out.read_bytes()
    out.write_text("old contents\n")
    rec = recorders.client(lab.qmp_path("rec"), out, "--no-init", "--duration", "0.5s", "--overwrite")
    rec.start()
    assert rec.wait(15) == 0, rec.describe()
    assert b"old contents" not in out.read_bytes()


def test_polling_query_rx_filter_needs_allow_flag(lab, recorders, tmp_path):
    """query-rx-filter re-arms NIC_RX_FILTER_CHANGED, so polling it changes what QEMU emits:
    the recorder refuses it (bad command line) unless --allow-rx-filter-poll."""
    out = tmp_path / "rx.qmprec"
    rec = recorders.client(lab.qmp_path("rec"), out, "--no-init", "--poll", "query-rx-filter@200ms", "--duration", "1s")
    rec.start()
    assert rec.wait(15) == 64, rec.describe()
    assert "query-rx-filter" in rec.stderr and "--allow-rx-filter-poll" in rec.stderr
    rec = recorders.client(lab.qmp_path("rec"), out, "--no-init", "--poll", "query-rx-filter@200ms",
                           "--duration", "1s", "--allow-rx-filter-poll")
    rec.start()
    assert rec.wait(15) == 0, rec.describe()
    r = read_qmprec(out)
    polls = r.commands("query-rx-filter")
    assert len(polls) >= 3
    assert r.reply_to(polls[0]).msg["return"] == []            # no NICs in this lab


def test_reconnect_after_qemu_restarts(labs, recorders):
    first = labs()
    rec = recorders.client(first.qmp_path("rec"), None, "--reconnect", "--no-init")
    rec.start()
    rec.wait_ready(replies=1)
    first.qmp("ctl").quit()
    first.wait_exit(10)
    time.sleep(0.5)
    assert rec.running, "recorder gave up although --reconnect was given:\n" + rec.describe()
    second = labs(workdir=first.dir, name="lab2")       # same socket paths
    rec.wait_until(lambda r: len(r.messages("qemu", "greeting")) >= 2, timeout=30, what="a second greeting")
    rec.wait_ready(replies=2)
    second.qmp("ctl").cmd("stop")
    rec.wait_until(lambda r: len(r.events("STOP")) >= 1, what="STOP on the new connection")
    assert rec.stop() == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "client")
    conns = r.message_connections()
    assert len(conns) == 2, [x.line for x in r.records if x.kind in ("open", "close")]
    c1, c2 = conns
    assert len(r.messages("qemu", "greeting", c1)) == 1 and len(r.messages("qemu", "greeting", c2)) == 1
    assert [c.get("n") for c in r.commands(conn=c2)][0] == "qmp_capabilities"   # negotiated again
    assert r.events("STOP", conn=c2)
    assert "signal" in r.trailer["reason"]


def test_pretty_monitor_keeps_exact_text(labs, recorders):
    lab = labs(monitors=("rec", "ctl"), pretty=("rec",))
    rec = recorders.client(lab.qmp_path("rec"), None, "--init", "query-status")
    rec.start()
    rec.wait_ready(replies=2)
    ctl = lab.qmp("ctl")
    ctl.cmd("stop")
    rec.wait_until(lambda r: len(r.events("STOP")) == 1, what="STOP")
    assert rec.stop() == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "client")
    for m in r.messages("qemu"):
        assert "text" in m.data, f"multi-line message without text: {m.line}"
        raw = m.exact_bytes()
        assert b"\n    " in raw and raw.endswith(b"\r\n")
        assert json.loads(raw) == m.msg                 # compact msg added for jq
    assert r.events("STOP")[0]["timestamp"] == ctl.events[-1]["timestamp"]
    assert qmpreplay("validate", str(r.path)).returncode == 0
