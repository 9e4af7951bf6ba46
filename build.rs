//! Compiles `proto/provider.proto` with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["proto/provider.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // Requests carry tokens and secrets, responses carry secret bytes: their
        // `Debug` impls are written by hand in `src/redact.rs`.
        .skip_debug([".v1alpha1.MountRequest", ".v1alpha1.File"])
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
