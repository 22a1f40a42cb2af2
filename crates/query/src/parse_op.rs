//! The KQL `parse` operator: its pattern compiled once per query into a regex, applied by a
//! function returning a struct of the captured columns.

use crate::udf::Strs;
use datafusion::arrow::array::{ArrayRef, StringBuilder, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

#[derive(Debug)]
struct Pattern {
    name: String,
    re: regex::Regex,
    fields: Vec<String>,
    signature: Signature,
}

impl PartialEq for Pattern {
    fn eq(&self, o: &Self) -> bool {
        self.re.as_str() == o.re.as_str() && self.fields == o.fields
    }
}
impl Eq for Pattern {}
impl Hash for Pattern {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.re.as_str().hash(h);
        self.fields.hash(h);
    }
}

impl Pattern {
    fn fields(&self) -> Fields {
        Fields::from(
            self.fields
                .iter()
                .map(|f| Field::new(f, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        )
    }
}

impl ScalarUDFImpl for Pattern {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(self.fields()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let s = Strs::of(&arrays[0])?;
        let mut builders: Vec<StringBuilder> =
            self.fields.iter().map(|_| StringBuilder::new()).collect();
        for i in 0..n {
            let caps = s.get(i).and_then(|t| self.re.captures(t));
            for (k, b) in builders.iter_mut().enumerate() {
                match caps.as_ref().and_then(|c| c.get(k + 1)) {
                    Some(m) => b.append_value(m.as_str()),
                    None => b.append_null(),
                }
            }
        }
        let cols: Vec<ArrayRef> = builders
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
            self.fields(),
            cols,
            None,
        )?)))
    }
}

/// A function applying the compiled pattern `re` (one capture group per field).
pub fn pattern_udf(re: &str, fields: Vec<String>) -> Result<ScalarUDF, String> {
    let compiled = regex::Regex::new(re).map_err(|e| format!("parse pattern: {e}"))?;
    Ok(ScalarUDF::new_from_impl(Pattern {
        name: "kql_parse_pattern".into(),
        re: compiled,
        fields,
        signature: Signature::any(1, Volatility::Immutable),
    }))
}
