//! Shared by the integration tests: the edgerec binary, output inspection, and a lock
//! that keeps real-time tests from running at the same time (2 shared cores).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

pub mod controller;
pub mod fakemic;
pub mod proxy;
pub mod smallfs;

pub fn edgerec() -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgerec"));
    cmd.env("EDGEREC_LOG", "warn");
    // A test that fails half way must not leave an agent running (it would hold the
    // test runner's output open and hang CI): the child dies with the thread that
    // spawned it.
    // SAFETY: prctl is async-signal-safe and touches nothing but this process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

static REALTIME: Mutex<()> = Mutex::new(());

/// Serializes real-time tests inside one test binary.
pub fn realtime() -> MutexGuard<'static, ()> {
    REALTIME.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn edgerec");
    eprintln!("stdout:\n{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The job directories in an output directory, oldest first.
pub fn job_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("job_"))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

pub fn only_job(out: &Path) -> PathBuf {
    let dirs = job_dirs(out);
    assert_eq!(
        dirs.len(),
        1,
        "expected one job in {}: {dirs:?}",
        out.display()
    );
    dirs.into_iter().next().unwrap()
}

pub fn timeline(job: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(job.join("timeline.json")).expect("timeline.json");
    serde_json::from_str(&text).expect("timeline.json parses")
}

pub fn events_of<'a>(timeline: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// Segment files of a job, in order.
pub fn segment_files(job: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(job)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.len() == 10
                && name.ends_with(".wav")
                && name[..6].bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    files.sort();
    files
}

/// Frames in a WAV as hound reads it.
pub fn wav_frames(path: &Path) -> u64 {
    let r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.duration() as u64
}

/// The WAV a job delivers, as a file: its `recording.wav`, or on the agent path (no
/// second copy is written there) the stitched view of its segments, re-created into a
/// scratch file exactly as the upload streams it.
pub fn delivered_wav(job: &Path) -> tempfile::TempPath {
    let d = edgerec::render::job::deliverable(job)
        .unwrap_or_else(|| panic!("{}: nothing rendered", job.display()));
    // `.wav`: sox and ffprobe go by the name.
    let mut f = tempfile::Builder::new().suffix(".wav").tempfile().unwrap();
    let body = d.body();
    std::io::copy(&mut body.open_at(0).unwrap(), &mut f).unwrap();
    f.into_temp_path()
}

/// Wall clock, ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A timeline `at` (RFC 3339) as ms since the epoch.
pub fn at_ms(v: &serde_json::Value) -> i64 {
    let t = humantime::parse_rfc3339(v.as_str().expect("an RFC 3339 string")).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// What `sox FILE -n EFFECTS... stat` prints (on stderr), read by field.
pub struct SoxStat(pub String);

/// Runs sox's `stat` on `file` after `effects` (e.g. `["sinc", "3k-6k"]`).
pub fn sox_stat(file: &Path, effects: &[&str]) -> SoxStat {
    let out = Command::new("sox")
        .arg(file)
        .arg("-n")
        .args(effects)
        .arg("stat")
        .output()
        .unwrap();
    SoxStat(String::from_utf8_lossy(&out.stderr).into_owned())
}

impl SoxStat {
    /// The number on the line that starts with `name` (sox pads names: `"RMS     amplitude:"`).
    pub fn field(&self, name: &str) -> f64 {
        let line = (self.0.lines())
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in sox stat: {}", self.0));
        (line.rsplit(' ').next().unwrap().trim().parse()).unwrap_or_else(|e| panic!("{line}: {e}"))
    }
}

/// Runs a tool nobody here wrote (ffprobe, flac, sox...) and returns its stdout; a missing
/// tool or a failed run is the test's failure, with the tool's own words.
pub fn tool(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run scripts/deps.sh test)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// ffprobe's duration of a media file, in seconds (its container's or tag's figure).
pub fn ffprobe_duration(path: &Path) -> f64 {
    let out = tool(
        Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format=duration"])
            .args(["-of", "csv=p=0"])
            .arg(path),
    );
    let text = String::from_utf8_lossy(&out);
    (text.trim().parse()).unwrap_or_else(|e| panic!("ffprobe {}: {text:?}: {e}", path.display()))
}
