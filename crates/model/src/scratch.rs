//! Scratch directories for tests, benchmarks and tools: `<temp>/<prefix>-<pid>-<name>`.
//!
//! Test binaries run one process per test and leave their directories behind for whoever
//! looks into a failure; left alone, a machine running the suite many times fills its disk
//! (2.4 GB in `/tmp` after two days of CI runs here). So the first call for a prefix in a
//! process removes that prefix's directories whose process has ended and that nobody touched
//! for an hour: a failed run's files stay around to be looked at, and runs stop accumulating.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How long a finished process's directory is kept.
const KEEP: Duration = Duration::from_secs(3600);

/// `<temp>/<prefix>-<this process id>-<name>` (not created), after sweeping the prefix's
/// leftovers of ended processes once per process.
pub fn dir(prefix: &str, name: &str) -> PathBuf {
    static SWEPT: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = SWEPT
        .lock()
        .map(|mut s| s.insert(prefix.to_string()))
        .unwrap_or(false);
    if first {
        sweep(&std::env::temp_dir(), prefix, SystemTime::now());
    }
    std::env::temp_dir().join(format!("{prefix}-{}-{name}", std::process::id()))
}

/// Remove `<prefix>-<pid>…` entries of `root` whose process is not running (per `/proc`; where
/// there is no `/proc`, only entries older than a day) and that were modified more than
/// [`KEEP`] before `now`. Returns how many were removed.
pub fn sweep(root: &Path, prefix: &str, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let proc = Path::new("/proc/self").exists();
    let keep = if proc { KEEP } else { KEEP * 24 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_prefix('-'))
        else {
            continue;
        };
        let digits = rest.split(['-', '.']).next().unwrap_or_default();
        let Ok(pid) = digits.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || (proc && Path::new(&format!("/proc/{pid}")).exists()) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > keep);
        if !old {
            continue;
        }
        let path = e.path();
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_old_leftovers_of_ended_processes_only() {
        let root = std::env::temp_dir().join(format!("tw-scratch-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // pid 0 is never a user process: "ended"; our own pid: running
        let ended = root.join("tw-x-0-a");
        let ours = root.join(format!("tw-x-{}-b", std::process::id()));
        let other_prefix = root.join("tw-xy-0-c");
        let not_a_pid = root.join("tw-x-data");
        for d in [&ended, &ours, &other_prefix, &not_a_pid] {
            std::fs::create_dir_all(d.join("inside")).unwrap();
        }
        // just made: kept (a failed run's files stay to be looked at)
        assert_eq!(sweep(&root, "tw-x", SystemTime::now()), 0);
        let later = SystemTime::now() + KEEP * 25;
        assert_eq!(sweep(&root, "tw-x", later), 1);
        assert!(!ended.exists());
        assert!(ours.exists() && other_prefix.exists() && not_a_pid.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
