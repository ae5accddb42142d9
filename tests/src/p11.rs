//! What every test that drives the built module through the `cryptoki` crate starts
//! with: the PINs, loading and initialising the module, the return value of a refusal,
//! and an EC public key's point.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::AuthPin;

pub const SO_PIN: &str = "so-pin-0000";
pub const USER_PIN: &str = "user-pin-1111";
/// DER of the P-256 curve's OID, for `CKA_EC_PARAMS`.
pub const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

pub fn pin(s: &str) -> AuthPin {
    AuthPin::new(s.into())
}

/// The built module, loaded and initialised (OS locking).
pub fn init() -> Pkcs11 {
    let p = Pkcs11::new(crate::module_path()).expect("load the module");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    p
}

/// The `CKR_*` of a call that must fail.
pub fn rv<T: std::fmt::Debug>(r: cryptoki::error::Result<T>) -> RvError {
    match r {
        Err(Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

/// The uncompressed point of an EC public key (its `CKA_EC_POINT` without the DER
/// OCTET STRING around it).
pub fn ec_point(s: &Session, key: ObjectHandle) -> Vec<u8> {
    let attrs = s.get_attributes(key, &[AttributeType::EcPoint]).unwrap();
    let Some(Attribute::EcPoint(der)) = attrs.into_iter().next() else {
        panic!("no CKA_EC_POINT")
    };
    assert_eq!(der[0], 0x04);
    der[2..].to_vec()
}
