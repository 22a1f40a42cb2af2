//! The KQL syntax tree. Every node keeps the byte offset where it starts, for errors.

/// A whole query: statements separated by `;`.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// `let` statements and tabular expressions, in order.
    pub statements: Vec<Statement>,
}

/// A statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    /// `let name = value`.
    Let {
        /// The name.
        name: String,
        /// What it names.
        value: LetValue,
        /// Offset.
        at: usize,
    },
    /// A tabular expression whose result is returned.
    Tabular(Tabular),
}

/// What a `let` binds.
#[derive(Clone, Debug, PartialEq)]
pub enum LetValue {
    /// A scalar.
    Scalar(Expr),
    /// A tabular expression.
    Tabular(Tabular),
    /// A user-defined function: `let f = (T:(*), x:string = "a") { … }`.
    Function(Function),
}

/// A function defined by `let`.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    /// Parameters in order.
    pub params: Vec<Param>,
    /// `let` statements inside the body.
    pub lets: Vec<Statement>,
    /// What the body returns.
    pub body: FnBody,
}

/// A function parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// `T:(*)` or `T:(a:string, …)`: a table.
    Tabular(String),
    /// `x:type [= default]`.
    Scalar {
        /// Name.
        name: String,
        /// Declared type.
        ty: String,
        /// Default value.
        default: Option<Expr>,
    },
}

/// The result of a function body.
#[derive(Clone, Debug, PartialEq)]
pub enum FnBody {
    /// A table.
    Tabular(Tabular),
    /// A scalar.
    Scalar(Expr),
}

/// `source | op | op …`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tabular {
    /// Where rows come from.
    pub source: Source,
    /// The operators applied in order.
    pub ops: Vec<Op>,
    /// Offset.
    pub at: usize,
}

/// The start of a tabular expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A table or a tabular `let`.
    Name(String, usize),
    /// `( tabular )`.
    Paren(Box<Tabular>),
    /// `union [kind=…] [withsource=C] [isfuzzy=…] t1, t2 …`.
    Union(Union, usize),
    /// `print a = 1, …`.
    Print(Vec<NamedExpr>, usize),
    /// `datatable (a:string, …) [ values … ]`.
    Datatable {
        /// Columns and their types.
        cols: Vec<(String, String)>,
        /// Values, row after row.
        values: Vec<Expr>,
        /// Offset.
        at: usize,
    },
    /// `range x from a to b step s`.
    Range {
        /// Column name.
        name: String,
        /// First value.
        from: Expr,
        /// Last value (inclusive).
        to: Expr,
        /// Step.
        step: Expr,
        /// Offset.
        at: usize,
    },
    /// `search [in (T, …)] predicate`.
    Search {
        /// The tables (all when empty).
        tables: Vec<(String, usize)>,
        /// The predicate.
        pred: Expr,
        /// Offset.
        at: usize,
    },
    /// A call of a `let`-defined tabular function.
    Call(String, Vec<Expr>, usize),
}

/// The legs and options of `union`.
#[derive(Clone, Debug, PartialEq)]
pub struct Union {
    /// The tables and queries.
    pub legs: Vec<Tabular>,
    /// `withsource=Column`: a column naming each row's table.
    pub withsource: Option<String>,
    /// `kind=inner`: only the columns every leg has.
    pub inner: bool,
    /// `isfuzzy=true`: legs naming unknown tables are left out.
    pub fuzzy: bool,
}

/// One output column: `[name =] expr` (or `(a, b, …) = expr` for functions returning several).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedExpr {
    /// The given name, if any.
    pub name: Option<String>,
    /// The expression.
    pub expr: Expr,
    /// `(a, b, …) = expr`: the names of a function's several results.
    pub tuple: Vec<String>,
}

/// One aggregation of `make-series`: `[name =] agg(x) [default = v]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesAgg {
    /// The aggregation.
    pub agg: NamedExpr,
    /// Value of empty bins (default 0).
    pub default: Option<Expr>,
}

/// One level of `top-nested`.
#[derive(Clone, Debug, PartialEq)]
pub struct NestedLevel {
    /// How many values to keep (all when absent).
    pub n: Option<Expr>,
    /// The grouping column.
    pub of: NamedExpr,
    /// `with others = v`: one more row aggregating the rest.
    pub others: Option<Expr>,
    /// The aggregation ranking the values.
    pub by: NamedExpr,
    /// Descending (the default).
    pub desc: bool,
}

/// A sort key.
#[derive(Clone, Debug, PartialEq)]
pub struct SortKey {
    /// What to sort by.
    pub expr: Expr,
    /// Descending (KQL's default).
    pub desc: bool,
    /// Nulls first (default: last for desc, first for asc).
    pub nulls_first: Option<bool>,
}

/// Join kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    /// `innerunique` (the default): one row per distinct left key, then inner join.
    InnerUnique,
    /// `inner`.
    Inner,
    /// `leftouter`.
    LeftOuter,
    /// `leftanti`.
    LeftAnti,
    /// `leftsemi`.
    LeftSemi,
    /// `rightouter`.
    RightOuter,
    /// `fullouter`.
    FullOuter,
    /// `rightanti`.
    RightAnti,
    /// `rightsemi`.
    RightSemi,
}

/// A join condition: equal columns (`on a` or `on $left.a == $right.b`).
#[derive(Clone, Debug, PartialEq)]
pub struct JoinOn {
    /// Left column.
    pub left: String,
    /// Right column.
    pub right: String,
}

/// Parts of a `parse` pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum ParsePart {
    /// `*`: skip anything.
    Any,
    /// A literal that must appear.
    Lit(String),
    /// A column to extract, with an optional type.
    Col(String, Option<String>),
}

/// Tabular operators.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `where` / `filter`.
    Where(Expr, usize),
    /// `project`.
    Project(Vec<NamedExpr>, usize),
    /// `project-away` (names may end in `*`).
    ProjectAway(Vec<(String, usize)>, usize),
    /// `project-keep`.
    ProjectKeep(Vec<(String, usize)>, usize),
    /// `project-rename new = old`.
    ProjectRename(Vec<(String, String, usize)>, usize),
    /// `project-reorder`.
    ProjectReorder(Vec<(String, usize)>, usize),
    /// `extend`.
    Extend(Vec<NamedExpr>, usize),
    /// `summarize aggs by keys`.
    Summarize {
        /// Aggregations.
        aggs: Vec<NamedExpr>,
        /// Group keys.
        by: Vec<NamedExpr>,
        /// Offset.
        at: usize,
    },
    /// `top N by key`.
    Top {
        /// How many.
        n: Expr,
        /// The key.
        key: SortKey,
        /// Offset.
        at: usize,
    },
    /// `take` / `limit`.
    Take(Expr, usize),
    /// `sort by` / `order by`.
    Sort(Vec<SortKey>, usize),
    /// `distinct`.
    Distinct(Vec<NamedExpr>, usize),
    /// `count`.
    Count(usize),
    /// `join`.
    Join {
        /// Kind.
        kind: JoinKind,
        /// Right side.
        right: Tabular,
        /// Keys.
        on: Vec<JoinOn>,
        /// Offset.
        at: usize,
    },
    /// `union` as an operator: this table and others.
    Union(Union, usize),
    /// `lookup [kind=leftouter|inner] (T) on keys`: columns of a dimension table.
    Lookup {
        /// `inner` instead of the default `leftouter`.
        inner: bool,
        /// The dimension table.
        right: Tabular,
        /// Keys.
        on: Vec<JoinOn>,
        /// Offset.
        at: usize,
    },
    /// `getschema`.
    GetSchema(usize),
    /// `invoke f(args)`: a `let`-defined function applied to this table.
    Invoke(String, Vec<Expr>, usize),
    /// `search predicate`.
    Search(Expr, usize),
    /// `mv-apply item = arr [to typeof(t)], … on (subquery)`.
    MvApply {
        /// The arrays.
        items: Vec<MvItem>,
        /// `with_itemindex=Name`.
        index: Option<String>,
        /// Operators applied to each row's elements.
        ops: Vec<Op>,
        /// Offset.
        at: usize,
    },
    /// `make-series agg [default=v], … on T [from a] [to b] step s [by keys]`.
    MakeSeries {
        /// The aggregations.
        aggs: Vec<SeriesAgg>,
        /// The axis column.
        on: Expr,
        /// Start (inclusive).
        from: Option<Expr>,
        /// End (exclusive).
        to: Option<Expr>,
        /// Bin size.
        step: Expr,
        /// Group keys.
        by: Vec<NamedExpr>,
        /// Offset.
        at: usize,
    },
    /// `evaluate plugin(args) [: (schema)]`.
    Evaluate {
        /// Plugin name.
        plugin: String,
        /// Arguments.
        args: Vec<Expr>,
        /// Declared output columns, when given.
        schema: Option<Vec<(String, String)>>,
        /// Offset.
        at: usize,
    },
    /// `top-nested …, top-nested …`.
    TopNested(Vec<NestedLevel>, usize),
    /// `mv-expand [name =] expr [to typeof(t)], …`: several arrays expand side by side.
    MvExpand {
        /// The arrays, in order.
        items: Vec<MvItem>,
        /// `with_itemindex=Name`: a column with each element's index.
        index: Option<String>,
        /// Offset.
        at: usize,
    },
    /// `parse expr with pattern`.
    Parse {
        /// What to parse.
        expr: Expr,
        /// The pattern.
        pattern: Vec<ParsePart>,
        /// Offset.
        at: usize,
    },
    /// `render chart [with (…)]`: kept as a hint in the result.
    Render {
        /// The visualization.
        chart: String,
        /// Its properties as written.
        props: Vec<(String, String)>,
        /// Offset.
        at: usize,
    },
}

/// Literals.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    /// `null` (typed later).
    Null,
    /// Bool.
    Bool(bool),
    /// Long.
    Long(i64),
    /// Real.
    Real(f64),
    /// String.
    Str(String),
    /// Datetime in nanoseconds since the epoch.
    DateTime(i64),
    /// Timespan in nanoseconds.
    Timespan(i64),
    /// Dynamic JSON text.
    Dynamic(String),
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `or`.
    Or,
    /// `and`.
    And,
    /// `==`.
    Eq,
    /// `!=` / `<>`.
    Ne,
    /// `=~` (case-insensitive equality).
    EqCi,
    /// `!~`.
    NeCi,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
}

/// String predicates (`has`, `contains`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrOp {
    /// `has`: a whole term, case-insensitive.
    Has,
    /// `has_cs`.
    HasCs,
    /// `hasprefix`.
    HasPrefix,
    /// `hassuffix`.
    HasSuffix,
    /// `contains`: a substring, case-insensitive.
    Contains,
    /// `contains_cs`.
    ContainsCs,
    /// `startswith`.
    StartsWith,
    /// `startswith_cs`.
    StartsWithCs,
    /// `endswith`.
    EndsWith,
    /// `endswith_cs`.
    EndsWithCs,
    /// `matches regex`.
    Regex,
}

/// Scalar expressions.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A literal.
    Lit(Lit, usize),
    /// A column or scalar `let` name.
    Name(String, usize),
    /// `$left.x` / `$right.x` (join conditions).
    Side(String, String, usize),
    /// A function call; `*` as an argument is `Name("*")`.
    Call(String, Vec<Expr>, usize),
    /// A binary operator.
    Bin(BinOp, Box<Expr>, Box<Expr>, usize),
    /// A string predicate, possibly negated.
    Str(StrOp, bool, Box<Expr>, Box<Expr>, usize),
    /// Unary minus.
    Neg(Box<Expr>, usize),
    /// `x.name` or `x["name"]`.
    Member(Box<Expr>, String, usize),
    /// `x[i]`.
    Index(Box<Expr>, Box<Expr>, usize),
    /// `x in (…)`, `!in`, `in~`, `!in~`.
    In {
        /// Tested value.
        expr: Box<Expr>,
        /// Candidates.
        list: Vec<Expr>,
        /// `!in`.
        negated: bool,
        /// `in~`.
        ci: bool,
        /// Offset.
        at: usize,
    },
    /// A tabular expression as an argument (`toscalar(T | …)`).
    Tabular(Box<Tabular>, usize),
    /// `x between (lo .. hi)`.
    Between {
        /// Tested value.
        expr: Box<Expr>,
        /// Low end (inclusive).
        lo: Box<Expr>,
        /// High end (inclusive; a timespan means `lo + span`).
        hi: Box<Expr>,
        /// `!between`.
        negated: bool,
        /// Offset.
        at: usize,
    },
}

impl Expr {
    /// Where the expression starts.
    pub fn at(&self) -> usize {
        match self {
            Expr::Lit(_, a)
            | Expr::Name(_, a)
            | Expr::Side(_, _, a)
            | Expr::Call(_, _, a)
            | Expr::Bin(_, _, _, a)
            | Expr::Str(_, _, _, _, a)
            | Expr::Neg(_, a)
            | Expr::Member(_, _, a)
            | Expr::Index(_, _, a) => *a,
            Expr::Tabular(_, a) => *a,
            Expr::In { at, .. } | Expr::Between { at, .. } => *at,
        }
    }
}

/// One array of `mv-expand`.
#[derive(Clone, Debug, PartialEq)]
pub struct MvItem {
    /// `bagexpansion=array`: a property bag expands to `[key, value]` pairs.
    pub bag_array: bool,
    /// Result column name.
    pub name: Option<String>,
    /// The array.
    pub expr: Expr,
    /// Element type.
    pub to: Option<String>,
}
