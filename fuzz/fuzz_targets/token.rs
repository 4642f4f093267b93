//! libFuzzer entry for the `token` target (crates/fuzz registers it; its properties are documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let target = custos_fuzz::target("token").expect("registered");
    (target.run)(data);
});
