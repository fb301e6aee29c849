//! children (being written).
