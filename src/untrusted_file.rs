//! Reading a file whose path comes from outside the node (a run-time
//! parameter any peer on the ROS graph can set): only a regular file, only
//! up to a size cap, and never blocking on the way. `/dev/zero` would be read
//! until memory runs out, a FIFO would block the reader forever, a directory
//! or a device is no configuration file; each is refused with a reason that
//! names what the path is, never what it contains.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum UntrustedFileError {
    #[error("cannot open: {0}")]
    Io(#[from] std::io::Error),
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("has {len} bytes, more than the {max} accepted")]
    TooLarge { len: u64, max: u64 },
    #[error("is not UTF-8 text")]
    NotText,
}

/// What a non-regular file is, in words.
fn kind(m: &Metadata) -> Option<&'static str> {
    let t = m.file_type();
    match () {
        _ if t.is_file() => None,
        _ if t.is_dir() => Some("a directory"),
        _ if t.is_fifo() => Some("a FIFO"),
        _ if t.is_char_device() => Some("a character device"),
        _ if t.is_block_device() => Some("a block device"),
        _ if t.is_socket() => Some("a socket"),
        _ => Some("not a file"),
    }
}

fn check(m: &Metadata, max_bytes: u64) -> Result<(), UntrustedFileError> {
    if let Some(k) = kind(m) {
        return Err(UntrustedFileError::NotRegular(k));
    }
    if m.len() > max_bytes {
        return Err(UntrustedFileError::TooLarge { len: m.len(), max: max_bytes });
    }
    Ok(())
}

/// The bytes of the regular file at `path` (symbolic links followed), at
/// most `max_bytes` of them. The path is checked before it is opened (a
/// device is never opened), and the opened file again (the path may have
/// changed in between); the open does not block (O_NONBLOCK), and a file
/// that grows past the cap while read is refused too.
pub fn read(path: &Path, max_bytes: u64) -> Result<Vec<u8>, UntrustedFileError> {
    check(&std::fs::metadata(path)?, max_bytes)?;
    let file = File::options().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    check(&file.metadata()?, max_bytes)?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(UntrustedFileError::TooLarge { len: bytes.len() as u64, max: max_bytes });
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_text(path: &Path, max_bytes: u64) -> Result<String, UntrustedFileError> {
    String::from_utf8(read(path, max_bytes)?).map_err(|_| UntrustedFileError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "hello").unwrap();
        assert_eq!(read_text(&p, 5).unwrap(), "hello");
        assert!(matches!(read_text(&p, 4), Err(UntrustedFileError::TooLarge { len: 5, max: 4 })));
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_text(&p, 4), Err(UntrustedFileError::NotText)));
        assert!(matches!(read(&dir.path().join("missing"), 4), Err(UntrustedFileError::Io(_))));
    }

    /// Issue 13: `/dev/zero` was read until memory ran out, a FIFO blocked
    /// the reader forever.
    #[test]
    fn devices_fifos_and_directories_are_refused_at_once() {
        let t = Instant::now();
        let e = read(Path::new("/dev/zero"), 1 << 16).unwrap_err();
        assert_eq!(e.to_string(), "is a character device, not a regular file");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path(), 1 << 16).unwrap_err().to_string(), "is a directory, not a regular file");
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        assert_eq!(read(&fifo, 1 << 16).unwrap_err().to_string(), "is a FIFO, not a regular file");
        // a link to a device is the device
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(matches!(read(&link, 1 << 16), Err(UntrustedFileError::NotRegular("a character device"))));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
}
