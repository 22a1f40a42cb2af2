//! The KQL front end's error type.

use std::fmt;

/// Where in the query text something is, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// The line's text.
    pub text: String,
}

impl Position {
    /// The position of byte `offset` in `query`.
    pub fn of(query: &str, offset: usize) -> Position {
        let offset = offset.min(query.len());
        let before = &query[..floor_boundary(query, offset)];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        let line_end = query[line_start..]
            .find('\n')
            .map_or(query.len(), |i| line_start + i);
        Position {
            line,
            column,
            text: query[line_start..line_end]
                .trim_end_matches('\r')
                .to_string(),
        }
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}:\n  {}\n  {}^",
            self.line,
            self.column,
            self.text,
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

/// A query that does not parse, or parses to something trailwarden does not implement.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KqlError {
    /// The query text is not valid KQL.
    #[error("syntax error at {pos}\nexpected {expected}")]
    Syntax {
        /// Where.
        pos: Position,
        /// What was expected there.
        expected: String,
    },
    /// The query is valid but uses something trailwarden does not implement.
    #[error("unsupported KQL feature `{feature}` at {pos}\n{hint}")]
    Unsupported {
        /// The feature's name.
        feature: String,
        /// Where.
        pos: Position,
        /// What to use instead, if anything.
        hint: String,
    },
    /// The query is nested too deeply or holds too many operators to be planned safely.
    #[error("the query is too complex at {pos}\nit is {what}")]
    TooComplex {
        /// Where the limit was reached.
        pos: Position,
        /// Which limit.
        what: String,
    },
}

impl KqlError {
    /// A syntax error at byte `offset` of `query`.
    pub fn syntax(query: &str, offset: usize, expected: &str) -> KqlError {
        KqlError::Syntax {
            pos: Position::of(query, offset),
            expected: expected.to_string(),
        }
    }

    /// An unsupported feature at byte `offset`.
    pub fn unsupported(query: &str, offset: usize, feature: &str, hint: &str) -> KqlError {
        KqlError::Unsupported {
            feature: feature.to_string(),
            pos: Position::of(query, offset),
            hint: hint.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_under_the_column() {
        let p = Position::of("T\n| where x ==", 13);
        assert_eq!((p.line, p.column), (2, 12));
        let s = p.to_string();
        assert!(s.ends_with("\n  | where x ==\n             ^"), "{s:?}");
    }
}
