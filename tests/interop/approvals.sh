#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Interop test of dual control with unmodified clients: with a 2-of-3 rule on destroy,
# `pkcs11-tool --delete-object` is refused and opens a request; approvers sign it with
# Ed25519 keys made by openssl (`ferrohsm approvals approve`); one approver cannot count
# twice and a key that is not registered counts for nothing; the repeated
# `--delete-object` then succeeds once, and a second key still needs its own approvals.
#
#   tests/interop/approvals.sh /path/to/libferrohsm_pkcs11.so
#
# Needs: opensc (pkcs11-tool), openssl.
set -euo pipefail

NAME=approvals
MODULE="${1:-}"
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_tools pkcs11-tool openssl
CLI="$(dirname "$MODULE")/ferrohsm"
[ -x "$CLI" ] || { echo "FAIL: no ferrohsm CLI beside the module ($CLI)"; exit 1; }

LABEL="interop-approvals"
SO_PIN="so-secret-1"
USER_PIN="user-secret-1"
export T_SO_PIN="$SO_PIN"

p11() {
  echo "+ pkcs11-tool $*"
  pkcs11-tool --module "$MODULE" "$@"
}
p11u() { p11 --token-label "$LABEL" --login --pin "$USER_PIN" "$@"; }

cli() { store_cli "$@"; }

setup() {
  # A descriptor without close-on-exec, as `flock` or a redirection leaves one: the server
  # the module starts (mode "auto") must not keep it (checked below).
  exec 9>"$WORK/inherited.lock"
  p11 --init-token --label "$LABEL" --so-pin "$SO_PIN"
  p11 --token-label "$LABEL" --init-pin --login --login-type so --so-pin "$SO_PIN" --pin "$USER_PIN"
  p11u --keygen --key-type AES:32 --id 01 --label doomed
  p11u --keygen --key-type AES:32 --id 02 --label other
  for a in alice bob carol mallory; do
    ossl genpkey -algorithm ed25519 -out "$WORK/$a.pem"
    ossl pkey -in "$WORK/$a.pem" -pubout -out "$WORK/$a.pub.pem"
  done
  for a in alice bob carol; do
    cli quorum add-approver --name "$a" --public-key "$WORK/$a.pub.pem" --so-pin-env T_SO_PIN
  done
  cli quorum set --rule destroy=2 --so-pin-env T_SO_PIN
  cli quorum show | tee "$WORK/o"
  expect_in "$WORK/o" "rule: destroy needs 2 approvals"
  expect_in "$WORK/o" "changes of approvers or rules need 2 approvals"
}

first_delete_is_refused() {
  if p11u --delete-object --type secrkey --label doomed >"$WORK/o" 2>&1; then
    cat "$WORK/o"
    echo "the key was deleted without approvals"
    return 1
  fi
  cat "$WORK/o"
  # CKR_ACTION_PROHIBITED (OpenSC 0.23 prints only its number).
  expect_in "$WORK/o" "C_DestroyObject\(\) failed: rv = .*0x1b"
  cli approvals list | tee "$WORK/list"
  expect_in "$WORK/list" "pending +0/2 +user +destroy key object"
  REQUEST=$(awk '$2 == "pending" { print $1 }' "$WORK/list")
  echo "request $REQUEST"
  echo "$REQUEST" >"$WORK/request"
}

approvals_count_once_and_only_registered_keys() {
  local r
  r=$(cat "$WORK/request")
  cli approvals approve "$r" --key "$WORK/alice.pem"
  if cli approvals approve "$r" --key "$WORK/alice.pem"; then
    echo "alice approved twice"
    return 1
  fi
  if cli approvals approve "$r" --key "$WORK/mallory.pem"; then
    echo "an unregistered key approved"
    return 1
  fi
  # Still refused with one approval.
  if p11u --delete-object --type secrkey --label doomed >"$WORK/o" 2>&1; then
    echo "deleted with one approval of two"
    return 1
  fi
  cli approvals approve "$r" --key "$WORK/carol.pem" | tee "$WORK/o"
  expect_in "$WORK/o" "approved"
}

approved_delete_runs_once() {
  p11u --delete-object --type secrkey --label doomed
  p11u --list-objects --type secrkey | tee "$WORK/o"
  expect_not_in "$WORK/o" "label: +doomed\$"
  expect_in "$WORK/o" "label: +other\$"
  cli approvals list | tee "$WORK/list"
  expect_in "$WORK/list" "^$(cat "$WORK/request") +used "
  # The approvals released that key only.
  if p11u --delete-object --type secrkey --label other >"$WORK/o" 2>&1; then
    echo "another key was deleted with the first key's approvals"
    return 1
  fi
}

server_kept_nothing_inherited() {
  if [ "${FERROHSM_MODE:-auto}" != auto ]; then
    echo "embedded: no server"
    return 0
  fi
  local pid
  pid=$(pgrep -f -- "--config $WORK/ferrohsm.toml serve" | head -1)
  [ -n "$pid" ] || { echo "no server runs for $WORK"; return 1; }
  ls -l "/proc/$pid/fd" | tee "$WORK/fds"
  expect_not_in "$WORK/fds" "inherited.lock"
}

audit_log_holds_it_all() {
  # Read-only beside the server (mode auto) or after the module's process (embedded).
  "$CLI" audit export --store "$WORK/store" >"$WORK/audit.jsonl"
  local server=""
  if [ "${FERROHSM_MODE:-auto}" = auto ]; then
    server=$(pgrep -f -- "--config $WORK/ferrohsm.toml serve" | head -1 || true)
  fi
  python3 - "$WORK/audit.jsonl" "$server" <<'PY'
import json, sys
recs = [json.loads(line) for line in open(sys.argv[1])]
server = int(sys.argv[2]) if sys.argv[2] else None
def find(what, pred):
    hits = [r for r in recs if pred(r)]
    if not hits:
        sys.exit("missing from the log: " + what)
    return hits
refused = find("the refused C_DestroyObject (CKR_ACTION_PROHIBITED)",
               lambda r: r["op"] == "object.destroy" and r.get("call") == "C_DestroyObject"
               and r["result"] == 0x1b)
find("the approval request it opened", lambda r: r["op"] == "approval.request.destroy")
find("two approvals", lambda r: r["op"] == "approval.approve")
find("the approved destroy", lambda r: r["op"] == "object.destroy" and r["result"] == 0)
for r in refused:
    pid = r["actor"].get("pid")
    if pid is None or pid == server:
        sys.exit(f"the record names pid {pid}, not the client's (server: {server})")
print(f"{len(recs)} records; the refusal names client pid {refused[0]['actor']['pid']}")
PY
  cli audit verify | tee "$WORK/o"
  expect_in "$WORK/o" "^ok$"
}

step "token, two AES keys, three approvers (openssl Ed25519 keys), rule destroy=2" setup
step "pkcs11-tool --delete-object is refused (CKR_ACTION_PROHIBITED, 0x1b) and opens a request" first_delete_is_refused
step "one approver counts once, an unregistered key not at all, one approval is not enough" approvals_count_once_and_only_registered_keys
step "with two approvals --delete-object succeeds, once, for that key only" approved_delete_runs_once
step "the server the module started keeps no descriptor the client inherited" server_kept_nothing_inherited
step "ferrohsm audit: the refusal, the request, the approvals and the delete are in the log, which verifies" audit_log_holds_it_all
