//! The tables queries see: the native `events` and `records`, trailwarden's own
//! `TrailwardenAccess`, and the Log Analytics tables people already query, each a view over the
//! ledger's records showing only the rows of its kind and the columns users expect.
//! `docs/TABLES.md` is generated from [`catalog_markdown`] (a test keeps it in step).

use crate::rows;
use crate::types::KType;
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::functions::core::expr_fn::{coalesce, get_field};
use datafusion::functions::string::expr_fn::lower;
use datafusion::logical_expr::{lit, Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF};
use datafusion::prelude::when;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A column reference by exact name (no qualifier parsing: names may contain dots).
pub fn c(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// A typed null.
fn null_str() -> Expr {
    lit(ScalarValue::Utf8(None))
}

/// A queryable table.
#[derive(Clone, Debug)]
pub struct Table {
    /// Its name.
    pub name: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// The view's plan over the ledger's records.
    pub plan: LogicalPlan,
    /// Columns with their KQL types and meaning, in order.
    pub columns: Vec<ColumnInfo>,
}

/// A column of a table.
#[derive(Clone, Debug)]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// KQL type.
    pub ty: KType,
    /// Meaning.
    pub doc: String,
}

/// UDFs the views call, by name.
pub struct Fns {
    map: BTreeMap<String, Arc<ScalarUDF>>,
}

impl Fns {
    /// Index a list of UDFs.
    pub fn new(list: &[Arc<ScalarUDF>]) -> Fns {
        Fns {
            map: list
                .iter()
                .map(|u| (u.name().to_string(), u.clone()))
                .collect(),
        }
    }

    /// Call UDF `name`.
    pub fn call(&self, name: &str, args: Vec<Expr>) -> Expr {
        match self.map.get(name) {
            Some(u) => u.call(args),
            // every name used here is registered by `Engine`; a typo fails in tests
            None => lit(ScalarValue::Utf8(Some(format!("missing function {name}")))),
        }
    }
}

/// One output column of a view: expression, name, KQL type, documentation.
struct Out(Expr, &'static str, KType, &'static str);

fn project(
    base: LogicalPlan,
    filter: Option<Expr>,
    cols: Vec<Out>,
) -> Result<(LogicalPlan, Vec<ColumnInfo>)> {
    let mut b = LogicalPlanBuilder::from(base);
    if let Some(f) = filter {
        b = b.filter(f)?;
    }
    let info = cols
        .iter()
        .map(|Out(_, n, t, d)| ColumnInfo {
            name: n.to_string(),
            ty: *t,
            doc: d.to_string(),
        })
        .collect();
    let exprs: Vec<Expr> = cols.into_iter().map(|Out(e, n, _, _)| e.alias(n)).collect();
    Ok((b.project(exprs)?.build()?, info))
}

/// `coalesce(time, received)`: the event time, or the receive time when the source had none.
pub fn time_generated() -> Expr {
    coalesce(vec![c("time"), c("received")])
}

fn kind_is(k: u8) -> Expr {
    c("kind").eq(lit(k))
}

fn format_is(f: &str) -> Expr {
    c("format").eq(lit(f))
}

fn attr(fns: &Fns, key: &str) -> Expr {
    fns.call(
        "kql_dyn_tostring",
        vec![fns.call("kql_dyn_path", vec![c("attrs"), lit(key)])],
    )
}

fn ledger_index() -> Expr {
    datafusion::logical_expr::cast(c("idx"), datafusion::arrow::datatypes::DataType::Int64)
}

/// Kubernetes audit events from any source: audit files, webhook and EKS (`k8s-audit`), GKE
/// entries, AKS diagnostic records and AKSAudit rows of the audit categories.
fn is_k8s_audit() -> Expr {
    kind_is(1).and(
        format_is("k8s-audit")
            .or(format_is("gke"))
            .or(format_is("aks").and(
                c("category")
                    .eq(lit("kube-audit"))
                    .or(c("category").eq(lit("kube-audit-admin"))),
            )),
    )
}

/// …and not a read (what AKS sends to kube-audit-admin).
fn is_k8s_admin() -> Expr {
    is_k8s_audit().and(
        lower(coalesce(vec![c("action"), lit("")]))
            .in_list(vec![lit("get"), lit("list"), lit("watch")], true),
    )
}

/// Build every table over `base` (the ledger's records, segment schema).
pub fn build(base: &LogicalPlan, fns: &Fns) -> Result<Vec<Table>> {
    let mut out = Vec::new();
    let mut add = |name: &'static str,
                   description: &'static str,
                   (plan, columns): (LogicalPlan, Vec<ColumnInfo>)| {
        out.push(Table {
            name,
            description,
            plan,
            columns,
        })
    };
    use KType::*;

    add(
        "events",
        "Every audit event stored, with trailwarden's normalized columns (one row per event record; quarantined and internal records are in `records`).",
        project(base.clone(), Some(kind_is(1)), vec![
            Out(time_generated(), "TimeGenerated", DateTime, "Event time (the source's own timestamp), or the receive time when the source has none."),
            Out(ledger_index(), "ledger_index", Long, "Index of the record in the ledger (what `prove inclusion --index` takes)."),
            Out(c("received"), "received", DateTime, "When trailwarden received the record (hashed into the ledger)."),
            Out(c("source"), "source", String, "Where it came from: `file:PATH`, `stdin`, `webhook`, …"),
            Out(c("format"), "format", String, "Input format: k8s-audit, aks, gke, azure-activity, signin, entra-audit, app, auditd, docker, cri, syslog."),
            Out(c("category"), "category", String, "Source category (AKS log category, Activity Log category, sign-in log table, container stream, …)."),
            Out(c("time"), "time", DateTime, "Event time as the source wrote it (null when absent)."),
            Out(c("user"), "user", String, "Who: user name, principal or UPN."),
            Out(c("user_uid"), "user_uid", String, "The user's unique id."),
            Out(c("user_groups"), "user_groups", Dynamic, "The user's groups (array)."),
            Out(c("impersonated_user"), "impersonated", String, "The impersonated user, if any."),
            Out(c("action"), "action", String, "What: the verb or operation."),
            Out(c("outcome"), "outcome", String, "success, failure or unknown."),
            Out(c("status_code"), "code", Long, "Status code (HTTP status for Kubernetes and Azure)."),
            Out(c("reason"), "reason", String, "Outcome reason."),
            Out(c("status_message"), "status_message", String, "Outcome message."),
            Out(c("source_ips"), "ips", Dynamic, "Source IPs in source order (array)."),
            Out(c("trusted_ip"), "trusted_ip", String, "The source IP to trust (for Kubernetes: the last of sourceIPs, as the API server documents)."),
            Out(c("user_agent"), "user_agent", String, "User agent."),
            Out(c("host"), "host", String, "Host the event was recorded on."),
            Out(c("api_group"), "api_group", String, "Kubernetes API group."),
            Out(c("api_version"), "api_version", String, "Kubernetes API version."),
            Out(c("resource"), "resource", String, "Resource type (Kubernetes resource, Azure provider/type)."),
            Out(c("subresource"), "subresource", String, "Kubernetes subresource (exec, log, …)."),
            Out(c("namespace"), "namespace", String, "Kubernetes namespace (Azure: resource group)."),
            Out(c("name"), "name", String, "Resource name."),
            Out(c("request_uri"), "request_uri", String, "Request URI."),
            Out(c("stage"), "stage", String, "Kubernetes audit stage."),
            Out(c("level"), "level", String, "Audit level or log level."),
            Out(c("decision"), "decision", String, "Authorization decision (allow / forbid)."),
            Out(c("authz_reason"), "authz_reason", String, "Authorization reason."),
            Out(c("pci"), "pci", Dynamic, "PCI DSS 10.2.1.x categories the event evidences (array)."),
            Out(c("message"), "message", String, "Message of text formats (syslog, container logs, auditd)."),
            Out(c("truncated"), "truncated", Bool, "The source truncated the event (AKS 16 KiB limit)."),
            Out(c("attrs"), "attrs", Dynamic, "Format-specific attributes (property bag)."),
            Out(fns.call("tw_text", vec![c("raw")]), "raw", String, "The record exactly as received."),
        ])?,
    );

    add(
        "records",
        "Every record in the ledger, of every kind: events, quarantined input, lifecycle, access, retention, alerts.",
        project(base.clone(), None, vec![
            Out(c("received"), "TimeGenerated", DateTime, "When the record was received or written."),
            Out(ledger_index(), "ledger_index", Long, "Index in the ledger."),
            Out(
                when(c("kind").eq(lit(1u8)), lit("event"))
                    .when(c("kind").eq(lit(2u8)), lit("lifecycle"))
                    .when(c("kind").eq(lit(3u8)), lit("access"))
                    .when(c("kind").eq(lit(4u8)), lit("retention"))
                    .when(c("kind").eq(lit(5u8)), lit("anchor"))
                    .when(c("kind").eq(lit(6u8)), lit("backup"))
                    .when(c("kind").eq(lit(7u8)), lit("quarantine"))
                    .when(c("kind").eq(lit(8u8)), lit("alert"))
                    .otherwise(lit("unknown"))?,
                "kind",
                String,
                "event, lifecycle, access, retention, anchor, backup, quarantine or alert.",
            ),
            Out(c("source"), "source", String, "Where it came from (`trailwarden` for records it writes itself)."),
            Out(c("format"), "format", String, "Input format of events."),
            Out(c("quarantine_reason"), "quarantine_reason", String, "Why input was quarantined."),
            Out(fns.call("tw_text", vec![c("raw")]), "raw", String, "The record's bytes (JSON for records trailwarden writes)."),
        ])?,
    );

    let acc = |f: &str| get_field(fns.call("tw_access_row", vec![c("raw")]), f);
    add(
        "TrailwardenAccess",
        "Reads of audit data through trailwarden (queries, exports, proofs, verifies): PCI DSS 10.2.1.3. Every query adds a row.",
        project(base.clone(), Some(kind_is(3)), vec![
            Out(c("received"), "TimeGenerated", DateTime, "When the access happened."),
            Out(acc("Subject"), "Subject", String, "Who (user or service account)."),
            Out(acc("Interface"), "Interface", String, "cli, api, …"),
            Out(acc("Action"), "Action", String, "query, export, prove, verify, …"),
            Out(acc("Target"), "Target", String, "What was read: the query text and time range, the record range, …"),
            Out(datafusion::logical_expr::cast(acc("Records"), datafusion::arrow::datatypes::DataType::Int64), "Records", Long, "How many records or rows were returned."),
            Out(acc("Outcome"), "Outcome", String, "success or failure."),
            Out(acc("Origin"), "Origin", String, "Where the request came from."),
            Out(c("received"), "_TimeReceived", DateTime, "When trailwarden received the record: Log Analytics' ingestion time, what ingestion_time() returns."),

            Out(ledger_index(), "_LedgerIndex", Long, "Index of the access record in the ledger."),
        ])?,
    );

    // Kubernetes audit in the AKS shapes
    let k8 = |f: &str| get_field(fns.call("tw_k8s_row", vec![c("raw"), c("format")]), f);
    let aks_audit = |table: &'static str| {
        vec![
            Out(
                time_generated(),
                "TimeGenerated",
                DateTime,
                "Event time (stageTimestamp).",
            ),
            Out(
                c("level"),
                "Level",
                String,
                "Metadata, Request or RequestResponse.",
            ),
            Out(
                k8("AuditId"),
                "AuditId",
                String,
                "auditID (unique per request; stages of one request share it).",
            ),
            Out(
                c("stage"),
                "Stage",
                String,
                "RequestReceived, ResponseStarted, ResponseComplete or Panic.",
            ),
            Out(c("request_uri"), "RequestUri", String, "requestURI."),
            Out(c("action"), "Verb", String, "verb."),
            Out(
                k8("User"),
                "User",
                Dynamic,
                "user: username, uid, groups, extra.",
            ),
            Out(k8("SourceIps"), "SourceIps", Dynamic, "sourceIPs."),
            Out(c("user_agent"), "UserAgent", String, "userAgent."),
            Out(
                k8("ObjectRef"),
                "ObjectRef",
                Dynamic,
                "objectRef: resource, subresource, namespace, name, apiGroup, apiVersion.",
            ),
            Out(
                k8("ResponseStatus"),
                "ResponseStatus",
                Dynamic,
                "responseStatus: code, status, reason, message.",
            ),
            Out(
                k8("RequestObject"),
                "RequestObject",
                Dynamic,
                "requestObject (at RequestResponse level).",
            ),
            Out(
                k8("ResponseObject"),
                "ResponseObject",
                Dynamic,
                "responseObject (at RequestResponse level).",
            ),
            Out(
                k8("RequestReceivedTime"),
                "RequestReceivedTime",
                DateTime,
                "requestReceivedTimestamp.",
            ),
            Out(
                k8("StageReceivedTime"),
                "StageReceivedTime",
                DateTime,
                "stageTimestamp.",
            ),
            Out(
                k8("Annotations"),
                "Annotations",
                Dynamic,
                "annotations (authorization.k8s.io/decision, …/reason, …).",
            ),
            Out(
                k8("pod_s"),
                "PodName",
                String,
                "The API server pod that emitted the event (AKS).",
            ),
            Out(lit("Azure"), "SourceSystem", String, "Always Azure."),
            Out(lit(table), "Type", String, "The table name."),
            Out(
                lower(k8("ResourceId")),
                "_ResourceId",
                String,
                "The cluster's Azure resource id (AKS records).",
            ),
            Out(
                k8("SubscriptionId"),
                "_SubscriptionId",
                String,
                "Subscription of the cluster (AKS records).",
            ),
            Out(
                null_str(),
                "TenantId",
                String,
                "Not known to trailwarden (null).",
            ),
            Out(c("received"), "_TimeReceived", DateTime, "When trailwarden received the record: Log Analytics' ingestion time, what ingestion_time() returns."),

            Out(
                ledger_index(),
                "_LedgerIndex",
                Long,
                "Index of the record in the ledger.",
            ),
        ]
    };
    add(
        "AKSAudit",
        "Kubernetes audit events from every source (audit files, webhook, AKS exports), in the columns of Azure's resource-specific AKSAudit table.",
        project(base.clone(), Some(is_k8s_audit()), la(fns, aks_audit("AKSAudit"), None))?,
    );
    add(
        "AKSAuditAdmin",
        "The Kubernetes audit events that are not get / list / watch, as AKS sends to kube-audit-admin (same columns as AKSAudit).",
        project(base.clone(), Some(is_k8s_admin()), la(fns, aks_audit("AKSAuditAdmin"), None))?,
    );

    let diag = |category: Expr| {
        vec![
            Out(time_generated(), "TimeGenerated", DateTime, "Event time (for audit events: stageTimestamp)."),
            Out(category, "Category", String, "kube-audit, kube-audit-admin (non-read audit events, listed twice as AKS does), or another AKS log category."),
            Out(k8("log_s"), "log_s", String, "The audit event JSON (or the log line of other categories)."),
            Out(k8("pod_s"), "pod_s", String, "The pod that emitted it (AKS)."),
            Out(k8("ResourceId"), "ResourceId", String, "The cluster's Azure resource id (AKS records)."),
            Out(lower(k8("ResourceId")), "_ResourceId", String, "ResourceId in lower case."),
            Out(k8("SubscriptionId"), "SubscriptionId", String, "Subscription."),
            Out(k8("ResourceGroup"), "ResourceGroup", String, "Resource group."),
            Out(k8("Resource"), "Resource", String, "Cluster name."),
            Out(when(k8("ResourceId").is_not_null(), lit("MICROSOFT.CONTAINERSERVICE")).otherwise(null_str()).unwrap_or_else(|_| null_str()), "ResourceProvider", String, "MICROSOFT.CONTAINERSERVICE for AKS records."),
            Out(when(k8("ResourceId").is_not_null(), lit("MANAGEDCLUSTERS")).otherwise(null_str()).unwrap_or_else(|_| null_str()), "ResourceType", String, "MANAGEDCLUSTERS for AKS records."),
            Out(when(format_is("aks"), lit("Microsoft.ContainerService/managedClusters/diagnosticLogs/Read")).otherwise(null_str()).unwrap_or_else(|_| null_str()), "OperationName", String, "As AKS writes it."),
            Out(k8("containerID_s"), "containerID_s", String, "Container id (AKS)."),
            Out(k8("stream_s"), "stream_s", String, "stdout / stderr (AKS)."),
            Out(lit("Azure"), "SourceSystem", String, "Always Azure."),
            Out(lit("AzureDiagnostics"), "Type", String, "The table name."),
            Out(null_str(), "TenantId", String, "Not known to trailwarden (null)."),
            Out(c("received"), "_TimeReceived", DateTime, "When trailwarden received the record: Log Analytics' ingestion time, what ingestion_time() returns."),

            Out(ledger_index(), "_LedgerIndex", Long, "Index of the record in the ledger."),
        ]
    };
    let (p1, cols) = project(
        base.clone(),
        Some(is_k8s_audit()),
        la(fns, diag(lit("kube-audit")), Some(k8("SubscriptionId"))),
    )?;
    let (p2, _) = project(
        base.clone(),
        Some(is_k8s_admin()),
        la(
            fns,
            diag(lit("kube-audit-admin")),
            Some(k8("SubscriptionId")),
        ),
    )?;
    let other_aks = kind_is(1).and(format_is("aks")).and(
        coalesce(vec![c("category"), lit("")])
            .in_list(vec![lit("kube-audit"), lit("kube-audit-admin")], true),
    );
    let (p3, _) = project(
        base.clone(),
        Some(other_aks.clone()),
        la(fns, diag(c("category")), Some(k8("SubscriptionId"))),
    )?;
    add(
        "AKSControlPlane",
        "The AKS resource logs that are not audit events (kube-apiserver, kube-controller-manager, kube-scheduler, cluster-autoscaler, cloud-controller-manager, guard, CSI drivers), in the columns of Azure's resource-specific AKSControlPlane table.",
        project(
            base.clone(),
            Some(other_aks),
            la(
                fns,
                vec![
                Out(time_generated(), "TimeGenerated", DateTime, "Time of the log line (its klog timestamp, else the record's time)."),
                Out(c("category"), "Category", String, "The AKS log category: kube-apiserver, kube-controller-manager, kube-scheduler, cluster-autoscaler, guard, …"),
                Out(c("level"), "Level", String, "Fatal, Error, Warning or Info (from the klog prefix)."),
                Out(coalesce(vec![c("message"), k8("log_s")]), "Message", String, "The log line."),
                Out(k8("pod_s"), "PodName", String, "The pod that logged it."),
                Out(k8("stream_s"), "Stream", String, "stdout or stderr."),
                Out(lit("Azure"), "SourceSystem", String, "Always Azure."),
                Out(lit("AKSControlPlane"), "Type", String, "The table name."),
                Out(lower(k8("ResourceId")), "_ResourceId", String, "The cluster's Azure resource id, in lower case."),
                Out(k8("SubscriptionId"), "_SubscriptionId", String, "Subscription of the cluster."),
                Out(null_str(), "TenantId", String, "Not known to trailwarden (null)."),
                Out(c("received"), "_TimeReceived", DateTime, "When trailwarden received the record: Log Analytics' ingestion time, what ingestion_time() returns."),

                Out(ledger_index(), "_LedgerIndex", Long, "Index of the record in the ledger."),
            ],
                None,
            ),
        )?,
    );
    let union = LogicalPlanBuilder::from(p1).union(p2)?.union(p3)?.build()?;
    add(
        "AzureDiagnostics",
        "AKS resource logs in Azure diagnostics mode: every Kubernetes audit event as Category kube-audit (and again as kube-audit-admin when it is not a read), and the other AKS categories.",
        (union, cols),
    );

    let act = |f: &str| get_field(fns.call("tw_activity_row", vec![c("raw")]), f);
    let mut acols = vec![Out(
        time_generated(),
        "TimeGenerated",
        DateTime,
        "Event time.",
    )];
    for (name, kind) in rows::ACTIVITY_FIELDS {
        acols.push(Out(act(name), name, ktype(*kind), activity_doc(name)));
    }
    acols.extend([
        Out(
            raw_field(fns, "OperationId", "operationId", String),
            "OperationId",
            String,
            "GUID of the operation.",
        ),
        Out(
            act("Level"),
            "ActivityLevel",
            String,
            "Level under its legacy name (some published queries use it).",
        ),
        Out(
            act("Properties"),
            "Properties_d",
            Dynamic,
            "Properties (dynamic form).",
        ),
        Out(
            act("Authorization"),
            "Authorization_d",
            Dynamic,
            "Authorization (dynamic form).",
        ),
        Out(act("Claims"), "Claims_d", Dynamic, "Claims (dynamic form)."),
        Out(
            lower(act("ResourceId")),
            "_ResourceId",
            String,
            "ResourceId in lower case.",
        ),
        Out(lit("Azure"), "SourceSystem", String, "Always Azure."),
        Out(lit("AzureActivity"), "Type", String, "The table name."),
        Out(c("received"), "_TimeReceived", DateTime, "When trailwarden received the record: Log Analytics' ingestion time, what ingestion_time() returns."),

        Out(
            ledger_index(),
            "_LedgerIndex",
            Long,
            "Index of the record in the ledger.",
        ),
    ]);
    add(
        "AzureActivity",
        "Azure Activity Log records (subscription-level control-plane operations), from diagnostic exports or AzureActivity rows.",
        project(base.clone(), Some(kind_is(1).and(format_is("azure-activity"))), la(fns, acols, Some(act("SubscriptionId"))))?,
    );

    let sig = |f: &str| get_field(fns.call("tw_signin_row", vec![c("raw")]), f);
    let mut scols = vec![Out(
        time_generated(),
        "TimeGenerated",
        DateTime,
        "Sign-in time.",
    )];
    for (name, kind) in rows::SIGNIN_FIELDS {
        scols.push(Out(sig(name), name, ktype(*kind), signin_doc(name)));
    }
    for (name, camel, t) in SIGNIN_MORE {
        scols.push(Out(
            raw_field(fns, name, camel, *t),
            name,
            *t,
            "As Entra ID writes it (null when the record does not carry it).",
        ));
    }
    scols.extend([
        Out(lit("Azure AD"), "SourceSystem", String, "Always Azure AD."),
        Out(lit("SigninLogs"), "Type", String, "The table name."),
        Out(c("received"), "_TimeReceived", DateTime, "When trailwarden received the record: Log Analytics' ingestion time, what ingestion_time() returns."),

        Out(
            ledger_index(),
            "_LedgerIndex",
            Long,
            "Index of the record in the ledger.",
        ),
    ]);
    add(
        "SigninLogs",
        "Microsoft Entra ID sign-ins (interactive and non-interactive), from diagnostic exports, SigninLogs rows or Graph signIn objects.",
        project(base.clone(), Some(kind_is(1).and(format_is("signin"))), la(fns, scols, None))?,
    );

    add(
        "Syslog",
        "Syslog messages (RFC 5424, RFC 3164, Log Analytics Syslog rows).",
        project(
            base.clone(),
            Some(kind_is(1).and(format_is("syslog"))),
            la(
                fns,
                vec![
                Out(time_generated(), "TimeGenerated", DateTime, "Message time."),
                Out(
                    coalesce(vec![c("host"), attr(fns, "computer")]),
                    "Computer",
                    String,
                    "Host that sent it.",
                ),
                Out(c("host"), "HostName", String, "Host name in the message."),
                Out(
                    c("trusted_ip"),
                    "HostIP",
                    String,
                    "Host IP (Log Analytics rows).",
                ),
                Out(
                    attr(fns, "facility"),
                    "Facility",
                    String,
                    "Facility (kern, auth, authpriv, local0…).",
                ),
                Out(
                    attr(fns, "severity"),
                    "SeverityLevel",
                    String,
                    "Severity (emerg … debug).",
                ),
                Out(c("message"), "SyslogMessage", String, "The message."),
                Out(attr(fns, "app"), "ProcessName", String, "App name / tag."),
                Out(
                    datafusion::logical_expr::cast(
                        fns.call(
                            "kql_dyn_tolong",
                            vec![fns.call("kql_dyn_path", vec![c("attrs"), lit("procid")])],
                        ),
                        datafusion::arrow::datatypes::DataType::Int32,
                    ),
                    "ProcessID",
                    Int,
                    "Process id.",
                ),
                Out(c("time"), "EventTime", DateTime, "Time in the message."),
                Out(
                    raw_field(fns, "CollectorHostName", "collectorHostName", String),
                    "CollectorHostName",
                    String,
                    "The remote device that generated the message (Log Analytics rows).",
                ),
                Out(lit("Linux"), "SourceSystem", String, "Always Linux."),
                Out(lit("Syslog"), "Type", String, "The table name."),
                Out(c("received"), "_TimeReceived", DateTime, "When trailwarden received the record: Log Analytics' ingestion time, what ingestion_time() returns."),

                Out(
                    ledger_index(),
                    "_LedgerIndex",
                    Long,
                    "Index of the record in the ledger.",
                ),
            ],
                None,
            ),
        )?,
    );

    add(
        "ContainerLog",
        "Container stdout/stderr lines (Docker json-file and CRI logs, partial lines reassembled).",
        project(
            base.clone(),
            Some(kind_is(1).and(format_is("docker").or(format_is("cri")))),
            la(
                fns,
                vec![
                Out(time_generated(), "TimeGenerated", DateTime, "Line time."),
                Out(c("message"), "LogEntry", String, "The log line."),
                Out(
                    coalesce(vec![attr(fns, "stream"), c("category")]),
                    "LogEntrySource",
                    String,
                    "stdout or stderr.",
                ),
                Out(
                    attr(fns, "container_id"),
                    "ContainerID",
                    String,
                    "Container id, when known.",
                ),
                Out(
                    attr(fns, "container_name"),
                    "Name",
                    String,
                    "Container name, when known.",
                ),
                Out(c("host"), "Computer", String, "Node, when known."),
                Out(
                    c("source"),
                    "SourceFile",
                    String,
                    "The file or stream it was read from.",
                ),
                Out(raw_field(fns, "Image", "image", String), "Image", String, "Container image (Log Analytics rows)."),
                Out(raw_field(fns, "ImageTag", "imageTag", String), "ImageTag", String, "Image tag (Log Analytics rows)."),
                Out(raw_field(fns, "Repository", "repository", String), "Repository", String, "Image repository (Log Analytics rows)."),
                Out(raw_field(fns, "TimeOfCommand", "timeOfCommand", DateTime), "TimeOfCommand", DateTime, "When the agent processed the line (Log Analytics rows)."),
                Out(
                    lit("ContainerInsights"),
                    "SourceSystem",
                    String,
                    "Always ContainerInsights.",
                ),
                Out(lit("ContainerLog"), "Type", String, "The table name."),
                Out(c("received"), "_TimeReceived", DateTime, "When trailwarden received the record: Log Analytics' ingestion time, what ingestion_time() returns."),

                Out(
                    ledger_index(),
                    "_LedgerIndex",
                    Long,
                    "Index of the record in the ledger.",
                ),
            ],
                None,
            ),
        )?,
    );
    let mut audit = vec![Out(
        time_generated(),
        "TimeGenerated",
        DateTime,
        "Activity time.",
    )];
    for (name, camel, t, doc) in AUDIT_COLS {
        audit.push(Out(raw_field(fns, name, camel, *t), name, *t, doc));
    }
    audit.extend([
        Out(c("category"), "Category", String, "The audit category: UserManagement, RoleManagement, GroupManagement, ApplicationManagement, Policy, …"),
        Out(lit("Azure AD"), "SourceSystem", String, "Always Azure AD."),
        Out(lit("AuditLogs"), "Type", String, "The table name."),
        Out(c("received"), "_TimeReceived", DateTime, "When trailwarden received the record: Log Analytics' ingestion time, what ingestion_time() returns."),
        Out(ledger_index(), "_LedgerIndex", Long, "Index of the record in the ledger."),
    ]);
    add(
        "AuditLogs",
        "Microsoft Entra ID directory audit (changes to users, groups, roles, applications, policies), from diagnostic exports, AuditLogs rows or Graph directoryAudit objects.",
        project(base.clone(), Some(kind_is(1).and(format_is("entra-audit"))), la(fns, audit, None))?,
    );

    // Kubernetes names container log files <pod>_<namespace>_<container>-<id>.log
    const K8S_LOG: &str = r"([^/_]+)_([^/_]+)_([^/]+)-([0-9a-f]{64})\.log$";
    let part = |g: i64| fns.call("kql_extract", vec![lit(K8S_LOG), lit(g), c("source")]);
    let container_id = coalesce(vec![attr(fns, "container_id"), part(4)]);
    let json_line = datafusion::functions::string::expr_fn::starts_with(
        datafusion::functions::string::expr_fn::btrim(vec![c("message")]),
        lit("{"),
    );
    add(
        "ContainerLogV2",
        "Container stdout/stderr lines in the columns of Container Insights' ContainerLogV2 (pod, namespace and container from the Kubernetes log file name).",
        project(
            base.clone(),
            Some(kind_is(1).and(format_is("docker").or(format_is("cri")))),
            la(
                fns,
                vec![
                Out(time_generated(), "TimeGenerated", DateTime, "Line time."),
                Out(c("host"), "Computer", String, "Node, when known."),
                Out(container_id, "ContainerId", String, "Container id (from the record or the log file name)."),
                Out(coalesce(vec![attr(fns, "container_name"), part(3)]), "ContainerName", String, "Container name (from the record or the log file name)."),
                Out(part(1), "PodName", String, "Pod name, from the log file name."),
                Out(part(2), "PodNamespace", String, "Pod namespace, from the log file name."),
                Out(
                    when(json_line, c("message"))
                        .otherwise(fns.call("kql_to_dynamic", vec![c("message")]))
                        .unwrap_or_else(|_| c("message")),
                    "LogMessage",
                    Dynamic,
                    "The line: its JSON when it is a JSON object, else the text as a string.",
                ),
                Out(coalesce(vec![attr(fns, "stream"), c("category")]), "LogSource", String, "stdout or stderr."),
                Out(c("level"), "LogLevel", String, "Level, when the line carries one."),
                Out(null_str(), "KubernetesMetadata", Dynamic, "Not known to trailwarden (null)."),
                Out(lit("ContainerInsights"), "SourceSystem", String, "Always ContainerInsights."),
                Out(lit("ContainerLogV2"), "Type", String, "The table name."),
                Out(null_str(), "_ResourceId", String, "Not known to trailwarden (null)."),
                Out(c("received"), "_TimeReceived", DateTime, "When trailwarden received the record: Log Analytics' ingestion time, what ingestion_time() returns."),
                Out(ledger_index(), "_LedgerIndex", Long, "Index of the record in the ledger."),
            ],
                None,
            ),
        )?,
    );
    Ok(out)
}

/// The SigninLogs columns read straight from the record: (column, property of the export, type).
const SIGNIN_MORE: &[(&str, &str, KType)] = &[
    ("AADTenantId", "tenantId", KType::String),
    ("AlternateSignInName", "alternateSignInName", KType::String),
    (
        "AppliedConditionalAccessPolicies",
        "appliedConditionalAccessPolicies",
        KType::String,
    ),
    (
        "AppliedEventListeners",
        "appliedEventListeners",
        KType::Dynamic,
    ),
    (
        "AuthenticationContextClassReferences",
        "authenticationContextClassReferences",
        KType::String,
    ),
    (
        "AuthenticationDetails",
        "authenticationDetails",
        KType::String,
    ),
    (
        "AuthenticationMethodsUsed",
        "authenticationMethodsUsed",
        KType::String,
    ),
    (
        "AuthenticationProcessingDetails",
        "authenticationProcessingDetails",
        KType::String,
    ),
    (
        "AuthenticationProtocol",
        "authenticationProtocol",
        KType::String,
    ),
    (
        "AuthenticationRequirementPolicies",
        "authenticationRequirementPolicies",
        KType::String,
    ),
    (
        "AutonomousSystemNumber",
        "autonomousSystemNumber",
        KType::String,
    ),
    (
        "ConditionalAccessPolicies",
        "appliedConditionalAccessPolicies",
        KType::Dynamic,
    ),
    ("CreatedDateTime", "createdDateTime", KType::DateTime),
    (
        "CrossTenantAccessType",
        "crossTenantAccessType",
        KType::String,
    ),
    ("DurationMs", "durationMs", KType::Long),
    ("FlaggedForReview", "flaggedForReview", KType::Bool),
    ("HomeTenantId", "homeTenantId", KType::String),
    ("Id", "id", KType::String),
    (
        "IPAddressFromResourceProvider",
        "ipAddressFromResourceProvider",
        KType::String,
    ),
    ("IsRisky", "isRisky", KType::Bool),
    ("Level", "Level", KType::String),
    ("MfaDetail", "mfaDetail", KType::Dynamic),
    (
        "NetworkLocationDetails",
        "networkLocationDetails",
        KType::String,
    ),
    ("OperationVersion", "operationVersion", KType::String),
    ("OriginalRequestId", "originalRequestId", KType::String),
    (
        "ProcessingTimeInMilliseconds",
        "processingTimeInMilliseconds",
        KType::String,
    ),
    ("Resource", "resource", KType::String),
    ("ResourceGroup", "resourceGroup", KType::String),
    ("ResourceId", "resourceId", KType::String),
    ("ResourceIdentity", "resourceIdentity", KType::String),
    ("ResourceProvider", "resourceProvider", KType::String),
    (
        "ResourceServicePrincipalId",
        "resourceServicePrincipalId",
        KType::String,
    ),
    ("ResourceTenantId", "resourceTenantId", KType::String),
    ("RiskDetail", "riskDetail", KType::String),
    ("RiskEventTypes", "riskEventTypes", KType::String),
    ("RiskEventTypes_V2", "riskEventTypes_v2", KType::String),
    ("RiskLevel", "riskLevel", KType::String),
    ("RiskLevelAggregated", "riskLevelAggregated", KType::String),
    ("ServicePrincipalId", "servicePrincipalId", KType::String),
    (
        "ServicePrincipalName",
        "servicePrincipalName",
        KType::String,
    ),
    (
        "SessionLifetimePolicies",
        "sessionLifetimePolicies",
        KType::String,
    ),
    ("SignInIdentifier", "signInIdentifier", KType::String),
    (
        "SignInIdentifierType",
        "signInIdentifierType",
        KType::String,
    ),
    ("TokenIssuerName", "tokenIssuerName", KType::String),
    ("TokenIssuerType", "tokenIssuerType", KType::String),
    (
        "UniqueTokenIdentifier",
        "uniqueTokenIdentifier",
        KType::String,
    ),
    ("UserType", "userType", KType::String),
];

/// The AuditLogs columns read straight from the record: (column, property, type, description).
const AUDIT_COLS: &[(&str, &str, KType, &str)] = &[
    (
        "AADOperationType",
        "operationType",
        KType::String,
        "Add, Update, Delete or Other.",
    ),
    (
        "AADTenantId",
        "tenantId",
        KType::String,
        "The Entra ID tenant.",
    ),
    (
        "ActivityDateTime",
        "activityDateTime",
        KType::DateTime,
        "When the activity was performed.",
    ),
    (
        "ActivityDisplayName",
        "activityDisplayName",
        KType::String,
        "The activity: Add member to role, Update user, …",
    ),
    (
        "AdditionalDetails",
        "additionalDetails",
        KType::Dynamic,
        "Additional details (key/value pairs).",
    ),
    (
        "CorrelationId",
        "correlationId",
        KType::String,
        "Correlation id.",
    ),
    (
        "DurationMs",
        "durationMs",
        KType::Long,
        "Not used by Entra ID.",
    ),
    ("Id", "id", KType::String, "Unique id of the activity."),
    (
        "Identity",
        "identity",
        KType::String,
        "Identity from the token of the request.",
    ),
    (
        "InitiatedBy",
        "initiatedBy",
        KType::Dynamic,
        "The user or app that initiated the activity.",
    ),
    (
        "Level",
        "Level",
        KType::String,
        "Message type (Informational).",
    ),
    (
        "Location",
        "location",
        KType::String,
        "Datacenter location.",
    ),
    (
        "LoggedByService",
        "loggedByService",
        KType::String,
        "The service that logged it: Core Directory, PIM, Self-service Password Management, …",
    ),
    (
        "OperationName",
        "operationName",
        KType::String,
        "Name of the operation.",
    ),
    (
        "OperationVersion",
        "operationVersion",
        KType::String,
        "REST API version of the request.",
    ),
    ("Resource", "resource", KType::String, "Resource."),
    (
        "ResourceGroup",
        "resourceGroup",
        KType::String,
        "Resource group.",
    ),
    (
        "ResourceId",
        "resourceId",
        KType::String,
        "Resource id (the tenant's Microsoft.aadiam provider for exports).",
    ),
    (
        "ResourceProvider",
        "resourceProvider",
        KType::String,
        "Resource provider.",
    ),
    (
        "Result",
        "result",
        KType::String,
        "success, failure, timeout or unknownFutureValue.",
    ),
    (
        "ResultDescription",
        "resultDescription",
        KType::String,
        "Description of the result.",
    ),
    (
        "ResultReason",
        "resultReason",
        KType::String,
        "Why it failed or timed out.",
    ),
    (
        "ResultSignature",
        "resultSignature",
        KType::String,
        "Not used by Entra ID.",
    ),
    (
        "ResultType",
        "resultType",
        KType::String,
        "Success or Failure.",
    ),
    (
        "TargetResources",
        "targetResources",
        KType::Dynamic,
        "What the activity changed (users, groups, roles, apps, …).",
    ),
];

/// A documented column read from the raw record: the Log Analytics row's own column, else the
/// diagnostic export's `properties.<camel>`, else a top-level `<camel>` (Graph objects), as the
/// column's type; null when the record has none.
fn raw_field(fns: &Fns, name: &str, camel: &str, t: KType) -> Expr {
    let raw = fns.call("tw_text", vec![c("raw")]);
    let v = coalesce(vec![
        fns.call("kql_dyn_path", vec![raw.clone(), lit(name.to_string())]),
        fns.call(
            "kql_dyn_path",
            vec![raw.clone(), lit("properties"), lit(camel.to_string())],
        ),
        fns.call("kql_dyn_path", vec![raw, lit(camel.to_string())]),
    ]);
    match t {
        KType::String => fns.call("kql_dyn_tostring", vec![v]),
        KType::Long => fns.call("kql_dyn_tolong", vec![v]),
        KType::Int => datafusion::logical_expr::cast(
            fns.call("kql_dyn_tolong", vec![v]),
            datafusion::arrow::datatypes::DataType::Int32,
        ),
        KType::Real => fns.call("kql_dyn_todouble", vec![v]),
        KType::Bool => fns.call("kql_dyn_tobool", vec![v]),
        KType::DateTime => fns.call(
            "kql_todatetime",
            vec![fns.call("kql_dyn_tostring", vec![v])],
        ),
        KType::TimeSpan => fns.call(
            "kql_totimespan",
            vec![fns.call("kql_dyn_tostring", vec![v])],
        ),
        KType::Dynamic => v,
    }
}

/// The standard columns every Log Analytics table has and a view does not set itself:
/// `_BilledSize` (the record's size), `_IsBillable` (false: nothing here is billed),
/// `_SubscriptionId`, `TenantId`, `_ResourceId` (null unless the view knows them).
fn la(fns: &Fns, mut cols: Vec<Out>, subscription: Option<Expr>) -> Vec<Out> {
    use KType::*;
    let has = |cols: &Vec<Out>, n: &str| cols.iter().any(|o| o.1 == n);
    if !has(&cols, "_BilledSize") {
        cols.push(Out(
            datafusion::logical_expr::cast(
                datafusion::functions::string::expr_fn::octet_length(
                    fns.call("tw_text", vec![c("raw")]),
                ),
                datafusion::arrow::datatypes::DataType::Float64,
            ),
            "_BilledSize",
            Real,
            "The record's size in bytes.",
        ));
    }
    if !has(&cols, "_IsBillable") {
        cols.push(Out(
            lit("false"),
            "_IsBillable",
            String,
            "Always false: nothing here is billed.",
        ));
    }
    if !has(&cols, "_SubscriptionId") {
        cols.push(Out(
            subscription.unwrap_or_else(null_str),
            "_SubscriptionId",
            String,
            "The subscription of the resource the record is about (null when not known).",
        ));
    }
    if !has(&cols, "TenantId") {
        cols.push(Out(
            null_str(),
            "TenantId",
            String,
            "The Log Analytics workspace id: none here (null).",
        ));
    }
    if !has(&cols, "_ResourceId") {
        cols.push(Out(
            null_str(),
            "_ResourceId",
            String,
            "The resource the record is about (null when not known).",
        ));
    }
    cols
}

fn ktype(k: rows::Kind) -> KType {
    match k {
        rows::Kind::Str => KType::String,
        rows::Kind::Dyn => KType::Dynamic,
        rows::Kind::Time => KType::DateTime,
        rows::Kind::Bool => KType::Bool,
    }
}

fn activity_doc(name: &str) -> &'static str {
    match name {
        "OperationName" => {
            "Operation (display form in Log Analytics rows; the operation id in exports)."
        }
        "OperationNameValue" => {
            "Operation id, e.g. MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/WRITE."
        }
        "Level" => "Informational, Warning, Error, Critical.",
        "ActivityStatus" | "ActivityStatusValue" => {
            "Started, Accepted, Succeeded, Failed, … (resultType in exports)."
        }
        "ActivitySubstatus" | "ActivitySubstatusValue" => {
            "HTTP status of the operation (properties.statusCode in exports)."
        }
        "Caller" => "Who: UPN, or the application id for service principals.",
        "CallerIpAddress" => "Caller's IP address.",
        "Category" | "CategoryValue" => "Administrative, Security, Policy, ….",
        "CorrelationId" => "Correlates the events of one operation.",
        "ResourceGroup" => "Resource group of the target resource.",
        "ResourceProvider" => {
            "Provider namespace as Log Analytics spells it, e.g. Microsoft.ContainerService."
        }
        "ResourceProviderValue" => "Provider namespace in upper case.",
        "Resource" => "Name of the target resource.",
        "ResourceId" => "Azure resource id of the target.",
        "SubscriptionId" => "Subscription.",
        "TenantId" => "Tenant.",
        "Properties" => "Operation properties (property bag).",
        "Authorization" => "RBAC action and scope (property bag).",
        "Claims" => "The caller's token claims (property bag).",
        "HTTPRequest" => "Client request details.",
        "EventSubmissionTimestamp" => "When the event was submitted.",
        "EventDataId" => "Unique id of the event.",
        "Hierarchy" => "Management group hierarchy.",
        _ => "",
    }
}

fn signin_doc(name: &str) -> &'static str {
    match name {
        "UserPrincipalName" => "The user's UPN.",
        "UserDisplayName" => "The user's display name.",
        "UserId" => "The user's object id.",
        "AppDisplayName" => "Application signed in to, e.g. Azure Kubernetes Service AAD Server.",
        "AppId" => "Application id.",
        "IPAddress" => "Client IP address.",
        "ResultType" => {
            "0 for success, otherwise the Entra error code (a string, as in Log Analytics)."
        }
        "ResultDescription" => "Failure reason.",
        "ResultSignature" => "SUCCESS / FAILURE / NONE.",
        "Status" => "errorCode, failureReason, additionalDetails (property bag).",
        "Location" => "Country or region.",
        "LocationDetails" => "City, state, country, coordinates (property bag).",
        "ClientAppUsed" => "Browser, Mobile Apps and Desktop clients, ….",
        "ConditionalAccessStatus" => "success, failure, notApplied.",
        "DeviceDetail" => "Device, OS, browser (property bag).",
        "IsInteractive" => "Interactive sign-in.",
        "RiskLevelDuringSignIn" => "none, low, medium, high.",
        "RiskState" => "Risk state.",
        "AuthenticationRequirement" => "singleFactorAuthentication or multiFactorAuthentication.",
        "CorrelationId" => "Correlation id.",
        "Identity" => "Display name of the identity.",
        "Category" => "SignInLogs, NonInteractiveUserSignInLogs, ….",
        "OperationName" => "Sign-in activity.",
        "ResourceDisplayName" => "Resource accessed.",
        "TenantId" => "Tenant.",
        "UserAgent" => "Client user agent.",
        _ => "",
    }
}

/// The tables and columns as Markdown (docs/TABLES.md).
pub fn catalog_markdown(tables: &[Table]) -> String {
    let mut s = String::from(
        "# Tables\n\nGenerated from `crates/query/src/tables.rs` (`trailwarden query --tables`); a test keeps this file in step.\n\
         Every table has `TimeGenerated`, the event time, so time filters read the same everywhere. `dynamic`\n\
         columns hold JSON (objects, arrays); index into them with `col.key`, `col[\"key\"]`, `col[0]`.\n",
    );
    for t in tables {
        s.push_str(&format!(
            "\n## {}\n\n{}\n\n| column | type | meaning |\n|---|---|---|\n",
            t.name, t.description
        ));
        for c in &t.columns {
            s.push_str(&format!("| {} | {} | {} |\n", c.name, c.ty.name(), c.doc));
        }
    }
    s
}
