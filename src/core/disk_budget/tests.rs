use super::*;
use DiskAction::*;
use DiskState::*;

const GIB: u64 = 1024 * MIB;

/// reserve 100, resume 200, reclaim 400.
fn small() -> DiskBudget {
    DiskBudget::new(100, 200, 400).unwrap()
}

#[test]
fn decide_table() {
    // (state, free, action, reclaim)
    let table = [
        (Writing, 1_000, Write, false),
        (Writing, 400, Write, false),
        (Writing, 399, Write, true),
        (Writing, 100, Write, true),
        (Writing, 99, Pause, true),
        (Writing, 0, Pause, true),
        (Paused, 0, StayPaused, true),
        (Paused, 150, StayPaused, true),
        // Hysteresis: back above the reserve is not enough.
        (Paused, 100, StayPaused, true),
        (Paused, 200, StayPaused, true),
        (Paused, 201, Resume, true),
        (Paused, 399, Resume, true),
        (Paused, 400, Resume, false),
        (Paused, u64::MAX, Resume, false),
    ];
    for (state, free, action, reclaim) in table {
        let d = small().decide(state, free);
        assert_eq!(
            d,
            Decision { action, reclaim },
            "{state:?} with {free} bytes free"
        );
        assert_eq!(d.action.next_state(), action.next_state());
    }
}

#[test]
fn next_state_table() {
    let table = [
        (Write, Writing),
        (Resume, Writing),
        (Pause, Paused),
        (StayPaused, Paused),
    ];
    for (action, state) in table {
        assert_eq!(action.next_state(), state, "{action:?}");
    }
}

#[test]
fn a_write_error_pauses_whatever_statvfs_says() {
    let table = [(Writing, Pause), (Paused, StayPaused)];
    for (state, action) in table {
        assert_eq!(
            small().on_write_error(state),
            Decision {
                action,
                reclaim: true
            },
            "{state:?}"
        );
    }
}

#[test]
fn a_disk_that_fills_and_drains_walks_pause_then_resume_once() {
    // Free space falls, then comes back: one pause, one resume, no flapping.
    let frees = [500, 300, 150, 99, 120, 90, 150, 200, 190, 201, 150, 120, 99];
    let mut state = Writing;
    let mut actions = Vec::new();
    for free in frees {
        let action = small().decide(state, free).action;
        if !matches!(action, Write | StayPaused) {
            actions.push((free, action));
        }
        state = action.next_state();
    }
    assert_eq!(actions, [(99, Pause), (201, Resume), (99, Pause)]);
}

#[test]
fn reclaim_need_table() {
    let table = [(0, 400), (100, 300), (399, 1), (400, 0), (10_000, 0)];
    for (free, need) in table {
        assert_eq!(small().reclaim_need(free), need, "{free} free");
    }
}

#[test]
fn new_checks_the_order_of_the_marks() {
    use BudgetError::*;
    // (reserve, resume, reclaim, result)
    let table = [
        (100, 200, 400, Ok(())),
        (1, 2, 3, Ok(())),
        (0, 200, 400, Err(ZeroReserve)),
        (
            100,
            100,
            400,
            Err(ResumeNotAboveReserve {
                reserve_below: 100,
                resume_above: 100,
            }),
        ),
        (
            300,
            200,
            400,
            Err(ResumeNotAboveReserve {
                reserve_below: 300,
                resume_above: 200,
            }),
        ),
        (
            100,
            400,
            400,
            Err(ReclaimNotAboveResume {
                resume_above: 400,
                reclaim_below: 400,
            }),
        ),
        (
            100,
            500,
            400,
            Err(ReclaimNotAboveResume {
                resume_above: 500,
                reclaim_below: 400,
            }),
        ),
    ];
    for (reserve, resume, reclaim, want) in table {
        let got = DiskBudget::new(reserve, resume, reclaim);
        match want {
            Ok(()) => {
                let b = got.unwrap();
                assert_eq!(
                    (b.reserve_below(), b.resume_above(), b.reclaim_below()),
                    (reserve, resume, reclaim)
                );
            }
            Err(e) => assert_eq!(got, Err(e), "{reserve}/{resume}/{reclaim}"),
        }
    }
}

#[test]
fn defaults_from_spool_size_table() {
    const KIB: u64 = 1024;
    // (spool size, reserve, resume, reclaim)
    let table = [
        // Tiny spools (test tmpfs): 1/8 of the spool beats the 1 MiB floor.
        (2 * MIB, 256 * KIB, 512 * KIB, MIB),
        (4 * MIB, 512 * KIB, MIB, 2 * MIB),
        (8 * MIB, MIB, 2 * MIB, 4 * MIB),
        // Small: the 1 MiB floor.
        (32 * MIB, MIB, 2 * MIB, 4 * MIB),
        // 2 % of the spool, resume and reclaim follow it.
        (100 * MIB, 2 * MIB, 4 * MIB, 8 * MIB),
        (
            5 * GIB,
            5 * GIB / 50,
            2 * (5 * GIB / 50),
            4 * (5 * GIB / 50),
        ),
        // SD card and up: the reserve is capped at 256 MiB, reclaim starts at 5 %.
        (32 * GIB, 256 * MIB, 512 * MIB, 32 * GIB / 20),
        (1024 * GIB, 256 * MIB, 512 * MIB, 1024 * GIB / 20),
    ];
    for (size, reserve, resume, reclaim) in table {
        let b = DiskBudget::for_spool_size(size).unwrap();
        assert_eq!(
            (b.reserve_below(), b.resume_above(), b.reclaim_below()),
            (reserve, resume, reclaim),
            "spool of {size} bytes"
        );
    }
}

#[test]
fn resolve_fills_in_from_the_given_marks() {
    use BudgetError::*;
    let m = |reserve, resume, reclaim| BudgetMarks {
        reserve_below: reserve,
        resume_above: resume,
        reclaim_below: reclaim,
    };
    // (spool, marks, result as (reserve, resume, reclaim))
    let table = [
        (
            GIB,
            m(None, None, None),
            Ok((GIB / 50, 2 * (GIB / 50), 4 * (GIB / 50))),
        ),
        (
            GIB,
            m(Some(64 * MIB), None, None),
            Ok((64 * MIB, 128 * MIB, 256 * MIB)),
        ),
        (GIB, m(Some(MIB), None, None), Ok((MIB, 2 * MIB, GIB / 20))),
        (
            GIB,
            m(None, Some(100 * MIB), None),
            Ok((GIB / 50, 100 * MIB, 200 * MIB)),
        ),
        (
            GIB,
            m(Some(MIB), Some(3 * MIB), Some(500 * MIB)),
            Ok((MIB, 3 * MIB, 500 * MIB)),
        ),
        (GIB, m(Some(0), None, None), Err(ZeroReserve)),
        (
            GIB,
            m(Some(10 * MIB), Some(5 * MIB), None),
            Err(ResumeNotAboveReserve {
                reserve_below: 10 * MIB,
                resume_above: 5 * MIB,
            }),
        ),
        (
            GIB,
            m(None, None, Some(MIB)),
            Err(ReclaimNotAboveResume {
                resume_above: 2 * (GIB / 50),
                reclaim_below: MIB,
            }),
        ),
        (
            64 * MIB,
            m(Some(40 * MIB), None, None),
            Err(ResumeUnreachable {
                resume_above: 80 * MIB,
                total_bytes: 64 * MIB,
            }),
        ),
        (
            7,
            m(None, None, None),
            Err(SpoolTooSmall { total_bytes: 7 }),
        ),
        (
            0,
            m(None, None, None),
            Err(SpoolTooSmall { total_bytes: 0 }),
        ),
    ];
    for (size, marks, want) in table {
        let got = DiskBudget::resolve(size, marks)
            .map(|b| (b.reserve_below(), b.resume_above(), b.reclaim_below()));
        assert_eq!(got, want, "spool {size}, {marks:?}");
    }
}

#[test]
fn past_retention_table() {
    // (ended, now, retention, past)
    let table = [
        (1_000, 1_000, 0, true),
        (1_000, 1_999, 1_000, false),
        (1_000, 2_000, 1_000, true),
        // The clock went backwards: keep it.
        (5_000, 1_000, 0, false),
        // No overflow at the extremes.
        (i64::MIN, i64::MAX, u64::MAX, true),
        (i64::MAX, i64::MIN, 0, false),
        (0, i64::MAX, u64::MAX, false),
    ];
    for (ended, now, retention, past) in table {
        assert_eq!(
            past_retention(ended, now, retention),
            past,
            "ended {ended}, now {now}, retention {retention}"
        );
    }
}

fn cand(id: &str, delivered: bool, ended_at_ms: i64, bytes: u64) -> ReclaimCandidate {
    ReclaimCandidate {
        job_id: id.to_string(),
        delivered,
        ended_at_ms,
        bytes,
    }
}

#[test]
fn reclaim_plan_table() {
    // now = 10_000, retention = 1_000: anything that ended at or before 9_000 is past it.
    let jobs = [
        cand("new", true, 9_500, 100),
        cand("c", true, 3_000, 100),
        cand("undelivered-oldest", false, 1, 1_000_000),
        cand("a", true, 1_000, 100),
        cand("b", true, 2_000, 50),
        cand("edge", true, 9_000, 10),
        cand("undelivered", false, 2_500, 1_000_000),
    ];
    // (need, plan)
    let table: [(u64, &[&str]); 8] = [
        (0, &[]),
        (1, &["a"]),
        (100, &["a"]),
        (101, &["a", "b"]),
        (150, &["a", "b"]),
        (151, &["a", "b", "c"]),
        (260, &["a", "b", "c", "edge"]),
        // Not enough to delete: everything eligible, nothing else.
        (u64::MAX, &["a", "b", "c", "edge"]),
    ];
    for (need, want) in table {
        assert_eq!(
            reclaim_plan(&jobs, 10_000, 1_000, need),
            want,
            "need {need}"
        );
    }
}

/// One row of `reclaim_plan_edge_table`.
struct PlanCase {
    name: &'static str,
    candidates: Vec<ReclaimCandidate>,
    now: i64,
    retention: u64,
    need: u64,
    plan: &'static [&'static str],
}

#[test]
fn reclaim_plan_edge_table() {
    let table = [
        PlanCase {
            name: "nothing",
            candidates: vec![],
            now: 10,
            retention: 0,
            need: 100,
            plan: &[],
        },
        PlanCase {
            name: "only undelivered",
            candidates: vec![cand("x", false, 0, 100), cand("y", false, 1, 100)],
            now: 10,
            retention: 0,
            need: 100,
            plan: &[],
        },
        PlanCase {
            name: "all inside retention",
            candidates: vec![cand("x", true, 5, 100)],
            now: 10,
            retention: 6,
            need: 100,
            plan: &[],
        },
        PlanCase {
            name: "same end time: by id",
            candidates: vec![
                cand("z", true, 5, 10),
                cand("m", true, 5, 10),
                cand("a", true, 5, 10),
            ],
            now: 10,
            retention: 0,
            need: 15,
            plan: &["a", "m"],
        },
        PlanCase {
            name: "empty recordings count for nothing but are not in the way",
            candidates: vec![cand("empty", true, 1, 0), cand("full", true, 2, 100)],
            now: 10,
            retention: 0,
            need: 50,
            plan: &["empty", "full"],
        },
        PlanCase {
            name: "clock behind every end time",
            candidates: vec![cand("x", true, 1_000, 100)],
            now: 10,
            retention: 0,
            need: 100,
            plan: &[],
        },
    ];
    for c in table {
        assert_eq!(
            reclaim_plan(&c.candidates, c.now, c.retention, c.need),
            c.plan,
            "{}",
            c.name
        );
    }
}
