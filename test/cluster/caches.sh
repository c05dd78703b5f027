# caches.sh (sourced by run.sh): what a storefront login cannot do
# through the router (issue 16, found by hostile3; docs/security.md,
# "The router's search caches are its owner's to write" and
# "Another customer's cart is a cart that does not exist"):
#   - choose what the router keeps for a query: the cluster's intent
#     (shop_router.intent_cache) and DFS sums (shop_router.dfs_cache),
#     which every customer's search of that query then uses. Until sec4
#     shop_router._intent_put and _dfs_put were executable by
#     shop_storefront: a planted value was what the next searches used
#     (here a malformed one: every search of the query failed with 22023).
#     Now the caches are written only by the router owner's SECURITY
#     DEFINER functions, which ask the shards themselves;
#   - learn whether another customer's cart exists: cart_merge of another
#     customer's cart answered 22023 "Cart ... belongs to customer N"
#     (one shard: shop.cart_merge; two: the step out, shop._cart_merge_out),
#     cart_get of another customer's merged cart "was merged into cart ..."
#     (shop._cart_missing). Each is now the error of a cart id that never
#     existed: SH006 cart not found, "No cart has cart_id ...".
# Every call is made as the login web (shop_storefront), with a session.
echo "== a storefront login cannot write the router's caches nor probe carts ($(date +%T))"
cache_q='bluetooth speaker'
# the key of both caches for the query without filters on shop_cluster
cache_key="md5(concat_ws(chr(31), '$cache_q', '{}'::jsonb::text))"
cache_fail() { echo "FAIL: $*"; exit 1; }
# the page with both caches off: what the shards answer
cache_ref=$(PGOPTIONS="-c shop_router.search_dfs_cache=0 -c shop_router.search_intent_cache=0" \
    q "$R" "$PR" router -U web -At -c "SELECT string_agg(product_id::text, ' ') FROM shop.search('$cache_q', lim => 10)")
[ -n "$cache_ref" ] || cache_fail "no result for '$cache_q' (the test tests nothing)"
# a search as web keeps the sums and the intent (the owner's functions
# write them for the storefront's search)
q "$R" "$PR" router -At -c "DELETE FROM shop_router.intent_cache; DELETE FROM shop_router.dfs_cache"
q "$R" "$PR" router -U web -At -c "SELECT count(*) FROM shop.search('$cache_q', lim => 10)" >/dev/null
cache_rows=$(q "$R" "$PR" router -At -c "SELECT (SELECT count(*) FROM shop_router.intent_cache WHERE key = $cache_key)
                                               || ' ' || (SELECT count(*) FROM shop_router.dfs_cache WHERE key = $cache_key)")
[ "$cache_rows" = "1 1" ] || cache_fail "a storefront search kept (intent, sums) rows: $cache_rows, expected 1 1"
# web plants a value in each cache: the sums with a key no shard accepts
# (valid versions, so that the shards are asked with them) and an intent
# of its choosing; each call is refused
cache_plant=$(q "$R" "$PR" router -U web -At 2>&1 <<SQL
CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS \$f\$
DECLARE st text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
    RETURN st;
END
\$f\$;
SELECT a.global AS g, a.versions AS v FROM shop_router._search_global_at('$cache_q', '{}', false) a \gset
SELECT 'intent_put', pg_temp.err(format('SELECT shop_router._intent_put(%s, %L)', \$k\$$cache_key\$k\$,
                                       '[[1, 100, "planted", "planted", true]]'));
SELECT 'dfs_put', pg_temp.err(format('SELECT shop_router._dfs_put(%s, %L, %L)', \$k\$$cache_key\$k\$,
                                    jsonb_set(:'g'::jsonb, '{global,planted}', 'true'), :'v'));
SELECT 'intent_for', pg_temp.err(format('SELECT shop_router._search_intent_for(%L, %L, %L)', '$cache_q', '{}',
                                       jsonb_set(:'g'::jsonb, '{global,docs}', '1')));
SQL
)
cache_want=$'intent_put|42501\ndfs_put|42501\nintent_for|42501'
[ "$cache_plant" = "$cache_want" ] || cache_fail "web's writes of the router's caches answered:
$cache_plant
expected:
$cache_want"
# what the caches hold is what the shards answered, and a search of the
# query in a fresh session answers as one that keeps nothing
cache_planted=$(q "$R" "$PR" router -At -c "SELECT count(*) FROM shop_router.intent_cache WHERE intent_top::text ~ 'planted'")
cache_planted="$cache_planted $(q "$R" "$PR" router -At -c "SELECT count(*) FROM shop_router.dfs_cache WHERE global::text ~ 'planted'")"
[ "$cache_planted" = "0 0" ] || cache_fail "planted rows in the caches (intent, sums): $cache_planted"
cache_page=$(q "$R" "$PR" router -U web -At -c "SELECT string_agg(product_id::text, ' ') FROM shop.search('$cache_q', lim => 10)" 2>&1 || true)
[ "$cache_page" = "$cache_ref" ] || cache_fail "a search of '$cache_q' after web's writes answered '$cache_page', the shards '$cache_ref'"
# the caches' functions and tables: the owner's alone
cache_privs=$(q "$R" "$PR" router -At <<'SQL'
SELECT string_agg(f, ' ' ORDER BY f) FROM unnest(ARRAY[
        'shop_router._intent_get(text)', 'shop_router._intent_put(text,jsonb)', 'shop_router._dfs_get(text)',
        'shop_router._dfs_put(text,jsonb,jsonb)', 'shop_router._search_intent_for(text,jsonb,jsonb)']) f
 WHERE has_function_privilege('web', f, 'EXECUTE') OR has_function_privilege('backoffice', f, 'EXECUTE');
SELECT string_agg(t, ' ' ORDER BY t) FROM unnest(ARRAY['shop_router.intent_cache', 'shop_router.dfs_cache']) t
 WHERE has_table_privilege('web', t, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE');
SQL
)
[ "$(tr -d '\n' <<<"$cache_privs")" = "" ] || cache_fail "the storefront or back office may use: $cache_privs"
echo "ok: web's writes of both caches refused (42501), the caches hold the shards' answers, a search as web still keeps both"

# The owner's round reads the route the caller's shop_router.read_cluster
# names: only a server the login may use (USAGE), as for its own calls.
# A PL/Proxy server of the same shards without a grant to the storefront:
q "$R" "$PR" router -c "CREATE SERVER caches_private FOREIGN DATA WRAPPER plproxy
    OPTIONS (p0 '${PART[0]}', p1 '${PART[1]}', p2 '${PART[2]}', p3 '${PART[3]}');
CREATE USER MAPPING FOR PUBLIC SERVER caches_private"
cache_route=$(q "$R" "$PR" router -U web -At 2>&1 <<'SQL'
\set VERBOSITY sqlstate
SET client_min_messages = warning;
SET shop_router.read_cluster = 'caches_private';
SELECT (shop_router._search_global_at('laptop', '{}', true)).versions IS NOT NULL;
SQL
) || true
cache_route_kept=$(q "$R" "$PR" router -At -c "SELECT count(*) FROM shop_router.dfs_cache
     WHERE key = md5(concat_ws(chr(31), 'laptop', '{}'::jsonb::text, 'caches_private'))")
q "$R" "$PR" router -c "SET client_min_messages = warning" -c "DROP SERVER caches_private CASCADE" >/dev/null
[ "$cache_route" = "ERROR:  42501" ] && [ "$cache_route_kept" = 0 ] ||
    cache_fail "a read route web may not use answered '$cache_route', kept $cache_route_kept rows; expected 42501, 0"
echo "ok: the owner's round refuses a read route the login may not use (42501)"

# The DFS phase reaches the shards as the router's owner; the page round
# still as the caller with its session: web with customer 501's session
# searches personalized for 501, not for 502 (42501 from the shard).
# Customers on one shard and on two (hashint8(id) & 3 names the shard).
read -r cache_c1 cache_same cache_other <<<"$(q "$R" "$PR" router -At -F ' ' <<'SQL'
SELECT 501, (SELECT min(c) FROM generate_series(502, 600) c WHERE hashint8(c) & 3 = hashint8(501) & 3),
            (SELECT min(c) FROM generate_series(502, 600) c WHERE hashint8(c) & 3 <> hashint8(501) & 3);
SQL
)"
cache_tok=$(q "$R" "$PR" router -U backoffice -At -c "SELECT shop.session_token($cache_c1)")
cache_cart() { q "$R" "$PR" router -U backoffice -At -c "SELECT shop.cart_create($1)"; }
# each other customer: an open cart, and a cart merged into it (its
# customer's older cart, merged at the customer's login)
cache_same_merged=$(cache_cart "$cache_same"); cache_same_open=$(cache_cart "$cache_same")
cache_other_merged=$(cache_cart "$cache_other"); cache_other_open=$(cache_cart "$cache_other")
q "$R" "$PR" router -U backoffice -At -c "SELECT shop.cart_merge('$cache_same_merged', $cache_same) = '$cache_same_open',
                                                 shop.cart_merge('$cache_other_merged', $cache_other) = '$cache_other_open'" |
    grep -qx 't|t' || cache_fail "the other customers' carts were not merged as expected"
# Each call on another customer's cart is compared with the same call on
# its twin, an id that never existed on the same shard (the router's cart
# ids carry their shard in their last 16 bits): the same SQLSTATE,
# message and detail, PL/Proxy's context included.
cache_probe=$(q "$R" "$PR" router -U web -At 2>&1 <<SQL
SET client_min_messages = warning;
SELECT shop.session_begin('$cache_tok') \g /dev/null
CREATE FUNCTION pg_temp.err(sql text, id text) RETURNS text LANGUAGE plpgsql AS \$f\$
DECLARE st text; m text; d text;
BEGIN
    EXECUTE format(sql, id);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
    RETURN replace(concat_ws(' | ', st, m, d), id, '<id>');
END
\$f\$;
SELECT 'search for $cache_c1', pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5, customer_id => $cache_c1)', '');
SELECT 'search for $cache_other', left(pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5, customer_id => $cache_other)', ''), 5);
SELECT t, CASE WHEN e = e_twin THEN 'as never existed' ELSE e || ' <> ' || e_twin END
  FROM (SELECT t, pg_temp.err(c, id) AS e,
               pg_temp.err(c, overlay(gen_random_uuid()::text PLACING right(id, 4) FROM 33)) AS e_twin
          FROM (VALUES ('merge, open, one shard', 'SELECT shop.cart_merge(%L, $cache_c1)', '$cache_same_open', 1),
                       ('merge, open, two shards', 'SELECT shop.cart_merge(%L, $cache_c1)', '$cache_other_open', 2),
                       ('merge, merged, one shard', 'SELECT shop.cart_merge(%L, $cache_c1)', '$cache_same_merged', 3),
                       ('merge, merged, two shards', 'SELECT shop.cart_merge(%L, $cache_c1)', '$cache_other_merged', 4),
                       ('cart_get, merged', 'SELECT shop.cart_get(%L)', '$cache_other_merged', 5),
                       ('cart_add, merged', 'SELECT shop.cart_add(%L, 1)', '$cache_same_merged', 6))
               AS x(t, c, id, n)
         ORDER BY n) y;
SQL
)
cache_want="search for $cache_c1|ok
search for $cache_other|42501
merge, open, one shard|as never existed
merge, open, two shards|as never existed
merge, merged, one shard|as never existed
merge, merged, two shards|as never existed
cart_get, merged|as never existed
cart_add, merged|as never existed"
[ "$cache_probe" = "$cache_want" ] || { echo "FAIL: customer $cache_c1's calls on other customers' carts answered:"
    echo "$cache_probe"; echo "expected:"; echo "$cache_want"; exit 1; }
# the back office still gets the precise errors
cache_office=$(q "$R" "$PR" router -U backoffice -At 2>&1 <<SQL
\set VERBOSITY sqlstate
SELECT shop.cart_merge('$cache_other_open', $cache_c1);
SQL
) || true
[ "$cache_office" = "ERROR:  22023" ] || cache_fail "the back office's merge of another customer's cart answered '$cache_office', expected 22023"
echo "ok: customer $cache_c1 gets one error for other customers' carts (open, merged, one shard, two) and ids that never existed; its search personalizes only for itself"
