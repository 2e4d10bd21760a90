//! The crate's shape: the module graph read from the `use` paths of `src/`, checked for cycles
//! and against the data-flow order `lib.rs` declares (issue 15). A module may use only modules
//! declared before it in `lib.rs`, which rules out every cycle; the few layering rules the
//! architecture promises are checked by name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::repo;

/// Source text without comments, string and char literals (so a path in a doc comment or a
/// message is no dependency).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && (b[i + 1..].starts_with(b"\"") || b[i + 1..].starts_with(b"#")) {
            // A raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                j += 1;
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x', '\n', '\''); lifetimes ('a) are left alone.
            let mut j = i + 1;
            if b[j] == b'\\' {
                j += 2;
            }
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            i = j + 1;
            out.push_str("' '");
        } else {
            let c = src[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The identifiers a path starting at `rest` names first: `x` in `x::...`, and each `x` of
/// `{x::a, y}`.
fn first_segments(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut out = Vec::new();
        let mut depth = 0;
        let mut start = true;
        for (k, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => start = true,
                c if start && !c.is_whitespace() => {
                    start = false;
                    out.push(ident(&group[k..]));
                }
                _ => {}
            }
        }
        out
    } else {
        vec![ident(rest)]
    }
}

/// Top-level module → the top-level modules its files use.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = repo().join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    // The binary's own modules (the CLI's presentation) are not part of the library's graph.
    let main = std::fs::read_to_string(src.join("main.rs")).expect("read main.rs");
    let binary: BTreeSet<String> = main
        .lines()
        .filter_map(|l| l.trim().strip_prefix("mod "))
        .map(|m| m.trim_end_matches(';').trim().to_string())
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let module = parts[0].trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" || binary.contains(&module) {
            continue;
        }
        // How many `super::` reach the crate root from this file.
        let depth = if parts.len() == 1 || parts.last().is_some_and(|p| p == "mod.rs") {
            parts.len()
        } else {
            parts.len() + 1
        } - 1;
        let text = code_only(&std::fs::read_to_string(&f).expect("read source"));
        // Unit tests are not part of the library's graph (and their `super::` counts from the
        // inline test module).
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let deps = graph.entry(module.clone()).or_default();
        let root_super = "super::".repeat(depth);
        for (pos, _) in text.match_indices("crate::") {
            deps.extend(first_segments(&text[pos + 7..]));
        }
        if depth > 0 {
            for (pos, _) in text.match_indices(&root_super) {
                let before = &text[..pos];
                if before.ends_with("super::") {
                    continue;
                }
                deps.extend(first_segments(&text[pos + root_super.len()..]));
            }
        }
        deps.remove(&module);
        deps.retain(|d| !d.is_empty() && d != "VERSION" && d != "Error" && d != "Result");
    }
    graph
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The modules `lib.rs` declares, in its order.
fn declared_order() -> Vec<String> {
    let lib = std::fs::read_to_string(repo().join("src/lib.rs")).expect("read lib.rs");
    lib.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or_else(|| l.trim().strip_prefix("mod "))
        })
        .map(|m| m.trim_end_matches(';').trim().to_string())
        .collect()
}

#[test]
fn the_parser_finds_paths_and_ignores_comments_and_strings() {
    // Expectations by hand on a snippet with every form the graph depends on.
    let text = code_only(
        "use crate::{a::X, b};\n// crate::c in a comment\nlet s = \"crate::d\"; let r = r#\"crate::e\"#;\nlet c = '\"'; crate::f::g(); /* crate::h */ super::i::J;",
    );
    let mut found: Vec<String> = text
        .match_indices("crate::")
        .flat_map(|(p, _)| first_segments(&text[p + 7..]))
        .collect();
    found.sort();
    assert_eq!(found, ["a", "b", "f"]);
    assert!(text.contains("super::i"));
}

#[test]
fn modules_form_no_cycle_and_follow_the_order_of_lib_rs() {
    let graph = module_graph();
    let order = declared_order();
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut problems = Vec::new();
    for (m, deps) in &graph {
        let Some(&r) = rank.get(m.as_str()) else {
            problems.push(format!("{m} is not declared in lib.rs"));
            continue;
        };
        for d in deps {
            match rank.get(d.as_str()) {
                None => problems.push(format!("{m} uses crate::{d}, which lib.rs does not declare")),
                Some(&rd) if rd >= r => problems.push(format!(
                    "{m} uses {d}, declared after it in lib.rs (the data-flow order): a module may use only modules above it"
                )),
                Some(_) => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "module graph:\n{}",
        problems.join("\n")
    );
}

#[test]
fn layers_keep_their_promises() {
    let graph = module_graph();
    let uses = |m: &str| graph.get(m).cloned().unwrap_or_default();
    let leaves = ["error", "vocab", "calendar", "fault", "tuning"];
    for leaf in leaves {
        assert!(
            uses(leaf).is_empty(),
            "{leaf} must be a leaf; uses {:?}",
            uses(leaf)
        );
    }
    let allowed_for_spec: BTreeSet<String> =
        ["error", "vocab", "calendar"].map(String::from).into();
    assert!(
        uses("spec").is_subset(&allowed_for_spec),
        "spec may depend on the vocabulary only; uses {:?}",
        uses("spec")
    );
    for m in ["manifest", "layout"] {
        let extra: Vec<_> = uses(m).into_iter().filter(|d| d != "error").collect();
        assert!(
            extra.is_empty(),
            "{m} must depend on error only; uses {extra:?}"
        );
    }
    for m in ["export", "release", "query"] {
        assert!(
            !uses(m).contains("runner"),
            "{m} must not depend on the runner"
        );
    }
}

#[test]
fn the_library_draws_nothing_on_a_terminal() {
    // Progress bars, summaries and `explain` text belong to the binary (src/cli/); the library
    // reports progress through `runner::Progress`.
    let src = repo().join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        if rel.starts_with("cli") || rel == Path::new("main.rs") {
            continue;
        }
        let text = code_only(&std::fs::read_to_string(&f).expect("read source"));
        assert!(
            !text.contains("indicatif"),
            "{} draws progress bars",
            rel.display()
        );
    }
}

/// Within a directory module (`spec/`, `protect/`, `export/`, `runner/`), the files other than
/// `mod.rs` use each other without a cycle either.
#[test]
fn submodules_form_no_cycle() {
    let src = repo().join("src");
    let mut problems = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&src)
        .expect("read src")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let module = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut files = Vec::new();
        collect(&dir, &mut files);
        let names: BTreeSet<String> = files
            .iter()
            .filter_map(|f| f.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .filter(|n| n != "mod")
            .collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in &files {
            let name = f.file_stem().unwrap().to_string_lossy().into_owned();
            if name == "mod" {
                continue;
            }
            let text = code_only(&std::fs::read_to_string(f).expect("read source"));
            let mut deps = BTreeSet::new();
            for prefix in ["super::".to_string(), format!("crate::{module}::")] {
                for (pos, _) in text.match_indices(&prefix) {
                    deps.extend(first_segments(&text[pos + prefix.len()..]));
                }
            }
            deps.retain(|d| names.contains(d) && *d != name);
            graph.insert(name, deps);
        }
        // Depth-first search for a back edge.
        fn visit(
            n: &str,
            g: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == n) {
                let mut cycle = path[i..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            if done.contains(n) {
                return None;
            }
            path.push(n.to_string());
            for d in g.get(n).into_iter().flatten() {
                if let Some(c) = visit(d, g, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(n.to_string());
            None
        }
        let mut done = BTreeSet::new();
        for n in graph.keys() {
            if let Some(c) = visit(n, &graph, &mut Vec::new(), &mut done) {
                problems.push(format!("{module}: {}", c.join(" → ")));
                break;
            }
        }
    }
    assert!(
        problems.is_empty(),
        "cycles between submodules:\n{}",
        problems.join("\n")
    );
}
