//! libFuzzer entry for the `rules` target (crates/fuzz registers it; its properties are documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let target = custos_fuzz::target("rules").expect("registered");
    (target.run)(data);
});
