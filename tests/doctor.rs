//! `edgerec doctor` against boxes in known states: a real fakemic device, a real
//! reference controller (and a hostile one whose clock is off), real journals, a real
//! small filesystem filled to the last block. Each case checks the key lines and the
//! exit code (0 pass, 1 warn, 2 fail).

mod common;

#[path = "common/hostile.rs"]
mod hostile;

use common::controller::Ctl;
use common::fakemic::{self, Fakemic};
use common::smallfs::{SmallFs, fill};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

fn mic() -> &'static Fakemic {
    static MIC: OnceLock<Fakemic> = OnceLock::new();
    MIC.get_or_init(|| fakemic::setup(&[("docmic", &[]), ("docbusy", &["--exclusive"])]))
}

/// A box: its config file and state directory, the device and controller it names.
struct BoxUnderTest {
    _dir: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
}

impl BoxUnderTest {
    fn new(state: Option<&Path>, device: &str, controller: Option<(&str, &str, &Path)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = state.map_or_else(|| dir.path().join("state"), Path::to_path_buf);
        std::fs::create_dir_all(&state).unwrap();
        let mut text = format!(
            "[state]\ndir = {state:?}\n\n[capture]\nbackend = \"alsa\"\ndevice = {device:?}\n\
             format = \"S16_LE\"\nrate = 48000\nchannels = 2\n"
        );
        if let Some((url, node, token)) = controller {
            text.push_str(&format!(
                "\n[controller]\nurl = {url:?}\nnode_id = {node:?}\ntoken_file = {token:?}\n"
            ));
        }
        let config = dir.path().join("edgerec.toml");
        std::fs::write(&config, text).unwrap();
        BoxUnderTest {
            _dir: dir,
            config,
            state,
        }
    }

    /// Runs doctor; returns its exit code, its text, and the `--json` verdict per check.
    fn doctor(&self) -> (i32, String, serde_json::Value) {
        let run = |json: bool| {
            let mut cmd = common::edgerec();
            cmd.env("ALSA_CONFIG_PATH", &mic().config_path)
                .arg("doctor")
                .arg("--config")
                .arg(&self.config);
            if json {
                cmd.arg("--json");
            }
            cmd.output().unwrap()
        };
        let text = run(false);
        let json = run(true);
        let out = String::from_utf8_lossy(&text.stdout).into_owned();
        eprintln!("{out}");
        let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(
            json.status.code(),
            text.status.code(),
            "same verdict both ways"
        );
        (text.status.code().unwrap_or(-1), out, parsed)
    }
}

fn verdict(json: &serde_json::Value, name: &str) -> String {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {json}"))["verdict"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A journal as the roles leave it (the capture role run once: `record` makes one).
fn make_journal(state: &Path) {
    let out = common::run(
        common::edgerec()
            .args(["record", "--backend", "synth", "--duration", "1s", "--out"])
            .arg(state),
    );
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_healthy_box_passes_its_device_spool_journal_controller_and_clock() {
    let ctl = Ctl::start(Duration::from_secs(30));
    // A healthy spool is one with room against its marks. The machine's own /tmp may be
    // nearly full (a CI host had 10 GB free of a large disk: below the 5 % reclaim
    // mark, which doctor rightly warns of), so the spool gets a filesystem of its own.
    let spool = SmallFs::mount("64m");
    let b = BoxUnderTest::new(
        spool.as_ref().map(|fs| fs.dir.as_path()),
        "docmic",
        Some((&ctl.url(), &ctl.node, &ctl.token_file)),
    );
    if spool.is_none() {
        // No mount here: the operator's explicit marks, far below any real free space.
        let mut text = std::fs::read_to_string(&b.config).unwrap();
        text.push_str("\n[disk]\nreserve_below = \"1 MiB\"\nresume_above = \"2 MiB\"\nreclaim_below = \"4 MiB\"\n");
        std::fs::write(&b.config, text).unwrap();
    }
    make_journal(&b.state);
    let (code, out, json) = b.doctor();
    for name in [
        "config",
        "device",
        "spool",
        "journal",
        "outbox",
        "controller",
        "clock",
    ] {
        assert_eq!(verdict(&json, name), "PASS", "{name}:\n{out}");
    }
    assert!(out.contains("docmic S16_LE 48000 Hz 2 ch opens"), "{out}");
    assert!(out.contains("token accepted"), "{out}");
    // The daemons are down (nothing runs here): a warning, not a failure.
    assert_eq!(verdict(&json, "roles"), "WARN", "{out}");
    assert!(out.contains("capture ") && out.contains("sync "), "{out}");
    assert_eq!(code, 1, "worst is the daemons' warning:\n{out}");
}

#[test]
fn a_missing_device_a_busy_one_and_a_wrong_token_fail_with_what_to_do() {
    let ctl = Ctl::start(Duration::from_secs(30));
    let bad_token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad_token.path(), "rakkr_node_wrong").unwrap();
    let b = BoxUnderTest::new(
        None,
        "plughw:CARD=Nope,DEV=0",
        Some((&ctl.url(), &ctl.node, bad_token.path())),
    );
    let (code, out, json) = b.doctor();
    assert_eq!(verdict(&json, "device"), "FAIL", "{out}");
    assert!(
        out.contains("`edgerec devices` lists what is there"),
        "{out}"
    );
    assert_eq!(verdict(&json, "controller"), "FAIL", "{out}");
    assert!(out.contains("enroll again"), "{out}");
    assert_eq!(verdict(&json, "journal"), "WARN", "no journal yet:\n{out}");
    assert_eq!(code, 2);

    // A device another program holds is a warning (doctor never takes it from anyone).
    let holder = mic().hold("docbusy", 20);
    let busy = BoxUnderTest::new(None, "docbusy", None);
    let (_, out, json) = busy.doctor();
    drop(holder);
    assert_eq!(verdict(&json, "device"), "WARN", "{out}");
    assert!(out.contains("is busy"), "{out}");
    assert_eq!(verdict(&json, "controller"), "SKIP", "{out}");
}

#[test]
fn a_skewed_controller_clock_is_a_warning() {
    let server = hostile::Hostile::start(hostile::Script {
        clock_offset_s: -90,
        ..hostile::Script::default()
    });
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "rakkr_node_hostile").unwrap();
    let b = BoxUnderTest::new(
        None,
        "docmic",
        Some((&server.url(), "node_hostile", token.path())),
    );
    let (_, out, json) = b.doctor();
    assert_eq!(verdict(&json, "controller"), "PASS", "{out}");
    assert_eq!(verdict(&json, "clock"), "WARN", "{out}");
    assert!(out.contains("check NTP"), "{out}");
}

#[test]
fn a_bad_config_fails_and_the_rest_still_runs_on_defaults() {
    let b = BoxUnderTest::new(None, "docmic", None);
    std::fs::write(
        &b.config,
        "[capture]\nrate = 48000\nperiod = 20\n[nonsense]\nx = 1\n",
    )
    .unwrap();
    let (code, out, json) = b.doctor();
    assert_eq!(verdict(&json, "config"), "FAIL", "{out}");
    assert!(
        out.contains("edgerec.toml:3"),
        "names the file and line:\n{out}"
    );
    assert_eq!(verdict(&json, "device"), "SKIP", "{out}");
    assert!(
        json["checks"].as_array().unwrap().len() >= 8,
        "every check still reported"
    );
    assert_eq!(code, 2);
}

#[test]
fn a_damaged_journal_and_a_backed_up_outbox_are_reported() {
    // Backed up: a node-level row and a job's row queued an hour ago, never delivered.
    let b = BoxUnderTest::new(None, "docmic", None);
    make_journal(&b.state);
    let db = b.state.join("edgerec.db");
    {
        let j = edgerec::journal::Journal::open(&db).unwrap();
        let job = j.jobs().unwrap().remove(0).id;
        let hour_ago = common::now_ms() - 3_600_000;
        j.enqueue(&edgerec::journal::NewOutboxItem::health_event(
            Some(&job),
            "ev-old",
            "{}".into(),
            hour_ago,
        ))
        .unwrap();
    }
    let (_, out, json) = b.doctor();
    assert_eq!(verdict(&json, "journal"), "PASS", "{out}");
    assert_eq!(verdict(&json, "outbox"), "WARN", "{out}");
    assert!(out.contains("1 pending, oldest 3"), "{out}");

    // Damaged: pages of the file overwritten, as a bad card would.
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().skip(4096).take(8192) {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    let _ = std::fs::remove_file(b.state.join("edgerec.db-wal"));
    let (code, out, json) = b.doctor();
    assert_eq!(verdict(&json, "journal"), "FAIL", "{out}");
    assert!(out.contains("edgerec repair --rebuild"), "{out}");
    assert_eq!(code, 2);
}

#[test]
fn a_full_spool_fails_and_a_low_one_warns() {
    let Some(fs) = SmallFs::mount("16m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    };
    let b = BoxUnderTest::new(Some(&fs.dir), "docmic", None);
    // Reclaim starts below 4 MiB free on 16 MiB (4 x the 1 MiB reserve): leave ~2 MiB.
    let filler = fs.dir.join("filler");
    fill(&filler);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap();
    let full = f.metadata().unwrap().len();
    f.set_len(full - 2 * 1024 * 1024).unwrap();
    let (code, out, json) = b.doctor();
    assert_eq!(verdict(&json, "spool"), "WARN", "{out}");
    assert!(out.contains("reclaimed"), "{out}");
    assert!(code >= 1);
    drop(f);
    fill(&fs.dir.join("filler2"));
    let (code, out, json) = b.doctor();
    assert_eq!(verdict(&json, "spool"), "FAIL", "{out}");
    assert_eq!(code, 2);
}
