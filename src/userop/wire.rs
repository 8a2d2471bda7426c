//! The RPC (wire) form of `eth_sendUserOperation`'s first parameter.
//!
//! These types mirror the JSON object field for field, values already parsed from hex but not yet
//! checked against the on-chain forms (that is the domain conversion's job, see
//! [`UserOperationV07`](super::UserOperationV07)). The object is read member by member rather
//! than with a derived `Deserialize`, so that every failure names its field, duplicate keys are
//! refused, and members the decoder does not interpret are kept verbatim in [`ExtraFields`].
//!
//! Rules beyond the hex forms of [`hex`](super::hex):
//!
//! - `null` is the same as an absent member;
//! - a member of another version's form (`initCode` in a v0.7 op, `paymaster` in a v0.6 op, …)
//!   is refused unless its value is empty (`null`, `0x`, `0x0`…), because a bundler could act on
//!   it while the proxy checked an op without it;
//! - `factory` also accepts the two-byte EIP-7702 marker `0x7702`, which SDKs send for 7702
//!   accounts; it is read as the 20-byte marker `0x7702000…0`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use alloy_primitives::{Address, Bytes, U256};
use serde::de::{Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use super::hex::{parse_address, parse_bytes, parse_quantity};
use super::json::{object_members, ScanError};
use super::{EntryPointVersion, FieldError, UserOpError, EIP7702_FACTORY_MARKER};

/// Members of the user-operation object that the decoder does not interpret (for example
/// `paymasterSignature`, or vendor extensions), kept as the raw JSON the client sent.
///
/// The proxy forwards the original request bytes, so these never need re-encoding; they are kept
/// so that later stages can look at them and so that the RPC form can be reproduced.
#[derive(Debug, Clone, Default)]
pub struct ExtraFields(BTreeMap<String, Box<RawValue>>);

impl ExtraFields {
    /// The raw JSON value of member `key`, if it was sent.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.get(key).map(|v| &**v)
    }

    /// All kept members, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), &**v))
    }

    /// Number of kept members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no member was kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for ExtraFields {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((ka, va), (kb, vb))| ka == kb && va.get() == vb.get())
    }
}

impl Eq for ExtraFields {}

impl Serialize for ExtraFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The `eip7702Auth` member: the EIP-7702 authorization a bundler should attach to its bundle
/// transaction. Only `address` (the delegate) is interpreted, because the v0.8 userOpHash of a
/// 7702 op depends on it; the rest is kept verbatim for the bundler to check.
#[derive(Debug, Clone)]
pub struct Eip7702Auth {
    address: Address,
    raw: Box<RawValue>,
}

impl Eip7702Auth {
    /// Reads an `eip7702Auth` object: it must be an object with a 20-byte `address`.
    pub fn from_json(raw: Box<RawValue>) -> Result<Self, UserOpError> {
        let mut members = Members::parse(&raw).map_err(|e| match e {
            UserOpError::NotAnObject | UserOpError::InvalidJson { .. } => {
                UserOpError::invalid("eip7702Auth", FieldError::NotAnObject)
            }
            UserOpError::DuplicateField { field } => UserOpError::duplicate(&format!("eip7702Auth.{field}")),
            other => other,
        })?;
        let address = members.required(Field::Address, parse_address).map_err(|e| match e {
            UserOpError::MissingField { .. } => UserOpError::MissingField {
                field: "eip7702Auth.address",
            },
            UserOpError::InvalidField { reason, .. } => UserOpError::invalid("eip7702Auth.address", reason),
            other => other,
        })?;
        Ok(Self { address, raw })
    }

    /// The delegate address the authorization points the sender's code to.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The object exactly as the client sent it.
    pub fn raw(&self) -> &RawValue {
        &self.raw
    }
}

impl PartialEq for Eip7702Auth {
    fn eq(&self, other: &Self) -> bool {
        self.address == other.address && self.raw.get() == other.raw.get()
    }
}

impl Eq for Eip7702Auth {}

impl Serialize for Eip7702Auth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(serializer)
    }
}

/// `eth_sendUserOperation` `params[0]` for EntryPoint v0.6.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcUserOperationV06 {
    /// `sender`.
    pub sender: Address,
    /// `nonce`.
    pub nonce: U256,
    /// `initCode`: factory (20 bytes) ‖ factory calldata, or empty.
    pub init_code: Bytes,
    /// `callData`.
    pub call_data: Bytes,
    /// `callGasLimit`.
    pub call_gas_limit: U256,
    /// `verificationGasLimit`.
    pub verification_gas_limit: U256,
    /// `preVerificationGas`.
    pub pre_verification_gas: U256,
    /// `maxFeePerGas`.
    pub max_fee_per_gas: U256,
    /// `maxPriorityFeePerGas`.
    pub max_priority_fee_per_gas: U256,
    /// `paymasterAndData`: paymaster (20 bytes) ‖ paymaster data, or empty.
    pub paymaster_and_data: Bytes,
    /// `signature`.
    pub signature: Bytes,
    /// Members not listed above.
    #[serde(flatten)]
    pub extra: ExtraFields,
}

/// `eth_sendUserOperation` `params[0]` for EntryPoint v0.7 and v0.8 (same field set).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcUserOperationV07 {
    /// `sender`.
    pub sender: Address,
    /// `nonce`.
    pub nonce: U256,
    /// `factory`; `0x7702` is read as the 20-byte EIP-7702 marker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factory: Option<Address>,
    /// `factoryData`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factory_data: Option<Bytes>,
    /// `callData`.
    pub call_data: Bytes,
    /// `callGasLimit`.
    pub call_gas_limit: U256,
    /// `verificationGasLimit`.
    pub verification_gas_limit: U256,
    /// `preVerificationGas`.
    pub pre_verification_gas: U256,
    /// `maxFeePerGas`.
    pub max_fee_per_gas: U256,
    /// `maxPriorityFeePerGas`.
    pub max_priority_fee_per_gas: U256,
    /// `paymaster`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paymaster: Option<Address>,
    /// `paymasterVerificationGasLimit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paymaster_verification_gas_limit: Option<U256>,
    /// `paymasterPostOpGasLimit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paymaster_post_op_gas_limit: Option<U256>,
    /// `paymasterData`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paymaster_data: Option<Bytes>,
    /// `signature`.
    pub signature: Bytes,
    /// `eip7702Auth` (bundler extension).
    #[serde(rename = "eip7702Auth", skip_serializing_if = "Option::is_none")]
    pub eip7702_auth: Option<Eip7702Auth>,
    /// Members not listed above.
    #[serde(flatten)]
    pub extra: ExtraFields,
}

/// Members that only exist in the v0.7/v0.8 form.
const PACKED_ONLY: [Field; 6] = [
    Field::Factory,
    Field::FactoryData,
    Field::Paymaster,
    Field::PaymasterVerificationGasLimit,
    Field::PaymasterPostOpGasLimit,
    Field::PaymasterData,
];

/// Members that only exist in the v0.6 form.
const V06_ONLY: [Field; 2] = [Field::InitCode, Field::PaymasterAndData];

impl RpcUserOperationV06 {
    /// Reads the v0.6 RPC object.
    pub fn from_json(raw: &RawValue) -> Result<Self, UserOpError> {
        let mut m = Members::parse(raw)?;
        m.reject_foreign(&PACKED_ONLY, EntryPointVersion::V06)?;
        Ok(Self {
            sender: m.required(Field::Sender, parse_address)?,
            nonce: m.required(Field::Nonce, parse_quantity)?,
            init_code: m.required(Field::InitCode, parse_bytes)?,
            call_data: m.required(Field::CallData, parse_bytes)?,
            call_gas_limit: m.required(Field::CallGasLimit, parse_quantity)?,
            verification_gas_limit: m.required(Field::VerificationGasLimit, parse_quantity)?,
            pre_verification_gas: m.required(Field::PreVerificationGas, parse_quantity)?,
            max_fee_per_gas: m.required(Field::MaxFeePerGas, parse_quantity)?,
            max_priority_fee_per_gas: m.required(Field::MaxPriorityFeePerGas, parse_quantity)?,
            paymaster_and_data: m.required(Field::PaymasterAndData, parse_bytes)?,
            signature: m.required(Field::Signature, parse_bytes)?,
            extra: m.into_extra()?,
        })
    }
}

impl RpcUserOperationV07 {
    /// Reads the v0.7/v0.8 RPC object; `version` only labels errors.
    pub fn from_json(raw: &RawValue, version: EntryPointVersion) -> Result<Self, UserOpError> {
        let mut m = Members::parse(raw)?;
        m.reject_foreign(&V06_ONLY, version)?;
        Ok(Self {
            sender: m.required(Field::Sender, parse_address)?,
            nonce: m.required(Field::Nonce, parse_quantity)?,
            factory: m.optional(Field::Factory, parse_factory)?,
            factory_data: m.optional(Field::FactoryData, parse_bytes)?,
            call_data: m.required(Field::CallData, parse_bytes)?,
            call_gas_limit: m.required(Field::CallGasLimit, parse_quantity)?,
            verification_gas_limit: m.required(Field::VerificationGasLimit, parse_quantity)?,
            pre_verification_gas: m.required(Field::PreVerificationGas, parse_quantity)?,
            max_fee_per_gas: m.required(Field::MaxFeePerGas, parse_quantity)?,
            max_priority_fee_per_gas: m.required(Field::MaxPriorityFeePerGas, parse_quantity)?,
            paymaster: m.optional(Field::Paymaster, parse_address)?,
            paymaster_verification_gas_limit: m.optional(Field::PaymasterVerificationGasLimit, parse_quantity)?,
            paymaster_post_op_gas_limit: m.optional(Field::PaymasterPostOpGasLimit, parse_quantity)?,
            paymaster_data: m.optional(Field::PaymasterData, parse_bytes)?,
            signature: m.required(Field::Signature, parse_bytes)?,
            eip7702_auth: m
                .take(Field::Eip7702Auth)
                .map(|raw| owned_raw(raw).and_then(Eip7702Auth::from_json))
                .transpose()?,
            extra: m.into_extra()?,
        })
    }
}

/// `factory` is an address, or the short EIP-7702 marker `0x7702`.
fn parse_factory(s: &str) -> Result<Address, FieldError> {
    if s.eq_ignore_ascii_case("0x7702") && s.starts_with("0x") {
        return Ok(EIP7702_FACTORY_MARKER);
    }
    parse_address(s)
}

/// Declares [`Field`]: the members opgate reads, each with its JSON name.
macro_rules! fields {
    ($($variant:ident = $name:literal,)*) => {
        /// A member opgate reads (of any version's op, or of `eip7702Auth`): it has a slot in
        /// [`Members`], found by one `match` on the key instead of a search.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Field {
            $($variant,)*
        }

        impl Field {
            const ALL: &'static [Field] = &[$(Field::$variant,)*];

            fn name(self) -> &'static str {
                match self {
                    $(Field::$variant => $name,)*
                }
            }

            fn of(key: &str) -> Option<Self> {
                match key {
                    $($name => Some(Field::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

fields! {
    Sender = "sender",
    Nonce = "nonce",
    InitCode = "initCode",
    Factory = "factory",
    FactoryData = "factoryData",
    CallData = "callData",
    CallGasLimit = "callGasLimit",
    VerificationGasLimit = "verificationGasLimit",
    PreVerificationGas = "preVerificationGas",
    MaxFeePerGas = "maxFeePerGas",
    MaxPriorityFeePerGas = "maxPriorityFeePerGas",
    PaymasterAndData = "paymasterAndData",
    Paymaster = "paymaster",
    PaymasterVerificationGasLimit = "paymasterVerificationGasLimit",
    PaymasterPostOpGasLimit = "paymasterPostOpGasLimit",
    PaymasterData = "paymasterData",
    Signature = "signature",
    Eip7702Auth = "eip7702Auth",
    Address = "address",
}

/// A JSON object's members, each key present once, borrowed from the request text: a member's
/// bytes are copied once, when its hex is decoded (or, for a member kept verbatim, when it moves
/// into [`ExtraFields`]). Values are their JSON text, from serde_json-validated input (see
/// [`json`](super::json)). Members opgate reads sit in their [`Field`]'s slot; the others in
/// a list.
struct Members<'a> {
    known: [Option<&'a str>; Field::ALL.len()],
    other: Vec<(Cow<'a, str>, &'a str)>,
}

/// Above this many other members, duplicates are found with a hash set instead of pairwise.
const PAIRWISE_DUPLICATE_CHECK: usize = 32;

impl<'a> Members<'a> {
    fn parse(raw: &'a RawValue) -> Result<Self, UserOpError> {
        let mut members = Self {
            known: [None; Field::ALL.len()],
            other: Vec::new(),
        };
        // Keys are checked in the order sent, so the duplicate named is the first key that an
        // earlier member already used.
        let mut seen: Option<std::collections::HashSet<Cow<'a, str>>> = None;
        object_members(raw.get(), |key, value| {
            let duplicate = match Field::of(&key) {
                Some(field) => members.known[field as usize].replace(value).is_some(),
                None => {
                    let duplicate = match &mut seen {
                        Some(seen) => !seen.insert(key.clone()),
                        None => members.other.iter().any(|(k, _)| *k == key),
                    };
                    if seen.is_none() && members.other.len() == PAIRWISE_DUPLICATE_CHECK {
                        seen = Some(
                            members
                                .other
                                .iter()
                                .map(|(k, _)| k.clone())
                                .chain([key.clone()])
                                .collect(),
                        );
                    }
                    members.other.push((key.clone(), value));
                    duplicate
                }
            };
            match duplicate {
                true => Err(UserOpError::duplicate(&key)),
                false => Ok(()),
            }
        })?;
        Ok(members)
    }

    /// Removes member `field` (its JSON text); `null` counts as absent.
    fn take(&mut self, field: Field) -> Option<&'a str> {
        self.known[field as usize].take().filter(|v| !is_null(v))
    }

    fn optional<T>(
        &mut self,
        field: Field,
        parse: fn(&str) -> Result<T, FieldError>,
    ) -> Result<Option<T>, UserOpError> {
        let Some(raw) = self.take(field) else {
            return Ok(None);
        };
        let field = field.name();
        // `raw` is valid JSON, so a string is its text between the quotes unless it has
        // escapes; the hex forms never contain a backslash, so parsing that text either gives
        // the value or fails, and only a failure with a backslash needs the unescaped string.
        if let Some(inner) = raw.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            match parse(inner) {
                Ok(v) => return Ok(Some(v)),
                Err(reason) if !inner.contains('\\') => return Err(UserOpError::invalid(field, reason)),
                Err(_) => {}
            }
        }
        let text = json_str(raw).ok_or_else(|| UserOpError::invalid(field, FieldError::NotAString))?;
        parse(&text)
            .map(Some)
            .map_err(|reason| UserOpError::invalid(field, reason))
    }

    fn required<T>(&mut self, field: Field, parse: fn(&str) -> Result<T, FieldError>) -> Result<T, UserOpError> {
        self.optional(field, parse)?
            .ok_or(UserOpError::MissingField { field: field.name() })
    }

    fn reject_foreign(&self, fields: &[Field], version: EntryPointVersion) -> Result<(), UserOpError> {
        for &field in fields {
            if self.known[field as usize].is_some_and(|v| !is_empty_value(v)) {
                return Err(UserOpError::UnexpectedField {
                    field: field.name(),
                    version,
                });
            }
        }
        Ok(())
    }

    /// The members not taken: every other member, and read ones this version does not use.
    fn into_extra(self) -> Result<ExtraFields, UserOpError> {
        if self.other.is_empty() && self.known.iter().all(Option::is_none) {
            return Ok(ExtraFields::default());
        }
        let known = Field::ALL
            .iter()
            .zip(self.known)
            .filter_map(|(field, value)| Some((Cow::Borrowed(field.name()), value?)));
        self.other
            .into_iter()
            .chain(known)
            .map(|(k, v)| Ok((k.into_owned(), owned_raw(v)?)))
            .collect::<Result<_, UserOpError>>()
            .map(ExtraFields)
    }
}

impl From<ScanError> for UserOpError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::NotAnObject => UserOpError::NotAnObject,
            ScanError::Malformed { at, expected } => UserOpError::InvalidJson {
                reason: format!("expected {expected} at byte {at}"),
            },
        }
    }
}

/// A member's JSON text as an owned `RawValue` (the text is already valid JSON).
fn owned_raw(text: &str) -> Result<Box<RawValue>, UserOpError> {
    RawValue::from_string(text.to_owned()).map_err(|e| UserOpError::InvalidJson { reason: e.to_string() })
}

/// A JSON string's value, borrowed when it has no escapes; `None` if `raw` is not a string.
fn json_str(text: &str) -> Option<Cow<'_, str>> {
    // `text` is already valid JSON: a string without a backslash is its own value between the
    // quotes, so the common case (hex digits) needs no second pass of the JSON parser.
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        if !inner.contains('\\') {
            return Some(Cow::Borrowed(inner));
        }
    }
    serde_json::from_str::<Text<'_>>(text).ok().map(|t| t.0)
}

/// A string borrowed from the input when it can be (serde's `Cow<str>` always copies).
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

fn is_null(text: &str) -> bool {
    text == "null"
}

/// `null`, or a hex string with no non-zero digit (`0x`, `0x0`, `0x000…`).
fn is_empty_value(raw: &str) -> bool {
    is_null(raw) || json_str(raw).is_some_and(|s| s.strip_prefix("0x").is_some_and(|d| d.bytes().all(|b| b == b'0')))
}
