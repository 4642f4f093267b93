//! Writes custos' encoded `FileDescriptorSet` to stdout (read by cluster-tests/python/test_descriptor.py).

use std::io::Write;

fn main() -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(custos_proto::FILE_DESCRIPTOR_SET)?;
    stdout.flush()
}
