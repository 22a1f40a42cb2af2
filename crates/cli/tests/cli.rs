//! End-to-end tests of the `trailwarden` binary: the CLI contract (names, flags, JSON shapes,
//! exit codes) that users and the other issues rely on.

#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trailwarden"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tw-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    if std::env::var_os("TW_TEST_VERBOSE").is_some() {
        eprintln!(
            "stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn corpus(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(rel)
        .to_string_lossy()
        .to_string()
}

#[test]
fn gen_then_ingest_json_summary() {
    let d = tmp("gen");
    let file = d.join("a.jsonl");
    let out = run(bin()
        .args([
            "gen",
            "--events",
            "2000",
            "--seed",
            "3",
            "--attack-rate",
            "0.01",
            "-o",
        ])
        .arg(&file)
        .args(["--output", "json"]));
    assert!(out.status.success(), "{out:?}");
    let g = json(&out);
    assert_eq!(g["events"], 2000);
    let out = run(bin()
        .args(["ingest", "--output", "json"])
        .arg(&file)
        .arg("--data-dir")
        .arg(d.join("data")));
    assert!(out.status.success(), "{out:?}");
    let s = json(&out);
    assert_eq!(s["records"], 2000);
    assert_eq!(s["quarantined"], 0);
    assert_eq!(s["events"], 2000);
    assert_eq!(s["by_format"]["k8s-audit"], 2000);
    assert!(s["events_per_second"].as_f64().unwrap() > 0.0);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn gen_is_deterministic_and_compresses() {
    let d = tmp("det");
    for (name, extra) in [
        ("a.jsonl", None),
        ("b.jsonl", None),
        ("c.jsonl.zst", Some(())),
        ("d.jsonl.gz", Some(())),
    ] {
        let _ = extra;
        let out = run(bin()
            .args([
                "gen",
                "--events",
                "300",
                "--seed",
                "9",
                "--profile",
                "aks",
                "--format",
                "eventlist",
                "--batch",
                "100",
                "-o",
            ])
            .arg(d.join(name)));
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(
        std::fs::read(d.join("a.jsonl")).unwrap(),
        std::fs::read(d.join("b.jsonl")).unwrap()
    );
    // compressed outputs ingest to the same events as the plain one
    let mut counts = Vec::new();
    for name in ["a.jsonl", "c.jsonl.zst", "d.jsonl.gz"] {
        let out = run(bin().args(["ingest", "--output", "json"]).arg(d.join(name)));
        let s = json(&out);
        assert_eq!(s["by_format"]["aks"], 300, "{name}");
        counts.push(s["records"].clone());
    }
    assert!(counts.windows(2).all(|w| w[0] == w[1]));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn ingest_reads_stdin_and_emits_normalized_jsonl() {
    let d = tmp("stdin");
    let norm = d.join("n.jsonl");
    let input = std::fs::read(corpus("liggitt-audit2rbac/testdata/demo.log")).unwrap();
    let mut child = bin()
        .args([
            "ingest",
            "--output",
            "json",
            "--receive-time",
            "2026-01-01T00:00:00Z",
            "--emit-normalized",
        ])
        .arg(&norm)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let s = json(&out);
    assert_eq!(s["records"], 37);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&norm)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 37);
    assert_eq!(lines[0]["source"], "stdin");
    assert_eq!(lines[0]["received"], "2026-01-01T00:00:00Z");
    assert_eq!(lines[0]["event"]["user"]["impersonated"]["name"], "bob");
    // the raw bytes are the input line, exactly
    let first_line = input.split(|&b| b == b'\n').next().unwrap();
    assert_eq!(lines[0]["raw"].as_str().unwrap().as_bytes(), first_line);
    let forbidden = lines
        .iter()
        .filter(|l| l["event"]["outcome"]["code"] == 403)
        .count();
    assert_eq!(forbidden, 11, "audit2rbac has 11 403s");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn exit_codes_mean_something() {
    // usage error
    let out = run(bin().args(["ingest", "--format", "nope", "x"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown format"));
    // unreadable input: the others are still read, exit 3
    let good = corpus("liggitt-audit2rbac/testdata/demo.log");
    let out = run(bin().args(["ingest", "--output", "json", "/nonexistent/file.log", &good]));
    assert_eq!(out.status.code(), Some(3));
    let s = json(&out);
    assert_eq!(s["records"], 37);
    assert_eq!(s["failed_inputs"][0], "/nonexistent/file.log");
    // quarantines are reported, and fail only under --strict
    let broken = corpus("falcosecurity-falco/test/trace_files/k8s_audit/fal_01_003.json");
    let out = run(bin().args(["ingest", "--output", "json", &broken]));
    assert_eq!(out.status.code(), Some(0));
    let s = json(&out);
    assert_eq!(s["quarantined"], 1);
    assert!(s["errors"][0]["reason"].as_str().unwrap().contains("kind"));
    let out = run(bin().args(["ingest", "--strict", &broken]));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn forced_format_quarantines_other_shapes() {
    let aks = corpus("sysdiglabs-aks-audit-log/samples/event.json");
    let out = run(bin().args(["ingest", "--output", "json", "--format", "k8s-audit", &aks]));
    let s = json(&out);
    assert_eq!(s["events"], 0);
    assert_eq!(s["quarantined"], 22);
    assert!(s["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("not a Kubernetes audit event"));
    let out = run(bin().args(["ingest", "--output", "json", "--format", "aks", &aks]));
    assert_eq!(json(&out)["by_format"]["aks"], 22);
}

#[test]
fn table_and_csv_outputs() {
    let f = corpus("elastic-beats/filebeat/tests/files/logs/docker_corrupted.log");
    let out = run(bin().args(["ingest", &f]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("20 events, 1 quarantined"), "{text}");
    assert!(text.contains("line 7"), "{text}");
    let out = run(bin().args(["ingest", "--output", "csv", &f]));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("source,compression,bytes,records,quarantined")
    );
    assert!(lines.next().unwrap().ends_with(",21,1"));
}

#[test]
fn help_has_examples() {
    for args in [
        vec!["--help"],
        vec!["ingest", "--help"],
        vec!["gen", "--help"],
    ] {
        let out = run(bin().args(&args));
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Examples:"),
            "{args:?}"
        );
    }
}
