//! The fakemic ALSA test device (tests/fakemic/), built once per test binary into a temp
//! directory. Devices are real ALSA PCMs: real alsa-lib, real snd_pcm_* calls.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Fakemic {
    pub dir: PathBuf,
    /// Value for ALSA_CONFIG_PATH.
    pub config_path: String,
    _keep: tempfile::TempDir,
}

/// One device to create: `(name, extra setup.sh options)`.
pub type DeviceSpec<'a> = (&'a str, &'a [&'a str]);

pub fn setup(devices: &[DeviceSpec]) -> Fakemic {
    let keep = tempfile::Builder::new()
        .prefix("fakemic-")
        .tempdir()
        .unwrap();
    let dir = keep.path().to_path_buf();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakemic/setup.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(&dir);
    for (name, opts) in devices {
        cmd.arg(name).args(*opts);
    }
    let out = cmd.output().expect("run tests/fakemic/setup.sh");
    assert!(
        out.status.success(),
        "fakemic setup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().expect("setup prints the export line");
    let config_path = line
        .trim()
        .strip_prefix("export ALSA_CONFIG_PATH=")
        .expect("export line")
        .to_string();
    Fakemic {
        dir,
        config_path,
        _keep: keep,
    }
}

impl Fakemic {
    pub fn mic(&self, op: &str, name: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakemic/mic.sh");
        let status = Command::new("bash")
            .arg(script)
            .args([op, name])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "mic.sh {op} {name}");
    }
}

/// A real peer holding device `name` open (`arecord` to /dev/null for `seconds`), as
/// another recorder would hold a hw: PCM. Killed when dropped.
pub struct Holder(std::process::Child);

impl Fakemic {
    pub fn hold(&self, name: &str, seconds: u32) -> Holder {
        let child = Command::new("arecord")
            .env("ALSA_CONFIG_PATH", &self.config_path)
            .args(["-q", "-D", name, "-f", "S16_LE", "-r", "48000", "-c", "2"])
            .args(["-d", &seconds.to_string(), "-t", "raw", "/dev/null"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("arecord (alsa-utils) is installed by scripts/deps.sh");
        // arecord opens the PCM within a few ms; leave it ample time on a loaded box.
        std::thread::sleep(std::time::Duration::from_millis(600));
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A deterministic S16 pattern (not periodic at any short lag) to feed fakemic.
pub fn pattern(samples: usize) -> Vec<i16> {
    let mut x: u32 = 0x1234_5678;
    (0..samples)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 16) as i16
        })
        .collect()
}

pub fn write_raw(path: &Path, samples: &[i16]) {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}
