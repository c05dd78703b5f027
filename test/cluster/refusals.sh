# refusals.sh (sourced by run.sh after stale.sh): the last shard errors
# of issue 16 answered as data (ha7). Each call below used to fail on a
# shard, and PL/Proxy remade the connection ("NOTICE: PL/Proxy: dropping
# stale conn" on the next call). Now the shard answers the refusal and the
# router raises it with one node's SQLSTATE, message, detail and hint.
# Every call is followed by a search reading every shard; no connection
# may be dropped as stale, and the same script on the one-node reference
# gives the same lines.
echo "== the session's token and the last refusals as data ($(date +%T))"
ref_err_fn=$(cat <<'SQL'
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
SQL
)
ref_fix_sql=$(cat <<'SQL'
SET client_min_messages = warning;
SELECT shop.product_upsert('HA7-1', 'Refusal test crate', 1500, product_id => 9904) \g /dev/null
SELECT shop.stock_set(9904, 20) \g /dev/null
SQL
)
q "$R" "$PR" router -U backoffice <<<"$ref_fix_sql"
q "$A" "$PA" one -U backoffice <<<"$ref_fix_sql"
# a live token of customer 533, one of 533 that has expired, a forged one
# (the signature of another customer's token), a malformed one
ref_tok=$(q "$A" "$PA" one -U backoffice -At -c "SELECT shop.session_token(533)")
ref_old=$(q "$A" "$PA" one -U backoffice -At -c "SELECT shop.session_token(533, '1 second')")
ref_forged="v1.534.${ref_tok#v1.533.}"
sleep 2

# 1. A token the shards refuse (28000), set on the router with SET
# shop.session, in every routed call that carries it (each raised on the
# shard's set_config before: one reconnection per partition reached, four
# for a personalized search). One node refuses the SET itself, with the
# same error. As the storefront, on a guest cart of its own. Since ha10
# also the calls whose arguments the router refuses itself (orders_for's,
# cart_create's, a personalized search's): the token's refusal first, as
# on one node (before, 22004 or 22023, and a NULL query a shard's error).
ref_err1_sql=$(cat <<SQL
SET client_min_messages = warning;
SELECT shop.cart_create() AS cart \gset
SELECT shop.cart_add(:'cart', 9904) \g /dev/null
SET client_min_messages = notice;
$ref_err_fn
SELECT t.k, u.c, pg_temp.err(format('SET shop.session = %L; %s', t.tok, format(u.c, :'cart'))),
       pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)')
  FROM (VALUES (1, 'forged', '$ref_forged'), (2, 'malformed', 'v1.533.nope'), (3, 'expired', '$ref_old')) t(n, k, tok),
       unnest(ARRAY['SELECT shop.cart_get(%L)',
                    'SELECT shop.cart_add(%L, 9904)',
                    'SELECT shop.cart_set_qty(%L, 9904, 2)',
                    'SELECT shop.cart_remove(%L, 9904)',
                    'SELECT shop.cart_save_for_later(%L, 9904)',
                    'SELECT shop.cart_move_to_cart(%L, 9904)',
                    'SELECT shop.cart_clear(%L)',
                    'SELECT shop.cart_create()',
                    'SELECT shop.cart_create(533)',
                    'SELECT shop.checkout(%L, ''tok_visa'', ''ha7-1'')',
                    'SELECT shop.order_get(''00000000-0000-0000-0000-00000000aa07'')',
                    'SELECT count(*) FROM shop.orders_for(533)',
                    'SELECT count(*) FROM shop.search(''laptop'', lim => 5, customer_id => 533)',
                    'SELECT shop.payment_method_add(533, ''tok_visa'', ''visa'', ''4242'', 12, 2030)',
                    'SELECT shop.review_add(9904, 533, 5)',
                    'SELECT shop.review_delete(9904, 533)',
                    'SELECT shop.cart_merge(%L, 533)',
                    'SELECT shop.view(533, 9904)',
                    'SELECT count(*) FROM shop.recently_viewed(533)',
                    'SELECT shop.view(NULL, 9904)',
                    'SELECT count(*) FROM shop.recently_viewed(NULL)',
                    'SELECT count(*) FROM shop.recommend(533, 5)',
                    'SELECT count(*) FROM shop.recommend(533, 5, ''ha7-none'')',
                    'SELECT shop.experiment_assign(''ha7-none'', 533)',
                    'SELECT shop.current_customer()',
                    'SELECT count(*) FROM shop.also_bought(9904, 5, ''ha7-none'')',
                    'SELECT count(*) FROM shop.orders_for(NULL)',
                    'SELECT count(*) FROM shop.orders_for(533, 0)',
                    'SELECT count(*) FROM shop.orders_for(0)',
                    'SELECT shop.cart_create(0)',
                    'SELECT count(*) FROM shop.search(''laptop'', lim => 0, customer_id => 533)',
                    'SELECT count(*) FROM shop.search(''laptop'', off => -1, customer_id => 533)',
                    'SELECT count(*) FROM shop.search(NULL, customer_id => 533)']) WITH ORDINALITY u(c, n)
 ORDER BY t.n, u.n;
SELECT 'cart', (shop.cart_get(:'cart')) -> 'item_count', shop.stock_available(9904);
SQL
)
ref_rt=$(q "$R" "$PR" router -U web -At 2>&1 <<<"$ref_err1_sql")
ref_one=$(q "$A" "$PA" one -U web -At 2>&1 <<<"$ref_err1_sql")
ref_n=$(grep -c 'dropping stale conn' <<<"$ref_rt" || true)
[ "$ref_n" = 0 ] || { echo "FAIL: $ref_n connections dropped as stale after the refused tokens:"; echo "$ref_rt"; exit 1; }
[ "$ref_rt" = "$ref_one" ] ||
    { echo "FAIL: the routed token refusals are not one node's:"; diff <(echo "$ref_one") <(echo "$ref_rt"); exit 1; }
[ "$(grep -c '|28000 | invalid session token | The token.s signature does not match\. | |ok$' <<<"$ref_rt")" = 33 ] &&
    [ "$(grep -c '|28000 | invalid session token | The token is not a shop session token\. | |ok$' <<<"$ref_rt")" = 33 ] &&
    [ "$(grep -c '|28000 | invalid session token | The token has expired\. | |ok$' <<<"$ref_rt")" = 33 ] &&
    [ "$(grep -c '^cart|1|20$' <<<"$ref_rt")" = 1 ] ||
    { echo "FAIL: the refused tokens did not give 3 x 33 refusals, the cart and the stock untouched and a search after each:"; echo "$ref_rt"; exit 1; }
echo "ok: $(($(wc -l <<<"$ref_rt") - 1)) routed calls with a forged, a malformed and an expired token refused as one node refuses the token, no connection dropped as stale"

# 2. The other customer's refusals of review_add, review_delete,
# payment_method_add, recommend and cart_merge (42501, and cart_merge's
# SH006 and arguments), and the same calls for the session's own
# customer. As the storefront with a session of customer 533, then
# without one; the guest carts are the storefront's own (on the customer's
# shard and on others), the other customer's cart the back office's.
ref_ids_sql="SET client_min_messages = warning; SELECT shop.cart_create(534)"
ref_c534_rt=$(q "$R" "$PR" router -U backoffice -At <<<"$ref_ids_sql")
ref_c534_one=$(q "$A" "$PA" one -U backoffice -At <<<"$ref_ids_sql")
ref_err2_sql=$(cat <<SQL
SET client_min_messages = warning;
SET shop.session = '$ref_tok';
-- guest carts: on the router one on 533's partition (the last 16 bits of
-- its id) and one on another; on one node the first two
CREATE TEMP TABLE g AS
SELECT n, cart, current_database() <> 'router'
               OR ('x' || right(cart::text, 4))::bit(16)::int & 3 = hashint8(533) & 3 AS mine
  FROM (SELECT n, shop.cart_create() AS cart FROM generate_series(1, 16) n) c;
SELECT (SELECT cart FROM g WHERE mine ORDER BY n LIMIT 1) AS same,
       (SELECT cart FROM g WHERE current_database() = 'router' AND NOT mine
                              OR current_database() <> 'router' AND n = 2 ORDER BY n LIMIT 1) AS other
\gset
SELECT shop.cart_add(:'same', 9904), shop.cart_add(:'other', 9904, 2) \g /dev/null
SET client_min_messages = notice;
$ref_err_fn
SELECT replace(replace(replace(u.c, :'same', 'SAME'), :'other', 'OTHER'), :'c534', 'C534'),
       replace(replace(replace(pg_temp.err(u.c), :'same', 'SAME'), :'other', 'OTHER'), :'c534', 'C534'),
       pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)')
  FROM unnest(ARRAY['SELECT shop.review_add(9904, 534, 5)',
                    'SELECT shop.review_add(9904, 534, 9)',
                    'SELECT shop.review_add(9904, 533, 4, ''Sturdy'')',
                    'SELECT shop.review_delete(9904, 534)',
                    'SELECT shop.review_delete(9904, 533)',
                    'SELECT shop.review_delete(9904, 533)',
                    'SELECT shop.payment_method_add(534, ''tok_visa'', ''visa'', ''4242'', 12, 2030)',
                    'SELECT shop.payment_method_add(533, ''tok_visa'', ''visa'', ''4242'', 12, 2030) IS NOT NULL',
                    'SELECT count(*) FROM shop.recommend(534, 5)',
                    'SELECT count(*) >= 0 FROM shop.recommend(533, 5)',
                    'SELECT shop.cart_merge(''$ref_c534_rt'', 534)',
                    'SELECT shop.cart_merge(' || quote_literal(:'same') || ', 534)',
                    'SELECT shop.cart_merge(' || quote_literal(:'other') || ', 534)',
                    'SELECT shop.cart_merge(''00000000-0000-0000-0000-00000000aa08'', 533)',
                    'SELECT shop.cart_merge(' || quote_literal(:'same') || ', 0)',
                    'SELECT shop.cart_merge(' || quote_literal(:'same') || ', 533) IS NOT NULL',
                    'SELECT shop.cart_merge(' || quote_literal(:'other') || ', 533) IS NOT NULL',
                    'SELECT shop.view(534, 9904)',
                    'SELECT count(*) FROM shop.recently_viewed(534)',
                    'SELECT shop.view(0, 9904)',
                    'SELECT count(*) FROM shop.recently_viewed(0)',
                    'SELECT shop.view(533, 9904)',
                    'SELECT count(*) > 0 FROM shop.recently_viewed(533)',
                    'SELECT shop.view(NULL, 9904)',
                    'SELECT count(*) FROM shop.recently_viewed(NULL)',
                    'SELECT shop.experiment_assign(''ha8-none'', 534)',
                    'SELECT shop.experiment_assign(''ha8-none'', 533)',
                    'SELECT shop.experiment_assign(''ha8-none'')',
                    'SELECT count(*) FROM shop.recommend(534, 5, ''ha8-none'')',
                    'SELECT count(*) FROM shop.recommend(533, 5, ''ha8-none'')',
                    'SELECT count(*) FROM shop.also_bought(9904, 5, ''ha8-none'', customer_id => 534)',
                    'SELECT count(*) FROM shop.also_bought(9904, 5, ''ha8-none'')']) WITH ORDINALITY u(c, n)
 ORDER BY u.n;
RESET shop.session;
SELECT u.c, pg_temp.err(u.c), pg_temp.err('SELECT count(*) FROM shop.search(''laptop'', lim => 5)')
  FROM unnest(ARRAY['SELECT shop.review_add(9904, 533, 5)',
                    'SELECT shop.review_delete(9904, 533)',
                    'SELECT shop.payment_method_add(533, ''tok_visa'', ''visa'', ''4242'', 12, 2030)',
                    'SELECT count(*) FROM shop.recommend(533, 5)',
                    'SELECT shop.view(533, 9904)',
                    'SELECT count(*) FROM shop.recently_viewed(533)',
                    'SELECT shop.view(NULL, 9904)',
                    'SELECT count(*) FROM shop.recently_viewed(NULL)']) WITH ORDINALITY u(c, n)
 ORDER BY u.n;
SQL
)
# (the other customer's cart id differs: the router's is in the SQL, one
# node's replaces it)
ref_rt=$(q "$R" "$PR" router -U web -At -v c534="$ref_c534_rt" 2>&1 <<<"$ref_err2_sql")
ref_one=$(q "$A" "$PA" one -U web -At -v c534="$ref_c534_one" 2>&1 <<<"${ref_err2_sql//$ref_c534_rt/$ref_c534_one}")
ref_n=$(grep -c 'dropping stale conn' <<<"$ref_rt" || true)
[ "$ref_n" = 0 ] || { echo "FAIL: $ref_n connections dropped as stale after the refusals for another customer:"; echo "$ref_rt"; exit 1; }
[ "$ref_rt" = "$ref_one" ] ||
    { echo "FAIL: the routed refusals for another customer are not one node's:"; diff <(echo "$ref_one") <(echo "$ref_rt"); exit 1; }
[ "$(grep -c '|ok$' <<<"$ref_rt")" = 40 ] &&
    [ "$(grep -c '|22004 | argument customer_id must not be null | .*|ok$' <<<"$ref_rt")" = 4 ] &&
    [ "$(grep -c '|42501 | permission denied for customer 534 | The session acts for customer 533\. | |ok$' <<<"$ref_rt")" = 12 ] &&
    [ "$(grep -c '|SH006 | experiment not found | ' <<<"$ref_rt")" = 4 ] &&
    [ "$(grep -c '|22023 | .*customer_id.* | |ok$' <<<"$ref_rt")" = 3 ] &&
    [ "$(grep -c '|42501 | permission denied for customer 533 | .* | Call shop.session_begin' <<<"$ref_rt")" = 6 ] ||
    { echo "FAIL: the refusals for another customer did not give 12 with a session, 3 of customer 0, 4 unknown experiments, 6 without, 4 NULL customer ids and a search after each:"; echo "$ref_rt"; exit 1; }
echo "ok: $(wc -l <<<"$ref_rt") review, payment method, recommendation, cart_merge, view, recently_viewed and experiment calls refused (or not) as one node refuses them, no connection dropped as stale"

# 3. The merge's step on the customer's shard with a new cart id already
# taken (23505 cart id is taken, hostile2's check): shop._cart_merge_in_try
# answers it as data (ha9; it raised it before). The router draws that id
# at random on the customer's partition, so a routed call cannot cause it:
# the step is called directly, as web with a session of customer 536 (who
# has no cart), on one node and on 536's shard, with the guest cart's own
# id; nothing is merged, and the merge then succeeds.
ref_p=$(q "$A" "$PA" one -At -c "SELECT hashint8(536) & 3")
ref_dir=$A ref_port=$PA; [ $((ref_p % 2)) = 1 ] && ref_dir=$B ref_port=$PB
ref_tok536=$(q "$A" "$PA" one -U backoffice -At -c "SELECT shop.session_token(536)")
ref_err3_sql=$(cat <<SQL
SET client_min_messages = warning;
SET shop.session = '$ref_tok536';
SELECT shop.cart_create() AS g \gset
SELECT o.lines, o.sig FROM shop._cart_merge_out_try(:'g', 536) o \gset
SELECT 'in', i.cart_id IS NULL, i.done_sig IS NULL, array_to_string(i.error, ' | ')
  FROM shop._cart_merge_in_try(:'g', 536, :'g', :'lines', :'sig') i;
SELECT 'merge', shop.cart_merge(:'g', 536) = :'g', (shop.cart_get(:'g')) -> 'item_count';
SQL
)
ref_uuid='s/[0-9a-f]\{8\}-[0-9a-f-]\{27\}/ID/g'
ref_one=$(q "$A" "$PA" one -U web -At 2>&1 <<<"$ref_err3_sql" | sed "$ref_uuid" || true)
ref_sh=$(q "$ref_dir" "$ref_port" "s$ref_p" -U web -At 2>&1 <<<"$ref_err3_sql" | sed "$ref_uuid" || true)
[ "$ref_one" = "$ref_sh" ] &&
    [ "$ref_one" = "$(printf '%s\n' 'in|t|t|23505 | cart id is taken | A cart with id ID exists. | Choose another id.' 'merge|t|0')" ] ||
    { echo "FAIL: the merge's step with a taken cart id did not answer 23505 as data on one node and on the shard:"; echo "$ref_one"; echo "$ref_sh"; exit 1; }
echo "ok: the merge's step with a taken cart id answers 23505 as data (one node and shard $ref_p), nothing merged"

# 4. view's product is its shard's signed word (ha10): the customer's
# shard records a view only with the product shard's signature that the
# product exists (shop._view_found). Until ha10 the router passed a
# boolean, and the storefront, calling the step on the customer's shard
# itself with "found" true, recorded for its own customer a view of a
# product id that does not exist. As web with a session of customer 533,
# on 533's shard: no proof, a made-up signature and product 9904's
# signature (from its own shard) for a missing id are refused (42501),
# nothing is recorded; 9904's own proof records, and a routed view still
# does.
ref_p=$(q "$A" "$PA" one -At -c "SELECT hashint8(533) & 3")
ref_dir=$A ref_port=$PA; [ $((ref_p % 2)) = 1 ] && ref_dir=$B ref_port=$PB
ref_pp=$(q "$A" "$PA" one -At -c "SELECT hashint8(9904) & 3")
ref_pdir=$A ref_pport=$PA; [ $((ref_pp % 2)) = 1 ] && ref_pdir=$B ref_pport=$PB
ref_found=$(q "$ref_pdir" "$ref_pport" "s$ref_pp" -U web -At -F ' ' -c "SELECT found_until, found_sig FROM shop._view_found(9904)")
ref_until=${ref_found% *} ref_sig=${ref_found#* }
[ -n "$ref_until" ] && [ ${#ref_sig} = 64 ] ||
    { echo "FAIL: product 9904's shard gave no signed proof to web: $ref_found"; exit 1; }
ref_err4_sql=$(cat <<SQL
SET client_min_messages = warning;
SET shop.session = '$ref_tok';
$ref_err_fn
SELECT u.k, pg_temp.err(u.c)
  FROM (VALUES (1, 'no proof', 'SELECT shop._view_record(533, 987654, $ref_until, NULL)'),
               (2, 'made up', 'SELECT shop._view_record(533, 987654, $ref_until, ''' || repeat('ab', 32) || ''')'),
               (3, '9904''s proof', 'SELECT shop._view_record(533, 987654, $ref_until, ''$ref_sig'')'),
               (4, 'own proof', 'SELECT shop._view_record(533, 9904, $ref_until, ''$ref_sig'')')) u(n, k, c)
 ORDER BY u.n;
RESET shop.session;
SQL
)
ref_sh=$(q "$ref_dir" "$ref_port" "s$ref_p" -U web -At 2>&1 <<<"$ref_err4_sql")
ref_views=$(q "$ref_dir" "$ref_port" "s$ref_p" -At -c "SELECT count(*) FILTER (WHERE product_id = 987654), count(*) FILTER (WHERE product_id = 9904) FROM shop.view_event WHERE customer_id = 533")
ref_rt=$(q "$R" "$PR" router -U web -At -c "SET shop.session = '$ref_tok'" -c "SELECT shop.view(533, 9904)" -c "SELECT product_id FROM shop.recently_viewed(533) WHERE product_id = 9904" 2>&1)
ref_want=$(printf '%s\n' \
    'no proof|42501 | permission denied for the product of a view | The call carries no valid signature of the shard that owns this fact. | The storefront reaches this step only through the router'"'"'s calls.' \
    'made up|42501 | permission denied for the product of a view | The call carries no valid signature of the shard that owns this fact. | The storefront reaches this step only through the router'"'"'s calls.' \
    '9904'"'"'s proof|42501 | permission denied for the product of a view | The call carries no valid signature of the shard that owns this fact. | The storefront reaches this step only through the router'"'"'s calls.' \
    'own proof|ok')
[ "$ref_sh" = "$ref_want" ] && [ "$ref_views" = "0|1" ] && [ "$ref_rt" = "$(printf '\n9904')" ] ||
    { echo "FAIL: the view step on the customer's shard took a product it was not signed:"; echo "$ref_sh"; echo "views (missing|9904): $ref_views"; echo "routed: $ref_rt"; exit 1; }
echo "ok: the view step on customer 533's shard refuses a product without its shard's signature (42501 x 3), records with it; routed views record"
