//! How a Kafka client reaches the brokers: a source's or sink's `security`, read once with
//! its secrets taken from the environment. librdkafka gets it as properties
//! ([`ClientSecurity::apply`]); the transaction-recovery client ([`super::wire`]) gets a TLS
//! connector and the SASL credentials from the same value, so both reach the same brokers
//! the same way.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rdkafka::ClientConfig;
use weir_crds::{KafkaProtocol, KafkaSecurity, SaslMechanism};

use crate::tls::{TlsPem, env_var};

/// The wire client's TLS setup, built on first use and shared by clones.
type Connector = Arc<OnceLock<Result<Option<tokio_rustls::TlsConnector>, String>>>;

/// A connection's security, resolved: protocol, SASL credentials and TLS material.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    protocol: KafkaProtocol,
    sasl: Option<SaslCredentials>,
    tls: Option<TlsPem>,
    /// Built once per value (not per connection: it may read the system's CA bundle).
    connector: Connector,
}

/// SASL mechanism, user and password. The password never appears in `Debug`.
#[derive(Clone)]
pub struct SaslCredentials {
    /// Mechanism.
    pub mechanism: SaslMechanism,
    /// User name.
    pub username: String,
    password: String,
}

impl SaslCredentials {
    /// The password, for the authentication exchange only.
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("protocol", &self.protocol)
            .field(
                "sasl",
                &self
                    .sasl
                    .as_ref()
                    .map(|s| (s.mechanism.name(), s.username.as_str(), "<redacted>")),
            )
            .field("tls", &self.tls)
            .finish()
    }
}

impl ClientSecurity {
    /// Reads the environment variables `spec` names. `field` is where `spec` sits in the job
    /// file (`source.kafka.security`), for the error.
    ///
    /// # Errors
    /// A named variable that is not set, naming it and its field.
    pub fn from_spec(field: &str, spec: &KafkaSecurity) -> Result<Self, String> {
        Self::from_spec_with(field, spec, |name| std::env::var(name).ok())
    }

    /// [`ClientSecurity::from_spec`] with the variables looked up by `lookup` (a test's own
    /// clients, which must not change the process environment).
    ///
    /// # Errors
    /// A named variable that `lookup` does not know, naming it and its field.
    pub fn from_spec_with(
        field: &str,
        spec: &KafkaSecurity,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let sasl = match &spec.sasl {
            Some(s) => Some(SaslCredentials {
                mechanism: s.mechanism,
                username: s.username.clone(),
                password: env_var(
                    &lookup,
                    &s.password_env,
                    &format!("{field}.sasl.passwordEnv"),
                )?,
            }),
            None => None,
        };
        let tls = match (&spec.tls, spec.protocol.tls()) {
            (Some(t), true) => Some(TlsPem::from_spec(&format!("{field}.tls"), t, &lookup)?),
            (None, true) => Some(TlsPem::default()),
            (_, false) => None,
        };
        Ok(Self {
            protocol: spec.protocol,
            sasl: sasl.filter(|_| spec.protocol.sasl()),
            tls,
            connector: Connector::default(),
        })
    }

    /// The protocol.
    #[must_use]
    pub fn protocol(&self) -> KafkaProtocol {
        self.protocol
    }

    /// The SASL credentials, for a `sasl-*` protocol.
    #[must_use]
    pub fn sasl(&self) -> Option<&SaslCredentials> {
        self.sasl.as_ref()
    }

    /// Sets librdkafka's `security.protocol`, `sasl.*` and `ssl.*` properties.
    pub fn apply(&self, c: &mut ClientConfig) {
        c.set("security.protocol", self.protocol.librdkafka());
        if let Some(s) = &self.sasl {
            c.set("sasl.mechanism", s.mechanism.name());
            c.set("sasl.username", &s.username);
            c.set("sasl.password", &s.password);
        }
        if let Some(t) = &self.tls {
            c.set("ssl.endpoint.identification.algorithm", "https");
            if let Some(ca) = &t.ca {
                c.set("ssl.ca.pem", ca);
            }
            if let Some(cert) = &t.cert {
                c.set("ssl.certificate.pem", cert);
            }
            if let Some(key) = &t.key {
                c.set("ssl.key.pem", key);
            }
        }
    }

    /// The TLS client for the wire protocol; `None` without TLS. Built on the first call and
    /// shared by every clone, so a recovery that connects many times reads the CA bundle once.
    ///
    /// # Errors
    /// PEM text that holds no certificate or key, or one rustls refuses.
    pub fn tls_connector(&self) -> Result<Option<tokio_rustls::TlsConnector>, String> {
        self.connector
            .get_or_init(|| self.tls.as_ref().map(build_connector).transpose())
            .clone()
    }
}

/// The wire client's TLS, from the project's one TLS setup.
fn build_connector(t: &TlsPem) -> Result<tokio_rustls::TlsConnector, String> {
    Ok(tokio_rustls::TlsConnector::from(Arc::new(
        crate::tls::client_config(t)?,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    #[test]
    fn a_missing_variable_is_named_with_its_field_and_secrets_stay_out_of_debug() {
        let spec: KafkaSecurity = serde_json::from_value(serde_json::json!({
            "protocol": "sasl-ssl",
            "sasl": {"mechanism": "SCRAM-SHA-512", "username": "weir",
                     "passwordEnv": "WEIR_TEST_SURELY_UNSET_PASSWORD"}
        }))
        .unwrap();
        let err = ClientSecurity::from_spec("sinks[0].kafka.security", &spec).unwrap_err();
        assert_eq!(
            err,
            "environment variable WEIR_TEST_SURELY_UNSET_PASSWORD \
             (sinks[0].kafka.security.sasl.passwordEnv) is not set"
        );
        let s = ClientSecurity {
            protocol: KafkaProtocol::SaslSsl,
            sasl: Some(SaslCredentials {
                mechanism: SaslMechanism::Plain,
                username: "weir".into(),
                password: "hunter2".into(),
            }),
            tls: Some(TlsPem {
                key: Some("-----BEGIN PRIVATE KEY-----".into()),
                ..TlsPem::default()
            }),
            connector: Connector::default(),
        };
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("BEGIN"),
            "{printed}"
        );
    }

    #[test]
    fn pem_without_a_certificate_is_refused_by_field() {
        let s = ClientSecurity {
            protocol: KafkaProtocol::Ssl,
            sasl: None,
            tls: Some(TlsPem {
                ca: Some("not pem".into()),
                ..TlsPem::default()
            }),
            connector: Connector::default(),
        };
        let err = s.tls_connector().err().unwrap();
        assert!(err.starts_with("tls.caPemEnv"), "{err}");
    }
}
