//! Calibration of survey weights to population totals (part of the survey estimates), as R's
//! `survey::calibrate` and `postStratify` compute it.
//!
//! Input: the design weight total of each calibration class (a combination of the margins'
//! categories: every record of a class has the same auxiliary vector), the class's auxiliary
//! vector and the population totals. Output: the g-factor of each class (calibrated weight =
//! design weight × g) and what the variance needs: the inverse of Σ w·x·x' for the residuals
//! of the calibration model.
//!
//! The solver is R's `grake`: Newton steps on η with the calibration function's inverse F
//! (linear, raking or logit, within bounds), a Moore–Penrose inverse of the Jacobian, step
//! halving when g is not finite, and convergence when every total is met within
//! ε·(1 + |total|); after `max_iterations` steps it stops and the source is rejected. Classes
//! replace records (their rows of the model matrix are equal), so a step costs classes × p².
//! [`ipf`] is R's `rake()`: post-stratification to each margin in turn, pass after pass.

// Matrix kernels index rows and columns by number: clearer than iterator chains here.
#![allow(clippy::needless_range_loop)]

use crate::spec::CalMethod;

/// One calibration problem, aggregated to classes.
pub struct Problem<'a> {
    pub method: CalMethod,
    /// Auxiliary vector of each class (p values).
    pub x: &'a [Vec<f64>],
    /// Design weight total of each class.
    pub w: &'a [f64],
    /// Population total of each auxiliary variable.
    pub population: &'a [f64],
    pub bounds: Option<(f64, f64)>,
    pub trim: Option<(f64, f64)>,
    pub epsilon: f64,
    pub max_iterations: u32,
}

/// The solution: g per class and the Newton steps it took.
#[derive(Debug)]
pub struct Solution {
    pub g: Vec<f64>,
    pub iterations: u32,
}

/// F(u) − 1 and F′(u) of R's calibration functions, within `bounds` (lower, upper).
fn calfun(method: CalMethod, u: f64, (l, h): (f64, f64)) -> (f64, f64) {
    match method {
        // IPF has no calibration function (see `ipf`): linear if ever asked.
        CalMethod::Linear | CalMethod::Poststratify | CalMethod::Ipf => (
            (u + 1.0).max(l).min(h) - 1.0,
            if u < h - 1.0 && u > l - 1.0 { 1.0 } else { 0.0 },
        ),
        // R's derivative tests u against the linear function's limits: kept, as it steers
        // R's Newton path (not the solution).
        CalMethod::Raking => (
            u.exp().max(l).min(h) - 1.0,
            if u < h - 1.0 && u > l - 1.0 {
                u.exp()
            } else {
                0.0
            },
        ),
        CalMethod::Logit => {
            let a = (h - l) / ((h - 1.0) * (1.0 - l));
            let e = (a * u).exp();
            let den = h - 1.0 + (1.0 - l) * e;
            let num = l * (h - 1.0) + h * (1.0 - l) * e;
            let f = num / den - 1.0;
            let d = h * (1.0 - l) * e * a / den - num * ((1.0 - l) * e * a) / (den * den);
            (f, d)
        }
    }
}

/// Solve a calibration; `Err` says why it cannot be met (R: "Failed to converge").
pub fn solve(pb: &Problem<'_>) -> Result<Solution, String> {
    // Post-stratification is the linear calibration on the post-strata's indicators (one
    // Newton step gives each stratum its total over its weight).
    let (k, p) = (pb.x.len(), pb.population.len());
    let bounds = pb.bounds.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    let mut w = pb.w.to_vec();
    let mut sample = vec![0.0; p];
    for c in 0..k {
        for j in 0..p {
            sample[j] += w[c] * pb.x[c][j];
        }
    }
    // R rescales the weights when every total is over 20 times its estimate.
    let scales: Vec<f64> = (0..p).map(|j| pb.population[j] / sample[j]).collect();
    let scale = if scales.iter().all(|s| *s > 20.0) {
        let s = scales.iter().sum::<f64>() / p as f64;
        w.iter_mut().for_each(|v| *v *= s);
        sample.iter_mut().for_each(|v| *v *= s);
        Some(s)
    } else {
        None
    };
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut eta = vec![0.0; p];
    let state = |eta: &[f64]| -> Vec<(f64, f64)> {
        pb.x.iter()
            .map(|x| calfun(pb.method, dot(x, eta), bounds))
            .collect()
    };
    let misfit = |fd: &[(f64, f64)]| -> Vec<f64> {
        (0..p)
            .map(|j| {
                pb.population[j]
                    - sample[j]
                    - (0..k).map(|c| w[c] * pb.x[c][j] * fd[c].0).sum::<f64>()
            })
            .collect()
    };
    let mut fd = state(&eta);
    let mut iter = 1u32;
    loop {
        let mut t = vec![0.0; p * p];
        for c in 0..k {
            let s = w[c] * fd[c].1;
            for a in 0..p {
                for b in 0..p {
                    t[a * p + b] += s * pb.x[c][a] * pb.x[c][b];
                }
            }
        }
        let m = misfit(&fd);
        let ti = pinv(&t, p);
        let mut deta: Vec<f64> = (0..p).map(|a| dot(&ti[a * p..(a + 1) * p], &m)).collect();
        eta.iter_mut().zip(&deta).for_each(|(e, d)| *e += d);
        fd = state(&eta);
        while iter < pb.max_iterations && fd.iter().any(|(f, d)| !f.is_finite() || !d.is_finite()) {
            iter += 1;
            deta.iter_mut().for_each(|d| *d /= 2.0);
            eta.iter_mut().zip(&deta).for_each(|(e, d)| *e -= d);
            fd = state(&eta);
        }
        let m = misfit(&fd);
        let worst = m
            .iter()
            .zip(pb.population)
            .map(|(m, t)| m.abs() / (1.0 + t.abs()))
            .fold(0.0f64, f64::max);
        if worst < pb.epsilon {
            break;
        }
        iter += 1;
        if iter > pb.max_iterations || !worst.is_finite() {
            return Err(format!(
                "the calibration did not converge: a total is still off by {worst:.3e} of itself after {} Newton steps (epsilon {}, max_iterations {}); loosen the bounds, merge small categories, or raise max_iterations",
                iter - 1,
                pb.epsilon,
                pb.max_iterations
            ));
        }
    }
    let mut g: Vec<f64> = fd.iter().map(|(f, _)| 1.0 + f).collect();
    if let Some(s) = scale {
        g.iter_mut().for_each(|v| *v *= s);
    }
    if let Some((lo, hi)) = pb.trim {
        // R's trim: g clipped, the weight cut off (or added) spread over the others in
        // proportion to their design weights.
        let outside: Vec<bool> = g.iter().map(|v| *v < lo || *v > hi).collect();
        if outside.iter().any(|o| *o) {
            let mut cut = 0.0;
            let mut rest = 0.0;
            for c in 0..k {
                let clipped = g[c].max(lo).min(hi);
                if outside[c] {
                    cut += (g[c] - clipped) * pb.w[c];
                    g[c] = clipped;
                } else {
                    rest += pb.w[c];
                }
            }
            for c in 0..k {
                if !outside[c] {
                    g[c] += cut / rest;
                }
            }
        }
    }
    Ok(Solution {
        g,
        iterations: iter,
    })
}

/// One iterative proportional fitting (R's `rake()`), aggregated to classes.
pub struct Ipf<'a> {
    /// Per margin: each class's category (`None` for a class of weight 0, in none).
    pub category: &'a [Vec<Option<usize>>],
    /// Per margin: each category's population total.
    pub totals: &'a [Vec<f64>],
    /// Each class's cell of the table the convergence is judged on (R's `svytable` of every
    /// margin variable crossed).
    pub cell: &'a [usize],
    /// Starting weight total of each class.
    pub w: &'a [f64],
    /// Convergence: the table's largest change in one pass below this (R's `control$epsilon`;
    /// below 1, a fraction of the total weight).
    pub epsilon: f64,
    /// Passes at most (R's `control$maxit`).
    pub max_iterations: u32,
}

/// An IPF solution: g per class, the factor each class had after each margin's step of the
/// last pass (what R keeps for the variance), and the passes it took.
#[derive(Debug)]
pub struct IpfSolution {
    pub g: Vec<f64>,
    pub steps: Vec<Vec<f64>>,
    pub passes: u32,
    /// Whether a pass moved no cell by epsilon before `max_iterations` passes (R warns
    /// "Raking did not converge" and keeps the weights; so does migstat, logging it).
    pub converged: bool,
}

/// R's `rake()`: each pass post-stratifies to every margin in turn (each category's weights
/// scaled to its total), until a pass changes no cell of the crossed table by `epsilon` or
/// more; with `passes` (a replicate, run as many passes as the full sample) exactly that many.
pub fn ipf(pb: &Ipf<'_>, passes: Option<u32>) -> Result<IpfSolution, String> {
    let k = pb.w.len();
    let cells = pb.cell.iter().copied().max().map_or(0, |m| m + 1);
    let table = |w: &[f64]| {
        let mut t = vec![0.0; cells];
        for c in 0..k {
            t[pb.cell[c]] += w[c];
        }
        t
    };
    let total: f64 = pb.w.iter().sum();
    let epsilon = if pb.epsilon < 1.0 {
        pb.epsilon * total
    } else {
        pb.epsilon
    };
    let mut w = pb.w.to_vec();
    let mut old = table(&w);
    let mut steps = vec![vec![1.0; k]; pb.category.len()];
    let mut pass = 0u32;
    let mut converged = true;
    loop {
        for (m, (cats, totals)) in pb.category.iter().zip(pb.totals).enumerate() {
            let mut sample = vec![0.0; totals.len()];
            for c in 0..k {
                if let Some(a) = cats[c] {
                    sample[a] += w[c];
                }
            }
            for c in 0..k {
                if let Some(a) = cats[c] {
                    w[c] *= totals[a] / sample[a];
                }
                steps[m][c] = if pb.w[c] > 0.0 { w[c] / pb.w[c] } else { 1.0 };
            }
        }
        let new = table(&w);
        let delta = old
            .iter()
            .zip(&new)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        match passes {
            Some(n) if pass + 1 >= n => break,
            Some(_) => {}
            None if delta < epsilon => break,
            None if !delta.is_finite() => {
                return Err(format!(
                    "the raking (IPF) failed in pass {}: a category's weight is 0 or not finite",
                    pass + 1
                ));
            }
            // As R: the weights of the last pass, with a warning (`converged` false).
            None if pass + 1 >= pb.max_iterations => {
                converged = false;
                break;
            }
            None => {}
        }
        old = new;
        pass += 1;
    }
    let g = (0..k)
        .map(|c| if pb.w[c] > 0.0 { w[c] / pb.w[c] } else { 1.0 })
        .collect();
    Ok(IpfSolution {
        g,
        steps,
        passes: pass + 1,
        converged,
    })
}

/// Moore–Penrose inverse of a symmetric p×p matrix (row-major), as MASS::ginv with tolerance
/// 256·ε of the largest singular value: cyclic Jacobi eigenvectors, small eigenvalues dropped.
pub fn pinv(a: &[f64], p: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    let mut v = vec![0.0; p * p];
    for i in 0..p {
        v[i * p + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..p)
            .flat_map(|i| (0..p).filter(move |j| *j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * p + j] * m[i * p + j])
            .sum();
        if off < 1e-300 {
            break;
        }
        for i in 0..p {
            for j in i + 1..p {
                let aij = m[i * p + j];
                if aij == 0.0 {
                    continue;
                }
                let theta = (m[j * p + j] - m[i * p + i]) / (2.0 * aij);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..p {
                    let (mki, mkj) = (m[k * p + i], m[k * p + j]);
                    m[k * p + i] = c * mki - s * mkj;
                    m[k * p + j] = s * mki + c * mkj;
                }
                for k in 0..p {
                    let (mik, mjk) = (m[i * p + k], m[j * p + k]);
                    m[i * p + k] = c * mik - s * mjk;
                    m[j * p + k] = s * mik + c * mjk;
                }
                for k in 0..p {
                    let (vki, vkj) = (v[k * p + i], v[k * p + j]);
                    v[k * p + i] = c * vki - s * vkj;
                    v[k * p + j] = s * vki + c * vkj;
                }
            }
        }
    }
    let eig: Vec<f64> = (0..p).map(|i| m[i * p + i]).collect();
    let top = eig.iter().fold(0.0f64, |a, e| a.max(e.abs()));
    let tol = 256.0 * f64::EPSILON * top;
    let mut out = vec![0.0; p * p];
    for (k, e) in eig.iter().enumerate() {
        if e.abs() > tol && top > 0.0 {
            for i in 0..p {
                for j in 0..p {
                    out[i * p + j] += v[i * p + k] * v[j * p + k] / e;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinv_inverts_and_drops_the_null_space() {
        // [[4, 2], [2, 3]]⁻¹ = [[3, −2], [−2, 4]] / 8.
        let i = pinv(&[4.0, 2.0, 2.0, 3.0], 2);
        let want = [0.375, -0.25, -0.25, 0.5];
        assert!(
            i.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-14),
            "{i:?}"
        );
        // A rank-one matrix [[1, 1], [1, 1]]: its pseudo-inverse is itself / 4.
        let i = pinv(&[1.0, 1.0, 1.0, 1.0], 2);
        assert!(i.iter().all(|a| (a - 0.25).abs() < 1e-14), "{i:?}");
    }

    /// Two classes (men, women), an intercept and a woman indicator: totals 100 and 60.
    fn two_classes(method: CalMethod, bounds: Option<(f64, f64)>) -> Vec<f64> {
        let x = vec![vec![1.0, 0.0], vec![1.0, 1.0]];
        let w = [50.0, 30.0];
        solve(&Problem {
            method,
            x: &x,
            w: &w,
            population: &[100.0, 60.0],
            bounds,
            trim: None,
            epsilon: 1e-12,
            max_iterations: 50,
        })
        .unwrap()
        .g
    }

    #[test]
    fn every_method_meets_the_totals_of_saturated_margins() {
        // Saturated: g = total / weight in each class whatever the method (40/50, 60/30).
        for m in [
            CalMethod::Poststratify,
            CalMethod::Linear,
            CalMethod::Raking,
        ] {
            let g = two_classes(m, None);
            assert!(
                (g[0] - 0.8).abs() < 1e-12 && (g[1] - 2.0).abs() < 1e-12,
                "{m:?}: {g:?}"
            );
        }
        let g = two_classes(CalMethod::Logit, Some((0.5, 2.5)));
        assert!(
            (g[0] - 0.8).abs() < 1e-9 && (g[1] - 2.0).abs() < 1e-9,
            "{g:?}"
        );
        // Bounds that cannot be met: no convergence, said so.
        let x = vec![vec![1.0, 0.0], vec![1.0, 1.0]];
        let e = solve(&Problem {
            method: CalMethod::Linear,
            x: &x,
            w: &[50.0, 30.0],
            population: &[100.0, 60.0],
            bounds: Some((0.9, 1.5)),
            trim: None,
            epsilon: 1e-7,
            max_iterations: 20,
        })
        .unwrap_err();
        assert!(e.contains("did not converge"), "{e}");
    }

    #[test]
    fn ipf_post_stratifies_each_margin_in_turn() {
        // Four classes of weight 1: (A, X), (A, Y), (B, X), (B, Y). Margin 1 wants A = 3,
        // B = 1: A's classes become 1.5, B's 0.5; margin 2 wants X = Y = 2, which they already
        // are. The second pass changes nothing: converged in 2 passes, g = (1.5, 1.5, 0.5, 0.5).
        let category = vec![
            vec![Some(0), Some(0), Some(1), Some(1)],
            vec![Some(0), Some(1), Some(0), Some(1)],
        ];
        let totals = vec![vec![3.0, 1.0], vec![2.0, 2.0]];
        let pb = Ipf {
            category: &category,
            totals: &totals,
            cell: &[0, 1, 2, 3],
            w: &[1.0; 4],
            epsilon: 1e-9,
            max_iterations: 10,
        };
        let s = ipf(&pb, None).unwrap();
        assert_eq!(s.g, vec![1.5, 1.5, 0.5, 0.5]);
        assert_eq!(s.passes, 2);
        assert!(s.converged);
        assert_eq!(s.steps[0], vec![1.5, 1.5, 0.5, 0.5]);
        // One pass allowed: not converged (R warns), the weights of that pass kept.
        let one = ipf(
            &Ipf {
                max_iterations: 1,
                ..pb
            },
            None,
        )
        .unwrap();
        assert!(!one.converged);
        assert_eq!(one.g, vec![1.5, 1.5, 0.5, 0.5]);
    }
}
