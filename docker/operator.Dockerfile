# weir-operator: the controller the Helm chart deploys. For users with Docker; `make images`
# builds the same image with buildah, without a Docker engine.
#   docker build -f docker/operator.Dockerfile -t weir-operator:0.1.0 .
# Dependencies are compiled in their own layer (cargo-chef), so a source change rebuilds only
# the workspace crates.
FROM rust:1.95-bookworm AS chef
RUN cargo install --locked cargo-chef@0.1.78
WORKDIR /src

FROM chef AS plan
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=plan /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p weir-operator --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p weir-operator \
    && install -D target/release/weir-operator /out/weir-operator

# Run stage: distroless, nonroot (uid 65532), read-only root filesystem in the chart.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/weir-operator /usr/local/bin/weir-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/weir-operator"]
