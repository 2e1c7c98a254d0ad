//! The simulator's STS: AssumeAgency (`POST /v5/agencies/assume`), signed and checked like every
//! other endpoint, refusing an agency it does not know (or an external id the agency does not
//! expect) with STS's error shape, and handing out temporary credentials that the simulator's
//! MaaS and Cloud Eye then accept, with their security token.
//!
//! An agency is usually in another account than its caller: the caller's keys are then known
//! to STS only (`StsSim::callers`), and the simulator's other endpoints refuse them, as the
//! other account's services would.

use std::time::Duration;

use serde::Deserialize;

use super::http::Request;
use super::metadata::Issuer;
use super::{Reply, SimCredential};

/// STS's switches.
#[derive(Clone, Debug, Default)]
pub struct StsSim {
    /// The agencies that may be assumed.
    pub agencies: Vec<SimAgency>,
    /// Keys of other accounts, which STS accepts (to assume an agency) and nothing else does.
    pub callers: Vec<SimCredential>,
}

/// An agency of the simulated account.
#[derive(Clone, Debug, Default)]
pub struct SimAgency {
    /// Its URN (`iam::<account-id>:agency:<name>`).
    pub urn: String,
    /// The external id its trust policy asks for.
    pub external_id: Option<String>,
    /// The life of the credentials it hands out, when shorter than asked (the agency's maximum
    /// session, as a test sets it to see renewals).
    pub lifetime: Option<Duration>,
}

impl SimAgency {
    pub fn new(urn: &str) -> Self {
        SimAgency {
            urn: urn.to_string(),
            ..SimAgency::default()
        }
    }
}

#[derive(Deserialize)]
struct Body {
    agency_urn: Option<String>,
    agency_session_name: Option<String>,
    duration_seconds: Option<i64>,
    external_id: Option<String>,
}

/// The answer to a signed AssumeAgency request: the agency's fresh credentials, or STS's error.
pub(super) fn assume(req: &Request, sts: &StsSim, issuer: &Issuer, rid: &str) -> Reply {
    let bad = |msg: &str| Reply::error(400, "STS5.0400", msg, rid);
    let Ok(b) = serde_json::from_slice::<Body>(&req.body) else {
        return bad("the request body is not valid JSON");
    };
    let Some(urn) = b.agency_urn else {
        return bad("agency_urn is required");
    };
    let session_ok = b.agency_session_name.as_deref().is_some_and(|s| {
        (2..=128).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    });
    if !session_ok {
        return bad("agency_session_name must be 2 to 128 letters, digits and _+=,.@-");
    }
    let chained = req.header("x-security-token").is_some();
    let duration = b.duration_seconds.unwrap_or(3600);
    if !(900..=43200).contains(&duration) || (chained && duration > 3600) {
        return bad(
            "duration_seconds must be within [900, 43200], and at most 3600 with X-Security-Token",
        );
    }
    let Some(agency) = sts.agencies.iter().find(|a| a.urn == urn) else {
        return Reply::error(
            403,
            "STS5.1106",
            &format!("the agency '{urn}' cannot be found"),
            rid,
        );
    };
    if agency.external_id.is_some() && agency.external_id != b.external_id {
        return Reply::error(
            403,
            "STS5.0001",
            "access denied: the agency's trust policy does not allow this external_id",
            rid,
        );
    }
    let asked = Duration::from_secs(duration.unsigned_abs());
    let (cred, expires_at) = issuer.mint(agency.lifetime.map_or(asked, |l| l.min(asked)));
    let name = urn.rsplit(':').next().unwrap_or_default();
    let session = b.agency_session_name.unwrap_or_default();
    let account = urn.split(':').nth(2).unwrap_or_default();
    Reply::json(
        200,
        serde_json::json!({
            "assumed_agency": {
                "urn": format!("sts::{account}:assumed-agency:{name}/{session}"),
                "id": format!("{name}-id:{session}"),
            },
            "credentials": {
                "access_key_id": cred.ak,
                "secret_access_key": cred.sk,
                "security_token": cred.token,
                "expiration": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: serde_json::Value, token: bool) -> Request {
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if token {
            headers.push(("x-security-token".into(), "t".into()));
        }
        Request {
            method: "POST".into(),
            path: crate::cloud::sts::PATH.into(),
            query: String::new(),
            headers,
            body: body.to_string().into_bytes(),
        }
    }

    fn sts() -> StsSim {
        StsSim {
            agencies: vec![
                SimAgency::new("iam::1:agency:open"),
                SimAgency {
                    urn: "iam::1:agency:guarded".into(),
                    external_id: Some("ext-1".into()),
                    lifetime: None,
                },
            ],
            callers: Vec::new(),
        }
    }

    fn answer(body: serde_json::Value, token: bool) -> (u16, serde_json::Value) {
        let issuer = Issuer::with_prefix("STS");
        let r = assume(&request(body, token), &sts(), &issuer, "rid");
        (r.status, serde_json::from_str(&r.body).unwrap())
    }

    #[test]
    fn a_known_agency_hands_out_credentials_its_gateway_then_accepts() {
        let issuer = Issuer::with_prefix("STS");
        let body = serde_json::json!({"agency_urn": "iam::1:agency:open", "agency_session_name": "maas-usage", "duration_seconds": 900});
        let r = assume(&request(body, false), &sts(), &issuer, "rid");
        assert_eq!(r.status, 200, "{}", r.body);
        let a: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let ak = a["credentials"]["access_key_id"].as_str().unwrap();
        let (cred, expired) = issuer.find(ak).unwrap();
        assert!(!expired);
        assert_eq!(
            a["credentials"]["security_token"],
            cred.token.unwrap().as_str()
        );
        assert_eq!(a["credentials"]["secret_access_key"], cred.sk.as_str());
        assert!(a["credentials"]["expiration"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
        assert_eq!(
            a["assumed_agency"]["urn"],
            "sts::1:assumed-agency:open/maas-usage"
        );
    }

    #[test]
    fn an_unknown_agency_a_wrong_external_id_and_a_long_chain_are_refused_in_sts_s_shape() {
        let open = |extra: serde_json::Value| {
            let mut b = serde_json::json!({"agency_urn": "iam::1:agency:open", "agency_session_name": "s1"});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        let (status, e) = answer(
            open(serde_json::json!({"agency_urn": "iam::1:agency:nope"})),
            false,
        );
        assert_eq!((status, e["error_code"].as_str()), (403, Some("STS5.1106")));
        assert_eq!(
            e["error_msg"],
            "the agency 'iam::1:agency:nope' cannot be found"
        );
        assert_eq!(e["request_id"], "rid");
        let guarded = serde_json::json!({"agency_urn": "iam::1:agency:guarded", "agency_session_name": "s1", "external_id": "other"});
        assert_eq!(answer(guarded, false).0, 403);
        // With a security token (an agency chain), at most an hour.
        assert_eq!(
            answer(open(serde_json::json!({"duration_seconds": 7200})), true).0,
            400
        );
        assert_eq!(
            answer(open(serde_json::json!({"duration_seconds": 7200})), false).0,
            200
        );
        assert_eq!(
            answer(open(serde_json::json!({"duration_seconds": 600})), false).0,
            400
        );
        assert_eq!(
            answer(open(serde_json::json!({"agency_session_name": "x"})), false).0,
            400
        );
    }
}
