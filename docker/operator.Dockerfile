# weir-operator: the controller the Helm chart deploys.
#   docker build -f docker/operator.Dockerfile -t weir-operator:0.1.0 .
FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p weir-operator \
    && install -D target/release/weir-operator /out/weir-operator

# Run stage: distroless, nonroot (uid 65532), read-only root filesystem in the chart.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/weir-operator /usr/local/bin/weir-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/weir-operator"]
