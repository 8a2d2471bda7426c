//! Upstream bundlers: one [`Relay`] per chain, holding its upstreams in failover order.
//!
//! Two delivery rules:
//! - [`Relay::forward`] (every read method) tries upstreams in order and moves on after any
//!   transport failure — refused connection, timeout, broken connection, an HTTP error without a
//!   JSON-RPC body, or a body that is not JSON-RPC. A JSON-RPC error object is an answer and is
//!   returned as is.
//! - [`Relay::send_user_operation`] moves to the next upstream only when the previous one cannot
//!   have received the operation (the connection was never made, or it answered HTTP 429). Once
//!   an upstream may hold the operation, a second upstream never sees it: the caller gets
//!   [`RelayError::OutcomeUnknown`] and can look the hash up.

mod envelope;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::value::RawValue;

pub use envelope::{parse_response, EnvelopeError, UpstreamAnswer, UpstreamRpcError};

use crate::config::UpstreamConfig;
use crate::outbound::{error_chain, HttpsClient};
use crate::telemetry::{ChainMetrics, UpstreamMetrics, UpstreamOutcome};

/// Why one attempt at one upstream produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptFailure {
    /// The TCP/TLS connection could not be made; the upstream received nothing.
    #[error("connection failed: {0}")]
    Connect(String),
    /// No complete answer within the upstream's timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke after the request may have been sent.
    #[error("connection broke: {0}")]
    Transport(String),
    /// An HTTP status without a JSON-RPC body.
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    /// The body was not a JSON-RPC response, or exceeded the response limit.
    #[error("bad response: {0}")]
    BadResponse(String),
}

impl AttemptFailure {
    /// Whether the upstream certainly did not act on the request.
    fn not_received(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::HttpStatus(429))
    }

    fn outcome(&self) -> UpstreamOutcome {
        match self {
            Self::Connect(_) => UpstreamOutcome::ConnectError,
            Self::Timeout(_) => UpstreamOutcome::Timeout,
            Self::Transport(_) => UpstreamOutcome::TransportError,
            Self::HttpStatus(_) => UpstreamOutcome::HttpError,
            Self::BadResponse(_) => UpstreamOutcome::BadResponse,
        }
    }
}

/// One failed attempt, by upstream name (never its URL, which may carry a key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The upstream's configured name.
    pub upstream: String,
    /// What went wrong.
    pub failure: AttemptFailure,
}

/// No answer could be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// Every upstream failed; nothing was delivered. Retrying later makes sense.
    #[error("no upstream answered ({} attempts)", attempts.len())]
    Unavailable {
        /// Each attempt in order.
        attempts: Vec<Attempt>,
    },
    /// An upstream may have received an `eth_sendUserOperation` but gave no answer. It was not
    /// sent anywhere else.
    #[error("upstream {} may have received the operation: {}", attempt.upstream, attempt.failure)]
    OutcomeUnknown {
        /// The attempt whose outcome is unknown.
        attempt: Attempt,
        /// Earlier attempts that certainly delivered nothing.
        earlier: Vec<Attempt>,
    },
}

struct Upstream {
    name: String,
    uri: Uri,
    headers: HeaderMap,
    timeout: Duration,
    metrics: Option<Arc<UpstreamMetrics>>,
}

/// The upstream bundlers of one chain.
pub struct Relay {
    client: HttpsClient,
    upstreams: Vec<Upstream>,
    max_response_bytes: usize,
    next_id: AtomicU64,
    metrics: Option<ChainMetrics>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.upstreams.iter().map(|u| u.name.as_str()).collect();
        f.debug_struct("Relay")
            .field("upstreams", &names)
            .finish_non_exhaustive()
    }
}

/// A relay could not be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream {name}: {message}")]
pub struct RelayBuildError {
    name: String,
    message: String,
}

impl Relay {
    /// Builds a relay over `upstreams` (failover order), sending with `client` (see
    /// [`crate::outbound`]). `metrics` handles are indexed like `upstreams`.
    pub fn new(
        upstreams: &[UpstreamConfig],
        client: HttpsClient,
        max_response_bytes: usize,
        metrics: Option<ChainMetrics>,
    ) -> Result<Self, RelayBuildError> {
        let upstreams = upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let err = |message: String| RelayBuildError {
                    name: u.name.clone(),
                    message,
                };
                let uri: Uri = u
                    .url
                    .as_str()
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| err(e.to_string()))?;
                let mut headers = HeaderMap::new();
                for (k, v) in &u.headers {
                    let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| err(e.to_string()))?;
                    let value = HeaderValue::from_str(v).map_err(|e| err(e.to_string()))?;
                    headers.insert(name, value);
                }
                Ok(Upstream {
                    name: u.name.clone(),
                    uri,
                    headers,
                    timeout: u.timeout,
                    metrics: metrics.as_ref().and_then(|m| m.upstream(i)),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            client,
            upstreams,
            max_response_bytes,
            next_id: AtomicU64::new(1),
            metrics,
        })
    }

    /// Relays a read method with failover.
    pub async fn forward(&self, method: &str, params: Option<&RawValue>) -> Result<UpstreamAnswer, RelayError> {
        let body = Bytes::from(envelope::encode_request(self.next_id(), method, params));
        let mut attempts = Vec::new();
        for (i, upstream) in self.upstreams.iter().enumerate() {
            if i > 0 {
                self.count_failover();
            }
            match self.attempt(upstream, body.clone(), None).await {
                Ok(answer) => return Ok(answer),
                Err(failure) => attempts.push(Attempt {
                    upstream: upstream.name.clone(),
                    failure,
                }),
            }
        }
        Err(RelayError::Unavailable { attempts })
    }

    /// Relays `eth_sendUserOperation`: never to a second upstream once one may have received it.
    pub async fn send_user_operation(&self, params: Option<&RawValue>) -> Result<UpstreamAnswer, RelayError> {
        let body = Bytes::from(envelope::encode_request(
            self.next_id(),
            "eth_sendUserOperation",
            params,
        ));
        let mut earlier = Vec::new();
        for (i, upstream) in self.upstreams.iter().enumerate() {
            if i > 0 {
                self.count_failover();
            }
            match self.attempt(upstream, body.clone(), None).await {
                Ok(answer) => return Ok(answer),
                Err(failure) if failure.not_received() => earlier.push(Attempt {
                    upstream: upstream.name.clone(),
                    failure,
                }),
                Err(failure) => {
                    return Err(RelayError::OutcomeUnknown {
                        attempt: Attempt {
                            upstream: upstream.name.clone(),
                            failure,
                        },
                        earlier,
                    })
                }
            }
        }
        Err(RelayError::Unavailable { attempts: earlier })
    }

    /// Whether at least one upstream answers a JSON-RPC request (result or error) within
    /// `deadline`. Used by `/readyz`.
    pub async fn probe(&self, deadline: Duration) -> bool {
        let params = RawValue::from_string("[]".into()).expect("valid JSON");
        let body = Bytes::from(envelope::encode_request(
            self.next_id(),
            "eth_supportedEntryPoints",
            Some(&params),
        ));
        for upstream in &self.upstreams {
            if self.attempt(upstream, body.clone(), Some(deadline)).await.is_ok() {
                return true;
            }
        }
        false
    }

    /// Upstream names in failover order.
    pub fn upstream_names(&self) -> impl Iterator<Item = &str> {
        self.upstreams.iter().map(|u| u.name.as_str())
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn count_failover(&self) {
        if let Some(m) = &self.metrics {
            m.failover();
        }
    }

    async fn attempt(
        &self,
        upstream: &Upstream,
        body: Bytes,
        deadline: Option<Duration>,
    ) -> Result<UpstreamAnswer, AttemptFailure> {
        let started = Instant::now();
        let timeout = deadline.map_or(upstream.timeout, |d| d.min(upstream.timeout));
        let result = match tokio::time::timeout(timeout, self.exchange(upstream, body)).await {
            Ok(r) => r,
            Err(_) => Err(AttemptFailure::Timeout(timeout)),
        };
        if let Some(m) = &upstream.metrics {
            let (outcome, code) = match &result {
                Ok(UpstreamAnswer::Result(_)) => (UpstreamOutcome::Ok, None),
                Ok(UpstreamAnswer::Error(e)) => (UpstreamOutcome::RpcError, Some(e.code)),
                Err(f) => (f.outcome(), None),
            };
            m.observe(outcome, started.elapsed(), code);
        }
        if let Err(failure) = &result {
            tracing::warn!(upstream = %upstream.name, %failure, "upstream attempt failed");
        }
        result
    }

    async fn exchange(&self, upstream: &Upstream, body: Bytes) -> Result<UpstreamAnswer, AttemptFailure> {
        let mut request = Request::post(upstream.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(body))
            .map_err(|e| AttemptFailure::BadResponse(format!("cannot build request: {e}")))?;
        request.headers_mut().extend(upstream.headers.clone());
        let response = self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                AttemptFailure::Connect(error_chain(&e))
            } else {
                AttemptFailure::Transport(error_chain(&e))
            }
        })?;
        let status = response.status();
        let collected = Limited::new(response.into_body(), self.max_response_bytes)
            .collect()
            .await
            .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
                Ok(_) => AttemptFailure::BadResponse(format!("larger than {} bytes", self.max_response_bytes)),
                Err(e) => AttemptFailure::Transport(e.to_string()),
            })?
            .to_bytes();
        match envelope::parse_response(&collected) {
            Ok(answer) => Ok(answer),
            Err(_) if status != StatusCode::OK => Err(AttemptFailure::HttpStatus(status.as_u16())),
            Err(e) => Err(AttemptFailure::BadResponse(e.0)),
        }
    }
}
