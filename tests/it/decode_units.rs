//! Unit checks of the smaller pieces: ECDSA recovery edge cases, constants against their
//! definitions, stub signatures, policy and signer data, privileged targets.

use alloy_primitives::{hex, keccak256, Address, Bytes, FixedBytes, B256, U256};
use alloy_sol_types::{SolStruct, SolValue};
use opgate::decode::{
    calls, decode_policy, detect_stub,
    ecdsa::{eip191_hash, matching_scheme, recover, recover_eip191, recover_matching, recover_with, HashScheme},
    enable::{Enable, ENABLE_TYPEHASH},
    init, is_privileged,
    multichain::{decode_multichain_signature, DUMMY_ECDSA_SIG},
    permission::{decode_signer, WEBAUTHN_SIGNER_V0_0_4},
    policy::{GAS_POLICY, RATE_LIMIT_POLICY, RATE_LIMIT_RESET_POLICY, SIGNATURE_POLICY, TIMESTAMP_POLICY},
    signature::REPLAYABLE_MAGIC,
    Call, CallKind, DecodeError, KernelVersion, MultiChainSignature, PolicyParams, SignerKind, StubKind,
};

use crate::fixtures::{key, sign};

fn selector(sig: &str) -> [u8; 4] {
    keccak256(sig)[..4].try_into().unwrap()
}

#[test]
fn constants_match_their_definitions() {
    assert_eq!(calls::KERNEL_EXECUTE, selector("execute(bytes32,bytes)"));
    assert_eq!(
        calls::EXECUTE_USER_OP,
        selector("executeUserOp((address,uint256,bytes,bytes,bytes32,uint256,bytes32,bytes,bytes),bytes32)")
    );
    assert_eq!(
        calls::KERNEL_V2_EXECUTE,
        selector("execute(address,uint256,bytes,uint8)")
    );
    assert_eq!(
        calls::EXECUTE_BATCH_CALLS,
        selector("executeBatch((address,uint256,bytes)[])")
    );
    assert_eq!(
        calls::KERNEL_V2_EXECUTE_DELEGATE_CALL,
        selector("executeDelegateCall(address,bytes)")
    );
    assert_eq!(calls::SIMPLE_EXECUTE, selector("execute(address,uint256,bytes)"));
    assert_eq!(
        calls::SIMPLE_EXECUTE_BATCH,
        selector("executeBatch(address[],uint256[],bytes[])")
    );
    assert_eq!(
        calls::SIMPLE_EXECUTE_BATCH_V06,
        selector("executeBatch(address[],bytes[])")
    );
    assert_eq!(
        init::DEPLOY_WITH_FACTORY,
        selector("deployWithFactory(address,bytes,bytes32)")
    );
    assert_eq!(init::CREATE_ACCOUNT, selector("createAccount(bytes,bytes32)"));
    assert_eq!(
        init::INITIALIZE_V3_0,
        selector("initialize(bytes21,address,bytes,bytes)")
    );
    assert_eq!(
        init::INITIALIZE_V3_1,
        selector("initialize(bytes21,address,bytes,bytes,bytes[])")
    );
    assert_eq!(
        init::CREATE_ACCOUNT_V2,
        selector("createAccount(address,bytes,uint256)")
    );
    assert_eq!(init::INITIALIZE_V2, selector("initialize(address,bytes)"));
    assert_eq!(init::CREATE_SIMPLE_ACCOUNT, selector("createAccount(address,uint256)"));
    assert_eq!(REPLAYABLE_MAGIC, keccak256("kernel.replayable.signature"));
    let e = Enable {
        validationId: FixedBytes::ZERO,
        nonce: 0,
        hook: Address::ZERO,
        validatorData: Bytes::new(),
        hookData: Bytes::new(),
        selectorData: Bytes::new(),
    };
    assert_eq!(e.eip712_type_hash(), ENABLE_TYPEHASH);
    assert_eq!(
        ENABLE_TYPEHASH,
        keccak256(
            "Enable(bytes21 validationId,uint32 nonce,address hook,bytes validatorData,bytes hookData,bytes selectorData)"
        )
    );
}

#[test]
fn kernel_versions() {
    assert_eq!(KernelVersion::parse("0.3.0-beta"), Some(KernelVersion::V3_0));
    assert_eq!(KernelVersion::parse("0.3.3"), Some(KernelVersion::V3_3));
    assert_eq!(KernelVersion::parse("0.2.4"), None);
    assert_eq!(KernelVersion::V3_0.domain_version(), "0.3.0-beta");
    // v3.3 bumps the digest nonce when the validation is already installed at currentNonce.
    assert_eq!(KernelVersion::V3_3.digest_nonce(1, 1), 2);
    assert_eq!(KernelVersion::V3_3.digest_nonce(1, 0), 1);
    assert_eq!(KernelVersion::V3_2.digest_nonce(1, 1), 1);
}

#[test]
fn ecdsa_recovery_like_ecrecover() {
    let key = key();
    let owner = Address::from_private_key(&key);
    let hash = keccak256("hello");
    let sig = sign(&key, &hash);
    assert_eq!(recover(&hash, &sig), Ok(owner));
    assert_ne!(recover_eip191(&hash, &sig), Ok(owner));
    // High s with the other parity recovers the same key (ecrecover does not check malleability).
    let n = U256::from_str_radix("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16).unwrap();
    let mut high = sig;
    high[32..64].copy_from_slice(&(n - U256::from_be_slice(&sig[32..64])).to_be_bytes::<32>());
    high[64] = if sig[64] == 27 { 28 } else { 27 };
    assert_eq!(recover(&hash, &high), Ok(owner));
    for v in [0u8, 1, 29, 37] {
        let mut bad = sig;
        bad[64] = v;
        assert_eq!(recover(&hash, &bad), Err(DecodeError::InvalidRecoveryId(v)));
    }
    let mut zero_r = sig;
    zero_r[..32].fill(0);
    assert_eq!(recover(&hash, &zero_r), Err(DecodeError::Unrecoverable));
    let mut s_n = sig;
    s_n[32..64].copy_from_slice(&n.to_be_bytes::<32>());
    assert_eq!(recover(&hash, &s_n), Err(DecodeError::Unrecoverable));
    let mut s_max = sig;
    s_max[32..64].fill(0xFF);
    assert_eq!(recover(&hash, &s_max), Err(DecodeError::Unrecoverable));
    // EIP-2098 compact form: r ‖ (yParity << 255 | s), as solady accepts it.
    let mut compact = sig[..64].to_vec();
    if sig[64] == 28 {
        compact[32] |= 0x80;
    }
    assert_eq!(recover(&hash, &compact), recover(&hash, &sig));
    let mut flipped = compact.clone();
    flipped[32] ^= 0x80;
    assert_ne!(recover(&hash, &flipped).ok(), recover(&hash, &sig).ok());
    for len in [63, 66] {
        let mut other = sig.to_vec();
        other.resize(len, 0);
        assert!(
            matches!(recover(&hash, &other), Err(DecodeError::BadSize { .. })),
            "{len} bytes"
        );
    }
}

#[test]
fn recover_matching_picks_the_scheme_like_matching_scheme() {
    let key = key();
    let owner = Address::from_private_key(&key);
    let other = Address::repeat_byte(3);
    let hash = keccak256("enable digest");
    let raw = sign(&key, &hash);
    let eip191 = sign(&key, &eip191_hash(&hash));
    let mut bad_v = raw;
    bad_v[64] = 1;
    for sig in [&raw[..], &eip191[..], &bad_v[..], &raw[..64]] {
        for expected in [None, Some(owner), Some(other)] {
            for default in [HashScheme::Raw, HashScheme::Eip191] {
                // What the decoders did before: pick the scheme, then recover again with it.
                let scheme = expected.and_then(|e| matching_scheme(&hash, sig, e)).unwrap_or(default);
                let want = recover_with(scheme, &hash, sig).map(|a| (a, scheme));
                assert_eq!(recover_matching(&hash, sig, expected, default), want);
            }
        }
    }
    assert_eq!(
        recover_matching(&hash, &eip191, Some(owner), HashScheme::Raw),
        Ok((owner, HashScheme::Eip191))
    );
    assert_eq!(
        recover_matching(&hash, &raw, Some(other), HashScheme::Raw),
        Ok((owner, HashScheme::Raw))
    );
}

#[test]
fn stubs() {
    let permission = [&[0xFF][..], &DUMMY_ECDSA_SIG].concat();
    assert_eq!(detect_stub(&permission), Some(StubKind::Permission));
    assert_eq!(detect_stub(&DUMMY_ECDSA_SIG), Some(StubKind::Ecdsa));
    let tail = (B256::repeat_byte(1), vec![B256::repeat_byte(2)]).abi_encode_params();
    let multi = [&DUMMY_ECDSA_SIG[..], &[3; 32], &tail].concat();
    assert_eq!(detect_stub(&multi), Some(StubKind::MultiChain));
    assert!(matches!(
        decode_multichain_signature(&multi, true),
        Ok(MultiChainSignature::Dummy { .. })
    ));
    // Outside validateUserOp there is no dummy branch: the tail must be a proof.
    assert!(decode_multichain_signature(&multi, false).is_err());
    assert_eq!(detect_stub(&[0xFF; 66]), None);
    assert_eq!(detect_stub(&[]), None);
    assert!(matches!(
        decode_multichain_signature(&[0; 80], true),
        Err(DecodeError::TooShort { len: 80, min: 97, .. })
    ));
}

#[test]
fn small_policies_and_signers() {
    let flag = FixedBytes([0, 1]);
    let gas = decode_policy(
        GAS_POLICY,
        flag,
        &(U256::from(5u8), true, Address::repeat_byte(9)).abi_encode_params(),
    );
    assert!(gas.skips_user_op() && !gas.skips_signature());
    assert_eq!(
        gas.params,
        PolicyParams::Gas {
            allowed: 5,
            enforce_paymaster: true,
            allowed_paymaster: Address::repeat_byte(9)
        }
    );
    // A bool word of 2 makes GasPolicy's abi.decode revert.
    let bad = [U256::from(5u8), U256::from(2u8), U256::ZERO].abi_encode_params();
    assert!(matches!(
        decode_policy(GAS_POLICY, flag, &bad).params,
        PolicyParams::Invalid { .. }
    ));
    let ts = decode_policy(
        TIMESTAMP_POLICY,
        flag,
        &(U256::from(1u8), U256::from(2u8)).abi_encode_params(),
    );
    assert_eq!(
        ts.params,
        PolicyParams::Timestamp {
            valid_after: 1,
            valid_until: 2
        }
    );
    let over = (U256::from(1u64 << 48), U256::ZERO).abi_encode_params();
    assert!(matches!(
        decode_policy(TIMESTAMP_POLICY, flag, &over).params,
        PolicyParams::Invalid { .. }
    ));
    let rl = hex!("00000000003c000000000005000000000064");
    assert_eq!(
        decode_policy(RATE_LIMIT_POLICY, flag, &rl).params,
        PolicyParams::RateLimit {
            interval: 60,
            count: 5,
            start_at: 100
        }
    );
    assert!(matches!(
        decode_policy(RATE_LIMIT_POLICY, flag, &rl[..17]).params,
        PolicyParams::Invalid { .. }
    ));
    assert_eq!(
        decode_policy(RATE_LIMIT_RESET_POLICY, flag, &rl[..12]).params,
        PolicyParams::RateLimitReset {
            interval: 60,
            initial_count: 5
        }
    );
    let callers = vec![Address::repeat_byte(1), Address::repeat_byte(2)];
    assert_eq!(
        decode_policy(SIGNATURE_POLICY, flag, &callers.abi_encode()).params,
        PolicyParams::SignatureCaller {
            allowed_callers: callers
        }
    );
    let unknown = decode_policy(Address::repeat_byte(0x42), flag, &[1, 2, 3]);
    assert_eq!(
        unknown.params,
        PolicyParams::Unknown {
            data: Bytes::from(vec![1, 2, 3])
        }
    );
    let json = serde_json::to_value(&unknown).unwrap();
    assert_eq!(json["type"], "unknown");
    assert_eq!(json["address"], "0x4242424242424242424242424242424242424242");

    let key = (B256::repeat_byte(1), B256::repeat_byte(2), B256::repeat_byte(3)).abi_encode_params();
    let s = decode_signer(WEBAUTHN_SIGNER_V0_0_4, &key).unwrap();
    assert_eq!((s.kind, s.version), (SignerKind::WebAuthn, Some("0.0.4")));
    assert_eq!(s.webauthn.unwrap().authenticator_id_hash, B256::repeat_byte(3));
    assert!(decode_signer(WEBAUTHN_SIGNER_V0_0_4, &key[..64]).is_err());
    let s = decode_signer(Address::repeat_byte(5), &[1]).unwrap();
    assert_eq!((s.kind, s.address), (SignerKind::Unknown, None));
}

#[test]
fn privileged_targets() {
    let account = Address::repeat_byte(0xAA);
    let module = Address::repeat_byte(0xBB);
    let call = |target| Call {
        call_type: CallKind::Call,
        target,
        value: U256::ZERO,
        selector: None,
        short_data: false,
        data: Bytes::new(),
    };
    assert!(is_privileged(&call(account), account, &[]));
    assert!(is_privileged(&call(module), account, &[module]));
    assert!(!is_privileged(&call(Address::repeat_byte(1)), account, &[module]));
}
