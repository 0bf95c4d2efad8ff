"""The fleet questions (docs/FLEET.md) as DuckDB SQL over qmpreplay's fleet table, and a
synthetic fleet to ask them of.

The table is what `qmpreplay analyze triage DIR --format jsonl` writes: one JSON line per
recording with its file, host, VM, time span and the triage document as `result`
(docs/fleet.schema.json). DuckDB reads it with `read_ndjson`; Spark writes the same rows as
Parquet (fleet/spark_triage.py). `Notebooks/fleet.ipynb` asks the questions; the tests check
each answer against qmpreplay's own single-file analyses.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import duckdb

from qmpreplay_nb import REPO, binary

PROFILES = ["mixed", "balloon-flood", "rtc-drift", "rx-filter", "lifecycle", "block-jobs", "migration"]

# Each question: a sentence and a query over the view `triage` (one row per recording).
# Times in the table are ns (t_ns, duration_ns); answers are sorted so that they compare.
QUESTIONS: dict[str, tuple[str, str]] = {
    "balloon_floods": (
        "Which VMs had BALLOON_CHANGE floods (deliveries at the 1 s throttle cadence), how many, how long?",
        """
        SELECT host, vm, count(*) AS floods, round(sum(f.duration_ns) / 1e9, 3) AS seconds
        FROM (SELECT host, vm, unnest(k.floods) AS f
              FROM (SELECT host, vm, unnest(result.results.throttle.keys) AS k FROM triage WHERE ok)
              WHERE k.event = 'BALLOON_CHANGE')
        GROUP BY host, vm ORDER BY host, vm
        """),
    "long_pauses": (
        "How often did a pause of more than 1 s happen, by cause (a migration's switch-over among them)?",
        """
        SELECT cause, count(*) AS pauses, round(max(p.duration_ns) / 1e9, 3) AS longest_s
        FROM (SELECT regexp_replace(p.cause, ' \\(.*', '') AS cause, p
              FROM (SELECT unnest(result.results.runstate.paused) AS p FROM triage WHERE ok))
        WHERE p.duration_ns > 1e9
        GROUP BY cause ORDER BY cause
        """),
    "migration_pauses": (
        "How many migrations paused a guest for more than 1 s?",
        """
        SELECT host, vm, count(*) AS pauses
        FROM (SELECT host, vm, unnest(result.results.runstate.paused) AS p FROM triage WHERE ok)
        WHERE p.cause LIKE 'migration%' AND p.duration_ns > 1e9
        GROUP BY host, vm ORDER BY host, vm
        """),
    "rtc_drift_by_host": (
        "Which hosts' guests drift their RTC (fitted drift, seconds per day, largest magnitude)?",
        """
        SELECT host, count(DISTINCT vm) AS vms, round(max(abs(s.drift_s_per_day)), 3) AS worst_s_per_day
        FROM (SELECT host, vm, unnest(result.results.rtc.series) AS s FROM triage WHERE ok)
        WHERE s.drift_s_per_day IS NOT NULL
        GROUP BY host ORDER BY host
        """),
    "triage_errors": (
        "Where did triage find errors (recordings with at least one error-level finding, per host)?",
        """
        SELECT host, count(*) AS recordings, sum(result.counts.error) AS error_findings
        FROM triage WHERE ok AND result.counts.error > 0
        GROUP BY host ORDER BY host
        """),
}


def profile(i: int, hosts: int) -> str:
    """Recording i's profile: half of each host's recordings share the host's own theme (so
    that hosts differ: host-02 and host-09 have drifting guests, host-01 and host-08 balloon
    floods, ...), the rest take every profile in turn."""
    host, round_ = i % hosts, i // hosts
    return PROFILES[host % len(PROFILES)] if round_ % 2 == 0 else PROFILES[(i + round_) % len(PROFILES)]


def make_fleet(folder: str | Path, count: int = 240, records: int = 1500, hosts: int = 12) -> Path:
    """Writes a synthetic fleet: `count` recordings from `qmpreplay synth` (every profile on
    every host), spread over `hosts` hosts and the week from 2026-11-30, one VM each (label vm=), plus
    the real migration captures shipped in Recordings/. Deterministic: same arguments, same files."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i in range(count):
        host = f"host-{i % hosts:02d}"
        day, hour = i % 7, 6 + (i * 5) % 14
        start = f"2026-11-30T{hour:02d}:00:00Z" if day == 0 else f"2026-12-{day:02d}T{hour:02d}:00:00Z"
        (folder / host).mkdir(exist_ok=True)
        subprocess.run([binary(), "synth", "-o", str(folder / host / f"vm-{i:04d}.qmprec"), "--records", str(records),
                        "--seed", str(1000 + i), "--profile", profile(i, hosts), "--host", host,
                        "--label", f"vm=vm-{i:04d}", "--start", start, "--force"],
                       check=True, capture_output=True)
    real = folder / "real"
    real.mkdir()
    for name in ("migration.qmprec", "migration-failed.qmprec", "panic-pause.qmprec"):
        shutil.copy(REPO / "Recordings" / name, real / name)
    return folder


def triage_table(folder: str | Path, out: str | Path) -> Path:
    """`qmpreplay analyze triage FOLDER --format jsonl > OUT` (exit 2 is allowed: a damaged
    file is one error line, and the rest of the table is still there)."""
    out = Path(out)
    with open(out, "wb") as f:
        done = subprocess.run([binary(), "analyze", "triage", str(folder), "--format", "jsonl"], stdout=f, stderr=subprocess.PIPE)
    if done.returncode not in (0, 2):
        raise RuntimeError(f"qmpreplay analyze triage {folder} failed ({done.returncode}): {done.stderr.decode().strip()}")
    return out


def connect(table: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the view `triage` over the JSON Lines table (or a Parquet
    folder or file written by the Spark job)."""
    con = duckdb.connect()
    path = str(table)
    if path.endswith(".jsonl"):
        # A large sample so that every analysis's members are seen before the types are fixed.
        con.execute(f"CREATE VIEW triage AS SELECT * FROM read_ndjson('{path}', sample_size=-1, maximum_object_size=268435456)")
    else:
        con.execute(f"CREATE VIEW triage AS SELECT * FROM read_parquet('{path}/**/*.parquet' )" if Path(path).is_dir()
                    else f"CREATE VIEW triage AS SELECT * FROM read_parquet('{path}')")
    return con


def answer(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple]:
    return con.execute(QUESTIONS[name][1]).fetchall()
