//! Teams: per-key figures summed into the spec's key groups (`breakdown: [model, key_group]`
//! and `[key_group]`). Keys are matched by name, as ShowStatistics' key filter matches them; a
//! key in no group goes to `ungrouped`. Sums are exact integers.

use std::collections::BTreeMap;

/// The group of keys no group names.
pub const UNGROUPED: &str = "ungrouped";

/// Which group each key belongs to: the groups of the spec, by key name. A key listed in several
/// groups counts in each of them (a group is a view, not a partition).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Groups {
    of_key: BTreeMap<String, Vec<String>>,
}

impl Groups {
    pub fn new(key_groups: &BTreeMap<String, Vec<String>>) -> Groups {
        let mut of_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, keys) in key_groups {
            for k in keys {
                of_key.entry(k.clone()).or_default().push(group.clone());
            }
        }
        Groups { of_key }
    }

    /// The groups of the key named `key` (`ungrouped` when none names it).
    pub fn of(&self, key: &str) -> Vec<&str> {
        match self.of_key.get(key) {
            Some(g) => g.iter().map(String::as_str).collect(),
            None => vec![UNGROUPED],
        }
    }

    /// Per-key rows `(key, row)` summed per group with `add`; groups in name order.
    pub fn sum<T: Clone + Default>(
        &self,
        rows: impl IntoIterator<Item = (String, T)>,
        add: impl Fn(&mut T, &T),
    ) -> BTreeMap<String, T> {
        let mut out: BTreeMap<String, T> = BTreeMap::new();
        for (key, row) in rows {
            for g in self.of(&key) {
                add(out.entry(g.to_string()).or_default(), &row);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn groups() -> Groups {
        let mut g = BTreeMap::new();
        g.insert(
            "team-a".to_string(),
            vec!["key-a1".to_string(), "key-a2".to_string()],
        );
        g.insert("team-b".to_string(), vec!["key-b1".to_string()]);
        Groups::new(&g)
    }

    #[test]
    fn keys_go_to_their_group_and_the_rest_to_ungrouped() {
        let g = groups();
        let sums = g.sum(
            [
                ("key-a1", 1u64),
                ("key-a2", 2),
                ("key-b1", 4),
                ("key-ci", 8),
                ("", 16),
            ]
            .map(|(k, v)| (k.to_string(), v)),
            |a, b| *a += b,
        );
        let want: BTreeMap<String, u64> = [("team-a", 3), ("team-b", 4), (UNGROUPED, 24)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        assert_eq!(sums, want);
    }

    proptest! {
        /// When every key is in at most one group, the groups' sums add up to the keys' sum.
        #[test]
        fn group_sums_add_up(rows in prop::collection::vec((prop::sample::select(vec!["key-a1", "key-a2", "key-b1", "key-ci", ""]), 0u64..1_000_000_000_000), 0..50)) {
            let g = groups();
            let total: u64 = rows.iter().map(|(_, v)| v).sum();
            let sums = g.sum(rows.iter().map(|(k, v)| (k.to_string(), *v)), |a, b| *a += b);
            prop_assert_eq!(sums.values().sum::<u64>(), total);
        }
    }
}
