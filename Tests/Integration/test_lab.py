"""The guest lab itself: QEMU starts, the guest boots and runs commands, and every
scenario makes QEMU emit the events it promises (checked with qemu.qmp alone, no
recorder). These run wherever QEMU and the lab kernel are present."""
from __future__ import annotations

import time

import pytest

from guestlab import GuestCommandError
from guestlab import scenarios as S


def test_qemu_greets_and_negotiates(lab):
    t0 = time.monotonic()
    q = lab.qmp("ctl")
    assert time.monotonic() - t0 < 5
    g = q.greeting["QMP"]
    assert "oob" in g["capabilities"]
    v = q.cmd("query-version")["qemu"]
    assert (g["version"]["qemu"]["major"], g["version"]["qemu"]["minor"]) == (v["major"], v["minor"])
    assert q.cmd("query-status")["status"] == "running"


def test_lifecycle_scenario(lab):
    q = lab.qmp("ctl")
    r = S.lifecycle(lab, q)
    assert r.names() == ["STOP", "RESUME", "RESET", "POWERDOWN", "SHUTDOWN"]
    assert "data" not in r.events[0] and "data" not in r.events[1]
    assert r.events[2]["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
    assert r.events[4]["data"] == {"guest": False, "reason": "host-qmp-quit"}
    assert r.info["exit_status"] == 0


def test_block_jobs_scenario(labs):
    lab = labs(disks=S.block_job_disks())
    r = S.block_jobs(lab, lab.qmp("ctl"))
    st = r.info["statuses"]
    assert st["stream0"] == ["created", "running", "waiting", "pending", "concluded", "null"]
    assert st["mirror0"][:3] == ["created", "running", "paused"] and st["mirror0"][-3:] == ["aborting", "concluded", "null"]
    assert "ready" in st["mirror1"] and st["mirror1"][-1] == "null"
    assert r.count("BLOCK_JOB_CANCELLED") == 1 and r.count("BLOCK_JOB_READY") == 1
    assert r.count("BLOCK_JOB_COMPLETED") == 2
    c = r.info["mirror0_cancelled"]
    assert 0 < c["offset"] < c["len"]


def test_vnc_scenario(labs):
    lab = labs(vnc=True)
    r = S.vnc(lab, lab.qmp("ctl"), sessions=2)
    assert r.names() == ["VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED"] * 2
    assert r.events[0]["data"]["server"]["auth"] == "none"


def test_vnc_tcp_names_the_client(labs):
    lab = labs(vnc="tcp")
    r = S.vnc(lab, lab.qmp("ctl"))
    client = r.events[0]["data"]["client"]
    assert client["family"] == "ipv4" and client["host"] == "127.0.0.1" and client["service"].isdigit()


def test_cdrom_scenario(labs):
    lab = labs(cdrom=True)
    r = S.cdrom(lab, lab.qmp("ctl"))
    assert [e["data"]["tray-open"] for e in r.events] == [True, False]


# --------------------------------------------------------------------------- with the guest
def test_guest_console(guest_lab):
    g = guest_lab.guest
    assert g.run("echo hello; echo err >&2") == "hello\nerr\n"
    assert g.run("cat /proc/cmdline").startswith("console=ttyS0")
    status, out = g.run_status("echo 'quote\"s and $HOME'; false")
    assert (status, out) == (1, 'quote"s and $HOME\n')
    assert g.run('echo "$HOME"') == "/root\n"
    with pytest.raises(GuestCommandError):
        g.run("exit 3")
    assert set(g.run("ls /sys/class/net").split()) >= {"eth0", "eth1", "lo"}
    assert "virtio_balloon" in g.run("lsmod")
    assert guest_lab.boot_seconds is not None and guest_lab.boot_seconds < 60


def test_balloon_scenario(guest_lab, guest_ctl):
    r = S.balloon(guest_lab, guest_ctl)
    actual = [e["data"]["actual"] for e in r.events]
    assert actual[-1] == r.info["initial"]
    for mib in (192, 160, 224, 208):        # the single targets and the burst's last one
        assert mib << 20 in actual
    # throttling: the five-target burst (< 1 s) arrives as a few events, not one per target
    assert 1 <= r.info["burst_events"] <= 3


def test_rtc_scenario(guest_lab, guest_ctl):
    r = S.rtc(guest_lab, guest_ctl)
    offs = r.info["offsets"]
    assert len(offs) == 3
    assert abs(offs[0] - 3600) <= 2 and abs(offs[1] - 3620) <= 2 and abs(offs[2]) <= 2
    assert all("qom-path" in e["data"] for e in r.events if e["event"] == "RTC_CHANGE")


def test_rx_filter_scenario(guest_lab, guest_ctl):
    hidden = guest_lab.qmp("rec")
    try:
        r = S.rx_filter(guest_lab, guest_ctl, hidden=hidden)
    finally:
        hidden.close()
    names = [e["data"]["name"] for e in r.events if e["event"] == "NIC_RX_FILTER_CHANGED"]
    assert names == ["net0", "net0", "net1", "net1", "net0"]
    assert all(e["data"]["path"] == f"/machine/peripheral/{e['data']['name']}/virtio-backend" for e in r.events)


def test_vserport_and_suspend(labs, guest_available):
    lab = labs(guest=True, virtio_serial=True)
    q = lab.qmp("ctl")
    r = S.vserport(lab, q)
    assert [e["data"]["open"] for e in r.events] == [True, False]
    r = S.suspend(lab, q)
    assert r.names() == ["SUSPEND", "WAKEUP"]
    assert lab.guest.run("echo back") == "back\n"


def test_guest_reset_then_panic(labs, guest_available):
    lab = labs(guest=True, pvpanic=True, panic_action="pause")
    q = lab.qmp("ctl")
    r = S.guest_reset(lab, q)
    assert 1 <= r.info["resets"] <= 3
    r = S.panic(lab, q)
    assert r.names()[:2] == ["GUEST_PANICKED", "STOP"] and r.info["action"] == "pause"


def test_guest_panic_default_action_and_poweroff(labs, guest_available):
    lab = labs(guest=True, pvpanic=True)
    r = S.panic(lab, lab.qmp("ctl"))
    assert r.info["action"] == "poweroff" and r.names()[:2] == ["GUEST_PANICKED", "SHUTDOWN"]
    assert r.info["exit_status"] == 0
    lab2 = labs(guest=True)
    r = S.guest_poweroff(lab2, lab2.qmp("ctl"))
    assert r.events[0]["data"] == {"guest": True, "reason": "guest-shutdown"}
    assert r.info["exit_status"] == 0


def test_kill_and_logs(labs):
    lab = labs()
    lab.kill()
    assert not lab.running
    assert "qemu-system-x86_64" in lab.logs()
