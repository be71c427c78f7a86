//! Replacing a file so that a crash or a power loss leaves either the old
//! file or the new one, never an empty or half-written one: the bytes go to
//! a temporary sibling, which is flushed to the disk (fsync) before it is
//! renamed over the target, and the directory is flushed after the rename
//! (so the rename itself is on the disk). A failure at any step removes the
//! temporary file and leaves the target as it was. A process killed in the
//! middle cannot clean up: the next write to the same path removes the
//! temporaries of writers that no longer run (their pid is in the name).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary sibling `path` is written to before the rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    PathBuf::from(tmp)
}

/// Writes `bytes` to `path` durably (see the module docs).
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, |f| f.write_all(bytes))
}

/// [`write`] with the file's contents written by `fill` (tests inject failures here).
pub fn write_with(path: &Path, fill: impl FnOnce(&mut File) -> std::io::Result<()>) -> std::io::Result<()> {
    remove_stale_temporaries(path);
    let tmp = temp_path(path);
    let written = (|| {
        let mut file = File::create(&tmp)?;
        fill(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp); // best effort: the write's error is what matters
        return Err(e);
    }
    // the rename is durable once the directory is
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Removes `path`'s temporaries left by writers that were killed (whose
/// process no longer exists); a writer still running keeps its file. Best
/// effort: a directory that cannot be listed is left as it is.
fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let prefix = format!("{}.tmp", name.to_string_lossy());
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid > 0 && !process_exists(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a process with this pid exists (signal 0 checks without sending).
fn process_exists(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for the process; no signal is sent
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bank.safetensors");
        write(&p, b"old").unwrap();
        write(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    /// Issue 13: a failed save left its temporary file behind (a full disk
    /// fails in the middle of the write; a path that is a directory, at the
    /// rename). The old file stays as it was.
    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bank.safetensors");
        write(&p, b"old").unwrap();
        let e = write_with(&p, |f| {
            f.write_all(b"half of the new ")?;
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
        })
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["bank.safetensors"]);

        let target_is_a_dir = dir.path().join("sub");
        std::fs::create_dir(&target_is_a_dir).unwrap();
        std::fs::write(target_is_a_dir.join("x"), b"").unwrap();
        assert!(write(&target_is_a_dir, b"new").is_err());
        assert!(!temp_path(&target_is_a_dir).exists());
        // a missing directory fails at once
        assert!(write(&dir.path().join("missing/bank"), b"new").is_err());
    }

    /// A writer killed in the middle leaves `<name>.tmp<pid>`; the next write
    /// removes it once that process is gone, and leaves a running writer's
    /// temporary (and other files) alone.
    #[test]
    fn the_next_write_removes_temporaries_of_killed_writers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bank.safetensors");
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let stale = dir.path().join(format!("bank.safetensors.tmp{gone_pid}"));
        let running = dir.path().join("bank.safetensors.tmp1"); // pid 1 always runs
        let other = dir.path().join("other.tmp77");
        for f in [&stale, &running, &other] {
            std::fs::write(f, b"half").unwrap();
        }
        write(&p, b"new").unwrap();
        assert!(!stale.exists(), "the killed writer's temporary was kept");
        assert!(running.exists() && other.exists());
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }
}
