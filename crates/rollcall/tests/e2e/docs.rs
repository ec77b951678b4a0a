//! The documents hold together: every document the code and the documents
//! name exists, and the README's examples name what `rollcall up` runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file under `dir` with one of `endings`, skipping `target`.
fn files(dir: &Path, endings: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                files(&path, endings, out);
            }
        } else if endings.iter().any(|e| name.ends_with(e)) {
            out.push(path);
        }
    }
}

#[test]
fn every_markdown_document_named_exists() {
    let root = root();
    let mut sources = Vec::new();
    files(&root, &[".rs", ".md", ".html", ".sh"], &mut sources);
    let mut missing = Vec::new();
    for source in &sources {
        let text = std::fs::read_to_string(source).unwrap();
        for (at, _) in text.match_indices(".md") {
            // The path-like word that ends here: `docs/PROTOCOL.md`, `SECURITY.md`.
            let start = text[..at]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || "/_-.".contains(c)))
                .map_or(0, |i| i + 1);
            let name = &text[start..at + 3];
            let upper = name
                .rsplit('/')
                .next()
                .is_some_and(|f| f.chars().next().is_some_and(|c| c.is_ascii_uppercase()));
            // Documents of this repository are named in capitals
            // (`README.md`, `docs/PROTOCOL.md`); `../shared/…` is not ours.
            if !upper || name.starts_with("..") || name.contains("shared/") {
                continue;
            }
            let here = source.parent().unwrap().join(name);
            if !root.join(name).exists() && !here.exists() {
                missing.push(format!("{} names {name}", source.display()));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn the_readme_digs_for_the_name_up_registers() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let name = rollcall_grades_name().to_ascii_lowercase();
    let digs: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("dig ") && l.contains(".service.rollcall"))
        .collect();
    assert!(!digs.is_empty());
    for line in digs {
        assert!(
            line.contains(&format!("{name}.service.rollcall"))
                || line.contains(&format!("_{name}._tcp")),
            "{line}"
        );
    }
}

/// The name `rollcall up` registers the grading service under.
fn rollcall_grades_name() -> &'static str {
    rollcall_proto::names::well_known::GRADING_SERVICE
}

/// ARCHITECTURE.md is a map: short, and every path it names exists. A path
/// (a word in backticks with a `/` or a file ending) is looked up from the
/// workspace root and, in a crate's section (`### \`rollcall-…\``), from that
/// crate's folder; elsewhere from any crate's folder.
#[test]
fn the_architecture_map_is_short_and_every_path_in_it_exists() {
    let root = root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let lines = text.lines().count();
    assert!(
        lines <= 200,
        "ARCHITECTURE.md has {lines} lines; a map fits in 200"
    );
    let crates: Vec<String> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let endings = [".rs", ".md", ".toml", ".sh", ".html", ".css", ".json"];
    let mut section: Vec<String> = crates.clone();
    let mut fenced = false;
    let mut missing = Vec::new();
    let mut checked = 0;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if line.starts_with("## ") {
            section = crates.clone();
        }
        if let Some(heading) = line.strip_prefix("### ") {
            section = heading
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|c| crates.iter().any(|k| k == c))
                .map(str::to_owned)
                .collect();
        }
        for word in line.split('`').skip(1).step_by(2) {
            let pathlike = word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_-.".contains(c))
                && !word.starts_with('/')
                && (word.contains('/') || endings.iter().any(|e| word.ends_with(e)));
            if !pathlike {
                continue;
            }
            checked += 1;
            let found = root.join(word).exists()
                || section
                    .iter()
                    .any(|c| root.join("crates").join(c).join(word).exists());
            if !found {
                missing.push(format!("{word} (in: {line})"));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} paths found: is the parsing right?"
    );
    assert!(missing.is_empty(), "{missing:#?}");
}

/// Every crate `krate` depends on for its build (not its tests), as Cargo
/// resolves it: `cargo tree`'s names.
fn dependencies(krate: &str) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--package",
            krate,
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The layers ARCHITECTURE.md draws hold in Cargo, not by review: the core
/// has no runtime, no clock, no I/O crate anywhere below it; the registry
/// does not depend on the SDK; the real-process helpers on no service.
#[test]
fn the_layers_the_map_draws_hold_in_cargo() {
    let catalog = dependencies("rollcall-catalog");
    assert!(catalog.iter().any(|d| d == "rollcall-proto"), "{catalog:?}");
    for io in [
        "tokio", "axum", "hyper", "reqwest", "rusqlite", "mio", "socket2",
    ] {
        assert!(
            !catalog.iter().any(|d| d == io),
            "rollcall-catalog pulls in {io}: {catalog:?}"
        );
    }
    let registry = dependencies("rollcall-registry");
    assert!(registry.iter().any(|d| d == "rollcall-catalog"));
    assert!(
        !registry.iter().any(|d| d == "rollcall-sdk"),
        "{registry:?}"
    );
    let testproc = dependencies("rollcall-testproc");
    assert!(
        !testproc.iter().any(|d| d.starts_with("rollcall-")),
        "{testproc:?}"
    );
}
