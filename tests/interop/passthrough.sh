#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Interop test: a FerroHSM slot over a SoftHSM2 token (the PKCS#11 passthrough adapter,
# docs/adapters.md), driven by OpenSC's pkcs11-tool as a user would: key pairs made
# through FerroHSM, signatures checked by OpenSSL and by the module's C_Verify, the keys
# found by a new process, seen in SoftHSM2 itself as never extractable, and deleted there
# when deleted through FerroHSM.
#
#   tests/interop/passthrough.sh /path/to/libferrohsm_pkcs11.so
#
# Needs: opensc (pkcs11-tool), openssl, softhsm2.
set -euo pipefail

NAME=passthrough
MODULE="${1:-}"
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_tools pkcs11-tool openssl softhsm2-util

SOFTHSM=/usr/lib/softhsm/libsofthsm2.so
LABEL="interop-passthrough"
SO_PIN="so-secret-1"
USER_PIN="user-secret-1"
BACKING_PIN="backing-pin-1"

# SoftHSM2 in WORK; the module (or the server it starts, which inherits the environment)
# loads it and reads SOFTHSM2_CONF there.
mkdir -p "$WORK/softhsm/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$WORK/softhsm/tokens" >"$WORK/softhsm/softhsm2.conf"
export SOFTHSM2_CONF="$WORK/softhsm/softhsm2.conf"
printf '%s\n' "$BACKING_PIN" >"$WORK/backing.pin"
chmod 600 "$WORK/backing.pin"
head -c 3000 /dev/urandom >"$WORK/data"

p11() {
  echo "+ pkcs11-tool $*"
  pkcs11-tool --module "$MODULE" "$@"
}
p11u() { p11 --token-label "$LABEL" --login --pin "$USER_PIN" "$@"; }
backing() {
  echo "+ pkcs11-tool (SoftHSM2) $*"
  pkcs11-tool --module "$SOFTHSM" --token-label backing --login --pin "$BACKING_PIN" "$@"
}

# The server of mode "auto" reads the configuration when it starts: stop it so the next
# call starts one that has the [[slots]] table.
restart_server() {
  if [ "${FERROHSM_MODE:-auto}" = auto ] && [ -x "$(dirname "$MODULE")/ferrohsm-server" ]; then
    "$(dirname "$MODULE")/ferrohsm-server" stop || true
  fi
}

setup_tokens() {
  softhsm2-util --init-token --free --label backing --so-pin backing-so-1 --pin "$BACKING_PIN"
  p11 --init-token --label "$LABEL" --so-pin "$SO_PIN"
  p11 --token-label "$LABEL" --init-pin --login --login-type so --so-pin "$SO_PIN" \
    --pin "$USER_PIN"
  restart_server
  cat >>"$FERROHSM_CONF" <<CONF
[[slots]]
token = 1
adapter = "pkcs11"
module = "$SOFTHSM"
token_label = "backing"
pin_file = "$WORK/backing.pin"
CONF
  p11 --list-slots | tee "$WORK/o"
  expect_in "$WORK/o" "over PKCS#11 token \"backing\""
}

keygen() {
  p11u --keypairgen --key-type EC:prime256v1 --id 21 --label pt-ec | tee "$WORK/o"
  expect_in "$WORK/o" "EC_POINT 256 bits"
  p11u --keypairgen --key-type rsa:2048 --id 22 --label pt-rsa | tee "$WORK/o"
  expect_in "$WORK/o" "RSA 2048 bits"
}

sign_rsa_checked_by_openssl() {
  p11 --token-label "$LABEL" --read-object --type pubkey --id 22 -o "$WORK/rsa.der"
  ossl pkey -pubin -inform DER -in "$WORK/rsa.der" -out "$WORK/rsa.pem"
  p11u --sign --id 22 --mechanism SHA256-RSA-PKCS --input-file "$WORK/data" \
    --output-file "$WORK/rsa.sig"
  ossl dgst -sha256 -verify "$WORK/rsa.pem" -signature "$WORK/rsa.sig" "$WORK/data" | tee "$WORK/o"
  expect_in "$WORK/o" "Verified OK"
}

sign_ec_verified_by_the_module() {
  p11u --sign --id 21 --mechanism ECDSA-SHA256 --input-file "$WORK/data" \
    --output-file "$WORK/ec.sig"
  p11u --verify --id 21 --mechanism ECDSA-SHA256 --input-file "$WORK/data" \
    --signature-file "$WORK/ec.sig" | tee "$WORK/o"
  expect_in "$WORK/o" "Signature is valid"
}

found_by_a_new_process() {
  p11u --list-objects --type privkey | tee "$WORK/o"
  expect_in "$WORK/o" "label: +pt-ec"
  expect_in "$WORK/o" "label: +pt-rsa"
}

seen_in_softhsm2() {
  backing --list-objects --type privkey | tee "$WORK/o"
  [ "$(grep -c '^Private Key Object' "$WORK/o")" -eq 2 ] || { echo "expected 2 keys"; return 1; }
  expect_in "$WORK/o" "never extractable"
  expect_not_in "$WORK/o" "Access: +none"
}

deleted_there_too() {
  p11u --delete-object --type privkey --id 21
  backing --list-objects --type privkey | tee "$WORK/o"
  [ "$(grep -c '^Private Key Object' "$WORK/o")" -eq 1 ] || { echo "expected 1 key"; return 1; }
  expect_in "$WORK/o" "RSA"
}

# The backing token's files wiped under a running FerroHSM (through the server, which
# holds SoftHSM2 loaded) or before a new process loads it (embedded): either way a clear
# CKR_* and a normal exit, never a crash, and FerroHSM's own objects still answer.
backing_wiped() {
  rm -rf "$WORK/softhsm/tokens/"*
  local rc=0
  p11u --sign --id 22 --mechanism SHA256-RSA-PKCS --input-file "$WORK/data" \
    --output-file "$WORK/wiped.sig" >"$WORK/o" 2>&1 || rc=$?
  cat "$WORK/o"
  [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || { echo "pkcs11-tool exited $rc"; return 1; }
  expect_in "$WORK/o" "CKR_DEVICE_ERROR|CKR_TOKEN_NOT_PRESENT|CKR_DEVICE_REMOVED"
  p11 --list-slots | tee "$WORK/o"
  expect_in "$WORK/o" "FerroHSM slot"
}

step "a FerroHSM token bound to a SoftHSM2 token" setup_tokens
step "pkcs11-tool --keypairgen (P-256, RSA-2048) on the passthrough slot" keygen
step "RSA signature made in SoftHSM2, checked by openssl" sign_rsa_checked_by_openssl
step "ECDSA signature made in SoftHSM2, checked by the module's C_Verify" sign_ec_verified_by_the_module
step "the keys are found by a new process" found_by_a_new_process
step "SoftHSM2 holds them, never extractable" seen_in_softhsm2
step "deleting through FerroHSM deletes them in SoftHSM2" deleted_there_too
step "the backing token wiped: a clear error, no crash" backing_wiped
restart_server
