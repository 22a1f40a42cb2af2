//! The built-in rule pack (`rules/`): every rule is complete and documented, passes its own
//! positive and negative test events, and the pack raises Falco's intents on Falco's traces.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use trailwarden_detect::{load_dir, Detection, Engine, Rule};
use trailwarden_model::{Body, Record, Timestamp};
use trailwarden_parse::ingest::{Ingestor, Options};

fn pack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

fn pack() -> Vec<Rule> {
    let (rules, errors) = load_dir(&pack_dir());
    assert!(errors.is_empty(), "{errors:#?}");
    rules
}

/// Run the whole pack (fresh correlation state) over the records parsed from `bytes`; the
/// titles of the rules that raised a detection, and the number of events parsed. The parser
/// pulls the request-object fields the rules read, as ingest has it do, and the detections
/// must be those of a parse that leaves the objects to the engine.
fn run(rules: &[Rule], bytes: &[u8]) -> (BTreeSet<String>, usize) {
    let pulled = run_parsed(rules, bytes, true);
    let unpulled = run_parsed(rules, bytes, false);
    assert_eq!(
        pulled, unpulled,
        "detections differ when the parser pulls the request object"
    );
    pulled
}

fn run_parsed(rules: &[Rule], bytes: &[u8], pull: bool) -> (BTreeSet<String>, usize) {
    let mut engine = Engine::new(rules.to_vec(), 10_000);
    assert!(engine.problems.is_empty(), "{:?}", engine.problems);
    let opts = Options {
        pull: pull.then(|| std::sync::Arc::clone(engine.paths())),
        ..Options::default()
    };
    let mut records: Vec<Record> = Vec::new();
    {
        let mut sink = |r: Record| -> Result<(), String> {
            records.push(r);
            Ok(())
        };
        let t = Timestamp::parse("2026-11-21T00:00:00Z").unwrap();
        let mut ing = Ingestor::new(opts, &mut sink).with_clock(move || t);
        ing.ingest_bytes("test", bytes).unwrap();
    }
    let mut out: Vec<Detection> = Vec::new();
    let mut events = 0;
    for (i, r) in records.iter().enumerate() {
        if let Body::Event(ev) = &r.body {
            events += 1;
            let time = ev.time.unwrap_or(r.received).0;
            engine.check(i as u64, time, ev, &r.raw, &mut out);
        }
    }
    let titles = out
        .iter()
        .map(|d| engine.rules()[d.rule].title.clone())
        .collect();
    (titles, events)
}

const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

#[test]
fn every_pack_rule_is_complete_and_passes_its_test_events() {
    let rules = pack();
    assert!(rules.len() >= 75, "{}", rules.len());
    let mut ids = BTreeSet::new();
    let mut failures = Vec::new();
    let mut files = BTreeSet::new();
    for r in &rules {
        assert!(ids.insert(r.id.clone()), "duplicate id {}", r.id);
        assert!(r.disabled.is_none(), "{}: {:?}", r.source, r.disabled);
        assert!(
            LEVELS.contains(&r.level.as_str()),
            "{}: level {}",
            r.source,
            r.level
        );
        assert!(!r.description.is_empty(), "{}: no description", r.source);
        assert!(uuid_like(&r.id), "{}: id {} is not a UUID", r.source, r.id);
        // base rules of correlations only feed them; the alerting rules carry the tags
        let base = r.name.is_some() && r.correlation.is_none() && r.level == "informational";
        if !base {
            assert!(
                r.tags.iter().any(|t| t.starts_with("attack.t")),
                "{}: no ATT&CK technique tag",
                r.source
            );
            assert!(
                r.tags.iter().any(|t| t.starts_with("pci_dss.10.")),
                "{}: no PCI DSS 10.x tag",
                r.source
            );
            assert!(
                !r.falsepositives.is_empty(),
                "{}: no falsepositives",
                r.source
            );
        }
        files.insert(r.source.split('#').next().unwrap_or(&r.source).to_string());
    }
    let (mut gke, mut k8s_files) = (0, 0);
    for f in &files {
        let tests = Path::new(f).with_extension("tests.jsonl");
        let text =
            std::fs::read_to_string(&tests).unwrap_or_else(|e| panic!("{}: {e}", tests.display()));
        let file_rules: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.source.split('#').next() == Some(f.as_str()))
            .collect();
        // the rule under test: the correlation of a collection, else the only rule
        let target = file_rules
            .iter()
            .find(|r| r.correlation.is_some())
            .or(file_rules.first())
            .unwrap();
        let (mut pos, mut neg) = (0, 0);
        for (n, line) in text.lines().enumerate() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let bytes = match case.get("raw") {
                Some(raw) => raw.as_str().unwrap().as_bytes().to_vec(),
                None => case["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.to_string() + "\n")
                    .collect::<String>()
                    .into_bytes(),
            };
            let (fired, events) = run(&rules, &bytes);
            assert!(events > 0, "{}:{}: no event parsed", tests.display(), n + 1);
            let expect = case["expect"] == "match";
            if expect {
                pos += 1;
            } else {
                neg += 1;
            }
            if fired.contains(&target.title) != expect {
                failures.push(format!(
                    "{}:{} ({}): expected {} of `{}`; fired: {fired:?}",
                    tests.display(),
                    n + 1,
                    case["about"],
                    if expect {
                        "a detection"
                    } else {
                        "no detection"
                    },
                    target.title
                ));
            }
        }
        assert!(
            pos >= 1 && neg >= 1,
            "{}: needs a positive and a negative",
            tests.display()
        );
        // every rule: a near miss written from a peer's exclusions
        let abouts: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["about"].to_string())
            .collect();
        assert!(
            abouts.iter().any(|a| a.starts_with("\"near miss")),
            "{}: no near-miss negative",
            tests.display()
        );
        if f.contains("/k8s/") {
            // Kubernetes rules: the positive as EKS delivers it (GKE too unless the rule reads
            // what GKE does not record: groups, impersonation, the request URI's query)
            assert!(
                abouts.iter().any(|a| a.starts_with("\"EKS shape")),
                "{}: no EKS-shaped positive",
                tests.display()
            );
            gke += abouts
                .iter()
                .filter(|a| a.starts_with("\"GKE shape"))
                .count();
            k8s_files += 1;
        }
    }
    // every Kubernetes rule but the five that read groups, impersonation or the URI's query
    assert!(
        gke + 5 >= k8s_files,
        "{gke} GKE-shaped positives for {k8s_files} rules"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

fn falco(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/falcosecurity-falco")
        .join(rel)
}

/// The pod-security intents Falco tests with "also used as negative for other rule variants":
/// a pod-creation trace must raise exactly those of them that Falco expects.
const POD_INTENTS: [&str; 3] = [
    "Create Privileged Pod",
    "Create Sensitive Mount Pod",
    "Create HostNetwork Pod",
];

#[test]
fn falco_traces_raise_alerts_of_the_same_intent_and_negatives_do_not() {
    let rules = pack();
    let titles: BTreeSet<&str> = rules.iter().map(|r| r.title.as_str()).collect();
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(falco("_derived_trace_file_labels.json")).unwrap())
            .unwrap();
    // What each negative trace must not raise, from test/falco_k8s_audit_tests.yaml (the rules
    // those `detect: False` cases check). `None`: Falco's test expects no alert at all.
    let negatives: [(&str, Option<&[&str]>); 8] = [
        (
            "create_configmap_no_sensitive_values.json",
            Some(&["Create/Modify Configmap With Private Credentials"]),
        ),
        ("create_kube_system_secret.json", None),
        ("create_service_account_token_secret.json", None),
        (
            "create_nginx_pod_nohostnetwork.json",
            Some(&["Create HostNetwork Pod"]),
        ),
        (
            "create_nginx_pod_unsensitive_mount.json",
            Some(&["Create Sensitive Mount Pod"]),
        ),
        (
            "create_nginx_service_nonodeport.json",
            Some(&["Create NodePort Service"]),
        ),
        ("fal_01_003.json", None),
        // Falco's case allows namespace foo through an extra rules file; the user check stands
        (
            "minikube_creates_namespace_foo.json",
            Some(&["Disallowed K8s User"]),
        ),
    ];
    let mut failures = Vec::new();
    let mut checked = 0;
    for (file, label) in labels.as_object().unwrap() {
        let bytes = std::fs::read(falco(&format!("test/trace_files/k8s_audit/{file}"))).unwrap();
        let (fired, _) = run(&rules, &bytes);
        for want in label["positive_rules"].as_array().unwrap() {
            let want = want.as_str().unwrap();
            if want == "json_pointer_example" {
                continue; // a demo rule of Falco's test suite (json pointer syntax), no intent
            }
            assert!(titles.contains(want), "the pack has no rule for `{want}`");
            checked += 1;
            if !fired.contains(want) {
                failures.push(format!("{file}: expected `{want}`, fired {fired:?}"));
            }
        }
        let positives: Vec<&str> = label["positive_rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        if file.starts_with("create_nginx_pod") || file.starts_with("create_pod_") {
            for intent in POD_INTENTS {
                if !positives.contains(&intent) && fired.contains(intent) {
                    failures.push(format!("{file}: raised `{intent}`, which Falco does not"));
                }
            }
        }
        if let Some((_, forbidden)) = negatives.iter().find(|(f, _)| f == file) {
            checked += 1;
            match forbidden {
                None if !fired.is_empty() => {
                    failures.push(format!("{file}: expected no alert, fired {fired:?}"))
                }
                Some(list) => {
                    for f in *list {
                        if fired.contains(*f) {
                            failures.push(format!("{file}: negative for `{f}`, but it fired"));
                        }
                    }
                }
                None => {}
            }
        }
    }
    assert!(checked >= 45, "{checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Regression guard for the engine's fast paths: the fields it reads from the normalized event,
/// and every field of the pack pulled out of the text in one pass, must give the values the
/// parsed JSON holds, for every Kubernetes event of the corpus.
#[test]
fn event_fields_read_from_the_normalized_event_equal_the_json_values() {
    use trailwarden_detect::engine::EventDoc;
    use trailwarden_detect::extract::Paths;
    use trailwarden_detect::{Doc, JsonDoc, Val};
    let rules = pack();
    let mut pack_fields: Vec<&str> = rules.iter().flat_map(Rule::fields).collect();
    pack_fields.sort();
    pack_fields.dedup();
    let paths = Paths::new(pack_fields.iter().copied());
    let mut extracted_present = 0;
    const FIELDS: [&str; 15] = [
        "verb",
        "stage",
        "requestURI",
        "objectRef.resource",
        "objectRef.subresource",
        "objectRef.namespace",
        "objectRef.name",
        "objectRef.apiGroup",
        "user.username",
        "user.groups",
        "impersonatedUser.username",
        "impersonatedUser.groups",
        "userAgent",
        "sourceIPs",
        "responseStatus.code",
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x == "json" || x == "jsonl" || x == "log")
            {
                files.push(p);
            }
        }
    }
    let mut checked = 0;
    let mut strings_in_place = 0;
    for f in files {
        let mut records = Vec::new();
        {
            let mut sink = |r: Record| -> Result<(), String> {
                records.push(r);
                Ok(())
            };
            let mut ing = Ingestor::new(Options::default(), &mut sink);
            let _ = ing.ingest_path(f.to_str().unwrap(), &mut |_, _| {});
        }
        for r in &records {
            let Body::Event(ev) = &r.body else { continue };
            if !matches!(
                ev.format,
                trailwarden_model::Format::K8sAudit | trailwarden_model::Format::Aks
            ) {
                continue;
            }
            let text = ev
                .payload
                .clone()
                .unwrap_or_else(|| String::from_utf8_lossy(&r.raw).into_owned());
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue; // truncated AKS payloads: only the normalized form exists
            };
            let json = JsonDoc {
                value: &value,
                raw: &text,
            };
            let fast = EventDoc::new(ev, &r.raw);
            for field in FIELDS {
                let mut want: Vec<Val> = json.values(field).to_vec();
                // absent and null are the same to Sigma's `null`
                want.retain(|v| *v != Val::Null);
                let got: Vec<Val> = fast.values(field).to_vec();
                let norm = |v: &[Val]| -> Vec<String> {
                    v.iter()
                        .map(|x| match x {
                            Val::Str(s) | Val::Num(_, s) => s.to_string(),
                            other => format!("{other:?}"),
                        })
                        .collect()
                };
                assert_eq!(norm(&got), norm(&want), "{}: {field}", f.display());
                // a field of one string read in place is the same value
                let n = trailwarden_detect::doc::Normalized::of(field).unwrap();
                if let Some(one) = fast.normalized_str(n) {
                    let by_vals = fast.normalized(n).unwrap();
                    let by_vals: Vec<&str> = by_vals
                        .iter()
                        .map(|v| match v {
                            Val::Str(s) => s.as_ref(),
                            _ => panic!("{field} is not a string field"),
                        })
                        .collect();
                    assert_eq!(one.into_iter().collect::<Vec<_>>(), by_vals, "{field}");
                    strings_in_place += 1;
                }
                checked += 1;
            }
            let one_pass = EventDoc::with_paths(ev, &r.raw, &paths);
            for field in &pack_fields {
                let want: Vec<Val> = json.values(field).to_vec();
                let mut got: Vec<Val> = one_pass.values(field).to_vec();
                if FIELDS.contains(field) {
                    // normalized fields: absent and null are the same (checked above)
                    got.retain(|v| *v != Val::Null);
                    let mut want = want.clone();
                    want.retain(|v| *v != Val::Null);
                    assert_eq!(got, want, "{}: {field}", f.display());
                } else {
                    assert_eq!(got, want, "{}: {field}", f.display());
                    if !got.is_empty() && field.starts_with("requestObject.") {
                        extracted_present += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "{checked}");
    assert!(extracted_present > 10, "{extracted_present}");
    assert!(strings_in_place > 1000, "{strings_in_place}");
}

/// Regression (issue 17): a burst of 65 refusals raised evidence for 60 of them, because the
/// count restarted after the threshold and the tail never reached it again.
#[test]
fn burst_alerts_carry_every_event_of_the_burst() {
    let rules = pack();
    let mut engine = Engine::new(rules, 10_000);
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(pack_dir().join("k8s/access_denied_burst.tests.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let base = first["events"][0].to_string();
    let burst = engine
        .rules()
        .iter()
        .position(|r| r.title == "Burst Of Denied API Requests Per User")
        .unwrap();
    let mut evidence = BTreeSet::new();
    let mut out = Vec::new();
    for i in 0..65u64 {
        let raw = base.replace("\"auditID\": \"", &format!("\"auditID\": \"{i}-"));
        let ev = trailwarden_parse::k8s::parse_event(raw.as_bytes()).unwrap();
        engine.check(i, 1_000_000_000 * i as i64, &ev, raw.as_bytes(), &mut out);
    }
    for d in out.iter().filter(|d| d.rule == burst) {
        evidence.extend(d.evidence.iter().copied());
    }
    assert_eq!(evidence.len(), 65, "{evidence:?}");
    // once the burst is over (a quiet timespan), counting starts again
    let mut out = Vec::new();
    let later = 1_000_000_000 * 3600;
    for i in 0..9u64 {
        let ev = trailwarden_parse::k8s::parse_event(base.as_bytes()).unwrap();
        engine.check(100 + i, later + i as i64, &ev, base.as_bytes(), &mut out);
    }
    assert!(
        out.iter().all(|d| d.rule != burst),
        "9 refusals after the burst"
    );
}
