//! Real-time thread helpers: priority, naming, and a probe that tests use to prove the
//! steady-state loop never allocates.

use std::sync::atomic::{AtomicPtr, Ordering};

/// Where a capture thread is in its life, as seen by the steady-state probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtPhase {
    /// Warm-up is over: from here until `SteadyExit` the thread must not allocate.
    SteadyEnter,
    /// The loop is left (stop, error, end of source).
    SteadyExit,
}

fn noop(_: RtPhase) {}

static PROBE: AtomicPtr<()> = AtomicPtr::new(noop as fn(RtPhase) as *mut ());

/// Installs a function called on the capture thread itself at each [`RtPhase`]. Tests
/// arm a counting allocator for that thread with it; production leaves the no-op.
pub fn set_steady_state_probe(f: fn(RtPhase)) {
    PROBE.store(f as *mut (), Ordering::Release);
}

pub(crate) fn steady_state(phase: RtPhase) {
    let p = PROBE.load(Ordering::Acquire);
    // SAFETY: PROBE only ever holds a `fn(RtPhase)` stored above.
    let f: fn(RtPhase) = unsafe { std::mem::transmute::<*mut (), fn(RtPhase)>(p) };
    f(phase);
}

/// Periods a capture loop runs before it counts as steady (device start, first wake-ups).
pub const WARMUP_PERIODS: u32 = 8;

/// Asks for SCHED_FIFO on the calling thread; returns whether it was granted. Refusal is
/// normal outside the appliance (no CAP_SYS_NICE / RLIMIT_RTPRIO): the caller warns.
pub fn request_realtime_priority(priority: i32) -> bool {
    // SAFETY: plain libc calls on the current thread with a valid sched_param.
    unsafe {
        let param = libc::sched_param {
            sched_priority: priority,
        };
        libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0
    }
}

/// Priority asked for capture threads: above ordinary RT tasks, below the kernel's IRQ threads.
pub const CAPTURE_RT_PRIORITY: i32 = 70;
