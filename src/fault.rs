//! Fault injection: the crash points the durability tests stop a run at.
//!
//! Input: the environment variable `MIGSTAT_FAULT`. Output: an immediate exit at the named
//! point, or (`sigterm@<point>`, `sigint@<point>`) that signal raised there, as a `systemctl
//! stop` or a Ctrl-C arriving at that moment would. A leaf module, so every stage that writes (export, release) can name its points
//! without depending on the others.

/// Stop the process at once, as a SIGKILL would (no destructors, no cleanup; exit status 137),
/// when the environment variable `MIGSTAT_FAULT` names this point: the hook the
/// fault-injection tests use to stop a run at exact places.
pub fn fault(point: &str) {
    let Ok(f) = std::env::var("MIGSTAT_FAULT") else {
        return;
    };
    if f == point {
        std::process::exit(137);
    }
    #[cfg(unix)]
    if let Some((signal, at)) = f.split_once('@')
        && at == point
    {
        let s = match signal {
            "sigterm" => signal_hook::consts::SIGTERM,
            "sigint" => signal_hook::consts::SIGINT,
            _ => return,
        };
        // Once, as a service manager sends it (a second one would end the process at once).
        static RAISED: std::sync::Once = std::sync::Once::new();
        RAISED.call_once(|| {
            let _ = signal_hook::low_level::raise(s);
        });
    }
}
