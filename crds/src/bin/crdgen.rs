//! Prints the StreamJob CRD as YAML, or with `--reference` the manifest reference rendered
//! from it. The committed copies live in `charts/weir/crds/streamjobs.weir.dev.yaml` and
//! `docs/streamjob-reference.md`; tests fail when either is stale:
//! `cargo run -p weir-crds --features kube --bin crdgen > charts/weir/crds/streamjobs.weir.dev.yaml`
//! `cargo run -p weir-crds --features kube --bin crdgen -- --reference > docs/streamjob-reference.md`

fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        None => print!("{}", weir_crds::crd_yaml()?),
        Some("--reference") => print!("{}", weir_crds::reference::markdown()?),
        Some(other) => anyhow::bail!("unknown argument {other}; usage: crdgen [--reference]"),
    }
    Ok(())
}
