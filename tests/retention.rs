//! Retention by the controller's cache policies, against the reference controller: a
//! job under `deleteAfterUpload` is pruned once its upload is confirmed; under a node
//! policy's `maxBytes` the oldest delivered recording goes first; a recording whose upload
//! was never confirmed (its checksum never matched) is never pruned. Each pruning is
//! journaled and shown by `edgerec status`.

mod common;

use common::controller::*;
use common::proxy::{Fault, Proxy};
use common::*;
use std::time::{Duration, Instant};

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < until, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn recording_of(ctl: &Ctl, job: &str) -> String {
    let out = ctl.admin.run(&["job", "show", job]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["job"]["recordingId"].as_str().unwrap().to_string()
}

#[test]
fn delivered_and_confirmed_recordings_are_pruned_by_policy() {
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    // One delivered job directory here is ~0.2 MB (segments and sidecars; the WAV streams
    // from them): room for one.
    let policies = r#"[{"policyId": "bytes", "deleteAfterUpload": false, "maxBytes": 300000}]"#;
    ctl.admin
        .run(&["node", "set-cache-policies", &ctl.node, policies])
        .unwrap();
    let job_with = |policy: serde_json::Value| {
        let fields = serde_json::json!({ "recorderCacheRetention": policy }).to_string();
        ctl.add_job_with("sine:440", 1.0, &["--command-json", &fields])
    };
    let at_once = job_with(serde_json::json!({"policyId": "now", "deleteAfterUpload": true}));
    let never_confirmed =
        job_with(serde_json::json!({"policyId": "now", "deleteAfterUpload": true}));
    let older = job_with(serde_json::json!({"policyId": "bytes"}));
    let newer = job_with(serde_json::json!({"policyId": "bytes"}));
    let fault = Fault::Corrupt {
        matching: recording_of(&ctl, &never_confirmed.id),
        times: 99,
    };
    let proxy = Proxy::start(ctl.addr, Some(fault));
    let mut agent = ctl
        .role_at("agent", state.path(), &proxy.url())
        .spawn()
        .unwrap();
    for job in [&at_once, &older, &newer] {
        ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(60));
    }
    let dir = |job: &JobView| agent_job_dir(state.path(), &job.id);
    wait_until(
        "the deleteAfterUpload job pruned",
        Duration::from_secs(20),
        || !dir(&at_once).exists(),
    );
    wait_until(
        "the older 'bytes' job pruned",
        Duration::from_secs(20),
        || !dir(&older).exists(),
    );
    assert!(
        dir(&newer).join("render.json").exists() && !segment_files(&dir(&newer)).is_empty(),
        "within maxBytes: kept"
    );
    // The checksum never matched: the job fails and its audio stays, policy or not.
    let local = agent_job(state.path(), &never_confirmed.id);
    wait_until("the unconfirmed job ends", Duration::from_secs(60), || {
        agent_job(state.path(), &never_confirmed.id)
            .state
            .is_terminal()
    });
    assert!(
        !segment_files(&dir(&never_confirmed)).is_empty(),
        "{local:?}"
    );
    assert!(
        dir(&never_confirmed).join("render.json").exists(),
        "its delivery is kept"
    );

    let journal =
        edgerec::journal::Journal::open_read_only(&state.path().join("edgerec.db")).unwrap();
    let reason = |job: &JobView| {
        let id = agent_job(state.path(), &job.id).id;
        journal
            .pruned(&id)
            .unwrap()
            .map(|p| (p.policy_id, p.reason))
    };
    assert_eq!(
        reason(&at_once),
        Some(("now".into(), "delete_after_upload".into()))
    );
    assert_eq!(reason(&older), Some(("bytes".into(), "max_bytes".into())));
    assert_eq!(reason(&newer), None);
    assert_eq!(reason(&never_confirmed), None);

    let out = edgerec()
        .args(["status", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let older_id = agent_job(state.path(), &older.id).id;
    assert!(
        text.lines()
            .any(|l| l.starts_with("PRUNED:") && l.contains(&older_id) && l.contains("max_bytes")),
        "{text}"
    );
    sigterm(&mut agent, Duration::from_secs(10));
}
