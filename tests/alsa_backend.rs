//! The `alsa` and `cpal` backends against a real ALSA capture device: the `fakemic` ioplug
//! plugin (tests/fakemic), built and configured once per test process into a temp dir.
//!
//! These tests capture in real time, so they run one at a time (`SERIAL`) and their
//! tolerances are in periods, not milliseconds.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use edgerec::capture::alsa::{AlsaSource, THREAD_NAME};
use edgerec::capture::pull::{PullSource, Read};
use edgerec::capture::{
    CaptureEnd, CaptureEvent, CaptureHandle, CaptureRequest, FrameSource, OpenError, StartFn, ring,
};
use edgerec::core::format::{SampleFormat, StreamSpec};

const RATE: u32 = 48_000;
const PERIOD: u32 = 960; // 20 ms
/// Frames in the looped source file (not a multiple of the period on purpose).
const FILE_FRAMES: usize = 30_011;
/// Every fakemic device the tests use; each test has its own so faults do not leak.
const DEVICES: [&str; 10] = [
    "filemic",
    "unplugmic",
    "gonemic",
    "stallmic",
    "overmic",
    "cpalmic",
    "cpalgone",
    "cpalstall",
    "listmic",
    "wakemic",
];

struct Kit {
    dir: PathBuf,
    /// The S16 samples the file-fed devices loop (interleaved stereo).
    samples: Vec<i16>,
}

static KIT: OnceLock<Kit> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

/// Builds fakemic and points ALSA at it, once, before any ALSA call of this process; then
/// takes the lock that keeps real-time tests from overlapping.
fn setup() -> (&'static Kit, MutexGuard<'static, ()>) {
    let kit = KIT.get_or_init(|| {
        // Per process, under target/tmp; leftovers of finished runs are removed here.
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("fakemic-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = tmp.join(format!("fakemic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A pseudo-random pattern (xorshift), so a slipped or repeated frame cannot match.
        let mut x: u32 = 0x9e37_79b9;
        let samples: Vec<i16> = (0..FILE_FRAMES * 2)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 16) as i16
            })
            .collect();
        let raw = dir.join("source.raw");
        let mut f = std::fs::File::create(&raw).unwrap();
        for s in &samples {
            f.write_all(&s.to_le_bytes()).unwrap();
        }
        drop(f);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakemic/setup.sh");
        let mut cmd = Command::new(script);
        cmd.arg(&dir);
        for name in DEVICES {
            cmd.args([name, "--file"])
                .arg(&raw)
                .args(["--rate", "48000", "--channels", "2"]);
        }
        let out = cmd.output().expect("run tests/fakemic/setup.sh");
        assert!(
            out.status.success(),
            "setup.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let path = stdout
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("export ALSA_CONFIG_PATH="))
            .expect("setup.sh prints the ALSA_CONFIG_PATH line last")
            .to_string();
        // SAFETY: this runs once, inside the OnceLock, before this process makes any ALSA
        // call (every test calls `setup` first); nothing else reads the environment then.
        unsafe { std::env::set_var("ALSA_CONFIG_PATH", path) };
        Kit { dir, samples }
    });
    (kit, SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

fn mic(kit: &Kit, op: &str, name: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakemic/mic.sh");
    let st = Command::new(script)
        .args([op, name])
        .arg(&kit.dir)
        .status()
        .unwrap();
    assert!(st.success(), "mic.sh {op} {name}");
}

fn stereo48k(format: SampleFormat) -> StreamSpec {
    StreamSpec {
        format,
        rate: RATE,
        channels: 2,
    }
}

fn request(device: &str, spec: StreamSpec) -> CaptureRequest {
    CaptureRequest {
        period_frames: PERIOD,
        buffer_frames: RATE / 2,
        ..CaptureRequest::new(device, spec)
    }
}

fn alsa_start() -> StartFn {
    edgerec::capture::backend("alsa").unwrap()
}

fn cpal_start() -> StartFn {
    edgerec::capture::backend("cpal").unwrap()
}

/// Drains the ring into `out`.
fn drain(src: &mut FrameSource, out: &mut Vec<u8>) {
    let mut buf = Vec::new();
    let n = src.frames_available();
    src.pop_frames(&mut buf, n);
    out.extend_from_slice(&buf);
}

/// Captures about `secs` seconds; returns the bytes, the events and the wall time between
/// start returning and stop being asked.
fn capture(
    start: StartFn,
    device: &str,
    spec: StreamSpec,
    secs: f64,
) -> (Vec<u8>, Vec<CaptureEvent>, Duration) {
    let (sink, mut src) = ring(spec, 10.0, usize::MAX);
    let handle =
        start(&request(device, spec), sink).unwrap_or_else(|e| panic!("start {device}: {e}"));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let wall = t0.elapsed();
    stop_within(handle, Duration::from_millis(500));
    let mut bytes = Vec::new();
    drain(&mut src, &mut bytes);
    let events: Vec<CaptureEvent> = src.events.try_iter().collect();
    (bytes, events, wall)
}

/// Stops and checks the deadline was kept.
fn stop_within(handle: CaptureHandle, deadline: Duration) -> Duration {
    let t = Instant::now();
    handle.stop(deadline).expect("stop within its deadline");
    t.elapsed()
}

/// The file's sample at stream sample index `i`, as `format` delivers it.
fn expected_bytes(kit: &Kit, format: SampleFormat, i: usize) -> Vec<u8> {
    let v = kit.samples[i % kit.samples.len()];
    match format {
        SampleFormat::S16Le => v.to_le_bytes().to_vec(),
        SampleFormat::S32Le => ((v as i32) << 16).to_le_bytes().to_vec(),
        SampleFormat::FloatLe => (v as f32 / 32768.0).to_le_bytes().to_vec(),
        other => panic!("fakemic does not produce {other}"),
    }
}

fn assert_exact(kit: &Kit, format: SampleFormat, bytes: &[u8]) {
    let bps = format.bytes_per_sample();
    for (i, got) in bytes.chunks_exact(bps).enumerate() {
        let want = expected_bytes(kit, format, i);
        assert_eq!(got, &want[..], "{format}: sample {i} differs");
    }
}

fn assert_frames_near(frames: u64, wall: Duration, period: u64, what: &str) {
    let expected = (wall.as_secs_f64() * RATE as f64) as i64;
    let tolerance = 2 * period as i64;
    eprintln!("{what}: {frames} frames in {wall:?} (expected {expected} ± {tolerance})");
    assert!(
        (frames as i64 - expected).abs() <= tolerance,
        "{what}: {frames} frames in {wall:?}, expected {expected} ± {tolerance}"
    );
}

fn ended(events: &[CaptureEvent]) -> Option<&CaptureEnd> {
    events.iter().find_map(|e| match e {
        CaptureEvent::Ended { end, .. } => Some(end),
        _ => None,
    })
}

#[test]
fn captures_a_second_bit_exact_in_each_format() {
    let (kit, _serial) = setup();
    for format in [
        SampleFormat::S16Le,
        SampleFormat::S32Le,
        SampleFormat::FloatLe,
    ] {
        let spec = stereo48k(format);
        let (bytes, events, wall) = capture(alsa_start(), "filemic", spec, 1.0);
        let frames = (bytes.len() / spec.bytes_per_frame()) as u64;
        assert_frames_near(frames, wall, PERIOD as u64, &format!("alsa {format}"));
        assert_exact(kit, format, &bytes);
        assert!(
            !events.iter().any(|e| matches!(e, CaptureEvent::Gap { .. })),
            "{format}: unexpected gap in {events:?}"
        );
        assert_eq!(ended(&events), Some(&CaptureEnd::Stopped), "{format}");
    }
}

#[test]
fn unplug_mid_stream_ends_with_device_gone() {
    let (kit, _serial) = setup();
    let spec = stereo48k(SampleFormat::S16Le);
    let (sink, mut src) = ring(spec, 10.0, usize::MAX);
    let handle = alsa_start()(&request("unplugmic", spec), sink).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    mic(kit, "unplug", "unplugmic");
    let mut gap_or_end = Vec::new();
    let end = loop {
        let left = Duration::from_secs(1).saturating_sub(t.elapsed());
        match src.events.recv_timeout(left) {
            Ok(CaptureEvent::Ended { end, .. }) => break end,
            Ok(other) => gap_or_end.push(other),
            Err(_) => panic!("no Ended within 1 s of the unplug (events: {gap_or_end:?})"),
        }
    };
    let took = t.elapsed();
    match &end {
        CaptureEnd::DeviceGone(detail) => assert!(detail.contains("ENODEV"), "{detail}"),
        other => panic!("expected DeviceGone, got {other:?}"),
    }
    eprintln!("unplug -> Ended({end:?}) in {took:?}");
    stop_within(handle, Duration::from_millis(500));
    let mut bytes = Vec::new();
    drain(&mut src, &mut bytes);
    assert_exact(kit, spec.format, &bytes);
    mic(kit, "replug", "unplugmic");
}

#[test]
fn opening_an_unplugged_device_is_no_such_device() {
    let (kit, _serial) = setup();
    let spec = stereo48k(SampleFormat::S16Le);
    // Gone from the configuration (the USB device and its card are gone): ENOENT.
    mic(kit, "unplug", "gonemic");
    let (sink, _src) = ring(spec, 1.0, usize::MAX);
    match alsa_start()(&request("gonemic", spec), sink) {
        Err(OpenError::NoSuchDevice { detail, .. }) => {
            assert!(detail.contains("ENOENT"), "{detail}")
        }
        Err(e) => panic!("expected NoSuchDevice, got {e}"),
        Ok(_) => panic!("opened an unplugged device"),
    }
    mic(kit, "replug", "gonemic");
    // Configured but absent (the driver says ENODEV).
    std::fs::remove_file(kit.dir.join("gonemic.present")).unwrap();
    let (sink, _src) = ring(spec, 1.0, usize::MAX);
    match alsa_start()(&request("gonemic", spec), sink) {
        Err(OpenError::NoSuchDevice { detail, .. }) => {
            assert!(detail.contains("ENODEV"), "{detail}")
        }
        Err(e) => panic!("expected NoSuchDevice, got {e}"),
        Ok(_) => panic!("opened an absent device"),
    }
    mic(kit, "replug", "gonemic");
    // And back.
    let (sink, _src) = ring(spec, 1.0, usize::MAX);
    let h = alsa_start()(&request("gonemic", spec), sink).expect("opens after replug");
    stop_within(h, Duration::from_millis(500));
    // A name nobody configured.
    let (sink, _src) = ring(spec, 1.0, usize::MAX);
    assert!(matches!(
        alsa_start()(&request("no_such_mic", spec), sink),
        Err(OpenError::NoSuchDevice { .. })
    ));
}

#[test]
fn a_rate_or_format_the_device_lacks_is_unsupported_and_says_what_it_offers() {
    let (_kit, _serial) = setup();
    let wrong_rate = StreamSpec {
        rate: 44_100,
        ..stereo48k(SampleFormat::S16Le)
    };
    let (sink, _src) = ring(wrong_rate, 1.0, usize::MAX);
    match alsa_start()(&request("filemic", wrong_rate), sink) {
        Err(OpenError::Unsupported { wanted, detail, .. }) => {
            assert_eq!(wanted, "S16_LE 44100 Hz 2 ch");
            assert!(detail.contains("rate 44100 Hz"), "{detail}");
            assert!(
                detail.contains("S16_LE,S32_LE,FLOAT_LE at 48000 Hz, 2 ch"),
                "{detail}"
            );
        }
        Err(e) => panic!("expected Unsupported, got {e}"),
        Ok(_) => panic!("opened at 44100 Hz"),
    }
    let s24 = stereo48k(SampleFormat::S24Le);
    let (sink, _src) = ring(s24, 1.0, usize::MAX);
    match alsa_start()(&request("filemic", s24), sink) {
        Err(e @ OpenError::Unsupported { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("format S24_LE"), "{msg}");
            eprintln!("{msg}");
        }
        Err(e) => panic!("expected Unsupported, got {e}"),
        Ok(_) => panic!("opened S24_LE"),
    }
    let mono = StreamSpec {
        channels: 1,
        ..stereo48k(SampleFormat::S16Le)
    };
    let (sink, _src) = ring(mono, 1.0, usize::MAX);
    assert!(matches!(
        alsa_start()(&request("filemic", mono), sink),
        Err(OpenError::Unsupported { detail, .. }) if detail.contains("1 channels")
    ));
}

#[test]
fn a_stall_reads_idle_and_stop_still_returns() {
    let (kit, _serial) = setup();
    let spec = stereo48k(SampleFormat::S16Le);
    let (sink, mut src) = ring(spec, 10.0, usize::MAX);
    let stats = src.stats.clone();
    let handle = alsa_start()(&request("stallmic", spec), sink).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    mic(kit, "stall", "stallmic");
    std::thread::sleep(Duration::from_millis(100)); // whatever was in flight arrives
    let frozen = stats
        .frames_pushed
        .load(std::sync::atomic::Ordering::Acquire);
    std::thread::sleep(Duration::from_millis(400));
    let still = stats
        .frames_pushed
        .load(std::sync::atomic::Ordering::Acquire);
    assert!(
        still - frozen <= PERIOD as u64,
        "frames kept coming during a stall: {frozen} -> {still}"
    );
    assert!(!handle.is_finished(), "a stall is not the end");
    mic(kit, "unstall", "stallmic");
    std::thread::sleep(Duration::from_millis(300));
    let resumed = stats
        .frames_pushed
        .load(std::sync::atomic::Ordering::Acquire);
    assert!(
        resumed - still >= 5 * PERIOD as u64,
        "frames did not resume: {still} -> {resumed}"
    );
    // Stalled again, stop must still return within a read's bounded wait.
    mic(kit, "stall", "stallmic");
    std::thread::sleep(Duration::from_millis(200));
    let took = stop_within(handle, Duration::from_millis(500));
    eprintln!("stop during a stall took {took:?}");
    mic(kit, "unstall", "stallmic");
    let events: Vec<CaptureEvent> = src.events.try_iter().collect();
    assert_eq!(ended(&events), Some(&CaptureEnd::Stopped));
    let mut bytes = Vec::new();
    drain(&mut src, &mut bytes);
    // The stall froze the device clock: the data continues where it stopped.
    assert_exact(kit, spec.format, &bytes);
}

#[test]
fn an_overrun_is_recovered_in_place_and_its_loss_estimated() {
    let (_kit, _serial) = setup();
    let spec = stereo48k(SampleFormat::S16Le);
    let mut source = AlsaSource::open(&request("overmic", spec)).unwrap();
    let period = source.period_frames() as u64;
    assert!(source.buffer_frames() as u64 >= 2 * period);
    // As the capture thread reads: twice what a wake-up brings.
    let mut buf = vec![0u8; source.wake_frames() as usize * 2 * spec.bytes_per_frame()];
    let mut frames = 0u64;
    while frames < 10 * period {
        match source.read(&mut buf) {
            Read::Frames(n) => frames += n as u64,
            Read::Idle => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Stop reading for longer than the device buffer holds.
    let last_read = Instant::now();
    std::thread::sleep(Duration::from_millis(800));
    let lost = loop {
        match source.read(&mut buf) {
            Read::Overrun { lost_frames } => break lost_frames,
            // Frames still in the buffer before the device noticed: keep reading.
            Read::Frames(_) | Read::Idle => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            last_read.elapsed() < Duration::from_secs(2),
            "no overrun reported"
        );
    };
    let upper = (last_read.elapsed().as_secs_f64() * RATE as f64) as u64 + 2 * period;
    let lower = (0.8 * RATE as f64) as u64 - 2 * period;
    eprintln!(
        "overrun: lost_frames {lost} (expected {lower}..={upper}), buffer {}",
        source.buffer_frames()
    );
    assert!(
        (lower..=upper).contains(&lost),
        "lost {lost} not in {lower}..={upper}"
    );
    // And it runs on.
    let t = Instant::now();
    let mut after = 0u64;
    while t.elapsed() < Duration::from_millis(300) {
        match source.read(&mut buf) {
            Read::Frames(n) => after += n as u64,
            Read::Idle => {}
            other => panic!("unexpected after recovery: {other:?}"),
        }
    }
    assert!(after >= 10 * period, "only {after} frames after recovery");
}

/// Voluntary context switches (blocking waits) so far of this process's thread called
/// `name` (cut to the kernel's 15 characters).
fn thread_wakeups(name: &str) -> Option<u64> {
    let name = &name[..name.len().min(15)];
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find_map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(str::trim)
            };
            (field("Name:")? == name).then_some(())?;
            field("voluntary_ctxt_switches:")?.parse().ok()
        })
}

#[test]
fn at_a_20_ms_period_the_capture_thread_wakes_once_per_two_periods() {
    let (kit, _serial) = setup();
    let spec = stereo48k(SampleFormat::S16Le);
    let req = request("wakemic", spec);
    let source = AlsaSource::open(&req).unwrap();
    let (period, buffer, wake) = (
        source.period_frames(),
        source.buffer_frames(),
        source.wake_frames(),
    );
    drop(source);
    eprintln!("period {period}, buffer {buffer}, wake-up every {wake} frames");
    assert!(buffer >= 4 * period, "fakemic grants a 4-period buffer");
    assert_eq!(
        wake,
        2 * period,
        "two periods a wake-up, two left for a late one"
    );

    let (sink, mut src) = ring(spec, 10.0, usize::MAX);
    let handle = alsa_start()(&req, sink).unwrap();
    std::thread::sleep(Duration::from_millis(500)); // start-up's waits are not counted
    let before = thread_wakeups(THREAD_NAME).expect("the capture thread runs");
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let wakes = thread_wakeups(THREAD_NAME).unwrap() - before;
    let window = t0.elapsed();
    let wall = stop_within(handle, Duration::from_secs(1)) + window;
    // One wait per wake-up; once a period would be twice this. A late wake (a loaded box)
    // only finds more frames, it adds no wait.
    let expected = window.as_secs_f64() * RATE as f64 / wake as f64;
    eprintln!("capture thread: {wakes} waits in {window:?} (one per wake-up: {expected:.1})");
    assert!(
        (wakes as f64) < expected * 1.5,
        "{wakes} waits in {window:?}: more than one per {wake} frames"
    );
    let mut bytes = Vec::new();
    drain(&mut src, &mut bytes);
    assert_exact(kit, spec.format, &bytes);
    let frames = (bytes.len() / spec.bytes_per_frame()) as u64;
    assert!(
        frames as f64 >= (window.as_secs_f64() + 0.5) * RATE as f64 - 2.0 * wake as f64,
        "{frames} frames in {wall:?}"
    );
}

#[test]
fn devices_lists_fakemic_with_its_caps() {
    let (_kit, _serial) = setup();
    let all = edgerec::capture::devices::list();
    let alsa = all
        .iter()
        .find(|d| d.backend == "alsa" && d.name == "listmic")
        .unwrap_or_else(|| panic!("listmic not in {all:#?}"));
    assert_eq!(alsa.identity, "listmic");
    assert!(
        alsa.description.contains("fakemic listmic"),
        "{}",
        alsa.description
    );
    let caps = alsa.caps.as_ref().expect("fakemic is probed");
    assert_eq!(caps.to_string(), "S16_LE,S32_LE,FLOAT_LE at 48000 Hz, 2 ch");
    let probed = edgerec::capture::alsa::probe("listmic").unwrap();
    assert_eq!(&probed, caps);
    assert!(
        all.iter()
            .any(|d| d.backend == "cpal" && d.name == "listmic"),
        "cpal lists it too"
    );
    assert!(!all.iter().any(|d| d.name == "null"));
}

#[test]
fn cpal_captures_a_second_bit_exact() {
    let (kit, _serial) = setup();
    for format in [SampleFormat::S16Le, SampleFormat::FloatLe] {
        let spec = stereo48k(format);
        let (bytes, events, wall) = capture(cpal_start(), "cpalmic", spec, 1.0);
        let frames = (bytes.len() / spec.bytes_per_frame()) as u64;
        // cpal runs two periods of buffer; allow one more period of start-up.
        assert_frames_near(frames, wall, 2 * PERIOD as u64, &format!("cpal {format}"));
        assert_exact(kit, format, &bytes);
        assert_eq!(ended(&events), Some(&CaptureEnd::Stopped), "{format}");
    }
}

#[test]
fn cpal_unplug_ends_with_device_gone_and_open_errors_are_typed() {
    let (kit, _serial) = setup();
    let spec = stereo48k(SampleFormat::S16Le);
    let (sink, src) = ring(spec, 10.0, usize::MAX);
    let handle = cpal_start()(&request("cpalgone", spec), sink).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    mic(kit, "unplug", "cpalgone");
    let end = loop {
        match src
            .events
            .recv_timeout(Duration::from_secs(1).saturating_sub(t.elapsed()))
        {
            Ok(CaptureEvent::Ended { end, .. }) => break end,
            Ok(_) => {}
            Err(_) => panic!("no Ended within 1 s of the unplug"),
        }
    };
    eprintln!("cpal unplug -> Ended({end:?}) in {:?}", t.elapsed());
    assert!(
        matches!(&end, CaptureEnd::DeviceGone(d) if d.contains("DeviceNotAvailable")),
        "{end:?}"
    );
    stop_within(handle, Duration::from_millis(500));
    let (sink, _src) = ring(spec, 1.0, usize::MAX);
    assert!(
        matches!(
            cpal_start()(&request("cpalgone", spec), sink),
            Err(OpenError::NoSuchDevice { .. })
        ),
        "opening an unplugged device via cpal"
    );
    mic(kit, "replug", "cpalgone");

    let wrong_rate = StreamSpec {
        rate: 44_100,
        ..spec
    };
    let (sink, _src) = ring(wrong_rate, 1.0, usize::MAX);
    match cpal_start()(&request("cpalgone", wrong_rate), sink) {
        Err(OpenError::Unsupported { detail, .. }) => eprintln!("cpal 44100: {detail}"),
        Err(e) => panic!("expected Unsupported, got {e}"),
        Ok(_) => panic!("cpal opened 44100 Hz"),
    }
    let packed = stereo48k(SampleFormat::S24Le3);
    let (sink, _src) = ring(packed, 1.0, usize::MAX);
    assert!(matches!(
        cpal_start()(&request("cpalgone", packed), sink),
        Err(OpenError::Unsupported { .. })
    ));
}

#[test]
fn cpal_stop_returns_during_a_stall() {
    let (kit, _serial) = setup();
    let spec = stereo48k(SampleFormat::S16Le);
    let (sink, src) = ring(spec, 10.0, usize::MAX);
    let handle = cpal_start()(&request("cpalstall", spec), sink).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    mic(kit, "stall", "cpalstall");
    std::thread::sleep(Duration::from_millis(400));
    assert!(!handle.is_finished());
    let took = stop_within(handle, Duration::from_millis(1000));
    eprintln!("cpal stop during a stall took {took:?}");
    mic(kit, "unstall", "cpalstall");
    let events: Vec<CaptureEvent> = src.events.try_iter().collect();
    assert_eq!(ended(&events), Some(&CaptureEnd::Stopped));
}
