//! Fault injection: the crash points the durability tests stop a run at.
//!
//! Input: the environment variable `MIGSTAT_FAULT`. Output: an immediate exit at the named
//! point. A leaf module, so every stage that writes (export, release) can name its points
//! without depending on the others.

/// Stop the process at once, as a SIGKILL would (no destructors, no cleanup; exit status 137),
/// when the environment variable `MIGSTAT_FAULT` names this point: the hook the
/// fault-injection tests use to stop a run at exact places.
pub fn fault(point: &str) {
    if std::env::var("MIGSTAT_FAULT").is_ok_and(|f| f == point) {
        std::process::exit(137);
    }
}
