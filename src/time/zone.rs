//! Which IANA time zone calendar ranges are computed in.
//!
//! Order: an explicit name (`--timezone` or the spec), then `TZ`, then the target of the
//! `/etc/localtime` link, then `/etc/timezone`, then UTC. The result is always a real IANA
//! name because it is sent to the API as `timezone` and printed next to every period.

use std::path::Path;

use chrono_tz::Tz;

use super::parse_zone;
use crate::domain::RangeError;

/// A resolved zone with the name it was found under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub tz: Tz,
    pub name: String,
}

impl Zone {
    pub fn utc() -> Self {
        Zone {
            tz: Tz::UTC,
            name: "UTC".into(),
        }
    }
}

/// What the operating system says (`TZ`, `/etc/localtime`, `/etc/timezone`), gathered by the
/// commands' settings so that the choice itself is a pure function.
#[derive(Clone, Debug, Default)]
pub struct OsZoneHints {
    pub tz_env: Option<String>,
    pub localtime_link: Option<String>,
    pub etc_timezone: Option<String>,
}

/// `/usr/share/zoneinfo/Asia/Shanghai` -> `Asia/Shanghai`.
fn name_from_zoneinfo_path(path: &str) -> Option<&str> {
    let idx = path.find("zoneinfo/")?;
    Some(&path[idx + "zoneinfo/".len()..])
}

/// Picks the zone. An explicit name that is not IANA is an error; an unusable `TZ` is only a
/// warning (an agent's environment is not the user's fault) and detection goes on.
pub fn resolve(
    explicit: Option<&str>,
    hints: &OsZoneHints,
) -> Result<(Zone, Vec<String>), RangeError> {
    let found = |tz: Tz| Zone {
        tz,
        name: tz.name().to_string(),
    };
    if let Some(name) = explicit {
        return Ok((found(parse_zone(name)?), Vec::new()));
    }
    let mut warnings = Vec::new();
    if let Some(raw) = hints
        .tz_env
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let raw = raw.trim_start_matches(':');
        let candidate = if Path::new(raw).is_absolute() {
            name_from_zoneinfo_path(raw).unwrap_or(raw)
        } else {
            raw
        };
        match parse_zone(candidate) {
            Ok(tz) => return Ok((found(tz), warnings)),
            Err(_) => warnings.push(format!(
                "TZ={raw} is not an IANA time zone name; ignoring it (set --timezone or the spec's timezone, e.g. Asia/Shanghai)"
            )),
        }
    }
    let from_link = hints
        .localtime_link
        .as_deref()
        .and_then(name_from_zoneinfo_path);
    let from_file = hints.etc_timezone.as_deref().map(str::trim);
    let zone = [from_link, from_file]
        .into_iter()
        .flatten()
        .find_map(|name| parse_zone(name).ok())
        .map(found)
        .unwrap_or_else(Zone::utc);
    Ok((zone, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(tz: Option<&str>, link: Option<&str>, file: Option<&str>) -> OsZoneHints {
        OsZoneHints {
            tz_env: tz.map(Into::into),
            localtime_link: link.map(Into::into),
            etc_timezone: file.map(Into::into),
        }
    }

    #[test]
    fn explicit_wins_and_must_be_valid() {
        let h = hints(Some("Europe/Paris"), None, None);
        assert_eq!(
            resolve(Some("Asia/Shanghai"), &h).unwrap().0.name,
            "Asia/Shanghai"
        );
        assert!(resolve(Some("CST"), &h).is_err());
    }

    #[test]
    fn tz_env_then_link_then_file_then_utc() {
        let link = Some("/usr/share/zoneinfo/Asia/Tokyo");
        assert_eq!(
            resolve(None, &hints(Some(":Europe/Paris"), link, None))
                .unwrap()
                .0
                .name,
            "Europe/Paris"
        );
        assert_eq!(
            resolve(
                None,
                &hints(Some("/usr/share/zoneinfo/Europe/Berlin"), link, None)
            )
            .unwrap()
            .0
            .name,
            "Europe/Berlin"
        );
        let (z, w) = resolve(None, &hints(Some("CST"), link, None)).unwrap();
        assert_eq!(z.name, "Asia/Tokyo");
        assert_eq!(w.len(), 1);
        assert_eq!(
            resolve(None, &hints(None, None, Some("Asia/Shanghai\n")))
                .unwrap()
                .0
                .name,
            "Asia/Shanghai"
        );
        assert_eq!(
            resolve(None, &hints(None, Some("/etc/weird"), None))
                .unwrap()
                .0
                .name,
            "UTC"
        );
    }
}
