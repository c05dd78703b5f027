/*-------------------------------------------------------------------------
 *
 * recommend.c
 *	  Co-purchase statistics, scoring and top-N neighbour lists behind
 *	  shop.also_bought, shop.recommend, shop.refresh_recommendations and
 *	  shop.rebuild_recommendations.
 *
 * The model (docs/recommendations.md has a worked example).
 *
 * A counted order is a basket b: the set of distinct products on its lines,
 * k_b of them.  Each basket carries a weight w_b: 1, except that a customer
 * with more than shop.reco_buyer_cap counted orders has all of them share
 * that many units (w_b = cap / n_orders), so a reseller's hundreds of
 * invoices count as a few ordinary customers.  A guest order is its own
 * customer.  Pairs inside a large basket are damped too: every pair of b
 * counts pw_b = w_b * min(1, (B - 1) / (k_b - 1)), B = shop.reco_basket_cap,
 * so a product never gets more than B - 1 units of pair weight from one
 * basket.
 *
 * Per product x the tables keep
 *	  n_x = sum of w_b over the baskets holding x          (its popularity)
 *	  s_x = sum of pw_b * (k_b - 1) over the baskets holding x
 *	  N_xy = sum of pw_b over the baskets holding x and y   (the pair count)
 * and T = sum of n_x over all products (the weighted number of purchase
 * slots).  Smith and Linden (2017) ask how many of x's buyers would have
 * bought y by chance: each of the s_x "other slots" next to x is y with
 * probability P_y = n_y / T, so E_xy = n_y * s_x / T (the first-order form
 * of their 1 - (1 - P_y)^k; exact for the small P_y of a real catalog).
 * The score is (N_xy - E_xy) / sqrt(E_xy): how many standard deviations
 * the pair count sits above chance.  A best-seller y has a large E_xy for
 * every x, so it only ranks where it is bought with x more than its sheer
 * popularity explains.  Pairs seen fewer than shop.reco_min_pairs times
 * are not listed (one coincidence between two rare items would otherwise
 * top every list).  Each product keeps its shop.reco_neighbours best.
 *
 * Everything above is a sum over baskets, so the statistics are updated
 * exactly by adding (or, for cancelled orders and re-weighted customers,
 * subtracting) single baskets.  Scores use the scoring total T' (T rounded
 * down to four bits after its leading one, reco_scoring_total), so a list
 * is a function of the statistics alone: shop_copurchase_refresh folds
 * orders in and recomputes only the lists they can change, or all of them
 * when T' moved, and leaves what shop_copurchase_rebuild would write.
 * (shop_copurchase_apply and shop_copurchase_score are the 1.0 entry
 * points, kept for a 1.0 install.)
 *
 * Storage: shop.copurchase_item (n, s per product), shop.copurchase_pair
 * (per product, all neighbours as sorted parallel arrays; both directions
 * stored so one row is one list), shop.copurchase (the scored top-N rows
 * that also_bought reads).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "portability/instr_time.h"
#include "storage/bufmgr.h"
#include "storage/proc.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "relread.h"
#include "shop.h"
#include "spi.h"
#include "recowrite.h"

PG_FUNCTION_INFO_V1(shop_copurchase_apply);
PG_FUNCTION_INFO_V1(shop_copurchase_score);
PG_FUNCTION_INFO_V1(shop_copurchase_rebuild);
PG_FUNCTION_INFO_V1(shop_copurchase_refresh);

/* counts below this are float noise left by subtracting a basket */
#define RECO_EPSILON		1e-9
/* rows per batched INSERT ... SELECT FROM unnest(...) */
#define RECO_BATCH			20000
/* rows fetched per cursor round trip */
#define RECO_FETCH			20000

/* growable buffer of shop.copurchase rows, written in batches */
typedef struct RecoOut
{
	int64	   *pid;
	int64	   *oid;
	float4	   *cnt;
	float4	   *score;
	int			len;
	int64	   *scored;			/* products whose old rows are replaced */
	int			nscored;
	bool		delete_first;	/* delete the rows of scored products */
	int64		total_rows;
	int64		total_products;
} RecoOut;

/* ---------------------------------------------------------------------
 * The statements (src/spi.h).  Generic plans: keyed writes and reads, or
 * whole-table scans that have no better plan.
 * ---------------------------------------------------------------------
 */

static ShopStmt st_scored_delete = SHOP_STMT(SHOP_PLAN_GENERIC,
	"DELETE FROM shop.copurchase WHERE product_id = ANY ($1)",
	INT8ARRAYOID);
static ShopStmt st_scored_insert = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.copurchase (product_id, other_id, pair_count, score)"
	" SELECT * FROM unnest($1, $2, $3, $4)",
	INT8ARRAYOID, INT8ARRAYOID, FLOAT4ARRAYOID, FLOAT4ARRAYOID);
static ShopStmt st_pair_get = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT other_ids, counts FROM shop.copurchase_pair WHERE product_id = $1",
	INT8OID);
static ShopStmt st_pair_put = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.copurchase_pair AS c (product_id, other_ids, counts)"
	" VALUES ($1, $2, $3) ON CONFLICT (product_id) DO UPDATE"
	" SET other_ids = excluded.other_ids, counts = excluded.counts",
	INT8OID, INT8ARRAYOID, FLOAT8ARRAYOID);
static ShopStmt st_pair_delete = SHOP_STMT(SHOP_PLAN_GENERIC,
	"DELETE FROM shop.copurchase_pair WHERE product_id = $1",
	INT8OID);
static ShopStmt st_pairs_all = SHOP_STMT0(SHOP_PLAN_GENERIC,
	"SELECT other_ids, counts, product_id FROM shop.copurchase_pair");
/* pair rows in batches: flat arrays with [lo:hi] slices per product */
static ShopStmt st_pairs_insert = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.copurchase_pair (product_id, other_ids, counts)"
	" SELECT u.p, $4[u.lo:u.hi], $5[u.lo:u.hi] FROM unnest($1, $2, $3) AS u(p, lo, hi)",
	INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, INT8ARRAYOID, FLOAT8ARRAYOID);
static ShopStmt st_items_all = SHOP_STMT0(SHOP_PLAN_GENERIC,
	"SELECT product_id, baskets, slots FROM shop.copurchase_item");
static ShopStmt st_item_add = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.copurchase_item AS c (product_id, baskets, slots)"
	" VALUES ($1, $2, $3) ON CONFLICT (product_id) DO UPDATE"
	" SET baskets = c.baskets + excluded.baskets, slots = c.slots + excluded.slots"
	" RETURNING baskets",
	INT8OID, FLOAT8OID, FLOAT8OID);
static ShopStmt st_item_delete = SHOP_STMT(SHOP_PLAN_GENERIC,
	"DELETE FROM shop.copurchase_item WHERE product_id = $1",
	INT8OID);
static ShopStmt st_items_insert = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.copurchase_item (product_id, baskets, slots)"
	" SELECT * FROM unnest($1, $2, $3)",
	INT8ARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID);
/* the distinct products of every order, order by order */
static ShopStmt st_order_baskets = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT DISTINCT u.o, u.w, l.product_id"
	"  FROM unnest($1, $2) AS u(o, w) JOIN shop.order_line l ON l.order_id = u.o"
	" ORDER BY u.o, l.product_id",
	UUIDARRAYOID, FLOAT8ARRAYOID);
/* a rebuild reads the folded orders and every order line, whole */
static ShopStmt st_folded_orders = SHOP_STMT0(SHOP_PLAN_GENERIC,
	"SELECT order_id, weight FROM shop.copurchase_order");
static ShopStmt st_all_lines = SHOP_STMT0(SHOP_PLAN_GENERIC,
	"SELECT order_id, product_id FROM shop.order_line");

double
reco_basket_pair_weight(double w, int k)
{
	double		cap = (double) shop_reco_basket_cap;

	if (k < 2)
		return 0.0;
	if (k - 1 <= cap - 1)
		return w;
	return w * (cap - 1) / (double) (k - 1);
}

static int
cmp_scored(const void *a, const void *b)
{
	const RecoScored *x = a;
	const RecoScored *y = b;

	if (x->score != y->score)
		return (x->score < y->score) ? 1 : -1;
	return (x->other > y->other) - (x->other < y->other);
}

/* DEBUG1 lines with the time of each step of a refresh or rebuild */
static void
reco_step(instr_time *t, const char *what)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, *t);
	elog(DEBUG1, "shop: recommendations: %s in %.3f s", what, INSTR_TIME_GET_DOUBLE(now));
	INSTR_TIME_SET_CURRENT(*t);
}

/* ---------------------------------------------------------------------
 * Writing shop.copurchase
 * ---------------------------------------------------------------------
 */

static void
reco_out_init(RecoOut *out, bool delete_first)
{
	memset(out, 0, sizeof(RecoOut));
	out->pid = palloc(sizeof(int64) * RECO_BATCH);
	out->oid = palloc(sizeof(int64) * RECO_BATCH);
	out->cnt = palloc(sizeof(float4) * RECO_BATCH);
	out->score = palloc(sizeof(float4) * RECO_BATCH);
	out->scored = palloc(sizeof(int64) * RECO_BATCH);
	out->delete_first = delete_first;
}

static void
reco_out_flush(RecoOut *out)
{
	if (out->delete_first && out->nscored > 0)
	{
		Datum		values[1];

		values[0] = ShopInt8Array(out->scored, out->nscored);
		ShopExec(&st_scored_delete, values, NULL, 0);
	}
	if (out->len > 0)
	{
		Datum		values[4];

		values[0] = ShopInt8Array(out->pid, out->len);
		values[1] = ShopInt8Array(out->oid, out->len);
		values[2] = ShopFloat4Array(out->cnt, out->len);
		values[3] = ShopFloat4Array(out->score, out->len);
		ShopExec(&st_scored_insert, values, NULL, 0);
		out->total_rows += out->len;
	}
	out->len = 0;
	out->nscored = 0;
}

/*
 * The basket total scores are computed against: T rounded down to four
 * bits after its leading one (a step of 1/32 to 1/16 of T).  Every list is
 * a function of the statistics and this value alone, so a refresh that
 * leaves it where it was need only rescore the lists its orders can
 * change, and gets what a full rebuild would; when it moves, every list is
 * rescored (docs/recommendations.md, "Incremental rescoring").
 */
double
reco_scoring_total(double total)
{
	int			e;
	double		m;

	if (total <= 0)
		return 0;
	m = frexp(total, &e);
	return ldexp(floor(m * 32.0) / 32.0, e);
}

/*
 * The positive-scored neighbours of one product, best first, into scratch
 * (nothers entries); returns how many.  others/counts are its pair counts,
 * other_n the popularity n_y of each neighbour, s_x its slot sum and total
 * the scoring total.
 */
int
reco_rank(double s_x, double total, const int64 *others, const double *counts,
		  const double *other_n, int nothers, RecoScored *scratch)
{
	int			m = 0;

	if (total <= 0 || s_x <= 0)
		return 0;
	for (int i = 0; i < nothers; i++)
	{
		double		e;
		double		sc;

		if (counts[i] < shop_reco_min_pairs - RECO_EPSILON || other_n[i] <= 0)
			continue;
		e = other_n[i] * s_x / total;
		if (e < RECO_EPSILON)
			e = RECO_EPSILON;
		sc = (counts[i] - e) / sqrt(e);
		if (sc <= 0)
			continue;
		scratch[m].other = others[i];
		scratch[m].count = counts[i];
		scratch[m].score = sc;
		m++;
	}
	if (m > 1)
		qsort(scratch, m, sizeof(RecoScored), cmp_scored);
	return m;
}

/*
 * Score one product's neighbours and queue its top-N rows (see reco_rank).
 * scratch must hold nothers entries.
 */
static void
reco_score_product(RecoOut *out, int64 pid, double s_x, double total,
				   const int64 *others, const double *counts, const double *other_n,
				   int nothers, RecoScored *scratch)
{
	int			m;
	int			top = shop_reco_neighbours;

	if (out->nscored >= RECO_BATCH || out->len + top > RECO_BATCH)
		reco_out_flush(out);
	out->scored[out->nscored++] = pid;
	out->total_products++;

	m = reco_rank(s_x, total, others, counts, other_n, nothers, scratch);
	for (int i = 0; i < m && i < top; i++)
	{
		out->pid[out->len] = pid;
		out->oid[out->len] = scratch[i].other;
		out->cnt[out->len] = (float4) scratch[i].count;
		out->score[out->len] = (float4) scratch[i].score;
		out->len++;
	}
}

/* ---------------------------------------------------------------------
 * Reading shop.copurchase_pair rows
 * ---------------------------------------------------------------------
 */

typedef struct RecoPairRow
{
	int			n;
	int64	   *others;
	double	   *counts;
} RecoPairRow;

static void
reco_decode_pair(HeapTuple tup, TupleDesc desc, int col_ids, int col_counts, RecoPairRow *row)
{
	bool		isnull;
	Datum		d;
	ArrayType  *a;
	ArrayType  *b;
	int			na,
				nb;

	row->n = 0;
	d = SPI_getbinval(tup, desc, col_ids, &isnull);
	if (isnull)
		return;
	a = DatumGetArrayTypeP(d);
	d = SPI_getbinval(tup, desc, col_counts, &isnull);
	if (isnull)
		return;
	b = DatumGetArrayTypeP(d);
	if (ARR_HASNULL(a) || ARR_HASNULL(b) || ARR_ELEMTYPE(a) != INT8OID ||
		ARR_ELEMTYPE(b) != FLOAT8OID)
		elog(ERROR, "shop: malformed co-purchase pair row");
	na = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	nb = ArrayGetNItems(ARR_NDIM(b), ARR_DIMS(b));
	if (na != nb)
		elog(ERROR, "shop: co-purchase pair row with %d ids and %d counts", na, nb);
	row->n = na;
	row->others = (int64 *) ARR_DATA_PTR(a);
	row->counts = (double *) ARR_DATA_PTR(b);
}

/* fetch the pair row of one product; false if none */
static bool
reco_fetch_pair(int64 pid, RecoPairRow *row)
{
	Datum		values[1];

	values[0] = Int64GetDatum(pid);
	if (ShopExec(&st_pair_get, values, NULL, 1) == 0)
	{
		row->n = 0;
		return false;
	}
	reco_decode_pair(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, 2, row);
	return true;
}

/* ---------------------------------------------------------------------
 * Item statistics lookup (product_id -> n, s)
 * ---------------------------------------------------------------------
 */

typedef struct RecoStat
{
	int64		pid;			/* hash key */
	double		n;
	double		s;
	bool		changed;		/* a refresh moved n or s */
} RecoStat;

static HTAB *
reco_load_stats(double *total)
{
	HASHCTL		ctl;
	HTAB	   *tab;
	Portal		portal;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(RecoStat);
	ctl.hcxt = CurrentMemoryContext;
	tab = hash_create("shop co-purchase stats", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	*total = 0;
	portal = ShopOpenCursor(&st_items_all, NULL, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, RECO_FETCH);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			int64		pid = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			RecoStat   *st = hash_search(tab, &pid, HASH_ENTER, NULL);

			st->n = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
			st->s = DatumGetFloat8(SPI_getbinval(tup, desc, 3, &isnull));
			st->changed = false;
			*total += st->n;
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	return tab;
}

/* score one product from its pair row, looking its neighbours up in stats */
static void
reco_score_from_row(RecoOut *out, HTAB *stats, double total, int64 pid, RecoPairRow *row)
{
	RecoStat   *me = hash_search(stats, &pid, HASH_FIND, NULL);
	double	   *other_n;
	RecoScored *scratch;

	if (row->n == 0 || me == NULL)
	{
		reco_score_product(out, pid, 0, total, NULL, NULL, NULL, 0, NULL);
		return;
	}
	other_n = palloc(sizeof(double) * row->n);
	scratch = palloc(sizeof(RecoScored) * row->n);
	for (int i = 0; i < row->n; i++)
	{
		RecoStat   *st = hash_search(stats, &row->others[i], HASH_FIND, NULL);

		other_n[i] = st ? st->n : 0;
	}
	reco_score_product(out, pid, me->s, total, row->others, row->counts, other_n,
					   row->n, scratch);
	pfree(other_n);
	pfree(scratch);
}

/*
 * Rescore every product that has a pair row, replacing all of
 * shop.copurchase; out is initialized here.
 */
static void
reco_rescore_all(RecoOut *out, HTAB *stats, double total, MemoryContext work,
				 MemoryContext rowctx)
{
	Portal		portal;

	reco_out_init(out, false);
	ShopDirect("DELETE FROM shop.copurchase", SPI_OK_DELETE);
	/* not read-only: a refresh has just written pair rows */
	portal = ShopOpenCursor(&st_pairs_all, NULL, NULL, false);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		ntup;

		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		/* scoring may flush, which runs SPI statements: keep our own copies */
		tt = SPI_tuptable;
		ntup = SPI_processed;
		for (uint64 i = 0; i < ntup; i++)
		{
			RecoPairRow row;
			bool		isnull;
			int64		pid = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));

			MemoryContextSwitchTo(rowctx);
			reco_decode_pair(tt->vals[i], tt->tupdesc, 1, 2, &row);
			reco_score_from_row(out, stats, total, pid, &row);
			MemoryContextSwitchTo(work);
			MemoryContextReset(rowctx);
		}
		/* flushing runs SPI statements, which would free tt */
		SPI_freetuptable(tt);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	reco_out_flush(out);
}

/*
 * shop._copurchase_score(product_ids bigint[], expand boolean) -> bigint
 *
 * Rewrites the shop.copurchase rows of the given products (and, with
 * expand, of all their neighbours); NULL product_ids rescores every
 * product.  Returns how many products were scored.
 */
Datum
shop_copurchase_score(PG_FUNCTION_ARGS)
{
	bool		all = PG_ARGISNULL(0);
	bool		expand = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);
	MemoryContext work;
	MemoryContext old;
	MemoryContext rowctx;
	HTAB	   *stats;
	double		total;
	RecoOut		out;
	int64		result;

	work = AllocSetContextCreate(CurrentMemoryContext, "shop co-purchase scoring",
								 ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "shop: SPI_connect failed");
	old = MemoryContextSwitchTo(work);

	stats = reco_load_stats(&total);
	total = reco_scoring_total(total);
	rowctx = AllocSetContextCreate(work, "shop co-purchase row", ALLOCSET_DEFAULT_SIZES);

	if (all)
		reco_rescore_all(&out, stats, total, work, rowctx);
	else
	{
		ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(0);
		Datum	   *elems;
		bool	   *nulls;
		int			nids;
		HASHCTL		ctl;
		HTAB	   *todo;
		HASH_SEQ_STATUS seq;
		int64	   *key;

		reco_out_init(&out, true);
		deconstruct_array(ids, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &nids);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(int64);
		ctl.hcxt = work;
		todo = hash_create("shop products to score", Max(nids * 4, 64), &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		for (int i = 0; i < nids; i++)
		{
			int64		pid;
			RecoPairRow row;

			if (nulls[i])
				continue;
			pid = DatumGetInt64(elems[i]);
			hash_search(todo, &pid, HASH_ENTER, NULL);
			if (expand && reco_fetch_pair(pid, &row))
			{
				for (int j = 0; j < row.n; j++)
					hash_search(todo, &row.others[j], HASH_ENTER, NULL);
			}
			if (SPI_tuptable)
				SPI_freetuptable(SPI_tuptable);
		}
		hash_seq_init(&seq, todo);
		while ((key = hash_seq_search(&seq)) != NULL)
		{
			RecoPairRow row;
			SPITupleTable *tt;

			MemoryContextSwitchTo(rowctx);
			reco_fetch_pair(*key, &row);
			tt = SPI_tuptable;
			/* the row points into tt: score it before freeing tt */
			reco_score_from_row(&out, stats, total, *key, &row);
			if (tt)
				SPI_freetuptable(tt);
			MemoryContextSwitchTo(work);
			MemoryContextReset(rowctx);
			CHECK_FOR_INTERRUPTS();
		}
	}
	reco_out_flush(&out);
	result = out.total_products;

	MemoryContextSwitchTo(old);
	SPI_finish();
	MemoryContextDelete(work);
	PG_RETURN_INT64(result);
}

/* ---------------------------------------------------------------------
 * Incremental update: shop._copurchase_apply
 * ---------------------------------------------------------------------
 */

typedef struct RecoItemDelta
{
	int64		pid;			/* hash key */
	double		dn;
	double		ds;
} RecoItemDelta;

typedef struct RecoPairKey
{
	int64		x;
	int64		y;
} RecoPairKey;

typedef struct RecoPairDelta
{
	RecoPairKey key;
	double		d;
} RecoPairDelta;

static int
cmp_pair_delta(const void *a, const void *b)
{
	const RecoPairDelta *p = a;
	const RecoPairDelta *q = b;

	if (p->key.x != q->key.x)
		return (p->key.x > q->key.x) - (p->key.x < q->key.x);
	return (p->key.y > q->key.y) - (p->key.y < q->key.y);
}

/* add weight w of one basket (sorted, distinct product ids) to the deltas */
static void
reco_add_basket(HTAB *items, HTAB *pairs, const int64 *b, int k, double w)
{
	double		pw = reco_basket_pair_weight(w, k);

	for (int i = 0; i < k; i++)
	{
		bool		found;
		RecoItemDelta *it = hash_search(items, &b[i], HASH_ENTER, &found);

		if (!found)
		{
			it->dn = 0;
			it->ds = 0;
		}
		it->dn += w;
		it->ds += pw * (k - 1);
		for (int j = 0; j < k; j++)
		{
			RecoPairKey key;
			RecoPairDelta *pd;

			if (i == j)
				continue;
			key.x = b[i];
			key.y = b[j];
			pd = hash_search(pairs, &key, HASH_ENTER, &found);
			if (!found)
				pd->d = 0;
			pd->d += pw;
		}
	}
}

/*
 * The start of apply and refresh: check that the order ids and weights
 * pair up, connect to SPI, switch to the work context and make the empty
 * item and pair delta tables in it.
 */
static void
reco_delta_begin(ArrayType *ids, ArrayType *ws, MemoryContext work,
				 HTAB **items, HTAB **pairs)
{
	HASHCTL		ctl;

	if (ArrayGetNItems(ARR_NDIM(ids), ARR_DIMS(ids)) !=
		ArrayGetNItems(ARR_NDIM(ws), ARR_DIMS(ws)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("order_ids and weights differ in length")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "shop: SPI_connect failed");
	MemoryContextSwitchTo(work);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(RecoItemDelta);
	ctl.hcxt = work;
	*items = hash_create("shop item deltas", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(RecoPairKey);
	ctl.entrysize = sizeof(RecoPairDelta);
	ctl.hcxt = work;
	*pairs = hash_create("shop pair deltas", 4096, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * Step 1 of apply: read the distinct products of every order and add each
 * order's basket, times its weight, to the item and pair deltas.
 */
static void
reco_apply_read(ArrayType *ids, ArrayType *ws, HTAB *items, HTAB *pairs)
{
	Datum		values[2];
	SPITupleTable *tt;
	uint64		nlines;
	int64	   *basket;
	int			k = 0;
	pg_uuid_t	cur;
	double		curw = 0;
	bool		have = false;

	values[0] = PointerGetDatum(ids);
	values[1] = PointerGetDatum(ws);
	nlines = ShopExecRead(&st_order_baskets, values, NULL);
	tt = SPI_tuptable;
	basket = palloc(sizeof(int64) * Max(nlines, 1));
	for (uint64 i = 0; i < nlines; i++)
	{
		bool		isnull;
		pg_uuid_t  *o = DatumGetUUIDP(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
		double		w = DatumGetFloat8(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
		int64		pid = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));

		if (!have || memcmp(o->data, cur.data, UUID_LEN) != 0)
		{
			if (have)
				reco_add_basket(items, pairs, basket, k, curw);
			memcpy(cur.data, o->data, UUID_LEN);
			curw = w;
			k = 0;
			have = true;
		}
		basket[k++] = pid;
	}
	if (have)
		reco_add_basket(items, pairs, basket, k, curw);
	SPI_freetuptable(tt);
}

/*
 * Step 2 of apply: add the item deltas to shop.copurchase_item (a product
 * whose count falls to zero loses its row).  Returns the products changed,
 * as datums allocated in cxt.
 */
static Datum *
reco_apply_items(HTAB *items, MemoryContext cxt, int *nchanged)
{
	long		nitems = hash_get_num_entries(items);
	Datum	   *changed = MemoryContextAlloc(cxt, sizeof(Datum) * Max(nitems, 1));
	HASH_SEQ_STATUS seq;
	RecoItemDelta *it;

	*nchanged = 0;
	hash_seq_init(&seq, items);
	while ((it = hash_seq_search(&seq)) != NULL)
	{
		Datum		v[3];
		double		n;

		v[0] = Int64GetDatum(it->pid);
		v[1] = Float8GetDatum(it->dn);
		v[2] = Float8GetDatum(it->ds);
		ShopExec(&st_item_add, v, NULL, 0);
		n = ShopColFloat(0, 1, 0);
		SPI_freetuptable(SPI_tuptable);
		if (n < RECO_EPSILON)
			ShopExec(&st_item_delete, v, NULL, 0);
		changed[(*nchanged)++] = Int64GetDatum(it->pid);
	}
	return changed;
}

/*
 * Merge the sorted deltas d[0..n-1] of one product x into its sorted pair
 * row and write the row back (or delete it when nothing is left).
 */
static void
reco_apply_pair_row(int64 x, const RecoPairDelta *d, long n)
{
	RecoPairRow row;
	SPITupleTable *rowtt;
	int64	   *nids;
	double	   *ncnt;
	int			m = 0;
	int			a = 0;
	long		b = 0;
	Datum		v[3];

	reco_fetch_pair(x, &row);
	rowtt = SPI_tuptable;
	nids = palloc(sizeof(int64) * (row.n + n));
	ncnt = palloc(sizeof(double) * (row.n + n));
	while (a < row.n || b < n)
	{
		int64		id;
		double		c;

		if (b >= n || (a < row.n && row.others[a] < d[b].key.y))
		{
			id = row.others[a];
			c = row.counts[a++];
		}
		else if (a >= row.n || d[b].key.y < row.others[a])
		{
			id = d[b].key.y;
			c = d[b++].d;
		}
		else
		{
			id = row.others[a];
			c = row.counts[a++] + d[b++].d;
		}
		if (fabs(c) < RECO_EPSILON)
			continue;
		nids[m] = id;
		ncnt[m] = c;
		m++;
	}
	v[0] = Int64GetDatum(x);
	if (m == 0)
	{
		if (row.n > 0)
			ShopExec(&st_pair_delete, v, NULL, 0);
	}
	else
	{
		v[1] = ShopInt8Array(nids, m);
		v[2] = ShopFloat8Array(ncnt, m);
		ShopExec(&st_pair_put, v, NULL, 0);
		pfree(DatumGetPointer(v[1]));
		pfree(DatumGetPointer(v[2]));
	}
	if (rowtt)
		SPI_freetuptable(rowtt);
	pfree(nids);
	pfree(ncnt);
}

/*
 * Step 3 of apply: the pair deltas, sorted by (x, y), merged product by
 * product into shop.copurchase_pair.
 */
static void
reco_apply_pairs(HTAB *pairs)
{
	long		npairs = hash_get_num_entries(pairs);
	RecoPairDelta *plist = palloc(sizeof(RecoPairDelta) * Max(npairs, 1));
	HASH_SEQ_STATUS seq;
	RecoPairDelta *pd;
	long		i = 0;

	hash_seq_init(&seq, pairs);
	while ((pd = hash_seq_search(&seq)) != NULL)
		plist[i++] = *pd;
	qsort(plist, npairs, sizeof(RecoPairDelta), cmp_pair_delta);
	for (long start = 0; start < npairs;)
	{
		long		end = start;

		while (end < npairs && plist[end].key.x == plist[start].key.x)
			end++;
		reco_apply_pair_row(plist[start].key.x, plist + start, end - start);
		start = end;
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * shop._copurchase_apply(order_ids uuid[], weights float8[]) -> bigint[]
 *
 * Adds weights[i] times the basket of order order_ids[i] (negative weights
 * take a basket out) to shop.copurchase_item and shop.copurchase_pair:
 * read the baskets into deltas, apply the item deltas, merge the pair
 * deltas.  Returns the products whose statistics changed.  The caller
 * holds the refresh lock; no shop.copurchase row is written here.
 */
Datum
shop_copurchase_apply(PG_FUNCTION_ARGS)
{
	ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *ws = PG_GETARG_ARRAYTYPE_P(1);
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	HTAB	   *items;
	HTAB	   *pairs;
	Datum	   *changed;
	int			nchanged;
	ArrayType  *result;

	work = AllocSetContextCreate(CurrentMemoryContext, "shop co-purchase apply",
								 ALLOCSET_DEFAULT_SIZES);
	reco_delta_begin(ids, ws, work, &items, &pairs);

	reco_apply_read(ids, ws, items, pairs);
	changed = reco_apply_items(items, caller, &nchanged);
	reco_apply_pairs(pairs);

	MemoryContextSwitchTo(caller);
	result = construct_array(changed, nchanged, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	SPI_finish();
	MemoryContextDelete(work);
	PG_RETURN_ARRAYTYPE_P(result);
}

/* ---------------------------------------------------------------------
 * Full rebuild: shop._copurchase_rebuild (the 1.0 path, writing through
 * INSERT ... FROM unnest) and shop._rebuild_pairs (src/recorebuild.c,
 * writing in bulk) compute the same tables with the functions below:
 * reco_build_read, reco_build_transpose and reco_build_neighbours.  Only
 * the writing differs, so both write the same values to the bit.
 * ---------------------------------------------------------------------
 */

typedef struct RecoIdx
{
	int64		pid;			/* hash key */
	int32		idx;
} RecoIdx;

/* a folded order during a rebuild */
typedef struct RecoFolded
{
	pg_uuid_t	order_id;
	double		weight;
} RecoFolded;

typedef struct RecoOrderIdx
{
	pg_uuid_t	order_id;		/* hash key */
	int32		idx;
} RecoOrderIdx;

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

static int
cmp_int32(const void *a, const void *b)
{
	int32		x = *(const int32 *) a;
	int32		y = *(const int32 *) b;

	return (x > y) - (x < y);
}

static int
cmp_folded(const void *a, const void *b)
{
	return memcmp(((const RecoFolded *) a)->order_id.data, ((const RecoFolded *) b)->order_id.data,
				  UUID_LEN);
}

static int
cmp_nb(const void *a, const void *b)
{
	const RecoNb *x = a;
	const RecoNb *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

static int32
reco_build_index(RecoBuild *rb, int64 pid)
{
	bool		found;
	RecoIdx    *e = hash_search(rb->index, &pid, HASH_ENTER, &found);

	if (!found)
	{
		if (rb->nitems == rb->items_cap)
		{
			rb->items_cap *= 2;
			rb->pid = repalloc_huge(rb->pid, sizeof(int64) * rb->items_cap);
			rb->n = repalloc_huge(rb->n, sizeof(double) * rb->items_cap);
			rb->s = repalloc_huge(rb->s, sizeof(double) * rb->items_cap);
		}
		e->idx = rb->nitems++;
		rb->pid[e->idx] = pid;
		rb->n[e->idx] = 0;
		rb->s[e->idx] = 0;
	}
	return e->idx;
}

/*
 * Step 1: read the baskets of every folded order into rb (zeroed by the
 * caller), in order id order (basket b is the b-th folded order by id,
 * whatever the heap order of shop.copurchase_order), with the item
 * statistics.  Two passes over whole tables, no join and no sort in SQL:
 * the folded orders, sorted by id, into a hash (id -> basket index), then
 * every order line, kept when its order is folded; a counting sort by
 * basket groups the lines.  (A join ordered by order id read both tables
 * through their primary keys: 4.1 s of a 1,170,000-line rebuild.)
 */
void
reco_build_read(RecoBuild *rb)
{
	HASHCTL		ctl;
	HTAB	   *orders;
	RecoFolded *folded;
	int64		nfolded = 0;
	int64		folded_cap = 65536;
	int32	   *line_order;
	int32	   *line_item;
	int64		nlines = 0;
	int64		lines_cap = 262144;
	int64	   *start;
	int32	   *sorted;
	Portal		portal;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(RecoIdx);
	ctl.hcxt = CurrentMemoryContext;
	rb->index = hash_create("shop rebuild products", 65536, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	rb->items_cap = 65536;
	rb->pid = palloc_extended(sizeof(int64) * rb->items_cap, MCXT_ALLOC_HUGE);
	rb->n = palloc_extended(sizeof(double) * rb->items_cap, MCXT_ALLOC_HUGE);
	rb->s = palloc_extended(sizeof(double) * rb->items_cap, MCXT_ALLOC_HUGE);

	/* the folded orders, sorted by id: basket b is the b-th of them */
	folded = palloc_extended(sizeof(RecoFolded) * folded_cap, MCXT_ALLOC_HUGE);
	portal = ShopOpenCursor(&st_folded_orders, NULL, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, RECO_FETCH);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			if (nfolded == folded_cap)
			{
				folded_cap *= 2;
				folded = repalloc_huge(folded, sizeof(RecoFolded) * folded_cap);
			}
			memcpy(&folded[nfolded].order_id,
				   DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)),
				   sizeof(pg_uuid_t));
			folded[nfolded].weight =
				DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
			nfolded++;
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	if (nfolded > 1)
		qsort(folded, nfolded, sizeof(RecoFolded), cmp_folded);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(RecoOrderIdx);
	ctl.hcxt = CurrentMemoryContext;
	orders = hash_create("shop rebuild orders", Max(nfolded, 1024), &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (int64 i = 0; i < nfolded; i++)
	{
		RecoOrderIdx *e = hash_search(orders, &folded[i].order_id, HASH_ENTER, NULL);

		e->idx = (int32) i;
	}

	/* every line of a folded order: (basket, product) */
	line_order = palloc_extended(sizeof(int32) * lines_cap, MCXT_ALLOC_HUGE);
	line_item = palloc_extended(sizeof(int32) * lines_cap, MCXT_ALLOC_HUGE);
	portal = ShopOpenCursor(&st_all_lines, NULL, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, RECO_FETCH);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			RecoOrderIdx *e = hash_search(orders, DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)),
										  HASH_FIND, NULL);

			if (e == NULL)
				continue;
			if (nlines == lines_cap)
			{
				lines_cap *= 2;
				line_order = repalloc_huge(line_order, sizeof(int32) * lines_cap);
				line_item = repalloc_huge(line_item, sizeof(int32) * lines_cap);
			}
			line_order[nlines] = e->idx;
			line_item[nlines] = reco_build_index(rb, DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull)));
			nlines++;
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	hash_destroy(orders);
	rb->lines = nlines;

	/* counting sort of the lines by basket */
	start = palloc_extended(sizeof(int64) * (nfolded + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	sorted = palloc_extended(sizeof(int32) * Max(nlines, 1), MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < nlines; i++)
		start[line_order[i] + 1]++;
	for (int64 o = 0; o < nfolded; o++)
		start[o + 1] += start[o];
	{
		int64	   *pos = palloc_extended(sizeof(int64) * (nfolded + 1), MCXT_ALLOC_HUGE);

		memcpy(pos, start, sizeof(int64) * (nfolded + 1));
		for (int64 i = 0; i < nlines; i++)
			sorted[pos[line_order[i]]++] = line_item[i];
		pfree(pos);
	}
	pfree(line_order);
	pfree(line_item);

	/* each basket: distinct products, statistics, kept if it has pairs */
	rb->bitems = palloc_extended(sizeof(int32) * Max(nlines, 1), MCXT_ALLOC_HUGE);
	rb->boff = palloc_extended(sizeof(int64) * (nfolded + 1), MCXT_ALLOC_HUGE);
	rb->bpw = palloc_extended(sizeof(double) * Max(nfolded, 1), MCXT_ALLOC_HUGE);
	rb->boff[0] = 0;
	for (int64 o = 0; o < nfolded; o++)
	{
		int32	   *b = sorted + start[o];
		int			k = (int) (start[o + 1] - start[o]);
		int			m = 0;
		double		w = folded[o].weight;
		double		pw;

		if (k == 0)
			continue;
		qsort(b, k, sizeof(int32), cmp_int32);
		for (int i = 0; i < k; i++)
			if (m == 0 || b[m - 1] != b[i])
				b[m++] = b[i];
		pw = reco_basket_pair_weight(w, m);
		for (int i = 0; i < m; i++)
		{
			rb->n[b[i]] += w;
			rb->s[b[i]] += pw * (m - 1);
		}
		rb->total += w * m;
		rb->orders++;
		if (m < 2)
			continue;
		memcpy(rb->bitems + rb->nbitems, b, sizeof(int32) * m);
		rb->bpw[rb->nbaskets] = pw;
		rb->nbitems += m;
		rb->nbaskets++;
		rb->boff[rb->nbaskets] = rb->nbitems;
		if ((o & 65535) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	pfree(sorted);
	pfree(start);
	pfree(folded);
}

/*
 * Step 2: the transpose of the basket matrix: for product x, the baskets
 * holding it are rb->ibaskets[rb->ioff[x] .. rb->ioff[x + 1] - 1].
 */
void
reco_build_transpose(RecoBuild *rb)
{
	int32		n = Max(rb->nitems, 1);
	int64	   *ioff = palloc_extended(sizeof(int64) * (n + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	int64	   *ipos = palloc_extended(sizeof(int64) * (n + 1), MCXT_ALLOC_HUGE);
	int64	   *ibaskets = palloc_extended(sizeof(int64) * Max(rb->nbitems, 1), MCXT_ALLOC_HUGE);

	for (int64 i = 0; i < rb->nbitems; i++)
		ioff[rb->bitems[i] + 1]++;
	for (int32 i = 0; i < rb->nitems; i++)
		ioff[i + 1] += ioff[i];
	memcpy(ipos, ioff, sizeof(int64) * (n + 1));
	for (int64 b = 0; b < rb->nbaskets; b++)
		for (int64 j = rb->boff[b]; j < rb->boff[b + 1]; j++)
			ibaskets[ipos[rb->bitems[j]]++] = b;
	pfree(ipos);
	rb->ioff = ioff;
	rb->ibaskets = ibaskets;
}

/* scratch arrays of reco_build_neighbours, one slot per product */
void
reco_build_neighbours_init(const RecoBuild *rb, RecoNeighbours *nb)
{
	int32		n = Max(rb->nitems, 1);

	nb->acc = palloc_extended(sizeof(double) * n, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	nb->touched = palloc_extended(sizeof(int32) * n, MCXT_ALLOC_HUGE);
	nb->nbs = palloc_extended(sizeof(RecoNb) * n, MCXT_ALLOC_HUGE);
	nb->scratch = palloc_extended(sizeof(RecoScored) * n, MCXT_ALLOC_HUGE);
	nb->other_id = palloc_extended(sizeof(int64) * n, MCXT_ALLOC_HUGE);
	nb->other_cnt = palloc_extended(sizeof(double) * n, MCXT_ALLOC_HUGE);
	nb->other_n = palloc_extended(sizeof(double) * n, MCXT_ALLOC_HUGE);
}

/*
 * Step 3, for product x: its pair counts, added up over its baskets in
 * basket order in a dense accumulator.  Returns the number of its
 * neighbours; nb->other_id, other_cnt and other_n hold them by product id
 * (nb->scratch is left for reco_rank).
 */
int
reco_build_neighbours(const RecoBuild *rb, int32 x, RecoNeighbours *nb)
{
	double	   *acc = nb->acc;
	int32	   *touched = nb->touched;
	RecoNb	   *nbs = nb->nbs;
	int			nt = 0;

	for (int64 j = rb->ioff[x]; j < rb->ioff[x + 1]; j++)
	{
		int64		b = rb->ibaskets[j];
		double		pw = rb->bpw[b];

		for (int64 q = rb->boff[b]; q < rb->boff[b + 1]; q++)
		{
			int32		y = rb->bitems[q];

			if (y == x)
				continue;
			if (acc[y] == 0)
				touched[nt++] = y;
			acc[y] += pw;
		}
	}
	if (nt == 0)
		return 0;
	for (int i = 0; i < nt; i++)
	{
		nbs[i].idx = touched[i];
		nbs[i].pid = rb->pid[touched[i]];
		nbs[i].count = acc[touched[i]];
		acc[touched[i]] = 0;
	}
	qsort(nbs, nt, sizeof(RecoNb), cmp_nb);
	for (int i = 0; i < nt; i++)
	{
		nb->other_id[i] = nbs[i].pid;
		nb->other_cnt[i] = nbs[i].count;
		nb->other_n[i] = rb->n[nbs[i].idx];
	}
	return nt;
}

/*
 * The summary a rebuild returns, as jsonb text: its orders, order lines,
 * products, pairs (npairs counts each pair from both sides), list rows
 * and the scoring total (which the caller keeps in shop.copurchase_state).
 */
char *
reco_build_summary(const RecoBuild *rb, int64 npairs, int64 rows)
{
	return psprintf("{\"orders\": " INT64_FORMAT ", \"order_lines\": " INT64_FORMAT
					", \"products\": %d, \"pairs\": " INT64_FORMAT
					", \"copurchase_rows\": " INT64_FORMAT ", \"scored_total\": %.17g}",
					rb->orders, rb->lines, rb->nitems, npairs / 2, rows,
					reco_scoring_total(rb->total));
}

/* pair rows are written in batches: flat arrays with [lo:hi] slices */
typedef struct RecoPairOut
{
	int64	   *pid;
	int32	   *lo;
	int32	   *hi;
	int			nrows;
	int64	   *ids;
	double	   *cnt;
	int			nflat;
	int			flat_cap;
	int64		total_rows;
	int64		total_pairs;
	ShopStmt   *stmt;			/* the statement writing a batch (NULL: insert) */
} RecoPairOut;

static void
reco_pairout_flush(RecoPairOut *po)
{
	Datum		values[5];

	if (po->nrows == 0)
		return;
	values[0] = ShopInt8Array(po->pid, po->nrows);
	values[1] = ShopInt4Array(po->lo, po->nrows);
	values[2] = ShopInt4Array(po->hi, po->nrows);
	values[3] = ShopInt8Array(po->ids, po->nflat);
	values[4] = ShopFloat8Array(po->cnt, po->nflat);
	ShopExec(po->stmt ? po->stmt : &st_pairs_insert, values, NULL, 0);
	po->total_rows += po->nrows;
	po->nrows = 0;
	po->nflat = 0;
}

/* queue the pair row of one product (its nt neighbours by product id) */
static void
reco_pairout_add(RecoPairOut *po, int64 pid, const int64 *ids, const double *cnt, int nt)
{
	if (po->nrows == RECO_BATCH || po->nflat + nt > po->flat_cap)
		reco_pairout_flush(po);
	if (nt > po->flat_cap)
	{
		po->flat_cap = nt;
		po->ids = repalloc_huge(po->ids, sizeof(int64) * po->flat_cap);
		po->cnt = repalloc_huge(po->cnt, sizeof(double) * po->flat_cap);
	}
	po->pid[po->nrows] = pid;
	po->lo[po->nrows] = po->nflat + 1;
	po->hi[po->nrows] = po->nflat + nt;
	po->nrows++;
	memcpy(po->ids + po->nflat, ids, sizeof(int64) * nt);
	memcpy(po->cnt + po->nflat, cnt, sizeof(double) * nt);
	po->nflat += nt;
	po->total_pairs += nt;
}

/* empty the three tables and write the item statistics */
static void
reco_build_write_items(RecoBuild *rb)
{
	ShopDirect("TRUNCATE shop.copurchase, shop.copurchase_pair, shop.copurchase_item",
			   SPI_OK_UTILITY);
	for (int32 start = 0; start < rb->nitems; start += RECO_BATCH)
	{
		int			m = Min(RECO_BATCH, rb->nitems - start);
		Datum		values[3];

		values[0] = ShopInt8Array(rb->pid + start, m);
		values[1] = ShopFloat8Array(rb->n + start, m);
		values[2] = ShopFloat8Array(rb->s + start, m);
		ShopExec(&st_items_insert, values, NULL, 0);
	}
}

/* each product's pair row and scored top-N, written in batches */
static void
reco_build_pairs(RecoBuild *rb, RecoOut *out, RecoPairOut *po)
{
	RecoNeighbours nb;
	double		scoring_total = reco_scoring_total(rb->total);

	reco_build_neighbours_init(rb, &nb);
	for (int32 x = 0; x < rb->nitems; x++)
	{
		int			nt = reco_build_neighbours(rb, x, &nb);

		if (nt == 0)
			continue;
		reco_pairout_add(po, rb->pid[x], nb.other_id, nb.other_cnt, nt);
		reco_score_product(out, rb->pid[x], rb->s[x], scoring_total, nb.other_id, nb.other_cnt,
						   nb.other_n, nt, nb.scratch);
		if ((x & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	reco_pairout_flush(po);
	reco_out_flush(out);
}

/*
 * shop._copurchase_rebuild() -> jsonb
 *
 * Recomputes shop.copurchase_item, shop.copurchase_pair and
 * shop.copurchase from the orders listed in shop.copurchase_order (with
 * their weights).  Everything is computed in memory: the baskets as a
 * compressed sparse row matrix and its transpose, then for each product a
 * dense accumulator over its baskets' products.  Memory is about 16 bytes
 * per order line plus 40 per product; time is the sum over baskets of
 * k_b squared.  The three tables are truncated first (readers of
 * also_bought wait for the rebuild to commit).  The 1.0 shop.
 * _rebuild_copurchase calls it; 1.1's calls shop._rebuild_pairs.
 */
Datum
shop_copurchase_rebuild(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	RecoBuild	rb;
	RecoOut		out;
	RecoPairOut po;
	char	   *summary;
	Jsonb	   *result;
	instr_time	t;

	work = AllocSetContextCreate(CurrentMemoryContext, "shop co-purchase rebuild",
								 ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "shop: SPI_connect failed");
	MemoryContextSwitchTo(work);

	INSTR_TIME_SET_CURRENT(t);
	memset(&rb, 0, sizeof(rb));
	reco_build_read(&rb);
	reco_step(&t, "baskets read");
	reco_build_transpose(&rb);
	reco_build_write_items(&rb);
	reco_step(&t, "item statistics written");

	reco_out_init(&out, false);
	memset(&po, 0, sizeof(po));
	po.pid = palloc(sizeof(int64) * RECO_BATCH);
	po.lo = palloc(sizeof(int32) * RECO_BATCH);
	po.hi = palloc(sizeof(int32) * RECO_BATCH);
	po.flat_cap = 8 * RECO_BATCH;
	po.ids = palloc_extended(sizeof(int64) * po.flat_cap, MCXT_ALLOC_HUGE);
	po.cnt = palloc_extended(sizeof(double) * po.flat_cap, MCXT_ALLOC_HUGE);
	reco_build_pairs(&rb, &out, &po);
	reco_step(&t, "pairs counted, pair rows and lists written");

	summary = reco_build_summary(&rb, po.total_pairs, out.total_rows);
	MemoryContextSwitchTo(caller);
	result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(summary)));
	SPI_finish();
	MemoryContextDelete(work);
	PG_RETURN_JSONB_P(result);
}

/* ---------------------------------------------------------------------
 * Incremental refresh: shop._copurchase_refresh
 *
 * Folds order deltas in and rewrites exactly the top-N rows that change.
 * Lists are a function of the pair counts, the n and s of products and
 * the scoring total (reco_scoring_total).  While the scoring total stays,
 * the list of a product y changes only if
 *	  - y was in a changed basket (its pair counts or s moved), or
 *	  - a neighbour x of y had its n moved (score(y -> x) moved), and x is
 *		listed for y or would now enter y's list.
 * Everything is read and written in batches of product ids; rows that
 * come out as they were are not written.
 * ---------------------------------------------------------------------
 */

/* one shop.copurchase row as stored */
typedef struct RecoRow
{
	int64		other;
	float4		cnt;
	float4		score;
	ItemPointerData tid;		/* where a stored row is (its ctid) */
} RecoRow;

/* a product the refresh looks at closely */
typedef struct RecoDetail
{
	int64		pid;			/* hash key */
	bool		changed;		/* its item statistics changed */
	bool		candidate;		/* a neighbour of a changed product */
	bool		rescore;		/* its list is recomputed */
	bool		have_pairs;		/* others/counts loaded */
	int			npairs;
	int64	   *others;
	double	   *counts;
	int			nold;			/* its shop.copurchase rows */
	int			oldcap;
	RecoRow    *old;
} RecoDetail;

static ShopStmt st_pairs_of = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT product_id, other_ids, counts FROM shop.copurchase_pair WHERE product_id = ANY ($1)",
	INT8ARRAYOID);
static ShopStmt st_pairs_upsert = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.copurchase_pair AS c (product_id, other_ids, counts)"
	" SELECT u.p, $4[u.lo:u.hi], $5[u.lo:u.hi] FROM unnest($1, $2, $3) AS u(p, lo, hi)"
	" ON CONFLICT (product_id) DO UPDATE SET other_ids = excluded.other_ids, counts = excluded.counts",
	INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, INT8ARRAYOID, FLOAT8ARRAYOID);
static ShopStmt st_pairs_delete = SHOP_STMT(SHOP_PLAN_GENERIC,
	"DELETE FROM shop.copurchase_pair WHERE product_id = ANY ($1)",
	INT8ARRAYOID);
static ShopStmt st_items_upsert = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.copurchase_item AS c (product_id, baskets, slots)"
	" SELECT * FROM unnest($1, $2, $3)"
	" ON CONFLICT (product_id) DO UPDATE SET baskets = excluded.baskets, slots = excluded.slots",
	INT8ARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID);
static ShopStmt st_items_delete = SHOP_STMT(SHOP_PLAN_GENERIC,
	"DELETE FROM shop.copurchase_item WHERE product_id = ANY ($1)",
	INT8ARRAYOID);
static ShopStmt st_rows_of = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT product_id, other_id, pair_count, score, ctid FROM shop.copurchase WHERE product_id = ANY ($1)",
	INT8ARRAYOID);
static ShopStmt st_rows_all = SHOP_STMT0(SHOP_PLAN_GENERIC,
	"SELECT product_id, other_id, pair_count, score, ctid FROM shop.copurchase");
static ShopStmt st_rows_delete = SHOP_STMT(SHOP_PLAN_GENERIC,
	"DELETE FROM shop.copurchase c USING unnest($1, $2) AS u(p, o)"
	" WHERE c.product_id = u.p AND c.other_id = u.o",
	INT8ARRAYOID, INT8ARRAYOID);
static ShopStmt st_rows_update = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.copurchase c SET pair_count = u.c, score = u.s"
	"  FROM unnest($1, $2, $3, $4) AS u(p, o, c, s)"
	" WHERE c.product_id = u.p AND c.other_id = u.o",
	INT8ARRAYOID, INT8ARRAYOID, FLOAT4ARRAYOID, FLOAT4ARRAYOID);
/*
 * The same, the rows addressed by the ctid read with them (a TID scan per
 * row instead of a primary key lookup: a full rescore rewrites every row);
 * the key is checked too, and a batch that does not find all its rows
 * (none should: the refresh lock is held) runs again by key.  The score
 * updates go first through heap_update on the ctid (recowrite.c); this
 * statement gets only the rows that path did not find, or all of them
 * when shop.copurchase has a trigger
 */
static ShopStmt st_rows_delete_tid = SHOP_STMT(SHOP_PLAN_GENERIC,
	"DELETE FROM shop.copurchase c USING unnest($1::tid[], $2::bigint[], $3::bigint[]) AS u(t, p, o)"
	" WHERE c.ctid = u.t AND c.product_id = u.p AND c.other_id = u.o",
	TIDARRAYOID, INT8ARRAYOID, INT8ARRAYOID);
static ShopStmt st_rows_update_tid = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.copurchase c SET pair_count = u.c, score = u.s"
	"  FROM unnest($1::tid[], $2::bigint[], $3::bigint[], $4::real[], $5::real[]) AS u(t, p, o, c, s)"
	" WHERE c.ctid = u.t AND c.product_id = u.p AND c.other_id = u.o",
	TIDARRAYOID, INT8ARRAYOID, INT8ARRAYOID, FLOAT4ARRAYOID, FLOAT4ARRAYOID);

/* a growable list of int64 */
typedef struct RecoIds
{
	int64	   *v;
	int			n;
	int			cap;
} RecoIds;

static void
reco_ids_add(RecoIds *ids, int64 v)
{
	if (ids->n == ids->cap)
	{
		ids->cap = Max(ids->cap * 2, 1024);
		ids->v = ids->v ? repalloc_huge(ids->v, sizeof(int64) * ids->cap)
			: palloc_extended(sizeof(int64) * ids->cap, MCXT_ALLOC_HUGE);
	}
	ids->v[ids->n++] = v;
}

static RecoDetail *
reco_detail(HTAB *details, int64 pid)
{
	bool		found;
	RecoDetail *d = hash_search(details, &pid, HASH_ENTER, &found);

	if (!found)
	{
		memset(((char *) d) + sizeof(int64), 0, sizeof(RecoDetail) - sizeof(int64));
		d->pid = pid;
	}
	return d;
}

/* read the pair rows of ids[] into their details (copies) */
static void
reco_load_pairs(HTAB *details, const int64 *ids, int nids)
{
	for (int start = 0; start < nids; start += RECO_BATCH)
	{
		Datum		values[1];
		Portal		portal;

		values[0] = ShopInt8Array(ids + start, Min(RECO_BATCH, nids - start));
		portal = ShopOpenCursor(&st_pairs_of, values, NULL, true);
		for (;;)
		{
			SPI_cursor_fetch(portal, true, 1000);
			if (SPI_processed == 0)
				break;
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				HeapTuple	tup = SPI_tuptable->vals[i];
				TupleDesc	desc = SPI_tuptable->tupdesc;
				bool		isnull;
				int64		pid = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
				RecoDetail *d = reco_detail(details, pid);
				RecoPairRow row;

				reco_decode_pair(tup, desc, 2, 3, &row);
				d->npairs = row.n;
				d->others = palloc(sizeof(int64) * Max(row.n, 1));
				d->counts = palloc(sizeof(double) * Max(row.n, 1));
				if (row.n > 0)
				{
					memcpy(d->others, row.others, sizeof(int64) * row.n);
					memcpy(d->counts, row.counts, sizeof(double) * row.n);
				}
			}
			SPI_freetuptable(SPI_tuptable);
			CHECK_FOR_INTERRUPTS();
		}
		SPI_cursor_close(portal);
		pfree(DatumGetPointer(values[0]));
	}
	/* a product without a pair row has no pairs */
	for (int i = 0; i < nids; i++)
	{
		RecoDetail *d = reco_detail(details, ids[i]);

		d->have_pairs = true;
	}
}

/* add one fetched shop.copurchase row to its product's detail */
static void
reco_keep_row(RecoDetail *d, HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	RecoRow    *r;

	if (d->nold == d->oldcap)
	{
		d->oldcap = Max(d->oldcap * 2, 8);
		d->old = d->old ? repalloc(d->old, sizeof(RecoRow) * d->oldcap)
			: palloc(sizeof(RecoRow) * d->oldcap);
	}
	r = &d->old[d->nold++];
	r->other = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	r->cnt = DatumGetFloat4(SPI_getbinval(tup, desc, 3, &isnull));
	r->score = DatumGetFloat4(SPI_getbinval(tup, desc, 4, &isnull));
	r->tid = *(ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 5, &isnull));
}

/*
 * The one pass of reco_load_rows by a plain sequential scan of the heap
 * (the statement's snapshot, as the read-only cursor has it): the cursor
 * ran its executor over every row and copied each into SPI's tuple table,
 * 382,000 rows for a full rescore at 100,000 products.  false (nothing
 * read) when shop.copurchase is not plainly readable (privileges, row
 * level security) or not as shop made it: the caller runs the statement.
 */
static bool
reco_scan_rows(HTAB *details)
{
	Oid			nsp = get_namespace_oid("shop", true);
	Relation	rel;
	AttrNumber	a_pid,
				a_other,
				a_cnt,
				a_score;
	TableScanDesc scan;
	TupleTableSlot *slot;
	uint64		n = 0;

	if (!OidIsValid(nsp) || (rel = ShopPlainTable(nsp, "copurchase")) == NULL)
		return false;
	a_pid = ShopPlainColumn(rel, "product_id", INT8OID);
	a_other = ShopPlainColumn(rel, "other_id", INT8OID);
	a_cnt = ShopPlainColumn(rel, "pair_count", FLOAT4OID);
	a_score = ShopPlainColumn(rel, "score", FLOAT4OID);
	if (a_pid == 0 || a_other == 0 || a_cnt == 0 || a_score == 0)
	{
		table_close(rel, AccessShareLock);
		return false;
	}
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		int64		pid = DatumGetInt64(slot_getattr(slot, a_pid, &isnull));
		RecoDetail *d;
		RecoRow    *r;

		if (isnull || (d = hash_search(details, &pid, HASH_FIND, NULL)) == NULL)
			continue;
		if (d->nold == d->oldcap)
		{
			d->oldcap = Max(d->oldcap * 2, 8);
			d->old = d->old ? repalloc(d->old, sizeof(RecoRow) * d->oldcap)
				: palloc(sizeof(RecoRow) * d->oldcap);
		}
		r = &d->old[d->nold++];
		/* (the columns are NOT NULL) */
		r->other = DatumGetInt64(slot_getattr(slot, a_other, &isnull));
		r->cnt = DatumGetFloat4(slot_getattr(slot, a_cnt, &isnull));
		r->score = DatumGetFloat4(slot_getattr(slot, a_score, &isnull));
		r->tid = slot->tts_tid;
		if ((++n & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return true;
}

/*
 * Read the shop.copurchase rows of ids[] into their details: through the
 * primary key, or, when they are a good part of all products (nall), in
 * one pass over the table keeping the rows of products in details.
 */
static void
reco_load_rows(HTAB *details, const int64 *ids, int nids, long nall)
{
	if ((long) nids * 8 > nall && reco_scan_rows(details))
		return;
	if ((long) nids * 8 > nall)
	{
		Portal		portal = ShopOpenCursor(&st_rows_all, NULL, NULL, true);

		for (;;)
		{
			SPI_cursor_fetch(portal, true, RECO_FETCH);
			if (SPI_processed == 0)
				break;
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				HeapTuple	tup = SPI_tuptable->vals[i];
				TupleDesc	desc = SPI_tuptable->tupdesc;
				bool		isnull;
				int64		pid = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
				RecoDetail *d = hash_search(details, &pid, HASH_FIND, NULL);

				if (d != NULL)
					reco_keep_row(d, tup, desc);
			}
			SPI_freetuptable(SPI_tuptable);
			CHECK_FOR_INTERRUPTS();
		}
		SPI_cursor_close(portal);
		return;
	}
	for (int start = 0; start < nids; start += RECO_BATCH)
	{
		Datum		values[1];
		Portal		portal;

		values[0] = ShopInt8Array(ids + start, Min(RECO_BATCH, nids - start));
		portal = ShopOpenCursor(&st_rows_of, values, NULL, true);
		for (;;)
		{
			SPI_cursor_fetch(portal, true, RECO_FETCH);
			if (SPI_processed == 0)
				break;
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				HeapTuple	tup = SPI_tuptable->vals[i];
				TupleDesc	desc = SPI_tuptable->tupdesc;
				bool		isnull;
				int64		pid = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));

				reco_keep_row(reco_detail(details, pid), tup, desc);
			}
			SPI_freetuptable(SPI_tuptable);
			CHECK_FOR_INTERRUPTS();
		}
		SPI_cursor_close(portal);
		pfree(DatumGetPointer(values[0]));
	}
}

/*
 * Step 2 of a refresh: the item deltas applied to the statistics in memory
 * and written (a product whose n falls to zero loses its row).  Returns
 * the changed products, sorted.
 */
static void
reco_refresh_items(HTAB *items, HTAB *stats, RecoIds *changed)
{
	long		nitems = hash_get_num_entries(items);
	int64	   *up_id = palloc(sizeof(int64) * Max(nitems, 1));
	double	   *up_n = palloc(sizeof(double) * Max(nitems, 1));
	double	   *up_s = palloc(sizeof(double) * Max(nitems, 1));
	int64	   *del_id = palloc(sizeof(int64) * Max(nitems, 1));
	int			nup = 0;
	int			ndel = 0;
	HASH_SEQ_STATUS seq;
	RecoItemDelta *it;

	hash_seq_init(&seq, items);
	while ((it = hash_seq_search(&seq)) != NULL)
	{
		bool		found;
		RecoStat   *st = hash_search(stats, &it->pid, HASH_ENTER, &found);

		if (!found)
		{
			st->n = 0;
			st->s = 0;
		}
		st->n += it->dn;
		st->s += it->ds;
		st->changed = true;
		if (st->n < RECO_EPSILON)
		{
			st->n = 0;
			st->s = 0;
			del_id[ndel++] = it->pid;
		}
		else
		{
			up_id[nup] = it->pid;
			up_n[nup] = st->n;
			up_s[nup] = st->s;
			nup++;
		}
		reco_ids_add(changed, it->pid);
	}
	for (int start = 0; start < nup; start += RECO_BATCH)
	{
		int			m = Min(RECO_BATCH, nup - start);
		Datum		values[3];

		values[0] = ShopInt8Array(up_id + start, m);
		values[1] = ShopFloat8Array(up_n + start, m);
		values[2] = ShopFloat8Array(up_s + start, m);
		ShopExec(&st_items_upsert, values, NULL, 0);
	}
	for (int start = 0; start < ndel; start += RECO_BATCH)
	{
		Datum		values[1];

		values[0] = ShopInt8Array(del_id + start, Min(RECO_BATCH, ndel - start));
		ShopExec(&st_items_delete, values, NULL, 0);
	}
	if (changed->n > 1)
		qsort(changed->v, changed->n, sizeof(int64), cmp_int64);
}

/*
 * Step 3: the pair deltas merged into the (loaded) pair rows of the
 * changed products, in memory, and written in batches.
 */
static void
reco_refresh_pairs(HTAB *pairs, HTAB *details)
{
	long		npairs = hash_get_num_entries(pairs);
	RecoPairDelta *plist = palloc_extended(sizeof(RecoPairDelta) * Max(npairs, 1), MCXT_ALLOC_HUGE);
	HASH_SEQ_STATUS seq;
	RecoPairDelta *pd;
	long		i = 0;
	RecoPairOut po;
	RecoIds		gone = {0};

	hash_seq_init(&seq, pairs);
	while ((pd = hash_seq_search(&seq)) != NULL)
		plist[i++] = *pd;
	if (npairs > 1)
		qsort(plist, npairs, sizeof(RecoPairDelta), cmp_pair_delta);

	memset(&po, 0, sizeof(po));
	po.pid = palloc(sizeof(int64) * RECO_BATCH);
	po.lo = palloc(sizeof(int32) * RECO_BATCH);
	po.hi = palloc(sizeof(int32) * RECO_BATCH);
	po.flat_cap = 8 * RECO_BATCH;
	po.ids = palloc_extended(sizeof(int64) * po.flat_cap, MCXT_ALLOC_HUGE);
	po.cnt = palloc_extended(sizeof(double) * po.flat_cap, MCXT_ALLOC_HUGE);
	po.stmt = &st_pairs_upsert;

	for (long start = 0; start < npairs;)
	{
		long		end = start;
		int64		x = plist[start].key.x;
		RecoDetail *d = reco_detail(details, x);
		const RecoPairDelta *dl;
		long		n;
		int64	   *nids;
		double	   *ncnt;
		int			m = 0;
		int			a = 0;
		long		b = 0;

		while (end < npairs && plist[end].key.x == x)
			end++;
		dl = plist + start;
		n = end - start;
		Assert(d->have_pairs);
		nids = palloc(sizeof(int64) * (d->npairs + n));
		ncnt = palloc(sizeof(double) * (d->npairs + n));
		while (a < d->npairs || b < n)
		{
			int64		id;
			double		c;

			if (b >= n || (a < d->npairs && d->others[a] < dl[b].key.y))
			{
				id = d->others[a];
				c = d->counts[a++];
			}
			else if (a >= d->npairs || dl[b].key.y < d->others[a])
			{
				id = dl[b].key.y;
				c = dl[b++].d;
			}
			else
			{
				id = d->others[a];
				c = d->counts[a++] + dl[b++].d;
			}
			if (fabs(c) < RECO_EPSILON)
				continue;
			nids[m] = id;
			ncnt[m] = c;
			m++;
		}
		if (m == 0)
		{
			if (d->npairs > 0)
				reco_ids_add(&gone, x);
		}
		else
		{
			reco_pairout_add(&po, x, nids, ncnt, m);
		}
		if (d->others)
			pfree(d->others);
		if (d->counts)
			pfree(d->counts);
		d->others = nids;
		d->counts = ncnt;
		d->npairs = m;
		start = end;
		CHECK_FOR_INTERRUPTS();
	}
	reco_pairout_flush(&po);
	for (int start = 0; start < gone.n; start += RECO_BATCH)
	{
		Datum		values[1];

		values[0] = ShopInt8Array(gone.v + start, Min(RECO_BATCH, gone.n - start));
		ShopExec(&st_pairs_delete, values, NULL, 0);
	}
}

/* rows of shop.copurchase to delete, update and insert, written in batches */
typedef struct RecoDiff
{
	int64	   *dp,
			   *do_;
	ItemPointerData *dt;
	int			nd;
	int64	   *up,
			   *uo;
	float4	   *uc,
			   *us;
	ItemPointerData *ut;
	int			nu;
	int64	   *ip,
			   *io;
	float4	   *ic,
			   *is;
	int			ni;
	int64		written;
	double		secs;			/* spent writing */
	ShopTidWriter *tw;			/* the updates by ctid (NULL: by SPI) */
} RecoDiff;

static void
reco_diff_init(RecoDiff *df)
{
	memset(df, 0, sizeof(*df));
	df->dp = palloc(sizeof(int64) * RECO_BATCH);
	df->do_ = palloc(sizeof(int64) * RECO_BATCH);
	df->dt = palloc(sizeof(ItemPointerData) * RECO_BATCH);
	df->ut = palloc(sizeof(ItemPointerData) * RECO_BATCH);
	df->up = palloc(sizeof(int64) * RECO_BATCH);
	df->uo = palloc(sizeof(int64) * RECO_BATCH);
	df->uc = palloc(sizeof(float4) * RECO_BATCH);
	df->us = palloc(sizeof(float4) * RECO_BATCH);
	df->ip = palloc(sizeof(int64) * RECO_BATCH);
	df->io = palloc(sizeof(int64) * RECO_BATCH);
	df->ic = palloc(sizeof(float4) * RECO_BATCH);
	df->is = palloc(sizeof(float4) * RECO_BATCH);
	df->tw = ShopTidWriterOpen("copurchase", "product_id", "other_id", "pair_count", "score");
}

/* a tid[] of t[0..n) */
static Datum
reco_tid_array(const ItemPointerData *t, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	ArrayType  *a;

	for (int i = 0; i < n; i++)
		d[i] = PointerGetDatum(&t[i]);
	a = construct_array(d, n, TIDOID, sizeof(ItemPointerData), false, TYPALIGN_SHORT);
	pfree(d);
	return PointerGetDatum(a);
}

static void
reco_diff_flush(RecoDiff *df)
{
	Datum		v[5];
	instr_time	t0,
				t1;

	INSTR_TIME_SET_CURRENT(t0);
	if (df->nd > 0)
	{
		v[0] = reco_tid_array(df->dt, df->nd);
		v[1] = ShopInt8Array(df->dp, df->nd);
		v[2] = ShopInt8Array(df->do_, df->nd);
		if (ShopExec(&st_rows_delete_tid, v, NULL, 0) != (uint64) df->nd)
			ShopExec(&st_rows_delete, v + 1, NULL, 0);
	}
	if (df->nu > 0 && df->tw != NULL)
	{
		/*
		 * heap_update on the ctid of each row (recowrite.c); the rows not
		 * found there go on, packed to the front, to the statements by
		 * ctid and by key below
		 */
		int			left = 0;

		for (int i = 0; i < df->nu; i++)
		{
			if (ShopTidWriterUpdate(df->tw, &df->ut[i], df->up[i], df->uo[i], df->uc[i], df->us[i]))
				continue;
			df->ut[left] = df->ut[i];
			df->up[left] = df->up[i];
			df->uo[left] = df->uo[i];
			df->uc[left] = df->uc[i];
			df->us[left] = df->us[i];
			left++;
		}
		CommandCounterIncrement();
		df->written += df->nu - left;
		df->nu = left;
	}
	if (df->nu > 0)
	{
		v[0] = reco_tid_array(df->ut, df->nu);
		v[1] = ShopInt8Array(df->up, df->nu);
		v[2] = ShopInt8Array(df->uo, df->nu);
		v[3] = ShopFloat4Array(df->uc, df->nu);
		v[4] = ShopFloat4Array(df->us, df->nu);
		if (ShopExec(&st_rows_update_tid, v, NULL, 0) != (uint64) df->nu)
			ShopExec(&st_rows_update, v + 1, NULL, 0);
	}
	if (df->ni > 0)
	{
		v[0] = ShopInt8Array(df->ip, df->ni);
		v[1] = ShopInt8Array(df->io, df->ni);
		v[2] = ShopFloat4Array(df->ic, df->ni);
		v[3] = ShopFloat4Array(df->is, df->ni);
		ShopExec(&st_scored_insert, v, NULL, 0);
	}
	df->written += df->nd + df->nu + df->ni;
	df->nd = df->nu = df->ni = 0;
	INSTR_TIME_SET_CURRENT(t1);
	INSTR_TIME_SUBTRACT(t1, t0);
	df->secs += INSTR_TIME_GET_DOUBLE(t1);
}

static int
cmp_row_other(const void *a, const void *b)
{
	const RecoRow *x = a;
	const RecoRow *y = b;

	return (x->other > y->other) - (x->other < y->other);
}

/*
 * Recompute the list of one product from its (loaded) pair row and queue
 * the difference to its stored rows.
 */
static void
reco_diff_product(RecoDiff *df, HTAB *stats, double total, RecoDetail *d)
{
	RecoStat   *me = hash_search(stats, &d->pid, HASH_FIND, NULL);
	int			top = shop_reco_neighbours;
	int			m = 0;
	RecoRow    *nw = NULL;
	int			a = 0,
				b = 0;

	if (df->nd + d->nold > RECO_BATCH || df->nu + d->nold > RECO_BATCH ||
		df->ni + top > RECO_BATCH)
		reco_diff_flush(df);

	if (me != NULL && d->npairs > 0)
	{
		double	   *other_n = palloc(sizeof(double) * d->npairs);
		RecoScored *scratch = palloc(sizeof(RecoScored) * d->npairs);

		for (int i = 0; i < d->npairs; i++)
		{
			RecoStat   *st = hash_search(stats, &d->others[i], HASH_FIND, NULL);

			other_n[i] = st ? st->n : 0;
		}
		m = Min(reco_rank(me->s, total, d->others, d->counts, other_n, d->npairs, scratch), top);
		nw = palloc(sizeof(RecoRow) * Max(m, 1));
		for (int i = 0; i < m; i++)
		{
			nw[i].other = scratch[i].other;
			nw[i].cnt = (float4) scratch[i].count;
			nw[i].score = (float4) scratch[i].score;
		}
		pfree(other_n);
		pfree(scratch);
	}
	if (m > 1)
		qsort(nw, m, sizeof(RecoRow), cmp_row_other);
	if (d->nold > 1)
		qsort(d->old, d->nold, sizeof(RecoRow), cmp_row_other);
	while (a < d->nold || b < m)
	{
		if (b >= m || (a < d->nold && d->old[a].other < nw[b].other))
		{
			df->dp[df->nd] = d->pid;
			df->do_[df->nd] = d->old[a].other;
			df->dt[df->nd] = d->old[a].tid;
			df->nd++;
			a++;
		}
		else if (a >= d->nold || nw[b].other < d->old[a].other)
		{
			df->ip[df->ni] = d->pid;
			df->io[df->ni] = nw[b].other;
			df->ic[df->ni] = nw[b].cnt;
			df->is[df->ni] = nw[b].score;
			df->ni++;
			b++;
		}
		else
		{
			if (d->old[a].cnt != nw[b].cnt || d->old[a].score != nw[b].score)
			{
				df->up[df->nu] = d->pid;
				df->uo[df->nu] = nw[b].other;
				df->uc[df->nu] = nw[b].cnt;
				df->us[df->nu] = nw[b].score;
				df->ut[df->nu] = d->old[a].tid;
				df->nu++;
			}
			a++;
			b++;
		}
	}
	if (nw)
		pfree(nw);
}

/*
 * Step 4 of a refresh, the scoring total unchanged: find the lists that
 * can change, recompute them and write what differs.  Returns how many
 * lists were recomputed.
 */
static int64
reco_refresh_rescore(HTAB *stats, HTAB *details, const RecoIds *changed, double total,
					 int64 *written)
{
	RecoIds		cand = {0};
	RecoIds		look = {0};
	RecoIds		load = {0};
	RecoDiff	df;
	int			top = shop_reco_neighbours;
	int64		scored = 0;
	instr_time	t;

	/* the changed products, and their neighbours as candidates */
	for (int i = 0; i < changed->n; i++)
	{
		RecoDetail *d = reco_detail(details, changed->v[i]);

		d->changed = true;
		d->rescore = true;
		reco_ids_add(&look, d->pid);
	}
	for (int i = 0; i < changed->n; i++)
	{
		RecoDetail *d = reco_detail(details, changed->v[i]);

		for (int j = 0; j < d->npairs; j++)
		{
			RecoDetail *y = reco_detail(details, d->others[j]);

			/* (entries of a dynahash table never move) */
			if (y->changed || y->candidate)
				continue;
			y->candidate = true;
			reco_ids_add(&cand, y->pid);
			reco_ids_add(&look, y->pid);
		}
	}
	INSTR_TIME_SET_CURRENT(t);
	reco_load_rows(details, look.v, look.n, hash_get_num_entries(stats));
	reco_step(&t, "stored lists read");

	/* a candidate whose list names a changed product is rescored */
	for (int i = 0; i < cand.n; i++)
	{
		RecoDetail *y = reco_detail(details, cand.v[i]);

		for (int j = 0; j < y->nold && !y->rescore; j++)
		{
			RecoStat   *st = hash_search(stats, &y->old[j].other, HASH_FIND, NULL);

			if (st == NULL || st->changed)
				y->rescore = true;
		}
	}

	/*
	 * ... and so is one that a changed neighbour x (not listed) could now
	 * enter: its new score beats the worst listed one (give or take the
	 * rounding of the stored float4), or the list has room.
	 */
	for (int i = 0; i < changed->n; i++)
	{
		RecoDetail *d = reco_detail(details, changed->v[i]);
		RecoStat   *sx = hash_search(stats, &d->pid, HASH_FIND, NULL);
		double		n_x = sx ? sx->n : 0;

		if (n_x <= 0)
			continue;
		for (int j = 0; j < d->npairs; j++)
		{
			RecoDetail *y = hash_search(details, &d->others[j], HASH_FIND, NULL);
			RecoStat   *sy;
			double		c = d->counts[j];
			double		e;
			double		sc;

			if (y == NULL || !y->candidate || y->rescore)
				continue;
			if (c < shop_reco_min_pairs - RECO_EPSILON)
				continue;
			sy = hash_search(stats, &y->pid, HASH_FIND, NULL);
			if (sy == NULL || sy->s <= 0 || total <= 0)
				continue;
			e = n_x * sy->s / total;
			if (e < RECO_EPSILON)
				e = RECO_EPSILON;
			sc = (c - e) / sqrt(e);
			if (sc <= 0)
				continue;
			if (y->nold < top)
				y->rescore = true;
			else
			{
				double		worst = y->old[0].score;

				for (int k = 1; k < y->nold; k++)
					worst = Min(worst, (double) y->old[k].score);
				if (sc >= worst - 1e-5 * fabs(worst) - 1e-6)
					y->rescore = true;
			}
		}
	}

	/* the pair rows of the candidates to rescore */
	for (int i = 0; i < cand.n; i++)
	{
		RecoDetail *y = reco_detail(details, cand.v[i]);

		if (y->rescore && !y->have_pairs)
			reco_ids_add(&load, y->pid);
	}
	reco_load_pairs(details, load.v, load.n);
	reco_step(&t, "neighbours chosen, their pair rows read");

	reco_diff_init(&df);
	for (int i = 0; i < look.n; i++)
	{
		RecoDetail *d = reco_detail(details, look.v[i]);

		if (!d->rescore)
			continue;
		reco_diff_product(&df, stats, total, d);
		scored++;
		if ((scored & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	reco_diff_flush(&df);
	if (df.tw)
		ShopTidWriterClose(df.tw);
	*written = df.written;
	elog(DEBUG1, "shop: recommendations: " INT64_FORMAT " rows written in %.3f s",
		 df.written, df.secs);
	return scored;
}

/*
 * A full rescore reads every pair row and every shop.copurchase row.  Read
 * in batches of RECO_BATCH products through the primary keys (= ANY), that
 * was 9% of a refresh's CPU at 100,000 products (95,000 index descents and
 * a heap fetch per row); when the table is small enough to hold whole
 * (RECO_ONE_PASS_ROWS rows: about 64 MB with the pair rows), each table is
 * read by one sequential pass instead.  A larger store keeps the batches,
 * so the refresh's memory stays bounded.
 */
#define RECO_ONE_PASS_ROWS	2000000

static bool
reco_one_pass(void)
{
	Oid			relid = get_relname_relid("copurchase", get_namespace_oid("shop", false));
	Relation	rel;
	double		rows;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, AccessShareLock);
	rows = rel->rd_rel->reltuples;
	if (rows < 0)
		rows = (double) RelationGetNumberOfBlocks(rel) * 100;
	table_close(rel, AccessShareLock);
	return rows <= RECO_ONE_PASS_ROWS;
}

/* a pair row's arrays into its detail (copies) */
static void
reco_keep_pairs(RecoDetail *d, const RecoPairRow *row)
{
	d->npairs = row->n;
	d->others = palloc(sizeof(int64) * Max(row->n, 1));
	d->counts = palloc(sizeof(double) * Max(row->n, 1));
	if (row->n > 0)
	{
		memcpy(d->others, row->others, sizeof(int64) * row->n);
		memcpy(d->counts, row->counts, sizeof(double) * row->n);
	}
}

/*
 * reco_load_pairs_all's pass by a plain sequential scan of the heap, as
 * reco_scan_rows; with the snapshot the cursor (not read-only) took: the
 * pair rows the refresh has just written are seen.  false (nothing read)
 * when shop.copurchase_pair is not plainly readable or not as shop made it.
 */
static bool
reco_scan_pairs(HTAB *details)
{
	Oid			nsp = get_namespace_oid("shop", true);
	Relation	rel;
	AttrNumber	a_pid,
				a_ids,
				a_counts;
	TableScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext tmp,
				old;
	uint64		n = 0;

	if (!OidIsValid(nsp) || (rel = ShopPlainTable(nsp, "copurchase_pair")) == NULL)
		return false;
	a_pid = ShopPlainColumn(rel, "product_id", INT8OID);
	a_ids = ShopPlainColumn(rel, "other_ids", INT8ARRAYOID);
	a_counts = ShopPlainColumn(rel, "counts", FLOAT8ARRAYOID);
	if (a_pid == 0 || a_ids == 0 || a_counts == 0)
	{
		table_close(rel, AccessShareLock);
		return false;
	}
	/* (detoasted arrays: freed row by row) */
	tmp = AllocSetContextCreate(CurrentMemoryContext, "shop pair rows", ALLOCSET_DEFAULT_SIZES);
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		n1,
					n2,
					n3;
		int64		pid = DatumGetInt64(slot_getattr(slot, a_pid, &n1));
		RecoDetail *d;
		Datum		ids,
					counts;
		ArrayType  *a,
				   *b;
		RecoPairRow row;

		if (n1 || (d = hash_search(details, &pid, HASH_FIND, NULL)) == NULL || d->have_pairs)
			continue;
		ids = slot_getattr(slot, a_ids, &n2);
		counts = slot_getattr(slot, a_counts, &n3);
		row.n = 0;
		old = MemoryContextSwitchTo(tmp);
		if (!n2 && !n3)
		{
			int			na,
						nb;

			a = DatumGetArrayTypeP(ids);
			b = DatumGetArrayTypeP(counts);
			if (ARR_HASNULL(a) || ARR_HASNULL(b) || ARR_ELEMTYPE(a) != INT8OID ||
				ARR_ELEMTYPE(b) != FLOAT8OID)
				elog(ERROR, "shop: malformed co-purchase pair row");
			na = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
			nb = ArrayGetNItems(ARR_NDIM(b), ARR_DIMS(b));
			if (na != nb)
				elog(ERROR, "shop: co-purchase pair row with %d ids and %d counts", na, nb);
			row.n = na;
			row.others = (int64 *) ARR_DATA_PTR(a);
			row.counts = (double *) ARR_DATA_PTR(b);
		}
		MemoryContextSwitchTo(old);
		reco_keep_pairs(d, &row);
		MemoryContextReset(tmp);
		if ((++n & 0x3FFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	PopActiveSnapshot();
	table_close(rel, AccessShareLock);
	MemoryContextDelete(tmp);
	return true;
}

/* the pair rows of every product in details without them, in one pass */
static void
reco_load_pairs_all(HTAB *details, const int64 *ids, int nids)
{
	Portal		portal;

	bool		all_had = true;

	/* the entries first: a pair row is kept for the products of ids */
	for (int i = 0; i < nids; i++)
		all_had &= reco_detail(details, ids[i])->have_pairs;
	/* (every one read already: by the refresh's step 3) */
	if (all_had)
		return;
	if (reco_scan_pairs(details))
	{
		for (int i = 0; i < nids; i++)
			reco_detail(details, ids[i])->have_pairs = true;
		return;
	}
	/* not read-only: the refresh has just written pair rows */
	portal = ShopOpenCursor(&st_pairs_all, NULL, NULL, false);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			int64		pid = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
			RecoDetail *d = hash_search(details, &pid, HASH_FIND, NULL);
			RecoPairRow row;

			if (d == NULL || d->have_pairs)
				continue;
			reco_decode_pair(tup, desc, 1, 2, &row);
			d->npairs = row.n;
			d->others = palloc(sizeof(int64) * Max(row.n, 1));
			d->counts = palloc(sizeof(double) * Max(row.n, 1));
			if (row.n > 0)
			{
				memcpy(d->others, row.others, sizeof(int64) * row.n);
				memcpy(d->counts, row.counts, sizeof(double) * row.n);
			}
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	/* a product without a pair row has no pairs */
	for (int i = 0; i < nids; i++)
		reco_detail(details, ids[i])->have_pairs = true;
}

/*
 * Step 4 of a refresh, the scoring total moved: every list is recomputed,
 * products in id order, a batch at a time, and only differing rows are
 * written (with shop.copurchase's scores outside every index, a row whose
 * score moved is a HOT update).  Returns how many lists were recomputed.
 */
static int64
reco_refresh_all(HTAB *stats, HTAB *details, double total, int64 *written)
{
	RecoIds		all = {0};
	RecoIds		load = {0};
	RecoDiff	df;
	HASH_SEQ_STATUS seq;
	RecoStat   *st;
	bool		one_pass = false;

	hash_seq_init(&seq, stats);
	while ((st = hash_seq_search(&seq)) != NULL)
		reco_ids_add(&all, st->pid);
	if (all.n > 1)
		qsort(all.v, all.n, sizeof(int64), cmp_int64);
	reco_diff_init(&df);
	if (all.n > 0 && reco_one_pass())
	{
		/* every product's details (pairs first: they make the entries) */
		one_pass = true;
		reco_load_pairs_all(details, all.v, all.n);
		reco_load_rows(details, all.v, all.n, all.n);
	}
	for (int start = 0; start < all.n; start += RECO_BATCH)
	{
		int			m = Min(RECO_BATCH, all.n - start);
		const int64 *ids = all.v + start;

		load.n = 0;
		for (int i = 0; i < m && !one_pass; i++)
		{
			RecoDetail *d = reco_detail(details, ids[i]);

			if (!d->have_pairs)
				reco_ids_add(&load, ids[i]);
		}
		if (!one_pass)
		{
			reco_load_pairs(details, load.v, load.n);
			reco_load_rows(details, ids, m, LONG_MAX);
		}
		for (int i = 0; i < m; i++)
		{
			RecoDetail *d = reco_detail(details, ids[i]);

			reco_diff_product(&df, stats, total, d);
			if (d->others)
				pfree(d->others);
			if (d->counts)
				pfree(d->counts);
			if (d->old)
				pfree(d->old);
			hash_search(details, &ids[i], HASH_REMOVE, NULL);
		}
		CHECK_FOR_INTERRUPTS();
	}
	reco_diff_flush(&df);
	if (df.tw)
		ShopTidWriterClose(df.tw);
	*written = df.written;
	elog(DEBUG1, "shop: recommendations: " INT64_FORMAT " rows written in %.3f s",
		 df.written, df.secs);
	return all.n;
}

/*
 * shop._copurchase_refresh(order_ids uuid[], weights float8[],
 *							 scored_total float8) -> jsonb
 *
 * Adds weights[i] times the basket of order order_ids[i] to
 * shop.copurchase_item and shop.copurchase_pair (negative weights take a
 * basket out), then brings shop.copurchase to what a full rebuild would
 * write: when the scoring total is still scored_total, only the lists that
 * can change are recomputed and only differing rows written; otherwise
 * every list is rescored.  Returns the counts and the scoring total.
 * The caller holds the refresh lock.
 */
Datum
shop_copurchase_refresh(PG_FUNCTION_ARGS)
{
	ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *ws = PG_GETARG_ARRAYTYPE_P(1);
	double		prev_total = PG_GETARG_FLOAT8(2);
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	HASHCTL		ctl;
	HTAB	   *items;
	HTAB	   *pairs;
	HTAB	   *stats;
	HTAB	   *details;
	RecoIds		changed = {0};
	double		total;
	double		old_total;
	bool		full;
	int64		scored;
	int64		written = 0;
	HASH_SEQ_STATUS seq;
	RecoStat   *st;
	char	   *summary;
	Jsonb	   *result;
	instr_time	t;

	work = AllocSetContextCreate(CurrentMemoryContext, "shop co-purchase refresh",
								 ALLOCSET_DEFAULT_SIZES);
	reco_delta_begin(ids, ws, work, &items, &pairs);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(RecoDetail);
	ctl.hcxt = work;
	details = hash_create("shop refresh products", 4096, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	/* 1: the baskets; 2: item statistics; 3: pair rows */
	INSTR_TIME_SET_CURRENT(t);
	if (ArrayGetNItems(ARR_NDIM(ids), ARR_DIMS(ids)) > 0)
		reco_apply_read(ids, ws, items, pairs);
	reco_step(&t, "baskets read");
	stats = reco_load_stats(&old_total);
	reco_step(&t, "item statistics read");
	reco_refresh_items(items, stats, &changed);
	reco_step(&t, "item statistics written");

	/* the scoring total: of the statistics just written */
	total = 0;
	hash_seq_init(&seq, stats);
	while ((st = hash_seq_search(&seq)) != NULL)
		total += st->n;
	total = reco_scoring_total(total);
	full = (total != prev_total);

	/*
	 * The pair rows of the changed products; when every list is to be
	 * rescored in one pass (step 4 reads every pair row anyway), every
	 * pair row now, by that one pass: the changed products' rows were read
	 * through the primary key first, 19,000 index descents after 10,000
	 * orders at 100,000 products, and the pass then skipped them.
	 */
	if (full && changed.n > 0 && reco_one_pass())
	{
		RecoIds		all = {0};

		hash_seq_init(&seq, stats);
		while ((st = hash_seq_search(&seq)) != NULL)
			reco_ids_add(&all, st->pid);
		for (int i = 0; i < changed.n; i++)
			reco_ids_add(&all, changed.v[i]);
		reco_load_pairs_all(details, all.v, all.n);
		pfree(all.v);
	}
	else
		reco_load_pairs(details, changed.v, changed.n);
	reco_step(&t, "pair rows read");
	reco_refresh_pairs(pairs, details);
	reco_step(&t, "pair rows written");

	/* 4: the lists */
	if (full)
		scored = reco_refresh_all(stats, details, total, &written);
	else
		scored = reco_refresh_rescore(stats, details, &changed, total, &written);
	reco_step(&t, "lists rescored and written");

	summary = psprintf("{\"products_changed\": %d, \"products_scored\": " INT64_FORMAT
					   ", \"rows_written\": " INT64_FORMAT ", \"full_rescore\": %s"
					   ", \"scored_total\": %.17g}",
					   changed.n, scored, written, full ? "true" : "false", total);
	MemoryContextSwitchTo(caller);
	result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(summary)));
	SPI_finish();
	MemoryContextDelete(work);
	PG_RETURN_JSONB_P(result);
}

/* ---------------------------------------------------------------------
 * The capture trigger (order_copurchase_capture on shop."order")
 * ---------------------------------------------------------------------
 */

/*
 * Log a row unless the order already has one for that customer: one
 * pending row per order and customer is enough (the refresh recomputes
 * the customer's whole contribution), and a pg_restore, which fires the
 * trigger again, does not double the log.  Every name is qualified and
 * the operators named in pg_catalog, so that the plan does not depend on
 * the search_path of the session that commits first in a backend.
 */
static ShopStmt st_capture_once = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.copurchase_delta (customer_id, order_id, counted)"
	" SELECT $1, $2, $3"
	"  WHERE NOT EXISTS (SELECT FROM shop.copurchase_delta d"
	"                     WHERE d.order_id OPERATOR(pg_catalog.=) $2"
	"                       AND (d.customer_id OPERATOR(pg_catalog.=) $1"
	"                            OR (d.customer_id IS NULL AND $1 IS NULL)))",
	INT8OID, UUIDOID, BOOLOID);
/* the order left its old customer: that customer's contribution goes */
static ShopStmt st_capture_left = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.copurchase_delta (customer_id, order_id, counted) VALUES ($1, $2, false)",
	INT8OID, UUIDOID);

/*
 * The order the current transaction's checkout logged itself (its write
 * statement inserts the row the trigger would: src/orders.c).  The
 * trigger's INSERT event of that order then has nothing to add and skips
 * its statement.  Only a saving: without it the trigger's NOT EXISTS finds
 * the row.
 */
static LocalTransactionId capture_logged_lxid = InvalidLocalTransactionId;
static pg_uuid_t capture_logged_order;

void		ShopCopurchaseLogged(const pg_uuid_t *order_id);

void
ShopCopurchaseLogged(const pg_uuid_t *order_id)
{
	capture_logged_lxid = MyProc->lxid;
	memcpy(&capture_logged_order, order_id, sizeof(pg_uuid_t));
}

/* shop._counted(status): the states whose lines count as purchases */
static bool
capture_counted(HeapTuple tuple, TupleDesc desc, int status_att)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, status_att, desc, &isnull);
	const char *s;

	if (isnull)
		return false;
	s = TextDatumGetCString(d);
	return strcmp(s, "paid") == 0 || strcmp(s, "fulfilling") == 0 ||
		strcmp(s, "shipped") == 0 || strcmp(s, "delivered") == 0;
}

/*
 * shop._copurchase_capture_trg(): AFTER INSERT OR UPDATE OF status,
 * customer_id ... FOR EACH ROW, deferred to commit (so the lines inserted
 * after the header are there when a refresh reads them).  Logs to
 * shop.copurchase_delta the orders that start or stop counting as
 * purchases, and the old customer of an order that changes customer:
 * the rows the PL/pgSQL function of 1.0 logged, without an interpreter
 * at every commit (issue 11: 5% of a checkout's instructions).
 * SECURITY DEFINER: it fires as the committing session's role, which
 * has no privileges on the log.
 */
PG_FUNCTION_INFO_V1(shop_copurchase_capture_trg);
Datum
shop_copurchase_capture_trg(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	newt;
	int			status_att,
				customer_att,
				order_att;
	bool		counted;
	bool		cust_null,
				old_cust_null = true,
				isnull;
	Datum		cust,
				old_cust = (Datum) 0;
	bool		moved = false;
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!TRIGGER_FIRED_AFTER(td->tg_event))
		elog(ERROR, "shop._copurchase_capture_trg: not called as an AFTER ... FOR EACH ROW trigger");
	desc = RelationGetDescr(td->tg_relation);
	status_att = SPI_fnumber(desc, "status");
	customer_att = SPI_fnumber(desc, "customer_id");
	order_att = SPI_fnumber(desc, "order_id");
	if (status_att <= 0 || customer_att <= 0 || order_att <= 0 ||
		TupleDescAttr(desc, customer_att - 1)->atttypid != INT8OID ||
		TupleDescAttr(desc, order_att - 1)->atttypid != UUIDOID)
		elog(ERROR, "shop._copurchase_capture_trg: the table lacks status, customer_id bigint or order_id uuid");

	newt = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	counted = capture_counted(newt, desc, status_att);
	cust = heap_getattr(newt, customer_att, desc, &cust_null);
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		if (!counted)
			return PointerGetDatum(NULL);
		if (capture_logged_lxid == MyProc->lxid)
		{
			Datum		o = heap_getattr(newt, order_att, desc, &isnull);

			if (!isnull && memcmp(DatumGetUUIDP(o), &capture_logged_order, sizeof(pg_uuid_t)) == 0)
				return PointerGetDatum(NULL);	/* checkout logged it */
		}
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		HeapTuple	oldt = td->tg_trigtuple;

		old_cust = heap_getattr(oldt, customer_att, desc, &old_cust_null);
		moved = old_cust_null != cust_null ||
			(!cust_null && DatumGetInt64(old_cust) != DatumGetInt64(cust));
		if (capture_counted(oldt, desc, status_att) == counted && !moved)
			return PointerGetDatum(NULL);
	}
	else
		return PointerGetDatum(NULL);

	SPI_connect();
	args[0] = cust_null ? (Datum) 0 : cust;
	nulls[0] = cust_null ? 'n' : ' ';
	args[1] = heap_getattr(newt, order_att, desc, &isnull);
	args[2] = BoolGetDatum(counted);
	ShopExec(&st_capture_once, args, nulls, 0);
	if (moved)
	{
		args[0] = old_cust_null ? (Datum) 0 : old_cust;
		nulls[0] = old_cust_null ? 'n' : ' ';
		args[1] = heap_getattr(td->tg_trigtuple, order_att, desc, &isnull);
		ShopExec(&st_capture_left, args, nulls, 0);
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}
