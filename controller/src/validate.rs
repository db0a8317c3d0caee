//! Request body validation, following the Rakkr server's schemas (zod): strings are
//! trimmed before their length is checked, defaults are applied, and every problem becomes
//! an issue `{code, path, message}` in the 400 reply. Heartbeat and inventory pass unknown
//! top-level keys through; a health event is strict (an unknown key is an issue).

use crate::time::parse_iso8601;

mod bootstrap;
pub(crate) use bootstrap::{BootstrapInput, bootstrap};
use serde_json::{Map, Value, json};

pub(crate) const BACKENDS: &[&str] = &["alsa", "jack", "pipewire", "unknown"];
const NODE_STATUSES: &[&str] = &[
    "provisioning",
    "online",
    "offline",
    "degraded",
    "recording",
    "alerting",
];
const SEVERITIES: &[&str] = &["info", "warning", "critical"];
const RESERVED_EVENT_PREFIXES: &[&str] = &["controller.", "watchdog."];

/// Collects issues while walking a body.
#[derive(Default)]
pub(crate) struct Check {
    issues: Vec<Value>,
    path: Vec<Value>,
}

/// A field's requirement.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
}
use Need::*;

impl Check {
    fn issue(&mut self, code: &str, message: String) {
        self.issues
            .push(json!({"code": code, "path": self.path.clone(), "message": message}));
    }

    /// Runs `f` with `seg` appended to the path.
    fn at<T>(&mut self, seg: impl Into<Value>, f: impl FnOnce(&mut Check) -> T) -> T {
        self.path.push(seg.into());
        let out = f(self);
        self.path.pop();
        out
    }

    /// The issues found, or `Ok` if none.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<Value>> {
        if self.issues.is_empty() {
            Ok(value)
        } else {
            Err(self.issues)
        }
    }

    /// Reads `obj[key]`, reporting it missing when required. As in zod, `null` is not
    /// "absent": an optional field may be left out, not set to `null`.
    fn field<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        key: &str,
        need: Need,
    ) -> Option<&'a Value> {
        match obj.get(key) {
            None => {
                if need == Required {
                    self.at(key, |c| c.issue("invalid_type", "Required".into()));
                }
                None
            }
            Some(Value::Null) => {
                self.at(key, |c| {
                    c.issue("invalid_type", "Expected a value, received null".into())
                });
                None
            }
            Some(v) => Some(v),
        }
    }

    /// A string, trimmed, of `min..=max` characters.
    fn string(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        (min, max): (usize, usize),
        need: Need,
    ) -> Option<String> {
        let v = self.field(obj, key, need)?;
        self.at(key, |c| c.string_value(v, min, max))
    }

    fn string_value(&mut self, v: &Value, min: usize, max: usize) -> Option<String> {
        let Some(s) = v.as_str() else {
            self.issue(
                "invalid_type",
                format!("Expected string, received {}", kind(v)),
            );
            return None;
        };
        let s = s.trim();
        let n = s.chars().count();
        if n < min {
            self.issue(
                "too_small",
                format!("String must contain at least {min} character(s)"),
            );
            None
        } else if n > max {
            self.issue(
                "too_big",
                format!("String must contain at most {max} character(s)"),
            );
            None
        } else {
            Some(s.to_string())
        }
    }

    /// One of `allowed`.
    fn one_of(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        allowed: &[&str],
        need: Need,
    ) -> Option<String> {
        let v = self.field(obj, key, need)?;
        self.at(key, |c| c.one_of_value(v, allowed))
    }

    fn one_of_value(&mut self, v: &Value, allowed: &[&str]) -> Option<String> {
        match v.as_str() {
            Some(s) if allowed.contains(&s) => Some(s.to_string()),
            _ => {
                self.issue(
                    "invalid_enum_value",
                    format!("Expected one of {allowed:?}, received {v}"),
                );
                None
            }
        }
    }

    /// An integer in `min..=max`.
    fn int(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        (min, max): (i64, i64),
        need: Need,
    ) -> Option<i64> {
        let v = self.field(obj, key, need)?;
        self.at(key, |c| c.int_value(v, min, max))
    }

    fn int_value(&mut self, v: &Value, min: i64, max: i64) -> Option<i64> {
        let n = match v.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
            Some(_) => {
                self.issue("invalid_type", "Expected integer, received float".into());
                return None;
            }
            None => {
                self.issue(
                    "invalid_type",
                    format!("Expected number, received {}", kind(v)),
                );
                return None;
            }
        };
        self.range(n as f64, min as f64, max as f64).then_some(n)
    }

    /// A finite number in `min..=max`.
    fn number(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        (min, max): (f64, f64),
        need: Need,
    ) -> Option<f64> {
        let v = self.field(obj, key, need)?;
        self.at(key, |c| match v.as_f64() {
            Some(n) => c.range(n, min, max).then_some(n),
            None => {
                c.issue(
                    "invalid_type",
                    format!("Expected number, received {}", kind(v)),
                );
                None
            }
        })
    }

    fn range(&mut self, n: f64, min: f64, max: f64) -> bool {
        if n < min {
            self.issue("too_small", format!("Number must be at least {min}"));
            false
        } else if n > max {
            self.issue("too_big", format!("Number must be at most {max}"));
            false
        } else {
            true
        }
    }

    fn boolean(&mut self, obj: &Map<String, Value>, key: &str) -> Option<bool> {
        let v = self.field(obj, key, Required)?;
        self.at(key, |c| {
            let b = v.as_bool();
            if b.is_none() {
                c.issue(
                    "invalid_type",
                    format!("Expected boolean, received {}", kind(v)),
                );
            }
            b
        })
    }

    /// An array of at most `max` items.
    fn array<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        key: &str,
        max: usize,
        need: Need,
    ) -> Option<&'a Vec<Value>> {
        let v = self.field(obj, key, need)?;
        self.at(key, |c| match v.as_array() {
            Some(a) if a.len() <= max => Some(a),
            Some(_) => {
                c.issue(
                    "too_big",
                    format!("Array must contain at most {max} element(s)"),
                );
                None
            }
            None => {
                c.issue(
                    "invalid_type",
                    format!("Expected array, received {}", kind(v)),
                );
                None
            }
        })
    }

    fn object<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        key: &str,
        need: Need,
    ) -> Option<&'a Map<String, Value>> {
        let v = self.field(obj, key, need)?;
        self.at(key, |c| {
            let o = v.as_object();
            if o.is_none() {
                c.issue(
                    "invalid_type",
                    format!("Expected object, received {}", kind(v)),
                );
            }
            o
        })
    }

    /// A parseable ISO 8601 date-time string.
    fn date(&mut self, obj: &Map<String, Value>, key: &str, need: Need) -> Option<(String, i64)> {
        let s = self.string(obj, key, (1, 100), need)?;
        match parse_iso8601(&s) {
            Some(ms) => Some((s, ms)),
            None => {
                self.at(key, |c| {
                    c.issue("custom", "must be a parseable ISO 8601 date-time".into())
                });
                None
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The body as an object, or the issue that it is not one.
pub(crate) fn object_body(bytes: &[u8]) -> Result<Map<String, Value>, Vec<Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(vec![json!({"code": "invalid_type", "path": [],
            "message": format!("Expected object, received {}", kind(&other))})]),
        Err(e) => Err(vec![json!({"code": "invalid_json", "path": [],
            "message": format!("Body is not JSON: {e}")})]),
    }
}

/// Node heartbeat: returns the body normalized (trimmed strings, defaults applied,
/// `ipAddresses` cut to 16 as the Rakkr server does: a heartbeat must not fail over a
/// multi-homed host), unknown keys kept.
pub(crate) fn heartbeat(body: &Map<String, Value>) -> Result<Map<String, Value>, Vec<Value>> {
    let mut c = Check::default();
    let mut out = body.clone();
    if let Some(v) = c.string(body, "agentVersion", (1, 80), Required) {
        out.insert("agentVersion".into(), v.into());
    }
    if let Some(v) = c.string(body, "hostname", (1, 255), Required) {
        out.insert("hostname".into(), v.into());
    }
    let mut ips = Vec::new();
    if let Some(list) = c.field(body, "ipAddresses", Optional) {
        c.at("ipAddresses", |c| match list.as_array() {
            Some(list) => {
                for (i, ip) in list.iter().take(16).enumerate() {
                    if let Some(ip) = c.at(i, |c| c.string_value(ip, 1, 120)) {
                        ips.push(Value::from(ip));
                    }
                }
            }
            None => c.issue(
                "invalid_type",
                format!("Expected array, received {}", kind(list)),
            ),
        });
    }
    out.insert("ipAddresses".into(), ips.into());
    let status = c.one_of(body, "status", NODE_STATUSES, Optional);
    out.insert(
        "status".into(),
        status.unwrap_or_else(|| "online".into()).into(),
    );
    if let Some(rt) = c.object(body, "runtime", Optional) {
        let runtime = c.at("runtime", |c| runtime(c, rt));
        out.insert("runtime".into(), runtime.into());
    }
    c.finish(out)
}

fn runtime(c: &mut Check, rt: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for key in ["architecture", "kernelRelease", "osName"] {
        if let Some(v) = c.string(rt, key, (1, usize::MAX), Optional) {
            out.insert(key.into(), v.into());
        }
    }
    let mut backends = Vec::new();
    if let Some(list) = c.array(rt, "audioBackends", usize::MAX, Optional) {
        c.at("audioBackends", |c| {
            for (i, b) in list.iter().enumerate() {
                if let Some(b) = c.at(i, |c| c.one_of_value(b, BACKENDS)) {
                    backends.push(Value::from(b));
                }
            }
        });
    }
    out.insert("audioBackends".into(), backends.into());
    if let Some(v) = c.int(rt, "uptimeSeconds", (0, i64::MAX), Optional) {
        out.insert("uptimeSeconds".into(), v.into());
    }
    out
}

/// Inventory: the normalized interfaces (at most 64).
pub(crate) fn inventory(body: &Map<String, Value>) -> Result<Vec<Map<String, Value>>, Vec<Value>> {
    let mut c = Check::default();
    let mut out = Vec::new();
    if let Some(list) = c.array(body, "interfaces", 64, Optional) {
        c.at("interfaces", |c| {
            for (i, item) in list.iter().enumerate() {
                c.at(i, |c| match item.as_object() {
                    Some(o) => out.push(interface(c, o)),
                    None => c.issue(
                        "invalid_type",
                        format!("Expected object, received {}", kind(item)),
                    ),
                });
            }
        });
    }
    c.finish(out)
}

fn interface(c: &mut Check, o: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            out.insert(k.into(), v);
        }
    };
    put(
        "alias",
        c.string(o, "alias", (1, 160), Required).map(Into::into),
    );
    put(
        "backend",
        Some(
            c.one_of(o, "backend", BACKENDS, Optional)
                .unwrap_or_else(|| "unknown".into())
                .into(),
        ),
    );
    put(
        "channelCount",
        c.int(o, "channelCount", (0, 256), Required).map(Into::into),
    );
    let mut channels = Vec::new();
    if let Some(list) = c.array(o, "channels", 256, Optional) {
        c.at("channels", |c| {
            for (i, ch) in list.iter().enumerate() {
                c.at(i, |c| match ch.as_object() {
                    Some(ch) => {
                        let alias = c.string(ch, "alias", (1, 160), Required);
                        let index = c.int(ch, "index", (1, 256), Required);
                        if let (Some(alias), Some(index)) = (alias, index) {
                            channels.push(json!({"alias": alias, "index": index}));
                        }
                    }
                    None => c.issue(
                        "invalid_type",
                        format!("Expected object, received {}", kind(ch)),
                    ),
                });
            }
        });
    }
    put("channels", Some(channels.into()));
    put(
        "hardwarePath",
        c.string(o, "hardwarePath", (1, 500), Optional)
            .map(Into::into),
    );
    let mut rates = Vec::new();
    if let Some(list) = c.array(o, "sampleRates", 16, Optional) {
        c.at("sampleRates", |c| {
            for (i, r) in list.iter().enumerate() {
                if let Some(r) = c.at(i, |c| c.int_value(r, 1, i64::MAX)) {
                    rates.push(Value::from(r));
                }
            }
        });
    }
    put("sampleRates", Some(rates.into()));
    put(
        "serialNumber",
        c.string(o, "serialNumber", (1, 255), Optional)
            .map(Into::into),
    );
    put(
        "systemName",
        c.string(o, "systemName", (1, 255), Required)
            .map(Into::into),
    );
    put(
        "systemRef",
        c.string(o, "systemRef", (1, 255), Optional).map(Into::into),
    );
    out
}

/// Meter frame: the normalized frame (levels at most 512, dBFS in -160..24).
pub(crate) fn meter_frame(body: &Map<String, Value>) -> Result<Map<String, Value>, Vec<Value>> {
    let mut c = Check::default();
    let mut out = Map::new();
    if let Some((s, _)) = c.date(body, "capturedAt", Required) {
        out.insert("capturedAt".into(), s.into());
    }
    if let Some(v) = c.string(body, "interfaceId", (1, usize::MAX), Required) {
        out.insert("interfaceId".into(), v.into());
    }
    if let Some(v) = c.string(body, "nodeId", (1, usize::MAX), Required) {
        out.insert("nodeId".into(), v.into());
    }
    let mut levels = Vec::new();
    if let Some(list) = c.array(body, "levels", 512, Required) {
        c.at("levels", |c| {
            for (i, l) in list.iter().enumerate() {
                c.at(i, |c| match l.as_object() {
                    Some(l) => levels.push(level(c, l)),
                    None => c.issue(
                        "invalid_type",
                        format!("Expected object, received {}", kind(l)),
                    ),
                });
            }
        });
    }
    out.insert("levels".into(), levels.into());
    c.finish(out)
}

fn level(c: &mut Check, l: &Map<String, Value>) -> Value {
    let dbfs = (-160.0, 24.0);
    let mut out = Map::new();
    if let Some(v) = c.int(l, "channelIndex", (1, i64::MAX), Required) {
        out.insert("channelIndex".into(), v.into());
    }
    if let Some(v) = c.boolean(l, "clipping") {
        out.insert("clipping".into(), v.into());
    }
    if let Some(v) = c.string(l, "label", (1, usize::MAX), Required) {
        out.insert("label".into(), v.into());
    }
    for key in ["peakDbfs", "rmsDbfs"] {
        if let Some(v) = c.number(l, key, dbfs, Required) {
            out.insert(key.into(), v.into());
        }
    }
    if let Some(q) = c.object(l, "quality", Optional) {
        out.insert("quality".into(), Value::Object(q.clone()));
    }
    out.into()
}

/// An accepted health event.
#[derive(Debug)]
pub(crate) struct HealthEventInput {
    pub kind: String,
    pub severity: String,
    pub details: Map<String, Value>,
    pub id: Option<String>,
    pub opened_at: Option<(String, i64)>,
    pub recording_id: Option<String>,
    pub schedule_id: Option<String>,
}

/// Health event: strict (unknown keys are issues).
pub(crate) fn health_event(body: &Map<String, Value>) -> Result<HealthEventInput, Vec<Value>> {
    const KEYS: &[&str] = &[
        "details",
        "id",
        "openedAt",
        "recordingId",
        "scheduleId",
        "severity",
        "type",
    ];
    let mut c = Check::default();
    let unknown: Vec<&String> = body
        .keys()
        .filter(|k| !KEYS.contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        c.issue(
            "unrecognized_keys",
            format!("Unrecognized key(s) in object: {unknown:?}"),
        );
    }
    let details = c
        .object(body, "details", Optional)
        .cloned()
        .unwrap_or_default();
    let id = c.string(body, "id", (1, 160), Optional);
    let opened_at = c.date(body, "openedAt", Optional);
    let recording_id = c.string(body, "recordingId", (1, 160), Optional);
    let schedule_id = c.string(body, "scheduleId", (1, 160), Optional);
    let severity = c.one_of(body, "severity", SEVERITIES, Required);
    let kind = c.string(body, "type", (1, 160), Required);
    if let Some(k) = &kind
        && RESERVED_EVENT_PREFIXES.iter().any(|p| k.starts_with(p))
    {
        c.at("type", |c| {
            c.issue(
                "custom",
                "Health event type must not use a controller-reserved prefix".into(),
            )
        });
    }
    let input = match (kind, severity) {
        (Some(kind), Some(severity)) => Some(HealthEventInput {
            kind,
            severity,
            details,
            id,
            opened_at,
            recording_id,
            schedule_id,
        }),
        _ => None,
    };
    match c.finish(input)? {
        Some(input) => Ok(input),
        None => Err(vec![
            json!({"code": "custom", "path": [], "message": "Invalid event"}),
        ]),
    }
}

#[cfg(test)]
mod tests;
