use super::*;

const MIB: u64 = 1 << 20;

fn marks() -> NodeMarks {
    NodeMarks::for_spool(100 * MIB, 20 * MIB)
}

/// A condition change as a table row: (observation index, condition, opened).
type Row = (usize, Condition, bool);

/// Feeds `values` one per second through `obs`; returns (second, opened) per change.
fn run(values: &[Observation]) -> Vec<Row> {
    let mut h = NodeHealth::new(marks());
    values
        .iter()
        .enumerate()
        .flat_map(|(i, o)| {
            h.observe(o, i as i64 * 1000)
                .into_iter()
                .map(move |c| (i, c.condition, c.opened))
        })
        .collect()
}

fn skew(ms: i64) -> Observation {
    Observation {
        skew_ms: Some(ms),
        ..Default::default()
    }
}

fn free(bytes: u64) -> Observation {
    Observation {
        spool_free_bytes: Some(bytes),
        ..Default::default()
    }
}

fn cpu(share: f64) -> Observation {
    Observation {
        cpu_pressure: Some(share),
        ..Default::default()
    }
}

fn heartbeat(ok: bool) -> Observation {
    Observation {
        heartbeat_ok: Some(ok),
        ..Default::default()
    }
}

#[test]
fn each_condition_opens_and_clears_once_however_long_it_sits_near_its_mark() {
    use Condition::*;
    // (name, observations, expected changes as (index, condition, opened))
    let cases: Vec<(&str, Vec<Observation>, Vec<Row>)> = vec![
        (
            "clock skew wobbling between the marks",
            [0, 6_000, 4_000, 5_500, 3_000, -6_000, 2_000, 1_000]
                .map(skew)
                .to_vec(),
            vec![(1, ClockSkew, true), (6, ClockSkew, false)],
        ),
        (
            "skew exactly at the open mark never opens",
            [5_000; 6].map(skew).to_vec(),
            vec![],
        ),
        (
            "a slow clock counts like a fast one",
            [-7_000, -1_000].map(skew).to_vec(),
            vec![(0, ClockSkew, true), (1, ClockSkew, false)],
        ),
        (
            "spool filling past the reclaim mark and freed above it plus a reserve",
            [200, 99, 101, 110, 119, 120, 99]
                .map(|m| free(m * MIB))
                .to_vec(),
            vec![
                (1, DiskPressure, true),
                (5, DiskPressure, false),
                (6, DiskPressure, true),
            ],
        ),
        (
            "cpu pressure with a dip that does not clear it",
            [0.1, 0.6, 0.3, 0.9, 0.2].map(cpu).to_vec(),
            vec![(1, CpuPressure, true), (4, CpuPressure, false)],
        ),
        (
            "two failed heartbeats are a blip, the third opens, a success clears",
            [false, false, true, false, false, false, false, true]
                .map(heartbeat)
                .to_vec(),
            vec![(5, SyncFailed, true), (7, SyncFailed, false)],
        ),
        (
            "nothing known changes nothing",
            vec![Observation::default(); 5],
            vec![],
        ),
    ];
    for (name, obs, want) in cases {
        assert_eq!(run(&obs), want, "{name}");
    }
}

#[test]
fn a_recovery_carries_when_its_episode_began() {
    let mut h = NodeHealth::new(marks());
    assert!(h.observe(&skew(9_000), 10_000)[0].opened);
    assert!(h.observe(&skew(9_000), 20_000).is_empty());
    assert_eq!(
        h.open_conditions().collect::<Vec<_>>(),
        [(Condition::ClockSkew, 10_000)]
    );
    let cleared = h.observe(&skew(0), 30_000);
    assert_eq!(
        cleared,
        [Change {
            condition: Condition::ClockSkew,
            opened: false,
            since_ms: 10_000,
            at_ms: 30_000,
            value: 0.0
        }]
    );
    assert_eq!(h.open_conditions().count(), 0);
}

#[test]
fn every_condition_has_distinct_rakkr_names() {
    let mut names: Vec<&str> = Condition::ALL
        .iter()
        .flat_map(|c| [c.opened_event(), c.recovered_event()])
        .collect();
    assert!(names.iter().all(|n| n.starts_with("agent.")));
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 2 * Condition::ALL.len());
}
