//! What the in-process FFI test files share: a fresh store per test behind one lock (the
//! module's state is process-global), a logged-in token session, and attribute builders.
#![allow(dead_code)]

use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use ferrohsm_pkcs11::*;
use std::ptr::null_mut;
use std::sync::Mutex;

mod devices;
mod keys;
// As `dead_code` above: not every test binary uses these.
#[allow(unused_imports)]
pub use devices::*;
#[allow(unused_imports)]
pub use keys::*;

pub static SERIAL: Mutex<()> = Mutex::new(());

pub struct Env {
    pub _dir: tempfile::TempDir,
    pub _guard: std::sync::MutexGuard<'static, ()>,
}

/// Points the module at a fresh store and initialises it.
pub fn setup() -> Env {
    setup_with_injected_failure(None)
}

/// As `setup`, with one self-test made to fail during this C_Initialize.
pub fn setup_with_injected_failure(selftest: Option<&str>) -> Env {
    setup_with(selftest, "")
}

/// As `setup`, with extra top-level configuration lines.
pub fn setup_with(selftest: Option<&str>, extra_config: &str) -> Env {
    setup_in(selftest, extra_config, None)
}

/// As `setup_with`, with the store in `store` instead of the temporary directory.
pub fn setup_in(
    selftest: Option<&str>,
    extra_config: &str,
    store: Option<&std::path::Path>,
) -> Env {
    setup_full(selftest, extra_config, store, 3, "")
}

/// The module over the store in `store` with `tables` (`[[slots]]` and the like) at the
/// end of its configuration.
pub fn setup_with_tables(store: &std::path::Path, tables: &str) -> Env {
    setup_full(None, "", Some(store), 3, tables)
}

/// A fresh store whose PIN policy locks after `max_failures` wrong PINs.
pub fn setup_with_max_failures(max_failures: u32) -> Env {
    setup_full(None, "", None, max_failures, "")
}

fn setup_full(
    selftest: Option<&str>,
    extra_config: &str,
    store: Option<&std::path::Path>,
    max_failures: u32,
    tables: &str,
) -> Env {
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ferrohsm.toml");
    let store = store.map_or_else(|| dir.path().join("store"), std::path::Path::to_path_buf);
    // These tests look inside the runtime of this process: the store opens in-process.
    let mode = if extra_config.contains("mode =") {
        ""
    } else {
        "mode = \"embedded\"\n"
    };
    std::fs::write(
        &conf,
        format!(
            "{extra_config}{mode}store = {:?}\nlog_level = \"off\"\n[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n[pin_policy]\nmin_len = 4\nmax_len = 16\nmax_failures = {max_failures}\n{tables}",
            store.display().to_string()
        ),
    )
    .unwrap();
    // SAFETY: every test holds SERIAL, so no other test thread reads the environment
    // while it changes; the module reads it only inside C_Initialize below.
    unsafe {
        std::env::set_var("FERROHSM_CONF", &conf);
        match selftest {
            Some(name) => std::env::set_var(hsm_core::selftest::INJECT_ENV, name),
            None => std::env::remove_var(hsm_core::selftest::INJECT_ENV),
        }
    }
    // SAFETY: NULL arguments are allowed.
    assert_eq!(unsafe { C_Initialize(null_mut()) }, CKR_OK);
    // SAFETY: as above.
    unsafe { std::env::remove_var(hsm_core::selftest::INJECT_ENV) };
    Env {
        _dir: dir,
        _guard: guard,
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // SAFETY: NULL is the required argument.
        unsafe { C_Finalize(null_mut()) };
    }
}

pub const SO: &[u8] = b"so-pin-1";
pub const USER: &[u8] = b"user-pin-1";

/// Initialises slot 1's token, sets the user PIN, and opens a logged-in R/W session.
pub fn token_session() -> CK_SESSION_HANDLE {
    let mut label = [b' '; 32];
    label[..4].copy_from_slice(b"test");
    // SAFETY: valid buffers for every call below.
    unsafe {
        assert_eq!(
            C_InitToken(1, SO.as_ptr() as *mut _, SO.len() as _, label.as_mut_ptr()),
            CKR_OK
        );
        let mut h = 0;
        assert_eq!(
            C_OpenSession(
                1,
                CKF_SERIAL_SESSION | CKF_RW_SESSION,
                null_mut(),
                None,
                &mut h
            ),
            CKR_OK
        );
        assert_eq!(
            C_Login(h, CKU_SO, SO.as_ptr() as *mut _, SO.len() as _),
            CKR_OK
        );
        assert_eq!(
            C_InitPIN(h, USER.as_ptr() as *mut _, USER.len() as _),
            CKR_OK
        );
        assert_eq!(C_Logout(h), CKR_OK);
        assert_eq!(
            C_Login(h, CKU_USER, USER.as_ptr() as *mut _, USER.len() as _),
            CKR_OK
        );
        h
    }
}

pub fn bool_attr(t: CK_ATTRIBUTE_TYPE, v: &mut CK_BBOOL) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: t,
        pValue: v as *mut _ as *mut _,
        ulValueLen: 1,
    }
}

pub fn ulong_attr(t: CK_ATTRIBUTE_TYPE, v: &mut CK_ULONG) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: t,
        pValue: v as *mut _ as *mut _,
        ulValueLen: std::mem::size_of::<CK_ULONG>() as _,
    }
}

pub fn bytes_attr(t: CK_ATTRIBUTE_TYPE, v: &mut [u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: t,
        pValue: v.as_mut_ptr() as *mut _,
        ulValueLen: v.len() as _,
    }
}

/// One attribute value of an owned template.
#[derive(Clone, Debug)]
pub enum Val {
    Bool(bool),
    Ulong(CK_ULONG),
    Bytes(Vec<u8>),
}

/// A template that owns its values; `raw()` gives the `CK_ATTRIBUTE` array to pass in.
pub struct Template {
    values: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
    raw: Vec<CK_ATTRIBUTE>,
}

impl Template {
    pub fn new(attrs: &[(CK_ATTRIBUTE_TYPE, Val)]) -> Template {
        let values = attrs
            .iter()
            .map(|(t, v)| {
                let bytes = match v {
                    Val::Bool(b) => vec![u8::from(*b)],
                    Val::Ulong(u) => u.to_ne_bytes().to_vec(),
                    Val::Bytes(b) => b.clone(),
                };
                (*t, bytes)
            })
            .collect();
        Template {
            values,
            raw: Vec::new(),
        }
    }

    pub fn raw(&mut self) -> (*mut CK_ATTRIBUTE, CK_ULONG) {
        self.raw = self
            .values
            .iter_mut()
            .map(|(t, v)| CK_ATTRIBUTE {
                type_: *t,
                pValue: if v.is_empty() {
                    null_mut()
                } else {
                    v.as_mut_ptr() as *mut _
                },
                ulValueLen: v.len() as _,
            })
            .collect();
        (self.raw.as_mut_ptr(), self.raw.len() as _)
    }
}

/// A mechanism with its parameter block kept alive beside it.
pub struct Mech {
    param: Vec<u8>,
    pub mechanism: CK_MECHANISM_TYPE,
}

impl Mech {
    pub fn plain(mechanism: CK_MECHANISM_TYPE) -> Mech {
        Mech {
            param: Vec::new(),
            mechanism,
        }
    }

    /// With a parameter struct copied in as bytes (it must hold no pointers that outlive
    /// what the caller keeps alive).
    pub fn with<T>(mechanism: CK_MECHANISM_TYPE, param: &T) -> Mech {
        let len = std::mem::size_of::<T>();
        let mut bytes = vec![0u8; len];
        // SAFETY: T is a plain C struct of `len` bytes; copying its bytes is what the C
        // caller of a PKCS#11 function would pass.
        unsafe {
            std::ptr::copy_nonoverlapping(param as *const T as *const u8, bytes.as_mut_ptr(), len)
        };
        Mech {
            param: bytes,
            mechanism,
        }
    }

    pub fn raw(&mut self) -> CK_MECHANISM {
        CK_MECHANISM {
            mechanism: self.mechanism,
            pParameter: if self.param.is_empty() {
                null_mut()
            } else {
                self.param.as_mut_ptr() as *mut _
            },
            ulParameterLen: self.param.len() as _,
        }
    }
}

pub fn rv_result<T>(rv: CK_RV, value: T) -> Result<T, CK_RV> {
    if rv == CKR_OK { Ok(value) } else { Err(rv) }
}

pub fn create(
    h: CK_SESSION_HANDLE,
    t: &[(CK_ATTRIBUTE_TYPE, Val)],
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let mut t = Template::new(t);
    let (p, n) = t.raw();
    let mut o = 0;
    // SAFETY: a valid template and output.
    let rv = unsafe { C_CreateObject(h, p, n, &mut o) };
    rv_result(rv, o)
}

pub fn generate_pair(
    h: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_TYPE,
    public: &[(CK_ATTRIBUTE_TYPE, Val)],
    private: &[(CK_ATTRIBUTE_TYPE, Val)],
) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), CK_RV> {
    let mut m = Mech::plain(mechanism).raw();
    let (mut pt, mut st) = (Template::new(public), Template::new(private));
    let ((pp, pn), (sp, sn)) = (pt.raw(), st.raw());
    let (mut pubk, mut privk) = (0, 0);
    // SAFETY: valid mechanism, templates and outputs.
    let rv = unsafe { C_GenerateKeyPair(h, &mut m, pp, pn, sp, sn, &mut pubk, &mut privk) };
    rv_result(rv, (pubk, privk))
}

/// `C_WrapKey` with the length query first, as PKCS#11 callers do.
pub fn wrap_with(
    h: CK_SESSION_HANDLE,
    m: &mut Mech,
    wrapping: CK_OBJECT_HANDLE,
    key: CK_OBJECT_HANDLE,
) -> Result<Vec<u8>, CK_RV> {
    let mut raw = m.raw();
    let mut n: CK_ULONG = 0;
    // SAFETY: a length query, then a buffer of that length.
    unsafe {
        let rv = C_WrapKey(h, &mut raw, wrapping, key, null_mut(), &mut n);
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut out = vec![0u8; n as usize];
        let rv = C_WrapKey(h, &mut raw, wrapping, key, out.as_mut_ptr(), &mut n);
        out.truncate(n as usize);
        rv_result(rv, out)
    }
}

pub fn unwrap_with(
    h: CK_SESSION_HANDLE,
    m: &mut Mech,
    unwrapping: CK_OBJECT_HANDLE,
    blob: &[u8],
    t: &[(CK_ATTRIBUTE_TYPE, Val)],
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let mut raw = m.raw();
    let mut t = Template::new(t);
    let (p, n) = t.raw();
    let mut blob = blob.to_vec();
    let mut o = 0;
    // SAFETY: valid mechanism, blob, template and output.
    let rv = unsafe {
        C_UnwrapKey(
            h,
            &mut raw,
            unwrapping,
            blob.as_mut_ptr(),
            blob.len() as _,
            p,
            n,
            &mut o,
        )
    };
    rv_result(rv, o)
}

/// One attribute's value (`Err` with the `CK_RV` when it cannot be read).
pub fn attribute(
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    t: CK_ATTRIBUTE_TYPE,
) -> Result<Vec<u8>, CK_RV> {
    let mut a = CK_ATTRIBUTE {
        type_: t,
        pValue: null_mut(),
        ulValueLen: 0,
    };
    // SAFETY: a length query, then a buffer of that length.
    unsafe {
        let rv = C_GetAttributeValue(h, o, &mut a, 1);
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut buf = vec![0u8; a.ulValueLen as usize];
        a.pValue = buf.as_mut_ptr() as *mut _;
        let rv = C_GetAttributeValue(h, o, &mut a, 1);
        rv_result(rv, buf)
    }
}

/// Signs `data` in one `C_Sign`.
pub fn sign(
    h: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_TYPE,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    let mut m = Mech::plain(mechanism).raw();
    let mut data = data.to_vec();
    let mut out = vec![0u8; 1024];
    let mut n = out.len() as CK_ULONG;
    // SAFETY: valid mechanism and buffers.
    unsafe {
        let rv = C_SignInit(h, &mut m, key);
        if rv != CKR_OK {
            return Err(rv);
        }
        let rv = C_Sign(
            h,
            data.as_mut_ptr(),
            data.len() as _,
            out.as_mut_ptr(),
            &mut n,
        );
        out.truncate(n as usize);
        rv_result(rv, out)
    }
}

/// Verifies in one `C_Verify`.
pub fn verify(
    h: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_TYPE,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
    signature: &[u8],
) -> Result<(), CK_RV> {
    let mut m = Mech::plain(mechanism).raw();
    let (mut data, mut signature) = (data.to_vec(), signature.to_vec());
    // SAFETY: valid mechanism and buffers.
    unsafe {
        let rv = C_VerifyInit(h, &mut m, key);
        if rv != CKR_OK {
            return Err(rv);
        }
        let rv = C_Verify(
            h,
            data.as_mut_ptr(),
            data.len() as _,
            signature.as_mut_ptr(),
            signature.len() as _,
        );
        rv_result(rv, ())
    }
}

/// Hex test vectors as bytes (two digits a byte, either case, no separators).
pub fn hexv(s: &str) -> Vec<u8> {
    hex::decode(s).expect("a hex test vector")
}

/// An AES key template with `value`, plus `extra` attributes.
pub fn aes_template(
    value: &[u8],
    extra: &[(CK_ATTRIBUTE_TYPE, Val)],
) -> Vec<(CK_ATTRIBUTE_TYPE, Val)> {
    let mut t = vec![
        (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
        (CKA_KEY_TYPE, Val::Ulong(CKK_AES)),
        (CKA_VALUE, Val::Bytes(value.to_vec())),
    ];
    t.extend_from_slice(extra);
    t
}

/// `C_SetAttributeValue` with an owned template.
pub fn set_attributes(
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    t: &[(CK_ATTRIBUTE_TYPE, Val)],
) -> CK_RV {
    let mut t = Template::new(t);
    let (p, n) = t.raw();
    // SAFETY: a valid template.
    unsafe { C_SetAttributeValue(h, o, p, n) }
}

/// `C_EncryptInit` + `C_Encrypt` (or the decrypt pair) in one go, with room to spare.
pub fn crypt_once(
    h: CK_SESSION_HANDLE,
    m: &mut Mech,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
    encrypt: bool,
) -> Result<Vec<u8>, CK_RV> {
    let mut raw = m.raw();
    let mut data = data.to_vec();
    let mut out = vec![0u8; data.len() + 512];
    let mut n = out.len() as CK_ULONG;
    // SAFETY: valid mechanism and buffers.
    unsafe {
        let rv = if encrypt {
            C_EncryptInit(h, &mut raw, key)
        } else {
            C_DecryptInit(h, &mut raw, key)
        };
        if rv != CKR_OK {
            return Err(rv);
        }
        let (p, len, o) = (data.as_mut_ptr(), data.len() as CK_ULONG, out.as_mut_ptr());
        let rv = if encrypt {
            C_Encrypt(h, p, len, o, &mut n)
        } else {
            C_Decrypt(h, p, len, o, &mut n)
        };
        out.truncate(n as usize);
        rv_result(rv, out)
    }
}

/// One `C_EncryptInit` + `C_Encrypt` (or the decrypt pair) with the caller's mechanism,
/// sizing the output with a length query first (`crypt_once` passes room to spare).
pub fn crypt(
    h: CK_SESSION_HANDLE,
    m: &mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
    encrypt: bool,
) -> Result<Vec<u8>, CK_RV> {
    let mut input = data.to_vec();
    let mut n: CK_ULONG = 0;
    let call = |out: *mut u8, n: &mut CK_ULONG, input: &mut Vec<u8>| {
        // SAFETY: valid buffers of the stated lengths (or a NULL output for the length).
        unsafe {
            if encrypt {
                C_Encrypt(h, input.as_mut_ptr(), input.len() as _, out, n)
            } else {
                C_Decrypt(h, input.as_mut_ptr(), input.len() as _, out, n)
            }
        }
    };
    // SAFETY: valid mechanism.
    let rv = unsafe {
        if encrypt {
            C_EncryptInit(h, m, key)
        } else {
            C_DecryptInit(h, m, key)
        }
    };
    if rv != CKR_OK {
        return Err(rv);
    }
    match call(null_mut(), &mut n, &mut input) {
        CKR_OK => {}
        rv => return Err(rv),
    }
    let mut out = vec![0u8; n as usize];
    match call(out.as_mut_ptr(), &mut n, &mut input) {
        CKR_OK => {}
        rv => return Err(rv),
    }
    out.truncate(n as usize);
    Ok(out)
}
