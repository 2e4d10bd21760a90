#!/usr/bin/env python3
"""Read a release's SDMX exports with a third-party SDMX reader (the `sdmx1` package) and check
them against the release's public Parquet tables.

Usage: tests/sdmx_check.py PIPELINE RELEASE   (a release directory, or an output directory: its current release)

- public/sdmx/structure.xml parses as an SDMX-ML 2.1 structure message with a dataflow per
  public table, each with its data structure and code lists;
- OBS_STATUS and CONF_STATUS (and FREQ, but for a span's `_O`) reference the SDMX agency's
  global code lists, SDMX:CL_OBS_STATUS(2.0), SDMX:CL_CONF_STATUS(1.0), SDMX:CL_FREQ(2.0)
  (copied in full), SEX SDMX:CL_SEX(2.1) (by URL, its codes checked against the registry's);
  no other list claims the SDMX agency;
- public/sdmx/2.0/<table>.csv parses with sdmx1's SDMX-CSV 2.0 reader against that dataflow;
  every observation's dimension codes and coded attributes are codes of their code lists, and
  its value is the Parquet table's value for the same cell (empty where suppressed); FREQ is
  the table's frequency and TIME_PERIOD each row's period, written in SDMX form here from the
  Parquet `ref_period` column (2024, 2024-Q1, 2024-01, a stock's date, start/PnY or start/PnD)
  and consistent with FREQ;
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
    package = {r["name"]: r for r in json.load(f)["resources"]}


def sdmx_period(p):
    """SDMX TIME_PERIOD of a `ref_period` value."""
    import datetime as dt
    if "/" not in p:
        return p
    a, b = (dt.date.fromisoformat(x) for x in p.split("/"))
    if (a.month, a.day) == (1, 1) and (b.month, b.day) == (12, 31):
        return f"{a}/P{b.year - a.year + 1}Y"
    return f"{a}/P{(b - a).days + 1}D"


def fits(freq, period):
    """Whether a TIME_PERIOD is written as its FREQ says (a stock's date fits any FREQ)."""
    import re
    date = r"\d{4}-\d{2}-\d{2}"
    pattern = {
        "A": r"\d{4}",
        "Q": r"\d{4}-Q[1-4]",
        "M": r"\d{4}-(0[1-9]|1[0-2])",
        "_O": date + r"/P\d+[YD]",
    }.get(freq)
    return pattern is not None and (re.fullmatch(pattern, period) or re.fullmatch(date, period)) is not None


# Code ids of the global lists the structure references by URL instead of copying, as the SDMX
# Global Registry lists them.
EXTERNAL = {("SDMX", "CL_SEX", "2.1"): {"F", "M", "_N", "_O", "_T", "_U", "_Z"}}


def codes(component):
    rep = component.local_representation
    cl = rep.enumerated if rep is not None else None
    if cl is None:
        return None
    if cl.is_external_reference:
        return EXTERNAL.get((cl.maintainer.id, cl.id, cl.version), set())
    return {c.id for c in cl}


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
    # Every dimension of the table is in the DSD, after FREQ and REF_AREA; time is TIME_PERIOD.
    res = package[t]
    missing = [d for d in res["schema"]["primaryKey"] if d != "ref_period" and d not in dims]
    if missing:
        problems.append(f"{t}: dimensions {missing} are missing from the DSD")
    if dims[:2] != ["FREQ", "REF_AREA"]:
        problems.append(f"{t}: the DSD starts with {dims[:2]}, not FREQ, REF_AREA")
    freq = res["migstat:freq"]
    fixed = {"FREQ": freq, "REF_AREA": "MA"}
    key_of = lambda r: tuple(fixed.get(d, r.get(d)) for d in dims) + (sdmx_period(r["ref_period"]),)
    truth = {key_of(r): r[measure] for r in public}
    periods = sorted({k[-1] for k in truth})
    if [p for p in periods if not fits(freq, p)]:
        problems.append(f"{t}: TIME_PERIOD {periods[:3]} does not fit FREQ {freq}")

    # SDMX-CSV 2.0 through sdmx1's reader
    msg = sdmx.read_sdmx(os.path.join(rel, "public", "sdmx", "2.0", f"{t}.csv"), structure=flow)
    obs = [o for d in msg.data for o in d.obs]
    if len(obs) != len(public):
        problems.append(f"{t}: {len(obs)} observations in SDMX-CSV 2.0, {len(public)} cells in Parquet")
    # The cross-domain statuses reference the SDMX agency's global code lists (as the Global
    # Registry publishes them), FREQ too unless a table is a span (`_O`, then migstat's own).
    want_global = {"OBS_STATUS": ("CL_OBS_STATUS", "2.0"), "CONF_STATUS": ("CL_CONF_STATUS", "1.0"),
                   "SEX": ("CL_SEX", "2.1")}
    if freq != "_O":
        want_global["FREQ"] = ("CL_FREQ", "2.0")
    for comp in list(dsd.dimensions) + list(dsd.attributes):
        cl = comp.local_representation.enumerated if comp.local_representation is not None else None
        if comp.id in want_global:
            got = None if cl is None else (cl.maintainer.id, cl.id, cl.version)
            if got != ("SDMX",) + want_global[comp.id]:
                problems.append(f"{t}: {comp.id} is enumerated by {got}, not SDMX:{want_global[comp.id]}")
        elif cl is not None and cl.maintainer.id == "SDMX":
            problems.append(f"{t}: {comp.id} claims the SDMX agency's {cl.id}")
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
        cell = tuple(key[d].value for d in dims) + (key["TIME_PERIOD"].value,)
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
        cell = tuple(r[d] for d in dims) + (r["TIME_PERIOD"],)
        if cell not in truth or not same(r["OBS_VALUE"], truth[cell]):
            problems.append(f"{t}: SDMX-CSV 1.0 row {cell} = {r['OBS_VALUE']!r} differs from Parquet")
            break

# The reference metadata (SIMS) as an SDMX-ML 2.1 generic metadata set: well-formed, one report
# per dataflow of the structure, each with every SIMS concept and a text; the same as sims.json.
import json
import xml.etree.ElementTree as ET

NS = {"mes": "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/message",
      "gen": "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/metadata/generic",
      "com": "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/common",
      "str": "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/structure"}
meta = ET.parse(os.path.join(rel, "public", "sdmx", "metadata.xml")).getroot()
flows = {f.get("id") for f in ET.parse(os.path.join(rel, "public", "sdmx", "structure.xml")).getroot().iter(f"{{{NS['str']}}}Dataflow")}
sims = json.load(open(os.path.join(rel, "public", "metadata", "sims.json"), encoding="utf-8"))
by_table = {t["dataflow"].split(":")[1].split("(")[0]: t for t in sims["tables"]}
reports = meta.findall(".//gen:Report", NS)
targets = set()
for r in reports:
    urn = r.find(".//URN").text
    flow = urn.split(":")[-1].split("(")[0]
    targets.add(flow)
    got = {a.get("id"): a.find("com:Text", NS).text for a in r.findall("gen:AttributeSet/gen:ReportedAttribute", NS)}
    want = {c["id"]: c["text"] for c in by_table.get(flow, {}).get("concepts", [])}
    if got != want:
        problems.append(f"metadata.xml report of {flow} differs from sims.json")
    if len(got) < 30 or any(not v for v in got.values()):
        problems.append(f"metadata.xml report of {flow}: {len(got)} concepts, some empty")
if targets != flows:
    problems.append(f"metadata.xml reports {sorted(targets)}, structure.xml has dataflows {sorted(flows)}")

if problems:
    print("\n".join(problems[:30]))
    sys.exit(1)
print(f"sdmx ok: {len(tables)} tables, {checked} observations read by sdmx1 {sdmx.__version__}, "
      f"{len(reports)} SIMS reports")
