//! Serial-console logging: one line per event, boot-relative timestamps (an appliance's
//! wall clock may be unset at boot), a component tag, a level letter, no colour, and
//! repeats of the same line folded into one "xN suppressed" note.
//!
//! ```text
//! [   12.345] W capture: SCHED_FIFO 70 refused; running at normal priority
//! ```

use std::fmt;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest piece of outside text a log line shows.
const UNTRUSTED_MAX_CHARS: usize = 120;

/// Text from outside (the controller, a device, a file name) as it may appear in a log
/// line: control characters (NUL, newline, ESC, DEL, C1) escaped, at most
/// [`UNTRUSTED_MAX_CHARS`] characters, so one event stays one readable line.
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, ch) in self.0.chars().enumerate() {
            if shown == UNTRUSTED_MAX_CHARS {
                let rest = self
                    .0
                    .chars()
                    .skip(shown)
                    .map(char::len_utf8)
                    .sum::<usize>();
                return write!(f, "…(+{rest} bytes)");
            }
            write_escaped(f, ch)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Shorthand for [`Untrusted`].
pub fn untrusted(s: &str) -> Untrusted<'_> {
    Untrusted(s)
}

fn write_escaped(f: &mut impl fmt::Write, ch: char) -> fmt::Result {
    match ch {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        '\0' => f.write_str("\\0"),
        c if c.is_control() || is_bidi_control(c) => write!(f, "\\u{{{:x}}}", c as u32),
        c => f.write_char(c),
    }
}

/// Invisible characters that reorder what a terminal shows (a line that reads differently
/// from what it holds).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The last line of defence: whatever a message holds, the log gets one line without
/// terminal controls.
fn one_line(message: &str) -> String {
    if !message.chars().any(char::is_control) {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len() + 8);
    for ch in message.chars() {
        match ch {
            c if c.is_control() => {
                let _ = write_escaped(&mut out, c);
            }
            c => out.push(c),
        }
    }
    out
}

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
            one_line(&record.args().to_string())
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

    #[test]
    fn outside_text_is_escaped_and_bounded() {
        use super::{one_line, untrusted};
        let cases = [
            ("job_1", "job_1"),
            ("job_\0x", "job_\\0x"),
            ("a\nI sync: forged line", "a\\nI sync: forged line"),
            ("\u{1b}[2Jclear", "\\u{1b}[2Jclear"),
            ("del\u{7f}c1\u{85}", "del\\u{7f}c1\\u{85}"),
            ("rtl\u{202e}txt", "rtl\\u{202e}txt"),
            ("é../../x", "é../../x"),
        ];
        for (raw, shown) in cases {
            assert_eq!(untrusted(raw).to_string(), shown, "{raw:?}");
        }
        let long = "x".repeat(10_000);
        let shown = untrusted(&long).to_string();
        assert!(shown.starts_with(&"x".repeat(120)));
        assert!(shown.ends_with("…(+9880 bytes)"), "{shown}");
        assert_eq!(one_line("a\nb\0"), "a\\nb\\0");
        assert_eq!(one_line("plain é"), "plain é");
    }
}
