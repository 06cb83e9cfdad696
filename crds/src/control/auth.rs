//! Who may call the control API's `/v1` routes: whoever holds the job's control token.
//!
//! The operator creates one Secret per StreamJob ([`secret_name`], key [`TOKEN_KEY`]) with a
//! random token, hands it to the runtime pods as the environment variable [`TOKEN_ENV`]
//! (a `secretKeyRef`, never a literal), and sends it as `Authorization: Bearer <token>`. The
//! runtime refuses a `/v1` request without it (`401`). `/healthz`, `/readyz` and `/metrics`
//! stay open: the kubelet and Prometheus call them and they change nothing.
//!
//! A runtime started without the variable (a laptop, `weir-runtime run`) serves `/v1`
//! openly; its control address defaults to loopback for that reason.

use std::fmt;

/// Environment variable the runtime reads its control token from.
pub const TOKEN_ENV: &str = "WEIR_CONTROL_TOKEN";

/// Key of the token in the job's control Secret.
pub const TOKEN_KEY: &str = "token";

/// Name of the Secret holding `job`'s control token.
#[must_use]
pub fn secret_name(job: &str) -> String {
    format!("{job}-control")
}

/// A control token. Its `Debug` hides the value, so whatever holds one can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ControlToken(String);

impl ControlToken {
    /// A token as read from the Secret or the environment; surrounding whitespace (a Secret
    /// made with `echo`) is not part of it. `None` when nothing is left.
    #[must_use]
    pub fn new(value: &str) -> Option<Self> {
        let v = value.trim();
        (!v.is_empty()).then(|| Self(v.to_string()))
    }

    /// The token itself, for the Secret's data and for comparing.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `Authorization` header value carrying it.
    #[must_use]
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ControlToken(<redacted>)")
    }
}
