//! The wire format of ShowStatistics and IAM project listing: request bodies, answers, error
//! bodies, and the exact conversion of token figures (thousands, 3 decimals) to integers.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::domain::cloud_eye::Reading;
use crate::domain::failure::DecodeError;
use crate::domain::Usage;
use crate::text::percent_encode;

pub const STATS_PATH_SUFFIX: &str = "maas/monitoring/show-statistics";

/// The project id is checked before it gets here (`domain::is_project_id`); it is encoded all the
/// same, so that no value can ever make the server read another path than was signed.
pub fn stats_path(project_id: &str) -> String {
    format!("/v1/{}/{STATS_PATH_SUFFIX}", percent_encode(project_id))
}

/// Above this many thousand tokens (10^15 tokens) a figure is not believable and, beyond
/// 2^42, no longer exact in a double: refuse it rather than emit it.
const MAX_THOUSANDS: f64 = 1e12;
/// Counts above this are refused for the same reason (2^53 is where doubles stop being exact).
const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

/// Why a figure of thousands of tokens is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    #[error("{0} is not a number of tokens")]
    NotANumber(f64),
    #[error("{0} is negative")]
    Negative(f64),
    #[error("{0:e} thousand tokens is out of range")]
    OutOfRange(f64),
}

/// Thousands of tokens with at most 3 decimals -> exact tokens.
///
/// The double is printed in its shortest round-trip form (which is the decimal the server wrote,
/// for any value below 2^42) and that decimal is shifted three places, so `2482084.98` becomes
/// exactly 2,482,084,980 without any floating-point multiplication.
pub fn thousands_to_tokens(v: f64) -> Result<u64, TokenError> {
    if !v.is_finite() {
        return Err(TokenError::NotANumber(v));
    }
    if v < 0.0 {
        return Err(TokenError::Negative(v));
    }
    if v > MAX_THOUSANDS {
        return Err(TokenError::OutOfRange(v));
    }
    let text = format!("{v}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let int: u64 = int.parse().map_err(|_| TokenError::NotANumber(v))?;
    let mut thousandths = 0u64;
    let digits: Vec<u64> = frac.bytes().map(|b| u64::from(b - b'0')).collect();
    for i in 0..3 {
        thousandths = thousandths * 10 + digits.get(i).copied().unwrap_or(0);
    }
    // More than three decimals is not what the API documents; round half up rather than refuse.
    if digits.get(3).is_some_and(|&d| d >= 5) {
        thousandths += 1;
    }
    Ok(int * 1000 + thousandths)
}

/// A count: a whole, non-negative number up to 2^53, whatever JSON number form it takes;
/// judged on the number `written` too, where a double may round it (`1e-400` reads as 0).
fn count(v: &Value, written: Option<&RawValue>, field: &'static str) -> Result<u64, DecodeError> {
    let bad = |reason: String| DecodeError::BadField { field, reason };
    if let Some(text) = written.map(RawValue::get) {
        let r = Reading::of_json(text);
        if !r.whole && r.value.fract() == 0.0 && r.value.is_finite() && r.value >= 0.0 {
            return Err(bad(format!(
                "{text} is not a whole number, though a double rounds it to one"
            )));
        }
    }
    match v {
        Value::Null => Err(DecodeError::Missing { field }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                // Beyond 2^53 a count is not believable, and beyond i64 it would wrap in the
                // line protocol.
                return if u > MAX_COUNT as u64 {
                    Err(bad(format!("{n} is out of range")))
                } else {
                    Ok(u)
                };
            }
            let f = n
                .as_f64()
                .ok_or_else(|| bad(format!("{n} is not a count")))?;
            if f < 0.0 {
                Err(bad(format!("{n} is negative")))
            } else if f.fract() != 0.0 {
                Err(bad(format!("{n} is not a whole number")))
            } else if f > MAX_COUNT {
                Err(bad(format!("{n} is out of range")))
            } else {
                Ok(f as u64)
            }
        }
        other => Err(bad(format!("{other} is not a number"))),
    }
}

fn tokens(v: &Value, field: &'static str) -> Result<u64, DecodeError> {
    match v {
        Value::Null => Err(DecodeError::Missing { field }),
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("{n} is not a number"))
            .and_then(|v| thousands_to_tokens(v).map_err(|e| e.to_string()))
            .map_err(|reason| DecodeError::BadField { field, reason }),
        other => Err(DecodeError::BadField {
            field,
            reason: format!("{other} is not a number"),
        }),
    }
}

/// Whether a ShowStatistics request body asks for batch inference (its answer then carries
/// `total_completion_tasks` and `total_infer_count`).
pub fn request_is_batch(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("infer_type")?.as_str().map(|t| t == "batch"))
        .unwrap_or(false)
}

/// Parses a 200 answer of ShowStatistics into exact usage. Every figure the answer must carry
/// is required (a missing or null one is an error, never a silent zero): the three token
/// totals, the request and error counts, and for `batch` the completed tasks and inference
/// count. Errors cannot outnumber requests.
pub fn parse_statistics(body: &str, batch: bool) -> Result<Usage, DecodeError> {
    let v: Value = serde_json::from_str(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let obj = v.as_object().ok_or(DecodeError::NotStatistics)?;
    if !obj.contains_key("total_request_count") && !obj.contains_key("total_token") {
        return Err(DecodeError::NotStatistics);
    }
    let f = |k: &str| obj.get(k).unwrap_or(&Value::Null);
    // The numbers as written, for the counts.
    let written: BTreeMap<String, Box<RawValue>> = serde_json::from_str(body).unwrap_or_default();
    let count = |k: &'static str| count(f(k), written.get(k).map(|r| &**r), k);
    let usage = Usage {
        total_tokens: tokens(f("total_token"), "total_token")?,
        prompt_tokens: tokens(f("total_prompt_token"), "total_prompt_token")?,
        completion_tokens: tokens(f("total_completion_token"), "total_completion_token")?,
        requests: count("total_request_count")?,
        errors: count("total_error_count")?,
        completed_tasks: if batch {
            count("total_completion_tasks")?
        } else {
            0
        },
        infer_count: if batch {
            count("total_infer_count")?
        } else {
            0
        },
    };
    if usage.errors > usage.requests {
        return Err(DecodeError::MoreErrorsThanRequests {
            errors: usage.errors,
            requests: usage.requests,
        });
    }
    Ok(usage)
}

/// An error body, whichever of the three spellings the service used.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
}

pub fn parse_error_body(body: &str) -> ErrorBody {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(body) else {
        return ErrorBody::default();
    };
    let text = |keys: &[&str]| {
        keys.iter().find_map(|k| match obj.get(*k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    };
    ErrorBody {
        code: text(&["error_code", "errorCode", "code"]),
        message: text(&["error_msg", "errorMsg", "message"]),
        request_id: text(&["request_id", "requestId"]),
    }
}

#[derive(Debug, Deserialize)]
struct ProjectList {
    projects: Vec<Project>,
}

#[derive(Debug, Deserialize)]
struct Project {
    id: String,
    #[serde(default)]
    name: String,
    /// The account (domain) the project belongs to.
    #[serde(default)]
    domain_id: Option<String>,
}

/// A project as IAM lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectInfo {
    pub id: String,
    /// The account's domain id (`cloud.account.id`), when IAM says.
    pub domain_id: Option<String>,
}

/// Why a KeystoneListProjects answer names no single project.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectsError {
    #[error("unexpected IAM answer: {0}")]
    Unexpected(String),
    #[error("IAM lists no project named {0}; check the region, or set the project id (--project-id, HW_PROJECT_ID or cloud.project_id)")]
    None(String),
    #[error("IAM lists {count} projects named {region}; set the project id explicitly (--project-id, HW_PROJECT_ID or cloud.project_id)")]
    Several { count: usize, region: String },
}

/// The single project id in a KeystoneListProjects answer for `region`.
pub fn parse_projects(body: &str, region: &str) -> Result<ProjectInfo, ProjectsError> {
    let list: ProjectList =
        serde_json::from_str(body).map_err(|e| ProjectsError::Unexpected(e.to_string()))?;
    let matching: Vec<&Project> = list.projects.iter().filter(|p| p.name == region).collect();
    match matching.as_slice() {
        [p] => Ok(ProjectInfo {
            id: p.id.clone(),
            domain_id: p.domain_id.clone().filter(|d| !d.is_empty()),
        }),
        [] => Err(ProjectsError::None(region.to_string())),
        _ => Err(ProjectsError::Several {
            count: matching.len(),
            region: region.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{InferType, ServiceType, StatsRequest};
    use proptest::prelude::*;

    #[test]
    fn seed_example_converts_exactly() {
        assert_eq!(thousands_to_tokens(2482084.98), Ok(2_482_084_980));
        assert_eq!(thousands_to_tokens(0.001), Ok(1));
        assert_eq!(thousands_to_tokens(0.0), Ok(0));
        assert_eq!(thousands_to_tokens(24870.5), Ok(24_870_500));
        assert_eq!(thousands_to_tokens(1.0005), Ok(1001));
        assert!(thousands_to_tokens(-1.0).is_err());
        assert!(thousands_to_tokens(f64::NAN).is_err());
        assert!(thousands_to_tokens(1e300).is_err());
    }

    /// A complete real-time answer with `field` replaced by `value` (`None`: left out).
    fn answer_with(field: &str, value: Option<&str>) -> String {
        let mut fields = vec![
            ("total_request_count", "67188"),
            ("total_error_count", "8002"),
            ("total_token", "2482084.98"),
            ("total_prompt_token", "2456500.123"),
            ("total_completion_token", "24870.5"),
            ("total_completion_tasks", "3"),
            ("total_infer_count", "9"),
        ];
        fields.retain(|(k, _)| *k != field);
        if let Some(v) = value {
            fields.push((field, v));
        }
        let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", inner.join(","))
    }

    #[test]
    fn the_project_id_cannot_change_the_path() {
        assert_eq!(
            stats_path("0123456789abcdef0123456789abcdef"),
            "/v1/0123456789abcdef0123456789abcdef/maas/monitoring/show-statistics"
        );
        assert_eq!(
            stats_path("a?x#y/../z"),
            "/v1/a%3Fx%23y%2F..%2Fz/maas/monitoring/show-statistics"
        );
    }

    #[test]
    fn statistics_parse_and_reject() {
        let u = parse_statistics(r#"{"total_request_count":67188,"total_error_count":8002,"total_token":2482084.98,"total_prompt_token":2456500.123,"total_completion_token":24870.5}"#, false).unwrap();
        assert_eq!(u.total_tokens, 2_482_084_980);
        assert_eq!(u.prompt_tokens, 2_456_500_123);
        assert_eq!(u.requests, 67188);
        assert!(matches!(
            parse_statistics("<html>", false),
            Err(DecodeError::NotJson(_))
        ));
        assert!(matches!(
            parse_statistics("{}", false),
            Err(DecodeError::NotStatistics)
        ));
        for (field, value) in [
            ("total_request_count", "-1"),
            ("total_request_count", "1.5"),
            ("total_request_count", "1e-400"),
            ("total_error_count", "7.00000000000000001"),
            ("total_error_count", "-3"),
            ("total_token", "1e300"),
            ("total_token", "-0.5"),
            ("total_token", "\"12\""),
        ] {
            let e = parse_statistics(&answer_with(field, Some(value)), false).unwrap_err();
            assert!(
                matches!(e, DecodeError::BadField { field: f, .. } if f == field),
                "{field}={value}: {e}"
            );
        }
    }

    #[test]
    fn counts_must_fit_in_a_double_and_an_i64() {
        let two53 = 9_007_199_254_740_992u64;
        for big in [u64::MAX, i64::MAX as u64 + 1, two53 + 1] {
            let body = answer_with("total_request_count", Some(&big.to_string()));
            let e = parse_statistics(&body, false).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("field total_request_count: {big} is out of range")
            );
        }
        let body = answer_with("total_request_count", Some(&two53.to_string()));
        assert_eq!(parse_statistics(&body, false).unwrap().requests, two53);
        let e = parse_statistics(
            &answer_with("total_infer_count", Some("18446744073709551615")),
            true,
        )
        .unwrap_err();
        assert!(e.to_string().contains("total_infer_count"), "{e}");
    }

    #[test]
    fn errors_cannot_outnumber_requests() {
        let body = answer_with("total_error_count", Some("67189"));
        let e = parse_statistics(&body, false).unwrap_err();
        assert_eq!(
            e,
            DecodeError::MoreErrorsThanRequests {
                errors: 67189,
                requests: 67188
            }
        );
        assert_eq!(
            e.to_string(),
            "total_error_count (67189) is larger than total_request_count (67188)"
        );
        let equal = answer_with("total_error_count", Some("67188"));
        assert!(parse_statistics(&equal, false).is_ok());
    }

    #[test]
    fn missing_or_null_figures_are_refused_not_zero() {
        for field in [
            "total_request_count",
            "total_error_count",
            "total_token",
            "total_prompt_token",
            "total_completion_token",
        ] {
            for value in [None, Some("null")] {
                for batch in [false, true] {
                    let e = parse_statistics(&answer_with(field, value), batch).unwrap_err();
                    assert_eq!(e, DecodeError::Missing { field }, "{field} {value:?}");
                    assert!(e.to_string().contains(field));
                }
            }
        }
        for field in ["total_completion_tasks", "total_infer_count"] {
            for value in [None, Some("null")] {
                let body = answer_with(field, value);
                assert_eq!(
                    parse_statistics(&body, true).unwrap_err(),
                    DecodeError::Missing { field }
                );
                // A real-time answer does not carry them.
                let u = parse_statistics(&body, false).unwrap();
                assert_eq!((u.completed_tasks, u.infer_count), (0, 0));
            }
        }
        let u = parse_statistics(&answer_with("", None), true).unwrap();
        assert_eq!((u.completed_tasks, u.infer_count), (3, 9));
    }

    #[test]
    fn batch_is_read_from_the_request_body() {
        let mut r = StatsRequest::new(ServiceType::Preset, InferType::Batch, 1, 2);
        assert!(request_is_batch(&r.to_bytes()));
        r.infer_type = InferType::RealTime.name();
        assert!(!request_is_batch(&r.to_bytes()));
        assert!(!request_is_batch(b"not json"));
        assert!(!request_is_batch(b"{\"infer_type\":7}"));
    }

    #[test]
    fn error_bodies_in_three_spellings() {
        let e = parse_error_body(
            r#"{"error_code":"APIGW.0301","error_msg":"bad sig","request_id":"r1"}"#,
        );
        assert_eq!(
            (
                e.code.as_deref(),
                e.message.as_deref(),
                e.request_id.as_deref()
            ),
            (Some("APIGW.0301"), Some("bad sig"), Some("r1"))
        );
        let e = parse_error_body(r#"{"errorCode":"X.1","errorMsg":"m"}"#);
        assert_eq!(e.code.as_deref(), Some("X.1"));
        let e = parse_error_body(r#"{"code":"Y","message":"n"}"#);
        assert_eq!(e.message.as_deref(), Some("n"));
        assert_eq!(parse_error_body("not json"), ErrorBody::default());
    }

    #[test]
    fn projects_must_match_exactly_one() {
        let one = r#"{"projects":[{"id":"abc","name":"cn-southwest-2"},{"id":"zzz","name":"cn-southwest-2_sub"}]}"#;
        assert_eq!(parse_projects(one, "cn-southwest-2").unwrap().id, "abc");
        assert!(parse_projects(r#"{"projects":[]}"#, "cn-southwest-2")
            .unwrap_err()
            .to_string()
            .contains("no project"));
    }

    proptest! {
        #[test]
        fn any_integer_token_count_survives_the_thousands_round_trip(t in 0u64..1_000_000_000_000_000) {
            // What the server does: integer tokens / 1000 printed with at most 3 decimals.
            let text = format!("{}.{:03}", t / 1000, t % 1000);
            let v: f64 = text.parse().unwrap();
            prop_assert_eq!(thousands_to_tokens(v), Ok(t));
        }

        #[test]
        fn statistics_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = parse_statistics(&s, false);
            let _ = parse_statistics(&s, true);
            let _ = parse_error_body(&s);
        }

        /// Whatever numbers an answer carries, the parser either refuses it or returns values
        /// that are exact and in range: never a negative, a wrapped or an absurd figure.
        #[test]
        fn numbers_are_refused_or_exact(
            tokens in prop_oneof![any::<f64>(), -1e6f64..1e13, Just(1e300), Just(-0.0)],
            count in prop_oneof![any::<i64>().prop_map(|i| i as f64), any::<f64>(), Just(1.5)],
        ) {
            let tok = serde_json::Number::from_f64(tokens).map(|n| n.to_string()).unwrap_or_else(|| "null".into());
            let cnt = serde_json::Number::from_f64(count).map(|n| n.to_string()).unwrap_or_else(|| "null".into());
            let body = format!(r#"{{"total_token":{tok},"total_request_count":{cnt},"total_error_count":0,"total_prompt_token":0,"total_completion_token":0,"total_completion_tasks":{cnt},"total_infer_count":{cnt}}}"#);
            if let Ok(u) = parse_statistics(&body, true) {
                prop_assert!(u.total_tokens <= 1_000_000_000_000_000);
                prop_assert!(u.requests <= 9_007_199_254_740_992);
                prop_assert!(i64::try_from(u.requests).is_ok() && i64::try_from(u.infer_count).is_ok());
                if count.is_finite() && count >= 0.0 && count.fract() == 0.0 {
                    prop_assert_eq!(u.requests as f64, count);
                }
                if tokens.is_finite() && tokens >= 0.0 {
                    prop_assert!((u.total_tokens as f64 - tokens * 1000.0).abs() <= 1.0 + tokens * 1e-9);
                }
            }
        }
    }
}
