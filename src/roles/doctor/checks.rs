//! The probes behind `edgerec doctor`. Each one looks, never changes anything the roles
//! own: the device is opened only when no job holds it, the spool gets one small file
//! that is removed at once, the journal is opened read-only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Check, DoctorInput};
use crate::capture::{CaptureRequest, OpenError};
use crate::config::{BoxOverrides, BoxSettings, Overrides, RawConfig, RecordSettings};
use crate::controller::client::{CallError, Client, ClientConfig, SKEW_WARN_ABOVE};
use crate::core::disk_budget::DiskBudget;
use crate::journal::{Journal, JournalError};
use crate::roles::finalize::journal_path;
use crate::roles::status::{self, Liveness};
use crate::segment::writer::now_ms;

/// The config file, resolved as the roles resolve it.
pub(super) struct Loaded {
    pub settings: BoxSettings,
    /// The `[capture]` defaults: the device and format a local job would use.
    pub capture: Option<RecordSettings>,
}

/// The config file: read, resolved for the box and for a local job. A broken file is a
/// failure, and the other checks then run on the built-in defaults.
pub(super) fn config(input: &DoctorInput) -> (Check, Loaded) {
    let resolved = edgerec_config(input);
    match resolved {
        Ok((loaded, detail)) => (Check::pass("config", detail), loaded),
        Err(e) => {
            let defaults = Loaded {
                settings: default_settings(input),
                capture: None,
            };
            let check = Check::fail(
                "config",
                e,
                "fix the setting named (every role refuses this file), or remove the file \
                 to run on the built-in defaults",
            );
            (check, defaults)
        }
    }
}

fn edgerec_config(input: &DoctorInput) -> Result<(Loaded, String), String> {
    let (raw, source) =
        crate::config::load_config(input.config.as_deref()).map_err(|e| e.to_string())?;
    let settings = BoxSettings::resolve(&raw, source.clone(), input.overrides.clone())
        .map_err(|e| e.to_string())?;
    let capture = RecordSettings::resolve(raw, Overrides::default()).map_err(|e| e.to_string())?;
    let detail = match (&source, settings.controller.is_some()) {
        (Some(p), true) => format!("{} is valid", p.display()),
        (Some(p), false) => format!("{} is valid; no controller: local jobs only", p.display()),
        (None, _) => format!(
            "no file at {}: built-in defaults",
            crate::config::DEFAULT_CONFIG
        ),
    };
    let loaded = Loaded {
        settings,
        capture: Some(capture),
    };
    Ok((loaded, detail))
}

fn default_settings(input: &DoctorInput) -> BoxSettings {
    BoxSettings::resolve(&RawConfig::default(), None, input.overrides.clone())
        .or_else(|_| BoxSettings::resolve(&RawConfig::default(), None, BoxOverrides::default()))
        .expect("the built-in defaults resolve") // an invariant, not input
}

/// The configured capture device opens with the configured format (briefly), unless a
/// job holds it now.
pub(super) fn device(capture: Option<&RecordSettings>, state_dir: &Path) -> Check {
    let Some(c) = capture else {
        return Check::skip("device", "not checked: the config does not resolve");
    };
    if c.backend != "alsa" {
        return Check::skip("device", format!("backend {}: nothing to open", c.backend));
    }
    let what = format!("{} {}", c.device, c.spec);
    if let Some(job) = job_holding(state_dir, &c.device) {
        return Check::pass("device", format!("{what}: held by job {job}, not opened"));
    }
    let others = crate::capture::devices::list_alsa().len();
    match crate::capture::alsa::AlsaSource::open(&CaptureRequest::new(&c.device, c.spec)) {
        Ok(source) => {
            drop(source);
            Check::pass(
                "device",
                format!("{what} opens ({others} capture devices found)"),
            )
        }
        Err(e @ OpenError::NoSuchDevice { .. }) => Check::fail(
            "device",
            e.to_string(),
            "plug the interface in or fix [capture] device; `edgerec devices` lists what is there",
        ),
        Err(e @ OpenError::Busy { .. }) => Check::warn(
            "device",
            e.to_string(),
            "another program holds it: `fuser -v /dev/snd/*` shows which",
        ),
        Err(e @ OpenError::Unsupported { .. }) => Check::fail(
            "device",
            e.to_string(),
            "set [capture] format, rate and channels to what the device offers",
        ),
        Err(e) => Check::fail("device", e.to_string(), "check dmesg and the cable"),
    }
}

/// The local id of a job that is using `device` now, if any.
fn job_holding(state_dir: &Path, device: &str) -> Option<String> {
    let journal = Journal::open_read_only(&journal_path(state_dir)).ok()?;
    let jobs = journal.non_terminal_jobs().ok()?;
    jobs.into_iter().find(|j| j.device == device).map(|j| j.id)
}

/// The spool exists, takes a write, and has room against its marks.
pub(super) fn spool(settings: &BoxSettings) -> Check {
    let dir = &settings.state_dir;
    let space = crate::segment::disk::disk_space(dir);
    if let Err(e) = probe_write(dir) {
        if crate::segment::disk::is_disk_full(&e) {
            return Check::fail(
                "spool",
                format!("{} is full: {e}", dir.display()),
                "recording is paused: free space (delivered recordings go first)",
            );
        }
        return Check::fail(
            "spool",
            format!("{} is not writable: {e}", dir.display()),
            "create it owned by the edgerec user (the package's tmpfiles.d does), or fix \
             [state] dir",
        );
    }
    let space = match space {
        Ok(s) => s,
        Err(e) => {
            return Check::warn(
                "spool",
                format!("free space unknown: {e}"),
                "check the mount",
            );
        }
    };
    let budget = match DiskBudget::resolve(space.total_bytes, settings.disk) {
        Ok(b) => b,
        Err(e) => return Check::fail("spool", e.to_string(), "fix the [disk] marks"),
    };
    let detail = format!(
        "{}: {} free of {} (pause below {}, reclaim below {})",
        dir.display(),
        bytesize::ByteSize(space.free_bytes),
        bytesize::ByteSize(space.total_bytes),
        bytesize::ByteSize(budget.reserve_below()),
        bytesize::ByteSize(budget.reclaim_below())
    );
    if space.free_bytes < budget.reserve_below() {
        Check::fail(
            "spool",
            detail,
            "recording is paused: free space (delivered recordings go first)",
        )
    } else if space.free_bytes < budget.reclaim_below() {
        Check::warn(
            "spool",
            detail,
            "delivered recordings are being reclaimed; check the outbox is delivering",
        )
    } else {
        Check::pass("spool", detail)
    }
}

fn probe_write(dir: &Path) -> std::io::Result<()> {
    let probe: PathBuf = dir.join(format!(".doctor-{}", std::process::id()));
    std::fs::write(&probe, b"edgerec doctor")?;
    std::fs::remove_file(&probe)
}

/// The journal passes `quick_check`; the roles beat; the outbox is not backed up.
pub(super) fn journal_and_roles(state_dir: &Path) -> Vec<Check> {
    let path = journal_path(state_dir);
    let journal = match Journal::open_read_only(&path) {
        Err(JournalError::Missing { .. }) => {
            return vec![Check::warn(
                "journal",
                format!("no journal at {}: no role has run here", path.display()),
                "start the service: systemctl start edgerec",
            )];
        }
        Err(e) => return vec![damaged(&path, e)],
        Ok(j) => j,
    };
    if let Err(e) = journal.quick_check(&path) {
        return vec![damaged(&path, e)];
    }
    drop(journal);
    let now = now_ms();
    let s = match status::gather(state_dir, now) {
        Ok(s) => s,
        Err(e) => return vec![Check::fail("journal", e.to_string(), "run edgerec repair")],
    };
    let mut out = vec![Check::pass(
        "journal",
        format!(
            "{}: quick_check ok, schema v{}",
            path.display(),
            s.schema_version
        ),
    )];
    let down: Vec<String> = (s.roles.iter())
        .filter(|r| r.liveness != Liveness::Alive)
        .map(|r| format!("{} {}", r.role, r.liveness.name()))
        .collect();
    out.push(if down.is_empty() {
        Check::pass("roles", "capture and sync alive")
    } else {
        Check::warn(
            "roles",
            down.join(", "),
            "systemctl status edgerec edgerec-capture edgerec-sync; journalctl -u 'edgerec*'",
        )
    });
    out.push(outbox(&s.outbox, now));
    out
}

fn damaged(path: &Path, e: JournalError) -> Check {
    Check::fail(
        "journal",
        format!("{}: {e}", path.display()),
        "stop the roles, then `edgerec repair --rebuild` on the state directory",
    )
}

/// A pending row older than this is a backlog worth a look.
const OUTBOX_BACKLOG_AFTER: Duration = Duration::from_secs(600);

fn outbox(o: &status::OutboxStatus, now: i64) -> Check {
    let age = o
        .oldest_pending_ms
        .map(|t| Duration::from_millis((now - t).max(0) as u64));
    let mut detail = format!("{} pending", o.pending);
    if let Some(age) = age {
        detail.push_str(&format!(", oldest {} s", age.as_secs()));
    }
    if let Some(e) = &o.last_error {
        detail.push_str(&format!("; last error: {e}"));
    }
    match age {
        Some(age) if age > OUTBOX_BACKLOG_AFTER => Check::warn(
            "outbox",
            detail,
            "the controller is not taking deliveries: see the controller check and the sync log",
        ),
        _ => Check::pass("outbox", detail),
    }
}

/// The controller answers with this box's token, over valid TLS; its clock agrees.
pub(super) fn controller_and_clock(settings: &BoxSettings) -> Vec<Check> {
    let Some(c) = &settings.controller else {
        return vec![
            Check::skip("controller", "none configured (local jobs only)"),
            Check::skip("clock", "no controller to compare with"),
        ];
    };
    let mut cfg = ClientConfig::new(c.url.clone(), c.node_id.clone(), c.token_file.clone());
    cfg.allow_insecure = c.allow_insecure;
    cfg.connect_timeout = Duration::from_secs(5);
    cfg.read_timeout = Duration::from_secs(5);
    cfg.call_timeout = Duration::from_secs(8);
    let client = match Client::new(cfg) {
        Ok(client) => client,
        Err(e) => {
            return vec![
                Check::fail(
                    "controller",
                    e.to_string(),
                    "fix [controller] or run edgerec enroll",
                ),
                Check::skip("clock", "no controller reply"),
            ];
        }
    };
    let reached = match client.node_config() {
        Ok(_) => Check::pass("controller", format!("{} answers; token accepted", c.url)),
        Err(e) => call_failed(&c.url, e),
    };
    let clock = match client.clock_skew() {
        None => Check::skip("clock", "the controller's replies carry no Date"),
        Some(skew) if skew.as_millis().unsigned_abs() > SKEW_WARN_ABOVE.as_millis() as u64 => {
            Check::warn(
                "clock",
                format!("differs from the controller's by {skew}"),
                "check NTP (timedatectl timesync-status); timestamps and TLS depend on it",
            )
        }
        Some(skew) => Check::pass("clock", format!("within {skew} of the controller's")),
    };
    vec![reached, clock]
}

fn call_failed(url: &str, e: CallError) -> Check {
    let advice = match &e {
        CallError::Unauthorized(_) => "the token was refused: enroll again (edgerec enroll)",
        CallError::Forbidden(_) | CallError::NotFound(_) => {
            "the node id does not match the token: check [controller] node_id"
        }
        CallError::Tls(_) => {
            "check the CA file and the box's clock (a certificate may look not yet valid)"
        }
        CallError::Unreachable(_) | CallError::Timeout(_) => {
            "check the network, DNS and [controller] url"
        }
        _ => "check the controller's logs",
    };
    Check::fail("controller", format!("{url}: {e}"), advice)
}

/// A capture thread can get SCHED_FIFO (the units grant it with LimitRTPRIO).
pub(super) fn realtime() -> Check {
    let priority = crate::capture::rt::CAPTURE_RT_PRIORITY;
    let granted =
        std::thread::spawn(move || crate::capture::rt::request_realtime_priority(priority))
            .join()
            .unwrap_or(false);
    if granted {
        Check::pass(
            "realtime",
            format!("SCHED_FIFO {priority} granted to a capture thread"),
        )
    } else {
        Check::warn(
            "realtime",
            "SCHED_FIFO refused: capture runs at normal priority, overruns are likelier under load",
            "run under the packaged units (LimitRTPRIO=95), or grant CAP_SYS_NICE",
        )
    }
}

const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];
const RULE_DIRS: [&str; 3] = [
    "/etc/udev/rules.d",
    "/lib/udev/rules.d",
    "/usr/lib/udev/rules.d",
];
const UNITS: [&str; 3] = [
    "edgerec.service",
    "edgerec-capture.service",
    "edgerec-sync.service",
];
const RULES: &str = "90-edgerec.rules";

/// The packaged units and udev rules are where systemd and udev look.
pub(super) fn installed() -> Check {
    let found = |dirs: &[&str], name: &str| dirs.iter().any(|d| Path::new(d).join(name).exists());
    let mut missing: Vec<&str> = UNITS
        .iter()
        .copied()
        .filter(|u| !found(&UNIT_DIRS, u))
        .collect();
    if !found(&RULE_DIRS, RULES) {
        missing.push(RULES);
    }
    if missing.is_empty() {
        Check::pass("installed", "systemd units and udev rules in place")
    } else {
        Check::warn(
            "installed",
            format!("missing: {}", missing.join(", ")),
            "install the package (dpkg -i edgerec_*.deb) or the Yocto layer's image",
        )
    }
}
