//! controller (being written).
