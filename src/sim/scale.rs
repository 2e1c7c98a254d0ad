//! The simulated account's size: how many model services, API keys and client IPs it has. The
//! first ones are the demo account's ([`super::model`]'s defaults), the rest are generated with
//! ids and names shaped like the real ones, so `maas-usage simulator --models N --keys K` serves
//! an organisation's Cloud Eye with the same exact hourly data.

use super::model::{fnv, mix, Dataset, SimModel, DEFAULT_IPS, DEFAULT_KEYS, DEFAULT_MODELS};

/// The most models, keys or IPs `maas-usage simulator` accepts (the bound of its flags).
pub const MAX_SIZE: usize = 1000;

/// How many of each the simulated account has. The default is the demo account: 3 models, 4
/// named API keys (plus the online-experience page, which has no key series), 3 client IPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Model services in `SYS.MaaS`.
    pub models: usize,
    /// Named API keys, each with a Cloud Eye series per model.
    pub keys: usize,
    /// Client IPs the traffic comes from.
    pub ips: usize,
}

impl Default for Size {
    fn default() -> Self {
        Size {
            models: DEFAULT_MODELS.len(),
            keys: DEFAULT_KEYS.iter().filter(|k| !k.is_empty()).count(),
            ips: DEFAULT_IPS.len(),
        }
    }
}

/// Families the generated model services are named after.
const FAMILIES: &[&str] = &[
    "DeepSeek-R1",
    "DeepSeek-V3.1",
    "Qwen3-235B-A22B",
    "Qwen3-30B-A3B",
    "Qwen3-Coder-480B-A35B",
    "QwQ-32B",
    "Qwen2.5-VL-72B-Instruct",
    "glm-4.5",
    "Kimi-K2-Instruct",
    "DeepSeek-R1-Distill-Qwen-32B",
];
/// Teams and uses the generated API keys are named after.
const TEAMS: &[&str] = &[
    "search", "chat", "finance", "support", "ads", "data", "legal", "growth",
];
const USES: &[&str] = &["prod", "staging", "ci", "dev", "eval"];

/// Model `i` of a sized account: the demo's first, then generated. One in three is a My Service
/// (service type 1, named `my-...`), the others preset services (type 2), as in the demo; the
/// id is 32 hex digits drawn from the name, like a real `maas_api_id`.
fn model(i: usize) -> SimModel {
    if let Some((id, name, st)) = DEFAULT_MODELS.get(i) {
        return SimModel {
            id: id.to_string(),
            name: name.to_string(),
            service_type: *st,
        };
    }
    let family = FAMILIES[i % FAMILIES.len()];
    let (name, service_type) = if i % 3 == 2 {
        (format!("my-{}-{i:03}", family.to_lowercase()), 1)
    } else {
        (format!("{family}-{i:03}"), 2)
    };
    let h = fnv(&name);
    SimModel {
        id: format!("{:016x}{:016x}", mix(h), mix(h ^ 0x6d61_6173)),
        name,
        service_type,
    }
}

/// Named API key `j` (from 0): the demo's first, then `<team>-<use>-<j>`.
fn key(j: usize) -> String {
    match DEFAULT_KEYS.iter().filter(|k| !k.is_empty()).nth(j) {
        Some(k) => k.to_string(),
        None => format!(
            "{}-{}-{j:03}",
            TEAMS[j % TEAMS.len()],
            USES[(j / TEAMS.len()) % USES.len()]
        ),
    }
}

/// Client IP `j`: the demo's first, then addresses in 10.8.0.0/16.
fn ip(j: usize) -> String {
    match DEFAULT_IPS.get(j) {
        Some(ip) => ip.to_string(),
        None => format!("10.8.{}.{}", j / 250, j % 250 + 1),
    }
}

impl Dataset {
    /// An account of this size with the default seed: [`Dataset::default`] for
    /// [`Size::default`]. Its traffic follows the same rules (each real-time hourly bucket of a
    /// key and IP belongs to one model of its service type), so every window's figures stay
    /// exact; with many models of a type, more IPs give each model-and-key series traffic in
    /// more hours.
    pub fn sized(size: Size) -> Dataset {
        let mut keys = vec![String::new()];
        keys.extend((0..size.keys).map(key));
        Dataset {
            keys,
            ips: (0..size.ips).map(ip).collect(),
            models: (0..size.models).map(model).collect(),
            ..Dataset::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_default_size_is_the_demo_account() {
        let (a, b) = (Dataset::sized(Size::default()), Dataset::default());
        assert_eq!(
            (a.seed, &a.keys, &a.ips, &a.models),
            (b.seed, &b.keys, &b.ips, &b.models)
        );
        // A smaller one is a prefix of it.
        let small = Dataset::sized(Size {
            models: 2,
            keys: 1,
            ips: 1,
        });
        assert_eq!(small.models, b.models[..2]);
        assert_eq!(small.keys, ["", "key-a1"]);
        assert_eq!(small.ips, ["10.0.0.1"]);
    }

    #[test]
    fn generated_ids_and_names_are_unique_and_shaped_like_the_real_ones() {
        let max = Size {
            models: MAX_SIZE,
            keys: MAX_SIZE,
            ips: MAX_SIZE,
        };
        let d = Dataset::sized(max);
        let ids: BTreeSet<&str> = d.models.iter().map(|m| m.id.as_str()).collect();
        let names: BTreeSet<&str> = d.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!((ids.len(), names.len()), (MAX_SIZE, MAX_SIZE));
        assert!(d.models.iter().all(|m| m.id.len() == 32
            && m.id.bytes().all(|b| b.is_ascii_hexdigit())
            && !m.id.bytes().any(|b| b.is_ascii_uppercase())));
        let st1 = d.models.iter().filter(|m| m.service_type == 1).count();
        assert_eq!(st1, MAX_SIZE / 3, "one in three is a My Service");
        assert!(d
            .models
            .iter()
            .all(|m| (m.service_type == 1) == m.name.starts_with("my-")));
        let key_ids: BTreeSet<String> = d
            .keys
            .iter()
            .map(|k| super::super::model::key_id(k))
            .collect();
        assert_eq!(d.keys.len(), MAX_SIZE + 1);
        assert_eq!(
            key_ids.len(),
            MAX_SIZE + 1,
            "every key has its own maas_key_id"
        );
        assert_eq!(d.keys[5], "ads-prod-004");
        let ips: BTreeSet<&str> = d.ips.iter().map(String::as_str).collect();
        assert_eq!(ips.len(), MAX_SIZE);
        assert!(d
            .ips
            .iter()
            .all(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()));
        assert_eq!(d.models[3].name, "Qwen3-30B-A3B-003");
        assert_eq!(d.models[5].name, "my-qwq-32b-005");
    }
}
