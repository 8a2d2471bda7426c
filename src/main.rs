//! The `opgate` command line.
fn main() {}
