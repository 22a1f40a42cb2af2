//! A small HTTP/1.1 client for the HTTP sinks: kept-alive connections over TCP or rustls
//! (idle ones pooled per sink and reused), a deadline for the whole exchange, the answer's
//! status, `Retry-After` and the start of its body (for the error message).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

/// What came back.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// Parse `Retry-After`: seconds, or an HTTP date.
pub(crate) fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let t = httpdate::parse_http_date(v).ok()?;
    Some(
        t.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Idle connections kept per sink at most.
const IDLE_MAX: usize = 64;

/// Where a connection goes: (host, port, TLS).
type Target = (String, u16, bool);

/// Idle kept-alive connections of one sink.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<(Target, SendRequest<Full<Bytes>>)>>,
}

impl Pool {
    fn take(&self, t: &Target) -> Option<SendRequest<Full<Bytes>>> {
        let mut g = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.retain(|(_, s)| !s.is_closed());
        let i = g.iter().rposition(|(k, _)| k == t)?;
        Some(g.swap_remove(i).1)
    }

    fn put(&self, t: Target, s: SendRequest<Full<Bytes>>) {
        let mut g = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if g.len() < IDLE_MAX && !s.is_closed() {
            g.push((t, s));
        }
    }
}

/// POST `body` to `url` with `headers`; `Err` is a transport failure (connect, TLS, timeout,
/// connection closed mid-request).
pub(crate) async fn post(
    tls: &Arc<rustls::ClientConfig>,
    pool: &Pool,
    url: &http::Uri,
    headers: &[(&str, String)],
    body: Bytes,
    timeout: Duration,
) -> Result<Answer, String> {
    let work = exchange(tls, pool, url, headers, body, 4096);
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

/// POST an HTML form (`application/x-www-form-urlencoded`) to `url` — an OAuth 2.0 token
/// endpoint — trusting the system's roots and `ca_file`; the answer's status and body (at most
/// 64 KiB).
pub async fn post_form(
    url: &str,
    form: &[(&str, &str)],
    ca_file: Option<&std::path::Path>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("URL {url:?}: {e}"))?;
    let tls = crate::tls::client_config(ca_file, true)?;
    let body = serde_urlencoded::to_string(form).map_err(|e| e.to_string())?;
    let headers = [
        (
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept", "application/json".to_string()),
    ];
    let pool = Pool::default();
    let work = exchange(&tls, &pool, &uri, &headers, Bytes::from(body), 64 << 10);
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r.map(|a| (a.status, a.body)),
        Err(_) => Err(format!("{url}: no answer within {}s", timeout.as_secs())),
    }
}

async fn exchange(
    tls: &Arc<rustls::ClientConfig>,
    pool: &Pool,
    url: &http::Uri,
    headers: &[(&str, String)],
    body: Bytes,
    limit: usize,
) -> Result<Answer, String> {
    let host = url.host().ok_or("URL without host")?;
    let https = url.scheme_str() == Some("https");
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = url
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let authority = url
        .authority()
        .map_or(host.to_string(), |a| a.as_str().to_string());
    let request = || {
        let req = http::Request::post(path.as_str())
            .header(http::header::HOST, authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("trailwarden/", env!("CARGO_PKG_VERSION")),
            );
        let mut req = req
            .body(Full::new(body.clone()))
            .map_err(|e| format!("request: {e}"))?;
        // the caller's headers win over the defaults (a form's content type)
        for (k, v) in headers {
            let name = http::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("header {k}: {e}"))?;
            let value = http::HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?;
            req.headers_mut().insert(name, value);
        }
        Ok::<_, String>(req)
    };
    let target: Target = (host.to_string(), port, https);
    // a kept-alive connection first; the receiver may have closed it meanwhile, so a failure
    // before any answer goes to a new connection (deliveries carry an idempotency key)
    if let Some(mut s) = pool.take(&target) {
        if s.ready().await.is_ok() {
            if let Ok(res) = s.send_request(request()?).await {
                return answer(res, pool, target, s, limit).await;
            }
        }
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((bare, port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut s = if https {
        let name = rustls_pki_types::ServerName::try_from(bare.to_string())
            .map_err(|e| format!("TLS server name {bare:?}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
        handshake(TokioIo::new(stream)).await?
    } else {
        handshake(TokioIo::new(tcp)).await?
    };
    let res = s
        .send_request(request()?)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    answer(res, pool, target, s, limit).await
}

/// A new HTTP/1.1 connection; its driver runs until the connection closes (or its sender,
/// idle in the pool, is dropped).
async fn handshake<I>(io: I) -> Result<SendRequest<Full<Bytes>>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Read the answer; a connection whose answer was read to its end goes back to the pool.
async fn answer(
    res: http::Response<hyper::body::Incoming>,
    pool: &Pool,
    target: Target,
    sender: SendRequest<Full<Bytes>>,
    limit: usize,
) -> Result<Answer, String> {
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(retry_after);
    // a sink's body only matters for the error message: read at most `limit` of it
    let mut body = Vec::new();
    let mut b = res.into_body();
    let mut complete = false;
    while body.len() < limit {
        match b.frame().await {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    body.extend_from_slice(d);
                }
            }
            Some(Err(_)) => break,
            None => {
                complete = true;
                break;
            }
        }
    }
    if complete {
        pool.put(target, sender);
    }
    body.truncate(limit);
    Ok(Answer {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
