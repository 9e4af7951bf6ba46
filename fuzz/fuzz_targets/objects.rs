//! Fuzzes the `objects` parameter of a SecretProviderClass.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| akv_csi_provider::render::fuzz::objects(data));
