//! The inventory follows the hardware: against the reference controller, a capture device
//! that is unplugged (udev runs `edgerec hotplug`) is absent from the node's interfaces
//! within 2 s, and back, under the same interface id, within 2 s of its replug.

mod common;

use common::controller::*;
use common::fakemic;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The node's interfaces as the controller holds them.
fn interfaces(ctl: &Ctl) -> Vec<Value> {
    let out = ctl
        .admin
        .run(&["node", "show", &ctl.node])
        .unwrap_or_default();
    let node: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    node["interfaces"].as_array().cloned().unwrap_or_default()
}

/// The interface for `name`, once `present` says what the test waits for; how long that took.
fn wait_for(ctl: &Ctl, name: &str, present: bool, within: Duration) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let found = interfaces(ctl)
            .into_iter()
            .find(|i| i.to_string().contains(name));
        if let Some(i) = &found
            && i.get("absent").is_none() == present
        {
            return (i.clone(), start.elapsed());
        }
        assert!(
            start.elapsed() < within,
            "{name} present={present} within {within:?}: {:#?}",
            interfaces(ctl)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hotplug(state: &std::path::Path, action: &str) {
    let out = common::run(
        common::edgerec()
            .args([
                "hotplug",
                "--action",
                action,
                "--devpath",
                "/devices/usb1/1-1",
            ])
            .arg("--state-dir")
            .arg(state),
    );
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn an_unplugged_interface_leaves_the_inventory_and_comes_back_as_itself() {
    let mic = fakemic::setup(&[("invmic", &[])]);
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let mut agent = ctl
        .role("agent", state.path())
        .env("ALSA_CONFIG_PATH", &mic.config_path)
        .spawn()
        .unwrap();
    let (first, _) = wait_for(&ctl, "invmic", true, Duration::from_secs(20));
    mic.mic("unplug", "invmic");
    hotplug(state.path(), "remove");
    let (_, gone_after) = wait_for(&ctl, "invmic", false, Duration::from_secs(2));
    mic.mic("replug", "invmic");
    hotplug(state.path(), "add");
    let (back, back_after) = wait_for(&ctl, "invmic", true, Duration::from_secs(2));
    sigterm(&mut agent, Duration::from_secs(5));
    eprintln!("absent after {gone_after:?}, back after {back_after:?}");
    assert_eq!(first["id"], back["id"], "the same interface, not a new one");
}
