//! The layout as drawn from the imports: no circle between modules, and
//! nothing below the plan reads a spec. Reads the sources under `src/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that only see plans, never what the user wrote.
const BELOW_THE_PLAN: [&str; 11] = [
    "data", "model", "ops", "train", "run", "sweep", "report", "logging", "rundir", "predict",
    "export",
];

/// Every `.rs` file under `dir` with its module path (`sweep/slurm/mod.rs`
/// is `["sweep", "slurm"]`); `src/bin` is left out.
fn modules(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, Vec<String>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "bin") {
                modules(&p, root, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            out.push((p, parts));
        }
    }
}

/// The code of a file without its inline `#[cfg(test)] mod ... {` (which
/// comes last) and its comments.
fn code(text: &str) -> String {
    let end = text
        .match_indices("#[cfg(test)]\nmod ")
        .map(|(i, _)| i)
        .find(|&i| text[i..].lines().nth(1).is_some_and(|l| l.ends_with('{')))
        .unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `crate::a::b::c` and `super::x` paths in `src`, as segment lists from
/// the crate root.
fn paths(src: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (start, prefix) in [("crate::", 0usize), ("super::", 1)] {
        let mut rest = src;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().last();
            rest = &rest[i + start.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let tail: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segs: Vec<String> = if prefix == 0 {
                Vec::new()
            } else {
                me[..me.len().saturating_sub(1)].to_vec()
            };
            segs.extend(tail.split("::").filter(|s| !s.is_empty()).map(String::from));
            out.push(segs);
        }
    }
    out
}

/// Module-to-module edges at `depth` path segments, tests left out.
fn graph(depth: usize) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    modules(&root, &root, &mut files);
    let known: BTreeSet<Vec<String>> = files.iter().map(|(_, m)| m.clone()).collect();
    let resolve = |segs: &[String]| -> Vec<String> {
        (0..=segs.len())
            .rev()
            .map(|k| segs[..k].to_vec())
            .find(|p| known.contains(p))
            .unwrap_or_default()
            .into_iter()
            .take(depth)
            .collect()
    };
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (path, module) in &files {
        if module.is_empty() || module.iter().any(|m| m.contains("test")) {
            continue;
        }
        let me: Vec<String> = module.iter().take(depth).cloned().collect();
        let text = std::fs::read_to_string(path).unwrap();
        for target in paths(&code(&text), module) {
            let t = resolve(&target);
            if !t.is_empty() && t != me {
                edges.entry(me.clone()).or_default().insert(t);
            }
        }
    }
    edges
}

/// A cycle through `start`, if there is one.
fn cycle_through(
    edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    start: &Vec<String>,
) -> Option<Vec<Vec<String>>> {
    let mut stack = vec![(start.clone(), vec![start.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((node, trail)) = stack.pop() {
        for next in edges.get(&node).into_iter().flatten() {
            if next == start {
                return Some(trail);
            }
            if seen.insert(next.clone()) {
                let mut t = trail.clone();
                t.push(next.clone());
                stack.push((next.clone(), t));
            }
        }
    }
    None
}

#[test]
fn no_module_imports_run_in_a_circle() {
    for depth in 1..=3 {
        let edges = graph(depth);
        assert!(edges.len() > 10, "the source walk found the modules");
        for start in edges.keys() {
            if let Some(trail) = cycle_through(&edges, start) {
                let names: Vec<String> = trail.iter().map(|m| m.join("::")).collect();
                panic!(
                    "modules import each other in a circle: {} -> {}",
                    names.join(" -> "),
                    names[0]
                );
            }
        }
    }
}

#[test]
fn the_layout_check_sees_a_circle() {
    let e = |a: &str| vec![a.to_string()];
    let edges = BTreeMap::from([
        (e("a"), BTreeSet::from([e("b")])),
        (e("b"), BTreeSet::from([e("c")])),
        (e("c"), BTreeSet::from([e("a")])),
    ]);
    assert_eq!(
        cycle_through(&edges, &e("a")),
        Some(vec![e("a"), e("b"), e("c")])
    );
    assert!(cycle_through(&graph(1), &e("vocab")).is_none());
}

#[test]
fn nothing_below_the_plan_reads_a_spec() {
    let edges = graph(2);
    let spec = vec!["config".to_string(), "spec".to_string()];
    let readers: Vec<String> = edges
        .iter()
        .filter(|(from, to)| BELOW_THE_PLAN.contains(&from[0].as_str()) && to.contains(&spec))
        .map(|(from, _)| from.join("::"))
        .collect();
    assert!(
        readers.is_empty(),
        "below the plan, these import config::spec: {readers:?}"
    );
    // The check sees the plan's own reading of the specs.
    assert!(edges[&vec!["plan".to_string()]].contains(&spec));
}
