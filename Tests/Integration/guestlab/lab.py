"""Start and stop a real QEMU (optionally with the lab's tiny Linux guest) for tests.

    with Lab(guest=True, nics=["net0", "net1"], balloon=True) as lab:
        lab.guest.run("ip link set eth0 promisc on")
        ctl = lab.qmp()              # a qemu.qmp connection on the "ctl" monitor
        rec = lab.qmp_path("rec")    # another monitor, for qmpreplay record

Every Lab has its own short directory under /tmp (unix socket paths are limited to
107 bytes) holding the monitors' sockets, the serial socket, disk images, and the logs
``qemu.log`` (QEMU's stdout/stderr and command line) and ``serial.log`` (the guest
console). :meth:`Lab.logs` returns their tails for failure reports.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[3]
INSTALL_HINT = ("install it with Scripts/install-deps (apt-get install qemu-system-x86 qemu-utils "
                "busybox-static cpio kmod) and build the guest with Scripts/guestlab build")


class LabUnavailable(Exception):
    """QEMU or the guest kernel is not there; the message says how to get it."""


class GuestError(Exception):
    pass


class GuestCommandError(GuestError):
    def __init__(self, cmd: str, status: int, output: str):
        super().__init__(f"guest command failed with status {status}: {cmd}\n{output}")
        self.cmd, self.status, self.output = cmd, status, output


def lab_cache() -> Path:
    return Path(os.environ.get("QMPREPLAY_LAB_CACHE") or Path.home() / ".cache" / "qmpreplay-lab")


def qemu_binary() -> str:
    path = os.environ.get("QMPREPLAY_QEMU") or shutil.which("qemu-system-x86_64")
    if not path or not os.access(path, os.X_OK):
        raise LabUnavailable(f"{path or 'qemu-system-x86_64'} not found: " + INSTALL_HINT)
    return path


def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if not path:
        raise LabUnavailable("qemu-img not found: " + INSTALL_HINT)
    return path


def guest_files() -> tuple[str, str]:
    """(kernel, initrd) from $GUESTLAB_KERNEL/$GUESTLAB_INITRD or the cache's lab.env."""
    k, i = os.environ.get("GUESTLAB_KERNEL"), os.environ.get("GUESTLAB_INITRD")
    if not (k and i):
        env = lab_cache() / "lab.env"
        if env.exists():
            vals = dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)
            k, i = k or vals.get("GUESTLAB_KERNEL"), i or vals.get("GUESTLAB_INITRD")
    if not (k and i and Path(k).exists() and Path(i).exists()):
        raise LabUnavailable(f"no guest kernel/initramfs in {lab_cache()}: run Scripts/guestlab build")
    return k, i


@dataclass
class Disk:
    """A qcow2 (or raw) image exposed as a -blockdev node ``node`` (file node ``node-file``).
    ``backing`` makes it an overlay of another image; ``device`` attaches it to the guest
    as a virtio-blk device with that id."""
    node: str
    size: str = "32M"
    fmt: str = "qcow2"
    backing: Optional["Disk"] = None
    fill: Optional[str] = None          # qemu-io pattern writes, e.g. "0x5a 0 8M"
    device: Optional[str] = None
    path: Optional[Path] = None         # set by the lab
    # A blkdebug node ``<node>-dbg`` between the format node and the file node, e.g.
    # {"inject-error": [{"event": "write_aio", "errno": 5, "iotype": "write"}]}
    # (members as in QEMU's BlockdevOptionsBlkdebug, without image/node-name).
    blkdebug: Optional[dict] = None
    werror: Optional[str] = None        # virtio-blk werror=/rerror= (report, stop, enospc, ignore)
    rerror: Optional[str] = None
    serial: Optional[str] = None        # virtio-blk serial (the guest sees /sys/block/vdX/serial)

    def create(self, directory: Path) -> Path:
        self.path = directory / f"{self.node}.{self.fmt}"
        cmd = [qemu_img(), "create", "-q", "-f", self.fmt]
        if self.backing is not None:
            assert self.backing.path is not None, "create the backing disk first"
            cmd += ["-b", str(self.backing.path), "-F", self.backing.fmt]
        cmd += [str(self.path), self.size]
        subprocess.run(cmd, check=True, capture_output=True)
        if self.fill:
            qemu_io = shutil.which("qemu-io")
            if qemu_io is None:
                raise LabUnavailable("qemu-io not found: " + INSTALL_HINT)
            pattern, offset, length = self.fill.split()
            subprocess.run([qemu_io, "-f", self.fmt, "-c", f"write -P {pattern} {offset} {length}", str(self.path)],
                           check=True, capture_output=True)
        return self.path

    def args(self) -> list[str]:
        a = ["-blockdev", f"driver=file,filename={self.path},node-name={self.node}-file"]
        below = f"{self.node}-file"
        if self.blkdebug is not None:
            a += ["-blockdev", json.dumps({"driver": "blkdebug", "node-name": f"{self.node}-dbg",
                                           "image": below, **self.blkdebug}, separators=(",", ":"))]
            below = f"{self.node}-dbg"
        a += ["-blockdev", f"driver={self.fmt},file={below},node-name={self.node}"
              + (f",backing={self.backing.node}" if self.backing is not None else "")]
        if self.device:
            dev = f"virtio-blk-pci,drive={self.node},id={self.device}"
            for k in ("werror", "rerror", "serial"):
                if getattr(self, k):
                    dev += f",{k}={getattr(self, k)}"
            a += ["-device", dev]
        return a


def _free_port(lo: int, hi: int) -> int:
    for port in range(lo, hi + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free TCP port in {lo}..{hi}")


class Guest:
    """The guest's serial console: run shell commands and read their output.

    The lab's init reads ``@@GL <id> <base64 command>`` lines and answers with
    ``@@GL-BEGIN <id>``, the output, ``@@GL-END <id> <status>``.
    """

    def __init__(self, path: Path, log_path: Path):
        self.path = path
        self.log_path = log_path
        self._log = open(log_path, "ab", buffering=0)
        self._buf = ""          # everything received, \r removed
        self._cond = threading.Condition()
        self._next_id = 1
        self._sock: Optional[socket.socket] = None
        self._reader: Optional[threading.Thread] = None
        self.closed = False

    def connect(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(self.path))
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise GuestError(f"serial socket {self.path} did not appear")
                time.sleep(0.01)
        self._sock = s
        self._reader = threading.Thread(target=self._read, name="guest-serial", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                with self._cond:
                    self.closed = True
                    self._cond.notify_all()
                return
            self._log.write(data)
            with self._cond:
                self._buf += data.decode("utf-8", "replace").replace("\r", "")
                self._cond.notify_all()

    @property
    def output(self) -> str:
        """Everything the console printed so far."""
        with self._cond:
            return self._buf

    def mark(self) -> int:
        with self._cond:
            return len(self._buf)

    def wait_for(self, pattern: str, timeout: float = 30.0, since: int = 0) -> re.Match:
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(self._buf, since)
                if m:
                    return m
                if self.closed:
                    raise GuestError(f"serial console closed while waiting for {pattern!r}; "
                                     f"last output:\n{self._buf[-2000:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"guest: no {pattern!r} within {timeout}s; last output:\n{self._buf[-2000:]}")
                self._cond.wait(left)

    def wait_ready(self, timeout: float = 60.0, since: int = 0) -> str:
        """Wait for the init's READY line (after boot or reboot); returns the kernel release."""
        return self.wait_for(r"^@@GL-READY (\S+)", timeout, since).group(1)

    def send_line(self, line: str) -> None:
        assert self._sock is not None, "not connected"
        self._sock.sendall(line.encode() + b"\n")

    def start(self, cmd: str) -> int:
        """Send a command without waiting; returns its id for :meth:`wait`."""
        with self._cond:
            cid = self._next_id
            self._next_id += 1
        self.send_line(f"@@GL {cid} {base64.b64encode(cmd.encode()).decode()}")
        return cid

    def wait(self, cid: int, timeout: float = 30.0, cmd: str = "", check: bool = True) -> str:
        status, out = self._result(cid, timeout)
        if check and status != 0:
            raise GuestCommandError(cmd or f"#{cid}", status, out)
        return out

    def run(self, cmd: str, timeout: float = 30.0, check: bool = True) -> str:
        """Run a shell command in the guest (busybox sh), return its output (stdout+stderr).
        Raises GuestCommandError on a non-zero status when ``check``."""
        return self.wait(self.start(cmd), timeout, cmd, check)

    def run_status(self, cmd: str, timeout: float = 30.0) -> tuple[int, str]:
        """Run a command; return (exit status, output) without raising."""
        return self._result(self.start(cmd), timeout)

    def _result(self, cid: int, timeout: float) -> tuple[int, str]:
        # The init prints "\n@@GL-END" after the output, so the marker always starts a line;
        # that one newline is not part of the output.
        begin = self.wait_for(rf"^@@GL-BEGIN {cid}$", timeout)
        end = self.wait_for(rf"^@@GL-END {cid} (\d+)$", timeout, begin.end())
        out = self._buf[begin.end() + 1:end.start()]
        return int(end.group(1)), out[:-1] if out.endswith("\n") else out

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(2)
        self._log.close()


class Lab:
    """One QEMU process with named QMP monitors and, optionally, the lab's Linux guest.

    Options:
      guest          boot the lab kernel + initramfs (Scripts/guestlab build) with a serial console
      memory         guest RAM (default 256M)
      monitors       names of QMP monitors, each a unix socket (default ("rec", "ctl"))
      pretty         names of monitors that use pretty=on (multi-line JSON)
      nics           ids of virtio-net NICs (user networking), MACs 52:54:00:12:34:01, :02, ...
      balloon        add virtio-balloon-pci (id balloon0)
      pvpanic        add the ISA pvpanic device (GUEST_PANICKED on guest panic)
      panic_action   -action panic=... (QEMU 7.2's default is poweroff; "pause" keeps QEMU up)
      cdrom          add an empty IDE cdrom: drive cd0, device cdrom0 (on q35's AHCI ide.0)
      disks          Disk objects (qcow2 images made with qemu-img, -blockdev nodes)
      vnc            serve VNC: True/"unix" on a unix socket (vnc_path), "tcp" on 127.0.0.1:59xx
                     (events then name the client's host and port); see vnc_address
      virtio_serial  add virtio-serial with a port "gl.port" (id port0) backed by a socket
      no_shutdown    -no-shutdown (a guest poweroff stops instead of exiting)
      watchdog       add a watchdog device: "i6300esb" (PCI, id wdt0)
      watchdog_action  -watchdog-action ... (reset, shutdown, poweroff, pause, debug, none,
                     inject-nmi; QEMU's default is reset)
      root_ports     number of pcie-root-port devices rp0, rp1, ... (hotplug targets on q35)
      usb            add a qemu-xhci USB controller (id usb0; usb devices go on bus usb0.0)
      incoming       -incoming URI: wait for an incoming migration (no guest boot is awaited)
      extra          more QEMU arguments
      keep           keep the lab directory after stop (also when $GUESTLAB_KEEP is set)
      firmware       "halt" (the default without a guest): a 64 KiB BIOS that halts the CPU at
                     once, so no firmware runs and no firmware reset (SeaBIOS resets the machine
                     after a system_reset, and every 60 s when nothing boots) adds RESET events;
                     "seabios" (the default with a guest): QEMU's own firmware
      workdir        use this directory (sockets, logs) instead of a new /tmp/gl-XXXX; not removed
    """

    def __init__(self, *, guest: bool = False, memory: str = "256M",
                 monitors: Sequence[str] = ("rec", "ctl"), pretty: Sequence[str] = (),
                 nics: Sequence[str] = (), balloon: bool = False, pvpanic: bool = False,
                 panic_action: Optional[str] = None,
                 cdrom: bool = False, disks: Sequence[Disk] = (), vnc=False,
                 virtio_serial: bool = False, no_shutdown: bool = False,
                 watchdog: Optional[str] = None, watchdog_action: Optional[str] = None,
                 root_ports: int = 0, usb: bool = False, incoming: Optional[str] = None,
                 extra: Sequence[str] = (), append: str = "", keep: bool = False,
                 name: str = "lab", workdir: Optional[Path] = None, firmware: Optional[str] = None):
        # the options as given, for twin() (a migration destination with the same devices)
        self._options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.guest_enabled = guest
        self.memory = memory
        self.monitors = list(monitors)
        self.pretty = set(pretty)
        self.nics = list(nics)
        self.balloon = balloon
        self.pvpanic = pvpanic
        self.panic_action = panic_action
        self.cdrom = cdrom
        self.disks = list(disks)
        self.vnc = vnc
        self._vnc_port = 0
        self.virtio_serial = virtio_serial
        self.no_shutdown = no_shutdown
        self.watchdog = watchdog
        self.watchdog_action = watchdog_action
        self.root_ports = root_ports
        self.usb = usb
        self.incoming = incoming
        self.extra = list(extra)
        self.append = append
        self.keep = keep or bool(os.environ.get("GUESTLAB_KEEP"))
        self.name = name
        self.firmware = firmware or ("seabios" if guest else "halt")
        # A given workdir (e.g. another lab's, to restart QEMU on the same socket paths)
        # is left in place by stop(); a lab's own directory is removed unless keep.
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="gl-", dir="/tmp"))
        self.qemu_log = self.dir / "qemu.log"
        self.serial_log = self.dir / "serial.log"
        self.proc: Optional[subprocess.Popen] = None
        self.guest: Optional[Guest] = None
        self._qmps: list = []
        self.args: list[str] = []
        self.started_at = 0.0
        self.boot_seconds: Optional[float] = None

    def twin(self, **overrides) -> "Lab":
        """A new (not started) Lab with the same options, e.g. a migration destination:
        ``lab.twin(incoming="unix:/tmp/.../mig.sock", monitors=("ctl",))``. Disks are shared
        objects (their images are not created again) and workdir/keep are not copied."""
        opts = dict(self._options)
        opts.pop("workdir", None)
        opts.update(overrides)
        return Lab(**opts)

    # -- paths
    def qmp_path(self, name: str = "rec") -> str:
        if name not in self.monitors:
            raise KeyError(f"no monitor {name!r} (have {self.monitors})")
        return str(self.dir / f"{name}.sock")

    @property
    def vnc_path(self) -> str:
        return str(self.dir / "vnc.sock")

    @property
    def vnc_address(self):
        """The VNC server's address: the unix socket path, or (host, port) with vnc="tcp"."""
        return ("127.0.0.1", self._vnc_port) if self.vnc == "tcp" else self.vnc_path

    @property
    def serial_path(self) -> str:
        return str(self.dir / "serial.sock")

    @property
    def port_path(self) -> str:
        return str(self.dir / "port0.sock")

    def nic_mac(self, nic: str) -> str:
        return f"52:54:00:12:34:{self.nics.index(nic) + 1:02x}"

    def command_line(self) -> list[str]:
        a = [qemu_binary(), "-name", self.name, "-nodefaults", "-no-user-config", "-display", "none",
             "-accel", "tcg", "-machine", "q35", "-m", self.memory, "-smp", "1"]
        if self.firmware == "halt":
            a += ["-bios", str(self._halt_bios())]
        for m in self.monitors:
            pretty = ",pretty=on" if m in self.pretty else ""
            a += ["-chardev", f"socket,id=mon-{m},path={self.qmp_path(m)},server=on,wait=off",
                  "-mon", f"chardev=mon-{m},mode=control{pretty}"]
        if self.guest_enabled:
            kernel, initrd = guest_files()
            cmdline = "console=ttyS0 quiet loglevel=1 panic=0 " + self.append
            a += ["-kernel", kernel, "-initrd", initrd, "-append", cmdline.strip(),
                  "-chardev", f"socket,id=ser0,path={self.serial_path},server=on,wait=off",
                  "-serial", "chardev:ser0"]
        for nic in self.nics:
            a += ["-netdev", f"user,id=h-{nic}",
                  "-device", f"virtio-net-pci,netdev=h-{nic},id={nic},mac={self.nic_mac(nic)}"]
        if self.balloon:
            a += ["-device", "virtio-balloon-pci,id=balloon0"]
        if self.pvpanic:
            a += ["-device", "pvpanic"]
        if self.panic_action:
            a += ["-action", f"panic={self.panic_action}"]
        if self.cdrom:
            a += ["-drive", "if=none,id=cd0,media=cdrom", "-device", "ide-cd,drive=cd0,id=cdrom0,bus=ide.0"]
        for d in self.disks:
            a += d.args()
        if self.vnc == "tcp":
            self._vnc_port = _free_port(5900, 5999)
            a += ["-vnc", f"127.0.0.1:{self._vnc_port - 5900}"]
        elif self.vnc:
            a += ["-vnc", f"unix:{self.vnc_path}"]
        if self.virtio_serial:
            a += ["-device", "virtio-serial-pci,id=vser0",
                  "-chardev", f"socket,id=port0c,path={self.port_path},server=on,wait=off",
                  "-device", "virtserialport,chardev=port0c,name=gl.port,id=port0"]
        if self.no_shutdown:
            a += ["-no-shutdown"]
        if self.watchdog:
            a += ["-device", f"{self.watchdog},id=wdt0"]
        if self.watchdog_action:
            a += ["-watchdog-action", self.watchdog_action]
        for i in range(self.root_ports):
            a += ["-device", f"pcie-root-port,id=rp{i},chassis={i + 1},bus=pcie.0,addr={0x10 + i:#x}"]
        if self.usb:
            a += ["-device", "qemu-xhci,id=usb0"]
        if self.incoming:
            a += ["-incoming", self.incoming]
        return a + self.extra

    def _halt_bios(self) -> Path:
        """At the reset vector F000:FFF0: cli; hlt; jmp back to hlt."""
        path = self.dir / "halt.bios"
        if not path.exists():
            code = bytes([0xFA, 0xF4, 0xEB, 0xFD])
            path.write_bytes(b"\xf4" * (65536 - 16) + code + b"\x90" * 12)
        return path

    # -- lifecycle
    def start(self, wait_ready: bool = True, boot_timeout: float = 90.0) -> "Lab":
        for d in self.disks:
            if d.path is None:
                if d.backing is not None and d.backing.path is None:
                    d.backing.create(self.dir)
                d.create(self.dir)
        self.args = self.command_line()
        for stale in [self.qmp_path(m) for m in self.monitors] + [self.serial_path, self.vnc_path, self.port_path]:
            if os.path.exists(stale):          # a previous QEMU's sockets (restart in the same workdir)
                os.unlink(stale)
        log = open(self.qemu_log, "ab")
        log.write(("$ " + shlex.join(self.args) + "\n").encode())
        log.flush()
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        try:
            wanted = [self.qmp_path(m) for m in self.monitors]
            if self.guest_enabled:
                wanted.append(self.serial_path)
            self._wait_paths(wanted, 15.0)
            if self.guest_enabled:
                self.guest = Guest(Path(self.serial_path), self.serial_log)
                self.guest.connect()
                if wait_ready and not self.incoming:
                    self.wait_booted(boot_timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def wait_booted(self, timeout: float = 90.0) -> str:
        assert self.guest is not None
        rel = self.guest.wait_ready(timeout)
        self.boot_seconds = time.monotonic() - self.started_at
        return rel

    def _wait_paths(self, paths: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(os.path.exists(p) for p in paths):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited with status {self.proc.returncode} at start:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"QEMU did not create {paths} within {timeout}s:\n{self.logs()}")
            time.sleep(0.005)

    def qmp(self, monitor: str = "ctl", name: Optional[str] = None):
        """A connected, negotiated :class:`guestlab.qmp.QMP` on one of the lab's monitors.
        Closed by :meth:`stop`."""
        from .qmp import QMP
        q = QMP(self.qmp_path(monitor), name=name or f"guestlab-{monitor}")
        self._qmps.append(q)
        return q

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float = 10.0) -> Optional[int]:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal to QEMU (SIGKILL by default) and, for SIGKILL, reap it."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            if sig == signal.SIGKILL:
                self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """Clean shutdown: ``quit`` on a monitor (else SIGTERM), then SIGKILL after ``timeout``.
        Closes QMP clients and the console; removes the lab directory unless ``keep``."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    ctl = next((q for q in self._qmps if not q.disconnected), None)
                    if ctl is not None:
                        ctl.quit(timeout=5)
                    else:
                        os.kill(self.proc.pid, signal.SIGTERM)
                except Exception:
                    pass
                if self.wait_exit(timeout) is None:
                    self.kill()
            rc = self.proc.poll()
        for q in self._qmps:
            q.close()
        self._qmps.clear()
        if self.guest is not None:
            self.guest.close()
        if not self.keep and self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return rc

    def logs(self, tail: int = 4000) -> str:
        """The tails of qemu.log and serial.log, for failure reports."""
        parts = []
        for p in (self.qemu_log, self.serial_log):
            try:
                text = p.read_bytes().decode("utf-8", "replace").replace("\r", "")
            except FileNotFoundError:
                continue
            parts.append(f"--- {p} ({len(text)} chars)\n{text[-tail:]}")
        return "\n".join(parts) or "(no logs)"

    def __enter__(self) -> "Lab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
