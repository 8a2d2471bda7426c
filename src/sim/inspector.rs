//! The inspector that watches one `handleOps`: the account's validation answer and, during
//! execution, every call its own frames make and every token it lets go (token events outside the
//! execution phase — a token paymaster's charge in validation or postOp — are gas payment, not
//! effects).
//!
//! A frame is the account's own when it runs in the account's context: the EntryPoint's call into
//! the account, and every delegatecall below it (a proxy's implementation, a Kernel executor, a
//! delegatecalled batch library). A `CALL` made from such a frame is a call the account makes.
//! Whatever a frame did is forgotten when it reverts, as the chain forgets it.

use alloy_primitives::{Address, Bytes, FixedBytes, Log, B256, U256};
use revm::context_interface::ContextTr;
use revm::interpreter::{CallInputs, CallOutcome, CallScheme, CreateInputs, CreateOutcome};
use revm::Inspector;

use super::effects::{Effects, TokenMove};
use crate::decode::{Call, CallKind};

/// `validateUserOp` of v0.6 (`UserOperation`) and of v0.7/v0.8 (`PackedUserOperation`).
const VALIDATE_USER_OP: [[u8; 4]; 2] = [[0x3a, 0x87, 0x1c, 0xdd], [0x19, 0x82, 0x2f, 0x7c]];
/// `Transfer(address,address,uint256)`.
const TRANSFER: B256 = alloy_primitives::b256!("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
/// `Approval(address,address,uint256)`.
const APPROVAL: B256 = alloy_primitives::b256!("8c5be1e5ebec7d5bd14f71427e1e84f3dd0314c0f7b2291e5b200ac8c7c3b925");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Outside,
    Validation,
    Execution,
}

#[derive(Debug)]
struct Frame {
    /// The address whose context the frame runs in (`ADDRESS`).
    context: Address,
    /// Where this frame's effects start, to undo them if it reverts.
    calls_at: usize,
    transfers_at: usize,
    approvals_at: usize,
    /// This frame began a phase (the EntryPoint's call into the account).
    phase_root: Option<Phase>,
}

/// Collects the account's validation answer and its effects.
#[derive(Debug)]
pub(crate) struct EffectsInspector {
    sender: Address,
    entry_point: Address,
    phase: Phase,
    frames: Vec<Frame>,
    pub(crate) effects: Effects,
    /// What `validateUserOp` returned (packed validation data), when it returned.
    pub(crate) validation_data: Option<U256>,
    /// What `validateUserOp` reverted with, when it reverted.
    pub(crate) validation_revert: Option<Bytes>,
}

impl EffectsInspector {
    /// The effects, with the native value the kept calls carried out.
    pub(crate) fn into_effects(mut self) -> Effects {
        self.effects.native_out = self
            .effects
            .calls
            .iter()
            .fold(U256::ZERO, |acc, c| acc.saturating_add(c.value));
        self.effects
    }

    pub(crate) fn new(sender: Address, entry_point: Address) -> Self {
        Self {
            sender,
            entry_point,
            phase: Phase::Outside,
            frames: Vec::with_capacity(16),
            effects: Effects::default(),
            validation_data: None,
            validation_revert: None,
        }
    }

    fn push(&mut self, context: Address, phase_root: Option<Phase>) {
        self.frames.push(Frame {
            context,
            calls_at: self.effects.calls.len(),
            transfers_at: self.effects.transfers.len(),
            approvals_at: self.effects.approvals.len(),
            phase_root,
        });
    }

    /// Pops a frame; forgets its effects when it failed. Returns the phase it began, if any.
    fn pop(&mut self, ok: bool) -> Option<Phase> {
        let f = self.frames.pop()?;
        if !ok {
            self.effects.calls.truncate(f.calls_at);
            self.effects.transfers.truncate(f.transfers_at);
            self.effects.approvals.truncate(f.approvals_at);
        }
        if f.phase_root.is_some() {
            self.phase = Phase::Outside;
        }
        f.phase_root
    }
}

impl<CTX: ContextTr> Inspector<CTX> for EffectsInspector {
    fn call(&mut self, context: &mut CTX, inputs: &mut CallInputs) -> Option<CallOutcome> {
        let parent = self.frames.last().map(|f| f.context);
        let calls_at = self.effects.calls.len();
        let mut phase_root = None;
        if inputs.scheme == CallScheme::Call
            && inputs.target_address == self.sender
            && parent == Some(self.entry_point)
            && self.phase == Phase::Outside
        {
            let input = inputs.input.bytes(context);
            let validating = input.len() >= 4 && VALIDATE_USER_OP.iter().any(|s| input[..4] == s[..]);
            let phase = if validating {
                Phase::Validation
            } else {
                Phase::Execution
            };
            self.phase = phase;
            phase_root = Some(phase);
        } else if self.phase == Phase::Execution && parent == Some(self.sender) && inputs.scheme == CallScheme::Call {
            let data = inputs.input.bytes(context);
            self.effects.calls.push(Call {
                call_type: CallKind::Call,
                target: inputs.target_address,
                value: inputs.transfer_value().unwrap_or_default(),
                selector: (data.len() >= 4).then(|| FixedBytes::from_slice(&data[..4])),
                short_data: (1..4).contains(&data.len()),
                data,
            });
        }
        self.push(inputs.target_address, phase_root);
        // A call that fails takes its own entry with it.
        if let Some(f) = self.frames.last_mut() {
            f.calls_at = calls_at;
        }
        None
    }

    fn call_end(&mut self, _context: &mut CTX, _inputs: &CallInputs, outcome: &mut CallOutcome) {
        let ok = outcome.result.is_ok();
        if self.pop(ok) == Some(Phase::Validation) {
            if ok {
                let out = &outcome.result.output;
                self.validation_data = (out.len() >= 32).then(|| U256::from_be_slice(&out[..32]));
            } else {
                self.validation_revert = Some(outcome.result.output.clone());
            }
        }
    }

    fn create(&mut self, _context: &mut CTX, _inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        self.push(Address::ZERO, None);
        None
    }

    fn create_end(&mut self, _context: &mut CTX, _inputs: &CreateInputs, outcome: &mut CreateOutcome) {
        self.pop(outcome.result.is_ok());
    }

    fn log(&mut self, _context: &mut CTX, log: Log) {
        // Only what the op's execution does: a token paymaster's charge in validation or postOp
        // pays for gas and is not one of the op's effects.
        if self.phase != Phase::Execution {
            return;
        }
        let topics = log.data.topics();
        if topics.len() != 3 || log.data.data.len() != 32 || topics[1] != self.sender.into_word() {
            return;
        }
        let m = TokenMove {
            token: log.address,
            to: Address::from_word(topics[2]),
            amount: U256::from_be_slice(&log.data.data),
        };
        if topics[0] == TRANSFER {
            self.effects.transfers.push(m);
        } else if topics[0] == APPROVAL {
            self.effects.approvals.push(m);
        }
    }
}
