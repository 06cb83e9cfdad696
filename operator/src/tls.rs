//! The process-wide TLS crypto provider.
//!
//! rustls refuses to guess when it cannot tell which provider the process wants, and it
//! panics on the first TLS handshake instead (here: the first call to an HTTPS apiserver).
//! The workspace links exactly one provider, aws-lc-rs (the AWS SDK needs it, and kube is
//! built against it too), and every entry point installs it before any client is built.

/// Installs aws-lc-rs as the process default. Idempotent: a second call (tests that start
/// several clients, or a library that got there first) keeps whichever provider is in place.
pub fn install_crypto_provider() {
    // `Err` means a provider is already installed, which is the state we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_provider_is_installed_and_a_second_call_is_harmless() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
