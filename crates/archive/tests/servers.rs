//! The archive against real servers on loopback, started here and stopped after: moto (S3 with
//! Object Lock; PyPI `moto[server]`) and Azurite (Azure Blob; npm, scripts/azurite), both
//! installed by scripts/install-deps. A small fault proxy in front of moto injects 500s and a
//! stalled request.

use super::{build, manifest, rt, tmp, verify_archive, DAY};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trailwarden_archive::{Archive, ArchiveConfig, ArchiveError, LockMode};
use trailwarden_ledger::datadir::DataDir;
use trailwarden_ledger::verify::Status;
use trailwarden_model::Timestamp;

const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, what: &str) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server process killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python(script: &str) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn moto() -> (Server, u16) {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (PyPI moto[server]) is installed by scripts/install-deps");
    let s = Server(child);
    wait_port(port, "moto_server");
    (s, port)
}

fn s3_env(endpoint: &str) {
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ENDPOINT", endpoint);
    std::env::set_var("AWS_ALLOW_HTTP", "true");
}

fn boto(port: u16, body: &str) {
    python(&format!(
        "import boto3, datetime\ns3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1')\n{body}"
    ));
}

fn s3(url: &str) -> Archive {
    Archive::open(&ArchiveConfig::at(url)).unwrap()
}

#[test]
fn s3_on_moto_with_object_lock() {
    let (_moto, port) = moto();
    s3_env(&format!("http://127.0.0.1:{port}"));
    boto(
        port,
        "s3.create_bucket(Bucket='locked', ObjectLockEnabledForBucket=True)
s3.put_object_lock_configuration(Bucket='locked', ObjectLockConfiguration={'ObjectLockEnabled': 'Enabled', 'Rule': {'DefaultRetention': {'Mode': 'COMPLIANCE', 'Days': 400}}})
s3.create_bucket(Bucket='short', ObjectLockEnabledForBucket=True)
s3.put_object_lock_configuration(Bucket='short', ObjectLockConfiguration={'ObjectLockEnabled': 'Enabled', 'Rule': {'DefaultRetention': {'Mode': 'GOVERNANCE', 'Days': 30}}})
s3.create_bucket(Bucket='perobject', ObjectLockEnabledForBucket=True)
s3.create_bucket(Bucket='plain')",
    );
    let rt = rt();
    let d = tmp("moto");
    build(&d, 1500, Timestamp(Timestamp::now().0 - 30 * DAY));
    let n = manifest(&d).len();

    // the locked bucket: archived, verified from the archive alone, immutability reported
    let a = s3("s3://locked/prod/eu");
    let r = rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
    assert!(r.failures.is_empty() && r.conflicts.is_empty(), "{r:?}");
    assert_eq!(r.uploaded.len(), n);
    let rep = verify_archive(&rt, &a, &tmp("moto-v"));
    assert_eq!(rep.status, Status::Ok, "{:?}", rep.failures);
    let c = rt.block_on(a.check_immutability()).unwrap();
    assert!(c.immutability.enforced, "{c:?}");
    assert_eq!(c.immutability.days, Some(400));
    assert!(c.findings.is_empty(), "{c:?}");
    // WORM: the store itself refuses to delete a locked version
    boto(
        port,
        "import botocore
v = s3.list_object_versions(Bucket='locked', Prefix='prod/eu/seg/')['Versions'][0]
try:
    s3.delete_object(Bucket='locked', Key=v['Key'], VersionId=v['VersionId'])
    raise SystemExit('a locked version was deleted')
except botocore.exceptions.ClientError as e:
    assert e.response['Error']['Code'] == 'AccessDenied', e.response",
    );

    // create-only: another ledger's segments under the same names are refused, not written
    let other = tmp("moto-other");
    build(&other, 1500, Timestamp(Timestamp::now().0 - 30 * DAY));
    let r = rt.block_on(s3("s3://locked/prod/eu").sync(&DataDir::new(&other)));
    match r {
        Err(ArchiveError::Conflict { key, .. }) => assert!(key.ends_with("identity.json"), "{key}"),
        other => panic!("expected the identity conflict, got {other:?}"),
    }
    let rep = verify_archive(&rt, &a, &tmp("moto-v2"));
    assert_eq!(
        rep.status,
        Status::Ok,
        "the archive was altered: {:?}",
        rep.failures
    );

    // a bucket without Object Lock, and one locking for less than retain_days: findings
    let c = rt
        .block_on(s3("s3://plain/x").check_immutability())
        .unwrap();
    assert!(!c.immutability.enforced && !c.findings.is_empty(), "{c:?}");
    let c = rt
        .block_on(s3("s3://short/x").check_immutability())
        .unwrap();
    assert!(c.findings.iter().any(|f| f.contains("30 days")), "{c:?}");

    // per-object retention where the bucket has no default
    let cfg = ArchiveConfig {
        object_lock: Some(LockMode::Compliance),
        ..ArchiveConfig::at("s3://perobject/p")
    };
    let po = Archive::open(&cfg).unwrap();
    let d2 = tmp("moto-po");
    build(&d2, 300, Timestamp(Timestamp::now().0 - DAY));
    let r = rt.block_on(po.sync(&DataDir::new(&d2))).unwrap();
    assert!(r.failures.is_empty() && r.conflicts.is_empty(), "{r:?}");
    assert!(rt
        .block_on(po.check_immutability())
        .unwrap()
        .findings
        .is_empty());
    boto(
        port,
        "h = s3.head_object(Bucket='perobject', Key='p/identity.json')
assert h['ObjectLockMode'] == 'COMPLIANCE', h
days = (h['ObjectLockRetainUntilDate'] - datetime.datetime.now(datetime.timezone.utc)).days
assert 363 <= days <= 365, days",
    );
    for p in [d, other, d2] {
        let _ = std::fs::remove_dir_all(p);
    }
}

/// A fault proxy: forwards HTTP/1.1 requests (one per connection) to `upstream`, answering the
/// first `fail` with 500 and holding the first `stall` PUTs of a segment past the client's
/// timeout.
struct Proxy {
    port: u16,
    served_500: Arc<AtomicUsize>,
    stalled: Arc<AtomicUsize>,
}

fn read_request(c: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    let head_end = loop {
        let n = c.read(&mut tmp).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = c.read(&mut tmp).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    Some(buf)
}

fn proxy(upstream: u16, fail: usize, stall: usize) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let served_500 = Arc::new(AtomicUsize::new(0));
    let stalled = Arc::new(AtomicUsize::new(0));
    let (f, s) = (served_500.clone(), stalled.clone());
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let (f, s) = (f.clone(), s.clone());
            std::thread::spawn(move || {
                let Some(req) = read_request(&mut c) else {
                    return;
                };
                let line = String::from_utf8_lossy(&req[..req.len().min(200)]).to_string();
                if f.fetch_add(1, Ordering::SeqCst) < fail {
                    let _ = c.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    return;
                }
                f.fetch_sub(1, Ordering::SeqCst);
                if line.starts_with("PUT")
                    && line.contains(".parquet")
                    && s.fetch_add(1, Ordering::SeqCst) < stall
                {
                    // hold the upload past the client's timeout, then let it land anyway:
                    // the client never hears that it did (a lost acknowledgement)
                    std::thread::sleep(Duration::from_secs(2));
                }
                let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let _ = up.write_all(&req);
                let mut resp = Vec::new();
                let _ = up.read_to_end(&mut resp);
                let _ = c.write_all(&resp);
            });
        }
    });
    Proxy {
        port,
        served_500,
        stalled,
    }
}

#[test]
fn s3_faults_500s_and_a_stalled_upload_are_retried_and_the_archive_verifies() {
    let (_moto, port) = moto();
    boto(port, "s3.create_bucket(Bucket='faulty')");
    let p = proxy(port, 3, 2);
    s3_env(&format!("http://127.0.0.1:{}", p.port));
    let cfg = ArchiveConfig {
        request_timeout_seconds: 1,
        concurrency: 1,
        ..ArchiveConfig::at("s3://faulty/p")
    };
    let a = Archive::open(&cfg).unwrap();
    let d = tmp("faults");
    build(&d, 800, Timestamp(Timestamp::now().0 - DAY));
    let rt = rt();
    // the 500s are retried inside the pass; the timed-out uploads fail it for their segments
    let r = rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
    assert_eq!(
        p.served_500.load(Ordering::SeqCst),
        3,
        "the 500s were served"
    );
    assert!(p.stalled.load(Ordering::SeqCst) >= 2, "the stalls happened");
    assert_eq!(r.failures.len(), 2, "{r:?}");
    assert!(r.conflicts.is_empty(), "{r:?}");
    assert_eq!(r.pending, 2);
    assert_eq!(r.archived_end, 0, "nothing counts as archived past a gap");
    std::thread::sleep(Duration::from_secs(2));
    // the next pass finds the objects that did land, equal to the local bytes: success
    let r = rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
    assert!(r.failures.is_empty() && r.conflicts.is_empty(), "{r:?}");
    // (the first pass to a new archive did not finish, so every segment is confirmed again)
    assert_eq!(r.uploaded.len(), manifest(&d).len());
    assert!(manifest(&d).iter().all(|e| e.archived.is_some()));
    let rep = verify_archive(&rt, &a, &tmp("faults-v"));
    assert_eq!(rep.status, Status::Ok, "{:?}", rep.failures);
    let _ = std::fs::remove_dir_all(d);
}

fn azurite() -> (Server, u16) {
    let port = free_port();
    let bin = repo().join("scripts/azurite/node_modules/.bin/azurite-blob");
    let child = Command::new(&bin)
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--inMemoryPersistence",
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} (installed by scripts/install-deps): {e}", bin.display()));
    let s = Server(child);
    wait_port(port, "azurite-blob");
    (s, port)
}

#[test]
fn azure_blob_on_azurite() {
    let (_az, port) = azurite();
    python(&format!(
        "from azure.storage.blob import BlobServiceClient
cs = 'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;'
BlobServiceClient.from_connection_string(cs).create_container('audit')"
    ));
    std::env::set_var("AZURE_STORAGE_USE_EMULATOR", "true");
    std::env::set_var(
        "AZURITE_BLOB_STORAGE_URL",
        format!("http://127.0.0.1:{port}"),
    );
    let rt = rt();
    let d = tmp("azurite");
    build(&d, 1500, Timestamp(Timestamp::now().0 - 30 * DAY));
    let a = Archive::open(&ArchiveConfig::at("az://audit/prod")).unwrap();
    rt.block_on(a.probe()).unwrap();
    let r = rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
    assert!(r.failures.is_empty() && r.conflicts.is_empty(), "{r:?}");
    assert_eq!(r.uploaded.len(), manifest(&d).len());
    // idempotent: nothing new, nothing overwritten
    std::fs::remove_file(d.join("archive.url")).unwrap();
    let r = rt.block_on(a.sync(&DataDir::new(&d))).unwrap();
    assert!(r.failures.is_empty() && r.conflicts.is_empty(), "{r:?}");
    let rep = verify_archive(&rt, &a, &tmp("azurite-v"));
    assert_eq!(rep.status, Status::Ok, "{:?}", rep.failures);
    // Azurite enforces no immutability: a finding, through a signed container-properties call
    let c = rt.block_on(a.check_immutability()).unwrap();
    assert!(!c.immutability.enforced && !c.findings.is_empty(), "{c:?}");
    // a missing container and wrong credentials: clear errors, not retried for ever
    let e = rt
        .block_on(
            Archive::open(&ArchiveConfig::at("az://nosuch/x"))
                .unwrap()
                .probe(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("nosuch") && !e.is_transient(), "{e}");
    std::env::set_var("AZURE_STORAGE_USE_EMULATOR", "false");
    std::env::set_var("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1");
    std::env::set_var("AZURE_STORAGE_ACCOUNT_KEY", "d3JvbmcK");
    std::env::set_var(
        "AZURE_STORAGE_ENDPOINT",
        format!("http://127.0.0.1:{port}/devstoreaccount1"),
    );
    std::env::set_var("AZURE_ALLOW_HTTP", "true");
    let bad = Archive::open(&ArchiveConfig::at("az://audit/prod")).unwrap();
    let e = rt.block_on(bad.probe()).unwrap_err();
    assert!(!e.is_transient(), "wrong credentials are not retried: {e}");
    assert!(
        e.to_string().contains("403") || e.to_string().to_lowercase().contains("auth"),
        "{e}"
    );
    let e = rt.block_on(bad.check_immutability()).unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
    let _ = std::fs::remove_dir_all(d);
}
