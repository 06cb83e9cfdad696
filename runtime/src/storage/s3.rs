//! `s3://` storage over aws-sdk-s3. Conditional create is `PutObject` with `If-None-Match: *`
//! (AWS since 2024, moto, MinIO); servers that ignore it are caught by
//! [`super::Storage::probe_conditional_writes`].

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use bytes::Bytes;
use weir_crds::S3Spec;

use super::{Result, StorageError};

/// A bucket and key prefix.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

fn err<E: std::error::Error + 'static>(
    op: &'static str,
    uri: String,
) -> impl FnOnce(SdkError<E>) -> StorageError {
    move |e| {
        let message = DisplayErrorContext(&e).to_string();
        // A certificate the client does not trust will not be trusted later either.
        let refused_tls = message.to_lowercase().contains("certificate");
        match e {
            // No answer from the endpoint (connection refused, DNS, timeout): waiting may help.
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) if !refused_tls => {
                StorageError::Unreachable { op, uri, message }
            }
            _ => StorageError::S3 { op, uri, message },
        }
    }
}

/// An HTTPS client trusting only the CA bundle in environment variable `var`.
fn private_ca_client(
    bucket: &str,
    var: &str,
) -> Result<aws_sdk_s3::config::SharedHttpClient, StorageError> {
    use aws_smithy_http_client::tls;
    let refuse = |message: String| StorageError::S3 {
        op: "configure TLS for",
        uri: format!("s3://{bucket}"),
        message,
    };
    let pem = crate::tls::env_var(|v| std::env::var(v).ok(), var, "s3.caPemEnv").map_err(refuse)?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(refuse(format!(
            "environment variable {var} (s3.caPemEnv) holds no PEM certificate"
        )));
    }
    let trust = tls::TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(pem.into_bytes());
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| refuse(format!("s3.caPemEnv: {e}")))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}

impl S3Store {
    /// Client from the standard AWS chain (env, profile, web identity), overridden by `spec`.
    ///
    /// # Errors
    /// `spec.caPemEnv` names a variable that is not set or holds no certificate.
    pub async fn new(bucket: &str, prefix: &str, spec: &S3Spec) -> Result<Self, StorageError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &spec.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(var) = &spec.ca_pem_env {
            loader = loader.http_client(private_ca_client(bucket, var)?);
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared);
        if shared.region().is_none() {
            conf = conf.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(ep) = &spec.endpoint {
            conf = conf.endpoint_url(ep);
        }
        // Non-AWS endpoints almost always need path-style; AWS itself does not.
        conf = conf.force_path_style(spec.path_style.unwrap_or(spec.endpoint.is_some()));
        Ok(Self {
            client: Client::from_conf(conf.build()),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    fn key(&self, key: &str) -> String {
        super::prefixed(&self.prefix, key)
    }

    pub(super) fn uri(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(key))
    }

    /// Create the bucket unless it exists; for tests and first-time local setups.
    ///
    /// # Errors
    /// The service's answer when creation fails for another reason than existing already.
    pub async fn create_bucket_if_missing(&self) -> Result<()> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(err("create bucket", format!("s3://{}", self.bucket)))
    }

    pub(super) async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .body(ByteStream::from(data))
            .send()
            .await
            .map(|_| ())
            .map_err(err("put", self.uri(key)))
    }

    pub(super) async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<()> {
        // One PUT streamed from the file: S3 takes up to 5 GiB so, and a state table is far
        // smaller (RocksDB cuts them at 64 MiB).
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| StorageError::Io {
                op: "read",
                uri: format!("file://{}", path.display()),
                source: std::io::Error::other(e),
            })?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(err("put", self.uri(key)))
    }

    pub(super) async fn get_file(&self, key: &str, path: &std::path::Path) -> Result<bool> {
        let Some(out) = self.get_object(key).await? else {
            return Ok(false);
        };
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|source| StorageError::Io {
                op: "create",
                uri: format!("file://{}", path.display()),
                source,
            })?;
        let mut body = out.body.into_async_read();
        tokio::io::copy(&mut body, &mut file)
            .await
            .map_err(|e| StorageError::S3 {
                op: "read",
                uri: self.uri(key),
                message: e.to_string(),
            })?;
        Ok(true)
    }

    pub(super) async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool> {
        let res = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .if_none_match("*")
            .body(ByteStream::from(data))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412)) =>
            {
                Ok(false)
            }
            Err(e) => Err(err("conditional put", self.uri(key))(e)),
        }
    }

    /// The object's response, its body not yet read; `None` when there is no such key.
    async fn get_object(
        &self,
        key: &str,
    ) -> Result<Option<aws_sdk_s3::operation::get_object::GetObjectOutput>> {
        let res = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await;
        match res {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(err("get", self.uri(key))(e)),
        }
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let Some(out) = self.get_object(key).await? else {
            return Ok(None);
        };
        let body = out.body.collect().await.map_err(|e| StorageError::S3 {
            op: "read",
            uri: self.uri(key),
            message: e.to_string(),
        })?;
        Ok(Some(body.into_bytes()))
    }

    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let full = self.key(prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(err("list", self.uri(prefix)))?;
            for obj in page.contents() {
                if let Some(k) = obj.key() {
                    out.push(k.get(strip..).unwrap_or(k).to_string());
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let keys = self.list(prefix).await?;
        for chunk in keys.chunks(1000) {
            let ids: Vec<ObjectIdentifier> = chunk
                .iter()
                .filter_map(|k| ObjectIdentifier::builder().key(self.key(k)).build().ok())
                .collect();
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| StorageError::S3 {
                    op: "delete",
                    uri: self.uri(prefix),
                    message: e.to_string(),
                })?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(err("delete", self.uri(prefix)))?;
            // A 200 answer may still list keys it did not delete (quiet mode lists only
            // those): that is a failed delete, not a done one.
            if let Some(first) = out.errors().first() {
                return Err(StorageError::S3 {
                    op: "delete",
                    uri: self.uri(prefix),
                    message: format!(
                        "{} of {} objects not deleted; first {}: {} {}",
                        out.errors().len(),
                        chunk.len(),
                        first.key().unwrap_or_default(),
                        first.code().unwrap_or_default(),
                        first.message().unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }
}
