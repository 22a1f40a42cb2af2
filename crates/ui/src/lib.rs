//! trailwarden's web UI, served by `serve` under `/ui/`.
//!
//! Every page is rendered on the server from the same API a script would call (in process, as
//! the signed-in user: see [`api`]), so roles, audit records and errors are the API's own. A
//! login turns a token into a session cookie ([`session`]); every form carries the session's
//! CSRF token and is refused when it comes from another site; every answer carries a strict
//! Content-Security-Policy (no inline script or style anywhere). JavaScript only adds comfort
//! (local times on hover, the theme switch, sortable tables): each page works without it.
#![warn(missing_docs)]
// handlers answer early with a `Response` as their error, like the API's
#![allow(clippy::result_large_err)]

pub mod api;
pub mod assets;
pub mod chart;
pub mod html;
pub mod oidc;
mod pages;
pub mod session;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::{html, Markup};
use session::{Missing, Session, Sessions};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use trailwarden_server::auth::{Permission, Principal};
use trailwarden_server::{AppState, ConnInfo};

/// The UI's shared state.
pub struct Ui {
    /// The server's state (configuration, authenticator, writer).
    pub state: Arc<AppState>,
    api: Router,
    /// Signed-in users.
    pub sessions: Sessions,
    /// OIDC sign-ins under way.
    pub flows: oidc::Flows,
    secure: bool,
}

/// The Content-Security-Policy of every UI answer: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

impl Ui {
    fn session_cookie(&self) -> &'static str {
        if self.secure {
            "__Host-tw_session"
        } else {
            "tw_session"
        }
    }

    fn login_cookie(&self) -> &'static str {
        if self.secure {
            "__Host-tw_login"
        } else {
            "tw_login"
        }
    }

    fn set_cookie(&self, name: &str, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let v =
            format!("{name}={value}; Path=/; HttpOnly{secure}; SameSite=Strict; Max-Age={max_age}");
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Record a refusal or a sign-in in the ledger, without waiting.
    fn record(&self, conn: &ConnInfo, subject: &str, action: &str, target: &str, outcome: &str) {
        self.state.pipeline.access_nowait(trailwarden_ledger_access(
            conn, subject, action, target, outcome,
        ));
    }
}

fn trailwarden_ledger_access(
    conn: &ConnInfo,
    subject: &str,
    action: &str,
    target: &str,
    outcome: &str,
) -> trailwarden_ledger::record::Access {
    trailwarden_ledger::record::Access {
        subject: subject.into(),
        interface: "ui".into(),
        action: action.into(),
        target: target.into(),
        records: 0,
        outcome: outcome.into(),
        origin: conn.peer.ip().to_string(),
    }
}

/// What `serve_with` mounts: the UI next to the API (unless `[ui] enabled = false`).
pub fn mount() -> trailwarden_server::Mount {
    Box::new(|state: Arc<AppState>, api: Router| {
        if state.cfg.ui.enabled {
            router(state, api)
        } else {
            Router::new()
        }
    })
}

/// The UI's routes.
pub fn router(state: Arc<AppState>, api: Router) -> Router {
    let ui = Arc::new(Ui {
        secure: state.cfg.http.tls,
        sessions: Sessions::new(
            Duration::from_secs(state.cfg.ui.idle_timeout_seconds.max(1)),
            Duration::from_secs(state.cfg.ui.session_max_hours.max(1) * 3600),
        ),
        flows: oidc::Flows::default(),
        state,
        api,
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::overview::page))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/login/oidc", get(oidc::start))
        .route("/ui/login/oidc/callback", get(oidc::callback))
        .route("/ui/logout", post(logout))
        .route("/ui/assets/{name}", get(asset))
        .route("/ui/search", get(pages::search::page))
        .route("/ui/search/export", get(pages::search::export))
        .route("/ui/alerts", get(pages::alerts::list))
        .route("/ui/alerts/{id}", get(pages::alerts::show))
        .route("/ui/alerts/{id}/{action}", post(pages::alerts::change))
        .route("/ui/deliveries/{id}/retry", post(pages::alerts::retry))
        .route(
            "/ui/reviews",
            get(pages::reviews::list).post(pages::reviews::generate),
        )
        .route("/ui/reviews/{id}", get(pages::reviews::show))
        .route("/ui/reviews/{id}/sign-off", post(pages::reviews::sign_off))
        .route("/ui/compliance", get(pages::compliance::page))
        .route("/ui/compliance/check", post(pages::compliance::check))
        .route("/ui/integrity", get(pages::integrity::page))
        .route("/ui/integrity/verify", post(pages::integrity::verify))
        .route(
            "/ui/proofs/inclusion/{index}",
            get(pages::integrity::inclusion),
        )
        .route("/ui/proofs/consistency", get(pages::integrity::consistency))
        .route("/ui/sources", get(pages::sources::page))
        .route("/ui/controls/{id}/note", post(pages::sources::note))
        .route("/ui/admin", get(pages::admin::page))
        .route("/ui/admin/tokens", post(pages::admin::create_token))
        .route(
            "/ui/admin/tokens/{id}/revoke",
            post(pages::admin::revoke_token),
        )
        .route("/ui/{*rest}", get(not_found).post(not_found))
        .layer(axum::middleware::from_fn_with_state(
            ui.secure,
            security_headers,
        ))
        .with_state(ui)
}

type St = State<Arc<Ui>>;

/// Security headers on every UI answer.
async fn security_headers(
    State(secure): State<bool>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    );
    if secure {
        set(h, "strict-transport-security", "max-age=31536000");
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        // pages carry audit data: never kept by the browser or a proxy
        set(h, "cache-control", "no-store");
    }
    r
}

async fn asset(Path(name): Path<String>, h: HeaderMap) -> Response {
    assets::serve(&name, &h)
}

/// A signed-in request: the session, and the API as its user.
pub struct Ctx {
    /// The session's id (the cookie's value).
    pub sid: String,
    /// The session.
    pub session: Session,
    /// The API, as this user.
    pub api: api::Client,
    /// The connection.
    pub conn: ConnInfo,
}

impl Ctx {
    /// The shell's view of the user.
    pub fn viewer(&self) -> html::Viewer<'_> {
        html::Viewer {
            principal: &self.session.principal,
            csrf: &self.session.csrf,
            flash: self.session.flash.as_deref(),
        }
    }

    /// Whether the user may do `p`.
    pub fn may(&self, p: Permission) -> bool {
        self.session.principal.role.allows(p)
    }
}

/// A page request of a signed-in user (extracting it answers the redirect to the login when
/// there is no session).
pub struct Page {
    /// The UI.
    pub ui: Arc<Ui>,
    /// The session and the API as its user.
    pub c: Ctx,
}

fn conn_of(ext: &axum::http::Extensions) -> Result<ConnInfo, Response> {
    ext.get::<ConnInfo>()
        .cloned()
        .ok_or_else(|| (StatusCode::INTERNAL_SERVER_ERROR, "no connection info").into_response())
}

impl axum::extract::FromRequestParts<Arc<Ui>> for Page {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        ui: &Arc<Ui>,
    ) -> Result<Page, Response> {
        let conn = conn_of(&parts.extensions)?;
        let c = ctx(ui, &conn, &parts.headers, &parts.uri)?;
        Ok(Page { ui: ui.clone(), c })
    }
}

/// A form posted by a signed-in user, from this site, with the session's CSRF token (extracting
/// it answers the refusal otherwise).
pub struct Posted {
    /// The UI.
    pub ui: Arc<Ui>,
    /// The session and the API as its user.
    pub c: Ctx,
    /// The form's fields.
    pub form: HashMap<String, String>,
}

impl axum::extract::FromRequest<Arc<Ui>> for Posted {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, ui: &Arc<Ui>) -> Result<Posted, Response> {
        let conn = conn_of(req.extensions())?;
        let (headers, uri) = (req.headers().clone(), req.uri().clone());
        let axum::Form(form) =
            <axum::Form<HashMap<String, String>> as axum::extract::FromRequest<Arc<Ui>>>::from_request(req, ui)
                .await
                .map_err(IntoResponse::into_response)?;
        let c = post_ctx(ui, &conn, &headers, &uri, &form)?;
        Ok(Posted {
            ui: ui.clone(),
            c,
            form,
        })
    }
}

/// Where to go after signing in: only a path of the UI.
fn safe_next(next: &str) -> &str {
    if next.starts_with("/ui/") && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/ui/"
    }
}

/// The session of a request, or a redirect to the login page that says why.
pub fn ctx(ui: &Ui, conn: &ConnInfo, headers: &HeaderMap, uri: &Uri) -> Result<Ctx, Response> {
    let cookies = session::cookie_header(headers);
    let sid = session::cookie(&cookies, ui.session_cookie()).map(str::to_string);
    let got = match &sid {
        Some(id) => ui.sessions.get(id),
        None => Err(Missing::None),
    };
    // a session made from a token ends when the token is revoked or expires
    let got = match got {
        Ok(s) if !ui.state.auth.still_valid(&s.principal) => {
            if let Some(id) = &sid {
                ui.sessions.remove(id);
            }
            Err(Missing::Revoked)
        }
        other => other,
    };
    match got {
        Ok(session) => {
            let api = api::Client::new(ui.api.clone(), conn, session.principal.clone());
            Ok(Ctx {
                sid: sid.unwrap_or_default(),
                session,
                api,
                conn: conn.clone(),
            })
        }
        Err(why) => {
            let why = match (why, sid.is_some()) {
                (Missing::Idle, _) => "idle",
                (Missing::Expired, _) => "expired",
                (Missing::Revoked, _) => "revoked",
                (Missing::None, true) => "ended",
                (Missing::None, false) => "",
            };
            let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui/");
            let to = format!(
                "/ui/login{}",
                api::qs(&[("next", safe_next(next)), ("why", why)])
            );
            let mut r = Redirect::to(&to).into_response();
            if sid.is_some() {
                r.headers_mut().insert(
                    header::SET_COOKIE,
                    ui.set_cookie(ui.session_cookie(), "", 0),
                );
            }
            Err(r)
        }
    }
}

/// Whether a state-changing request comes from this site (Fetch Metadata, then Origin).
fn same_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), String> {
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    // a browser that sends Fetch Metadata says it itself; Origin is the fallback for older ones
    if let Some(site) = get("sec-fetch-site") {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => Err(format!("Sec-Fetch-Site is {site:?}")),
        };
    }
    if let Some(origin) = get("origin") {
        let host = get("host")
            .map(str::to_string)
            .or_else(|| uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let o = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
        if o != host {
            return Err(format!("Origin {origin:?} is not this site ({host})"));
        }
    }
    Ok(())
}

/// A state-changing request of a signed-in user: from this site, with the session's CSRF
/// token. A refusal is a 403 page and an access record.
pub fn post_ctx(
    ui: &Ui,
    conn: &ConnInfo,
    headers: &HeaderMap,
    uri: &Uri,
    form: &HashMap<String, String>,
) -> Result<Ctx, Response> {
    let c = ctx(ui, conn, headers, uri)?;
    let why = match same_origin(headers, uri) {
        Err(e) => Some(e),
        Ok(()) => match form.get("_csrf") {
            None => Some("no CSRF token".to_string()),
            Some(t) if !session::same(t, &c.session.csrf) => Some("wrong CSRF token".into()),
            Some(_) => None,
        },
    };
    if let Some(why) = why {
        ui.state.metrics.auth_failure("csrf");
        ui.record(
            conn,
            &c.session.principal.subject,
            "csrf",
            &format!("POST {} ({why})", uri.path()),
            "forbidden",
        );
        let body = html! {
            (html::error_box(&format!("This request was refused: {why}. Forms of this site carry a token that proves they came from it; reload the page and try again.")))
            p { a href="/ui/" { "Back to the overview" } }
        };
        return Err(respond(
            StatusCode::FORBIDDEN,
            html::page(&c.viewer(), "", "Refused", body),
        ));
    }
    Ok(c)
}

/// A page answer with a status.
pub fn respond(status: StatusCode, m: Markup) -> Response {
    let mut r = (status, m.into_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// See other: after a form, back to a page, with a message for it.
pub fn done(ui: &Ui, c: &Ctx, to: &str, msg: String) -> Response {
    ui.sessions.flash(&c.sid, msg);
    Redirect::to(to).into_response()
}

async fn not_found(Page { c, .. }: Page, uri: Uri) -> Response {
    let body = html! { p { "There is no page " code { (uri.path()) } "." } };
    respond(
        StatusCode::NOT_FOUND,
        html::page(&c.viewer(), "", "Not found", body),
    )
}

fn idle_text(d: Duration) -> String {
    match d.as_secs() {
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

#[derive(serde::Deserialize, Default)]
struct LoginQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    why: String,
}

fn login_page(ui: &Ui, next: &str, message: Option<Markup>) -> Result<Response, String> {
    let nonce = session::random_token(24)?;
    let body = html! {
        @if let Some(m) = message { (m) }
        form.login method="post" action="/ui/login" {
            input type="hidden" name="_csrf" value=(nonce);
            input type="hidden" name="next" value=(safe_next(next));
            label for="token" { "API token or OIDC token" }
            input #token type="password" name="token" autocomplete="off" required autofocus
                placeholder="twk_…" spellcheck="false";
            button type="submit" { "Sign in" }
        }
        @if ui.state.cfg.oidc.authorization_endpoint.is_some() {
            p { a.button #oidc href={"/ui/login/oidc" (api::qs(&[("next", safe_next(next))]))} { "Sign in with your identity provider" } }
        }
        p.muted {
            "Paste the admin token " code { "serve" } " printed at its first start, or a token from "
            code { "trailwarden tokens create --role analyst" } ". "
            "Signing in opens a session that ends after " (idle_text(ui.sessions.idle))
            " without activity; the token is not kept in the browser."
        }
    };
    let mut r = respond(StatusCode::OK, html::bare("Sign in", body));
    r.headers_mut().insert(
        header::SET_COOKIE,
        ui.set_cookie(ui.login_cookie(), &nonce, 600),
    );
    Ok(r)
}

async fn login_form(
    State(ui): St,
    Extension(conn): Extension<ConnInfo>,
    h: HeaderMap,
    uri: Uri,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    if ctx(&ui, &conn, &h, &uri).is_ok() {
        return Redirect::to(safe_next(&q.next)).into_response();
    }
    let msg = match q.why.as_str() {
        "idle" => Some(format!(
            "Your session ended after {} without activity. Sign in again.",
            idle_text(ui.sessions.idle)
        )),
        "expired" => Some("Your session reached its maximum age. Sign in again.".into()),
        "ended" => Some(
            "Your session has ended (signed out, or the server restarted). Sign in again.".into(),
        ),
        "out" => Some("You are signed out.".into()),
        "revoked" => Some(
            "Your session ended: the token it was opened with was revoked or has expired.".into(),
        ),
        _ => None,
    };
    match login_page(
        &ui,
        &q.next,
        msg.map(|m| html! { p.flash role="status" { (m) } }),
    ) {
        Ok(r) => r,
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            html::bare("Error", html::error_box(&e)),
        ),
    }
}

async fn login(
    State(ui): St,
    Extension(conn): Extension<ConnInfo>,
    h: HeaderMap,
    uri: Uri,
    axum::Form(f): axum::Form<HashMap<String, String>>,
) -> Response {
    let next = f
        .get("next")
        .map(String::as_str)
        .unwrap_or("/ui/")
        .to_string();
    let fail = |status: StatusCode, msg: &str| -> Response {
        let m = html! { (html::error_box(msg)) };
        match login_page(&ui, &next, Some(m)) {
            Ok(mut r) => {
                *r.status_mut() = status;
                r
            }
            Err(e) => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                html::bare("Error", html::error_box(&e)),
            ),
        }
    };
    let cookies = session::cookie_header(&h);
    let nonce_ok = match (session::cookie(&cookies, ui.login_cookie()), f.get("_csrf")) {
        (Some(a), Some(b)) => session::same(a, b),
        _ => false,
    };
    if let Err(why) = same_origin(&h, &uri).and_then(|_| {
        if nonce_ok {
            Ok(())
        } else {
            Err("the login form's token is missing or wrong".into())
        }
    }) {
        ui.state.metrics.auth_failure("csrf");
        ui.record(
            &conn,
            "anonymous",
            "ui-login",
            &format!("refused: {why}"),
            "forbidden",
        );
        return fail(
            StatusCode::FORBIDDEN,
            &format!("This sign-in was refused: {why}. Reload the page and try again."),
        );
    }
    let token = f.get("token").map(|t| t.trim()).unwrap_or("");
    if token.is_empty() {
        return fail(StatusCode::BAD_REQUEST, "Paste a token to sign in.");
    }
    let authz = format!("Bearer {token}");
    let who: Result<Principal, String> = match ui.state.auth.authenticate(Some(&authz), None) {
        Ok(Some(p)) if p.role.allows(Permission::Read) => Ok(p),
        Ok(Some(p)) => Err(format!(
            "{} (role {} reads nothing)",
            p.subject,
            p.role.as_str()
        )),
        Ok(None) => Err("no credentials".into()),
        Err(f) => Err(format!("{}: {}", f.presented, f.reason)),
    };
    match who {
        Ok(p) => {
            let (sid, _) = match ui.sessions.create(p.clone()) {
                Ok(x) => x,
                Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, &e),
            };
            ui.record(&conn, &p.subject, "ui-login", "session", "success");
            let mut r = Redirect::to(safe_next(&next)).into_response();
            let hs = r.headers_mut();
            hs.append(
                header::SET_COOKIE,
                ui.set_cookie(ui.session_cookie(), &sid, ui.sessions.max_age.as_secs()),
            );
            hs.append(header::SET_COOKIE, ui.set_cookie(ui.login_cookie(), "", 0));
            r
        }
        Err(why) => {
            ui.state.metrics.auth_failure("unauthenticated");
            ui.record(
                &conn,
                "anonymous",
                "ui-login",
                &format!("refused: {why}"),
                "unauthenticated",
            );
            fail(
                StatusCode::UNAUTHORIZED,
                "That token was not accepted (unknown, revoked, expired, or an ingest-only token).",
            )
        }
    }
}

async fn logout(Posted { ui, c, .. }: Posted) -> Response {
    ui.sessions.remove(&c.sid);
    ui.record(
        &c.conn,
        &c.session.principal.subject,
        "ui-logout",
        "session",
        "success",
    );
    let mut r = Redirect::to("/ui/login?why=out").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        ui.set_cookie(ui.session_cookie(), "", 0),
    );
    r
}
