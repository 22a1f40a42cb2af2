//! Routes and silences: which sinks an alert change goes to.
//!
//! A route (`[[alerting.route]]`) matches on level (at least), tags, rule id, namespace and
//! source; routes are tried in order and the first that matches wins unless it says
//! `continue = true` (Alertmanager's semantics). A silence matches the same way and keeps a
//! change from being sent while it lasts (the delivery is still written, as `silenced`, so the
//! outbox shows what was held back and why).

use serde::{Deserialize, Serialize};

/// The alert fields routes and silences look at.
#[derive(Clone, Copy, Debug)]
pub struct RouteInput<'a> {
    /// Rule id (`trailwarden-control-…` for control failures).
    pub rule_id: &'a str,
    /// Sigma level.
    pub level: &'a str,
    /// Tags.
    pub tags: &'a [String],
    /// Namespace of the triggering event, if any.
    pub namespace: Option<&'a str>,
    /// Where the triggering event came from (`api:k8s-audit …`, `file:…`, `syslog …`).
    pub source: Option<&'a str>,
}

/// What a route or a silence matches. Every field that is set must match; an empty matcher
/// matches everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Matcher {
    /// At least this Sigma level (informational, low, medium, high, critical).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_level: Option<String>,
    /// Any of these tags (globs: `pci_dss.10.7.*`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Rule id glob (`trailwarden-control-*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// Namespace glob (`payments-*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Source glob (`api:k8s-audit*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Matcher {
    /// Does `a` match?
    pub fn matches(&self, a: &RouteInput<'_>) -> bool {
        if let Some(l) = &self.min_level {
            if crate::level_rank(a.level) < crate::level_rank(l) {
                return false;
            }
        }
        if !self.tags.is_empty() && !self.tags.iter().any(|p| a.tags.iter().any(|t| glob(p, t))) {
            return false;
        }
        let opt = |p: &Option<String>, v: Option<&str>| match p {
            None => true,
            Some(p) => v.is_some_and(|v| glob(p, v)),
        };
        opt(&self.rule_id, Some(a.rule_id))
            && opt(&self.namespace, a.namespace)
            && opt(&self.source, a.source)
    }

    /// Is the matcher valid (known level)?
    pub fn check(&self) -> Result<(), String> {
        if let Some(l) = &self.min_level {
            if !LEVELS.contains(&l.as_str()) {
                return Err(format!(
                    "min_level {l:?} is not a Sigma level ({})",
                    LEVELS.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// The Sigma levels, lowest first.
pub const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// The changes a route can be limited to (`events = [...]`).
pub const EVENTS: [&str; 7] = [
    "raised",
    "reraised",
    "escalated",
    "acknowledged",
    "resolved",
    "false-positive",
    "test",
];

/// One `[[alerting.route]]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Route {
    /// At least this Sigma level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_level: Option<String>,
    /// Any of these tags (globs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Rule id glob.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// Namespace glob.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Source glob.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Only these changes (empty: all of them; see [`EVENTS`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The sinks (by name) that get what matches.
    pub sinks: Vec<String>,
    /// Keep trying the routes after this one when it matched.
    #[serde(rename = "continue")]
    pub continue_: bool,
}

impl Route {
    /// The route's matcher.
    pub fn matcher(&self) -> Matcher {
        Matcher {
            min_level: self.min_level.clone(),
            tags: self.tags.clone(),
            rule_id: self.rule_id.clone(),
            namespace: self.namespace.clone(),
            source: self.source.clone(),
        }
    }
}

/// How alert changes become deliveries.
#[derive(Clone, Debug, Default)]
pub struct Routing {
    /// Routes in order; none configured means the default route: the `log` sink only.
    pub routes: Vec<Route>,
    /// A detection merged into an open alert is sent again (`reraised`) when nothing was sent
    /// for the alert for this long and its count grew (ns; 0 = never).
    pub renotify_after_ns: i64,
}

/// The sink of the default route: the server's log (and its metrics).
pub const LOG_SINK: &str = "log";

impl Routing {
    /// The sinks a change `event` of alert `a` goes to, in route order, without repeats.
    /// `exclude` is left out (a delivery failure is never routed back to the failing sink).
    pub fn sinks(&self, a: &RouteInput<'_>, event: &str, exclude: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if self.routes.is_empty() {
            out.push(LOG_SINK.to_string());
        }
        for r in &self.routes {
            if !r.matcher().matches(a) {
                continue;
            }
            if !r.events.is_empty() && !r.events.iter().any(|e| e == event) {
                continue;
            }
            for s in &r.sinks {
                if Some(s.as_str()) != exclude && !out.contains(s) {
                    out.push(s.clone());
                }
            }
            if !r.continue_ {
                break;
            }
        }
        out
    }
}

/// A silence: changes of matching alerts are not sent until `ends_at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Id (1, 2, …).
    pub id: i64,
    /// What it matches.
    pub matcher: Matcher,
    /// Who created it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When (ns).
    pub created_at: i64,
    /// Until when (ns).
    pub ends_at: i64,
    /// Ended early by someone (who, when).
    pub expired_by: Option<String>,
}

/// `*` (any run) and `?` (one character) glob match, case-sensitive.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(
            "trailwarden-control-*",
            "trailwarden-control-delivery"
        ));
        assert!(glob("pci_dss.10.?.*", "pci_dss.10.7.2"));
        assert!(!glob("pci_dss.10.7.*", "pci_dss.10.2.1"));
        assert!(glob("*", ""));
        assert!(!glob("a", "ab"));
        assert!(glob("a*b*c", "aXbYbc"));
    }

    fn input<'a>(level: &'a str, tags: &'a [String], ns: Option<&'a str>) -> RouteInput<'a> {
        RouteInput {
            rule_id: "r1",
            level,
            tags,
            namespace: ns,
            source: Some("api:k8s-audit initial-admin 127.0.0.1"),
        }
    }

    #[test]
    fn first_matching_route_wins_unless_continue() {
        let tags = vec!["pci_dss.10.2.1.2".to_string()];
        let routing = Routing {
            routes: vec![
                Route {
                    min_level: Some("high".into()),
                    sinks: vec!["pager".into()],
                    continue_: true,
                    ..Route::default()
                },
                Route {
                    tags: vec!["pci_dss.10.2.*".into()],
                    sinks: vec!["siem".into(), "pager".into()],
                    ..Route::default()
                },
                Route {
                    sinks: vec!["mail".into()],
                    ..Route::default()
                },
            ],
            renotify_after_ns: 0,
        };
        assert_eq!(
            routing.sinks(&input("critical", &tags, None), "raised", None),
            ["pager", "siem"]
        );
        assert_eq!(
            routing.sinks(&input("low", &tags, None), "raised", None),
            ["siem", "pager"]
        );
        assert_eq!(
            routing.sinks(&input("low", &[], None), "raised", None),
            ["mail"]
        );
        assert_eq!(
            routing.sinks(&input("critical", &tags, None), "raised", Some("pager")),
            ["siem"]
        );
        assert_eq!(
            Routing::default().sinks(&input("low", &[], None), "raised", None),
            [LOG_SINK]
        );
    }

    #[test]
    fn namespace_and_events_filters() {
        let r = Routing {
            routes: vec![Route {
                namespace: Some("payments-*".into()),
                events: vec!["raised".into()],
                sinks: vec!["a".into()],
                ..Route::default()
            }],
            renotify_after_ns: 0,
        };
        assert_eq!(
            r.sinks(&input("low", &[], Some("payments-eu")), "raised", None),
            ["a"]
        );
        assert!(r
            .sinks(&input("low", &[], Some("payments-eu")), "resolved", None)
            .is_empty());
        assert!(r.sinks(&input("low", &[], None), "raised", None).is_empty());
    }
}
