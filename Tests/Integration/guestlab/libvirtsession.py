"""One QEMU session seen by two sources at once: libvirt's monitor (its debug log) and a
second QMP monitor behind ``qmpreplay record`` in proxy mode.

libvirt (qemu:///system) starts a tiny diskless domain whose command line adds a second
``-qmp`` socket; the daemon's log filters are switched to the monitor (``virt-admin
daemon-log-filters``) with the log going to a file of our own for the session's length.
``virsh suspend/resume/reset`` drive libvirt's monitor while a qemu.qmp client on the
proxy sends its own ``stop``/``cont``/``query-status``; ``virsh destroy`` ends it (QEMU
gets SIGTERM: SHUTDOWN on both monitors). Both monitors receive every event with the same
timestamp, which is what ``qmpreplay merge`` aligns by.

    paths = run_session(workdir, qmpreplay_binary)   # {"proxy": ..., "log": ...}

Needs libvirtd (libvirt-daemon-system) running, or startable, as root.
Scripts/capture-libvirt-merge makes the shipped pair; Tests/Integration/test_merge.py runs it live.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import subprocess
import time
from pathlib import Path

from .qmp import QMP
from .recorder import Recorder

DOMAIN = "qmprec-merge"
URI = "qemu:///system"


class LibvirtUnavailable(Exception):
    pass


def _virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60, check=check)


def _admin(*args: str) -> str:
    p = subprocess.run(["virt-admin", *args], capture_output=True, text=True, timeout=30, check=True)
    return p.stdout


def libvirt_available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root (qemu:///system)"
    for tool in ("virsh", "virt-admin", "libvirtd"):
        if shutil.which(tool) is None:
            return False, f"{tool} not installed (apt-get install libvirt-daemon-system)"
    return True, ""


def ensure_daemon() -> subprocess.Popen | None:
    """A running libvirtd: the one there is, or one started here (returned, to stop later)."""
    if _virsh("version", check=False).returncode == 0:
        return None
    proc = subprocess.Popen(["libvirtd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while _virsh("version", check=False).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LibvirtUnavailable("libvirtd did not start")
        time.sleep(0.2)
    return proc


def _current(kind: str) -> str:
    # "Logging filters: 1:*qemu* 3:*" -> "1:*qemu* 3:*"
    out = _admin(f"daemon-log-{kind}")
    return out.split(":", 1)[1].strip() if ":" in out else ""


def domain_xml(monitor: Path) -> str:
    return f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator><memballoon model='none'/></devices>
  <qemu:commandline>
    <qemu:arg value='-qmp'/>
    <qemu:arg value='unix:{monitor},server=on,wait=off'/>
  </qemu:commandline>
</domain>
"""


def run_session(work: Path, binary: str) -> dict[str, Path]:
    ok, why = libvirt_available()
    if not ok:
        raise LibvirtUnavailable(why)
    daemon = ensure_daemon()
    # QEMU runs as libvirt-qemu: its sockets go in a directory of their own under /tmp that
    # it can reach (pytest's and mkdtemp's directories are 0700).
    socks = Path(tempfile.mkdtemp(prefix="qmprec-libvirt-", dir="/tmp"))
    os.chmod(socks, 0o777)
    monitor = socks / "mon2.sock"
    log = work / "libvirtd.log"
    proxy_out = work / "proxy.qmprec"
    old_outputs, old_filters = _current("outputs"), _current("filters")
    _virsh("destroy", DOMAIN, check=False)
    xml = work / "domain.xml"
    xml.write_text(domain_xml(monitor))
    _admin("daemon-log-filters", "1:qemu.qemu_monitor 3:*")
    _admin("daemon-log-outputs", f"1:file:{log}")
    rec = None
    try:
        _virsh("create", str(xml))
        deadline = time.monotonic() + 10
        while not monitor.exists():
            if time.monotonic() > deadline:
                raise LibvirtUnavailable(f"QEMU never made {monitor}")
            time.sleep(0.05)
        rec = Recorder.proxy(f"unix:{socks / 'px.sock'}", str(monitor), proxy_out, "--once", binary=binary).start()
        rec.wait_listening()
        q = QMP(str(socks / "px.sock"))
        q.cmd("query-status")
        since = q.mark()
        _virsh("suspend", DOMAIN)                  # libvirt: stop -> STOP on both monitors
        q.wait_event("STOP", since=since)
        q.cmd("query-status")
        since = q.mark()
        _virsh("resume", DOMAIN)                   # cont -> RESUME
        q.wait_event("RESUME", since=since)
        since = q.mark()
        q.cmd("stop")                              # the proxy's client: STOP, RESUME seen by libvirt too
        q.wait_event("STOP", since=since)
        q.cmd("cont")
        since = q.mark()
        _virsh("reset", DOMAIN)                    # system_reset -> RESET
        q.wait_event("RESET", since=since)
        q.cmd("query-status")
        since = q.mark()
        _virsh("destroy", DOMAIN)                  # SIGTERM -> SHUTDOWN host-signal on both
        try:
            q.wait_event("SHUTDOWN", since=since, timeout=5)
        except Exception:
            pass
        q.close()
        rec.wait(20)
    finally:
        _virsh("destroy", DOMAIN, check=False)
        if rec is not None:
            rec.kill()
        _admin("daemon-log-outputs", old_outputs or "3:stderr")
        _admin("daemon-log-filters", old_filters or "")
        if daemon is not None:
            daemon.terminate()
            daemon.wait(15)
        shutil.rmtree(socks, ignore_errors=True)
    return {"proxy": proxy_out, "log": log}
