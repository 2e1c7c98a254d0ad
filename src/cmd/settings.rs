//! One resolution step: flags, then the spec, then the environment, then defaults, into the
//! settings a command uses (as ripgrep turns low-level arguments into high-level ones). Nothing
//! else merges these sources.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::error::Error;
use crate::cli::{CloudArgs, NowArg, StateArgs};
use crate::cloud::{metadata, ConnectOptions};
use crate::env::{self, Lookup};
use crate::spec::{Spec, DEFAULT_REGION};
use crate::state;
use crate::time::zone::Zone;

/// The longest a single HTTP exchange may take; the run's deadline shortens it further.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The flags that can override a spec, as parsed.
#[derive(Default, Clone, Copy)]
pub struct Flags<'a> {
    pub cloud: Option<&'a CloudArgs>,
    pub state: Option<&'a StateArgs>,
    pub now: Option<&'a NowArg>,
    pub timezone: Option<&'a str>,
}

/// What a command runs with.
pub struct Settings {
    pub connect: ConnectOptions,
    /// The state directory to use, if any: the flag, else `$XDG_STATE_HOME/maas-usage`, else
    /// `~/.local/state/maas-usage`.
    pub state_dir: Option<PathBuf>,
    /// A pinned "now" (`--now`); `None` reads the clock at each collection.
    pub now: Option<DateTime<Utc>>,
    pub zone: Zone,
    /// `--simulator URL`: every endpoint is the simulator's, and no credentials are read but
    /// those its metadata service hands out.
    pub simulator: Option<String>,
}

impl Settings {
    pub fn resolve(spec: &Spec, flags: Flags<'_>, env: Lookup<'_>) -> Result<Settings, Error> {
        let none = CloudArgs::default();
        let f = flags.cloud.unwrap_or(&none);
        let s = &spec.cloud;
        let mut connect = ConnectOptions {
            region: f
                .region
                .clone()
                .or_else(|| s.region.clone())
                .unwrap_or_else(|| DEFAULT_REGION.to_string()),
            project_id: f.project_id.clone().or_else(|| s.project_id.clone()),
            endpoint: f.endpoint.clone().or_else(|| s.endpoint.clone()),
            iam_endpoint: f.iam_endpoint.clone().or_else(|| s.iam_endpoint.clone()),
            credentials_file: f
                .credentials_file
                .clone()
                .or_else(|| s.credentials_file.clone()),
            metadata_endpoint: Some(
                s.metadata_endpoint
                    .clone()
                    .or_else(|| env::get(env, "MAAS_USAGE_METADATA_ENDPOINT"))
                    .unwrap_or_else(|| metadata::DEFAULT_ENDPOINT.to_string()),
            ),
            ca_file: f.ca_file.clone().or_else(|| s.ca_file.clone()),
            ces_endpoint: s.ces_endpoint.clone(),
            maas_monitor_endpoint: s.maas_monitor_endpoint.clone(),
            ces_requests_per_minute: spec.limits.ces_requests_per_minute,
            call_timeout: CALL_TIMEOUT,
        };
        let simulator = f.simulator.clone();
        if let Some(url) = &simulator {
            // Every endpoint, the metadata service included: the only credentials sent to the
            // simulator are those it issued. The spec's project is a real account's.
            for e in [
                &mut connect.endpoint,
                &mut connect.iam_endpoint,
                &mut connect.ces_endpoint,
                &mut connect.maas_monitor_endpoint,
                &mut connect.metadata_endpoint,
            ] {
                *e = Some(url.clone());
            }
            connect.credentials_file = None;
            connect.project_id = f.project_id.clone();
        }
        // The default state directory keeps the real runs' budget, rejections and checkpoints:
        // a simulated run does not touch it.
        let state_dir = flags.state.and_then(|a| a.state_dir.clone()).or_else(|| {
            simulator
                .is_none()
                .then(|| state::default_dir(env))
                .flatten()
        });
        let now = flags
            .now
            .and_then(|n| n.now.as_deref())
            .map(|n| super::parse_now(Some(n)))
            .transpose()?;
        let zone = super::resolve_zone(flags.timezone.or(spec.timezone.as_deref()))?;
        Ok(Settings {
            connect,
            state_dir,
            now,
            zone,
            simulator,
        })
    }

    /// The environment the credential chain reads: none at all under `--simulator`, so that
    /// real credentials (and a pinned project id) never go to it.
    pub fn credential_env(&self) -> Lookup<'static> {
        match self.simulator {
            Some(_) => &|_| None,
            None => &env::process,
        }
    }

    /// Whether the credential gate's records are shared with other processes (the state
    /// directory, with the per-user runtime directory behind it). Not under `--simulator`: the
    /// runtime directory holds the real runs' rejections, which a simulated run neither reads
    /// nor adds to; its gate stays in the process, as the demo's does.
    pub fn shares_gate(&self) -> bool {
        self.simulator.is_none()
    }

    /// The pinned instant, or the clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::CloudSpec;
    use crate::test_support::env_of;

    #[test]
    fn flags_win_over_the_spec_which_wins_over_defaults() {
        let spec = Spec {
            cloud: CloudSpec {
                region: Some("spec-region".into()),
                project_id: Some("spec-project".into()),
                ..Default::default()
            },
            timezone: Some("Asia/Shanghai".into()),
            ..Default::default()
        };
        let cloud = CloudArgs {
            project_id: Some("flag-project".into()),
            ..Default::default()
        };
        let flags = Flags {
            cloud: Some(&cloud),
            ..Default::default()
        };
        let s = Settings::resolve(&spec, flags, &env_of(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(s.connect.region, "spec-region");
        assert_eq!(s.connect.project_id.as_deref(), Some("flag-project"));
        assert_eq!(s.zone.name, "Asia/Shanghai");
        assert_eq!(
            s.state_dir,
            Some(PathBuf::from("/home/u/.local/state/maas-usage"))
        );
        let d = Settings::resolve(&Spec::default(), Flags::default(), &env_of(&[])).unwrap();
        assert_eq!(d.connect.region, DEFAULT_REGION);
        assert_eq!(d.state_dir, None);
    }
}
