//! Deleting savepoints dropped from a job's history. The only storage the operator ever
//! deletes: it refuses any path that is not a savepoint directory, so checkpoints (and the
//! job's lineage) can never be removed by it.

use std::sync::Arc;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{ObjectStore, ObjectStoreExt};
use weir_crds::JobS3Spec;

/// The keys of a cloud credentials Secret the operator uses: credentials only. Anything else
/// object_store would accept (endpoints, token files, proxies, `allow_http`) stays out of a
/// tenant's reach, so a Secret cannot send the operator's own identity or files elsewhere.
const CREDENTIAL_KEYS: [&str; 4] = [
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
];

/// How to reach a job's storage.
#[derive(Clone, Copy)]
pub struct Access<'a> {
    /// `<storage>/<namespace>/<name>/savepoints/`: the only directory whose savepoints this
    /// job may have disposed (a path from the runtime's status is not trusted further).
    pub root: &'a str,
    /// Whether `checkpoint.cloud.credentialsSecret` names a Secret: then its keys must be
    /// there, and the operator's own identity is never used instead.
    pub cloud_secret_named: bool,
    /// Endpoint and region of `s3://` storage.
    pub s3: &'a JobS3Spec,
    /// `(access key id, secret key)` of `s3://` storage, when a Secret names them.
    pub s3_credentials: Option<(&'a str, &'a str)>,
    /// The provider's environment variables for `az://` and `gs://` storage, from
    /// `checkpoint.cloud.credentialsSecret` (over the operator's own environment).
    pub cloud: &'a [(String, String)],
}

/// Where savepoints are deleted. Behind a trait so reconcile tests record instead.
pub trait SavepointStore: Send + Sync {
    /// Delete every object under the savepoint directory `path`.
    fn dispose<'a>(
        &'a self,
        path: &'a str,
        access: Access<'a>,
    ) -> BoxFuture<'a, Result<usize, String>>;
}

/// `(scheme, bucket, prefix)` of a savepoint URI, or why it is not one.
///
/// # Errors
/// Not `s3://`, `az://` or `gs://` `bucket/.../savepoints/sp-*`.
pub fn savepoint_location(path: &str) -> Result<(&'static str, String, String), String> {
    let (scheme, rest) = ["s3", "az", "gs"]
        .into_iter()
        .find_map(|s| path.strip_prefix(&format!("{s}://")).map(|r| (s, r)))
        .ok_or_else(|| format!("`{path}` is not an s3://, az:// or gs:// URI"))?;
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
    Ok((scheme, bucket.to_string(), format!("{key}/")))
}

/// The object_store configuration a Secret's keys give: its credential keys only, as
/// object_store's lower-case config names.
fn credential_config(cloud: &[(String, String)]) -> Vec<(String, &str)> {
    cloud
        .iter()
        .filter(|(k, _)| CREDENTIAL_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect()
}

/// An object store for an Azure container or a GCS bucket: the operator's environment, then
/// the credentials Secret's credential keys over it (other keys are ignored).
fn cloud_store(
    scheme: &str,
    bucket: &str,
    cloud: &[(String, String)],
) -> Result<Arc<dyn ObjectStore>, String> {
    let keys = credential_config(cloud);
    let built = if scheme == "az" {
        let mut b = MicrosoftAzureBuilder::from_env().with_container_name(bucket);
        for (k, v) in keys {
            if let Ok(key) = k.parse::<AzureConfigKey>() {
                b = b.with_config(key, v);
            }
        }
        b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
    } else {
        let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
        for (k, v) in keys {
            if let Ok(key) = k.parse::<GoogleConfigKey>() {
                b = b.with_config(key, v);
            }
        }
        b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
    };
    built.map_err(|e| format!("{scheme}://{bucket}: {e}"))
}

/// Deletes every object under `prefix` of an Azure container or GCS bucket.
async fn dispose_cloud(
    scheme: &str,
    bucket: &str,
    prefix: &str,
    cloud: &[(String, String)],
) -> Result<usize, String> {
    let store = cloud_store(scheme, bucket, cloud)?;
    let under = object_store::path::Path::from(prefix.trim_end_matches('/'));
    let objects: Vec<_> = store
        .list(Some(&under))
        .try_collect()
        .await
        .map_err(|e| format!("listing {scheme}://{bucket}/{prefix}: {e}"))?;
    for o in &objects {
        store
            .delete(&o.location)
            .await
            .map_err(|e| format!("deleting {scheme}://{bucket}/{}: {e}", o.location))?;
    }
    Ok(objects.len())
}

/// The implementation on real storage.
#[derive(Debug, Default, Clone)]
pub struct StorageSavepoints;

impl SavepointStore for StorageSavepoints {
    fn dispose<'a>(
        &'a self,
        path: &'a str,
        access: Access<'a>,
    ) -> BoxFuture<'a, Result<usize, String>> {
        Box::pin(async move {
            let (scheme, bucket, prefix) = savepoint_location(path)?;
            if !path.starts_with(access.root) {
                return Err(format!(
                    "`{path}` is not under this job's savepoints `{}`; refusing to delete it",
                    access.root
                ));
            }
            if scheme != "s3" {
                if access.cloud_secret_named && access.cloud.is_empty() {
                    return Err(
                        "checkpoint.cloud.credentialsSecret is missing or empty; not disposing \
                         with the operator's own identity instead"
                            .to_string(),
                    );
                }
                return dispose_cloud(scheme, &bucket, &prefix, access.cloud).await;
            }
            let s3 = access.s3;
            let mut conf = aws_sdk_s3::config::Builder::new()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new(
                    s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
                ))
                .force_path_style(s3.path_style.unwrap_or(s3.endpoint.is_some()));
            if let Some(ep) = &s3.endpoint {
                conf = conf.endpoint_url(ep);
            }
            if let Some((id, secret)) = access.s3_credentials {
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
    fn a_secret_gives_credentials_and_nothing_that_redirects_the_operator() {
        let secret: Vec<(String, String)> = [
            ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
            ("AZURE_STORAGE_ACCOUNT_KEY", "k"),
            ("AZURE_STORAGE_ENDPOINT", "http://attacker.invalid"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
            ),
            ("AZURE_AUTHORITY_HOST", "http://attacker.invalid"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/etc/passwd"),
            ("GOOGLE_BASE_URL", "http://attacker.invalid"),
            ("PROXY_URL", "http://attacker.invalid"),
            ("AZURE_ALLOW_HTTP", "true"),
            ("GOOGLE_SERVICE_ACCOUNT_KEY", "{}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let kept: Vec<String> = credential_config(&secret)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            kept,
            [
                "azure_storage_account_name",
                "azure_storage_account_key",
                "google_service_account_key"
            ]
        );
        for k in &kept {
            let azure = k.parse::<AzureConfigKey>().is_ok();
            let google = k.parse::<GoogleConfigKey>().is_ok();
            assert!(azure || google, "{k} is a key object_store knows");
        }
    }

    #[test]
    fn only_savepoint_directories_can_be_disposed() {
        assert_eq!(
            savepoint_location("s3://b/weir/shop/sales/savepoints/sp-7-abc/"),
            Ok((
                "s3",
                "b".into(),
                "weir/shop/sales/savepoints/sp-7-abc/".into()
            ))
        );
        assert_eq!(
            savepoint_location("az://c/shop/sales/savepoints/sp-7-abc"),
            Ok(("az", "c".into(), "shop/sales/savepoints/sp-7-abc/".into()))
        );
        for bad in [
            "s3://b/weir/shop/sales/abc/chk-7",
            "s3://b/weir/shop/sales/savepoints",
            "s3://b",
            "file:///tmp/savepoints/sp-1",
            "gs://b/weir/shop/sales/chk-3",
        ] {
            assert!(savepoint_location(bad).is_err(), "{bad}");
        }
    }
}
