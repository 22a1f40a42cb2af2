//! Alert delivery end to end: `serve` with sinks configured, real receivers on loopback — a
//! real Alertmanager (Debian `prometheus-alertmanager`) whose webhook receiver posts to a
//! recorder here, a real rsyslog writing what it receives to a file, a real SMTP sink (PyPI
//! `aiosmtpd`), a webhook receiver here that checks the Standard Webhooks signature — and a
//! stand-in for Slack (it cannot run here) that speaks its webhook contract, 429 included.

use super::components::{free_port, need, wait_for, Killed};
use super::{tmpdir, Server};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The signing secret of the webhook sinks in these tests.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the recorder received.
#[derive(Clone, Debug)]
pub struct Req {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub at: Instant,
    pub status: u16,
}

impl Req {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// What the recorder answers next, per path prefix: a script of behaviours, then 200.
#[derive(Clone, Debug)]
pub enum Answer {
    Status(u16),
    RetryAfter(u16, u64),
    Hang,
    CloseMidRequest,
}

/// An HTTP/1.1 receiver that records every request and answers from a script.
pub struct Recorder {
    pub port: u16,
    pub reqs: Arc<Mutex<Vec<Req>>>,
    script: Arc<Mutex<BTreeMap<String, Vec<Answer>>>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    pub fn on(l: TcpListener) -> Recorder {
        let port = l.local_addr().unwrap().port();
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<BTreeMap<String, Vec<Answer>>>> = Default::default();
        let (r2, s2) = (reqs.clone(), script.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let (r, s) = (r2.clone(), s2.clone());
                std::thread::spawn(move || handle(c, r, s));
            }
        });
        Recorder { port, reqs, script }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answer the next requests to `path` like this, then 200.
    pub fn script(&self, path: &str, answers: Vec<Answer>) {
        self.script
            .lock()
            .unwrap()
            .insert(path.to_string(), answers);
    }

    /// The requests to `path` that were answered 200.
    pub fn on_path(&self, path: &str) -> Vec<Req> {
        self.answered(path)
            .into_iter()
            .filter(|r| r.status == 200)
            .collect()
    }

    /// Every request to `path` that got an answer, in order.
    pub fn answered(&self, path: &str) -> Vec<Req> {
        self.reqs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

fn handle(
    mut c: TcpStream,
    reqs: Arc<Mutex<Vec<Req>>>,
    script: Arc<Mutex<BTreeMap<String, Vec<Answer>>>>,
) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match c.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let mut headers = BTreeMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let answer = {
        let mut g = script.lock().unwrap();
        match g.get_mut(&path) {
            Some(v) if !v.is_empty() => Some(v.remove(0)),
            _ => None,
        }
    };
    if let Some(Answer::CloseMidRequest) = answer {
        // read a little of the body and hang up
        return;
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match c.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
    let (status, extra) = match answer {
        None => (200, String::new()),
        Some(Answer::Status(s)) => (s, String::new()),
        Some(Answer::RetryAfter(s, secs)) => (s, format!("Retry-After: {secs}\r\n")),
        Some(Answer::Hang) => {
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        Some(Answer::CloseMidRequest) => return,
    };
    reqs.lock().unwrap().push(Req {
        path,
        headers,
        body,
        at: Instant::now(),
        status,
    });
    let body = if status == 429 {
        r#"{"ok":false,"error":"rate_limited"}"#
    } else if status == 200 {
        "ok"
    } else {
        "error"
    };
    let _ = write!(
        c,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
}

/// Check a Standard Webhooks signature the way a receiver must.
fn signature_ok(r: &Req) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let (Some(id), Some(ts), Some(sig)) = (
        r.headers.get("webhook-id"),
        r.headers.get("webhook-timestamp"),
        r.headers.get("webhook-signature"),
    ) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - ts.parse::<i64>().unwrap_or(0)).abs() > 300 {
        return false;
    }
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(r.body.as_bytes());
    let expected = mac.finalize().into_bytes();
    sig.split(' ').any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|b| b.as_slice() == expected.as_slice())
    })
}

fn exec_event(n: usize) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../../shared/corpus/falcosecurity-falco/test/trace_files/k8s_audit/exec_pod.json",
    );
    let mut v: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(p).unwrap().trim()).unwrap();
    if n > 0 {
        // a different pod and user: another alert (other group key)
        v["auditID"] = format!("exec-{n}").into();
        v["objectRef"]["name"] = format!("web-{n}").into();
        v["user"]["username"] = format!("operator-{n}").into();
    }
    v
}

pub(super) fn write_secret(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let f = dir.join("hook.secret");
    std::fs::write(&f, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    f
}

pub(super) fn start_with_config(data: &Path, toml: &str) -> Server {
    let cfg = data.with_extension("toml");
    std::fs::write(&cfg, toml).unwrap();
    Server::start(data, &[("TRAILWARDEN_CONFIG", cfg.to_str().unwrap())])
}

fn alertmanager(dir: &Path, hook: &str) -> (Killed, u16) {
    let port = free_port();
    let conf = format!(
        "route:\n  receiver: rec\n  group_by: ['alertname', 'alert_id']\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\nreceivers:\n  - name: rec\n    webhook_configs:\n      - url: '{hook}'\n        send_resolved: true\n"
    );
    std::fs::write(dir.join("am.yml"), conf).unwrap();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", dir.join("am.yml").display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let k = Killed(child);
    wait_for("Alertmanager ready", Duration::from_secs(30), || {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/-/ready")])
            .output()
            .ok()?;
        out.status.success().then_some(())
    });
    (k, port)
}

fn rsyslog(dir: &Path) -> (Killed, u16, u16, PathBuf) {
    let (tcp, udp) = (free_port(), free_port());
    let out = dir.join("siem.log");
    let conf = format!(
        r#"global(workDirectory="{d}")
module(load="imtcp")
module(load="imudp")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="r") {{ action(type="omfile" file="{out}" template="raw") }}
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="r")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="r")
"#,
        d = dir.display(),
        out = out.display()
    );
    std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
    let child = Command::new("rsyslogd")
        .args(["-n", "-f"])
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let k = Killed(child);
    wait_for("rsyslog listening", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", tcp)).ok().map(|_| ())
    });
    (k, tcp, udp, out)
}

fn smtp_sink(dir: &Path) -> (Killed, u16, PathBuf) {
    let port = free_port();
    let maildir = dir.join("maildir");
    let child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let k = Killed(child);
    wait_for("aiosmtpd listening", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    });
    (k, port, maildir)
}

fn mails(maildir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(maildir.join(sub)) {
            for e in rd.flatten() {
                out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    out
}

fn alert_ids(s: &Server, title: &str) -> Vec<i64> {
    let (code, body) = s.curl(Some(&s.token), &[&s.url("/v1/alerts?limit=10000")]);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = v
        .as_array()
        .cloned()
        .or_else(|| v["alerts"].as_array().cloned())
        .unwrap_or_default();
    list.iter()
        .filter(|a| a["title"] == title)
        .filter_map(|a| a["id"].as_i64())
        .collect()
}

#[test]
fn serve_delivers_alerts_to_alertmanager_webhook_slack_syslog_and_email() {
    if !need("prometheus-alertmanager") || !need("rsyslogd") || !need("python3") {
        return;
    }
    let dir = tmpdir("deliver-run");
    let rec = Recorder::start();
    let (_am, am_port) = alertmanager(&dir, &rec.url("/am"));
    let (_rs, syslog_tcp, syslog_udp, siem_log) = rsyslog(&dir);
    let (_smtp, smtp_port, maildir) = smtp_sink(&dir);
    let secret = write_secret(&dir);
    // Slack cannot run here: the recorder stands in for it, and starts with a 429
    rec.script("/slack", vec![Answer::RetryAfter(429, 2)]);
    let data = tmpdir("deliver");
    let s = start_with_config(
        &data,
        &format!(
            r#"[alerting]
external_url = "https://trailwarden.example:8443"
cluster = "aks-payments-prod"

[[alerting.sink]]
name = "alertmanager"
kind = "alertmanager"
url = "http://127.0.0.1:{am_port}"
resend_interval = "2s"

[[alerting.sink]]
name = "soc-hook"
kind = "webhook"
url = "{hook}"
secret_file = "{secret}"

[[alerting.sink]]
name = "slack"
kind = "slack"
url = "{slack}"

[[alerting.sink]]
name = "siem"
kind = "syslog"
address = "127.0.0.1:{syslog_tcp}"
protocol = "tcp"

[[alerting.sink]]
name = "siem-cef"
kind = "syslog"
address = "127.0.0.1:{syslog_udp}"
protocol = "udp"
format = "cef"

[[alerting.sink]]
name = "mail"
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
smtp_tls = "none"
from = "trailwarden@payments.example"
to = ["soc@payments.example"]

[[alerting.route]]
min_level = "medium"
sinks = ["alertmanager", "soc-hook", "slack", "siem", "siem-cef", "mail"]
"#,
            hook = rec.url("/hook"),
            slack = rec.url("/slack"),
            secret = secret.display(),
        ),
    );
    // the corpus' exec-into-pod trace, as the API server's webhook sends it
    let (code, body) = s.post_json(
        &s.token,
        "/v1/ingest/k8s-audit",
        &super::event_list(&[exec_event(0)]),
    );
    assert_eq!(code, 200, "{body}");
    let id = wait_for("the alert", Duration::from_secs(20), || {
        alert_ids(&s, "Attach/Exec Pod").first().copied()
    });
    let key = format!("tw-alert-{id}-v1");
    let sid = id.to_string();
    // through Alertmanager: firing, with our labels
    let am = wait_for(
        "Alertmanager's notification",
        Duration::from_secs(30),
        || {
            rec.on_path("/am").into_iter().find(|r| {
                r.json()["alerts"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["labels"]["alert_id"] == sid.as_str()))
            })
        },
    );
    let v = am.json();
    let a = &v["alerts"][0];
    assert_eq!(v["status"], "firing", "{v}");
    assert_eq!(a["labels"]["alertname"], "Attach/Exec Pod");
    assert_eq!(a["labels"]["severity"], "medium");
    assert_eq!(a["labels"]["namespace"], "default");
    assert_eq!(a["labels"]["cluster"], "aks-payments-prod");
    assert!(
        a["labels"]["pci_dss"]
            .as_str()
            .is_some_and(|p| p.contains("10.2")),
        "{a}"
    );
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .is_some_and(|x| x.contains("minikube-user")),
        "{a}"
    );
    assert!(a["annotations"]["evidence"]
        .as_str()
        .is_some_and(|x| x.contains("ledger indexes")));
    assert_eq!(
        a["generatorURL"],
        format!("https://trailwarden.example:8443/v1/alerts/{id}")
    );
    // the signed webhook
    let hook = wait_for("the webhook", Duration::from_secs(20), || {
        rec.on_path("/hook")
            .into_iter()
            .find(|r| r.headers.get("webhook-id") == Some(&key))
    });
    assert!(signature_ok(&hook), "signature: {:?}", hook.headers);
    let hv = hook.json();
    assert_eq!(hv["type"], "alert.raised");
    assert_eq!(hv["data"]["alert_id"], id);
    assert!(hv["data"]["evidence"]
        .as_array()
        .is_some_and(|e| !e.is_empty()));
    // a tampered body does not verify
    let mut bad = hook.clone();
    bad.body = bad.body.replace("medium", "low");
    assert!(!signature_ok(&bad));
    // Slack: the 429 was honoured (Retry-After: 2), then the Block Kit message arrived
    let slack = wait_for("the Slack message", Duration::from_secs(30), || {
        rec.on_path("/slack")
            .into_iter()
            .find(|r| r.body.contains(&key))
    });
    let sv = slack.json();
    assert!(sv["text"]
        .as_str()
        .is_some_and(|t| t.contains("Attach/Exec Pod")));
    assert_eq!(sv["blocks"][0]["type"], "header");
    let tries = rec.answered("/slack");
    assert_eq!(tries[0].status, 429);
    let waited = slack.at.duration_since(tries[0].at);
    assert!(
        waited >= Duration::from_millis(1900),
        "Retry-After: 2 honoured, waited {waited:?}"
    );
    // syslog: RFC 5424 with structured data, and CEF over UDP
    let siem = wait_for("rsyslog's file", Duration::from_secs(20), || {
        let t = std::fs::read_to_string(&siem_log).ok()?;
        (t.contains(&format!("id=\"{key}\"")) && t.contains("CEF:0|trailwarden")).then_some(t)
    });
    let line = siem
        .lines()
        .find(|l| l.contains(&format!("id=\"{key}\"")) && !l.contains("CEF:"))
        .unwrap();
    assert!(
        line.starts_with("<108>1 "),
        "facility 13 × 8 + warning 4: {line}"
    );
    assert!(line.contains("[trailwarden@32473 "), "{line}");
    assert!(
        line.contains("rule_id=\"a77bd51c-c89f-5cf2-a0e5-2e0495ac9f2e\""),
        "{line}"
    );
    let cef = siem.lines().find(|l| l.contains("CEF:0|")).unwrap();
    assert!(cef.contains(&format!("externalId={key}")), "{cef}");
    assert!(cef.contains("|Attach/Exec Pod|5|"), "{cef}");
    // e-mail, plain text and HTML, Message-ID from the idempotency key
    let mail = wait_for("the e-mail", Duration::from_secs(20), || {
        mails(&maildir).into_iter().find(|m| m.contains(&key))
    });
    assert!(
        mail.contains("Subject: [trailwarden MEDIUM] Attach/Exec Pod (raised)"),
        "{mail}"
    );
    assert!(
        mail.contains("text/plain") && mail.contains("text/html"),
        "{mail}"
    );
    // the outbox says delivered everywhere
    let (code, body) = s.curl(
        Some(&s.token),
        &[&s.url(&format!("/v1/deliveries?alert_id={id}"))],
    );
    assert_eq!(code, 200, "{body}");
    let d: serde_json::Value = serde_json::from_str(&body).unwrap();
    let states: BTreeSet<(String, String)> = d["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["sink"].as_str().unwrap().into(),
                x["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(states.len(), 6, "{states:?}");
    assert!(states.iter().all(|(_, st)| st == "delivered"), "{states:?}");
    // resolved: Alertmanager gets endsAt and notifies `resolved`; the webhook gets v2
    let reviewer = s.token("reviewer");
    std::thread::sleep(Duration::from_millis(1100));
    let (code, body) = s.post_json(
        &reviewer,
        &format!("/v1/alerts/{id}/resolve"),
        r#"{"note": "approved break-glass session CHG-4711"}"#,
    );
    assert_eq!(code, 200, "{body}");
    wait_for(
        "Alertmanager's resolved notification",
        Duration::from_secs(30),
        || {
            rec.on_path("/am").into_iter().find(|r| {
                let v = r.json();
                v["status"] == "resolved" && v["alerts"][0]["labels"]["alert_id"] == sid.as_str()
            })
        },
    );
    let resolved = wait_for("the resolved webhook", Duration::from_secs(20), || {
        rec.on_path("/hook")
            .into_iter()
            .find(|r| r.headers.get("webhook-id") == Some(&format!("tw-alert-{id}-v2")))
    });
    assert!(signature_ok(&resolved));
    assert_eq!(
        resolved.json()["data"]["note"],
        "approved break-glass session CHG-4711"
    );
    // metrics per sink
    let (_, m) = s.curl(Some(&s.token), &[&s.url("/metrics")]);
    assert!(
        m.contains("trailwarden_alert_deliveries_total{sink=\"soc-hook\",outcome=\"delivered\"}"),
        "{m}"
    );
    assert!(
        m.contains("trailwarden_alert_deliveries_total{sink=\"slack\",outcome=\"retried\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("trailwarden_alert_delivery_queue{sink=\"mail\"} 0"),
        "{m}"
    );
}

#[test]
fn serve_delivery_survives_a_sink_that_is_down_fails_hangs_and_hangs_up() {
    let dir = tmpdir("faults-run");
    let secret = write_secret(&dir);
    // the receiver is down at first: its port is reserved, nothing listens
    let port = free_port();
    let data = tmpdir("faults");
    let s = start_with_config(
        &data,
        &format!(
            r#"[[alerting.sink]]
name = "flaky"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret_file = "{secret}"
timeout_seconds = 2
backoff_initial = "200ms"
backoff_max = "1s"
concurrency = 2

[[alerting.sink]]
name = "gone"
kind = "webhook"
url = "http://127.0.0.1:9/nothing-listens"
secret_file = "{secret}"
max_attempts = 2
backoff_initial = "100ms"

[[alerting.route]]
rule_id = "trailwarden-control-*"
sinks = ["flaky"]

[[alerting.route]]
sinks = ["flaky", "gone"]
"#,
            secret = secret.display(),
        ),
    );
    let ingest = s.token("ingest");
    std::thread::sleep(Duration::from_millis(1100));
    let send = |from: usize| {
        let events: Vec<_> = (from..from + 10).map(exec_event).collect();
        let t0 = Instant::now();
        let (code, body) =
            s.post_json(&ingest, "/v1/ingest/k8s-audit", &super::event_list(&events));
        assert_eq!(code, 200, "ingest is unaffected by a failing sink: {body}");
        t0.elapsed()
    };
    send(1);
    // down for a while: attempts fail with connection refused, ingest goes on
    std::thread::sleep(Duration::from_secs(3));
    let took = send(11);
    assert!(
        took < Duration::from_secs(5),
        "ingest waited for delivery: {took:?}"
    );
    // then it comes up answering 500, hanging once, hanging up mid-request, then 200
    let rec = Recorder::on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    rec.script(
        "/hook",
        vec![
            Answer::Status(500),
            Answer::Status(503),
            Answer::Hang,
            Answer::CloseMidRequest,
            Answer::Status(502),
        ],
    );
    send(21);
    let ids: BTreeSet<i64> = alert_ids(&s, "Attach/Exec Pod").into_iter().collect();
    assert_eq!(ids.len(), 30, "30 distinct exec alerts");
    let seen = wait_for(
        "every alert at the receiver",
        Duration::from_secs(90),
        || {
            let seen: BTreeSet<i64> = rec
                .on_path("/hook")
                .iter()
                .filter(|r| signature_ok(r))
                .filter_map(|r| r.json()["data"]["alert_id"].as_i64())
                .collect();
            ids.is_subset(&seen).then_some(seen)
        },
    );
    assert!(ids.is_subset(&seen));
    // the sink nobody listens on: dead letters, and a control-failure alert routed to the
    // other sink
    let control = wait_for(
        "the delivery control alert at the other sink",
        Duration::from_secs(60),
        || {
            rec.on_path("/hook").into_iter().find(|r| {
                let v = r.json();
                v["data"]["rule_id"] == "trailwarden-control-delivery"
            })
        },
    );
    let c = control.json();
    assert!(c["data"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "pci_dss.10.7.2"));
    assert!(
        c["data"]["summary"].as_str().unwrap().contains("gone"),
        "{c}"
    );
    let (code, body) = s.curl(
        Some(&s.token),
        &[&s.url("/v1/deliveries?state=dead&sink=gone")],
    );
    assert_eq!(code, 200, "{body}");
    let dead: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first = &dead["deliveries"][0];
    assert!(
        first["last_error"].as_str().unwrap().contains("2 attempts"),
        "{first}"
    );
    // the control alert itself is never routed back to the failing sink
    assert!(dead["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["message"]["rule_id"] != "trailwarden-control-delivery"));
    // replay is for admins; a viewer is refused
    let viewer = s.token("viewer");
    std::thread::sleep(Duration::from_millis(1100));
    let retry = format!("/v1/deliveries/{}/retry", first["id"]);
    let (code, _) = s.post_json(&viewer, &retry, "");
    assert_eq!(code, 403);
    let (code, body) = s.post_json(&s.token, &retry, "");
    assert_eq!(code, 200, "{body}");
    let (_, m) = s.curl(Some(&s.token), &[&s.url("/metrics")]);
    assert!(
        m.contains("trailwarden_alert_deliveries_total{sink=\"gone\",outcome=\"dead\"}"),
        "{m}"
    );
    assert!(
        m.contains("trailwarden_alert_deliveries_total{sink=\"flaky\",outcome=\"retried\"}"),
        "{m}"
    );
    // a silence: recorded in the ledger, holds matching alerts back (kept as `silenced`)
    let reviewer = s.token("reviewer");
    std::thread::sleep(Duration::from_millis(1100));
    let body = r#"{"matcher": {"rule_id": "a77bd51c-*"}, "ends": "1h", "reason": "CHG-9 maintenance of web pods"}"#;
    let (code, _) = s.post_json(&viewer, "/v1/silences", body);
    assert_eq!(code, 403, "silences need the reviewer role");
    let (code, answer) = s.post_json(
        &reviewer,
        "/v1/silences",
        r#"{"matcher": {}, "ends": "1h", "reason": "x"}"#,
    );
    assert_eq!(code, 400, "an empty matcher is refused: {answer}");
    let (code, answer) = s.post_json(&reviewer, "/v1/silences", body);
    assert_eq!(code, 200, "{answer}");
    let sil: serde_json::Value = serde_json::from_str(&answer).unwrap();
    send(31);
    let held = wait_for("silenced deliveries", Duration::from_secs(20), || {
        let (_, b) = s.curl(Some(&s.token), &[&s.url("/v1/deliveries?state=silenced")]);
        let v: serde_json::Value = serde_json::from_str(&b).ok()?;
        let n = v["deliveries"].as_array()?.len();
        (n >= 20).then_some(n)
    });
    assert_eq!(held, 20, "10 new exec alerts × 2 sinks held back");
    let (rows, _) = s.query(
        &s.token,
        "records | where kind == 'alert' and tostring(raw) contains 'silence-created' | count",
    );
    assert_eq!(rows[0]["Count"], 1, "the silence is a ledger record");
    let (code, _) = s.curl(
        Some(&reviewer),
        &[
            "-X",
            "DELETE",
            &s.url(&format!("/v1/silences/{}", sil["id"])),
        ],
    );
    assert_eq!(code, 200);
}

#[test]
fn serve_killed_during_an_alert_storm_delivers_every_alert_after_restart() {
    let dir = tmpdir("storm-run");
    let secret = write_secret(&dir);
    let rec = Recorder::start();
    let data = tmpdir("storm");
    let cfg = format!(
        "[[alerting.sink]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{}\"\n\n[[alerting.route]]\nsinks = [\"hook\"]\n",
        rec.url("/hook"),
        secret.display()
    );
    let mut n = 0;
    let mut admin = String::new();
    for round in 0..20 {
        let s = start_with_config(&data, &cfg);
        if round == 0 {
            admin = s.token.clone(); // printed on the first start only
        }
        let events: Vec<_> = (0..25).map(|i| exec_event(1 + round * 25 + i)).collect();
        let (code, body) = s.post_json(&admin, "/v1/ingest/k8s-audit", &super::event_list(&events));
        assert_eq!(code, 200, "{body}");
        n += 25;
        // kill at a different moment each round: before, during or after sending
        std::thread::sleep(Duration::from_millis((round as u64 * 37) % 300));
        s.kill9();
    }
    let mut s = start_with_config(&data, &cfg);
    s.token = admin;
    let ids: BTreeSet<i64> = alert_ids(&s, "Attach/Exec Pod").into_iter().collect();
    assert_eq!(
        ids.len(),
        n,
        "every exec raised its alert (detection catches up after a kill)"
    );
    wait_for(
        "every alert id at the receiver",
        Duration::from_secs(120),
        || {
            let seen: BTreeSet<i64> = rec
                .on_path("/hook")
                .iter()
                .filter_map(|r| r.json()["data"]["alert_id"].as_i64())
                .collect();
            ids.is_subset(&seen).then_some(())
        },
    );
    // at-least-once: a repeat carries the same idempotency key
    let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
    for r in rec.on_path("/hook") {
        *by_key
            .entry(r.headers.get("webhook-id").cloned().unwrap_or_default())
            .or_default() += 1;
    }
    assert!(
        by_key.keys().all(|k| k.starts_with("tw-alert-")),
        "{by_key:?}"
    );
}

#[test]
fn invalid_sink_settings_are_named_by_config_check_and_serve() {
    let dir = tmpdir("badcfg");
    let cases = [
        (
            "[[alerting.sink]]\nname = \"h\"\nkind = \"webhook\"\nurl = \"ftp://x/\"\nsecret_file = \"/nonexistent\"\n",
            "alerting.sink[0] (\"h\"): url: \"ftp://x/\" is not an http:// or https:// URL",
        ),
        (
            "[[alerting.sink]]\nname = \"h\"\nkind = \"webhook\"\nurl = \"https://siem.example/hook\"\nsecret_file = \"/nonexistent/hook.secret\"\n",
            "alerting.sink[0] (\"h\"): secret_file /nonexistent/hook.secret: No such file",
        ),
        (
            "[[alerting.sink]]\nname = \"m\"\nkind = \"email\"\nsmtp_host = \"mail.example\"\nsmtp_tls = \"none\"\nfrom = \"a@b.example\"\nto = [\"c@d.example\"]\n",
            "not loopback",
        ),
        (
            "[[alerting.route]]\nsinks = [\"nope\"]\n",
            "alerting.route[0]: sink \"nope\" is not defined",
        ),
        (
            "[[alerting.sink]]\nname = \"s\"\nkind = \"syslog\"\naddress = \"siem.example\"\n",
            "address \"siem.example\" is not host:port",
        ),
    ];
    for (i, (toml, want)) in cases.iter().enumerate() {
        let f = dir.join(format!("c{i}.toml"));
        std::fs::write(&f, toml).unwrap();
        let out = super::bin()
            .args(["config", "check", "--config"])
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{toml}: {err}");
        assert!(err.contains(want), "case {i}: want {want:?} in {err}");
        let data = dir.join(format!("d{i}"));
        let r = Server::try_start(&data, &[("TRAILWARDEN_CONFIG", f.to_str().unwrap())]);
        let e = r
            .err()
            .unwrap_or_else(|| panic!("serve started with {toml}"));
        assert!(e.contains(want), "serve, case {i}: want {want:?} in {e}");
    }
    // and the default route is stated
    let f = dir.join("empty.toml");
    std::fs::write(&f, "").unwrap();
    let out = super::bin()
        .args(["config", "check", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("default route"));
}

/// An exec event happening `secs_ago` seconds ago.
pub(super) fn exec_now(n: usize, secs_ago: i64) -> serde_json::Value {
    let mut v = exec_event(n);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - secs_ago;
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%S.000000Z"])
        .output()
        .unwrap();
    let ts = String::from_utf8(out.stdout).unwrap().trim().to_string();
    v["requestReceivedTimestamp"] = ts.clone().into();
    v["stageTimestamp"] = ts.into();
    v
}

#[test]
fn serve_runs_scheduled_rules_window_after_window_and_catches_up_after_downtime() {
    let data = tmpdir("scheduled");
    let rules = data.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("exec.yml"),
        "kind: scheduled\nid: 0f5c7a2e-1111-4a4a-9b9b-000000000001\ntitle: Exec sessions per user\nlevel: medium\ntags: [attack.t1609, pci_dss.10.2.1.2]\nfrequency: 1m\nperiod: 1m\ntrigger:\n  operator: gt\n  threshold: 0\ngrouping: per-row\nentities: [user]\nquery: |\n  AKSAudit\n  | where ObjectRef.subresource == \"exec\"\n  | summarize n = count(), set_LedgerIndex = make_set(_LedgerIndex) by user = tostring(User.username)\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("broken.yml"),
        "kind: scheduled\nid: 0f5c7a2e-1111-4a4a-9b9b-000000000002\ntitle: Broken query\nlevel: high\nfrequency: 1m\nperiod: 1m\nquery: NoSuchTable | where x == 1\n",
    )
    .unwrap();
    // first start: the rule starts with the next window; the broken one loads disabled
    let s = Server::start(&data, &[]);
    let admin = s.token.clone();
    let (code, _) = s.stop();
    assert_eq!(code, 0);
    // downtime: three windows were missed; events happened in them
    let events = vec![exec_now(1, 150), exec_now(2, 150), exec_now(3, 100)];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let minute = 60_i64;
    let last_end_ns = ((now - 60) / minute * minute - 4 * minute) * 1_000_000_000;
    let db = data.join("alerts.db");
    let st = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"INSERT OR REPLACE INTO meta (key, value) VALUES ('scheduled:0f5c7a2e-1111-4a4a-9b9b-000000000001:last_end', ?)\", (sys.argv[2],)); c.commit()",
        ])
        .arg(&db)
        .arg(last_end_ns.to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let mut s = Server::start(&data, &[("TRAILWARDEN_DETECTION_ENABLED", "false")]);
    s.token = admin.clone();
    let (code, body) = s.post_json(&admin, "/v1/ingest/k8s-audit", &super::event_list(&events));
    assert_eq!(code, 200, "{body}");
    let (code, _) = s.stop();
    assert_eq!(code, 0);
    let mut s = Server::start(&data, &[]);
    s.token = admin.clone();
    // the missed windows run in order, each recorded as a read of audit data
    let runs = wait_for("the catch-up runs", Duration::from_secs(60), || {
        let (rows, _) = s.query(
            &admin,
            "TrailwardenAccess | where Action == 'scheduled-rule' | project Target, Records, Outcome | order by Target asc",
        );
        (rows.len() >= 4).then_some(rows)
    });
    let targets: Vec<&str> = runs.iter().map(|r| r["Target"].as_str().unwrap()).collect();
    assert!(
        targets.iter().all(|t| t.contains("Exec sessions per user")),
        "{targets:?}"
    );
    assert!(
        !targets.iter().any(|t| t.contains("Broken query")),
        "{targets:?}"
    );
    // contiguous: each window starts where the previous ended
    let bounds: Vec<(String, String)> = targets
        .iter()
        .map(|t| {
            let w = t.split("window [").nth(1).unwrap().trim_end_matches(')');
            let (a, b) = w.split_once(", ").unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    for pair in bounds.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "windows are contiguous: {bounds:?}");
    }
    // one alert per user who exec'd, with the ledger indexes as evidence
    let ids = wait_for("the scheduled alerts", Duration::from_secs(30), || {
        let ids = alert_ids(&s, "Exec sessions per user");
        (ids.len() == 3).then_some(ids)
    });
    let (_, body) = s.curl(Some(&admin), &[&s.url(&format!("/v1/alerts/{}", ids[0]))]);
    let a: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        a["summary"].as_str().unwrap().contains("user=operator-"),
        "{a}"
    );
    assert_eq!(a["evidence"].as_array().unwrap().len(), 1, "{a}");
    let (_, m) = s.curl(Some(&admin), &[&s.url("/metrics")]);
    assert!(m.contains("trailwarden_scheduled_rule_runs_total{rule_id=\"0f5c7a2e-1111-4a4a-9b9b-000000000001\",outcome=\"fired\"}"), "{m}");
    let (code, _) = s.stop();
    assert_eq!(code, 0);
    // `rules list` shows both, the broken one disabled with the reason, the other's last window
    let out = super::bin()
        .arg("--data-dir")
        .arg(&data)
        .args(["rules", "list", "-O", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sched: Vec<&serde_json::Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["kind"] == "scheduled"
                && r["source"]
                    .as_str()
                    .unwrap_or("")
                    .contains(data.to_str().unwrap())
        })
        .collect();
    assert_eq!(sched.len(), 2, "{sched:?}");
    let broken = sched.iter().find(|r| r["title"] == "Broken query").unwrap();
    assert!(
        broken["state"].as_str().unwrap().contains("NoSuchTable"),
        "{broken}"
    );
    let exec = sched
        .iter()
        .find(|r| r["title"] == "Exec sessions per user")
        .unwrap();
    assert_eq!(exec["state"], "enabled");
    assert!(
        exec["last_window_end"].is_string() && exec["next_run"].is_string(),
        "{exec}"
    );
}
