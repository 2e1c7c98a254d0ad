//! One ShowStatistics call: the request body (what is asked) and a successful answer.

use serde::Serialize;

use super::{InferType, ServiceType, Usage};

/// The ShowStatistics request body. Field order is fixed so identical calls serialise to
/// identical bytes (the plan deduplicates on them, and the signature hashes them).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct StatsRequest {
    pub service_type: u8,
    pub infer_type: &'static str,
    pub start_time: i64,
    pub end_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `None` means all keys and leaves the field out: `[]` is not the same thing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<String>>,
}

impl StatsRequest {
    pub fn new(st: ServiceType, it: InferType, start_ms: i64, end_ms: i64) -> Self {
        StatsRequest {
            service_type: st.code(),
            infer_type: it.name(),
            start_time: start_ms,
            end_time: end_ms,
            timezone: None,
            api_keys: None,
            ips: None,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A successful ShowStatistics call.
#[derive(Debug, Clone)]
pub struct StatsAnswer {
    pub usage: Usage,
    /// The answer as received, with any secret redacted (for `--raw` and JSON output).
    pub raw: String,
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_leaves_out_unset_filters() {
        let mut r = StatsRequest::new(ServiceType::Preset, InferType::RealTime, 1, 2);
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            r#"{"service_type":2,"infer_type":"real_time","start_time":1,"end_time":2}"#
        );
        r.api_keys = Some(vec![String::new()]);
        r.timezone = Some("Asia/Shanghai".into());
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            r#"{"service_type":2,"infer_type":"real_time","start_time":1,"end_time":2,"timezone":"Asia/Shanghai","api_keys":[""]}"#
        );
    }
}
