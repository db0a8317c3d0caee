//! Day-0 enrollment: `POST /nodes/{nodeId}/bootstrap`, authenticated by a single-use
//! bootstrap token (not a node token). The body is what Rakkr's server validates; the
//! reply carries the node's controller token.

use crate::Interface;
use serde::{Deserialize, Serialize};

/// Bounds of the bootstrap body, as the controller validates them.
pub const BOOTSTRAP_MAX_INTERFACES: usize = 64;
pub const BOOTSTRAP_MAX_PRIVATE_KEY: usize = 20_000;
pub const BOOTSTRAP_MAX_PUBLIC_KEY: usize = 4_000;
pub const BOOTSTRAP_MAX_USERNAME: usize = 64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapRequest {
    /// The box's capture interfaces (its inventory), at most 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<Interface>>,
    /// An OpenSSH private key (PEM, kept verbatim) the controller may use to reach the box.
    pub private_key: String,
    /// Its OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// `data` of the 201 reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapReply {
    /// The node token from now on; absent if the controller minted none.
    #[serde(default)]
    pub controller_token: Option<String>,
    /// The controller's fingerprint of the public key it stored.
    pub fingerprint: String,
    pub node_id: String,
}
