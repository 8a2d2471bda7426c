//! State from the chain's node, pinned to one block and shared by every simulation on that block.
//!
//! Reads go through an alloy provider. Each miss costs one round trip: an account's balance, nonce
//! and code travel in one JSON-RPC batch, and [`BlockState::prefetch`] loads every account and
//! slot an access list names in one batch too. Nothing here is ever invalidated: a new block gets
//! a new [`BlockState`], and the old one is dropped with its last simulation.
//!
//! The provider's transport is [`NodeTransport`]: JSON-RPC over opgate's outbound client (see
//! [`crate::outbound`]), so an https node is reached with the same rustls, the same trusted roots
//! (`[tls] ca_file` included) and the same connection pool as the upstream bundlers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use alloy_json_rpc::{RequestPacket, ResponsePacket};
use alloy_primitives::{Address, Bytes, B256, U256, U64};
use alloy_provider::{Provider, RootProvider};
use alloy_rpc_client::{BatchRequest, RpcClient};
use alloy_transport::{Authorization, TransportError, TransportErrorKind, TransportFut};
use http::{HeaderMap, HeaderValue, Uri};
use http_body_util::{BodyExt, Full, Limited};
use revm::bytecode::Bytecode;
use revm::database_interface::{DBErrorMarker, DatabaseRef};
use revm::primitives::KECCAK_EMPTY;
use revm::state::AccountInfo;
use serde::Deserialize;

use crate::outbound::{error_chain, HttpsClient};

/// The node could not answer a read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node: {0}")]
pub struct NodeError(pub String);

impl DBErrorMarker for NodeError {}

impl NodeError {
    fn of(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// The largest answer accepted from a node: a prefetch batch carries the code of every contract an
/// op touches, so this is generous; it only stops a misbehaving node from exhausting memory.
const MAX_NODE_RESPONSE_BYTES: usize = 64 << 20;

/// How much of a node's unexpected answer an error quotes.
const QUOTED_BODY_CHARS: usize = 200;

/// JSON-RPC over HTTP(S) to a node, on opgate's outbound client, with the configured headers and
/// `user:password@` from the URL sent as basic auth. Its errors never show the URL, whose path or
/// query often holds an API key (Alchemy, Infura, QuickNode), and what they quote of a node's
/// answer has the URL's and the headers' secrets masked, in case the node echoes them.
#[derive(Clone)]
pub struct NodeTransport {
    client: HttpsClient,
    /// `None` when the URL is not one an HTTP request can carry (configuration rules it out).
    uri: Option<Uri>,
    headers: Arc<HeaderMap>,
    /// Path segments, query values, credentials and header values, longest first.
    secrets: Arc<Vec<String>>,
}

impl std::fmt::Debug for NodeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTransport")
            .field("host", &self.uri.as_ref().and_then(Uri::host))
            .finish_non_exhaustive()
    }
}

impl NodeTransport {
    /// A transport to `url`, sending `headers` with every request, over `client`.
    pub fn new(url: &url::Url, mut headers: HeaderMap, client: HttpsClient) -> Self {
        if let Some(auth) = basic_auth(url) {
            headers.entry(http::header::AUTHORIZATION).or_insert(auth);
        }
        let mut bare = url.clone();
        let _ = (bare.set_username(""), bare.set_password(None));
        let secrets = secrets(url, &headers);
        Self {
            client,
            uri: bare.as_str().parse().ok(),
            headers: Arc::new(headers),
            secrets: Arc::new(secrets),
        }
    }

    /// The start of a node's answer, for an error message, with secrets masked.
    fn quoted(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let mut text = match text.char_indices().nth(QUOTED_BODY_CHARS) {
            Some((end, _)) => format!("{}…", &text[..end]),
            None => text.into_owned(),
        };
        for s in self.secrets.iter() {
            text = text.replace(s.as_str(), "***");
        }
        text
    }

    async fn send(self, packet: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let uri = self
            .uri
            .clone()
            .ok_or_else(|| TransportErrorKind::custom_str("the node URL cannot be requested over HTTP"))?;
        let packet_headers = packet.headers();
        let body = packet.serialize().map_err(TransportError::ser_err)?;
        let mut request = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(bytes::Bytes::from(body.get().to_owned())))
            .map_err(|e| TransportErrorKind::custom_str(&format!("cannot build the request: {e}")))?;
        request.headers_mut().extend(packet_headers);
        for (name, value) in self.headers.iter() {
            request.headers_mut().insert(name, value.clone());
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| TransportErrorKind::custom_str(&error_chain(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_NODE_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
                Ok(_) => TransportErrorKind::custom_str(&format!(
                    "the answer is larger than {MAX_NODE_RESPONSE_BYTES} bytes"
                )),
                Err(e) => TransportErrorKind::custom_str(&error_chain(&*e)),
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(TransportErrorKind::http_error(status.as_u16(), self.quoted(&body)));
        }
        serde_json::from_slice(&body).map_err(|e| TransportError::deser_err(e, self.quoted(&body)))
    }
}

impl tower::Service<RequestPacket> for NodeTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, packet: RequestPacket) -> TransportFut<'static> {
        Box::pin(self.clone().send(packet))
    }
}

/// `Authorization: Basic …` from the URL's `user:password@`, percent-decoded (as browsers and
/// curl send it).
fn basic_auth(url: &url::Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let auth = Authorization::basic(decode(url.username()), decode(url.password().unwrap_or_default()));
    let mut value = HeaderValue::from_str(&auth.to_string()).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// What of `url` and `headers` may be a secret, raw and percent-decoded, longest first: parts
/// shorter than 6 characters (`v2`, `rpc`) are left alone.
fn secrets(url: &url::Url, headers: &HeaderMap) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    parts.extend(url.path_segments().into_iter().flatten().map(str::to_string));
    parts.extend(url.query_pairs().flat_map(|(k, v)| [k.into_owned(), v.into_owned()]));
    parts.extend(url.query().map(str::to_string));
    parts.push(url.username().to_string());
    parts.extend(url.password().map(str::to_string));
    parts.extend(headers.values().filter_map(|v| v.to_str().ok()).map(str::to_string));
    let decoded: Vec<String> = parts
        .iter()
        .map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned())
        .collect();
    parts.extend(decoded);
    parts.retain(|p| p.chars().count() >= 6);
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts.dedup();
    parts
}

/// The chain's node: an alloy provider and a count of the round trips made to it.
#[derive(Debug)]
pub struct Node {
    provider: RootProvider,
    handle: tokio::runtime::Handle,
    round_trips: AtomicU64,
}

/// The block a simulation runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// Number.
    pub number: U64,
    /// Hash.
    pub hash: B256,
    /// Timestamp (seconds).
    pub timestamp: U64,
    /// Base fee per gas.
    #[serde(default)]
    pub base_fee_per_gas: Option<U64>,
    /// Gas limit.
    pub gas_limit: U64,
}

impl Node {
    /// A node reached through `transport`; reads block on `handle` when they run on a blocking
    /// thread.
    pub fn new(transport: NodeTransport, handle: tokio::runtime::Handle) -> Self {
        Self {
            provider: RootProvider::new(RpcClient::new(transport, false)),
            handle,
            round_trips: AtomicU64::new(0),
        }
    }

    /// Round trips made so far.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    fn trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// The latest block's header.
    pub async fn latest(&self) -> Result<Header, NodeError> {
        self.trip();
        let h: Option<Header> = self
            .provider
            .client()
            .request("eth_getBlockByNumber", ("latest", false))
            .await
            .map_err(NodeError::of)?;
        h.ok_or_else(|| NodeError("the node has no latest block".into()))
    }

    /// The latest block number (`eth_blockNumber`).
    pub async fn block_number(&self) -> Result<u64, NodeError> {
        self.trip();
        let n: U64 = self
            .provider
            .client()
            .request_noparams("eth_blockNumber")
            .await
            .map_err(NodeError::of)?;
        Ok(n.to::<u64>())
    }

    /// Sends `calls` (method, params) in one batch: one round trip. The batch fails when the round
    /// trip does; each call's own error (a revert, a method the node lacks) is its own answer.
    pub async fn batch(
        &self,
        calls: &[(&'static str, serde_json::Value)],
    ) -> Result<Vec<Result<serde_json::Value, String>>, NodeError> {
        let mut batch = BatchRequest::new(self.provider.client());
        let mut waiters = Vec::with_capacity(calls.len());
        for (method, params) in calls {
            waiters.push(
                batch
                    .add_call::<_, serde_json::Value>(*method, params)
                    .map_err(NodeError::of)?,
            );
        }
        self.trip();
        batch.send().await.map_err(NodeError::of)?;
        let mut answers = Vec::with_capacity(waiters.len());
        for w in waiters {
            answers.push(w.await.map_err(|e| e.to_string()));
        }
        Ok(answers)
    }

    /// `eth_createAccessList` for a call at `block`: the accounts and slots it touches.
    pub async fn access_list(
        &self,
        call: &serde_json::Value,
        block: U64,
    ) -> Result<Vec<(Address, Vec<U256>)>, NodeError> {
        #[derive(Debug, Clone, Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Item {
            address: Address,
            storage_keys: Vec<U256>,
        }
        #[derive(Debug, Clone, Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            access_list: Vec<Item>,
        }
        self.trip();
        let a: Answer = self
            .provider
            .client()
            .request("eth_createAccessList", (call, block))
            .await
            .map_err(NodeError::of)?;
        Ok(a.access_list.into_iter().map(|i| (i.address, i.storage_keys)).collect())
    }
}

/// State at one block: what was read so far, shared by every simulation on the block.
#[derive(Debug)]
pub struct BlockState {
    /// The block.
    pub header: Header,
    node: Arc<Node>,
    accounts: RwLock<HashMap<Address, Option<AccountInfo>>>,
    storage: RwLock<HashMap<(Address, U256), U256>>,
    codes: RwLock<HashMap<B256, Bytecode>>,
    hashes: RwLock<HashMap<u64, B256>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl BlockState {
    /// Empty state at `header`.
    pub fn new(node: Arc<Node>, header: Header) -> Self {
        Self {
            header,
            node,
            accounts: RwLock::default(),
            storage: RwLock::default(),
            codes: RwLock::default(),
            hashes: RwLock::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Reads served from memory and reads that went to the node.
    pub fn hits_misses(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Whether an account is already loaded.
    pub fn has_account(&self, a: Address) -> bool {
        self.accounts.read().is_ok_and(|m| m.contains_key(&a))
    }

    /// Loads `accounts` and `slots` not yet known, all in one batch (one round trip).
    pub async fn prefetch(&self, accounts: &[Address], slots: &[(Address, U256)]) -> Result<(), NodeError> {
        let accounts: Vec<Address> = {
            let known = self.accounts.read().map_err(NodeError::of)?;
            let mut v: Vec<Address> = accounts.iter().copied().filter(|a| !known.contains_key(a)).collect();
            v.sort();
            v.dedup();
            v
        };
        let slots: Vec<(Address, U256)> = {
            let known = self.storage.read().map_err(NodeError::of)?;
            let mut v: Vec<_> = slots.iter().copied().filter(|s| !known.contains_key(s)).collect();
            v.sort();
            v.dedup();
            v
        };
        if accounts.is_empty() && slots.is_empty() {
            return Ok(());
        }
        let block = self.header.number;
        let mut batch = BatchRequest::new(self.node.provider.client());
        let mut account_waiters = Vec::with_capacity(accounts.len());
        for a in &accounts {
            let balance = batch
                .add_call::<_, U256>("eth_getBalance", &(a, block))
                .map_err(NodeError::of)?;
            let nonce = batch
                .add_call::<_, U64>("eth_getTransactionCount", &(a, block))
                .map_err(NodeError::of)?;
            let code = batch
                .add_call::<_, Bytes>("eth_getCode", &(a, block))
                .map_err(NodeError::of)?;
            account_waiters.push((*a, balance, nonce, code));
        }
        let mut slot_waiters = Vec::with_capacity(slots.len());
        for (a, k) in &slots {
            let w = batch
                .add_call::<_, B256>("eth_getStorageAt", &(a, k, block))
                .map_err(NodeError::of)?;
            slot_waiters.push(((*a, *k), w));
        }
        self.node.trip();
        batch.send().await.map_err(NodeError::of)?;
        let mut loaded = Vec::with_capacity(account_waiters.len());
        for (a, balance, nonce, code) in account_waiters {
            let (balance, nonce, code) = (
                balance.await.map_err(NodeError::of)?,
                nonce.await.map_err(NodeError::of)?,
                code.await.map_err(NodeError::of)?,
            );
            loaded.push((a, account_info(balance, nonce.to::<u64>(), code)));
        }
        let mut values = Vec::with_capacity(slot_waiters.len());
        for (s, w) in slot_waiters {
            values.push((s, U256::from_be_bytes(w.await.map_err(NodeError::of)?.0)));
        }
        {
            let mut codes = self.codes.write().map_err(NodeError::of)?;
            for (_, info) in &loaded {
                if let Some(info) = info {
                    if let Some(code) = &info.code {
                        codes.entry(info.code_hash).or_insert_with(|| code.clone());
                    }
                }
            }
        }
        self.accounts.write().map_err(NodeError::of)?.extend(loaded);
        self.storage.write().map_err(NodeError::of)?.extend(values);
        Ok(())
    }

    fn fetch<T>(&self, f: impl std::future::Future<Output = Result<T, NodeError>>) -> Result<T, NodeError> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.node.handle.block_on(f)
    }
}

fn account_info(balance: U256, nonce: u64, code: Bytes) -> Option<AccountInfo> {
    if balance.is_zero() && nonce == 0 && code.is_empty() {
        return None;
    }
    let (hash, code) = if code.is_empty() {
        (KECCAK_EMPTY, Bytecode::default())
    } else {
        let c = Bytecode::new_raw(code);
        (c.hash_slow(), c)
    };
    Some(AccountInfo::new(balance, nonce, hash, code))
}

impl DatabaseRef for BlockState {
    type Error = NodeError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, NodeError> {
        if let Some(a) = self.accounts.read().map_err(NodeError::of)?.get(&address) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(a.clone());
        }
        self.fetch(self.prefetch(&[address], &[]))?;
        Ok(self
            .accounts
            .read()
            .map_err(NodeError::of)?
            .get(&address)
            .cloned()
            .flatten())
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, NodeError> {
        if code_hash == KECCAK_EMPTY {
            return Ok(Bytecode::default());
        }
        self.codes
            .read()
            .map_err(NodeError::of)?
            .get(&code_hash)
            .cloned()
            .ok_or_else(|| NodeError(format!("code {code_hash} was never loaded")))
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, NodeError> {
        if let Some(v) = self.storage.read().map_err(NodeError::of)?.get(&(address, index)) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(*v);
        }
        self.fetch(self.prefetch(&[], &[(address, index)]))?;
        Ok(self
            .storage
            .read()
            .map_err(NodeError::of)?
            .get(&(address, index))
            .copied()
            .unwrap_or_default())
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, NodeError> {
        if number == self.header.number.to::<u64>() {
            return Ok(self.header.hash);
        }
        if let Some(h) = self.hashes.read().map_err(NodeError::of)?.get(&number) {
            return Ok(*h);
        }
        let node = self.node.clone();
        let h: Option<Header> = self.fetch(async move {
            node.trip();
            node.provider
                .client()
                .request("eth_getBlockByNumber", (U64::from(number), false))
                .await
                .map_err(NodeError::of)
        })?;
        let hash = h.map(|h| h.hash).unwrap_or_default();
        self.hashes.write().map_err(NodeError::of)?.insert(number, hash);
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(url: &str, headers: &[(&'static str, &str)]) -> NodeTransport {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        let client = crate::outbound::client(&[], std::time::Duration::from_secs(1)).unwrap();
        NodeTransport::new(&url.parse().unwrap(), map, client)
    }

    #[tokio::test]
    async fn quotes_of_a_node_answer_mask_the_secrets() {
        let t = transport(
            "https://user:pa%24%24word@node.example/v2/abcdef123456?apikey=qwerty789",
            &[("x-api-key", "header-secret")],
        );
        let quoted =
            t.quoted(b"bad key abcdef123456 (qwerty789) for user pa$$word, header-secret; chain mainnet via /v2/");
        assert_eq!(quoted, "bad key *** (***) for user ***, ***; chain mainnet via /v2/");
        assert!(t.quoted(&[b'x'; 500]).ends_with("x…"));
        assert!(!format!("{t:?}").contains("abcdef"));
    }

    #[tokio::test]
    async fn url_credentials_become_basic_auth_and_leave_the_uri() {
        let t = transport("https://project%40id:s3cret@node.example/rpc", &[]);
        assert_eq!(t.headers[http::header::AUTHORIZATION], "Basic cHJvamVjdEBpZDpzM2NyZXQ=");
        assert_eq!(t.uri.as_ref().unwrap().to_string(), "https://node.example/rpc");
        // A configured Authorization header wins.
        let t = transport("https://u:p@node.example/", &[("authorization", "Bearer t")]);
        assert_eq!(t.headers[http::header::AUTHORIZATION], "Bearer t");
    }
}
