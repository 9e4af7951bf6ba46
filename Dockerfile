# syntax=docker/dockerfile:1
#
# The akv-csi-provider image: the release binary on distroless/cc (glibc, libgcc and CA
# certificates, no shell, no package manager).
#
#   make image IMAGE=registry.example.com/akv-csi-provider:0.1.0
#
# Both stages are Debian 12 (bookworm), so the binary finds the glibc it was linked against
# (it needs GLIBC_2.34 at most, and only libc, libm, libgcc_s and the loader: checked by
# e2e/tests/deploy.rs). TLS is rustls: no OpenSSL in the image.

FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
# The proto is compiled by protox (pure Rust): no protoc, no C toolchain beyond what the
# image has.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p akv-csi-provider \
    && install -D -m 0755 target/release/akv-csi-provider /out/akv-csi-provider

# Runs as root (uid 0) with every capability dropped by the DaemonSet: only root may create
# the socket in the node's root-owned /var/run/secrets-store-csi-providers.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/akv-csi-provider /akv-csi-provider
EXPOSE 8989 8898
ENTRYPOINT ["/akv-csi-provider"]
CMD ["--endpoint=unix:///provider/azure.sock"]
