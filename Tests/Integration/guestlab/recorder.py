"""Run ``qmpreplay record`` and read the .qmprec files it writes (docs/FORMAT.md).

    rec = Recorder.client(lab.qmp_path("rec"), out)      # qmpreplay record --connect unix:...
    rec.start(); rec.wait_records(lambda r: r.replies() >= 4)
    ...
    rc = rec.stop()                                       # SIGINT, wait
    recording = read_qmprec(out)
"""
from __future__ import annotations

import base64
import json
import os
import re
import signal as _signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .lab import REPO


class RecorderUnavailable(Exception):
    pass


def qmpreplay_binary() -> str:
    """$QMPREPLAY_BIN, else .build/debug/qmpreplay, else .build/release/qmpreplay."""
    env = os.environ.get("QMPREPLAY_BIN")
    if env:
        return env
    for p in (REPO / ".build/debug/qmpreplay", REPO / ".build/release/qmpreplay"):
        if p.exists():
            return str(p)
    raise RecorderUnavailable("qmpreplay is not built: run `swift build` (or set QMPREPLAY_BIN)")


def record_support(binary: Optional[str] = None) -> tuple[bool, str]:
    """(True, "") when ``qmpreplay record --help`` works, else (False, why).

    The exit status alone is not enough: an argument parser may answer an unknown
    subcommand's --help with the top-level help and status 0, so the help text must be
    the record command's own (a USAGE line naming ``record``)."""
    try:
        b = binary or qmpreplay_binary()
    except RecorderUnavailable as e:
        return False, str(e)
    try:
        p = subprocess.run([b, "record", "--help"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        return False, f"{b}: {e}"
    text = p.stdout + p.stderr
    if p.returncode != 0:
        return False, f"`{b} record --help` exited with {p.returncode}: {text.strip()[:300]}"
    if not re.search(r"USAGE:.*\brecord\b", text) or "--connect" not in text:
        return False, f"`{b} record --help` shows no record command (top-level help instead)"
    return True, ""


def qmpreplay(*args: str, check: bool = False, timeout: float = 60, binary: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run another qmpreplay command (info, cat, validate); output as text."""
    p = subprocess.run([binary or qmpreplay_binary(), *args], capture_output=True, timeout=timeout)
    p.stdout_text = p.stdout.decode("utf-8", "replace")  # type: ignore[attr-defined]
    p.stderr_text = p.stderr.decode("utf-8", "replace")  # type: ignore[attr-defined]
    if check and p.returncode != 0:
        raise AssertionError(f"qmpreplay {' '.join(args)} exited {p.returncode}:\n{p.stderr_text}{p.stdout_text}")
    return p


# --------------------------------------------------------------------------- reading .qmprec
_dec = json.JSONDecoder()
_WS = " \t\r\n"


def raw_members(line: str) -> dict[str, tuple[int, int]]:
    """The source span (start, end) of each top-level member's value in a JSON object line,
    so a member's exact text can be cut out (``msg`` holds QEMU's original bytes)."""
    spans: dict[str, tuple[int, int]] = {}
    i = 0
    n = len(line)
    while i < n and line[i] in _WS:
        i += 1
    if i >= n or line[i] != "{":
        raise ValueError("not a JSON object")
    i += 1
    while True:
        while line[i] in _WS:
            i += 1
        if line[i] == "}":
            return spans
        if line[i] != '"':
            raise ValueError(f"bad member at {i}")
        key, i = json.decoder.scanstring(line, i + 1)
        while line[i] in _WS:
            i += 1
        if line[i] != ":":
            raise ValueError(f"no colon at {i}")
        i += 1
        while line[i] in _WS:
            i += 1
        _, end = _dec.raw_decode(line, i)
        spans[key] = (i, end)
        i = end
        while line[i] in _WS:
            i += 1
        if line[i] == ",":
            i += 1
        elif line[i] == "}":
            return spans
        else:
            raise ValueError(f"bad separator at {i}")


@dataclass
class Record:
    line_no: int
    line: str
    data: dict

    def __getitem__(self, k):
        return self.data[k]

    def get(self, k, default=None):
        return self.data.get(k, default)

    @property
    def kind(self) -> str:
        return self.data.get("k", "")

    @property
    def msg(self) -> Optional[dict]:
        return self.data.get("msg")

    def exact_bytes(self) -> bytes:
        """The bytes that crossed the socket for a message record."""
        d = self.data
        if "from" not in d:          # open/close/note records carry no traffic ("text" is a remark)
            return b""
        if "b64" in d:
            return base64.b64decode(d["b64"])
        if "text" in d:
            return d["text"].encode("utf-8")
        if "msg" not in d:
            return b""
        s, e = raw_members(self.line)["msg"]
        return (d.get("pre", "") + self.line[s:e] + d.get("eol", "")).encode("utf-8")


@dataclass
class Recording:
    path: Path
    header: dict
    records: list[Record] = field(default_factory=list)
    trailer: Optional[dict] = None
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    ends_with_newline: bool = True

    def messages(self, frm: Optional[str] = None, kind: Optional[str] = None, conn: Optional[int] = None) -> list[Record]:
        return [r for r in self.records if "from" in r.data
                and (frm is None or r["from"] == frm) and (kind is None or r.kind == kind)
                and (conn is None or r.get("c") == conn)]

    def events(self, name: Optional[str] = None, conn: Optional[int] = None) -> list[dict]:
        return [r.msg for r in self.messages("qemu", "event", conn) if name is None or r.get("n") == name]

    def event_names(self) -> list[str]:
        return [r.get("n") for r in self.messages("qemu", "event")]

    def commands(self, name: Optional[str] = None, conn: Optional[int] = None) -> list[Record]:
        return [r for r in self.messages("client", "command", conn) if name is None or r.get("n") == name]

    def replies(self, conn: Optional[int] = None) -> list[Record]:
        return [r for r in self.records if r.get("from") == "qemu" and r.kind in ("return", "error")
                and (conn is None or r.get("c") == conn)]

    def reply_to(self, command: Record) -> Optional[Record]:
        """The first reply after ``command`` on its connection with the same id (JSON-equal),
        or, for a command without id, the first reply without id."""
        if command.msg is None:
            return None
        has_id = "id" in command.msg
        cid = command.msg.get("id")
        after = False
        for r in self.records:
            if r is command:
                after = True
                continue
            if after and r.get("c") == command.get("c") and r.get("from") == "qemu" \
                    and r.kind in ("return", "error") and r.msg is not None \
                    and ("id" in r.msg) == has_id and r.msg.get("id") == cid:
                return r
        return None

    def connections(self) -> list[int]:
        seen: list[int] = []
        for r in self.records:
            c = r.get("c")
            if c and c not in seen:
                seen.append(c)
        return seen

    def message_connections(self) -> list[int]:
        """Connections that carried messages (a reconnect attempt may open and lose one
        before QEMU says anything)."""
        return [c for c in self.connections() if self.messages(conn=c)]

    def stream(self, frm: str, conn: Optional[int] = None) -> bytes:
        """One direction's byte stream: the concatenated exact bytes of its records."""
        return b"".join(r.exact_bytes() for r in self.messages(frm, conn=conn))


def read_qmprec(path, allow_damage: bool = True) -> Recording:
    """Parse a .qmprec with the json module, line by line. Damaged lines (not JSON) are
    collected in ``bad_lines``; with allow_damage=False they raise."""
    path = Path(path)
    raw = path.read_bytes()
    ends_nl = raw.endswith(b"\n")
    blines = raw.split(b"\n")
    if ends_nl:
        blines = blines[:-1]
    if not blines or not blines[0].strip():
        raise ValueError(f"{path}: empty")
    header = json.loads(blines[0].decode("utf-8"))
    rec = Recording(path, header, ends_with_newline=ends_nl)
    for no, bline in enumerate(blines[1:], start=2):
        try:
            line = bline.decode("utf-8").rstrip("\r")
            d = json.loads(line)
            if not isinstance(d, dict):
                raise ValueError("not an object")
        except ValueError:                       # includes UnicodeDecodeError (a torn UTF-8 sequence)
            if not allow_damage:
                raise ValueError(f"{path}:{no}: not JSON: {bline[:200]!r}")
            rec.bad_lines.append((no, bline.decode("utf-8", "replace")))
            continue
        if d.get("k") == "end":
            rec.trailer = d
            continue
        rec.records.append(Record(no, line, d))
    return rec


def check_well_formed(r: "Recording", mode: str) -> None:
    """What every clean recording satisfies."""
    assert r.header["qmprec"] == 1
    assert r.header["mode"] == mode
    assert r.header["recorder"].startswith("qmpreplay")
    assert isinstance(r.header["start_us"], int) and r.header["start"].endswith("Z")
    assert r.bad_lines == [] and r.ends_with_newline
    assert r.trailer is not None, "no trailer"
    assert r.trailer["records"] == len(r.records)
    times = [rec["t"] for rec in r.records]
    assert times == sorted(times), "record times go backwards"
    for rec in r.records:
        assert rec.kind in ("greeting", "command", "return", "error", "event", "other", "open", "close", "note")
        if "from" in rec.data:
            # writers put t, c, from, k (and n) first, the message last
            keys = list(rec.data)
            assert keys[:4] == ["t", "c", "from", "k"], keys
            if "msg" in rec.data:
                assert keys[-1] == "msg", keys
    for rec in r.messages("qemu"):
        assert rec.exact_bytes().endswith(b"\r\n"), rec.line



# --------------------------------------------------------------------------- the recorder process
class Recorder:
    """A ``qmpreplay record`` process. Build with :meth:`client` or :meth:`proxy`."""

    def __init__(self, argv: list[str], out: Path, listen: Optional[str] = None, log_dir: Optional[Path] = None):
        self.argv = argv
        self.out = Path(out)
        self.listen = listen
        self.proc: Optional[subprocess.Popen] = None
        logs = Path(log_dir) if log_dir is not None else self.out.parent   # not on the output's (maybe full) disk
        self.stderr_path = logs / (self.out.name + ".stderr")
        self.stdout_path = logs / (self.out.name + ".stdout")

    @classmethod
    def client(cls, qmp_path: str, out, *extra: str, binary: Optional[str] = None,
               log_dir: Optional[Path] = None) -> "Recorder":
        b = binary or qmpreplay_binary()
        return cls([b, "record", "--connect", f"unix:{qmp_path}", "-o", str(out), *extra], Path(out), log_dir=log_dir)

    @classmethod
    def proxy(cls, listen: str, upstream: str, out, *extra: str, binary: Optional[str] = None,
              log_dir: Optional[Path] = None) -> "Recorder":
        """``listen`` is ``unix:PATH`` or ``tcp:HOST:PORT``; ``upstream`` a QMP socket path."""
        b = binary or qmpreplay_binary()
        return cls([b, "record", "--listen", listen, "--upstream", f"unix:{upstream}", "-o", str(out), *extra],
                   Path(out), listen=listen, log_dir=log_dir)

    def start(self) -> "Recorder":
        with open(self.stdout_path, "wb") as so, open(self.stderr_path, "wb") as se:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=so, stderr=se)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def stdout(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        rc = self.proc.poll() if self.proc else None
        return f"$ {' '.join(self.argv)}\n(exit status {rc})\nstderr:\n{self.stderr[-3000:]}"

    def read(self) -> Recording:
        return read_qmprec(self.out)

    def wait_until(self, pred: Callable[[Recording], bool], timeout: float = 15.0, what: str = "condition") -> Recording:
        """Poll the output file until ``pred(recording)`` holds (torn last lines are fine)."""
        deadline = time.monotonic() + timeout
        last_err = ""
        while True:
            if self.out.exists() and self.out.stat().st_size > 0:
                try:
                    r = read_qmprec(self.out)
                    if pred(r):
                        return r
                except (ValueError, IndexError) as e:
                    last_err = str(e)
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"recorder exited while waiting for {what}:\n{self.describe()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"recording never showed {what} within {timeout}s {last_err}\n{self.describe()}")
            time.sleep(0.05)

    def wait_ready(self, replies: int = 1, timeout: float = 15.0) -> Recording:
        """Client mode: wait until ``replies`` replies are recorded (1 = negotiated)."""
        return self.wait_until(lambda r: len(r.replies()) >= replies, timeout, f"{replies} replies")

    def wait_listening(self, timeout: float = 10.0) -> None:
        """Proxy mode: wait until the listen address accepts (without connecting to it)."""
        assert self.listen
        deadline = time.monotonic() + timeout
        while not _listening(self.listen):
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"proxy exited before listening:\n{self.describe()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"proxy not listening on {self.listen} within {timeout}s\n{self.describe()}")
            time.sleep(0.02)

    def signal(self, sig: int) -> None:
        if self.running:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"recorder still running after {timeout}s:\n{self.describe()}")

    def stop(self, sig: int = _signal.SIGINT, timeout: float = 15.0) -> int:
        """Send ``sig`` (SIGINT by default) and wait for the exit status."""
        self.signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
            self.proc.wait(10)


def _listening(address: str) -> bool:
    if address.startswith("unix:"):
        path = address[5:]
        if not os.path.exists(path):
            return False
        # a listening unix socket shows in /proc/net/unix with state 01 (SS_UNCONNECTED) and flag 00010000 (listen)
        try:
            with open("/proc/net/unix") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 8 and parts[-1] == path and parts[3] == "00010000":
                        return True
        except OSError:
            return True
        return False
    if address.startswith("tcp:"):
        host, port = address[4:].rsplit(":", 1)
        want = f"{int(port):04X}"
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f)
                    for line in f:
                        parts = line.split()
                        if parts[1].endswith(":" + want) and parts[3] == "0A":  # LISTEN
                            return True
            except OSError:
                continue
        return False
    raise ValueError(f"unknown address {address}")
