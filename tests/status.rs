//! `edgerec status` end to end: a real journal written by `edgerec record`, read back
//! read-only by another process, with no daemon running.

use std::path::Path;
use std::process::{Command, Output};

fn edgerec() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgerec"));
    cmd.env("EDGEREC_LOG", "warn");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn edgerec");
    eprintln!("stdout:\n{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn status(dir: &Path, json: bool) -> Output {
    let mut cmd = edgerec();
    cmd.arg("status").arg("--state-dir").arg(dir);
    if json {
        cmd.arg("--json");
    }
    run(&mut cmd)
}

/// The one job directory `record` made; its name is the job id.
fn only_job_id(dir: &Path) -> String {
    let ids: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("job_"))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids.into_iter().next().unwrap()
}

#[test]
fn status_reads_a_real_journal_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let rec = run(edgerec()
        .args(["record", "--backend", "synth", "--duration", "1s", "--out"])
        .arg(dir.path()));
    assert!(rec.status.success());
    let id = only_job_id(dir.path());
    let db = dir.path().join("edgerec.db");
    let before = std::fs::metadata(&db).unwrap();

    let out = status(dir.path(), false);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().count() <= 24, "{text}");
    assert!(
        text.lines().all(|l| l.len() <= 80 && l.is_ascii()),
        "{text}"
    );
    let short = edgerec::roles::status::short_id(&id);
    let job_line = text
        .lines()
        .find(|l| l.contains(&short))
        .unwrap_or_else(|| panic!("no line names job {id} ({short}):\n{text}"));
    assert!(job_line.contains("delivered"), "{job_line}");
    assert!(text.contains("jobs:    0 running, 1 ended"), "{text}");
    let disk = text.lines().find(|l| l.starts_with("disk:")).unwrap();
    assert!(
        disk.contains(" free of ") && disk.contains("% free"),
        "{disk}"
    );
    assert!(text.contains("capture: never"), "{text}");
    assert!(text.contains("controller: last contact unknown"), "{text}");
    assert!(text.contains("outbox:  0 pending"), "{text}");

    let out = status(dir.path(), true);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["recent_ended"][0]["id"], id.as_str());
    assert_eq!(v["recent_ended"][0]["state"], "delivered");
    assert_eq!(v["ended_total"], 1);
    assert!(v["disk"]["total_bytes"].as_u64().unwrap() > 0, "{v:#}");
    assert!(v["disk"]["free_bytes"].is_u64(), "{v:#}");
    assert_eq!(v["roles"][0]["liveness"], "never");
    assert!(v["controller_contact_ms"].is_null());

    let after = std::fs::metadata(&db).unwrap();
    assert_eq!(
        after.len(),
        before.len(),
        "status changed the journal's size"
    );
    assert_eq!(
        after.modified().unwrap(),
        before.modified().unwrap(),
        "status wrote to the journal"
    );
}

#[test]
fn status_without_a_journal_says_so_in_one_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = status(dir.path(), false);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no journal at"), "{err}");
    assert!(
        !dir.path().join("edgerec.db").exists(),
        "status must not create a journal"
    );
    let out = status(&dir.path().join("missing"), true);
    assert_eq!(out.status.code(), Some(1));
}
