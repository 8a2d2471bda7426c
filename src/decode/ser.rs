//! Serde helpers for the JSON spellings of decoded values: addresses as lowercase `0x…` hex
//! (alloy's own `Serialize` checksums them) and numbers as decimal strings.

use std::fmt::Display;

use alloy_primitives::{hex, Address};
use serde::{ser::SerializeSeq, Serializer};

/// An address as lowercase `0x…` hex.
pub(crate) fn address<S: Serializer>(a: &Address, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode_prefixed(a.as_slice()))
}

/// An optional address as lowercase hex or `null`.
pub(crate) fn opt_address<S: Serializer>(a: &Option<Address>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => address(a, s),
        None => s.serialize_none(),
    }
}

/// A list of addresses as lowercase hex.
pub(crate) fn addresses<S: Serializer>(list: &[Address], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(list.len()))?;
    for a in list {
        seq.serialize_element(&hex::encode_prefixed(a.as_slice()))?;
    }
    seq.end()
}

/// A number as a decimal string.
pub(crate) fn decimal<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// An optional number as a decimal string or `null`.
pub(crate) fn opt_decimal<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}
