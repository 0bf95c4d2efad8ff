"""The fleet table (docs/FLEET.md) through DuckDB and Spark, checked against qmpreplay's
own single-file analyses.

- The notebook's questions (Notebooks/fleet_sql.py), asked with DuckDB of
  `qmpreplay analyze triage DIR --format jsonl`, give the answers computed here file by
  file from `qmpreplay analyze NAME FILE --format json` (throttle, runstate, rtc, triage) and
  `qmpreplay info FILE --json`: the nested triage document in the table and the single
  analyses agree, and the SQL reads them right.
- The Spark job (fleet/spark_triage.py) in local mode writes, as Parquet, the same table:
  same rows, same identity columns, same answers to every question.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import unavailable
from guestlab.recorder import qmpreplay_binary

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Notebooks"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A small fleet (every profile, 12 hosts), the real captures, one damaged file, and its table."""
    try:
        import duckdb  # noqa: F401
    except ImportError:
        unavailable("duckdb is not installed (.venv/bin/pip install duckdb; Scripts/integration-test does)")
    import os
    os.environ["QMPREPLAY_BIN"] = qmpreplay_binary()
    import fleet_sql
    root = tmp_path_factory.mktemp("fleet")
    folder = fleet_sql.make_fleet(root / "fleet", count=42, records=700)
    (folder / "real" / "broken.qmprec").write_bytes(b"this is not a recording\n")
    table = fleet_sql.triage_table(folder, root / "triage.jsonl")
    return fleet_sql, folder, table


def single(*args: str) -> dict:
    done = subprocess.run([qmpreplay_binary(), *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def recordings(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.qmprec") if p.name != "broken.qmprec")


def identity(path: Path) -> tuple[str | None, str | None]:
    header = single("info", str(path), "--json")["header"] or {}
    labels = header.get("labels") or {}
    return header.get("host"), labels.get("vm") or labels.get("domain") or labels.get("name")


def expected_answers(folder: Path) -> dict[str, list[tuple]]:
    floods: dict[tuple, list] = {}
    pauses: dict[str, list] = defaultdict(list)
    migrations: dict[tuple, int] = defaultdict(int)
    drift: dict[str, list] = defaultdict(list)
    errors: dict[str, list] = defaultdict(list)
    for path in recordings(folder):
        host, vm = identity(path)
        for key in single("analyze", "throttle", str(path), "--format", "json")["keys"]:
            if key["event"] == "BALLOON_CHANGE" and key["floods"]:
                entry = floods.setdefault((host, vm), [0, 0])
                entry[0] += len(key["floods"])
                entry[1] += sum(f["duration_ns"] for f in key["floods"])
        for p in single("analyze", "runstate", str(path), "--format", "json")["paused"]:
            if p["duration_ns"] > 1e9:
                pauses[re.sub(r" \(.*", "", p["cause"])].append(p["duration_ns"])
                if p["cause"].startswith("migration"):
                    migrations[(host, vm)] += 1
        for s in single("analyze", "rtc", str(path), "--format", "json")["series"]:
            if s.get("drift_s_per_day") is not None:
                drift[host].append((vm, abs(s["drift_s_per_day"])))
        counts = single("analyze", "triage", str(path), "--format", "json")["counts"]
        if counts["error"] > 0:
            errors[host].append(counts["error"])
    return {
        "balloon_floods": sorted((h, v, n, round(ns / 1e9, 3)) for (h, v), (n, ns) in floods.items()),
        "long_pauses": sorted((c, len(d), round(max(d) / 1e9, 3)) for c, d in pauses.items()),
        "migration_pauses": sorted((h, v, n) for (h, v), n in migrations.items()),
        "rtc_drift_by_host": sorted((h, len({v for v, _ in d}), round(max(x for _, x in d), 3)) for h, d in drift.items()),
        "triage_errors": sorted((h, len(e), sum(e)) for h, e in errors.items()),
    }


def test_duckdb_answers_match_qmpreplay_file_by_file(fleet):
    fleet_sql, folder, table = fleet
    con = fleet_sql.connect(table)
    rows, bad = con.execute("SELECT count(*), count(*) FILTER (WHERE NOT ok) FROM triage").fetchone()
    assert (rows, bad) == (len(recordings(folder)) + 1, 1)
    assert con.execute("SELECT error FROM triage WHERE NOT ok").fetchone()[0].startswith("not a .qmprec recording")
    want = expected_answers(folder)
    for name in fleet_sql.QUESTIONS:
        got = sorted(fleet_sql.answer(con, name))
        assert got == want[name], name
    # The fleet is not empty of what the questions look for.
    assert all(want[name] for name in want), {k: len(v) for k, v in want.items()}


def test_spark_local_mode_writes_the_same_table(fleet, tmp_path):
    fleet_sql, folder, table = fleet
    if shutil.which("java") is None:
        unavailable("java is missing (apt-get install openjdk-17-jre-headless; Scripts/install-deps does)")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        unavailable("pyspark is not installed (.venv/bin/pip install pyspark; Scripts/integration-test does)")
    out = tmp_path / "triage.parquet"
    start = time.time()
    done = subprocess.run([sys.executable, str(REPO / "fleet/spark_triage.py"), str(folder), str(out),
                           "--qmpreplay", qmpreplay_binary(), "--partitions", "2"],
                          capture_output=True, text=True, timeout=300)
    print(f"spark local mode: {time.time() - start:.1f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    duck, spark = fleet_sql.connect(table), fleet_sql.connect(out)
    columns = "file, ok, status, host, vm, records, bytes, duration_ns, command, analysis, error, result.counts"
    assert (spark.execute(f"SELECT {columns} FROM triage ORDER BY file").fetchall()
            == duck.execute(f"SELECT {columns} FROM triage ORDER BY file").fetchall())
    for name in fleet_sql.QUESTIONS:
        assert sorted(fleet_sql.answer(spark, name)) == sorted(fleet_sql.answer(duck, name)), name


def test_every_line_follows_the_documented_layout(fleet):
    """docs/fleet.schema.json describes what info, validate and analyze write, damaged files included."""
    try:
        import jsonschema
    except ImportError:
        unavailable("jsonschema is not installed (.venv/bin/pip install jsonschema; Scripts/integration-test does)")
    fleet_sql, folder, table = fleet
    schema = json.loads((REPO / "docs/fleet.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    outputs = [table.read_text()]
    for args in (["info", str(folder)], ["validate", str(folder)], ["analyze", "balloon", str(folder), "--format", "jsonl"]):
        outputs.append(subprocess.run([qmpreplay_binary(), *args], capture_output=True, text=True).stdout)
    for text in outputs:
        lines = [json.loads(line) for line in text.splitlines()]
        assert len(lines) == len(recordings(folder)) + 1
        for line in lines:
            errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(line)]
            assert not errors, (line["file"], errors[:3])
