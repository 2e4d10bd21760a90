//! The profile-likelihood interval of a share (R's `svyciprop(…, method = "likelihood")`).
//!
//! Owns the arithmetic, not the data: input is a domain's records as (normalised weight, in the
//! category?, how many) triples, the share's design-based standard error and the quantile of
//! the confidence level; output is the interval. R fits the intercept-only
//! `svyglm(y ~ 1, family = quasibinomial)` by iteratively reweighted least squares, profiles
//! its quasi-deviance at up to nine steps each side of the estimate, interpolates the signed
//! root deviance with a Forsythe–Malcolm–Moler cubic spline and reads off where it crosses the
//! cut-off, the cut-off scaled by the design effect on the logit (Rao–Scott). The profile is a
//! grid read through a spline, so its bounds depend on where glm.fit stopped and where the
//! grid falls: [`fit`] follows glm.fit's iterations (its starting values, its stopping rule,
//! the model variance of the iteration it stopped at) and [`interval`] the profile's grid, so
//! the bounds agree with R's to rounding, not only to the tolerance of the iterations.

/// R's `glm.fit` stopping tolerance and iteration limit (`glm.control()`).
const EPSILON: f64 = 1e-8;
const MAXIT: usize = 25;
/// `MASS::profile.glm`'s defaults as survey's copy uses them: at most nine steps each side,
/// each a fifth of the largest signed root deviance of interest.
const MAXSTEPS: usize = 10;

/// The fitted intercept-only model of one share: everything the profile needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    /// The fitted logit where glm.fit stopped.
    pub beta: f64,
    /// The model-based variance of the logit (`naive.cov`): 1/Σ working weights of the last
    /// iteration, i.e. at the estimate before the final update.
    pub naive: f64,
    /// Σ W·y and Σ W·(1 − y) with the normalised weights: the quasi-deviance at any logit.
    pub s1: f64,
    pub s0: f64,
    /// The rows of the model frame (R's `NROW(Y)`, the profile's residual df + 1) and the
    /// records of non-zero weight (the `n` of `svyvar`, whose n/(n − 1) is the dispersion).
    pub rows: u64,
    pub nz: u64,
}

/// R's logit inverse link (`plogis` clamped at |η| > 30, as `binomial()$linkinv`).
fn linkinv(eta: f64) -> f64 {
    let t = if eta < -30.0 {
        f64::EPSILON
    } else if eta > 30.0 {
        1.0 / f64::EPSILON
    } else {
        eta.exp()
    };
    t / (1.0 + t)
}

/// R's dμ/dη of the logit link, floored at machine epsilon.
fn mu_eta(eta: f64) -> f64 {
    if eta.abs() > 30.0 {
        f64::EPSILON
    } else {
        let e = eta.exp();
        (e / ((1.0 + e) * (1.0 + e))).max(f64::EPSILON)
    }
}

/// The binomial deviance at fitted share `mu` of records weighing `s1` in the category and
/// `s0` out of it.
fn deviance(s1: f64, s0: f64, mu: f64) -> f64 {
    let one = if s1 > 0.0 { -2.0 * s1 * mu.ln() } else { 0.0 };
    let zero = if s0 > 0.0 {
        -2.0 * s0 * (1.0 - mu).ln()
    } else {
        0.0
    };
    one + zero
}

/// Fit the intercept-only quasibinomial model as glm.fit does: start from each record's
/// `(W·y + ½)/(W + 1)`, one weighted least-squares step per iteration, stop when the deviance
/// changes by less than 1e-8 of itself. `records` are (normalised weight W, y, count); records
/// of weight 0 take no part, as in glm. `None` for a share of 0 or 1 (no finite logit).
pub fn fit(records: impl IntoIterator<Item = (f64, bool, u64)>, rows: u64) -> Option<Fit> {
    let (mut a, mut az, mut devold, mut s1, mut s0, mut nz) = (0.0, 0.0, 0.0, 0.0, 0.0, 0u64);
    for (w, y, count) in records {
        if w <= 0.0 || count == 0 {
            continue;
        }
        let k = count as f64;
        let yv = if y { 1.0 } else { 0.0 };
        let m = (w * yv + 0.5) / (w + 1.0);
        let eta = (m / (1.0 - m)).ln();
        let mu = linkinv(eta);
        let me = mu_eta(eta);
        let var = mu * (1.0 - mu);
        let z = eta + (yv - mu) / me;
        let ww = w * me * me / var;
        a += k * ww;
        az += k * ww * z;
        devold += k * if y {
            -2.0 * w * mu.ln()
        } else {
            -2.0 * w * (1.0 - mu).ln()
        };
        if y {
            s1 += k * w;
        } else {
            s0 += k * w;
        }
        nz += count;
    }
    if !(s1 > 0.0 && s0 > 0.0 && a > 0.0) {
        return None;
    }
    let p = s1 / (s1 + s0);
    let mut beta = az / a;
    let mut naive = 1.0 / a;
    for _ in 1..MAXIT {
        let mu = linkinv(beta);
        let dev = deviance(s1, s0, mu);
        if (dev - devold).abs() / (dev.abs() + 0.1) < EPSILON {
            break;
        }
        devold = dev;
        let me = mu_eta(beta);
        naive = mu * (1.0 - mu) / ((s1 + s0) * me * me);
        beta += (p - mu) / me;
    }
    beta.is_finite().then_some(Fit {
        beta,
        naive,
        s1,
        s0,
        rows,
        nz,
    })
}

/// The interval at quantile `q` (normal, or Student's t with the interval's df) for the share
/// fitted by `fit` whose logit has design-based standard error `se_logit`: R's `confint.svyglm(…,
/// method = "likelihood")` mapped back to the share scale. `None` where R gives no bound (a
/// cut-off beyond the profiled range, a domain of one record).
pub fn interval(fit: &Fit, se_logit: f64, q: f64) -> (Option<f64>, Option<f64>) {
    use statrs::distribution::{ContinuousCDF, Normal};
    let none = (None, None);
    // An SE of the logit below 1e-9 is rounding noise around a share the design fixes (a
    // post-stratified margin): the profile is flat there and R finds no bound.
    if !(se_logit.is_finite() && se_logit > 1e-9 && fit.nz > 1 && fit.rows > 1 && q > 0.0) {
        return none;
    }
    // Rao–Scott: the cut-off scales with the design effect of the logit.
    let lambda = se_logit * se_logit / fit.naive;
    let cut = q * lambda.sqrt();
    // R's pnorm is 0 below −37.5193, and a profile out to an infinite cut-off has no bounds.
    if cut.is_nan() || cut >= 37.5193 {
        return none;
    }
    let alpha = Normal::standard().cdf(-cut) / 2.0;
    // The profile reaches the F(1, n − 1) quantile at alpha: t(n − 1) at alpha/2.
    let Some(zmax) = t_upper((fit.rows - 1) as f64, alpha / 2.0) else {
        return none;
    };
    let del = zmax / 5.0;
    let dispersion = fit.nz as f64 / (fit.nz - 1) as f64;
    let dev0 = deviance(fit.s1, fit.s0, linkinv(fit.beta));
    let mut points = vec![(fit.beta, 0.0)];
    for sgn in [-1.0, 1.0] {
        let mut z: f64 = 0.0;
        let mut step = 0;
        loop {
            step += 1;
            if step >= MAXSTEPS || z.abs() >= zmax {
                break;
            }
            let b = fit.beta + sgn * step as f64 * del * se_logit;
            let zz = (deviance(fit.s1, fit.s0, linkinv(b)) - dev0) / dispersion;
            if zz <= -0.001 {
                return none; // R: "profiling has found a better solution"
            }
            z = sgn * zz.max(0.0).sqrt();
            points.push((b, z));
        }
    }
    // R orders the profile by z, splines z on the logit, and reads the logit back off a
    // linear interpolation of the spline's points.
    points.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (xs, ys) = regularize(points);
    let Some(sp) = fmm(&xs, &ys) else {
        return none;
    };
    let n = 3 * xs.len();
    let (lo, hi) = (xs[0], xs[xs.len() - 1]);
    let curve: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let u = if i + 1 == n {
                hi
            } else {
                lo + i as f64 * ((hi - lo) / (n - 1) as f64)
            };
            (sp.eval(u), u)
        })
        .collect();
    let (zs, bs) = regularize(curve);
    let at = |v: f64| approx(&zs, &bs, v).map(linkinv);
    (at(-cut), at(cut))
}

/// The upper `p` quantile of Student's t with `df` degrees of freedom. A cut-off far in the
/// tail (a small domain's t quantile times a large design effect) asks for p far below what the
/// inverse incomplete beta handles: there, bisection on the tail probability itself.
fn t_upper(df: f64, p: f64) -> Option<f64> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    use statrs::function::beta::checked_beta_reg;
    if !(p > 0.0 && p < 0.5 && df > 0.0) {
        return None;
    }
    if p >= 1e-10 {
        return StudentsT::new(0.0, 1.0, df).ok().map(|t| -t.inverse_cdf(p));
    }
    let tail = |x: f64| {
        checked_beta_reg(df / 2.0, 0.5, df / (df + x * x))
            .ok()
            .map(|v| v / 2.0)
    };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while tail(hi)? > p {
        lo = hi;
        hi *= 2.0;
        if !hi.is_finite() {
            return None;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if tail(mid)? > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(0.5 * (lo + hi))
}

/// Sort (x, y) pairs by x, keeping the input order of equal x, and average the y of ties (R's
/// `regularize.values(…, ties = mean)`).
fn regularize(mut v: Vec<(f64, f64)>) -> (Vec<f64>, Vec<f64>) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < v.len() {
        let j = i + v[i..].iter().take_while(|e| e.0 == v[i].0).count();
        xs.push(v[i].0);
        ys.push(v[i..j].iter().map(|e| e.1).sum::<f64>() / (j - i) as f64);
        i = j;
    }
    (xs, ys)
}

/// Linear interpolation at `v` of the points (xs sorted, distinct); `None` outside them.
fn approx(xs: &[f64], ys: &[f64], v: f64) -> Option<f64> {
    let (first, last) = (*xs.first()?, *xs.last()?);
    if !(v >= first && v <= last) {
        return None;
    }
    let j = xs.partition_point(|x| *x <= v);
    if j == 0 {
        return Some(ys[0]);
    }
    let i = j - 1;
    if xs[i] == v || i + 1 == xs.len() {
        return Some(ys[i]);
    }
    let (x0, x1, y0, y1) = (xs[i], xs[i + 1], ys[i], ys[i + 1]);
    Some(y0 + (y1 - y0) * ((v - x0) / (x1 - x0)))
}

/// A cubic spline through (xs, ys) with Forsythe, Malcolm and Moler's end conditions (the
/// third derivative at each end that of the cubic through the four end points), R's
/// `spline(method = "fmm")`.
struct Spline {
    x: Vec<f64>,
    y: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
    d: Vec<f64>,
}

impl Spline {
    fn eval(&self, u: f64) -> f64 {
        let i = self.x.partition_point(|x| *x <= u).saturating_sub(1);
        let dx = u - self.x[i];
        self.y[i] + dx * (self.b[i] + dx * (self.c[i] + dx * self.d[i]))
    }
}

fn fmm(x: &[f64], y: &[f64]) -> Option<Spline> {
    let n = x.len();
    if n < 2 || y.len() != n {
        return None;
    }
    let (mut b, mut c, mut d) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    if n == 2 {
        let s = (y[1] - y[0]) / (x[1] - x[0]);
        b = vec![s, s];
    } else {
        // Tridiagonal system for the second derivatives: b the diagonal, d the off-diagonal,
        // c the right-hand side (divided differences).
        d[0] = x[1] - x[0];
        c[1] = (y[1] - y[0]) / d[0];
        for i in 1..n - 1 {
            d[i] = x[i + 1] - x[i];
            b[i] = 2.0 * (d[i - 1] + d[i]);
            c[i + 1] = (y[i + 1] - y[i]) / d[i];
            c[i] = c[i + 1] - c[i];
        }
        b[0] = -d[0];
        b[n - 1] = -d[n - 2];
        c[0] = 0.0;
        c[n - 1] = 0.0;
        if n > 3 {
            c[0] = c[2] / (x[3] - x[1]) - c[1] / (x[2] - x[0]);
            c[n - 1] = c[n - 2] / (x[n - 1] - x[n - 3]) - c[n - 3] / (x[n - 2] - x[n - 4]);
            c[0] = c[0] * d[0] * d[0] / (x[3] - x[0]);
            c[n - 1] = -c[n - 1] * d[n - 2] * d[n - 2] / (x[n - 1] - x[n - 4]);
        }
        for i in 1..n {
            let t = d[i - 1] / b[i - 1];
            b[i] -= t * d[i - 1];
            c[i] -= t * c[i - 1];
        }
        c[n - 1] /= b[n - 1];
        for i in (0..n - 1).rev() {
            c[i] = (c[i] - d[i] * c[i + 1]) / b[i];
        }
        b[n - 1] = (y[n - 1] - y[n - 2]) / d[n - 2] + d[n - 2] * (c[n - 2] + 2.0 * c[n - 1]);
        for i in 0..n - 1 {
            b[i] = (y[i + 1] - y[i]) / d[i] - d[i] * (c[i + 1] + 2.0 * c[i]);
            d[i] = (c[i + 1] - c[i]) / d[i];
            c[i] *= 3.0;
        }
        c[n - 1] *= 3.0;
        d[n - 1] = d[n - 2];
    }
    Some(Spline {
        x: x.to_vec(),
        y: y.to_vec(),
        b,
        c,
        d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spline_reproduces_a_cubic() {
        // FMM end conditions are exact for a cubic: the spline through its points is the cubic.
        let f = |x: f64| 2.0 - x + 0.5 * x * x - 0.25 * x * x * x;
        let xs = [-2.0, -1.0, 0.5, 1.0, 2.5, 3.0];
        let ys: Vec<f64> = xs.iter().map(|x| f(*x)).collect();
        let sp = fmm(&xs, &ys).unwrap();
        for u in [-1.7, -0.3, 0.75, 2.0, 2.9] {
            assert!((sp.eval(u) - f(u)).abs() < 1e-12, "{u}");
        }
    }

    #[test]
    fn equal_weights_fit_the_share_and_the_binomial_variance() {
        // 3 of 10 records, weight 1 each: logit 0.3, naive variance 1/(n·p·(1 − p)) once the
        // iterations have settled (to within the last iteration's step).
        let f = fit([(1.0, true, 3), (1.0, false, 7)], 10).unwrap();
        assert!((f.beta - (0.3f64 / 0.7).ln()).abs() < 1e-9);
        assert!((f.naive - 1.0 / (10.0 * 0.21)).abs() < 1e-6);
        assert_eq!((f.s1, f.s0, f.nz), (3.0, 7.0, 10));
        assert_eq!(fit([(1.0, true, 3)], 3), None, "a share of 1 has no logit");
    }

    #[test]
    fn the_interval_brackets_the_share_and_widens_with_the_design_effect() {
        let f = fit([(1.0, true, 30), (1.0, false, 70)], 100).unwrap();
        let se = (1.0f64 / (100.0 * 0.21)).sqrt();
        let (lo, hi) = interval(&f, se, 1.96);
        let (lo, hi) = (lo.unwrap(), hi.unwrap());
        assert!(lo < 0.3 && hi > 0.3 && lo > 0.2 && hi < 0.4, "{lo} {hi}");
        // The likelihood interval of a binomial share is asymmetric towards 0.5.
        assert!(hi - 0.3 > 0.3 - lo);
        let (lo2, hi2) = interval(&f, se * 2.0, 1.96);
        assert!(lo2.unwrap() < lo && hi2.unwrap() > hi);
        assert_eq!(interval(&f, f64::NAN, 1.96), (None, None));
    }

    #[test]
    fn far_tail_t_quantiles_come_from_the_tail_probability() {
        // R: qt(1e-3, 5, lower.tail = FALSE) = 5.893429531356; qt(1e-20, 1, lower.tail = FALSE)
        // = 3.1830988618379071e19 (Cauchy: 1/tan(π·1e-20)); qt(1e-200, 214, lower.tail = FALSE)
        // = 122.8659846432689.
        assert!((t_upper(5.0, 1e-3).unwrap() - 5.893429531356).abs() < 1e-9);
        let c = t_upper(1.0, 1e-20).unwrap();
        assert!((c / 3.183098861837907e19 - 1.0).abs() < 1e-9, "{c}");
        let x = t_upper(214.0, 1e-200).unwrap();
        assert!((x / 122.8659846432689 - 1.0).abs() < 1e-9, "{x}");
        assert_eq!(t_upper(5.0, 0.0), None);
    }
}
