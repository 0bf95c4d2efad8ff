"""The persistent index (docs/INDEX.md) through the real command line: `info`, `cat` and
`analyze` give the same output with and without it, an indexed file is re-read from the
cache, a grown file is seen grown, and `--no-cache` / QMPREPLAY_NO_CACHE=1 leave no cache.
"""
from __future__ import annotations

import os
import subprocess

from guestlab.recorder import qmpreplay_binary


def run(env, *args):
    p = subprocess.run([qmpreplay_binary(), *args], env=env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def test_index_cache(tmp_path):
    rec = tmp_path / "r.qmprec"
    cache = tmp_path / "cache"
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    env.pop("QMPREPLAY_NO_CACHE", None)
    run(env, "synth", "--profile", "mixed", "--records", "30000", "--seed", "3", "-o", str(rec))
    whole = rec.read_bytes()
    cut = whole.index(b"\n", len(whole) // 2) + 1
    rec.write_bytes(whole[:cut])

    # Switched off: the same answers, and no cache made.
    off = dict(env, QMPREPLAY_NO_CACHE="1")
    plain = {q: run(off, *q, str(rec)) for q in [("info", "--json"), ("cat", "--event", "BALLOON_CHANGE", "--format", "jsonl"),
                                                 ("analyze", "balloon", "--format", "json")]}
    run(env, "info", "--no-cache", str(rec))
    assert not cache.exists()

    # First run builds the entry, the second reads it: same output both times.
    for _ in range(2):
        for q, out in plain.items():
            assert run(env, *q, str(rec)) == out, q
    entries = list((cache / "qmpreplay" / "index").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".qmpidx"

    # The recording grows (a capture still being written): every command sees all of it.
    with rec.open("ab") as f:
        f.write(whole[cut:])
    for q in plain:
        assert run(env, *q, str(rec)) == run(off, *q, str(rec)), q
    assert [p.name for p in (cache / "qmpreplay" / "index").iterdir()] == [entries[0].name]


def test_cat_event_by_name_lists(tmp_path):
    """`cat --event` walks the names' record lists: the same lines as filtering every record."""
    import json
    rec = tmp_path / "r.qmprec"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    run(env, "synth", "--profile", "mixed", "--records", "20000", "--seed", "4", "-o", str(rec))
    every = run(env, "cat", str(rec), "--from", "1m", "--to", "20m", "--format", "jsonl").splitlines()
    wanted = {"BALLOON_CHANGE", "STOP", "RESUME"}
    expected = [l for l in every if (lambda o: o["k"] == "event" and o.get("n") in wanted)(json.loads(l))]
    assert expected
    got = run(env, "cat", str(rec), "--from", "1m", "--to", "20m", "--format", "jsonl",
              *[a for n in sorted(wanted) for a in ("--event", n)]).splitlines()
    assert got == expected
