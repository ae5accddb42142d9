#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Interop test of the key lifecycle with unmodified clients: a key made and used by
# pkcs11-tool is rotated (C_DeriveKey with CKM_FERRO_KEY_ROTATE, through PyKCS11); after
# that `pkcs11-tool --sign --label NAME` signs with the new version (checked by OpenSSL
# against the new public key, and refused by the old one), a plain listing shows one key,
# and the old version still verifies its old signatures inside the token.
#
#   tests/interop/lifecycle.sh /path/to/libferrohsm_pkcs11.so
#
# Needs: opensc (pkcs11-tool), gnutls-bin (p11tool), openssl, python3-pykcs11.
set -euo pipefail

NAME=lifecycle
MODULE="${1:-}"
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_tools pkcs11-tool p11tool openssl cmp
HELPER="$(dirname "$0")/lifecycle_helper.py"
# The ferrohsm CLI built with the module (run-all.sh copies it beside the module).
CLI="$(dirname "$MODULE")/ferrohsm"
[ -x "$CLI" ] || { echo "FAIL: no ferrohsm CLI beside the module ($CLI)"; exit 1; }

# Deleting a key that never rotated schedules it too here (off by default).
printf '[lifecycle]\nschedule_plain_destroy = true\n' >>"$WORK/ferrohsm.toml"

LABEL="interop-lifecycle"
SO_PIN="so-secret-1"
USER_PIN="user-secret-1"
export T_USER_PIN="$USER_PIN"
head -c 3000 /dev/urandom >"$WORK/data"

p11() {
  echo "+ pkcs11-tool $*"
  pkcs11-tool --module "$MODULE" "$@"
}
p11u() { p11 --token-label "$LABEL" --login --pin "$USER_PIN" "$@"; }
helper() {
  echo "+ lifecycle_helper.py $*"
  /usr/bin/python3 "$HELPER" "$MODULE" "$USER_PIN" "$@"
}

setup() {
  p11 --init-token --label "$LABEL" --so-pin "$SO_PIN"
  p11 --token-label "$LABEL" --init-pin --login --login-type so --so-pin "$SO_PIN" --pin "$USER_PIN"
  p11u --keypairgen --key-type EC:prime256v1 --id 42 --label release
}

# pub N: the public key the label finds now, as PEM in $WORK/pubN.pem. Through p11tool
# and a plain `object=` URI (OpenSC 0.23's --read-object of EC keys reads freed memory
# now and then; see pkcs11-tool.sh, export_ec).
pub() {
  echo "+ p11tool --export-pubkey pkcs11:token=$LABEL;object=release;type=public"
  GNUTLS_PIN="$USER_PIN" p11tool --provider "$MODULE" --login --export-pubkey \
    --outfile "$WORK/pub$1.pem" "pkcs11:token=$LABEL;object=release;type=public"
}

# sign N: a signature by the key the label finds now: raw (r||s) and DER.
sign() {
  p11u --sign --label release -m ECDSA-SHA256 -i "$WORK/data" -o "$WORK/sig$1.raw"
  p11u --sign --label release -m ECDSA-SHA256 --signature-format openssl \
    -i "$WORK/data" -o "$WORK/sig$1.der"
}

before_rotation() {
  pub 1
  sign 1
  ossl dgst -sha256 -verify "$WORK/pub1.pem" -signature "$WORK/sig1.der" "$WORK/data"
}

rotate() {
  helper rotate release | tee "$WORK/rotated"
  expect_in "$WORK/rotated" "^rotated: .* key [0-9]+$"
}

label_finds_one_key() {
  p11u --list-objects --type privkey | tee "$WORK/o"
  [ "$(grep -Ec "label: +release" "$WORK/o")" = 1 ] || { echo "expected one private key"; return 1; }
  p11 --token-label "$LABEL" --list-objects --type pubkey | tee "$WORK/o"
  [ "$(grep -Ec "label: +release" "$WORK/o")" = 1 ] || { echo "expected one public key"; return 1; }
}

label_signs_with_the_new_version() {
  pub 2
  if cmp -s "$WORK/pub1.pem" "$WORK/pub2.pem"; then
    echo "the label still finds version 1's public key"
    return 1
  fi
  sign 2
  ossl dgst -sha256 -verify "$WORK/pub2.pem" -signature "$WORK/sig2.der" "$WORK/data"
  if openssl dgst -sha256 -verify "$WORK/pub1.pem" -signature "$WORK/sig2.der" "$WORK/data"; then
    echo "version 1's key verified a signature made after the rotation"
    return 1
  fi
}

old_version_still_verifies() {
  key=$(sed -nE 's/^rotated: .* key ([0-9]+)$/\1/p' "$WORK/rotated")
  helper verify "$key" 1 "$WORK/data" "$WORK/sig1.raw"
  helper verify "$key" 2 "$WORK/data" "$WORK/sig2.raw"
  if helper verify "$key" 1 "$WORK/data" "$WORK/sig2.raw"; then
    echo "version 1 verified version 2's signature"
    return 1
  fi
}

cli() {
  echo "+ ferrohsm $*"
  "$CLI" "$@" --store "$WORK/store" --user-pin-env T_USER_PIN
}

destroy_schedules_and_restore_brings_back() {
  key=$(sed -nE 's/^rotated: .* key ([0-9]+)$/\1/p' "$WORK/rotated")
  helper destroy "$key" 1
  cli key versions "$key" --json | tee "$WORK/v"
  expect_in "$WORK/v" '"DestroyScheduled"'
  local rc=0
  helper verify "$key" 1 "$WORK/data" "$WORK/sig1.raw" || rc=$?
  [ "$rc" = 3 ] || { echo "a version scheduled for destruction verified (exit $rc)"; return 1; }
  cli key restore "$key" --version 1
  cli key enable "$key" --version 1
  helper verify "$key" 1 "$WORK/data" "$WORK/sig1.raw"
}

# pkcs11-tool --delete-object of a key that never rotated: gone for PKCS#11 clients, listed
# as scheduled by ferrohsm key, and back after restore + enable (schedule_plain_destroy).
delete_object_is_undone() {
  p11u --keygen --key-type AES:32 --id 0e --label oops
  p11u --delete-object --type secrkey --label oops
  p11u --list-objects --type secrkey | tee "$WORK/o"
  expect_not_in "$WORK/o" "label: +oops\$"
  cli key list | tee "$WORK/keys"
  key=$(awk '$2 == "oops" { print $1 }' "$WORK/keys")
  [ -n "$key" ] || { echo "ferrohsm key list does not show the deleted key"; return 1; }
  cli key versions "$key" | tee "$WORK/v"
  expect_in "$WORK/v" "destroy-scheduled"
  cli key restore "$key" --version 1
  cli key enable "$key" --version 1
  p11u --list-objects --type secrkey | tee "$WORK/o"
  expect_in "$WORK/o" "label: +oops\$"
  cli key versions "$key" | tee "$WORK/v"
  expect_in "$WORK/v" " enabled"
}

step "token made, PIN set, a P-256 pair generated by pkcs11-tool" setup
step "before the rotation: the label signs, OpenSSL verifies" before_rotation
step "C_DeriveKey(CKM_FERRO_KEY_ROTATE) rotates the key (PyKCS11)" rotate
step "a plain listing shows one private and one public key under the label" label_finds_one_key
step "pkcs11-tool --sign --label signs with the new version (OpenSSL: new key yes, old key no)" label_signs_with_the_new_version
step "the old version, found by vendor attributes, still verifies its own signature" old_version_still_verifies
step "C_DestroyObject on the old version schedules it (refused meanwhile); ferrohsm key restore brings it back" destroy_schedules_and_restore_brings_back
step "pkcs11-tool --delete-object of a key that never rotated is undone by ferrohsm key restore" delete_object_is_undone
