//! The gated rolling restart: a pure function deciding which pods of the
//! StatefulSet may take a new pod template now.
//!
//! The StatefulSet's `RollingUpdate` strategy with a `partition` does the
//! restarts; the operator only moves the partition, one ordinal at a time,
//! highest first, and only when the ring can spare the pod:
//! - **Hold.** When the pod template changes, the partition goes to the
//!   StatefulSet's size in the same apply, so no pod restarts on its own.
//! - **Release one.** The highest outdated pod is released (partition =
//!   its ordinal) when every gate is open: the ring converged, the claimant
//!   up, no member unreachable, no ownership transfer pending, no fallback
//!   data waiting to be handed back (hinted handoff), every pod Ready, and
//!   no membership change this pass. Its node then stops cleanly (it says
//!   goodbye to its peers and drains its sessions; see `rpc::server`).
//! - **Wait for it.** The next one waits until the released pod runs the new
//!   revision, is Ready, and is a valid member every peer reaches again;
//!   the hinted-handoff gate above then waits for the data written to
//!   fallbacks meanwhile to come back to it.
//! - **Stop on trouble.** A released pod not back within
//!   `upgrade.podTimeoutSeconds`, or whose container cannot start (image pull
//!   failure, crash loop), sets Degraded naming it; the roll goes no further
//!   and the other pods keep serving. Reverting the template releases the
//!   broken pod at once (a pod that is not Ready serves nothing, so restarting
//!   it needs no gate), and the roll completes.
//!
//! What it leaves out: canaries and pauses on demand (set `replicas` of a
//! second cluster for that), and rolling more than one pod at a time.

use crate::crd::Rolling;
use crate::decide::{Cond, PodView, RingView, State};

/// What the StatefulSet says about its revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    /// `status.updateRevision`: the revision pods are rolled to.
    pub update_revision: String,
    /// The partition now in its spec.
    pub partition: i32,
    /// The pod template this pass applies differs from the one it has.
    pub template_changed: bool,
    /// The StatefulSet controller has seen the StatefulSet's latest spec
    /// (`status.observedGeneration`): until then its revisions are stale.
    pub observed: bool,
}

/// What the roll wants this pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Roll {
    /// The partition to apply.
    pub partition: i32,
    /// Pods running the update revision.
    pub updated: i32,
    /// The Upgrading condition.
    pub upgrading: Cond,
    /// Set when the roll is stuck on a pod.
    pub degraded: Option<Cond>,
    /// The pod released and when, to record in status.
    pub rolling: Option<Rolling>,
    /// Events to publish: (warning, reason, message).
    pub events: Vec<(bool, &'static str, String)>,
}

impl Roll {
    /// Nothing to roll (no StatefulSet yet, or the spec is refused).
    pub fn idle() -> Roll {
        Roll::up_to_date(0, String::new(), vec![])
    }

    /// Every pod on the update revision: partition back to 0.
    fn up_to_date(
        updated: i32,
        message: String,
        events: Vec<(bool, &'static str, String)>,
    ) -> Roll {
        Roll {
            partition: 0,
            updated,
            upgrading: Cond::new(false, "UpToDate", message),
            degraded: None,
            rolling: None,
            events,
        }
    }
}

/// Everything [`roll`] looks at.
pub struct RollInput<'a> {
    /// The StatefulSet's revisions, `None` before it exists.
    pub rollout: Option<&'a Rollout>,
    /// The StatefulSet size this pass applies.
    pub sts: i32,
    /// The pods.
    pub pods: &'a [PodView],
    /// The ring, if a member answered.
    pub ring: Option<&'a RingView>,
    /// Node name of an ordinal.
    pub node: &'a dyn Fn(i32) -> String,
    /// Pod name of an ordinal.
    pub pod: &'a dyn Fn(i32) -> String,
    /// The pod released earlier, from status.
    pub rolling: Option<&'a Rolling>,
    /// A membership change runs this pass.
    pub busy: bool,
    /// `upgrade.podTimeoutSeconds`.
    pub timeout_s: u64,
    /// Unix seconds.
    pub now: i64,
}

/// The step. See the module docs.
pub fn roll(inp: &RollInput<'_>) -> Roll {
    let Some(r) = inp.rollout else {
        return Roll::idle();
    };
    let pod = |o: i32| inp.pods.iter().find(|p| p.ordinal == o);
    let updated_pod =
        |o: i32| pod(o).is_some_and(|p| p.revision.as_deref() == Some(&r.update_revision));
    let updated =
        i32::try_from(inp.pods.iter().filter(|p| updated_pod(p.ordinal)).count()).unwrap_or(0);
    let holding = |partition: i32, reason: &str, msg: String| Roll {
        partition,
        updated,
        upgrading: Cond::new(true, reason, msg),
        degraded: None,
        rolling: inp.rolling.cloned(),
        events: vec![],
    };
    if r.template_changed {
        let mut h = holding(
            r.partition.max(inp.sts),
            "TemplateChanged",
            format!(
                "the pod template changed: pods restart one at a time from {}",
                (inp.pod)(inp.sts - 1)
            ),
        );
        h.rolling = None;
        h.events.push((
            false,
            "UpgradeStarted",
            "the pod template changed; rolling pods one at a time, highest ordinal first".into(),
        ));
        return h;
    }
    if !r.observed {
        // A stale update revision would make every pod look updated.
        return holding(
            r.partition,
            "WaitingForStatefulSet",
            "the StatefulSet controller has not seen the latest spec yet".into(),
        );
    }
    let p = r.partition.clamp(0, inp.sts);
    let reachable = |o: i32| {
        let name = (inp.node)(o);
        inp.ring.is_some_and(|ring| {
            ring.member(&name).is_some_and(|m| m.state == State::Valid)
                && !ring.unreachable.contains(&name)
        })
    };
    let back = |o: i32| updated_pod(o) && pod(o).is_some_and(|p| p.ready) && reachable(o);
    let outdated: Vec<i32> = (0..inp.sts)
        .filter(|o| pod(*o).is_some() && !updated_pod(*o))
        .collect();
    if outdated.is_empty() && inp.rolling.is_none() {
        // Nothing to roll and nothing rolled: pods being created (a new
        // cluster, a scale-up) are not the roll's business.
        return Roll::up_to_date(updated, format!("revision {}", r.update_revision), vec![]);
    }
    // A released pod that is not back yet: wait for it, or give up on it.
    if let Some(o) = (p..inp.sts).rev().find(|o| !back(*o)) {
        let since = inp
            .rolling
            .filter(|x| x.ordinal == o)
            .map_or(inp.now, |x| x.since);
        let waited = inp.now - since;
        let problem = pod(o).and_then(|x| x.problem.clone());
        let late = waited >= i64::try_from(inp.timeout_s).unwrap_or(i64::MAX);
        let name = (inp.pod)(o);
        let mut h = holding(
            p,
            "RollingPod",
            format!(
                "{name} restarted {waited}s ago: waiting for it to run the new revision, be Ready and back in the ring{}",
                problem
                    .as_ref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            ),
        );
        h.rolling = Some(Rolling { ordinal: o, since });
        if problem.is_some() || late {
            h.degraded = Some(Cond::new(
                true,
                "UpgradeStuck",
                format!(
                    "{name} is not back {waited}s after its restart ({}); the roll stopped there and the other pods keep serving: fix the cause or revert the pod template",
                    problem.unwrap_or_else(|| format!(
                        "not Ready and in the ring within upgrade.podTimeoutSeconds = {}",
                        inp.timeout_s
                    ))
                ),
            ));
        }
        return h;
    }
    let mut events = vec![];
    if let Some(x) = inp.rolling {
        events.push((
            false,
            "PodUpgraded",
            format!(
                "{} is back: new revision, Ready, in the ring ({}s after its restart)",
                (inp.pod)(x.ordinal),
                inp.now - x.since
            ),
        ));
    }
    let Some(&next) = outdated.iter().max() else {
        if inp.rolling.is_some() {
            events.push((
                false,
                "UpgradeCompleted",
                format!("all {} pods run revision {}", inp.sts, r.update_revision),
            ));
        }
        return Roll::up_to_date(updated, format!("revision {}", r.update_revision), events);
    };
    let release = |events: Vec<(bool, &'static str, String)>, why: &str| {
        let mut events = events;
        events.push((
            false,
            "RollingPod",
            format!(
                "restarting {} with the new pod template ({why}; {} of {} pods updated)",
                (inp.pod)(next),
                updated,
                inp.sts
            ),
        ));
        Roll {
            partition: next,
            updated,
            upgrading: Cond::new(
                true,
                "RollingPod",
                format!("restarting {}", (inp.pod)(next)),
            ),
            degraded: None,
            rolling: Some(Rolling {
                ordinal: next,
                since: inp.now,
            }),
            events,
        }
    };
    // A pod that is not Ready serves nothing: restarting it costs nothing
    // and may cure it (a reverted template).
    if pod(next).is_some_and(|x| !x.ready) {
        return release(events, "it is not Ready");
    }
    let gate = match inp.ring {
        None => Some("no member answered".to_string()),
        Some(_) if inp.busy => Some("a membership change runs".to_string()),
        Some(ring) if !ring.ring_ready => Some("the ring is converging".to_string()),
        Some(ring) if !ring.claimant_up => Some(format!("claimant {} is not up", ring.claimant)),
        Some(ring) if !ring.unreachable.is_empty() => {
            Some(format!("unreachable: {}", ring.unreachable.join(", ")))
        }
        Some(ring) if !ring.pending.is_empty() => Some(format!(
            "{} ownership transfers pending",
            ring.pending.len()
        )),
        Some(ring) if !ring.hinted.is_empty() => Some(format!(
            "hinted handoff not done: {}",
            ring.hinted.join(", ")
        )),
        Some(_) => (0..inp.sts)
            .find(|o| !pod(*o).is_some_and(|x| x.ready))
            .map(|o| format!("{} is not Ready", (inp.pod)(o))),
    };
    match gate {
        Some(why) => {
            let mut h = holding(
                p,
                "WaitingToRoll",
                format!("next: {}; waiting: {why}", (inp.pod)(next)),
            );
            h.rolling = None;
            h.events = events;
            h
        }
        None => release(events, "the ring is settled"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Member;

    fn node(o: i32) -> String {
        format!("flavio@demo-{o}")
    }
    fn podname(o: i32) -> String {
        format!("demo-{o}")
    }

    fn ring(n: i32) -> RingView {
        RingView {
            members: (0..n)
                .map(|o| Member {
                    name: node(o),
                    state: State::Valid,
                    ring_pct: 0.0,
                    pending_pct: None,
                    location: None,
                    incarnation: None,
                })
                .collect(),
            ring_ready: true,
            claimant: node(0),
            claimant_up: true,
            version: 1,
            pending: vec![],
            unreachable: vec![],
            items_sent: 0,
            hinted: vec![],
            cluster_id: "c".into(),
            owners: vec![],
            short_location_preflists: 0,
            n_val: 3,
        }
    }

    /// Pods 0..n, the ones in `new` at revision "new", others "old".
    fn pods(n: i32, new: &[i32]) -> Vec<PodView> {
        (0..n)
            .map(|o| PodView {
                ordinal: o,
                ready: true,
                revision: Some(if new.contains(&o) { "new" } else { "old" }.into()),
                problem: None,
            })
            .collect()
    }

    struct Fx {
        rollout: Rollout,
        pods: Vec<PodView>,
        ring: Option<RingView>,
        rolling: Option<Rolling>,
        busy: bool,
        now: i64,
    }

    fn fx(partition: i32, new: &[i32]) -> Fx {
        Fx {
            rollout: Rollout {
                update_revision: "new".into(),
                partition,
                template_changed: false,
                observed: true,
            },
            pods: pods(4, new),
            ring: Some(ring(4)),
            rolling: None,
            busy: false,
            now: 1000,
        }
    }

    fn rg(f: &mut Fx) -> &mut RingView {
        f.ring.as_mut().expect("ring")
    }

    fn run(f: &Fx) -> Roll {
        roll(&RollInput {
            rollout: Some(&f.rollout),
            sts: 4,
            pods: &f.pods,
            ring: f.ring.as_ref(),
            node: &node,
            pod: &podname,
            rolling: f.rolling.as_ref(),
            busy: f.busy,
            timeout_s: 600,
            now: f.now,
        })
    }

    #[test]
    fn a_template_change_holds_every_pod() {
        let mut f = fx(0, &[]);
        f.rollout.template_changed = true;
        let r = run(&f);
        assert_eq!(r.partition, 4);
        assert!(r.upgrading.status);
        assert_eq!(r.events[0].1, "UpgradeStarted");
    }

    #[test]
    fn a_stale_statefulset_status_moves_nothing() {
        let mut f = fx(4, &[0, 1, 2, 3]);
        f.rollout.observed = false;
        let r = run(&f);
        assert_eq!(r.partition, 4, "not reported done, not lowered");
        assert!(r.upgrading.status);
    }

    #[test]
    fn the_highest_outdated_pod_goes_first_when_the_ring_is_settled() {
        let r = run(&fx(4, &[]));
        assert_eq!(r.partition, 3);
        assert_eq!(
            r.rolling,
            Some(Rolling {
                ordinal: 3,
                since: 1000
            })
        );
        assert_eq!(r.events.last().map(|e| e.1), Some("RollingPod"));
    }

    #[test]
    fn each_gate_holds_the_next_pod() {
        type Gate = (&'static str, Box<dyn Fn(&mut Fx)>);
        let gates: Vec<Gate> = vec![
            ("not converged", Box::new(|f| rg(f).ring_ready = false)),
            ("claimant down", Box::new(|f| rg(f).claimant_up = false)),
            (
                "unreachable",
                Box::new(|f| rg(f).unreachable = vec![node(1)]),
            ),
            (
                "transfers",
                Box::new(|f| {
                    rg(f).pending = vec![crate::decide::Transfer {
                        partition: "0".into(),
                        owner: node(0),
                        next_owner: node(1),
                        complete: false,
                    }]
                }),
            ),
            ("hinted", Box::new(|f| rg(f).hinted = vec![node(2)])),
            ("pod not ready", Box::new(|f| f.pods[1].ready = false)),
            ("membership change", Box::new(|f| f.busy = true)),
            ("no ring", Box::new(|f| f.ring = None)),
        ];
        for (name, set) in gates {
            let mut f = fx(3, &[3]);
            set(&mut f);
            let r = run(&f);
            assert_eq!(r.partition, 3, "{name}: must not release pod 2");
            assert!(r.upgrading.status, "{name}");
            assert!(r.degraded.is_none(), "{name}");
        }
    }

    #[test]
    fn a_released_pod_must_be_back_before_the_next() {
        let mut f = fx(3, &[3]);
        f.rolling = Some(Rolling {
            ordinal: 3,
            since: 990,
        });
        // Updated but not Ready.
        f.pods[3].ready = false;
        let r = run(&f);
        assert_eq!(r.partition, 3);
        assert_eq!(r.upgrading.reason, "RollingPod");
        // Ready but its peers do not reach it yet.
        f.pods[3].ready = true;
        rg(&mut f).unreachable = vec![node(3)];
        assert_eq!(run(&f).partition, 3);
        // Not yet recreated (still the old revision, or gone).
        let mut g = fx(3, &[]);
        g.pods.retain(|p| p.ordinal != 3);
        assert_eq!(run(&g).partition, 3);
        // Back: the next one goes, and the first is reported.
        rg(&mut f).unreachable.clear();
        let r = run(&f);
        assert_eq!(r.partition, 2);
        assert_eq!(r.events[0].1, "PodUpgraded");
    }

    #[test]
    fn a_pod_not_back_in_time_or_failing_to_start_stops_the_roll() {
        let mut f = fx(3, &[3]);
        f.pods[3].ready = false;
        f.rolling = Some(Rolling {
            ordinal: 3,
            since: 1000 - 599,
        });
        assert!(run(&f).degraded.is_none());
        f.rolling = Some(Rolling {
            ordinal: 3,
            since: 1000 - 600,
        });
        let r = run(&f);
        assert_eq!(r.partition, 3, "no further pod is released");
        let d = r.degraded.expect("degraded");
        assert!(d.message.contains("demo-3"), "{}", d.message);
        f.rolling = Some(Rolling {
            ordinal: 3,
            since: 1000,
        });
        f.pods[3].problem = Some("ErrImagePull: image not found".into());
        let d = run(&f).degraded.expect("degraded at once");
        assert!(d.message.contains("ErrImagePull"), "{}", d.message);
    }

    #[test]
    fn a_revert_releases_the_broken_pod_without_gates() {
        // Pod 3 runs the bad revision ("bad") and is not Ready; the
        // template went back to "old", which is now the update revision.
        let mut f = fx(4, &[]);
        f.rollout.update_revision = "old".into();
        f.pods = pods(4, &[]);
        for p in &mut f.pods {
            p.revision = Some("old".into());
        }
        f.pods[3].revision = Some("bad".into());
        f.pods[3].ready = false;
        rg(&mut f).unreachable = vec![node(3)];
        let r = run(&f);
        assert_eq!(r.partition, 3);
    }

    #[test]
    fn new_pods_are_not_a_roll() {
        // A new cluster: every pod on the update revision, some not Ready
        // yet, nothing released: no Upgrading, no events.
        let mut f = fx(0, &[0, 1, 2, 3]);
        f.pods[3].ready = false;
        f.pods.retain(|p| p.ordinal != 2);
        let r = run(&f);
        assert!(!r.upgrading.status);
        assert!(r.events.is_empty(), "{:?}", r.events);
        assert_eq!(r.rolling, None);
    }

    #[test]
    fn done_when_every_pod_runs_the_update_revision() {
        let mut f = fx(0, &[0, 1, 2, 3]);
        f.rolling = Some(Rolling {
            ordinal: 0,
            since: 900,
        });
        let r = run(&f);
        assert_eq!(r.partition, 0);
        assert_eq!(r.updated, 4);
        assert!(!r.upgrading.status);
        let reasons: Vec<&str> = r.events.iter().map(|e| e.1).collect();
        assert_eq!(reasons, ["PodUpgraded", "UpgradeCompleted"]);
        assert_eq!(r.rolling, None);
    }
}
