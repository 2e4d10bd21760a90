"""Check a release's manifest.json and an output directory's history.jsonl against migstat's
JSON Schemas (schemas/run/), with the `jsonschema` package as the independent validator.

Usage: json_schema_check.py PIPELINE OUT   (PIPELINE is unused; OUT is the output directory)
"""
import json
import pathlib
import sys

import jsonschema

root = pathlib.Path(__file__).resolve().parent.parent
out = pathlib.Path(sys.argv[2])
schemas = {name: json.loads((root / "schemas" / "run" / f"{name}.schema.json").read_text()) for name in ("manifest", "history")}
for s in schemas.values():
    jsonschema.Draft202012Validator.check_schema(s)

manifest = json.loads((out / "current" / "manifest.json").read_text())
jsonschema.Draft202012Validator(schemas["manifest"]).validate(manifest)
lines = [l for l in (out / "history.jsonl").read_text().splitlines() if l.strip()]
assert lines, "history.jsonl has no line"
for line in lines:
    jsonschema.Draft202012Validator(schemas["history"]).validate(json.loads(line))

# The schemas must be able to fail: a manifest with an unknown status, and one with a field
# the schema does not describe, are refused.
for bad in ({**manifest, "status": "done"}, {**manifest, "extra": 1}):
    try:
        jsonschema.Draft202012Validator(schemas["manifest"]).validate(bad)
    except jsonschema.ValidationError:
        continue
    raise SystemExit("the manifest schema accepted an invalid manifest")
print(f"json schemas ok: 1 manifest, {len(lines)} history line(s)")
