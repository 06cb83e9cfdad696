//! Raw Kafka protocol over TCP (or TLS, with SASL), for the transaction steps librdkafka
//! cannot do.
//!
//! librdkafka keeps a transaction's producer id and epoch private and only ends a
//! transaction that the same client instance began. Commit-phase recovery has to end a
//! transaction recorded in a checkpoint from a process that never saw it, so this module
//! speaks the protocol directly (framing, headers and version negotiation) using the
//! message types of the `kafka-protocol` crate. It reaches the brokers the way the sink's
//! librdkafka producer does: the same [`ClientSecurity`] gives it TLS and SASL.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, EndTxnRequest, EndTxnResponse, FetchRequest,
    FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest,
    MetadataResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse, TopicName,
    TransactionalId, metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tracing::{debug, info, warn};

use super::sasl::{self, Scram};
use super::security::{ClientSecurity, SaslCredentials};
use crate::retry::Backoff;

/// Where a Kafka cluster is and how to reach it.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    /// TLS and SASL, as the sink's producer uses them.
    pub security: ClientSecurity,
}

impl Cluster {
    /// A cluster reached without TLS or SASL.
    #[must_use]
    pub fn plaintext(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap.to_owned(),
            security: ClientSecurity::default(),
        }
    }
}

/// A byte stream to a broker: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A broker that cannot be reached within this time is treated as down, so that a
/// bootstrap list falls through to its next entry instead of hanging.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds one request/response round trip; a broker that accepts a request and then
/// goes silent must not stall recovery forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`end_txn`] keeps retrying while the coordinator is moving or still
/// finishing an earlier EndTxn.
pub const END_TXN_DEADLINE: Duration = Duration::from_secs(30);

/// Responses larger than this are rejected before allocating, because a corrupt or
/// non-Kafka peer could otherwise make us allocate up to 2 GiB from a length prefix.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Sent as `client.id` so broker logs show which requests came from recovery.
const CLIENT_ID: &str = "weir-wire";

/// The one error an ApiVersions request can fail with because we asked for a newer
/// version than the broker knows.
const UNSUPPORTED_VERSION: i16 = ResponseError::UnsupportedVersion.code();

/// EndTxn v5 opts into transactions "version 2" (KIP-890), where the broker bumps the
/// epoch on every commit and interprets the request epoch differently. Transactions
/// begun by librdkafka (which only speaks EndTxn v0-1) are version-1 transactions, so
/// the recovery path must stay on v4 or below.
const END_TXN_MAX_VERSION: i16 = 4;

/// How many times in a row the coordinator may close the connection on EndTxn before
/// [`end_txn`] stops treating it as a network hiccup (see [`WireError::EndTxnRejected`]).
const END_TXN_MAX_REJECTIONS: u32 = 3;

/// Kafka's key type for transaction coordinators in FindCoordinator.
const COORDINATOR_KEY_TYPE_TRANSACTION: i8 = 1;

/// A request this client can send.
///
/// `kafka_protocol::protocol::Request` is only implemented when the crate's `broker`
/// feature is on (it also requires decoding requests), and the workspace builds it with
/// `client` only; this trait needs just the client half: encode the request, decode the
/// response.
pub trait KafkaRequest: Message + Encodable + HeaderVersion {
    /// The API key of this request.
    const KEY: i16;
    /// The API's name, for errors and logs.
    const NAME: &'static str;
    /// The response to this request.
    type Response: Decodable + HeaderVersion;
}

macro_rules! kafka_requests {
    ($($api:ident: $req:ty => $resp:ty;)*) => {
        $(
            impl KafkaRequest for $req {
                const KEY: i16 = ApiKey::$api as i16;
                const NAME: &'static str = stringify!($api);
                type Response = $resp;
            }
        )*
    };
}

// Only what recovery (ApiVersions, FindCoordinator, EndTxn) and the testkit's verifier
// (Metadata, Fetch) send.
kafka_requests! {
    ApiVersions: ApiVersionsRequest => ApiVersionsResponse;
    SaslHandshake: SaslHandshakeRequest => SaslHandshakeResponse;
    SaslAuthenticate: SaslAuthenticateRequest => SaslAuthenticateResponse;
    Metadata: MetadataRequest => MetadataResponse;
    FindCoordinator: FindCoordinatorRequest => FindCoordinatorResponse;
    EndTxn: EndTxnRequest => EndTxnResponse;
    Fetch: FetchRequest => FetchResponse;
}

/// Errors name the broker address and the API that failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connecting to Kafka broker {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error("connecting to Kafka broker {addr}: no answer within {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },

    /// The TLS handshake failed: an untrusted or mismatched certificate, a broker that does
    /// not speak TLS, or a refused client certificate.
    #[error("TLS with Kafka broker {addr}: {message}")]
    Tls { addr: String, message: String },

    /// SASL authentication failed: wrong user or password, or a mechanism the broker does
    /// not offer for this user.
    #[error(
        "SASL {mechanism} authentication as '{username}' to Kafka broker {addr} failed: {message}"
    )]
    Authentication {
        addr: String,
        mechanism: &'static str,
        username: String,
        message: String,
    },

    #[error("{api} to Kafka broker {addr}: I/O error: {source}")]
    Io {
        addr: String,
        api: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The broker closed the connection instead of answering. Kafka only does that for
    /// malformed requests, but nisshi does it whenever a handler fails, e.g. for EndTxn
    /// from a fenced or unknown producer.
    #[error("{api} to Kafka broker {addr}: connection closed without a response")]
    ClosedWithoutResponse { addr: String, api: &'static str },

    /// [`end_txn`] only: the coordinator accepted the connection and the lookup, then
    /// closed the connection on EndTxn itself, repeatedly. nisshi does this instead of
    /// answering PRODUCER_FENCED, UNKNOWN_PRODUCER_ID or TRANSACTIONAL_ID_NOT_FOUND, so
    /// the transaction cannot be ended with this producer id/epoch, but the broker did
    /// not say why.
    #[error(
        "EndTxn for transactional id '{transactional_id}' rejected by Kafka broker {addr}: \
         it closed the connection instead of answering, {attempts} times in a row \
         (nisshi does this for a fenced or unknown producer id/epoch)"
    )]
    EndTxnRejected {
        addr: String,
        transactional_id: String,
        attempts: u32,
    },

    #[error("{api} to Kafka broker {addr}: no response within {timeout:?}")]
    Timeout {
        addr: String,
        api: &'static str,
        timeout: Duration,
    },

    #[error("{api} to Kafka broker {addr}: cannot encode v{version} request: {message}")]
    Encode {
        addr: String,
        api: &'static str,
        version: i16,
        message: String,
    },

    #[error("{api} from Kafka broker {addr}: cannot decode v{version} response: {message}")]
    Decode {
        addr: String,
        api: &'static str,
        version: i16,
        message: String,
    },

    #[error("{api} from Kafka broker {addr}: {message}")]
    Protocol {
        addr: String,
        api: &'static str,
        message: String,
    },

    #[error(
        "{api} to Kafka broker {addr}: no common version (broker {broker_min}..{broker_max}, \
         client {client_min}..{client_max})"
    )]
    UnsupportedVersion {
        addr: String,
        api: &'static str,
        broker_min: i16,
        broker_max: i16,
        client_min: i16,
        client_max: i16,
    },

    #[error("{api} to Kafka broker {addr}: the broker does not support this API")]
    UnsupportedApi { addr: String, api: &'static str },

    #[error("{api} via Kafka broker {addr}: broker error {code} ({})", error_name(*.code))]
    Broker {
        addr: String,
        api: &'static str,
        code: i16,
    },

    #[error("no Kafka broker in bootstrap list '{bootstrap}' answered: {}", join_errors(.errors))]
    NoBroker {
        bootstrap: String,
        errors: Vec<WireError>,
    },

    #[error(
        "{api} for transactional id '{transactional_id}' still failing after {elapsed:?}: {last}"
    )]
    RetriesExhausted {
        api: &'static str,
        transactional_id: String,
        elapsed: Duration,
        #[source]
        last: Box<WireError>,
    },
}

fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(c)) => format!("unknown error code {c}"),
        Some(err) => format!("{err:?}: {err}"),
        None => "NONE".to_owned(),
    }
}

fn join_errors(errors: &[WireError]) -> String {
    if errors.is_empty() {
        return "the list is empty".to_owned();
    }
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Formats `host:port`, bracketing IPv6 literals so the result parses as a socket address.
fn host_port(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn auth_failed(addr: &str, credentials: &SaslCredentials, message: String) -> WireError {
    WireError::Authentication {
        addr: addr.to_owned(),
        mechanism: credentials.mechanism.name(),
        username: credentials.username.clone(),
        message,
    }
}

/// A broker that drops the connection during authentication instead of answering (nisshi
/// does, for a wrong password or a mechanism it does not offer) has refused us: say so
/// rather than "I/O error".
fn refused(addr: &str, credentials: &SaslCredentials, e: WireError) -> WireError {
    match e {
        WireError::ClosedWithoutResponse { .. } | WireError::Io { .. } => auth_failed(
            addr,
            credentials,
            "the broker closed the connection (wrong user or password, or a mechanism it does \
             not offer)"
                .to_owned(),
        ),
        other => other,
    }
}

/// A fresh SCRAM client nonce: 24 random bytes as hex.
fn client_nonce() -> String {
    let mut bytes = [0u8; 24];
    // Without the OS's randomness there is nothing safe to offer; the clock still makes the
    // nonce unique, which is what SCRAM needs from it.
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes[..16].copy_from_slice(&t.to_le_bytes());
    }
    hex::encode(bytes)
}

/// Splits a comma-separated bootstrap list, ignoring blanks so "a:1, b:2," works.
fn bootstrap_addrs(bootstrap: &str) -> Vec<&str> {
    bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// One TCP connection to one broker: length-framed request/response with correlation ids.
///
/// Requests are strictly sequential (`&mut self`), so a response always belongs to the
/// last request; the correlation id is still checked to detect a desynchronised stream.
pub struct Connection {
    addr: String,
    stream: Box<dyn Io>,
    next_correlation_id: i32,
    /// Broker-supported version ranges by API key, from ApiVersions at connect.
    versions: HashMap<i16, (i16, i16)>,
    /// Set after a timeout or I/O error mid-request: the stream may hold half a frame,
    /// so any later response would be misread.
    broken: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects (TLS when `security` says so), negotiates API versions (ApiVersions), so
    /// later requests can pick versions the broker understands, and authenticates with SASL
    /// when `security` says so.
    pub async fn connect(addr: &str, security: &ClientSecurity) -> Result<Self, WireError> {
        let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(WireError::Connect {
                    addr: addr.to_owned(),
                    source,
                });
            }
            Err(_) => {
                return Err(WireError::ConnectTimeout {
                    addr: addr.to_owned(),
                    timeout: CONNECT_TIMEOUT,
                });
            }
        };
        // Small request/response exchanges; Nagle would only add latency.
        if let Err(err) = stream.set_nodelay(true) {
            debug!(addr, %err, "cannot set TCP_NODELAY");
        }
        let tls = |message: String| WireError::Tls {
            addr: addr.to_owned(),
            message,
        };
        let stream: Box<dyn Io> = match security.tls_connector().map_err(tls)? {
            None => Box::new(stream),
            Some(connector) => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| tls(format!("`{host}` is not a server name: {e}")))?;
                match timeout(CONNECT_TIMEOUT, connector.connect(name, stream)).await {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(e)) => return Err(tls(format!("handshake failed: {e}"))),
                    Err(_) => return Err(tls(format!("no handshake within {CONNECT_TIMEOUT:?}"))),
                }
            }
        };
        let mut conn = Connection {
            addr: addr.to_owned(),
            stream,
            next_correlation_id: 1,
            versions: HashMap::new(),
            broken: false,
        };
        conn.negotiate_versions().await?;
        if let Some(credentials) = security.sasl() {
            conn.authenticate(credentials).await?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1, then the mechanism's messages in SaslAuthenticate requests.
    async fn authenticate(&mut self, credentials: &SaslCredentials) -> Result<(), WireError> {
        let mechanism = credentials.mechanism.name();
        let version = self.version_capped::<SaslHandshakeRequest>(1)?;
        let hs = self
            .request(
                SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism)),
                version,
            )
            .await
            .map_err(|e| refused(&self.addr, credentials, e))?;
        if hs.error_code != 0 {
            let offered: Vec<String> = hs.mechanisms.iter().map(ToString::to_string).collect();
            return Err(auth_failed(
                &self.addr,
                credentials,
                format!(
                    "mechanism not offered (the broker offers {})",
                    offered.join(", ")
                ),
            ));
        }
        match Scram::start(
            credentials.mechanism,
            &credentials.username,
            &client_nonce(),
        ) {
            None => {
                let plain = sasl::plain(&credentials.username, credentials.password());
                self.sasl_step(plain, credentials).await?;
            }
            Some((scram, first)) => {
                let server_first = self.sasl_step(first, credentials).await?;
                let last = scram
                    .answer(&server_first, credentials.password())
                    .map_err(|m| auth_failed(&self.addr, credentials, m))?;
                let server_final = self.sasl_step(last.message.clone(), credentials).await?;
                last.verify(&server_final)
                    .map_err(|m| auth_failed(&self.addr, credentials, m))?;
            }
        }
        debug!(addr = %self.addr, mechanism, "SASL authenticated");
        Ok(())
    }

    /// One SaslAuthenticate round trip; the server's bytes.
    async fn sasl_step(
        &mut self,
        bytes: Vec<u8>,
        credentials: &SaslCredentials,
    ) -> Result<Vec<u8>, WireError> {
        let version = self.version_capped::<SaslAuthenticateRequest>(1)?;
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
        let resp = self
            .request(req, version)
            .await
            .map_err(|e| refused(&self.addr, credentials, e))?;
        if resp.error_code != 0 {
            let why = resp
                .error_message
                .as_ref()
                .map_or_else(|| error_name(resp.error_code), ToString::to_string);
            return Err(auth_failed(&self.addr, credentials, why));
        }
        Ok(resp.auth_bytes.to_vec())
    }

    /// Connects to the first reachable broker of the cluster's bootstrap list.
    pub async fn connect_any(cluster: &Cluster) -> Result<Self, WireError> {
        let bootstrap = cluster.bootstrap.as_str();
        let mut errors = Vec::new();
        for addr in bootstrap_addrs(bootstrap) {
            match Connection::connect(addr, &cluster.security).await {
                Ok(conn) => return Ok(conn),
                // Another broker would refuse the same certificate or password: say so now.
                Err(err @ (WireError::Tls { .. } | WireError::Authentication { .. })) => {
                    return Err(err);
                }
                Err(err) => {
                    debug!(addr, %err, "bootstrap broker unusable, trying next");
                    errors.push(err);
                }
            }
        }
        Err(WireError::NoBroker {
            bootstrap: bootstrap.to_owned(),
            errors,
        })
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Highest version of `Req` that both the broker and `kafka-protocol` support.
    pub fn version_for<Req: KafkaRequest>(&self) -> Result<i16, WireError> {
        self.version_capped::<Req>(Req::VERSIONS.max)
    }

    /// Like [`Connection::version_for`] but never above `cap`, for APIs whose newer
    /// versions change semantics or need data we do not have (e.g. topic ids in Fetch).
    pub fn version_capped<Req: KafkaRequest>(&self, cap: i16) -> Result<i16, WireError> {
        let api = Req::NAME;
        let Some(&(broker_min, broker_max)) = self.versions.get(&Req::KEY) else {
            return Err(WireError::UnsupportedApi {
                addr: self.addr.clone(),
                api,
            });
        };
        let client_min = Req::VERSIONS.min;
        let client_max = Req::VERSIONS.max.min(cap);
        let version = broker_max.min(client_max);
        if version < broker_min.max(client_min) {
            return Err(WireError::UnsupportedVersion {
                addr: self.addr.clone(),
                api,
                broker_min,
                broker_max,
                client_min,
                client_max,
            });
        }
        Ok(version)
    }

    /// Sends `req` encoded as `version` and returns the decoded response.
    pub async fn request<Req: KafkaRequest>(
        &mut self,
        req: Req,
        version: i16,
    ) -> Result<Req::Response, WireError> {
        let api = Req::NAME;
        let mut response = self.round_trip(&req, version).await?;
        let decoded =
            <Req::Response as Decodable>::decode(&mut response, version).map_err(|err| {
                WireError::Decode {
                    addr: self.addr.clone(),
                    api,
                    version,
                    message: format!("{err:#}"),
                }
            })?;
        if response.has_remaining() {
            // Trailing bytes mean we decoded with the wrong version's schema.
            debug!(addr = %self.addr, api, version, trailing = response.remaining(), "response has trailing bytes");
        }
        Ok(decoded)
    }

    /// Encodes, frames and sends one request as `version`, reads one response, and returns
    /// the response body after its header (decoding it is the caller's: ApiVersions needs
    /// to look at the body first).
    async fn round_trip<Req: KafkaRequest>(
        &mut self,
        req: &Req,
        version: i16,
    ) -> Result<Bytes, WireError> {
        let api = Req::NAME;
        let mut body = BytesMut::new();
        req.encode(&mut body, version)
            .map_err(|err| WireError::Encode {
                addr: self.addr.clone(),
                api,
                version,
                message: format!("{err:#}"),
            })?;
        if self.broken {
            return Err(WireError::Protocol {
                addr: self.addr.clone(),
                api,
                message: "connection unusable after an earlier failed request".to_owned(),
            });
        }
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);

        let header = RequestHeader::default()
            .with_request_api_key(Req::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut frame = BytesMut::with_capacity(body.len() + 64);
        frame.put_i32(0); // length placeholder, patched below
        header
            .encode(&mut frame, Req::header_version(version))
            .map_err(|err| WireError::Encode {
                addr: self.addr.clone(),
                api,
                version,
                message: format!("request header: {err:#}"),
            })?;
        frame.put_slice(&body);
        let len = i32::try_from(frame.len() - 4).map_err(|_| WireError::Encode {
            addr: self.addr.clone(),
            api,
            version,
            message: format!(
                "request of {} bytes exceeds the protocol limit",
                frame.len()
            ),
        })?;
        frame[..4].copy_from_slice(&len.to_be_bytes());

        // Mark broken until the exchange completes: a timeout or error leaves the
        // stream at an unknown position.
        self.broken = true;
        let addr = self.addr.clone();
        let exchange = async {
            self.stream
                .write_all(&frame)
                .await
                .map_err(|source| WireError::Io {
                    addr: addr.clone(),
                    api,
                    source,
                })?;
            let mut len_buf = [0u8; 4];
            self.stream
                .read_exact(&mut len_buf)
                .await
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                        WireError::ClosedWithoutResponse {
                            addr: addr.clone(),
                            api,
                        }
                    }
                    _ => WireError::Io {
                        addr: addr.clone(),
                        api,
                        source,
                    },
                })?;
            let len = i32::from_be_bytes(len_buf);
            let len = usize::try_from(len)
                .ok()
                .filter(|len| (4..=MAX_RESPONSE_BYTES).contains(len))
                .ok_or_else(|| WireError::Protocol {
                    addr: addr.clone(),
                    api,
                    message: format!("invalid response frame length {len}"),
                })?;
            let mut buf = vec![0u8; len];
            self.stream
                .read_exact(&mut buf)
                .await
                .map_err(|source| WireError::Io {
                    addr: addr.clone(),
                    api,
                    source,
                })?;
            Ok::<_, WireError>(Bytes::from(buf))
        };
        let mut response = match timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(WireError::Timeout {
                    addr,
                    api,
                    timeout: REQUEST_TIMEOUT,
                });
            }
        };
        self.broken = false;

        let response_header_version = <Req::Response as HeaderVersion>::header_version(version);
        let header =
            ResponseHeader::decode(&mut response, response_header_version).map_err(|err| {
                WireError::Decode {
                    addr: self.addr.clone(),
                    api,
                    version,
                    message: format!("response header: {err:#}"),
                }
            })?;
        if header.correlation_id != correlation_id {
            self.broken = true;
            return Err(WireError::Protocol {
                addr: self.addr.clone(),
                api,
                message: format!(
                    "correlation id mismatch: sent {correlation_id}, got {}",
                    header.correlation_id
                ),
            });
        }
        Ok(response)
    }

    /// Asks the broker which API versions it supports.
    ///
    /// Uses ApiVersions v3 (what current clients send); a broker that does not know v3
    /// answers UNSUPPORTED_VERSION with a v0 body listing its versions, which we accept.
    async fn negotiate_versions(&mut self) -> Result<(), WireError> {
        const VERSION: i16 = 3;
        let api = ApiVersionsRequest::NAME;
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("weir"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = self.round_trip(&req, VERSION).await?;
        // The error code is the first field in every version, so it tells us which
        // schema the body uses before decoding it.
        let error_code = match response.get(..2) {
            Some(&[hi, lo]) => i16::from_be_bytes([hi, lo]),
            _ => {
                return Err(WireError::Decode {
                    addr: self.addr.clone(),
                    api,
                    version: VERSION,
                    message: format!("body of {} bytes has no error code", response.len()),
                });
            }
        };
        let decode_version = if error_code == UNSUPPORTED_VERSION {
            0
        } else {
            VERSION
        };
        let decoded =
            ApiVersionsResponse::decode(&mut response.clone(), decode_version).map_err(|err| {
                WireError::Decode {
                    addr: self.addr.clone(),
                    api,
                    version: decode_version,
                    message: format!("{err:#}"),
                }
            })?;
        if decoded.error_code != 0 && decoded.error_code != UNSUPPORTED_VERSION {
            return Err(WireError::Broker {
                addr: self.addr.clone(),
                api,
                code: decoded.error_code,
            });
        }
        self.versions = decoded
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if self.versions.is_empty() {
            return Err(WireError::Protocol {
                addr: self.addr.clone(),
                api,
                message: "broker listed no supported APIs".to_owned(),
            });
        }
        Ok(())
    }
}

/// Leader of one partition as reported by Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLeader {
    pub partition: i32,
    /// Kafka error code for this partition (0 when fine; LEADER_NOT_AVAILABLE while a
    /// new topic is still being set up).
    pub error_code: i16,
    pub leader_id: i32,
    /// `host:port` of the leader, if the leader is among the listed brokers.
    pub leader: Option<String>,
}

/// One topic's partitions as reported by Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    /// Kafka error code for the topic (0 when fine, 3 UNKNOWN_TOPIC_OR_PARTITION when
    /// it does not exist).
    pub error_code: i16,
    /// Sorted by partition number.
    pub partitions: Vec<PartitionLeader>,
}

/// Looks up partition leaders of `topics` through `bootstrap` without creating topics.
///
/// Topic and partition errors are returned in the result rather than as `Err`, because
/// callers differ on which of them are transient.
pub async fn metadata(cluster: &Cluster, topics: &[&str]) -> Result<Vec<TopicMetadata>, WireError> {
    let mut conn = Connection::connect_any(cluster).await?;
    let version = conn.version_for::<MetadataRequest>()?;
    let req = MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|t| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string((*t).to_owned()))))
                })
                .collect(),
        ))
        // Reading must not create topics as a side effect (brokers before v4 ignore this).
        .with_allow_auto_topic_creation(false);
    let resp = conn.request(req, version).await?;
    let brokers: HashMap<i32, String> = resp
        .brokers
        .iter()
        .map(|b| (b.node_id.0, host_port(&b.host, b.port)))
        .collect();
    let mut out: Vec<TopicMetadata> = resp
        .topics
        .iter()
        .map(|t| {
            let mut partitions: Vec<PartitionLeader> = t
                .partitions
                .iter()
                .map(|p| PartitionLeader {
                    partition: p.partition_index,
                    error_code: p.error_code,
                    leader_id: p.leader_id.0,
                    leader: brokers.get(&p.leader_id.0).cloned(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            TopicMetadata {
                name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                error_code: t.error_code,
                partitions,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Finds the transaction coordinator for `transactional_id` and returns its `host:port`.
///
/// A coordinator-level error (e.g. COORDINATOR_NOT_AVAILABLE) is returned as
/// [`WireError::Broker`] so callers can decide to retry.
pub async fn find_transaction_coordinator(
    cluster: &Cluster,
    transactional_id: &str,
) -> Result<String, WireError> {
    let mut conn = Connection::connect_any(cluster).await?;
    let api = FindCoordinatorRequest::NAME;
    let version = conn.version_for::<FindCoordinatorRequest>()?;
    if version < 1 {
        // v0 has no key type and always means the group coordinator.
        return Err(WireError::UnsupportedVersion {
            addr: conn.addr().to_owned(),
            api,
            broker_min: 0,
            broker_max: 0,
            client_min: 1,
            client_max: FindCoordinatorRequest::VERSIONS.max,
        });
    }
    let key = StrBytes::from_string(transactional_id.to_owned());
    let mut req = FindCoordinatorRequest::default().with_key_type(COORDINATOR_KEY_TYPE_TRANSACTION);
    // v4 replaced the single key with a batch of keys.
    req = if version >= 4 {
        req.with_coordinator_keys(vec![key])
    } else {
        req.with_key(key)
    };
    let resp = conn.request(req, version).await?;
    let (code, host, port) = if version >= 4 {
        let Some(c) = resp.coordinators.first() else {
            return Err(WireError::Protocol {
                addr: conn.addr().to_owned(),
                api,
                message: "response lists no coordinator".to_owned(),
            });
        };
        (c.error_code, c.host.to_string(), c.port)
    } else {
        (resp.error_code, resp.host.to_string(), resp.port)
    };
    if code != 0 {
        return Err(WireError::Broker {
            addr: conn.addr().to_owned(),
            api,
            code,
        });
    }
    Ok(host_port(&host, port))
}

/// Result of committing or aborting a transaction by its stored producer id/epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndTxnOutcome {
    /// The broker accepted the EndTxn. Kafka also answers NONE when the same outcome
    /// was already applied (a repeated commit of a committed transaction). nisshi answers
    /// NONE for any EndTxn on a transaction that is no longer open, even a commit of an
    /// aborted one, and its sqlite engine even for a fenced or unknown producer; in all
    /// those cases it writes no marker. So `Done` does not prove this call committed.
    Done,
    /// The broker says the transaction is no longer ongoing (INVALID_TXN_STATE), e.g.
    /// it was completed before. This does not say whether it was committed or aborted.
    AlreadyCompleted,
    /// The producer id/epoch was superseded (another producer initialised the same
    /// transactional id, or the broker aborted the transaction on timeout and bumped the
    /// epoch). The transaction cannot be committed any more.
    Fenced,
}

/// Whether a failure may clear up by itself: the coordinator is moving or loading, a
/// previous EndTxn is still writing markers, or the network hiccupped. EndTxn is
/// idempotent for the same outcome, so resending after an I/O error is safe.
fn end_txn_retriable(err: &WireError) -> bool {
    match err {
        WireError::Broker { code, .. } => matches!(
            ResponseError::try_from_code(*code),
            Some(
                ResponseError::CoordinatorLoadInProgress
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::NotCoordinator
                    | ResponseError::ConcurrentTransactions
            )
        ),
        WireError::Connect { .. }
        | WireError::ConnectTimeout { .. }
        | WireError::Io { .. }
        | WireError::ClosedWithoutResponse { .. }
        | WireError::Timeout { .. } => true,
        WireError::NoBroker { errors, .. } => {
            !errors.is_empty() && errors.iter().all(end_txn_retriable)
        }
        _ => false,
    }
}

/// Commit-phase recovery: ends transaction `transactional_id` using the producer id and
/// epoch recorded at pre-commit, from a connection that never took part in it.
///
/// Finds the transaction coordinator through `bootstrap` (comma-separated `host:port`
/// list, each tried in turn), sends EndTxn, and retries transient coordinator errors
/// with backoff for up to [`END_TXN_DEADLINE`].
///
/// With transactions v1 the epoch does not change between transactions of one producer
/// session, so EndTxn ends whatever transaction is currently open under this id and
/// epoch. Callers must make sure no live producer has begun a newer transaction with the
/// same transactional id and epoch (e.g. use one transactional id per checkpoint, or
/// only recover after the owner is gone).
pub async fn end_txn(
    cluster: &Cluster,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
) -> Result<EndTxnOutcome, WireError> {
    let api = EndTxnRequest::NAME;
    let start = Instant::now();
    let mut delays = Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
        .until(start + END_TXN_DEADLINE);
    // Consecutive attempts where only the EndTxn request itself got the connection
    // closed; a broker restart would fail the connect or the lookup instead.
    let mut rejected = 0u32;
    loop {
        let attempt = end_txn_once(
            cluster,
            transactional_id,
            producer_id,
            producer_epoch,
            commit,
        )
        .await;
        let err = match attempt {
            Ok(outcome) => {
                info!(
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    commit,
                    ?outcome,
                    "EndTxn finished"
                );
                return Ok(outcome);
            }
            Err(err) if end_txn_retriable(&err) => err,
            Err(err) => return Err(err),
        };
        match &err {
            WireError::ClosedWithoutResponse {
                addr,
                api: closed_api,
            } if *closed_api == api => {
                rejected += 1;
                if rejected >= END_TXN_MAX_REJECTIONS {
                    return Err(WireError::EndTxnRejected {
                        addr: addr.clone(),
                        transactional_id: transactional_id.to_owned(),
                        attempts: rejected,
                    });
                }
            }
            _ => rejected = 0,
        }
        let Some(delay) = delays.next() else {
            return Err(WireError::RetriesExhausted {
                api,
                transactional_id: transactional_id.to_owned(),
                elapsed: start.elapsed(),
                last: Box::new(err),
            });
        };
        warn!(
            transactional_id,
            producer_id,
            producer_epoch,
            %err,
            retry_in = ?delay,
            "EndTxn not accepted yet, retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

async fn end_txn_once(
    cluster: &Cluster,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
) -> Result<EndTxnOutcome, WireError> {
    let api = EndTxnRequest::NAME;
    let coordinator = find_transaction_coordinator(cluster, transactional_id).await?;
    let mut conn = Connection::connect(&coordinator, &cluster.security).await?;
    let version = conn.version_capped::<EndTxnRequest>(END_TXN_MAX_VERSION)?;
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(
            transactional_id.to_owned(),
        )))
        .with_producer_id(producer_id.into())
        .with_producer_epoch(producer_epoch)
        .with_committed(commit);
    let resp = conn.request(req, version).await?;
    debug!(
        addr = conn.addr(),
        transactional_id,
        producer_id,
        producer_epoch,
        commit,
        version,
        error_code = resp.error_code,
        "EndTxn response"
    );
    match ResponseError::try_from_code(resp.error_code) {
        None => Ok(EndTxnOutcome::Done),
        Some(ResponseError::InvalidTxnState) => Ok(EndTxnOutcome::AlreadyCompleted),
        // UNKNOWN_PRODUCER_ID is what nisshi answers when the producer id no longer
        // belongs to the transactional id, i.e. Kafka's INVALID_PRODUCER_ID_MAPPING.
        Some(
            ResponseError::InvalidProducerEpoch
            | ResponseError::ProducerFenced
            | ResponseError::InvalidProducerIdMapping
            | ResponseError::UnknownProducerId,
        ) => Ok(EndTxnOutcome::Fenced),
        Some(_) => Err(WireError::Broker {
            addr: conn.addr().to_owned(),
            api,
            code: resp.error_code,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_brackets_ipv6() {
        assert_eq!(host_port("::1", 9092), "[::1]:9092");
        assert_eq!(host_port("broker", 9092), "broker:9092");
    }

    #[test]
    fn bootstrap_list_ignores_blanks() {
        assert_eq!(bootstrap_addrs(" a:1, ,b:2,"), vec!["a:1", "b:2"]);
    }

    #[test]
    fn retriable_codes() {
        let broker = |code| WireError::Broker {
            addr: "x:1".to_owned(),
            api: "EndTxn",
            code,
        };
        assert!(end_txn_retriable(&broker(
            ResponseError::ConcurrentTransactions.code()
        )));
        assert!(end_txn_retriable(&broker(
            ResponseError::NotCoordinator.code()
        )));
        assert!(!end_txn_retriable(&broker(
            ResponseError::ProducerFenced.code()
        )));
        // An empty bootstrap list never becomes usable by waiting.
        assert!(!end_txn_retriable(&WireError::NoBroker {
            bootstrap: String::new(),
            errors: vec![],
        }));
    }

    #[test]
    fn error_names_code() {
        let err = WireError::Broker {
            addr: "b:9092".to_owned(),
            api: "EndTxn",
            code: 48,
        };
        let text = err.to_string();
        assert!(text.contains("b:9092") && text.contains("EndTxn") && text.contains("48"));
    }
}
