//! `describe`, `completions` and `man`: what packagers and documentation need from the binary.

use std::path::Path;

use clap::CommandFactory;

use super::error::{Error, Outcome};
use crate::cli::{Cli, CompletionsArgs, DescribeArgs, ManArgs};
use crate::deliver::sink::write_stdout;
use crate::manifest;

pub fn describe(a: DescribeArgs) -> Result<Outcome, Error> {
    if a.markdown {
        let m = manifest::load().map_err(|e| Error::System(e.to_string()))?;
        write_stdout(&manifest::markdown(&m))?;
    } else {
        write_stdout(manifest::PLUGIN_YAML)?;
    }
    Ok(Outcome::Done)
}

pub fn completions(a: CompletionsArgs) -> Result<Outcome, Error> {
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "maas-usage", &mut buf);
    write_stdout(&String::from_utf8_lossy(&buf))?;
    Ok(Outcome::Done)
}

fn render(cmd: clap::Command) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .map_err(|e| Error::System(format!("cannot render the man page: {e}")))?;
    Ok(buf)
}

/// The man page on stdout, or one page per command in a directory (`maas-usage.1`,
/// `maas-usage-run.1`, ...), as packages install them.
pub fn man(a: ManArgs) -> Result<Outcome, Error> {
    let cli = Cli::command();
    let Some(dir) = a.dir else {
        write_stdout(&String::from_utf8_lossy(&render(cli)?))?;
        return Ok(Outcome::Done);
    };
    let write = |name: &str, bytes: Vec<u8>| {
        let path = Path::new(&dir).join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| Error::System(format!("cannot write {}: {e}", path.display())))
    };
    write("maas-usage.1", render(cli.clone())?)?;
    for sub in cli.get_subcommands() {
        let name = format!("maas-usage-{}", sub.get_name());
        // Each page is titled with the full command, as `man maas-usage-run` expects.
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(name.clone());
        write(&format!("{name}.1"), render(page)?)?;
    }
    Ok(Outcome::Done)
}
