//! Files the program reads and writes: small input files read bounded (regular files only,
//! size-capped: credentials, CA bundles, specs), and the one atomic write (whole, or piece by
//! piece: [`Replacement`]), so that a reader never sees half a file.
//!
//! For a write, a temporary file with a random name is created beside the target with `O_EXCL` (never
//! through a symlink someone planted), written, optionally synced, and renamed over the target.
//! A target that exists and is not a regular file (`/dev/stdout`, a FIFO, `/dev/full`) is
//! written in place instead: renaming over a device would replace the device.

use std::io::{Read, Write};
use std::path::Path;

/// How hard a write tries to survive a power cut (a crash of the process is survived either
/// way: the rename is atomic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The data may still be in the page cache when the call returns.
    Cheap,
    /// The data reach the disk before the rename (checkpoints: losing one re-sends buckets).
    Synced,
}

/// Who may read the file written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Owner only (0600): state.
    Private,
    /// The existing file's mode, else 0644 less the umask's usual bits: outputs other programs
    /// read (node_exporter's textfile collector).
    Shared,
}

/// Replaces `path` with `bytes`, atomically.
pub fn write_atomically(
    path: &Path,
    bytes: &[u8],
    durability: Durability,
    access: Access,
) -> std::io::Result<()> {
    let mut r = Replacement::create(path)?;
    r.write_all(bytes)?;
    r.finish(durability, access)
}

/// A file written piece by piece and put in place whole at the end ([`Replacement::finish`]),
/// as [`write_atomically`] does in one go: an output written as it is produced. Dropped
/// unfinished, its temporary file is removed and the target left as it was.
pub struct Replacement {
    path: std::path::PathBuf,
    to: To,
}

enum To {
    /// Beside the target, renamed over it at the end.
    Temporary(tempfile::NamedTempFile),
    /// The target itself: it exists and is not a regular file.
    InPlace(std::fs::File),
}

impl Replacement {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if let Ok(meta) = std::fs::metadata(path) {
            if !meta.is_file() {
                let f = std::fs::OpenOptions::new().write(true).open(path)?;
                return Ok(Replacement {
                    path: path.to_path_buf(),
                    to: To::InPlace(f),
                });
            }
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".maas-usage-")
            .suffix(".tmp")
            .tempfile_in(dir)?;
        Ok(Replacement {
            path: path.to_path_buf(),
            to: To::Temporary(tmp),
        })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.to {
            To::Temporary(t) => t.write_all(bytes),
            To::InPlace(f) => f.write_all(bytes),
        }
    }

    /// Puts the file in place: flushed, synced when `durability` asks, with the mode `access`
    /// says, renamed over the target.
    pub fn finish(self, durability: Durability, access: Access) -> std::io::Result<()> {
        let mut tmp = match self.to {
            To::InPlace(mut f) => return f.flush(),
            To::Temporary(t) => t,
        };
        tmp.flush()?;
        if durability == Durability::Synced {
            tmp.as_file().sync_all()?;
        }
        #[cfg(unix)]
        if access == Access::Shared {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&self.path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0o644);
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    #[error("no such file")]
    NotFound,
    #[error("{0}")]
    Io(std::io::Error),
    #[error("not a regular file but {kind}")]
    NotRegular { kind: &'static str },
    #[error("larger than {cap} bytes")]
    TooLarge { cap: u64 },
}

impl From<std::io::Error> for ReadFileError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::NotFound {
            ReadFileError::NotFound
        } else {
            ReadFileError::Io(e)
        }
    }
}

/// What a file that is not a regular one is, for messages.
fn kind(t: std::fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if t.is_char_device() {
            return Some("a character device");
        }
        if t.is_block_device() {
            return Some("a block device");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    Some("something else")
}

/// The contents of the regular file at `path` (symlinks followed), at most `cap` bytes.
///
/// The type is checked before the file is opened, so a FIFO is never opened (opening one waits
/// for a writer), and again on the open file; the read stops after `cap + 1` bytes whatever the
/// metadata says (a file can grow, and /proc files claim to be empty).
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadFileError> {
    if let Some(kind) = kind(std::fs::metadata(path)?.file_type()) {
        return Err(ReadFileError::NotRegular { kind });
    }
    let file = std::fs::File::open(path)?;
    if let Some(kind) = kind(file.metadata()?.file_type()) {
        return Err(ReadFileError::NotRegular { kind });
    }
    let mut buf = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(ReadFileError::TooLarge { cap });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.prom");
        write_atomically(&p, b"one\n", Durability::Cheap, Access::Shared).unwrap();
        write_atomically(&p, b"two\n", Durability::Synced, Access::Shared).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn modes_private_and_shared() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let private = d.path().join("state.json");
        write_atomically(&private, b"{}", Durability::Cheap, Access::Private).unwrap();
        assert_eq!(mode(&private), 0o600);
        let shared = d.path().join("out.prom");
        write_atomically(&shared, b"x", Durability::Cheap, Access::Shared).unwrap();
        assert_eq!(mode(&shared), 0o644);
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&shared, b"y", Durability::Cheap, Access::Shared).unwrap();
        assert_eq!(mode(&shared), 0o640, "an existing file keeps its mode");
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let p = d.path().join("out");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_atomically(&p, b"new", Durability::Cheap, Access::Private).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
    }

    #[test]
    fn a_device_is_written_in_place_and_its_errors_are_errors() {
        let e = write_atomically(
            Path::new("/dev/full"),
            b"x",
            Durability::Cheap,
            Access::Shared,
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28), "ENOSPC: {e}");
        assert!(Path::new("/dev/full").exists());
    }

    /// A path in a temporary directory removed when the returned guard drops.
    fn temp(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(name);
        (d, p)
    }

    #[test]
    fn regular_files_are_read_up_to_the_cap() {
        let (_d, p) = temp("small");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_regular(&p, 5).unwrap(), b"12345");
        assert!(matches!(
            read_regular(&p, 4),
            Err(ReadFileError::TooLarge { cap: 4 })
        ));
        assert!(matches!(
            read_regular(&temp("missing").1, 5),
            Err(ReadFileError::NotFound)
        ));
    }

    #[test]
    fn anything_else_is_refused_before_reading() {
        let (_t, d) = temp("dir");
        let _ = std::fs::create_dir_all(&d);
        let e = read_regular(&d, 10).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file but a directory");
        #[cfg(unix)]
        {
            let e = read_regular(Path::new("/dev/zero"), 10).unwrap_err();
            assert_eq!(e.to_string(), "not a regular file but a character device");
        }
    }
}
