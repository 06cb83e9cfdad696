//! The PEM text a connector's `tls` block names (Kafka, ClickHouse), read from environment
//! variables that the operator fills from Secrets, and the one way to say that such a
//! variable is missing.

use std::fmt;

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
