//! One resolution step: flags, then the spec, then the environment, then defaults, into the
//! settings a command uses (as ripgrep turns low-level arguments into high-level ones). Nothing
//! else merges these sources, and nothing else reads the process's environment (but the test
//! hooks): the layers below are handed values, or call the pure functions this step gives a
//! [`Lookup`] (`deliver::otlp`'s exporter conventions, `state::default_dir`).
//!
//! Submodules: `cloud` (each cloud's region, project, endpoints, credential chain and limits),
//! `output` (format, OTLP exporter, resource attributes).

mod cloud;
pub mod coordination;
mod output;

pub use cloud::simulator_credentials;
pub use output::{OutputFlags, OutputSettings};

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::error::Error;
use crate::cli::{CloudArgs, NowArg, StateArgs};
use crate::cloud::CloudSettings;
use crate::deliver::otlp;
use crate::emit::table::TableStyle;
use crate::env::{self, Lookup};
use crate::log;
use crate::spec::{Format, Spec};
use crate::state::{self, RuntimeDir};
use crate::time::zone::{self, OsZoneHints, Zone};

/// The longest a single HTTP exchange may take; the run's deadline shortens it further.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The flags that can override a spec, as parsed.
#[derive(Default, Clone, Copy)]
pub struct Flags<'a> {
    pub cloud: Option<&'a CloudArgs>,
    pub state: Option<&'a StateArgs>,
    pub now: Option<&'a NowArg>,
    pub timezone: Option<&'a str>,
    /// A command that delivers a collection (`run`, `serve`, `demo`): its output is resolved.
    pub output: Option<OutputFlags>,
    /// `plan --format`: the format of the run whose period checkpoints it reads (it delivers
    /// nothing, so only the OTLP URL is resolved); `None`: the spec's.
    pub plan_format: Option<Format>,
}

/// What a command runs with.
pub struct Settings {
    /// The clouds to collect from, each with its own endpoints, credentials and limits: the
    /// spec's `cloud` block and the flags, or each entry of its `clouds`; never none.
    pub clouds: Vec<CloudSettings>,
    pub state: StateSettings,
    /// A pinned "now" (`--now`); `None` reads the clock at each collection.
    pub now: Option<DateTime<Utc>>,
    pub zone: Zone,
    /// The commands that deliver: their output.
    pub output: Option<OutputSettings>,
    /// Format otlp: the URL the metrics go to, which names the period checkpoints'
    /// destination. `plan` looks for it (for the format it plans for) only when it has
    /// checkpoints to read (its state directory exists): it needs nothing else of the exporter.
    pub otlp_url: Option<String>,
    /// stdout is a terminal whose locale is UTF-8: a table may be drawn with box-drawing
    /// characters (unless `--ascii`, or written to a file).
    pub utf8_terminal: bool,
    /// This host's name (`host.name`): the kernel's, else `/etc/hostname`, else `HOSTNAME`.
    pub host_name: String,
    /// `--simulator URL`: every endpoint is the simulator's, no credentials are read but those
    /// its metadata service hands out, and nothing of the real runs' state is used.
    pub simulator: Option<String>,
}

/// Where state shared between runs and processes is kept: the choice of the state store
/// (`state::StateStore`), today the state directory's (`state::DirectoryStore`).
#[derive(Clone, Debug)]
pub struct StateSettings {
    /// The state directory, if any: the flag, else `$XDG_STATE_HOME/maas-usage`, else
    /// `~/.local/state/maas-usage`.
    pub dir: Option<PathBuf>,
    /// Where the credential gate's records go when the state directory cannot take them
    /// (`XDG_RUNTIME_DIR`, else `TMPDIR`, else `/tmp`).
    pub runtime: RuntimeDir,
    /// The credential gate's records are shared with other processes (the state directory,
    /// the runtime directory behind it). Not by the demo or under `--simulator`: the runtime
    /// directory holds the real runs' rejections, which a simulated run neither reads nor adds
    /// to; its gate keeps them in the process.
    pub share_gate: bool,
    /// `coordination: {engine: redis}`: Redis instead of the state directory (which stays the
    /// fallback of `on_unavailable: local`, and remembers the engine's generation).
    pub redis: Option<coordination::RedisSettings>,
}

impl StateSettings {
    /// `real`: the run is against a real account (not `--simulator`), which alone uses the
    /// default state directory and shares the gate's records.
    pub fn resolve(flags: Option<&StateArgs>, real: bool, env: Lookup<'_>) -> StateSettings {
        StateSettings {
            dir: flags
                .and_then(|a| a.state_dir.clone())
                .or_else(|| real.then(|| state::default_dir(env)).flatten()),
            runtime: RuntimeDir::from_env(env),
            share_gate: real,
            redis: None,
        }
    }

    /// As the process's environment says (`state show|reset|adopt`).
    pub fn from_process(flags: &StateArgs) -> StateSettings {
        StateSettings::resolve(Some(flags), true, &env::process)
    }
}

impl Settings {
    pub fn resolve(spec: &Spec, flags: Flags<'_>, env: Lookup<'_>) -> Result<Settings, Error> {
        let simulator = flags.cloud.and_then(|c| c.simulator.clone());
        let mut state = StateSettings::resolve(flags.state, simulator.is_none(), env);
        state.redis = coordination::resolve(spec, env);
        let now = flags
            .now
            .and_then(|n| n.now.as_deref())
            .map(|n| super::parse_now(Some(n)))
            .transpose()?;
        let zone = zone_of(flags.timezone.or(spec.timezone.as_deref()), env)?;
        let output = flags
            .output
            .map(|o| output::resolve(spec, o, env))
            .transpose()?;
        let otlp_url = match &output {
            Some(o) => o.export.as_ref().map(|e| e.url.clone()),
            None if flags.plan_format.unwrap_or(spec.output.format) == Format::Otlp
                && state.dir.as_deref().is_some_and(Path::is_dir) =>
            {
                Some(otlp::endpoint(&spec.output.otlp, env)?.1)
            }
            None => None,
        };
        let clouds = cloud::resolve_all(spec, flags.cloud, env).map_err(|flag| {
            Error::Usage(format!(
                "{flag} sets one cloud's setting, and this spec has several (`clouds`): set it in each entry instead"
            ))
        })?;
        Ok(Settings {
            clouds,
            state,
            now,
            zone,
            output,
            otlp_url,
            utf8_terminal: TableStyle::detect(
                std::io::IsTerminal::is_terminal(&std::io::stdout()),
                env,
                false,
            ),
            host_name: host_name(env),
            simulator,
        })
    }

    /// As the process's environment says.
    pub fn from_process(spec: &Spec, flags: Flags<'_>) -> Result<Settings, Error> {
        Settings::resolve(spec, flags, &env::process)
    }

    /// The pinned instant, or the clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now)
    }

    /// The first cloud (the only one with `cloud:`).
    pub fn cloud(&self) -> &CloudSettings {
        &self.clouds[0]
    }

    /// The demo's own world, around its simulator at `url`: every endpoint there, credentials
    /// from its metadata service only (none of the environment's or a file's), the project
    /// discovered, nothing shared with other processes (no state directory, the credential
    /// gate's records in the process). The zone and the output stay as resolved.
    pub fn demo(&mut self, url: &str) {
        for c in &mut self.clouds {
            (c.project_id, c.endpoints, c.credentials) = cloud::simulated(url, None);
        }
        self.state.dir = None;
        self.state.share_gate = false;
        self.state.redis = None;
    }
}

/// The zone calendar ranges are computed in: `explicit` (`--timezone` or the spec), then `TZ`,
/// then what the system says; an unusable `TZ` is a warning.
fn zone_of(explicit: Option<&str>, env: Lookup<'_>) -> Result<Zone, Error> {
    let hints = OsZoneHints {
        tz_env: env("TZ"),
        localtime_link: std::fs::read_link("/etc/localtime")
            .ok()
            .map(|p| p.to_string_lossy().into_owned()),
        etc_timezone: std::fs::read_to_string("/etc/timezone").ok(),
    };
    let (zone, warnings) = zone::resolve(explicit, &hints)?;
    for w in warnings {
        log::warn!("{}", w);
    }
    Ok(zone)
}

/// The zone as the process's environment says (`validate`, which resolves nothing else).
pub fn resolve_zone(explicit: Option<&str>) -> Result<Zone, Error> {
    zone_of(explicit, &env::process)
}

/// This host's name: the kernel's, else `/etc/hostname`, else `HOSTNAME`.
fn host_name(env: Lookup<'_>) -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            crate::files::read_regular(Path::new(p), 256)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .or_else(|| env::get(env, "HOSTNAME"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{CloudSpec, DEFAULT_REGION};
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
        assert_eq!(s.cloud().region, "spec-region");
        assert_eq!(
            s.cloud().project_id.as_ref().map(|p| p.id.as_str()),
            Some("flag-project")
        );
        assert_eq!(s.zone.name, "Asia/Shanghai");
        assert_eq!(
            s.state.dir,
            Some(PathBuf::from("/home/u/.local/state/maas-usage"))
        );
        let d = Settings::resolve(&Spec::default(), Flags::default(), &env_of(&[])).unwrap();
        assert_eq!(d.cloud().region, DEFAULT_REGION);
        assert_eq!(d.state.dir, None);
    }

    #[test]
    fn the_environment_comes_after_flags_and_spec_for_each_cloud_setting() {
        let env = env_of(&[
            ("HW_PROJECT_ID", "hw-project"),
            ("HUAWEICLOUD_SDK_PROJECT_ID", "sdk-project"),
            ("HUAWEICLOUD_SDK_IAM_ENDPOINT", "https://iam.env"),
            ("MAAS_USAGE_METADATA_ENDPOINT", "http://metadata.env"),
            ("HW_ACCESS_KEY", "AK"),
            ("HW_SECRET_KEY", "SK"),
        ]);
        let s = Settings::resolve(&Spec::default(), Flags::default(), &env).unwrap();
        let c = s.cloud();
        let p = c.project_id.as_ref().unwrap();
        assert_eq!((p.from, p.id.as_str()), ("HW_PROJECT_ID", "hw-project"));
        assert_eq!(c.endpoints.iam, "https://iam.env");
        assert_eq!(
            c.endpoints.maas,
            format!("https://modelarts.{DEFAULT_REGION}.myhuaweicloud.com")
        );
        assert_eq!(c.endpoints.monitor, c.endpoints.maas);
        assert_eq!(
            c.credentials.names(),
            [
                "HW_ACCESS_KEY/HW_SECRET_KEY",
                "HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK",
                "a credentials file",
                "the metadata service http://metadata.env",
            ]
        );
        assert_eq!(c.credentials.load().unwrap().0.ak.expose(), "AK");
        // The SDK's project id after HW_PROJECT_ID; the spec's settings before both.
        let sdk_only = env_of(&[("HUAWEICLOUD_SDK_PROJECT_ID", "sdk-project")]);
        let s = Settings::resolve(&Spec::default(), Flags::default(), &sdk_only).unwrap();
        let p = s.cloud().project_id.clone().unwrap();
        assert_eq!(
            (p.from, p.id.as_str()),
            ("HUAWEICLOUD_SDK_PROJECT_ID", "sdk-project")
        );
        let spec = Spec {
            cloud: CloudSpec {
                project_id: Some("spec-project".into()),
                iam_endpoint: Some("https://iam.spec".into()),
                metadata_endpoint: Some("http://metadata.spec".into()),
                credentials_file: Some("/etc/aksk".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = Settings::resolve(&spec, Flags::default(), &env).unwrap();
        let c = s.cloud();
        let p = c.project_id.as_ref().unwrap();
        assert_eq!(
            (p.from, p.id.as_str()),
            ("--project-id (or cloud.project_id)", "spec-project")
        );
        assert_eq!(c.endpoints.iam, "https://iam.spec");
        assert_eq!(
            c.credentials.names()[2..],
            [
                "the credentials file /etc/aksk",
                "the metadata service http://metadata.spec"
            ]
        );
    }

    #[test]
    fn each_entry_of_clouds_is_a_cloud_and_the_flags_of_one_are_refused() {
        use crate::spec::{AgencySpec, NamedCloud};
        let entry = |name: &str, agency: bool| NamedCloud {
            name: name.into(),
            cloud: CloudSpec {
                region: Some("ap-southeast-1".into()),
                sts_endpoint: agency.then(|| "https://sts.example".into()),
                assume_agency: agency.then(|| AgencySpec {
                    agency_urn: "iam::1:agency:x".into(),
                    session_name: None,
                    duration: None,
                    external_id: None,
                }),
                ..Default::default()
            },
        };
        let spec = Spec {
            clouds: vec![entry("a", false), entry("b", true)],
            ..Default::default()
        };
        let env = env_of(&[("HW_PROJECT_ID", "hw-project"), ("HW_ACCESS_KEY", "AK")]);
        let s = Settings::resolve(&spec, Flags::default(), &env).unwrap();
        let names: Vec<Option<&str>> = s.clouds.iter().map(|c| c.name.as_deref()).collect();
        assert_eq!(names, [Some("a"), Some("b")]);
        // Each account has its own project: the environment's is for `cloud:` only.
        assert!(s.clouds.iter().all(|c| c.project_id.is_none()));
        assert_eq!(
            s.clouds[1].endpoints.sts, "https://sts.example",
            "the entry's STS"
        );
        assert_eq!(
            s.clouds[0].endpoints.sts,
            "https://sts.ap-southeast-1.myhuaweicloud.com"
        );
        let agency = s.clouds[1].credentials.names();
        assert_eq!(agency.len(), 1);
        assert!(
            agency[0].starts_with("the agency iam::1:agency:x through STS https://sts.example (with HW_ACCESS_KEY/HW_SECRET_KEY, "),
            "{agency:?}"
        );
        for (flag, args) in [
            (
                "--region",
                CloudArgs {
                    region: Some("x".into()),
                    ..Default::default()
                },
            ),
            (
                "--project-id",
                CloudArgs {
                    project_id: Some("x".into()),
                    ..Default::default()
                },
            ),
            (
                "--credentials-file",
                CloudArgs {
                    credentials_file: Some("/x".into()),
                    ..Default::default()
                },
            ),
        ] {
            let flags = Flags {
                cloud: Some(&args),
                ..Default::default()
            };
            let Err(Error::Usage(e)) = Settings::resolve(&spec, flags, &env) else {
                panic!("{flag} accepted");
            };
            assert!(e.starts_with(flag), "{e}");
        }
        let ca = CloudArgs {
            ca_file: Some("/ca.pem".into()),
            ..Default::default()
        };
        let flags = Flags {
            cloud: Some(&ca),
            ..Default::default()
        };
        let s = Settings::resolve(&spec, flags, &env).unwrap();
        assert!(s
            .clouds
            .iter()
            .all(|c| c.ca_file.as_deref() == Some(std::path::Path::new("/ca.pem"))));
    }

    #[test]
    fn the_output_is_resolved_for_the_commands_that_deliver_it() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
            ("OTEL_SERVICE_NAME", "usage"),
        ]);
        let mut spec = Spec::default();
        spec.output.format = Format::Otlp;
        let deliver = |format| Flags {
            output: Some(OutputFlags { format }),
            ..Default::default()
        };
        let s = Settings::resolve(&spec, deliver(None), &env).unwrap();
        let out = s.output.as_ref().unwrap();
        assert_eq!(out.format, Format::Otlp);
        let url = "http://collector:4318/v1/metrics";
        assert_eq!(out.export.as_ref().map(|e| e.url.as_str()), Some(url));
        assert_eq!(s.otlp_url.as_deref(), Some(url));
        assert_eq!(out.temporality, crate::emit::otlp::Temporality::Delta);
        assert_eq!(out.resource.service_name.as_deref(), Some("usage"));
        // A flag's format wins over the spec's; no exporter for another format.
        let s = Settings::resolve(&spec, deliver(Some(Format::Influx)), &env).unwrap();
        assert!(s.output.unwrap().export.is_none() && s.otlp_url.is_none());
        // `plan` delivers nothing: only the URL, and only when it has checkpoints to read.
        let s = Settings::resolve(&spec, Flags::default(), &env).unwrap();
        assert!(s.output.is_none() && s.otlp_url.is_none());
        let dir = tempfile::tempdir().unwrap();
        let state = StateArgs {
            state_dir: Some(dir.path().to_path_buf()),
        };
        let flags = Flags {
            state: Some(&state),
            ..Default::default()
        };
        let s = Settings::resolve(&spec, flags, &env).unwrap();
        assert_eq!(s.otlp_url.as_deref(), Some(url));
        // ... for the format of the run it plans for.
        spec.output.format = Format::Influx;
        let s = Settings::resolve(&spec, flags, &env).unwrap();
        assert!(s.otlp_url.is_none());
        let otlp_run = Flags {
            plan_format: Some(Format::Otlp),
            ..flags
        };
        let s = Settings::resolve(&spec, otlp_run, &env).unwrap();
        assert_eq!(s.otlp_url.as_deref(), Some(url));
    }

    #[test]
    fn the_demo_keeps_to_its_own_world() {
        let env = env_of(&[
            ("HOME", "/home/u"),
            ("HW_PROJECT_ID", "hw-project"),
            ("HW_ACCESS_KEY", "AK"),
            ("HW_SECRET_KEY", "SK"),
        ]);
        let mut s = Settings::resolve(&Spec::default(), Flags::default(), &env).unwrap();
        s.demo("http://127.0.0.1:1");
        let c = s.cloud();
        assert_eq!(
            c.endpoints,
            crate::cloud::Endpoints::all("http://127.0.0.1:1")
        );
        assert_eq!(c.project_id, None);
        assert_eq!(
            c.credentials.names().last().map(String::as_str),
            Some("the metadata service http://127.0.0.1:1")
        );
        let e = c.credentials.load().unwrap_err().to_string();
        assert!(e.contains("HW_ACCESS_KEY/HW_SECRET_KEY (not set)"), "{e}");
        assert_eq!(s.state.dir, None);
        assert!(!s.state.share_gate);
    }

    #[test]
    fn under_simulator_nothing_of_a_real_account_is_read() {
        let env = env_of(&[
            ("HOME", "/home/u"),
            ("HW_PROJECT_ID", "hw-project"),
            ("HW_ACCESS_KEY", "AK"),
            ("HW_SECRET_KEY", "SK"),
        ]);
        let spec = Spec {
            cloud: CloudSpec {
                project_id: Some("spec-project".into()),
                credentials_file: Some("/etc/aksk".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut cloud = CloudArgs {
            simulator: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        };
        let flags = Flags {
            cloud: Some(&cloud),
            ..Default::default()
        };
        let s = Settings::resolve(&spec, flags, &env).unwrap();
        let c = s.cloud();
        assert_eq!(
            c.endpoints,
            crate::cloud::Endpoints::all("http://127.0.0.1:1")
        );
        assert_eq!(
            c.project_id, None,
            "neither the spec's nor the environment's"
        );
        assert_eq!(c.credentials.names()[2], "a credentials file");
        assert_eq!(
            (s.state.dir.as_ref(), s.state.share_gate),
            (None, false),
            "not the real runs' state"
        );
        cloud.project_id = Some("flag-project".into());
        let state = StateArgs {
            state_dir: Some("/tmp/sim-state".into()),
        };
        let flags = Flags {
            cloud: Some(&cloud),
            state: Some(&state),
            ..Default::default()
        };
        let s = Settings::resolve(&spec, flags, &env).unwrap();
        let p = s.cloud().project_id.clone().unwrap();
        assert_eq!(p.id, "flag-project");
        assert_eq!(s.state.dir, Some(PathBuf::from("/tmp/sim-state")));
        assert_eq!(s.simulator.as_deref(), Some("http://127.0.0.1:1"));
    }
}
