//! The level meter's pass (`LevelMeter::feed_bytes`, what the segment writer runs over
//! every captured byte) against a `memcpy` of the same bytes in the same run: the meter
//! reads each byte once, so the copy is the floor it is measured against.
//!
//! Shapes: 2 ch S16_LE (the default capture), 8 ch S24_LE (the integer lanes at a wider
//! sample), 64 ch S32_LE (the f64 lanes, wide). One iteration feeds 100 ms of 48 kHz
//! audio (4800 frames, a deterministic noise with some samples on the rails). After the
//! run a summary prints ns per frame of each and the meter's ratio to the copy.
//!
//! `peaks_2ch_f32` is the waveform peaks' fold (`Peaks::push`, run by every render
//! path) over the same 100 ms as decoded stereo f32, against a `memcpy` of those floats.
//!
//! Run: `cargo bench --bench meter -- --warm-up-time 1 --measurement-time 3`

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, black_box};
use edgerec::core::format::SampleFormat;
use edgerec::core::meter::LevelMeter;
use edgerec::render::peaks::Peaks;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const FRAMES: usize = 4800;
const SHAPES: [(SampleFormat, u16); 3] = [
    (SampleFormat::S16Le, 2),
    (SampleFormat::S24Le, 8),
    (SampleFormat::S32Le, 64),
];

/// 100 ms of noise in native bytes; one sample in 97 on a rail.
fn audio(format: SampleFormat, channels: u16) -> Vec<u8> {
    let width = format.bytes_per_sample();
    let bits = 8 * width.min(3) as u32 - 1;
    let bits = if format == SampleFormat::S32Le {
        31
    } else {
        bits
    };
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..FRAMES * usize::from(channels))
        .flat_map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = if i % 97 == 0 {
                -(1i64 << bits)
            } else {
                (x >> (64 - bits - 1)) as i64 - (1i64 << bits)
            };
            (v as i32).to_le_bytes()[..width].to_vec()
        })
        .collect()
}

/// Total time and iterations of one bench, read by the summary.
type Tally = Rc<Cell<(Duration, u64)>>;

fn timed(tally: &Tally, iters: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let took = start.elapsed();
    let (t, n) = tally.get();
    tally.set((t + took, n + iters));
    took
}

/// The group's `memcpy` peer: a copy of `src` into a buffer of its size.
fn copy_peer<T: Copy + Default>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    what: &str,
    tally: &Tally,
    src: &[T],
) {
    let mut dst = vec![T::default(); src.len()];
    g.bench_function(BenchmarkId::new("memcpy", what), |b| {
        b.iter_custom(|iters| {
            timed(tally, iters, || {
                dst.copy_from_slice(black_box(src));
                black_box(&mut dst);
            })
        })
    });
}

fn ns_per_frame(tally: &Tally) -> f64 {
    let (t, n) = tally.get();
    t.as_nanos() as f64 / (n.max(1) as f64 * FRAMES as f64)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut rows = Vec::new();
    for (format, channels) in SHAPES {
        let name = format!("{channels}ch_{format}");
        let bytes = audio(format, channels);
        let mut g = c.benchmark_group(format!("meter_{name}"));
        g.throughput(Throughput::Elements(FRAMES as u64));
        let (meter_t, copy_t): (Tally, Tally) = Default::default();
        let mut meter = LevelMeter::new(channels);
        g.bench_function(BenchmarkId::new("meter", "feed_bytes"), |b| {
            b.iter_custom(|iters| {
                timed(&meter_t, iters, || {
                    meter.feed_bytes(format, black_box(&bytes))
                })
            })
        });
        black_box(meter.take());
        copy_peer(&mut g, "same_bytes", &copy_t, &bytes);
        g.finish();
        rows.push((name, ns_per_frame(&meter_t), ns_per_frame(&copy_t)));
    }
    rows.push(peaks(&mut c));
    println!("\nsummary (ns per frame, all iterations incl. warm-up):");
    for (name, meter, copy) in rows {
        println!(
            "  {name:<14} pass {meter:>8.2}  memcpy {copy:>7.2}  pass/memcpy {:>6.1}",
            meter / copy
        );
    }
}

/// The peaks group: a 10-hour plan's pixel width (8640 frames), so a pixel closes
/// about every other iteration, as in a long render.
fn peaks(c: &mut Criterion) -> (String, f64, f64) {
    let floats: Vec<f32> = audio(SampleFormat::S16Le, 2)
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0)
        .collect();
    let mut g = c.benchmark_group("peaks_2ch_f32");
    g.throughput(Throughput::Elements(FRAMES as u64));
    let (peaks_t, copy_t): (Tally, Tally) = Default::default();
    let mut peaks = Peaks::new(2, 48_000, 48_000 * 3600 * 10);
    g.bench_function(BenchmarkId::new("peaks", "push"), |b| {
        b.iter_custom(|iters| timed(&peaks_t, iters, || peaks.push(black_box(&floats))))
    });
    black_box(peaks.finish());
    copy_peer(&mut g, "same_floats", &copy_t, &floats);
    g.finish();
    let name = "2ch_f32 peaks".to_string();
    (name, ns_per_frame(&peaks_t), ns_per_frame(&copy_t))
}
