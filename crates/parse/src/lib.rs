//! # trailwarden-parse
//!
//! Turns the audit logs real clusters and hosts produce into trailwarden records, one record
//! per audit event, keeping every byte of the original:
//!
//! | format | module | shapes |
//! |---|---|---|
//! | `k8s-audit` | [`k8s`] | audit.k8s.io v1 / v1beta1 Event, EventList, JSON array, JSONL, pretty-printed |
//! | `aks` | [`aks`] | AKS diagnostic records (`{"records":[…]}`, JSONL), AzureDiagnostics and AKSAudit rows |
//! | `gke` | [`gke`] | GKE Cloud Logging entries (Cloud Audit Log `protoPayload`, service `k8s.io`) |
//! | `azure-activity` | [`azure`] | Activity Log export records, AzureActivity rows |
//! | `signin` | [`azure`] | Entra ID sign-in export records, SigninLogs rows, Graph signIn objects |
//! | `entra-audit` | [`azure`] | Entra ID directory audit export records (category AuditLogs), AuditLogs rows, Graph directoryAudit objects |
//! | `app` | [`app`] | application audit events (timestamp, user_id, action, resource, result, source_ip) |
//! | `auditd` | [`auditd`] | raw / interpreted / ENRICHED auditd, multi-record events, AUOMS |
//! | `docker`, `cri` | [`container`] | Docker json-file and CRI text logs with split-line reassembly |
//! | `syslog` | [`syslog`] | RFC 5424, RFC 3164, Log Analytics Syslog rows |
//!
//! EKS audit events arrive as `k8s-audit` events inside CloudWatch Logs envelopes, which
//! [`cloud`] opens (as it does Pub/Sub bodies around GKE entries).
//!
//! The entry point is [`Ingestor`]: it reads an input (gzip / zstd transparently), detects the
//! format of each record, and passes every record to a [`RecordSink`]. What cannot be parsed is
//! quarantined with its raw bytes and a reason; the input continues.
#![warn(missing_docs)]

pub mod aks;
pub mod app;
pub mod auditd;
pub mod azure;
pub mod cloud;
pub mod container;
mod cow;
pub mod error;
pub mod gke;
pub mod ingest;
pub mod input;
pub mod jsonscan;
pub mod k8s;
pub mod paths;
pub mod syslog;

pub use error::{FormatError, ParseError};
pub use ingest::{detect, reparse, Ingestor, InputSummary, Options, Problem, RecordSink, Summary};
