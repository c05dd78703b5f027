#!/usr/bin/env bash
# readme: the README's short tour, taken from README.md itself (so the two
# cannot drift), runs as a user would paste it into psql: in a fresh
# database, and in one loaded like the demo's (scripts/load_synthetic.sql,
# which brings its own ids, then scripts/load_finish.sql). In both, the tour
# buys the laptop it created, and search finds that laptop through the typo.
set -euo pipefail
. "$TOP/scripts/pgenv.sh"
DIR="$TOP/tmp_check/readme"
PORT=$(free_port readme)
cluster_init "$DIR" "$PORT"
cluster_start "$DIR"
trap 'cluster_stop "$DIR" immediate' EXIT
cluster_env "$DIR" "$PORT"
PSQL="$PGBIN/psql -X -v ON_ERROR_STOP=1"

# the first sql block after the "A short tour" heading
awk '/^## A short tour/ { tour = 1 } tour && /^```sql/ { inblock = 1; next }
     inblock && /^```/ { exit } inblock { print }' "$TOP/README.md" >"$DIR/tour.sql"
[ -s "$DIR/tour.sql" ] || { echo "no sql block under '## A short tour' in README.md"; exit 1; }
echo "the tour ($(grep -c '' "$DIR/tour.sql") lines of README.md):"
cat "$DIR/tour.sql"

# What a reader checks after the tour, with the variables it set: the
# product it created is found despite the typo, the order it placed holds
# two of that product and is shipped, its stock went from 10 to 8.
cat >"$DIR/check.sql" <<'SQL'
\set QUIET on
\pset format unaligned
\pset tuples_only on
SELECT 'found by the typo: ' || EXISTS (SELECT 1 FROM shop.search('thinkpd carbon') s WHERE s.product_id = :laptop);
SELECT 'order: ' || (o->>'status') || ', lines: ' ||
       (SELECT string_agg((l->>'sku') || ' x' || (l->>'qty'), ', ') FROM jsonb_array_elements(o->'lines') l)
  FROM shop.order_get(:'order_id') o;
SELECT 'stock on hand: ' || sum(on_hand) FROM shop.stock WHERE product_id = :laptop;
SELECT 'category of the laptop: ' || c.name FROM shop.product p JOIN shop.category c USING (category_id)
 WHERE p.product_id = :laptop;
SQL
want='found by the typo: true
order: shipped, lines: LP-1 x2
stock on hand: 8
category of the laptop: Laptops'

run_tour() {
    local db=$1 out
    echo "== the tour in database $db"
    out=$(cat "$DIR/tour.sql" "$DIR/check.sql" | $PSQL -d "$db" -f - 2>&1) ||
        { echo "$out"; echo "the tour failed in database $db"; return 1; }
    echo "$out"
    if [ "$(echo "$out" | tail -4)" != "$want" ]; then
        echo "the tour in database $db did not do what it shows: expected"
        echo "$want"
        return 1
    fi
}

$PGBIN/createdb fresh
run_tour fresh

$PGBIN/createdb loaded
$PSQL -q -d loaded -c "SET client_min_messages = warning; CREATE EXTENSION shop CASCADE"
# the loaders print their one-line summary and no query result (make demo
# shows their output)
$PSQL -q -d loaded -v scale=3000 -f "$TOP/scripts/load_synthetic.sql" >"$DIR/load.out"
$PSQL -q -d loaded -f "$TOP/scripts/load_finish.sql" >>"$DIR/load.out"
if grep -qE '^\([0-9]+ rows?\)$' "$DIR/load.out"; then
    echo "the synthetic load printed a query result (make demo shows it):"; cat "$DIR/load.out"; exit 1
fi
run_tour loaded
echo "the README tour works in a fresh and in a loaded database"
