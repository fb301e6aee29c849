//! Every decoder that reads bytes from outside the process, one function
//! each, for the fuzzers: the property tests in `tests/fuzz.rs` (bounded,
//! in CI) and the cargo-fuzz targets in `fuzz/` (long runs on demand).
//!
//! Each takes raw bytes, runs the same decoding the node runs on them (the
//! protobuf message, then its conversion into domain types and the checks
//! on those), and returns whether they were accepted. None may panic, and
//! whatever is accepted must survive a round trip where one exists. What it
//! leaves out: decoders of trusted local state only (the node's own
//! configuration).

use prost::Message;

use flavio_proto::v1 as pb;

use crate::app::{Command, CoverageReply, CoverageRequest, Reply};
use crate::cluster::transport::RingCodec;
use crate::rpc::convert;
use crate::vnode::Wire;

/// A decoder and its name, for tests that run them all.
pub type Decoder = fn(&[u8]) -> bool;

/// Every decoder, by name.
pub const DECODERS: &[(&str, Decoder)] = &[
    ("peer_request", peer_request),
    ("peer_reply", peer_reply),
    ("gossip", gossip),
    ("gossip_reply", gossip_reply),
    ("join_request", join_request),
    ("join_reply", join_reply),
    ("handoff_message", handoff_message),
    ("handoff_ack", handoff_ack),
    ("hint", hint),
    ("hint_record", hint_record),
    ("ring_file", ring_file),
    ("vnode_values", vnode_values),
    ("client_requests", client_requests),
    ("command_line", command_line),
];

/// A vnode command, reply or coverage message from a peer's stream
/// (`Cluster.Channel`).
pub fn peer_request(bytes: &[u8]) -> bool {
    pb::PeerRequest::decode(bytes)
        .ok()
        .and_then(|r| convert::peer_call(r).ok())
        .is_some()
}

/// A peer's answer on the stream.
pub fn peer_reply(bytes: &[u8]) -> bool {
    pb::PeerReply::decode(bytes)
        .ok()
        .and_then(|r| r.result)
        .and_then(|r| convert::peer_answer(r).ok())
        .is_some()
}

/// A gossiped ring.
pub fn gossip(bytes: &[u8]) -> bool {
    pb::GossipRequest::decode(bytes)
        .ok()
        .and_then(|r| convert::gossip(r).ok())
        .is_some()
}

/// The answer to a gossip.
pub fn gossip_reply(bytes: &[u8]) -> bool {
    pb::GossipReply::decode(bytes)
        .ok()
        .and_then(|r| convert::gossip_reply(r).ok())
        .is_some()
}

/// A join request: decoded, then checked as the claimant checks it.
pub fn join_request(bytes: &[u8]) -> bool {
    let Ok(r) = pb::JoinRequest::decode(bytes) else {
        return false;
    };
    let j = crate::cluster::transport::JoinRequest::from(r);
    !j.node.is_empty()
        && !j.addr.is_empty()
        && crate::ring::RingSize::new(u64::from(j.ring_size)).is_ok()
}

/// The ring a join answer carries.
pub fn join_reply(bytes: &[u8]) -> bool {
    pb::JoinReply::decode(bytes)
        .ok()
        .and_then(|r| convert::join_reply(r).ok())
        .is_some()
}

/// A message of an incoming handoff stream.
pub fn handoff_message(bytes: &[u8]) -> bool {
    pb::HandoffMessage::decode(bytes)
        .ok()
        .and_then(|m| convert::handoff_message(m).ok())
        .is_some()
}

/// An acknowledgement of an outgoing handoff.
pub fn handoff_ack(bytes: &[u8]) -> bool {
    pb::HandoffAck::decode(bytes)
        .ok()
        .and_then(|a| convert::handoff_ack(a).ok())
        .is_some()
}

/// A hinted handoff: the request, then its items as the flavio vnode
/// reads them.
pub fn hint(bytes: &[u8]) -> bool {
    let Ok(r) = pb::HintRequest::decode(bytes) else {
        return false;
    };
    let h = crate::cluster::transport::Hint::from(r);
    h.items
        .iter()
        .all(|i| crate::vnode::storage::decode_u64(i, "handoff item").is_ok())
}

/// A hint as a fallback persists it; accepted records round trip.
pub fn hint_record(bytes: &[u8]) -> bool {
    use crate::cluster::handoff::hinted::{decode_items, encode_items};
    match decode_items(bytes) {
        Ok(items) => {
            let again = decode_items(&encode_items(&items));
            assert!(again.is_ok_and(|i| i == items), "round trip");
            true
        }
        Err(_) => false,
    }
}

/// The persisted ring file, as a node reads it at start; an accepted ring
/// is encoded and decoded again to the same state.
pub fn ring_file(bytes: &[u8]) -> bool {
    let codec = convert::ProtoRingCodec;
    match codec.decode(bytes) {
        Ok(ring) => {
            let again = codec.decode(&codec.encode(&ring));
            assert!(
                again.as_ref().is_ok_and(|r| *r == ring),
                "a decoded ring does not survive a round trip"
            );
            true
        }
        Err(_) => false,
    }
}

/// The values a vnode persists or exchanges (commands, replies, coverage
/// messages, counters), each read from the same bytes; accepted values
/// round trip.
pub fn vnode_values(bytes: &[u8]) -> bool {
    fn round_trip<T: Wire + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> bool {
        match T::decode(bytes) {
            Ok(v) => {
                let mut buf = Vec::new();
                v.encode(&mut buf);
                assert_eq!(T::decode(&buf).ok().as_ref(), Some(&v), "round trip");
                true
            }
            Err(_) => false,
        }
    }
    let counter = crate::vnode::storage::decode_u64(bytes, "fuzz").is_ok();
    round_trip::<Command>(bytes)
        | round_trip::<Reply>(bytes)
        | round_trip::<CoverageRequest>(bytes)
        | round_trip::<CoverageReply>(bytes)
        | counter
}

/// A client's request: add, stats and session messages, with their options
/// checked as the server checks them.
pub fn client_requests(bytes: &[u8]) -> bool {
    let add = pb::AddRequest::decode(bytes)
        .ok()
        .is_some_and(|r| convert::add_options(&r).is_ok());
    let stats = pb::StatsRequest::decode(bytes)
        .ok()
        .is_some_and(|r| convert::stats_timeout(&r).is_ok());
    let session = pb::SessionRequest::decode(bytes).is_ok();
    add | stats | session
}

/// The command line (numbers included), split on NUL bytes into arguments
/// after `flavio`: parsed only, never run.
pub fn command_line(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let args = std::iter::once("flavio").chain(text.split('\0'));
    crate::cli::parse_only(args).is_ok()
}
