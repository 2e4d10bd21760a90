//! Stopping a run when asked: SIGTERM (a `systemctl stop`, a container shutdown) and SIGINT (a
//! Ctrl-C) set a flag that the runner checks between chunks, tables and groups, and before it
//! publishes. A stopped run removes its staging directory, publishes nothing, writes a history
//! line naming the signal and exits 128 + the signal's number (143, 130), as shells report it.
//! A second signal while the first is being honoured ends the process at once.
//!
//! Input: the signals. Output: [`check`], an error once a signal has arrived.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// The signal that asked the run to stop (0: none yet).
static SIGNAL: AtomicUsize = AtomicUsize::new(0);
/// Set with the first signal: a second one terminates.
static ARMED: AtomicBool = AtomicBool::new(false);

/// Install the handlers (once, at the start of `migstat run`).
pub fn install() -> Result<()> {
    #[cfg(unix)]
    for s in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let failed =
            |e: std::io::Error| Error::Internal(format!("installing a signal handler: {e}"));
        // The shutdown first: on the second signal the flag is already armed.
        signal_hook::flag::register_conditional_shutdown(s, 128 + s, &ARMED).map_err(failed)?;
        signal_hook::flag::register(s, &ARMED).map_err(failed)?;
        signal_hook::flag::register_usize(s, &SIGNAL, s as usize).map_err(failed)?;
    }
    Ok(())
}

/// `Err(Interrupted)` once a signal has asked the run to stop.
pub fn check() -> Result<()> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => Ok(()),
        s => Err(Error::Interrupted(s as i32)),
    }
}
