//! C2SP signed notes (signed-note v1) with Ed25519, and tlog-checkpoint bodies.
//!
//! Parsing is strict (verify must reject what an attacker could smuggle in): valid UTF-8, no
//! control characters other than newline, the text separated from the signatures by the last
//! blank line, every signature line `— NAME BASE64`, checkpoint sizes in decimal without leading
//! zeros and roots of exactly 32 bytes.

use crate::merkle::Hash;
use base64::Engine;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note or checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text does not follow the signed-note / checkpoint grammar.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// A signature by a known key did not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// No signature by any trusted key is on the note.
    #[error("no signature by a trusted key ({0})")]
    Untrusted(String),
    /// A key could not be used.
    #[error("key error: {0}")]
    Key(String),
}

fn malformed(s: impl Into<String>) -> NoteError {
    NoteError::Malformed(s.into())
}

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID (first four bytes of the decoded signature).
    pub key_id: u32,
    /// The signature bytes after the key ID.
    pub sig: Vec<u8>,
}

/// A parsed signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline.
    pub text: String,
    /// Its signatures, in order.
    pub signatures: Vec<NoteSignature>,
}

/// Key ID of an Ed25519 key: `SHA-256(name || 0x0A || 0x01 || public key)[:4]`, big-endian.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, 0x01]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Parse a signed note strictly.
pub fn parse_note(input: &str) -> Result<Note, NoteError> {
    if input.chars().any(|c| (c as u32) < 0x20 && c != '\n') {
        return Err(malformed("control character in note"));
    }
    if !input.ends_with('\n') {
        return Err(malformed("note does not end with a newline"));
    }
    let sep = input
        .rfind("\n\n")
        .ok_or_else(|| malformed("no blank line between text and signatures"))?;
    let text = &input[..sep + 1];
    let sigs = &input[sep + 2..];
    if text.trim().is_empty() {
        return Err(malformed("empty note text"));
    }
    let mut signatures = Vec::new();
    for line in sigs.lines() {
        let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(|| {
            malformed(format!(
                "signature line does not start with an em dash: {line:?}"
            ))
        })?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| malformed("signature line without a signature"))?;
        if !valid_key_name(name) {
            return Err(malformed(format!("invalid key name {name:?}")));
        }
        let raw = B64
            .decode(b64)
            .map_err(|e| malformed(format!("signature is not base64: {e}")))?;
        if raw.len() < 5 {
            return Err(malformed("signature too short"));
        }
        signatures.push(NoteSignature {
            name: name.to_string(),
            key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            sig: raw[4..].to_vec(),
        });
    }
    if signatures.is_empty() {
        return Err(malformed("no signature lines"));
    }
    if signatures.len() > 64 {
        return Err(malformed("more than 64 signatures"));
    }
    Ok(Note {
        text: text.to_string(),
        signatures,
    })
}

/// An Ed25519 verifier key for notes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// From a key name and a 32-byte Ed25519 public key.
    pub fn new(name: &str, public: &[u8; 32]) -> Result<NoteVerifier, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::Key(format!("invalid key name {name:?}")));
        }
        let key = VerifyingKey::from_bytes(public).map_err(|e| NoteError::Key(e.to_string()))?;
        Ok(NoteVerifier {
            name: name.to_string(),
            id: key_id(name, public),
            key,
        })
    }

    /// Parse a verifier key string `NAME+HEXID+BASE64(0x01 || public key)`.
    pub fn parse(vkey: &str) -> Result<NoteVerifier, NoteError> {
        let vkey = vkey.trim();
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::Key("verifier key is not NAME+ID+KEY".into()));
        };
        let id =
            u32::from_str_radix(id, 16).map_err(|_| NoteError::Key("key ID is not hex".into()))?;
        let raw = B64
            .decode(key)
            .map_err(|e| NoteError::Key(format!("key is not base64: {e}")))?;
        if raw.len() != 33 || raw[0] != 0x01 {
            return Err(NoteError::Key(
                "only Ed25519 (type 0x01, 32-byte) verifier keys are supported".into(),
            ));
        }
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&raw[1..]);
        let v = NoteVerifier::new(name, &pk)?;
        if v.id != id {
            return Err(NoteError::Key(format!(
                "key ID {id:08x} does not match the key ({:08x})",
                v.id
            )));
        }
        Ok(v)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The verifier key string.
    pub fn vkey(&self) -> String {
        let mut raw = vec![0x01];
        raw.extend_from_slice(&self.key.to_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }

    /// Whether `sig` is this key's Ed25519 signature (strict) over `text`.
    pub fn verify(&self, text: &[u8], sig: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        self.key
            .verify_strict(text, &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.vkey())
    }
}

/// Signs checkpoints and other notes. A KMS / HSM backend implements this without touching any
/// format.
pub trait NoteSigner: Send + Sync {
    /// The key name (the log's origin).
    fn name(&self) -> &str;
    /// The key ID.
    fn key_id(&self) -> u32;
    /// Sign `msg` (the note text) with pure Ed25519.
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], NoteError>;
    /// The matching verifier.
    fn verifier(&self) -> NoteVerifier;
}

/// An Ed25519 signer holding its 32-byte seed in memory.
pub struct Ed25519Signer {
    name: String,
    key: SigningKey,
    id: u32,
}

impl Ed25519Signer {
    /// From a key name and a 32-byte seed.
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Ed25519Signer, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::Key(format!("invalid key name {name:?}")));
        }
        let key = SigningKey::from_bytes(seed);
        let id = key_id(name, &key.verifying_key().to_bytes());
        Ok(Ed25519Signer {
            name: name.to_string(),
            key,
            id,
        })
    }

    /// A fresh key from the operating system's random source.
    pub fn generate(name: &str) -> Result<(Ed25519Signer, [u8; 32]), NoteError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| NoteError::Key(format!("no randomness: {e}")))?;
        Ok((Ed25519Signer::new(name, &seed)?, seed))
    }
}

impl NoteSigner for Ed25519Signer {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], NoteError> {
        Ok(self.key.sign(msg).to_bytes())
    }
    fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }
}

/// Sign a note text (which must end with a newline) with each signer.
pub fn sign_note(text: &str, signers: &[&dyn NoteSigner]) -> Result<String, NoteError> {
    if !text.ends_with('\n') || text.ends_with("\n\n") {
        return Err(malformed("note text must end with exactly one newline"));
    }
    let mut out = String::with_capacity(text.len() + 128);
    out.push_str(text);
    out.push('\n');
    for s in signers {
        let sig = s.sign(text.as_bytes())?;
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&s.key_id().to_be_bytes());
        raw.extend_from_slice(&sig);
        out.push_str(SIG_PREFIX);
        out.push_str(s.name());
        out.push(' ');
        out.push_str(&B64.encode(raw));
        out.push('\n');
    }
    Ok(out)
}

/// Verify a note against trusted keys. Signatures by unknown keys are ignored; a signature by a
/// known key that fails is an error; at least one known key must have signed. Returns the
/// names of the keys that verified.
pub fn verify_note(note: &Note, trusted: &[NoteVerifier]) -> Result<Vec<String>, NoteError> {
    let mut ok = Vec::new();
    for s in &note.signatures {
        if let Some(v) = trusted
            .iter()
            .find(|v| v.name == s.name && v.id == s.key_id)
        {
            if !v.verify(note.text.as_bytes(), &s.sig) {
                return Err(NoteError::BadSignature(format!(
                    "signature by {} ({:08x}) does not verify",
                    s.name, s.key_id
                )));
            }
            ok.push(s.name.clone());
        }
    }
    if ok.is_empty() {
        let names: Vec<String> = note
            .signatures
            .iter()
            .map(|s| format!("{}+{:08x}", s.name, s.key_id))
            .collect();
        return Err(NoteError::Untrusted(format!(
            "signed by {}",
            names.join(", ")
        )));
    }
    Ok(ok)
}

/// A tlog-checkpoint body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log origin.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// Extension lines (trailwarden writes none).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text (with final newline).
    pub fn text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parse a checkpoint note text strictly.
    pub fn parse_text(text: &str) -> Result<Checkpoint, NoteError> {
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| malformed("checkpoint text must end with a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(malformed("checkpoint needs origin, size and root lines"));
        }
        if lines.iter().any(|l| l.is_empty()) {
            return Err(malformed("empty line in checkpoint body"));
        }
        let size_s = lines[1];
        if !size_s.bytes().all(|c| c.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(malformed(format!(
                "tree size {size_s:?} is not a decimal without leading zeros"
            )));
        }
        let size: u64 = size_s
            .parse()
            .map_err(|_| malformed("tree size out of range"))?;
        if lines[2].len() != 44 {
            return Err(malformed("root hash is not 44 base64 characters"));
        }
        let root_raw = B64
            .decode(lines[2])
            .map_err(|e| malformed(format!("root hash is not base64: {e}")))?;
        let root: Hash = root_raw
            .try_into()
            .map_err(|_| malformed("root hash is not 32 bytes"))?;
        Ok(Checkpoint {
            origin: lines[0].to_string(),
            size,
            root,
            extensions: lines[3..].iter().map(|s| s.to_string()).collect(),
        })
    }
}

/// A checkpoint whose signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The body.
    pub checkpoint: Checkpoint,
    /// The complete note text as signed (body, blank line, signatures).
    pub note: String,
}

/// Parse and verify a signed checkpoint note for `origin` against trusted keys.
pub fn open_checkpoint(
    note_text: &str,
    origin: Option<&str>,
    trusted: &[NoteVerifier],
) -> Result<SignedCheckpoint, NoteError> {
    let note = parse_note(note_text)?;
    let cp = Checkpoint::parse_text(&note.text)?;
    if let Some(o) = origin {
        if cp.origin != o {
            return Err(NoteError::Untrusted(format!(
                "checkpoint is for origin {:?}, expected {o:?}",
                cp.origin
            )));
        }
    }
    verify_note(&note, trusted)?;
    Ok(SignedCheckpoint {
        checkpoint: cp,
        note: note_text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the ledger design (a throwaway key): our verifier must accept it, and the
    /// key ID must come out as the vkey says.
    #[test]
    fn design_example_checkpoint_verifies() {
        let vkey = "audit.example.com/c/6f1c2d9e/k8s-audit+109face7+ARl/ayPhbIUyxqvIOPrNXqeJvgx2spIDNAOb+os9No1h";
        let note = "audit.example.com/c/6f1c2d9e/k8s-audit\n7\n3bib5AOAnjJXUNPSY814kpwpQreUKjS3fhIslZSnTIw=\n\n\u{2014} audit.example.com/c/6f1c2d9e/k8s-audit EJ+s56zNslIKx8jY/PQtosCaiiay3Hj0rvx7K4MDzq9Lkxz2aHrqVnbgd40yV0s5Rj7xsU32F2U6n+z418hEl5M2rQs=\n";
        let v = NoteVerifier::parse(vkey).unwrap();
        assert_eq!(v.id(), 0x109face7);
        assert_eq!(v.vkey(), vkey);
        let cp =
            open_checkpoint(note, Some("audit.example.com/c/6f1c2d9e/k8s-audit"), &[v]).unwrap();
        assert_eq!(cp.checkpoint.size, 7);
        // root(7) of the RFC 6962 test tree
        assert_eq!(
            hex::encode(cp.checkpoint.root),
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"
        );
    }

    #[test]
    fn sign_and_verify_roundtrip_and_tampering() {
        let (s, _) = Ed25519Signer::generate("example.com/log").unwrap();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 12,
            root: [7u8; 32],
            extensions: vec![],
        };
        let note = sign_note(&cp.text(), &[&s]).unwrap();
        let v = s.verifier();
        assert_eq!(NoteVerifier::parse(&v.vkey()).unwrap(), v);
        assert!(open_checkpoint(&note, Some("example.com/log"), std::slice::from_ref(&v)).is_ok());
        // change one character of the root line
        let bad = note.replacen("BwcH", "BwcI", 1);
        assert!(matches!(
            open_checkpoint(&bad, None, std::slice::from_ref(&v)),
            Err(NoteError::BadSignature(_))
        ));
        // corrupt the signature
        let sig_at = note.rfind(' ').unwrap() + 5;
        let mut b = note.clone().into_bytes();
        b[sig_at] = if b[sig_at] == b'A' { b'B' } else { b'A' };
        assert!(open_checkpoint(
            &String::from_utf8(b).unwrap(),
            None,
            std::slice::from_ref(&v)
        )
        .is_err());
        // a signature from an unknown key is ignored
        let (other, _) = Ed25519Signer::generate("witness.example").unwrap();
        let two = sign_note(&cp.text(), &[&s, &other]).unwrap();
        assert!(open_checkpoint(&two, None, std::slice::from_ref(&v)).is_ok());
        // the co-signer's key verifies the same note
        assert!(open_checkpoint(&two, None, &[other.verifier()]).is_ok());
        // only unknown keys: rejected
        let only_other = sign_note(&cp.text(), &[&other]).unwrap();
        assert!(matches!(
            open_checkpoint(&only_other, None, std::slice::from_ref(&v)),
            Err(NoteError::Untrusted(_))
        ));
        // no blank separator / control char / leading zero
        assert!(matches!(
            open_checkpoint(
                &note.replacen("\n\n", "\n", 1),
                None,
                std::slice::from_ref(&v)
            ),
            Err(NoteError::Malformed(_))
        ));
        assert!(matches!(
            open_checkpoint(
                &note.replacen("log\n", "log\u{7}\n", 1),
                None,
                std::slice::from_ref(&v)
            ),
            Err(NoteError::Malformed(_))
        ));
        let lz = Checkpoint::parse_text(
            "example.com/log\n012\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
        );
        assert!(matches!(lz, Err(NoteError::Malformed(_))));
    }
}
