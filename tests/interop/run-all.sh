#!/usr/bin/env bash
# Runs every interop test in this directory against one built module and ends with the
# line `N passed, M failed` (counted over the PASS:/FAIL: lines of all the scripts), exit
# status non-zero if anything failed.
#
#   tests/interop/run-all.sh [/path/to/libferrohsm_pkcs11.so]
#
# The module defaults to the cargo target directory's debug build. As root it installs
# the Debian packages the clients come from when they are missing (like
# tools/lib/common.sh); otherwise it prints the apt-get line to run.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
MODULE="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/ferrohsm-target}/debug/libferrohsm_pkcs11.so}"

# opensc: pkcs11-tool; gnutls-bin: p11tool; openssl: independent verification;
# python3-pykcs11: the semantics checks; xxd: hex to DER in pkcs11-tool.sh; softhsm2: the
# other token in softhsm2_keywrap.py; prometheus and curl: metrics.sh scrapes the server.
PACKAGES=(opensc gnutls-bin openssl python3-pykcs11 python3-cryptography xxd softhsm2 prometheus curl)

ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "==> installing missing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "missing system packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    echo "0 passed, 1 failed"
    exit 1
  fi
}

ensure_packages

if [ ! -f "$MODULE" ]; then
  echo "FAIL: module $MODULE does not exist (cargo build -p hsm-pkcs11)"
  echo "0 passed, 1 failed"
  exit 1
fi

LOGS="$(mktemp -d "${TMPDIR:-/tmp}/ferrohsm-interop-logs.XXXXXX")"
trap 'rm -rf "$LOGS"' EXIT

# All three scripts test one and the same binary, even if cargo relinks the module
# while they run.
ORIGINAL_MODULE="$MODULE"
cp "$ORIGINAL_MODULE" "$LOGS/$(basename "$ORIGINAL_MODULE")"
MODULE="$LOGS/$(basename "$ORIGINAL_MODULE")"
echo "==> module under test: $ORIGINAL_MODULE (sha256 $(sha256sum "$MODULE" | cut -c1-16)...)"
# The lifecycle test drives the ferrohsm CLI built with the module.
if [ -x "$(dirname "$ORIGINAL_MODULE")/ferrohsm" ]; then
  cp "$(dirname "$ORIGINAL_MODULE")/ferrohsm" "$LOGS/ferrohsm"
fi
# In mode "auto" the module starts the ferrohsm-server beside it: the one built with it.
SERVER="$(dirname "$ORIGINAL_MODULE")/ferrohsm-server"
if [ -x "$SERVER" ]; then
  cp "$SERVER" "$LOGS/ferrohsm-server"
else
  echo "==> no $SERVER: mode \"auto\" will look on PATH"
fi
# FERROHSM_MODES: the modes to run every script in (default both: "embedded", each
# client opening the store itself, and "auto", every client through one server).
read -r -a MODES <<<"${FERROHSM_MODES:-embedded auto}"

TOTAL_PASS=0
TOTAL_FAIL=0
SUMMARY=()

# run NAME COMMAND...: streams the script's output, then counts its PASS:/FAIL: lines.
# A script killed by a signal, or failing without a FAIL: line (a missing tool), counts
# one more failure; so does one that exits 0 in spite of FAIL: lines.
run() {
  local name="$1"
  shift
  local log="$LOGS/${name//\//.}.log" rc=0
  echo
  echo "==> $name"
  set +e
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  local p f
  p=$(grep -c '^PASS: ' "$log" || true)
  f=$(grep -c '^FAIL: ' "$log" || true)
  if [ "$rc" -gt 128 ]; then
    echo "FAIL: $name was killed by signal $((rc - 128)) (a crash in the module or client?)"
    f=$((f + 1))
  elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL: $name exited with status $rc without reporting a failing check"
    f=1
  elif [ "$rc" -eq 0 ] && [ "$f" -ne 0 ]; then
    echo "FAIL: $name exited 0 although $f checks failed"
    f=$((f + 1))
  fi
  TOTAL_PASS=$((TOTAL_PASS + p))
  TOTAL_FAIL=$((TOTAL_FAIL + f))
  SUMMARY+=("$(printf '%-28s %3d passing checks, %d failing, exit %d' "$name" "$p" "$f" "$rc")")
}

for mode in "${MODES[@]}"; do
  export FERROHSM_MODE="$mode"
  run "pkcs11-tool/$mode" bash "$HERE/pkcs11-tool.sh" "$MODULE"
  run "p11tool/$mode" bash "$HERE/p11tool.sh" "$MODULE"
  run "python_semantics/$mode" /usr/bin/python3 "$HERE/python_semantics.py" "$MODULE"
  run "openssl_crosscheck/$mode" /usr/bin/python3 "$HERE/openssl_crosscheck.py" "$MODULE"
  run "softhsm2_keywrap/$mode" /usr/bin/python3 "$HERE/softhsm2_keywrap.py" "$MODULE"
  run "passthrough/$mode" bash "$HERE/passthrough.sh" "$MODULE"
  run "yubihsm/$mode" bash "$HERE/yubihsm.sh" "$MODULE"
  run "lifecycle/$mode" bash "$HERE/lifecycle.sh" "$MODULE"
  run "approvals/$mode" bash "$HERE/approvals.sh" "$MODULE"
  run "key_rules/$mode" bash "$HERE/key_rules.sh" "$MODULE"
  run "metrics/$mode" bash "$HERE/metrics.sh" "$MODULE"
  run "java/$mode" bash "$HERE/java.sh" "$MODULE"
  run "cryptoki_crate/$mode" bash "$HERE/cryptoki_crate.sh" "$MODULE"
done

echo
echo "==> interop summary (module: $ORIGINAL_MODULE)"
for line in "${SUMMARY[@]}"; do
  echo "  $line"
done
echo "$TOTAL_PASS passed, $TOTAL_FAIL failed"
[ "$TOTAL_FAIL" -eq 0 ]
