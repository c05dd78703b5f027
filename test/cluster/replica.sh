# replica.sh (sourced by run.sh): the read route (docs/scale-out.md, "Read
# replicas"). A hot standby of shard cluster A (partitions p0 and p2); a
# second PL/Proxy server shop_cluster_ro whose p0 and p2 are the standby's
# databases, p1 and p3 cluster B's primaries. With shop_router.read_cluster
# = 'shop_cluster_ro', the read functions through the router answer as
# with the setting unset (the standby has replayed), as the storefront and
# the back office; the standby's backends served them (it had none
# before); writes through the router still reach the primaries and the
# reads that follow a write (cart_get) see it at once.
echo "== the read route: hot standbys behind shop_cluster_ro ($(date +%T))"
AS="$BASE/shards_a_standby"
trap 'cluster_stop "$AS" immediate; shop_cluster_down immediate' EXIT
shop_standby_up "$A" "$PA" "$AS"
PAS=$STANDBY_PORT
q "$R" "$PR" router <<SQL
CREATE SERVER shop_cluster_ro FOREIGN DATA WRAPPER plproxy
    OPTIONS (p0 'host=$AS port=$PAS dbname=s0', p1 '${PART[1]}',
             p2 'host=$AS port=$PAS dbname=s2', p3 '${PART[3]}');
CREATE USER MAPPING FOR PUBLIC SERVER shop_cluster_ro;
GRANT USAGE ON FOREIGN SERVER shop_cluster_ro TO shop_storefront, shop_admin;
SQL
standby_caught_up() {
    local lsn i
    lsn=$(q "$A" "$PA" postgres -At -c "SELECT pg_current_wal_lsn()")
    for i in $(seq 1 300); do
        [ "$(q "$AS" "$PAS" postgres -At -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && return 0
        sleep 0.1
    done
    echo "FAIL: the standby did not replay $lsn in 30 s"; exit 1
}
standby_caught_up
commits() { q "$AS" "$PAS" postgres -At -c "SELECT sum(xact_commit) FROM pg_stat_database WHERE datname IN ('s0', 's2')"; }
ro() { PGOPTIONS="-c shop_router.read_cluster=shop_cluster_ro" q "$R" "$PR" router -At -U "$@"; }
rw() { q "$R" "$PR" router -At -U "$@"; }
cat0=$(rw backoffice -c "SELECT min(category_id) FROM shop.category_descendants(1) c(ids), unnest(ids) category_id")
reads="SELECT 'search', string_agg(product_id || ':' || score || ':' || typos, ' ') FROM shop.search('laptop', lim => 30);
SELECT 'search sorted', string_agg(product_id::text, ' ') FROM shop.search('sony', '{\"price_max\": 150000}', 'price_asc', 40);
SELECT 'search page 2', string_agg(product_id::text, ' ') FROM shop.search('wireless mouse', lim => 5, off => 5);
SELECT 'search typo', string_agg(product_id || ':' || typos, ' ') FROM shop.search('headphnes', lim => 10);
SELECT 'facets', shop.search_facets('speaker');
SELECT 'autocomplete', string_agg(suggestion || '/' || kind, ' ') FROM shop.autocomplete('lap');
SELECT 'did_you_mean', shop.did_you_mean('labtop');
SELECT 'browse', string_agg(product_id::text, ' ') FROM shop.browse($cat0, 'price_asc', 30);
SELECT 'product_get', string_agg(shop.product_get(p)::text, ' ' ORDER BY p) FROM generate_series(1, 12) p;
SELECT 'also_bought', string_agg(product_id || ':' || score, ' ') FROM shop.also_bought(3);
SELECT 'similar_products', string_agg(product_id::text, ' ') FROM shop.similar_products(3, 8);
SELECT 'trending', count(*) FROM shop.trending(NULL, 5);
SELECT 'stock_available', string_agg(shop.stock_available(p)::text, ' ' ORDER BY p) FROM generate_series(1, 12) p;
SELECT 'category_path', shop.category_path($cat0);"
# the standby's backends as the router's session still holds its pooled
# PL/Proxy connections: asked from inside that session (psql's \!)
count_standby="\\! \"$PGBIN/psql\" -X -At -h \"$AS\" -p $PAS -U postgres -d postgres -c \"SELECT 'standby backends of web', count(*) FROM pg_stat_activity WHERE datname IN ('s0', 's2') AND usename = 'web'\""
off=$(printf '%s\n%s\n' "$reads" "$count_standby" | rw web)
c0=$(commits)
on=$(printf '%s\n%s\n' "$reads" "$count_standby" | ro web)
[ "$(echo "$off" | tail -1)" = "standby backends of web|0" ] ||
    { echo "FAIL: with the setting unset, the reads went to the standby: $(echo "$off" | tail -1)"; exit 1; }
[ "$(echo "$on" | tail -1)" = "standby backends of web|2" ] ||
    { echo "FAIL: with the setting on, the standby does not serve s0 and s2: $(echo "$on" | tail -1)"; exit 1; }
off=$(echo "$off" | sed '$d') on=$(echo "$on" | sed '$d')
[ "$(echo "$on" | wc -l)" = 14 ] && [ "$off" = "$on" ] ||
    { echo "FAIL: the storefront's reads through shop_cluster_ro differ:"; diff <(echo "$off") <(echo "$on"); exit 1; }
echo "ok: 14 storefront reads (search, facets, autocomplete, did_you_mean, browse, product_get, also_bought, similar_products, trending, stock_available, category_path) with shop_router.read_cluster = shop_cluster_ro answer as without it"
# the shard databases of the standby counted the transactions (reported when
# their backends end, with the router's session: wait for it)
for i in $(seq 1 50); do [ "$(commits)" -gt "$c0" ] && break; sleep 0.1; done
[ "$(commits)" -gt "$c0" ] || { echo "FAIL: pg_stat_database on the standby counted no transaction in s0, s2"; exit 1; }
echo "ok: the standby served them: 2 backends of web in s0 and s2 during the session (none with the setting unset); its pg_stat_database counted $(( $(commits) - c0 )) more commits there"
# the back office's reads, and recommend's product-side lists
breads="SELECT 'recommend', string_agg(product_id::text, ' ') FROM shop.recommend(7, 8);
SELECT 'search admin', string_agg(product_id || ':' || score, ' ') FROM shop.search('notebook', lim => 20);"
[ "$(echo "$breads" | rw backoffice)" = "$(echo "$breads" | ro backoffice)" ] ||
    { echo "FAIL: the back office's reads through shop_cluster_ro differ"; exit 1; }
echo "ok: the back office's reads (recommend, search) through shop_cluster_ro answer as through shop_cluster"
# a write with the setting on: it reaches the primary of the product's shard
pid=$(rw backoffice -c "SELECT p FROM generate_series(1, 40) p WHERE hashint8(p) & 3 IN (0, 2) LIMIT 1")
part=$(rw backoffice -c "SELECT hashint8($pid) & 3")
title="Replica route $pid, renamed"
ro backoffice -c "SELECT shop.product_upsert('FX-$pid', '$title', 1234)" >/dev/null
[ "$(q "$A" "$PA" "s$part" -At -c "SELECT title FROM shop.product WHERE product_id = $pid")" = "$title" ] ||
    { echo "FAIL: product_upsert with the read route on did not reach the primary of s$part"; exit 1; }
standby_caught_up
[ "$(ro web -c "SELECT shop.product_get($pid) ->> 'title'")" = "$title" ] ||
    { echo "FAIL: the standby does not show the write once replayed"; exit 1; }
# a cart, as the storefront with its session, read back at once (cart_get
# stays on the primaries)
tok=$(rw backoffice -c "SELECT shop.session_token(4100)")
got=$(ro web <<SQL
SET shop.session = '$tok';
SELECT shop.cart_create(4100) AS c \gset
SELECT shop.cart_add(:'c', $pid, 2) IS NOT NULL;
SELECT shop.cart_get(:'c') -> 'lines' -> 0 ->> 'qty';
SQL
)
[ "$(echo "$got" | tail -1)" = 2 ] || { echo "FAIL: cart_get after cart_add with the read route on: $got"; exit 1; }
echo "ok ($(date +%T)): with the read route on, writes go to the primaries (product_upsert on s$part, then seen on the standby once replayed) and cart_get reads its cart_add at once"
# The cluster's intent of a query is kept per read route (issue 16, ha7):
# it is worked out from the route's shards, and a standby that has not
# replayed a catalog change has other best matches. Before, the key was
# the query and filters alone, and the intent a search through the
# standby kept was served to the next searches through the primaries
# (and the other way round) for shop_router.search_intent_cache seconds.
# Four "zanzibar" speakers the standby has, its replay paused, then eight
# "zanzibar" laptops it has not (all on p0 and p2, which it serves): a
# search through the standby keeps the speakers' intent, and the search
# through the primaries that follows answers as one that keeps no intent.
ic_cat() { q "$A" "$PA" s0 -At -c "SELECT category_id FROM shop.category WHERE name = '$1'"; }
ic_ids=($(rw backoffice -c "SELECT p FROM generate_series(9700, 9799) p WHERE hashint8(p) & 3 IN (0, 2) LIMIT 12"))
ic_add() { rw backoffice -c "SELECT count(shop.product_upsert('ZZ-' || p, 'Zanzibar $1 ' || p, 5000 + p, category_id => $(ic_cat "$2"), product_id => p)) FROM unnest('{$3}'::bigint[]) p" >/dev/null; }
ic_add speaker Speakers "$(IFS=,; echo "${ic_ids[*]:0:4}")"
standby_caught_up
q "$AS" "$PAS" postgres -c "SELECT pg_wal_replay_pause()" >/dev/null
ic_add laptop Laptops "$(IFS=,; echo "${ic_ids[*]:4:8}")"
q "$R" "$PR" router -c "DELETE FROM shop_router.intent_cache" >/dev/null
ic_search="SELECT string_agg(product_id || ':' || score, ' ') FROM shop.search('zanzibar', lim => 12)"
ic_ro=$(ro web -c "$ic_search")
ic_rw=$(rw web -c "$ic_search")
ic_ref=$(PGOPTIONS="-c shop_router.search_intent_cache=0" rw web -c "$ic_search")
ic_keys=$(q "$R" "$PR" router -At -c "SELECT count(*) FROM shop_router.intent_cache")
q "$AS" "$PAS" postgres -c "SELECT pg_wal_replay_resume()" >/dev/null
[ "$(wc -w <<<"$ic_ro")" = 4 ] && [ "$(wc -w <<<"$ic_rw")" = 12 ] ||
    { echo "FAIL: the standby paused should show 4 zanzibar products and the primaries 12: $ic_ro / $ic_rw"; exit 1; }
[ "$ic_rw" = "$ic_ref" ] ||
    { echo "FAIL: a search through the primaries after one through the standby used the standby's kept intent:"; echo "kept:  $ic_rw"; echo "fresh: $ic_ref"; exit 1; }
[ "$ic_keys" = 2 ] || { echo "FAIL: the intent cache holds $ic_keys rows after a search through each route, expected 2"; exit 1; }
echo "ok: the intent is kept per read route: a search through the primaries after one through the paused standby answers as one that keeps no intent (2 kept, one a route)"
cluster_stop "$AS" immediate
trap 'shop_cluster_down immediate' EXIT
