#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Interop test: a FerroHSM slot over a YubiHSM 2 adapter on the `yubihsm` crate's MockHsm
# (`connector = "mockhsm"`, in debug builds only), driven by pkcs11-tool. The mock keeps
# its keys in memory, in the process that loaded the adapter: in mode "auto" that is the
# server, so pkcs11-tool runs one after another share them — key pairs made, signatures
# verified by the module, keys found by a new process, deleted; in mode "embedded" every
# pkcs11-tool has a fresh mock, so a key made by an earlier process is gone from the
# device and its use must answer a clear error, not crash.
#
#   tests/interop/yubihsm.sh /path/to/libferrohsm_pkcs11.so
set -euo pipefail

NAME=yubihsm
MODULE="${1:-}"
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_tools pkcs11-tool

LABEL="interop-yubihsm"
SO_PIN="so-secret-1"
USER_PIN="user-secret-1"
head -c 2000 /dev/urandom >"$WORK/data"

p11() {
  echo "+ pkcs11-tool $*"
  pkcs11-tool --module "$MODULE" "$@"
}
p11u() { p11 --token-label "$LABEL" --login --pin "$USER_PIN" "$@"; }

restart_server() {
  if [ "${FERROHSM_MODE:-auto}" = auto ] && [ -x "$(dirname "$MODULE")/ferrohsm-server" ]; then
    "$(dirname "$MODULE")/ferrohsm-server" stop || true
  fi
}

setup_token() {
  p11 --init-token --label "$LABEL" --so-pin "$SO_PIN"
  p11 --token-label "$LABEL" --init-pin --login --login-type so --so-pin "$SO_PIN" \
    --pin "$USER_PIN"
  restart_server
  printf '[[slots]]\ntoken = 1\nadapter = "yubihsm"\nconnector = "mockhsm"\n' >>"$FERROHSM_CONF"
  p11 --list-slots | tee "$WORK/o"
  expect_in "$WORK/o" "over YubiHSM 2 at mockhsm"
}

keygen() {
  p11u --keypairgen --key-type EC:prime256v1 --id 31 --label yh-ec | tee "$WORK/o"
  expect_in "$WORK/o" "EC_POINT 256 bits"
}

sign_and_verify() {
  p11u --sign --id 31 --mechanism ECDSA-SHA256 --input-file "$WORK/data" \
    --output-file "$WORK/ec.sig"
  p11u --verify --id 31 --mechanism ECDSA-SHA256 --input-file "$WORK/data" \
    --signature-file "$WORK/ec.sig" | tee "$WORK/o"
  expect_in "$WORK/o" "Signature is valid"
}

found_and_deleted() {
  p11u --list-objects --type privkey | tee "$WORK/o"
  expect_in "$WORK/o" "label: +yh-ec"
  p11u --delete-object --type privkey --id 31
  p11u --list-objects --type privkey | tee "$WORK/o"
  expect_not_in "$WORK/o" "yh-ec"
}

# Embedded: this process's mock never had the key the previous process made.
forgotten_key_answers_an_error() {
  local rc=0
  p11u --sign --id 31 --mechanism ECDSA-SHA256 --input-file "$WORK/data" \
    --output-file "$WORK/gone.sig" >"$WORK/o" 2>&1 || rc=$?
  cat "$WORK/o"
  [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || { echo "pkcs11-tool exited $rc"; return 1; }
  expect_in "$WORK/o" "CKR_DEVICE_ERROR"
}

step "a FerroHSM token bound to a YubiHSM (MockHsm)" setup_token
step "pkcs11-tool --keypairgen (P-256) on the YubiHSM slot" keygen
if [ "${FERROHSM_MODE:-auto}" = auto ]; then
  step "signed in the device (a later process, one server), verified by the module" sign_and_verify
  step "found by a new process, then deleted" found_and_deleted
else
  step "a key the device no longer has answers CKR_DEVICE_ERROR, no crash" forgotten_key_answers_an_error
fi
restart_server
