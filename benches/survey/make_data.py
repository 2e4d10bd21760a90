"""Synthetic survey for benches/survey_vs_r.sh: N respondents in 400 strata of 10 PSUs each
(4,000 PSUs), with weights, sex, age, migration type, region and education.

    python3 benches/survey/make_data.py 1000000 bench_data/survey/survey.csv
"""
import csv
import random
import sys

n = int(sys.argv[1])
out = sys.argv[2]
rng = random.Random(20261122)
strata, psus = 400, 10
per_psu = max(1, n // (strata * psus))
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "stratum", "psu", "weight", "sex", "age", "migration_type", "region", "edu"])
    i = 0
    for h in range(strata):
        region = f"{h % 12 + 1:02d}"
        base = 50 + 10 * (h % 7)
        for p in range(psus):
            psu_w = base * (0.8 + 0.4 * rng.random())
            mig_bias = rng.random()
            for _ in range(per_psu):
                i += 1
                if i > n:
                    break
                mt = "4" if rng.random() > 0.15 + 0.2 * mig_bias else rng.choice("123")
                w.writerow([
                    f"P{i:08d}", f"S{h:03d}", f"S{h:03d}-{p:02d}",
                    round(psu_w * (0.9 + 0.2 * rng.random()), 2),
                    rng.choice("MF"), min(99, int(rng.expovariate(1 / 30))), mt,
                    region, rng.choice("1234"),
                ])
print(f"{min(i, n):,} respondents, {strata} strata, {strata * psus:,} PSUs -> {out}")
