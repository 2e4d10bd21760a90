//! The command line's presentation: progress bars, run summaries and `explain`, kept out of the
//! library (which reports through `runner::Progress` and returns data).
//!
//! Input: what the library returns. Output: text for a terminal.

pub mod explain;

use migstat::manifest::Manifest;
use migstat::runner::{Progress, SourceProgress};

/// Progress bars on stderr, one per source while it is read.
pub struct Bars;

impl Progress for Bars {
    fn source(&self, label: &str, total: u64) -> Box<dyn SourceProgress> {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix:>14} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        Box::new(Bar(bar))
    }

    fn stage(&self, label: &str, total: u64) -> Box<dyn SourceProgress> {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        // A stage's steps can be long (one group's protection): the bar shows it is alive.
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        Box::new(Bar(bar))
    }
}

struct Bar(indicatif::ProgressBar);

impl SourceProgress for Bar {
    fn set_position(&self, bytes: u64) {
        self.0.set_position(bytes);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A short text summary of a manifest, for people (`--report text`).
pub fn summary(m: &Manifest) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "run {} of pipeline {}: {}",
        m.run_id, m.pipeline_id, m.status
    );
    let _ = writeln!(
        s,
        "{:<22} {:>12} {:>12} {:>12}  top rules",
        "source", "read", "accepted", "quarantined"
    );
    for src in &m.sources {
        let mut top: Vec<_> = src.quarantine_by_rule.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let rules = top
            .iter()
            .take(4)
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "{:<22} {:>12} {:>12} {:>12}  {}",
            src.id, src.rows_read, src.rows_accepted, src.rows_quarantined, rules
        );
    }
    s
}
