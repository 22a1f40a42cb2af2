//! Scheduled rules of the built-in pack: each loads enabled, plans against the tables, fires on
//! its positive events and stays quiet on its negative ones (stored in a real ledger, queried
//! through the real engine, the window covering the events).

#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::sync::Arc;
use trailwarden_ledger::{Ledger, Options};
use trailwarden_model::Timestamp;
use trailwarden_parse::ingest::{Ingestor, Options as IngestOptions};

fn tmp(name: &str) -> PathBuf {
    let d = trailwarden_model::scratch::dir("tw-sched", name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus(rel: &str) -> PathBuf {
    root()
        .join("../shared/corpus/falcosecurity-falco/test/trace_files/k8s_audit")
        .join(rel)
}

fn fixture(rel: &str) -> PathBuf {
    root().join("rules/scheduled/tests").join(rel)
}

/// A ledger holding `files`.
fn ledger(name: &str, files: &[PathBuf]) -> PathBuf {
    let d = tmp(name);
    let opts = Options {
        origin: Some("test.example/schedule".into()),
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
        let mut ing = Ingestor::new(IngestOptions::default(), &mut sink)
            .with_clock(|| Timestamp::parse("2026-01-05T12:00:00Z").unwrap());
        for f in files {
            ing.ingest_path(&f.to_string_lossy(), &mut |_, _| {})
                .unwrap();
        }
    }
    l.close("test").unwrap();
    d
}

#[test]
fn every_pack_rule_loads_plans_fires_on_its_positives_and_not_on_its_negatives() {
    let (rules, errors) = trailwarden_schedule::builtin();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        rules.len() >= 5,
        "at least five translated Sentinel rules: {}",
        rules.len()
    );
    let cases: &[(&str, Vec<PathBuf>, Vec<PathBuf>)] = &[
        (
            "AKS cluster-admin ClusterRoleBinding created",
            vec![corpus("attach_cluster_admin_role.json")],
            vec![
                corpus("create_clusterrolebinding.json"),
                corpus("exec_pod.json"),
            ],
        ),
        (
            "AKS RBAC role or binding created",
            vec![corpus("create_clusterrolebinding.json")],
            vec![
                corpus("exec_pod.json"),
                corpus("delete_clusterrolebinding.json"),
            ],
        ),
        (
            "Azure subscription moved to another tenant",
            vec![fixture("azure_subscription_moved.positive.jsonl")],
            vec![fixture("azure_subscription_moved.negative.jsonl")],
        ),
        (
            "Creation of expensive computes in Azure",
            vec![fixture("azure_expensive_compute.positive.jsonl")],
            vec![fixture("azure_expensive_compute.negative.jsonl")],
        ),
        (
            "New CloudShell user",
            vec![fixture("azure_new_cloudshell_user.positive.jsonl")],
            vec![fixture("azure_new_cloudshell_user.negative.jsonl")],
        ),
    ];
    let start = Timestamp::parse("2018-01-01T00:00:00Z").unwrap().0;
    let end = Timestamp::parse("2026-02-01T00:00:00Z").unwrap().0;
    for r in &rules {
        assert!(r.disabled.is_none(), "{}: {:?}", r.title, r.disabled);
        assert!(
            r.derived_from
                .as_deref()
                .is_some_and(|d| d.starts_with("Azure/Azure-Sentinel ")),
            "{}",
            r.title
        );
        assert!(
            r.tags.iter().any(|t| t.starts_with("pci_dss.10.")),
            "{}",
            r.title
        );
        let (title, pos, neg) = cases
            .iter()
            .find(|c| c.0 == r.title)
            .unwrap_or_else(|| panic!("no test case for {}", r.title));
        let d = ledger(&format!("pos-{}", r.id), pos);
        trailwarden_schedule::check_plan(r, &d).unwrap_or_else(|e| panic!("{title}: {e}"));
        let got = trailwarden_schedule::run(r, &d, start, end, 1).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            got.fired,
            "{title}: did not fire on its positives: {} rows",
            got.rows
        );
        assert!(!got.alerts.is_empty());
        assert!(
            got.alerts.iter().all(|a| !a.evidence.is_empty()),
            "{title}: evidence (ledger indexes) in every alert: {:?}",
            got.alerts
        );
        let d = ledger(&format!("neg-{}", r.id), neg);
        let got = trailwarden_schedule::run(r, &d, start, end, 1).unwrap();
        assert!(
            !got.fired,
            "{title}: fired on its negatives: {:?}",
            got.sample
        );
        // outside the window: nothing
        let d = ledger(&format!("win-{}", r.id), pos);
        let got = trailwarden_schedule::run(r, &d, end, end + r.period_ns, 1).unwrap();
        assert_eq!(got.rows, 0, "{title}: rows outside the window");
    }
}

#[test]
fn a_query_naming_a_missing_table_is_disabled_by_the_plan_check() {
    let text = "kind: scheduled\nid: 1\ntitle: t\nlevel: low\nquery: NoSuchTable | take 1\nfrequency: 5m\nperiod: 5m\n";
    let r = trailwarden_schedule::parse(text, "t.yml").unwrap();
    assert!(r.disabled.is_none(), "it parses");
    let d = ledger("missing-table", &[corpus("exec_pod.json")]);
    let e = trailwarden_schedule::check_plan(&r, &d).unwrap_err();
    assert!(e.contains("NoSuchTable"), "{e}");
}
