//! Cloud Eye (CES) `SYS.MaaS` in the simulator: per-model and per-API-key minute metrics derived
//! from the same hourly buckets as ShowStatistics, and the three endpoints that serve them
//! (ListMetrics, BatchListMetricData, the MaaS monitor's instance names).
//!
//! Every minute of a series is computed from the hourly buckets of [`super::model`], so any
//! window's exact figures are known to the tests ([`Dataset::ces_minute`],
//! [`Dataset::model_usage`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::model::{fnv, hours_with_data, key_id, minute_of, mix, Dataset, SimModel, MINUTE_MS};
use super::{data_now, lock, not_published, query_pairs, Reply, Simulator};
use crate::domain::range::{DAY_MS, HOUR_MS};
use crate::domain::Usage;

pub const NAMESPACE: &str = "SYS.MaaS";
/// The metrics SYS.MaaS has in the simulator, with their units.
pub const METRICS: &[(&str, &str)] = &[
    ("completion_tokens", "tokens"),
    ("latency_avg", "ms"),
    ("prompt_tokens", "tokens"),
    ("req_count", "count"),
    ("req_count_2xx", "count"),
    ("req_count_429", "count"),
    ("req_count_4xx", "count"),
    ("req_count_5xx", "count"),
    ("req_count_error", "count"),
    ("total_tokens", "tokens"),
    ("tpot_p50", "ms"),
    ("tpot_p99", "ms"),
    ("ttft_p50", "ms"),
    ("ttft_p90", "ms"),
    ("ttft_p99", "ms"),
];
/// BatchListMetricData's periods (seconds) and the longest window each keeps (ms): a longer
/// one is shortened to end at `to` (the rule of the API reference before 2024, still in some
/// regions' copies; the simulator keeps it on top of [`MAX_POINTS`]).
pub const PERIODS: &[(&str, i64)] = &[
    ("1", 4 * HOUR_MS),
    ("60", 4 * HOUR_MS),
    ("300", DAY_MS),
    ("1200", 3 * DAY_MS),
    ("3600", 10 * DAY_MS),
    ("14400", 30 * DAY_MS),
    ("86400", 180 * DAY_MS),
];
pub const FILTERS: &[&str] = &["average", "max", "min", "sum", "variance"];
/// Most metric objects in one BatchListMetricData request.
pub const MAX_BATCH: usize = 500;
/// Most datapoints one BatchListMetricData answer holds: objects x (to - from) / period must not
/// exceed it, else `from` moves to `to - 3000 / objects` periods (the current API reference,
/// "Querying Monitoring Data in Batches", ces_03_0034).
pub const MAX_POINTS: i64 = 3000;
/// Most entries in one ListMetrics page, and the default.
pub const MAX_LIST: usize = 1000;
/// Most instances in one page of the instance names, and the default.
pub const MAX_INSTANCES: usize = 100;

/// The simulator's Cloud Eye switches.
#[derive(Clone, Debug, Default)]
pub struct CloudEyeSim {
    /// A ListMetrics page never holds more entries than this, whatever `limit` says.
    pub page_cap: Option<usize>,
    /// When set (and not 200), the instance-names path answers this status.
    pub instances_status: Option<u16>,
    /// ListMetrics ignores `start` and answers its first page again and again, with a marker
    /// that alternates between two values (a server whose paging loops: A, B, A, B...).
    pub looping_markers: bool,
    /// BatchListMetricData answers this value for every datapoint of one model's series under
    /// one filter (a broken or hostile Cloud Eye).
    pub forged: Option<Forged>,
}

/// A value BatchListMetricData answers instead of the real one ([`CloudEyeSim::forged`]).
#[derive(Clone, Debug)]
pub struct Forged {
    /// The model (`maas_api_id`) whose series (service level and keys) answer it.
    pub model_id: String,
    /// Under which filter (`sum` for counts, `max` for latency).
    pub filter: String,
    /// Any JSON: a negative, fractional or huge number, a string...
    pub value: Value,
}

/// The unit ListMetrics and BatchListMetricData report for a metric the simulator has.
pub fn unit(metric: &str) -> Option<&'static str> {
    METRICS.iter().find(|(m, _)| *m == metric).map(|(_, u)| *u)
}

/// One Cloud Eye series: a model, and a non-empty API key name (`None`: the service level).
#[derive(Clone, Copy, Debug)]
struct Series<'a> {
    model: &'a SimModel,
    key: Option<&'a str>,
}

impl Series<'_> {
    fn dimensions(&self) -> Vec<(&'static str, String)> {
        let mut d = vec![("maas_api_id", self.model.id.clone())];
        if let Some(k) = self.key {
            d.push(("maas_key_id", key_id(k)));
        }
        d
    }

    /// `maas_api_id:ID[,maas_key_id:KID]`, the order and marker text of ListMetrics.
    fn rendered(&self) -> String {
        self.dimensions()
            .iter()
            .map(|(n, v)| format!("{n}:{v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What a series' latency is drawn from: the hashes of its model id and of its key id (0 at the
/// service level), computed once per series.
fn latency_seed(model_id: &str, key: Option<&str>) -> (u64, u64) {
    (fnv(model_id), key.map_or(0, |k| fnv(&key_id(k))))
}

/// Milliseconds of latency for a minute with requests: deterministic from the model id, the key
/// id (or none) and the minute's number since the epoch.
fn latency(metric: &str, (model, key): (u64, u64), minute: i64) -> Option<f64> {
    let h = mix(model ^ mix(key ^ mix(minute as u64)));
    let ttft_p50 = 150.0 + (h % 400) as f64 + 0.5;
    let tpot_p50 = 20.0 + (h % 60) as f64 + 0.25;
    Some(match metric {
        "ttft_p50" => ttft_p50,
        "ttft_p90" => ttft_p50 * 1.6,
        "ttft_p99" => ttft_p50 * 2.5,
        "tpot_p50" => tpot_p50,
        "tpot_p99" => tpot_p50 * 3.0,
        "latency_avg" => ttft_p50 * 4.0,
        _ => return None,
    })
}

/// The value of `metric` for one minute `u` of a series; `None` when the minute has no datapoint
/// for it or the metric is unknown. A minute without any traffic has no datapoint at all; one
/// with tokens but no requests (each hourly figure is spread on its own) has the counts and
/// tokens, so that their sums stay exact, but no latency.
fn value(metric: &str, u: &Usage, seed: (u64, u64), minute: i64) -> Option<f64> {
    if u.requests == 0 && u.total_tokens == 0 {
        return None;
    }
    let c4 = u.errors * 2 / 3;
    let count = match metric {
        "total_tokens" => u.total_tokens,
        "prompt_tokens" => u.prompt_tokens,
        "completion_tokens" => u.completion_tokens,
        "req_count" => u.requests,
        "req_count_error" => u.errors,
        "req_count_2xx" => u.requests.saturating_sub(u.errors),
        "req_count_4xx" => c4,
        "req_count_5xx" => u.errors - c4,
        "req_count_429" => c4 / 2,
        _ if u.requests == 0 => return None,
        _ => return latency(metric, seed, minute),
    };
    Some(count as f64)
}

impl Dataset {
    /// Every series SYS.MaaS has: per model of service type 1 or 2, the service level, then one
    /// per non-empty API key, traffic or not.
    fn ces_series(&self) -> Vec<Series<'_>> {
        let mut out = Vec::new();
        for model in self
            .models
            .iter()
            .filter(|m| (1..=2).contains(&m.service_type))
        {
            out.push(Series { model, key: None });
            for k in self.keys.iter().filter(|k| !k.is_empty()) {
                out.push(Series {
                    model,
                    key: Some(k),
                });
            }
        }
        out
    }

    /// The series with exactly these dimensions (in any order), if there is one.
    fn find_series(&self, dims: &[(String, String)]) -> Option<Series<'_>> {
        let get = |name: &str| {
            let mut it = dims.iter().filter(|(n, _)| n == name);
            let first = it.next().map(|(_, v)| v.as_str());
            it.next().is_none().then_some(first).flatten()
        };
        let model = self.ces_model(get("maas_api_id")?)?;
        let key = match get("maas_key_id") {
            None => None,
            Some(kid) => Some(
                self.keys
                    .iter()
                    .find(|k| !k.is_empty() && key_id(k) == kid)?
                    .as_str(),
            ),
        };
        let expected = 1 + usize::from(key.is_some());
        (dims.len() == expected).then_some(Series { model, key })
    }

    /// One minute of a Cloud Eye metric: `key` is an API key NAME (`None`: the service level;
    /// `Some("")` has no series), the minute is the one holding `minute_start_ms`. `None` when
    /// that minute has no datapoint (no requests, no data yet or any more) or no such series.
    pub fn ces_minute(
        &self,
        metric: &str,
        model_id: &str,
        key: Option<&str>,
        minute_start_ms: i64,
        now_ms: i64,
    ) -> Option<f64> {
        if key == Some("") || (key.is_some() && !self.keys.iter().any(|k| Some(k.as_str()) == key))
        {
            return None;
        }
        let minute = minute_start_ms.div_euclid(MINUTE_MS);
        let parts = self.model_hour(model_id, key, minute.div_euclid(60), now_ms);
        let index = minute.rem_euclid(60) as u32;
        let seed = latency_seed(model_id, key);
        value(metric, &minute_of(&parts, index), seed, minute)
    }

    /// The minutes of one series with traffic whose start is in `[start_ms, end_ms)`, in time
    /// order: (minute number since the epoch, the minute's usage).
    fn series_traffic(&self, s: Series<'_>, start_ms: i64, end_ms: i64, now_ms: i64) -> Minutes {
        let mut out = Vec::new();
        let hours = hours_with_data(start_ms, end_ms, now_ms);
        for (hour, parts) in self.model_hours(&s.model.id, s.key, hours, now_ms) {
            for i in 0..60u32 {
                let minute = hour * 60 + i64::from(i);
                let at = minute * MINUTE_MS;
                if !(start_ms..end_ms).contains(&at) {
                    continue;
                }
                let u = minute_of(&parts, i);
                if u.requests > 0 || u.total_tokens > 0 {
                    out.push((minute, u));
                }
            }
        }
        out
    }
}

/// A datapoint's value on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Number {
    /// A whole sum: counts and tokens stay integers on the wire.
    Whole(u64),
    Float(f64),
}

impl Serialize for Number {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Number::Whole(n) => s.serialize_u64(n),
            Number::Float(x) => s.serialize_f64(x),
        }
    }
}

/// A bucket's values folded with a filter.
fn aggregate(filter: &str, values: &[f64]) -> Number {
    let n = values.len() as f64;
    let sum: f64 = values.iter().sum();
    let mean = sum / n;
    let v = match filter {
        "sum" => {
            if sum.fract() == 0.0 && (0.0..9.0e15).contains(&sum) {
                return Number::Whole(sum as u64);
            }
            sum
        }
        "max" => values.iter().copied().fold(f64::MIN, f64::max),
        "min" => values.iter().copied().fold(f64::MAX, f64::min),
        "variance" => values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n,
        _ => mean,
    };
    Number::Float(v)
}

/// One datapoint of an answer: `{"timestamp": ms, "<filter>": value}`.
struct Point<'a> {
    at: i64,
    filter: &'a str,
    value: Datum<'a>,
}

/// A datapoint's value: the bucket's, or the one [`CloudEyeSim::forged`] says to answer.
enum Datum<'a> {
    Computed(Number),
    Forged(&'a Value),
}

impl Serialize for Datum<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Datum::Computed(n) => n.serialize(s),
            Datum::Forged(v) => v.serialize(s),
        }
    }
}

impl Serialize for Point<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("timestamp", &self.at)?;
        m.serialize_entry(self.filter, &self.value)?;
        m.end()
    }
}

/// One metric object of a BatchListMetricData answer, serialized as it is (no JSON tree: an
/// answer of 500 objects over 24 h at five minutes holds 144,000 datapoints).
#[derive(Serialize)]
struct MetricAnswer<'a> {
    namespace: &'a str,
    metric_name: &'a str,
    unit: &'static str,
    dimensions: &'a [Dimension],
    datapoints: Vec<Point<'a>>,
}

/// A series' minutes with traffic: (minute number since the epoch, its usage), in time order.
type Minutes = Vec<(i64, Usage)>;

/// The datapoints of `metric` in one series' minutes `traffic`, grouped into period buckets:
/// (bucket start, values).
fn buckets(
    metric: &str,
    s: Series<'_>,
    traffic: &[(i64, Usage)],
    period_ms: i64,
) -> Vec<(i64, Vec<f64>)> {
    let mut out: Vec<(i64, Vec<f64>)> = Vec::new();
    if unit(metric).is_none() {
        return out;
    }
    let seed = latency_seed(&s.model.id, s.key);
    for (minute, u) in traffic {
        let Some(v) = value(metric, u, seed, *minute) else {
            continue;
        };
        let b = (minute * MINUTE_MS).div_euclid(period_ms) * period_ms;
        match out.last_mut() {
            Some((last, values)) if *last == b => values.push(v),
            _ => out.push((b, vec![v])),
        }
    }
    out
}

impl Simulator {
    /// [`Dataset::ces_minute`] at the simulator's data clock: one minute of a Cloud Eye metric.
    pub fn ces_minute(
        &self,
        metric: &str,
        model_id: &str,
        key: Option<&str>,
        minute_start_ms: i64,
    ) -> Option<f64> {
        let cfg = lock(&self.shared.config);
        cfg.dataset
            .ces_minute(metric, model_id, key, minute_start_ms, data_now(&cfg))
    }
}

/// The answer `CloudEyeSim::instances_status` forces on the instance names, if any (404 is the
/// gateway's "no such API").
pub(super) fn forced_instances_status(ces: &CloudEyeSim, rid: &str) -> Option<Reply> {
    match ces.instances_status.filter(|s| *s != 200)? {
        404 => Some(not_published(rid)),
        status => Some(Reply::error(
            status,
            "SIM.0001",
            "the simulator was told to answer this status (ces.instances_status)",
            rid,
        )),
    }
}

/// The two markers of [`CloudEyeSim::looping_markers`].
const LOOP_A: &str = "SYS.MaaS.loop.a";
const LOOP_B: &str = "SYS.MaaS.loop.b";

fn bad(msg: &str, rid: &str) -> Reply {
    Reply::error(400, "ces.0014", msg, rid)
}

/// ListMetrics: `GET /V1.0/{project_id}/metrics`.
pub(super) fn list_metrics(query: &str, data: &Dataset, ces: &CloudEyeSim, rid: &str) -> Reply {
    let pairs = query_pairs(query);
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let limit = match param("limit") {
        None => MAX_LIST,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST).contains(&n) => n,
            _ => return bad("limit must be an integer from 1 to 1000", rid),
        },
    };
    let desc = match param("order") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return bad("order must be asc or desc", rid),
    };
    let mut dims: Vec<(&str, &str)> = Vec::new();
    for i in 0..4 {
        if let Some(d) = param(&format!("dim.{i}")) {
            match d.split_once(',') {
                Some((n, v)) if !n.is_empty() && !v.is_empty() => dims.push((n, v)),
                _ => return bad(&format!("dim.{i} must be name,value"), rid),
            }
        }
    }
    let mut entries: Vec<(String, &str, Series<'_>)> = Vec::new();
    if param("namespace") == Some(NAMESPACE) {
        for (metric, _) in METRICS {
            if param("metric_name").is_some_and(|m| m != *metric) {
                continue;
            }
            for s in data.ces_series() {
                let have = s.dimensions();
                if dims
                    .iter()
                    .all(|(n, v)| have.iter().any(|(hn, hv)| hn == n && hv == v))
                {
                    entries.push((s.rendered(), metric, s));
                }
            }
        }
    }
    entries.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    if desc {
        entries.reverse();
    }
    let marker = |(rendered, metric, _): &(String, &str, Series<'_>)| {
        format!("{NAMESPACE}.{metric}.{rendered}")
    };
    let start = param("start").filter(|s| !s.is_empty());
    let first = match start {
        _ if ces.looping_markers => 0,
        None => 0,
        Some(start) => match entries.iter().position(|e| marker(e) == start) {
            Some(i) => i + 1,
            None => return bad("start: no metric has this marker", rid),
        },
    };
    let size = ces.page_cap.map_or(limit, |cap| cap.min(limit));
    let page = &entries[first..entries.len().min(first.saturating_add(size))];
    let next = match (ces.looping_markers, start) {
        (true, Some(LOOP_A)) => LOOP_B.to_string(),
        (true, _) => LOOP_A.to_string(),
        (false, _) => page.last().map(marker).unwrap_or_default(),
    };
    let metrics: Vec<Value> = page
        .iter()
        .map(|(_, metric, s)| {
            json!({
                "namespace": NAMESPACE,
                "metric_name": metric,
                "unit": unit(metric).unwrap_or(""),
                "dimensions": s.dimensions().iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({
        "metrics": metrics,
        "meta_data": {
            "count": page.len(),
            "total": entries.len(),
            "marker": next,
        },
    });
    Reply::json(200, body.to_string())
}

#[derive(Deserialize)]
struct BatchBody {
    metrics: Vec<MetricRef>,
    from: i64,
    to: i64,
    period: String,
    filter: String,
}

#[derive(Deserialize)]
struct MetricRef {
    namespace: String,
    metric_name: String,
    #[serde(default)]
    dimensions: Vec<Dimension>,
}

#[derive(Deserialize, Serialize)]
struct Dimension {
    name: String,
    value: String,
}

/// BatchListMetricData: `POST /V1.0/{project_id}/batch-query-metric-data`.
pub(super) fn batch_query(
    body: &[u8],
    data: &Dataset,
    ces: &CloudEyeSim,
    now_ms: i64,
    rid: &str,
) -> Reply {
    let b = match serde_json::from_slice::<BatchBody>(body) {
        Ok(b) => b,
        Err(e) => return bad(&format!("request body is not valid: {e}"), rid),
    };
    if b.metrics.is_empty() || b.metrics.len() > MAX_BATCH {
        return bad("metrics must hold 1 to 500 metrics", rid);
    }
    if b.from >= b.to {
        return bad("from must be before to", rid);
    }
    let Some(&(_, longest)) = PERIODS.iter().find(|(p, _)| *p == b.period) else {
        return bad(
            "period must be one of 1, 60, 300, 1200, 3600, 14400, 86400",
            rid,
        );
    };
    if !FILTERS.contains(&b.filter.as_str()) {
        return bad(
            "filter must be one of average, max, min, sum, variance",
            rid,
        );
    }
    let period_ms: i64 = b.period.parse::<i64>().unwrap_or(1) * 1000;
    let to = b.to;
    let from = if to.saturating_sub(b.from) > longest {
        to.saturating_sub(longest)
    } else {
        b.from
    };
    // Whole buckets: from the one holding `from` to the one holding the last instant before `to`.
    let start = from.div_euclid(period_ms).saturating_mul(period_ms);
    let end = ((to - 1).div_euclid(period_ms) * period_ms).saturating_add(period_ms);
    // The answer's 3,000 datapoints shared by its objects: the oldest buckets go, silently.
    let allowed = MAX_POINTS / b.metrics.len() as i64;
    let start = start.max(end.saturating_sub(allowed.saturating_mul(period_ms)));
    // Each series' minutes are computed once, whatever the number of its metrics asked.
    let mut traffic: HashMap<(&str, Option<&str>), Minutes> = HashMap::new();
    let answers: Vec<MetricAnswer<'_>> = b
        .metrics
        .iter()
        .map(|m| {
            let dims: Vec<(String, String)> = m
                .dimensions
                .iter()
                .map(|d| (d.name.clone(), d.value.clone()))
                .collect();
            let series = (m.namespace == NAMESPACE)
                .then(|| data.find_series(&dims))
                .flatten();
            let datapoints = match series {
                None => Vec::new(),
                Some(s) => {
                    let minutes = traffic
                        .entry((&s.model.id, s.key))
                        .or_insert_with(|| data.series_traffic(s, start, end, now_ms));
                    let forged = ces
                        .forged
                        .as_ref()
                        .filter(|f| f.model_id == s.model.id && f.filter == b.filter);
                    buckets(&m.metric_name, s, minutes, period_ms)
                        .into_iter()
                        .map(|(at, values)| Point {
                            at,
                            filter: &b.filter,
                            value: match forged {
                                Some(f) => Datum::Forged(&f.value),
                                None => Datum::Computed(aggregate(&b.filter, &values)),
                            },
                        })
                        .collect()
                }
            };
            MetricAnswer {
                namespace: &m.namespace,
                metric_name: &m.metric_name,
                unit: unit(&m.metric_name).unwrap_or(""),
                dimensions: &m.dimensions,
                datapoints,
            }
        })
        .collect();
    match serde_json::to_string(&BatchAnswer { metrics: &answers }) {
        Ok(body) => Reply::json(200, body),
        Err(e) => Reply::error(
            500,
            "SIM.0002",
            &format!("cannot write the answer: {e}"),
            rid,
        ),
    }
}

#[derive(Serialize)]
struct BatchAnswer<'a> {
    metrics: &'a [MetricAnswer<'a>],
}

#[derive(Deserialize)]
struct InstancesBody {
    namespace: Option<String>,
    start: Option<i64>,
    limit: Option<i64>,
    /// The dimensions listed: `maas_api_id` alone lists the models, with `maas_key_id` the
    /// keys under them too.
    query: Option<Vec<DimName>>,
}

#[derive(Deserialize)]
struct DimName {
    dim_name: String,
}

/// The MaaS monitor's instance names: `POST /v1/{project_id}/maas/monitor/instances`.
pub(super) fn instances(body: &[u8], data: &Dataset, rid: &str) -> Reply {
    let bad = |msg: &str| Reply::error(400, "ModelArts.4101", msg, rid);
    let Ok(b) = serde_json::from_slice::<InstancesBody>(body) else {
        return bad("request body is not valid JSON");
    };
    let start = match b.start {
        None => 0,
        Some(s) => match usize::try_from(s) {
            Ok(s) => s,
            Err(_) => return bad("start must be 0 or more"),
        },
    };
    let limit = match b.limit {
        None => MAX_INSTANCES,
        Some(l @ 1..=100) => l as usize,
        Some(_) => return bad("limit must be from 1 to 100"),
    };
    let keys = b
        .query
        .as_ref()
        .is_none_or(|q| q.iter().any(|d| d.dim_name == "maas_key_id"));
    let all: Vec<Value> = if b.namespace.as_deref() == Some(NAMESPACE) {
        data.ces_series()
            .iter()
            .filter(|s| keys || s.key.is_none())
            .map(|s| {
                let api = json!({"id": s.model.id, "name": s.model.name});
                match s.key {
                    None => json!({ "maas_api_id": api }),
                    Some(k) => {
                        json!({"maas_api_id": api, "maas_key_id": {"id": key_id(k), "name": k}})
                    }
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let page: Vec<&Value> = all.iter().skip(start).take(limit).collect();
    Reply::json(
        200,
        json!({"instances": page, "total": all.len()}).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::sign;
    use crate::sim::{SimConfig, Simulator, DEMO_AK, DEMO_PROJECT_ID, DEMO_SK};
    use std::io::{Read, Write};

    const NOW: i64 = 1_779_321_600_000; // 2026-05-21T00:00:00Z
    const DS: &str = "6f1c2a9e4b7d4c0e9a1f3b5d7e9c1a2b";

    fn sim(cloud_eye: CloudEyeSim) -> Simulator {
        let cfg = SimConfig {
            now: chrono::DateTime::from_timestamp_millis(NOW),
            cloud_eye,
            ..SimConfig::default()
        };
        Simulator::start("127.0.0.1:0", cfg).unwrap()
    }

    /// One signed request, as the product's client signs it; (status, JSON body).
    fn call(
        sim: &Simulator,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value) {
        let host = sim.addr().to_string();
        let date = sign::sdk_date(chrono::Utc::now());
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let headers = vec![
            ("host".to_string(), host.clone()),
            ("x-sdk-date".to_string(), date.clone()),
        ];
        let input = sign::SignInput {
            method,
            path,
            query: &query,
            headers: &headers,
            body: body.as_bytes(),
        };
        let auth = sign::authorization(&input, &date, DEMO_AK, DEMO_SK.as_bytes());
        let q = sign::canonical_query(&query);
        let target = if q.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{q}")
        };
        let mut conn = std::net::TcpStream::connect(sim.addr()).unwrap();
        write!(
            conn,
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nX-Sdk-Date: {date}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn list(sim: &Simulator, query: &[(&str, &str)]) -> (u16, Value) {
        call(
            sim,
            "GET",
            &format!("/V1.0/{DEMO_PROJECT_ID}/metrics"),
            query,
            "",
        )
    }

    fn batch(sim: &Simulator, body: &Value) -> (u16, Value) {
        let path = format!("/V1.0/{DEMO_PROJECT_ID}/batch-query-metric-data");
        call(sim, "POST", &path, &[], &body.to_string())
    }

    fn metric(name: &str, model: &str, key: Option<&str>) -> Value {
        let mut dims = vec![json!({"name": "maas_api_id", "value": model})];
        if let Some(k) = key {
            dims.push(json!({"name": "maas_key_id", "value": key_id(k)}));
        }
        json!({"namespace": NAMESPACE, "metric_name": name, "dimensions": dims})
    }

    fn query(metrics: Vec<Value>, from: i64, to: i64, period: &str, filter: &str) -> Value {
        json!({"metrics": metrics, "from": from, "to": to, "period": period, "filter": filter})
    }

    fn points(answer: &Value, i: usize) -> Vec<Value> {
        answer["metrics"][i]["datapoints"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The datapoints' `sum`s, each required to be a JSON integer.
    fn sums(answer: &Value, i: usize) -> Vec<(i64, u64)> {
        points(answer, i)
            .iter()
            .map(|p| {
                (
                    p["timestamp"].as_i64().unwrap(),
                    p["sum"].as_u64().expect("an integer sum"),
                )
            })
            .collect()
    }

    #[test]
    fn a_minute_has_every_metric_or_none() {
        let d = Dataset::default();
        // The last hour in which key-a1 called DeepSeek-V3.
        let hour = (1..48)
            .map(|h| NOW - h * HOUR_MS)
            .find(|&h| {
                d.model_usage(DS, Some("key-a1"), h, h + HOUR_MS, NOW)
                    .requests
                    > 0
            })
            .unwrap();
        let (mut with, mut tokens_only) = (0, 0);
        for i in 0..60 {
            let at = hour + i * MINUTE_MS;
            let u = d.model_usage(DS, Some("key-a1"), at, at + MINUTE_MS, NOW);
            let got: Vec<Option<f64>> = METRICS
                .iter()
                .map(|(m, _)| d.ces_minute(m, DS, Some("key-a1"), at, NOW))
                .collect();
            let v = |m: &str| d.ces_minute(m, DS, Some("key-a1"), at, NOW).unwrap();
            if u.requests == 0 {
                // Tokens without requests: counts and tokens, no latency.
                let (counts, latencies) = got.split_at(10);
                assert_eq!(METRICS[9].0, "total_tokens");
                assert!(latencies.iter().all(Option::is_none), "minute {i}");
                if u.total_tokens == 0 {
                    assert!(counts.iter().all(Option::is_none), "minute {i}");
                } else {
                    tokens_only += 1;
                    assert_eq!(v("req_count"), 0.0);
                    assert_eq!(v("total_tokens"), u.total_tokens as f64);
                }
                continue;
            }
            with += 1;
            assert_eq!(v("total_tokens"), u.total_tokens as f64);
            assert_eq!(v("req_count"), u.requests as f64);
            assert_eq!(v("req_count_2xx") + v("req_count_error"), v("req_count"));
            assert_eq!(
                v("req_count_4xx") + v("req_count_5xx"),
                v("req_count_error")
            );
            assert_eq!(v("req_count_429"), (v("req_count_4xx") as u64 / 2) as f64);
            assert_eq!(v("ttft_p99"), v("ttft_p50") * 2.5);
            assert_eq!(v("latency_avg"), v("ttft_p50") * 4.0);
            assert!((150.5..550.5).contains(&v("ttft_p50")));
            assert!((20.25..80.25).contains(&v("tpot_p50")));
        }
        assert!(
            with > 0 && tokens_only > 0,
            "{with} minutes with requests, {tokens_only} with tokens only"
        );
        assert_eq!(d.ces_minute("ttft_p80", DS, None, hour, NOW), None);
        assert_eq!(d.ces_minute("req_count", DS, Some(""), hour, NOW), None);
        assert_eq!(
            d.ces_minute("req_count", DS, None, NOW, NOW),
            None,
            "not over yet"
        );
    }

    #[test]
    fn list_metrics_pages_every_entry_once_in_order() {
        let sim = sim(CloudEyeSim {
            page_cap: Some(7),
            ..CloudEyeSim::default()
        });
        let mut seen: Vec<String> = Vec::new();
        let mut marker = String::new();
        loop {
            let (status, v) = list(&sim, &[("namespace", NAMESPACE), ("start", &marker)]);
            assert_eq!(status, 200, "{v}");
            let page = v["metrics"].as_array().unwrap();
            assert!(page.len() <= 7);
            assert_eq!(v["meta_data"]["count"], page.len());
            assert_eq!(v["meta_data"]["total"], 225, "15 metrics x 15 series");
            if page.is_empty() {
                assert_eq!(v["meta_data"]["marker"], "");
                break;
            }
            for m in page {
                let dims: Vec<String> = m["dimensions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| {
                        format!(
                            "{}:{}",
                            d["name"].as_str().unwrap(),
                            d["value"].as_str().unwrap()
                        )
                    })
                    .collect();
                seen.push(format!(
                    "SYS.MaaS.{}.{}",
                    m["metric_name"].as_str().unwrap(),
                    dims.join(",")
                ));
                assert_eq!(m["namespace"], NAMESPACE);
                assert_eq!(m["unit"], unit(m["metric_name"].as_str().unwrap()).unwrap());
            }
            assert_eq!(
                v["meta_data"]["marker"].as_str().unwrap(),
                seen.last().unwrap()
            );
            marker = seen.last().unwrap().clone();
        }
        assert_eq!(seen.len(), 225);
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen, sorted, "in order, each once");
        // Descending, a small limit: the last entries first.
        let (_, v) = list(
            &sim,
            &[("namespace", NAMESPACE), ("order", "desc"), ("limit", "3")],
        );
        assert_eq!(v["meta_data"]["count"], 3);
        assert_eq!(v["meta_data"]["marker"].as_str().unwrap(), seen[222]);
        // Bad paging input.
        for q in [
            [("limit", "0")],
            [("limit", "1001")],
            [("limit", "x")],
            [("start", "SYS.MaaS.nope")],
            [("order", "up")],
            [("dim.0", "maas_api_id")],
        ] {
            let (status, v) = list(&sim, &[("namespace", NAMESPACE), q[0]]);
            assert_eq!(
                (status, v["error_code"].as_str()),
                (400, Some("ces.0014")),
                "{q:?}"
            );
        }
        let (status, _) = call(
            &sim,
            "GET",
            "/V1.0/nosuchproject/metrics",
            &[("namespace", NAMESPACE)],
            "",
        );
        assert_eq!(status, 404);
        assert!(sim
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/metrics") && r.status == 200));
    }

    #[test]
    fn list_metrics_filters_by_name_and_dimension() {
        let sim = sim(CloudEyeSim::default());
        let total = |q: &[(&str, &str)]| {
            let mut q = q.to_vec();
            q.push(("namespace", NAMESPACE));
            let (status, v) = list(&sim, &q);
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["meta_data"]["count"], v["meta_data"]["total"]);
            v["meta_data"]["total"].as_u64().unwrap()
        };
        let model = format!("maas_api_id,{DS}");
        let key = format!("maas_key_id,{}", key_id("key-a1"));
        assert_eq!(total(&[("metric_name", "total_tokens")]), 15);
        assert_eq!(total(&[("metric_name", "ttft_p80")]), 0);
        assert_eq!(total(&[("dim.0", &model)]), 15 * 5);
        assert_eq!(total(&[("dim.0", &key)]), 15 * 3);
        assert_eq!(total(&[("dim.0", &model), ("dim.1", &key)]), 15);
        assert_eq!(total(&[("dim.0", &model), ("metric_name", "req_count")]), 5);
        let (_, v) = list(&sim, &[("namespace", "SYS.ECS")]);
        assert_eq!(v["metrics"], json!([]));
        assert_eq!(
            v["meta_data"],
            json!({"count": 0, "total": 0, "marker": ""})
        );
    }

    #[test]
    fn batch_sums_over_hours_are_the_model_usage() {
        let sim = sim(CloudEyeSim::default());
        let (from, to) = (NOW - 12 * HOUR_MS, NOW - 2 * HOUR_MS);
        let metrics = vec![
            metric("total_tokens", DS, None),
            metric("req_count", DS, Some("key-a2")),
            metric("prompt_tokens", "9a8b7c6d5e4f40312a1b2c3d4e5f6a7b", None),
            metric("ttft_p80", DS, None),
            metric("total_tokens", "no-such-model", None),
        ];
        let (status, v) = batch(&sim, &query(metrics, from, to, "3600", "sum"));
        assert_eq!(status, 200, "{v}");
        let total = |i, f: fn(&Usage) -> u64, model: &str, key| {
            let s = sums(&v, i);
            assert!(!s.is_empty() && s.len() <= 10);
            assert!(s
                .iter()
                .all(|(t, _)| t % HOUR_MS == 0 && (from..to).contains(t)));
            assert_eq!(
                s.iter().map(|(_, x)| x).sum::<u64>(),
                f(&sim.model_usage(model, key, from, to))
            );
        };
        total(0, |u| u.total_tokens, DS, None);
        total(1, |u| u.requests, DS, Some("key-a2"));
        total(
            2,
            |u| u.prompt_tokens,
            "9a8b7c6d5e4f40312a1b2c3d4e5f6a7b",
            None,
        );
        assert_eq!(points(&v, 3), Vec::<Value>::new(), "no such metric");
        assert_eq!(points(&v, 4), Vec::<Value>::new(), "no such series");
        assert_eq!(v["metrics"][0]["unit"], "tokens");
        assert_eq!(v["metrics"][1]["dimensions"][1]["value"], key_id("key-a2"));
        assert!(!v.to_string().contains(".0,"), "integer sums: {v}");
    }

    #[test]
    fn an_unaligned_window_gets_whole_buckets() {
        let sim = sim(CloudEyeSim::default());
        let base = NOW - 10 * HOUR_MS;
        let (from, to) = (base + 20 * MINUTE_MS, base + 3 * HOUR_MS + 10 * MINUTE_MS);
        let (_, v) = batch(
            &sim,
            &query(vec![metric("req_count", DS, None)], from, to, "3600", "sum"),
        );
        let s = sums(&v, 0);
        let want: Vec<(i64, u64)> = (0..4)
            .map(|h| base + h * HOUR_MS)
            .map(|b| (b, sim.model_usage(DS, None, b, b + HOUR_MS).requests))
            .filter(|(_, r)| *r > 0)
            .collect();
        assert_eq!(s, want);
        // The other filters agree with the minutes.
        for filter in ["max", "min", "average", "variance"] {
            let (_, v) = batch(
                &sim,
                &query(
                    vec![metric("ttft_p50", DS, Some("key-b1"))],
                    from,
                    to,
                    "1200",
                    filter,
                ),
            );
            for p in points(&v, 0) {
                let b = p["timestamp"].as_i64().unwrap();
                let minutes: Vec<f64> = (0..20)
                    .filter_map(|i| {
                        sim.ces_minute("ttft_p50", DS, Some("key-b1"), b + i * MINUTE_MS)
                    })
                    .collect();
                let n = minutes.len() as f64;
                let mean = minutes.iter().sum::<f64>() / n;
                let want = match filter {
                    "max" => minutes.iter().copied().fold(f64::MIN, f64::max),
                    "min" => minutes.iter().copied().fold(f64::MAX, f64::min),
                    "average" => mean,
                    _ => minutes.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n,
                };
                let got = p[filter].as_f64().unwrap();
                assert!(
                    (got - want).abs() < 1e-9,
                    "{filter} at {b}: {got} != {want}"
                );
            }
        }
    }

    #[test]
    fn long_windows_are_shortened_to_the_period_limit() {
        let sim = sim(CloudEyeSim::default());
        let to = NOW - HOUR_MS;
        let (_, v) = batch(
            &sim,
            &query(
                vec![metric("total_tokens", DS, None)],
                to - 3 * DAY_MS,
                to,
                "300",
                "sum",
            ),
        );
        let s = sums(&v, 0);
        assert!(
            s.iter().all(|(t, _)| *t >= to - DAY_MS),
            "only the last 24 h"
        );
        assert_eq!(
            s.iter().map(|(_, x)| x).sum::<u64>(),
            sim.model_usage(DS, None, to - DAY_MS, to).total_tokens
        );
        assert!(s.len() > 100, "5-minute buckets");
    }

    #[test]
    fn an_answer_holds_at_most_3000_datapoints_and_from_moves_to_keep_it() {
        let sim = sim(CloudEyeSim::default());
        let to = NOW - HOUR_MS;
        // 300 objects at one minute: 10 minutes fit (the API reference's example).
        let many: Vec<Value> = (0..300).map(|_| metric("req_count", DS, None)).collect();
        let (_, v) = batch(&sim, &query(many, to - HOUR_MS, to, "60", "sum"));
        let stamps: Vec<i64> = (0..300)
            .flat_map(|i| points(&v, i))
            .map(|p| p["timestamp"].as_i64().unwrap())
            .collect();
        assert!(
            stamps.iter().all(|t| *t >= to - 10 * 60_000),
            "the last 10 minutes"
        );
        assert!(stamps.iter().any(|t| *t == to - 10 * 60_000));
        // 125 objects x 24 hours: exactly 3,000, nothing moves.
        let day: Vec<Value> = (0..125).map(|_| metric("total_tokens", DS, None)).collect();
        let (_, v) = batch(&sim, &query(day, to - DAY_MS, to, "3600", "sum"));
        assert_eq!(
            sums(&v, 124).iter().map(|(_, x)| x).sum::<u64>(),
            sim.model_usage(DS, None, to - DAY_MS, to).total_tokens
        );
        // One more object and the first hour is gone.
        let over: Vec<Value> = (0..126).map(|_| metric("total_tokens", DS, None)).collect();
        let (_, v) = batch(&sim, &query(over, to - DAY_MS, to, "3600", "sum"));
        assert!(sums(&v, 0).iter().all(|(t, _)| *t > to - DAY_MS));
    }

    #[test]
    fn bad_batch_queries_are_400() {
        let sim = sim(CloudEyeSim::default());
        let one = || vec![metric("req_count", DS, None)];
        let many: Vec<Value> = (0..501).map(|_| metric("req_count", DS, None)).collect();
        for (why, body) in [
            ("too many", query(many, NOW - HOUR_MS, NOW, "60", "sum")),
            ("none", query(Vec::new(), NOW - HOUR_MS, NOW, "60", "sum")),
            ("period", query(one(), NOW - HOUR_MS, NOW, "7", "sum")),
            ("filter", query(one(), NOW - HOUR_MS, NOW, "60", "median")),
            ("from = to", query(one(), NOW, NOW, "60", "sum")),
            ("from > to", query(one(), NOW, NOW - 1, "60", "sum")),
            ("shape", json!({"metrics": "x"})),
        ] {
            let (status, v) = batch(&sim, &body);
            assert_eq!(
                (status, v["error_code"].as_str()),
                (400, Some("ces.0014")),
                "{why}: {v}"
            );
        }
        let path = format!("/V1.0/{DEMO_PROJECT_ID}/batch-query-metric-data");
        assert_eq!(call(&sim, "POST", &path, &[], "not json").0, 400);
        // Extreme instants do not break the simulator.
        let (status, v) = batch(&sim, &query(one(), i64::MIN, i64::MAX, "86400", "sum"));
        assert_eq!(status, 200, "{v}");
    }

    #[test]
    fn instances_name_every_series_in_pages() {
        let sim = sim(CloudEyeSim::default());
        let path = format!("/v1/{DEMO_PROJECT_ID}/maas/monitor/instances");
        let page = |start: usize, limit: usize| {
            let body = json!({"namespace": NAMESPACE, "start": start, "limit": limit,
                "query": [{"dim_name": "maas_api_id"}, {"dim_name": "maas_key_id"}]});
            call(&sim, "POST", &path, &[], &body.to_string())
        };
        let mut all = Vec::new();
        let mut start = 0;
        loop {
            let (status, v) = page(start, 4);
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["total"], 15);
            let got = v["instances"].as_array().unwrap().clone();
            if got.is_empty() {
                break;
            }
            start += got.len();
            all.extend(got);
        }
        assert_eq!(all.len(), 15);
        assert_eq!(
            all[0],
            json!({"maas_api_id": {"id": DS, "name": "DeepSeek-V3"}})
        );
        assert_eq!(
            all[1]["maas_key_id"],
            json!({"id": key_id("key-a1"), "name": "key-a1"})
        );
        assert_eq!(
            all.iter()
                .filter(|i| i.get("maas_key_id").is_none())
                .count(),
            3
        );
        assert_eq!(page(0, 0).0, 400);
        assert_eq!(page(0, 101).0, 400);
        // Asked for the models alone: the models, no key.
        let body = json!({"namespace": NAMESPACE, "start": 0, "limit": 100,
            "query": [{"dim_name": "maas_api_id"}]});
        let (status, v) = call(&sim, "POST", &path, &[], &body.to_string());
        assert_eq!((status, v["total"].as_u64()), (200, Some(3)), "{v}");
        assert!(v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.get("maas_key_id").is_none()));
        sim.configure(|c| c.cloud_eye.instances_status = Some(404));
        let (status, v) = page(0, 100);
        assert_eq!(
            (status, v["error_code"].as_str()),
            (404, Some("APIGW.0101"))
        );
    }
}
