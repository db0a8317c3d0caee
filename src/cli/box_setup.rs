//! Part of the `edgerec` binary: the box's one config file for the
//! roles, the idle state of a role with nothing configured, and `edgerec enroll`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgerec::capture::StopFlag;
use edgerec::config::{BoxOverrides, BoxSettings, RawConfig};
use edgerec::roles::enroll::{self, EnrollError, EnrollSettings};
use edgerec::roles::notify;

use super::args::SyncArgs;
use super::exit::{self, Failure, config_failure};

/// Reads the config (an explicit `--config` must exist; the default may be absent),
/// resolves the box settings, applies the log level and says what is not configured.
pub(crate) fn settings(
    config: Option<&Path>,
    cli: BoxOverrides,
) -> Result<(RawConfig, BoxSettings), Failure> {
    let (raw, source) = edgerec::config::load_config(config).map_err(config_failure)?;
    let settings = BoxSettings::resolve(&raw, source, cli).map_err(config_failure)?;
    edgerec::logging::set_level(settings.log_level);
    if let Some(line) = settings.not_configured() {
        log::info!(target: "edgerec::config", "{line}");
    }
    Ok((raw, settings))
}

pub(crate) fn sync_overrides(args: &SyncArgs) -> BoxOverrides {
    BoxOverrides {
        state_dir: args.state_dir.clone(),
        controller: args.controller.clone(),
        node_id: args.node_id.clone(),
        token_file: args.token_file.clone(),
        allow_insecure: args.allow_insecure,
    }
}

/// A sync role with no controller configured stays up (no restart loop), tells systemd
/// it is ready, keeps the watchdog fed, and waits for SIGTERM.
pub(crate) fn idle_unconfigured(role: &'static str, shutdown: &StopFlag) -> Result<(), Failure> {
    log::warn!(
        "{role}: no controller configured; idle until one is (run `edgerec enroll`, then restart this service)"
    );
    notify::ready(role);
    notify::status("idle: no controller configured");
    while !shutdown.is_stopped() {
        notify::alive(role);
        // The signal handler only sets the flag; a fifth of a second is well inside the
        // shutdown deadline, as in the sync role's own loop.
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// What `edgerec enroll` sends is said here, in `--help`, and in the README.
#[derive(clap::Args)]
#[command(long_about = "Enroll this box with its controller (day 0): one call, \
POST {controller}/nodes/{node-id}/bootstrap, authenticated by the single-use bootstrap \
token the controller's operator issued for this node.\n\n\
What it hands over: the box's capture inventory (ALSA device names, card ids, channel \
counts, sample rates) and a freshly made ed25519 SSH key pair, private key included, \
because the controller's schema requires one. edgerec installs that key nowhere: it \
opens nothing on this box unless you add its public half (saved as \
<state-dir>/controller-ssh.pub) to an authorized_keys file.\n\n\
What it stores: the node token the controller returns, at mode 0600 in the token file \
(owned by the state directory's owner when run as root). It refuses to replace a token \
the controller still accepts unless --force is given.")]
pub(crate) struct EnrollArgs {
    /// The controller's API base, e.g. https://controller.example/api/v1 [default: the
    /// config's [controller] url].
    #[arg(long)]
    controller: Option<String>,
    /// The node's id on the controller [default: the config's [controller] node_id].
    #[arg(long)]
    node_id: Option<String>,
    /// The single-use bootstrap token from the controller's operator.
    #[arg(long)]
    bootstrap_token: String,
    /// Where to store the node token [default: the config's, else
    /// /var/lib/edgerec/node.token].
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The box's config file [default: /etc/edgerec/edgerec.toml, if present].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Allow plain http to a non-loopback controller (trusted networks only).
    #[arg(long)]
    allow_insecure: bool,
    /// Enroll even over a token that still works (the old token stops working).
    #[arg(long)]
    force: bool,
}

pub(crate) fn run_enroll(args: EnrollArgs) -> Result<(), Failure> {
    let overrides = BoxOverrides {
        state_dir: args.state_dir.clone(),
        controller: args.controller.clone(),
        node_id: args.node_id.clone(),
        token_file: args.token_file.clone(),
        allow_insecure: args.allow_insecure,
    };
    let (_, b) = settings(args.config.as_deref(), overrides)?;
    let Some(c) = &b.controller else {
        return Err((
            exit::BAD_CONFIG,
            "enroll needs --controller and --node-id (or [controller] url and node_id in the config)".into(),
        ));
    };
    let settings = EnrollSettings {
        client: super::roles::client_config(c),
        bootstrap_token: args.bootstrap_token,
        force: args.force,
        state_dir: b.state_dir.clone(),
    };
    let done = enroll::enroll(&settings, enroll::local_interfaces()).map_err(|e| {
        let code = match e {
            EnrollError::AlreadyEnrolled(_) | EnrollError::CannotCheck { .. } => {
                exit::ALREADY_ENROLLED
            }
            EnrollError::Client(_) | EnrollError::BadBootstrapToken => exit::BAD_CONFIG,
            _ => exit::FAILURE,
        };
        (code, e.to_string())
    })?;
    println!("enrolled:   node {} at {}", done.reply.node_id, c.url);
    println!(
        "sent:       {} capture interface(s), an SSH public key and its private key",
        done.interfaces
    );
    println!(
        "ssh key:    {} (fingerprint {}; installed nowhere)",
        done.public_key_file.display(),
        done.reply.fingerprint
    );
    println!("node token: {} (mode 0600)", done.token_file.display());
    if b.source.is_none() || args.controller.is_some() || args.node_id.is_some() {
        println!(
            "next:       put url = {:?} and node_id = {:?} under [controller] in {}, then restart edgerec-sync",
            c.url,
            c.node_id,
            b.source
                .as_deref()
                .unwrap_or(Path::new(edgerec::config::DEFAULT_CONFIG))
                .display()
        );
    }
    Ok(())
}
