//! Spec errors: each located `file:line:column: path: message`, all of a load listed at once,
//! kept structured until they are printed (text, GitHub annotations or JSON).

use serde::Serialize;

/// One error, located: `file:line:column: path: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{file}:{line}:{column}: {}{message}", path_prefix(.path))]
pub struct SpecError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// `queries[2].service_types[0]`; empty for the whole file.
    pub path: String,
    pub message: String,
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// All errors of a load, in file order, one per line.
#[derive(Debug, Clone, Default, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct SpecErrors(pub Vec<SpecError>);

fn lines(errors: &[SpecError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `/queries/2/service_types/0` -> `queries[2].service_types[0]`.
pub fn display_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}
