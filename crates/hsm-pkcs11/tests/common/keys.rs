//! Session keys that more than one FFI test file makes the same way.

use super::*;

/// `CKA_EC_PARAMS` of P-256: the DER OID 1.2.840.10045.3.1.7.
pub const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// An EC P-256 key pair as session objects, the private half with `CKA_SIGN`; returns
/// (public, private).
pub fn ec_pair(h: CK_SESSION_HANDLE) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    generate_pair(
        h,
        CKM_EC_KEY_PAIR_GEN,
        &[(CKA_EC_PARAMS, Val::Bytes(P256.to_vec()))],
        &[(CKA_SIGN, Val::Bool(true))],
    )
    .expect("C_GenerateKeyPair (P-256)")
}

/// An EC P-256 key pair as session objects with `CKA_DERIVE` = `derive` on the private
/// half; returns (public point, private), the point without its DER OCTET STRING header.
pub fn derive_pair(h: CK_SESSION_HANDLE, derive: CK_BBOOL) -> (Vec<u8>, CK_OBJECT_HANDLE) {
    let (p, s) = generate_pair(
        h,
        CKM_EC_KEY_PAIR_GEN,
        &[(CKA_EC_PARAMS, Val::Bytes(P256.to_vec()))],
        &[(CKA_DERIVE, Val::Bytes(vec![derive]))],
    )
    .expect("C_GenerateKeyPair (P-256)");
    let mut point = [0u8; 67];
    let mut q = [bytes_attr(CKA_EC_POINT, &mut point)];
    assert_eq!(
        // SAFETY: a one-entry template whose buffer holds the 67 bytes it claims.
        unsafe { C_GetAttributeValue(h, p, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    (point[2..].to_vec(), s)
}

/// An AES session key with this value and `CKA_ENCRYPT`/`CKA_DECRYPT`.
pub fn aes_key(h: CK_SESSION_HANDLE, value: &[u8]) -> CK_OBJECT_HANDLE {
    create(
        h,
        &aes_template(
            value,
            &[
                (CKA_ENCRYPT, Val::Bool(true)),
                (CKA_DECRYPT, Val::Bool(true)),
            ],
        ),
    )
    .expect("C_CreateObject (AES key)")
}

/// An AES session key with this value and these `CK_BBOOL` attributes.
pub fn secret(
    h: CK_SESSION_HANDLE,
    value: &[u8],
    flags: &[(CK_ATTRIBUTE_TYPE, CK_BBOOL)],
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let flags: Vec<_> = flags
        .iter()
        .map(|&(t, v)| (t, Val::Bytes(vec![v])))
        .collect();
    create(h, &aes_template(value, &flags))
}
