//! Recording onto a small real filesystem (tmpfs) that another process fills: the write
//! hits ENOSPC, writing pauses (the segment stays valid, the journal keeps recording),
//! freeing space resumes it, and the gap is on the timeline.

mod common;

use common::smallfs::{SmallFs, fill};
use common::*;
use std::process::Stdio;
use std::time::Duration;

/// A tmpfs mounted for the test, unmounted on drop (also when the test fails).
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
