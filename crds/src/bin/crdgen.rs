//! Prints the StreamJob CRD as YAML. The committed copy lives in
//! `charts/weir/crds/streamjobs.weir.dev.yaml`; a test fails when it is stale:
//! `cargo run -p weir-crds --features kube --bin crdgen > charts/weir/crds/streamjobs.weir.dev.yaml`

fn main() -> anyhow::Result<()> {
    print!("{}", weir_crds::crd_yaml()?);
    Ok(())
}
