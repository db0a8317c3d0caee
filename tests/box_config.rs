//! The box's config file: the shipped example parses and states the defaults, each of its
//! keys takes effect, and a role started without any config file stays up.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgerec::config::{BoxOverrides, BoxSettings, Overrides, RawConfig, RecordSettings};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/yocto/meta-edgerec/recipes-multimedia/edgerec/files/edgerec.toml"
);

type Both = (RecordSettings, BoxSettings);

fn resolve(text: &str) -> Both {
    let raw = RawConfig::parse(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let b = BoxSettings::resolve(&raw, None, BoxOverrides::default()).unwrap();
    (
        RecordSettings::resolve(raw, Overrides::default()).unwrap(),
        b,
    )
}

type Check = fn(&Both) -> bool;

/// One row per key: a value other than the default, and what it must change.
fn table() -> Vec<(&'static str, &'static str, Check)> {
    vec![
        ("state.dir", "\"/srv/rec\"", |(_, b)| {
            b.state_dir == Path::new("/srv/rec")
        }),
        ("log.level", "\"debug\"", |(_, b)| {
            b.log_level == log::LevelFilter::Debug
        }),
        (
            "controller.url",
            "\"http://127.0.0.1:9/api/v1\"",
            |(_, b)| {
                b.controller.is_none() // the url alone is not a controller: node_id too
            },
        ),
        ("controller.node_id", "\"n1\"", |(_, b)| {
            b.controller.is_none()
        }),
        ("controller.token_file", "\"/run/t\"", |(_, b)| {
            b.token_file == Path::new("/run/t")
        }),
        ("controller.allow_insecure", "true", |_| true),
        ("capture.period", "\"10ms\"", |(r, _)| {
            r.period == Duration::from_millis(10)
        }),
        ("capture.ring_seconds", "4.0", |(r, _)| {
            r.ring_seconds == 4.0
        }),
        ("capture.ring_max_mib", "16", |(r, _)| {
            r.ring_max_bytes == 16 * 1024 * 1024
        }),
        ("capture.stall_guard", "\"3s\"", |(r, _)| {
            r.stall_guard == Duration::from_secs(3)
        }),
        ("capture.reopen_cap", "\"500ms\"", |(r, _)| {
            r.reopen_cap == Duration::from_millis(500)
        }),
        ("capture.no_audio_timeout", "\"30s\"", |(r, _)| {
            r.no_audio_timeout == Some(Duration::from_secs(30))
        }),
        ("capture.backend", "\"synth\"", |(r, _)| {
            r.backend == "synth"
        }),
        ("capture.device", "\"hw:CARD=x\"", |(r, _)| {
            r.device == "hw:CARD=x"
        }),
        ("capture.format", "\"S32_LE\"", |(r, _)| {
            r.spec.format.to_string() == "S32_LE"
        }),
        ("capture.rate", "44100", |(r, _)| r.spec.rate == 44_100),
        ("capture.channels", "8", |(r, _)| r.spec.channels == 8),
        ("segments.segment_seconds", "60", |(r, _)| {
            r.segment_seconds == 60
        }),
        ("segments.flush_interval", "\"250ms\"", |(r, _)| {
            r.flush_interval == Duration::from_millis(250)
        }),
        ("segments.sync_interval", "\"2s\"", |(r, _)| {
            r.sync_interval == Duration::from_secs(2)
        }),
        ("output.dir", "\"/srv/out\"", |(r, _)| {
            r.out == Path::new("/srv/out")
        }),
        ("output.gap_fill", "\"splice\"", |(r, _)| {
            r.gap_fill == edgerec::core::timeline::GapFill::Splice
        }),
        ("disk.reserve_below", "\"64MiB\"", |(_, b)| {
            b.disk.reserve_below == Some(64 << 20)
        }),
        ("disk.resume_above", "\"1GiB\"", |(_, b)| {
            b.disk.resume_above == Some(1 << 30)
        }),
        ("disk.reclaim_below", "\"2GiB\"", |(_, b)| {
            b.disk.reclaim_below == Some(2 << 30)
        }),
        ("disk.retention", "\"1day\"", |(_, b)| {
            b.retention == Duration::from_secs(86_400)
        }),
        ("sync.heartbeat_every", "\"10s\"", |(_, b)| {
            b.sync.heartbeat_every == Duration::from_secs(10)
        }),
        ("sync.job_poll_every", "\"1s\"", |(_, b)| {
            b.sync.job_poll_every == Duration::from_secs(1)
        }),
        ("sync.claim_every", "\"3s\"", |(_, b)| {
            b.sync.claim_every == Duration::from_secs(3)
        }),
        ("sync.config_every", "\"5m\"", |(_, b)| {
            b.sync.config_every == Duration::from_secs(300)
        }),
        ("meter.clipping_samples", "10", |(r, _)| {
            r.meter.clipping_open_samples == 10
        }),
        ("meter.flatline_below_dbfs", "-80.0", |(r, _)| {
            r.meter.flatline_open_dbfs == -80.0 && r.meter.flatline_clear_dbfs == -70.0
        }),
        ("meter.low_signal_below_dbfs", "-40.0", |(r, _)| {
            r.meter.low_signal_open_dbfs == -40.0
        }),
        ("meter.dc_offset_above", "0.1", |(r, _)| {
            r.meter.dc_open == 0.1
        }),
        ("meter.inverted_correlation_below", "-0.7", |(r, _)| {
            r.meter.correlation_open == -0.7
        }),
        ("metrics.textfile", "\"/srv/m/edgerec.prom\"", |(_, b)| {
            b.metrics_textfile.as_deref() == Some(Path::new("/srv/m/edgerec.prom"))
        }),
    ]
}

fn snippet(key: &str, value: &str) -> String {
    let (section, name) = key.split_once('.').unwrap();
    format!("[{section}]\n{name} = {value}\n")
}

#[test]
fn each_key_takes_effect() {
    let defaults = resolve("");
    for (key, value, check) in table() {
        match key {
            // Only together do they make a controller (one alone is an error naming the
            // other); allow_insecure rides on it. Checked below.
            "controller.url" | "controller.node_id" | "controller.allow_insecure" => continue,
            _ => {}
        }
        let got = resolve(&snippet(key, value));
        assert!(check(&got), "{key} = {value} did not take effect");
        assert!(
            !check(&defaults),
            "{key}: the default already passes the check"
        );
    }
    for (key, missing) in [
        ("controller.url", "controller.node_id"),
        ("controller.node_id", "controller.url"),
    ] {
        let raw = RawConfig::parse(&snippet(key, "\"x\""), Path::new("t.toml")).unwrap();
        let err = BoxSettings::resolve(&raw, None, BoxOverrides::default()).unwrap_err();
        assert!(err.to_string().contains(missing), "{key} alone: {err}");
    }
    let both = resolve(
        "[controller]\nurl = \"http://127.0.0.1:9/api/v1\"\nnode_id = \"n1\"\nallow_insecure = true\n",
    );
    let c = both.1.controller.expect("url + node_id make a controller");
    assert_eq!(
        (c.url.as_str(), c.node_id.as_str()),
        ("http://127.0.0.1:9/api/v1", "n1")
    );
    assert!(c.allow_insecure);
    assert_eq!(c.token_file, Path::new("/var/lib/edgerec/node.token"));
}

/// `section.key` of every key in the example, set or commented out (`# key = value`).
fn example_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let body = line.strip_prefix("# ").unwrap_or(line);
        if let Some((key, _)) = body.split_once(" = ")
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            keys.insert(format!("{section}.{key}"));
        }
    }
    keys
}

#[test]
fn example_parses_states_the_defaults_and_every_key_is_tested() {
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let (record, b) = resolve(&text);
    let (record_default, b_default) = resolve("");
    assert_eq!(
        record, record_default,
        "the example's values are the built-in defaults"
    );
    assert_eq!(b, b_default);
    // The commented-out keys parse too, once uncommented.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(b) if b.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) => b,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (_, b) = resolve(&uncommented);
    assert!(b.controller.is_some() && b.disk.reserve_below.is_some());
    let tested: BTreeSet<String> = table().iter().map(|(k, _, _)| k.to_string()).collect();
    let shipped = example_keys(&text);
    assert_eq!(shipped.len(), 36, "{shipped:?}");
    assert_eq!(
        shipped, tested,
        "every shipped key has a row in the table, and only those"
    );
}

#[test]
fn errors_name_the_file_and_line() {
    let text = "[capture]\nrate = 48000\n\n[controler]\nurl = \"x\"\n";
    let err = RawConfig::parse(text, Path::new("/etc/edgerec/edgerec.toml")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("bad config /etc/edgerec/edgerec.toml:4: "),
        "{msg}"
    );
    assert!(msg.contains("controler"), "{msg}");
    let err = RawConfig::parse("[disk]\nretention = 7\n", Path::new("a.toml")).unwrap_err();
    assert!(
        err.to_string().starts_with("bad config a.toml:2: "),
        "{err}"
    );
}

fn edgerec() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgerec"))
}

#[test]
fn capture_without_a_config_file_stays_up_and_says_what_is_missing() {
    if Path::new(edgerec::config::DEFAULT_CONFIG).exists() {
        eprintln!(
            "skipped: this machine has {}",
            edgerec::config::DEFAULT_CONFIG
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let mut child = edgerec()
        .args(["capture", "--state-dir"])
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let up_for = Duration::from_secs(3);
    let started = Instant::now();
    while started.elapsed() < up_for {
        assert!(
            child.try_wait().unwrap().is_none(),
            "capture exited: {}",
            read(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_bounded(&mut child, Duration::from_secs(6));
    assert!(status.success(), "{status:?}: {}", read(&log));
    let text = read(&log);
    assert!(
        text.contains("no config file at /etc/edgerec/edgerec.toml"),
        "{text}"
    );
    assert!(text.contains("no controller"), "{text}");
}

#[test]
fn an_explicit_config_that_is_missing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing: PathBuf = dir.path().join("nope.toml");
    for role in ["capture", "sync", "agent"] {
        let out = edgerec()
            .args([role, "--state-dir"])
            .arg(dir.path())
            .arg("--config")
            .arg(&missing)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{role}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("nope.toml"), "{role}: {err}");
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `capture.no_audio_timeout` is shipped commented out (unset: a job waits out its
/// window); set, it takes effect, and a value too short to open a device is refused.
#[test]
fn no_audio_timeout_takes_effect_and_is_bounded() {
    let raw = RawConfig::parse(
        "[capture]\nno_audio_timeout = \"30s\"\n",
        Path::new("a.toml"),
    )
    .unwrap();
    let r = RecordSettings::resolve(raw, Overrides::default()).unwrap();
    assert_eq!(r.no_audio_timeout, Some(Duration::from_secs(30)));
    let raw = RawConfig::parse(
        "[capture]\nno_audio_timeout = \"10ms\"\n",
        Path::new("a.toml"),
    )
    .unwrap();
    let err = RecordSettings::resolve(raw, Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("no_audio_timeout"), "{err}");
    let r = RecordSettings::resolve(RawConfig::default(), Overrides::default()).unwrap();
    assert_eq!(r.no_audio_timeout, None, "unset by default");
}
