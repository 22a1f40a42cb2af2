//! The OpenAPI 3.1 document served at `/openapi.json`.

use serde_json::{json, Value};

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn std_errors(mut responses: Value) -> Value {
    if let Some(m) = responses.as_object_mut() {
        m.insert(
            "401".into(),
            json!({"$ref": "#/components/responses/Unauthorized"}),
        );
        m.insert(
            "403".into(),
            json!({"$ref": "#/components/responses/Forbidden"}),
        );
    }
    responses
}

fn ingest(format: &str, example: &str) -> Value {
    json!({
        "post": {
            "summary": format!("Ingest {format}"),
            "description": "Answered 200 only once the batch is durable (fsync'd in the ledger). Items that cannot be parsed are quarantined with their raw bytes and the answer is 400, listing them; the valid items of the batch are stored either way. Needs role ingest or admin.",
            "tags": ["ingest"],
            "requestBody": {"required": true, "content": {
                "application/json": {"schema": {}, "example": example},
                "application/x-ndjson": {"schema": {"type": "string"}}
            }},
            "parameters": [{"name": "Content-Encoding", "in": "header", "required": false, "schema": {"type": "string", "enum": ["gzip", "identity"]}}],
            "responses": std_errors(json!({
                "200": {"description": "Stored and durable", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestResult"}}}},
                "400": {"description": "Some items could not be parsed (quarantined); the rest is stored", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestResult"}}}},
                "413": err("Body over http.max_body_bytes (or, decoded, http.max_decoded_bytes)"),
                "415": err("Content-Type or Content-Encoding not accepted"),
                "429": {"$ref": "#/components/responses/Retry"},
                "503": {"$ref": "#/components/responses/Retry"}
            }))
        }
    })
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "trailwarden",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tamper-evident audit trail and continuous monitoring for Kubernetes under PCI DSS 4.0.1 Requirement 10. Every endpoint but /healthz and /readyz needs a bearer token (or a mapped client certificate); every read of audit data and every refused request is recorded in the ledger."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"summary": "Liveness", "security": [], "tags": ["operations"], "responses": {"200": {"description": "alive", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/readyz": {"get": {"summary": "Readiness (writer running, disk space above the threshold, not stopping)", "security": [], "tags": ["operations"], "responses": {"200": {"description": "ready", "content": {"text/plain": {"schema": {"type": "string"}}}}, "503": err("not ready, with the reason")}}},
            "/openapi.json": {"get": {"summary": "This document", "tags": ["operations"], "responses": std_errors(json!({"200": {"description": "OpenAPI document", "content": {"application/json": {"schema": {"type": "object"}}}}}))}},
            "/metrics": {"get": {"summary": "Prometheus metrics (role viewer or above)", "tags": ["operations"], "responses": std_errors(json!({"200": {"description": "text exposition format 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}}}))}},
            "/v1/ingest/k8s-audit": ingest("Kubernetes audit events: the API server's webhook backend (EventList), a single Event, a JSON array or JSON lines", "{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[]}"),
            "/v1/ingest/aks": ingest("AKS diagnostic records ({\"records\":[…]}, JSON lines, AKSAudit rows)", "{\"records\":[]}"),
            "/v1/ingest/gke": ingest("GKE Kubernetes audit logs: Cloud Logging entries (JSON lines, a JSON array) or a Pub/Sub push body from a log sink", "{\"message\":{\"data\":\"eyJwcm90b1BheWxvYWQiOnt9fQ==\",\"messageId\":\"1\"},\"subscription\":\"projects/p/subscriptions/gke-audit\"}"),
            "/v1/ingest/eks": ingest("EKS audit logs from CloudWatch Logs: subscription-filter bodies ({\"awslogs\":{\"data\":base64(gzip)}} or the decoded DATA_MESSAGE), filter-log-events output, exported lines", "{\"messageType\":\"DATA_MESSAGE\",\"logGroup\":\"/aws/eks/prod/cluster\",\"logStream\":\"kube-apiserver-audit-0\",\"logEvents\":[]}"),
            "/v1/ingest/app": ingest("application audit events", "{\"timestamp\":\"2026-01-05T10:00:00Z\",\"user_id\":\"alice\",\"action\":\"refund\",\"resource\":\"payment/42\",\"result\":\"success\",\"source_ip\":\"10.0.0.7\"}"),
            "/v1/ingest/azure": ingest("Azure activity log and Entra ID sign-in records", "{\"records\":[]}"),
            "/v1/query": {"post": {
                "summary": "Run a KQL or SQL query (role analyst or above)",
                "description": "Results stream as JSON lines: a {\"@columns\": […]} line per statement, one object per row, and a final {\"@summary\": …} line (rows, truncated, error). The query is recorded in the ledger before the first row is sent.",
                "tags": ["query"],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueryRequest"}}}},
                "responses": std_errors(json!({
                    "200": {"description": "rows", "content": {"application/x-ndjson": {"schema": {"$ref": "#/components/schemas/QueryLine"}}}},
                    "400": err("syntax or semantic error, with position"),
                    "429": {"$ref": "#/components/responses/Retry"},
                    "503": err("the read could not be recorded, so it was not run")
                }))
            }},
            "/v1/alerts": {"get": {
                "summary": "List alerts (role viewer or above)", "tags": ["alerts"],
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string"}, "description": "comma-separated: new, acknowledged, resolved, false-positive"},
                    {"name": "level", "in": "query", "schema": {"type": "string"}, "description": "at least this level"},
                    {"name": "rule_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}
                ],
                "responses": std_errors(json!({"200": {"description": "alerts, newest first", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}}}}}}))
            }},
            "/v1/alerts/{id}": {"get": {
                "summary": "One alert with its history", "tags": ["alerts"],
                "parameters": [{"$ref": "#/components/parameters/AlertId"}],
                "responses": std_errors(json!({"200": {"description": "the alert", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Alert"}}}}, "404": err("no such alert")}))
            }},
            "/v1/alerts/{id}/ack": {"post": {
                "summary": "Acknowledge (role analyst or above)", "tags": ["alerts"],
                "parameters": [{"$ref": "#/components/parameters/AlertId"}],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChangeRequest"}}}},
                "responses": std_errors(json!({"200": {"description": "recorded in the ledger, then applied", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChangeResult"}}}}, "404": err("no such alert"), "409": err("not allowed from the current status")}))
            }},
            "/v1/alerts/{id}/resolve": {"post": {
                "summary": "Resolve, or mark a false positive (role reviewer or above; a note is required)", "tags": ["alerts"],
                "parameters": [{"$ref": "#/components/parameters/AlertId"}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChangeRequest"}}}},
                "responses": std_errors(json!({"200": {"description": "recorded in the ledger, then applied", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChangeResult"}}}}, "400": err("no note"), "404": err("no such alert"), "409": err("not allowed from the current status")}))
            }},
            "/v1/verify": {
                "get": {"summary": "Latest signed checkpoint and the last verification result (role viewer or above)", "tags": ["integrity"],
                    "responses": std_errors(json!({"200": {"description": "status", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VerifyStatus"}}}}}))},
                "post": {"summary": "Verify the whole ledger now (role reviewer or above)", "tags": ["integrity"],
                    "responses": std_errors(json!({"200": {"description": "result", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VerifyRun"}}}}}))}
            },
            "/v1/archive": {
                "get": {"summary": "The archive tier: settings, the last pass, and every segment's state (local, archived, lag); role viewer or above, recorded", "tags": ["integrity"],
                    "responses": std_errors(json!({"200": {"description": "status", "content": {"application/json": {"schema": {"type": "object"}}}}}))},
                "post": {"summary": "Run an archive pass now (role admin)", "tags": ["integrity"],
                    "responses": std_errors(json!({"200": {"description": "the pass", "content": {"application/json": {"schema": {"type": "object"}}}}, "409": err("no archive is configured")}))}
            },
            "/v1/proofs/inclusion/{index}": {"get": {
                "summary": "Inclusion proof of one record in the latest checkpoint (tlog-proof text; check offline with `trailwarden verify-proof`)", "tags": ["integrity"],
                "parameters": [{"name": "index", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 0}}],
                "responses": std_errors(json!({"200": {"description": "proof", "content": {"text/plain": {"schema": {"type": "string"}}}}, "404": err("not in the signed tree")}))
            }},
            "/v1/proofs/consistency": {"get": {
                "summary": "Consistency proof between two signed sizes", "tags": ["integrity"],
                "parameters": [
                    {"name": "from", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 0}},
                    {"name": "to", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}}
                ],
                "responses": std_errors(json!({"200": {"description": "proof", "content": {"text/plain": {"schema": {"type": "string"}}}}, "404": err("no checkpoint at that size")}))
            }},
            "/v1/deliveries": {"get": {
                "summary": "Alert deliveries (the outbox) and the state of each sink (role viewer or above)", "tags": ["alerts"],
                "parameters": [
                    {"name": "state", "in": "query", "required": false, "schema": {"type": "string", "enum": ["pending", "delivered", "dead", "silenced"]}},
                    {"name": "sink", "in": "query", "required": false, "schema": {"type": "string"}},
                    {"name": "alert_id", "in": "query", "required": false, "schema": {"type": "integer"}},
                    {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}
                ],
                "responses": std_errors(json!({"200": {"description": "deliveries, newest first", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Deliveries"}}}}, "400": err("unknown state")}))
            }},
            "/v1/deliveries/{id}/retry": {"post": {
                "summary": "Queue a dead-lettered (or delivered, or silenced) delivery again (role admin)", "tags": ["alerts"],
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": std_errors(json!({"200": {"description": "queued again", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Delivery"}}}}, "404": err("no such delivery"), "409": err("still pending")}))
            }},
            "/v1/silences": {
                "get": {"summary": "Silences, newest first (role viewer or above)", "tags": ["alerts"],
                    "responses": std_errors(json!({"200": {"description": "silences", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Silence"}}}}}}))},
                "post": {"summary": "Hold back notifications of matching alerts until `ends` (role reviewer or above; recorded in the ledger)", "tags": ["alerts"],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SilenceRequest"}}}},
                    "responses": std_errors(json!({"200": {"description": "recorded in the ledger, then in force", "content": {"application/json": {"schema": {"type": "object"}}}}, "400": err("empty matcher, no reason, end in the past or more than 30 days away")}))}
            },
            "/v1/silences/{id}": {"delete": {
                "summary": "End a silence now (role reviewer or above; recorded in the ledger)", "tags": ["alerts"],
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": std_errors(json!({"200": {"description": "ended", "content": {"application/json": {"schema": {"type": "object"}}}}, "404": err("no such active silence")}))
            }},
            "/v1/alerts/{id}/assign": {"post": {
                "summary": "Assign an alert: `{\"assignee\": \"…\", \"due\": \"RFC 3339\"}` (role analyst or above; recorded in the ledger). New alerts are due within the SLA of their level ([review] sla); past it, an open alert is an exception of the daily review and serve raises a `trailwarden-overdue` escalation", "tags": ["alerts"],
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": std_errors(json!({"200": {"description": "assigned", "content": {"application/json": {"schema": {"type": "object"}}}}, "400": err("no assignee, bad due time"), "404": err("no such alert")}))
            }},
            "/v1/reviews": {
                "get": {"summary": "Log reviews (PCI DSS 10.4.1) with their sign-off state, newest period first (role viewer or above; the read is recorded)", "tags": ["compliance"],
                    "responses": std_errors(json!({"200": {"description": "reviews", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}}))},
                "post": {"summary": "Generate the review of a period now (role reviewer or above): `{\"date\": \"YYYY-MM-DD\", \"kind\": \"daily\", \"days\": 1, \"replace\": false}`; its hash is recorded in the ledger. `serve` generates each day's review by itself 15 minutes after the day ends", "tags": ["compliance"],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["date"], "properties": {"date": {"type": "string", "format": "date"}, "kind": {"type": "string"}, "days": {"type": "integer"}, "replace": {"type": "boolean"}}}}}},
                    "responses": std_errors(json!({"200": {"description": "generated and recorded", "content": {"application/json": {"schema": {"type": "object"}}}}, "400": err("bad date or kind"), "409": err("exists (signed, or unsigned without replace)")}))}
            },
            "/v1/reviews/{id}": {"get": {
                "summary": "One review: `?format=json` (default), `html` (self-contained, printable) or `csv` (role viewer or above; the read is recorded)", "tags": ["compliance"],
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}, {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "html", "csv"]}}],
                "responses": std_errors(json!({"200": {"description": "the review"}, "404": err("no such review")}))
            }},
            "/v1/reviews/{id}/sign-off": {"post": {
                "summary": "Sign a review off (role reviewer or above): `{\"note\": \"…\"}`; a ledger record binds the review's hash, the caller and the note", "tags": ["compliance"],
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": std_errors(json!({"200": {"description": "signed off", "content": {"application/json": {"schema": {"type": "object"}}}}, "404": err("no such review"), "409": err("already signed off, or no note")}))
            }},
            "/v1/controls": {"get": {
                "summary": "Control-failure incidents (PCI DSS 10.7): control, subject, start, end, duration, cause, remediation; closed by serve when the control works again, or by a person with a note (role viewer or above; the read is recorded)", "tags": ["compliance"],
                "responses": std_errors(json!({"200": {"description": "incidents, newest first", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}}))
            }},
            "/v1/controls/{id}/note": {"post": {
                "summary": "Close an incident with its remediation note `{\"note\": \"…\"}` (role reviewer or above; recorded in the ledger)", "tags": ["compliance"],
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": std_errors(json!({"200": {"description": "closed", "content": {"application/json": {"schema": {"type": "object"}}}}, "400": err("no note"), "404": err("no such incident"), "409": err("closed already")}))
            }},
            "/v1/reports/pci": {"get": {
                "summary": "The PCI DSS 4.0.1 Requirement 10 evidence report: 10.1.1–10.7.3, each met / gap / attest with its evidence (role viewer or above). The body (format=json) is report.json: its SHA-256 is recorded in the ledger (headers x-trailwarden-report-hash, x-trailwarden-ledger-index; prove it with /v1/proofs/inclusion/{index})", "tags": ["compliance"],
                "parameters": [{"name": "from", "in": "query", "required": true, "schema": {"type": "string"}, "description": "RFC 3339 or a duration back from now (30d)"}, {"name": "to", "in": "query", "schema": {"type": "string"}}, {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "html"]}}],
                "responses": std_errors(json!({"200": {"description": "the report", "content": {"application/json": {"schema": {"type": "object", "properties": {"requirements": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "status": {"type": "string", "enum": ["met", "gap", "attest"]}, "evidence": {"type": "array"}}}}}}}}}, "400": err("bad range")}))
            }},
            "/v1/sources": {"get": {
                "summary": "What each source has sent since the server started: events, last event time, rate", "tags": ["operations"],
                "responses": std_errors(json!({"200": {"description": "sources", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Sources"}}}}}))
            }},
            "/v1/tables": {"get": {
                "summary": "The query tables and their columns with types and meaning (what `query --tables` prints; role viewer or above)", "tags": ["query"],
                "responses": std_errors(json!({"200": {"description": "tables", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}}))
            }},
            "/v1/rules": {"get": {
                "summary": "The rules detection runs (Sigma and scheduled): state, alerts raised, last alert, matches since the start (role viewer or above)", "tags": ["alerts"],
                "responses": std_errors(json!({"200": {"description": "rules", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}}))
            }},
            "/v1/tokens": {
                "get": {
                    "summary": "API tokens: id, name, role, created, expires, revoked (never a token or its hash; role admin)", "tags": ["operations"],
                    "responses": std_errors(json!({"200": {"description": "tokens", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}}))
                },
                "post": {
                    "summary": "Create a token `{\"role\": \"viewer\", \"name\": \"alice\", \"expires\": \"90d\"}` (role admin); the answer carries the token, once; the creation is an access record in the ledger", "tags": ["operations"],
                    "responses": std_errors(json!({"201": {"description": "created: the entry and `token`", "content": {"application/json": {"schema": {"type": "object"}}}}, "400": err("bad role or expiry")}))
                }
            },
            "/v1/tokens/{id}": {"delete": {
                "summary": "Revoke a token (role admin; effective within a second; recorded in the ledger)", "tags": ["operations"],
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": std_errors(json!({"200": {"description": "revoked", "content": {"application/json": {"schema": {"type": "object"}}}}, "404": err("no such token")}))
            }},
            "/v1/config": {"get": {
                "summary": "The configuration in force, secrets hidden (role admin)", "tags": ["operations"],
                "responses": std_errors(json!({"200": {"description": "configuration", "content": {"application/json": {"schema": {"type": "object"}}}}}))
            }},
            "/v1/check": {
                "get": {
                    "summary": "The posture checks of `trailwarden check` over the running configuration (role viewer or above)", "tags": ["compliance"],
                    "responses": std_errors(json!({"200": {"description": "one file report", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}}))
                },
                "post": {
                    "summary": "Check one file `{\"file\": \"audit-policy.yaml\", \"text\": \"…\", \"cde_namespaces\": [\"payments\"]}`: an audit policy, kube-apiserver manifest or flags, AKS diagnostic settings, a trailwarden configuration (role viewer or above)", "tags": ["compliance"],
                    "responses": std_errors(json!({"200": {"description": "findings", "content": {"application/json": {"schema": {"type": "object"}}}}, "400": err("not a file the checks know, or it does not parse")}))
                }
            }
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "`trailwarden tokens create --role ROLE`, or an OIDC JWT when [oidc] is configured"}
            },
            "parameters": {
                "AlertId": {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}
            },
            "responses": {
                "Unauthorized": err("no or invalid credentials (recorded in the ledger)"),
                "Forbidden": err("the role may not do this (recorded in the ledger)"),
                "Retry": {"description": "backpressure, low disk or stopping: nothing was stored; retry after Retry-After seconds",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "ItemError": {"type": "object", "properties": {
                    "item": {"type": "integer", "description": "position of the record in the batch"},
                    "line": {"type": ["integer", "null"]}, "offset": {"type": ["integer", "null"]},
                    "format": {"type": ["string", "null"]}, "reason": {"type": "string"}}},
                "IngestResult": {"type": "object", "required": ["stored", "quarantined"], "properties": {
                    "stored": {"type": "integer"}, "quarantined": {"type": "integer"},
                    "first_index": {"type": ["integer", "null"]}, "last_index": {"type": ["integer", "null"]},
                    "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ItemError"}},
                    "error": {"type": "string"}}},
                "QueryRequest": {"type": "object", "properties": {
                    "kql": {"type": "string"}, "sql": {"type": "string"},
                    "since": {"type": "string", "description": "RFC 3339 or a duration ago (24h)"},
                    "until": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1}, "timeout_seconds": {"type": "integer", "minimum": 1},
                    "archive": {"type": "boolean", "description": "read sealed segments from the archive ([archive] url), plus what is not archived yet"}}},
                "QueryLine": {"type": "object", "description": "a row, or {\"@columns\": […]}, or {\"@summary\": {…}}"},
                "Change": {"type": "object", "properties": {
                    "at": {"type": "integer"}, "actor": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"}, "note": {"type": "string"}}},
                "Alert": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "rule_id": {"type": "string"}, "title": {"type": "string"},
                    "level": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                    "status": {"type": "string", "enum": ["new", "acknowledged", "resolved", "false-positive"]},
                    "group_key": {"type": "string"}, "summary": {"type": "string"},
                    "evidence": {"type": "array", "items": {"type": "integer"}, "description": "ledger indexes"},
                    "count": {"type": "integer"}, "first_seen": {"type": "integer"}, "last_seen": {"type": "integer"},
                    "history": {"type": "array", "items": {"$ref": "#/components/schemas/Change"}}}},
                "ChangeRequest": {"type": "object", "properties": {"note": {"type": "string"}, "false_positive": {"type": "boolean"}}},
                "ChangeResult": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "status": {"type": "string"}, "from": {"type": "string"},
                    "actor": {"type": "string"}, "note": {"type": "string"}, "ledger_index": {"type": "integer"}}},
                "VerifyRun": {"type": "object", "properties": {
                    "at": {"type": "string"}, "status": {"type": "string", "enum": ["ok", "warnings", "failed", "error"]},
                    "summary": {"type": "string"}, "size": {"type": "integer"}, "elapsed_seconds": {"type": "number"},
                    "failures": {"type": "array", "items": {"type": "object"}}}},
                "VerifyStatus": {"type": "object", "properties": {
                    "checkpoint": {"type": ["object", "null"], "properties": {"size": {"type": "integer"}, "root": {"type": "string"}, "note": {"type": "string"}}},
                    "last_verify": {"oneOf": [{"$ref": "#/components/schemas/VerifyRun"}, {"type": "null"}]}}},
                "Source": {"type": "object", "properties": {
                    "endpoint": {"type": "string"}, "sender": {"type": "string"}, "events": {"type": "integer"},
                    "quarantined": {"type": "integer"}, "last_event_time": {"type": ["string", "null"]},
                    "last_received": {"type": ["string", "null"]}, "rate_per_second": {"type": "number"}}},
                "Sources": {"type": "object", "properties": {"sources": {"type": "array", "items": {"$ref": "#/components/schemas/Source"}}}},
                "Matcher": {"type": "object", "description": "every field set must match", "properties": {
                    "min_level": {"type": "string", "enum": ["informational", "low", "medium", "high", "critical"]},
                    "tags": {"type": "array", "items": {"type": "string"}, "description": "any of these (globs)"},
                    "rule_id": {"type": "string", "description": "glob"}, "namespace": {"type": "string", "description": "glob"},
                    "source": {"type": "string", "description": "glob"}}},
                "SilenceRequest": {"type": "object", "required": ["matcher", "ends", "reason"], "properties": {
                    "matcher": {"$ref": "#/components/schemas/Matcher"},
                    "ends": {"type": "string", "description": "RFC 3339, or a duration from now (2h); at most 30 days"},
                    "reason": {"type": "string"}}},
                "Silence": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "matcher": {"$ref": "#/components/schemas/Matcher"}, "author": {"type": "string"},
                    "reason": {"type": "string"}, "created_at": {"type": "integer"}, "ends_at": {"type": "integer"},
                    "expired_by": {"type": ["string", "null"]}}},
                "AlertMessage": {"type": "object", "description": "the alert as it was at the change that is being sent", "properties": {
                    "key": {"type": "string", "description": "idempotency key tw-alert-<id>-v<version>: receivers dedupe on it"},
                    "event": {"type": "string", "enum": ["raised", "reraised", "escalated", "acknowledged", "resolved", "false-positive", "test"]},
                    "alert_id": {"type": "integer"}, "version": {"type": "integer"}, "rule_id": {"type": "string"},
                    "title": {"type": "string"}, "level": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                    "status": {"type": "string"}, "summary": {"type": "string"}, "group_key": {"type": "string"},
                    "namespace": {"type": ["string", "null"]}, "source": {"type": ["string", "null"]},
                    "evidence": {"type": "array", "items": {"type": "integer"}, "description": "ledger indexes"},
                    "evidence_truncated": {"type": "boolean"}, "count": {"type": "integer"},
                    "first_seen": {"type": "integer"}, "last_seen": {"type": "integer"}, "created_at": {"type": "integer"},
                    "actor": {"type": ["string", "null"]}, "note": {"type": ["string", "null"]}}},
                "Delivery": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "alert_id": {"type": "integer"}, "version": {"type": "integer"},
                    "event": {"type": "string"}, "sink": {"type": "string"},
                    "state": {"type": "string", "enum": ["pending", "delivered", "dead", "silenced"]},
                    "attempts": {"type": "integer"}, "created_at": {"type": "integer"}, "queued_at": {"type": "integer"},
                    "next_attempt_at": {"type": "integer"}, "delivered_at": {"type": ["integer", "null"]},
                    "last_error": {"type": ["string", "null"]}, "silenced_by": {"type": ["integer", "null"]},
                    "message": {"$ref": "#/components/schemas/AlertMessage"}}},
                "SinkStatus": {"type": "object", "properties": {
                    "sink": {"type": "string"}, "pending": {"type": "integer"}, "dead": {"type": "integer"},
                    "delivered": {"type": "integer"}, "silenced": {"type": "integer"},
                    "oldest_pending": {"type": ["integer", "null"]}, "last_success": {"type": ["integer", "null"]},
                    "last_failure": {"type": ["integer", "null"]}, "last_error": {"type": ["string", "null"]}}},
                "Deliveries": {"type": "object", "properties": {
                    "sinks": {"type": "array", "items": {"$ref": "#/components/schemas/SinkStatus"}},
                    "deliveries": {"type": "array", "items": {"$ref": "#/components/schemas/Delivery"}}}},
                "AlertWebhook": {"type": "object", "description": "The body a `webhook` sink POSTs. Headers (Standard Webhooks 1.0): `webhook-id` = data.id (the idempotency key, stable across retries), `webhook-timestamp` (Unix seconds of the attempt), `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, id + '.' + timestamp + '.' + body)) where key = base64-decode of the secret without `whsec_`. Reject timestamps more than 5 minutes off; dedupe on webhook-id.",
                    "required": ["type", "timestamp", "data"], "properties": {
                    "type": {"type": "string", "description": "alert.raised, alert.reraised, alert.escalated, alert.acknowledged, alert.resolved, alert.false-positive, alert.test"},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "data": {"type": "object", "properties": {
                        "id": {"type": "string"}, "event": {"type": "string"}, "alert_id": {"type": "integer"}, "version": {"type": "integer"},
                        "rule_id": {"type": "string"}, "title": {"type": "string"}, "level": {"type": "string"},
                        "tags": {"type": "array", "items": {"type": "string"}}, "status": {"type": "string"},
                        "summary": {"type": "string"}, "group_key": {"type": "string"},
                        "namespace": {"type": ["string", "null"]}, "source": {"type": ["string", "null"]}, "cluster": {"type": ["string", "null"]},
                        "evidence": {"type": "array", "items": {"type": "integer"}}, "evidence_truncated": {"type": "boolean"},
                        "count": {"type": "integer"}, "first_seen": {"type": "string", "format": "date-time"},
                        "last_seen": {"type": "string", "format": "date-time"}, "created_at": {"type": "string", "format": "date-time"},
                        "actor": {"type": ["string", "null"]}, "note": {"type": ["string", "null"]}, "link": {"type": ["string", "null"]}}}}}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        if let Some(s) = x.as_str() {
                            out.push(s);
                        }
                    }
                    refs(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = super::document();
        let mut rs = Vec::new();
        refs(&doc, &mut rs);
        assert!(rs.len() > 20, "the document uses references: {}", rs.len());
        assert!(doc["components"]["schemas"].get("AlertWebhook").is_some());
        for r in rs {
            let ptr = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("external reference {r}"));
            assert!(doc.pointer(ptr).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn every_route_of_the_contract_is_documented() {
        let doc = super::document();
        for p in [
            "/v1/ingest/k8s-audit",
            "/v1/ingest/aks",
            "/v1/ingest/gke",
            "/v1/ingest/eks",
            "/v1/ingest/app",
            "/v1/ingest/azure",
            "/v1/query",
            "/v1/alerts",
            "/v1/alerts/{id}/ack",
            "/v1/alerts/{id}/resolve",
            "/v1/verify",
            "/v1/archive",
            "/v1/sources",
            "/v1/deliveries",
            "/v1/deliveries/{id}/retry",
            "/v1/silences",
            "/v1/alerts/{id}/assign",
            "/v1/reviews",
            "/v1/reviews/{id}",
            "/v1/reviews/{id}/sign-off",
            "/v1/controls",
            "/v1/controls/{id}/note",
            "/v1/reports/pci",
            "/v1/tables",
            "/v1/rules",
            "/v1/tokens",
            "/v1/tokens/{id}",
            "/v1/config",
            "/v1/check",
            "/metrics",
            "/healthz",
            "/readyz",
            "/openapi.json",
        ] {
            assert!(doc["paths"].get(p).is_some(), "{p} missing");
        }
    }
}
