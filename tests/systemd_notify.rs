//! `Type=notify` as systemd sees it: each role started with NOTIFY_SOCKET pointing at a
//! unix datagram socket bound here sends READY=1, then WATCHDOG=1 pings from its loop.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Role(Child);

impl Drop for Role {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(6);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The datagrams received within `limit`, stopping after the second WATCHDOG=1.
fn messages(sock: &UnixDatagram, limit: Duration) -> Vec<String> {
    let until = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until
        && got
            .iter()
            .filter(|m: &&String| m.contains("WATCHDOG=1"))
            .count()
            < 2
    {
        sock.set_read_timeout(Some(
            until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    got
}

fn check_role(args: &[&str], dir: &std::path::Path) {
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_edgerec"))
        .args(args)
        .env("NOTIFY_SOCKET", &sock_path)
        // 2 s watchdog: pings at least every 0.5 s.
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _role = Role(child);
    let got = messages(&sock, Duration::from_secs(10));
    let ready = got.iter().position(|m| m.lines().any(|l| l == "READY=1"));
    let first_ping = got
        .iter()
        .position(|m| m.lines().any(|l| l == "WATCHDOG=1"));
    assert!(ready.is_some(), "{args:?}: no READY=1 in {got:?}");
    assert!(first_ping.is_some(), "{args:?}: no WATCHDOG=1 in {got:?}");
    assert!(
        ready < first_ping,
        "{args:?}: WATCHDOG=1 before READY=1: {got:?}"
    );
    assert_eq!(
        got.iter().filter(|m| m.contains("WATCHDOG=1")).count(),
        2,
        "{args:?}: pings keep coming: {got:?}"
    );
}

#[test]
fn capture_sends_ready_then_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    check_role(
        &["capture", "--state-dir", state.to_str().unwrap()],
        dir.path(),
    );
}

/// The real sync loop (its controller is a closed loopback port: calls fail, it runs on).
#[test]
fn sync_and_agent_send_ready_then_watchdog() {
    for role in ["sync", "agent"] {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("node.token");
        std::fs::write(&token, "rakkr_node_test\n").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let state = dir.path().join("state");
        let args = [
            role,
            "--state-dir",
            state.to_str().unwrap(),
            "--controller",
            "http://127.0.0.1:9/api/v1",
            "--node-id",
            "node_notify",
            "--token-file",
            token.to_str().unwrap(),
        ];
        check_role(&args, dir.path());
    }
}

/// A box with no controller configured: sync stays up, ready and fed, instead of looping.
#[test]
fn unconfigured_sync_idles_ready_and_fed() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("edgerec.toml");
    std::fs::write(&conf, "[log]\nlevel = \"warn\"\n").unwrap();
    let state = dir.path().join("state");
    check_role(
        &[
            "sync",
            "--state-dir",
            state.to_str().unwrap(),
            "--config",
            conf.to_str().unwrap(),
        ],
        dir.path(),
    );
}
