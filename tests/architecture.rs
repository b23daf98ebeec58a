//! The shape of the code, checked: the engine's files import each other without a cycle (so
//! each concept can be read from its file and the ones below it), and no library file names
//! `std::sync::atomic` but the sync facade (so loom sees every atomic; STYLE.md 8).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module path inside `src/engine`: `[]` is `engine/mod.rs`, `["scheduler", "sleepers"]` is
/// `engine/scheduler/sleepers.rs`.
type ModPath = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The engine's files by module path.
fn engine_modules() -> BTreeMap<ModPath, PathBuf> {
    let root = src().join("engine");
    rust_files(&root)
        .into_iter()
        .map(|file| {
            let relative = file.strip_prefix(&root).unwrap();
            let mut path: ModPath = relative
                .with_extension("")
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if path.last().is_some_and(|last| last == "mod") {
                path.pop();
            }
            (path, file)
        })
        .collect()
}

/// The code of a file without its comments (line comments and doc comments; the engine has
/// no block comments) and without its unit tests (a `mod tests` at the end, whose `super`
/// is the file itself).
fn code(file: &Path) -> String {
    let text = fs::read_to_string(file).unwrap();
    let text = match text.find("mod tests {") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths written after `prefix` in `code`: `super::shard::Shard` gives `["shard", "Shard"]`;
/// `super::{a, b::c}` gives `["a"]` and `["b", "c"]`.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // part of a longer path, such as `foo_super::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    out.push(segments(item));
                }
            }
        } else {
            out.push(segments(rest));
        }
    }
    out
}

/// The leading `a::b::c` of `text`.
fn segments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        out.push(rest[..end].to_owned());
        match rest[end..].strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    out
}

/// The module a path starting at `base` lands in: the longest prefix that is a module.
fn resolve(modules: &BTreeMap<ModPath, PathBuf>, base: &ModPath, path: &[String]) -> ModPath {
    let mut landed = base.clone();
    for segment in path {
        let mut deeper = landed.clone();
        deeper.push(segment.clone());
        if modules.contains_key(&deeper) {
            landed = deeper;
        } else {
            break;
        }
    }
    landed
}

/// The crate-root names that re-export engine items (`pub use engine::{...}` in `lib.rs`),
/// mapped to the engine module they come from (read from `engine/mod.rs`'s `pub use`s).
fn reexports(modules: &BTreeMap<ModPath, PathBuf>) -> BTreeMap<String, ModPath> {
    let mod_rs = code(&modules[&Vec::new()]);
    let mut out = BTreeMap::new();
    for line in mod_rs.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module = segments(rest);
        let names = match rest.find('{') {
            Some(open) => rest[open + 1..rest.find('}').unwrap()]
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
            None => vec![module.last().unwrap().clone()],
        };
        let target = resolve(modules, &Vec::new(), &module);
        for name in names {
            out.insert(name, target.clone());
        }
    }
    out
}

/// Which engine modules each engine module refers to.
fn import_graph() -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let modules = engine_modules();
    let reexported = reexports(&modules);
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let code = code(file);
        let mut edges = BTreeSet::new();
        let parent: ModPath = module[..module.len().saturating_sub(1)].to_vec();
        for path in paths_after(&code, "super::") {
            edges.insert(resolve(&modules, &parent, &path));
        }
        for path in paths_after(&code, "crate::engine::") {
            edges.insert(resolve(&modules, &Vec::new(), &path));
        }
        for path in paths_after(&code, "crate::") {
            if let Some(target) = path.first().and_then(|name| reexported.get(name)) {
                edges.insert(target.clone());
            }
        }
        // A folder's `mod.rs` depends on the files it declares.
        for line in code.lines() {
            let line = line.trim();
            let declared = line
                .strip_prefix("mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .and_then(|rest| rest.strip_suffix(';'));
            if let Some(name) = declared {
                let mut child = module.clone();
                child.push(name.to_owned());
                if modules.contains_key(&child) {
                    edges.insert(child);
                }
            }
        }
        edges.remove(module);
        graph.insert(module.clone(), edges);
    }
    graph
}

/// A cycle through `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Option<Vec<ModPath>> {
    fn visit(
        graph: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        node: &ModPath,
        stack: &mut Vec<ModPath>,
        done: &mut BTreeSet<ModPath>,
    ) -> Option<Vec<ModPath>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

fn show(path: &ModPath) -> String {
    if path.is_empty() {
        "engine".to_owned()
    } else {
        format!("engine::{}", path.join("::"))
    }
}

// proves the reshape of issue 12 stays: the engine's files import each other without a cycle.
#[test]
fn the_engine_files_import_each_other_without_a_cycle() {
    let graph = import_graph();
    assert!(graph.len() > 20, "found the engine's files: {}", graph.len());
    // The check sees real edges (so an empty graph cannot pass it).
    let runner = graph.get(&vec!["runner".to_owned()]).expect("runner.rs");
    assert!(runner.contains(&vec!["shard".to_owned()]) && runner.contains(&vec!["reaper".to_owned()]));
    if let Some(cycle) = find_cycle(&graph) {
        let shown: Vec<String> = cycle.iter().map(show).collect();
        panic!("import cycle: {}", shown.join(" -> "));
    }
}

#[test]
fn a_planted_cycle_is_found() {
    let mut graph = import_graph();
    let shard = vec!["shard".to_owned()];
    graph.get_mut(&shard).unwrap().insert(vec!["runner".to_owned()]);
    assert!(find_cycle(&graph).is_some());
}

// proves STYLE.md 8 (the loom facade): no library file but `sync.rs` names std's atomics.
#[test]
fn only_the_sync_facade_names_std_atomics() {
    let offenders: Vec<PathBuf> = rust_files(&src())
        .into_iter()
        .filter(|file| !file.ends_with("sync.rs"))
        .filter(|file| code(file).contains("std::sync::atomic"))
        .collect();
    assert!(offenders.is_empty(), "std::sync::atomic named in {offenders:?}");
}
