//! The spec's spend through the binary: `validate` locates every error in prices, budgets and
//! alerts (exit 2); `run` emits `maas_model_cost` for every usage point of a priced model, exact
//! against the simulator per model, key and key group (a price change inside the window
//! included) in every format, settles period costs with their buckets once, and sums per-key
//! series into key groups (`breakdown: [model, key_group]` and `[key_group]`) exactly.

use crate::common;

use common::*;
use maas_usage::sim::model::DEFAULT_MODELS;
use maas_usage::sim::Simulator;

const HEAD: &str = "apiVersion: maas-usage/v1\nkey_groups:\n  team-a: [key-a1]\nqueries:\n  - name: m\n    source: cloud_eye\n";

#[test]
fn validate_locates_every_spend_error() {
    let spec = spec_file(&format!(
        "{HEAD}prices:\n  currency: CNX\n  models:\n    - {{model: a, input: 1, output: 1}}\n    - {{model: a, input: 2, output: 2}}\nbudgets:\n  - {{name: b, key_group: ghost, tokens: 1, period: day}}\n"
    ));
    let out = bin().arg("validate").arg(&spec).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for want in [
        "spec.yaml:8:13: prices.currency: `CNX` is not an ISO 4217 currency code",
        "spec.yaml:11:15: prices.models[1].model: `a` has two entries without since",
        "spec.yaml:13:26: budgets[0].key_group: unknown key group `ghost`",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
}

/// The teams of the grouped tests: key-ci and the keys of no group are `ungrouped`.
const TEAMS: &str = "team-a: [key-a1, key-a2], team-b: [key-b1]";

/// The keys of a group, as the simulator has them.
fn keys_of(group: &str) -> Vec<&'static str> {
    match group {
        "team-a" => vec!["key-a1", "key-a2"],
        "team-b" => vec!["key-b1"],
        _ => vec!["key-ci"],
    }
}

/// A grouped run of the last 7 days (a price change inside): its usage and cost lines.
fn grouped_run(sim: &Simulator, breakdown: &str, format: &str) -> std::process::Output {
    let spec = spec_for(sim)
        .section("key_groups", TEAMS)
        .section("prices", PRICES)
        .query(&format!(
            "name: teams, source: cloud_eye, range: last_7d, breakdown: {breakdown}"
        ))
        .write();
    run_ok(&spec, &["--format", format])
}

#[test]
fn tokens_and_cost_per_model_and_key_group_are_exact_sums_of_the_keys() {
    let sim = sim();
    let out = grouped_run(&sim, "[model, key_group]", "influx");
    let text = stdout(&out);
    let lines = parse_lp(&text);
    let usage = usage_of(&lines);
    assert!(
        usage.iter().all(|l| l.tag("api_key").is_none()),
        "no per-key series:\n{text}"
    );
    let mut seen: Vec<(String, String)> = usage
        .iter()
        .map(|l| {
            (
                l.tag("model").unwrap().to_string(),
                l.tag("key_group").unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut want: Vec<(String, String)> = DEFAULT_MODELS
        .iter()
        .flat_map(|(_, m, _)| {
            ["team-a", "team-b", "ungrouped"].map(|g| (m.to_string(), g.to_string()))
        })
        .collect();
    want.sort();
    assert_eq!(seen, want, "a series per model and group");
    for l in &usage {
        let (model, group) = (l.tag("model").unwrap(), l.tag("key_group").unwrap());
        let (start, end) = window_of(&lines, l);
        let (id, _, _) = DEFAULT_MODELS.iter().find(|(_, n, _)| *n == model).unwrap();
        let tokens: u64 = keys_of(group)
            .iter()
            .map(|k| sim.model_usage(id, Some(k), start, end).total_tokens)
            .sum();
        assert_eq!(
            l.int("total_tokens"),
            Some(tokens as i64),
            "{model} {group}"
        );
    }
    let costs = cost_lines(&text);
    assert_eq!(costs.len(), 6, "two priced models, three groups:\n{text}");
    for (l, exact) in &costs {
        let (model, group) = (l.tag("model").unwrap(), l.tag("key_group").unwrap());
        let (start, end) = window_of(&lines, l);
        let mut femto = [0u128; 3];
        for k in keys_of(group) {
            let c = hand_cost(&sim, model, Some(k), start, end).unwrap();
            for (f, c) in femto.iter_mut().zip(c) {
                *f += femto_of(&c);
            }
        }
        let dec = |femto| maas_usage::spend::Cost { femto }.to_decimal_string();
        assert_eq!(exact.clone(), femto.map(dec), "{model} {group}");
    }
}

#[test]
fn tokens_and_cost_per_key_group_sum_every_model() {
    let sim = sim();
    let out = grouped_run(&sim, "[key_group]", "influx");
    let text = stdout(&out);
    let lines = parse_lp(&text);
    let usage = usage_of(&lines);
    let mut groups: Vec<&str> = usage.iter().map(|l| l.tag("key_group").unwrap()).collect();
    groups.sort_unstable();
    assert_eq!(groups, ["team-a", "team-b", "ungrouped"]);
    for l in &usage {
        assert!(
            l.tag("model").is_none() && l.tag("api_key").is_none(),
            "{l:?}"
        );
        let group = l.tag("key_group").unwrap();
        let (start, end) = window_of(&lines, l);
        let tokens: u64 = DEFAULT_MODELS
            .iter()
            .flat_map(|(id, _, _)| keys_of(group).into_iter().map(move |k| (id, k)))
            .map(|(id, k)| sim.model_usage(id, Some(k), start, end).total_tokens)
            .sum();
        assert_eq!(l.int("total_tokens"), Some(tokens as i64), "{group}");
    }
    // my-glm-4-9b has no price: a group's cost over every model would be a part passing for
    // the whole, so none is emitted.
    assert!(cost_lines(&text).is_empty(), "{text}");
    // Over the priced models only, each group's cost is the exact sum of its keys'.
    let spec = spec_for(&sim)
        .section("key_groups", TEAMS)
        .section("prices", PRICES)
        .query("name: teams, source: cloud_eye, range: last_7d, breakdown: [key_group], models: [DeepSeek-V3, Qwen3-32B]")
        .write();
    let text = stdout(&run_ok(&spec, &["--format", "influx"]));
    let lines = parse_lp(&text);
    let costs = cost_lines(&text);
    assert_eq!(costs.len(), 3, "team-a, team-b, ungrouped:\n{text}");
    for (l, exact) in &costs {
        let group = l.tag("key_group").unwrap();
        let (start, end) = window_of(&lines, l);
        let total: u128 = ["DeepSeek-V3", "Qwen3-32B"]
            .iter()
            .flat_map(|m| keys_of(group).into_iter().map(move |k| (m, k)))
            .map(|(m, k)| hand_cost(&sim, m, Some(k), start, end).unwrap())
            .map(|c| femto_of(&c[0]))
            .sum();
        assert!(total > 0);
        assert_eq!(
            exact[0],
            maas_usage::spend::Cost { femto: total }.to_decimal_string(),
            "{group}"
        );
    }
    // validate and serve accept it too (no more refusal).
    let spec = spec_for(&sim)
        .section("key_groups", TEAMS)
        .query("name: teams, source: cloud_eye, breakdown: [key_group]")
        .write();
    let ok = bin().arg("validate").arg(&spec).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
}

/// A decimal the outputs wrote, back in femto-units.
fn femto_of(decimal: &str) -> u128 {
    let (whole, frac) = decimal.split_once('.').unwrap_or((decimal, ""));
    let frac = format!("{frac:0<15}");
    whole.parse::<u128>().unwrap() * 1_000_000_000_000_000 + frac.parse::<u128>().unwrap()
}

/// DeepSeek-V3 at 2/8 per 1M tokens, 1/4 from 2026-05-20 (Shanghai midnight, inside the last
/// 48 hours at NOW); Qwen3-32B at 0.5/2; my-glm-4-9b unpriced.
const PRICES: &str = "currency: CNY, per: 1M, models: [{model: DeepSeek-V3, input: 2.0, output: 8.0}, {model: DeepSeek-V3, since: 2026-05-20, input: 1.0, output: 4.0}, {model: Qwen3-32B, input: \"0.5\", output: \"2\"}]";

/// PRICES' change, 2026-05-20, at Shanghai's midnight (the specs' zone unless they say).
const CHANGE: &str = "2026-05-20T00:00:00+08:00";

/// The femto-units of one token at each side's price, for a model at an instant, with PRICES'
/// change at `change` (its midnight in the spec's zone).
fn rates(model: &str, at_ms: i64, change: i64) -> Option<(u128, u128)> {
    const F: u128 = 1_000_000_000; // femto-units per token at 1 per 1M
    match model {
        "DeepSeek-V3" if at_ms < change => Some((2 * F, 8 * F)),
        "DeepSeek-V3" => Some((F, 4 * F)),
        "Qwen3-32B" => Some((F / 2, 2 * F)),
        _ => None,
    }
}

/// The exact cost, as the line protocol writes it, of a model's (or key's) usage over
/// `[start, end)`, priced by hand: each side of the price change at its own price.
fn hand_cost(
    sim: &Simulator,
    model: &str,
    key: Option<&str>,
    start: i64,
    end: i64,
) -> Option<[String; 3]> {
    hand_cost_at(sim, model, key, (start, end), ms(CHANGE))
}

/// [`hand_cost`] with PRICES' change at `change`.
fn hand_cost_at(
    sim: &Simulator,
    model: &str,
    key: Option<&str>,
    (start, end): (i64, i64),
    change: i64,
) -> Option<[String; 3]> {
    let (id, _, _) = DEFAULT_MODELS.iter().find(|(_, n, _)| *n == model)?;
    let (mut input, mut output) = (0u128, 0u128);
    for (s, e) in [
        (start, change.clamp(start, end)),
        (change.clamp(start, end), end),
    ] {
        let (i, o) = rates(model, s, change)?;
        let u = sim.model_usage(id, key, s, e);
        input += u128::from(u.prompt_tokens) * i;
        output += u128::from(u.completion_tokens) * o;
    }
    let dec = |femto| maas_usage::spend::Cost { femto }.to_decimal_string();
    Some([dec(input + output), dec(input), dec(output)])
}

/// The `maas_model_cost` lines of line protocol `text`: (tags, [cost, input_cost,
/// output_cost] exactly as written), and the usage lines' windows by their tags.
fn cost_lines(text: &str) -> Vec<(Line, [String; 3])> {
    let parsed = parse_lp(text);
    text.lines()
        .zip(parsed)
        .filter(|(_, l)| l.measurement == "maas_model_cost")
        .map(|(raw, l)| {
            let field = |name: &str| {
                raw.split([' ', ','])
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .unwrap_or_else(|| panic!("no {name} in {raw}"))
                    .to_string()
            };
            let exact = [field("cost"), field("input_cost"), field("output_cost")];
            (l, exact)
        })
        .collect()
}

/// The `maas_model_usage` lines of `lines`.
fn usage_of(lines: &[Line]) -> Vec<&Line> {
    lines
        .iter()
        .filter(|l| l.measurement == "maas_model_usage")
        .collect()
}

/// The window `[start, end)` of the usage line with the same series tags as `cost`.
fn window_of(usage: &[Line], cost: &Line) -> (i64, i64) {
    let u = usage
        .iter()
        .find(|u| {
            u.measurement == "maas_model_usage"
                && ["query", "model", "model_id", "api_key", "api_key_id"]
                    .iter()
                    .all(|t| u.tag(t) == cost.tag(t))
        })
        .unwrap_or_else(|| panic!("no usage line for {cost:?}"));
    let end = u.timestamp.unwrap() / 1_000_000;
    (end - u.int("window_seconds").unwrap() * 1000, end)
}

fn run_priced(sim: &Simulator, query: &str) -> std::process::Output {
    run_ok(
        &spec_for(sim).section("prices", PRICES).query(query).write(),
        &[],
    )
}

/// `run` of `spec` with `args`, which must succeed.
fn run_ok(spec: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = run(spec, args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

#[test]
fn cost_per_model_is_exact_across_a_price_change_inside_the_window() {
    let sim = sim();
    let out = run_priced(&sim, "name: m, source: cloud_eye, range: last_7d");
    let text = stdout(&out);
    let usage = parse_lp(&text);
    let costs = cost_lines(&text);
    let mut models: Vec<&str> = costs.iter().map(|(l, _)| l.tag("model").unwrap()).collect();
    models.sort_unstable();
    assert_eq!(
        models,
        ["DeepSeek-V3", "Qwen3-32B"],
        "priced models only:\n{text}"
    );
    for (line, exact) in &costs {
        let (start, end) = window_of(&usage, line);
        assert!(start < ms(CHANGE) && ms(CHANGE) < end);
        let model = line.tag("model").unwrap();
        assert_eq!(line.tag("currency"), Some("CNY"));
        assert_eq!(
            Some(exact.clone()),
            hand_cost(&sim, model, None, start, end),
            "{model}"
        );
    }
    let err = stderr(&out);
    let unpriced: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("W! no price for"))
        .collect();
    assert_eq!(unpriced, ["W! no price for 1 model(s): my-glm-4-9b; they get no cost (add them to `prices.models` with your contract's prices)"]);
}

#[test]
fn cost_per_key_is_exact_across_a_price_change_inside_the_window() {
    let sim = sim();
    let out = run_priced(
        &sim,
        "name: k, source: cloud_eye, range: last_7d, breakdown: [model, api_key]",
    );
    let text = stdout(&out);
    let usage = parse_lp(&text);
    let costs = cost_lines(&text);
    assert!(costs.len() >= 4, "{text}");
    for (line, exact) in &costs {
        let (start, end) = window_of(&usage, line);
        let (model, key) = (line.tag("model").unwrap(), line.tag("api_key").unwrap());
        assert_eq!(
            Some(exact.clone()),
            hand_cost(&sim, model, Some(key), start, end),
            "{model} {key}"
        );
    }
}

#[test]
fn a_price_change_off_the_hour_is_read_at_five_minutes_and_priced_exactly() {
    // Kolkata's midnight is 18:30 UTC: inside an hour of the window's hourly datapoints. That
    // hour is read at five minutes, so each side gets its own price, exactly.
    let sim = sim();
    let spec = spec_for(&sim)
        .timezone("Asia/Kolkata")
        .section("prices", PRICES)
        .query("name: m, source: cloud_eye, range: last_7d")
        .write();
    let out = run_ok(&spec, &[]);
    let text = stdout(&out);
    let lines = parse_lp(&text);
    let costs = cost_lines(&text);
    let (l, exact) = costs
        .iter()
        .find(|(l, _)| l.tag("model") == Some("DeepSeek-V3"))
        .unwrap_or_else(|| panic!("{text}\n{}", stderr(&out)));
    let (start, end) = window_of(&lines, l);
    let change = ms("2026-05-20T00:00:00+05:30");
    assert!(start < change && change < end && change % 3_600_000 != 0);
    assert_eq!(
        Some(exact.clone()),
        hand_cost_at(&sim, "DeepSeek-V3", None, (start, end), change),
        "{text}"
    );
    assert!(
        !stderr(&out).contains("cost is left out"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_cost_that_cannot_be_exact_leaves_a_team_s_tokens_in_and_its_cost_out() {
    // DeepSeek-V3 is priced only from a date inside the window: its cost before it cannot be
    // known. Per model and key group, its groups keep their token series (no team loses its
    // usage for a price), without a cost.
    let sim = sim();
    let spec = spec_for(&sim)
        .section("key_groups", TEAMS)
        .section("prices", "currency: CNY, per: 1M, models: [{model: DeepSeek-V3, since: 2026-05-20, input: 1.0, output: 4.0}, {model: Qwen3-32B, input: \"0.5\", output: \"2\"}]")
        .query("name: teams, source: cloud_eye, range: last_7d, breakdown: [model, key_group]")
        .write();
    let out = run_ok(&spec, &[]);
    let text = stdout(&out);
    let lines = parse_lp(&text);
    let ds: Vec<&Line> = usage_of(&lines)
        .into_iter()
        .filter(|l| l.tag("model") == Some("DeepSeek-V3"))
        .collect();
    assert_eq!(ds.len(), 3, "team-a, team-b, ungrouped:\n{text}");
    let ds_id = DEFAULT_MODELS
        .iter()
        .find(|(_, name, _)| *name == "DeepSeek-V3")
        .unwrap()
        .0;
    for l in ds {
        let group = l.tag("key_group").unwrap();
        let (start, end) = window_of(&lines, l);
        let tokens: u64 = keys_of(group)
            .into_iter()
            .map(|k| sim.model_usage(ds_id, Some(k), start, end).total_tokens)
            .sum();
        assert_eq!(l.int("total_tokens"), Some(tokens as i64), "{group}");
    }
    assert!(
        cost_lines(&text)
            .iter()
            .all(|(l, _)| l.tag("model") == Some("Qwen3-32B")),
        "{text}"
    );
    assert!(
        !stderr(&out).contains("key_group="),
        "no group fails: {}",
        stderr(&out)
    );
}

/// The sample of `family` for `model` on a Prometheus page, as written.
fn prom_sample<'a>(page: &'a str, family: &str, model: &str) -> Option<&'a str> {
    page.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .find(|l| l.contains(&format!("maas_model=\"{model}\"")))
        .and_then(|l| l.rsplit(' ').next())
}

#[test]
fn period_cost_settles_with_its_buckets_once_and_counts_up_exactly() {
    let sim = sim();
    let spec = spec_for(&sim)
        .section("prices", PRICES)
        .query("name: hourly, source: cloud_eye, range: {every: 1h, delay: 2h, backfill: 4h}, models: [DeepSeek-V3]")
        .write();
    let state = tempdir().join("state");
    let at = |now: &str, format: &str| {
        sim.configure(|c| c.now = Some(chrono::DateTime::parse_from_rfc3339(now).unwrap().into()));
        let out = authed()
            .args(["run", "--now", now, "--format", format, "--spec"])
            .arg(&spec)
            .arg("--state-dir")
            .arg(&state)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    let first = at("2026-05-21T10:00:00+08:00", "influx");
    let costs = cost_lines(&first);
    assert_eq!(costs.len(), 2, "one cost per bucket:\n{first}");
    let usage = parse_lp(&first);
    for (line, exact) in &costs {
        let end = line.timestamp.unwrap() / 1_000_000;
        let bucket = usage
            .iter()
            .find(|u| u.measurement == "maas_model_usage" && u.timestamp == line.timestamp)
            .unwrap();
        assert_eq!(bucket.int("period_seconds"), Some(3600));
        let want = hand_cost(&sim, "DeepSeek-V3", None, end - 3_600_000, end);
        assert_eq!(Some(exact.clone()), want);
    }
    let again = at("2026-05-21T10:00:00+08:00", "influx");
    assert!(cost_lines(&again).is_empty(), "settled once:\n{again}");
    // The Prometheus page (its own checkpoints): counters of the exact cost from the first
    // bucket, the same when nothing new settled, and two buckets more two hours later.
    let hand = |to: &str| {
        let from = ms("2026-05-21T06:00:00+08:00");
        hand_cost(&sim, "DeepSeek-V3", None, from, ms(to)).unwrap()
    };
    for (now, through) in [
        ("2026-05-21T10:00:00+08:00", "2026-05-21T08:00:00+08:00"),
        ("2026-05-21T10:00:00+08:00", "2026-05-21T08:00:00+08:00"),
        ("2026-05-21T12:00:00+08:00", "2026-05-21T10:00:00+08:00"),
    ] {
        let page = at(now, "prometheus");
        let want = hand(through);
        for (family, exact) in [
            ("maas_model_period_cost_total", &want[0]),
            ("maas_model_period_input_cost_total", &want[1]),
            ("maas_model_period_output_cost_total", &want[2]),
        ] {
            assert_eq!(
                prom_sample(&page, family, "DeepSeek-V3"),
                Some(exact.as_str()),
                "{now} {family}\n{page}"
            );
        }
        assert!(
            prom_sample(&page, "maas_model_cost", "DeepSeek-V3").is_none(),
            "no window gauge for buckets"
        );
    }
}

#[test]
fn every_output_format_carries_the_cost_and_the_budgets() {
    let sim = sim();
    let path = with_budgets(
        spec_for(&sim)
            .section("key_groups", TEAMS)
            .section("prices", PRICES)
            .query("name: m, source: cloud_eye, range: yesterday, metrics: [prompt_tokens, completion_tokens]")
            .output("tags: {env: demo}")
            .write(),
    );
    let render = |format: &str| render_ok(&path, format);
    insta::with_settings!({filters => run_filters()}, {
        insta::assert_snapshot!("cost_influx", render("influx"));
        insta::assert_snapshot!("cost_json", render("json"));
        insta::assert_snapshot!("cost_table", render("table"));
        insta::assert_snapshot!("cost_prometheus", render("prometheus"));
        insta::assert_snapshot!("cost_otlp_json", render("otlp-json"));
    });
}

/// `spec` with three budgets: the project's money per month, DeepSeek-V3's money per month
/// (over its limit), team-a's tokens per day.
fn with_budgets(spec: std::path::PathBuf) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&spec).unwrap();
    let budgets = "budgets:\n  - {name: all-monthly, amount: 5000, period: month}\n  - {name: ds-monthly, model: DeepSeek-V3, amount: 1, period: month}\n  - {name: team-a-daily, key_group: team-a, tokens: 100000000, period: day}\n";
    std::fs::write(&spec, format!("{text}{budgets}")).unwrap();
    spec
}

/// The budgets' spec: the teams, the prices, one query of yesterday per model, the three
/// budgets of `with_budgets`, and `limits` when given.
fn budget_spec(sim: &Simulator, limits: Option<&str>) -> std::path::PathBuf {
    let mut b = spec_for(sim)
        .section("key_groups", TEAMS)
        .section("prices", PRICES)
        .query("name: m, source: cloud_eye, range: yesterday");
    if let Some(l) = limits {
        b = b.limits(l);
    }
    with_budgets(b.write())
}

/// The `maas_budget` lines of `text`, by budget: (tags, fields as written).
fn budget_lines(text: &str) -> std::collections::BTreeMap<String, (Line, String)> {
    text.lines()
        .zip(parse_lp(text))
        .filter(|(_, l)| l.measurement == "maas_budget")
        .map(|(raw, l)| (l.tag("budget").unwrap().to_string(), (l, raw.to_string())))
        .collect()
}

/// A field of a raw line, as written.
fn raw_field(raw: &str, name: &str) -> String {
    raw.split([' ', ','])
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {raw}"))
        .to_string()
}

#[test]
fn budgets_used_equals_the_period_to_date_sum() {
    let sim = sim();
    let spec = budget_spec(&sim, None);
    let out = run_ok(&spec, &[]);
    let text = stdout(&out);
    let budgets = budget_lines(&text);
    assert_eq!(budgets.len(), 3, "{text}");
    assert!(
        text.lines()
            .filter(|l| l.starts_with("maas_model_usage"))
            .all(|l| l.contains("query=m,")),
        "the budgets' own series are not emitted:\n{text}"
    );
    let (month, now) = (ms("2026-05-01T00:00:00+08:00"), ms(NOW));
    let money = |models: &[&str]| {
        let femto: u128 = models
            .iter()
            .filter_map(|m| hand_cost(&sim, m, None, month, now))
            .map(|c| femto_of(&c[0]))
            .sum();
        femto
    };
    let dec = |femto| maas_usage::spend::Cost { femto }.to_decimal_string();
    let month_len = (ms("2026-06-01T00:00:00+08:00") - month) as u128;
    let elapsed = (now - month) as u128;
    for (name, femto) in [
        (
            "all-monthly",
            money(&["DeepSeek-V3", "Qwen3-32B", "my-glm-4-9b"]),
        ),
        ("ds-monthly", money(&["DeepSeek-V3"])),
    ] {
        let (l, raw) = &budgets[name];
        assert_eq!(l.tag("currency"), Some("CNY"));
        assert_eq!(l.tag("period"), Some("month"));
        assert_eq!(raw_field(raw, "used"), dec(femto), "{name}");
        assert_eq!(
            raw_field(raw, "forecast"),
            dec(femto * month_len / elapsed),
            "{name}"
        );
        assert_eq!(l.int("period_start"), Some(month / 1000));
    }
    assert_eq!(budgets["ds-monthly"].0.tag("model"), Some("DeepSeek-V3"));
    let limit = femto_of(&raw_field(&budgets["ds-monthly"].1, "limit"));
    let ratio: f64 = raw_field(&budgets["ds-monthly"].1, "used_ratio")
        .parse()
        .unwrap();
    assert_eq!(ratio, money(&["DeepSeek-V3"]) as f64 / limit as f64);
    // Tokens of team-a's keys over every model since Shanghai's midnight.
    let today = ms("2026-05-21T00:00:00+08:00");
    let tokens: u64 = DEFAULT_MODELS
        .iter()
        .flat_map(|(id, _, _)| keys_of("team-a").into_iter().map(move |k| (id, k)))
        .map(|(id, k)| {
            let u = sim.model_usage(id, Some(k), today, now);
            u.prompt_tokens + u.completion_tokens
        })
        .sum();
    let (l, raw) = &budgets["team-a-daily"];
    assert_eq!(
        (l.tag("unit"), l.tag("key_group"), l.tag("period")),
        (Some("tokens"), Some("team-a"), Some("day"))
    );
    assert_eq!(raw_field(raw, "used"), tokens.to_string());
    assert!(tokens > 0);
}

#[test]
fn a_budget_the_cloud_eye_budget_cannot_afford_is_skipped_with_a_warning_not_guessed() {
    let sim = sim();
    let spec = budget_spec(&sim, Some("ces_requests_per_minute: 5"));
    let out = run_ok(&spec, &[]);
    let text = stdout(&out);
    let err = stderr(&out);
    assert!(
        text.contains("maas_model_usage,"),
        "the spec's own query first:\n{text}\n{err}"
    );
    // The month's window does not fit in what is left of the Cloud Eye budget: its budgets are
    // skipped with one W!, neither guessed nor failed lines of the spec's series.
    let budgets = budget_lines(&text);
    assert!(
        !budgets.contains_key("all-monthly") && !budgets.contains_key("ds-monthly"),
        "{text}"
    );
    let skipped: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("W! budget(s) all-monthly, ds-monthly skipped this collection"))
        .collect();
    assert_eq!(skipped.len(), 1, "{err}");
    assert!(!err.lines().any(|l| l.starts_with("E! ")), "{err}");
    assert!(text.contains("series_failed=0i"), "{text}");
}

#[test]
fn a_budget_s_forecast_takes_the_rate_over_the_time_its_use_covers_not_up_to_now() {
    // At 10:17 the month's use is read up to 10:00 (hour-aligned): the rate so far is that use
    // over 10:00 - the month's start. Over 10:17 it would forecast too little.
    let at = "2026-05-21T10:17:00+08:00";
    let mut cfg = sim_config();
    cfg.now = chrono::DateTime::from_timestamp_millis(ms(at));
    let sim = start(cfg);
    let spec = budget_spec(&sim, None);
    let out = authed()
        .arg("run")
        .arg("--spec")
        .arg(&spec)
        .args(["--now", at])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let budgets = budget_lines(&text);
    let (month, covered) = (ms("2026-05-01T00:00:00+08:00"), ms(NOW));
    let (_, raw) = &budgets["ds-monthly"];
    let used = femto_of(&raw_field(raw, "used"));
    assert!(used > 0);
    let month_len = (ms("2026-06-01T00:00:00+08:00") - month) as u128;
    let dec = |femto| maas_usage::spend::Cost { femto }.to_decimal_string();
    assert_eq!(
        raw_field(raw, "forecast"),
        dec(used * month_len / (covered - month) as u128),
        "{text}"
    );
}

#[test]
fn a_budget_s_own_series_take_no_part_of_max_series() {
    // The query emits three model series, max_series allows them; the key-group budget reads
    // a series per model and key, which are summed and dropped, never emitted.
    let sim = sim();
    let spec = budget_spec(&sim, Some("max_series: 3"));
    let out = run_ok(&spec, &[]);
    let text = stdout(&out);
    assert!(
        budget_lines(&text).contains_key("team-a-daily"),
        "{text}\n{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("max_series"), "{}", stderr(&out));
}
