//! The human table of `query` (and `run --format table`), in the layout of the original script.

use std::fmt::Write;

use super::fields::{self, Field, Value};
use super::{thousands, Report};
use crate::collect::Series;
use crate::domain::InferType;
use crate::domain::ALL_KEYS;
use crate::time::fmt_local;

/// `2,482.08 M tokens`, `24.87 K tokens`, `512 tokens`; rounded half up from exact integers.
pub fn human_tokens(t: u64) -> String {
    let scaled = |unit: u64, suffix: &str| {
        let hundredths = (u128::from(t) * 100 + u128::from(unit) / 2) / u128::from(unit);
        format!(
            "{}.{:02} {suffix} tokens",
            thousands((hundredths / 100) as u64),
            hundredths % 100
        )
    };
    if t >= 1_000_000 {
        scaled(1_000_000, "M")
    } else if t >= 1_000 {
        scaled(1_000, "K")
    } else {
        format!("{t} tokens")
    }
}

fn title(s: &Series, region: &str) -> String {
    let mut extras = Vec::new();
    if s.key.infer_type == InferType::Batch {
        extras.push("batch inference".to_string());
    }
    if s.key.key_group != ALL_KEYS {
        extras.push(format!("key group {}", s.key.key_group));
    }
    let extra = if extras.is_empty() {
        String::new()
    } else {
        format!(" ({})", extras.join(", "))
    };
    format!(
        "MaaS {} Usage Statistics{extra} - Region: {region}",
        s.key.service_type.title()
    )
}

/// A value as people read it: tokens scaled (K, M), counts with separators, ratios in percent.
fn human(field: &Field, v: Value) -> String {
    match (v, field.unit) {
        (Value::Int(t), "{token}") => human_tokens(t),
        (Value::Int(n), _) => thousands(n),
        (Value::Float(r), _) => format!("{:.2}%", r * 100.0),
    }
}

fn one(out: &mut String, s: &Series, report: &Report<'_>, raw: bool) {
    // The rows are the series' fields, in the manifest's order, under their titles.
    let rows: Vec<(&str, String)> = fields::values(&s.usage, s.key.infer_type == InferType::Batch)
        .map(|(f, v)| (f.title, human(f, v)))
        .collect();
    let w0 = rows
        .iter()
        .map(|r| r.0.len())
        .max()
        .unwrap_or(0)
        .max("Metric".len());
    let w1 = rows
        .iter()
        .map(|r| r.1.len())
        .max()
        .unwrap_or(0)
        .max("Value".len());
    let rule = |c: char| {
        format!(
            "+{}+{}+",
            c.to_string().repeat(w0 + 2),
            c.to_string().repeat(w1 + 2)
        )
    };
    let _ = writeln!(out, "{}", title(s, report.region));
    let _ = writeln!(out, "{}", rule('-'));
    let _ = writeln!(out, "| {:<w0$} | {:<w1$} |", "Metric", "Value");
    let _ = writeln!(out, "{}", rule('='));
    for (k, v) in &rows {
        let _ = writeln!(out, "| {k:<w0$} | {v:<w1$} |");
    }
    let _ = writeln!(out, "{}", rule('-'));
    let tz = &report.zone.tz;
    let _ = writeln!(
        out,
        "Period: {} ~ {} ({})",
        fmt_local(s.window.start_ms, tz),
        fmt_local(s.window.end_ms, tz),
        report.zone.name
    );
    if raw {
        let n = s.segments.len();
        for (i, seg) in s.segments.iter().enumerate() {
            let _ = writeln!(
                out,
                "Segment {}/{n}: {} ~ {} [{} ~ {}] (request id {})",
                i + 1,
                fmt_local(seg.start_ms, tz),
                fmt_local(seg.end_ms, tz),
                seg.start_ms,
                seg.end_ms,
                seg.request_id.as_deref().unwrap_or("-")
            );
            let _ = writeln!(out, "{}", seg.raw.trim());
        }
    }
}

pub fn render(report: &Report<'_>, raw: bool) -> String {
    let mut out = String::new();
    for (i, s) in report.collected.series.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        one(&mut out, s, report, raw);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::human_tokens;

    #[test]
    fn token_units_like_the_console() {
        assert_eq!(human_tokens(2_482_084_980), "2,482.08 M tokens");
        assert_eq!(human_tokens(24_870_000), "24.87 M tokens");
        assert_eq!(human_tokens(999_995), "1,000.00 K tokens");
        assert_eq!(human_tokens(1_500), "1.50 K tokens");
        assert_eq!(human_tokens(999), "999 tokens");
    }
}
