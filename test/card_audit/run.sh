#!/usr/bin/env bash
# card_audit: no card number reaches pg_dump, the server log or the data
# directory (issue 10; docs/security.md "Card numbers").
#
# A cluster set up as docs/security.md advises for production (shop in
# shared_preload_libraries) and logging as much as an auditor could ask:
# log_statement = 'all', every duration, bind parameters, auto_explain
# plans, stderr + csvlog + jsonlog.  Then:
#   1. every text argument (text, text[], jsonb) of every public shop
#      function, found in pg_proc, is called with card numbers of eight
#      brands in every format of issue 10 (as superuser, and the
#      storefront's calls as shop_storefront with a session), and a few
#      through the extended protocol (the card as a bind parameter);
#   2. every text-like column of every shop table, found in pg_catalog, is
#      written with card numbers: INSERT, UPDATE and COPY;
#   3. a marker (a 16-digit number no brand issues) is stored in the same
#      formats: the search must find it, in each place it searches;
#   4. CHECKPOINT, pg_dump, stop; audit.pl searches the dump, the logs and
#      every file of the data directory, digits normalised (Unicode digits
#      mapped, escapes and entities decoded, separators dropped).
# Zero card hits, and marker hits in all three places.  Then a 1.0
# database holding card numbers is updated: the update warns, per column,
# without printing a number, and card_number_scan() finds them.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
DIR="$TOP/tmp_check/card_audit"
WORK="$DIR/work"
PORT=$(free_port card_audit)
AUDIT=(perl "$HERE/audit.pl")
cluster_init "$DIR" "$PORT" \
    "shared_preload_libraries = 'auto_explain, shop'" "shop.sweep_interval = 3600" \
    "log_statement = 'all'" "log_min_error_statement = error" "log_min_duration_statement = 0" \
    "log_parameter_max_length = -1" "log_parameter_max_length_on_error = -1" \
    "log_error_verbosity = verbose" "log_connections = on" \
    "logging_collector = on" "log_destination = 'stderr,csvlog,jsonlog'" "log_directory = '$DIR/log'" \
    "auto_explain.log_min_duration = 0" "auto_explain.log_nested_statements = on"
mkdir -p "$WORK"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
export PGBIN

"$PGBIN/createdb" audit
"${PSQL[@]}" -d audit <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION shop CASCADE;
CREATE ROLE audit_web LOGIN IN ROLE shop_storefront;
ALTER DATABASE audit SET shop.session_secret = 'the audit''s secret, thirty-two characters or more';
SQL
# the text-like columns of every shop table, from pg_catalog (not from the
# guard's own list: the audit must not trust the code it audits); last, the
# id shape the guard's trigger declares for the column ('unit=#': a value
# that is a decimal integer is a customer id, docs/security.md), in which
# the audit writes no card
COLUMNS_SQL="
    SELECT c.oid::regclass, quote_ident(a.attname), a.attname, format_type(a.atttypid, NULL),
           (SELECT string_agg(quote_ident(b.attname), ', ' ORDER BY b.attnum) FROM pg_attribute b
             WHERE b.attrelid = c.oid AND b.attnum > 0 AND NOT b.attisdropped AND b.attgenerated = ''),
           coalesce((SELECT x FROM pg_trigger g,
                            unnest(string_to_array(rtrim(encode(g.tgargs, 'escape'), '\\000'), '\\000')) x
                      WHERE g.tgrelid = c.oid AND g.tgname = 'zz_card_guard'
                        AND x LIKE a.attname || '=%#' LIMIT 1), '')
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid
      JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
     WHERE n.nspname = 'shop' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attgenerated = ''
       AND (coalesce(e.typcategory, t.typcategory) = 'S'
            OR coalesce(e.oid, t.oid) IN ('json'::regtype, 'jsonb'::regtype, 'xml'::regtype))
     ORDER BY c.oid, a.attnum"
# a row in every table, through the API
"${PSQL[@]}" -d audit <<'SQL'
SELECT shop.category_add('Audit') AS cat \gset
SELECT shop.product_upsert('AUDIT-1', 'Audit mug', 1000, description => 'A mug', category_id => :cat,
                           attributes => '{"colour": "blue"}', images => ARRAY['https://img/mug.jpg']) AS pid \gset
SELECT shop.stock_set(:pid, 1000000);
SELECT shop.review_add(:pid, 7, 5, 'Nice', 'A nice mug');
SELECT shop.reserve(:pid, 1, 'audit-hold') IS NOT NULL AS held;
SELECT shop.synonym_add('mug', ARRAY['cup']);
SELECT count(*) >= 0 AS searched FROM shop.search('mug');
-- the search's log record waits in shared memory until a flush
SELECT shop._search_log_flush() >= 1 AS search_logged;
SELECT shop.payment_method_add(42, 'tok_visa_audit', 'visa', '4242', 12, 2099);
SELECT shop.cart_create(42) AS cart \gset
SELECT shop.cart_add(:'cart', :pid, 1);
SELECT shop.checkout(:'cart', 'tok_visa', 'audit-order', '{"name": "Ada", "city": "Berlin"}') AS oid \gset
SELECT shop.order_transition(:'oid', 'fulfilling', 'packed');
SELECT count(*) >= 0 AS claimed FROM shop.event_claim('audit', 'auditor');
-- an experiment, a list shown in it (logged and buffered) and a view attributed to it
SELECT shop.experiment_create('audit-exp', '[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]') IS NOT NULL AS experiment;
INSERT INTO shop.experiment_impression (experiment_id, variant, unit, surface, products)
SELECT experiment_id, 0, '42', 'also_bought', ARRAY[:pid]::bigint[] FROM shop.experiment WHERE name = 'audit-exp';
INSERT INTO shop.experiment_impression_recent (experiment_id, variant, unit, surface, products)
SELECT experiment_id, 1, 'guest:audit', 'recommend', ARRAY[:pid]::bigint[] FROM shop.experiment WHERE name = 'audit-exp';
-- a search by customer 42, a view after it, and the behaviour prior
-- refreshed from them (issue 13)
SELECT count(*) >= 0 AS searched_as_42 FROM shop.search('mug', '{}', 'relevance', 20, 0, 42);
SELECT shop.view(42, :pid);
-- a checkout as the router's saga begins it (docs/scale-out.md), its
-- step called here directly: a node is also a shard
SELECT shop.cart_create(42) AS cart2 \gset
SELECT shop.cart_add(:'cart2', :pid, 1);
SELECT saga_status FROM shop._saga_begin(gen_random_uuid(), :'cart2', 'tok_visa', 'audit-saga',
                                         '{"name": "Ada", "city": "Berlin"}');
SELECT (shop.refresh_search_prior() ->> 'touched')::int >= 1 AS prior_refreshed;
-- a learned vocabulary pair (shop.refresh_search_vocab learns them from 5
-- products or more; one row is what the audit needs)
INSERT INTO shop.search_vocab (term, expansion, source, products)
VALUES ('ssd', 'solid state drive', 'abbreviation', 5);
SQL
"${PSQL[@]}" -At -F $'\t' -d audit -c "$COLUMNS_SQL" >"$WORK/columns.tsv"
"${PSQL[@]}" -At -d audit -c "
    SELECT DISTINCT t FROM unnest(string_to_array('$(cut -f1 "$WORK/columns.tsv" | sort -u | tr '\n' ' ')', ' ')) t
     WHERE t <> '' AND NOT (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) > 0 AS n FROM %s', t),
                                                              false, true, '')))[1]::text::boolean" \
    >"$WORK/empty_tables.txt"
if [ -s "$WORK/empty_tables.txt" ]; then
    echo "tables without a row to copy: $(tr '\n' ' ' <"$WORK/empty_tables.txt")"; exit 1
fi
pid=$("${PSQL[@]}" -At -d audit -c "SELECT min(product_id) FROM shop.product")
cat=$("${PSQL[@]}" -At -d audit -c "SELECT min(category_id) FROM shop.category")
index=$("${PSQL[@]}" -At -d audit -c "
    SELECT c.oid::regclass FROM pg_class c JOIN pg_am a ON a.oid = c.relam
     WHERE a.amname = 'shop_search' ORDER BY c.oid LIMIT 1")

# 1. every text argument of every public function (pg_proc)
funcs_sql="
    SELECT p.oid::regprocedure, p.proname, a.ord, a.name, format_type(a.type, NULL),
           a.ord > p.pronargs - p.pronargdefaults
      FROM pg_proc p, unnest(p.proargtypes::oid[], p.proargnames) WITH ORDINALITY a(type, name, ord)
     WHERE p.pronamespace = 'shop'::regnamespace AND p.proname !~ '^_' AND p.prokind = 'f'
       AND p.prorettype <> 'trigger'::regtype AND a.ord <= p.pronargs"
"${PSQL[@]}" -At -F $'\t' -d audit -c "$funcs_sql ORDER BY 1::text, a.ord" >"$WORK/funcs.tsv"
"${PSQL[@]}" -At -F $'\t' -d audit -c "$funcs_sql
       AND has_function_privilege('shop_storefront', p.oid, 'EXECUTE')
       AND p.oid <> 'shop.session_begin(text)'::regprocedure ORDER BY 1::text, a.ord" >"$WORK/web_funcs.tsv"
"${AUDIT[@]}" calls "$WORK/funcs.tsv" "$pid" "$cat" "$index" >"$WORK/calls.sql"
"${AUDIT[@]}" calls "$WORK/web_funcs.tsv" "$pid" "$cat" "$index" >"$WORK/web_calls.sql"
"$PGBIN/psql" -X -d audit -v VERBOSITY=sqlstate -f "$WORK/calls.sql" >"$WORK/calls.out" 2>&1 || true
token=$("${PSQL[@]}" -At -d audit -c "SELECT shop.session_token(42, '1 hour')")
{
    echo "SET ROLE audit_web;"
    echo "SELECT shop.session_begin('$token');"
    cat "$WORK/web_calls.sql"
} | "$PGBIN/psql" -X -d audit -v VERBOSITY=sqlstate >"$WORK/web_calls.out" 2>&1 || true
"${AUDIT[@]}" pgbench "$WORK" >"$WORK/pgbench.sh"
(cd "$WORK" && bash "$WORK/pgbench.sh" >"$WORK/pgbench.out" 2>&1) || true
calls=$(grep -c '^SELECT shop\.' "$WORK/calls.sql")
web_calls=$(grep -c '^SELECT shop\.' "$WORK/web_calls.sql")
binds=$(grep -c pgbench "$WORK/pgbench.sh")
targets=$(sed -n 's/^-- audit: [0-9]* calls over \([0-9]*\) text arguments/\1/p' "$WORK/calls.sql")

# 2. every text-like column of every shop table (listed above)
"${AUDIT[@]}" columns "$WORK/columns.tsv" "$WORK" >"$WORK/columns.sql"
"$PGBIN/psql" -X -d audit -v VERBOSITY=sqlstate -f "$WORK/columns.sql" >"$WORK/columns.out" 2>&1 || true
columns=$(grep -c '' "$WORK/columns.tsv")
writes=$(sed -n 's/^-- audit: \([0-9]*\) writes.*/\1/p' "$WORK/columns.sql")

# 3. the marker, stored in the same formats
"${AUDIT[@]}" marker >"$WORK/marker.sql"
"${PSQL[@]}" -d audit -f "$WORK/marker.sql" >/dev/null

echo "calls: $calls as superuser over $targets text arguments, $web_calls as shop_storefront, $binds with the card as a bind parameter"
echo "columns: $columns text-like columns, $writes writes (INSERT, UPDATE, COPY)"
outcomes() {
    sed -n 's/.*ERROR:  \([0-9A-Z]\{5\}\).*/\1/p' "$@" | sort | uniq -c | sort -rn |
        awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 } END { print "" }'
}
echo "  calls ended with (SQLSTATE count): $(outcomes "$WORK/calls.out" "$WORK/web_calls.out")"
echo "  writes ended with (SQLSTATE count): $(outcomes "$WORK/columns.out")"
refused=$(grep -c 'ERROR:  SH005' "$WORK/columns.out" || true)
if [ "$refused" != "$writes" ]; then
    echo "only $refused of the $writes writes were refused with SH005:"
    grep -v 'ERROR:  SH005\|^COPY 1$' "$WORK/columns.out" | head -20
    exit 1
fi

# 4. dump, checkpoint, stop; search
"$PGBIN/pg_dump" -d audit -f "$WORK/audit.dump.sql" 2>"$WORK/pg_dump.err"
"${PSQL[@]}" -d audit -c "CHECKPOINT"
cluster_stop "$DIR"
trap - EXIT

fail=0
search() {
    local what=$1; shift
    local out="$WORK/search-${what// /_}.txt"
    "${AUDIT[@]}" search "$@" >"$out"
    local total
    total=$(tail -1 "$out")
    echo "$what: $total"
    if grep -q $'\tcard\t' "$out"; then
        echo "  card numbers found:"; grep $'\tcard\t' "$out" | sed 's/^/    /'
        fail=1
    fi
    if ! grep -q $'\tmarker\t' "$out"; then
        echo "  the marker was not found: the search cannot be trusted here"
        fail=1
    fi
}
search "pg_dump" "$WORK/audit.dump.sql"
mapfile -t logs < <(find "$DIR/log" "$DIR/server.log" -type f)
search "server log" "${logs[@]}"
mapfile -t datafiles < <(find "$DIR/data" -type f)
search "data directory" "${datafiles[@]}"
[ "$fail" = 0 ] || exit 1

# A 1.0 database that already holds card numbers: the update goes through,
# warns per column without printing a number, and card_number_scan finds them.
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
"$PGBIN/createdb" old10
"${PSQL[@]}" -d old10 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION shop VERSION '1.0' CASCADE;
INSERT INTO shop.product (sku, title, price_cents, description) VALUES
    ('OLD-1', 'Mug', 100, 'paid with 4111 1111 1111 1111'),
    ('OLD-2', 'Cup', 100, 'card 5555-5555-5555-4444');
INSERT INTO shop.synonym (term, synonyms) VALUES ('card', ARRAY['5500 0000 0000 0004']);
SQL
"$PGBIN/psql" -X -v ON_ERROR_STOP=1 -d old10 -c "ALTER EXTENSION shop UPDATE" >"$WORK/update.out" 2>&1
cat "$WORK/update.out"
grep -A1 'WARNING:  card numbers stored in column shop.product.description' "$WORK/update.out" |
    grep -q 'DETAIL:  Rows holding one: 2\.' ||
    { echo "the update did not report the card numbers of shop.product.description"; exit 1; }
grep -A1 'WARNING:  card numbers stored in column shop.synonym.synonyms' "$WORK/update.out" |
    grep -q 'DETAIL:  Rows holding one: 1\.' ||
    { echo "the update did not report the card numbers of shop.synonym.synonyms"; exit 1; }
if grep -Eq '4111|5555|5500 0000' "$WORK/update.out"; then
    echo "the update printed a card number"; exit 1
fi
scan=$("${PSQL[@]}" -At -d old10 -c "SELECT string_agg(table_name || '.' || column_name || ' ' || rows, ', ') FROM shop.card_number_scan()")
[ "$scan" = "shop.product.description 2, shop.synonym.synonyms 1" ] ||
    { echo "card_number_scan() after the update: $scan"; exit 1; }
"${PSQL[@]}" -d old10 <<'SQL'
UPDATE shop.product SET description = shop.redact_card_numbers(description) WHERE shop.contains_card_number(description);
UPDATE shop.synonym SET synonyms = ARRAY(SELECT shop.redact_card_numbers(s) FROM unnest(synonyms) s)
 WHERE shop.contains_card_number(synonyms);
SQL
left=$("${PSQL[@]}" -At -d old10 -c "SELECT count(*) FROM shop.card_number_scan()")
[ "$left" = 0 ] || { echo "card numbers left after masking: $left"; exit 1; }
echo "a 1.0 database with card numbers: the update warned per column, card_number_scan found them, masking cleared them"
echo "card audit: no card number in the dump, the logs or the data directory"
