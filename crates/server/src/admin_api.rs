//! The catalogue and administration endpoints: the query tables (`/v1/tables`), the rules detection
//! runs (`/v1/rules`), API tokens (`/v1/tokens`) and the configuration in force with its secrets
//! hidden (`/v1/config`). Every read is recorded like the others; every token change is an access
//! record with the token's id (10.2.1.5: changes to identification and authentication
//! credentials are logged).
// handlers answer early with a `Response` as their error, like the rest of the HTTP edge
#![allow(clippy::result_large_err)]

use crate::auth::{Permission, Role};
use crate::http::{audited, authorize, error, json_body, AppState, ConnInfo};
use crate::tokens::TokenStore;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use trailwarden_model::Timestamp;

type St = State<Arc<AppState>>;

/// `GET /v1/tables`: the query tables and their columns (what `query --tables` prints).
pub async fn tables(State(s): St, Extension(c): Extension<ConnInfo>, h: HeaderMap) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "tables",
        "/v1/tables"
    ));
    // the catalogue is fixed for the binary: built once (it needs an engine over the ledger),
    // not at every page view of the web UI's search
    static CATALOGUE: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    let dir = s.data_dir.clone();
    let list = match CATALOGUE.get() {
        Some(l) => Ok(Ok(l.clone())),
        None => {
            tokio::task::spawn_blocking(move || {
                let opts = trailwarden_query::QueryOptions::default();
                trailwarden_query::Engine::open(&dir, opts).map(|e| {
                    e.tables()
                        .iter()
                        .map(|t| {
                            json!({
                                "name": t.name,
                                "description": t.description,
                                "columns": t.columns.iter().map(|c| json!({
                                    "name": c.name, "type": c.ty.name(), "description": c.doc,
                                })).collect::<Vec<_>>(),
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .await
        }
    };
    let list = match list {
        Ok(Ok(l)) => CATALOGUE.get_or_init(|| l).clone(),
        Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    or_return!(audited(&s, &p, &c, "tables", "/v1/tables".into(), 0).await);
    axum::Json(Value::Array(list)).into_response()
}

/// `GET /v1/rules`: the rules `serve` loaded (Sigma and scheduled), their state, how many
/// alerts each raised and when it last matched.
pub async fn rules(State(s): St, Extension(c): Extension<ConnInfo>, h: HeaderMap) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Read,
        "rules-list",
        "/v1/rules"
    ));
    let activity = {
        let store = crate::lock(&s.alerts);
        store.rule_activity().unwrap_or_default()
    };
    let matches = s.metrics.rule_match_totals();
    let mut out = Vec::with_capacity(s.rules.len());
    for r in &s.rules {
        let mut r = r.clone();
        let id = r["id"].as_str().unwrap_or_default().to_string();
        let (alerts, last) = activity
            .iter()
            .find(|(rid, _, _)| *rid == id)
            .map(|(_, n, t)| (*n, Some(Timestamp(*t).to_rfc3339())))
            .unwrap_or((0, None));
        r["alerts"] = json!(alerts);
        r["last_alert"] = json!(last);
        r["matches_since_start"] = json!(matches.get(&id).copied().unwrap_or(0));
        out.push(r);
    }
    or_return!(audited(&s, &p, &c, "rules-list", "/v1/rules".into(), 0).await);
    axum::Json(Value::Array(out)).into_response()
}

/// `GET /v1/tokens`: every token's entry (never a token itself; the SHA-256 is left out too).
pub async fn tokens_list(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Administer,
        "tokens-list",
        "/v1/tokens",
    ));
    let store = match TokenStore::open(&s.data_dir) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let list: Vec<Value> = store.entries().iter().map(entry_json).collect();
    or_return!(audited(&s, &p, &c, "tokens-list", "/v1/tokens".into(), 0).await);
    axum::Json(Value::Array(list)).into_response()
}

fn entry_json(e: &crate::tokens::TokenEntry) -> Value {
    json!({
        "id": e.id, "name": e.name, "role": e.role,
        "created": e.created.to_rfc3339(),
        "expires": e.expires.map(|t| t.to_rfc3339()),
        "revoked": e.revoked.map(|t| t.to_rfc3339()),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    role: String,
    #[serde(default)]
    name: Option<String>,
    /// RFC 3339, or a duration from now (`90d`).
    #[serde(default)]
    expires: Option<String>,
}

/// `POST /v1/tokens`: create a token; the answer carries it, once.
pub async fn tokens_create(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Administer,
        "tokens-create",
        "/v1/tokens",
    ));
    let b: CreateBody = or_return!(json_body(
        &body,
        "{\"role\": \"viewer\", \"name\": \"alice\", \"expires\": \"90d\"}",
    ));
    let Some(role) = Role::parse(b.role.trim()) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "role {:?}: expected ingest, viewer, analyst, reviewer or admin",
                b.role
            ),
        );
    };
    let expires = match b
        .expires
        .as_deref()
        .map(str::trim)
        .filter(|x| !x.is_empty())
    {
        None => None,
        Some(x) => match expiry(x) {
            Ok(t) => Some(t),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("expires {x:?}: {e}")),
        },
    };
    let name = b
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{}-token", role.as_str()));
    let made = TokenStore::open(&s.data_dir).and_then(|mut t| t.create(&name, role, expires));
    let (token, entry) = match made {
        Ok(x) => x,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let target = format!("token {} ({name}, role {})", entry.id, role.as_str());
    // the change is in the ledger before the token is shown: a token nobody can account for
    // must not exist
    if let Err(r) = audited(&s, &p, &c, "tokens-create", target, 1).await {
        let _ = TokenStore::open(&s.data_dir).and_then(|mut t| t.revoke(&entry.id));
        return r;
    }
    let mut v = entry_json(&entry);
    v["token"] = Value::String(token);
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

fn expiry(x: &str) -> Result<Timestamp, String> {
    let now = Timestamp::now();
    // a bare duration means from now (`90d`), like `tokens create --expires`
    if let Ok(ns) = trailwarden_model::parse_duration(x) {
        return Ok(Timestamp(now.0.saturating_add(ns)));
    }
    Timestamp::parse(x).map_err(|e| e.to_string())
}

/// `DELETE /v1/tokens/{id}`: revoke a token (effective within a second).
pub async fn tokens_revoke(
    State(s): St,
    Extension(c): Extension<ConnInfo>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let route = format!("/v1/tokens/{id}");
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Administer,
        "tokens-revoke",
        &route
    ));
    let entry = match TokenStore::open(&s.data_dir).and_then(|mut t| t.revoke(&id)) {
        Ok(e) => e,
        Err(crate::ServerError::Tokens(m)) => return error(StatusCode::NOT_FOUND, m),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let target = format!("token {} ({})", entry.id, entry.name);
    or_return!(audited(&s, &p, &c, "tokens-revoke", target, 1).await);
    axum::Json(entry_json(&entry)).into_response()
}

/// `GET /v1/config`: the configuration in force, secrets hidden.
pub async fn config(State(s): St, Extension(c): Extension<ConnInfo>, h: HeaderMap) -> Response {
    let p = or_return!(authorize(
        &s,
        &c,
        &h,
        Permission::Administer,
        "config-show",
        "/v1/config",
    ));
    let mut v = match serde_json::to_value(&s.cfg) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    redact(&mut v, "");
    or_return!(audited(&s, &p, &c, "config-show", "/v1/config".into(), 0).await);
    axum::Json(v).into_response()
}

/// Hide what could be a secret: values of keys that name one (the `_file` / `_env` references
/// say where a secret is, not what it is, and stay), and the user-info and query of URLs (a
/// Slack or Teams webhook URL carries its key there).
pub fn redact(v: &mut Value, key: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                redact(x, k);
            }
        }
        Value::Array(a) => {
            for x in a {
                redact(x, key);
            }
        }
        Value::String(s) => {
            let k = key.to_ascii_lowercase();
            let reference = k.ends_with("_file") || k.ends_with("_env");
            let secretish = ["secret", "password", "token", "private", "credential"]
                .iter()
                .any(|w| k.contains(w));
            if secretish && !reference {
                *s = "(hidden)".into();
            } else if let Some(u) = hide_url_secrets(s) {
                *s = u;
            }
        }
        _ => {}
    }
}

fn hide_url_secrets(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let hidden_user = host.len() != authority.len();
    let (path, query) = match path.split_once('?') {
        Some((p, _)) => (p, true),
        None => (path, false),
    };
    // a long opaque path segment is a key too (hooks.slack.com/services/T…/B…/secret)
    let mut segs: Vec<String> = path.split('/').map(str::to_string).collect();
    let mut hidden_path = false;
    for seg in segs.iter_mut() {
        if seg.len() >= 20
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            *seg = "(hidden)".into();
            hidden_path = true;
        }
    }
    if !hidden_user && !query && !hidden_path {
        return None;
    }
    Some(format!(
        "{scheme}://{}{host}{}{}",
        if hidden_user { "(hidden)@" } else { "" },
        segs.join("/"),
        if query { "?(hidden)" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_secret_values_and_url_keys_but_keeps_references() {
        let mut v = json!({
            "oidc": {"issuer": "https://idp.example/realms/x"},
            "alerting": {"sinks": [{
                "url": "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
                "secret_file": "/run/secrets/wh",
                "password": "hunter2",
            }, {"url": "https://user:pw@siem.example:8443/in?key=abc"}]},
        });
        redact(&mut v, "");
        assert_eq!(v["oidc"]["issuer"], "https://idp.example/realms/x");
        let s0 = &v["alerting"]["sinks"][0];
        assert_eq!(
            s0["url"],
            "https://hooks.slack.com/services/T000/B000/(hidden)"
        );
        assert_eq!(s0["secret_file"], "/run/secrets/wh");
        assert_eq!(s0["password"], "(hidden)");
        assert_eq!(
            v["alerting"]["sinks"][1]["url"],
            "https://(hidden)@siem.example:8443/in?(hidden)"
        );
    }
}
