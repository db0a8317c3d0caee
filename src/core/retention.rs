//! Retention by the controller's cache policies (`recorderCachePolicies` in the node's
//! config, `recorderCacheRetention` on the job), as Rakkr's recorder agent applies them:
//! a delivered recording under a policy is pruned at once when the policy says
//! `deleteAfterUpload`, else when it is older than `maxAgeDays`, when the policy's
//! recordings exceed `maxBytes` (oldest first), or while the disk's free share is under
//! `minFreeDiskPercent` (oldest first). Pure: the caller only offers recordings the
//! controller confirmed, and does the deleting.

use crate::controller::protocol::CachePolicy;

/// A delivered recording still on the box.
#[derive(Clone, Debug, PartialEq)]
pub struct Kept {
    pub job_id: String,
    pub policy_id: String,
    /// When its delivery was confirmed (wall ms).
    pub delivered_at_ms: i64,
    pub bytes: u64,
}

/// The spool's filesystem, by `statvfs`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiskUsage {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

impl DiskUsage {
    /// Bytes to free before `percent` of the disk is free.
    fn needed_for(self, percent: f64) -> u64 {
        let want = (self.total_bytes as f64 * percent / 100.0).ceil() as u64;
        want.saturating_sub(self.free_bytes)
    }

    fn free_percent(self) -> f64 {
        self.free_bytes as f64 * 100.0 / self.total_bytes.max(1) as f64
    }
}

/// Why a recording is pruned: stable words for the journal and `edgerec status`.
pub const DELETE_AFTER_UPLOAD: &str = "delete_after_upload";
pub const MAX_AGE: &str = "max_age";
pub const MAX_BYTES: &str = "max_bytes";
pub const MIN_FREE_DISK: &str = "min_free_disk";

/// The recordings to prune, each with its reason, each at most once. A recording whose
/// policy is unknown is kept.
pub fn prune_plan(
    kept: &[Kept],
    policies: &[CachePolicy],
    disk: Option<DiskUsage>,
    now_ms: i64,
) -> Vec<(String, &'static str)> {
    let mut plan = Plan::default();
    for policy in policies {
        let mut mine: Vec<&Kept> = kept
            .iter()
            .filter(|k| k.policy_id == policy.policy_id)
            .collect();
        mine.sort_by(|a, b| (a.delivered_at_ms, &a.job_id).cmp(&(b.delivered_at_ms, &b.job_id)));
        let mut retained: u64 = mine.iter().map(|k| k.bytes).sum();
        for k in &mine {
            let age_days = (now_ms - k.delivered_at_ms) as f64 / 86_400_000.0;
            let why = if policy.delete_after_upload {
                Some(DELETE_AFTER_UPLOAD)
            } else {
                policy
                    .max_age_days
                    .is_some_and(|d| age_days >= d)
                    .then_some(MAX_AGE)
            };
            if let Some(why) = why
                && plan.take(k, why)
            {
                retained = retained.saturating_sub(k.bytes);
            }
        }
        if let Some(max) = policy.max_bytes {
            for k in &mine {
                if retained <= max {
                    break;
                }
                if plan.take(k, MAX_BYTES) {
                    retained = retained.saturating_sub(k.bytes);
                }
            }
        }
        if let (Some(percent), Some(disk)) = (policy.min_free_disk_percent, disk)
            && disk.free_percent() < percent
        {
            let mut need = disk.needed_for(percent).saturating_sub(plan.freed);
            for k in &mine {
                if need == 0 {
                    break;
                }
                if plan.take(k, MIN_FREE_DISK) {
                    need = need.saturating_sub(k.bytes);
                }
            }
        }
    }
    plan.items
}

#[derive(Default)]
struct Plan {
    items: Vec<(String, &'static str)>,
    freed: u64,
}

impl Plan {
    /// Adds `k` unless it is planned already; true when added.
    fn take(&mut self, k: &Kept, why: &'static str) -> bool {
        if self.items.iter().any(|(id, _)| *id == k.job_id) {
            return false;
        }
        self.items.push((k.job_id.clone(), why));
        self.freed = self.freed.saturating_add(k.bytes);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn kept(id: &str, policy: &str, days_ago: i64, bytes: u64) -> Kept {
        Kept {
            job_id: id.into(),
            policy_id: policy.into(),
            delivered_at_ms: 100 * DAY - days_ago * DAY,
            bytes,
        }
    }

    fn policy(id: &str) -> CachePolicy {
        CachePolicy {
            policy_id: id.into(),
            delete_after_upload: false,
            max_age_days: None,
            max_bytes: None,
            min_free_disk_percent: None,
        }
    }

    #[test]
    fn each_rule_prunes_what_it_names() {
        let all = vec![
            kept("old", "p", 10, 100),
            kept("mid", "p", 5, 100),
            kept("new", "p", 1, 100),
            kept("other", "q", 30, 100),
            kept("orphan", "none", 30, 100),
        ];
        let now = 100 * DAY;
        let ids = |plan: Vec<(String, &str)>| -> Vec<(String, String)> {
            plan.into_iter().map(|(i, w)| (i, w.to_string())).collect()
        };
        let pair = |i: &str, w: &str| (i.to_string(), w.to_string());
        // (policy p, disk, expected)
        let cases = [
            (policy("p"), None, vec![]),
            (
                CachePolicy {
                    max_age_days: Some(5.0),
                    ..policy("p")
                },
                None,
                vec![pair("old", MAX_AGE), pair("mid", MAX_AGE)],
            ),
            (
                CachePolicy {
                    max_bytes: Some(150),
                    ..policy("p")
                },
                None,
                vec![pair("old", MAX_BYTES), pair("mid", MAX_BYTES)],
            ),
            (
                CachePolicy {
                    delete_after_upload: true,
                    ..policy("p")
                },
                None,
                vec![
                    pair("old", DELETE_AFTER_UPLOAD),
                    pair("mid", DELETE_AFTER_UPLOAD),
                    pair("new", DELETE_AFTER_UPLOAD),
                ],
            ),
            (
                CachePolicy {
                    min_free_disk_percent: Some(10.0),
                    ..policy("p")
                },
                // 50 of 1000 free: 50 more to free, one recording.
                Some(DiskUsage {
                    total_bytes: 1000,
                    free_bytes: 50,
                }),
                vec![pair("old", MIN_FREE_DISK)],
            ),
            (
                CachePolicy {
                    min_free_disk_percent: Some(10.0),
                    ..policy("p")
                },
                Some(DiskUsage {
                    total_bytes: 1000,
                    free_bytes: 200,
                }),
                vec![],
            ),
        ];
        for (p, disk, want) in cases {
            let got = ids(prune_plan(&all, std::slice::from_ref(&p), disk, now));
            assert_eq!(got, want, "{p:?} {disk:?}");
        }
        // Age and size together never name a recording twice.
        let both = CachePolicy {
            max_age_days: Some(5.0),
            max_bytes: Some(50),
            ..policy("p")
        };
        let got = ids(prune_plan(&all, &[both], None, now));
        assert_eq!(
            got,
            vec![
                pair("old", MAX_AGE),
                pair("mid", MAX_AGE),
                pair("new", MAX_BYTES)
            ]
        );
    }
}
