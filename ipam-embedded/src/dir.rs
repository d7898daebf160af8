//! The data directory of an embedded store, held by one process at a time.
//!
//! A container runtime starts many Pods at once, and each CNI call is a process of its own.
//! Embedded databases take an exclusive lock on their file and fail at once when it is held,
//! so processes first queue on `DIR/lock` with `flock(2)`, waiting up to a bound; past it
//! they fail as busy ("try again later", CNI code 11). The kernel drops the lock when its
//! holder exits, however it exits, so `kill -9` never leaves a stale lock.
//!
//! ```
//! use std::time::Duration;
//! use ipam_embedded::DirLock;
//! let dir = tempfile::tempdir().unwrap();
//! let held = DirLock::acquire(dir.path(), Duration::from_secs(1)).unwrap();
//! assert!(DirLock::acquire(dir.path(), Duration::from_millis(50)).is_err());
//! drop(held);
//! assert!(DirLock::acquire(dir.path(), Duration::from_millis(50)).is_ok());
//! ```

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use ipam_core::StoreError;

/// The name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "lock";

/// Exclusive hold of a data directory; released on drop (or by the kernel on exit).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    dir: PathBuf,
}

impl DirLock {
    /// Creates `dir` (mode 0700) if needed, then waits up to `wait` for the exclusive lock
    /// on `dir/lock` (mode 0600).
    ///
    /// Errors: [`StoreError::Io`] when the directory or lock file cannot be made or opened
    /// (the message names the path), [`StoreError::Busy`] when others hold it past `wait`.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<DirLock, StoreError> {
        prepare_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = open_private(&path, false).map_err(|e| io_error("open lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => {
                return Ok(DirLock {
                    _file: file,
                    dir: dir.to_owned(),
                })
            }
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(io_error("lock", &path, e)),
        }
        // A blocking flock in a helper thread: the kernel wakes waiters as soon as the lock
        // is free, without polling. If the wait times out, the thread's late success sends
        // into a closed channel and the file (so the lock) is dropped at once.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let result = file.lock().map(|()| file);
            let _ = tx.send(result);
        });
        match rx.recv_timeout(wait) {
            Ok(Ok(file)) => Ok(DirLock {
                _file: file,
                dir: dir.to_owned(),
            }),
            Ok(Err(e)) => Err(io_error("lock", &path, e)),
            Err(_) => Err(StoreError::Busy {
                what: format!(
                    "{} is held by other processes; waited {} ms",
                    path.display(),
                    wait.as_millis()
                ),
            }),
        }
    }

    /// The directory held.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Creates `dir` and its parents if needed, with mode 0700 for the directories created;
/// refuses a path that exists but is not a directory.
pub fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io_error(
            "use data directory",
            dir,
            io::Error::new(
                io::ErrorKind::NotADirectory,
                "exists and is not a directory",
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error("create data directory", dir, e)),
        Err(e) => Err(io_error("use data directory", dir, e)),
    }
}

/// Opens (creating with mode 0600 if needed) a file readable and writable by its owner only.
/// An existing file keeps its mode unless it is wider, which is narrowed to 0600.
pub fn open_private(path: &Path, truncate: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Makes the entries of directory `dir` (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync directory", dir, e))
}

/// Makes a file, or a directory and everything in it, durable: every file's contents and
/// every directory's entries reach the disk.
pub fn sync_tree(path: &Path) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(path).map_err(|e| io_error("sync", path, e))?;
    if meta.is_dir() {
        let entries = fs::read_dir(path).map_err(|e| io_error("sync", path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("sync", path, e))?;
            sync_tree(&entry.path())?;
        }
        sync_dir(path)
    } else if meta.is_file() {
        File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_error("sync", path, e))
    } else {
        Ok(())
    }
}

/// Removes a file or a directory tree if it exists.
pub fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| io_error("remove", path, e))
}

/// A [`StoreError::Io`] naming what was done and the path.
pub fn io_error(what: &str, path: &Path, e: io::Error) -> StoreError {
    StoreError::Io {
        context: format!("{what} {}", path.display()),
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn directory_and_lock_file_are_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        let _held = DirLock::acquire(&dir, Duration::from_secs(1)).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_an_io_error() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        fs::write(&file, b"x").unwrap();
        let err = DirLock::acquire(&file, Duration::from_millis(10)).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
        assert!(err.to_string().contains("is not a directory"), "{err}");
    }

    #[test]
    fn a_waiter_gets_the_lock_when_the_holder_lets_go() {
        let root = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(root.path(), Duration::from_secs(1)).unwrap();
        let dir = root.path().to_owned();
        let waiter = std::thread::spawn(move || {
            let t = Instant::now();
            DirLock::acquire(&dir, Duration::from_secs(10)).map(|_| t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
        let waited = waiter.join().unwrap().unwrap();
        assert!(waited >= Duration::from_millis(90), "{waited:?}");
    }

    #[test]
    fn busy_past_the_wait() {
        let root = tempfile::tempdir().unwrap();
        let _held = DirLock::acquire(root.path(), Duration::from_secs(1)).unwrap();
        let err = DirLock::acquire(root.path(), Duration::from_millis(30)).unwrap_err();
        assert!(matches!(err, StoreError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("try again later"));
    }

    #[test]
    fn remove_if_present_takes_files_and_trees_and_ignores_absence() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        let tree = root.path().join("t");
        fs::write(&file, b"x").unwrap();
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/c"), b"x").unwrap();
        for p in [&file, &tree] {
            remove_if_present(p).unwrap();
            assert!(!p.exists());
            remove_if_present(p).unwrap();
        }
    }
}
