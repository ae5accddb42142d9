#!/usr/bin/env bash
# The cryptoki crate's own integration tests against the module, held to the documented
# list of known failures (cryptoki-crate-expected-failures.txt): every test outside the
# list must pass, every test on it must still fail. Prints PASS:/FAIL: lines for
# run-all.sh. The test binaries are built once under the cargo target directory and
# reused by later runs.
#
#   tests/interop/cryptoki_crate.sh /path/to/libferrohsm_pkcs11.so
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
MODULE=${1:?usage: $0 /path/to/libferrohsm_pkcs11.so}
export WORK="${CARGO_TARGET_DIR:-$HOME/.cache/ferrohsm-target}/cryptoki-crate-tests"
EXPECTED="$HERE/cryptoki-crate-expected-failures.txt"

# The crate's tests build with the default toolchain from its own directory; pin ours.
export RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$HERE/../../rust-toolchain.toml")}"

if ! bash "$HERE/cryptoki-crate-tests.sh" "$MODULE" > "$WORK.log" 2>&1; then
  : # a non-zero exit only means some tests failed; the comparison below decides
fi
if [ ! -s "$WORK/results.tsv" ]; then
  echo "FAIL: the cryptoki crate's tests did not run (see $WORK.log)"
  tail -20 "$WORK.log"
  exit 1
fi

fails=0
expected_fail() { grep -q "^$1 $2 " "$EXPECTED"; }
while IFS=$'\t' read -r bin test result; do
  case "$result" in
    ok)
      if expected_fail "$bin" "$test"; then
        echo "FAIL: cryptoki crate $bin::$test now passes: take it off $(basename "$EXPECTED") and docs/pkcs11/cryptoki-crate-tests.md"
        fails=$((fails + 1))
      else
        echo "PASS: cryptoki crate $bin::$test"
      fi ;;
    FAILED)
      if ! expected_fail "$bin" "$test"; then
        echo "FAIL: cryptoki crate $bin::$test fails (a regression? log: $WORK/logs/$bin.$test.log)"
        sed -n '/panicked at/,+3p' "$WORK/logs/$bin.$test.log" | head -8
        fails=$((fails + 1))
      fi ;;
  esac
done < "$WORK/results.tsv"

# Every listed test must have run (a renamed or removed test leaves a stale entry).
while read -r bin test _; do
  case "$bin" in ''|'#'*) continue ;; esac
  if ! grep -q "^$bin	$test	" "$WORK/results.tsv"; then
    echo "FAIL: $bin::$test is listed as a known failure but did not run"
    fails=$((fails + 1))
  fi
done < "$EXPECTED"

echo "cryptoki crate: $(tail -1 "$WORK.log"); $fails differ from $(basename "$EXPECTED")"
[ "$fails" -eq 0 ] || exit 1
