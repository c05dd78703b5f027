# stale.sh (sourced by run.sh): the routed calls leave PL/Proxy's
# connections ready for the next call (issue 16). PL/Proxy drops and
# remakes a connection whose last answer was not read whole ("NOTICE:
# PL/Proxy: dropping stale conn"): a shard's error ends the call with the
# other partitions' answers unread. A search whose kept sums a shard
# refused (its search statistics changed since) did so on every refusal:
# the rerun and the backend's next calls reconnected to the shards. A
# fresh storefront session runs the routed reads after such a refusal and
# sees no notice; the search answers as one that kept nothing.
echo "== routed calls leave the shards' connections ready ($(date +%T))"
stale_q='notebook speaker'
stale_key="md5(concat_ws(chr(31), '$stale_q', '{}'::jsonb::text, NULL))"
# the kept sums' versions and time: replaced only when a shard refused them
stale_kept() { q "$R" "$PR" router -At -c "SELECT versions::text || ' ' || at FROM shop_router.dfs_cache WHERE key = $stale_key"; }
# the sums of the query kept, then a write that changes a shard's statistics
q "$R" "$PR" router -U web -At -c "SELECT count(*) FROM shop.search('$stale_q', lim => 5)" >/dev/null
stale_before=$(stale_kept)
[ -n "$stale_before" ] || { echo "FAIL: the router did not keep the sums of '$stale_q'"; exit 1; }
q "$R" "$PR" router -U backoffice -At \
    -c "SELECT shop.product_upsert('FX-2', 'Lenovo Nova laptop, renamed', 1500) = 2" >/dev/null
# a fresh session: the refused search, then the storefront's reads
stale_out=$(q "$R" "$PR" router -U web -At 2>&1 <<SQL
SET client_min_messages = notice;
SELECT 'search', string_agg(product_id::text, ' ') FROM shop.search('$stale_q', lim => 10);
SELECT 'search again', string_agg(product_id::text, ' ') FROM shop.search('$stale_q', lim => 10);
SELECT 'facets', shop.search_facets('speaker') ->> 'total';
SELECT 'autocomplete', count(*) FROM shop.autocomplete('spe');
SELECT 'product_get', (shop.product_get(7)) ->> 'title';
SELECT 'stock', shop.stock_available(7);
SELECT 'similar', count(*) FROM shop.similar_products(3, 5);
SELECT 'trending', count(*) FROM shop.trending(NULL, 5);
SELECT 'search laptop', count(*) FROM shop.search('laptop', lim => 5);
SQL
)
[ "$(stale_kept)" != "$stale_before" ] || { echo "FAIL: no shard refused the kept sums of '$stale_q' (the test tests nothing)"; exit 1; }
stale_n=$(grep -c 'dropping stale conn' <<<"$stale_out" || true)
[ "$stale_n" = 0 ] || { echo "FAIL: $stale_n connections dropped as stale in a fresh session:"; echo "$stale_out"; exit 1; }
stale_fresh=$(PGOPTIONS="-c shop_router.search_dfs_cache=0" q "$R" "$PR" router -U web -At \
    -c "SELECT 'search', string_agg(product_id::text, ' ') FROM shop.search('$stale_q', lim => 10)")
[ "$(sed -n 1p <<<"$stale_out")" = "$stale_fresh" ] ||
    { echo "FAIL: the refused search answered $(sed -n 1p <<<"$stale_out"), one that keeps nothing $stale_fresh"; exit 1; }
echo "ok: a refused search and $(($(wc -l <<<"$stale_out") - 1)) reads in a fresh session, no connection dropped as stale"

# The storefront's common errors (issue 16): an unknown product id (stale
# links, bots) of the single-shard reads, and a lim or off out of range.
# Each is raised by the router with one node's SQLSTATE, message, detail
# and hint (a row of NULLs from the product's shard, or a check before any
# shard is called) and leaves every connection ready: a search reading
# every shard after each error drops none as stale. The same script on
# the reference node gives the same lines.
stale_err_sql=$(cat <<'SQL'
SET client_min_messages = notice;
CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE st text; m text; d text; h text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
    RETURN concat_ws(' | ', st, m, d, h);
END
$f$;
SELECT c, pg_temp.err(c), pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)')
  FROM unnest(ARRAY['SELECT shop.product_get(999999999)', 'SELECT shop.product_get(999999998)',
                    'SELECT shop.stock_available(999999999)', 'SELECT shop.stock_available(999999997)',
                    'SELECT count(*) FROM shop.similar_products(999999999, 5)',
                    'SELECT count(*) FROM shop.similar_products(3, 0)',
                    'SELECT count(*) FROM shop.similar_products(NULL, 5)',
                    'SELECT count(*) FROM shop.also_bought(999999999, 5)',
                    'SELECT count(*) FROM shop.also_bought(999999996)',
                    'SELECT count(*) FROM shop.also_bought(2, 0)',
                    'SELECT count(*) FROM shop.also_bought(999999999, 1001)',
                    'SELECT count(*) FROM shop.search(''laptop'', lim => 0)',
                    'SELECT count(*) FROM shop.search(''laptop'', lim => 1001)',
                    'SELECT count(*) FROM shop.search(''laptop'', lim => NULL)',
                    'SELECT count(*) FROM shop.search(''laptop'', off => -1)',
                    'SELECT count(*) FROM shop.search(''laptop'', sort => NULL, lim => 0)']) WITH ORDINALITY u(c, n)
 ORDER BY n;
SQL
)
stale_err_rt=$(q "$R" "$PR" router -U web -At 2>&1 <<<"$stale_err_sql")
stale_err_one=$(q "$A" "$PA" one -U web -At 2>&1 <<<"$stale_err_sql")
stale_n=$(grep -c 'dropping stale conn' <<<"$stale_err_rt" || true)
[ "$stale_n" = 0 ] || { echo "FAIL: $stale_n connections dropped as stale after the storefront's errors:"; echo "$stale_err_rt"; exit 1; }
[ "$stale_err_rt" = "$stale_err_one" ] ||
    { echo "FAIL: the routed errors are not one node's:"; diff <(echo "$stale_err_one") <(echo "$stale_err_rt"); exit 1; }
[ "$(grep -c '|ok$' <<<"$stale_err_rt")" = 16 ] && [ "$(grep -c '|SH006 | product not found | No product has product_id' <<<"$stale_err_rt")" = 7 ] ||
    { echo "FAIL: the error calls did not give 7 unknown products and a search after each:"; echo "$stale_err_rt"; exit 1; }
echo "ok: $(wc -l <<<"$stale_err_rt") storefront errors raised as one node raises them, no connection dropped as stale"

# The shard errors that still cost a reconnection (issue 16): browse's
# arguments (checked on the router) and an unknown category (a row of
# NULLs from every shard), a NULL product id (no partition: refused on the
# router, where PL/Proxy said "Hash function returned NULL", XX000), a
# refused hold (SH001, and reserve's other refusals) and an unknown cart
# or order (answered as data by shop._reserve_try, _cart_lines_try and
# _order_get_try, raised by the router). As the back office, which may
# hold stock and read any cart and order; the same lines as one node, no
# connection dropped as stale.
stale_err2_sql=$(sed -n '/^CREATE FUNCTION pg_temp.err/,/^\$f\$;/p' <<<"$stale_err_sql")
stale_err2_sql=$(cat <<SQL
SET client_min_messages = notice;
$stale_err2_sql
SELECT c, pg_temp.err(c), pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)')
  FROM unnest(ARRAY['SELECT count(*) FROM shop.browse(3, lim => 0)',
                    'SELECT count(*) FROM shop.browse(3, off => -1)',
                    'SELECT count(*) FROM shop.browse(3, lim => NULL, off => -1)',
                    'SELECT count(*) FROM shop.browse(NULL, lim => 0)',
                    'SELECT count(*) FROM shop.browse(3, NULL, 0)',
                    'SELECT count(*) FROM shop.browse(3, ''cheapest'', 0)',
                    'SELECT count(*) FROM shop.browse(3, ''cheapest'')',
                    'SELECT count(*) FROM shop.browse(999999)',
                    'SELECT count(*) FROM shop.browse(999999, ''title'', 5, 10)',
                    'SELECT shop.product_get(NULL)', 'SELECT shop.stock_available(NULL)',
                    'SELECT shop.reserve(1, 100000)', 'SELECT shop.reserve(2, 100000, ''ref'')',
                    'SELECT shop.reserve(1, 0)', 'SELECT shop.reserve(NULL, 1)',
                    'SELECT shop.reserve(999999999, 1)',
                    'SELECT shop.cart_get(''00000000-0000-0000-0000-000000000001'')',
                    'SELECT shop.cart_get(''00000000-0000-0000-0000-00000000aa02'')',
                    'SELECT shop.order_get(''00000000-0000-0000-0000-000000000001'')',
                    'SELECT shop.order_get(''00000000-0000-0000-0000-00000000aa03'')']) WITH ORDINALITY u(c, n)
 ORDER BY n;
SQL
)
# (the units available: the router's and the reference's holds of the
# earlier scripts differ)
stale_err_rt=$(q "$R" "$PR" router -U backoffice -At 2>&1 <<<"$stale_err2_sql" | sed -E 's/[0-9]+ available/N available/')
stale_err_one=$(q "$A" "$PA" one -U backoffice -At 2>&1 <<<"$stale_err2_sql" | sed -E 's/[0-9]+ available/N available/')
stale_n=$(grep -c 'dropping stale conn' <<<"$stale_err_rt" || true)
[ "$stale_n" = 0 ] || { echo "FAIL: $stale_n connections dropped as stale after the shards' refusals:"; echo "$stale_err_rt"; exit 1; }
[ "$stale_err_rt" = "$stale_err_one" ] ||
    { echo "FAIL: the routed refusals are not one node's:"; diff <(echo "$stale_err_one") <(echo "$stale_err_rt"); exit 1; }
[ "$(grep -c '|ok$' <<<"$stale_err_rt")" = 20 ] && [ "$(grep -c '|SH001 | insufficient stock | Product ' <<<"$stale_err_rt")" = 2 ] &&
    [ "$(grep -c '|SH006 | \(cart\|order\|category\) not found | No ' <<<"$stale_err_rt")" = 6 ] ||
    { echo "FAIL: the refusals did not give 2 SH001, 6 unknown carts, orders and categories and a search after each:"; echo "$stale_err_rt"; exit 1; }
echo "ok: $(wc -l <<<"$stale_err_rt") shard refusals (browse, NULL product ids, holds, carts, orders) raised as one node raises them, no connection dropped as stale"

# The cart's writes (issue 16, ha4): an unknown, merged or expired cart,
# an unknown product, a bad qty or a line not in the cart, answered as
# data by the shards (shop._cart_price_try, shop._cart_write_try) and
# raised by the router in one node's order (the cart before qty before the
# product: cart_add of an unknown product to an unknown cart is the
# cart's SH006). As the back office, on a guest cart made for the test;
# its id in the details is replaced by CART. Then a checkout the stock
# cannot cover (SH001 from the product's shard, shop._saga_reserve_try).
# The same lines as one node, no connection dropped as stale.
stale_err3_sql=$(sed -n '/^CREATE FUNCTION pg_temp.err/,/^\$f\$;/p' <<<"$stale_err_sql")
stale_err3_sql=$(cat <<SQL
SET client_min_messages = warning;
SELECT shop.cart_create() AS cart \gset
SET client_min_messages = notice;
$stale_err3_sql
SELECT replace(format(c, :'cart'), :'cart', 'CART'), replace(pg_temp.err(format(c, :'cart')), :'cart', 'CART'),
       pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)')
  FROM unnest(ARRAY['SELECT shop.cart_add(''00000000-0000-0000-0000-0000000000b1'', 1)',
                    'SELECT shop.cart_add(''00000000-0000-0000-0000-0000000000b2'', 999999999)',
                    'SELECT shop.cart_add(''00000000-0000-0000-0000-0000000000b3'', 1, 0)',
                    'SELECT shop.cart_add(%L, 999999999)',
                    'SELECT shop.cart_add(%L, 999999999, 0)',
                    'SELECT shop.cart_add(%L, 1, 0)',
                    'SELECT shop.cart_add(%L, 1, NULL)',
                    'SELECT shop.cart_add(%L, NULL)',
                    'SELECT shop.cart_add(NULL, 1)',
                    'SELECT shop.cart_add(%L, 1, 2)',
                    'SELECT shop.cart_add(%L, 1, 10000)',
                    'SELECT shop.cart_set_qty(%L, 2, 3)',
                    'SELECT shop.cart_set_qty(%L, 1, -1)',
                    'SELECT shop.cart_set_qty(''00000000-0000-0000-0000-0000000000b4'', 1, 1)',
                    'SELECT shop.cart_remove(''00000000-0000-0000-0000-0000000000b5'', 1)',
                    'SELECT shop.cart_remove(%L, NULL)',
                    'SELECT shop.cart_save_for_later(%L, 2)',
                    'SELECT shop.cart_save_for_later(%L, 1)',
                    'SELECT shop.cart_move_to_cart(%L, 999999999)',
                    'SELECT shop.cart_move_to_cart(''00000000-0000-0000-0000-0000000000b6'', 999999999)',
                    'SELECT shop.cart_move_to_cart(%L, NULL)',
                    'SELECT shop.cart_move_to_cart(%L, 2)',
                    'SELECT shop.cart_move_to_cart(%L, 1)',
                    'SELECT shop.cart_clear(''00000000-0000-0000-0000-0000000000b7'')',
                    'SELECT shop.cart_clear(NULL)',
                    'SELECT shop.cart_clear(%L)',
                    'SELECT shop.cart_get(%L) -> ''items''']) WITH ORDINALITY u(c, n)
 ORDER BY n;
SET client_min_messages = warning;
SELECT shop.cart_create(531) AS cart2 \gset
SET client_min_messages = notice;
SELECT 'checkout', pg_temp.err(format('SELECT shop.cart_add(%L, 2, 9999)', :'cart2')),
       pg_temp.err(format('SELECT shop.checkout(%L, ''tok_visa'', ''ha4-1'', ''{"country": "US"}'')', :'cart2')),
       pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)');
SQL
)
stale_err_rt=$(q "$R" "$PR" router -U backoffice -At 2>&1 <<<"$stale_err3_sql" | sed -E 's/[0-9]+ available/N available/')
stale_err_one=$(q "$A" "$PA" one -U backoffice -At 2>&1 <<<"$stale_err3_sql" | sed -E 's/[0-9]+ available/N available/')
stale_n=$(grep -c 'dropping stale conn' <<<"$stale_err_rt" || true)
[ "$stale_n" = 0 ] || { echo "FAIL: $stale_n connections dropped as stale after the cart's refusals:"; echo "$stale_err_rt"; exit 1; }
[ "$stale_err_rt" = "$stale_err_one" ] ||
    { echo "FAIL: the routed cart refusals are not one node's:"; diff <(echo "$stale_err_one") <(echo "$stale_err_rt"); exit 1; }
[ "$(grep -c '|ok$' <<<"$stale_err_rt")" = 28 ] && [ "$(grep -c '^checkout|ok|SH001 | insufficient stock | Product 2: 9999 requested, N available' <<<"$stale_err_rt")" = 1 ] && [ "$(grep -c '|SH006 | cart not found | No cart has' <<<"$stale_err_rt")" = 7 ] &&
    [ "$(grep -c '|SH006 | product not found | No product' <<<"$stale_err_rt")" = 2 ] &&
    [ "$(grep -c '|SH006 | product not in cart | Cart CART has no line' <<<"$stale_err_rt")" = 3 ] &&
    [ "$(grep -c '|\(22023\|22004\) | ' <<<"$stale_err_rt")" = 10 ] ||
    { echo "FAIL: the cart's refusals did not give 7 unknown carts, 2 unknown products, 3 lines not in the cart, 10 bad arguments, a checkout's SH001 and a search after each:"; echo "$stale_err_rt"; exit 1; }
echo "ok: $(wc -l <<<"$stale_err_rt") cart refusals (add, set_qty, remove, save, move, clear) and a checkout's SH001 raised as one node raises them, no connection dropped as stale"

# The last refusals (issue 16, ha5): a checkout's refusals besides its
# holds (an empty cart, SH007, the storefront's most frequent; a declined
# payment, SH004; a key reused, SH003; an unknown cart, SH006; its
# arguments, 22004, 22023, SH005), answered as data by the cart's shard
# (shop._saga_begin_try) and the customer's (shop._saga_place_try), and
# orders_for's and cart_create's arguments, checked on the router. As the
# storefront with a session of customer 533, on two products made for the
# test (9901 on p0, 9902 on p2); the carts' ids in the lines are replaced
# by CART and CART2. The same lines as one node, no connection dropped
# as stale.
stale_tok=$(q "$A" "$PA" one -U backoffice -At -c "SELECT shop.session_token(533)")
stale_fix_sql=$(cat <<'SQL'
SET client_min_messages = warning;
SELECT shop.product_upsert('HA5-1', 'Stale test crate one', 1250, product_id => 9901),
       shop.product_upsert('HA5-2', 'Stale test crate two', 990, product_id => 9902) \g /dev/null
SELECT shop.stock_set(9901, 50), shop.stock_set(9902, 3) \g /dev/null
SQL
)
q "$R" "$PR" router -U backoffice <<<"$stale_fix_sql"
q "$A" "$PA" one -U backoffice <<<"$stale_fix_sql"
stale_err4_sql=$(sed -n '/^CREATE FUNCTION pg_temp.err/,/^\$f\$;/p' <<<"$stale_err_sql")
stale_err4_sql=$(cat <<SQL
SET client_min_messages = warning;
SET shop.session = '$stale_tok';
SELECT shop.cart_create(533) AS cart \gset
SELECT shop.cart_create(533) AS cart2 \gset
SELECT shop.cart_add(:'cart2', 9901, 2) \g /dev/null
SET client_min_messages = notice;
$stale_err4_sql
SELECT replace(replace(format(c, :'cart', :'cart2'), :'cart', 'CART'), :'cart2', 'CART2'),
       replace(replace(pg_temp.err(format(c, :'cart', :'cart2')), :'cart', 'CART'), :'cart2', 'CART2'),
       pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)')
  FROM unnest(ARRAY['SELECT shop.checkout(%1\$L, ''tok_visa'', ''ha5-1'')',
                    'SELECT shop.checkout(%1\$L, ''tok_visa'', ''ha5-1'', ''{"country": "US"}'')',
                    'SELECT shop.checkout(''00000000-0000-0000-0000-0000000000c1'', ''tok_visa'', ''ha5-2'')',
                    'SELECT shop.checkout(NULL, ''tok_visa'', ''ha5-2'')',
                    'SELECT shop.checkout(%2\$L, ''tok_chargeDeclined'', ''ha5-3'')',
                    'SELECT shop.checkout(%2\$L, ''tok_chargeDeclined'', ''ha5-3'')',
                    'SELECT shop.checkout(%2\$L, ''tok_nope'', ''ha5-3'')',
                    'SELECT shop.checkout(%2\$L, NULL, ''ha5-3'')',
                    'SELECT shop.checkout(%2\$L, ''tok_visa'', NULL)',
                    'SELECT shop.checkout(%2\$L, ''tok_visa'', ''ha5-3'', ''"nowhere"'')',
                    'SELECT shop.checkout(%2\$L, ''4111 1111 1111 1111'', ''ha5-3'')',
                    'SELECT shop.checkout(%2\$L, ''tok_visa'', ''ha5-4'') IS NOT NULL',
                    'SELECT shop.checkout(%1\$L, ''tok_visa'', ''ha5-4'')',
                    'SELECT shop.checkout(%2\$L, ''tok_visa'', ''ha5-5'')',
                    'SELECT count(*) FROM shop.orders_for(533, 0)',
                    'SELECT count(*) FROM shop.orders_for(533, 1001)',
                    'SELECT count(*) FROM shop.orders_for(533, NULL)',
                    'SELECT count(*) FROM shop.orders_for(NULL)',
                    'SELECT count(*) FROM shop.orders_for(0)',
                    'SELECT count(*) FROM shop.orders_for(533)',
                    'SELECT shop.cart_create(0)',
                    'SELECT shop.cart_create(-533)']) WITH ORDINALITY u(c, n)
 ORDER BY n;
SELECT 'available', shop.stock_available(9901), shop.stock_available(9902);
SQL
)
stale_err_rt=$(q "$R" "$PR" router -U web -At 2>&1 <<<"$stale_err4_sql")
stale_err_one=$(q "$A" "$PA" one -U web -At 2>&1 <<<"$stale_err4_sql")
stale_n=$(grep -c 'dropping stale conn' <<<"$stale_err_rt" || true)
[ "$stale_n" = 0 ] || { echo "FAIL: $stale_n connections dropped as stale after a checkout's refusals:"; echo "$stale_err_rt"; exit 1; }
[ "$stale_err_rt" = "$stale_err_one" ] ||
    { echo "FAIL: the routed checkout refusals are not one node's:"; diff <(echo "$stale_err_one") <(echo "$stale_err_rt"); exit 1; }
[ "$(grep -c '|ok$' <<<"$stale_err_rt")" = 22 ] && [ "$(grep -c '|SH007 | cart is empty | Cart CART has no lines' <<<"$stale_err_rt")" = 2 ] &&
    [ "$(grep -c '|SH004 | payment declined | ' <<<"$stale_err_rt")" = 2 ] && [ "$(grep -c '|SH003 | ' <<<"$stale_err_rt")" = 1 ] &&
    [ "$(grep -c '|SH006 | cart not found | ' <<<"$stale_err_rt")" = 1 ] && [ "$(grep -c '|SH005 | ' <<<"$stale_err_rt")" = 1 ] &&
    [ "$(grep -c '|SH007 | cart is empty | Cart CART2 has no lines' <<<"$stale_err_rt")" = 1 ] &&
    [ "$(grep -c '|\(22023\|22004\) | ' <<<"$stale_err_rt")" = 12 ] && [ "$(grep -c '^available|48|3$' <<<"$stale_err_rt")" = 1 ] ||
    { echo "FAIL: the checkout's refusals did not give 3 empty carts, 2 declined payments, a key reused, an unknown cart, a card number, 12 bad arguments, 2 units sold and a search after each:"; echo "$stale_err_rt"; exit 1; }
echo "ok: $(($(wc -l <<<"$stale_err_rt") - 1)) checkout, orders_for and cart_create refusals raised as one node raises them, no connection dropped as stale"

# reserve_many's refusals (issue 16, ha5): a line the stock cannot cover
# (SH001) or an unknown product (SH006) on one shard while another shard
# holds its lines (shop._reserve_many_try: the router releases those and
# raises the least product's refusal), and items, ref or ttl refused
# (shop._reserve_many_any_try, or every shard's same refusal). As the back
# office; the same lines as one node, no hold left, no connection dropped
# as stale.
stale_err5_sql=$(sed -n '/^CREATE FUNCTION pg_temp.err/,/^\$f\$;/p' <<<"$stale_err_sql")
stale_err5_sql=$(cat <<SQL
SET client_min_messages = notice;
$stale_err5_sql
SELECT c, pg_temp.err(c), pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)')
  FROM unnest(ARRAY['SELECT shop.reserve_many(''[{"product_id": 9901, "qty": 1}, {"product_id": 9902, "qty": 4}]'')',
                    'SELECT shop.reserve_many(''[{"product_id": 9902, "qty": 1}, {"product_id": 9901, "qty": 49}]'')',
                    'SELECT shop.reserve_many(''[{"product_id": 9901, "qty": 1}, {"product_id": 999999999, "qty": 1}]'')',
                    'SELECT shop.reserve_many(''[{"product_id": 999999998, "qty": 1}, {"product_id": 9902, "qty": 9}, {"product_id": 9901, "qty": 2}]'')',
                    'SELECT shop.reserve_many(''[{"product_id": 9901, "qty": 30}, {"product_id": 9902, "qty": 1}, {"product_id": 9901, "qty": 30}]'')',
                    'SELECT shop.reserve_many(''[{"product_id": 9901, "qty": 1}, {"product_id": 9902, "qty": 1}]'', repeat(''r'', 300))',
                    'SELECT shop.reserve_many(''[{"product_id": 9901, "qty": 1}, {"product_id": 9902, "qty": 1}]'', ttl => ''-1 minute'')',
                    'SELECT shop.reserve_many(''[{"product_id": 9901, "qty": 0}]'')',
                    'SELECT shop.reserve_many(''[{"product_id": 9901}]'')',
                    'SELECT shop.reserve_many(''[]'')',
                    'SELECT shop.reserve_many(''{"product_id": 9901, "qty": 1}'')',
                    'SELECT shop.reserve_many(NULL)',
                    'SELECT shop.reserve_many(''[{"product_id": 9901, "qty": 1}]'', ttl => NULL)']) WITH ORDINALITY u(c, n)
 ORDER BY n;
SELECT 'available', shop.stock_available(9901), shop.stock_available(9902);
SQL
)
stale_err_rt=$(q "$R" "$PR" router -U backoffice -At 2>&1 <<<"$stale_err5_sql")
stale_err_one=$(q "$A" "$PA" one -U backoffice -At 2>&1 <<<"$stale_err5_sql")
stale_n=$(grep -c 'dropping stale conn' <<<"$stale_err_rt" || true)
[ "$stale_n" = 0 ] || { echo "FAIL: $stale_n connections dropped as stale after reserve_many's refusals:"; echo "$stale_err_rt"; exit 1; }
[ "$stale_err_rt" = "$stale_err_one" ] ||
    { echo "FAIL: the routed reserve_many refusals are not one node's:"; diff <(echo "$stale_err_one") <(echo "$stale_err_rt"); exit 1; }
[ "$(grep -c '|ok$' <<<"$stale_err_rt")" = 13 ] && [ "$(grep -c '|SH001 | insufficient stock | Product ' <<<"$stale_err_rt")" = 4 ] &&
    [ "$(grep -c '|SH006 | product not found | No product has product_id 999999999' <<<"$stale_err_rt")" = 1 ] &&
    [ "$(grep -c '^available|48|3$' <<<"$stale_err_rt")" = 1 ] ||
    { echo "FAIL: reserve_many's refusals did not give 4 SH001, an unknown product, no hold left and a search after each:"; echo "$stale_err_rt"; exit 1; }
echo "ok: $(($(wc -l <<<"$stale_err_rt") - 1)) reserve_many refusals raised as one node raises them, no hold left, no connection dropped as stale"

# A storefront acting for another customer (issue 16, ha6): the 42501 of
# cart_get, the cart's writes, checkout and order_get on another
# customer's cart or order, answered as data by the cart's or order's
# shard (shop._cart_lines_try, _cart_write_try, _saga_begin_try,
# _order_get_try), orders_for, cart_create and a personalized search for another
# customer (shop._customer_refusal on the customer's shard, on every
# shard for the search), and a customer_id below 1 of the search (22023).
# As the storefront with a session of customer 533 on a cart and an order
# of customer 534 (made by the back office, ids replaced by CART and
# ORDER), then without a session; then session_begin with a forged and
# a malformed token (28000, answered as data by shop._session_refusal on
# partition 0) and a NULL one (22004, checked on the router). The same
# lines as one node, the cart and the stock untouched, no connection
# dropped as stale.
stale_fix6_sql=$(cat <<'SQL'
SET client_min_messages = warning;
SELECT shop.product_upsert('HA6-1', 'Stale test crate three', 1500, product_id => 9903) \g /dev/null
SELECT shop.stock_set(9903, 20) \g /dev/null
SQL
)
q "$R" "$PR" router -U backoffice <<<"$stale_fix6_sql"
q "$A" "$PA" one -U backoffice <<<"$stale_fix6_sql"
stale_err6_sql=$(sed -n '/^CREATE FUNCTION pg_temp.err/,/^\$f\$;/p' <<<"$stale_err_sql")
# the cart (two units of 9903) and the order (one), by the back office
stale_ids6_sql=$(cat <<'SQL'
SET client_min_messages = warning;
SELECT shop.cart_create(534) AS cart \gset
SELECT shop.cart_add(:'cart', 9903, 2) \g /dev/null
SELECT shop.cart_create(534) AS cart2 \gset
SELECT shop.cart_add(:'cart2', 9903, 1) \g /dev/null
SELECT :'cart', shop.checkout(:'cart2', 'tok_visa', 'ha6-1');
SQL
)
stale_ids_rt=$(q "$R" "$PR" router -U backoffice -At -F ' ' <<<"$stale_ids6_sql")
stale_ids_one=$(q "$A" "$PA" one -U backoffice -At -F ' ' <<<"$stale_ids6_sql")
stale_err6_sql=$(cat <<SQL
SET shop.session = '$stale_tok';
SET client_min_messages = notice;
$stale_err6_sql
SELECT replace(replace(format(c, :'cart', :'ord'), :'cart', 'CART'), :'ord', 'ORDER'),
       replace(replace(pg_temp.err(format(c, :'cart', :'ord')), :'cart', 'CART'), :'ord', 'ORDER'),
       pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)')
  FROM unnest(ARRAY['SELECT shop.cart_get(%1\$L)',
                    'SELECT shop.cart_add(%1\$L, 9903)',
                    'SELECT shop.cart_add(%1\$L, 999999999)',
                    'SELECT shop.cart_set_qty(%1\$L, 9903, 5)',
                    'SELECT shop.cart_remove(%1\$L, 9903)',
                    'SELECT shop.cart_save_for_later(%1\$L, 9903)',
                    'SELECT shop.cart_move_to_cart(%1\$L, 9903)',
                    'SELECT shop.cart_clear(%1\$L)',
                    'SELECT shop.checkout(%1\$L, ''tok_visa'', ''ha6-2'')',
                    'SELECT shop.order_get(%2\$L)',
                    'SELECT count(*) FROM shop.orders_for(534)',
                    'SELECT shop.cart_create(534) IS NOT NULL',
                    'SELECT count(*) FROM shop.search(''laptop'', lim => 5, customer_id => 534)',
                    'SELECT count(*) FROM shop.search(''laptop'', sort => ''price_asc'', lim => 5, customer_id => 534)',
                    'SELECT count(*) FROM shop.search(''laptop'', lim => 5, customer_id => 0)',
                    'SELECT count(*) FROM shop.search(''laptop'', lim => 5, customer_id => 533)']) WITH ORDINALITY u(c, n)
 ORDER BY n;
RESET shop.session;
SELECT replace(replace(format(c, :'cart', :'ord'), :'cart', 'CART'), :'ord', 'ORDER'),
       replace(replace(pg_temp.err(format(c, :'cart', :'ord')), :'cart', 'CART'), :'ord', 'ORDER'),
       pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)')
  FROM unnest(ARRAY['SELECT shop.cart_get(%1\$L)',
                    'SELECT shop.cart_add(%1\$L, 9903)',
                    'SELECT shop.order_get(%2\$L)',
                    'SELECT count(*) FROM shop.orders_for(534)',
                    'SELECT shop.cart_create(534) IS NOT NULL',
                    'SELECT count(*) FROM shop.search(''laptop'', lim => 5, customer_id => 534)',
                    'SELECT shop.session_begin(''v1.533.9999999999.'' || repeat(''0'', 64))',
                    'SELECT shop.session_begin(''nope'')',
                    'SELECT shop.session_begin(NULL)']) WITH ORDINALITY u(c, n)
 ORDER BY n;
SQL
)
stale_after6_sql="SELECT 'cart', (shop.cart_get(:'cart')) -> 'item_count', shop.stock_available(9903)"
stale_err_rt=$(set -- $stale_ids_rt; q "$R" "$PR" router -U web -At -v cart="$1" -v ord="$2" 2>&1 <<<"$stale_err6_sql";
               q "$R" "$PR" router -U backoffice -At -v cart="$1" <<<"$stale_after6_sql")
stale_err_one=$(set -- $stale_ids_one; q "$A" "$PA" one -U web -At -v cart="$1" -v ord="$2" 2>&1 <<<"$stale_err6_sql";
                q "$A" "$PA" one -U backoffice -At -v cart="$1" <<<"$stale_after6_sql")
stale_n=$(grep -c 'dropping stale conn' <<<"$stale_err_rt" || true)
[ "$stale_n" = 0 ] || { echo "FAIL: $stale_n connections dropped as stale after acting for another customer:"; echo "$stale_err_rt"; exit 1; }
[ "$stale_err_rt" = "$stale_err_one" ] ||
    { echo "FAIL: the routed refusals for another customer are not one node's:"; diff <(echo "$stale_err_one") <(echo "$stale_err_rt"); exit 1; }
[ "$(grep -c '|ok$' <<<"$stale_err_rt")" = 25 ] &&
    [ "$(grep -c '|28000 | invalid session token | The token' <<<"$stale_err_rt")" = 2 ] &&
    [ "$(grep -c '|22004 | argument token must not be null' <<<"$stale_err_rt")" = 1 ] &&
    [ "$(grep -c '|42501 | permission denied for customer 534 | The session acts for customer 533\. | |ok$' <<<"$stale_err_rt")" = 14 ] &&
    [ "$(grep -c '|42501 | permission denied for customer 534 | .* | Call shop.session_begin' <<<"$stale_err_rt")" = 6 ] &&
    [ "$(grep -c '^cart|2|19$' <<<"$stale_err_rt")" = 1 ] ||
    { echo "FAIL: acting for another customer did not give 14 refusals with a session, 6 without, 3 tokens refused, the cart and stock untouched and a search after each:"; echo "$stale_err_rt"; exit 1; }
echo "ok: $(($(wc -l <<<"$stale_err_rt") - 1)) calls acting for another customer or with a refused token refused as one node refuses them, no connection dropped as stale"

# 55006 (issue 16, ha6): a checkout of a cart whose checkout under another
# key has not finished (the router's alone: one node's second checkout
# waits for the first), answered as data by the cart's shard
# (shop._saga_begin_try) and raised by the router with the shard's
# message, detail and hint, no REMOTE ERROR prefix. The first checkout
# stops after its holds (shop_router.saga_test_stop), the storefront's
# second is refused, then the first key completes it. No connection
# dropped as stale.
stale_c55=$(q "$R" "$PR" router -U backoffice -At -c "SET client_min_messages = warning; SELECT shop.cart_create(533)")
q "$R" "$PR" router -U backoffice -At -c "SELECT shop.cart_add('$stale_c55', 9903, 1)" >/dev/null
q "$R" "$PR" router -U backoffice -At -c "SET shop_router.saga_test_stop = 'reserve'" \
    -c "SELECT shop.checkout('$stale_c55', 'tok_visa', 'ha6-55a')" >/dev/null 2>&1 &&
    { echo "FAIL: the checkout did not stop after its holds (the test tests nothing)"; exit 1; }
stale_err7_sql=$(sed -n '/^CREATE FUNCTION pg_temp.err/,/^\$f\$;/p' <<<"$stale_err_sql")
stale_err_rt=$(q "$R" "$PR" router -U web -At 2>&1 <<SQL
SET shop.session = '$stale_tok';
SET client_min_messages = notice;
$stale_err7_sql
SELECT replace(pg_temp.err('SELECT shop.checkout(''$stale_c55'', ''tok_visa'', ''ha6-55b'')'), '$stale_c55', 'CART'),
       pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)');
SELECT pg_temp.err('SELECT shop.checkout(''$stale_c55'', ''tok_visa'', ''ha6-55a'') IS NOT NULL'),
       pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)');
SQL
)
stale_n=$(grep -c 'dropping stale conn' <<<"$stale_err_rt" || true)
[ "$stale_n" = 0 ] || { echo "FAIL: $stale_n connections dropped as stale after a 55006:"; echo "$stale_err_rt"; exit 1; }
[ "$(sed -n 1p <<<"$stale_err_rt" | sed -E 's/order [0-9a-f-]+/order ORDER/')" = "55006 | cart is being checked out | A checkout of cart CART under another idempotency key (order ORDER) has not finished. | Repeat that checkout with its key, or retry once shop_router.saga_recover() has finished it.|ok" ] &&
    [ "$(sed -n 2p <<<"$stale_err_rt")" = "ok|ok" ] ||
    { echo "FAIL: the second checkout of a cart being checked out did not give the router's 55006, or the first key did not complete it:"; echo "$stale_err_rt"; exit 1; }
echo "ok: a checkout of a cart being checked out refused with 55006 as data, completed by its key, no connection dropped as stale"
