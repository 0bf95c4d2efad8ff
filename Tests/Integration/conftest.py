"""pytest fixtures for the guest-lab integration tests (docs/GUESTLAB.md).

Missing QEMU, guest kernel or `qmpreplay record`: the tests skip with an instruction, or
fail when $CI or $QMPREPLAY_REQUIRE_QEMU is set (so CI cannot pass by skipping).
Per-test timeout: $GUESTLAB_TEST_TIMEOUT seconds (default 120), enforced with SIGALRM.
On a failure the lab's QEMU and serial logs and the recorder's command line and stderr
are printed in the report, and the lab directory is kept.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from guestlab import Lab, LabUnavailable, guest_files, qemu_binary, qemu_img  # noqa: E402
from guestlab.recorder import Recorder, record_support  # noqa: E402
from guestlab.serve import Server  # noqa: E402

REQUIRE = bool(os.environ.get("CI") or os.environ.get("QMPREPLAY_REQUIRE_QEMU"))
# The binary's index cache (docs/INDEX.md) goes under .build, not the user's ~/.cache, for
# every qmpreplay these tests start; a test that sets XDG_CACHE_HOME itself keeps its own.
os.environ["XDG_CACHE_HOME"] = str(Path(__file__).resolve().parents[2] / ".build/test-cache")
TEST_TIMEOUT = int(os.environ.get("GUESTLAB_TEST_TIMEOUT", "120"))


def unavailable(message: str):
    """Skip, or fail under CI / QMPREPLAY_REQUIRE_QEMU."""
    if REQUIRE:
        pytest.fail(message + " [required: $CI or $QMPREPLAY_REQUIRE_QEMU is set]", pytrace=False)
    pytest.skip(message)


# --------------------------------------------------------------------------- reports
@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(node) -> bool:
    return any(getattr(node, f"rep_{w}", None) is not None and getattr(node, f"rep_{w}").failed
               for w in ("setup", "call"))


class _Timeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _per_test_timeout(request):
    if TEST_TIMEOUT <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def fire(signum, frame):
        raise _Timeout(f"test exceeded {TEST_TIMEOUT}s (GUESTLAB_TEST_TIMEOUT)")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------- availability
@pytest.fixture(scope="session")
def qemu_available():
    try:
        qemu_binary()
        qemu_img()
    except LabUnavailable as e:
        unavailable(str(e))
    return True


@pytest.fixture(scope="session")
def guest_available(qemu_available):
    try:
        return guest_files()
    except LabUnavailable as e:
        unavailable(str(e))


@pytest.fixture(scope="session")
def qemu_qmp_available():
    from guestlab.qmp import HAVE_QEMU_QMP
    if not HAVE_QEMU_QMP:
        unavailable("the Python package qemu.qmp is missing: run Scripts/integration-test "
                    "(it creates .venv with qemu.qmp and pytest)")
    return True


@pytest.fixture(scope="session")
def record_available(qemu_available, qemu_qmp_available):
    ok, why = record_support()
    if not ok:
        unavailable(f"qmpreplay record is not available: {why} (build it with `swift build`)")
    return True


# --------------------------------------------------------------------------- labs and recorders
class _Labs:
    def __init__(self):
        self.labs: list[Lab] = []

    def __call__(self, start: bool = True, **kw) -> Lab:
        lab = Lab(**kw)
        self.labs.append(lab)
        if start:
            lab.start()
        return lab

    def report_and_stop(self, failed: bool) -> None:
        for lab in self.labs:
            if failed:
                lab.keep = True
                print(f"\n===== lab {lab.dir} (kept)\n$ {' '.join(lab.args)}\n{lab.logs()}")
            try:
                lab.stop(timeout=5)
            except Exception as e:  # pragma: no cover
                print(f"lab stop failed: {e}")


@pytest.fixture
def labs(request, qemu_available, qemu_qmp_available):
    """Factory: ``labs(guest=True, nics=[...])`` starts a Lab, stopped after the test."""
    f = _Labs()
    yield f
    f.report_and_stop(_failed(request.node))


@pytest.fixture
def lab(labs):
    """A QEMU without guest, monitors "rec" (for the recorder) and "ctl" (for the test)."""
    return labs()


@pytest.fixture(scope="module")
def guest_lab(request, guest_available, qemu_qmp_available):
    """One booted guest per test module: two virtio NICs (net0, net1), a balloon, and
    monitors "rec" and "ctl". Tests must leave it running and usable."""
    lab = Lab(guest=True, nics=["net0", "net1"], balloon=True, name="guest")
    try:
        lab.start()
    except Exception:
        print(lab.logs())
        lab.stop()
        raise
    yield lab
    failed = any(_failed(i) for i in request.session.items if i.module is request.module)
    if failed:
        lab.keep = True
        print(f"\n===== guest lab {lab.dir} (kept)\n{lab.logs()}")
    lab.stop(timeout=5)


@pytest.fixture
def guest_ctl(guest_lab):
    """A QMP connection on the shared guest lab's "ctl" monitor, closed after the test
    (a monitor serves one client at a time)."""
    q = guest_lab.qmp("ctl")
    yield q
    q.close()


class _Recorders:
    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.recs: list[Recorder] = []

    def client(self, qmp_path: str, out=None, *extra: str) -> Recorder:
        rec = Recorder.client(qmp_path, out or self.out_dir / f"client{len(self.recs)}.qmprec", *extra,
                              log_dir=self.out_dir)
        self.recs.append(rec)
        return rec

    def proxy(self, listen: str, upstream: str, out=None, *extra: str) -> Recorder:
        rec = Recorder.proxy(listen, upstream, out or self.out_dir / f"proxy{len(self.recs)}.qmprec", *extra,
                             log_dir=self.out_dir)
        self.recs.append(rec)
        return rec

    def start_proxy(self, lab: Lab, *extra: str, out=None) -> tuple[Recorder, str]:
        """A proxy on unix:LAB/proxy.sock in front of the lab's "up" monitor, listening;
        returns it and the socket path for clients."""
        path = lab.dir / "proxy.sock"
        rec = self.proxy(f"unix:{path}", lab.qmp_path("up"), out, *extra)
        rec.start()
        rec.wait_listening()
        return rec, str(path)


@pytest.fixture
def recorders(request, tmp_path, record_available):
    """Factory for ``qmpreplay record`` processes; leftovers are killed after the test."""
    f = _Recorders(tmp_path)
    yield f
    failed = _failed(request.node)
    for rec in f.recs:
        if failed:
            print(f"\n===== recorder\n{rec.describe()}")
            if rec.out.exists():
                print(f"----- {rec.out} (last 3000 bytes)\n{rec.out.read_bytes()[-3000:].decode('utf-8', 'replace')}")
        rec.kill()


@pytest.fixture
def short_dir(tmp_path):
    """A short directory for unix sockets (pytest's tmp_path can exceed 107 bytes)."""
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="glt-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def plab(labs):
    """QEMU with monitors "up" (a proxy's upstream) and "ctl"."""
    return labs(monitors=("up", "ctl"))


@pytest.fixture
def tiny_fs(short_dir):
    """A 64 KiB tmpfs, to fill the disk under a recorder (needs root and mount)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    d = short_dir / "full"
    d.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {p.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.fixture
def serve():
    """Factory: ``serve("lifecycle-qemu.qmprec", "--speed", "10")`` starts `qmpreplay serve`
    on a unix socket (a recording name in Recordings/ or a path); stopped after the test."""
    servers: list[Server] = []

    def start(recording: str, *extra: str) -> Server:
        s = Server(recording, *extra)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
        shutil.rmtree(s.dir, ignore_errors=True)
