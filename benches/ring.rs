//! Throughput of the real-time path's SPSC ring (`edgerec::capture::ring`) against the
//! physical limit of moving the same bytes with `memcpy`.
//!
//! One criterion group per stream shape, named after one 20 ms period of it
//! (`period_2ch_S16_LE`: 48 kHz stereo S16, 3840 B; `period_8ch_S32_LE`: 48 kHz 8 ch S32,
//! 30720 B). In each group:
//!
//! - `ring/push_pop_1thread`: `FrameSink::push` of one period, then
//!   `FrameSource::pop_frames` of the same frames, on one thread.
//! - `ring/spsc_2threads`: a producer thread pushes periods while this thread pops them in
//!   the writer's 100 ms batches; one iteration moves a fixed 1 s of audio (50 periods).
//!   The producer waits for room (the real capture thread is paced by the device instead),
//!   so nothing is dropped; the bench checks that.
//! - `memcpy/2copies_hot`: the same bytes copied twice with `copy_from_slice` (push + pop
//!   are two copies) between period-sized buffers that stay in cache: the physical limit.
//! - `memcpy/2copies_ring_sized`: the same, but the middle buffer is as large as the ring
//!   and is walked like one, so it pays the same cache misses: the ring's own overhead is
//!   the gap between this and `ring/push_pop_1thread`.
//!
//! The ring is sized like the recorder's (`capture.ring_seconds` default, 10 s). Every
//! bench declares `Throughput::Bytes` of audio moved (not bytes copied), so criterion's
//! GiB/s are comparable inside a group; after the run a summary prints each ring bench
//! as a fraction of both memcpy baselines and as a multiple of real time.
//!
//! Run: `cargo bench --bench ring -- --warm-up-time 1 --measurement-time 3`

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, black_box};
use edgerec::capture::{FrameSink, FrameSource, ring};
use edgerec::core::format::{SampleFormat, StreamSpec};
use ringbuf::traits::Observer as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

/// The recorder's default ring (`capture.ring_seconds`).
const RING_SECONDS: f64 = 10.0;
/// One device period, as the capture thread reads it.
const PERIOD_MS: u32 = 20;
/// The segment writer's batch (`MAX_BATCH_FRAMES` in `segment::writer`: 100 ms at 48 kHz).
const WRITER_BATCH_FRAMES: usize = 4800;
/// Audio moved per iteration of the two-thread bench.
const SPSC_PERIODS_PER_ITER: u64 = 50;

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

fn period_frames(spec: &StreamSpec) -> usize {
    (spec.rate / (1000 / PERIOD_MS)) as usize
}

fn period_bytes(spec: &StreamSpec) -> usize {
    period_frames(spec) * spec.bytes_per_frame()
}

/// Not silence, so nothing downstream can special-case it.
fn test_period(spec: &StreamSpec) -> Vec<u8> {
    (0..period_bytes(spec))
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

fn group_name(spec: &StreamSpec) -> String {
    format!("period_{}ch_{}", spec.channels, spec.format)
}

/// A bench whose result the summary reads back: criterion directory and audio per iteration.
struct Measured {
    group: String,
    function: &'static str,
    param: &'static str,
    bytes_per_iter: u64,
}

fn push_pop_1thread(g: &mut BenchmarkGroup<'_, WallTime>, spec: StreamSpec) -> Measured {
    let (mut sink, mut source) = ring(spec, RING_SECONDS, usize::MAX);
    let period = test_period(&spec);
    let frames = period_frames(&spec);
    let mut buf = Vec::with_capacity(period.len());
    g.throughput(Throughput::Bytes(period.len() as u64));
    g.bench_function(BenchmarkId::new("ring", "push_pop_1thread"), |b| {
        b.iter(|| {
            sink.push(black_box(&period));
            let got = source.pop_frames(&mut buf, frames);
            debug_assert_eq!(got, frames);
            black_box(&buf);
        })
    });
    assert_eq!(
        sink.stats().frames_dropped.load(Ordering::Relaxed),
        0,
        "the single-thread bench must never fill the ring"
    );
    measured(spec, "ring", "push_pop_1thread", period.len() as u64)
}

/// The capture side of the two-thread bench: pushes as many periods as it is told to,
/// waiting for room so the ring never drops.
struct Producer {
    orders: Option<mpsc::Sender<u64>>,
    thread: Option<JoinHandle<FrameSink>>,
}

impl Producer {
    fn spawn(mut sink: FrameSink, popped: Arc<AtomicU64>, capacity: u64, spec: StreamSpec) -> Self {
        let (orders, rx) = mpsc::channel::<u64>();
        let thread = std::thread::Builder::new()
            .name("bench-producer".into())
            .spawn(move || {
                let period = test_period(&spec);
                let len = period.len() as u64;
                let mut pushed = 0u64;
                while let Ok(periods) = rx.recv() {
                    for _ in 0..periods {
                        let mut spins = 0u32;
                        while pushed + len - popped.load(Ordering::Acquire) > capacity {
                            backoff(&mut spins);
                        }
                        sink.push(&period);
                        pushed += len;
                    }
                }
                sink
            })
            .expect("spawn the producer thread");
        Producer {
            orders: Some(orders),
            thread: Some(thread),
        }
    }

    fn order(&self, periods: u64) {
        self.orders
            .as_ref()
            .expect("producer running")
            .send(periods)
            .expect("producer alive");
    }

    /// Stops the thread and hands back its sink.
    fn finish(mut self) -> FrameSink {
        drop(self.orders.take());
        self.thread
            .take()
            .expect("joined once")
            .join()
            .expect("producer thread panicked")
    }
}

/// Spin briefly, then give the core away: on two shared cores a pure spin can starve the
/// other side.
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

fn spsc_2threads(g: &mut BenchmarkGroup<'_, WallTime>, spec: StreamSpec) -> Measured {
    let (sink, mut source): (FrameSink, FrameSource) = ring(spec, RING_SECONDS, usize::MAX);
    let capacity = source.cons.capacity().get() as u64;
    let popped = Arc::new(AtomicU64::new(0));
    let producer = Producer::spawn(sink, popped.clone(), capacity, spec);
    let bpf = spec.bytes_per_frame() as u64;
    let bytes_per_iter = SPSC_PERIODS_PER_ITER * period_bytes(&spec) as u64;
    let mut buf = Vec::with_capacity(WRITER_BATCH_FRAMES * spec.bytes_per_frame());
    let mut total_popped = 0u64;
    g.throughput(Throughput::Bytes(bytes_per_iter));
    g.bench_function(BenchmarkId::new("ring", "spsc_2threads"), |b| {
        b.iter_custom(|iters| {
            let want = iters * bytes_per_iter;
            let start = Instant::now();
            producer.order(iters * SPSC_PERIODS_PER_ITER);
            let mut got = 0u64;
            let mut spins = 0u32;
            while got < want {
                let frames = source.pop_frames(&mut buf, WRITER_BATCH_FRAMES) as u64;
                if frames == 0 {
                    backoff(&mut spins);
                    continue;
                }
                spins = 0;
                black_box(&buf);
                got += frames * bpf;
                total_popped += frames * bpf;
                popped.store(total_popped, Ordering::Release);
            }
            start.elapsed()
        })
    });
    let sink = producer.finish();
    assert_eq!(
        sink.stats().frames_dropped.load(Ordering::Relaxed),
        0,
        "the producer waits for room, so nothing may be dropped"
    );
    assert_eq!(
        sink.position() * bpf,
        total_popped,
        "every byte pushed was popped"
    );
    measured(spec, "ring", "spsc_2threads", bytes_per_iter)
}

fn memcpy_hot(g: &mut BenchmarkGroup<'_, WallTime>, spec: StreamSpec) -> Measured {
    let src = test_period(&spec);
    let mut mid = vec![0u8; src.len()];
    let mut dst = vec![0u8; src.len()];
    g.throughput(Throughput::Bytes(src.len() as u64));
    g.bench_function(BenchmarkId::new("memcpy", "2copies_hot"), |b| {
        b.iter(|| {
            mid.copy_from_slice(black_box(&src));
            black_box(&mut mid);
            dst.copy_from_slice(&mid);
            black_box(&dst);
        })
    });
    measured(spec, "memcpy", "2copies_hot", src.len() as u64)
}

fn memcpy_ring_sized(g: &mut BenchmarkGroup<'_, WallTime>, spec: StreamSpec) -> Measured {
    let src = test_period(&spec);
    let len = src.len();
    // Same capacity as `ring(spec, RING_SECONDS, usize::MAX)` allocates.
    let (_, probe) = ring(spec, RING_SECONDS, usize::MAX);
    let mut mid = vec![0u8; probe.cons.capacity().get()];
    drop(probe);
    let mut dst = vec![0u8; len];
    let mut at = 0usize;
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function(BenchmarkId::new("memcpy", "2copies_ring_sized"), |b| {
        b.iter(|| {
            if at + len > mid.len() {
                at = 0;
            }
            mid[at..at + len].copy_from_slice(black_box(&src));
            black_box(&mut mid);
            dst.copy_from_slice(&mid[at..at + len]);
            black_box(&dst);
            at += len;
        })
    });
    measured(spec, "memcpy", "2copies_ring_sized", len as u64)
}

fn measured(
    spec: StreamSpec,
    function: &'static str,
    param: &'static str,
    bytes_per_iter: u64,
) -> Measured {
    Measured {
        group: group_name(&spec),
        function,
        param,
        bytes_per_iter,
    }
}

fn benches(c: &mut Criterion) -> Vec<(StreamSpec, Vec<Measured>)> {
    let mut all = Vec::new();
    for spec in SHAPES {
        let mut g = c.benchmark_group(group_name(&spec));
        let results = vec![
            push_pop_1thread(&mut g, spec),
            spsc_2threads(&mut g, spec),
            memcpy_hot(&mut g, spec),
            memcpy_ring_sized(&mut g, spec),
        ];
        g.finish();
        all.push((spec, results));
    }
    all
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    let all = benches(&mut c);
    c.final_summary();
    summary(&all, started);
}

// ---- Summary: read back this run's estimates and print the ratios. ----

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

/// Bytes per second of `m`, if criterion measured it in this run (not filtered out, not
/// `--test` or `--list`).
fn throughput(home: &std::path::Path, m: &Measured, started: SystemTime) -> Option<f64> {
    let path = home
        .join(&m.group)
        .join(m.function)
        .join(m.param)
        .join("new/estimates.json");
    let meta = std::fs::metadata(&path).ok()?;
    if meta.modified().ok()? < started {
        return None; // left over from an earlier run
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    // Criterion's "typical" time per iteration: the slope when it fitted one, else the mean.
    let ns = v["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| v["mean"]["point_estimate"].as_f64())?;
    Some(m.bytes_per_iter as f64 / (ns / 1e9))
}

fn summary(all: &[(StreamSpec, Vec<Measured>)], started: SystemTime) {
    let Some(home) = criterion_home() else {
        return;
    };
    const GIB: f64 = (1u64 << 30) as f64;
    for (spec, results) in all {
        let rates: Vec<(String, f64)> = results
            .iter()
            .filter_map(|m| {
                let name = format!("{}/{}", m.function, m.param);
                throughput(&home, m, started).map(|r| (name, r))
            })
            .collect();
        if rates.is_empty() {
            continue;
        }
        let realtime = (spec.rate as usize * spec.bytes_per_frame()) as f64;
        println!(
            "\nsummary {} ({} B per {PERIOD_MS} ms period, {:.0} B/s of audio):",
            group_name(spec),
            period_bytes(spec),
            realtime
        );
        let baselines: Vec<&(String, f64)> = rates
            .iter()
            .filter(|(n, _)| n.starts_with("memcpy/"))
            .collect();
        for (name, rate) in &rates {
            let mut line = format!(
                "  {name:<28} {:>7.2} GiB/s  {:>9.0}x real time",
                rate / GIB,
                rate / realtime
            );
            if name.starts_with("ring/") {
                for (base, base_rate) in &baselines {
                    line.push_str(&format!("  {:.2} of {base}", rate / base_rate));
                }
            }
            println!("{line}");
        }
    }
}
