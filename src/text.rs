//! Text at the edges: server-supplied text made safe for one stderr line (secrets redacted,
//! control characters escaped, length capped; the log applies the same escaping to every line it
//! writes), hex, and percent-coding (signing, query strings, `k=v` lists).

/// How much of a server's message an error shows.
pub const REMOTE_TEXT_MAX: usize = 300;

/// Characters that reorder or hide text without being control characters: bidi embeddings,
/// overrides and isolates, zero-width characters, line and paragraph separators, the BOM and
/// the interlinear annotation marks.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// `text` trimmed, with every control character (C0 including tab, CR and LF, DEL, C1) and every
/// invisible formatting character (such as U+202E) escaped as `\u{..}`, and cut to at most
/// `max_chars` characters (escapes included) with `…` appended when cut. A hostile answer can
/// then neither flood the terminal, nor rewrite it with escape sequences, nor start a line of
/// its own (a fake `E! ` line for Telegraf).
pub fn sanitize_remote(text: &str, max_chars: usize) -> String {
    one_line(text.trim(), max_chars)
}

/// `text` as one visible line, escaped and cut as [`sanitize_remote`] does, without trimming:
/// what the log writes of every message, whatever server text it quotes.
pub fn one_line(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut used = 0usize;
    for c in text.chars() {
        let piece = if c.is_control() || is_invisible_format(c) {
            c.escape_unicode().to_string()
        } else {
            c.to_string()
        };
        let n = piece.chars().count();
        if used + n > max_chars {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        used += n;
    }
    out
}

/// The shortest secret [`redact`] replaces: a shorter one would blot out ordinary words.
pub const REDACT_MIN_CHARS: usize = 4;

/// `text` with every occurrence of each of `secrets` (of at least [`REDACT_MIN_CHARS`]
/// characters) replaced by `***`; longest first, so a secret containing another is replaced
/// whole. Applied to the whole of anything a server said before it is cut, so no part of a
/// secret survives at the cut.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .copied()
        .filter(|s| s.chars().count() >= REDACT_MIN_CHARS)
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s, "***");
    }
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Percent-encodes everything but the unreserved set `A-Za-z0-9-_.~`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push_str(&hex(&[b]).to_ascii_uppercase());
        }
    }
    out
}

/// Percent-decodes; malformed escapes are kept literally (as the SDK's `unquote` does).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let h = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = h {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `k=v,k2=v2` (percent-decoding values) into pairs; malformed entries are skipped,
/// as the SDKs do.
pub fn parse_kv_list(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), percent_decode(v.trim())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kv_lists_parse_like_the_sdks() {
        assert_eq!(
            parse_kv_list("a=1, b = x%20y ,broken,=v,c="),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "".into())
            ]
        );
    }

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(
            sanitize_remote("bad\nE! fake line\u{1b}[2J\r\tx", 300),
            "bad\\u{a}E! fake line\\u{1b}[2J\\u{d}\\u{9}x"
        );
        assert_eq!(
            sanitize_remote("a\u{202E}b\u{9b}c\u{7f}d\u{2028}e", 300),
            "a\\u{202e}b\\u{9b}c\\u{7f}d\\u{2028}e"
        );
        assert_eq!(
            sanitize_remote("  plain, ünïcode 中文 ok  ", 300),
            "plain, ünïcode 中文 ok"
        );
    }

    #[test]
    fn secrets_are_redacted_longest_first_and_short_ones_kept() {
        assert_eq!(
            redact(
                "token Bearer abcd1234 and abcd1234, id 42",
                &["Bearer abcd1234", "abcd1234", "42"]
            ),
            "token *** and ***, id 42"
        );
        assert_eq!(redact("nothing here", &[]), "nothing here");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let long = "x".repeat(10_000);
        let s = sanitize_remote(&long, 300);
        assert_eq!(s.chars().count(), 301);
        assert!(s.ends_with("x…"));
        assert_eq!(sanitize_remote(&"y".repeat(300), 300), "y".repeat(300));
        // An escape is never cut in half.
        let s = sanitize_remote(&format!("{}\u{1b}", "z".repeat(298)), 300);
        assert_eq!(s, format!("{}…", "z".repeat(298)));
    }

    proptest! {
        #[test]
        fn output_is_one_short_line_of_visible_text(s in "(?s).{0,600}", max in 0usize..400) {
            let out = sanitize_remote(&s, max);
            prop_assert!(out.chars().count() <= max + 1);
            prop_assert!(!out.chars().any(|c| c.is_control() || is_invisible_format(c)), "{:?}", out);
        }
    }
}
