//! Capture devices this box can see, with stable identities.
//!
//! A device's `name` is what to pass as `--device` today; its `identity` is what a
//! supervisor matches on after a replug (card indexes and even card ids can change when
//! devices are plugged in another order, a USB serial or port path does not).

use std::fmt;
use std::path::Path;

use ::alsa::Direction;
use ::alsa::device_name::HintIter;
use cpal::traits::{DeviceTrait, HostTrait};

use crate::core::format::SampleFormat;

/// What a device offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCaps {
    /// Our sample formats the device accepts (others it may offer are left out).
    pub formats: Vec<SampleFormat>,
    pub rate_min: u32,
    pub rate_max: u32,
    /// The standard rates (8000..192000) it accepts: a device may offer a set, not a range.
    pub rates: Vec<u32>,
    pub channels_min: u32,
    pub channels_max: u32,
}

impl fmt::Display for DeviceCaps {
    /// `S16_LE,S32_LE,FLOAT_LE at 48000 Hz, 2 ch`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let formats: Vec<&str> = self.formats.iter().map(|f| f.name()).collect();
        let formats = if formats.is_empty() {
            "none of our formats".to_string()
        } else {
            formats.join(",")
        };
        write!(f, "{formats} at ")?;
        if self.rate_min == self.rate_max {
            write!(f, "{} Hz", self.rate_min)?;
        } else if !self.rates.is_empty() && self.rates.len() <= 4 {
            let rates: Vec<String> = self.rates.iter().map(u32::to_string).collect();
            write!(f, "{} Hz", rates.join("/"))?;
        } else {
            write!(f, "{}-{} Hz", self.rate_min, self.rate_max)?;
        }
        if self.channels_min == self.channels_max {
            write!(f, ", {} ch", self.channels_min)
        } else {
            write!(f, ", {}-{} ch", self.channels_min, self.channels_max)
        }
    }
}

/// One capture device as `edgerec devices` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureDevice {
    /// The backend that opens it (`alsa`, `cpal`).
    pub backend: &'static str,
    /// What to pass as `--device` to that backend.
    pub name: String,
    /// Stable across replugs and reboots: `usb:<by-id name>` (carries the USB serial),
    /// `path:<by-path name>` (the port), `CARD=<card id>`, or the PCM name of a plugin
    /// device. Never a card index.
    pub identity: String,
    pub description: String,
    /// What it offers, when probing it was cheap and it was free.
    pub caps: Option<DeviceCaps>,
}

/// Every capture device of every backend.
pub fn list() -> Vec<CaptureDevice> {
    let mut all = list_alsa();
    all.extend(list_cpal());
    all
}

/// ALSA: the capture PCMs of each sound card (`plughw:CARD=<id>,DEV=<n>`), then capture-capable
/// PCMs from the configuration's hints (user-defined devices such as the test `fakemic`).
pub fn list_alsa() -> Vec<CaptureDevice> {
    let mut out = Vec::new();
    for card in ::alsa::card::Iter::new().filter_map(Result::ok) {
        let index = card.get_index();
        let Some(card_id) = card_id(index) else {
            continue;
        };
        let identity = card_identity(index, &card_id);
        let card_name = card.get_name().unwrap_or_else(|_| card_id.clone());
        let Ok(ctl) = ::alsa::Ctl::new(&format!("hw:{index}"), false) else {
            continue;
        };
        for dev in ::alsa::ctl::DeviceIter::new(&ctl) {
            let Ok(info) = ctl.pcm_info(dev as u32, 0, Direction::Capture) else {
                continue;
            };
            let pcm_name = info.get_name().unwrap_or("").to_string();
            let name = format!("plughw:CARD={card_id},DEV={dev}");
            let caps = super::alsa::probe(&name).ok();
            out.push(CaptureDevice {
                backend: "alsa",
                identity: if dev == 0 {
                    identity.clone()
                } else {
                    format!("{identity},DEV={dev}")
                },
                description: format!("{card_name}, {pcm_name}"),
                name,
                caps,
            });
        }
    }
    for (name, desc) in capture_hints() {
        let caps = if worth_probing(&name) {
            super::alsa::probe(&name).ok()
        } else {
            None
        };
        out.push(CaptureDevice {
            backend: "alsa",
            identity: name.clone(),
            description: desc,
            name,
            caps,
        });
    }
    out
}

/// cpal (ALSA host): its input devices, by the PCM id `cpal::start` matches.
pub fn list_cpal() -> Vec<CaptureDevice> {
    let host = cpal::default_host();
    let Ok(devices) = host.input_devices() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in devices {
        let Ok(id) = d.id() else { continue };
        let name = id.id().to_string();
        if skipped(&name) {
            continue;
        }
        let description = d
            .description()
            .map(|desc| desc.name().to_string())
            .unwrap_or_else(|_| name.clone());
        let caps = if worth_probing(&name) {
            cpal_caps(&d)
        } else {
            None
        };
        out.push(CaptureDevice {
            backend: "cpal",
            identity: name.clone(),
            name,
            description,
            caps,
        });
    }
    out
}

fn cpal_caps(d: &cpal::Device) -> Option<DeviceCaps> {
    let ranges: Vec<_> = d.supported_input_configs().ok()?.collect();
    if ranges.is_empty() {
        return None;
    }
    let mut caps = DeviceCaps {
        formats: Vec::new(),
        rate_min: u32::MAX,
        rate_max: 0,
        rates: Vec::new(),
        channels_min: u32::MAX,
        channels_max: 0,
    };
    for r in &ranges {
        if let Some(f) = super::cpal::our_format(r.sample_format())
            && !caps.formats.contains(&f)
        {
            caps.formats.push(f);
        }
        caps.rate_min = caps.rate_min.min(r.min_sample_rate());
        caps.rate_max = caps.rate_max.max(r.max_sample_rate());
        caps.channels_min = caps.channels_min.min(r.channels() as u32);
        caps.channels_max = caps.channels_max.max(r.channels() as u32);
    }
    caps.formats
        .sort_by_key(|f| SampleFormat::ALL.iter().position(|g| g == f));
    caps.rates = [
        8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000,
    ]
    .into_iter()
    .filter(|r| {
        ranges
            .iter()
            .any(|c| (c.min_sample_rate()..=c.max_sample_rate()).contains(r))
    })
    .collect();
    Some(caps)
}

/// Hinted PCMs that can capture (IOID absent or Input), minus the hardware ones listed per
/// card and the plugins that are never a capture source.
fn capture_hints() -> Vec<(String, String)> {
    let Ok(hints) = HintIter::new_str(None, "pcm") else {
        return Vec::new();
    };
    hints
        .filter(|h| h.direction.is_none_or(|d| d == Direction::Capture))
        .filter_map(|h| {
            let name = h.name?;
            if name.starts_with("hw:") || name.starts_with("plughw:") || skipped(&name) {
                return None;
            }
            let desc = h
                .desc
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            Some((name, desc))
        })
        .collect()
}

/// Plugin PCMs that are not capture sources worth listing (rate converters, mixers, null).
fn skipped(name: &str) -> bool {
    const SKIP: [&str; 10] = [
        "null",
        "lavrate",
        "samplerate",
        "speexrate",
        "speex",
        "upmix",
        "vdownmix",
        "oss",
        "jack",
        "dmix",
    ];
    let base = name.split(':').next().unwrap_or(name);
    SKIP.contains(&base)
}

/// Probing opens the device: skip the ones that route through a sound server or a shared
/// plugin (slow, or they would report the server's formats, not the device's).
fn worth_probing(name: &str) -> bool {
    const NO_PROBE: [&str; 8] = [
        "default",
        "sysdefault",
        "pulse",
        "pipewire",
        "dsnoop",
        "jack",
        "front",
        "usbstream",
    ];
    let base = name.split(':').next().unwrap_or(name);
    !NO_PROBE.contains(&base)
}

/// The card's id string (`USBMic`), from `/proc/asound/cardN/id`.
fn card_id(index: i32) -> Option<String> {
    let id = std::fs::read_to_string(format!("/proc/asound/card{index}/id")).ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// The most stable identity the system offers for a card: its `/dev/snd/by-id` name (USB
/// vendor, product and serial), else its `/dev/snd/by-path` name (the port), else its id.
/// Never the card index: a replug or another plugging order renumbers cards.
fn card_identity(index: i32, card_id: &str) -> String {
    card_identity_under(Path::new("/"), index, card_id)
}

/// [`card_identity`] with `/dev` and `/sys` under `root` (a test's own tree).
fn card_identity_under(root: &Path, index: i32, card_id: &str) -> String {
    let control = format!("controlC{index}");
    for (dir, prefix) in [("dev/snd/by-id", "usb:"), ("dev/snd/by-path", "path:")] {
        if let Some(link) = link_to(&root.join(dir), &control) {
            return format!("{prefix}{link}");
        }
    }
    if let Some(serial) = usb_serial(root, index) {
        return format!("usb-serial:{serial}");
    }
    format!("CARD={card_id}")
}

/// The name of the symlink in `dir` that points at `target` (a file in `/dev/snd`).
fn link_to(dir: &Path, target: &str) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            let dest = std::fs::read_link(e.path()).ok()?;
            (dest.file_name()? == target).then(|| e.file_name().to_string_lossy().into_owned())
        })
}

/// The USB serial of the device behind card `index`, when it has one.
fn usb_serial(root: &Path, index: i32) -> Option<String> {
    let link = root.join(format!("sys/class/sound/card{index}/device"));
    let dev = std::fs::canonicalize(link).ok()?;
    // The card's device is a USB interface; the serial lives on its parent, the USB device.
    for dir in [dev.as_path(), dev.parent()?] {
        if let Ok(s) = std::fs::read_to_string(dir.join("serial")) {
            let s = s.trim();
            if !s.is_empty() {
                return Some(s.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_read_like_a_device_sheet() {
        let caps = DeviceCaps {
            formats: vec![
                SampleFormat::S16Le,
                SampleFormat::S32Le,
                SampleFormat::FloatLe,
            ],
            rate_min: 48000,
            rate_max: 48000,
            rates: vec![48000],
            channels_min: 2,
            channels_max: 2,
        };
        assert_eq!(caps.to_string(), "S16_LE,S32_LE,FLOAT_LE at 48000 Hz, 2 ch");
        let wide = DeviceCaps {
            rate_min: 8000,
            rate_max: 192000,
            channels_min: 1,
            ..caps
        };
        assert_eq!(
            wide.to_string(),
            "S16_LE,S32_LE,FLOAT_LE at 48000 Hz, 1-2 ch"
        );
    }

    #[test]
    fn plugin_filters() {
        assert!(skipped("null") && skipped("dmix:CARD=x,DEV=0"));
        assert!(!skipped("usbmic") && !skipped("dsnoop:CARD=x,DEV=0"));
        assert!(!worth_probing("default") && !worth_probing("pulse"));
        assert!(worth_probing("usbmic") && worth_probing("plughw:CARD=USBMic,DEV=0"));
    }

    /// Card `index` as udev lays it out under `root`: by-id and by-path links (when given)
    /// and the sysfs device with its USB serial on the parent.
    fn plug_card(root: &Path, index: i32, by_id: Option<&str>, by_path: Option<&str>) {
        use std::os::unix::fs::symlink;
        let snd = root.join("dev/snd");
        for (dir, name) in [("by-id", by_id), ("by-path", by_path)] {
            let dir = snd.join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            for e in std::fs::read_dir(&dir).unwrap() {
                std::fs::remove_file(e.unwrap().path()).unwrap(); // udev drops the old links
            }
            if let Some(name) = name {
                symlink(format!("../controlC{index}"), dir.join(name)).unwrap();
            }
        }
        let usb = root.join("sys/devices/pci0000:00/usb1/1-1");
        let iface = usb.join("1-1:1.0");
        std::fs::create_dir_all(&iface).unwrap();
        std::fs::write(usb.join("serial"), "SN-0042\n").unwrap();
        let class = root.join(format!("sys/class/sound/card{index}"));
        std::fs::create_dir_all(&class).unwrap();
        let _ = std::fs::remove_file(class.join("device"));
        symlink(&iface, class.join("device")).unwrap();
    }

    #[test]
    fn a_renumbered_card_keeps_its_identity() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let by_id = "usb-Acme_Field_Mic_SN-0042-00";
        let by_path = "pci-0000:00:14.0-usb-0:1:1.0";
        // Each layout udev may give, seen as card 1, then as card 3 after a replug.
        let layouts = [
            (Some(by_id), Some(by_path), format!("usb:{by_id}")),
            (None, Some(by_path), format!("path:{by_path}")),
            (None, None, "usb-serial:SN-0042".to_string()),
        ];
        for (id_link, path_link, expected) in layouts {
            plug_card(r, 1, id_link, path_link);
            let first = card_identity_under(r, 1, "Mic");
            std::fs::remove_dir_all(r.join("sys/class/sound/card1")).unwrap();
            plug_card(r, 3, id_link, path_link);
            let renumbered = card_identity_under(r, 3, "Mic");
            assert_eq!(first, expected);
            assert_eq!(renumbered, expected, "card 1 became card 3");
            std::fs::remove_dir_all(r.join("sys/class/sound/card3")).unwrap();
        }
        // Nothing but the card's id string: still not its index.
        assert_eq!(card_identity_under(r, 7, "Mic"), "CARD=Mic");
    }
}
