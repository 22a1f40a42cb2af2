//! Scalar functions KQL needs that DataFusion does not have with KQL's semantics: `dynamic`
//! values (JSON text) and access into them, term matching (`has`), case-insensitive string
//! predicates, and the Log Analytics column extraction of the compatibility tables.

use crate::json;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float64Builder, Int64Array, ListArray,
    StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A string-like column seen through one accessor (Utf8, LargeUtf8, Utf8View, Binary as UTF-8).
pub enum Strs<'a> {
    /// Utf8.
    Utf8(&'a StringArray),
    /// LargeUtf8.
    Large(&'a datafusion::arrow::array::LargeStringArray),
    /// Utf8View.
    View(&'a datafusion::arrow::array::StringViewArray),
    /// Binary (raw bytes; invalid UTF-8 reads as null).
    Bin(&'a datafusion::arrow::array::BinaryArray),
    /// BinaryView.
    BinView(&'a datafusion::arrow::array::BinaryViewArray),
    /// All nulls (a null literal).
    Null(usize),
}

impl<'a> Strs<'a> {
    /// View `a` as strings.
    pub fn of(a: &'a ArrayRef) -> Result<Strs<'a>> {
        use datafusion::arrow::array::AsArray;
        Ok(match a.data_type() {
            DataType::Utf8 => Strs::Utf8(a.as_string::<i32>()),
            DataType::LargeUtf8 => Strs::Large(a.as_string::<i64>()),
            DataType::Utf8View => Strs::View(a.as_string_view()),
            DataType::Binary => Strs::Bin(a.as_binary::<i32>()),
            DataType::BinaryView => Strs::BinView(a.as_binary_view()),
            DataType::Null => Strs::Null(a.len()),
            t => return exec_err!("expected a string, got {t}"),
        })
    }

    /// Row `i`.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Strs::Utf8(a) => (!a.is_null(i)).then(|| a.value(i)),
            Strs::Large(a) => (!a.is_null(i)).then(|| a.value(i)),
            Strs::View(a) => (!a.is_null(i)).then(|| a.value(i)),
            Strs::Bin(a) => (!a.is_null(i))
                .then(|| std::str::from_utf8(a.value(i)).ok())
                .flatten(),
            Strs::BinView(a) => (!a.is_null(i))
                .then(|| std::str::from_utf8(a.value(i)).ok())
                .flatten(),
            Strs::Null(_) => None,
        }
    }
}

/// An integer column or literal (any integer type).
fn ints(a: &ArrayRef) -> Result<Int64Array> {
    let c = datafusion::arrow::compute::cast(a, &DataType::Int64)?;
    Ok(c.as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .unwrap_or_else(|| Int64Array::from(vec![None; a.len()])))
}

type Kernel = fn(&[ArrayRef], usize) -> Result<ArrayRef>;

/// A row-wise function: a name, how many arguments, what it returns, and its kernel.
#[derive(Debug)]
struct Udf {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    kernel: Kernel,
}

impl PartialEq for Udf {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}
impl Eq for Udf {}
impl Hash for Udf {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}

impl ScalarUDFImpl for Udf {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = (self.kernel)(&arrays, if scalar { 1 } else { n })?;
        if scalar {
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&out, 0)?,
            ))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// SQL-friendly names for the dynamic functions.
const ALIASES: &[(&str, &str)] = &[
    ("kql_dyn_path", "json_get"),
    ("kql_parse_json", "parse_json"),
    ("kql_has", "has"),
    ("kql_contains", "contains_ci"),
];

fn udf(name: &'static str, arity: Arity, returns: DataType, kernel: Kernel) -> ScalarUDF {
    let signature = match arity {
        Arity::Exact(n) => Signature::any(n, Volatility::Immutable),
        Arity::Variadic => Signature::variadic_any(Volatility::Immutable),
    };
    let u = ScalarUDF::new_from_impl(Udf {
        name,
        signature,
        returns,
        kernel,
    });
    match ALIASES.iter().find(|(n, _)| *n == name) {
        Some((_, alias)) => u.with_aliases([*alias]),
        None => u,
    }
}

enum Arity {
    Exact(usize),
    Variadic,
}

/// Map each row's string to an optional string.
pub(crate) fn map_str(
    a: &ArrayRef,
    n: usize,
    f: impl Fn(&str) -> Option<String>,
) -> Result<ArrayRef> {
    let s = Strs::of(a)?;
    let mut b = StringBuilder::with_capacity(n, n * 16);
    for i in 0..n {
        match s.get(i).and_then(&f) {
            Some(v) => b.append_value(v),
            None => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// Map pairs of strings to a boolean.
fn pred2(args: &[ArrayRef], n: usize, f: impl Fn(&str, &str) -> bool) -> Result<ArrayRef> {
    let (a, b) = (Strs::of(&args[0])?, Strs::of(&args[1])?);
    let one = args[1].len() == 1 && n > 1;
    let mut out = BooleanBuilder::with_capacity(n);
    for i in 0..n {
        let j = if one { 0 } else { i };
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => out.append_value(f(x, y)),
            _ => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

// ---- dynamic ----------------------------------------------------------------------------------

fn k_parse_json(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    map_str(&a[0], n, |s| Some(json::parse(s)))
}

/// `dyn_path(value, k1, k2, …)`: string keys are properties, integers are array positions.
fn k_path(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let base = Strs::of(&a[0])?;
    enum Step {
        Key(Vec<Option<String>>),
        Idx(Int64Array),
    }
    let mut steps = Vec::new();
    for arg in &a[1..] {
        if arg.data_type().is_integer() {
            steps.push(Step::Idx(ints(arg)?));
        } else {
            let s = Strs::of(arg)?;
            steps.push(Step::Key(
                (0..arg.len())
                    .map(|i| s.get(i).map(str::to_string))
                    .collect(),
            ));
        }
    }
    let mut b = StringBuilder::with_capacity(n, n * 16);
    for i in 0..n {
        let mut cur = base.get(i);
        for st in &steps {
            cur = cur.and_then(|c| match st {
                Step::Key(k) => {
                    let key = if k.len() == 1 { &k[0] } else { &k[i] };
                    key.as_deref().and_then(|k| json::get_key(c, k))
                }
                Step::Idx(ix) => {
                    let j = if ix.len() == 1 { 0 } else { i };
                    (!ix.is_null(j))
                        .then(|| json::get_index(c, ix.value(j)))
                        .flatten()
                }
            });
        }
        match cur.filter(|c| json::kind(c) != json::Kind::Null) {
            Some(v) => b.append_value(v),
            None => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

fn k_dyn_tostring(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    map_str(&a[0], n, json::to_string)
}

/// SQL `json_text(json [, key or index]…)`: the value at the path as text (`json_get` then
/// `tostring`).
fn k_json_text(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    if a.len() == 1 {
        return k_dyn_tostring(a, n);
    }
    let at = k_path(a, n)?;
    map_str(&at, n, json::to_string)
}

fn k_dyn_tolong(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let s = Strs::of(&a[0])?;
    Ok(Arc::new(Int64Array::from_iter(
        (0..n).map(|i| s.get(i).and_then(json::to_i64)),
    )))
}

fn k_dyn_todouble(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let s = Strs::of(&a[0])?;
    let mut b = Float64Builder::with_capacity(n);
    for i in 0..n {
        b.append_option(s.get(i).and_then(json::to_f64));
    }
    Ok(Arc::new(b.finish()))
}

fn k_dyn_tobool(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let s = Strs::of(&a[0])?;
    Ok(Arc::new(BooleanArray::from_iter(
        (0..n).map(|i| s.get(i).and_then(json::to_bool)),
    )))
}

fn k_array_length(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let s = Strs::of(&a[0])?;
    Ok(Arc::new(Int64Array::from_iter((0..n).map(|i| {
        s.get(i).and_then(json::elements).map(|e| e.len() as i64)
    }))))
}

fn k_bag_keys(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    map_str(&a[0], n, |s| {
        json::keys(s).map(|k| serde_json::Value::from(k).to_string())
    })
}

/// Elements of a dynamic array as a list of dynamic texts (for mv-expand); a property bag
/// yields one `{"key": value}` per property, a scalar yields itself.
fn k_expand(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let s = Strs::of(&a[0])?;
    let mut b = datafusion::arrow::array::ListBuilder::new(StringBuilder::new());
    for i in 0..n {
        match s.get(i) {
            None => b.append(false),
            Some(t) => {
                match json::kind(t) {
                    json::Kind::Array => {
                        for e in json::elements(t).unwrap_or_default() {
                            b.values().append_value(e);
                        }
                    }
                    json::Kind::Object => {
                        let v: serde_json::Map<String, serde_json::Value> =
                            serde_json::from_str(t).unwrap_or_default();
                        for (k, x) in v {
                            let mut m = serde_json::Map::new();
                            m.insert(k, x);
                            b.values()
                                .append_value(serde_json::Value::Object(m).to_string());
                        }
                    }
                    json::Kind::Null => {}
                    _ => b.values().append_value(t),
                }
                b.append(true);
            }
        }
    }
    Ok(Arc::new(b.finish()))
}

/// A list column (`user_groups`, `ips`, `make_set` results…) as dynamic JSON text.
fn k_list_json(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let arr = &a[0];
    if matches!(arr.data_type(), DataType::Null) {
        return Ok(Arc::new(StringArray::from(vec![None::<&str>; n])));
    }
    let list = arr.as_any().downcast_ref::<ListArray>().ok_or_else(|| {
        datafusion::error::DataFusionError::Execution(format!(
            "expected a list, got {}",
            arr.data_type()
        ))
    })?;
    let mut b = StringBuilder::with_capacity(n, n * 32);
    for i in 0..n {
        if list.is_null(i) {
            b.append_null();
            continue;
        }
        let vals = list.value(i);
        let mut out = String::from("[");
        for j in 0..vals.len() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(&scalar_json(&vals, j)?);
        }
        out.push(']');
        b.append_value(out);
    }
    Ok(Arc::new(b.finish()))
}

/// Element `i` of a list column as a JSON array value.
pub fn scalar_json_list(a: &ArrayRef, i: usize) -> Option<serde_json::Value> {
    let list = a.as_any().downcast_ref::<ListArray>()?;
    if list.is_null(i) {
        return None;
    }
    let vals = list.value(i);
    let items = (0..vals.len())
        .map(|j| {
            scalar_json(&vals, j)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(serde_json::Value::Null)
        })
        .collect();
    Some(serde_json::Value::Array(items))
}

/// One array element as JSON text.
pub fn scalar_json(a: &ArrayRef, i: usize) -> Result<String> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::*;
    if a.is_null(i) {
        return Ok("null".into());
    }
    Ok(match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            json::quote(Strs::of(a)?.get(i).unwrap_or_default())
        }
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(i).to_string(),
        DataType::Float64 => {
            let f = a.as_primitive::<Float64Type>().value(i);
            serde_json::Number::from_f64(f).map_or("null".into(), |n| n.to_string())
        }
        DataType::Boolean => a.as_boolean().value(i).to_string(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => json::quote(
            &trailwarden_model::Timestamp(a.as_primitive::<TimestampNanosecondType>().value(i))
                .to_string(),
        ),
        _ => {
            let s = datafusion::arrow::util::display::array_value_to_string(a, i)?;
            json::quote(&s)
        }
    })
}

// ---- strings ----------------------------------------------------------------------------------

/// KQL terms: maximal runs of ASCII letters and digits (anything else separates).
fn is_term_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c >= 0x80
}

/// `has`: `needle` appears as a whole term (case-insensitive). A needle with separators in it
/// must match at term boundaries on both ends.
pub fn has(hay: &str, needle: &str, cs: bool) -> bool {
    let Some((&first, &last)) = needle.as_bytes().first().zip(needle.as_bytes().last()) else {
        return true;
    };
    find_bounded(hay, needle, cs, is_term_char(first), is_term_char(last))
}

/// `needle` in `hay`, preceded by a term boundary when `start`, followed by one when `end`.
fn find_bounded(hay: &str, needle: &str, cs: bool, start: bool, end: bool) -> bool {
    let (h, nd) = (hay.as_bytes(), needle.as_bytes());
    let mut i = 0;
    while i + nd.len() <= h.len() {
        let window = &h[i..i + nd.len()];
        let eq = if cs {
            window == nd
        } else {
            window.eq_ignore_ascii_case(nd)
        };
        let after = i + nd.len();
        if eq
            && (!start || i == 0 || !is_term_char(h[i - 1]))
            && (!end || after == h.len() || !is_term_char(h[after]))
        {
            return true;
        }
        i += 1;
    }
    false
}

fn has_prefix(hay: &str, p: &str) -> bool {
    find_bounded(hay, p, false, true, false)
}

fn has_suffix(hay: &str, p: &str) -> bool {
    find_bounded(hay, p, false, false, true)
}

/// Case-insensitive substring (ASCII folding; other characters compare as lower case).
pub fn contains_ci(hay: &str, needle: &str) -> bool {
    if needle.is_ascii() && hay.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        if n.is_empty() {
            return true;
        }
        return h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    hay.to_lowercase().contains(&needle.to_lowercase())
}

fn starts_ci(h: &str, p: &str) -> bool {
    h.len() >= p.len()
        && h.is_char_boundary(p.len())
        && (h[..p.len()].eq_ignore_ascii_case(p) || h.to_lowercase().starts_with(&p.to_lowercase()))
}

fn ends_ci(h: &str, p: &str) -> bool {
    h.len() >= p.len()
        && h.is_char_boundary(h.len() - p.len())
        && (h[h.len() - p.len()..].eq_ignore_ascii_case(p)
            || h.to_lowercase().ends_with(&p.to_lowercase()))
}

fn k_has(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    pred2(a, n, |h, x| has(h, x, false))
}
fn k_has_cs(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    pred2(a, n, |h, x| has(h, x, true))
}
fn k_hasprefix(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    pred2(a, n, has_prefix)
}
fn k_hassuffix(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    pred2(a, n, has_suffix)
}
fn k_contains(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    pred2(a, n, contains_ci)
}
fn k_contains_cs(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    pred2(a, n, |h, x| h.contains(x))
}
fn k_startswith(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    pred2(a, n, starts_ci)
}
fn k_startswith_cs(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    pred2(a, n, |h, x| h.starts_with(x))
}
fn k_endswith(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    pred2(a, n, ends_ci)
}
fn k_endswith_cs(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    pred2(a, n, |h, x| h.ends_with(x))
}
fn k_eq_ci(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    pred2(a, n, |x, y| {
        x.eq_ignore_ascii_case(y) || x.to_lowercase() == y.to_lowercase()
    })
}

/// `split(s, delimiter[, index])` as dynamic.
fn k_split(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let (s, d) = (Strs::of(&a[0])?, Strs::of(&a[1])?);
    let idx = match a.get(2) {
        Some(x) => Some(ints(x)?),
        None => None,
    };
    let one = a[1].len() == 1;
    let mut b = StringBuilder::with_capacity(n, n * 16);
    for i in 0..n {
        let (Some(text), Some(delim)) = (s.get(i), d.get(if one { 0 } else { i })) else {
            b.append_null();
            continue;
        };
        let parts: Vec<&str> = if delim.is_empty() {
            vec![text]
        } else {
            text.split(delim).collect()
        };
        match &idx {
            Some(ix) => {
                let j = if ix.len() == 1 { 0 } else { i };
                let k = ix.value(j);
                match usize::try_from(k).ok().and_then(|k| parts.get(k)) {
                    Some(p) => b.append_value(serde_json::Value::from(vec![*p]).to_string()),
                    None => b.append_value("[]"),
                }
            }
            None => b.append_value(serde_json::Value::from(parts).to_string()),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// The raw bytes of a record as text (lossy for the rare non-UTF-8 record).
fn k_text(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    use datafusion::arrow::array::AsArray;
    let arr = &a[0];
    let mut b = StringBuilder::with_capacity(n, n * 64);
    match arr.data_type() {
        DataType::Binary => {
            let x = arr.as_binary::<i32>();
            for i in 0..n {
                if x.is_null(i) {
                    b.append_null();
                } else {
                    b.append_value(String::from_utf8_lossy(x.value(i)));
                }
            }
        }
        DataType::BinaryView => {
            let x = arr.as_binary_view();
            for i in 0..n {
                if x.is_null(i) {
                    b.append_null();
                } else {
                    b.append_value(String::from_utf8_lossy(x.value(i)));
                }
            }
        }
        _ => return map_str(arr, n, |s| Some(s.to_string())),
    }
    Ok(Arc::new(b.finish()))
}

/// `isempty(x)`: null or "".
fn k_isempty(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    if !matches!(
        a[0].data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary
    ) {
        return Ok(Arc::new(BooleanArray::from_iter(
            (0..n).map(|i| Some(a[0].is_null(i))),
        )));
    }
    let s = Strs::of(&a[0])?;
    Ok(Arc::new(BooleanArray::from_iter(
        (0..n).map(|i| Some(s.get(i).is_none_or(str::is_empty))),
    )))
}

/// KQL `tostring` of a non-dynamic value: numbers and booleans as KQL prints them, datetimes
/// in ISO 8601 with `Z`, timespans as `[d.]hh:mm:ss[.fffffff]`, null as null.
fn k_tostring(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::*;
    let arr = &a[0];
    let mut b = StringBuilder::with_capacity(n, n * 16);
    for i in 0..n {
        if arr.is_null(i) {
            b.append_null();
            continue;
        }
        let v = match arr.data_type() {
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                trailwarden_model::Timestamp(arr.as_primitive::<TimestampNanosecondType>().value(i))
                    .to_string()
            }
            DataType::Duration(TimeUnit::Nanosecond) => {
                timespan_text(arr.as_primitive::<DurationNanosecondType>().value(i))
            }
            DataType::Boolean => arr.as_boolean().value(i).to_string(),
            DataType::Float64 => {
                let f = arr.as_primitive::<Float64Type>().value(i);
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    format!("{f:.0}")
                } else {
                    f.to_string()
                }
            }
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
                Strs::of(arr)?.get(i).unwrap_or_default().to_string()
            }
            _ => datafusion::arrow::util::display::array_value_to_string(arr, i)?,
        };
        b.append_value(v);
    }
    Ok(Arc::new(b.finish()))
}

/// A timespan as KQL prints it.
pub fn timespan_text(ns: i64) -> String {
    let neg = ns < 0;
    let ns = ns.unsigned_abs();
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if d > 0 {
        out.push_str(&format!("{d}."));
    }
    out.push_str(&format!("{h:02}:{m:02}:{s:02}"));
    if frac > 0 {
        out.push_str(&format!(".{:07}", frac / 100));
    }
    out
}

/// Any value as dynamic JSON text.
fn k_to_dynamic(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let arr = &a[0];
    let mut b = StringBuilder::with_capacity(n, n * 8);
    for i in 0..n {
        if arr.is_null(i) {
            b.append_null();
        } else {
            b.append_value(scalar_json(arr, i)?);
        }
    }
    Ok(Arc::new(b.finish()))
}

/// A string as a datetime (every shape ingest accepts), null when it is not one.
fn k_todatetime(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let s = Strs::of(&a[0])?;
    let mut b =
        datafusion::arrow::array::TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    for i in 0..n {
        b.append_option(s.get(i).and_then(crate::types::parse_datetime).map(|t| t.0));
    }
    Ok(Arc::new(b.finish()))
}

/// A string as a timespan (`1d`, `00:30:00`, …).
fn k_totimespan(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let s = Strs::of(&a[0])?;
    let mut b = datafusion::arrow::array::DurationNanosecondBuilder::with_capacity(n);
    for i in 0..n {
        b.append_option(s.get(i).and_then(crate::kql::lexer::parse_timespan));
    }
    Ok(Arc::new(b.finish()))
}

/// `extract(regex, group, text)`.
fn k_extract(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let re_s = Strs::of(&a[0])?;
    let group = ints(&a[1])?;
    let text = Strs::of(&a[2])?;
    let pattern = re_s.get(0).unwrap_or_default();
    let re = regex::Regex::new(pattern).map_err(|e| {
        datafusion::error::DataFusionError::Execution(format!(
            "extract(): bad regex {pattern:?}: {e}"
        ))
    })?;
    let mut b = StringBuilder::with_capacity(n, n * 8);
    for i in 0..n {
        let g = if group.len() == 1 {
            group.value(0)
        } else {
            group.value(i)
        };
        let v = text
            .get(i)
            .and_then(|t| re.captures(t))
            .and_then(|c| c.get(usize::try_from(g).unwrap_or(0)))
            .map(|m| m.as_str().to_string());
        match v {
            Some(v) => b.append_value(v),
            None => b.append_null(),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// `extract_all(regex, [groups,] text)`: every match's capture groups as a dynamic array —
/// one string per match when one group is taken, an array per match otherwise; `groups` is a
/// JSON array of group numbers or names (empty: every group). No match, or no text: null.
fn k_extract_all(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let exec = |m: String| datafusion::error::DataFusionError::Execution(m);
    let re_s = Strs::of(&a[0])?;
    let groups_s = Strs::of(&a[1])?;
    let text = Strs::of(&a[2])?;
    let pattern = re_s.get(0).unwrap_or_default();
    let re = regex::Regex::new(pattern)
        .map_err(|e| exec(format!("extract_all(): bad regex {pattern:?}: {e}")))?;
    let count = re.captures_len() - 1;
    if count == 0 {
        return Err(exec(format!(
            "extract_all(): the regex {pattern:?} has no capture group (it needs 1 to 16)"
        )));
    }
    // which groups, by index
    let mut take: Vec<usize> = Vec::new();
    let spec = groups_s.get(0).unwrap_or_default().trim();
    if !spec.is_empty() {
        let v: serde_json::Value = serde_json::from_str(spec)
            .map_err(|e| exec(format!("extract_all(): capture groups {spec}: {e}")))?;
        for g in v.as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let idx = match g {
                serde_json::Value::Number(x) => x.as_u64().map(|x| x as usize),
                serde_json::Value::String(name) => {
                    re.capture_names().position(|c| c == Some(name.as_str()))
                }
                _ => None,
            };
            match idx {
                Some(i) if (1..=count).contains(&i) => take.push(i),
                _ => {
                    return Err(exec(format!(
                    "extract_all(): capture group {g} is not in the regex (1..{count} or a name)"
                )))
                }
            }
        }
    }
    if take.is_empty() {
        take = (1..=count).collect();
    }
    let mut b = StringBuilder::with_capacity(n, n * 16);
    for i in 0..n {
        let Some(t) = text.get(i) else {
            b.append_null();
            continue;
        };
        let mut out: Vec<serde_json::Value> = Vec::new();
        for c in re.captures_iter(t) {
            let cell = |g: usize| {
                c.get(g)
                    .map_or(serde_json::Value::String(String::new()), |m| {
                        serde_json::Value::String(m.as_str().to_string())
                    })
            };
            if take.len() == 1 {
                out.push(cell(take[0]));
            } else {
                out.push(serde_json::Value::Array(
                    take.iter().map(|g| cell(*g)).collect(),
                ));
            }
        }
        if out.is_empty() {
            b.append_null();
        } else {
            b.append_value(serde_json::Value::Array(out).to_string());
        }
    }
    Ok(Arc::new(b.finish()))
}

/// A JSON text of a row as a value (null for SQL null, the text itself when it does not parse).
fn json_cell(s: &Strs, i: usize) -> serde_json::Value {
    match s.get(i) {
        None => serde_json::Value::Null,
        Some(t) => {
            serde_json::from_str(t).unwrap_or_else(|_| serde_json::Value::String(t.to_string()))
        }
    }
}

/// `pack(k1, v1, k2, v2, …)` / `bag_pack`: keys are strings, values JSON texts.
fn k_pack(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let cols: Vec<Strs> = a.iter().map(Strs::of).collect::<Result<_>>()?;
    let mut b = StringBuilder::with_capacity(n, n * 32);
    for i in 0..n {
        let mut m = serde_json::Map::new();
        for pair in cols.chunks(2) {
            if let (Some(k), Some(v)) = (pair[0].get(i), pair.get(1)) {
                m.insert(k.to_string(), json_cell(v, i));
            }
        }
        b.append_value(serde_json::Value::Object(m).to_string());
    }
    Ok(Arc::new(b.finish()))
}

/// `pack_all([ignore_null_empty])`: the first argument says whether to leave out null and empty
/// values, then name, value pairs of every column.
fn k_pack_all(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    use datafusion::arrow::array::AsArray;
    let drop_empty = a[0]
        .as_boolean_opt()
        .is_some_and(|b| !b.is_empty() && b.value(0));
    let cols: Vec<Strs> = a[1..].iter().map(Strs::of).collect::<Result<_>>()?;
    let mut b = StringBuilder::with_capacity(n, n * 64);
    for i in 0..n {
        let mut m = serde_json::Map::new();
        for pair in cols.chunks(2) {
            let (Some(k), Some(v)) = (pair[0].get(i), pair.get(1)) else {
                continue;
            };
            let x = json_cell(v, i);
            let empty = match &x {
                serde_json::Value::Null => true,
                serde_json::Value::String(s) => s.is_empty(),
                _ => false,
            };
            if !(drop_empty && empty) {
                m.insert(k.to_string(), x);
            }
        }
        b.append_value(serde_json::Value::Object(m).to_string());
    }
    Ok(Arc::new(b.finish()))
}

/// `pack_array(v1, v2, …)`: values as JSON texts.
fn k_pack_array(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let cols: Vec<Strs> = a.iter().map(Strs::of).collect::<Result<_>>()?;
    let mut b = StringBuilder::with_capacity(n, n * 16);
    for i in 0..n {
        let v: Vec<serde_json::Value> = cols.iter().map(|c| json_cell(c, i)).collect();
        b.append_value(serde_json::Value::Array(v).to_string());
    }
    Ok(Arc::new(b.finish()))
}

/// `make_bag(x)` after `array_agg(x)`: the property bags merged into one (the first value of a key
/// kept; what is not a property bag left out), `{}` when there is none.
fn k_make_bag(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    use datafusion::arrow::array::{Array, AsArray};
    let lists = a[0].as_list_opt::<i32>().ok_or_else(|| {
        datafusion::error::DataFusionError::Execution("make_bag(): not a list".into())
    })?;
    let mut b = StringBuilder::with_capacity(n, n * 32);
    for i in 0..n {
        let mut bag = serde_json::Map::new();
        if !lists.is_null(i) {
            let vals = lists.value(i);
            let s = Strs::of(&vals)?;
            for j in 0..vals.len() {
                let Some(text) = s.get(j) else { continue };
                if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(text) {
                    for (k, v) in m {
                        bag.entry(k).or_insert(v);
                    }
                }
            }
        }
        b.append_value(serde_json::Value::Object(bag).to_string());
    }
    Ok(Arc::new(b.finish()))
}

/// `percentile(x, p)` after `array_agg(x)`: the nearest-rank value (one of the inputs, as Kusto
/// returns): the ⌈p/100 × n⌉-th smallest, the smallest for p = 0. No values: null.
fn nearest_rank(a: &[ArrayRef], n: usize) -> Result<Vec<Option<f64>>> {
    use datafusion::arrow::array::{Array, AsArray, Float64Array};
    let lists = a[0].as_list_opt::<i32>().ok_or_else(|| {
        datafusion::error::DataFusionError::Execution("percentile(): not a list".into())
    })?;
    let p = a[1].as_primitive_opt::<datafusion::arrow::datatypes::Float64Type>();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if lists.is_null(i) {
            out.push(None);
            continue;
        }
        let pv = p.map_or(50.0, |p| if p.len() == 1 { p.value(0) } else { p.value(i) });
        let vals = lists.value(i);
        let Some(f) = vals.as_any().downcast_ref::<Float64Array>() else {
            out.push(None);
            continue;
        };
        let mut v: Vec<f64> = f.iter().flatten().collect();
        if v.is_empty() {
            out.push(None);
            continue;
        }
        v.sort_by(|x, y| x.total_cmp(y));
        let rank = ((pv / 100.0) * v.len() as f64).ceil() as usize;
        out.push(Some(v[rank.clamp(1, v.len()) - 1]));
    }
    Ok(out)
}

fn k_percentile(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    Ok(Arc::new(datafusion::arrow::array::Float64Array::from(
        nearest_rank(a, n)?,
    )))
}

fn k_percentile_long(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    let v: Vec<Option<i64>> = nearest_rank(a, n)?
        .into_iter()
        .map(|x| x.map(|x| x as i64))
        .collect();
    Ok(Arc::new(datafusion::arrow::array::Int64Array::from(v)))
}

/// `array_sort_asc` / `array_sort_desc`: numbers before strings, each in order; nulls last.
fn sort_json_array(text: &str, desc: bool) -> Option<String> {
    let mut v: Vec<serde_json::Value> = serde_json::from_str(text).ok()?;
    let key = |x: &serde_json::Value| -> (u8, f64, String) {
        match x {
            serde_json::Value::Number(n) => (0, n.as_f64().unwrap_or(0.0), String::new()),
            serde_json::Value::String(s) => (1, 0.0, s.clone()),
            serde_json::Value::Bool(b) => (2, f64::from(u8::from(*b)), String::new()),
            serde_json::Value::Null => (4, 0.0, String::new()),
            other => (3, 0.0, other.to_string()),
        }
    };
    v.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        let ord =
            ka.0.cmp(&kb.0)
                .then(ka.1.total_cmp(&kb.1))
                .then(ka.2.cmp(&kb.2));
        if desc && ka.0 != 4 && kb.0 != 4 {
            ord.reverse()
        } else {
            ord
        }
    });
    Some(serde_json::Value::Array(v).to_string())
}

fn k_sort_asc(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    map_str(&a[0], n, |t| sort_json_array(t, false))
}

fn k_sort_desc(a: &[ArrayRef], n: usize) -> Result<ArrayRef> {
    map_str(&a[0], n, |t| sort_json_array(t, true))
}

/// Every function above, by the name the lowering calls.
pub fn all() -> Vec<ScalarUDF> {
    use Arity::*;
    use DataType::*;
    vec![
        udf("kql_parse_json", Exact(1), Utf8, k_parse_json),
        udf("kql_dyn_path", Variadic, Utf8, k_path),
        udf("json_text", Variadic, Utf8, k_json_text),
        udf("kql_dyn_tostring", Exact(1), Utf8, k_dyn_tostring),
        udf("kql_dyn_tolong", Exact(1), Int64, k_dyn_tolong),
        udf("kql_dyn_todouble", Exact(1), Float64, k_dyn_todouble),
        udf("kql_dyn_tobool", Exact(1), Boolean, k_dyn_tobool),
        udf("kql_array_length", Exact(1), Int64, k_array_length),
        udf("kql_bag_keys", Exact(1), Utf8, k_bag_keys),
        udf(
            "kql_expand",
            Exact(1),
            List(Arc::new(Field::new("item", Utf8, true))),
            k_expand,
        ),
        udf("kql_list_json", Exact(1), Utf8, k_list_json),
        udf("kql_has", Exact(2), Boolean, k_has),
        udf("kql_has_cs", Exact(2), Boolean, k_has_cs),
        udf("kql_hasprefix", Exact(2), Boolean, k_hasprefix),
        udf("kql_hassuffix", Exact(2), Boolean, k_hassuffix),
        udf("kql_contains", Exact(2), Boolean, k_contains),
        udf("kql_contains_cs", Exact(2), Boolean, k_contains_cs),
        udf("kql_startswith", Exact(2), Boolean, k_startswith),
        udf("kql_startswith_cs", Exact(2), Boolean, k_startswith_cs),
        udf("kql_endswith", Exact(2), Boolean, k_endswith),
        udf("kql_endswith_cs", Exact(2), Boolean, k_endswith_cs),
        udf("kql_eq_ci", Exact(2), Boolean, k_eq_ci),
        udf("kql_split", Variadic, Utf8, k_split),
        udf("kql_isempty", Exact(1), Boolean, k_isempty),
        udf("tw_text", Exact(1), Utf8, k_text),
        udf("kql_tostring", Exact(1), Utf8, k_tostring),
        udf("kql_to_dynamic", Exact(1), Utf8, k_to_dynamic),
        udf(
            "kql_todatetime",
            Exact(1),
            crate::types::datetime_type(),
            k_todatetime,
        ),
        udf(
            "kql_totimespan",
            Exact(1),
            Duration(datafusion::arrow::datatypes::TimeUnit::Nanosecond),
            k_totimespan,
        ),
        udf("kql_extract", Exact(3), Utf8, k_extract),
        udf("kql_extract_all", Exact(3), Utf8, k_extract_all),
        udf("kql_percentile", Exact(2), Float64, k_percentile),
        udf("kql_make_bag", Exact(1), Utf8, k_make_bag),
        udf(
            "kql_format_datetime",
            Exact(2),
            Utf8,
            crate::fmt::k_format_datetime,
        ),
        udf(
            "kql_dayofweek",
            Exact(1),
            DataType::Duration(datafusion::arrow::datatypes::TimeUnit::Nanosecond),
            crate::fmt::k_dayofweek,
        ),
        udf("kql_trim", Exact(2), Utf8, crate::fmt::k_trim),
        udf("kql_reverse", Exact(1), Utf8, crate::fmt::k_reverse),
        udf("kql_hash_sha256", Exact(1), Utf8, crate::fmt::k_hash_sha256),
        udf(
            "kql_base64_encode",
            Exact(1),
            Utf8,
            crate::fmt::k_base64_encode,
        ),
        udf(
            "kql_base64_decode",
            Exact(1),
            Utf8,
            crate::fmt::k_base64_decode,
        ),
        udf(
            "kql_ipv4_is_private",
            Exact(1),
            DataType::Boolean,
            crate::fmt::k_ipv4_is_private,
        ),
        udf(
            "kql_ipv4_is_in_range",
            Exact(2),
            DataType::Boolean,
            crate::fmt::k_ipv4_is_in_range,
        ),
        udf("kql_pack", Variadic, Utf8, k_pack),
        udf("kql_pack_all", Variadic, Utf8, k_pack_all),
        udf("kql_pack_array", Variadic, Utf8, k_pack_array),
        udf("kql_percentile_long", Exact(2), Int64, k_percentile_long),
        udf("kql_array_sort_asc", Exact(1), Utf8, k_sort_asc),
        udf("kql_array_sort_desc", Exact(1), Utf8, k_sort_desc),
        udf(
            "kql_series_fill",
            Exact(7),
            Utf8,
            crate::series::k_series_fill,
        ),
        udf(
            "kql_series_axis",
            Exact(3),
            Utf8,
            crate::series::k_series_axis,
        ),
        udf(
            "kql_series_stats",
            Exact(1),
            Utf8,
            crate::series::k_series_stats,
        ),
        udf(
            "kql_series_fit_line",
            Exact(1),
            Utf8,
            crate::series::k_series_fit_line,
        ),
        udf(
            "kql_series_decompose",
            Exact(5),
            Utf8,
            crate::series::k_series_decompose,
        ),
        udf(
            "kql_series_decompose_anomalies",
            Exact(7),
            Utf8,
            crate::series::k_series_decompose_anomalies,
        ),
        udf(
            "kql_series_outliers",
            Exact(5),
            Utf8,
            crate::series::k_series_outliers,
        ),
        udf(
            "kql_series_fir",
            Exact(4),
            Utf8,
            crate::series::k_series_fir,
        ),
        udf(
            "kql_series_fill_gaps",
            Exact(3),
            Utf8,
            crate::series::k_series_fill_gaps,
        ),
        udf(
            "kql_strcat_array",
            Exact(2),
            Utf8,
            crate::text::k_strcat_array,
        ),
        udf("kql_zip", Variadic, Utf8, crate::text::k_zip),
        udf("kql_parse_url", Exact(1), Utf8, crate::text::k_parse_url),
        udf("kql_parse_path", Exact(1), Utf8, crate::text::k_parse_path),
        udf(
            "kql_format_timespan",
            Exact(2),
            Utf8,
            crate::text::k_format_timespan,
        ),
        udf(
            "kql_indexes",
            Exact(1),
            List(Arc::new(Field::new("item", Int64, true))),
            crate::text::k_indexes,
        ),
        udf(
            "kql_bag_key_types",
            Exact(1),
            List(Arc::new(Field::new("item", Utf8, true))),
            crate::text::k_bag_key_types,
        ),
        udf("kql_bag_pairs", Exact(1), Utf8, crate::text::k_bag_pairs),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_matches_whole_terms() {
        assert!(has("pods/nginx-1 created", "nginx", false));
        assert!(has("Pods/NGINX", "nginx", false));
        assert!(!has("nginxes", "nginx", false));
        assert!(!has("xnginx", "nginx", false));
        assert!(has("a pods/nginx b", "pods/nginx", false));
        assert!(!has("Pods", "pods", true));
        assert!(has_prefix("kube-system", "kube"));
        assert!(!has_prefix("xkube", "kube"));
        assert!(has_suffix("my-admin", "admin"));
        assert!(contains_ci("Azure Kubernetes Service", "kubernetes"));
        assert!(starts_ci("Microsoft.ContainerService", "microsoft."));
        assert!(ends_ci("x.ClusterRoleBinding", "rolebinding"));
    }
}
