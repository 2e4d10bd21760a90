//! Deliveries as they really arrive (issue 16): what a header that does not fit is told, that no
//! message grows with the input, and what a path that is not a file is told.

use std::path::Path;

use crate::migstat;

const SCHEMA: &str = r#"{"fields": [{"name": "id"}, {"name": "age", "type": "integer"}]}"#;

/// A one-source pipeline over `data` (bytes) in a fresh directory: (exit code, stderr, dir).
fn run(data: &[u8]) -> (Option<i32>, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("s.json"), SCHEMA).unwrap();
    std::fs::write(d.join("data.csv"), data).unwrap();
    std::fs::write(
        d.join("p.toml"),
        "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[sources.people]\npath = \"data.csv\"\nformat = \"csv\"\nschema = \"s.json\"\n",
    )
    .unwrap();
    let out = migstat(
        &[
            "-q",
            "run",
            d.join("p.toml").to_str().unwrap(),
            "--out",
            d.join("out").to_str().unwrap(),
        ],
        &[],
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        tmp,
    )
}

#[test]
fn a_header_that_does_not_fit_is_told_why() {
    // Each case: the file, and what the message must say (written from the causes, by hand).
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"id,age,age\n1,2,3\n".to_vec(),
            "column `age` appears twice",
        ),
        (
            b"id,age,\n1,2,\n".to_vec(),
            "an empty column name after a trailing delimiter",
        ),
        (vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3], "looks like gzip"),
        (
            [
                &[0xff, 0xfe][..],
                "id,age\n"
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes)
                    .collect::<Vec<_>>()
                    .as_slice(),
            ]
            .concat(),
            "looks like UTF-16",
        ),
        (b"PK\x03\x04rest".to_vec(), "looks like a ZIP archive"),
        (b"id,age\r1,20\r2,30\r".to_vec(), "CR-only line endings?"),
    ];
    for (data, want) in cases {
        let (code, err, _tmp) = run(&data);
        assert_eq!(code, Some(65), "{want}: {err}");
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
    // A trailing delimiter is not also "not in the schema: ``".
    let (_, err, _tmp) = run(b"id,age,\n1,2,\n");
    assert!(!err.contains("not in the schema"), "{err}");
}

#[test]
fn no_message_grows_with_the_input() {
    // A 200 MB header line of personal names, without a line break: stderr, the manifest and the
    // history quote at most a few KB of it, marked as cut.
    let name = "Fatima Zahra El Idrissi,";
    let mut data = Vec::with_capacity(200 << 20);
    while data.len() < 200 << 20 {
        data.extend_from_slice(name.as_bytes());
    }
    let (code, err, tmp) = run(&data);
    drop(data);
    assert_eq!(code, Some(65), "{}", &err[..err.len().min(2000)]);
    assert!(err.len() < 8 << 10, "stderr is {} bytes", err.len());
    assert!(
        err.contains("more"),
        "the list says how many labels it left out: {err}"
    );
    let mut checked = 0;
    for entry in walk(&tmp.path().join("out")) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" || name == "history.jsonl" {
            let len = std::fs::metadata(&entry).unwrap().len();
            assert!(len < 32 << 10, "{} is {len} bytes", entry.display());
            checked += 1;
        }
    }
    assert!(checked >= 2, "a manifest and the history were written");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_path_that_is_not_a_file_is_named_for_what_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("s.json"), SCHEMA).unwrap();
    std::fs::create_dir(d.join("deliveries")).unwrap();
    std::os::unix::fs::symlink(d.join("loop_b"), d.join("loop_a")).unwrap();
    std::os::unix::fs::symlink(d.join("loop_a"), d.join("loop_b")).unwrap();
    let spec = |path: &str| {
        format!(
            "version = 1\nid = \"p\"\nreference_date = 2024-12-31\nreference_period = \"2024\"\n[sources.people]\npath = \"{path}\"\nformat = \"csv\"\nschema = \"s.json\"\n"
        )
    };
    for (path, want) in [
        ("deliveries", "is a directory: name a file, or a glob"),
        (
            "loop_a",
            "is a symbolic link that leads nowhere or in a loop",
        ),
        ("nothing.csv", "file not found"),
        (
            "loop_*",
            "is a symbolic link that leads nowhere or in a loop",
        ),
    ] {
        std::fs::write(d.join("p.toml"), spec(path)).unwrap();
        let out = migstat(&["check", d.join("p.toml").to_str().unwrap()], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{path}: {err}");
        assert!(err.contains(want), "{path}: want {want:?} in {err}");
    }
}
