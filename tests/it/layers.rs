//! The house rule of `src/`: imports flow one way, down the layers of
//! docs/ARCHITECTURE.md (entry → transports → core → tools and jobs → store → foundation).
//! Every `crate::` path in a module's code (not its comments) must name a module of a lower
//! layer, or the module's own top-level module. A parent registering its children
//! (`mod x;`) is not an import.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules (or `module::child` where a child sits lower than its parent),
/// by layer: a module may import only from layers with a smaller number.
const LAYERS: &[(u8, &[&str])] = &[
    (0, &["json", "hex", "clock", "telemetry::names"]),
    (1, &["envelope", "asks"]),
    (2, &["jobs", "audit"]),
    (3, &["config"]),
    (4, &["auth", "logging", "oauth", "otel"]),
    (5, &["store"]),
    (6, &["limits", "tools", "webhooks", "audit::writer"]),
    (7, &["app", "worker"]),
    (8, &["http", "systemd", "scheduler"]),
    (9, &["v1", "mcp", "telemetry", "console"]),
    (10, &["server", "client"]),
    (11, &["ops", "backup", "bench", "audit::cli"]),
    (12, &["cli"]),
];

fn layer_of(path: &str) -> Option<(u8, &'static str)> {
    // The longest listed prefix wins (`telemetry::names` before `telemetry`).
    let mut best: Option<(u8, &'static str)> = None;
    for (layer, mods) in LAYERS {
        for m in *mods {
            let hit = path == *m || path.starts_with(&format!("{m}::"));
            if hit && best.is_none_or(|(_, b)| m.len() > b.len()) {
                best = Some((*layer, m));
            }
        }
    }
    best
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`.
fn module_path(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<_> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .filter(|c| c != "mod")
        .collect();
    parts.join("::")
}

/// Every `crate::a::b` path in the code of `text`, comments and `#[cfg(test)]` modules
/// left out (a module's own tests may reach anywhere).
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let tail = &rest[i + "crate::".len()..];
            let path: String = tail
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push((n + 1, path.trim_end_matches(':').to_string()));
            rest = &tail[path.len().min(tail.len())..];
        }
    }
    out
}

#[test]
fn imports_flow_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = BTreeMap::new();
    for file in files {
        let module = module_path(&src, &file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some((from, from_top)) = layer_of(&module) else {
            panic!("{module} is in no layer: add it to LAYERS (and docs/ARCHITECTURE.md)");
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, path) in crate_paths(&text) {
            let Some((to, to_top)) = layer_of(&path) else {
                panic!(
                    "{}:{line}: crate::{path} names no module in LAYERS",
                    file.display()
                );
            };
            let same_module = to_top == from_top
                || path.split("::").next() == module.split("::").next() && to == from;
            if !same_module && to >= from {
                upward.insert(
                    format!("{}:{line}", file.display()),
                    format!("{module} (layer {from}) imports crate::{path} (layer {to})"),
                );
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not flow down:\n{}",
        upward
            .iter()
            .map(|(k, v)| format!("  {k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn no_source_file_is_over_800_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<_> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 800).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these along a seam: {long:?}");
}

/// Each `fn` from its signature to the closing brace at its own indentation.
fn long_functions(text: &str, max: usize) -> Vec<(usize, usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        let signature = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
        ]
        .iter()
        .chain(
            [
                "pub(crate) async fn ",
                "pub(super) fn ",
                "pub(super) async fn ",
            ]
            .iter(),
        )
        .any(|p| t.starts_with(p));
        // A declaration without a body (a trait's) ends with `;` before any `{`.
        let declaration = lines[i..]
            .iter()
            .map(|l| l.trim_end())
            .find(|l| l.ends_with('{') || l.ends_with(';'))
            .is_none_or(|l| l.ends_with(';'));
        if !signature || declaration {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(len) = lines[i + 1..].iter().position(|l| *l == close) {
            if len + 2 > max {
                let name = t.split('(').next().unwrap_or(t).to_string();
                out.push((i + 1, len + 2, name));
            }
        }
    }
    out
}

#[test]
fn no_function_is_over_100_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut long = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (line, len, name) in long_functions(&text, 100) {
            long.push(format!("{}:{line} {name} ({len} lines)", f.display()));
        }
    }
    assert!(
        long.is_empty(),
        "split these along a seam:\n{}",
        long.join("\n")
    );
}
