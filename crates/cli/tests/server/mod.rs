//! `trailwarden serve` end to end: the real binary on loopback, talked to with curl (TLS, HTTP/2,
//! client certificates), raw sockets (slow and truncated clients), a real Prometheus and a real
//! rsyslog.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod archive;
mod cluster;
mod compliance;
mod components;
mod delivery;
mod ui;

/// A running server.
pub struct Server {
    pub child: Child,
    pub data: PathBuf,
    pub base: String,
    pub addr: String,
    pub token: String,
    pub lines: mpsc::Receiver<String>,
    pub syslog: Vec<(String, String)>,
}

pub(crate) fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trailwarden"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TRAILWARDEN_") {
            c.env_remove(k);
        }
    }
    c.env("TRAILWARDEN_USER", "server-test");
    c
}

/// Run the CLI on a data directory; it must succeed; its stdout.
pub(crate) fn cli_ok(data: &Path, args: &[&str]) -> String {
    let out = bin()
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trailwarden {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn tmpdir(name: &str) -> PathBuf {
    let d = trailwarden_model::scratch::dir("tw-srv", name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Server {
    /// Start `serve` on a free loopback port with these environment overrides.
    pub fn start(data: &Path, env: &[(&str, &str)]) -> Server {
        Self::try_start(data, env).unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    pub fn try_start(data: &Path, env: &[(&str, &str)]) -> Result<Server, String> {
        let mut c = bin();
        // TW_TEST_LISTEN: a chosen address (a test that must know the port before the start)
        let listen = env
            .iter()
            .find(|(k, _)| *k == "TW_TEST_LISTEN")
            .map_or("127.0.0.1:0", |(_, v)| *v);
        c.arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", listen])
            .env("TRAILWARDEN_VERIFY_INTERVAL", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("TW_TEST_VERBOSE").is_some() {
                    eprintln!("server: {l}");
                }
                let _ = tx.send(format!("E {l}"));
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("O {l}"));
            }
        });
        let mut base: Option<String> = None;
        let mut token = String::new();
        let mut syslog = Vec::new();
        let first_start = !data.join("tokens.json").exists();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let done = base.is_some() && (!first_start || !token.is_empty());
            let wait = if done {
                Duration::from_millis(300)
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            let l = match rx.recv_timeout(wait) {
                Ok(l) => l,
                Err(_) if done => break,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(seen.join("\n"));
                }
            };
            seen.push(l.clone());
            if let Some(rest) = l.strip_prefix("E trailwarden serving ") {
                base = rest.split_whitespace().next().map(str::to_string);
            } else if let Some(rest) = l.strip_prefix("E syslog ") {
                let mut p = rest.split(" on ");
                syslog.push((p.next().unwrap().to_string(), p.next().unwrap().to_string()));
            } else if let Some(t) = l.strip_prefix("O ") {
                token = t.to_string();
            } else if l.starts_with("E error") {
                let _ = child.wait();
                return Err(seen.join("\n"));
            }
        }
        let base = base.unwrap();
        let addr = base.split("://").nth(1).unwrap().to_string();
        Ok(Server {
            child,
            data: data.to_path_buf(),
            base,
            addr,
            token,
            lines: rx,
            syslog,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A token of a role, made with the CLI while the server runs.
    pub fn token(&self, role: &str) -> String {
        let t = cli_ok(&self.data, &["tokens", "create", "--role", role]);
        let t = t.trim().to_string();
        assert!(
            t.starts_with("twk_") && !t.contains('\n'),
            "stdout is only the token: {t:?}"
        );
        t
    }

    /// curl with the server's CA; returns (status, body).
    pub fn curl(&self, token: Option<&str>, args: &[&str]) -> (u16, String) {
        let (code, _, body) = self.curl_full(token, args);
        (code, body)
    }

    /// curl; returns (status, HTTP version, body).
    pub fn curl_full(&self, token: Option<&str>, args: &[&str]) -> (u16, String, String) {
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "--max-time",
            "60",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
        ]);
        if self.base.starts_with("https") {
            c.arg("--cacert").arg(self.data.join("keys/tls.crt"));
        }
        if let Some(t) = token {
            c.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        c.args(args);
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
        let mut t = tail.split_whitespace();
        let code = t.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut body = body.to_string();
        if code == 0 {
            body.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        (code, t.next().unwrap_or("").to_string(), body)
    }

    /// POST JSON with `curl -i`: the status line, headers and body, lowercased (to look at
    /// `Retry-After` and friends).
    pub fn post_json_with_headers(&self, token: &str, path: &str, body: &str) -> String {
        let f = self.data.with_extension(format!("body-{}", rand_suffix()));
        std::fs::write(&f, body).unwrap();
        let out = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "30", "--cacert"])
            .arg(self.data.join("keys/tls.crt"))
            .args([
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &format!("@{}", f.display()),
                &self.url(path),
            ])
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&f);
        String::from_utf8_lossy(&out.stdout).to_lowercase()
    }

    pub fn post_json(&self, token: &str, path: &str, body: &str) -> (u16, String) {
        let f = self.data.with_extension(format!("body-{}", rand_suffix()));
        std::fs::write(&f, body).unwrap();
        let r = self.curl(
            Some(token),
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &format!("@{}", f.display()),
                &self.url(path),
            ],
        );
        let _ = std::fs::remove_file(&f);
        r
    }

    /// Run a KQL query; returns the rows (the `@` lines removed) and the summary.
    pub fn query(&self, token: &str, kql: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
        let body = serde_json::json!({ "kql": kql }).to_string();
        let (code, text) = self.post_json(token, "/v1/query", &body);
        assert_eq!(code, 200, "query {kql}: {text}");
        let mut rows = Vec::new();
        let mut summary = serde_json::Value::Null;
        for l in text.lines().filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(s) = v.get("@summary") {
                summary = s.clone();
            } else if v.get("@columns").is_none() {
                rows.push(v);
            }
        }
        assert!(summary.get("error").is_none(), "{kql}: {summary}");
        (rows, summary)
    }

    pub fn count(&self, token: &str, kql: &str) -> i64 {
        let (rows, _) = self.query(token, &format!("{kql} | count"));
        rows[0]["Count"]
            .as_i64()
            .unwrap_or_else(|| panic!("{:?}", rows))
    }

    /// SIGTERM and wait; returns the exit code and the stderr lines seen after.
    pub fn stop(mut self) -> (i32, Vec<String>) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let st = wait_timeout(&mut self.child, Duration::from_secs(60));
        let lines: Vec<String> = self.lines.try_iter().collect();
        (st, lines)
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_timeout(c: &mut Child, d: Duration) -> i32 {
    let end = Instant::now() + d;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() > end {
            let _ = c.kill();
            panic!("the server did not stop within {d:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rand_suffix() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!("{}", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

/// Every Kubernetes audit event of the corpus (Falco's traces and audit2rbac's capture).
pub fn corpus_events() -> Vec<serde_json::Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(root.join("falcosecurity-falco/test/trace_files/k8s_audit"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    files.sort();
    files.push(root.join("liggitt-audit2rbac/testdata/demo.log"));
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for l in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                if v.get("auditID").is_some() {
                    out.push(v);
                }
            }
        }
    }
    out
}

fn event_list(items: &[serde_json::Value]) -> String {
    serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}).to_string()
}

/// A synthetic audit event with a chosen auditID.
pub fn synthetic(id: &str, user: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
        "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/payments/pods", "verb": "list",
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.8"], "userAgent": "kubectl/v1.31.0",
        "objectRef": {"resource": "pods", "namespace": "payments", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-11-20T10:00:00.000000Z", "stageTimestamp": "2026-11-20T10:00:00.002000Z"
    })
}

#[test]
fn serve_corpus_eventlists_read_back_through_the_query_api() {
    let data = tmpdir("corpus");
    let s = Server::start(&data, &[]);
    assert!(s.base.starts_with("https://"), "TLS by default: {}", s.base);
    // A long-running server keeps khugepaged from refilling what its allocator returns
    // (BENCHMARKS.md, "The steady hour"): the process's THP flag is off.
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap();
    assert!(
        status.contains("THP_enabled:\t0") || !status.contains("THP_enabled"),
        "serve runs without transparent huge pages:\n{status}"
    );
    let tok = s.token("ingest");
    let analyst = s.token("analyst");
    std::thread::sleep(Duration::from_millis(1100)); // token file reload
    let events = corpus_events();
    assert!(events.len() > 80, "corpus events: {}", events.len());
    let mut acked = 0;
    for chunk in events.chunks(400) {
        let (code, body) = s.post_json(&tok, "/v1/ingest/k8s-audit", &event_list(chunk));
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["stored"].as_u64(), Some(chunk.len() as u64), "{body}");
        acked += chunk.len();
    }
    // gzip, a single Event and JSON lines are accepted too
    let one = synthetic("gz-0001", "alice-gz");
    let gz = data.with_extension("gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(event_list(&[one]).as_bytes()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let (code, body) = s.curl(
        Some(&tok),
        &[
            "-H",
            "Content-Type: application/json",
            "-H",
            "Content-Encoding: gzip",
            "--data-binary",
            &format!("@{}", gz.display()),
            &s.url("/v1/ingest/k8s-audit"),
        ],
    );
    assert_eq!(code, 200, "gzip: {body}");
    let jsonl = format!(
        "{}\n{}\n",
        synthetic("jl-1", "bob-jl"),
        synthetic("jl-2", "bob-jl")
    );
    let (code, body) = s.post_json(&tok, "/v1/ingest/k8s-audit", &jsonl);
    assert_eq!(code, 200, "jsonl: {body}");
    let (code, body) = s.post_json(
        &tok,
        "/v1/ingest/k8s-audit",
        &synthetic("single-1", "carol-single").to_string(),
    );
    assert_eq!(code, 200, "single event: {body}");
    acked += 4;
    // read back: every event, by count and by auditID
    let n = s.count(&analyst, "events | where format == 'k8s-audit'");
    assert_eq!(n as usize, acked);
    let (rows, _) = s.query(&analyst, "events | where user in ('alice-gz', 'bob-jl', 'carol-single') | summarize n = count() by user | order by user asc");
    let got: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("alice-gz".to_string(), 1),
            ("bob-jl".to_string(), 2),
            ("carol-single".to_string(), 1)
        ]
    );
    // HTTP/2 over ALPN
    let (code, version, body) = s.curl_full(Some(&analyst), &["--http2", &s.url("/v1/sources")]);
    assert_eq!((code, version.as_str()), (200, "2"), "{body}");
    // the query reads are in the ledger as access records
    let (rows, _) = s.query(
        &analyst,
        "TrailwardenAccess | where Action == 'query' | project Subject, Outcome",
    );
    assert!(
        rows.iter()
            .any(|r| r["Subject"].as_str().unwrap().contains("analyst")),
        "{rows:?}"
    );
    let (code, _) = s.stop();
    assert_eq!(code, 0);
}

/// Allowed (`A`), 401 (`U`) or 403 (`F`) for: no credentials, a bad token, then the roles ingest,
/// viewer, analyst, reviewer, admin.
const MATRIX: &[(&str, &str, &str, &str)] = &[
    // method, path, body, expected
    ("GET", "/healthz", "", "AAAAAAA"),
    ("GET", "/readyz", "", "AAAAAAA"),
    ("GET", "/openapi.json", "", "UUFAAAA"),
    ("GET", "/metrics", "", "UUFAAAA"),
    ("POST", "/v1/ingest/k8s-audit", "EVENT", "UUAFFFA"),
    ("POST", "/v1/ingest/aks", "{\"records\":[]}", "UUAFFFA"),
    ("POST", "/v1/ingest/gke", "[]", "UUAFFFA"),
    ("POST", "/v1/ingest/eks", "{\"messageType\":\"CONTROL_MESSAGE\",\"logEvents\":[]}", "UUAFFFA"),
    ("POST", "/v1/ingest/app", "{\"timestamp\":\"2026-11-20T10:00:00Z\",\"user_id\":\"u1\",\"action\":\"refund\",\"resource\":\"payment/1\",\"result\":\"success\",\"source_ip\":\"10.1.1.1\"}", "UUAFFFA"),
    ("POST", "/v1/ingest/azure", "{\"records\":[]}", "UUAFFFA"),
    ("POST", "/v1/query", "{\"kql\":\"events | take 1\"}", "UUFFAAA"),
    ("GET", "/v1/alerts", "", "UUFAAAA"),
    ("GET", "/v1/alerts/1", "", "UUFAAAA"),
    ("POST", "/v1/alerts/1/ack", "{\"note\":\"looking\"}", "UUFFAAA"),
    ("POST", "/v1/alerts/1/resolve", "{\"note\":\"approved change\"}", "UUFFFAA"),
    ("POST", "/v1/alerts/1/assign", "{\"assignee\":\"alice\"}", "UUFFAAA"),
    ("GET", "/v1/verify", "", "UUFAAAA"),
    ("POST", "/v1/verify", "", "UUFFFAA"),
    ("GET", "/v1/proofs/inclusion/0", "", "UUFFAAA"),
    ("GET", "/v1/proofs/consistency?from=0", "", "UUFFAAA"),
    ("GET", "/v1/sources", "", "UUFAAAA"),
    ("GET", "/v1/reviews", "", "UUFAAAA"),
    ("GET", "/v1/reviews/daily-2000-01-01", "", "UUFAAAA"),
    ("POST", "/v1/reviews", "{\"date\":\"2000-01-01\"}", "UUFFFAA"),
    ("POST", "/v1/reviews/daily-2000-01-01/sign-off", "{\"note\":\"ok\"}", "UUFFFAA"),
    ("GET", "/v1/controls", "", "UUFAAAA"),
    ("POST", "/v1/controls/1/note", "{\"note\":\"fixed\"}", "UUFFFAA"),
    ("GET", "/v1/reports/pci?from=1d", "", "UUFAAAA"),
    ("GET", "/v1/tables", "", "UUFAAAA"),
    ("GET", "/v1/rules", "", "UUFAAAA"),
    ("GET", "/v1/tokens", "", "UUFFFFA"),
    ("POST", "/v1/tokens", "{\"role\":\"viewer\",\"name\":\"matrix\"}", "UUFFFFA"),
    ("DELETE", "/v1/tokens/tok-none", "", "UUFFFFA"),
    ("GET", "/v1/config", "", "UUFFFFA"),
    ("GET", "/v1/check", "", "UUFAAAA"),
    ("POST", "/v1/check", "{\"file\":\"trailwarden.toml\",\"text\":\"\"}", "UUFAAAA"),
    ("GET", "/v1/no-such-route", "", "UUFAAAA"),
];

#[test]
fn serve_role_matrix_every_endpoint_every_role() {
    let data = tmpdir("roles");
    let s = Server::start(&data, &[]);
    let roles = ["ingest", "viewer", "analyst", "reviewer", "admin"];
    let mut creds: Vec<Option<String>> = vec![None, Some("twk_not-a-real-token".into())];
    for r in roles {
        creds.push(Some(s.token(r)));
    }
    std::thread::sleep(Duration::from_millis(1100));
    let event = synthetic("matrix-1", "matrix").to_string();
    let mut failures = Vec::new();
    let mut denials = 0;
    for (method, path, body, expect) in MATRIX {
        let body = if *body == "EVENT" {
            event.as_str()
        } else {
            body
        };
        for (i, want) in expect.chars().enumerate() {
            let mut args = vec!["-X", method];
            if !body.is_empty() {
                args.extend([
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    body,
                ]);
            }
            let url = s.url(path);
            args.push(&url);
            let (code, text) = s.curl(creds[i].as_deref(), &args);
            let got = match code {
                401 => 'U',
                403 => 'F',
                0 => '?',
                _ => 'A',
            };
            if got != 'A' {
                denials += 1;
            }
            if got != want {
                let who = [
                    "anonymous",
                    "bad-token",
                    "ingest",
                    "viewer",
                    "analyst",
                    "reviewer",
                    "admin",
                ][i];
                failures.push(format!(
                    "{method} {path} as {who}: expected {want}, got {code} {text}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "role matrix:\n{}", failures.join("\n"));
    // every refusal is in the ledger (10.2.1.4), with who and from where
    let admin = creds[6].clone().unwrap();
    let (rows, _) = s.query(&admin, "TrailwardenAccess | where Outcome in ('forbidden', 'unauthenticated') | summarize n = count() by Outcome");
    let total: i64 = rows.iter().map(|r| r["n"].as_i64().unwrap()).sum();
    assert!(
        total >= denials,
        "{total} refusals recorded, {denials} made: {rows:?}"
    );
    let (rows, _) = s.query(&admin, "TrailwardenAccess | where Outcome == 'forbidden' and Action == 'query' | take 1 | project Subject, Origin, Target");
    assert!(
        rows[0]["Subject"].as_str().unwrap().contains("(ingest)"),
        "{rows:?}"
    );
    assert_eq!(rows[0]["Origin"].as_str(), Some("127.0.0.1"));
}

#[test]
fn serve_bad_input_is_answered_precisely_and_valid_items_are_kept() {
    let data = tmpdir("badinput");
    let s = Server::start(
        &data,
        &[
            ("TRAILWARDEN_HTTP_MAX_BODY_BYTES", "65536"),
            ("TRAILWARDEN_HTTP_MAX_DECODED_BYTES", "131072"),
        ],
    );
    let t = s.token("admin");
    std::thread::sleep(Duration::from_millis(1100));
    // JSON lines with one broken line: 400, the two valid ones stored, the broken one quarantined
    let body = format!(
        "{}\n{{\"kind\":\"Event\",\"auditID\":\"broken\n{}\n",
        synthetic("b1", "bad-input-ok"),
        synthetic("b2", "bad-input-ok")
    );
    let (code, text) = s.post_json(&t, "/v1/ingest/k8s-audit", &body);
    assert_eq!(code, 400, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["stored"].as_u64(), v["quarantined"].as_u64()),
        (Some(2), Some(1)),
        "{text}"
    );
    assert_eq!(v["errors"][0]["item"].as_u64(), Some(1));
    assert_eq!(v["errors"][0]["line"].as_u64(), Some(2));
    assert!(!v["errors"][0]["reason"].as_str().unwrap().is_empty());
    assert_eq!(s.count(&t, "events | where user == 'bad-input-ok'"), 2);
    // GKE entries and a Pub/Sub push body: stored as gke events; the Compute Engine entry and
    // the push body that is not base64 are quarantined, each with its reason
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../parse/tests/fixtures");
    let gke = std::fs::read_to_string(fixtures.join("gke-audit.jsonl")).unwrap();
    let (code, text) = s.post_json(&t, "/v1/ingest/gke", &gke);
    assert_eq!(code, 400, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["stored"].as_u64(), v["quarantined"].as_u64()),
        (Some(8), Some(2)),
        "{text}"
    );
    assert!(text.contains("compute.googleapis.com"), "{text}");
    assert_eq!(
        s.count(
            &t,
            "events | where format == 'gke' and user == 'mallory@acme.example'"
        ),
        3
    );
    assert_eq!(s.count(&t, "AKSAudit | where ObjectRef.resource == 'clusterrolebindings' and RequestObject.roleRef.name == 'cluster-admin'"), 1);
    // EKS from CloudWatch Logs: the cluster is in the source label
    let eks = std::fs::read_to_string(fixtures.join("eks-cloudwatch.jsonl")).unwrap();
    let first = eks.lines().next().unwrap();
    let (code, text) = s.post_json(&t, "/v1/ingest/eks", first);
    assert_eq!(code, 200, "{text}");
    assert_eq!(s.count(&t, "events | where source endswith '#/aws/eks/pay-prod-eks/cluster/kube-apiserver-audit-5b2f0e7c1a9d4e3f'"), 2);
    assert_eq!(
        s.count(
            &t,
            "records | where kind == 'quarantine' and raw has 'broken'"
        ),
        1
    );
    // an EventList whose second item is not an audit event
    let el = format!("{{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[{},{{\"hello\":1}}]}}", synthetic("b3", "bad-input-ok"));
    let (code, text) = s.post_json(&t, "/v1/ingest/k8s-audit", &el);
    assert_eq!(code, 400, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (
            v["stored"].as_u64(),
            v["quarantined"].as_u64(),
            v["errors"][0]["item"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{text}"
    );
    // not JSON at all
    let (code, text) = s.post_json(&t, "/v1/ingest/k8s-audit", "{not json");
    assert_eq!(code, 400, "{text}");
    // empty
    let (code, _) = s.post_json(&t, "/v1/ingest/k8s-audit", "  \n");
    assert_eq!(code, 400);
    // over the body limit
    let big = "x".repeat(70_000);
    let (code, text) = s.post_json(&t, "/v1/ingest/k8s-audit", &big);
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("max_body_bytes"), "{text}");
    // gzip that decodes past the decoded limit, and gzip that is not gzip
    let bomb = data.with_extension("bomb.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![b' '; 1 << 20]).unwrap();
    std::fs::write(&bomb, enc.finish().unwrap()).unwrap();
    let (code, text) = s.curl(
        Some(&t),
        &[
            "-H",
            "Content-Type: application/json",
            "-H",
            "Content-Encoding: gzip",
            "--data-binary",
            &format!("@{}", bomb.display()),
            &s.url("/v1/ingest/k8s-audit"),
        ],
    );
    assert_eq!(code, 413, "{text}");
    let (code, text) = s.curl(
        Some(&t),
        &[
            "-H",
            "Content-Type: application/json",
            "-H",
            "Content-Encoding: gzip",
            "--data-binary",
            "not gzip",
            &s.url("/v1/ingest/k8s-audit"),
        ],
    );
    assert_eq!(code, 400, "{text}");
    let (code, _) = s.curl(
        Some(&t),
        &[
            "-H",
            "Content-Type: application/json",
            "-H",
            "Content-Encoding: br",
            "--data-binary",
            "{}",
            &s.url("/v1/ingest/k8s-audit"),
        ],
    );
    assert_eq!(code, 415);
    // wrong content types (curl -d defaults to a form)
    let (code, text) = s.curl(
        Some(&t),
        &[
            "-d",
            &synthetic("b4", "x").to_string(),
            &s.url("/v1/ingest/k8s-audit"),
        ],
    );
    assert_eq!(code, 415, "{text}");
    let (code, _) = s.curl(
        Some(&t),
        &[
            "-H",
            "Content-Type: text/xml",
            "--data-binary",
            "<a/>",
            &s.url("/v1/ingest/app"),
        ],
    );
    assert_eq!(code, 415);
    // unknown endpoint, bad query
    let (code, _) = s.post_json(&t, "/v1/ingest/nope", "{}");
    assert_eq!(code, 404);
    let (code, text) = s.post_json(&t, "/v1/query", "{\"kql\": \"events | whre x\"}");
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("line 1"), "{text}");
    let (code, _) = s.post_json(
        &t,
        "/v1/query",
        "{\"kql\": \"events\", \"sql\": \"select 1\"}",
    );
    assert_eq!(code, 400);
    // the query API honours the row limit
    let (rows, summary) = {
        let (code, text) = s.post_json(&t, "/v1/query", "{\"kql\": \"records\", \"limit\": 2}");
        assert_eq!(code, 200);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let rows = lines
            .iter()
            .filter(|l| l.get("@columns").is_none() && l.get("@summary").is_none())
            .count();
        (rows, lines.last().unwrap()["@summary"].clone())
    };
    assert_eq!(rows, 2);
    assert_eq!(summary["truncated"], true, "{summary}");
}

fn read_until_closed(sock: &mut std::net::TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    sock.set_read_timeout(Some(limit)).unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!(
                    "the server kept a stalled connection open for {:?}",
                    t.elapsed()
                )
            }
            Err(_) => break, // reset
        }
    }
    (t.elapsed(), got)
}

#[test]
fn serve_slow_clients_and_truncated_tls_handshakes_are_cut_off() {
    let timeouts = [
        ("TRAILWARDEN_HTTP_HEADER_TIMEOUT_SECONDS", "1"),
        ("TRAILWARDEN_HTTP_TLS_HANDSHAKE_TIMEOUT_SECONDS", "1"),
        ("TRAILWARDEN_HTTP_BODY_TIMEOUT_SECONDS", "2"),
    ];
    let data = tmpdir("slow-tls");
    let s = Server::start(&data, &timeouts);
    // a TLS ClientHello cut off after the record header
    let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
    sock.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    // meanwhile the server answers others
    let (code, _) = s.curl(None, &[&s.url("/healthz")]);
    assert_eq!(code, 200);
    let (took, _) = read_until_closed(&mut sock, Duration::from_secs(15));
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
    // garbage instead of a handshake
    let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
    sock.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    read_until_closed(&mut sock, Duration::from_secs(15));
    let (code, _) = s.curl(None, &[&s.url("/healthz")]);
    assert_eq!(code, 200, "still serving");
    drop(s);

    // plain HTTP on loopback (TLS off) to play slowloris at the HTTP layer
    let data = tmpdir("slow-http");
    let mut env = timeouts.to_vec();
    env.push(("TRAILWARDEN_HTTP_TLS", "false"));
    let s = Server::start(&data, &env);
    assert!(s.base.starts_with("http://"));
    // headers that never end
    let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
    sock.write_all(b"POST /v1/ingest/k8s-audit HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
        .unwrap();
    let (took, _) = read_until_closed(&mut sock, Duration::from_secs(15));
    assert!(
        took < Duration::from_secs(10),
        "header slowloris held {took:?}"
    );
    // a body that never arrives: 408
    let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
    let req = format!(
        "POST /v1/ingest/k8s-audit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"kind\"",
        s.token
    );
    sock.write_all(req.as_bytes()).unwrap();
    let (took, got) = read_until_closed(&mut sock, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    let (code, _) = s.curl(None, &[&s.url("/healthz")]);
    assert_eq!(code, 200);
}

#[test]
fn serve_restart_mid_load_keeps_every_acknowledged_event() {
    let data = tmpdir("restart");
    let s = Server::start(&data, &[]);
    let tok = s.token("ingest");
    std::thread::sleep(Duration::from_millis(1100));
    let base = s.url("/v1/ingest/k8s-audit");
    let ca = data.join("keys/tls.crt");
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (acked_tx, acked_rx) = mpsc::channel::<usize>();
    let loader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for b in 0.. {
            if stop_rx.try_recv().is_ok() {
                break;
            }
            let items: Vec<serde_json::Value> = (0..50)
                .map(|i| synthetic(&format!("r{b}-{i}"), &format!("restart-{b}")))
                .collect();
            let out = Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "10",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--cacert",
                ])
                .arg(&ca)
                .args([
                    "-H",
                    &format!("Authorization: Bearer {tok}"),
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    &event_list(&items),
                    &base,
                ])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout) == "200" {
                acked.push(b);
                let _ = acked_tx.send(b);
            }
        }
        acked
    });
    // let some batches through, then kill the server in the middle of the load
    for _ in 0..8 {
        acked_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    s.kill9();
    std::thread::sleep(Duration::from_millis(300));
    stop_tx.send(()).unwrap();
    let acked = loader.join().unwrap();
    assert!(acked.len() >= 8);
    let s = Server::start(&data, &[]);
    let admin = s.token("admin");
    std::thread::sleep(Duration::from_millis(1100));
    let (rows, _) = s.query(
        &admin,
        "events | where user startswith 'restart-' | summarize n = count() by user",
    );
    let counts: std::collections::HashMap<String, i64> = rows
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    for b in &acked {
        assert_eq!(
            counts.get(&format!("restart-{b}")),
            Some(&50),
            "acknowledged batch {b} incomplete after the restart"
        );
    }
    // SIGTERM: drain, stop record, final checkpoint; the ledger verifies
    let (code, lines) = s.stop();
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("final checkpoint")),
        "{lines:?}"
    );
    // (kill -9 leaves an unclean-shutdown warning, never a failure)
    let out = bin()
        .arg("--data-dir")
        .arg(&data)
        .args(["--output", "json", "verify"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["failures"].as_array().unwrap().is_empty() && v["status"] != "failed",
        "{v}"
    );
    let out = bin()
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--output",
            "json",
            "query",
            "records | where kind == 'lifecycle' and raw has 'SIGTERM' | count",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"Count\":1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn serve_low_disk_refuses_with_503_and_raises_a_control_alert() {
    let data = tmpdir("disk");
    let s = Server::start(
        &data,
        &[
            (
                "TRAILWARDEN_INGEST_MIN_FREE_DISK_BYTES",
                "18446744073709551615",
            ),
            ("TRAILWARDEN_INGEST_RETRY_AFTER_SECONDS", "7"),
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let text = s.post_json_with_headers(
        &s.token,
        "/v1/ingest/k8s-audit",
        &synthetic("d1", "disk").to_string(),
    );
    assert!(
        text.starts_with("http/2 503") || text.starts_with("http/1.1 503"),
        "{text}"
    );
    assert!(text.contains("retry-after: 7"), "{text}");
    let (code, _) = s.curl(None, &[&s.url("/readyz")]);
    assert_eq!(code, 503);
    std::thread::sleep(Duration::from_millis(800));
    let (code, text) = s.curl(Some(&s.token), &[&s.url("/v1/alerts")]);
    assert_eq!(code, 200);
    assert!(text.contains("trailwarden-control-disk-low"), "{text}");
    assert!(text.contains("pci_dss.10.7.2"), "{text}");
}

#[test]
fn serve_refuses_world_readable_keys_and_token_files() {
    use std::os::unix::fs::PermissionsExt;
    let data = tmpdir("perms");
    let s = Server::start(&data, &[]);
    let (code, _) = s.stop();
    assert_eq!(code, 0);
    for f in ["keys/tls.key", "tokens.json"] {
        let p = data.join(f);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Server::try_start(&data, &[])
            .err()
            .unwrap_or_else(|| panic!("started with {f} world-readable"));
        assert!(e.contains("chmod 600"), "{f}: {e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let s = Server::start(&data, &[]);
    assert!(s.token.is_empty(), "no second admin token on restart");
}

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl {args:?}");
}

#[test]
fn serve_mtls_client_certificates_map_to_roles() {
    let data = tmpdir("mtls");
    let pki = tmpdir("mtls-pki");
    openssl(
        &pki,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ],
    );
    std::fs::write(
        pki.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    for cn in ["kube-apiserver", "stranger"] {
        openssl(
            &pki,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{cn}.key"),
                "-out",
                &format!("{cn}.csr"),
                "-subj",
                &format!("/CN={cn}/O=system:masters"),
            ],
        );
        openssl(
            &pki,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{cn}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "client.ext",
                "-out",
                &format!("{cn}.crt"),
                "-days",
                "1",
            ],
        );
    }
    let ca = pki.join("ca.crt").display().to_string();
    let s = Server::start(
        &data,
        &[
            ("TRAILWARDEN_HTTP_CLIENT_CA", &ca),
            ("TRAILWARDEN_HTTP_CLIENT_ROLES", "kube-apiserver=ingest"),
        ],
    );
    let with_cert = |cn: &str, path: &str| {
        let crt = pki.join(format!("{cn}.crt")).display().to_string();
        let key = pki.join(format!("{cn}.key")).display().to_string();
        s.curl(
            None,
            &[
                "--cert",
                &crt,
                "--key",
                &key,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &synthetic("m1", "mtls").to_string(),
                &s.url(path),
            ],
        )
    };
    let (code, text) = with_cert("kube-apiserver", "/v1/ingest/k8s-audit");
    assert_eq!(code, 200, "{text}");
    let (code, _) = with_cert("kube-apiserver", "/v1/query");
    assert_eq!(code, 403, "an ingest certificate reads nothing");
    let (code, _) = with_cert("stranger", "/v1/ingest/k8s-audit");
    assert_eq!(code, 401);
    // bearer tokens still work without a certificate (client certificates are optional)
    let (code, _) = s.curl(Some(&s.token), &[&s.url("/v1/sources")]);
    assert_eq!(code, 200);
    let (rows, _) = s.query(
        &s.token,
        "TrailwardenAccess | where Subject has 'stranger' | project Outcome",
    );
    assert_eq!(rows[0]["Outcome"].as_str(), Some("unauthenticated"));
}

/// Regression: a listener that could not bind left the ledger writer running and `serve` hung
/// joining it, silent, instead of exiting with the error.
#[test]
fn serve_exits_with_the_error_when_its_port_is_taken() {
    let data = tmpdir("busy-port");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let started = Instant::now();
    match Server::try_start(&data, &[("TW_TEST_LISTEN", addr.as_str())]) {
        Ok(_) => panic!("serve started on a port that is taken"),
        Err(e) => assert!(e.contains(&addr), "{e}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "serve took {:?} to give up",
        started.elapsed()
    );
}
