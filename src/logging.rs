//! Serial-console logging: one line per event, boot-relative timestamps (an appliance's
//! wall clock may be unset at boot), a component tag, a level letter, no colour, and
//! repeats of the same line folded into one "xN suppressed" note.
//!
//! ```text
//! [   12.345] W capture: SCHED_FIFO 70 refused; running at normal priority
//! ```

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Identical lines within this window after the first are counted, not printed.
const REPEAT_WINDOW: Duration = Duration::from_secs(10);

struct Repeat {
    line: String,
    first: Instant,
    suppressed: u64,
}

struct SerialLogger {
    level: log::LevelFilter,
    last: Mutex<Option<Repeat>>,
}

fn boot_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_BOOTTIME always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn level_letter(level: log::Level) -> char {
    match level {
        log::Level::Error => 'E',
        log::Level::Warn => 'W',
        log::Level::Info => 'I',
        log::Level::Debug => 'D',
        log::Level::Trace => 'T',
    }
}

/// The component tag: the module below the crate (`edgerec::capture::alsa` -> `capture`).
fn tag(target: &str) -> &str {
    let mut parts = target.split("::");
    let first = parts.next().unwrap_or(target);
    if first == "edgerec" {
        parts.next().unwrap_or(first)
    } else {
        first
    }
}

impl log::Log for SerialLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level && metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} {}: {}",
            level_letter(record.level()),
            tag(record.target()),
            record.args()
        );
        let mut out = String::new();
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(rep) = last.as_mut()
                && rep.line == line
                && rep.first.elapsed() < REPEAT_WINDOW
            {
                rep.suppressed += 1;
                return;
            }
            if let Some(rep) = last.take()
                && rep.suppressed > 0
            {
                out.push_str(&format!(
                    "[{:>12.3}] {} (x{} suppressed)\n",
                    boot_seconds(),
                    rep.line,
                    rep.suppressed
                ));
            }
            *last = Some(Repeat {
                line: line.clone(),
                first: Instant::now(),
                suppressed: 0,
            });
        }
        out.push_str(&format!("[{:>12.3}] {line}\n", boot_seconds()));
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger. `EDGEREC_LOG` (error|warn|info|debug|trace) overrides `default`.
pub fn init(default: log::LevelFilter) {
    // The logger lets everything through; the max level (set here and by `set_level`)
    // is the filter.
    let level = std::env::var("EDGEREC_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    let logger_level = log::LevelFilter::Trace;
    let logger = Box::leak(Box::new(SerialLogger {
        level: logger_level,
        last: Mutex::new(None),
    }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// The config file's level, once it is read; `EDGEREC_LOG` still wins.
pub fn set_level(level: log::LevelFilter) {
    if std::env::var("EDGEREC_LOG").is_err() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tags_are_the_component() {
        assert_eq!(super::tag("edgerec::capture::alsa"), "capture");
        assert_eq!(super::tag("edgerec"), "edgerec");
        assert_eq!(super::tag("rusqlite"), "rusqlite");
    }
}
