-- searcher: a live check, one query of the fixed set by one index method
-- against the sequential scan, both in one REPEATABLE READ snapshot while
-- everything else runs (stress.live_check; a difference is logged as a
-- WARNING "stress live mismatch").  Variable: skip_typo (true/false).
\set q random(0, 1000000)
\set m random(0, 3)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT stress.live_check(:q, :m, :skip_typo);
COMMIT;
