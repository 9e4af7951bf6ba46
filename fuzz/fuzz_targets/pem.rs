//! Fuzzes PEM text, alone and as a certificate's secret.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| akv_csi_provider::render::fuzz::pem(data));
