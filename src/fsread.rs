//! Reading small input files (credentials, CA bundle, spec): regular files only, size-capped.

use std::io::Read;
use std::path::Path;

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

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("maas-usage-fsread-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d.join(name)
    }

    #[test]
    fn regular_files_are_read_up_to_the_cap() {
        let p = temp("small");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_regular(&p, 5).unwrap(), b"12345");
        assert!(matches!(
            read_regular(&p, 4),
            Err(ReadFileError::TooLarge { cap: 4 })
        ));
        assert!(matches!(
            read_regular(&temp("missing"), 5),
            Err(ReadFileError::NotFound)
        ));
    }

    #[test]
    fn anything_else_is_refused_before_reading() {
        let d = temp("dir");
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
