//! Fuzzes a KeyBundle's JSON Web Key.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| akv_csi_provider::render::fuzz::jwk(data));
