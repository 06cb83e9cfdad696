# weir-runtime: the process each StreamJob pod runs. For users with Docker; `make images`
# builds the same image with buildah, without a Docker engine.
#   docker build -f docker/runtime.Dockerfile -t weir-runtime:0.1.0 .
# Dependencies are compiled in their own layer (cargo-chef), so a source change rebuilds only
# the workspace crates.
FROM rust:1.95-bookworm AS chef
RUN cargo install --locked cargo-chef@0.1.78
WORKDIR /src

FROM chef AS plan
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
# The image already has what the bundled librdkafka's build needs (gcc, g++, make, zlib).
COPY --from=plan /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p weir-runtime --recipe-path recipe.json
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
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/weir-runtime"]
