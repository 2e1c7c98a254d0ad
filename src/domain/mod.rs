//! The domain's vocabulary, shared by every layer and depending on none: service and inference
//! types, usage totals, series and windows, range expressions, a call and its failures, and the
//! names of tags and fields.

pub mod call;
pub mod cloud_eye;
pub mod failure;
pub mod names;
pub mod range;
pub mod series;

pub use call::{StatsAnswer, StatsRequest};
pub use failure::{ApiError, HttpFailure};
pub use range::{Bound, PeriodSpec, RangeError, RangeExpr};
pub use series::{SeriesKey, Shape, Window, ALL_KEYS};

use std::fmt;
use std::ops::AddAssign;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The `service_type` of ShowStatistics. The Chinese API docs list 3 for Custom Endpoint, but the
/// live service answers `service_type must be one of [1 2 4]`, so 3 has no variant here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceType {
    MyService,
    Preset,
    CustomEndpoint,
}

impl ServiceType {
    pub const ALL: [ServiceType; 3] = [Self::MyService, Self::Preset, Self::CustomEndpoint];

    pub fn code(self) -> u8 {
        match self {
            Self::MyService => 1,
            Self::Preset => 2,
            Self::CustomEndpoint => 4,
        }
    }

    /// The name used in tags, attributes and the spec.
    pub fn name(self) -> &'static str {
        match self {
            Self::MyService => "my_service",
            Self::Preset => "preset",
            Self::CustomEndpoint => "custom_endpoint",
        }
    }

    /// The console's wording, used in human output.
    pub fn title(self) -> &'static str {
        match self {
            Self::MyService => "My Service",
            Self::Preset => "Preset Service",
            Self::CustomEndpoint => "Custom Endpoint",
        }
    }

    pub fn from_code(code: i64) -> Result<Self, ServiceTypeError> {
        match code {
            1 => Ok(Self::MyService),
            2 => Ok(Self::Preset),
            4 => Ok(Self::CustomEndpoint),
            3 => Err(ServiceTypeError::Three),
            other => Err(ServiceTypeError::Code(other)),
        }
    }
}

/// Not a service type the API knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceTypeError {
    #[error("3 is not a service type; use 4 for Custom Endpoint (the API refuses 3)")]
    Three,
    #[error("{0} is not a service type; use 1 (my_service), 2 (preset) or 4 (custom_endpoint)")]
    Code(i64),
    #[error("`{0}` is not a service type; use my_service (1), preset (2) or custom_endpoint (4)")]
    Name(String),
}

/// Not an inference type the API knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an inference type; use real_time or batch")]
pub struct InferTypeError(pub String);

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ServiceType {
    type Err = ServiceTypeError;
    fn from_str(s: &str) -> Result<Self, ServiceTypeError> {
        let t = s.trim();
        if let Ok(code) = t.parse::<i64>() {
            return Self::from_code(code);
        }
        match t.to_ascii_lowercase().replace('-', "_").as_str() {
            "my_service" => Ok(Self::MyService),
            "preset" => Ok(Self::Preset),
            "custom_endpoint" => Ok(Self::CustomEndpoint),
            _ => Err(ServiceTypeError::Name(s.to_string())),
        }
    }
}

/// The `infer_type` of ShowStatistics.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum InferType {
    #[default]
    RealTime,
    Batch,
}

impl InferType {
    pub fn name(self) -> &'static str {
        match self {
            Self::RealTime => "real_time",
            Self::Batch => "batch",
        }
    }
}

impl fmt::Display for InferType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InferType {
    type Err = InferTypeError;
    fn from_str(s: &str) -> Result<Self, InferTypeError> {
        match s.trim() {
            "real_time" => Ok(Self::RealTime),
            "batch" => Ok(Self::Batch),
            _ => Err(InferTypeError(s.to_string())),
        }
    }
}

/// Usage totals in exact units: tokens (not thousands), requests, errors.
///
/// Integers all the way: segments are summed here, never as floats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub total_tokens: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub requests: u64,
    pub errors: u64,
    /// Batch inference only.
    pub completed_tasks: u64,
    /// Batch inference only.
    pub infer_count: u64,
}

impl Usage {
    /// errors / requests, 0 when there were no requests.
    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        // Saturating: a sum that overflows u64 is far beyond any real account, and a
        // panic in a monitoring plugin is worse than a clamped figure.
        self.total_tokens = self.total_tokens.saturating_add(o.total_tokens);
        self.prompt_tokens = self.prompt_tokens.saturating_add(o.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(o.completion_tokens);
        self.requests = self.requests.saturating_add(o.requests);
        self.errors = self.errors.saturating_add(o.errors);
        self.completed_tasks = self.completed_tasks.saturating_add(o.completed_tasks);
        self.infer_count = self.infer_count.saturating_add(o.infer_count);
    }
}

/// A project id as the spec takes it (`^[a-z0-9]{32}$`): it goes into every signed path, so
/// nothing else may, from a flag, the environment, a cache or an answer.
pub fn is_project_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A region name as the spec takes it (`^[a-z]{2}(-[a-z]+)+-[0-9]+$`, like `cn-southwest-2`):
/// it goes into the default endpoints' host names and IAM's query.
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let Some((number, rest)) = parts.split_last() else {
        return false;
    };
    let Some((country, words)) = rest.split_first() else {
        return false;
    };
    let letters = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    country.len() == 2
        && letters(country)
        && !words.is_empty()
        && words.iter().all(letters)
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_and_regions_are_the_spec_s() {
        // The schema's patterns are the ones these functions implement.
        let schema = include_str!("../../schemas/maas-usage.schema.json");
        assert!(schema.contains(r#""pattern": "^[a-z0-9]{32}$""#));
        assert!(schema.contains(r#""pattern": "^[a-z]{2}(-[a-z]+)+-[0-9]+$""#));
        assert!(is_project_id("0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcde?",
            "0123456789abcdef0123456789abcde#",
            "0123456789abcdef/123456789abcdef",
            "0123456789abcdef0123456789abcdeé",
        ] {
            assert!(!is_project_id(bad), "{bad}");
        }
        for good in [
            "cn-southwest-2",
            "ap-southeast-1",
            "cn-north-4",
            "la-south-american-10",
        ] {
            assert!(is_region(good), "{good}");
        }
        for bad in [
            "",
            "cn",
            "cn-2",
            "cn-southwest-",
            "cn--2",
            "cnn-southwest-2",
            "CN-southwest-2",
            "cn-southwest-2/x",
            "evil.example#",
            "cn-south west-2",
            "cn-southwest-2a",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    #[test]
    fn service_type_three_points_at_four() {
        let e = "3".parse::<ServiceType>().unwrap_err().to_string();
        assert!(e.contains("use 4 for Custom Endpoint"), "{e}");
    }

    #[test]
    fn service_type_names_and_codes_round_trip() {
        for st in ServiceType::ALL {
            assert_eq!(st.name().parse::<ServiceType>().unwrap(), st);
            assert_eq!(st.code().to_string().parse::<ServiceType>().unwrap(), st);
        }
        assert!("5".parse::<ServiceType>().is_err());
        assert!("presets".parse::<ServiceType>().is_err());
    }

    #[test]
    fn error_ratio_is_zero_without_requests() {
        assert_eq!(Usage::default().error_ratio(), 0.0);
        let u = Usage {
            requests: 4,
            errors: 1,
            ..Default::default()
        };
        assert_eq!(u.error_ratio(), 0.25);
    }
}
