//! Throughput of `SegmentFile::write_frames` on a real disk, written the way the segment
//! writer thread writes: 500 ms batches in whole pages (the partial last page held, as
//! `segment::file::page_hold_sync` allows for these shapes), the data `fdatasync`ed after
//! every 1 s of audio; the header is rewritten at close (the writer's 30 s header flush
//! never comes within a 10 s segment).
//!
//! One iteration writes 10 s of audio into a fresh segment in a temp dir under /tmp and
//! closes it (timed: the writes, the ten syncs and `close`, which writes the held page,
//! flushes the header and `fsync`s once more), then deletes the file (not timed; nor is `create`, which
//! syncs the new file and its directory). The groups are `segment_write/2ch_S16_LE` and
//! `segment_write/8ch_S32_LE`; their throughput is bytes of audio per second, and the
//! summary printed after the run divides it by the stream's byte rate: how many times
//! faster than real time one core can land that stream on this disk, syncs included.
//!
//! Run: `cargo bench --bench segment_writer -- --warm-up-time 1 --measurement-time 3`

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, black_box};
use edgerec::core::format::{SampleFormat, StreamSpec};
use edgerec::segment::file::SegmentFile;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The writer thread's batch: it wakes every half sync interval and writes what the ring
/// holds (up to `MAX_BATCH_BYTES`, 1 MiB, per call in `segment::writer`).
const BATCH_MS: u64 = 500;
/// `sync_data` interval, in audio time.
const SYNC_EVERY_MS: u64 = 1000;
/// Audio per measured iteration: bounds the file (15 MB for 8 ch S32) and the time.
const AUDIO_PER_ITER_MS: u64 = 10_000;
/// Where the segments go: a real disk, not a tmpfs (where syncs cost nothing).
const DIR: &str = "/tmp";

const SHAPES: [StreamSpec; 2] = [
    StreamSpec {
        format: SampleFormat::S16Le,
        rate: 48_000,
        channels: 2,
    },
    StreamSpec {
        format: SampleFormat::S32Le,
        rate: 48_000,
        channels: 8,
    },
];

fn shape_name(spec: &StreamSpec) -> String {
    format!("{}ch_{}", spec.channels, spec.format)
}

fn bytes_in(spec: &StreamSpec, ms: u64) -> usize {
    (spec.rate as u64 * ms / 1000) as usize * spec.bytes_per_frame()
}

/// One batch of non-silent audio.
fn test_batch(spec: &StreamSpec) -> Vec<u8> {
    (0..bytes_in(spec, BATCH_MS))
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

/// Writes `AUDIO_PER_ITER_MS` of audio into a new segment at `path` and closes it; returns
/// the time spent after `create`.
fn write_one_segment(path: &Path, spec: StreamSpec, batch: &[u8]) -> Duration {
    let batches = AUDIO_PER_ITER_MS / BATCH_MS;
    let batches_per_sync = SYNC_EVERY_MS / BATCH_MS;
    let mut seg = SegmentFile::create(path, spec).expect("create segment");
    seg.hold_partial_page(true);
    let start = Instant::now();
    for i in 1..=batches {
        seg.write_frames(black_box(batch)).expect("write_frames");
        if i % batches_per_sync == 0 {
            seg.sync_data().expect("sync_data");
        }
    }
    let frames = seg.close().expect("close");
    let elapsed = start.elapsed();
    debug_assert_eq!(
        frames * spec.bytes_per_frame() as u64,
        batches * batch.len() as u64
    );
    elapsed
}

/// Says so when `dir` is a tmpfs: the figures would then not include any disk.
fn warn_if_tmpfs(dir: &str) {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let c = std::ffi::CString::new(dir).expect("no NUL in the path");
    // SAFETY: a valid C string and a zeroed statfs for the kernel to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0 && st.f_type as i64 == TMPFS_MAGIC {
        eprintln!(
            "note: {dir} is a tmpfs: sync_data costs nothing there, these are not disk figures"
        );
    }
}

fn benches(c: &mut Criterion) {
    warn_if_tmpfs(DIR);
    for spec in SHAPES {
        let dir = tempfile::Builder::new()
            .prefix("edgerec-bench-")
            .tempdir_in(DIR)
            .expect("temp dir under /tmp");
        let path: PathBuf = dir.path().join("segment.wav");
        let batch = test_batch(&spec);
        let mut g = c.benchmark_group("segment_write");
        // Each iteration is tens to hundreds of milliseconds of syncs: take ten equal samples
        // rather than criterion's linear ramp (which would need ~55 iterations).
        g.sampling_mode(SamplingMode::Flat).sample_size(10);
        g.throughput(Throughput::Bytes(bytes_in(&spec, AUDIO_PER_ITER_MS) as u64));
        g.bench_function(BenchmarkId::from_parameter(shape_name(&spec)), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    timed += write_one_segment(&path, spec, &batch);
                    std::fs::remove_file(&path).expect("remove segment");
                }
                timed
            })
        });
        g.finish();
        // `dir` is removed here (and on unwinding).
    }
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    summary(started);
}

// ---- Summary: read back this run's estimates and express them as multiples of real time. ----

/// Where criterion keeps its results: the same rule criterion uses (`$CRITERION_HOME`,
/// else `$CARGO_TARGET_DIR/criterion`, else the target dir this binary was built into).
fn criterion_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    // target/<profile>/deps/<bench binary>
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// Seconds per iteration that criterion measured in this run (none when filtered out or
/// run with `--test` / `--list`).
fn seconds_per_iter(home: &Path, group: &str, param: &str, started: SystemTime) -> Option<f64> {
    let path = home.join(group).join(param).join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < started {
        return None; // left over from an earlier run
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    // Flat sampling fits no slope: criterion's typical value is then the mean.
    let ns = v["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| v["mean"]["point_estimate"].as_f64())?;
    Some(ns / 1e9)
}

fn summary(started: SystemTime) {
    let Some(home) = criterion_home() else {
        return;
    };
    for spec in SHAPES {
        let Some(secs) = seconds_per_iter(&home, "segment_write", &shape_name(&spec), started)
        else {
            continue;
        };
        let bytes = bytes_in(&spec, AUDIO_PER_ITER_MS) as f64;
        let audio_secs = AUDIO_PER_ITER_MS as f64 / 1000.0;
        println!(
            "summary segment_write/{}: {:.1} MB/s ({:.1} MiB/s), {:.0}x real time \
             ({audio_secs:.0} s of audio with {} syncs in {:.1} ms)",
            shape_name(&spec),
            bytes / secs / 1e6,
            bytes / secs / (1u64 << 20) as f64,
            audio_secs / secs,
            AUDIO_PER_ITER_MS / SYNC_EVERY_MS,
            secs * 1e3
        );
    }
}
