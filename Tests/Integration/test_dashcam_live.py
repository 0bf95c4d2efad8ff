"""The dashcam (`record --ring`) on a real incident: the lab's guest panics under
-action panic=pause while a client polls QEMU through two recorders in a chain,

    poller -> full capture (record --listen, a plain recording) -> dashcam (record --ring 3s) -> QEMU

so both see the same bytes. The panic (GUEST_PANICKED, then STOP) must write exactly one
incident file whose header names the trigger, which validates, begins with the
connection's greeting and negotiation, and holds a contiguous run of the full capture's
messages covering the 3 s before the panic and the --after second after it: nothing lost at
the ring's edges or inside.
"""
from __future__ import annotations

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
