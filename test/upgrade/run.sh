#!/usr/bin/env bash
# upgrade: a 1.0 install with data, updated with ALTER EXTENSION shop UPDATE,
# ends with exactly the objects of a fresh install of the current version
# (fingerprint.sql: definitions, privileges, comments, columns, constraints,
# indexes, triggers, policies), keeps every row, and keeps working: search
# finds what it found before, a checkout goes through.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
DIR="$TOP/tmp_check/upgrade"
PORT=$(free_port upgrade)
cluster_init "$DIR" "$PORT"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
PSQL="$PGBIN/psql -X -v ON_ERROR_STOP=1 -q"

current=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$TOP/shop.control")
echo "current version: $current"

# Every update script chains from 1.0 to the current version.
$PGBIN/createdb old
$PSQL -d old <<'SQL'
CREATE EXTENSION shop VERSION '1.0' CASCADE;
SELECT shop.category_add('Root') AS r \gset
SELECT count(shop.product_upsert('U-' || g, 'Upgrade ' || (ARRAY['lamp','desk','chair','sofa'])[1 + g % 4] || ' ' || g,
                                 100 * g, brand => 'B' || (g % 3), category_id => :r))
  FROM generate_series(1, 200) g;
SELECT count(shop.stock_set(product_id, 50)) FROM shop.product;
-- loaded with ids of its own, as scripts/load_*.sql do: 1.0 leaves the
-- identity sequence behind them (issue 17), the update moves it past them
INSERT INTO shop.product (product_id, sku, title, price_cents)
SELECT 200 + g, 'U-LOADED-' || g, 'Upgrade vase ' || g, 100 FROM generate_series(1, 20) g;
INSERT INTO shop.category (category_id, name) VALUES (50, 'Loaded');
SELECT shop.review_add(3, 7, 4);
SELECT shop.cart_create(customer_id => 7) AS cart \gset
SELECT shop.cart_add(:'cart', 5, 2);
SELECT shop.checkout(:'cart', 'tok_visa', 'upgrade-1') IS NOT NULL AS ordered;
-- a guest's order (and its cart, open with another line), a gateway's
-- pending order, a customer's open cart: the update gives each row of
-- them a customer_key (docs/scale-out.md, "Citus-compatible keys")
SELECT shop.cart_create() AS gcart \gset
SELECT shop.cart_add(:'gcart', 6, 1);
SELECT shop.cart_add(:'gcart', 7, 2);
SELECT shop.checkout(:'gcart', 'tok_visa', 'upgrade-guest') IS NOT NULL AS ordered;
SELECT shop.cart_add(:'gcart', 8, 1);
SELECT shop.cart_create(customer_id => 9) AS c9 \gset
SELECT shop.cart_add(:'c9', 9, 1);
SELECT shop.checkout(:'c9', 'stripe:pm_upgrade', 'upgrade-9') IS NOT NULL AS ordered;
SELECT shop.cart_add(:'c9', 10, 3);
UPDATE shop.product SET created_at = created_at - product_id % 7 * interval '1 day';
-- a shop_search index of the user's own: the update rebuilds it (the
-- document format of 1.1 is not 1.0's)
CREATE TABLE public.note (id int PRIMARY KEY, title text);
INSERT INTO public.note SELECT g, 'note lamp ' || g FROM generate_series(1, 30) g;
CREATE INDEX note_search ON public.note USING shop_search (shop.search_doc(title));
SQL

# the rows and answers the update must keep
state() {
    $PSQL -At -d "$1" <<'SQL'
SELECT 'products ' || count(*) || ' ' || md5(string_agg(p::text, ',' ORDER BY product_id)) FROM shop.product p;
SELECT 'stock ' || md5(string_agg(s::text, ',' ORDER BY product_id, location)) FROM shop.stock s;
SELECT 'orders ' || count(*) || ' ' || string_agg(status || ' ' || total_cents, ',') FROM shop."order";
SELECT 'reviews ' || string_agg(product_id || ':' || rating, ',') FROM shop.review;
SELECT 'search ' || string_agg(product_id::text, ',' ORDER BY product_id) FROM shop.search('lamp', lim => 100);
SELECT 'typo ' || string_agg(product_id::text, ',' ORDER BY product_id) FROM shop.search('chiar', lim => 100);
SELECT 'newest ' || string_agg(product_id::text, ',') FROM shop.search('lamp', sort => 'newest', lim => 30, off => 5);
SELECT 'cheapest ' || string_agg(product_id::text, ',') FROM shop.search('desk', sort => 'price_asc', lim => 10);
SET enable_seqscan = off;
SELECT 'notes ' || count(*) FROM public.note WHERE shop.search_doc(title) OPERATOR(shop.@@@) '"lamp"';
SQL
}
before=$(state old)

# An index written in an older format (1.0's, before units and model
# numbers changed its terms: format 4) is refused with a REINDEX hint,
# never read as the new one; the update rebuilds every shop_search index,
# a user's own too.  The format version is patched in the metapages
# (block 0: page header, magic, version) while the cluster is down.
$PSQL -d old <<'SQL'
CREATE TABLE notes (id int PRIMARY KEY, title text);
INSERT INTO notes SELECT g, 'note ' || g || CASE WHEN g % 2 = 0 THEN ' lamp' ELSE '' END FROM generate_series(1, 50) g;
CREATE INDEX notes_search ON notes USING shop_search (shop.search_doc(title));
SQL
files=$($PSQL -At -d old -c "SELECT pg_relation_filepath('shop.product_search_idx'), pg_relation_filepath('notes_search')")
cluster_stop "$DIR" fast
for f in ${files//|/ }; do
    printf '\004\000\000\000' | dd of="$DIR/data/$f" bs=1 seek=28 conv=notrunc status=none
done
cluster_start "$DIR"
for sql in "SELECT count(*) FROM shop.search('lamp')" \
           "SELECT count(*) FROM notes WHERE shop.search_doc(title) OPERATOR(shop.@@@) '\"lamp\"'"; do
    out=$($PGBIN/psql -X -At -d old -v VERBOSITY=verbose -c "SET enable_seqscan = off" -c "$sql" 2>&1 || true)
    if ! grep -q 'XX002' <<<"$out" || ! grep -q 'has format version 4' <<<"$out" ||
       ! grep -q 'HINT:  REINDEX the index' <<<"$out"; then
        echo "an index of format 4 was not refused with a REINDEX hint: $sql"; echo "$out"; exit 1
    fi
done
echo "indexes of the old format are refused with a REINDEX hint"

$PSQL -d old -c "ALTER EXTENSION shop UPDATE"
n=$($PSQL -At -d old -c "SET enable_seqscan = off" \
      -c "SELECT count(*) FROM notes WHERE shop.search_doc(title) OPERATOR(shop.@@@) '\"lamp\"'")
if [ "$n" != 25 ]; then
    echo "a user's shop_search index after the update finds $n rows for lamp, not 25"; exit 1
fi
$PSQL -d old -c "DROP TABLE notes"
after=$(state old)
v=$($PSQL -At -d old -c "SELECT extversion FROM pg_extension WHERE extname = 'shop'")
if [ "$v" != "$current" ]; then
    echo "ALTER EXTENSION shop UPDATE reached $v, not $current"; exit 1
fi
if [ "$before" != "$after" ]; then
    echo "the update changed data or answers:"; diff <(echo "$before") <(echo "$after") || true; exit 1
fi
echo "$after"

$PGBIN/createdb fresh
$PSQL -d fresh -c "CREATE EXTENSION shop CASCADE"
$PSQL -At -d old -f "$HERE/fingerprint.sql" >"$DIR/updated.txt"
$PSQL -At -d fresh -f "$HERE/fingerprint.sql" >"$DIR/fresh.txt"
n=$(grep -c '' "$DIR/fresh.txt")
if ! diff -u "$DIR/fresh.txt" "$DIR/updated.txt" >"$DIR/fingerprint.diff"; then
    echo "an updated 1.0 install differs from a fresh $current install (- fresh, + updated):"
    head -100 "$DIR/fingerprint.diff"
    exit 1
fi
echo "updated and fresh installs agree on $n fingerprint lines"

# the keys the update gave the rows of 1.0: a customer's rows their
# customer's id, a guest's -1 - the last 16 bits of the cart id, a line,
# payment or event its order's, an idempotency row its scope's
keys=$($PSQL -At -d old <<'SQL'
WITH want AS (
    SELECT 'cart' AS t, c.customer_key AS k,
           coalesce(c.customer_id, -1 - ('x' || right(c.cart_id::text, 4))::bit(16)::int) AS w
      FROM shop.cart c
    UNION ALL SELECT 'cart_item', i.customer_key, c.customer_key
      FROM shop.cart_item i JOIN shop.cart c USING (cart_id)
    UNION ALL SELECT 'order', o.customer_key,
           coalesce(o.customer_id, -1 - ('x' || right(o.cart_id::text, 4))::bit(16)::int)
      FROM shop."order" o
    UNION ALL SELECT 'order_line', l.customer_key, o.customer_key
      FROM shop.order_line l JOIN shop."order" o USING (order_id)
    UNION ALL SELECT 'order_event', e.customer_key, o.customer_key
      FROM shop.order_event e JOIN shop."order" o USING (order_id)
    UNION ALL SELECT 'payment', p.customer_key, o.customer_key
      FROM shop.payment p JOIN shop."order" o USING (order_id)
    UNION ALL SELECT 'idempotency', i.customer_key, o.customer_key
      FROM shop.idempotency i JOIN shop."order" o USING (order_id))
SELECT t || ' ' || count(*) FILTER (WHERE k < 0) || ' guest, ' || count(*) FILTER (WHERE k > 0)
       || ' customer, ' || count(*) FILTER (WHERE k IS DISTINCT FROM w) || ' wrong'
  FROM want GROUP BY t ORDER BY t;
SQL
)
echo "$keys"
want_keys="cart 1 guest, 2 customer, 0 wrong
cart_item 1 guest, 1 customer, 0 wrong
idempotency 1 guest, 2 customer, 0 wrong
order 1 guest, 2 customer, 0 wrong
order_event 2 guest, 3 customer, 0 wrong
order_line 2 guest, 2 customer, 0 wrong
payment 1 guest, 2 customer, 0 wrong"
if [ "$keys" != "$want_keys" ]; then
    echo "the update's customer keys are not as expected:"; diff <(echo "$want_keys") <(echo "$keys") || true; exit 1
fi

# the updated install keeps working: new rows are searchable, checkout runs
$PSQL -d old <<'SQL'
DO $$
DECLARE id bigint; c uuid; o uuid;
BEGIN
    -- a new product and category get ids past the loaded ones
    id := shop.product_upsert('U-NEW', 'Upgrade lantern', 999, category_id => shop.category_add('After the update'));
    PERFORM shop.stock_set(id, 5);
    IF NOT EXISTS (SELECT 1 FROM shop.search('lantern') s WHERE s.product_id = id) THEN
        RAISE EXCEPTION 'a product added after the update is not found';
    END IF;
    c := shop.cart_create(customer_id => 8);
    PERFORM shop.cart_add(c, id, 1);
    o := shop.checkout(c, 'tok_visa', 'upgrade-2');
    IF (shop.order_get(o)->>'status') <> 'paid' THEN RAISE EXCEPTION 'checkout after update: %', shop.order_get(o); END IF;
    -- keys claimed in 1.0 still name their orders: a retry returns the
    -- order, a guest's too; the guest's open cart checks out with its key
    SELECT order_id, cart_id INTO o, c FROM shop."order" WHERE idempotency_key = 'upgrade-guest';
    IF shop.checkout(c, 'tok_visa', 'upgrade-guest') <> o THEN
        RAISE EXCEPTION 'a retry of a 1.0 guest checkout made another order';
    END IF;
    o := shop.checkout(c, 'tok_visa', 'upgrade-guest-2');
    IF (SELECT customer_key FROM shop.order_line WHERE order_id = o) <>
       (SELECT customer_key FROM shop.cart WHERE cart_id = c) THEN
        RAISE EXCEPTION 'a guest order after the update is not keyed as its cart';
    END IF;
    SELECT order_id, cart_id INTO o, c FROM shop."order" WHERE idempotency_key = 'upgrade-9';
    IF shop.checkout(c, 'stripe:pm_upgrade', 'upgrade-9') <> o THEN
        RAISE EXCEPTION 'a retry of a 1.0 checkout made another order';
    END IF;
    IF shop.payment_confirm(o, 'ch_upgrade') <> 'paid' OR shop.order_transition(o, 'fulfilling') <> 'fulfilling'
       OR shop.order_ship(o, 'UPS', '1Z-UP') <> 'shipped' THEN
        RAISE EXCEPTION 'a 1.0 order does not move after the update';
    END IF;
END $$;
SQL
echo "upgrade from 1.0 to $current kept data and works"
