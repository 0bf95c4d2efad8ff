"""Scenarios: sequences of host QMP commands and guest actions that make QEMU emit known
events. Each takes the Lab and the QMP client that drives it (``q``: a guestlab.qmp.QMP,
connected to a lab monitor directly or through ``qmpreplay record --listen``), waits for
the events it causes, checks them, and returns a :class:`Result` with the events ``q``
received and what was expected. A failed expectation raises ScenarioError.

Lab requirements (see LAB_OPTIONS for ready-made Lab keyword arguments):

  lifecycle   no guest needed                                    STOP RESUME RESET POWERDOWN [SHUTDOWN]
  balloon     guest, balloon=True                                BALLOON_CHANGE (targets + a burst < 1 s)
  rtc         guest                                              RTC_CHANGE (offsets +3600, +3620, ~0)
  rx_filter   guest, nics=["net0", "net1"]                       NIC_RX_FILTER_CHANGED (latch on/off)
  block_jobs  disks=block_job_disks()                            JOB_STATUS_CHANGE BLOCK_JOB_{COMPLETED,CANCELLED,READY}
  vnc         vnc=True                                           VNC_CONNECTED VNC_INITIALIZED VNC_DISCONNECTED
  cdrom       cdrom=True                                         DEVICE_TRAY_MOVED (open, close)
  panic       guest, pvpanic=True [, panic_action="pause"]       GUEST_PANICKED + SHUTDOWN (or STOP when paused)
  suspend     guest                                              SUSPEND WAKEUP
  guest_reset guest                                              RESET guest-reset
  guest_poweroff guest                                           SHUTDOWN guest-shutdown (QEMU exits)
  vserport    guest, virtio_serial=True                          VSERPORT_CHANGE open true/false
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from .lab import Disk, Lab
from .rfb import RFBClient

MiB = 1 << 20


class ScenarioError(AssertionError):
    pass


@dataclass
class Result:
    name: str
    events: list = field(default_factory=list)      # events q received during the scenario
    expected: list = field(default_factory=list)    # (event name, data subset or None), in order
    info: dict = field(default_factory=dict)

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]

    def count(self, name: str) -> int:
        return sum(1 for e in self.events if e["event"] == name)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ScenarioError(msg)


def _subset(data: Optional[dict], want: Optional[dict]) -> bool:
    if want is None:
        return True
    return data is not None and all(data.get(k) == v for k, v in want.items())


def expect(q, start: int, name: str, data: Optional[dict] = None, timeout: float = 10.0) -> dict:
    """Wait for an event after ``start`` whose data contains ``data``."""
    return q.wait_event(name, timeout=timeout, since=start, where=lambda e: _subset(e.get("data"), data))


def expect_none(q, start: int, name: str, within: float) -> None:
    ev = q.events_since(start, name)
    if not ev:
        try:
            ev = [q.wait_event(name, timeout=within, since=start)]
        except TimeoutError:
            return
    raise ScenarioError(f"unexpected {name}: {ev}")


# --------------------------------------------------------------------------- lifecycle
def lifecycle(lab: Lab, q, quit: bool = True, powerdown: bool = True) -> Result:
    """query-status, stop, cont, system_reset, system_powerdown, quit (no guest needed)."""
    r = Result("lifecycle")
    start = q.mark()
    _check(q.cmd("query-status")["status"] in ("running", "prelaunch"), "QEMU is not running")
    q.cmd("stop"); expect(q, start, "STOP"); r.expected.append(("STOP", None))
    _check(q.cmd("query-status")["status"] == "paused", "not paused after stop")
    m = q.mark(); q.cmd("cont"); expect(q, m, "RESUME"); r.expected.append(("RESUME", None))
    reset = {"guest": False, "reason": "host-qmp-system-reset"}
    m = q.mark(); q.cmd("system_reset"); expect(q, m, "RESET", reset); r.expected.append(("RESET", reset))
    if powerdown:
        m = q.mark(); q.cmd("system_powerdown"); expect(q, m, "POWERDOWN"); r.expected.append(("POWERDOWN", None))
    if quit:
        m = q.mark()
        q.quit()
        shutdown = {"guest": False, "reason": "host-qmp-quit"}
        try:
            expect(q, m, "SHUTDOWN", shutdown, timeout=5)
        except TimeoutError:
            pass  # the client may see the connection close first; the recording is what matters
        r.expected.append(("SHUTDOWN", shutdown))
        r.info["exit_status"] = lab.wait_exit(10)
    r.events = q.events_since(start)
    return r


# --------------------------------------------------------------------------- balloon
def balloon(lab: Lab, q, targets_mib=(192, 160, 224), burst_mib=(200, 184, 176, 168, 208),
            restore: bool = True) -> Result:
    """Balloon targets one at a time (each waits for BALLOON_CHANGE with that value), then
    a burst of targets within 1 s (throttling: intermediate values are lost, the last one
    arrives within about 1 s), then back to the full size."""
    r = Result("balloon")
    start = q.mark()
    full = q.cmd("query-balloon")["actual"]
    r.info["initial"] = full
    for mib in targets_mib:
        m = q.mark()
        q.cmd("balloon", value=mib * MiB)
        expect(q, m, "BALLOON_CHANGE", {"actual": mib * MiB}, timeout=15)
        _check(q.cmd("query-balloon")["actual"] == mib * MiB, f"query-balloon != {mib} MiB")
        r.expected.append(("BALLOON_CHANGE", {"actual": mib * MiB}))
    time.sleep(1.1)  # let the throttle window close so the burst starts a fresh one
    m = q.mark()
    t0 = time.monotonic()
    for mib in burst_mib:
        q.cmd("balloon", value=mib * MiB)
        time.sleep(0.15)
    r.info["burst_seconds"] = round(time.monotonic() - t0, 3)
    _check(r.info["burst_seconds"] < 1.0, f"burst took {r.info['burst_seconds']} s")
    last = burst_mib[-1] * MiB
    expect(q, m, "BALLOON_CHANGE", {"actual": last}, timeout=15)
    r.expected.append(("BALLOON_CHANGE", {"actual": last}))
    r.info["burst_events"] = len(q.events_since(m, "BALLOON_CHANGE"))
    if restore:
        time.sleep(1.1)
        m = q.mark()
        q.cmd("balloon", value=full)
        expect(q, m, "BALLOON_CHANGE", {"actual": full}, timeout=15)
        r.expected.append(("BALLOON_CHANGE", {"actual": full}))
    r.info["targets"] = [mib * MiB for mib in list(targets_mib) + list(burst_mib)] + ([full] if restore else [])
    r.events = q.events_since(start)
    return r


# --------------------------------------------------------------------------- rtc
def rtc(lab: Lab, q, steps=(3600, 20), restore: bool = True) -> Result:
    """The guest moves its clock by each step (date -s) and writes the RTC (hwclock -w -u).
    RTC_CHANGE carries the total offset from the host clock: 3600, then 3620, then ~0."""
    assert lab.guest is not None, "rtc needs a guest"
    r = Result("rtc")
    start = q.mark()
    total = 0
    moves = list(steps) + ([-sum(steps)] if restore else [])
    for i, step in enumerate(moves):
        total += step
        m = q.mark()
        lab.guest.run(f"date -s @$(( $(date +%s) + ({step}) )) >/dev/null && hwclock -w -u")
        ev = expect(q, m, "RTC_CHANGE", timeout=10)
        off = ev["data"]["offset"]
        _check(abs(off - total) <= 2, f"RTC_CHANGE offset {off}, expected about {total}")
        r.expected.append(("RTC_CHANGE", {"offset": total}))
        if i + 1 < len(moves):
            time.sleep(1.05)  # one event per throttle window, so each step shows
    r.info["offsets"] = [e["data"]["offset"] for e in q.events_since(start, "RTC_CHANGE")]
    r.events = q.events_since(start)
    return r


# --------------------------------------------------------------------------- rx-filter
def guest_iface(lab: Lab, nic: str) -> str:
    mac = lab.nic_mac(nic)
    out = lab.guest.run(f'for i in /sys/class/net/*; do [ "$(cat $i/address)" = "{mac}" ] && echo ${{i##*/}}; done; true')
    name = out.strip()
    _check(bool(name), f"no guest interface with MAC {mac}")
    return name


def rx_filter(lab: Lab, q, nics=("net0", "net1"), hidden=None, quiet: float = 0.8) -> Result:
    """NIC_RX_FILTER_CHANGED on two virtio-net NICs and the per-NIC latch:
    re-arm all (query-rx-filter), promisc on net0 -> event; allmulti on net0 -> none (latched);
    query-rx-filter net0 -> promisc off -> event; IPv6 address on net1 -> event; MAC change
    on net1 -> none; query-rx-filter net1 -> allmulti on net1 -> event. With ``hidden`` (a
    second QMP client, e.g. on the lab's ctl monitor while q is recorded) that client re-arms
    net0 and the guest changes it again: an event with no query by ``q`` since net0's last
    one. Finally query-rx-filter (all) re-arms both."""
    assert lab.guest is not None, "rx_filter needs a guest"
    n0, n1 = nics
    a, b = guest_iface(lab, n0), guest_iface(lab, n1)
    r = Result("rx_filter", info={"ifaces": {n0: a, n1: b}})
    g = lab.guest
    start = q.mark()

    def changed(nic: str, action: str) -> None:
        m = q.mark()
        g.run(action)
        expect(q, m, "NIC_RX_FILTER_CHANGED", {"name": nic}, timeout=10)
        r.expected.append(("NIC_RX_FILTER_CHANGED", {"name": nic}))

    def silent(action: str) -> None:
        m = q.mark()
        g.run(action)
        expect_none(q, m, "NIC_RX_FILTER_CHANGED", quiet)

    q.cmd("query-rx-filter")                               # re-arm both (boot disarmed them)
    changed(n0, f"ip link set {a} promisc on")
    silent(f"ifconfig {a} allmulti")
    f0 = q.cmd("query-rx-filter", name=n0)[0]
    _check(f0["promiscuous"] is True, f"{n0} not promiscuous: {f0}")
    changed(n0, f"ip link set {a} promisc off")
    changed(n1, f"ip -6 addr add fd00:6c61:6200::1/64 dev {b}")
    silent(f"ip link set {b} address 52:54:00:12:34:22")
    f1 = q.cmd("query-rx-filter", name=n1)[0]                     # re-arms net1 only
    _check(f1["main-mac"] == "52:54:00:12:34:22", f"{n1} MAC not updated: {f1}")
    changed(n1, f"ifconfig {b} allmulti")
    if hidden is not None:
        hidden.cmd("query-rx-filter", name=n0)              # an unrecorded client re-arms net0
        changed(n0, f"ifconfig {a} -allmulti")
        r.info["hidden_query"] = True
    # leave both armed and the MAC restored for later scenarios
    g.run(f"ip link set {b} address {lab.nic_mac(n1)}; ifconfig {b} -allmulti; "
          f"ip -6 addr del fd00:6c61:6200::1/64 dev {b}; ifconfig {a} -allmulti")
    time.sleep(0.2)
    q.cmd("query-rx-filter")
    r.events = q.events_since(start)
    r.info["per_nic"] = {n: sum(1 for e in r.events if e["event"] == "NIC_RX_FILTER_CHANGED"
                                and e["data"].get("name") == n) for n in nics}
    return r


# --------------------------------------------------------------------------- block jobs
def block_job_disks() -> list[Disk]:
    """base (24 MiB of data) <- top (empty overlay, streamed); src (24 MiB of data, mirrored)."""
    base = Disk("base", size="32M", fill="0x5a 0 24M")
    return [base, Disk("top", size="32M", backing=base), Disk("src", size="32M", fill="0xa5 0 24M")]


def _job_done(q, since: int, job: str, timeout: float = 30) -> None:
    expect(q, since, "JOB_STATUS_CHANGE", {"id": job, "status": "null"}, timeout=timeout)


def block_jobs(lab: Lab, q) -> Result:
    """block-stream top (completes); blockdev-mirror src -> tgt0 throttled to 1 MiB/s,
    paused, resumed and cancelled mid-way; blockdev-mirror src -> tgt1 to READY, then
    block-job-complete. Targets are created with qemu-img and added with blockdev-add."""
    from .lab import qemu_img
    import subprocess
    r = Result("block_jobs")
    start = q.mark()
    # 1. stream
    q.cmd("block-stream", job_id="stream0", device="top")
    expect(q, start, "BLOCK_JOB_COMPLETED", {"device": "stream0", "type": "stream"}, timeout=30)
    _job_done(q, start, "stream0")
    r.expected += [("JOB_STATUS_CHANGE", {"id": "stream0", "status": "created"}),
                   ("BLOCK_JOB_COMPLETED", {"device": "stream0"}),
                   ("JOB_STATUS_CHANGE", {"id": "stream0", "status": "null"})]
    # targets
    for t in ("tgt0", "tgt1"):
        path = lab.dir / f"{t}.qcow2"
        subprocess.run([qemu_img(), "create", "-q", "-f", "qcow2", str(path), "32M"], check=True)
        q.cmd("blockdev-add", {"driver": "qcow2", "node-name": t,
                               "file": {"driver": "file", "filename": str(path)}})
    # 2. throttled mirror, paused/resumed, cancelled mid-way
    m = q.mark()
    q.cmd("blockdev-mirror", job_id="mirror0", device="src", target="tgt0", sync="full",
          speed=1 * MiB, granularity=65536, buf_size=262144)
    expect(q, m, "JOB_STATUS_CHANGE", {"id": "mirror0", "status": "running"})
    time.sleep(0.3)
    q.cmd("block-job-pause", device="mirror0")
    expect(q, m, "JOB_STATUS_CHANGE", {"id": "mirror0", "status": "paused"})
    q.cmd("block-job-resume", device="mirror0")
    time.sleep(0.3)
    jobs = q.cmd("query-block-jobs")
    j = next(j for j in jobs if j["device"] == "mirror0")
    r.info["mirror0_at_cancel"] = {"offset": j["offset"], "len": j["len"]}
    _check(j["offset"] < j["len"], f"mirror0 finished before it could be cancelled: {j}")
    q.cmd("block-job-cancel", device="mirror0")
    ev = expect(q, m, "BLOCK_JOB_CANCELLED", {"device": "mirror0"}, timeout=30)
    _job_done(q, m, "mirror0")
    r.info["mirror0_cancelled"] = ev["data"]
    r.expected += [("JOB_STATUS_CHANGE", {"id": "mirror0", "status": "paused"}),
                   ("BLOCK_JOB_CANCELLED", {"device": "mirror0"})]
    # 3. mirror to READY, then complete
    m = q.mark()
    q.cmd("blockdev-mirror", job_id="mirror1", device="src", target="tgt1", sync="full")
    expect(q, m, "BLOCK_JOB_READY", {"device": "mirror1"}, timeout=30)
    q.cmd("block-job-complete", device="mirror1")
    expect(q, m, "BLOCK_JOB_COMPLETED", {"device": "mirror1"}, timeout=30)
    _job_done(q, m, "mirror1")
    r.expected += [("BLOCK_JOB_READY", {"device": "mirror1"}), ("BLOCK_JOB_COMPLETED", {"device": "mirror1"})]
    r.events = q.events_since(start)
    r.info["statuses"] = {job: [e["data"]["status"] for e in r.events
                                if e["event"] == "JOB_STATUS_CHANGE" and e["data"]["id"] == job]
                          for job in ("stream0", "mirror0", "mirror1")}
    return r


# --------------------------------------------------------------------------- vnc
def vnc(lab: Lab, q, sessions: int = 1) -> Result:
    """RFB handshakes (security None) on the lab's VNC socket, with query-vnc while connected."""
    r = Result("vnc")
    start = q.mark()
    for _ in range(sessions):
        m = q.mark()
        with RFBClient(lab.vnc_address) as c:
            init = c.handshake()
            r.info["server_init"] = {"width": init.width, "height": init.height, "name": init.name}
            expect(q, m, "VNC_INITIALIZED")
            clients = q.cmd("query-vnc")["clients"]
            _check(len(clients) == 1, f"query-vnc clients: {clients}")
        expect(q, m, "VNC_DISCONNECTED")
        r.expected += [("VNC_CONNECTED", None), ("VNC_INITIALIZED", None), ("VNC_DISCONNECTED", None)]
    r.events = q.events_since(start)
    return r


# --------------------------------------------------------------------------- others
def cdrom(lab: Lab, q) -> Result:
    """Open and close the empty cdrom tray (DEVICE_TRAY_MOVED tray-open true, then false)."""
    r = Result("cdrom")
    start = q.mark()
    q.cmd("blockdev-open-tray", id="cdrom0")
    expect(q, start, "DEVICE_TRAY_MOVED", {"id": "cdrom0", "tray-open": True})
    m = q.mark()
    q.cmd("blockdev-close-tray", id="cdrom0")
    expect(q, m, "DEVICE_TRAY_MOVED", {"id": "cdrom0", "tray-open": False})
    r.expected += [("DEVICE_TRAY_MOVED", {"tray-open": True}), ("DEVICE_TRAY_MOVED", {"tray-open": False})]
    r.events = q.events_since(start)
    return r


def panic(lab: Lab, q) -> Result:
    """The guest panics (sysrq c) and pvpanic reports it. QEMU 7.2's default panic action is
    poweroff: GUEST_PANICKED action=poweroff, SHUTDOWN reason=guest-panic, QEMU exits. With
    Lab(panic_action="pause"): GUEST_PANICKED action=pause, STOP, status guest-panicked."""
    r = Result("panic")
    start = q.mark()
    lab.guest.start("echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger")
    ev = expect(q, start, "GUEST_PANICKED", timeout=20)
    action = ev["data"].get("action")
    r.info["action"] = action
    r.expected.append(("GUEST_PANICKED", {"action": action}))
    if action == "pause":
        expect(q, start, "STOP")
        r.expected.append(("STOP", None))
        _check(q.cmd("query-status")["status"] == "guest-panicked", "status is not guest-panicked")
    elif action == "poweroff":
        data = {"guest": True, "reason": "guest-panic"}
        expect(q, start, "SHUTDOWN", data)
        r.expected.append(("SHUTDOWN", data))
        r.info["exit_status"] = lab.wait_exit(10)
    r.events = q.events_since(start)
    return r


def suspend(lab: Lab, q) -> Result:
    """Guest suspends to RAM (S3); host wakes it with system_wakeup."""
    r = Result("suspend")
    start = q.mark()
    cid = lab.guest.start("echo mem > /sys/power/state")
    expect(q, start, "SUSPEND", timeout=20)
    _check(q.cmd("query-status")["status"] == "suspended", "not suspended")
    q.cmd("system_wakeup")
    expect(q, start, "WAKEUP", timeout=20)
    lab.guest.wait(cid, timeout=30)
    r.expected += [("SUSPEND", None), ("WAKEUP", None)]
    r.events = q.events_since(start)
    return r


def guest_reset(lab: Lab, q) -> Result:
    """reboot -f in the guest: RESET guest=true reason guest-reset; the guest boots again."""
    r = Result("guest_reset")
    start = q.mark()
    since = lab.guest.mark()
    lab.guest.start("reboot -f")
    expect(q, start, "RESET", {"guest": True, "reason": "guest-reset"}, timeout=20)
    lab.guest.wait_ready(90, since=since)
    # Linux tries several reset methods in a row: 1 to 3 RESET events for one reboot here.
    r.info["resets"] = len(q.events_since(start, "RESET"))
    r.expected.append(("RESET", {"guest": True, "reason": "guest-reset"}))
    r.events = q.events_since(start)
    return r


def guest_poweroff(lab: Lab, q) -> Result:
    """poweroff -f in the guest: SHUTDOWN guest=true reason guest-shutdown; QEMU exits
    (unless the lab has no_shutdown)."""
    r = Result("guest_poweroff")
    start = q.mark()
    lab.guest.start("poweroff -f")
    data = {"guest": True, "reason": "guest-shutdown"}
    expect(q, start, "SHUTDOWN", data, timeout=20)
    r.expected.append(("SHUTDOWN", data))
    if not lab.no_shutdown:
        r.info["exit_status"] = lab.wait_exit(10)
    r.events = q.events_since(start)
    return r


def vserport(lab: Lab, q) -> Result:
    """The guest opens and closes its virtio-serial port: VSERPORT_CHANGE open true, false."""
    r = Result("vserport")
    start = q.mark()
    lab.guest.run("for p in /sys/class/virtio-ports/*; do [ \"$(cat $p/name)\" = gl.port ] && "
                  "{ exec 3>/dev/${p##*/}; sleep 0.3; exec 3>&-; }; done; true")
    expect(q, start, "VSERPORT_CHANGE", {"id": "port0", "open": True})
    expect(q, start, "VSERPORT_CHANGE", {"id": "port0", "open": False}, timeout=5)
    r.expected += [("VSERPORT_CHANGE", {"open": True}), ("VSERPORT_CHANGE", {"open": False})]
    r.events = q.events_since(start)
    return r


# Lab keyword arguments each scenario needs (guest scenarios share one lab fine).
LAB_OPTIONS = {
    "lifecycle": dict(),
    "balloon": dict(guest=True, balloon=True),
    "rtc": dict(guest=True),
    "rx_filter": dict(guest=True, nics=["net0", "net1"]),
    "block_jobs": dict(disks=None),       # filled by block_job_disks() at use
    "vnc": dict(vnc=True),
    "cdrom": dict(cdrom=True),
    "panic": dict(guest=True, pvpanic=True),
    "suspend": dict(guest=True),
    "guest_reset": dict(guest=True),
    "guest_poweroff": dict(guest=True),
    "vserport": dict(guest=True, virtio_serial=True),
}

SCENARIOS = {
    "lifecycle": lifecycle, "balloon": balloon, "rtc": rtc, "rx_filter": rx_filter,
    "block_jobs": block_jobs, "vnc": vnc, "cdrom": cdrom, "panic": panic, "suspend": suspend,
    "guest_reset": guest_reset, "guest_poweroff": guest_poweroff, "vserport": vserport,
}


def lab_options(name: str) -> dict:
    opts = dict(LAB_OPTIONS[name])
    if name == "block_jobs":
        opts["disks"] = block_job_disks()
    return opts
