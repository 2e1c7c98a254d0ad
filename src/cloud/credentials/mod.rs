//! Where AK/SK (and a security token) come from: an ordered list of providers, the first with
//! credentials winning (the environment's `HW_*` pair, the SDK's `HUAWEICLOUD_SDK_*` pair, a
//! credentials file, the metadata service of an instance's agency), each renewing its own, and
//! around them an agency assumed through STS (`cloud::sts`); and a type that keeps them out of
//! output.
//!
//! Credentials are read from the environment, a credentials file or the metadata service only:
//! never from the spec or the command line, where they would end up in git, shell history or
//! `ps`. A provider is handed what it reads (the environment's values, a path, a URL) when the
//! settings are resolved; it reads no environment itself.

mod env;
mod file;

pub use env::EnvKeys;
pub use file::{parse_file, CredentialsFile};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use zeroize::Zeroize;

use super::auth::GateStore;
use super::metadata::{MetadataError, MetadataProvider};
use crate::budget::Budget;
use crate::domain::ApiError;

/// A secret string: prints as `***` in `Debug` and `Display`, and its memory is zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The only way to the value, named so that every use is easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[derive(Clone, Debug)]
pub struct Credentials {
    pub ak: Secret,
    pub sk: Secret,
    pub token: Option<Secret>,
    /// Where they came from, for messages ("HW_ACCESS_KEY/HW_SECRET_KEY", "credentials file ...").
    pub source: String,
    /// When temporary credentials (an agency's, from the metadata service) stop working.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who the API's limits count, when it is not the IAM user of the AK: the agency whose
    /// temporary credentials these are, named by its provider (the metadata service's URL,
    /// redacted), so that every temporary key it hands out is one identity for the budgets and
    /// the credential gate (see `auth::principal_id`).
    pub agency: Option<String>,
}

impl Credentials {
    /// Replaces every occurrence of the AK, SK or token in `text` with `***`. Applied to anything
    /// that came back from the server, because the gateway echoes the canonical request (with
    /// the token, a signed header) in its 401 answers.
    pub fn redact(&self, text: &str) -> String {
        let mut secrets: Vec<&str> = vec![self.ak.expose(), self.sk.expose()];
        if let Some(t) = &self.token {
            secrets.push(t.expose());
        }
        crate::text::redact(text, &secrets)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Every source of the chain was tried; `tried` says what each one gave.
    #[error("no credentials found; tried {}. Set HW_ACCESS_KEY and HW_SECRET_KEY, use a credentials file (--credentials-file or cloud.credentials_file), or run on an ECS/CCE node whose agency grants modelarts:monitoring:get", tried.join("; "))]
    NoneFound { tried: Vec<String> },
    #[error("{set} is set but {unset} is not: set both (or neither)")]
    HalfSet {
        set: &'static str,
        unset: &'static str,
    },
    #[error("cannot read credentials file {} (--credentials-file or cloud.credentials_file): {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    /// `line` 0: the file as a whole (a key is missing).
    #[error("credentials file {}: {reason}", located(path, *line))]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// The metadata service is there and failing (or handed out expired credentials): the
    /// cloud's failure, not credentials left unconfigured.
    #[error("the metadata service: {0}")]
    Metadata(MetadataError),
    /// STS did not hand out the agency's credentials (refused, failing, unreachable), or what
    /// it handed out cannot be used.
    #[error("assuming the agency {urn} through STS: {error}")]
    Assume { urn: String, error: ApiError },
}

impl CredentialsError {
    /// The user's configuration is wrong (exit 2), as opposed to a service failing (exit 1).
    pub fn is_input(&self) -> bool {
        match self {
            CredentialsError::Metadata(_) => false,
            CredentialsError::Assume { error, .. } => error.is_local(),
            _ => true,
        }
    }
}

/// What a provider that calls a service itself (STS) shares with the run's other calls: the
/// request budgets of the identities it signs for, and the credential gate's records.
#[derive(Clone)]
pub struct Services {
    pub budgets: Arc<dyn Budgets>,
    pub gate: Option<Arc<dyn GateStore>>,
}

/// The request budgets of a run, one per identity.
pub trait Budgets: Send + Sync {
    /// The budget of `principal` (an `auth::principal_id`), shared with every call, here or in
    /// another process, that identity makes.
    fn budget(&self, principal: &str) -> Arc<dyn Budget>;
}

fn located(path: &Path, line: usize) -> String {
    if line == 0 {
        path.display().to_string()
    } else {
        format!("{}:{line}", path.display())
    }
}

/// What a provider had when asked.
pub enum Loaded {
    /// Its credentials, and what is worth a warning about them (a file others can read).
    Found {
        credentials: Credentials,
        warnings: Vec<String>,
    },
    /// It has none: the line says what was looked at, for the error that lists every provider
    /// tried ("HW_ACCESS_KEY/HW_SECRET_KEY (not set)").
    Absent(String),
}

/// One place credentials may come from. A [`CredentialChain`] asks its providers in order and
/// uses the first one's credentials; that provider alone renews them.
///
/// Credentials a provider hands out say who the API's limits count: temporary credentials of
/// an agency carry its name in `agency` (one identity across renewals, whatever temporary key
/// comes back), so that the budgets and the credential gate stay the same.
pub trait CredentialProvider: Send {
    /// What it is, for messages ("HW_ACCESS_KEY/HW_SECRET_KEY", "the credentials file ...").
    fn name(&self) -> String;
    /// Its credentials, or [`Loaded::Absent`] when it has none (the chain asks the next one).
    /// An error stops the chain: something here is configured and wrong (half a key pair, a
    /// file that cannot be read), or a service that is there is failing.
    fn load(&mut self) -> Result<Loaded, CredentialsError>;
    /// Fresh credentials when its own changed (a rotated file) or are about to expire
    /// (temporary ones); `None` when those it handed out stay good. Asked before each
    /// collection of a long-running process (execd, serve), of the provider in use only.
    fn renew(&mut self) -> Result<Option<Credentials>, CredentialsError> {
        Ok(None)
    }
    /// A warning when it was configured but an earlier provider's credentials (`winner`, their
    /// source) are used instead: a credentials file given and never read, whose rotation would
    /// change nothing.
    fn shadowed(&self, _winner: &str) -> Option<String> {
        None
    }
    /// The run's budgets and gate records, for a provider that calls a service itself;
    /// handed over before the first `load`.
    fn share(&mut self, _services: &Services) {}
}

/// The providers of one cloud, in order of precedence, and which one's credentials are in use.
pub struct CredentialChain {
    inner: Mutex<Chain>,
}

struct Chain {
    providers: Vec<Box<dyn CredentialProvider>>,
    /// The provider whose credentials are in use.
    active: Option<usize>,
}

impl CredentialChain {
    pub fn new(providers: Vec<Box<dyn CredentialProvider>>) -> Self {
        CredentialChain {
            inner: Mutex::new(Chain {
                providers,
                active: None,
            }),
        }
    }

    /// The chain of every cloud: the `HW_*` pair, the SDK's pair, the credentials file
    /// `file`, then (when `metadata` names one) the metadata service of the instance's agency.
    /// `value_of` gives the environment's values (`None`: unset or blank).
    pub fn standard(
        value_of: impl Fn(&str) -> Option<String>,
        file: Option<PathBuf>,
        metadata: Option<String>,
    ) -> Self {
        let mut providers: Vec<Box<dyn CredentialProvider>> = EnvKeys::PAIRS
            .into_iter()
            .map(|names| Box::new(EnvKeys::new(names, &value_of)) as Box<dyn CredentialProvider>)
            .collect();
        providers.push(Box::new(CredentialsFile::new(file)));
        if let Some(endpoint) = metadata {
            providers.push(Box::new(MetadataProvider::new(endpoint)));
        }
        CredentialChain::new(providers)
    }

    fn chain(&self) -> MutexGuard<'_, Chain> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands the run's budgets and gate records to every provider (see
    /// [`CredentialProvider::share`]).
    pub fn share(&self, services: &Services) {
        for p in &mut self.chain().providers {
            p.share(services);
        }
    }

    /// Each provider's name, in order.
    pub fn names(&self) -> Vec<String> {
        self.chain().providers.iter().map(|p| p.name()).collect()
    }

    /// The credentials of the first provider that has some, with the warnings to say (its own,
    /// and a later provider's that was configured and is not used). When none has any, the
    /// error lists what each one tried.
    pub fn load(&self) -> Result<(Credentials, Vec<String>), CredentialsError> {
        let mut chain = self.chain();
        let mut tried = Vec::new();
        for i in 0..chain.providers.len() {
            match chain.providers[i].load()? {
                Loaded::Absent(line) => tried.push(line),
                Loaded::Found {
                    credentials,
                    mut warnings,
                } => {
                    warnings.extend(
                        chain.providers[i + 1..]
                            .iter()
                            .filter_map(|p| p.shadowed(&credentials.source)),
                    );
                    chain.active = Some(i);
                    return Ok((credentials, warnings));
                }
            }
        }
        chain.active = None;
        Err(CredentialsError::NoneFound { tried })
    }

    /// Fresh credentials from the provider in use (see [`CredentialProvider::renew`]); `None`
    /// when the ones in use stay good, or none were loaded.
    pub fn renew(&self) -> Result<Option<Credentials>, CredentialsError> {
        let mut chain = self.chain();
        match chain.active {
            Some(i) => chain.providers[i].renew(),
            None => Ok(None),
        }
    }
}

impl fmt::Debug for CredentialChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::env_of;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("canary-sk");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let c = Credentials {
            ak: Secret::new("AKX"),
            sk: s,
            token: None,
            source: "x".into(),
            expires_at: None,
            agency: None,
        };
        assert!(!format!("{c:?}").contains("canary"));
    }

    #[test]
    fn redact_replaces_every_secret() {
        let c = Credentials {
            ak: Secret::new("AKCANARY"),
            sk: Secret::new("SKCANARY"),
            token: Some(Secret::new("TOKENCANARY")),
            source: "x".into(),
            expires_at: None,
            agency: None,
        };
        let r = c.redact("Access=AKCANARY x-security-token:TOKENCANARY|SKCANARY");
        assert_eq!(r, "Access=*** x-security-token:***|***");
    }

    fn key(chain: &CredentialChain) -> (String, Option<String>) {
        let (c, _) = chain.load().unwrap();
        (
            c.ak.expose().to_string(),
            c.token.map(|t| t.expose().to_string()),
        )
    }

    #[test]
    fn hw_variables_win_over_sdk_ones() {
        let env = env_of(&[
            ("HW_ACCESS_KEY", "ak1"),
            ("HW_SECRET_KEY", "sk1"),
            ("HUAWEICLOUD_SDK_AK", "ak2"),
            ("HUAWEICLOUD_SDK_SK", "sk2"),
        ]);
        let chain = CredentialChain::standard(&env, None, None);
        assert_eq!(key(&chain), ("ak1".into(), None));
        let env = env_of(&[
            ("HUAWEICLOUD_SDK_AK", "ak2"),
            ("HUAWEICLOUD_SDK_SK", "sk2"),
            ("HUAWEICLOUD_SDK_SECURITY_TOKEN", "t"),
        ]);
        let chain = CredentialChain::standard(&env, None, None);
        assert_eq!(key(&chain), ("ak2".into(), Some("t".into())));
        assert_eq!(
            chain.names(),
            [
                "HW_ACCESS_KEY/HW_SECRET_KEY",
                "HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK",
                "a credentials file"
            ]
        );
    }

    #[test]
    fn half_set_pair_names_both_variables_and_stops_the_chain() {
        let env = env_of(&[
            ("HW_ACCESS_KEY", "ak"),
            ("HUAWEICLOUD_SDK_AK", "ak2"),
            ("HUAWEICLOUD_SDK_SK", "sk2"),
        ]);
        let e = CredentialChain::standard(&env, None, None)
            .load()
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "HW_ACCESS_KEY is set but HW_SECRET_KEY is not: set both (or neither)"
        );
    }

    #[test]
    fn with_no_credentials_every_provider_says_what_it_tried() {
        let e = CredentialChain::standard(env_of(&[]), None, None)
            .load()
            .unwrap_err();
        let CredentialsError::NoneFound { tried } = &e else {
            panic!("{e}");
        };
        assert_eq!(
            tried,
            &[
                "HW_ACCESS_KEY/HW_SECRET_KEY (not set)",
                "HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK (not set)",
                "a credentials file (none given)",
            ]
        );
        assert!(e.is_input());
    }

    #[test]
    fn an_unused_credentials_file_is_worth_a_warning() {
        let env = env_of(&[("HW_ACCESS_KEY", "ak"), ("HW_SECRET_KEY", "sk")]);
        let file = Some(PathBuf::from("/etc/maas-usage/aksk"));
        let (_, w) = CredentialChain::standard(&env, file, None).load().unwrap();
        assert_eq!(
            w,
            ["HW_ACCESS_KEY/HW_SECRET_KEY in the environment win over the credentials file /etc/maas-usage/aksk, which is not read; unset them to use the file"]
        );
        let (_, w) = CredentialChain::standard(&env, None, None).load().unwrap();
        assert!(w.is_empty());
    }

    /// A provider that counts what it is asked.
    struct Counting {
        has: bool,
        loads: Arc<AtomicUsize>,
        renewals: Arc<AtomicUsize>,
    }

    impl CredentialProvider for Counting {
        fn name(&self) -> String {
            "counting".into()
        }
        fn load(&mut self) -> Result<Loaded, CredentialsError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            Ok(match self.has {
                true => Loaded::Found {
                    credentials: Credentials {
                        ak: Secret::new("AK"),
                        sk: Secret::new("SK"),
                        token: None,
                        source: "counting".into(),
                        expires_at: None,
                        agency: None,
                    },
                    warnings: Vec::new(),
                },
                false => Loaded::Absent("counting (none)".into()),
            })
        }
        fn renew(&mut self) -> Result<Option<Credentials>, CredentialsError> {
            self.renewals.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        }
    }

    #[test]
    fn the_first_provider_with_credentials_is_used_and_alone_renews_them() {
        let counters: Vec<(Arc<AtomicUsize>, Arc<AtomicUsize>)> =
            (0..3).map(|_| Default::default()).collect();
        let chain = CredentialChain::new(
            counters
                .iter()
                .zip([false, true, true])
                .map(|((loads, renewals), has)| {
                    Box::new(Counting {
                        has,
                        loads: loads.clone(),
                        renewals: renewals.clone(),
                    }) as Box<dyn CredentialProvider>
                })
                .collect(),
        );
        assert_eq!(
            chain.renew().unwrap().map(|c| c.source),
            None,
            "nothing in use yet"
        );
        chain.load().unwrap();
        chain.renew().unwrap();
        let seen = |i: usize| {
            (
                counters[i].0.load(Ordering::SeqCst),
                counters[i].1.load(Ordering::SeqCst),
            )
        };
        assert_eq!([seen(0), seen(1), seen(2)], [(1, 0), (1, 1), (0, 0)]);
    }
}
