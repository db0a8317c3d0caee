//! The `synth` backend: a tone or noise generator paced in real time, with scripted
//! faults, for tests, demos and burn-in. Its device name is a script:
//!
//! ```text
//! sine[:FREQ] | noise   then any of   ,level=DBFS  ,dropout=AT+LEN  ,stall=AT+LEN  ,disconnect=AT
//! e.g.  sine:440,level=-20,dropout=3s+500ms,disconnect=8s   (level: the sine's peak in
//! dBFS, -6.02 by default: half full scale)
//! ```
//! Times are device time since the stream started (`250ms`, `3s`, `1m`).
//! - dropout: no audio for LEN, then the source reports the missing frames (a gap).
//! - stall: no audio for LEN and no report (a wedged device; only a watchdog sees it).
//! - disconnect: the device goes away (like a USB unplug).

use std::time::Duration;

use super::pacer::Pacer;
use super::pull::{self, PullSource, Read};
use super::{CaptureEnd, CaptureHandle, CaptureRequest, FrameSink, OpenError};
use crate::core::format::{SampleFormat, StreamSpec};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Signal {
    Sine { freq: f64 },
    Noise,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    DropOut { at: Duration, len: Duration },
    Stall { at: Duration, len: Duration },
    Disconnect { at: Duration },
}

impl Fault {
    fn at(&self) -> Duration {
        match *self {
            Fault::DropOut { at, .. } | Fault::Stall { at, .. } | Fault::Disconnect { at } => at,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    pub signal: Signal,
    /// The signal's peak, as a fraction of full scale.
    pub amplitude: f64,
    /// Faults in time order.
    pub faults: Vec<Fault>,
}

/// Parses a synth device script (see the module docs).
pub fn parse_script(s: &str) -> Result<Script, String> {
    let mut parts = s.split(',').map(str::trim);
    let head = parts.next().unwrap_or_default();
    let signal = match head.split_once(':') {
        None if head == "sine" || head.is_empty() => Signal::Sine { freq: 440.0 },
        None if head == "noise" => Signal::Noise,
        Some(("sine", f)) => {
            let freq: f64 = f.parse().map_err(|_| format!("bad sine frequency {f:?}"))?;
            if !(freq > 0.0 && freq < 200_000.0) {
                return Err(format!("sine frequency {freq} out of range"));
            }
            Signal::Sine { freq }
        }
        _ => {
            return Err(format!(
                "unknown synth signal {head:?} (expected sine[:FREQ] or noise)"
            ));
        }
    };
    let mut faults = Vec::new();
    let mut amplitude = 0.5;
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("expected KEY=VALUE, got {part:?}"))?;
        let fault = match key {
            "level" => {
                let db: f64 = (value.trim_end_matches("dBFS").parse())
                    .map_err(|_| format!("bad level {value:?} (dBFS, e.g. -20)"))?;
                if !(-120.0..=0.0).contains(&db) {
                    return Err(format!("level {db} dBFS out of range (-120..0)"));
                }
                amplitude = 10f64.powf(db / 20.0);
                continue;
            }
            "dropout" | "stall" => {
                let (at, len) = value
                    .split_once('+')
                    .ok_or_else(|| format!("{key} wants AT+LEN, got {value:?}"))?;
                let (at, len) = (parse_time(at)?, parse_time(len)?);
                if key == "dropout" {
                    Fault::DropOut { at, len }
                } else {
                    Fault::Stall { at, len }
                }
            }
            "disconnect" => Fault::Disconnect {
                at: parse_time(value)?,
            },
            _ => {
                return Err(format!(
                    "unknown synth fault {key:?} (dropout, stall, disconnect)"
                ));
            }
        };
        faults.push(fault);
    }
    faults.sort_by_key(Fault::at);
    Ok(Script {
        signal,
        amplitude,
        faults,
    })
}

fn parse_time(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("bad time {s:?}: {e}"))
}

/// The generator: writes whole periods of native-format samples.
struct Synth {
    spec: StreamSpec,
    signal: Signal,
    amplitude: f64,
    faults: Vec<(u64, Fault)>,
    next_fault: usize,
    pacer: Pacer,
    /// Frames generated so far (the sine's phase).
    generated: u64,
    noise_state: u64,
    max_wait: Duration,
}

impl Synth {
    fn sample(&mut self, channel: u16) -> f64 {
        match self.signal {
            Signal::Sine { freq } => {
                let t = self.generated as f64 / self.spec.rate as f64;
                // Channels get slightly different phases so a channel mix-up is visible.
                self.amplitude * (std::f64::consts::TAU * freq * t + channel as f64 * 0.25).sin()
            }
            Signal::Noise => {
                // xorshift64*: cheap, allocation-free, deterministic.
                self.noise_state ^= self.noise_state >> 12;
                self.noise_state ^= self.noise_state << 25;
                self.noise_state ^= self.noise_state >> 27;
                let r = self.noise_state.wrapping_mul(0x2545_F491_4F6C_DD1D);
                0.25 * ((r >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
            }
        }
    }

    fn fill(&mut self, buf: &mut [u8], frames: usize) {
        let bps = self.spec.format.bytes_per_sample();
        let channels = self.spec.channels;
        let mut at = 0;
        for _ in 0..frames {
            for ch in 0..channels {
                let v = self.sample(ch);
                encode(self.spec.format, v, &mut buf[at..at + bps]);
                at += bps;
            }
            self.generated += 1;
        }
    }
}

/// Writes `v` (nominal -1.0..1.0) as one sample of `format`.
fn encode(format: SampleFormat, v: f64, out: &mut [u8]) {
    let v = v.clamp(-1.0, 1.0);
    match format {
        SampleFormat::S16Le => out.copy_from_slice(&((v * 32767.0) as i16).to_le_bytes()),
        SampleFormat::S24Le3 => out.copy_from_slice(&((v * 8_388_607.0) as i32).to_le_bytes()[..3]),
        SampleFormat::S24Le => out.copy_from_slice(&((v * 8_388_607.0) as i32).to_le_bytes()),
        SampleFormat::S32Le => out.copy_from_slice(&((v * 2_147_483_647.0) as i32).to_le_bytes()),
        SampleFormat::FloatLe => out.copy_from_slice(&(v as f32).to_le_bytes()),
    }
}

impl PullSource for Synth {
    fn read(&mut self, buf: &mut [u8]) -> Read {
        let bpf = self.spec.bytes_per_frame();
        let period = (buf.len() / bpf) as u64;
        let now = self.pacer.released();
        if let Some(&(at, fault)) = self.faults.get(self.next_fault)
            && now >= at
        {
            match fault {
                Fault::Disconnect { .. } => {
                    return Read::End(CaptureEnd::DeviceGone("synth: scripted disconnect".into()));
                }
                Fault::DropOut { len, .. } | Fault::Stall { len, .. } => {
                    let frames = self.spec.frames_in(len);
                    if !self.pacer.wait_for(frames, self.max_wait) {
                        return Read::Idle; // still inside the fault window
                    }
                    self.next_fault += 1;
                    return match fault {
                        Fault::DropOut { .. } => Read::DropOut { frames },
                        _ => Read::Idle, // a stall says nothing
                    };
                }
            }
        }
        // Never run past the next fault: cut the period short at its start.
        let until_fault = self
            .faults
            .get(self.next_fault)
            .map_or(u64::MAX, |&(at, _)| at - now);
        let frames = period.min(until_fault).max(1) as usize;
        if !self.pacer.wait_for(frames as u64, self.max_wait) {
            return Read::Idle;
        }
        self.fill(buf, frames);
        Read::Frames(frames)
    }
}

/// `StartFn` for the synth backend.
pub fn start(req: &CaptureRequest, sink: FrameSink) -> Result<CaptureHandle, OpenError> {
    let script = parse_script(&req.device).map_err(|detail| OpenError::NoSuchDevice {
        device: req.device.clone(),
        detail: format!("bad synth script: {detail}"),
    })?;
    if req.spec.rate == 0 || req.spec.channels == 0 {
        return Err(OpenError::Unsupported {
            device: req.device.clone(),
            wanted: req.spec.to_string(),
            detail: "rate and channels must be positive".into(),
        });
    }
    let faults = script
        .faults
        .iter()
        .map(|f| (req.spec.frames_in(f.at()), *f))
        .collect();
    let synth = Synth {
        spec: req.spec,
        signal: script.signal,
        amplitude: script.amplitude,
        faults,
        next_fault: 0,
        pacer: Pacer::new(req.spec.rate),
        generated: 0,
        noise_state: 0x9E37_79B9_7F4A_7C15,
        max_wait: req.spec.duration_of(req.period_frames as u64 * 2),
    };
    pull::spawn("edgerec-capture-synth", synth, sink, req.period_frames).map_err(|e| {
        OpenError::Failed {
            device: req.device.clone(),
            detail: format!("cannot start capture thread: {e}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_table() {
        let ms = Duration::from_millis;
        let cases: Vec<(&str, Result<Script, ()>)> = vec![
            (
                "sine",
                Ok(Script {
                    signal: Signal::Sine { freq: 440.0 },
                    amplitude: 0.5,
                    faults: vec![],
                }),
            ),
            (
                "sine:1000",
                Ok(Script {
                    signal: Signal::Sine { freq: 1000.0 },
                    amplitude: 0.5,
                    faults: vec![],
                }),
            ),
            (
                "noise",
                Ok(Script {
                    signal: Signal::Noise,
                    amplitude: 0.5,
                    faults: vec![],
                }),
            ),
            (
                "sine,disconnect=8s,dropout=3s+500ms",
                Ok(Script {
                    signal: Signal::Sine { freq: 440.0 },
                    amplitude: 0.5,
                    faults: vec![
                        Fault::DropOut {
                            at: ms(3000),
                            len: ms(500),
                        },
                        Fault::Disconnect { at: ms(8000) },
                    ],
                }),
            ),
            (
                "sine,stall=1s+2s",
                Ok(Script {
                    signal: Signal::Sine { freq: 440.0 },
                    amplitude: 0.5,
                    faults: vec![Fault::Stall {
                        at: ms(1000),
                        len: ms(2000),
                    }],
                }),
            ),
            (
                "sine:997,level=-20",
                Ok(Script {
                    signal: Signal::Sine { freq: 997.0 },
                    amplitude: 0.1,
                    faults: vec![],
                }),
            ),
            ("sine,level=+3", Err(())),
            ("sine,level=loud", Err(())),
            ("square", Err(())),
            ("sine:-3", Err(())),
            ("sine,dropout=3s", Err(())),
            ("sine,explode=1s", Err(())),
            ("sine,dropout=soon+1s", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_script(input).map_err(|_| ()),
                want,
                "script {input:?}"
            );
        }
    }

    #[test]
    fn encodes_every_format_at_full_scale() {
        let mut b2 = [0u8; 2];
        encode(SampleFormat::S16Le, 1.0, &mut b2);
        assert_eq!(i16::from_le_bytes(b2), 32767);
        let mut b3 = [0u8; 3];
        encode(SampleFormat::S24Le3, -1.0, &mut b3);
        assert_eq!(b3, [0x01, 0x00, 0x80]);
        let mut b4 = [0u8; 4];
        encode(SampleFormat::FloatLe, 0.5, &mut b4);
        assert_eq!(f32::from_le_bytes(b4), 0.5);
    }
}
