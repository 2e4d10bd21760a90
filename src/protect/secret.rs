//! The protection key: the secret behind random rounding and the cell key method.
//!
//! Input: where the key lives ([`KeySource`]: an environment variable, else a key file named in
//! the spec). Output: a [`Secret`] from which each use derives its own key (BLAKE3
//! `derive_key`), so no two purposes share bytes and the secret itself is never hashed into an
//! output.
//!
//! The key is never in the spec (a spec is shared, versioned and printed by `migstat explain`),
//! never written to any output, never logged: [`Secret`]'s `Debug` prints nothing of it. A key
//! file that does not exist yet is created with 32 random bytes from the operating system (mode
//! 0600 on Unix) and the run says so: keep it, since the same records get the same noise only
//! under the same key, and keep it secret, since with it the noise can be undone.

use std::path::Path;

use crate::error::{Error, Result};

pub use crate::spec::KeySource;

/// The protection secret (32 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The minimum length of a key given in the environment.
pub const MIN_KEY_CHARS: usize = 16;

impl Secret {
    /// The secret from text (an environment variable or a key file's content, surrounding
    /// whitespace ignored): at least [`MIN_KEY_CHARS`] characters.
    pub fn from_text(text: &str, origin: &str) -> Result<Self> {
        let t = text.trim();
        if t.chars().count() < MIN_KEY_CHARS {
            return Err(Error::Usage(format!(
                "the protection key in {origin} is shorter than {MIN_KEY_CHARS} characters; use `migstat keygen` for a strong one"
            )));
        }
        Ok(Secret(blake3::derive_key(
            "migstat 2026 protection key",
            t.as_bytes(),
        )))
    }

    /// Resolve the key: the environment variable if set and non-empty, else the key file
    /// (created when missing). `None` when neither is configured.
    pub fn resolve(src: &KeySource) -> Result<Option<Self>> {
        if let Ok(v) = std::env::var(&src.env)
            && !v.trim().is_empty()
        {
            return Secret::from_text(&v, &format!("${}", src.env)).map(Some);
        }
        let Some(file) = &src.file else {
            return Ok(None);
        };
        if !file.exists() {
            create_key_file(file)?;
            tracing::warn!(file = %file.display(), "created a new protection key: keep it (the same records get the same noise only under the same key) and keep it secret");
        }
        let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
        Secret::from_text(&text, &file.display().to_string()).map(Some)
    }

    /// The key for one purpose (e.g. "cell key", "random rounding").
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut material = Vec::with_capacity(32 + purpose.len());
        material.extend_from_slice(&self.0);
        material.extend_from_slice(purpose.as_bytes());
        blake3::derive_key("migstat 2026 protection purpose", &material)
    }

    /// A secret for tests and benchmarks.
    pub fn for_tests(text: &str) -> Self {
        Secret(blake3::derive_key(
            "migstat 2026 protection key",
            text.as_bytes(),
        ))
    }
}

/// 64 hexadecimal digits of OS randomness: a new key's text.
pub fn new_key_text() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| Error::Usage(format!("no randomness from the operating system: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Write a new key file, atomically and only if none exists (two runs starting at once end up
/// with the same key).
pub fn create_key_file(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Unique per process and call: two threads of one process may race here too.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}.{call}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let text = new_key_text()? + "\n";
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
    }
    // A hard link fails when the target exists: the first writer wins, the others read it.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_prints_and_purposes_differ() {
        let s = Secret::from_text("correct horse battery staple", "test").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(…)");
        assert_ne!(s.derive("cell key"), s.derive("random rounding"));
        assert_eq!(s.derive("cell key"), s.clone().derive("cell key"));
        assert!(Secret::from_text("short", "test").is_err());
    }

    #[test]
    fn a_missing_key_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("keys").join("protection.key");
        let src = KeySource {
            env: "MIGSTAT_TEST_UNSET_VARIABLE_XYZ".into(),
            file: Some(f.clone()),
        };
        let a = Secret::resolve(&src).unwrap().unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(text.trim().len(), 64);
        let b = Secret::resolve(&src).unwrap().unwrap();
        assert_eq!(a, b, "the second run reads the same key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
