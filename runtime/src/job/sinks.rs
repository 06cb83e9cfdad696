//! The job's sink connectors, prepared before anything else is touched (a wrong table or
//! topic fails the start before state is restored), and the per-subtask slots tasks write
//! through.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use weir_crds::SinkSpec;

use crate::connectors;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::sink::{SinkConnector, SinkContext, SinkEnv};
use crate::source::decode_errors::DECODE_ERROR_SCHEMA;
use crate::task::SinkSlot;

/// Every sink connector of the job by sink id: the pipeline's sinks, the windows' late-record
/// side outputs and the source's decode-error side output.
pub(super) type Connectors = BTreeMap<String, Arc<dyn SinkConnector>>;

/// Build and prepare every sink, each against the schema it will receive.
///
/// # Errors
/// A sink that cannot be reached or whose target does not fit the schema.
pub(super) async fn prepare(plan: &Plan, parallelism: u32) -> Result<Connectors> {
    let env = |sink: &str| SinkEnv {
        sink: sink.to_string(),
        job_name: plan.name.clone(),
        parallelism,
        exactly_once: plan.job.checkpoint.exactly_once,
    };
    let mut inputs: Vec<(&String, &SinkSpec, SchemaRef)> = Vec::new();
    for (i, (id, spec)) in plan.sinks.iter().enumerate() {
        let schema = plan
            .sink_schema(i)
            .ok_or_else(|| Error::internal(format!("nothing feeds sink {id}")))?;
        inputs.push((id, spec, schema));
    }
    for op in plan.operators() {
        if let Some((id, spec)) = &op.side_sink {
            inputs.push((id, spec, Arc::clone(&op.input)));
        }
    }
    if let Some((id, spec)) = &plan.decode_side {
        inputs.push((id, spec, DECODE_ERROR_SCHEMA.clone()));
    }
    let mut out = Connectors::new();
    for (id, spec, input) in inputs {
        let c = connectors::sink(spec, &env(id));
        c.prepare(&input).await?;
        out.insert(id.clone(), c);
    }
    Ok(out)
}

/// Opens the slots of one incarnation's sink subtasks.
pub(super) struct SlotOpener<'a> {
    pub connectors: &'a Connectors,
    pub parallelism: u32,
    pub generation: u64,
    pub job_id: &'a str,
}

impl SlotOpener<'_> {
    /// Subtask `subtask`'s slot of sink `id`.
    pub fn open(&self, id: &str, subtask: u32) -> Result<SinkSlot> {
        let c = self
            .connectors
            .get(id)
            .ok_or_else(|| Error::internal(format!("no connector {id}")))?;
        Ok(SinkSlot {
            id: id.to_string(),
            inst: c.open(&SinkContext {
                subtask,
                parallelism: self.parallelism,
                generation: self.generation,
                job_id: self.job_id.to_string(),
            })?,
            pending: BTreeMap::new(),
        })
    }
}
