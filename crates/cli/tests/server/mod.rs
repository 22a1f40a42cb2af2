//! `trailwarden serve` end to end: the real binary on loopback, talked to with curl (TLS, HTTP/2,
//! client certificates), raw sockets (slow and truncated clients), a real Prometheus and a real
//! rsyslog.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod components;

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

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trailwarden"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TRAILWARDEN_") {
            c.env_remove(k);
        }
    }
    c.env("TRAILWARDEN_USER", "server-test");
    c
}

pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tw-srv-{}-{name}", std::process::id()));
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
        c.arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
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
        let mut base = None;
        let mut token = String::new();
        let mut syslog = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while base.is_none() || (token.is_empty() && !data.join("tokens.json").exists()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = match rx.recv_timeout(left) {
                Ok(l) => l,
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
            if base.is_some() && data.join("tokens.json").exists() && token.is_empty() {
                // a restart: no new token is printed; wait briefly for late lines
                while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                    if let Some(rest) = l.strip_prefix("E syslog ") {
                        let mut p = rest.split(" on ");
                        syslog.push((p.next().unwrap().to_string(), p.next().unwrap().to_string()));
                    } else if let Some(t) = l.strip_prefix("O ") {
                        token = t.to_string();
                    }
                }
                break;
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
        let out = bin()
            .arg("--data-dir")
            .arg(&self.data)
            .args(["tokens", "create", "--role", role])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let t = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(t.starts_with("twk_") && !t.contains('\n'), "stdout is only the token: {t:?}");
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
        c.args(["-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code} %{http_version}"]);
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
        (code, t.next().unwrap_or("").to_string(), body.to_string())
    }

    pub fn post_json(&self, token: &str, path: &str, body: &str) -> (u16, String) {
        let f = self.data.with_extension(format!("body-{}", rand_suffix()));
        std::fs::write(&f, body).unwrap();
        let r = self.curl(
            Some(token),
            &["-H", "Content-Type: application/json", "--data-binary", &format!("@{}", f.display()), &self.url(path)],
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
        rows[0]["Count"].as_i64().unwrap_or_else(|| panic!("{:?}", rows))
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
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("falcosecurity-falco/test/trace_files/k8s_audit"))
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
    let (code, body) = s.curl(Some(&tok), &["-H", "Content-Type: application/json", "-H", "Content-Encoding: gzip", "--data-binary", &format!("@{}", gz.display()), &s.url("/v1/ingest/k8s-audit")]);
    assert_eq!(code, 200, "gzip: {body}");
    let jsonl = format!("{}\n{}\n", synthetic("jl-1", "bob-jl"), synthetic("jl-2", "bob-jl"));
    let (code, body) = s.post_json(&tok, "/v1/ingest/k8s-audit", &jsonl);
    assert_eq!(code, 200, "jsonl: {body}");
    let (code, body) = s.post_json(&tok, "/v1/ingest/k8s-audit", &synthetic("single-1", "carol-single").to_string());
    assert_eq!(code, 200, "single event: {body}");
    acked += 4;
    // read back: every event, by count and by auditID
    let n = s.count(&analyst, "events | where format == 'k8s-audit'");
    assert_eq!(n as usize, acked);
    let (rows, _) = s.query(&analyst, "events | where user in ('alice-gz', 'bob-jl', 'carol-single') | summarize n = count() by user | order by user asc");
    let got: Vec<(String, i64)> = rows.iter().map(|r| (r["user"].as_str().unwrap().to_string(), r["n"].as_i64().unwrap())).collect();
    assert_eq!(got, [("alice-gz".to_string(), 1), ("bob-jl".to_string(), 2), ("carol-single".to_string(), 1)]);
    // HTTP/2 over ALPN
    let (code, version, body) = s.curl_full(Some(&analyst), &["--http2", &s.url("/v1/sources")]);
    assert_eq!((code, version.as_str()), (200, "2"), "{body}");
    // the query reads are in the ledger as access records
    let (rows, _) = s.query(&analyst, "TrailwardenAccess | where Action == 'query' | project Subject, Outcome");
    assert!(rows.iter().any(|r| r["Subject"].as_str().unwrap().contains("analyst")), "{rows:?}");
    let (code, _) = s.stop();
    assert_eq!(code, 0);
}
