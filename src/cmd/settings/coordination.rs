//! The coordination engine's settings: the spec's `coordination:` block with the password from
//! `MAAS_USAGE_REDIS_PASSWORD` (never from the spec or the URL), the group named or derived,
//! the lease defaulted to twice the run's timeout.

use std::time::Duration;

use sha2::Digest;

use crate::cloud::credentials::Secret;
use crate::env::{self, Lookup};
use crate::spec::{Spec, SpecPath};
use crate::tls::{self, TlsFiles};

/// The variable that holds the Redis password (or the ACL user's).
pub const PASSWORD_VAR: &str = "MAAS_USAGE_REDIS_PASSWORD";

/// Redis, as the spec and the environment say.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://` or `rediss://`, as the spec gives it (without a password: the spec refuses
    /// one), which messages may name.
    pub url: String,
    pub password: Option<Secret>,
    /// Who shares period checkpoints: the spec's `group`, else a hash of the region, the
    /// project and the queries' names.
    pub group: String,
    pub lease: Duration,
    /// `on_unavailable: local`: the state directory when Redis cannot be reached.
    pub local_fallback: bool,
    /// `rediss://`: the spec's CA and client identity, named by where the spec gives them (read
    /// when the engine is opened).
    pub tls: TlsFiles,
}

/// The Redis settings of `spec`, if it chose `engine: redis`.
pub fn resolve(spec: &Spec, env: Lookup<'_>) -> Option<RedisSettings> {
    let r = spec.coordination.redis.as_ref()?;
    Some(RedisSettings {
        url: r.url.clone(),
        password: env::get(env, PASSWORD_VAR).map(Secret::new),
        group: r.group.clone().unwrap_or_else(|| derived_group(spec)),
        lease: r.lease.unwrap_or(spec.limits.timeout * 2),
        local_fallback: r.local_fallback,
        tls: TlsFiles {
            ca: r.ca_file.as_ref().map(named),
            client_cert: r.client_certificate.as_ref().map(named),
            client_key: r.client_key.as_ref().map(named),
        },
    })
}

fn named(p: &SpecPath) -> tls::Named {
    tls::named(&p.at, &p.path)
}

/// A group for processes running the same spec: the same region, project and query names.
fn derived_group(spec: &Spec) -> String {
    let mut text = format!(
        "{}\n{}",
        spec.cloud
            .region
            .as_deref()
            .unwrap_or(crate::spec::DEFAULT_REGION),
        spec.cloud.project_id.as_deref().unwrap_or("")
    );
    for q in &spec.queries {
        text.push('\n');
        text.push_str(&q.name);
    }
    let digest = crate::text::hex(&sha2::Sha256::digest(text.as_bytes()));
    format!("spec-{}", &digest[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Coordination, RedisSpec};
    use crate::test_support::env_of;

    fn spec(group: Option<&str>, lease: Option<u64>) -> Spec {
        Spec {
            coordination: Coordination {
                redis: Some(RedisSpec {
                    url: "redis://127.0.0.1:6379/0".into(),
                    group: group.map(String::from),
                    lease: lease.map(Duration::from_secs),
                    local_fallback: false,
                    ca_file: None,
                    client_certificate: None,
                    client_key: None,
                }),
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_password_comes_from_the_environment_and_the_lease_defaults_to_twice_the_timeout() {
        let env = env_of(&[(PASSWORD_VAR, "s3cret")]);
        let r = resolve(&spec(None, None), &env).unwrap();
        assert_eq!(r.password.as_ref().map(Secret::expose), Some("s3cret"));
        assert!(!format!("{r:?}").contains("s3cret"), "redacted");
        assert_eq!(r.lease, Duration::from_secs(50));
        assert!(r.group.starts_with("spec-"));
        let named = resolve(&spec(Some("team-a"), Some(90)), &env_of(&[])).unwrap();
        assert_eq!(
            (named.group.as_str(), named.lease),
            ("team-a", Duration::from_secs(90))
        );
        assert!(named.password.is_none());
        assert!(resolve(&Spec::default(), &env).is_none(), "engine state");
    }
}
