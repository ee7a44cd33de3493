//! One owner per run directory: a run holds an exclusive lock on `<run dir>/run.lock` from the
//! moment it looks at the directory until it ends, so that two runs (or a run and its
//! `--resume`) on the same `--out` cannot mix their files. A second process is refused (bad
//! input, exit 2) with the holder's process id, which the holder writes into the lock file.
//! The lock is advisory (`flock`): the kernel releases it when its holder exits, however it
//! exits, so a killed run never leaves a stale lock behind.

use sanity_rundir::error::{ExperimentError, Result};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The lock file's name in a run directory.
pub const RUN_LOCK: &str = "run.lock";

/// A held lock on a run directory; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Locks the existing directory `dir`, or says who holds it. Where the file system has no
    /// locks, `on_note` is told and the run goes on unlocked.
    pub fn acquire(dir: &Path, on_note: &mut dyn FnMut(String)) -> Result<Self> {
        let path = dir.join(RUN_LOCK);
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ExperimentError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {
                let mine = format!("pid {} on {}\n", std::process::id(), sanity_rundir::manifest::host_name());
                // The holder's id is for the refusal message only: a failure to write it is no
                // reason to stop.
                let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(mine.as_bytes()));
                Ok(Self { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() { "another process".to_string() } else { holder.to_string() };
                Err(ExperimentError::Output {
                    path: dir.display().to_string(),
                    message: format!(
                        "is in use by another sanity run ({holder}, lock {}); wait for it to end, or choose another --out",
                        path.display()
                    ),
                })
            }
            Err(TryLockError::Error(e)) => {
                on_note(format!("cannot lock {} ({e}); going on without the lock", path.display()));
                Ok(Self { _file: file })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holder_s_pid_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let first = RunLock::acquire(tmp.path(), &mut |m| panic!("{m}")).expect("first");
        let refused = RunLock::acquire(tmp.path(), &mut |m| panic!("{m}")).expect_err("held");
        assert!(refused.is_bad_input(), "{refused}");
        let message = refused.to_string();
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        assert!(message.contains("in use by another sanity run"), "{message}");
        drop(first);
        RunLock::acquire(tmp.path(), &mut |m| panic!("{m}")).expect("free again");
    }
}
