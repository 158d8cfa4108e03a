//! The lock on an experiment's directory (and on each run in it).

use crate::error::input_error;
use anyhow::{Context as _, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock that keeps two runners from writing one experiment directory: an OS file lock
/// (`flock`) on `.runner.lock`, taken atomically, held as long as the process lives and
/// released by the kernel when it dies (so a killed process leaves no stale lock). Linux
/// NFSv4, Lustre and GPFS (with flock support) hold it across hosts. The file also says
/// who holds it (process id and host), for the refusal message.
pub struct ExperimentLock {
    path: PathBuf,
    /// Whether the file goes when the lock does (not a shared lock: others may hold it).
    remove: bool,
    // Declared after `path`: dropped (unlocked) after the file is removed in `drop`.
    _file: fs::File,
    /// A shard's hold on the experiment's lock, taken before its own.
    _experiment: Option<Box<ExperimentLock>>,
}

const LOCK: &str = ".runner.lock";

impl ExperimentLock {
    /// Creates `dir` if needed and locks it; refuses when a live process holds the lock
    /// (another runner of the whole experiment, or shards of one).
    pub fn acquire(dir: &Path) -> Result<ExperimentLock> {
        Self::acquire_named(dir, LOCK, false)
    }

    /// Locks `dir` for shard `index` of `count`: shards write different runs, so each
    /// has its own lock and they may run at once (two copies of one shard may not). Each
    /// also holds the experiment's lock shared: a writer of the whole experiment (`runner
    /// run` of another config with the same name) is refused while shards run, and a shard
    /// while it runs.
    pub fn acquire_shard(dir: &Path, index: u64, count: u64) -> Result<ExperimentLock> {
        let shared = Self::acquire_named(dir, LOCK, true)?;
        let mut own = Self::acquire_named(dir, &format!(".runner.shard-{index}-of-{count}.lock"), false)?;
        own._experiment = Some(Box::new(shared));
        Ok(own)
    }

    /// Whether a live process holds a shard's lock of `dir` (other than the caller's own).
    pub fn shards_running(dir: &Path, except: &str) -> bool {
        fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(".runner.shard-") && name != except && Self::lock_holder(&e.path()).is_some()
        })
    }

    /// Locks run `run` of the experiment in `dir`: one writer per run directory, whether a
    /// local sweep, `run-one` (a Slurm task, perhaps requeued while the old one lingers) or
    /// a resumed run. The lock file sits beside the run (`.runner.run-<run>.lock`), since a
    /// restarted run's directory is replaced.
    pub fn acquire_run(dir: &Path, run: &str) -> Result<ExperimentLock> {
        Self::acquire_named(dir, &format!(".runner.run-{run}.lock"), false)
    }

    /// Locks `dir/name`, exclusively, or `shared` with other shared holders (who write
    /// nothing in it, and leave it in place).
    fn acquire_named(dir: &Path, name: &str, shared: bool) -> Result<ExperimentLock> {
        use std::fs::TryLockError;
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(name);
        let mut busy = 0;
        for _ in 0..200 {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot create the lock {}", path.display()))?;
            let taken = if shared { file.try_lock_shared() } else { file.try_lock() };
            match taken {
                Ok(()) => {
                    // The holder we raced may have removed the file before unlocking it:
                    // only a lock on the file the path names now counts.
                    if !same_file(&file, &path) {
                        continue;
                    }
                    if shared {
                        return Ok(ExperimentLock { path, remove: false, _file: file, _experiment: None });
                    }
                    // A full disk shows here first (the lock is a run's first file):
                    // the error names the file, as every write's does.
                    let written = file
                        .set_len(0)
                        .and_then(|()| writeln!(file, "{} {}", std::process::id(), super::host_name()))
                        .and_then(|()| file.sync_all());
                    if let Err(e) = written {
                        let _ = fs::remove_file(&path);
                        return Err(e).with_context(|| format!("cannot write {}", path.display()));
                    }
                    return Ok(ExperimentLock { path, remove: true, _file: file, _experiment: None });
                }
                // A reader's brief look (`holder`) or a holder on its way out: try again
                // for a moment before refusing.
                Err(TryLockError::WouldBlock) if busy < 10 => {
                    busy += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut who = fs::read_to_string(&path).unwrap_or_default();
                    // Shards hold the experiment's lock shared and write their ids in their own.
                    if who.trim().is_empty() && name == LOCK {
                        who = fs::read_dir(dir)
                            .into_iter()
                            .flatten()
                            .flatten()
                            .filter(|e| e.file_name().to_string_lossy().starts_with(".runner.shard-"))
                            .find(|e| Self::lock_holder(&e.path()).is_some())
                            .and_then(|e| fs::read_to_string(e.path()).ok())
                            .map(|t| format!("{} (a shard of a sweep)", t.trim()))
                            .unwrap_or_default();
                    }
                    let mut parts = who.trim().splitn(2, char::is_whitespace);
                    let pid = parts.next().filter(|p| !p.is_empty()).unwrap_or("?");
                    let host = parts.next().map_or(String::new(), |h| format!(" on {}", h.trim()));
                    let what = match name.strip_prefix(".runner.run-").and_then(|n| n.strip_suffix(".lock")) {
                        Some(run) => format!("run {run} of {}", dir.display()),
                        None => dir.display().to_string(),
                    };
                    return Err(input_error(format!(
                        "{what} is being written by another runner (process {pid}{host}); wait for it to finish, or stop it. \
                         The lock is the operating system's: it is released the moment that process ends, and on a \
                         shared file system when its host's lease runs out, so a lock left by a dead process or host \
                         never needs breaking by hand"
                    )));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot lock {} (the file system must support file locks, as local disks, NFSv4 and Lustre do)",
                            path.display()
                        )
                    });
                }
            }
        }
        Err(input_error(format!("cannot lock {}: other runners keep taking it", dir.display())))
    }

    /// The process id of a live process training run `run` of `dir` (holding its lock).
    pub fn run_holder(dir: &Path, run: &str) -> Option<u32> {
        Self::lock_holder(&dir.join(format!(".runner.run-{run}.lock")))
    }

    /// The process id of a live process holding a lock of `dir` (the experiment's or a
    /// shard's), if any.
    pub fn holder(dir: &Path) -> Option<u32> {
        if let Some(pid) = Self::lock_holder(&dir.join(LOCK)) {
            return Some(pid);
        }
        fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".runner.") && name.ends_with(".lock") { Self::lock_holder(&e.path()) } else { None }
        })
    }

    /// The process id written in the lock at `path` when some process holds it (0 when
    /// it has not written its id yet); `None` when nobody does. (On a file system without
    /// locks nobody can hold one: `acquire` refuses there.)
    fn lock_holder(path: &Path) -> Option<u32> {
        let file = fs::File::open(path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let text = fs::read_to_string(path).unwrap_or_default();
                Some(text.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(0))
            }
            Err(std::fs::TryLockError::Error(_)) => None,
        }
    }
}

/// Whether the open `file` is the one `path` names now.
fn same_file(file: &fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Drop for ExperimentLock {
    fn drop(&mut self) {
        if self.remove {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_refuses_a_second_holder_and_a_dead_ones_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = ExperimentLock::acquire(dir.path()).unwrap();
        assert_eq!(ExperimentLock::holder(dir.path()), Some(std::process::id()));
        assert!(ExperimentLock::acquire(dir.path()).is_err());
        drop(lock);
        assert!(!dir.path().join(LOCK).exists());
        // A lock file whose process is gone (killed: the kernel released its lock).
        fs::write(dir.path().join(LOCK), "4294967 elsewhere\n").unwrap();
        assert_eq!(ExperimentLock::holder(dir.path()), None);
        let _again = ExperimentLock::acquire(dir.path()).unwrap();
        assert_eq!(ExperimentLock::holder(dir.path()), Some(std::process::id()));
    }

    #[test]
    fn shards_lock_apart_and_count_as_holders() {
        let dir = tempfile::tempdir().unwrap();
        let a = ExperimentLock::acquire_shard(dir.path(), 0, 2).unwrap();
        let _b = ExperimentLock::acquire_shard(dir.path(), 1, 2).unwrap();
        assert!(ExperimentLock::acquire_shard(dir.path(), 0, 2).is_err());
        assert_eq!(ExperimentLock::holder(dir.path()), Some(std::process::id()));
        drop(a);
        let _again = ExperimentLock::acquire_shard(dir.path(), 0, 2).unwrap();
    }
}
