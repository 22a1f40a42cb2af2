//! Integration tests of the parse crate: golden files for the real corpus and the synthetic
//! fixtures, the corpus-wide "no unexplained quarantine" check, field completeness on the
//! Kubernetes corpus, and raw-byte fidelity.
//!
//! Set `UPDATE_GOLDEN=1` to rewrite the golden files after an intended change, then review the
//! diff.

#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use trailwarden_model::{Body, Record, Timestamp};
use trailwarden_parse::{Ingestor, Options, Summary};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn corpus() -> PathBuf {
    root().join("../../../shared/corpus")
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// Ingest one file with a fixed clock, labelling it `label`.
fn ingest_file(path: &Path, label: &str) -> (Vec<Record>, Summary) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    ingest_bytes(&data, label)
}

fn ingest_bytes(data: &[u8], label: &str) -> (Vec<Record>, Summary) {
    let mut out = Vec::new();
    let mut sink = |r: Record| -> Result<(), String> {
        out.push(r);
        Ok(())
    };
    let t = Timestamp::parse("2026-11-22T12:00:00Z").unwrap();
    let mut ing = Ingestor::new(Options::default(), &mut sink).with_clock(move || t);
    ing.ingest_bytes(label, data).unwrap();
    let s = ing.into_summary();
    (out, s)
}

fn golden_text(records: &[Record]) -> String {
    let mut s = String::new();
    for r in records {
        s.push_str(&serde_json::to_string(&r.to_json_with(false)).unwrap());
        s.push('\n');
    }
    s
}

fn check_golden(name: &str, records: &[Record]) -> Result<(), String> {
    let path = root().join("tests/golden").join(format!("{name}.jsonl"));
    let got = golden_text(records);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return Ok(());
    }
    let want = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()))?;
    if got != want {
        let (gl, wl): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
        let i = gl
            .iter()
            .zip(&wl)
            .position(|(a, b)| a != b)
            .unwrap_or(gl.len().min(wl.len()));
        return Err(format!(
            "{name}: golden mismatch at record {} ({} records, golden has {})\n got: {}\nwant: {}",
            i + 1,
            gl.len(),
            wl.len(),
            gl.get(i).unwrap_or(&"<none>"),
            wl.get(i).unwrap_or(&"<none>")
        ));
    }
    Ok(())
}

/// Corpus files in a supported format (the rest — YAML test specs, policies, docs, the Logstash
/// CSV projection — are not audit logs trailwarden reads).
fn corpus_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                let ext = p
                    .extension()
                    .map(|e| e.to_string_lossy().to_string())
                    .unwrap_or_default();
                if matches!(ext.as_str(), "json" | "jsonl" | "log")
                    && name != "_derived_trace_file_labels.json"
                {
                    out.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&corpus(), &mut out);
    assert!(
        out.len() > 100,
        "corpus not found at {}",
        corpus().display()
    );
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(corpus())
        .unwrap()
        .to_string_lossy()
        .to_string()
}

/// The deliberately broken records the corpus MANIFEST lists: (file, line).
const CORPUS_EXPECTED_QUARANTINES: &[(&str, u64)] = &[
    (
        "falcosecurity-falco/test/trace_files/k8s_audit/fal_01_003.json",
        1,
    ),
    (
        "elastic-beats/filebeat/tests/files/logs/docker_corrupted.log",
        7,
    ),
];

#[test]
fn corpus_golden() {
    let mut failures = Vec::new();
    for p in corpus_files() {
        let label = format!("corpus/{}", rel(&p));
        let (records, _) = ingest_file(&p, &label);
        if let Err(e) = check_golden(&label, &records) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn fixtures_golden() {
    let mut failures = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
    {
        let label = format!("fixtures/{}", p.file_name().unwrap().to_string_lossy());
        let (records, _) = ingest_file(&p, &label);
        if let Err(e) = check_golden(&label, &records) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn corpus_has_no_unexplained_quarantines() {
    let mut unexplained = Vec::new();
    let mut seen_expected = 0;
    let mut events = 0;
    for p in corpus_files() {
        let r = rel(&p);
        let (records, summary) = ingest_file(&p, &r);
        assert!(summary.records > 0, "{r}: no records");
        events += summary.events;
        for rec in &records {
            if let Body::Quarantine(q) = &rec.body {
                let line = rec.location.as_ref().map_or(0, |l| l.line);
                if CORPUS_EXPECTED_QUARANTINES.contains(&(r.as_str(), line)) {
                    seen_expected += 1;
                } else {
                    unexplained.push(format!("{r}:{line}: {}", q.reason));
                }
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "unexplained quarantines:\n{}",
        unexplained.join("\n")
    );
    assert_eq!(
        seen_expected,
        CORPUS_EXPECTED_QUARANTINES.len(),
        "a deliberately broken record was not quarantined"
    );
    assert!(events > 400, "only {events} events from the corpus");
}

/// Fields the source has must be filled: user, verb, resource, outcome, time.
#[test]
fn kubernetes_corpus_fields_are_filled_wherever_the_source_has_them() {
    let mut checked = 0;
    for p in corpus_files() {
        let r = rel(&p);
        if !(r.starts_with("falcosecurity")
            || r.starts_with("liggitt")
            || r.starts_with("sysdiglabs")
            || r.starts_with("dynatrace"))
        {
            continue;
        }
        let (records, _) = ingest_file(&p, &r);
        for rec in records {
            let Body::Event(ev) = &rec.body else { continue };
            // The audit event the source carried: the record itself or its properties.log.
            let src: serde_json::Value = match &ev.payload {
                Some(p) => match serde_json::from_str(p) {
                    Ok(v) => v,
                    Err(_) => continue, // klog text of another category
                },
                None => serde_json::from_slice(&rec.raw).unwrap(),
            };
            let ctx = format!("{r} line {:?}", rec.location);
            if let Some(u) = src.pointer("/user/username").and_then(|v| v.as_str()) {
                assert_eq!(ev.user.identity.name.as_deref(), Some(u), "{ctx}: user");
            }
            if let Some(v) = src.get("verb").and_then(|v| v.as_str()) {
                assert_eq!(ev.action.as_deref(), Some(v), "{ctx}: verb");
            }
            if let Some(res) = src.pointer("/objectRef/resource").and_then(|v| v.as_str()) {
                assert_eq!(
                    ev.resource.resource.as_deref(),
                    Some(res),
                    "{ctx}: resource"
                );
            }
            if let Some(ns) = src.pointer("/objectRef/namespace").and_then(|v| v.as_str()) {
                assert_eq!(
                    ev.resource.namespace.as_deref(),
                    Some(ns),
                    "{ctx}: namespace"
                );
            }
            if let Some(c) = src.pointer("/responseStatus/code").and_then(|v| v.as_i64()) {
                assert_eq!(ev.outcome.code, Some(c), "{ctx}: code");
                assert_ne!(
                    ev.outcome.result,
                    trailwarden_model::OutcomeResult::Unknown,
                    "{ctx}: outcome"
                );
            }
            if src.get("stageTimestamp").is_some()
                || src.get("requestReceivedTimestamp").is_some()
                || src.get("timestamp").is_some()
            {
                assert!(ev.time.is_some(), "{ctx}: time");
            }
            if let Some(ips) = src.get("sourceIPs").and_then(|v| v.as_array()) {
                assert_eq!(
                    ev.origin.ips.as_ref().map(Vec::len),
                    Some(ips.len()),
                    "{ctx}: sourceIPs"
                );
                assert_eq!(
                    ev.origin.trusted_ip.as_deref(),
                    ips.last().and_then(|v| v.as_str()),
                    "{ctx}: trusted ip"
                );
            }
            let c = ev.completeness();
            for (name, state) in c.fields() {
                if name == "resource" && src.get("requestURI").is_some() {
                    assert_eq!(
                        state,
                        trailwarden_model::FieldState::Present,
                        "{ctx}: 10.2.2 {name}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 110, "checked only {checked} events");
}

/// Every record keeps the exact bytes it had in the input.
#[test]
fn raw_bytes_are_exact_slices_of_the_input() {
    let mut files = corpus_files();
    let mut fx: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    fx.retain(|p| p.extension().is_some_and(|e| e != "md"));
    files.extend(fx);
    let mut checked = 0;
    for p in files {
        let data = std::fs::read(&p).unwrap();
        let (records, _) = ingest_file(&p, "x");
        for rec in &records {
            let loc = rec.location.as_ref().expect("file records have a location");
            // Records inside a cloud envelope (Pub/Sub base64, CloudWatch gzip or JSON string)
            // are the envelope's decoded content; the location is the envelope's.
            if trailwarden_parse::cloud::looks_like_envelope(&data[loc.offset as usize..]) {
                continue;
            }
            // Multi-line events (auditd, split container lines) keep each line exactly.
            for (i, piece) in rec.raw.split(|&b| b == b'\n').enumerate() {
                if i == 0 {
                    let at = loc.offset as usize;
                    assert_eq!(
                        &data[at..at + piece.len()],
                        piece,
                        "{}: record at {loc}",
                        p.display()
                    );
                } else {
                    assert!(
                        data.windows(piece.len().max(1)).any(|w| w == piece),
                        "{}: piece of {loc} not in input",
                        p.display()
                    );
                }
            }
            if rec.raw.contains(&b'\n') && rec.raw.starts_with(b"{") {
                // a pretty-printed document: the whole span is one slice
                let at = loc.offset as usize;
                assert_eq!(
                    &data[at..at + rec.raw.len()],
                    &rec.raw[..],
                    "{}",
                    p.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 450, "{checked}");
}

#[test]
fn compressed_inputs_read_transparently() {
    use std::io::Write;
    let plain = std::fs::read(fixtures().join("k8s-stages.jsonl")).unwrap();
    let (want, _) = ingest_bytes(&plain, "x");
    let dir = trailwarden_model::scratch::dir("tw-parse", "compressed");
    std::fs::create_dir_all(&dir).unwrap();
    let gz = dir.join("a.jsonl.gz");
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    e.write_all(&plain).unwrap();
    e.finish().unwrap();
    let zs = dir.join("a.jsonl.zst");
    std::fs::write(&zs, zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
    for path in [gz, zs] {
        let mut out = Vec::new();
        let mut sink = |r: Record| -> Result<(), String> {
            out.push(r);
            Ok(())
        };
        let mut ing = Ingestor::new(Options::default(), &mut sink);
        ing.ingest_path(path.to_str().unwrap(), &mut |_, _| {})
            .unwrap();
        let s = ing.into_summary();
        assert_ne!(s.inputs[0].compression, "none");
        assert_eq!(out.len(), want.len(), "{}", path.display());
        for (a, b) in out.iter().zip(&want) {
            assert_eq!(a.raw, b.raw);
            assert_eq!(a.event(), b.event());
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn oversized_records_are_quarantined_not_dropped() {
    let big = format!(
        "{{\"kind\":\"Event\",\"auditID\":\"x\",\"verb\":\"get\",\"requestObject\":{{\"pad\":\"{}\"}}}}\n{{\"kind\":\"Event\",\"auditID\":\"y\",\"verb\":\"get\"}}\n",
        "a".repeat(2 << 20)
    );
    let (records, summary) = ingest_bytes(big.as_bytes(), "big");
    assert_eq!(summary.quarantined, 1);
    assert_eq!(summary.events, 1);
    let q = records[0].quarantine().unwrap();
    assert!(q.reason.contains("exceeds"), "{}", q.reason);
    assert_eq!(
        records[0].raw.len(),
        big.find('\n').unwrap(),
        "raw kept whole (under the quarantine cap)"
    );

    // Beyond the quarantine cap: a prefix is kept with the full length and hash.
    let mut out = Vec::new();
    let mut sink = |r: Record| -> Result<(), String> {
        out.push(r);
        Ok(())
    };
    let opts = Options {
        max_quarantine_bytes: 1000,
        max_document_bytes: 4096,
        ..Options::default()
    };
    let mut ing = Ingestor::new(opts, &mut sink);
    ing.ingest_bytes("big", big.as_bytes()).unwrap();
    drop(ing);
    let q = out[0].quarantine().unwrap();
    assert_eq!(out[0].raw.len(), 1000);
    assert_eq!(q.full_len, Some(big.find('\n').unwrap() as u64));
    assert_eq!(q.full_sha256.as_deref().map(str::len), Some(64));
    assert_eq!(out.len(), 2, "the next record is still read");
}

#[test]
fn a_truncated_pretty_document_does_not_swallow_the_records_after_it() {
    let input = "{\n  \"kind\": \"Event\",\n  \"verb\": \"get\",\n{\"kind\":\"Event\",\"auditID\":\"z\",\"verb\":\"list\"}\n";
    let (records, summary) = ingest_bytes(input.as_bytes(), "t");
    assert_eq!(summary.quarantined, 1);
    assert_eq!(summary.events, 1);
    assert_eq!(records[1].event().unwrap().action.as_deref(), Some("list"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const POOL: &[&str] = &[
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"responseStatus":{"code":200},"stageTimestamp":"2026-01-01T00:00:00Z"}"#,
        r#"{"kind":"Event","auditID":"b","verb":"delete","objectRef":{"resource":"events","namespace":"x"}}"#,
        r#"{"category":"kube-audit","properties":{"log":"{\"kind\":\"Event\",\"verb\":\"list\",\"auditID\":\"c\"}\n","pod":"p"},"time":"2026-01-01T00:00:00Z"}"#,
        r#"{"timestamp":"2026-01-01T00:00:00Z","user_id":"u","action":"login","resource":"r","result":"failure","source_ip":"1.2.3.4"}"#,
        r#"{"log":"hello\n","stream":"stdout","time":"2026-01-01T00:00:00Z"}"#,
        r#"{"log":"partial ","stream":"stderr","time":"2026-01-01T00:00:00Z"}"#,
        "type=SYSCALL msg=audit(1.000:1): arch=c000003e syscall=59 success=yes exit=0 auid=1000 uid=0",
        "type=PATH msg=audit(1.000:1): item=0 name=\"/bin/sh\" nametype=NORMAL",
        "type=EOE msg=audit(1.000:1): ",
        "node=n type=USER_LOGIN msg=audit(2.000:2): pid=1 uid=0 auid=1000 msg='op=login acct=\"a\" res=failed'",
        "2026-01-01T00:00:00Z stdout P part",
        "2026-01-01T00:00:01Z stdout F end",
        "<34>1 2026-01-01T00:00:00Z h app - - - msg",
        "<13>Jan  1 00:00:00 h sshd[1]: Failed password for root from 1.2.3.4 port 22 ssh2",
        "{\"kind\":0}",
        "{\"kind\":\"Event\",\"verb\":\"get\",\"user\":{\"username\":\"trunc",
        "{",
        "  \"kind\": \"Event\",",
        "  \"verb\": \"get\"",
        "}",
        "random words",
        "",
        "   ",
        "\u{feff}x",
        "type=UNKNOWN[1] msg=?",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Whatever lines arrive in whatever order: no panic, every record is counted, and every
        /// non-blank input line survives inside some record's raw bytes.
        #[test]
        fn every_line_survives(picks in proptest::collection::vec(0..POOL.len(), 0..40), crlf in any::<bool>()) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let text: String = picks.iter().map(|&i| format!("{}{eol}", POOL[i])).collect();
            let (records, summary) = ingest_bytes(text.as_bytes(), "prop");
            prop_assert_eq!(summary.records, summary.events + summary.quarantined);
            prop_assert_eq!(summary.records as usize, records.len());
            for (n, &i) in picks.iter().enumerate() {
                // a BOM at the very start of an input is an encoding mark, not content
                let line = if n == 0 { POOL[i].trim_start_matches('\u{feff}') } else { POOL[i] };
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let found = records.iter().any(|r| r.raw.windows(line.len()).any(|w| w == line.as_bytes()));
                prop_assert!(found, "line {:?} lost", line);
            }
        }
    }
}

/// A CloudWatch Logs DATA_MESSAGE is a container: a batch of several MiB is opened (bounded by
/// the document limit), not quarantined by the 1 MiB record limit; each event inside still is.
#[test]
fn cloudwatch_batches_over_the_record_limit_are_opened() {
    let event = |i: usize, pad: usize| {
        serde_json::json!({"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":format!("e{i}"),
            "stage":"ResponseComplete","verb":"get","user":{"username":"u"},
            "objectRef":{"resource":"pods","namespace":"ns","name":"x".repeat(pad)},
            "stageTimestamp":"2026-11-30T10:00:00Z"})
        .to_string()
    };
    let mut log_events: Vec<serde_json::Value> = (0..400)
        .map(
            |i| serde_json::json!({"id": i.to_string(), "timestamp": 1, "message": event(i, 5000)}),
        )
        .collect();
    // one event over the record limit on its own
    log_events
        .push(serde_json::json!({"id": "big", "timestamp": 1, "message": event(400, 1_100_000)}));
    let body = serde_json::json!({"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/big/cluster",
        "logStream":"kube-apiserver-audit-1","logEvents": log_events})
    .to_string();
    assert!(body.len() > 3 << 20);
    let (records, summary) = ingest_bytes(body.as_bytes(), "cw");
    assert_eq!(summary.events, 400, "{:?}", summary.errors);
    assert_eq!(summary.quarantined, 1);
    assert!(
        summary.errors[0].reason.contains("record limit"),
        "{:?}",
        summary.errors
    );
    assert!(records
        .iter()
        .all(|r| r.source == "cw#/aws/eks/big/cluster/kube-apiserver-audit-1"));
}
