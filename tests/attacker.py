"""An intruder's attack on migstat releases, written independently of migstat's code.

Usage:
    python3 tests/attacker.py RELEASE [RELEASE] [--json] [--methods=suppress,survey_quality,...] [--groups=trafficking,...]

The intruder holds every public file of the releases given (oldest first) and knows what
migstat's README says an intruder knows: the methods and their parameters (read from each
public file's metadata), that every finest cell is a non-negative integer, that the frame of a
table is every combination of the codes it shows (within its declared hierarchies), that every
code shown occurs at least once in the series (a table over several periods shows the same
codes in each: a code is known to occur in a period when every other period publishes its
margin as an exact 0), and that tables of one group count the same records. Across
two releases it also assumes records are only ever added (the difference is non-negative).

For each group of linked tables it builds one system over the finest cells of the group's union
cube (HiGHS: LP, with the system loaded once per group and only the objective changed
between cells, and scipy's MILP where the system is small enough for integrality to be
cheap), and for every cell it reports the interval the intruder cannot rule out. The truth
(restricted tier) is read *only afterwards*, to score: a cell whose true count is in
(0, threshold) and whose interval is narrower than the protection range is a disclosure; for
two releases, a cell of the difference table (a record added) whose interval excludes zero
singles the new record out. Survey groups: the weighted totals of suppressed cells must not be
recomputable exactly.

Prints `attack: N disclosures` and exits 1 when N > 0.
"""

import functools
import itertools
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import highspy
import numpy as np
import pyarrow.parquet as pq
from scipy.optimize import milp, LinearConstraint, Bounds
from scipy.sparse import csr_matrix

TOTAL = "_T"
MILP_MAX_VARS = 600


def ptable_default():
    """The built-in perturbation table, as the README documents it: (i, j, p)."""
    return [
        (0, 0, 1.0), (1, 0, 2 / 3), (1, 3, 1 / 3), (2, 0, 1 / 3), (2, 3, 2 / 3),
        (3, 0, 0.05), (3, 3, 0.825), (3, 4, 0.1), (3, 5, 0.025),
        (4, 3, 0.2), (4, 4, 0.6), (4, 5, 0.2),
        (5, 3, 0.05), (5, 4, 0.2), (5, 5, 0.5), (5, 6, 0.2), (5, 7, 0.05),
    ]


def support(method, base, v):
    """The true counts that can be published as v (README: Disclosure control)."""
    if method == "round":
        half = (base + 1) // 2
        return max(0, v - (base - half)), v + half - 1
    if method == "random_round":
        return max(0, v - base + 1), v + base - 1
    if method == "cell_key":
        rows = ptable_default()
        max_i = max(i for i, _, _ in rows)
        cands = [i for i, j, _ in rows if j == v]
        cands += [v + max_i - j for i, j, _ in rows if i == max_i and v + max_i - j > max_i]
        return min(cands), max(cands)
    raise ValueError(method)


def read_public(release):
    """Every public table: {table: (metadata dict, [rows as dicts])}."""
    out = {}
    for f in sorted((Path(release) / "public" / "tables").glob("*/*/data.parquet")):
        pf = pq.ParquetFile(f)
        meta = {k.decode(): v.decode() for k, v in (pf.metadata.metadata or {}).items()}
        table = json.loads(meta["table"])
        prot = json.loads(meta["protection"])
        part = f.parent.name
        rows = pf.read().to_pylist()
        out[(table["id"], part)] = (table, prot, rows)
    return out


class Group:
    """The finest cells of a group's union cube for one partition, with the public knowledge."""

    def __init__(self, tables):
        self.tables = tables  # [(table, prot, rows)]
        dims = []
        hier = {}
        for t, _, _ in tables:
            for d in t["dimensions"]:
                if d not in dims:
                    dims.append(d)
            for child, parent in t.get("hierarchies", []):
                hier[child] = parent
        self.dims = dims
        codes = {d: set() for d in dims}
        nest = defaultdict(dict)
        for t, _, rows in tables:
            for r in rows:
                for d in t["dimensions"]:
                    if r[d] != TOTAL:
                        codes[d].add(r[d])
                for child, parent in hier.items():
                    if child in r and parent in r and r[child] != TOTAL and r[parent] != TOTAL:
                        nest[child][r[child]] = r[parent]
        self.codes = {d: sorted(c) for d, c in codes.items()}
        finest = []
        for combo in itertools.product(*[self.codes[d] for d in dims]):
            key = dict(zip(dims, combo))
            if all(nest[c].get(key[c]) == key[p] for c, p in hier.items()):
                finest.append(combo)
        self.finest = finest
        self.index = {f: i for i, f in enumerate(finest)}
        self._below = {}

    def cell_rows(self, table, row):
        """The finest cells below a published row of a member table."""
        tdims = tuple(table["dimensions"])
        if tdims not in self._below:
            pos = [self.dims.index(d) for d in tdims]
            below = defaultdict(list)
            for i, f in enumerate(self.finest):
                for mask in range(1 << len(pos)):
                    key = tuple(TOTAL if mask >> j & 1 else f[p] for j, p in enumerate(pos))
                    below[key].append(i)
            self._below[tdims] = below
        return self._below[tdims].get(tuple(row[d] for d in tdims), [])


def floors(by_part, part):
    """The (dimension, code) pairs known to occur in `part` of a group: every code of a single
    period; in a series, a code whose one-way margin every other period publishes as exactly 0."""
    tables = by_part[part]
    others = [q for q in by_part if q != part]
    out = set()
    dims = []
    for t, _, _ in tables:
        for d in t["dimensions"]:
            if d not in dims:
                dims.append(d)
    for t, _, rows in tables:
        for r in rows:
            for d in t["dimensions"]:
                if r[d] != TOTAL:
                    out.add((d, r[d]))
    if not others:
        return out

    def zero_elsewhere(d, c, q):
        for t, prot, rows in by_part[q]:
            if d not in t["dimensions"] or prot["method"] != "suppress":
                continue
            for r in rows:
                if r[d] == c and all(r[x] == TOTAL for x in t["dimensions"] if x != d) and r["value"] == 0:
                    return True
        return False

    return {(d, c) for (d, c) in out if all(zero_elsewhere(d, c, q) for q in others)}


def knowledge(group, weights=False, floored=None):
    """Equalities, bounds (per finest cell) and ≥ rows from the public files of one group;
    `floored`: the (dimension, code) pairs known to occur (None: every code shown)."""
    n = len(group.finest)
    eq, eq_rhs = [], []
    lo = np.zeros(n)
    hi = np.full(n, np.inf)
    ge, ge_rhs = [], []
    cells = []  # (table id, key, rows, published or None, conf)
    for t, prot, rows in group.tables:
        method = prot["method"]
        survey = method == "survey_quality"
        for r in rows:
            idx = group.cell_rows(t, r)
            key = tuple(r[d] for d in t["dimensions"])
            if survey:
                value = r.get("estimate")
                conf = r["CONF_STATUS"]
                cells.append((t["id"], key, idx, value if conf == "F" else None, conf))
                # Only estimated populations are sums of weights: usable equalities.
                if t["kind"]["kind"] == "survey_total" and t["kind"].get("variable") is None:
                    if conf == "F" and r.get("estimate") is not None:
                        eq.append(idx)
                        eq_rhs.append(r["estimate"])
                continue
            value = r["value"]
            conf = r["CONF_STATUS"]
            cells.append((t["id"], key, idx, value, conf))
            if value is None:
                continue
            if method == "suppress":
                eq.append(idx)
                eq_rhs.append(value)
            elif len(idx) == 1:
                a, b = support(method, prot.get("base") or 5, value)
                lo[idx[0]] = max(lo[idx[0]], a)
                hi[idx[0]] = min(hi[idx[0]], b)
    # Every code known to occur.
    if not weights:
        for j, d in enumerate(group.dims):
            for c in group.codes[d]:
                if floored is not None and (d, c) not in floored:
                    continue
                ge.append([i for i, f in enumerate(group.finest) if f[j] == c])
                ge_rhs.append(1)
    return eq, eq_rhs, lo, hi, ge, ge_rhs, cells


def matrix(rows_list, n):
    data, ri, ci = [], [], []
    for k, rows in enumerate(rows_list):
        for r in rows:
            ri.append(k)
            ci.append(r)
            data.append(1.0)
    return csr_matrix((data, (ri, ci)), shape=(len(rows_list), n))


def _quiet_highs():
    """HiGHS prints its banner to stdout when the first instance is made, before any option can
    silence it; stdout is this attack's report (--json), so that first instance is made with
    stdout pointed at stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


_quiet_highs()


class System:
    """The intruder's system of one group: equalities, ≤ rows and per-cell bounds. LP bounds come
    from one HiGHS model built once, each cell changing only the objective (HiGHS starts from the
    previous optimal basis); MILP bounds from scipy's `milp`, where the system is small."""

    def __init__(self, A_eq, b_eq, A_ub, b_ub, lo, hi):
        self.A_eq, self.b_eq, self.A_ub, self.b_ub, self.lo, self.hi = A_eq, b_eq, A_ub, b_ub, lo, hi
        self.n = len(lo)
        self.lp = None

    def _model(self):
        if self.lp is None:
            h = highspy.Highs()
            h.setOptionValue("output_flag", False)
            inf = highspy.kHighsInf
            h.addVars(self.n, np.asarray(self.lo, dtype=float),
                      np.where(np.isinf(self.hi), inf, self.hi).astype(float))
            for A, lower, upper in (
                (self.A_eq, self.b_eq, self.b_eq),
                (self.A_ub, None if self.b_ub is None else np.full(len(self.b_ub), -inf), self.b_ub),
            ):
                if A is None or A.shape[0] == 0:
                    continue
                A = csr_matrix(A)
                h.addRows(A.shape[0], np.asarray(lower, dtype=float), np.asarray(upper, dtype=float),
                          A.nnz, A.indptr[:-1].astype(np.int32), A.indices.astype(np.int32),
                          A.data.astype(float))
            self.lp = h
        return self.lp

    def bound(self, c_obj, integer, maximise):
        """The minimum (or maximum) of c_obj·x over the system; ±inf when unbounded."""
        if integer and self.n <= MILP_MAX_VARS:
            c = -c_obj if maximise else c_obj
            cons = []
            if self.A_eq is not None:
                cons.append(LinearConstraint(self.A_eq, self.b_eq, self.b_eq))
            if self.A_ub is not None:
                cons.append(LinearConstraint(self.A_ub, -np.inf, self.b_ub))
            res = milp(c, constraints=cons, bounds=Bounds(self.lo, self.hi),
                       integrality=np.ones(self.n))
            if res.status == 3 or res.status == 4:  # unbounded
                return np.inf if maximise else -np.inf
            if not res.success:
                raise RuntimeError(f"milp: {res.message}")
            return -res.fun if maximise else res.fun
        h = self._model()
        h.changeColsCost(self.n, np.arange(self.n, dtype=np.int32), np.asarray(c_obj, dtype=float))
        h.changeObjectiveSense(highspy.ObjSense.kMaximize if maximise else highspy.ObjSense.kMinimize)
        h.run()
        status = h.getModelStatus()
        if status in (highspy.HighsModelStatus.kUnbounded,
                      highspy.HighsModelStatus.kUnboundedOrInfeasible):
            return np.inf if maximise else -np.inf
        if status != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"HiGHS: {h.modelStatusToString(status)}")
        return h.getInfo().objective_function_value


def additive_supports(group, cells, lo, hi):
    """For perturbed tables: if every published cell is the sum of the published finest cells
    below it, the margins add nothing to what the finest cells say, and each cell's interval is
    the sum of its finest cells' supports (no LP needed). None when not additive."""
    finest_value = {}
    for tid, key, idx, value, conf in cells:
        if len(idx) == 1 and value is not None:
            finest_value[idx[0]] = value
    if len(finest_value) < len(group.finest):
        return None
    out = {}
    for tid, key, idx, value, conf in cells:
        if value is None or sum(finest_value[i] for i in idx) != value:
            return None
        out[(tid, key)] = (float(sum(lo[i] for i in idx)), float(sum(hi[i] for i in idx)))
    return out


def intervals_one(group, integer=True, weights=False, want=None, rng=0.0, floored=None):
    """Each wanted cell's interval: LP bounds, then, where the LP leaves it close to the range
    and the system is small, integer (MILP) bounds."""
    eq, eq_rhs, lo, hi, ge, ge_rhs, cells = knowledge(group, weights, floored)
    if any(p["method"] in ("round", "random_round", "cell_key") for _, p, _ in group.tables):
        fast = additive_supports(group, cells, lo, hi)
        if fast is not None:
            return {k: v for k, v in fast.items() if want is None or k in want}
    n = len(group.finest)
    A_eq = matrix(eq, n) if eq else None
    b_eq = np.array(eq_rhs, dtype=float) if eq else None
    A_ub = -matrix(ge, n) if ge else None
    b_ub = -np.array(ge_rhs, dtype=float) if ge else None
    system = System(A_eq, b_eq, A_ub, b_ub, lo, hi)
    out = {}
    for tid, key, idx, value, conf in cells:
        if value is not None and not weights:
            continue  # published exactly (or perturbed: checked by its support)
        if weights and conf != "C":
            continue
        if want is not None and (tid, key) not in want:
            continue
        c = np.zeros(n)
        c[idx] = 1.0
        a = system.bound(c, False, False)
        b = system.bound(c, False, True)
        if integer and not weights and b - a < rng + 1:
            a = system.bound(c, True, False)
            b = system.bound(c, True, True)
        out[(tid, key)] = (a, b)
    # Perturbed cells: every published cell, not only suppressed ones.
    if any(p["method"] in ("round", "random_round", "cell_key") for _, p, _ in group.tables):
        for tid, key, idx, value, conf in cells:
            if value is None or (want is not None and (tid, key) not in want):
                continue
            c = np.zeros(n)
            c[idx] = 1.0
            a = system.bound(c, integer, False)
            b = system.bound(c, integer, True)
            out[(tid, key)] = (a, b)
    return out


@functools.lru_cache(maxsize=None)
def truth(release, table, part):
    """The restricted audit's true counts of one table's partition (read once; never mutated)."""
    f = Path(release) / "restricted" / "audit" / table / part / "audit.parquet"
    if not f.exists():
        return {}
    t = pq.read_table(f).to_pylist()
    dims = None
    out = {}
    for r in t:
        if dims is None:
            dims = [k for k in r if k not in (
                "table_id", "source_id", "unit", "ref_period", "true_value", "published", "conf",
                "rule", "feasible_min", "feasible_max", "proof", "n", "estimate", "se", "ci_low",
                "ci_high", "ci_low_t", "ci_high_t", "cv", "deff", "df")]
        v = r.get("true_value", r.get("n"))
        out[tuple(r[d] for d in dims)] = v
    return out


def groups_of(public):
    by = defaultdict(list)
    for (tid, part), (t, prot, rows) in public.items():
        by[(prot["group"], part)].append((t, prot, rows))
    return by


GROUPS = None  # --groups: only these groups of linked tables


def attack_one(release, methods=None):
    public = read_public(release)
    found = []
    checked = 0
    grouped = groups_of(public)
    for (g, part), tables in sorted(grouped.items()):
        if GROUPS is not None and g not in GROUPS:
            continue
        prot = tables[0][1]
        if methods is not None and prot["method"] not in methods:
            continue
        k = prot.get("threshold") or 0
        rng = prot.get("protection_range") or 0
        group = Group(tables)
        survey = prot["method"] == "survey_quality"
        # Only cells that can score are bounded (the truth picks them, never the bounds).
        want = None
        if not survey:
            want = set()
            for t, _, rows in tables:
                tr = truth(release, t["id"], part)
                for key, v in tr.items():
                    if v is not None and 0 < v < k:
                        want.add((t["id"], key))
        members = ",".join(sorted(t["id"] for t, _, _ in tables))
        print(f"group {g} {part}: tables {members}", file=sys.stderr)
        by_part = {q: ts for (h, q), ts in grouped.items() if h == g}
        iv = intervals_one(group, integer=True, weights=survey, want=want, rng=rng,
                           floored=floors(by_part, part))
        for (tid, key), (a, b) in iv.items():
            if survey:
                # A suppressed weighted total recomputed exactly.
                if np.isfinite(a) and np.isfinite(b) and b - a <= 1e-6 * max(1.0, abs(b)):
                    found.append((g, tid, key, a, b, "weighted total recomputed"))
                checked += 1
                continue
            true = truth(release, tid, part).get(key)
            if true is None or not (0 < true < k):
                continue
            checked += 1
            if b - a < rng - 1e-6:
                found.append((g, tid, key, a, b, f"true {true}"))
    return found, checked


def attack_two(old, new):
    """Two releases: can the records added between them be singled out?"""
    a_pub, b_pub = read_public(old), read_public(new)
    found = []
    checked = 0
    ga, gb = groups_of(a_pub), groups_of(b_pub)
    for key in sorted(set(ga) & set(gb)):
        if GROUPS is not None and key[0] not in GROUPS:
            continue
        g1, g2 = Group(ga[key]), Group(gb[key])
        if g1.finest != g2.finest:
            # A new code: the frame grew; the new finest cells were zero in the old release.
            pass
        fin = sorted(set(g1.finest) | set(g2.finest))
        n = len(fin)
        idx = {f: i for i, f in enumerate(fin)}

        def lift(group, part, floored):
            eq, eq_rhs, lo, hi, ge, ge_rhs, cells = knowledge(group, floored=floored)
            m = lambda rows: [idx[group.finest[r]] + part * n for r in rows]
            return ([m(e) for e in eq], eq_rhs, lo, hi, [m(x) for x in ge], ge_rhs, cells, m)

        parts_a = {q: ts for (h, q), ts in ga.items() if h == key[0]}
        parts_b = {q: ts for (h, q), ts in gb.items() if h == key[0]}
        e1, r1, lo1, hi1, ge1, gr1, c1, m1 = lift(g1, 0, floors(parts_a, key[1]))
        e2, r2, lo2, hi2, ge2, gr2, c2, m2 = lift(g2, 1, floors(parts_b, key[1]))
        N = 2 * n
        lo = np.zeros(N)
        hi = np.full(N, np.inf)
        for f, i in g1.index.items():
            lo[idx[f]], hi[idx[f]] = lo1[i], hi1[i]
        for f, i in g2.index.items():
            lo[n + idx[f]], hi[n + idx[f]] = lo2[i], hi2[i]
        # Finest cells absent from the old frame were zero then.
        for f in fin:
            if f not in g1.index:
                hi[idx[f]] = 0
        eqs = e1 + e2
        A_eq = matrix(eqs, N) if eqs else None
        b_eq = np.array(r1 + r2, dtype=float) if eqs else None
        # Additions only: x2 - x1 >= 0, i.e. x1 - x2 <= 0; and the code sums.
        ub_rows, ub_rhs = [], []
        data, ri, ci = [], [], []
        for i in range(n):
            ri += [i, i]
            ci += [i, n + i]
            data += [1.0, -1.0]
        k0 = n
        for rows, rhs in zip(ge1 + ge2, gr1 + gr2):
            for r in rows:
                ri.append(k0)
                ci.append(r)
                data.append(-1.0)
            ub_rhs.append(-rhs)
            k0 += 1
        A_ub = csr_matrix((data, (ri, ci)), shape=(k0, N))
        b_ub = np.array([0.0] * n + ub_rhs)
        system = System(A_eq, b_eq, A_ub, b_ub, lo, hi)
        prot = ga[key][0][1]
        kk = prot.get("threshold") or 0
        # The true difference, per cell of each member, scored afterwards.
        for t, _, rows in gb[key]:
            old_truth = truth(old, t["id"], key[1])
            new_truth = truth(new, t["id"], key[1])
            for r in rows:
                cell = tuple(r[d] for d in t["dimensions"])
                d_true = (new_truth.get(cell) or 0) - (old_truth.get(cell) or 0)
                if not (0 < d_true < kk):
                    continue
                if all(v == TOTAL for v in cell):
                    continue  # that something was added is not an attribute
                checked += 1
                rows2 = g2.cell_rows(t, r)
                c = np.zeros(N)
                for x in rows2:
                    c[n + idx[g2.finest[x]]] += 1.0
                for x in g1.cell_rows(t, r):
                    c[idx[g1.finest[x]]] -= 1.0
                lo_d = system.bound(c, N <= MILP_MAX_VARS, False)
                if lo_d > 1e-6:
                    found.append((key[0], t["id"], cell, lo_d, None,
                                  f"the added records are certainly in this cell (true change {d_true})"))
    return found, checked


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    as_json = "--json" in sys.argv
    methods = None
    for a in sys.argv[1:]:
        if a.startswith("--methods="):
            methods = set(a.split("=", 1)[1].split(","))
        if a.startswith("--groups="):
            global GROUPS
            GROUPS = set(a.split("=", 1)[1].split(","))
    if len(args) == 1:
        found, checked = attack_one(args[0], methods)
    elif len(args) == 2:
        f1, c1 = attack_one(args[0], methods)
        f2, c2 = attack_one(args[1], methods)
        f3, c3 = attack_two(args[0], args[1])
        found, checked = f1 + f2 + f3, c1 + c2 + c3
    else:
        print(__doc__)
        sys.exit(2)
    if as_json:
        print(json.dumps([list(map(str, f)) for f in found]))
    for f in found[:50]:
        print("DISCLOSURE", *f)
    print(f"attack: {checked} sensitive cells checked, {len(found)} disclosures")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
