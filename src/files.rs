//! Writing files so that a reader never sees half of one: the one atomic-write function.
//!
//! A temporary file with a random name is created beside the target with `O_EXCL` (never
//! through a symlink someone planted), written, optionally synced, and renamed over the target.
//! A target that exists and is not a regular file (`/dev/stdout`, a FIFO, `/dev/full`) is
//! written in place instead: renaming over a device would replace the device.

use std::io::Write;
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
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
            f.write_all(bytes)?;
            return f.flush();
        }
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".maas-usage-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.flush()?;
    if durability == Durability::Synced {
        tmp.as_file().sync_all()?;
    }
    #[cfg(unix)]
    if access == Access::Shared {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0o644);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
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
}
