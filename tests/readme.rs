//! The README's code, checked so that it cannot rot and reads cleanly.
//!
//! Every Rust block is compiled: a complete program is a doctest of the
//! root package (`src/lib.rs` includes the README), and a `rust,ignore`
//! block is an excerpt that must appear word for word in a file of
//! `examples/` or `tests/`, which `cargo test` builds. No block carries
//! rustdoc's hidden `# ` lines, which Markdown would show as code. The TOML
//! blocks name a version and features that the crate has.

use std::fs;
use std::path::{Path, PathBuf};

/// One fenced block of the README.
struct Block {
    /// The info string after the opening fence, such as `rust,no_run`.
    info: String,
    /// The line the opening fence is on, counted from 1.
    line: usize,
    body: String,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme_blocks() -> Vec<Block> {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in readme.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_owned(),
                    line: index + 1,
                    body: String::new(),
                });
            }
            (Some(_), Some("")) => blocks.extend(open.take()),
            (Some(block), _) => {
                block.body.push_str(line);
                block.body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "the README ends inside a code block");
    blocks
}

fn is_rust(block: &Block) -> bool {
    block.info == "rust" || block.info.starts_with("rust,")
}

/// Rustdoc hides a line that is `#` alone or starts with `# ` (after
/// indentation); `#[attr]` and `#!` are code.
fn is_hidden_line(line: &str) -> bool {
    let line = line.trim_start();
    line == "#" || line.starts_with("# ")
}

fn rust_sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn rust_blocks_have_no_hidden_lines() {
    let blocks = readme_blocks();
    assert!(blocks.iter().filter(|b| is_rust(b)).count() > 10);
    for block in blocks.iter().filter(|b| is_rust(b)) {
        for (offset, line) in block.body.lines().enumerate() {
            assert!(
                !is_hidden_line(line),
                "README.md:{}: `{line}` is a doctest-only line, shown as code on GitHub; \
                 make the block a complete program, or an excerpt of a compiled file",
                block.line + 1 + offset,
            );
        }
    }
}

#[test]
fn ignored_rust_blocks_are_excerpts_of_compiled_files() {
    let mut sources = Vec::new();
    rust_sources(&root().join("examples"), &mut sources);
    rust_sources(&root().join("tests"), &mut sources);
    let texts: Vec<(PathBuf, String)> = sources
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect();
    let excerpts: Vec<Block> = readme_blocks()
        .into_iter()
        .filter(|b| is_rust(b) && b.info.split(',').any(|word| word == "ignore"))
        .collect();
    assert!(!excerpts.is_empty());
    for block in &excerpts {
        let found = texts.iter().find(|(_, text)| text.contains(&block.body));
        assert!(
            found.is_some(),
            "README.md:{}: this `rust,ignore` block is not compiled by rustdoc, and no file \
             under examples/ or tests/ contains it word for word; copy it from the file again",
            block.line,
        );
    }
}

/// The crate's `[features]`, read from its manifest.
fn crate_features() -> Vec<String> {
    let manifest = fs::read_to_string(root().join("flexi-socket/Cargo.toml")).unwrap();
    manifest
        .lines()
        .skip_while(|line| line.trim() != "[features]")
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter_map(|line| {
            line.split_once(" = ")
                .map(|(name, _)| name.trim().to_owned())
        })
        .filter(|name| !name.starts_with('#'))
        .collect()
}

/// The strings between double quotes in `text`, in order.
fn quoted(text: &str) -> Vec<&str> {
    text.split('"').skip(1).step_by(2).collect()
}

#[test]
fn dependency_lines_name_this_version_and_existing_features() {
    let version = env!("CARGO_PKG_VERSION");
    let features = crate_features();
    assert!(features.iter().any(|f| f == "tls"), "read {features:?}");
    let mut lines = 0;
    for block in readme_blocks().iter().filter(|b| b.info == "toml") {
        for line in block.body.lines() {
            let Some(spec) = line.strip_prefix("flexi-socket = ") else {
                continue;
            };
            lines += 1;
            let spec = spec.split(" #").next().unwrap();
            let (requirement, named_features) = match spec.split_once("features = [") {
                Some((before, after)) => (quoted(before)[0], quoted(after)),
                None => (quoted(spec)[0], Vec::new()),
            };
            // A caret requirement such as "0.1" matches when its numbers
            // begin the version's.
            let matches = version
                .split('.')
                .zip(requirement.split('.'))
                .all(|(have, want)| have == want);
            assert!(
                matches && requirement.split('.').count() <= 3,
                "README.md:{}: `{requirement}` does not select version {version}",
                block.line,
            );
            for feature in named_features {
                assert!(
                    features.iter().any(|f| f == feature),
                    "README.md:{}: flexi-socket has no feature `{feature}` (it has {features:?})",
                    block.line,
                );
            }
        }
    }
    assert!(
        lines >= 3,
        "found {lines} dependency lines for flexi-socket"
    );
}
