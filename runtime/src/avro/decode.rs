//! Kafka values in the Confluent wire format into record batches of the job's schema.

use std::collections::{BTreeMap, HashMap};

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;

use super::schema::{check_size, check_timestamps, reader_schema, record_full_name};

/// Unreadable schema ids remembered at most (see `AvroDecoder::refuse`).
pub const MAX_UNREADABLE_IDS: usize = 4096;
use crate::schema_registry::{Registered, Registry, RegistryError, SchemaType, readable};
use crate::source::json::Decoded;

/// Rows a decoder collects before it must be flushed.
const BATCH_ROWS: usize = 8192;

/// Decodes framed Avro values into one schema, fetching writer schemas from the registry as
/// their ids first appear.
pub struct AvroDecoder {
    registry: Registry,
    target: SchemaRef,
    /// Writer schemas the job can read: id -> (schema, record full name).
    readable: BTreeMap<u32, (String, String)>,
    /// Ids whose records cannot be read, and why: each such record is a bad record.
    unreadable: HashMap<u32, String>,
    /// Decodes every readable id; rebuilt when one is added.
    decoder: Option<Decoder>,
}

impl AvroDecoder {
    /// Decoder into `target` (the source's schema) with writer schemas from `registry`.
    #[must_use]
    pub fn new(registry: Registry, target: SchemaRef) -> Self {
        Self {
            registry,
            target,
            readable: BTreeMap::new(),
            unreadable: HashMap::new(),
            decoder: None,
        }
    }

    /// A decoder for the readable `ids`, resolving each against the job's columns.
    fn build<'a>(&self, ids: impl Iterator<Item = &'a u32>) -> Result<Decoder, String> {
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        let mut names: Vec<String> = Vec::new();
        for id in ids {
            let Some((schema, name)) = self.readable.get(id) else {
                continue;
            };
            store
                .set(Fingerprint::Id(*id), AvroSchema::new(schema.clone()))
                .map_err(|e| e.to_string())?;
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let reader = reader_schema(&self.target, &names)?;
        ReaderBuilder::new()
            .with_batch_size(BATCH_ROWS)
            .with_reader_schema(AvroSchema::new(reader))
            .with_writer_schema_store(store)
            .build_decoder()
            .map_err(|e| e.to_string())
    }

    /// Records why schema `id` cannot be read. Ids are the records' to choose, so the list is
    /// emptied once it holds [`MAX_UNREADABLE_IDS`]: an id seen again is looked up again,
    /// where the list would otherwise grow with every id a stream of bad records names.
    fn refuse(&mut self, id: u32, why: String) {
        if self.unreadable.len() >= MAX_UNREADABLE_IDS {
            self.unreadable.clear();
        }
        self.unreadable.insert(id, why);
    }

    /// Fetches schema `id` and decides whether the job can read it.
    fn learn(&mut self, id: u32) -> Result<(), RegistryError> {
        let fetched = self.registry.schema_by_id_blocking(id);
        self.accept(id, fetched)
    }

    /// Decides from the registry's answer for `id` whether its records can be read.
    fn accept(
        &mut self,
        id: u32,
        fetched: Result<Option<Registered>, RegistryError>,
    ) -> Result<(), RegistryError> {
        let schema = match readable(id, fetched, &SchemaType::Avro, self.registry.url())? {
            Ok(schema) => schema,
            Err(why) => {
                self.refuse(id, why);
                return Ok(());
            }
        };
        if let Err(e) = check_size(&schema) {
            self.refuse(id, format!("schema id {id}: {e}"));
            return Ok(());
        }
        let name = match record_full_name(&schema) {
            Ok(n) => n,
            Err(e) => {
                self.refuse(id, format!("schema id {id}: {e}"));
                return Ok(());
            }
        };
        if let Err(e) = check_timestamps(&schema, &self.target) {
            self.refuse(
                id,
                format!("schema id {id} cannot be read as the source's schema: {e}"),
            );
            return Ok(());
        }
        self.readable.insert(id, (schema, name));
        // Checked alone, so one producer's incompatible schema spoils only its own records.
        if let Err(e) = self.build(std::iter::once(&id)) {
            self.readable.remove(&id);
            tracing::warn!(schema_id = id, error = %e, "a writer schema the job cannot read");
            self.refuse(
                id,
                format!("schema id {id} cannot be read as the source's schema: {e}"),
            );
        } else {
            tracing::info!(schema_id = id, "reading a new writer schema");
            self.decoder = None;
        }
        Ok(())
    }

    /// Decode `records`, each one framed Avro value.
    ///
    /// # Errors
    /// The registry could not be reached for a new schema id (the records are not at fault:
    /// the source fails and the job retries from its checkpoint), or Arrow errors joining
    /// the good records. Bad records are returned, not raised.
    pub fn decode<R: AsRef<[u8]>>(&mut self, records: &[R]) -> Result<Decoded, String> {
        let mut bad: Vec<(usize, String)> = Vec::new();
        let mut framed: Vec<usize> = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let id = match crate::schema_registry::frame_id(r.as_ref()) {
                Ok(id) => id,
                Err(e) => {
                    bad.push((i, e));
                    continue;
                }
            };
            if !self.readable.contains_key(&id) && !self.unreadable.contains_key(&id) {
                self.learn(id).map_err(|e| e.to_string())?;
            }
            match self.unreadable.get(&id) {
                Some(why) => bad.push((i, why.clone())),
                None => framed.push(i),
            }
        }
        let mut good: Vec<RecordBatch> = Vec::new();
        if !framed.is_empty() {
            let values: Vec<&[u8]> = framed.iter().map(|&i| records[i].as_ref()).collect();
            match self.decoder()?.and_then_all(&values) {
                Some(batches) => good = batches,
                None => {
                    // Somewhere a value is malformed: one by one, each with a clean decoder.
                    self.decoder = None;
                    for (&i, v) in framed.iter().zip(&values) {
                        match self.decoder()?.and_then_one(v) {
                            Ok(b) => good.push(b),
                            Err(e) => {
                                bad.push((i, e));
                                self.decoder = None;
                            }
                        }
                    }
                }
            }
        }
        bad.sort_by_key(|(i, _)| *i);
        let data = self.conform(&good)?;
        Ok(Decoded { data, bad })
    }

    fn decoder(&mut self) -> Result<Step<'_>, String> {
        if self.decoder.is_none() {
            self.decoder = Some(self.build(self.readable.keys())?);
        }
        match self.decoder.as_mut() {
            Some(d) => Ok(Step(d)),
            None => Err("no decoder".to_string()),
        }
    }

    /// The decoded batches as one batch of the target schema.
    fn conform(&self, batches: &[RecordBatch]) -> Result<RecordBatch, String> {
        let Some(first) = batches.first() else {
            return Ok(RecordBatch::new_empty(self.target.clone()));
        };
        let all = concat_batches(first.schema_ref(), batches).map_err(|e| e.to_string())?;
        super::conform(all.columns(), &self.target)
    }
}

/// The decoder while values are fed to it.
struct Step<'a>(&'a mut Decoder);

impl Step<'_> {
    /// Feeds `value` whole, flushing into `out` whenever the decoder fills (or switches
    /// writer schema); an error when the value does not end where a record ends.
    fn feed(&mut self, value: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let mut at = 0;
        loop {
            at += self.0.decode(&value[at..]).map_err(|e| e.to_string())?;
            if at == value.len() {
                return Ok(());
            }
            if !self.0.batch_is_full() {
                return Err(format!(
                    "the Avro body does not match its writer schema (stopped at byte {} of {})",
                    at,
                    value.len()
                ));
            }
            if let Some(b) = self.0.flush().map_err(|e| e.to_string())? {
                out.push(b);
            }
        }
    }

    /// All `values` decoded, or `None` when one of them is malformed.
    fn and_then_all(mut self, values: &[&[u8]]) -> Option<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for v in values {
            self.feed(v, &mut out).ok()?;
        }
        out.extend(self.0.flush().ok()?);
        (out.iter().map(RecordBatch::num_rows).sum::<usize>() == values.len()).then_some(out)
    }

    /// One value decoded into one row.
    fn and_then_one(mut self, value: &[u8]) -> Result<RecordBatch, String> {
        let mut out = Vec::new();
        self.feed(value, &mut out)?;
        out.extend(self.0.flush().map_err(|e| e.to_string())?);
        match out.as_slice() {
            [b] if b.num_rows() == 1 => Ok(b.clone()),
            _ => Err("the Avro body does not match its writer schema".to_string()),
        }
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
