//! Wake-ups for capture processes. udev runs `edgerec hotplug --action add --devpath P`, which sends one
//! datagram to every capture process's socket under `<state dir>/hotplug/`; a capture
//! waiting to reopen a lost device wakes at once instead of at its next backoff tick.
//! Without udev nothing changes but latency: backoff alone still recovers. The sync role
//! uses the same datagram after a claim and after a stop ([`tell_capture`]), so the
//! capture role starts or stops the job at once instead of at its next journal read.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DIR: &str = "hotplug";

/// The sync role's word that it claimed a job (`devpath`: the job's id).
pub const CLAIM_NEWS: &str = "claimed";
/// The sync role's word that it journaled a stop, cancel or lost lease for a job.
pub const STOP_NEWS: &str = "stop";

/// What udev saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotplugEvent {
    pub action: String,
    pub devpath: String,
}

impl HotplugEvent {
    fn encode(&self) -> String {
        format!("{}\n{}", self.action, self.devpath)
    }
    fn decode(bytes: &[u8]) -> Option<HotplugEvent> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (action, devpath) = text.split_once('\n')?;
        Some(HotplugEvent {
            action: action.to_string(),
            devpath: devpath.to_string(),
        })
    }
}

/// A capture process's hotplug socket; removed when dropped.
pub struct HotplugListener {
    socket: UnixDatagram,
    path: PathBuf,
}

impl HotplugListener {
    /// Binds `<state_dir>/hotplug/<pid>-<n>.sock`: one per listener, so several job
    /// runners (and the capture role's own loop) in one process each get every wake-up.
    pub fn bind(state_dir: &Path) -> std::io::Result<HotplugListener> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = state_dir.join(DIR);
        std::fs::create_dir_all(&dir)?;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path); // a previous process with our pid is gone
        let socket = UnixDatagram::bind(&path)?;
        Ok(HotplugListener { socket, path })
    }

    /// Waits up to `timeout` for a wake-up; `None` when the time ran out.
    pub fn wait(&self, timeout: Duration) -> Option<HotplugEvent> {
        let timeout = timeout.max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = [0u8; 1024];
        let n = self.socket.recv(&mut buf).ok()?;
        HotplugEvent::decode(&buf[..n])
    }
}

impl HotplugListener {
    /// Takes every wake-up already queued, without waiting.
    pub fn drain(&self) -> Vec<HotplugEvent> {
        let mut events = Vec::new();
        if self.socket.set_nonblocking(true).is_err() {
            return events;
        }
        let mut buf = [0u8; 1024];
        while let Ok(n) = self.socket.recv(&mut buf) {
            events.extend(HotplugEvent::decode(&buf[..n]));
        }
        let _ = self.socket.set_nonblocking(false);
        events
    }

    /// The action of a wake-up from [`HotplugListener::waker`] (not a device).
    pub const WAKE: &'static str = "wake";

    /// Something another thread can call to wake this listener (a datagram to itself).
    pub fn waker(&self) -> std::io::Result<impl Fn() + Send + Sync + 'static> {
        let socket = self.socket.try_clone()?;
        let path = self.path.clone();
        let wake = HotplugEvent {
            action: Self::WAKE.into(),
            devpath: String::new(),
        }
        .encode();
        Ok(move || {
            let _ = socket.send_to(wake.as_bytes(), &path);
        })
    }
}

impl Drop for HotplugListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Tells the capture processes under `state_dir` that the journal changed for `job_id`
/// (`news`: [`CLAIM_NEWS`], [`STOP_NEWS`]). Best effort: they also read the journal at
/// their own, slower, pace.
pub fn tell_capture(state_dir: &Path, news: &str, job_id: &str) {
    let event = HotplugEvent {
        action: news.into(),
        devpath: job_id.into(),
    };
    if let Err(e) = notify(state_dir, &event) {
        log::debug!("{job_id}: telling the capture role ({news}): {e}");
    }
}

/// Sends `event` to every listener under `state_dir`; returns how many received it.
/// Sockets nobody listens on any more (their process died) are removed.
pub fn notify(state_dir: &Path, event: &HotplugEvent) -> std::io::Result<usize> {
    let dir = state_dir.join(DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let sender = UnixDatagram::unbound()?;
    sender.set_write_timeout(Some(Duration::from_millis(200)))?;
    let message = event.encode();
    let mut delivered = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "sock") {
            continue;
        }
        match sender.send_to(message.as_bytes(), &path) {
            Ok(_) => delivered += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => log::warn!("hotplug: {}: {e}", path.display()),
        }
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_wakes_the_listener_and_stale_sockets_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let listener = HotplugListener::bind(dir.path()).unwrap();
        let second = HotplugListener::bind(dir.path()).unwrap();
        // A socket whose process is gone.
        let stale = dir.path().join(DIR).join("999999999-0.sock");
        drop(UnixDatagram::bind(&stale).unwrap());
        let ev = HotplugEvent {
            action: "add".into(),
            devpath: "/devices/usb1/1-1".into(),
        };
        assert_eq!(
            notify(dir.path(), &ev).unwrap(),
            2,
            "every listener of the process"
        );
        assert!(!stale.exists());
        assert_eq!(second.wait(Duration::from_secs(1)), Some(ev.clone()));
        assert_eq!(listener.wait(Duration::from_secs(1)), Some(ev.clone()));
        assert_eq!(listener.wait(Duration::from_millis(10)), None);
        assert_eq!(listener.drain(), [], "nothing queued");
        notify(dir.path(), &ev).unwrap();
        notify(dir.path(), &ev).unwrap();
        assert_eq!(listener.drain().len(), 2, "both taken at once");
        assert_eq!(listener.drain(), []);
    }
}
