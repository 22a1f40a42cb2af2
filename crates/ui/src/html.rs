//! The page shell and the small pieces every page uses. All markup goes through maud, which
//! escapes every value; no page has inline script or style (the CSP forbids both), data for
//! scripts travels in `data-` attributes.

use crate::assets;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;
use trailwarden_model::Timestamp;
use trailwarden_server::auth::{Permission, Principal};

/// What the shell needs to know about the signed-in user.
pub struct Viewer<'a> {
    /// Who.
    pub principal: &'a Principal,
    /// The session's CSRF token.
    pub csrf: &'a str,
    /// A one-time message.
    pub flash: Option<&'a str>,
}

impl Viewer<'_> {
    /// Whether the user's role allows `p` (what the page shows; the API decides anyway).
    pub fn may(&self, p: Permission) -> bool {
        self.principal.role.allows(p)
    }
}

/// The navigation: (path, label, permission needed to see it).
const NAV: &[(&str, &str, Permission)] = &[
    ("/ui/", "Overview", Permission::Read),
    ("/ui/search", "Search", Permission::Query),
    ("/ui/alerts", "Alerts", Permission::Read),
    ("/ui/reviews", "Reviews", Permission::Read),
    ("/ui/compliance", "Compliance", Permission::Read),
    ("/ui/integrity", "Integrity", Permission::Read),
    ("/ui/sources", "Sources & controls", Permission::Read),
    ("/ui/admin", "Admin", Permission::Read),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light dark";
            title { (title) " · trailwarden" }
            link rel="stylesheet" href=(assets::url("app.css"));
            link rel="icon" href=(assets::url("icon.svg")) type="image/svg+xml";
            // the theme is set before the first paint (no flash of the wrong one)
            script src=(assets::url("theme.js")) {}
            script src=(assets::url("app.js")) defer {}
        }
    }
}

/// A whole page for a signed-in user.
pub fn page(v: &Viewer, active: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    nav aria-label="Main" {
                        a.brand href="/ui/" { "trailwarden" }
                        ul {
                            @for (href, label, perm) in NAV {
                                @if v.may(*perm) {
                                    li { a href=(href) aria-current=[(*href == active).then_some("page")] { (label) } }
                                }
                            }
                        }
                    }
                    div.user {
                        span title="signed in as" { (v.principal.subject) }
                        " "
                        span.role { (v.principal.role.as_str()) }
                        button #theme type="button" aria-label="Switch between light and dark" { "◐" }
                        form.inline method="post" action="/ui/logout" {
                            (csrf(v.csrf))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    @if let Some(f) = v.flash {
                        p.flash role="status" { (f) }
                    }
                    h1 { (title) }
                    (body)
                }
                footer { "Times are UTC; hover one for your local time." }
            }
        }
    }
}

/// A page without the navigation (login, errors before login).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main #main {
                    p.brand { "trailwarden" }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="_csrf" value=(token); }
}

/// A time in nanoseconds since the epoch, shown in UTC; the local time on hover.
pub fn ts(ns: i64) -> Markup {
    let t = Timestamp(ns);
    let iso = t.to_rfc3339();
    html! { time datetime=(iso) { (utc(ns)) } }
}

/// `2026-12-03 07:54:34 UTC`.
pub fn utc(ns: i64) -> String {
    let iso = Timestamp(ns).to_rfc3339();
    let (date, rest) = iso.split_once('T').unwrap_or((&iso, ""));
    let time = rest.get(..8).unwrap_or(rest);
    format!("{date} {time} UTC")
}

/// A time given as RFC 3339 text (as the API answers), shown like [`ts`].
pub fn ts_text(v: &Value) -> Markup {
    match v.as_str().and_then(|s| Timestamp::parse(s).ok()) {
        Some(t) => ts(t.0),
        None => match v.as_i64() {
            Some(ns) if ns > 0 => ts(ns),
            _ => html! { span.muted { "—" } },
        },
    }
}

/// A Sigma level, as text and colour.
pub fn level(l: &str) -> Markup {
    let class = match l {
        "critical" => "lvl crit",
        "high" => "lvl high",
        "medium" => "lvl med",
        "low" => "lvl low",
        _ => "lvl info",
    };
    html! { span class=(class) { (l) } }
}

/// How severe a Sigma level is (critical 4 … informational 0), for sorting.
pub fn level_rank(l: &str) -> u8 {
    match l {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

/// A status word with a colour that repeats its meaning.
pub fn badge(s: &str) -> Markup {
    let class = match s {
        "new" | "open" | "fail" | "failed" | "missing" | "error" | "overdue" | "dead" | "gap"
        | "silent" => "badge bad",
        "acknowledged" | "warn" | "warnings" | "pending" | "partial" | "generated" | "retrying"
        | "attest" => "badge warn",
        "resolved" | "pass" | "ok" | "signed-off" | "delivered" | "closed" | "enabled" | "met"
        | "active" => "badge good",
        _ => "badge",
    };
    html! { span class=(class) { (s) } }
}

/// An error from the API, shown where the data would have been. Multi-line messages (a query's
/// caret message) keep their layout.
pub fn error_box(msg: &str) -> Markup {
    html! {
        div.error role="alert" {
            @if msg.contains('\n') { pre { (msg) } } @else { p { (msg) } }
        }
    }
}

/// JSON, pretty-printed, in a scrollable block.
pub fn json_block(v: &Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    html! { pre.json { (text) } }
}

/// A value of a JSON row as cell text.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A string field of a JSON object (empty when absent).
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Pre-escaped markup from a trusted constant (an SVG built here).
pub fn trusted(s: String) -> Markup {
    PreEscaped(s)
}
