//! The simulator's data: deterministic hourly integer buckets per (service type, inference
//! type, API key, client IP), so the exact answer for any window is known to the tests.
//!
//! A bucket exists once its hour is over (figures appear after the fact, as in the console) and
//! as long as its hour is inside the 30-day retention; a window longer than 30 days is answered
//! with zeros, as the real service does.

use crate::domain::range::{HOUR_MS, MAX_SEGMENT_MS, RETENTION_MS};
use crate::domain::Usage;

/// The API keys the simulated account has; `""` is the online-experience page.
pub const DEFAULT_KEYS: &[&str] = &["", "key-a1", "key-a2", "key-b1", "key-ci"];
/// The client IPs calls come from.
pub const DEFAULT_IPS: &[&str] = &["10.0.0.1", "10.0.0.2", "192.168.1.20"];

#[derive(Clone, Debug)]
pub struct Dataset {
    pub seed: u64,
    pub keys: Vec<String>,
    pub ips: Vec<String>,
}

impl Default for Dataset {
    fn default() -> Self {
        Dataset {
            seed: 20260521,
            keys: DEFAULT_KEYS.iter().map(|s| s.to_string()).collect(),
            ips: DEFAULT_IPS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// What one ShowStatistics call asks for.
#[derive(Clone, Debug)]
pub struct Selection<'a> {
    pub service_type: u8,
    pub batch: bool,
    pub start_ms: i64,
    pub end_ms: i64,
    pub api_keys: Option<&'a [String]>,
    pub ips: Option<&'a [String]>,
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser: a well-spread bijection, enough for synthetic traffic.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Dataset {
    /// The traffic of one hour for one key and IP.
    pub fn bucket(&self, service_type: u8, batch: bool, key: &str, ip: &str, hour: i64) -> Usage {
        let r = mix(self.seed
            ^ mix(fnv(key)
                ^ mix(fnv(ip)
                    ^ mix(hour as u64
                        ^ (u64::from(service_type) << 56)
                        ^ (u64::from(batch) << 48)))));
        // About one hour in five is idle.
        if r % 10 < 2 {
            return Usage::default();
        }
        let requests = 1 + (r >> 8) % 40;
        let errors = requests * ((r >> 16) % 12) / 100;
        let prompt = requests * (200 + (r >> 24) % 1800);
        let completion = requests * (10 + (r >> 36) % 300);
        let (completed_tasks, infer_count) = if batch {
            ((r >> 48) % 3, requests)
        } else {
            (0, 0)
        };
        Usage {
            total_tokens: prompt + completion,
            prompt_tokens: prompt,
            completion_tokens: completion,
            requests,
            errors,
            completed_tasks,
            infer_count,
        }
    }

    /// The exact answer the simulator gives for `sel` at `now_ms`.
    pub fn answer(&self, sel: &Selection<'_>, now_ms: i64) -> Usage {
        let mut total = Usage::default();
        if sel.end_ms - sel.start_ms > MAX_SEGMENT_MS || sel.end_ms <= sel.start_ms {
            return total;
        }
        let pick = |all: &[String], filter: Option<&[String]>| -> Vec<String> {
            match filter {
                None => all.to_vec(),
                Some(f) => {
                    let mut v: Vec<String> =
                        all.iter().filter(|k| f.contains(k)).cloned().collect();
                    v.dedup();
                    v
                }
            }
        };
        let keys = pick(&self.keys, sel.api_keys);
        let ips = pick(&self.ips, sel.ips);
        let horizon = now_ms - RETENTION_MS;
        let first_hour =
            sel.start_ms.div_euclid(HOUR_MS) + i64::from(sel.start_ms.rem_euclid(HOUR_MS) != 0);
        let mut hour = first_hour;
        while hour * HOUR_MS < sel.end_ms {
            let (h_start, h_end) = (hour * HOUR_MS, hour * HOUR_MS + HOUR_MS);
            if h_end <= now_ms && h_start >= horizon {
                for k in &keys {
                    for ip in &ips {
                        total += self.bucket(sel.service_type, sel.batch, k, ip, hour);
                    }
                }
            }
            hour += 1;
        }
        total
    }
}

/// `T` tokens as the API writes them: thousands with at most three decimals.
pub fn thousands_text(tokens: u64) -> String {
    let s = format!("{}.{:03}", tokens / 1000, tokens % 1000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The 200 answer body for `u`.
pub fn answer_json(u: &Usage, batch: bool) -> String {
    let mut s = format!(
        "{{\"total_request_count\":{},\"total_error_count\":{},\"total_token\":{},\"total_prompt_token\":{},\"total_completion_token\":{}",
        u.requests,
        u.errors,
        thousands_text(u.total_tokens),
        thousands_text(u.prompt_tokens),
        thousands_text(u.completion_tokens)
    );
    if batch {
        s.push_str(&format!(
            ",\"total_completion_tasks\":{},\"total_infer_count\":{}",
            u.completed_tasks, u.infer_count
        ));
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::api::parse_statistics;
    use crate::domain::range::DAY_MS;

    const NOW: i64 = 1_779_321_600_000; // 2026-05-21T00:00:00Z

    fn sel(start_ms: i64, end_ms: i64) -> Selection<'static> {
        Selection {
            service_type: 2,
            batch: false,
            start_ms,
            end_ms,
            api_keys: None,
            ips: None,
        }
    }

    #[test]
    fn windows_are_additive() {
        let d = Dataset::default();
        let whole = d.answer(&sel(NOW - 20 * DAY_MS, NOW), NOW);
        let mut parts = d.answer(&sel(NOW - 20 * DAY_MS, NOW - 7 * DAY_MS + 1234), NOW);
        parts += d.answer(&sel(NOW - 7 * DAY_MS + 1234, NOW), NOW);
        assert_eq!(whole, parts);
        assert!(whole.total_tokens > 0);
    }

    #[test]
    fn long_windows_and_old_data_are_zero() {
        let d = Dataset::default();
        assert_eq!(
            d.answer(&sel(NOW - 31 * DAY_MS, NOW), NOW),
            Usage::default()
        );
        assert_eq!(
            d.answer(&sel(NOW - 40 * DAY_MS, NOW - 31 * DAY_MS), NOW),
            Usage::default()
        );
        assert_eq!(d.answer(&sel(NOW, NOW + DAY_MS), NOW), Usage::default());
    }

    #[test]
    fn key_filter_selects_a_subset() {
        let d = Dataset::default();
        let keys = vec!["key-a1".to_string(), "key-a2".to_string()];
        let none = vec!["nope".to_string()];
        let mut s = sel(NOW - DAY_MS, NOW);
        let all = d.answer(&s, NOW);
        s.api_keys = Some(&keys);
        let some = d.answer(&s, NOW);
        assert!(some.requests > 0 && some.requests < all.requests);
        s.api_keys = Some(&none);
        assert_eq!(d.answer(&s, NOW), Usage::default());
    }

    #[test]
    fn answer_round_trips_through_the_client_parser() {
        let d = Dataset::default();
        let mut s = sel(NOW - 7 * DAY_MS, NOW);
        s.batch = true;
        let u = d.answer(&s, NOW);
        assert_eq!(parse_statistics(&answer_json(&u, true), true).unwrap(), u);
        let rt = Usage {
            completed_tasks: 0,
            infer_count: 0,
            ..u
        };
        assert_eq!(
            parse_statistics(&answer_json(&rt, false), false).unwrap(),
            rt
        );
        assert_eq!(thousands_text(2_482_084_980), "2482084.98");
        assert_eq!(thousands_text(5), "0.005");
        assert_eq!(thousands_text(7000), "7");
    }
}
