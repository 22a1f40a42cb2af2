//! Sign-in by OpenID Connect redirect: the authorization code flow with PKCE (RFC 7636) and a
//! nonce. `/ui/login/oidc` sends the browser to the provider with a fresh `state`, bound to the
//! browser by a short-lived cookie; the provider sends it back to `/ui/login/oidc/callback` with a
//! code, which the server exchanges at the token endpoint for an ID token. That token is checked
//! like any OIDC bearer token (signature from the configured JWKS, issuer, audience, expiry, groups
//! → role) and its nonce against the one sent; then the session starts as with a pasted token.

use crate::session::{random_token, same};
use crate::{html, respond, safe_next, Ui};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trailwarden_server::ConnInfo;

/// How long a sign-in may take at the provider.
const PENDING_FOR: Duration = Duration::from_secs(600);

/// One sign-in on its way through the provider.
struct Pending {
    verifier: String,
    nonce: String,
    next: String,
    redirect: String,
    started: Instant,
}

/// Sign-ins under way, by `state`.
#[derive(Default)]
pub struct Flows {
    map: Mutex<HashMap<String, Pending>>,
}

impl Flows {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn cookie_name(ui: &Ui) -> &'static str {
    if ui.secure {
        "__Host-tw_oidc"
    } else {
        "tw_oidc"
    }
}

fn redirect_url(ui: &Ui, headers: &HeaderMap, uri: &Uri) -> String {
    if let Some(u) = &ui.state.cfg.oidc.redirect_url {
        return u.clone();
    }
    // HTTP/1.1 says Host; HTTP/2 says :authority, which is the URI's
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "127.0.0.1".into());
    let scheme = if ui.secure { "https" } else { "http" };
    format!("{scheme}://{host}/ui/login/oidc/callback")
}

fn failed(status: StatusCode, why: &str) -> Response {
    let body = html! {
        (html::error_box(why))
        p { a href="/ui/login" { "Back to the sign-in" } }
    };
    respond(status, html::bare("Sign-in failed", body))
}

/// `GET /ui/login/oidc?next=…`: off to the provider.
pub async fn start(
    State(ui): State<Arc<Ui>>,
    h: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let o = &ui.state.cfg.oidc;
    let Some(auth) = o.authorization_endpoint.as_deref() else {
        return failed(
            StatusCode::NOT_FOUND,
            "Sign-in by OIDC redirect is not configured ([oidc] authorization_endpoint).",
        );
    };
    let (state, verifier, nonce) = match (random_token(32), random_token(32), random_token(24)) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => return failed(StatusCode::INTERNAL_SERVER_ERROR, "no randomness"),
    };
    let challenge = b64(&Sha256::digest(verifier.as_bytes()));
    let redirect = redirect_url(&ui, &h, &uri);
    let client_id = o
        .client_id
        .clone()
        .or(o.audience.clone())
        .unwrap_or_default();
    let mut scopes = vec!["openid".to_string()];
    scopes.extend(o.scopes.iter().filter(|s| *s != "openid").cloned());
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("scope", scopes.join(" ").as_str()),
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .unwrap_or_default();
    let next = safe_next(q.get("next").map(String::as_str).unwrap_or("/ui/")).to_string();
    {
        let mut m = ui.flows.lock();
        m.retain(|_, p| p.started.elapsed() < PENDING_FOR);
        m.insert(
            state.clone(),
            Pending {
                verifier,
                nonce,
                next,
                redirect,
                started: Instant::now(),
            },
        );
    }
    let sep = if auth.contains('?') { '&' } else { '?' };
    let mut r = Redirect::to(&format!("{auth}{sep}{query}")).into_response();
    // SameSite=Lax: the provider's redirect back is a cross-site navigation, which a Strict
    // cookie would not come back with
    let secure = if ui.secure { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}={state}; Path=/; HttpOnly{secure}; SameSite=Lax; Max-Age={}",
        cookie_name(&ui),
        PENDING_FOR.as_secs()
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn claim(jwt: &str, name: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get(name)?.as_str().map(str::to_string)
}

/// `GET /ui/login/oidc/callback?code=…&state=…`: back from the provider.
pub async fn callback(
    State(ui): State<Arc<Ui>>,
    Extension(conn): Extension<ConnInfo>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let refuse = |why: String| {
        ui.state.metrics.auth_failure("unauthenticated");
        ui.record(
            &conn,
            "anonymous",
            "ui-login",
            &format!("oidc: {why}"),
            "unauthenticated",
        );
        failed(
            StatusCode::UNAUTHORIZED,
            &format!("The OIDC sign-in failed: {why}."),
        )
    };
    if let Some(e) = q.get("error") {
        let d = q.get("error_description").map(String::as_str).unwrap_or("");
        return refuse(format!("the provider answered {e} {d}"));
    }
    let state = q.get("state").map(String::as_str).unwrap_or("");
    let cookies = crate::session::cookie_header(&h);
    let bound = crate::session::cookie(&cookies, cookie_name(&ui)).is_some_and(|c| same(c, state));
    let pending = ui.flows.lock().remove(state);
    let Some(p) = pending.filter(|p| p.started.elapsed() < PENDING_FOR) else {
        return refuse("unknown or expired state (start the sign-in again)".into());
    };
    if !bound {
        return refuse("the state does not belong to this browser".into());
    }
    let Some(code) = q.get("code") else {
        return refuse("no code".into());
    };
    let o = &ui.state.cfg.oidc;
    let client_id = o
        .client_id
        .clone()
        .or(o.audience.clone())
        .unwrap_or_default();
    let secret = match &o.client_secret_file {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) => return refuse(format!("client_secret_file {}: {e}", f.display())),
        },
        None => None,
    };
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", p.redirect.as_str()),
        ("client_id", client_id.as_str()),
        ("code_verifier", p.verifier.as_str()),
    ];
    if let Some(s) = &secret {
        form.push(("client_secret", s.as_str()));
    }
    let endpoint = o.token_endpoint.clone().unwrap_or_default();
    let answer = trailwarden_notify::post_form(
        &endpoint,
        &form,
        o.ca_file.as_deref(),
        Duration::from_secs(15),
    )
    .await;
    let body = match answer {
        Ok((200, b)) => b,
        Ok((code, b)) => return refuse(format!("the token endpoint answered {code}: {b}")),
        Err(e) => return refuse(format!("the token endpoint: {e}")),
    };
    let id_token = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id_token"].as_str().map(str::to_string));
    let Some(id_token) = id_token else {
        return refuse("the token endpoint's answer has no id_token".into());
    };
    let principal = match ui
        .state
        .auth
        .authenticate(Some(&format!("Bearer {id_token}")), None)
    {
        Ok(Some(pr)) => pr,
        Ok(None) => return refuse("no credentials".into()),
        Err(f) => return refuse(f.reason),
    };
    // the signature is checked: the payload can be read for the nonce
    if claim(&id_token, "nonce").is_none_or(|n| !same(&n, &p.nonce)) {
        return refuse("the ID token's nonce is not the one sent".into());
    }
    let (sid, _) = match ui.sessions.create(principal.clone()) {
        Ok(x) => x,
        Err(e) => return failed(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    ui.record(
        &conn,
        &principal.subject,
        "ui-login",
        "session (oidc)",
        "success",
    );
    // a page of our own that moves on: the session cookie is SameSite=Strict, and a navigation
    // that came from the provider's site would not carry it yet
    let next = p.next;
    let body = html! {
        meta http-equiv="refresh" content={"0;url=" (next)};
        p { "Signed in as " (principal.subject) ". " a href=(next) { "Continue" } }
    };
    let mut r = respond(StatusCode::OK, html::bare("Signed in", body));
    let hs = r.headers_mut();
    hs.append(
        header::SET_COOKIE,
        ui.set_cookie(ui.session_cookie(), &sid, ui.sessions.max_age.as_secs()),
    );
    hs.append(header::SET_COOKIE, ui.set_cookie(cookie_name(&ui), "", 0));
    r
}
