//! KQL syntax tree → DataFusion logical plans. Every expression is typed with its KQL type as
//! it is lowered, which is what gives `dynamic` its KQL behaviour (comparisons and string
//! operators convert it to the other side's type) and lets errors name types.

use super::ast::{
    self, BinOp, JoinKind, LetValue, Lit, NamedExpr, Op, ParsePart, SortKey, Source, Statement,
    StrOp, Tabular,
};
use crate::engine::{ts_lit, Engine, Planned};
use crate::tables::{c, Fns};
use crate::types::{datetime_type, KType};
use crate::QueryError;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
use datafusion::common::{Column, JoinType, ScalarValue, UnnestOptions};
use datafusion::functions::core::expr_fn::{coalesce, get_field};
use datafusion::functions::datetime::expr_fn::{date_bin, date_part, date_trunc};
use datafusion::functions::math::expr_fn::{abs, floor, round};
use datafusion::functions::regex::expr_fn::regexp_replace;
use datafusion::functions::string::expr_fn::{
    concat, lower as sql_lower, replace as sql_replace, upper,
};
use datafusion::functions::unicode::expr_fn::{character_length, substr, substring};
use datafusion::functions_aggregate::expr_fn as agg;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    cast, lit, when, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, SortExpr,
};
use std::collections::HashMap;
use std::sync::Arc;
use trailwarden_model::Timestamp;

mod ops;

/// A tabular value during lowering: its plan and its columns with KQL types.
#[derive(Clone)]
struct Frame {
    plan: LogicalPlan,
    cols: Vec<(String, KType)>,
    render: Option<String>,
}

impl Frame {
    fn ty(&self, name: &str) -> Option<KType> {
        self.cols.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }
}

type R<T> = Result<T, QueryError>;

struct Lowerer<'e> {
    eng: &'e Engine,
    text: &'e str,
    fns: Arc<Fns>,
    scalars: HashMap<String, (Expr, KType)>,
    tabulars: HashMap<String, Frame>,
    functions: HashMap<String, ast::Function>,
    /// Calls of `let` functions in progress (bounded: functions may call each other).
    calls: usize,
    /// Results of the plans run for values planning needs (`toscalar`, `bag_unpack` keys, …), by
    /// the order lowering asked for them.
    data: &'e HashMap<usize, Vec<RecordBatch>>,
    /// How many of those this round has asked for.
    asked: usize,
    /// The plan to run before planning can go on, and the key of its result.
    pending: Option<(usize, LogicalPlan)>,
    now: Timestamp,
    seq: usize,
}

/// What lowering gives: the plans, or a plan whose result it needs first.
pub enum Lowered {
    /// One plan per tabular statement.
    Done(Vec<Planned>),
    /// Run this plan, keep its result under this key, and lower again.
    NeedsData(usize, LogicalPlan),
}

/// Lower a parsed query: one plan per tabular statement. `data` holds the results of the plans
/// earlier rounds asked for.
pub fn lower(
    eng: &Engine,
    text: &str,
    q: &ast::Query,
    data: &HashMap<usize, Vec<RecordBatch>>,
) -> R<Lowered> {
    let mut l = Lowerer {
        eng,
        text,
        fns: eng.fns().clone(),
        scalars: HashMap::new(),
        tabulars: HashMap::new(),
        functions: HashMap::new(),
        calls: 0,
        data,
        asked: 0,
        pending: None,
        now: eng.now(),
        seq: 0,
    };
    let mut out = Vec::new();
    let mut run = || -> R<()> {
        for s in &q.statements {
            match s {
                Statement::Let { name, value, .. } => l.let_stmt(name, value)?,
                Statement::Tabular(t) => {
                    let f = l.tabular(t)?;
                    out.push(Planned {
                        kinds: f.cols.iter().map(|(_, t)| *t).collect(),
                        plan: f.plan,
                        render: f.render,
                    });
                }
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => Ok(Lowered::Done(out)),
        Err(QueryError::NeedsData(_)) => match l.pending.take() {
            Some((key, plan)) => Ok(Lowered::NeedsData(key, plan)),
            None => Err(QueryError::Engine("internal: no pending data plan".into())),
        },
        Err(e) => Err(e),
    }
}

fn ucol(name: &str) -> Expr {
    c(name)
}

fn is_udf(e: &Expr, name: &str) -> Option<Vec<Expr>> {
    match e {
        Expr::ScalarFunction(ScalarFunction { func, args }) if func.name() == name => {
            Some(args.clone())
        }
        _ => None,
    }
}

fn duration(ns: i64) -> Expr {
    lit(ScalarValue::DurationNanosecond(Some(ns)))
}

fn interval(ns: i64) -> Expr {
    lit(ScalarValue::IntervalMonthDayNano(Some(
        IntervalMonthDayNano::new(0, 0, ns),
    )))
}

fn null_of(t: KType) -> Expr {
    lit(ScalarValue::try_from(&t.arrow()).unwrap_or(ScalarValue::Null))
}

/// The literal value of an expression, when it is one.
/// A conversion after the aggregation: a UDF over the aggregate's column, with more arguments.
type Post = (&'static str, Vec<Expr>);

/// A column-name pattern with `*` for any run of characters (case-sensitive, like Kusto's).
fn glob(pat: &str, name: &str) -> bool {
    let parts: Vec<&str> = pat.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pat == name;
    }
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

impl<'e> Lowerer<'e> {
    fn err<T>(&self, at: usize, msg: impl Into<String>) -> R<T> {
        Err(QueryError::semantic(self.text, at, msg))
    }

    fn unsupported<T>(&self, at: usize, feature: &str, hint: &str) -> R<T> {
        Err(QueryError::unsupported(self.text, at, feature, hint))
    }

    fn call(&self, name: &str, args: Vec<Expr>) -> Expr {
        self.fns.call(name, args)
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("__{prefix}{}", self.seq)
    }

    fn empty_frame(&self) -> R<Frame> {
        Ok(Frame {
            plan: LogicalPlanBuilder::empty(true).build()?,
            cols: Vec::new(),
            render: None,
        })
    }

    // ---- tabular ----------------------------------------------------------------------------

    #[recursive::recursive] // the stack grows on demand: trees are up to parser::MAX_OPERATORS deep
    fn tabular(&mut self, t: &Tabular) -> R<Frame> {
        let mut f = self.source(&t.source)?;
        for op in &t.ops {
            f = self.op(f, op)?;
        }
        Ok(f)
    }

    fn source(&mut self, s: &Source) -> R<Frame> {
        match s {
            Source::Paren(t) => self.tabular(t),
            Source::Name(name, at) => self.table(name, *at),
            Source::Union(u, _) => self.union_op(None, u),
            Source::Datatable { cols, values, at } => self.datatable(cols, values, *at),
            Source::Range {
                name,
                from,
                to,
                step,
                at,
            } => self.range(name, from, to, step, *at),
            Source::Search { tables, pred, at } => self.search_source(tables, pred, *at),
            Source::Call(name, args, at) => self.call_tabular(name, args, None, *at),
            Source::Print(items, _) => {
                let f = self.empty_frame()?;
                let mut exprs = Vec::new();
                let mut cols = Vec::new();
                for (i, ne) in items.iter().enumerate() {
                    let (e, t) = self.expr(&ne.expr, &f)?;
                    let name = ne.name.clone().unwrap_or_else(|| format!("print_{i}"));
                    exprs.push(e.alias(&name));
                    cols.push((name, t));
                }
                Ok(Frame {
                    plan: LogicalPlanBuilder::from(f.plan).project(exprs)?.build()?,
                    cols,
                    render: None,
                })
            }
        }
    }

    fn table(&mut self, name: &str, at: usize) -> R<Frame> {
        if let Some(f) = self.tabulars.get(name) {
            return Ok(f.clone());
        }
        let Some(t) = self.eng.table(name) else {
            let names: Vec<&str> = self.eng.tables().iter().map(|t| t.name).collect();
            return self.err(
                at,
                format!("unknown table '{name}' (tables: {})", names.join(", ")),
            );
        };
        if t.name != name {
            return self.err(
                at,
                format!(
                    "unknown table '{name}'; table names are case-sensitive: did you mean '{}'?",
                    t.name
                ),
            );
        }
        // list columns (arrays) become dynamic JSON text
        let plan = t.plan.clone();
        let mut exprs = Vec::new();
        let mut any_list = false;
        for (field, info) in plan.schema().fields().iter().zip(&t.columns) {
            if matches!(field.data_type(), DataType::List(_)) {
                any_list = true;
                exprs.push(
                    self.call("kql_list_json", vec![ucol(&info.name)])
                        .alias(&info.name),
                );
            } else {
                exprs.push(ucol(&info.name));
            }
        }
        let plan = if any_list {
            LogicalPlanBuilder::from(plan).project(exprs)?.build()?
        } else {
            plan
        };
        Ok(Frame {
            plan,
            cols: t.columns.iter().map(|c| (c.name.clone(), c.ty)).collect(),
            render: None,
        })
    }

    fn op(&mut self, f: Frame, op: &Op) -> R<Frame> {
        match op {
            Op::Where(e, _) => {
                let (p, t) = self.expr(e, &f)?;
                let p = self.to_bool(p, t, e.at())?;
                Ok(Frame {
                    plan: LogicalPlanBuilder::from(f.plan).filter(p)?.build()?,
                    ..f
                })
            }
            Op::Project(items, _) => self.project(f, items, false),
            Op::Extend(items, _) => self.project(f, items, true),
            Op::ProjectAway(names, _) => {
                let away = self.match_names(&f, names)?;
                let keep: Vec<(String, KType)> = f
                    .cols
                    .iter()
                    .filter(|(n, _)| !away.contains(n))
                    .cloned()
                    .collect();
                self.select(f, keep)
            }
            Op::ProjectKeep(names, _) => {
                let keep_names = self.match_names(&f, names)?;
                let keep: Vec<(String, KType)> = f
                    .cols
                    .iter()
                    .filter(|(n, _)| keep_names.contains(n))
                    .cloned()
                    .collect();
                self.select(f, keep)
            }
            Op::ProjectReorder(names, _) => {
                let first = self.match_names(&f, names)?;
                let mut cols: Vec<(String, KType)> = first
                    .iter()
                    .filter_map(|n| f.cols.iter().find(|(c, _)| c == n).cloned())
                    .collect();
                cols.extend(f.cols.iter().filter(|(n, _)| !first.contains(n)).cloned());
                self.select(f, cols)
            }
            Op::ProjectRename(pairs, _) => {
                let mut exprs = Vec::new();
                let mut cols = Vec::new();
                for (n, t) in &f.cols {
                    let new = pairs
                        .iter()
                        .find(|(_, old, _)| old == n)
                        .map(|(new, _, _)| new.clone());
                    let name = new.unwrap_or_else(|| n.clone());
                    exprs.push(ucol(n).alias(&name));
                    cols.push((name, *t));
                }
                for (_, old, at) in pairs {
                    if f.ty(old).is_none() {
                        return self.err(*at, format!("project-rename: no column '{old}'"));
                    }
                }
                Ok(Frame {
                    plan: LogicalPlanBuilder::from(f.plan).project(exprs)?.build()?,
                    cols,
                    render: f.render,
                })
            }
            Op::Summarize { aggs, by, at } => self.summarize(f, aggs, by, *at),
            Op::Top { n, key, at } => {
                let n = self.const_usize(n, *at)?;
                let sorted = self.sort(f, std::slice::from_ref(key))?;
                Ok(Frame {
                    plan: LogicalPlanBuilder::from(sorted.plan)
                        .limit(0, Some(n))?
                        .build()?,
                    ..sorted
                })
            }
            Op::Take(n, at) => {
                let n = self.const_usize(n, *at)?;
                Ok(Frame {
                    plan: LogicalPlanBuilder::from(f.plan)
                        .limit(0, Some(n))?
                        .build()?,
                    ..f
                })
            }
            Op::Sort(keys, _) => self.sort(f, keys),
            Op::Distinct(items, at) => {
                if items.is_empty() {
                    return Ok(Frame {
                        plan: LogicalPlanBuilder::from(f.plan).distinct()?.build()?,
                        ..f
                    });
                }
                self.summarize(f, &[], items, *at)
            }
            Op::Count(_) => Ok(Frame {
                plan: LogicalPlanBuilder::from(f.plan)
                    .aggregate(
                        Vec::<Expr>::new(),
                        vec![agg::count(lit(1i64)).alias("Count")],
                    )?
                    .build()?,
                cols: vec![("Count".into(), KType::Long)],
                render: f.render,
            }),
            Op::Join {
                kind,
                right,
                on,
                at,
            } => {
                let r = self.tabular(right)?;
                self.join(f, r, *kind, on, *at)
            }
            Op::Union(u, _) => self.union_op(Some(f), u),
            Op::MvExpand { items, index, at } => self.mv_expand(f, items, index.as_deref(), *at),
            Op::Lookup {
                inner,
                right,
                on,
                at,
            } => {
                let r = self.tabular(right)?;
                self.lookup(f, r, *inner, on, *at)
            }
            Op::GetSchema(_) => self.getschema(f),
            Op::Invoke(name, args, at) => self.call_tabular(name, args, Some(f), *at),
            Op::Search(pred, at) => self.search(f, pred, *at),
            Op::MvApply {
                items,
                index,
                ops,
                at,
            } => self.mv_apply(f, items, index.as_deref(), ops, *at),
            Op::MakeSeries {
                aggs,
                on,
                from,
                to,
                step,
                by,
                at,
            } => self.make_series(f, aggs, on, from.as_ref(), to.as_ref(), step, by, *at),
            Op::Evaluate {
                plugin,
                args,
                schema,
                at,
            } => self.evaluate(f, plugin, args, schema.as_deref(), *at),
            Op::TopNested(levels, at) => self.top_nested(f, levels, *at),
            Op::Parse { expr, pattern, at } => self.parse_op(f, expr, pattern, *at),
            Op::Render { chart, .. } => Ok(Frame {
                render: Some(chart.clone()),
                ..f
            }),
        }
    }

    fn match_names(&self, f: &Frame, names: &[(String, usize)]) -> R<Vec<String>> {
        let mut out = Vec::new();
        for (n, at) in names {
            if n.contains('*') {
                out.extend(
                    f.cols
                        .iter()
                        .filter(|(c, _)| glob(n, c) && !out.contains(c))
                        .map(|(c, _)| c.clone())
                        .collect::<Vec<_>>(),
                );
            } else if f.ty(n).is_some() {
                out.push(n.clone());
            } else {
                return self.err(*at, format!("no column '{n}'"));
            }
        }
        Ok(out)
    }

    fn select(&self, f: Frame, cols: Vec<(String, KType)>) -> R<Frame> {
        let exprs: Vec<Expr> = cols.iter().map(|(n, _)| ucol(n)).collect();
        Ok(Frame {
            plan: LogicalPlanBuilder::from(f.plan).project(exprs)?.build()?,
            cols,
            render: f.render,
        })
    }

    /// The name KQL gives an unnamed expression.
    fn auto_name(&mut self, e: &ast::Expr, taken: &[(String, KType)]) -> String {
        match e {
            ast::Expr::Name(n, _) => n.clone(),
            ast::Expr::Call(f, args, _)
                if (f == "bin" || f == "floor" || f == "bin_at")
                    && matches!(args.first(), Some(ast::Expr::Name(_, _))) =>
            {
                match &args[0] {
                    ast::Expr::Name(n, _) => n.clone(),
                    _ => String::new(),
                }
            }
            // conversions keep their argument's name: by tostring(User.username) → User_username
            ast::Expr::Call(f, args, _)
                if args.len() == 1
                    && matches!(
                        f.as_str(),
                        "tostring"
                            | "toint"
                            | "tolong"
                            | "todouble"
                            | "toreal"
                            | "tobool"
                            | "todatetime"
                            | "totimespan"
                            | "todynamic"
                            | "parse_json"
                            | "tolower"
                            | "toupper"
                    )
                    && matches!(
                        args[0],
                        ast::Expr::Name(..) | ast::Expr::Member(..) | ast::Expr::Index(..)
                    ) =>
            {
                self.auto_name(&args[0], taken)
            }
            ast::Expr::Member(..) | ast::Expr::Index(..) => match path_name(e) {
                Some(n) => n,
                None => self.column_n(taken),
            },
            _ => self.column_n(taken),
        }
    }

    fn column_n(&self, taken: &[(String, KType)]) -> String {
        let mut i = 1;
        loop {
            let n = format!("Column{i}");
            if !taken.iter().any(|(t, _)| *t == n) {
                return n;
            }
            i += 1;
        }
    }

    fn project(&mut self, f: Frame, items: &[NamedExpr], extend: bool) -> R<Frame> {
        let mut out: Vec<(String, Expr, KType)> = if extend {
            f.cols
                .iter()
                .map(|(n, t)| (n.clone(), ucol(n), *t))
                .collect()
        } else {
            Vec::new()
        };
        for ne in items {
            if let Some(several) = self.several_columns(ne, &f)? {
                for (name, e, t) in several {
                    match out.iter_mut().find(|(n, _, _)| *n == name) {
                        Some(slot) => *slot = (name, e, t),
                        None => out.push((name, e, t)),
                    }
                }
                continue;
            }
            let (e, t) = self.expr(&ne.expr, &f)?;
            let taken: Vec<(String, KType)> = out.iter().map(|(n, _, t)| (n.clone(), *t)).collect();
            let name = match &ne.name {
                Some(n) => n.clone(),
                None => self.auto_name(&ne.expr, &taken),
            };
            if let Some(slot) = out.iter_mut().find(|(n, _, _)| *n == name) {
                *slot = (name, e, t);
            } else {
                out.push((name, e, t));
            }
        }
        let exprs: Vec<Expr> = out.iter().map(|(n, e, _)| e.clone().alias(n)).collect();
        Ok(Frame {
            plan: LogicalPlanBuilder::from(f.plan).project(exprs)?.build()?,
            cols: out.into_iter().map(|(n, _, t)| (n, t)).collect(),
            render: f.render,
        })
    }

    fn sort_exprs(&mut self, f: &Frame, keys: &[SortKey]) -> R<Vec<SortExpr>> {
        keys.iter()
            .map(|k| {
                let (e, _) = self.expr(&k.expr, f)?;
                let nulls_first = k.nulls_first.unwrap_or(!k.desc);
                Ok(e.sort(!k.desc, nulls_first))
            })
            .collect()
    }

    fn sort(&mut self, f: Frame, keys: &[SortKey]) -> R<Frame> {
        let s = self.sort_exprs(&f, keys)?;
        Ok(Frame {
            plan: LogicalPlanBuilder::from(f.plan).sort(s)?.build()?,
            ..f
        })
    }

    fn const_usize(&mut self, e: &ast::Expr, at: usize) -> R<usize> {
        let empty = self.empty_frame()?;
        let (x, _) = self.expr(e, &empty)?;
        match literal(&x) {
            Some(ScalarValue::Int64(Some(n))) if *n >= 0 => Ok(*n as usize),
            Some(ScalarValue::Int32(Some(n))) if *n >= 0 => Ok(*n as usize),
            _ => self.err(at, "expected a constant, non-negative number of rows"),
        }
    }

    // ---- summarize --------------------------------------------------------------------------

    fn summarize(
        &mut self,
        f: Frame,
        aggs: &[NamedExpr],
        by: &[NamedExpr],
        _at: usize,
    ) -> R<Frame> {
        let mut groups = Vec::new();
        let mut cols: Vec<(String, KType)> = Vec::new();
        for ne in by {
            let (e, t) = self.expr(&ne.expr, &f)?;
            let name = match &ne.name {
                Some(n) => n.clone(),
                None => self.auto_name(&ne.expr, &cols),
            };
            groups.push(e.alias(&name));
            cols.push((name, t));
        }
        let mut aggr = Vec::new();
        // post-aggregation conversions (lists to dynamic JSON)
        let mut post: Vec<(String, Option<Expr>)> =
            cols.iter().map(|(n, _)| (n.clone(), None)).collect();
        // expressions over aggregations (`countif(…) * 100.0 / count()`, `array_sort_asc(make_set(x))`)
        // are computed after the aggregation, from hidden aggregate columns
        let mut computed: Vec<(String, ast::Expr)> = Vec::new();
        let mut order: Vec<String> = cols.iter().map(|(n, _)| n.clone()).collect();
        for ne in aggs {
            let direct = matches!(&ne.expr, ast::Expr::Call(fname, _, _) if is_aggregation(fname));
            if !direct {
                let mut hidden = Vec::new();
                let rewritten = self.extract_aggs(&ne.expr, &f, &mut hidden)?;
                if hidden.is_empty() {
                    return self.err(
                        ne.expr.at(),
                        "summarize needs an aggregation function (count(), sum(x), dcount(x), …)",
                    );
                }
                for (name, e, t, conv) in hidden {
                    aggr.push(e.alias(&name));
                    post.push((
                        name.clone(),
                        conv.map(|(c, extra)| self.call(c, [vec![ucol(&name)], extra].concat())),
                    ));
                    cols.push((name, t));
                }
                let taken = cols.clone();
                let name = match &ne.name {
                    Some(n) => n.clone(),
                    None => self.column_n(&taken),
                };
                order.push(name.clone());
                computed.push((name, rewritten));
                continue;
            }
            let (name_hint, fname, args, at) = match &ne.expr {
                ast::Expr::Call(fname, args, at) => {
                    (ne.name.clone(), fname.clone(), args.clone(), *at)
                }
                other => return self.err(other.at(), "summarize needs an aggregation function"),
            };
            let by_names: Vec<String> = cols.iter().map(|(n, _)| n.clone()).collect();
            for (name, e, t, conv) in
                self.aggregation(&f, &fname, &args, name_hint, at, &by_names)?
            {
                let name = unique(&name, &cols);
                order.push(name.clone());
                aggr.push(e.alias(&name));
                post.push((
                    name.clone(),
                    conv.map(|(c, extra)| self.call(c, [vec![ucol(&name)], extra].concat())),
                ));
                cols.push((name, t));
            }
        }
        let mut plan = LogicalPlanBuilder::from(f.plan)
            .aggregate(groups, aggr)?
            .build()?;
        if post.iter().any(|(_, p)| p.is_some()) {
            let exprs: Vec<Expr> = post
                .into_iter()
                .map(|(n, p)| match p {
                    Some(e) => e.alias(&n),
                    None => ucol(&n),
                })
                .collect();
            plan = LogicalPlanBuilder::from(plan).project(exprs)?.build()?;
        }
        let mut frame = Frame {
            plan,
            cols,
            render: f.render,
        };
        if !computed.is_empty() {
            let mut exprs = Vec::new();
            let mut out_cols = Vec::new();
            for name in &order {
                if let Some((_, e)) = computed.iter().find(|(n, _)| n == name) {
                    let (x, t) = self.expr(e, &frame)?;
                    exprs.push(x.alias(name));
                    out_cols.push((name.clone(), t));
                } else if let Some(t) = frame.ty(name) {
                    exprs.push(ucol(name));
                    out_cols.push((name.clone(), t));
                }
            }
            frame = Frame {
                plan: LogicalPlanBuilder::from(frame.plan)
                    .project(exprs)?
                    .build()?,
                cols: out_cols,
                render: frame.render,
            };
        }
        Ok(frame)
    }

    /// Replace each aggregation call inside `e` by a hidden column, collecting the aggregations.
    #[allow(clippy::type_complexity)]
    #[recursive::recursive] // the stack grows on demand: trees are up to parser::MAX_OPERATORS deep
    fn extract_aggs(
        &mut self,
        e: &ast::Expr,
        f: &Frame,
        out: &mut Vec<(String, Expr, KType, Option<Post>)>,
    ) -> R<ast::Expr> {
        Ok(match e {
            ast::Expr::Call(name, args, at) if is_aggregation(name) => {
                let mut v = self.aggregation(f, name, args, None, *at, &[])?;
                if v.len() != 1 {
                    return self.err(*at, format!("{name}() cannot be used inside an expression"));
                }
                let (_, x, t, conv) = v.remove(0);
                let hidden = self.fresh("agg");
                out.push((hidden.clone(), x, t, conv));
                ast::Expr::Name(hidden, *at)
            }
            ast::Expr::Call(name, args, at) => {
                let args = args
                    .iter()
                    .map(|a| self.extract_aggs(a, f, out))
                    .collect::<R<Vec<_>>>()?;
                ast::Expr::Call(name.clone(), args, *at)
            }
            ast::Expr::Bin(op, l, r, at) => ast::Expr::Bin(
                *op,
                Box::new(self.extract_aggs(l, f, out)?),
                Box::new(self.extract_aggs(r, f, out)?),
                *at,
            ),
            ast::Expr::Str(op, n, l, r, at) => ast::Expr::Str(
                *op,
                *n,
                Box::new(self.extract_aggs(l, f, out)?),
                Box::new(self.extract_aggs(r, f, out)?),
                *at,
            ),
            ast::Expr::Neg(x, at) => ast::Expr::Neg(Box::new(self.extract_aggs(x, f, out)?), *at),
            ast::Expr::Member(b, k, at) => {
                ast::Expr::Member(Box::new(self.extract_aggs(b, f, out)?), k.clone(), *at)
            }
            ast::Expr::Index(b, i, at) => ast::Expr::Index(
                Box::new(self.extract_aggs(b, f, out)?),
                Box::new(self.extract_aggs(i, f, out)?),
                *at,
            ),
            other => other.clone(),
        })
    }

    /// One aggregation call: `(name, aggregate expr, type, post-conversion UDF)`; arg_max and
    /// arg_min produce several columns.
    #[allow(clippy::type_complexity)]
    fn aggregation(
        &mut self,
        f: &Frame,
        fname: &str,
        args: &[ast::Expr],
        name: Option<String>,
        at: usize,
        by: &[String],
    ) -> R<Vec<(String, Expr, KType, Option<Post>)>> {
        let arg_name = |i: usize| -> String {
            match args.get(i) {
                Some(ast::Expr::Name(n, _)) => n.clone(),
                _ => String::new(),
            }
        };
        let named = |default: String| name.clone().unwrap_or(default);
        let need = |n: usize| -> R<()> {
            if args.len() < n {
                return Err(QueryError::semantic(
                    self.text,
                    at,
                    format!("{fname}() needs {n} argument(s)"),
                ));
            }
            Ok(())
        };
        let one = |v: (String, Expr, KType)| Ok(vec![(v.0, v.1, v.2, None)]);
        match fname {
            "count" => one((named("count_".into()), agg::count(lit(1i64)), KType::Long)),
            "countif" => {
                need(1)?;
                let (p, t) = self.expr(&args[0], f)?;
                let p = self.to_bool(p, t, args[0].at())?;
                one((named("countif_".into()), agg::count(when(p, lit(1i64)).end()?), KType::Long))
            }
            "dcount" | "count_distinct" => {
                need(1)?;
                let (e, _) = self.expr(&args[0], f)?;
                one((named(format!("dcount_{}", arg_name(0))), agg::count_distinct(e), KType::Long))
            }
            "dcountif" => {
                need(2)?;
                let (e, _) = self.expr(&args[0], f)?;
                let (p, t) = self.expr(&args[1], f)?;
                let p = self.to_bool(p, t, args[1].at())?;
                one((named(format!("dcountif_{}", arg_name(0))), agg::count_distinct(when(p, e).end()?), KType::Long))
            }
            "sum" | "sumif" | "avg" | "avgif" | "min" | "max" | "minif" | "maxif" | "stdev" | "variance" => {
                need(if fname.ends_with("if") { 2 } else { 1 })?;
                let (mut e, t) = self.expr(&args[0], f)?;
                let t = if t == KType::Dynamic {
                    e = self.call("kql_dyn_todouble", vec![e]);
                    KType::Real
                } else {
                    t
                };
                if fname.ends_with("if") {
                    let (p, pt) = self.expr(&args[1], f)?;
                    let p = self.to_bool(p, pt, args[1].at())?;
                    e = when(p, e).end()?;
                }
                let base = fname.trim_end_matches("if");
                let (x, rt) = match base {
                    "sum" => (agg::sum(e), if t == KType::Real { KType::Real } else if t == KType::TimeSpan { KType::TimeSpan } else { KType::Long }),
                    "avg" => (agg::avg(e), KType::Real),
                    "min" => (agg::min(e), t),
                    "max" => (agg::max(e), t),
                    "stdev" => (datafusion::functions_aggregate::stddev::stddev(e), KType::Real),
                    _ => (datafusion::functions_aggregate::variance::var_sample(e), KType::Real),
                };
                one((named(format!("{base}_{}", arg_name(0))), x, rt))
            }
            "make_set" | "make_list" | "make_set_if" | "make_list_if" => {
                need(1)?;
                let (mut e, t) = self.expr(&args[0], f)?;
                if fname.ends_with("_if") {
                    need(2)?;
                    let (p, pt) = self.expr(&args[1], f)?;
                    let p = self.to_bool(p, pt, args[1].at())?;
                    e = when(p, e).end()?;
                }
                let _ = t;
                let set = fname.starts_with("make_set");
                let x = if set {
                    agg::array_agg(e).distinct().build()?
                } else {
                    agg::array_agg(e)
                };
                let prefix = if set { "set" } else { "list" };
                Ok(vec![(named(format!("{prefix}_{}", arg_name(0))), x, KType::Dynamic, Some(("kql_list_json", vec![])))])
            }
            "make_bag" | "make_bag_if" => {
                need(if fname == "make_bag_if" { 2 } else { 1 })?;
                let (e, t) = self.expr(&args[0], f)?;
                if t != KType::Dynamic {
                    return self.err(at, format!("{fname}() needs a dynamic property bag, not {}", t.name()));
                }
                let mut keep = e.clone().is_not_null();
                if fname == "make_bag_if" {
                    let (p, pt) = self.expr(&args[1], f)?;
                    keep = keep.and(self.to_bool(p, pt, args[1].at())?);
                }
                let bags = agg::array_agg(e).filter(keep).build()?;
                Ok(vec![(named(format!("bag_{}", arg_name(0))), bags, KType::Dynamic, Some(("kql_make_bag", vec![])))])
            }
            "percentile" | "percentiles" => {
                need(2)?;
                let (e, t) = self.expr(&args[0], f)?;
                if !t.numeric() && t != KType::Dynamic && t != KType::DateTime {
                    return self.err(at, format!("{fname}() needs a number, not {}", t.name()));
                }
                let x = if t == KType::Dynamic {
                    self.call("kql_dyn_todouble", vec![e])
                } else {
                    cast(e, DataType::Float64)
                };
                let values = agg::array_agg(x.clone()).filter(x.is_not_null()).build()?;
                let rt = if matches!(t, KType::Long | KType::Int) { KType::Long } else { KType::Real };
                let mut out = Vec::new();
                for (i, pa) in args[1..].iter().enumerate() {
                    let (pe, _) = self.expr(pa, f)?;
                    let p = match literal(&pe) {
                        Some(ScalarValue::Int64(Some(v))) => *v as f64,
                        Some(ScalarValue::Float64(Some(v))) => *v,
                        _ => return self.err(pa.at(), format!("{fname}(): the percentile must be a constant number")),
                    };
                    if !(0.0..=100.0).contains(&p) {
                        return self.err(pa.at(), format!("{fname}(): the percentile {p} is not within 0..100"));
                    }
                    let label = format!("{p}").replace('.', "_");
                    let default = format!("percentile_{}_{label}", arg_name(0));
                    let col = if fname == "percentile" && i == 0 { named(default) } else { default };
                    let conv = if rt == KType::Long { "kql_percentile_long" } else { "kql_percentile" };
                    out.push((col, values.clone(), rt, Some((conv, vec![lit(p)]))));
                }
                if fname == "percentile" && out.len() != 1 {
                    return self.err(at, "percentile() takes one percentile: percentiles() takes several");
                }
                Ok(out)
            }
            "any" | "take_any" => {
                need(1)?;
                let mut out = Vec::new();
                for (i, a) in args.iter().enumerate() {
                    let (e, t) = self.expr(a, f)?;
                    let n = if i == 0 { named(arg_name(i)) } else { arg_name(i) };
                    let n = if n.is_empty() { format!("any_{i}") } else { n };
                    out.push((n, agg::first_value(e, vec![]), t, None));
                }
                Ok(out)
            }
            "arg_max" | "arg_min" => {
                need(2)?;
                let (key, kt) = self.expr(&args[0], f)?;
                let desc = fname == "arg_max";
                let order = vec![key.clone().sort(!desc, false)];
                let key_name = named(arg_name(0));
                let key_name = if key_name.is_empty() { format!("{}_", &fname[4..]) } else { key_name };
                let mut out = vec![(key_name.clone(), agg::first_value(key, order.clone()), kt, None)];
                let star = matches!(args.get(1), Some(ast::Expr::Name(n, _)) if n == "*");
                let rest: Vec<(String, Expr, KType)> = if star {
                    f.cols
                        .iter()
                        .filter(|(n, _)| *n != key_name && !by.contains(n))
                        .map(|(n, t)| (n.clone(), ucol(n), *t))
                        .collect()
                } else {
                    let mut v = Vec::new();
                    for (i, a) in args.iter().enumerate().skip(1) {
                        let (e, t) = self.expr(a, f)?;
                        let n = arg_name(i);
                        v.push((if n.is_empty() { format!("{fname}_{i}") } else { n }, e, t));
                    }
                    v
                };
                for (n, e, t) in rest {
                    out.push((n, agg::first_value(e, order.clone()), t, None));
                }
                Ok(out)
            }
            "percentile_tdigest" | "tdigest" | "hll" | "hll_merge" | "buildschema" | "binary_all_or" => {
                self.unsupported(at, &format!("aggregation {fname}()"), "")
            }
            _ => self.err(at, format!("'{fname}' is not an aggregation function (count, countif, dcount, dcountif, sum, sumif, avg, avgif, min, minif, max, maxif, stdev, variance, make_set, make_set_if, make_list, make_list_if, make_bag, make_bag_if, arg_max, arg_min, take_any, percentile, percentiles)")),
        }
    }

    // ---- join, union, mv-expand, parse -------------------------------------------------------

    fn join(
        &mut self,
        l: Frame,
        r: Frame,
        kind: JoinKind,
        on: &[ast::JoinOn],
        at: usize,
    ) -> R<Frame> {
        for k in on {
            if l.ty(&k.left).is_none() {
                return self.err(
                    at,
                    format!("join: the left side has no column '{}'", k.left),
                );
            }
            if r.ty(&k.right).is_none() {
                return self.err(
                    at,
                    format!("join: the right side has no column '{}'", k.right),
                );
            }
        }
        let mut left = l.clone();
        if kind == JoinKind::InnerUnique {
            // one row per distinct left key, as KQL's default join does
            let rn = self.fresh("rn");
            let keys: Vec<Expr> = on.iter().map(|k| ucol(&k.left)).collect();
            let w = datafusion::functions_window::expr_fn::row_number()
                .partition_by(keys)
                .build()?
                .alias(&rn);
            let plan = LogicalPlanBuilder::from(left.plan)
                .window(vec![w])?
                .filter(ucol(&rn).eq(lit(1u64)))?
                .project(left.cols.iter().map(|(n, _)| ucol(n)).collect::<Vec<_>>())?
                .build()?;
            left.plan = plan;
        }
        let (la, ra) = (self.fresh("l"), self.fresh("r"));
        let jt = match kind {
            JoinKind::InnerUnique | JoinKind::Inner => JoinType::Inner,
            JoinKind::LeftOuter => JoinType::Left,
            JoinKind::LeftAnti => JoinType::LeftAnti,
            JoinKind::LeftSemi => JoinType::LeftSemi,
            JoinKind::RightOuter => JoinType::Right,
            JoinKind::FullOuter => JoinType::Full,
            JoinKind::RightAnti => JoinType::RightAnti,
            JoinKind::RightSemi => JoinType::RightSemi,
        };
        let lkeys: Vec<Column> = on
            .iter()
            .map(|k| Column::new(Some(la.as_str()), k.left.as_str()))
            .collect();
        let rkeys: Vec<Column> = on
            .iter()
            .map(|k| Column::new(Some(ra.as_str()), k.right.as_str()))
            .collect();
        let rplan = LogicalPlanBuilder::from(r.plan.clone())
            .alias(ra.as_str())?
            .build()?;
        let joined = LogicalPlanBuilder::from(left.plan)
            .alias(la.as_str())?
            .join(rplan, jt, (lkeys, rkeys), None)?
            .build()?;
        let qcol = |q: &str, n: &str| Expr::Column(Column::new(Some(q), n));
        let mut exprs = Vec::new();
        let mut cols: Vec<(String, KType)> = Vec::new();
        let left_side = !matches!(kind, JoinKind::RightAnti | JoinKind::RightSemi);
        let right_side = !matches!(kind, JoinKind::LeftAnti | JoinKind::LeftSemi);
        if left_side {
            for (n, t) in &l.cols {
                exprs.push(qcol(&la, n).alias(n));
                cols.push((n.clone(), *t));
            }
        }
        if right_side {
            for (n, t) in &r.cols {
                let name = if cols.iter().any(|(c, _)| c == n) {
                    unique(&format!("{n}1"), &cols)
                } else {
                    n.clone()
                };
                exprs.push(qcol(&ra, n).alias(&name));
                cols.push((name, *t));
            }
        }
        Ok(Frame {
            plan: LogicalPlanBuilder::from(joined).project(exprs)?.build()?,
            cols,
            render: l.render,
        })
    }

    fn union(&mut self, frames: Vec<Frame>) -> R<Frame> {
        let mut names: Vec<(String, KType)> = Vec::new();
        for f in &frames {
            for (n, t) in &f.cols {
                match names.iter_mut().find(|(m, _)| m == n) {
                    Some((_, mt)) if *mt != *t => {
                        *mt = if mt.numeric() && t.numeric() {
                            KType::Real
                        } else {
                            KType::String
                        };
                    }
                    Some(_) => {}
                    None => names.push((n.clone(), *t)),
                }
            }
        }
        let mut plans = Vec::new();
        for f in frames {
            let exprs: Vec<Expr> = names
                .iter()
                .map(|(n, t)| match f.ty(n) {
                    Some(ft) if ft == *t => ucol(n),
                    Some(_) => cast(ucol(n), t.arrow()).alias(n),
                    None => null_of(*t).alias(n),
                })
                .collect();
            plans.push(LogicalPlanBuilder::from(f.plan).project(exprs)?.build()?);
        }
        let mut it = plans.into_iter();
        let mut b = match it.next() {
            Some(p) => LogicalPlanBuilder::from(p),
            None => return self.empty_frame(),
        };
        for p in it {
            b = b.union(p)?;
        }
        Ok(Frame {
            plan: b.build()?,
            cols: names,
            render: None,
        })
    }

    /// `mv-expand a, b, …`: the arrays expand side by side (row i takes element i of each; the
    /// shorter ones give null), as Kusto does.
    fn mv_expand(
        &mut self,
        f: Frame,
        items: &[ast::MvItem],
        index: Option<&str>,
        at: usize,
    ) -> R<Frame> {
        let mut exprs: Vec<Expr> = f.cols.iter().map(|(n, _)| ucol(n)).collect();
        // (target column, temporary column, element type)
        let mut targets: Vec<(String, String, KType)> = Vec::new();
        for (k, it) in items.iter().enumerate() {
            let (e, t) = self.expr(&it.expr, &f)?;
            let e = if it.bag_array {
                self.call("kql_bag_pairs", vec![e])
            } else {
                e
            };
            if k == 0 {
                if let Some(ix) = index {
                    let tmp = self.fresh("mvi");
                    exprs.push(self.call("kql_indexes", vec![e.clone()]).alias(&tmp));
                    targets.push((ix.to_string(), tmp, KType::Long));
                }
            }
            if t != KType::Dynamic {
                return self.err(
                    at,
                    format!("mv-expand needs a dynamic array, not {}", t.name()),
                );
            }
            let target = match (&it.name, &it.expr) {
                (Some(n), _) => n.clone(),
                (None, ast::Expr::Name(n, _)) => n.clone(),
                (None, e) => self.auto_name(e, &f.cols),
            };
            let elem_ty = match it.to.as_deref().map(KType::parse) {
                Some(Some(k)) => k,
                Some(None) => return self.err(at, "mv-expand to typeof(…): unknown type"),
                None => KType::Dynamic,
            };
            let tmp = self.fresh("mv");
            exprs.push(self.call("kql_expand", vec![e]).alias(&tmp));
            targets.push((target, tmp, elem_ty));
        }
        let opts = UnnestOptions::new().with_preserve_nulls(false);
        let unnest: Vec<Column> = targets
            .iter()
            .map(|(_, tmp, _)| Column::new_unqualified(tmp.as_str()))
            .collect();
        let plan = LogicalPlanBuilder::from(f.plan)
            .project(exprs)?
            .unnest_columns_with_options(unnest, opts)?
            .build()?;
        let mut out = Vec::new();
        let mut cols = Vec::new();
        let mut placed = vec![false; targets.len()];
        let elem = |k: usize, tmp: &str, ety: KType| -> R<Expr> {
            if index.is_some() && k == 0 {
                Ok(ucol(tmp))
            } else {
                self.convert(ucol(tmp), KType::Dynamic, ety, at)
            }
        };
        for (n, ty) in &f.cols {
            match targets.iter().position(|(t, _, _)| t == n) {
                Some(k) => {
                    let (_, tmp, ety) = &targets[k];
                    out.push(elem(k, tmp, *ety)?.alias(n));
                    cols.push((n.clone(), *ety));
                    placed[k] = true;
                }
                None => {
                    out.push(ucol(n));
                    cols.push((n.clone(), *ty));
                }
            }
        }
        for (k, (target, tmp, ety)) in targets.iter().enumerate() {
            if !placed[k] {
                out.push(elem(k, tmp, *ety)?.alias(target));
                cols.push((target.clone(), *ety));
            }
        }
        Ok(Frame {
            plan: LogicalPlanBuilder::from(plan).project(out)?.build()?,
            cols,
            render: f.render,
        })
    }

    fn parse_op(
        &mut self,
        f: Frame,
        expr: &ast::Expr,
        pattern: &[ParsePart],
        at: usize,
    ) -> R<Frame> {
        let (e, t) = self.expr(expr, &f)?;
        let e = self.to_string_expr(e, t);
        let mut re = String::from("(?s)^");
        let mut fields = Vec::new();
        for (i, p) in pattern.iter().enumerate() {
            let last = i + 1 == pattern.len();
            match p {
                ParsePart::Any => re.push_str(if last { ".*" } else { ".*?" }),
                ParsePart::Lit(s) => re.push_str(&regex::escape(s)),
                ParsePart::Col(n, ty) => {
                    let k = match ty.as_deref().map(KType::parse) {
                        None => KType::String,
                        Some(Some(k)) => k,
                        Some(None) => return self.err(at, format!("parse: unknown type for {n}")),
                    };
                    let g = match k {
                        KType::Long | KType::Int => "(-?\\d+)",
                        KType::Real => "(-?\\d+(?:\\.\\d+)?(?:[eE][-+]?\\d+)?)",
                        _ if last => "(.*)",
                        _ => "(.*?)",
                    };
                    re.push_str(g);
                    fields.push((n.clone(), k));
                }
            }
        }
        let udf =
            crate::parse_op::pattern_udf(&re, fields.iter().map(|(n, _)| n.clone()).collect())
                .map_err(|m| QueryError::semantic(self.text, at, m))?;
        let st = self.fresh("parse");
        let mut exprs: Vec<Expr> = f
            .cols
            .iter()
            .filter(|(n, _)| !fields.iter().any(|(fnm, _)| fnm == n))
            .map(|(n, _)| ucol(n))
            .collect();
        let mut cols: Vec<(String, KType)> = f
            .cols
            .iter()
            .filter(|(n, _)| !fields.iter().any(|(fnm, _)| fnm == n))
            .cloned()
            .collect();
        exprs.push(udf.call(vec![e]).alias(&st));
        let plan = LogicalPlanBuilder::from(f.plan).project(exprs)?.build()?;
        let mut out: Vec<Expr> = cols.iter().map(|(n, _)| ucol(n)).collect();
        for (n, k) in &fields {
            let v = get_field(ucol(&st), n.as_str());
            let v = self.convert(v, KType::String, *k, at)?;
            out.push(v.alias(n));
            cols.push((n.clone(), *k));
        }
        Ok(Frame {
            plan: LogicalPlanBuilder::from(plan).project(out)?.build()?,
            cols,
            render: f.render,
        })
    }

    // ---- scalar expressions -----------------------------------------------------------------

    #[recursive::recursive] // the stack grows on demand: trees are up to parser::MAX_OPERATORS deep
    fn expr(&mut self, e: &ast::Expr, f: &Frame) -> R<(Expr, KType)> {
        Ok(match e {
            ast::Expr::Lit(l, _) => match l {
                Lit::Null => (lit(ScalarValue::Utf8(None)), KType::Dynamic),
                Lit::Bool(b) => (lit(*b), KType::Bool),
                Lit::Long(n) => (lit(*n), KType::Long),
                Lit::Real(r) => (lit(*r), KType::Real),
                Lit::Str(s) => (lit(s.clone()), KType::String),
                Lit::DateTime(ns) => (ts_lit(Timestamp(*ns)), KType::DateTime),
                Lit::Timespan(ns) => (duration(*ns), KType::TimeSpan),
                Lit::Dynamic(j) => (lit(j.clone()), KType::Dynamic),
            },
            ast::Expr::Name(n, at) => {
                if let Some((x, t)) = self.scalars.get(n) {
                    return Ok((x.clone(), *t));
                }
                match f.ty(n) {
                    Some(t) => (ucol(n), t),
                    None => {
                        let similar = f.cols.iter().find(|(c, _)| c.eq_ignore_ascii_case(n));
                        let msg = match similar {
                            Some((s, _)) => format!("no column or variable '{n}' (column names are case-sensitive: did you mean '{s}'?)"),
                            None => {
                                let list: Vec<&str> = f.cols.iter().take(12).map(|(c, _)| c.as_str()).collect();
                                format!("no column or variable '{n}'{}", if list.is_empty() { String::new() } else { format!(" (columns: {}{})", list.join(", "), if f.cols.len() > 12 { ", …" } else { "" }) })
                            }
                        };
                        return self.err(*at, msg);
                    }
                }
            }
            ast::Expr::Side(_, _, at) => {
                return self.err(*at, "$left / $right are only valid in join … on")
            }
            ast::Expr::Member(base, field, at) => {
                let (b, t) = self.expr(base, f)?;
                let b = self.as_dynamic(b, t, *at)?;
                (self.path(b, lit(field.clone())), KType::Dynamic)
            }
            ast::Expr::Index(base, idx, at) => {
                let (b, t) = self.expr(base, f)?;
                let b = self.as_dynamic(b, t, *at)?;
                let (i, it) = self.expr(idx, f)?;
                let step = match it {
                    KType::Long | KType::Int => i,
                    KType::String => i,
                    KType::Dynamic => self.call("kql_dyn_tostring", vec![i]),
                    other => {
                        return self.err(
                            *at,
                            format!(
                                "an index must be a number or a string, not {}",
                                other.name()
                            ),
                        )
                    }
                };
                (self.path(b, step), KType::Dynamic)
            }
            ast::Expr::Neg(x, at) => {
                let (v, t) = self.expr(x, f)?;
                if !(t.numeric() || t == KType::TimeSpan) {
                    return self.err(*at, format!("cannot negate a {}", t.name()));
                }
                (Expr::Negative(Box::new(v)), t)
            }
            ast::Expr::Bin(op, l, r, at) => self.binary(*op, l, r, *at, f)?,
            ast::Expr::Str(op, negated, l, r, at) => {
                let (a, at_) = self.expr(l, f)?;
                let (b, bt) = self.expr(r, f)?;
                let a = self.to_string_expr(a, at_);
                let b = self.to_string_expr(b, bt);
                let Some(name) = str_udf(*op) else {
                    // matches regex
                    if literal(&b).is_none() {
                        return self.err(*at, "matches regex needs a constant pattern");
                    }
                    let x = datafusion::functions::regex::expr_fn::regexp_like(a, b, None);
                    return Ok((
                        if *negated { Expr::Not(Box::new(x)) } else { x },
                        KType::Bool,
                    ));
                };
                let x = self.call(name, vec![a, b]);
                (
                    if *negated { Expr::Not(Box::new(x)) } else { x },
                    KType::Bool,
                )
            }
            ast::Expr::In {
                expr,
                list,
                negated,
                ci,
                at,
            } => {
                let (v, t) = self.expr(expr, f)?;
                if let [ast::Expr::Tabular(sub, sat)] = list.as_slice() {
                    return Ok((
                        self.in_subquery(v, t, sub, *negated, *ci, *sat)?,
                        KType::Bool,
                    ));
                }
                // `x in (T)` with T a tabular let: its first column
                if let [ast::Expr::Name(n, nat)] = list.as_slice() {
                    if self.tabulars.contains_key(n)
                        && !self.scalars.contains_key(n)
                        && f.ty(n).is_none()
                    {
                        let sub = Tabular {
                            source: Source::Name(n.clone(), *nat),
                            ops: Vec::new(),
                            at: *nat,
                        };
                        return Ok((
                            self.in_subquery(v, t, &sub, *negated, *ci, *nat)?,
                            KType::Bool,
                        ));
                    }
                }
                let mut items = Vec::new();
                let target = if t == KType::Dynamic {
                    KType::String
                } else {
                    t
                };
                let v = if t == KType::Dynamic {
                    self.call("kql_dyn_tostring", vec![v])
                } else {
                    v
                };
                for x in list {
                    let (xe, xt) = self.expr(x, f)?;
                    // a dynamic array literal contributes its elements
                    if xt == KType::Dynamic {
                        if let Some(ScalarValue::Utf8(Some(j))) = literal(&xe) {
                            if let Some(elems) = crate::json::elements(j) {
                                for el in elems {
                                    let s = crate::json::to_string(el).unwrap_or_default();
                                    items.push(self.convert(lit(s), KType::String, target, *at)?);
                                }
                                continue;
                            }
                        }
                    }
                    items.push(self.convert(xe, xt, target, x.at())?);
                }
                let (v, items) = if *ci {
                    (sql_lower(v), items.into_iter().map(sql_lower).collect())
                } else {
                    (v, items)
                };
                (v.in_list(items, *negated), KType::Bool)
            }
            ast::Expr::Between {
                expr,
                lo,
                hi,
                negated,
                at,
            } => {
                let (v, t) = self.expr(expr, f)?;
                let (lo_e, lt) = self.expr(lo, f)?;
                let (hi_e, ht) = self.expr(hi, f)?;
                let (v, t) = if t == KType::Dynamic {
                    (self.convert(v, t, lt, *at)?, lt)
                } else {
                    (v, t)
                };
                let lo_e = self.convert(lo_e, lt, t, lo.at())?;
                let hi_e = if t == KType::DateTime && ht == KType::TimeSpan {
                    lo_e.clone() + hi_e
                } else {
                    self.convert(hi_e, ht, t, hi.at())?
                };
                let x = v.clone().gt_eq(lo_e).and(v.lt_eq(hi_e));
                (
                    if *negated { Expr::Not(Box::new(x)) } else { x },
                    KType::Bool,
                )
            }
            ast::Expr::Call(name, args, at) => self.function(name, args, *at, f)?,
            ast::Expr::Tabular(_, at) => {
                return self.err(
                    *at,
                    "a tabular expression is a value only inside toscalar(…) and in (…)",
                )
            }
        })
    }

    /// The `part` argument of datetime_add / datetime_diff: a constant Kusto part name.
    fn date_part_arg(&self, e: &Expr, at: usize) -> R<String> {
        let Some(ScalarValue::Utf8(Some(p))) = literal(e) else {
            return Err(QueryError::semantic(
                self.text,
                at,
                "the date part must be a constant string ('day', 'month', …)".to_string(),
            ));
        };
        let p = p.to_ascii_lowercase();
        const PARTS: [&str; 11] = [
            "year",
            "quarter",
            "month",
            "week",
            "day",
            "hour",
            "minute",
            "second",
            "millisecond",
            "microsecond",
            "nanosecond",
        ];
        if !PARTS.contains(&p.as_str()) {
            return Err(QueryError::semantic(
                self.text,
                at,
                format!("date part {p:?}: one of {}", PARTS.join(", ")),
            ));
        }
        Ok(p)
    }

    /// `x has_any (…)` / `x has_all (…)`: `has` of each term (a dynamic array literal, or a
    /// `let` bound to one, contributes its elements), or-ed / and-ed. An empty list matches
    /// nothing (`has_any`) or everything (`has_all`), as in Kusto.
    fn has_list(
        &mut self,
        args: &[ast::Expr],
        all: bool,
        at: usize,
        f: &Frame,
    ) -> R<(Expr, KType)> {
        let Some((x, terms)) = args.split_first() else {
            return Err(QueryError::semantic(
                self.text,
                at,
                "has_any needs a value".to_string(),
            ));
        };
        let (v, t) = self.expr(x, f)?;
        let v = self.to_string_expr(v, t);
        let mut items = Vec::new();
        for term in terms {
            let (e, et) = self.expr(term, f)?;
            if et == KType::Dynamic {
                if let Some(ScalarValue::Utf8(Some(j))) = literal(&e) {
                    if let Some(elems) = crate::json::elements(j) {
                        for el in elems {
                            items.push(lit(crate::json::to_string(el).unwrap_or_default()));
                        }
                        continue;
                    }
                }
                return Err(QueryError::semantic(
                    self.text,
                    term.at(),
                    "has_any/has_all take scalars or a dynamic array literal (or a let bound to one)"
                        .to_string(),
                ));
            }
            items.push(self.to_string_expr(e, et));
        }
        let mut out: Option<Expr> = None;
        for i in items {
            let one = self.call("kql_has", vec![v.clone(), i]);
            out = Some(match out {
                None => one,
                Some(acc) if all => acc.and(one),
                Some(acc) => acc.or(one),
            });
        }
        Ok((out.unwrap_or_else(|| lit(all)), KType::Bool))
    }

    /// Append one step to a dynamic path, fusing chains into one `kql_dyn_path` call.
    ///
    /// A path into `parse_json(text)` walks the text itself: `parse_json` would validate and
    /// copy the whole document (1.4 KB per audit event) for every row only for the walk to read
    /// its first few keys. The answers are the same for JSON text and for text that is not JSON
    /// at all (no value at any path); for text that starts like JSON but is malformed after the
    /// value sought, the value is returned where Kusto returns null.
    fn path(&self, base: Expr, step: Expr) -> Expr {
        if let Some(mut args) = is_udf(&base, "kql_dyn_path") {
            args.push(step);
            return self.call("kql_dyn_path", args);
        }
        if let Some(mut args) = is_udf(&base, "kql_parse_json") {
            if args.len() == 1 {
                args.push(step);
                return self.call("kql_dyn_path", args);
            }
        }
        self.call("kql_dyn_path", vec![base, step])
    }

    /// A value as dynamic JSON text for building a bag or an array: a string stays a string (it is
    /// not parsed), a dynamic value stays as it is, others become JSON numbers, bools, times.
    fn json_of(&self, e: Expr, t: KType) -> Expr {
        match t {
            KType::Dynamic => e,
            _ => self.call("kql_to_dynamic", vec![e]),
        }
    }

    fn as_dynamic(&self, e: Expr, t: KType, at: usize) -> R<Expr> {
        match t {
            KType::Dynamic => Ok(e),
            other => self.err(
                at,
                format!(
                    "property access needs a dynamic value, not {} (use parse_json(…) first)",
                    other.name()
                ),
            ),
        }
    }

    fn to_bool(&self, e: Expr, t: KType, at: usize) -> R<Expr> {
        match t {
            KType::Bool => Ok(e),
            KType::Dynamic => Ok(self.call("kql_dyn_tobool", vec![e])),
            other => self.err(at, format!("expected a bool, got {}", other.name())),
        }
    }

    fn to_string_expr(&self, e: Expr, t: KType) -> Expr {
        match t {
            KType::String => e,
            KType::Dynamic => self.call("kql_dyn_tostring", vec![e]),
            KType::DateTime => self.call("kql_tostring", vec![e]),
            _ => self.call("kql_tostring", vec![e]),
        }
    }

    /// Convert `e` of type `from` to `to` (for comparisons, lists and casts).
    fn convert(&self, e: Expr, from: KType, to: KType, at: usize) -> R<Expr> {
        if from == to {
            return Ok(e);
        }
        Ok(match (from, to) {
            (KType::Dynamic, KType::String) => self.call("kql_dyn_tostring", vec![e]),
            (KType::Dynamic, KType::Long) => self.call("kql_dyn_tolong", vec![e]),
            (KType::Dynamic, KType::Int) => {
                cast(self.call("kql_dyn_tolong", vec![e]), DataType::Int32)
            }
            (KType::Dynamic, KType::Real) => self.call("kql_dyn_todouble", vec![e]),
            (KType::Dynamic, KType::Bool) => self.call("kql_dyn_tobool", vec![e]),
            (KType::Dynamic, KType::DateTime) | (KType::String, KType::DateTime) => {
                self.call("kql_todatetime", vec![self.to_string_expr(e, from)])
            }
            (KType::String, KType::Dynamic) => self.call("kql_parse_json", vec![e]),
            (_, KType::Dynamic) => self.call("kql_to_dynamic", vec![e]),
            (KType::String, KType::Long)
            | (KType::String, KType::Int)
            | (KType::String, KType::Real)
            | (KType::String, KType::Bool) => {
                let parsed = self.call(
                    match to {
                        KType::Real => "kql_dyn_todouble",
                        KType::Bool => "kql_dyn_tobool",
                        _ => "kql_dyn_tolong",
                    },
                    vec![e],
                );
                if to == KType::Int {
                    cast(parsed, DataType::Int32)
                } else {
                    parsed
                }
            }
            (_, KType::String) => self.call("kql_tostring", vec![e]),
            (a, b) if a.numeric() && b.numeric() => cast(e, b.arrow()),
            (KType::TimeSpan, b) if b.numeric() => cast(cast(e, DataType::Int64), b.arrow()),
            (a, KType::TimeSpan) if a.numeric() => cast(
                cast(e, DataType::Int64),
                DataType::Duration(TimeUnit::Nanosecond),
            ),
            (a, b) => return self.err(at, format!("cannot convert {} to {}", a.name(), b.name())),
        })
    }

    fn binary(
        &mut self,
        op: BinOp,
        l: &ast::Expr,
        r: &ast::Expr,
        at: usize,
        f: &Frame,
    ) -> R<(Expr, KType)> {
        let (a, at_) = self.expr(l, f)?;
        let (b, bt) = self.expr(r, f)?;
        match op {
            BinOp::And | BinOp::Or => {
                let a = self.to_bool(a, at_, l.at())?;
                let b = self.to_bool(b, bt, r.at())?;
                Ok((
                    if op == BinOp::And { a.and(b) } else { a.or(b) },
                    KType::Bool,
                ))
            }
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (a, b) = self.coerce_cmp(a, at_, b, bt, at)?;
                Ok((
                    match op {
                        BinOp::Eq => a.eq(b),
                        BinOp::Ne => a.not_eq(b),
                        BinOp::Lt => a.lt(b),
                        BinOp::Le => a.lt_eq(b),
                        BinOp::Gt => a.gt(b),
                        _ => a.gt_eq(b),
                    },
                    KType::Bool,
                ))
            }
            BinOp::EqCi | BinOp::NeCi => {
                let a = self.to_string_expr(a, at_);
                let b = self.to_string_expr(b, bt);
                let x = self.call("kql_eq_ci", vec![a, b]);
                Ok((
                    if op == BinOp::NeCi {
                        Expr::Not(Box::new(x))
                    } else {
                        x
                    },
                    KType::Bool,
                ))
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                self.arith(op, a, at_, b, bt, at)
            }
        }
    }

    fn coerce_cmp(&self, a: Expr, at_: KType, b: Expr, bt: KType, at: usize) -> R<(Expr, Expr)> {
        if at_ == bt {
            return Ok((a, b));
        }
        use KType::*;
        Ok(match (at_, bt) {
            (Dynamic, t) => (self.convert(a, Dynamic, t, at)?, b),
            (t, Dynamic) => (a, self.convert(b, Dynamic, t, at)?),
            (x, y) if x.numeric() && y.numeric() => (a, b),
            // a string column against a number: compare as strings unless the string is a literal
            (String, n) if n.numeric() => {
                if literal(&a).is_some() {
                    (self.convert(a, String, n, at)?, b)
                } else {
                    (a, self.convert(b, n, String, at)?)
                }
            }
            (n, String) if n.numeric() => {
                if literal(&b).is_some() {
                    (a, self.convert(b, String, n, at)?)
                } else {
                    (self.convert(a, n, String, at)?, b)
                }
            }
            (DateTime, String) => (a, self.convert(b, String, DateTime, at)?),
            (String, DateTime) => (self.convert(a, String, DateTime, at)?, b),
            (Bool, String) | (String, Bool) => {
                (self.to_string_expr(a, at_), self.to_string_expr(b, bt))
            }
            (x, y) => {
                return Err(QueryError::semantic(
                    self.text,
                    at,
                    format!("cannot compare {} with {}", x.name(), y.name()),
                ))
            }
        })
    }

    fn arith(
        &self,
        op: BinOp,
        a: Expr,
        at_: KType,
        b: Expr,
        bt: KType,
        at: usize,
    ) -> R<(Expr, KType)> {
        use KType::*;
        let numeric = |t: KType| t.numeric() || t == Dynamic;
        let to_num = |e: Expr, t: KType| {
            if t == Dynamic {
                self.call("kql_dyn_todouble", vec![e])
            } else {
                e
            }
        };
        Ok(match (op, at_, bt) {
            (BinOp::Sub, DateTime, DateTime) => {
                let ns = cast(a, DataType::Int64) - cast(b, DataType::Int64);
                (cast(ns, DataType::Duration(TimeUnit::Nanosecond)), TimeSpan)
            }
            (BinOp::Add, DateTime, TimeSpan) | (BinOp::Sub, DateTime, TimeSpan) => {
                let ns = if op == BinOp::Add {
                    cast(a, DataType::Int64) + cast(b, DataType::Int64)
                } else {
                    cast(a, DataType::Int64) - cast(b, DataType::Int64)
                };
                (
                    cast(
                        cast(ns, DataType::Timestamp(TimeUnit::Nanosecond, None)),
                        datetime_type(),
                    ),
                    DateTime,
                )
            }
            (BinOp::Add, TimeSpan, DateTime) => {
                let ns = cast(a, DataType::Int64) + cast(b, DataType::Int64);
                (
                    cast(
                        cast(ns, DataType::Timestamp(TimeUnit::Nanosecond, None)),
                        datetime_type(),
                    ),
                    DateTime,
                )
            }
            (BinOp::Add, TimeSpan, TimeSpan) | (BinOp::Sub, TimeSpan, TimeSpan) => {
                let ns = if op == BinOp::Add {
                    cast(a, DataType::Int64) + cast(b, DataType::Int64)
                } else {
                    cast(a, DataType::Int64) - cast(b, DataType::Int64)
                };
                (cast(ns, DataType::Duration(TimeUnit::Nanosecond)), TimeSpan)
            }
            (BinOp::Div, TimeSpan, TimeSpan) => (
                cast(cast(a, DataType::Int64), DataType::Float64)
                    / cast(cast(b, DataType::Int64), DataType::Float64),
                Real,
            ),
            (BinOp::Mul, TimeSpan, n) | (BinOp::Div, TimeSpan, n) if n.numeric() => {
                let x = cast(a, DataType::Int64);
                let y = cast(b, DataType::Int64);
                let ns = if op == BinOp::Mul { x * y } else { x / y };
                (cast(ns, DataType::Duration(TimeUnit::Nanosecond)), TimeSpan)
            }
            (_, x, y) if numeric(x) && numeric(y) => {
                let t = if x == Real || y == Real || x == Dynamic || y == Dynamic {
                    Real
                } else if x == Long || y == Long {
                    Long
                } else {
                    Int
                };
                let (a, b) = (to_num(a, x), to_num(b, y));
                let e = match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                    _ => a % b,
                };
                (e, t)
            }
            (BinOp::Add, String, String) => (concat(vec![a, b]), String),
            (_, x, y) => {
                return Err(QueryError::semantic(
                    self.text,
                    at,
                    format!("cannot apply {op:?} to {} and {}", x.name(), y.name()),
                ))
            }
        })
    }

    fn now(&self) -> Expr {
        ts_lit(self.now)
    }

    fn function(
        &mut self,
        name: &str,
        args: &[ast::Expr],
        at: usize,
        f: &Frame,
    ) -> R<(Expr, KType)> {
        if let Some(all) = match name {
            "$has_any" => Some(false),
            "$has_all" => Some(true),
            _ => None,
        } {
            return self.has_list(args, all, at, f);
        }
        if self.functions.contains_key(name) {
            return self.call_scalar(name, args, f, at);
        }
        match name {
            "toscalar" => return self.toscalar(args, at),
            "column_ifexists" => return self.column_ifexists(args, f, at),
            "ingestion_time" => {
                return Ok(match f.ty("_TimeReceived") {
                    Some(t) => (ucol("_TimeReceived"), t),
                    None => (null_of(KType::DateTime), KType::DateTime),
                })
            }
            _ => {}
        }
        if let Some(r) = self.series_function(name, args, at, f)? {
            return Ok(r);
        }
        let mut lowered = Vec::new();
        let needs_args = !matches!(name, "now" | "ago");
        if needs_args {
            for a in args {
                lowered.push(self.expr(a, f)?);
            }
        }
        let argc = |n: std::ops::RangeInclusive<usize>| -> R<()> {
            if !n.contains(&args.len()) {
                return Err(QueryError::semantic(
                    self.text,
                    at,
                    format!(
                        "{name}() takes {} argument(s), got {}",
                        if n.start() == n.end() {
                            n.start().to_string()
                        } else {
                            format!("{} to {}", n.start(), n.end())
                        },
                        args.len()
                    ),
                ));
            }
            Ok(())
        };
        Ok(match name {
            "now" => {
                argc(0..=1)?;
                match args.first() {
                    Some(a) => {
                        let (off, t) = self.expr(a, f)?;
                        return self.arith(BinOp::Add, self.now(), KType::DateTime, off, t, at);
                    }
                    None => (self.now(), KType::DateTime),
                }
            }
            "ago" => {
                argc(1..=1)?;
                let (span, t) = self.expr(&args[0], f)?;
                if t != KType::TimeSpan {
                    return self.err(at, "ago() takes a timespan such as 1d or 30m");
                }
                // constant when the span is: lets Parquet statistics prune by time
                if let Some(ScalarValue::DurationNanosecond(Some(ns))) = literal(&span) {
                    return Ok((ts_lit(Timestamp(self.now.0 - ns)), KType::DateTime));
                }
                return self.arith(BinOp::Sub, self.now(), KType::DateTime, span, t, at);
            }
            "parse_json" | "todynamic" => {
                argc(1..=1)?;
                let (e, t) = lowered.remove(0);
                (self.convert(e, t, KType::Dynamic, at)?, KType::Dynamic)
            }
            "tostring" => {
                // Kusto's strings are never null: tostring() of null (a missing property) is ""
                argc(1..=1)?;
                let (e, t) = lowered.remove(0);
                (
                    coalesce(vec![self.to_string_expr(e, t), lit("")]),
                    KType::String,
                )
            }
            "tolong" | "toint" | "todouble" | "toreal" | "tobool" | "toboolean" | "todatetime"
            | "totimespan" | "todecimal" => {
                argc(1..=1)?;
                let (e, t) = lowered.remove(0);
                let to = match name {
                    "tolong" => KType::Long,
                    "toint" => KType::Int,
                    "todouble" | "toreal" | "todecimal" => KType::Real,
                    "tobool" | "toboolean" => KType::Bool,
                    "todatetime" => KType::DateTime,
                    _ => KType::TimeSpan,
                };
                if to == KType::TimeSpan && t == KType::String {
                    return Ok((self.call("kql_totimespan", vec![e]), KType::TimeSpan));
                }
                (self.convert(e, t, to, at)?, to)
            }
            "tolower" | "toupper" => {
                argc(1..=1)?;
                let (e, t) = lowered.remove(0);
                let e = self.to_string_expr(e, t);
                (
                    if name == "tolower" {
                        sql_lower(e)
                    } else {
                        upper(e)
                    },
                    KType::String,
                )
            }
            "strlen" => {
                argc(1..=1)?;
                let (e, t) = lowered.remove(0);
                (
                    cast(character_length(self.to_string_expr(e, t)), DataType::Int64),
                    KType::Long,
                )
            }
            "substring" => {
                argc(2..=3)?;
                let (s, st) = lowered.remove(0);
                let s = self.to_string_expr(s, st);
                let (start, _) = lowered.remove(0);
                let start = cast(start, DataType::Int64) + lit(1i64);
                let e = match lowered.pop() {
                    Some((len, _)) => substring(s, start, cast(len, DataType::Int64)),
                    None => substr(s, start),
                };
                (e, KType::String)
            }
            "split" => {
                argc(2..=3)?;
                let args: Vec<Expr> = lowered
                    .into_iter()
                    .map(|(e, t)| {
                        if t == KType::Dynamic {
                            self.call("kql_dyn_tostring", vec![e])
                        } else {
                            e
                        }
                    })
                    .collect();
                (self.call("kql_split", args), KType::Dynamic)
            }
            "strcat" => {
                if args.is_empty() {
                    return self.err(at, "strcat() needs arguments");
                }
                let parts: Vec<Expr> = lowered
                    .into_iter()
                    .map(|(e, t)| coalesce(vec![self.to_string_expr(e, t), lit("")]))
                    .collect();
                (concat(parts), KType::String)
            }
            "isempty" | "isnotempty" => {
                argc(1..=1)?;
                let (e, t) = lowered.remove(0);
                let e = if t == KType::Dynamic {
                    self.call("kql_dyn_tostring", vec![e])
                } else {
                    e
                };
                let x = self.call("kql_isempty", vec![e]);
                (
                    if name == "isnotempty" {
                        Expr::Not(Box::new(x))
                    } else {
                        x
                    },
                    KType::Bool,
                )
            }
            "isnull" | "isnotnull" => {
                argc(1..=1)?;
                let (e, _) = lowered.remove(0);
                (
                    if name == "isnull" {
                        e.is_null()
                    } else {
                        e.is_not_null()
                    },
                    KType::Bool,
                )
            }
            "iff" | "iif" => {
                argc(3..=3)?;
                let (c0, ct) = lowered.remove(0);
                let c0 = self.to_bool(c0, ct, args[0].at())?;
                let (a, at_) = lowered.remove(0);
                let (b, bt) = lowered.remove(0);
                let b = self.convert(b, bt, at_, args[2].at())?;
                (when(c0, a).otherwise(b)?, at_)
            }
            "case" => {
                if args.len() < 3 || args.len().is_multiple_of(2) {
                    return self.err(at, "case(predicate, value, …, else) needs an odd number of arguments, at least 3");
                }
                let ty = lowered[1].1;
                let els = lowered
                    .pop()
                    .map(|(e, t)| self.convert(e, t, ty, at))
                    .transpose()?
                    .unwrap_or_else(|| null_of(ty));
                let mut b: Option<datafusion::logical_expr::conditional_expressions::CaseBuilder> =
                    None;
                for (i, pair) in lowered.chunks(2).enumerate() {
                    let p = self.to_bool(pair[0].0.clone(), pair[0].1, args[2 * i].at())?;
                    let v = self.convert(pair[1].0.clone(), pair[1].1, ty, args[2 * i + 1].at())?;
                    b = Some(match b {
                        None => when(p, v),
                        Some(mut cb) => cb.when(p, v),
                    });
                }
                match b {
                    Some(mut cb) => (cb.otherwise(els)?, ty),
                    None => (els, ty),
                }
            }
            "coalesce" => {
                if args.is_empty() {
                    return self.err(at, "coalesce() needs arguments");
                }
                let ty = lowered[0].1;
                let n = lowered.len();
                let items = lowered
                    .into_iter()
                    .enumerate()
                    .map(|(i, (e, t))| {
                        let e = self.convert(e, t, ty, at)?;
                        // for strings the first non-empty one, as Kusto's coalesce
                        Ok(if ty == KType::String && i + 1 < n {
                            datafusion::functions::core::expr_fn::nullif(e, lit(""))
                        } else {
                            e
                        })
                    })
                    .collect::<R<Vec<_>>>()?;
                (coalesce(items), ty)
            }
            "array_length" => {
                argc(1..=1)?;
                let (e, t) = lowered.remove(0);
                (
                    self.call("kql_array_length", vec![self.as_dynamic(e, t, at)?]),
                    KType::Long,
                )
            }
            "array_sort_asc" | "array_sort_desc" => {
                argc(1..=1)?;
                let (e, t) = lowered.remove(0);
                (
                    self.call(&format!("kql_{name}"), vec![self.as_dynamic(e, t, at)?]),
                    KType::Dynamic,
                )
            }
            "bag_keys" => {
                argc(1..=1)?;
                let (e, t) = lowered.remove(0);
                (
                    self.call("kql_bag_keys", vec![self.as_dynamic(e, t, at)?]),
                    KType::Dynamic,
                )
            }
            "not" => {
                argc(1..=1)?;
                let (e, t) = lowered.remove(0);
                (Expr::Not(Box::new(self.to_bool(e, t, at)?)), KType::Bool)
            }
            "bin" | "floor" => {
                argc(2..=2)?;
                let (v, vt) = lowered.remove(0);
                let (size, st) = lowered.remove(0);
                match (vt, st) {
                    (KType::DateTime, KType::TimeSpan) => {
                        let ns = match literal(&size) {
                            Some(ScalarValue::DurationNanosecond(Some(ns))) if *ns > 0 => *ns,
                            _ => {
                                return self.err(
                                    at,
                                    "bin(datetime, size) needs a constant positive timespan",
                                )
                            }
                        };
                        (
                            date_bin(interval(ns), v, ts_lit(Timestamp(0))),
                            KType::DateTime,
                        )
                    }
                    (KType::TimeSpan, KType::TimeSpan) => {
                        let x = cast(v, DataType::Int64);
                        let s = cast(size, DataType::Int64);
                        (
                            cast(
                                (x / s.clone()) * s,
                                DataType::Duration(TimeUnit::Nanosecond),
                            ),
                            KType::TimeSpan,
                        )
                    }
                    (a, b) if (a.numeric() || a == KType::Dynamic) && b.numeric() => {
                        let x = if a == KType::Dynamic {
                            self.call("kql_dyn_todouble", vec![v])
                        } else {
                            cast(v, DataType::Float64)
                        };
                        let s = cast(size, DataType::Float64);
                        let binned = floor(x / s.clone()) * s;
                        if a == KType::Real || b == KType::Real || a == KType::Dynamic {
                            (binned, KType::Real)
                        } else {
                            (cast(binned, DataType::Int64), KType::Long)
                        }
                    }
                    (a, b) => {
                        return self.err(at, format!("bin() of {} by {}", a.name(), b.name()))
                    }
                }
            }
            "startofday" | "startofmonth" | "startofyear" | "startofhour" => {
                argc(1..=1)?;
                let (v, t) = lowered.remove(0);
                if t != KType::DateTime {
                    return self.err(at, format!("{name}() takes a datetime"));
                }
                let part = &name[7..];
                (
                    cast(date_trunc(lit(part), v), datetime_type()),
                    KType::DateTime,
                )
            }
            "replace_string" => {
                // replace_string(text, lookup, rewrite): every occurrence, literally
                argc(3..=3)?;
                let mut v: Vec<Expr> = lowered
                    .into_iter()
                    .map(|(e, t)| self.to_string_expr(e, t))
                    .collect();
                let (text, lookup, rewrite) = (v.remove(0), v.remove(0), v.remove(0));
                (sql_replace(text, lookup, rewrite), KType::String)
            }
            "replace_regex" | "replace" => {
                // replace_regex(text, regex, rewrite); the legacy replace(regex, rewrite, text).
                // Every match is replaced; \1 in the rewrite is the first group, as in Kusto.
                argc(3..=3)?;
                let mut v: Vec<Expr> = lowered
                    .into_iter()
                    .map(|(e, t)| self.to_string_expr(e, t))
                    .collect();
                let (text, re, rewrite) = if name == "replace" {
                    let re = v.remove(0);
                    let rewrite = v.remove(0);
                    (v.remove(0), re, rewrite)
                } else {
                    (v.remove(0), v.remove(0), v.remove(0))
                };
                if literal(&re).is_none() {
                    return self.err(at, format!("{name}() needs a constant regex"));
                }
                (
                    regexp_replace(text, re, rewrite, Some(lit("g"))),
                    KType::String,
                )
            }
            "startofweek" => {
                argc(1..=1)?;
                let (v, t) = lowered.remove(0);
                if t != KType::DateTime {
                    return self.err(at, "startofweek() takes a datetime");
                }
                (start_of_week(v), KType::DateTime)
            }
            "datetime_add" => {
                argc(3..=3)?;
                let part = self.date_part_arg(&lowered[0].0, at)?;
                let Some(n) = literal_i64(&lowered[1].0) else {
                    return self.unsupported(
                        at,
                        "datetime_add() with an amount that is not a constant",
                        "add a timespan: dt + amount * 1d",
                    );
                };
                let (v, t) = lowered.remove(2);
                if t != KType::DateTime {
                    return self.err(at, "datetime_add() takes a datetime as its third argument");
                }
                let iv = match part.as_str() {
                    "year" => IntervalMonthDayNano::new(12 * n as i32, 0, 0),
                    "quarter" => IntervalMonthDayNano::new(3 * n as i32, 0, 0),
                    "month" => IntervalMonthDayNano::new(n as i32, 0, 0),
                    "week" => IntervalMonthDayNano::new(0, 7 * n as i32, 0),
                    "day" => IntervalMonthDayNano::new(0, n as i32, 0),
                    p => IntervalMonthDayNano::new(0, 0, n.saturating_mul(unit_ns(p))),
                };
                (
                    cast(
                        v + lit(ScalarValue::IntervalMonthDayNano(Some(iv))),
                        datetime_type(),
                    ),
                    KType::DateTime,
                )
            }
            "datetime_diff" => {
                argc(3..=3)?;
                let part = self.date_part_arg(&lowered[0].0, at)?;
                let (b, bt) = lowered.remove(2);
                let (a, at_) = lowered.remove(1);
                if at_ != KType::DateTime || bt != KType::DateTime {
                    return self.err(at, "datetime_diff() takes a part and two datetimes");
                }
                // Kusto counts the boundaries of `part` crossed between the two
                let p = |x: Expr, what: &str| {
                    cast(date_part(lit(what.to_string()), x), DataType::Int64)
                };
                let e = match part.as_str() {
                    "year" => p(a, "year") - p(b, "year"),
                    "quarter" => {
                        (p(a.clone(), "year") * lit(4i64) + p(a, "quarter"))
                            - (p(b.clone(), "year") * lit(4i64) + p(b, "quarter"))
                    }
                    "month" => {
                        (p(a.clone(), "year") * lit(12i64) + p(a, "month"))
                            - (p(b.clone(), "year") * lit(12i64) + p(b, "month"))
                    }
                    "week" => {
                        (cast(start_of_week(a), DataType::Int64)
                            - cast(start_of_week(b), DataType::Int64))
                            / lit(7 * unit_ns("day"))
                    }
                    "nanosecond" => cast(a, DataType::Int64) - cast(b, DataType::Int64),
                    unit => {
                        let t =
                            |x: Expr| cast(date_trunc(lit(unit.to_string()), x), DataType::Int64);
                        (t(a) - t(b)) / lit(unit_ns(unit))
                    }
                };
                (e, KType::Long)
            }
            "abs" | "round" => {
                argc(1..=2)?;
                let (v, t) = lowered.remove(0);
                let e = if name == "abs" {
                    abs(v)
                } else {
                    let digits = lowered.pop().map(|(d, _)| d).unwrap_or(lit(0i64));
                    round(vec![cast(v, DataType::Float64), digits])
                };
                (e, if name == "round" { KType::Real } else { t })
            }
            "extract" => {
                argc(3..=3)?;
                let (re, _) = lowered.remove(0);
                let (group, _) = lowered.remove(0);
                let (src, st) = lowered.remove(0);
                if literal(&re).is_none() {
                    return self.err(at, "extract() needs a constant regex");
                }
                (
                    self.call("kql_extract", vec![re, group, self.to_string_expr(src, st)]),
                    KType::String,
                )
            }
            "format_datetime" | "dayofweek" => {
                argc(if name == "dayofweek" { 1..=1 } else { 2..=2 })?;
                let (v, t) = lowered.remove(0);
                if t != KType::DateTime {
                    return self.err(at, format!("{name}() takes a datetime, not {}", t.name()));
                }
                if name == "dayofweek" {
                    (self.call("kql_dayofweek", vec![v]), KType::TimeSpan)
                } else {
                    let (fmt, ft) = lowered.remove(0);
                    let fmt = self.to_string_expr(fmt, ft);
                    (
                        self.call("kql_format_datetime", vec![v, fmt]),
                        KType::String,
                    )
                }
            }
            "trim" => {
                argc(2..=2)?;
                let (re, _) = lowered.remove(0);
                let Some(ScalarValue::Utf8(Some(pattern))) = literal(&re) else {
                    return self.err(at, "trim() needs a constant regex");
                };
                if let Err(e) = regex::Regex::new(pattern) {
                    return self.err(at, format!("trim(): bad regex: {e}"));
                }
                let (src, st) = lowered.remove(0);
                (
                    self.call("kql_trim", vec![re, self.to_string_expr(src, st)]),
                    KType::String,
                )
            }
            "reverse" | "hash_sha256" | "base64_encode_tostring" | "base64_decode_tostring" => {
                argc(1..=1)?;
                let (v, t) = lowered.remove(0);
                let udf = match name {
                    "reverse" => "kql_reverse",
                    "hash_sha256" => "kql_hash_sha256",
                    "base64_encode_tostring" => "kql_base64_encode",
                    _ => "kql_base64_decode",
                };
                (
                    self.call(udf, vec![self.to_string_expr(v, t)]),
                    KType::String,
                )
            }
            "ipv4_is_private" | "ipv4_is_in_range" => {
                argc(if name == "ipv4_is_private" {
                    1..=1
                } else {
                    2..=2
                })?;
                let args: Vec<Expr> = lowered
                    .into_iter()
                    .map(|(e, t)| self.to_string_expr(e, t))
                    .collect();
                (self.call(&format!("kql_{name}"), args), KType::Bool)
            }
            "pack" | "bag_pack" => {
                if lowered.len() % 2 != 0 {
                    return self.err(at, format!("{name}() takes key, value pairs"));
                }
                let mut v = Vec::with_capacity(lowered.len());
                for pair in lowered.chunks(2) {
                    let (k, kt) = pair[0].clone();
                    let (x, xt) = pair[1].clone();
                    v.push(self.to_string_expr(k, kt));
                    v.push(self.json_of(x, xt));
                }
                (self.call("kql_pack", v), KType::Dynamic)
            }
            "pack_all" => {
                argc(0..=1)?;
                let drop_empty = match lowered.first().map(|(e, _)| literal(e)) {
                    None => false,
                    Some(Some(ScalarValue::Boolean(Some(b)))) => *b,
                    Some(_) => {
                        return self.err(at, "pack_all(ignore_null_empty) takes a constant bool")
                    }
                };
                let mut v = Vec::with_capacity(f.cols.len() * 2 + 1);
                v.push(lit(drop_empty));
                for (n, t) in &f.cols {
                    v.push(lit(n.as_str()));
                    v.push(self.json_of(ucol(n), *t));
                }
                (self.call("kql_pack_all", v), KType::Dynamic)
            }
            "pack_array" => {
                let v: Vec<Expr> = lowered
                    .into_iter()
                    .map(|(e, t)| self.json_of(e, t))
                    .collect();
                (self.call("kql_pack_array", v), KType::Dynamic)
            }
            "extract_all" | "extractall" => {
                argc(2..=3)?;
                let (re, _) = lowered.remove(0);
                let groups = if lowered.len() == 2 {
                    let (g, _) = lowered.remove(0);
                    match literal(&g) {
                        Some(_) => g,
                        None => {
                            return self.err(
                                at,
                                format!("{name}() needs its capture groups as a constant dynamic array, e.g. dynamic([1, 3])"),
                            )
                        }
                    }
                } else {
                    lit("")
                };
                let (src, st) = lowered.remove(0);
                let Some(ScalarValue::Utf8(Some(pattern))) = literal(&re) else {
                    return self.err(at, format!("{name}() needs a constant regex"));
                };
                match regex::Regex::new(pattern) {
                    Err(e) => return self.err(at, format!("{name}(): bad regex: {e}")),
                    Ok(r) if r.captures_len() < 2 => {
                        return self.err(
                            at,
                            format!("{name}(): the regex has no capture group (it needs 1 to 16), e.g. @\"(\\d+)\""),
                        )
                    }
                    Ok(_) => {}
                }
                (
                    self.call(
                        "kql_extract_all",
                        vec![re, groups, self.to_string_expr(src, st)],
                    ),
                    KType::Dynamic,
                )
            }
            "typeof" | "gettype" => {
                argc(1..=1)?;
                (lit(lowered[0].1.name()), KType::String)
            }
            "count" | "countif" | "dcount" | "sum" | "avg" | "min" | "max" | "make_set"
            | "make_list" | "arg_max" | "arg_min" => {
                return self.err(
                    at,
                    format!("{name}() is an aggregation: use it in summarize"),
                );
            }
            "long" | "int" | "real" | "double" | "bool" | "boolean" | "decimal" => {
                // typed literals: long(null), real(1), …
                argc(1..=1)?;
                let (e, t) = lowered.remove(0);
                let k = KType::parse(name).unwrap_or(KType::Real);
                if matches!(args[0], ast::Expr::Lit(Lit::Null, _)) {
                    (null_of(k), k)
                } else {
                    (self.convert(e, t, k, at)?, k)
                }
            }
            "strcat_array" => {
                argc(2..=2)?;
                let (d, dt) = lowered.remove(1);
                let (a, t) = lowered.remove(0);
                (
                    self.call(
                        "kql_strcat_array",
                        vec![self.json_of(a, t), self.to_string_expr(d, dt)],
                    ),
                    KType::String,
                )
            }
            "zip" => {
                argc(2..=16)?;
                let v = lowered
                    .into_iter()
                    .map(|(e, t)| self.json_of(e, t))
                    .collect();
                (self.call("kql_zip", v), KType::Dynamic)
            }
            "parse_url" | "parse_path" => {
                argc(1..=1)?;
                let (e, t) = lowered.remove(0);
                (
                    self.call(&format!("kql_{name}"), vec![self.to_string_expr(e, t)]),
                    KType::Dynamic,
                )
            }
            "format_timespan" => {
                argc(2..=2)?;
                let (fmt, ft) = lowered.remove(1);
                let (e, t) = lowered.remove(0);
                let e = self.convert(e, t, KType::TimeSpan, at)?;
                (
                    self.call("kql_format_timespan", vec![e, self.to_string_expr(fmt, ft)]),
                    KType::String,
                )
            }
            "geo_distance_2points"
            | "hash"
            | "indexof"
            | "countof"
            | "set_union"
            | "set_intersect"
            | "array_concat"
            | "array_slice"
            | "array_index_of"
            | "make_datetime"
            | "todatetime_utc"
            | "unixtime_seconds_todatetime"
            | "row_number"
            | "prev"
            | "next" => {
                return self.unsupported(at, &format!("function {name}()"), "");
            }
            _ => return self.err(at, format!("unknown function '{name}'")),
        })
    }
}

/// The UDF of a string predicate (`matches regex` has none: it is DataFusion's `regexp_like`).
fn str_udf(op: StrOp) -> Option<&'static str> {
    Some(match op {
        StrOp::Has => "kql_has",
        StrOp::HasCs => "kql_has_cs",
        StrOp::HasPrefix => "kql_hasprefix",
        StrOp::HasSuffix => "kql_hassuffix",
        StrOp::Contains => "kql_contains",
        StrOp::ContainsCs => "kql_contains_cs",
        StrOp::StartsWith => "kql_startswith",
        StrOp::StartsWithCs => "kql_startswith_cs",
        StrOp::EndsWith => "kql_endswith",
        StrOp::EndsWithCs => "kql_endswith_cs",
        StrOp::Regex => return None,
    })
}

/// Nanoseconds in one `part` (day and below).
fn unit_ns(part: &str) -> i64 {
    match part {
        "day" => 86_400_000_000_000,
        "hour" => 3_600_000_000_000,
        "minute" => 60_000_000_000,
        "second" => 1_000_000_000,
        "millisecond" => 1_000_000,
        "microsecond" => 1_000,
        _ => 1,
    }
}

/// Kusto's weeks start on Sunday (DataFusion's `date_trunc('week')` on Monday).
fn start_of_week(v: Expr) -> Expr {
    let day = lit(ScalarValue::IntervalMonthDayNano(Some(
        IntervalMonthDayNano::new(0, 1, 0),
    )));
    cast(
        cast(date_trunc(lit("week"), v + day.clone()), datetime_type()) - day,
        datetime_type(),
    )
}

/// A constant integer (a negative one lowers to a negated literal).
fn literal_i64(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Int64(Some(n)) => Some(*n),
            ScalarValue::Int32(Some(n)) => Some(i64::from(*n)),
            _ => None,
        },
        Expr::Negative(x) => literal_i64(x).map(|n| -n),
        Expr::Cast(c) => literal_i64(&c.expr),
        _ => None,
    }
}

/// Whether `name` is an aggregation function.
fn is_aggregation(name: &str) -> bool {
    matches!(
        name,
        "count"
            | "countif"
            | "dcount"
            | "dcountif"
            | "count_distinct"
            | "sum"
            | "sumif"
            | "avg"
            | "avgif"
            | "min"
            | "max"
            | "minif"
            | "maxif"
            | "stdev"
            | "variance"
            | "make_set"
            | "make_list"
            | "make_set_if"
            | "make_list_if"
            | "any"
            | "take_any"
            | "arg_max"
            | "arg_min"
            | "percentile"
            | "percentiles"
            | "percentile_tdigest"
            | "tdigest"
            | "hll"
            | "hll_merge"
            | "make_bag"
            | "make_bag_if"
            | "buildschema"
            | "binary_all_or"
    )
}

/// `a.b[0].c` → `a_b_0_c` (KQL's name for an unnamed path expression).
fn path_name(e: &ast::Expr) -> Option<String> {
    match e {
        ast::Expr::Name(n, _) => Some(n.clone()),
        ast::Expr::Member(b, f, _) => Some(format!("{}_{f}", path_name(b)?)),
        ast::Expr::Index(b, i, _) => match &**i {
            ast::Expr::Lit(Lit::Long(n), _) => Some(format!("{}_{n}", path_name(b)?)),
            ast::Expr::Lit(Lit::Str(s), _) => Some(format!("{}_{s}", path_name(b)?)),
            _ => None,
        },
        _ => None,
    }
}

/// `name`, or `name1`, `name2`… when taken.
fn unique(name: &str, taken: &[(String, KType)]) -> String {
    if !taken.iter().any(|(n, _)| n == name) {
        return name.to_string();
    }
    let mut i = 1;
    loop {
        let n = format!("{name}{i}");
        if !taken.iter().any(|(t, _)| *t == n) {
            return n;
        }
        i += 1;
    }
}
