use super::*;
use crate::core::format::{SampleFormat, StreamSpec};
use crate::journal::NewJob;

#[test]
fn is_disk_full_table() {
    use io::ErrorKind;
    let table = [
        ("ENOSPC", io::Error::from_raw_os_error(libc::ENOSPC), true),
        ("EDQUOT", io::Error::from_raw_os_error(libc::EDQUOT), true),
        ("EIO", io::Error::from_raw_os_error(libc::EIO), false),
        ("EROFS", io::Error::from_raw_os_error(libc::EROFS), false),
        ("EINTR", io::Error::from_raw_os_error(libc::EINTR), false),
        (
            "kind StorageFull",
            io::Error::from(ErrorKind::StorageFull),
            true,
        ),
        (
            "kind QuotaExceeded",
            io::Error::from(ErrorKind::QuotaExceeded),
            true,
        ),
        (
            "kind WriteZero",
            io::Error::from(ErrorKind::WriteZero),
            false,
        ),
        ("custom", io::Error::other("disk full (not really)"), false),
    ];
    for (name, err, full) in table {
        assert_eq!(is_disk_full(&err), full, "{name}");
    }
}

#[test]
fn is_journal_disk_full_table() {
    let sqlite = |code| JournalError::Sqlite {
        doing: "test",
        source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
    };
    let table = [
        ("SQLITE_FULL", sqlite(rusqlite::ffi::SQLITE_FULL), true),
        ("SQLITE_IOERR", sqlite(rusqlite::ffi::SQLITE_IOERR), false),
        ("SQLITE_BUSY", sqlite(rusqlite::ffi::SQLITE_BUSY), false),
        ("no such job", JournalError::NoSuchJob("x".into()), false),
    ];
    for (name, err, full) in table {
        assert_eq!(is_journal_disk_full(&err), full, "{name}");
    }
}

#[test]
fn the_reserve_is_real_blocks_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = JournalReserve::open(dir.path(), 200_000).unwrap();
    assert!(!r.is_held());
    assert!(!r.path().exists());
    r.restore().unwrap();
    assert!(r.is_held());
    let meta = fs::metadata(r.path()).unwrap();
    assert_eq!(meta.len(), 200_000);
    assert!(
        meta.blocks() * 512 >= 200_000,
        "sparse reserve: {} blocks",
        meta.blocks()
    );
    assert!(!dir.path().join(".journal-reserve.tmp").exists());
    // A restart finds it held.
    let mut again = JournalReserve::open(dir.path(), 200_000).unwrap();
    assert!(again.is_held());
    assert!(again.release().unwrap());
    assert!(!again.release().unwrap(), "releasing twice frees nothing");
    assert!(!r.path().exists());
    again.restore().unwrap();
    again.restore().unwrap();
    assert_eq!(fs::metadata(again.path()).unwrap().len(), 200_000);
}

#[test]
fn a_reserve_of_the_wrong_size_or_a_half_made_one_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(".journal-reserve"), [0u8; 100]).unwrap();
    fs::write(dir.path().join(".journal-reserve.tmp"), [0u8; 10]).unwrap();
    let r = JournalReserve::open(dir.path(), 4096).unwrap();
    assert!(!r.is_held());
    assert!(!dir.path().join(".journal-reserve").exists());
    assert!(!dir.path().join(".journal-reserve.tmp").exists());
}

#[test]
fn budget_free_counts_the_reserve_as_used_held_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = JournalReserve::open(dir.path(), 1000).unwrap();
    // (held, statvfs free, budget free)
    let table = [
        (false, 5000, 4000),
        (false, 1000, 0),
        (false, 10, 0),
        (true, 5000, 5000),
        (true, 0, 0),
    ];
    for (held, free, want) in table {
        if held {
            r.restore().unwrap();
        } else {
            r.release().unwrap();
        }
        assert_eq!(r.budget_free(free), want, "held {held}, free {free}");
    }
}

#[test]
fn disk_space_of_a_real_directory() {
    let dir = tempfile::tempdir().unwrap();
    let s = disk_space(dir.path()).unwrap();
    assert!(s.total_bytes > 0);
    assert!(s.free_bytes <= s.total_bytes);
    assert!(free_bytes(dir.path()).is_ok());
    let err = disk_space(&dir.path().join("missing")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

fn job(id: &str, source: JobSource, dir: PathBuf) -> NewJob {
    NewJob {
        id: id.into(),
        source,
        controller_job_id: (source == JobSource::Controller).then(|| format!("ctl-{id}")),
        recording_id: None,
        command_json: "{}".into(),
        backend: "synth".into(),
        device: "synth:sine".into(),
        spec: StreamSpec {
            format: SampleFormat::S16Le,
            rate: 48_000,
            channels: 2,
        },
        duration_frames: None,
        dir,
        state: JobState::Capturing,
        created_at_ms: 0,
    }
}

#[test]
fn reclaim_never_deletes_outside_the_spool() {
    let root = tempfile::tempdir().unwrap();
    let spool = root.path().join("spool");
    let outside = root.path().join("precious");
    fs::create_dir_all(&spool).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("keep.wav"), [1u8; 10_000]).unwrap();
    let j = Journal::open(&spool.join("journal.db")).unwrap();
    // A corrupt row pointing outside the spool, one at the spool itself, and one
    // sneaking out through "..": all refused.
    let rows = [
        ("outside", outside.clone()),
        ("spool-itself", spool.clone()),
        ("dotdot", spool.join("..").join("precious")),
    ];
    for (id, dir) in rows {
        j.create_job(&job(id, JobSource::Controller, dir)).unwrap();
        j.set_job_state(id, JobState::Delivered, None, 1_000)
            .unwrap();
    }
    let got = reclaim_bytes(&j, &spool, u64::MAX, Duration::ZERO, 1_000_000).unwrap();
    assert!(got.is_empty(), "{got:?}");
    assert!(outside.join("keep.wav").exists());
    assert!(spool.join("journal.db").exists());
}

#[test]
fn reclaim_skips_jobs_whose_directory_is_gone_and_stops_at_the_need() {
    let spool = tempfile::tempdir().unwrap();
    let j = Journal::open(&spool.path().join("journal.db")).unwrap();
    for (id, ended, files) in [("gone", 100, 0), ("old", 200, 3), ("newer", 300, 3)] {
        let dir = spool.path().join(id);
        if files > 0 {
            fs::create_dir(&dir).unwrap();
            for f in 0..files {
                fs::write(dir.join(format!("{f:06}.wav")), vec![7u8; 8192]).unwrap();
            }
        }
        j.create_job(&job(id, JobSource::Controller, dir)).unwrap();
        j.set_job_state(id, JobState::Delivered, None, ended)
            .unwrap();
    }
    // One byte needed: the oldest existing recording is enough.
    let got = reclaim_bytes(&j, spool.path(), 1, Duration::ZERO, 1_000).unwrap();
    let ids: Vec<_> = got.iter().map(|r| r.job_id.as_str()).collect();
    assert_eq!(ids, ["old"]);
    assert!(got[0].bytes >= 3 * 8192, "{got:?}");
    assert!(!spool.path().join("old").exists());
    assert!(spool.path().join("newer").exists());
    // Nothing needed: nothing deleted.
    assert!(
        reclaim_bytes(&j, spool.path(), 0, Duration::ZERO, 1_000)
            .unwrap()
            .is_empty()
    );
    assert!(spool.path().join("newer").exists());
}
