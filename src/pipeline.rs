//! The life of an `eth_sendUserOperation`: decode → policy → reserve → relay → commit or refund.
//!
//! Today the pipeline relays with the send rule of [`crate::relay::Relay::send_user_operation`]:
//! never to a second upstream once one may have received the operation.

use serde_json::value::RawValue;

use crate::chain::Chain;
use crate::rpc::errors::{self, RpcFailure};

/// Handles one `eth_sendUserOperation` with its raw params.
pub async fn send_user_operation(chain: &Chain, params: Option<&RawValue>) -> Result<Box<RawValue>, RpcFailure> {
    match chain.relay.send_user_operation(params).await {
        Ok(answer) => errors::from_answer(answer),
        Err(e) => Err(errors::from_relay(&e)),
    }
}
