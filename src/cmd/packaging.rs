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
        let top = pages(cli).into_iter().next().map(|(_, page)| page);
        write_stdout(&String::from_utf8_lossy(&render(
            top.unwrap_or_else(Cli::command),
        )?))?;
        return Ok(Outcome::Done);
    };
    let write = |name: &str, bytes: Vec<u8>| {
        let path = Path::new(&dir).join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| Error::System(format!("cannot write {}: {e}", path.display())))
    };
    for (name, page) in pages(cli) {
        write(&format!("{name}.1"), render(page)?)?;
    }
    Ok(Outcome::Done)
}

/// One page per command and nested command (`maas-usage-state-reset`), each titled with the
/// full command as `man maas-usage-state-reset` expects. `help` gets no page and is left out of
/// every SEE ALSO: `--help` says the same.
fn pages(cli: clap::Command) -> Vec<(String, clap::Command)> {
    fn walk(cmd: clap::Command, name: String, out: &mut Vec<(String, clap::Command)>) {
        let cmd = cmd
            .disable_help_subcommand(true)
            .display_name(name.clone())
            .bin_name(name.clone());
        for sub in cmd.get_subcommands() {
            walk(sub.clone(), format!("{name}-{}", sub.get_name()), out);
        }
        out.push((name, cmd));
    }
    let mut out = Vec::new();
    walk(cli, "maas-usage".into(), &mut out);
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page another page refers to (SEE ALSO) is written, nested commands included.
    #[test]
    fn every_page_named_in_see_also_exists() {
        use std::collections::BTreeSet;
        let pages = pages(Cli::command());
        let names: BTreeSet<String> = pages.iter().map(|(n, _)| n.clone()).collect();
        assert!(names.contains("maas-usage-state-reset"), "{names:?}");
        for (name, page) in pages {
            let roff = String::from_utf8(render(page).unwrap())
                .unwrap()
                .replace("\\-", "-");
            for word in roff.split([' ', ',', '\n']) {
                if let Some(cited) = word
                    .strip_suffix("(1)")
                    .filter(|w| w.starts_with("maas-usage"))
                {
                    assert!(
                        names.contains(cited),
                        "{name} cites {cited}(1), not written"
                    );
                }
            }
        }
    }

    /// Every flag with a fixed set of values completes to those values, in every shell script.
    #[test]
    fn completions_list_the_values_of_every_enumerated_flag() {
        let cli = Cli::command();
        let script = |shell| {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "maas-usage", &mut buf);
            String::from_utf8(buf).unwrap()
        };
        let (bash, zsh, fish) = (
            script(clap_complete::Shell::Bash),
            script(clap_complete::Shell::Zsh),
            script(clap_complete::Shell::Fish),
        );
        let mut checked = 0;
        for sub in cli.get_subcommands() {
            for arg in sub
                .get_arguments()
                .filter(|a| a.get_action().takes_values())
            {
                let values: Vec<String> = arg
                    .get_possible_values()
                    .iter()
                    .filter(|v| !v.is_hide_set())
                    .map(|v| v.get_name().to_string())
                    .collect();
                let (Some(long), false) = (arg.get_long(), values.is_empty()) else {
                    continue;
                };
                if matches!(long, "help" | "version") {
                    continue;
                }
                let what = format!("{} --{long}", sub.get_name());
                assert!(
                    bash.contains(&format!("compgen -W \"{}\"", values.join(" "))),
                    "bash: {what}"
                );
                for v in &values {
                    assert!(zsh.contains(v.as_str()), "zsh: {what}: {v}");
                    assert!(fish.contains(v.as_str()), "fish: {what}: {v}");
                }
                checked += 1;
            }
        }
        // --format (run, query, validate, demo), --service-type, --infer-type, --range...
        assert!(checked >= 6, "only {checked} enumerated flags found");
    }
}
