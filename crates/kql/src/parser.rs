//! Recursive-descent KQL parser. Errors name the line and column and what was expected there.

use crate::ast::*;
use crate::lexer::{lex, parse_timespan, Tok, Token};
use crate::KqlError;

/// Parse a KQL query.
pub fn parse(text: &str) -> Result<Query, KqlError> {
    let tokens = lex(text)?;
    let mut p = Parser {
        text,
        toks: tokens,
        i: 0,
        depth: 0,
        operators: 0,
    };
    let q = p.query()?;
    Ok(q)
}

/// Operators trailwarden knows by name but does not implement (so the error can name them).
const UNSUPPORTED_OPS: &[(&str, &str)] = &[
    ("find", "use union and where, or search"),
    ("top-hitters", "use summarize count() by … | top"),
    ("sample", "use take"),
    ("sample-distinct", "use distinct | take"),
    ("serialize", "rows are already ordered by sort"),
    ("as", "use let"),
    ("facet", "use summarize count() by … for each column"),
    ("fork", ""),
    ("partition", ""),
    ("scan", ""),
    ("reduce", ""),
    ("parse-where", "use parse and where"),
    ("parse-kv", "use parse or extract"),
    ("project-smart", ""),
    ("consume", ""),
    ("externaldata", "ingest the data, or use datatable"),
];

/// How deep parentheses, sub-queries, function arguments and unary operators may nest.
pub const MAX_DEPTH: usize = 64;
/// How many binary, unary and access operators one query may hold. Together with
/// [`MAX_DEPTH`] this bounds the height of the syntax tree, so that parsing, planning and dropping
/// a query (all recursive) cannot exhaust a thread's stack, whatever text is sent.
pub const MAX_OPERATORS: usize = 1000;

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Token>,
    i: usize,
    depth: usize,
    operators: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i.min(self.toks.len() - 1)].kind
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.i + n).min(self.toks.len() - 1)].kind
    }

    fn pos(&self) -> usize {
        self.toks[self.i.min(self.toks.len() - 1)].start
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    /// One level deeper (call [`Parser::leave`] after).
    fn enter(&mut self) -> Result<(), KqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(KqlError::TooComplex {
                pos: crate::Position::of(self.text, self.pos()),
                what: format!("nested more than {MAX_DEPTH} levels deep"),
            });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// One more operator node.
    fn operator_node(&mut self, at: usize) -> Result<(), KqlError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(KqlError::TooComplex {
                pos: crate::Position::of(self.text, at),
                what: format!(
                    "more than {MAX_OPERATORS} operators (a long list of alternatives is `in (…)`)"
                ),
            });
        }
        Ok(())
    }

    fn err<T>(&self, expected: &str) -> Result<T, KqlError> {
        Err(KqlError::syntax(self.text, self.pos(), expected))
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Sym(x) if *x == s)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if self.is_sym(s) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), KqlError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            self.err(&format!("'{s}'"))
        }
    }

    fn is_ident(&self) -> bool {
        matches!(self.peek(), Tok::Ident(_))
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x == w)
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.is_word(w) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<(), KqlError> {
        if self.eat_word(w) {
            Ok(())
        } else {
            self.err(&format!("'{w}'"))
        }
    }

    fn ident(&mut self, what: &str) -> Result<(String, usize), KqlError> {
        let at = self.pos();
        match self.peek().clone() {
            Tok::Ident(w) => {
                self.bump();
                Ok((w, at))
            }
            _ => self.err(what),
        }
    }

    fn query(&mut self) -> Result<Query, KqlError> {
        let mut statements = Vec::new();
        loop {
            while self.eat_sym(";") {}
            if matches!(self.peek(), Tok::Eof) {
                break;
            }
            statements.push(self.statement()?);
            if !self.eat_sym(";") {
                if matches!(self.peek(), Tok::Eof) {
                    break;
                }
                // two tabular expressions without ';' between them (Log Analytics runs the one
                // under the cursor; here each must be its own statement)
                return self.err("';' or the end of the query (put ';' between statements)");
            }
        }
        if statements.is_empty() {
            return self.err("a query");
        }
        if !statements
            .iter()
            .any(|s| matches!(s, Statement::Tabular(_)))
        {
            return self.err("a tabular expression after the let statements");
        }
        Ok(Query { statements })
    }

    fn statement(&mut self) -> Result<Statement, KqlError> {
        if self.is_word("let") {
            let at = self.pos();
            self.bump();
            let (name, _) = self.ident("a name after let")?;
            self.expect_sym("=")?;
            let value = if self.starts_function() {
                LetValue::Function(self.function()?)
            } else if self.starts_tabular() {
                LetValue::Tabular(self.tabular()?)
            } else {
                LetValue::Scalar(self.expr()?)
            };
            return Ok(Statement::Let { name, value, at });
        }
        if self.is_word("set") || self.is_word("declare") || self.is_word("alias") {
            let at = self.pos();
            let w = match self.peek() {
                Tok::Ident(w) => w.clone(),
                _ => String::new(),
            };
            return Err(KqlError::unsupported(
                self.text,
                at,
                &format!("{w} statement"),
                "",
            ));
        }
        Ok(Statement::Tabular(self.tabular()?))
    }

    /// Whether a function definition starts here: `(` then `)` `{` or `name :`.
    fn starts_function(&self) -> bool {
        self.is_sym("(")
            && match self.peek_at(1) {
                Tok::Sym(")") => matches!(self.peek_at(2), Tok::Sym("{")),
                Tok::Ident(_) => matches!(self.peek_at(2), Tok::Sym(":")),
                _ => false,
            }
    }

    /// `(params) { [let …;]* body }`.
    fn function(&mut self) -> Result<Function, KqlError> {
        self.expect_sym("(")?;
        let mut params = Vec::new();
        let mut tables = Vec::new();
        if !self.is_sym(")") {
            loop {
                let (name, _) = self.ident("a parameter name")?;
                self.expect_sym(":")?;
                if self.eat_sym("(") {
                    // a tabular parameter: its schema is not checked, any columns go
                    let mut depth = 1usize;
                    while depth > 0 {
                        match self.bump() {
                            Tok::Sym("(") => depth += 1,
                            Tok::Sym(")") => depth -= 1,
                            Tok::Eof => return self.err("')' closing the table's schema"),
                            _ => {}
                        }
                    }
                    tables.push(name.clone());
                    params.push(Param::Tabular(name));
                } else {
                    let (ty, _) = self.ident("a parameter type (string, long, datetime, …)")?;
                    let default = if self.eat_sym("=") {
                        Some(self.expr()?)
                    } else {
                        None
                    };
                    params.push(Param::Scalar { name, ty, default });
                }
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        self.expect_sym(")")?;
        self.expect_sym("{")?;
        let mut lets = Vec::new();
        while self.is_word("let") {
            lets.push(self.statement()?);
            self.expect_sym(";")?;
        }
        let tabular =
            self.starts_tabular() || matches!(self.peek(), Tok::Ident(w) if tables.contains(w));
        let body = if tabular {
            FnBody::Tabular(self.tabular()?)
        } else {
            FnBody::Scalar(self.expr()?)
        };
        self.eat_sym(";");
        self.expect_sym("}")?;
        Ok(Function { params, lets, body })
    }

    /// Whether a tabular expression starts here (for `let x = …`).
    fn starts_tabular(&self) -> bool {
        match self.peek() {
            Tok::Ident(w) if w == "union" || w == "print" || w == "search" => true,
            Tok::Ident(w) if w == "materialize" || w == "datatable" => {
                matches!(self.peek_at(1), Tok::Sym("("))
            }
            Tok::Ident(w) if w == "range" => {
                matches!(self.peek_at(1), Tok::Ident(_))
                    && matches!(self.peek_at(2), Tok::Ident(f) if f == "from")
            }
            Tok::Ident(w) if matches!(self.peek_at(1), Tok::Sym("|")) => !w.is_empty(),
            Tok::Ident(_) => {
                // `let T = Table;` — a bare name is tabular unless it is called or indexed
                matches!(self.peek_at(1), Tok::Sym(";") | Tok::Sym("}") | Tok::Eof)
                    && self.looks_like_table_name()
            }
            Tok::Sym("(") => {
                // ( Table | … )
                let mut depth = 0usize;
                let mut k = self.i;
                while k < self.toks.len() {
                    match &self.toks[k].kind {
                        Tok::Sym("(") => depth += 1,
                        Tok::Sym(")") => {
                            depth -= 1;
                            if depth == 0 {
                                return false;
                            }
                        }
                        Tok::Sym("|") if depth == 1 => return true,
                        Tok::Eof => return false,
                        _ => {}
                    }
                    k += 1;
                }
                false
            }
            _ => false,
        }
    }

    /// A bare name in `let x = Name;` is a table when it starts with an upper-case letter.
    fn looks_like_table_name(&self) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
    }

    fn tabular(&mut self) -> Result<Tabular, KqlError> {
        self.enter()?;
        let t = self.tabular_inner();
        self.leave();
        t
    }

    fn tabular_inner(&mut self) -> Result<Tabular, KqlError> {
        let at = self.pos();
        let source = self.source()?;
        let mut ops = Vec::new();
        while self.eat_sym("|") {
            ops.push(self.operator()?);
        }
        Ok(Tabular { source, ops, at })
    }

    fn source(&mut self) -> Result<Source, KqlError> {
        let at = self.pos();
        if self.eat_sym("(") {
            let t = self.tabular()?;
            self.expect_sym(")")?;
            return Ok(Source::Paren(Box::new(t)));
        }
        if self.is_word("union") {
            self.bump();
            return Ok(Source::Union(self.union_args()?, at));
        }
        if self.is_word("print") {
            self.bump();
            return Ok(Source::Print(self.named_list()?, at));
        }
        if self.is_word("search") {
            self.bump();
            let mut tables = Vec::new();
            if self.eat_word("in") {
                self.expect_sym("(")?;
                loop {
                    tables.push(self.ident("a table name")?);
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                self.expect_sym(")")?;
            }
            let pred = self.expr()?;
            return Ok(Source::Search { tables, pred, at });
        }
        if self.starts_tabular() && self.is_word("datatable") {
            self.bump();
            let cols = self.schema()?;
            self.expect_sym("[")?;
            let mut values = Vec::new();
            while !self.is_sym("]") {
                values.push(self.expr()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
            self.expect_sym("]")?;
            return Ok(Source::Datatable { cols, values, at });
        }
        if self.starts_tabular() && self.is_word("range") {
            self.bump();
            let (name, _) = self.ident("a column name")?;
            self.expect_word("from")?;
            let from = self.expr()?;
            self.expect_word("to")?;
            let to = self.expr()?;
            self.expect_word("step")?;
            let step = self.expr()?;
            return Ok(Source::Range {
                name,
                from,
                to,
                step,
                at,
            });
        }
        let (name, at) =
            self.ident("a table name, '(', union, print, datatable, range or search")?;
        if let Some((_, hint)) = UNSUPPORTED_OPS.iter().find(|(n, _)| *n == name) {
            if matches!(self.peek(), Tok::Sym("(")) {
                return Err(KqlError::unsupported(self.text, at, &name, hint));
            }
        }
        if self.eat_sym("(") {
            if name == "materialize" {
                let t = self.tabular()?;
                self.expect_sym(")")?;
                return Ok(Source::Paren(Box::new(t)));
            }
            let args = self.exprs_to_paren()?;
            return Ok(Source::Call(name, args, at));
        }
        Ok(Source::Name(name, at))
    }

    /// `(name:type, …)`.
    fn schema(&mut self) -> Result<Vec<(String, String)>, KqlError> {
        self.expect_sym("(")?;
        let mut cols = Vec::new();
        loop {
            if self.eat_sym("*") {
                // `(*, a:long)`: every input column, then these
                cols.push(("*".to_string(), "*".to_string()));
                if !self.eat_sym(",") {
                    break;
                }
                continue;
            }
            let (n, _) = self.ident("a column name")?;
            self.expect_sym(":")?;
            let (t, _) =
                self.ident("a type (string, long, int, real, bool, datetime, timespan, dynamic)")?;
            cols.push((n, t));
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(")")?;
        Ok(cols)
    }

    fn union_args(&mut self) -> Result<Union, KqlError> {
        let (mut withsource, mut inner, mut fuzzy) = (None, false, false);
        while let (Tok::Ident(opt), Tok::Sym("=")) = (self.peek().clone(), self.peek_at(1).clone())
        {
            let at = self.pos();
            self.bump();
            self.bump();
            match opt.as_str() {
                "withsource" => withsource = Some(self.ident("a column name")?.0),
                "kind" => {
                    inner = match self.ident("inner or outer")?.0.as_str() {
                        "inner" => true,
                        "outer" => false,
                        _ => {
                            return Err(KqlError::syntax(self.text, at, "kind=inner or kind=outer"))
                        }
                    }
                }
                "isfuzzy" => {
                    fuzzy = match self.bump() {
                        Tok::Ident(b) if b == "true" => true,
                        Tok::Ident(b) if b == "false" => false,
                        _ => {
                            return Err(KqlError::syntax(
                                self.text,
                                at,
                                "isfuzzy=true or isfuzzy=false",
                            ))
                        }
                    }
                }
                _ => {
                    return Err(KqlError::unsupported(
                        self.text,
                        at,
                        &format!("union {opt}="),
                        "union takes withsource=, kind= and isfuzzy=",
                    ))
                }
            }
        }
        let mut out = Vec::new();
        loop {
            let at = self.pos();
            if self.eat_sym("(") {
                let t = self.tabular()?;
                self.expect_sym(")")?;
                out.push(t);
            } else {
                let (name, nat) = self.ident("a table or (query) to union")?;
                if name.contains('*') {
                    return Err(KqlError::unsupported(
                        self.text,
                        nat,
                        "union with wildcards",
                        "",
                    ));
                }
                out.push(Tabular {
                    source: Source::Name(name, nat),
                    ops: Vec::new(),
                    at,
                });
            }
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(Union {
            legs: out,
            withsource,
            inner,
            fuzzy,
        })
    }

    fn operator(&mut self) -> Result<Op, KqlError> {
        let (name, at) = self.ident("a tabular operator after '|'")?;
        Ok(match name.as_str() {
            "where" | "filter" => Op::Where(self.expr()?, at),
            "project" => Op::Project(self.named_list()?, at),
            "extend" => Op::Extend(self.named_list()?, at),
            "project-away" => Op::ProjectAway(self.name_list()?, at),
            "project-keep" => Op::ProjectKeep(self.name_list()?, at),
            "project-reorder" => Op::ProjectReorder(self.name_list()?, at),
            "project-rename" => {
                let mut v = Vec::new();
                loop {
                    let (new, nat) = self.ident("new column name")?;
                    self.expect_sym("=")?;
                    let (old, _) = self.ident("existing column name")?;
                    v.push((new, old, nat));
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                Op::ProjectRename(v, at)
            }
            "summarize" => {
                let aggs = if self.is_word("by") {
                    Vec::new()
                } else {
                    self.named_list()?
                };
                let by = if self.eat_word("by") {
                    self.named_list()?
                } else {
                    Vec::new()
                };
                Op::Summarize { aggs, by, at }
            }
            "top" => {
                let n = self.expr()?;
                self.expect_word("by")?;
                let key = self.sort_key()?;
                Op::Top { n, key, at }
            }
            "take" | "limit" => Op::Take(self.expr()?, at),
            "sort" | "order" => {
                self.expect_word("by")?;
                let mut keys = vec![self.sort_key()?];
                while self.eat_sym(",") {
                    keys.push(self.sort_key()?);
                }
                Op::Sort(keys, at)
            }
            "distinct" => {
                if self.eat_sym("*") {
                    Op::Distinct(Vec::new(), at)
                } else {
                    Op::Distinct(self.named_list()?, at)
                }
            }
            "count" => Op::Count(at),
            "join" => self.join(at)?,
            "union" => Op::Union(self.union_args()?, at),
            "mv-expand" => {
                let (items, index) = self.mv_items("mv-expand")?;
                if self.is_word("limit") {
                    let lat = self.pos();
                    return Err(KqlError::unsupported(
                        self.text,
                        lat,
                        "mv-expand limit",
                        "follow it with take",
                    ));
                }
                Op::MvExpand { items, index, at }
            }
            "mv-apply" => {
                let (items, index) = self.mv_items("mv-apply")?;
                self.expect_word("on")?;
                self.expect_sym("(")?;
                let mut ops = vec![self.operator()?];
                while self.eat_sym("|") {
                    ops.push(self.operator()?);
                }
                self.expect_sym(")")?;
                Op::MvApply {
                    items,
                    index,
                    ops,
                    at,
                }
            }
            "lookup" => {
                let mut inner = false;
                if self.eat_word("kind") {
                    self.expect_sym("=")?;
                    let kat = self.pos();
                    inner = match self.ident("leftouter or inner")?.0.as_str() {
                        "inner" => true,
                        "leftouter" => false,
                        _ => {
                            return Err(KqlError::syntax(
                                self.text,
                                kat,
                                "kind=leftouter or kind=inner",
                            ))
                        }
                    };
                }
                let right = self.side_table("the dimension table of lookup: a table or (query)")?;
                self.expect_word("on")?;
                let on = self.join_keys()?;
                Op::Lookup {
                    inner,
                    right,
                    on,
                    at,
                }
            }
            "getschema" => Op::GetSchema(at),
            "invoke" => {
                let (f, _) = self.ident("a function defined by let")?;
                self.expect_sym("(")?;
                Op::Invoke(f, self.exprs_to_paren()?, at)
            }
            "search" => {
                if self.is_word("in") {
                    return Err(KqlError::unsupported(
                        self.text,
                        at,
                        "search in (…) after '|'",
                        "start the query with search in (…)",
                    ));
                }
                Op::Search(self.expr()?, at)
            }
            "make-series" => self.make_series(at)?,
            "evaluate" => {
                while let (Tok::Ident(_), Tok::Sym("=")) =
                    (self.peek().clone(), self.peek_at(1).clone())
                {
                    // hint.* options change how, not what
                    self.bump();
                    self.bump();
                    self.bump();
                }
                let (plugin, _) = self.ident("a plugin name (bag_unpack, …)")?;
                self.expect_sym("(")?;
                let args = self.exprs_to_paren()?;
                let schema = if self.eat_sym(":") {
                    Some(self.schema()?)
                } else {
                    None
                };
                Op::Evaluate {
                    plugin,
                    args,
                    schema,
                    at,
                }
            }
            "top-nested" => {
                let mut levels = vec![self.nested_level()?];
                while self.eat_sym(",") {
                    self.expect_word("top-nested")?;
                    levels.push(self.nested_level()?);
                }
                Op::TopNested(levels, at)
            }
            "parse" => {
                if self.is_word("kind") {
                    let kat = self.pos();
                    self.bump();
                    self.expect_sym("=")?;
                    let (k, _) = self.ident("a parse kind")?;
                    if k != "simple" {
                        return Err(KqlError::unsupported(
                            self.text,
                            kat,
                            &format!("parse kind={k}"),
                            "only the simple pattern is supported",
                        ));
                    }
                }
                let expr = self.expr()?;
                self.expect_word("with")?;
                Op::Parse {
                    expr,
                    pattern: self.parse_pattern()?,
                    at,
                }
            }
            "render" => {
                let (chart, _) = self.ident("a visualization (timechart, barchart, …)")?;
                let mut props = Vec::new();
                if self.eat_word("with") {
                    self.expect_sym("(")?;
                    loop {
                        let (k, _) = self.ident("a render property")?;
                        self.expect_sym("=")?;
                        let v_at = self.pos();
                        let v = match self.bump() {
                            Tok::Str(s) | Tok::Ident(s) => s,
                            Tok::Int(n) => n.to_string(),
                            Tok::Real(r) => r.to_string(),
                            _ => return Err(KqlError::syntax(self.text, v_at, "a property value")),
                        };
                        props.push((k, v));
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.expect_sym(")")?;
                }
                Op::Render { chart, props, at }
            }
            other => {
                if let Some((n, hint)) = UNSUPPORTED_OPS.iter().find(|(n, _)| *n == other) {
                    return Err(KqlError::unsupported(self.text, at, n, hint));
                }
                return Err(KqlError::syntax(
                    self.text,
                    at,
                    "a tabular operator (where, project, extend, summarize, top, take, sort, distinct, count, join, union, mv-expand, parse, render, …)",
                ));
            }
        })
    }

    fn join(&mut self, at: usize) -> Result<Op, KqlError> {
        let mut kind = JoinKind::InnerUnique;
        while let Tok::Ident(w) = self.peek().clone() {
            if w == "kind" {
                self.bump();
                self.expect_sym("=")?;
                let kat = self.pos();
                let (k, _) = self.ident("a join kind")?;
                kind = match k.as_str() {
                    "innerunique" => JoinKind::InnerUnique,
                    "inner" => JoinKind::Inner,
                    "leftouter" => JoinKind::LeftOuter,
                    "leftanti" | "anti" | "leftantisemi" => JoinKind::LeftAnti,
                    "leftsemi" => JoinKind::LeftSemi,
                    "rightouter" => JoinKind::RightOuter,
                    "fullouter" => JoinKind::FullOuter,
                    "rightanti" | "rightantisemi" => JoinKind::RightAnti,
                    "rightsemi" => JoinKind::RightSemi,
                    _ => return Err(KqlError::syntax(self.text, kat, "a join kind (inner, innerunique, leftouter, leftanti, leftsemi, rightouter, rightanti, rightsemi, fullouter)")),
                };
            } else if w.starts_with("hint") {
                let hat = self.pos();
                return Err(KqlError::unsupported(
                    self.text,
                    hat,
                    "join hints",
                    "remove the hint",
                ));
            } else {
                break;
            }
        }
        let right = self.side_table("the right side of the join: a table or (query)")?;
        self.expect_word("on")?;
        let on = self.join_keys()?;
        Ok(Op::Join {
            kind,
            right,
            on,
            at,
        })
    }

    /// `(query)` or a table name.
    fn side_table(&mut self, what: &str) -> Result<Tabular, KqlError> {
        if self.eat_sym("(") {
            let t = self.tabular()?;
            self.expect_sym(")")?;
            return Ok(t);
        }
        let rat = self.pos();
        let (name, nat) = self.ident(what)?;
        Ok(Tabular {
            source: Source::Name(name, nat),
            ops: Vec::new(),
            at: rat,
        })
    }

    /// `[name =] expr [to typeof(t)], …` and the options before them.
    fn mv_items(&mut self, op: &str) -> Result<(Vec<MvItem>, Option<String>), KqlError> {
        let (mut bag_array, mut index) = (false, None);
        loop {
            let oat = self.pos();
            if self.eat_word("bagexpansion") {
                self.expect_sym("=")?;
                bag_array = match self.ident("bag or array")?.0.as_str() {
                    "array" => true,
                    "bag" => false,
                    _ => {
                        return Err(KqlError::syntax(
                            self.text,
                            oat,
                            "bagexpansion=bag or bagexpansion=array",
                        ))
                    }
                };
            } else if self.eat_word("with_itemindex") {
                self.expect_sym("=")?;
                index = Some(self.ident("a column name")?.0);
            } else if self.is_word("kind") && matches!(self.peek_at(1), Tok::Sym("=")) {
                return Err(KqlError::unsupported(
                    self.text,
                    oat,
                    &format!("{op} kind="),
                    "use bagexpansion=",
                ));
            } else {
                break;
            }
        }
        let mut items = Vec::new();
        loop {
            let name = self.maybe_name();
            let expr = self.expr()?;
            let to = if self.eat_word("to") {
                self.expect_word("typeof")?;
                self.expect_sym("(")?;
                let (t, _) = self.ident("a type name")?;
                self.expect_sym(")")?;
                Some(t)
            } else {
                None
            };
            items.push(MvItem {
                bag_array,
                name,
                expr,
                to,
            });
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok((items, index))
    }

    /// `make-series [name =] agg [default = v], … on axis [from a] [to b] step s [by …]`
    /// (also `on axis in range(a, b, s)`).
    fn make_series(&mut self, at: usize) -> Result<Op, KqlError> {
        let mut aggs = Vec::new();
        loop {
            let name = self.maybe_name();
            let expr = self.expr()?;
            let default = if self.eat_word("default") {
                self.expect_sym("=")?;
                Some(self.expr()?)
            } else {
                None
            };
            aggs.push(SeriesAgg {
                agg: NamedExpr {
                    name,
                    expr,
                    tuple: Vec::new(),
                },
                default,
            });
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_word("on")?;
        let on = self.additive()?; // not `expr`: `on t in range(…)` is not an `in` test
        let (mut from, mut to) = (None, None);
        let step;
        if self.eat_word("in") {
            self.expect_word("range")?;
            self.expect_sym("(")?;
            from = Some(self.expr()?);
            self.expect_sym(",")?;
            to = Some(self.expr()?);
            self.expect_sym(",")?;
            step = self.expr()?;
            self.expect_sym(")")?;
        } else {
            if self.eat_word("from") {
                from = Some(self.expr()?);
            }
            if self.eat_word("to") {
                to = Some(self.expr()?);
            }
            self.expect_word("step")?;
            step = self.expr()?;
        }
        let by = if self.eat_word("by") {
            self.named_list()?
        } else {
            Vec::new()
        };
        Ok(Op::MakeSeries {
            aggs,
            on,
            from,
            to,
            step,
            by,
            at,
        })
    }

    /// `[N] of [name =] col [with others = v] by [name =] agg [asc|desc]`.
    fn nested_level(&mut self) -> Result<NestedLevel, KqlError> {
        let n = if self.is_word("of") {
            None
        } else {
            Some(self.expr()?)
        };
        self.expect_word("of")?;
        let name = self.maybe_name();
        let of = NamedExpr {
            name,
            expr: self.expr()?,
            tuple: Vec::new(),
        };
        let others = if self.eat_word("with") {
            self.expect_word("others")?;
            self.expect_sym("=")?;
            Some(self.expr()?)
        } else {
            None
        };
        self.expect_word("by")?;
        let name = self.maybe_name();
        let by = NamedExpr {
            name,
            expr: self.expr()?,
            tuple: Vec::new(),
        };
        let desc = if self.eat_word("asc") {
            false
        } else {
            self.eat_word("desc");
            true
        };
        Ok(NestedLevel {
            n,
            of,
            others,
            by,
            desc,
        })
    }

    /// Join keys: `a, $left.b == $right.c, …`.
    fn join_keys(&mut self) -> Result<Vec<JoinOn>, KqlError> {
        let mut on = Vec::new();
        loop {
            let kat = self.pos();
            match self.peek().clone() {
                Tok::Dollar(_) => {
                    let l = self.side_ref()?;
                    self.expect_sym("==")?;
                    let r = self.side_ref()?;
                    let (left, right) = match (l, r) {
                        ((ls, lc), (rs, rc)) if ls == "left" && rs == "right" => (lc, rc),
                        ((ls, lc), (rs, rc)) if ls == "right" && rs == "left" => (rc, lc),
                        _ => {
                            return Err(KqlError::syntax(
                                self.text,
                                kat,
                                "$left.column == $right.column",
                            ))
                        }
                    };
                    on.push(JoinOn { left, right });
                }
                Tok::Ident(_) => {
                    let (c, _) = self.ident("a column")?;
                    on.push(JoinOn {
                        left: c.clone(),
                        right: c,
                    });
                }
                _ => return self.err("a join key: column or $left.column == $right.column"),
            }
            if !self.eat_sym(",") && !self.eat_word("and") {
                break;
            }
        }
        Ok(on)
    }

    fn side_ref(&mut self) -> Result<(String, String), KqlError> {
        let side = match self.bump() {
            Tok::Dollar(s) if s == "left" || s == "right" => s,
            _ => return self.err("$left or $right"),
        };
        self.expect_sym(".")?;
        let (c, _) = self.ident("a column after $left. / $right.")?;
        Ok((side, c))
    }

    fn parse_pattern(&mut self) -> Result<Vec<ParsePart>, KqlError> {
        let mut parts = Vec::new();
        loop {
            match self.peek().clone() {
                Tok::Sym("*") => {
                    self.bump();
                    parts.push(ParsePart::Any);
                }
                Tok::Str(s) => {
                    self.bump();
                    parts.push(ParsePart::Lit(s));
                }
                Tok::Ident(c) => {
                    self.bump();
                    let ty = if self.eat_sym(":") {
                        Some(
                            self.ident("a type (string, long, int, real, datetime, …)")?
                                .0,
                        )
                    } else {
                        None
                    };
                    parts.push(ParsePart::Col(c, ty));
                }
                _ => break,
            }
        }
        if parts.is_empty() {
            return self.err("a parse pattern (\"literal\", column[:type], *)");
        }
        Ok(parts)
    }

    fn sort_key(&mut self) -> Result<SortKey, KqlError> {
        let expr = self.expr()?;
        let mut desc = true;
        if self.eat_word("asc") {
            desc = false;
        } else if self.eat_word("desc") {
            desc = true;
        }
        let mut nulls_first = None;
        if self.eat_word("nulls") {
            if self.eat_word("first") {
                nulls_first = Some(true);
            } else if self.eat_word("last") {
                nulls_first = Some(false);
            } else {
                return self.err("first or last after nulls");
            }
        }
        Ok(SortKey {
            expr,
            desc,
            nulls_first,
        })
    }

    /// `name = ` before an expression, if there is one.
    fn maybe_name(&mut self) -> Option<String> {
        if let (Tok::Ident(n), Tok::Sym("=")) = (self.peek().clone(), self.peek_at(1).clone()) {
            self.bump();
            self.bump();
            return Some(n);
        }
        None
    }

    fn named_list(&mut self) -> Result<Vec<NamedExpr>, KqlError> {
        let mut v = Vec::new();
        loop {
            if self.is_sym("(") && self.tuple_name_ahead() {
                self.bump();
                let mut tuple = Vec::new();
                loop {
                    tuple.push(self.ident("a column name")?.0);
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                self.expect_sym(")")?;
                self.expect_sym("=")?;
                let expr = self.expr()?;
                v.push(NamedExpr {
                    name: None,
                    expr,
                    tuple,
                });
                if !self.eat_sym(",") {
                    break;
                }
                continue;
            }
            let name = self.maybe_name();
            let expr = self.expr()?;
            v.push(NamedExpr {
                name,
                expr,
                tuple: Vec::new(),
            });
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(v)
    }

    fn tuple_name_ahead(&self) -> bool {
        let mut k = self.i + 1;
        while k < self.toks.len() {
            match &self.toks[k].kind {
                Tok::Ident(_) | Tok::Sym(",") => k += 1,
                Tok::Sym(")") => {
                    return matches!(self.toks.get(k + 1).map(|t| &t.kind), Some(Tok::Sym("=")))
                }
                _ => return false,
            }
        }
        false
    }

    /// Column names, each maybe a wildcard pattern (`User*`, `*Id`, `*Object*`).
    fn name_list(&mut self) -> Result<Vec<(String, usize)>, KqlError> {
        let mut v = Vec::new();
        loop {
            let at = self.pos();
            let mut n = String::new();
            if self.eat_sym("*") {
                n.push('*');
            }
            if !n.is_empty() && !self.is_ident() {
                // a lone `*`: every column
            } else {
                let (part, _) = self.ident("a column name")?;
                n.push_str(&part);
                while self.is_sym("*") {
                    self.bump();
                    n.push('*');
                    if self.is_ident() {
                        let (more, _) = self.ident("a column name")?;
                        n.push_str(&more);
                    }
                }
            }
            v.push((n, at));
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(v)
    }

    // ---- scalar expressions -------------------------------------------------------------

    fn expr(&mut self) -> Result<Expr, KqlError> {
        self.enter()?;
        let e = self.or();
        self.leave();
        e
    }

    fn or(&mut self) -> Result<Expr, KqlError> {
        let mut l = self.and()?;
        while self.is_word("or") {
            let at = self.pos();
            self.bump();
            let r = self.and()?;
            self.operator_node(at)?;
            l = Expr::Bin(BinOp::Or, Box::new(l), Box::new(r), at);
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, KqlError> {
        let mut l = self.comparison()?;
        while self.is_word("and") {
            let at = self.pos();
            self.bump();
            let r = self.comparison()?;
            self.operator_node(at)?;
            l = Expr::Bin(BinOp::And, Box::new(l), Box::new(r), at);
        }
        Ok(l)
    }

    fn comparison(&mut self) -> Result<Expr, KqlError> {
        let l = self.additive()?;
        let at = self.pos();
        let sym = match self.peek() {
            Tok::Sym(s) => Some(*s),
            _ => None,
        };
        let bin = match sym {
            Some("==") => Some(BinOp::Eq),
            Some("!=") | Some("<>") => Some(BinOp::Ne),
            Some("=~") => Some(BinOp::EqCi),
            Some("!~") => Some(BinOp::NeCi),
            Some("<") => Some(BinOp::Lt),
            Some("<=") => Some(BinOp::Le),
            Some(">") => Some(BinOp::Gt),
            Some(">=") => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = bin {
            self.bump();
            let r = self.additive()?;
            return Ok(Expr::Bin(op, Box::new(l), Box::new(r), at));
        }
        match sym {
            Some("!in") | Some("!in~") => {
                let ci = sym == Some("!in~");
                self.bump();
                return self.in_list(l, true, ci, at);
            }
            Some("!between") => {
                self.bump();
                return self.between(l, true, at);
            }
            Some("!contains") | Some("!startswith") | Some("!endswith") | Some("!has") => {
                let op = match sym {
                    Some("!contains") => StrOp::Contains,
                    Some("!startswith") => StrOp::StartsWith,
                    Some("!endswith") => StrOp::EndsWith,
                    _ => StrOp::Has,
                };
                self.bump();
                let r = self.additive()?;
                return Ok(Expr::Str(op, true, Box::new(l), Box::new(r), at));
            }
            _ => {}
        }
        let word = match self.peek() {
            Tok::Ident(w) => w.clone(),
            _ => return Ok(l),
        };
        let (negated, base) = match word.strip_prefix('!') {
            Some(b) => (true, b.to_string()),
            None => (false, word.clone()),
        };
        let strop = match base.as_str() {
            "has" => Some(StrOp::Has),
            "has_cs" => Some(StrOp::HasCs),
            "hasprefix" => Some(StrOp::HasPrefix),
            "hassuffix" => Some(StrOp::HasSuffix),
            "contains" => Some(StrOp::Contains),
            "contains_cs" => Some(StrOp::ContainsCs),
            "startswith" => Some(StrOp::StartsWith),
            "startswith_cs" => Some(StrOp::StartsWithCs),
            "endswith" => Some(StrOp::EndsWith),
            "endswith_cs" => Some(StrOp::EndsWithCs),
            _ => None,
        };
        if let Some(op) = strop {
            self.bump();
            let r = self.additive()?;
            return Ok(Expr::Str(op, negated, Box::new(l), Box::new(r), at));
        }
        match word.as_str() {
            "in" | "in~" => {
                self.bump();
                self.in_list(l, false, word == "in~", at)
            }
            "between" => {
                self.bump();
                self.between(l, false, at)
            }
            "matches" => {
                self.bump();
                self.expect_word("regex")?;
                let r = self.additive()?;
                Ok(Expr::Str(StrOp::Regex, false, Box::new(l), Box::new(r), at))
            }
            "has_any" | "has_all" => {
                // `x has_any ("a", "b")` / `x has_all (dynamic([…]))`: an internal call the
                // lowering expands (a dynamic array contributes its elements)
                self.bump();
                self.expect_sym("(")?;
                let mut args = vec![l];
                args.extend(self.exprs_to_paren()?);
                Ok(Expr::Call(format!("${word}"), args, at))
            }
            "has_any~" | "hasprefix_cs" | "hassuffix_cs" | "like" | "notlike" | "contains_any" => {
                Err(KqlError::unsupported(self.text, at, &word, ""))
            }
            _ => Ok(l),
        }
    }

    /// `a, b, c)`: expressions separated by commas, up to and including the closing parenthesis
    /// (none before it is an empty list).
    fn exprs_to_paren(&mut self) -> Result<Vec<Expr>, KqlError> {
        let mut v = Vec::new();
        if !self.is_sym(")") {
            loop {
                v.push(self.expr()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        self.expect_sym(")")?;
        Ok(v)
    }

    fn in_list(&mut self, l: Expr, negated: bool, ci: bool, at: usize) -> Result<Expr, KqlError> {
        self.expect_sym("(")?;
        let list = if self.starts_tabular()
            || (matches!(self.peek(), Tok::Ident(_)) && matches!(self.peek_at(1), Tok::Sym("|")))
        {
            // `x in (T | project y)`: the first column of a sub-query
            let sat = self.pos();
            let t = self.tabular()?;
            self.expect_sym(")")?;
            vec![Expr::Tabular(Box::new(t), sat)]
        } else {
            self.exprs_to_paren()?
        };
        Ok(Expr::In {
            expr: Box::new(l),
            list,
            negated,
            ci,
            at,
        })
    }

    fn between(&mut self, l: Expr, negated: bool, at: usize) -> Result<Expr, KqlError> {
        self.expect_sym("(")?;
        let lo = self.expr()?;
        self.expect_sym("..")?;
        let hi = self.expr()?;
        self.expect_sym(")")?;
        Ok(Expr::Between {
            expr: Box::new(l),
            lo: Box::new(lo),
            hi: Box::new(hi),
            negated,
            at,
        })
    }

    fn additive(&mut self) -> Result<Expr, KqlError> {
        let mut l = self.multiplicative()?;
        loop {
            let at = self.pos();
            let op = if self.is_sym("+") {
                BinOp::Add
            } else if self.is_sym("-") {
                BinOp::Sub
            } else {
                break;
            };
            self.bump();
            let r = self.multiplicative()?;
            self.operator_node(at)?;
            l = Expr::Bin(op, Box::new(l), Box::new(r), at);
        }
        Ok(l)
    }

    fn multiplicative(&mut self) -> Result<Expr, KqlError> {
        let mut l = self.unary()?;
        loop {
            let at = self.pos();
            let op = if self.is_sym("*") {
                BinOp::Mul
            } else if self.is_sym("/") {
                BinOp::Div
            } else if self.is_sym("%") {
                BinOp::Mod
            } else {
                break;
            };
            self.bump();
            let r = self.unary()?;
            self.operator_node(at)?;
            l = Expr::Bin(op, Box::new(l), Box::new(r), at);
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, KqlError> {
        let at = self.pos();
        if self.is_sym("-") || self.is_sym("+") {
            self.operator_node(at)?;
            self.enter()?;
            let e = self.unary_inner();
            self.leave();
            return e;
        }
        self.postfix()
    }

    fn unary_inner(&mut self) -> Result<Expr, KqlError> {
        let at = self.pos();
        if self.eat_sym("-") {
            let e = self.unary()?;
            return Ok(match e {
                Expr::Lit(Lit::Long(n), _) => Expr::Lit(Lit::Long(-n), at),
                Expr::Lit(Lit::Real(r), _) => Expr::Lit(Lit::Real(-r), at),
                Expr::Lit(Lit::Timespan(t), _) => Expr::Lit(Lit::Timespan(-t), at),
                e => Expr::Neg(Box::new(e), at),
            });
        }
        if self.eat_sym("+") {
            return self.unary();
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, KqlError> {
        let mut e = self.primary()?;
        loop {
            let at = self.pos();
            if self.is_sym(".") || self.is_sym("[") {
                self.operator_node(at)?;
            }
            if self.eat_sym(".") {
                match self.bump() {
                    Tok::Ident(n) => e = Expr::Member(Box::new(e), n, at),
                    Tok::Sym("[") => {
                        let k = self.expr()?;
                        self.expect_sym("]")?;
                        e = Expr::Index(Box::new(e), Box::new(k), at);
                    }
                    _ => {
                        return Err(KqlError::syntax(
                            self.text,
                            at + 1,
                            "a property name after '.'",
                        ))
                    }
                }
            } else if self.eat_sym("[") {
                let k = self.expr()?;
                self.expect_sym("]")?;
                e = Expr::Index(Box::new(e), Box::new(k), at);
            } else {
                break;
            }
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, KqlError> {
        let at = self.pos();
        match self.peek().clone() {
            Tok::Int(n) => {
                self.bump();
                Ok(Expr::Lit(Lit::Long(n), at))
            }
            Tok::Real(r) => {
                self.bump();
                Ok(Expr::Lit(Lit::Real(r), at))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::Lit(Lit::Str(s), at))
            }
            Tok::Timespan(t) => {
                self.bump();
                Ok(Expr::Lit(Lit::Timespan(t), at))
            }
            Tok::Raw(func, text) => {
                self.bump();
                self.raw_literal(&func, &text, at)
            }
            Tok::Dollar(side) => {
                self.bump();
                if !self.is_sym(".") {
                    // `$table` (the column search and union withsource name)
                    return Ok(Expr::Name(format!("${side}"), at));
                }
                self.expect_sym(".")?;
                let (c, _) = self.ident("a column")?;
                Ok(Expr::Side(side, c, at))
            }
            Tok::Sym("(") => {
                self.bump();
                if self.starts_tabular_after_paren() {
                    return Err(KqlError::unsupported(
                        self.text,
                        at,
                        "tabular expression used as a scalar",
                        "use a let with toscalar() (not supported) or a join",
                    ));
                }
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Sym("*") => {
                self.bump();
                Ok(Expr::Name("*".into(), at))
            }
            Tok::Ident(name) => {
                self.bump();
                match name.as_str() {
                    "true" => return Ok(Expr::Lit(Lit::Bool(true), at)),
                    "false" => return Ok(Expr::Lit(Lit::Bool(false), at)),
                    "null" => return Ok(Expr::Lit(Lit::Null, at)),
                    _ => {}
                }
                if self.eat_sym("(") {
                    if name == "toscalar" {
                        let tat = self.pos();
                        let t = self.tabular()?;
                        self.expect_sym(")")?;
                        return Ok(Expr::Call(name, vec![Expr::Tabular(Box::new(t), tat)], at));
                    }
                    let args = self.exprs_to_paren()?;
                    return Ok(Expr::Call(name, args, at));
                }
                Ok(Expr::Name(name, at))
            }
            _ => self.err("an expression (a column, literal or function call)"),
        }
    }

    fn starts_tabular_after_paren(&self) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
            && matches!(self.peek_at(1), Tok::Sym("|"))
    }

    fn raw_literal(&self, func: &str, text: &str, at: usize) -> Result<Expr, KqlError> {
        match func {
            "datetime" => {
                let t = text.trim_matches(|c| c == '"' || c == '\'');
                if t.is_empty() || t == "null" {
                    return Ok(Expr::Lit(Lit::Null, at));
                }
                match crate::parse_datetime(t) {
                    Some(ts) => Ok(Expr::Lit(Lit::DateTime(ts.0), at)),
                    None => Err(KqlError::syntax(self.text, at, "a datetime such as datetime(2024-01-31), datetime(2024-01-31 10:00:00) or datetime(2024-01-31T10:00:00Z)")),
                }
            }
            "timespan" => {
                let t = text.trim_matches(|c| c == '"' || c == '\'');
                match parse_timespan(t) {
                    Some(ns) => Ok(Expr::Lit(Lit::Timespan(ns), at)),
                    None => Err(KqlError::syntax(
                        self.text,
                        at,
                        "a timespan such as timespan(1d), time(00:30:00) or time(1.02:00:00)",
                    )),
                }
            }
            _ => {
                // dynamic(…): JSON, with KQL's single quotes allowed
                let json = if text.is_empty() {
                    "null".to_string()
                } else {
                    text.to_string()
                };
                match serde_json::from_str::<serde_json::Value>(&json).or_else(|_| {
                    serde_json::from_str::<serde_json::Value>(&json.replace('\'', "\""))
                }) {
                    Ok(v) => Ok(Expr::Lit(Lit::Dynamic(v.to_string()), at)),
                    Err(e) => Err(KqlError::syntax(
                        self.text,
                        at,
                        &format!("a dynamic literal in JSON ({e})"),
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tab(q: &str) -> Tabular {
        match parse(q).unwrap().statements.pop().unwrap() {
            Statement::Tabular(t) => t,
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn seed_shapes_parse() {
        let t = tab("AzureActivity\n| where TimeGenerated > ago(24h)\n| where ResourceProvider == \"Microsoft.ContainerService\"\n| project TimeGenerated, Caller\n| order by TimeGenerated desc");
        assert_eq!(t.ops.len(), 4);
        let q = parse("let StartTime = ago(1d);\nlet EndTime = now();\nSigninLogs\n| where TimeGenerated between(StartTime .. EndTime)\n| where ResultType != 0\n| summarize FailedAttempts = count() by UserPrincipalName, IPAddress, ResultType\n| order by FailedAttempts desc").unwrap();
        assert_eq!(q.statements.len(), 3);
        let t = tab("AzureDiagnostics | where Category == \"kube-audit\" | where parse_json(tostring(parse_json(tostring(parse_json(log_s).requestObject)).roleRef)).name == \"cluster-admin\" | extend k8sipaddress = parse_json(tostring(parse_json(log_s).sourceIPs))[0]");
        assert_eq!(t.ops.len(), 3);
        let t = tab("AzureDiagnostics | where Category == \"kube-audit\" | project log_s | where parse_json(tostring(parse_json(log_s).annotations)).[\"\"] == \"allow\"");
        assert_eq!(t.ops.len(), 3);
        let q = parse("let WeeklyData = AzureActivity\n| where TimeGenerated > ago(7d)\n| summarize\n    TotalActivities = count(),\n    UniqueUsers = dcount(Caller),\n    FailedOperations = countif(ActivityStatus == \"Failed\")\nby bin(TimeGenerated, 1d)\n| order by TimeGenerated desc;\n\nWeeklyData\n| render timechart").unwrap();
        assert!(matches!(
            &q.statements[0],
            Statement::Let {
                value: LetValue::Tabular(_),
                ..
            }
        ));
    }

    #[test]
    fn operators() {
        let t = tab("T | join kind=leftouter (U | where a == 1) on $left.x == $right.y, z | mv-expand e = arr to typeof(string) | parse msg with * \"user=\" user:string \" \" * | top 5 by n asc nulls last | distinct a, b | count");
        assert_eq!(t.ops.len(), 6);
        match &t.ops[0] {
            Op::Join { kind, on, .. } => {
                assert_eq!(*kind, JoinKind::LeftOuter);
                assert_eq!(
                    on[0],
                    JoinOn {
                        left: "x".into(),
                        right: "y".into()
                    }
                );
                assert_eq!(on[1].left, "z");
            }
            o => panic!("{o:?}"),
        }
        let t = tab("union (A | take 1), B | project-rename n = m | project-away x*, y");
        assert!(matches!(t.source, Source::Union(ref u, _) if u.legs.len() == 2));
    }

    #[test]
    fn precedence() {
        let t = tab("T | where a == 1 or b > 2 and c has 'x'");
        match &t.ops[0] {
            Op::Where(Expr::Bin(BinOp::Or, _, r, _), _) => {
                assert!(matches!(**r, Expr::Bin(BinOp::And, _, _, _)));
            }
            o => panic!("{o:?}"),
        }
        let t = tab("T | extend x = 1 + 2 * 3 - -4");
        match &t.ops[0] {
            Op::Extend(v, _) => assert!(matches!(v[0].expr, Expr::Bin(BinOp::Sub, _, _, _))),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn deep_nesting_and_long_chains_are_refused_not_a_stack_overflow() {
        // found by the kql fuzz target: thousands of '(' overflowed the stack
        let deep = format!("print x = {}1{}", "(".repeat(5000), ")".repeat(5000));
        let e = parse(&deep).map(|_| ()).unwrap_err().to_string();
        assert!(
            e.contains("too complex") && e.contains("nested more than 64"),
            "{e}"
        );
        let minus = format!("print x = {}1", "-".repeat(5000));
        assert!(parse(&minus).is_err());
        let sub = format!("{}T{}", "(".repeat(200), ")".repeat(200));
        assert!(parse(&sub).is_err());
        let long = format!("print x = 1{}", " + 1".repeat(MAX_OPERATORS + 1));
        let e = parse(&long).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("more than 1000 operators"), "{e}");
        // up to the limits, it parses
        let ok = format!("print x = 1{}", " + 1".repeat(MAX_OPERATORS - 1));
        assert!(parse(&ok).is_ok());
        let ok = format!(
            "print x = {}1{}",
            "(".repeat(MAX_DEPTH - 2),
            ")".repeat(MAX_DEPTH - 2)
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn functions_series_and_the_other_operators() {
        let q = parse("let f = (T:(*), n:long = 3) { let m = n * 2; T | take m };\nlet g = (s:string) { strcat(s, \"!\") };\nE | invoke f(2) | extend x = g(a)").unwrap();
        match &q.statements[0] {
            Statement::Let {
                value: LetValue::Function(f),
                ..
            } => {
                assert_eq!(f.params.len(), 2);
                assert_eq!(f.lets.len(), 1);
                assert!(matches!(f.body, FnBody::Tabular(_)));
            }
            s => panic!("{s:?}"),
        }
        assert!(matches!(
            &q.statements[1],
            Statement::Let {
                value: LetValue::Function(Function {
                    body: FnBody::Scalar(_),
                    ..
                }),
                ..
            }
        ));
        let t = tab("T | make-series n = count() default = 0, avg(x) on TimeGenerated from ago(1d) to now() step 1h by u | extend (a, s, b) = series_decompose_anomalies(n)");
        match &t.ops[0] {
            Op::MakeSeries {
                aggs, from, to, by, ..
            } => {
                assert_eq!(aggs.len(), 2);
                assert!(aggs[0].default.is_some() && from.is_some() && to.is_some());
                assert_eq!(by.len(), 1);
            }
            o => panic!("{o:?}"),
        }
        assert!(matches!(&t.ops[1], Op::Extend(v, _) if v[0].tuple == ["a", "s", "b"]));
        let t = tab(
            "T | make-series count() on t in range(datetime(2024-01-01), datetime(2024-01-02), 1h)",
        );
        assert!(matches!(
            &t.ops[0],
            Op::MakeSeries {
                from: Some(_),
                to: Some(_),
                ..
            }
        ));
        let t = tab("union withsource=Src kind=inner isfuzzy=true A, B | lookup kind=inner (D) on k | getschema");
        assert!(
            matches!(&t.source, Source::Union(u, _) if u.withsource.as_deref() == Some("Src") && u.inner && u.fuzzy)
        );
        assert!(matches!(&t.ops[0], Op::Lookup { inner: true, .. }));
        let t = tab("T | mv-apply bagexpansion=array with_itemindex=i e = arr to typeof(long) on (where e > 1 | summarize sum(e))");
        assert!(t.to_owned().ops.len() == 1);
        let t = tab("T | mv-apply e = arr to typeof(long) on (top 1 by e) | evaluate bag_unpack(d, 'p_') : (x:long) | top-nested 2 of a by count(), top-nested of b with others = -1 by sum(c) asc");
        assert!(matches!(&t.ops[1], Op::Evaluate { schema: Some(s), .. } if s.len() == 1));
        assert!(
            matches!(&t.ops[2], Op::TopNested(l, _) if l.len() == 2 && l[1].n.is_none() && !l[1].desc)
        );
        let t = tab("datatable (a:string, b:long) [\"x\", 1, \"y\", 2] | where a in (T | project a) | extend s = toscalar(T | count)");
        assert!(
            matches!(&t.source, Source::Datatable { cols, values, .. } if cols.len() == 2 && values.len() == 4)
        );
        assert!(matches!(
            tab("range x from 1 to 10 step 2").source,
            Source::Range { .. }
        ));
        assert!(
            matches!(tab("search in (A, B) \"admin\"").source, Source::Search { ref tables, .. } if tables.len() == 2)
        );
        assert!(matches!(
            tab("let x = materialize(T | take 1); x").source,
            Source::Name(..)
        ));
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = parse("T\n| where a ==").unwrap_err().to_string();
        assert!(e.contains("line 2, column 13"), "{e}");
        assert!(e.contains("expected an expression"), "{e}");
        let e = parse("T | make-series count() on t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 'step'"), "{e}");
        let e = parse("T | top-hitters 5 of x").unwrap_err().to_string();
        assert!(e.contains("unsupported KQL feature `top-hitters`"), "{e}");
        let e = parse("T | frobnicate").unwrap_err().to_string();
        assert!(e.contains("a tabular operator"), "{e}");
        let e = parse("A | take 1\nB | take 1").unwrap_err().to_string();
        assert!(e.contains("';'"), "{e}");
    }
}
