//! Every decoder of outside bytes: the first byte picks the decoder, the
//! rest is its input (so the fuzzer learns each format on its own).
//!
//! cargo +nightly fuzz run decoders -- -max_total_time=600

#![no_main]

use flavio_node::fuzz::DECODERS;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((&pick, input)) = data.split_first() {
        let (_, decode) = DECODERS[usize::from(pick) % DECODERS.len()];
        let _ = decode(input);
    }
});
