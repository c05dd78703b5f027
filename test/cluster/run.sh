#!/usr/bin/env bash
# cluster: shop past one machine (issue 16, docs/scale-out.md). A router
# cluster (database "router" with shop_router, PL/Proxy) in front of two
# shard clusters holding two shard databases each: 4 partitions, p0 and p2
# on cluster A, p1 and p3 on cluster B. A small catalog is loaded through
# the router, and the same calls build a one-node reference database
# ("one", on cluster A). Checks, made from a "checker" database that reads
# every database with dblink:
#   - every product is on the partition hashint8(product_id) & 3 names, and
#     only there; categories and synonyms are on every shard, as one node
#     has them; a replicated write through the router reaches every shard;
#   - search through the router equals the merge of the shards' own
#     searches (top-k, sorts, pagination) and finds what one node finds;
#     facet counts equal one node's; autocomplete and did_you_mean answer;
#   - the public API (api.sql): every function of shop is on the router or
#     documented as not routed, and a representative call of each routed
#     family answers as one node does; also_bought and product_get's list
#     after shop_router.copurchase_move moved the co-purchase counts of
#     orders on every shard (and after a move retried: nothing counted twice);
#   - the calls keep a node's privileges (the storefront and back-office
#     roles) and its errors (SQLSTATE).
#   - carts, checkout and orders (saga.sql), as the back office and as the
#     storefront with its session, and the oversell race (race.sh: 64
#     storefront clients);
#   - direct holds (reserve, reserve_many, release, commit, extend) as one
#     node answers them, and rates written to every shard, converging after
#     a shard's failed step, a delayed copy or two routers at once (holds.sql);
#   - the cluster's popularity folded from the shards' change logs equals
#     the whole recomputation after orders, cancellations, views, the
#     window moving and late commits (popfold.sql);
#   - the learned search vocabulary: the router's refresh_search_vocab sums
#     the shards' counts and writes one node's pairs to every shard, and a
#     routed search expands as one node does (vocab.sql);
#   - the routed calls leave PL/Proxy's connections ready: a fresh session
#     after a search whose kept sums a shard refused drops none as stale,
#     and neither do the storefront's common errors and the shards'
#     refusals (browse's arguments, NULL ids, holds, carts, orders, the
#     cart's writes, a checkout's refused holds, its other refusals: an
#     empty cart, a declined payment, a key reused; reserve_many's
#     refusals, orders_for's and cart_create's arguments; a storefront
#     acting for another customer, session_begin's refused token, a
#     checkout of a cart being checked out), each raised as one node
#     raises it (stale.sh); a session token the shards refuse (forged,
#     malformed, expired) in every routed call that carries it, and
#     review_add's, review_delete's, payment_method_add's, recommend's and
#     cart_merge's refusals for another customer (refusals.sh);
#   - a storefront login can neither write the router's search caches (the
#     cluster's intent and DFS sums, kept for every customer) nor learn
#     whether another customer's cart exists: cart_merge and cart_get
#     answer as for an id that never existed (caches.sh);
#   - a refused session_begin (forged, expired, malformed, NULL token)
#     forgets the session begun before it, as on one node, also when its
#     transaction or savepoint is rolled back; so do session_end and a
#     successful session_begin rolled back (forget.sh);
#   - the read route (replica.sh): with shop_router.read_cluster naming a
#     second server whose partitions are a shard cluster's hot standby, the
#     read functions answer as without it, served by the standby; writes
#     still reach the primaries;
#   - a shard that is down (down.sh): partition 3 unreachable, each
#     common call answers as docs/scale-out.md says (XX000 from PL/Proxy
#     naming [s3] for what needs it, the others answer), a checkout
#     refused then holds nothing and its key checks out once the shard is
#     back; a shard cluster stopped under a session (57P01 or XX000);
#   - the read route's fallbacks (replica_ha.sh): a partition naming the
#     standby and then the primary (prefer-standby) answers with the
#     standby killed and returns to it; shop_router.read_max_lag reads the
#     lagging partitions' primaries while the standby's replay is paused,
#     one check per period for the router database; a standby stopped with
#     SIGSTOP costs a call the router's statement_timeout;
# CLUSTER_LONG=1 (make cluster-test) also runs the race longer (25 checkouts
# a client) and measures the 4-shard top 10
# against one node's on a larger catalog (test/cluster/measure.sh).
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
. "$TOP/scripts/cluster.sh"
BASE="$TOP/tmp_check/cluster"
trap 'shop_cluster_down immediate' EXIT
shop_cluster_up "$BASE"
ONE="host=$A port=$PA dbname=one"
# the one-node reference, on cluster A
"$PGBIN/createdb" -h "$A" -p "$PA" one
q "$A" "$PA" one -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"

# The catalog: the same calls through the router (as the back office) and
# on the reference node. Ids are the router's (a sequence) and the
# reference's (its identity column): the same when called in the same order.
FIXTURE=$(cat <<'SQL'
SET client_min_messages = warning;
SELECT shop.category_add('Computers') AS comp \gset
SELECT shop.category_add('Audio') AS audio \gset
SELECT shop.category_add('Laptops', :comp) AS c0 \gset
SELECT shop.category_add('Mice', :comp) AS c1 \gset
SELECT shop.category_add('Speakers', :audio) AS c2 \gset
SELECT shop.category_add('Headphones', :audio) AS c3 \gset
SELECT shop.category_add('Laptops', :comp) = :c0 AS same_category_again \gset
SELECT shop.synonym_add('notebook', ARRAY['laptop']) \g /dev/null
SELECT set_config('fixture.cats', format('{%s,%s,%s,%s}', :c0, :c1, :c2, :c3), false) \g /dev/null
DO $$
DECLARE
    cats bigint[] := current_setting('fixture.cats')::bigint[];
    nouns text[][] := ARRAY[['laptop', 'ultrabook', 'laptop'], ['mouse', 'wireless mouse', 'trackball'],
                            ['speaker', 'bluetooth speaker', 'soundbar'], ['headphones', 'headset', 'earbuds']];
    brands text[][] := ARRAY[['Lenovo', 'HP', 'Dell', 'Asus'], ['Logitech', 'Microsoft', 'Logitech', 'Cherry'],
                             ['Sony', 'JBL', 'Philips', 'Sony'], ['Sony', 'Jabra', 'Philips', 'Jabra']];
    models text[] := ARRAY['pro', 'elite', 'nova', 'swift', 'zen', 'air'];
    colours text[] := ARRAY['black', 'white', 'blue', 'red'];
    c int; b text; t text; id bigint;
BEGIN
    FOR g IN 1..240 LOOP
        c := 1 + g % 4;
        b := brands[c][1 + (g / 4) % 4];
        t := format('%s %s %s %s %s', b, initcap(models[1 + g % 6]), 100 + (g * 37) % 900,
                    nouns[c][1 + (g / 3) % 3], colours[1 + (g / 5) % 4]);
        IF g % 47 = 0 THEN
            t := t || ' chromebook';          -- a rare word: on few shards
        END IF;
        id := shop.product_upsert(format('FX-%s', g), t, 1000 + (g * 7919) % 200000,
                                  description => format('%s with %s.', nouns[c][1],
                                      (ARRAY['long battery life', 'noise cancelling', 'fast charging'])[1 + g % 3]),
                                  brand => b, category_id => cats[c],
                                  attributes => jsonb_build_object('colour', colours[1 + (g / 5) % 4]),
                                  product_id => CASE WHEN g > 200 THEN 5000 + 13 * g END);
        PERFORM shop.stock_set(id, g % 5);
        IF g % 3 = 0 THEN
            PERFORM shop.review_add(id, 1 + g % 7, 1 + (g * 7) % 5);
        END IF;
    END LOOP;
END
$$;
SQL
)
echo "== loading the catalog through the router and into the reference node ($(date +%T))"
echo "$FIXTURE" | q "$R" "$PR" router -U backoffice
echo "$FIXTURE" | q "$A" "$PA" one -U backoffice
# a load ends with VACUUM on every shard (docs/scale-out.md): it folds the
# search index's pending documents into a segment, where did_you_mean
# looks for its corrections, and makes each shard's statistics exact
for i in 0 1 2 3; do
    dir=$A port=$PA; [ $((i % 2)) = 1 ] && dir=$B port=$PB
    q "$dir" "$port" "s$i" -c "VACUUM (ANALYZE) shop.product"
done
q "$A" "$PA" one -c "VACUUM (ANALYZE) shop.product"

q "$R" "$PR" postgres -c "CREATE DATABASE checker"
q "$R" "$PR" checker -c "SET client_min_messages = warning; CREATE EXTENSION dblink"
echo "== checks ($(date +%T))"
q "$R" "$PR" checker -v p0="${PART[0]}" -v p1="${PART[1]}" -v p2="${PART[2]}" -v p3="${PART[3]}" \
    -v one="$ONE" -v router="$ROUTER" -f "$HERE/checks.sql"

echo "== the public API through the router against one node ($(date +%T))"
q "$R" "$PR" checker -v p0="${PART[0]}" -v p1="${PART[1]}" -v p2="${PART[2]}" -v p3="${PART[3]}" \
    -v one="$ONE" -v router="$ROUTER" -f "$HERE/api.sql"

echo "== carts, checkout and orders through the router ($(date +%T))"
q "$R" "$PR" checker -v p0="${PART[0]}" -v p1="${PART[1]}" -v p2="${PART[2]}" -v p3="${PART[3]}" \
    -v one="$ONE" -v router="$ROUTER" -f "$HERE/saga.sql"

. "$HERE/race.sh"
. "$HERE/crash.sh"

# The calls as the roles a node has: the storefront searches and reads
# through the router; the back-office calls are refused to it by the shards,
# with a node's SQLSTATE.
echo "== privileges and errors through the router ($(date +%T))"
state() { q "$R" "$PR" router -U "$1" -At -c "\\set VERBOSITY sqlstate" -c "$2" 2>&1 | tail -1 || true; }
expect() {
    local got
    got=$(state "$1" "$2" | sed "s/^ERROR:  //")
    [ "$got" = "$3" ] || { echo "FAIL: as $1, $2: expected $3, got: $got"; exit 1; }
    echo "ok: as $1, $2 -> $3"
}
expect web "SELECT count(*) FROM shop.search('laptop', lim => 5)" 5
expect web "SELECT (shop.product_get(1))->>'sku'" FX-1
expect web "SELECT shop.search_facets('laptop')->>'total' <> '0'" t
expect web "SELECT shop.category_add('Nope')" 42501
expect web "SELECT count(*) FROM shop.similar_products(3, 5)" 5
expect web "SELECT count(*) FROM shop.trending(NULL, 5)" 5
expect web "SELECT shop.view(1, 3)" 42501
expect web "SELECT count(*) FROM shop.recently_viewed(1)" 42501
expect web "SELECT shop.stock_set(1, 5)" 42501
expect web "SELECT shop.synonym_add('a', ARRAY['b'])" 42501
expect backoffice "SELECT shop.product_get(999999999)" SH006
expect backoffice "SELECT count(*) FROM shop.search('laptop', lim => 0)" 22023
expect backoffice "SELECT count(*) FROM shop.search('laptop', off => -1)" 22023
expect backoffice "SELECT count(*) FROM shop.search('laptop', sort => 'nope')" 22023
expect backoffice "SELECT shop.product_upsert('FX-1', 'x', 1, product_id => 2)" 23505
expect backoffice "SELECT shop.product_upsert('FX-2', 'Lenovo Nova laptop, renamed', 1500) = 2" t
expect backoffice "SELECT shop.stock_set(2, 7) = 7 AND shop.stock_available(2) = 7" t

echo "== direct holds and replicated rates through the router ($(date +%T))"
q "$R" "$PR" checker -v p0="${PART[0]}" -v p1="${PART[1]}" -v p2="${PART[2]}" -v p3="${PART[3]}" \
    -v one="$ONE" -v router="$ROUTER" -f "$HERE/holds.sql"

echo "== popularity folded from the shards' change logs ($(date +%T))"
q "$R" "$PR" checker -v p0="${PART[0]}" -v p1="${PART[1]}" -v p2="${PART[2]}" -v p3="${PART[3]}" \
    -v one="$ONE" -v router="$ROUTER" -f "$HERE/popfold.sql"

echo "== the learned search vocabulary, learned once for the cluster ($(date +%T))"
q "$R" "$PR" checker -v p0="${PART[0]}" -v p1="${PART[1]}" -v p2="${PART[2]}" -v p3="${PART[3]}" \
    -v one="$ONE" -v router="$ROUTER" -f "$HERE/vocab.sql"

. "$HERE/stale.sh"
. "$HERE/refusals.sh"
. "$HERE/caches.sh"
. "$HERE/forget.sh"
. "$HERE/replica.sh"
. "$HERE/replica_ha.sh"
. "$HERE/down.sh"

if [ "${CLUSTER_LONG:-0}" = 1 ]; then
    . "$HERE/measure.sh"
fi
echo "cluster: ok"
