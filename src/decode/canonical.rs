//! One reading of ABI bytes: what the canonical encoder produces, and nothing else.
//!
//! The chain decodes ABI data by its offset words, so the same call can be written in many ways:
//! heads that point past a decoy, two array elements sharing one tail, bytes hidden between the
//! encoded parts, address words with dirty upper bits. Each is a second reading of the same bytes
//! for whoever looks at them without following every offset as the chain does. opgate accepts
//! only the layout Solidity's `abi.encode` writes: [`check_params`] walks a function's arguments
//! in that layout and names the first defect it meets.
//!
//! A signature is parsed into [`AbiType`]s by [`parse_signature`] (`transfer(address,uint256)`,
//! tuples, fixed and dynamic arrays). The walk is linear in the input: every dynamic part must
//! start exactly where the previous one ended, so no byte is read twice and no length word can
//! make it do more work than the bytes it was given.

use std::fmt;

use alloy_primitives::{keccak256, FixedBytes};

/// Deepest nesting of tuples and arrays a signature may have.
const MAX_DEPTH: usize = 16;

/// An ABI type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbiType {
    /// `address`.
    Address,
    /// `uintN`.
    Uint(u16),
    /// `intN`.
    Int(u16),
    /// `bool`.
    Bool,
    /// `bytesN` (1 ≤ N ≤ 32).
    FixedBytes(u8),
    /// `bytes` or `string`.
    Bytes,
    /// `T[]`.
    Array(Box<AbiType>),
    /// `T[k]`.
    FixedArray(Box<AbiType>, usize),
    /// `(T1,…,Tn)`.
    Tuple(Vec<AbiType>),
}

impl AbiType {
    /// Whether the type has a dynamic (offset-addressed) encoding.
    pub fn is_dynamic(&self) -> bool {
        match self {
            Self::Bytes | Self::Array(_) => true,
            Self::FixedArray(t, _) => t.is_dynamic(),
            Self::Tuple(ts) => ts.iter().any(Self::is_dynamic),
            _ => false,
        }
    }

    /// Bytes the type takes in its parent's head: one word for a dynamic type, else its size.
    fn head_size(&self) -> usize {
        if self.is_dynamic() {
            return 32;
        }
        match self {
            Self::FixedArray(t, n) => t.head_size().saturating_mul(*n),
            Self::Tuple(ts) => ts.iter().map(Self::head_size).fold(0, usize::saturating_add),
            _ => 32,
        }
    }
}

/// A function signature: name, selector and argument types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionAbi {
    /// The canonical signature text, without spaces.
    pub signature: String,
    /// `keccak(signature)[0:4]`.
    pub selector: FixedBytes<4>,
    /// The argument types, in order.
    pub inputs: Vec<AbiType>,
}

/// Parses a function signature such as `forward(address,uint256,bytes)`.
pub fn parse_signature(signature: &str) -> Result<FunctionAbi, String> {
    let sig: String = signature.chars().filter(|c| !c.is_whitespace()).collect();
    let bad = || format!("`{signature}` is not a function signature like transfer(address,uint256)");
    let open = sig.find('(').ok_or_else(bad)?;
    let name = &sig[..open];
    if name.is_empty()
        || name.starts_with(|c: char| c.is_ascii_digit())
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    {
        return Err(bad());
    }
    let mut p = Parser {
        s: &sig.as_bytes()[open..],
        i: 0,
    };
    let inputs = p.tuple(0).map_err(|e| format!("`{signature}`: {e}"))?;
    if p.i != p.s.len() {
        return Err(format!("`{signature}`: unexpected text after the argument list"));
    }
    // The selector hashes the canonical spelling (`uint` is `uint256`).
    let canonical = format!("{name}({})", inputs.iter().map(type_name).collect::<Vec<_>>().join(","));
    Ok(FunctionAbi {
        selector: FixedBytes::from_slice(&keccak256(canonical.as_bytes())[..4]),
        signature: canonical,
        inputs,
    })
}

/// The canonical name of a type, as it enters a selector.
pub fn type_name(t: &AbiType) -> String {
    match t {
        AbiType::Address => "address".into(),
        AbiType::Uint(b) => format!("uint{b}"),
        AbiType::Int(b) => format!("int{b}"),
        AbiType::Bool => "bool".into(),
        AbiType::FixedBytes(n) => format!("bytes{n}"),
        AbiType::Bytes => "bytes".into(),
        AbiType::Array(t) => format!("{}[]", type_name(t)),
        AbiType::FixedArray(t, n) => format!("{}[{n}]", type_name(t)),
        AbiType::Tuple(ts) => format!("({})", ts.iter().map(type_name).collect::<Vec<_>>().join(",")),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// `(T,…)` at the cursor.
    fn tuple(&mut self, depth: usize) -> Result<Vec<AbiType>, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        if self.peek() != Some(b'(') {
            return Err("expected `(`".into());
        }
        self.i += 1;
        let mut items = Vec::new();
        if self.peek() == Some(b')') {
            self.i += 1;
            return Ok(items);
        }
        loop {
            items.push(self.ty(depth + 1)?);
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b')') => {
                    self.i += 1;
                    return Ok(items);
                }
                _ => return Err("expected `,` or `)`".into()),
            }
        }
    }

    fn ty(&mut self, depth: usize) -> Result<AbiType, String> {
        let mut t = if self.peek() == Some(b'(') {
            let items = self.tuple(depth)?;
            if items.is_empty() {
                return Err("an empty tuple has no encoding".into());
            }
            AbiType::Tuple(items)
        } else {
            let start = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
                self.i += 1;
            }
            elementary(std::str::from_utf8(&self.s[start..self.i]).unwrap_or(""))?
        };
        let mut dims = 0;
        while self.peek() == Some(b'[') {
            dims += 1;
            if depth + dims > MAX_DEPTH {
                return Err(format!("nested deeper than {MAX_DEPTH} levels"));
            }
            self.i += 1;
            let start = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            if self.peek() != Some(b']') {
                return Err("expected `]`".into());
            }
            self.i += 1;
            t = if digits.is_empty() {
                AbiType::Array(Box::new(t))
            } else {
                let n: usize = digits
                    .parse()
                    .map_err(|_| format!("array size `{digits}` is too large"))?;
                if n == 0 || n > 1 << 16 {
                    return Err(format!("array size {n} is not between 1 and 65536"));
                }
                AbiType::FixedArray(Box::new(t), n)
            };
        }
        Ok(t)
    }
}

fn elementary(name: &str) -> Result<AbiType, String> {
    let sized = |prefix: &str, default: u16| -> Option<Result<u16, String>> {
        let rest = name.strip_prefix(prefix)?;
        if rest.is_empty() {
            return Some(Ok(default));
        }
        Some(match rest.parse::<u16>() {
            Ok(b) if b % 8 == 0 && (8..=256).contains(&b) && !rest.starts_with('0') => Ok(b),
            _ => Err(format!("`{name}` is not an ABI type")),
        })
    };
    Ok(match name {
        "address" => AbiType::Address,
        "bool" => AbiType::Bool,
        "bytes" | "string" => AbiType::Bytes,
        "function" => AbiType::FixedBytes(24),
        _ => {
            if let Some(b) = sized("uint", 256) {
                AbiType::Uint(b?)
            } else if let Some(b) = sized("int", 256) {
                AbiType::Int(b?)
            } else if let Some(rest) = name.strip_prefix("bytes") {
                match rest.parse::<u8>() {
                    Ok(n) if (1..=32).contains(&n) && !rest.starts_with('0') => AbiType::FixedBytes(n),
                    _ => return Err(format!("`{name}` is not an ABI type")),
                }
            } else {
                return Err(format!("`{name}` is not an ABI type"));
            }
        }
    })
}

/// Why bytes are not the canonical encoding: the first defect met, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect {
    /// Byte offset of the defect inside the bytes checked.
    pub at: usize,
    /// What is wrong there.
    pub what: String,
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (byte {})", self.what, self.at)
    }
}

impl std::error::Error for Defect {}

fn defect(at: usize, what: impl Into<String>) -> Defect {
    Defect { at, what: what.into() }
}

/// Whether trailing bytes after the encoded arguments are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailing {
    /// The encoding must end exactly at the end of the input.
    Refused,
    /// Bytes after the last encoded part are left alone (nothing reads them).
    Ignored,
}

/// Checks that `data` is exactly the canonical encoding of a tuple of `types` (a function's
/// arguments, after the selector). Returns the end of the encoding.
pub fn check_params(types: &[AbiType], data: &[u8], trailing: Trailing) -> Result<usize, Defect> {
    let w = Walker { buf: data };
    let end = w.tuple(types.iter(), 0, "arguments")?;
    if trailing == Trailing::Refused && end != data.len() {
        return Err(defect(
            end,
            format!(
                "{} bytes after the encoded arguments reach the callee unchecked",
                data.len() - end
            ),
        ));
    }
    Ok(end)
}

/// Walks bytes in the canonical layout, each part starting where the previous one ended.
/// (`abi.encode(value)` of one dynamic value is the tuple `(T)`: check it with [`check_params`].)
struct Walker<'a> {
    buf: &'a [u8],
}

impl Walker<'_> {
    fn word(&self, at: usize, what: &str) -> Result<&[u8; 32], Defect> {
        self.buf
            .get(at..at.saturating_add(32))
            .and_then(|w| w.try_into().ok())
            .ok_or_else(|| defect(at, format!("{what}: the data ends inside this word")))
    }

    /// A tuple (or fixed array, or array body) whose head starts at `start`: static members in
    /// place, dynamic ones through offsets that must point exactly where the previous tail ended.
    /// Returns the end of the tuple's encoding.
    fn tuple<'t>(
        &self,
        items: impl Iterator<Item = &'t AbiType> + Clone,
        start: usize,
        what: &str,
    ) -> Result<usize, Defect> {
        let head: usize = items.clone().map(AbiType::head_size).fold(0, usize::saturating_add);
        let mut tail = start.saturating_add(head);
        if tail > self.buf.len() {
            return Err(defect(start, format!("{what}: the data ends inside the head")));
        }
        let mut at = start;
        for (i, t) in items.enumerate() {
            if t.is_dynamic() {
                let w = self.word(at, what)?;
                let expected = tail - start;
                if !word_is(w, expected) {
                    return Err(defect(
                        at,
                        format!(
                            "{what}[{i}]: head offset {} where the encoder puts {expected:#x}",
                            word_text(w)
                        ),
                    ));
                }
                tail = self.value(t, tail, &format!("{what}[{i}]"))?;
                at += 32;
            } else {
                at = self.value(t, at, &format!("{what}[{i}]"))?;
            }
        }
        Ok(tail)
    }

    /// The length word at `at` of items of `unit` bytes each, and where they start; a length the
    /// bytes that follow cannot hold is a defect.
    fn length(&self, at: usize, unit: usize, what: &str) -> Result<(usize, usize), Defect> {
        let w = self.word(at, what)?;
        let start = at + 32;
        let available = self.buf.len() - start;
        word_usize(w)
            .filter(|n| n.checked_mul(unit).is_some_and(|s| s <= available))
            .map(|n| (n, start))
            .ok_or_else(|| {
                defect(
                    at,
                    format!(
                        "{what}: length {} exceeds the {available} bytes that follow",
                        word_text(w)
                    ),
                )
            })
    }

    /// The value of type `t` encoded at `at`; returns the end of its encoding.
    fn value(&self, t: &AbiType, at: usize, what: &str) -> Result<usize, Defect> {
        match t {
            AbiType::Address => {
                let w = self.word(at, what)?;
                if w[..12].iter().any(|b| *b != 0) {
                    return Err(defect(at, format!("{what}: address word with dirty upper bits")));
                }
                Ok(at + 32)
            }
            AbiType::Uint(bits) => {
                let w = self.word(at, what)?;
                let clean = 32 - usize::from(*bits) / 8;
                if w[..clean].iter().any(|b| *b != 0) {
                    return Err(defect(at, format!("{what}: uint{bits} word with dirty upper bits")));
                }
                Ok(at + 32)
            }
            AbiType::Int(bits) => {
                let w = self.word(at, what)?;
                let clean = 32 - usize::from(*bits) / 8;
                let fill = if w[clean] & 0x80 != 0 { 0xff } else { 0 };
                if w[..clean].iter().any(|b| *b != fill) {
                    return Err(defect(at, format!("{what}: int{bits} word not sign-extended")));
                }
                Ok(at + 32)
            }
            AbiType::Bool => {
                let w = self.word(at, what)?;
                if w[..31].iter().any(|b| *b != 0) || w[31] > 1 {
                    return Err(defect(at, format!("{what}: bool word other than 0 or 1")));
                }
                Ok(at + 32)
            }
            AbiType::FixedBytes(n) => {
                let w = self.word(at, what)?;
                if w[usize::from(*n)..].iter().any(|b| *b != 0) {
                    return Err(defect(at, format!("{what}: bytes{n} word with dirty lower bits")));
                }
                Ok(at + 32)
            }
            AbiType::Bytes => {
                let (len, start) = self.length(at, 1, what)?;
                let padded = len.div_ceil(32) * 32;
                let end = start + len;
                let Some(pad) = self.buf.get(end..start + padded) else {
                    return Err(defect(end, format!("{what}: the data ends inside the padding")));
                };
                if let Some(i) = pad.iter().position(|b| *b != 0) {
                    return Err(defect(end + i, format!("{what}: non-zero bytes in the padding")));
                }
                Ok(start + padded)
            }
            AbiType::Array(t) => {
                // Every element takes at least its head: a length the bytes that follow cannot
                // hold is refused before any element is read.
                let (n, start) = self.length(at, t.head_size(), what)?;
                self.tuple(std::iter::repeat_n(t.as_ref(), n), start, what)
            }
            AbiType::FixedArray(t, n) if t.is_dynamic() => self.tuple(std::iter::repeat_n(t.as_ref(), *n), at, what),
            AbiType::FixedArray(t, n) => (0..*n).try_fold(at, |at, i| self.value(t, at, &format!("{what}[{i}]"))),
            AbiType::Tuple(ts) if t.is_dynamic() => self.tuple(ts.iter(), at, what),
            AbiType::Tuple(ts) => ts
                .iter()
                .enumerate()
                .try_fold(at, |at, (i, t)| self.value(t, at, &format!("{what}[{i}]"))),
        }
    }
}

fn word_is(w: &[u8; 32], n: usize) -> bool {
    word_usize(w) == Some(n)
}

fn word_usize(w: &[u8; 32]) -> Option<usize> {
    if w[..24].iter().any(|b| *b != 0) {
        return None;
    }
    usize::try_from(u64::from_be_bytes(w[24..].try_into().ok()?)).ok()
}

fn word_text(w: &[u8; 32]) -> String {
    match word_usize(w) {
        Some(n) => format!("{n:#x}"),
        None => format!("0x{}", alloy_primitives::hex::encode(w)),
    }
}

/// `Execution[]` — `(address target, uint256 value, bytes callData)[]` — as Kernel v3's batch
/// mode and Kernel v2's `executeBatch` take it.
pub fn execution_array() -> AbiType {
    AbiType::Array(Box::new(AbiType::Tuple(vec![
        AbiType::Address,
        AbiType::Uint(256),
        AbiType::Bytes,
    ])))
}

/// Functions whose arguments opgate knows without being told: token transfers and approvals
/// (ERC-20, ERC-721, ERC-1155), `permit` (EIP-2612, DAI), Permit2 and WETH. A call to one of these
/// selectors must carry exactly its ABI encoding.
pub const KNOWN_FUNCTIONS: &[&str] = &[
    // ERC-20
    "transfer(address,uint256)",
    "transferFrom(address,address,uint256)",
    "approve(address,uint256)",
    "increaseAllowance(address,uint256)",
    "decreaseAllowance(address,uint256)",
    // ERC-721
    "safeTransferFrom(address,address,uint256)",
    "safeTransferFrom(address,address,uint256,bytes)",
    "setApprovalForAll(address,bool)",
    // ERC-1155
    "safeTransferFrom(address,address,uint256,uint256,bytes)",
    "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)",
    // EIP-2612 and DAI permit
    "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
    "permit(address,address,uint256,uint256,bool,uint8,bytes32,bytes32)",
    // Permit2 (AllowanceTransfer and SignatureTransfer)
    "approve(address,address,uint160,uint48)",
    "transferFrom(address,address,uint160,address)",
    "transferFrom((address,address,uint160,address)[])",
    "permit(address,((address,uint160,uint48,uint48),address,uint256),bytes)",
    "permit(address,((address,uint160,uint48,uint48)[],address,uint256),bytes)",
    "permitTransferFrom(((address,uint256),uint256,uint256),(address,uint256),address,bytes)",
    "permitTransferFrom(((address,uint256)[],uint256,uint256),(address,uint256)[],address,bytes)",
    "lockdown((address,address)[])",
    "invalidateNonces(address,address,uint48)",
    "invalidateUnorderedNonces(uint256,uint256)",
    // WETH
    "deposit()",
    "withdraw(uint256)",
];

/// The built-in function with this selector, if any.
pub fn known_function(selector: FixedBytes<4>) -> Option<&'static FunctionAbi> {
    static TABLE: std::sync::OnceLock<Vec<FunctionAbi>> = std::sync::OnceLock::new();
    TABLE
        .get_or_init(|| KNOWN_FUNCTIONS.iter().filter_map(|s| parse_signature(s).ok()).collect())
        .iter()
        .find(|f| f.selector == selector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{hex, U256};

    fn word(n: u64) -> [u8; 32] {
        U256::from(n).to_be_bytes()
    }

    fn encode_transfer_batch(calls: &[(u8, u64, &[u8])]) -> Vec<u8> {
        // abi.encode(Execution[]) written by hand, canonically.
        let mut out = word(0x20).to_vec();
        out.extend(word(calls.len() as u64));
        let mut tails: Vec<Vec<u8>> = Vec::new();
        for (target, value, data) in calls {
            let mut t = [0u8; 12].to_vec();
            t.extend([*target; 20]);
            t.extend(word(*value));
            t.extend(word(0x60));
            t.extend(word(data.len() as u64));
            t.extend(*data);
            t.resize(t.len() + (32 - data.len() % 32) % 32, 0);
            tails.push(t);
        }
        let mut offset = 32 * calls.len();
        for t in &tails {
            out.extend(word(offset as u64));
            offset += t.len();
        }
        for t in tails {
            out.extend(t);
        }
        out
    }

    #[test]
    fn parses_signatures_and_computes_selectors() {
        let f = parse_signature("transfer(address, uint)").unwrap();
        assert_eq!(f.signature, "transfer(address,uint256)");
        assert_eq!(f.selector.0, hex!("a9059cbb"));
        let f = parse_signature("forward(address,uint256,bytes)").unwrap();
        assert_eq!(f.inputs, vec![AbiType::Address, AbiType::Uint(256), AbiType::Bytes]);
        let p = parse_signature("permit(address,((address,uint160,uint48,uint48),address,uint256),bytes)").unwrap();
        assert_eq!(p.selector.0, hex!("2b67b570"));
        for bad in [
            "transfer",
            "f(uint7)",
            "f(bytes33)",
            "f(address",
            "f(uint256[0])",
            "f(())",
            "f(x)",
        ] {
            assert!(parse_signature(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn canonical_batches_pass_and_every_defect_is_named() {
        let ty = [execution_array()];
        let good = encode_transfer_batch(&[(1, 0, &[0xaa; 36]), (2, 5, &[])]);
        assert_eq!(check_params(&ty, &good, Trailing::Refused), Ok(good.len()));
        assert!(check_params(&ty, &encode_transfer_batch(&[]), Trailing::Refused).is_ok());

        // Two elements sharing one tuple.
        let mut shared = encode_transfer_batch(&[(1, 0, &[0xaa; 4]), (1, 0, &[0xaa; 4])]);
        shared[96..128].copy_from_slice(&word(0x40));
        let e = check_params(&ty, &shared, Trailing::Refused).unwrap_err();
        assert!(e.what.contains("head offset 0x40 where the encoder puts"), "{e}");

        // A bytes hidden after the array, inside the payload.
        let mut extra = good.clone();
        extra.extend([0u8; 32]);
        let e = check_params(&ty, &extra, Trailing::Refused).unwrap_err();
        assert!(e.what.contains("32 bytes after"), "{e}");
        assert!(check_params(&ty, &extra, Trailing::Ignored).is_ok());

        // Dirty address bits.
        let mut dirty = good.clone();
        dirty[32 * 4] = 1;
        assert!(check_params(&ty, &dirty, Trailing::Refused)
            .unwrap_err()
            .what
            .contains("dirty upper bits"));

        // The array offset pointing elsewhere than 0x20.
        let mut moved = good.clone();
        moved[31] = 0x40;
        assert!(check_params(&ty, &moved, Trailing::Refused).is_err());

        // Padding that is not zero.
        let mut pad = encode_transfer_batch(&[(1, 0, &[0xaa; 36])]);
        let last = pad.len() - 1;
        pad[last] = 7;
        assert!(check_params(&ty, &pad, Trailing::Refused)
            .unwrap_err()
            .what
            .contains("padding"));
    }

    #[test]
    fn huge_lengths_cost_nothing() {
        let ty = [AbiType::Array(Box::new(AbiType::Uint(256)))];
        let mut d = word(0x20).to_vec();
        d.extend([0xff; 32]);
        assert!(check_params(&ty, &d, Trailing::Refused).is_err());
        let ty = [AbiType::Bytes];
        let mut d = word(0x20).to_vec();
        d.extend(word(u64::MAX));
        assert!(check_params(&ty, &d, Trailing::Refused).is_err());
    }

    #[test]
    fn known_functions_cover_token_transfers() {
        assert_eq!(
            known_function(FixedBytes(hex!("a9059cbb"))).unwrap().signature,
            "transfer(address,uint256)"
        );
        assert!(known_function(FixedBytes(hex!("3fb5c1cb"))).is_none());
        assert_eq!(
            KNOWN_FUNCTIONS.iter().filter(|s| parse_signature(s).is_ok()).count(),
            KNOWN_FUNCTIONS.len()
        );
    }
}
