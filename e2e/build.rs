//! Compiles the provider proto (the product's own copy) into a client for the driver double.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["../proto/provider.proto"], ["../proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=../proto");
    Ok(())
}
