//! The day-0 bootstrap body, as Rakkr's server validates it: `interfaces` as in an
//! inventory (optional), `privateKey` kept verbatim (1..=20000 characters, not trimmed),
//! `publicKey` an OpenSSH public key line (trimmed, 1..=4000), `username` optional
//! (trimmed, 1..=64). Unknown keys are dropped.

use super::{Check, Need, inventory, kind};
use serde_json::{Map, Value};

/// A bootstrap body that passed validation.
pub(crate) struct BootstrapInput {
    pub interfaces: Option<Vec<Map<String, Value>>>,
    pub public_key: String,
    pub username: Option<String>,
}

/// `ssh-ed25519 `, `ssh-rsa ` or `ecdsa-sha2-<curve> ` at the start, as Rakkr's regex.
fn is_openssh_public_key(key: &str) -> bool {
    if key.starts_with("ssh-ed25519 ") || key.starts_with("ssh-rsa ") {
        return true;
    }
    key.strip_prefix("ecdsa-sha2-").is_some_and(|rest| {
        let curve: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
        !curve.is_empty() && rest[curve.len()..].starts_with(' ')
    })
}

pub(crate) fn bootstrap(body: &Map<String, Value>) -> Result<BootstrapInput, Vec<Value>> {
    let interfaces = match body.contains_key("interfaces") {
        true => Some(inventory(body)),
        false => None,
    };
    let mut c = Check::default();
    if let Some(v) = c.field(body, "privateKey", Need::Required) {
        c.at("privateKey", |c| match v.as_str() {
            Some("") => c.issue(
                "too_small",
                "String must contain at least 1 character(s)".into(),
            ),
            Some(s) if s.chars().count() > 20_000 => c.issue(
                "too_big",
                "String must contain at most 20000 character(s)".into(),
            ),
            Some(_) => {}
            None => c.issue(
                "invalid_type",
                format!("Expected string, received {}", kind(v)),
            ),
        });
    }
    let public_key = c.string(body, "publicKey", (1, 4000), Need::Required);
    if let Some(k) = &public_key
        && !is_openssh_public_key(k)
    {
        c.at("publicKey", |c| {
            c.issue("invalid_string", "Expected an OpenSSH public key".into())
        });
    }
    let username = c.string(body, "username", (1, 64), Need::Optional);
    let interfaces = match interfaces {
        Some(Err(issues)) => {
            c.issues.extend(issues);
            None
        }
        Some(Ok(list)) => Some(list),
        None => None,
    };
    let public_key = public_key.unwrap_or_default();
    c.finish(BootstrapInput {
        interfaces,
        public_key,
        username,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<BootstrapInput, Vec<Value>> {
        bootstrap(v.as_object().unwrap())
    }

    #[test]
    fn schema_as_rakkr_validates_it() {
        let ok = json!({"privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\n", "publicKey": " ssh-ed25519 AAAA x ", "extra": 1});
        let got = check(ok).unwrap();
        assert_eq!(got.public_key, "ssh-ed25519 AAAA x");
        assert!(got.interfaces.is_none() && got.username.is_none());
        let cases = [
            (json!({"publicKey": "ssh-rsa AAAA"}), "privateKey"),
            (
                json!({"privateKey": "", "publicKey": "ssh-rsa AAAA"}),
                "privateKey",
            ),
            (
                json!({"privateKey": "k", "publicKey": "ssh-dss AAAA"}),
                "publicKey",
            ),
            (
                json!({"privateKey": "k", "publicKey": "ecdsa-sha2- AAAA"}),
                "publicKey",
            ),
            (
                json!({"privateKey": "k", "publicKey": "ssh-rsa A", "username": ""}),
                "username",
            ),
            (
                json!({"privateKey": "k", "publicKey": "ssh-rsa A", "interfaces": [1]}),
                "interfaces",
            ),
        ];
        for (body, field) in cases {
            let issues = check(body.clone())
                .err()
                .unwrap_or_else(|| panic!("{body} passed"));
            assert_eq!(issues[0]["path"][0], field, "{body}: {issues:?}");
        }
        assert!(is_openssh_public_key("ecdsa-sha2-nistp256 AAAA"));
    }
}
