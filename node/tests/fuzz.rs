//! Every decoder of outside bytes (`flavio_node::fuzz::DECODERS`) under
//! proptest: random bytes, and valid messages of every kind mutated (bits
//! flipped, cut short, bytes inserted or overwritten). None may panic;
//! accepted values must round trip (the decoders assert it). Bounded so it
//! runs in CI: `FUZZ_CASES` cases (default 512) per strategy; the failing
//! input of a failure is shrunk and printed, and replayed by its seed.
//! Long runs: the cargo-fuzz targets in `fuzz/`.

use std::sync::OnceLock;

use flavio_node::cluster::state::RingState;
use flavio_node::cluster::transport::RingCodec;
use flavio_node::fuzz::{self, DECODERS};
use flavio_node::ring::RingSize;
use flavio_node::rpc::convert::ProtoRingCodec;
use flavio_proto::v1 as pb;
use proptest::prelude::*;
use prost::Message;

/// Valid inputs of every decoder, to mutate.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let size = RingSize::new(16).expect("size");
        let ring = RingState::singleton("c1".into(), size, "n1@h", "127.0.0.1:1");
        let ring_bytes = ProtoRingCodec.encode(&ring);
        let ring_pb = pb::RingState::decode(ring_bytes.as_slice()).expect("ring");
        let mut add_cmd = vec![2u8];
        add_cmd.extend_from_slice(&5i64.to_be_bytes());
        add_cmd.extend_from_slice(&(-7i64).to_be_bytes());
        vec![
            ring_bytes.clone(),
            pb::GossipRequest {
                from: "n1@h".into(),
                ring: Some(ring_pb.clone()),
            }
            .encode_to_vec(),
            pb::JoinReply {
                ring: Some(ring_pb),
            }
            .encode_to_vec(),
            pb::JoinRequest {
                node: "n2@h".into(),
                addr: "127.0.0.1:2".into(),
                ring_size: 16,
                incarnation: "abc".into(),
            }
            .encode_to_vec(),
            pb::PeerRequest {
                id: 7,
                partition: 3,
                kind: Some(pb::peer_request::Kind::Command(add_cmd.clone())),
                ..Default::default()
            }
            .encode_to_vec(),
            pb::HandoffMessage {
                msg: Some(pb::handoff_message::Msg::Start(pb::HandoffStart {
                    partition: 3,
                    from: "n1@h".into(),
                    to: "n2@h".into(),
                    session: 9,
                    ring_size: 16,
                })),
            }
            .encode_to_vec(),
            pb::HandoffAck {
                ack: Some(pb::handoff_ack::Ack::Finished(4)),
            }
            .encode_to_vec(),
            pb::HintRequest {
                partition: 3,
                id: 1,
                from: "n1@h".into(),
                items: vec![5u64.to_be_bytes().to_vec()],
                ..Default::default()
            }
            .encode_to_vec(),
            flavio_node::cluster::handoff::hinted::encode_items(&[vec![1, 2], vec![]]),
            pb::AddRequest {
                a: 1,
                b: 2,
                n: Some(3),
                ..Default::default()
            }
            .encode_to_vec(),
            add_cmd,
            b"add\x001\x00-9223372036854775808".to_vec(),
            b"bench\x00--duration\x005s\x00--concurrency\x0064".to_vec(),
            b"serve\x00--ring-size\x0064\x00--listen\x00127.0.0.1:1".to_vec(),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    Set(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
    ]
}

fn mutate(mut bytes: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if let Some(x) = bytes.get_mut(i % len) {
                    *x ^= 1 << b;
                }
            }
            Mutation::Cut(i) => bytes.truncate(i % len),
            Mutation::Insert(i, v) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, v.iter().copied());
            }
            Mutation::Set(i, b) => {
                if let Some(x) = bytes.get_mut(i % len) {
                    *x = *b;
                }
            }
        }
    }
    bytes
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn run_all(bytes: &[u8]) {
    for (_, decode) in DECODERS {
        let _ = decode(bytes);
    }
}

#[test]
fn the_seeds_are_valid_inputs() {
    // Without this the fuzzing below could be decoding nothing but garbage.
    let s = seeds();
    assert!(fuzz::ring_file(&s[0]));
    assert!(fuzz::gossip(&s[1]));
    assert!(fuzz::join_reply(&s[2]));
    assert!(fuzz::join_request(&s[3]));
    assert!(fuzz::peer_request(&s[4]));
    assert!(fuzz::handoff_message(&s[5]));
    assert!(fuzz::handoff_ack(&s[6]));
    assert!(fuzz::hint(&s[7]));
    assert!(fuzz::hint_record(&s[8]));
    assert!(fuzz::client_requests(&s[9]));
    assert!(fuzz::vnode_values(&s[10]));
    assert!(fuzz::command_line(&s[11]));
    assert!(fuzz::command_line(&s[12]));
    assert!(fuzz::command_line(&s[13]));
    assert!(!fuzz::command_line(b"add\x001\x009223372036854775808"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        run_all(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        seed in 0usize..64,
        ms in prop::collection::vec(mutation(), 1..6),
    ) {
        let s = seeds();
        let bytes = mutate(s[seed % s.len()].clone(), &ms);
        run_all(&bytes);
    }
}
