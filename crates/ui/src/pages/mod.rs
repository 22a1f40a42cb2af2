//! The pages. Each handler: the session (or a redirect to the login), the API calls as the
//! user, then the markup. Forms post back here, are checked for their CSRF token, call the API
//! and redirect to the page they came from with a one-line message.

pub mod admin;
pub mod alerts;
pub mod compliance;
pub mod integrity;
pub mod overview;
pub mod reviews;
pub mod search;
pub mod sources;

use crate::api::ApiError;
use crate::{html, respond, Ctx};
use axum::http::StatusCode;
use axum::response::Response;
use maud::Markup;

/// The query string of a page, as a map.
pub type Params = axum::extract::Query<std::collections::HashMap<String, String>>;

/// The value of a parameter (empty when absent).
pub fn param<'a>(q: &'a std::collections::HashMap<String, String>, k: &str) -> &'a str {
    q.get(k).map(|s| s.trim()).unwrap_or("")
}

/// The page for an API error (its status: a viewer sees 403 where an analyst sees data).
pub fn api_error(c: &Ctx, active: &str, title: &str, e: &ApiError) -> Response {
    let code = match e.status {
        StatusCode::FORBIDDEN => StatusCode::FORBIDDEN,
        StatusCode::NOT_FOUND => StatusCode::NOT_FOUND,
        s if s.is_client_error() => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    };
    let msg = match e.status {
        StatusCode::FORBIDDEN => format!(
            "Your role ({}) may not see this: {}",
            c.session.principal.role.as_str(),
            e.message
        ),
        _ => e.message.clone(),
    };
    respond(
        code,
        html::page(&c.viewer(), active, title, html::error_box(&msg)),
    )
}

/// A page answer (200).
pub fn ok(c: &Ctx, active: &str, title: &str, body: Markup) -> Response {
    respond(StatusCode::OK, html::page(&c.viewer(), active, title, body))
}
