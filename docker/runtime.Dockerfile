# weir-runtime: the process each StreamJob pod runs.
#   docker build -f docker/runtime.Dockerfile -t weir-runtime:0.1.0 .
# Build stage: the workspace's pinned toolchain floor (rust-version in Cargo.toml).
FROM rust:1.94-bookworm AS build
WORKDIR /src
# The image already has what the bundled librdkafka's build needs (gcc, g++, make, zlib).
COPY . .
RUN cargo build --release --locked -p weir-runtime \
    && install -D target/release/weir-runtime /out/weir-runtime \
    && install -D "$(ldconfig -p | awk '/libz\.so\.1 /{print $NF; exit}')" /out/lib/libz.so.1

# Run stage: glibc and libgcc only, no shell, no package manager; uid 65532 (nonroot), which
# is also what the operator's pods set. The root filesystem can be read-only: the runtime
# writes nothing locally (checkpoints go to S3, the termination message to
# /dev/termination-log).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/weir-runtime /usr/local/bin/weir-runtime
# librdkafka's compression links zlib, which distroless/cc does not carry.
COPY --from=build /out/lib/libz.so.1 /usr/lib/libz.so.1
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/weir-runtime"]
