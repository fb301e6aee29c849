//! Conversions between generated `flavio.v1` messages and domain types, in
//! one place: the client API's replies, the ring (which is also its
//! persisted form, [`ProtoRingCodec`]), member states, the cluster
//! transport's messages, and errors (through [`Error::code`] and
//! [`Error::from_code`], the one status mapping).

use std::collections::BTreeMap;
use std::time::Duration;

use flavio_proto::v1 as pb;
use prost::Message;

use crate::app::{AddOptions, AddResult, Pong, Stats};
use crate::cluster::state::{Member, MemberState, RingState, Stamps, Transfer};
use crate::cluster::transport::{
    Gossip, GossipReply, HandoffAck, HandoffMessage, HandoffStart, Hint, JoinRequest, PeerAnswer,
    PeerCall, RingCodec,
};
use crate::ring::{PartitionId, Ring, RingSize};
use crate::{Error, Result};

/// The persisted ring's format: 2 since rings carry [`Stamps`].
const RING_FORMAT: u32 = 2;

impl From<Pong> for pb::PingReply {
    fn from(p: Pong) -> Self {
        pb::PingReply {
            partition: p.partition.to_string(),
            node: p.node.to_string(),
        }
    }
}

impl From<AddResult> for pb::AddReply {
    fn from(r: AddResult) -> Self {
        pb::AddReply {
            sum: r.sum,
            replicas: r
                .replicas
                .into_iter()
                .map(|x| pb::AddReplica {
                    sum: x.sum,
                    partition: x.partition.to_string(),
                    node: x.node.to_string(),
                    fallback: x.role == crate::ring::Role::Fallback,
                })
                .collect(),
        }
    }
}

impl From<Stats> for pb::StatsReply {
    fn from(s: Stats) -> Self {
        pb::StatsReply {
            vnodes: s
                .vnodes
                .into_iter()
                .map(|v| pb::VnodeStats {
                    partition: v.partition.to_string(),
                    node: v.node.to_string(),
                    ops_count: v.ops_count,
                    fallback: v.role == crate::ring::Role::Fallback,
                })
                .collect(),
            total_ops: s.total_ops,
            partial: s.partial,
            missing: s
                .missing
                .into_iter()
                .map(|(p, reason)| pb::MissingPartition {
                    partition: p.to_string(),
                    reason,
                })
                .collect(),
        }
    }
}

fn positive(what: &str, v: Option<u32>) -> Result<Option<u32>> {
    match v {
        Some(0) => Err(Error::InvalidArgument(format!("{what} must be at least 1"))),
        v => Ok(v),
    }
}

/// The per-call options of an `AddRequest`.
pub(crate) fn add_options(r: &pb::AddRequest) -> Result<AddOptions> {
    Ok(AddOptions {
        n: positive("n", r.n)?.map(|v| v as usize),
        w: positive("w", r.w)?.map(|v| v as usize),
        timeout: positive("timeout_ms", r.timeout_ms)?
            .map(|ms| Duration::from_millis(u64::from(ms))),
        sloppy: r.sloppy,
    })
}

/// The timeout of a `StatsRequest`.
pub(crate) fn stats_timeout(r: &pb::StatsRequest) -> Result<Option<Duration>> {
    Ok(positive("timeout_ms", r.timeout_ms)?.map(|ms| Duration::from_millis(u64::from(ms))))
}

// ---------------------------------------------------------------- ring

fn state_to_pb(s: MemberState) -> pb::MemberState {
    match s {
        MemberState::Joining => pb::MemberState::Joining,
        MemberState::Valid => pb::MemberState::Valid,
        MemberState::Leaving => pb::MemberState::Leaving,
        MemberState::Exiting => pb::MemberState::Exiting,
        MemberState::Down => pb::MemberState::Down,
        MemberState::Removed => pb::MemberState::Removed,
    }
}

/// The wire form of a member state.
pub fn member_state_to_pb(s: MemberState) -> i32 {
    state_to_pb(s) as i32
}

/// A member state from its wire form; unknown values are an error.
pub fn member_state_from_pb(v: i32) -> Result<MemberState> {
    Ok(match pb::MemberState::try_from(v) {
        Ok(pb::MemberState::Joining) => MemberState::Joining,
        Ok(pb::MemberState::Valid) => MemberState::Valid,
        Ok(pb::MemberState::Leaving) => MemberState::Leaving,
        Ok(pb::MemberState::Exiting) => MemberState::Exiting,
        Ok(pb::MemberState::Down) => MemberState::Down,
        Ok(pb::MemberState::Removed) => MemberState::Removed,
        _ => {
            return Err(Error::Corrupt {
                what: "ring member state".into(),
                message: format!("unknown state {v}"),
            });
        }
    })
}

impl From<&RingState> for pb::RingState {
    fn from(r: &RingState) -> Self {
        pb::RingState {
            cluster_id: r.cluster_id.clone(),
            ring_size: r.size().get(),
            version: r.version,
            claimant: r.claimant.clone(),
            members: r
                .members
                .iter()
                .map(|(name, m)| pb::RingMember {
                    name: name.clone(),
                    addr: m.addr.clone(),
                    state: member_state_to_pb(m.state),
                    generation: r.stamps.members.get(name).copied().unwrap_or(0),
                    location: m.location.clone().unwrap_or_default(),
                    incarnation: m.incarnation.clone().unwrap_or_default(),
                })
                .collect(),
            format: RING_FORMAT,
            epoch: r.stamps.epoch,
            partition_gens: r.stamps.partitions.clone(),
            owners: r.owners.owners().map(|(_, o)| o.to_string()).collect(),
            pending: r
                .pending
                .iter()
                .map(|t| pb::RingTransfer {
                    partition: t.partition.0,
                    from: t.from.clone(),
                    to: t.to.clone(),
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::RingState> for RingState {
    type Error = Error;

    fn try_from(r: pb::RingState) -> Result<Self> {
        let size = RingSize::new(u64::from(r.ring_size))?;
        let owners = Ring::from_owners(size, &r.owners).map_err(|e| Error::Corrupt {
            what: "ring".into(),
            message: e.to_string(),
        })?;
        let mut members = BTreeMap::new();
        let mut gens = BTreeMap::new();
        for m in r.members {
            gens.insert(m.name.clone(), m.generation);
            members.insert(
                m.name,
                Member {
                    addr: m.addr,
                    state: member_state_from_pb(m.state)?,
                    location: Some(m.location).filter(|l| !l.is_empty()),
                    incarnation: Some(m.incarnation).filter(|i| !i.is_empty()),
                },
            );
        }
        let mut pending = Vec::with_capacity(r.pending.len());
        for t in r.pending {
            if t.partition >= size.get() {
                return Err(Error::Corrupt {
                    what: "ring".into(),
                    message: format!(
                        "pending transfer of partition {} beyond the ring",
                        t.partition
                    ),
                });
            }
            pending.push(Transfer {
                partition: PartitionId(t.partition),
                from: t.from,
                to: t.to,
            });
        }
        let stamps = match r.format {
            // Written before stamps: the newer ring's entries win everywhere.
            0 => Stamps::legacy(r.version, &members, size),
            RING_FORMAT => {
                if !r.partition_gens.is_empty() && r.partition_gens.len() != size.len() {
                    return Err(Error::Corrupt {
                        what: "ring".into(),
                        message: format!(
                            "{} partition generations for a ring of {size}",
                            r.partition_gens.len()
                        ),
                    });
                }
                let mut partitions = r.partition_gens;
                partitions.resize(size.len(), 0);
                Stamps {
                    epoch: r.epoch,
                    members: gens,
                    partitions,
                }
            }
            f => {
                return Err(Error::Corrupt {
                    what: "ring".into(),
                    message: format!(
                        "ring format {f} is newer than this node knows ({RING_FORMAT}): upgrade this node to the version that wrote it"
                    ),
                });
            }
        };
        Ok(RingState {
            cluster_id: r.cluster_id,
            version: r.version,
            stamps,
            claimant: r.claimant,
            members,
            owners,
            pending,
        }
        .normalized())
    }
}

/// The ring's persisted form: its `flavio.v1.RingState` message, the format
/// data directories have always held.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProtoRingCodec;

impl RingCodec for ProtoRingCodec {
    fn encode(&self, ring: &RingState) -> Vec<u8> {
        pb::RingState::from(ring).encode_to_vec()
    }

    fn decode(&self, bytes: &[u8]) -> Result<RingState> {
        let r = pb::RingState::decode(bytes).map_err(|e| Error::Corrupt {
            what: "ring".into(),
            message: e.to_string(),
        })?;
        RingState::try_from(r)
    }
}

fn ring_from(r: Option<pb::RingState>, what: &str) -> Result<RingState> {
    RingState::try_from(r.ok_or_else(|| Error::Rpc(format!("{what} without a ring")))?)
}

// ---------------------------------------------------------------- errors

/// The wire form of an error.
pub fn error_to_pb(e: &Error) -> pb::Error {
    pb::Error {
        code: e.code() as i32,
        message: e.to_string(),
    }
}

/// An error from its wire form.
pub fn error_from_pb(e: pb::Error) -> Error {
    Error::from_code(tonic::Code::from_i32(e.code), e.message)
}

// ---------------------------------------------------------------- transport

impl From<PeerCall> for pb::PeerRequest {
    fn from(c: PeerCall) -> Self {
        match c {
            PeerCall::Command {
                partition,
                cmd,
                hops,
                cluster_id,
                session,
                fallback,
            } => pb::PeerRequest {
                id: 0,
                partition: partition.0,
                kind: Some(pb::peer_request::Kind::Command(cmd)),
                partitions: Vec::new(),
                handoff_session: session,
                hops,
                cluster_id,
                fallback,
            },
            PeerCall::Coverage {
                partitions,
                req,
                hops,
                cluster_id,
                fallback,
            } => pb::PeerRequest {
                id: 0,
                partition: 0,
                kind: Some(pb::peer_request::Kind::Coverage(req)),
                partitions: partitions.iter().map(|p| p.0).collect(),
                handoff_session: 0,
                hops,
                cluster_id,
                fallback,
            },
            PeerCall::Heartbeat {
                from,
                stopping,
                cluster_id,
            } => pb::PeerRequest {
                id: 0,
                partition: 0,
                kind: Some(pb::peer_request::Kind::Heartbeat(pb::Heartbeat {
                    from,
                    stopping,
                })),
                partitions: Vec::new(),
                handoff_session: 0,
                hops: 0,
                cluster_id,
                fallback: false,
            },
        }
    }
}

/// The call a peer request carries (its id stays with the stream).
pub fn peer_call(r: pb::PeerRequest) -> Result<PeerCall> {
    match r.kind {
        Some(pb::peer_request::Kind::Command(cmd)) => Ok(PeerCall::Command {
            partition: PartitionId(r.partition),
            cmd,
            hops: r.hops,
            cluster_id: r.cluster_id,
            session: r.handoff_session,
            fallback: r.fallback,
        }),
        Some(pb::peer_request::Kind::Coverage(req)) => Ok(PeerCall::Coverage {
            partitions: r.partitions.into_iter().map(PartitionId).collect(),
            req,
            hops: r.hops,
            cluster_id: r.cluster_id,
            fallback: r.fallback,
        }),
        Some(pb::peer_request::Kind::Heartbeat(h)) => Ok(PeerCall::Heartbeat {
            from: h.from,
            stopping: h.stopping,
            cluster_id: r.cluster_id,
        }),
        None => Err(Error::InvalidArgument("peer request without a kind".into())),
    }
}

/// The wire form of an answer on the peer stream.
pub fn peer_reply_to_pb(id: u64, r: Result<PeerAnswer>) -> pb::PeerReply {
    let result = match r {
        Ok(PeerAnswer::Reply(b)) => pb::peer_reply::Result::Reply(b),
        Ok(PeerAnswer::Coverage(items)) => pb::peer_reply::Result::Coverage(pb::CoverageReplies {
            items: items
                .into_iter()
                .map(|(p, r)| pb::CoverageItem {
                    partition: p.0,
                    result: Some(match r {
                        Ok(b) => pb::coverage_item::Result::Reply(b),
                        Err(e) => pb::coverage_item::Result::Error(error_to_pb(&e)),
                    }),
                })
                .collect(),
        }),
        Ok(PeerAnswer::Heartbeat { stopping }) => {
            pb::peer_reply::Result::Heartbeat(pb::Heartbeat {
                from: String::new(),
                stopping,
            })
        }
        Err(e) => pb::peer_reply::Result::Error(error_to_pb(&e)),
    };
    pb::PeerReply {
        id,
        result: Some(result),
    }
}

/// An answer on the peer stream from its wire form.
pub fn peer_answer(r: pb::peer_reply::Result) -> Result<PeerAnswer> {
    match r {
        pb::peer_reply::Result::Reply(b) => Ok(PeerAnswer::Reply(b)),
        pb::peer_reply::Result::Error(e) => Err(error_from_pb(e)),
        pb::peer_reply::Result::Heartbeat(h) => Ok(PeerAnswer::Heartbeat {
            stopping: h.stopping,
        }),
        pb::peer_reply::Result::Coverage(c) => Ok(PeerAnswer::Coverage(
            c.items
                .into_iter()
                .map(|item| {
                    let p = PartitionId(item.partition);
                    let r = match item.result {
                        Some(pb::coverage_item::Result::Reply(b)) => Ok(b),
                        Some(pb::coverage_item::Result::Error(e)) => Err(error_from_pb(e)),
                        None => Err(Error::Rpc("empty coverage item".into())),
                    };
                    (p, r)
                })
                .collect(),
        )),
    }
}

impl From<&Gossip> for pb::GossipRequest {
    fn from(g: &Gossip) -> Self {
        pb::GossipRequest {
            from: g.from.clone(),
            ring: Some(pb::RingState::from(&g.ring)),
        }
    }
}

/// A gossip push from its wire form.
pub fn gossip(r: pb::GossipRequest) -> Result<Gossip> {
    let ring = r
        .ring
        .ok_or_else(|| Error::InvalidArgument("gossip without a ring".into()))?;
    Ok(Gossip {
        from: r.from,
        ring: RingState::try_from(ring)?,
    })
}

impl From<&GossipReply> for pb::GossipReply {
    fn from(r: &GossipReply) -> Self {
        pb::GossipReply {
            cluster_id: r.cluster_id.clone(),
            version: r.version,
            ring: r.ring.as_ref().map(pb::RingState::from),
        }
    }
}

/// A gossip answer from its wire form.
pub fn gossip_reply(r: pb::GossipReply) -> Result<GossipReply> {
    Ok(GossipReply {
        cluster_id: r.cluster_id,
        version: r.version,
        ring: r.ring.map(RingState::try_from).transpose()?,
    })
}

impl From<JoinRequest> for pb::JoinRequest {
    fn from(j: JoinRequest) -> Self {
        pb::JoinRequest {
            node: j.node,
            addr: j.addr,
            ring_size: j.ring_size,
            incarnation: j.incarnation,
        }
    }
}

impl From<pb::JoinRequest> for JoinRequest {
    fn from(j: pb::JoinRequest) -> Self {
        JoinRequest {
            node: j.node,
            addr: j.addr,
            ring_size: j.ring_size,
            incarnation: j.incarnation,
        }
    }
}

/// The ring a join answer carries.
pub fn join_reply(r: pb::JoinReply) -> Result<RingState> {
    ring_from(r.ring, "join reply")
}

impl From<HandoffMessage> for pb::HandoffMessage {
    fn from(m: HandoffMessage) -> Self {
        use pb::handoff_message::Msg;
        let msg = match m {
            HandoffMessage::Start(s) => Msg::Start(pb::HandoffStart {
                partition: s.partition.0,
                from: s.from,
                to: s.to,
                session: s.session,
                ring_size: s.ring_size,
            }),
            HandoffMessage::Item(b) => Msg::Item(b),
            HandoffMessage::Finish {
                items,
                merged_hints,
            } => Msg::Finish(pb::HandoffFinish {
                items,
                merged_hints,
            }),
        };
        pb::HandoffMessage { msg: Some(msg) }
    }
}

/// A handoff message from its wire form.
pub fn handoff_message(m: pb::HandoffMessage) -> Result<HandoffMessage> {
    use pb::handoff_message::Msg;
    match m.msg {
        Some(Msg::Start(s)) => Ok(HandoffMessage::Start(HandoffStart {
            partition: PartitionId(s.partition),
            from: s.from,
            to: s.to,
            session: s.session,
            ring_size: s.ring_size,
        })),
        Some(Msg::Item(b)) => Ok(HandoffMessage::Item(b)),
        Some(Msg::Finish(f)) => Ok(HandoffMessage::Finish {
            items: f.items,
            merged_hints: f.merged_hints,
        }),
        None => Err(Error::InvalidArgument("empty handoff message".into())),
    }
}

impl From<HandoffAck> for pb::HandoffAck {
    fn from(a: HandoffAck) -> Self {
        let ack = match a {
            HandoffAck::Started => pb::handoff_ack::Ack::Started(true),
            HandoffAck::Finished(n) => pb::handoff_ack::Ack::Finished(n),
        };
        pb::HandoffAck { ack: Some(ack) }
    }
}

/// A handoff acknowledgement from its wire form.
pub fn handoff_ack(a: pb::HandoffAck) -> Result<HandoffAck> {
    match a.ack {
        Some(pb::handoff_ack::Ack::Started(true)) => Ok(HandoffAck::Started),
        Some(pb::handoff_ack::Ack::Finished(n)) => Ok(HandoffAck::Finished(n)),
        other => Err(Error::Rpc(format!("unexpected handoff ack {other:?}"))),
    }
}

impl From<Hint> for pb::HintRequest {
    fn from(h: Hint) -> Self {
        pb::HintRequest {
            partition: h.partition.0,
            id: h.id,
            from: h.from,
            cluster_id: h.cluster_id,
            ring_size: h.ring_size,
            items: h.items,
        }
    }
}

impl From<pb::HintRequest> for Hint {
    fn from(h: pb::HintRequest) -> Self {
        Hint {
            partition: PartitionId(h.partition),
            id: h.id,
            from: h.from,
            cluster_id: h.cluster_id,
            ring_size: h.ring_size,
            items: h.items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_round_trip() {
        let size = RingSize::new(8).expect("size");
        let base = RingState::singleton("c1".into(), size, "a", "127.0.0.1:1");
        let mut r = base.clone();
        r.members.insert(
            "b".into(),
            Member {
                addr: "127.0.0.1:2".into(),
                state: MemberState::Joining,
                location: None,
                incarnation: None,
            },
        );
        r.pending.push(Transfer {
            partition: PartitionId(3),
            from: "a".into(),
            to: "b".into(),
        });
        let r = r.stamp(&base);
        let codec = ProtoRingCodec;
        let back = codec.decode(&codec.encode(&r)).expect("decodes");
        assert_eq!(back, r);
        assert_eq!(back.stamps.members.get("b"), Some(&1));
        // A ring persisted before stamps (format 0) loads with every entry
        // at its version, so the newer of two such rings wins everywhere.
        let mut old = pb::RingState::from(&r);
        old.format = 0;
        old.epoch = 0;
        old.partition_gens.clear();
        for m in &mut old.members {
            m.generation = 0;
        }
        old.version = 7;
        let legacy = codec.decode(&old.encode_to_vec()).expect("legacy loads");
        assert_eq!(legacy.stamps.epoch, 7);
        assert_eq!(legacy.stamps.partitions, vec![7; 8]);
        assert_eq!(legacy.stamps.members.get("a"), Some(&7));
        let mut future = pb::RingState::from(&r);
        future.format = 3;
        let e = codec
            .decode(&future.encode_to_vec())
            .expect_err("newer format");
        assert!(e.to_string().contains("upgrade this node"), "{e}");
        assert_eq!(back.future_owners().owner(PartitionId(3)), "b");
        assert!(codec.decode(b"\xff\xff").is_err());
    }

    #[test]
    fn errors_callers_branch_on_survive_the_wire() {
        let cases = [
            Error::Moved("m".into()),
            Error::Busy("b".into()),
            Error::FailedPrecondition("f".into()),
            Error::InvalidArgument("i".into()),
            Error::PermissionDenied("p".into()),
            Error::Rpc("r".into()),
        ];
        for e in cases {
            let back = error_from_pb(error_to_pb(&e));
            assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(&e));
            assert_eq!(back.to_string(), e.to_string());
        }
    }

    #[test]
    fn peer_calls_round_trip() {
        let call = PeerCall::Command {
            partition: PartitionId(5),
            cmd: vec![1, 2],
            hops: 1,
            cluster_id: "c".into(),
            session: 9,
            fallback: true,
        };
        assert_eq!(
            peer_call(pb::PeerRequest::from(call.clone())).expect("call"),
            call
        );
        let cov = PeerCall::Coverage {
            partitions: vec![PartitionId(1), PartitionId(7)],
            req: vec![3],
            hops: 0,
            cluster_id: String::new(),
            fallback: true,
        };
        assert_eq!(
            peer_call(pb::PeerRequest::from(cov.clone())).expect("call"),
            cov
        );
        let beat = PeerCall::Heartbeat {
            from: "a".into(),
            stopping: true,
            cluster_id: "c".into(),
        };
        assert_eq!(
            peer_call(pb::PeerRequest::from(beat.clone())).expect("call"),
            beat
        );
        let answer = peer_reply_to_pb(3, Ok(PeerAnswer::Heartbeat { stopping: true }));
        assert!(matches!(
            answer.result.map(peer_answer),
            Some(Ok(PeerAnswer::Heartbeat { stopping: true }))
        ));
    }
}
