//! Linux audit daemon logs.
//!
//! An auditd *event* is every record that shares `msg=audit(SECONDS.MILLIS:SERIAL)`; records of
//! one event are not always adjacent or in order, so an [`Assembler`] keeps events open until an
//! `EOE` record, until a window of later records has gone by, or until the input ends.
//!
//! Handled: the `node=` prefix; raw, interpreted and ENRICHED formats (interpreted fields after a
//! 0x1D byte); hex-encoded values (`exe`, `proctitle` with NUL-separated argv, `cmd`, TTY `data`,
//! EXECVE arguments including split `aN[i]` pieces); user-space records with a nested
//! `msg='…'`; the old `old auid=… new auid=…` keys; AUOMS records (`audit(…)` without `msg=`).

use crate::error::FormatError;
use std::collections::{BTreeMap, VecDeque};
use trailwarden_model::{Event, Format, Location, OutcomeResult, Timestamp};

/// The `auid` / `ses` value meaning "unset".
const UNSET: &str = "4294967295";

/// One field of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Field name as written (`exe`, `a0`, `old_auid`, or upper-case for ENRICHED values).
    pub key: String,
    /// The value, hex-decoded where auditd encoded it, quotes removed.
    pub value: String,
    /// Whether the value was quoted in the log.
    pub quoted: bool,
}

/// One parsed auditd record (one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// `node=` prefix, if any.
    pub node: Option<String>,
    /// Record type (`SYSCALL`, `USER_LOGIN`, …).
    pub record_type: String,
    /// Event time.
    pub time: Timestamp,
    /// The timestamp text as written (part of the event key).
    pub time_text: String,
    /// Event serial number.
    pub serial: u64,
    /// Fields in order, with nested user-space `msg='…'` fields flattened in.
    pub fields: Vec<Field>,
}

impl AuditRecord {
    /// The first value of a field.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.key == key)
            .map(|f| f.value.as_str())
    }
}

/// Whether a line looks like an auditd record.
pub fn looks_like_record(line: &[u8]) -> bool {
    let l = trim_start(line);
    if !(l.starts_with(b"type=") || l.starts_with(b"node=")) {
        return false;
    }
    memchr::memmem::find(l, b"audit(").is_some()
        || headerless_type(&String::from_utf8_lossy(l)).is_some()
}

/// The type of a record the kernel wrote without a timestamp header, e.g.
/// `type=UNKNOWN[1329] msg=?` (auditd's rendering of a record type it does not know).
fn headerless_type(line: &str) -> Option<(Option<String>, String, String)> {
    let mut rest = line.trim_start();
    let mut node = None;
    if let Some(r) = rest.strip_prefix("node=") {
        let end = r.find(' ')?;
        node = Some(r[..end].to_string());
        rest = r[end..].trim_start();
    }
    let r = rest.strip_prefix("type=")?;
    let end = r.find(' ').unwrap_or(r.len());
    let t = &r[..end];
    let body = r[end..].trim();
    if t.is_empty()
        || !t.bytes().all(|c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_' || c == b'[' || c == b']'
        })
    {
        return None;
    }
    if body.contains("audit(") {
        return None;
    }
    Some((node, t.to_string(), body.to_string()))
}

fn trim_start(b: &[u8]) -> &[u8] {
    let i = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[i..]
}

/// Fields whose values auditd hex-encodes when they contain spaces or special characters.
fn is_encodable(key: &str, record_type: &str) -> bool {
    matches!(
        key,
        "proctitle"
            | "exe"
            | "cmd"
            | "comm"
            | "cwd"
            | "name"
            | "path"
            | "data"
            | "acct"
            | "sw"
            | "vm"
            | "key"
            | "key_r"
            | "dir"
            | "file"
            | "ocomm"
            | "watch"
            | "grp"
            | "new_group"
            | "old_group"
            | "root_dir"
            | "unit"
            | "id"
    ) || (record_type == "EXECVE" && is_execve_arg(key))
}

fn is_execve_arg(key: &str) -> bool {
    let Some(rest) = key.strip_prefix('a') else {
        return false;
    };
    let digits = rest.split('[').next().unwrap_or("");
    !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) && !rest.ends_with("_len")
}

fn is_upper_hex(s: &str) -> bool {
    s.len() >= 2
        && s.len().is_multiple_of(2)
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

/// Decoded bytes as text: NUL separators become spaces, 0x01 (key separator) becomes `,`,
/// trailing NULs dropped, invalid UTF-8 replaced.
fn hex_text(key: &str, bytes: Vec<u8>) -> String {
    let mut b = bytes;
    while b.last() == Some(&0) {
        b.pop();
    }
    for c in b.iter_mut() {
        if *c == 0 {
            *c = b' ';
        } else if *c == 1 && key.starts_with("key") {
            *c = b',';
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn looks_like_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'[' || c == b']')
        && !k.starts_with('-')
}

/// Split a record body into fields. `msg='…'` values are parsed recursively into the same list.
fn tokenize(body: &str, record_type: &str, out: &mut Vec<Field>, enriched: bool) {
    let b = body.as_bytes();
    let mut i = 0;
    let mut prefix: Option<&str> = None;
    while i < b.len() {
        // The ENRICHED separator switches to interpreted (upper-case) fields.
        if b[i] == 0x1d {
            tokenize(&body[i + 1..], record_type, out, true);
            return;
        }
        if b[i] == b' ' || b[i] == b'\t' {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' && b[i] != 0x1d {
            i += 1;
        }
        let word = &body[start..i];
        if i >= b.len() || b[i] != b'=' || !looks_like_key(word) {
            // A bare word: `old` / `new` prefix the next key; anything else continues the
            // previous unquoted value (AUOMS writes `proctitle=` values with spaces unquoted).
            let mut end = i;
            if i < b.len() && b[i] == b'=' {
                while end < b.len() && b[end] != b' ' && b[end] != 0x1d {
                    end += 1;
                }
                i = end;
            }
            let word = &body[start..end];
            if word == "old" || word == "new" {
                prefix = Some(word);
            } else if let Some(last) = out.last_mut().filter(|f| !f.quoted && !f.key.is_empty()) {
                last.value.push(' ');
                last.value.push_str(word);
            }
            continue;
        }
        let key = match prefix.take() {
            Some(p) => format!("{p}_{word}"),
            None => word.to_string(),
        };
        i += 1; // '='
        let (value, quoted) = if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
            // The closing quote is the first one followed by a separator or the end: auditd
            // hex-encodes values with quotes, but AUOMS writes `cmdline="bash -c "…""` as is.
            let q = b[i];
            let vstart = i + 1;
            let mut vend = b.len();
            let mut j = vstart;
            while let Some(p) = memchr::memchr(q, &b[j..]) {
                let at = j + p;
                if at + 1 >= b.len() || matches!(b[at + 1], b' ' | b'\t' | 0x1d) {
                    vend = at;
                    break;
                }
                j = at + 1;
            }
            i = (vend + 1).min(b.len());
            (&body[vstart..vend], true)
        } else {
            let vstart = i;
            while i < b.len() && b[i] != b' ' && b[i] != 0x1d {
                i += 1;
            }
            (&body[vstart..i], false)
        };
        if key == "msg" && quoted {
            // user-space record: `msg='op=… acct="root" exe="/usr/bin/sudo" res=success'`
            tokenize(value, record_type, out, enriched);
            continue;
        }
        let value = if !quoted && is_encodable(&key, record_type) && is_upper_hex(value) {
            match decode_hex(value) {
                Some(bytes) => hex_text(&key, bytes),
                None => value.to_string(),
            }
        } else {
            value.to_string()
        };
        let _ = enriched; // ENRICHED keys are already upper-case; kept as written.
        out.push(Field { key, value, quoted });
    }
}

/// Parse one record line.
pub fn parse_record(line: &str) -> Result<AuditRecord, FormatError> {
    let mut rest = line.trim_start();
    let mut node = None;
    if let Some(r) = rest.strip_prefix("node=") {
        let end = r
            .find(' ')
            .ok_or_else(|| FormatError::invalid("auditd: `node=` without a record after it"))?;
        node = Some(r[..end].to_string());
        rest = r[end..].trim_start();
    }
    let r = rest
        .strip_prefix("type=")
        .ok_or_else(|| FormatError::invalid("auditd: record does not start with `type=`"))?;
    let end = r
        .find(' ')
        .ok_or_else(|| FormatError::invalid("auditd: record has a type but no `msg=audit(…)`"))?;
    let record_type = r[..end].to_string();
    let r = r[end..].trim_start();
    let r = r.strip_prefix("msg=").unwrap_or(r);
    let r = r.strip_prefix("audit(").ok_or_else(|| {
        FormatError::invalid(format!(
            "auditd {record_type}: expected `msg=audit(SECONDS:SERIAL)`"
        ))
    })?;
    let close = r.find(')').ok_or_else(|| {
        FormatError::invalid(format!("auditd {record_type}: unterminated `audit(`"))
    })?;
    let stamp = &r[..close];
    let (ts, serial) = stamp.split_once(':').ok_or_else(|| {
        FormatError::invalid(format!(
            "auditd {record_type}: `audit({stamp})` has no serial"
        ))
    })?;
    let time = Timestamp::parse_unix(ts)
        .map_err(|e| FormatError::invalid(format!("auditd {record_type}: {e}")))?;
    let serial: u64 = serial.parse().map_err(|_| {
        FormatError::invalid(format!(
            "auditd {record_type}: serial {serial:?} is not a number"
        ))
    })?;
    let body = r[close + 1..].strip_prefix(':').unwrap_or(&r[close + 1..]);
    let mut fields = Vec::new();
    tokenize(body, &record_type, &mut fields, false);
    if node.is_none() {
        // AUOMS carries node= as a field
        node = fields
            .iter()
            .find(|f| f.key == "node")
            .map(|f| f.value.clone());
    }
    Ok(AuditRecord {
        node,
        record_type,
        time,
        time_text: ts.to_string(),
        serial,
        fields,
    })
}

fn syscall_name(arch: Option<&str>, nr: &str) -> Option<&'static str> {
    let n: u32 = nr.parse().ok()?;
    let aarch64 = matches!(arch, Some("c00000b7") | Some("aarch64"));
    let table: &[(u32, &str)] = if aarch64 {
        &[
            (34, "mkdirat"),
            (35, "unlinkat"),
            (38, "renameat"),
            (40, "mount"),
            (53, "fchmodat"),
            (54, "fchownat"),
            (56, "openat"),
            (105, "init_module"),
            (106, "delete_module"),
            (112, "clock_settime"),
            (117, "ptrace"),
            (129, "kill"),
            (146, "setuid"),
            (144, "setgid"),
            (170, "settimeofday"),
            (171, "adjtimex"),
            (198, "socket"),
            (200, "bind"),
            (203, "connect"),
            (220, "clone"),
            (221, "execve"),
            (266, "clock_adjtime"),
            (273, "finit_module"),
            (276, "renameat2"),
            (281, "execveat"),
        ]
    } else {
        &[
            (0, "read"),
            (1, "write"),
            (2, "open"),
            (3, "close"),
            (4, "stat"),
            (9, "mmap"),
            (10, "mprotect"),
            (21, "access"),
            (41, "socket"),
            (42, "connect"),
            (43, "accept"),
            (44, "sendto"),
            (49, "bind"),
            (56, "clone"),
            (57, "fork"),
            (58, "vfork"),
            (59, "execve"),
            (62, "kill"),
            (76, "truncate"),
            (77, "ftruncate"),
            (82, "rename"),
            (83, "mkdir"),
            (84, "rmdir"),
            (85, "creat"),
            (86, "link"),
            (87, "unlink"),
            (88, "symlink"),
            (90, "chmod"),
            (91, "fchmod"),
            (92, "chown"),
            (93, "fchown"),
            (94, "lchown"),
            (101, "ptrace"),
            (105, "setuid"),
            (106, "setgid"),
            (113, "setreuid"),
            (114, "setregid"),
            (117, "setresuid"),
            (119, "setresgid"),
            (155, "pivot_root"),
            (159, "adjtimex"),
            (161, "chroot"),
            (164, "settimeofday"),
            (165, "mount"),
            (166, "umount2"),
            (169, "reboot"),
            (170, "sethostname"),
            (171, "setdomainname"),
            (175, "init_module"),
            (176, "delete_module"),
            (188, "setxattr"),
            (189, "lsetxattr"),
            (190, "fsetxattr"),
            (197, "removexattr"),
            (227, "clock_settime"),
            (257, "openat"),
            (258, "mkdirat"),
            (260, "fchownat"),
            (263, "unlinkat"),
            (264, "renameat"),
            (265, "linkat"),
            (266, "symlinkat"),
            (268, "fchmodat"),
            (272, "unshare"),
            (298, "perf_event_open"),
            (305, "clock_adjtime"),
            (308, "setns"),
            (313, "finit_module"),
            (316, "renameat2"),
            (321, "bpf"),
            (322, "execveat"),
            (435, "clone3"),
        ]
    };
    table.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}

fn errno_name(code: i64) -> Option<&'static str> {
    Some(match code {
        -1 => "EPERM",
        -2 => "ENOENT",
        -11 => "EAGAIN",
        -13 => "EACCES",
        -17 => "EEXIST",
        -22 => "EINVAL",
        -95 => "EOPNOTSUPP",
        -111 => "ECONNREFUSED",
        -115 => "EINPROGRESS",
        _ => return None,
    })
}

/// Record types that only annotate another record of the same event.
const AUXILIARY: &[&str] = &[
    "PROCTITLE",
    "PATH",
    "CWD",
    "EXECVE",
    "SOCKADDR",
    "EOE",
    "BPRM_FCAPS",
    "CAPSET",
    "MMAP",
    "FD_PAIR",
    "OBJ_PID",
    "NETFILTER_CFG",
    "SECCOMP",
    "IPC",
    "MQ_OPEN",
    "SOCKETCALL",
    "KERN_MODULE",
    "TTY",
];

/// Build the normalized event from the records of one auditd event.
pub fn build_event(records: &[AuditRecord]) -> Event {
    let mut ev = Event::new(Format::Auditd);
    let Some(first) = records.first() else {
        return ev;
    };
    let primary = records
        .iter()
        .find(|r| r.record_type == "SYSCALL")
        .or_else(|| {
            records
                .iter()
                .find(|r| !AUXILIARY.contains(&r.record_type.as_str()))
        })
        .or_else(|| records.iter().find(|r| r.record_type == "EXECVE"))
        .unwrap_or(first);
    ev.category = Some(primary.record_type.clone());
    ev.time = Some(first.time);
    ev.audit_id = Some(first.serial.to_string());
    ev.origin.host = first.node.clone();
    let types: Vec<&str> = records
        .iter()
        .map(|r| r.record_type.as_str())
        .filter(|t| *t != "EOE")
        .collect();
    ev.attrs.insert("record_types".into(), types.join(","));

    // Merge fields: primary record first, then the others; first value of a key wins.
    let mut f: BTreeMap<&str, &str> = BTreeMap::new();
    for r in std::iter::once(primary).chain(records.iter().filter(|r| !std::ptr::eq(*r, primary))) {
        if r.record_type == "PATH" || r.record_type == "EXECVE" {
            continue;
        }
        for fl in &r.fields {
            f.entry(fl.key.as_str()).or_insert(fl.value.as_str());
        }
    }
    let get = |k: &str| {
        f.get(k)
            .copied()
            .filter(|v| !v.is_empty() && *v != "?" && *v != "(null)" && *v != "(none)")
    };

    // Identity: the login uid (auid) identifies the person; fall back to uid for daemons.
    let auid = get("auid").filter(|a| *a != UNSET && *a != "-1" && *a != "unset");
    let interpreted_auid = get("AUID").filter(|a| *a != "unset");
    let numeric = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    ev.user.identity.name = interpreted_auid
        .map(str::to_string)
        .or_else(|| auid.filter(|a| !numeric(a)).map(str::to_string))
        .or_else(|| get("acct").map(str::to_string))
        .or_else(|| {
            get("audit_user")
                .filter(|u| *u != "unset")
                .map(str::to_string)
        })
        .or_else(|| get("UID").map(str::to_string))
        .or_else(|| get("uid").filter(|u| !numeric(u)).map(str::to_string))
        .or_else(|| get("user").filter(|u| !numeric(u)).map(str::to_string));
    ev.user.identity.uid = auid
        .filter(|a| numeric(a))
        .or_else(|| get("uid").filter(|u| numeric(u)))
        .map(str::to_string);
    if auid.is_none() && get("auid").is_some() {
        ev.attrs.insert("auid_unset".into(), "true".into());
    }

    // Action: the syscall, else the user-space operation, else the record type.
    let arch = get("arch");
    ev.action = if primary.record_type == "SYSCALL" || primary.record_type.ends_with("EXECVE") {
        get("SYSCALL").map(str::to_string).or_else(|| {
            get("syscall").map(|s| {
                syscall_name(arch, s)
                    .map(str::to_string)
                    .unwrap_or_else(|| s.to_string())
            })
        })
    } else {
        None
    }
    .or_else(|| get("op").map(str::to_string))
    .or_else(|| Some(primary.record_type.to_ascii_lowercase()));

    // Outcome.
    let success = get("success");
    let res = get("res");
    ev.outcome.result = match (success, res) {
        (Some("yes"), _) => OutcomeResult::Success,
        (Some("no"), _) => OutcomeResult::Failure,
        (_, Some("success") | Some("1")) => OutcomeResult::Success,
        (_, Some("failed") | Some("0") | Some("failure")) => OutcomeResult::Failure,
        _ => OutcomeResult::Unknown,
    };
    if let Some(exit) = get("exit").and_then(|e| e.parse::<i64>().ok()) {
        ev.outcome.code = Some(exit);
        if ev.outcome.result == OutcomeResult::Failure {
            ev.outcome.reason = errno_name(exit).map(str::to_string);
        }
    }
    if ev.outcome.reason.is_none() && ev.outcome.result == OutcomeResult::Failure {
        ev.outcome.reason = res.map(str::to_string);
    }

    // Origin.
    if let Some(addr) = get("addr").or_else(|| get("laddr")) {
        ev.origin.ips = Some(vec![addr.to_string()]);
        ev.origin.trusted_ip = Some(addr.to_string());
    }
    if ev.origin.host.is_none() {
        ev.origin.host = get("hostname").map(str::to_string);
    }

    // Resource: the file a PATH record names, else the executable.
    let paths: Vec<&AuditRecord> = records.iter().filter(|r| r.record_type == "PATH").collect();
    let target = paths
        .iter()
        .find(|p| matches!(p.get("nametype"), Some("CREATE") | Some("DELETE")))
        .or_else(|| {
            paths
                .iter()
                .find(|p| p.get("nametype") == Some("NORMAL") && p.get("item") != Some("0"))
        })
        .or_else(|| paths.first());
    if paths
        .iter()
        .any(|p| matches!(p.get("nametype"), Some("CREATE") | Some("DELETE")))
    {
        ev.attrs.insert("paths_created".into(), "true".into());
    }
    if let Some(p) = target
        .and_then(|p| p.get("name"))
        .filter(|n| *n != "(null)")
    {
        ev.resource.resource = Some("file".into());
        ev.resource.name = Some(p.to_string());
        if paths.len() > 1 {
            let all: Vec<&str> = paths.iter().filter_map(|p| p.get("name")).collect();
            ev.attrs.insert("paths".into(), all.join(","));
        }
    } else if let Some(name) = get("name").filter(|_| primary.record_type.starts_with("AUOMS")) {
        // AUOMS folds the PATH record into the event record.
        ev.resource.resource = Some("file".into());
        ev.resource.name = Some(name.to_string());
    } else if let Some(exe) = get("exe") {
        ev.resource.resource = Some("process".into());
        ev.resource.name = Some(exe.to_string());
    }
    // EXECVE argv (long arguments arrive as aN[0], aN[1]… pieces).
    if let Some(ex) = records.iter().find(|r| r.record_type == "EXECVE") {
        let argc: usize = ex.get("argc").and_then(|a| a.parse().ok()).unwrap_or(0);
        let mut argv = Vec::new();
        for n in 0..argc.max(
            ex.fields
                .iter()
                .filter(|f| is_execve_arg(&f.key) && !f.key.contains('['))
                .count(),
        ) {
            let key = format!("a{n}");
            if let Some(v) = ex.get(&key) {
                argv.push(v.to_string());
                continue;
            }
            let prefix = format!("a{n}[");
            let mut pieces: Vec<(usize, &str)> = ex
                .fields
                .iter()
                .filter_map(|f| {
                    f.key
                        .strip_prefix(&prefix)
                        .and_then(|r| r.strip_suffix(']'))
                        .and_then(|i| i.parse().ok())
                        .map(|i: usize| (i, f.value.as_str()))
                })
                .collect();
            if pieces.is_empty() {
                break;
            }
            pieces.sort_by_key(|p| p.0);
            argv.push(pieces.iter().map(|p| p.1).collect::<String>());
        }
        if !argv.is_empty() {
            ev.attrs.insert("argv".into(), argv.join(" "));
        }
    }
    for key in [
        "auid",
        "uid",
        "euid",
        "gid",
        "ses",
        "tty",
        "pid",
        "ppid",
        "comm",
        "exe",
        "key",
        "success",
        "exit",
        "terminal",
        "hostname",
        "unit",
        "op",
        "cwd",
        "proctitle",
        "res",
        "acct",
        "cmd",
        "arch",
        "cmdline",
    ] {
        if let Some(v) = get(key) {
            ev.attrs.insert(key.to_string(), v.to_string());
        }
    }
    if let Some(s) = get("SYSCALL").or_else(|| get("syscall")) {
        ev.attrs.insert("syscall".into(), s.to_string());
    }
    ev
}

/// An event under assembly.
struct Pending {
    node: Option<String>,
    time_text: String,
    serial: u64,
    location: Location,
    raw: Vec<u8>,
    records: Vec<AuditRecord>,
    age: usize,
}

/// A finished event: its raw bytes (the record lines joined by `\n`, in the order received),
/// where its first line was, and the normalized event.
#[derive(Debug)]
pub struct Assembled {
    /// The raw bytes.
    pub raw: Vec<u8>,
    /// Location of the first record line.
    pub location: Location,
    /// The normalized event.
    pub event: Event,
}

/// Groups record lines into events (see the module documentation).
pub struct Assembler {
    window: usize,
    pending: VecDeque<Pending>,
}

impl Assembler {
    /// An assembler that closes an event once `window` later records have gone by without
    /// adding to it.
    pub fn new(window: usize) -> Assembler {
        Assembler {
            window: window.max(1),
            pending: VecDeque::new(),
        }
    }

    /// Number of events still open.
    pub fn open_events(&self) -> usize {
        self.pending.len()
    }

    /// Add one record line. Returns the events this line completed. An error means this line
    /// is not a valid record (the caller quarantines it); open events are unaffected.
    pub fn push(&mut self, line: &[u8], location: Location) -> Result<Vec<Assembled>, FormatError> {
        let text = String::from_utf8_lossy(line);
        let rec = match parse_record(&text) {
            Ok(r) => r,
            Err(e) => {
                // A record without a timestamp header belongs to no event: keep it on its own.
                let Some((node, record_type, body)) = headerless_type(&text) else {
                    return Err(e);
                };
                let mut ev = Event::new(Format::Auditd);
                ev.action = Some(record_type.to_ascii_lowercase());
                ev.category = Some(record_type.clone());
                ev.origin.host = node;
                ev.attrs.insert("record_types".into(), record_type);
                ev.attrs.insert("no_header".into(), "true".into());
                if !body.is_empty() {
                    ev.message = Some(body);
                }
                return Ok(vec![Assembled {
                    raw: line.to_vec(),
                    location,
                    event: ev,
                }]);
            }
        };
        let mut done = Vec::new();
        let pos = self.pending.iter().position(|p| {
            p.serial == rec.serial && p.time_text == rec.time_text && p.node == rec.node
        });
        let is_eoe = rec.record_type == "EOE";
        let idx = match pos {
            Some(i) => {
                let p = &mut self.pending[i];
                p.raw.push(b'\n');
                p.raw.extend_from_slice(line);
                p.records.push(rec);
                p.age = 0;
                i
            }
            None => {
                self.pending.push_back(Pending {
                    node: rec.node.clone(),
                    time_text: rec.time_text.clone(),
                    serial: rec.serial,
                    location,
                    raw: line.to_vec(),
                    records: vec![rec],
                    age: 0,
                });
                self.pending.len() - 1
            }
        };
        for (i, p) in self.pending.iter_mut().enumerate() {
            if i != idx {
                p.age += 1;
            }
        }
        if is_eoe {
            if let Some(p) = self.pending.remove(idx) {
                done.push(finish(p));
            }
        }
        while self.pending.front().is_some_and(|p| p.age >= self.window) {
            if let Some(p) = self.pending.pop_front() {
                done.push(finish(p));
            }
        }
        Ok(done)
    }

    /// Close every open event (end of input).
    pub fn flush(&mut self) -> Vec<Assembled> {
        self.pending.drain(..).map(finish).collect()
    }
}

fn finish(p: Pending) -> Assembled {
    let event = build_event(&p.records);
    Assembled {
        raw: p.raw,
        location: p.location,
        event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_space_record_with_nested_msg() {
        let r = parse_record(r#"node=h1 type=USER_CMD msg=audit(1489519256.192:19600329): user pid=4151 uid=497 auid=700 ses=11988 msg='cwd="/" cmd=2F7573722F62696E2F6964202D75 terminal=? res=success'"#).unwrap();
        assert_eq!(r.node.as_deref(), Some("h1"));
        assert_eq!(r.get("cmd"), Some("/usr/bin/id -u"));
        assert_eq!(r.get("res"), Some("success"));
        assert_eq!(r.get("pid"), Some("4151"));
        let ev = build_event(&[r]);
        assert_eq!(ev.user.identity.uid.as_deref(), Some("700"));
        assert_eq!(ev.outcome.result, OutcomeResult::Success);
        assert_eq!(ev.category.as_deref(), Some("USER_CMD"));
    }

    #[test]
    fn enriched_and_proctitle() {
        let line = "type=SYSCALL msg=audit(1643150874.899:880): arch=c000003e syscall=305 success=yes exit=5 auid=4294967295 uid=0 comm=\"chronyd\" exe=\"/usr/sbin/chronyd\" key=(null)\x1dARCH=x86_64 SYSCALL=clock_adjtime AUID=\"unset\" UID=\"root\"";
        let r = parse_record(line).unwrap();
        assert_eq!(r.get("SYSCALL"), Some("clock_adjtime"));
        assert_eq!(r.get("UID"), Some("root"));
        let p = parse_record("type=PROCTITLE msg=audit(1643150874.899:880): proctitle=2F7573722F7362696E2F6368726F6E7964002D460031").unwrap();
        assert_eq!(p.get("proctitle"), Some("/usr/sbin/chronyd -F 1"));
        let ev = build_event(&[r, p]);
        assert_eq!(ev.action.as_deref(), Some("clock_adjtime"));
        assert_eq!(ev.user.identity.name.as_deref(), Some("root"));
        assert_eq!(ev.user.identity.uid.as_deref(), Some("0"));
    }

    #[test]
    fn old_new_keys() {
        let r = parse_record("type=LOGIN msg=audit(1492037291.036:61): pid=1 uid=0 old auid=700 new auid=701 old ses=1 new ses=2").unwrap();
        assert_eq!(r.get("old_auid"), Some("700"));
        assert_eq!(r.get("new_auid"), Some("701"));
        assert_eq!(r.get("new_ses"), Some("2"));
    }

    #[test]
    fn out_of_order_records_assemble() {
        let mut a = Assembler::new(8);
        let lines = [
            "type=PATH msg=audit(1.000:7): item=0 name=\"/etc/shadow\" nametype=NORMAL",
            "type=SYSCALL msg=audit(1.000:8): arch=c000003e syscall=59 success=yes exit=0 auid=1000 uid=0",
            "type=SYSCALL msg=audit(1.000:7): arch=c000003e syscall=2 success=no exit=-13 auid=1000 uid=1000",
            "type=EOE msg=audit(1.000:7): ",
        ];
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            out.extend(
                a.push(
                    l.as_bytes(),
                    Location {
                        line: i as u64 + 1,
                        offset: 0,
                    },
                )
                .unwrap(),
            );
        }
        assert_eq!(out.len(), 1);
        let ev = &out[0].event;
        assert_eq!(ev.audit_id.as_deref(), Some("7"));
        assert_eq!(ev.action.as_deref(), Some("open"));
        assert_eq!(ev.outcome.reason.as_deref(), Some("EACCES"));
        assert_eq!(ev.resource.name.as_deref(), Some("/etc/shadow"));
        assert_eq!(out[0].location.line, 1);
        let rest = a.flush();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].event.action.as_deref(), Some("execve"));
    }

    #[test]
    fn split_execve_args() {
        let r = parse_record(
            "type=EXECVE msg=audit(1.0:9): argc=2 a0=\"ls\" a1_len=8 a1[0]=2D2D636F a1[1]=6C6F7221",
        )
        .unwrap();
        let ev = build_event(&[r]);
        assert_eq!(ev.attrs["argv"], "ls --color!");
    }

    #[test]
    fn headerless_unknown_record_is_kept() {
        let mut a = Assembler::new(4);
        let out = a
            .push(b"type=UNKNOWN[1329] msg=?", Location::default())
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].event.category.as_deref(), Some("UNKNOWN[1329]"));
        assert!(out[0].event.time.is_none());
        assert!(looks_like_record(b"type=UNKNOWN[1329] msg=?"));
        assert!(!looks_like_record(b"type=lower msg=?"));
    }

    #[test]
    fn auoms_nested_quotes() {
        let r = parse_record(r#"type=AUOMS_EXECVE audit(1652292621.986:84138): node=U1 syscall=execve success=yes exit=0 user=tomcat uid=1001 auid=4294967295 cmdline="bash -c "{echo,YmFz}|{base64,-d}|{bash,-i}"" name="/bin/bash" redactors="#).unwrap();
        assert_eq!(
            r.get("cmdline"),
            Some(r#"bash -c "{echo,YmFz}|{base64,-d}|{bash,-i}""#)
        );
        assert_eq!(r.node.as_deref(), Some("U1"));
        let ev = build_event(&[r]);
        assert_eq!(ev.user.identity.name.as_deref(), Some("tomcat"));
        assert_eq!(ev.resource.name.as_deref(), Some("/bin/bash"));
        assert_eq!(ev.action.as_deref(), Some("execve"));
    }

    #[test]
    fn bad_records() {
        assert!(parse_record("type=SYSCALL hello").is_err());
        assert!(parse_record("type=SYSCALL msg=audit(abc:1): x=1").is_err());
        assert!(parse_record("hello").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "(node=[a-z]{1,5} )?type=[A-Z_]{1,10} (msg=)?audit\\([0-9.]{1,14}:[0-9]{1,5}\\):[ -~\\x1d]{0,80}") {
            if let Ok(r) = parse_record(&s) {
                let _ = build_event(&[r]);
            }
        }
    }
}
