//! Tuning knobs read from the environment (`MIGSTAT_KEY_WINDOW`, `MIGSTAT_PERSON_BUCKET_ROWS`):
//! how much one stage holds in memory at once. Input: the variable's name and its default.
//! Output: a positive count. None of them changes what a run publishes, only its memory and
//! speed, so a value that is not a positive whole number is reported once (a warning naming
//! the variable and the default used) and the run goes on with the default.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Variables already warned about, so a knob read once per table warns once per process.
static WARNED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// The positive count in the environment variable `name`, or `default` when it is unset; when
/// it is set to anything else (empty, `0`, negative, not a number) `default`, with a warning.
pub fn count(name: &'static str, default: usize) -> usize {
    count_from(name, std::env::var(name), default)
}

fn count_from(
    name: &'static str,
    value: Result<String, std::env::VarError>,
    default: usize,
) -> usize {
    match value {
        Err(std::env::VarError::NotPresent) => default,
        Ok(v) => match parse_count(&v) {
            Some(n) => n,
            None => {
                warn_once(name, &v, default);
                default
            }
        },
        Err(std::env::VarError::NotUnicode(_)) => {
            warn_once(name, "(not UTF-8)", default);
            default
        }
    }
}

/// A positive whole number, surrounding spaces and `_` digit separators allowed.
fn parse_count(v: &str) -> Option<usize> {
    let digits: String = v.trim().chars().filter(|c| *c != '_').collect();
    digits.parse::<usize>().ok().filter(|n| *n > 0)
}

fn warn_once(name: &'static str, value: &str, default: usize) {
    let first = WARNED.lock().map(|mut w| w.insert(name)).unwrap_or(true);
    if first {
        let mut shown: String = value.chars().take(40).collect();
        if shown.len() < value.len() {
            shown.push('…');
        }
        tracing::warn!(
            variable = name,
            value = %shown,
            default,
            "not a positive whole number: using the default"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_positive_whole_numbers() {
        assert_eq!(parse_count("3600000"), Some(3_600_000));
        assert_eq!(parse_count(" 2_000_000 "), Some(2_000_000));
        assert_eq!(parse_count("1"), Some(1));
        for bad in ["", "0", "-5", "1e6", "2.5", "abc", "_"] {
            assert_eq!(parse_count(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unset_or_invalid_gives_the_default() {
        use std::env::VarError;
        const N: &str = "MIGSTAT_TUNING_TEST";
        assert_eq!(count("MIGSTAT_TUNING_TEST_UNSET", 7), 7);
        assert_eq!(count_from(N, Err(VarError::NotPresent), 7), 7);
        assert_eq!(count_from(N, Ok("zero".into()), 9), 9);
        assert_eq!(count_from(N, Ok("0".into()), 9), 9);
        assert_eq!(count_from(N, Ok("12".into()), 9), 12);
        assert_eq!(count_from(N, Err(VarError::NotUnicode("x".into())), 5), 5);
    }
}
