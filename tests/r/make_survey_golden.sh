#!/usr/bin/env bash
# Regenerate the R reference values for the survey tests (needs R: apt-get install r-base-core r-cran-survey r-cran-mass).
#   bash tests/r/make_survey_golden.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
cargo run -q -- -q run pipelines/observatory.toml --out "$out" > /dev/null
python3 - "$out" <<'PY'
import sys, duckdb
duckdb.execute(f"""copy (select raw_stratum as stratum, raw_psu as psu, raw_weight as weight,
    SEX, AGE_GROUP, MIGRATION_TYPE, REGION, AGE from read_parquet('{sys.argv[1]}/restricted/accepted/survey/*/*.parquet')
    order by _file, _record) to 'tests/golden/survey_input.csv' (header)""")
PY
Rscript tests/r/survey_golden.R tests/golden/survey_input.csv tests/golden/survey_population_r.csv tests/golden/survey_mean_age_r.csv tests/golden/survey_migration_share_r.csv tests/golden/survey_emigrants_r.csv tests/golden/survey_median_age_r.csv
# Every design (stratified, clustered, two-stage, FPC, lonely-PSU policies, replicate weights) and
# estimator (totals, means, shares, ratios) on a small synthetic survey; the data are committed, so
# only the expected values are recomputed (generate them anew with `survey_designs.R generate`).
Rscript tests/r/survey_designs.R expect tests/fixtures/survey_designs/survey.csv tests/golden/survey_designs_r.csv tests/golden/survey_ciprop_r.csv
Rscript tests/r/survey_designs.R calibrated tests/fixtures/survey_designs/survey.csv tests/golden/survey_calibrated_r.csv tests/golden/survey_calibration_g_r.csv
Rscript tests/r/survey_designs.R quantiles tests/fixtures/survey_designs/survey.csv tests/golden/survey_quantile_r.csv
Rscript tests/r/survey_designs.R contrasts tests/fixtures/survey_designs/survey.csv tests/golden/survey_contrast_r.csv
Rscript tests/r/survey_designs.R jkn tests/fixtures/survey_designs/jkn.csv tests/golden/survey_jkn_r.csv
Rscript tests/r/survey_designs.R nonresponse tests/fixtures/survey_designs/survey.csv tests/golden/survey_nonresponse_r.csv
Rscript tests/r/survey_designs.R covariances tests/fixtures/survey_designs/survey.csv tests/golden/survey_covariance_r.csv
rm -rf "$out"
