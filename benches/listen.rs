//! The live-listen tap's pass (`ListenTap::feed_bytes`, what the segment writer runs over
//! every captured byte of a controller's job, beside the level meter) against a `memcpy`
//! of the same bytes in the same group: criterion's throughput lines (frames per second)
//! compare directly. Shapes: 2 ch S16_LE at 48 kHz (the default capture: two frames per
//! output sample) and 8 ch S32_LE at 96 kHz (four). One iteration feeds 100 ms.
//!
//! Run: `cargo bench --bench listen -- --warm-up-time 1 --measurement-time 3`

use criterion::{BenchmarkId, Criterion, Throughput, black_box};
use edgerec::core::format::{SampleFormat, StreamSpec};
use edgerec::core::listen::ListenTap;

fn noise(bytes: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    for (format, channels, rate) in [
        (SampleFormat::S16Le, 2, 48_000),
        (SampleFormat::S32Le, 8, 96_000),
    ] {
        let spec = StreamSpec {
            format,
            rate,
            channels,
        };
        let frames = rate as usize / 10;
        let bytes = noise(frames * spec.bytes_per_frame());
        let mut g = c.benchmark_group(format!("listen_{channels}ch_{format}_{}k", rate / 1000));
        g.throughput(Throughput::Elements(frames as u64));
        let mut tap = ListenTap::new(spec);
        g.bench_function(BenchmarkId::new("listen", "feed_bytes"), |b| {
            b.iter(|| {
                tap.feed_bytes(black_box(&bytes));
                black_box(tap.take());
            })
        });
        let mut dst = vec![0u8; bytes.len()];
        g.bench_function(BenchmarkId::new("memcpy", "same_bytes"), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&bytes));
                black_box(&mut dst);
            })
        });
        g.finish();
    }
}
