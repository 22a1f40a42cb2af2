//! Who is calling, and what they may do: bearer tokens (hashed in `tokens.json`), OIDC JWTs,
//! and client certificates (mTLS) mapped to roles.

use crate::config::Oidc;
use crate::tokens::TokenStore;
use crate::ServerError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use trailwarden_model::Timestamp;

/// A role. `viewer` ⊂ `analyst` ⊂ `reviewer` ⊂ `admin`; `ingest` only sends data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends audit data (the API server's webhook, log shippers). Reads nothing.
    Ingest,
    /// Reads alerts, sources, verify status and metrics.
    Viewer,
    /// Also queries audit data, asks for proofs and acknowledges alerts.
    Analyst,
    /// Also resolves alerts (the daily review's sign-off) and starts verification.
    Reviewer,
    /// Everything, ingest included.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Ingest,
        Role::Viewer,
        Role::Analyst,
        Role::Reviewer,
        Role::Admin,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }

    /// Parse a name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role may do `p`.
    pub fn allows(self, p: Permission) -> bool {
        let rank = |r: Role| match r {
            Role::Ingest => 0,
            Role::Viewer => 1,
            Role::Analyst => 2,
            Role::Reviewer => 3,
            Role::Admin => 4,
        };
        match p {
            Permission::Ingest => matches!(self, Role::Ingest | Role::Admin),
            Permission::Read => rank(self) >= 1,
            Permission::Query | Permission::Acknowledge => rank(self) >= 2,
            Permission::Resolve | Permission::RunVerify => rank(self) >= 3,
            Permission::Administer => matches!(self, Role::Admin),
        }
    }
}

/// What an endpoint needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Send audit data.
    Ingest,
    /// Read alerts, sources, verify status, metrics, the API document.
    Read,
    /// Run queries and get proofs (reads of the audit records themselves).
    Query,
    /// Acknowledge an alert.
    Acknowledge,
    /// Resolve an alert (or mark it a false positive).
    Resolve,
    /// Start a verification run.
    RunVerify,
    /// Operate the server: replay dead-lettered deliveries.
    Administer,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Who, as recorded in the ledger: `token:<id>(<name>)`, `oidc:<user>`, `cert:<CN>`.
    pub subject: String,
    /// Role.
    pub role: Role,
}

/// Why authentication failed (said to the client in general terms, recorded in detail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFailure {
    /// What was presented (`bearer token`, `JWT`, `client certificate CN=x`, `nothing`).
    pub presented: String,
    /// Why it was refused.
    pub reason: String,
}

/// The authenticator: token store (reloaded when the file changes), OIDC keys, certificate roles.
pub struct Authenticator {
    data_dir: PathBuf,
    tokens: Mutex<(TokenStore, Option<SystemTime>, Instant)>,
    oidc: Option<OidcValidator>,
    cert_roles: std::collections::BTreeMap<String, Role>,
}

impl Authenticator {
    /// Build from the data directory and configuration.
    pub fn new(
        data_dir: PathBuf,
        oidc: &Oidc,
        cert_roles: std::collections::BTreeMap<String, Role>,
    ) -> Result<Authenticator, ServerError> {
        let store = TokenStore::open(&data_dir)?;
        let mtime = mtime(&TokenStore::path_in(&data_dir));
        let oidc = match &oidc.issuer {
            Some(_) => Some(OidcValidator::new(oidc)?),
            None => None,
        };
        Ok(Authenticator {
            data_dir,
            tokens: Mutex::new((store, mtime, Instant::now())),
            oidc,
            cert_roles,
        })
    }

    /// Authenticate a request from its `Authorization` header and the verified client
    /// certificate's CN. `Ok(None)`: nothing was presented.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        cert_cn: Option<&str>,
    ) -> Result<Option<Principal>, AuthFailure> {
        if let Some(h) = authorization {
            let Some(tok) = h
                .strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
            else {
                return Err(AuthFailure {
                    presented: "Authorization header".into(),
                    reason: "not a Bearer credential".into(),
                });
            };
            let tok = tok.trim();
            if tok.starts_with(crate::tokens::TOKEN_PREFIX) {
                return self.token(tok).map(Some);
            }
            if let Some(o) = &self.oidc {
                return o.validate(tok).map(Some);
            }
            return Err(AuthFailure {
                presented: "bearer token".into(),
                reason: "unknown token format (OIDC is not configured)".into(),
            });
        }
        if let Some(cn) = cert_cn {
            return match self.cert_roles.get(cn) {
                Some(r) => Ok(Some(Principal {
                    subject: format!("cert:{cn}"),
                    role: *r,
                })),
                None => Err(AuthFailure {
                    presented: format!("client certificate CN={cn}"),
                    reason: "the certificate is valid but its CN has no role (http.client_roles)"
                        .into(),
                }),
            };
        }
        Ok(None)
    }

    /// Whether a principal that authenticated earlier still may: a token must still exist, not
    /// revoked and not expired (a web session made from a token ends with it); OIDC users and
    /// certificates are not rechecked here (the session's own limits apply).
    pub fn still_valid(&self, p: &Principal) -> bool {
        let Some(rest) = p.subject.strip_prefix("token:") else {
            return true;
        };
        let id = rest.split('(').next().unwrap_or(rest);
        let Ok(g) = self.tokens_now() else {
            return false;
        };
        let now = Timestamp::now();
        g.0.entries()
            .iter()
            .any(|e| e.id == id && e.revoked.is_none() && e.expires.is_none_or(|x| x.0 > now.0))
    }

    /// The token store, reread when its file changed (checked at most once a second).
    #[allow(clippy::type_complexity)]
    fn tokens_now(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, (TokenStore, Option<SystemTime>, Instant)>, AuthFailure>
    {
        let mut g = crate::lock(&self.tokens);
        if g.2.elapsed() >= Duration::from_secs(1) {
            let path = TokenStore::path_in(&self.data_dir);
            let m = mtime(&path);
            if m != g.1 {
                // a file that fails to load (bad permissions, bad JSON) authenticates nobody
                match TokenStore::open(&self.data_dir) {
                    Ok(s) => g.0 = s,
                    Err(e) => {
                        return Err(AuthFailure {
                            presented: "bearer token".into(),
                            reason: format!("token store unusable: {e}"),
                        })
                    }
                }
                g.1 = m;
            }
            g.2 = Instant::now();
        }
        Ok(g)
    }

    fn token(&self, tok: &str) -> Result<Principal, AuthFailure> {
        let g = self.tokens_now()?;
        match g.0.lookup(tok, Timestamp::now()) {
            Some(e) => Ok(Principal {
                subject: format!("token:{}({})", e.id, e.name),
                role: e.role,
            }),
            None => Err(AuthFailure {
                presented: "bearer token".into(),
                reason: "unknown, revoked or expired token".into(),
            }),
        }
    }
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Validates OIDC JWTs against a JWKS, issuer, audience and clock skew.
pub struct OidcValidator {
    keys: Vec<(
        Option<String>,
        jsonwebtoken::DecodingKey,
        jsonwebtoken::Algorithm,
    )>,
    issuer: String,
    audience: String,
    leeway: u64,
    username_claim: String,
    roles_claim: String,
    roles: std::collections::BTreeMap<String, Role>,
}

impl OidcValidator {
    /// Load the JWKS.
    pub fn new(c: &Oidc) -> Result<OidcValidator, ServerError> {
        let path = c
            .jwks_file
            .as_ref()
            .ok_or_else(|| ServerError::Config("oidc.jwks_file is required".into()))?;
        let text = std::fs::read(path).map_err(|e| ServerError::io(path, e))?;
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&text)
            .map_err(|e| ServerError::Config(format!("{}: not a JWKS: {e}", path.display())))?;
        let mut keys = Vec::new();
        for k in &set.keys {
            let alg = match k.common.key_algorithm {
                Some(a) => {
                    <jsonwebtoken::Algorithm as std::str::FromStr>::from_str(&format!("{a:?}")).ok()
                }
                None => None,
            };
            let Some(alg) = alg.or(match &k.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => {
                    Some(jsonwebtoken::Algorithm::RS256)
                }
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => {
                    Some(jsonwebtoken::Algorithm::ES256)
                }
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => {
                    Some(jsonwebtoken::Algorithm::EdDSA)
                }
                _ => None,
            }) else {
                continue;
            };
            let key = jsonwebtoken::DecodingKey::from_jwk(k).map_err(|e| {
                ServerError::Config(format!(
                    "{}: key {:?}: {e}",
                    path.display(),
                    k.common.key_id
                ))
            })?;
            keys.push((k.common.key_id.clone(), key, alg));
        }
        if keys.is_empty() {
            return Err(ServerError::Config(format!(
                "{}: no usable public key (symmetric keys are not accepted)",
                path.display()
            )));
        }
        Ok(OidcValidator {
            keys,
            issuer: c.issuer.clone().unwrap_or_default(),
            audience: c.audience.clone().unwrap_or_default(),
            leeway: c.leeway_seconds,
            username_claim: c.username_claim.clone(),
            roles_claim: c.roles_claim.clone(),
            roles: c.roles.clone(),
        })
    }

    /// Validate a JWT and map its groups to the highest role.
    pub fn validate(&self, jwt: &str) -> Result<Principal, AuthFailure> {
        let fail = |reason: String| AuthFailure {
            presented: "JWT".into(),
            reason,
        };
        let header = jsonwebtoken::decode_header(jwt).map_err(|e| fail(format!("{e}")))?;
        let candidates = self.keys.iter().filter(|(kid, _, alg)| {
            *alg == header.alg && (header.kid.is_none() || kid.as_deref() == header.kid.as_deref())
        });
        let mut last = "no key matches the token's kid and alg".to_string();
        for (_, key, alg) in candidates {
            let mut v = jsonwebtoken::Validation::new(*alg);
            v.set_issuer(&[&self.issuer]);
            v.set_audience(&[&self.audience]);
            v.leeway = self.leeway;
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp", "iss", "aud"]);
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(jwt, key, &v) {
                Ok(data) => {
                    let c = data.claims;
                    let user = c
                        .get(&self.username_claim)
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| fail(format!("no {:?} claim", self.username_claim)))?;
                    let groups: Vec<&str> = match c.get(&self.roles_claim) {
                        Some(serde_json::Value::String(s)) => vec![s.as_str()],
                        Some(serde_json::Value::Array(a)) => {
                            a.iter().filter_map(|v| v.as_str()).collect()
                        }
                        _ => Vec::new(),
                    };
                    let role = groups.iter().filter_map(|g| self.roles.get(*g)).max();
                    return match role {
                        Some(r) => Ok(Principal {
                            subject: format!("oidc:{user}"),
                            role: *r,
                        }),
                        None => Err(fail(format!(
                            "user {user}: none of the groups {groups:?} has a role (oidc.roles)"
                        ))),
                    };
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(fail(last))
    }
}

/// A shared authenticator.
pub type SharedAuth = Arc<Authenticator>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oidc_jwts_are_checked_for_signature_issuer_audience_expiry_and_groups() {
        use base64::Engine as _;
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(kp.public_key_raw());
        let dir = std::env::temp_dir().join(format!("tw-oidc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let jwks = dir.join("jwks.json");
        let set = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig"}]});
        std::fs::write(&jwks, set.to_string()).expect("write");
        let mut cfg = Oidc {
            issuer: Some("https://idp.example".into()),
            audience: Some("trailwarden".into()),
            jwks_file: Some(jwks),
            ..Oidc::default()
        };
        cfg.roles.insert("pci-auditors".into(), Role::Reviewer);
        cfg.roles.insert("sre".into(), Role::Viewer);
        let v = OidcValidator::new(&cfg).expect("validator");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let sign = |key: &rcgen::KeyPair, claims: serde_json::Value| {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            h.kid = Some("k1".into());
            let k = jsonwebtoken::EncodingKey::from_ed_der(&key.serialize_der());
            jsonwebtoken::encode(&h, &claims, &k).expect("sign")
        };
        let good = serde_json::json!({"iss": "https://idp.example", "aud": "trailwarden", "sub": "alice",
            "exp": now + 300, "groups": ["sre", "pci-auditors"]});
        let p = v.validate(&sign(&kp, good.clone())).expect("valid token");
        assert_eq!((p.subject.as_str(), p.role), ("oidc:alice", Role::Reviewer));
        let mut wrong_aud = good.clone();
        wrong_aud["aud"] = "someone-else".into();
        assert!(v.validate(&sign(&kp, wrong_aud)).is_err());
        let mut wrong_iss = good.clone();
        wrong_iss["iss"] = "https://evil.example".into();
        assert!(v.validate(&sign(&kp, wrong_iss)).is_err());
        let mut expired = good.clone();
        expired["exp"] = (now - 3600).into();
        assert!(v.validate(&sign(&kp, expired)).is_err());
        let mut skewed = good.clone();
        skewed["exp"] = (now - 30).into(); // within the 60 s leeway
        assert!(v.validate(&sign(&kp, skewed)).is_ok());
        let mut no_role = good.clone();
        no_role["groups"] = serde_json::json!(["interns"]);
        assert!(v.validate(&sign(&kp, no_role)).is_err());
        assert!(
            v.validate(&sign(&other, good)).is_err(),
            "signed by another key"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn role_lattice() {
        use Permission::*;
        assert!(Role::Ingest.allows(Ingest));
        assert!(!Role::Ingest.allows(Read));
        assert!(!Role::Viewer.allows(Ingest));
        assert!(Role::Viewer.allows(Read) && !Role::Viewer.allows(Query));
        assert!(Role::Analyst.allows(Acknowledge) && !Role::Analyst.allows(Resolve));
        assert!(Role::Reviewer.allows(Resolve) && !Role::Reviewer.allows(Ingest));
        assert!(Role::ALL.iter().all(|_| Role::Admin.allows(RunVerify)));
    }
}
