//! How a job's capture is run: the settings not stored on the job itself.

use std::path::PathBuf;
use std::time::Duration;

use crate::segment::spool::SpoolSettings;

/// How a job's capture is run: everything not stored on the job itself.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub journal_path: PathBuf,
    /// Where hotplug sockets live (the state / output directory).
    pub state_dir: PathBuf,
    pub period: Duration,
    pub ring_seconds: f64,
    /// The ring's byte budget: `ring_seconds` is cut to fit it.
    pub ring_max_bytes: usize,
    pub segment_seconds: u64,
    pub flush_interval: Duration,
    pub sync_interval: Duration,
    /// No frames for this long while the stream claims to run means the device is gone.
    pub stall_guard: Duration,
    pub reopen_base: Duration,
    pub reopen_cap: Duration,
    /// A device that cannot be opened at the very start fails the job at once (an
    /// operator at a console gets the error now) instead of waiting for it to appear.
    pub fail_fast_on_first_open: bool,
    /// A job whose device has delivered no frame this long after its window opened ends
    /// `failed` now, freeing the node for the next job; `None` waits out the window.
    pub no_audio_timeout: Option<Duration>,
    /// The spool's disk budget; `None` writes until the disk says no.
    pub spool: Option<SpoolSettings>,
    /// Where the level detectors open.
    pub meter: crate::core::meter::Thresholds,
}

impl RunSettings {
    pub fn new(journal_path: PathBuf, state_dir: PathBuf) -> Self {
        RunSettings {
            journal_path,
            state_dir: state_dir.clone(),
            period: crate::config::DEFAULT_PERIOD,
            ring_seconds: 10.0,
            ring_max_bytes: crate::config::DEFAULT_RING_MAX_MIB as usize * 1024 * 1024,
            segment_seconds: 300,
            flush_interval: Duration::from_secs(30),
            sync_interval: Duration::from_secs(1),
            stall_guard: Duration::from_secs(5),
            reopen_base: Duration::from_millis(50),
            reopen_cap: Duration::from_secs(2),
            fail_fast_on_first_open: false,
            no_audio_timeout: None,
            spool: Some(SpoolSettings::new(state_dir.clone())),
            meter: Default::default(),
        }
    }
}
