//! Tables for the body schemas.

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn heartbeat_normalizes() {
    let ips: Vec<String> = (0..20).map(|i| format!("10.0.0.{i}")).collect();
    let out = heartbeat(&obj(json!({"agentVersion": " edgerec 1 ", "hostname": "b",
        "ipAddresses": ips, "extra": 1})))
    .unwrap();
    assert_eq!(out["agentVersion"], "edgerec 1");
    assert_eq!(out["ipAddresses"].as_array().unwrap().len(), 16);
    assert_eq!(out["status"], "online");
    assert_eq!(out["extra"], 1);
    let issues = heartbeat(&obj(json!({"agentVersion": "x".repeat(81), "hostname": "",
        "runtime": {"audioBackends": ["oss"], "uptimeSeconds": -1}})))
    .unwrap_err();
    let paths: Vec<String> = issues.iter().map(|i| i["path"].to_string()).collect();
    assert_eq!(
        paths,
        [
            r#"["agentVersion"]"#,
            r#"["hostname"]"#,
            r#"["runtime","audioBackends",0]"#,
            r#"["runtime","uptimeSeconds"]"#
        ]
    );
}

#[test]
fn inventory_limits() {
    let iface = json!({"alias": "USB", "channelCount": 2, "systemName": "hw:CARD=USB"});
    let out = inventory(&obj(json!({"interfaces": [iface.clone()]}))).unwrap();
    assert_eq!(out[0]["backend"], "unknown");
    assert_eq!(out[0]["channels"], json!([]));
    let many: Vec<Value> = (0..65).map(|_| iface.clone()).collect();
    assert!(inventory(&obj(json!({"interfaces": many}))).is_err());
    let bad = json!({"alias": "USB", "channelCount": 257, "systemName": "x",
        "sampleRates": (0..17).map(|_| 48000).collect::<Vec<_>>()});
    assert_eq!(
        inventory(&obj(json!({"interfaces": [bad]})))
            .unwrap_err()
            .len(),
        2
    );
}

#[test]
fn health_event_is_strict() {
    let ok = health_event(&obj(json!({"type": "agent.x", "severity": "info",
        "details": {"a": 1}, "id": "e1"})))
    .unwrap();
    assert_eq!(ok.id.as_deref(), Some("e1"));
    for bad in [
        json!({"type": "agent.x", "severity": "info", "extra": 1}),
        json!({"type": "controller.x", "severity": "info"}),
        json!({"type": "watchdog.x", "severity": "info"}),
        json!({"type": "agent.x", "severity": "fatal"}),
        json!({"type": "agent.x", "severity": "info", "openedAt": "soon"}),
        json!({"severity": "info"}),
    ] {
        assert!(health_event(&obj(bad.clone())).is_err(), "{bad}");
    }
}

#[test]
fn meter_frame_ranges() {
    let good = json!({"capturedAt": "2026-11-23T01:00:00.000Z", "interfaceId": "i",
        "nodeId": "n", "levels": [{"channelIndex": 1, "label": "L", "peakDbfs": -3.5,
        "rmsDbfs": -160, "clipping": false}]});
    assert!(meter_frame(&obj(good)).is_ok());
    let bad = json!({"capturedAt": "x", "interfaceId": "i", "nodeId": "n",
        "levels": [{"channelIndex": 0, "label": "L", "peakDbfs": 30, "rmsDbfs": -1,
        "clipping": "no"}]});
    assert_eq!(meter_frame(&obj(bad)).unwrap_err().len(), 4);
}
