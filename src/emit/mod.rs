//! Output formats. Each is a pure function of a `Report` (plus its own options) to bytes; the
//! names of fields and metrics come from `fields`.

pub mod fields;
pub mod influx;
pub mod json;
pub mod otlp;
pub mod prometheus;
pub mod table;

use chrono::{DateTime, Utc};

use crate::collect::{Collected, RunStats};
use crate::time::zone::Zone;

/// Everything an emitter may print.
pub struct Report<'a> {
    pub collected: &'a Collected,
    pub stats: RunStats,
    pub region: &'a str,
    pub project_id: &'a str,
    pub zone: &'a Zone,
    pub now: DateTime<Utc>,
}

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(67188), "67,188");
        assert_eq!(super::thousands(1234567890), "1,234,567,890");
    }
}
