//! Cloud Eye (CES API v1) and the MaaS monitor's instances API: ListMetrics (which metric and
//! dimension pairs exist), batch-query-metric-data (their datapoints) and the names of ids,
//! signed and retried like every other call, within Cloud Eye's own request budget.

use std::time::Instant;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::client::{Call, Client};
use crate::domain::ces::{BatchAnswer, BatchRequest, Dims, MetricPage, Names, Reading};
use crate::domain::ces::{DIM_KEY, DIM_MODEL, LIST_LIMIT, NAMESPACE};
use crate::domain::failure::{Api, DecodeError};
use crate::domain::ApiError;
use crate::text::percent_encode;

/// A batch answer may be large (500 metric objects by hundreds of periods).
pub const MAX_CES_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// Instances per page of the monitor's API.
pub const INSTANCES_LIMIT: usize = 100;

/// `[{"name":..,"value":..}]` -> the series' dimensions; `None` for a series of other
/// dimensions (not a model or key of SYS.MaaS).
fn dims_of(v: &Value) -> Option<Dims> {
    let mut model = None;
    let mut key = None;
    for d in v.as_array()? {
        let name = d.get("name")?.as_str()?;
        let value = d.get("value")?.as_str()?.to_string();
        match name {
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

fn json(body: &str) -> Result<Value, DecodeError> {
    serde_json::from_str(body).map_err(|e| DecodeError::NotJson(e.to_string()))
}

/// A ListMetrics answer.
pub fn parse_metric_page(body: &str) -> Result<MetricPage, DecodeError> {
    let v = json(body)?;
    let metrics = v
        .get("metrics")
        .and_then(Value::as_array)
        .ok_or_else(|| DecodeError::Shape("no `metrics` list".into()))?;
    let mut entries = Vec::new();
    for m in metrics {
        let name = m
            .get("metric_name")
            .and_then(Value::as_str)
            .ok_or_else(|| DecodeError::Shape("a metric without `metric_name`".into()))?;
        if let Some(d) = m.get("dimensions").and_then(dims_of) {
            entries.push((name.to_string(), d));
        }
    }
    let meta = v.get("meta_data");
    let marker = meta
        .and_then(|m| m.get("marker"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let total = meta
        .and_then(|m| m.get("total"))
        .and_then(Value::as_u64)
        .map(|t| t as usize);
    Ok(MetricPage {
        entries,
        marker,
        total,
        ..MetricPage::default()
    })
}

/// A batch-query-metric-data answer as written, its datapoints' values kept as text: a count
/// is judged on what was written, which a double may round (`1e-400` reads as 0).
#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    metrics: Option<Vec<MetricBody<'a>>>,
}

#[derive(Deserialize)]
struct MetricBody<'a> {
    metric_name: Option<Value>,
    dimensions: Option<Value>,
    #[serde(borrow)]
    datapoints: Option<Vec<PointBody<'a>>>,
}

/// One datapoint: its time, and its value under each filter Cloud Eye has.
#[derive(Deserialize)]
struct PointBody<'a> {
    timestamp: Option<Value>,
    #[serde(borrow)]
    sum: Option<&'a RawValue>,
    #[serde(borrow)]
    max: Option<&'a RawValue>,
    #[serde(borrow)]
    min: Option<&'a RawValue>,
    #[serde(borrow)]
    average: Option<&'a RawValue>,
    #[serde(borrow)]
    variance: Option<&'a RawValue>,
}

impl<'a> PointBody<'a> {
    fn under(&self, filter: &str) -> Option<&'a RawValue> {
        match filter {
            "sum" => self.sum,
            "max" => self.max,
            "min" => self.min,
            "average" => self.average,
            "variance" => self.variance,
            _ => None,
        }
    }
}

/// A batch-query-metric-data answer: each metric object's datapoints, the value under the
/// request's filter as written.
pub fn parse_batch(body: &str, filter: &str) -> Result<BatchAnswer, DecodeError> {
    let v: BatchBody<'_> =
        serde_json::from_str(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let metrics = v
        .metrics
        .ok_or_else(|| DecodeError::Shape("no `metrics` list".into()))?;
    let mut out = BatchAnswer::default();
    for m in metrics {
        let name = m
            .metric_name
            .as_ref()
            .and_then(Value::as_str)
            .ok_or_else(|| DecodeError::Shape("a metric without `metric_name`".into()))?;
        let Some(dims) = m.dimensions.as_ref().and_then(dims_of) else {
            continue;
        };
        let mut points = Vec::new();
        for p in m.datapoints.unwrap_or_default() {
            let ts = p
                .timestamp
                .as_ref()
                .and_then(Value::as_i64)
                .ok_or_else(|| {
                    DecodeError::Shape(format!("{name}: a datapoint without a timestamp"))
                })?;
            // A datapoint without the filter's value has nothing to say (`null` is none); one
            // whose value is not a number says something wrong, which the collection judges.
            let Some(value) = p.under(filter) else {
                continue;
            };
            points.push((ts, Reading::of_json(value.get())));
        }
        out.series.push(((name.to_string(), dims), points));
    }
    Ok(out)
}

/// One page of the monitor's instances: names by id, and how many instances it held.
pub fn parse_instances(body: &str, into: &mut Names) -> Result<usize, DecodeError> {
    let v = json(body)?;
    let list = v
        .get("instances")
        .and_then(Value::as_array)
        .ok_or_else(|| DecodeError::Shape("no `instances` list".into()))?;
    let pair = |o: Option<&Value>| -> Option<(String, String)> {
        let o = o?;
        let id = o.get("id")?.as_str()?.to_string();
        let name = o.get("name")?.as_str()?.trim().to_string();
        (!name.is_empty()).then_some((id, name))
    };
    for i in list {
        if let Some((id, name)) = pair(i.get(DIM_MODEL)) {
            into.models.insert(id, name);
        }
        if let Some((id, name)) = pair(i.get(DIM_KEY)) {
            into.keys.insert(id, name);
        }
    }
    Ok(list.len())
}

impl Client {
    fn ces_call<'a>(&'a self, mut call: Call<'a>) -> Call<'a> {
        call.max_body = MAX_CES_BODY_BYTES;
        call.budget = Some(&*self.ces_budget);
        call.api = Api::CloudEye;
        call.forbidden_is_permission = true;
        call
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
        &self,
        project_id: &str,
        req: &BatchRequest,
        deadline: Instant,
    ) -> Result<BatchAnswer, ApiError> {
        let path = format!(
            "/V1.0/{}/batch-query-metric-data",
            percent_encode(project_id)
        );
        let body = req.to_bytes();
        let ep = &self.opts.ces;
        let a = self.call(&self.ces_call(Call::post(ep, &path, &body)), deadline)?;
        let mut answer = parse_batch(&a.body, req.aggregate.filter())
            .map_err(|e| self.decode_failure(ep, e, a.request_id.clone()))?;
        answer.request_id = a.request_id;
        answer.endpoint = ep.to_string();
        Ok(answer)
    }

    /// One page of the MaaS monitor's instances (names of ids), from `start`; how many it held.
    pub fn monitor_instances(
        &self,
        project_id: &str,
        start: usize,
        into: &mut Names,
        deadline: Instant,
    ) -> Result<usize, ApiError> {
        let path = format!("/v1/{}/maas/monitor/instances", percent_encode(project_id));
        let body = serde_json::json!({
            "namespace": NAMESPACE,
            "start": start,
            "limit": INSTANCES_LIMIT,
            "query": [{"dim_name": DIM_MODEL}, {"dim_name": DIM_KEY}],
        })
        .to_string();
        let ep = &self.opts.monitor;
        let mut call = Call::post(ep, &path, body.as_bytes());
        // Names are best effort: a 403 there is that API's permission, not the key's.
        call.forbidden_is_permission = true;
        let a = self.call(&call, deadline)?;
        parse_instances(&a.body, into).map_err(|e| self.decode_failure(ep, e, a.request_id))
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
    fn instances_name_models_and_keys() {
        let mut n = Names::default();
        let body = r#"{"instances":[{"maas_api_id":{"id":"m1","name":"DeepSeek-V3"},"maas_key_id":{"id":"k1","name":"team-a"}},{"maas_api_id":{"id":"m2","name":" "}}],"total":2}"#;
        assert_eq!(parse_instances(body, &mut n).unwrap(), 2);
        assert_eq!(n.models.get("m1").map(String::as_str), Some("DeepSeek-V3"));
        assert_eq!(n.keys.get("k1").map(String::as_str), Some("team-a"));
        assert!(!n.models.contains_key("m2"), "a blank name is no name");
    }
}
