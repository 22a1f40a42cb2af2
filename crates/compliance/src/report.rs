//! The PCI DSS 4.0.1 Requirement 10 evidence report: one entry per sub-requirement, 10.1.1
//! through 10.7.3, with a status — `met` (the system shows it by itself), `gap` (it shows it is
//! not met) or `attest` (a person must confirm: policies, roles, clocks of other systems, the
//! risk analysis) — and the evidence behind it: counts, the queries to reproduce them, the
//! verification and checkpoint, retention, reviews and sign-offs, incidents with durations,
//! `check` findings.

use crate::check::FileReport;
use crate::controls::Incident;
use crate::review::{Review, Verification};
use crate::store::ReviewRow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use trailwarden_model::Timestamp;

const DAY: i64 = 86_400 * 1_000_000_000;

/// A sub-requirement's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Shown by the system.
    Met,
    /// Shown not to be met.
    Gap,
    /// A person must attest.
    Attest,
}

/// One piece of evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// What it shows.
    pub text: String,
    /// The query that reproduces it (KQL over the ledger's tables), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Records, reviews, incidents it refers to (`ledger:4711`, `review:daily-…`, `alert:7`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<String>,
}

fn ev(text: impl Into<String>) -> Evidence {
    Evidence {
        text: text.into(),
        query: None,
        refs: Vec::new(),
    }
}

fn evq(text: impl Into<String>, query: &str) -> Evidence {
    Evidence {
        text: text.into(),
        query: Some(query.into()),
        refs: Vec::new(),
    }
}

/// One sub-requirement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Requirement {
    /// `10.2.1.1` …
    pub id: String,
    /// What it asks, in a line.
    pub title: String,
    /// Met, gap or attest.
    pub status: Status,
    /// Why that status.
    pub reason: String,
    /// The evidence.
    pub evidence: Vec<Evidence>,
}

/// The report (`report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `pci-dss-4.0.1-requirement-10`.
    pub report: String,
    /// Start of the range.
    pub from: Timestamp,
    /// End of the range (exclusive).
    pub to: Timestamp,
    /// When generated.
    pub generated_at: Timestamp,
    /// By whom.
    pub generated_by: String,
    /// The ledger's origin (log identity).
    pub origin: String,
    /// Counts of met / gap / attest.
    pub summary: std::collections::BTreeMap<String, u64>,
    /// 10.1.1 … 10.7.3.
    pub requirements: Vec<Requirement>,
}

/// What the report is made from.
pub struct Inputs<'a> {
    /// The range, ns.
    pub from: i64,
    /// End, ns (exclusive).
    pub to: i64,
    /// The ledger over the whole range, summarized like a review.
    pub totals: &'a Review,
    /// The reviews stored (all; the report picks those in range).
    pub reviews: &'a [ReviewRow],
    /// Control-failure incidents (all; the report picks those overlapping the range).
    pub incidents: &'a [Incident],
    /// `check` results of the configuration files given.
    pub checks: &'a [FileReport],
    /// Verification now.
    pub verification: &'a Verification,
    /// Ledger facts: origin, created, size, pruned ranges (newest record time of each, policy).
    pub ledger: LedgerFacts,
    /// Server facts, when the report is made by `serve` or with its config.
    pub server: Option<ServerFacts>,
    /// Who.
    pub generated_by: String,
    /// Now.
    pub now: i64,
}

/// What the ledger says about itself.
#[derive(Clone, Debug, Default)]
pub struct LedgerFacts {
    /// Origin.
    pub origin: String,
    /// When the data directory was created.
    pub created: i64,
    /// Records in the tree.
    pub size: u64,
    /// (first index, last index, newest receive time, prune time, policy) of each prune.
    pub prunes: Vec<(u64, u64, i64, i64, String)>,
    /// Anchor receipts and backup receipts in the ledger.
    pub anchor_receipts: u64,
    /// Backup receipts.
    pub backup_receipts: u64,
    /// API tokens by role.
    pub tokens_by_role: Vec<(String, u64)>,
}

/// What the server configuration says.
#[derive(Clone, Debug, Default)]
pub struct ServerFacts {
    /// Detection on.
    pub detection: bool,
    /// Alert routes configured.
    pub routes: usize,
    /// Sinks configured (names).
    pub sinks: Vec<String>,
    /// Background verification interval, ns (0 = off).
    pub verify_interval_ns: i64,
    /// Periodic reviews configured.
    pub periodic_reviews: Vec<String>,
}

fn req(
    id: &str,
    title: &str,
    status: Status,
    reason: impl Into<String>,
    evidence: Vec<Evidence>,
) -> Requirement {
    Requirement {
        id: id.into(),
        title: title.into(),
        status,
        reason: reason.into(),
        evidence,
    }
}

fn findings_for<'a>(checks: &'a [FileReport], id: &str) -> Vec<&'a crate::check::Finding> {
    checks
        .iter()
        .flat_map(|r| r.findings.iter())
        .filter(|f| f.requirement == id || f.requirement.starts_with(&format!("{id}.")))
        .collect()
}

fn finding_evidence(fs: &[&crate::check::Finding]) -> Vec<Evidence> {
    fs.iter()
        .map(|f| Evidence {
            text: format!(
                "check {} ({}): {} — fix: {}",
                f.id,
                f.severity.as_str(),
                f.title,
                f.fix
            ),
            query: None,
            refs: vec![match f.line {
                Some(l) => format!("file:{}:{l}", f.file),
                None => format!("file:{}", f.file),
            }],
        })
        .collect()
}

/// Build the report.
pub fn build(i: &Inputs<'_>) -> Report {
    let t = i.totals;
    let events: u64 = t.events_by_source.values().sum();
    let range = format!("{} to {}", Timestamp(i.from), Timestamp(i.to));
    let kql_range = format!(
        "TimeGenerated >= datetime({}) and TimeGenerated < datetime({})",
        Timestamp(i.from),
        Timestamp(i.to)
    );
    let mut out = Vec::new();

    // 10.1
    out.push(req("10.1.1", "Policies and procedures for Requirement 10 are documented, current, in use and known", Status::Attest,
        "documents and interviews: only a person can attest them", vec![ev("trailwarden's own procedures: docs/compliance.md (reviews, incidents, check, report) and docs/alerting.md")]));
    let mut roles = vec![ev("every API caller authenticates (no anonymous access); roles ingest < viewer < analyst < reviewer < admin")];
    if !i.ledger.tokens_by_role.is_empty() {
        roles.push(ev(format!(
            "API tokens by role: {}",
            i.ledger
                .tokens_by_role
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    out.push(req(
        "10.1.2",
        "Roles and responsibilities for Requirement 10 are assigned and understood",
        Status::Attest,
        "the assignment of people to roles is attested by a person; the roles that exist are shown",
        roles,
    ));

    // 10.2.1 and its categories
    let f = findings_for(i.checks, "10.2.1");
    let serious: Vec<_> = f
        .iter()
        .filter(|x| x.severity != crate::check::Severity::Low)
        .copied()
        .collect();
    let mut e = vec![evq(format!("{events} events stored in {range} from {} source(s): {}", t.events_by_source.len(),
        t.events_by_source.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join("; ")),
        &format!("union AKSAudit, AzureActivity, Syslog | where {kql_range} | summarize count() by SourceSystem"))];
    e.extend(finding_evidence(&f));
    let exact: Vec<_> = serious
        .iter()
        .filter(|x| x.requirement == "10.2.1")
        .collect();
    out.push(if events == 0 {
        req(
            "10.2.1",
            "Audit logs are enabled and active for all system components",
            Status::Gap,
            "no events in the range",
            e,
        )
    } else if !exact.is_empty() {
        req(
            "10.2.1",
            "Audit logs are enabled and active for all system components",
            Status::Gap,
            "the logging configuration leaves components or requests out (check findings)",
            e,
        )
    } else {
        req(
            "10.2.1",
            "Audit logs are enabled and active for all system components",
            Status::Met,
            "events arrive from every source listed; no check finding against 10.2.1",
            e,
        )
    });
    for c in &t.categories {
        let f = findings_for(i.checks, &c.requirement);
        let bad: Vec<_> = f
            .iter()
            .filter(|x| x.severity != crate::check::Severity::Low)
            .collect();
        let mut e = vec![evq(
            format!(
                "{} events classified {} ({}) in {range}; per source: {}",
                c.total,
                c.requirement,
                c.title,
                if c.by_source.is_empty() {
                    "none".into()
                } else {
                    c.by_source
                        .iter()
                        .map(|(s, n)| format!("{s}: {n}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            ),
            &format!(
                "AKSAudit | where {kql_range} and array_index_of(PciCategories, '{}') >= 0 | count",
                c.requirement
            ),
        )];
        if c.requirement == "10.2.1.3" {
            e.push(evq(format!("{} reads of audit data through trailwarden recorded, {} refused requests recorded", t.audit_log_access.reads, t.audit_log_access.refused),
                "TrailwardenAccess | summarize count() by Outcome"));
        }
        if c.requirement == "10.2.1.6" && !t.lifecycle.is_empty() {
            e.push(ev(format!(
                "the trail's own lifecycle records: {}",
                t.lifecycle
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        e.extend(finding_evidence(&f));
        let (status, reason) = if !bad.is_empty() {
            (
                Status::Gap,
                "the logging configuration does not capture all of it (check findings)".to_string(),
            )
        } else if c.total > 0
            || (c.requirement == "10.2.1.3" && t.audit_log_access.reads > 0)
            || (c.requirement == "10.2.1.6" && !t.lifecycle.is_empty())
        {
            (
                Status::Met,
                "events of this category are logged".to_string(),
            )
        } else {
            (
                Status::Attest,
                "no event of this category in the range: a person confirms none occurred"
                    .to_string(),
            )
        };
        out.push(req(&c.requirement, &c.title, status, reason, e));
    }
    // 10.2.2
    let mut missing = Vec::new();
    let mut e = Vec::new();
    for (name, n) in &t.fields_present {
        let share = if events == 0 {
            0.0
        } else {
            *n as f64 * 100.0 / events as f64
        };
        e.push(ev(format!(
            "{name}: present in {n} of {events} events ({share:.2} %)"
        )));
        if events > 0 && share < 99.0 {
            missing.push(name.clone());
        }
    }
    e.extend(finding_evidence(&findings_for(i.checks, "10.2.2")));
    out.push(if events == 0 {
        req(
            "10.2.2",
            "Each record has user, event type, date/time, outcome, origin and affected resource",
            Status::Gap,
            "no events in the range",
            e,
        )
    } else if !missing.is_empty() || !findings_for(i.checks, "10.2.2").is_empty() {
        req(
            "10.2.2",
            "Each record has user, event type, date/time, outcome, origin and affected resource",
            Status::Gap,
            format!(
                "fields missing in more than 1 % of events: {}",
                missing.join(", ")
            ),
            e,
        )
    } else {
        req(
            "10.2.2",
            "Each record has user, event type, date/time, outcome, origin and affected resource",
            Status::Met,
            "every field present in at least 99 % of events",
            e,
        )
    });

    // 10.3
    let f = findings_for(i.checks, "10.3.1");
    let mut e = vec![
        ev("reads require authentication; every read of audit data (query, proof, export, review, report) is recorded in the ledger with who, what and from where"),
        evq(format!("{} refused requests recorded in the range", t.audit_log_access.refused), "TrailwardenAccess | where Outcome in ('forbidden', 'unauthenticated')"),
    ];
    e.extend(finding_evidence(&f));
    out.push(req(
        "10.3.1",
        "Read access to audit logs is limited to those with a job-related need",
        if f.is_empty() {
            Status::Met
        } else {
            Status::Gap
        },
        if f.is_empty() {
            "role-based access; who may read is the roles given (10.1.2)"
        } else {
            "check findings"
        },
        e,
    ));
    let v = i.verification;
    let mut e = vec![ev(format!(
        "verification {}: {} records hashed, tree size {}{}",
        v.status,
        v.records_checked,
        v.size,
        v.first_failure
            .as_deref()
            .map(|f| format!("; first failure: {f}"))
            .unwrap_or_default()
    ))];
    if let Some(c) = &v.checkpoint {
        e.push(ev(format!("signed checkpoint covered:\n{c}")));
    }
    e.extend(finding_evidence(&findings_for(i.checks, "10.3.2")));
    out.push(req(
        "10.3.2",
        "Audit log files are protected against modification",
        if v.status == "failed" {
            Status::Gap
        } else {
            Status::Met
        },
        if v.status == "failed" {
            "the ledger failed verification"
        } else {
            "append-only Merkle tree with signed checkpoints; verified now"
        },
        e,
    ));
    let backups = i.ledger.anchor_receipts + i.ledger.backup_receipts;
    let f = findings_for(i.checks, "10.3.3");
    let mut e = vec![ev(format!(
        "{} anchor receipts and {} backup receipts in the ledger",
        i.ledger.anchor_receipts, i.ledger.backup_receipts
    ))];
    e.extend(finding_evidence(&f));
    out.push(if backups == 0 || !f.is_empty() {
        req("10.3.3", "Audit logs are promptly backed up to a secure central store that is hard to modify", Status::Gap,
            if backups == 0 { "no checkpoint anchor and no backup receipt: configure --anchor-dir (write-once storage) or object-storage backup" } else { "check findings" }, e)
    } else {
        req("10.3.3", "Audit logs are promptly backed up to a secure central store that is hard to modify", Status::Met, "checkpoints are published to separate storage", e)
    });
    let mut e = vec![ev(format!(
        "verification recomputes every record's hash and every signed root: {}",
        v.status
    ))];
    let mut status = if v.status == "failed" {
        Status::Gap
    } else {
        Status::Met
    };
    let mut reason = "changed or removed records are detected by verification, whose failure is a control-failure alert".to_string();
    if let Some(sf) = &i.server {
        e.push(ev(if sf.verify_interval_ns == 0 {
            "background verification is off".to_string()
        } else {
            format!(
                "serve verifies the whole ledger every {} minutes",
                sf.verify_interval_ns / 60_000_000_000
            )
        }));
        if sf.verify_interval_ns == 0 || sf.verify_interval_ns > DAY {
            status = Status::Gap;
            reason = "background verification is off or runs less than daily".into();
        }
    }
    e.extend(finding_evidence(&findings_for(i.checks, "10.3.4")));
    out.push(req("10.3.4", "File-integrity monitoring or change detection: existing log data cannot be changed without an alert", status, reason, e));

    // 10.4
    let in_range: Vec<&ReviewRow> = i
        .reviews
        .iter()
        .filter(|r| r.period_start.0 >= i.from && r.period_end.0 <= i.to)
        .collect();
    let mut days = BTreeSet::new();
    let mut d = i.from;
    while d + DAY <= i.to && d + DAY <= i.now {
        days.insert(d);
        d += DAY;
    }
    let daily: Vec<&&ReviewRow> = in_range.iter().filter(|r| r.kind == "daily").collect();
    let reviewed: BTreeSet<i64> = daily.iter().map(|r| r.period_start.0).collect();
    let missing_days: Vec<String> = days
        .iter()
        .filter(|d| !reviewed.contains(d))
        .map(|d| Timestamp(*d).to_string()[..10].to_string())
        .collect();
    let unsigned: Vec<String> = daily
        .iter()
        .filter(|r| r.sign_off.is_none())
        .map(|r| r.id.clone())
        .collect();
    let mut e: Vec<Evidence> = daily
        .iter()
        .map(|r| Evidence {
            text: match &r.sign_off {
                Some(s) => format!(
                    "{}: {} exception(s), signed off by {} at {} — {}",
                    r.id, r.exceptions, s.reviewer, s.at, s.note
                ),
                None => format!("{}: {} exception(s), NOT signed off", r.id, r.exceptions),
            },
            query: None,
            refs: {
                let mut v = vec![
                    format!("review:{}", r.id),
                    format!("ledger:{}", r.ledger_index),
                ];
                if let Some(s) = &r.sign_off {
                    v.push(format!("ledger:{}", s.ledger_index));
                }
                v
            },
        })
        .collect();
    if !missing_days.is_empty() {
        e.push(ev(format!(
            "days without a review: {}",
            missing_days.join(", ")
        )));
    }
    out.push(
        if missing_days.is_empty() && unsigned.is_empty() && !days.is_empty() {
            req(
                "10.4.1",
                "Audit logs are reviewed at least once daily",
                Status::Met,
                format!("{} daily reviews, each signed off", daily.len()),
                e,
            )
        } else if days.is_empty() {
            req(
                "10.4.1",
                "Audit logs are reviewed at least once daily",
                Status::Attest,
                "the range holds no whole day yet",
                e,
            )
        } else {
            req(
                "10.4.1",
                "Audit logs are reviewed at least once daily",
                Status::Gap,
                format!(
                    "{} day(s) without a review, {} review(s) not signed off{}",
                    missing_days.len(),
                    unsigned.len(),
                    if unsigned.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", unsigned.join(", "))
                    }
                ),
                e,
            )
        },
    );
    let auto = daily
        .iter()
        .filter(|r| r.generated_by == "trailwarden serve")
        .count();
    let mut e = vec![ev(format!(
        "{auto} of {} daily reviews generated by serve itself",
        daily.len()
    ))];
    let (mut status, mut reason) = if auto > 0 {
        (
            Status::Met,
            "reviews are generated automatically; detection rules run on every event",
        )
    } else {
        (
            Status::Gap,
            "no review was generated automatically in the range",
        )
    };
    if let Some(sf) = &i.server {
        e.push(ev(format!(
            "detection {}",
            if sf.detection { "on" } else { "OFF" }
        )));
        if !sf.detection {
            status = Status::Gap;
            reason = "detection is off";
        }
    }
    e.extend(finding_evidence(&findings_for(i.checks, "10.4.1.1")));
    out.push(req(
        "10.4.1.1",
        "Automated mechanisms perform audit log reviews",
        status,
        reason,
        e,
    ));
    let periodic: Vec<&&ReviewRow> = in_range.iter().filter(|r| r.kind != "daily").collect();
    let configured = i
        .server
        .as_ref()
        .map(|s| s.periodic_reviews.clone())
        .unwrap_or_default();
    out.push(req("10.4.2", "Logs of all other system components are reviewed periodically",
        if periodic.is_empty() { Status::Attest } else { Status::Met },
        if periodic.is_empty() { "no periodic review in the range: configure [[review.periodic]] or attest how other logs are reviewed" } else { "periodic reviews exist" },
        {
            let mut v: Vec<Evidence> = periodic.iter().map(|r| ev(format!("{}: {}", r.id, r.sign_off.as_ref().map_or("not signed off".to_string(), |s| format!("signed off by {}", s.reviewer))))).collect();
            if !configured.is_empty() {
                v.push(ev(format!("configured: {}", configured.join(", "))));
            }
            v
        }));
    out.push(req(
        "10.4.2.1",
        "The frequency of periodic reviews is set by a targeted risk analysis",
        Status::Attest,
        "the risk analysis (12.3.1) is a document a person attests",
        vec![ev(
            "frequencies configured in [[review.periodic]] (days per period)",
        )],
    ));
    let exc_overdue = t
        .exceptions
        .iter()
        .filter(|x| x.kind == "overdue-alert")
        .count();
    let mut e = vec![
        evq(
            format!(
                "alerts raised in the range: {}; resolved: {}; open at its end: {}",
                t.alerts.raised.values().sum::<u64>(),
                t.alerts.resolved.values().sum::<u64>(),
                t.alerts.open_at_end.values().sum::<u64>()
            ),
            "TrailwardenAlerts | summarize count() by Level, Status",
        ),
        ev("resolving an alert needs a note; every change is a ledger record with who and when"),
    ];
    for x in t.exceptions.iter().filter(|x| x.kind == "overdue-alert") {
        e.push(Evidence {
            text: x.title.clone(),
            query: None,
            refs: x.refs.clone(),
        });
    }
    out.push(req(
        "10.4.3",
        "Exceptions and anomalies found in reviews are addressed",
        if exc_overdue == 0 {
            Status::Met
        } else {
            Status::Gap
        },
        if exc_overdue == 0 {
            "no alert past its SLA at the end of the range".to_string()
        } else {
            format!("{exc_overdue} alert(s) open past their SLA")
        },
        e,
    ));

    // 10.5.1
    let young: Vec<&(u64, u64, i64, i64, String)> = i
        .ledger
        .prunes
        .iter()
        .filter(|p| p.3 - p.2 < 365 * DAY)
        .collect();
    let age_days = (i.now - i.ledger.created) / DAY;
    let mut e = vec![ev(format!("ledger {} created {} ({age_days} days ago), {} records; everything not pruned is immediately queryable", i.ledger.origin, Timestamp(i.ledger.created), i.ledger.size))];
    for p in &i.ledger.prunes {
        e.push(ev(format!(
            "pruned records {}–{} (newest from {}) at {} under policy {}",
            p.0,
            p.1,
            Timestamp(p.2),
            Timestamp(p.3),
            p.4
        )));
    }
    e.extend(finding_evidence(&findings_for(i.checks, "10.5.1")));
    out.push(if !young.is_empty() || !findings_for(i.checks, "10.5.1").iter().all(|f| f.severity == crate::check::Severity::Low) {
        req("10.5.1", "Audit log history is kept at least 12 months, the last 3 months immediately available", Status::Gap,
            if young.is_empty() { "check findings" } else { "records younger than 12 months were pruned" }, e)
    } else {
        req("10.5.1", "Audit log history is kept at least 12 months, the last 3 months immediately available", Status::Met,
            if age_days < 365 { "nothing was pruned; the ledger is younger than 12 months, so all of its history is kept and immediately available" } else { "nothing younger than 12 months was pruned; all of it is immediately available" }, e)
    });

    // 10.6
    let worst = t
        .clock_skew
        .iter()
        .map(|h| h.p99_ms.abs())
        .max()
        .unwrap_or(0);
    let skewed: Vec<&crate::review::Exception> = t
        .exceptions
        .iter()
        .filter(|x| x.kind == "clock-skew")
        .collect();
    let mut e = vec![ev(format!("clock skew between event and receive time of live sources: worst hourly p99 {worst} ms over {} source-hours", t.clock_skew.len()))];
    for x in &skewed {
        e.push(ev(x.title.clone()));
    }
    out.push(req("10.6.1", "System clocks are synchronized using time-synchronization technology", if skewed.is_empty() { Status::Attest } else { Status::Gap },
        if skewed.is_empty() { "NTP/chrony configuration of the systems is attested by a person; the skew measured is within the threshold" } else { "sources with clock skew past the threshold" }, e));
    out.push(req("10.6.2", "Systems are configured to the correct and consistent time", Status::Attest,
        "designated time servers and their sources are configuration of other systems, attested by a person", vec![ev("the skew measured per source is in 10.6.1")]));
    let mut e = vec![ev("time-change detection rules (auditd adjtimex/settimeofday/clock_settime, /etc/localtime) run on every event")];
    for tc in &t.time_changes {
        e.push(ev(tc.clone()));
    }
    out.push(req("10.6.3", "Time settings are protected; changes to them are logged, monitored and reviewed", Status::Met,
        format!("{} time-change event(s) in the range, each raised as an alert and listed in the daily review", t.time_changes.len()), e));

    // 10.7
    let inc: Vec<&Incident> = i
        .incidents
        .iter()
        .filter(|x| x.start.0 < i.to && x.end.is_none_or(|e| e.0 >= i.from))
        .collect();
    let open: Vec<&&Incident> = inc.iter().filter(|x| x.state == "open").collect();
    let mut e: Vec<Evidence> = inc
        .iter()
        .map(|x| Evidence {
            text: format!(
                "{} {}{}: {} → {} ({} s){}; cause: {}",
                x.state,
                x.control,
                x.subject
                    .as_deref()
                    .map(|s| format!(" / {s}"))
                    .unwrap_or_default(),
                x.start,
                x.end.map_or("(open)".into(), |e| e.to_string()),
                x.duration_seconds,
                x.remediation
                    .as_deref()
                    .map(|r| format!("; remediation: {r}"))
                    .unwrap_or_default(),
                x.cause
            ),
            query: None,
            refs: vec![format!("alert:{}", x.id)],
        })
        .collect();
    let mut e2 = e.clone();
    let (st, why) = match &i.server {
        Some(sf) if sf.routes == 0 => (Status::Gap, "failures raise alerts, but no alert route sends them to anyone".to_string()),
        Some(sf) => (Status::Met, format!("failures of the logging, review and delivery controls raise alerts routed to {}", sf.sinks.join(", "))),
        None => (Status::Met, "failures of the logging, review and delivery controls raise control-failure alerts (routing not known to this report)".to_string()),
    };
    e.insert(
        0,
        ev(format!(
            "{} control-failure incident(s) in the range",
            inc.len()
        )),
    );
    e.extend(finding_evidence(&findings_for(i.checks, "10.7.2")));
    out.push(req("10.7.1", "(Service providers; superseded by 10.7.2) failures of critical security control systems are detected, alerted and addressed promptly", st, why.clone(), e.clone()));
    out.push(req("10.7.2", "Failures of critical security control systems are detected, alerted and addressed promptly", if findings_for(i.checks, "10.7.2").is_empty() { st } else { Status::Gap }, why, e));
    e2.insert(0, ev("each incident is documented with start, end, duration, cause and remediation; every change is a ledger record"));
    out.push(req(
        "10.7.3",
        "Failures are responded to promptly, documented with duration, cause and remediation",
        if open.is_empty() {
            Status::Met
        } else {
            Status::Gap
        },
        if open.is_empty() {
            format!(
                "{} incident(s), all closed with their remediation",
                inc.len()
            )
        } else {
            format!("{} incident(s) still open", open.len())
        },
        e2,
    ));

    let mut summary = std::collections::BTreeMap::new();
    for r in &out {
        *summary
            .entry(
                serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            )
            .or_insert(0u64) += 1;
    }
    Report {
        report: "pci-dss-4.0.1-requirement-10".into(),
        from: Timestamp(i.from),
        to: Timestamp(i.to),
        generated_at: Timestamp(i.now),
        generated_by: i.generated_by.clone(),
        origin: i.ledger.origin.clone(),
        summary,
        requirements: out,
    }
}

/// The report as one printable HTML page.
pub fn html(r: &Report, hash: &str, ledger_index: Option<u64>) -> String {
    use crate::render::{esc, STYLE};
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = write!(o, "<!doctype html><html lang=en><head><meta charset=utf-8><title>PCI DSS Requirement 10 evidence</title><style>{STYLE}</style></head><body>\n\
        <h1>PCI DSS 4.0.1 Requirement 10 — evidence report</h1>\n<p class=meta>{} to {} · ledger {} · generated {} by {}</p>\n",
        r.from, r.to, esc(&r.origin), r.generated_at, esc(&r.generated_by));
    let _ = write!(
        o,
        "<div class=box><div>report.json hash: <code>{}</code></div>",
        esc(hash)
    );
    if let Some(i) = ledger_index {
        let _ = write!(o, "<div>recorded as ledger record <code>{i}</code>; verify offline: <code>sha256sum report.json</code> and <code>trailwarden verify-proof report.tlog-proof --public-key …</code></div>");
    }
    let _ = writeln!(
        o,
        "<div>{}</div></div>",
        r.summary
            .iter()
            .map(|(k, n)| format!("<span class={k}>{n} {k}</span>"))
            .collect::<Vec<_>>()
            .join(" · ")
    );
    o.push_str("<table><tr><th>requirement</th><th>status</th><th>why</th></tr>\n");
    for q in &r.requirements {
        let st = serde_json::to_value(q.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(o, "<tr><td><a href=\"#r{id}\">{id}</a> {t}</td><td class={st}>{st}</td><td>{why}</td></tr>", id = esc(&q.id), t = esc(&q.title), why = esc(&q.reason));
    }
    o.push_str("</table>\n");
    for q in &r.requirements {
        let st = serde_json::to_value(q.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "<h2 id=\"r{id}\">{id} — {t} <span class={st}>[{st}]</span></h2>\n<p>{why}</p>\n<ul>",
            id = esc(&q.id),
            t = esc(&q.title),
            why = esc(&q.reason)
        );
        for e in &q.evidence {
            let _ = write!(o, "<li>{}", esc(&e.text).replace('\n', "<br>"));
            if let Some(k) = &e.query {
                let _ = write!(o, "<br><code>{}</code>", esc(k));
            }
            if !e.refs.is_empty() {
                let _ = write!(o, " <span class=meta>({})</span>", esc(&e.refs.join(", ")));
            }
            o.push_str("</li>\n");
        }
        o.push_str("</ul>\n");
    }
    o.push_str("</body></html>\n");
    o
}

/// Ledger facts: identity, size, prunes, receipts (one pass over the ledger's internal records).
pub fn ledger_facts(
    data_dir: &std::path::Path,
    tokens_by_role: Vec<(String, u64)>,
) -> Result<LedgerFacts, crate::ComplianceError> {
    use trailwarden_ledger::reader::LedgerReader;
    use trailwarden_model::RecordKind;
    let r = LedgerReader::open(data_dir, None).map_err(crate::ComplianceError::ledger)?;
    let size = r.size().map_err(crate::ComplianceError::ledger)?;
    let mut f = LedgerFacts {
        origin: r.identity.origin.clone(),
        created: r.identity.created.0,
        size,
        tokens_by_role,
        ..LedgerFacts::default()
    };
    r.for_each(0, size, |rec| {
        match rec.kind {
            RecordKind::AnchorReceipt => f.anchor_receipts += 1,
            RecordKind::BackupReceipt => f.backup_receipts += 1,
            RecordKind::Retention => {
                if let Ok(trailwarden_ledger::record::Retention::Prune {
                    first,
                    last,
                    newest_received,
                    policy,
                    ..
                }) = serde_json::from_slice(&rec.raw)
                {
                    f.prunes
                        .push((first, last, newest_received.0, rec.received.0, policy));
                }
            }
            _ => {}
        }
        Ok(true)
    })
    .map_err(crate::ComplianceError::ledger)?;
    Ok(f)
}

/// Everything the report needs from the data directory, then [`build`]: the whole range
/// summarized like a review with `review`'s settings (SLAs, thresholds; it verifies the
/// ledger), the reviews, the incidents, the ledger's facts.
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    data_dir: &std::path::Path,
    from: i64,
    to: i64,
    checks: &[FileReport],
    server: Option<ServerFacts>,
    review: &crate::review::ReviewConfig,
    tokens_by_role: Vec<(String, u64)>,
    generated_by: &str,
    anchor_dir: Option<&std::path::Path>,
) -> Result<Report, crate::ComplianceError> {
    let cfg = review;
    let period = crate::review::Period {
        kind: "report".into(),
        label: Timestamp(from).to_string(),
        start: from,
        end: to,
    };
    let totals = crate::review::build(data_dir, &period, cfg, generated_by, anchor_dir)?;
    let reviews = crate::store::ReviewStore::open(data_dir)?.list()?;
    let now = Timestamp::now().0;
    let alerts_db = data_dir.join("alerts.db");
    let incidents = if alerts_db.exists() {
        let store = trailwarden_alert::AlertStore::open(&alerts_db)
            .map_err(|e| crate::ComplianceError::Ledger(format!("alert store: {e}")))?;
        let alerts = store
            .list(&trailwarden_alert::Filter::default())
            .map_err(|e| crate::ComplianceError::Ledger(format!("alert store: {e}")))?;
        crate::controls::incidents(&alerts, now)
    } else {
        Vec::new()
    };
    let ledger = ledger_facts(data_dir, tokens_by_role)?;
    Ok(build(&Inputs {
        from,
        to,
        totals: &totals,
        reviews: &reviews,
        incidents: &incidents,
        checks,
        verification: &totals.verification,
        ledger,
        server,
        generated_by: generated_by.to_string(),
        now,
    }))
}

/// The ledger record of a report: its hash and what it says.
pub fn record(r: &Report, hash: &str) -> serde_json::Value {
    serde_json::json!({
        "action": "report-generated", "report": r.report, "hash": hash,
        "from": r.from, "to": r.to, "summary": r.summary, "generated_by": r.generated_by,
    })
}

/// `sha256:<hex>` of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
