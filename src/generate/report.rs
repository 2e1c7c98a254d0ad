//! `maas-usage report`: a month's spend as one self-contained HTML file (inline CSS and SVG, no
//! script, font or image from anywhere): spend and tokens per day per model, spend per team, the
//! top keys, budgets against their limits, and the month's totals reconciled with
//! ShowStatistics.

use std::fmt::Write as _;

use chrono::NaiveDate;

use crate::emit::thousands;
use crate::spend::budget::Amount;
use crate::spend::ledger::{Line, Summary};
use crate::spend::money::{Cost, Currency};

/// What the page shows besides the sums.
pub struct Page<'a> {
    /// `2026-11`.
    pub month: &'a str,
    pub zone: &'a str,
    pub project: &'a str,
    pub currency: Option<Currency>,
    pub summary: &'a Summary,
    /// ShowStatistics' total tokens of the month (preset and My Services, real-time), when it
    /// answered.
    pub statistics_tokens: Option<u64>,
    /// What the reader must know: days beyond Cloud Eye's retention, a month in progress.
    pub notes: Vec<String>,
    /// When it was made (RFC 3339, in the zone).
    pub generated: String,
}

const PALETTE: [&str; 8] = [
    "#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477", "#66aa00",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn money(c: Option<Cost>, cur: Option<Currency>) -> String {
    match (c, cur) {
        (Some(c), Some(cur)) => format!("{} {}", cur.code, c.rounded(cur.minor_units)),
        _ => "-".into(),
    }
}

fn amount(a: Amount, cur: Option<Currency>) -> String {
    match a {
        Amount::Money(c) => money(Some(c), cur),
        Amount::Tokens(t) => format!("{} tokens", thousands(t)),
    }
}

/// A stacked bar chart: one bar per day, one colour per series.
fn chart(title: &str, days: &[NaiveDate], series: &[(String, Vec<f64>)], unit: &str) -> String {
    let (w, h, left, bottom) = (760.0, 220.0, 56.0, 24.0);
    let totals: Vec<f64> = (0..days.len())
        .map(|i| {
            series
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let max = totals
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let slot = (w - left) / days.len().max(1) as f64;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        h + bottom,
        esc(title)
    );
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\" stroke=\"#888\"/><text x=\"0\" y=\"10\" class=\"axis\">{}</text><text x=\"{}\" y=\"{h}\" class=\"axis\" text-anchor=\"end\">0</text>",
        esc(&format!("{} {unit}", short(max))),
        left - 4.0
    );
    for (i, d) in days.iter().enumerate() {
        let x = left + i as f64 * slot + slot * 0.1;
        let mut y = h;
        for (si, (name, values)) in series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0.0);
            let bh = v / max * (h - 16.0);
            y -= bh;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{} {}: {}</title></rect>",
                slot * 0.8,
                PALETTE[si % PALETTE.len()],
                d,
                esc(name),
                short(v)
            );
        }
        if days.len() <= 16 || i % 5 == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{}</text>",
                x + slot * 0.4,
                h + 16.0,
                d.format("%d")
            );
        }
    }
    svg.push_str("</svg><p class=\"legend\">");
    for (si, (name, _)) in series.iter().enumerate() {
        let _ = write!(
            svg,
            "<span><i style=\"background:{}\"></i>{}</span>",
            PALETTE[si % PALETTE.len()],
            esc(name)
        );
    }
    svg.push_str("</p></figure>\n");
    svg
}

/// `1234567.8` -> `1.23M`.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.2}")
    }
}

fn table(title: &str, first: &str, rows: &[(String, Line)], cur: Option<Currency>) -> String {
    let mut t = format!(
        "<h2>{}</h2><table><thead><tr><th>{}</th><th class=\"n\">cost</th><th class=\"n\">input tokens</th><th class=\"n\">output tokens</th><th class=\"n\">requests</th><th class=\"n\">errors</th></tr></thead><tbody>",
        esc(title),
        esc(first)
    );
    for (name, l) in rows {
        let _ = write!(
            t,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(if name.is_empty() { "(online experience)" } else { name }),
            money(l.cost, cur),
            thousands(l.usage.input),
            thousands(l.usage.output),
            thousands(l.usage.requests),
            thousands(l.usage.errors)
        );
    }
    t.push_str("</tbody></table>\n");
    t
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:60rem;color:#222;padding:0 1rem}h1{margin-bottom:.2rem}.sub{color:#666;margin-top:0}.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:10rem}.card b{display:block;font-size:1.4rem}table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}th,td{border-bottom:1px solid #eee;padding:.3rem .5rem;text-align:left}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}figure{margin:1rem 0}figcaption{font-weight:600}svg{width:100%;height:auto}.axis{font-size:10px;fill:#666}.legend span{margin-right:1rem;font-size:.85rem}.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}.bar{background:#eee;border-radius:3px;height:.8rem;width:12rem;display:inline-block;vertical-align:middle}.bar i{display:block;height:100%;border-radius:3px}.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4rem .8rem;margin:.4rem 0}footer{color:#666;font-size:.85rem;margin-top:2rem}";

/// Each budget against its limit, with a bar; nothing without budgets.
fn budgets_table(s: &Summary, cur: Option<Currency>) -> String {
    let mut h = String::new();
    if s.budgets.is_empty() {
        return h;
    }
    h.push_str("<h2>Budgets</h2><table><thead><tr><th>budget</th><th>period</th><th class=\"n\">used</th><th class=\"n\">limit</th><th>used</th></tr></thead><tbody>");
    for b in &s.budgets {
        let pct = (b.ratio * 100.0).min(100.0);
        let colour = if b.ratio >= 1.0 {
            "#dc3912"
        } else if b.ratio >= 0.8 {
            "#f0b400"
        } else {
            "#109618"
        };
        let what = match b.budget.period {
            crate::spend::Period::Month => "month".to_string(),
            crate::spend::Period::Day => format!("day (highest; {} over)", b.days_over),
        };
        let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><span class=\"bar\"><i style=\"width:{pct:.0}%;background:{colour}\"></i></span> {:.0}%</td></tr>",
                esc(&b.budget.name),
                esc(&what),
                amount(b.used, cur),
                amount(b.limit, cur),
                b.ratio * 100.0
            );
    }
    h.push_str("</tbody></table>\n");
    h
}

/// The whole HTML page.
pub fn render(p: &Page) -> String {
    let s = p.summary;
    let cur = p.currency;
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>MaaS spend {m}</title><style>{STYLE}</style></head><body>\n<h1>MaaS spend, {m}</h1><p class=\"sub\">Project {proj}, days in {zone}. Costs are estimates from the spec's prices, not the bill.</p>\n",
        m = esc(p.month),
        proj = esc(p.project),
        zone = esc(p.zone)
    );
    let _ = writeln!(
        h,
        "<div class=\"cards\"><div class=\"card\">spend<b id=\"total-cost\">{}</b></div><div class=\"card\">input tokens<b>{}</b></div><div class=\"card\">output tokens<b>{}</b></div><div class=\"card\">requests<b>{}</b></div><div class=\"card\">errors<b>{}</b></div></div>",
        money(s.total.cost, cur),
        thousands(s.total.usage.input),
        thousands(s.total.usage.output),
        thousands(s.total.usage.requests),
        thousands(s.total.usage.errors)
    );
    for n in &p.notes {
        let _ = write!(h, "<p class=\"note\">{}</p>", esc(n));
    }
    let per_model = |f: &dyn Fn(&Line) -> f64| -> Vec<(String, Vec<f64>)> {
        s.per_day
            .iter()
            .map(|(m, days)| {
                let v = s.days.iter().map(|d| days.get(d).map_or(0.0, f)).collect();
                (m.clone(), v)
            })
            .collect()
    };
    if let Some(c) = cur {
        h.push_str(&chart(
            "Spend per day per model",
            &s.days,
            &per_model(&|l| l.cost.map_or(0.0, Cost::to_f64)),
            c.code,
        ));
    }
    h.push_str(&chart(
        "Tokens (input + output) per day per model",
        &s.days,
        &per_model(&|l| l.usage.tokens() as f64),
        "tokens",
    ));
    let models: Vec<(String, Line)> = s.models.iter().map(|(k, v)| (k.clone(), *v)).collect();
    h.push_str(&table("Per model", "model", &models, cur));
    let teams: Vec<(String, Line)> = s.teams.iter().map(|(k, v)| (k.clone(), *v)).collect();
    h.push_str(&table("Per team (key group)", "key group", &teams, cur));
    h.push_str(&table("Top keys", "API key", &s.top_keys, cur));
    h.push_str(&budgets_table(s, cur));
    h.push_str("<h2>Reconciliation</h2>");
    let ce = s.total.usage.total;
    match p.statistics_tokens {
        Some(st) if st == ce => {
            let _ = write!(h, "<p>Cloud Eye's total tokens ({}) equal ShowStatistics' for the month (preset and My Services, real-time inference).</p>", thousands(ce));
        }
        Some(st) => {
            let _ = write!(h, "<p class=\"note\">Cloud Eye counts {} total tokens, ShowStatistics {} ({} apart). Cloud Eye holds preset and My Services real-time inference only, counts by the minute a request ended, and keeps its data for a limited time; ShowStatistics is the console's total.</p>", thousands(ce), thousands(st), thousands(st.abs_diff(ce)));
        }
        None => h.push_str("<p class=\"note\">ShowStatistics did not answer: the totals are Cloud Eye's alone.</p>"),
    }
    if !s.unpriced.is_empty() {
        let _ = write!(
            h,
            "<p class=\"note\">No price in the spec for {}: their tokens are counted, their cost is not (never a guessed price).</p>",
            esc(&s.unpriced.join(", "))
        );
    }
    let _ = write!(
        h,
        "<footer>Made by maas-usage {} at {} from Cloud Eye (SYS.MaaS) per model and API key.</footer>\n</body></html>\n",
        crate::emit::VERSION,
        esc(&p.generated)
    );
    h
}
