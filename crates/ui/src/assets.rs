//! The static files, compiled into the binary (no Node step, nothing fetched at run time): the
//! style sheet, two small scripts of our own and an icon. URLs carry a content hash, so they are
//! cached for good and a new build is never served stale.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// (name, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "theme.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/theme.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../assets/icon.svg"),
    ),
];

fn hashes() -> &'static Vec<String> {
    static H: OnceLock<Vec<String>> = OnceLock::new();
    H.get_or_init(|| {
        FILES
            .iter()
            .map(|(_, _, b)| hex::encode(&Sha256::digest(b)[..6]))
            .collect()
    })
}

/// The URL of an asset, with its content hash.
pub fn url(name: &str) -> String {
    match FILES.iter().position(|(n, _, _)| *n == name) {
        Some(i) => format!("/ui/assets/{name}?v={}", hashes()[i]),
        None => format!("/ui/assets/{name}"),
    }
}

/// Serve an asset (no login needed: nothing in them is secret).
pub fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = FILES.iter().position(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let (_, ctype, bytes) = FILES[i];
    let etag = format!("\"{}\"", hashes()[i]);
    let cache = HeaderValue::from_static("public, max-age=31536000, immutable");
    let tag = HeaderValue::from_str(&etag).ok();
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(header::CACHE_CONTROL, cache);
        return r;
    }
    let mut r = ([(header::CONTENT_TYPE, ctype)], bytes).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, cache);
    if let Some(t) = tag {
        r.headers_mut().insert(header::ETAG, t);
    }
    r
}
