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
}
