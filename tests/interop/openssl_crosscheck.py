#!/usr/bin/python3
"""Cross-checks of FerroHSM's symmetric outputs against the openssl command-line tool.

Keys with known values are imported with C_CreateObject (through PyKCS11); every value
the module computes is then computed again by openssl from the same key, and must match:
HMAC-SHA-256/384/512, AES-CMAC, AES-CBC/ECB/CTR/CBC-PAD, AES key wrap (RFC 3394) and key
wrap with padding (RFC 5649), and AES-GCM (openssl decrypts what the module sealed). Keys
leaving the token are opened by openssl too: RSA-OAEP wrapped secret keys, and private
keys wrapped as PKCS#8 with KWP; and an Ed25519 key openssl wrapped signs in the token.

Usage: /usr/bin/python3 openssl_crosscheck.py /path/to/libferrohsm_pkcs11.so
Prints PASS:/FAIL: lines; exits non-zero on any failure.
"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile

import PyKCS11
from PyKCS11 import CKA_CLASS, CKA_KEY_TYPE, CKA_VALUE, CKA_TOKEN, CKA_SIGN, CKA_VERIFY
from PyKCS11 import CKA_ENCRYPT, CKA_DECRYPT, CKA_WRAP, CKA_UNWRAP, CKA_EXTRACTABLE, CKA_SENSITIVE
from PyKCS11 import CKO_SECRET_KEY, CKK_AES, CKK_GENERIC_SECRET, CKU_SO, CKU_USER

# "auto" (the default: through one ferrohsm-server, started on demand) or "embedded".
MODE = os.environ.get("FERROHSM_MODE", "auto")

SO_PIN = "so-pin-crosscheck"
USER_PIN = "user-pin-crosscheck"
FAILED = []


def openssl(*args, data=b""):
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def check(name, fn):
    try:
        fn()
        print("PASS: " + name)
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
        FAILED.append(name)
        print("FAIL: %s: %s: %s" % (name, type(e).__name__, e))


def openssl_rsa(name, bits):
    """An RSA key openssl generates: its PEM path, and n, e, d, p, q, dP, dQ, qInv as bytes."""
    pem = os.path.join(os.environ["FERROHSM_WORK"], name)
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", pem, str(bits)], check=True, capture_output=True)
    ints = [line.split(":")[-1].strip() for line in
            subprocess.run(["openssl", "asn1parse", "-in", pem], check=True, capture_output=True, text=True).stdout.splitlines()
            if "INTEGER" in line]
    return pem, [bytes.fromhex(x if len(x) % 2 == 0 else "0" + x) for x in ints[1:9]]


def same(what, mine, theirs):
    if bytes(mine) != bytes(theirs):
        raise AssertionError("%s: module %s, openssl %s" % (what, bytes(mine).hex(), bytes(theirs).hex()))


def main():
    module = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="ferrohsm-crosscheck.")
    conf = os.path.join(work, "ferrohsm.toml")
    with open(conf, "w") as f:
        f.write('mode = "%s"\nstore = "%s/store"\nlog_level = "error"\n[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n'
                '[server]\nidle_exit_secs = 2\n' % (MODE, work))
    os.environ["FERROHSM_CONF"] = conf
    os.environ["FERROHSM_WORK"] = work
    try:
        run(module)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("openssl_crosscheck.py: %d failing" % len(FAILED))
    return 1 if FAILED else 0


def run(module):
    lib = PyKCS11.PyKCS11Lib()
    lib.load(module)
    slot = lib.getSlotList(tokenPresent=True)[0]
    lib.initToken(slot, SO_PIN, "crosscheck")
    s = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    s.login(SO_PIN, CKU_SO)
    s.initPin(USER_PIN)
    s.logout()
    s.login(USER_PIN, CKU_USER)

    def key(kt, value, **flags):
        t = [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, kt), (CKA_VALUE, value), (CKA_TOKEN, False)]
        t += [(getattr(PyKCS11, "CKA_" + k.upper()), v) for k, v in flags.items()]
        return s.createObject(t)

    data = os.urandom(100)
    gen = os.urandom(32)
    hmac_key = key(CKK_GENERIC_SECRET, gen, sign=True, verify=True)
    aes = os.urandom(32)
    aes_key = key(CKK_AES, aes, sign=True, verify=True, encrypt=True, decrypt=True)

    def hmac():
        for mech, md in [(PyKCS11.CKM_SHA_1_HMAC, "sha1"), (PyKCS11.CKM_SHA224_HMAC, "sha224"),
                         (PyKCS11.CKM_SHA256_HMAC, "sha256"), (PyKCS11.CKM_SHA384_HMAC, "sha384"),
                         (PyKCS11.CKM_SHA512_HMAC, "sha512")]:
            mine = s.sign(hmac_key, data, PyKCS11.Mechanism(mech, None))
            theirs = openssl("dgst", "-" + md, "-mac", "HMAC", "-macopt", "hexkey:" + gen.hex(), "-binary", data=data)
            same("HMAC-" + md, mine, theirs)

    def cmac():
        mine = s.sign(aes_key, data, PyKCS11.Mechanism(PyKCS11.CKM_AES_CMAC, None))
        theirs = openssl("mac", "-cipher", "AES-256-CBC", "-macopt", "hexkey:" + aes.hex(), "-binary", "CMAC", data=data)
        same("AES-CMAC", mine, theirs)

    def block_modes():
        iv = os.urandom(16)
        blocks = data[:96]
        for mech, cipher, text, pad in [(PyKCS11.CKM_AES_CBC, "aes-256-cbc", blocks, False),
                                        (PyKCS11.CKM_AES_CBC_PAD, "aes-256-cbc", data, True),
                                        (PyKCS11.CKM_AES_ECB, "aes-256-ecb", blocks, False)]:
            m = PyKCS11.Mechanism(mech, None if mech == PyKCS11.CKM_AES_ECB else iv)
            mine = s.encrypt(aes_key, text, m)
            args = ["enc", "-" + cipher, "-K", aes.hex()] + ([] if mech == PyKCS11.CKM_AES_ECB else ["-iv", iv.hex()])
            theirs = openssl(*(args + ([] if pad else ["-nopad"])), data=text)
            same(cipher, mine, theirs)
            same(cipher + " round trip", s.decrypt(aes_key, mine, m), text)
        # CK_AES_CTR_PARAMS: CK_ULONG ulCounterBits, CK_BYTE cb[16] (PyKCS11 has no helper).
        ctr = PyKCS11.Mechanism(PyKCS11.CKM_AES_CTR, struct.pack("@L", 128) + iv)
        same("aes-256-ctr", s.encrypt(aes_key, data, ctr), openssl("enc", "-aes-256-ctr", "-K", aes.hex(), "-iv", iv.hex(), data=data))

    def gcm():
        iv = os.urandom(12)
        m = PyKCS11.AES_GCM_Mechanism(iv, b"", 128)
        sealed = bytes(s.encrypt(aes_key, data, m))
        ct, tag = sealed[:-16], sealed[-16:]
        # openssl enc does not do AEAD; check the ciphertext with CTR from counter block iv||00000002.
        counter = iv + b"\x00\x00\x00\x02"
        plain = openssl("enc", "-d", "-aes-256-ctr", "-K", aes.hex(), "-iv", counter.hex(), data=ct)
        same("AES-GCM ciphertext (as CTR from J0+1)", plain, data)
        same("AES-GCM round trip", s.decrypt(aes_key, sealed, m), data)
        if len(tag) != 16:
            raise AssertionError("tag of %d bytes" % len(tag))

    def gcm_short_tag():
        # 96-bit tags, checked with python3-cryptography's GCM (openssl enc has no AEAD).
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        iv = os.urandom(12)
        m = PyKCS11.AES_GCM_Mechanism(iv, b"hdr", 96)
        sealed = bytes(s.encrypt(aes_key, data, m))
        if len(sealed) != len(data) + 12:
            raise AssertionError("%d bytes for %d of data and a 96-bit tag" % (len(sealed), len(data)))
        d = Cipher(algorithms.AES(aes), modes.GCM(iv, sealed[-12:], min_tag_length=12)).decryptor()
        d.authenticate_additional_data(b"hdr")
        same("AES-GCM 96-bit tag, opened by python3-cryptography", d.update(sealed[:-12]) + d.finalize(), data)
        e = Cipher(algorithms.AES(aes), modes.GCM(iv)).encryptor()
        e.authenticate_additional_data(b"hdr")
        theirs = e.update(data) + e.finalize() + e.tag[:12]
        same("AES-GCM 96-bit tag, sealed by python3-cryptography", s.decrypt(aes_key, theirs, m), data)
        bad = theirs[:-1] + bytes([theirs[-1] ^ 1])
        try:
            s.decrypt(aes_key, bad, m)
        except PyKCS11.PyKCS11Error as err:
            if err.value != PyKCS11.CKR_ENCRYPTED_DATA_INVALID:
                raise
        else:
            raise AssertionError("a damaged 96-bit tag was accepted")

    def gcm_other_ivs():
        # IVs other than 96 bits (J0 from GHASH of the IV), both ways with python3-cryptography.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        for n in (8, 16, 60, 128):  # python3-cryptography takes 8 to 128 bytes
            iv = os.urandom(n)
            m = PyKCS11.AES_GCM_Mechanism(iv, b"hdr", 128)
            sealed = bytes(s.encrypt(aes_key, data, m))
            same("AES-GCM %d-byte IV, opened by python3-cryptography" % n,
                 AESGCM(aes).decrypt(iv, sealed, b"hdr"), data)
            theirs = AESGCM(aes).encrypt(iv, data, b"hdr")
            same("AES-GCM %d-byte IV, sealed by python3-cryptography" % n, s.decrypt(aes_key, theirs, m), data)

    def kbkdf_counter():
        # SP 800-108 counter mode against python3-cryptography's KBKDFHMAC / KBKDFCMAC:
        # PRF(K, [i]_16 || label || 0x00 || context || [L]_32). PyKCS11 has no class for
        # these parameters, so they are laid out with ctypes (the pointers inside stay
        # valid while the ctypes objects live).
        import ctypes
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers import algorithms
        from cryptography.hazmat.primitives.kdf.kbkdf import CounterLocation, KBKDFCMAC, KBKDFHMAC, Mode

        class DataParam(ctypes.Structure):
            _fields_ = [("type", ctypes.c_ulong), ("pValue", ctypes.c_void_p), ("ulValueLen", ctypes.c_ulong)]

        class CounterFormat(ctypes.Structure):
            _fields_ = [("bLittleEndian", ctypes.c_ubyte), ("ulWidthInBits", ctypes.c_ulong)]

        class DkmFormat(ctypes.Structure):
            _fields_ = [("dkmLengthMethod", ctypes.c_ulong), ("bLittleEndian", ctypes.c_ubyte),
                        ("ulWidthInBits", ctypes.c_ulong)]

        class KdfParams(ctypes.Structure):
            _fields_ = [("prfType", ctypes.c_ulong), ("ulNumberOfDataParams", ctypes.c_ulong),
                        ("pDataParams", ctypes.c_void_p), ("ulAdditionalDerivedKeys", ctypes.c_ulong),
                        ("pAdditionalDerivedKeys", ctypes.c_void_p)]

        label, context = b"ferrohsm label", b"context"
        counter = CounterFormat(0, 16)
        dkm = DkmFormat(1, 0, 32)  # CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS
        blobs = [ctypes.create_string_buffer(b, len(b)) for b in (label, b"\x00", context)]
        fields = (DataParam * 5)(
            DataParam(1, ctypes.cast(ctypes.pointer(counter), ctypes.c_void_p), ctypes.sizeof(counter)),
            *[DataParam(4, ctypes.cast(b, ctypes.c_void_p), len(b.raw)) for b in blobs],
            DataParam(3, ctypes.cast(ctypes.pointer(dkm), ctypes.c_void_p), ctypes.sizeof(dkm)),
        )
        base_value = os.urandom(32)
        for prf, key_type, length in [(PyKCS11.CKM_SHA256_HMAC, CKK_GENERIC_SECRET, 48),
                                      (PyKCS11.CKM_AES_CMAC, CKK_AES, 32)]:
            base = key(key_type, base_value, derive=True)
            params = KdfParams(prf, 5, ctypes.cast(fields, ctypes.c_void_p), 0, None)
            mech = PyKCS11.Mechanism(PyKCS11.CKM_SP800_108_COUNTER_KDF, bytes(params))
            k = s.deriveKey(base, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                                   (PyKCS11.CKA_VALUE_LEN, length), (CKA_TOKEN, False),
                                   (CKA_SENSITIVE, False), (CKA_EXTRACTABLE, True)], mech)
            common = dict(mode=Mode.CounterMode, length=length, rlen=2, llen=4,
                          location=CounterLocation.BeforeFixed, label=label, context=context, fixed=None)
            if prf == PyKCS11.CKM_AES_CMAC:
                theirs = KBKDFCMAC(algorithm=algorithms.AES, **common).derive(base_value)
            else:
                theirs = KBKDFHMAC(algorithm=hashes.SHA256(), **common).derive(base_value)
            same("SP 800-108 counter mode, PRF %#x" % prf, s.getAttributeValue(k, [CKA_VALUE])[0], theirs)

    def key_wrap():
        kek = os.urandom(32)
        w = key(CKK_AES, kek, wrap=True, unwrap=True)
        secret = os.urandom(32)
        k = key(CKK_AES, secret, extractable=True)
        mine = s.wrapKey(w, k, PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_WRAP, None))
        theirs = openssl("enc", "-id-aes256-wrap", "-K", kek.hex(), "-iv", "A6A6A6A6A6A6A6A6", data=secret)
        same("AES key wrap (RFC 3394)", mine, theirs)
        odd = os.urandom(20)
        g = key(CKK_GENERIC_SECRET, odd, extractable=True)
        mine = s.wrapKey(w, g, PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_WRAP_KWP, None))
        theirs = openssl("enc", "-id-aes256-wrap-pad", "-K", kek.hex(), "-iv", "A65959A6", data=odd)
        same("AES key wrap with padding (RFC 5649)", mine, theirs)

    def oaep():
        pem, (n, e, d, p, q, dp, dq, qi) = openssl_rsa("rsa.pem", 2048)
        common = [(CKA_KEY_TYPE, PyKCS11.CKK_RSA), (CKA_TOKEN, False), (PyKCS11.CKA_MODULUS, n), (PyKCS11.CKA_PUBLIC_EXPONENT, e)]
        pub = s.createObject([(CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (CKA_ENCRYPT, True)] + common)
        priv = s.createObject([(CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (CKA_DECRYPT, True), (CKA_UNWRAP, True),
                               (PyKCS11.CKA_PRIVATE_EXPONENT, d), (PyKCS11.CKA_PRIME_1, p), (PyKCS11.CKA_PRIME_2, q),
                               (PyKCS11.CKA_EXPONENT_1, dp), (PyKCS11.CKA_EXPONENT_2, dq), (PyKCS11.CKA_COEFFICIENT, qi)] + common)
        mech = PyKCS11.RSAOAEPMechanism(PyKCS11.CKM_SHA256, PyKCS11.CKG_MGF1_SHA256)
        opts = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"]
        secret = os.urandom(32)
        ct = bytes(s.encrypt(pub, secret, mech))
        same("openssl decrypts FerroHSM's OAEP", openssl("pkeyutl", "-decrypt", "-inkey", pem, *opts, data=ct), secret)
        theirs = openssl("pkeyutl", "-encrypt", "-inkey", pem, *opts, data=secret)
        same("FerroHSM decrypts openssl's OAEP", s.decrypt(priv, theirs, mech), secret)
        # The same blob imported as a key: C_UnwrapKey with OAEP gives an AES key of that value.
        k = s.unwrapKey(priv, theirs, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_TOKEN, False),
                                       (CKA_SENSITIVE, False), (CKA_EXTRACTABLE, True)], mech)
        same("FerroHSM unwraps openssl's OAEP-wrapped AES key", s.getAttributeValue(k, [CKA_VALUE])[0], secret)

    def oaep_wrap():
        pem, (n, e, *_) = openssl_rsa("rsa3072.pem", 3072)
        pub = s.createObject([(CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (CKA_KEY_TYPE, PyKCS11.CKK_RSA), (CKA_TOKEN, False),
                              (PyKCS11.CKA_MODULUS, n), (PyKCS11.CKA_PUBLIC_EXPONENT, e), (CKA_WRAP, True)])
        secret = os.urandom(16)
        k = key(CKK_AES, secret, extractable=True)
        for md, hash_mech, mgf in [("sha256", PyKCS11.CKM_SHA256, PyKCS11.CKG_MGF1_SHA256),
                                   ("sha1", PyKCS11.CKM_SHA_1, PyKCS11.CKG_MGF1_SHA1)]:
            blob = bytes(s.wrapKey(pub, k, PyKCS11.RSAOAEPMechanism(hash_mech, mgf)))
            opts = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:" + md, "-pkeyopt", "rsa_mgf1_md:" + md]
            same("openssl opens FerroHSM's OAEP-%s wrapped AES-128 key" % md,
                 openssl("pkeyutl", "-decrypt", "-inkey", pem, *opts, data=blob), secret)
        # RSA-3072 is 128-bit strong: an AES-256 key does not leave under it.
        big = key(CKK_AES, os.urandom(32), extractable=True)
        try:
            s.wrapKey(pub, big, PyKCS11.RSAOAEPMechanism(PyKCS11.CKM_SHA256, PyKCS11.CKG_MGF1_SHA256))
            raise AssertionError("AES-256 was wrapped under RSA-3072")
        except PyKCS11.PyKCS11Error as err:
            if err.value != PyKCS11.CKR_KEY_NOT_WRAPPABLE:
                raise

    def private_keys_out():
        from cryptography.hazmat.primitives import serialization
        work = os.environ["FERROHSM_WORK"]
        kek = os.urandom(32)
        w = key(CKK_AES, kek, wrap=True, unwrap=True)
        raw = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x962 = (serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        for name, mech, public in [
            ("Ed25519", PyKCS11.CKM_EC_EDWARDS_KEY_PAIR_GEN, [(PyKCS11.CKA_EC_PARAMS, bytes.fromhex("06032b6570"))]),
            ("P-521", PyKCS11.CKM_EC_KEY_PAIR_GEN, [(PyKCS11.CKA_EC_PARAMS, bytes.fromhex("06052b81040023"))]),
            ("RSA-2048", PyKCS11.CKM_RSA_PKCS_KEY_PAIR_GEN, [(PyKCS11.CKA_MODULUS_BITS, 2048)]),
            ("X25519", PyKCS11.CKM_EC_MONTGOMERY_KEY_PAIR_GEN, [(PyKCS11.CKA_EC_PARAMS, bytes.fromhex("06032b656e"))]),
        ]:
            pub, priv = s.generateKeyPair(
                [(CKA_TOKEN, False), (CKA_VERIFY, True)] + public,
                [(CKA_TOKEN, False), (CKA_SIGN, True), (CKA_EXTRACTABLE, True)],
                mecha=PyKCS11.Mechanism(mech, None))
            blob = bytes(s.wrapKey(w, priv, PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_WRAP_KWP, None)))
            der = openssl("enc", "-d", "-id-aes256-wrap-pad", "-K", kek.hex(), "-iv", "A65959A6", data=blob)
            # openssl reads the document as a private key and finds it consistent.
            path = os.path.join(work, "moved.der")
            with open(path, "wb") as f:
                f.write(der)
            subprocess.run(["openssl", "pkey", "-inform", "DER", "-in", path, "-check", "-noout"],
                           check=True, capture_output=True)
            inside = serialization.load_der_private_key(der, password=None).public_key()
            if name == "RSA-2048":
                same(name + " modulus", inside.public_numbers().n.to_bytes(256, "big"),
                     s.getAttributeValue(pub, [PyKCS11.CKA_MODULUS])[0])
            else:
                point = bytes(s.getAttributeValue(pub, [PyKCS11.CKA_EC_POINT])[0])
                point = point[3:] if point[1] == 0x81 else point[2:]
                same(name + " public key", inside.public_bytes(*(x962 if name == "P-521" else raw)), point)

    def private_key_in():
        work = os.environ["FERROHSM_WORK"]
        kek = os.urandom(32)
        w = key(CKK_AES, kek, wrap=True, unwrap=True)
        pem = os.path.join(work, "outside-ed25519.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", pem], check=True, capture_output=True)
        der = openssl("pkey", "-in", pem, "-outform", "DER")
        blob = openssl("enc", "-id-aes256-wrap-pad", "-K", kek.hex(), "-iv", "A65959A6", data=der)
        k = s.unwrapKey(w, blob, [(CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (CKA_TOKEN, False), (CKA_SIGN, True)],
                        PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_WRAP_KWP, None))
        sig = bytes(s.sign(k, data, PyKCS11.Mechanism(PyKCS11.CKM_EDDSA, None)))
        for name, content in [("in.msg", data), ("in.sig", sig)]:
            with open(os.path.join(work, name), "wb") as f:
                f.write(content)
        out = subprocess.run(["openssl", "pkeyutl", "-verify", "-inkey", pem, "-rawin", "-in", os.path.join(work, "in.msg"),
                              "-sigfile", os.path.join(work, "in.sig")], capture_output=True, text=True)
        if "Signature Verified Successfully" not in out.stdout:
            raise AssertionError("openssl: %s %s" % (out.stdout, out.stderr))

    def ed25519():
        work = os.environ["FERROHSM_WORK"]
        params = bytes.fromhex("06032b6570")
        pub, priv = s.generateKeyPair(
            [(CKA_TOKEN, False), (PyKCS11.CKA_EC_PARAMS, params), (CKA_VERIFY, True)],
            [(CKA_TOKEN, False), (CKA_SIGN, True)],
            mecha=PyKCS11.Mechanism(PyKCS11.CKM_EC_EDWARDS_KEY_PAIR_GEN, None))
        point = bytes(s.getAttributeValue(pub, [PyKCS11.CKA_EC_POINT])[0])
        if point[:2] != b"\x04\x20":
            raise AssertionError("CKA_EC_POINT is not an OCTET STRING of 32 bytes: %s" % point.hex())
        spki = bytes.fromhex("302a300506032b6570032100") + point[2:]
        with open(os.path.join(work, "ed.der"), "wb") as f:
            f.write(spki)
        with open(os.path.join(work, "msg"), "wb") as f:
            f.write(data)
        sig = bytes(s.sign(priv, data, PyKCS11.Mechanism(PyKCS11.CKM_EDDSA, None)))
        with open(os.path.join(work, "ed.sig"), "wb") as f:
            f.write(sig)
        out = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", os.path.join(work, "ed.der"), "-keyform", "DER",
                              "-rawin", "-in", os.path.join(work, "msg"), "-sigfile", os.path.join(work, "ed.sig")],
                             capture_output=True, text=True)
        if "Signature Verified Successfully" not in out.stdout:
            raise AssertionError("openssl: %s %s" % (out.stdout, out.stderr))

    def p521():
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, utils
        params = bytes.fromhex("06052b81040023")
        pub, priv = s.generateKeyPair(
            [(CKA_TOKEN, False), (PyKCS11.CKA_EC_PARAMS, params), (CKA_VERIFY, True)],
            [(CKA_TOKEN, False), (CKA_SIGN, True)],
            mecha=PyKCS11.Mechanism(PyKCS11.CKM_EC_KEY_PAIR_GEN, None))
        der = bytes(s.getAttributeValue(pub, [PyKCS11.CKA_EC_POINT])[0])
        point = der[3:] if der[1] == 0x81 else der[2:]
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP521R1(), point)
        sig = bytes(s.sign(priv, data, PyKCS11.Mechanism(PyKCS11.CKM_ECDSA_SHA512, None)))
        if len(sig) != 132:
            raise AssertionError("signature of %d bytes" % len(sig))
        r, s_ = int.from_bytes(sig[:66], "big"), int.from_bytes(sig[66:], "big")
        key.verify(utils.encode_dss_signature(r, s_), data, ec.ECDSA(hashes.SHA512()))

    def ecdh_x963():
        # ECDH P-256 against a python3-cryptography key, then the X9.63 SHA-256 KDF with
        # shared info: FerroHSM's derived key must equal cryptography's X963KDF output.
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
        params = bytes.fromhex("06082a8648ce3d030107")
        pub, priv = s.generateKeyPair(
            [(CKA_TOKEN, False), (PyKCS11.CKA_EC_PARAMS, params)],
            [(CKA_TOKEN, False), (PyKCS11.CKA_DERIVE, True)],
            mecha=PyKCS11.Mechanism(PyKCS11.CKM_EC_KEY_PAIR_GEN, None))
        der = bytes(s.getAttributeValue(pub, [PyKCS11.CKA_EC_POINT])[0])
        ours = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), der[2:])
        peer = ec.generate_private_key(ec.SECP256R1())
        peer_point = peer.public_key().public_bytes(serialization.Encoding.X962,
                                                    serialization.PublicFormat.UncompressedPoint)
        mech = PyKCS11.ECDH1_DERIVE_Mechanism(peer_point, PyKCS11.CKD_SHA256_KDF, b"ferrohsm")
        k = s.deriveKey(priv, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                               (CKA_TOKEN, False), (CKA_SENSITIVE, False), (CKA_EXTRACTABLE, True),
                               (PyKCS11.CKA_VALUE_LEN, 48)], mech)
        mine = bytes(s.getAttributeValue(k, [CKA_VALUE])[0])
        z = peer.exchange(ec.ECDH(), ours)
        theirs = X963KDF(algorithm=hashes.SHA256(), length=48, sharedinfo=b"ferrohsm").derive(z)
        same("ECDH + X9.63 SHA-256 KDF", mine, theirs)

    def x25519():
        # X25519 both ways with python3-cryptography: the token's secret with the peer's
        # public value equals the peer's exchange with the token's public value.
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
        pub, priv = s.generateKeyPair(
            [(CKA_TOKEN, False), (PyKCS11.CKA_EC_PARAMS, bytes.fromhex("06032b656e"))],
            [(CKA_TOKEN, False)],
            mecha=PyKCS11.Mechanism(PyKCS11.CKM_EC_MONTGOMERY_KEY_PAIR_GEN, None))
        point = bytes(s.getAttributeValue(pub, [PyKCS11.CKA_EC_POINT])[0])
        ours = X25519PublicKey.from_public_bytes(point[2:])
        peer = X25519PrivateKey.generate()
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        mech = PyKCS11.ECDH1_DERIVE_Mechanism(peer.public_key().public_bytes(*raw), PyKCS11.CKD_NULL, None)
        k = s.deriveKey(priv, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                               (CKA_TOKEN, False), (CKA_SENSITIVE, False), (CKA_EXTRACTABLE, True),
                               (PyKCS11.CKA_VALUE_LEN, 32)], mech)
        same("X25519 shared secret", s.getAttributeValue(k, [CKA_VALUE])[0], peer.exchange(ours))
        # The SP 800-56C one-step KDF (CKD_SHA256_KDF_SP800) is cryptography's ConcatKDFHash.
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
        mech = PyKCS11.ECDH1_DERIVE_Mechanism(peer.public_key().public_bytes(*raw),
                                              PyKCS11.CKD_SHA256_KDF_SP800, b"fixed info")
        k = s.deriveKey(priv, [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                               (CKA_TOKEN, False), (CKA_SENSITIVE, False), (CKA_EXTRACTABLE, True),
                               (PyKCS11.CKA_VALUE_LEN, 40)], mech)
        theirs = ConcatKDFHash(algorithm=hashes.SHA256(), length=40, otherinfo=b"fixed info").derive(
            peer.exchange(ours))
        same("X25519 + SP 800-56C SHA-256 KDF", s.getAttributeValue(k, [CKA_VALUE])[0], theirs)

    check("HMAC-SHA-1/224/256/384/512 equal openssl dgst -mac HMAC", hmac)
    check("X25519 (CKM_EC_MONTGOMERY_KEY_PAIR_GEN + ECDH, CKD_NULL and CKD_SHA256_KDF_SP800) agrees with "
          "python3-cryptography's X25519 and ConcatKDFHash", x25519)
    check("ECDH P-256 + X9.63 SHA-256 KDF equals python3-cryptography's ECDH + X963KDF", ecdh_x963)
    check("ECDSA P-521 (SHA-512) verified by OpenSSL through python-cryptography", p521)
    check("Ed25519 signature verified by openssl pkeyutl", ed25519)
    check("RSA-OAEP (SHA-256) both ways with openssl pkeyutl, and C_UnwrapKey of openssl's blob", oaep)
    check("RSA-OAEP C_WrapKey (SHA-256, SHA-1) opened by openssl pkeyutl; AES-256 under RSA-3072 refused", oaep_wrap)
    check("Ed25519, P-521, RSA and X25519 private keys wrapped with KWP: openssl unwraps, checks and reads the same key",
          private_keys_out)
    check("An Ed25519 key openssl made and wrapped unwraps in FerroHSM and signs for openssl", private_key_in)
    check("AES-CMAC equals openssl mac CMAC", cmac)
    check("AES-CBC, CBC-PAD, ECB and CTR equal openssl enc", block_modes)
    check("AES-GCM ciphertext equals AES-CTR from J0+1 under openssl", gcm)
    check("AES-GCM with a 96-bit tag both ways with python3-cryptography; a bad tag refused", gcm_short_tag)
    check("AES-GCM with 8-, 16-, 60- and 128-byte IVs both ways with python3-cryptography", gcm_other_ivs)
    check("SP 800-108 counter mode (HMAC-SHA-256, AES-CMAC) equals python3-cryptography's KBKDF", kbkdf_counter)
    check("AES key wrap and key wrap with padding equal openssl id-aes256-wrap(-pad)", key_wrap)
    s.logout()
    s.closeSession()
    lib.closeAllSessions(slot)


if __name__ == "__main__":
    sys.exit(main())
