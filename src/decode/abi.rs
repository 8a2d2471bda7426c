//! A bounds-checked reader for ABI-encoded bytes.
//!
//! Every read names the structure being decoded and fails with a [`DecodeError`] instead of
//! panicking or reading past the end. Length words are compared with the bytes that actually
//! follow *before* anything is allocated, so a huge length costs nothing.
//!
//! Offsets are resolved the way the contract that reads the data resolves them ([`Arith`]):
//! Solidity's ABI decoder for function arguments refuses offsets above 2^64−1, while Kernel's
//! assembly (`add(base, calldataload(p))`) and Solidity's calldata struct/array accessors (which
//! compare with `slt`) add modulo 2^256, so an offset word close to 2^256 points *backwards*. Both
//! are modelled; in either case the resolved position must lie inside the input we hold.
//!
//! Offsets may share tails, so what a reader decodes could be far larger than its input (n
//! heads pointing at one big `bytes`, nested arrays multiplying). Each reader therefore has a
//! budget of twice its input: every length it accepts is charged (bytes for `bytes`, 32 per
//! array element), and decoding stops with [`DecodeError::TooMuchData`] when it runs out. A
//! canonical encoding never needs more than its own size.

use std::cell::Cell;

use alloy_primitives::{Address, FixedBytes, U256};

use super::DecodeError;

/// How an offset word is added to its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arith {
    /// Solidity's argument decoder: `base + offset`, no wrap-around.
    Checked,
    /// Assembly or calldata-struct access: `(base + offset) mod 2^256`.
    Wrapping,
}

/// A view over ABI-encoded bytes with bounds-checked accessors.
#[derive(Debug, Clone)]
pub(crate) struct Abi<'a> {
    buf: &'a [u8],
    what: &'static str,
    budget: Cell<usize>,
}

impl<'a> Abi<'a> {
    /// Wraps `buf`; `what` names it in errors.
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self {
            buf,
            what,
            budget: Cell::new(budget_for(buf.len())),
        }
    }

    /// The same bytes under another name, with a fresh budget.
    pub(crate) fn named(&self, what: &'static str) -> Self {
        Self::new(self.buf, what)
    }

    /// Charges `amount` decoded bytes against the budget.
    fn charge(&self, amount: usize) -> Result<(), DecodeError> {
        match self.budget.get().checked_sub(amount) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(DecodeError::TooMuchData {
                what: self.what,
                limit: budget_for(self.buf.len()),
            }),
        }
    }

    /// `len` bytes at `offset`.
    pub(crate) fn slice(&self, offset: usize, len: usize) -> Result<&'a [u8], DecodeError> {
        offset
            .checked_add(len)
            .and_then(|end| self.buf.get(offset..end))
            .ok_or(DecodeError::OutOfBounds {
                what: self.what,
                offset,
                len,
                available: self.buf.len(),
            })
    }

    /// The 32-byte word at `at`.
    pub(crate) fn word(&self, at: usize) -> Result<&'a [u8; 32], DecodeError> {
        let s = self.slice(at, 32)?;
        s.try_into().map_err(|_| DecodeError::OutOfBounds {
            what: self.what,
            offset: at,
            len: 32,
            available: self.buf.len(),
        })
    }

    /// The word at `at` as a `uint256`.
    pub(crate) fn u256(&self, at: usize) -> Result<U256, DecodeError> {
        Ok(U256::from_be_bytes(*self.word(at)?))
    }

    /// The word at `at` as a `uintN` (`bits` ≤ 256); upper bits must be zero as Solidity checks.
    pub(crate) fn uint(&self, at: usize, bits: usize, expected: &'static str) -> Result<U256, DecodeError> {
        let v = self.u256(at)?;
        if bits < 256 && v >> bits != U256::ZERO {
            return Err(self.invalid(at, expected));
        }
        Ok(v)
    }

    /// The word at `at` as a `uintN` with `bits` ≤ 64.
    pub(crate) fn small_uint(&self, at: usize, bits: usize, expected: &'static str) -> Result<u64, DecodeError> {
        let v = self.uint(at, bits.min(64), expected)?;
        Ok(v.to::<u64>())
    }

    /// The word at `at` as an `address` (upper 12 bytes must be zero).
    pub(crate) fn address(&self, at: usize) -> Result<Address, DecodeError> {
        let w = self.word(at)?;
        if w[..12].iter().any(|b| *b != 0) {
            return Err(self.invalid(at, "address"));
        }
        Ok(Address::from_slice(&w[12..]))
    }

    /// The word at `at` as a `bool` (0 or 1).
    pub(crate) fn bool(&self, at: usize) -> Result<bool, DecodeError> {
        match self.small_uint(at, 8, "bool")? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.invalid(at, "bool")),
        }
    }

    /// The word at `at` as a left-aligned `bytesN` (the rest must be zero).
    pub(crate) fn fixed<const N: usize>(
        &self,
        at: usize,
        expected: &'static str,
    ) -> Result<FixedBytes<N>, DecodeError> {
        let w = self.word(at)?;
        if w[N..].iter().any(|b| *b != 0) {
            return Err(self.invalid(at, expected));
        }
        Ok(FixedBytes::from_slice(&w[..N]))
    }

    /// Resolves the offset word at `at` against `base`; the target must hold at least one word.
    pub(crate) fn pointer(&self, base: usize, at: usize, arith: Arith) -> Result<usize, DecodeError> {
        let value = self.u256(at)?;
        let pos = match arith {
            Arith::Checked => usize::try_from(value).ok().and_then(|v| base.checked_add(v)),
            Arith::Wrapping => usize::try_from(U256::from(base).wrapping_add(value)).ok(),
        };
        match pos {
            Some(p) if p.checked_add(32).is_some_and(|end| end <= self.buf.len()) => Ok(p),
            _ => Err(DecodeError::BadOffset {
                what: self.what,
                at,
                value,
                available: self.buf.len(),
            }),
        }
    }

    /// `bytes` whose length word sits at `pos`.
    pub(crate) fn bytes(&self, pos: usize) -> Result<&'a [u8], DecodeError> {
        let (len, start) = self.length(pos, 1)?;
        self.slice(start, len)
    }

    /// `bytes` reached through the offset word at `at` (relative to `base`).
    pub(crate) fn bytes_at(&self, base: usize, at: usize, arith: Arith) -> Result<&'a [u8], DecodeError> {
        let pos = self.pointer(base, at, arith)?;
        self.bytes(pos)
    }

    /// A length word at `pos` counting items of at least `unit` bytes each: returns the length
    /// and the position after the word, refusing lengths the remaining bytes cannot hold.
    pub(crate) fn length(&self, pos: usize, unit: usize) -> Result<(usize, usize), DecodeError> {
        let value = self.u256(pos)?;
        let start = pos + 32;
        let available = self.buf.len().saturating_sub(start);
        let len = usize::try_from(value)
            .ok()
            .filter(|n| n.checked_mul(unit).is_some_and(|total| total <= available));
        match len {
            Some(n) => {
                // `n * unit` fits: it was compared with `available` above.
                self.charge(n * unit)?;
                Ok((n, start))
            }
            None => Err(DecodeError::BadLength {
                what: self.what,
                at: pos,
                value,
                available,
            }),
        }
    }

    /// Positions of the elements of a dynamic array of dynamic items whose length word is at
    /// `pos`: each head word is an offset from the start of the heads, resolved with `arith`.
    pub(crate) fn dynamic_array(&self, pos: usize, arith: Arith) -> Result<Vec<usize>, DecodeError> {
        let (n, heads) = self.length(pos, 32)?;
        (0..n).map(|i| self.pointer(heads, heads + 32 * i, arith)).collect()
    }

    /// A `bytes32[]` (or other one-word-item array) whose length word is at `pos`.
    pub(crate) fn word_array(&self, pos: usize) -> Result<Vec<FixedBytes<32>>, DecodeError> {
        let (n, start) = self.length(pos, 32)?;
        (0..n)
            .map(|i| self.word(start + 32 * i).map(|w| FixedBytes::from(*w)))
            .collect()
    }

    /// An `address[]` whose length word is at `pos`.
    pub(crate) fn address_array(&self, pos: usize) -> Result<Vec<Address>, DecodeError> {
        let (n, start) = self.length(pos, 32)?;
        (0..n).map(|i| self.address(start + 32 * i)).collect()
    }

    fn invalid(&self, at: usize, expected: &'static str) -> DecodeError {
        DecodeError::InvalidValue {
            what: self.what,
            at,
            expected,
        }
    }
}

/// The first 4 bytes of `data`, if it has them.
pub(crate) fn selector_of(data: &[u8]) -> Option<FixedBytes<4>> {
    data.get(..4).map(FixedBytes::from_slice)
}

/// How many decoded bytes a reader over `len` input bytes may produce.
fn budget_for(len: usize) -> usize {
    len.saturating_mul(2)
}
