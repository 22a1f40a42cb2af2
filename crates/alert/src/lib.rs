//! # trailwarden-alert
//!
//! The alert store: what detections raised, deduplicated by rule and group key within a window,
//! and triaged through a recorded lifecycle (new → acknowledged → resolved or false positive,
//! each change with actor, time and note). It lives in `alerts.db` (SQLite) in the data
//! directory. The ledger stays the record of truth: every alert raised and every change is also
//! appended to the ledger as an `alert` record by the caller, so `alerts.db` can be rebuilt and
//! checked against it.
#![warn(missing_docs)]

pub mod outbox;
pub mod route;
mod summary;

pub use outbox::{AlertMessage, Delivery, DeliveryFilter, DeliveryState, Finish, SinkStatus};
pub use route::{Matcher, Route, Routing, Silence};
pub use summary::{group_key, summarize};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Evidence kept per alert; beyond it the count still grows and `evidence_truncated` is set.
pub const MAX_EVIDENCE: usize = 1000;

/// Errors of the alert store.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The database could not be opened or used.
    #[error("alert store {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// No alert has this id.
    #[error("no alert with id {0}")]
    NotFound(i64),
    /// The lifecycle does not allow this change.
    #[error("alert {id} is {from}; it cannot become {to}")]
    Transition {
        /// The alert.
        id: i64,
        /// Its status.
        from: Status,
        /// The status asked for.
        to: Status,
    },
    /// No delivery has this id.
    #[error("no delivery with id {0}")]
    NoDelivery(i64),
    /// No active silence has this id.
    #[error("no active silence with id {0}")]
    NoSilence(i64),
    /// The delivery cannot be retried in its state.
    #[error(
        "delivery {id} is {state}; only dead, delivered or silenced deliveries are queued again"
    )]
    DeliveryState {
        /// The delivery.
        id: i64,
        /// Its state.
        state: String,
    },
    /// A stored value could not be decoded.
    #[error("alert store {path}: alert {id}: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The alert.
        id: i64,
        /// What is wrong.
        message: String,
    },
}

/// Where an alert is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Raised, nobody has looked yet.
    New,
    /// Someone is on it.
    Acknowledged,
    /// Dealt with.
    Resolved,
    /// Not an incident (the note says why).
    FalsePositive,
}

impl Status {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
            Status::FalsePositive => "false-positive",
        }
    }

    /// The status with this name.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "new" => Status::New,
            "acknowledged" | "ack" => Status::Acknowledged,
            "resolved" => Status::Resolved,
            "false-positive" | "false_positive" | "fp" => Status::FalsePositive,
            _ => return None,
        })
    }

    /// Still needs attention (new or acknowledged).
    pub fn is_open(self) -> bool {
        matches!(self, Status::New | Status::Acknowledged)
    }

    /// May an alert in this status move to `to`?
    pub fn can_become(self, to: Status) -> bool {
        matches!(
            (self, to),
            (Status::New, Status::Acknowledged)
                | (Status::New, Status::Resolved)
                | (Status::New, Status::FalsePositive)
                | (Status::Acknowledged, Status::Resolved)
                | (Status::Acknowledged, Status::FalsePositive)
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a detection hands the store.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewAlert {
    /// The rule's id.
    pub rule_id: String,
    /// The rule's title.
    pub title: String,
    /// Sigma level: informational, low, medium, high, critical.
    pub level: String,
    /// The rule's tags (ATT&CK, PCI DSS).
    pub tags: Vec<String>,
    /// Deduplication key within the rule (correlation group, or who/what/where).
    pub group_key: String,
    /// Who did what to which resource from where.
    pub summary: String,
    /// Ledger indexes of the events.
    pub evidence: Vec<u64>,
    /// Time of the triggering event (ns).
    pub time: i64,
    /// Events counted by this detection.
    pub count: u64,
    /// Namespace of the triggering event (what routes match on).
    pub namespace: Option<String>,
    /// Source of the triggering event (`api:k8s-audit …`, `file:…`).
    pub source: Option<String>,
}

/// One change of status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// When (ns since the epoch).
    pub at: i64,
    /// Who.
    pub actor: String,
    /// From which status.
    pub from: Status,
    /// To which status.
    pub to: Status,
    /// Why.
    pub note: String,
}

/// A stored alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// Id (1, 2, …).
    pub id: i64,
    /// The rule's id.
    pub rule_id: String,
    /// The rule's title.
    pub title: String,
    /// Sigma level.
    pub level: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Lifecycle status.
    pub status: Status,
    /// Deduplication key.
    pub group_key: String,
    /// Human summary (of the first detection).
    pub summary: String,
    /// Ledger indexes of the events that raised it (up to [`MAX_EVIDENCE`]).
    pub evidence: Vec<u64>,
    /// True when more events counted than evidence kept.
    pub evidence_truncated: bool,
    /// Events counted over all merged detections.
    pub count: u64,
    /// Detections merged into it.
    pub detections: u64,
    /// Time of the first triggering event (ns).
    pub first_seen: i64,
    /// Time of the last triggering event (ns).
    pub last_seen: i64,
    /// When it was raised (ns, wall clock).
    pub created_at: i64,
    /// Version: 1 when raised, +1 at every change that was sent to the sinks.
    pub version: i64,
    /// Namespace of the triggering event.
    pub namespace: Option<String>,
    /// Source of the triggering event.
    pub source: Option<String>,
    /// Who follows it up (10.4.3).
    pub assignee: Option<String>,
    /// When it must be resolved: raised + the SLA of its level, or set on assignment (ns).
    pub due_at: Option<i64>,
    /// When its overdue escalation was raised (ns).
    pub escalated_at: Option<i64>,
    /// Status changes, oldest first.
    pub history: Vec<Change>,
}

/// What [`AlertStore::raise`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Raised {
    /// A new alert with this id.
    New(i64),
    /// Merged into the open alert with this id (same rule and group within the window).
    Merged(i64),
}

impl Raised {
    /// The alert's id.
    pub fn id(self) -> i64 {
        match self {
            Raised::New(i) | Raised::Merged(i) => i,
        }
    }
}

/// Which alerts to list.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only these statuses (empty = all).
    pub status: Vec<Status>,
    /// Only at least this level.
    pub min_level: Option<String>,
    /// Only this rule id.
    pub rule_id: Option<String>,
    /// Only alerts raised by events of this namespace.
    pub namespace: Option<String>,
    /// Only alerts assigned to this person (`-`: only unassigned ones).
    pub assignee: Option<String>,
    /// At most this many (newest first).
    pub limit: Option<usize>,
}

/// Rank of a Sigma level (unknown levels rank as medium).
pub fn level_rank(level: &str) -> u8 {
    match level {
        "informational" => 0,
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        _ => 2,
    }
}

/// id, evidence, last_seen, first_seen, evidence_truncated, level, notified_at of an open alert.
type OpenAlertRow = (i64, String, i64, i64, i64, String, Option<i64>);

/// The alert store.
pub struct AlertStore {
    conn: Connection,
    path: PathBuf,
    routing: Option<Routing>,
    sla: Option<std::collections::BTreeMap<String, i64>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    rule_id TEXT NOT NULL,
    title TEXT NOT NULL,
    level TEXT NOT NULL,
    tags TEXT NOT NULL,
    status TEXT NOT NULL,
    group_key TEXT NOT NULL,
    summary TEXT NOT NULL,
    evidence TEXT NOT NULL,
    evidence_truncated INTEGER NOT NULL DEFAULT 0,
    count INTEGER NOT NULL,
    detections INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_dedup ON alerts (rule_id, group_key, last_seen);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status);
CREATE TABLE IF NOT EXISTS changes (
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_alert ON changes (alert_id);
CREATE TABLE IF NOT EXISTS correlation_inputs (
    idx INTEGER PRIMARY KEY,
    time INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS correlation_inputs_time ON correlation_inputs (time);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

impl AlertStore {
    /// Open (creating) the store at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<AlertStore, AlertError> {
        let path = path.into();
        let db = |source| AlertError::Db {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(db)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(db)?;
        conn.busy_handler(Some(wait_for_lock)).map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        conn.execute_batch(outbox::SCHEMA).map_err(db)?;
        // columns added after the first release of the store
        let cols: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('alerts')")
            .and_then(|mut st| {
                st.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<_, _>>()
            })
            .map_err(db)?;
        for (col, def) in [
            ("version", "INTEGER NOT NULL DEFAULT 1"),
            ("namespace", "TEXT"),
            ("source", "TEXT"),
            ("notified_at", "INTEGER"),
            ("assignee", "TEXT"),
            ("due_at", "INTEGER"),
            ("escalated_at", "INTEGER"),
        ] {
            if !cols.iter().any(|c| c == col) {
                conn.execute_batch(&format!("ALTER TABLE alerts ADD COLUMN {col} {def}"))
                    .map_err(db)?;
            }
        }
        Ok(AlertStore {
            conn,
            path,
            routing: None,
            sla: None,
        })
    }

    /// Commit without waiting for the disk (`synchronous = NORMAL`; in WAL mode a crash of the
    /// process loses nothing, a power loss the last commits). For the delivery worker only:
    /// what it records (a claim, an attempt's outcome) is at-least-once already, and a lost
    /// outcome means the delivery is sent again. Alerts and their deliveries are always
    /// written by connections that wait for the disk.
    pub fn relax_durability(&self) -> Result<(), AlertError> {
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(self.db())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The error for a database failure (owns a copy of the path, so `self` stays free).
    fn db(&self) -> impl Fn(rusqlite::Error) -> AlertError + use<> {
        let path = self.path.clone();
        move |source| AlertError::Db {
            path: path.clone(),
            source,
        }
    }

    /// Store a detection: merged into the open alert of the same rule and group key whose last
    /// event is within `window_ns` of this one, else a new alert.
    pub fn raise(&mut self, a: &NewAlert, window_ns: i64, now: i64) -> Result<Raised, AlertError> {
        let db = self.db();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&db)?;
        let out = raise_in(
            &tx,
            self.routing.as_ref(),
            self.sla.as_ref(),
            a,
            window_ns,
            now,
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)?;
        Ok(out)
    }

    /// Store many detections, and what detection keeps beside them, in one transaction (one
    /// write lock, one fsync): each as [`Self::raise`] in order (a later one merges into an
    /// earlier one of the same rule and group key), then `batch`'s settings and correlation
    /// inputs. What detection found and how far it got stay consistent across a crash.
    pub fn raise_batch(
        &mut self,
        alerts: &[NewAlert],
        window_ns: i64,
        now: i64,
        batch: &Batch<'_>,
    ) -> Result<Vec<Raised>, AlertError> {
        let db = self.db();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&db)?;
        let mut out = Vec::with_capacity(alerts.len());
        for a in alerts {
            out.push(
                raise_in(
                    &tx,
                    self.routing.as_ref(),
                    self.sla.as_ref(),
                    a,
                    window_ns,
                    now,
                )
                .map_err(&db)?,
            );
        }
        for (k, v) in batch.meta {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![k, v],
            )
            .map_err(&db)?;
        }
        if let Some((inputs, keep_from)) = batch.inputs {
            note_inputs_in(&tx, inputs, keep_from).map_err(&db)?;
        }
        tx.commit().map_err(&db)?;
        Ok(out)
    }

    /// Alerts matching `f`, newest first.
    pub fn list(&self, f: &Filter) -> Result<Vec<Alert>, AlertError> {
        let db = self.db();
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM alerts ORDER BY last_seen DESC, id DESC")
            .map_err(&db)?;
        let ids: Vec<i64> = stmt
            .query_map([], |r| r.get(0))
            .map_err(&db)?
            .collect::<Result<_, _>>()
            .map_err(&db)?;
        let min = f.min_level.as_deref().map(level_rank);
        let mut out = Vec::new();
        for id in ids {
            let a = self.get(id)?;
            if (!f.status.is_empty() && !f.status.contains(&a.status))
                || min.is_some_and(|m| level_rank(&a.level) < m)
                || f.rule_id.as_ref().is_some_and(|r| *r != a.rule_id)
                || f.namespace
                    .as_ref()
                    .is_some_and(|n| a.namespace.as_ref() != Some(n))
                || f.assignee.as_ref().is_some_and(|who| match who.as_str() {
                    "-" => a.assignee.is_some(),
                    _ => a.assignee.as_ref() != Some(who),
                })
            {
                continue;
            }
            out.push(a);
            if f.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    /// Per rule: how many alerts it raised and when the newest was raised (ns), newest first.
    pub fn rule_activity(&self) -> Result<Vec<(String, u64, i64)>, AlertError> {
        let db = self.db();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT rule_id, COUNT(*), MAX(created_at) FROM alerts
                 GROUP BY rule_id ORDER BY MAX(created_at) DESC",
            )
            .map_err(&db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get(2)?,
                ))
            })
            .map_err(&db)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&db)?;
        Ok(rows)
    }

    /// One alert with its history.
    pub fn get(&self, id: i64) -> Result<Alert, AlertError> {
        let db = self.db();
        let row = self
            .conn
            .query_row(
                "SELECT rule_id, title, level, tags, status, group_key, summary, evidence,
                    evidence_truncated, count, detections, first_seen, last_seen, created_at,
                    version, namespace, source, assignee, due_at, escalated_at
                 FROM alerts WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        (
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?,
                        ),
                        (
                            r.get::<_, String>(7)?,
                            r.get::<_, i64>(8)?,
                            r.get::<_, i64>(9)?,
                            r.get::<_, i64>(10)?,
                            r.get::<_, i64>(11)?,
                            r.get::<_, i64>(12)?,
                            r.get::<_, i64>(13)?,
                        ),
                        (
                            r.get::<_, i64>(14)?,
                            r.get::<_, Option<String>>(15)?,
                            r.get::<_, Option<String>>(16)?,
                            r.get::<_, Option<String>>(17)?,
                            r.get::<_, Option<i64>>(18)?,
                            r.get::<_, Option<i64>>(19)?,
                        ),
                    ))
                },
            )
            .optional()
            .map_err(&db)?
            .ok_or(AlertError::NotFound(id))?;
        let ((rule_id, title, level, tags, status, group_key, summary), rest, more) = row;
        let (version, namespace, source, assignee, due_at, escalated_at) = more;
        let (evidence, truncated, count, detections, first_seen, last_seen, created_at) = rest;
        let corrupt = |message: String| AlertError::Corrupt {
            path: self.path.clone(),
            id,
            message,
        };
        let status =
            Status::parse(&status).ok_or_else(|| corrupt(format!("unknown status {status:?}")))?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at, actor, from_status, to_status, note FROM changes
                 WHERE alert_id = ?1 ORDER BY rowid",
            )
            .map_err(&db)?;
        let rows: Vec<(i64, String, String, String, String)> = stmt
            .query_map(params![id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(&db)?
            .collect::<Result<_, _>>()
            .map_err(&db)?;
        let mut history = Vec::new();
        for (at, actor, from, to, note) in rows {
            let parse = |s: &str| Status::parse(s).ok_or_else(|| corrupt(format!("status {s:?}")));
            history.push(Change {
                at,
                actor,
                from: parse(&from)?,
                to: parse(&to)?,
                note,
            });
        }
        Ok(Alert {
            id,
            rule_id,
            title,
            level,
            tags: serde_json::from_str(&tags).map_err(|e| corrupt(format!("tags: {e}")))?,
            status,
            group_key,
            summary,
            evidence: serde_json::from_str(&evidence)
                .map_err(|e| corrupt(format!("evidence: {e}")))?,
            evidence_truncated: truncated != 0,
            count: count.max(0) as u64,
            detections: detections.max(0) as u64,
            first_seen,
            last_seen,
            created_at,
            version,
            namespace,
            source,
            assignee,
            due_at,
            escalated_at,
            history,
        })
    }

    /// Check that alert `id` may move to `to`; returns the change that would be made. Nothing
    /// is written: the caller records the change in the ledger first, then [`Self::apply`]s it.
    pub fn prepare(
        &self,
        id: i64,
        to: Status,
        actor: &str,
        note: &str,
        at: i64,
    ) -> Result<Change, AlertError> {
        let a = self.get(id)?;
        if !a.status.can_become(to) {
            return Err(AlertError::Transition {
                id,
                from: a.status,
                to,
            });
        }
        Ok(Change {
            at,
            actor: actor.to_string(),
            from: a.status,
            to,
            note: note.to_string(),
        })
    }

    /// Apply a change made by [`Self::prepare`] (fails if the status moved meanwhile).
    pub fn apply(&mut self, id: i64, c: &Change) -> Result<(), AlertError> {
        let db = self.db();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&db)?;
        let n = tx
            .execute(
                "UPDATE alerts SET status = ?2, version = version + ?4, notified_at = ?5
                 WHERE id = ?1 AND status = ?3",
                params![
                    id,
                    c.to.as_str(),
                    c.from.as_str(),
                    i64::from(self.routing.is_some()),
                    c.at
                ],
            )
            .map_err(&db)?;
        if n == 0 {
            return Err(AlertError::Transition {
                id,
                from: c.from,
                to: c.to,
            });
        }
        tx.execute(
            "INSERT INTO changes (alert_id, at, actor, from_status, to_status, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, c.at, c.actor, c.from.as_str(), c.to.as_str(), c.note],
        )
        .map_err(&db)?;
        if let Some(routing) = &self.routing {
            let msg = outbox::snapshot(&tx, id, c.to.as_str(), Some(c)).map_err(&db)?;
            outbox::enqueue(&tx, routing, &msg, c.at).map_err(&db)?;
        }
        tx.commit().map_err(&db)
    }

    /// Counts of alerts per status.
    pub fn counts(&self) -> Result<Vec<(Status, u64)>, AlertError> {
        let db = self.db();
        let mut out = Vec::new();
        for s in [
            Status::New,
            Status::Acknowledged,
            Status::Resolved,
            Status::FalsePositive,
        ] {
            let n: i64 = self
                .conn
                .query_row(
                    "SELECT COUNT(*) FROM alerts WHERE status = ?1",
                    params![s.as_str()],
                    |r| r.get(0),
                )
                .map_err(&db)?;
            out.push((s, n.max(0) as u64));
        }
        Ok(out)
    }

    /// Remember that event `index` at `time` fed a correlation (its state is rebuilt from these
    /// after a restart), and forget inputs older than `keep_from`.
    pub fn note_correlation_inputs(
        &mut self,
        inputs: &[(u64, i64)],
        keep_from: i64,
    ) -> Result<(), AlertError> {
        let db = self.db();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&db)?;
        note_inputs_in(&tx, inputs, keep_from).map_err(&db)?;
        tx.commit().map_err(&db)
    }

    /// Ledger indexes of the correlation inputs at or after `from` (ns), in index order.
    pub fn correlation_inputs(&self, from: i64) -> Result<Vec<u64>, AlertError> {
        let db = self.db();
        let mut stmt = self
            .conn
            .prepare("SELECT idx FROM correlation_inputs WHERE time >= ?1 ORDER BY idx")
            .map_err(&db)?;
        let v: Vec<i64> = stmt
            .query_map(params![from], |r| r.get(0))
            .map_err(&db)?
            .collect::<Result<_, _>>()
            .map_err(&db)?;
        Ok(v.into_iter().map(|i| i.max(0) as u64).collect())
    }

    /// The latest correlation input time, if any.
    pub fn latest_correlation_input(&self) -> Result<Option<i64>, AlertError> {
        self.conn
            .query_row("SELECT MAX(time) FROM correlation_inputs", [], |r| r.get(0))
            .map_err(self.db())
    }

    /// Time to resolve a new alert, per level (ns): new alerts get `due_at` = raised + it.
    pub fn set_sla(&mut self, sla: Option<std::collections::BTreeMap<String, i64>>) {
        self.sla = sla;
    }

    /// Assign alert `id` to `assignee`, with a new due time if given (recorded in the ledger by
    /// the caller first).
    pub fn assign(
        &mut self,
        id: i64,
        assignee: &str,
        due_at: Option<i64>,
    ) -> Result<(), AlertError> {
        let n = self
            .conn
            .execute(
                "UPDATE alerts SET assignee = ?2, due_at = COALESCE(?3, due_at) WHERE id = ?1",
                params![id, assignee, due_at],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(AlertError::NotFound(id));
        }
        Ok(())
    }

    /// Open alerts past their due time and not escalated yet, as of `now`: the due time set on
    /// the alert, else raised + `sla` of its level (alerts raised offline have none set).
    /// trailwarden's own alerts (control failures, escalations) are not escalated.
    pub fn overdue(
        &self,
        now: i64,
        sla: &std::collections::BTreeMap<String, i64>,
    ) -> Result<Vec<Alert>, AlertError> {
        let db = self.db();
        let rows: Vec<(i64, String, i64, Option<i64>)> = self
            .conn
            .prepare(
                "SELECT id, level, created_at, due_at FROM alerts
                 WHERE status IN ('new', 'acknowledged') AND escalated_at IS NULL
                   AND rule_id NOT LIKE 'trailwarden-%'",
            )
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<Result<_, _>>()
            })
            .map_err(&db)?;
        rows.into_iter()
            .filter(|(_, level, created, due)| {
                due.or_else(|| sla.get(level).map(|d| created.saturating_add(*d)))
                    .is_some_and(|d| d < now)
            })
            .map(|(id, ..)| self.get(id))
            .collect()
    }

    /// Remember that alert `id`'s overdue escalation was raised.
    pub fn mark_escalated(&mut self, id: i64, at: i64) -> Result<(), AlertError> {
        self.conn
            .execute(
                "UPDATE alerts SET escalated_at = ?2 WHERE id = ?1",
                params![id, at],
            )
            .map(|_| ())
            .map_err(self.db())
    }

    /// Every status change of every alert, in the order made: (alert id, change).
    pub fn all_changes(&self) -> Result<Vec<(i64, Change)>, AlertError> {
        let db = self.db();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT alert_id, at, actor, from_status, to_status, note FROM changes ORDER BY rowid",
            )
            .map_err(&db)?;
        let rows: Vec<(i64, i64, String, String, String, String)> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(&db)?
            .collect::<Result<_, _>>()
            .map_err(&db)?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, at, actor, from, to, note) in rows {
            let parse = |s: &str| {
                Status::parse(s).ok_or_else(|| AlertError::Corrupt {
                    path: self.path.clone(),
                    id,
                    message: format!("status {s:?}"),
                })
            };
            out.push((
                id,
                Change {
                    at,
                    actor,
                    from: parse(&from)?,
                    to: parse(&to)?,
                    note,
                },
            ));
        }
        Ok(out)
    }

    /// A stored setting (the detection cursor, …).
    pub fn meta(&self, key: &str) -> Result<Option<String>, AlertError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.db())
    }

    /// Store a setting.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), AlertError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(self.db())
    }
}

/// Waiting for another connection's write lock: short sleeps (the writer thread and the
/// delivery worker hold it for a millisecond or two; SQLite's default handler backs off to
/// 100 ms sleeps, which stalls ingest and delays deliveries), given up after about 10 s.
fn wait_for_lock(tries: i32) -> bool {
    let ms = match tries {
        0..=49 => 1,
        50..=199 => 5,
        _ => 20,
    };
    std::thread::sleep(std::time::Duration::from_millis(ms));
    // 50 × 1 ms + 150 × 5 ms + 460 × 20 ms ≈ 10 s
    tries < 660
}

/// [`AlertStore::raise`] inside a transaction.
fn raise_in(
    tx: &rusqlite::Transaction<'_>,
    routing: Option<&Routing>,
    sla: Option<&std::collections::BTreeMap<String, i64>>,
    a: &NewAlert,
    window_ns: i64,
    now: i64,
) -> rusqlite::Result<Raised> {
    // prepared once per connection (the statement cache): a batch of detections runs these
    // thousands of times
    let existing: Option<OpenAlertRow> = tx
        .prepare_cached(
            "SELECT id, evidence, last_seen, first_seen, evidence_truncated, level, notified_at
             FROM alerts
             WHERE rule_id = ?1 AND group_key = ?2 AND status IN ('new', 'acknowledged')
               AND last_seen >= ?3 AND first_seen <= ?4
             ORDER BY last_seen DESC LIMIT 1",
        )?
        .query_row(
            params![
                a.rule_id,
                a.group_key,
                a.time.saturating_sub(window_ns),
                a.time.saturating_add(window_ns)
            ],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .optional()?;
    let out = match existing {
        Some((id, ev, last, first, truncated, level, notified_at)) => {
            let mut evidence: Vec<u64> = serde_json::from_str(&ev).unwrap_or_default();
            let mut truncated = truncated != 0;
            for e in &a.evidence {
                if !evidence.contains(e) {
                    if evidence.len() < MAX_EVIDENCE {
                        evidence.push(*e);
                    } else {
                        truncated = true;
                    }
                }
            }
            tx.prepare_cached(
                "UPDATE alerts SET evidence = ?2, evidence_truncated = ?3,
                    count = count + ?4, detections = detections + 1,
                    last_seen = ?5, first_seen = ?6 WHERE id = ?1",
            )?
            .execute(params![
                id,
                json(&evidence),
                truncated,
                a.count as i64,
                last.max(a.time),
                first.min(a.time)
            ])?;
            if let Some(routing) = routing {
                // sent again when the level rises, or when it went quiet and came back
                let escalated = level_rank(&a.level) > level_rank(&level);
                let quiet = routing.renotify_after_ns > 0
                    && notified_at.is_some_and(|t| now - t >= routing.renotify_after_ns);
                if escalated || quiet {
                    tx.execute(
                        "UPDATE alerts SET version = version + 1, notified_at = ?2,
                            level = CASE WHEN ?3 THEN ?4 ELSE level END WHERE id = ?1",
                        params![id, now, escalated, a.level],
                    )?;
                    let event = if escalated { "escalated" } else { "reraised" };
                    let msg = outbox::snapshot(tx, id, event, None)?;
                    outbox::enqueue(tx, routing, &msg, now)?;
                }
            }
            Raised::Merged(id)
        }
        None => {
            let mut evidence = a.evidence.clone();
            let truncated = evidence.len() > MAX_EVIDENCE;
            evidence.truncate(MAX_EVIDENCE);
            tx.prepare_cached(
                "INSERT INTO alerts (rule_id, title, level, tags, status, group_key, summary,
                    evidence, evidence_truncated, count, detections, first_seen, last_seen,
                    created_at, version, namespace, source, notified_at, due_at)
                 VALUES (?1, ?2, ?3, ?4, 'new', ?5, ?6, ?7, ?8, ?9, 1, ?10, ?10, ?11, 1, ?12,
                    ?13, ?11, ?14)",
            )?
            .execute(params![
                a.rule_id,
                a.title,
                a.level,
                json(&a.tags),
                a.group_key,
                a.summary,
                json(&evidence),
                truncated,
                a.count as i64,
                a.time,
                now,
                a.namespace,
                a.source,
                sla.and_then(|m| m.get(&a.level))
                    .map(|d| now.saturating_add(*d))
            ])?;
            let id = tx.last_insert_rowid();
            if let Some(routing) = routing {
                let msg = outbox::snapshot(tx, id, "raised", None)?;
                outbox::enqueue(tx, routing, &msg, now)?;
            }
            Raised::New(id)
        }
    };
    Ok(out)
}

/// [`AlertStore::note_correlation_inputs`] inside a transaction.
fn note_inputs_in(
    tx: &rusqlite::Transaction<'_>,
    inputs: &[(u64, i64)],
    keep_from: i64,
) -> rusqlite::Result<()> {
    let mut ins =
        tx.prepare_cached("INSERT OR IGNORE INTO correlation_inputs (idx, time) VALUES (?1, ?2)")?;
    for (i, t) in inputs {
        ins.execute(params![*i as i64, t])?;
    }
    tx.execute(
        "DELETE FROM correlation_inputs WHERE time < ?1",
        params![keep_from],
    )?;
    Ok(())
}

/// What [`AlertStore::raise_batch`] stores beside the alerts.
#[derive(Default)]
pub struct Batch<'a> {
    /// Settings (`meta` table) to set.
    pub meta: &'a [(&'a str, String)],
    /// Correlation inputs (ledger index, event time) to keep, and the time before which
    /// inputs are forgotten.
    pub inputs: Option<(&'a [(u64, i64)], i64)>,
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}
