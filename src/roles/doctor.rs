//! `edgerec doctor`: the checks a field engineer would run by hand at the serial console,
//! one line each, PASS / WARN / FAIL with what to do. The exit code is the worst result,
//! as monitoring plugins count: 0 all pass, 1 a warning, 2 a failure.
//!
//! - this file: the results, their rendering (text and `--json`) and the order of checks.
//! - `checks`: each probe of the box (config, device, spool, journal, roles, controller,
//!   clock, real-time priority, installed units and rules).

mod checks;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::BoxOverrides;

/// How a check came out; ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    /// Not applicable on this box (no controller configured): counts as a pass.
    Skip,
    Warn,
    Fail,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Skip => "SKIP",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do about it (none for a pass).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

impl Check {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Pass,
            detail: detail.into(),
            advice: None,
        }
    }

    pub fn skip(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            verdict: Verdict::Skip,
            ..Check::pass(name, detail)
        }
    }

    pub fn warn(name: &'static str, detail: impl Into<String>, advice: impl Into<String>) -> Check {
        Check {
            verdict: Verdict::Warn,
            advice: Some(advice.into()),
            ..Check::pass(name, detail)
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>, advice: impl Into<String>) -> Check {
        Check {
            verdict: Verdict::Fail,
            ..Check::warn(name, detail, advice)
        }
    }
}

/// What to examine: the config file and the flags that override it, as the roles take.
#[derive(Clone, Debug, Default)]
pub struct DoctorInput {
    pub config: Option<PathBuf>,
    pub overrides: BoxOverrides,
}

/// Runs every check, in the order an engineer would: the config first (the rest reads
/// it), then the box, then the link to the controller.
pub fn run(input: &DoctorInput) -> Vec<Check> {
    let (config_check, loaded) = checks::config(input);
    let settings = &loaded.settings;
    let mut out = vec![config_check];
    out.push(checks::device(loaded.capture.as_ref(), &settings.state_dir));
    out.push(checks::spool(settings));
    out.extend(checks::journal_and_roles(&settings.state_dir));
    out.extend(checks::controller_and_clock(settings));
    out.push(checks::realtime());
    out.push(checks::installed());
    out
}

/// The exit code for these results: 0 all pass, 1 a warning, 2 a failure.
pub fn exit_code(checks: &[Check]) -> u8 {
    match worst(checks) {
        Verdict::Fail => 2,
        Verdict::Warn => 1,
        Verdict::Pass | Verdict::Skip => 0,
    }
}

/// One line per check, and the advice indented under the ones that need it.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{} {:<10} {}\n",
            c.verdict.label(),
            c.name,
            c.detail
        ));
        if let Some(advice) = &c.advice {
            out.push_str(&format!("     {:<10} -> {advice}\n", ""));
        }
    }
    let worst = worst(checks);
    let count = |v| checks.iter().filter(|c| c.verdict == v).count();
    out.push_str(&format!(
        "doctor: {} ({} pass, {} warn, {} fail)\n",
        worst.label(),
        count(Verdict::Pass) + count(Verdict::Skip),
        count(Verdict::Warn),
        count(Verdict::Fail)
    ));
    out
}

/// The same as one JSON object: `{"worst": "...", "checks": [...]}`.
pub fn to_json(checks: &[Check]) -> String {
    serde_json::json!({ "worst": worst(checks), "checks": checks }).to_string()
}

/// The worst result, a skip counting as a pass.
fn worst(checks: &[Check]) -> Verdict {
    let worst = checks.iter().map(|c| c.verdict).max();
    worst
        .filter(|v| *v != Verdict::Skip)
        .unwrap_or(Verdict::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_result_sets_the_exit_code_and_the_summary() {
        let pass = Check::pass("config", "ok");
        let skip = Check::skip("clock", "no controller");
        let warn = Check::warn("roles", "sync down", "systemctl start edgerec-sync");
        let fail = Check::fail("device", "missing", "plug it in");
        let cases = [
            (vec![], 0, "doctor: PASS (0 pass, 0 warn, 0 fail)"),
            (vec![pass.clone(), skip.clone()], 0, "doctor: PASS (2 pass"),
            (
                vec![pass.clone(), warn.clone()],
                1,
                "doctor: WARN (1 pass, 1 warn",
            ),
            (
                vec![warn.clone(), fail.clone(), pass],
                2,
                "doctor: FAIL (1 pass, 1 warn, 1 fail)",
            ),
        ];
        for (checks, code, summary) in cases {
            assert_eq!(exit_code(&checks), code, "{checks:?}");
            assert!(render(&checks).contains(summary), "{}", render(&checks));
        }
        let text = render(std::slice::from_ref(&fail));
        assert!(text.starts_with("FAIL device     missing\n"), "{text}");
        assert!(text.contains("-> plug it in"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&to_json(&[fail, warn])).unwrap();
        assert_eq!(json["worst"], "FAIL");
        assert_eq!(json["checks"][1]["verdict"], "WARN");
        assert_eq!(json["checks"][1]["advice"], "systemctl start edgerec-sync");
    }
}
