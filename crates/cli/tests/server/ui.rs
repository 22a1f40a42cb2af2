//! The web UI in a real browser: Debian's `chromium`, driven through Debian's `chromedriver`
//! (WebDriver) by fantoccini — nothing downloaded at run time — against a real `serve` with the
//! corpus ingested. Screenshots of every page go to `ci-artifacts/ui/` (or `$TW_ARTIFACTS/ui`).

use super::components::{free_port, Killed};
use super::{bin, cli_ok, corpus_events, tmpdir, Server};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn artifacts() -> PathBuf {
    let root = match std::env::var_os("TW_ARTIFACTS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ci-artifacts"),
    };
    let d = root.join("ui");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Debian's chromedriver on a free loopback port.
fn chromedriver() -> (Killed, u16) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "chromedriver (Debian package chromium-driver; ./scripts/install-deps installs it)",
        );
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < end,
            "chromedriver did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (Killed(child), port)
}

async fn browser(port: u16, downloads: &Path) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "acceptInsecureCerts": true,
        "goog:loggingPrefs": {"browser": "ALL"},
        "goog:chromeOptions": {
            "binary": "/usr/lib/chromium/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,800", "--lang=en-US"],
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
            },
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromium session through chromedriver")
}

/// The browser console's errors since the last call (chromedriver's log endpoint). A CSP
/// violation is one of them.
async fn console_errors(c: &Client, port: u16) -> Vec<String> {
    let sid = c.session_id().await.unwrap().unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            "{\"type\":\"browser\"}",
        ])
        .arg(format!("http://127.0.0.1:{port}/session/{sid}/se/log"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["value"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// After a step that is meant to answer `status`: the console holds that, and nothing else.
async fn expected_status(c: &Client, port: u16, status: u16) {
    let errors = console_errors(c, port).await;
    let want = format!("the server responded with a status of {status}");
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e.contains(&want)),
        "expected only a {status} in the console: {errors:?}"
    );
}

/// The text of the first element matching `css`, waiting for it (and riding out a page that
/// is being replaced).
async fn text(c: &Client, css: &str) -> String {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let got = match c.find(Locator::Css(css)).await {
            Ok(e) => e.text().await,
            Err(e) => Err(e),
        };
        match got {
            Ok(t) => return t,
            Err(e) if Instant::now() > end => panic!("{css}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Click what submits a form or follows a link, and wait until the next page replaced this one.
async fn click(c: &Client, css: &str) {
    let old = c.find(Locator::Css("html")).await.unwrap();
    let Ok(e) = c.find(Locator::Css(css)).await else {
        let page = c.source().await.unwrap_or_default();
        panic!(
            "{css} is not on the page: {}",
            &page[page.len().saturating_sub(6000)..]
        );
    };
    e.click().await.unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while old.tag_name().await.is_ok() {
        assert!(Instant::now() < end, "{css}: no new page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

async fn login(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/ui/")).await.unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(
        url.path(),
        "/ui/login",
        "signed out, / goes to the login: {url}"
    );
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    click(c, "form.login button[type=submit]").await;
    assert_eq!(text(c, "main h1").await, "Overview");
}

/// Post a form the page does not offer (what a forged request looks like), with or without the
/// session's CSRF token.
async fn forge(c: &Client, action: &str, with_token: bool) {
    let script = r#"
        const f = document.createElement('form');
        f.method = 'post'; f.action = arguments[0];
        if (arguments[1]) {
            const i = document.createElement('input');
            i.name = '_csrf'; i.value = document.querySelector('input[name=_csrf]').value;
            f.append(i);
        }
        const n = document.createElement('input'); n.name = 'note'; n.value = 'forged';
        f.append(n);
        document.body.append(f); f.submit();"#;
    let old = c.find(Locator::Css("html")).await.unwrap();
    c.execute(script, vec![json!(action), json!(with_token)])
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while old.tag_name().await.is_ok() {
        assert!(Instant::now() < end, "{action}: no answer page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn ui_in_chromium_login_search_triage_sign_off_proofs_and_refusals() {
    let data = tmpdir("ui");
    let s = Server::start(&data, &[]);
    let ingest = s.token("ingest");
    let analyst = s.token("analyst");
    let viewer = s.token("viewer");
    std::thread::sleep(Duration::from_millis(1100)); // token file reload
                                                     // the Falco trace of an exec into a pod first: its alert is the one triaged below
    let exec = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../../shared/corpus/falcosecurity-falco/test/trace_files/k8s_audit/exec_pod.json",
    ))
    .unwrap();
    let (code, body) = s.post_json(&ingest, "/v1/ingest/k8s-audit", exec.trim());
    assert_eq!(code, 200, "{body}");
    let exec_index = serde_json::from_str::<Value>(&body).unwrap()["first_index"]
        .as_u64()
        .unwrap();
    let items: Vec<Value> = corpus_events();
    let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items});
    let (code, body) = s.post_json(&ingest, "/v1/ingest/k8s-audit", &list.to_string());
    assert_eq!(code, 200, "{body}");
    // the alert the exec raised (through the API, as a script would find it)
    let mut alert_id = 0;
    for _ in 0..100 {
        let (_, b) = s.curl(Some(&analyst), &[&s.url("/v1/alerts?status=new")]);
        let v: Value = serde_json::from_str(&b).unwrap_or(Value::Null);
        if let Some(a) = v.as_array().and_then(|l| {
            l.iter().find(|a| {
                a["evidence"]
                    .as_array()
                    .is_some_and(|e| e.contains(&json!(exec_index)))
            })
        }) {
            alert_id = a["id"].as_i64().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(alert_id > 0, "the exec trace raised no alert");
    // the headers every page carries
    let (code, head) = s.curl(None, &["-D", "-", "-o", "/dev/null", &s.url("/ui/login")]);
    assert_eq!(code, 200);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains(
            "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'"
        ),
        "{head}"
    );
    assert!(
        !head.contains("unsafe-inline") && head.contains("x-frame-options: deny"),
        "{head}"
    );
    assert!(
        head.contains("set-cookie: __host-tw_login=")
            && head.contains("httponly; secure; samesite=strict"),
        "{head}"
    );

    let (_driver, port) = chromedriver();
    let downloads = data.with_extension("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin = s.token.clone();
    let base = s.base.clone();
    rt.block_on(async {
        let c = browser(port, &downloads).await;
        let mut console = Vec::new();

        // a wrong token: refused, recorded, still on the login page
        c.goto(&format!("{base}/ui/login")).await.unwrap();
        c.find(Locator::Css("#token")).await.unwrap().send_keys("twk_not-a-token").await.unwrap();
        click(&c, "form.login button").await;
        let e = text(&c, ".error").await;
        assert!(e.contains("not accepted"), "{e}");
        expected_status(&c, port, 401).await;

        login(&c, &base, &admin).await;
        // every page renders, with no console error (a CSP violation is one)
        let pages = [
            ("overview", "/ui/".to_string(), "Overview"),
            ("search", "/ui/search".into(), "Search"),
            ("alerts", "/ui/alerts".into(), "Alerts"),
            ("alert", format!("/ui/alerts/{alert_id}"), "Alert"),
            ("reviews", "/ui/reviews".into(), "Reviews"),
            ("compliance", "/ui/compliance".into(), "Compliance"),
            ("integrity", "/ui/integrity".into(), "Integrity"),
            ("sources", "/ui/sources".into(), "Sources"),
            ("admin", "/ui/admin".into(), "Admin"),
        ];
        for (name, path, title) in &pages {
            c.goto(&format!("{base}{path}")).await.unwrap();
            let h1 = text(&c, "main h1").await;
            assert!(h1.starts_with(title), "{path}: {h1}");
            let errors = c.find_all(Locator::Css("main .error")).await.unwrap();
            assert!(errors.is_empty(), "{path} shows an error: {}", errors[0].text().await.unwrap());
            shot(&c, name).await;
            console.extend(console_errors(&c, port).await.into_iter().map(|e| format!("{path}: {e}")));
        }
        // the alert list shows the exec alert; the rules page lists rules with their state
        c.goto(&format!("{base}/ui/alerts")).await.unwrap();
        assert!(c.find(Locator::Css(&format!("#alerts a[href='/ui/alerts/{alert_id}']"))).await.is_ok());
        c.goto(&format!("{base}/ui/admin")).await.unwrap();
        assert!(c.find_all(Locator::Css("#rules tbody tr")).await.unwrap().len() > 10);

        // search: a KQL query's rows are the API's rows
        let kql = "events | where isnotempty(user) | summarize n = count() by user | order by n desc, user asc";
        c.goto(&format!("{base}/ui/search")).await.unwrap();
        c.find(Locator::Css("#q")).await.unwrap().send_keys(kql).await.unwrap();
        c.find(Locator::Css("#range")).await.unwrap().select_by_value("all").await.unwrap();
        click(&c, "#run").await;
        let shown: usize = text(&c, "#rowcount").await.parse().unwrap();
        let (rows, _) = s.query(&analyst, kql);
        assert_eq!(shown, rows.len());
        assert!(shown > 3, "{rows:?}");
        let first = c.find(Locator::Css("table.grid tbody tr td")).await.unwrap().text().await.unwrap();
        assert_eq!(first, rows[0]["user"].as_str().unwrap());
        shot(&c, "search-results").await;
        // sorting by a column is a link (the state is in the URL); the permalink reproduces it
        click(&c, "th a.sort").await;
        let sorted = c.find(Locator::Css("th[aria-sort=ascending]")).await.unwrap().text().await.unwrap();
        assert!(sorted.starts_with("user"), "{sorted}");
        let permalink = c.find(Locator::Css("#permalink")).await.unwrap().attr("href").await.unwrap().unwrap();
        c.goto(&format!("{base}{permalink}")).await.unwrap();
        assert_eq!(text(&c, "#rowcount").await.parse::<usize>().unwrap(), rows.len());
        assert!(c.find(Locator::Css("th[aria-sort=ascending]")).await.is_ok());
        // a timechart is drawn
        let chart = "events | summarize n = count() by bin(TimeGenerated, 1d) | render timechart";
        c.goto(&format!("{base}/ui/search?range=all&q={}", enc(chart))).await.unwrap();
        assert!(c.find(Locator::Css("svg.chart polyline")).await.is_ok(), "no line drawn");
        shot(&c, "search-timechart").await;
        // a query error shows the caret message
        c.goto(&format!("{base}/ui/search?q={}", enc("events | whre user == 'x'"))).await.unwrap();
        let err = text(&c, ".error pre").await;
        assert!(err.contains('^') && err.contains("whre"), "{err}");
        shot(&c, "search-error").await;
        expected_status(&c, port, 400).await;

        // triage: acknowledge the exec alert; the change is a ledger record
        c.goto(&format!("{base}/ui/alerts/{alert_id}")).await.unwrap();
        c.find(Locator::Css("form[action$='/ack'] input[name=note]")).await.unwrap().send_keys("looking at the exec").await.unwrap();
        click(&c, "#ack").await;
        let flash = text(&c, ".flash").await;
        assert!(flash.starts_with("Acknowledged (ledger record "), "{flash}");
        assert_eq!(text(&c, "#status").await, "acknowledged");
        assert!(text(&c, "#history").await.contains("looking at the exec"));
        let record: u64 = flash.trim_start_matches("Acknowledged (ledger record ").trim_end_matches(").").parse().unwrap();
        let (rows, _) = s.query(&analyst, &format!("records | where ledger_index == {record} | project kind, raw"));
        assert_eq!(rows[0]["kind"], "alert", "{rows:?}");
        let raw = rows[0]["raw"].as_str().unwrap();
        assert!(raw.contains("acknowledged") && raw.contains("looking at the exec") && raw.contains("initial-admin"), "{raw}");

        // download the inclusion proof of the evidence event, verify it offline
        let link = c.find(Locator::Css(&format!("a.proof[href='/ui/proofs/inclusion/{exec_index}']"))).await.unwrap();
        link.click().await.unwrap();
        let proof = downloads.join(format!("record-{exec_index}.tlog-proof"));
        let end = Instant::now() + Duration::from_secs(30);
        while !proof.exists() {
            assert!(Instant::now() < end, "the proof was not downloaded to {}", downloads.display());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let vkey = std::fs::read_to_string(data.join("keys/checkpoint.vkey")).unwrap();
        let out = bin().arg("verify-proof").arg(&proof).arg("--public-key").arg(vkey.trim()).output().unwrap();
        assert!(out.status.success(), "verify-proof: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

        // a review: generate yesterday's, sign it off with a note
        let yesterday = trailwarden_model::Timestamp(trailwarden_model::Timestamp::now().0 - 86_400_000_000_000)
            .to_rfc3339()[..10]
            .to_string();
        c.goto(&format!("{base}/ui/reviews")).await.unwrap();
        c.execute("document.querySelector('input[name=date]').value = arguments[0]", vec![json!(yesterday)]).await.unwrap();
        click(&c, "form[action='/ui/reviews'] button").await;
        assert!(text(&c, ".flash").await.contains("generated"));
        let review = c.current_url().await.unwrap().path().trim_start_matches("/ui/reviews/").to_string();
        c.find(Locator::Css("#signoff-note")).await.unwrap().send_keys("exceptions followed up in the exec alert").await.unwrap();
        click(&c, "#sign").await;
        assert!(text(&c, ".flash").await.starts_with("Signed off (ledger record "));
        assert!(text(&c, "#signoff").await.contains("initial-admin"));
        shot(&c, "review-signed").await;
        let (_, b) = s.curl(Some(&analyst), &[&s.url(&format!("/v1/reviews/{review}"))]);
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["sign_off"]["note"], "exceptions followed up in the exec alert", "{b}");

        // admin: a token created in the page works against the API at once and stops working
        // when revoked in the page
        c.goto(&format!("{base}/ui/admin")).await.unwrap();
        c.find(Locator::Css("form[action='/ui/admin/tokens'] input[name=name]")).await.unwrap().send_keys("ui-made").await.unwrap();
        c.find(Locator::Css("form[action='/ui/admin/tokens'] select[name=role]")).await.unwrap().select_by_value("analyst").await.unwrap();
        click(&c, "form[action='/ui/admin/tokens'] button").await;
        let made = text(&c, "#new-token").await;
        assert!(made.starts_with("twk_"), "{made}");
        shot(&c, "admin-token-created").await;
        std::thread::sleep(Duration::from_millis(1100)); // the token file is reread each second
        let (code, _) = s.curl(Some(&made), &[&s.url("/v1/alerts?limit=1")]);
        assert_eq!(code, 200);
        c.goto(&format!("{base}/ui/admin")).await.unwrap();
        let row = c.find(Locator::XPath("//table[@id='tokens']//tr[td[2][normalize-space()='ui-made']]//button")).await.unwrap();
        let old = c.find(Locator::Css("html")).await.unwrap();
        row.click().await.unwrap();
        // the page asks first
        let question = c.get_alert_text().await.unwrap();
        assert!(question.starts_with("Revoke tok-") && question.contains("ui-made"), "{question}");
        c.accept_alert().await.unwrap();
        while old.tag_name().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(text(&c, ".flash").await.contains("revoked"));
        std::thread::sleep(Duration::from_millis(1100));
        let (code, _) = s.curl(Some(&made), &[&s.url("/v1/alerts?limit=1")]);
        assert_eq!(code, 401);

        // compliance: a pasted audit policy gets the check's findings
        c.goto(&format!("{base}/ui/compliance")).await.unwrap();
        c.find(Locator::Css("form[action='/ui/compliance/check'] input[name=file]")).await.unwrap().send_keys("audit-policy.yaml").await.unwrap();
        let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n";
        c.execute("document.querySelector(\"form[action='/ui/compliance/check'] textarea\").value = arguments[0]", vec![json!(policy)]).await.unwrap();
        click(&c, "form[action='/ui/compliance/check'] button").await;
        let findings = c
            .find_all(Locator::XPath("//h3[code='audit-policy.yaml']/following-sibling::table[1]//tbody/tr"))
            .await
            .unwrap();
        assert!(!findings.is_empty(), "a policy that logs nothing has findings");
        let first = findings[0].text().await.unwrap();
        assert!(first.contains("10.2"), "{first}");
        shot(&c, "compliance-check").await;

        // a forged POST without the CSRF token is refused (403 page) and recorded
        forge(&c, &format!("/ui/alerts/{alert_id}/resolve"), false).await;
        assert!(text(&c, ".error").await.contains("no CSRF token"));
        expected_status(&c, port, 403).await;
        // a post from another site is refused even with the right token
        let cookie = c.get_named_cookie("__Host-tw_session").await.unwrap();
        c.goto(&format!("{base}/ui/alerts/{alert_id}")).await.unwrap();
        let token = c.find(Locator::Css("input[name=_csrf]")).await.unwrap().prop("value").await.unwrap().unwrap();
        let (code, _) = s.curl(None, &["-H", &format!("Cookie: __Host-tw_session={}", cookie.value()),
            "-H", "Origin: https://evil.example", "--data", &format!("_csrf={token}&note=x"),
            &s.url(&format!("/ui/alerts/{alert_id}/resolve"))]);
        assert_eq!(code, 403);

        // sign out; a viewer sees no triage forms, and a forged ack is refused by the API
        click(&c, ".user form button").await;
        assert!(text(&c, ".flash").await.contains("signed out"));
        login(&c, &base, &viewer).await;
        c.goto(&format!("{base}/ui/alerts/{alert_id}")).await.unwrap();
        assert!(c.find_all(Locator::Css("form.action")).await.unwrap().is_empty(), "a viewer sees triage forms");
        assert!(c.find(Locator::Css("nav a[href='/ui/search']")).await.is_err(), "a viewer sees Search");
        shot(&c, "alert-as-viewer").await;
        forge(&c, &format!("/ui/alerts/{alert_id}/ack"), true).await;
        let refused = text(&c, ".error").await;
        assert!(refused.contains("Your role (viewer) may not"), "{refused}");
        expected_status(&c, port, 403).await;

        // narrow screen and the dark theme
        c.set_window_size(390, 844).await.unwrap();
        c.goto(&format!("{base}/ui/alerts")).await.unwrap();
        shot(&c, "alerts-narrow").await;
        c.find(Locator::Css("#theme")).await.unwrap().click().await.unwrap();
        let theme = c.execute("return document.documentElement.dataset.theme", vec![]).await.unwrap();
        assert!(theme == "dark" || theme == "light", "{theme}");
        shot(&c, "alerts-narrow-theme").await;
        c.set_window_size(1280, 800).await.unwrap();
        console.extend(console_errors(&c, port).await);
        assert!(console.is_empty(), "browser console errors:\n{}", console.join("\n"));
        c.close().await.unwrap();
    });

    // the ledger has what the browser did: page reads through the UI, the refusals
    let count = |kql: &str| s.count(&analyst, kql);
    assert!(count("TrailwardenAccess | where Interface == 'ui' and Action == 'alerts-show' and Outcome == 'success'") >= 2);
    assert!(count("TrailwardenAccess | where Interface == 'ui' and Action == 'query' and Target has 'summarize n = count() by user'") >= 1);
    assert!(count("TrailwardenAccess | where Interface == 'ui' and Action == 'ui-login' and Outcome == 'success'") >= 2);
    assert!(count("TrailwardenAccess | where Interface == 'ui' and Action == 'ui-login' and Outcome == 'unauthenticated'") >= 1);
    assert!(count("TrailwardenAccess | where Interface == 'ui' and Action == 'csrf' and Outcome == 'forbidden'") >= 2);
    assert!(count("TrailwardenAccess | where Interface == 'ui' and Action == 'alerts-ack' and Outcome == 'forbidden' and Subject has 'viewer'") >= 1);
    let (code, _) = s.stop();
    assert_eq!(code, 0);
}

#[test]
fn ui_session_idle_timeout_goes_back_to_the_login() {
    let data = tmpdir("ui-idle");
    let s = Server::start(&data, &[("TRAILWARDEN_UI_IDLE_TIMEOUT_SECONDS", "2")]);
    let (_driver, port) = chromedriver();
    let downloads = data.with_extension("downloads");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = browser(port, &downloads).await;
        login(&c, &s.base, &s.token).await;
        c.goto(&format!("{}/ui/alerts", s.base)).await.unwrap();
        assert_eq!(text(&c, "main h1").await, "Alerts");
        tokio::time::sleep(Duration::from_secs(3)).await;
        c.goto(&format!("{}/ui/alerts?status=all", s.base))
            .await
            .unwrap();
        let url = c.current_url().await.unwrap();
        assert_eq!(url.path(), "/ui/login", "{url}");
        assert!(
            url.query()
                .unwrap_or("")
                .contains("next=%2Fui%2Falerts%3Fstatus%3Dall"),
            "{url}"
        );
        assert!(text(&c, ".flash")
            .await
            .contains("ended after 2 seconds without activity"));
        shot(&c, "login-after-idle").await;
        // signing in again goes back to where the user was
        c.find(Locator::Css("#token"))
            .await
            .unwrap()
            .send_keys(&s.token)
            .await
            .unwrap();
        click(&c, "form.login button").await;
        assert_eq!(text(&c, "main h1").await, "Alerts");
        assert_eq!(c.current_url().await.unwrap().query(), Some("status=all"));
        // a session opened with a token ends when the token is revoked
        click(&c, ".user form button").await;
        let token = s.token("analyst");
        std::thread::sleep(Duration::from_millis(1100));
        login(&c, &s.base, &token).await;
        cli_ok(&s.data, &["tokens", "revoke", &token_id(&c).await]);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        c.goto(&format!("{}/ui/alerts", s.base)).await.unwrap();
        assert_eq!(c.current_url().await.unwrap().path(), "/ui/login");
        assert!(text(&c, ".flash").await.contains("was revoked"));
        c.close().await.unwrap();
    });
    let (code, _) = s.stop();
    assert_eq!(code, 0);
}

#[test]
fn ui_oidc_sign_in_through_a_real_provider() {
    let data = tmpdir("ui-oidc");
    let dir = data.with_extension("oidc");
    std::fs::create_dir_all(&dir).unwrap();
    let (idp_port, port) = (free_port(), free_port());
    let jwks = dir.join("jwks.json");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/oidc-provider/provider.mjs");
    let mut idp = Command::new("node")
        .arg(&script)
        .arg(idp_port.to_string())
        .arg(format!("https://127.0.0.1:{port}/ui/login/oidc/callback"))
        .arg(&jwks)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("provider.log")).unwrap())
        .spawn()
        .expect("node (./scripts/install-deps installs nodejs and the provider)");
    let mut line = String::new();
    // the reader (the pipe) lives as long as the provider: a closed stdout could end it
    let mut out = std::io::BufReader::new(idp.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let _idp = Killed(idp);
    assert!(
        line.starts_with("listening"),
        "the OIDC provider did not start: {line:?}"
    );
    let cfg = dir.join("trailwarden.toml");
    std::fs::write(
        &cfg,
        format!(
            "[oidc]\nissuer = \"http://127.0.0.1:{idp_port}\"\naudience = \"trailwarden\"\njwks_file = \"{}\"\n\
             authorization_endpoint = \"http://127.0.0.1:{idp_port}/auth\"\ntoken_endpoint = \"http://127.0.0.1:{idp_port}/token\"\n\
             scopes = [\"openid\", \"profile\", \"groups\"]\nroles = {{ \"tw-analysts\" = \"analyst\" }}\n",
            jwks.display()
        ),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{port}");
    let s = Server::start(
        &data,
        &[
            ("TRAILWARDEN_CONFIG", cfg.to_str().unwrap()),
            ("TW_TEST_LISTEN", &listen),
        ],
    );
    let (_driver, dport) = chromedriver();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = browser(dport, &dir).await;
        c.goto(&format!("{}/ui/alerts", s.base)).await.unwrap();
        click(&c, "#oidc").await;
        // the provider's own sign-in and consent pages
        let url = c.current_url().await.unwrap();
        assert_eq!(url.port(), Some(idp_port), "not at the provider: {url}");
        let Ok(login) = c.find(Locator::Css("input[name=login]")).await else {
            panic!(
                "the provider's page: {}",
                c.source().await.unwrap_or_default()
            );
        };
        login.send_keys("alice").await.unwrap();
        c.find(Locator::Css("input[name=password]"))
            .await
            .unwrap()
            .send_keys("any")
            .await
            .unwrap();
        click(&c, "form button").await;
        if c.current_url().await.unwrap().port() == Some(idp_port) {
            click(&c, "form button").await; // consent
        }
        // back, signed in, where the user was going
        assert_eq!(text(&c, "main h1").await, "Alerts");
        assert!(text(&c, ".user").await.contains("oidc:alice"));
        assert!(text(&c, ".user .role").await.contains("analyst"));
        shot(&c, "oidc-signed-in").await;
        // a callback with a state this browser did not start is refused
        c.goto(&format!(
            "{}/ui/login/oidc/callback?code=x&state=forged",
            s.base
        ))
        .await
        .unwrap();
        assert!(text(&c, ".error")
            .await
            .contains("unknown or expired state"));
        c.close().await.unwrap();
    });
    let analyst = s.token("analyst");
    std::thread::sleep(Duration::from_millis(1100));
    assert!(s.count(&analyst, "TrailwardenAccess | where Action == 'ui-login' and Subject == 'oidc:alice' and Outcome == 'success'") == 1);
    assert!(s.count(&analyst, "TrailwardenAccess | where Action == 'ui-login' and Target has 'unknown or expired state'") == 1);
    let (code, _) = s.stop();
    assert_eq!(code, 0);
}

/// The id of the token the signed-in session was opened with (`token:<id>(<name>)`).
async fn token_id(c: &Client) -> String {
    let who = text(c, ".user span").await;
    who.trim_start_matches("token:")
        .split('(')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
