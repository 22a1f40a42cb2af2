//! trailwarden-compliance: golden tests of `check` (input file → expected findings).

use std::path::{Path, PathBuf};
use trailwarden_compliance::check::{check_text, sarif, Options};
use trailwarden_compliance::ComplianceError;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// (label in the golden file, path): this crate's fixtures, the repo's own deployment files and
/// the real policies of the corpus.
fn inputs() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(root().join("tests/check"))
        .expect("tests/check")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (format!("tests/check/{name}"), p)
        })
        .collect();
    for rel in [
        "docs/deploy/audit-policy.yaml",
        "docs/deploy/trailwarden.toml",
    ] {
        v.push((rel.to_string(), root().join("../..").join(rel)));
    }
    for rel in [
        "liggitt-audit2rbac/testdata/demo-policy.yaml",
        "hkerma-kubernetes-event-dataset/audit-policy.yaml",
    ] {
        v.push((
            format!("corpus/{rel}"),
            root().join("../../../shared/corpus").join(rel),
        ));
    }
    v.sort();
    v
}

fn golden_name(label: &str) -> String {
    label.replace('/', "__") + ".json"
}

#[test]
fn check_golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = root().join("tests/check/golden");
    let mut failures = Vec::new();
    for (label, path) in inputs() {
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let got = match check_text(&label, &text, &Options::default()) {
            Ok(r) => serde_json::to_value(&r).expect("report serializes"),
            Err(e) => serde_json::json!({"file": label, "error": e.to_string()}),
        };
        let got = serde_json::to_string_pretty(&got).expect("json") + "\n";
        let want_path = dir.join(golden_name(&label));
        if update {
            std::fs::create_dir_all(&dir).expect("golden dir");
            std::fs::write(&want_path, &got).expect("write golden");
            continue;
        }
        match std::fs::read_to_string(&want_path) {
            Ok(want) if want == got => {}
            Ok(_) => failures.push(format!(
                "{label}: differs from {}:\n{got}",
                want_path.display()
            )),
            Err(_) => failures.push(format!("{label}: no golden file {}", want_path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "UPDATE_GOLDEN=1 rewrites them\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_shipped_policy_has_no_findings() {
    let text = std::fs::read_to_string(root().join("../../docs/deploy/audit-policy.yaml"))
        .expect("policy");
    let r = check_text("audit-policy.yaml", &text, &Options::default()).expect("checks");
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

#[test]
fn mistakes_are_each_reported_with_their_requirement() {
    let text = std::fs::read_to_string(root().join("tests/check/common-mistakes-policy.yaml"))
        .expect("fixture");
    let r = check_text("p.yaml", &text, &Options::default()).expect("checks");
    let ids: Vec<(&str, &str)> = r.findings.iter().map(|f| (f.id, f.requirement)).collect();
    for want in [
        ("TW-POL-01", "8.3.2"),
        ("TW-POL-04", "10.2.1.2"),
        ("TW-POL-06", "10.2.1.2"),
        ("TW-POL-10", "10.2.2"),
        ("TW-POL-11", "10.2.1"),
        ("TW-POL-12", "10.2.1"),
    ] {
        assert!(ids.contains(&want), "{want:?} missing from {ids:?}");
    }
    let exempt = r
        .findings
        .iter()
        .find(|f| f.id == "TW-POL-06")
        .expect("TW-POL-06");
    assert_eq!(
        exempt.line,
        Some(8),
        "the rule exempting system:masters: {exempt:?}"
    );
}

#[test]
fn cde_namespaces_are_options() {
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Request\n    namespaces: [\"cardholder\"]\n  - level: None\n    verbs: [\"get\", \"list\", \"watch\"]\n  - level: Metadata\n";
    let with = |ns: &str| {
        let o = Options {
            cde_namespaces: vec![ns.into()],
        };
        check_text("p.yaml", policy, &o)
            .expect("checks")
            .findings
            .iter()
            .any(|f| f.id == "TW-POL-09")
    };
    assert!(
        !with("cardholder"),
        "reads in the CDE namespace are logged by rules[0]"
    );
    assert!(
        with("payments"),
        "reads in another CDE namespace fall to the None rule"
    );
}

#[test]
fn unparseable_inputs_name_file_and_line() {
    for (name, line) in [("bad-yaml-policy.yaml", 7), ("bad-level-policy.yaml", 8)] {
        let text = std::fs::read_to_string(root().join("tests/check").join(name)).expect("fixture");
        match check_text(name, &text, &Options::default()) {
            Err(ComplianceError::Parse { file, line: l, .. }) => {
                assert_eq!(file, name);
                assert_eq!(l, line, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let e = check_text("x.toml", "[http\nlisten = 1", &Options::default()).expect_err("bad TOML");
    assert!(e.to_string().starts_with("x.toml:1:"), "{e}");
    let e = check_text("notes.txt", "hello", &Options::default()).expect_err("unknown");
    assert!(matches!(e, ComplianceError::Unknown { .. }), "{e}");
}

#[test]
fn sarif_has_one_rule_per_check_and_a_result_per_finding() {
    let text = std::fs::read_to_string(root().join("tests/check/common-mistakes-policy.yaml"))
        .expect("fixture");
    let r = check_text("p.yaml", &text, &Options::default()).expect("checks");
    let s = sarif(std::slice::from_ref(&r));
    assert_eq!(s["version"], "2.1.0");
    let results = s["runs"][0]["results"].as_array().expect("results");
    assert_eq!(results.len(), r.findings.len());
    let rules = s["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules");
    assert_eq!(
        rules.len(),
        r.findings.len(),
        "one finding per check id here"
    );
    assert!(results
        .iter()
        .all(|x| x["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "p.yaml"));
}

mod controls_logic {
    use trailwarden_compliance::controls::{recovered, Health, Incident, SourceWatch};
    use trailwarden_compliance::review::ReviewConfig;
    use trailwarden_model::Timestamp;

    const S: i64 = 1_000_000_000;

    #[test]
    fn clock_skew_opens_after_three_batches_and_clears_after_three_good_ones() {
        let settings = ReviewConfig::default().settings().expect("defaults");
        let mut w = SourceWatch::default();
        let src = "api:k8s-audit token:a".to_string();
        // two skewed batches: not yet; behind by 60 s is the batching allowance, not skew
        let mut batches = vec![
            (100 * S, Some(100 * S + 300 * S)),
            (101 * S, Some(101 * S - 60 * S)),
        ];
        assert!(w
            .observe(102 * S, &[(src.clone(), batches.clone())], &settings)
            .is_empty());
        batches.push((103 * S, Some(103 * S + 300 * S)));
        batches.push((104 * S, Some(104 * S + 300 * S)));
        assert!(w
            .observe(105 * S, &[(src.clone(), batches.clone())], &settings)
            .is_empty());
        batches.push((106 * S, Some(106 * S + 299 * S)));
        let open = w.observe(107 * S, &[(src.clone(), batches.clone())], &settings);
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(
            (open[0].0, open[0].1.as_str()),
            ("clock-skew", src.as_str())
        );
        assert!(open[0].3.contains("ahead of"), "{}", open[0].3);
        // already open: not again
        batches.push((108 * S, Some(108 * S + 300 * S)));
        assert!(w
            .observe(109 * S, &[(src.clone(), batches.clone())], &settings)
            .is_empty());
        assert!(w.health().1.is_empty());
        for t in [110, 111, 112] {
            batches.push((t * S, Some(t * S - S)));
        }
        assert!(w
            .observe(113 * S, &[(src.clone(), batches)], &settings)
            .is_empty());
        assert_eq!(w.health().1, vec![src]);
    }

    #[test]
    fn a_source_is_silent_past_its_learned_gap_and_the_minimum() {
        let settings = ReviewConfig::default().settings().expect("defaults");
        let mut w = SourceWatch::default();
        let src = "syslog tcp 10.0.0.7".to_string();
        let batches: Vec<(i64, Option<i64>)> = (0..30).map(|i| (i * 60 * S, None)).collect();
        let last = 29 * 60 * S;
        // usual gap 60 s × 10 = 10 min, but at least 30 min (silence_min)
        assert!(w
            .observe(
                last + 20 * 60 * S,
                &[(src.clone(), batches.clone())],
                &settings
            )
            .is_empty());
        let open = w.observe(
            last + 31 * 60 * S,
            &[(src.clone(), batches.clone())],
            &settings,
        );
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].0, "silent-source");
        assert!(open[0].3.contains("learned"), "{}", open[0].3);
        assert!(
            w.observe(last + 40 * 60 * S, &[(src, batches)], &settings)
                .is_empty(),
            "once"
        );
    }

    fn incident(control: &str, subject: Option<&str>, last_seen: i64) -> Incident {
        Incident {
            id: 1,
            control: control.into(),
            subject: subject.map(str::to_string),
            state: "open".into(),
            start: Timestamp(0),
            last_seen: Timestamp(last_seen),
            end: None,
            duration_seconds: 0,
            occurrences: 1,
            cause: String::new(),
            remediation: None,
            closed_by: None,
            title: String::new(),
        }
    }

    #[test]
    fn controls_close_only_on_evidence_after_the_last_failure() {
        let h = Health {
            now: 1_000 * S,
            disk_ok: true,
            sink_success: vec![("hook".into(), 500 * S)],
            verify: Some((400 * S, true)),
            signed_reviews: vec!["daily-2026-12-01".into()],
            source_last: vec![("api:app t".into(), 600 * S)],
            ..Health::default()
        };
        assert!(recovered(&incident("delivery", Some("hook"), 400 * S), &h).is_some());
        assert!(
            recovered(&incident("delivery", Some("hook"), 600 * S), &h).is_none(),
            "success before the last failure"
        );
        assert!(recovered(&incident("delivery", Some("other"), 400 * S), &h).is_none());
        assert!(recovered(&incident("verify", None, 300 * S), &h).is_some());
        assert!(recovered(&incident("verify", None, 450 * S), &h).is_none());
        assert!(recovered(&incident("review", Some("daily-2026-12-01"), 0), &h).is_some());
        assert!(recovered(&incident("review", Some("daily-2026-12-02"), 0), &h).is_none());
        assert!(recovered(&incident("silent-source", Some("api:app t"), 550 * S), &h).is_some());
        assert!(recovered(&incident("disk-low", None, 900 * S), &h).is_some());
        assert!(
            recovered(&incident("disk-low", None, 990 * S), &h).is_none(),
            "a minute of quiet first"
        );
        assert!(recovered(&incident("backpressure", None, 990 * S), &h).is_none());
        assert!(recovered(&incident("backpressure", None, 600 * S), &h).is_some());
        for needs_a_person in ["ledger-write", "detection"] {
            assert!(recovered(&incident(needs_a_person, None, 0), &h).is_none());
        }
    }
}
