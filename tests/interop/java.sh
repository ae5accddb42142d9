#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Interop test: a Java application uses the built module through the JDK's own SunPKCS11
# provider (no FerroHSM code on the Java side), and keytool manages keys on it.
#
#   tests/interop/java.sh /path/to/libferrohsm_pkcs11.so
#
# pkcs11-tool makes the token and its keys (EC P-256 "javaec" id 01, RSA-2048 "javarsa"
# id 02, AES-256 "javaaes" id 03); each key pair gets an X.509 certificate (issued by a
# throwaway openssl CA for the token's public key, stored with the same CKA_ID and label),
# because SunPKCS11's KeyStore only shows private keys that have one. Then
# tests/interop/java/FerroHsmJava.java (compiled with plain javac into the temporary
# directory) signs, verifies, encrypts, digests and draws random numbers through
# SunPKCS11 and checks everything against the JDK's software providers; then keytool
# generates a key pair with a certificate on the token and makes a CSR that openssl
# verifies.
#
# Prints one `PASS: ...` / `FAIL: ...` line per check. The setup steps stop at the first
# failure (nothing after them could run); the Java checks all run and the script exits 1
# if any failed. Needs: opensc (pkcs11-tool), openssl, a JDK 17 or later (java, javac,
# keytool). JAVA_DEBUG=1 runs Java with -Djava.security.debug=sunpkcs11 (every PKCS#11
# call SunPKCS11 makes, on stderr).
set -euo pipefail

NAME=java
MODULE="${1:-}"
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_tools pkcs11-tool openssl xxd java javac keytool
HERE="$(cd "$(dirname "$0")" && pwd)"

LABEL="interop-java"
SO_PIN="so-secret-1"
USER_PIN="user-secret-1"
CONFIG="$WORK/sunpkcs11.cfg"
JAVA_OPTS=()
if [ -n "${JAVA_DEBUG:-}" ]; then
  JAVA_OPTS+=(-Djava.security.debug=sunpkcs11)
fi

p11() {
  echo "+ pkcs11-tool $*"
  pkcs11-tool --module "$MODULE" "$@"
}
p11t() { p11 --token-label "$LABEL" "$@"; }
p11u() { p11t --login --pin "$USER_PIN" "$@"; }
kt() {
  echo "+ keytool $*"
  keytool -keystore NONE -storetype PKCS11 -addprovider SunPKCS11 -providerArg "$CONFIG" \
    -storepass "$USER_PIN" "$@"
}

# ---------------------------------------------------------------------------- steps

compile() {
  mkdir -p "$WORK/classes"
  echo "+ javac -d $WORK/classes $HERE/java/FerroHsmJava.java"
  javac -Xlint:all -Werror -d "$WORK/classes" "$HERE/java/FerroHsmJava.java"
  java -version
}

init_token() {
  p11 --list-slots | tee "$WORK/slots-before"
  expect_in "$WORK/slots-before" "uninitialized"
  p11 --init-token --label "$LABEL" --so-pin "$SO_PIN"
  p11t --init-pin --login --login-type so --so-pin "$SO_PIN" --pin "$USER_PIN"
  p11 --list-token-slots | tee "$WORK/slots-after"
  expect_in "$WORK/slots-after" "token label +: $LABEL"
  expect_in "$WORK/slots-after" "PIN initialized"
}

keygen() {
  p11u --keypairgen --key-type EC:prime256v1 --id 01 --label javaec | tee "$WORK/o"
  expect_in "$WORK/o" "EC_POINT 256 bits"
  p11u --keypairgen --key-type rsa:2048 --id 02 --label javarsa | tee "$WORK/o"
  expect_in "$WORK/o" "RSA 2048 bits"
  # --usage-decrypt sets CKA_ENCRYPT and CKA_DECRYPT on a secret key; --keygen always
  # makes a token object (checked below from another process).
  p11u --keygen --key-type AES:32 --id 03 --label javaaes --usage-decrypt | tee "$WORK/o"
  expect_in "$WORK/o" "Secret Key Object; AES length 32"
  expect_in "$WORK/o" "Usage: +encrypt, decrypt"
}

# cert_for ID LABEL: an X.509 certificate for the token's public key ID, signed by a
# throwaway CA (openssl -force_pubkey), written to the token with the same ID and label.
cert_for() {
  local id="$1" label="$2"
  # p11tool exports it: OpenSC 0.23's --read-object of EC public keys reads freed memory
  # and fails now and then (see pkcs11-tool.sh, export_ec).
  GNUTLS_PIN="$USER_PIN" p11tool --provider "$MODULE" --login --export-pubkey \
    --outfile "$WORK/$label.pub.pem" "pkcs11:token=$LABEL;id=%$id;type=public"
  ossl x509 -req -in "$WORK/ca.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -force_pubkey "$WORK/$label.pub.pem" -subj "/CN=$label" -days 30 -set_serial "0x$id" \
    -outform DER -out "$WORK/$label.crt.der"
  p11u --write-object "$WORK/$label.crt.der" --type cert --id "$id" --label "$label"
}

certificates() {
  ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/ca.key" \
    -subj "/CN=FerroHSM java interop CA" -days 30 -out "$WORK/ca.pem"
  ossl req -new -key "$WORK/ca.key" -subj "/CN=placeholder" -out "$WORK/ca.csr"
  cert_for 01 javaec
  cert_for 02 javarsa
  # A fresh process sees every token object.
  p11u --list-objects | tee "$WORK/objects"
  local t
  for t in "Private Key Object; EC" "Private Key Object; RSA" "Certificate Object" \
    "Secret Key Object; AES length 32"; do
    expect_in "$WORK/objects" "$t"
  done
  for t in javaec javarsa javaaes; do expect_in "$WORK/objects" "label: +$t\$"; done
}

config() {
  # The token's slot id, by label, from pkcs11-tool's "Slot N (0xID): ..." lines.
  p11 --list-token-slots | tee "$WORK/slots"
  local hexid
  hexid=$(awk -v l="$LABEL" '/^Slot [0-9]+ \(0x[0-9a-fA-F]+\)/ { s = $3; gsub(/[():]/, "", s) }
    /token label/ { sub(/^[^:]*: /, ""); if ($0 == l) print s }' "$WORK/slots")
  [ -n "$hexid" ] || { echo "no slot holds the token $LABEL"; return 1; }
  cat >"$CONFIG" <<CFG
name = FerroHSM
library = $MODULE
slot = $((hexid))
CFG
  cat "$CONFIG"
}

keytool_genkeypair() {
  kt -genkeypair -alias javakt -keyalg EC -groupname secp256r1 -sigalg SHA256withECDSA \
    -dname "CN=javakt" -validity 30 2>&1 | tee "$WORK/o"
  kt -list 2>&1 | tee "$WORK/o"
  expect_in "$WORK/o" "^javakt, PrivateKeyEntry"
  expect_in "$WORK/o" "^javaec, PrivateKeyEntry"
  expect_in "$WORK/o" "^javarsa, PrivateKeyEntry"
  expect_in "$WORK/o" "^javaaes, SecretKeyEntry"
  # What keytool stored are token objects pkcs11-tool sees. SunPKCS11 labels the
  # certificate with the alias and gives the private key CKA_ID = the alias's bytes and
  # no label (P11KeyStore.storeChain / storePkey).
  p11u --list-objects | tee "$WORK/o"
  expect_in "$WORK/o" "ID: +$(printf javakt | xxd -p)\$"
  expect_in "$WORK/o" "label: +javakt\$"
  p11u --list-objects --type privkey | tee "$WORK/o"
  expect_in "$WORK/o" "ID: +$(printf javakt | xxd -p)\$"
}

keytool_certreq() {
  kt -certreq -alias javakt -file "$WORK/javakt.csr" 2>&1 | tee "$WORK/o"
  ossl req -in "$WORK/javakt.csr" -verify -noout -subject 2>&1 | tee "$WORK/o"
  expect_in "$WORK/o" "verify OK|self-signature ok"
  expect_in "$WORK/o" "CN ?= ?javakt"
  kt -exportcert -alias javakt -rfc -file "$WORK/javakt.pem"
  # keytool's self-signed certificate was signed on the token: openssl checks it.
  ossl verify -CAfile "$WORK/javakt.pem" -check_ss_sig "$WORK/javakt.pem" | tee "$WORK/o"
  expect_in "$WORK/o" ": OK"
}

step "javac compiles tests/interop/java/FerroHsmJava.java" compile
step "init token and user PIN with pkcs11-tool" init_token
step "pkcs11-tool generates javaec (EC P-256, id 01), javarsa (RSA 2048, id 02), javaaes (AES-256, id 03)" keygen
step "certificates for javaec and javarsa (openssl CA) written to the token with their CKA_ID" certificates
step "SunPKCS11 configuration names the token's slot" config

JAVA_RC=0
echo "+ java -cp $WORK/classes FerroHsmJava $CONFIG <user PIN>"
set +e
java ${JAVA_OPTS[@]+"${JAVA_OPTS[@]}"} -cp "$WORK/classes" FerroHsmJava "$CONFIG" "$USER_PIN" \
  2>"$WORK/java.stderr" | tee "$WORK/java.stdout"
JAVA_RC=${PIPESTATUS[0]}
set -e
if [ -n "${JAVA_DEBUG:-}" ]; then
  cat "$WORK/java.stderr"
elif [ "$JAVA_RC" -ne 0 ]; then
  echo "---- java stderr (exit $JAVA_RC) ----"
  sed 's/^/    /' "$WORK/java.stderr" | head -300
  echo "---- end of java stderr ----"
fi
if [ "$JAVA_RC" -ne 0 ] && ! grep -q '^FAIL: ' "$WORK/java.stdout"; then
  echo "FAIL: the Java program exited with status $JAVA_RC without reporting a failing check"
fi

step "keytool -genkeypair on the PKCS11 keystore; keytool -list and pkcs11-tool see it" keytool_genkeypair
step "keytool -certreq and -exportcert sign on the token; openssl verifies both" keytool_certreq

if [ "$JAVA_RC" -ne 0 ]; then
  echo "java.sh: the Java checks failed (exit $JAVA_RC)"
  exit 1
fi
echo "java.sh: all steps and Java checks passed"
