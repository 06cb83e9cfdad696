# Entry points a newcomer needs; the scripts hold the logic.
.PHONY: test quickstart images

# Install and start the local S3 server, then fmt --check, clippy -D warnings and every test.
test:
	tests/run-all.sh

# Build the runtime in release mode and run the quickstart job.
quickstart:
	cargo run --release -p weir-runtime -- run examples/quickstart.yaml

# Build the operator and runtime images (OCI archives under target/images) with buildah, then
# run each image's entrypoint from its unpacked root filesystem.
images:
	docker/images.sh build
	docker/images.sh smoke
