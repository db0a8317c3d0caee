//! The metrics textfile: an agent against the reference controller keeps it current, and
//! a parser nobody here wrote (python3-prometheus-client, what node_exporter users run)
//! reads every family with the job's facts in it.

mod common;

use common::controller::*;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The file as `prometheus_client`'s text parser reads it: `name{labels} value` lines.
fn parsed(path: &std::path::Path) -> Option<String> {
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
                  for f in p(open(sys.argv[1]).read()):\n  for s in f.samples:\n    \
                  print(s.name, sorted(s.labels.items()), s.value, f.type)\n";
    // The distribution's python, where apt put the parser (not a pyenv shim).
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_delivered_job_shows_in_the_metrics_file_as_a_parser_reads_it() {
    let _rt = realtime();
    let ctl = Ctl::start(Duration::from_secs(30));
    let state = tempfile::tempdir().unwrap();
    let textfile = state.path().join("textfile").join("edgerec.prom");
    std::fs::create_dir_all(textfile.parent().unwrap()).unwrap();
    let config = state.path().join("edgerec.toml");
    std::fs::write(&config, format!("[metrics]\ntextfile = {textfile:?}\n")).unwrap();
    let job = ctl.add_job("sine:440,dropout=1s+500ms", 3.0);
    let mut agent = ctl
        .role("agent", &state.path().join("s"))
        .arg("--config")
        .arg(&config)
        .spawn()
        .unwrap();
    ctl.wait_status(&job.id, Some("completed"), Duration::from_secs(60));
    // The file follows within its period (15 s) plus a heartbeat.
    let until = Instant::now() + Duration::from_secs(25);
    let text = loop {
        let text = parsed(&textfile).unwrap_or_default();
        if text.contains("edgerec_jobs [('state', 'delivered')] 1.0")
            && !text.contains("edgerec_upload_bytes_total [] 0.0")
        {
            break text;
        }
        assert!(
            Instant::now() < until,
            "metrics never showed the delivery ({:?}):\n{text}",
            std::fs::read_to_string(&textfile)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    sigterm(&mut agent, Duration::from_secs(10));
    eprintln!("{text}");
    for want in [
        "edgerec_timeline_events_total [('kind', 'drop_out')] 1.0 counter",
        "edgerec_gap_frames_total [('kind', 'drop_out')] 24000.0 counter",
        "edgerec_outbox_pending [] 0.0 gauge",
        "edgerec_node_condition [('condition', 'sync_failed')] 0.0 gauge",
        "edgerec_clock_skew_seconds [] ",
        "edgerec_controller_last_contact_timestamp_seconds [] ",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
    let frames_line = text
        .lines()
        .find(|l| l.starts_with("edgerec_frames_captured_total "))
        .unwrap();
    let frames: f64 = frames_line.split(' ').nth(2).unwrap().parse().unwrap();
    assert!(frames >= 48_000.0 * 2.0, "{frames_line}");
    let leftovers: Vec<_> = std::fs::read_dir(textfile.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "edgerec.prom")
        .collect();
    assert!(leftovers.is_empty(), "no temp files left: {leftovers:?}");
}
