//! Recording onto a small real filesystem (tmpfs) that another process fills: the write
//! hits ENOSPC, writing pauses (the segment stays valid, the journal keeps recording),
//! freeing space resumes it, and the gap is on the timeline.

mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A tmpfs mounted for the test, unmounted on drop (also when the test fails).
struct SmallFs {
    dir: PathBuf,
    _keep: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> Option<SmallFs> {
        let keep = tempfile::tempdir().unwrap();
        let dir = keep.path().join("spool");
        std::fs::create_dir(&dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=1777"),
                "tmpfs",
            ])
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "SKIPPED: mounting a tmpfs is not allowed here (needs root or a user namespace)"
            );
            return None;
        }
        Some(SmallFs { dir, _keep: keep })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Writes zeros into `path` until the filesystem says it is full.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    let mut written = 0;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    written
}

#[test]
fn a_full_disk_pauses_writing_and_freeing_space_resumes_it() {
    let _rt = realtime();
    let Some(fs) = SmallFs::mount("8m") else {
        return;
    };
    let out = fs.dir.join("out");
    let child = edgerec()
        .args([
            "record",
            "--backend",
            "synth",
            "--device",
            "noise",
            "--format",
            "S32_LE",
            "--channels",
            "2",
        ])
        .args(["--duration", "6s", "--segment-seconds", "2", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let filler = fs.dir.join("filler");
    let filled = fill(&filler);
    eprintln!("another process took the last {filled} bytes");
    std::thread::sleep(Duration::from_millis(2000));
    std::fs::remove_file(&filler).unwrap();
    let result = child.wait_with_output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&result.stderr));
    assert!(
        result.status.success(),
        "record failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );

    let job = only_job(&out);
    let tl = timeline(&job);
    let pause = events_of(&tl, "disk_pause");
    let resume = events_of(&tl, "disk_resume");
    assert_eq!((pause.len(), resume.len()), (1, 1), "{tl:#}");
    assert!(
        pause[0]["detail"].as_str().unwrap().contains("disk full"),
        "{}",
        pause[0]
    );
    assert_eq!(pause[0]["frame"], resume[0]["frame"]);
    let gap_s = resume[0]["gap_frames"].as_u64().unwrap() as f64 / 48_000.0;
    // The disk is full for 2 s; writing resumes at the next free-space look (once a
    // second) after the filler goes.
    assert!((1.5..=3.5).contains(&gap_s), "a ~2 s pause, got {gap_s} s");
    assert_eq!(
        tl["frames"].as_u64().unwrap(),
        6 * 48_000,
        "output time = wall time"
    );
    // Every segment is a valid WAV and the journal agrees with it.
    let files = segment_files(&job);
    let segs = tl["segments"].as_array().unwrap();
    assert_eq!(files.len(), segs.len());
    for (file, seg) in files.iter().zip(segs) {
        assert_eq!(
            wav_frames(file),
            seg["frames"].as_u64().unwrap(),
            "{}",
            file.display()
        );
    }
    assert_eq!(wav_frames(&job.join("recording.wav")), 6 * 48_000);
}
