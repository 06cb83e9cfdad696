//! The PEM text a connector's `tls` block names (Kafka, ClickHouse), read from environment
//! variables that the operator fills from Secrets, and the one way to say that such a
//! variable is missing.

use std::fmt;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use weir_crds::TlsSpec;

/// The value of environment variable `name`, which the job file names at `field`.
///
/// # Errors
/// `environment variable NAME (FIELD) is not set`.
pub fn env_var(
    lookup: impl Fn(&str) -> Option<String>,
    name: &str,
    field: &str,
) -> Result<String, String> {
    lookup(name).ok_or_else(|| format!("environment variable {name} ({field}) is not set"))
}

/// A CA bundle to trust instead of the system's, and a client certificate with its key. The
/// key never appears in `Debug`.
#[derive(Clone, Default)]
pub struct TlsPem {
    /// CA bundle.
    pub ca: Option<String>,
    /// Client certificate chain.
    pub cert: Option<String>,
    /// The client certificate's private key.
    pub key: Option<String>,
}

impl TlsPem {
    /// The variables `spec` names, looked up with `lookup`; `field` is where `spec` sits in
    /// the job file (`source.kafka.security.tls`), for the error.
    ///
    /// # Errors
    /// A named variable that is not set, naming it and its field.
    pub fn from_spec(
        field: &str,
        spec: &TlsSpec,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let read = |name: &Option<String>, what: &str| {
            name.as_deref()
                .map(|n| env_var(&lookup, n, &format!("{field}.{what}")))
                .transpose()
        };
        Ok(Self {
            ca: read(&spec.ca_pem_env, "caPemEnv")?,
            cert: read(&spec.certificate_pem_env, "certificatePemEnv")?,
            key: read(&spec.key_pem_env, "keyPemEnv")?,
        })
    }

    /// The client certificate and key, when both are given.
    #[must_use]
    pub fn identity(&self) -> Option<(&str, &str)> {
        self.cert.as_deref().zip(self.key.as_deref())
    }
}

/// `builder` trusting `tls.ca` instead of the system's roots and presenting `tls`'s client
/// certificate: the one way an HTTP connector (ClickHouse, a schema registry) takes its
/// `tls` block. `field` is where the block sits, for the error.
///
/// # Errors
/// PEM text that holds no certificate or does not parse, naming the field.
pub fn http_client(
    mut builder: reqwest::ClientBuilder,
    tls: &TlsPem,
    field: &str,
) -> Result<reqwest::Client, String> {
    if let Some(ca) = &tls.ca {
        let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
            .map_err(|e| format!("{field}.caPemEnv: {e}"))?;
        if certs.is_empty() {
            return Err(format!(
                "{field}.caPemEnv: the PEM text holds no certificate"
            ));
        }
        builder = builder.tls_certs_only(certs);
    }
    if let Some((cert, key)) = tls.identity() {
        let identity = reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes())
            .map_err(|e| format!("{field}.certificatePemEnv/keyPemEnv: {e}"))?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|e| format!("http client: {e}"))
}

impl fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPem")
            .field("ca", &self.ca.is_some())
            .field("cert", &self.cert.is_some())
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
/// The rustls client settings every TLS connection of Weir uses (Kafka's wire client,
/// PostgreSQL): trust the CA bundle given, or the system's, and present the client
/// certificate when one is given.
///
/// # Errors
/// PEM text that holds no certificate or key, or one rustls refuses, naming the field.
pub fn client_config(t: &TlsPem) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in root_certificates(t)? {
        // A system bundle may hold certificates rustls cannot use: skip those; a bundle the
        // user gave must be usable whole.
        if roots.add(c).is_err() && t.ca.is_some() {
            return Err("tls.caPemEnv: a certificate rustls refuses".into());
        }
    }
    if roots.is_empty() {
        return Err("no CA certificates in the system bundle; set tls.caPemEnv".into());
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots);
    let config = match t.identity() {
        Some((cert, key)) => {
            let chain = certificates(cert, "tls.certificatePemEnv")?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("tls.keyPemEnv: no private key in the PEM text: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls.certificatePemEnv/keyPemEnv: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// The certificates a TLS client trusts: the CA bundle given, or the system's. A client
/// library that builds its own rustls settings (MySQL's) takes these, so it trusts what
/// [`client_config`] trusts.
///
/// # Errors
/// A CA bundle that holds no certificate or is unreadable.
pub fn root_certificates(t: &TlsPem) -> Result<Vec<CertificateDer<'static>>, String> {
    match &t.ca {
        Some(pem) => certificates(pem, "tls.caPemEnv"),
        None => Ok(rustls_native_certs::load_native_certs().certs),
    }
}

fn certificates(pem: &str, field: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{field}: unreadable PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{field}: the PEM text holds no certificate"));
    }
    Ok(certs)
}
