//! A `StreamJob` as the watch delivers it: decoded, or the field that kept it from decoding.
//!
//! The apiserver stores what the CRD schema admits, and the schema cannot say everything the
//! Rust types do (`podTemplate` is an open object, so an unknown field nested hundreds of
//! levels deep is stored as written). Watched as `StreamJob`, one such object fails the whole
//! list: the watch retries for ever and no job in the namespace is reconciled again. Each
//! object is therefore first captured as raw JSON (which serde_json skips over without
//! recursion, whatever its depth), then decoded on its own; one that does not decode is
//! still an object with a name, so it gets a condition and an event naming the field and
//! every other job goes on.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use weir_crds::validate::FieldError;
use weir_crds::{StreamJob, StreamJobStatus};

/// Path segments kept in a message about an undecodable field: a field nested 200 levels
/// deep is named by where it starts, not by 200 segments.
const PATH_SEGMENTS: usize = 8;

/// One watched `StreamJob`.
#[derive(Clone, Debug)]
pub struct Watched {
    /// The object's metadata, readable whatever its spec holds.
    pub metadata: ObjectMeta,
    /// The decoded job, or why it could not be decoded.
    pub job: Result<Arc<StreamJob>, Undecodable>,
}

/// A `StreamJob` the apiserver admitted but this operator cannot read.
#[derive(Clone, Debug, PartialEq)]
pub struct Undecodable {
    /// The field (`spec.podTemplate.spec.x...`) and what is wrong with it.
    pub error: FieldError,
    /// The status, when it still reads: the pods the operator started for the last spec it
    /// could read are in there.
    pub status: Option<StreamJobStatus>,
}

impl Watched {
    /// Decodes one object's JSON text.
    ///
    /// # Errors
    /// Only when not even the metadata reads, which the apiserver never sends.
    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        // One level at a time, as raw text (no recursion): the metadata's `managedFields`,
        // whose `fieldsV1` mirrors the spec's shape and is as deep as it, is left out (the
        // operator never reads it), so an error names the spec's field.
        let mut top: BTreeMap<&str, &RawValue> = serde_json::from_str(text)?;
        let meta_raw = top
            .get("metadata")
            .ok_or_else(|| serde::de::Error::missing_field("metadata"))?;
        let mut meta: BTreeMap<&str, &RawValue> = serde_json::from_str(meta_raw.get())?;
        meta.remove("managedFields");
        let meta = RawValue::from_string(serde_json::to_string(&meta)?)?;
        top.insert("metadata", &meta);
        let clean = serde_json::to_string(&top)?;
        let mut de = serde_json::Deserializer::from_str(&clean);
        match serde_path_to_error::deserialize::<_, StreamJob>(&mut de) {
            Ok(job) => Ok(Self {
                metadata: job.metadata.clone(),
                job: Ok(Arc::new(job)),
            }),
            Err(e) => {
                let path = e.path().clone();
                let error = field_error(&path, &e.into_inner());
                let metadata: ObjectMeta = serde_json::from_str(meta.get())?;
                let status = top
                    .get("status")
                    .and_then(|s| serde_json::from_str(s.get()).ok());
                Ok(Self {
                    metadata,
                    job: Err(Undecodable { error, status }),
                })
            }
        }
    }
}

fn field_error(path: &serde_path_to_error::Path, e: &serde_json::Error) -> FieldError {
    let segments: Vec<String> = path.iter().map(ToString::to_string).collect();
    let mut at = String::new();
    for (i, s) in segments.iter().take(PATH_SEGMENTS).enumerate() {
        if !(i == 0 || s.starts_with('[')) {
            at.push('.');
        }
        at.push_str(s);
    }
    if segments.len() > PATH_SEGMENTS {
        at.push_str("...");
    }
    if at.is_empty() {
        at.push_str("spec");
    }
    let message = if e.to_string().starts_with("recursion limit exceeded") {
        "nested too deeply to be read (over 128 levels)".to_string()
    } else {
        // serde_json appends the position in the object's text, which means nothing to a
        // user who wrote YAML.
        let text = e.to_string();
        match text.rfind(" at line ") {
            Some(i) => text[..i].to_string(),
            None => text,
        }
    };
    FieldError::new(at, format!("cannot be read by the operator: {message}"))
}

/// The name serde_json recognises to hand a value over as its raw text (what
/// `serde_json::value::RawValue` asks for); `raw_text_is_taken_without_recursion` fails if
/// it ever changes.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

impl<'de> Deserialize<'de> for Watched {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_newtype_struct(RAW_VALUE_TOKEN, WatchedVisitor)
    }
}

/// Takes an object either as its raw text (a list, read straight from the response: serde_json
/// skips over it without recursion) or, where the value was buffered first (a watch event's
/// `object`, which serde reads before its `type` is known), as a JSON value.
struct WatchedVisitor;

impl<'de> serde::de::Visitor<'de> for WatchedVisitor {
    type Value = Watched;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a StreamJob object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Watched, A::Error> {
        // serde_json's answer to the raw-value request: one entry whose value is the text.
        let Some(_token) = map.next_key::<String>()? else {
            return Err(serde::de::Error::custom("empty raw value"));
        };
        let text: std::borrow::Cow<'de, str> = map.next_value()?;
        Watched::decode(&text).map_err(serde::de::Error::custom)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Watched, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let text = serde_json::to_string(&value).map_err(serde::de::Error::custom)?;
        Watched::decode(&text).map_err(serde::de::Error::custom)
    }
}

impl Resource for Watched {
    type DynamicType = ();
    type Scope = <StreamJob as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        StreamJob::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        StreamJob::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        StreamJob::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        StreamJob::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use super::*;
    use kube::core::ObjectList;

    fn job(name: &str, spec: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "weir.dev/v1alpha1",
            "kind": "StreamJob",
            "metadata": {"name": name, "namespace": "shop", "uid": name},
            "spec": spec,
        })
    }

    fn good_spec() -> serde_json::Value {
        serde_json::json!({
            "checkpoint": {"storage": "s3://bucket/weir"},
            "pipeline": {
                "source": {
                    "datagen": {"fields": {"id": {"sequence": {}}}},
                    "schema": [{"name": "id", "type": "int64"}],
                },
                "sinks": [{"blackhole": {}}],
            },
        })
    }

    #[test]
    fn raw_text_is_taken_without_recursion() {
        let deep = format!(
            r#"{{"metadata": {{"name": "deep"}}, "spec": {}}}"#,
            nested(5000)
        );
        let w: Watched = serde_json::from_str(&deep).unwrap();
        assert_eq!(w.metadata.name.as_deref(), Some("deep"));
        assert!(w.job.is_err());
        // A good job read from a buffered value (as in a watch event) decodes too.
        let good = job("good", good_spec());
        let w: Watched = serde_json::from_value(good).unwrap();
        assert!(w.job.is_ok(), "{:?}", w.job);
    }

    /// `{"a": {"a": ... }}`, `depth` levels, as text (serde_json could not build it).
    fn nested(depth: usize) -> String {
        format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
    }

    #[test]
    fn one_undecodable_job_does_not_fail_the_list() {
        let good = job("good", good_spec());
        let mut wrong_type = good_spec();
        wrong_type["parallelism"] = serde_json::json!("four");
        let wrong_type = job("wrong-type", wrong_type);
        let mut deep = job("deep", good_spec());
        deep["spec"]["podTemplate"] = serde_json::json!({"spec": {"x": "DEEP"}});
        // As the apiserver serves it: managedFields mirror the deep field.
        deep["metadata"]["managedFields"] = serde_json::json!([{"manager": "kubectl",
            "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": "DEEP"}}]);
        let deep = serde_json::to_string(&deep)
            .unwrap()
            .replace("\"DEEP\"", &nested(300));
        let list = format!(
            r#"{{"apiVersion":"v1","kind":"List","metadata":{{}},"items":[{good},{deep},{wrong_type}]}}"#
        );
        // The typed list is what the watch used to decode: one object failed all.
        assert!(serde_json::from_str::<ObjectList<StreamJob>>(&list).is_err());

        let items = serde_json::from_str::<ObjectList<Watched>>(&list)
            .unwrap()
            .items;
        assert_eq!(items.len(), 3);
        assert!(items[0].job.is_ok());
        let deep = items[1].job.as_ref().unwrap_err();
        assert_eq!(items[1].metadata.name.as_deref(), Some("deep"));
        assert!(
            deep.error.path.starts_with("spec.podTemplate.spec.x.a"),
            "{}",
            deep.error.path
        );
        assert!(deep.error.path.ends_with("..."), "{}", deep.error.path);
        assert!(deep.error.message.contains("nested too deeply"));
        let wrong = items[2].job.as_ref().unwrap_err();
        assert_eq!(wrong.error.path, "spec.parallelism");
        assert!(!wrong.error.message.contains(" at line "), "{wrong:?}");
    }

    #[test]
    fn a_watch_event_carries_an_undecodable_job() {
        let mut bad = good_spec();
        bad["maxParallelism"] = serde_json::json!(-1);
        let mut obj = job("bad", bad);
        obj["status"] = serde_json::json!({"lifecycleState": "Running"});
        let line = serde_json::json!({"type": "MODIFIED", "object": obj}).to_string();
        let ev: kube::core::WatchEvent<Watched> = serde_json::from_str(&line).unwrap();
        let kube::core::WatchEvent::Modified(w) = ev else {
            panic!("not a modification")
        };
        let bad = w.job.unwrap_err();
        assert_eq!(bad.error.path, "spec.maxParallelism");
        assert_eq!(
            bad.status.unwrap().lifecycle_state,
            weir_crds::LifecycleState::Running
        );
    }
}
