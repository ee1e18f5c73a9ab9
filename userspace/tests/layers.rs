//! The userspace layers import downward only, and no import cycle joins more than two files.
//!
//! The order is the numbered list in `src/lib.rs`'s module docs, read from there, so the docs and
//! the check cannot drift apart. Every `crate::` path in `src/` (and every `fastpath::` path in
//! `src/main.rs`) is expanded from its use tree, resolved to the file that defines it, and
//! compared with the importing file's layer. A file's layer is its top-level module's: `cli.rs` is
//! `cli`, `daemon/run.rs` is `daemon`. Test modules count too: they are code in the file.
//!
//! `super::` paths are not followed: the source uses them only in `mod tests` for the file's own
//! items. Comments (so intra-doc links) and string literals are skipped.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// One import: the importing file, its line, the path as written out in full, the file it names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    from: String,
    line: usize,
    path: String,
    to: String,
}

/// The layers as `lib.rs`'s docs list them, lowest first: lines `//! N. `a`, `b`: why`. The
/// module names are the back-quoted words before the first `: `.
fn layers(lib: &str) -> Vec<Vec<String>> {
    let mut layers = Vec::new();
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else { continue };
        let doc = doc.trim_start();
        let Some((number, rest)) = doc.split_once(". ") else { continue };
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let names = rest.split_once(": ").map_or(rest, |(names, _)| names);
        let modules: Vec<String> =
            names.split('`').skip(1).step_by(2).map(str::to_string).filter(|m| !m.is_empty()).collect();
        layers.push(modules);
    }
    layers
}

/// The source with comments and string and char literals blanked out (newlines kept, so line
/// numbers hold).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !ident_char(prev(&chars, i)) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.extend(chars[i..j.min(chars.len())].iter().map(|c| blank(*c)));
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(chars.len());
            out.extend(chars[i..end].iter().map(|c| blank(*c)));
            i = end;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\''), not a lifetime.
            let mut j = i + 1;
            if chars[j] == '\\' {
                j += 2;
            }
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            out.extend(chars[i..end].iter().map(|c| blank(*c)));
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev(chars: &[char], i: usize) -> char {
    if i == 0 {
        ' '
    } else {
        chars[i - 1]
    }
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path a use tree starting at `text` names, in full (`a::{b, c::d}` → `a::b`, `a::c::d`),
/// and how many bytes the tree took.
fn use_tree(text: &str) -> (Vec<Vec<String>>, usize) {
    let mut parser = Parser { text: text.as_bytes(), at: 0 };
    let paths = parser.tree(&[]);
    (paths, parser.at)
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.at < self.text.len() && self.text[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.text[self.at..].starts_with(token.as_bytes()) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_space();
        let start = self.at;
        while self.at < self.text.len()
            && (self.text[self.at].is_ascii_alphanumeric() || self.text[self.at] == b'_')
        {
            self.at += 1;
        }
        (self.at > start).then(|| String::from_utf8_lossy(&self.text[start..self.at]).into_owned())
    }

    /// `seg (:: seg)* (:: { tree, ... } | :: *)?`, below `prefix`.
    fn tree(&mut self, prefix: &[String]) -> Vec<Vec<String>> {
        let mut path = prefix.to_vec();
        loop {
            if self.eat("{") {
                let mut paths = Vec::new();
                loop {
                    if self.eat("}") {
                        return paths;
                    }
                    paths.extend(self.tree(&path));
                    if !self.eat(",") {
                        self.eat("}");
                        return paths;
                    }
                }
            }
            if self.eat("*") {
                return vec![path];
            }
            match self.ident() {
                Some(segment) if segment == "self" => {}
                Some(segment) => path.push(segment),
                None => return vec![path],
            }
            let before = self.at;
            if !self.eat("::") {
                self.at = before;
                return vec![path];
            }
        }
    }
}

/// The module path of a file under `src/` (`daemon/run.rs` → `daemon::run`; `lib.rs` → ``).
fn module_of(file: &str) -> String {
    let file = file.trim_end_matches(".rs").trim_end_matches("/mod");
    if file == "lib" {
        return String::new();
    }
    file.replace('/', "::")
}

/// The file a path (`daemon::routes::Prefix`) names: the deepest module file along it, through
/// the re-exports (`pub use a::B;`) of the file it lands in.
fn resolve(files: &BTreeMap<String, String>, path: &[String]) -> Option<String> {
    let mut file = "lib.rs".to_string();
    let mut dir = String::new();
    for (i, segment) in path.iter().enumerate() {
        let flat = format!("{dir}{segment}.rs");
        let nested = format!("{dir}{segment}/mod.rs");
        if files.contains_key(&flat) {
            file = flat;
        } else if files.contains_key(&nested) {
            file = nested;
        } else {
            // Not a module: an item of `file`, or one it re-exports.
            let source = code_only(&files[&file]);
            for statement in source.split(';') {
                let Some(at) = statement.find("pub use ") else { continue };
                let tree = &statement[at + "pub use ".len()..];
                let (paths, _) = use_tree(tree);
                if let Some(target) = paths.iter().find(|p| p.last() == Some(segment)) {
                    let mut full: Vec<String> = if target.first().map(String::as_str) == Some("crate") {
                        target[1..].to_vec()
                    } else {
                        let mut base: Vec<String> = module_of(&file)
                            .split("::")
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect();
                        base.extend(target.iter().cloned());
                        base
                    };
                    full.extend(path[i + 1..].iter().cloned());
                    return resolve(files, &full);
                }
            }
            return (file != "lib.rs").then_some(file);
        }
        dir = format!("{dir}{segment}/");
    }
    Some(file)
}

/// Every import of every file; paths that name no file are returned apart.
fn imports(files: &BTreeMap<String, String>) -> (Vec<Import>, Vec<(String, usize, String)>) {
    let (mut found, mut unresolved) = (Vec::new(), Vec::new());
    for (file, source) in files {
        let code = code_only(source);
        let roots: &[&str] = if file == "main.rs" { &["crate::", "fastpath::"] } else { &["crate::"] };
        for root in roots {
            for (at, _) in code.match_indices(root) {
                let before = code[..at].chars().next_back().unwrap_or(' ');
                if ident_char(before) || before == ':' || before == '$' {
                    continue;
                }
                let line = code[..at].matches('\n').count() + 1;
                let (paths, _) = use_tree(&code[at + root.len()..]);
                for path in paths {
                    let written = format!("crate::{}", path.join("::"));
                    match resolve(files, &path) {
                        Some(to) if &to == file => {}
                        Some(to) => found.push(Import { from: file.clone(), line, path: written, to }),
                        None => unresolved.push((file.clone(), line, written)),
                    }
                }
            }
        }
    }
    (found, unresolved)
}

/// The layer of a file: the index of its top-level module in `layers`.
fn layer_of(layers: &[Vec<String>], file: &str) -> Option<usize> {
    let top = file.split('/').next().unwrap_or(file).trim_end_matches(".rs");
    layers.iter().position(|layer| layer.iter().any(|m| m == top))
}

/// What the rules find wrong, one sentence each.
fn violations(files: &BTreeMap<String, String>) -> Vec<String> {
    let layers = layers(&files["lib.rs"]);
    let mut problems = Vec::new();
    if layers.len() < 2 {
        problems.push("lib.rs's docs list no layers (`//! 1. `module`, ...: why`)".to_string());
    }
    for file in files.keys().filter(|f| *f != "lib.rs") {
        if layer_of(&layers, file).is_none() {
            problems.push(format!("{file} is in no layer: name its module in lib.rs's list"));
        }
    }
    let (imports, unresolved) = imports(files);
    for (file, line, path) in unresolved {
        problems.push(format!("{file}:{line}: {path} names no file under src/"));
    }
    for import in &imports {
        let (Some(from), Some(to)) = (layer_of(&layers, &import.from), layer_of(&layers, &import.to)) else {
            continue;
        };
        if to > from {
            problems.push(format!(
                "{}:{}: {} climbs from layer {} ({}) to layer {} ({}, in {})",
                import.from,
                import.line,
                import.path,
                from + 1,
                layers[from].join(", "),
                to + 1,
                layers[to].join(", "),
                import.to,
            ));
        }
    }
    let mut graph: BTreeMap<&str, BTreeSet<&str>> =
        files.keys().map(|f| (f.as_str(), BTreeSet::new())).collect();
    for import in &imports {
        graph.entry(import.from.as_str()).or_default().insert(import.to.as_str());
    }
    for component in strongly_connected(&graph).into_iter().filter(|c| c.len() > 2) {
        let edges: Vec<String> = imports
            .iter()
            .filter(|i| component.contains(&i.from.as_str()) && component.contains(&i.to.as_str()))
            .map(|i| format!("{}:{} {}", i.from, i.line, i.path))
            .collect();
        problems.push(format!(
            "an import cycle joins {} files ({}); at most two may import each other:\n    {}",
            component.len(),
            component.join(", "),
            edges.join("\n    ")
        ));
    }
    problems
}

/// Tarjan's strongly connected components.
fn strongly_connected<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct Walk<'a, 'g> {
        graph: &'g BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<&'a str>>,
    }
    impl<'a> Walk<'a, '_> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for &next in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top);
                    if top == node {
                        break;
                    }
                }
                component.sort_unstable();
                self.components.push(component);
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &node in graph.keys() {
        if !walk.index.contains_key(node) {
            walk.visit(node);
        }
    }
    walk.components
}

/// Every `.rs` file under `dir`, by its path relative to `root`.
fn read_tree(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_tree(root, &path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            files.insert(name, fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn userspace_layers_import_downward_only_and_cycles_join_at_most_two_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_tree(&src, &src, &mut files);
    assert!(files.len() > 20, "read only {} files from {}", files.len(), src.display());
    // A parser that found nothing would pass everything.
    let (found, _) = imports(&files);
    assert!(found.len() > 200, "found only {} imports", found.len());
    assert!(
        found
            .iter()
            .any(|i| i.from == "daemon/run.rs" && i.path == "crate::cli::RunArgs" && i.to == "cli.rs"),
        "daemon/run.rs's import of cli::RunArgs was not seen"
    );
    let problems = violations(&files);
    assert!(problems.is_empty(), "userspace/src breaks its layering:\n  {}", problems.join("\n  "));
}

// The check on a small made-up crate: each rule can fail.

fn made_up(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    let lib = "//! Layers:\n//!\n//! 1. `low`, `error`: pure\n//! 2. `mid`: I/O\n//! 3. `high`: commands\n\
               pub mod low;\npub mod error;\npub mod mid;\npub mod high;\npub use error::Error;\n";
    std::iter::once(("lib.rs", lib)).chain(files.iter().copied()).map(|(f, s)| (f.into(), s.into())).collect()
}

#[test]
fn the_layers_are_read_from_the_docs() {
    let files = made_up(&[]);
    assert_eq!(layers(&files["lib.rs"]), [vec!["low", "error"], vec!["mid"], vec!["high"]]);
}

#[test]
fn use_trees_are_expanded_in_full() {
    let (paths, _) = use_tree("{a::{self, b}, c::d::*, e as f};");
    let paths: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(paths, ["a", "a::b", "c::d", "e"]);
}

#[test]
fn comments_and_strings_are_not_imports() {
    let code = code_only("// crate::x\nlet s = \"crate::y\"; /* crate::z */ let c = '\"'; crate::w");
    assert_eq!(code.matches("crate::").count(), 1, "{code}");
    assert!(code.ends_with("crate::w"));
}

#[test]
fn a_downward_import_passes() {
    let files = made_up(&[
        ("low.rs", "pub fn pad() {}"),
        ("error.rs", "pub enum Error {}"),
        ("mid/mod.rs", "pub mod io;"),
        ("mid/io.rs", "use crate::{low::pad, Error};"),
        ("high.rs", "use crate::mid::io;\nfn f() { crate::low::pad() }"),
    ]);
    assert_eq!(violations(&files), Vec::<String>::new());
}

#[test]
fn a_climbing_import_is_named() {
    let files = made_up(&[
        ("low.rs", "pub fn pad() {}"),
        ("error.rs", "pub enum Error {}"),
        ("mid/mod.rs", "pub mod io;"),
        ("mid/io.rs", "use crate::Error;\n\nfn f() {\n    crate::high::show();\n}"),
        ("high.rs", "pub fn show() {}"),
    ]);
    assert_eq!(
        violations(&files),
        ["mid/io.rs:4: crate::high::show climbs from layer 2 (mid) to layer 3 (high, in high.rs)"]
    );
}

#[test]
fn a_three_file_cycle_is_named_and_a_two_file_one_is_not() {
    let two = made_up(&[
        ("low.rs", "pub mod a; pub mod b;"),
        ("low/a.rs", "use crate::low::b::B; pub struct A;"),
        ("low/b.rs", "use crate::low::a::A; pub struct B;"),
        ("error.rs", ""),
        ("mid.rs", ""),
        ("high.rs", ""),
    ]);
    assert_eq!(violations(&two), Vec::<String>::new());
    let three = made_up(&[
        ("low.rs", "pub mod a; pub mod b; pub mod c;"),
        ("low/a.rs", "use crate::low::b::B; pub struct A;"),
        ("low/b.rs", "use crate::low::c::C; pub struct B;"),
        ("low/c.rs", "use crate::low::a::A; pub struct C;"),
        ("error.rs", ""),
        ("mid.rs", ""),
        ("high.rs", ""),
    ]);
    let problems = violations(&three);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("an import cycle joins 3 files (low/a.rs, low/b.rs, low/c.rs)"),
        "{problems:?}"
    );
}

#[test]
fn a_file_outside_every_layer_is_named() {
    let files =
        made_up(&[("low.rs", ""), ("error.rs", ""), ("mid.rs", ""), ("high.rs", ""), ("stray.rs", "")]);
    assert_eq!(violations(&files), ["stray.rs is in no layer: name its module in lib.rs's list"]);
}
