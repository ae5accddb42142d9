#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Interop test: GnuTLS p11tool (through p11-kit) drives the built module: token listing,
# the SO setting the user PIN, EC and RSA key generation, key listing with and without
# login, p11tool's sign-then-verify self test on each key, public key export checked by
# OpenSSL, and deletion.
#
#   tests/interop/p11tool.sh /path/to/libferrohsm_pkcs11.so
#
# PINs go to p11tool through GNUTLS_PIN / GNUTLS_SO_PIN, never its command line. The token
# is created with pkcs11-tool: GnuTLS, like every p11-kit client, does not list a token
# that is not initialised yet, so `p11tool --initialize` has no URL to name it by.
# Prints one `PASS: step` / `FAIL: step` line per step and stops at the first failure.
# Needs: gnutls-bin (p11tool), opensc (pkcs11-tool), openssl.
set -euo pipefail

NAME=p11tool
MODULE="${1:-}"
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_tools p11tool pkcs11-tool openssl

LABEL="interop-gnutls"
TOKEN_URL="pkcs11:token=$LABEL"
SO_PIN="gnutls-so-pin-1"
USER_PIN="gnutls-user-1"
export GNUTLS_SO_PIN="$SO_PIN"
export GNUTLS_PIN="$USER_PIN"

# --provider loads only this module (not the p11-kit registered ones); --batch never
# prompts, so a missing or wrong PIN is an error rather than a hang.
p11tool_() {
  echo "+ p11tool $*"
  p11tool --provider "$MODULE" --batch "$@" </dev/null
}

init_token() {
  echo "+ pkcs11-tool --init-token --label $LABEL"
  pkcs11-tool --module "$MODULE" --init-token --label "$LABEL" --so-pin "$SO_PIN"
}

init_pin() {
  # The SO (GNUTLS_SO_PIN) sets the user PIN (GNUTLS_PIN).
  p11tool_ --initialize-pin "$TOKEN_URL"
  pkcs11-tool --module "$MODULE" --list-token-slots | tee "$WORK/o"
  expect_in "$WORK/o" "PIN initialized"
}

list_tokens() {
  p11tool_ --list-tokens | tee "$WORK/tokens"
  expect_in "$WORK/tokens" "Label: $LABEL\$"
  expect_in "$WORK/tokens" "Manufacturer: FerroHSM"
  expect_in "$WORK/tokens" "URL: pkcs11:.*token=$LABEL"
  p11tool_ --list-token-urls | tee "$WORK/urls"
  expect_in "$WORK/urls" "token=$LABEL"
}

list_mechanisms() {
  p11tool_ --list-mechanisms "$TOKEN_URL" | tee "$WORK/o"
  for m in CKM_ECDSA CKM_ECDSA_KEY_PAIR_GEN CKM_RSA_PKCS_KEY_PAIR_GEN CKM_SHA256_RSA_PKCS_PSS \
    CKM_AES_GCM CKM_SHA256; do
    expect_in "$WORK/o" "$m( |$)"
  done
}

wrong_pin() {
  if GNUTLS_PIN="wrong-pin-0" p11tool_ --login --list-privkeys "$TOKEN_URL" >"$WORK/o" 2>&1; then
    cat "$WORK/o"
    echo "p11tool logged in with a wrong PIN"
    return 1
  fi
  cat "$WORK/o"
  expect_in "$WORK/o" "[Ww]rong (PIN|password)"
}

# gen TYPE LABEL OPTIONS... : generate on the token; the public key p11tool prints is
# kept as LABEL.gen.pem and parsed by openssl.
gen() {
  local type="$1" label="$2"
  shift 2
  p11tool_ --login --generate-privkey "$type" --label "$label" "$@" \
    --outfile "$WORK/$label.gen.pem" "$TOKEN_URL"
  ossl pkey -pubin -in "$WORK/$label.gen.pem" -noout -text | tee "$WORK/$label.txt"
}
gen_ec256() {
  gen ECDSA gnutls-ec --curve secp256r1
  expect_in "$WORK/gnutls-ec.txt" "Public-Key: \(256 bit\)"
  expect_in "$WORK/gnutls-ec.txt" "prime256v1|P-256"
}
gen_ec384() {
  gen ECDSA gnutls-ec384 --curve secp384r1
  expect_in "$WORK/gnutls-ec384.txt" "Public-Key: \(384 bit\)"
  expect_in "$WORK/gnutls-ec384.txt" "secp384r1|P-384"
}
gen_rsa() {
  gen RSA gnutls-rsa --bits 2048
  expect_in "$WORK/gnutls-rsa.txt" "Public-Key: \(2048 bit\)"
}

list_privkeys() {
  p11tool_ --login --list-privkeys "$TOKEN_URL" | tee "$WORK/privkeys"
  expect_in "$WORK/privkeys" "object=gnutls-ec;type=private"
  expect_in "$WORK/privkeys" "object=gnutls-ec384;type=private"
  expect_in "$WORK/privkeys" "object=gnutls-rsa;type=private"
  expect_in "$WORK/privkeys" "Type: Private key \(EC/ECDSA-SECP256R1\)"
  expect_in "$WORK/privkeys" "Type: Private key \(EC/ECDSA-SECP384R1\)"
  expect_in "$WORK/privkeys" "Type: Private key \(RSA-2048\)"
  expect_in "$WORK/privkeys" "CKA_SENSITIVE"
}

list_without_login() {
  # No login: the public keys are listed, no private key is.
  p11tool_ --list-all "$TOKEN_URL" | tee "$WORK/all"
  expect_in "$WORK/all" "object=gnutls-ec;type=public"
  expect_in "$WORK/all" "object=gnutls-rsa;type=public"
  expect_not_in "$WORK/all" "type=private"
}

# test_sign LABEL [--sign-params P]: p11tool signs with the private key and checks the
# signature against the private key's parameters and against the token's public key.
test_sign() {
  local label="$1"
  shift
  p11tool_ --login --test-sign "$@" "$TOKEN_URL;object=$label;type=private" 2>&1 | tee "$WORK/o"
  expect_in "$WORK/o" "Signing using .*\.\.\. ok"
  expect_in "$WORK/o" "Verifying against private key parameters\.\.\. ok"
  expect_in "$WORK/o" "Verifying against public key in the token\.\.\. ok"
}
test_sign_ec() {
  test_sign gnutls-ec
  expect_in "$WORK/o" "ECDSA-SHA256"
}
test_sign_ec384() {
  test_sign gnutls-ec384 --hash SHA384
  expect_in "$WORK/o" "ECDSA-SHA384"
}
test_sign_rsa() {
  test_sign gnutls-rsa
  expect_in "$WORK/o" "RSA-SHA256"
  test_sign gnutls-rsa --hash SHA512
  expect_in "$WORK/o" "RSA-SHA512"
}
test_sign_rsa_pss() {
  test_sign gnutls-rsa --sign-params RSA-PSS
  expect_in "$WORK/o" "RSA-PSS-SHA256"
}

export_pubkey() {
  # The public key exported now (a new process) is the one generation printed.
  p11tool_ --login --export-pubkey --outfile "$WORK/gnutls-ec.exp.pem" \
    "$TOKEN_URL;object=gnutls-ec;type=private"
  ossl pkey -pubin -in "$WORK/gnutls-ec.exp.pem" -outform DER -out "$WORK/a.der"
  ossl pkey -pubin -in "$WORK/gnutls-ec.gen.pem" -outform DER -out "$WORK/b.der"
  cmp "$WORK/a.der" "$WORK/b.der"
}

delete_key() {
  p11tool_ --login --generate-privkey ECDSA --curve secp256r1 --label gnutls-doomed \
    --outfile "$WORK/doomed.pem" "$TOKEN_URL"
  p11tool_ --login --list-privkeys "$TOKEN_URL" | tee "$WORK/o"
  expect_in "$WORK/o" "object=gnutls-doomed;type=private"
  p11tool_ --login --delete "$TOKEN_URL;object=gnutls-doomed"
  p11tool_ --login --list-all "$TOKEN_URL" | tee "$WORK/o"
  expect_not_in "$WORK/o" "object=gnutls-doomed"
  expect_in "$WORK/o" "object=gnutls-ec;type=private"
}

random() {
  p11tool_ --generate-random 32 "$TOKEN_URL" >"$WORK/r1"
  p11tool_ --generate-random 32 "$TOKEN_URL" >"$WORK/r2"
  # The first line of each file is the echoed command.
  local a b
  a=$(tail -c 32 "$WORK/r1" | od -An -tx1 | tr -d ' \n')
  b=$(tail -c 32 "$WORK/r2" | od -An -tx1 | tr -d ' \n')
  echo "random: $a / $b"
  [ "${#a}" -eq 64 ] && [ "$a" != "$b" ]
}

step "pkcs11-tool --init-token creates the token" init_token
step "p11tool --initialize-pin: the SO sets the user PIN (GNUTLS_SO_PIN, GNUTLS_PIN)" init_pin
step "p11tool --list-tokens / --list-token-urls show the token" list_tokens
step "p11tool --list-mechanisms lists the built mechanisms" list_mechanisms
step "p11tool --login with a wrong GNUTLS_PIN is refused" wrong_pin
step "p11tool --generate-privkey ECDSA --curve secp256r1 --login --label" gen_ec256
step "p11tool --generate-privkey ECDSA --curve secp384r1 --login --label" gen_ec384
step "p11tool --generate-privkey RSA --bits 2048 --login --label" gen_rsa
step "p11tool --list-privkeys --login lists the three keys" list_privkeys
step "p11tool --list-all without login shows public keys only" list_without_login
step "p11tool --test-sign EC P-256 key (ECDSA-SHA256)" test_sign_ec
step "p11tool --test-sign EC P-384 key --hash SHA384 (ECDSA-SHA384)" test_sign_ec384
step "p11tool --test-sign RSA key (RSA-SHA256 and RSA-SHA512, PKCS#1 v1.5)" test_sign_rsa
step "p11tool --test-sign RSA key --sign-params RSA-PSS" test_sign_rsa_pss
step "p11tool --export-pubkey equals the generated public key" export_pubkey
step "p11tool --delete removes one key, the others stay" delete_key
step "p11tool --generate-random" random

echo "p11tool.sh: all $STEP steps passed"
