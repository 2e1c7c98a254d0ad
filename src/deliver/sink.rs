//! Writing the output: stdout, or a file replaced atomically (a reader never sees half), or
//! appended to for line-by-line readers (the collector's otlpjsonfile receiver).

use std::io::Write;
use std::path::PathBuf;

use crate::files::{self, Access, Durability};

/// Why the output was not written: nothing counts as delivered that was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The reader went away (EPIPE): Telegraf stopped, or `| head`.
    #[error("stdout was closed before the output was written; nothing was delivered")]
    StdoutClosed,
    /// Stdout failed otherwise (a full disk behind a redirection, an I/O error).
    #[error("cannot write the output to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("cannot write the output to {target}: {source}")]
    Io {
        target: String,
        #[source]
        source: std::io::Error,
    },
}

/// Writes to stdout and flushes. A closed reader or a full disk is an error.
pub fn write_stdout(text: &str) -> Result<(), WriteError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => WriteError::StdoutClosed,
            _ => WriteError::Stdout(e),
        })
}

impl WriteError {
    /// Stdout could not be written: whoever reads it (Telegraf) gets nothing from now on.
    pub fn is_stdout(&self) -> bool {
        matches!(self, WriteError::StdoutClosed | WriteError::Stdout(_))
    }
}

/// An output being written: see [`Sink::stream`]. Dropped unfinished, a file is left as it was.
pub struct Stream {
    file: Option<(files::Replacement, PathBuf)>,
}

impl Stream {
    pub fn write(&mut self, text: &str) -> Result<(), WriteError> {
        match &mut self.file {
            None => write_stdout(text),
            Some((f, p)) => f.write_all(text.as_bytes()).map_err(|e| io_error(p, e)),
        }
    }

    /// Puts the output in place (a file synced and renamed over the target; stdout: nothing
    /// more to do).
    pub fn finish(self) -> Result<(), WriteError> {
        match self.file {
            None => Ok(()),
            Some((f, p)) => f
                .finish(Durability::Synced, Access::Shared)
                .map_err(|e| io_error(&p, e)),
        }
    }
}

/// Whether `f` is empty or its last byte ends a line.
fn ends_a_line(f: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if f.metadata()?.len() == 0 {
        return Ok(true);
    }
    let mut last = [0u8];
    f.seek(SeekFrom::End(-1))?;
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

fn io_error(p: &std::path::Path, source: std::io::Error) -> WriteError {
    WriteError::Io {
        target: p.display().to_string(),
        source,
    }
}

/// Where the metrics go: stdout (`None` or `-`), or a file.
pub struct Sink {
    path: Option<PathBuf>,
}

impl Sink {
    pub fn new(path: Option<PathBuf>) -> Self {
        Sink {
            path: path.filter(|p| p.as_os_str() != "-"),
        }
    }

    /// Replaces the file whole (synced, readable by others: node_exporter reads it).
    pub fn write(&self, text: &str) -> Result<(), WriteError> {
        match &self.path {
            None => write_stdout(text),
            Some(p) => {
                files::write_atomically(p, text.as_bytes(), Durability::Synced, Access::Shared)
                    .map_err(|e| io_error(p, e))
            }
        }
    }

    /// An output written as it is produced ([`Stream::write`]), in place at [`Stream::finish`]:
    /// stdout as it comes; a file replaced whole at the end, as [`Sink::write`] does.
    pub fn stream(&self) -> Result<Stream, WriteError> {
        Ok(Stream {
            file: match &self.path {
                None => None,
                Some(p) => Some((
                    files::Replacement::create(p).map_err(|e| io_error(p, e))?,
                    p.clone(),
                )),
            },
        })
    }

    /// Appends whole lines (files read line by line, like the collector's otlpjsonfile).
    pub fn append(&self, text: &str) -> Result<(), WriteError> {
        match &self.path {
            None => write_stdout(text),
            Some(p) => std::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(p)
                .and_then(|mut f| {
                    // A line cut short by an earlier failed write stays a line of its own:
                    // this one is not glued to it.
                    if !ends_a_line(&mut f)? {
                        f.write_all(b"\n")?;
                    }
                    f.write_all(text.as_bytes())?;
                    f.sync_data()
                })
                .map_err(|e| io_error(p, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_appended_line_is_never_glued_to_one_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let sink = Sink::new(Some(path.clone()));
        sink.append("{\"a\":1}\n").unwrap();
        // A write cut short (a full disk): half a line, no line break.
        std::fs::write(&path, "{\"a\":1}\n{\"b\":").unwrap();
        sink.append("{\"c\":3}\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":\n{\"c\":3}\n");
        sink.append("{\"d\":4}\n").unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .ends_with("{\"c\":3}\n{\"d\":4}\n"));
    }
}
