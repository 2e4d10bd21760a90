//! Quantile rules (part of the survey estimates): which value of a cell's weighted distribution
//! is its quantile, by each of R's `svyquantile` rules (`qrule_math`, `qrule_school`,
//! `qrule_hf3` … `qrule_hf9` of the `survey` package).
//!
//! Input: a cell's distinct values in increasing order, each with its records' total weight,
//! their number and the weights of the first and last of them in record order (records of
//! weight 0 left out, as R drops them). Output: the quantile at a probability.
//!
//! R's rules work on records sorted by value (ties in record order). A record inside a run of
//! tied values only ever yields that value, so every rule is decided by the runs' totals and the
//! weights of the runs' first and last records: the finest cells keep exactly that, a partial
//! that merges (totals add, the first and last record are the extremes of the record order),
//! so a margin's quantile is exact without keeping its records. Cumulative weights are summed
//! per run where R sums per record: they can differ in the last bits, which changes a rule's
//! answer only where a cumulative weight equals q·W exactly to the bit.

use crate::spec::QuantileRule;

/// The records of one distinct value of a cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub x: f64,
    /// Σ w over the run's records.
    pub w: f64,
    /// Records in the run (each of non-zero weight).
    pub n: u64,
    /// The weight of its first and of its last record, in record order.
    pub first: f64,
    pub last: f64,
}

/// The quantile at probability `p` of `runs` (increasing `x`, every `w` > 0) by `rule`;
/// `None` without any run.
pub fn quantile(rule: QuantileRule, runs: &[Run], p: f64) -> Option<f64> {
    let last = runs.last()?;
    let n: u64 = runs.iter().map(|r| r.n).sum();
    if n == 1 {
        return Some(last.x);
    }
    // Cumulative weight at the end of each run, summed in value order.
    let mut ends = Vec::with_capacity(runs.len());
    let mut c = 0.0;
    for r in runs {
        c += r.w;
        ends.push(c);
    }
    let total = c;
    let start = |g: usize| if g == 0 { 0.0 } else { ends[g - 1] };
    Some(match rule {
        QuantileRule::Math | QuantileRule::School | QuantileRule::Hf4 => {
            let s = search(runs, &ends, total, p);
            match rule {
                QuantileRule::Math => {
                    if s.wlow == 0.0 {
                        s.qlow
                    } else {
                        s.qup
                    }
                }
                QuantileRule::School => {
                    if s.wlow == 0.0 {
                        (s.qlow + s.qup) / 2.0
                    } else {
                        s.qup
                    }
                }
                _ => {
                    let gamma = s.wlow / (s.wup + s.wlow);
                    s.qlow * (1.0 - gamma) + s.qup * gamma
                }
            }
        }
        QuantileRule::Hf3 => {
            // R first sums the weights of each distinct value: the runs are its records.
            let t = p * total;
            let pos = ends.iter().rposition(|&e| e <= t).unwrap_or(0);
            let next = (pos + 1).min(runs.len() - 1);
            let wlow = p - ends[pos] / total;
            if wlow == 0.0 && (pos + 1) % 2 == 0 {
                runs[pos].x
            } else {
                runs[next].x
            }
        }
        QuantileRule::Hf5
        | QuantileRule::Hf6
        | QuantileRule::Hf7
        | QuantileRule::Hf8
        | QuantileRule::Hf9 => {
            // Each record's plotting position pk; a run's records lie between the positions
            // of its first and its last record, all at its value.
            let wn = last.last;
            let pk = |prev: f64, cum: f64, w: f64| -> f64 {
                match rule {
                    QuantileRule::Hf5 => (cum - w / 2.0) / total,
                    QuantileRule::Hf6 => cum / (total + wn),
                    QuantileRule::Hf7 => prev / (total - wn),
                    QuantileRule::Hf8 => (prev * 1.0 / 3.0 + cum * 2.0 / 3.0) / (total + wn / 3.0),
                    _ => (prev * 3.0 / 8.0 + cum * 5.0 / 8.0) / (total + wn / 4.0),
                }
            };
            let points: Vec<(f64, f64, f64)> = runs
                .iter()
                .enumerate()
                .map(|(g, r)| {
                    let s = start(g);
                    let a = pk(s, s + r.first, r.first);
                    let b = pk(ends[g] - r.last, ends[g], r.last);
                    (a, b, r.x)
                })
                .collect();
            linear(&points, p)
        }
    })
}

/// R's `qs()`: the record at the last cumulative weight ≤ p·W and the next one, with the
/// distances of p from their cumulative shares.
struct Bracket {
    qlow: f64,
    qup: f64,
    wlow: f64,
    wup: f64,
}

fn search(runs: &[Run], ends: &[f64], total: f64, p: f64) -> Bracket {
    let t = p * total;
    match ends.iter().rposition(|&e| e <= t) {
        None => {
            // No record at or below: R takes the first record and the second.
            let r0 = &runs[0];
            let (qup, cup) = if r0.n >= 2 {
                (r0.x, r0.first + r0.first) // a second record of the run (value is all that counts)
            } else {
                (runs[1].x, r0.first + runs[1].first)
            };
            if r0.n >= 2 && r0.first <= t {
                return inside(r0.x);
            }
            Bracket {
                qlow: r0.x,
                qup,
                wlow: p - r0.first / total,
                wup: cup / total - p,
            }
        }
        Some(g) => match runs.get(g + 1) {
            None => Bracket {
                qlow: runs[g].x,
                qup: runs[g].x,
                wlow: p - ends[g] / total,
                wup: ends[g] / total - p,
            },
            Some(next) if next.n >= 2 && ends[g] + next.first <= t => inside(next.x),
            Some(next) => Bracket {
                qlow: runs[g].x,
                qup: next.x,
                wlow: p - ends[g] / total,
                wup: (ends[g] + next.first) / total - p,
            },
        },
    }
}

/// The bracket of a position inside a run: both records hold its value, which every rule
/// returns whatever the distances.
fn inside(x: f64) -> Bracket {
    Bracket {
        qlow: x,
        qup: x,
        wlow: 0.0,
        wup: 1.0,
    }
}

/// R's `approx(pk, x, p, method = "linear", rule = 2)` over the runs' (first, last) positions.
fn linear(points: &[(f64, f64, f64)], p: f64) -> f64 {
    // The knots in order: each run's first and (if apart) last position.
    let mut knots: Vec<(f64, f64)> = Vec::with_capacity(2 * points.len());
    for &(a, b, x) in points {
        knots.push((a, x));
        if b != a {
            knots.push((b, x));
        }
    }
    let (first, last) = (knots[0], knots[knots.len() - 1]);
    if p <= first.0 {
        return first.1;
    }
    if p >= last.0 {
        return last.1;
    }
    // The segment [i, j] holding p, found as R's approx1 does.
    let (mut i, mut j) = (0, knots.len() - 1);
    while i < j - 1 {
        let m = (i + j) / 2;
        if p < knots[m].0 {
            j = m;
        } else {
            i = m;
        }
    }
    let ((xi, yi), (xj, yj)) = (knots[i], knots[j]);
    if p == xj {
        return yj;
    }
    if p == xi {
        return yi;
    }
    yi + (yj - yi) * ((p - xi) / (xj - xi))
}

/// R's `quantile(x, p, type = 7)` of values given with their multiplicities (increasing `x`):
/// x[lo] + h·(x[hi] − x[lo]) at index 1 + (n − 1)·p, written as R computes it.
pub fn type7(values: &[(f64, u64)], p: f64) -> Option<f64> {
    let n: u64 = values.iter().map(|v| v.1).sum();
    if n == 0 {
        return None;
    }
    let at = |i: u64| -> f64 {
        // The i-th (1-based) value in order.
        let mut seen = 0;
        for (x, m) in values {
            seen += m;
            if i <= seen {
                return *x;
            }
        }
        values.last().map_or(f64::NAN, |v| v.0)
    };
    let index = 1.0 + (n - 1) as f64 * p;
    let (lo, hi) = (index.floor(), index.ceil());
    let q = at(lo as u64);
    let xh = at(hi as u64);
    let h = index - lo;
    Some(if index > lo && xh != q {
        (1.0 - h) * q + h * xh
    } else {
        q
    })
}

/// R's `uniroot(f, c(lower, upper), tol = tol)` (maxiter 1000): the end points evaluated as
/// they are, `None` where R stops (an end point's value is NA, or both have the same sign, or
/// lower ≥ upper); inside, an infinite or NA value is replaced as R's `zeroin2` does (−Inf by
/// the most negative double, NA and +Inf by the largest), then Brent's `R_zeroin2` step for
/// step, so the root found is R's to the bit.
pub fn uniroot(f: &dyn Fn(f64) -> f64, lower: f64, upper: f64, tol: f64) -> Option<f64> {
    if lower.partial_cmp(&upper) != Some(std::cmp::Ordering::Less) {
        return None;
    }
    let (fa, fb) = (f(lower), f(upper));
    if fa.is_nan() || fb.is_nan() || fa * fb > 0.0 {
        return None;
    }
    let g = |x: f64| {
        let v = f(x);
        if v.is_finite() {
            v
        } else if v == f64::NEG_INFINITY {
            f64::MIN
        } else {
            f64::MAX
        }
    };
    Some(zeroin(&g, lower, upper, fa, fb, tol, 1000))
}

/// Brent's root finder as R's `R_zeroin2` (src/library/stats/src/zeroin.c) writes it.
fn zeroin(
    f: &dyn Fn(f64) -> f64,
    ax: f64,
    bx: f64,
    fa0: f64,
    fb0: f64,
    tol: f64,
    maxit: u32,
) -> f64 {
    let (mut a, mut b) = (ax, bx);
    let (mut fa, mut fb) = (fa0, fb0);
    let (mut c, mut fc) = (a, fa);
    if fa == 0.0 {
        return a;
    }
    if fb == 0.0 {
        return b;
    }
    for _ in 0..=maxit {
        let prev_step = b - a;
        if fc.abs() < fb.abs() {
            a = b;
            b = c;
            c = a;
            fa = fb;
            fb = fc;
            fc = fa;
        }
        let tol_act = 2.0 * f64::EPSILON * b.abs() + tol / 2.0;
        let mut new_step = (c - b) / 2.0;
        if new_step.abs() <= tol_act || fb == 0.0 {
            return b;
        }
        if prev_step.abs() >= tol_act && fa.abs() > fb.abs() {
            let cb = c - b;
            let (mut p, mut q);
            if a == c {
                let t1 = fb / fa;
                p = cb * t1;
                q = 1.0 - t1;
            } else {
                let qq = fa / fc;
                let t1 = fb / fc;
                let t2 = fb / fa;
                p = t2 * (cb * qq * (qq - t1) - (b - a) * (t1 - 1.0));
                q = (qq - 1.0) * (t1 - 1.0) * (t2 - 1.0);
            }
            if p > 0.0 {
                q = -q;
            } else {
                p = -p;
            }
            if p < (0.75 * cb * q - (tol_act * q).abs() / 2.0) && p < (prev_step * q / 2.0).abs() {
                new_step = p / q;
            }
        }
        if new_step.abs() < tol_act {
            new_step = if new_step > 0.0 { tol_act } else { -tol_act };
        }
        a = b;
        fa = fb;
        b += new_step;
        fb = f(b);
        if (fb > 0.0 && fc > 0.0) || (fb < 0.0 && fc < 0.0) {
            c = a;
            fc = fa;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as (value, weight) in record order → runs.
    fn runs(records: &[(f64, f64)]) -> Vec<Run> {
        let mut sorted: Vec<(usize, f64, f64)> = records
            .iter()
            .enumerate()
            .map(|(i, &(x, w))| (i, x, w))
            .collect();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let mut out: Vec<Run> = Vec::new();
        for (_, x, w) in sorted {
            match out.last_mut() {
                Some(r) if r.x == x => {
                    r.w += w;
                    r.n += 1;
                    r.last = w;
                }
                _ => out.push(Run {
                    x,
                    w,
                    n: 1,
                    first: w,
                    last: w,
                }),
            }
        }
        out
    }

    #[test]
    fn unweighted_rules_match_hyndman_fan() {
        // x = 1..=4, equal weights: R's quantile(1:4, 0.5, type = k).
        let r = runs(&[(3.0, 1.0), (1.0, 1.0), (4.0, 1.0), (2.0, 1.0)]);
        let q = |rule| quantile(rule, &r, 0.5).unwrap();
        assert_eq!(q(QuantileRule::Math), 2.0); // type 1
        assert_eq!(q(QuantileRule::School), 2.5); // type 2
        assert_eq!(q(QuantileRule::Hf3), 2.0); // type 3
        assert_eq!(q(QuantileRule::Hf4), 2.0); // type 4: n·p = 2
        assert_eq!(q(QuantileRule::Hf5), 2.5); // type 5
        assert_eq!(q(QuantileRule::Hf6), 2.5); // type 6
        assert_eq!(q(QuantileRule::Hf7), 2.5); // type 7
        assert!((q(QuantileRule::Hf8) - 2.5).abs() < 1e-12);
        assert!((q(QuantileRule::Hf9) - 2.5).abs() < 1e-12);
        // Type 7 at 0.3: 1 + 0.3·3 = 1.9.
        assert!((quantile(QuantileRule::Hf7, &r, 0.3).unwrap() - 1.9).abs() < 1e-12);
    }

    #[test]
    fn ties_are_decided_by_their_runs() {
        // Records (value, weight), W = 16 so that every share below is exact in binary.
        // Sorted: 1(1) 1(1) 3(4) 5(2) 5(1) 5(7); cumw 1 2 6 8 9 16.
        let recs = [
            (5.0, 2.0),
            (1.0, 1.0),
            (5.0, 1.0),
            (3.0, 4.0),
            (5.0, 7.0),
            (1.0, 1.0),
        ];
        let r = runs(&recs);
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].n, 3);
        assert_eq!((r[2].first, r[2].last), (2.0, 7.0));
        let q = |rule, p| quantile(rule, &r, p).unwrap();
        // p·W = 8 is the cumw of a record inside the run of 5s: R's qs() stops there.
        assert_eq!(q(QuantileRule::Math, 0.5), 5.0);
        assert_eq!(q(QuantileRule::School, 0.5), 5.0);
        // p·W = 6 ends the run of 3: math takes 3, school averages 3 and 5.
        assert_eq!(q(QuantileRule::Math, 0.375), 3.0);
        assert_eq!(q(QuantileRule::School, 0.375), 4.0);
        // hf3 keeps the lower value of an exact tie only at an even (1-based) distinct value.
        assert_eq!(q(QuantileRule::Hf3, 0.375), 3.0);
        assert_eq!(q(QuantileRule::Hf3, 0.125), 3.0);
        assert_eq!(q(QuantileRule::Math, 0.125), 1.0);
        assert_eq!(q(QuantileRule::School, 0.125), 2.0);
        assert_eq!(q(QuantileRule::Math, 0.6), 5.0);
        // hf4 between the run of 3 (cumw 6) and the first 5 (cumw 8) at p·W = 7: 4.
        assert!((q(QuantileRule::Hf4, 7.0 / 16.0) - 4.0).abs() < 1e-12);
    }

    #[test]
    fn hf7_interpolates_between_runs_by_their_edge_records() {
        // Records (sorted): 1(w1) 2(w1) 2(w2) 4(w1). cumw = 1,2,4,5; pk = c(0,1,2,4)/4.
        let r = runs(&[(2.0, 1.0), (1.0, 1.0), (4.0, 1.0), (2.0, 2.0)]);
        // p = 0.75 lies between pk 0.5 (x 2) and 1.0 (x 4): 2 + 2·0.5 = 3.
        assert!((quantile(QuantileRule::Hf7, &r, 0.75).unwrap() - 3.0).abs() < 1e-12);
        // p = 0.3 between 0.25 (x 2) and 0.5 (x 2): 2; p = 0.1 between 0 (x 1) and 0.25: 1.4.
        assert!((quantile(QuantileRule::Hf7, &r, 0.3).unwrap() - 2.0).abs() < 1e-12);
        assert!((quantile(QuantileRule::Hf7, &r, 0.1).unwrap() - 1.4).abs() < 1e-12);
    }

    #[test]
    fn the_first_record_alone_below_p() {
        // R's qs() falls back to records 1 and 2 when no cumulative weight reaches p·W.
        let r = runs(&[(1.0, 5.0), (2.0, 1.0), (3.0, 1.0)]);
        assert_eq!(quantile(QuantileRule::Math, &r, 0.1), Some(2.0));
        assert_eq!(quantile(QuantileRule::Math, &r, 0.8), Some(2.0));
        assert_eq!(quantile(QuantileRule::Math, &r, 0.9), Some(3.0));
        assert_eq!(quantile(QuantileRule::Math, &[], 0.5), None);
    }

    #[test]
    fn type7_interpolates_between_order_statistics() {
        // 1, 2, 2, 4: R's quantile(type = 7) at 0.25 is index 1.75, between 1 and 2: 1.75; at
        // 0.75 index 3.25, between 2 and 4: 2.5; at 0.5 index 2.5 between 2 and 2: 2.
        let v = [(1.0, 1), (2.0, 2), (4.0, 1)];
        assert_eq!(type7(&v, 0.25), Some(1.75));
        assert_eq!(type7(&v, 0.75), Some(2.5));
        assert_eq!(type7(&v, 0.5), Some(2.0));
        assert_eq!(type7(&[], 0.5), None);
    }

    #[test]
    fn uniroot_finds_a_sign_change_within_its_tolerance_or_stops_as_r_does() {
        let r = uniroot(&|x| x - 1.0, 0.0, 3.0, 1e-6).unwrap();
        assert!((r - 1.0).abs() < 1e-6, "{r}");
        // A step function: the root is the step, within tol.
        let r = uniroot(&|x| if x < 2.5 { -1.0 } else { 1.0 }, 0.0, 10.0, 1e-3).unwrap();
        assert!((r - 2.5).abs() < 1e-3, "{r}");
        assert_eq!(uniroot(&|x| x + 5.0, 0.0, 3.0, 1e-6), None, "same sign");
        assert_eq!(uniroot(&|_| f64::NAN, 0.0, 3.0, 1e-6), None, "NA at an end");
        assert_eq!(
            uniroot(&|x| x - 1.0, 3.0, 0.0, 1e-6),
            None,
            "lower >= upper"
        );
    }
}
