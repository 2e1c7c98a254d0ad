//! Diagnostics on stderr. stdout belongs to metrics.
//!
//! Under Telegraf (`run`) every line starts with a level prefix (`E! `, `W! `, `I! `, `D! `) so
//! `log_stderr` files it at the right level; interactive commands say `error:`/`warning:`. Every
//! message is escaped into one line here, so no text a server sent can forge a line.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::text;

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

/// The longest line written (escapes included); more is cut with `…`.
pub const LINE_MAX_CHARS: usize = 4096;

/// Writes `msg` as one line. Whatever it holds, server text included, goes through the one
/// sanitizer ([`text::one_line`]): a control character (a line break, a carriage return, an
/// escape sequence) or an invisible formatting character is escaped, so no message can start a
/// line of its own, forge another level's prefix or rewrite the terminal, and a line is capped.
/// A message meant as several lines is written with [`lines`].
pub fn emit(level: Level, msg: &str) {
    lines(level, [msg])
}

/// Writes each of `msgs` as one line, each with the level's prefix, as [`emit`] does.
pub fn lines<'a>(level: Level, msgs: impl IntoIterator<Item = &'a str>) {
    if level == Level::Debug && !verbose() {
        return;
    }
    let mut err = std::io::stderr().lock();
    for msg in msgs {
        // A closed stderr is nothing to die for.
        let _ = writeln!(
            err,
            "{}{}",
            prefix(level),
            text::one_line(msg, LINE_MAX_CHARS)
        );
    }
}

/// `log::error!("..", args)`: one line at [`Level::Error`], formatted as `format!` does.
macro_rules! error_line {
    ($($arg:tt)*) => {
        $crate::log::emit($crate::log::Level::Error, &format!($($arg)*))
    };
}
/// `log::warn!("..", args)`: one line at [`Level::Warn`].
macro_rules! warn_line {
    ($($arg:tt)*) => {
        $crate::log::emit($crate::log::Level::Warn, &format!($($arg)*))
    };
}
/// `log::info!("..", args)`: one line at [`Level::Info`].
macro_rules! info_line {
    ($($arg:tt)*) => {
        $crate::log::emit($crate::log::Level::Info, &format!($($arg)*))
    };
}
/// `log::debug!("..", args)`: one line at [`Level::Debug`], formatted only under `--verbose`.
macro_rules! debug_line {
    ($($arg:tt)*) => {
        if $crate::log::verbose() {
            $crate::log::emit($crate::log::Level::Debug, &format!($($arg)*))
        }
    };
}
pub(crate) use {debug_line as debug, error_line as error, info_line as info, warn_line as warn};
