//! Columns of the Log Analytics compatibility tables that are not stored as query columns,
//! derived from a record's raw bytes at query time. Each table has one function returning a
//! struct of its derived columns, so a row's raw JSON is parsed once however many of them a
//! query uses. Both shapes people have are understood: the diagnostic-setting export
//! (camelCase, nested `properties`) and Log Analytics rows (PascalCase).

use crate::json;
use crate::udf::Strs;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, StringBuilder, StructArray, TimestampNanosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::{Map, Value};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use trailwarden_model::Timestamp;

/// The type of a derived column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// string
    Str,
    /// dynamic (JSON text)
    Dyn,
    /// datetime
    Time,
    /// bool
    Bool,
}

/// A derived value.
pub enum Val {
    /// Text (string or dynamic JSON).
    S(String),
    /// A time.
    T(Timestamp),
    /// A boolean.
    B(bool),
}

type Extract = fn(&str, Option<&str>) -> Vec<Option<Val>>;

/// A table's row function.
pub struct RowFn {
    name: &'static str,
    /// Column names and kinds, in struct order.
    pub fields: &'static [(&'static str, Kind)],
    extract: Extract,
    signature: Signature,
}

impl std::fmt::Debug for RowFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}
impl PartialEq for RowFn {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}
impl Eq for RowFn {}
impl Hash for RowFn {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}

fn arrow_type(k: Kind) -> DataType {
    match k {
        Kind::Str | Kind::Dyn => DataType::Utf8,
        Kind::Time => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        Kind::Bool => DataType::Boolean,
    }
}

impl RowFn {
    fn struct_type(&self) -> DataType {
        DataType::Struct(Fields::from(
            self.fields
                .iter()
                .map(|(n, k)| Field::new(*n, arrow_type(*k), true))
                .collect::<Vec<_>>(),
        ))
    }
}

enum Col {
    S(StringBuilder),
    T(TimestampNanosecondBuilder),
    B(BooleanBuilder),
}

impl ScalarUDFImpl for RowFn {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.struct_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let raw = Strs::of(&arrays[0])?;
        let format = match arrays.get(1) {
            Some(a) => Some(Strs::of(a)?),
            None => None,
        };
        let mut cols: Vec<Col> = self
            .fields
            .iter()
            .map(|(_, k)| match k {
                Kind::Str | Kind::Dyn => Col::S(StringBuilder::with_capacity(n, n * 8)),
                Kind::Time => {
                    Col::T(TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC"))
                }
                Kind::Bool => Col::B(BooleanBuilder::with_capacity(n)),
            })
            .collect();
        for i in 0..n {
            let vals = match raw.get(i) {
                Some(r) => (self.extract)(r, format.as_ref().and_then(|f| f.get(i))),
                None => Vec::new(),
            };
            for (j, c) in cols.iter_mut().enumerate() {
                let v = vals.get(j).and_then(|v| v.as_ref());
                match (c, v) {
                    (Col::S(b), Some(Val::S(s))) => b.append_value(s),
                    (Col::S(b), _) => b.append_null(),
                    (Col::T(b), Some(Val::T(t))) => b.append_value(t.0),
                    (Col::T(b), _) => b.append_null(),
                    (Col::B(b), Some(Val::B(x))) => b.append_value(*x),
                    (Col::B(b), _) => b.append_null(),
                }
            }
        }
        let arrays: Vec<ArrayRef> = cols
            .into_iter()
            .map(|c| -> ArrayRef {
                match c {
                    Col::S(mut b) => Arc::new(b.finish()),
                    Col::T(mut b) => Arc::new(b.finish()),
                    Col::B(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let fields = match self.struct_type() {
            DataType::Struct(f) => f,
            _ => Fields::empty(),
        };
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
            fields, arrays, None,
        )?)))
    }
}

fn row_fn(
    name: &'static str,
    fields: &'static [(&'static str, Kind)],
    extract: Extract,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(RowFn {
        name,
        fields,
        extract,
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

/// The row functions, registered in every session.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        row_fn("tw_k8s_row", K8S_FIELDS, k8s_row),
        row_fn("tw_activity_row", ACTIVITY_FIELDS, activity_row),
        row_fn("tw_signin_row", SIGNIN_FIELDS, signin_row),
        row_fn("tw_access_row", ACCESS_FIELDS, access_row),
    ]
}

// ---- helpers ----------------------------------------------------------------------------------

fn obj(text: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn get<'v>(o: &'v Map<String, Value>, keys: &[&str]) -> Option<&'v Value> {
    keys.iter().find_map(|k| o.get(*k)).filter(|v| !v.is_null())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

fn s(o: &Map<String, Value>, keys: &[&str]) -> Option<Val> {
    get(o, keys).and_then(text).map(Val::S)
}

/// A dynamic column: objects and arrays as JSON; a string holding JSON (Log Analytics exports
/// dynamic columns as strings) parsed.
fn d(o: &Map<String, Value>, keys: &[&str]) -> Option<Val> {
    get(o, keys).map(|v| match v {
        Value::String(x) => Val::S(json::compact(&json::parse(x))),
        other => Val::S(other.to_string()),
    })
}

fn t(o: &Map<String, Value>, keys: &[&str]) -> Option<Val> {
    get(o, keys)
        .and_then(|v| v.as_str())
        .and_then(|x| Timestamp::parse(x).ok())
        .map(Val::T)
}

fn lit(x: &str) -> Option<Val> {
    Some(Val::S(x.to_string()))
}

/// An object nested under `keys`, accepting a JSON string.
fn nested(o: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    match get(o, keys) {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(x)) => obj(x),
        _ => Map::new(),
    }
}

/// `(subscription, resource group, resource name)` of an Azure resource id.
fn resource_parts(id: &str) -> (Option<String>, Option<String>, Option<String>) {
    let parts: Vec<&str> = id.split('/').filter(|p| !p.is_empty()).collect();
    let mut sub = None;
    let mut rg = None;
    let mut i = 0;
    while i + 1 < parts.len() {
        match parts[i].to_ascii_lowercase().as_str() {
            "subscriptions" => sub = Some(parts[i + 1].to_string()),
            "resourcegroups" => rg = Some(parts[i + 1].to_string()),
            _ => {}
        }
        i += 2;
    }
    let name = if parts.iter().any(|p| p.eq_ignore_ascii_case("providers")) {
        parts.last().map(|s| s.to_string())
    } else {
        None
    };
    (sub, rg, name)
}

// ---- Kubernetes audit (AzureDiagnostics, AKSAudit, AKSAuditAdmin) ---------------------------

/// Derived columns of Kubernetes audit records and other AKS records.
pub const K8S_FIELDS: &[(&str, Kind)] = &[
    ("log_s", Kind::Str),
    ("pod_s", Kind::Str),
    ("ResourceId", Kind::Str),
    ("SubscriptionId", Kind::Str),
    ("ResourceGroup", Kind::Str),
    ("Resource", Kind::Str),
    ("containerID_s", Kind::Str),
    ("stream_s", Kind::Str),
    ("AuditId", Kind::Str),
    ("User", Kind::Dyn),
    ("SourceIps", Kind::Dyn),
    ("ObjectRef", Kind::Dyn),
    ("ResponseStatus", Kind::Dyn),
    ("RequestObject", Kind::Dyn),
    ("ResponseObject", Kind::Dyn),
    ("Annotations", Kind::Dyn),
    ("RequestReceivedTime", Kind::Time),
    ("StageReceivedTime", Kind::Time),
];

/// The audit event JSON of a record: the record itself (`k8s-audit`), `properties.log` of an
/// AKS diagnostic record, `log_s` of an AzureDiagnostics row, or an AKSAudit row or a GKE entry
/// rebuilt in the audit.k8s.io shape.
fn k8s_row(raw: &str, format: Option<&str>) -> Vec<Option<Val>> {
    let mut out: Vec<Option<Val>> = (0..K8S_FIELDS.len()).map(|_| None).collect();
    let (event, envelope): (String, Map<String, Value>) = if format == Some("aks") {
        let env = obj(raw);
        let props = nested(&env, &["properties"]);
        let log = get(&props, &["log"])
            .map(|v| match v {
                Value::String(x) => x.trim_end_matches('\n').to_string(),
                other => other.to_string(),
            })
            .or_else(|| get(&env, &["log_s"]).and_then(text))
            .unwrap_or_else(|| {
                if get(&env, &["AuditId", "Verb"]).is_some() {
                    aks_row_as_event(&env)
                } else {
                    String::new()
                }
            });
        out[1] = get(&props, &["pod"])
            .or_else(|| get(&env, &["pod_s", "PodName"]))
            .and_then(text)
            .map(Val::S);
        out[6] = s(&props, &["containerID"]).or_else(|| s(&env, &["containerID_s"]));
        out[7] = s(&props, &["stream"]).or_else(|| s(&env, &["stream_s"]));
        (log, env)
    } else if format == Some("gke") {
        let entry = obj(raw);
        let event = trailwarden_parse::gke::to_audit_event(&entry)
            .map(|v| v.to_string())
            .unwrap_or_default();
        (event, Map::new())
    } else {
        (raw.trim_end().to_string(), Map::new())
    };
    if let Some(rid) = get(&envelope, &["resourceId", "ResourceId", "_ResourceId"]).and_then(text) {
        let (sub, rg, name) = resource_parts(&rid);
        out[3] = sub.map(Val::S);
        out[4] = rg.map(Val::S);
        out[5] = name.map(Val::S);
        out[2] = Some(Val::S(rid));
    }
    let e = event.as_str();
    let sub = |k: &str| json::get_key(e, k).filter(|v| json::kind(v) != json::Kind::Null);
    out[8] = sub("auditID").and_then(json::to_string).map(Val::S);
    for (i, k) in [
        (9, "user"),
        (10, "sourceIPs"),
        (11, "objectRef"),
        (12, "responseStatus"),
        (13, "requestObject"),
        (14, "responseObject"),
        (15, "annotations"),
    ] {
        out[i] = sub(k).map(|v| Val::S(json::compact(v)));
    }
    out[16] = sub("requestReceivedTimestamp")
        .and_then(json::to_string)
        .and_then(|x| Timestamp::parse(&x).ok())
        .map(Val::T);
    out[17] = sub("stageTimestamp")
        .and_then(json::to_string)
        .and_then(|x| Timestamp::parse(&x).ok())
        .map(Val::T);
    if !e.is_empty() {
        out[0] = Some(Val::S(event));
    }
    out
}

/// An AKSAudit row (PascalCase) back in the audit.k8s.io shape, for `log_s`.
fn aks_row_as_event(row: &Map<String, Value>) -> String {
    let mut m = Map::new();
    m.insert("kind".into(), "Event".into());
    m.insert("apiVersion".into(), "audit.k8s.io/v1".into());
    for (from, to) in [
        ("Level", "level"),
        ("AuditId", "auditID"),
        ("Stage", "stage"),
        ("RequestUri", "requestURI"),
        ("Verb", "verb"),
        ("User", "user"),
        ("SourceIps", "sourceIPs"),
        ("UserAgent", "userAgent"),
        ("ObjectRef", "objectRef"),
        ("ResponseStatus", "responseStatus"),
        ("RequestObject", "requestObject"),
        ("ResponseObject", "responseObject"),
        ("RequestReceivedTime", "requestReceivedTimestamp"),
        ("StageReceivedTime", "stageTimestamp"),
        ("Annotations", "annotations"),
    ] {
        if let Some(v) = get(row, &[from]) {
            let v = match v {
                Value::String(x)
                    if matches!(
                        to,
                        "user" | "sourceIPs" | "objectRef" | "responseStatus" | "annotations"
                    ) =>
                {
                    serde_json::from_str(x).unwrap_or_else(|_| v.clone())
                }
                other => other.clone(),
            };
            m.insert(to.into(), v);
        }
    }
    Value::Object(m).to_string()
}

// ---- AzureActivity -------------------------------------------------------------------------

/// Derived columns of Azure Activity records.
pub const ACTIVITY_FIELDS: &[(&str, Kind)] = &[
    ("OperationName", Kind::Str),
    ("OperationNameValue", Kind::Str),
    ("Level", Kind::Str),
    ("ActivityStatus", Kind::Str),
    ("ActivityStatusValue", Kind::Str),
    ("ActivitySubstatus", Kind::Str),
    ("ActivitySubstatusValue", Kind::Str),
    ("Caller", Kind::Str),
    ("CallerIpAddress", Kind::Str),
    ("Category", Kind::Str),
    ("CategoryValue", Kind::Str),
    ("CorrelationId", Kind::Str),
    ("ResourceGroup", Kind::Str),
    ("ResourceProvider", Kind::Str),
    ("ResourceProviderValue", Kind::Str),
    ("Resource", Kind::Str),
    ("ResourceId", Kind::Str),
    ("SubscriptionId", Kind::Str),
    ("TenantId", Kind::Str),
    ("Properties", Kind::Dyn),
    ("Authorization", Kind::Dyn),
    ("Claims", Kind::Dyn),
    ("HTTPRequest", Kind::Str),
    ("EventSubmissionTimestamp", Kind::Time),
    ("EventDataId", Kind::Str),
    ("Hierarchy", Kind::Str),
];

/// Resource provider namespaces as Log Analytics spells them (exports upper-case them).
const PROVIDERS: &[&str] = &[
    "Microsoft.ContainerService",
    "Microsoft.ContainerRegistry",
    "Microsoft.OperationalInsights",
    "Microsoft.Insights",
    "Microsoft.Authorization",
    "Microsoft.Resources",
    "Microsoft.Compute",
    "Microsoft.Network",
    "Microsoft.Storage",
    "Microsoft.KeyVault",
    "Microsoft.ManagedIdentity",
    "Microsoft.Security",
    "Microsoft.SecurityInsights",
    "Microsoft.Sql",
    "Microsoft.Web",
    "Microsoft.EventHub",
    "Microsoft.Monitor",
    "Microsoft.PolicyInsights",
];

fn canonical_provider(p: &str) -> String {
    PROVIDERS
        .iter()
        .find(|c| c.eq_ignore_ascii_case(p))
        .map_or_else(|| p.to_string(), |c| c.to_string())
}

fn status_display(v: &str) -> String {
    match v {
        "Success" => "Succeeded".into(),
        "Failure" => "Failed".into(),
        "Start" => "Started".into(),
        "Accept" => "Accepted".into(),
        other => other.to_string(),
    }
}

fn level_name(l: &str) -> String {
    match l {
        "Information" => "Informational".into(),
        other => other.to_string(),
    }
}

fn activity_row(raw: &str, _: Option<&str>) -> Vec<Option<Val>> {
    let o = obj(raw);
    let row = o.contains_key("OperationNameValue")
        || o.contains_key("CategoryValue")
        || o.contains_key("TimeGenerated");
    let props = nested(&o, &["properties", "Properties", "Properties_d"]);
    let identity = nested(&o, &["identity"]);
    let rid = get(&o, &["resourceId", "ResourceId", "_ResourceId"]).and_then(text);
    let (sub, rg, name) = rid.as_deref().map(resource_parts).unwrap_or_default();
    let op_value = get(&o, &["OperationNameValue", "operationName"]).and_then(text);
    // The provider as Log Analytics shows it comes from the operation (proper case), not from
    // the upper-cased resource id.
    let provider = get(&o, &["ResourceProvider"]).and_then(text).or_else(|| {
        op_value
            .as_deref()
            .and_then(|op| op.split('/').next())
            .filter(|p| p.contains('.'))
            .map(canonical_provider)
    });
    // exports carry the value form (Success, Failure, Start, Accept); Log Analytics shows the
    // display form (Succeeded, Failed, Started, Accepted) as ActivityStatus
    let status_value = get(&o, &["ActivityStatusValue", "resultType"]).and_then(text);
    let status = get(&o, &["ActivityStatus"])
        .and_then(text)
        .or_else(|| status_value.as_deref().map(status_display));
    let substatus = get(&o, &["ActivitySubstatus"])
        .and_then(text)
        .or_else(|| get(&props, &["statusCode"]).and_then(text));
    let category = get(&o, &["CategoryValue", "Category", "category"]).and_then(text);
    vec![
        if row {
            s(&o, &["OperationName"])
        } else {
            op_value.clone().map(Val::S)
        },
        op_value.map(Val::S),
        get(&o, &["Level", "level"])
            .and_then(text)
            .map(|l| Val::S(level_name(&l))),
        status.map(Val::S),
        status_value.map(Val::S),
        substatus.clone().map(Val::S),
        get(&o, &["ActivitySubstatusValue"])
            .and_then(text)
            .or(substatus)
            .map(Val::S),
        s(&o, &["Caller", "caller"]).or_else(|| {
            let claims = nested(&identity, &["claims"]);
            s(
                &claims,
                &[
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
                    "upn",
                    "name",
                    "appid",
                ],
            )
        }),
        s(&o, &["CallerIpAddress", "callerIpAddress"]),
        category.clone().map(Val::S),
        category.map(Val::S),
        s(&o, &["CorrelationId", "correlationId"]),
        s(&o, &["ResourceGroup"]).or(rg.map(Val::S)),
        provider.clone().map(Val::S),
        get(&o, &["ResourceProviderValue"])
            .and_then(text)
            .or_else(|| provider.map(|p| p.to_uppercase()))
            .map(Val::S),
        s(&o, &["Resource"]).or(name.map(Val::S)),
        rid.map(Val::S),
        s(&o, &["SubscriptionId"]).or(sub.map(Val::S)),
        s(&o, &["TenantId", "tenantId"]),
        d(&o, &["Properties", "Properties_d", "properties"]),
        d(&o, &["Authorization", "Authorization_d"]).or_else(|| d(&identity, &["authorization"])),
        d(&o, &["Claims", "Claims_d"]).or_else(|| d(&identity, &["claims"])),
        s(&o, &["HTTPRequest"]),
        t(&o, &["EventSubmissionTimestamp", "eventTimestamp", "time"]),
        s(&o, &["EventDataId", "eventDataId"]),
        s(&o, &["Hierarchy"]),
    ]
}

// ---- SigninLogs -----------------------------------------------------------------------------

/// Derived columns of Entra ID sign-in records.
pub const SIGNIN_FIELDS: &[(&str, Kind)] = &[
    ("UserPrincipalName", Kind::Str),
    ("UserDisplayName", Kind::Str),
    ("UserId", Kind::Str),
    ("AppDisplayName", Kind::Str),
    ("AppId", Kind::Str),
    ("IPAddress", Kind::Str),
    ("ResultType", Kind::Str),
    ("ResultDescription", Kind::Str),
    ("ResultSignature", Kind::Str),
    ("Status", Kind::Dyn),
    ("Location", Kind::Str),
    ("LocationDetails", Kind::Dyn),
    ("ClientAppUsed", Kind::Str),
    ("ConditionalAccessStatus", Kind::Str),
    ("DeviceDetail", Kind::Dyn),
    ("IsInteractive", Kind::Bool),
    ("RiskLevelDuringSignIn", Kind::Str),
    ("RiskState", Kind::Str),
    ("AuthenticationRequirement", Kind::Str),
    ("CorrelationId", Kind::Str),
    ("Identity", Kind::Str),
    ("Category", Kind::Str),
    ("OperationName", Kind::Str),
    ("ResourceDisplayName", Kind::Str),
    ("TenantId", Kind::Str),
    ("UserAgent", Kind::Str),
];

fn signin_row(raw: &str, _: Option<&str>) -> Vec<Option<Val>> {
    let o = obj(raw);
    let p = match get(&o, &["properties"]) {
        Some(Value::Object(m)) => m.clone(),
        _ => o.clone(),
    };
    let status = nested(&p, &["status", "Status"]);
    let location = nested(&p, &["location", "LocationDetails"]);
    let result = get(&o, &["ResultType", "resultType"])
        .or_else(|| get(&status, &["errorCode"]))
        .and_then(text);
    vec![
        s(&p, &["userPrincipalName", "UserPrincipalName"]),
        s(&p, &["userDisplayName", "UserDisplayName"]),
        s(&p, &["userId", "UserId"]),
        s(&p, &["appDisplayName", "AppDisplayName"]),
        s(&p, &["appId", "AppId"]),
        s(&p, &["ipAddress", "IPAddress"])
            .or_else(|| s(&o, &["callerIpAddress", "CallerIpAddress"])),
        result.map(Val::S),
        s(&o, &["ResultDescription", "resultDescription"])
            .or_else(|| s(&status, &["failureReason"])),
        s(&o, &["ResultSignature", "resultSignature"]),
        d(&p, &["status", "Status"]),
        s(&o, &["Location", "location"]).or_else(|| s(&location, &["countryOrRegion"])),
        d(&p, &["location", "LocationDetails"]),
        s(&p, &["clientAppUsed", "ClientAppUsed"]),
        s(&p, &["conditionalAccessStatus", "ConditionalAccessStatus"]),
        d(&p, &["deviceDetail", "DeviceDetail"]),
        get(&p, &["isInteractive", "IsInteractive"])
            .and_then(|v| {
                v.as_bool()
                    .or_else(|| v.as_str().map(|x| x.eq_ignore_ascii_case("true")))
            })
            .map(Val::B),
        s(&p, &["riskLevelDuringSignIn", "RiskLevelDuringSignIn"]),
        s(&p, &["riskState", "RiskState"]),
        s(
            &p,
            &["authenticationRequirement", "AuthenticationRequirement"],
        ),
        s(&p, &["correlationId", "CorrelationId"]).or_else(|| s(&o, &["correlationId"])),
        s(&o, &["identity", "Identity"]).or_else(|| s(&p, &["userDisplayName"])),
        s(&o, &["category", "Category"]).or_else(|| lit("SignInLogs")),
        s(&o, &["operationName", "OperationName"]).or_else(|| lit("Sign-in activity")),
        s(&p, &["resourceDisplayName", "ResourceDisplayName"]),
        s(&o, &["tenantId", "TenantId"]),
        s(&p, &["userAgent", "UserAgent"]),
    ]
}

// ---- trailwarden access records --------------------------------------------------------------

/// Columns of the access records (reads of audit data, PCI DSS 10.2.1.3).
pub const ACCESS_FIELDS: &[(&str, Kind)] = &[
    ("Subject", Kind::Str),
    ("Interface", Kind::Str),
    ("Action", Kind::Str),
    ("Target", Kind::Str),
    ("Records", Kind::Str),
    ("Outcome", Kind::Str),
    ("Origin", Kind::Str),
];

fn access_row(raw: &str, _: Option<&str>) -> Vec<Option<Val>> {
    let o = obj(raw);
    vec![
        s(&o, &["subject"]),
        s(&o, &["interface"]),
        s(&o, &["action"]),
        s(&o, &["target"]),
        s(&o, &["records"]),
        s(&o, &["outcome"]),
        s(&o, &["origin"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sv(v: &Option<Val>) -> Option<&str> {
        match v {
            Some(Val::S(s)) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn aks_record_and_plain_event_give_the_same_audit_columns() {
        let event = r#"{"kind":"Event","auditID":"a1","verb":"create","user":{"username":"u"},"sourceIPs":["1.2.3.4"],"requestReceivedTimestamp":"2024-01-01T00:00:00Z","stageTimestamp":"2024-01-01T00:00:01Z"}"#;
        let aks = serde_json::json!({"category":"kube-audit","properties":{"pod":"kube-apiserver-1","log": format!("{event}\n")},"resourceId":"/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/C1","time":"2024-01-01T00:00:02Z"}).to_string();
        let a = k8s_row(&aks, Some("aks"));
        let k = k8s_row(event, Some("k8s-audit"));
        assert_eq!(sv(&a[0]), Some(event));
        assert_eq!(sv(&k[0]), Some(event));
        assert_eq!(sv(&a[1]), Some("kube-apiserver-1"));
        assert_eq!(sv(&a[3]), Some("S1"));
        assert_eq!(sv(&a[5]), Some("C1"));
        assert_eq!(sv(&a[8]), Some("a1"));
        assert_eq!(sv(&a[9]), Some(r#"{"username":"u"}"#));
        assert!(matches!(a[16], Some(Val::T(_))));
        let row = serde_json::json!({"AuditId":"a2","Verb":"get","User":"{\"username\":\"v\"}","Level":"Metadata"}).to_string();
        let r = k8s_row(&row, Some("aks"));
        assert!(
            sv(&r[0]).unwrap().contains("\"verb\":\"get\""),
            "{:?}",
            sv(&r[0])
        );
        assert_eq!(sv(&r[9]), Some(r#"{"username":"v"}"#));
    }

    #[test]
    fn gke_entries_give_the_audit_columns() {
        let entry = serde_json::json!({"insertId":"i1","operation":{"id":"i1"},"labels":{"authorization.k8s.io/decision":"allow"},"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"k8s.io","methodName":"io.k8s.core.v1.secrets.get","resourceName":"core/v1/namespaces/cde/secrets/k","authenticationInfo":{"principalEmail":"a@b.example"},"requestMetadata":{"callerIp":"10.0.0.1"},"status":{}},"resource":{"type":"k8s_cluster","labels":{"cluster_name":"c"}},"timestamp":"2024-01-01T00:00:00Z"}).to_string();
        let r = k8s_row(&entry, Some("gke"));
        assert!(
            sv(&r[0]).unwrap().contains("\"verb\":\"get\""),
            "{:?}",
            sv(&r[0])
        );
        assert_eq!(sv(&r[8]), Some("i1"));
        assert_eq!(sv(&r[9]), Some(r#"{"username":"a@b.example"}"#));
        assert_eq!(sv(&r[10]), Some(r#"["10.0.0.1"]"#));
        assert!(sv(&r[11]).unwrap().contains("\"namespace\":\"cde\""));
        assert!(sv(&r[12]).unwrap().contains("\"code\":200"));
    }

    #[test]
    fn activity_export_maps_to_table_columns() {
        let rec = r#"{"time":"2024-01-01T00:00:00Z","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/C","operationName":"MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/WRITE","category":"Administrative","resultType":"Success","level":"Information","callerIpAddress":"1.1.1.1","identity":{"claims":{"upn":"a@b"}},"properties":{"statusCode":"Created"}}"#;
        let r = activity_row(rec, None);
        assert_eq!(sv(&r[2]), Some("Informational"));
        assert_eq!(sv(&r[7]), Some("a@b"));
        assert_eq!(sv(&r[10]), Some("Administrative"));
        assert_eq!(sv(&r[13]), Some("Microsoft.ContainerService"));
        assert_eq!(sv(&r[14]), Some("MICROSOFT.CONTAINERSERVICE"));
        assert_eq!(sv(&r[12]), Some("RG"));
        let rec = r#"{"time":"2024-01-01T00:00:00Z","operationName":"Microsoft.ContainerService/managedClusters/write","category":"Administrative"}"#;
        assert_eq!(
            sv(&activity_row(rec, None)[13]),
            Some("Microsoft.ContainerService")
        );
    }
}
