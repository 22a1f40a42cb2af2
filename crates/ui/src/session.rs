//! Sessions: a login turns a bearer token (or an OIDC JWT) into a server-side session named by a
//! random id in an `HttpOnly; Secure; SameSite=Strict` cookie. The id is kept only as its
//! SHA-256, so a memory dump of the map does not hand out sessions. A session ends at logout,
//! after `idle` without a request (PCI DSS 8.2.8: 15 minutes) or after `max_age` whatever
//! happens; each carries its own CSRF token for the forms it renders.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use trailwarden_server::auth::Principal;

/// One signed-in user.
#[derive(Clone, Debug)]
pub struct Session {
    /// Who, with the role the token or JWT had at login.
    pub principal: Principal,
    /// The synchronizer token every form of this session carries (`_csrf`).
    pub csrf: String,
    /// A one-time message for the next page (`acknowledged`, `signed off`, …).
    pub flash: Option<String>,
    created: Instant,
    last_seen: Instant,
}

/// Why there is no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// No cookie, or one the server never issued (or forgot at a restart).
    None,
    /// It was idle longer than allowed.
    Idle,
    /// It is older than the longest a session may live.
    Expired,
    /// The token it was opened with is revoked or expired.
    Revoked,
}

/// Every session of this process (a restart signs everybody out: sessions are not persisted).
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    /// Longest time without a request.
    pub idle: Duration,
    /// Longest life.
    pub max_age: Duration,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// `n` random bytes, URL-safe base64.
pub fn random_token(n: usize) -> Result<String, String> {
    use base64::Engine as _;
    trailwarden_server::tokens::random_bytes(n)
        .map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
        .map_err(|e| e.to_string())
}

/// Compare secrets without an early exit.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    /// An empty store.
    pub fn new(idle: Duration, max_age: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
            max_age,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a session; returns its id (the cookie's value). Expired sessions are swept.
    pub fn create(&self, principal: Principal) -> Result<(String, Session), String> {
        let id = random_token(32)?;
        let now = Instant::now();
        let s = Session {
            principal,
            csrf: random_token(32)?,
            flash: None,
            created: now,
            last_seen: now,
        };
        let mut m = self.lock();
        let (idle, max) = (self.idle, self.max_age);
        m.retain(|_, s| now - s.last_seen <= idle && now - s.created <= max);
        m.insert(key(&id), s.clone());
        Ok((id, s))
    }

    /// The session of a cookie value, touched (its idle clock restarts) and with its flash
    /// message taken.
    pub fn get(&self, id: &str) -> Result<Session, Missing> {
        let k = key(id);
        let now = Instant::now();
        let mut m = self.lock();
        let Some(s) = m.get_mut(&k) else {
            return Err(Missing::None);
        };
        if now - s.created > self.max_age {
            m.remove(&k);
            return Err(Missing::Expired);
        }
        if now - s.last_seen > self.idle {
            m.remove(&k);
            return Err(Missing::Idle);
        }
        s.last_seen = now;
        let out = s.clone();
        s.flash = None;
        Ok(out)
    }

    /// Leave a message for the session's next page.
    pub fn flash(&self, id: &str, msg: String) {
        if let Some(s) = self.lock().get_mut(&key(id)) {
            s.flash = Some(msg);
        }
    }

    /// End a session.
    pub fn remove(&self, id: &str) -> Option<Session> {
        self.lock().remove(&key(id))
    }

    /// Sessions alive now.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Make a session look idle for `by` (tests of the idle timeout, without waiting).
    #[doc(hidden)]
    pub fn age(&self, id: &str, by: Duration) {
        if let Some(s) = self.lock().get_mut(&key(id)) {
            if let Some(t) = s.last_seen.checked_sub(by) {
                s.last_seen = t;
            }
        }
    }
}

/// Every `Cookie` header of a request, as one (HTTP/2 may send several).
pub fn cookie_header(h: &axum::http::HeaderMap) -> String {
    h.get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailwarden_server::auth::Role;

    fn who() -> Principal {
        Principal {
            subject: "token:tok-1(alice)".into(),
            role: Role::Analyst,
        }
    }

    #[test]
    fn sessions_expire_when_idle_and_flash_is_shown_once() {
        let s = Sessions::new(Duration::from_secs(900), Duration::from_secs(3600));
        let (id, made) = s.create(who()).unwrap();
        assert_eq!(made.csrf.len(), 43);
        s.flash(&id, "acknowledged".into());
        assert_eq!(s.get(&id).unwrap().flash.as_deref(), Some("acknowledged"));
        assert_eq!(s.get(&id).unwrap().flash, None);
        s.age(&id, Duration::from_secs(901));
        assert_eq!(s.get(&id).unwrap_err(), Missing::Idle);
        // gone for good
        assert_eq!(s.get(&id).unwrap_err(), Missing::None);
        assert_eq!(s.get("forged").unwrap_err(), Missing::None);
    }

    #[test]
    fn cookie_header_parsing_and_constant_time_compare() {
        let h = "a=1; __Host-tw_session=abc; b=2";
        assert_eq!(cookie(h, "__Host-tw_session"), Some("abc"));
        assert_eq!(cookie(h, "tw_session"), None);
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
