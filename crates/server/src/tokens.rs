//! API tokens: `tokens.json` in the data directory (mode 0600) holds each token's SHA-256, never
//! the token itself. `trailwarden tokens create` works without a running server; the server
//! reloads the file when it changes, so a revocation takes effect within a second.

use crate::auth::Role;
use crate::ServerError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use trailwarden_model::Timestamp;

/// The prefix of every token (lets secret scanners find leaked ones).
pub const TOKEN_PREFIX: &str = "twk_";

/// One token's entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenEntry {
    /// Public identifier (what `list` and `revoke` use, and what the self-audit records).
    pub id: String,
    /// A name for people (`kube-apiserver`, `alice`).
    pub name: String,
    /// Role.
    pub role: Role,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// Created at.
    pub created: Timestamp,
    /// Expires at, if ever.
    #[serde(default)]
    pub expires: Option<Timestamp>,
    /// Revoked at.
    #[serde(default)]
    pub revoked: Option<Timestamp>,
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    tokens: Vec<TokenEntry>,
}

/// The token file.
pub struct TokenStore {
    path: PathBuf,
    entries: Vec<TokenEntry>,
}

/// SHA-256 of a token, hex.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, ServerError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| ServerError::Tokens(format!("no randomness: {e}")))?;
    Ok(b)
}

impl TokenStore {
    /// The token file of a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("tokens.json")
    }

    /// Open (an absent file is an empty store). Refuses a file others can read.
    pub fn open(data_dir: &Path) -> Result<TokenStore, ServerError> {
        let path = Self::path_in(data_dir);
        let entries = match std::fs::read(&path) {
            Ok(b) => {
                crate::check_private(&path)?;
                let f: File = serde_json::from_slice(&b)
                    .map_err(|e| ServerError::Tokens(format!("{}: {e}", path.display())))?;
                f.tokens
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(ServerError::io(&path, e)),
        };
        Ok(TokenStore { path, entries })
    }

    /// Every entry (revoked ones included).
    pub fn entries(&self) -> &[TokenEntry] {
        &self.entries
    }

    /// Tokens in force (not revoked) per role name — evidence for PCI DSS 10.1.2 / 10.3.1.
    pub fn count_by_role(&self) -> Vec<(String, u64)> {
        let mut m: std::collections::BTreeMap<String, u64> = Default::default();
        for e in self.entries.iter().filter(|e| e.revoked.is_none()) {
            *m.entry(e.role.as_str().to_string()).or_default() += 1;
        }
        m.into_iter().collect()
    }

    /// Create a token; returns it (shown once) and its entry. The file is written before the
    /// token is returned.
    pub fn create(
        &mut self,
        name: &str,
        role: Role,
        expires: Option<Timestamp>,
    ) -> Result<(String, TokenEntry), ServerError> {
        use base64::Engine as _;
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(32)?);
        let token = format!("{TOKEN_PREFIX}{secret}");
        let id = format!("tok-{}", hex::encode(random_bytes(4)?));
        let e = TokenEntry {
            id,
            name: name.to_string(),
            role,
            sha256: digest(&token),
            created: Timestamp::now(),
            expires,
            revoked: None,
        };
        self.entries.push(e.clone());
        self.save()?;
        Ok((token, e))
    }

    /// Revoke by id (or by name when exactly one active token has it).
    pub fn revoke(&mut self, id_or_name: &str) -> Result<TokenEntry, ServerError> {
        let idx = match self.entries.iter().position(|e| e.id == id_or_name) {
            Some(i) => i,
            None => {
                let m: Vec<usize> = (0..self.entries.len())
                    .filter(|&i| {
                        self.entries[i].name == id_or_name && self.entries[i].revoked.is_none()
                    })
                    .collect();
                match m.as_slice() {
                    [i] => *i,
                    [] => return Err(ServerError::Tokens(format!("no token {id_or_name:?}"))),
                    _ => {
                        return Err(ServerError::Tokens(format!(
                            "{} active tokens are named {id_or_name:?}: revoke by id",
                            m.len()
                        )))
                    }
                }
            }
        };
        if self.entries[idx].revoked.is_none() {
            self.entries[idx].revoked = Some(Timestamp::now());
            self.save()?;
        }
        Ok(self.entries[idx].clone())
    }

    /// The active entry for a presented token.
    pub fn lookup(&self, token: &str, now: Timestamp) -> Option<&TokenEntry> {
        if !token.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let d = digest(token);
        self.entries
            .iter()
            .find(|e| e.sha256 == d && e.revoked.is_none() && e.expires.is_none_or(|x| x.0 > now.0))
    }

    fn save(&self) -> Result<(), ServerError> {
        let bytes = serde_json::to_vec_pretty(&File {
            tokens: self.entries.clone(),
        })
        .map_err(|e| ServerError::Tokens(e.to_string()))?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ServerError::io(dir, e))?;
        }
        crate::write_private(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_revocation_sticks() {
        let dir = std::env::temp_dir().join(format!("tw-tokens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut s = TokenStore::open(&dir).expect("open");
        let (tok, e) = s.create("apiserver", Role::Ingest, None).expect("create");
        let text = std::fs::read_to_string(TokenStore::path_in(&dir)).expect("read");
        assert!(!text.contains(&tok), "the token itself must not be stored");
        assert!(text.contains(&e.sha256));
        let s2 = TokenStore::open(&dir).expect("reopen");
        assert_eq!(
            s2.lookup(&tok, Timestamp::now()).map(|e| e.role),
            Some(Role::Ingest)
        );
        assert!(s2.lookup("twk_nope", Timestamp::now()).is_none());
        let mut s3 = s2;
        s3.revoke(&e.id).expect("revoke");
        let s4 = TokenStore::open(&dir).expect("reopen");
        assert!(s4.lookup(&tok, Timestamp::now()).is_none());
        // world-readable token file is refused
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            TokenStore::path_in(&dir),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        assert!(matches!(
            TokenStore::open(&dir),
            Err(ServerError::Permissions { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
