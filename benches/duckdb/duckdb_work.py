"""DuckDB's side of benches/vs_duckdb.sh: one step per call, so that GNU time measures each alone.

  python3 duckdb_work.py csv2parquet DATA_DIR OUT.parquet   # (a) the border CSV files to zstd Parquet
  python3 duckdb_work.py cube HARMONIZED.parquet OUT.parquet  # (b) GROUP BY CUBE over the table's dimensions
  python3 duckdb_work.py same DUCKDB_CUBE.parquet MIGSTAT_CUBE.parquet  # the two cubes agree cell by cell
"""
import sys

import duckdb

step = sys.argv[1]
con = duckdb.connect()
con.execute("SET threads = 2")
if step == "csv2parquet":
    data, out = sys.argv[2], sys.argv[3]
    con.execute(
        f"""COPY (SELECT * FROM read_csv('{data}/border_crossings*.csv', header = true,
                  all_varchar = false, ignore_errors = true))
            TO '{out}' (FORMAT parquet, COMPRESSION zstd)"""
    )
elif step == "cube":
    src, out = sys.argv[2], sys.argv[3]
    con.execute(
        f"""COPY (SELECT MONTH, DIRECTION, SEX, CITIZENSHIP_REGION, count(*) AS n
                  FROM read_parquet('{src}')
                  GROUP BY CUBE (MONTH, DIRECTION, SEX, CITIZENSHIP_REGION)
                  ORDER BY ALL)
            TO '{out}' (FORMAT parquet, COMPRESSION zstd)"""
    )
elif step == "same":
    ours, theirs = sys.argv[2], sys.argv[3]
    dims = "MONTH, DIRECTION, SEX, CITIZENSHIP_REGION"
    cells = f"""SELECT {', '.join(f"coalesce({d}, '_T') AS {d}" for d in dims.split(', '))}, n
                FROM read_parquet('{ours}')"""
    diff = con.execute(
        f"""SELECT count(*) FROM (
              (({cells}) EXCEPT ALL (SELECT {dims}, n FROM read_parquet('{theirs}')))
              UNION ALL
              ((SELECT {dims}, n FROM read_parquet('{theirs}')) EXCEPT ALL ({cells})))"""
    ).fetchone()[0]
    total = con.execute(f"SELECT count(*) FROM read_parquet('{theirs}')").fetchone()[0]
    if diff:
        sys.exit(f"the cubes differ in {diff} cells")
    print(f"cubes agree: {total} cells")
    sys.exit(0)
else:
    sys.exit(f"unknown step {step}")
print(con.execute("SELECT 1").fetchone()[0])
