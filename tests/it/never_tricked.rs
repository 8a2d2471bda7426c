//! opgate is never tricked: every op here is built and signed in the test — a Kernel v3 account
//! deployed by its first op, which also enables an ECDSA session key (enable mode), then
//! default-mode session ops — and sent through a real opgate in front of a fake bundler on
//! 127.0.0.1. Each attack class of the README's "Guardrails" (and the chain-mirroring checks next
//! to them) is refused with the expected `data.reason`, naming a policy, a rule and a detail,
//! without the bundler seeing the op; each legitimate variant is forwarded and the bundler's
//! answer comes back. Where a class applies to several Kernel releases, it runs on each of
//! v3.0, v3.1, v3.2 and v3.3 (replayable signatures from v3.2 on, the re-install refusal below
//! v3.3).
//!
//! Addresses, selectors and layouts come from the spec (`kernel-v3.md` §2–§6), written out here
//! rather than taken from opgate's own constants; opgate's code is used only to compute the
//! userOpHash and the Enable digest (its hashing has its own vector tests).
//!
//! `OPGATE_NEVER_TRICKED_VERBOSE=1` prints every answer's reason, policy, rule and detail.

use alloy_primitives::{address, keccak256, Address, Bytes, FixedBytes, U256};
use alloy_sol_types::SolValue;
use k256::ecdsa::SigningKey;
use opgate::config::{Config, Overrides};
use opgate::decode::enable::KernelVersion;

use crate::fixtures::sign;

use crate::kernel_ops::*;

// ---------------------------------------------------------------------------------------------
// The builders themselves
// ---------------------------------------------------------------------------------------------

/// What the builders make decodes as intended — release, owner and approval of the deploying
/// enable op, the permission, the calls — so a refusal below is about the attack, not a typo.
#[test]
fn built_ops_decode_as_intended() {
    use opgate::decode::{decode_kernel_with, DecodeOptions};
    assert_eq!(REPLAYABLE_MAGIC, keccak256("kernel.replayable.signature"));
    for v in VERSIONS {
        let a = Account::new(v, 0);
        let grant = Grant::of(vec![
            call_policy(0, vec![transfer_to_recipient_at_most_100()]),
            timestamp(0, NOW + 3600),
        ]);
        let replayable = v >= KernelVersion::V3_2;
        let op = enable_op(
            &a,
            &grant,
            pay(5),
            EnableOpts {
                replayable,
                ..Default::default()
            },
        );
        let decoded = opgate::explain::decode_text(&op.params(), None, Some(CHAIN)).expect("decodes");
        assert_eq!(decoded.account, "kernel-v3", "{}", label(v));
        let opts = DecodeOptions {
            chain_id: Some(CHAIN),
            ..Default::default()
        };
        let parsed = op.parsed();
        let k = decode_kernel_with(
            a.address,
            op.nonce,
            &op.call_data,
            &op.signature,
            &parsed.init_code(),
            &opts,
        );
        assert!(k.errors.is_empty(), "{}: {:?}", label(v), k.errors);
        let d = k.deployment.as_ref().expect("deploys");
        assert_eq!(d.kernel_version, Some(v), "{}", label(v));
        let root = d.root_validator.as_ref().expect("root validator");
        assert_eq!(root.owner, Some(a.owner_address()), "{}", label(v));
        assert_eq!(root.address, Some(root_ecdsa_validator(v)), "{}", label(v));
        assert_eq!(k.replayable, replayable, "{}", label(v));
        let e = k.enable.as_ref().expect("enable wrapper");
        assert_eq!(e.approved, Some(true), "{}: the owner's approval verifies", label(v));
        assert_eq!(e.digest_nonce, Some(1), "{}", label(v));
        let p = k.permission.as_ref().expect("permission");
        assert_eq!(p.signer.address, Some(a.session_address()), "{}", label(v));
        assert_eq!(p.policies.len(), 2, "{}", label(v));
        let calls = k.calls.as_ref().expect("calls");
        assert_eq!(calls.calls.len(), 1);
        assert_eq!(calls.calls[0].target, TOKEN);
        assert_eq!(&calls.calls[0].data[..], &transfer(RECIPIENT, 5)[..]);
        assert!(calls.non_canonical.is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// 1. One reading of the bytes
// ---------------------------------------------------------------------------------------------

/// Call data with a second reading is refused (`InvalidCallData`); the slack the Kernel itself
/// ignores is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_data_has_one_reading() {
    let h = Harness::start(&[CHAIN], "").await;
    for v in VERSIONS {
        let a = sudo_session(&h, v, 1).await;
        let mut seq = 0;
        let mut op = |call_data: Vec<u8>| {
            seq += 1;
            session_signed(&a, session_op(&a, seq, call_data), CHAIN)
        };

        // Two batch elements whose offsets point at one tuple: one call or two?
        let tuple = execution_tuple(TOKEN, 0, &transfer(RECIPIENT, 5));
        let shared = [&word(0x20)[..], &word(2), &word(0x40), &word(0x40), &tuple].concat();
        let refused = [
            (
                "a batch whose two elements share one tuple",
                execute(mode(BATCH, 0), &shared),
            ),
            ("execute whose executionCalldata offset is not 0x40 (decoy at 0x40)", {
                let decoy = single(TOKEN, 0, &transfer(RECIPIENT, 1));
                let real = single(TOKEN, 0, &transfer(STRANGER, 1_000_000));
                let padded = |b: &[u8]| {
                    let mut p = b.to_vec();
                    p.resize(b.len().div_ceil(32) * 32, 0);
                    p
                };
                let offset = 0x40 + 32 + padded(&decoy).len() as u64;
                [
                    &execute_selector()[..],
                    &mode(SINGLE, 0),
                    &word(offset),
                    &word(decoy.len() as u64),
                    &padded(&decoy),
                    &word(real.len() as u64),
                    &padded(&real),
                ]
                .concat()
            }),
            ("32 bytes after the encoded Execution[] inside executionCalldata", {
                let exec = [batch(&[(TOKEN, 0, transfer(RECIPIENT, 5))]), vec![0xab; 32]].concat();
                execute(mode(BATCH, 0), &exec)
            }),
            ("a dirty address word in a batch element", {
                let mut tuple = execution_tuple(TOKEN, 0, &transfer(RECIPIENT, 5));
                tuple[0] = 0x01;
                let exec = [&word(0x20)[..], &word(1), &word(0x20), &tuple].concat();
                execute(mode(BATCH, 0), &exec)
            }),
            ("transfer(address,uint256) with 32 extra bytes after its arguments", {
                let data = [transfer(RECIPIENT, 5), vec![0xab; 32]].concat();
                execute_single(TOKEN, 0, &data)
            }),
        ];
        for (what, call_data) in refused {
            h.refuses(
                CHAIN,
                &op(call_data),
                "InvalidCallData",
                &format!("{}: {what}", label(v)),
            )
            .await;
        }

        let mut loose_mode = mode(SINGLE, 0);
        loose_mode[2..].fill(0x5a);
        let forwarded = [
            (
                "32 junk bytes after execute's own arguments",
                [pay(1), vec![0xcd; 32]].concat(),
            ),
            (
                "mode-word bytes 2..31 non-zero",
                execute(loose_mode, &single(TOKEN, 0, &transfer(RECIPIENT, 1))),
            ),
            ("an empty batch", execute(mode(BATCH, 0), &batch(&[]))),
        ];
        for (what, call_data) in forwarded {
            h.forwards(CHAIN, &op(call_data), &format!("{}: {what}", label(v)))
                .await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Execution modes
// ---------------------------------------------------------------------------------------------

/// Modes the Kernel accepts in validation and reverts on are refused; exec type try is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_modes_the_kernel_reverts_on_are_refused() {
    let h = Harness::start(&[CHAIN], "").await;
    for v in VERSIONS {
        let a = sudo_session(&h, v, 2).await;
        let exec = single(TOKEN, 0, &transfer(RECIPIENT, 1));
        let static_call = session_signed(&a, session_op(&a, 1, execute(mode(0xFE, 0x00), &exec)), CHAIN);
        let exec_type_2 = session_signed(&a, session_op(&a, 2, execute(mode(SINGLE, 0x02), &exec)), CHAIN);
        let try_mode = session_signed(&a, session_op(&a, 3, execute(mode(SINGLE, 0x01), &exec)), CHAIN);
        let l = label(v);
        h.refuses(
            CHAIN,
            &static_call,
            "InvalidCallData",
            &format!("{l}: call type 0xFE (static)"),
        )
        .await;
        h.refuses(CHAIN, &exec_type_2, "InvalidCallData", &format!("{l}: exec type 0x02"))
            .await;
        h.forwards(CHAIN, &try_mode, &format!("{l}: exec type 0x01 (try)"))
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Privileged calls
// ---------------------------------------------------------------------------------------------

/// A session key never reaches the account's own functions or its modules: neither with call
/// data other than `execute` (even when the owner granted that selector), nor by `execute`
/// calling the account, its root validator or its signer. (Not granted, those selectors are
/// refused by the Kernel's own selector gate, which opgate mirrors first: `SelectorNotGranted`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_keys_cannot_make_privileged_calls() {
    let h = Harness::start(&[CHAIN], "").await;
    for v in VERSIONS {
        let l = label(v);
        let a = sudo_session(&h, v, 3).await;
        let install_module = [
            &selector("installModule(uint256,address,bytes)")[..],
            &(U256::from(1), UNKNOWN_VALIDATOR, Bytes::from_static(b"owner")).abi_encode_params(),
        ]
        .concat();
        let invalidate_nonce = [
            &selector("invalidateNonce(uint32)")[..],
            &U256::from(2).to_be_bytes::<32>(),
        ]
        .concat();
        let upgrade_to = [&selector("upgradeTo(address)")[..], &STRANGER.into_word()[..]].concat();
        let new_owner = [
            &selector("onInstall(bytes)")[..],
            &(Bytes::copy_from_slice(STRANGER.as_slice()),).abi_encode_params(),
        ]
        .concat();

        // The owner granted the session these selectors (a second permission id of the same
        // account, enabled by the op that uses it): the chain would run them.
        for (case, (what, call_data)) in [
            ("installModule(...)", &install_module),
            ("invalidateNonce(uint32)", &invalidate_nonce),
            ("upgradeTo(address)", &upgrade_to),
        ]
        .into_iter()
        .enumerate()
        {
            let granted = a.another_session(30 + case as u8);
            let grant = Grant {
                selector: call_data[..4].try_into().unwrap(),
                ..Grant::of(vec![sudo()])
            };
            let o = EnableOpts {
                deploy: false,
                ..Default::default()
            };
            let op = enable_op(&granted, &grant, call_data.clone(), o);
            h.refuses(
                CHAIN,
                &op,
                "PrivilegedCallDenied",
                &format!("{l}: {what} as the whole call data, selector granted by the owner"),
            )
            .await;
        }

        // `execute` (the only selector granted) calling the account itself or its modules.
        let validator = root_ecdsa_validator(v);
        for (seq, (what, call_data)) in [
            (
                "execute(single) to the account: upgradeTo",
                execute_single(a.address, 0, &upgrade_to),
            ),
            (
                "execute(single) to the account: installModule",
                execute_single(a.address, 0, &install_module),
            ),
            (
                "execute(single) to the root ECDSAValidator: onInstall(new owner)",
                execute_single(validator, 0, &new_owner),
            ),
            (
                "execute(batch) whose second call goes to the ECDSASigner",
                execute(
                    mode(BATCH, 0),
                    &batch(&[(TOKEN, 0, transfer(RECIPIENT, 1)), (ECDSA_SIGNER, 0, new_owner.clone())]),
                ),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let op = session_signed(&a, session_op(&a, seq as u64 + 1, call_data), CHAIN);
            h.refuses(CHAIN, &op, "PrivilegedCallDenied", &format!("{l}: {what}"))
                .await;
        }

        // The same functions as the whole call data of the `execute`-only session: the chain
        // refuses them at its selector gate, and so does opgate, first (chain-mirroring checks
        // run before the guardrails), naming that rule.
        for (seq, (what, call_data)) in [
            ("installModule(...)", install_module),
            ("invalidateNonce(uint32)", invalidate_nonce),
            ("upgradeTo(address)", upgrade_to),
        ]
        .into_iter()
        .enumerate()
        {
            let op = session_signed(&a, session_op(&a, seq as u64 + 11, call_data), CHAIN);
            h.refuses(
                CHAIN,
                &op,
                "SelectorNotGranted",
                &format!("{l}: {what} as the whole call data, only execute granted"),
            )
            .await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Hooks
// ---------------------------------------------------------------------------------------------

/// The `executeUserOp` prefix is required exactly when the validation has a hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_execute_user_op_prefix_follows_the_hook() {
    let h = Harness::start(&[CHAIN], "").await;
    for v in VERSIONS {
        let l = label(v);
        let prefixed = |call_data: Vec<u8>| [&EXECUTE_USER_OP[..], &call_data].concat();

        // No hook: the prefix makes the Kernel's selector gate read 0x8dd7712f.
        let plain = sudo_session(&h, v, 5).await;
        let op = session_signed(&plain, session_op(&plain, 1, prefixed(pay(1))), CHAIN);
        h.refuses(CHAIN, &op, "HookMismatch", &format!("{l}: prefix without a hook"))
            .await;

        // A hook (and only a TimestampPolicy): the prefix is required.
        let hooked = Account::new(v, 6);
        let grant = Grant {
            hook: HOOK,
            ..Grant::of(vec![timestamp(0, NOW + 86_400)])
        };
        enable(&h, &hooked, &grant, prefixed(pay(1)), EnableOpts::default()).await;
        let bare = session_signed(&hooked, session_op(&hooked, 1, pay(2)), CHAIN);
        h.refuses(CHAIN, &bare, "HookMismatch", &format!("{l}: a hook without the prefix"))
            .await;
        let ok = session_signed(&hooked, session_op(&hooked, 2, prefixed(pay(2))), CHAIN);
        h.forwards(CHAIN, &ok, &format!("{l}: a hook with the prefix")).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Delegatecall
// ---------------------------------------------------------------------------------------------

const ROUTER_DECLARED: &str = r#"
[[delegates]]
target = "0xCA7814dd41C717eefd3fF9fDCbabaE10Dc96a539"
function = "forward(address,uint256,bytes)"
"#;

/// A delegatecall is forwarded only when the owner granted its target and its inner call is
/// read (declared delegate) and checked like a direct call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegatecalls_need_a_grant_and_a_checked_inner_call() {
    let declared = Harness::start(&[CHAIN], ROUTER_DECLARED).await;
    let undeclared = Harness::start(&[CHAIN], "").await;
    let grant = Grant::of(vec![call_policy(
        0,
        vec![transfer_to_recipient_at_most_100(), delegatecall_router()],
    )]);
    let through_router = |to: Address, amount: u64| {
        execute(
            mode(DELEGATECALL, 0),
            &delegate(ROUTER, &forward(TOKEN, 0, &transfer(to, amount))),
        )
    };
    for v in VERSIONS {
        let l = label(v);
        let a = Account::new(v, 7);
        enable(&declared, &a, &grant, pay(5), EnableOpts::default()).await;
        let ok = session_signed(&a, session_op(&a, 1, through_router(RECIPIENT, 5)), CHAIN);
        declared
            .forwards(CHAIN, &ok, &format!("{l}: declared router forwarding transfer(R, 5)"))
            .await;
        let bad = session_signed(&a, session_op(&a, 2, through_router(STRANGER, 5)), CHAIN);
        declared
            .refuses(
                CHAIN,
                &bad,
                "ConditionFailed",
                &format!("{l}: declared router forwarding transfer(stranger, 5)"),
            )
            .await;
        let padded_inner = [transfer(RECIPIENT, 5), vec![0xab; 32]].concat();
        let padded = execute(
            mode(DELEGATECALL, 0),
            &delegate(ROUTER, &forward(TOKEN, 0, &padded_inner)),
        );
        let padded = session_signed(&a, session_op(&a, 3, padded), CHAIN);
        declared
            .refuses(
                CHAIN,
                &padded,
                "InvalidCallData",
                &format!("{l}: declared router forwarding transfer(R, 5) with 32 extra bytes"),
            )
            .await;

        let b = Account::new(v, 8);
        enable(&undeclared, &b, &grant, pay(5), EnableOpts::default()).await;
        let op = session_signed(&b, session_op(&b, 1, through_router(RECIPIENT, 5)), CHAIN);
        undeclared
            .refuses(
                CHAIN,
                &op,
                "DelegateCallDenied",
                &format!("{l}: granted router that is not a declared delegate"),
            )
            .await;

        let c = sudo_session(&declared, v, 9).await;
        let op = session_signed(&c, session_op(&c, 1, through_router(RECIPIENT, 5)), CHAIN);
        declared
            .refuses(
                CHAIN,
                &op,
                "DelegateCallDenied",
                &format!("{l}: declared router, but no CallPolicy grants it (sudo session)"),
            )
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Policies as declared
// ---------------------------------------------------------------------------------------------

const POLICY_GAPS_ALLOWED: &str = r#"
[[policies]]
name = "gaps"
allow_policy_gaps = true
"#;

/// A CallPolicy flagged SKIP_USEROP is enforced as declared unless an operator policy allows
/// the chain's gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_userop_call_policies_are_enforced_as_declared() {
    let strict = Harness::start(&[CHAIN], "").await;
    let relaxed = Harness::start(&[CHAIN], POLICY_GAPS_ALLOWED).await;
    let grant = Grant::of(vec![call_policy(0x0001, vec![transfer_to_recipient_at_most_100()])]);
    for v in VERSIONS {
        let l = label(v);
        for (h, case, gaps_allowed) in [(&strict, 10, false), (&relaxed, 11, true)] {
            let a = Account::new(v, case);
            enable(h, &a, &grant, pay(5), EnableOpts::default()).await;
            let over = session_signed(&a, session_op(&a, 1, pay(500)), CHAIN);
            if !gaps_allowed {
                h.refuses(
                    CHAIN,
                    &over,
                    "ConditionFailed",
                    &format!("{l}: transfer(R, 500) under a SKIP_USEROP CallPolicy (amount <= 100)"),
                )
                .await;
            } else {
                h.forwards(
                    CHAIN,
                    &over,
                    &format!("{l}: the same violation with allow_policy_gaps = true"),
                )
                .await;
            }
        }
    }
}

/// GasPolicy as declared: `enforcePaymaster` with paymaster 0 requires some paymaster, and the
/// budget is charged the op's full cost, paymaster gas included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gas_policies_are_enforced_as_declared() {
    let h = Harness::start(&[CHAIN], "").await;
    let gwei: u64 = 1_000_000_000;
    for v in VERSIONS {
        let l = label(v);

        // enforcePaymaster = true, allowedPaymaster = 0: the chain enforces nothing.
        let a = Account::new(v, 12);
        let sponsored = EnableOpts {
            paymaster: Some((PAYMASTER, 50_000, 50_000)),
            ..Default::default()
        };
        let grant = Grant::of(vec![gas_policy(10u128.pow(18), true, Address::ZERO)]);
        enable(&h, &a, &grant, pay(1), sponsored).await;
        let self_paid = session_signed(&a, session_op(&a, 1, pay(1)), CHAIN);
        h.refuses(
            CHAIN,
            &self_paid,
            "PaymasterNotAllowed",
            &format!("{l}: a self-paid op under GasPolicy(enforcePaymaster, paymaster 0)"),
        )
        .await;
        let mut paid = session_op(&a, 2, pay(1));
        paid.paymaster = Some((PAYMASTER, 50_000, 50_000));
        h.forwards(
            CHAIN,
            &session_signed(&a, paid, CHAIN),
            &format!("{l}: a sponsored op under the same GasPolicy"),
        )
        .await;

        // Budget 1_000_000 gwei; every op's (pvg + vgl + cgl) · maxFee is 250_000 gwei, which the
        // deploying enable op (self-paid) uses first.
        let b = Account::new(v, 13);
        let grant = Grant::of(vec![gas_policy(1_000_000 * u128::from(gwei), false, Address::ZERO)]);
        enable(&h, &b, &grant, pay(1), EnableOpts::default()).await;
        let mut small = session_op(&b, 1, pay(1));
        small.paymaster = Some((PAYMASTER, 10_000, 10_000));
        h.forwards(
            CHAIN,
            &session_signed(&b, small, CHAIN),
            &format!("{l}: 270_000 gwei of 750_000 left"),
        )
        .await;
        let mut heavy = session_op(&b, 2, pay(1));
        heavy.paymaster = Some((PAYMASTER, 400_000, 400_000));
        let heavy = session_signed(&b, heavy, CHAIN);
        let chain_amount = (heavy.pre_verification_gas + heavy.verification_gas + heavy.call_gas) * heavy.max_fee;
        assert!(
            u128::from(chain_amount) < 480_000 * u128::from(gwei),
            "fits what the chain counts"
        );
        h.refuses(
            CHAIN,
            &heavy,
            "GasBudgetExceeded",
            &format!("{l}: 250_000 gwei as GasPolicy counts it, 1_050_000 gwei with paymaster gas"),
        )
        .await;

        // The same budget on a GasPolicy flagged SKIP_USEROP: enforced as declared all the same.
        let c = Account::new(v, 19);
        let mut flagged = gas_policy(1_000_000 * u128::from(gwei), false, Address::ZERO);
        flagged[..2].copy_from_slice(&0x0001u16.to_be_bytes());
        enable(&h, &c, &Grant::of(vec![flagged]), pay(1), EnableOpts::default()).await;
        let mut heavy = session_op(&c, 1, pay(1));
        heavy.paymaster = Some((PAYMASTER, 400_000, 400_000));
        h.refuses(
            CHAIN,
            &session_signed(&c, heavy, CHAIN),
            "GasBudgetExceeded",
            &format!("{l}: over the budget of a GasPolicy flagged SKIP_USEROP"),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Validation types
// ---------------------------------------------------------------------------------------------

/// Nonces of an unknown validation type, unknown validators, root ops by someone else than the
/// owner are refused; the owner's root op is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_types_are_checked() {
    let h = Harness::start(&[CHAIN], "").await;
    let stranger = SigningKey::from_slice(&[0x99; 32]).unwrap();
    for v in VERSIONS {
        let l = label(v);
        let a = sudo_session(&h, v, 14).await;

        let mut n = [0u8; 32];
        n[1] = 0x03;
        n[2..6].copy_from_slice(&a.pid);
        let op = Op::new(a.address, nonce(n), pay(1));
        let sig = sign_191(&a.session, op.hash(CHAIN));
        let op = op.with_signature([&[0xff][..], &sig].concat());
        h.refuses(CHAIN, &op, "InvalidNonce", &format!("{l}: nonce validation type 0x03"))
            .await;

        let mut n = [0u8; 32];
        n[1] = 0x01;
        n[2..22].copy_from_slice(UNKNOWN_VALIDATOR.as_slice());
        let op = Op::new(a.address, nonce(n), pay(1));
        let sig = sign_191(&a.owner, op.hash(CHAIN));
        let op = op.with_signature(sig.to_vec());
        h.refuses(
            CHAIN,
            &op,
            "UnknownValidator",
            &format!("{l}: validator mode naming a validator never installed"),
        )
        .await;

        let validator_op = |seq: u64, key: &SigningKey| {
            let mut n = [0u8; 32];
            n[1] = 0x01;
            n[2..22].copy_from_slice(root_ecdsa_validator(v).as_slice());
            n[24..].copy_from_slice(&seq.to_be_bytes());
            let op = Op::new(a.address, nonce(n), pay(1));
            let sig = sign_191(key, op.hash(CHAIN));
            op.with_signature(sig.to_vec())
        };
        h.refuses(
            CHAIN,
            &validator_op(1, &stranger),
            "InvalidSignature",
            &format!("{l}: validator mode naming the root ECDSAValidator, signed by a stranger"),
        )
        .await;
        h.forwards(
            CHAIN,
            &validator_op(2, &a.owner),
            &format!("{l}: validator mode naming the root ECDSAValidator, signed by the owner"),
        )
        .await;

        let root_op = |seq: u64, key: &SigningKey| {
            let mut n = [0u8; 32];
            n[24..].copy_from_slice(&seq.to_be_bytes());
            let op = Op::new(a.address, nonce(n), pay(1));
            let sig = sign_191(key, op.hash(CHAIN));
            op.with_signature(sig.to_vec())
        };
        h.refuses(
            CHAIN,
            &root_op(1, &stranger),
            "InvalidSignature",
            &format!("{l}: a root op signed by a key that is not the owner"),
        )
        .await;
        h.refuses(
            CHAIN,
            &root_op(2, &a.session),
            "InvalidSignature",
            &format!("{l}: a root op signed by the session key"),
        )
        .await;
        h.forwards(
            CHAIN,
            &root_op(3, &a.owner),
            &format!("{l}: a root op signed by the owner"),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Signature forms
// ---------------------------------------------------------------------------------------------

/// The session key's signature in every form the signer contract accepts is forwarded; a
/// signature of no such form is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_signatures_in_every_accepted_form() {
    let h = Harness::start(&[CHAIN], "").await;
    for v in VERSIONS {
        let l = label(v);
        let a = sudo_session(&h, v, 15).await;
        let signed_as = |seq: u64, form: &dyn Fn(&[u8; 65]) -> Vec<u8>| {
            let op = session_op(&a, seq, pay(1));
            let sig = sign_191(&a.session, op.hash(CHAIN));
            op.with_signature([&[0xff][..], &form(&sig)].concat())
        };
        h.forwards(
            CHAIN,
            &signed_as(1, &|s| s.to_vec()),
            &format!("{l}: 65-byte signature"),
        )
        .await;
        h.forwards(
            CHAIN,
            &signed_as(2, &compact),
            &format!("{l}: 64-byte EIP-2098 compact signature"),
        )
        .await;
        h.forwards(
            CHAIN,
            &signed_as(3, &high_s_twin),
            &format!("{l}: the high-s twin of the signature"),
        )
        .await;
        let raw = session_op(&a, 4, pay(1));
        let sig = sign(&a.session, &raw.hash(CHAIN));
        let raw = raw.with_signature([&[0xff][..], &sig].concat());
        h.forwards(CHAIN, &raw, &format!("{l}: signature over the raw userOpHash"))
            .await;
        h.refuses(
            CHAIN,
            &signed_as(5, &|s| [&s[..], &[0x00]].concat()),
            "InvalidSignature",
            &format!("{l}: a 66-byte signature"),
        )
        .await;
        let other = SigningKey::from_slice(&[0x98; 32]).unwrap();
        let forged = session_op(&a, 6, pay(1));
        let sig = sign_191(&other, forged.hash(CHAIN));
        let forged = forged.with_signature([&[0xff][..], &sig].concat());
        h.refuses(
            CHAIN,
            &forged,
            "InvalidSignature",
            &format!("{l}: signed by another key"),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Cross-chain replay
// ---------------------------------------------------------------------------------------------

const CROSS_CHAIN_ALLOWED: &str = r#"
[[policies]]
name = "replays"
allow_cross_chain_replay = true
"#;

/// A chain-agnostic op relayed on one chain is refused on the other, unless an operator policy
/// allows it; sending it again on the first chain is not a replay.
/// `stores`: the `[store]` tables of the two opgates (strict, relaxed).
async fn cross_chain_replay(stores: [&str; 2]) {
    let strict = Harness::start(&[CHAIN, OTHER_CHAIN], stores[0]).await;
    let relaxed = Harness::start(&[CHAIN, OTHER_CHAIN], &format!("{}\n{CROSS_CHAIN_ALLOWED}", stores[1])).await;
    for v in [KernelVersion::V3_2, KernelVersion::V3_3] {
        let l = label(v);
        for (h, case, allowed) in [(&strict, 16, false), (&relaxed, 17, true)] {
            let a = Account::new(v, case);
            let grant = Grant::of(vec![call_policy(0, vec![transfer_to_recipient_at_most_100()])]);
            // The same approval (chain id 0) enables the session on both chains; the enable ops
            // differ (another payment), as two chain-agnostic ops that are not replays must.
            for (chain, amount) in [(CHAIN, 1), (OTHER_CHAIN, 2)] {
                let o = EnableOpts {
                    chain,
                    replayable: true,
                    ..Default::default()
                };
                enable(h, &a, &grant, pay(amount), o).await;
            }
            let op = session_op(&a, 1, pay(7));
            let sig = sign_191(&a.session, op.replayable_hash());
            let op = op.with_signature([REPLAYABLE_MAGIC.as_slice(), &[0xff], &sig].concat());
            h.forwards(CHAIN, &op, &format!("{l}: the chain-agnostic op on chain A"))
                .await;
            if allowed {
                h.forwards(
                    OTHER_CHAIN,
                    &op,
                    &format!("{l}: the same op on chain B with allow_cross_chain_replay"),
                )
                .await;
            } else {
                h.refuses(
                    OTHER_CHAIN,
                    &op,
                    "CrossChainReplay",
                    &format!("{l}: the same op replayed on chain B"),
                )
                .await;
            }
            h.forwards(CHAIN, &op, &format!("{l}: the same op sent again on chain A"))
                .await;

            // The owner's chain-agnostic root op: the same guard.
            let mut n = [0u8; 32];
            n[24..].copy_from_slice(&5u64.to_be_bytes());
            let root = Op::new(a.address, nonce(n), pay(9));
            let sig = sign_191(&a.owner, root.replayable_hash());
            let root = root.with_signature([REPLAYABLE_MAGIC.as_slice(), &sig].concat());
            h.forwards(CHAIN, &root, &format!("{l}: a chain-agnostic root op on chain A"))
                .await;
            if allowed {
                h.forwards(OTHER_CHAIN, &root, &format!("{l}: the root op on chain B, allowed"))
                    .await;
            } else {
                h.refuses(
                    OTHER_CHAIN,
                    &root,
                    "CrossChainReplay",
                    &format!("{l}: the root op replayed on chain B"),
                )
                .await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_agnostic_ops_are_not_replayed_across_chains_in_memory() {
    cross_chain_replay(["", ""]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_agnostic_ops_are_not_replayed_across_chains_on_redis() {
    let (strict, relaxed) = (RedisKeys(redis_prefix("replay")), RedisKeys(redis_prefix("replay")));
    cross_chain_replay([&redis_store(&strict.0), &redis_store(&relaxed.0)]).await;
}

/// Kernel v3.0 and v3.1 do not know the replayable form: a chain-agnostic enable approval is
/// refused there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayable_enable_approvals_need_kernel_3_2() {
    let h = Harness::start(&[CHAIN], "").await;
    for v in [KernelVersion::V3_0, KernelVersion::V3_1] {
        let a = Account::new(v, 20);
        let o = EnableOpts {
            replayable: true,
            ..Default::default()
        };
        let op = enable_op(&a, &Grant::of(vec![sudo()]), pay(1), o);
        h.refuses(
            CHAIN,
            &op,
            "InvalidSignature",
            &format!("{}: a replayable enable op", label(v)),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Re-enabling a live permission id
// ---------------------------------------------------------------------------------------------

/// Re-enabling a permission id that is live with other policies is refused on every release:
/// Kernel v3.0–v3.2 revert (`InvalidNonce`); v3.3 (whose approval signs `currentNonce + 1`) would
/// install it onto modules that still hold the live session's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_enabling_a_live_permission_id() {
    let h = Harness::start(&[CHAIN], "").await;
    for v in VERSIONS {
        let l = label(v);
        let a = sudo_session(&h, v, 18).await;
        let other = Grant::of(vec![timestamp(0, NOW + 3600)]);
        let again = |digest_nonce: u32, seq: u64| {
            let o = EnableOpts {
                deploy: false,
                digest_nonce,
                seq,
                ..Default::default()
            };
            enable_op(&a, &other, pay(2), o)
        };
        if v < KernelVersion::V3_3 {
            h.refuses(
                CHAIN,
                &again(1, 1),
                "InvalidPermission",
                &format!("{l}: the live id re-enabled with other policies at currentNonce"),
            )
            .await;
        } else {
            h.refuses(
                CHAIN,
                &again(1, 1),
                "InvalidSignature",
                &format!("{l}: an approval over currentNonce where v3.3 signs currentNonce + 1"),
            )
            .await;
            // v3.3 would let it through, onto modules that still hold the live session's state.
            h.refuses(
                CHAIN,
                &again(2, 2),
                "InvalidPermission",
                &format!("{l}: the live id re-enabled with other policies at currentNonce + 1"),
            )
            .await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Modules of the account that only the registry knows, and replayable signatures on releases
// that do not strip the prefix
// ---------------------------------------------------------------------------------------------

/// `onUninstall(bytes)` with empty data: what a module does when the account removes it.
fn on_uninstall() -> Vec<u8> {
    [
        &selector("onUninstall(bytes)")[..],
        &(Bytes::new(),).abi_encode_params(),
    ]
    .concat()
}

/// A session key calling its own validation's hook contract (a module keyed by the account:
/// README "privileged calls … hooks"). The enable-mode op is refused; later default-mode ops are
/// forwarded, because the registry's hook is not among the modules the guard checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_keys_cannot_call_their_own_hook() {
    let h = Harness::start(&[CHAIN], "").await;
    let prefixed = |call_data: Vec<u8>| [&EXECUTE_USER_OP[..], &call_data].concat();
    for v in VERSIONS {
        let l = label(v);
        let a = Account::new(v, 50);
        let grant = Grant {
            hook: HOOK,
            ..Grant::of(vec![timestamp(0, NOW + 86_400)])
        };
        let in_enable = enable_op(
            &a,
            &grant,
            prefixed(execute_single(HOOK, 0, &on_uninstall())),
            EnableOpts::default(),
        );
        h.refuses(
            CHAIN,
            &in_enable,
            "PrivilegedCallDenied",
            &format!("{l}: the enable op calling its own hook"),
        )
        .await;
        enable(&h, &a, &grant, prefixed(pay(1)), EnableOpts::default()).await;
        let op = session_signed(
            &a,
            session_op(&a, 1, prefixed(execute_single(HOOK, 0, &on_uninstall()))),
            CHAIN,
        );
        h.refuses(
            CHAIN,
            &op,
            "PrivilegedCallDenied",
            &format!("{l}: a default-mode op calling its own hook's onUninstall"),
        )
        .await;
    }
}

/// A session key calling a module another permission of the same account installed (a custom
/// policy, a hook): README "privileged calls … one of its modules"; `guard::modules` documents
/// "and those the registry knows" but reads only the account's validators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_keys_cannot_call_modules_of_other_permissions() {
    let h = Harness::start(&[CHAIN], "").await;
    let custom_policy = address!("abababababababababababababababababababab");
    let other_hook = address!("4545454545454545454545454545454545454545");
    for v in VERSIONS {
        let l = label(v);
        let first = Account::new(v, 51);
        let grant = Grant {
            hook: other_hook,
            ..Grant::of(vec![policy(0, custom_policy, b"limits"), sudo()])
        };
        let prefixed = [&EXECUTE_USER_OP[..], &pay(1)].concat();
        enable(&h, &first, &grant, prefixed, EnableOpts::default()).await;
        let second = first.another_session(52);
        let o = EnableOpts {
            deploy: false,
            ..Default::default()
        };
        enable(&h, &second, &Grant::of(vec![sudo()]), pay(1), o).await;
        for (seq, (what, target)) in [("custom policy", custom_policy), ("hook", other_hook)]
            .into_iter()
            .enumerate()
        {
            let op = session_signed(
                &second,
                session_op(&second, seq as u64 + 1, execute_single(target, 0, &on_uninstall())),
                CHAIN,
            );
            h.refuses(
                CHAIN,
                &op,
                "PrivilegedCallDenied",
                &format!("{l}: onUninstall on the {what} of another permission of the account"),
            )
            .await;
        }
    }
}

/// Kernel v3.0/v3.1 do not strip the replayable magic: they read it as signature bytes, and
/// validation reverts (a permission: `SignerPrefixNotPresent`; the root ECDSAValidator: a 97-byte
/// signature). opgate strips it and verifies against the chain-agnostic hash, so it forwards the
/// op (and charges the replay guard) although the decoder reports the prefix as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayable_ops_need_kernel_3_2() {
    let h = Harness::start(&[CHAIN], "").await;
    for v in [KernelVersion::V3_0, KernelVersion::V3_1] {
        let l = label(v);
        let a = sudo_session(&h, v, 53).await;
        let op = session_op(&a, 1, pay(1));
        let sig = sign_191(&a.session, op.replayable_hash());
        let op = op.with_signature([REPLAYABLE_MAGIC.as_slice(), &[0xff], &sig].concat());
        h.refuses(CHAIN, &op, "InvalidSignature", &format!("{l}: a replayable session op"))
            .await;
        let mut n = [0u8; 32];
        n[31] = 1;
        let root = Op::new(a.address, nonce(n), pay(1));
        let sig = sign_191(&a.owner, root.replayable_hash());
        let root = root.with_signature([REPLAYABLE_MAGIC.as_slice(), &sig].concat());
        h.refuses(CHAIN, &root, "InvalidSignature", &format!("{l}: a replayable root op"))
            .await;
    }
}

/// A permission pre-installed by the deploying op's `initConfig` — `installValidations` plus the
/// `execute` grant (`grantAccess`, reached by delegatecall into the v3.3 implementation before
/// v3.3, as the SDK's `toInitConfig` does) — is learned when the owner's op is accepted, and its
/// policies then hold for the session's default-mode ops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_installed_by_init_config_are_enforced() {
    let h = Harness::start(&[CHAIN], "").await;
    for v in [KernelVersion::V3_1, KernelVersion::V3_2, KernelVersion::V3_3] {
        let l = label(v);
        let a = Account::new(v, 40);
        let grant = Grant::of(vec![call_policy(0, vec![transfer_to_recipient_at_most_100()])]);
        let install = [
            &selector("installValidations(bytes21[],(uint32,address)[],bytes[],bytes[])")[..],
            &(
                vec![a.validation_id()],
                vec![(1u32, Address::with_last_byte(1))],
                vec![grant.validator_data(a.session_address())],
                vec![Bytes::new()],
            )
                .abi_encode_params(),
        ]
        .concat();
        let grant_access = [
            &selector("grantAccess(bytes21,bytes4,bool)")[..],
            &(a.validation_id(), FixedBytes(execute_selector()), true).abi_encode_params(),
        ]
        .concat();
        let grant_call = if v == KernelVersion::V3_3 {
            grant_access
        } else {
            let implementation = address!("d6CEDDe84be40893d153Be9d467CD6aD37875b28");
            execute(mode(DELEGATECALL, 0), &delegate(implementation, &grant_access))
        };
        let mut deploy = Op::new(a.address, nonce([0u8; 32]), pay(1));
        deploy.factory_data = Some(a.factory_data_with(vec![install.into(), grant_call.into()]));
        let sig = sign_191(&a.owner, deploy.hash(CHAIN));
        let deploy = deploy.with_signature(sig.to_vec());
        h.forwards(
            CHAIN,
            &deploy,
            &format!("{l}: the owner's deploying op with initConfig"),
        )
        .await;

        let ok = session_signed(&a, session_op(&a, 0, pay(5)), CHAIN);
        h.forwards(CHAIN, &ok, &format!("{l}: a call the pre-installed CallPolicy allows"))
            .await;
        let stranger = session_signed(
            &a,
            session_op(&a, 1, execute_single(TOKEN, 0, &transfer(STRANGER, 5))),
            CHAIN,
        );
        h.refuses(
            CHAIN,
            &stranger,
            "ConditionFailed",
            &format!("{l}: a call the pre-installed CallPolicy refuses"),
        )
        .await;
    }
}

/// On a chain that simulates, a granted delegatecall to a target that is not declared is
/// forwarded, and what the delegated code did — every call the account made, from the simulation's
/// effects — meets the session's CallPolicy and the privileged-target guard like direct calls. No
/// Kernel contracts run on the devnet, so the simulation report is given here and the policies are
/// evaluated as the pipeline evaluates them.
#[test]
fn simulated_delegatecalls_are_checked_by_their_effects() {
    use opgate::config::OnError;
    use opgate::decode::{Call, DecodeOptions};
    use opgate::policy::{delegated_calls, evaluate, OpContext, PermissionSource, SessionPermission, Settings};
    use opgate::sim::{Effects, Execution, Simulation, Validation};

    let a = Account::new(KernelVersion::V3_1, 60);
    let grant = Grant::of(vec![call_policy(
        0,
        vec![transfer_to_recipient_at_most_100(), delegatecall_router()],
    )]);
    let call_data = execute(
        mode(DELEGATECALL, 0),
        &delegate(ROUTER, &forward(TOKEN, 0, &transfer(RECIPIENT, 5))),
    );
    let op = enable_op(&a, &grant, call_data, EnableOpts::default());
    let parsed = op.parsed();
    let opts = DecodeOptions {
        chain_id: Some(CHAIN),
        ..Default::default()
    };
    let decoded = opgate::explain::decode_op_with(&parsed, ENTRY_POINT, &opts);
    let k = decoded.detail.as_ref().unwrap();
    let selectors: Vec<FixedBytes<4>> = k.selector_data.iter().map(|s| s.selector).collect();
    let calls = k.calls.as_ref().unwrap();
    let delegated = delegated_calls(&calls.calls, &[], CHAIN);
    assert!(delegated.is_empty(), "the router is not declared here");
    let verdict = |simulation: Option<&Simulation>| {
        let ctx = OpContext {
            chain_id: CHAIN,
            entry_point: ENTRY_POINT,
            op: &parsed,
            hash: op.hash(CHAIN),
            kernel: Some(k),
            calls: Some(calls),
            session: Some(SessionPermission {
                id: FixedBytes(a.pid),
                permission: k.permission.as_ref().unwrap(),
                selectors: &selectors,
                source: PermissionSource::Enable,
                hook: Some(Address::ZERO),
                enable_nonce: None,
            }),
            now: NOW,
            simulation,
            account: None,
            previous: None,
            registered: None,
            node: Default::default(),
            tenant: None,
            delegated: &delegated,
        };
        let settings = Settings {
            policies: &[],
            unknown_permission: OnError::Reject,
            store_on_error: OnError::Reject,
            unknown_validator: OnError::Reject,
        };
        evaluate(&ctx, &settings).rejection.map(|r| r.reason.as_str())
    };
    let simulated = |effects: Vec<Call>| Simulation {
        block: 1,
        validation: Validation {
            ok: true,
            ..Default::default()
        },
        execution: Some(Execution {
            success: true,
            revert_reason: None,
            gas_used: U256::from(100_000),
            actual_cost: U256::from(100_000_000_000_000u64),
        }),
        effects: Effects {
            calls: effects,
            ..Default::default()
        },
    };

    assert_eq!(
        verdict(None),
        Some("DelegateCallDenied"),
        "without a simulation nothing checks the inner call"
    );
    let allowed = simulated(vec![Call::plain(TOKEN, U256::ZERO, &transfer(RECIPIENT, 5))]);
    assert_eq!(
        verdict(Some(&allowed)),
        None,
        "the simulated inner call is within the CALL permission"
    );
    let stranger = simulated(vec![Call::plain(TOKEN, U256::ZERO, &transfer(STRANGER, 5))]);
    assert_eq!(
        verdict(Some(&stranger)),
        Some("ConditionFailed"),
        "the delegated code's transfer to a stranger meets the CallPolicy"
    );
    let unlisted = simulated(vec![Call::plain(STRANGER, U256::ZERO, &[])]);
    assert_eq!(verdict(Some(&unlisted)), Some("CallPolicyViolated"));
    let own = simulated(vec![Call::plain(a.address, U256::ZERO, &[0x1f, 0x1b, 0x92, 0xe3])]);
    assert_eq!(
        verdict(Some(&own)),
        Some("CallPolicyViolated"),
        "the delegated code calling the account itself is in no CALL permission"
    );

    // A sudo session whose delegatecall an operator rule grants: no CallPolicy to meet, so the
    // guard's privileged-target check on the effects is what refuses.
    let sudo_account = Account::new(KernelVersion::V3_1, 61);
    let sudo_op = enable_op(
        &sudo_account,
        &Grant::of(vec![sudo()]),
        execute(
            mode(DELEGATECALL, 0),
            &delegate(ROUTER, &forward(TOKEN, 0, &transfer(RECIPIENT, 5))),
        ),
        EnableOpts::default(),
    );
    let sudo_parsed = sudo_op.parsed();
    let sudo_decoded = opgate::explain::decode_op_with(&sudo_parsed, ENTRY_POINT, &opts);
    let sk = sudo_decoded.detail.as_ref().unwrap();
    let config = Config::from_toml(
        &format!(
            "[[chains]]\nid = {CHAIN}\nupstreams = [\"http://127.0.0.1:1\"]\n[[policies]]\nname = \"routers\"\n\
             [[policies.calls]]\ntarget = \"{ROUTER}\"\ncall_type = \"delegatecall\"\n[[policies.calls]]\ntarget = \"*\"\n"
        ),
        &Overrides::default(),
    )
    .unwrap();
    let sudo_verdict = |effects: Vec<Call>| {
        let sim = simulated(effects);
        let ctx = OpContext {
            chain_id: CHAIN,
            entry_point: ENTRY_POINT,
            op: &sudo_parsed,
            hash: sudo_op.hash(CHAIN),
            kernel: Some(sk),
            calls: sk.calls.as_ref(),
            session: Some(SessionPermission {
                id: FixedBytes(sudo_account.pid),
                permission: sk.permission.as_ref().unwrap(),
                selectors: &selectors,
                source: PermissionSource::Enable,
                hook: Some(Address::ZERO),
                enable_nonce: None,
            }),
            now: NOW,
            simulation: Some(&sim),
            account: None,
            previous: None,
            registered: None,
            node: Default::default(),
            tenant: None,
            delegated: &[],
        };
        let settings = Settings {
            policies: &config.policies,
            unknown_permission: OnError::Reject,
            store_on_error: OnError::Reject,
            unknown_validator: OnError::Reject,
        };
        evaluate(&ctx, &settings).rejection.map(|r| r.reason.as_str())
    };
    assert_eq!(
        sudo_verdict(vec![Call::plain(TOKEN, U256::ZERO, &transfer(STRANGER, 5))]),
        None,
        "sudo: the delegated transfer is the session's to make"
    );
    assert_eq!(
        sudo_verdict(vec![Call::plain(
            sudo_account.address,
            U256::ZERO,
            &[0x1f, 0x1b, 0x92, 0xe3]
        )]),
        Some("PrivilegedCallDenied"),
        "sudo: the delegated code calling the account itself"
    );
    assert_eq!(
        sudo_verdict(vec![Call::plain(
            ECDSA_VALIDATOR,
            U256::ZERO,
            &[0x6d, 0x61, 0xfe, 0x70]
        )]),
        Some("PrivilegedCallDenied"),
        "sudo: the delegated code calling the root validator module"
    );
}
