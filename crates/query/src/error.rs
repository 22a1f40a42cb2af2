//! The query crate's error type.

use trailwarden_kql::KqlError;
pub use trailwarden_kql::Position;

/// Errors of the query crate.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query text is not valid KQL, or uses a feature trailwarden does not implement.
    #[error(transparent)]
    Kql(KqlError),
    /// A name, type or argument problem found while planning.
    #[error("{message} at {pos}")]
    Semantic {
        /// What is wrong.
        message: String,
        /// Where.
        pos: Position,
    },
    /// The query ran past its time limit.
    #[error("the query was stopped after {seconds} s (its time limit; raise it with --timeout)")]
    Timeout {
        /// The limit.
        seconds: f64,
    },
    /// The query needed more memory than its limit.
    #[error("the query needed more than its memory limit of {limit} bytes (raise it with --memory-limit): {detail}")]
    Memory {
        /// The limit.
        limit: usize,
        /// DataFusion's message.
        detail: String,
    },
    /// Reading the ledger failed.
    #[error("reading the ledger: {0}")]
    Ledger(#[from] trailwarden_ledger::LedgerError),
    /// DataFusion failed planning or running the query.
    #[error("{0}")]
    Engine(String),
    /// Planning needs a value from the data first (`toscalar`, the keys `bag_unpack` makes
    /// columns of, the range of an open-ended `make-series`): the engine runs the plan the lowering
    /// left for the node at this offset and plans again. Never returned to callers.
    #[error("internal: the plan needs data from the query at offset {0} first")]
    NeedsData(usize),
}

impl QueryError {
    /// A syntax error at byte `offset` of `query`.
    pub fn syntax(query: &str, offset: usize, expected: &str) -> QueryError {
        QueryError::Kql(KqlError::syntax(query, offset, expected))
    }

    /// An unsupported feature at byte `offset`.
    pub fn unsupported(query: &str, offset: usize, feature: &str, hint: &str) -> QueryError {
        QueryError::Kql(KqlError::unsupported(query, offset, feature, hint))
    }

    /// A semantic error at byte `offset`.
    pub fn semantic(query: &str, offset: usize, message: impl Into<String>) -> QueryError {
        QueryError::Semantic {
            message: message.into(),
            pos: Position::of(query, offset),
        }
    }
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        QueryError::Engine(e.to_string())
    }
}

impl From<KqlError> for QueryError {
    fn from(e: KqlError) -> Self {
        match e {
            KqlError::TooComplex { pos, what } => QueryError::Semantic {
                message: format!("the query is too complex: it is {what}"),
                pos,
            },
            e => QueryError::Kql(e),
        }
    }
}
