"""gdb habits and the pager in `qmpreplay shell`, on a real pseudo-terminal.

Enter on an empty line repeats the last next/prev; moves print the record they land on;
output taller than the terminal goes through $PAGER (here a fake pager that marks what it
was given), `set pager off` stops that, and scripts (-c) never page.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("QMPREPLAY_BIN") or str(ROOT / ".build" / "debug" / "qmpreplay")
LIFECYCLE = str(ROOT / "Recordings" / "lifecycle.qmprec")
PROMPT = re.compile(r"\] qmp> ")


def fake_pager(tmp_path: Path) -> str:
    p = tmp_path / "fake-pager"
    p.write_text("#!/bin/sh\necho FAKE-PAGER-START\ncat\necho FAKE-PAGER-END\n")
    p.chmod(0o755)
    return str(p)


def spawn(tmp_path: Path, *args: str, rows: int = 40, cols: int = 120, **env) -> pexpect.spawn:
    e = dict(os.environ, TERM="xterm", HOME=str(tmp_path), QMPREPLAY_HISTORY=str(tmp_path / "hist"), NO_COLOR="1")
    e.pop("COLUMNS", None)
    e.pop("LINES", None)
    e.update(env)
    child = pexpect.spawn(BIN, ["shell", LIFECYCLE, *args], env=e, encoding="utf-8", timeout=20, dimensions=(rows, cols))
    child.logfile_read = sys.stdout if os.environ.get("PTY_DEBUG") else None
    return child


def test_enter_repeats_the_last_move_and_moves_say_where_they_land(tmp_path):
    c = spawn(tmp_path)
    c.expect(PROMPT)
    c.sendline("next STOP")
    c.expect(r">\s+#8 \+\d\d:\d\d:\d\d\.\d{3} c1 <- event\s+STOP")   # the landing line
    c.expect(r"\[#8 [^\]]*STOP\] qmp> ")
    c.sendline("")                                                     # Enter: next STOP again
    c.expect(r">\s+#14 [^\r\n]*STOP")
    c.expect(r"\[#14 [^\]]*STOP\] qmp> ")
    c.sendline("show")                                                 # looking does not forget the move
    c.expect(PROMPT)
    c.sendline("prev")
    c.expect(r"\[#13 [^\]]*\] qmp> ")
    c.sendline("")
    c.expect(r">\s+#12 ")
    c.expect(r"\[#12 [^\]]*\] qmp> ")
    c.sendline("")
    c.expect(r"\[#11 [^\]]*\] qmp> ")
    c.sendline("goto 3")                                               # no triage yet: a record
    c.expect(r"\[#3 [^\]]*\] qmp> ")
    c.sendline("")                                                     # goto is not repeated
    c.expect(r"\[#3 [^\]]*\] qmp> ")
    assert "#4 " not in c.before
    c.sendline("quit")
    c.expect(pexpect.EOF)


def test_long_output_goes_through_the_pager_and_set_pager_off_stops_it(tmp_path):
    c = spawn(tmp_path, rows=12, cols=80, PAGER=fake_pager(tmp_path))
    c.expect(PROMPT)
    c.sendline("list 30")                      # 23 rows on a 12-row terminal
    c.expect("FAKE-PAGER-START")
    c.expect(r"#22 ")
    c.expect("FAKE-PAGER-END")
    c.expect(PROMPT)
    c.sendline("next")                         # one line: no pager
    c.expect(PROMPT)
    assert "FAKE-PAGER" not in c.before
    c.sendline("show")                         # a dozen lines with wrapping: taller than 11 rows
    c.expect(PROMPT)
    c.sendline("set pager off")
    c.expect("pager off")
    c.expect(PROMPT)
    c.sendline("list 30")
    c.expect(r"#22 ")
    c.expect(PROMPT)
    assert "FAKE-PAGER" not in c.before
    c.sendline("set pager on")
    c.expect(PROMPT)
    c.sendline("help")
    c.expect("FAKE-PAGER-START")
    c.expect(PROMPT)
    c.sendline("quit")
    c.expect(pexpect.EOF)


def test_empty_pager_or_cat_means_no_pager_and_scripts_never_page(tmp_path):
    c = spawn(tmp_path, rows=12, cols=80, PAGER="")
    c.expect(PROMPT)
    c.sendline("list 30")
    c.expect(r"#22 ")
    c.expect(PROMPT)
    c.sendline("quit")
    c.expect(pexpect.EOF)
    # -c on a terminal: batch mode, no pager even for long output.
    s = spawn(tmp_path, "-c", "list 30", rows=12, cols=80, PAGER=fake_pager(tmp_path))
    s.expect(pexpect.EOF)
    assert "FAKE-PAGER" not in s.before and "#22 " in s.before
    s.close()
    assert s.exitstatus == 0


def test_ctrl_c_in_a_paged_command_stops_it_and_the_pager_returns_to_the_prompt(tmp_path):
    big = tmp_path / "big.qmprec"
    import subprocess
    subprocess.run([BIN, "synth", "--records", "300000", "-o", str(big)], check=True, stdout=subprocess.DEVNULL)
    e = dict(os.environ, TERM="xterm", HOME=str(tmp_path), QMPREPLAY_HISTORY=str(tmp_path / "hist"), NO_COLOR="1",
             PAGER=fake_pager(tmp_path))
    c = pexpect.spawn(BIN, ["shell", str(big)], env=e, encoding="utf-8", timeout=30, dimensions=(12, 80))
    c.expect(PROMPT)
    c.sendline("list 300000")
    c.expect("FAKE-PAGER-START")
    c.expect(r"#\d+ ")
    c.sendintr()                               # the list stops; the (fake) pager ends too
    c.expect(PROMPT, timeout=30)
    c.sendline("show")
    c.expect(PROMPT)
    assert c.isalive()
    c.sendline("quit")
    c.expect(pexpect.EOF)


def test_a_missing_pager_does_not_lose_the_output(tmp_path):
    c = spawn(tmp_path, rows=12, cols=80, PAGER="/nonexistent/pager")
    c.expect(PROMPT)
    c.sendline("list 30")
    c.expect(r"the pager '/nonexistent/pager' could not be run; set PAGER, or 'set pager off'")
    c.expect(r"#22 ")
    c.expect(PROMPT)
    c.sendline("list 30")                      # said once
    c.expect(r"#22 ")
    c.expect(PROMPT)
    assert "could not be run" not in c.before
    c.sendline("quit")
    c.expect(pexpect.EOF)
