"""The live shell (`qmpreplay shell --connect ADDR -o FILE`, `--follow FILE`) on a real
QEMU, typed at under a pseudo-terminal (pexpect), as docs/SHELL.md "Live" describes it.

- With the guest lab's guest: `send stop` shows STOP arriving, `state` says paused, `send
  cont`, `send balloon value=...` shows BALLOON_CHANGE (the guest's balloon driver answers),
  `prev STOP` moves back, `quit` leaves a recording that `validate` accepts and that holds
  every byte QEMU and the shell exchanged (a tap between them keeps both streams).
- `--follow` on a file `qmpreplay record` is writing from another process.
- QEMU killed under a live shell: the shell says so, the file gets its trailer, the
  session stays open on it.
"""
from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pexpect

from guestlab.monitorpool import MonitorPool
from guestlab.recorder import check_well_formed, qmpreplay, qmpreplay_binary, read_qmprec

MiB = 1 << 20
LIVE = re.compile(r"\] live qmp> ")
ANY_PROMPT = re.compile(r"\] (live |ended |stay |\+\d+ )?qmp> ")


def spawn(tmp_path: Path, *args: str) -> pexpect.spawn:
    env = dict(os.environ, TERM="xterm", HOME=str(tmp_path), QMPREPLAY_HISTORY=str(tmp_path / "hist"),
               COLUMNS="160", NO_COLOR="1")
    child = pexpect.spawn(qmpreplay_binary(), ["shell", *args], env=env, encoding="utf-8", timeout=30,
                          dimensions=(50, 160))
    child.logfile_read = sys.stdout if os.environ.get("PTY_DEBUG") else None
    return child


def send_stop_and_see_paused(c: pexpect.spawn) -> None:
    """`send stop` shows STOP arriving, then `state` at the live end says paused."""
    c.sendline("send stop")
    c.expect(r"<- event\s+STOP")
    c.expect(LIVE)
    c.sendline("state")
    c.expect(r"run state\s+paused")


def test_live_shell_sends_watches_and_records_exactly(guest_lab, guest_ctl, tmp_path):
    # A tap between the shell and QEMU keeps both byte streams as they crossed the socket.
    tap = MonitorPool(str(tmp_path / "tap.sock"), [guest_lab.qmp_path("rec")], keep_bytes=True)
    out = tmp_path / "live.qmprec"
    full = guest_ctl.cmd("query-balloon")["actual"]
    mark = guest_ctl.mark()
    c = spawn(tmp_path, "--connect", f"unix:{tap.path}", "-o", str(out))
    c.expect(LIVE)
    # Tab completes command names from QEMU's own schema (the --init query-qmp-schema).
    c.send("send query-statu\t")
    c.expect("query-status ")
    c.send("\r")
    c.expect(r'"status":"running"')
    c.expect(LIVE)

    send_stop_and_see_paused(c)
    c.expect(LIVE)
    c.sendline("send cont")
    c.expect(r"<- event\s+RESUME")
    c.expect(LIVE)

    c.sendline("watch event BALLOON_CHANGE")
    c.expect("watching")
    c.expect(LIVE)
    target = 192 * MiB
    # ... and argument names, ready for the value.
    c.send("send balloon va\t")
    c.expect("value=")
    c.sendline(str(target))
    c.expect(r'"return":\{\}')
    c.expect(r'BALLOON_CHANGE\s+\{"actual":%d\}' % target, timeout=60)
    c.sendline("prev STOP")
    c.expect(r"STOP\] \+\d+ qmp> ")
    # The guest gets its memory back (the module's guest stays usable); the watch prints the
    # BALLOON_CHANGE though the cursor stays.
    c.sendline(f"send balloon value={full}")
    c.expect(r'BALLOON_CHANGE\s+\{"actual":%d\}' % full, timeout=60)
    c.sendline("quit")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0
    assert len(tap.sessions) == 1 and tap.sessions[0]["done"].wait(10)
    tap.close()

    v = qmpreplay("validate", str(out))
    assert v.returncode == 0, v.stdout_text + v.stderr_text
    r = read_qmprec(out)
    check_well_formed(r, "client")
    # Every message exactly: both byte streams, as they crossed the socket.
    assert r.stream("qemu", conn=1) == bytes(tap.sessions[0]["qemu"])
    assert r.stream("client", conn=1) == bytes(tap.sessions[0]["client"])
    names = [cmd.msg["execute"] for cmd in r.commands()]
    assert names[:4] == ["qmp_capabilities", "query-version", "query-status", "query-qmp-schema"], names
    assert ["query-status", "stop", "cont", "balloon", "balloon"] == names[4:], names
    # The events QEMU sent the shell are those it sent the test's own monitor.
    seen = [e for e in guest_ctl.events_since(mark) if e["event"] in ("STOP", "RESUME", "BALLOON_CHANGE")]
    assert [e for e in r.events() if e["event"] in ("STOP", "RESUME", "BALLOON_CHANGE")] == seen


def test_follow_a_recording_record_writes(lab, recorders, tmp_path):
    out = recorders.out_dir / "followed.qmprec"
    rec = recorders.client(lab.qmp_path("rec"), out, "--init", "query-status")
    rec.start()
    rec.wait_ready(replies=2)
    q = lab.qmp("ctl")
    c = spawn(tmp_path, "--follow", str(out))
    c.expect(LIVE)
    # A record arriving while a line is being typed prints above it; the line comes back
    # as it was and goes on being typed.
    c.send("sta")
    q.cmd("stop")
    c.expect(r"<- event\s+STOP")
    c.expect(r"live qmp> sta")
    c.send("te\r")
    c.expect(r"run state\s+paused")
    c.sendline("send cont")
    c.expect("sending is off")
    c.sendline("follow off")
    c.expect(r"staying")
    c.sendline("watch event RESUME")
    c.expect("watching")
    q.cmd("cont")
    c.expect(r"<- event\s+RESUME")
    c.expect(r"\+\d+ qmp> ")
    c.sendline("follow")
    c.expect(LIVE)
    assert rec.stop(signal.SIGINT) == 0, rec.describe()
    c.expect(r"the recording ended \(signal\)")
    c.expect(r"\] ended qmp> ")
    c.sendline("find event RESUME")
    c.expect("1 match")
    c.sendline("quit")
    c.expect(pexpect.EOF)
    q.close()


def test_qemu_gone_leaves_the_session_open_on_the_finished_file(labs, tmp_path):
    lab = labs()
    out = tmp_path / "gone.qmprec"
    c = spawn(tmp_path, "--connect", lab.qmp_path("rec"), "-o", str(out))
    c.expect(LIVE)
    lab.kill()
    c.expect("QEMU went away")
    c.expect(r"the recording ended \(upstream lost\)")
    c.expect(r"\] ended qmp> ")
    c.sendline("send query-status")
    c.expect("QEMU is gone")
    c.sendline("state")
    c.expect(r"run state")
    c.sendline("quit")
    c.expect(pexpect.EOF)
    r = read_qmprec(out)
    check_well_formed(r, "client")
    assert r.trailer["reason"] == "upstream lost"


def test_reconnect_waits_for_qemu_and_goes_on(labs, tmp_path):
    first = labs()
    out = tmp_path / "again.qmprec"
    c = spawn(tmp_path, "--connect", first.qmp_path("rec"), "-o", str(out), "--reconnect", "--no-init")
    c.expect(LIVE)
    first.qmp("ctl").quit()
    c.expect("QEMU went away")
    c.expect("waiting for it to come back")
    first.wait_exit(10)
    second = labs(workdir=first.dir, name="lab2")       # same socket paths
    c.expect(r"connected to QEMU \(connection 2", timeout=30)
    c.expect(LIVE)
    send_stop_and_see_paused(c)
    c.sendline("quit")
    c.expect(pexpect.EOF)
    r = read_qmprec(out)
    check_well_formed(r, "client")
    assert r.message_connections() == [1, 2]
    assert r.events("STOP", conn=2)
    second.stop()
