//! Azure Activity Log records and Microsoft Entra ID sign-in records, in both shapes users have:
//! the diagnostic-setting export (storage / Event Hub, camelCase) and Log Analytics table rows
//! (`AzureActivity`, `SigninLogs`, PascalCase). Also Microsoft Graph `signIn` objects.

use crate::error::FormatError;
use serde_json::{Map, Value};
use trailwarden_model::{Event, Format, OutcomeResult, Timestamp};

/// Activity Log categories (diagnostic export `category`).
const ACTIVITY_CATEGORIES: &[&str] = &[
    "administrative",
    "security",
    "servicehealth",
    "alert",
    "recommendation",
    "policy",
    "autoscale",
    "resourcehealth",
];

/// Sign-in log categories and table names.
const SIGNIN_CATEGORIES: &[&str] = &[
    "signinlogs",
    "noninteractiveusersigninlogs",
    "serviceprincipalsigninlogs",
    "managedidentitysigninlogs",
    "adfssigninlogs",
    "aadnoninteractiveusersigninlogs",
    "aadserviceprincipalsigninlogs",
    "aadmanagedidentitysigninlogs",
];

/// The first of `keys` present in `obj` (exact names).
pub(crate) fn get<'v>(obj: &'v Map<String, Value>, keys: &[&str]) -> Option<&'v Value> {
    keys.iter()
        .find_map(|k| obj.get(*k))
        .filter(|v| !v.is_null())
}

/// A scalar as text (strings as-is, numbers and booleans printed).
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn get_text(obj: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    get(obj, keys).and_then(text)
}

/// A nested object, accepting a JSON-encoded string too (Log Analytics exports dynamic columns
/// either way).
pub(crate) fn get_obj(obj: &Map<String, Value>, keys: &[&str]) -> Option<Map<String, Value>> {
    match get(obj, keys)? {
        Value::Object(m) => Some(m.clone()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

fn parse_time_field(
    obj: &Map<String, Value>,
    keys: &[&str],
    what: &str,
) -> Result<Option<Timestamp>, FormatError> {
    match get_text(obj, keys) {
        Some(t) => Timestamp::parse(&t)
            .map(Some)
            .map_err(|e| FormatError::invalid(format!("{what}: {e}"))),
        None => Ok(None),
    }
}

/// Parts of an Azure resource id.
#[derive(Default, Debug, PartialEq, Eq)]
pub(crate) struct ResourceId {
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    pub provider: Option<String>,
    pub resource_type: Option<String>,
    pub name: Option<String>,
}

/// Split `/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{sub}/{n}]…`.
pub(crate) fn split_resource_id(id: &str) -> ResourceId {
    let parts: Vec<&str> = id.split('/').filter(|p| !p.is_empty()).collect();
    let mut out = ResourceId::default();
    let mut i = 0;
    while i + 1 < parts.len() {
        match parts[i].to_ascii_lowercase().as_str() {
            "subscriptions" => out.subscription = Some(parts[i + 1].to_string()),
            "resourcegroups" => out.resource_group = Some(parts[i + 1].to_string()),
            _ => {}
        }
        i += 2;
    }
    // The resource is what follows the *last* `providers` segment: an extension resource such as
    // a diagnostic setting sits under the resource it extends.
    if let Some(p) = parts
        .iter()
        .rposition(|p| p.eq_ignore_ascii_case("providers"))
    {
        if let Some(ns) = parts.get(p + 1) {
            out.provider = Some((*ns).to_string());
            let rest = &parts[p + 2..];
            let types: Vec<&str> = rest.iter().step_by(2).copied().collect();
            let names: Vec<&str> = rest.iter().skip(1).step_by(2).copied().collect();
            if !types.is_empty() {
                out.resource_type = Some(types.join("/"));
            }
            if let Some(n) = names.last() {
                out.name = Some((*n).to_string());
            }
        }
    }
    out
}

fn status_code_number(s: &str) -> Option<i64> {
    if let Ok(n) = s.trim().parse::<i64>() {
        return Some(n);
    }
    Some(match s.to_ascii_lowercase().as_str() {
        "ok" => 200,
        "created" => 201,
        "accepted" => 202,
        "nocontent" => 204,
        "badrequest" => 400,
        "unauthorized" => 401,
        "forbidden" => 403,
        "notfound" => 404,
        "conflict" => 409,
        "preconditionfailed" => 412,
        "toomanyrequests" => 429,
        "internalservererror" => 500,
        "serviceunavailable" => 503,
        _ => return None,
    })
}

fn activity_result(s: &str) -> OutcomeResult {
    match s.to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "succeed" | "resolved" => OutcomeResult::Success,
        "failure" | "failed" | "fail" => OutcomeResult::Failure,
        _ => OutcomeResult::Unknown,
    }
}

/// Whether an object is an Activity Log record or AzureActivity row.
pub fn is_activity(obj: &Map<String, Value>) -> bool {
    if get_text(obj, &["Type"]).is_some_and(|t| t == "AzureActivity") {
        return true;
    }
    if obj.contains_key("OperationNameValue") || obj.contains_key("CategoryValue") {
        return true;
    }
    let cat = get_text(obj, &["category"]).map(|c| c.to_ascii_lowercase());
    cat.is_some_and(|c| ACTIVITY_CATEGORIES.contains(&c.as_str()))
        && obj.contains_key("operationName")
}

/// Whether an object is a sign-in record, SigninLogs row or Graph signIn.
pub fn is_signin(obj: &Map<String, Value>) -> bool {
    let cat = get_text(obj, &["category", "Category", "Type"]).map(|c| c.to_ascii_lowercase());
    if cat.is_some_and(|c| SIGNIN_CATEGORIES.contains(&c.as_str())) {
        return true;
    }
    if get_text(obj, &["operationName", "OperationName"]).is_some_and(|o| o == "Sign-in activity") {
        return true;
    }
    (obj.contains_key("UserPrincipalName") && obj.contains_key("ResultType"))
        || (obj.contains_key("userPrincipalName")
            && obj.contains_key("createdDateTime")
            && obj.contains_key("status"))
}

fn object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, FormatError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(FormatError::NotThisFormat("a JSON object")),
        Err(e) => Err(FormatError::invalid(format!("{what}: {e}"))),
    }
}

/// Parse an Azure Activity Log record / AzureActivity row.
pub fn parse_activity(bytes: &[u8]) -> Result<Event, FormatError> {
    let obj = object(bytes, "Azure activity record")?;
    if !is_activity(&obj) {
        return Err(FormatError::NotThisFormat("an Azure Activity Log record"));
    }
    activity_from(&obj)
}

pub(crate) fn activity_from(obj: &Map<String, Value>) -> Result<Event, FormatError> {
    let mut ev = Event::new(Format::AzureActivity);
    ev.time = parse_time_field(
        obj,
        &[
            "time",
            "TimeGenerated",
            "eventTimestamp",
            "EventSubmissionTimestamp",
        ],
        "Azure activity time",
    )?;
    let props = get_obj(obj, &["properties", "Properties", "Properties_d"]).unwrap_or_default();
    let identity = get_obj(obj, &["identity"]).unwrap_or_default();
    let claims = get_obj(&identity, &["claims"])
        .or_else(|| get_obj(obj, &["Claims", "claims", "Claims_d"]))
        .unwrap_or_default();
    let auth = get_obj(&identity, &["authorization"])
        .or_else(|| get_obj(obj, &["Authorization", "Authorization_d"]))
        .unwrap_or_default();

    ev.user.identity.name = get_text(obj, &["caller", "Caller"]).or_else(|| {
        get_text(
            &claims,
            &[
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
                "upn",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
                "name",
                "unique_name",
                "appid",
            ],
        )
    });
    ev.user.identity.uid = get_text(
        &claims,
        &[
            "http://schemas.microsoft.com/identity/claims/objectidentifier",
            "oid",
        ],
    );
    ev.action = get_text(
        obj,
        &["OperationNameValue", "operationName", "OperationName"],
    );
    if let Some(display) = get_text(obj, &["OperationName"]) {
        if ev.action.as_deref() != Some(display.as_str()) {
            ev.attrs.insert("operation_display".into(), display);
        }
    }
    ev.category = get_text(obj, &["category", "CategoryValue", "Category"]);
    let status = get_text(
        obj,
        &["resultType", "ActivityStatusValue", "ActivityStatus"],
    );
    ev.outcome.result = status.as_deref().map(activity_result).unwrap_or_default();
    let code_text = get_text(&props, &["statusCode"])
        .or_else(|| get_text(obj, &["ActivitySubstatusValue", "ActivitySubstatus"]));
    ev.outcome.code = code_text.as_deref().and_then(status_code_number);
    ev.outcome.reason = get_text(obj, &["resultSignature"]).or(code_text);
    ev.outcome.message = get_text(&props, &["statusMessage", "message"]);
    if let Some(ip) = get_text(obj, &["callerIpAddress", "CallerIpAddress"]) {
        ev.origin.ips = Some(vec![ip.clone()]);
        ev.origin.trusted_ip = Some(ip);
    }
    ev.level = get_text(obj, &["level", "Level", "ActivityLevel"]);
    ev.audit_id = get_text(obj, &["correlationId", "CorrelationId"]);
    ev.request_uri = get_text(obj, &["HTTPRequest"]).filter(|s| !s.is_empty() && s != "{}");
    if let Some(rid) = get_text(obj, &["resourceId", "ResourceId", "_ResourceId"]) {
        let parts = split_resource_id(&rid);
        ev.resource.resource = match (&parts.provider, &parts.resource_type) {
            (Some(p), Some(t)) => Some(format!("{p}/{t}")),
            (Some(p), None) => Some(p.clone()),
            _ => None,
        };
        ev.resource.namespace = parts
            .resource_group
            .clone()
            .or_else(|| get_text(obj, &["ResourceGroup"]));
        ev.resource.name = parts.name.clone();
        ev.attr(
            "subscription_id",
            parts
                .subscription
                .or_else(|| get_text(obj, &["SubscriptionId"])),
        );
        ev.attr("resource_group", parts.resource_group);
        ev.attrs.insert("resource_id".into(), rid);
    }
    ev.attr(
        "resource_provider",
        get_text(obj, &["ResourceProviderValue", "ResourceProvider"]),
    );
    ev.attr("authorization_action", get_text(&auth, &["action"]));
    ev.attr("authorization_scope", get_text(&auth, &["scope"]));
    ev.attr("event_category", get_text(&props, &["eventCategory"]));
    Ok(ev)
}

/// Parse a sign-in record / SigninLogs row / Graph signIn.
pub fn parse_signin(bytes: &[u8]) -> Result<Event, FormatError> {
    let obj = object(bytes, "Entra ID sign-in record")?;
    if !is_signin(&obj) {
        return Err(FormatError::NotThisFormat("an Entra ID sign-in record"));
    }
    signin_from(&obj)
}

pub(crate) fn signin_from(obj: &Map<String, Value>) -> Result<Event, FormatError> {
    let mut ev = Event::new(Format::Signin);
    // Export records nest the sign-in under `properties`; table rows and Graph objects are flat.
    let props = get_obj(obj, &["properties"]).unwrap_or_else(|| obj.clone());
    ev.time = parse_time_field(obj, &["time", "TimeGenerated"], "sign-in time")?;
    if ev.time.is_none() {
        ev.time = parse_time_field(
            &props,
            &["createdDateTime", "CreatedDateTime"],
            "sign-in createdDateTime",
        )?;
    }
    ev.user.identity.name = get_text(&props, &["userPrincipalName", "UserPrincipalName"])
        .or_else(|| get_text(obj, &["identity", "Identity"]));
    ev.user.identity.uid = get_text(&props, &["userId", "UserId"]);
    ev.action = Some(
        get_text(obj, &["operationName", "OperationName"])
            .unwrap_or_else(|| "Sign-in activity".to_string()),
    );
    ev.category =
        get_text(obj, &["category", "Category", "Type"]).or_else(|| Some("SignInLogs".into()));
    let status = get_obj(&props, &["status", "Status"]).unwrap_or_default();
    let code =
        get_text(obj, &["resultType", "ResultType"]).or_else(|| get_text(&status, &["errorCode"]));
    if let Some(c) = code.as_deref().and_then(|c| c.trim().parse::<i64>().ok()) {
        ev.outcome.code = Some(c);
        ev.outcome.result = if c == 0 {
            OutcomeResult::Success
        } else {
            OutcomeResult::Failure
        };
    }
    ev.outcome.reason = get_text(&status, &["failureReason"])
        .or_else(|| get_text(obj, &["resultDescription", "ResultDescription"]))
        .filter(|r| !r.is_empty() || ev.outcome.result == OutcomeResult::Failure);
    ev.outcome.message = get_text(&status, &["additionalDetails"]);
    if let Some(ip) = get_text(&props, &["ipAddress", "IPAddress"])
        .or_else(|| get_text(obj, &["callerIpAddress"]))
    {
        ev.origin.ips = Some(vec![ip.clone()]);
        ev.origin.trusted_ip = Some(ip);
    }
    ev.origin.user_agent = get_text(&props, &["userAgent", "UserAgent"]);
    ev.resource.resource = Some("application".into());
    ev.resource.name = get_text(&props, &["appDisplayName", "AppDisplayName"]);
    ev.audit_id = get_text(obj, &["correlationId", "CorrelationId"])
        .or_else(|| get_text(&props, &["correlationId", "id"]));
    ev.level = get_text(obj, &["Level", "level"]);
    ev.attr("app_id", get_text(&props, &["appId", "AppId"]));
    ev.attr(
        "client_app",
        get_text(&props, &["clientAppUsed", "ClientAppUsed"]),
    );
    ev.attr(
        "conditional_access_status",
        get_text(
            &props,
            &["conditionalAccessStatus", "ConditionalAccessStatus"],
        ),
    );
    ev.attr(
        "user_display_name",
        get_text(&props, &["userDisplayName", "UserDisplayName"]),
    );
    ev.attr(
        "resource_display_name",
        get_text(&props, &["resourceDisplayName", "ResourceDisplayName"]),
    );
    ev.attr("tenant_id", get_text(obj, &["tenantId", "TenantId"]));
    ev.attr(
        "location",
        get_text(&props, &["location", "Location"])
            .or_else(|| get_text(obj, &["location", "Location"])),
    );
    Ok(ev)
}

/// Whether an object is an Entra ID directory audit record (diagnostic export with category
/// AuditLogs), an AuditLogs row, or a Graph directoryAudit object.
pub fn is_entra_audit(obj: &Map<String, Value>) -> bool {
    let cat = get_text(obj, &["category", "Type"]).map(|c| c.to_ascii_lowercase());
    if cat.as_deref() == Some("auditlogs") {
        return true;
    }
    (obj.contains_key("activityDisplayName") && obj.contains_key("initiatedBy"))
        || (obj.contains_key("ActivityDisplayName") && obj.contains_key("InitiatedBy"))
}

/// Parse an Entra ID directory audit record / AuditLogs row / Graph directoryAudit.
pub fn parse_entra_audit(bytes: &[u8]) -> Result<Event, FormatError> {
    let obj = object(bytes, "Entra ID directory audit record")?;
    if !is_entra_audit(&obj) {
        return Err(FormatError::NotThisFormat(
            "an Entra ID directory audit record",
        ));
    }
    entra_audit_from(&obj)
}

pub(crate) fn entra_audit_from(obj: &Map<String, Value>) -> Result<Event, FormatError> {
    let mut ev = Event::new(Format::EntraAudit);
    // export records nest the audit under `properties`; rows (PascalCase) and Graph objects are flat
    let props = get_obj(obj, &["properties"]).unwrap_or_else(|| obj.clone());
    ev.time = parse_time_field(
        &props,
        &["activityDateTime", "ActivityDateTime"],
        "audit activityDateTime",
    )?;
    if ev.time.is_none() {
        ev.time = parse_time_field(obj, &["time", "TimeGenerated"], "audit time")?;
    }
    let initiated = get_obj(&props, &["initiatedBy", "InitiatedBy"]).unwrap_or_default();
    let user = get_obj(&initiated, &["user"]).unwrap_or_default();
    let app = get_obj(&initiated, &["app"]).unwrap_or_default();
    ev.user.identity.name = get_text(&user, &["userPrincipalName"])
        .or_else(|| get_text(&app, &["displayName", "servicePrincipalName"]))
        .or_else(|| get_text(obj, &["identity", "Identity"]));
    ev.user.identity.uid =
        get_text(&user, &["id"]).or_else(|| get_text(&app, &["servicePrincipalId", "appId"]));
    ev.action = get_text(&props, &["activityDisplayName", "ActivityDisplayName"])
        .or_else(|| get_text(obj, &["operationName", "OperationName"]));
    ev.category = get_text(&props, &["category", "Category"]).filter(|c| c != "AuditLogs");
    let result = get_text(&props, &["result", "Result"]).unwrap_or_default();
    ev.outcome.result = match result.to_ascii_lowercase().as_str() {
        "success" => OutcomeResult::Success,
        "failure" | "timeout" => OutcomeResult::Failure,
        _ => OutcomeResult::Unknown,
    };
    ev.outcome.reason =
        get_text(&props, &["resultReason", "ResultReason"]).filter(|r| !r.is_empty());
    if let Some(ip) = get_text(&user, &["ipAddress"])
        .filter(|i| !i.is_empty())
        .or_else(|| get_text(obj, &["callerIpAddress"]))
    {
        ev.origin.ips = Some(vec![ip.clone()]);
        ev.origin.trusted_ip = Some(ip);
    }
    let targets = get(&props, &["targetResources", "TargetResources"])
        .and_then(Value::as_array)
        .and_then(|t| t.first())
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    ev.resource.resource = get_text(&targets, &["type"]);
    ev.resource.name =
        get_text(&targets, &["userPrincipalName"]).or_else(|| get_text(&targets, &["displayName"]));
    ev.audit_id = get_text(&props, &["id", "Id"]);
    ev.level = get_text(obj, &["Level", "level"]);
    ev.attr(
        "logged_by_service",
        get_text(&props, &["loggedByService", "LoggedByService"]),
    );
    ev.attr(
        "operation_type",
        get_text(&props, &["operationType", "OperationType"]),
    );
    ev.attr(
        "correlation_id",
        get_text(&props, &["correlationId", "CorrelationId"])
            .or_else(|| get_text(obj, &["correlationId"])),
    );
    ev.attr("tenant_id", get_text(obj, &["tenantId", "TenantId"]));
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_directory_audit() {
        let rec = br#"{"time":"2026-01-06T10:20:00Z","resourceId":"/tenants/t-1/providers/Microsoft.aadiam","operationName":"Add member to role","category":"AuditLogs","tenantId":"t-1","properties":{"id":"Directory_1","category":"RoleManagement","correlationId":"c-1","result":"success","activityDisplayName":"Add member to role","activityDateTime":"2026-01-06T10:19:58Z","loggedByService":"Core Directory","operationType":"Assign","initiatedBy":{"user":{"id":"u-1","userPrincipalName":"eve@contoso.com","ipAddress":"203.0.113.20"}},"targetResources":[{"id":"u-2","type":"User","userPrincipalName":"mallory@contoso.com"}]}}"#;
        let ev = parse_entra_audit(rec).unwrap();
        assert_eq!(ev.user.identity.name.as_deref(), Some("eve@contoso.com"));
        assert_eq!(ev.action.as_deref(), Some("Add member to role"));
        assert_eq!(ev.category.as_deref(), Some("RoleManagement"));
        assert_eq!(ev.outcome.result, OutcomeResult::Success);
        assert_eq!(ev.resource.name.as_deref(), Some("mallory@contoso.com"));
        assert_eq!(ev.origin.trusted_ip.as_deref(), Some("203.0.113.20"));
        assert!(ev.time.is_some());
        // a sign-in is not a directory audit, and the reverse
        assert!(!is_entra_audit(
            &object(br#"{"category":"SignInLogs","properties":{}}"#, "x").unwrap()
        ));
        assert!(!is_signin(&object(rec, "x").unwrap()));
    }

    #[test]
    fn resource_ids() {
        let r = split_resource_id("/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1");
        assert_eq!(r.subscription.as_deref(), Some("S1"));
        assert_eq!(r.resource_group.as_deref(), Some("RG"));
        assert_eq!(r.provider.as_deref(), Some("MICROSOFT.CONTAINERSERVICE"));
        assert_eq!(r.resource_type.as_deref(), Some("MANAGEDCLUSTERS"));
        assert_eq!(r.name.as_deref(), Some("AKS1"));
        let r = split_resource_id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/ra1");
        assert_eq!(r.resource_type.as_deref(), Some("roleAssignments"));
        let r = split_resource_id("/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/C/PROVIDERS/MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/D");
        assert_eq!(r.provider.as_deref(), Some("MICROSOFT.INSIGHTS"));
        assert_eq!(r.resource_type.as_deref(), Some("DIAGNOSTICSETTINGS"));
        assert_eq!(r.name.as_deref(), Some("D"));
        assert_eq!(r.resource_group.as_deref(), Some("RG"));
    }

    #[test]
    fn signin_failure() {
        let ev = parse_signin(
            br#"{"TimeGenerated":"2024-01-01T00:00:00Z","UserPrincipalName":"a@b.c","ResultType":"50126","ResultDescription":"Invalid username or password","IPAddress":"198.51.100.4","AppDisplayName":"Azure Kubernetes Service AAD Client"}"#,
        )
        .unwrap();
        assert_eq!(ev.outcome.result, OutcomeResult::Failure);
        assert_eq!(ev.outcome.code, Some(50126));
        assert_eq!(
            ev.resource.name.as_deref(),
            Some("Azure Kubernetes Service AAD Client")
        );
    }
}
