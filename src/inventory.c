/*-------------------------------------------------------------------------
 *
 * inventory.c
 *	  Stock and reservations: stock_set / stock_adjust / stock_available,
 *	  reserve / reserve_many, reservation release / commit / extend, and
 *	  buckets for hot products.
 *
 * Data.  shop.stock has one row per (product, location, bucket) with
 * on_hand and reserved.  A reservation is one or more rows of
 * shop.reservation ("parts", nearly always one) each holding qty units of
 * one stock row.  The invariant every call keeps, in one transaction:
 *
 *	 stock.reserved = sum(qty) of the parts in status 'held' pointing at it
 *	 0 <= reserved <= on_hand        (CHECK constraints back this up)
 *
 * A hold whose expires_at has passed still counts in reserved until it is
 * reclaimed (status 'expired', reserved decremented); stock_available adds
 * such holds back, so availability is exact whether or not anyone has
 * reclaimed them yet.
 *
 * Never oversell.  A hold is taken by one conditional UPDATE
 * "reserved = reserved + qty WHERE on_hand - reserved >= qty" on a stock
 * row, then the reservation row (written by inv_insert_holds, without an
 * INSERT statement), in the same transaction.  The row lock of
 * that UPDATE serializes holds on the row, and PostgreSQL re-checks the
 * condition on the newest row version (EvalPlanQual), so two sessions can
 * never both take the last unit.
 *
 * A set of holds (a cart: ShopReserve, the C API of shop.h that checkout
 * calls and shop.reserve / shop.reserve_many wrap) is held line by line in
 * product order, step 1 below by C for each line with one snapshot and one
 * opening of the table (inv_reserve_lines, inv_take: no SQL statement and
 * no subtransaction); a line that step 1 cannot hold goes on to steps 2
 * and 3 while the lines before it stay held (the lock order is product
 * order).  Where the table does not allow step 1 by C (inv_taker_open),
 * the cart is tried in one statement for every line at once inside one
 * subtransaction, rolled back when some line got no row, and the lines are
 * then held one by one.
 *
 * One hold, in three steps, cheapest first:
 *	 1. pick a row with enough free units, trying the product's rows from a
 *		per-call random start bucket on, then the rows before it (two index
 *		range scans that stop at the first suitable row, so a hold reads
 *		about one row, not all of a hot product's buckets) and skipping
 *		rows another transaction has locked (SKIP LOCKED): on a bucketed
 *		hot product concurrent buyers land on different rows and nobody
 *		waits.  Done by C (inv_take: the scan of stock_pkey, the row lock
 *		and the conditional update without SQL); a single hold takes the
 *		start's modulus from a per-backend cache (inv_last_bucket), a set
 *		of holds takes each line's start from the same cache without
 *		reading anything (bucket 0 for a product not in it).  Where C
 *		cannot (inv_taker_open), the same in SQL: q_reserve_from /
 *		q_reserve_before, q_reserve_set / q_reserve_set0;
 *	 2. if every suitable row was locked: pick one suitable row (in the same
 *		order, from the snapshot, without locking) and run the
 *		conditional UPDATE on it, which waits for that one row's lock and
 *		re-checks the condition on its newest version;
 *	 3. no single row has enough: a cheap unlocked look at the totals raises
 *		insufficient_stock at once when even the sum cannot cover qty and no
 *		expired hold is waiting to be reclaimed; otherwise the slow path locks
 *		every row of the product (in location, bucket order), reclaims the
 *		product's expired holds, and takes qty from several rows as several
 *		parts of one reservation, or raises insufficient_stock.
 *
 * Lock order (no deadlocks inside one call, and none between calls that
 * each touch one product):
 *	 - stock rows of several products: in product_id order (reserve_many);
 *	 - all rows of one product: in (location, bucket) order (slow path,
 *	   stock_set, stock_adjust, stock_set_buckets, release, commit);
 *	 - step 1 by C locks only a row version it has checked, so a failed
 *	   attempt holds no lock (inv_take; when it must follow a changed row,
 *	   it runs in a subtransaction rolled back when it takes nothing);
 *	   step 1 in SQL and step 2 run in a subtransaction that is rolled back
 *	   when they take nothing, so the row locks a failed attempt picked up
 *	   (see inv_try) are gone before anything waits in (location, bucket)
 *	   order;
 *	 - stock rows before reservation rows; where a reservation row must be
 *	   locked while stock is held (reclaim, sweep) it is taken with SKIP
 *	   LOCKED, so nobody waits on a reservation while holding stock.
 *
 * shop.product.in_stock (some location has units on hand) is maintained by
 * the calls that change on_hand; plain reserve / release never touch the
 * product row, which would be the hottest row of all.
 *
 * All SQL runs through SPI with plans prepared once per backend.  Every
 * name is schema-qualified, and the SQL functions pin search_path.  Two
 * writes of every hold skip SQL: step 1's pick and update of the stock
 * row (inv_take) and the reservation rows (inv_insert_holds), done as
 * logical replication's apply worker writes rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#if PG_VERSION_NUM >= 150000
#include "common/pg_prng.h"
#endif
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/readfuncs.h"
#include "port/pg_bswap.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_stock_set);
PG_FUNCTION_INFO_V1(shop_stock_adjust);
PG_FUNCTION_INFO_V1(shop_stock_available);
PG_FUNCTION_INFO_V1(shop_stock_set_buckets);
PG_FUNCTION_INFO_V1(shop_stock_set_reorder_threshold);
PG_FUNCTION_INFO_V1(shop_reserve);
PG_FUNCTION_INFO_V1(shop_reserve_many);
PG_FUNCTION_INFO_V1(shop_reservation_release);
PG_FUNCTION_INFO_V1(shop_reservation_commit);
PG_FUNCTION_INFO_V1(shop_reservation_extend);

#define INV_MAX_QTY			1000000		/* largest qty of one hold */
#define INV_MAX_ON_HAND		1000000000	/* largest on_hand of one location */
#define INV_MAX_BUCKETS		256
#define INV_MAX_ITEMS		1000		/* lines of one reserve_many */
#define INV_MAX_TTL_SECS	(366.0 * 86400)
#define INV_MAX_LOCATION	100
#define INV_MAX_REF			200
#define INV_MAX_REASON		200

/* One stock row of a product, as locked by inv_lock_rows. */
typedef struct InvRow
{
	char	   *location;
	int			bucket;
	int			on_hand;
	int			reserved;
	bool		threshold_null;
	int			threshold;
} InvRow;

/* ---------- the statements ---------- */

/*
 * The pick of a hold: a stock row of product pid with at least qty free
 * units, for a per-call random seed.  The row is not chosen among all the
 * product's rows (a bucketed product has up to 256, and reading them all
 * was most of a hold's work): a start bucket seed mod n, where n - 1 is the
 * product's last bucket (one backward step in the primary key), then the
 * product's rows from that bucket on in primary-key order (location,
 * bucket), then the rows before it.  Each part is an index range scan that
 * stops at its first suitable row, so a hold on a hot product reads about
 * one stock row besides the last one; under SKIP LOCKED concurrent buyers
 * that start on the same bucket move on to the next free one.  Every row
 * of the product is in exactly one of the two parts, so a suitable row is
 * found whenever one exists (as when they were sorted by a hash).
 */
#define INV_PICK_START(pid, seed) \
	"(SELECT coalesce((" seed " & 2147483647) % (1 +" \
	"   (SELECT t.bucket FROM shop.stock t WHERE t.product_id = " pid \
	"     ORDER BY t.location DESC, t.bucket DESC LIMIT 1)), 0)::int2 AS start) b"
#define INV_PICK_PART(pid, qty, cmp, start, lockclause) \
	"SELECT s.location, s.bucket FROM shop.stock s" \
	" WHERE s.product_id = " pid " AND s.bucket " cmp " " start \
	"   AND s.on_hand - s.reserved >= " qty \
	" ORDER BY s.location, s.bucket LIMIT 1 " lockclause
#define INV_PICK_ROW(pid, qty, start, lockclause) \
	"LATERAL (SELECT a.location, a.bucket FROM (" \
	INV_PICK_PART(pid, qty, ">=", start, lockclause) ") a" \
	" UNION ALL SELECT z.location, z.bucket FROM (" \
	INV_PICK_PART(pid, qty, "<", start, lockclause) ") z LIMIT 1) p"

/*
 * step 2: no lock in the pick, so the UPDATE waits on that one row only.
 * The reservation row is inserted before the UPDATE takes the row lock (the
 * UPDATE reads it), which keeps the index insertions out of the time the
 * hot row is locked; when the UPDATE finds too little, the caller rolls the
 * attempt's subtransaction back and the row goes with it.
 */
static ShopStmt q_reserve_wait = SHOP_STMT(SHOP_PLAN_GENERIC,
	"WITH pick AS ("
	"  SELECT p.location, p.bucket FROM " INV_PICK_START("$1", "$3")
	"    CROSS JOIN " INV_PICK_ROW("$1", "$2", "b.start", "") "),"
	" ins AS ("
	"  INSERT INTO shop.reservation"
	"    (product_id, reservation_id, part, location, bucket, qty, ref, expires_at)"
	"  SELECT $1, $4, 0, pick.location, pick.bucket, $2, $5, $6 FROM pick"
	"  RETURNING location, bucket)"
	" UPDATE shop.stock s SET reserved = s.reserved + $2"
	"  WHERE s.product_id = $1 AND s.location = (SELECT location FROM ins)"
	"    AND s.bucket = (SELECT bucket FROM ins) AND s.on_hand - s.reserved >= $2"
	" RETURNING s.reorder_threshold",
	INT8OID, INT4OID, INT4OID, UUIDOID, TEXTOID, TIMESTAMPTZOID);

/*
 * Step 1 of a single hold: one conditional update, with the start bucket
 * given ($3, from inv_last_bucket's cache), returning the row it took; the
 * caller then writes the reservation row itself (inv_insert_holds: no
 * executor start-up for an INSERT and a CTE in every hold).
 * Each half of the pick (the rows from the start bucket on,
 * q_reserve_from; the rows before it, q_reserve_before, run only when the
 * first takes nothing) is a statement of its own, and neither reads the
 * product's last bucket: fewer plan nodes to build per call (the executor
 * builds every node of a prepared statement again for each execution,
 * whether it runs or not).  Step 2 still picks in one statement with
 * INV_PICK_START / INV_PICK_ROW; the set statement (q_reserve_set) uses
 * INV_PICK_ROW with start buckets from the same cache.
 *
 * The UPDATE names the picked row by all three keys, as one row
 * comparison with the locking subquery (one InitPlan whose three outputs
 * are the index scan's keys), so that its index scan has all three: as a
 * join with the pick, the generic plan scanned the stock_pkey range of
 * product_id = $1 (one row per product, says the planner) and filtered
 * location and bucket, reading all of a hot product's buckets again.
 */
#define RESERVE_PART_SQL(cmp) \
	"UPDATE shop.stock s SET reserved = s.reserved + $2" \
	" WHERE (s.product_id, s.location, s.bucket) = (" \
	"         SELECT t.product_id, t.location, t.bucket FROM shop.stock t" \
	"          WHERE t.product_id = $1 AND t.bucket " cmp " $3" \
	"            AND t.on_hand - t.reserved >= $2" \
	"          ORDER BY t.location, t.bucket LIMIT 1 FOR UPDATE SKIP LOCKED)" \
	"   AND s.on_hand - s.reserved >= $2" \
	" RETURNING s.location, s.bucket, s.reorder_threshold"

static ShopStmt q_reserve_from = SHOP_STMT(SHOP_PLAN_GENERIC,
	RESERVE_PART_SQL(">="),
	INT8OID, INT4OID, INT2OID);

static ShopStmt q_reserve_before = SHOP_STMT(SHOP_PLAN_GENERIC,
	RESERVE_PART_SQL("<"),
	INT8OID, INT4OID, INT2OID);

/*
 * the product's last bucket (its bucket count - 1), the last location, and
 * whether that is the product's only location (its first row's); no row:
 * none
 */
static ShopStmt q_last_bucket = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT t.bucket::int4, t.location,"
	"       t.location = (SELECT f.location FROM shop.stock f WHERE f.product_id = $1"
	"                      ORDER BY f.location, f.bucket LIMIT 1)"
	"  FROM shop.stock t WHERE t.product_id = $1"
	" ORDER BY t.location DESC, t.bucket DESC LIMIT 1",
	INT8OID);

/* unlocked look at a product: free units, expired holds, existence */
static ShopStmt q_peek = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT coalesce((SELECT sum(on_hand - reserved) FROM shop.stock"
	"                  WHERE product_id = $1), 0)::int8,"
	"       coalesce((SELECT sum(qty) FROM shop.reservation"
	"                  WHERE product_id = $1 AND status = 'held'"
	"                    AND expires_at <= now() AND expires_at < 'infinity'), 0)::int8,"
	"       EXISTS (SELECT 1 FROM shop.product WHERE product_id = $1)",
	INT8OID);

/* lock every stock row of a product, in (location, bucket) order */
static ShopStmt q_lock_rows = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT location, bucket::int4, on_hand, reserved, reorder_threshold"
	"  FROM shop.stock WHERE product_id = $1"
	" ORDER BY location, bucket FOR UPDATE",
	INT8OID);

/* the product row, share-locked so it cannot vanish under a stock write */
static ShopStmt q_product_lock = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT 1 FROM shop.product WHERE product_id = $1 FOR KEY SHARE",
	INT8OID);

/*
 * reclaim the product's expired holds (caller holds all its stock rows);
 * holds locked by someone else (being released or committed right now) are
 * skipped: their owner fixes reserved itself
 */
static ShopStmt q_reclaim = SHOP_STMT(SHOP_PLAN_GENERIC,
	"WITH x AS ("
	"  UPDATE shop.reservation r SET status = 'expired'"
	"   WHERE r.ctid = ANY (ARRAY("
	"           SELECT ctid FROM shop.reservation"
	"            WHERE product_id = $1 AND status = 'held' AND expires_at <= now()"
	"              AND expires_at < 'infinity'"
	"              FOR UPDATE SKIP LOCKED))"
	"     AND r.product_id = $1 AND r.status = 'held' AND r.expires_at <= now()"
	"  RETURNING r.location, r.bucket, r.qty),"
	" y AS (SELECT location, bucket, sum(qty)::int4 AS q FROM x GROUP BY 1, 2)"
	" UPDATE shop.stock s SET reserved = s.reserved - y.q"
	"   FROM y WHERE s.product_id = $1 AND s.location = y.location"
	"    AND s.bucket = y.bucket",
	INT8OID);

static ShopStmt q_take_part = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.stock SET reserved = reserved + $4"
	" WHERE product_id = $1 AND location = $2 AND bucket = $3"
	"   AND on_hand - reserved >= $4",
	INT8OID, TEXTOID, INT2OID, INT4OID);

static ShopStmt q_insert_part = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.reservation"
	"  (product_id, reservation_id, part, location, bucket, qty, ref, expires_at)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
	INT8OID, UUIDOID, INT2OID, TEXTOID, INT2OID, INT4OID, TEXTOID, TIMESTAMPTZOID);

static ShopStmt q_available = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT (SELECT sum(on_hand - reserved) FROM shop.stock WHERE product_id = $1)::int8,"
	"       coalesce((SELECT sum(qty) FROM shop.reservation"
	"                  WHERE product_id = $1 AND status = 'held'"
	"                    AND expires_at <= now() AND expires_at < 'infinity'), 0)::int8,"
	"       (SELECT max(reorder_threshold) FROM shop.stock WHERE product_id = $1)",
	INT8OID);

static ShopStmt q_product_exists = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT 1 FROM shop.product WHERE product_id = $1",
	INT8OID);

static ShopStmt q_emit_low = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT shop._emit('stock.low', jsonb_build_object("
	"  'product_id', $1, 'available', $2, 'reorder_threshold', $3))",
	INT8OID, INT4OID, INT4OID);

static ShopStmt q_in_stock = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.product p SET in_stock = x.v"
	"  FROM (SELECT coalesce(sum(on_hand), 0) > 0 AS v FROM shop.stock"
	"         WHERE product_id = $1) x"
	" WHERE p.product_id = $1 AND p.in_stock IS DISTINCT FROM x.v",
	INT8OID);

static ShopStmt q_set_row = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.stock SET on_hand = $4, updated_at = now()"
	" WHERE product_id = $1 AND location = $2 AND bucket = $3",
	INT8OID, TEXTOID, INT2OID, INT4OID);

static ShopStmt q_insert_row = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.stock (product_id, location, bucket, on_hand, reserved, reorder_threshold)"
	" VALUES ($1, $2, $3, $4, $5, $6)"
	" ON CONFLICT (product_id, location, bucket) DO UPDATE"
	"   SET on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved,"
	"       reorder_threshold = EXCLUDED.reorder_threshold, updated_at = now()",
	INT8OID, TEXTOID, INT2OID, INT4OID, INT4OID, INT4OID);

static ShopStmt q_ledger = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.stock_ledger (product_id, location, delta, on_hand, reason, ref)"
	" VALUES ($1, $2, $3, $4, $5, $6)",
	INT8OID, TEXTOID, INT4OID, INT4OID, TEXTOID, TEXTOID);

/*
 * The fast path of a set of holds (ShopReserve): for every line at once, a
 * stock row of its product with enough free units that nobody holds
 * locked, and the conditional update; returns one row per line held
 * (fewer when some line found no such row), with the row it was held from,
 * whose reservation row the caller then writes (inv_insert_holds).  The start bucket of each line's pick comes from the
 * caller (from the per-backend cache of last buckets, 0 for a product not
 * in it), so the statement neither reads each product's last bucket (a
 * backward index descent per line) nor builds the two InitPlans that
 * computed the start in both halves of the pick.  When every start is 0
 * (no line is of a product this backend knows to have several buckets:
 * the usual cart), the half of the pick before the start bucket can find
 * nothing, and q_reserve_set0 leaves it out: one index scan per line, and
 * none of the Append, the second Limit, LockRows and index scan to build
 * in every execution.
 */
#define RESERVE_SET_SQL(pick_row, start_arg) \
	"WITH pick AS (" \
	"  SELECT w.pid, w.qty, w.rid, p.location, p.bucket" \
	"    FROM unnest($1::bigint[], $2::int[], $3::uuid[]" start_arg ")" \
	"         CROSS JOIN " pick_row ")" \
	" UPDATE shop.stock s SET reserved = s.reserved + p.qty" \
	"   FROM pick p" \
	"  WHERE s.product_id = p.pid AND s.location = p.location AND s.bucket = p.bucket" \
	"    AND s.on_hand - s.reserved >= p.qty" \
	" RETURNING s.product_id, s.reorder_threshold IS NOT NULL, s.bucket::int4," \
	"           s.location, p.qty, p.rid"

static ShopStmt q_reserve_set = SHOP_STMT(SHOP_PLAN_GENERIC,
	RESERVE_SET_SQL(INV_PICK_ROW("w.pid", "w.qty", "w.start", "FOR UPDATE SKIP LOCKED"),
					", $4::int[]) AS w(pid, qty, rid, start"),
	INT8ARRAYOID, INT4ARRAYOID, UUIDARRAYOID, INT4ARRAYOID);

/* the same with every start bucket 0: $4 unused */
static ShopStmt q_reserve_set0 = SHOP_STMT(SHOP_PLAN_GENERIC,
	RESERVE_SET_SQL("LATERAL (" INV_PICK_PART("w.pid", "w.qty", ">=", "0", "FOR UPDATE SKIP LOCKED") ") p",
					") AS w(pid, qty, rid"),
	INT8ARRAYOID, INT4ARRAYOID, UUIDARRAYOID, INT4ARRAYOID);

/*
 * Settling holds given as (product_id[], reservation_id[]), found by the
 * primary key.  Release and commit first lock the stock rows of the held
 * parts, in (product, location, bucket) order.
 */
static ShopStmt q_lock_holds = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT 1 FROM shop.stock s"
	" WHERE (s.product_id, s.location, s.bucket) IN"
	"       (SELECT r.product_id, r.location, r.bucket"
	"          FROM unnest($1::bigint[], $2::uuid[]) AS k(pid, rid)"
	"          JOIN shop.reservation r ON r.product_id = k.pid AND r.reservation_id = k.rid"
	"         WHERE r.status = 'held')"
	" ORDER BY s.product_id, s.location, s.bucket FOR UPDATE OF s",
	INT8ARRAYOID, UUIDARRAYOID);

/* returns the released parts */
static ShopStmt q_release_holds = SHOP_STMT(SHOP_PLAN_GENERIC,
	"WITH x AS ("
	"  UPDATE shop.reservation r SET status = 'released'"
	"    FROM unnest($1::bigint[], $2::uuid[]) AS k(pid, rid)"
	"   WHERE r.product_id = k.pid AND r.reservation_id = k.rid AND r.status = 'held'"
	"  RETURNING r.product_id, r.reservation_id, r.location, r.bucket, r.qty),"
	" y AS (SELECT product_id, location, bucket, sum(qty)::int4 AS q FROM x GROUP BY 1, 2, 3),"
	" s AS ("
	"  UPDATE shop.stock s SET reserved = s.reserved - y.q"
	"    FROM y WHERE s.product_id = y.product_id AND s.location = y.location"
	"     AND s.bucket = y.bucket)"
	" SELECT DISTINCT x.reservation_id FROM x",
	INT8ARRAYOID, UUIDARRAYOID);

/*
 * returns the committed parts; the ledger gets one entry per product and
 * location (on_hand after: the main query sees the rows as before the
 * update, so subtract)
 */
static ShopStmt q_commit_holds = SHOP_STMT(SHOP_PLAN_GENERIC,
	"WITH x AS ("
	"  UPDATE shop.reservation r SET status = 'committed'"
	"    FROM unnest($1::bigint[], $2::uuid[]) AS k(pid, rid)"
	"   WHERE r.product_id = k.pid AND r.reservation_id = k.rid AND r.status = 'held'"
	"  RETURNING r.product_id, r.reservation_id, r.location, r.bucket, r.qty, r.ref),"
	" y AS (SELECT product_id, location, bucket, sum(qty)::int4 AS q FROM x GROUP BY 1, 2, 3),"
	" s AS ("
	"  UPDATE shop.stock s SET reserved = s.reserved - y.q, on_hand = s.on_hand - y.q,"
	"         updated_at = now()"
	"    FROM y WHERE s.product_id = y.product_id AND s.location = y.location"
	"     AND s.bucket = y.bucket"
	"  RETURNING s.product_id, s.location, y.q),"
	" l AS (SELECT product_id, location, sum(q)::int4 AS q FROM s GROUP BY 1, 2),"
	" g AS ("
	"  INSERT INTO shop.stock_ledger (product_id, location, delta, on_hand, reason, ref)"
	"  SELECT l.product_id, l.location, -l.q,"
	"         ((SELECT sum(t.on_hand) FROM shop.stock t"
	"            WHERE t.product_id = l.product_id AND t.location = l.location) - l.q)::int4,"
	"         'commit',"
	"         (SELECT min(x.ref) FROM x WHERE x.product_id = l.product_id AND x.location = l.location)"
	"    FROM l)"
	" SELECT DISTINCT x.reservation_id FROM x",
	INT8ARRAYOID, UUIDARRAYOID);

/* holds that are held get a new expiry; returns them */
static ShopStmt q_keep_holds = SHOP_STMT(SHOP_PLAN_GENERIC,
	"WITH x AS ("
	"  UPDATE shop.reservation r SET expires_at = $3"
	"    FROM unnest($1::bigint[], $2::uuid[]) AS k(pid, rid)"
	"   WHERE r.product_id = k.pid AND r.reservation_id = k.rid AND r.status = 'held'"
	"  RETURNING r.reservation_id)"
	" SELECT DISTINCT reservation_id FROM x",
	INT8ARRAYOID, UUIDARRAYOID, TIMESTAMPTZOID);

/* a hold of the set that is neither held nor committed, if any */
static ShopStmt q_holds_gone = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT r.reservation_id, r.status"
	"  FROM unnest($1::bigint[], $2::uuid[]) AS k(pid, rid)"
	"  JOIN shop.reservation r ON r.product_id = k.pid AND r.reservation_id = k.rid"
	" WHERE r.status NOT IN ('held', 'committed') LIMIT 1",
	INT8ARRAYOID, UUIDARRAYOID);

/* in_stock of the products whose on_hand changed */
static ShopStmt q_in_stock_set = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.product p SET in_stock = x.v"
	"  FROM (SELECT s.product_id, sum(s.on_hand) > 0 AS v FROM shop.stock s"
	"         WHERE s.product_id = ANY ($1) GROUP BY 1) x"
	" WHERE p.product_id = x.product_id AND p.in_stock IS DISTINCT FROM x.v",
	INT8ARRAYOID);

/* a reservation named by id alone: its product and status */
static ShopStmt q_status = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT product_id, status FROM shop.reservation WHERE reservation_id = $1 LIMIT 1",
	UUIDOID);

static ShopStmt q_held_by_bucket = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT bucket::int4, sum(qty)::int4 FROM shop.reservation"
	" WHERE product_id = $1 AND location = $2 AND status = 'held'"
	" GROUP BY bucket",
	INT8OID, TEXTOID);

static ShopStmt q_move_parts = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.reservation SET bucket = bucket % $3"
	" WHERE product_id = $1 AND location = $2 AND bucket >= $3",
	INT8OID, TEXTOID, INT2OID);

static ShopStmt q_drop_rows = SHOP_STMT(SHOP_PLAN_GENERIC,
	"DELETE FROM shop.stock WHERE product_id = $1 AND location = $2 AND bucket >= $3",
	INT8OID, TEXTOID, INT2OID);

static ShopStmt q_set_threshold = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.stock SET reorder_threshold = $2 WHERE product_id = $1",
	INT8OID, INT4OID);

/* ---------- argument checks ---------- */

static int64
inv_arg_product(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument product_id must not be null")));
	return PG_GETARG_INT64(argno);
}

static void
inv_check_qty(int64 qty, const char *what)
{
	if (qty <= 0 || qty > INV_MAX_QTY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s out of range", what),
				 errdetail("%s is " INT64_FORMAT "; it must be between 1 and %d.",
						   what, qty, INV_MAX_QTY)));
}

/*
 * A ttl argument, positive and at most a year, as the expiry it gives a
 * hold made now: now() + ttl.
 */
static TimestampTz
inv_arg_expiry(FunctionCallInfo fcinfo, int argno)
{
	Interval   *ttl;
	double		secs;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument ttl must not be null")));
	ttl = PG_GETARG_INTERVAL_P(argno);
	secs = (double) ttl->time / USECS_PER_SEC +
		(double) ttl->day * SECS_PER_DAY +
		(double) ttl->month * DAYS_PER_MONTH * SECS_PER_DAY;
	if (secs <= 0 || secs > INV_MAX_TTL_SECS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl out of range"),
				 errdetail("ttl is %s; it must be positive and at most 366 days.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(ttl))))));
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
												   IntervalPGetDatum(ttl)));
}

/* optional text argument with a length limit and the card-number guard */
static Datum
inv_arg_text(FunctionCallInfo fcinfo, int argno, const char *what, int maxlen,
			 bool required, bool *isnull)
{
	text	   *t;
	int			len;

	*isnull = PG_ARGISNULL(argno);
	if (*isnull)
	{
		if (required)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %s must not be null", what)));
		return (Datum) 0;
	}
	t = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(t);
	ShopRefuseCardNumberText(VARDATA_ANY(t), len, what);
	if (pg_mbstrlen_with_len(VARDATA_ANY(t), len) > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long", what),
				 errdetail("%s has %d characters; at most %d are allowed.",
						   what, pg_mbstrlen_with_len(VARDATA_ANY(t), len), maxlen)));
	if (required && len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	return PointerGetDatum(t);
}

static Datum
inv_arg_location(FunctionCallInfo fcinfo, int argno)
{
	bool		isnull;

	return inv_arg_text(fcinfo, argno, "location", INV_MAX_LOCATION, true, &isnull);
}

/* ---------- shared pieces ---------- */

static void
inv_not_found_product(int64 product_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_SHOP_NOT_FOUND),
			 errmsg("product not found"),
			 errdetail("No product has product_id " INT64_FORMAT ".", product_id)));
}

static void
inv_insufficient(int64 product_id, int64 requested, int64 available)
{
	ereport(ERROR,
			(errcode(ERRCODE_SHOP_INSUFFICIENT_STOCK),
			 errmsg("insufficient stock"),
			 errdetail("Product " INT64_FORMAT ": " INT64_FORMAT " requested, " INT64_FORMAT " available.",
					   product_id, requested, available < 0 ? 0 : available)));
}

/*
 * Units available over all locations (NULL stock -> -1 when the product has
 * no stock row at all), and the product's reorder threshold (-1: none).
 */
static int64
inv_available(int64 product_id, int *threshold, bool read_only)
{
	Datum		v[1] = {Int64GetDatum(product_id)};
	bool		isnull;
	int64		free_units;
	int64		expired;

	if (read_only)
		ShopExecRead(&q_available, v, NULL);
	else
		ShopExec(&q_available, v, NULL, 0);
	free_units = DatumGetInt64(ShopCol(0, 1, &isnull));
	if (isnull)
		free_units = -1;
	expired = DatumGetInt64(ShopCol(0, 2, &isnull));
	if (threshold)
		*threshold = (int) ShopColInt(0, 3, -1);
	if (free_units < 0)
		return -1;
	return free_units + expired;
}

/*
 * After units left the available pool: emit stock.low when availability
 * crossed the threshold downward (before >= threshold > after).
 */
static void
inv_note_low(int64 product_id, int64 before, int64 after, int threshold)
{
	Datum		v[3];

	if (threshold < 0 || !(before >= threshold && after < threshold))
		return;
	v[0] = Int64GetDatum(product_id);
	v[1] = Int32GetDatum((int32) after);
	v[2] = Int32GetDatum(threshold);
	ShopExec(&q_emit_low, v, NULL, 0);
}

static void
inv_fix_in_stock(int64 product_id)
{
	Datum		v[1] = {Int64GetDatum(product_id)};

	ShopExec(&q_in_stock, v, NULL, 0);
}

static void
inv_ledger(int64 product_id, const char *location, int delta, int on_hand,
		   const char *reason, Datum ref, bool ref_null)
{
	Datum		v[6];
	char		n[7] = "      ";

	v[0] = Int64GetDatum(product_id);
	v[1] = CStringGetTextDatum(location);
	v[2] = Int32GetDatum(delta);
	v[3] = Int32GetDatum(on_hand);
	v[4] = CStringGetTextDatum(reason);
	v[5] = ref;
	if (ref_null)
		n[5] = 'n';
	ShopExec(&q_ledger, v, n, 0);
}

/*
 * Lock all stock rows of a product in (location, bucket) order and return
 * them (allocated in the current SPI procedure context).
 */
static InvRow *
inv_lock_rows(int64 product_id, int *nrows)
{
	Datum		v[1] = {Int64GetDatum(product_id)};
	uint64		n = ShopExec(&q_lock_rows, v, NULL, 0);
	InvRow	   *rows = palloc0(sizeof(InvRow) * (n + 1));

	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		rows[i].location = TextDatumGetCString(ShopCol(i, 1, &isnull));
		rows[i].bucket = DatumGetInt32(ShopCol(i, 2, &isnull));
		rows[i].on_hand = DatumGetInt32(ShopCol(i, 3, &isnull));
		rows[i].reserved = DatumGetInt32(ShopCol(i, 4, &isnull));
		rows[i].threshold = DatumGetInt32(ShopCol(i, 5, &rows[i].threshold_null));
	}
	*nrows = (int) n;
	return rows;
}

static void
inv_lock_product(int64 product_id)
{
	Datum		v[1] = {Int64GetDatum(product_id)};

	if (ShopExec(&q_product_lock, v, NULL, 0) == 0)
		inv_not_found_product(product_id);
}

/* Reclaim the expired holds of a product whose stock rows we hold. */
static void
inv_reclaim(int64 product_id)
{
	Datum		v[1] = {Int64GetDatum(product_id)};

	ShopExec(&q_reclaim, v, NULL, 0);
}

/*
 * The columns of shop.reservation that inv_insert_holds fills, by name, and
 * their numbers in the table as this backend last looked them up.
 */
enum
{
	INV_R_PRODUCT, INV_R_ID, INV_R_PART, INV_R_LOCATION, INV_R_BUCKET, INV_R_QTY,
	INV_R_STATUS, INV_R_REF, INV_R_CREATED, INV_R_EXPIRES, INV_R_NCOLS
};
static const char *const inv_r_names[INV_R_NCOLS] = {
	"product_id", "reservation_id", "part", "location", "bucket", "qty",
	"status", "ref", "created_at", "expires_at"
};

/* one reservation row for inv_insert_holds */
typedef struct InvNewPart
{
	int64		product_id;
	pg_uuid_t	reservation_id;
	int16		part;
	Datum		location;		/* text */
	int16		bucket;
	int32		qty;
} InvNewPart;

/*
 * shop.<name>, opened and locked in mode, its OID from ShopRelid (kept per
 * backend) instead of a name lookup per call; as table_openrv, 42P01 when
 * there is none.
 */
static Relation
inv_open(const char *name, LOCKMODE mode)
{
	Oid			relid = ShopRelid(name, NULL);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"shop.%s\" does not exist", name)));
	return table_open(relid, mode);
}

/*
 * Write the reservation rows of holds whose stock rows the caller has just
 * updated, all with the same ref (NULL when ref_null) and expiry, without
 * the executor: the work of "INSERT INTO shop.reservation VALUES (...)"
 * done directly, as logical replication's apply worker does it
 * (ExecSimpleRelationInsert), for each row: the BEFORE ROW triggers (the
 * card guard, zz_card_guard, reads location, status and ref), the NOT
 * NULL checks (and any CHECK the table has), the heap tuple, an entry in
 * each index (partial ones when their predicate holds, unique ones
 * checked), the AFTER ROW triggers; then the queued AFTER triggers, as at
 * the end of a statement.  The privilege an INSERT needs is checked, as
 * the executor checks it.  What this saves is the start-up and shut-down
 * of a plan (ModifyTable, a CTE and its scan, a projection) that
 * PostgreSQL builds again in every execution of a prepared statement.
 *
 * status is 'held' and created_at the transaction's start (the column
 * defaults: now()); a column of the table this code does not know is an
 * error, so that a later update script that adds one must come here.
 */
static void
inv_insert_holds(const InvNewPart *parts, int n, Datum ref, bool ref_null, Datum expires)
{
	Relation	rel;
	TupleDesc	desc;
	EState	   *estate;
	RangeTblEntry *rte;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	AclResult	aclresult;
	int			col[INV_R_NCOLS];

	ShopCheckWritable("INSERT");
	if (n == 0)
		return;
	rel = inv_open("reservation", RowExclusiveLock);

	/*
	 * Not a plain table (partitioned, say), or Citus loaded (a distributed
	 * table's rows are on its workers, and only its executor hooks route
	 * them: docs/scale-out.md): the INSERT statement, row by row.  The
	 * caller's SPI result stays readable.
	 */
	if (rel->rd_rel->relkind != RELKIND_RELATION ||
		(shared_preload_libraries_string != NULL &&
		 strstr(shared_preload_libraries_string, "citus") != NULL))
	{
		SPITupleTable *tuptable = SPI_tuptable;
		uint64		processed = SPI_processed;

		table_close(rel, NoLock);
		for (int i = 0; i < n; i++)
		{
			Datum		v[8];
			char		nulls[9] = "        ";

			v[0] = Int64GetDatum(parts[i].product_id);
			v[1] = UUIDPGetDatum(&parts[i].reservation_id);
			v[2] = Int16GetDatum(parts[i].part);
			v[3] = parts[i].location;
			v[4] = Int16GetDatum(parts[i].bucket);
			v[5] = Int32GetDatum(parts[i].qty);
			v[6] = ref;
			if (ref_null)
				nulls[6] = 'n';
			v[7] = expires;
			if (ShopExec(&q_insert_part, v, nulls, 0) != 1)
				ShopTriggerChangedRow("reservation", "a hold",
									  psprintf("reservation %s", ShopUuidStr(&parts[i].reservation_id)));
		}
		SPI_tuptable = tuptable;
		SPI_processed = processed;
		return;
	}

	aclresult = pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), ACL_INSERT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, RelationGetRelationName(rel));
	desc = RelationGetDescr(rel);
	for (int c = 0; c < INV_R_NCOLS; c++)
		col[c] = -1;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		int			c;

		if (att->attisdropped)
			continue;
		for (c = 0; c < INV_R_NCOLS; c++)
			if (strcmp(NameStr(att->attname), inv_r_names[c]) == 0)
				break;
		if (c == INV_R_NCOLS)
			elog(ERROR, "shop: column %s of shop.reservation is not written by inv_insert_holds",
				 NameStr(att->attname));
		col[c] = i;
	}
	for (int c = 0; c < INV_R_NCOLS; c++)
		if (col[c] < 0)
			elog(ERROR, "shop: shop.reservation has no column %s", inv_r_names[c]);

	estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(estate, list_make1(rte));
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	/* so that ExecGetTriggerResultRel finds it, as the apply worker does */
	estate->es_opened_result_relations = lappend(estate->es_opened_result_relations, rri);
	estate->es_output_cid = GetCurrentCommandId(true);
	slot = ExecInitExtraTupleSlot(estate, desc, ShopWriteSlotOps(rel));

	AfterTriggerBeginQuery();
	ShopOpenIndices(rri, estate, false);
	for (int i = 0; i < n; i++)
	{
		Datum		val[INV_R_NCOLS];

		val[INV_R_PRODUCT] = Int64GetDatum(parts[i].product_id);
		val[INV_R_ID] = UUIDPGetDatum(&parts[i].reservation_id);
		val[INV_R_PART] = Int16GetDatum(parts[i].part);
		val[INV_R_LOCATION] = parts[i].location;
		val[INV_R_BUCKET] = Int16GetDatum(parts[i].bucket);
		val[INV_R_QTY] = Int32GetDatum(parts[i].qty);
		val[INV_R_STATUS] = CStringGetTextDatum("held");
		val[INV_R_REF] = ref;
		val[INV_R_CREATED] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		val[INV_R_EXPIRES] = expires;

		ExecClearTuple(slot);
		for (int c = 0; c < INV_R_NCOLS; c++)
		{
			slot->tts_values[col[c]] = val[c];
			slot->tts_isnull[col[c]] = false;
		}
		if (ref_null)
			slot->tts_isnull[col[INV_R_REF]] = true;
		ExecStoreVirtualTuple(slot);
		ExecSimpleRelationInsert(rri, estate, slot);
		/* a BEFORE trigger that returned NULL skipped the row: the units would leak */
		if (!ItemPointerIsValid(&slot->tts_tid))
			ShopTriggerChangedRow("reservation", "a hold",
								  psprintf("reservation %s", ShopUuidStr(&parts[i].reservation_id)));
		ResetPerTupleExprContext(estate);
	}
	ExecCloseIndices(rri);
	AfterTriggerEndQuery(estate);

	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	/* the rows are seen by the statements that follow in this transaction */
	CommandCounterIncrement();
}

/*
 * Step 1 of a hold without SQL: the pick and the conditional update done
 * by shop's C, for a single hold and for every line of a cart.
 *
 * A prepared statement's plan is built again (ExecutorStart) in every
 * execution, and the pick ran as an InitPlan (Limit, LockRows, an index
 * scan) under the UPDATE: together about a third of a hold's
 * instructions.  Here the same work is done directly: an index scan of
 * stock_pkey over the product's rows from the start bucket on (then the
 * rows before it) in (location, bucket) order, each row with enough free
 * units in the snapshot locked FOR UPDATE SKIP LOCKED
 * (table_tuple_lock, LockWaitSkip), the condition checked again on the
 * version locked, and the row updated as logical replication's apply
 * worker updates one (ExecSimpleRelationUpdate): the BEFORE ROW triggers
 * of shop.stock (the card guard), its CHECK (reserved <= on_hand and
 * reserved >= 0: the never-oversell backstop), the heap update
 * (WAL-logged as an UPDATE's; HOT when no index column changes, index
 * entries otherwise), the AFTER ROW triggers (the foreign key's check,
 * skipped when the key did not change as an UPDATE skips it), then the
 * queued AFTER triggers.  The SELECT and UPDATE privileges are checked
 * as the executor checks them (ExecCheckRTPerms).
 *
 * Stray locks.  A row whose version in the snapshot was changed since by
 * a committed transaction (TM_Updated) is first skipped, so that no lock
 * is ever taken on a row version that was not checked first: an attempt
 * then takes no lock unless it takes the row, and needs no
 * subtransaction (the SQL attempt ran in one, rolled back when it took
 * nothing: a lock kept on a newer version that no longer fitted would
 * break the lock order).  When an attempt found nothing but skipped such
 * a row, it runs again in a subtransaction, following each row to its
 * newest version as FOR UPDATE does under READ COMMITTED, and that
 * subtransaction is rolled back when it takes nothing, as before.  Under
 * REPEATABLE READ or SERIALIZABLE a row changed since the snapshot
 * raises 40001, as FOR UPDATE does.
 *
 * Not done here (the SQL statements instead, inv_taker_open returns
 * false): a stock table that is not a plain table or has row-level
 * security enabled, Citus preloaded (docs/scale-out.md), or a primary
 * key other than (product_id, location, bucket).
 */
typedef enum
{
	INV_S_PRODUCT, INV_S_LOCATION, INV_S_BUCKET, INV_S_ON_HAND, INV_S_RESERVED,
	INV_S_THRESHOLD, INV_S_NCOLS
} InvStockCol;
static const char *const inv_s_names[INV_S_NCOLS] = {
	"product_id", "location", "bucket", "on_hand", "reserved", "reorder_threshold"
};

typedef struct InvTaker
{
	MemoryContext cxt;			/* where taken locations are copied to */
	Relation	rel;
	Relation	pkey;
	EState	   *estate;
	ResultRelInfo *rri;
	EPQState	epq;
	TupleTableSlot *scanslot;	/* the row as the snapshot sees it */
	TupleTableSlot *lockslot;	/* the version locked */
	TupleTableSlot *newslot;	/* the version written */
	int			col[INV_S_NCOLS];	/* 0-based attribute numbers */
	int			natts_needed;
} InvTaker;

/* a row taken: where the hold's reservation row points */
typedef struct InvTaken
{
	Datum		location;		/* text, in the taker's cxt */
	int16		bucket;
	bool		watch_low;		/* the row has a reorder_threshold */
} InvTaken;

typedef enum
{
	INV_TAKE_NONE, INV_TAKE_DONE, INV_TAKE_FOLLOW
} InvTakeResult;

static bool
inv_citus_loaded(void)
{
	return shared_preload_libraries_string != NULL &&
		strstr(shared_preload_libraries_string, "citus") != NULL;
}

static void
inv_taker_close(InvTaker *t)
{
	ExecCloseIndices(t->rri);
	AfterTriggerEndQuery(t->estate);
	EvalPlanQualEnd(&t->epq);
	ExecResetTupleTable(t->estate->es_tupleTable, false);
	FreeExecutorState(t->estate);
	table_close(t->rel, NoLock);
	PopActiveSnapshot();
	/* the statements that follow see the rows updated */
	CommandCounterIncrement();
}

/*
 * Open shop.stock for holds taken by C, with a new snapshot (as a new
 * statement would take it).  false: not possible for this table (the
 * caller runs the SQL statements); nothing is left open then.
 */
static bool
inv_taker_open(InvTaker *t)
{
	TupleDesc	desc;
	RangeTblEntry *rte;
	Oid			pkoid;

	t->cxt = CurrentMemoryContext;
	t->rel = inv_open("stock", RowExclusiveLock);
	if (t->rel->rd_rel->relkind != RELKIND_RELATION || t->rel->rd_rel->relrowsecurity ||
		inv_citus_loaded() || !OidIsValid(pkoid = RelationGetPrimaryKeyIndex(t->rel)))
	{
		table_close(t->rel, NoLock);
		return false;
	}
	desc = RelationGetDescr(t->rel);
	for (int c = 0; c < INV_S_NCOLS; c++)
	{
		AttrNumber	a = 0;

		/* the relcache's descriptor, as get_attnum's pg_attribute lookup would say */
		for (int i = 0; a == 0 && i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && strcmp(NameStr(att->attname), inv_s_names[c]) == 0)
				a = att->attnum;
		}
		if (a <= 0)
			elog(ERROR, "shop: shop.stock has no column %s", inv_s_names[c]);
		t->col[c] = a - 1;
	}
	t->natts_needed = 0;
	for (int c = 0; c < INV_S_NCOLS; c++)
		t->natts_needed = Max(t->natts_needed, t->col[c] + 1);

	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(t->rel);
	rte->relkind = t->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_SELECT | ACL_UPDATE;
	for (int c = 0; c < INV_S_NCOLS; c++)
		rte->selectedCols = bms_add_member(rte->selectedCols,
										   t->col[c] + 1 - FirstLowInvalidHeapAttributeNumber);
	rte->updatedCols = bms_make_singleton(t->col[INV_S_RESERVED] + 1 -
										  FirstLowInvalidHeapAttributeNumber);
	ExecCheckRTPerms(list_make1(rte), true);

	PushActiveSnapshot(GetTransactionSnapshot());
	t->estate = CreateExecutorState();
	t->estate->es_snapshot = GetActiveSnapshot();
	ExecInitRangeTable(t->estate, list_make1(rte));
	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, t->rel, 1, NULL, 0);
	t->estate->es_opened_result_relations =
		lappend(t->estate->es_opened_result_relations, t->rri);
	/* its CHECKs, planned once per backend (spi.c) */
	ShopPrepareChecks(t->rri, t->estate);
	t->estate->es_output_cid = GetCurrentCommandId(true);
	EvalPlanQualInit(&t->epq, t->estate, NULL, NIL, -1);
	t->scanslot = ExecInitExtraTupleSlot(t->estate, desc, table_slot_callbacks(t->rel));
	t->lockslot = ExecInitExtraTupleSlot(t->estate, desc, table_slot_callbacks(t->rel));
	t->newslot = ExecInitExtraTupleSlot(t->estate, desc, ShopWriteSlotOps(t->rel));
	AfterTriggerBeginQuery();
	ShopOpenIndices(t->rri, t->estate, false);

	/* the primary key, as (product_id, location, bucket): the pick's order */
	t->pkey = NULL;
	for (int i = 0; i < t->rri->ri_NumIndices; i++)
		if (RelationGetRelid(t->rri->ri_IndexRelationDescs[i]) == pkoid)
			t->pkey = t->rri->ri_IndexRelationDescs[i];
	if (t->pkey == NULL || t->pkey->rd_rel->relam != BTREE_AM_OID ||
		t->pkey->rd_index->indnkeyatts != 3 ||
		t->pkey->rd_index->indkey.values[0] != t->col[INV_S_PRODUCT] + 1 ||
		t->pkey->rd_index->indkey.values[1] != t->col[INV_S_LOCATION] + 1 ||
		t->pkey->rd_index->indkey.values[2] != t->col[INV_S_BUCKET] + 1)
	{
		inv_taker_close(t);
		return false;
	}
	return true;
}

/* which buckets a scan of step 1 looks at, against the start bucket */
typedef enum
{
	INV_B_EQ, INV_B_GT, INV_B_GE, INV_B_LT
} InvBuckets;

static const StrategyNumber inv_bucket_strategy[] = {
	BTEqualStrategyNumber, BTGreaterStrategyNumber, BTGreaterEqualStrategyNumber,
	BTLessStrategyNumber
};
static const RegProcedure inv_bucket_proc[] = {F_INT2EQ, F_INT2GT, F_INT2GE, F_INT2LT};

/* does this version of a stock row qualify for the hold? */
static bool
inv_row_fits(InvTaker *t, TupleTableSlot *slot, int64 product_id, int32 qty,
			 int16 start, InvBuckets cmp)
{
	bool		in;

	int16		bucket;

	slot_getsomeattrs(slot, t->natts_needed);
	if (slot->tts_isnull[t->col[INV_S_PRODUCT]] || slot->tts_isnull[t->col[INV_S_BUCKET]] ||
		slot->tts_isnull[t->col[INV_S_ON_HAND]] || slot->tts_isnull[t->col[INV_S_RESERVED]])
		return false;
	if (DatumGetInt64(slot->tts_values[t->col[INV_S_PRODUCT]]) != product_id)
		return false;
	bucket = DatumGetInt16(slot->tts_values[t->col[INV_S_BUCKET]]);
	switch (cmp)
	{
		case INV_B_EQ:
			in = bucket == start;
			break;
		case INV_B_GT:
			in = bucket > start;
			break;
		case INV_B_GE:
			in = bucket >= start;
			break;
		default:
			in = bucket < start;
			break;
	}
	if (!in)
		return false;
	return (int64) DatumGetInt32(slot->tts_values[t->col[INV_S_ON_HAND]]) -
		(int64) DatumGetInt32(slot->tts_values[t->col[INV_S_RESERVED]]) >= qty;
}

/*
 * One half of the pick (the product's rows from bucket start on, or
 * before it) and the update of the first row that fits and is not
 * locked.  follow: lock the newest version of a row changed since the
 * snapshot (inside the caller's subtransaction); otherwise skip it, and
 * INV_TAKE_FOLLOW tells that nothing was taken but such a row was seen.
 */
static InvTakeResult
inv_take_half(InvTaker *t, int64 product_id, Datum location, int32 qty, int16 start,
			  InvBuckets cmp, bool follow, InvTaken *out)
{
	ScanKeyData key[3];
	int			nkeys = 0;
	IndexScanDesc scan;
	InvTakeResult r = INV_TAKE_NONE;
	bool		saw_changed = false;
	Snapshot	snap = t->estate->es_snapshot;

	ShopCheckWritable("UPDATE");
	ScanKeyInit(&key[nkeys++], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(product_id));
	if (location != (Datum) 0)
		ScanKeyEntryInitialize(&key[nkeys++], 0, 2, BTEqualStrategyNumber, InvalidOid,
							   t->pkey->rd_indcollation[1], F_TEXTEQ, location);
	ScanKeyInit(&key[nkeys++], 3, inv_bucket_strategy[cmp], inv_bucket_proc[cmp],
				Int16GetDatum(start));
	scan = index_beginscan(t->rel, t->pkey, snap, nkeys, 0);
	index_rescan(scan, key, nkeys, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, t->scanslot))
	{
		TM_FailureData tmfd;
		TM_Result	res;
		TupleTableSlot *ns = t->newslot;
		int			natts = ns->tts_tupleDescriptor->natts;

		CHECK_FOR_INTERRUPTS();
		if (!inv_row_fits(t, t->scanslot, product_id, qty, start, cmp))
			continue;
		res = table_tuple_lock(t->rel, &t->scanslot->tts_tid, snap, t->lockslot,
							   t->estate->es_output_cid, LockTupleExclusive, LockWaitSkip,
							   follow ? TUPLE_LOCK_FLAG_FIND_LAST_VERSION : 0, &tmfd);
		switch (res)
		{
			case TM_Ok:
				break;
			case TM_WouldBlock:		/* another transaction has it: SKIP LOCKED */
			case TM_SelfModified:	/* changed by this command: as FOR UPDATE */
				continue;
			case TM_Updated:
				ShopChangedMeanwhile(res);
				saw_changed = true;
				continue;
			case TM_Deleted:
				ShopChangedMeanwhile(res);
				continue;
			default:
				elog(ERROR, "shop: unexpected table_tuple_lock status %u on shop.stock", res);
		}
		/*
		 * The version locked: the one checked above unless following; a
		 * newer one that no longer fits keeps its lock until the caller's
		 * subtransaction is rolled back (as with FOR UPDATE).
		 */
		if (!inv_row_fits(t, t->lockslot, product_id, qty, start, cmp))
			continue;

		/* the new version: reserved + qty, every other column as it was */
		slot_getallattrs(t->lockslot);
		ExecClearTuple(ns);
		memcpy(ns->tts_values, t->lockslot->tts_values, sizeof(Datum) * natts);
		memcpy(ns->tts_isnull, t->lockslot->tts_isnull, sizeof(bool) * natts);
		ns->tts_values[t->col[INV_S_RESERVED]] =
			Int32GetDatum(DatumGetInt32(t->lockslot->tts_values[t->col[INV_S_RESERVED]]) + qty);
		ExecStoreVirtualTuple(ns);
		ExecMaterializeSlot(ns);
		ItemPointerSetInvalid(&ns->tts_tid);
		ExecSimpleRelationUpdate(t->rri, t->estate, &t->epq, t->lockslot, ns);
		/* a BEFORE trigger that returned NULL skipped the update */
		if (!ItemPointerIsValid(&ns->tts_tid))
			ShopTriggerChangedRow("stock", "a hold",
								  psprintf("product " INT64_FORMAT, product_id));
		slot_getallattrs(ns);
		{
			MemoryContext old = MemoryContextSwitchTo(t->cxt);

			out->location = PointerGetDatum(DatumGetTextPCopy(ns->tts_values[t->col[INV_S_LOCATION]]));
			MemoryContextSwitchTo(old);
		}
		out->bucket = DatumGetInt16(ns->tts_values[t->col[INV_S_BUCKET]]);
		out->watch_low = !ns->tts_isnull[t->col[INV_S_THRESHOLD]];
		ResetPerTupleExprContext(t->estate);
		r = INV_TAKE_DONE;
		break;
	}
	index_endscan(scan);
	if (r == INV_TAKE_NONE && saw_changed && !follow)
		r = INV_TAKE_FOLLOW;
	return r;
}

/*
 * Both halves: from the start bucket on, then (wrap, start > 0) before
 * it.  With the location known, the first half is two scans, the start
 * bucket alone, then the buckets after it: a B-tree scan reads every
 * entry of its first leaf page that its keys let through at once, so a
 * scan from the start bucket on read and compared all the entries up to
 * the product's last bucket (about 20,000 instructions with 64 buckets)
 * when the first one nearly always fits.
 */
static InvTakeResult
inv_take_halves(InvTaker *t, int64 product_id, Datum location, int32 qty, int16 start,
				bool wrap, bool follow, InvTaken *out)
{
	InvTakeResult r;
	InvTakeResult r2;

	if (location != (Datum) 0)
	{
		r = inv_take_half(t, product_id, location, qty, start, INV_B_EQ, follow, out);
		if (r == INV_TAKE_DONE)
			return r;
		r2 = inv_take_half(t, product_id, location, qty, start, INV_B_GT, follow, out);
		if (r2 != INV_TAKE_NONE)
			r = r2;
	}
	else
		r = inv_take_half(t, product_id, location, qty, start, INV_B_GE, follow, out);
	if (r == INV_TAKE_DONE || !wrap || start <= 0)
		return r;
	r2 = inv_take_half(t, product_id, location, qty, start, INV_B_LT, follow, out);
	return r2 == INV_TAKE_NONE ? r : r2;
}

/*
 * Step 1 of a hold by C: true when a row was taken (*out says which).
 * The taker is open on entry and on return.  When the attempt skipped a
 * row changed since its snapshot and took nothing, it runs again in a
 * subtransaction, following such rows to their newest version, rolled
 * back when it takes nothing.
 */
static bool
inv_take(InvTaker *t, int64 product_id, Datum location, int32 qty, int16 start, bool wrap,
		 InvTaken *out)
{
	MemoryContext oldcxt = t->cxt;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool kept = false;
	InvTakeResult r = inv_take_halves(t, product_id, location, qty, start, wrap, false, out);

	if (r != INV_TAKE_FOLLOW)
		return r == INV_TAKE_DONE;

	elog(DEBUG1, "shop: hold of product " INT64_FORMAT ": a stock row changed since the snapshot, again following row versions",
		 product_id);
	inv_taker_close(t);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		if (!inv_taker_open(t))
			elog(ERROR, "shop: shop.stock changed under a hold");
		t->cxt = oldcxt;
		kept = inv_take_halves(t, product_id, location, qty, start, wrap, true, out) == INV_TAKE_DONE;
		inv_taker_close(t);
		if (kept)
			ReleaseCurrentSubTransaction();
		else
			RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		ReThrowError(edata);
	}
	PG_END_TRY();
	if (!inv_taker_open(t))
		elog(ERROR, "shop: shop.stock changed under a hold");
	return kept;
}

/*
 * Slow path of a hold: with every stock row of the product locked, reclaim
 * expired holds and take qty from as few rows as possible, one part per
 * row.  Raises insufficient_stock when the product cannot cover qty.
 */
static void
inv_reserve_slow(int64 product_id, int32 qty, pg_uuid_t *rid,
				 Datum ref, bool ref_null, Datum expires)
{
	InvRow	   *rows;
	int			nrows;
	int64		free_units = 0;
	int			remaining = qty;
	int			part = 0;

	/* lock the rows in order; read them again once expired holds are back */
	(void) inv_lock_rows(product_id, &nrows);
	if (nrows == 0)
	{
		Datum		v[1] = {Int64GetDatum(product_id)};

		if (ShopExec(&q_product_exists, v, NULL, 0) == 0)
			inv_not_found_product(product_id);
		inv_insufficient(product_id, qty, 0);
	}
	inv_reclaim(product_id);
	rows = inv_lock_rows(product_id, &nrows);
	for (int i = 0; i < nrows; i++)
		free_units += rows[i].on_hand - rows[i].reserved;
	if (free_units < qty)
		inv_insufficient(product_id, qty, free_units);

	/* take from the rows with the most free units first: fewest parts */
	while (remaining > 0)
	{
		int			best = -1;
		int			take;
		Datum		v[8];
		char		n[9] = "        ";

		for (int i = 0; i < nrows; i++)
			if (rows[i].on_hand - rows[i].reserved > 0 &&
				(best < 0 || rows[i].on_hand - rows[i].reserved >
				 rows[best].on_hand - rows[best].reserved))
				best = i;
		if (best < 0)
			elog(ERROR, "shop: stock of product " INT64_FORMAT " changed under its row locks",
				 product_id);
		take = Min(remaining, rows[best].on_hand - rows[best].reserved);

		v[0] = Int64GetDatum(product_id);
		v[1] = CStringGetTextDatum(rows[best].location);
		v[2] = Int16GetDatum((int16) rows[best].bucket);
		v[3] = Int32GetDatum(take);
		if (ShopExec(&q_take_part, v, NULL, 0) != 1)
			elog(ERROR, "shop: conditional hold on a locked stock row of product " INT64_FORMAT " failed",
				 product_id);
		rows[best].reserved += take;

		v[0] = Int64GetDatum(product_id);
		v[1] = UUIDPGetDatum(rid);
		v[2] = Int16GetDatum((int16) part);
		v[3] = CStringGetTextDatum(rows[best].location);
		v[4] = Int16GetDatum((int16) rows[best].bucket);
		v[5] = Int32GetDatum(take);
		v[6] = ref;
		if (ref_null)
			n[6] = 'n';
		v[7] = expires;
		if (ShopExec(&q_insert_part, v, n, 0) != 1)
			ShopTriggerChangedRow("reservation", "a hold",
								  psprintf("reservation %s", ShopUuidStr(rid)));
		remaining -= take;
		part++;
	}
}

/*
 * Run one attempt of a hold (steps 1 and 2 of the file header) in a
 * subtransaction that is rolled back when the attempt takes nothing.
 *
 * Why: a FOR UPDATE or UPDATE that finds a row changed under it locks the
 * newest version before re-checking it, and keeps that lock even when the
 * row no longer qualifies.  Such stray locks, taken in hash order, would
 * break the (location, bucket) order the waiting steps rely on (two
 * sessions each holding a stray row the other waits for).  Rolling back
 * the failed attempt's subtransaction drops them, so a session waits on a
 * product's rows only while holding none of them out of order.
 *
 * Returns true when a hold was taken; *watch_low tells whether the row
 * carries a reorder threshold (column threshold_col of the result).
 */
static bool
inv_try(ShopStmt *q, Datum *v, const char *n, int threshold_col, bool *watch_low)
{
	bool		isnull;

	if (!ShopExecOrUndo(q, v, n, 1))
		return false;
	(void) ShopCol(0, threshold_col, &isnull);
	*watch_low = !isnull;
	return true;
}

/*
 * The last bucket of the products this backend held lately: the modulus
 * of a hold's random start bucket, read once a second per product instead
 * of in every hold (a backward index descent and three plan nodes per
 * call).  Only the spread of the start buckets depends on it, not what a
 * hold finds: the two halves of step 1 (from the start bucket on, and
 * before it) cover every row of the product whatever the start, so an
 * entry left stale by shop.stock_set_buckets in another session for up to
 * a second changes where holds begin, not whether they find a row.
 */
#define INV_LAST_BUCKET_SLOTS 64
#define INV_LAST_BUCKET_TTL_US 1000000

typedef struct InvLastBucket
{
	int64		product_id;
	int32		last;			/* -1: slot unused */
	TimestampTz read_at;
	text	   *location;		/* the only location, NULL: several (TopMemoryContext) */
} InvLastBucket;

static InvLastBucket inv_last_buckets[INV_LAST_BUCKET_SLOTS];
static bool inv_last_buckets_ready = false;

static InvLastBucket *
inv_last_bucket_slot(int64 product_id)
{
	if (!inv_last_buckets_ready)
	{
		for (int i = 0; i < INV_LAST_BUCKET_SLOTS; i++)
			inv_last_buckets[i].last = -1;
		inv_last_buckets_ready = true;
	}
	return &inv_last_buckets[(uint64) product_id % INV_LAST_BUCKET_SLOTS];
}

/* forget a product's entry (this session changed its buckets) */
static void
inv_last_bucket_forget(int64 product_id)
{
	InvLastBucket *e = inv_last_bucket_slot(product_id);

	if (e->product_id == product_id)
		e->last = -1;
}

/* the product's cached last bucket, at most a second old; -1: not cached */
static int32
inv_last_bucket_cached(int64 product_id)
{
	InvLastBucket *e = inv_last_bucket_slot(product_id);
	TimestampTz now = GetCurrentStatementStartTimestamp();

	if (e->last >= 0 && e->product_id == product_id &&
		now >= e->read_at && now - e->read_at < INV_LAST_BUCKET_TTL_US)
		return e->last;
	return -1;
}

/*
 * The product's only location as this backend read it with its last
 * bucket (text), or 0: not cached, or several locations.  Step 1 by C
 * (inv_take) then looks up the rows of that location only, the index scan
 * starting at the start bucket instead of passing over every row before
 * it (about 22,000 instructions of a hold on a product with 64 buckets).
 * A location added in another session in the last second is not seen by
 * step 1 then, but step 2 reads every row of the product.
 */
static Datum
inv_last_bucket_location(int64 product_id)
{
	InvLastBucket *e = inv_last_bucket_slot(product_id);

	if (inv_last_bucket_cached(product_id) < 0 || e->location == NULL)
		return (Datum) 0;
	return PointerGetDatum(e->location);
}

/* the product's last bucket, at most a second old; -1 without stock rows */
static int32
inv_last_bucket(int64 product_id)
{
	InvLastBucket *e = inv_last_bucket_slot(product_id);
	TimestampTz now = GetCurrentStatementStartTimestamp();
	Datum		v[1] = {Int64GetDatum(product_id)};
	int32		last = inv_last_bucket_cached(product_id);
	bool		isnull;

	if (last >= 0)
		return last;
	if (ShopExec(&q_last_bucket, v, NULL, 1) == 0)
		return -1;				/* not remembered: stock may come */
	last = (int32) ShopColInt(0, 1, 0);
	if (e->location != NULL)
		pfree(e->location);
	e->location = NULL;
	e->product_id = product_id;
	e->last = last;
	e->read_at = now;
	if (ShopColBool(0, 3, false))
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		e->location = DatumGetTextPCopy(ShopCol(0, 2, &isnull));
		MemoryContextSwitchTo(old);
	}
	return last;
}

/*
 * Hold qty units of one product under reservation id rid.  Runs inside an
 * open SPI connection.  See the file header for the three steps.
 */
static void
inv_reserve_one(int64 product_id, int32 qty, pg_uuid_t *rid,
				Datum ref, bool ref_null, Datum expires, bool tried)
{
	Datum		v[6];
	char		n[7] = "      ";
	bool		done = false;
	bool		watch_low = false;
	int32		last;

	v[0] = Int64GetDatum(product_id);
	v[1] = Int32GetDatum(qty);
#if PG_VERSION_NUM >= 150000
	v[2] = Int32GetDatum((int32) pg_prng_uint32(&pg_global_prng_state));
#else
	v[2] = Int32GetDatum((int32) random());
#endif
	v[3] = UUIDPGetDatum(rid);
	v[4] = ref;
	if (ref_null)
		n[4] = 'n';
	v[5] = expires;

	/*
	 * 1: a row with enough units that nobody holds locked, from the start
	 * bucket on, then before it, by C (inv_take) or, where that is not
	 * possible, by two statements (q_reserve_from, q_reserve_before).
	 * tried: the caller has made this attempt already (a cart's line).
	 */
	last = tried ? -1 : inv_last_bucket(product_id);
	if (last >= 0)
	{
		int16		start = (int16) ((uint32) DatumGetInt32(v[2]) % (uint32) (last + 1));
		InvTaker	t;
		InvNewPart	np;

		np.product_id = product_id;
		np.reservation_id = *rid;
		np.part = 0;
		np.qty = qty;
		if (inv_taker_open(&t))
		{
			InvTaken	tk;

			done = inv_take(&t, product_id, inv_last_bucket_location(product_id), qty, start,
							true, &tk);
			inv_taker_close(&t);
			if (done)
			{
				np.location = tk.location;
				np.bucket = tk.bucket;
				watch_low = tk.watch_low;
				inv_insert_holds(&np, 1, ref, ref_null, expires);
			}
		}
		else
		{
			v[2] = Int16GetDatum(start);
			done = inv_try(&q_reserve_from, v, n, 3, &watch_low);
			if (!done && start > 0)
				done = inv_try(&q_reserve_before, v, n, 3, &watch_low);
			if (done)
			{
				bool		isnull;

				/* the row the UPDATE took: its reservation row */
				np.location = ShopCol(0, 1, &isnull);
				np.bucket = DatumGetInt16(ShopCol(0, 2, &isnull));
				inv_insert_holds(&np, 1, ref, ref_null, expires);
			}
		}
		v[2] = Int32GetDatum((int32) start);
	}
	/* 2: wait for one such row */
	if (!done)
		done = inv_try(&q_reserve_wait, v, n, 1, &watch_low);

	if (!done)
	{
		/* 3: no single row can cover qty */
		Datum		pv[1] = {Int64GetDatum(product_id)};
		bool		isnull;
		int64		free_units;
		int64		expired;

		ShopExec(&q_peek, pv, NULL, 0);
		free_units = DatumGetInt64(ShopCol(0, 1, &isnull));
		expired = DatumGetInt64(ShopCol(0, 2, &isnull));
		if (!DatumGetBool(ShopCol(0, 3, &isnull)))
			inv_not_found_product(product_id);
		if (free_units + expired < qty)
			inv_insufficient(product_id, qty, free_units + expired);
		inv_reserve_slow(product_id, qty, rid, ref, ref_null, expires);
		watch_low = true;
	}

	if (watch_low)
	{
		int			threshold;
		int64		after = inv_available(product_id, &threshold, false);

		inv_note_low(product_id, after + qty, after, threshold);
	}
}

/* ---------- the C API (shop.h) ---------- */

static int64 inv_change_on_hand(int64 product_id, const char *location, int64 new_value,
								bool delta_mode, const char *reason);

/* the product and reservation ids of holds as two arrays, for a statement */
static void
inv_hold_arrays(const ShopHold *holds, int n, Datum *args)
{
	int64	   *pid = palloc(sizeof(int64) * Max(n, 1));
	pg_uuid_t  *rid = palloc(sizeof(pg_uuid_t) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		pid[i] = holds[i].product_id;
		rid[i] = holds[i].reservation_id;
	}
	args[0] = ShopInt8Array(pid, n);
	args[1] = ShopUuidArray(rid, n);
}

static int32
inv_seed(void)
{
#if PG_VERSION_NUM >= 150000
	return (int32) pg_prng_uint32(&pg_global_prng_state);
#else
	return (int32) random();
#endif
}

/*
 * The lines of a cart held by C (inv_take), in product order: each line's
 * step 1 without SQL, all with one snapshot and one opening of the table;
 * a line that finds no free row then waits or takes from several rows
 * (inv_reserve_one, its step 1 skipped) while the lines before it stay
 * held (their rows are of products before it: the lock order).  No
 * subtransaction unless a row changed under an attempt (inv_take).  false:
 * not possible for this table, nothing done (the set statement instead).
 */
static bool
inv_reserve_lines(ShopHold *holds, int n, const int32 *start, Datum ref,
				  bool ref_null, TimestampTz expires_at)
{
	InvTaker	t;
	InvNewPart *parts = palloc(sizeof(InvNewPart) * n);
	int64	   *watch = palloc(sizeof(int64) * n);
	int32	   *watch_qty = palloc(sizeof(int32) * n);
	int64	   *learn = palloc(sizeof(int64) * n);
	int			np = 0;
	int			nw = 0;
	int			nl = 0;
	bool		open;
	Datum		expires = TimestampTzGetDatum(expires_at);

	if (!inv_taker_open(&t))
		return false;
	open = true;
	for (int i = 0; i < n; i++)
	{
		InvTaken	tk;

		if (!open)
		{
			if (!inv_taker_open(&t))
				elog(ERROR, "shop: shop.stock changed under a hold");
			open = true;
		}
		if (inv_take(&t, holds[i].product_id, inv_last_bucket_location(holds[i].product_id),
					 holds[i].qty, (int16) start[i], start[i] > 0, &tk))
		{
			parts[np].product_id = holds[i].product_id;
			parts[np].reservation_id = holds[i].reservation_id;
			parts[np].part = 0;
			parts[np].location = tk.location;
			parts[np].bucket = tk.bucket;
			parts[np].qty = holds[i].qty;
			np++;
			if (tk.watch_low)
			{
				watch[nw] = holds[i].product_id;
				watch_qty[nw++] = holds[i].qty;
			}

			/*
			 * Held from a bucket past 0 of a product not in the cache: it
			 * has several buckets, and bucket 0 was taken or short.  Read
			 * its last bucket (one statement) so that this backend's next
			 * holds of it start at random buckets, not all at bucket 0.
			 */
			if (tk.bucket > 0 && inv_last_bucket_cached(holds[i].product_id) < 0)
				learn[nl++] = holds[i].product_id;
			continue;
		}
		/* no free row: the reservation rows so far, then this line's steps 2 and 3 */
		inv_taker_close(&t);
		open = false;
		inv_insert_holds(parts, np, ref, ref_null, expires);
		np = 0;
		inv_reserve_one(holds[i].product_id, holds[i].qty, &holds[i].reservation_id,
						ref, ref_null, expires, true);
	}
	if (open)
		inv_taker_close(&t);
	inv_insert_holds(parts, np, ref, ref_null, expires);
	for (int i = 0; i < nl; i++)
		(void) inv_last_bucket(learn[i]);
	for (int i = 0; i < nw; i++)
	{
		int			threshold;
		int64		after = inv_available(watch[i], &threshold, false);

		inv_note_low(watch[i], after + watch_qty[i], after, threshold);
	}
	return true;
}

/*
 * ShopReserve: hold holds[i].qty units of holds[i].product_id for every i,
 * all or nothing, until expires_at (DT_NOEND: until committed or released),
 * with ref (NULL: none).  holds must be sorted by product_id without
 * repeats (the lock order); each gets a new reservation_id.  Raises SH001
 * or SH006 for the first product, in that order, that cannot be held.  SPI
 * must be connected.
 *
 * The lines are held by C one after the other (inv_reserve_lines: step 1
 * of each without SQL or subtransaction, steps 2 and 3 for a line it
 * cannot hold).  Where that is not possible, the fast path holds every
 * line at once (q_reserve_set: a free stock row
 * per product, skipping rows others have locked) inside one
 * subtransaction, which is kept when every line was held.  Otherwise it is
 * rolled back, with whatever locks it took, and the lines are held one by
 * one in product order (inv_reserve_one: waiting for rows, or taking from
 * several, with a subtransaction per attempt).  So a cart costs one
 * subtransaction, not one per line (a backend's cache of subtransaction
 * ids overflows past 64, which slows every snapshot in the server), and
 * nobody waits for a row while holding rows out of order.  A single line
 * goes to inv_reserve_one at once: its first step is the same attempt in
 * a smaller statement (533,341 instructions per shop.reserve against
 * 579,524 through the set statement, bench/hot_cost.sh).
 */
void
ShopReserve(ShopHold *holds, int n, const char *ref, TimestampTz expires_at)
{
	Datum		args[4];
	int64	   *pid = palloc(sizeof(int64) * Max(n, 1));
	int32	   *qty = palloc(sizeof(int32) * Max(n, 1));
	int32	   *start = palloc(sizeof(int32) * Max(n, 1));
	bool		wrap = false;
	pg_uuid_t  *rid = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	Datum		ref_text = ref ? CStringGetTextDatum(ref) : (Datum) 0;

	if (n == 0)
		return;
	/*
	 * Every quantity is checked here, whoever the caller: shop.reservation
	 * has no CHECK on qty since 1.1 (PostgreSQL planned it again in every
	 * hold), so this is what keeps a hold's qty in 1..INV_MAX_QTY.
	 */
	for (int i = 0; i < n; i++)
		inv_check_qty(holds[i].qty, "qty");
	ShopNewRandomUuids(rid, n);	/* random, not time-ordered: spi.c */
	if (n == 1)
	{
		/*
		 * One line (shop.reserve, a one-line cart): the one-row statement
		 * of step 1 is the set statement for one line without the arrays,
		 * and when it takes nothing the next step is step 2, not step 1
		 * again.
		 */
		holds[0].reservation_id = rid[0];
		inv_reserve_one(holds[0].product_id, holds[0].qty, &holds[0].reservation_id,
						ref_text, ref == NULL, TimestampTzGetDatum(expires_at), false);
		return;
	}
	for (int i = 0; i < n; i++)
	{
		int32		last = inv_last_bucket_cached(holds[i].product_id);

		if (i > 0 && holds[i].product_id <= holds[i - 1].product_id)
			elog(ERROR, "shop: holds must be sorted by product and distinct");
		holds[i].reservation_id = rid[i];
		pid[i] = holds[i].product_id;
		qty[i] = holds[i].qty;
		/* a random start among the cached buckets; not cached: bucket 0 */
		start[i] = last > 0 ? (int32) ((uint32) inv_seed() % (uint32) (last + 1)) : 0;
	}
	args[0] = ShopInt8Array(pid, n);
	args[1] = ShopInt4Array(qty, n);
	args[2] = ShopUuidArray(rid, n);
	args[3] = ShopInt4Array(start, n);
	for (int i = 0; i < n && !wrap; i++)
		wrap = start[i] > 0;
	if (inv_reserve_lines(holds, n, start, ref_text, ref == NULL, expires_at))
		return;

	if (ShopExecOrUndo(wrap ? &q_reserve_set : &q_reserve_set0, args, NULL, n))
	{
		/* stock.low for the products that have a threshold */
		uint64		nwatch = SPI_processed;
		int64	   *watch = palloc(sizeof(int64) * nwatch);
		int64	   *learn = palloc(sizeof(int64) * nwatch);
		InvNewPart *parts = palloc(sizeof(InvNewPart) * nwatch);
		int			nw = 0;
		int			nl = 0;

		/* the rows the UPDATE took: their reservation rows */
		for (uint64 i = 0; i < nwatch; i++)
		{
			bool		isnull;

			parts[i].product_id = ShopColInt(i, 1, 0);
			parts[i].part = 0;
			parts[i].bucket = (int16) ShopColInt(i, 3, 0);
			parts[i].location = ShopCol(i, 4, &isnull);
			parts[i].qty = (int32) ShopColInt(i, 5, 0);
			parts[i].reservation_id = *DatumGetUUIDP(ShopCol(i, 6, &isnull));
		}
		inv_insert_holds(parts, (int) nwatch, ref_text, ref == NULL,
						 TimestampTzGetDatum(expires_at));
		for (uint64 i = 0; i < nwatch; i++)
		{
			int64		p = ShopColInt(i, 1, 0);

			if (ShopColBool(i, 2, false))
				watch[nw++] = p;
			/*
			 * Held from a bucket past 0 of a product not in the cache: it
			 * has several buckets, and bucket 0 was taken or short.  Read
			 * its last bucket (one statement) so that this backend's next
			 * holds of it start at random buckets, not all at bucket 0.
			 */
			if (ShopColInt(i, 3, 0) > 0 && inv_last_bucket_cached(p) < 0)
				learn[nl++] = p;
		}
		for (int i = 0; i < nl; i++)
			(void) inv_last_bucket(learn[i]);
		for (int i = 0; i < nw; i++)
		{
			int			threshold;
			int64		after = inv_available(watch[i], &threshold, false);
			int32		q = 0;

			for (int j = 0; j < n; j++)
				if (holds[j].product_id == watch[i])
					q = holds[j].qty;
			inv_note_low(watch[i], after + q, after, threshold);
		}
		return;
	}
	for (int i = 0; i < n; i++)
		inv_reserve_one(holds[i].product_id, holds[i].qty, &holds[i].reservation_id,
						ref_text, ref == NULL, TimestampTzGetDatum(expires_at), false);
}

/* number of rows of a settling statement's result: the holds it settled */
static int
inv_settle(ShopStmt *q, const ShopHold *holds, int n, bool lock_first, TimestampTz expires_at)
{
	Datum		args[3];

	if (n == 0)
		return 0;
	inv_hold_arrays(holds, n, args);
	args[2] = TimestampTzGetDatum(expires_at);
	if (lock_first)
		ShopExec(&q_lock_holds, args, NULL, 0);
	return (int) ShopExec(q, args, NULL, 0);
}

/*
 * ShopHoldsRelease: give the units of the held ones among holds back
 * (product_id and reservation_id of each are used).  Returns how many
 * were held and are now released.  SPI must be connected.
 */
int
ShopHoldsRelease(const ShopHold *holds, int n)
{
	return inv_settle(&q_release_holds, holds, n, true, 0);
}

/*
 * ShopHoldsCommit: the units of the held ones among holds leave stock
 * (on_hand and reserved drop, one ledger entry per product and location,
 * in_stock follows).  Returns how many were committed by this call.  SPI
 * must be connected.
 */
int
ShopHoldsCommit(const ShopHold *holds, int n)
{
	int			committed = inv_settle(&q_commit_holds, holds, n, true, 0);

	if (committed > 0)
	{
		int64	   *pid = palloc(sizeof(int64) * n);
		Datum		args[1];

		for (int i = 0; i < n; i++)
			pid[i] = holds[i].product_id;
		args[0] = ShopInt8Array(pid, n);
		ShopExec(&q_in_stock_set, args, NULL, 0);
	}
	return committed;
}

/*
 * ShopHoldsKeep: the held ones among holds now expire at expires_at
 * (DT_NOEND: never; a paid order keeps its stock until it ships).  Returns
 * how many were held.  No stock row is touched or locked.
 */
int
ShopHoldsKeep(const ShopHold *holds, int n, TimestampTz expires_at)
{
	return inv_settle(&q_keep_holds, holds, n, false, expires_at);
}

/*
 * ShopHoldsCheckSettled: raise 55000 when a hold of the set is neither
 * held nor committed (released or expired: its units may be sold).
 */
void
ShopHoldsCheckSettled(const ShopHold *holds, int n)
{
	Datum		args[2];

	if (n == 0)
		return;
	inv_hold_arrays(holds, n, args);
	if (ShopExec(&q_holds_gone, args, NULL, 1) > 0)
	{
		bool		isnull;
		char	   *rid = ShopUuidStr(DatumGetUUIDP(ShopCol(0, 1, &isnull)));
		char	   *status = ShopColText(0, 2);

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("reservation is not held"),
				 errdetail("Reservation %s is %s; only a held reservation can be committed.",
						   rid, status)));
	}
}

/*
 * ShopStockAdjust: add delta units (negative: take unreserved units away)
 * at a location, with a reason for the ledger; returns the product's units
 * available.  SPI must be connected.
 */
int64
ShopStockAdjust(int64 product_id, const char *location, int32 delta, const char *reason)
{
	return inv_change_on_hand(product_id, location, delta, true, reason);
}

/* ---------- SQL entry points ---------- */

/*
 * shop.reserve(product_id, qty, ref, ttl) -> uuid
 */
Datum
shop_reserve(PG_FUNCTION_ARGS)
{
	ShopHold	hold;
	bool		ref_null;
	Datum		ref;
	TimestampTz expires;
	pg_uuid_t  *rid;

	hold.product_id = inv_arg_product(fcinfo, 0);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument qty must not be null")));
	hold.qty = PG_GETARG_INT32(1);
	inv_check_qty(hold.qty, "qty");
	ref = inv_arg_text(fcinfo, 2, "ref", INV_MAX_REF, false, &ref_null);
	expires = inv_arg_expiry(fcinfo, 3);

	SPI_connect();
	ShopReserve(&hold, 1, ref_null ? NULL : TextDatumGetCString(ref), expires);
	SPI_finish();
	rid = palloc(sizeof(pg_uuid_t));
	*rid = hold.reservation_id;
	PG_RETURN_UUID_P(rid);
}

typedef struct InvItem
{
	int64		product_id;
	int64		qty;
} InvItem;

static int
inv_item_cmp(const void *a, const void *b)
{
	int64		x = ((const InvItem *) a)->product_id;
	int64		y = ((const InvItem *) b)->product_id;

	return (x > y) - (x < y);
}

static void
inv_bad_items(const char *detail_fmt, int idx)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("malformed items"),
			 errdetail(detail_fmt, idx),
			 errhint("items is a jsonb array such as [{\"product_id\": 1, \"qty\": 2}].")));
}

/* an integral jsonb number field of an item, or an error naming the item */
static int64
inv_item_int(JsonbContainer *c, const char *key, int idx)
{
	JsonbValue *v = getKeyJsonValueFromContainer(c, key, strlen(key), NULL);
	Numeric		num;
	char	   *str;
	char	   *dot;
	char	   *end;
	int64		result;

	if (v == NULL || v->type != jbvNumeric)
		inv_bad_items(strcmp(key, "qty") == 0
					  ? "Item %d has no numeric \"qty\"."
					  : "Item %d has no numeric \"product_id\".", idx);
	num = v->val.numeric;
#if PG_VERSION_NUM >= 140000
	if (numeric_is_nan(num) || numeric_is_inf(num))
#else
	if (numeric_is_nan(num))
#endif
		inv_bad_items("Item %d has a non-finite number.", idx);
	str = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));
	dot = strchr(str, '.');
	if (dot != NULL)
	{
		/* 2.0 is 2; 1.5 is refused rather than rounded */
		for (char *p = dot + 1; *p; p++)
			if (*p != '0')
				inv_bad_items("Item %d has a fractional number.", idx);
		*dot = '\0';
	}
	errno = 0;
	result = strtoi64(str, &end, 10);
	if (errno != 0 || *end != '\0')
		inv_bad_items("Item %d has a number out of range.", idx);
	return result;
}

/*
 * shop.reserve_many(items jsonb, ref, ttl) -> uuid[]
 *
 * Sums repeated products, then holds every distinct product at once
 * (ShopReserve).  Returns one reservation id per distinct product, in
 * product_id order.  Any failure raises and so undoes every hold of the
 * call.
 */
Datum
shop_reserve_many(PG_FUNCTION_ARGS)
{
	Jsonb	   *items;
	bool		ref_null;
	Datum		ref;
	TimestampTz expires;
	InvItem    *list;
	ShopHold   *holds;
	int			nitems;
	int			ndistinct = 0;
	Datum	   *ids;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			idx = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument items must not be null")));
	items = PG_GETARG_JSONB_P(0);
	ref = inv_arg_text(fcinfo, 1, "ref", INV_MAX_REF, false, &ref_null);
	expires = inv_arg_expiry(fcinfo, 2);

	if (!JB_ROOT_IS_ARRAY(items) || JB_ROOT_IS_SCALAR(items))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("malformed items"),
				 errdetail("items must be a jsonb array of objects."),
				 errhint("items is a jsonb array such as [{\"product_id\": 1, \"qty\": 2}].")));
	nitems = JB_ROOT_COUNT(items);
	if (nitems == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("malformed items"),
				 errdetail("items is an empty array.")));
	if (nitems > INV_MAX_ITEMS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("too many items"),
				 errdetail("items has %d elements; at most %d are allowed.",
						   nitems, INV_MAX_ITEMS)));

	list = palloc(sizeof(InvItem) * nitems);
	it = JsonbIteratorInit(&items->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		idx++;
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			inv_bad_items("Item %d is not an object.", idx);
		list[idx - 1].product_id = inv_item_int(v.val.binary.data, "product_id", idx);
		list[idx - 1].qty = inv_item_int(v.val.binary.data, "qty", idx);
		inv_check_qty(list[idx - 1].qty, "qty");
	}
	Assert(idx == nitems);

	/* sort by product, sum repeated products */
	qsort(list, nitems, sizeof(InvItem), inv_item_cmp);
	holds = palloc(sizeof(ShopHold) * nitems);
	for (int i = 0; i < nitems; i++)
	{
		if (ndistinct > 0 && holds[ndistinct - 1].product_id == list[i].product_id)
		{
			int64		sum = holds[ndistinct - 1].qty + list[i].qty;

			inv_check_qty(sum, "total qty of a product");
			holds[ndistinct - 1].qty = (int32) sum;
		}
		else
		{
			holds[ndistinct].product_id = list[i].product_id;
			holds[ndistinct].qty = (int32) list[i].qty;
			ndistinct++;
		}
	}

	SPI_connect();
	ShopReserve(holds, ndistinct, ref_null ? NULL : TextDatumGetCString(ref), expires);
	SPI_finish();
	ids = palloc(sizeof(Datum) * ndistinct);
	for (int i = 0; i < ndistinct; i++)
		ids[i] = UUIDPGetDatum(&holds[i].reservation_id);
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, ndistinct, UUIDOID, UUID_LEN,
										  false, TYPALIGN_CHAR));
}

/*
 * A reservation named by id alone (the SQL calls): its product, into
 * *hold; SH006 for an unknown id.  Returns its status.
 */
static char *
inv_reservation(FunctionCallInfo fcinfo, ShopHold *hold)
{
	pg_uuid_t  *rid;
	Datum		v[1];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument reservation_id must not be null")));
	rid = PG_GETARG_UUID_P(0);
	v[0] = UUIDPGetDatum(rid);
	if (ShopExec(&q_status, v, NULL, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_NOT_FOUND),
				 errmsg("reservation not found"),
				 errdetail("No reservation has reservation_id %s.", ShopUuidStr(rid))));
	hold->product_id = ShopColInt(0, 1, 0);
	hold->qty = 0;
	hold->reservation_id = *rid;
	return ShopColText(0, 2);
}

/*
 * shop.reservation_release(reservation_id) -> boolean
 *
 * true when this call released the hold; false when it was already
 * released or expired.  A committed reservation cannot be released (the
 * units have left): 55000.
 */
Datum
shop_reservation_release(PG_FUNCTION_ARGS)
{
	ShopHold	hold;
	char	   *status = NULL;
	bool		released;

	SPI_connect();
	(void) inv_reservation(fcinfo, &hold);
	released = ShopHoldsRelease(&hold, 1) > 0;
	if (!released)
		status = inv_reservation(fcinfo, &hold);
	if (!released && strcmp(status, "committed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("reservation is already committed"),
				 errdetail("Reservation %s was committed; its units have left stock.",
						   ShopUuidStr(&hold.reservation_id))));
	SPI_finish();
	PG_RETURN_BOOL(released);
}

/*
 * shop.reservation_commit(reservation_id) -> boolean
 *
 * The held units leave: on_hand and reserved drop together.  true when this
 * call committed; false when already committed.  A released or expired
 * reservation cannot be committed (55000): its units may be sold.
 */
Datum
shop_reservation_commit(PG_FUNCTION_ARGS)
{
	ShopHold	hold;
	bool		committed;

	SPI_connect();
	(void) inv_reservation(fcinfo, &hold);
	committed = ShopHoldsCommit(&hold, 1) > 0;
	if (!committed)
		ShopHoldsCheckSettled(&hold, 1);
	SPI_finish();
	PG_RETURN_BOOL(committed);
}

/*
 * shop.reservation_extend(reservation_id, ttl) -> timestamptz
 *
 * A held reservation now expires at now() + ttl, or never when ttl is NULL
 * (a paid order keeps its units until shipped or cancelled).
 */
Datum
shop_reservation_extend(PG_FUNCTION_ARGS)
{
	ShopHold	hold;
	TimestampTz expires = DT_NOEND;

	ShopRequireArg(fcinfo, 0, "reservation_id");
	if (!PG_ARGISNULL(1))
		expires = inv_arg_expiry(fcinfo, 1);
	SPI_connect();
	(void) inv_reservation(fcinfo, &hold);
	if (ShopHoldsKeep(&hold, 1, expires) == 0)
	{
		char	   *status = inv_reservation(fcinfo, &hold);

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("reservation is not held"),
				 errdetail("Reservation %s is %s; only a held reservation can be extended.",
						   ShopUuidStr(&hold.reservation_id), status)));
	}
	SPI_finish();
	PG_RETURN_TIMESTAMPTZ(expires);
}

/*
 * shop.stock_available(product_id) -> int
 */
Datum
shop_stock_available(PG_FUNCTION_ARGS)
{
	int64		product_id = inv_arg_product(fcinfo, 0);
	int64		avail;

	SPI_connect();
	avail = inv_available(product_id, NULL, true);
	if (avail < 0)
	{
		Datum		v[1] = {Int64GetDatum(product_id)};

		if (ShopExecRead(&q_product_exists, v, NULL) == 0)
			inv_not_found_product(product_id);
		avail = 0;
	}
	SPI_finish();
	PG_RETURN_INT32((int32) Min(avail, PG_INT32_MAX));
}

/*
 * Write new on_hand values for the rows of one location (indexes first..
 * first+count-1 of rows), spreading total_on_hand so that every row keeps
 * on_hand >= reserved: each row gets its reserved units plus an even share
 * of the free units, the remainder going to the lowest buckets.
 */
static void
inv_spread(int64 product_id, InvRow *rows, int first, int count, int64 total_on_hand)
{
	int64		reserved = 0;
	int64		free_units;

	for (int i = first; i < first + count; i++)
		reserved += rows[i].reserved;
	free_units = total_on_hand - reserved;
	Assert(free_units >= 0);
	for (int i = first; i < first + count; i++)
	{
		int64		share = free_units / count + ((i - first) < free_units % count ? 1 : 0);
		int64		on_hand = rows[i].reserved + share;
		Datum		v[4];

		if (on_hand == rows[i].on_hand)
			continue;
		v[0] = Int64GetDatum(product_id);
		v[1] = CStringGetTextDatum(rows[i].location);
		v[2] = Int16GetDatum((int16) rows[i].bucket);
		v[3] = Int32GetDatum((int32) on_hand);
		ShopExec(&q_set_row, v, NULL, 0);
		rows[i].on_hand = (int) on_hand;
	}
}

/*
 * Rows of a location that has none yet: as many buckets as the product's
 * other locations use, with the product's threshold.  Returns the new rows.
 */
static InvRow *
inv_create_location(int64 product_id, const char *location, InvRow *rows, int nrows,
					int *count)
{
	int			nbuckets = 1;
	bool		threshold_null = true;
	int			threshold = 0;
	InvRow	   *nrow;

	/* this backend's step 1 must not keep to the product's old location */
	inv_last_bucket_forget(product_id);
	for (int i = 0; i < nrows; i++)
	{
		nbuckets = Max(nbuckets, rows[i].bucket + 1);
		if (!rows[i].threshold_null)
		{
			threshold_null = false;
			threshold = rows[i].threshold;
		}
	}
	nrow = palloc0(sizeof(InvRow) * nbuckets);
	for (int b = 0; b < nbuckets; b++)
	{
		Datum		v[6];
		char		n[7] = "      ";

		nrow[b].location = pstrdup(location);
		nrow[b].bucket = b;
		nrow[b].threshold_null = threshold_null;
		nrow[b].threshold = threshold;
		v[0] = Int64GetDatum(product_id);
		v[1] = CStringGetTextDatum(location);
		v[2] = Int16GetDatum((int16) b);
		v[3] = Int32GetDatum(0);
		v[4] = Int32GetDatum(0);
		v[5] = Int32GetDatum(threshold);
		if (threshold_null)
			n[5] = 'n';
		ShopExec(&q_insert_row, v, n, 0);
	}
	*count = nbuckets;
	return nrow;
}

/* find the slice of rows belonging to one location */
static int
inv_location_slice(InvRow *rows, int nrows, const char *location, int *count)
{
	int			first = -1;

	*count = 0;
	for (int i = 0; i < nrows; i++)
		if (strcmp(rows[i].location, location) == 0)
		{
			if (first < 0)
				first = i;
			(*count)++;
		}
	return first;
}

/*
 * Common body of stock_set and stock_adjust: lock the product's rows, apply
 * the new on_hand of one location, keep the ledger, in_stock and the
 * stock.low alert.  delta_mode: new_value is a delta, otherwise a total.
 */
static int64
inv_change_on_hand(int64 product_id, const char *location, int64 new_value,
				   bool delta_mode, const char *reason)
{
	InvRow	   *rows;
	int			nrows;
	int			first;
	int			count;
	int64		old_total = 0;
	int64		reserved = 0;
	int64		target;
	int64		before;
	int64		after;
	int			threshold;

	inv_lock_product(product_id);
	/* lock the rows in order; read them again once expired holds are back */
	(void) inv_lock_rows(product_id, &nrows);
	inv_reclaim(product_id);
	before = inv_available(product_id, NULL, false);
	if (before < 0)
		before = 0;
	rows = inv_lock_rows(product_id, &nrows);
	first = inv_location_slice(rows, nrows, location, &count);
	if (first < 0)
	{
		if (delta_mode && new_value < 0)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_INSUFFICIENT_STOCK),
					 errmsg("insufficient stock"),
					 errdetail("Product " INT64_FORMAT " has no stock at location \"%s\"; "
							   INT64_FORMAT " units cannot be removed.",
							   product_id, location, -new_value)));
		rows = inv_create_location(product_id, location, rows, nrows, &count);
		first = 0;
	}
	for (int i = first; i < first + count; i++)
	{
		old_total += rows[i].on_hand;
		reserved += rows[i].reserved;
	}
	target = delta_mode ? old_total + new_value : new_value;
	if (target > INV_MAX_ON_HAND)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("on_hand out of range"),
				 errdetail("on_hand would be " INT64_FORMAT "; at most %d units per location are allowed.",
						   target, INV_MAX_ON_HAND)));
	if (target < reserved)
	{
		if (delta_mode)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_INSUFFICIENT_STOCK),
					 errmsg("insufficient stock"),
					 errdetail("Product " INT64_FORMAT " at location \"%s\": " INT64_FORMAT
							   " units to remove, " INT64_FORMAT " unreserved.",
							   product_id, location, -new_value, old_total - reserved),
					 errhint("Reserved units cannot be removed; release their reservations first.")));
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("on_hand below the units reserved"),
					 errdetail("Product " INT64_FORMAT " at location \"%s\" has " INT64_FORMAT
							   " units reserved; on_hand " INT64_FORMAT " was requested.",
							   product_id, location, reserved, target),
					 errhint("Release the reservations first.")));
	}
	inv_spread(product_id, rows, first, count, target);
	inv_ledger(product_id, location, (int) (target - old_total), (int) target,
			   reason, (Datum) 0, true);
	inv_fix_in_stock(product_id);
	after = inv_available(product_id, &threshold, false);
	inv_note_low(product_id, before, after, threshold);
	return after;
}

/*
 * shop.stock_set(product_id, on_hand, location) -> int (units available)
 */
Datum
shop_stock_set(PG_FUNCTION_ARGS)
{
	int64		product_id = inv_arg_product(fcinfo, 0);
	int32		on_hand;
	char	   *location;
	int64		avail;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument on_hand must not be null")));
	on_hand = PG_GETARG_INT32(1);
	if (on_hand < 0 || on_hand > INV_MAX_ON_HAND)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("on_hand out of range"),
				 errdetail("on_hand is %d; it must be between 0 and %d.",
						   on_hand, INV_MAX_ON_HAND)));
	location = TextDatumGetCString(inv_arg_location(fcinfo, 2));

	SPI_connect();
	avail = inv_change_on_hand(product_id, location, on_hand, false, "set");
	SPI_finish();
	PG_RETURN_INT32((int32) Min(avail, PG_INT32_MAX));
}

/*
 * shop.stock_adjust(product_id, delta, reason, location) -> int
 */
Datum
shop_stock_adjust(PG_FUNCTION_ARGS)
{
	int64		product_id = inv_arg_product(fcinfo, 0);
	int32		delta;
	char	   *reason;
	char	   *location;
	bool		isnull;
	int64		avail;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument delta must not be null")));
	delta = PG_GETARG_INT32(1);
	if (delta == 0 || delta < -INV_MAX_ON_HAND || delta > INV_MAX_ON_HAND)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delta out of range"),
				 errdetail("delta is %d; it must be non-zero and between %d and %d.",
						   delta, -INV_MAX_ON_HAND, INV_MAX_ON_HAND)));
	reason = TextDatumGetCString(inv_arg_text(fcinfo, 2, "reason", INV_MAX_REASON,
											  true, &isnull));
	location = TextDatumGetCString(inv_arg_location(fcinfo, 3));

	SPI_connect();
	avail = inv_change_on_hand(product_id, location, delta, true, reason);
	SPI_finish();
	PG_RETURN_INT32((int32) Min(avail, PG_INT32_MAX));
}

/*
 * shop.stock_set_buckets(product_id, buckets)
 *
 * Re-lays every location of the product over n bucket rows: held parts in
 * buckets >= n move to bucket % n, reserved is recomputed from the held
 * parts, and the free units are spread evenly.  A product without stock
 * gets n empty rows at location 'default'.
 */
Datum
shop_stock_set_buckets(PG_FUNCTION_ARGS)
{
	int64		product_id = inv_arg_product(fcinfo, 0);
	int32		nb;
	InvRow	   *rows;
	int			nrows;
	int			i = 0;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument buckets must not be null")));
	nb = PG_GETARG_INT32(1);
	if (nb < 1 || nb > INV_MAX_BUCKETS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("buckets out of range"),
				 errdetail("buckets is %d; it must be between 1 and %d.", nb, INV_MAX_BUCKETS)));

	SPI_connect();
	inv_last_bucket_forget(product_id);
	inv_lock_product(product_id);
	rows = inv_lock_rows(product_id, &nrows);
	if (nrows == 0)
	{
		int			count;

		(void) inv_create_location(product_id, "default", rows, 0, &count);
		rows = inv_lock_rows(product_id, &nrows);
	}

	while (i < nrows)
	{
		const char *location = rows[i].location;
		int			count;
		int64		on_hand = 0;
		InvRow	   *lay = palloc0(sizeof(InvRow) * nb);
		Datum		v[6];
		char		n[7] = "      ";
		uint64		nheld;

		(void) inv_location_slice(rows, nrows, location, &count);
		for (int j = i; j < i + count; j++)
			on_hand += rows[j].on_hand;

		v[0] = Int64GetDatum(product_id);
		v[1] = CStringGetTextDatum(location);
		v[2] = Int16GetDatum((int16) nb);
		ShopExec(&q_move_parts, v, NULL, 0);
		ShopExec(&q_drop_rows, v, NULL, 0);
		nheld = ShopExec(&q_held_by_bucket, v, NULL, 0);
		for (int b = 0; b < nb; b++)
		{
			lay[b].location = (char *) location;
			lay[b].bucket = b;
			lay[b].on_hand = -1;	/* forces a write */
		}
		for (uint64 k = 0; k < nheld; k++)
		{
			int			b = (int) ShopColInt(k, 1, 0);

			lay[b].reserved = (int) ShopColInt(k, 2, 0);
		}
		/* write every bucket: reserved from the held parts, on_hand spread */
		{
			int64		reserved = 0;
			int64		free_units;

			for (int b = 0; b < nb; b++)
				reserved += lay[b].reserved;
			free_units = on_hand - reserved;
			if (free_units < 0)
				elog(ERROR, "shop: product " INT64_FORMAT " at \"%s\" holds more than it has",
					 product_id, location);
			for (int b = 0; b < nb; b++)
			{
				int64		share = free_units / nb + (b < free_units % nb ? 1 : 0);

				v[0] = Int64GetDatum(product_id);
				v[1] = CStringGetTextDatum(location);
				v[2] = Int16GetDatum((int16) b);
				v[3] = Int32GetDatum((int32) (lay[b].reserved + share));
				v[4] = Int32GetDatum(lay[b].reserved);
				v[5] = Int32GetDatum(rows[i].threshold);
				n[5] = rows[i].threshold_null ? 'n' : ' ';
				ShopExec(&q_insert_row, v, n, 0);
			}
		}
		i += count;
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * shop.stock_set_reorder_threshold(product_id, reorder_threshold)
 */
Datum
shop_stock_set_reorder_threshold(PG_FUNCTION_ARGS)
{
	int64		product_id = inv_arg_product(fcinfo, 0);
	Datum		v[2];
	char		n[3] = "  ";
	InvRow	   *rows;
	int			nrows;

	v[0] = Int64GetDatum(product_id);
	if (PG_ARGISNULL(1))
	{
		v[1] = (Datum) 0;
		n[1] = 'n';
	}
	else
	{
		int32		t = PG_GETARG_INT32(1);

		if (t < 0 || t > INV_MAX_ON_HAND)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("reorder_threshold out of range"),
					 errdetail("reorder_threshold is %d; it must be between 0 and %d.",
							   t, INV_MAX_ON_HAND)));
		v[1] = Int32GetDatum(t);
	}

	SPI_connect();
	inv_lock_product(product_id);
	rows = inv_lock_rows(product_id, &nrows);
	if (nrows == 0)
	{
		int			count;

		(void) inv_create_location(product_id, "default", rows, 0, &count);
	}
	ShopExec(&q_set_threshold, v, n, 0);
	SPI_finish();
	PG_RETURN_VOID();
}
