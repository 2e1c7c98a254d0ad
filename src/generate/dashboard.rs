//! `maas-usage dashboard`: a Grafana dashboard (JSON model, schema 39) for a spec: spend per
//! model and per team, budgets, tokens in and out, requests and errors, the error ratio,
//! latency, and the collector's health. A Prometheus data source variable and variables for
//! query, model and key group; every expression reads the names of plugin.yaml ([`Names`]).

use serde_json::{json, Value};

use super::Names;
use crate::spec::Spec;

/// One panel: its title, kind, unit and PromQL targets (expression, legend).
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: &'static str,
    pub kind: &'static str,
    pub unit: &'static str,
    pub targets: Vec<(String, String)>,
    pub description: &'static str,
}

/// The template variables, as the expressions use them.
pub const VARIABLES: [&str; 3] = ["query", "model", "key_group"];

/// The panels of the dashboard, in order (two to a row).
pub fn panels(n: &Names) -> Vec<Panel> {
    let s = Sel::new(n);
    let mut out = spend_panels(&s);
    out.extend(usage_panels(&s));
    out.extend(health_panels(&s));
    out
}

/// The selections and legends the panels share.
struct Sel<'a> {
    n: &'a Names,
    /// The query and model variables.
    m: String,
    /// The key group variable.
    g: String,
}

impl<'a> Sel<'a> {
    fn new(n: &'a Names) -> Self {
        Sel {
            n,
            m: format!(
                "{}=~\"$query\",{}=~\"$model\"",
                n.query_label, n.model_label
            ),
            g: format!("{}=~\"$key_group\"", n.key_group_label),
        }
    }

    /// A legend of one label's value.
    fn legend(&self, l: &str) -> String {
        format!("{{{{{l}}}}}")
    }

    /// A metric summed per model, its legend the model and `what`.
    fn per_model(&self, metric: &str, what: &str) -> (String, String) {
        (
            format!("sum by ({}) ({metric}{{{}}})", self.n.model_label, self.m),
            format!("{{{{{}}}}} {what}", self.n.model_label),
        )
    }
}

/// Spend per model and team, budgets.
fn spend_panels(s: &Sel) -> Vec<Panel> {
    let (n, m, g) = (s.n, &s.m, &s.g);
    vec![
        Panel {
            title: "Spend per model",
            kind: "timeseries",
            unit: "none",
            targets: vec![(
                format!("sum by ({}, {}) ({}{{{m}}})", n.model_label, n.currency_label, n.cost),
                format!("{} {}", s.legend(&n.model_label), s.legend(&n.currency_label)),
            )],
            description: "Estimated cost of each model's window (query), from the spec's prices.",
        },
        Panel {
            title: "Spend per team",
            kind: "bargauge",
            unit: "none",
            targets: vec![(
                // Only the series of a key group breakdown: a model's own has no team.
                format!(
                    "sum by ({kg}, {}) ({}{{{m},{g},{kg}!=\"\"}})",
                    n.currency_label,
                    n.cost,
                    kg = n.key_group_label,
                ),
                format!("{} {}", s.legend(&n.key_group_label), s.legend(&n.currency_label)),
            )],
            description: "Estimated cost per key group (queries with breakdown [model, key_group] or [key_group]).",
        },
        Panel {
            title: "Budgets used",
            kind: "bargauge",
            unit: "percentunit",
            targets: vec![(
                format!("{}{{{g}}}", n.used_ratio),
                s.legend(&n.budget_label),
            )],
            description: "Each budget's period-to-date use over its limit.",
        },
        Panel {
            title: "Budgets: used, forecast and limit",
            kind: "timeseries",
            unit: "none",
            targets: vec![
                (format!("{}{{{g}}}", n.used), format!("{} used", s.legend(&n.budget_label))),
                (
                    format!("{}{{{g}}}", n.forecast),
                    format!("{} forecast", s.legend(&n.budget_label)),
                ),
                (format!("{}{{{g}}}", n.limit), format!("{} limit", s.legend(&n.budget_label))),
            ],
            description: "The period's projected total at the average rate so far, against the limit.",
        },
    ]
}

/// Tokens, requests, errors, the error ratio and latency per model.
fn usage_panels(s: &Sel) -> Vec<Panel> {
    let (n, m) = (s.n, &s.m);
    let mut out = vec![
        Panel {
            title: "Tokens in and out per model",
            kind: "timeseries",
            unit: "short",
            targets: vec![
                s.per_model(&n.model_input_tokens, "in"),
                s.per_model(&n.model_output_tokens, "out"),
            ],
            description: "Input and output tokens of each model over its query's window (Cloud Eye).",
        },
        Panel {
            title: "Tokens per API key",
            kind: "bargauge",
            unit: "short",
            targets: vec![(
                format!(
                    "sum by ({}) ({}{{{m},{}!=\"\"}}) + sum by ({}) ({}{{{m},{}!=\"\"}})",
                    n.api_key_label,
                    n.model_input_tokens,
                    n.api_key_label,
                    n.api_key_label,
                    n.model_output_tokens,
                    n.api_key_label
                ),
                s.legend(&n.api_key_label),
            )],
            description: "Input plus output tokens per API key (queries with breakdown [model, api_key]).",
        },
        Panel {
            title: "Requests and errors per model",
            kind: "timeseries",
            unit: "short",
            targets: vec![
                s.per_model(&n.model_requests, "requests"),
                s.per_model(&n.model_errors, "errors"),
            ],
            description: "Requests and failed requests of each model over its query's window.",
        },
        Panel {
            title: "Error ratio per model",
            kind: "timeseries",
            unit: "percentunit",
            targets: vec![(
                format!(
                    "sum by ({ml}) ({e}{{{m}}}) / sum by ({ml}) ({r}{{{m}}} > 0)",
                    ml = n.model_label,
                    e = n.model_errors,
                    r = n.model_requests
                ),
                s.legend(&n.model_label),
            )],
            description: "Errors over requests (the rule MaasModelErrorRatioHigh fires above the spec's alerts.error_ratio).",
        },
    ];
    if let Some(ttft) = &n.model_ttft_p99 {
        out.push(Panel {
            title: "Time to first token, p99",
            kind: "timeseries",
            unit: "s",
            targets: vec![(
                format!("max by ({}) ({ttft}{{{m}}})", n.model_label),
                s.legend(&n.model_label),
            )],
            description: "The highest minute of each model's TTFT p99 over its query's window.",
        });
    }
    out
}

/// The collector's health.
fn health_panels(s: &Sel) -> Vec<Panel> {
    let n = s.n;
    vec![
        Panel {
            title: "Since the last successful collection",
            kind: "stat",
            unit: "s",
            targets: vec![(format!("time() - {}", n.last_success), s.legend("instance"))],
            description: "Above two collection intervals the rule MaasCollectorStale fires.",
        },
        Panel {
            title: "Series collected and failed",
            kind: "timeseries",
            unit: "short",
            targets: vec![(
                format!("sum by ({}) ({})", n.outcome_label, n.series),
                s.legend(&n.outcome_label),
            )],
            description: "Series per collection, ok and failed (each failure is an E! line on the plugin's stderr).",
        },
        Panel {
            title: "Calls, throttling and duration",
            kind: "timeseries",
            unit: "short",
            targets: vec![
                (format!("sum({})", n.calls), "calls".into()),
                (format!("sum({})", n.throttled), "429".into()),
                (format!("max({})", n.duration), "duration (s)".into()),
            ],
            description: "Calls of the last collection, those answered 429, and its duration.",
        },
    ]
}

fn variable(name: &str, label: &str, query: String) -> Value {
    json!({
        "type": "query",
        "name": name,
        "label": label,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": "StandardVariableQuery"},
        "definition": query,
        "refresh": 2,
        "includeAll": true,
        "allValue": ".*",
        "multi": true,
        "current": {"selected": true, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    })
}

/// The dashboard's JSON model.
pub fn render(spec: &Spec, n: &Names) -> String {
    let panels: Vec<Value> = panels(n)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let targets: Vec<Value> = p
                .targets
                .iter()
                .enumerate()
                .map(|(j, (expr, legend))| {
                    json!({
                        "datasource": {"type": "prometheus", "uid": "${datasource}"},
                        "expr": expr,
                        "legendFormat": legend,
                        "refId": char::from(b'A' + j as u8).to_string(),
                    })
                })
                .collect();
            json!({
                "id": i + 1,
                "type": p.kind,
                "title": p.title,
                "description": p.description,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i / 2) * 8},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "options": {},
                "targets": targets,
            })
        })
        .collect();
    let currency = spec
        .prices
        .as_ref()
        .map(|p| {
            format!(
                " Costs are estimates in {} from the spec's prices.",
                p.currency
            )
        })
        .unwrap_or_default();
    let doc = json!({
        "title": "MaaS usage and spend",
        "uid": "maas-usage",
        "description": format!("Generated by `maas-usage dashboard`: Huawei Cloud MaaS usage per model, key and team, spend, budgets and the collector's health.{currency}"),
        "tags": ["maas-usage", "huawei-cloud"],
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "1m",
        "templating": {"list": [
            {
                "type": "datasource",
                "name": "datasource",
                "label": "Prometheus",
                "query": "prometheus",
                "current": {},
            },
            variable(VARIABLES[0], "Query", format!("label_values({}, {})", n.model_requests, n.query_label)),
            variable(VARIABLES[1], "Model", format!("label_values({}{{{}=~\"$query\"}}, {})", n.model_requests, n.query_label, n.model_label)),
            variable(VARIABLES[2], "Key group", format!("label_values({}, {})", n.used_ratio, n.key_group_label)),
        ]},
        "panels": panels,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}
