//! `/ui/`: what needs attention — open alerts by level, the latest review, the last
//! verification, sources and open control failures.

use super::{ok, Params};
use crate::html::{self, badge, level, s, ts_text};
use crate::Page;
use axum::response::Response;
use maud::html;
use std::collections::BTreeMap;

/// The overview.
pub async fn page(Page { ui: _, c }: Page, _q: Params) -> Response {
    let open = c
        .api
        .get("/v1/alerts?status=new,acknowledged&limit=10000")
        .await
        .map(|v| {
            let list = v.as_array().cloned().unwrap_or_default();
            let mut by: BTreeMap<u8, (String, usize)> = BTreeMap::new();
            for a in &list {
                let l = s(a, "level").to_string();
                by.entry(5 - html::level_rank(&l)).or_insert((l, 0)).1 += 1;
            }
            (list.len(), by)
        });
    let reviews = c.api.get("/v1/reviews").await;
    let verify = c.api.get("/v1/verify").await;
    let sources = c.api.get("/v1/sources").await;
    let controls = c.api.get("/v1/controls").await;
    let body = html! {
        div.cards {
            section.card aria-labelledby="c-alerts" {
                h2 #c-alerts { a href="/ui/alerts" { "Open alerts" } }
                @match &open {
                    Ok((total, by)) => {
                        p.big { (total) }
                        ul.plain {
                            @for (l, n) in by.values() {
                                li { (level(l)) " " a href={"/ui/alerts?status=open&level=" (l)} { (n) } }
                            }
                        }
                    }
                    Err(e) => { (html::error_box(&e.message)) }
                }
            }
            section.card aria-labelledby="c-review" {
                h2 #c-review { a href="/ui/reviews" { "Daily review" } }
                @match &reviews {
                    Ok(v) => {
                        @if let Some(r) = v.as_array().and_then(|a| a.first()) {
                            p { a href={"/ui/reviews/" (s(r, "id"))} { (s(r, "id")) } }
                            p {
                                @if r["sign_off"].is_null() { (badge("pending")) " not signed off" }
                                @else { (badge("signed-off")) " by " (s(&r["sign_off"], "reviewer")) }
                            }
                            p { (r["exceptions"].as_u64().unwrap_or(0)) " exceptions" }
                        } @else { p.muted { "No review yet." } }
                    }
                    Err(e) => { (html::error_box(&e.message)) }
                }
            }
            section.card aria-labelledby="c-verify" {
                h2 #c-verify { a href="/ui/integrity" { "Integrity" } }
                @match &verify {
                    Ok(v) => {
                        p { "Ledger size " strong { (v["checkpoint"]["size"].as_u64().unwrap_or(0)) } }
                        @if v["last_verify"].is_null() { p.muted { "Not verified since the start." } }
                        @else {
                            p { (badge(s(&v["last_verify"], "status"))) " " (ts_text(&v["last_verify"]["at"])) }
                        }
                    }
                    Err(e) => { (html::error_box(&e.message)) }
                }
            }
            section.card aria-labelledby="c-sources" {
                h2 #c-sources { a href="/ui/sources" { "Sources & controls" } }
                @if let Ok(v) = &sources { p { (v["sources"].as_array().map_or(0, |a| a.len())) " sources sending" } }
                @match &controls {
                    Ok(v) => {
                        @let n = v.as_array().map_or(0, |a| a.iter().filter(|i| s(i, "state") == "open").count());
                        p { @if n > 0 { (badge("open")) } @else { (badge("ok")) } " " (n) " open control failures" }
                    }
                    Err(e) => { (html::error_box(&e.message)) }
                }
            }
        }
    };
    ok(&c, "/ui/", "Overview", body)
}
