# forget.sh (sourced by run.sh): a refused session_begin through the
# router forgets the session begun before it, as on one node (sec5,
# docs/scale-out.md, "The storefront's session reaches the shards with
# each call"; docs/security.md, "Behind a connection pooler").
# One node's session_begin forgets every earlier session before it
# verifies, outside the transaction; until sec5 the router's was PL/pgSQL,
# whose refusal rolled back everything it did, so the session begun
# before stayed: a pooled storefront connection serving visitor B after
# visitor A acted for A after B's forged, expired or malformed token. Here
# the storefront login web, on the router and on the one-node reference,
# sets customer 611's token before anything loaded the router's library
# (a placeholder setting until then) and session_begin's a forged one;
# then begins 611's session and
#   - session_begin with a forged, an expired, a malformed and a NULL
#     token (28000, 28000, 28000, 22004): then current_customer() is NULL
#     and cart_get of 611's cart and orders_for(611) are refused (42501);
#   - the same refusal inside a transaction block rolled back, and inside
#     a savepoint rolled back to; a SET LOCAL over the forgotten session
#     (acts until its transaction ends, then nothing); a successful
#     session_begin and a session_end in a transaction rolled back (both
#     forget what came before, as on one node); SET of the same token
#     again (acts), RESET and DISCARD ALL (nothing).
# The router's lines must be one node's, and the expected ones below.
echo "== a refused session_begin forgets the earlier session, through the router as on one node ($(date +%T))"
forget_fail() { echo "FAIL: $*"; exit 1; }
forget_tok=$(q "$R" "$PR" router -U backoffice -At -c "SELECT shop.session_token(611)")
forget_expiring=$(q "$R" "$PR" router -U backoffice -At -c "SELECT shop.session_token(611, '1 second')")
# a forged token: 611's with the last hex digit of its signature changed
forget_forged="${forget_tok%?}$([ "${forget_tok: -1}" = 0 ] && echo 1 || echo 0)"
forget_cart_r=$(q "$R" "$PR" router -U backoffice -At -c "SELECT shop.cart_create(611)")
forget_cart_1=$(q "$A" "$PA" one -U backoffice -At -c "SELECT shop.cart_create(611)")
# the short token expires (its expiry is a whole second: the shard's
# check says when, the test only waits for it)
for _ in $(seq 1 50); do
    [ "$(q "$A" "$PA" s0 -At -c "SELECT shop._session_refusal('$forget_expiring') IS NOT NULL")" = t ] && break
    sleep 0.2
done
[ "$(q "$A" "$PA" s0 -At -c "SELECT (shop._session_refusal('$forget_expiring'))[3]")" = "The token has expired." ] ||
    forget_fail "the 1-second token did not expire"
forget_sql=$(cat <<'SQL'
\set VERBOSITY sqlstate
SET client_min_messages = warning;
CREATE FUNCTION pg_temp.acts(cart uuid) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE c text; g text; o text;
BEGIN
    c := coalesce(shop.current_customer()::text, 'none');
    BEGIN PERFORM shop.cart_get(cart); g := 'ok'; EXCEPTION WHEN OTHERS THEN g := SQLSTATE; END;
    BEGIN PERFORM * FROM shop.orders_for(611); o := 'ok'; EXCEPTION WHEN OTHERS THEN o := SQLSTATE; END;
    RETURN format('customer %s, cart_get %s, orders_for %s', c, g, o);
END
$f$;
\echo a token SET before anything loaded the router library
SET shop.session = :'tok';
SELECT shop.session_begin(:'forged') \g /dev/null
\echo begin forged :SQLSTATE
SELECT pg_temp.acts(:'cart');
SELECT shop.session_begin(:'tok') \g /dev/null
\echo begin 611 :SQLSTATE
SELECT pg_temp.acts(:'cart');
SELECT shop.session_begin(:'forged') \g /dev/null
\echo begin forged :SQLSTATE
SELECT pg_temp.acts(:'cart');
SELECT shop.session_begin(:'tok') \g /dev/null
\echo begin 611 :SQLSTATE
SELECT shop.session_begin(:'expired') \g /dev/null
\echo begin expired :SQLSTATE
SELECT pg_temp.acts(:'cart');
SELECT shop.session_begin(:'tok') \g /dev/null
SELECT shop.session_begin('v1.611.notatoken') \g /dev/null
\echo begin malformed :SQLSTATE
SELECT pg_temp.acts(:'cart');
SELECT shop.session_begin(:'tok') \g /dev/null
SELECT shop.session_begin(NULL) \g /dev/null
\echo begin NULL :SQLSTATE
SELECT pg_temp.acts(:'cart');
\echo a refusal in a transaction block rolled back
SET shop.session = :'tok';
SELECT pg_temp.acts(:'cart');
BEGIN;
SELECT shop.session_begin(:'forged') \g /dev/null
\echo begin forged :SQLSTATE
ROLLBACK;
SELECT pg_temp.acts(:'cart');
\echo a refusal in a savepoint rolled back to
SELECT set_config('shop.session', :'tok', false) \g /dev/null
BEGIN;
SAVEPOINT s;
SELECT shop.session_begin(:'forged') \g /dev/null
\echo begin forged :SQLSTATE
ROLLBACK TO s;
SELECT pg_temp.acts(:'cart');
COMMIT;
SELECT pg_temp.acts(:'cart');
\echo SET LOCAL over the forgotten session, then its end
BEGIN;
SET LOCAL shop.session = :'tok';
SELECT pg_temp.acts(:'cart');
COMMIT;
SELECT pg_temp.acts(:'cart');
\echo a SET LOCAL session, then a refusal in its transaction
BEGIN;
SELECT set_config('shop.session', :'tok', true) \g /dev/null
SELECT pg_temp.acts(:'cart');
SAVEPOINT s;
SELECT shop.session_begin(:'forged') \g /dev/null
ROLLBACK TO s;
SELECT pg_temp.acts(:'cart');
ROLLBACK;
\echo a successful session_begin rolled back
SET shop.session = :'tok';
BEGIN;
SELECT shop.session_begin(:'tok') \g /dev/null
\echo begin 611 :SQLSTATE
ROLLBACK;
SELECT pg_temp.acts(:'cart');
\echo a session_end rolled back
SET shop.session = :'tok';
SELECT pg_temp.acts(:'cart');
BEGIN;
SELECT shop.session_end() \g /dev/null
ROLLBACK;
SELECT pg_temp.acts(:'cart');
\echo the token set again, RESET, DISCARD ALL
SELECT shop.session_begin(:'forged') \g /dev/null
SET shop.session = :'tok';
SELECT pg_temp.acts(:'cart');
RESET shop.session;
SELECT pg_temp.acts(:'cart');
SET shop.session = :'tok';
SELECT shop.session_begin(:'forged') \g /dev/null
DISCARD ALL;
SELECT coalesce(shop.current_customer()::text, 'none');
SQL
)
forget_run() {   # forget_run DIR PORT DB CART
    "$PGBIN/psql" -X -q -At -h "$1" -p "$2" -d "$3" -U web -v tok="$forget_tok" -v forged="$forget_forged" \
        -v expired="$forget_expiring" -v cart="$4" <<<"$forget_sql" 2>/dev/null
}
forget_rt=$(forget_run "$R" "$PR" router "$forget_cart_r")
forget_one=$(forget_run "$A" "$PA" one "$forget_cart_1")
forget_want=$(cat <<'OUT'
a token SET before anything loaded the router library
begin forged 28000
customer none, cart_get 42501, orders_for 42501
begin 611 00000
customer 611, cart_get ok, orders_for ok
begin forged 28000
customer none, cart_get 42501, orders_for 42501
begin 611 00000
begin expired 28000
customer none, cart_get 42501, orders_for 42501
begin malformed 28000
customer none, cart_get 42501, orders_for 42501
begin NULL 22004
customer none, cart_get 42501, orders_for 42501
a refusal in a transaction block rolled back
customer 611, cart_get ok, orders_for ok
begin forged 28000
customer none, cart_get 42501, orders_for 42501
a refusal in a savepoint rolled back to
begin forged 28000
customer none, cart_get 42501, orders_for 42501
customer none, cart_get 42501, orders_for 42501
SET LOCAL over the forgotten session, then its end
customer 611, cart_get ok, orders_for ok
customer none, cart_get 42501, orders_for 42501
a SET LOCAL session, then a refusal in its transaction
customer 611, cart_get ok, orders_for ok
customer none, cart_get 42501, orders_for 42501
a successful session_begin rolled back
begin 611 00000
customer none, cart_get 42501, orders_for 42501
a session_end rolled back
customer 611, cart_get ok, orders_for ok
customer none, cart_get 42501, orders_for 42501
the token set again, RESET, DISCARD ALL
customer 611, cart_get ok, orders_for ok
customer none, cart_get 42501, orders_for 42501
none
OUT
)
[ "$forget_one" = "$forget_want" ] || { echo "FAIL: one node answered (expected on the left):"
    diff <(echo "$forget_want") <(echo "$forget_one"); exit 1; }
[ "$forget_rt" = "$forget_one" ] || { echo "FAIL: through the router (one node on the left):"
    diff <(echo "$forget_one") <(echo "$forget_rt"); exit 1; }
echo "ok: $(grep -c '^customer none' <<<"$forget_rt") times no customer after a refused, ended or rolled back session, through the router as on one node"
# SHOW on the router (current_setting): the token while it acts, nothing
# once forgotten
forget_show=$("$PGBIN/psql" -X -q -At -h "$R" -p "$PR" -d router -U web -v tok="$forget_tok" -v forged="$forget_forged" 2>/dev/null <<'SQL'
SELECT shop.session_begin(:'tok') \g /dev/null
SELECT current_setting('shop.session') = :'tok';
SELECT shop.session_begin(:'forged') \g /dev/null
SELECT '[' || current_setting('shop.session') || ']';
SQL
)
[ "$forget_show" = $'t\n[]' ] || forget_fail "shop.session on the router, live then forgotten: '$forget_show', expected t and []"
echo "ok: SHOW shop.session on the router shows the live token, nothing once it is forgotten"
# A router database on a server that preloads shop (cluster A): shop's own
# shop.session is in place of the router's, so a routed call cannot carry
# a session (55000); without a session the router answers as usual.
"$PGBIN/createdb" -h "$A" -p "$PA" forget_router
q "$A" "$PA" forget_router -c "SET client_min_messages = warning; CREATE EXTENSION shop_router CASCADE"
forget_pre=$("$PGBIN/psql" -X -q -At -h "$A" -p "$PA" -d forget_router -U web -v tok="$forget_tok" 2>&1 <<'SQL'
\set VERBOSITY sqlstate
SELECT coalesce(shop.current_customer()::text, 'none');
SET shop.session = :'tok';
SELECT shop.current_customer();
SELECT shop.session_end();
SELECT coalesce(shop.current_customer()::text, 'none');
SQL
) || true
"$PGBIN/dropdb" -h "$A" -p "$PA" forget_router
[ "$forget_pre" = $'none\nERROR:  55000\n\nnone' ] ||
    forget_fail "a router on a server that preloads shop answered '$forget_pre', expected none, 55000, none"
echo "ok: a router on a server that preloads shop refuses to carry a session (55000), answers without one"
