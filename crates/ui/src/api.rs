//! The UI's client of the API: every page asks the same endpoints a script would, in process, on
//! the signed-in user's behalf (the request carries the session's principal in its connection
//! info, which only the server sets). So a page and the API apply the same roles, and every
//! read a page makes is recorded with interface `ui`.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use trailwarden_server::auth::Principal;
use trailwarden_server::ConnInfo;

/// An answer of the API that was not a success: its status and its `error` text.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What the API said.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status.as_u16())
    }
}

/// The API, called as one user.
#[derive(Clone)]
pub struct Client {
    api: Router,
    conn: ConnInfo,
}

impl Client {
    /// A client for `who`, on the connection `conn` came in on.
    pub fn new(api: Router, conn: &ConnInfo, who: Principal) -> Client {
        let mut conn = conn.clone();
        conn.session = Some(who);
        Client { api, conn }
    }

    /// Send a request; the raw response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<axum::response::Response, ApiError> {
        let mut b = Request::builder().method(method).uri(path);
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let mut req = b.body(body).map_err(|e| ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("{path}: {e}"),
        })?;
        req.extensions_mut().insert(self.conn.clone());
        // the router's error type is Infallible
        let Ok(resp) = self.api.clone().oneshot(req).await;
        Ok(resp)
    }

    /// Send a request and read the whole answer: the bytes of a success, or the API's error.
    pub async fn bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(Vec<u8>, axum::http::HeaderMap), ApiError> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .map_err(|e| ApiError {
                status: StatusCode::BAD_GATEWAY,
                message: format!("{path}: reading the answer: {e}"),
            })?;
        if status.is_success() {
            return Ok((bytes, headers));
        }
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(ApiError { status, message })
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.json(Method::GET, path, None).await
    }

    /// A request answered with JSON.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        let (bytes, _) = self.bytes(method, path, body).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ApiError {
            status: StatusCode::BAD_GATEWAY,
            message: format!("{path}: the answer is not JSON: {e}"),
        })
    }
}

/// Percent-encode a query-string value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A query string from pairs, leaving out empty values.
pub fn qs(pairs: &[(&str, &str)]) -> String {
    let v: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    if v.is_empty() {
        String::new()
    } else {
        format!("?{}", v.join("&"))
    }
}
