#!/usr/bin/env bash
# prometheus: shop's metrics as operators scrape them.  A cluster (shop
# preloaded) with a shop of known numbers (setup.sql: orders and payments
# in every state the gateway flow makes, low and broken stock, a lapsed
# hold, an idle cart, searches, consumer groups behind); Debian's
# prometheus-postgres-exporter runs on a free loopback port with
# contrib/prometheus/shop-queries.yaml, connected as a login role in
# shop_monitor and pg_monitor, and one scrape of /metrics over HTTP must
# carry every metric with the right value.  Then:
#   - contrib/prometheus/shop-alerts.yaml passes `promtool check rules`,
#     names only exported metrics, and fed the scraped series
#     (`promtool test rules`) fires exactly the alerts this shop deserves;
#   - contrib/grafana/shop.json parses, and its panels query only exported
#     metrics and show every shop metric;
#   - the monitoring role reads nothing of shop but the monitor functions.
set -euo pipefail
TOP=${TOP:?}
. "$TOP/scripts/pgenv.sh"
PGBIN=${PGBIN:?}

NAME=prometheus
DIR="$TOP/tmp_check/$NAME"
PORT=$(free_port $NAME)
EXPORTER=$(command -v prometheus-postgres-exporter || true)
PROMTOOL=$(command -v promtool || true)
[ -n "$EXPORTER" ] && [ -n "$PROMTOOL" ] && command -v curl >/dev/null ||
    { echo "prometheus-postgres-exporter, promtool (package prometheus) and curl are needed: scripts/install-deps.sh installs them"; exit 1; }

# shop preloaded: the sweeper's launcher runs, but its first round is a
# day away, so nothing is swept behind the test's back
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "shop.sweep_interval = 86400"
cluster_start "$DIR"
exporter_pid=""
cleanup() {
    [ -n "$exporter_pid" ] && kill "$exporter_pid" 2>/dev/null || true
    cluster_stop "$DIR" immediate
}
trap cleanup EXIT
cluster_env "$DIR" "$PORT"
export PGDATABASE=shop
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
"$PGBIN/createdb" shop

# "today" must be the same day for the set-up and the scrape
left=$("${PSQL[@]}" -At -c "SELECT ceil(extract(epoch FROM date_trunc('day', now()) + interval '1 day' - now()))")
if [ "$left" -lt 180 ]; then
    echo "waiting $((left + 5)) s for midnight to pass"
    sleep $((left + 5))
fi

"${PSQL[@]}" -f "$TOP/test/prometheus/setup.sql" >"$DIR/setup.out"

# the exporter, as the monitoring login, on a loopback port
EPORT=$(free_port $NAME-exporter)
DATA_SOURCE_NAME="host=$DIR port=$PORT user=prom_exporter dbname=shop sslmode=disable" \
    "$EXPORTER" --web.listen-address="127.0.0.1:$EPORT" \
    --extend.query-path="$TOP/contrib/prometheus/shop-queries.yaml" >"$DIR/exporter.log" 2>&1 &
exporter_pid=$!
for i in $(seq 1 60); do
    if curl -sf "http://127.0.0.1:$EPORT/metrics" -o "$DIR/metrics.txt" &&
        grep -q '^shop_outbox_groups' "$DIR/metrics.txt"; then
        break
    fi
    kill -0 "$exporter_pid" 2>/dev/null || { echo "the exporter exited:"; cat "$DIR/exporter.log"; exit 1; }
    sleep 1
done
grep -q '^shop_outbox_groups' "$DIR/metrics.txt" 2>/dev/null ||
    { echo "no shop metrics scraped in 60 s:"; tail -20 "$DIR/exporter.log"; exit 1; }

# Expected values: the set-up's numbers, and for sums and times what the
# tables say (read as the superuser, not through the monitor functions)
"${PSQL[@]}" -At >"$DIR/expect.txt" <<'SQL'
SELECT format('shop_orders_today{status="%s"} = %s', s, n) FROM (VALUES
    ('pending', 1), ('paid', 2), ('cancelled', 2), ('fulfilling', 0), ('shipped', 0),
    ('delivered', 0), ('returned', 0), ('refunded', 0)) v(s, n);
SELECT format('shop_orders_today_cents{status="%s"} = %s', s,
              (SELECT coalesce(sum(total_cents), 0) FROM shop."order" o
                WHERE o.status = s AND o.created_at >= date_trunc('day', now())))
  FROM unnest(ARRAY['pending', 'paid', 'cancelled', 'shipped']) s;
SELECT 'shop_order_pending = 2';
SELECT 'shop_order_oldest_pending_seconds range 172800 173400';
SELECT format('shop_payments_today{status="%s"} = %s', s, n) FROM (VALUES
    ('pending', 1), ('captured', 2), ('failed', 2), ('authorized', 0), ('voided', 0), ('refunded', 0)) v(s, n);
SELECT format('shop_payments_recent{status="%s"} = %s', s, n) FROM (VALUES
    ('pending', 1), ('captured', 2), ('failed', 2), ('authorized', 0)) v(s, n);
SELECT 'shop_payment_failures_payments = 5';
SELECT 'shop_payment_failures_failed = 2';
SELECT 'shop_payment_failures_rate = 0.4';
SELECT 'shop_payment_failures_threshold = 0.5';
SELECT 'shop_payment_failures_window_seconds = 900';
SELECT 'shop_stock_low_products = 1';
SELECT 'shop_stock_out_of_stock_products = 1';
SELECT 'shop_stock_held_units = 4';
SELECT 'shop_stock_holds = 4';
SELECT 'shop_stock_invariant_violations = 1';
SELECT 'shop_search_latency_ms{quantile="0.5"} = 50.5';
SELECT 'shop_search_latency_ms{quantile="0.95"} = 95.05';
SELECT 'shop_search_latency_ms{quantile="0.99"} = 99.01';
SELECT 'shop_search_searches_5m = 100';
SELECT 'shop_search_empty_results_5m = 7';
SELECT 'shop_sweep_lapsed_holds = 1';
SELECT 'shop_sweep_oldest_lapsed_hold_seconds range 345600 346200';
SELECT 'shop_sweep_expired_carts = 1';
SELECT 'shop_sweep_runs = 1';
SELECT format('shop_sweep_last_run_timestamp_seconds = %s', extract(epoch FROM last_run_at)) FROM shop.sweep_state;
SELECT 'shop_sweep_interval_seconds = 86400';
SELECT 'shop_sweep_launcher_running = 1';
SELECT format('shop_outbox_last_event_id = %s', max(event_id)) FROM shop.event;
SELECT 'shop_outbox_groups = 2';
SELECT 'shop_event_group_pending_events{consumer_group="mailer"} = 3';
SELECT 'shop_event_group_pending_events{consumer_group="idle"} = 5';
SELECT format('shop_event_group_oldest_pending_seconds{consumer_group="%s"} range 3900 4500', g)
  FROM unnest(ARRAY['mailer', 'idle']) g;
SELECT 'shop_event_group_batch_out{consumer_group="mailer"} = 1';
SELECT 'shop_event_group_batch_out{consumer_group="idle"} = 0';
SELECT 'shop_event_group_deliveries{consumer_group="mailer"} = 1';
SELECT 'shop_event_group_lease_expired{consumer_group="mailer"} = 0';
SELECT format('shop_event_group_last_ack_timestamp_seconds{consumer_group="%s"} = %s',
              group_name, extract(epoch FROM coalesce(acked_at, created_at)))
  FROM shop.event_group;
SELECT 'shop_recommendations_coverage = 0.5';
SELECT 'shop_recommendations_fallback_share = 0';
SELECT format('shop_recommendations_hr_at_10 = %s', hits::float8 / orders_evaluated) FROM shop.reco_health;
SELECT 'shop_recommendations_evaluated_orders = 4';
SELECT format('shop_recommendations_last_evaluation_timestamp_seconds = %s', extract(epoch FROM evaluated_at)) FROM shop.reco_health;
SELECT format('shop_recommendations_last_refresh_timestamp_seconds = %s', extract(epoch FROM refreshed_at)) FROM shop.copurchase_state;
SELECT 'shop_recommendations_pending_log_rows = 0';
SELECT 'shop_recommendations_refresh_lag_seconds = 0';
SELECT 'shop_recommendations_customers_queued = 0';
SELECT 'shop_recommendations_customers_queue_age_seconds = 0';
-- the exporter itself: connected, every query of the file ran
SELECT 'pg_up = 1';
SELECT 'pg_exporter_last_scrape_error = 0';
SQL

fail=0
echo "== scrape and files"
mkdir -p "$DIR/promtest"
perl "$TOP/test/prometheus/check.pl" "$DIR/metrics.txt" "$DIR/expect.txt" \
    "$TOP/contrib/prometheus/shop-alerts.yaml" "$TOP/contrib/grafana/shop.json" \
    "$DIR/promtest/test.yaml" || fail=1

echo "== promtool check rules"
"$PROMTOOL" check rules "$TOP/contrib/prometheus/shop-alerts.yaml" || fail=1

# The rules fed this shop's series: the rules without their annotations
# (whose text promtool would otherwise compare), evaluated after 20
# minutes.  Firing: the broken stock row, the low stock, the two-day-old
# pending order, the four-day-old lapsed hold, both groups' hour-old
# events.  Quiet: 40% failed payments (threshold 50%), p99 99 ms (limit
# 100), the exporter and database up, no transaction errors.  (ShopSweepStale
# is left out: promtool's time() starts at 0, far before the scraped
# timestamps; ShopRecommendationEvaluationStale too.)
echo "== promtool test rules"
perl -ne 'if (/^(\s*)annotations:/) { $skip = length $1; next }
          if (defined $skip) { /^(\s*)\S/ && length($1) <= $skip ? undef $skip : next }
          print' "$TOP/contrib/prometheus/shop-alerts.yaml" >"$DIR/promtest/rules.yaml"
cat >>"$DIR/promtest/test.yaml" <<'YAML'
    alert_rule_test:
      - eval_time: 20m
        alertname: ShopInventoryInvariantBroken
        exp_alerts:
          - exp_labels: {severity: critical}
      - eval_time: 20m
        alertname: ShopLowStock
        exp_alerts:
          - exp_labels: {severity: info}
      - eval_time: 20m
        alertname: ShopPendingOrdersStuck
        exp_alerts:
          - exp_labels: {severity: warning}
      - eval_time: 20m
        alertname: ShopSweeperLagging
        exp_alerts:
          - exp_labels: {severity: warning}
      - eval_time: 20m
        alertname: ShopEventConsumerBehind
        exp_alerts:
          - exp_labels: {severity: warning, consumer_group: idle}
          - exp_labels: {severity: warning, consumer_group: mailer}
      - eval_time: 20m
        alertname: ShopPaymentFailureRate
        exp_alerts: []
      - eval_time: 20m
        alertname: ShopSearchLatencyHigh
        exp_alerts: []
      - eval_time: 20m
        alertname: ShopEventBacklog
        exp_alerts: []
      - eval_time: 20m
        alertname: ShopEventBatchRedelivered
        exp_alerts: []
      - eval_time: 20m
        alertname: ShopRecommendationsLagging
        exp_alerts: []
      - eval_time: 20m
        alertname: ShopRecommendationQualityDrop
        exp_alerts: []
      - eval_time: 20m
        alertname: ShopDatabaseDown
        exp_alerts: []
      - eval_time: 20m
        alertname: ShopMetricsFailing
        exp_alerts: []
      - eval_time: 20m
        alertname: ShopTransactionErrorRate
        exp_alerts: []
YAML
(cd "$DIR/promtest" && "$PROMTOOL" test rules test.yaml) || fail=1

# The monitoring login reads the monitor functions and nothing else of shop
echo "== the monitoring role"
for stmt in 'SELECT count(*) FROM shop."order"' 'SELECT count(*) FROM shop.payment' \
            'SELECT count(*) FROM shop.search_log' 'SELECT count(*) FROM shop.sweep_state' \
            'SELECT shop.metrics()' 'SELECT * FROM shop.event_claim($$x$$)' 'SELECT shop._sweep_once()'; do
    if out=$("$PGBIN/psql" -X -At -U prom_exporter -c "$stmt" 2>&1); then
        echo "FAIL: prom_exporter may run: $stmt"; fail=1
    elif ! grep -q "permission denied" <<<"$out"; then
        echo "FAIL: $stmt as prom_exporter: $out"; fail=1
    fi
done
n=$("$PGBIN/psql" -X -At -U prom_exporter -c "SELECT count(*) FROM shop.monitor_orders()")
[ "$n" = 8 ] || { echo "FAIL: shop.monitor_orders() as prom_exporter gave $n rows"; fail=1; }

if [ "$fail" != 0 ]; then
    echo "prometheus: FAILED (scrape in $DIR/metrics.txt, exporter log in $DIR/exporter.log)"
    exit 1
fi
echo "prometheus: ok"
