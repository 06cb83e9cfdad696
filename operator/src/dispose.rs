//! Deleting savepoints dropped from a job's history. The only storage the operator ever
//! deletes: it refuses any path that is not a savepoint directory, so checkpoints (and the
//! job's lineage) can never be removed by it.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::future::BoxFuture;
use weir_crds::JobS3Spec;

/// Where savepoints are deleted. Behind a trait so reconcile tests record instead.
pub trait SavepointStore: Send + Sync {
    /// Delete every object under the savepoint directory `path`, using `credentials`
    /// (access key id, secret key) when given.
    fn dispose<'a>(
        &'a self,
        path: &'a str,
        s3: &'a JobS3Spec,
        credentials: Option<(String, String)>,
    ) -> BoxFuture<'a, Result<usize, String>>;
}

/// `(bucket, prefix)` of a savepoint URI, or why it is not one.
///
/// # Errors
/// Not `s3://bucket/.../savepoints/sp-*`.
pub fn savepoint_location(path: &str) -> Result<(String, String), String> {
    let rest = path
        .strip_prefix("s3://")
        .ok_or_else(|| format!("`{path}` is not an s3:// URI"))?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or_else(|| format!("`{path}` has no key"))?;
    let key = key.trim_end_matches('/');
    let last = key.rsplit('/').next().unwrap_or("");
    let parent = key.rsplit('/').nth(1).unwrap_or("");
    if parent != "savepoints" || !last.starts_with("sp-") {
        return Err(format!(
            "`{path}` is not a savepoint directory (…/savepoints/sp-*); refusing to delete it"
        ));
    }
    Ok((bucket.to_string(), format!("{key}/")))
}

/// The S3 implementation.
#[derive(Debug, Default, Clone)]
pub struct S3Savepoints;

impl SavepointStore for S3Savepoints {
    fn dispose<'a>(
        &'a self,
        path: &'a str,
        s3: &'a JobS3Spec,
        credentials: Option<(String, String)>,
    ) -> BoxFuture<'a, Result<usize, String>> {
        Box::pin(async move {
            let (bucket, prefix) = savepoint_location(path)?;
            let mut conf = aws_sdk_s3::config::Builder::new()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new(
                    s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
                ))
                .force_path_style(s3.path_style.unwrap_or(s3.endpoint.is_some()));
            if let Some(ep) = &s3.endpoint {
                conf = conf.endpoint_url(ep);
            }
            if let Some((id, secret)) = credentials {
                conf = conf.credentials_provider(aws_sdk_s3::config::Credentials::new(
                    id,
                    secret,
                    None,
                    None,
                    "weir-secret",
                ));
            }
            let client = aws_sdk_s3::Client::from_conf(conf.build());
            let mut deleted = 0;
            let mut token = None;
            loop {
                let page = client
                    .list_objects_v2()
                    .bucket(&bucket)
                    .prefix(&prefix)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(|e| DisplayErrorContext(&e).to_string())?;
                let keys: Vec<ObjectIdentifier> = page
                    .contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                    .collect();
                if !keys.is_empty() {
                    deleted += keys.len();
                    let del = Delete::builder()
                        .set_objects(Some(keys))
                        .build()
                        .map_err(|e| e.to_string())?;
                    client
                        .delete_objects()
                        .bucket(&bucket)
                        .delete(del)
                        .send()
                        .await
                        .map_err(|e| DisplayErrorContext(&e).to_string())?;
                }
                token = page.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    return Ok(deleted);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_savepoint_directories_can_be_disposed() {
        assert_eq!(
            savepoint_location("s3://b/weir/shop/sales/savepoints/sp-7-abc/"),
            Ok(("b".into(), "weir/shop/sales/savepoints/sp-7-abc/".into()))
        );
        for bad in [
            "s3://b/weir/shop/sales/abc/chk-7",
            "s3://b/weir/shop/sales/savepoints",
            "s3://b",
            "file:///tmp/savepoints/sp-1",
        ] {
            assert!(savepoint_location(bad).is_err(), "{bad}");
        }
    }
}
