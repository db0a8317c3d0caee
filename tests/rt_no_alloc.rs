//! Proof that the capture thread's steady-state loop never allocates: a counting global
//! allocator, armed on the capture thread itself through the steady-state probe.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edgerec::capture::rt::{RtPhase, set_steady_state_probe};
use edgerec::capture::{self, CaptureRequest, StartFn};
use edgerec::core::format::{SampleFormat, StreamSpec};

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static STEADY_ENTERED: AtomicU64 = AtomicU64::new(0);

fn armed() -> bool {
    ARMED.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if armed() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if armed() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if armed() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn probe(phase: RtPhase) {
    match phase {
        RtPhase::SteadyEnter => {
            STEADY_ENTERED.fetch_add(1, Ordering::Relaxed);
            ARMED.with(|a| a.set(true));
        }
        RtPhase::SteadyExit => ARMED.with(|a| a.set(false)),
    }
}

/// Runs a backend for `secs` with a consumer draining the ring; returns allocations seen
/// on the capture thread between SteadyEnter and SteadyExit.
fn allocations_in_steady_state(start: StartFn, device: &str, spec: StreamSpec, secs: f64) -> u64 {
    set_steady_state_probe(probe);
    let before_entered = STEADY_ENTERED.load(Ordering::Relaxed);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let (sink, mut source) = capture::ring(spec, 2.0, usize::MAX);
    let handle = start(&CaptureRequest::new(device, spec), sink).expect("backend starts");
    let mut buf = Vec::with_capacity(1 << 20);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut frames = 0;
    while Instant::now() < until {
        frames += source.pop_frames(&mut buf, usize::MAX);
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.stop(Duration::from_secs(2)).expect("stops");
    assert!(frames > 0, "{device}: no frames captured");
    assert!(
        STEADY_ENTERED.load(Ordering::Relaxed) > before_entered,
        "{device}: loop never reached steady state"
    );
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn capture_loops_never_allocate_in_steady_state() {
    let spec = StreamSpec {
        format: SampleFormat::S16Le,
        rate: 48_000,
        channels: 2,
    };
    // Long enough for the warm-up at the default ~100 ms period, and some steady periods.
    let synth = allocations_in_steady_state(capture::synth::start, "sine:440", spec, 1.5);
    assert_eq!(synth, 0, "synth capture loop allocated {synth} times");
    let noise = allocations_in_steady_state(capture::synth::start, "noise", spec, 1.5);
    assert_eq!(noise, 0, "synth noise loop allocated {noise} times");

    let mic = common::fakemic::setup(&[("nallocmic", &[])]);
    // SAFETY: set before this process makes any ALSA call; no other thread reads env now.
    unsafe { std::env::set_var("ALSA_CONFIG_PATH", &mic.config_path) };
    for format in [
        SampleFormat::S16Le,
        SampleFormat::S32Le,
        SampleFormat::FloatLe,
    ] {
        let spec = StreamSpec { format, ..spec };
        let alsa = allocations_in_steady_state(capture::alsa::start, "nallocmic", spec, 1.5);
        assert_eq!(
            alsa, 0,
            "alsa capture loop ({format}) allocated {alsa} times"
        );
    }
}
