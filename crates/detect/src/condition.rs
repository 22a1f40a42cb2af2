//! The Sigma condition grammar: `and`, `or`, `not`, parentheses, search identifiers, and the
//! quantifiers `1 of PATTERN`, `any of PATTERN`, `all of PATTERN` (`them` = every search), where
//! a pattern may end in `*`. Precedence: `not` > `and` > `or`.

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// A search identifier.
    Search(String),
    /// Negation.
    Not(Box<Cond>),
    /// Conjunction.
    And(Vec<Cond>),
    /// Disjunction.
    Or(Vec<Cond>),
    /// `1 of` / `any of` (`all: false`) or `all of` over the searches a pattern names.
    Of {
        /// `all of`.
        all: bool,
        /// The pattern (`them`, `selection_*`, an exact name).
        pattern: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Pipe,
}

fn lex(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Tok>| {
        if !word.is_empty() {
            out.push(Tok::Word(std::mem::take(word)));
        }
    };
    for c in text.chars() {
        match c {
            '(' | ')' | '|' => {
                flush(&mut word, &mut out);
                out.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    _ => Tok::Pipe,
                });
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Parse a condition; the error says what was expected where.
pub fn parse(text: &str) -> Result<Cond, String> {
    let toks = lex(text);
    if toks.contains(&Tok::Pipe) {
        return Err(
            "uses the deprecated aggregation syntax (`| count() …`); write a correlation rule"
                .into(),
        );
    }
    let mut p = P {
        toks,
        i: 0,
        depth: 0,
    };
    let c = p.or()?;
    if p.i < p.toks.len() {
        return Err(format!(
            "unexpected `{}` after a complete condition",
            p.show(p.i)
        ));
    }
    Ok(c)
}

/// How deep parentheses and `not` may nest.
pub const MAX_DEPTH: usize = 64;

struct P {
    toks: Vec<Tok>,
    i: usize,
    depth: usize,
}

impl P {
    fn show(&self, i: usize) -> String {
        match self.toks.get(i) {
            Some(Tok::Word(w)) => w.clone(),
            Some(Tok::Open) => "(".into(),
            Some(Tok::Close) => ")".into(),
            Some(Tok::Pipe) => "|".into(),
            None => "end".into(),
        }
    }

    fn word_is(&self, w: &str) -> bool {
        matches!(self.toks.get(self.i), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn or(&mut self) -> Result<Cond, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} levels deep"));
        }
        let r = self.or_inner();
        self.depth -= 1;
        r
    }

    fn or_inner(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.and()?];
        while self.word_is("or") {
            self.i += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.not()?];
        while self.word_is("and") {
            self.i += 1;
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::And(parts)
        })
    }

    fn not(&mut self) -> Result<Cond, String> {
        if self.word_is("not") {
            self.i += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(format!("nested more than {MAX_DEPTH} levels deep"));
            }
            let inner = self.not();
            self.depth -= 1;
            return Ok(Cond::Not(Box::new(inner?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Cond, String> {
        match self.toks.get(self.i).cloned() {
            Some(Tok::Open) => {
                self.i += 1;
                let c = self.or()?;
                if self.toks.get(self.i) != Some(&Tok::Close) {
                    return Err(format!("expected `)` but found `{}`", self.show(self.i)));
                }
                self.i += 1;
                Ok(c)
            }
            Some(Tok::Word(w)) => {
                self.i += 1;
                let quant =
                    w == "1" || w.eq_ignore_ascii_case("any") || w.eq_ignore_ascii_case("all");
                if quant && self.word_is("of") {
                    self.i += 1;
                    return match self.toks.get(self.i).cloned() {
                        Some(Tok::Word(pattern)) => {
                            self.i += 1;
                            Ok(Cond::Of {
                                all: w.eq_ignore_ascii_case("all"),
                                pattern,
                            })
                        }
                        _ => Err(format!(
                            "expected a search name, pattern or `them` after `{w} of`, found `{}`",
                            self.show(self.i)
                        )),
                    };
                }
                if ["and", "or", "not", "of"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k))
                {
                    return Err(format!("expected a search name but found `{w}`"));
                }
                Ok(Cond::Search(w))
            }
            _ => Err(format!(
                "expected a search name, `not` or `(` but found `{}`",
                self.show(self.i)
            )),
        }
    }
}

/// The search names a quantifier pattern selects.
pub fn select<'a>(pattern: &str, names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    if pattern.eq_ignore_ascii_case("them") {
        // `them` excludes searches whose names start with `_` (Sigma spec)
        return names.filter(|n| !n.starts_with('_')).collect();
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => names.filter(|n| n.starts_with(prefix)).collect(),
        None => names.filter(|n| *n == pattern).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: &str) -> Cond {
        Cond::Search(n.into())
    }

    #[test]
    fn precedence_and_quantifiers() {
        assert_eq!(
            parse("a or b and not c"),
            Ok(Cond::Or(vec![
                s("a"),
                Cond::And(vec![s("b"), Cond::Not(Box::new(s("c")))])
            ]))
        );
        assert_eq!(
            parse(
                "selection_execve and (keywords_truncate or (keywords_dd and not keywords_filter))"
            ),
            Ok(Cond::And(vec![
                s("selection_execve"),
                Cond::Or(vec![
                    s("keywords_truncate"),
                    Cond::And(vec![
                        s("keywords_dd"),
                        Cond::Not(Box::new(s("keywords_filter")))
                    ])
                ])
            ]))
        );
        assert_eq!(
            parse("selection and not 1 of filter_optional_*"),
            Ok(Cond::And(vec![
                s("selection"),
                Cond::Not(Box::new(Cond::Of {
                    all: false,
                    pattern: "filter_optional_*".into()
                }))
            ]))
        );
        assert_eq!(
            parse("all of them"),
            Ok(Cond::Of {
                all: true,
                pattern: "them".into()
            })
        );
    }

    #[test]
    fn errors_say_what_was_expected() {
        assert!(parse("a and")
            .unwrap_err()
            .contains("expected a search name"));
        assert!(parse("(a or b").unwrap_err().contains("expected `)`"));
        assert!(parse("a b").unwrap_err().contains("unexpected `b`"));
        assert!(parse("sel | count() > 5")
            .unwrap_err()
            .contains("aggregation"));
    }

    #[test]
    fn patterns_select_searches() {
        let names = ["selection_a", "selection_b", "filter", "_private"];
        assert_eq!(
            select("selection_*", names.iter().copied()),
            vec!["selection_a", "selection_b"]
        );
        assert_eq!(select("them", names.iter().copied()).len(), 3);
        assert_eq!(select("filter", names.iter().copied()), vec!["filter"]);
    }
}
