#!/usr/bin/env bash
# saga_race_cost.sh: what the lock and record of a saga's reserve step and
# its compensation cost on a product shard (issue 16, race2: shop.
# _saga_reserve and shop._saga_release take shop._reservation_id_lock, the
# release records in shop.reservation_dropped the ids it found no hold of).
# One backend, one database, the functions before the change (copied from
# the commit given, default HEAD~ of this file's commit: BASE) against the
# installed ones, in alternating blocks of N calls, ROUNDS rounds; each
# block's time is the backend's clock over the block (same-run ratios:
# the machine is shared).  Three calls, each of a saga of 2 products:
#   reserve  _saga_reserve of a new order (2 holds made)
#   release  _saga_release of those holds (the compensation of a saga
#            another shard or the payment refused)
#   nothing  _saga_release of an order never held here (the refusing
#            shard's compensation: the new one records 2 ids)
# PREFILL rows in shop.reservation_dropped first (12 hours old: a busy
# day's refusals, which each release's delete of day-old rows reads).
# Usage: bench/saga_race_cost.sh [N [ROUNDS [BASE [PREFILL]]]]
set -euo pipefail
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TOP/scripts/pgenv.sh"
tmp_install_setup
N=${1:-300}
ROUNDS=${2:-5}
BASE=${3:-7469abf}
PREFILL=${4:-0}
DIR="$TOP/tmp_check/saga_race_cost"
PORT=$(free_port saga_race_cost)
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'shop'" "synchronous_commit = off" \
    "shop.sweep_interval = 3600"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
"$PGBIN/createdb" rc
# the functions as they were at BASE, renamed *_base
OLD=$(git -C "$TOP" show "$BASE:shop--1.0--1.1.sql" | awk '
    /^CREATE FUNCTION shop._saga_reserve\(/ { on = 1 }
    /^CREATE FUNCTION shop._saga_release\(/ { on = 1 }
    on { print } on && /^\$\$;$/ { on = 0 }' |
    sed -e 's/FUNCTION shop._saga_reserve(/FUNCTION shop._saga_reserve_base(/' \
        -e 's/FUNCTION shop._saga_release(/FUNCTION shop._saga_release_base(/')
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d rc <<SQL
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
$OLD
SELECT shop.product_upsert('RC-' || g, 'race cost product ' || g, 1000) FROM generate_series(1, 2) g;
SELECT shop.stock_set(product_id, 100000000) FROM shop.product;
INSERT INTO shop.reservation_dropped SELECT gen_random_uuid(), now() - interval '12 hours' FROM generate_series(1, $PREFILL);
VACUUM ANALYZE shop.reservation_dropped;
CREATE TABLE public.rc_time (round int, variant text, call text, ms float8);
CREATE PROCEDURE public.rc_block(round int, variant text, n int) LANGUAGE plpgsql AS \$\$
DECLARE
    pids bigint[] := ARRAY(SELECT product_id FROM shop.product ORDER BY 1);
    ids uuid[] := ARRAY(SELECT gen_random_uuid() FROM generate_series(1, n));
    nothing uuid[] := ARRAY(SELECT gen_random_uuid() FROM generate_series(1, n));
    t timestamptz;
    sfx text := CASE variant WHEN 'base' THEN '_base' ELSE '' END;
BEGIN
    t := clock_timestamp();
    FOR i IN 1..n LOOP
        EXECUTE format('SELECT count(*) FROM shop._saga_reserve%s(\$1, \$2, ARRAY[1, 1], ''1 hour'')', sfx)
          USING ids[i], pids;
    END LOOP;
    INSERT INTO public.rc_time VALUES (round, variant, 'reserve', extract(epoch FROM clock_timestamp() - t) * 1000);
    COMMIT;
    t := clock_timestamp();
    FOR i IN 1..n LOOP
        EXECUTE format('SELECT shop._saga_release%s(\$1, \$2)', sfx) USING ids[i], pids;
    END LOOP;
    INSERT INTO public.rc_time VALUES (round, variant, 'release', extract(epoch FROM clock_timestamp() - t) * 1000);
    COMMIT;
    t := clock_timestamp();
    FOR i IN 1..n LOOP
        EXECUTE format('SELECT shop._saga_release%s(\$1, \$2)', sfx) USING nothing[i], pids;
    END LOOP;
    INSERT INTO public.rc_time VALUES (round, variant, 'nothing', extract(epoch FROM clock_timestamp() - t) * 1000);
    COMMIT;
END
\$\$;
SQL
for r in $(seq 1 "$ROUNDS"); do
    # alternate which variant runs first
    if [ $((r % 2)) = 1 ]; then order="base new"; else order="new base"; fi
    for v in $order; do
        "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d rc -c "CALL public.rc_block($r, '$v', $N)"
    done
done
"$PGBIN/psql" -X -d rc -c "
SELECT call, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'base')::numeric * 1000 / $N, 1) AS base_us,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = 'new')::numeric * 1000 / $N, 1) AS new_us,
       round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY n.ms / b.ms)
                FROM public.rc_time b JOIN public.rc_time n USING (round, call)
               WHERE b.variant = 'base' AND n.variant = 'new' AND b.call = t.call)::numeric, 3) AS median_ratio_new_base
  FROM public.rc_time t GROUP BY call ORDER BY call"
"$PGBIN/psql" -X -At -d rc -c "SELECT 'tombstones recorded: ' || count(*) - $PREFILL FROM shop.reservation_dropped"
