//! The KQL front end: lexer, parser, and lowering to DataFusion logical plans (no translation
//! to SQL text).

pub mod ast;
pub mod lexer;
pub mod parser;

pub use parser::parse;
pub mod lower;
