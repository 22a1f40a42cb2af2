//! A sentence a person can read: who did what to which resource from where, and how it ended.

use trailwarden_model::Event;

fn who(ev: &Event) -> String {
    let id = ev
        .user
        .identity
        .name
        .as_deref()
        .unwrap_or("an unknown identity");
    match ev
        .user
        .impersonated
        .as_ref()
        .and_then(|i| i.name.as_deref())
    {
        Some(imp) => format!("{id} (as {imp})"),
        None => id.to_string(),
    }
}

fn what(ev: &Event) -> String {
    let r = &ev.resource;
    let mut target = String::new();
    if let Some(res) = &r.resource {
        target.push_str(res);
        if let Some(sub) = &r.subresource {
            target.push('/');
            target.push_str(sub);
        }
    }
    if let Some(name) = &r.name {
        if !target.is_empty() {
            target.push(' ');
        }
        target.push_str(name);
    }
    if let Some(ns) = &r.namespace {
        target.push_str(&format!(" in namespace {ns}"));
    }
    if target.is_empty() {
        if let Some(uri) = &ev.request_uri {
            target = uri.clone();
        }
    }
    target
}

/// Who did what to which resource from where, and the outcome, from a normalized event.
pub fn summarize(ev: &Event) -> String {
    let mut s = format!(
        "{} {}",
        who(ev),
        ev.action.as_deref().unwrap_or("did something")
    );
    let target = what(ev);
    if !target.is_empty() {
        s.push(' ');
        s.push_str(&target);
    }
    if let Some(ip) = ev
        .origin
        .trusted_ip
        .as_deref()
        .or(ev.origin.host.as_deref())
    {
        s.push_str(&format!(" from {ip}"));
    }
    match ev.outcome.code {
        Some(c) => s.push_str(&format!(" ({} {c})", ev.outcome.result.as_str())),
        None => s.push_str(&format!(" ({})", ev.outcome.result.as_str())),
    }
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The deduplication key of a single-event detection: who, what, which resource, from where.
/// Repeats of the same action by the same identity on the same object merge into one alert.
pub fn group_key(ev: &Event) -> String {
    let r = &ev.resource;
    [
        ev.user.identity.name.as_deref(),
        ev.user
            .impersonated
            .as_ref()
            .and_then(|i| i.name.as_deref()),
        ev.action.as_deref(),
        r.resource.as_deref(),
        r.subresource.as_deref(),
        r.namespace.as_deref(),
        r.name.as_deref(),
        ev.origin
            .trusted_ip
            .as_deref()
            .or(ev.origin.host.as_deref()),
    ]
    .iter()
    .map(|x| x.unwrap_or(""))
    .collect::<Vec<_>>()
    .join("|")
}
