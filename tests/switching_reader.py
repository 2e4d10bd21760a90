#!/usr/bin/env python3
"""A DuckDB reader following the README while runs switch `out/current`.

    python3 tests/switching_reader.py OUT_DIR STOP_FILE

Loops until STOP_FILE exists: resolves `OUT_DIR/current` once per query (the README's
`REL=$(readlink -f out/current)`), then reads the trafficking table through a glob under that
release. Then reads the same table in every release under OUT_DIR/releases/ and checks that
every answer of the loop is one release's whole table: no error, no mix of two releases.
"""
import os
import sys

import duckdb

out, stop = sys.argv[1], sys.argv[2]


def read(release):
    glob = os.path.join(release, "public", "tables", "trafficking", "*", "*.parquet")
    return duckdb.execute(
        f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY ALL").fetchall()


answers, errors = [], []
while not os.path.exists(stop) or not answers:
    rel = os.path.realpath(os.path.join(out, "current"))
    try:
        answers.append(read(rel))
    except Exception as e:  # noqa: BLE001 - any failure is what the test counts
        errors.append(f"{rel}: {e}")
published = [read(os.path.join(out, "releases", r)) for r in sorted(os.listdir(os.path.join(out, "releases")))]
mixed = [i for i, a in enumerate(answers) if a not in published]
if errors or mixed:
    print(f"{len(errors)} errors, {len(mixed)} answers of no release (of {len(answers)}):")
    print("\n".join(errors[:5]))
    sys.exit(1)
print(f"switching reader: {len(answers)} DuckDB queries over {len(published)} releases, each one release's table")
