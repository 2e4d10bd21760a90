#!/usr/bin/env python3
"""Every example of the README, run on a fresh release.

    python3 tests/readme_check.py MIGSTAT_BINARY WORK_DIR

WORK_DIR is empty; it gets links to the repository's pipelines/, schemas/ and sample_data/, the
README's first command (`migstat run`: the default pipeline on the bundled sample) writes
WORK_DIR/out, and every example runs there, as a new user's shell would after the two commands:

- ```sh blocks: each line, in `sh` with `migstat` on PATH (the lines that build or test migstat
  itself, `cargo …` and `python3 -m pip …`, are what CI runs);
- ```sql blocks: in DuckDB; ```python blocks: in Python (polars, pandas);
- ```cron and the systemd ```ini unit: their migstat command, with the paths of the example
  (/srv/…, /var/log/…) moved into WORK_DIR; every line the JSON log gets must parse as JSON;
- ```toml blocks: parsed as TOML (they are fragments of a spec);
- ```bash blocks (the cluster example: servers started in the background): as one bash script,
  when the binary is built with `--features distributed` (else skipped and said so), its
  background processes stopped at the end.
An example that fails is named by its README line.
"""
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib

import duckdb

binary, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
readme = open(os.path.join(repo, "README.md"), encoding="utf-8").read()
env = dict(os.environ, PATH=os.path.dirname(binary) + os.pathsep + os.environ["PATH"])
problems, ran = [], {}


def count(kind):
    ran[kind] = ran.get(kind, 0) + 1


def sh(cmd, line, cwd):
    o = subprocess.run(["sh", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if o.returncode != 0:
        problems.append(f"README line {line}: `{cmd}` exited {o.returncode}: {o.stderr[-600:]}")
    return o


# WORK_DIR as a checkout looks to a new user: the spec, its schemas and the sample (linked), and
# the first command, `migstat run` (what `cargo run -- run` runs): the default pipeline on the
# bundled sample into out/ (a protection key of its own is created in .migstat/).
for d in ("pipelines", "schemas", "sample_data"):
    os.symlink(os.path.join(os.path.abspath(repo), d), os.path.join(work, d))
first = sh(f"{shlex.quote(binary)} run", 0, work)
if first.returncode != 0:
    print("\n".join(problems))
    sys.exit(1)

blocks = [(m.group(1), m.group(2), readme[:m.start()].count("\n") + 2)
          for m in re.finditer(r"```(\w*)\n(.*?)```", readme, re.S)]
for kind, body, line in blocks:
    os.chdir(work)
    if kind == "sh":
        for i, cmd in enumerate(body.splitlines()):
            if not cmd.strip() or cmd.lstrip().startswith("#"):
                continue
            if cmd.startswith(("cargo ", "python3 -m pip ")):
                count("build (CI)")
                continue
            sh(cmd, line + i, work)
            count("sh")
    elif kind == "sql":
        con = duckdb.connect()
        for stmt in re.split(r";\s*\n", body):
            stmt = "\n".join(l for l in stmt.splitlines() if not l.lstrip().startswith("--")).strip()
            if not stmt:
                continue
            try:
                con.execute(stmt).fetchall()
                count("sql")
            except Exception as e:  # noqa: BLE001 - any failure is the example's
                problems.append(f"README line {line}: DuckDB: {e}\n{stmt[:300]}")
    elif kind == "python":
        try:
            exec(compile(body, f"README.md:{line}", "exec"), {})
            count("python")
        except Exception as e:  # noqa: BLE001
            problems.append(f"README line {line}: Python: {type(e).__name__}: {e}")
    elif kind in ("cron", "ini"):
        cmd = None
        if kind == "cron":
            cmd = body.split(None, 5)[5].strip()
            cmd = re.sub(r"^cd /srv/migstat && \./migstat", shlex.quote(binary), cmd)
        else:
            m = re.search(r"^ExecStart=/srv/migstat/migstat (.*)$", body, re.M)
            if m:
                cmd = f"{shlex.quote(binary)} {m.group(1)}"
        if cmd is None:
            continue  # the timer unit: no command
        log = os.path.join(work, "migstat.jsonl")
        cmd = cmd.replace("/srv/observatory/out", os.path.join(work, "cron-out")).replace("/var/log/migstat.jsonl", log)
        if kind == "ini":
            cmd += f" 2>> {shlex.quote(log)}"
        sh(cmd, line, work)  # WORK_DIR stands for /srv/migstat
        count(kind)
        for n, l in enumerate(open(log, encoding="utf-8").read().splitlines(), 1):
            try:
                json.loads(l)
            except ValueError:
                problems.append(f"README line {line}: log line {n} is not JSON: {l[:200]}")
    elif kind == "bash":
        has_engine = subprocess.run([binary, "engine", "--help"], capture_output=True).returncode == 0
        if not has_engine:
            count("cluster example skipped (no --features distributed)")
            continue
        script = "\n".join(l for l in body.splitlines() if not l.startswith("cargo "))
        script = "set -e\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + script
        o = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True)
        if o.returncode != 0:
            problems.append(f"README line {line}: the bash block exited {o.returncode}: {o.stderr[-1200:]}")
        count("bash")
    elif kind == "toml":
        try:
            tomllib.loads(body)
            count("toml")
        except tomllib.TOMLDecodeError as e:
            problems.append(f"README line {line}: TOML: {e}")

if problems:
    print("\n".join(problems[:30]))
    sys.exit(1)
print("readme check:", ", ".join(f"{n} {k}" for k, n in sorted(ran.items())))
