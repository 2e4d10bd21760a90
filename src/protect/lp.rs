//! The linear programs of the disclosure audit: the least and the greatest value a suppressed
//! cell can take given what is published.
//!
//! Input: an [`Lp`] — variables with lower bounds (non-negativity, or 1 where a cell is known to
//! be non-empty), equalities (published cells) and `≥` rows (sums known to be at least some
//! number). Output: the optimum of a linear objective, or why there is none ([`LpError`]).
//!
//! The solver is Clarabel (an interior-point method, pure Rust), run with a bound on its
//! iterations and no time limit, so that the same problem gives the same answer on an idle or a
//! loaded machine; hitting the bound is an outcome the caller reports ([`LpError::Iterations`]),
//! never a crash. An interior-point optimum is accurate to about 1e-8 relative; callers round
//! bounds inward to integers with a tolerance (see `audit`).

use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettingsBuilder, DefaultSolver, IPSolver, NonnegativeConeT, SolverStatus, ZeroConeT,
};

/// Iterations of the interior-point method one solve may take (a documented bound: a cell
/// whose bound needs more fails the audit).
pub const MAX_ITERATIONS: u32 = 400;

/// A linear program over `vars` variables.
#[derive(Debug, Clone, Default)]
pub struct Lp {
    pub vars: usize,
    /// Lower bound of each variable (`f64::NEG_INFINITY`: free).
    pub lower: Vec<f64>,
    /// `Σ coef · x = rhs`.
    pub eq: Vec<(Vec<(u32, f64)>, f64)>,
    /// `Σ coef · x ≥ rhs`.
    pub ge: Vec<(Vec<(u32, f64)>, f64)>,
}

/// Why a linear program gave no optimum.
#[derive(Debug, Clone, PartialEq)]
pub enum LpError {
    /// The iteration bound was reached.
    Iterations(u32),
    /// The solver found the system infeasible, or failed numerically: with the true table as a
    /// solution this is a numerical failure, reported with the solver's status.
    Failed(String),
}

/// The optimum of an LP.
#[derive(Debug, Clone)]
pub struct Optimum {
    /// `None` when unbounded.
    pub value: Option<f64>,
    /// The solution (one value per variable) when there is an optimum.
    pub point: Vec<f64>,
}

impl Lp {
    /// Minimise (or maximise) `Σ objective · x`.
    pub fn optimise(&self, objective: &[(u32, f64)], maximise: bool) -> Result<Optimum, LpError> {
        let mut solver = self.solver(&self.cost(objective, maximise))?;
        solver.solve();
        outcome(&solver, objective)
    }

    /// The greatest and the least value of `Σ objective · x`, in that order. One solver serves
    /// both: the second solve only changes the cost vector, so the setup (equilibration, the
    /// KKT system's ordering and symbolic factorisation) is done once. The scaling does not
    /// depend on the costs of an LP (Clarabel scales costs only with a quadratic term), so
    /// each answer is the one a solver set up for it alone gives.
    pub fn range(&self, objective: &[(u32, f64)]) -> Result<(Optimum, Optimum), LpError> {
        let mut solver = self.solver(&self.cost(objective, true))?;
        solver.solve();
        let max = outcome(&solver, objective)?;
        let min_cost = self.cost(objective, false);
        if solver.update_q(&min_cost).is_err() {
            // Not expected (presolve and zero dropping are off): a solver of its own.
            return Ok((max, self.optimise(objective, false)?));
        }
        solver.solve();
        Ok((max, outcome(&solver, objective)?))
    }

    fn cost(&self, objective: &[(u32, f64)], maximise: bool) -> Vec<f64> {
        let mut q = vec![0.0; self.vars];
        for &(v, c) in objective {
            q[v as usize] += if maximise { -c } else { c };
        }
        q
    }

    /// The solver of this LP with costs `q`.
    fn solver(&self, q: &[f64]) -> Result<DefaultSolver<f64>, LpError> {
        let n = self.vars;
        // Rows: equalities (zero cone), then −(Σ a x) + s = −rhs for ≥ rows and −x + s = −lb
        // for bounds (non-negative cone).
        let bounded = self.lower.iter().filter(|l| l.is_finite()).count();
        let m = self.eq.len() + self.ge.len() + bounded;
        let mut cols: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        let mut b = Vec::with_capacity(m);
        let mut row = 0;
        for (terms, rhs) in &self.eq {
            for &(v, c) in terms {
                cols[v as usize].push((row, c));
            }
            b.push(*rhs);
            row += 1;
        }
        for (terms, rhs) in &self.ge {
            for &(v, c) in terms {
                cols[v as usize].push((row, -c));
            }
            b.push(-*rhs);
            row += 1;
        }
        for (v, col) in cols.iter_mut().enumerate() {
            // A variable without a finite lower bound is free.
            if self.lower[v].is_finite() {
                col.push((row, -1.0));
                b.push(-self.lower[v]);
                row += 1;
            }
        }
        let mut colptr = Vec::with_capacity(n + 1);
        let mut rowval = Vec::new();
        let mut nzval = Vec::new();
        colptr.push(0);
        for col in &mut cols {
            col.sort_by_key(|x| x.0);
            // Merge repeated rows (a variable listed twice in one constraint).
            let mut last: Option<usize> = None;
            for &(r, c) in col.iter() {
                if last == Some(r) {
                    if let Some(x) = nzval.last_mut() {
                        *x += c;
                    }
                } else {
                    rowval.push(r);
                    nzval.push(c);
                    last = Some(r);
                }
            }
            colptr.push(rowval.len());
        }
        let a = CscMatrix::new(m, n, colptr, rowval, nzval);
        let p = CscMatrix::<f64>::zeros((n, n));
        let cones = [
            ZeroConeT(self.eq.len()),
            NonnegativeConeT(self.ge.len() + bounded),
        ];
        let settings = DefaultSettingsBuilder::default()
            .verbose(false)
            .max_iter(MAX_ITERATIONS)
            .time_limit(f64::INFINITY)
            // The second solve of `range` updates the costs, which Clarabel allows only on
            // the problem as given (presolve would only drop infinite bounds: there are none).
            .presolve_enable(false)
            .input_sparse_dropzeros(false)
            .build()
            .map_err(|e| LpError::Failed(format!("solver settings: {e:?}")))?;
        DefaultSolver::new(&p, q, &a, &b, &cones, settings)
            .map_err(|e| LpError::Failed(format!("solver setup: {e:?}")))
    }
}

/// The answer of a solved LP.
fn outcome(solver: &DefaultSolver<f64>, objective: &[(u32, f64)]) -> Result<Optimum, LpError> {
    let sol = &solver.solution;
    match sol.status {
        SolverStatus::Solved | SolverStatus::AlmostSolved => {
            let obj: f64 = objective.iter().map(|(v, c)| c * sol.x[*v as usize]).sum();
            Ok(Optimum {
                value: Some(obj),
                point: sol.x.clone(),
            })
        }
        SolverStatus::DualInfeasible | SolverStatus::AlmostDualInfeasible => Ok(Optimum {
            value: None,
            point: Vec::new(),
        }),
        SolverStatus::MaxIterations => Err(LpError::Iterations(MAX_ITERATIONS)),
        other => Err(LpError::Failed(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_by_two_table_with_its_margins() {
        // a + b = 5, c + d = 7, a + c = 4, b + d = 8 (b + d is redundant), x >= 0.
        let lp = Lp {
            vars: 4,
            lower: vec![0.0; 4],
            eq: vec![
                (vec![(0, 1.0), (1, 1.0)], 5.0),
                (vec![(2, 1.0), (3, 1.0)], 7.0),
                (vec![(0, 1.0), (2, 1.0)], 4.0),
                (vec![(1, 1.0), (3, 1.0)], 8.0),
            ],
            ge: vec![],
        };
        let lo = lp.optimise(&[(0, 1.0)], false).unwrap().value.unwrap();
        let hi = lp.optimise(&[(0, 1.0)], true).unwrap().value.unwrap();
        // a in [0, 4]: b = 5 − a, c = 4 − a, d = 3 + a.
        assert!(
            (lo - 0.0).abs() < 1e-6 && (hi - 4.0).abs() < 1e-6,
            "[{lo}, {hi}]"
        );
        // With a >= 1 known (a non-empty cell) and a ≥ row c + d ≥ 7 (always true).
        let mut lp2 = lp.clone();
        lp2.lower[0] = 1.0;
        lp2.ge.push((vec![(2, 1.0), (3, 1.0)], 7.0));
        let lo = lp2.optimise(&[(0, 1.0)], false).unwrap().value.unwrap();
        assert!((lo - 1.0).abs() < 1e-6, "{lo}");
        // Without the row equations a is unbounded above.
        let free = Lp {
            vars: 2,
            lower: vec![0.0; 2],
            eq: vec![(vec![(0, 1.0), (1, -1.0)], 0.0)],
            ge: vec![],
        };
        assert_eq!(free.optimise(&[(0, 1.0)], true).unwrap().value, None);
    }

    #[test]
    fn one_solver_for_both_bounds_answers_as_two() {
        // A 3 × 3 table with its margins published and its inner cells unknown:
        // rows 4, 6, 5; columns 3, 7, 5. Cell (0, 0) lies in [0, 3].
        let (rows, cols) = ([4.0, 6.0, 5.0], [3.0, 7.0, 5.0]);
        let mut lp = Lp {
            vars: 9,
            lower: vec![0.0; 9],
            ..Default::default()
        };
        for (i, r) in rows.iter().enumerate() {
            lp.eq
                .push(((0..3).map(|j| ((3 * i + j) as u32, 1.0)).collect(), *r));
        }
        for (j, c) in cols.iter().enumerate() {
            lp.eq
                .push(((0..3).map(|i| ((3 * i + j) as u32, 1.0)).collect(), *c));
        }
        for (cell, lo, hi) in [(0u32, 0.0, 3.0), (4, 0.0, 6.0), (8, 0.0, 5.0)] {
            let objective = [(cell, 1.0)];
            let (max, min) = lp.range(&objective).unwrap();
            let (hi_alone, lo_alone) = (
                lp.optimise(&objective, true).unwrap(),
                lp.optimise(&objective, false).unwrap(),
            );
            let (got_hi, got_lo) = (max.value.unwrap(), min.value.unwrap());
            assert!((got_hi - hi).abs() < 1e-6 && (got_lo - lo).abs() < 1e-6);
            // The same answers, to the bit, as a solver of their own.
            assert_eq!(got_hi.to_bits(), hi_alone.value.unwrap().to_bits());
            assert_eq!(got_lo.to_bits(), lo_alone.value.unwrap().to_bits());
            assert_eq!(min.point, lo_alone.point);
            assert_eq!(max.point, hi_alone.point);
        }
        // Unbounded above, bounded below: both answered.
        let free = Lp {
            vars: 2,
            lower: vec![0.0; 2],
            eq: vec![(vec![(0, 1.0), (1, -1.0)], 0.0)],
            ge: vec![],
        };
        let (max, min) = free.range(&[(0, 1.0)]).unwrap();
        assert_eq!(max.value, None);
        assert!(min.value.unwrap().abs() < 1e-6);
    }
}
