//! The PCI DSS 10.2.1.x classifier, case by case: one row per rule of the table in
//! `trailwarden_model::pci`, with a positive and a near-miss negative where the rule has an edge.

#![allow(clippy::unwrap_used)] // test harness: a failed unwrap is a failed test

use trailwarden_model::{Classifier, ClassifierConfig, Event, PciCategory};

fn ev(json: &str) -> Event {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn cats(json: &str) -> Vec<&'static str> {
    Classifier::default()
        .classify(&ev(json))
        .iter()
        .map(PciCategory::requirement)
        .collect()
}

#[track_caller]
fn has(json: &str, req: &str) {
    let c = cats(json);
    assert!(c.contains(&req), "expected {req} in {c:?} for {json}");
}

#[track_caller]
fn lacks(json: &str, req: &str) {
    let c = cats(json);
    assert!(
        !c.contains(&req),
        "did not expect {req} in {c:?} for {json}"
    );
}

#[test]
fn k8s_cardholder_data_access_10_2_1_1() {
    has(
        r#"{"format":"k8s-audit","action":"get","resource":{"resource":"secrets","namespace":"cde-payments","name":"db"}}"#,
        "10.2.1.1",
    );
    has(
        r#"{"format":"aks","category":"kube-audit","action":"list","resource":{"resource":"pods","namespace":"payments"}}"#,
        "10.2.1.1",
    );
    lacks(
        r#"{"format":"k8s-audit","action":"get","resource":{"resource":"secrets","namespace":"checkout"}}"#,
        "10.2.1.1",
    );
    // configurable
    let cfg = ClassifierConfig {
        cde_namespaces: vec!["checkout".into()],
        ..Default::default()
    };
    let c = Classifier::new(cfg).classify(&ev(r#"{"format":"k8s-audit","action":"get","resource":{"resource":"secrets","namespace":"checkout"}}"#));
    assert!(c.contains(PciCategory::CardholderDataAccess));
}

#[test]
fn k8s_admin_actions_10_2_1_2() {
    has(
        r#"{"format":"k8s-audit","action":"get","user":{"name":"bob","groups":["system:masters"]}}"#,
        "10.2.1.2",
    );
    has(
        r#"{"format":"k8s-audit","action":"get","user":{"name":"kubernetes-admin"}}"#,
        "10.2.1.2",
    );
    has(
        r#"{"format":"k8s-audit","action":"get","user":{"name":"bob","impersonated":{"name":"x","groups":["system:masters"]}}}"#,
        "10.2.1.2",
    );
    has(
        r#"{"format":"k8s-audit","action":"delete","user":{"name":"ops@example.com"},"authz":{"decision":"allow","reason":"RBAC: allowed by ClusterRoleBinding \"ops\" of ClusterRole \"cluster-admin\" to User \"ops@example.com\""}}"#,
        "10.2.1.2",
    );
    lacks(
        r#"{"format":"k8s-audit","action":"get","user":{"name":"system:serviceaccount:a:b","groups":["system:serviceaccounts"]}}"#,
        "10.2.1.2",
    );
}

#[test]
fn k8s_audit_log_access_10_2_1_3() {
    has(
        r#"{"format":"k8s-audit","action":"get","resource":{"resource":"pods","subresource":"log","namespace":"x","name":"p"}}"#,
        "10.2.1.3",
    );
    has(
        r#"{"format":"k8s-audit","action":"list","resource":{"resource":"configmaps","namespace":"trailwarden"}}"#,
        "10.2.1.3",
    );
    lacks(
        r#"{"format":"k8s-audit","action":"get","resource":{"resource":"pods","namespace":"x","name":"p"}}"#,
        "10.2.1.3",
    );
}

#[test]
fn k8s_invalid_access_10_2_1_4() {
    has(
        r#"{"format":"k8s-audit","action":"list","outcome":{"result":"failure","code":403}}"#,
        "10.2.1.4",
    );
    has(
        r#"{"format":"k8s-audit","action":"list","outcome":{"result":"failure","code":401}}"#,
        "10.2.1.4",
    );
    has(
        r#"{"format":"k8s-audit","action":"list","authz":{"decision":"forbid"}}"#,
        "10.2.1.4",
    );
    lacks(
        r#"{"format":"k8s-audit","action":"get","outcome":{"result":"failure","code":404}}"#,
        "10.2.1.4",
    );
}

#[test]
fn k8s_credential_changes_10_2_1_5() {
    for (verb, res, sub) in [
        ("create", "clusterrolebindings", ""),
        ("patch", "roles", ""),
        ("delete", "serviceaccounts", ""),
        ("create", "serviceaccounts", "token"),
        ("create", "certificatesigningrequests", ""),
        ("update", "certificatesigningrequests", "approval"),
    ] {
        let sub = if sub.is_empty() {
            String::new()
        } else {
            format!(",\"subresource\":\"{sub}\"")
        };
        has(
            &format!(
                r#"{{"format":"k8s-audit","action":"{verb}","resource":{{"resource":"{res}"{sub}}}}}"#
            ),
            "10.2.1.5",
        );
    }
    has(
        r#"{"format":"k8s-audit","action":"list","user":{"name":"a","impersonated":{"name":"b"}}}"#,
        "10.2.1.5",
    );
    lacks(
        r#"{"format":"k8s-audit","action":"get","resource":{"resource":"clusterrolebindings"}}"#,
        "10.2.1.5",
    );
}

#[test]
fn k8s_audit_logging_changes_10_2_1_6() {
    has(
        r#"{"format":"k8s-audit","action":"update","resource":{"resource":"configmaps","namespace":"kube-system","name":"audit-policy"}}"#,
        "10.2.1.6",
    );
    has(
        r#"{"format":"k8s-audit","action":"delete","resource":{"resource":"daemonsets","namespace":"logging","name":"fluent-bit"}}"#,
        "10.2.1.6",
    );
    has(
        r#"{"format":"k8s-audit","action":"patch","resource":{"resource":"deployments","namespace":"trailwarden","name":"trailwarden"}}"#,
        "10.2.1.6",
    );
    lacks(
        r#"{"format":"k8s-audit","action":"get","resource":{"resource":"daemonsets","namespace":"logging","name":"fluent-bit"}}"#,
        "10.2.1.6",
    );
}

#[test]
fn k8s_system_objects_10_2_1_7() {
    has(
        r#"{"format":"k8s-audit","action":"create","resource":{"resource":"namespaces","name":"x"}}"#,
        "10.2.1.7",
    );
    has(
        r#"{"format":"k8s-audit","action":"delete","resource":{"resource":"pods","namespace":"kube-system","name":"x"}}"#,
        "10.2.1.7",
    );
    lacks(
        r#"{"format":"k8s-audit","action":"create","resource":{"resource":"pods","namespace":"default"}}"#,
        "10.2.1.7",
    );
    lacks(
        r#"{"format":"k8s-audit","action":"create","resource":{"resource":"subjectaccessreviews"}}"#,
        "10.2.1.7",
    );
    lacks(
        r#"{"format":"k8s-audit","action":"create","resource":{"resource":"pods","namespace":"kube-system","subresource":"exec"}}"#,
        "10.2.1.7",
    );
}

#[test]
fn aks_text_categories_carry_no_request() {
    assert!(cats(r#"{"format":"aks","category":"kube-apiserver","message":"E0101 x","user":{"name":"kubernetes-admin"}}"#).is_empty());
}

#[test]
fn auditd_rules() {
    has(
        r#"{"format":"auditd","category":"USER_AUTH","outcome":{"result":"failure"}}"#,
        "10.2.1.4",
    );
    has(
        r#"{"format":"auditd","category":"SYSCALL","action":"openat","outcome":{"result":"failure","code":-13},"attrs":{"record_types":"SYSCALL,PATH"}}"#,
        "10.2.1.4",
    );
    has(
        r#"{"format":"auditd","category":"ADD_USER","attrs":{"record_types":"ADD_USER"}}"#,
        "10.2.1.5",
    );
    has(
        r#"{"format":"auditd","category":"SYSCALL","action":"renameat","resource":{"resource":"file","name":"/etc/shadow"},"attrs":{"record_types":"SYSCALL,PATH"}}"#,
        "10.2.1.5",
    );
    lacks(
        r#"{"format":"auditd","category":"SYSCALL","action":"openat","resource":{"resource":"file","name":"/etc/shadow"},"attrs":{"record_types":"SYSCALL,PATH"}}"#,
        "10.2.1.5",
    );
    has(
        r#"{"format":"auditd","category":"CONFIG_CHANGE","attrs":{"record_types":"CONFIG_CHANGE"}}"#,
        "10.2.1.6",
    );
    has(
        r#"{"format":"auditd","category":"SYSCALL","action":"execve","attrs":{"record_types":"SYSCALL","exe":"/usr/sbin/auditctl"}}"#,
        "10.2.1.6",
    );
    has(
        r#"{"format":"auditd","category":"SYSCALL","action":"execve","attrs":{"record_types":"SYSCALL","auid":"1000","uid":"0"}}"#,
        "10.2.1.2",
    );
    lacks(
        r#"{"format":"auditd","category":"SYSCALL","action":"execve","attrs":{"record_types":"SYSCALL","auid":"4294967295","auid_unset":"true","uid":"0"}}"#,
        "10.2.1.2",
    );
    has(
        r#"{"format":"auditd","category":"KERN_MODULE","attrs":{"record_types":"SYSCALL,KERN_MODULE"}}"#,
        "10.2.1.7",
    );
    has(
        r#"{"format":"auditd","category":"SYSCALL","resource":{"resource":"file","name":"/var/log/audit/audit.log"},"attrs":{"record_types":"SYSCALL,PATH"}}"#,
        "10.2.1.3",
    );
}

#[test]
fn azure_rules() {
    has(
        r#"{"format":"azure-activity","category":"Administrative","action":"MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE"}"#,
        "10.2.1.5",
    );
    has(
        r#"{"format":"azure-activity","category":"Administrative","action":"MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE"}"#,
        "10.2.1.6",
    );
    has(
        r#"{"format":"azure-activity","category":"Administrative","action":"Microsoft.OperationalInsights/workspaces/query/read"}"#,
        "10.2.1.3",
    );
    has(
        r#"{"format":"azure-activity","category":"Administrative","action":"X/WRITE","outcome":{"result":"failure","code":403}}"#,
        "10.2.1.4",
    );
    has(
        r#"{"format":"signin","outcome":{"result":"failure","code":50126}}"#,
        "10.2.1.4",
    );
    lacks(
        r#"{"format":"signin","outcome":{"result":"success","code":0}}"#,
        "10.2.1.4",
    );
}

#[test]
fn app_and_syslog_rules() {
    has(
        r#"{"format":"app","action":"card.read","resource":{"name":"cardholder/1"}}"#,
        "10.2.1.1",
    );
    lacks(
        r#"{"format":"app","action":"card.read","resource":{"name":"company/1"}}"#,
        "10.2.1.1",
    );
    has(
        r#"{"format":"app","action":"login","outcome":{"result":"failure","reason":"denied"}}"#,
        "10.2.1.4",
    );
    has(
        r#"{"format":"app","action":"user.password.reset"}"#,
        "10.2.1.5",
    );
    has(
        r#"{"format":"syslog","message":"Failed password for root from 1.2.3.4 port 22 ssh2","attrs":{"app":"sshd"}}"#,
        "10.2.1.4",
    );
    has(
        r#"{"format":"syslog","message":"alice : TTY=pts/0 ; USER=root ; COMMAND=/bin/ls","attrs":{"app":"sudo"}}"#,
        "10.2.1.2",
    );
    has(
        r#"{"format":"syslog","category":"USER_AUTH","outcome":{"result":"failure"},"attrs":{"audit_type":"USER_AUTH","record_types":"USER_AUTH"}}"#,
        "10.2.1.4",
    );
}

#[test]
fn completeness_tells_absent_from_empty() {
    use trailwarden_model::FieldState::*;
    let c = ev(
        r#"{"format":"k8s-audit","action":"","user":{"groups":[]},"time":"2026-01-01T00:00:00Z"}"#,
    )
    .completeness();
    assert_eq!(c.event_type, Empty);
    assert_eq!(c.user, Empty);
    assert_eq!(c.time, Present);
    assert_eq!(c.origin, Absent);
    assert_eq!(c.resource, Absent);
    assert_eq!(c.outcome, Absent);
    let c = ev(r#"{"format":"k8s-audit","request_uri":"/healthz","outcome":{"result":"success","code":200},"origin":{"ips":["::1"]}}"#).completeness();
    assert_eq!(
        (c.resource, c.outcome, c.origin),
        (Present, Present, Present)
    );
}
