//! Diagnostics on stderr. stdout belongs to metrics.
//!
//! Under Telegraf (`run`) every line starts with a level prefix (`E! `, `W! `, `I! `, `D! `) so
//! `log_stderr` files it at the right level; interactive commands say `error:`/`warning:`.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Telegraf,
}

static STYLE: AtomicU8 = AtomicU8::new(0);
static VERBOSE: AtomicU8 = AtomicU8::new(0);

pub fn set_style(style: Style) {
    STYLE.store(matches!(style, Style::Telegraf) as u8, Ordering::Relaxed);
}

pub fn style() -> Style {
    if STYLE.load(Ordering::Relaxed) == 1 {
        Style::Telegraf
    } else {
        Style::Plain
    }
}

pub fn set_verbose(on: bool) {
    VERBOSE.store(on as u8, Ordering::Relaxed);
}

pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed) == 1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

/// The prefix for a level in the current style.
pub fn prefix(level: Level) -> &'static str {
    match (style(), level) {
        (Style::Telegraf, Level::Error) => "E! ",
        (Style::Telegraf, Level::Warn) => "W! ",
        (Style::Telegraf, Level::Info) => "I! ",
        (Style::Telegraf, Level::Debug) => "D! ",
        (Style::Plain, Level::Error) => "error: ",
        (Style::Plain, Level::Warn) => "warning: ",
        (Style::Plain, Level::Info) => "",
        (Style::Plain, Level::Debug) => "debug: ",
    }
}

/// Writes one line per line of `msg` (a multi-line message keeps its level on every line).
pub fn emit(level: Level, msg: &str) {
    if level == Level::Debug && !verbose() {
        return;
    }
    let mut err = std::io::stderr().lock();
    for line in msg.lines() {
        // A closed stderr is nothing to die for.
        let _ = writeln!(err, "{}{}", prefix(level), line);
    }
}

pub fn error(msg: &str) {
    emit(Level::Error, msg)
}
pub fn warn(msg: &str) {
    emit(Level::Warn, msg)
}
pub fn info(msg: &str) {
    emit(Level::Info, msg)
}
pub fn debug(msg: &str) {
    emit(Level::Debug, msg)
}
