"""The fake QEMU against the real one: the same bytes go to qemu-system-x86_64 and to
`qmpreplay serve` of a recording captured from that QEMU, and the replies must be the same
bytes. Nothing here is compared with a text written in this file.

Normalised, and only this: event timestamps (the clock), and the return value of
`query-status` (the VM's state: the real QEMU here is `-machine none -S`, the recordings ran
a VM). Events are left out of the comparison except where a probe is about them (quit): the
recorded VM's events reach a client that does not send the recorded commands on the clock.

Two recordings are served: Recordings/lifecycle-qemu.qmprec (captured from QEMU 7.2.22 with
a VM; no schema, so a command it never shows is unknown), and one captured here through
`qmpreplay record --listen` from the real QEMU under test, with its `query-qmp-schema`.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from guestlab import qemu_binary
from guestlab.recorder import Recorder
from guestlab.serve import REC, Server

QUERY_STATUS_RETURN = re.compile(rb'"return": \{"status": "[a-z-]+", "singlestep": (true|false), "running": (true|false)\}')
TIMESTAMP = re.compile(rb'"timestamp": \{"seconds": -?\d+, "microseconds": -?\d+\}')


class RealQEMU:
    """qemu-system-x86_64 with one QMP monitor and no machine, as the probes need it."""

    def __init__(self, d: Path):
        self.path = str(d / "qemu.sock")
        self.proc = subprocess.Popen(
            [qemu_binary(), "-nodefaults", "-no-user-config", "-display", "none", "-machine", "none", "-S",
             "-qmp", f"unix:{self.path},server=on,wait=off"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("QEMU did not start")
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


class Peer:
    """A raw connection that keeps every line it reads."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(60)
        self.sock.connect(path)
        self.buf = b""
        self.eof = False

    def send(self, data: bytes):
        self.sock.sendall(data)

    def line(self, timeout: float = 60) -> bytes:
        self.sock.settimeout(timeout)
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                self.eof = True
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def until_eof(self, timeout: float = 10) -> list[bytes]:
        """The lines left, and whether the peer then closed (self.eof)."""
        out = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                out.append(self.line(max(0.01, deadline - time.monotonic())))
        except (EOFError, ConnectionResetError):
            # A QEMU that exits may reset the connection instead of closing it: either way
            # the connection has ended.
            self.eof = True
        except (socket.timeout, TimeoutError):
            pass
        return out

    def close(self):
        self.sock.close()


def is_event(line: bytes) -> bool:
    return line.startswith(b'{"timestamp": ')


def normalised(line: bytes) -> bytes:
    return TIMESTAMP.sub(b'"timestamp": T', QUERY_STATUS_RETURN.sub(b'"return": VM-STATE', line))


def session(path: str, probes: list[bytes], negotiate: bytes | None = b'{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}\n') -> list[list[bytes]]:
    """Sends each probe followed by a sentinel command and returns, per probe, the replies
    (events left out) up to the sentinel's; the greeting and negotiation come first."""
    p = Peer(path)
    out = [[p.line()]]
    if negotiate is not None:
        p.send(negotiate)
        out.append([p.line()])
    for n, probe in enumerate(probes):
        sentinel = b'{"execute":"query-status","id":"sentinel-%d"}' % n
        p.send(probe)
        p.send(sentinel + b"\n")
        got = []
        while True:
            line = p.line()
            if is_event(line):
                continue
            got.append(normalised(line))
            if b'"id": "sentinel-%d"' % n in line:
                break
        out.append(got)
    p.close()
    return out


def compare(real: list[list[bytes]], replay: list[list[bytes]], probes: list[bytes], skip_greeting: bool = False):
    start = 1 if skip_greeting else 0
    labels = ["greeting", "negotiation"] + [repr(p[:60]) for p in probes]
    labels = labels[len(labels) - len(real):] if len(labels) > len(real) else labels
    for i in range(start, len(real)):
        assert replay[i] == real[i], f"probe {labels[i] if i < len(labels) else i}:\n real QEMU: {real[i]!r}\n qmpreplay: {replay[i]!r}"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="qmpdiff-", dir="/tmp"))
    yield d
    import shutil
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def real_qemu(qemu_available, workdir):
    q = RealQEMU(workdir)
    yield q
    q.stop()


@pytest.fixture
def fresh_qemu(qemu_available, short_dir):
    """A QEMU of its own, for probes that end it (quit, SIGTERM)."""
    q = RealQEMU(short_dir)
    yield q
    q.stop()


@pytest.fixture(scope="module")
def lifecycle(real_qemu):
    """Recordings/lifecycle-qemu.qmprec, when its QEMU is the one installed."""
    p = Peer(real_qemu.path)
    greeting = p.line()
    p.close()
    time.sleep(0.1)
    recorded = next(json.loads(line)["msg"] for line in (REC / "lifecycle-qemu.qmprec").read_text().splitlines()
                    if '"k":"greeting"' in line)
    if json.loads(greeting)["QMP"]["version"] != recorded["QMP"]["version"]:
        pytest.skip(f"the installed QEMU is not the recorded one ({greeting!r})")
    return "lifecycle-qemu.qmprec"


@pytest.fixture(scope="module")
def captured(real_qemu, workdir, record_available):
    """A recording captured here from the real QEMU through the proxy recorder: negotiation,
    query-qmp-schema, query-status, query-name."""
    out = workdir / "captured.qmprec"
    listen = workdir / "proxy.sock"
    rec = Recorder.proxy(f"unix:{listen}", real_qemu.path, out, log_dir=workdir).start()
    try:
        rec.wait_listening()
        p = Peer(str(listen))
        p.line()
        for cmd in (b'{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}',
                    b'{"execute":"query-qmp-schema","id":"s"}', b'{"execute":"query-status","id":1}',
                    b'{"execute":"query-name","id":2}'):
            p.send(cmd + b"\n")
            p.line()
        p.close()
        rec.wait_until(lambda r: len(r.replies()) >= 4, what="4 replies")
    finally:
        rec.stop()
    time.sleep(0.2)  # the real QEMU takes the next client once the proxy's connection is gone
    return str(out)


# --------------------------------------------------------------------------- probes
NEGOTIATION = [
    b'{"execute":"query-status","id":"early"}\n',
    b'{"execute":"qmp_capabilities","arguments":{"enable":["bogus"]}}\n',
    b'{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}\n',
    b'{"execute":"qmp_capabilities","arguments":{"enable":["oob"],"x":1}}\n',
    b'{"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":{"n":[1,2.5,null,true]}}\n',
    b'{"execute":"qmp_capabilities"}\n',
]

BAD_INPUT = [
    b"garbage here\n", b"}\n", b"\x01\n", b"\xff\xfe\x00 binary\n", "\u00e9\n".encode(), b"01\n", b"-x\n", b"%\n",
    b"'abc\n", b'{"a": [foo]}\n', b"[}\n]\n", b'{"a" 1}\n', b'{1:2}\n', b'["\\ud800"]\n', b'["\\uFDD0"]\n',
    b'["\xed\xa0\x80"]\n', b'{"execute":"a","execute":"b"}\n', b'{"foo": 1, "id": 3}\n',
    b'{"foo":1,"bar":2,"execute":"x"}\n', b'{"bar":1,"foo":2,"execute":"x"}\n', b'{"id": 4}\n',
    b'{"execute": 5, "id": "x"}\n', b'{"execute": "stop", "arguments": []}\n',
    b'{"execute":"query-status","exec-oob":"x","id":5}\n',
]

NON_OBJECTS = [b"42\n", b'"str"\n', b"3.5\n", b"[]\n", b"[1, 2]\n", b"true\n", b"null\n", b"-7 \n"]

COMMANDS = [
    b'{"execute":"nope","id":1}\n', b'{"execute":"no-such-command"}\n',
    b'{"execute":"query-status","arguments":{"x":1},"id":2}\n',
    b'{"exec-oob":"query-status","id":3}\n',
    b"{'execute':'query-status','id':'sq'}\n", b"{'execute':'nope'}\n",
]

IDS = [b"1.50", b"1e2", b"1E+2", b"-0", b"-0.0", b"0.1", b"2.5", b"18446744073709551615", b"18446744073709551616",
       b"-9223372036854775809", b"1e999", b'"\\u00e9"', '"\u00e9"'.encode(), b'"\\b\\/\\f"', b'"\\u0000"', b"'it\\'s'",
       b'"\\ud83d\\ude00"', '"\U0001F600"'.encode(), b'"\\u007f"', b'"\\ud800"', b"null", b"true", b'[1, "x", [], {}]',
       b'{"b": 1, "a": 2, "zz": [{"y": 1, "x": 2}], "c": 3, "id": 4}', b'"__qmp#00001"']
ID_PROBES = [b'{"execute":"query-status","id":' + i + b"}\n" for i in IDS] + \
            [b'{"execute":"nope","id":' + i + b"}\n" for i in IDS[:12]]


def test_negotiation_probes(real_qemu, lifecycle, serve):
    srv = serve(lifecycle)
    real = session(real_qemu.path, NEGOTIATION, negotiate=None)
    replay = session(srv.path, NEGOTIATION, negotiate=None)
    compare(real, replay, NEGOTIATION)


@pytest.mark.parametrize("probes", [BAD_INPUT, NON_OBJECTS, COMMANDS, ID_PROBES], ids=["bad-input", "non-objects", "commands", "ids"])
def test_probes_against_lifecycle_recording(real_qemu, lifecycle, serve, probes):
    srv = serve(lifecycle)
    compare(session(real_qemu.path, probes), session(srv.path, probes), probes)


def test_exec_oob_without_oob(real_qemu, lifecycle, serve):
    probes = [b'{"exec-oob":"query-status","id":5}\n', b'{"execute":"query-status","exec-oob":"x","id":6}\n']
    srv = serve(lifecycle)
    plain = b'{"execute":"qmp_capabilities"}\n'
    compare(session(real_qemu.path, probes, plain), session(srv.path, probes, plain), probes)


SCHEMA_PROBES = [
    b'{"execute":"nope","id":1}\n', b'{"execute":"query-name","arguments":{"x":1},"id":2}\n',
    b'{"execute":"migrate-recover","arguments":{"zz":1},"id":3}\n',
    b'{"execute":"migrate-recover","arguments":{"uri":"x","zz":1},"id":4}\n',
    b'{"exec-oob":"query-name","id":5}\n', b'{"exec-oob":"query-status","id":6}\n',
    b'{"execute":"query-name","id":"\\u00e9"}\n', b'{"execute":"query-status","id":1.50}\n',
]


def test_probes_against_a_recording_with_a_schema(real_qemu, captured, serve):
    srv = serve(captured)
    probes = SCHEMA_PROBES + COMMANDS + NON_OBJECTS
    compare(session(real_qemu.path, probes), session(srv.path, probes), probes)


@pytest.mark.parametrize("size", [100_000, 8 << 20], ids=["100KB", "8MiB"])
def test_a_huge_garbage_token(real_qemu, lifecycle, serve, size):
    """QEMU answers an overlong keyword with its error message cut to 1023 bytes (and takes
    about 3 s per MiB to lex it); the replaying client is not dropped."""
    probes = [b"b" * size + b"\n"]
    srv = serve(lifecycle)
    real = session(real_qemu.path, probes)
    replay = session(srv.path, probes)
    compare(real, replay, probes)
    assert len(real[2][0]) < 2000
    assert "dropped" not in srv.stderr()


def test_quit_replies_as_qemu(fresh_qemu, lifecycle, serve):
    """quit: SHUTDOWN (host-qmp-quit), the reply, then QEMU closes the connection."""
    srv = serve(lifecycle)
    outs = []
    for path in (fresh_qemu.path, srv.path):
        p = Peer(path)
        p.line()
        p.send(b'{"execute":"qmp_capabilities"}\n')
        p.line()
        # Let the replay's clock reach nothing yet: quit at once.
        p.send(b'{"execute":"quit","id":"q"}\n')
        lines = []
        while len(lines) < 2:
            lines.append(normalised(p.line()))
        outs.append(lines)
        p.close()
    assert outs[1] == outs[0]


@pytest.mark.parametrize("how", ["quit", "sigterm"])
def test_the_connection_ends_as_qemu_ends_it(fresh_qemu, lifecycle, serve, how):
    srv = serve(lifecycle)
    outs = []
    for path, stop in ((fresh_qemu.path, lambda: fresh_qemu.proc.send_signal(signal.SIGTERM)),
                       (srv.path, lambda: srv.proc.send_signal(signal.SIGTERM))):
        p = Peer(path)
        p.line()
        p.send(b'{"execute":"qmp_capabilities"}\n')
        p.line()
        if how == "quit":
            p.send(b'{"execute":"quit"}\n')
        else:
            stop()
        lines = [normalised(x) for x in p.until_eof(5)]
        outs.append((lines, p.eof))
        p.close()
    assert outs[0][1], f"the real QEMU closed the connection: {outs}"
    assert outs[1] == outs[0]
