//! placeholder build script.
fn main() {}
