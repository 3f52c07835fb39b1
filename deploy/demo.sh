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

"$BIN/daylight" produce "$EVENTS"
echo "findings on daylight.alerts (stops after 20 s without a new one):"
"$BIN/daylight" alerts tail --from-beginning --idle 20 | tee .daylight/demo-findings.txt
found=$(grep -c . .daylight/demo-findings.txt || true)
echo "$found finding(s). The broker keeps running: \`$BIN/daylight broker stop --port $PORT\` stops it."
