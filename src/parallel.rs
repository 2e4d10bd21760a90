//! Parallel: side-by-side work that calls polars or waits on other threads.
//!
//! Input: a list of independent items (tables, periods, files, columns) and what to do with
//! each. Output: the results in the items' order, computed on a few threads of migstat's own
//! (named `migstat-N`, with an explicit stack), so the outcome is the same whatever the thread
//! count. Pure computations (the suppression's and audit's loops, sorts) use rayon directly.
//!
//! Why not rayon here: polars runs its work in its own rayon pool. A worker of rayon's global
//! pool that calls polars blocks until polars is done and, while it waits, takes other jobs of
//! its own pool — the next table, the next period — each of which calls polars and waits in
//! turn, one stack frame on top of the other: the depth grew with the number of tables until a
//! 2 MiB worker stack overflowed and aborted the process (seen in CI; with
//! `RUST_MIN_STACK=262144`, in the codebook step every time). Running the same loops inside
//! polars' pool instead deadlocks: a table's Parquet writer thread needs that pool while the
//! pool's workers wait for the writer. Plain threads that only block do neither.

use std::sync::Mutex;

/// Each helper thread's stack: as large as a main thread's, whatever `RUST_MIN_STACK` says.
pub const STACK_BYTES: usize = 8 << 20;

/// How many items run side by side: rayon's thread count (`RAYON_NUM_THREADS`, else one per
/// core).
pub fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// `f` over every item, up to [`threads`] at a time, the results in the items' order. A panic
/// in `f` is passed on to the caller, as a loop's would be. The caller only waits (unless no
/// thread can be started: then it does the work itself).
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    let workers = threads().min(n);
    if workers <= 1 {
        return items.into_iter().map(f).collect();
    }
    let queue = Mutex::new(items.into_iter().enumerate());
    let next = || {
        queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .next()
    };
    let work = || {
        let mut done = Vec::new();
        while let Some((i, item)) = next() {
            done.push((i, f(item)));
        }
        done
    };
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .filter_map(|w| {
                std::thread::Builder::new()
                    .name(format!("migstat-{w}"))
                    .stack_size(STACK_BYTES)
                    .spawn_scoped(scope, work)
                    .ok()
            })
            .collect();
        // No thread could start: the caller does the work.
        let mut all = if handles.is_empty() {
            work()
        } else {
            Vec::new()
        };
        for h in handles {
            match h.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        for (i, r) in all {
            out[i] = Some(r);
        }
    });
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_the_items_order() {
        let items: Vec<u64> = (0..1000).collect();
        let out = map(items, |i| {
            // Uneven work, so that the threads finish out of order.
            (0..(i % 7) * 1000).fold(i, |a, b| a.wrapping_add(b % 3))
        });
        let expected: Vec<u64> = (0..1000)
            .map(|i: u64| (0..(i % 7) * 1000).fold(i, |a, b| a.wrapping_add(b % 3)))
            .collect();
        assert_eq!(out, expected);
        assert!(map(Vec::<u8>::new(), |x| x).is_empty());
    }

    #[test]
    fn the_work_runs_on_named_threads_with_their_own_stack() {
        if threads() < 2 {
            return; // one thread: the caller's
        }
        /// 48 frames of 64 KiB: 3 MiB, deeper than a default 2 MiB thread stack allows.
        #[inline(never)]
        fn deep(n: usize) -> usize {
            let frame = std::hint::black_box([n as u8; 64 << 10]);
            match n {
                0 => frame.len(),
                _ => deep(n - 1) + usize::from(frame[n % 1024] == n as u8),
            }
        }
        let names = map(vec![47; 8], |n| {
            (std::thread::current().name().map(String::from), deep(n))
        });
        assert!(names.iter().all(|(_, d)| *d == (64 << 10) + 47));
        assert!(
            names
                .iter()
                .any(|(n, _)| n.as_deref().is_some_and(|n| n.starts_with("migstat-")))
        );
    }

    #[test]
    fn a_panic_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| {
            map((0..8).collect::<Vec<u32>>(), |i| {
                if i == 5 {
                    panic!("item five");
                }
                i
            })
        });
        assert!(r.is_err());
    }
}
