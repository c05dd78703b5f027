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
