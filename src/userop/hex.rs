//! Hex forms of the RPC: quantities, byte strings and addresses.
//!
//! One set of rules for every field, so the proxy reads a value exactly as a bundler would:
//!
//! - the prefix is lowercase `0x`; digits may be any letter case (SDKs send checksummed
//!   addresses inside byte strings), and address checksums are not verified (bundlers don't);
//! - quantities need at least one digit and may carry leading zeros: the value is unambiguous,
//!   ethers v5-style encoders pad to whole bytes (`0x0186a0`), and bundlers accept it;
//! - byte strings have an even number of digits; `0x` is the empty string;
//! - addresses are exactly 20 bytes.

use alloy_primitives::{Address, Bytes, U256};

use super::FieldError;

/// Digits of `s` after the `0x` prefix.
fn digits(s: &str) -> Result<&str, FieldError> {
    s.strip_prefix("0x").ok_or(FieldError::MissingPrefix)
}

/// Parses a quantity of at most 256 bits.
pub(crate) fn parse_quantity(s: &str) -> Result<U256, FieldError> {
    let digits = digits(s)?.as_bytes();
    if digits.is_empty() {
        return Err(FieldError::EmptyQuantity);
    }
    let significant = match digits.iter().position(|&b| b != b'0') {
        Some(i) => &digits[i..],
        None => return Ok(U256::ZERO),
    };
    if significant.len() > 64 {
        // Too long for 256 bits, unless a digit is not hex at all.
        return Err(match significant.iter().all(u8::is_ascii_hexdigit) {
            true => FieldError::Overflow { bits: 256 },
            false => FieldError::InvalidHexDigit,
        });
    }
    // Up to 64 digits: left-padded with zeros to 32 bytes and decoded in one vectorised pass.
    let mut padded = [b'0'; 64];
    padded[64 - significant.len()..].copy_from_slice(significant);
    let mut word = [0u8; 32];
    alloy_primitives::hex::decode_to_slice(padded, &mut word).map_err(|_| FieldError::InvalidHexDigit)?;
    Ok(U256::from_be_bytes(word))
}

/// Parses an even-length byte string.
pub(crate) fn parse_bytes(s: &str) -> Result<Bytes, FieldError> {
    let digits = digits(s)?;
    if digits.len() % 2 != 0 {
        return Err(FieldError::OddLength);
    }
    alloy_primitives::hex::decode(digits)
        .map(Bytes::from)
        .map_err(|_| FieldError::InvalidHexDigit)
}

/// Parses a 20-byte address.
pub(crate) fn parse_address(s: &str) -> Result<Address, FieldError> {
    let digits = digits(s)?;
    if digits.len() != 40 {
        if digits.len() % 2 != 0 {
            return Err(FieldError::OddLength);
        }
        return Err(FieldError::WrongLength {
            expected: 20,
            actual: digits.len() / 2,
        });
    }
    let mut out = [0u8; 20];
    alloy_primitives::hex::decode_to_slice(digits, &mut out).map_err(|_| FieldError::InvalidHexDigit)?;
    Ok(Address::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("0x0"), Ok(U256::ZERO));
        assert_eq!(parse_quantity("0x00"), Ok(U256::ZERO));
        assert_eq!(parse_quantity("0x0186A0"), Ok(U256::from(100_000)));
        assert_eq!(parse_quantity("0xaBc"), Ok(U256::from(0xabc)));
        assert_eq!(parse_quantity(&format!("0x{}", "f".repeat(64))), Ok(U256::MAX));
        assert_eq!(parse_quantity(&format!("0x000{}", "f".repeat(64))), Ok(U256::MAX));
        assert_eq!(
            parse_quantity(&format!("0x1{}", "0".repeat(64))),
            Err(FieldError::Overflow { bits: 256 })
        );
        assert_eq!(parse_quantity("0x"), Err(FieldError::EmptyQuantity));
        assert_eq!(parse_quantity("12"), Err(FieldError::MissingPrefix));
        assert_eq!(parse_quantity("0X12"), Err(FieldError::MissingPrefix));
        assert_eq!(parse_quantity("0x12g"), Err(FieldError::InvalidHexDigit));
        assert_eq!(parse_quantity("0x+1"), Err(FieldError::InvalidHexDigit));
        assert_eq!(parse_quantity("0x 1"), Err(FieldError::InvalidHexDigit));
        assert_eq!(parse_quantity("0x１"), Err(FieldError::InvalidHexDigit));
    }

    #[test]
    fn quantities_agree_with_a_reference_parser() {
        use proptest::prelude::*;
        proptest!(|(digits in "[0-9a-fA-F]{1,70}")| {
            let expected = U256::from_str_radix(&digits, 16).map_err(|_| FieldError::Overflow { bits: 256 });
            prop_assert_eq!(parse_quantity(&format!("0x{digits}")), expected);
        });
        // Limb boundaries.
        for n in [15, 16, 17, 31, 32, 33, 63, 64] {
            let digits = "1".to_string() + &"0".repeat(n - 1);
            assert_eq!(
                parse_quantity(&format!("0x{digits}")),
                Ok(U256::from(1) << (4 * (n - 1))),
                "{n} digits"
            );
        }
        assert_eq!(parse_quantity("0x0g"), Err(FieldError::InvalidHexDigit));
        assert_eq!(
            parse_quantity(&format!("0x{}g", "f".repeat(70))),
            Err(FieldError::InvalidHexDigit)
        );
    }

    #[test]
    fn byte_strings() {
        assert_eq!(parse_bytes("0x"), Ok(Bytes::new()));
        assert_eq!(parse_bytes("0xaBcD"), Ok(Bytes::from(vec![0xab, 0xcd])));
        assert_eq!(parse_bytes("0xabc"), Err(FieldError::OddLength));
        assert_eq!(parse_bytes("0xzz"), Err(FieldError::InvalidHexDigit));
        assert_eq!(parse_bytes("0xé"), Err(FieldError::InvalidHexDigit));
        assert_eq!(parse_bytes("abcd"), Err(FieldError::MissingPrefix));
    }

    #[test]
    fn addresses() {
        let a = "0x5FF137D4b0FDCD49DcA30c7CF57E578a026d2789";
        assert_eq!(parse_address(a), parse_address(&a.to_lowercase()));
        assert_eq!(
            parse_address(&format!("{a}00")),
            Err(FieldError::WrongLength {
                expected: 20,
                actual: 21
            })
        );
        assert_eq!(
            parse_address("0x7702"),
            Err(FieldError::WrongLength {
                expected: 20,
                actual: 2
            })
        );
        assert_eq!(parse_address("0x123"), Err(FieldError::OddLength));
        assert_eq!(
            parse_address("0x5FF137D4b0FDCD49DcA30c7CF57E578a026d278g"),
            Err(FieldError::InvalidHexDigit)
        );
    }
}
