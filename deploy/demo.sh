#!/usr/bin/env bash
# `make demo`: a simulated platform (about 300 accounts over 7 days, two DPRK teams among them)
# published to a local Kafka, the worker's findings live, the cases they make, then their
# quality against the truth.
# Exits non-zero when a detector's recall falls under 0.9.
# DEMO_PORT, DEMO_DATA_DIR and DAYLIGHT_METRICS_PORT move it out of the way of another broker.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${DEMO_PORT:-9092}
DATA=${DEMO_DATA_DIR:-.daylight/kafka-data}
WORLD=.daylight/demo-world
export DAYLIGHT_BOOTSTRAP_SERVERS=127.0.0.1:$PORT
export DAYLIGHT_APP_ID=${DAYLIGHT_APP_ID:-daylight-demo}
export DAYLIGHT_DATA_DIR=${DAYLIGHT_DATA_DIR:-.daylight/demo-worker}
export DAYLIGHT_METRICS_PORT=${DAYLIGHT_METRICS_PORT:-9108}
started=$(date +%s)

# A fresh demo world each run: the findings shown are this run's only.
"$BIN/daylight" broker stop --port "$PORT" --data-dir "$DATA" > /dev/null
rm -rf "$DATA" "$DAYLIGHT_DATA_DIR" "$WORLD"
"$BIN/daylight" broker start --port "$PORT" --data-dir "$DATA"
"$BIN/daylight" topics create > /dev/null
"$BIN/daylight" simulate --out "$WORLD" --seed "${DEMO_SEED:-7}" --accounts 300 --days 7 --teams 2

"$BIN/daylight" worker > .daylight/demo-worker.log 2>&1 &
worker=$!
trap 'kill -TERM $worker 2>/dev/null; wait $worker 2>/dev/null || true' EXIT
echo "worker pid $worker (log .daylight/demo-worker.log); metrics on http://127.0.0.1:$DAYLIGHT_METRICS_PORT/metrics"

# The world as one file, every topic in time order, as the platform's bus carries it: the
# worker reads the topics at their own pace and waits where a judgment needs another topic
# (README, "Event order").
"$BIN/daylight" produce --progress "$WORLD/events.jsonl"

# Findings as they arrive, until the worker has read everything and 5 s pass without a new one.
"$BIN/python" deploy/wait_for_worker.py "$DAYLIGHT_METRICS_PORT" all \
  "$(grep -c . "$WORLD/events.jsonl")" 600 &
caught_up=$!
"$BIN/daylight" alerts tail --from-beginning --live --idle 20 --out "$WORLD/alerts.jsonl" &
tail_pid=$!
wait $caught_up
"$BIN/daylight" alerts tail --from-beginning --idle 5 --json > "$WORLD/alerts.jsonl.all"
kill -INT $tail_pid 2>/dev/null || true
wait $tail_pid 2>/dev/null || true
mv "$WORLD/alerts.jsonl.all" "$WORLD/alerts.jsonl"

# The analysts' view: one case per suspected identity or team, ranked by risk. The case
# agent works through the findings after the detectors: read the cases until they settle.
previous=""
for _ in $(seq 1 30); do
  "$BIN/daylight" cases list --json > "$WORLD/cases.jsonl"
  current=$(md5sum < "$WORLD/cases.jsonl")
  [ "$current" = "$previous" ] && break
  previous=$current
  sleep 2
done
echo
"$BIN/daylight" cases list --open

echo
"$BIN/daylight" evaluate "$WORLD/alerts.jsonl" "$WORLD/truth.json" --cases "$WORLD/cases.jsonl" \
  --min-recall 0.9
echo "demo took $(( $(date +%s) - started )) s. The broker keeps running:" \
  "\`$BIN/daylight broker stop --port $PORT\` stops it."
