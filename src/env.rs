//! The process environment, read in one place. Everything that reads a variable takes a
//! [`Lookup`], so tests hand in an environment of their own instead of touching the process's.

/// How a variable is looked up.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process's environment.
pub fn process(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A variable's value, trimmed; unset and blank are both `None`.
pub fn get(env: Lookup<'_>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_unset_and_values_are_trimmed() {
        let env = |k: &str| match k {
            "A" => Some("  x ".to_string()),
            "B" => Some("   ".to_string()),
            _ => None,
        };
        assert_eq!(get(&env, "A").as_deref(), Some("x"));
        assert_eq!(get(&env, "B"), None);
        assert_eq!(get(&env, "C"), None);
    }
}
