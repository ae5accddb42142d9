#!/usr/bin/python3
"""Key-lifecycle steps that pkcs11-tool cannot express, through Debian's PyKCS11:

    lifecycle_helper.py MODULE PIN rotate LABEL
        C_DeriveKey(CKM_FERRO_KEY_ROTATE) on the private key found by LABEL; prints the
        new version's private key handle and the key id.
    lifecycle_helper.py MODULE PIN destroy KEY_ID VERSION
        C_DestroyObject on one version's private key, found by the vendor attributes.
    lifecycle_helper.py MODULE PIN verify KEY_ID VERSION DATA SIGNATURE
        C_Verify (CKM_ECDSA_SHA256) with the public half of one version, found by the
        vendor attributes; exits 0 when the signature verifies.

Each run opens and closes the module itself, so it works beside embedded clients.
"""

import struct
import sys

import PyKCS11
from PyKCS11 import (CKA_CLASS, CKA_LABEL, CKF_RW_SESSION, CKF_SERIAL_SESSION,
                     CKM_ECDSA_SHA256, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, PyKCS11Error,
                     ckbytelist)

CKM_FERRO_KEY_ROTATE = 0x8F450001
CKA_FERRO_KEY_ID = 0x8F450001
CKA_FERRO_KEY_VERSION = 0x8F450002


def ulong(v):
    # A CK_ULONG attribute value as PyKCS11 passes unknown types: the raw bytes.
    return ckbytelist(struct.pack("=L" if struct.calcsize("L") == 4 else "=Q", v))


def main():
    module, pin, cmd = sys.argv[1], sys.argv[2], sys.argv[3]
    lib = PyKCS11.PyKCS11Lib()
    lib.load(module)
    slot = lib.getSlotList(tokenPresent=True)[0]
    s = lib.openSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION)
    s.login(pin)
    try:
        if cmd == "rotate":
            found = s.findObjects([(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_LABEL, sys.argv[4])])
            if len(found) != 1:
                print(f"expected one private key labelled {sys.argv[4]}, found {len(found)}")
                return 1
            new = s.deriveKey(found[0], [], PyKCS11.Mechanism(CKM_FERRO_KEY_ROTATE, None))
            raw = bytes(s.getAttributeValue(new, [CKA_FERRO_KEY_ID])[0])
            key = int.from_bytes(raw, sys.byteorder)
            print(f"rotated: old handle {found[0].value()} new handle {new.value()} key {key}")
            return 0 if new.value() != found[0].value() else 1
        if cmd == "destroy":
            key, version = sys.argv[4:6]
            privs = s.findObjects([(CKA_CLASS, CKO_PRIVATE_KEY),
                                   (CKA_FERRO_KEY_ID, ulong(int(key))),
                                   (CKA_FERRO_KEY_VERSION, ulong(int(version)))])
            if len(privs) != 1:
                print(f"expected one private key of version {version}, found {len(privs)}")
                return 1
            s.destroyObject(privs[0])
            print(f"C_DestroyObject on version {version}: CKR_OK")
            return 0
        if cmd == "verify":
            key, version, data, sig = sys.argv[4:8]
            pubs = s.findObjects([(CKA_CLASS, CKO_PUBLIC_KEY),
                                  (CKA_FERRO_KEY_ID, ulong(int(key))),
                                  (CKA_FERRO_KEY_VERSION, ulong(int(version)))])
            if len(pubs) != 1:
                print(f"expected one public key of version {version}, found {len(pubs)}")
                return 1
            with open(data, "rb") as f:
                d = f.read()
            with open(sig, "rb") as f:
                g = f.read()
            try:
                ok = s.verify(pubs[0], d, g, PyKCS11.Mechanism(CKM_ECDSA_SHA256, None))
            except PyKCS11Error as e:
                print(f"version {version} refused: {e}")
                return 3
            print(f"version {version} verifies: {ok}")
            return 0 if ok else 1
        print(f"unknown command {cmd}")
        return 2
    finally:
        s.logout()
        s.closeSession()


if __name__ == "__main__":
    sys.exit(main())
