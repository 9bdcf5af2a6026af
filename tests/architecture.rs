//! Structure guards (issue 15): the shape of the code is checked, not just described in
//! `docs/architecture.md`.
//!
//! - no import cycle between the top-level modules of any crate (`crate::a` used in `b` and
//!   `crate::b` used in `a`, directly or through others);
//! - no source file over 800 lines outside tests (unit tests live in their own files or in a
//!   trailing `#[cfg(test)] mod tests` block, which does not count);
//! - no test file over 800 lines either, comments included (a long suite is a directory:
//!   `tests/<suite>/main.rs` with one module per theme);
//! - the shipped operator crate does not depend on the emulator, the test kit or the demo; nor
//!   does the shipped kubectl plugin (`plugin/`, `kubectl-tenantdb`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The text of a file without its trailing `#[cfg(test)] mod tests { … }` block and without
/// `//` comments (doc links like [`crate::x`] are not imports).
fn code_of(text: &str) -> String {
    let cut = text
        .find("#[cfg(test)]\nmod tests {")
        .or_else(|| text.find("#[cfg(test)]\nmod tests;"))
        .unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_test_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || p.components().any(|c| c.as_os_str() == "tests")
}

/// Top-level module a file belongs to (`src/pg/shared/apply.rs` → `pg`), `None` for the crate root.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let first = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(first.as_str(), "lib" | "main")).then_some(first)
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Every top-level module named after `crate::` (including `crate::{a, b::c}` groups).
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // Names at depth 1 of the group.
            let mut depth = 1;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 1 => {
                        let id = ident_at(&group[j..]);
                        if !id.is_empty() {
                            out.insert(id);
                        }
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let id = ident_at(after);
            if !id.is_empty() {
                out.insert(id);
            }
        }
        rest = after;
    }
    out
}

fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        if is_test_file(&f) {
            continue;
        }
        let Some(m) = top_module(src, &f) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = crate_refs(&code_of(&text));
        g.entry(m.clone())
            .or_default()
            .extend(deps.into_iter().filter(|d| d != &m));
    }
    let names: BTreeSet<String> = g.keys().cloned().collect();
    for deps in g.values_mut() {
        deps.retain(|d| names.contains(d));
    }
    g
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

const CRATE_SOURCES: [&str; 6] = [
    "src",
    "apiserver/src",
    "testkit/src",
    "demo/src",
    "plugin/src",
    "bench/driver/src",
];

#[test]
fn no_import_cycles_between_top_level_modules() {
    let mut found = Vec::new();
    for dir in CRATE_SOURCES {
        for c in cycles(&module_graph(&root().join(dir))) {
            found.push(format!("{dir}: {}", c.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "import cycles: {found:#?}");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    // The guard above must be able to fail.
    let code_a = "use crate::{b::{X, Y}, c};\nfn f() { crate::d::g(); } // crate::e";
    assert_eq!(
        crate_refs(&code_of(code_a)),
        ["b", "c", "d"].iter().map(|s| s.to_string()).collect()
    );
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    g.insert("d".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycles(&g), vec![vec!["a", "b", "c"]]);
}

#[test]
fn no_source_file_over_800_lines_outside_tests() {
    let mut long = Vec::new();
    for dir in CRATE_SOURCES {
        let mut files = Vec::new();
        rust_files(&root().join(dir), &mut files);
        for f in files {
            if is_test_file(&f) {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            let n = code_of(&text).lines().count();
            if n > MAX_LINES {
                long.push(format!(
                    "{} ({n} lines)",
                    f.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines outside tests: {long:#?}"
    );
}

/// Directories of integration tests (every file in them is a test file).
const TEST_DIRS: [&str; 3] = ["tests", "apiserver/tests", "plugin/tests"];

#[test]
fn no_test_file_over_800_lines() {
    let mut files = Vec::new();
    for dir in TEST_DIRS {
        rust_files(&root().join(dir), &mut files);
    }
    for dir in CRATE_SOURCES {
        let mut all = Vec::new();
        rust_files(&root().join(dir), &mut all);
        files.extend(all.into_iter().filter(|f| is_test_file(f)));
    }
    assert!(files.len() > 50, "test files not found: {}", files.len());
    let mut long = Vec::new();
    for f in files {
        let n = std::fs::read_to_string(&f).unwrap().lines().count();
        if n > MAX_LINES {
            long.push(format!(
                "{} ({n} lines)",
                f.strip_prefix(root()).unwrap().display()
            ));
        }
    }
    assert!(
        long.is_empty(),
        "test files over {MAX_LINES} lines: {long:#?}"
    );
}

/// The normal (and build) dependencies of a manifest that are test/demo crates.
fn test_crates_in_normal_dependencies(manifest: &str) -> Vec<String> {
    let mut section = String::new();
    let mut offending = Vec::new();
    for line in manifest.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            section = l.to_string();
            continue;
        }
        let normal = section == "[dependencies]" || section == "[build-dependencies]";
        if normal
            && [
                "tenantdb-apiserver",
                "tenantdb-testkit",
                "tenantdb-demo",
                "kube-cel",
            ]
            .iter()
            .any(|d| l.starts_with(d))
        {
            offending.push(l.to_string());
        }
    }
    offending
}

#[test]
fn the_operator_crate_does_not_depend_on_the_emulator_the_test_kit_or_the_demo() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let offending = test_crates_in_normal_dependencies(&manifest);
    assert!(
        offending.is_empty(),
        "the shipped operator depends on test/demo crates: {offending:?}"
    );
    // scripts/image-check.sh checks the resolved graph (`cargo tree -e normal,build`) as well.
}

#[test]
fn the_kubectl_plugin_does_not_depend_on_the_emulator_the_test_kit_or_the_demo() {
    let manifest = std::fs::read_to_string(root().join("plugin/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("[dependencies]\n"),
        "plugin/Cargo.toml has no [dependencies]"
    );
    let offending = test_crates_in_normal_dependencies(&manifest);
    assert!(
        offending.is_empty(),
        "the kubectl plugin depends on test/demo crates (dev-dependencies only): {offending:?}"
    );
    // And the check sees a dependency when there is one.
    assert_eq!(
        test_crates_in_normal_dependencies(
            "[dependencies]\ntenantdb-testkit = { path = \"../testkit\" }\n"
        ),
        ["tenantdb-testkit = { path = \"../testkit\" }"]
    );
}
