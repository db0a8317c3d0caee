//! `edgerec enroll`: day-0 enrollment. One call, `POST /nodes/{id}/bootstrap`, with a
//! single-use bootstrap token the controller's operator issued for this node. It hands
//! the controller the box's inventory (its capture interfaces: ALSA names, card ids,
//! channel counts, sample rates) and a freshly made SSH key pair (private key included,
//! as Rakkr's schema requires). edgerec installs that key nowhere: it opens nothing on
//! the box unless an operator adds the public half (saved beside the state) to an
//! `authorized_keys`. The controller answers with the node token, stored at mode 0600.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::controller::client::{CallError, Client, ClientConfig, ClientError};
use crate::controller::protocol::{BootstrapReply, BootstrapRequest, Interface};

#[derive(Clone, Debug)]
pub struct EnrollSettings {
    pub client: ClientConfig,
    pub bootstrap_token: String,
    /// Enroll even when the token file already holds a token the controller accepts.
    pub force: bool,
    /// Where the SSH public key is saved (the state directory).
    pub state_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "{} already holds a node token the controller accepts; nothing was changed (use --force to enroll again: the controller then issues a new token and the old one stops working)",
        .0.display()
    )]
    AlreadyEnrolled(PathBuf),
    #[error(
        "{} already holds a node token and the controller could not be asked whether it still works ({source}); nothing was changed (use --force to enroll anyway)",
        path.display()
    )]
    CannotCheck { path: PathBuf, source: CallError },
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("bootstrap call: {0}")]
    Call(#[from] CallError),
    #[error("the controller enrolled the node but sent no node token")]
    NoToken,
    #[error("the bootstrap token is empty or has characters a token cannot have")]
    BadBootstrapToken,
    #[error("making the SSH key pair: {0}")]
    Key(String),
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What enrollment did, for the operator.
#[derive(Debug)]
pub struct Enrolled {
    pub reply: BootstrapReply,
    pub token_file: PathBuf,
    pub public_key_file: PathBuf,
    pub interfaces: usize,
}

/// This box's capture interfaces, as the sync role's inventory reports them.
pub fn local_interfaces() -> Vec<Interface> {
    crate::roles::sync::node::interfaces()
}

/// The request body: the inventory and a new ed25519 key pair (returned with it).
pub fn request(interfaces: Vec<Interface>, node_id: &str) -> Result<BootstrapRequest, EnrollError> {
    use ssh_key::{Algorithm, LineEnding, PrivateKey};
    let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    key.set_comment(format!("edgerec-controller@{node_id}"));
    let private_key = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    let public_key = key
        .public_key()
        .to_openssh()
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    Ok(BootstrapRequest {
        interfaces: Some(interfaces.into_iter().take(64).collect()),
        private_key: private_key.to_string(),
        public_key,
        username: None,
    })
}

/// Refuses when the token file holds a token that still works (unless forced).
fn check_existing(settings: &EnrollSettings) -> Result<(), EnrollError> {
    let path = &settings.client.token_file;
    if settings.force || !path.exists() {
        return Ok(());
    }
    let client = match Client::new(settings.client.clone()) {
        Ok(c) => c,
        // An unreadable or malformed token file is no working token.
        Err(ClientError::TokenFile { .. } | ClientError::BadToken { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    match client.node_config() {
        Ok(_) => Err(EnrollError::AlreadyEnrolled(path.clone())),
        Err(CallError::Unauthorized(_) | CallError::Forbidden(_) | CallError::NotFound(_)) => {
            log::info!(
                "enroll: the token in {} is refused; enrolling",
                path.display()
            );
            Ok(())
        }
        Err(source) => Err(EnrollError::CannotCheck {
            path: path.clone(),
            source,
        }),
    }
}

/// Enrolls the node: checks the old token, calls bootstrap, stores the new token.
pub fn enroll(
    settings: &EnrollSettings,
    interfaces: Vec<Interface>,
) -> Result<Enrolled, EnrollError> {
    let token = settings.bootstrap_token.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(EnrollError::BadBootstrapToken);
    }
    check_existing(settings)?;
    let count = interfaces.len().min(64);
    let req = request(interfaces, &settings.client.node_id)?;
    let client = Client::with_token(settings.client.clone(), token.to_string())?;
    let reply = client.bootstrap(&req)?;
    let Some(node_token) = reply.controller_token.as_deref() else {
        return Err(EnrollError::NoToken);
    };
    let owner = std::fs::metadata(&settings.state_dir).ok();
    let token_file = settings.client.token_file.clone();
    write_private(&token_file, &format!("{node_token}\n"), owner.as_ref())?;
    let public_key_file = settings.state_dir.join("controller-ssh.pub");
    write_private(
        &public_key_file,
        &format!("{}\n", req.public_key),
        owner.as_ref(),
    )?;
    Ok(Enrolled {
        reply,
        token_file,
        public_key_file,
        interfaces: count,
    })
}

/// Writes `text` to `path` at mode 0600, atomically (temporary file, fsync, rename). As
/// root, the file goes to the state directory's owner, the user the roles run as.
fn write_private(
    path: &Path,
    text: &str,
    owner: Option<&std::fs::Metadata>,
) -> Result<(), EnrollError> {
    let err = |source| EnrollError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0
            && let Some(meta) = owner
        {
            std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()))?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_a_real_key_pair_and_the_inventory() {
        let req = request(Vec::new(), "node_1").unwrap();
        assert!(
            req.public_key.starts_with("ssh-ed25519 "),
            "{}",
            req.public_key
        );
        assert!(req.public_key.ends_with("edgerec-controller@node_1"));
        let private = ssh_key::PrivateKey::from_openssh(&req.private_key).unwrap();
        assert_eq!(private.public_key().to_openssh().unwrap(), req.public_key);
        assert_eq!(req.interfaces, Some(Vec::new()));
        let json = serde_json::to_value(&req).unwrap();
        assert!(json.get("privateKey").is_some() && json.get("publicKey").is_some());
    }
}
