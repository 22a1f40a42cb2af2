//! Sigma engine tests over SigmaHQ's own rules and real audit events.

#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

mod pack;

use std::path::{Path, PathBuf};
use trailwarden_detect::{load_dir, load_str, FlatDoc, JsonDoc, LogSource};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(rel)
}

#[test]
fn every_sigmahq_file_loads() {
    let (rules, errors) = load_dir(&shared("sigma"));
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(rules.len() >= 104, "{}", rules.len());
    let disabled: Vec<_> = rules
        .iter()
        .filter_map(|r| r.disabled.as_ref().map(|d| format!("{}: {d}", r.source)))
        .collect();
    // every SigmaHQ rule here uses only implemented features
    assert!(disabled.is_empty(), "{disabled:#?}");
    let k8s = rules
        .iter()
        .filter(|r| r.logsource.covers(&LogSource::of_format("k8s-audit")))
        .count();
    assert_eq!(k8s, 16);
}

fn k8s_events(rel: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(shared(rel)).unwrap();
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn sigmahq_kubernetes_rules_fire_on_matching_events_only() {
    let (rules, _) = load_dir(&shared("sigma/application/kubernetes"));
    let ev = |j: serde_json::Value| j;
    let exec = ev(serde_json::json!({
        "kind": "Event", "verb": "create", "stage": "ResponseComplete",
        "objectRef": {"resource": "pods", "subresource": "exec", "namespace": "payments", "name": "api-0"},
        "user": {"username": "alice"}, "responseStatus": {"code": 101}
    }));
    let get_pod = ev(serde_json::json!({
        "kind": "Event", "verb": "get",
        "objectRef": {"resource": "pods", "namespace": "payments", "name": "api-0"},
        "user": {"username": "alice"}, "responseStatus": {"code": 200}
    }));
    let fired = |doc: &serde_json::Value| -> Vec<String> {
        let raw = doc.to_string();
        let d = JsonDoc {
            value: doc,
            raw: &raw,
        };
        rules
            .iter()
            .filter(|r| r.matches(&d))
            .map(|r| r.title.clone())
            .collect()
    };
    let on_exec = fired(&exec);
    assert!(on_exec.iter().any(|t| t.contains("Exec")), "{on_exec:?}");
    assert!(fired(&get_pod).is_empty(), "{:?}", fired(&get_pod));
    // the field mapping: SigmaHQ's `hostPath` is the pod spec's volumes
    let host_path = ev(serde_json::json!({
        "kind": "Event", "verb": "create", "objectRef": {"resource": "pods", "namespace": "default"},
        "requestObject": {"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "image": "busybox"}]}}
    }));
    let on_host = fired(&host_path);
    assert!(
        on_host
            .iter()
            .any(|t| t.to_lowercase().contains("hostpath")),
        "{on_host:?}"
    );
    assert!(
        !on_host.iter().any(|t| t.contains("Capabilit")),
        "{on_host:?}"
    );
}

#[test]
fn corpus_events_raise_the_sigmahq_rules_of_their_intent() {
    // audit2rbac's demo log is a real API server audit log; the expected counts are computed
    // here from the events themselves, independently of the engine
    let (rules, _) = load_dir(&shared("sigma/application/kubernetes"));
    let events = k8s_events("corpus/liggitt-audit2rbac/testdata/demo.log");
    assert!(!events.is_empty());
    let mut hits = std::collections::BTreeMap::<String, usize>::new();
    for e in &events {
        let raw = e.to_string();
        let d = JsonDoc {
            value: e,
            raw: &raw,
        };
        for r in &rules {
            if r.matches(&d) {
                *hits.entry(r.title.clone()).or_default() += 1;
                // every hit is explained by the searches that matched
                assert!(!r.matched_searches(&d).is_empty());
            }
        }
    }
    let denied = events
        .iter()
        .filter(|e| matches!(e["responseStatus"]["code"].as_i64(), Some(401 | 403)))
        .count();
    let secret_lists = events
        .iter()
        .filter(|e| e["verb"] == "list" && e["objectRef"]["resource"] == "secrets")
        .count();
    assert!(denied > 0 && secret_lists > 0);
    assert_eq!(
        hits.get("Kubernetes Unauthorized or Unauthenticated Access"),
        Some(&denied),
        "{hits:#?}"
    );
    assert_eq!(
        hits.get("Kubernetes Secrets Enumeration"),
        Some(&secret_lists),
        "{hits:#?}"
    );
    assert_eq!(hits.len(), 2, "{hits:#?}");
}

#[test]
fn modifiers_conditions_and_collections() {
    let rules = load_str(
        r#"
action: global
title: Base
logsource: {product: kubernetes, service: audit}
level: high
---
id: a
detection:
  sel:
    user.username|startswith: 'system:serviceaccount:'
    sourceIPs|cidr: '10.0.0.0/8'
  filter:
    objectRef.namespace: kube-system
  condition: sel and not filter
---
id: b
title: Numbers and all
detection:
  sel:
    responseStatus.code|gte: 400
    requestURI|contains|all: ['secrets', 'watch=true']
  condition: all of sel*
---
id: c
detection:
  sel:
    annotations.authorization.k8s.io/decision: forbid
    impersonatedUser: null
    userAgent|re|i: '^KUBECTL/'
    requestObject|exists: false
  condition: 1 of them
"#,
        "inline.yml",
    )
    .unwrap();
    assert_eq!(rules.len(), 3);
    assert!(rules
        .iter()
        .all(|r| r.disabled.is_none() && r.level == "high"));
    let doc = serde_json::json!({
        "user": {"username": "system:serviceaccount:payments:api"},
        "sourceIPs": ["10.244.0.7"],
        "objectRef": {"namespace": "payments", "resource": "secrets"},
        "requestURI": "/api/v1/namespaces/payments/secrets?watch=true",
        "responseStatus": {"code": 403},
        "annotations": {"authorization.k8s.io/decision": "forbid"},
        "userAgent": "kubectl/v1.30.0"
    });
    let raw = doc.to_string();
    let d = JsonDoc {
        value: &doc,
        raw: &raw,
    };
    assert!(
        rules.iter().all(|r| r.matches(&d)),
        "{:?}",
        rules
            .iter()
            .map(|r| (r.id.clone(), r.matches(&d)))
            .collect::<Vec<_>>()
    );
    let mut other = doc.clone();
    other["objectRef"]["namespace"] = "kube-system".into();
    other["responseStatus"]["code"] = 200.into();
    other["sourceIPs"] = serde_json::json!(["192.168.1.1"]);
    other["annotations"] = serde_json::json!({});
    other["userAgent"] = "curl".into();
    other["impersonatedUser"] = serde_json::json!({"username": "x"});
    other["requestObject"] = serde_json::json!({});
    let raw = other.to_string();
    let d = JsonDoc {
        value: &other,
        raw: &raw,
    };
    assert!(rules.iter().all(|r| !r.matches(&d)));
}

#[test]
fn an_empty_value_list_matches_nothing() {
    for modifiers in ["", "|all", "|contains"] {
        let r = load_str(
            &format!("title: x\nlogsource: {{product: kubernetes}}\ndetection:\n  s:\n    verb{modifiers}: []\n  condition: s\n"),
            "x.yml",
        )
        .unwrap();
        let doc = serde_json::json!({"verb": "get"});
        let raw = doc.to_string();
        assert!(
            !r[0].matches(&JsonDoc {
                value: &doc,
                raw: &raw
            }),
            "{modifiers}"
        );
        let empty = serde_json::json!({});
        assert!(
            !r[0].matches(&JsonDoc {
                value: &empty,
                raw: "{}"
            }),
            "{modifiers}"
        );
    }
}

#[test]
fn placeholders_take_their_values_from_the_configuration() {
    use trailwarden_detect::placeholders::{self, Placeholders};
    let yaml = "title: x\nlogsource: {product: linux}\ndetection:\n  sel:\n    a|expand|startswith: '%admins%'\n  filter:\n    b|expand: 'ns-%exempt%'\n  condition: sel and not filter\n";
    let mut p = Placeholders::new();
    p.insert("admins".into(), vec!["root".into(), "ops-".into()]);
    p.insert("exempt".into(), vec!["dev*".into()]);
    let r = placeholders::with(&p, || load_str(yaml, "x.yml")).unwrap();
    assert!(r[0].disabled.is_none(), "{:?}", r[0].disabled);
    let doc = |a: &str, b: &str| {
        let v = serde_json::json!({"a": a, "b": b});
        r[0].matches(&trailwarden_detect::JsonDoc { value: &v, raw: "" })
    };
    assert!(doc("ops-alice", "ns-prod"));
    assert!(doc("rootkit", "ns-prod"));
    assert!(!doc("alice", "ns-prod"));
    // the exemption's wildcard works inside the expanded value
    assert!(!doc("root", "ns-dev-1"));
    // an empty list is a filter that never matches
    p.insert("exempt".into(), Vec::new());
    let r = placeholders::with(&p, || load_str(yaml, "x.yml")).unwrap();
    let v = serde_json::json!({"a": "root", "b": "ns-dev"});
    assert!(r[0].matches(&trailwarden_detect::JsonDoc { value: &v, raw: "" }));
}

#[test]
fn unsupported_features_disable_the_rule_with_the_reason() {
    let r = load_str(
        "title: x\nlogsource: {product: linux}\ndetection:\n  sel:\n    a|expand: '%admins%'\n  condition: sel\n",
        "x.yml",
    )
    .unwrap();
    assert!(r[0]
        .disabled
        .as_deref()
        .unwrap()
        .contains("placeholder %admins% has no values"));
    let r = load_str(
        "title: x\nlogsource: {product: linux}\ndetection:\n  sel:\n    a|nosuch: 1\n  condition: sel\n",
        "x.yml",
    )
    .unwrap();
    assert!(r[0]
        .disabled
        .as_deref()
        .unwrap()
        .contains("unsupported modifier `nosuch`"));
    let r = load_str(
        "title: x\nlogsource: {product: linux}\ndetection:\n  sel:\n    a: 1\n  condition: sel and other\n",
        "x.yml",
    )
    .unwrap();
    assert!(r[0].disabled.as_deref().unwrap().contains("`other`"));
    let e = load_str(
        "title: x\nlevel: severe\ndetection: {condition: a}\n",
        "x.yml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a Sigma level"), "{e}");
    let e = load_str("title: [unclosed\n", "bad.yml").unwrap_err();
    assert!(e.to_string().contains("bad.yml: not valid YAML"), "{e}");
}

/// Sigma's auditd rules look at single records: `type` plus the record's fields.
fn auditd_hits(rel: &str) -> std::collections::BTreeMap<String, usize> {
    let (rules, errors) = load_dir(&shared("sigma/linux/auditd"));
    assert!(errors.is_empty(), "{errors:?}");
    let text = std::fs::read_to_string(shared(rel)).unwrap();
    let mut hits = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let rec = trailwarden_parse::auditd::parse_record(line).unwrap();
        let mut fields = vec![("type", rec.record_type.as_str())];
        fields.extend(
            rec.fields
                .iter()
                .map(|f| (f.key.as_str(), f.value.as_str())),
        );
        let d = FlatDoc { fields, text: line };
        for r in rules
            .iter()
            .filter(|r| r.logsource.covers(&LogSource::of_format("auditd")))
        {
            if r.matches(&d) {
                *hits.entry(r.title.clone()).or_insert(0) += 1;
            }
        }
    }
    hits
}

#[test]
fn sigmahq_auditd_rules_run_against_the_auditd_corpus() {
    // OTRF's recording of binary padding with dd (T1027.001): the EXECVE record of `dd if=…`
    let hits =
        auditd_hits("corpus/otrf-security-datasets/sh_binary_padding_dd_2020-11-10081941.log");
    assert_eq!(hits.get("Binary Padding - Linux"), Some(&1), "{hits:#?}");
    // benign CentOS boot records raise nothing
    let quiet =
        auditd_hits("corpus/elastic-beats/filebeat/module/auditd/log/test/audit-cent7-node.log");
    assert!(quiet.is_empty(), "{quiet:#?}");
}

#[test]
fn deeply_nested_rules_are_errors_not_a_stack_overflow() {
    for (what, text) in [
        (
            "flow",
            format!("title: {}{}\n", "[".repeat(20_000), "]".repeat(20_000)),
        ),
        (
            "block",
            format!("title: x\ntags:\n{}x\n", "- ".repeat(20_000)),
        ),
        (
            "maps",
            format!("title: {}x{}\n", "{a: ".repeat(20_000), "}".repeat(20_000)),
        ),
        (
            "condition",
            format!(
                "title: x\ndetection:\n  a: {{f: 1}}\n  condition: {}a{}\n",
                "(".repeat(20_000),
                ")".repeat(20_000)
            ),
        ),
        (
            "not",
            format!(
                "title: x\ndetection:\n  a: {{f: 1}}\n  condition: {}a\n",
                "not ".repeat(20_000)
            ),
        ),
    ] {
        let r = load_str(&text, "deep.yml");
        let msg = match r {
            Err(e) => e.to_string(),
            Ok(rules) => rules[0].disabled.clone().unwrap_or_default(),
        };
        assert!(msg.contains("nested"), "{what}: {msg}");
    }
    // up to the limits it loads: 250 levels of indentation, one column each
    let mut text =
        String::from("title: x\nlogsource: {product: linux}\ndetection:\n  condition: a\n  a:\n");
    let mut deep = String::new();
    for i in 0..250 {
        deep.push_str(&" ".repeat(4 + i));
        deep.push_str(&format!("k{i}:\n"));
    }
    text.push_str(&deep);
    text.push_str(&" ".repeat(254));
    text.push_str("v: 1\n");
    assert!(load_str(&text, "indented.yml").is_ok());
}

const CORRELATIONS: &str = r#"
title: Denied request
name: denied
logsource: {product: kubernetes, service: audit}
detection:
  sel:
    responseStatus.code: [401, 403]
  condition: sel
---
title: Secret read
name: secret_read
logsource: {product: kubernetes, service: audit}
detection:
  sel:
    verb: [get, list]
    objectRef.resource: secrets
  condition: sel
---
title: Service account created
name: sa_created
logsource: {product: kubernetes, service: audit}
detection:
  sel: {verb: create, objectRef.resource: serviceaccounts}
  condition: sel
---
title: Binding to cluster-admin
name: admin_binding
logsource: {product: kubernetes, service: audit}
detection:
  sel: {verb: create, objectRef.resource: clusterrolebindings, requestObject.roleRef.name: cluster-admin}
  condition: sel
---
title: 401/403 burst per user
correlation:
  type: event_count
  rules: [denied]
  group-by: [user.username]
  timespan: 5m
  condition: {gte: 5}
level: high
---
title: Secrets read across namespaces
correlation:
  type: value_count
  rules: [secret_read]
  group-by: [user.username]
  timespan: 10m
  condition: {gte: 3, field: objectRef.namespace}
level: high
---
title: New service account made cluster-admin
correlation:
  type: temporal_ordered
  rules: [sa_created, admin_binding]
  group-by: [user.username]
  timespan: 1h
level: critical
"#;

fn stream(
    rules: &[trailwarden_detect::Rule],
    c: &mut trailwarden_detect::correlation::Correlator,
    events: &[(i64, serde_json::Value)],
) -> Vec<(String, Vec<String>, u64, Vec<u64>)> {
    let mut out = Vec::new();
    for (i, (t, e)) in events.iter().enumerate() {
        let raw = e.to_string();
        let d = JsonDoc {
            value: e,
            raw: &raw,
        };
        let matched: Vec<usize> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.matches(&d))
            .map(|(i, _)| i)
            .collect();
        for f in c.observe(t * 1_000_000_000, i as u64, &matched, &d) {
            out.push((rules[f.rule].title.clone(), f.group, f.count, f.evidence));
        }
    }
    out
}

fn ev(user: &str, verb: &str, resource: &str, ns: &str, code: i64) -> serde_json::Value {
    serde_json::json!({"user": {"username": user}, "verb": verb,
        "objectRef": {"resource": resource, "namespace": ns}, "responseStatus": {"code": code}})
}

#[test]
fn correlations_count_group_and_order_within_their_timespan() {
    use trailwarden_detect::correlation::Correlator;
    let rules = load_str(CORRELATIONS, "correlations.yml").unwrap();
    assert!(rules.iter().all(|r| r.disabled.is_none()), "{rules:#?}");
    let (mut c, problems) = Correlator::new(&rules, 1000);
    assert!(problems.is_empty(), "{problems:?}");
    // 5 denials by mallory within 4 minutes fire once; bob's 4 do not; a 6th within the
    // timespan joins that alert as evidence (count 1) instead of starting a new count
    let mut events = Vec::new();
    for i in 0..5 {
        events.push((i * 60, ev("mallory", "get", "pods", "payments", 403)));
    }
    for i in 0..4 {
        events.push((i * 60, ev("bob", "get", "pods", "payments", 401)));
    }
    events.push((300, ev("mallory", "get", "pods", "payments", 403)));
    events.sort_by_key(|(t, _)| *t);
    let fired = stream(&rules, &mut c, &events);
    assert_eq!(fired.len(), 2, "{fired:#?}");
    assert_eq!(fired[0].0, "401/403 burst per user");
    assert_eq!(fired[0].1, vec!["mallory".to_string()]);
    assert_eq!(fired[0].2, 5);
    assert_eq!(fired[0].3.len(), 5);
    assert_eq!((fired[1].2, fired[1].3.len()), (1, 1));
    assert_eq!(fired[1].1, fired[0].1);
    // denials spread over more than 5 minutes never reach 5 in a window
    let (mut c, _) = Correlator::new(&rules, 1000);
    let slow: Vec<_> = (0..10)
        .map(|i| (i * 100, ev("eve", "get", "pods", "x", 403)))
        .collect();
    assert!(stream(&rules, &mut c, &slow).is_empty());
    // secrets read in 3 namespaces (not 3 reads in one)
    let (mut c, _) = Correlator::new(&rules, 1000);
    let reads = vec![
        (0, ev("sa:ci", "get", "secrets", "a", 200)),
        (10, ev("sa:ci", "get", "secrets", "a", 200)),
        (20, ev("sa:ci", "list", "secrets", "b", 200)),
        (30, ev("sa:ci", "get", "secrets", "c", 200)),
    ];
    let fired = stream(&rules, &mut c, &reads);
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert_eq!(
        (fired[0].0.as_str(), fired[0].2),
        ("Secrets read across namespaces", 3)
    );
    // distinct values leave the count as their events leave the window (counted per value,
    // not by sorting the window: a value read twice stays until its last read leaves)
    let (mut c, _) = Correlator::new(&rules, 1000);
    let spread = vec![
        (0, ev("sa:ci", "get", "secrets", "a", 200)),
        (1, ev("sa:ci", "get", "secrets", "b", 200)),
        (500, ev("sa:ci", "get", "secrets", "b", 200)),
        // a (t=0) has left the 10-minute window, b is still in it through its second read
        (700, ev("sa:ci", "get", "secrets", "c", 200)),
        // b's last read (t=500) is in the window: b, c, d are 3
        (710, ev("sa:ci", "get", "secrets", "d", 200)),
    ];
    let fired = stream(&rules, &mut c, &spread);
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert_eq!((fired[0].2, fired[0].3.len()), (3, 3)); // b at t=1 has left too
    let (mut c, _) = Correlator::new(&rules, 1000);
    let expired = vec![
        (0, ev("sa:ci", "get", "secrets", "a", 200)),
        (1, ev("sa:ci", "get", "secrets", "b", 200)),
        (700, ev("sa:ci", "get", "secrets", "c", 200)),
        (710, ev("sa:ci", "get", "secrets", "a", 200)),
    ];
    assert!(stream(&rules, &mut c, &expired).is_empty());
    // ordered: service account, then the binding, by the same user — not the other way round
    let (mut c, _) = Correlator::new(&rules, 1000);
    let mut bind = ev("alice", "create", "clusterrolebindings", "", 201);
    bind["requestObject"] = serde_json::json!({"roleRef": {"name": "cluster-admin"}});
    let sa = ev("alice", "create", "serviceaccounts", "payments", 201);
    let wrong_order = vec![(0, bind.clone()), (60, sa.clone())];
    assert!(stream(&rules, &mut c, &wrong_order).is_empty());
    let right = vec![(120, bind.clone())];
    let fired = stream(&rules, &mut c, &right);
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert_eq!(fired[0].0, "New service account made cluster-admin");
}

#[test]
fn correlation_state_is_bounded_and_evictions_are_counted() {
    use trailwarden_detect::correlation::Correlator;
    let rules = load_str(CORRELATIONS, "correlations.yml").unwrap();
    let (mut c, _) = Correlator::new(&rules, 10);
    let events: Vec<_> = (0..100)
        .map(|i| (i, ev(&format!("user-{i}"), "get", "pods", "x", 403)))
        .collect();
    stream(&rules, &mut c, &events);
    assert!(c.groups() <= 10);
    assert_eq!(c.evicted, 90);
    // a reference to a rule that is not loaded is reported, not ignored
    let broken = load_str(
        "title: x\ncorrelation:\n  type: event_count\n  rules: [nosuch]\n  timespan: 5m\n  condition: {gte: 2}\n",
        "x.yml",
    )
    .unwrap();
    let (_, problems) = Correlator::new(&broken, 10);
    assert!(problems[0].1.contains("`nosuch`"), "{problems:?}");
    let bad = load_str(
        "title: x\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: soon\n  condition: {gte: 2}\n",
        "x.yml",
    )
    .unwrap();
    assert!(bad[0].disabled.as_deref().unwrap().contains("timespan"));
}

/// Regression (steady-hour RSS growth of `serve`): a correlation group whose window emptied
/// stayed until the cap, so every key ever seen was held — ~50 MiB of empty groups at the
/// 100,000 cap after 20 minutes at 10k events/s. Idle groups now go once their newest event is
/// more than two timespans behind the stream; a burst still under way keeps its group.
#[test]
fn regression_idle_correlation_groups_are_dropped_not_kept_until_the_cap() {
    use trailwarden_detect::correlation::Correlator;
    let rules = load_str(CORRELATIONS, "correlations.yml").unwrap();
    let (mut c, _) = Correlator::new(&rules, 100_000);
    // 1,000 users denied once each in the first minute (5-minute timespan)
    let mut events: Vec<_> = (0..1000)
        .map(|i| (i % 60, ev(&format!("user-{i}"), "get", "pods", "x", 403)))
        .collect();
    // mallory's burst fires at t=240 and goes on, one denial every 4 minutes, to t=1440
    for i in 0..5 {
        events.push((i * 60, ev("mallory", "get", "pods", "x", 403)));
    }
    events.sort_by_key(|(t, _)| *t);
    stream(&rules, &mut c, &events);
    assert_eq!(c.groups(), 1001);
    let mut late = Vec::new();
    for k in 1..=5 {
        late.push((240 + k * 240, ev("mallory", "get", "pods", "x", 403)));
    }
    let fired = stream(&rules, &mut c, &late);
    assert_eq!(fired.len(), 5, "the burst goes on: {fired:#?}");
    assert!(fired.iter().all(|f| f.2 == 1), "each joins the alert");
    assert_eq!(c.groups(), 1, "only mallory's group is left");
    assert_eq!(c.expired, 1000);
    assert_eq!(c.evicted, 0, "dropped as idle, not evicted at the cap");
    // a dropped user starts counting afresh: four denials are not a burst, five are
    let again: Vec<_> = (0..5)
        .map(|i| (2000 + i, ev("user-7", "get", "pods", "x", 403)))
        .collect();
    let fired = stream(&rules, &mut c, &again);
    assert_eq!(fired.len(), 1);
    assert_eq!((fired[0].1[0].as_str(), fired[0].2), ("user-7", 5));
}

/// Parse JSONL Kubernetes audit events as `ingest` does and run `rules` through the engine (the
/// path with the verb and resource prefilters and the lazy JSON view); the rule ids per event.
fn engine_hits(rules: Vec<trailwarden_detect::Rule>, lines: &[String]) -> Vec<Vec<String>> {
    let evs = parse_lines(lines);
    let mut engine = trailwarden_detect::Engine::new(rules, 1000);
    evs.iter()
        .enumerate()
        .map(|(i, (ev, raw))| {
            let mut out = Vec::new();
            engine.check(i as u64, 0, ev, raw, &mut out);
            let mut ids: Vec<String> = out
                .iter()
                .map(|d| engine.rules()[d.rule].id.clone())
                .collect();
            ids.sort();
            ids
        })
        .collect()
}

/// Regression (issue 16): an EKS audit event exported from CloudWatch Logs arrives as
/// `<time> <event>`; rules reading its JSON (annotations, the request object) saw a text that
/// was not JSON and found nothing.
#[test]
fn regression_cloudwatch_export_lines_expose_their_json_fields() {
    let rules = load_str(
        r#"
title: host network pod
id: t-hostnet
logsource: {product: kubernetes, service: audit}
detection:
  sel: {verb: create, requestObject.spec.hostNetwork: true}
  condition: sel
---
title: allowed by RBAC
id: t-rbac
logsource: {product: kubernetes, service: audit}
detection:
  sel: {annotations.authorization.k8s.io/reason|contains: 'RoleBinding'}
  condition: sel
"#,
        "cloudwatch.yml",
    )
    .unwrap();
    let event = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"e1","stage":"ResponseComplete","verb":"create","requestURI":"/api/v1/namespaces/pay/pods","user":{"username":"dev"},"objectRef":{"resource":"pods","namespace":"pay"},"responseStatus":{"code":201},"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"edit\""},"requestObject":{"kind":"Pod","spec":{"hostNetwork":true,"containers":[{"name":"c","image":"nginx"}]}}}"#;
    let lines = [
        format!("2026-11-21T10:00:00.000Z {event}"),
        event.to_string(),
    ];
    let want = vec!["t-hostnet".to_string(), "t-rbac".to_string()];
    assert_eq!(engine_hits(rules, &lines), vec![want.clone(), want]);
}

/// JSONL lines parsed as `ingest` does: each event with its raw bytes.
fn parse_lines(lines: &[String]) -> Vec<(trailwarden_model::Event, Vec<u8>)> {
    let mut evs = Vec::new();
    let mut sink = |r: trailwarden_model::Record| -> Result<(), String> {
        if let trailwarden_model::Body::Event(ev) = r.body {
            evs.push((*ev, r.raw));
        }
        Ok(())
    };
    let text = lines.join("\n");
    let mut ing = trailwarden_parse::ingest::Ingestor::new(Default::default(), &mut sink);
    ing.ingest_bytes("test", text.as_bytes()).unwrap();
    drop(ing);
    assert_eq!(evs.len(), lines.len(), "every line is an event");
    evs
}

/// Regression (issue 16): field tests equal in two rules are evaluated once per event — but
/// `re` and `re|i` on the same pattern, whose regexes print alike, are different tests, and
/// shared tests still give each rule its own answer.
#[test]
fn shared_field_tests_keep_regex_flags_and_per_rule_answers() {
    let rules = load_str(
        r#"
title: cased regex
id: t-re
logsource: {product: kubernetes, service: audit}
detection:
  sel:
    user.username|re: '^ALICE$'
  condition: sel
level: low
---
title: case-insensitive regex
id: t-re-i
logsource: {product: kubernetes, service: audit}
detection:
  sel:
    user.username|re|i: '^ALICE$'
  condition: sel
level: low
---
title: shared filter, kept
id: t-shared-a
logsource: {product: kubernetes, service: audit}
detection:
  sel:
    verb: create
  filter:
    user.username: bob
  condition: sel and not filter
level: low
---
title: shared filter, inverted
id: t-shared-b
logsource: {product: kubernetes, service: audit}
detection:
  sel:
    user.username: bob
  condition: sel
level: low
"#,
        "memo.yml",
    )
    .unwrap();
    let line = |user: &str| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-{user}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/p/pods","verb":"create","user":{{"username":"{user}"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"pods","namespace":"p","apiVersion":"v1"}},"responseStatus":{{"code":201}},"requestReceivedTimestamp":"2026-12-03T10:00:00.000000Z","stageTimestamp":"2026-12-03T10:00:00.001000Z"}}"#
        )
    };
    let hits = engine_hits(rules, &[line("alice"), line("ALICE"), line("bob")]);
    assert_eq!(hits[0], ["t-re-i", "t-shared-a"]);
    assert_eq!(hits[1], ["t-re", "t-re-i", "t-shared-a"]);
    assert_eq!(hits[2], ["t-shared-b"]);
}

/// Regression guard for the detection prefilters (issue 16): skipping the JSON parse when a key
/// of a field's path is not in the text, and running only the rules naming the event's
/// resource, must not change what matches — a key spelled with `\u` escapes, a key holding dots
/// and slashes, a resource in capitals, another resource.
#[test]
fn prefilters_do_not_change_matches_escaped_keys_dotted_keys_resources() {
    let rules = load_str(
        r#"
title: evil image in a pod
id: t-image
logsource: {product: kubernetes, service: audit}
detection:
  sel:
    verb: create
    objectRef.resource: pods
    requestObject.spec.containers.image|startswith: 'evil.example/'
  condition: sel
level: high
---
title: forbidden by the authorizer
id: t-forbid
logsource: {product: kubernetes, service: audit}
detection:
  sel:
    annotations.authorization.k8s.io/decision: forbid
  condition: sel
level: low
"#,
        "prefilters.yml",
    )
    .unwrap();
    let event = |id: &str, resource: &str, extra: &str| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/p/{resource}","verb":"create","user":{{"username":"alice"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"{resource}","namespace":"p","apiVersion":"v1"}},"responseStatus":{{"code":201}},"requestReceivedTimestamp":"2026-12-03T10:00:00.000000Z","stageTimestamp":"2026-12-03T10:00:00.001000Z"{extra}}}"#
        )
    };
    let pod =
        r#","requestObject":{"spec":{"containers":[{"name":"a","image":"evil.example/miner:1"}]}}"#;
    let escaped = r#","\u0072equestObject":{"spec":{"containers":[{"name":"a","\u0069mage":"evil.example/miner:1"}]}}"#;
    let forbid = r#","annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}"#;
    let lines = vec![
        event("1", "pods", pod),
        event("2", "pods", escaped),
        event("3", "PODS", pod),
        event("4", "configmaps", pod),
        event("5", "pods", forbid),
        event("6", "pods", ""),
    ];
    let hits = engine_hits(rules, &lines);
    let want: Vec<Vec<&str>> = vec![
        vec!["t-image"],
        vec!["t-image"],
        vec!["t-image"],
        vec![],
        vec!["t-forbid"],
        vec![],
    ];
    assert_eq!(hits, want);
}

/// Regression guard for the per-value answers of costly tests (issue 16): a user agent against
/// a list of substrings, a user name against many prefixes, an address against networks, a
/// regex — remembered per value across events — must answer as the tests do on their own,
/// when values repeat, when more distinct values arrive than the cache holds (it is emptied
/// and refilled), and when a value is too long to be remembered.
#[test]
fn remembered_answers_of_costly_tests_equal_fresh_ones() {
    let rules = load_str(
        r#"
title: scanner agent
id: t-agent
logsource: {product: kubernetes, service: audit}
detection:
  sel:
    userAgent|contains: [kube-hunter, peirates, kdigger]
  condition: sel
level: low
---
title: system identity from outside
id: t-outside
logsource: {product: kubernetes, service: audit}
detection:
  sel:
    user.username|startswith: ['system:serviceaccount:', 'system:node:', 'eks:', 'aks:']
  private:
    sourceIPs|cidr: [10.0.0.0/8, 192.168.0.0/16, 172.16.0.0/12]
  condition: sel and not private
level: low
---
title: odd name
id: t-regex
logsource: {product: kubernetes, service: audit}
detection:
  sel:
    objectRef.name|re: '^x-[0-9]+-odd$'
  condition: sel
level: low
"#,
        "cache.yml",
    )
    .unwrap();
    let line = |i: usize, agent: &str, user: &str, ip: &str, name: &str| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/p/pods","verb":"get","user":{{"username":"{user}"}},"sourceIPs":["{ip}"],"userAgent":"{agent}","objectRef":{{"resource":"pods","namespace":"p","name":"{name}","apiVersion":"v1"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"2026-12-03T10:00:00.000000Z","stageTimestamp":"2026-12-03T10:00:00.001000Z"}}"#
        )
    };
    let long = format!("kubectl/{}peirates", "x".repeat(400));
    let mut lines = Vec::new();
    for i in 0..12_000 {
        // a few values that repeat, and a stream of new ones (more than the cache holds)
        let agent = match i % 4 {
            0 => "kubectl/v1.30.1 (linux/amd64)".to_string(),
            1 => "Kube-Hunter/0.6".to_string(),
            2 => long.clone(),
            _ => format!("client-{i}/1.0 kdigger-{}", i % 7 == 0),
        };
        let user = match i % 3 {
            0 => "system:serviceaccount:p:app".to_string(),
            1 => format!("user-{i}"),
            _ => format!("EKS:node-{}", i % 5),
        };
        let ip = match i % 5 {
            0 => "10.1.2.3".to_string(),
            1 => format!("203.0.113.{}", i % 250),
            _ => format!("172.{}.0.1", 10 + i % 12),
        };
        lines.push(line(
            i,
            &agent,
            &user,
            &ip,
            &format!("x-{i}-{}", if i % 6 == 0 { "odd" } else { "even" }),
        ));
    }
    let hits = engine_hits(rules.clone(), &lines);
    // the same rules, each test evaluated afresh (`Engine::matches`: no memo, no cache)
    let engine = trailwarden_detect::Engine::new(rules, 1000);
    let fresh: Vec<Vec<String>> = parse_lines(&lines)
        .iter()
        .map(|(ev, raw)| {
            let mut ids = Vec::new();
            engine.matches(ev, raw, &mut |i, _| ids.push(engine.rules()[i].id.clone()));
            ids.sort();
            ids
        })
        .collect();
    assert_eq!(hits, fresh);
    let count = |id: &str| hits.iter().filter(|h| h.iter().any(|x| x == id)).count();
    // the answers are not all one way
    assert!(
        count("t-agent") > 4000 && count("t-agent") < 12_000,
        "{}",
        count("t-agent")
    );
    assert!(
        count("t-outside") > 400 && count("t-outside") < 8000,
        "{}",
        count("t-outside")
    );
    assert_eq!(count("t-regex"), 2000);
}
