"""`qmpreplay shell` on a real pseudo-terminal: readline, completion, history, Ctrl-C, Ctrl-D.

pexpect runs the real binary under a pty, types like a person and reads the screen.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("QMPREPLAY_BIN") or str(ROOT / ".build" / "debug" / "qmpreplay")
LIFECYCLE = str(ROOT / "Recordings" / "lifecycle.qmprec")
PROMPT = re.compile(r"\] qmp> ")


def spawn(path: str, tmp_path: Path, **env) -> pexpect.spawn:
    e = dict(os.environ, TERM="xterm", HOME=str(tmp_path), QMPREPLAY_HISTORY=str(tmp_path / "hist"), COLUMNS="120")
    e.pop("NO_COLOR", None)
    e.update(env)
    child = pexpect.spawn(BIN, ["shell", path], env=e, encoding="utf-8", timeout=20, dimensions=(40, 120))
    child.logfile_read = sys.stdout if os.environ.get("PTY_DEBUG") else None
    child.expect(PROMPT)
    return child


def test_prompt_moves_with_the_cursor_and_output_is_coloured(tmp_path):
    c = spawn(LIFECYCLE, tmp_path)
    assert "[#0 +00:00:00.000" in c.before + c.after or "#0" in c.before
    c.sendline("next 2")
    c.expect(r"\[#2 \+\d\d:\d\d:\d\d\.\d{3} \S+\] qmp> ")
    c.sendline("show")
    c.expect(PROMPT)
    assert "\x1b[" in c.before, "colours on a terminal"
    c.sendline("quit")
    c.expect(pexpect.EOF)


def test_no_color_is_respected(tmp_path):
    c = spawn(LIFECYCLE, tmp_path, NO_COLOR="1")
    c.sendline("show")
    c.expect(PROMPT)
    assert "\x1b[3" not in c.before and "\x1b[1m" not in c.before
    c.sendeof()
    c.expect(pexpect.EOF)


def test_tab_completes_commands_and_event_names(tmp_path):
    c = spawn(LIFECYCLE, tmp_path)
    c.send("nex\t")
    c.expect("next ")
    c.send("SHUT\t")
    c.expect("SHUTDOWN")
    c.send("\r")
    c.expect(r"\[#\d+ \S+ SHUTDOWN\] qmp> ")
    c.send("help fil\t")
    c.expect("filter")
    c.send("\r")
    c.expect(PROMPT)
    assert "data.actual" in c.before
    c.sendline("quit")
    c.expect(pexpect.EOF)


def test_tab_completes_from_qemus_schema(tmp_path):
    """Enum values after ==, and describe's names, come from the recording's schema
    (QEMU 7.2.22's, shipped)."""
    c = spawn(str(ROOT / "Recordings" / "block-jobs-reuse.qmprec"), tmp_path, NO_COLOR="1")
    c.send("find command blockdev-mirror and arguments.sync == \t\t")
    c.expect("incremental")
    c.send("fu\t")
    c.expect("full")
    c.send("\r")
    c.expect(PROMPT)
    assert "1 match" in c.before
    c.send("describe blockdev-mirr\t")
    c.expect("blockdev-mirror ")
    c.send("\r")
    c.expect(PROMPT)
    assert "on-target-error?" in c.before and "from QEMU 7.2.22's schema (shipped)" in c.before
    c.sendline("quit")
    c.expect(pexpect.EOF)


def test_history_is_saved_and_ctrl_r_searches_it(tmp_path):
    c = spawn(LIFECYCLE, tmp_path)
    c.sendline("seek #5")
    c.expect(PROMPT)
    c.sendline("info")
    c.expect(PROMPT)
    c.sendeof()
    c.expect(pexpect.EOF)
    hist = (tmp_path / "hist").read_text()
    assert "seek #5" in hist and "info" in hist

    c = spawn(LIFECYCLE, tmp_path)
    c.send("\x12")              # Ctrl-R
    c.send("seek")
    c.expect("reverse-i-search")
    c.send("\r")                # run the found line
    c.expect(r"\[#5 [^\]]*\] qmp> ")
    c.send("\x1b[A")            # up arrow recalls it again
    c.expect("seek #5")
    c.send("\x15")              # Ctrl-U clears the line
    c.sendline("quit")
    c.expect(pexpect.EOF)


def test_ctrl_c_stops_a_long_list_and_clears_a_line_without_killing_the_shell(tmp_path):
    big = tmp_path / "big.qmprec"
    subprocess.run([BIN, "synth", "--records", "300000", "-o", str(big)], check=True, stdout=subprocess.DEVNULL)
    # Without a pager: the rows stream to the terminal (a pager would hold them; see
    # test_shell_habits_pty.py for Ctrl-C with one).
    c = spawn(str(big), tmp_path, PAGER="cat")
    c.sendline("list 300000")
    c.expect(r"#\d+ ")          # rows are coming
    c.sendintr()                # Ctrl-C
    c.expect(r"\^C \(stopped after \d+ rows\)", timeout=30)
    c.expect(PROMPT)
    c.send("garbage that is never run")
    # Ctrl-C once readline has the line (echoed): a ^C typed before readline is reading
    # would be taken by the terminal's line discipline, which drops the pending input.
    c.expect("garbage that is never run")
    c.sendintr()
    c.expect(PROMPT)
    c.sendline("show")
    c.expect(PROMPT)
    assert "unknown command" not in c.before
    assert c.isalive()
    c.sendeof()
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0


def test_errors_are_one_line_and_do_not_move_the_cursor(tmp_path):
    c = spawn(LIFECYCLE, tmp_path)
    c.sendline("seek #3")
    c.expect(r"\[#3 [^\]]*\] qmp> ")
    c.sendline("seek nowhere")
    c.expect(PROMPT)
    assert "error:" in c.before and "neither a record number" in c.before
    c.sendline("show")
    c.expect(PROMPT)
    assert "#3" in c.before
    c.sendline("quit")
    c.expect(pexpect.EOF)
