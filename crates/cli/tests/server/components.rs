//! Real components for the server tests: rsyslog forwarding to the syslog receiver, Prometheus
//! scraping `/metrics`. Both are Debian packages (`scripts/install-deps`), started here on
//! loopback and stopped after.

use super::{tmpdir, Server};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(super) struct Killed(pub(super) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn need(bin: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    // CI installs them (scripts/install-deps); a missing one is a failure there, not a skip
    assert!(
        found || std::env::var_os("TW_ALLOW_MISSING_COMPONENTS").is_some(),
        "{bin} is not installed: run scripts/install-deps"
    );
    found
}

pub(super) fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn serve_receives_syslog_from_a_real_rsyslog_over_tcp_and_udp() {
    if !need("rsyslogd") || !need("logger") {
        return;
    }
    let data = tmpdir("rsyslog");
    let s = Server::start(
        &data,
        &[
            ("TRAILWARDEN_SYSLOG_TCP", "127.0.0.1:0"),
            ("TRAILWARDEN_SYSLOG_UDP", "127.0.0.1:0"),
        ],
    );
    let port = |k: &str| {
        s.syslog
            .iter()
            .find(|(kind, _)| kind == k)
            .unwrap()
            .1
            .rsplit(':')
            .next()
            .unwrap()
            .to_string()
    };
    let (tcp, udp) = (port("tcp"), port("udp"));
    let dir = tmpdir("rsyslog-run");
    let sock = dir.join("log.sock");
    let conf = format!(
        r#"global(workDirectory="{d}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{sock}" CreatePath="on")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" TCP_Framing="traditional" template="RSYSLOG_TraditionalForwardFormat")
action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp" template="RSYSLOG_TraditionalForwardFormat")
"#,
        d = dir.display(),
        sock = sock.display()
    );
    std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
    let _rsyslog = Killed(
        Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("rsyslog's socket", Duration::from_secs(20), || {
        sock.exists().then(String::new)
    });
    for i in 0..5 {
        let st = Command::new("logger")
            .arg("-u")
            .arg(&sock)
            .args([
                "-t",
                "payments-api",
                "-p",
                "authpriv.warning",
                &format!("refund approved by operator-{i} marker-tw"),
            ])
            .status()
            .unwrap();
        assert!(st.success());
    }
    // each message arrives three times: octet-counted RFC 5424, newline-framed RFC 3164, UDP
    let n = wait_for("15 syslog events", Duration::from_secs(30), || {
        let n = s.count(&s.token, "Syslog | where SyslogMessage has 'marker-tw'");
        (n >= 15).then(|| n.to_string())
    });
    assert_eq!(n, "15");
    let (rows, _) = s.query(&s.token, "Syslog | where SyslogMessage has 'operator-3' | summarize n = count() by ProcessName, Facility");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["ProcessName"].as_str(), Some("payments-api"));
    assert_eq!(rows[0]["n"].as_i64(), Some(3));
    let (rows, _) = s.query(&s.token, "events | where format == 'syslog' and message has 'marker-tw' | summarize n = count() by source = extract('^(syslog-[a-z]+)', 1, source)");
    let kinds: std::collections::BTreeMap<String, i64> = rows
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap_or("").to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds.get("syslog-tcp"), Some(&10), "{rows:?}");
    assert_eq!(kinds.get("syslog-udp"), Some(&5), "{rows:?}");
}

#[test]
fn serve_metrics_scraped_by_a_real_prometheus() {
    if !need("prometheus") {
        return;
    }
    let data = tmpdir("prom");
    let s = Server::start(&data, &[]);
    let viewer = s.token("viewer");
    std::thread::sleep(Duration::from_millis(1100));
    let events: Vec<serde_json::Value> = (0..7)
        .map(|i| super::synthetic(&format!("p{i}"), "prom"))
        .collect();
    let el = super::event_list(&events);
    let (code, body) = s.post_json(&s.token, "/v1/ingest/k8s-audit", &el);
    assert_eq!(code, 200, "{body}");
    let dir = tmpdir("prom-run");
    let web = free_port();
    let conf = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: trailwarden\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n    authorization:\n      credentials: {viewer}\n    static_configs:\n      - targets: ['{addr}']\n",
        ca = data.join("keys/tls.crt").display(),
        addr = s.addr
    );
    std::fs::write(dir.join("prometheus.yml"), conf).unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // through Prometheus' own query API: the series with our labels and value
    let q = "http://127.0.0.1:{web}/api/v1/query?query=trailwarden_ingest_events_total%7Bsource%3D%22k8s-audit%22%7D".replace("{web}", &web.to_string());
    let v = wait_for(
        "Prometheus to scrape trailwarden",
        Duration::from_secs(60),
        || {
            let out = Command::new("curl").args(["-sS", &q]).output().ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let r = v["data"]["result"].as_array()?.first()?.clone();
            Some(r.to_string())
        },
    );
    let r: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(r["metric"]["format"], "k8s-audit", "{r}");
    assert_eq!(r["value"][1], "7", "{r}");
    // the target is healthy (TLS verified against our certificate, bearer token accepted)
    let out = Command::new("curl")
        .args(["-sS", &format!("http://127.0.0.1:{web}/api/v1/targets")])
        .output()
        .unwrap();
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["data"]["activeTargets"][0]["health"], "up", "{t}");
    let _ = Path::new("");
}
