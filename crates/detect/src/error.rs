//! The detection crate's error type.

use std::path::PathBuf;

/// Errors loading or compiling Sigma rules.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A rule file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A rule file is not valid YAML.
    #[error("{path}: not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A rule is valid YAML but not a valid Sigma rule.
    #[error("{path}: {message}")]
    Invalid {
        /// The file (and document, when the file holds several).
        path: String,
        /// What is wrong, naming the key.
        message: String,
    },
}
