//! The admin API, on its own listener, every request carrying `Authorization: Bearer <token>`:
//!
//! | method and path | body | effect |
//! |---|---|---|
//! | `POST /v1/permissions` | `{chainId, serialized, signer?}` | registers a serialized permission account |
//! | `DELETE /v1/permissions/{chainId}/{account}/{permissionId}` | | forgets a permission |
//! | `GET /v1/revocations` | | lists revoked subjects |
//! | `POST /v1/revocations` | `{signer}`, `{sender}` or `{account, permissionId}` | revokes, on every replica |
//! | `DELETE /v1/revocations/{subject}` | | lifts a revocation |
//! | `POST /v1/reload` | | reloads `[[policies]]` from the configuration file |
//!
//! Revocations are checked inside the store's atomic reservation step, so they hold for the very
//! next op on every replica; registry changes reach other replicas' caches within a second.

use std::path::PathBuf;
use std::sync::Arc;

use alloy_primitives::{Address, FixedBytes};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::config::{Config, Overrides};
use crate::pipeline::Gate;
use crate::policy::hex_addr;
use crate::registry::{AccountInfo, Source, StoredPermission};

/// Largest admin request body.
const MAX_BODY: usize = 1 << 20;

/// What the admin API needs.
#[derive(Debug)]
pub struct Admin {
    /// Shared policy state.
    pub gate: Arc<Gate>,
    /// Bearer token.
    pub token: String,
    /// The configuration file, for `/v1/reload`.
    pub config_path: Option<PathBuf>,
}

type Answer = (StatusCode, Value);

fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    (status, json!({ "error": message.into() }))
}

/// Compares tokens in time independent of where they differ.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

impl Admin {
    async fn handle(&self, req: Request<crate::listener::TimedBody<hyper::body::Incoming>>) -> Answer {
        let auth = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !token_matches(auth.as_bytes(), self.token.as_bytes()) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large or unreadable"),
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (&method, parts.as_slice()) {
            (&Method::POST, ["v1", "permissions"]) => self.register(&body).await,
            (&Method::DELETE, ["v1", "permissions", chain, account, pid]) => self.forget(chain, account, pid).await,
            (&Method::GET, ["v1", "revocations"]) => self.list_revocations().await,
            (&Method::POST, ["v1", "revocations"]) => self.revoke(&body).await,
            (&Method::DELETE, ["v1", "revocations", subject]) => self.unrevoke(subject).await,
            (&Method::POST, ["v1", "reload"]) => self.reload(),
            (&Method::POST, ["v1", "tenants", name, "keys"]) => self.add_key(name, &body).await,
            (&Method::DELETE, ["v1", "tenants", name, "keys"]) => self.revoke_key(name, &body).await,
            _ => error(StatusCode::NOT_FOUND, format!("no route {method} {path}")),
        }
    }

    async fn register(&self, body: &[u8]) -> Answer {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Body {
            chain_id: u64,
            serialized: String,
            signer: Option<Address>,
        }
        let b: Body = match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
        };
        let sp = match crate::decode::serialized::parse_serialized_permission_account(&b.serialized) {
            Ok(sp) => sp,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("serialized: {e}")),
        };
        let preinstalled = sp
            .preinstalled_permission()
            .ok()
            .flatten()
            .and_then(|p| p.signer.address);
        let Some(signer) = b.signer.or(preinstalled) else {
            return error(
                StatusCode::BAD_REQUEST,
                "the serialized account does not carry the session key address: give `signer`",
            );
        };
        if !sp.bind_signer(signer) {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "permission id {} is not the one derived from these policies with signer {}",
                    sp.permission_id,
                    hex_addr(signer)
                ),
            );
        }
        if let Some(Err(e)) = sp.verify_enable_signature(b.chain_id, signer) {
            return error(StatusCode::BAD_REQUEST, format!("enableSignature: {e}"));
        }
        let account = sp.account;
        let pid = sp.permission_id;
        let stored = StoredPermission {
            validator_data: sp.validator_data_with_key(signer),
            selectors: vec![sp.action.selector],
            source: Source::Operator,
            learned_at: self.gate.clock.now(),
            hook: None,
            enable_nonce: None,
            uninstalled: false,
            pending: None,
        };
        let info = sp.deployment().ok().flatten().map(|d| AccountInfo {
            root_owner: d.root_validator.as_ref().and_then(|r| r.owner),
            kernel_version: d.kernel_version,
            root_validator: d.root_validator.as_ref().and_then(|r| r.address),
            ..Default::default()
        });
        let registry = &self.gate.registry;
        let put = async {
            registry.put_permission(b.chain_id, account, pid, &stored).await?;
            if let Some(info) = info {
                registry.put_account(b.chain_id, account, info).await?;
            }
            registry.put_signer(b.chain_id, account, signer, pid).await
        };
        match put.await {
            Ok(()) => (
                StatusCode::OK,
                json!({
                    "chainId": b.chain_id,
                    "account": hex_addr(account),
                    "permissionId": pid.to_string(),
                    "signer": hex_addr(signer),
                }),
            ),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }

    async fn forget(&self, chain: &str, account: &str, pid: &str) -> Answer {
        let (Ok(chain), Ok(account), Ok(pid)) = (
            chain.parse::<u64>(),
            account.parse::<Address>(),
            pid.parse::<FixedBytes<4>>(),
        ) else {
            return error(
                StatusCode::BAD_REQUEST,
                "expected /v1/permissions/{chainId}/{account}/{permissionId}",
            );
        };
        match self.gate.registry.delete_permission(chain, account, pid).await {
            Ok(existed) => (StatusCode::OK, json!({ "deleted": existed })),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }

    async fn list_revocations(&self) -> Answer {
        match self.gate.store.list_revoked().await {
            Ok(list) => (
                StatusCode::OK,
                json!({ "revoked": list.into_iter().map(|(s, at)| json!({"subject": s, "revokedAt": at})).collect::<Vec<_>>() }),
            ),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }

    async fn revoke(&self, body: &[u8]) -> Answer {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Body {
            signer: Option<Address>,
            sender: Option<Address>,
            account: Option<Address>,
            permission_id: Option<FixedBytes<4>>,
        }
        let b: Body = match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
        };
        let subject = match (b.signer, b.sender, b.account, b.permission_id) {
            (Some(s), None, None, None) => format!("signer:{}", hex_addr(s)),
            (None, Some(s), None, None) => format!("sender:{}", hex_addr(s)),
            (None, None, Some(a), Some(p)) => format!("permission:{}:{p}", hex_addr(a)),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "give exactly one of {signer}, {sender} or {account, permissionId}",
                )
            }
        };
        match self.gate.store.revoke(&subject, self.gate.clock.now()).await {
            Ok(()) => {
                tracing::info!(%subject, "revoked");
                (StatusCode::OK, json!({ "revoked": subject }))
            }
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }

    async fn unrevoke(&self, subject: &str) -> Answer {
        match self.gate.store.unrevoke(subject).await {
            Ok(was) => (StatusCode::OK, json!({ "unrevoked": was })),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }

    async fn add_key(&self, tenant: &str, body: &[u8]) -> Answer {
        let Some(key) = key_body(body) else {
            return error(StatusCode::BAD_REQUEST, "body: expected {\"key\": \"…\"}");
        };
        match self.gate.access.add_key(tenant, &key).await {
            Ok(()) => {
                tracing::info!(tenant, "API key added");
                (StatusCode::OK, json!({ "tenant": tenant, "added": true }))
            }
            Err(e @ crate::tenants::AccessError::Store(_)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }

    async fn revoke_key(&self, tenant: &str, body: &[u8]) -> Answer {
        let Some(key) = key_body(body) else {
            return error(StatusCode::BAD_REQUEST, "body: expected {\"key\": \"…\"}");
        };
        match self.gate.access.revoke_key(tenant, &key).await {
            Ok(was) => {
                if was {
                    tracing::info!(tenant, "API key revoked");
                }
                (StatusCode::OK, json!({ "tenant": tenant, "revoked": was }))
            }
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }

    fn reload(&self) -> Answer {
        let Some(path) = &self.config_path else {
            return error(StatusCode::CONFLICT, "opgate was started without a configuration file");
        };
        match Config::load(path, &Overrides::default()) {
            Ok(c) => {
                let n = c.policies.len();
                self.gate.set_policies(c.policies);
                tracing::info!(policies = n, "operator policies reloaded");
                (StatusCode::OK, json!({ "policies": n }))
            }
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
}

/// The `key` of a `{"key": "…"}` body (never logged).
fn key_body(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        key: String,
    }
    serde_json::from_slice::<Body>(body).ok().map(|b| b.key)
}

/// Serves the admin API until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    clients: Arc<crate::listener::Clients>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let handle = move |req| {
        let admin = admin.clone();
        async move {
            let (status, body) = admin.handle(req).await;
            let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
    };
    crate::telemetry::serve_side(listener, "admin", clients, handle, shutdown).await;
}
