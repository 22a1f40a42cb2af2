//! End-to-end query tests: ledgers built from fixture files, KQL and SQL run against them.

#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::sync::Arc;
use trailwarden_ledger::{Ledger, Options};
use trailwarden_model::Timestamp;
use trailwarden_parse::ingest::{Ingestor, Options as IngestOptions};
use trailwarden_query::{Engine, QueryOptions, QueryOutput};

fn tmp(name: &str) -> PathBuf {
    let d = trailwarden_model::scratch::dir("tw-query", name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(rel)
}

/// A ledger holding `files`, received at `received`.
fn ledger(name: &str, files: &[PathBuf], received: Timestamp, seal_bytes: u64) -> PathBuf {
    let d = tmp(name);
    let opts = Options {
        origin: Some("test.example/query".into()),
        seal_bytes,
        extractor: Some(Arc::new(|f, raw: &[u8], t| {
            trailwarden_parse::reparse(f, raw, t)
        })),
        ..Options::default()
    };
    let (mut l, _) = Ledger::open(&d, opts).unwrap();
    {
        let mut sink = |rec: trailwarden_model::Record| -> Result<(), String> {
            l.append(&rec).map(|_| ()).map_err(|e| e.to_string())
        };
        let mut ing =
            Ingestor::new(IngestOptions::default(), &mut sink).with_clock(move || received);
        for f in files {
            ing.ingest_path(&f.to_string_lossy(), &mut |_, _| {})
                .unwrap();
        }
    }
    l.close("test").unwrap();
    d
}

fn engine(dir: &Path, now: Timestamp) -> Engine {
    Engine::open(
        dir,
        QueryOptions {
            now: Some(now),
            threads: Some(2),
            ..QueryOptions::default()
        },
    )
    .unwrap()
}

fn kql(e: &Engine, q: &str) -> QueryOutput {
    let mut out = trailwarden_query::engine::block_on(2, e.kql(q))
        .unwrap()
        .unwrap_or_else(|err| panic!("{q}\n{err}"));
    out.pop().unwrap()
}

fn rows(o: &QueryOutput) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in &o.batches {
        for i in 0..b.num_rows() {
            out.push(
                (0..b.num_columns())
                    .map(|c| {
                        if b.column(c).is_null(i) {
                            "null".to_string()
                        } else {
                            datafusion::arrow::util::display::array_value_to_string(b.column(c), i)
                                .unwrap()
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

fn t(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

#[test]
fn corpus_audit_events_are_queryable_in_kql() {
    let files = [shared("corpus/liggitt-audit2rbac/testdata/demo.log")];
    let d = ledger("audit2rbac", &files, t("2026-01-01T00:00:00Z"), 64 << 20);
    let e = engine(&d, t("2026-01-02T00:00:00Z"));
    let o = kql(&e, "events | count");
    assert_eq!(rows(&o), vec![vec!["37".to_string()]]);
    let o = kql(
        &e,
        "events | where code == 403 | summarize n = count() by user | order by n desc",
    );
    assert_eq!(o.rows(), 1, "{:?}", rows(&o));
    let o = kql(&e, "AKSAudit | where ResponseStatus.code == 403 | count");
    assert_eq!(rows(&o), vec![vec!["11".to_string()]]);
    let o = kql(&e, "AzureDiagnostics | where Category == 'kube-audit' | where parse_json(log_s).verb == 'get' | count");
    let gets = rows(&o)[0][0].parse::<u64>().unwrap();
    assert!(gets > 0);
    let o = kql(&e, "AKSAudit | where Verb == 'get' | count");
    assert_eq!(rows(&o)[0][0].parse::<u64>().unwrap(), gets);
    std::fs::remove_dir_all(&d).ok();
}

const NOW: &str = "2026-01-06T12:00:00Z";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixture ledger: small segments, so the rows come from sealed Parquet files and from the
/// WAL tail.
fn fixture_ledger(name: &str) -> PathBuf {
    let files: Vec<PathBuf> = [
        "aks-diagnostics.jsonl",
        "k8s-audit.jsonl",
        "activity.jsonl",
        "signin.jsonl",
        "syslog.log",
        "containers.log",
        "api-7d9f8c-x2k4q_payments_api-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log",
        "auditlogs.jsonl",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    ledger(name, &files, t("2026-01-06T11:59:00Z"), 16 << 10)
}

/// A result as golden text: a header line with column names and types, then one JSON object
/// per row; an error as `# error: …`.
fn golden_text(r: &Result<QueryOutput, trailwarden_query::QueryError>, sorted: bool) -> String {
    match r {
        Err(e) => format!("# error: {}\n", e.to_string().lines().next().unwrap_or("")),
        Ok(o) => {
            let cols: Vec<String> = trailwarden_query::render::columns(o)
                .iter()
                .zip(&o.kinds)
                .map(|(c, k)| format!("{c}:{}", k.name()))
                .collect();
            let mut s = format!("# columns: {}\n", cols.join(", "));
            if let Some(r) = &o.render {
                s.push_str(&format!("# render: {r}\n"));
            }
            // sources name the fixture files by absolute path: keep the checkout's location
            // out of the expected rows
            let mut lines: Vec<String> = trailwarden_query::render::json_rows(o)
                .into_iter()
                .map(|row| {
                    serde_json::Value::Object(row)
                        .to_string()
                        .replace(env!("CARGO_MANIFEST_DIR"), "$CRATE")
                })
                .collect();
            if sorted {
                lines.sort();
            }
            for l in lines {
                s.push_str(&l);
                s.push('\n');
            }
            s
        }
    }
}

fn ordered(q: &str) -> bool {
    q.contains("order by") || q.contains("sort by") || q.contains("| top ")
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kql");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kql"))
        .collect();
    v.sort();
    v
}

/// Every KQL case (the seed queries and trailwarden's own) against its golden output, and its
/// SQL equivalent against the same rows.
#[test]
fn golden_kql_and_sql() {
    let d = fixture_ledger("golden");
    let e = engine(&d, t(NOW));
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in cases() {
        let q = std::fs::read_to_string(&case).unwrap();
        let got = trailwarden_query::engine::block_on(2, e.kql(&q))
            .unwrap()
            .map(|mut v| v.pop().unwrap());
        // without an order, rows compare as a set
        let text = golden_text(&got, !ordered(&q));
        let out = case.with_extension("out");
        if update {
            std::fs::write(&out, &text).unwrap();
        } else {
            let want = std::fs::read_to_string(&out).unwrap_or_default();
            if want != text {
                failures.push(format!(
                    "{}:\n--- want\n{want}--- got\n{text}",
                    case.display()
                ));
            }
        }
        // the SQL equivalent returns the same rows
        let sql = case.with_extension("sql");
        if let (Ok(o), true) = (&got, sql.exists()) {
            let sq = std::fs::read_to_string(&sql).unwrap();
            match trailwarden_query::engine::block_on(2, e.sql(&sq)).unwrap() {
                Err(err) => failures.push(format!("{}: {err}", sql.display())),
                Ok(s) => {
                    let mut a = trailwarden_query::render::text_rows(o);
                    let mut b = trailwarden_query::render::text_rows(&s);
                    if !ordered(&q) {
                        a.sort();
                        b.sort();
                    }
                    if a != b {
                        failures.push(format!(
                            "{}: SQL rows differ\nkql: {a:?}\nsql: {b:?}",
                            sql.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    std::fs::remove_dir_all(&d).ok();
}

/// docs/TABLES.md is generated from the table catalog; this keeps it in step.
#[test]
fn tables_document_is_current() {
    let d = ledger("docs", &[], t(NOW), 64 << 20);
    let e = engine(&d, t(NOW));
    let doc = trailwarden_query::tables::catalog_markdown(e.tables());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/TABLES.md");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &doc).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        doc,
        "run UPDATE_GOLDEN=1 cargo test -p trailwarden-query"
    );
    // every documented column has a meaning, every table a description
    for t in e.tables() {
        assert!(!t.description.is_empty());
        for c in &t.columns {
            assert!(
                !c.doc.is_empty(),
                "{}.{} has no description",
                t.name,
                c.name
            );
        }
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn rows_come_from_segments_and_the_wal_tail_alike() {
    // the same events, once all sealed and once all in the WAL, give the same answers
    let files = [fixture("aks-diagnostics.jsonl"), fixture("activity.jsonl")];
    let sealed = ledger("sealed", &files, t("2026-01-06T11:59:00Z"), 4096);
    let tail = ledger("tail", &files, t("2026-01-06T11:59:00Z"), 64 << 20);
    let q = "union AKSAudit, AzureActivity | summarize n = count(), users = dcount(tostring(User.username)), callers = dcount(Caller) by Type | order by Type asc";
    let a = kql(&engine(&sealed, t(NOW)), q);
    let b = kql(&engine(&tail, t(NOW)), q);
    assert_eq!(rows(&a), rows(&b));
    assert!(std::fs::read_dir(sealed.join("seg")).unwrap().count() > 2);
    assert_eq!(std::fs::read_dir(tail.join("seg")).unwrap().count(), 0);
    std::fs::remove_dir_all(&sealed).ok();
    std::fs::remove_dir_all(&tail).ok();
}

#[test]
fn time_filters_prune_sealed_row_groups() {
    // TimeGenerated is coalesce(time, received); the TimePruning rule must let a window on it
    // skip segments by their statistics, and give the same answer as reading everything
    let files = [shared("corpus/liggitt-audit2rbac/testdata/demo.log")];
    let d = ledger("prune", &files, t("2026-01-01T00:00:00Z"), 4096);
    let e = engine(&d, t("2026-01-02T00:00:00Z"));
    let mid = "2017-09-11T20:20:00Z";
    let all = rows(&kql(&e, "events | project tostring(TimeGenerated)"));
    let later = all.iter().filter(|r| r[0].as_str() >= mid).count();
    assert!(later > 0 && later < all.len(), "{later} of {}", all.len());
    let run = |sql: &str| {
        trailwarden_query::engine::block_on(2, e.sql(sql))
            .unwrap()
            .unwrap_or_else(|err| panic!("{sql}\n{err}"))
    };
    let filter = format!("FROM events WHERE \"TimeGenerated\" >= TIMESTAMPTZ '{mid}'");
    let counted = rows(&run(&format!("SELECT count(*) {filter}")));
    assert_eq!(counted, vec![vec![later.to_string()]]);
    let plan = rows(&run(&format!("EXPLAIN ANALYZE SELECT count(*) {filter}"))).concat();
    let plan = plan.join("\n");
    // "row_groups_pruned_statistics=7 total → 6 matched": the scan prunes by each segment's
    // footer (planning does not read every footer for table statistics: collect_statistics is
    // off, see engine.rs)
    let metric = plan
        .split("row_groups_pruned_statistics=")
        .nth(1)
        .unwrap_or_else(|| panic!("no pruning metric in\n{plan}"));
    let numbers: Vec<usize> = metric
        .split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty())
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(numbers[1] < numbers[0], "no segment pruned:\n{plan}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn queries_at_the_complexity_limits_plan_and_run() {
    // the parser bounds the syntax tree (trailwarden_kql::parser::MAX_DEPTH, MAX_OPERATORS) so
    // that lowering, which recurses, fits a default thread stack even in a debug build
    use trailwarden_kql::parser::{MAX_DEPTH, MAX_OPERATORS};
    let files = [fixture("activity.jsonl")];
    let d = ledger("limits", &files, t("2026-01-06T11:59:00Z"), 64 << 20);
    let e = engine(&d, t(NOW));
    let chain = format!("print x = 1{}", " + 1".repeat(MAX_OPERATORS - 1));
    assert_eq!(
        rows(&kql(&e, &chain)),
        vec![vec![MAX_OPERATORS.to_string()]]
    );
    let nested = format!(
        "print x = {}2{}",
        "(".repeat(MAX_DEPTH - 2),
        ")".repeat(MAX_DEPTH - 2)
    );
    assert_eq!(rows(&kql(&e, &nested)), vec![vec!["2".to_string()]]);
    let path = format!(
        "events | extend v = parse_json(raw){} | summarize n = count() by isnull(v)",
        ".a".repeat(MAX_OPERATORS - 1)
    );
    let out = rows(&kql(&e, &path));
    assert_eq!(out.len(), 1, "{out:?}");
    let over = format!("print x = 1{}", " + 1".repeat(MAX_OPERATORS + 1));
    let err = trailwarden_query::engine::block_on(2, e.kql(&over))
        .unwrap()
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("too complex"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn sql_json_text_takes_a_path() {
    let files = [shared("corpus/liggitt-audit2rbac/testdata/demo.log")];
    let d = ledger("json-text", &files, t("2026-01-01T00:00:00Z"), 64 << 20);
    let e = engine(&d, t("2026-01-02T00:00:00Z"));
    let sql = |q: &str| {
        rows(
            &trailwarden_query::engine::block_on(2, e.sql(q))
                .unwrap()
                .unwrap_or_else(|err| panic!("{q}\n{err}")),
        )
    };
    let with_path = sql("SELECT json_text(raw, 'objectRef', 'resource') AS r, count(*) FROM events GROUP BY r ORDER BY r");
    let nested = sql("SELECT json_text(json_get(raw, 'objectRef', 'resource')) AS r, count(*) FROM events GROUP BY r ORDER BY r");
    assert_eq!(with_path, nested);
    assert!(with_path.len() > 1, "{with_path:?}");
    let kql = rows(&kql(&e, "events | summarize count() by r = tostring(parse_json(raw).objectRef.resource) | order by r asc"));
    assert_eq!(
        with_path.iter().filter(|r| r[0] != "null").count(),
        kql.iter()
            .filter(|r| r[0] != "null" && !r[0].is_empty())
            .count()
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn counts_by_a_column_from_segment_dictionaries_equal_datafusions() {
    // `summarize count() by <column>` over sealed segments is counted on the Parquet
    // dictionaries (DictionaryCountExec); the answer must be DataFusion's own, which `sum(1)`
    // (not rewritten) still computes: sealed row groups mixing events with lifecycle records,
    // null values, the WAL tail
    let files = [
        shared("corpus/liggitt-audit2rbac/testdata/demo.log"),
        fixture("aks-diagnostics.jsonl"),
        fixture("activity.jsonl"),
    ];
    // a space in the path: segment paths are object-store locations, percent-encoded
    let d = ledger("dict count", &files, t("2026-01-06T11:59:00Z"), 4096);
    let e = engine(&d, t(NOW));
    assert!(std::fs::read_dir(d.join("seg")).unwrap().count() > 2);
    let explain = |q: &str| {
        let sql = format!("EXPLAIN {q}");
        let o = trailwarden_query::engine::block_on(2, e.sql(&sql))
            .unwrap()
            .unwrap_or_else(|err| panic!("{sql}\n{err}"));
        rows(&o).concat().join("\n")
    };
    for col in [
        "user",
        "action",
        "resource",
        "namespace",
        "format",
        "category",
    ] {
        let mut counted = rows(&kql(&e, &format!("events | summarize count() by {col}")));
        let mut summed = rows(&kql(&e, &format!("events | summarize sum(1) by {col}")));
        counted.sort();
        summed.sort();
        assert_eq!(counted, summed, "count() by {col}");
        assert!(counted.len() > 1, "{col}: {counted:?}");
        let plan = explain(&format!(
            "SELECT \"{col}\", count(*) FROM events GROUP BY \"{col}\""
        ));
        assert!(plan.contains("DictionaryCountExec"), "{col}:\n{plan}");
    }
    // other shapes keep DataFusion's plan
    for q in [
        "SELECT \"user\", sum(1) FROM events GROUP BY \"user\"",
        "SELECT \"user\", count(*) FROM events WHERE action = 'get' GROUP BY \"user\"",
        "SELECT \"user\", action, count(*) FROM events GROUP BY \"user\", action",
        "SELECT \"user\", count(DISTINCT action) FROM events GROUP BY \"user\"",
    ] {
        assert!(!explain(q).contains("DictionaryCountExec"), "{q}");
    }
    let filtered = rows(&kql(
        &e,
        "events | where action == 'get' | summarize count() by user | order by user asc",
    ));
    let filtered_sum = rows(&kql(
        &e,
        "events | where action == 'get' | summarize sum(1) by user | order by user asc",
    ));
    assert_eq!(filtered, filtered_sum);
    std::fs::remove_dir_all(&d).ok();
}
