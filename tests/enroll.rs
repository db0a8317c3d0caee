//! `edgerec enroll` against the reference controller (a real process on 127.0.0.1): a
//! bootstrap token from its admin CLI is traded once for a node token, stored at 0600;
//! a second run over a working token is refused without --force.

mod common;

use common::controller::Ctl;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn bootstrap_token(ctl: &Ctl) -> String {
    ctl.admin
        .run(&["node", "bootstrap-token", &ctl.node, "--ttl", "10m"])
        .unwrap()
        .trim()
        .to_string()
}

fn enroll(ctl: &Ctl, dir: &Path, token: &str, extra: &[&str]) -> std::process::Output {
    common::edgerec()
        .args(["enroll", "--controller", &ctl.url(), "--node-id", &ctl.node])
        .args(["--bootstrap-token", token, "--token-file"])
        .arg(dir.join("node.token"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(extra)
        .output()
        .unwrap()
}

/// The status of `GET /nodes/{id}/config` with `token`: does the controller accept it?
fn accepted(ctl: &Ctl, token: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    agent
        .get(format!("{}/nodes/{}/config", ctl.url(), ctl.node))
        .header("authorization", format!("Bearer {token}"))
        .call()
        .unwrap()
        .status()
        .as_u16()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn enroll_trades_a_single_use_bootstrap_token_for_the_node_token() {
    let ctl = Ctl::start(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let old = std::fs::read_to_string(&ctl.token_file).unwrap();
    assert_eq!(accepted(&ctl, old.trim()), 200);

    let first = bootstrap_token(&ctl);
    let out = enroll(&ctl, dir.path(), &first, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("private key") && said.contains("installed nowhere"),
        "{said}"
    );
    let token_file = dir.path().join("node.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let node_token = std::fs::read_to_string(&token_file).unwrap();
    let node_token = node_token.trim();
    assert!(node_token.starts_with("rakkr_node_"), "{node_token}");
    assert_eq!(accepted(&ctl, node_token), 200, "the new token works");
    assert_eq!(
        accepted(&ctl, old.trim()),
        401,
        "the old token was rotated out"
    );
    let public = std::fs::read_to_string(dir.path().join("state/controller-ssh.pub")).unwrap();
    assert!(public.starts_with("ssh-ed25519 "), "{public}");

    // Again, over the working token: refused, nothing changed.
    let second = bootstrap_token(&ctl);
    let out = enroll(&ctl, dir.path(), &second, &[]);
    assert_eq!(out.status.code(), Some(13), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap().trim(),
        node_token
    );

    // A bootstrap token is single use: the first one, forced, is refused by the controller.
    let out = enroll(&ctl, dir.path(), &first, &["--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("401"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap().trim(),
        node_token
    );

    // Forced with a fresh one: a new node token replaces the old.
    let out = enroll(&ctl, dir.path(), &second, &["--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let newer = std::fs::read_to_string(&token_file).unwrap();
    assert_ne!(newer.trim(), node_token);
    assert_eq!(accepted(&ctl, newer.trim()), 200);
    assert_eq!(accepted(&ctl, node_token), 401);
}

#[test]
fn a_refused_old_token_does_not_block_enrollment() {
    let ctl = Ctl::start(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("node.token");
    std::fs::write(&token_file, "rakkr_node_revoked\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = enroll(&ctl, dir.path(), &bootstrap_token(&ctl), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let got = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(accepted(&ctl, got.trim()), 200);
}

#[test]
fn bad_bootstrap_bodies_and_tokens_are_refused_by_the_controller() {
    let ctl = Ctl::start(Duration::from_secs(30));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let url = format!("{}/nodes/{}/bootstrap", ctl.url(), ctl.node);
    let post = |token: Option<&str>, body: &str| {
        let mut rb = agent.post(&url).header("content-type", "application/json");
        if let Some(t) = token {
            rb = rb.header("authorization", format!("Bearer {t}"));
        }
        rb.send(body).unwrap().status().as_u16()
    };
    let good = r#"{"privateKey":"k","publicKey":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== x"}"#;
    let token = bootstrap_token(&ctl);
    assert_eq!(post(None, good), 401);
    assert_eq!(
        post(Some(&token), r#"{"publicKey":"ssh-ed25519 AAAA"}"#),
        400
    );
    assert_eq!(post(Some("rakkr_bootstrap_wrong"), good), 401);
    // The invalid attempts burnt nothing: the token still works, once.
    assert_eq!(post(Some(&token), good), 201);
    assert_eq!(post(Some(&token), good), 401);
}

/// With the box's config file naming the controller, node, state dir and token file,
/// `edgerec enroll --bootstrap-token T` needs nothing else, and writes where it says.
#[test]
fn enroll_takes_the_controller_and_token_file_from_the_config() {
    let ctl = Ctl::start(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens/node.token");
    let conf = dir.path().join("edgerec.toml");
    let config = format!(
        "[state]\ndir = {:?}\n[controller]\nurl = {:?}\nnode_id = {:?}\ntoken_file = {:?}\n",
        dir.path().join("state"),
        ctl.url(),
        ctl.node,
        token_file
    );
    std::fs::write(&conf, config).unwrap();
    let out = common::edgerec()
        .args([
            "enroll",
            "--bootstrap-token",
            &bootstrap_token(&ctl),
            "--config",
        ])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(accepted(&ctl, token.trim()), 200);
    assert!(dir.path().join("state/controller-ssh.pub").exists());
}
