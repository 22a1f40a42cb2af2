//! Query results as JSON values and as text cells (what the CLI prints and the golden tests
//! compare): datetimes in ISO 8601 UTC, timespans as KQL prints them, `dynamic` as JSON.

use crate::types::KType;
use crate::QueryOutput;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::*;
use serde_json::Value;
use trailwarden_model::Timestamp;

/// One cell as a JSON value.
pub fn cell_json(a: &ArrayRef, i: usize, kind: KType) -> Value {
    if a.is_null(i) {
        return Value::Null;
    }
    match a.data_type() {
        DataType::Boolean => Value::Bool(a.as_boolean().value(i)),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => {
            match datafusion::arrow::compute::cast(&a.slice(i, 1), &DataType::Int64) {
                Ok(c) => Value::from(c.as_primitive::<Int64Type>().value(0)),
                Err(_) => Value::Null,
            }
        }
        DataType::Float32 | DataType::Float64 => {
            match datafusion::arrow::compute::cast(&a.slice(i, 1), &DataType::Float64) {
                Ok(c) => serde_json::Number::from_f64(c.as_primitive::<Float64Type>().value(0))
                    .map_or(Value::Null, Value::Number),
                Err(_) => Value::Null,
            }
        }
        DataType::Timestamp(_, _) => Value::String(time_text(a, i)),
        DataType::Duration(TimeUnit::Nanosecond) => Value::String(crate::udf::timespan_text(
            a.as_primitive::<DurationNanosecondType>().value(i),
        )),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = crate::udf::Strs::of(a)
                .ok()
                .and_then(|s| s.get(i).map(str::to_string))
                .unwrap_or_default();
            if kind == KType::Dynamic {
                serde_json::from_str(&s).unwrap_or(Value::String(s))
            } else {
                Value::String(s)
            }
        }
        DataType::List(_) => match crate::udf::scalar_json_list(a, i) {
            Some(v) => v,
            None => Value::Null,
        },
        _ => Value::String(
            datafusion::arrow::util::display::array_value_to_string(a, i).unwrap_or_default(),
        ),
    }
}

fn time_text(a: &ArrayRef, i: usize) -> String {
    match datafusion::arrow::compute::cast(
        &a.slice(i, 1),
        &DataType::Timestamp(TimeUnit::Nanosecond, None),
    ) {
        Ok(c) => Timestamp(c.as_primitive::<TimestampNanosecondType>().value(0)).to_string(),
        Err(_) => String::new(),
    }
}

/// One cell as text for tables and CSV (null is empty).
pub fn cell_text(a: &ArrayRef, i: usize, kind: KType) -> String {
    match cell_json(a, i, kind) {
        Value::Null => String::new(),
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Column names of a result.
pub fn columns(o: &QueryOutput) -> Vec<String> {
    o.schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// Rows as JSON objects, in order.
pub fn json_rows(o: &QueryOutput) -> Vec<serde_json::Map<String, Value>> {
    let names = columns(o);
    let mut out = Vec::with_capacity(o.rows());
    for b in &o.batches {
        for i in 0..b.num_rows() {
            let mut m = serde_json::Map::new();
            for (c, name) in names.iter().enumerate() {
                let kind = o.kinds.get(c).copied().unwrap_or(KType::String);
                m.insert(name.clone(), cell_json(b.column(c), i, kind));
            }
            out.push(m);
        }
    }
    out
}

/// Rows as text cells, in order.
pub fn text_rows(o: &QueryOutput) -> Vec<Vec<String>> {
    let mut out = Vec::with_capacity(o.rows());
    for b in &o.batches {
        for i in 0..b.num_rows() {
            out.push(
                (0..b.num_columns())
                    .map(|c| {
                        cell_text(
                            b.column(c),
                            i,
                            o.kinds.get(c).copied().unwrap_or(KType::String),
                        )
                    })
                    .collect(),
            );
        }
    }
    out
}
