//! What an `initCode` (`factory ‖ factoryData`) deploys (spec §3.4, §6).
//!
//! Kernel v3: `metaFactory.deployWithFactory(kernelFactory, initializeCalldata, salt)` or
//! `kernelFactory.createAccount(initializeCalldata, salt)`; the Kernel release follows from the
//! Kernel factory address (each release has its own factory), or, failing that, from the
//! `initialize` selector (v3.0 has its own; v3.1–v3.3 share one). `initialize` names the root
//! validation and its install data: for the ECDSA and multi-chain ECDSA validators the owner is
//! the first 20 bytes. Kernel v2 (`createAccount(implementation, initialize(validator, data),
//! index)`) and SimpleAccount factories (`createAccount(owner, salt)`) are recognised too.

use alloy_primitives::{address, Address, Bytes, FixedBytes, B256};
use serde::Serialize;

use super::abi::{selector_of, Abi, Arith};
use super::enable::KernelVersion;
use super::multichain::MULTICHAIN_ECDSA_VALIDATOR;
use super::permission::{decode_permission_data, Permission};
use super::{ser, DecodeError};

/// FactoryStaker, the meta factory for every Kernel v3 release.
pub const META_FACTORY: Address = address!("d703aaE79538628d27099B8c4f621bE4CCd142d5");
/// Kernel v3.0 factory.
pub const KERNEL_V3_0_FACTORY: Address = address!("6723b44Abeec4E71eBE3232BD5B455805baDD22f");
/// Kernel v3.1 factory.
pub const KERNEL_V3_1_FACTORY: Address = address!("aac5D4240AF87249B3f71BC8E4A2cae074A3E419");
/// Kernel v3.2 factory.
pub const KERNEL_V3_2_FACTORY: Address = address!("7a1dBAB750f12a90EB1B60D2Ae3aD17D4D81EfFe");
/// Kernel v3.3 factory.
pub const KERNEL_V3_3_FACTORY: Address = address!("2577507b78c2008Ff367261CB6285d44ba5eF2E9");
/// Kernel v3.3 implementation, also the EIP-7702 delegation target.
pub const KERNEL_V3_3_IMPLEMENTATION: Address = address!("d6CEDDe84be40893d153Be9d467CD6aD37875b28");
/// Kernel v2 factory.
pub const KERNEL_V2_FACTORY: Address = address!("5de4839a76cf55d0c90e2061ef4386d962E15ae3");
/// ECDSAValidator for Kernel v2.
pub const ECDSA_VALIDATOR_V2: Address = address!("d9AB5096a832b9ce79914329DAEE236f8Eea0390");
/// ECDSAValidator for Kernel v3.0.
pub const ECDSA_VALIDATOR_V3_0: Address = address!("8104e3Ad430EA6d354d013A6789fDFc71E671c43");
/// ECDSAValidator for Kernel v3.1+.
pub const ECDSA_VALIDATOR: Address = address!("845ADb2C711129d4f3966735eD98a9F09fC4cE57");

/// `deployWithFactory(address,bytes,bytes32)`.
pub const DEPLOY_WITH_FACTORY: [u8; 4] = [0xc5, 0x26, 0x5d, 0x5d];
/// Kernel v3 `createAccount(bytes,bytes32)`.
pub const CREATE_ACCOUNT: [u8; 4] = [0xea, 0x6d, 0x13, 0xac];
/// Kernel v3.0 `initialize(bytes21,address,bytes,bytes)`.
pub const INITIALIZE_V3_0: [u8; 4] = [0x12, 0xaf, 0x32, 0x2c];
/// Kernel v3.1+ `initialize(bytes21,address,bytes,bytes,bytes[])`.
pub const INITIALIZE_V3_1: [u8; 4] = [0x3c, 0x3b, 0x75, 0x2b];
/// Kernel v2 factory `createAccount(address,bytes,uint256)`.
pub const CREATE_ACCOUNT_V2: [u8; 4] = [0x29, 0x66, 0x01, 0xcd];
/// Kernel v2 `initialize(address,bytes)`.
pub const INITIALIZE_V2: [u8; 4] = [0xd1, 0xf5, 0x78, 0x94];
/// SimpleAccountFactory `createAccount(address,uint256)`.
pub const CREATE_SIMPLE_ACCOUNT: [u8; 4] = [0x5f, 0xbf, 0xb9, 0xcf];

/// Which deployment path the initCode takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentKind {
    /// Kernel v3 through the meta factory.
    KernelMetaFactory,
    /// Kernel v3 factory called directly.
    KernelFactory,
    /// Kernel v2 factory.
    KernelV2Factory,
    /// SimpleAccountFactory `createAccount(owner, salt)`.
    SimpleAccountFactory,
    /// Not recognised.
    Unknown,
}

/// Kind of root validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootKind {
    /// ECDSAValidator.
    Ecdsa,
    /// Multi-chain ECDSA validator.
    MultiChainEcdsa,
    /// A permission (signer + policies).
    Permission,
    /// Another validator.
    Unknown,
}

/// The root validation an account is initialised with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RootValidator {
    /// Kind.
    #[serde(rename = "type")]
    pub kind: RootKind,
    /// ValidationId (Kernel v3).
    pub validation_id: Option<FixedBytes<21>>,
    /// Validator module (validator roots).
    #[serde(serialize_with = "ser::opt_address")]
    pub address: Option<Address>,
    /// Owner (ECDSA and multi-chain ECDSA validators; for a permission root its ECDSA signer key).
    #[serde(serialize_with = "ser::opt_address")]
    pub owner: Option<Address>,
    /// Permission (permission roots).
    pub permission: Option<Permission>,
    /// Raw install data.
    pub data: Bytes,
}

impl RootValidator {
    /// The root of a v3 ValidationId with its install data.
    pub fn from_validation(validation_id: FixedBytes<21>, data: &[u8]) -> Result<Self, DecodeError> {
        let mut root = match validation_id[0] {
            0x01 => Self::validator(Address::from_slice(&validation_id[1..]), data)?,
            0x02 => {
                let permission = decode_permission_data(data)?;
                Self {
                    kind: RootKind::Permission,
                    validation_id: None,
                    address: None,
                    // The key that signs for this root: an ECDSA signer's session key.
                    owner: permission.signer.address,
                    permission: Some(permission),
                    data: Bytes::copy_from_slice(data),
                }
            }
            _ => {
                return Err(DecodeError::InvalidValue {
                    what: "root validation id",
                    at: 0,
                    expected: "validator or permission",
                })
            }
        };
        root.validation_id = Some(validation_id);
        Ok(root)
    }

    /// A validator module root with its install data.
    pub fn validator(address: Address, data: &[u8]) -> Result<Self, DecodeError> {
        let kind = match address {
            ECDSA_VALIDATOR | ECDSA_VALIDATOR_V3_0 | ECDSA_VALIDATOR_V2 => RootKind::Ecdsa,
            MULTICHAIN_ECDSA_VALIDATOR => RootKind::MultiChainEcdsa,
            _ => RootKind::Unknown,
        };
        let owner = match kind {
            RootKind::Ecdsa | RootKind::MultiChainEcdsa => {
                Some(Address::from_slice(Abi::new(data, "validator data").slice(0, 20)?))
            }
            _ => None,
        };
        Ok(Self {
            kind,
            validation_id: None,
            address: Some(address),
            owner,
            permission: None,
            data: Bytes::copy_from_slice(data),
        })
    }
}

/// A decoded initCode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `initCode[0:20]`.
    #[serde(serialize_with = "ser::address")]
    pub factory: Address,
    /// Deployment path.
    pub kind: DeploymentKind,
    /// The Kernel factory (v3) or implementation (v2).
    #[serde(serialize_with = "ser::opt_address")]
    pub kernel_factory: Option<Address>,
    /// Kernel v3 release, when the factory or `initialize` selector tells it.
    pub kernel_version: Option<KernelVersion>,
    /// Release label of the account ("0.3.1", "0.2.4", …), when known.
    pub account_version: Option<&'static str>,
    /// Salt / index word.
    pub salt: Option<B256>,
    /// Root validation.
    pub root_validator: Option<RootValidator>,
    /// Root hook (Kernel v3).
    #[serde(serialize_with = "ser::opt_address")]
    pub hook: Option<Address>,
    /// `initConfig` self-calls run after install (Kernel v3.1+), raw.
    pub init_config: Vec<Bytes>,
}

fn v3_version(factory: Address) -> Option<KernelVersion> {
    match factory {
        KERNEL_V3_0_FACTORY => Some(KernelVersion::V3_0),
        KERNEL_V3_1_FACTORY => Some(KernelVersion::V3_1),
        KERNEL_V3_2_FACTORY => Some(KernelVersion::V3_2),
        KERNEL_V3_3_FACTORY => Some(KernelVersion::V3_3),
        _ => None,
    }
}

fn label(version: KernelVersion) -> &'static str {
    match version {
        KernelVersion::V3_0 => "0.3.0",
        KernelVersion::V3_1 => "0.3.1",
        KernelVersion::V3_2 => "0.3.2",
        KernelVersion::V3_3 => "0.3.3",
    }
}

/// Decodes an initCode (`factory ‖ factoryData`); `None` when empty (the fuzzing entry point).
pub fn decode_init_code(init_code: &[u8]) -> Result<Option<Deployment>, DecodeError> {
    if init_code.is_empty() {
        return Ok(None);
    }
    let factory = Address::from_slice(Abi::new(init_code, "initCode").slice(0, 20)?);
    let data = &init_code[20..];
    let mut d = Deployment {
        factory,
        kind: DeploymentKind::Unknown,
        kernel_factory: None,
        kernel_version: None,
        account_version: None,
        salt: None,
        root_validator: None,
        hook: None,
        init_config: Vec::new(),
    };
    let args = Abi::new(data, "factoryData");
    match selector_of(data).map(|s| s.0) {
        Some(DEPLOY_WITH_FACTORY) if factory == META_FACTORY => {
            d.kind = DeploymentKind::KernelMetaFactory;
            let kernel_factory = args.address(4)?;
            d.kernel_factory = Some(kernel_factory);
            d.salt = Some(B256::from(*args.word(68)?));
            d.kernel_version = v3_version(kernel_factory);
            initialize_v3(&mut d, args.bytes_at(4, 36, Arith::Checked)?)?;
        }
        Some(CREATE_ACCOUNT) => {
            d.kind = DeploymentKind::KernelFactory;
            d.kernel_factory = Some(factory);
            d.salt = Some(B256::from(*args.word(36)?));
            d.kernel_version = v3_version(factory);
            initialize_v3(&mut d, args.bytes_at(4, 4, Arith::Checked)?)?;
        }
        Some(CREATE_ACCOUNT_V2) => {
            d.kind = DeploymentKind::KernelV2Factory;
            let implementation = args.address(4)?;
            d.kernel_factory = Some(implementation);
            d.account_version = match implementation {
                a if a == address!("0DA6a956B9488eD4dd761E59f52FDc6c8068E6B5") => Some("0.2.2"),
                a if a == address!("D3F582F6B4814E989Ee8E96bc3175320B5A540ab") => Some("0.2.3"),
                a if a == address!("d3082872F8B06073A021b4602e022d5A070d7cfC") => Some("0.2.4"),
                _ => None,
            };
            d.salt = Some(B256::from(*args.word(68)?));
            let init = args.bytes_at(4, 36, Arith::Checked)?;
            if selector_of(init).is_some_and(|s| s == INITIALIZE_V2) {
                let init = Abi::new(init, "initialize");
                let validator = init.address(4)?;
                d.root_validator = Some(RootValidator::validator(
                    validator,
                    init.bytes_at(4, 36, Arith::Checked)?,
                )?);
            }
        }
        Some(CREATE_SIMPLE_ACCOUNT) => {
            d.kind = DeploymentKind::SimpleAccountFactory;
            let owner = args.address(4)?;
            d.salt = Some(B256::from(*args.word(36)?));
            d.root_validator = Some(RootValidator {
                kind: RootKind::Ecdsa,
                validation_id: None,
                address: None,
                owner: Some(owner),
                permission: None,
                data: Bytes::new(),
            });
        }
        _ => {}
    }
    Ok(Some(d))
}

/// Decodes a Kernel v3 `initialize` call into `d`.
fn initialize_v3(d: &mut Deployment, init: &[u8]) -> Result<(), DecodeError> {
    let with_config = match selector_of(init).map(|s| s.0) {
        Some(INITIALIZE_V3_0) => {
            d.kernel_version.get_or_insert(KernelVersion::V3_0);
            false
        }
        Some(INITIALIZE_V3_1) => true,
        _ => return Ok(()),
    };
    d.account_version = d.kernel_version.map(label);
    let args = Abi::new(init, "initialize");
    let vid = args.fixed::<21>(4, "bytes21 rootValidator")?;
    d.hook = Some(args.address(36)?);
    let validator_data = args.bytes_at(4, 68, Arith::Checked)?;
    args.bytes_at(4, 100, Arith::Checked)?;
    if with_config {
        let list = args.pointer(4, 132, Arith::Checked)?;
        d.init_config = args
            .dynamic_array(list, Arith::Checked)?
            .into_iter()
            .map(|p| args.bytes(p).map(Bytes::copy_from_slice))
            .collect::<Result<_, _>>()?;
    }
    d.root_validator = Some(RootValidator::from_validation(vid, validator_data)?);
    Ok(())
}
