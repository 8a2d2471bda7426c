//! Reading ABI argument words from call data, exactly as the contracts do: unsigned 256-bit words
//! at byte offsets after the selector, out-of-range reads failing instead of padding.

use alloy_primitives::U256;

/// The 32-byte word at `data[4 + offset .. 4 + offset + 32]`, if all of it is present.
pub(crate) fn word_at(data: &[u8], offset: u64) -> Option<U256> {
    let start = usize::try_from(offset).ok()?.checked_add(4)?;
    let end = start.checked_add(32)?;
    data.get(start..end).map(U256::from_be_slice)
}

/// The `index`-th head word of the arguments (`data[4 + 32·index ..]`).
pub(crate) fn arg(data: &[u8], index: u32) -> Option<U256> {
    word_at(data, u64::from(index) * 32)
}

/// ERC-20 `transfer(address,uint256)`.
pub(crate) const TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];
/// ERC-20 `transferFrom(address,address,uint256)`.
pub(crate) const TRANSFER_FROM: [u8; 4] = [0x23, 0xb8, 0x72, 0xdd];
/// ERC-20 `approve(address,uint256)`.
pub(crate) const APPROVE: [u8; 4] = [0x09, 0x5e, 0xa7, 0xb3];
/// `increaseAllowance(address,uint256)` (OpenZeppelin 4).
pub(crate) const INCREASE_ALLOWANCE: [u8; 4] = [0x39, 0x50, 0x93, 0x51];

/// The token amount an ERC-20 call moves or approves: `Ok(None)` for other functions, `Err` when
/// the function is a token function but its arguments are cut short.
pub(crate) fn token_amount(data: &[u8]) -> Result<Option<U256>, &'static str> {
    let Some(sel) = data.get(..4) else {
        return Ok(None);
    };
    let index = match <[u8; 4]>::try_from(sel).unwrap_or_default() {
        TRANSFER | APPROVE | INCREASE_ALLOWANCE => 1,
        TRANSFER_FROM => 2,
        _ => return Ok(None),
    };
    arg(data, index).map(Some).ok_or("token call arguments are cut short")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_do_not_pad() {
        let mut data = vec![0xa9, 0x05, 0x9c, 0xbb];
        data.extend([0u8; 31]);
        data.push(7);
        assert_eq!(word_at(&data, 0), Some(U256::from(7)));
        assert_eq!(word_at(&data, 1), None);
        assert_eq!(word_at(&data, u64::MAX), None);
        assert_eq!(token_amount(&data), Err("token call arguments are cut short"));
        data.extend([0u8; 31]);
        data.push(9);
        assert_eq!(token_amount(&data), Ok(Some(U256::from(9))));
        assert_eq!(token_amount(&[1, 2]), Ok(None));
    }
}
