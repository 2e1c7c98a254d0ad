//! The simulator's data: deterministic hourly integer buckets per (service type, inference
//! type, API key, client IP), so the exact answer for any window is known to the tests.
//!
//! A bucket exists once its hour is over (figures appear after the fact, as in the console) and
//! as long as its hour is inside the 30-day retention; a window longer than 30 days is answered
//! with zeros, as the real service does.
//!
//! Each real-time bucket of service types 1 and 2 belongs wholly to one model of its service
//! type, so Cloud Eye's per-model figures (`super::cloud_eye`) add up exactly to ShowStatistics' totals.

use crate::domain::range::{HOUR_MS, MAX_SEGMENT_MS, RETENTION_MS};
use crate::domain::Usage;

/// The API keys the simulated account has; `""` is the online-experience page.
pub const DEFAULT_KEYS: &[&str] = &["", "key-a1", "key-a2", "key-b1", "key-ci"];
/// The client IPs calls come from.
pub const DEFAULT_IPS: &[&str] = &["10.0.0.1", "10.0.0.2", "192.168.1.20"];
/// The model services the simulated account calls: (id, name, service type).
pub const DEFAULT_MODELS: &[(&str, &str, u8)] = &[
    ("6f1c2a9e4b7d4c0e9a1f3b5d7e9c1a2b", "DeepSeek-V3", 2),
    ("0b7e5d3c1a9f4e2d8c6b4a2f0e8d6c4b", "Qwen3-32B", 2),
    ("9a8b7c6d5e4f40312a1b2c3d4e5f6a7b", "my-glm-4-9b", 1),
];
pub const MINUTE_MS: i64 = 60_000;

/// One model service (`maas_api_id` in Cloud Eye).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimModel {
    pub id: String,
    pub name: String,
    pub service_type: u8,
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub seed: u64,
    pub keys: Vec<String>,
    pub ips: Vec<String>,
    /// Real-time traffic of service types 1 and 2 is shared among the models of its type.
    pub models: Vec<SimModel>,
}

impl Default for Dataset {
    fn default() -> Self {
        Dataset {
            seed: 20260521,
            keys: DEFAULT_KEYS.iter().map(|s| s.to_string()).collect(),
            ips: DEFAULT_IPS.iter().map(|s| s.to_string()).collect(),
            models: DEFAULT_MODELS
                .iter()
                .map(|(id, name, st)| SimModel {
                    id: id.to_string(),
                    name: name.to_string(),
                    service_type: *st,
                })
                .collect(),
        }
    }
}

/// The Cloud Eye id (`maas_key_id`) of a non-empty API key name.
pub fn key_id(name: &str) -> String {
    format!("{:016x}", fnv(name))
}

/// An hour's integer `v` spread over its minutes: minute `i` (0..59) gets `v / 60`, plus one
/// for the first `v % 60` minutes, so the minutes add up to `v` exactly.
pub fn spread(v: u64, minute_index: u32) -> u64 {
    v / 60 + u64::from(u64::from(minute_index) < v % 60)
}

/// One minute of an hour made of `parts` (hourly buckets), each spread on its own:
/// `total_tokens` is the minute's prompt + completion tokens.
pub fn minute_of(parts: &[Usage], minute_index: u32) -> Usage {
    let mut m = Usage::default();
    for p in parts {
        m.prompt_tokens += spread(p.prompt_tokens, minute_index);
        m.completion_tokens += spread(p.completion_tokens, minute_index);
        m.requests += spread(p.requests, minute_index);
        m.errors += spread(p.errors, minute_index);
    }
    m.total_tokens = m.prompt_tokens + m.completion_tokens;
    m
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

pub(super) fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser: a well-spread bijection, enough for synthetic traffic.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub(super) fn fnv(s: &str) -> u64 {
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

    /// Whether the hour starting at `hour * HOUR_MS` has data at `now_ms`: it is over and inside
    /// the retention, the rule of [`Dataset::answer`].
    pub fn hour_has_data(hour: i64, now_ms: i64) -> bool {
        hour.checked_mul(HOUR_MS).is_some_and(|h_start| {
            h_start.saturating_add(HOUR_MS) <= now_ms
                && h_start >= now_ms.saturating_sub(RETENTION_MS)
        })
    }

    /// The models of a service type, in their configured order.
    pub fn models_of(&self, service_type: u8) -> Vec<&SimModel> {
        self.models
            .iter()
            .filter(|m| m.service_type == service_type)
            .collect()
    }

    /// The model a real-time bucket of service type 1 or 2 belongs to (none for other types,
    /// or when no model of that type is configured).
    pub fn model_of(&self, service_type: u8, key: &str, ip: &str, hour: i64) -> Option<&SimModel> {
        if !(1..=2).contains(&service_type) {
            return None;
        }
        let of_type = self.models_of(service_type);
        of_type
            .get(self.owner(of_type.len(), fnv(key), fnv(ip), hour)?)
            .copied()
    }

    /// Which of `n` models of a service type (in their configured order) a real-time bucket
    /// belongs to, from the hashes of its key and IP; `None` when there are none.
    fn owner(&self, n: usize, key_hash: u64, ip_hash: u64, hour: i64) -> Option<usize> {
        let r = mix(self.seed ^ key_hash ^ mix(ip_hash ^ hour as u64));
        (n > 0).then(|| (r % n as u64) as usize)
    }

    /// The model with this id, when it is in Cloud Eye (service type 1 or 2).
    pub fn ces_model(&self, model_id: &str) -> Option<&SimModel> {
        self.models
            .iter()
            .find(|m| m.id == model_id && (1..=2).contains(&m.service_type))
    }

    /// The hourly buckets that make one hour of a model: all keys (`key` None, the service
    /// level) or one key name (`Some("")` is the online-experience page's share). Empty when the
    /// hour has no data yet (or any more), or the model or key is unknown.
    pub fn model_hour(
        &self,
        model_id: &str,
        key: Option<&str>,
        hour: i64,
        now_ms: i64,
    ) -> Vec<Usage> {
        self.model_hours(model_id, key, hour..hour.saturating_add(1), now_ms)
            .pop()
            .map(|(_, parts)| parts)
            .unwrap_or_default()
    }

    /// [`Dataset::model_hour`] for each hour of `hours` with data: (hour, its buckets), in
    /// order, leaving out the hours without any.
    pub fn model_hours(
        &self,
        model_id: &str,
        key: Option<&str>,
        hours: std::ops::Range<i64>,
        now_ms: i64,
    ) -> Vec<(i64, Vec<Usage>)> {
        let Some(model) = self.ces_model(model_id) else {
            return Vec::new();
        };
        let st = model.service_type;
        // The model's place among those of its type: a bucket is its own when `owner` says so
        // (the rule of `model_of`, without looking the model up for every bucket).
        let of_type = self.models_of(st);
        let Some(place) = of_type.iter().position(|m| m.id == model.id) else {
            return Vec::new();
        };
        let keys: Vec<(&str, u64)> = (self.keys.iter())
            .filter(|k| key.is_none_or(|want| want == *k))
            .map(|k| (k.as_str(), fnv(k)))
            .collect();
        let ips: Vec<(&str, u64)> = self.ips.iter().map(|ip| (ip.as_str(), fnv(ip))).collect();
        let mut out = Vec::new();
        for hour in hours.filter(|h| Self::hour_has_data(*h, now_ms)) {
            let mut parts = Vec::new();
            for &(k, kh) in &keys {
                for &(ip, iph) in &ips {
                    if self.owner(of_type.len(), kh, iph, hour) == Some(place) {
                        parts.push(self.bucket(st, false, k, ip, hour));
                    }
                }
            }
            if !parts.is_empty() {
                out.push((hour, parts));
            }
        }
        out
    }

    /// The exact usage of a model (`key` None) or of one API key NAME under it, summed over the
    /// minutes whose start is in `[start_ms, end_ms)`, at `now_ms`.
    pub fn model_usage(
        &self,
        model_id: &str,
        key: Option<&str>,
        start_ms: i64,
        end_ms: i64,
        now_ms: i64,
    ) -> Usage {
        let mut total = Usage::default();
        for (hour, parts) in self.model_hours(
            model_id,
            key,
            hours_with_data(start_ms, end_ms, now_ms),
            now_ms,
        ) {
            let h_start = hour * HOUR_MS;
            if start_ms <= h_start && h_start + HOUR_MS <= end_ms {
                parts.iter().for_each(|p| total += *p);
                continue;
            }
            for i in 0..60u32 {
                let m = h_start + i64::from(i) * MINUTE_MS;
                if (start_ms..end_ms).contains(&m) {
                    total += minute_of(&parts, i);
                }
            }
        }
        total
    }
}

/// The hours that overlap `[start_ms, end_ms)` and may hold data at `now_ms` (inside the
/// retention, not after now): a loop over them stays short whatever the window.
pub fn hours_with_data(start_ms: i64, end_ms: i64, now_ms: i64) -> std::ops::Range<i64> {
    if end_ms <= start_ms {
        return 0..0;
    }
    let first = start_ms
        .div_euclid(HOUR_MS)
        .max(now_ms.saturating_sub(RETENTION_MS).div_euclid(HOUR_MS));
    let last = (end_ms - 1)
        .div_euclid(HOUR_MS)
        .min(now_ms.div_euclid(HOUR_MS));
    first..last + 1
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

    fn rt(st: u8, start_ms: i64, end_ms: i64) -> Selection<'static> {
        Selection {
            service_type: st,
            ..sel(start_ms, end_ms)
        }
    }

    #[test]
    fn the_models_of_a_service_type_add_up_to_show_statistics() {
        let d = Dataset::default();
        // Hour-aligned, three days, ending two hours before now.
        let (start, end) = (NOW - 3 * DAY_MS - 2 * HOUR_MS, NOW - 2 * HOUR_MS);
        for st in [1u8, 2] {
            let models = d.models_of(st);
            assert!(!models.is_empty());
            let mut sum = Usage::default();
            for m in &models {
                let u = d.model_usage(&m.id, None, start, end, NOW);
                assert!(u.requests > 0, "{} has traffic", m.name);
                sum += u;
            }
            assert_eq!(sum, d.answer(&rt(st, start, end), NOW), "service type {st}");
        }
        // Service type 2 has two models: each gets a share, neither gets all.
        let st2 = d.models_of(2);
        let a = d.model_usage(&st2[0].id, None, start, end, NOW);
        let b = d.model_usage(&st2[1].id, None, start, end, NOW);
        assert!(a.total_tokens > 0 && b.total_tokens > 0);
        // Custom endpoints are in no model.
        assert!(d.model_of(4, "key-a1", "10.0.0.1", 5).is_none());
    }

    #[test]
    fn a_sized_account_reconciles_like_the_demo() {
        let d = Dataset::sized(crate::sim::Size {
            models: 7,
            keys: 3,
            ips: 5,
        });
        let (start, end) = (NOW - DAY_MS - 2 * HOUR_MS, NOW - 2 * HOUR_MS);
        for st in [1u8, 2] {
            let mut sum = Usage::default();
            for m in d.models_of(st) {
                let whole = d.model_usage(&m.id, None, start, end, NOW);
                assert!(whole.requests > 0, "{} has traffic", m.name);
                let mut parts = Usage::default();
                for k in &d.keys {
                    parts += d.model_usage(&m.id, Some(k), start, end, NOW);
                }
                assert_eq!(whole, parts, "{}: its keys add up", m.name);
                sum += whole;
            }
            assert_eq!(sum, d.answer(&rt(st, start, end), NOW), "service type {st}");
        }
    }

    #[test]
    fn the_keys_and_the_online_experience_share_add_up_to_the_model() {
        let d = Dataset::default();
        let (start, end) = (NOW - 3 * DAY_MS, NOW);
        for m in &d.models {
            let whole = d.model_usage(&m.id, None, start, end, NOW);
            let mut parts = d.model_usage(&m.id, Some(""), start, end, NOW);
            assert!(parts.requests > 0, "the online-experience page has traffic");
            for k in d.keys.iter().filter(|k| !k.is_empty()) {
                parts += d.model_usage(&m.id, Some(k), start, end, NOW);
            }
            assert_eq!(whole, parts, "{}", m.name);
            // Unaligned windows too: the minutes of every bucket are spread on their own.
            let (s, e) = (start + 7 * 60_000 + 123, start + 5 * HOUR_MS + 31 * 60_000);
            let whole = d.model_usage(&m.id, None, s, e, NOW);
            let mut parts = Usage::default();
            for k in &d.keys {
                parts += d.model_usage(&m.id, Some(k), s, e, NOW);
            }
            assert_eq!(whole, parts, "{} unaligned", m.name);
        }
        assert_eq!(
            d.model_usage("no-such-model", None, start, end, NOW),
            Usage::default()
        );
        assert_eq!(
            d.model_usage(&d.models[0].id, Some("no-such-key"), start, end, NOW),
            Usage::default()
        );
    }

    #[test]
    fn model_data_follows_the_show_statistics_clock() {
        let d = Dataset::default();
        let id = &d.models[0].id;
        // The current hour is not over: nothing yet; the hour before is.
        let now = NOW + 30 * 60_000;
        assert_eq!(d.model_usage(id, None, NOW, now, now), Usage::default());
        assert!(Dataset::hour_has_data(NOW / HOUR_MS - 1, now));
        assert!(!Dataset::hour_has_data(NOW / HOUR_MS, now));
        // Older than the retention: nothing.
        let old = d.model_usage(id, None, NOW - 40 * DAY_MS, NOW - 31 * DAY_MS, NOW);
        assert_eq!(old, Usage::default());
        assert_eq!(key_id("key-a1").len(), 16);
        assert_ne!(key_id("key-a1"), key_id("key-a2"));
    }

    proptest::proptest! {
        #[test]
        fn minutes_add_up_to_the_hour(
            parts in proptest::collection::vec((0u64..100_000, 0u64..50_000, 0u64..500, 0u64..60), 0..6)
        ) {
            let parts: Vec<Usage> = parts
                .into_iter()
                .map(|(p, c, r, e)| Usage {
                    total_tokens: p + c,
                    prompt_tokens: p,
                    completion_tokens: c,
                    requests: r,
                    errors: e.min(r),
                    ..Usage::default()
                })
                .collect();
            let mut hour = Usage::default();
            parts.iter().for_each(|p| hour += *p);
            let mut minutes = Usage::default();
            for i in 0..60 {
                let m = minute_of(&parts, i);
                proptest::prop_assert_eq!(m.total_tokens, m.prompt_tokens + m.completion_tokens);
                // Errors never outnumber requests in a minute (req_count_2xx cannot go below 0).
                proptest::prop_assert!(m.errors <= m.requests);
                minutes += m;
            }
            proptest::prop_assert_eq!(minutes, hour);
        }

        #[test]
        fn one_value_spreads_evenly(v in 0u64..10_000_000) {
            let minutes: Vec<u64> = (0..60).map(|i| spread(v, i)).collect();
            proptest::prop_assert_eq!(minutes.iter().sum::<u64>(), v);
            let (lo, hi) = (minutes.iter().min(), minutes.iter().max());
            proptest::prop_assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1));
        }
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
