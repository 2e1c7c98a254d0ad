//! `describe`, `completions` and `man`: what packagers and documentation need from the binary.

use clap::CommandFactory;

use super::write_stdout;
use crate::cli::{Cli, CompletionsArgs, DescribeArgs};
use crate::error::Error;
use crate::manifest;

pub fn describe(a: DescribeArgs) -> Result<i32, Error> {
    if a.markdown {
        let m = manifest::load().map_err(Error::Runtime)?;
        write_stdout(&manifest::markdown(&m))?;
    } else {
        write_stdout(manifest::PLUGIN_YAML)?;
    }
    Ok(0)
}

pub fn completions(a: CompletionsArgs) -> Result<i32, Error> {
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "maas-usage", &mut buf);
    write_stdout(&String::from_utf8_lossy(&buf))?;
    Ok(0)
}

pub fn man() -> Result<i32, Error> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(|e| Error::Runtime(format!("cannot render the man page: {e}")))?;
    write_stdout(&String::from_utf8_lossy(&buf))?;
    Ok(0)
}
