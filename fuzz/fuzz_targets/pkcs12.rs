//! Fuzzes a PFX, alone and as a certificate's secret.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| akv_csi_provider::render::fuzz::pkcs12(data));
