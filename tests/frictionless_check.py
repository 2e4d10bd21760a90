#!/usr/bin/env python3
"""Cross-check migstat's validation with the Python `frictionless` package (the reference
implementation of Table Schema that our users' tools run).

1. Every schema in schemas/ must be a valid Table Schema for frictionless.
2. For every CSV source of the pipeline, frictionless validates the same file with the same
   schema, and the set of invalid records it finds must equal the set migstat quarantined.

Usage: tests/frictionless_check.py PIPELINE OUT_DIR   (OUT_DIR holds a finished `migstat run`)
Exits 1 on any disagreement, listing it.
"""
import collections
import glob
import os
import sys
import tempfile
import tomllib

import duckdb
import frictionless
from frictionless import Dialect, Resource, Schema, formats


# migstat rule -> the frictionless error type that reports the same problem.
RULE_TO_FRICTIONLESS = {
    "ragged_row": {"extra-cell", "missing-cell"},
    "type": {"type-error"},
    "required": {"constraint-error"},
    "enum": {"constraint-error"},
    "minimum": {"constraint-error"},
    "maximum": {"constraint-error"},
    "pattern": {"constraint-error"},
    "min_length": {"constraint-error"},
    "max_length": {"constraint-error"},
    "unique": {"unique-error"},
    "primary_key": {"primary-key"},
}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="migstat-frictionless-") as tmp:
        return check(sys.argv[1], sys.argv[2], tmp)


def check(pipeline: str, out: str, tmp: str) -> int:
    spec_dir = os.path.dirname(os.path.abspath(pipeline))
    repo = os.path.dirname(spec_dir)
    failures = []

    for path in sorted(glob.glob(os.path.join(repo, "schemas", "*.schema.json"))):
        report = frictionless.validate(path, type="schema")
        if not report.valid:
            failures.append(f"{path}: frictionless rejects the schema: {report.flatten(['type', 'note'])}")

    with open(pipeline, "rb") as f:
        spec = tomllib.load(f)
    for sid, src in sorted(spec["sources"].items()):
        schema = Schema.from_descriptor(os.path.join(spec_dir, src["schema"]))
        encoding = {"utf-8": "utf-8-sig", "windows-1252": "cp1252"}[src.get("encoding", "utf-8")]
        control = formats.CsvControl(delimiter=src.get("delimiter", ","))
        files = sorted(glob.glob(os.path.normpath(os.path.join(spec_dir, src["path"]))))
        for file in files:
            target = file
            if src["format"] == "parquet":
                # frictionless reads Parquet only through a plugin: hand it the same rows as CSV.
                target = os.path.join(tmp, os.path.basename(file) + ".csv")
                duckdb.execute(f"copy (select * from '{file}') to '{target}' (header, delimiter ',')")
            resource = Resource(path=target, schema=schema, encoding=encoding,
                                dialect=Dialect(controls=[control]))
            with frictionless.system.use_context(trusted=True):
                report = frictionless.validate(resource, limit_errors=10**7)
            task = report.tasks[0]
            theirs = collections.defaultdict(set)
            for e in task.errors:
                row = getattr(e, "row_number", None)
                if row is None:
                    failures.append(f"{sid}: {os.path.basename(file)}: file-level error {e.type}: {e.note}")
                    continue
                theirs[row - 1].add(e.type)  # frictionless counts the header as row 1
            name = os.path.relpath(file, spec_dir)
            # unmapped_code, not_after, not_before and age_range are the harmonize stage's rules
            # (crosswalks, plausibility), not the schema's.
            ours = {
                rec: set(rules.split(","))
                for rec, rules in duckdb.execute(
                    f"select record, string_agg(distinct rule, ',') from "
                    f"'{os.path.join(out, 'quarantine', sid + '.parquet')}' where file = ? and rule not in ('unmapped_code', 'not_after', 'not_before', 'age_range') group by record",
                    [name]).fetchall()
            }
            only_theirs = sorted(set(theirs) - set(ours))
            only_ours = sorted(set(ours) - set(theirs))
            print(f"{sid}: {os.path.basename(file)}: frictionless {len(theirs)} invalid records, migstat {len(ours)}")
            for rec in only_theirs[:20]:
                failures.append(f"{sid}: record {rec}: frictionless says {sorted(theirs[rec])}, migstat accepted it")
            for rec in only_ours[:20]:
                failures.append(f"{sid}: record {rec}: migstat says {sorted(ours[rec])}, frictionless accepted it")
            for rec in sorted(set(ours) & set(theirs)):
                mapped = set().union(*(RULE_TO_FRICTIONLESS.get(r, {r}) for r in ours[rec]))
                # A ragged row is not checked further by migstat; frictionless checks its cells too.
                if not (mapped & theirs[rec]) or (not ours[rec] & {"ragged_row"} and mapped != theirs[rec]):
                    failures.append(f"{sid}: record {rec}: migstat says {sorted(ours[rec])}, frictionless {sorted(theirs[rec])}")

    for f in failures:
        print("MISMATCH", f)
    print(f"frictionless cross-check: {'failed' if failures else 'agreed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
