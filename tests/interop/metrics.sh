#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Interop test of the metrics with a real Prometheus: pkcs11-tool signs five times and
# tries one wrong PIN; in mode "auto" the ferrohsm-server the module started serves
# /metrics, a Prometheus server (Debian's `prometheus`) started here scrapes it, and its
# HTTP API must return the counts those calls caused. In mode "embedded" the module
# writes the node_exporter textfile instead. Both outputs pass `promtool check metrics`,
# and no series carries the key's label.
#
#   tests/interop/metrics.sh /path/to/libferrohsm_pkcs11.so
#
# Needs: opensc (pkcs11-tool), prometheus (prometheus, promtool), curl, python3.
set -euo pipefail

NAME=metrics
MODULE="${1:-}"
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_tools pkcs11-tool prometheus promtool curl python3

LABEL="interop-metrics"
KEY_LABEL="metrics-secret-label"
SO_PIN="so-secret-1"
USER_PIN="user-secret-1"
MODE="${FERROHSM_MODE:-auto}"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT=$(free_port)
# The server must outlive the clients while Prometheus scrapes it.
sed -i 's/^idle_exit_secs = 2$/idle_exit_secs = 120/' "$WORK/ferrohsm.toml"
sed -i "/^\[server\]$/a metrics_listen = \"127.0.0.1:$PORT\"" "$WORK/ferrohsm.toml"
cat >>"$WORK/ferrohsm.toml" <<CONF
[metrics]
textfile = "$WORK/ferrohsm.prom"
textfile_interval_secs = 0
CONF

# Steps run in subshells: the Prometheus pid goes through a file.
stop_all() {
  [ -f "$WORK/prometheus.pid" ] && kill "$(cat "$WORK/prometheus.pid")" 2>/dev/null || true
  pkill -f -- "--config $WORK/ferrohsm.toml serve" 2>/dev/null || true
  rm -rf "$WORK"
}
trap stop_all EXIT

p11() {
  echo "+ pkcs11-tool $*"
  pkcs11-tool --module "$MODULE" "$@"
}
p11u() { p11 --token-label "$LABEL" --login --pin "$USER_PIN" "$@"; }

calls() {
  p11 --init-token --label "$LABEL" --so-pin "$SO_PIN"
  p11 --token-label "$LABEL" --init-pin --login --login-type so --so-pin "$SO_PIN" --pin "$USER_PIN"
  p11u --keypairgen --key-type EC:prime256v1 --id 01 --label "$KEY_LABEL"
  head -c 64 /dev/urandom >"$WORK/data"
  for _ in 1 2 3 4 5; do
    p11u --sign --mechanism ECDSA-SHA256 --id 01 --input-file "$WORK/data" --output-file "$WORK/sig"
  done
  if p11 --token-label "$LABEL" --login --pin "wrong-pin-0" --list-objects >"$WORK/o" 2>&1; then
    echo "a wrong PIN logged in"
    return 1
  fi
}

# value QUERY: the first sample's value Prometheus answers for QUERY (empty: none yet).
value() {
  curl -sf --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}

prometheus_sees_the_calls() {
  if [ "$MODE" != auto ]; then
    echo "embedded: no server to scrape (the textfile step covers this mode)"
    return 0
  fi
  curl -sf "http://127.0.0.1:$PORT/metrics" >"$WORK/scrape.txt"
  promtool check metrics <"$WORK/scrape.txt"
  expect_not_in "$WORK/scrape.txt" "$KEY_LABEL"
  PROM_PORT=$(free_port)
  cat >"$WORK/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: ferrohsm
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
YML
  prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
  echo $! >"$WORK/prometheus.pid"
  local i signs="" failures=""
  for i in $(seq 1 60); do
    signs=$(value 'sum(ferrohsm_operations_total{call="C_SignInit",mechanism="CKM_ECDSA_SHA256",result="ok"})' || true)
    failures=$(value 'ferrohsm_login_failures_total' || true)
    [ "$signs" = 5 ] && [ "$failures" = 1 ] && break
    sleep 1
  done
  echo "Prometheus: $signs signatures started, $failures failed logins"
  [ "$signs" = 5 ] || { tail -5 "$WORK/prometheus.log"; echo "expected 5 C_SignInit"; return 1; }
  [ "$failures" = 1 ] || { echo "expected 1 failed login"; return 1; }
  local records up
  records=$(value 'ferrohsm_audit_log_records{token="1"}')
  up=$(value 'up{job="ferrohsm"}')
  echo "audit records: $records, up: $up"
  [ "$up" = 1 ] && [ "${records:-0}" -gt 5 ]
  [ -n "$(value 'ferrohsm_operation_duration_seconds_count{call="C_Sign"}')" ]
}

the_textfile_is_written() {
  # Written by the process that holds the store: the server in mode auto, each
  # pkcs11-tool in mode embedded (then it shows the last one's calls).
  local f="$WORK/ferrohsm.prom"
  [ -s "$f" ] || { echo "no textfile at $f"; return 1; }
  promtool check metrics <"$f"
  expect_in "$f" '^ferrohsm_operations_total\{call="C_Login",mechanism="none",result="pin_incorrect"\} 1$'
  expect_not_in "$f" "$KEY_LABEL"
  if [ "$MODE" = auto ]; then
    expect_in "$f" '^ferrohsm_operations_total\{call="C_SignInit",mechanism="CKM_ECDSA_SHA256",result="ok"\} 5$'
  fi
}

step "pkcs11-tool: a token, a P-256 key, five signatures, one wrong PIN" calls
step "a real Prometheus scrapes the server and its API returns those counts (mode auto)" prometheus_sees_the_calls
step "the node_exporter textfile holds the counters and passes promtool" the_textfile_is_written
