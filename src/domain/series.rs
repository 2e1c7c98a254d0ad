//! A series and its window: what a series is called (its key and checkpoint id) and which
//! stretch of time it covers.

use serde::{Deserialize, Serialize};

use super::{InferType, ServiceType};

/// The key group name of a series without a key filter.
pub const ALL_KEYS: &str = "all";

/// The identity of a series: what its tags are made of.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    pub query: String,
    pub service_type: ServiceType,
    pub infer_type: InferType,
    pub key_group: String,
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "query={} service_type={} infer_type={} key_group={}",
            self.query, self.service_type, self.infer_type, self.key_group
        )
    }
}

impl SeriesKey {
    /// The id a period-mode series' checkpoint is kept under.
    pub fn checkpoint_id(&self, region: &str) -> String {
        format!(
            "{region}/{}/{}/{}/{}",
            self.query, self.service_type, self.infer_type, self.key_group
        )
    }
}

/// How a window moves between runs; it decides Gauge or cumulative Sum in OTLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Start and end both move with now (`last_7d`).
    Rolling,
    /// Fixed start, end is now (`today`, `this_month`, an open `from`).
    Anchored,
    /// Both ends fixed in the past (`yesterday`, `previous_month`, a closed `from`/`to`).
    Closed,
    /// A settled period-mode bucket: emitted once, a delta in OTLP.
    Bucket,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
    pub shape: Shape,
}

impl Window {
    pub fn len_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }
}
