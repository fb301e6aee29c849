//! Ring micro-benchmarks (being written).
fn main() {}
