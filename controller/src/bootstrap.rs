//! Day-0 enrollment, as Rakkr's server does it: the operator issues a single-use,
//! short-lived bootstrap token for a node (`edgerec-controller node bootstrap-token`);
//! the box calls `POST /nodes/{id}/bootstrap` with it, hands over its inventory and an SSH
//! key pair, and receives a fresh node token. Consuming the token, taking the inventory,
//! minting the node token and keeping the key are one transaction: a failure burns
//! nothing.

use crate::auth;
use crate::nodes;
use crate::reply::Response;
use crate::request::{self, Req};
use crate::routes::{App, MAX_JSON_BODY, store_error};
use crate::store::{Doing, StoreError};
use crate::validate::{self, BootstrapInput};
use axum::body::Body;
use base64::Engine;
use rusqlite::{Connection, params};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

const BOOTSTRAP_PREFIX: &str = "rakkr_bootstrap_";

/// A new bootstrap token for `node`, valid for `ttl_ms`; only its hash is stored.
pub(crate) fn issue(
    tx: &Connection,
    node: &str,
    ttl_ms: i64,
    now: i64,
) -> Result<String, StoreError> {
    let token = auth::new_token().replacen(auth::TOKEN_PREFIX, BOOTSTRAP_PREFIX, 1);
    tx.execute(
        "INSERT INTO bootstrap_tokens (token_sha256, node_id, expires_at_ms) VALUES (?1, ?2, ?3)",
        params![
            auth::sha256_hex(token.as_bytes()),
            node,
            now.saturating_add(ttl_ms)
        ],
    )
    .doing("issuing a bootstrap token")?;
    Ok(token)
}

/// OpenSSH's `SHA256:<base64>` fingerprint of a public key line; `None` if its blob is
/// not base64.
fn fingerprint(public_key: &str) -> Option<String> {
    let blob = public_key.split_whitespace().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = Sha256::digest(bytes);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

enum Outcome {
    Enrolled { token: String, fingerprint: String },
    BadToken,
}

fn consume_and_enroll(
    tx: &Connection,
    node: &str,
    token_hash: &str,
    input: &BootstrapInput,
    fingerprint: &str,
    now: i64,
) -> Result<Outcome, StoreError> {
    let consumed = tx
        .execute(
            "UPDATE bootstrap_tokens SET used_at_ms = ?3 WHERE token_sha256 = ?1 AND node_id = ?2 \
             AND used_at_ms IS NULL AND expires_at_ms > ?3",
            params![token_hash, node, now],
        )
        .doing("consuming a bootstrap token")?;
    if consumed == 0 {
        return Ok(Outcome::BadToken);
    }
    if let Some(interfaces) = &input.interfaces {
        nodes::inventory(tx, node, interfaces, now)?;
    }
    let token = auth::new_token();
    tx.execute(
        "UPDATE nodes SET token_sha256 = ?2 WHERE id = ?1",
        params![node, auth::sha256_hex(token.as_bytes())],
    )
    .doing("minting the node token")?;
    tx.execute(
        "INSERT INTO node_ssh_keys (node_id, public_key, fingerprint, username, stored_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (node_id) DO UPDATE SET \
         public_key = ?2, fingerprint = ?3, username = ?4, stored_at_ms = ?5",
        params![node, input.public_key, fingerprint, input.username, now],
    )
    .doing("keeping the node's SSH key")?;
    Ok(Outcome::Enrolled {
        token,
        fingerprint: fingerprint.to_string(),
    })
}

/// `POST /nodes/{id}/bootstrap`: bearer = bootstrap token; 401 without one, 400 on the
/// body, 401 for an unknown, used or expired token, 201 with the node token.
pub(crate) async fn route(app: &Arc<App>, req: &Req, body: Body, node: &str) -> Response {
    let Some(token) = auth::bearer(req.header("authorization")) else {
        return Response::error(401, "Bootstrap token required");
    };
    let token_hash = auth::sha256_hex(token.as_bytes());
    let bytes =
        match request::json_bytes(body, app.idle_timeout, app.body_timeout, MAX_JSON_BODY).await {
            Ok(b) => b,
            Err(reply) => return reply,
        };
    let input = match validate::object_body(&bytes).and_then(|b| validate::bootstrap(&b)) {
        Ok(i) => i,
        Err(issues) => return Response::invalid("Invalid bootstrap request", issues),
    };
    let Some(fp) = fingerprint(&input.public_key) else {
        let issue = json!({"code": "invalid_string", "path": ["publicKey"], "message": "Expected an OpenSSH public key"});
        return Response::invalid("Invalid bootstrap request", vec![issue]);
    };
    let node = node.to_string();
    let done = app
        .stores
        .run(move |s| {
            let now = crate::time::now_ms();
            s.tx(|tx| consume_and_enroll(tx, &node, &token_hash, &input, &fp, now))
                .map(|o| (o, node))
        })
        .await;
    match done {
        Ok(Ok((Outcome::Enrolled { token, fingerprint }, node))) => Response::data(
            201,
            json!({"controllerToken": token, "fingerprint": fingerprint, "nodeId": node}),
        ),
        Ok(Ok((Outcome::BadToken, _))) => {
            Response::error(401, "Invalid or expired bootstrap token")
        }
        Ok(Err(e)) => store_error(e),
        Err(reply) => reply,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprints_as_openssh_prints_them() {
        // ssh-keygen -lf of this key prints SHA256:… of the decoded blob.
        let fp = super::fingerprint("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== x").unwrap();
        assert!(fp.starts_with("SHA256:") && !fp.ends_with('='), "{fp}");
        assert_eq!(super::fingerprint("ssh-ed25519 not*base64"), None);
    }
}
