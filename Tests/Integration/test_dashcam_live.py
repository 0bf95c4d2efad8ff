"""The dashcam (`record --ring`) on a real incident: the lab's guest panics under
-action panic=pause while a client polls QEMU through two recorders in a chain,

    poller -> full capture (record --listen, a plain recording) -> dashcam (record --ring 3s) -> QEMU

so both see the same bytes. The panic (GUEST_PANICKED, then STOP) must write exactly one
incident file whose header names the trigger, which validates, begins with the
connection's greeting and negotiation, and holds a contiguous run of the full capture's
messages covering the 3 s before the panic and the --after second after it: nothing lost at
the ring's edges or inside.

A second test runs the dashcam in client mode on a QEMU without guest: SIGUSR1 and a
`{"trigger": ...}` on the control socket each write the next file, each with every poll of
the window before its trigger.
"""
from __future__ import annotations

import os
import signal
import threading
import time

from guestlab import scenarios as S
from guestlab.__main__ import capture_options
from guestlab.rawclient import negotiated
from guestlab.recorder import read_qmprec, qmpreplay

RING_S = 3.0
AFTER_S = 1.0
POLL_S = 0.05


class Poller(threading.Thread):
    """query-status every POLL_S on its own connection, until stopped."""

    def __init__(self, path: str):
        super().__init__(daemon=True)
        self.client = negotiated(path)
        self.halt = threading.Event()
        self.error: Exception | None = None

    def run(self):
        n = 0
        try:
            while not self.halt.is_set():
                n += 1
                self.client.send(b'{"execute": "query-status", "id": %d}\r\n' % n)
                self.client.wait_reply(n)
                time.sleep(POLL_S)
        except Exception as e:  # reported by the test
            self.error = e

    def stop(self):
        self.halt.set()
        self.join(10)
        self.client.close()


def messages(r, conn):
    return [(x["from"], x.exact_bytes(), x["t"]) for x in r.records if x.get("from") and x["c"] == conn]


def test_dashcam_keeps_the_window_before_a_guest_panic(guest_available, labs, recorders):
    lab = labs(name="dashcam", **capture_options("panic-pause"))
    cam_sock, full_sock = lab.dir / "cam.sock", lab.dir / "full.sock"
    incidents = recorders.out_dir / "incidents"
    cam = recorders.proxy(f"unix:{cam_sock}", lab.qmp_path("rec"), incidents,
                          "--ring", f"{RING_S}s", "--after", f"{AFTER_S}s")
    cam.start()
    cam.wait_listening()
    full = recorders.proxy(f"unix:{full_sock}", str(cam_sock), recorders.out_dir / "full.qmprec", "--once")
    full.start()
    full.wait_listening()

    poller = Poller(str(full_sock))
    poller.start()
    time.sleep(RING_S + 2)                  # the ring is full and has scrolled
    ctl = lab.qmp("ctl")
    try:
        r = S.panic(lab, ctl)
        assert r.info["action"] == "pause", r.info
    finally:
        ctl.close()
    time.sleep(AFTER_S + 1)
    poller.stop()
    assert poller.error is None, repr(poller.error)
    assert full.wait(15) == 0, full.describe()
    assert cam.stop(signal.SIGINT) == 0, cam.describe()

    files = sorted(incidents.glob("*.qmprec"))
    assert len(files) == 1, (files, cam.stderr)
    inc = read_qmprec(files[0])
    assert inc.trailer is not None and not inc.bad_lines, inc.bad_lines
    trig = inc.header["trigger"]
    assert (trig["source"], trig["name"]) == ("event", "GUEST_PANICKED"), trig
    assert qmpreplay("validate", str(files[0])).returncode == 0

    whole = read_qmprec(recorders.out_dir / "full.qmprec")
    # The poller's connection: 1 in the full capture; in the dashcam the one that carried
    # the GUEST_PANICKED (the full capture's version probe came first).
    conn = next(x["c"] for x in inc.records if x.get("n") == "GUEST_PANICKED")
    want = messages(whole, 1)
    got = messages(inc, conn)
    # Context: the greeting and the negotiation, however long ago they came.
    assert [m[:2] for m in got[:3]] == [m[:2] for m in want[:3]]
    assert got[0][1].startswith(b'{"QMP"')
    window = [m[:2] for m in got[3:]]
    full_bytes = [m[:2] for m in want]
    start = full_bytes.index(window[0])
    # Contiguous: every message between the window's first and last, in order.
    assert full_bytes[start:start + len(window)] == window
    # The edges, on the full capture's clock (its receive times differ from the dashcam's
    # by the forwarding time, well under the 0.2 s slack).
    panic_t = next(t for (_, b, t) in want if b'"GUEST_PANICKED"' in b)
    first_t = want[start][2]
    last_t = want[start + len(window) - 1][2]
    assert first_t <= panic_t - (RING_S - 0.2) * 1e9, (first_t, panic_t)
    assert last_t >= panic_t + (AFTER_S - 0.2) * 1e9, (last_t, panic_t)
    # ... and what lies before the window is older than the ring's edge.
    assert want[start - 1][2] < panic_t - (RING_S - 0.2) * 1e9, (want[start - 1][2], panic_t)


def control(path, request: dict) -> dict:
    import json
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(path))
    s.sendall((json.dumps(request) + "\n").encode())
    s.shutdown(socket.SHUT_WR)
    answer = s.makefile().read()
    s.close()
    return json.loads(answer)


def test_dashcam_client_mode_signal_and_control_socket(lab, recorders, short_dir):
    """Client mode with its own polls: SIGUSR1 and a control-socket request each write the
    next incident file; each holds every poll of the 2 s before its trigger (the poll ids
    are consecutive: QEMU's own sequence), and the status request reports the ring."""
    incidents = recorders.out_dir / "incidents"
    ctl = f"{short_dir}/cam.ctl"
    cam = recorders.client(lab.qmp_path("rec"), incidents, "--ring", "2s", "--after", "500ms", "--no-init",
                           "--poll", "query-status@100ms", "--ring-control", ctl)
    cam.start()
    deadline = time.monotonic() + 10
    while not os.path.exists(ctl) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(3)
    cam.signal(signal.SIGUSR1)
    time.sleep(1.5)
    assert control(ctl, {"trigger": "operator"}) == {"return": {"triggered": "operator"}}
    time.sleep(1.5)
    status = control(ctl, {"status": None})["return"]
    assert status["incidents"] == 2 and status["ring_records"] > 0, status
    assert "error" in control(ctl, {"bogus": 1})
    assert cam.stop(signal.SIGINT) == 0, cam.describe()

    files = sorted(incidents.glob("*.qmprec"))
    assert [f.name.endswith(f"-00{i}.qmprec") for i, f in enumerate(files, 1)] == [True, True], files
    for f, (source, name, detail) in zip(files, [("signal", "SIGUSR1", "SIGUSR1 received"), ("control", "control", "operator")]):
        inc = read_qmprec(f)
        trig = inc.header["trigger"]
        assert (trig["source"], trig["name"], trig["detail"]) == (source, name, detail), trig
        assert qmpreplay("validate", str(f)).returncode == 0, f
        polls = [x for x in inc.records if x.get("n") == "query-status"]
        ids = [int(x.msg["id"].rsplit("-", 1)[1]) for x in polls]
        assert ids == list(range(ids[0], ids[0] + len(ids))), ids
        before = [x["t"] for x in polls if x["t"] <= trig["t"]]
        assert before[0] <= trig["t"] - 1.8e9 and before[-1] >= trig["t"] - 0.2e9, (before[0], before[-1], trig["t"])
