//! A credentials file as a provider: AK and SK on two lines, one `AK,SK` line, `KEY=VALUE`
//! lines, or the console's `credentials.csv` download (one of its forms, decided strictly from
//! every line). Re-read when it changed (a rotated key), so a long-running process picks up new
//! keys without a restart.

use std::path::{Path, PathBuf};

use zeroize::Zeroize;

use super::{CredentialProvider, Credentials, CredentialsError, Loaded, Secret};
use crate::files::ReadFileError;

/// The credentials file given (`--credentials-file` or `cloud.credentials_file`), if any.
#[derive(Debug)]
pub struct CredentialsFile {
    path: Option<PathBuf>,
    /// The file as it was when its credentials were read.
    stamp: Option<FileStamp>,
}

impl CredentialsFile {
    pub fn new(path: Option<PathBuf>) -> Self {
        CredentialsFile { path, stamp: None }
    }
}

impl CredentialProvider for CredentialsFile {
    fn name(&self) -> String {
        match &self.path {
            Some(p) => format!("the credentials file {}", p.display()),
            None => "a credentials file".into(),
        }
    }

    fn load(&mut self) -> Result<Loaded, CredentialsError> {
        let Some(path) = &self.path else {
            return Ok(Loaded::Absent("a credentials file (none given)".into()));
        };
        let (credentials, warnings) = load_file(path)?;
        self.stamp = stamp_of(path);
        Ok(Loaded::Found {
            credentials,
            warnings,
        })
    }

    /// The file's credentials again when it changed (modification time, size or inode) since
    /// the last look.
    fn renew(&mut self) -> Result<Option<Credentials>, CredentialsError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let now = stamp_of(path);
        if now == self.stamp {
            return Ok(None);
        }
        self.stamp = now;
        // Its warnings were said when it was first read.
        Ok(Some(load_file(path)?.0))
    }

    fn shadowed(&self, winner: &str) -> Option<String> {
        self.path.as_ref().map(|p| {
            format!(
                "{winner} in the environment win over the credentials file {}, which is not read; unset them to use the file",
                p.display()
            )
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp_of(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode,
    })
}

/// Cap on a credentials file: a real one is a few hundred bytes.
const MAX_FILE_BYTES: u64 = 64 * 1024;

fn load_file(path: &Path) -> Result<(Credentials, Vec<String>), CredentialsError> {
    let unreadable = |reason: String| CredentialsError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = crate::files::read_regular(path, MAX_FILE_BYTES).map_err(|e| match e {
        ReadFileError::TooLarge { .. } => unreadable(format!(
            "larger than {MAX_FILE_BYTES} bytes; not a credentials file"
        )),
        other => unreadable(other.to_string()),
    })?;
    let mut warnings = Vec::new();
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "credentials file {} is readable by group or others (mode {:o}); run chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            ));
        }
    }
    // Never quote the bytes: a file that is not text says so and nothing more. The copy read
    // here is zeroed like a `Secret`.
    let mut text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            e.into_bytes().zeroize();
            return Err(unreadable("not UTF-8 text".into()));
        }
    };
    let creds = parse_file(&text, path);
    text.zeroize();
    Ok((creds?, warnings))
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Parses the four accepted forms: `KEY=VALUE` lines, one `AK,SK` line, AK and SK on two lines,
/// or the console's `credentials.csv`. Blank lines and `#` comments are ignored.
///
/// The form is decided strictly, from every line: a file that could be read two ways is an
/// error, because the wrong reading signs with a garbage key (and rejected signatures get the
/// key locked). A line with a `=` makes it the `KEY=VALUE` form, where every line must be one;
/// the bare forms take single tokens only. Errors name lines and what was expected, never any
/// text of the file (a key could be a pasted secret as well as a value).
pub fn parse_file(text: &str, path: &Path) -> Result<Credentials, CredentialsError> {
    let malformed = |(line, reason): (usize, String)| CredentialsError::Malformed {
        path: path.to_path_buf(),
        line,
        reason,
    };
    // A byte-order mark is what spreadsheet downloads start with; it is not part of any key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Lines end in LF, CRLF or a lone CR (an old Mac editor): each is one line.
    let text = text.replace("\r\n", "\n");
    let lines: Vec<(usize, &str)> = text
        .split(['\n', '\r'])
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let source = format!("credentials file {}", path.display());
    let pair = |ak: &str, sk: &str| Credentials {
        ak: Secret::new(ak),
        sk: Secret::new(sk),
        token: None,
        source: source.clone(),
        expires_at: None,
        agency: None,
    };
    if let Some((header_line, header)) = lines.first().filter(|(_, l)| is_csv_header(l)) {
        return parse_csv(*header_line, header, &lines[1..], source.clone())
            .map_err(|(line, reason)| malformed((line, reason.to_string())));
    }
    if let Some((n, _)) = lines.first().filter(|(_, l)| looks_like_csv_header(l)) {
        return Err(malformed((
            *n,
            "a credentials.csv header whose columns are not separated by commas; save it separated by commas, as the console downloads it".into(),
        )));
    }
    if lines.iter().any(|(_, l)| l.contains('=')) {
        return parse_assignments(&lines, source.clone()).map_err(malformed);
    }
    match lines.as_slice() {
        [(n, l)] => {
            let cells: Vec<&str> = l.split(',').map(str::trim).collect();
            match cells.as_slice() {
                [ak, sk] if is_token(ak) && is_token(sk) => Ok(pair(ak, sk)),
                _ => Err(malformed((
                    *n,
                    "one line must be AK,SK (two values, one comma, no spaces or `;`)".into(),
                ))),
            }
        }
        [(n1, ak), (n2, sk)] => {
            if !is_token(ak) {
                return Err(malformed((
                    *n1,
                    "expected the AK alone on this line and the SK alone on the next (no `=`, `,`, `;` or spaces)".into(),
                )));
            }
            if !is_token(sk) {
                return Err(malformed((
                    *n2,
                    "expected the SK alone on this line, after the AK alone on the line before (no `=`, `,`, `;` or spaces)".into(),
                )));
            }
            Ok(pair(ak, sk))
        }
        [] => Err(malformed((0, "the file is empty".into()))),
        [.., (n, _)] => Err(malformed((
            *n,
            "too many lines; use AK and SK on two lines, one AK,SK line, or KEY=VALUE lines".into(),
        ))),
    }
}

/// A value of a bare form: one token of the characters keys are made of (letters, digits,
/// `+ / . _ -`), nothing that belongs to another form (`=`, `,`, `;`, `:`), no quotes.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_key_char)
}

/// What AKs, SKs and security tokens (base64 with padding) are made of.
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '.' | '_' | '-')
}

/// A `KEY=VALUE` line's value: key characters, and `=` (base64) anywhere but first.
fn is_key_value(v: &str) -> bool {
    !v.starts_with('=') && v.chars().all(|c| is_key_char(c) || c == '=')
}

/// The `KEY=VALUE` form: every line an assignment of a known key, each key once (by either of
/// its names).
fn parse_assignments(
    lines: &[(usize, &str)],
    source: String,
) -> Result<Credentials, (usize, String)> {
    // What each is, and the line it was first given on with its value (zeroed on drop).
    let mut slots: [(&str, Option<(usize, Secret)>); 3] = [
        ("the access key (HW_ACCESS_KEY or HUAWEICLOUD_SDK_AK)", None),
        ("the secret key (HW_SECRET_KEY or HUAWEICLOUD_SDK_SK)", None),
        (
            "the security token (HW_SECURITY_TOKEN or HUAWEICLOUD_SDK_SECURITY_TOKEN)",
            None,
        ),
    ];
    for &(n, l) in lines {
        let l = l.strip_prefix("export ").unwrap_or(l);
        let Some((k, v)) = l.split_once('=') else {
            return Err((
                n,
                "expected KEY=VALUE, like the other lines (HW_ACCESS_KEY=..., HW_SECRET_KEY=...); a file with KEY=VALUE lines takes nothing else".into(),
            ));
        };
        let slot = match k.trim() {
            "HW_ACCESS_KEY" | "HUAWEICLOUD_SDK_AK" => 0,
            "HW_SECRET_KEY" | "HUAWEICLOUD_SDK_SK" => 1,
            "HW_SECURITY_TOKEN" | "HUAWEICLOUD_SDK_SECURITY_TOKEN" => 2,
            "HW_PROJECT_ID" | "HUAWEICLOUD_SDK_PROJECT_ID" | "HW_REGION" => continue,
            // Not even the key is shown: a secret pasted before the `=` would be echoed.
            _ => {
                return Err((
                    n,
                    "unknown key before `=`; expected HW_ACCESS_KEY, HW_SECRET_KEY or HW_SECURITY_TOKEN (capitals, no spaces)".into(),
                ))
            }
        };
        let (what, given) = &mut slots[slot];
        if let Some((first, _)) = given {
            return Err((
                n,
                format!("{what} is given twice, first on line {first}; keep one"),
            ));
        }
        let value = unquote(v);
        if !value.is_empty() && !is_key_value(value) {
            return Err((
                n,
                format!("the value of {what} is not a key: only letters, digits and + / . _ - (no spaces, comments, unpaired quotes or leading `=`)"),
            ));
        }
        *given = Some((n, Secret::new(value)));
    }
    let [ak, sk, token] = slots.map(|(_, v)| {
        v.map(|(_, v)| v)
            .filter(|v: &Secret| !v.expose().is_empty())
    });
    match (ak, sk) {
        (Some(ak), Some(sk)) => Ok(Credentials {
            ak,
            sk,
            token,
            source,
            expires_at: None,
            agency: None,
        }),
        (None, _) => Err((0, "HW_ACCESS_KEY is missing".into())),
        (_, None) => Err((0, "HW_SECRET_KEY is missing".into())),
    }
}

/// A header of the console's download saved with another separator (`;` by a spreadsheet in
/// some locales, a tab).
fn looks_like_csv_header(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    l.contains("access key id") && l.contains("secret access key")
}

/// The header of the console's `credentials.csv` download
/// (`User Name,Access Key Id,Secret Access Key`), with or without quotes.
fn is_csv_header(line: &str) -> bool {
    let cells = csv_cells(line);
    let has = |name: &str| cells.iter().any(|c| c.eq_ignore_ascii_case(name));
    has("Access Key Id") && has("Secret Access Key")
}

/// The cells of one CSV line: comma-separated, each optionally in double quotes.
fn csv_cells(line: &str) -> Vec<&str> {
    line.split(',').map(|c| unquote(c.trim())).collect()
}

/// The console's `credentials.csv`: a header, then exactly one row (`user,AK,SK`).
fn parse_csv(
    header_line: usize,
    header: &str,
    rows: &[(usize, &str)],
    source: String,
) -> Result<Credentials, (usize, &'static str)> {
    let cells = csv_cells(header);
    let column = |name: &str| cells.iter().position(|c| c.eq_ignore_ascii_case(name));
    let (Some(ak_col), Some(sk_col)) = (column("Access Key Id"), column("Secret Access Key"))
    else {
        return Err((
            header_line,
            "expected the columns Access Key Id and Secret Access Key",
        ));
    };
    let row = match rows {
        [row] => row,
        [] => return Err((header_line, "a header but no row of keys under it")),
        [_, (n, _), ..] => return Err((
            *n,
            "more than one row of keys; keep the one to use (a credentials.csv holds one key pair)",
        )),
    };
    let values = csv_cells(row.1);
    if values.len() != cells.len() {
        return Err((
            row.0,
            "the row does not have the header's number of columns",
        ));
    }
    match (values[ak_col], values[sk_col]) {
        (ak, sk) if !ak.is_empty() && !sk.is_empty() => Ok(Credentials {
            ak: Secret::new(ak),
            sk: Secret::new(sk),
            token: None,
            source,
            expires_at: None,
            agency: None,
        }),
        _ => Err((row.0, "Access Key Id or Secret Access Key is empty")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consoles_credentials_csv() {
        let p = Path::new("credentials.csv");
        for text in [
            "User Name,Access Key Id,Secret Access Key\nalice,AKCSV,SKCSV\n",
            "\u{feff}User Name,Access Key Id,Secret Access Key\r\nalice,AKCSV,SKCSV\r\n",
            "\"User Name\",\"Access Key Id\",\"Secret Access Key\"\n\"alice\",\"AKCSV\",\"SKCSV\"\n",
        ] {
            let c = parse_file(text, p).unwrap();
            assert_eq!((c.ak.expose(), c.sk.expose()), ("AKCSV", "SKCSV"), "{text:?}");
        }
        for (text, line) in [
            ("User Name,Access Key Id,Secret Access Key\n", 1),
            ("User Name,Access Key Id,Secret Access Key\na,AK1,SK1-secretvalue\nb,AK2,SK2-secretvalue\n", 3),
            ("User Name,Access Key Id,Secret Access Key\na,AK1-secretvalue\n", 2),
            ("User Name,Access Key Id,Secret Access Key\na,,SK-secretvalue\n", 2),
        ] {
            let e = parse_file(text, p).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&format!(":{line}:")), "{msg}");
            assert!(!msg.contains("secretvalue") && !msg.contains("AK1"), "{msg}");
        }
    }

    #[test]
    fn three_file_formats() {
        let p = Path::new("f");
        let c = parse_file("# comment\nAKLINE\n\nSKLINE\n", p).unwrap();
        assert_eq!((c.ak.expose(), c.sk.expose()), ("AKLINE", "SKLINE"));
        let c = parse_file("AK1, SK1\n", p).unwrap();
        assert_eq!((c.ak.expose(), c.sk.expose()), ("AK1", "SK1"));
        let c = parse_file(
            "HW_ACCESS_KEY=AK2\nexport HW_SECRET_KEY=\"SK2\"\nHW_SECURITY_TOKEN=T=2\n",
            p,
        )
        .unwrap();
        assert_eq!((c.ak.expose(), c.sk.expose()), ("AK2", "SK2"));
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("T=2"));
    }

    #[test]
    fn file_errors_never_show_values() {
        let p = Path::new("f");
        for text in [
            "",
            "onlyone-secretvalue",
            "a\nb\nc-secretvalue",
            "HW_ACCESS_KEY=x\nHW_SEKRET=secretvalue",
            // The text before `=` is no safer than the value: a secret pasted with a space.
            "HW_ACCESS_KEY=x\nHW_SECRET_KEY secretvalue=x",
            "HW_ACCESS_KEY=x\nHW_SECRET_KEY secretvalue",
            "HW_ACCESS_KEY=x\nsecretvalue=x",
            "HW_ACCESS_KEY=x\nhw_secret_key_secretvalue=x",
            "HW_ACCESS_KEY=x\nexport HW_SECRET_KEY\tsecretvalue=\"y\"",
            "HW_ACCESS_KEY=x\nSECRETVALUE=y",
            "HW_SECRET_KEY secretvalue=x",
            // Ambiguous forms: each would sign with a garbage key.
            "secretvalue,x\nHW_REGION=cn-southwest-2",
            "secretvalue\nHW_SECRET_KEY=secretvalue",
            "HW_ACCESS_KEY=secretvalue\nHW_SECRET_KEY=s\nHUAWEICLOUD_SDK_AK=secretvalue2",
            "HUAWEICLOUD_SDK_SK=secretvalue\nHW_ACCESS_KEY=a\nHW_SECRET_KEY=secretvalue2",
            "HW_ACCESS_KEY=a\nHW_SECRET_KEY=s\nHW_SECURITY_TOKEN=t\nHW_SECURITY_TOKEN=secretvalue",
            "User Name;Access Key Id;Secret Access Key\nalice;secretvalue;secretvalue2",
            "User Name\tAccess Key Id\tSecret Access Key\nalice\tsecretvalue\tsecretvalue2",
            "secretvalue secretvalue2\nsecretvalue3",
            "secretvalue\nsecretvalue;x",
            "secretvalue;secretvalue2",
            "secretvalue,secret value2",
        ] {
            let e = parse_file(text, p).unwrap_err().to_string();
            assert!(!e.to_lowercase().contains("secretvalue"), "{e}");
            assert!(e.starts_with("credentials file f:"), "{e}");
        }
        for (text, line) in [
            ("AK,SK\nHW_REGION=cn-southwest-2", 1),
            ("# c\nAK\nHW_SECRET_KEY=SK", 2),
            (
                "HW_ACCESS_KEY=X\nHW_SECRET_KEY=S\n\nHUAWEICLOUD_SDK_AK=Y",
                4,
            ),
            ("User Name;Access Key Id;Secret Access Key\na;AK;SK", 1),
            ("AK\nSK,x", 2),
        ] {
            let e = parse_file(text, p).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("credentials file f:{line}: ")),
                "{text:?}: {e}"
            );
        }
        let e = parse_file("HW_ACCESS_KEY=x\nhw_secret_key=y", p)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "credentials file f:2: unknown key before `=`; expected HW_ACCESS_KEY, HW_SECRET_KEY or HW_SECURITY_TOKEN (capitals, no spaces)"
        );
    }

    #[test]
    fn a_rotated_file_is_read_again_and_an_unchanged_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aksk");
        std::fs::write(&path, "AK1\nSK1\n").unwrap();
        let mut file = CredentialsFile::new(Some(path.clone()));
        let Loaded::Found { credentials, .. } = file.load().unwrap() else {
            panic!("no credentials");
        };
        assert_eq!(credentials.ak.expose(), "AK1");
        assert_eq!(
            credentials.source,
            format!("credentials file {}", path.display())
        );
        assert!(file.renew().unwrap().is_none(), "unchanged");
        std::fs::write(&path, "AK2,SK2-rotated\n").unwrap();
        let renewed = file.renew().unwrap().expect("read again");
        assert_eq!(renewed.ak.expose(), "AK2");
        assert!(file.renew().unwrap().is_none(), "once per change");
        let mut none = CredentialsFile::new(None);
        assert!(
            matches!(none.load().unwrap(), Loaded::Absent(line) if line == "a credentials file (none given)")
        );
        assert!(none.renew().unwrap().is_none() && none.shadowed("X/Y").is_none());
    }
}
