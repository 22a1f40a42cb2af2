//! The KQL front end (lexer, parser, AST: the `trailwarden-kql` crate) and the lowering of its
//! AST to DataFusion logical plans (no translation to SQL text).

pub use trailwarden_kql::{ast, lexer, parse, parser};
pub mod lower;
