//! `compliance.db` (SQLite, in the data directory): the reviews and their sign-offs. The ledger
//! stays the record of truth — every review's hash and every sign-off is a ledger record
//! (`alert` kind, actions `review-generated` / `review-signed`), written *before* the row here.

use crate::review::Review;
use crate::ComplianceError;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use trailwarden_model::Timestamp;

/// A sign-off: who, when, with what note, and its ledger record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOff {
    /// The reviewer.
    pub reviewer: String,
    /// When.
    pub at: Timestamp,
    /// What they say (findings followed up, tickets).
    pub note: String,
    /// The `review-signed` ledger record.
    pub ledger_index: u64,
}

/// A stored review, without its body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRow {
    /// `<kind>-<date>`.
    pub id: String,
    /// `daily` or a periodic kind.
    pub kind: String,
    /// Start of the period.
    pub period_start: Timestamp,
    /// End of the period (exclusive).
    pub period_end: Timestamp,
    /// `sha256:…` of the body.
    pub hash: String,
    /// When generated.
    pub generated_at: Timestamp,
    /// By whom.
    pub generated_by: String,
    /// The `review-generated` ledger record.
    pub ledger_index: u64,
    /// Exceptions listed.
    pub exceptions: u64,
    /// The sign-off, once made.
    pub sign_off: Option<SignOff>,
}

/// The store.
pub struct ReviewStore {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reviews (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    hash TEXT NOT NULL,
    body TEXT NOT NULL,
    generated_at INTEGER NOT NULL,
    generated_by TEXT NOT NULL,
    ledger_index INTEGER NOT NULL,
    exceptions INTEGER NOT NULL,
    signed_by TEXT,
    signed_at INTEGER,
    sign_note TEXT,
    sign_index INTEGER
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

const COLS: &str = "id, kind, period_start, period_end, hash, generated_at, generated_by, \
                    ledger_index, exceptions, signed_by, signed_at, sign_note, sign_index";

type Row = (
    (String, String, i64, i64, String, i64, String),
    (
        i64,
        i64,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<i64>,
    ),
);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
        ),
        (
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
            r.get(10)?,
            r.get(11)?,
            r.get(12)?,
        ),
    ))
}

fn to_row(r: Row) -> ReviewRow {
    let ((id, kind, start, end, hash, generated_at, generated_by), rest) = r;
    let (ledger_index, exceptions, signed_by, signed_at, note, sign_index) = rest;
    let sign_off = match (signed_by, signed_at, sign_index) {
        (Some(reviewer), Some(at), Some(i)) => Some(SignOff {
            reviewer,
            at: Timestamp(at),
            note: note.unwrap_or_default(),
            ledger_index: i.max(0) as u64,
        }),
        _ => None,
    };
    ReviewRow {
        id,
        kind,
        period_start: Timestamp(start),
        period_end: Timestamp(end),
        hash,
        generated_at: Timestamp(generated_at),
        generated_by,
        ledger_index: ledger_index.max(0) as u64,
        exceptions: exceptions.max(0) as u64,
        sign_off,
    }
}

impl ReviewStore {
    /// Open (creating) `compliance.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<ReviewStore, ComplianceError> {
        let path = data_dir.join("compliance.db");
        let db = |source| ComplianceError::Db {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(db)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;",
        )
        .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(ReviewStore { conn, path })
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> ComplianceError + use<> {
        let path = self.path.clone();
        move |source| ComplianceError::Db {
            path: path.clone(),
            source,
        }
    }

    /// Whether review `id` exists, and whether it is signed.
    pub fn state(&self, id: &str) -> Result<Option<bool>, ComplianceError> {
        self.conn
            .query_row(
                "SELECT signed_by IS NOT NULL FROM reviews WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db())
    }

    /// Check that `r` may be stored (a signed review is never replaced; an unsigned one only
    /// with `replace`).
    pub fn check_insert(&self, id: &str, replace: bool) -> Result<(), ComplianceError> {
        match self.state(id)? {
            Some(true) => Err(ComplianceError::ReviewState {
                id: id.into(),
                why: "it is signed off; a signed review is never replaced".into(),
            }),
            Some(false) if !replace => Err(ComplianceError::ReviewState {
                id: id.into(),
                why: "it exists already (generate it again with --replace while it is unsigned)"
                    .into(),
            }),
            _ => Ok(()),
        }
    }

    /// Store a review whose `review-generated` record is ledger record `ledger_index`.
    pub fn insert(&mut self, r: &Review, ledger_index: u64) -> Result<(), ComplianceError> {
        let body = serde_json::to_string(r).map_err(|e| ComplianceError::Config(e.to_string()))?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO reviews (id, kind, period_start, period_end, hash, body,
                    generated_at, generated_by, ledger_index, exceptions)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    r.id,
                    r.period.kind,
                    r.period.start,
                    r.period.end,
                    r.hash(),
                    body,
                    r.generated_at.0,
                    r.generated_by,
                    ledger_index as i64,
                    r.exceptions.len() as i64
                ],
            )
            .map(|_| ())
            .map_err(self.db())
    }

    /// Every review, newest period first.
    pub fn list(&self) -> Result<Vec<ReviewRow>, ComplianceError> {
        let db = self.db();
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {COLS} FROM reviews ORDER BY period_start DESC, id"
            ))
            .map_err(&db)?;
        let rows: Vec<Row> = st
            .query_map([], row)
            .map_err(&db)?
            .collect::<Result<_, _>>()
            .map_err(&db)?;
        Ok(rows.into_iter().map(to_row).collect())
    }

    /// One review with its body; the body's hash is checked against the stored one.
    pub fn get(&self, id: &str) -> Result<(ReviewRow, Review), ComplianceError> {
        let db = self.db();
        let (r, body): (Row, String) = self
            .conn
            .query_row(
                &format!("SELECT {COLS}, body FROM reviews WHERE id = ?1"),
                params![id],
                |x| Ok((row(x)?, x.get(13)?)),
            )
            .optional()
            .map_err(&db)?
            .ok_or_else(|| ComplianceError::NoReview(id.into()))?;
        let row = to_row(r);
        let review: Review =
            serde_json::from_str(&body).map_err(|e| ComplianceError::ReviewState {
                id: id.into(),
                why: format!("stored body unreadable: {e}"),
            })?;
        if review.hash() != row.hash {
            return Err(ComplianceError::ReviewState {
                id: id.into(),
                why: format!(
                    "stored body hashes to {}, not {} as recorded: compliance.db was altered (the ledger record {} holds the original hash)",
                    review.hash(),
                    row.hash,
                    row.ledger_index
                ),
            });
        }
        Ok((row, review))
    }

    /// Check that `id` may be signed off by `reviewer` with `note`; returns the review's row.
    pub fn check_sign_off(&self, id: &str, note: &str) -> Result<ReviewRow, ComplianceError> {
        let (row, _) = self.get(id)?;
        if let Some(s) = &row.sign_off {
            return Err(ComplianceError::ReviewState {
                id: id.into(),
                why: format!("already signed off by {} at {}", s.reviewer, s.at),
            });
        }
        if note.trim().is_empty() {
            return Err(ComplianceError::ReviewState {
                id: id.into(),
                why: "a sign-off needs a note (what was looked at, what is followed up where)"
                    .into(),
            });
        }
        Ok(row)
    }

    /// Record the sign-off (its ledger record is already written).
    pub fn sign_off(&mut self, id: &str, s: &SignOff) -> Result<(), ComplianceError> {
        let n = self
            .conn
            .execute(
                "UPDATE reviews SET signed_by = ?2, signed_at = ?3, sign_note = ?4, sign_index = ?5
                 WHERE id = ?1 AND signed_by IS NULL",
                params![id, s.reviewer, s.at.0, s.note, s.ledger_index as i64],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(ComplianceError::ReviewState {
                id: id.into(),
                why: "not found unsigned".into(),
            });
        }
        Ok(())
    }

    /// A stored setting.
    pub fn meta(&self, key: &str) -> Result<Option<String>, ComplianceError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.db())
    }

    /// Store a setting.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), ComplianceError> {
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

/// The ledger record of a generated review.
pub fn generated_record(r: &Review) -> serde_json::Value {
    serde_json::json!({
        "action": "review-generated", "review_id": r.id, "kind": r.period.kind,
        "period_start": Timestamp(r.period.start), "period_end": Timestamp(r.period.end),
        "hash": r.hash(), "exceptions": r.exceptions.len(), "generated_by": r.generated_by,
    })
}

/// The ledger record of a sign-off: binds the review's hash, the reviewer and the note.
pub fn signed_record(
    id: &str,
    hash: &str,
    reviewer: &str,
    note: &str,
    at: Timestamp,
) -> serde_json::Value {
    serde_json::json!({
        "action": "review-signed", "review_id": id, "hash": hash,
        "reviewer": reviewer, "note": note, "at": at,
    })
}

/// The spool through which the CLI hands a review record to a running `serve` (the ledger is
/// its then): one JSON record per line, appended under a file lock and fsynced.
pub fn spool_path(data_dir: &Path) -> PathBuf {
    data_dir.join("review.spool")
}

/// Actions a spooled record may have.
const SPOOLED: [&str; 2] = ["review-generated", "review-signed"];

/// Hand `record` to the running writer (see [`drain_spool`]).
pub fn spool(data_dir: &Path, record: &serde_json::Value) -> Result<(), ComplianceError> {
    use std::io::Write;
    let p = spool_path(data_dir);
    let io = |source| ComplianceError::Io {
        path: p.clone(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .map_err(io)?;
    f.lock().map_err(io)?;
    let mut line =
        serde_json::to_vec(record).map_err(|e| ComplianceError::Config(e.to_string()))?;
    line.push(b'\n');
    f.write_all(&line).map_err(io)?;
    f.sync_data().map_err(io)
}

/// Take what is spooled (the file is emptied): each line is a review record, or — anything
/// else — a `spool-refused` record holding the line, so nothing is dropped silently.
pub fn drain_spool(data_dir: &Path) -> Result<Vec<serde_json::Value>, ComplianceError> {
    let p = spool_path(data_dir);
    let io = |source| ComplianceError::Io {
        path: p.clone(),
        source,
    };
    let mut f = match std::fs::OpenOptions::new().read(true).write(true).open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    f.lock().map_err(io)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut f, &mut text).map_err(io)?;
    let out = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) if v["action"].as_str().is_some_and(|a| SPOOLED.contains(&a)) => v,
            _ => serde_json::json!({"action": "spool-refused", "spool": "review.spool", "line": l}),
        })
        .collect();
    f.set_len(0).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(out)
}

/// Wait (up to `timeout`) until a ledger record at or after index `from` satisfies `found`;
/// its index.
pub fn wait_for_record(
    data_dir: &Path,
    from: u64,
    timeout: std::time::Duration,
    found: impl Fn(&serde_json::Value) -> bool,
) -> Result<Option<u64>, ComplianceError> {
    let deadline = std::time::Instant::now() + timeout;
    let mut next = from;
    loop {
        let r = trailwarden_ledger::reader::LedgerReader::open(data_dir, None)
            .map_err(ComplianceError::ledger)?;
        let size = r.size().map_err(ComplianceError::ledger)?;
        let mut hit = None;
        r.for_each(next, size, |rec| {
            if rec.kind == trailwarden_model::RecordKind::Alert {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&rec.raw) {
                    if found(&v) {
                        hit = Some(rec.index);
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })
        .map_err(ComplianceError::ledger)?;
        if hit.is_some() {
            return Ok(hit);
        }
        next = size;
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
