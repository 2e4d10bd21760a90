#!/usr/bin/env bash
# SPSS and Stata ingest at 1 M rows against the same delivery as CSV, and pyreadstat's read of
# the same files (both on ReadStat). Needs a build with the reader and Python with pyreadstat:
#
#   cargo build --release --features readstat && bash benches/statfiles.sh [ROWS]
#
# Prints each source's seconds from the run manifest (read, validate, harmonize, write).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
work=${WORK:-bench_data/statfiles-$rows}
mkdir -p "$work"
cp tests/fixtures/parquet_writers/delivery.schema.json "$work/"
python3 - "$work" "$rows" <<'PY'
import sys, time
import numpy as np, pandas as pd, pyreadstat
d, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(1)
df = pd.DataFrame({
    "id": [f"p{i}" for i in range(n)],
    "born": (pd.Timestamp("1950-01-01") + pd.to_timedelta(rng.integers(0, 20000, n), unit="D")).date,
    "arrived": pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000, n), unit="D"),
    "children": rng.integers(0, 6, n).astype(float),
    "weight": rng.random(n) * 100,
    "year": rng.integers(2015, 2024, n),
    "active": rng.integers(0, 2, n).astype(bool),
})
pyreadstat.write_sav(df, f"{d}/big.sav")
pyreadstat.write_dta(df, f"{d}/big.dta")
df.assign(arrived=df["arrived"].dt.date, children=df["children"].astype(int)).to_csv(f"{d}/big.csv", index=False)
for f, read in [("big.sav", pyreadstat.read_sav), ("big.dta", pyreadstat.read_dta)]:
    t = time.time(); read(f"{d}/{f}"); print(f"pyreadstat {f}: {time.time() - t:.2f} s")
PY
cat > "$work/p.toml" <<TOML
version = 1
id = "bench-statfiles"
reference_date = 2024-12-31
reference_period = "2024"
codelists = "$PWD/schemas/codelists"
[defaults]
max_invalid_fraction = 1.0
[sources.csv]
path = "big.csv"
format = "csv"
schema = "delivery.schema.json"
[sources.sav]
path = "big.sav"
format = "spss"
schema = "delivery.schema.json"
[sources.dta]
path = "big.dta"
format = "stata"
schema = "delivery.schema.json"
TOML
rm -rf "$work/out"
target/release/migstat -q run "$work/p.toml" --out "$work/out" > /dev/null
python3 -c "
import json, sys
m = json.load(open('$work/out/current/manifest.json'))
for s in m['sources']:
    print(f\"migstat {s['id']}: {s['seconds']:.2f} s, {s['rows_read']} rows, {s['rows_accepted']} accepted\")
"
