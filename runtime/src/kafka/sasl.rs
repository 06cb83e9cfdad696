//! The client side of the SASL mechanisms Kafka brokers offer, as messages: PLAIN (RFC 4616)
//! and SCRAM-SHA-256/512 (RFC 5802, RFC 7677). [`super::wire`] carries them in
//! SaslAuthenticate requests; librdkafka has its own implementation for the source and sink.

use aws_lc_rs::{digest, hmac, pbkdf2};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use weir_crds::SaslMechanism;

/// The one message of PLAIN: no authorization identity, the user, the password.
#[must_use]
pub fn plain(username: &str, password: &str) -> Vec<u8> {
    format!("\0{username}\0{password}").into_bytes()
}

/// A SCRAM exchange in progress: the client-first message was sent; the next step answers
/// the server-first message.
pub struct Scram {
    hash: Hash,
    nonce: String,
    first_bare: String,
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }
    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Self::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }
    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha512 => &digest::SHA512,
        }
    }
    fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// What the server-first message must be answered with, and how to check the server's proof.
pub struct ScramFinal {
    /// The client-final message.
    pub message: Vec<u8>,
    server_signature: Vec<u8>,
}

impl Scram {
    /// Starts an exchange for `mechanism` (a SCRAM one) with a client nonce; returns it and
    /// the client-first message. `None` for PLAIN.
    #[must_use]
    pub fn start(mechanism: SaslMechanism, username: &str, nonce: &str) -> Option<(Self, Vec<u8>)> {
        let hash = match mechanism {
            SaslMechanism::ScramSha256 => Hash::Sha256,
            SaslMechanism::ScramSha512 => Hash::Sha512,
            SaslMechanism::Plain => return None,
        };
        let user = username.replace('=', "=3D").replace(',', "=2C");
        let first_bare = format!("n={user},r={nonce}");
        let message = format!("n,,{first_bare}").into_bytes();
        Some((
            Self {
                hash,
                nonce: nonce.to_string(),
                first_bare,
            },
            message,
        ))
    }

    /// Answers the server-first message.
    ///
    /// # Errors
    /// A message that is not a server-first message, or whose nonce does not extend ours.
    pub fn answer(&self, server_first: &[u8], password: &str) -> Result<ScramFinal, String> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| "server-first message is not UTF-8".to_string())?;
        let attr = |k: &str| {
            text.split(',')
                .find_map(|p| p.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .ok_or_else(|| format!("server-first message lacks `{k}`: {text}"))
        };
        if let Ok(e) = attr("e") {
            return Err(format!("the server refused: {e}"));
        }
        let nonce = attr("r")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("the server's nonce does not extend ours".to_string());
        }
        let salt = B64
            .decode(attr("s")?)
            .map_err(|e| format!("server salt is not base64: {e}"))?;
        let iterations: u32 = attr("i")?
            .parse()
            .map_err(|e| format!("server iteration count: {e}"))?;
        let iterations = std::num::NonZeroU32::new(iterations)
            .ok_or_else(|| "server iteration count is 0".to_string())?;
        let mut salted = vec![0u8; self.hash.len()];
        pbkdf2::derive(
            self.hash.pbkdf2(),
            iterations,
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let key = hmac::Key::new(self.hash.hmac(), &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored_key = digest::digest(self.hash.digest(), client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.first_bare);
        let signature = hmac::sign(
            &hmac::Key::new(self.hash.hmac(), stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac::sign(&key, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(self.hash.hmac(), server_key.as_ref()),
            auth_message.as_bytes(),
        );
        Ok(ScramFinal {
            message: format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
            server_signature: server_signature.as_ref().to_vec(),
        })
    }
}

impl ScramFinal {
    /// Checks the server-final message: the server proves it knows the password too.
    ///
    /// # Errors
    /// An error from the server, or a signature that does not match.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(server_final);
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("the server refused: {e}"));
        }
        let sig = text
            .strip_prefix("v=")
            .ok_or_else(|| format!("server-final message lacks `v`: {text}"))?;
        let sig = B64
            .decode(sig.trim())
            .map_err(|e| format!("server signature is not base64: {e}"))?;
        if sig != self.server_signature {
            return Err(
                "the server's signature does not match: it does not know the password".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    /// The SCRAM-SHA-256 example exchange of RFC 7677, section 3.
    #[test]
    fn scram_sha_256_matches_the_rfc_7677_example() {
        let (scram, first) =
            Scram::start(SaslMechanism::ScramSha256, "user", "rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = scram.answer(server_first, "pencil").unwrap();
        assert_eq!(
            String::from_utf8(last.message.clone()).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        last.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(
            last.verify(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .is_err()
        );
    }

    /// RFC 7677 has no SHA-512 example; the expected proof and server signature here were
    /// computed independently with Python's hashlib and hmac (PBKDF2-HMAC-SHA512, 4096
    /// rounds, salt "salt"), once.
    #[test]
    fn scram_sha_512_matches_an_independent_computation() {
        let (scram, first) = Scram::start(SaslMechanism::ScramSha512, "user", "abc").unwrap();
        assert_eq!(first, b"n,,n=user,r=abc");
        let last = scram
            .answer(b"r=abcdef,s=c2FsdA==,i=4096", "pencil")
            .unwrap();
        assert_eq!(
            String::from_utf8(last.message.clone()).unwrap(),
            "c=biws,r=abcdef,p=JJ4Vjr2VyfG9EZNbKEJcoh/mkm+cCV6h9ZkeAJj6Y6vgGqW8soBqa0FIy+H1XB80oKjgGpIVxjl1/ael8YSsIw=="
        );
        last.verify(b"v=Jxrh94DTlV/zVUKnKMQavV0od+lG0gna96qQl5AZ0x2cyne9QxzW82UYdaCYXnk5IM2tmf7/5J2dTcVly2xB8Q==")
            .unwrap();
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_is_refused() {
        let (scram, _) = Scram::start(SaslMechanism::ScramSha256, "u,=x", "abc").unwrap();
        assert_eq!(scram.first_bare, "n=u=2C=3Dx,r=abc");
        assert!(scram.answer(b"r=zzz,s=c2FsdA==,i=1", "p").is_err());
        let refused = scram.answer(b"e=invalid-proof", "p").err().unwrap();
        assert!(refused.contains("refused"), "{refused}");
    }
}
