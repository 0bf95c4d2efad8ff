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
  panic_none / panic_pause / panic_shutdown
              guest, pvpanic=True, panic_action=none/pause/shutdown   GUEST_PANICKED run / pause+STOP / poweroff+SHUTDOWN
  migration   no guest, a second QEMU made by the scenario        MIGRATION setup/active/completed, MIGRATION_PASS, STOP
  migration_failed  same                                         MIGRATION failed (twice), STOP + RESUME around the second
  watchdog_reset / watchdog_pause / watchdog_none
              guest, watchdog="i6300esb", watchdog_action=...    WATCHDOG + RESET / STOP (cont: RESUME) / nothing
  io_errors   guest, disks=io_error_disks()                      BLOCK_IO_ERROR report/stop/enospc/ignore, STOP, RESUME
  unplug_stuck  root_ports=1, usb=True                           no DEVICE_DELETED for the NIC until system_reset; kbd0 at once
  block_jobs_reuse  disks=job_reuse_disks()                      JOB_STATUS_CHANGE, BLOCK_JOB_{READY,COMPLETED}, one job id
  job_error_cancelled  disks=job_error_disks()                   BLOCK_JOB_ERROR stop (twice), JOB_STATUS_CHANGE paused, BLOCK_JOB_CANCELLED
  qemu_killed no guest                                           STOP RESUME, then the connection closes (SIGKILL)
  quirky_ids  no guest; raw client (RAW_CLIENT)                  none: replies echoing odd ids
  reboot_loop guest                                              RESET guest-reset, 2-3 per reboot
"""
from __future__ import annotations

import json
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


def panic(lab: Lab, q, after: bool = False) -> Result:
    """The guest panics (sysrq c) and pvpanic reports it. What QEMU 7.2 does depends on
    ``-action panic=`` (Lab(panic_action=...)):

      shutdown (the default)  GUEST_PANICKED action=poweroff, SHUTDOWN guest=true
                              reason=guest-panic, QEMU exits 0. No STOP: the panic is
                              reported on the vCPU thread, whose vm_stop() only queues a
                              stop request, and the main loop handles the shutdown request
                              first and exits.
      pause                   GUEST_PANICKED action=pause, STOP; status guest-panicked
      none                    GUEST_PANICKED action=run (sic: "run", not "none"); nothing
                              else, the status stays running (the lab kernel has panic=0,
                              so the guest just hangs)

    With ``after``: query-status first, and at the end when QEMU is still there; for pause also
    system_reset (RESET host-qmp-system-reset, status prelaunch), cont (RESUME) and the
    guest booting again, then query-status running."""
    r = Result("panic")
    start = q.mark()
    if after:
        _check(q.cmd("query-status")["status"] == "running", "not running before the panic")
    lab.guest.start("echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger")
    ev = expect(q, start, "GUEST_PANICKED", timeout=20)
    action = ev["data"].get("action")
    r.info["action"] = action
    r.expected.append(("GUEST_PANICKED", {"action": action}))
    if action == "pause":
        expect(q, start, "STOP")
        r.expected.append(("STOP", None))
        _check(q.cmd("query-status")["status"] == "guest-panicked", "status is not guest-panicked")
        if after:
            since = lab.guest.mark()
            m = q.mark()
            q.cmd("system_reset")
            reset = {"guest": False, "reason": "host-qmp-system-reset"}
            expect(q, m, "RESET", reset)
            r.info["status_after_reset"] = q.cmd("query-status")["status"]
            q.cmd("cont")
            expect(q, m, "RESUME")
            lab.guest.wait_ready(60, since=since)
            r.expected += [("RESET", reset), ("RESUME", None)]
    elif action == "poweroff":
        data = {"guest": True, "reason": "guest-panic"}
        expect(q, start, "SHUTDOWN", data)
        r.expected.append(("SHUTDOWN", data))
        r.info["exit_status"] = lab.wait_exit(10)
    elif action == "run" and after:
        time.sleep(0.5)                     # nothing else comes
    if after and lab.running:
        r.info["status"] = q.cmd("query-status")["status"]
    r.events = q.events_since(start)
    return r


def panic_none(lab: Lab, q) -> Result:
    """-action panic=none: GUEST_PANICKED action=run and nothing else; query-status
    says running (the panicked kernel spins with panic=0)."""
    r = panic(lab, q, after=True)
    _check(r.info["action"] == "run" and r.info.get("status") == "running", f"panic=none: {r.info}")
    r.name = "panic_none"
    return r


def panic_pause(lab: Lab, q) -> Result:
    """-action panic=pause: GUEST_PANICKED action=pause, STOP, status guest-panicked; then
    system_reset (RESET host-qmp-system-reset; the status becomes prelaunch), cont (RESUME),
    the guest boots again, query-status running."""
    r = panic(lab, q, after=True)
    _check(r.info["action"] == "pause" and r.info.get("status") == "running", f"panic=pause: {r.info}")
    r.name = "panic_pause"
    return r


def panic_shutdown(lab: Lab, q) -> Result:
    """-action panic=shutdown: GUEST_PANICKED action=poweroff, SHUTDOWN guest-panic, QEMU
    exits (status 0) and closes the monitor, so there is no final query-status. No STOP."""
    r = panic(lab, q, after=True)
    _check(r.info["action"] == "poweroff", f"panic=shutdown: {r.info}")
    r.name = "panic_shutdown"
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


# --------------------------------------------------------------------------- migration
def _migration_target(lab: Lab) -> tuple[Lab, str]:
    """A second QEMU with the source's options, waiting with -incoming on a unix socket
    in the source's lab directory; returns (the started destination, the migrate URI)."""
    n = 1
    while (lab.dir / f"mig{n}.sock").exists():       # a killed destination leaves its socket
        n += 1
    path = lab.dir / f"mig{n}.sock"
    uri = f"unix:{path}"
    dst = lab.twin(incoming=uri, monitors=("ctl",), name=f"{lab.name}-dst{n}")
    dst.start()
    from .recorder import _listening          # the file exists from bind(), before listen()
    deadline = time.monotonic() + 10
    while not _listening(uri):
        if time.monotonic() > deadline:
            dst.stop()
            raise ScenarioError(f"the destination never listened on {uri}:\n{dst.logs()}")
        time.sleep(0.005)
    return dst, uri


def _migration_status(q, since: int, statuses, timeout: float = 30.0) -> dict:
    return expect_where(q, since, "MIGRATION", lambda d: d.get("status") in statuses, timeout)


def expect_where(q, start: int, name: str, pred, timeout: float = 10.0) -> dict:
    """Wait for an event after ``start`` whose data satisfies ``pred``."""
    return q.wait_event(name, timeout=timeout, since=start, where=lambda e: pred(e.get("data") or {}))


def migration(lab: Lab, q) -> Result:
    """Live migration to a second QEMU started with -incoming on a unix socket, driven on
    the source's monitor: migrate-set-capabilities (events on), migrate, then
    query-migrate and query-status. QEMU 7.2 emits MIGRATION setup, MIGRATION_PASS 1,
    MIGRATION active, STOP (the source stops for the final pass), MIGRATION_PASS 2,
    MIGRATION completed: the STOP comes *before* "completed". The source ends in
    status postmigrate (no further event); the destination (not recorded) sends RESUME."""
    r = Result("migration")
    start = q.mark()
    dst, uri = _migration_target(lab)
    try:
        _check(q.cmd("query-status")["status"] == "running", "source not running")
        q.cmd("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])
        q.cmd("migrate", uri=uri)
        _migration_status(q, start, ("completed", "failed"))
        info = q.cmd("query-migrate")
        _check(info["status"] == "completed", f"migration did not complete: {info}")
        r.info["total_time_ms"] = info.get("total-time")
        # The migration thread writes "completed" before it takes the main lock to set
        # postmigrate (migration_iteration_finish()), so a query in between still sees
        # finish-migrate (docs/QEMU-FACTS.md, "Migration"); under load that window is real.
        deadline = time.monotonic() + 5
        while (status := q.cmd("query-status")["status"]) == "finish-migrate" and time.monotonic() < deadline:
            time.sleep(0.02)
        r.info["status"] = status
        _check(r.info["status"] == "postmigrate", f"source status {r.info['status']}")
        d = dst.qmp("ctl")
        r.info["destination_status"] = d.cmd("query-status")["status"]
        r.expected += [("MIGRATION", {"status": "setup"}), ("MIGRATION", {"status": "active"}),
                       ("STOP", None), ("MIGRATION", {"status": "completed"})]
    finally:
        dst.stop()
    r.events = q.events_since(start)
    return r


def migration_failed(lab: Lab, q, bandwidth: int = 65536) -> Result:
    """Two failed migrations, recorded on the source.

    1. max-bandwidth 64 KiB/s (migrate-set-parameters) so the first RAM pass takes seconds;
       the destination is SIGKILLed one second in: MIGRATION setup, MIGRATION_PASS 1,
       active, then failed about 0.1 s after the kill ("Unable to write to socket: Broken
       pipe" in query-migrate's error-desc). The source never stopped, so there is no STOP
       and no RESUME; it stays running.
    2. A new destination, full bandwidth, capability pause-before-switchover: the source
       stops (STOP) and waits in pre-switchover; the destination is SIGKILLed there, then
       migrate-continue: MIGRATION device, MIGRATION_PASS 2, MIGRATION failed, RESUME (the
       source runs again). query-migrate then has no error-desc. Ends with query-status."""
    r = Result("migration_failed")
    start = q.mark()
    q.cmd("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])
    # 1: killed mid-way
    dst, uri = _migration_target(lab)
    try:
        q.cmd("migrate-set-parameters", max_bandwidth=bandwidth)
        q.cmd("migrate", uri=uri)
        _migration_status(q, start, ("active",))
        time.sleep(1.0)
        mid = q.cmd("query-migrate")
        _check(mid["status"] == "active", f"migration no longer active before the kill: {mid['status']}")
        r.info["transferred_at_kill"] = mid["ram"]["transferred"]
        dst.kill()
        _migration_status(q, start, ("failed", "completed"))
    finally:
        dst.stop()
    info = q.cmd("query-migrate")
    _check(info["status"] == "failed", f"first migration: {info['status']}")
    r.info["error_desc"] = info.get("error-desc")
    r.info["status_after_1"] = q.cmd("query-status")["status"]
    r.expected += [("MIGRATION", {"status": "active"}), ("MIGRATION", {"status": "failed"})]
    # 2: killed while the source waits before switchover
    m = q.mark()
    dst, uri = _migration_target(lab)
    try:
        q.cmd("migrate-set-parameters", max_bandwidth=1 << 30)
        q.cmd("migrate-set-capabilities", capabilities=[{"capability": "pause-before-switchover", "state": True}])
        q.cmd("migrate", uri=uri)
        _migration_status(q, m, ("pre-switchover",))
        expect(q, m, "STOP")
        r.info["status_pre_switchover"] = q.cmd("query-status")["status"]
        dst.kill()
        time.sleep(0.2)
        q.cmd("migrate-continue", state="pre-switchover")
        _migration_status(q, m, ("failed", "completed"))
        expect(q, m, "RESUME", timeout=5)
    finally:
        dst.stop()
    info = q.cmd("query-migrate")
    _check(info["status"] == "failed", f"second migration: {info['status']}")
    r.info["status"] = q.cmd("query-status")["status"]
    _check(r.info["status"] == "running", f"source status after the failures: {r.info['status']}")
    r.expected += [("STOP", None), ("MIGRATION", {"status": "pre-switchover"}),
                   ("MIGRATION", {"status": "failed"}), ("RESUME", None)]
    r.events = q.events_since(start)
    return r


# --------------------------------------------------------------------------- watchdog
_ESB_FIND = ('for x in /sys/bus/pci/devices/*; do [ "$(cat $x/vendor):$(cat $x/device)" = 0x8086:0x25ab ] '
             '&& echo $x; done; true')


def watchdog(lab: Lab, q, feeds: int = 3) -> Result:
    """The guest arms the i6300esb watchdog (Lab(watchdog="i6300esb")), feeds it a few
    times, then stops feeding; QEMU acts on ``-watchdog-action`` (Lab(watchdog_action=...)).

    The Debian cloud kernel has no i6300esb driver (nor iTCO_wdt), so the guest programs the
    device itself: PCI config 0x60 := 0x0004 (16-bit write: 1 MHz clock, reboot on timeout),
    config 0x68 := 0x02 (enable); each stage then lasts 0xfffff << 5 ticks of 33 MHz, about
    1.02 s, and QEMU acts when the second stage runs out. A feed is the unlock sequence
    0x80, 0x86 then 0x0100 written to the reload register (BAR0 + 0xc) with busybox devmem.
    The last feed is followed by WATCHDOG about 2.0 s later.

      reset   WATCHDOG action=reset, RESET guest=true reason=guest-reset; the guest reboots
              (the watchdog is off again after the reset); query-status running
      pause   WATCHDOG action=pause, STOP; status "watchdog"; cont -> RESUME; running
      none    WATCHDOG action=none and nothing else (QEMU resets the device, so it does not
              fire again); status running
    """
    g = lab.guest
    assert g is not None, "watchdog needs a guest"
    r = Result("watchdog")
    dev = g.run(_ESB_FIND).strip()
    _check(bool(dev), "no i6300esb in the guest (Lab(watchdog='i6300esb'))")
    bar = int(g.run(f"head -1 {dev}/resource").split()[0], 16)
    reload = f"{bar + 0xc:#x}"
    feed = f"devmem {reload} 8 0x80; devmem {reload} 8 0x86; devmem {reload} 16 0x100"
    start = q.mark()
    _check(q.cmd("query-status")["status"] == "running", "not running before the watchdog")
    g.run(f"printf '\\004\\000' | dd of={dev}/config bs=2 seek=48 count=1 conv=notrunc 2>/dev/null && "
          f"printf '\\002' | dd of={dev}/config bs=1 seek=104 count=1 conv=notrunc 2>/dev/null")
    for _ in range(feeds):
        time.sleep(0.5)
        g.run(feed)
    t_last = time.monotonic()
    since = g.mark()
    ev = expect(q, start, "WATCHDOG", timeout=20)
    r.info["seconds_after_last_feed"] = round(time.monotonic() - t_last, 2)
    action = ev["data"]["action"]
    r.info["action"] = action
    r.expected.append(("WATCHDOG", {"action": action}))
    if action == "reset":
        data = {"guest": True, "reason": "guest-reset"}
        expect(q, start, "RESET", data)
        r.expected.append(("RESET", data))
        g.wait_ready(60, since=since)
    elif action == "pause":
        expect(q, start, "STOP")
        r.expected.append(("STOP", None))
        r.info["status_stopped"] = q.cmd("query-status")["status"]
        _check(r.info["status_stopped"] == "watchdog", f"status {r.info['status_stopped']}")
        m = q.mark()
        q.cmd("cont")
        expect(q, m, "RESUME")
        r.expected.append(("RESUME", None))
        g.run("true")
    else:
        time.sleep(2.5)                     # would a second stage fire again? (it does not)
    r.info["status"] = q.cmd("query-status")["status"]
    _check(r.info["status"] == "running", f"status {r.info['status']}")
    r.events = q.events_since(start)
    _check(r.count("WATCHDOG") == 1, f"WATCHDOG events: {r.names()}")
    return r


# --------------------------------------------------------------------------- I/O errors
def io_error_disks() -> list[Disk]:
    """Raw 8 MiB disks on virtio-blk, each with a blkdebug node under the raw node that
    fails requests: the rules fire on ``write_aio``/``read_aio`` (the raw driver's events)."""
    def err(errno: int, iotype: str = "write", **kw) -> dict:
        return {"event": f"{iotype}_aio", "iotype": iotype, "errno": errno, **kw}
    return [
        Disk("report", size="8M", fmt="raw", device="vd-report", serial="report", werror="report",
             blkdebug={"inject-error": [err(5)]}),
        Disk("enoeio", size="8M", fmt="raw", device="vd-enoeio", serial="enoeio", werror="enospc",
             blkdebug={"inject-error": [err(5)]}),
        Disk("rderr", size="8M", fmt="raw", device="vd-rderr", serial="rderr", rerror="report",
             blkdebug={"inject-error": [err(5, "read", sector=2048)]}),
        # two failures in a row, then success: state 1 -> 2 -> 3, one error per state
        Disk("stop", size="8M", fmt="raw", device="vd-stop", serial="stop", werror="stop",
             blkdebug={"inject-error": [err(5, state=1, once=True), err(5, state=2, once=True)],
                       "set-state": [{"event": "write_aio", "state": 1, "new_state": 2},
                                     {"event": "write_aio", "state": 2, "new_state": 3}]}),
        Disk("nospc", size="8M", fmt="raw", device="vd-nospc", serial="nospc", werror="enospc",
             blkdebug={"inject-error": [err(28, once=True)]}),
        Disk("ignore", size="8M", fmt="raw", device="vd-ignore", serial="ignore", werror="ignore",
             blkdebug={"inject-error": [err(5)]}),
    ]


def io_errors(lab: Lab, q) -> Result:
    """BLOCK_IO_ERROR with each error policy (Lab(guest=True, disks=io_error_disks())); the
    guest writes or reads 4 KiB with O_DIRECT on each virtio-blk disk (found by serial):

      report  werror=report, EIO on writes      BLOCK_IO_ERROR write/report, dd fails
      enoeio  werror=enospc, EIO on writes      BLOCK_IO_ERROR write/report (EIO is not ENOSPC)
      rderr   rerror=report, EIO reading 1 MiB  BLOCK_IO_ERROR read/report
      stop    werror=stop, EIO twice            BLOCK_IO_ERROR write/stop, STOP, status
                                                io-error (query-block io-status failed); cont ->
                                                RESUME, the retried write fails again ->
                                                BLOCK_IO_ERROR, STOP; cont -> RESUME, dd succeeds
      nospc   werror=enospc, ENOSPC once        BLOCK_IO_ERROR write/stop nospace=true, STOP;
                                                cont -> RESUME, dd succeeds
      ignore  werror=ignore, EIO on writes      BLOCK_IO_ERROR write/ignore, no STOP; the guest
                                                is told the write succeeded (dd exits 0)
    Starts and ends with query-status (running). BLOCK_IO_ERROR has ``nospace`` only when
    the device's I/O status is tracked (werror or rerror is stop/enospc): the
    report/report and ignore disks' events lack it."""
    g = lab.guest
    assert g is not None, "io_errors needs a guest"
    r = Result("io_errors")
    devs = {}
    for line in g.run("for b in /sys/block/vd*; do echo ${b##*/} $(cat $b/serial); done").split("\n"):
        name, _, serial = line.partition(" ")
        devs[serial] = f"/dev/{name}"
    _check(all(k in devs for k in ("report", "enoeio", "rderr", "stop", "nospc", "ignore")), f"disks: {devs}")

    def write(serial: str) -> str:
        return f"dd if=/dev/zero of={devs[serial]} bs=4k count=1 oflag=direct"

    start = q.mark()
    q.cmd("query-status")
    for serial, node, op in (("report", "report", "write"), ("enoeio", "enoeio", "write"),
                             ("rderr", "rderr", "read")):
        m = q.mark()
        cmd = write(serial) if op == "write" else \
            f"dd if={devs[serial]} of=/dev/null bs=4k skip=256 count=1 iflag=direct"
        st, out = g.run_status(cmd)
        _check(st != 0, f"{serial}: dd did not fail: {out}")
        data = {"node-name": node, "operation": op, "action": "report"}
        expect(q, m, "BLOCK_IO_ERROR", data)
        r.expected.append(("BLOCK_IO_ERROR", data))
    # werror=stop, two errors in a row
    m = q.mark()
    cid = g.start(write("stop"))
    stop = {"node-name": "stop", "operation": "write", "action": "stop"}
    expect(q, m, "BLOCK_IO_ERROR", stop)
    expect(q, m, "STOP")
    r.info["status_io_error"] = q.cmd("query-status")["status"]
    _check(r.info["status_io_error"] == "io-error", f"status {r.info['status_io_error']}")
    blk = [b for b in q.cmd("query-block") if b.get("qdev") == "vd-stop"
           or b.get("qdev", "").endswith("/vd-stop/virtio-backend")]
    r.info["io_status"] = blk[0].get("io-status") if blk else None
    for round_ in range(2):
        m = q.mark()
        q.cmd("cont")
        expect(q, m, "RESUME")
        if round_ == 0:
            expect(q, m, "BLOCK_IO_ERROR", stop)
            expect(q, m, "STOP")
            _check(q.cmd("query-status")["status"] == "io-error", "not stopped again")
    g.wait(cid, timeout=20)
    r.expected += [("BLOCK_IO_ERROR", stop), ("STOP", None), ("RESUME", None),
                   ("BLOCK_IO_ERROR", stop), ("STOP", None), ("RESUME", None)]
    # werror=enospc with ENOSPC
    m = q.mark()
    cid = g.start(write("nospc"))
    nospc = {"node-name": "nospc", "operation": "write", "action": "stop", "nospace": True}
    expect(q, m, "BLOCK_IO_ERROR", nospc)
    expect(q, m, "STOP")
    _check(q.cmd("query-status")["status"] == "io-error", "not stopped on ENOSPC")
    m = q.mark()
    q.cmd("cont")
    expect(q, m, "RESUME")
    g.wait(cid, timeout=20)
    r.expected += [("BLOCK_IO_ERROR", nospc), ("STOP", None), ("RESUME", None)]
    # werror=ignore: the error is reported to QMP only; the guest's write "succeeds"
    m = q.mark()
    st, out = g.run_status(write("ignore"))
    _check(st == 0, f"ignore: dd failed although werror=ignore: {out}")
    ignore = {"node-name": "ignore", "operation": "write", "action": "ignore"}
    expect(q, m, "BLOCK_IO_ERROR", ignore)
    expect_none(q, m, "STOP", 0.3)
    r.expected.append(("BLOCK_IO_ERROR", ignore))
    r.info["status"] = q.cmd("query-status")["status"]
    _check(r.info["status"] == "running", f"status {r.info['status']}")
    r.events = q.events_since(start)
    return r


# --------------------------------------------------------------------------- hot-unplug
def unplug_stuck(lab: Lab, q, wait: float = 3.0) -> Result:
    """Hot-unplug nobody acknowledges (Lab(root_ports=1, usb=True), no guest: the firmware
    halts at once, so no OS answers the PCIe hotplug controller of rp0; QEMU 7.2 uses
    native PCIe hotplug on q35 root ports).

      1. netdev_add user + device_add virtio-net-pci nic9 on pcie-root-port rp0: no event
      2. device_del nic9 -> {}, at once again -> {} (QEMU 7.2 accepts the repeated request
         here); no DEVICE_DELETED within ``wait`` s; qom-list /machine/peripheral still
         lists nic9 (query-pci would not show it at all: nobody numbered rp0's bus)
      3. contrast: usb-kbd kbd0 on the qemu-xhci controller, device_del -> DEVICE_DELETED
         kbd0 at once (USB unplug needs no guest)
      4. device_del usb0 -> GenericError "Bus 'pcie.0' does not support hotplugging"
      5. system_reset: RESET host-qmp-system-reset, and the reset completes the pending
         unplug: DEVICE_DELETED for nic9's child (path .../nic9/virtio-backend, no
         ``device`` member), then DEVICE_DELETED nic9; netdev_del hn9.
      6. nic10 on rp0, device_del -> {}, and the capture ends ``wait`` s later with that
         unplug still pending (what an investigator sees when nobody reset the VM)."""
    r = Result("unplug_stuck")
    start = q.mark()
    q.cmd("netdev_add", type="user", id="hn9")
    q.cmd("device_add", driver="virtio-net-pci", id="nic9", netdev="hn9", bus="rp0")
    q.cmd("device_del", id="nic9")
    try:
        q.cmd("device_del", id="nic9")
        r.info["second_device_del"] = "ok"
    except Exception as e:                  # QMPError
        r.info["second_device_del"] = f"{getattr(e, 'error_class', '')}: {getattr(e, 'desc', e)}"
    expect_none(q, start, "DEVICE_DELETED", wait)
    # (query-pci would not list it: with the firmware halted nobody numbered rp0's bus)
    ids = [p["name"] for p in q.cmd("qom-list", path="/machine/peripheral")]
    r.info["nic9_still_present"] = "nic9" in ids
    _check(r.info["nic9_still_present"], f"nic9 vanished: {ids}")
    _check(not q.events_since(start, "DEVICE_DELETED"), "DEVICE_DELETED for nic9")
    # contrast: an unplug that completes without a guest
    m = q.mark()
    q.cmd("device_add", driver="usb-kbd", id="kbd0", bus="usb0.0")
    q.cmd("device_del", id="kbd0")
    expect(q, m, "DEVICE_DELETED", {"device": "kbd0"})
    r.expected.append(("DEVICE_DELETED", {"device": "kbd0"}))
    try:
        q.cmd("device_del", id="usb0")
        r.info["usb0_del"] = "ok"
    except Exception as e:
        r.info["usb0_del"] = f"{getattr(e, 'error_class', '')}: {getattr(e, 'desc', e)}"
    # a reset completes the pending unplug
    m = q.mark()
    q.cmd("system_reset")
    reset = {"guest": False, "reason": "host-qmp-system-reset"}
    expect(q, m, "RESET", reset)
    expect(q, m, "DEVICE_DELETED", {"device": "nic9"}, timeout=10)
    r.expected += [("RESET", reset), ("DEVICE_DELETED", {"device": "nic9"})]
    ids = [p["name"] for p in q.cmd("qom-list", path="/machine/peripheral")]
    _check("nic9" not in ids, f"nic9 still there after the reset: {ids}")
    q.cmd("netdev_del", id="hn9")
    # an unplug still pending when the capture ends
    m = q.mark()
    q.cmd("netdev_add", type="user", id="hn10")
    q.cmd("device_add", driver="virtio-net-pci", id="nic10", netdev="hn10", bus="rp0")
    q.cmd("device_del", id="nic10")
    expect_none(q, m, "DEVICE_DELETED", wait)
    r.events = q.events_since(start)
    r.info["deleted_paths"] = [e["data"]["path"] for e in r.events if e["event"] == "DEVICE_DELETED"]
    return r


# --------------------------------------------------------------------------- job id reuse
def job_reuse_disks() -> list[Disk]:
    """base <- mid <- top (commit twice), src (mirrored, then backed up), sbase <- stop (stream)."""
    base = Disk("base", size="16M", fill="0x11 0 4M")
    mid = Disk("mid", size="16M", backing=base, fill="0x22 4M 4M")
    top = Disk("top", size="16M", backing=mid, fill="0x33 8M 4M")
    sbase = Disk("sbase", size="16M", fill="0x55 0 4M")
    return [base, mid, top, Disk("src", size="16M", fill="0x44 0 8M"), sbase,
            Disk("stop", size="16M", backing=sbase)]


def block_jobs_reuse(lab: Lab, q, job: str = "job0") -> Result:
    """Five block jobs one after another, all with job-id "job0" (Lab(disks=job_reuse_disks())),
    each finished and gone (JOB_STATUS_CHANGE null) before the next starts:

      1. block-commit top-node=mid into base (intermediate commit; completes by itself)
      2. block-commit of the active layer top into base: READY, block-job-complete
         (meanwhile blockdev-backup with job-id job0 fails: the id is in use)
      3. blockdev-mirror src -> tgt0: READY, block-job-complete
      4. blockdev-backup tgt0 -> tgt1 with auto-dismiss false: concluded, job-dismiss
      5. block-stream stop
    Targets are qemu-img images added with blockdev-add."""
    import subprocess
    from .lab import qemu_img
    r = Result("block_jobs_reuse")
    start = q.mark()

    def done(m: int) -> None:
        _job_done(q, m, job)

    # 1. intermediate commit
    m = q.mark()
    q.cmd("block-commit", job_id=job, device="top", top_node="mid", base_node="base")
    expect(q, m, "BLOCK_JOB_COMPLETED", {"device": job, "type": "commit"}, timeout=30)
    done(m)
    # 2. active commit
    m = q.mark()
    q.cmd("block-commit", job_id=job, device="top", base_node="base")
    expect(q, m, "BLOCK_JOB_READY", {"device": job, "type": "commit"}, timeout=30)
    for t in ("tgt0", "tgt1"):
        path = lab.dir / f"{t}.qcow2"
        subprocess.run([qemu_img(), "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
        q.cmd("blockdev-add", {"driver": "qcow2", "node-name": t, "file": {"driver": "file", "filename": str(path)}})
    try:
        q.cmd("blockdev-backup", job_id=job, device="src", target="tgt1", sync="full")
        r.info["reuse_while_running"] = "accepted"
    except Exception as e:
        r.info["reuse_while_running"] = f"{getattr(e, 'error_class', '')}: {getattr(e, 'desc', e)}"
    q.cmd("block-job-complete", device=job)
    expect(q, m, "BLOCK_JOB_COMPLETED", {"device": job, "type": "commit"}, timeout=30)
    done(m)
    # 3. mirror
    m = q.mark()
    q.cmd("blockdev-mirror", job_id=job, device="src", target="tgt0", sync="full")
    expect(q, m, "BLOCK_JOB_READY", {"device": job, "type": "mirror"}, timeout=30)
    q.cmd("block-job-complete", device=job)
    expect(q, m, "BLOCK_JOB_COMPLETED", {"device": job, "type": "mirror"}, timeout=30)
    done(m)
    # 4. backup, dismissed by hand
    m = q.mark()
    q.cmd("blockdev-backup", job_id=job, device="tgt0", target="tgt1", sync="full", auto_dismiss=False)
    expect(q, m, "JOB_STATUS_CHANGE", {"id": job, "status": "concluded"}, timeout=30)
    r.info["query_jobs_concluded"] = [j["status"] for j in q.cmd("query-jobs")]
    q.cmd("job-dismiss", id=job)
    done(m)
    # 5. stream
    m = q.mark()
    q.cmd("block-stream", job_id=job, device="stop")
    expect(q, m, "BLOCK_JOB_COMPLETED", {"device": job, "type": "stream"}, timeout=30)
    done(m)
    _check(q.cmd("query-jobs") == [], "jobs left over")
    r.events = q.events_since(start)
    r.info["types"] = [e["data"]["type"] for e in r.events if e["event"] == "BLOCK_JOB_COMPLETED"]
    r.info["statuses"] = [e["data"]["status"] for e in r.events if e["event"] == "JOB_STATUS_CHANGE"]
    r.expected += [("BLOCK_JOB_COMPLETED", {"device": job, "type": t})
                   for t in ("commit", "commit", "mirror", "backup", "stream")]
    return r


# --------------------------------------------------------------------------- job error, cancelled
def job_error_disks() -> list[Disk]:
    """src (qcow2, 24 MiB of data) to be mirrored; the failing target is added by the scenario."""
    return [Disk("src", size="32M", fill="0xa5 0 24M")]


def job_error_cancelled(lab: Lab, q, job: str = "job0") -> Result:
    """A mirror whose target fails, stopped by on-target-error and then cancelled
    (Lab(disks=job_error_disks()), no guest):

      blockdev-add  raw "tgt" on a blkdebug node "tgt-dbg" that fails every write with EIO
                    (inject-error write_aio/write, errno 5) on a 32 MiB raw file "tgt-file"
      blockdev-mirror src -> tgt, sync full, on-target-error stop, granularity = buf-size =
                    64 KiB (one copy in flight, so one error per attempt; with the default
                    buf-size QEMU 7.2 has 16 copies in flight and emits 16 BLOCK_JOB_ERROR
                    in a burst before the job pauses)
                    -> JOB_STATUS_CHANGE created, running; BLOCK_JOB_ERROR write/stop;
                       JOB_STATUS_CHANGE paused
      query-block-jobs  status paused, paused true, io-status failed, offset 0
      block-job-cancel (no force)  refused: GenericError "The block job for device 'job0' is
                    currently paused" (an error-paused job counts as user-paused)
      block-job-resume  -> JOB_STATUS_CHANGE running; the retried write fails again:
                    BLOCK_JOB_ERROR write/stop, JOB_STATUS_CHANGE paused
      block-job-cancel force true  -> JOB_STATUS_CHANGE running, aborting;
                    BLOCK_JOB_CANCELLED (offset 0 of 32 MiB); JOB_STATUS_CHANGE concluded, null
    Ends with query-block-jobs [] and blockdev-del of tgt."""
    import subprocess
    from .lab import qemu_img
    from .qmp import QMPError
    r = Result("job_error_cancelled")
    path = lab.dir / "tgt.raw"
    subprocess.run([qemu_img(), "create", "-q", "-f", "raw", str(path), "32M"], check=True)
    start = q.mark()
    q.cmd("blockdev-add", {
        "driver": "raw", "node-name": "tgt",
        "file": {"driver": "blkdebug", "node-name": "tgt-dbg",
                 "inject-error": [{"event": "write_aio", "iotype": "write", "errno": 5}],
                 "image": {"driver": "file", "node-name": "tgt-file", "filename": str(path)}}})
    q.cmd("blockdev-mirror", job_id=job, device="src", target="tgt", sync="full",
          on_target_error="stop", granularity=65536, buf_size=65536)
    err = {"device": job, "operation": "write", "action": "stop"}
    expect(q, start, "BLOCK_JOB_ERROR", err)
    expect(q, start, "JOB_STATUS_CHANGE", {"id": job, "status": "paused"})
    jobs = q.cmd("query-block-jobs")
    j = next(j for j in jobs if j["device"] == job)
    r.info["paused_job"] = {k: j.get(k) for k in ("status", "paused", "io-status", "offset", "len")}
    _check(j["paused"] and j.get("io-status") == "failed", f"job not error-paused: {j}")
    try:
        q.cmd("block-job-cancel", device=job)
        r.info["cancel_unforced"] = "accepted"
    except QMPError as e:
        r.info["cancel_unforced"] = f"{e.error_class}: {e.desc}"
    # retry: the write fails again and the job pauses again
    m = q.mark()
    q.cmd("block-job-resume", device=job)
    expect(q, m, "JOB_STATUS_CHANGE", {"id": job, "status": "running"})
    expect(q, m, "BLOCK_JOB_ERROR", err)
    expect(q, m, "JOB_STATUS_CHANGE", {"id": job, "status": "paused"})
    m = q.mark()
    q.cmd("block-job-cancel", device=job, force=True)
    ev = expect(q, m, "BLOCK_JOB_CANCELLED", {"device": job, "type": "mirror"}, timeout=30)
    _job_done(q, m, job)
    r.info["cancelled"] = ev["data"]
    _check(q.cmd("query-block-jobs") == [], "jobs left over")
    q.cmd("blockdev-del", node_name="tgt")
    r.events = q.events_since(start)
    r.info["statuses"] = [e["data"]["status"] for e in r.events if e["event"] == "JOB_STATUS_CHANGE"]
    _check(r.count("BLOCK_JOB_ERROR") == 2, f"BLOCK_JOB_ERROR events: {r.names()}")
    r.expected += [("BLOCK_JOB_ERROR", err), ("JOB_STATUS_CHANGE", {"id": job, "status": "paused"}),
                   ("BLOCK_JOB_ERROR", err), ("JOB_STATUS_CHANGE", {"id": job, "status": "paused"}),
                   ("JOB_STATUS_CHANGE", {"id": job, "status": "aborting"}),
                   ("BLOCK_JOB_CANCELLED", {"device": job, "type": "mirror"}),
                   ("JOB_STATUS_CHANGE", {"id": job, "status": "null"})]
    return r


# --------------------------------------------------------------------------- QEMU killed
def qemu_killed(lab: Lab, q, hang: float = 0.5) -> Result:
    """A short session, then QEMU is SIGKILLed while a command hangs: query-status, stop,
    cont, query-name, then dump-guest-memory to a FIFO that nobody reads (QEMU's main
    thread blocks in open(), so that command never gets a reply); ``hang`` seconds later
    SIGKILL. The recording ends with the unanswered command and the connection closed
    by QEMU: no SHUTDOWN, no reply."""
    import os
    import threading
    r = Result("qemu_killed")
    start = q.mark()
    q.cmd("query-status")
    q.cmd("stop"); expect(q, start, "STOP")
    m = q.mark(); q.cmd("cont"); expect(q, m, "RESUME")
    q.cmd("query-name")
    fifo = lab.dir / "dump.fifo"
    os.mkfifo(fifo)
    outcome: dict = {}

    def hung() -> None:
        try:
            outcome["reply"] = q.cmd("dump-guest-memory", paging=False, protocol=f"file:{fifo}", timeout=15)
        except BaseException as e:           # the connection goes away
            outcome["error"] = f"{type(e).__name__}: {e}"
    t = threading.Thread(target=hung, daemon=True)
    t.start()
    time.sleep(hang)
    _check("reply" not in outcome, f"dump-guest-memory answered: {outcome}")
    lab.kill()
    t.join(20)
    r.info["client_saw"] = outcome.get("error", "")[:200]
    r.info["exit_status"] = lab.proc.returncode if lab.proc else None
    r.events = q.events_since(start)
    r.expected += [("STOP", None), ("RESUME", None)]
    return r


# --------------------------------------------------------------------------- raw ids
# Lines the quirky_ids scenario writes to the socket, one at a time (after the greeting),
# with how many replies each should produce. Bytes, not Python strings: the raw UTF-8 é
# and the escapes are exactly as written here.
QUIRKY_LINES: list[tuple[bytes, int]] = [
    (b'{"execute": "qmp_capabilities"}\n', 1),
    (b"{'execute': 'query-name', 'id': 'sq1'}\n", 1),
    (b'{"execute": "query-name", "id": "caf\\u00e9"}\n', 1),
    (b'{"execute": "query-name", "id": "caf\\u00E9"}\n', 1),
    (b'{"execute": "query-name", "id": "caf\xc3\xa9"}\n', 1),
    (b'{"execute": "query-name", "id": 42}\n', 1),
    (b'{"execute": "query-name", "id": {"a": 1}}\n', 1),
    (b'{"execute": "query-status"}\n', 1),
    (b"{'execute': 'query-kvm'}\n", 1),
    (b'{"execute": "query-name", "id": -1.5e3}\n', 1),
    (b'{"execute": "query-name", "id": 18446744073709551616}\n', 1),
    (b'{"execute": "query-name", "id": [1, "two", null, true]}\n', 1),
    (b'{"execute": "query-name", "id": null}\n', 1),
    (b'{"execute": "query-name", "id": "\\ud83d\\ude00 tab\\t quote\\" slash\\/ back\\\\"}\n', 1),
    (b"{'execute': 'query-name', 'id': 'it\"s'}\n", 1),
    (b'{"execute": "no-such-command", "id": "e1"}\n', 1),
    (b'{"execute": "no-such-command"}\n', 1),
    (b'{"execute":"query-name","id":"a1"}{"execute":"query-name","id":"a2"}\n', 2),
    (b'{"execute": "query-name", "id": "last"}\n', 1),
]


def quirky_ids(lab: Lab, c) -> Result:
    """Raw bytes on a QMP socket (``c`` is a guestlab.rawclient.RawClient, not qemu.qmp):
    commands with single quotes (QEMU's JSON parser accepts them), ids with a lowercase
    \\u escape, an uppercase one and raw UTF-8, numeric, float, huge, object, array, null
    and escaped-character ids, commands without id, an unknown command with and without
    id, and two commands on one line (QUIRKY_LINES). Each line is sent after the previous
    one was answered. QEMU re-serialises the ids it echoes (r.info["echo"] has each line
    and its replies as bytes)."""
    r = Result("quirky_ids")
    c.greeting()
    echo = []

    def replies() -> list[bytes]:
        out = []
        for ln in c.received.split(b"\r\n")[:-1]:
            try:
                m = json.loads(ln)
            except ValueError:
                continue
            if isinstance(m, dict) and ("return" in m or "error" in m):
                out.append(ln)
        return out

    for line, n in QUIRKY_LINES:
        before = len(replies())
        c.send(line)
        deadline = time.monotonic() + 10
        while len(replies()) < before + n:
            if c.eof or time.monotonic() > deadline:
                raise ScenarioError(f"no reply to {line!r}; received {c.received[-300:]!r}")
            c._recv_once(deadline - time.monotonic())
        echo.append((line, replies()[before:before + n]))
    r.info["echo"] = [(line.decode("utf-8", "replace").rstrip("\n"),
                       [x.decode("utf-8", "replace") for x in got]) for line, got in echo]
    r.events = [m for m in c.messages() if "event" in m]
    return r


# --------------------------------------------------------------------------- reboot loop
def reboot_loop(lab: Lab, q, times: int = 3) -> Result:
    """The guest reboots itself ``times`` times in a row (reboot -f, wait for the init each
    time); each reboot brings 1 to 3 RESET guest-reset (Linux tries several reset methods;
    2 or 3 here). Starts and ends with query-status."""
    r = Result("reboot_loop")
    start = q.mark()
    q.cmd("query-status")
    per = []
    for _ in range(times):
        m = q.mark()
        since = lab.guest.mark()
        lab.guest.start("reboot -f")
        expect(q, m, "RESET", {"guest": True, "reason": "guest-reset"}, timeout=20)
        lab.guest.wait_ready(90, since=since)
        per.append(len(q.events_since(m, "RESET")))
        r.expected.append(("RESET", {"guest": True, "reason": "guest-reset"}))
    r.info["resets_per_reboot"] = per
    r.info["status"] = q.cmd("query-status")["status"]
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
    "panic_none": dict(guest=True, pvpanic=True, panic_action="none"),
    "panic_pause": dict(guest=True, pvpanic=True, panic_action="pause"),
    "panic_shutdown": dict(guest=True, pvpanic=True, panic_action="shutdown"),
    "migration": dict(memory="64M"),
    "migration_failed": dict(memory="64M"),
    "watchdog_reset": dict(guest=True, watchdog="i6300esb", watchdog_action="reset"),
    "watchdog_pause": dict(guest=True, watchdog="i6300esb", watchdog_action="pause"),
    "watchdog_none": dict(guest=True, watchdog="i6300esb", watchdog_action="none"),
    "io_errors": dict(guest=True, disks=None),            # io_error_disks() at use
    "unplug_stuck": dict(root_ports=1, usb=True),
    "block_jobs_reuse": dict(disks=None),                 # job_reuse_disks() at use
    "job_error_cancelled": dict(disks=None),              # job_error_disks() at use
    "qemu_killed": dict(),
    "quirky_ids": dict(),
    "reboot_loop": dict(guest=True),
}

# Scenarios driven with a guestlab.rawclient.RawClient instead of a qemu.qmp client (they
# write bytes qemu.qmp would never send); the raw client does its own negotiation.
RAW_CLIENT = {"quirky_ids"}

SCENARIOS = {
    "lifecycle": lifecycle, "balloon": balloon, "rtc": rtc, "rx_filter": rx_filter,
    "block_jobs": block_jobs, "vnc": vnc, "cdrom": cdrom, "panic": panic, "suspend": suspend,
    "guest_reset": guest_reset, "guest_poweroff": guest_poweroff, "vserport": vserport,
    "panic_none": panic_none, "panic_pause": panic_pause, "panic_shutdown": panic_shutdown,
    "migration": migration, "migration_failed": migration_failed,
    "watchdog_reset": watchdog, "watchdog_pause": watchdog, "watchdog_none": watchdog,
    "io_errors": io_errors, "unplug_stuck": unplug_stuck, "block_jobs_reuse": block_jobs_reuse,
    "job_error_cancelled": job_error_cancelled,
    "qemu_killed": qemu_killed, "quirky_ids": quirky_ids, "reboot_loop": reboot_loop,
}


def lab_options(name: str) -> dict:
    opts = dict(LAB_OPTIONS[name])
    if name == "block_jobs":
        opts["disks"] = block_job_disks()
    elif name == "io_errors":
        opts["disks"] = io_error_disks()
    elif name == "block_jobs_reuse":
        opts["disks"] = job_reuse_disks()
    elif name == "job_error_cancelled":
        opts["disks"] = job_error_disks()
    return opts
