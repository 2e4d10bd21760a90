#!/usr/bin/env python3
"""Read a release's SDMX exports with a third-party SDMX reader (the `sdmx1` package) and check
them against the release's public Parquet tables.

Usage: tests/sdmx_check.py PIPELINE RELEASE   (a release directory, or an output directory: its current release)

- public/sdmx/structure.xml parses as an SDMX-ML 2.1 structure message with a dataflow per
  public table, each with its data structure and code lists;
- public/sdmx/2.0/<table>.csv parses with sdmx1's SDMX-CSV 2.0 reader against that dataflow;
  every observation's dimension codes and coded attributes are codes of their code lists, and
  its value is the Parquet table's value for the same cell (empty where suppressed); a table
  over all periods has its year dimension as TIME_PERIOD, without the totals over time;
- public/sdmx/<table>.csv (SDMX-CSV 1.0) holds the same observations, each naming its dataflow
  as AGENCY:ID(VERSION) from the structure message.
Prints `sdmx ok` and exits 0, or names the first differences and exits 1.
"""
import csv
import json
import math
import os
import sys

import pyarrow.dataset as ds
import sdmx

out = sys.argv[2]
rel = out if os.path.isfile(os.path.join(out, "manifest.json")) else os.path.join(out, "current")
rel = os.path.realpath(rel)
structure = sdmx.read_sdmx(os.path.join(rel, "public", "sdmx", "structure.xml"))
tables = sorted(os.listdir(os.path.join(rel, "public", "tables")))
problems = []
with open(os.path.join(rel, "public", "datapackage.json"), encoding="utf-8") as f:
    package = {r["name"]: r["schema"]["primaryKey"] for r in json.load(f)["resources"]}


def codes(component):
    rep = component.local_representation
    cl = rep.enumerated if rep is not None else None
    return None if cl is None else {c.id for c in cl}


def same(a, b):
    if a == "" or b is None:
        return a == "" and b is None
    x = float(a)
    return x == b or math.isclose(x, b, rel_tol=1e-12, abs_tol=0.0)


checked = 0
for t in tables:
    flow_id = t.upper()
    if flow_id not in structure.dataflow:
        problems.append(f"{t}: no dataflow {flow_id} in structure.xml")
        continue
    flow = structure.dataflow[flow_id]
    dsd = flow.structure
    dims = [d.id for d in dsd.dimensions if d.id != "TIME_PERIOD"]
    measure = "estimate" if t.startswith("survey") else "value"
    public = ds.dataset(os.path.join(rel, "public", "tables", t), format="parquet", partitioning="hive").to_table().to_pylist()
    # A table over all periods writes its year dimension as TIME_PERIOD and leaves out its totals
    # over time: the table's dimension (data package primary key) that the DSD does not have.
    time_dims = [d for d in package[t] if d not in dims]
    if len(time_dims) > 1:
        problems.append(f"{t}: dimensions {time_dims} are missing from the DSD")
    time_dim = time_dims[0] if time_dims else None
    if time_dim:
        public = [r for r in public if r[time_dim] != "_T"]
    key_of = lambda r: tuple(r.get(d, "MA") for d in dims) + ((r[time_dim],) if time_dim else ())
    truth = {key_of(r): r[measure] for r in public}

    # SDMX-CSV 2.0 through sdmx1's reader
    msg = sdmx.read_sdmx(os.path.join(rel, "public", "sdmx", "2.0", f"{t}.csv"), structure=flow)
    obs = [o for d in msg.data for o in d.obs]
    if len(obs) != len(public):
        problems.append(f"{t}: {len(obs)} observations in SDMX-CSV 2.0, {len(public)} cells in Parquet")
    allowed = {d.id: codes(d) for d in dsd.dimensions}
    attr_codes = {a.id: codes(a) for a in dsd.attributes}
    for o in obs:
        key = o.key.values
        for d, kv in key.items():
            if allowed.get(d) is not None and kv.value not in allowed[d]:
                problems.append(f"{t}: {d}={kv.value} is not in its code list")
        for a, av in o.attrib.items():
            if attr_codes.get(a) is not None and av.value not in attr_codes[a]:
                problems.append(f"{t}: attribute {a}={av.value} is not in its code list")
        cell = tuple(key[d].value for d in dims) + ((key["TIME_PERIOD"].value,) if time_dim else ())
        if cell not in truth:
            problems.append(f"{t}: SDMX cell {cell} is not in the Parquet table")
        elif not same(o.value, truth[cell]):
            problems.append(f"{t}: {cell}: SDMX {o.value!r}, Parquet {truth[cell]!r}")
        checked += 1

    # SDMX-CSV 1.0: the same observations, DATAFLOW from the structure message
    expected_flow = f"{flow.maintainer.id}:{flow.id}({flow.version})"
    with open(os.path.join(rel, "public", "sdmx", f"{t}.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != len(public):
        problems.append(f"{t}: {len(rows)} rows in SDMX-CSV 1.0, {len(public)} cells in Parquet")
    for r in rows:
        if r["DATAFLOW"] != expected_flow:
            problems.append(f"{t}: DATAFLOW {r['DATAFLOW']!r}, expected {expected_flow!r}")
            break
        cell = tuple(r[d] for d in dims) + ((r["TIME_PERIOD"],) if time_dim else ())
        if cell not in truth or not same(r["OBS_VALUE"], truth[cell]):
            problems.append(f"{t}: SDMX-CSV 1.0 row {cell} = {r['OBS_VALUE']!r} differs from Parquet")
            break

if problems:
    print("\n".join(problems[:30]))
    sys.exit(1)
print(f"sdmx ok: {len(tables)} tables, {checked} observations read by sdmx1 {sdmx.__version__}")
