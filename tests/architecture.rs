//! The shape of the code (README "Architecture"): modules follow the data's path, no module
//! imports one above it, and no two files import each other. Read from the sources, so a
//! change that adds an arrow back up fails here with the file and the import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer, lowest first: a module may import modules of a lower
/// layer, or of its own layer as long as no two import each other.
const LAYERS: &[(&str, &[&str])] = &[
    ("leaves", &["params", "suggest", "error", "device", "interrupt", "kernels", "chart", "output"]),
    ("config", &["config"]),
    ("components", &["schedule", "data", "model", "optim"]),
    ("train", &["train"]),
    ("plan and store", &["plan", "store", "progress"]),
    ("sweep", &["sweep", "slurm", "lr_find"]),
    ("results", &["results"]),
    ("report", &["report"]),
    ("launch", &["launch"]),
    ("commands", &["commands", "cli"]),
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// The code of a file less comments and its `#[cfg(test)]` module (tests may reach anywhere).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::a::b...` path in `code`, as its segments.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c}`: each item, first segments only.
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                out.push(segments(item.trim()));
            }
        } else {
            out.push(segments(rest));
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn segments(s: &str) -> Vec<String> {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(s.len());
    s[..end].split("::").filter(|x| !x.is_empty()).map(str::to_string).collect()
}

/// The files `super::x` paths in `file` name: `x.rs` (or `x/mod.rs`) beside the file's
/// module, else the parent module's own file.
fn super_files(file: &Path, code: &str) -> Vec<PathBuf> {
    let dir = file.parent().unwrap();
    let parent_dir = if file.file_name().unwrap() == "mod.rs" { dir.parent().unwrap() } else { dir };
    let parent_file =
        |d: &Path| [d.join("mod.rs"), d.with_extension("rs"), d.join("lib.rs")].into_iter().find(|p| p.is_file());
    let mut out = Vec::new();
    for (i, _) in code.match_indices("super::") {
        let rest = &code[i + "super::".len()..];
        let names: Vec<Vec<String>> = match rest.strip_prefix('{') {
            Some(group) => {
                group[..group.find('}').unwrap_or(group.len())].split(',').map(|x| segments(x.trim())).collect()
            }
            None => vec![segments(rest)],
        };
        for segs in names.into_iter().filter(|s| !s.is_empty()) {
            let sibling = parent_dir.join(&segs[0]);
            let target = [sibling.with_extension("rs"), sibling.join("mod.rs")]
                .into_iter()
                .find(|p| p.is_file())
                .or_else(|| parent_file(parent_dir));
            out.extend(target);
        }
    }
    out
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// The file a `crate::` path names (the longest prefix that is a file), if any.
fn file_of(src: &Path, segs: &[String]) -> Option<PathBuf> {
    (1..=segs.len()).rev().find_map(|n| {
        let base = segs[..n].iter().fold(src.to_path_buf(), |p, s| p.join(s));
        [base.with_extension("rs"), base.join("mod.rs")].into_iter().find(|p| p.is_file())
    })
}

#[test]
fn no_module_imports_one_above_it_and_no_two_files_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut module_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut file_edges: BTreeSet<(PathBuf, PathBuf)> = BTreeSet::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        if name == "lib.rs" || name == "main.rs" {
            continue;
        }
        let from = module_of(&src, file);
        let Some(from_layer) = layer(&from) else {
            problems.push(format!("{}: module `{from}` has no layer in tests/architecture.rs", file.display()));
            continue;
        };
        let text = code(file);
        for target in super_files(file, &text) {
            if &target != file {
                file_edges.insert((file.clone(), target));
            }
        }
        for segs in crate_paths(&text) {
            let to = &segs[0];
            if let Some(target) = file_of(&src, &segs)
                && &target != file
            {
                file_edges.insert((file.clone(), target));
            }
            if *to == from || layer(to).is_none() {
                continue; // the crate root's items (say!, DEFAULT_SEED) and the module itself
            }
            let to_layer = layer(to).unwrap();
            if to_layer > from_layer {
                problems.push(format!(
                    "{}: `{from}` ({}) imports `crate::{}`, which is above it ({})",
                    file.strip_prefix(&src).unwrap().display(),
                    LAYERS[from_layer].0,
                    segs.join("::"),
                    LAYERS[to_layer].0
                ));
            }
            module_edges.entry(from.clone()).or_default().insert(to.clone());
        }
    }
    for (a, tos) in &module_edges {
        for b in tos {
            if a < b && module_edges.get(b).is_some_and(|t| t.contains(a)) {
                problems.push(format!("modules `{a}` and `{b}` import each other"));
            }
        }
    }
    for (a, b) in &file_edges {
        if a < b && file_edges.contains(&(b.clone(), a.clone())) {
            problems.push(format!("{} and {} import each other", a.display(), b.display()));
        }
    }
    assert!(problems.is_empty(), "the code's shape has {} problem(s):\n{}", problems.len(), problems.join("\n"));
    // The check sees the imports it should: the trainer uses the model interface.
    assert!(module_edges["train"].contains("model"), "{module_edges:?}");
    assert!(module_edges["launch"].contains("sweep"), "{module_edges:?}");
}
