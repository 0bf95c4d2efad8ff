"""Runs a qmpreplay analysis over a fleet of recordings with Apache Spark and writes the
fleet table (docs/FLEET.md, docs/fleet.schema.json) as Parquet.

Each executor receives whole recordings (`binaryFiles`, so any file system Spark reads works:
local paths, HDFS, S3 through s3a://), writes a partition's files to a local scratch folder,
pipes them through one `qmpreplay analyze NAME FOLDER --format jsonl` run and puts the
original paths back in the lines. The rows are the ones `qmpreplay analyze NAME DIR --format
jsonl` writes on one machine, so DuckDB answers the same questions from either.

Usage (local mode; docs/FLEET.md shows a cluster submission):
    spark-submit fleet/spark_triage.py INPUT OUTPUT [--analysis triage] [--qmpreplay PATH] [--partitions N]
    python fleet/spark_triage.py ...          (pyspark from PyPI: starts a local Spark)
INPUT is a folder (searched recursively for *.qmprec and *.qmprec.gz) or a glob; OUTPUT a
Parquet folder (replaced). QMPREPLAY_BIN or --qmpreplay names the binary on the executors.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="qmpreplay analyses over a fleet of recordings, on Spark, to Parquet.")
    p.add_argument("input", help="folder or glob of .qmprec / .qmprec.gz recordings (any Hadoop file system)")
    p.add_argument("output", help="Parquet folder to write (replaced)")
    p.add_argument("--analysis", default="triage", help="the analysis to run (default triage)")
    p.add_argument("--qmpreplay", default=os.environ.get("QMPREPLAY_BIN", "qmpreplay"),
                   help="the qmpreplay binary on every executor (default $QMPREPLAY_BIN or qmpreplay on PATH)")
    p.add_argument("--partitions", type=int, default=0, help="partitions (default: Spark's default parallelism)")
    return p.parse_args(argv)


def plain_path(uri: str) -> str:
    """Spark names local files file:/path; the table names them as qmpreplay does, /path."""
    return uri[len("file:"):] if uri.startswith("file:") else uri


def analyse_partition(files, analysis: str, binary: str):
    """One qmpreplay run over a partition's recordings; yields JSON lines with their real paths."""
    scratch = tempfile.mkdtemp(prefix="qmpreplay-spark-")
    try:
        names = {}
        for n, (uri, content) in enumerate(files):
            suffix = ".qmprec.gz" if uri.endswith(".gz") else ".qmprec"
            local = os.path.join(scratch, f"{n:06d}{suffix}")
            with open(local, "wb") as f:
                f.write(content)
            names[local] = plain_path(uri)
        if not names:
            return
        done = subprocess.run([binary, "analyze", analysis, scratch, "--format", "jsonl", "--jobs", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # 0: all read; 2: some file was damaged (its line says so). Anything else is a failure.
        if done.returncode not in (0, 2):
            raise RuntimeError(f"qmpreplay analyze {analysis} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
        for line in done.stdout.splitlines():
            row = json.loads(line)
            original = names.get(row["file"], row["file"])
            row["file"] = original
            if isinstance(row.get("result"), dict) and "file" in row["result"]:
                row["result"]["file"] = original
            yield json.dumps(row, separators=(",", ":"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName(f"qmpreplay-{args.analysis}").getOrCreate()
    sc = spark.sparkContext
    source = args.input
    if not any(ch in source for ch in "*?["):
        source = source.rstrip("/") + "/"
    # Recursive listing; only recordings (binaryFiles takes a folder or a glob).
    hconf = sc._jsc.hadoopConfiguration()
    hconf.set("mapreduce.input.fileinputformat.input.dir.recursive", "true")
    files = sc.binaryFiles(source, minPartitions=args.partitions or sc.defaultParallelism)
    files = files.filter(lambda kv: kv[0].endswith(".qmprec") or kv[0].endswith(".qmprec.gz"))
    analysis, binary = args.analysis, args.qmpreplay
    # Cached: reading JSON infers the schema in one pass and reads in another; qmpreplay runs once.
    lines = files.mapPartitions(lambda part: analyse_partition(part, analysis, binary)).cache()
    table = spark.read.json(lines)
    table.write.mode("overwrite").parquet(args.output)
    rows = table.count()
    bad = table.filter("NOT ok").count()
    print(f"spark_triage: {rows} recordings ({bad} unreadable) -> {args.output}", file=sys.stderr)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
