"""DuckDB's side of benches/vs_duckdb.sh: one step per call, so that GNU time measures each alone.

  python3 duckdb_work.py csv2parquet DATA_DIR OUT.parquet   # (a) the border CSV files to zstd Parquet
  python3 duckdb_work.py cube HARMONIZED.parquet OUT.parquet  # (b) GROUP BY CUBE over the table's dimensions
  python3 duckdb_work.py fair DATA_DIR REPO OUT_DIR          # (e) migstat's work in DuckDB SQL (below)
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
elif step == "fair":
    # The same work as migstat's pipeline (benches/duckdb/pipeline.toml) in DuckDB SQL on the
    # same CSV files: every value read as text and checked as the table schema says (types,
    # required, patterns, lengths, enums, minimum and maximum, the primary key), each failing
    # row written to a quarantine file with all its reasons, rows DuckDB's CSV reader rejects
    # (ragged) kept in its rejects table and counted; the accepted rows harmonized (crosswalks
    # for direction and sex, the citizenship code list and its M49 subregion, the month, the age
    # reached in the year of the crossing and its broad band) and written to zstd Parquet; then
    # the cube of the table. Only the rounding and the documents are left out.
    data, repo, out = sys.argv[2], sys.argv[3], sys.argv[4]
    cl = f"{repo}/schemas"
    con.execute(f"""CREATE VIEW raw AS
        SELECT *, row_number() OVER () AS record FROM read_csv('{data}/border_crossings*.csv',
            header = true, all_varchar = true, store_rejects = true, filename = true)""")
    con.execute(f"""CREATE TABLE dir_cw AS SELECT raw, code FROM read_csv('{cl}/crosswalks/direction.csv', all_varchar = true)""")
    con.execute(f"""CREATE TABLE sex_cw AS SELECT raw, code FROM read_csv('{cl}/crosswalks/sex.csv', all_varchar = true)""")
    con.execute(f"""CREATE TABLE countries AS SELECT iso3, m49_subregion FROM read_csv('{cl}/codelists/countries.csv', all_varchar = true)""")
    con.execute(f"""CREATE TABLE sexes AS SELECT code FROM read_csv('{cl}/codelists/sex.csv', all_varchar = true)""")
    # The primary key as migstat checks it: among the rows whose values all parse as their
    # types (within a year's bounds), a second row with a key already seen is set aside; a row
    # set aside for another reason (a missing value, a pattern, a code) still holds its key.
    con.execute("""CREATE VIEW checked AS
        WITH t AS (
          SELECT r.*, try_cast(crossing_date AS DATE) AS d, try_cast(birth_year AS INTEGER) AS y
          FROM raw r)
        SELECT t.*, concat_ws(',',
            CASE WHEN event_id IS NULL THEN 'required'
                 WHEN NOT regexp_full_match(event_id, 'E[0-9]{12}') THEN 'pattern' END,
            CASE WHEN traveller_id IS NULL THEN 'required'
                 WHEN NOT regexp_full_match(traveller_id, 'T[0-9]{10}') THEN 'pattern' END,
            CASE WHEN crossing_date IS NULL THEN 'required' WHEN d IS NULL THEN 'type'
                 WHEN d < DATE '2000-01-01' THEN 'minimum' END,
            CASE WHEN border_post IS NULL THEN 'required' WHEN length(border_post) < 2 THEN 'min_length' END,
            CASE WHEN direction IS NULL THEN 'required' WHEN direction NOT IN ('IN', 'OUT') THEN 'enum' END,
            CASE WHEN sex IS NULL THEN 'required' WHEN length(sex) > 16 THEN 'max_length' END,
            CASE WHEN birth_year IS NULL THEN 'required' WHEN y IS NULL THEN 'type'
                 WHEN y < 1900 OR y > 2024 THEN 'range' END,
            CASE WHEN citizenship IS NULL THEN 'required'
                 WHEN NOT regexp_full_match(citizenship, '[A-Z]{3}') THEN 'pattern' END,
            CASE WHEN other_country IS NOT NULL AND NOT regexp_full_match(other_country, '[A-Z]{3}') THEN 'pattern' END,
            CASE WHEN document_type IS NOT NULL AND document_type NOT IN ('passport', 'id_card', 'laissez_passer') THEN 'enum' END
          ) AS reasons
        FROM t""")
    con.execute("""CREATE TABLE harmonized0 AS
        SELECT c.*, strftime(d, '%Y-%m') AS MONTH, dc.code AS DIRECTION, sc.code AS SEX_CODE,
               co.iso3 AS CITIZENSHIP, coalesce(nullif(co.m49_subregion, ''), '_Z') AS CITIZENSHIP_REGION,
               year(d) - y AS AGE,
               CASE WHEN year(d) - y < 15 THEN 'Y_LT15' WHEN year(d) - y < 25 THEN 'Y15T24'
                    WHEN year(d) - y < 65 THEN 'Y25T64' ELSE 'Y_GE65' END AS AGE_GROUP,
               concat_ws(',', nullif(c.reasons, ''),
                 CASE WHEN dc.code IS NULL THEN 'unmapped_code' END,
                 CASE WHEN sc.code IS NULL OR sc.code NOT IN (SELECT code FROM sexes) THEN 'unmapped_code' END,
                 CASE WHEN co.iso3 IS NULL THEN 'unmapped_code' END,
                 CASE WHEN year(d) - y < 0 OR year(d) - y > 120 THEN 'age_range' END) AS why
        FROM checked c
        LEFT JOIN dir_cw dc ON dc.raw = c.direction
        LEFT JOIN sex_cw sc ON sc.raw = c.sex
        LEFT JOIN countries co ON co.iso3 = c.citizenship""")
    con.execute("""CREATE VIEW harmonized AS
        SELECT * REPLACE (concat_ws(',', nullif(why, ''), CASE WHEN nth > 1 THEN 'primary_key' END) AS why)
        FROM (SELECT h.*, CASE WHEN typed THEN row_number() OVER (PARTITION BY typed, event_id ORDER BY record) END AS nth
              FROM (SELECT *, event_id IS NOT NULL AND NOT regexp_matches(reasons, 'type|range') AS typed
                    FROM harmonized0) h)""")
    con.execute(f"""COPY (SELECT filename, record, event_id, why FROM harmonized WHERE why <> '' ORDER BY record)
        TO '{out}/quarantine.parquet' (FORMAT parquet, COMPRESSION zstd)""")
    con.execute(f"""COPY (SELECT event_id, traveller_id, d AS crossing_date, border_post, y AS birth_year,
                                 other_country, document_type, MONTH, DIRECTION, SEX_CODE AS SEX,
                                 CITIZENSHIP, CITIZENSHIP_REGION, AGE, AGE_GROUP
                          FROM harmonized WHERE why = '' ORDER BY record)
        TO '{out}/accepted.parquet' (FORMAT parquet, COMPRESSION zstd)""")
    con.execute(f"""COPY (SELECT MONTH, DIRECTION, SEX, CITIZENSHIP_REGION, count(*) AS n
                          FROM read_parquet('{out}/accepted.parquet')
                          GROUP BY CUBE (MONTH, DIRECTION, SEX, CITIZENSHIP_REGION) ORDER BY ALL)
        TO '{out}/cube.parquet' (FORMAT parquet, COMPRESSION zstd)""")
    q = con.execute(f"SELECT count(*) FROM read_parquet('{out}/quarantine.parquet')").fetchone()[0]
    a = con.execute(f"SELECT count(*) FROM read_parquet('{out}/accepted.parquet')").fetchone()[0]
    rejected = con.execute("SELECT count(*) FROM reject_errors").fetchone()[0]
    print(f"duckdb fair: {a} accepted, {q} quarantined, {rejected} rejected by the CSV reader")
    sys.exit(0)
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
