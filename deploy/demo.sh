#!/usr/bin/env bash
# `make demo`: a local Kafka, the topics, a worker, sample events in, findings out.
# DEMO_PORT, DEMO_DATA_DIR, DEMO_EVENTS and DAYLIGHT_METRICS_PORT move it out of the way of
# another broker (the test suite runs it so).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${DEMO_PORT:-9092}
DATA=${DEMO_DATA_DIR:-.daylight/kafka-data}
EVENTS=${DEMO_EVENTS:-.daylight/demo-events.jsonl}
export DAYLIGHT_BOOTSTRAP_SERVERS=127.0.0.1:$PORT
export DAYLIGHT_APP_ID=${DAYLIGHT_APP_ID:-daylight-demo-$(date +%s)}
export DAYLIGHT_DATA_DIR=${DAYLIGHT_DATA_DIR:-.daylight/demo-worker}
export DAYLIGHT_METRICS_PORT=${DAYLIGHT_METRICS_PORT:-9108}

# A fresh demo world each run: the findings shown are this run's only.
"$BIN/daylight" broker stop --port "$PORT" --data-dir "$DATA" > /dev/null
rm -rf "$DATA" "$DAYLIGHT_DATA_DIR"
"$BIN/daylight" broker start --port "$PORT" --data-dir "$DATA"
"$BIN/daylight" topics create

mkdir -p .daylight
if [ -z "${DEMO_EVENTS:-}" ]; then
  "$BIN/daylight" cases export "$EVENTS"   # the detectors' own cases, positive and negative
fi
"$BIN/daylight" worker > .daylight/demo-worker.log 2>&1 &
worker=$!
trap 'kill -TERM $worker 2>/dev/null; wait $worker 2>/dev/null || true' EXIT
echo "worker pid $worker (log .daylight/demo-worker.log), metrics on http://127.0.0.1:$DAYLIGHT_METRICS_PORT/metrics"

# Profiles first, as on a live platform where an account exists days before its first payout:
# Kafka keeps order within a partition, not across topics (README, "Event order").
grep -E '"type":"(account_created|identity_verified|profile_updated)"' "$EVENTS" > .daylight/demo-accounts.jsonl || true
grep -v -E '"type":"(account_created|identity_verified|profile_updated)"' "$EVENTS" > .daylight/demo-activity.jsonl || true
"$BIN/daylight" produce .daylight/demo-accounts.jsonl
"$BIN/python" deploy/wait_for_worker.py "$DAYLIGHT_METRICS_PORT" platform.accounts \
  "$(grep -c . .daylight/demo-accounts.jsonl)"
"$BIN/daylight" produce .daylight/demo-activity.jsonl
"$BIN/python" deploy/wait_for_worker.py "$DAYLIGHT_METRICS_PORT" all "$(grep -c . "$EVENTS")"
IDLE=${DEMO_IDLE_SECONDS:-5}
echo "findings on daylight.alerts (stops after $IDLE s without a new one):"
"$BIN/daylight" alerts tail --from-beginning --idle "$IDLE" | tee .daylight/demo-findings.txt
echo
echo "findings per detector:"
awk '{print $3}' .daylight/demo-findings.txt | sort | uniq -c
missing=0
for detector in geo_velocity shared_ip remote_access continuous_session payout_routing; do
  grep -q " $detector " .daylight/demo-findings.txt || { echo "no finding from $detector"; missing=1; }
done
echo "The broker keeps running: \`$BIN/daylight broker stop --port $PORT\` stops it."
exit $missing
