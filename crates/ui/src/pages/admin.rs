//! `/ui/admin`: API tokens (admin: create — the token is shown once — and revoke), the rules
//! detection runs with their state and last match, and the configuration in force with its
//! secrets hidden (admin).

use super::{api_error, param, Params};
use crate::html::{self, badge, csrf, level, s, ts_text};
use crate::{done, respond, Ctx, Page, Posted};
use axum::extract::Path;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde_json::{json, Value};
use trailwarden_server::auth::{Permission, Role};

async fn render(c: &Ctx, created: Option<&Value>) -> Markup {
    let admin = c.may(Permission::Administer);
    let tokens = if admin {
        Some(c.api.get("/v1/tokens").await)
    } else {
        None
    };
    let config = if admin {
        Some(c.api.get("/v1/config").await)
    } else {
        None
    };
    let rules = c.api.get("/v1/rules").await;
    html! {
        @if let Some(t) = created {
            div.flash.created role="status" {
                p { "Token " strong { (s(t, "name")) } " (" (s(t, "role")) ") created. Copy it now: it is not shown again and not stored (only its hash is)." }
                p { code #new-token { (s(t, "token")) } }
            }
        }
        @if let Some(tokens) = &tokens {
            section aria-labelledby="tk" {
                h2 #tk { "API tokens" }
                form.filters method="post" action="/ui/admin/tokens" {
                    (csrf(&c.session.csrf))
                    label { "Name " input name="name" required size="16" placeholder="alice"; }
                    label { "Role "
                        select name="role" {
                            @for r in Role::ALL { option value=(r.as_str()) selected[r == Role::Viewer] { (r.as_str()) } }
                        }
                    }
                    label { "Expires in " input name="expires" size="8" placeholder="90d"; }
                    button type="submit" { "Create token" }
                }
                @match tokens {
                    Err(e) => (html::error_box(&e.message)),
                    Ok(v) => {
                        table.grid.sortable #tokens {
                            thead { tr { th scope="col" { "Id" } th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "State" } th { span.sr { "Action" } } } }
                            tbody {
                                @for t in v.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                                    tr {
                                        td { code { (s(t, "id")) } }
                                        td { (s(t, "name")) }
                                        td { (s(t, "role")) }
                                        td { (ts_text(&t["created"])) }
                                        td { (ts_text(&t["expires"])) }
                                        td { @if t["revoked"].is_null() { (badge("active")) } @else { (badge("revoked")) " " (ts_text(&t["revoked"])) } }
                                        td {
                                            @if t["revoked"].is_null() {
                                                @let own = c.session.principal.subject.starts_with(&format!("token:{}(", s(t, "id")));
                                                @let ask = format!(
                                                    "Revoke {} ({})? Whoever uses it is refused within a second.{}",
                                                    s(t, "id"),
                                                    s(t, "name"),
                                                    if own { " It is the token you are signed in with: your session ends too." } else { "" }
                                                );
                                                form.inline method="post" action={"/ui/admin/tokens/" (s(t, "id")) "/revoke"} data-confirm=(ask) {
                                                    (csrf(&c.session.csrf))
                                                    button.danger type="submit" aria-label={"Revoke " (s(t, "id"))} { "Revoke" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="rl" {
            h2 #rl { "Rules" }
            @match &rules {
                Err(e) => (html::error_box(&e.message)),
                Ok(v) => {
                    @let list = v.as_array().cloned().unwrap_or_default();
                    p.muted { (list.len()) " rules, " (list.iter().filter(|r| s(r, "state") != "enabled").count()) " disabled." }
                    table.grid.sortable #rules {
                        thead { tr { th scope="col" { "Rule" } th scope="col" { "Kind" } th scope="col" { "Level" } th scope="col" { "Log source" } th scope="col" { "State" } th scope="col" { "Alerts" } th scope="col" { "Last alert" } th scope="col" { "Matches since start" } } }
                        tbody {
                            @for r in &list {
                                tr {
                                    td { (s(r, "title")) br; code.muted { (s(r, "id")) } }
                                    td { (s(r, "kind")) }
                                    td { (level(s(r, "level"))) }
                                    td { (s(r, "logsource")) }
                                    td { @if s(r, "state") == "enabled" { (badge("enabled")) } @else { span.muted { (s(r, "state")) } } }
                                    td data-sort=(r["alerts"].as_u64().unwrap_or(0)) {
                                        a href={"/ui/alerts?status=all&rule=" (crate::api::enc(s(r, "id")))} { (r["alerts"].as_u64().unwrap_or(0)) }
                                    }
                                    td { (ts_text(&r["last_alert"])) }
                                    td data-sort=(r["matches_since_start"].as_u64().unwrap_or(0)) { (r["matches_since_start"].as_u64().unwrap_or(0)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(cfg) = &config {
            section aria-labelledby="cf" {
                h2 #cf { "Configuration" }
                p.muted { "In force now; secrets are hidden (the files and variables that hold them are named)." }
                @match cfg {
                    Err(e) => (html::error_box(&e.message)),
                    Ok(v) => (html::json_block(v)),
                }
            }
        }
    }
}

/// The page.
pub async fn page(Page { ui: _, c }: Page, _q: Params) -> Response {
    let body = render(&c, None).await;
    super::ok(&c, "/ui/admin", "Admin", body)
}

/// `POST /ui/admin/tokens` (admin): create a token and show it, once.
pub async fn create_token(Posted { ui: _, c, form: f }: Posted) -> Response {
    let body = json!({"name": param(&f, "name"), "role": param(&f, "role"), "expires": param(&f, "expires")});
    match c.api.json(Method::POST, "/v1/tokens", Some(body)).await {
        Ok(t) => {
            let page = render(&c, Some(&t)).await;
            respond(
                StatusCode::CREATED,
                html::page(&c.viewer(), "/ui/admin", "Admin", page),
            )
        }
        Err(e) => api_error(&c, "/ui/admin", "Admin", &e),
    }
}

/// `POST /ui/admin/tokens/{id}/revoke` (admin).
pub async fn revoke_token(Path(id): Path<String>, Posted { ui, c, form: _f }: Posted) -> Response {
    let path = format!("/v1/tokens/{}", crate::api::enc(&id));
    match c.api.json(Method::DELETE, &path, None).await {
        Ok(_) => done(&ui, &c, "/ui/admin", format!("Token {id} revoked.")),
        Err(e) => api_error(&c, "/ui/admin", "Admin", &e),
    }
}
