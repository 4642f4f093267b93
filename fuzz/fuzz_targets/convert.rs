//! libFuzzer entry for the `convert` target (crates/fuzz registers it; its properties are documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let target = custos_fuzz::target("convert").expect("registered");
    (target.run)(data);
});
