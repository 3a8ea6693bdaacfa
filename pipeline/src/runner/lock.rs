//! One writer per output folder: `DIR/.kiln.lock`, held with an exclusive OS advisory lock for as
//! long as a run (or `kiln sort`) uses the folder.
//!
//! Two runs appending to one journal would each render every line, leaving two records per id.
//! The lock is `flock`-style (std's [`File::try_lock`]): the OS drops it when the process ends,
//! however it ends (`kill -9` included), so a stale lock never blocks a rerun. The file holds the
//! holder's pid, for the second run's message; it is left in place after the run, because
//! removing it could let two runs lock two different files of the same name.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the output directory.
pub const LOCK_FILE: &str = ".kiln.lock";

/// Why the folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{dir} is in use by another kiln process ({}); wait for it to end or choose another --out",
        holder_text(*.pid)
    )]
    Held {
        /// The output directory.
        dir: PathBuf,
        /// The holder's pid, from the lock file (`None` when it has not written it yet).
        pid: Option<u32>,
    },
    /// The lock file cannot be opened or locked.
    #[error("cannot lock the output directory {dir} ({LOCK_FILE}): {source}")]
    Io {
        /// The output directory.
        dir: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn holder_text(pid: Option<u32>) -> String {
    pid.map_or_else(|| "pid not known yet".to_owned(), |pid| format!("pid {pid}"))
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct OutDirLock {
    _file: File,
}

impl OutDirLock {
    /// Locks `dir` (which must exist) for this process, writing its pid into the lock file;
    /// fails at once, naming the holder's pid, when another process holds it.
    pub fn acquire(dir: &Path) -> Result<OutDirLock, LockError> {
        let io = |source| LockError::Io { dir: dir.to_owned(), source };
        let path = dir.join(LOCK_FILE);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held { dir: dir.to_owned(), pid: read_pid(&mut file) });
            }
            Err(TryLockError::Error(source)) => return Err(io(source)),
        }
        file.set_len(0).map_err(io)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(OutDirLock { _file: file })
    }
}

/// The pid the holder wrote (reading is not blocked by the advisory lock).
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_folder_fails_naming_the_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = OutDirLock::acquire(dir.path()).unwrap();
        let pid = std::process::id();
        assert_eq!(std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(), format!("{pid}\n"));

        let err = OutDirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::Held { pid: Some(p), .. } if p == pid), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&format!("pid {pid}")), "{message}");
        assert!(message.contains(&dir.path().display().to_string()), "{message}");

        drop(first);
        let _again = OutDirLock::acquire(dir.path()).expect("released on drop");
    }

    #[test]
    fn a_stale_pid_is_replaced_and_a_missing_folder_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "999999999 and more\n").unwrap();
        let _lock = OutDirLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));

        let err = OutDirLock::acquire(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("absent"), "{err}");
    }
}
