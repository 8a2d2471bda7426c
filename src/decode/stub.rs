//! Recognises the SDK's stub signatures, sent with gas-estimation calls and never valid.

use serde::Serialize;

use super::multichain::{decode_multichain_signature, MultiChainSignature, DUMMY_ECDSA_SIG};
use super::signature::{strip_replayable, SIGNER_MARKER};

/// A recognised stub signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StubKind {
    /// `0xFF ‖ DUMMY_ECDSA_SIG`: permission validator stub.
    Permission,
    /// `DUMMY_ECDSA_SIG`: ECDSA (or multi-chain) root validator stub.
    Ecdsa,
    /// `DUMMY_ECDSA_SIG ‖ root ‖ abi.encode(bytes32, bytes32[])`: multi-chain stub.
    MultiChain,
}

/// Which stub `sig` is, if any (a replayable prefix is ignored).
pub fn detect_stub(sig: &[u8]) -> Option<StubKind> {
    let (_, sig) = strip_replayable(sig);
    match sig {
        [SIGNER_MARKER, rest @ ..] if rest == DUMMY_ECDSA_SIG => Some(StubKind::Permission),
        _ if sig == DUMMY_ECDSA_SIG => Some(StubKind::Ecdsa),
        _ if sig.starts_with(&DUMMY_ECDSA_SIG) => match decode_multichain_signature(sig, true) {
            Ok(MultiChainSignature::Dummy { .. }) => Some(StubKind::MultiChain),
            _ => None,
        },
        _ => None,
    }
}
