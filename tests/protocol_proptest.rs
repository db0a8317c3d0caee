//! Property tests on the protocol parser (issue 7, item 7): arbitrary bytes and arbitrary
//! JSON-ish jobs go through the same reading the client does (`{"data": [...]}` →
//! `Job::from_value` → `Job::validate`). Nothing panics; every accepted job carries ids
//! of the allowed charset, a bare file name and in-range numbers; every rejection names
//! an id only when that id can be put in a report.

use edgerec::controller::protocol::{
    CHANNELS, DURATION_SECONDS, Envelope, ErrorBody, Job, MAX_ID, SAMPLE_RATES, check_id,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value, json};

/// Strings a hostile controller would send: paths, dots, NUL and other controls, long
/// runs, non-ASCII, plus well-formed ids.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{1,140}",
        "(job|rec|node)_[A-Za-z0-9_-]{0,20}",
        "(\\.\\./){1,6}[a-z]{0,8}",
        "/[a-z/]{0,30}",
        "\\.{1,3}",
        any::<String>(),
        "[\\x00-\\x1f\\x7f]{1,4}[a-z]{0,4}",
        (1usize..12_000).prop_map(|n| "j".repeat(n)),
        "[a-z]{1,10}\\.[a-z0-9@]{0,10}",
        Just(String::new()),
    ]
}

fn hostile_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..500_000).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(48000)),
        Just(json!(2)),
        Just(json!(5.5)),
        hostile_text().prop_map(Value::from),
        Just(Value::Null),
        Just(json!([1, 2])),
    ]
}

fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        hostile_text().prop_map(Value::from),
        hostile_number(),
        any::<bool>().prop_map(Value::from),
        Just(json!({})),
    ]
}

/// A field that is mostly good, sometimes hostile or of the wrong type, sometimes missing.
fn field(good: Value, bad: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        16 => Just(Some(good)),
        2 => bad.prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn text() -> BoxedStrategy<Value> {
    hostile_text().prop_map(Value::from).boxed()
}

fn number() -> BoxedStrategy<Value> {
    hostile_number().boxed()
}

/// A good job with each field, independently, left good, made hostile, or removed.
fn hostile_job() -> impl Strategy<Value = Value> {
    let ids = (
        field(json!("job_1"), text()),
        field(json!("node_1"), text()),
        field(json!("rec_1"), text()),
        field(json!("running"), hostile_value().boxed()),
    );
    let texts = (
        field(json!("sine:440"), text()),
        field(json!("S16_LE"), text()),
        field(json!("take-1.wav"), text()),
        field(json!("grp_1"), text()),
    );
    let numbers = (
        field(json!(48000), number()),
        field(json!(2), number()),
        field(json!(5.5), number()),
        field(json!(10), number()),
    );
    let rest = (
        field(
            json!([1, 2]),
            prop_oneof![
                proptest::collection::vec(0u16..80, 0..10).prop_map(|v| json!(v)),
                hostile_value(),
            ]
            .boxed(),
        ),
        field(json!("wav"), hostile_value().boxed()),
    );
    (ids, texts, numbers, rest).prop_map(|((id, node, rec, status), texts, nums, rest)| {
        let put = |obj: &mut Map<String, Value>, k: &str, v: Option<Value>| {
            if let Some(v) = v {
                obj.insert(k.to_string(), v);
            }
        };
        let mut command = Map::new();
        put(&mut command, "type", Some(json!("alsa_capture")));
        put(&mut command, "captureDevice", texts.0);
        put(&mut command, "captureFormat", texts.1);
        put(&mut command, "outputFileName", texts.2);
        put(&mut command, "captureGroupId", texts.3);
        put(&mut command, "captureSampleRate", nums.0);
        put(&mut command, "captureChannels", nums.1);
        put(&mut command, "durationSeconds", nums.2);
        put(&mut command, "chunkSeconds", nums.3);
        put(&mut command, "captureChannelSelection", rest.0);
        put(&mut command, "outputCodec", rest.1);
        let mut job = Map::new();
        put(&mut job, "id", id);
        put(&mut job, "nodeId", node);
        put(&mut job, "recordingId", rec);
        put(&mut job, "status", status);
        job.insert("command".into(), Value::Object(command));
        Value::Object(job)
    })
}

/// What every job the validator accepts must satisfy, and every rejection too.
fn check_verdict(raw: Value) -> Result<(), TestCaseError> {
    let job = Job::from_value(raw);
    match job.validate() {
        Ok(valid) => {
            for id in [&valid.id, &valid.recording_id, &valid.node_id] {
                prop_assert!(check_id(id).is_ok(), "accepted id {id:?}");
                prop_assert!(id.len() <= MAX_ID);
                prop_assert!(
                    id.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                );
            }
            if let Some(group) = &valid.job.command.capture_group_id {
                prop_assert!(check_id(group).is_ok(), "accepted group {group:?}");
            }
            let name = &valid.output_file_name;
            prop_assert!(!name.contains('/') && !name.contains('\\') && !name.contains(".."));
            prop_assert!(!name.starts_with('.') && !name.chars().any(char::is_control));
            prop_assert!(name.len() <= 255 && name.contains('.'));
            let rate = u64::from(valid.sample_rate);
            prop_assert!((SAMPLE_RATES.0..=SAMPLE_RATES.1).contains(&rate));
            let ch = u64::from(valid.channels);
            prop_assert!((CHANNELS.0..=CHANNELS.1).contains(&ch));
            let d = valid.duration.as_secs_f64();
            prop_assert!(d >= 0.001 && d <= DURATION_SECONDS.1 as f64, "duration {d}");
            prop_assert!(!valid.device.chars().any(char::is_control));
        }
        Err(rejection) => {
            let reason = rejection.reason();
            prop_assert!(reason.starts_with("invalid_job: "));
            if let Some(id) = &rejection.job_id {
                // Named in a /failed URL (percent-encoded): printable, bounded, no
                // dot-only segment.
                prop_assert!(!id.chars().any(char::is_control), "reported id {id:?}");
                prop_assert!(id.len() <= 255 && !id.trim().is_empty());
                prop_assert!(!id.bytes().all(|b| b == b'.'));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/protocol_proptest.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic_the_reply_parser(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = ErrorBody::from_bytes(&bytes);
        let _ = serde_json::from_slice::<Envelope<Vec<Job>>>(&bytes);
        let _ = serde_json::from_slice::<Envelope<Job>>(&bytes);
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            check_verdict(v)?;
        }
    }

    #[test]
    fn arbitrary_json_shaped_bytes_never_panic(text in "\\{\"data\": \\[\\{\"id\": \"[ -~]{0,20}\"(, \"[a-zA-Z]{1,12}\": [ -~]{0,30}){0,6}\\}\\]\\}") {
        if let Ok(env) = serde_json::from_str::<Envelope<Vec<Value>>>(&text) {
            for raw in env.data {
                check_verdict(raw)?;
            }
        }
    }

    #[test]
    fn accepted_jobs_have_allowed_ids_and_names(job in hostile_job()) {
        check_verdict(job.clone())?;
        // The same job through the wire (serialized, parsed back as the client does).
        let body = serde_json::to_vec(&json!({"data": [job]})).unwrap();
        let env: Envelope<Value> = serde_json::from_slice(&body).unwrap();
        for raw in env.data.as_array().cloned().unwrap_or_default() {
            check_verdict(raw)?;
        }
    }

    #[test]
    fn check_id_accepts_exactly_the_charset(id in any::<String>()) {
        let allowed = !id.is_empty()
            && id.len() <= MAX_ID
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        prop_assert_eq!(check_id(&id).is_ok(), allowed);
    }
}

/// The property run must be able to fail: a job with good fields passes, and the same
/// job with a path for an id is refused (a generator that never produced an accepted job
/// would check nothing).
#[test]
fn the_generator_reaches_both_verdicts() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..5000 {
        let job = hostile_job().new_tree(&mut runner).unwrap().current();
        match Job::from_value(job).validate() {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    eprintln!("accepted {accepted}, refused {refused} of 5000");
    assert!(accepted > 0 && refused > 0);
}
