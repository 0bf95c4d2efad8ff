"""Small helpers shared by the notebooks: find the qmpreplay binary, run an analysis and
return its JSON (docs/ANALYSIS.md), and turn the JSON's times into seconds.

The notebooks never parse recordings themselves: everything comes from
`qmpreplay analyze NAME FILE --format json`, so a notebook shows exactly what the CLI and
the shell report.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def binary() -> str:
    """$QMPREPLAY_BIN, else a build in this checkout (release first), else `qmpreplay` on PATH."""
    env = os.environ.get("QMPREPLAY_BIN")
    if env:
        return env
    for candidate in (REPO / ".build/release/qmpreplay", REPO / ".build/debug/qmpreplay"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("qmpreplay")
    if found:
        return found
    raise RuntimeError(
        "qmpreplay is not built: run `swift build -c release` in "
        f"{REPO} (or set QMPREPLAY_BIN to the binary)")


def recording(default: str) -> str:
    """The recording to investigate: $QMPREPLAY_NOTEBOOK_RECORDING, else the default
    (a path relative to the repository, e.g. Recordings/guest-balloon.qmprec)."""
    chosen = os.environ.get("QMPREPLAY_NOTEBOOK_RECORDING") or default
    path = Path(chosen)
    if not path.is_absolute():
        path = REPO / path
    if not path.exists():
        raise FileNotFoundError(f"recording not found: {path}")
    return str(path)


def analyze(name: str, path: str, *, start: str | None = None, end: str | None = None) -> dict:
    """Runs `qmpreplay analyze NAME PATH --format json` (with --from/--to) and returns the
    parsed document. Raises with qmpreplay's own error message when it fails."""
    args = [binary(), "analyze", name, path, "--format", "json"]
    if start:
        args += ["--from", start]
    if end:
        args += ["--to", end]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


def cat(path: str, first: int, last: int) -> str:
    """The records #first..#last as `qmpreplay cat` prints them (for looking around a finding)."""
    args = [binary(), "cat", path, "--from", f"#{first}", "--to", f"#{last}", "--format", "jsonl"]
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def shown(path: str) -> str:
    """A recording's path as the notebook prints it: relative to the repository when it is
    inside it (so that stored outputs do not carry one machine's directories)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return path


def no_data(path: str, what: str) -> None:
    """Says, in one line, that the recording has nothing for this notebook to plot."""
    print(f"{shown(path)}: {what}; nothing to plot")


def seconds(t_ns: int | None) -> float | None:
    """JSON times are nanoseconds since the recording's start (receive clock)."""
    return None if t_ns is None else t_ns / 1e9


def mib(n: int | None) -> float | None:
    return None if n is None else n / (1 << 20)


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain fixed-width table (no pandas needed)."""
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])
