//! Framer benchmark (being written).
fn main() {}
