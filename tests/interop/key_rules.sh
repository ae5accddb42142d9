#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Interop test of a key's own rules with unmodified clients: a code-signing key whose
# every signature needs 2 of 3 approvals. `pkcs11-tool --sign` is refused and opens a
# request bound to the SHA-256 of the data; one approver signs with an Ed25519 key that
# lives in a SoftHSM2 token (through its PKCS#11 module), another with a key file; the
# same `--sign` then signs once (openssl verifies), other data still needs approvals, and
# a key without the rule signs as before. Then a use limit of 3: the fourth signature is
# refused.
#
#   tests/interop/key_rules.sh /path/to/libferrohsm_pkcs11.so
#
# Needs: opensc (pkcs11-tool), gnutls-bin (p11tool), openssl, softhsm2.
set -euo pipefail

NAME=key_rules
MODULE="${1:-}"
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_tools pkcs11-tool p11tool openssl softhsm2-util
CLI="$(dirname "$MODULE")/ferrohsm"
[ -x "$CLI" ] || { echo "FAIL: no ferrohsm CLI beside the module ($CLI)"; exit 1; }
SOFTHSM=/usr/lib/softhsm/libsofthsm2.so
[ -f "$SOFTHSM" ] || { echo "FAIL: no SoftHSM2 module at $SOFTHSM"; exit 1; }

LABEL="interop-key-rules"
SO_PIN="so-secret-1"
USER_PIN="user-secret-1"
export T_SO_PIN="$SO_PIN" T_USER_PIN="$USER_PIN" T_APPROVER_PIN="4321"

p11() {
  echo "+ pkcs11-tool $*"
  pkcs11-tool --module "$MODULE" "$@"
}
p11u() { p11 --token-label "$LABEL" --login --pin "$USER_PIN" "$@"; }

cli() { store_cli "$@"; }

# The approver alice's token: SoftHSM2 with an Ed25519 key pair that never leaves it.
alice_token() {
  mkdir -p "$WORK/softhsm"
  printf 'directories.tokendir = %s\n' "$WORK/softhsm" >"$WORK/softhsm2.conf"
  export SOFTHSM2_CONF="$WORK/softhsm2.conf"
  softhsm2-util --init-token --free --label alice-card --so-pin 87654321 --pin "$T_APPROVER_PIN"
  pkcs11-tool --module "$SOFTHSM" --token-label alice-card --login --pin "$T_APPROVER_PIN" \
    --keypairgen --key-type EC:edwards25519 --label alice
}

# signs ID DATA SIG (OpenSC 0.23 picks the signing key by --id; --label is not used).
signs() {
  p11u --sign --id "$1" -m ECDSA-SHA256 --signature-format openssl -i "$2" -o "$3"
}

refused() {
  if signs "$@" >"$WORK/o" 2>&1; then
    cat "$WORK/o"
    echo "signed without the approvals"
    return 1
  fi
  cat "$WORK/o"
  expect_in "$WORK/o" "failed: rv = .*0x1b"
}

setup() {
  export SOFTHSM2_CONF="$WORK/softhsm2.conf"
  p11 --init-token --label "$LABEL" --so-pin "$SO_PIN"
  p11 --token-label "$LABEL" --init-pin --login --login-type so --so-pin "$SO_PIN" --pin "$USER_PIN"
  p11u --keypairgen --key-type EC:prime256v1 --id 51 --label release-root
  p11u --keypairgen --key-type EC:prime256v1 --id 52 --label ordinary
  alice_token
  for a in bob carol; do
    ossl genpkey -algorithm ed25519 -out "$WORK/$a.pem"
    ossl pkey -in "$WORK/$a.pem" -pubout -out "$WORK/$a.pub.pem"
  done
  cli quorum add-approver --name alice --pkcs11-module "$SOFTHSM" --token-label alice-card \
    --key-label alice --so-pin-env T_SO_PIN
  for a in bob carol; do
    cli quorum add-approver --name "$a" --public-key "$WORK/$a.pub.pem" --so-pin-env T_SO_PIN
  done
  cli key list --user-pin-env T_USER_PIN | tee "$WORK/keys"
  KEY=$(awk '$2 == "release-root" { print $1 }' "$WORK/keys")
  [ -n "$KEY" ] || { echo "ferrohsm key list does not show release-root"; return 1; }
  echo "$KEY" >"$WORK/key"
  cli quorum key "$KEY" --rule use=2 --so-pin-env T_SO_PIN
  cli quorum show | tee "$WORK/o"
  expect_in "$WORK/o" "key $KEY: use needs 2 approvals"
  head -c 4096 /dev/urandom >"$WORK/release.tar"
  head -c 4096 /dev/urandom >"$WORK/other.tar"
}

first_signature_is_refused() {
  export SOFTHSM2_CONF="$WORK/softhsm2.conf"
  refused 51 "$WORK/release.tar" "$WORK/sig"
  cli approvals list | tee "$WORK/list"
  local r hash
  r=$(awk '$2 == "pending" { print $1 }' "$WORK/list" | tail -1)
  [ -n "$r" ] || { echo "no pending request"; return 1; }
  echo "$r" >"$WORK/request"
  hash=$(sha256sum "$WORK/release.tar" | cut -d' ' -f1)
  cli approvals show "$r" | tee "$WORK/o"
  # What approvers compare with the artifact before they sign.
  expect_in "$WORK/o" "sha256:$hash"
  # A key without the rule signs as before.
  signs 52 "$WORK/release.tar" "$WORK/sig-ordinary"
}

approvers_sign_through_a_token_and_a_file() {
  export SOFTHSM2_CONF="$WORK/softhsm2.conf"
  local r
  r=$(cat "$WORK/request")
  if cli approvals approve "$r" --pkcs11-module "$SOFTHSM" --token-label alice-card \
      --key-label alice --token-pin-env T_USER_PIN; then
    echo "the token key signed with a wrong PIN"
    return 1
  fi
  cli approvals approve "$r" --pkcs11-module "$SOFTHSM" --token-label alice-card \
    --key-label alice --token-pin-env T_APPROVER_PIN
  refused 51 "$WORK/release.tar" "$WORK/sig"
  cli approvals approve "$r" --key "$WORK/bob.pem" | tee "$WORK/o"
  expect_in "$WORK/o" "approved"
}

approved_signature_runs_once_and_for_that_data() {
  export SOFTHSM2_CONF="$WORK/softhsm2.conf"
  refused 51 "$WORK/other.tar" "$WORK/sig-other"
  signs 51 "$WORK/release.tar" "$WORK/sig"
  echo "+ p11tool --export-pubkey"
  GNUTLS_PIN="$USER_PIN" p11tool --provider "$MODULE" --login --export-pubkey \
    --outfile "$WORK/root.pub.pem" "pkcs11:token=$LABEL;object=release-root;type=public"
  ossl dgst -sha256 -verify "$WORK/root.pub.pem" -signature "$WORK/sig" "$WORK/release.tar"
  refused 51 "$WORK/release.tar" "$WORK/sig2"
}

a_use_limit_holds() {
  cli key list --user-pin-env T_USER_PIN | tee "$WORK/keys"
  local key
  key=$(awk '$2 == "ordinary" { print $1 }' "$WORK/keys")
  # Raising a key's rules needs the quorum now (the largest rule is 2).
  if cli quorum key "$key" --max-uses 3 --so-pin-env T_SO_PIN; then
    echo "a key's rules changed without the quorum"
    return 1
  fi
  local r
  r=$(awk '$2 == "pending" { print $1 }' <(cli approvals list) | tail -1)
  cli approvals approve "$r" --key "$WORK/bob.pem"
  cli approvals approve "$r" --key "$WORK/carol.pem"
  cli quorum key "$key" --max-uses 3 --so-pin-env T_SO_PIN
  # One signature was made already, before the limit; the limit counts from now.
  signs 52 "$WORK/release.tar" "$WORK/s1"
  signs 52 "$WORK/release.tar" "$WORK/s2"
  signs 52 "$WORK/release.tar" "$WORK/s3"
  refused 52 "$WORK/release.tar" "$WORK/s4"
  cli quorum show | tee "$WORK/o"
  expect_in "$WORK/o" "key $key: used 3 of 3 times"
}

step "token, a code-signing key and an ordinary one, approvers (one key in SoftHSM2), rule use=2 on the first" setup
step "pkcs11-tool --sign is refused (0x1b); the request shows the data's SHA-256; another key signs" first_signature_is_refused
step "alice approves with her SoftHSM2 token (a wrong PIN signs nothing), bob with a file" approvers_sign_through_a_token_and_a_file
step "approved: other data is refused, the data signs once (openssl verifies), then needs approvals again" approved_signature_runs_once_and_for_that_data
step "a use limit set under the quorum: three signatures, the fourth refused" a_use_limit_holds
