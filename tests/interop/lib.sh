# shellcheck shell=bash
# Shared by the bash interop tests in this directory. Source it after `set -euo pipefail`
# and after setting NAME (used in the temporary directory's name); it needs $1, the
# module path, in MODULE.
#
# It gives: MODULE (absolute), WORK (a private temporary directory removed on exit),
# FERROHSM_CONF (exported; a fresh store inside WORK with a cheap KDF and
# max_failures = 5), and the helpers `step`, `expect_in`, `expect_not_in`, `ossl`.

[ -n "${MODULE:-}" ] || { echo "usage: $0 /path/to/libferrohsm_pkcs11.so" >&2; exit 2; }
[ -f "$MODULE" ] || { echo "FAIL: module $MODULE does not exist"; exit 1; }
MODULE="$(cd "$(dirname "$MODULE")" && pwd)/$(basename "$MODULE")"

# require_tools TOOL...: a missing client is a failure, never a silent skip.
require_tools() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "FAIL: $t is not installed"; exit 1; }
  done
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ferrohsm-${NAME:-interop}.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
chmod 700 "$WORK"
# FERROHSM_MODE: "auto" (the default: every client reaches the store through one
# ferrohsm-server, started on demand) or "embedded" (each client opens the store itself).
cat >"$WORK/ferrohsm.toml" <<CONF
mode = "${FERROHSM_MODE:-auto}"
store = "$WORK/store"
log_level = "warn"
[kdf]
m_kib = 256
t_cost = 1
p_cost = 1
[pin_policy]
min_len = 4
max_len = 64
max_failures = 5
[server]
idle_exit_secs = 2
CONF
export FERROHSM_CONF="$WORK/ferrohsm.toml"

ossl() {
  echo "+ openssl $*"
  openssl "$@"
}

# store_cli ARGS…: the ferrohsm CLI ($CLI, beside the module) on $WORK/store, on the
# store itself or through the server holding it (mode "auto"). A server that was exiting
# idle (idle_exit_secs = 2) just as the CLI connected is retried.
store_cli() {
  echo "+ ferrohsm $*"
  local i rc
  for i in 1 2 3 4 5; do
    rc=0
    "$CLI" "$@" --store "$WORK/store" >"$WORK/cli.out" 2>"$WORK/cli.err" || rc=$?
    if [ "$rc" = 0 ] || ! grep -q "its server does not answer" "$WORK/cli.err"; then
      cat "$WORK/cli.out" "$WORK/cli.err"
      return "$rc"
    fi
    sleep 0.5
  done
  cat "$WORK/cli.err"
  return 1
}

# expect_in FILE PATTERN: the step fails unless PATTERN (grep -E) is in FILE.
expect_in() {
  if ! grep -Eq -- "$2" "$1"; then
    echo "expected /$2/ in the output above"
    return 1
  fi
}
expect_not_in() {
  if grep -Eq -- "$2" "$1"; then
    echo "did not expect /$2/ in the output above"
    return 1
  fi
}

STEP=0
# step "description" function [args...]: runs the function in a subshell with errexit on
# (so any failing command fails the step; the subshell is not in a condition, so errexit
# really applies inside it), logs everything, and prints PASS or FAIL. On failure it
# prints the step's log and exits 1. With SHOW_LOG set, the log is printed on success
# too.
step() {
  local name="$1"
  shift
  STEP=$((STEP + 1))
  local log="$WORK/step-$STEP.log"
  local rc=0
  set +e
  (
    set -e
    "$@"
  ) >"$log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    echo "PASS: $name"
    if [ -n "${SHOW_LOG:-}" ]; then
      sed 's/^/    /' "$log"
    fi
  else
    echo "FAIL: $name"
    echo "---- log of the failing step (exit $rc) ----"
    sed 's/^/    /' "$log"
    echo "---- end of log ----"
    exit 1
  fi
}
