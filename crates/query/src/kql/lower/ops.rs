//! Lowering of the less common operators and functions: `let` functions and `invoke`,
//! `toscalar`, `in (sub-query)`, `union` options, `datatable`, `range`, `search`, `lookup`,
//! `getschema`, `mv-apply`, `make-series` and the `series_*` functions, `evaluate bag_unpack`,
//! `top-nested`, `column_ifexists`.

use super::*;
use datafusion::functions_window::expr_fn::row_number;

/// Functions returning several series or values, with the names of what they return.
const SEVERAL: &[(&str, &[&str])] = &[
    (
        "series_decompose_anomalies",
        &["ad_flag", "ad_score", "baseline"],
    ),
    (
        "series_decompose",
        &["baseline", "seasonal", "trend", "residual"],
    ),
    (
        "series_stats",
        &[
            "min", "min_idx", "max", "max_idx", "avg", "stdev", "variance",
        ],
    ),
    (
        "series_fit_line",
        &[
            "rsquare",
            "slope",
            "variance",
            "rvariance",
            "interception",
            "line_fit",
        ],
    ),
];

fn several_of(name: &str) -> Option<&'static [&'static str]> {
    SEVERAL.iter().find(|(n, _)| *n == name).map(|(_, o)| *o)
}

/// The KQL type of one result of a function returning several.
fn several_type(func: &str, out: &str) -> KType {
    match (func, out) {
        ("series_stats", "min_idx" | "max_idx") => KType::Long,
        ("series_stats", _) => KType::Real,
        ("series_fit_line", "line_fit") => KType::Dynamic,
        ("series_fit_line", _) => KType::Real,
        _ => KType::Dynamic,
    }
}

/// Kusto's `getschema` DataType of a column type.
fn clr_type(t: KType) -> &'static str {
    match t {
        KType::Bool => "System.SByte",
        KType::Int => "System.Int32",
        KType::Long => "System.Int64",
        KType::Real => "System.Double",
        KType::String => "System.String",
        KType::DateTime => "System.DateTime",
        KType::TimeSpan => "System.TimeSpan",
        KType::Dynamic => "System.Object",
    }
}

impl<'e> Lowerer<'e> {
    /// `let name = value`.
    pub(super) fn let_stmt(&mut self, name: &str, value: &LetValue) -> R<()> {
        match value {
            LetValue::Scalar(ast::Expr::Call(f, args, at)) if matches!(self.functions.get(f), Some(d) if matches!(d.body, ast::FnBody::Tabular(_))) =>
            {
                let fr = self.call_tabular(f, args, None, *at)?;
                self.tabulars.insert(name.to_string(), fr);
            }
            LetValue::Scalar(e) => {
                let empty = self.empty_frame()?;
                let lowered = self.expr(e, &empty)?;
                self.scalars.insert(name.to_string(), lowered);
            }
            LetValue::Tabular(t) => {
                let f = self.tabular(t)?;
                self.tabulars.insert(name.to_string(), f);
            }
            LetValue::Function(def) => {
                self.functions.insert(name.to_string(), def.clone());
            }
        }
        Ok(())
    }

    /// The result of running `plan`, which planning the node at `at` needs; the first time, the
    /// engine is asked to run it (planning starts again with its result). Results are kept by the
    /// order in which lowering asks for them, which is the same in every round: a function body
    /// called twice asks twice.
    fn needs_data(&mut self, at: usize, plan: LogicalPlan) -> R<Vec<RecordBatch>> {
        let key = self.asked;
        self.asked += 1;
        if let Some(b) = self.data.get(&key) {
            return Ok(b.clone());
        }
        self.pending = Some((key, plan));
        Err(QueryError::NeedsData(at))
    }

    /// A frame of constant rows.
    fn values_frame(&self, cols: Vec<(String, KType)>, rows: Vec<Vec<Expr>>) -> R<Frame> {
        if rows.is_empty() {
            let exprs: Vec<Expr> = cols.iter().map(|(n, t)| null_of(*t).alias(n)).collect();
            return Ok(Frame {
                plan: LogicalPlanBuilder::empty(false).project(exprs)?.build()?,
                cols,
                render: None,
            });
        }
        let exprs: Vec<Expr> = cols
            .iter()
            .enumerate()
            .map(|(i, (n, _))| ucol(&format!("column{}", i + 1)).alias(n))
            .collect();
        Ok(Frame {
            plan: LogicalPlanBuilder::values(rows)?.project(exprs)?.build()?,
            cols,
            render: None,
        })
    }

    // ---- functions ---------------------------------------------------------------------------

    /// Bind a `let` function's parameters (a table to its first tabular parameter when `input`
    /// is given), lower its body with `body`, and restore the names it shadowed.
    fn with_function<T>(
        &mut self,
        name: &str,
        args: &[ast::Expr],
        mut input: Option<Frame>,
        f: &Frame,
        at: usize,
        body: fn(&mut Self, &ast::Function, &Frame) -> R<T>,
    ) -> R<T> {
        let Some(def) = self.functions.get(name).cloned() else {
            return self.err(
                at,
                format!("unknown function '{name}' (define it with let {name} = (…) {{ … }})"),
            );
        };
        if self.calls >= 32 {
            return self.err(
                at,
                format!("{name}(): functions call each other more than 32 deep"),
            );
        }
        let mut rest = args.iter();
        let mut tables = Vec::new();
        let mut scalars = Vec::new();
        for p in &def.params {
            match p {
                ast::Param::Tabular(pn) => {
                    let fr = match input.take() {
                        Some(fr) => fr,
                        None => match rest.next() {
                            Some(ast::Expr::Name(t, tat)) => self.table(t, *tat)?,
                            Some(ast::Expr::Tabular(t, _)) => self.tabular(t)?,
                            Some(o) => {
                                return self.err(o.at(), format!("{name}(): {pn} takes a table"))
                            }
                            None => return self.err(at, format!("{name}(): no table for {pn}")),
                        },
                    };
                    tables.push((pn.clone(), fr));
                }
                ast::Param::Scalar {
                    name: pn,
                    ty,
                    default,
                } => {
                    let (e, t) = match (rest.next(), default) {
                        (Some(a), _) => self.expr(a, f)?,
                        (None, Some(d)) => {
                            let empty = self.empty_frame()?;
                            self.expr(d, &empty)?
                        }
                        (None, None) => {
                            return self.err(at, format!("{name}(): no value for {pn}"))
                        }
                    };
                    let Some(kt) = KType::parse(ty) else {
                        return self.err(at, format!("{name}(): unknown type '{ty}' of {pn}"));
                    };
                    let e = if t == kt {
                        e
                    } else {
                        self.convert(e, t, kt, at)?
                    };
                    scalars.push((pn.clone(), (e, kt)));
                }
            }
        }
        if let Some(extra) = rest.next() {
            return self.err(
                extra.at(),
                format!("{name}() takes {} argument(s)", def.params.len()),
            );
        }
        let saved = (
            self.scalars.clone(),
            self.tabulars.clone(),
            self.functions.clone(),
        );
        self.tabulars.extend(tables);
        self.scalars.extend(scalars);
        self.calls += 1;
        let mut run = || -> R<T> {
            for l in &def.lets {
                if let ast::Statement::Let { name, value, .. } = l {
                    self.let_stmt(name, value)?;
                }
            }
            body(self, &def, f)
        };
        let r = run();
        self.calls -= 1;
        (self.scalars, self.tabulars, self.functions) = saved;
        r
    }

    /// A `let` function returning a table: `f(args)` as a source, or `T | invoke f(args)`.
    pub(super) fn call_tabular(
        &mut self,
        name: &str,
        args: &[ast::Expr],
        input: Option<Frame>,
        at: usize,
    ) -> R<Frame> {
        let empty = self.empty_frame()?;
        self.with_function(name, args, input, &empty, at, |l, def, _| match &def.body {
            ast::FnBody::Tabular(t) => l.tabular(t),
            ast::FnBody::Scalar(e) => l.err(e.at(), "this function returns a scalar, not a table"),
        })
    }

    /// A `let` function returning a scalar.
    pub(super) fn call_scalar(
        &mut self,
        name: &str,
        args: &[ast::Expr],
        f: &Frame,
        at: usize,
    ) -> R<(Expr, KType)> {
        self.with_function(name, args, None, f, at, |l, def, f| match &def.body {
            ast::FnBody::Scalar(e) => l.expr(e, f),
            ast::FnBody::Tabular(t) => l.err(
                t.at,
                "this function returns a table: use it as a source or with invoke",
            ),
        })
    }

    /// `toscalar(T | …)`: the first column of the first row (null when there is none).
    pub(super) fn toscalar(&mut self, args: &[ast::Expr], at: usize) -> R<(Expr, KType)> {
        let [ast::Expr::Tabular(t, tat)] = args else {
            return self.err(at, "toscalar() takes one tabular expression");
        };
        let fr = self.tabular(t)?;
        let Some((c0, k)) = fr.cols.first().cloned() else {
            return self.err(at, "toscalar(): the query has no columns");
        };
        let plan = LogicalPlanBuilder::from(fr.plan)
            .project(vec![ucol(&c0)])?
            .limit(0, Some(1))?
            .build()?;
        let batches = self.needs_data(*tat, plan)?;
        let v = match batches.iter().find(|b| b.num_rows() > 0) {
            Some(b) => ScalarValue::try_from_array(b.column(0), 0)?,
            None => ScalarValue::try_from(&k.arrow())?,
        };
        Ok((lit(v), k))
    }

    /// `x in (T | project y)`: compared in x's type, like a list. The sub-query runs while the
    /// query is planned (its distinct values, at most a million, become the list), so the test
    /// works wherever an expression may stand, not only in `where`.
    pub(super) fn in_subquery(
        &mut self,
        v: Expr,
        t: KType,
        sub: &Tabular,
        negated: bool,
        ci: bool,
        at: usize,
    ) -> R<Expr> {
        const MAX: usize = 1_000_000;
        let fr = self.tabular(sub)?;
        let Some((c0, k)) = fr.cols.first().cloned() else {
            return self.err(at, "in (…): the sub-query has no columns");
        };
        let target = if t == KType::Dynamic {
            KType::String
        } else {
            t
        };
        let v = self.convert(v, t, target, at)?;
        let col = self.convert(ucol(&c0), k, target, at)?;
        let plan = LogicalPlanBuilder::from(fr.plan)
            .project(vec![col.alias("__in")])?
            .distinct()?
            .limit(0, Some(MAX + 1))?
            .build()?;
        let batches = self.needs_data(at, plan)?;
        let mut items = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                let x = ScalarValue::try_from_array(b.column(0), i)?;
                if !x.is_null() {
                    items.push(lit(x));
                }
            }
        }
        if items.len() > MAX {
            return self.err(at, "in (…): the sub-query gives more than 1,000,000 values; use join kind=leftsemi (or leftanti)");
        }
        let (v, items) = if ci {
            (sql_lower(v), items.into_iter().map(sql_lower).collect())
        } else {
            (v, items)
        };
        Ok(v.in_list(items, negated))
    }

    /// `column_ifexists("name", default)`.
    pub(super) fn column_ifexists(
        &mut self,
        args: &[ast::Expr],
        f: &Frame,
        at: usize,
    ) -> R<(Expr, KType)> {
        let [ast::Expr::Lit(Lit::Str(name), _), default] = args else {
            return self.err(
                at,
                "column_ifexists() takes a column name (a string literal) and a default value",
            );
        };
        match f.ty(name) {
            Some(t) => Ok((ucol(name), t)),
            None => self.expr(default, f),
        }
    }

    // ---- union, datatable, range, search ---------------------------------------------------------

    /// `union` with its options; `first` is the table piped into the operator.
    pub(super) fn union_op(&mut self, first: Option<Frame>, u: &ast::Union) -> R<Frame> {
        let mut frames = Vec::new();
        // Kusto numbers the legs that are not plain tables from the piped one
        let offset = usize::from(first.is_some());
        if let Some(f) = first {
            frames.push((f, "union_arg0".to_string()));
        }
        for (i, t) in u.legs.iter().enumerate() {
            let label = match (&t.source, t.ops.is_empty()) {
                (Source::Name(n, _), true) => n.clone(),
                _ => format!("union_arg{}", i + offset),
            };
            if u.fuzzy {
                if let Source::Name(n, _) = &t.source {
                    if !self.tabulars.contains_key(n) && self.eng.table(n).is_none() {
                        continue;
                    }
                }
            }
            frames.push((self.tabular(t)?, label));
        }
        if let Some(col) = &u.withsource {
            for (f, label) in frames.iter_mut() {
                let mut exprs = vec![lit(label.clone()).alias(col)];
                exprs.extend(
                    f.cols
                        .iter()
                        .filter(|(n, _)| n != col)
                        .map(|(n, _)| ucol(n)),
                );
                let mut cols = vec![(col.clone(), KType::String)];
                cols.extend(f.cols.iter().filter(|(n, _)| n != col).cloned());
                f.plan = LogicalPlanBuilder::from(f.plan.clone())
                    .project(exprs)?
                    .build()?;
                f.cols = cols;
            }
        }
        let mut frames: Vec<Frame> = frames.into_iter().map(|(f, _)| f).collect();
        if u.inner {
            let common: Vec<String> = frames
                .first()
                .map(|f| f.cols.iter().map(|(n, _)| n.clone()).collect())
                .unwrap_or_default();
            let common: Vec<String> = common
                .into_iter()
                .filter(|n| frames.iter().all(|f| f.ty(n).is_some()))
                .collect();
            frames = frames
                .into_iter()
                .map(|f| {
                    let cols = common
                        .iter()
                        .filter_map(|n| f.ty(n).map(|t| (n.clone(), t)))
                        .collect();
                    self.select(f, cols)
                })
                .collect::<R<_>>()?;
        }
        self.union(frames)
    }

    /// `datatable (a:type, …) [v, v, …]`.
    pub(super) fn datatable(
        &mut self,
        cols: &[(String, String)],
        values: &[ast::Expr],
        at: usize,
    ) -> R<Frame> {
        let mut types = Vec::new();
        for (n, t) in cols {
            match KType::parse(t) {
                Some(k) => types.push((n.clone(), k)),
                None => return self.err(at, format!("datatable: unknown type '{t}' of {n}")),
            }
        }
        if types.is_empty() || !values.len().is_multiple_of(types.len()) {
            return self.err(
                at,
                format!(
                    "datatable: {} values do not fill rows of {} columns",
                    values.len(),
                    types.len()
                ),
            );
        }
        let empty = self.empty_frame()?;
        let mut rows = Vec::new();
        for chunk in values.chunks(types.len()) {
            let mut row = Vec::new();
            for (v, (_, k)) in chunk.iter().zip(&types) {
                let (e, t) = self.expr(v, &empty)?;
                let e = if matches!(v, ast::Expr::Lit(Lit::Null, _)) {
                    null_of(*k)
                } else {
                    self.convert(e, t, *k, v.at())?
                };
                row.push(cast(e, k.arrow()));
            }
            rows.push(row);
        }
        self.values_frame(types, rows)
    }

    /// `range x from a to b step s` (both ends included), over longs, reals, datetimes or
    /// timespans.
    pub(super) fn range(
        &mut self,
        name: &str,
        from: &ast::Expr,
        to: &ast::Expr,
        step: &ast::Expr,
        at: usize,
    ) -> R<Frame> {
        let empty = self.empty_frame()?;
        let (a, at_) = self.expr(from, &empty)?;
        let (b, _) = self.expr(to, &empty)?;
        let (s, st) = self.expr(step, &empty)?;
        let num = |e: &Expr| -> Option<f64> {
            match literal(e)? {
                ScalarValue::Int64(Some(v)) => Some(*v as f64),
                ScalarValue::Int32(Some(v)) => Some(f64::from(*v)),
                ScalarValue::Float64(Some(v)) => Some(*v),
                ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v as f64),
                ScalarValue::DurationNanosecond(Some(v)) => Some(*v as f64),
                _ => None,
            }
        };
        let (Some(x0), Some(x1), Some(dx)) = (num(&a), num(&b), num(&s)) else {
            return self.err(at, "range: from, to and step must be constants");
        };
        if dx == 0.0 || (x1 - x0) / dx < 0.0 {
            return self.values_frame(vec![(name.to_string(), at_)], Vec::new());
        }
        let count = ((x1 - x0) / dx).floor() as i64 + 1;
        if count > 10_000_000 {
            return self.err(at, format!("range: {count} rows is more than 10,000,000"));
        }
        let i = self.fresh("i");
        let plan = LogicalPlanBuilder::empty(true)
            .project(vec![datafusion::functions_nested::expr_fn::range(
                lit(0i64),
                lit(count),
                lit(1i64),
            )
            .alias(&i)])?
            .unnest_column(i.as_str())?
            .build()?;
        let idx = ucol(&i);
        let (x, t) = match (at_, st) {
            (KType::DateTime, KType::TimeSpan) | (KType::TimeSpan, KType::TimeSpan) => {
                let off = cast(
                    idx * lit(dx as i64),
                    DataType::Duration(TimeUnit::Nanosecond),
                );
                self.arith(BinOp::Add, a, at_, off, KType::TimeSpan, at)?
            }
            (KType::Long | KType::Int, KType::Long | KType::Int) => {
                (lit(x0 as i64) + idx * lit(dx as i64), KType::Long)
            }
            (l, r) if l.numeric() && r.numeric() => (
                lit(x0) + cast(idx, DataType::Float64) * lit(dx),
                KType::Real,
            ),
            (l, r) => {
                return self.err(
                    at,
                    format!("range: cannot step a {} by a {}", l.name(), r.name()),
                )
            }
        };
        Ok(Frame {
            plan: LogicalPlanBuilder::from(plan)
                .project(vec![x.alias(name)])?
                .build()?,
            cols: vec![(name.to_string(), t)],
            render: None,
        })
    }

    /// The predicate of `search`: a string literal matches a term in any column (`has`; `*` at
    /// either end makes it a prefix, suffix or substring), `* op "x"` any column; other
    /// predicates are as in `where`.
    fn search_pred(&mut self, p: &ast::Expr, f: &Frame) -> R<Expr> {
        let any = |l: &mut Self, udf: &str, term: Expr| -> Expr {
            let mut out: Option<Expr> = None;
            for (n, t) in &f.cols {
                if matches!(t, KType::String | KType::Dynamic) {
                    let x = l.call(udf, vec![l.to_string_expr(ucol(n), *t), term.clone()]);
                    out = Some(match out {
                        Some(o) => o.or(x),
                        None => x,
                    });
                }
            }
            out.unwrap_or(lit(false))
        };
        Ok(match p {
            ast::Expr::Bin(op @ (BinOp::And | BinOp::Or), l, r, _) => {
                let (a, b) = (self.search_pred(l, f)?, self.search_pred(r, f)?);
                if *op == BinOp::And {
                    a.and(b)
                } else {
                    a.or(b)
                }
            }
            ast::Expr::Lit(Lit::Str(term), _) => {
                let (starts, ends) = (term.starts_with('*'), term.ends_with('*') && term.len() > 1);
                let core = term.trim_matches('*').to_string();
                let udf = match (starts, ends) {
                    (true, true) => "kql_contains",
                    (false, true) => "kql_hasprefix",
                    (true, false) => "kql_hassuffix",
                    (false, false) => "kql_has",
                };
                any(self, udf, lit(core))
            }
            ast::Expr::Str(op, negated, l, r, at) if matches!(**l, ast::Expr::Name(ref n, _) if n == "*") =>
            {
                let (term, tt) = self.expr(r, f)?;
                let term = self.to_string_expr(term, tt);
                let Some(udf) = str_udf(*op) else {
                    return self.unsupported(
                        *at,
                        "search * matches regex",
                        "use has, contains, startswith or endswith",
                    );
                };
                let x = any(self, udf, term);
                if *negated {
                    Expr::Not(Box::new(x))
                } else {
                    x
                }
            }
            other => {
                let (e, t) = self.expr(other, f)?;
                self.to_bool(e, t, other.at())?
            }
        })
    }

    /// `T | search predicate`.
    pub(super) fn search(&mut self, f: Frame, pred: &ast::Expr, _at: usize) -> R<Frame> {
        let p = self.search_pred(pred, &f)?;
        Ok(Frame {
            plan: LogicalPlanBuilder::from(f.plan).filter(p)?.build()?,
            ..f
        })
    }

    /// `search [in (T, …)] predicate`: the matching rows of each table with a `$table` column.
    pub(super) fn search_source(
        &mut self,
        tables: &[(String, usize)],
        pred: &ast::Expr,
        at: usize,
    ) -> R<Frame> {
        let names: Vec<(String, usize)> = if tables.is_empty() {
            // every Log Analytics table (the native ones hold the same records again)
            self.eng
                .tables()
                .iter()
                .filter(|t| {
                    t.name
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_uppercase())
                })
                .filter(|t| t.name != "TrailwardenAccess")
                .map(|t| (t.name.to_string(), at))
                .collect()
        } else {
            tables.to_vec()
        };
        let mut frames = Vec::new();
        for (n, nat) in names {
            let f = self.table(&n, nat)?;
            let f = self.search(f, pred, at)?;
            let mut exprs = vec![lit(n.clone()).alias("$table")];
            exprs.extend(f.cols.iter().map(|(c, _)| ucol(c)));
            let mut cols = vec![("$table".to_string(), KType::String)];
            cols.extend(f.cols.iter().cloned());
            frames.push(Frame {
                plan: LogicalPlanBuilder::from(f.plan).project(exprs)?.build()?,
                cols,
                render: None,
            });
        }
        self.union(frames)
    }

    // ---- lookup, getschema ------------------------------------------------------------------------

    /// `lookup`: a left outer (or inner) join whose right key columns are not repeated.
    pub(super) fn lookup(
        &mut self,
        l: Frame,
        r: Frame,
        inner: bool,
        on: &[ast::JoinOn],
        at: usize,
    ) -> R<Frame> {
        let left_n = l.cols.len();
        let right_keys: Vec<usize> = on
            .iter()
            .filter_map(|k| r.cols.iter().position(|(n, _)| *n == k.right))
            .collect();
        let kind = if inner {
            JoinKind::Inner
        } else {
            JoinKind::LeftOuter
        };
        let j = self.join(l, r, kind, on, at)?;
        let cols: Vec<(String, KType)> = j
            .cols
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < left_n || !right_keys.contains(&(i - left_n)))
            .map(|(_, c)| c.clone())
            .collect();
        self.select(j, cols)
    }

    /// `getschema`: ColumnName, ColumnOrdinal, DataType, ColumnType.
    pub(super) fn getschema(&mut self, f: Frame) -> R<Frame> {
        let rows = f
            .cols
            .iter()
            .enumerate()
            .map(|(i, (n, t))| {
                vec![
                    lit(n.clone()),
                    lit(i as i32),
                    lit(clr_type(*t)),
                    lit(t.name()),
                ]
            })
            .collect();
        self.values_frame(
            vec![
                ("ColumnName".into(), KType::String),
                ("ColumnOrdinal".into(), KType::Int),
                ("DataType".into(), KType::String),
                ("ColumnType".into(), KType::String),
            ],
            rows,
        )
    }

    // ---- mv-apply ---------------------------------------------------------------------------------

    /// Row numbers as a column (for operators that work per input row).
    fn with_row_id(&mut self, f: Frame) -> R<(Frame, String)> {
        let rid = self.fresh("rid");
        let w = row_number().alias(&rid);
        let mut exprs: Vec<Expr> = f.cols.iter().map(|(n, _)| ucol(n)).collect();
        exprs.push(cast(ucol(&rid), DataType::Int64).alias(&rid));
        let plan = LogicalPlanBuilder::from(f.plan)
            .window(vec![w])?
            .project(exprs)?
            .build()?;
        let mut cols = f.cols;
        cols.push((rid.clone(), KType::Long));
        Ok((
            Frame {
                plan,
                cols,
                render: f.render,
            },
            rid,
        ))
    }

    /// Keep the first `n` rows of each group of `part` (in `order`).
    fn first_n_per(
        &mut self,
        f: Frame,
        part: Vec<Expr>,
        order: Vec<SortExpr>,
        n: usize,
    ) -> R<Frame> {
        let rn = self.fresh("rn");
        let w = row_number()
            .partition_by(part)
            .order_by(order)
            .build()?
            .alias(&rn);
        let plan = LogicalPlanBuilder::from(f.plan)
            .window(vec![w])?
            .filter(ucol(&rn).lt_eq(lit(n as u64)))?
            .project(f.cols.iter().map(|(c, _)| ucol(c)).collect::<Vec<_>>())?
            .build()?;
        Ok(Frame { plan, ..f })
    }

    /// One operator of an `mv-apply` sub-query, applied per input row (`rid`).
    fn apply_op(&mut self, sub: Frame, op: &Op, rid: &str) -> R<Frame> {
        let rid_item = || NamedExpr {
            name: None,
            expr: ast::Expr::Name(rid.to_string(), 0),
            tuple: Vec::new(),
        };
        match op {
            Op::Summarize { aggs, by, at } => {
                let mut by = by.clone();
                by.push(rid_item());
                self.summarize(sub, aggs, &by, *at)
            }
            Op::Distinct(items, at) if !items.is_empty() => {
                let mut by = items.clone();
                by.push(rid_item());
                self.summarize(sub, &[], &by, *at)
            }
            Op::Count(at) => {
                let count = NamedExpr {
                    name: Some("Count".into()),
                    expr: ast::Expr::Call("count".into(), vec![], *at),
                    tuple: Vec::new(),
                };
                self.summarize(sub, &[count], &[rid_item()], *at)
            }
            Op::Project(items, _) => {
                let mut items = items.clone();
                items.push(rid_item());
                self.project(sub, &items, false)
            }
            Op::ProjectKeep(names, at) => {
                let mut names = names.clone();
                names.push((rid.to_string(), *at));
                self.op(sub, &Op::ProjectKeep(names, *at))
            }
            Op::Top { n, key, at } => {
                let n = self.const_usize(n, *at)?;
                let order = self.sort_exprs(&sub, std::slice::from_ref(key))?;
                self.first_n_per(sub, vec![ucol(rid)], order, n)
            }
            Op::Take(n, at) => {
                let n = self.const_usize(n, *at)?;
                self.first_n_per(sub, vec![ucol(rid)], vec![], n)
            }
            Op::Where(..)
            | Op::Extend(..)
            | Op::Sort(..)
            | Op::ProjectAway(..)
            | Op::ProjectRename(..)
            | Op::ProjectReorder(..)
            | Op::Parse { .. }
            | Op::MvExpand { .. }
            | Op::Distinct(..) => self.op(sub, op),
            other => {
                let at = match other {
                    Op::Join { at, .. } | Op::MakeSeries { at, .. } => *at,
                    _ => 0,
                };
                self.unsupported(
                    at,
                    "this operator inside mv-apply",
                    "use where, extend, project, summarize, top, take, sort, distinct or count",
                )
            }
        }
    }

    /// `mv-apply`: the sub-query runs on each row's expanded elements; its rows come out with the
    /// row's other columns (a row whose sub-query gives no row is left out).
    pub(super) fn mv_apply(
        &mut self,
        f: Frame,
        items: &[ast::MvItem],
        index: Option<&str>,
        ops: &[Op],
        at: usize,
    ) -> R<Frame> {
        let (base, rid) = self.with_row_id(f)?;
        let mut sub = self.mv_expand(base.clone(), items, index, at)?;
        for op in ops {
            sub = self.apply_op(sub, op, &rid)?;
        }
        if sub.ty(&rid).is_none() {
            return self.err(at, "mv-apply: the sub-query dropped the row it came from");
        }
        let sub_names: Vec<String> = sub.cols.iter().map(|(n, _)| n.clone()).collect();
        let (base_n, sub_cols) = (base.cols.len(), sub.cols.clone());
        let base_cols = base.cols.clone();
        let on = [ast::JoinOn {
            left: rid.clone(),
            right: rid.clone(),
        }];
        let j = self.join(base, sub, JoinKind::Inner, &on, at)?;
        let mut exprs = Vec::new();
        let mut cols = Vec::new();
        for (i, (n, t)) in j.cols.iter().enumerate() {
            let original = if i < base_n {
                &base_cols[i].0
            } else {
                &sub_cols[i - base_n].0
            };
            if *original == rid || (i < base_n && sub_names.contains(original)) {
                continue;
            }
            exprs.push(ucol(n).alias(original));
            cols.push((original.clone(), *t));
        }
        Ok(Frame {
            plan: LogicalPlanBuilder::from(j.plan).project(exprs)?.build()?,
            cols,
            render: j.render,
        })
    }

    // ---- make-series and series functions ---------------------------------------------------------

    fn const_ns(&mut self, e: &ast::Expr, want: KType) -> R<i64> {
        let empty = self.empty_frame()?;
        let (x, t) = self.expr(e, &empty)?;
        match (literal(&x), t == want) {
            (Some(ScalarValue::TimestampNanosecond(Some(v), _)), true) => Ok(*v),
            (Some(ScalarValue::DurationNanosecond(Some(v))), true) => Ok(*v),
            _ => self.err(
                e.at(),
                format!("make-series: expected a constant {}", want.name()),
            ),
        }
    }

    /// `make-series aggs on axis from a to b step s by keys`: one row per group, each aggregation
    /// an array with one value per bin (`default`, 0 unless given, where a bin has no rows), and
    /// the axis column the array of bin starts.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn make_series(
        &mut self,
        f: Frame,
        aggs: &[ast::SeriesAgg],
        on: &ast::Expr,
        from: Option<&ast::Expr>,
        to: Option<&ast::Expr>,
        step: &ast::Expr,
        by: &[NamedExpr],
        at: usize,
    ) -> R<Frame> {
        let (axis, axis_t) = self.expr(on, &f)?;
        if axis_t != KType::DateTime {
            return self.unsupported(
                on.at(),
                &format!("make-series on a {} axis", axis_t.name()),
                "make the axis a datetime",
            );
        }
        let step_ns = self.const_ns(step, KType::TimeSpan)?;
        if step_ns <= 0 {
            return self.err(step.at(), "make-series: the step must be positive");
        }
        let (from_ns, to_ns) = match (from, to) {
            (Some(a), Some(b)) => (
                self.const_ns(a, KType::DateTime)?,
                self.const_ns(b, KType::DateTime)?,
            ),
            _ => {
                // the range of the data, in whole steps, where it is not given
                let plan = LogicalPlanBuilder::from(f.plan.clone())
                    .aggregate(
                        Vec::<Expr>::new(),
                        vec![
                            cast(agg::min(axis.clone()), DataType::Int64).alias("lo"),
                            cast(agg::max(axis.clone()), DataType::Int64).alias("hi"),
                        ],
                    )?
                    .build()?;
                let b = self.needs_data(at, plan)?;
                let get = |c: usize| -> Option<i64> {
                    let b = b.iter().find(|b| b.num_rows() > 0)?;
                    match ScalarValue::try_from_array(b.column(c), 0).ok()? {
                        ScalarValue::Int64(v) => v,
                        _ => None,
                    }
                };
                let lo = match from {
                    Some(a) => self.const_ns(a, KType::DateTime)?,
                    None => get(0).map_or(0, |v| v.div_euclid(step_ns) * step_ns),
                };
                let hi = match to {
                    Some(b) => self.const_ns(b, KType::DateTime)?,
                    None => get(1).map_or(lo, |v| v.div_euclid(step_ns) * step_ns + step_ns),
                };
                (lo, hi)
            }
        };
        // saturating: datetimes a few centuries apart overflow a difference in nanoseconds
        let bins = if to_ns > from_ns {
            to_ns.saturating_sub(from_ns).saturating_add(step_ns - 1) / step_ns
        } else {
            0
        };
        if bins > 1_000_000 {
            return self.err(
                at,
                format!("make-series: {bins} bins is more than 1,000,000"),
            );
        }
        let axis_name = self.auto_name(on, &f.cols);
        // the rows within the range, each with the start of its bin
        let bin = self.fresh("bin");
        let in_range = axis
            .clone()
            .gt_eq(ts_lit(Timestamp(from_ns)))
            .and(axis.clone().lt(ts_lit(Timestamp(to_ns))));
        let mut exprs: Vec<Expr> = f.cols.iter().map(|(n, _)| ucol(n)).collect();
        exprs.push(date_bin(interval(step_ns), axis, ts_lit(Timestamp(from_ns))).alias(&bin));
        let mut cols = f.cols.clone();
        cols.push((bin.clone(), KType::DateTime));
        let binned = Frame {
            plan: LogicalPlanBuilder::from(f.plan)
                .filter(in_range)?
                .project(exprs)?
                .build()?,
            cols,
            render: f.render.clone(),
        };
        let mut keys = by.to_vec();
        keys.push(NamedExpr {
            name: None,
            expr: ast::Expr::Name(bin.clone(), at),
            tuple: Vec::new(),
        });
        let agg_items: Vec<NamedExpr> = aggs.iter().map(|a| a.agg.clone()).collect();
        let s = self.summarize(binned, &agg_items, &keys, at)?;
        let key_cols: Vec<(String, KType)> = s.cols[..by.len()].to_vec();
        let agg_cols: Vec<(String, KType)> = s.cols[by.len() + 1..].to_vec();
        if agg_cols.len() != aggs.len() {
            return self.err(at, "make-series: each aggregation must give one column (arg_max and arg_min give several)");
        }
        // one row per group: the bins and each aggregation's values, in bin order
        let order = vec![ucol(&bin).sort(true, false)];
        let mut lists = vec![agg::array_agg(ucol(&bin))
            .order_by(order.clone())
            .build()?
            .alias("__bins")];
        for (n, _) in &agg_cols {
            lists.push(
                agg::array_agg(ucol(n))
                    .order_by(order.clone())
                    .build()?
                    .alias(n),
            );
        }
        let grouped = LogicalPlanBuilder::from(s.plan)
            .aggregate(
                key_cols.iter().map(|(n, _)| ucol(n)).collect::<Vec<_>>(),
                lists,
            )?
            .build()?;
        let mut out: Vec<Expr> = key_cols.iter().map(|(n, _)| ucol(n)).collect();
        let mut out_cols = key_cols.clone();
        let empty = self.empty_frame()?;
        for ((n, t), a) in agg_cols.iter().zip(aggs) {
            let default = match &a.default {
                Some(d) => {
                    let (e, _) = self.expr(d, &empty)?;
                    match literal(&e) {
                        Some(v) if v.is_null() => "null".to_string(),
                        Some(v) => {
                            let arr = v.to_array()?;
                            crate::udf::scalar_json(&arr, 0)?
                        }
                        None => return self.err(d.at(), "make-series: default must be a constant"),
                    }
                }
                None => "0".to_string(),
            };
            let whole = matches!(t, KType::Long | KType::Int);
            out.push(
                self.call(
                    "kql_series_fill",
                    vec![
                        ucol(n),
                        ucol("__bins"),
                        lit(from_ns),
                        lit(step_ns),
                        lit(bins),
                        lit(default),
                        lit(whole),
                    ],
                )
                .alias(n),
            );
            out_cols.push((n.clone(), KType::Dynamic));
        }
        out.push(
            self.call(
                "kql_series_axis",
                vec![lit(from_ns), lit(step_ns), lit(bins)],
            )
            .alias(&axis_name),
        );
        out_cols.push((axis_name, KType::Dynamic));
        Ok(Frame {
            plan: LogicalPlanBuilder::from(grouped).project(out)?.build()?,
            cols: out_cols,
            render: s.render,
        })
    }

    /// The bag of results of a function returning several (lowered arguments, defaults filled).
    fn several_bag(&mut self, name: &str, args: &[ast::Expr], at: usize, f: &Frame) -> R<Expr> {
        let mut v = Vec::new();
        for a in args {
            let (e, t) = self.expr(a, f)?;
            v.push((e, t));
        }
        let Some((x, xt)) = v.first().cloned() else {
            return self.err(at, format!("{name}() needs a series"));
        };
        if xt != KType::Dynamic {
            return self.err(
                at,
                format!(
                    "{name}() needs a series (a dynamic array), not {}",
                    xt.name()
                ),
            );
        }
        let arg = |i: usize, d: Expr| v.get(i).map(|(e, _)| e.clone()).unwrap_or(d);
        Ok(match name {
            "series_decompose_anomalies" => self.call(
                "kql_series_decompose_anomalies",
                vec![
                    x,
                    arg(1, lit(1.5)),
                    arg(2, lit(-1i64)),
                    arg(3, lit("avg")),
                    arg(4, lit(0i64)),
                    arg(5, lit("ctukey")),
                    arg(6, lit(0.6)),
                ],
            ),
            "series_decompose" => self.call(
                "kql_series_decompose",
                vec![
                    x,
                    arg(1, lit(-1i64)),
                    arg(2, lit("avg")),
                    arg(3, lit(0i64)),
                    arg(4, lit(0.6)),
                ],
            ),
            "series_stats" => self.call("kql_series_stats", vec![x]),
            _ => self.call("kql_series_fit_line", vec![x]),
        })
    }

    /// `(a, b, …) = f(…)` and unnamed calls of functions returning several: one column each.
    #[allow(clippy::type_complexity)]
    pub(super) fn several_columns(
        &mut self,
        ne: &NamedExpr,
        f: &Frame,
    ) -> R<Option<Vec<(String, Expr, KType)>>> {
        let (name, args, at) = match &ne.expr {
            ast::Expr::Call(n, a, at) => (n.as_str(), a, *at),
            other if !ne.tuple.is_empty() => {
                return self.err(other.at(), "(a, b, …) = … needs a function that returns several values (series_decompose_anomalies, series_decompose, series_stats, series_fit_line)")
            }
            _ => return Ok(None),
        };
        let Some(outs) = several_of(name) else {
            if ne.tuple.is_empty() {
                return Ok(None);
            }
            return self.err(
                at,
                format!("{name}() returns one value: name it with name = …"),
            );
        };
        if ne.tuple.is_empty() && ne.name.is_some() {
            return Ok(None);
        }
        let bag = self.several_bag(name, args, at, f)?;
        let prefix = match args.first() {
            Some(ast::Expr::Name(n, _)) => format!("{name}_{n}"),
            _ => name.to_string(),
        };
        let mut out = Vec::new();
        for (i, o) in outs.iter().enumerate() {
            let col = if ne.tuple.is_empty() {
                format!("{prefix}_{o}")
            } else {
                match ne.tuple.get(i) {
                    Some(n) => n.clone(),
                    None => break,
                }
            };
            let t = several_type(name, o);
            let v = self.path(bag.clone(), lit(o.to_string()));
            out.push((col, self.convert(v, KType::Dynamic, t, at)?, t));
        }
        Ok(Some(out))
    }

    /// The `series_*` functions that return one value (the several-valued ones give their first
    /// result when used inside an expression).
    pub(super) fn series_function(
        &mut self,
        name: &str,
        args: &[ast::Expr],
        at: usize,
        f: &Frame,
    ) -> R<Option<(Expr, KType)>> {
        if let Some(outs) = several_of(name) {
            let bag = self.several_bag(name, args, at, f)?;
            let t = several_type(name, outs[0]);
            let v = self.path(bag, lit(outs[0]));
            return Ok(Some((self.convert(v, KType::Dynamic, t, at)?, t)));
        }
        let fill = match name {
            "series_fit_line_dynamic" => {
                let bag = self.several_bag("series_fit_line", args, at, f)?;
                return Ok(Some((bag, KType::Dynamic)));
            }
            "series_fill_const" => "const",
            "series_fill_forward" => "forward",
            "series_fill_backward" => "backward",
            "series_fill_linear" => "linear",
            "series_stats_dynamic" | "series_fir" | "series_outliers" => "",
            _ => return Ok(None),
        };
        let mut v = Vec::new();
        for a in args {
            v.push(self.expr(a, f)?.0);
        }
        if v.is_empty() {
            return self.err(at, format!("{name}() needs a series"));
        }
        let arg = |i: usize, d: Expr| v.get(i).cloned().unwrap_or(d);
        let x = v[0].clone();
        let e = match name {
            "series_stats_dynamic" => self.call("kql_series_stats", vec![x]),
            "series_fir" => {
                if v.len() < 2 {
                    return self.err(at, "series_fir() needs a series and a filter");
                }
                self.call(
                    "kql_series_fir",
                    vec![x, arg(1, lit("[]")), arg(2, lit(true)), arg(3, lit(false))],
                )
            }
            "series_outliers" => self.call(
                "kql_series_outliers",
                vec![
                    x,
                    arg(1, lit("ctukey")),
                    arg(2, lit(ScalarValue::Float64(None))),
                    arg(3, lit(10.0)),
                    arg(4, lit(90.0)),
                ],
            ),
            _ => self.call(
                "kql_series_fill_gaps",
                vec![x, lit(fill), arg(1, lit(ScalarValue::Float64(Some(0.0))))],
            ),
        };
        Ok(Some((e, KType::Dynamic)))
    }

    // ---- evaluate ---------------------------------------------------------------------------------

    /// `evaluate plugin(…)`: `bag_unpack`; the others are named in the error.
    pub(super) fn evaluate(
        &mut self,
        f: Frame,
        plugin: &str,
        args: &[ast::Expr],
        schema: Option<&[(String, String)]>,
        at: usize,
    ) -> R<Frame> {
        match plugin {
            "bag_unpack" => self.bag_unpack(f, args, schema, at),
            "autocluster" | "basket" | "diffpatterns" => self.unsupported(
                at,
                &format!("evaluate {plugin}"),
                "use summarize count() by the candidate columns | top … by count_",
            ),
            "pivot" => self.unsupported(
                at,
                "evaluate pivot",
                "use summarize … by key, column then evaluate bag_unpack(make_bag(…))",
            ),
            other => self.unsupported(
                at,
                &format!("evaluate {other}"),
                "evaluate supports bag_unpack",
            ),
        }
    }

    /// `evaluate bag_unpack(column [, prefix [, columnsConflict [, ignoredProperties]]])
    /// [: (schema)]`: one column per property. Without a schema the properties are found in the
    /// data (sorted by name); a property's type is its values' (long and real mixed → real,
    /// otherwise mixed → dynamic).
    fn bag_unpack(
        &mut self,
        f: Frame,
        args: &[ast::Expr],
        schema: Option<&[(String, String)]>,
        at: usize,
    ) -> R<Frame> {
        let Some(col_e) = args.first() else {
            return self.err(at, "bag_unpack() needs a dynamic column");
        };
        let (bag, bt) = self.expr(col_e, &f)?;
        let bag = self.as_dynamic(bag, bt, col_e.at())?;
        let str_arg = |i: usize| match args.get(i) {
            Some(ast::Expr::Lit(Lit::Str(s), _)) => Some(s.clone()),
            _ => None,
        };
        let prefix = str_arg(1).unwrap_or_default();
        let conflict = str_arg(2).unwrap_or_else(|| "error".into());
        let ignored: Vec<String> = match args.get(3) {
            Some(ast::Expr::Lit(Lit::Dynamic(j), _)) => {
                serde_json::from_str::<Vec<String>>(j).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let source = match col_e {
            ast::Expr::Name(n, _) => Some(n.clone()),
            _ => None,
        };
        let mut props: Vec<(String, KType)> = match schema {
            // the output schema names every output column (`*` = every input column): the ones
            // that are input columns come from the input, the others from the bag
            Some(s) => {
                let mut v = Vec::new();
                for (n, t) in s.iter().filter(|(n, _)| n != "*") {
                    let Some(k) = KType::parse(t) else {
                        return self.err(at, format!("bag_unpack: unknown type '{t}' of {n}"));
                    };
                    if f.ty(n).is_none() || Some(n) == source.as_ref() {
                        v.push((n.strip_prefix(prefix.as_str()).unwrap_or(n).to_string(), k));
                    }
                }
                v
            }
            None => {
                let k = self.fresh("k");
                let plan = LogicalPlanBuilder::from(f.plan.clone())
                    .project(vec![self
                        .call("kql_bag_key_types", vec![bag.clone()])
                        .alias(&k)])?
                    .unnest_column(k.as_str())?
                    .aggregate(vec![ucol(&k)], Vec::<Expr>::new())?
                    .build()?;
                let batches = self.needs_data(at, plan)?;
                let mut found: std::collections::BTreeMap<String, Option<KType>> =
                    Default::default();
                for b in &batches {
                    let s = crate::udf::Strs::of(b.column(0))?;
                    for i in 0..b.num_rows() {
                        let Some((key, ty)) = s.get(i).and_then(|e| e.split_once('\u{1}')) else {
                            continue;
                        };
                        let t = KType::parse(ty);
                        let slot = found.entry(key.to_string()).or_insert(None);
                        *slot = match (*slot, t) {
                            (None, t) => t,
                            (s, None) => s,
                            (Some(a), Some(b)) if a == b => Some(a),
                            (Some(a), Some(b)) if a.numeric() && b.numeric() => Some(KType::Real),
                            _ => Some(KType::Dynamic),
                        };
                    }
                }
                found
                    .into_iter()
                    .map(|(k, t)| (k, t.unwrap_or(KType::Dynamic)))
                    .collect()
            }
        };
        props.retain(|(k, _)| !ignored.contains(k));
        let mut cols: Vec<(String, KType)> = f
            .cols
            .iter()
            .filter(|(n, _)| Some(n) != source.as_ref())
            .cloned()
            .collect();
        let mut exprs: Vec<Expr> = cols.iter().map(|(n, _)| ucol(n)).collect();
        for (k, t) in props {
            let name = format!("{prefix}{k}");
            if let Some(i) = cols.iter().position(|(n, _)| *n == name) {
                match conflict.as_str() {
                    "replace_source" => {
                        cols.remove(i);
                        exprs.remove(i);
                    }
                    "keep_source" => continue,
                    _ => {
                        return self.err(at, format!("bag_unpack: property '{k}' is also a column (give a prefix, or columnsConflict 'replace_source' or 'keep_source')"))
                    }
                }
            }
            let v = self.path(bag.clone(), lit(k.clone()));
            exprs.push(self.convert(v, KType::Dynamic, t, at)?.alias(&name));
            cols.push((name, t));
        }
        let out = Frame {
            plan: LogicalPlanBuilder::from(f.plan).project(exprs)?.build()?,
            cols,
            render: f.render,
        };
        match schema {
            Some(s) if s.iter().all(|(n, _)| n != "*") => {
                let mut keep = Vec::new();
                for (n, _) in s {
                    match out.ty(n) {
                        Some(t) => keep.push((n.clone(), t)),
                        None => {
                            return self.err(
                                at,
                                format!("bag_unpack: no column '{n}' for the output schema"),
                            )
                        }
                    }
                }
                self.select(out, keep)
            }
            _ => Ok(out),
        }
    }

    // ---- top-nested -------------------------------------------------------------------------------

    /// `top-nested N of col by agg, …`: the top values of each level within each value of the
    /// level above, with each level's aggregate (`aggregated_<col>` unless named).
    pub(super) fn top_nested(
        &mut self,
        f: Frame,
        levels: &[ast::NestedLevel],
        at: usize,
    ) -> R<Frame> {
        if let Some(l) = levels.iter().find(|l| l.others.is_some()) {
            return self.unsupported(
                l.of.expr.at(),
                "top-nested … with others",
                "leave out with others",
            );
        }
        let mut keys: Vec<NamedExpr> = Vec::new();
        let mut agg_names: Vec<String> = Vec::new();
        let mut result: Option<Frame> = None;
        for l in levels {
            let of_name = match (&l.of.name, &l.of.expr) {
                (Some(n), _) => n.clone(),
                (None, e) => self.auto_name(e, &f.cols),
            };
            keys.push(NamedExpr {
                name: Some(of_name.clone()),
                expr: l.of.expr.clone(),
                tuple: Vec::new(),
            });
            let agg_name =
                l.by.name
                    .clone()
                    .unwrap_or_else(|| format!("aggregated_{of_name}"));
            let item = NamedExpr {
                name: Some(agg_name.clone()),
                expr: l.by.expr.clone(),
                tuple: Vec::new(),
            };
            let mut level = self.summarize(f.clone(), &[item], &keys, at)?;
            let parents: Vec<String> = keys[..keys.len() - 1]
                .iter()
                .filter_map(|k| k.name.clone())
                .collect();
            // only the values under the rows the level above kept
            if let Some(prev) = result.take() {
                let on: Vec<ast::JoinOn> = parents
                    .iter()
                    .map(|p| ast::JoinOn {
                        left: p.clone(),
                        right: p.clone(),
                    })
                    .collect();
                let level_cols = level.cols.clone();
                let j = self.join(level, prev.clone(), JoinKind::Inner, &on, at)?;
                // the level's columns, then the aggregates of the levels above
                let mut cols = level_cols;
                for a in &agg_names {
                    if let Some(t) = prev.ty(a) {
                        cols.push((a.clone(), t));
                    }
                }
                level = self.select(j, cols)?;
            }
            if let Some(n) = &l.n {
                let n = self.const_usize(n, at)?;
                let order = vec![ucol(&agg_name).sort(!l.desc, false)];
                let part = parents.iter().map(|p| ucol(p)).collect();
                level = self.first_n_per(level, part, order, n)?;
            }
            agg_names.push(agg_name);
            result = Some(level);
        }
        let Some(r) = result else {
            return self.err(at, "top-nested needs a level");
        };
        // Kusto's column order: each level's value then its aggregate
        let mut cols = Vec::new();
        for (k, a) in keys.iter().zip(&agg_names) {
            for n in [k.name.clone().unwrap_or_default(), a.clone()] {
                if let Some(t) = r.ty(&n) {
                    cols.push((n, t));
                }
            }
        }
        self.select(r, cols)
    }
}
