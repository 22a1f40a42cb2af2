//! The archive tier from the command line and in `serve` (issue 13): sync, status, verify
//! from the archive alone, query over it, restore, a sync killed with -9, and serve's passes,
//! metrics, `/v1/archive` and the lag alert.

use super::{bin, cli_ok, tmpdir, Server};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn gen(dir: &Path, events: u32) -> std::path::PathBuf {
    let f = dir.join("audit.jsonl");
    let out = bin()
        .args(["gen", "--events", &events.to_string(), "--seed", "13", "-o"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success());
    f
}

fn ingest(data: &Path, file: &Path) {
    let out = bin()
        .arg("--data-dir")
        .arg(data)
        .args(["--segment-bytes", "1000000", "ingest", "--no-detect"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `verify --archive` must pass (exit 0).
fn assert_archive_verifies(data: &Path, url: &str, vkey: &str) {
    let out = verify_archive(data, url, vkey, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `trailwarden verify --archive URL --public-key KEY` with `data` as the (absent) data dir.
fn verify_archive(data: &Path, url: &str, vkey: &str, extra: &[&str]) -> std::process::Output {
    bin()
        .arg("--data-dir")
        .arg(data)
        .args(["verify", "--archive", url, "--public-key", vkey.trim()])
        .args(extra)
        .output()
        .unwrap()
}

fn count(args: &[&str], data: &Path) -> i64 {
    let out = bin()
        .arg("--data-dir")
        .arg(data)
        .args(["query", "-O", "json"])
        .args(args)
        .arg("events | summarize n = count()")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["n"].as_i64().unwrap()
}

#[test]
fn archive_sync_status_verify_and_query_from_the_command_line() {
    let dir = tmpdir("arch-cli");
    let data = dir.join("data");
    let store = dir.join("store");
    let url = format!("file://{}", store.display());
    ingest(&data, &gen(&dir, 20_000));
    let out = cli_ok(&data, &["archive", "sync", "--url", &url, "-O", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let uploaded = v["sync"]["uploaded"].as_array().unwrap().len();
    assert!(uploaded >= 5, "{out}");
    let end = v["sync"]["archived_end"].as_u64().unwrap();
    // status: every sealed segment local and archived, and the store lists each
    let st: Vec<serde_json::Value> = serde_json::from_str(&cli_ok(
        &data,
        &["archive", "status", "--remote", "--url", &url, "-O", "json"],
    ))
    .unwrap();
    assert_eq!(st.len(), uploaded);
    assert!(st
        .iter()
        .all(|s| s["local"] == true && s["archived"].is_string() && s["in_archive"] == true));
    // an assessor: the archive alone, the public key, no data directory
    let vkey = std::fs::read_to_string(data.join("keys/checkpoint.vkey")).unwrap();
    let nowhere = dir.join("nowhere");
    let out = bin()
        .arg("--data-dir")
        .arg(&nowhere)
        .args([
            "verify",
            "--archive",
            &url,
            "--public-key",
            vkey.trim(),
            "-O",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["checked"]["records"].as_u64(), Some(end));
    assert!(
        !nowhere.exists(),
        "verify --archive created no data directory"
    );
    // queries: the archive alone holds the sealed events; with the local tail, all of them
    let hot = count(&[], &data);
    assert_eq!(hot, 20_000);
    let archived_only = count(&["--archive", "--url", &url], &nowhere);
    assert!(archived_only > 0 && archived_only < hot, "{archived_only}");
    assert_eq!(count(&["--archive", "--url", &url], &data), hot);
    // one changed byte in an archived segment: exit 1, the object named
    let seg = std::fs::read_dir(store.join("seg"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .min()
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&seg, std::fs::Permissions::from_mode(0o644));
        let mut b = std::fs::read(&seg).unwrap();
        let i = b.len() / 3;
        b[i] ^= 0x20;
        std::fs::write(&seg, b).unwrap();
    }
    let out = verify_archive(&nowhere, &url, &vkey, &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(text.contains(&name), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn archive_sync_killed_mid_upload_finishes_on_the_next_run() {
    let dir = tmpdir("arch-kill");
    let data = dir.join("data");
    let store = dir.join("store");
    let url = format!("file://{}", store.display());
    ingest(&data, &gen(&dir, 40_000));
    // kill -9 while it uploads (several tries at different moments)
    for delay_ms in [5u64, 30, 80] {
        let mut child = bin()
            .arg("--data-dir")
            .arg(&data)
            .args(["archive", "sync", "--url", &url, "--no-evict"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    // the next run completes; every object equals its local segment; the archive verifies
    let out = cli_ok(
        &data,
        &["archive", "sync", "--url", &url, "--no-evict", "-O", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["sync"]["conflicts"].as_array().unwrap().is_empty(),
        "{out}"
    );
    assert!(
        v["sync"]["failures"].as_array().unwrap().is_empty(),
        "{out}"
    );
    let vkey = std::fs::read_to_string(data.join("keys/checkpoint.vkey")).unwrap();
    assert_archive_verifies(&dir.join("nowhere"), &url, &vkey);
    // and the local ledger is whole (the killed runs' writer records included)
    let out = bin()
        .arg("--data-dir")
        .arg(&data)
        .arg("verify")
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0) | Some(2)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn serve_archives_what_it_seals_and_alerts_when_the_archive_lags() {
    let dir = tmpdir("arch-serve");
    let data = dir.join("data");
    let store = dir.join("store");
    let url = format!("file://{}", store.display());
    let s = Server::start(
        &data,
        &[
            ("TRAILWARDEN_ARCHIVE_URL", url.as_str()),
            ("TRAILWARDEN_ARCHIVE_INTERVAL_SECONDS", "1"),
            ("TRAILWARDEN_SEGMENT_BYTES", "200000"),
        ],
    );
    let events: Vec<serde_json::Value> = (0..1500)
        .map(|i| super::synthetic(&format!("arch-{i}"), "archiver"))
        .collect();
    for chunk in events.chunks(300) {
        let body = serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": chunk});
        let (code, text) = s.post_json(&s.token, "/v1/ingest/k8s-audit", &body.to_string());
        assert_eq!(code, 200, "{text}");
    }
    // sealed segments reach the archive within a pass or two
    wait_for("archived segments", Duration::from_secs(30), || {
        let (_, text) = s.curl(Some(&s.token), &[&s.url("/v1/archive")]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["segments"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|x| x["archived"].is_string()))
    });
    let (code, metrics) = s.curl(Some(&s.token), &[&s.url("/metrics")]);
    assert_eq!(code, 200);
    let archived: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("trailwarden_archive_segments_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(archived >= 1.0, "{metrics}");
    let (_, text) = s.curl(Some(&s.token), &[&s.url("/v1/archive")]);
    assert!(text.contains("\"hot_days\":90"), "{text}");
    // a clean stop seals the tail and archives it: the local disk can go, the archive alone
    // verifies with the public key and answers queries with every acknowledged event
    let (code, _) = s.stop();
    assert_eq!(code, 0);
    let vkey = std::fs::read_to_string(data.join("keys/checkpoint.vkey")).unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    let nowhere = dir.join("nowhere");
    assert_archive_verifies(&nowhere, &url, &vkey);
    let out = bin()
        .arg("--data-dir")
        .arg(&nowhere)
        .args(["query", "--archive", "--url", &url, "-O", "json"])
        .arg("events | where user == \"archiver\" | summarize n = count()")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["n"].as_i64(), Some(1500), "{v}");

    // the store unreachable: serve starts (with a warning), and the lag is a control failure
    let data2 = dir.join("data2");
    let s = Server::start(
        &data2,
        &[
            ("TRAILWARDEN_ARCHIVE_URL", "s3://unreachable/prefix"),
            ("TRAILWARDEN_ARCHIVE_ENDPOINT", "http://127.0.0.1:9"),
            ("TRAILWARDEN_ARCHIVE_ALLOW_HTTP", "true"),
            ("TRAILWARDEN_ARCHIVE_REQUEST_TIMEOUT_SECONDS", "1"),
            ("TRAILWARDEN_ARCHIVE_INTERVAL_SECONDS", "1"),
            ("TRAILWARDEN_ARCHIVE_MAX_LAG_SECONDS", "1"),
            ("TRAILWARDEN_SEGMENT_BYTES", "200000"),
            ("AWS_ACCESS_KEY_ID", "x"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ],
    );
    for chunk in events.chunks(300) {
        let body = serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": chunk});
        let (code, _) = s.post_json(&s.token, "/v1/ingest/k8s-audit", &body.to_string());
        assert_eq!(code, 200, "ingest does not wait for the archive");
    }
    wait_for(
        "the archive-lag control alert",
        Duration::from_secs(60),
        || {
            let (_, text) = s.curl(Some(&s.token), &[&s.url("/v1/alerts")]);
            text.contains("trailwarden-control-archive-lag") && text.contains("10.3.3")
        },
    );
    // nothing was evicted while the archive lags
    let (_, text) = s.curl(Some(&s.token), &[&s.url("/v1/archive")]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["segments"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["local"] == true && x["archived"].is_null()));
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// moto_server (PyPI `moto[server]`, installed by scripts/install-deps) on a free loopback
/// port, with buckets made by boto3; killed when dropped.
struct Moto(std::process::Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto(buckets: &str) -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server is installed by scripts/install-deps");
    let m = Moto(child, port);
    wait_for("moto_server", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', aws_access_key_id='x', aws_secret_access_key='x', region_name='us-east-1')\n{buckets}"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m
}

#[test]
fn check_asks_the_store_and_serve_refuses_a_bucket_that_does_not_exist() {
    let dir = tmpdir("arch-check");
    let m = moto("s3.create_bucket(Bucket='plain')");
    let endpoint = format!("http://127.0.0.1:{}", m.1);
    let cfg = dir.join("trailwarden.toml");
    std::fs::write(
        &cfg,
        format!(
            "[archive]\nurl = \"s3://plain/prod\"\nendpoint = \"{endpoint}\"\nallow_http = true\n"
        ),
    )
    .unwrap();
    let creds = [
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
        ("AWS_REGION", "us-east-1"),
    ];
    // check: the bucket enforces nothing — the store's own answer, a 10.3.3 finding
    let out = bin()
        .envs(creds)
        .args(["check", "-O", "json"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v["files"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert!(ids.contains(&"TW-ARC-01"), "{ids:?}");
    // serve with a bucket that does not exist: refused at start, naming it
    let mut env: Vec<(&str, &str)> = creds.to_vec();
    env.extend([
        ("TRAILWARDEN_ARCHIVE_URL", "s3://nosuch/prod"),
        ("TRAILWARDEN_ARCHIVE_ENDPOINT", endpoint.as_str()),
        ("TRAILWARDEN_ARCHIVE_ALLOW_HTTP", "true"),
    ]);
    match Server::try_start(&dir.join("data"), &env) {
        Ok(_) => panic!("serve started with an archive bucket that does not exist"),
        Err(e) => assert!(e.contains("nosuch"), "{e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
