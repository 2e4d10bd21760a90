#!/usr/bin/env python3
"""The report's pages in each language, checked against independent references.

    python3 tests/report_check.py PIPELINE RELEASE_DIR

Numbers: every table's grand total of its latest period, as the public Parquet file gives it,
must appear in each page formatted as Babel's CLDR data writes it (en; fr_MA; ar_MA: Morocco's
French and Arabic). Labels: every code of every margin table carries its label from the code
lists in the page's language (Arabic script on the Arabic page), and the pages link to each
other.
"""
import csv
import glob
import html
import os
import re
import sys

import pyarrow.parquet as pq
from babel.numbers import format_decimal

pipeline, release = sys.argv[1], sys.argv[2]
LOCALES = {"index.html": ("en", "en"), "index.fr.html": ("fr", "fr_MA"), "index.ar.html": ("ar", "ar_MA")}
ARABIC = re.compile("[\u0600-\u06ff]")
problems = []

pages = {}
for name in LOCALES:
    path = os.path.join(release, "report", name)
    if not os.path.exists(path):
        problems.append(f"{name} is missing")
        continue
    pages[name] = open(path, encoding="utf-8").read()
    for other in LOCALES:
        if other != name and f'href="{other}"' not in pages[name]:
            problems.append(f"{name} does not link to {other}")


def section(page, table):
    """The HTML of one table's section of a page."""
    start = page.find(f'<h3 id="t-{table}">')
    if start < 0:
        return None
    end = page.find("<h3 id=\"t-", start + 10)
    return page[start:end if end > 0 else len(page)]


# Grand totals of the latest period of each public table.
checked = 0
for tdir in sorted(glob.glob(os.path.join(release, "public", "tables", "*"))):
    table = os.path.basename(tdir)
    files = sorted(glob.glob(os.path.join(tdir, "**", "*.parquet"), recursive=True))
    rows = []
    for f in files:
        rows += pq.read_table(f).to_pylist()
    if not rows:
        continue
    measure = "estimate" if "estimate" in rows[0] else "value"
    dims = [c for c in rows[0] if c.isupper() and c not in ("OBS_STATUS", "CONF_STATUS")]
    latest = max(r["ref_period"] for r in rows)
    total = [r for r in rows if r["ref_period"] == latest and all(r[d] == "_T" for d in dims)]
    if len(total) != 1 or total[0][measure] is None:
        continue
    v = total[0][measure]
    # Counts and estimated totals are shown whole (the table's UNIT_MEASURE); other estimates
    # with three decimals below 1, one above.
    whole = (measure == "value" or total[0]["unit"] in ("persons (weighted)", "total (weighted)")
             or float(v).is_integer() and abs(v) >= 1)
    for name, (lang, locale) in LOCALES.items():
        page = pages.get(name)
        if page is None:
            continue
        sec = section(page, table)
        if sec is None:
            problems.append(f"{name}: no section for {table}")
            continue
        m = re.search(r'<table class="cells"><tr><th>[^<]*</th><th></th><td class="num[^"]*">([^<]*)', sec)
        if not m:
            problems.append(f"{name}: {table} has no total row")
            continue
        shown = html.unescape(m.group(1)).strip()
        if whole:
            want = format_decimal(round(v), format="#,##0", locale=locale)
        elif abs(v) < 1:
            want = format_decimal(v, format="#,##0.000", locale=locale)
        else:
            want = format_decimal(v, format="#,##0.0", locale=locale)
        if shown != want:
            problems.append(f"{name}: {table} total shown {shown!r}, CLDR {locale} writes {want!r}")
        checked += 1

# Labels: each margin row's label is the code list's, in the page's language.
codelists = os.path.join(os.path.dirname(pipeline), "..", "schemas", "codelists")
sex = {r["code"]: r for r in csv.DictReader(open(os.path.join(codelists, "sex.csv"), encoding="utf-8"))}
labels = 0
for name, (lang, _) in LOCALES.items():
    page = pages.get(name, "")
    for code, label in re.findall(r"<tr><td><code>([^<]*)</code></td><td>([^<]*)</td><td class=\"num", page):
        label = html.unescape(label)
        labels += 1
        if lang == "ar" and not ARABIC.search(label) and not re.fullmatch(r"[0-9 .,-]+", label):
            problems.append(f"{name}: code {code} labelled {label!r}, not in Arabic")
    # Sex codes: exactly the code list's labels.
    for code, label in re.findall(r"<tr><td><code>(F|M)</code></td><td>([^<]*)</td>", page):
        if html.unescape(label) != sex[code][f"label_{lang}"]:
            problems.append(f"{name}: sex {code} labelled {label!r}, code list says {sex[code]['label_' + lang]!r}")
    if lang == "ar" and '<html lang="ar" dir="rtl">' not in page:
        problems.append(f"{name}: not marked right-to-left")

if checked < 30:
    problems.append(f"only {checked} totals checked")
if problems:
    print("\n".join(problems[:50]))
    sys.exit(1)
print(f"report check: {checked} totals in 3 locales, {labels} labels")
