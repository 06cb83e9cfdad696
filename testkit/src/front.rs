//! What a client meets in front of a broker that cannot serve TLS itself: a TCP forwarder, or
//! a TLS terminator (rustls) with the test CA's server certificate, optionally requiring a
//! client certificate from the same CA. Bytes pass through unchanged, so the Kafka protocol
//! (SASL included) is the broker's; only the transport is this.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running front; it stops listening when dropped, or at once with [`Front::stop`].
pub struct Front {
    task: Option<JoinHandle<()>>,
}

impl Front {
    /// Stops listening and waits until the address is free again.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// How the front talks to clients.
pub enum Transport<'a> {
    /// Plain TCP.
    Plain,
    /// TLS with `dir`'s `server.pem` / `server.key`; with `mutual`, only clients presenting a
    /// certificate signed by `dir`'s `ca.pem` get through.
    Tls { dir: &'a Path, mutual: bool },
}

/// Listens on `listen` and forwards every connection to `upstream`.
///
/// # Panics
/// When the address is taken or the certificates cannot be read (a broken test setup).
pub async fn start(listen: &str, upstream: &str, transport: Transport<'_>) -> Front {
    let listener = TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| panic!("front: cannot listen on {listen}: {e}"));
    let acceptor = match transport {
        Transport::Plain => None,
        Transport::Tls { dir, mutual } => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
            server_config(dir, mutual),
        ))),
    };
    let upstream = upstream.to_owned();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                match acceptor {
                    None => {
                        let mut client = client;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                    Some(acceptor) => {
                        // A refused handshake (wrong CA, no client certificate) just closes.
                        if let Ok(mut tls) = acceptor.accept(client).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                        }
                    }
                }
            });
        }
    });
    Front { task: Some(task) }
}

fn server_config(dir: &Path, mutual: bool) -> rustls::ServerConfig {
    let read = |name: &str| {
        std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("front: {}: {e}", dir.join(name).display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read("server.pem"))
        .collect::<Result<_, _>>()
        .expect("front: server.pem");
    let key = PrivateKeyDer::from_pem_slice(&read("server.key")).expect("front: server.key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("front: TLS versions");
    let builder = if mutual {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&read("ca.pem")) {
            roots.add(c.expect("front: ca.pem")).expect("front: CA");
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("front: client verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    builder
        .with_single_cert(chain, key)
        .expect("front: server certificate")
}
