//! Errors of the parse crate.
//!
//! Record-level problems (a malformed line, an oversized record) are *not* errors: they become
//! quarantined records and the input continues. [`ParseError`] is for what stops an input
//! altogether (it cannot be opened or read) or what the sink refused.

/// An input could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading (or decompressing) failed part-way.
    #[error("cannot read {source_name}: {source}")]
    Read {
        /// The source label.
        source_name: String,
        /// The OS or decoder error.
        source: std::io::Error,
    },
    /// The record sink refused a record (e.g. the ledger could not append it).
    #[error("could not store record from {source_name} ({location}): {message}")]
    Sink {
        /// The source label.
        source_name: String,
        /// Where the record was in the input.
        location: String,
        /// The sink's error, in words.
        message: String,
    },
}

/// Why one record could not be parsed as a given format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The record does not have the shape of this format at all (try another).
    #[error("not {0}")]
    NotThisFormat(&'static str),
    /// The record has this format's shape but is invalid.
    #[error("{0}")]
    Invalid(String),
}

impl FormatError {
    /// Convenience constructor for [`FormatError::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> FormatError {
        FormatError::Invalid(msg.into())
    }
}
