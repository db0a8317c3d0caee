//! Node calls on the store: heartbeat, inventory reconcile, config, meter frames and
//! health events. Each runs inside the caller's transaction.

use crate::jobs::JobError;
use crate::store::{self, Doing, StoreError};
use crate::time;
use crate::validate::HealthEventInput;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

/// A node is shown offline this long after its last heartbeat.
const OFFLINE_AFTER_MS: i64 = 120_000;

/// The node as the heartbeat reply shows it; `None` if there is no such node.
pub(crate) fn node_json(tx: &Connection, id: &str, now: i64) -> Result<Option<Value>, StoreError> {
    let row = tx
        .query_row(
            "SELECT name, status, heartbeat_json, last_heartbeat_at_ms, \
             max_concurrent_recordings FROM nodes WHERE id = ?1",
            params![id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()
        .doing("reading a node")?;
    let Some((name, mut status, heartbeat, last_seen, capacity)) = row else {
        return Ok(None);
    };
    if last_seen.is_some_and(|t| now.saturating_sub(t) > OFFLINE_AFTER_MS) {
        status = "offline".into();
    }
    let hb: Map<String, Value> = heartbeat
        .and_then(|h| serde_json::from_str(&h).ok())
        .unwrap_or_default();
    let mut node = json!({
        "id": id,
        "alias": name,
        "status": status,
        "agentVersion": hb.get("agentVersion").cloned().unwrap_or(Value::Null),
        "hostname": hb.get("hostname").cloned().unwrap_or(Value::Null),
        "ipAddresses": hb.get("ipAddresses").cloned().unwrap_or_else(|| json!([])),
        "interfaces": interfaces_json(tx, id)?,
        "recordingCapacity": {"maxConcurrentRecordings": capacity},
    });
    if let Some(rt) = hb.get("runtime") {
        node["runtime"] = rt.clone();
    }
    if let Some(ms) = last_seen {
        node["lastSeenAt"] = time::iso_ms(ms).into();
    }
    Ok(Some(node))
}

fn interfaces_json(tx: &Connection, node: &str) -> Result<Vec<Value>, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT id, body_json, absent_at_ms FROM interfaces WHERE node_id = ?1 ORDER BY rowid",
        )
        .doing("reading interfaces")?;
    let rows = stmt
        .query_map(params![node], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })
        .doing("reading interfaces")?;
    let mut out = Vec::new();
    for row in rows {
        let (id, body, absent) = row.doing("reading interfaces")?;
        let mut v: Map<String, Value> = serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("interface {id}: {e}")))?;
        v.insert("id".into(), id.into());
        if absent.is_some() {
            v.insert("absent".into(), true.into());
        }
        out.push(Value::Object(v));
    }
    Ok(out)
}

/// Stores a heartbeat; `None` if there is no such node.
pub(crate) fn heartbeat(
    tx: &Connection,
    node: &str,
    body: &Map<String, Value>,
    now: i64,
) -> Result<Option<Value>, StoreError> {
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("online");
    let changed = tx
        .execute(
            "UPDATE nodes SET heartbeat_json = ?2, last_heartbeat_at_ms = ?3, status = ?4 \
             WHERE id = ?1",
            params![node, Value::Object(body.clone()).to_string(), now, status],
        )
        .doing("storing a heartbeat")?;
    if changed == 0 {
        return Ok(None);
    }
    node_json(tx, node, now)
}

/// Reconciles a node's interfaces with a reported inventory: matched by `systemRef`, else
/// `systemName`; new ones added, changed ones updated (an absent one reactivated), the
/// ones not reported flagged absent. `None` if there is no such node.
pub(crate) fn inventory(
    tx: &Connection,
    node: &str,
    reported: &[Map<String, Value>],
    now: i64,
) -> Result<Option<Value>, StoreError> {
    if !store::node_exists(tx, node)? {
        return Ok(None);
    }
    let (mut added, mut updated, mut reactivated, mut absent) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut unchanged = 0;
    let mut seen = Vec::new();
    for iface in reported {
        let name = iface
            .get("systemName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let key = iface
            .get("systemRef")
            .and_then(Value::as_str)
            .filter(|r| !r.trim().is_empty())
            .unwrap_or(&name)
            .trim()
            .to_string();
        if seen.contains(&key) {
            continue; // the same device twice in one report: the first wins
        }
        seen.push(key.clone());
        let body = Value::Object(iface.clone()).to_string();
        let existing: Option<(String, String, Option<i64>)> = tx
            .query_row(
                "SELECT id, body_json, absent_at_ms FROM interfaces \
                 WHERE node_id = ?1 AND match_key = ?2",
                params![node, key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .doing("reading an interface")?;
        match existing {
            None => {
                tx.execute(
                    "INSERT INTO interfaces (id, node_id, match_key, body_json, updated_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![format!("if_{}", uuid::Uuid::new_v4()), node, key, body, now],
                )
                .doing("adding an interface")?;
                added.push(name);
            }
            Some((_, old, None)) if old == body => unchanged += 1,
            Some((id, _, was_absent)) => {
                tx.execute(
                    "UPDATE interfaces SET body_json = ?2, absent_at_ms = NULL, \
                     updated_at_ms = ?3 WHERE id = ?1",
                    params![id, body, now],
                )
                .doing("updating an interface")?;
                if was_absent.is_some() {
                    reactivated.push(name);
                } else {
                    updated.push(name);
                }
            }
        }
    }
    let mut stmt = tx
        .prepare_cached(
            "SELECT id, match_key, body_json, absent_at_ms FROM interfaces WHERE node_id = ?1",
        )
        .doing("reading interfaces")?;
    let all = stmt
        .query_map(params![node], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })
        .doing("reading interfaces")?
        .collect::<Result<Vec<_>, _>>()
        .doing("reading interfaces")?;
    for (id, key, body, was_absent) in all {
        if seen.contains(&key) {
            continue;
        }
        if was_absent.is_some() {
            unchanged += 1;
            continue;
        }
        tx.execute(
            "UPDATE interfaces SET absent_at_ms = ?2, updated_at_ms = ?2 WHERE id = ?1",
            params![id, now],
        )
        .doing("flagging an interface absent")?;
        let name = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|b| {
                b.get("systemName")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or(key);
        absent.push(name);
    }
    let changed =
        !(added.is_empty() && updated.is_empty() && reactivated.is_empty() && absent.is_empty());
    Ok(Some(json!({
        "changed": changed,
        "node": node_json(tx, node, now)?,
        "summary": {"added": added, "absent": absent, "reactivated": reactivated,
                    "unchanged": unchanged, "updated": updated},
    })))
}

/// `GET /nodes/{id}/config`; `None` if there is no such node.
pub(crate) fn config(tx: &Connection, node: &str) -> Result<Option<Value>, StoreError> {
    let found: Option<(i64, String, Option<String>)> = tx
        .query_row(
            "SELECT max_concurrent_recordings, cache_policies_json, monitor_enhancement_json \
             FROM nodes WHERE id = ?1",
            params![node],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .doing("reading a node's config")?;
    Ok(found.map(|(n, policies, monitor)| {
        let policies: Value = serde_json::from_str(&policies).unwrap_or_else(|_| json!([]));
        let mut config = json!({
            "recordingCapacity": {"maxConcurrentRecordings": n},
            "recorderCachePolicies": policies,
        });
        if let Some(m) = monitor.and_then(|m| serde_json::from_str::<Value>(&m).ok()) {
            config["monitorEnhancement"] = m;
        }
        config
    }))
}

/// Keeps the latest meter frame per interface.
pub(crate) fn meter_frame(
    tx: &Connection,
    node: &str,
    frame: &Map<String, Value>,
    now: i64,
) -> Result<Value, StoreError> {
    let interface = frame
        .get("interfaceId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    tx.execute(
        "INSERT INTO meter_frames (node_id, interface_id, frame_json, received_at_ms) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (node_id, interface_id) DO UPDATE SET \
         frame_json = excluded.frame_json, received_at_ms = excluded.received_at_ms",
        params![
            node,
            interface,
            Value::Object(frame.clone()).to_string(),
            now
        ],
    )
    .doing("storing a meter frame")?;
    Ok(json!({"frame": frame, "receivedAt": time::iso_ms(now)}))
}

/// Stores a health event as a new row (never deduplicated: the agent's `id` is kept only
/// as `details.localEventId`). A `recordingId` must be one of the node's recordings.
pub(crate) fn health_event(
    tx: &Connection,
    node: &str,
    ev: HealthEventInput,
    now: i64,
) -> Result<Value, JobError> {
    if let Some(rec) = &ev.recording_id {
        let rec = store::recording(tx, rec)?.ok_or(JobError::RecordingNotFound)?;
        if rec.node_id != node {
            return Err(JobError::RecordingOtherNode);
        }
    }
    let mut details = ev.details;
    if let Some(id) = &ev.id {
        details.insert("localEventId".into(), id.clone().into());
    }
    let id = format!("hev_{}", uuid::Uuid::new_v4());
    let opened_at = ev.opened_at.as_ref().map_or(now, |(_, ms)| *ms);
    tx.execute(
        "INSERT INTO health_events (id, node_id, type, severity, details_json, opened_at_ms, \
         recording_id, schedule_id, received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id,
            node,
            ev.kind,
            ev.severity,
            Value::Object(details.clone()).to_string(),
            opened_at,
            ev.recording_id,
            ev.schedule_id,
            now
        ],
    )
    .doing("storing a health event")?;
    let mut out = json!({
        "id": id, "nodeId": node, "type": ev.kind, "severity": ev.severity,
        "details": details, "openedAt": time::iso_ms(opened_at), "status": "open",
    });
    if let Some(r) = ev.recording_id {
        out["recordingId"] = r.into();
    }
    if let Some(s) = ev.schedule_id {
        out["scheduleId"] = s.into();
    }
    Ok(out)
}

/// A node's health events, oldest first, as the API shows them.
pub(crate) fn health_events(tx: &Connection, node: &str) -> Result<Vec<Value>, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT id, type, severity, details_json, opened_at_ms, recording_id, schedule_id, \
             received_at_ms FROM health_events WHERE node_id = ?1 ORDER BY seq",
        )
        .doing("reading health events")?;
    let rows = stmt
        .query_map(params![node], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .doing("reading health events")?;
    let mut out = Vec::new();
    for row in rows {
        let (id, kind, severity, details, opened, rec, sched, received) =
            row.doing("reading health events")?;
        let details: Value = serde_json::from_str(&details)
            .map_err(|e| StoreError::Corrupt(format!("health event {id}: {e}")))?;
        let mut v = json!({"id": id, "nodeId": node, "type": kind, "severity": severity,
            "details": details, "openedAt": time::iso_ms(opened),
            "receivedAt": time::iso_ms(received)});
        if let Some(r) = rec {
            v["recordingId"] = r.into();
        }
        if let Some(s) = sched {
            v["scheduleId"] = s.into();
        }
        out.push(v);
    }
    Ok(out)
}
