//! Outbound HTTP(S): the one client opgate sends with, to upstream bundlers ([`crate::relay`]) and
//! to chain nodes ([`crate::sim`]).
//!
//! TLS is rustls with the ring provider. The trusted roots are the public web roots compiled in
//! (webpki-roots: the host's certificate store plays no part, so a container needs none) plus the
//! certificates of `[tls] ca_file`, for bundlers and nodes behind a private CA. HTTP/1.1, with
//! connections pooled per host.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;

/// The outbound HTTP(S) client.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The outbound client could not be built (the TLS settings were refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tls: {0}")]
pub struct TlsError(String);

/// rustls settings for outbound connections: ring, the safe default protocol versions, the web
/// roots plus `extra_roots`.
pub fn tls_config(extra_roots: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for (i, cert) in extra_roots.iter().enumerate() {
        roots
            .add(cert.clone())
            .map_err(|e| TlsError(format!("extra CA certificate {}: {e}", i + 1)))?;
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A client trusting the web roots and `extra_roots`, that gives up opening a connection after
/// `connect_timeout`.
pub fn client(extra_roots: &[CertificateDer<'static>], connect_timeout: Duration) -> Result<HttpsClient, TlsError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(extra_roots)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(https))
}

/// An error with its sources, `outer: inner: innermost` — hyper's own message says only
/// "client error (Connect)"; the TLS or socket reason is further down.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(source) = next {
        let part = source.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chain_names_every_source_once() {
        let e = Outer(std::io::Error::other("invalid peer certificate: UnknownIssuer"));
        assert_eq!(error_chain(&e), "outer: invalid peer certificate: UnknownIssuer");
    }

    #[test]
    fn extra_roots_must_be_certificates() {
        assert!(tls_config(&[]).is_ok());
        let err = tls_config(&[CertificateDer::from(vec![1, 2, 3])]).unwrap_err();
        assert!(err.to_string().contains("extra CA certificate 1"), "{err}");
    }
}
