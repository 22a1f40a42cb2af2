//! # trailwarden-detect
//!
//! A Sigma engine written for trailwarden: rules and rule collections in YAML, log-source
//! matching, detection maps and lists, the value modifiers, wildcards with escaping, null, the
//! full condition grammar, and a field-mapping layer for the names SigmaHQ's Kubernetes rules use.
//! Rules are compiled once: wildcard values become equality, prefix, suffix or substring tests,
//! and a regex is built at load time only when a pattern needs one, never per event.
#![warn(missing_docs)]

pub mod condition;
pub mod correlation;
pub mod doc;
pub mod engine;
mod error;
pub mod extract;
pub mod matcher;
pub mod placeholders;
pub mod rule;

pub use doc::{Doc, FlatDoc, JsonDoc, Val, Vals};
pub use engine::{Detection, Engine};
pub use error::DetectError;
pub use rule::{load_file, load_str, LogSource, Rule};

use std::path::Path;

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));
}

/// The built-in rule pack compiled into the binary (`rules/` of the source tree): the rules and
/// the files that did not load (none, in a tested build).
pub fn builtin_rules() -> (Vec<Rule>, Vec<DetectError>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (path, yaml) in builtin::BUILTIN {
        match load_str(yaml, &format!("builtin:{path}")) {
            Ok(r) => rules.extend(r),
            Err(e) => errors.push(e),
        }
    }
    (rules, errors)
}

/// The built-in pack's files: (path under `rules/`, text). Scheduled query rules
/// (`rules/scheduled/`) are among them; [`rule::is_scheduled`] tells them apart.
pub fn builtin_texts() -> &'static [(&'static str, &'static str)] {
    builtin::BUILTIN
}

/// How many files the built-in pack has.
pub fn builtin_files() -> usize {
    builtin::BUILTIN.len()
}

/// Load rules from files and directories (each directory searched like [`load_dir`]). Files
/// that do not load are returned beside the rules; the others still load.
pub fn load_paths(paths: &[std::path::PathBuf]) -> (Vec<Rule>, Vec<DetectError>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            let (r, e) = load_dir(p);
            rules.extend(r);
            errors.extend(e);
        } else {
            match load_file(p) {
                Ok(r) => rules.extend(r),
                Err(e) => errors.push(e),
            }
        }
    }
    (rules, errors)
}

/// Load every `.yml` / `.yaml` rule under `dir` (recursively, in path order). Files that do not
/// load are returned beside the rules, each with its error; the others still load.
pub fn load_dir(dir: &Path) -> (Vec<Rule>, Vec<DetectError>) {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut errors = Vec::new();
    while let Some(d) = stack.pop() {
        match std::fs::read_dir(&d) {
            Ok(rd) => {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                        files.push(p);
                    }
                }
            }
            Err(e) => errors.push(DetectError::Io { path: d, source: e }),
        }
    }
    files.sort();
    let mut rules = Vec::new();
    for f in files {
        match load_file(&f) {
            Ok(r) => rules.extend(r),
            Err(e) => errors.push(e),
        }
    }
    (rules, errors)
}
