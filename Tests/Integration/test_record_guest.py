"""Recording a real guest: balloon, RTC and rx-filter events made by the lab's Linux guest
under TCG, recorded by `qmpreplay record` with the right data.

One guest boots for the module (two virtio-net NICs, a balloon). Balloon and RTC are
recorded in client mode while the test drives QEMU on the "ctl" monitor; rx-filter is
recorded through the proxy, so the query-rx-filter commands that re-arm the per-NIC
latch are in the recording too."""
from __future__ import annotations

import signal
import time

from guestlab import scenarios as S
from guestlab.qmp import QMP
from guestlab.recorder import check_well_formed, qmpreplay


def record_client(recorders, guest_lab, name):
    rec = recorders.client(guest_lab.qmp_path("rec"), recorders.out_dir / f"{name}.qmprec", "--init", "query-status")
    rec.start()
    rec.wait_ready(replies=2)
    return rec


def test_balloon_recorded(guest_lab, guest_ctl, recorders):
    rec = record_client(recorders, guest_lab, "balloon")
    result = S.balloon(guest_lab, guest_ctl)
    want = [e for e in result.events if e["event"] == "BALLOON_CHANGE"]
    rec.wait_until(lambda r: len(r.events("BALLOON_CHANGE")) >= len(want), what=f"{len(want)} BALLOON_CHANGE")
    time.sleep(1.2)                      # nothing else may trail in after the last one
    assert rec.stop(signal.SIGINT) == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "client")
    got = r.events("BALLOON_CHANGE")
    assert got == want                   # same values and QEMU timestamps as the ctl client saw
    actual = [e["data"]["actual"] for e in got]
    assert actual[-1] == result.info["initial"]
    for mib in (192, 160, 224, 208):
        assert mib << 20 in actual
    assert all(a % 4096 == 0 for a in actual)
    assert qmpreplay("validate", str(r.path)).returncode == 0


def test_rtc_recorded(guest_lab, guest_ctl, recorders):
    rec = record_client(recorders, guest_lab, "rtc")
    result = S.rtc(guest_lab, guest_ctl)
    rec.wait_until(lambda r: len(r.events("RTC_CHANGE")) >= 3, what="3 RTC_CHANGE")
    assert rec.stop(signal.SIGINT) == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "client")
    got = r.events("RTC_CHANGE")
    assert got == [e for e in result.events if e["event"] == "RTC_CHANGE"]
    offs = [e["data"]["offset"] for e in got]
    assert abs(offs[0] - 3600) <= 2 and abs(offs[1] - 3620) <= 2 and abs(offs[2]) <= 2, offs
    assert all(e["data"]["qom-path"].startswith("/machine/") for e in got)
    assert qmpreplay("validate", str(r.path)).returncode == 0


def test_rx_filter_recorded_through_proxy(guest_lab, guest_ctl, recorders):
    listen = guest_lab.dir / "proxy.sock"
    rec = recorders.proxy(f"unix:{listen}", guest_lab.qmp_path("rec"), recorders.out_dir / "rx.qmprec", "--once")
    rec.start()
    rec.wait_listening()
    q = QMP(str(listen), name="libvirt-like")
    try:
        result = S.rx_filter(guest_lab, q, hidden=guest_ctl)   # ctl: the unrecorded client
    finally:
        q.close()
    assert rec.wait(15) == 0, rec.describe()
    r = rec.read()
    check_well_formed(r, "proxy")
    want = [e for e in result.events if e["event"] == "NIC_RX_FILTER_CHANGED"]
    assert r.events("NIC_RX_FILTER_CHANGED") == want
    assert [e["data"]["name"] for e in want] == ["net0", "net0", "net1", "net1", "net0"]
    # Latch analysis on the recording alone: every event after a NIC's first needs a
    # recorded query-rx-filter (for that NIC or for all) since the NIC's previous event.
    # Exactly one lacks it: the one re-armed by the unrecorded ctl client.
    last_event: dict = {}
    queried: dict = {}
    unexplained = []
    for x in r.records:
        if x.kind == "command" and x.get("n") == "query-rx-filter":
            name = (x.msg.get("arguments") or {}).get("name")
            for nic in ("net0", "net1"):
                if name in (None, nic):
                    queried[nic] = True
        elif x.kind == "event" and x.get("n") == "NIC_RX_FILTER_CHANGED":
            nic = x.msg["data"]["name"]
            if nic in last_event and not queried.get(nic):
                unexplained.append(x.line_no)
            last_event[nic] = x.line_no
            queried[nic] = False
    assert len(unexplained) == 1, unexplained
    v = qmpreplay("validate", str(r.path))
    assert v.returncode in (0, 1), v.stderr_text
