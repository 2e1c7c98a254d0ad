//! The environment's key pairs as providers: `HW_ACCESS_KEY`/`HW_SECRET_KEY` (with
//! `HW_SECURITY_TOKEN`), and the SDK's `HUAWEICLOUD_SDK_AK`/`HUAWEICLOUD_SDK_SK` (with
//! `HUAWEICLOUD_SDK_SECURITY_TOKEN`). The settings hand in the values the variables have; the
//! environment cannot change under a running process, so there is nothing to renew.

use super::{CredentialProvider, Credentials, CredentialsError, Loaded, Secret};

/// One pair of variables (and its token's) with the values they have.
pub struct EnvKeys {
    /// The AK's, the SK's and the security token's variables.
    names: [&'static str; 3],
    values: [Option<Secret>; 3],
}

impl EnvKeys {
    /// The pairs, in order of precedence: the first complete one wins.
    pub const PAIRS: [[&'static str; 3]; 2] = [
        ["HW_ACCESS_KEY", "HW_SECRET_KEY", "HW_SECURITY_TOKEN"],
        [
            "HUAWEICLOUD_SDK_AK",
            "HUAWEICLOUD_SDK_SK",
            "HUAWEICLOUD_SDK_SECURITY_TOKEN",
        ],
    ];

    /// The variables `names` with the values `value_of` gives them (`None`: unset or blank).
    pub fn new(names: [&'static str; 3], value_of: impl Fn(&str) -> Option<String>) -> Self {
        EnvKeys {
            names,
            values: names.map(|n| value_of(n).map(Secret::new)),
        }
    }
}

impl CredentialProvider for EnvKeys {
    fn name(&self) -> String {
        format!("{}/{}", self.names[0], self.names[1])
    }

    /// Both keys, or neither (absent); half a pair is an error, not a reason to look further.
    fn load(&mut self) -> Result<Loaded, CredentialsError> {
        let [ak_var, sk_var, _] = self.names;
        let [ak, sk, token] = &self.values;
        match (ak, sk) {
            (Some(ak), Some(sk)) => Ok(Loaded::Found {
                credentials: Credentials {
                    ak: ak.clone(),
                    sk: sk.clone(),
                    token: token.clone(),
                    source: self.name(),
                    expires_at: None,
                    agency: None,
                },
                warnings: Vec::new(),
            }),
            (Some(_), None) => Err(CredentialsError::HalfSet {
                set: ak_var,
                unset: sk_var,
            }),
            (None, Some(_)) => Err(CredentialsError::HalfSet {
                set: sk_var,
                unset: ak_var,
            }),
            (None, None) => Ok(Loaded::Absent(format!("{} (not set)", self.name()))),
        }
    }
}
