"""Command line of the guest lab (run with PYTHONPATH=Tests/Integration):

  python -m guestlab boot                      boot the guest once and print timings
  python -m guestlab scenario NAME [...]       run scenarios against a fresh lab, print the events
  python -m guestlab capture [--out DIR] [--only NAME]... [--qmpreplay BIN]
                                               regenerate the real captures (Scripts/capture-recordings)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from . import Lab, LabUnavailable, REPO
from . import scenarios as S


def cmd_boot(_args) -> int:
    t0 = time.monotonic()
    lab = Lab(guest=True, nics=["net0"], balloon=True)
    lab.start(wait_ready=False)
    try:
        q = lab.qmp("ctl")
        t_qmp = time.monotonic() - t0
        rel = lab.wait_booted()
        t_boot = time.monotonic() - t0
        t1 = time.monotonic()
        lab.guest.run("true")
        t_cmd = time.monotonic() - t1
        info = lab.guest.run("cat /proc/uptime; lsmod | wc -l; ls /sys/class/net | tr '\\n' ' '").split("\n")
        print(f"kernel:        {rel}")
        print(f"QMP ready:     {t_qmp:.2f} s after start")
        print(f"guest ready:   {t_boot:.2f} s after start (guest uptime then: {info[0].split()[0]} s)")
        print(f"command round trip: {t_cmd * 1000:.0f} ms")
        print(f"modules loaded: {int(info[1]) - 1}; interfaces: {info[2].strip()}")
        print(f"QEMU:          {q.cmd('query-version')['package']}")
    finally:
        lab.stop()
    print(f"total:         {time.monotonic() - t0:.2f} s")
    return 0


def cmd_scenario(args) -> int:
    for name in args.names:
        if name not in S.SCENARIOS:
            print(f"unknown scenario {name} (have {', '.join(S.SCENARIOS)})", file=sys.stderr)
            return 64
        t0 = time.monotonic()
        with Lab(**S.lab_options(name)) as lab:
            if name in S.RAW_CLIENT:
                from .rawclient import RawClient
                q = RawClient(lab.qmp_path("ctl"))
            else:
                q = lab.qmp("ctl")
            kw = {"hidden": lab.qmp("rec")} if name == "rx_filter" else {}
            t1 = time.monotonic()
            r = S.SCENARIOS[name](lab, q, **kw)
            print(f"== {name}: lab {t1 - t0:.2f} s, scenario {time.monotonic() - t1:.2f} s")
            print(f"   events: {dict(Counter(r.names()))}")
            if args.verbose:
                for e in r.events:
                    print("   " + json.dumps(e))
            if r.info:
                print(f"   info: {json.dumps(r.info, ensure_ascii=False)}")
    return 0


# --------------------------------------------------------------------------- capture
# name -> (scenario, lab options, what the recording shows)
CAPTURES = {
    "guest-balloon": ("balloon", dict(guest=True, balloon=True),
                      "balloon targets one by one, a burst of five within 1 s (throttled), back to full"),
    "guest-rtc": ("rtc", dict(guest=True),
                  "guest sets its clock +3600 s, +20 s, back, writing the RTC each time"),
    "guest-rx-filter": ("rx_filter", dict(guest=True, nics=["net0", "net1"]),
                        "two virtio NICs, promisc/allmulti/IPv6/MAC changes, the per-NIC latch, "
                        "one re-arm by an unrecorded client"),
    "lifecycle-qemu": ("lifecycle", dict(),
                       "stop, cont, system_reset, system_powerdown, quit (no guest)"),
    "block-jobs": ("block_jobs", None,
                   "block-stream; blockdev-mirror throttled, paused, resumed, cancelled; mirror to ready, completed"),
    "vnc": ("vnc", dict(vnc="tcp"), "two RFB sessions on 127.0.0.1 with query-vnc while connected"),
    # lab options None: S.lab_options(scenario)
    "migration": ("migration", None,
                  "live migration to a second QEMU (-incoming unix:), recorded on the source: "
                  "events capability, migrate, query-migrate, status postmigrate"),
    "migration-failed": ("migration_failed", None,
                         "two failed migrations: destination SIGKILLed mid-way (64 KiB/s), then "
                         "SIGKILLed while the source waits in pre-switchover (STOP ... failed, RESUME)"),
    "panic-none": ("panic_none", None, "guest panic (sysrq c, pvpanic) with -action panic=none"),
    "panic-pause": ("panic_pause", None,
                    "guest panic with -action panic=pause, then system_reset, cont, the guest boots again"),
    "panic-shutdown": ("panic_shutdown", None,
                       "guest panic with -action panic=shutdown: QEMU exits"),
    "watchdog-reset": ("watchdog_reset", None,
                       "i6300esb armed and fed by the guest, then starved; -watchdog-action reset"),
    "watchdog-pause": ("watchdog_pause", None,
                       "i6300esb starved with -watchdog-action pause, then cont"),
    "watchdog-none": ("watchdog_none", None, "i6300esb starved with -watchdog-action none"),
    "io-errors": ("io_errors", None,
                  "blkdebug-injected errors on six virtio-blk disks: werror report/enospc/stop, "
                  "rerror report, ENOSPC; cont after each stop; werror=ignore last"),
    "unplug-stuck": ("unplug_stuck", None,
                     "device_del (twice) of a NIC on a pcie-root-port with no OS to answer: no "
                     "DEVICE_DELETED; a usb-kbd unplug that completes at once; device_del refused on "
                     "pcie.0; system_reset completes the NIC's unplug"),
    "block-jobs-reuse": ("block_jobs_reuse", None,
                         "commit, active commit, mirror, backup (dismissed by hand), stream, all "
                         "with job-id job0; reuse while running refused"),
    "qemu-killed": ("qemu_killed", None,
                    "a short session, then SIGKILL while dump-guest-memory hangs on a FIFO"),
    "quirky-ids": ("quirky_ids", None,
                   "raw bytes: single-quoted commands, escaped/raw UTF-8, numeric, float, huge, "
                   "object, array and null ids, no ids, unknown commands, two commands on a line"),
    "reboot-loop": ("reboot_loop", None, "the guest reboots itself three times in a row"),
    "job-error-cancelled": ("job_error_cancelled", None,
                            "blockdev-mirror with on-target-error stop onto a blkdebug target that "
                            "fails every write: BLOCK_JOB_ERROR, paused; unforced cancel refused; "
                            "resume, error again; forced cancel"),
}


def capture_options(name: str) -> dict:
    """The Lab keyword arguments of capture ``name`` (a CAPTURES key)."""
    scen, opts = CAPTURES[name][:2]
    return S.lab_options(scen) if opts is None else dict(opts)



def record_scenario(lab: Lab, scen: str, out: Path, *extra: str, proxy=None):
    """Record scenario ``scen`` (a scenarios.SCENARIOS key) on the started ``lab`` into
    ``out`` the way the captures are made: ``qmpreplay record --listen unix:LAB/proxy.sock
    --upstream <the "rec" monitor> --once --quiet --force`` plus ``extra``, the
    scenario's client (qemu.qmp, or a raw client for RAW_CLIENT) connected through it.
    Returns the Recorder after it exited with status 0 (3 for qemu_killed; else RuntimeError).

    ``proxy(listen, upstream, out, *args)`` makes the Recorder (default
    ``Recorder.proxy``); the pytest ``recorders.proxy`` fits, so the test fixtures
    clean up and report it."""
    from .qmp import QMP
    from .recorder import Recorder
    from .rawclient import RawClient
    make = proxy or Recorder.proxy
    listen = lab.dir / "proxy.sock"
    rec = make(f"unix:{listen}", lab.qmp_path("rec"), out, "--once", "--quiet", "--force", *extra)
    rec.start()
    rec.wait_listening()
    q = RawClient(str(listen)) if scen in S.RAW_CLIENT else QMP(str(listen), name="capture")
    hidden = lab.qmp("ctl") if scen == "rx_filter" else None
    try:
        kw = {"hidden": hidden} if hidden is not None else {}
        if scen == "vnc":
            kw["sessions"] = 2
        S.SCENARIOS[scen](lab, q, **kw)
        if scen in ("balloon", "rtc"):
            time.sleep(1.2)        # a throttled event may still be on its way
    finally:
        q.close()
    rc = rec.wait(30)
    # Exit status 3: the recording is complete, and QEMU went away without SHUTDOWN, which
    # is what qemu_killed does on purpose (docs/RECORDER.md, "Exit status").
    if rc != 0 and not (rc == 3 and scen == "qemu_killed"):
        raise RuntimeError(f"recorder failed for {scen}:\n{rec.describe()}")
    return rec


def capture_one(name: str, out_dir: Path, binary: str) -> Path:
    import functools
    from .recorder import Recorder, qmpreplay, read_qmprec
    scen = CAPTURES[name][0]
    opts = capture_options(name)
    out = out_dir / f"{name}.qmprec"
    t0 = time.monotonic()
    lab = Lab(name=name, **opts)
    lab.start()
    try:
        record_scenario(lab, scen, out, "--label", f"scenario={name}",
                        "--label", "made-by=Scripts/capture-recordings",
                        proxy=functools.partial(Recorder.proxy, binary=binary, log_dir=lab.dir))
        rec_ = read_qmprec(out)
        got = Counter(rec_.event_names())
        print(f"{out}: {len(rec_.records)} records, {out.stat().st_size} bytes, "
              f"{time.monotonic() - t0:.1f} s, events {dict(got)}")
        v = qmpreplay("validate", str(out), binary=binary)
        if v.returncode != 0:
            print(f"  note: validate reported findings:\n{v.stdout_text}{v.stderr_text}")
        return out
    finally:
        lab.stop()


def cmd_capture(args) -> int:
    from .recorder import qmpreplay_binary, record_support
    binary = args.qmpreplay or qmpreplay_binary()
    ok, why = record_support(binary)
    if not ok:
        print(f"capture: {why}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = args.only or list(CAPTURES)
    for n in names:
        if n not in CAPTURES:
            print(f"unknown capture {n} (have {', '.join(CAPTURES)})", file=sys.stderr)
            return 64
    t0 = time.monotonic()
    for n in names:
        capture_one(n, out_dir, binary)
    print(f"{len(names)} captures in {time.monotonic() - t0:.1f} s")
    print("\n| file | what it shows | how it was made |\n|---|---|---|")
    for n in names:
        print(f"| `{n}.qmprec` | {CAPTURES[n][2]} | `Scripts/capture-recordings`: real QEMU "
              f"(TCG{', lab guest' if capture_options(n).get('guest') else ''}), "
              f"`qmpreplay record --listen ... --once`, scenario `{CAPTURES[n][0]}` (Tests/Integration/guestlab) |")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="guestlab")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("boot")
    s = sub.add_parser("scenario")
    s.add_argument("names", nargs="+")
    s.add_argument("-v", "--verbose", action="store_true")
    c = sub.add_parser("capture")
    c.add_argument("--out", default=str(REPO / "Recordings"))
    c.add_argument("--only", action="append")
    c.add_argument("--qmpreplay")
    args = p.parse_args(argv)
    try:
        return {"boot": cmd_boot, "scenario": cmd_scenario, "capture": cmd_capture}[args.cmd](args)
    except LabUnavailable as e:
        print(f"guestlab: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
