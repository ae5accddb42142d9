#!/usr/bin/python3
"""PKCS#11 semantics of the built module, checked through Debian's PyKCS11.

    /usr/bin/python3 tests/interop/python_semantics.py /path/to/libferrohsm_pkcs11.so

Covers the rows of shared/ROBUSTNESS.md that a client can see from outside: private object
visibility, the sensitive and sticky attribute rules (and the CKA_VALUE search oracle),
login state rules, R/O sessions, PIN length and lockout (surviving C_Finalize +
C_Initialize, lifted by the SO's C_InitPIN), template errors, operation state, stale
handles, and fork().

Raw CKR values come from PyKCS11's low-level calls (lib.lib.C_*), which return them
as they are. Two things go through ctypes on the module's own function list instead:
C_GetAttributeValue where the per-entry ulValueLen matters (PyKCS11 hides it), and every
call made in a forked child, because PyKCS11 answers CKR_CRYPTOKI_NOT_INITIALIZED by
calling C_Initialize and retrying, which in the child would open the store the parent
holds.

Uses its own temporary store (max_failures = 5), prints one `PASS: check` or
`FAIL: check: expected ..., got ...` line per check, carries on after a failure, and exits
1 if any check failed.
"""

import ctypes
import os
import shutil
import sys
import tempfile
import time
import traceback

# "auto" (the default: through one ferrohsm-server, started on demand) or "embedded".
MODE = os.environ.get("FERROHSM_MODE", "auto")

try:
    import PyKCS11
    from PyKCS11 import (
        CK_FALSE,
        CK_TRUE,
        CKA_CLASS,
        CKA_DECRYPT,
        CKA_EC_PARAMS,
        CKA_ENCRYPT,
        CKA_EXTRACTABLE,
        CKA_KEY_TYPE,
        CKA_LABEL,
        CKA_PRIVATE,
        CKA_SENSITIVE,
        CKA_SIGN,
        CKA_TOKEN,
        CKA_VALUE,
        CKA_VALUE_LEN,
        CKA_VERIFY,
        CKF_RW_SESSION,
        CKF_SERIAL_SESSION,
        CKK_AES,
        CKM_AES_KEY_GEN,
        CKM_EC_KEY_PAIR_GEN,
        CKM_ECDSA_SHA256,
        CKM_RSA_PKCS,
        CKO_DATA,
        CKO_SECRET_KEY,
        CKR,
        CKU_SO,
        CKU_USER,
        PyKCS11Error,
        ckbytelist,
    )
except ImportError:
    print("FAIL: PyKCS11 is not installed: apt-get install -y python3-pykcs11 "
          "(run this with /usr/bin/python3)")
    sys.exit(1)

CK_UNAVAILABLE_INFORMATION = (1 << (8 * ctypes.sizeof(ctypes.c_ulong))) - 1

CKF_TOKEN_INITIALIZED = 0x400
CKF_USER_PIN_INITIALIZED = 0x8
CKF_DUAL_CRYPTO_OPERATIONS = 0x200
CKF_USER_PIN_COUNT_LOW = 0x10000
CKF_USER_PIN_FINAL_TRY = 0x20000
CKF_USER_PIN_LOCKED = 0x40000

CKR_OK = 0x0
CKR_ATTRIBUTE_READ_ONLY = 0x10
CKR_ATTRIBUTE_SENSITIVE = 0x11
CKR_ATTRIBUTE_TYPE_INVALID = 0x12
CKR_FUNCTION_NOT_SUPPORTED = 0x54
CKR_KEY_TYPE_INCONSISTENT = 0x63
CKR_KEY_FUNCTION_NOT_PERMITTED = 0x68
CKR_OPERATION_ACTIVE = 0x90
CKR_OPERATION_NOT_INITIALIZED = 0x91
CKR_PIN_INCORRECT = 0xA0
CKR_PIN_LEN_RANGE = 0xA2
CKR_PIN_LOCKED = 0xA4
CKR_SESSION_HANDLE_INVALID = 0xB3
CKR_SESSION_READ_ONLY = 0xB5
CKR_SESSION_READ_ONLY_EXISTS = 0xB7
CKR_TEMPLATE_INCOMPLETE = 0xD0
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKR_USER_NOT_LOGGED_IN = 0x101
CKR_USER_PIN_NOT_INITIALIZED = 0x102
CKR_USER_ANOTHER_ALREADY_LOGGED_IN = 0x104
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190

UNKNOWN_ATTRIBUTE = 0x7FFF0001  # below CKA_VENDOR_DEFINED and assigned to nothing
P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")

SO_PIN = "semantics-so-1"
USER_PIN = "semantics-user-1"
LOCK_SO_PIN = "lock-so-pin-1"
LOCK_USER_PIN = "lock-user-pin-1"
MAX_FAILURES = 5


def ckr(rv):
    name = CKR.get(rv) if isinstance(rv, int) and rv >= 0 else None
    return "%s (0x%X)" % (name, rv) if name else "0x%X" % rv


class Failure(Exception):
    pass


def expect_rv(what, rv, *expected):
    if rv not in expected:
        raise Failure("%s: expected %s, got %s"
                      % (what, " or ".join(ckr(e) for e in expected), ckr(rv)))
    return rv


def expect(cond, message):
    if not cond:
        raise Failure(message)


PASSED = 0
FAILED = 0


def check(name, fn):
    """Runs one check; prints PASS or FAIL; never stops the run."""
    global PASSED, FAILED
    try:
        fn()
    except Failure as e:
        FAILED += 1
        print("FAIL: %s: %s" % (name, e), flush=True)
    except PyKCS11Error as e:
        FAILED += 1
        print("FAIL: %s: unexpected %s from a setup call (%s)"
              % (name, ckr(e.value), traceback.extract_tb(e.__traceback__)[-2].line
                 if len(traceback.extract_tb(e.__traceback__)) > 1 else ""), flush=True)
    except Exception as e:  # a script bug must show, not pass
        FAILED += 1
        print("FAIL: %s: %s: %s" % (name, type(e).__name__, e), flush=True)
        traceback.print_exc(file=sys.stdout)
    else:
        PASSED += 1
        print("PASS: %s" % name, flush=True)


# ------------------------------------------------------------------ ctypes view


class CK_ATTRIBUTE(ctypes.Structure):
    _fields_ = [("type", ctypes.c_ulong), ("pValue", ctypes.c_void_p),
                ("ulValueLen", ctypes.c_ulong)]


class CK_SESSION_INFO(ctypes.Structure):
    _fields_ = [("slotID", ctypes.c_ulong), ("state", ctypes.c_ulong),
                ("flags", ctypes.c_ulong), ("ulDeviceError", ctypes.c_ulong)]


class CK_VERSION(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


# CK_FUNCTION_LIST up to the entries used here, in the order of the 2.40 header.
_FUNCS = ["C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
          "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo",
          "C_InitToken", "C_InitPIN", "C_SetPIN", "C_OpenSession", "C_CloseSession",
          "C_CloseAllSessions", "C_GetSessionInfo", "C_GetOperationState",
          "C_SetOperationState", "C_Login", "C_Logout", "C_CreateObject", "C_CopyObject",
          "C_DestroyObject", "C_GetObjectSize", "C_GetAttributeValue", "C_SetAttributeValue",
          "C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal", "C_EncryptInit",
          "C_Encrypt", "C_EncryptUpdate", "C_EncryptFinal", "C_DecryptInit", "C_Decrypt",
          "C_DecryptUpdate", "C_DecryptFinal", "C_DigestInit", "C_Digest", "C_DigestUpdate",
          "C_DigestKey", "C_DigestFinal", "C_SignInit", "C_Sign", "C_SignUpdate",
          "C_SignFinal", "C_SignRecoverInit", "C_SignRecover", "C_VerifyInit", "C_Verify",
          "C_VerifyUpdate", "C_VerifyFinal", "C_VerifyRecoverInit", "C_VerifyRecover",
          "C_DigestEncryptUpdate"]


class CK_FUNCTION_LIST(ctypes.Structure):
    _fields_ = [("version", CK_VERSION)] + [(n, ctypes.c_void_p) for n in _FUNCS]


class Raw:
    """The module's function list through ctypes (the same loaded copy PyKCS11 uses)."""

    def __init__(self, path):
        self.dll = ctypes.CDLL(path)
        fl = ctypes.POINTER(CK_FUNCTION_LIST)()
        rv = self.dll.C_GetFunctionList(ctypes.byref(fl))
        if rv != CKR_OK:
            raise RuntimeError("C_GetFunctionList: %s" % ckr(rv))
        f = fl.contents
        U = ctypes.c_ulong
        self.C_GetInfo = ctypes.CFUNCTYPE(U, ctypes.c_void_p)(f.C_GetInfo)
        self.C_GetSessionInfo = ctypes.CFUNCTYPE(U, U, ctypes.POINTER(CK_SESSION_INFO))(
            f.C_GetSessionInfo)
        self.C_Login = ctypes.CFUNCTYPE(U, U, U, ctypes.c_char_p, U)(f.C_Login)
        self.C_GetAttributeValue = ctypes.CFUNCTYPE(
            U, U, U, ctypes.POINTER(CK_ATTRIBUTE), U)(f.C_GetAttributeValue)
        self.C_DigestEncryptUpdate = ctypes.CFUNCTYPE(
            U, U, ctypes.c_void_p, U, ctypes.c_void_p, ctypes.POINTER(U))(
            f.C_DigestEncryptUpdate)
        # Where the module also exports the functions by name, the table must agree
        # (guards the field order above).
        for name in ("C_GetSessionInfo", "C_GetAttributeValue", "C_DigestEncryptUpdate"):
            sym = getattr(self.dll, name, None)
            if sym is not None:
                addr = ctypes.cast(sym, ctypes.c_void_p).value
                if addr != getattr(f, name):
                    raise RuntimeError("function list entry %s does not match the exported "
                                       "symbol: the CK_FUNCTION_LIST layout is wrong" % name)

    def get_attributes(self, h_session, h_object, entries):
        """entries: [(type, buffer_size or None)]. Returns (rv, [(ulValueLen, bytes)])."""
        arr = (CK_ATTRIBUTE * len(entries))()
        bufs = []
        for i, (t, size) in enumerate(entries):
            arr[i].type = t
            if size is None:
                arr[i].pValue = None
                arr[i].ulValueLen = 0
                bufs.append(None)
            else:
                b = ctypes.create_string_buffer(size)
                bufs.append(b)
                arr[i].pValue = ctypes.cast(b, ctypes.c_void_p)
                arr[i].ulValueLen = size
        rv = self.C_GetAttributeValue(h_session, h_object, arr, len(entries))
        out = []
        for i, b in enumerate(bufs):
            n = arr[i].ulValueLen
            data = b.raw[:n] if b is not None and n != CK_UNAVAILABLE_INFORMATION else None
            out.append((n, data))
        return rv, out


# ------------------------------------------------------------------ helpers


def hs(session):
    """The integer handle of a PyKCS11 session."""
    return session.session.value()


def rv_of(fn, *args):
    try:
        fn(*args)
        return CKR_OK
    except PyKCS11Error as e:
        return e.value


def login_rv(session, pin, user=CKU_USER):
    return session.lib.C_Login(session.session, user, ckbytelist(pin))


def logout_quiet(session):
    session.lib.C_Logout(session.session)


def find(session, template):
    return session.findObjects(template)


def create_rv(session, template):
    """C_CreateObject through the low level; returns (rv, handle)."""
    t = session._template2ckattrlist(template)
    h = PyKCS11.LowLevel.CK_OBJECT_HANDLE()
    rv = session.lib.C_CreateObject(session.session, t, h)
    return rv, h


def token_flags(lib, slot):
    return lib.getTokenInfo(slot).flags


def main():
    if len(sys.argv) != 2:
        print("usage: %s /path/to/libferrohsm_pkcs11.so" % sys.argv[0])
        return 2
    module = os.path.abspath(sys.argv[1])
    if not os.path.isfile(module):
        print("FAIL: module %s does not exist" % module)
        return 1

    work = tempfile.mkdtemp(prefix="ferrohsm-semantics.")
    os.chmod(work, 0o700)
    conf = os.path.join(work, "ferrohsm.toml")
    with open(conf, "w") as f:
        f.write('mode = "%s"\nstore = "%s/store"\nlog_level = "error"\n'
                "[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n"
                "[pin_policy]\nmin_len = 4\nmax_len = 64\nmax_failures = %d\n"
                "[server]\nidle_exit_secs = 2\n"
                % (MODE, work, MAX_FAILURES))
    os.environ["FERROHSM_CONF"] = conf
    try:
        return run(module)
    except Exception as e:  # loading or C_Initialize failed: nothing else can run
        print("FAIL: loading %s: %s: %s" % (module, type(e).__name__, e))
        traceback.print_exc(file=sys.stdout)
        return 1
    finally:
        sys.stdout.flush()
        shutil.rmtree(work, ignore_errors=True)


def run(module):
    lib = PyKCS11.PyKCS11Lib()
    lib.load(module)  # C_GetFunctionList + C_Initialize
    raw = Raw(module)
    ro = CKF_SERIAL_SESSION
    rw = CKF_SERIAL_SESSION | CKF_RW_SESSION
    st = {}

    # ---------------------------------------------------------------- token setup
    def setup_token():
        slots = lib.getSlotList(tokenPresent=True)
        expect(len(slots) == 1, "an empty store shows %d slots, expected 1" % len(slots))
        flags = token_flags(lib, slots[0])
        expect(not flags & CKF_TOKEN_INITIALIZED,
               "the only slot's token is already initialised (flags 0x%x)" % flags)
        lib.initToken(slots[0], SO_PIN, "semantics")
        st["slot"] = slots[0]
        after = lib.getSlotList(tokenPresent=True)
        expect(len(after) == 2, "after C_InitToken %d slots, expected 2 (token + spare)"
               % len(after))
        s = lib.openSession(st["slot"], rw)
        s.login(SO_PIN, CKU_SO)
        s.initPin(USER_PIN)
        s.logout()
        s.closeSession()
        flags = token_flags(lib, st["slot"])
        expect(flags & CKF_TOKEN_INITIALIZED and flags & CKF_USER_PIN_INITIALIZED,
               "token flags 0x%x lack TOKEN_INITIALIZED / USER_PIN_INITIALIZED" % flags)

    check("setup: C_InitToken on the only slot, SO C_InitPIN; a spare slot appears",
          setup_token)
    if "slot" not in st:
        print("ABORT: no token to test: the remaining checks cannot run")
        return 1
    slot = st["slot"]

    def token_flags_honest():
        flags = token_flags(lib, slot)
        s = lib.openSession(slot, ro)
        try:
            n = ctypes.c_ulong(0)
            rv = raw.C_DigestEncryptUpdate(hs(s), None, 0, None, ctypes.byref(n))
        finally:
            s.closeSession()
        if flags & CKF_DUAL_CRYPTO_OPERATIONS:
            expect(rv != CKR_FUNCTION_NOT_SUPPORTED,
                   "the token sets CKF_DUAL_CRYPTO_OPERATIONS (flags 0x%x) but "
                   "C_DigestEncryptUpdate answers %s" % (flags, ckr(rv)))

    check("token flags: CKF_DUAL_CRYPTO_OPERATIONS only if the dual functions exist",
          token_flags_honest)

    # ---------------------------------------------------------------- visibility
    def make_objects():
        s = lib.openSession(slot, rw)
        s.login(USER_PIN)
        s.createObject([(CKA_CLASS, CKO_DATA), (CKA_TOKEN, True), (CKA_PRIVATE, True),
                        (CKA_LABEL, "sem-private"), (CKA_VALUE, b"private bytes")])
        s.createObject([(CKA_CLASS, CKO_DATA), (CKA_TOKEN, True), (CKA_PRIVATE, False),
                        (CKA_LABEL, "sem-public"), (CKA_VALUE, b"public bytes")])
        s.logout()
        s.closeSession()

    check("setup: user creates a private and a public token data object", make_objects)

    def private_invisible():
        s = lib.openSession(slot, ro)
        try:
            expect(find(s, [(CKA_LABEL, "sem-private")]) == [],
                   "C_FindObjects by label found the private object before login")
            every = find(s, [])
            privs = [o for o in every if s.getAttributeValue(o, [CKA_PRIVATE])[0]]
            expect(privs == [], "%d private objects listed before login" % len(privs))
            expect(len(find(s, [(CKA_LABEL, "sem-public")])) == 1,
                   "the public object is not visible before login")
        finally:
            s.closeSession()

    check("private objects are invisible before login (public ones visible)",
          private_invisible)

    def private_visible():
        s = lib.openSession(slot, ro)
        try:
            s.login(USER_PIN)
            found = find(s, [(CKA_LABEL, "sem-private")])
            expect(len(found) == 1, "found %d private objects after login, expected 1"
                   % len(found))
            v = bytes(s.getAttributeValue(found[0], [CKA_VALUE], True)[0])
            expect(v == b"private bytes", "private object's value reads back as %r" % v)
        finally:
            logout_quiet(s)
            s.closeSession()

    check("private objects are visible (and readable) after user login", private_visible)

    def so_sees_no_private():
        s = lib.openSession(slot, rw)
        try:
            s.login(SO_PIN, CKU_SO)
            expect(find(s, [(CKA_LABEL, "sem-private")]) == [],
                   "the SO found the user's private object")
        finally:
            logout_quiet(s)
            s.closeSession()

    check("the SO does not see private objects", so_sees_no_private)

    # ---------------------------------------------------------------- sensitive rules
    # One RW session with the user logged in for the attribute checks.
    us = lib.openSession(slot, rw)
    us.login(USER_PIN)
    known_sensitive = bytes(range(32))
    known_plain = bytes(range(100, 132))

    def gen_sensitive():
        st["sens"] = us.generateKey(
            [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_VALUE_LEN, 32),
             (CKA_TOKEN, True), (CKA_PRIVATE, True), (CKA_SENSITIVE, True),
             (CKA_EXTRACTABLE, False), (CKA_ENCRYPT, True), (CKA_DECRYPT, True),
             (CKA_LABEL, "sem-sens")],
            PyKCS11.Mechanism(CKM_AES_KEY_GEN))

    check("setup: generate a sensitive, non-extractable AES-256 token key", gen_sensitive)

    def sensitive_value():
        h = st["sens"].value()
        # With buffers: CKA_VALUE refused, the other entries of the same call filled.
        rv, out = raw.get_attributes(hs(us), h, [(CKA_VALUE, 64), (CKA_VALUE_LEN, 8),
                                                 (CKA_LABEL, 64)])
        expect_rv("C_GetAttributeValue(CKA_VALUE, CKA_VALUE_LEN, CKA_LABEL)", rv,
                  CKR_ATTRIBUTE_SENSITIVE)
        expect(out[0][0] == CK_UNAVAILABLE_INFORMATION,
               "CKA_VALUE length is %d, expected CK_UNAVAILABLE_INFORMATION" % out[0][0])
        expect(out[1][0] == ctypes.sizeof(ctypes.c_ulong)
               and int.from_bytes(out[1][1], sys.byteorder) == 32,
               "CKA_VALUE_LEN in the same call: %r, expected 32" % (out[1],))
        expect(out[2][1] == b"sem-sens",
               "CKA_LABEL in the same call: %r, expected b'sem-sens'" % (out[2],))
        # Length query (NULL pValue): the same answer.
        rv, out = raw.get_attributes(hs(us), h, [(CKA_VALUE, None), (CKA_LABEL, None)])
        expect_rv("C_GetAttributeValue(CKA_VALUE=NULL, CKA_LABEL=NULL)", rv,
                  CKR_ATTRIBUTE_SENSITIVE)
        expect(out[0][0] == CK_UNAVAILABLE_INFORMATION and out[1][0] == 8,
               "length query gave %r" % (out,))

    check("reading CKA_VALUE of a sensitive key: CKR_ATTRIBUTE_SENSITIVE, "
          "length CK_UNAVAILABLE_INFORMATION, other entries still filled", sensitive_value)

    def search_by_value():
        rv, h = create_rv(us, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES),
                               (CKA_TOKEN, False), (CKA_SENSITIVE, True),
                               (CKA_EXTRACTABLE, False), (CKA_VALUE, known_sensitive),
                               (CKA_LABEL, "sem-sens-known")])
        expect_rv("C_CreateObject(sensitive AES key with a known value)", rv, CKR_OK)
        expect(len(find(us, [(CKA_LABEL, "sem-sens-known")])) == 1,
               "the imported sensitive key cannot be found by label")
        hits = find(us, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_VALUE, known_sensitive)])
        expect(hits == [], "C_FindObjects matched a sensitive key by its CKA_VALUE "
               "(%d hits): an equality oracle" % len(hits))
        hits = find(us, [(CKA_VALUE, known_sensitive)])
        expect(hits == [], "C_FindObjects({CKA_VALUE}) alone matched the sensitive key")

    check("searching by the CKA_VALUE of a sensitive key finds nothing", search_by_value)

    def search_by_value_plain():
        rv, h = create_rv(us, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES),
                               (CKA_TOKEN, False), (CKA_SENSITIVE, False),
                               (CKA_EXTRACTABLE, True), (CKA_VALUE, known_plain),
                               (CKA_LABEL, "sem-plain-known")])
        expect_rv("C_CreateObject(non-sensitive AES key)", rv, CKR_OK)
        st["plain"] = h
        hits = find(us, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_VALUE, known_plain)])
        expect(len(hits) == 1, "a non-sensitive key is not found by its CKA_VALUE "
               "(%d hits)" % len(hits))

    check("control: a non-sensitive key is found by its CKA_VALUE", search_by_value_plain)

    # ---------------------------------------------------------------- sticky attributes
    def sticky_sensitive():
        rv = rv_of(us.setAttributeValue, st["sens"], [(CKA_SENSITIVE, CK_FALSE)])
        expect_rv("C_SetAttributeValue(CKA_SENSITIVE=FALSE) on a sensitive key", rv,
                  CKR_ATTRIBUTE_READ_ONLY)
        expect(us.getAttributeValue(st["sens"], [CKA_SENSITIVE])[0] is True,
               "CKA_SENSITIVE is no longer TRUE")

    check("CKA_SENSITIVE TRUE -> FALSE is refused with CKR_ATTRIBUTE_READ_ONLY",
          sticky_sensitive)

    def sticky_extractable():
        rv = rv_of(us.setAttributeValue, st["sens"], [(CKA_EXTRACTABLE, CK_TRUE)])
        expect_rv("C_SetAttributeValue(CKA_EXTRACTABLE=TRUE) on a non-extractable key", rv,
                  CKR_ATTRIBUTE_READ_ONLY)
        expect(us.getAttributeValue(st["sens"], [CKA_EXTRACTABLE])[0] is False,
               "CKA_EXTRACTABLE is no longer FALSE")

    check("CKA_EXTRACTABLE FALSE -> TRUE is refused with CKR_ATTRIBUTE_READ_ONLY",
          sticky_extractable)

    def sticky_allowed_direction():
        h = st["plain"]
        rv = rv_of(us.setAttributeValue, h, [(CKA_SENSITIVE, CK_TRUE)])
        expect_rv("C_SetAttributeValue(CKA_SENSITIVE=TRUE)", rv, CKR_OK)
        rv = rv_of(us.setAttributeValue, h, [(CKA_EXTRACTABLE, CK_FALSE)])
        expect_rv("C_SetAttributeValue(CKA_EXTRACTABLE=FALSE)", rv, CKR_OK)
        rv, out = raw.get_attributes(hs(us), h.value(), [(CKA_VALUE, 64)])
        expect_rv("C_GetAttributeValue(CKA_VALUE) after it became sensitive", rv,
                  CKR_ATTRIBUTE_SENSITIVE)
        hits = find(us, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_VALUE, known_plain)])
        expect(hits == [], "the key, now sensitive, is still found by its CKA_VALUE")

    check("CKA_SENSITIVE FALSE -> TRUE and CKA_EXTRACTABLE TRUE -> FALSE are allowed and "
          "take effect", sticky_allowed_direction)

    # ---------------------------------------------------------------- templates
    def unknown_attribute():
        rv, _ = create_rv(us, [(CKA_CLASS, CKO_DATA), (CKA_TOKEN, False),
                               (CKA_LABEL, "sem-unknown"), (UNKNOWN_ATTRIBUTE, b"x")])
        expect_rv("C_CreateObject with attribute type 0x%X" % UNKNOWN_ATTRIBUTE, rv,
                  CKR_ATTRIBUTE_TYPE_INVALID)
        pub = find(us, [(CKA_LABEL, "sem-public")])[0]
        rv, out = raw.get_attributes(hs(us), pub.value(), [(UNKNOWN_ATTRIBUTE, 16),
                                                           (CKA_LABEL, 64)])
        expect_rv("C_GetAttributeValue of attribute type 0x%X" % UNKNOWN_ATTRIBUTE, rv,
                  CKR_ATTRIBUTE_TYPE_INVALID)
        expect(out[0][0] == CK_UNAVAILABLE_INFORMATION and out[1][1] == b"sem-public",
               "entries after C_GetAttributeValue: %r" % (out,))

    check("unknown attribute type: C_CreateObject and C_GetAttributeValue give "
          "CKR_ATTRIBUTE_TYPE_INVALID", unknown_attribute)

    def missing_class():
        rv, _ = create_rv(us, [(CKA_KEY_TYPE, CKK_AES), (CKA_TOKEN, False),
                               (CKA_VALUE, bytes(16))])
        expect_rv("C_CreateObject without CKA_CLASS", rv, CKR_TEMPLATE_INCOMPLETE)

    check("missing CKA_CLASS gives CKR_TEMPLATE_INCOMPLETE", missing_class)

    # ---------------------------------------------------------------- operations
    def gen_ec():
        pub, priv = us.generateKeyPair(
            [(CKA_TOKEN, False), (CKA_EC_PARAMS, P256_PARAMS), (CKA_VERIFY, True),
             (CKA_LABEL, "sem-ec")],
            [(CKA_TOKEN, False), (CKA_PRIVATE, True), (CKA_SENSITIVE, True),
             (CKA_SIGN, True), (CKA_LABEL, "sem-ec")],
            PyKCS11.Mechanism(CKM_EC_KEY_PAIR_GEN))
        st["ec_pub"], st["ec_priv"] = pub, priv

    check("setup: generate an EC P-256 session key pair", gen_ec)

    def sign_without_init():
        sig = ckbytelist()
        rv = us.lib.C_Sign(us.session, ckbytelist(b"data"), sig)
        expect_rv("C_Sign without C_SignInit", rv, CKR_OPERATION_NOT_INITIALIZED)

    check("C_Sign without C_SignInit gives CKR_OPERATION_NOT_INITIALIZED", sign_without_init)

    def second_sign_init():
        m = PyKCS11.Mechanism(CKM_ECDSA_SHA256).to_native()
        rv = us.lib.C_SignInit(us.session, m, st["ec_priv"])
        expect_rv("first C_SignInit", rv, CKR_OK)
        rv = us.lib.C_SignInit(us.session, m, st["ec_priv"])
        expect_rv("second C_SignInit while one is active", rv, CKR_OPERATION_ACTIVE)
        # The first operation is still there and produces a good signature.
        data = ckbytelist(b"operation state")
        sig = ckbytelist()
        rv = us.lib.C_Sign(us.session, data, sig)  # NULL buffer: length only
        expect_rv("C_Sign (length query) after the refused C_SignInit", rv, CKR_OK)
        rv = us.lib.C_Sign(us.session, data, sig)
        expect_rv("C_Sign after the refused C_SignInit", rv, CKR_OK)
        expect(len(sig) == 64, "ECDSA P-256 signature of %d bytes" % len(sig))
        ok = us.verify(st["ec_pub"], b"operation state", bytes(sig),
                       PyKCS11.Mechanism(CKM_ECDSA_SHA256))
        expect(ok, "the signature does not verify")

    check("a second C_SignInit gives CKR_OPERATION_ACTIVE; the first operation completes",
          second_sign_init)

    def wrong_key_type():
        m = PyKCS11.Mechanism(CKM_RSA_PKCS).to_native()
        rv = us.lib.C_SignInit(us.session, m, st["ec_priv"])
        if rv == CKR_OK:  # leave no operation behind
            us.lib.C_Sign(us.session, ckbytelist(b"x"), ckbytelist())
        expect_rv("C_SignInit(CKM_RSA_PKCS, EC private key)", rv, CKR_KEY_TYPE_INCONSISTENT)

    check("C_SignInit with an RSA mechanism on an EC key gives CKR_KEY_TYPE_INCONSISTENT",
          wrong_key_type)

    def client_templates():
        # PyKCS11's own generate example (with a 2048-bit modulus): the public half
        # encrypts and wraps, the private half decrypts and unwraps.
        pub, priv = us.generateKeyPair(
            [(CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (CKA_TOKEN, False), (CKA_PRIVATE, False),
             (PyKCS11.CKA_MODULUS_BITS, 2048), (PyKCS11.CKA_PUBLIC_EXPONENT, (1, 0, 1)),
             (CKA_ENCRYPT, True), (CKA_VERIFY, True), (PyKCS11.CKA_VERIFY_RECOVER, True),
             (PyKCS11.CKA_WRAP, True), (CKA_LABEL, "sem-rsa"), (PyKCS11.CKA_ID, (0x22,))],
            [(CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (CKA_TOKEN, False), (CKA_PRIVATE, True),
             (CKA_DECRYPT, True), (CKA_SIGN, True), (PyKCS11.CKA_SIGN_RECOVER, True),
             (PyKCS11.CKA_UNWRAP, True), (PyKCS11.CKA_ID, (0x22,))],
            PyKCS11.MechanismRSAGENERATEKEYPAIR)
        for obj, attr in ((pub, PyKCS11.CKA_WRAP), (pub, CKA_ENCRYPT),
                          (priv, CKA_DECRYPT), (priv, PyKCS11.CKA_UNWRAP)):
            got = us.getAttributeValue(obj, [attr])[0]
            expect(got in (True, 1), "%s is %r" % (PyKCS11.CKA[attr], got))
        oaep = PyKCS11.RSAOAEPMechanism(PyKCS11.CKM_SHA256, PyKCS11.CKG_MGF1_SHA256)
        ct = us.encrypt(pub, b"client template", oaep)
        expect(bytes(us.decrypt(priv, ct, oaep)) == b"client template",
               "the pair does not decrypt what it encrypted")
        # An AES key with all four usages, generated as most tutorials do.
        k = us.generateKey([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES),
                            (CKA_VALUE_LEN, 32), (CKA_TOKEN, False), (CKA_ENCRYPT, True),
                            (CKA_DECRYPT, True), (PyKCS11.CKA_WRAP, True),
                            (PyKCS11.CKA_UNWRAP, True)],
                           PyKCS11.Mechanism(CKM_AES_KEY_GEN))
        got = us.getAttributeValue(k, [CKA_ENCRYPT, CKA_DECRYPT, PyKCS11.CKA_WRAP,
                                       PyKCS11.CKA_UNWRAP])
        expect(all(v in (True, 1) for v in got), "AES usages read back as %r" % (got,))
        # It wraps an extractable key and unwraps it again.
        inner = us.generateKey([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES),
                                (CKA_VALUE_LEN, 16), (CKA_TOKEN, False),
                                (CKA_EXTRACTABLE, True)],
                               PyKCS11.Mechanism(CKM_AES_KEY_GEN))
        kw = PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_WRAP)
        blob = us.wrapKey(k, inner, kw)
        expect(len(blob) == 24, "RFC 3394 blob of %d bytes" % len(blob))
        back = us.unwrapKey(k, blob, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES),
                                      (CKA_TOKEN, False), (CKA_ENCRYPT, True)], kw)
        expect(back is not None, "no key unwrapped")
        for obj in (pub, priv, k, inner, back):
            us.destroyObject(obj)

    check("the templates clients send: PyKCS11's RSA pair (wrap + decrypt across the "
          "halves) and an AES key with encrypt/decrypt/wrap/unwrap are accepted and work",
          client_templates)

    def trusted_roles():
        # The SO's trusted wrapping key W wraps only; the user wraps a key that may leave
        # only under a trusted key, then tries to turn W into a key that opens the blob.
        us.logout()
        so = lib.openSession(slot, rw)
        try:
            so.login(SO_PIN, CKU_SO)
            w = so.createObject([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES),
                                 (CKA_VALUE, tuple(range(32))), (CKA_TOKEN, True),
                                 (CKA_PRIVATE, False), (PyKCS11.CKA_TRUSTED, True),
                                 (PyKCS11.CKA_WRAP, True), (CKA_LABEL, "sem-trusted-w")])
            so.logout()
        finally:
            so.closeSession()
        us.login(USER_PIN)
        t = us.createObject([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES),
                             (CKA_VALUE, tuple(range(100, 132))), (CKA_TOKEN, False),
                             (CKA_SENSITIVE, True), (CKA_EXTRACTABLE, True),
                             (PyKCS11.CKA_WRAP_WITH_TRUSTED, True)])
        kw = PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_WRAP)
        blob = bytes(us.wrapKey(w, t, kw))
        expect(len(blob) == 40, "RFC 3394 blob of %d bytes" % len(blob))
        expect_rv("C_SetAttributeValue(W, {WRAP=FALSE, UNWRAP=TRUE})",
                  rv_of(us.setAttributeValue, w,
                        [(PyKCS11.CKA_WRAP, False), (PyKCS11.CKA_UNWRAP, True)]),
                  CKR_ATTRIBUTE_READ_ONLY)
        expect_rv("C_SetAttributeValue(W, {DECRYPT=TRUE})",
                  rv_of(us.setAttributeValue, w, [(CKA_DECRYPT, True)]),
                  CKR_ATTRIBUTE_READ_ONLY)
        expect_rv("C_UnwrapKey under W as a non-sensitive, extractable key",
                  rv_of(us.unwrapKey, w, blob,
                        [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES),
                         (CKA_TOKEN, False), (CKA_SENSITIVE, False),
                         (CKA_EXTRACTABLE, True)], kw),
                  CKR_KEY_FUNCTION_NOT_PERMITTED)
        expect_rv("C_Decrypt(CKM_AES_ECB) of the blob with W",
                  rv_of(us.decrypt, w, blob[:32], PyKCS11.Mechanism(PyKCS11.CKM_AES_ECB)),
                  CKR_KEY_FUNCTION_NOT_PERMITTED)
        rv, _ = raw.get_attributes(hs(us), t.value(), [(CKA_VALUE, 64)])
        expect_rv("reading the wrapped key's CKA_VALUE", rv, CKR_ATTRIBUTE_SENSITIVE)
        us.destroyObject(t)
        us.destroyObject(w)

    check("a trusted wrapping key cannot be turned into one that opens its blobs "
          "(roles read-only for everyone, never decrypts)", trusted_roles)

    # ---------------------------------------------------------------- login rules
    def login_twice():
        s = lib.openSession(slot, rw)
        try:
            expect_rv("C_Login(USER) while the user is logged in (other session)",
                      login_rv(s, USER_PIN), CKR_USER_ALREADY_LOGGED_IN)
        finally:
            s.closeSession()
        expect_rv("C_Login(USER) again in the same session", login_rv(us, USER_PIN),
                  CKR_USER_ALREADY_LOGGED_IN)

    check("logging in twice gives CKR_USER_ALREADY_LOGGED_IN", login_twice)

    def so_while_user():
        expect_rv("C_Login(SO) while the user is logged in", login_rv(us, SO_PIN, CKU_SO),
                  CKR_USER_ANOTHER_ALREADY_LOGGED_IN)

    check("SO login while the user is logged in gives CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
          so_while_user)

    def ro_session_write():
        s = lib.openSession(slot, ro)  # the user is logged in (through `us`)
        try:
            rv, _ = create_rv(s, [(CKA_CLASS, CKO_DATA), (CKA_TOKEN, True),
                                  (CKA_PRIVATE, False), (CKA_LABEL, "sem-ro")])
            expect_rv("C_CreateObject(token object) in an R/O session", rv,
                      CKR_SESSION_READ_ONLY)
            rv = rv_of(s.generateKey,
                       [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES),
                        (CKA_VALUE_LEN, 16), (CKA_TOKEN, True)],
                       PyKCS11.Mechanism(CKM_AES_KEY_GEN))
            expect_rv("C_GenerateKey(token key) in an R/O session", rv, CKR_SESSION_READ_ONLY)
            pub = find(s, [(CKA_LABEL, "sem-public")])[0]
            rv = rv_of(s.setAttributeValue, pub, [(CKA_LABEL, "renamed")])
            expect_rv("C_SetAttributeValue(token object) in an R/O session", rv,
                      CKR_SESSION_READ_ONLY)
            rv = rv_of(s.destroyObject, pub)
            expect_rv("C_DestroyObject(token object) in an R/O session", rv,
                      CKR_SESSION_READ_ONLY)
            # Session objects are allowed in R/O sessions.
            rv, _ = create_rv(s, [(CKA_CLASS, CKO_DATA), (CKA_TOKEN, False),
                                  (CKA_PRIVATE, False), (CKA_LABEL, "sem-ro-session")])
            expect_rv("control: C_CreateObject(session object) in an R/O session", rv,
                      CKR_OK)
        finally:
            s.closeSession()

    check("writing token objects in an R/O session gives CKR_SESSION_READ_ONLY",
          ro_session_write)

    def private_key_after_logout():
        # A token EC key made while logged in, used after logout.
        s = lib.openSession(slot, rw)
        try:
            pub, priv = us.generateKeyPair(
                [(CKA_TOKEN, True), (CKA_EC_PARAMS, P256_PARAMS), (CKA_VERIFY, True),
                 (CKA_LABEL, "sem-ec-token")],
                [(CKA_TOKEN, True), (CKA_PRIVATE, True), (CKA_SENSITIVE, True),
                 (CKA_SIGN, True), (CKA_LABEL, "sem-ec-token")],
                PyKCS11.Mechanism(CKM_EC_KEY_PAIR_GEN))
            us.logout()
            m = PyKCS11.Mechanism(CKM_ECDSA_SHA256).to_native()
            rv = s.lib.C_SignInit(s.session, m, priv)
            expect_rv("C_SignInit with a private token key after logout", rv,
                      CKR_USER_NOT_LOGGED_IN)
            rv, _ = create_rv(s, [(CKA_CLASS, CKO_DATA), (CKA_TOKEN, True),
                                  (CKA_PRIVATE, True), (CKA_LABEL, "sem-nologin")])
            expect_rv("C_CreateObject(private token object) without login", rv,
                      CKR_USER_NOT_LOGGED_IN)
            rv, _ = create_rv(s, [(CKA_CLASS, CKO_DATA), (CKA_TOKEN, False),
                                  (CKA_PRIVATE, True), (CKA_LABEL, "sem-nologin-s")])
            expect_rv("C_CreateObject(private session object) without login", rv,
                      CKR_USER_NOT_LOGGED_IN)
        finally:
            s.closeSession()

    check("without login: creating a private object gives CKR_USER_NOT_LOGGED_IN "
          "(and a private key cannot be used)", private_key_after_logout)
    logout_quiet(us)

    def so_with_ro_session():
        r = lib.openSession(slot, ro)
        w = lib.openSession(slot, rw)
        try:
            expect_rv("C_Login(SO) while an R/O session is open", login_rv(w, SO_PIN, CKU_SO),
                      CKR_SESSION_READ_ONLY_EXISTS)
            r.closeSession()
            r = None
            expect_rv("control: C_Login(SO) once the R/O session is closed",
                      login_rv(w, SO_PIN, CKU_SO), CKR_OK)
            expect_rv("C_Login(USER) while the SO is logged in", login_rv(w, USER_PIN),
                      CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
        finally:
            logout_quiet(w)
            w.closeSession()
            if r is not None:
                r.closeSession()

    check("SO login while an R/O session exists gives CKR_SESSION_READ_ONLY_EXISTS",
          so_with_ro_session)

    def pin_length():
        s = lib.openSession(slot, rw)
        try:
            s.login(SO_PIN, CKU_SO)
            for pin in ("12", "x" * 65):
                rv = s.lib.C_InitPIN(s.session, ckbytelist(pin))
                expect_rv("SO C_InitPIN with a %d-character PIN (policy 4..64)" % len(pin),
                          rv, CKR_PIN_LEN_RANGE)
            s.logout()
            s.login(USER_PIN)
            for pin in ("12", "x" * 65):
                rv = s.lib.C_SetPIN(s.session, ckbytelist(USER_PIN), ckbytelist(pin))
                expect_rv("C_SetPIN to a %d-character PIN (policy 4..64)" % len(pin),
                          rv, CKR_PIN_LEN_RANGE)
            s.logout()
            expect_rv("control: the user PIN is unchanged", login_rv(s, USER_PIN), CKR_OK)
        finally:
            logout_quiet(s)
            s.closeSession()

    check("a PIN too short or too long gives CKR_PIN_LEN_RANGE (C_InitPIN, C_SetPIN)",
          pin_length)

    # ---------------------------------------------------------------- handles
    def stale_handle():
        s = lib.openSession(slot, ro)
        h = hs(s)
        s.closeSession()
        info = CK_SESSION_INFO()
        expect_rv("C_GetSessionInfo on a closed session", raw.C_GetSessionInfo(h, info),
                  CKR_SESSION_HANDLE_INVALID)
        expect_rv("C_Login on a closed session", raw.C_Login(h, CKU_USER, b"1234", 4),
                  CKR_SESSION_HANDLE_INVALID)
        expect_rv("C_GetSessionInfo on handle 0", raw.C_GetSessionInfo(0, info),
                  CKR_SESSION_HANDLE_INVALID)
        expect_rv("C_GetSessionInfo on handle 0xdeadbeef",
                  raw.C_GetSessionInfo(0xDEADBEEF, info), CKR_SESSION_HANDLE_INVALID)

    check("a stale (closed), zero or made-up session handle gives "
          "CKR_SESSION_HANDLE_INVALID", stale_handle)

    # ---------------------------------------------------------------- PIN lockout
    def lockout():
        spare = [x for x in lib.getSlotList(tokenPresent=True)
                 if not token_flags(lib, x) & CKF_TOKEN_INITIALIZED]
        expect(len(spare) == 1, "%d spare slots, expected 1" % len(spare))
        lslot = spare[0]
        st["lslot"] = lslot
        lib.initToken(lslot, LOCK_SO_PIN, "semantics-lock")
        s = lib.openSession(lslot, rw)
        expect_rv("C_Login(USER) before the user PIN is set", login_rv(s, LOCK_USER_PIN),
                  CKR_USER_PIN_NOT_INITIALIZED)
        s.login(LOCK_SO_PIN, CKU_SO)
        s.initPin(LOCK_USER_PIN)
        s.logout()
        for i in range(1, MAX_FAILURES):
            expect_rv("wrong PIN, attempt %d of %d" % (i, MAX_FAILURES),
                      login_rv(s, "wrong-pin-%d" % i), CKR_PIN_INCORRECT)
            flags = token_flags(lib, lslot)
            expect(flags & CKF_USER_PIN_COUNT_LOW,
                   "after %d failures CKF_USER_PIN_COUNT_LOW is not set (flags 0x%x)"
                   % (i, flags))
            expect(not flags & CKF_USER_PIN_LOCKED,
                   "locked after only %d failures (flags 0x%x)" % (i, flags))
        flags = token_flags(lib, lslot)
        expect(flags & CKF_USER_PIN_FINAL_TRY,
               "one try left but CKF_USER_PIN_FINAL_TRY is not set (flags 0x%x)" % flags)
        expect_rv("wrong PIN, attempt %d of %d" % (MAX_FAILURES, MAX_FAILURES),
                  login_rv(s, "wrong-pin-last"), CKR_PIN_INCORRECT, CKR_PIN_LOCKED)
        flags = token_flags(lib, lslot)
        expect(flags & CKF_USER_PIN_LOCKED,
               "after %d failures CKF_USER_PIN_LOCKED is not set (flags 0x%x)"
               % (MAX_FAILURES, flags))
        expect_rv("the right PIN once locked", login_rv(s, LOCK_USER_PIN), CKR_PIN_LOCKED)
        s.closeSession()

    check("wrong PIN gives CKR_PIN_INCORRECT (COUNT_LOW, FINAL_TRY); after max_failures "
          "CKR_PIN_LOCKED even with the right PIN, CKF_USER_PIN_LOCKED set", lockout)

    def lockout_survives_restart():
        lslot = st["lslot"]
        expect_rv("C_CloseAllSessions", lib.lib.C_CloseAllSessions(lslot), CKR_OK)
        lib.lib.C_CloseAllSessions(slot)
        expect_rv("C_Finalize", lib.lib.C_Finalize(), CKR_OK)
        expect_rv("C_Initialize", lib.lib.C_Initialize(), CKR_OK)
        flags = token_flags(lib, lslot)
        expect(flags & CKF_USER_PIN_LOCKED,
               "after C_Finalize + C_Initialize CKF_USER_PIN_LOCKED is gone (flags 0x%x)"
               % flags)
        s = lib.openSession(lslot, rw)
        try:
            expect_rv("the right PIN after the restart", login_rv(s, LOCK_USER_PIN),
                      CKR_PIN_LOCKED)
        finally:
            s.closeSession()

    check("the lockout survives C_Finalize + C_Initialize", lockout_survives_restart)

    def so_unlocks():
        lslot = st["lslot"]
        s = lib.openSession(lslot, rw)
        try:
            s.login(LOCK_SO_PIN, CKU_SO)
            expect_rv("SO C_InitPIN on the locked token",
                      s.lib.C_InitPIN(s.session, ckbytelist(LOCK_USER_PIN + "-new")), CKR_OK)
            s.logout()
            flags = token_flags(lib, lslot)
            expect(not flags & (CKF_USER_PIN_LOCKED | CKF_USER_PIN_FINAL_TRY
                                | CKF_USER_PIN_COUNT_LOW),
                   "after C_InitPIN the PIN flags are still set (flags 0x%x)" % flags)
            expect_rv("the old PIN after C_InitPIN", login_rv(s, LOCK_USER_PIN),
                      CKR_PIN_INCORRECT)
            expect_rv("the new PIN after C_InitPIN", login_rv(s, LOCK_USER_PIN + "-new"),
                      CKR_OK)
        finally:
            logout_quiet(s)
            s.closeSession()

    check("the SO's C_InitPIN lifts the lockout (new PIN works, flags cleared)", so_unlocks)

    # ---------------------------------------------------------------- fork
    def fork_child():
        s = lib.openSession(slot, rw)
        s.login(USER_PIN)
        h = hs(s)
        sys.stdout.flush()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: raw calls only, never C_Initialize, then _exit
            os.close(r)
            info = CK_SESSION_INFO()
            # Only calls that cannot write: should the module not notice the fork, the
            # child must still not touch the store the parent holds.
            results = [raw.C_GetSessionInfo(h, info), raw.C_GetInfo(None)]
            os.write(w, (",".join(str(x) for x in results)).encode())
            os._exit(0)
        os.close(w)
        deadline = time.time() + 20
        status = None
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(r)
            raise Failure("the forked child hung calling into the module (killed after 20 s)")
        got = os.read(r, 200).decode()
        os.close(r)
        expect(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
               "the child died: status %r, output %r" % (status, got))
        rvs = [int(x) for x in got.split(",")]
        names = ["C_GetSessionInfo(inherited session)", "C_GetInfo"]
        expect(len(rvs) == len(names), "the child reported %r" % got)
        for name, rv in zip(names, rvs):
            expect_rv("in the forked child, " + name, rv, CKR_CRYPTOKI_NOT_INITIALIZED)
        # The parent is unaffected: its session, login and keys still work.
        info = s.getSessionInfo()
        expect(info.slotID == slot, "parent's session info after fork: %r" % info)
        expect(len(find(s, [(CKA_LABEL, "sem-private")])) == 1,
               "the parent no longer finds its private object after the fork")
        pub, priv = s.generateKeyPair(
            [(CKA_TOKEN, False), (CKA_EC_PARAMS, P256_PARAMS), (CKA_VERIFY, True)],
            [(CKA_TOKEN, False), (CKA_PRIVATE, True), (CKA_SIGN, True)],
            PyKCS11.Mechanism(CKM_EC_KEY_PAIR_GEN))
        m = PyKCS11.Mechanism(CKM_ECDSA_SHA256)
        sig = s.sign(priv, b"after fork", m)
        expect(s.verify(pub, b"after fork", bytes(sig), m), "parent signature after fork")
        s.logout()
        s.closeSession()

    check("fork(): the child using the parent's session gets CKR_CRYPTOKI_NOT_INITIALIZED; "
          "the parent is unaffected", fork_child)

    print("python_semantics.py: %d checks, %d failing" % (PASSED + FAILED, FAILED),
          flush=True)
    # C_Finalize here, then _exit: PyKCS11's destructor would finalize a second time.
    lib.lib.C_Finalize()
    return 1 if FAILED else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
