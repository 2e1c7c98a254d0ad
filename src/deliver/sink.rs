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

    /// Whether it writes to stdout (where output can go as it is produced).
    pub fn to_stdout(&self) -> bool {
        self.path.is_none()
    }

    /// Replaces the file whole (synced, readable by others: node_exporter reads it).
    pub fn write(&self, text: &str) -> Result<(), WriteError> {
        match &self.path {
            None => write_stdout(text),
            Some(p) => {
                files::write_atomically(p, text.as_bytes(), Durability::Synced, Access::Shared)
                    .map_err(|source| WriteError::Io {
                        target: p.display().to_string(),
                        source,
                    })
            }
        }
    }

    /// Appends whole lines (files read line by line, like the collector's otlpjsonfile).
    pub fn append(&self, text: &str) -> Result<(), WriteError> {
        match &self.path {
            None => write_stdout(text),
            Some(p) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .and_then(|mut f| {
                    f.write_all(text.as_bytes())?;
                    f.sync_data()
                })
                .map_err(|source| WriteError::Io {
                    target: p.display().to_string(),
                    source,
                }),
        }
    }
}
