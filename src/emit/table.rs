//! The human table of `query` (and `run --format table`), in the layout of the original script:
//! box-drawing rules on a UTF-8 terminal, ASCII otherwise, and the zone named as people say it
//! and as the API knows it (`CST, Asia/Shanghai`).

use std::fmt::Write;

use super::fields::{self, Field, Value};
use super::{thousands, Report};
use crate::collect::{CloudEyeSeries, Figure, StatisticsSeries as Series};
use crate::domain::cloud_eye::{CloudEyeMetric, METRICS};
use crate::domain::InferType;
use crate::domain::ALL_KEYS;
use crate::text;
use crate::time::fmt_local;
use crate::time::zone::Zone;

/// The most of a server-supplied name a cell shows.
const NAME_MAX: usize = 200;

/// Server text (a model or API key name, a request id) as one visible line, through the one
/// sanitizer stderr uses: an escape sequence, a carriage return or a bidi override in a name
/// can neither rewrite the terminal nor break the table.
fn remote(s: &str) -> String {
    text::one_line(s, NAME_MAX)
}

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

/// How the table is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStyle {
    /// Box-drawing rules (`─`, `═`) instead of ASCII (`-`, `=`).
    pub unicode: bool,
    /// Name the query in each title (`run`, where a spec has many).
    pub name_query: bool,
}

impl TableStyle {
    /// Box-drawing only where it renders: stdout a terminal whose locale is UTF-8, and not
    /// asked for ASCII.
    pub fn detect(
        stdout_is_terminal: bool,
        env: &dyn Fn(&str) -> Option<String>,
        ascii: bool,
    ) -> bool {
        let utf8 = ["LC_ALL", "LC_CTYPE", "LANG"]
            .iter()
            .find_map(|k| env(k).filter(|v| !v.is_empty()))
            .map(|v| {
                let v = v.to_ascii_lowercase();
                v.contains("utf-8") || v.contains("utf8")
            })
            .unwrap_or(false);
        stdout_is_terminal && utf8 && !ascii
    }
}

/// `CST, Asia/Shanghai`: the abbreviation the seeds' script printed, then the IANA name (the
/// abbreviation alone is ambiguous: CST is China, Cuba and US Central). A window across a
/// daylight-saving change names both ends: `EDT/EST, America/New_York`.
fn zone_label(zone: &Zone, start_ms: i64, end_ms: i64) -> String {
    use chrono::{Offset, TimeZone};
    let abbrev = |at_ms: i64| {
        chrono::Utc
            .timestamp_millis_opt(at_ms)
            .single()
            .map(|t| zone.tz.offset_from_utc_datetime(&t.naive_utc()))
            .map(|o| {
                let a = o.to_string();
                if a.is_empty() {
                    o.fix().to_string()
                } else {
                    a
                }
            })
    };
    let a = match (abbrev(start_ms), abbrev(end_ms)) {
        (Some(s), Some(e)) if s != e => Some(format!("{s}/{e}")),
        (_, e) => e,
    };
    match a {
        Some(a) if a != zone.name => format!("{a}, {}", zone.name),
        _ => zone.name.clone(),
    }
}

/// `Period: <start> ~ <end> (<zone>)`, as the seeds' script ended its table.
fn period_line(zone: &Zone, start_ms: i64, end_ms: i64) -> String {
    format!(
        "Period: {} ~ {} ({})",
        fmt_local(start_ms, &zone.tz),
        fmt_local(end_ms, &zone.tz),
        zone_label(zone, start_ms, end_ms)
    )
}

fn title(s: &Series, region: &str, style: TableStyle) -> String {
    let mut extras = Vec::new();
    if style.name_query {
        extras.push(format!("query {}", s.key.query));
    }
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

fn one(out: &mut String, s: &Series, report: &Report<'_>, raw: bool, style: TableStyle) {
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
    let (thin, thick) = if style.unicode {
        ('─', '═')
    } else {
        ('-', '=')
    };
    let rule = |c: char| {
        format!(
            "+{}+{}+",
            c.to_string().repeat(w0 + 2),
            c.to_string().repeat(w1 + 2)
        )
    };
    let _ = writeln!(out, "{}", title(s, &report.place(), style));
    let _ = writeln!(out, "{}", rule(thin));
    let _ = writeln!(out, "| {:<w0$} | {:<w1$} |", "Metric", "Value");
    let _ = writeln!(out, "{}", rule(thick));
    for (k, v) in &rows {
        let _ = writeln!(out, "| {k:<w0$} | {v:<w1$} |");
    }
    let _ = writeln!(out, "{}", rule(thin));
    let tz = &report.zone.tz;
    let _ = writeln!(
        out,
        "{}",
        period_line(report.zone, s.window.start_ms, s.window.end_ms)
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
                remote(seg.request_id.as_deref().unwrap_or("-"))
            );
            // The answer as received, each of its lines escaped (its line breaks kept).
            for line in seg.raw.trim().lines() {
                let _ = writeln!(out, "{}", text::one_line(line, usize::MAX));
            }
        }
    }
}

/// A boxed table: `header`, a thick rule, `rows`.
fn grid(out: &mut String, header: &[String], rows: &[Vec<String>], style: TableStyle) {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let (thin, thick) = if style.unicode {
        ('─', '═')
    } else {
        ('-', '=')
    };
    let rule = |c: char| {
        let parts: Vec<String> = widths.iter().map(|w| c.to_string().repeat(w + 2)).collect();
        format!("+{}+", parts.join("+"))
    };
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c}{} ", " ".repeat(w - c.chars().count())))
            .collect();
        format!("|{}|", parts.join("|"))
    };
    let _ = writeln!(out, "{}", rule(thin));
    let _ = writeln!(out, "{}", line(header));
    let _ = writeln!(out, "{}", rule(thick));
    for r in rows {
        let _ = writeln!(out, "{}", line(r));
    }
    let _ = writeln!(out, "{}", rule(thin));
}

/// The spec's budgets where they stand (`maas_budget`), one row each.
fn budgets(out: &mut String, report: &Report<'_>, style: TableStyle) {
    let points = &report.collection.budgets;
    if points.is_empty() {
        return;
    }
    let header: Vec<String> = [
        "Budget", "Scope", "Period", "Used", "Limit", "Used %", "Forecast",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|p| {
            let scope = p.budget.scope.tag().map_or_else(
                || "project".to_string(),
                |(k, v)| format!("{k} {}", remote(v)),
            );
            let unit = p
                .currency
                .map_or_else(|| "tokens".to_string(), |c| c.to_string());
            let amount = |a: crate::spend::budget::Amount| match (a, p.currency) {
                (crate::spend::budget::Amount::Money(c), Some(cur)) => {
                    format!("{} {unit}", c.rounded(cur.minor_units))
                }
                (a, _) => format!("{} {unit}", a.to_decimal_string()),
            };
            vec![
                remote(&p.budget.name),
                scope,
                p.budget.period.name().to_string(),
                amount(p.status.used),
                amount(p.status.limit),
                format!("{:.1}%", p.status.used_ratio * 100.0),
                amount(p.status.forecast),
            ]
        })
        .collect();
    let _ = writeln!(
        out,
        "Budgets (estimates from the spec's prices) - Region: {}",
        report.place()
    );
    grid(out, &header, &rows, style);
}

/// A Cloud Eye series' row: its model, key or group, its figures, and its cost when `costs`.
fn cells(
    r: &CloudEyeSeries,
    by_model: bool,
    metrics: &[&'static CloudEyeMetric],
    costs: bool,
) -> Vec<String> {
    let key = &r.key;
    let names = [
        by_model.then_some(key.model.name.as_str()),
        key.api_key.as_ref().map(|k| k.name.as_str()),
        key.key_group.as_deref(),
    ];
    let mut row: Vec<String> = names.into_iter().flatten().map(remote).collect();
    for m in metrics {
        row.push(match r.figure(m.ces) {
            Some(Figure::Count(c)) => thousands(c),
            Some(Figure::Millis(ms)) => format!("{ms:.1} ms"),
            None => "-".into(),
        });
    }
    if costs {
        row.push(r.cost.as_ref().map_or_else(
            || "-".into(),
            |c| c.priced.total().rounded(c.currency.minor_units),
        ));
    }
    row
}

/// The Cloud Eye series of one query and window: a row per model (and key), a column per
/// metric, counts exact with separators and latency in milliseconds.
fn cloud_eye(out: &mut String, rows: &[&CloudEyeSeries], report: &Report<'_>, style: TableStyle) {
    let Some(first) = rows.first() else {
        return;
    };
    let by_key = first.key.api_key.is_some();
    let metrics: Vec<&'static CloudEyeMetric> = METRICS
        .iter()
        .filter(|m| {
            rows.iter()
                .any(|r| r.values.iter().any(|(x, _)| x.ces == m.ces))
        })
        .collect();
    let (by_model, group) = (first.key.has_model(), first.key.key_group.is_some());
    let mut header: Vec<String> = [
        (by_model, "Model"),
        (by_key, "API key"),
        (group, "Key group"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, t)| t.to_string())
    .collect();
    header.extend(metrics.iter().map(|m| m.title.to_string()));
    // The estimated cost, in the currency's minor units, when a model of the table is priced.
    let currency = rows
        .iter()
        .find_map(|r| r.cost.as_ref().map(|c| c.currency));
    header.extend(currency.map(|c| format!("Cost ({c}, estimate)")));
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cells(r, by_model, &metrics, currency.is_some()))
        .collect();
    let _ = writeln!(
        out,
        "MaaS usage per {} (Cloud Eye, query {}) - Region: {}",
        match (by_model, by_key, group) {
            (_, true, _) => "model and API key",
            (true, _, true) => "model and key group",
            (false, _, true) => "key group",
            _ => "model",
        },
        first.key.query,
        report.place()
    );
    grid(out, &header, &table, style);
    let _ = writeln!(
        out,
        "{}; latency is the highest period's value in the window",
        period_line(report.zone, first.window.start_ms, first.window.end_ms)
    );
}

pub fn render(report: &Report<'_>, raw: bool, style: TableStyle) -> String {
    let mut out = String::new();
    for (i, s) in report.collection.statistics().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        one(&mut out, s, report, raw, style);
    }
    // One table per Cloud Eye query and window, in collection order.
    let mut groups: Vec<Vec<&CloudEyeSeries>> = Vec::new();
    for s in report.collection.cloud_eye() {
        match groups.last_mut() {
            Some(g) if g[0].key.query == s.key.query && g[0].window == s.window => g.push(s),
            _ => groups.push(vec![s]),
        }
    }
    for g in groups {
        if !out.is_empty() {
            out.push('\n');
        }
        cloud_eye(&mut out, &g, report, style);
    }
    if !report.collection.budgets.is_empty() && !out.is_empty() {
        out.push('\n');
    }
    budgets(&mut out, report, style);
    out
}

/// The tables of several clouds' reports, one after the other (their titles name the cloud).
pub fn render_all(reports: &[Report<'_>], raw: bool, style: TableStyle) -> String {
    let parts: Vec<String> = reports
        .iter()
        .map(|r| render(r, raw, style))
        .filter(|t| !t.is_empty())
        .collect();
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_across_a_daylight_saving_change_names_both_abbreviations() {
        let ny = Zone {
            tz: chrono_tz::America::New_York,
            name: "America/New_York".into(),
        };
        // 2026-10-30 04:00 EDT ~ 2026-11-29 03:00 EST (the change is on 1 November).
        let (start, end) = (1_793_347_200_000, 1_795_939_200_000);
        assert_eq!(zone_label(&ny, start, end), "EDT/EST, America/New_York");
        assert_eq!(
            zone_label(&ny, end - 3_600_000, end),
            "EST, America/New_York"
        );
        assert_eq!(zone_label(&Zone::utc(), start, end), "UTC");
    }
    use crate::collect::{Collection, RunStats};
    use crate::domain::{InferType, SeriesKey, ServiceType, Shape, Usage, Window};
    use crate::time::zone::Zone;

    /// The seeds' example: 2026-05-08 to 2026-05-21 (both days) in Shanghai.
    fn seeds_table(style: TableStyle) -> String {
        let start = 1_778_169_600_000; // 2026-05-08T00:00:00+08:00
        let collection = Collection {
            series: vec![crate::collect::Series::Statistics(Series {
                key: SeriesKey {
                    query: "seed".into(),
                    service_type: ServiceType::Preset,
                    infer_type: InferType::RealTime,
                    key_group: ALL_KEYS.into(),
                },
                window: Window {
                    start_ms: start,
                    end_ms: start + 14 * 86_400_000,
                    shape: Shape::Closed,
                },
                usage: Usage {
                    total_tokens: 2_482_084_980,
                    prompt_tokens: 2_456_500_000,
                    completion_tokens: 24_870_000,
                    requests: 67_188,
                    errors: 8_002,
                    ..Default::default()
                },
                segments: Vec::new(),
                checkpoint: None,
                running: None,
            })],
            ..Collection::default()
        };
        let zone = Zone {
            tz: chrono_tz::Asia::Shanghai,
            name: "Asia/Shanghai".into(),
        };
        let report = Report {
            cloud: None,
            collection: &collection,
            stats: RunStats::default(),
            region: "cn-southwest-2",
            project_id: "p",
            zone: &zone,
            now: chrono::DateTime::from_timestamp_millis(start).unwrap(),
            origin: &crate::emit::Origin::default(),
            totals: &Default::default(),
        };
        render(&report, false, style)
    }

    #[test]
    fn the_seeds_look_on_a_utf8_terminal_ascii_elsewhere() {
        let boxes = seeds_table(TableStyle {
            unicode: true,
            name_query: false,
        });
        let lines: Vec<&str> = boxes.lines().collect();
        assert_eq!(
            lines[0],
            "MaaS Preset Service Usage Statistics - Region: cn-southwest-2"
        );
        assert!(
            lines[1].starts_with("+───") && lines[3].starts_with("+═══"),
            "{boxes}"
        );
        assert!(lines[4].contains("2,482.08 M tokens") && lines[9].contains("11.91%"));
        assert_eq!(
            lines.last().unwrap(),
            &"Period: 2026-05-08 00:00:00 ~ 2026-05-22 00:00:00 (CST, Asia/Shanghai)"
        );
        // Every line of the box is as wide as the others, in characters.
        let widths: Vec<usize> = lines[1..lines.len() - 1]
            .iter()
            .map(|l| l.chars().count())
            .collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{boxes}");
        let ascii = seeds_table(TableStyle::default());
        assert!(ascii.is_ascii(), "{ascii}");
        assert_eq!(
            ascii.replace('-', "─").replace('=', "═"),
            boxes.replace("-", "─")
        );
    }

    #[test]
    fn run_titles_name_the_query() {
        let t = seeds_table(TableStyle {
            unicode: false,
            name_query: true,
        });
        assert!(
            t.starts_with("MaaS Preset Service Usage Statistics (query seed) - Region:"),
            "{t}"
        );
    }

    #[test]
    fn box_drawing_only_on_a_utf8_terminal_unless_ascii_is_asked() {
        let utf8 = |k: &str| (k == "LANG").then(|| "en_US.UTF-8".to_string());
        let c = |k: &str| (k == "LANG").then(|| "C".to_string());
        let c_all = |k: &str| match k {
            "LC_ALL" => Some("C".to_string()),
            "LANG" => Some("en_US.UTF-8".to_string()),
            _ => None,
        };
        assert!(TableStyle::detect(true, &utf8, false));
        assert!(!TableStyle::detect(false, &utf8, false), "a pipe or a file");
        assert!(!TableStyle::detect(true, &utf8, true), "--ascii");
        assert!(!TableStyle::detect(true, &c, false));
        assert!(
            !TableStyle::detect(true, &c_all, false),
            "LC_ALL wins over LANG"
        );
    }

    #[test]
    fn token_units_like_the_console() {
        assert_eq!(human_tokens(2_482_084_980), "2,482.08 M tokens");
        assert_eq!(human_tokens(24_870_000), "24.87 M tokens");
        assert_eq!(human_tokens(999_995), "1,000.00 K tokens");
        assert_eq!(human_tokens(1_500), "1.50 K tokens");
        assert_eq!(human_tokens(999), "999 tokens");
    }
}
