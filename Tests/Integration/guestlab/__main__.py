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
                print(f"   info: {json.dumps(r.info)}")
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
}


def capture_one(name: str, out_dir: Path, binary: str) -> Path:
    from .qmp import QMP
    from .recorder import Recorder, qmpreplay, read_qmprec
    scen, opts = CAPTURES[name][:2]
    opts = S.lab_options(scen) if opts is None else dict(opts)
    out = out_dir / f"{name}.qmprec"
    lab = Lab(name=name, **opts)
    lab.start()
    try:
        listen = lab.dir / "proxy.sock"
        rec = Recorder.proxy(f"unix:{listen}", lab.qmp_path("rec"), out, "--once", "--quiet", "--overwrite",
                             "--label", f"scenario={name}", "--label", "made-by=Scripts/capture-recordings",
                             binary=binary, log_dir=lab.dir)
        rec.start()
        rec.wait_listening()
        q = QMP(str(listen), name="capture")
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
        if rc != 0:
            raise RuntimeError(f"recorder failed for {name}:\n{rec.describe()}")
        rec_ = read_qmprec(out)
        got = Counter(rec_.event_names())
        print(f"{out}: {len(rec_.records)} records, events {dict(got)}")
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
              f"(TCG{', lab guest' if CAPTURES[n][1] and CAPTURES[n][1].get('guest') else ''}), "
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
