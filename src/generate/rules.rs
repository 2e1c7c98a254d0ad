//! `maas-usage rules`: a Prometheus rule file for a spec. Collector health always; usage alerts
//! when the spec has Cloud Eye queries (error ratio per model, TTFT p99); budget alerts when it
//! has budgets. Every metric and label name comes from plugin.yaml, so the rules read exactly
//! what the outputs write; thresholds from the spec's `alerts` (or their defaults).

use std::fmt::Write as _;
use std::time::Duration;

use super::{names, GenerateError, Names};
use crate::manifest::Manifest;
use crate::spec::Spec;

/// One alerting rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub alert: &'static str,
    pub expr: String,
    pub hold: Duration,
    pub severity: &'static str,
    pub summary: String,
    pub description: String,
}

/// A group of rules (a block of the file).
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: &'static str,
    pub rules: Vec<Rule>,
}

/// Prometheus durations: `90s` as `1m30s`, whole units only.
pub fn prom_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= len {
            let _ = write!(out, "{}{unit}", s / len);
            s %= len;
        }
    }
    out
}

/// A number as PromQL writes it (no exponent for the thresholds people set).
fn num(v: f64) -> String {
    format!("{v}")
}

/// The rules for `spec`, collections every `interval`.
pub fn groups(spec: &Spec, m: &Manifest, interval: Duration) -> Result<Vec<Group>, GenerateError> {
    let n = names(m)?;
    let hold = spec.alerts.hold;
    let mut out = vec![collector(&n, interval, hold)];
    if spec.queries.iter().any(|q| q.cloud_eye().is_some()) {
        out.push(usage(spec, &n, hold));
    }
    if !spec.budgets.is_empty() {
        out.push(budgets(spec, &n, hold));
    }
    Ok(out)
}

fn collector(n: &Names, interval: Duration, hold: Duration) -> Group {
    let stale = interval * 2;
    Group {
        name: "maas-usage-collector",
        rules: vec![
            Rule {
                alert: "MaasCollectorStale",
                expr: format!(
                    "time() - {} > {}",
                    n.last_success,
                    stale.as_secs()
                ),
                hold: Duration::ZERO,
                severity: "critical",
                summary: "maas-usage has not collected for two intervals".into(),
                description: format!(
                    "The last successful collection of {{{{ $labels.instance }}}} started {{{{ $value | humanizeDuration }}}} ago (collections every {}): check its stderr (E! lines) and the credentials.",
                    prom_duration(interval)
                ),
            },
            Rule {
                alert: "MaasCollectorSeriesFailed",
                expr: format!("{}{{{}=\"{}\"}} > 0", n.series, n.outcome_label, n.failed),
                hold,
                severity: "warning",
                summary: "maas-usage series fail".into(),
                description: "{{ $value }} series of {{ $labels.instance }} failed in its last collection; each failure is an E! line on its stderr.".into(),
            },
            Rule {
                alert: "MaasCollectorThrottled",
                expr: format!("{} > 0", n.throttled),
                hold,
                severity: "warning",
                summary: "The API throttles maas-usage (HTTP 429)".into(),
                description: "{{ $labels.instance }} got {{ $value }} answers 429 in its last collection: lower limits.requests_per_minute or the number of series, or share the state directory between processes using the key.".into(),
            },
        ],
    }
}

fn usage(spec: &Spec, n: &Names, hold: Duration) -> Group {
    let by = format!("{}, {}", n.query_label, n.model_label);
    let mut rules = vec![Rule {
        alert: "MaasModelErrorRatioHigh",
        expr: format!(
            "sum by ({by}) ({errors}) / sum by ({by}) ({requests} > 0) > {t}",
            errors = n.model_errors,
            requests = n.model_requests,
            t = num(spec.alerts.error_ratio)
        ),
        hold,
        severity: "warning",
        summary: "A model's error ratio is high".into(),
        description: format!(
            "{{{{ $labels.{} }}}}: {{{{ $value | humanizePercentage }}}} of requests failed in query {{{{ $labels.{} }}}} (threshold {}).",
            n.model_label,
            n.query_label,
            num(spec.alerts.error_ratio)
        ),
    }];
    if let Some(ttft) = &n.model_ttft_p99 {
        rules.push(Rule {
            alert: "MaasModelTtftP99High",
            expr: format!(
                "max by ({by}) ({ttft}) > {}",
                num(spec.alerts.ttft_p99.as_secs_f64())
            ),
            hold,
            severity: "warning",
            summary: "A model's time to first token (p99) is high".into(),
            description: format!(
                "{{{{ $labels.{} }}}}: TTFT p99 {{{{ $value | humanizeDuration }}}} in query {{{{ $labels.{} }}}} (threshold {}).",
                n.model_label,
                n.query_label,
                prom_duration(spec.alerts.ttft_p99)
            ),
        });
    }
    Group {
        name: "maas-usage-models",
        rules,
    }
}

fn budgets(spec: &Spec, n: &Names, hold: Duration) -> Group {
    let warn = num(spec.alerts.budget_warning);
    let b = &n.budget_label;
    Group {
        name: "maas-usage-budgets",
        rules: vec![
            Rule {
                alert: "MaasBudgetWarning",
                expr: format!("{} >= {warn} < 1", n.used_ratio),
                hold: Duration::ZERO,
                severity: "warning",
                summary: "A budget is nearly used".into(),
                description: format!("Budget {{{{ $labels.{b} }}}} is {{{{ $value | humanizePercentage }}}} used ({{{{ $labels.{} }}}} period; warning at {warn}).", n.period_label),
            },
            Rule {
                alert: "MaasBudgetExceeded",
                expr: format!("{} >= 1", n.used_ratio),
                hold: Duration::ZERO,
                severity: "critical",
                summary: "A budget is exceeded".into(),
                description: format!("Budget {{{{ $labels.{b} }}}} is {{{{ $value | humanizePercentage }}}} used in this {{{{ $labels.{} }}}}.", n.period_label),
            },
            Rule {
                alert: "MaasBudgetForecastOverLimit",
                expr: format!("{} > {}", n.forecast, n.limit),
                hold,
                severity: "warning",
                summary: "A budget will be exceeded at the current rate".into(),
                description: format!("At the average rate so far budget {{{{ $labels.{b} }}}} ends its {{{{ $labels.{} }}}} at {{{{ $value }}}}, over its limit.", n.period_label),
            },
        ],
    }
}

/// YAML for a string: a JSON string is a YAML double-quoted scalar.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The rule file (`groups:`), as Prometheus' `rule_files` and `promtool check rules` read it.
pub fn render(groups: &[Group]) -> String {
    let mut out = String::from(
        "# Generated by `maas-usage rules`: alerts on the plugin's own metrics (names from plugin.yaml).\n\
         # Load it with Prometheus' rule_files; docs/alerting.md shows the PrometheusRule wrapper.\n\
         groups:\n",
    );
    for g in groups {
        let _ = writeln!(out, "  - name: {}\n    rules:", q(g.name));
        for r in &g.rules {
            let _ = writeln!(out, "      - alert: {}", r.alert);
            let _ = writeln!(out, "        expr: {}", q(&r.expr));
            if !r.hold.is_zero() {
                let _ = writeln!(out, "        for: {}", prom_duration(r.hold));
            }
            let _ = writeln!(out, "        labels:\n          severity: {}", r.severity);
            let _ = writeln!(
                out,
                "        annotations:\n          summary: {}\n          description: {}",
                q(&r.summary),
                q(&r.description)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_prometheus_ones() {
        assert_eq!(prom_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(prom_duration(Duration::from_secs(600)), "10m");
        assert_eq!(prom_duration(Duration::from_secs(86_400 + 3_600)), "1d1h");
        assert_eq!(prom_duration(Duration::ZERO), "0s");
    }
}
