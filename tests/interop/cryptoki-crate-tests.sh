#!/usr/bin/env bash
# Run the cryptoki crate's own integration tests (shipped in its crates.io
# package) against a FerroHSM PKCS#11 module.
#
# Usage: tests/interop/cryptoki-crate-tests.sh /path/to/libferrohsm_pkcs11.so [test-binary...]
#   test binaries default to: basic allowed_mechanisms wycheproof
#   (ml_dsa, ml_kem, slh_dsa are post-quantum mechanisms FerroHSM does not offer.)
#
# Each test runs in its own process with a fresh store directory: the crate's
# common::init_pins() calls C_InitToken on the first slot in every test, and one
# failing test can otherwise leave sessions open and break every later test in
# the same process.
#
# Env: WORK (default /tmp/cryptoki-tests), CRYPTOKI_VERSION (default 0.12.1).
# Writes WORK/results.tsv (binary, test, ok|FAILED|ignored) and WORK/logs/.
set -uo pipefail

MODULE=${1:?usage: $0 /path/to/libferrohsm_pkcs11.so [test-binary...]}
shift
MODULE=$(readlink -f "$MODULE")
[ -f "$MODULE" ] || { echo "no such module: $MODULE" >&2; exit 2; }
BINS=("$@")
[ ${#BINS[@]} -eq 0 ] && BINS=(basic allowed_mechanisms wycheproof)

VER=${CRYPTOKI_VERSION:-0.12.1}
WORK=${WORK:-/tmp/cryptoki-tests}
mkdir -p "$WORK"
WORK=$(readlink -f "$WORK")

SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/index.crates.io-*/cryptoki-"$VER" 2>/dev/null | head -n1)
if [ -z "$SRC" ]; then
    # Not unpacked yet: let cargo fetch it through a throwaway manifest.
    mkdir -p "$WORK/fetch/src"
    printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ncryptoki = "=%s"\n' "$VER" > "$WORK/fetch/Cargo.toml"
    : > "$WORK/fetch/src/lib.rs"
    (cd "$WORK/fetch" && cargo fetch -q) || exit 2
    SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/index.crates.io-*/cryptoki-"$VER" | head -n1)
fi

CRATE="$WORK/cryptoki-$VER"
rm -rf "$CRATE"
cp -r "$SRC" "$CRATE"

export CARGO_TARGET_DIR="$WORK/target"
TEST_ARGS=()
for b in "${BINS[@]}"; do TEST_ARGS+=(--test "$b"); done
(cd "$CRATE" && cargo test --no-run -q "${TEST_ARGS[@]}") || { echo "build failed" >&2; exit 2; }

mkdir -p "$WORK/logs"
: > "$WORK/results.tsv"
pass=0; fail=0; ign=0
for b in "${BINS[@]}"; do
    exe=$(cd "$CRATE" && cargo test --no-run "${TEST_ARGS[@]}" 2>&1 \
          | sed -n "s|.*Executable tests/$b.rs (\(.*\))|\1|p")
    [ -x "$exe" ] || { echo "no executable for $b" >&2; exit 2; }
    for t in $("$exe" --list 2>/dev/null | sed -n 's/: test$//p'); do
        store="$WORK/store/$b/$t"
        rm -rf "$store"; mkdir -p "$store"
        conf="$store.toml"
        cat > "$conf" <<CONF
mode = "${FERROHSM_MODE:-auto}"
store = "$store"
log_level = "warn"
[kdf]
m_kib = 256
t_cost = 1
p_cost = 1
[server]
idle_exit_secs = 2
CONF
        log="$WORK/logs/$b.$t.log"
        FERROHSM_CONF="$conf" TEST_PKCS11_MODULE="$MODULE" RUST_BACKTRACE=0 \
            timeout 120 "$exe" --exact "$t" --test-threads=1 > "$log" 2>&1
        if grep -q "^test $t \.\.\. ignored" "$log"; then r=ignored; ign=$((ign+1))
        elif grep -q "^test result: ok. 1 passed" "$log"; then r=ok; pass=$((pass+1))
        else r=FAILED; fail=$((fail+1)); fi
        printf '%s\t%s\t%s\n' "$b" "$t" "$r" >> "$WORK/results.tsv"
        printf '%-20s %-50s %s\n' "$b" "$t" "$r"
    done
done
echo "$pass passed, $fail failed ($ign ignored)"
