//! README "Install on a box": every `edgerec` and `edgerec-controller` command in it runs
//! here, in order, against the reference controller on 127.0.0.1 and a scratch state
//! directory (the box's paths swapped for it); the rest (apt, systemctl, journalctl,
//! install into the system) is listed and needs a real box.

mod common;

use common::controller::Ctl;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The commands of the section's code blocks, continuation lines joined, `sudo ` dropped.
fn section_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("## Install on a box").expect("the section");
    let rest = &readme[start + 3..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut out = Vec::new();
    let mut in_code = false;
    let mut cur = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let line = line.split(" #").next().unwrap().trim_end();
        match line.strip_suffix('\\') {
            Some(head) => cur.push_str(head),
            None => {
                cur.push_str(line);
                let cmd = std::mem::take(&mut cur);
                let cmd = cmd
                    .trim()
                    .strip_prefix("sudo ")
                    .unwrap_or(cmd.trim())
                    .to_string();
                if !cmd.is_empty() {
                    out.push(cmd);
                }
            }
        }
    }
    out
}

/// Needs a real box (or is checked elsewhere: the package by scripts/appliance.sh deb).
const ELSEWHERE: &[&str] = &[
    "cargo deb",
    "apt install",
    "F=",
    "install ",
    "systemd-sysusers",
    "systemctl",
    "journalctl",
];

#[test]
fn every_edgerec_command_of_the_install_section_runs() {
    let ctl = Ctl::start(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state_s = state.to_str().unwrap().to_string();
    let db = ctl.db.to_str().unwrap().to_string();
    let mut node = String::new();
    let mut bootstrap = String::new();
    let mut ran = Vec::new();
    for cmd in section_commands() {
        if ELSEWHERE.iter().any(|p| cmd.starts_with(p)) {
            continue;
        }
        let cmd = cmd
            .replace("https://controller.example/api/v1", &ctl.url())
            .replace("/var/lib/edgerec", &state_s)
            .replace("--db ctl.db", &format!("--db {db}"))
            .replace("<node-id>", &node)
            .replace("<bootstrap-token>", &bootstrap);
        let words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
        let mut run = match words[0].as_str() {
            "edgerec" => common::edgerec(),
            "edgerec-controller" => Command::new(common::controller::controller_program()),
            other => panic!("a command the test does not know how to run: {other} ({cmd})"),
        };
        run.args(&words[1..]);
        if words[..2] == ["edgerec", "enroll"] {
            // The box's default token file is under /var/lib/edgerec: the scratch one here.
            run.arg("--state-dir")
                .arg(&state)
                .arg("--token-file")
                .arg(state.join("node.token"));
        }
        if words[..2] == ["edgerec", "status"] && !state.join("edgerec.db").exists() {
            // The capture service has run once on a box by now.
            let out = common::edgerec()
                .args(["capture", "--exit-when-idle", "--state-dir", &state_s])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        let out = run.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{cmd}: {out:?}");
        if cmd.starts_with("edgerec-controller node add") {
            node = stdout
                .lines()
                .find_map(|l| l.strip_prefix("node:"))
                .unwrap()
                .trim()
                .into();
        }
        if cmd.starts_with("edgerec-controller node bootstrap-token") {
            bootstrap = stdout.trim().to_string();
        }
        ran.push(words[..2].join(" "));
    }
    let want = [
        "edgerec-controller node",
        "edgerec-controller node",
        "edgerec enroll",
        "edgerec status",
        "edgerec status",
        "edgerec devices",
    ];
    assert_eq!(ran, want);
    assert!(Path::new(&state.join("node.token")).exists());
}
