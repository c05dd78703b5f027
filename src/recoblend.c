/*-------------------------------------------------------------------------
 *
 * recoblend.c
 *	  shop._recommend_blend in C: recommend's blended list of a customer,
 *	  read by index scans (issue 14, latency).
 *
 * The list is the one the SQL statement of shop._recommend_blend_sql
 * gives (docs/recommendations.md, "The blend"); reco11 measured that
 * statement's cost as its 68 index descents plus the executor's work over
 * about 410 candidate rows (56 plan nodes started per call, sorts, a
 * window, hash aggregates), no part of it most of it.  Here the same
 * indexes are read directly, under the caller's snapshot (the function is
 * STABLE, as the statement was), and the candidates are summed in one
 * small open-addressing hash:
 *
 *	 bought   the customer's counted orders (order_customer_idx), each
 *			  order's lines (order_line_pkey): product -> latest order time;
 *	 seeds    the 50 latest bought (weight 1) and the views (view_event's
 *			  key, weight 0.5; none with a cut-off), the larger weight kept;
 *	 item     each seed's co-purchase range (copurchase_pkey), score > 0:
 *			  sum of score * weight per product;
 *	 alike    the customer's neighbours (customer_neighbour_pkey), each
 *			  neighbour's profile (customer_item_pkey): sum of similarity *
 *			  profile weight per product;
 *	 pop      the 3 * lim + 60 first entries of product_popularity_idx
 *			  (active products, popularity > 0), read index only.
 *
 * Each source is divided by its best score and multiplied by its weight;
 * the parts are added in the statement's order (item, alike, pop) in
 * float8 and rounded to real, as the statement did.  The 3 * lim + 10
 * best candidates (score, then product id) that are neither bought nor
 * seeds are checked active through product_pkey, and the first lim kept.
 * A short list is filled from trending by the statement of the SQL body.
 *
 * The whole SQL function runs instead (shop._recommend_blend_sql) when
 * the content source is on (shop.reco_weight_content > 0: its
 * similar_products call), or when a table or index is not as shop made
 * it or cannot be read plainly by the function's owner (privileges, row
 * security): the lists are the same either way.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/visibilitymap.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "common/md5.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "relread.h"
#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_recommend_blend);

#define BLEND_SEEDS_BOUGHT 50	/* the latest bought products that seed */

/* a candidate or an excluded product in the blend's hash */
typedef struct BlendEntry
{
	int64		pid;
	double		sc[3];			/* item, alike, pop; 0 when absent */
	bool		used;
	bool		excluded;		/* bought, or a seed */
	bool		seed;
	int32		bought;			/* its place in the bought array, -1 if none */
	float4		score;			/* the blended score, once computed */
} BlendEntry;

/* open addressing, linear probing, power-of-two size */
typedef struct BlendHash
{
	BlendEntry *e;
	uint32		size;
	uint32		n;
} BlendHash;

/* a bought product and its latest counted order's time */
typedef struct BlendBought
{
	int64		pid;
	TimestampTz at;
} BlendBought;

/* a seed: product and weight */
typedef struct BlendSeed
{
	int64		pid;
	double		w;
} BlendSeed;

static inline uint32
blend_hash_int64(int64 v)
{
	uint64		h = (uint64) v * UINT64CONST(0x9E3779B97F4A7C15);

	return (uint32) (h >> 32);
}

static void
blend_hash_init(BlendHash *h, uint32 size)
{
	h->size = size;
	h->n = 0;
	h->e = palloc0(sizeof(BlendEntry) * size);
}

/* the entry of pid, added (zeroed) when missing */
static BlendEntry *
blend_hash_get(BlendHash *h, int64 pid)
{
	uint32		mask;
	uint32		i;

	if ((h->n + 1) * 2 > h->size)
	{
		BlendEntry *old = h->e;
		uint32		oldsize = h->size;

		blend_hash_init(h, oldsize * 2);
		for (uint32 j = 0; j < oldsize; j++)
			if (old[j].used)
			{
				uint32		k = blend_hash_int64(old[j].pid) & (h->size - 1);

				while (h->e[k].used)
					k = (k + 1) & (h->size - 1);
				h->e[k] = old[j];
				h->n++;
			}
		pfree(old);
	}
	mask = h->size - 1;
	i = blend_hash_int64(pid) & mask;
	while (h->e[i].used)
	{
		if (h->e[i].pid == pid)
			return &h->e[i];
		i = (i + 1) & mask;
	}
	h->e[i].used = true;
	h->e[i].pid = pid;
	h->e[i].bought = -1;
	h->n++;
	return &h->e[i];
}

/*
 * The relations the blend reads, opened for one call (AccessShareLock),
 * with the columns it reads.  ok is false when one of them is not as shop
 * made it or cannot be read plainly: the SQL body then runs instead.
 */
typedef struct BlendRels
{
	bool		ok;
	Relation	order,
				order_idx,
				line,
				line_idx,
				view,
				view_idx,
				cop,
				cop_idx,
				nb,
				nb_idx,
				ci,
				ci_idx,
				prod,
				prod_idx,
				pop_idx;
	ShopOrderCols ocols;		/* shop."order"'s columns */
	AttrNumber	l_product,
				v_product,
				c_other,
				c_score,
				n_neighbour,
				n_score,
				i_product,
				i_weight,
				p_id,
				p_status,
				p_popularity;
	bool		pop_index_only; /* pop_idx's predicate is status = 'active' */
} BlendRels;

/*
 * Whether idx's predicate is exactly status = 'active' (the column status
 * of its table, text equality): its entries then lead only to active rows.
 */
static bool
blend_pred_is_active(Relation idx, AttrNumber status)
{
	List	   *pred = RelationGetIndexPredicate(idx);
	OpExpr	   *op;
	Var		   *v;
	Const	   *c;

	if (list_length(pred) != 1 || !IsA(linitial(pred), OpExpr))
		return false;
	op = (OpExpr *) linitial(pred);
	if (op->opno != TextEqualOperator || list_length(op->args) != 2)
		return false;
	v = (Var *) linitial(op->args);
	c = (Const *) lsecond(op->args);
	if (!IsA(v, Var) || !IsA(c, Const) || v->varattno != status || c->constisnull ||
		c->consttype != TEXTOID)
		return false;
	return VARSIZE_ANY_EXHDR(DatumGetPointer(c->constvalue)) == 6 &&
		memcmp(VARDATA_ANY(DatumGetPointer(c->constvalue)), "active", 6) == 0;
}

static void
blend_rels_open(BlendRels *r)
{
	Oid			nsp = get_namespace_oid("shop", false);
	static const bool asc1[] = {false};
	static const bool cust_desc[] = {false, true};
	static const bool pop_desc[] = {true, false};

	memset(r, 0, sizeof(*r));
	r->order = ShopPlainTable(nsp, "order");
	r->line = ShopPlainTable(nsp, "order_line");
	r->view = ShopPlainTable(nsp, "view_event");
	r->cop = ShopPlainTable(nsp, "copurchase");
	r->nb = ShopPlainTable(nsp, "customer_neighbour");
	r->ci = ShopPlainTable(nsp, "customer_item");
	r->prod = ShopPlainTable(nsp, "product");
	if (r->order)
	{
		AttrNumber	c[2] = {ShopPlainColumn(r->order, "customer_id", INT8OID),
		ShopPlainColumn(r->order, "created_at", TIMESTAMPTZOID)};
		Oid			t[2] = {INT8OID, TIMESTAMPTZOID};

		r->ocols.customer = c[0];
		r->ocols.id = ShopPlainColumn(r->order, "order_id", UUIDOID);
		r->ocols.status = ShopPlainColumn(r->order, "status", TEXTOID);
		r->ocols.created = c[1];
		r->order_idx = ShopPlainIndex(r->order, "order_customer_idx", 2, c, t, cust_desc, false);
	}
	if (r->line)
	{
		AttrNumber	c[1] = {ShopPlainColumn(r->line, "order_id", UUIDOID)};
		Oid			t[1] = {UUIDOID};

		r->l_product = ShopPlainColumn(r->line, "product_id", INT8OID);
		r->line_idx = ShopPlainIndex(r->line, "order_line_pkey", 1, c, t, asc1, false);
	}
	if (r->view)
	{
		AttrNumber	c[1] = {ShopPlainColumn(r->view, "customer_id", INT8OID)};
		Oid			t[1] = {INT8OID};

		r->v_product = ShopPlainColumn(r->view, "product_id", INT8OID);
		r->view_idx = ShopPlainIndex(r->view, "view_event_pkey", 1, c, t, asc1, false);
	}
	if (r->cop)
	{
		AttrNumber	c[1] = {ShopPlainColumn(r->cop, "product_id", INT8OID)};
		Oid			t[1] = {INT8OID};

		r->c_other = ShopPlainColumn(r->cop, "other_id", INT8OID);
		r->c_score = ShopPlainColumn(r->cop, "score", FLOAT4OID);
		r->cop_idx = ShopPlainIndex(r->cop, "copurchase_pkey", 1, c, t, asc1, false);
	}
	if (r->nb)
	{
		AttrNumber	c[1] = {ShopPlainColumn(r->nb, "customer_id", INT8OID)};
		Oid			t[1] = {INT8OID};

		r->n_neighbour = ShopPlainColumn(r->nb, "neighbour_id", INT8OID);
		r->n_score = ShopPlainColumn(r->nb, "score", FLOAT4OID);
		r->nb_idx = ShopPlainIndex(r->nb, "customer_neighbour_pkey", 1, c, t, asc1, false);
	}
	if (r->ci)
	{
		AttrNumber	c[1] = {ShopPlainColumn(r->ci, "customer_id", INT8OID)};
		Oid			t[1] = {INT8OID};

		r->i_product = ShopPlainColumn(r->ci, "product_id", INT8OID);
		r->i_weight = ShopPlainColumn(r->ci, "weight", FLOAT4OID);
		r->ci_idx = ShopPlainIndex(r->ci, "customer_item_pkey", 1, c, t, asc1, false);
	}
	if (r->prod)
	{
		AttrNumber	c[1] = {ShopPlainColumn(r->prod, "product_id", INT8OID)};
		Oid			t[1] = {INT8OID};
		AttrNumber	pc[2];
		Oid			pt[2] = {FLOAT4OID, INT8OID};

		r->p_id = c[0];
		r->p_status = ShopPlainColumn(r->prod, "status", TEXTOID);
		r->p_popularity = ShopPlainColumn(r->prod, "popularity", FLOAT4OID);
		pc[0] = r->p_popularity;
		pc[1] = c[0];
		r->prod_idx = ShopPlainIndex(r->prod, "product_pkey", 1, c, t, asc1, false);
		/*
		 * partial on status = 'active': read index only when that is its
		 * predicate, else every row read and its status checked again
		 */
		r->pop_idx = ShopPlainIndex(r->prod, "product_popularity_idx", 2, pc, pt, pop_desc, true);
		r->pop_index_only = r->pop_idx != NULL && r->p_status != 0 &&
			blend_pred_is_active(r->pop_idx, r->p_status);
	}
	r->ok = r->order_idx && r->ocols.id && r->ocols.status && r->ocols.created &&
		r->line_idx && r->l_product &&
		r->view_idx && r->v_product &&
		r->cop_idx && r->c_other && r->c_score &&
		r->nb_idx && r->n_neighbour && r->n_score &&
		r->ci_idx && r->i_product && r->i_weight &&
		r->prod_idx && r->pop_idx && r->p_id && r->p_status && r->p_popularity;
}

static void
blend_rels_close(BlendRels *r)
{
	Relation   *idx[] = {&r->order_idx, &r->line_idx, &r->view_idx, &r->cop_idx,
	&r->nb_idx, &r->ci_idx, &r->prod_idx, &r->pop_idx};
	Relation   *tab[] = {&r->order, &r->line, &r->view, &r->cop, &r->nb, &r->ci, &r->prod};

	for (int i = 0; i < lengthof(idx); i++)
		if (*idx[i])
			index_close(*idx[i], NoLock);
	for (int i = 0; i < lengthof(tab); i++)
		if (*tab[i])
			table_close(*tab[i], NoLock);
}

/* an index scan of rel by idx with its first column equal to v (int8 or uuid) */
static IndexScanDesc
blend_scan(Relation rel, Relation idx, Snapshot snap, Oid type, Datum v)
{
	IndexScanDesc scan = index_beginscan(rel, idx, snap, 1, 0);

	ShopIndexRescanEq(scan, type, v);
	return scan;
}

static int
cmp_bought(const void *a, const void *b)
{
	const BlendBought *x = a;
	const BlendBought *y = b;

	/* latest first, then product id */
	if (x->at != y->at)
		return x->at > y->at ? -1 : 1;
	return (x->pid > y->pid) - (x->pid < y->pid);
}

static int
cmp_entry_score(const void *a, const void *b)
{
	const BlendEntry *x = *(BlendEntry *const *) a;
	const BlendEntry *y = *(BlendEntry *const *) b;

	/* best first (float4 order as SQL's: NaN above everything), then id */
	if (float4_gt(x->score, y->score))
		return -1;
	if (float4_lt(x->score, y->score))
		return 1;
	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* sift the root of the heap h[0..n-1] down: the worst candidate on top */
static void
blend_sift(BlendEntry **h, int n, int i)
{
	for (;;)
	{
		int			l = 2 * i + 1;
		int			w = i;
		BlendEntry *t;

		if (l < n && cmp_entry_score(&h[l], &h[w]) > 0)
			w = l;
		if (l + 1 < n && cmp_entry_score(&h[l + 1], &h[w]) > 0)
			w = l + 1;
		if (w == i)
			return;
		t = h[i];
		h[i] = h[w];
		h[w] = t;
		i = w;
	}
}

/*
 * The k best of the n candidates, best first, in c[0..k-1]: a bounded
 * heap of the k best seen (the worst on top), then a sort of those k.
 * Returns min(n, k).
 */
static int
blend_top(BlendEntry **c, int n, int k)
{
	if (n > k)
	{
		for (int i = k / 2 - 1; i >= 0; i--)
			blend_sift(c, k, i);
		for (int i = k; i < n; i++)
			if (cmp_entry_score(&c[i], &c[0]) < 0)
			{
				c[0] = c[i];
				blend_sift(c, k, 0);
			}
		n = k;
	}
	qsort(c, n, sizeof(BlendEntry *), cmp_entry_score);
	return n;
}

/* the value of a float setting as current_setting(name)::float8 reads it */
static double
blend_setting(const char *name)
{
	const char *s = GetConfigOption(name, false, false);

	return DatumGetFloat8(DirectFunctionCall1(float8in, CStringGetDatum(s)));
}

/* fill: trending below the blend, as the SQL body's fill statement */
static ShopStmt st_blend_fill = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT t.product_id, (t.popularity * 0.001)::real"
	"  FROM (SELECT p.product_id, p.popularity"
	"          FROM shop.product p"
	"         WHERE p.status = 'active' AND p.popularity > 0"
	"           AND p.product_id <> ALL ($1)"
	"           AND NOT EXISTS (SELECT 1 FROM shop.\"order\" o"
	"                             JOIN shop.order_line l ON l.order_id = o.order_id"
	"                            WHERE o.customer_id = $2"
	"                              AND l.product_id = p.product_id AND shop._counted(o.status)"
	"                              AND ($3::timestamptz IS NULL OR o.created_at < $3))"
	"           AND NOT EXISTS (SELECT 1 FROM shop.view_event v"
	"                            WHERE v.customer_id = $2"
	"                              AND v.product_id = p.product_id AND $3::timestamptz IS NULL)"
	"         ORDER BY p.popularity DESC, p.product_id"
	"         LIMIT $4) t"
	" ORDER BY t.popularity DESC, t.product_id",
	INT8ARRAYOID, INT8OID, TIMESTAMPTZOID, INT4OID);

/* the whole SQL body, when the C cannot read the tables as it expects */
static ShopStmt st_blend_sql = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT b.product_id, b.score FROM shop._recommend_blend_sql($1, $2, $3) b",
	INT8OID, INT4OID, TIMESTAMPTZOID);

/*
 * Where the list goes: the result's tuplestore, and (for recommend's cache,
 * when ids is not NULL) arrays of the products and scores in order.
 */
typedef struct BlendOut
{
	Tuplestorestate *ts;
	TupleDesc	desc;
	int64	   *ids;
	float4	   *scores;
	int			n;
	int			max;
} BlendOut;

static void
blend_put(BlendOut *o, int64 pid, float4 score)
{
	Datum		v[2] = {Int64GetDatum(pid), Float4GetDatum(score)};
	bool		n[2] = {false, false};

	tuplestore_putvalues(o->ts, o->desc, v, n);
	if (o->ids != NULL)
	{
		if (o->n == o->max)
		{
			o->max *= 2;
			o->ids = repalloc(o->ids, sizeof(int64) * o->max);
			o->scores = repalloc(o->scores, sizeof(float4) * o->max);
		}
		o->ids[o->n] = pid;
		o->scores[o->n++] = score;
	}
}

/* the rows of the last SPI statement (product_id, score) into the result */
static void
blend_put_spi(BlendOut *o)
{
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		n1,
					n2;
		Datum		p = ShopCol(i, 1, &n1);
		Datum		s = ShopCol(i, 2, &n2);
		Datum		v[2] = {p, s};
		bool		n[2] = {n1, n2};

		if (o->ids != NULL && !n1 && !n2)
			blend_put(o, DatumGetInt64(p), DatumGetFloat4(s));
		else
			tuplestore_putvalues(o->ts, o->desc, v, n);
	}
}

/*
 * The blended list into ts, from the relations of r (open, ok).  Returns
 * the products listed (in ids) and their number.
 */
static int
blend_compute(BlendRels *r, Snapshot snap, int64 customer, int lim,
			  bool has_before, TimestampTz before,
			  double wi, double wl, double wp,
			  BlendOut *out, int64 *ids)
{
	BlendHash	h;
	BlendBought *bought;
	int			nbought = 0,
				maxbought = 16;
	BlendSeed  *seeds;
	int			nseeds = 0,
				maxseeds;
	pg_uuid_t  *orders;
	TimestampTz *order_at;
	int			norders = 0,
				maxorders = 8;
	double		best[3] = {0, 0, 0};
	BlendEntry **cand;
	int			ncand = 0;
	int			listed = 0;
	IndexScanDesc scan;
	TupleTableSlot *slot;

	blend_hash_init(&h, 1024);

	/* bought: the customer's counted orders, then their lines */
	orders = palloc(sizeof(pg_uuid_t) * maxorders);
	order_at = palloc(sizeof(TimestampTz) * maxorders);
	slot = table_slot_create(r->order, NULL);
	scan = index_beginscan(r->order, r->order_idx, snap, 1, 0);
	norders = ShopCountedOrders(scan, slot, &r->ocols, customer, has_before ? &before : NULL,
								&orders, &order_at, &maxorders);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);

	bought = palloc(sizeof(BlendBought) * maxbought);
	slot = table_slot_create(r->line, NULL);
	scan = index_beginscan(r->line, r->line_idx, snap, 1, 0);
	for (int i = 0; i < norders; i++)
	{
		ShopIndexRescanEq(scan, UUIDOID, UUIDPGetDatum(&orders[i]));
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;
			Datum		p = slot_getattr(slot, r->l_product, &isnull);
			BlendEntry *e;

			if (isnull)
				continue;
			e = blend_hash_get(&h, DatumGetInt64(p));
			if (e->bought < 0)
			{
				/* first line of this product: a new bought entry */
				e->excluded = true;
				if (nbought == maxbought)
				{
					maxbought *= 2;
					bought = repalloc(bought, sizeof(BlendBought) * maxbought);
				}
				e->bought = nbought;
				bought[nbought].pid = DatumGetInt64(p);
				bought[nbought++].at = order_at[i];
			}
			else if (order_at[i] > bought[e->bought].at)
				bought[e->bought].at = order_at[i];	/* its latest order */
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);

	/* seeds: the latest bought, then the views */
	qsort(bought, nbought, sizeof(BlendBought), cmp_bought);
	maxseeds = Min(nbought, BLEND_SEEDS_BOUGHT) + 16;
	seeds = palloc(sizeof(BlendSeed) * maxseeds);
	for (int i = 0; i < nbought && i < BLEND_SEEDS_BOUGHT; i++)
	{
		blend_hash_get(&h, bought[i].pid)->seed = true;
		seeds[nseeds].pid = bought[i].pid;
		seeds[nseeds++].w = 1.0;
	}
	if (!has_before)
	{
		slot = table_slot_create(r->view, NULL);
		scan = blend_scan(r->view, r->view_idx, snap, INT8OID, Int64GetDatum(customer));
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;
			Datum		p = slot_getattr(slot, r->v_product, &isnull);
			BlendEntry *e;

			if (isnull)
				continue;
			e = blend_hash_get(&h, DatumGetInt64(p));
			e->excluded = true;
			if (e->seed)
				continue;		/* max(w): a bought seed keeps 1 */
			e->seed = true;
			if (nseeds == maxseeds)
			{
				maxseeds *= 2;
				seeds = repalloc(seeds, sizeof(BlendSeed) * maxseeds);
			}
			seeds[nseeds].pid = DatumGetInt64(p);
			seeds[nseeds++].w = 0.5;
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
	}

	/* item-to-item: the seeds' co-purchase lists */
	if (wi > 0)
	{
		slot = table_slot_create(r->cop, NULL);
		scan = index_beginscan(r->cop, r->cop_idx, snap, 1, 0);
		for (int i = 0; i < nseeds; i++)
		{
			ShopIndexRescanEq(scan, INT8OID, Int64GetDatum(seeds[i].pid));
			while (index_getnext_slot(scan, ForwardScanDirection, slot))
			{
				bool		n1,
							n2;
				Datum		o = slot_getattr(slot, r->c_other, &n1);
				Datum		s = slot_getattr(slot, r->c_score, &n2);

				if (n1 || n2 || !float4_gt(DatumGetFloat4(s), 0))
					continue;
				/* real * numeric: float48mul, summed in float8 */
				blend_hash_get(&h, DatumGetInt64(o))->sc[0] +=
					(double) DatumGetFloat4(s) * seeds[i].w;
			}
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
	}

	/* customers like you: the neighbours' profiles */
	if (wl > 0)
	{
		int64	   *nbs = NULL;
		double	   *nbsc = NULL;
		int			nnb = 0,
					maxnb = 32;

		nbs = palloc(sizeof(int64) * maxnb);
		nbsc = palloc(sizeof(double) * maxnb);
		slot = table_slot_create(r->nb, NULL);
		scan = blend_scan(r->nb, r->nb_idx, snap, INT8OID, Int64GetDatum(customer));
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		n1,
						n2;
			Datum		o = slot_getattr(slot, r->n_neighbour, &n1);
			Datum		s = slot_getattr(slot, r->n_score, &n2);

			if (n1 || n2)
				continue;
			if (nnb == maxnb)
			{
				maxnb *= 2;
				nbs = repalloc(nbs, sizeof(int64) * maxnb);
				nbsc = repalloc(nbsc, sizeof(double) * maxnb);
			}
			nbs[nnb] = DatumGetInt64(o);
			nbsc[nnb++] = (double) DatumGetFloat4(s);
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);

		slot = table_slot_create(r->ci, NULL);
		scan = index_beginscan(r->ci, r->ci_idx, snap, 1, 0);
		for (int i = 0; i < nnb; i++)
		{
			ShopIndexRescanEq(scan, INT8OID, Int64GetDatum(nbs[i]));
			while (index_getnext_slot(scan, ForwardScanDirection, slot))
			{
				bool		n1,
							n2;
				Datum		p = slot_getattr(slot, r->i_product, &n1);
				Datum		w = slot_getattr(slot, r->i_weight, &n2);

				if (n1 || n2)
					continue;
				/* nb.score::float8 * ci.weight: float84mul */
				blend_hash_get(&h, DatumGetInt64(p))->sc[1] +=
					nbsc[i] * (double) DatumGetFloat4(w);
			}
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
	}

	/*
	 * popularity: the first 3 * lim + 60 active products, read index only
	 * (rec8): the index holds both values read (popularity, product_id)
	 * and is partial on status = 'active', which no HOT update can change,
	 * so its entries of visible rows are of active products with those
	 * values; the heap is read only to see whether a row is visible, when
	 * the visibility map does not say its page is all visible (as an
	 * index-only scan does).
	 */
	if (wp > 0)
	{
		int			want = 3 * lim + 60;
		int			got = 0;
		Buffer		vmbuf = InvalidBuffer;
		ItemPointer tid;

		slot = table_slot_create(r->prod, NULL);
		scan = index_beginscan(r->prod, r->pop_idx, snap, 0, 0);
		scan->xs_want_itup = true;
		index_rescan(scan, NULL, 0, NULL, 0);
		while (got < want && r->pop_index_only &&
			   (tid = index_getnext_tid(scan, ForwardScanDirection)) != NULL)
		{
			bool		n1,
						n2;
			Datum		pop,
						p;

			if (!VM_ALL_VISIBLE(r->prod, ItemPointerGetBlockNumber(tid), &vmbuf))
			{
				if (!index_fetch_heap(scan, slot))
					continue;	/* not visible to snap */
				ExecClearTuple(slot);
			}
			pop = index_getattr(scan->xs_itup, 1, scan->xs_itupdesc, &n1);
			p = index_getattr(scan->xs_itup, 2, scan->xs_itupdesc, &n2);
			if (n1 || n2)
				continue;
			if (!float4_gt(DatumGetFloat4(pop), 0))
				break;			/* descending: none after it passes */
			blend_hash_get(&h, DatumGetInt64(p))->sc[2] = (double) DatumGetFloat4(pop);
			got++;
		}
		/* another predicate: every row read from the heap, its status checked */
		while (got < want && !r->pop_index_only &&
			   index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		n1,
						n2;
			Datum		pop = slot_getattr(slot, r->p_popularity, &n1);
			Datum		p = slot_getattr(slot, r->p_id, &n2);

			if (n1 || n2)
				continue;
			if (!float4_gt(DatumGetFloat4(pop), 0))
				break;			/* descending: none after it passes */
			if (!ShopSlotTextEq(slot, r->p_status, "active", 6))
				continue;
			blend_hash_get(&h, DatumGetInt64(p))->sc[2] = (double) DatumGetFloat4(pop);
			got++;
		}
		if (BufferIsValid(vmbuf))
			ReleaseBuffer(vmbuf);
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
	}

	/* each source's best, then the blended scores */
	for (uint32 i = 0; i < h.size; i++)
		if (h.e[i].used)
			for (int s = 0; s < 3; s++)
				if (h.e[i].sc[s] > 0 && h.e[i].sc[s] > best[s])
					best[s] = h.e[i].sc[s];
	cand = palloc(sizeof(BlendEntry *) * (h.n + 1));
	for (uint32 i = 0; i < h.size; i++)
	{
		BlendEntry *e = &h.e[i];
		double		w[3] = {wi, wl, wp};
		double		sum = 0;
		bool		any = false;

		if (!e->used || e->excluded)
			continue;
		for (int s = 0; s < 3; s++)
			if (e->sc[s] > 0)
			{
				double		part = w[s] * e->sc[s] / best[s];

				sum = any ? sum + part : part;
				any = true;
			}
		if (!any)
			continue;
		e->score = (float4) sum;
		cand[ncand++] = e;
	}
	ncand = blend_top(cand, ncand, 3 * lim + 10);

	/* of the 3 * lim + 10 best: active ones, score > 0, the first lim */
	slot = table_slot_create(r->prod, NULL);
	scan = NULL;
	for (int i = 0; i < ncand && listed < lim; i++)
	{
		bool		active = false;

		if (!float4_gt(cand[i]->score, 0))
			continue;
		if (cand[i]->sc[2] > 0)
			active = true;		/* read active by the popularity source */
		else
		{
			if (scan == NULL)
				scan = index_beginscan(r->prod, r->prod_idx, snap, 1, 0);
			ShopIndexRescanEq(scan, INT8OID, Int64GetDatum(cand[i]->pid));
			if (index_getnext_slot(scan, ForwardScanDirection, slot))
				active = ShopSlotTextEq(slot, r->p_status, "active", 6);
		}
		if (!active)
			continue;
		blend_put(out, cand[i]->pid, cand[i]->score);
		ids[listed++] = cand[i]->pid;
	}
	if (scan != NULL)
		index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return listed;
}

/*
 * The blended list of customer into out (the checks done): the C over the
 * tables when it can, the trending fill when short, the SQL body when the
 * content source is on or the tables are not as expected.  Reads under the
 * active snapshot.
 */
static void
blend_list(int64 customer, int lim, bool has_before, TimestampTz before, BlendOut *out)
{
	double		wi,
				wl,
				wc,
				wp;
	BlendRels	r;
	MemoryContext work;
	MemoryContext old;
	int64	   *ids;
	int			listed = -1;

	wi = blend_setting("shop.reco_weight_item");
	wl = blend_setting("shop.reco_weight_like");
	wc = blend_setting("shop.reco_weight_content");
	wp = blend_setting("shop.reco_weight_popular");

	work = AllocSetContextCreate(CurrentMemoryContext, "shop blend", ALLOCSET_DEFAULT_SIZES);
	ids = MemoryContextAlloc(work, sizeof(int64) * (lim + 1));
	if (!(wc > 0))
	{
		blend_rels_open(&r);
		if (r.ok)
		{
			old = MemoryContextSwitchTo(work);
			listed = blend_compute(&r, GetActiveSnapshot(), customer, lim, has_before, before,
								   wi, wl, wp, out, ids);
			MemoryContextSwitchTo(old);
		}
		blend_rels_close(&r);
	}
	if (listed < 0 || listed < lim)
	{
		Datum		args[4];
		char		nulls[4] = {' ', ' ', has_before ? ' ' : 'n', ' '};

		SPI_connect();
		args[0] = Int64GetDatum(customer);
		args[1] = Int32GetDatum(lim);
		args[2] = TimestampTzGetDatum(before);
		if (listed < 0)
		{
			/* the SQL body: the content source, or tables not as expected */
			ShopExecRead(&st_blend_sql, args, nulls);
			blend_put_spi(out);
		}
		else
		{
			args[0] = ShopInt8Array(ids, listed);
			args[1] = Int64GetDatum(customer);
			args[3] = Int32GetDatum(lim - listed);
			ShopExecRead(&st_blend_fill, args, nulls);
			blend_put_spi(out);
		}
		SPI_finish();
	}
	MemoryContextDelete(work);
}

/*
 * The checks and errors the SQL bodies made on (customer_id, lim): 22004
 * for a NULL customer, 42501 for another customer's, 22023 for a limit
 * outside 1..1000.
 */
static void
blend_args(FunctionCallInfo fcinfo, int64 *customer, int32 *lim)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument customer_id must not be null")));
	*customer = PG_GETARG_INT64(0);
	ShopAuthorizeCustomer(*customer, false);
	if (PG_ARGISNULL(1) || PG_GETARG_INT32(1) < 1 || PG_GETARG_INT32(1) > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("limit out of range"),
				 PG_ARGISNULL(1) ? errdetail("lim is NULL; it must be between 1 and 1000.") :
				 errdetail("lim is %d; it must be between 1 and 1000.", PG_GETARG_INT32(1))));
	*lim = PG_GETARG_INT32(1);
}

/*
 * shop._recommend_blend(customer_id bigint, lim int, before timestamptz)
 * RETURNS SETOF shop.scored_product: the checks and errors of the SQL
 * body (22004, 42501, 22023), then the list.
 */
Datum
shop_recommend_blend(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		customer;
	int32		lim;
	bool		has_before = !PG_ARGISNULL(2);
	TimestampTz before = has_before ? PG_GETARG_TIMESTAMPTZ(2) : 0;

	blend_args(fcinfo, &customer, &lim);

	InitMaterializedSRF(fcinfo, 0);
	{
		BlendOut	out = {rsinfo->setResult, rsinfo->setDesc, NULL, NULL, 0, 0};

		blend_list(customer, lim, has_before, before, &out);
	}
	return (Datum) 0;
}


/*
 * shop._recommend_default(customer_id bigint, lim int) RETURNS SETOF
 * shop.scored_product: recommend's list with its cache, in C (issue 14,
 * reco13).  The PL/pgSQL it replaces ran five statements around the blend
 * (the key, the probe, the blend gathered into arrays, the write, the
 * rows out); here the key and the probe are one statement, the blend is
 * computed in this call (blend_list, no set-returning call in between)
 * and gathered as it is put out, and the write is the one other
 * statement.  The same rows and cache rows:
 *
 *	 key	 the generation (recommend_cache_gen), the deactivation counter,
 *			 the md5 of the customer's counted orders' ids and their views'
 *			 count and newest time, read before the list is computed (a
 *			 product deactivated after this read moves the counter past the
 *			 value stored with the list: see shop.product_deactivation);
 *	 served	 the cached list when every part of the key and the limit and
 *			 weights are those stored;
 *	 else	 the blend, under a snapshot taken after the key's, and the list
 *			 stored with the key unless the transaction is read-only.
 *
 * On a hot standby (no unlogged table) the blend alone.
 */
PG_FUNCTION_INFO_V1(shop_recommend_default);

static ShopStmt st_rd_key = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT s.last_value, coalesce(d.n, 0), o.k, v.n, v.at, r.ids, r.scores"
	"  FROM shop.recommend_cache_gen s"
	"  LEFT JOIN shop.product_deactivation d ON true"
	" CROSS JOIN (SELECT md5(coalesce(string_agg(x.order_id::text, ',' ORDER BY x.order_id), ''))::uuid AS k"
	"               FROM shop.\"order\" x WHERE x.customer_id = $1 AND shop._counted(x.status)) o"
	" CROSS JOIN (SELECT count(*) AS n, max(y.viewed_at) AS at"
	"               FROM shop.view_event y WHERE y.customer_id = $1) v"
	"  LEFT JOIN shop.recommend_cache r"
	"         ON r.customer_id = $1 AND r.gen = s.last_value AND r.deact = coalesce(d.n, 0)"
	"        AND r.lim = $2 AND r.weights = $3 AND r.orders_key = o.k AND r.views_n = v.n"
	"        AND r.views_at IS NOT DISTINCT FROM v.at",
	INT8OID, INT4OID, FLOAT8ARRAYOID);

static ShopStmt st_rd_store = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.recommend_cache AS r"
	"       (customer_id, gen, deact, lim, weights, orders_key, views_n, views_at, ids, scores)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
	" ON CONFLICT ON CONSTRAINT recommend_cache_pkey DO UPDATE"
	"    SET gen = excluded.gen, deact = excluded.deact, lim = excluded.lim, weights = excluded.weights,"
	"        orders_key = excluded.orders_key, views_n = excluded.views_n, views_at = excluded.views_at,"
	"        ids = excluded.ids, scores = excluded.scores",
	INT8OID, INT8OID, INT8OID, INT4OID, FLOAT8ARRAYOID, UUIDOID, INT8OID, TIMESTAMPTZOID,
	INT8ARRAYOID, FLOAT4ARRAYOID);

/*
 * The cache's key and probe read in C (rec9): the same values as st_rd_key
 * under one snapshot taken for them (as the statement's own), without the
 * planner's executor and its md5 of a string_agg.  false when a relation
 * is not as shop made it or not readable by the caller (then st_rd_key
 * runs, and says why).
 */
typedef struct RdKey
{
	int64		gen;
	int64		deact;
	pg_uuid_t	okey;
	int64		views_n;
	bool		at_null;
	TimestampTz at;
	bool		served;
} RdKey;

static int
cmp_uuid(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(pg_uuid_t));
}

/* a float8[] equal (array_eq) to the n values w: one dimension from 1, no NULL */
static bool
rd_weights_eq(Datum d, const double *w, int n)
{
	ArrayType  *a = DatumGetArrayTypeP(d);
	bool		eq;

	eq = ARR_NDIM(a) == 1 && ARR_LBOUND(a)[0] == 1 && ARR_DIMS(a)[0] == n &&
		!ARR_HASNULL(a) && ARR_ELEMTYPE(a) == FLOAT8OID;
	for (int i = 0; eq && i < n; i++)
		eq = float8_eq(((float8 *) ARR_DATA_PTR(a))[i], w[i]);
	return eq;
}

/* the cached list of the slot (ids, scores) into the result, as unnest(ids, scores) */
static void
rd_serve(TupleTableSlot *slot, AttrNumber a_ids, AttrNumber a_scores, BlendOut *out)
{
	bool		n1,
				n2;
	Datum		ids = slot_getattr(slot, a_ids, &n1);
	Datum		scores = slot_getattr(slot, a_scores, &n2);
	Datum	   *id = NULL,
			   *sc = NULL;
	bool	   *idn = NULL,
			   *scn = NULL;
	int			nid = 0,
				nsc = 0;

	if (!n1)
		deconstruct_array(DatumGetArrayTypeP(ids), INT8OID, 8, FLOAT8PASSBYVAL,
						  TYPALIGN_DOUBLE, &id, &idn, &nid);
	if (!n2)
		deconstruct_array(DatumGetArrayTypeP(scores), FLOAT4OID, 4, true,
						  TYPALIGN_INT, &sc, &scn, &nsc);
	for (int i = 0; i < Max(nid, nsc); i++)
	{
		Datum		v[2] = {i < nid ? id[i] : (Datum) 0, i < nsc ? sc[i] : (Datum) 0};
		bool		nl[2] = {i >= nid || idn[i], i >= nsc || scn[i]};

		tuplestore_putvalues(out->ts, out->desc, v, nl);
	}
}

/* the one value of column att of the only row of rel (0 rows: *found false); false if more rows */
static bool
rd_only_row(Relation rel, AttrNumber att, Snapshot snap, int64 *v, bool *found)
{
	TableScanDesc scan = table_beginscan(rel, snap, 0, NULL);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	int			n = 0;
	bool		isnull = true;

	*found = false;
	while (n < 2 && table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		Datum		d = slot_getattr(slot, att, &isnull);

		if (!isnull)
			*v = DatumGetInt64(d);
		n++;
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	*found = n == 1 && !isnull;
	return n <= 1 && (n == 0 || !isnull);
}

static bool
rd_key_read(int64 customer, int32 lim, const double *w, RdKey *k, BlendOut *out)
{
	Oid			nsp = get_namespace_oid("shop", false);
	Oid			seqid = get_relname_relid("recommend_cache_gen", nsp);
	Relation	seq = NULL,
				deact,
				order,
				order_idx = NULL,
				view,
				view_idx = NULL,
				cache,
				cache_idx = NULL;
	AttrNumber	d_n,
				c_cust,
				c_gen,
				c_deact,
				c_lim,
				c_w,
				c_okey,
				c_vn,
				c_vat,
				c_ids,
				c_scores,
				v_cust,
				v_at;
	ShopOrderCols ocols;
	bool		ok;
	static const bool asc1[] = {false};
	static const bool cust_desc[] = {false, true};

	if (OidIsValid(seqid) && get_rel_relkind(seqid) == RELKIND_SEQUENCE &&
		pg_class_aclcheck(seqid, GetUserId(), ACL_SELECT) == ACLCHECK_OK)
		seq = table_open(seqid, AccessShareLock);
	deact = ShopPlainTable(nsp, "product_deactivation");
	order = ShopPlainTable(nsp, "order");
	view = ShopPlainTable(nsp, "view_event");
	cache = ShopPlainTable(nsp, "recommend_cache");
	d_n = ShopPlainColumn(deact, "n", INT8OID);
	ocols.customer = ShopPlainColumn(order, "customer_id", INT8OID);
	ocols.id = ShopPlainColumn(order, "order_id", UUIDOID);
	ocols.status = ShopPlainColumn(order, "status", TEXTOID);
	ocols.created = ShopPlainColumn(order, "created_at", TIMESTAMPTZOID);
	v_cust = ShopPlainColumn(view, "customer_id", INT8OID);
	v_at = ShopPlainColumn(view, "viewed_at", TIMESTAMPTZOID);
	c_cust = ShopPlainColumn(cache, "customer_id", INT8OID);
	c_gen = ShopPlainColumn(cache, "gen", INT8OID);
	c_deact = ShopPlainColumn(cache, "deact", INT8OID);
	c_lim = ShopPlainColumn(cache, "lim", INT4OID);
	c_w = ShopPlainColumn(cache, "weights", FLOAT8ARRAYOID);
	c_okey = ShopPlainColumn(cache, "orders_key", UUIDOID);
	c_vn = ShopPlainColumn(cache, "views_n", INT8OID);
	c_vat = ShopPlainColumn(cache, "views_at", TIMESTAMPTZOID);
	c_ids = ShopPlainColumn(cache, "ids", INT8ARRAYOID);
	c_scores = ShopPlainColumn(cache, "scores", FLOAT4ARRAYOID);
	{
		AttrNumber	c[2] = {ocols.customer, ocols.created};
		Oid			t[2] = {INT8OID, TIMESTAMPTZOID};

		order_idx = ShopPlainIndex(order, "order_customer_idx", 2, c, t, cust_desc, false);
	}
	{
		Oid			t[1] = {INT8OID};

		view_idx = ShopPlainIndex(view, "view_event_pkey", 1, &v_cust, t, asc1, false);
		cache_idx = ShopPlainIndex(cache, "recommend_cache_pkey", 1, &c_cust, t, asc1, false);
	}
	ok = seq && deact && d_n && order_idx && ocols.id && ocols.status && ocols.created &&
		view_idx && v_at && cache_idx && c_gen && c_deact && c_lim && c_w && c_okey &&
		c_vn && c_vat && c_ids && c_scores;
	if (ok)
	{
		Snapshot	snap;
		bool		found;
		IndexScanDesc scan;
		TupleTableSlot *slot;
		pg_uuid_t  *oids;
		TimestampTz *oat;
		int			max = 8,
					n;

		PushActiveSnapshot(GetTransactionSnapshot());
		snap = GetActiveSnapshot();

		/* s.last_value, coalesce(d.n, 0) */
		if (!rd_only_row(seq, 1, snap, &k->gen, &found) || !found)
			ok = false;
		if (ok && !rd_only_row(deact, d_n, snap, &k->deact, &found))
			ok = false;
		else if (ok && !found)
			k->deact = 0;

		/* o.k: md5 of the counted orders' ids as text, by id, comma separated */
		if (ok)
		{
			char	   *buf;
			int			len = 0;
			const char *err;

			oids = palloc(sizeof(pg_uuid_t) * max);
			oat = palloc(sizeof(TimestampTz) * max);
			slot = table_slot_create(order, NULL);
			scan = index_beginscan(order, order_idx, snap, 1, 0);
			n = ShopCountedOrders(scan, slot, &ocols, customer, NULL, &oids, &oat, &max);
			index_endscan(scan);
			ExecDropSingleTupleTableSlot(slot);
			qsort(oids, n, sizeof(pg_uuid_t), cmp_uuid);
			buf = palloc(n * 37 + 1);
			for (int i = 0; i < n; i++)
			{
				static const char hex[] = "0123456789abcdef";

				if (i > 0)
					buf[len++] = ',';
				for (int j = 0; j < UUID_LEN; j++)
				{
					if (j == 4 || j == 6 || j == 8 || j == 10)
						buf[len++] = '-';
					buf[len++] = hex[oids[i].data[j] >> 4];
					buf[len++] = hex[oids[i].data[j] & 0xF];
				}
			}
			if (!pg_md5_binary(buf, len, k->okey.data, &err))
				elog(ERROR, "could not compute MD5 hash: %s", err);
		}

		/* v.n, v.at: the customer's views, how many and the newest */
		if (ok)
		{
			k->views_n = 0;
			k->at_null = true;
			slot = table_slot_create(view, NULL);
			scan = index_beginscan(view, view_idx, snap, 1, 0);
			ShopIndexRescanEq(scan, INT8OID, Int64GetDatum(customer));
			while (index_getnext_slot(scan, ForwardScanDirection, slot))
			{
				bool		isnull;
				Datum		c = slot_getattr(slot, v_cust, &isnull);
				Datum		at;

				if (isnull || DatumGetInt64(c) != customer)
					continue;
				k->views_n++;
				at = slot_getattr(slot, v_at, &isnull);
				if (!isnull && (k->at_null || timestamp_cmp_internal(DatumGetTimestampTz(at), k->at) > 0))
				{
					k->at = DatumGetTimestampTz(at);
					k->at_null = false;
				}
			}
			index_endscan(scan);
			ExecDropSingleTupleTableSlot(slot);
		}

		/* the probe: the customer's row when every part of the key is its */
		if (ok)
		{
			k->served = false;
			slot = table_slot_create(cache, NULL);
			scan = index_beginscan(cache, cache_idx, snap, 1, 0);
			ShopIndexRescanEq(scan, INT8OID, Int64GetDatum(customer));
			while (!k->served && index_getnext_slot(scan, ForwardScanDirection, slot))
			{
				bool		nl[9];
				Datum		d[9];
				AttrNumber	a[9] = {c_cust, c_gen, c_deact, c_lim, c_w, c_okey, c_vn, c_vat, c_ids};

				for (int i = 0; i < 9; i++)
					d[i] = slot_getattr(slot, a[i], &nl[i]);
				if (nl[0] || DatumGetInt64(d[0]) != customer ||
					nl[1] || DatumGetInt64(d[1]) != k->gen ||
					nl[2] || DatumGetInt64(d[2]) != k->deact ||
					nl[3] || DatumGetInt32(d[3]) != lim ||
					nl[4] || !rd_weights_eq(d[4], w, 4) ||
					nl[5] || memcmp(DatumGetUUIDP(d[5])->data, k->okey.data, UUID_LEN) != 0 ||
					nl[6] || DatumGetInt64(d[6]) != k->views_n ||
					nl[7] != k->at_null ||
					(!nl[7] && DatumGetTimestampTz(d[7]) != k->at) ||
					nl[8])
					continue;
				rd_serve(slot, c_ids, c_scores, out);
				k->served = true;
			}
			index_endscan(scan);
			ExecDropSingleTupleTableSlot(slot);
		}
		PopActiveSnapshot();
	}
	{
		Relation   *idx[] = {&order_idx, &view_idx, &cache_idx};
		Relation   *tab[] = {&seq, &deact, &order, &view, &cache};

		for (int i = 0; i < lengthof(idx); i++)
			if (*idx[i])
				index_close(*idx[i], NoLock);
		for (int i = 0; i < lengthof(tab); i++)
			if (*tab[i])
				table_close(*tab[i], NoLock);
	}
	return ok;
}

Datum
shop_recommend_default(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		customer;
	int32		lim;
	double		w[4];
	BlendOut	out;
	RdKey		key;
	bool		c_key;

	blend_args(fcinfo, &customer, &lim);
	InitMaterializedSRF(fcinfo, 0);
	out.ts = rsinfo->setResult;
	out.desc = rsinfo->setDesc;
	out.ids = NULL;
	out.scores = NULL;
	out.n = out.max = 0;

	if (RecoveryInProgress())
	{
		/* a hot standby cannot read an unlogged table: no cache there */
		PushActiveSnapshot(GetTransactionSnapshot());
		blend_list(customer, lim, false, 0, &out);
		PopActiveSnapshot();
		return (Datum) 0;
	}
	w[0] = blend_setting("shop.reco_weight_item");
	w[1] = blend_setting("shop.reco_weight_like");
	w[2] = blend_setting("shop.reco_weight_content");
	w[3] = blend_setting("shop.reco_weight_popular");

	c_key = rd_key_read(customer, lim, w, &key, &out);
	if (c_key && key.served)
		return (Datum) 0;
	SPI_connect();
	{
		Datum		args[10];
		char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
		bool		isnull;
		Datum		ids,
					scores;
		int64		gen,
					deact,
					views_n;
		pg_uuid_t	okey;
		bool		at_null;
		Datum		at;

		if (c_key)
		{
			gen = key.gen;
			deact = key.deact;
			okey = key.okey;
			views_n = key.views_n;
			at_null = key.at_null;
			at = TimestampTzGetDatum(key.at);
			goto compute;
		}
		args[0] = Int64GetDatum(customer);
		args[1] = Int32GetDatum(lim);
		args[2] = ShopFloat8Array(w, 4);
		ShopExec(&st_rd_key, args, NULL, 0);
		if (SPI_processed != 1)
			elog(ERROR, "shop._recommend_default: the cache's key read %d rows", (int) SPI_processed);
		ids = ShopCol(0, 6, &isnull);
		if (!isnull)
		{
			/* served */
			Datum	   *id,
					   *sc;
			bool	   *idn,
					   *scn;
			int			nid,
						nsc;

			scores = ShopCol(0, 7, &isnull);
			deconstruct_array(DatumGetArrayTypeP(ids), INT8OID, 8, FLOAT8PASSBYVAL,
							  TYPALIGN_DOUBLE, &id, &idn, &nid);
			if (isnull)
				nsc = 0, sc = NULL, scn = NULL;
			else
				deconstruct_array(DatumGetArrayTypeP(scores), FLOAT4OID, 4, true,
								  TYPALIGN_INT, &sc, &scn, &nsc);
			/* unnest(ids, scores): the longer's length, NULLs after the shorter */
			for (int i = 0; i < Max(nid, nsc); i++)
			{
				Datum		v[2] = {i < nid ? id[i] : (Datum) 0, i < nsc ? sc[i] : (Datum) 0};
				bool		nl[2] = {i >= nid || idn[i], i >= nsc || scn[i]};

				tuplestore_putvalues(out.ts, out.desc, v, nl);
			}
			SPI_finish();
			return (Datum) 0;
		}
		gen = ShopColInt(0, 1, 0);
		deact = ShopColInt(0, 2, 0);
		memcpy(&okey, DatumGetUUIDP(ShopCol(0, 3, &isnull)), sizeof(pg_uuid_t));
		views_n = ShopColInt(0, 4, 0);
		at = ShopCol(0, 5, &at_null);

		/* the list, under a snapshot taken after the key's */
compute:
		out.max = lim + 1;
		out.ids = palloc(sizeof(int64) * out.max);
		out.scores = palloc(sizeof(float4) * out.max);
		PushActiveSnapshot(GetTransactionSnapshot());
		blend_list(customer, lim, false, 0, &out);
		PopActiveSnapshot();

		if (!XactReadOnly)
		{
			args[0] = Int64GetDatum(customer);
			args[1] = Int64GetDatum(gen);
			args[2] = Int64GetDatum(deact);
			args[3] = Int32GetDatum(lim);
			args[4] = ShopFloat8Array(w, 4);
			args[5] = UUIDPGetDatum(&okey);
			args[6] = Int64GetDatum(views_n);
			args[7] = at;
			nulls[7] = at_null ? 'n' : ' ';
			args[8] = ShopInt8Array(out.ids, out.n);
			args[9] = ShopFloat4Array(out.scores, out.n);
			ShopExec(&st_rd_store, args, nulls, 0);
		}
	}
	SPI_finish();
	return (Datum) 0;
}
