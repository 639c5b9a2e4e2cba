//! The crate's modules depend on each other one way: domain (clock, token,
//! session, store, device) below the flow engine, adapters (middleware,
//! extractors, API, pages) above it. This test reads the `crate::…` paths
//! of every non-test source file and fails on an import cycle between
//! top-level modules, naming it (issue 15; a `cargo modules` install is too
//! heavy for CI here).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's source files under `dir`: not the demo binary's
/// (`src/bin/`), a crate of its own.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with("src/bin") {
            continue;
        }
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifiers right after each `crate::` (expanding `crate::{a, b}`).
fn crate_paths(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 1 => {
                        found.push(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(ident(rest));
        }
    }
    found
}

/// `name → module` for the names `lib.rs` re-exports at the crate root.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let code: String = lib
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for stmt in code.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        for item in items.trim_matches(|c| c == '{' || c == '}').split(',') {
            let item = item.trim();
            if !item.is_empty() {
                names.insert(item.to_owned(), module.trim().to_owned());
            }
        }
    }
    names
}

/// Module → the top-level modules its non-test code names. A `crate::`
/// path that names neither a module nor a root re-export fails the test:
/// an edge must never be dropped silently.
fn dependency_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let names = root_reexports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    sources(src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(src).ok()?.components().next())
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .map(|m| if m == "web" { "pages".to_owned() } else { m })
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        // The crate root, and files compiled only for tests.
        if rel == Path::new("lib.rs") || rel.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        let module = if module == "web" {
            "pages".to_owned()
        } else {
            module
        };
        let text = std::fs::read_to_string(&file).unwrap();
        // Test code may reach across; only what ships counts.
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let deps = graph.entry(module.clone()).or_default();
        for name in crate_paths(&code) {
            let target = names.get(&name).cloned().unwrap_or(name);
            assert!(
                modules.contains(&target),
                "{}: `crate::{target}` names no module nor root re-export",
                rel.display()
            );
            if target != module {
                deps.insert(target);
            }
        }
    }
    graph
}

/// A cycle of the graph, if any, as the path that closes it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_modules_of_the_crate_depend_on_each_other_one_way() {
    let graph = dependency_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 10, "the sources were read: {graph:?}");
    assert!(
        graph["middleware"].contains("flow") && graph["flow"].contains("store"),
        "the paths were read: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}\n{graph:#?}", cycle.join(" → "));
    }
}

#[test]
fn the_checker_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    assert_eq!(
        crate_paths("use crate::{flow::Tag, store::{A, B}};\nlet x = crate::token::T;"),
        ["flow", "store", "token"]
    );
}

/// The modules that turn requests into core calls and results into
/// responses.
const ADAPTERS: [&str; 7] = [
    "middleware",
    "layer",
    "extract",
    "api",
    "pages",
    "testing",
    "demo",
];

#[test]
fn the_core_is_below_every_adapter_and_knows_no_http() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = dependency_graph(&src);
    let core = &graph["kernel"];
    assert!(core.contains("flow"), "the core runs the flows: {core:?}");
    for adapter in ADAPTERS {
        assert!(
            !core.contains(adapter),
            "the core depends on the adapter `{adapter}`: {core:?}"
        );
        assert!(
            graph.get(adapter).is_none_or(|deps| !deps.is_empty()),
            "`{adapter}` was read"
        );
    }
    for below in ["flow", "store", "session", "token", "device"] {
        assert!(
            !graph[below].contains("kernel"),
            "`{below}` reaches up into the core: {:?}",
            graph[below]
        );
    }
    let mut files = Vec::new();
    sources(&src.join("kernel"), &mut files);
    assert!(files.len() >= 3, "the core's files were read");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect();
        assert!(
            !code.contains("actix") && !code.contains("HttpRequest"),
            "{}: the core names HTTP types",
            file.display()
        );
    }
}

/// One place builds a request's step context: the core's `context`. (The
/// flow module defines `StepContext::new`; tests may build their own.)
#[test]
fn only_the_core_builds_a_step_context() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let builders: Vec<_> = files
        .iter()
        .filter(|f| f.file_name().is_none_or(|n| n != "tests.rs"))
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap()
                .contains("StepContext::new(")
        })
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    assert_eq!(
        builders,
        ["kernel/mod.rs"],
        "StepContext::new called outside the core"
    );
}

/// Files by concern: no source file of the library or the demo binary
/// (tests aside) grows past 400 lines (issue 15). Functions have their own
/// bound: `clippy::too_many_lines`, threshold in `clippy.toml`.
#[test]
fn no_source_file_is_longer_than_400_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    sources(&src.join("bin"), &mut files);
    assert!(files.iter().any(|f| f.ends_with("bin/rememberme/main.rs")));
    let long: Vec<String> = files
        .iter()
        .filter(|f| f.file_name().is_none_or(|n| n != "tests.rs"))
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > 400).then(|| format!("{} ({lines})", f.strip_prefix(&src).unwrap().display()))
        })
        .collect();
    assert!(long.is_empty(), "files over 400 lines: {long:?}");
}
