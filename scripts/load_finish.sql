-- load_finish.sql: after a bulk load (load_real.sql or load_synthetic.sql),
-- which imports order history with triggers off: rebuild the
-- recommendation tables and popularity from the whole history, then VACUUM
-- (the loads leave dead row versions: in_stock is set after the insert)
-- so the search index folds its segments, and ANALYZE.
\set ON_ERROR_STOP 1
\o /dev/null
SELECT shop.rebuild_recommendations();
\o
-- the rebuild writes one batch of popularity values into shop.product and
-- queues the rest for the sweeper: write them all now, a batch per
-- transaction
CALL shop.popularity_sync();
VACUUM ANALYZE;
