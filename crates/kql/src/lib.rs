//! # trailwarden-kql
//!
//! The KQL front end, without the engine: lexer, parser (to an AST with byte offsets), errors that
//! point at line and column, and the JSON-text walker behind KQL `dynamic` values. Lowering the
//! AST to DataFusion plans is `trailwarden-query`'s job; keeping this crate free of DataFusion lets
//! the parser be fuzzed and reused (the detection rules' KQL, the server's validation) cheaply.
#![warn(missing_docs)]

pub mod ast;
mod error;
pub mod json;
pub mod lexer;
pub mod parser;

pub use error::{KqlError, Position};
pub use parser::parse;

/// A KQL datetime text: RFC 3339 and the shapes ingest accepts, plus a date alone
/// (`2026-01-06`, midnight UTC) and minutes without seconds (`2026-01-06 10:47`).
pub fn parse_datetime(text: &str) -> Option<trailwarden_model::Timestamp> {
    let t = text.trim();
    if let Ok(ts) = trailwarden_model::Timestamp::parse(t) {
        return Some(ts);
    }
    let b = t.as_bytes();
    let date_only = b.len() == 10 && b[4] == b'-' && b[7] == b'-';
    if date_only {
        return trailwarden_model::Timestamp::parse(&format!("{t}T00:00:00Z")).ok();
    }
    if b.len() >= 16
        && t.is_char_boundary(16)
        && matches!(b[10], b'T' | b' ')
        && b[13] == b':'
        && (b.len() == 16 || !b[16].is_ascii_digit() && b[16] != b':')
    {
        return trailwarden_model::Timestamp::parse(&format!("{}:00{}", &t[..16], &t[16..])).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_with_a_multibyte_character_after_the_minutes_does_not_panic() {
        // found by the kql fuzz target: "2026-01-06 10:4" followed by a two-byte character
        assert_eq!(parse_datetime("2026-01-06 10:4\u{e9}"), None);
        assert_eq!(parse_datetime("2026-01-06 10:47\u{e9}"), None);
        assert_eq!(
            parse_datetime("2026-01-06 10:47").map(|t| t.to_string()),
            Some("2026-01-06T10:47:00Z".to_string())
        );
        assert_eq!(
            parse_datetime("2026-01-06").map(|t| t.to_string()),
            Some("2026-01-06T00:00:00Z".to_string())
        );
    }
}
