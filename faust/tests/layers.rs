//! The runtime's modules form layers (docs/ARCHITECTURE.md, "Layers"): a module imports
//! only from its own layer or lower ones, and modules of one layer import each other
//! without a circle. This test reads the layer table from the document and the
//! `crate::`/`super::` paths of every source file, and names each import that breaks
//! the rule, so the document and the code cannot drift apart.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// A module path inside the crate, e.g. `tables::state` (the root is "").
type Module = String;

/// The layer table: each unit with its layer number. A unit is a module with what it
/// holds (`agents`), the children of a module (`tables::*`), or a name given to a list
/// of modules (`tables=tables,tables::table`); a module belongs to the unit whose
/// pattern names it most closely.
struct Layers {
    units: Vec<Unit>,
}

struct Unit {
    name: String,
    patterns: Vec<String>,
    layer: usize,
}

impl Layers {
    /// Reads the ```layers block of docs/ARCHITECTURE.md: lines `N: unit unit ...`.
    fn from_architecture(text: &str) -> Layers {
        let block = text
            .split("```layers")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/ARCHITECTURE.md has a ```layers block");
        let mut units = Vec::new();
        for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (number, names) = line.split_once(':').expect("a layer line is `N: units`");
            let layer: usize = number.trim().parse().expect("a layer number");
            for unit in names.split_whitespace() {
                let (name, patterns) = unit.split_once('=').unwrap_or((unit, unit));
                units.push(Unit {
                    name: name.to_owned(),
                    patterns: patterns.split(',').map(str::to_owned).collect(),
                    layer,
                });
            }
        }
        Layers { units }
    }

    /// The unit a module belongs to: the one with the longest pattern naming it or a
    /// parent (`m::*` covers the children of `m`, not `m` itself).
    fn unit_of(&self, module: &str) -> Option<(&str, usize)> {
        let names = |pattern: &str| match pattern.strip_suffix("::*") {
            Some(parent) => module.starts_with(&format!("{parent}::")),
            None => module == pattern || module.starts_with(&format!("{pattern}::")),
        };
        self.units
            .iter()
            .flat_map(|unit| unit.patterns.iter().map(move |p| (unit, p)))
            .filter(|(_, pattern)| names(pattern))
            .max_by_key(|(_, pattern)| pattern.len())
            .map(|(unit, _)| (unit.name.as_str(), unit.layer))
    }
}

/// Every source file of the crate with its module path.
fn modules(src: &Path) -> Vec<(Module, PathBuf)> {
    let mut found = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            found.push((parts.join("::"), path));
        }
    }
    found.sort();
    found
}

/// The code of a file without its comments and its `#[cfg(test)]` modules (which may
/// import anything of the module they test).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|l| l.trim_start().starts_with("mod "))
        {
            break; // test modules close the files here
        }
        let without_comment = match trimmed.find("//") {
            Some(at) if !trimmed[..at].contains('"') => &trimmed[..at],
            _ => trimmed,
        };
        out.push_str(without_comment);
        out.push('\n');
    }
    out
}

/// The paths a `use` tree names: `crate::{a::b, c::{d, e}}` gives `crate::a::b`,
/// `crate::c::d`, `crate::c::e`.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
        let Some(open) = tree.find('{') else {
            let path = tree
                .split("as")
                .next()
                .unwrap_or(tree)
                .trim_end_matches("::");
            let joined = match (prefix.is_empty(), path) {
                (true, _) => path.to_owned(),
                (false, "self") => prefix.to_owned(),
                (false, _) => format!("{prefix}::{path}"),
            };
            out.push(joined);
            return;
        };
        let head = tree[..open].trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let prefix = match (prefix.is_empty(), head.is_empty()) {
            (true, _) => head.to_owned(),
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}::{head}"),
        };
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&prefix, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if start < inner.len() {
            expand(&prefix, &inner[start..], out);
        }
    }
    let mut out = Vec::new();
    expand("", &tree, &mut out);
    out
}

/// Every `crate::`/`super::` path a file's code names: in `use` items and inline.
fn paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let starts_item = before
            .chars()
            .last()
            .is_none_or(|c| c.is_whitespace() || c == '{' || c == ';' || c == '}');
        rest = &rest[at + 4..];
        if !starts_item {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        found.extend(expand_use(&rest[..end]));
        rest = &rest[end..];
    }
    for word in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(word) {
            let preceded = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':' || c == '{');
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            // `crate::{...}` is a use tree, read above.
            if !preceded && !tail[end..].starts_with('{') {
                found.push(tail[..end].trim_end_matches(':').to_owned());
            }
            rest = &rest[at + word.len()..];
        }
    }
    found
}

/// The module `path` (seen in `module`) names:
/// the longest known module it starts with. Names re-exported at the root resolve to
/// the module they come from (`crate::Error` is `error`).
fn target(
    module: &str,
    path: &str,
    known: &BTreeSet<Module>,
    root_names: &BTreeMap<String, Module>,
) -> Option<Module> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    match segments.first() {
        Some(&"crate") => {
            base.clear();
            segments.remove(0);
        }
        Some(&"super") => {
            while segments.first() == Some(&"super") {
                base.pop();
                segments.remove(0);
            }
        }
        _ => return None,
    }
    let mut full: Vec<&str> = base;
    full.extend(segments.iter().copied().filter(|s| *s != "self"));
    let candidate = (0..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| known.contains(m))?;
    if candidate.is_empty() {
        // An item of the root: where it is re-exported from.
        let name = full.first()?;
        return root_names.get(*name).cloned();
    }
    Some(candidate)
}

/// Names `lib.rs` re-exports, with the module each comes from.
fn root_names(lib: &str) -> BTreeMap<String, Module> {
    let mut names = BTreeMap::new();
    for line in code(lib).split(';') {
        let line = line.trim();
        let Some(tree) = line.strip_prefix("pub use ") else {
            continue;
        };
        for path in expand_use(tree) {
            let mut parts: Vec<&str> = path.split("::").collect();
            let name = parts.pop().unwrap_or_default().to_owned();
            if let Some(module) = parts.first() {
                names.insert(name, (*module).to_owned());
            }
        }
    }
    names
}

struct Import {
    from: Module,
    to: Module,
    file: PathBuf,
    path: String,
}

fn imports(src: &Path) -> (Vec<Import>, Vec<(Module, PathBuf)>) {
    let files = modules(src);
    let known: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap();
    let roots = root_names(&lib);
    let mut found = Vec::new();
    for (module, file) in &files {
        if module.is_empty() {
            continue; // lib.rs declares and re-exports everything
        }
        let text = fs::read_to_string(file).unwrap();
        for path in paths(&code(&text)) {
            let Some(to) = target(module, &path, &known, &roots) else {
                continue;
            };
            if &to != module {
                found.push(Import {
                    from: module.clone(),
                    to,
                    file: file.clone(),
                    path,
                });
            }
        }
    }
    (found, files)
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layers() -> Layers {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ARCHITECTURE.md");
    Layers::from_architecture(&fs::read_to_string(doc).unwrap())
}

/// The breaches of the layer rule among `imports`: one line each.
fn breaches(layers: &Layers, imports: &[Import], files: &[(Module, PathBuf)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (module, file) in files {
        if !module.is_empty() && layers.unit_of(module).is_none() {
            problems.push(format!(
                "{} (module {module}) is in no layer of docs/ARCHITECTURE.md",
                file.display()
            ));
        }
    }
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for import in imports {
        let (Some((from_unit, from)), Some((to_unit, to))) =
            (layers.unit_of(&import.from), layers.unit_of(&import.to))
        else {
            continue;
        };
        if to > from {
            problems.push(format!(
                "{}: `{}` imports from {} (layer {to}, unit {to_unit}) but {} is in layer {from} \
                 (unit {from_unit}): imports run down the layers",
                import.file.display(),
                import.path,
                import.to,
                import.from
            ));
        }
        if from_unit != to_unit {
            edges.entry(from_unit).or_default().insert(to_unit);
        }
    }
    if let Some(circle) = find_circle(&edges) {
        problems.push(format!(
            "the units import each other in a circle: {}",
            circle.join(" -> ")
        ));
    }
    problems
}

/// A circle in `edges`, if there is one, as the units along it.
fn find_circle<'a>(edges: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node);
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn imports_run_down_the_layers_without_circles() {
    let (imports, files) = imports(&source_dir());
    assert!(
        imports.len() > 50,
        "too few imports found: the reader is broken"
    );
    let problems = breaches(&layers(), &imports, &files);
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn an_upward_import_is_named() {
    // The real tree plus one import from a leaf (`config`) up to the worker.
    let (mut imports, files) = imports(&source_dir());
    imports.push(Import {
        from: "config".into(),
        to: "worker".into(),
        file: PathBuf::from("src/config.rs"),
        path: "crate::worker::Worker".into(),
    });
    let problems = breaches(&layers(), &imports, &files);
    assert!(
        problems[0].contains("src/config.rs: `crate::worker::Worker` imports from worker"),
        "{problems:#?}"
    );
    // It also closes a circle (the worker reads the config), which is named too.
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[1].contains("circle"), "{problems:#?}");
}

#[test]
fn use_trees_and_paths_are_read() {
    assert_eq!(
        expand_use("crate::{a::b, c::{d, e as f}, g}"),
        ["crate::a::b", "crate::c::d", "crate::c::e", "crate::g"]
    );
    assert_eq!(expand_use("super::{self, x}"), ["super", "super::x"]);
    let code = code("use crate::x::Y;\nfn f() { crate::z::g(); } // crate::no\n#[cfg(test)]\nmod tests { use crate::t; }\n");
    assert_eq!(paths(&code), ["crate::x::Y", "crate::x::Y", "crate::z::g"]);
}
