//! The driver's `v1alpha1` messages and service, generated from `proto/provider.proto`.

#![allow(
    missing_docs,
    reason = "generated code; the proto file documents each field"
)]

tonic::include_proto!("v1alpha1");
