//! KQL's scalar types and how they are carried in Arrow.

use datafusion::arrow::datatypes::{DataType, TimeUnit};

/// A KQL scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KType {
    /// `bool`.
    Bool,
    /// `int` (32-bit).
    Int,
    /// `long` (64-bit).
    Long,
    /// `real` (double).
    Real,
    /// `string`.
    String,
    /// `datetime` (UTC, nanoseconds).
    DateTime,
    /// `timespan` (nanoseconds).
    TimeSpan,
    /// `dynamic`: carried as JSON text.
    Dynamic,
}

/// The Arrow type of a KQL `datetime`.
pub fn datetime_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

impl KType {
    /// The Arrow type values of this KQL type have.
    pub fn arrow(self) -> DataType {
        match self {
            KType::Bool => DataType::Boolean,
            KType::Int => DataType::Int32,
            KType::Long => DataType::Int64,
            KType::Real => DataType::Float64,
            KType::String | KType::Dynamic => DataType::Utf8,
            KType::DateTime => datetime_type(),
            KType::TimeSpan => DataType::Duration(TimeUnit::Nanosecond),
        }
    }

    /// The KQL type of an Arrow column (`dynamic` must be known from elsewhere: it looks like
    /// a string).
    pub fn of_arrow(t: &DataType) -> KType {
        match t {
            DataType::Boolean => KType::Bool,
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::UInt8
            | DataType::UInt16 => KType::Int,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => KType::Long,
            DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..) => KType::Real,
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => KType::DateTime,
            DataType::Duration(_) | DataType::Interval(_) => KType::TimeSpan,
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::Struct(_)
            | DataType::Map(..) => KType::Dynamic,
            _ => KType::String,
        }
    }

    /// The KQL name (`typeof`).
    pub fn name(self) -> &'static str {
        match self {
            KType::Bool => "bool",
            KType::Int => "int",
            KType::Long => "long",
            KType::Real => "real",
            KType::String => "string",
            KType::DateTime => "datetime",
            KType::TimeSpan => "timespan",
            KType::Dynamic => "dynamic",
        }
    }

    /// Parse a KQL type name.
    pub fn parse(s: &str) -> Option<KType> {
        Some(match s {
            "bool" | "boolean" => KType::Bool,
            "int" => KType::Int,
            "long" => KType::Long,
            "real" | "double" | "decimal" => KType::Real,
            "string" => KType::String,
            "datetime" | "date" => KType::DateTime,
            "timespan" | "time" => KType::TimeSpan,
            "dynamic" => KType::Dynamic,
            _ => return None,
        })
    }

    /// Numeric (int, long, real).
    pub fn numeric(self) -> bool {
        matches!(self, KType::Int | KType::Long | KType::Real)
    }
}

pub use trailwarden_kql::parse_datetime;
