//! The durable outbox: one delivery per (alert change, sink), written in the same SQLite
//! transaction as the change itself, so a change can never be made without its notifications
//! being queued, and a crash at any moment loses nothing (a delivery that was being sent is sent
//! again after a restart: at-least-once, with a stable idempotency key receivers dedupe on).

use crate::route::{Matcher, RouteInput, Routing, Silence};
use crate::{AlertError, AlertStore};
use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    event TEXT NOT NULL,
    sink TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    queued_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    delivered_at INTEGER,
    last_error TEXT,
    silenced_by INTEGER,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, sink, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_alert ON deliveries (alert_id, sink);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY,
    matcher TEXT NOT NULL,
    author TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    expired_by TEXT
);
CREATE TABLE IF NOT EXISTS sink_status (
    sink TEXT PRIMARY KEY,
    last_success INTEGER,
    last_failure INTEGER,
    last_error TEXT
);
";

/// Where a delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// Waiting to be sent (or being sent, under a lease).
    Pending,
    /// The sink took it.
    Delivered,
    /// Given up after the maximum attempts or age, or refused for good by the sink.
    Dead,
    /// Held back by a silence (never sent).
    Silenced,
}

impl DeliveryState {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
            DeliveryState::Silenced => "silenced",
        }
    }

    /// The state with this name.
    pub fn parse(s: &str) -> Option<DeliveryState> {
        Some(match s {
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "dead" => DeliveryState::Dead,
            "silenced" => DeliveryState::Silenced,
            _ => return None,
        })
    }
}

/// What is sent: the alert as it was at the change (a snapshot, so a retry an hour later sends
/// what happened, not what the alert became since).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertMessage {
    /// Idempotency key: `tw-alert-<id>-v<version>` (`tw-test-<delivery>` for test messages).
    pub key: String,
    /// The change: raised, reraised, escalated, acknowledged, resolved, false-positive, test.
    pub event: String,
    /// Alert id (0 for a test message).
    pub alert_id: i64,
    /// Alert version (1 when raised, +1 at every change that is sent).
    pub version: i64,
    /// The rule's id.
    pub rule_id: String,
    /// The rule's title.
    pub title: String,
    /// Sigma level.
    pub level: String,
    /// Tags (ATT&CK, PCI DSS).
    pub tags: Vec<String>,
    /// Lifecycle status after the change.
    pub status: String,
    /// Who did what to which resource from where.
    pub summary: String,
    /// Deduplication key.
    pub group_key: String,
    /// Namespace of the triggering event.
    pub namespace: Option<String>,
    /// Source of the triggering event.
    pub source: Option<String>,
    /// Ledger indexes of the evidence.
    pub evidence: Vec<u64>,
    /// More events counted than evidence kept.
    pub evidence_truncated: bool,
    /// Events counted.
    pub count: u64,
    /// First triggering event (ns).
    pub first_seen: i64,
    /// Last triggering event (ns).
    pub last_seen: i64,
    /// When the alert was raised (ns).
    pub created_at: i64,
    /// Who made the change (lifecycle changes).
    pub actor: Option<String>,
    /// Their note.
    pub note: Option<String>,
}

impl AlertMessage {
    /// Is the alert still open (firing) after this change?
    pub fn firing(&self) -> bool {
        matches!(self.status.as_str(), "new" | "acknowledged")
    }

    /// The fields routes and silences look at.
    pub fn route_input(&self) -> RouteInput<'_> {
        RouteInput {
            rule_id: &self.rule_id,
            level: &self.level,
            tags: &self.tags,
            namespace: self.namespace.as_deref(),
            source: self.source.as_deref(),
        }
    }
}

/// One queued notification.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delivery {
    /// Id.
    pub id: i64,
    /// The alert.
    pub alert_id: i64,
    /// The alert's version this delivery carries.
    pub version: i64,
    /// The change.
    pub event: String,
    /// The sink's name.
    pub sink: String,
    /// State.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// Queued (ns).
    pub created_at: i64,
    /// Queued, or queued again by a retry (ns): what the maximum age counts from.
    pub queued_at: i64,
    /// Next attempt (ns).
    pub next_attempt_at: i64,
    /// Delivered (ns).
    pub delivered_at: Option<i64>,
    /// The last failure.
    pub last_error: Option<String>,
    /// The silence that held it back.
    pub silenced_by: Option<i64>,
    /// What is sent.
    pub message: AlertMessage,
}

/// How one attempt ended, for [`AlertStore::finish`].
#[derive(Clone, Debug, PartialEq)]
pub enum Finish {
    /// The sink took it.
    Delivered,
    /// Try again at `at` (ns).
    Retry {
        /// When.
        at: i64,
        /// What went wrong.
        error: String,
    },
    /// Give up: dead letter.
    Dead {
        /// What went wrong.
        error: String,
    },
}

/// Which deliveries to list.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    /// Only this state.
    pub state: Option<DeliveryState>,
    /// Only this sink.
    pub sink: Option<String>,
    /// Only this alert.
    pub alert_id: Option<i64>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// The outbox of one sink, at a glance.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SinkStatus {
    /// The sink.
    pub sink: String,
    /// Deliveries waiting.
    pub pending: u64,
    /// Deliveries dead-lettered.
    pub dead: u64,
    /// Deliveries delivered.
    pub delivered: u64,
    /// Deliveries silenced.
    pub silenced: u64,
    /// Queue time of the oldest waiting delivery (ns).
    pub oldest_pending: Option<i64>,
    /// Last successful delivery (ns).
    pub last_success: Option<i64>,
    /// Last failed attempt (ns) and its error.
    pub last_failure: Option<i64>,
    /// The last error.
    pub last_error: Option<String>,
}

const DELIVERY_COLS: &str = "id, alert_id, version, event, sink, state, attempts, created_at,
    next_attempt_at, delivered_at, last_error, silenced_by, payload, queued_at";

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Delivery, String)> {
    let state: String = r.get(5)?;
    Ok((
        Delivery {
            id: r.get(0)?,
            alert_id: r.get(1)?,
            version: r.get(2)?,
            event: r.get(3)?,
            sink: r.get(4)?,
            state: DeliveryState::parse(&state).unwrap_or(DeliveryState::Dead),
            attempts: r.get::<_, i64>(6)?.clamp(0, u32::MAX as i64) as u32,
            created_at: r.get(7)?,
            next_attempt_at: r.get(8)?,
            delivered_at: r.get(9)?,
            last_error: r.get(10)?,
            silenced_by: r.get(11)?,
            queued_at: r.get(13)?,
            message: AlertMessage {
                key: String::new(),
                event: String::new(),
                alert_id: 0,
                version: 0,
                rule_id: String::new(),
                title: String::new(),
                level: String::new(),
                tags: Vec::new(),
                status: String::new(),
                summary: String::new(),
                group_key: String::new(),
                namespace: None,
                source: None,
                evidence: Vec::new(),
                evidence_truncated: false,
                count: 0,
                first_seen: 0,
                last_seen: 0,
                created_at: 0,
                actor: None,
                note: None,
            },
        },
        r.get(12)?,
    ))
}

/// The snapshot of alert `id` inside a transaction.
pub(crate) fn snapshot(
    tx: &Transaction<'_>,
    id: i64,
    event: &str,
    change: Option<&crate::Change>,
) -> rusqlite::Result<AlertMessage> {
    tx.query_row(
        "SELECT rule_id, title, level, tags, status, summary, group_key, namespace, source,
            evidence, evidence_truncated, count, first_seen, last_seen, created_at, version
         FROM alerts WHERE id = ?1",
        params![id],
        |r| {
            let version: i64 = r.get(15)?;
            Ok(AlertMessage {
                key: format!("tw-alert-{id}-v{version}"),
                event: event.to_string(),
                alert_id: id,
                version,
                rule_id: r.get(0)?,
                title: r.get(1)?,
                level: r.get(2)?,
                tags: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                status: r.get(4)?,
                summary: r.get(5)?,
                group_key: r.get(6)?,
                namespace: r.get(7)?,
                source: r.get(8)?,
                evidence: serde_json::from_str(&r.get::<_, String>(9)?).unwrap_or_default(),
                evidence_truncated: r.get::<_, i64>(10)? != 0,
                count: r.get::<_, i64>(11)?.max(0) as u64,
                first_seen: r.get(12)?,
                last_seen: r.get(13)?,
                created_at: r.get(14)?,
                actor: change.map(|c| c.actor.clone()),
                note: change.map(|c| c.note.clone()),
            })
        },
    )
}

/// Silences in force at `now`.
fn active_silences(tx: &Transaction<'_>, now: i64) -> rusqlite::Result<Vec<(i64, Matcher)>> {
    let mut st = tx.prepare_cached(
        "SELECT id, matcher FROM silences WHERE ends_at > ?1 AND expired_by IS NULL",
    )?;
    let rows = st.query_map(params![now], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, m) = row?;
        if let Ok(m) = serde_json::from_str::<Matcher>(&m) {
            out.push((id, m));
        }
    }
    Ok(out)
}

/// Queue `msg` for every sink its routes name (inside the change's transaction). Returns how
/// many deliveries were queued.
pub(crate) fn enqueue(
    tx: &Transaction<'_>,
    routing: &Routing,
    msg: &AlertMessage,
    now: i64,
) -> rusqlite::Result<usize> {
    // a delivery failure is never routed back to the sink that failed
    let exclude = (msg.rule_id == "trailwarden-control-delivery")
        .then(|| msg.group_key.strip_prefix("control|delivery|"))
        .flatten();
    let sinks = routing.sinks(&msg.route_input(), &msg.event, exclude);
    if sinks.is_empty() {
        return Ok(0);
    }
    let silences = active_silences(tx, now)?;
    let silenced_by = silences
        .iter()
        .find(|(_, m)| m.matches(&msg.route_input()))
        .map(|(id, _)| *id);
    let payload = serde_json::to_string(msg).unwrap_or_default();
    let state = if silenced_by.is_some() {
        DeliveryState::Silenced
    } else {
        DeliveryState::Pending
    };
    let mut ins = tx.prepare_cached(
        "INSERT INTO deliveries (alert_id, version, event, sink, state, created_at, queued_at,
            next_attempt_at, silenced_by, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6, ?7, ?8)",
    )?;
    for s in &sinks {
        ins.execute(params![
            msg.alert_id,
            msg.version,
            msg.event,
            s,
            state.as_str(),
            now,
            silenced_by,
            payload
        ])?;
    }
    Ok(sinks.len())
}

impl AlertStore {
    /// Route alert changes into the outbox from now on (`None`: no deliveries, as in the
    /// offline CLI).
    pub fn set_routing(&mut self, routing: Option<Routing>) {
        self.routing = routing;
    }

    /// The routing in use.
    pub fn routing(&self) -> Option<&Routing> {
        self.routing.as_ref()
    }

    /// Queue a test message for `sink` (`trailwarden alerting test`). Returns the delivery id.
    pub fn enqueue_test(&mut self, sink: &str, now: i64) -> Result<i64, AlertError> {
        let db = self.db();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&db)?;
        let next: i64 = tx
            .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM deliveries", [], |r| {
                r.get(0)
            })
            .map_err(&db)?;
        let msg = AlertMessage {
            key: format!("tw-test-{next}"),
            event: "test".into(),
            alert_id: 0,
            version: next,
            rule_id: "trailwarden-test".into(),
            title: "trailwarden test alert".into(),
            level: "informational".into(),
            tags: vec![],
            status: "resolved".into(),
            summary: format!(
                "a test message sent by `trailwarden alerting test --sink {sink}`: if you read this, delivery to {sink} works"
            ),
            group_key: "test".into(),
            namespace: None,
            source: None,
            evidence: vec![],
            evidence_truncated: false,
            count: 0,
            first_seen: now,
            last_seen: now,
            created_at: now,
            actor: None,
            note: None,
        };
        tx.execute(
            "INSERT INTO deliveries (id, alert_id, version, event, sink, state, created_at,
                queued_at, next_attempt_at, payload)
             VALUES (?1, 0, ?1, 'test', ?2, 'pending', ?3, ?3, ?3, ?4)",
            params![
                next,
                sink,
                now,
                serde_json::to_string(&msg).unwrap_or_default()
            ],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)?;
        Ok(next)
    }

    /// Take up to `limit` due deliveries of `sink` for sending: each gets a lease until
    /// `now + lease_ns` (so no one else sends it meanwhile) and its attempt is counted first
    /// (a crash mid-send still counts the attempt).
    pub fn claim(
        &mut self,
        sink: &str,
        now: i64,
        limit: usize,
        lease_ns: i64,
    ) -> Result<Vec<Delivery>, AlertError> {
        let db = self.db();
        // the cheap read first: no write lock while there is nothing to send
        let due: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT id FROM deliveries WHERE state = 'pending' AND sink = ?1
                   AND next_attempt_at <= ?2 AND (lease_until IS NULL OR lease_until < ?2) LIMIT 1",
            )
            .and_then(|mut st| st.query_row(params![sink, now], |r| r.get(0)).optional())
            .map_err(&db)?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&db)?;
        let mut out = Vec::new();
        {
            let mut st = tx
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLS} FROM deliveries
                     WHERE state = 'pending' AND sink = ?1 AND next_attempt_at <= ?2
                       AND (lease_until IS NULL OR lease_until < ?2)
                     ORDER BY next_attempt_at, id LIMIT ?3"
                ))
                .map_err(&db)?;
            let rows = st
                .query_map(params![sink, now, limit as i64], delivery_row)
                .map_err(&db)?;
            for r in rows {
                out.push(with_message(r.map_err(&db)?));
            }
            let mut up = tx
                .prepare_cached(
                    "UPDATE deliveries SET lease_until = ?2, attempts = attempts + 1 WHERE id = ?1",
                )
                .map_err(&db)?;
            for d in &mut out {
                up.execute(params![d.id, now.saturating_add(lease_ns)])
                    .map_err(&db)?;
                d.attempts += 1;
            }
        }
        tx.commit().map_err(&db)?;
        Ok(out)
    }

    /// Forget every lease (at start: whatever the previous process was sending is sent again).
    pub fn release_leases(&mut self) -> Result<usize, AlertError> {
        self.conn
            .execute(
                "UPDATE deliveries SET lease_until = NULL WHERE state = 'pending' AND lease_until IS NOT NULL",
                [],
            )
            .map_err(self.db())
    }

    /// The sink took delivery `id`.
    pub fn mark_delivered(&mut self, id: i64, sink: &str, now: i64) -> Result<(), AlertError> {
        self.finish(sink, now, &[(id, Finish::Delivered)])
    }

    /// Delivery `id` failed: try again at `next_at`, or (`None`) give up (dead letter).
    pub fn mark_failed(
        &mut self,
        id: i64,
        sink: &str,
        now: i64,
        error: &str,
        next_at: Option<i64>,
    ) -> Result<(), AlertError> {
        let f = match next_at {
            Some(at) => Finish::Retry {
                at,
                error: error.into(),
            },
            None => Finish::Dead {
                error: error.into(),
            },
        };
        self.finish(sink, now, &[(id, f)])
    }

    /// Record how a claim's attempts ended, in one transaction.
    pub fn finish(
        &mut self,
        sink: &str,
        now: i64,
        results: &[(i64, Finish)],
    ) -> Result<(), AlertError> {
        let db = self.db();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&db)?;
        let (mut ok, mut failed) = (false, None);
        {
            let mut done = tx
                .prepare_cached(
                    "UPDATE deliveries SET state = 'delivered', delivered_at = ?2, lease_until = NULL
                     WHERE id = ?1",
                )
                .map_err(&db)?;
            let mut retry = tx
                .prepare_cached(
                    "UPDATE deliveries SET next_attempt_at = ?2, last_error = ?3, lease_until = NULL
                     WHERE id = ?1",
                )
                .map_err(&db)?;
            let mut dead = tx
                .prepare_cached(
                    "UPDATE deliveries SET state = 'dead', last_error = ?2, lease_until = NULL
                     WHERE id = ?1",
                )
                .map_err(&db)?;
            for (id, f) in results {
                match f {
                    Finish::Delivered => {
                        ok = true;
                        done.execute(params![id, now]).map_err(&db)?;
                    }
                    Finish::Retry { at, error } => {
                        failed = Some(error.clone());
                        retry.execute(params![id, at, error]).map_err(&db)?;
                    }
                    Finish::Dead { error } => {
                        failed = Some(error.clone());
                        dead.execute(params![id, error]).map_err(&db)?;
                    }
                }
            }
        }
        if ok {
            tx.execute(
                "INSERT INTO sink_status (sink, last_success) VALUES (?1, ?2)
                 ON CONFLICT(sink) DO UPDATE SET last_success = excluded.last_success",
                params![sink, now],
            )
            .map_err(&db)?;
        }
        if let Some(error) = failed {
            tx.execute(
                "INSERT INTO sink_status (sink, last_failure, last_error) VALUES (?1, ?2, ?3)
                 ON CONFLICT(sink) DO UPDATE SET last_failure = excluded.last_failure,
                    last_error = excluded.last_error",
                params![sink, now, error],
            )
            .map_err(&db)?;
        }
        tx.commit().map_err(&db)
    }

    /// Queue a dead (or delivered) delivery again (`POST /v1/deliveries/{id}/retry`): pending,
    /// attempts and age start over.
    pub fn retry_delivery(&mut self, id: i64, now: i64) -> Result<Delivery, AlertError> {
        let db = self.db();
        let n = self
            .conn
            .execute(
                "UPDATE deliveries SET state = 'pending', attempts = 0, queued_at = ?2,
                    next_attempt_at = ?2, lease_until = NULL
                 WHERE id = ?1 AND state IN ('dead', 'delivered', 'silenced')",
                params![id, now],
            )
            .map_err(&db)?;
        let d = self.delivery(id)?;
        if n == 0 {
            return Err(AlertError::DeliveryState {
                id,
                state: d.state.as_str().into(),
            });
        }
        Ok(d)
    }

    /// One delivery.
    pub fn delivery(&self, id: i64) -> Result<Delivery, AlertError> {
        let db = self.db();
        let r = self
            .conn
            .query_row(
                &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ?1"),
                params![id],
                delivery_row,
            )
            .optional()
            .map_err(&db)?
            .ok_or(AlertError::NoDelivery(id))?;
        Ok(with_message(r))
    }

    /// Deliveries matching `f`, newest first.
    pub fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<Delivery>, AlertError> {
        let db = self.db();
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {DELIVERY_COLS} FROM deliveries
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR sink = ?2)
                   AND (?3 IS NULL OR alert_id = ?3)
                 ORDER BY id DESC LIMIT ?4"
            ))
            .map_err(&db)?;
        let rows = st
            .query_map(
                params![
                    f.state.map(|s| s.as_str()),
                    f.sink,
                    f.alert_id,
                    f.limit.map_or(-1, |l| l as i64)
                ],
                delivery_row,
            )
            .map_err(&db)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(with_message(r.map_err(&db)?));
        }
        Ok(out)
    }

    /// Per sink: waiting, dead, delivered, the oldest waiting, the last success and failure.
    pub fn sink_status(&self) -> Result<Vec<SinkStatus>, AlertError> {
        let db = self.db();
        let mut map: std::collections::BTreeMap<String, SinkStatus> = Default::default();
        let mut st = self
            .conn
            .prepare(
                "SELECT sink, state, COUNT(*), MIN(queued_at) FROM deliveries GROUP BY sink, state",
            )
            .map_err(&db)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            })
            .map_err(&db)?;
        for r in rows {
            let (sink, state, n, oldest) = r.map_err(&db)?;
            let s = map.entry(sink.clone()).or_insert_with(|| SinkStatus {
                sink,
                ..SinkStatus::default()
            });
            let n = n.max(0) as u64;
            match state.as_str() {
                "pending" => {
                    s.pending = n;
                    s.oldest_pending = oldest;
                }
                "dead" => s.dead = n,
                "delivered" => s.delivered = n,
                _ => s.silenced = n,
            }
        }
        let mut st = self
            .conn
            .prepare("SELECT sink, last_success, last_failure, last_error FROM sink_status")
            .map_err(&db)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(&db)?;
        for r in rows {
            let (sink, ok, fail, err) = r.map_err(&db)?;
            let s = map.entry(sink.clone()).or_insert_with(|| SinkStatus {
                sink,
                ..SinkStatus::default()
            });
            s.last_success = ok;
            s.last_failure = fail;
            s.last_error = err;
        }
        Ok(map.into_values().collect())
    }

    /// Open alerts that were delivered to `sink` (Alertmanager keeps them firing only while
    /// they are re-sent), as messages carrying their latest delivered version.
    pub fn firing_on(&self, sink: &str) -> Result<Vec<AlertMessage>, AlertError> {
        let db = self.db();
        let mut st = self
            .conn
            .prepare(
                "SELECT d.payload FROM deliveries d JOIN alerts a ON a.id = d.alert_id
                 WHERE d.sink = ?1 AND d.state = 'delivered'
                   AND a.status IN ('new', 'acknowledged')
                   AND d.id = (SELECT MAX(id) FROM deliveries d2
                               WHERE d2.alert_id = d.alert_id AND d2.sink = d.sink
                                 AND d2.state = 'delivered')",
            )
            .map_err(&db)?;
        let rows = st
            .query_map(params![sink], |r| r.get::<_, String>(0))
            .map_err(&db)?;
        let mut out = Vec::new();
        for r in rows {
            if let Ok(m) = serde_json::from_str::<AlertMessage>(&r.map_err(&db)?) {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Add a silence (the caller has recorded it in the ledger first).
    pub fn add_silence(
        &mut self,
        matcher: &Matcher,
        author: &str,
        reason: &str,
        now: i64,
        ends_at: i64,
    ) -> Result<Silence, AlertError> {
        let db = self.db();
        self.conn
            .execute(
                "INSERT INTO silences (matcher, author, reason, created_at, ends_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    serde_json::to_string(matcher).unwrap_or_default(),
                    author,
                    reason,
                    now,
                    ends_at
                ],
            )
            .map_err(&db)?;
        Ok(Silence {
            id: self.conn.last_insert_rowid(),
            matcher: matcher.clone(),
            author: author.into(),
            reason: reason.into(),
            created_at: now,
            ends_at,
            expired_by: None,
        })
    }

    /// End silence `id` now (the caller has recorded it in the ledger first).
    pub fn expire_silence(&mut self, id: i64, by: &str, now: i64) -> Result<(), AlertError> {
        let n = self
            .conn
            .execute(
                "UPDATE silences SET expired_by = ?2, ends_at = MIN(ends_at, ?3)
                 WHERE id = ?1 AND expired_by IS NULL",
                params![id, by, now],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(AlertError::NoSilence(id));
        }
        Ok(())
    }

    /// Every silence, newest first.
    pub fn silences(&self) -> Result<Vec<Silence>, AlertError> {
        let db = self.db();
        let mut st = self
            .conn
            .prepare(
                "SELECT id, matcher, author, reason, created_at, ends_at, expired_by
                 FROM silences ORDER BY id DESC",
            )
            .map_err(&db)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(&db)?;
        let mut out = Vec::new();
        for r in rows {
            let (id, m, author, reason, created_at, ends_at, expired_by) = r.map_err(&db)?;
            out.push(Silence {
                id,
                matcher: serde_json::from_str(&m).unwrap_or_default(),
                author,
                reason,
                created_at,
                ends_at,
                expired_by,
            });
        }
        Ok(out)
    }
}

fn with_message((mut d, payload): (Delivery, String)) -> Delivery {
    match serde_json::from_str::<AlertMessage>(&payload) {
        Ok(m) => d.message = m,
        Err(e) => {
            d.message.key = format!("tw-alert-{}-v{}", d.alert_id, d.version);
            d.message.summary = format!("stored payload unreadable: {e}");
        }
    }
    d
}
