//! Cloud Eye (CES API v1) and the MaaS monitor's instances API: ListMetrics (which metric and
//! dimension pairs exist), batch-query-metric-data (their datapoints) and the names of ids,
//! signed and retried like every other call, within Cloud Eye's own request budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::client::{Call, Client};
use super::loose::{lenient, loose, Key, Loose, Shape, Shaped};
use crate::domain::cloud_eye::Unread;
use crate::domain::cloud_eye::{BatchAnswer, BatchRequest, Dims, Instance, InstancePage, Reading};
use crate::domain::cloud_eye::{MetricPage, DIM_KEY, DIM_MODEL, LIST_LIMIT, NAMESPACE};
use crate::domain::failure::{Api, DecodeError};
use crate::domain::ApiError;
use crate::text::percent_encode;

/// The most a Cloud Eye answer may weigh: a batch answer holds at most 3,000 datapoints, a
/// ListMetrics page 1,000 entries, far under this.
pub const MAX_CES_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// Instances per page of the monitor's API.
pub const INSTANCES_LIMIT: usize = 100;

/// `body` read into `T`: text that is not JSON is said as such, JSON of another shape as that.
fn parse<'a, T: Deserialize<'a>>(body: &'a str) -> Result<T, DecodeError> {
    serde_json::from_str(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => DecodeError::Shape(e.to_string()),
        _ => DecodeError::NotJson(e.to_string()),
    })
}

lenient! {
    struct WireDim {
        name: String,
        value: String,
    }
}

/// A series' dimensions as the API writes them.
type WireDims = Option<Loose<Vec<Loose<WireDim>>>>;

/// The dimensions of a series as the API writes them; `None` for a series of other
/// dimensions (not a model or key of SYS.MaaS).
fn dims_of(dims: WireDims) -> Option<Dims> {
    let mut model = None;
    let mut key = None;
    for d in loose(dims)? {
        let d = d.get()?;
        let (name, value) = (loose(d.name)?, loose(d.value)?);
        match name.as_str() {
            DIM_MODEL => model = Some(value),
            DIM_KEY => key = Some(value),
            _ => return None,
        }
    }
    Some(Dims {
        model_id: model?,
        key_id: key,
    })
}

#[derive(Deserialize)]
struct WireEntry {
    metric_name: Option<Loose<String>>,
    dimensions: WireDims,
}

lenient! {
    struct WireMeta {
        marker: String,
        total: u64,
    }
}

#[derive(Deserialize)]
struct WirePage {
    metrics: Option<Vec<WireEntry>>,
    meta_data: Option<Loose<WireMeta>>,
}

/// A ListMetrics answer.
pub fn parse_metric_page(body: &str) -> Result<MetricPage, DecodeError> {
    let page: WirePage = parse(body)?;
    let metrics = page
        .metrics
        .ok_or_else(|| DecodeError::Shape("no `metrics` list".into()))?;
    let mut entries = Vec::with_capacity(metrics.len());
    for m in metrics {
        let name = loose(m.metric_name)
            .ok_or_else(|| DecodeError::Shape("a metric without `metric_name`".into()))?;
        if let Some(d) = dims_of(m.dimensions) {
            entries.push((name, d));
        }
    }
    let meta = loose(page.meta_data);
    let (marker, total) = match meta {
        Some(m) => (loose(m.marker), loose(m.total)),
        None => (None, None),
    };
    Ok(MetricPage {
        entries,
        marker: marker.unwrap_or_default(),
        total: total.map(|t| usize::try_from(t).unwrap_or(usize::MAX)),
        endpoint: String::new(),
        request_id: None,
    })
}

/// A datapoint of a batch answer: its timestamp, and the value of every filter it may carry
/// as written (a count is judged on what was written, which a double may round: `1e-400`
/// reads as 0).
#[derive(Deserialize)]
struct WirePoint<'a> {
    timestamp: Option<Loose<i64>>,
    #[serde(borrow)]
    sum: Option<&'a RawValue>,
    #[serde(borrow)]
    max: Option<&'a RawValue>,
    #[serde(borrow)]
    average: Option<&'a RawValue>,
    #[serde(borrow)]
    min: Option<&'a RawValue>,
    #[serde(borrow)]
    variance: Option<&'a RawValue>,
}

impl<'a> WirePoint<'a> {
    /// The value under `filter` as written; absent or `null`, none (nothing to say).
    fn under(&self, filter: &str) -> Option<&'a RawValue> {
        let v = match filter {
            "sum" => self.sum,
            "max" => self.max,
            "average" => self.average,
            "min" => self.min,
            _ => self.variance,
        };
        v.filter(|v| v.get() != "null")
    }
}

#[derive(Deserialize)]
struct WireMetric<'a> {
    metric_name: Option<Loose<String>>,
    dimensions: WireDims,
    #[serde(borrow)]
    datapoints: Option<Vec<WirePoint<'a>>>,
}

#[derive(Deserialize)]
struct WireBatch<'a> {
    #[serde(borrow)]
    metrics: Option<Vec<WireMetric<'a>>>,
}

/// A batch-query-metric-data answer, read straight into typed values (no JSON tree): each
/// metric object's datapoints, the value under the request's filter.
pub fn parse_batch(body: &str, filter: &str) -> Result<BatchAnswer, DecodeError> {
    let wire: WireBatch<'_> = parse(body)?;
    let metrics = wire
        .metrics
        .ok_or_else(|| DecodeError::Shape("no `metrics` list".into()))?;
    let mut out = BatchAnswer::default();
    out.series.reserve(metrics.len());
    for m in metrics {
        let name = loose(m.metric_name)
            .ok_or_else(|| DecodeError::Shape("a metric without `metric_name`".into()))?;
        let Some(dims) = dims_of(m.dimensions) else {
            continue;
        };
        let wire_points = m.datapoints.unwrap_or_default();
        let mut points = Vec::with_capacity(wire_points.len());
        for mut p in wire_points {
            let ts = loose(p.timestamp.take()).ok_or_else(|| {
                DecodeError::Shape(format!("{name}: a datapoint without a timestamp"))
            })?;
            // A datapoint without the filter's value has nothing to say; one whose value is not
            // a number says something wrong, which the collection judges.
            if let Some(v) = p.under(filter) {
                points.push((ts, Reading::of_json(v.get())));
            }
        }
        out.series.push(((name, dims), points));
    }
    Ok(out)
}

lenient! {
    struct WireNamed {
        id: String,
        name: String,
    }
}

impl WireNamed {
    /// The id and its name (trimmed; empty when there is none).
    fn pair(self) -> Option<(String, String)> {
        let id = loose(self.id)?;
        let name = loose(self.name).unwrap_or_default().trim().to_string();
        Some((id, name))
    }
}

lenient! {
    struct WireInstance {
        maas_api_id: WireNamed,
        maas_key_id: WireNamed,
    }
}

#[derive(Deserialize)]
struct WireInstances {
    instances: Option<Vec<Loose<WireInstance>>>,
    total: Option<Loose<u64>>,
}

/// One page of the monitor's instances: each model (or key under a model) with its names.
pub fn parse_instances(body: &str) -> Result<InstancePage, DecodeError> {
    let wire: WireInstances = parse(body)?;
    let list = wire
        .instances
        .ok_or_else(|| DecodeError::Shape("no `instances` list".into()))?;
    let mut page = InstancePage {
        instances: Vec::with_capacity(list.len()),
        listed: list.len(),
        total: loose(wire.total).map(|t| usize::try_from(t).unwrap_or(usize::MAX)),
    };
    for i in list.into_iter().filter_map(Loose::get) {
        let Some((model_id, model_name)) = loose(i.maas_api_id).and_then(WireNamed::pair) else {
            continue;
        };
        let key = loose(i.maas_key_id).and_then(WireNamed::pair);
        let (key_id, key_name) = match key {
            Some((id, name)) => (Some(id), name),
            None => (None, String::new()),
        };
        page.instances.push(Instance {
            dims: Dims { model_id, key_id },
            model_name,
            key_name,
        });
    }
    Ok(page)
}

impl Client {
    fn ces_call<'a>(&'a self, mut call: Call<'a>) -> Call<'a> {
        call.max_body = MAX_CES_BODY_BYTES;
        call.budget = Some(&*self.ces_budget);
        call.api = Api::CloudEye;
        call.forbidden_is_permission = true;
        call
    }

    /// Cloud Eye calls its budget still allows within `within` (a run plans its batches
    /// against it before the first one).
    pub fn available_ces_calls(&self, within: Duration) -> usize {
        self.ces_budget.available(within)
    }

    /// One ListMetrics page of `SYS.MaaS` for `metric` after `marker`.
    pub fn list_metrics(
        &self,
        project_id: &str,
        metric: &str,
        marker: &str,
        deadline: Instant,
    ) -> Result<MetricPage, ApiError> {
        let path = format!("/V1.0/{}/metrics", percent_encode(project_id));
        let mut query = vec![
            ("namespace".to_string(), NAMESPACE.to_string()),
            ("metric_name".to_string(), metric.to_string()),
            ("limit".to_string(), LIST_LIMIT.to_string()),
            ("order".to_string(), "asc".to_string()),
        ];
        if !marker.is_empty() {
            query.push(("start".to_string(), marker.to_string()));
        }
        let ep = &self.opts.ces;
        let a = self.call(&self.ces_call(Call::get(ep, &path, &query)), deadline)?;
        let mut page = parse_metric_page(&a.body)
            .map_err(|e| self.decode_failure(ep, e, a.request_id.clone()))?;
        page.endpoint = ep.to_string();
        page.request_id = a.request_id;
        Ok(page)
    }

    /// One batch-query-metric-data call.
    pub fn batch_metric_data(
        self: &Arc<Self>,
        project_id: &str,
        req: &BatchRequest,
        deadline: Instant,
    ) -> Result<Unread, ApiError> {
        let path = format!(
            "/V1.0/{}/batch-query-metric-data",
            percent_encode(project_id)
        );
        let body = req.to_bytes();
        let ep = &self.opts.ces;
        let a = self.call(&self.ces_call(Call::post(ep, &path, &body)), deadline)?;
        let (client, filter) = (self.clone(), req.aggregate.filter());
        Ok(Unread::new(move || {
            let ep = &client.opts.ces;
            let mut answer = parse_batch(&a.body, filter)
                .map_err(|e| client.decode_failure(ep, e, a.request_id.clone()))?;
            answer.request_id = a.request_id;
            answer.endpoint = ep.to_string();
            Ok(answer)
        }))
    }

    /// One page of the MaaS monitor's instances from `start`: the models, or with `keys` the API
    /// keys under them, and their names.
    pub fn monitor_instances(
        &self,
        project_id: &str,
        start: usize,
        keys: bool,
        deadline: Instant,
    ) -> Result<InstancePage, ApiError> {
        let path = format!("/v1/{}/maas/monitor/instances", percent_encode(project_id));
        let query = if keys {
            serde_json::json!([{"dim_name": DIM_MODEL}, {"dim_name": DIM_KEY}])
        } else {
            serde_json::json!([{"dim_name": DIM_MODEL}])
        };
        let body = serde_json::json!({
            "namespace": NAMESPACE,
            "start": start,
            "limit": INSTANCES_LIMIT,
            "query": query,
        })
        .to_string();
        let ep = &self.opts.monitor;
        let mut call = Call::post(ep, &path, body.as_bytes());
        // Names are best effort: a 403 there is that API's permission, not the key's.
        call.forbidden_is_permission = true;
        let a = self.call(&call, deadline)?;
        parse_instances(&a.body).map_err(|e| self.decode_failure(ep, e, a.request_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_page_reads_entries_marker_and_total() {
        let body = r#"{"metrics":[
            {"namespace":"SYS.MaaS","metric_name":"total_tokens","unit":"tokens","dimensions":[{"name":"maas_api_id","value":"m1"}]},
            {"namespace":"SYS.MaaS","metric_name":"total_tokens","unit":"tokens","dimensions":[{"name":"maas_api_id","value":"m1"},{"name":"maas_key_id","value":"k1"}]},
            {"namespace":"SYS.MaaS","metric_name":"total_tokens","unit":"tokens","dimensions":[{"name":"other","value":"x"}]}
        ],"meta_data":{"count":3,"total":7,"marker":"SYS.MaaS.total_tokens.maas_api_id:m1,maas_key_id:k1"}}"#;
        let p = parse_metric_page(body).unwrap();
        assert_eq!(p.entries.len(), 2, "other dimensions are not ours");
        assert_eq!(p.entries[1].1.key_id.as_deref(), Some("k1"));
        assert_eq!(p.total, Some(7));
        assert!(p.marker.ends_with("k1"));
        assert!(parse_metric_page("[]").is_err());
        assert!(parse_metric_page("not json").is_err());
    }

    #[test]
    fn a_batch_answer_reads_the_filters_value() {
        let body = r#"{"metrics":[{"namespace":"SYS.MaaS","metric_name":"req_count","unit":"count",
            "dimensions":[{"name":"maas_api_id","value":"m1"}],
            "datapoints":[{"timestamp":3600000,"sum":12},{"timestamp":7200000,"sum":3.0},{"timestamp":10800000,"max":9}]}]}"#;
        let a = parse_batch(body, "sum").unwrap();
        let exact = |v: f64| Reading {
            value: v,
            whole: true,
        };
        assert_eq!(
            a.series[0].1,
            vec![(3_600_000, exact(12.0)), (7_200_000, exact(3.0))]
        );
        assert!(parse_batch(r#"{"metrics":[{"metric_name":"x","dimensions":[{"name":"maas_api_id","value":"m"}],"datapoints":[{"sum":1}]}]}"#, "sum").is_err());
        // Values as written: one a double rounds to a whole number is not one, one beyond a
        // double is a number (too large), not a broken answer; `null` is no value.
        let body = r#"{"metrics":[{"metric_name":"x","dimensions":[{"name":"maas_api_id","value":"m"}],
            "datapoints":[{"timestamp":1,"sum":1e-400},{"timestamp":2,"sum":1e400},{"timestamp":3,"sum":null},{"timestamp":4,"sum":"7"}]}]}"#;
        let points = &parse_batch(body, "sum").unwrap().series[0].1;
        assert_eq!(points.len(), 3);
        assert_eq!(
            points[0].1,
            Reading {
                value: 0.0,
                whole: false
            }
        );
        assert!(points[1].1.value.is_infinite() && points[1].1.whole);
        assert!(points[2].1.value.is_nan());
    }

    #[test]
    fn a_field_of_another_shape_is_nothing_usable_not_a_broken_answer() {
        // Each odd field where a text, a number, a list or an object belongs: the answer
        // still reads, and only what the field decided is left out.
        let good = r#"{"metric_name":"req_count","dimensions":[{"name":"maas_api_id","value":"m1"}],"datapoints":[{"timestamp":1,"sum":2}]}"#;
        for odd in [
            r#"{"metric_name":"req_count","dimensions":{"name":"maas_api_id"},"datapoints":[]}"#,
            r#"{"metric_name":"req_count","dimensions":7,"datapoints":[]}"#,
            r#"{"metric_name":"req_count","dimensions":[7],"datapoints":[]}"#,
            r#"{"metric_name":"req_count","dimensions":[[{"name":"maas_api_id","value":"m2"}]],"datapoints":[]}"#,
            r#"{"metric_name":"req_count","dimensions":[{"name":{"a":[1,{"b":2}]},"value":"m2"}],"datapoints":[]}"#,
            r#"{"metric_name":"req_count","dimensions":[{"name":"maas_api_id","value":[true,null]}],"datapoints":[]}"#,
            r#"{"metric_name":"req_count","dimensions":[{"name":"maas_api_id","value":"m2"},null],"datapoints":[]}"#,
            // A key given twice keeps its first value (here naming another dimension).
            r#"{"metric_name":"req_count","dimensions":[{"name":"other","name":"maas_api_id","value":"m2"}],"datapoints":[]}"#,
        ] {
            let body = format!(r#"{{"metrics":[{odd},{good}]}}"#);
            let a = parse_batch(&body, "sum").unwrap_or_else(|e| panic!("{odd}: {e:?}"));
            let ok: Vec<_> = a
                .series
                .iter()
                .filter(|s| !s.1.is_empty())
                .map(|s| s.0 .1.model_id.as_str())
                .collect();
            assert_eq!(ok, ["m1"], "{odd}");
        }
        let a = parse_batch(
            r#"{"metrics":[{"metric_name":["x"],"dimensions":[]}]}"#,
            "sum",
        );
        assert!(matches!(a, Err(DecodeError::Shape(_))), "no name at all");
        let p = r#"{"metrics":[],"meta_data":[1,2]}"#;
        assert_eq!(parse_metric_page(p).unwrap().marker, "");
        let p = r#"{"metrics":[],"meta_data":{"marker":{"x":1},"total":"7"}}"#;
        let p = parse_metric_page(p).unwrap();
        assert_eq!((p.marker.as_str(), p.total), ("", None));
        let p = r#"{"metrics":[],"meta_data":{"marker":"a","marker":"b","total":1,"total":2}}"#;
        let p = parse_metric_page(p).unwrap();
        assert_eq!(
            (p.marker.as_str(), p.total),
            ("a", Some(1)),
            "the first of each"
        );
        let i = r#"{"instances":[{"maas_api_id":{"id":"m0","id":"x"},"maas_api_id":{"id":"y"}},{"maas_api_id":["m1"]},{"maas_api_id":{"id":"m2","name":5}},[1]],"total":{}}"#;
        let i = parse_instances(i).unwrap();
        let ids: Vec<_> = i
            .instances
            .iter()
            .map(|i| i.dims.model_id.as_str())
            .collect();
        assert_eq!((ids, i.listed), (vec!["m0", "m2"], 4));
    }

    #[test]
    fn instances_name_models_and_keys() {
        let body = r#"{"instances":[{"maas_api_id":{"id":"m1","name":"DeepSeek-V3"},"maas_key_id":{"id":"k1","name":"team-a"}},{"maas_api_id":{"id":"m2","name":" "}},{"other":1},7],"total":4}"#;
        let p = parse_instances(body).unwrap();
        assert_eq!((p.listed, p.total), (4, Some(4)));
        assert_eq!(p.instances.len(), 2, "{:?}", p.instances);
        assert_eq!(p.instances[0].model_name, "DeepSeek-V3");
        assert_eq!(p.instances[0].dims.key_id.as_deref(), Some("k1"));
        assert_eq!(p.instances[0].key_name, "team-a");
        assert_eq!(p.instances[1].model_name, "", "a blank name is no name");
        assert!(parse_instances(r#"{"total":1}"#).is_err());
    }

    #[test]
    fn odd_fields_are_nothing_usable_and_wrong_shapes_are_said_as_such() {
        // A value that is not a number is NaN (refused later); a null or absent one is nothing.
        let body = r#"{"metrics":[{"metric_name":"req_count","dimensions":[{"name":"maas_api_id","value":"m1"}],
            "datapoints":[{"timestamp":1,"sum":"NaN"},{"timestamp":2,"sum":null},{"timestamp":3}]},
            {"metric_name":"req_count","dimensions":[{"name":"maas_api_id","value":7}],"datapoints":[]}]}"#;
        let a = parse_batch(body, "sum").unwrap();
        assert_eq!(
            a.series.len(),
            1,
            "a dimension that is not text is not ours"
        );
        assert_eq!(a.series[0].1.len(), 1);
        assert!(a.series[0].1[0].1.value.is_nan());
        assert!(matches!(
            parse_batch("[]", "sum"),
            Err(DecodeError::Shape(_))
        ));
        assert!(matches!(
            parse_batch("{", "sum"),
            Err(DecodeError::NotJson(_))
        ));
        assert!(matches!(
            parse_batch(r#"{"metrics":{}}"#, "sum"),
            Err(DecodeError::Shape(_))
        ));
    }
}
