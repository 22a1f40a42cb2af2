//! # trailwarden-query
//!
//! KQL and SQL over the ledger: DataFusion over the sealed Parquet segments plus the unsealed WAL
//! tail, with the native `events` table and the Log Analytics tables people already query
//! (`AzureDiagnostics`, `AKSAudit`, …) as views. KQL has its own parser and is lowered to
//! DataFusion logical plans. See ARCHITECTURE.md ("Query") and docs/TABLES.md.
#![warn(missing_docs)]

pub mod engine;
mod error;
mod fmt;
pub mod kql;
pub use trailwarden_kql::json;
pub mod dictcount;
mod parse_op;
pub mod prune;
pub mod render;
pub mod rows;
pub mod series;
pub mod tables;
mod text;
pub mod types;
pub mod udf;

pub use engine::{Engine, QueryOptions, QueryOutput, RemoteSegments};
pub use error::{Position, QueryError};
pub use trailwarden_kql::KqlError;
pub use types::KType;
