//! The job's `enhancement` object, read as Rakkr's recording profile writes it:
//! `{keepRaw, denoise: {enabled, engine}, highpass: {enabled, hz}, lowpass: {enabled, hz},
//! loudnorm: {enabled, targetI, truePeak, lra}, gate: {enabled, thresholdDb}, deesser,
//! compressor}`, each absent field at Rakkr's default, each value in Rakkr's range.

use serde_json::Value;

use super::dsp::ChainSpec;

/// Loudness normalisation's target.
#[derive(Clone, Debug, PartialEq)]
pub struct LoudnessTarget {
    /// Integrated loudness, LUFS.
    pub integrated: f64,
    /// True-peak ceiling, dBTP.
    pub true_peak: f64,
}

/// What the enhanced rendition does.
#[derive(Clone, Debug, PartialEq)]
pub struct Enhancement {
    /// Upload the untouched render too, as `rendition=raw`.
    pub keep_raw: bool,
    pub denoise: bool,
    pub highpass_hz: Option<f64>,
    pub lowpass_hz: Option<f64>,
    pub gate_db: Option<f32>,
    pub loudness: Option<LoudnessTarget>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnhancementError {
    #[error("enhancement.{field}: {problem}")]
    Bad { field: String, problem: String },
}

impl Enhancement {
    /// The enhancement a job's command JSON asks for (`{"command": {...}}` or the command
    /// itself): `None` when it has none, or enables no stage.
    pub fn from_command_json(json: &str) -> Result<Option<Enhancement>, EnhancementError> {
        let v: Value = serde_json::from_str(json).unwrap_or_default();
        let c = v.get("command").unwrap_or(&v);
        match c.get("enhancement") {
            None | Some(Value::Null | Value::Bool(false)) => Ok(None),
            Some(Value::Bool(true)) => Enhancement::from_value(&Value::Object(Default::default())),
            Some(e) => Enhancement::from_value(e),
        }
    }

    pub fn from_value(v: &Value) -> Result<Option<Enhancement>, EnhancementError> {
        let Some(obj) = v.as_object() else {
            return Err(bad("", "not an object"));
        };
        let keep_raw = match obj.get("keepRaw") {
            None | Some(Value::Null) => true,
            Some(v) => v.as_bool().ok_or_else(|| bad("keepRaw", "not a boolean"))?,
        };
        let stage = |name: &str, on: bool| Stage::read(v, name, on);
        let denoise = stage("denoise", true)?;
        if let Some(engine) = denoise.field("engine").filter(|e| !e.is_null()) {
            match engine.as_str() {
                Some("rnnoise" | "deepfilternet3") => {}
                _ => return Err(bad("denoise.engine", "not rnnoise or deepfilternet3")),
            }
        }
        let hp = stage("highpass", true)?;
        let lp = stage("lowpass", false)?;
        let loud = stage("loudnorm", true)?;
        let gate = stage("gate", false)?;
        let e = Enhancement {
            keep_raw,
            denoise: denoise.on,
            highpass_hz: hp.number("hz", 80.0, 20.0..=500.0)?,
            lowpass_hz: lp.number("hz", 12_000.0, 2_000.0..=20_000.0)?,
            gate_db: gate
                .number("thresholdDb", -40.0, -80.0..=0.0)?
                .map(|db| db as f32),
            loudness: match loud.number("targetI", -16.0, -70.0..=-5.0)? {
                Some(integrated) => Some(LoudnessTarget {
                    integrated,
                    true_peak: loud.number("truePeak", -1.5, -9.0..=0.0)?.unwrap_or(-1.5),
                }),
                None => None,
            },
        };
        let any = e.denoise
            || e.highpass_hz.is_some()
            || e.lowpass_hz.is_some()
            || e.gate_db.is_some()
            || e.loudness.is_some();
        Ok(any.then_some(e))
    }

    pub fn chain(&self) -> ChainSpec {
        ChainSpec {
            denoise: self.denoise,
            highpass_hz: self.highpass_hz,
            lowpass_hz: self.lowpass_hz,
            gate_db: self.gate_db,
        }
    }
}

fn bad(field: &str, problem: &str) -> EnhancementError {
    EnhancementError::Bad {
        field: field.to_string(),
        problem: problem.to_string(),
    }
}

/// One stage's object (or a bare boolean for `enabled`).
struct Stage<'a> {
    name: String,
    obj: Option<&'a serde_json::Map<String, Value>>,
    on: bool,
}

impl<'a> Stage<'a> {
    fn read(v: &'a Value, name: &str, default_on: bool) -> Result<Stage<'a>, EnhancementError> {
        let (obj, on) = match v.get(name) {
            None | Some(Value::Null) => (None, default_on),
            Some(Value::Bool(b)) => (None, *b),
            Some(Value::Object(o)) => match o.get("enabled") {
                None | Some(Value::Null) => (Some(o), default_on),
                Some(Value::Bool(b)) => (Some(o), *b),
                Some(_) => return Err(bad(&format!("{name}.enabled"), "not a boolean")),
            },
            Some(_) => return Err(bad(name, "not an object")),
        };
        Ok(Stage {
            name: name.to_string(),
            obj,
            on,
        })
    }

    fn field(&self, key: &str) -> Option<&'a Value> {
        self.obj.and_then(|o| o.get(key))
    }

    /// The stage's `key` when it is on: the default if absent, an error if out of range.
    fn number(
        &self,
        key: &str,
        default: f64,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<Option<f64>, EnhancementError> {
        if !self.on {
            return Ok(None);
        }
        let field = format!("{}.{key}", self.name);
        let n = match self.field(key) {
            None | Some(Value::Null) => default,
            Some(v) => v.as_f64().ok_or_else(|| bad(&field, "not a number"))?,
        };
        if !range.contains(&n) {
            let problem = format!("{n} is outside {}..={}", range.start(), range.end());
            return Err(bad(&field, &problem));
        }
        Ok(Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rakkr_defaults_fill_what_the_job_leaves_out() {
        let e = Enhancement::from_value(&json!({})).unwrap().unwrap();
        assert_eq!(
            e,
            Enhancement {
                keep_raw: true,
                denoise: true,
                highpass_hz: Some(80.0),
                lowpass_hz: None,
                gate_db: None,
                loudness: Some(LoudnessTarget {
                    integrated: -16.0,
                    true_peak: -1.5
                }),
            }
        );
    }

    #[test]
    fn a_profile_as_rakkr_stores_it() {
        let v = json!({"keepRaw": false, "denoise": {"enabled": true, "engine": "rnnoise"},
            "highpass": {"enabled": true, "hz": 120}, "lowpass": {"enabled": true, "hz": 8000},
            "deesser": {"enabled": false, "intensity": 0.1}, "compressor": {"enabled": false},
            "loudnorm": {"enabled": false, "targetI": -16, "truePeak": -1.5, "lra": 11},
            "gate": {"enabled": true, "thresholdDb": -50}});
        let e = Enhancement::from_value(&v).unwrap().unwrap();
        assert!(!e.keep_raw && e.denoise);
        assert_eq!((e.highpass_hz, e.lowpass_hz), (Some(120.0), Some(8000.0)));
        assert_eq!((e.gate_db, e.loudness), (Some(-50.0), None));
    }

    #[test]
    fn nothing_enabled_is_no_enhancement_and_bad_values_are_named() {
        let off = json!({"denoise": false, "highpass": {"enabled": false},
            "loudnorm": {"enabled": false}});
        assert_eq!(Enhancement::from_value(&off), Ok(None));
        assert_eq!(
            Enhancement::from_command_json(r#"{"command": {"enhancement": null}}"#),
            Ok(None)
        );
        assert_eq!(Enhancement::from_command_json("garbage"), Ok(None));
        assert_eq!(
            Enhancement::from_command_json(r#"{"enhancement": false}"#),
            Ok(None)
        );
        let on = Enhancement::from_command_json(r#"{"enhancement": true}"#).unwrap();
        assert_eq!(on, Enhancement::from_value(&json!({})).unwrap());
        // (value, field named in the error)
        let cases = [
            (json!({"highpass": {"hz": 5}}), "highpass.hz"),
            (json!({"highpass": {"hz": "80"}}), "highpass.hz"),
            (
                json!({"gate": {"enabled": true, "thresholdDb": 3}}),
                "gate.thresholdDb",
            ),
            (json!({"loudnorm": {"targetI": -90}}), "loudnorm.targetI"),
            (json!({"denoise": {"engine": "ffmpeg"}}), "denoise.engine"),
            (json!({"keepRaw": "yes"}), "keepRaw"),
            (json!({"lowpass": 3}), "lowpass"),
            (json!(7), ""),
        ];
        for (v, field) in cases {
            let err = Enhancement::from_value(&v).unwrap_err();
            let EnhancementError::Bad { field: f, .. } = &err;
            assert_eq!(f, field, "{v}: {err}");
        }
    }
}
