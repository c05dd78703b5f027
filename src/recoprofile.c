/*
 * recoprofile.c: the refresh's new customer profiles read through the
 * indexes directly (shop._like_profile_rows)
 *
 * A refresh recomputes the profile (shop.customer_item rows) of every
 * customer it takes from the queue: 7,362 customers after 10,000 orders
 * at 100,000 products.  shop._like_refresh computed them by the SQL of
 * shop._like_profile, 2,000 customers a statement: a bitmap scan of the
 * customers' orders, an index scan of order_line per order, the views,
 * then a sort, a group, an incremental sort and two window functions, and
 * array_agg(... ORDER BY ...) of the rows four times: about 11% of the
 * refresh's time (bench/results/2026-12-07-ref6.md).
 *
 * Here the same rows are read with the caller's snapshot, customer by
 * customer, through the indexes that statement uses (order_customer_idx,
 * order_line_pkey, view_event_pkey, one scan of each rescanned per key),
 * and each customer's profile is computed as the SQL does:
 *	 - the events: each line of a counted order of the customer
 *	   (shop._counted: paid, fulfilling, shipped, delivered), w 1.0 at the
 *	   order's created_at, and each view, w 0.3 at viewed_at;
 *	 - per product the largest w and the latest time;
 *	 - the products ranked by that time, latest first, then product id;
 *	   the first shop.reco_like_items kept;
 *	 - w / sqrt(sum of w * w), the sum added in that rank order (the order
 *	   in which the window function of the SQL adds it: its input is
 *	   sorted so), as float8, then cast to real; h is
 *	   hashint8extended(customer_id, product_id).
 * The rows come back as four arrays in (customer_id, product_id) order,
 * what _like_refresh built from the SQL with array_agg.  sql/
 * recommend_refresh_write.sql compares them with shop._like_profile's.
 *
 * NULL (nothing read) when a table or index is not as shop made it, or
 * not plainly readable by the current user (privileges, row level
 * security): the caller then runs the SQL.
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "relread.h"
#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_like_profile_rows);

#define ST_SORT prof_sort_int64
#define ST_ELEMENT_TYPE int64
#define ST_COMPARE(a, b) (*(a) < *(b) ? -1 : (*(a) > *(b) ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * The valid, non-partial btree index name of rel whose first key column
 * is col (of type type, ascending); NULL otherwise.
 */
static Relation
prof_index(Relation rel, const char *name, AttrNumber col, Oid type)
{
	static const bool asc[] = {false};

	return ShopPlainIndex(rel, name, 1, &col, &type, asc, false);
}

static void
prof_add(LikeEvent **ev, int *n, int *cap, int64 p, double w, TimestampTz at)
{
	if (*n == *cap)
	{
		*cap *= 2;
		*ev = repalloc_huge(*ev, sizeof(LikeEvent) * *cap);
	}
	(*ev)[*n].product_id = p;
	(*ev)[*n].w = w;
	(*ev)[*n].at = at;
	(*n)++;
}

/* output rows, in (customer, product) order */
typedef struct ProfOut
{
	int64	   *c;
	int64	   *p;
	float4	   *w;
	int64	   *h;
	int64		n;
	int64		cap;
} ProfOut;

static void
prof_out_add(ProfOut *o, int64 c, int64 p, float4 w, int64 h)
{
	if (o->n == o->cap)
	{
		o->cap *= 2;
		o->c = repalloc_huge(o->c, sizeof(int64) * o->cap);
		o->p = repalloc_huge(o->p, sizeof(int64) * o->cap);
		o->w = repalloc_huge(o->w, sizeof(float4) * o->cap);
		o->h = repalloc_huge(o->h, sizeof(int64) * o->cap);
	}
	o->c[o->n] = c;
	o->p[o->n] = p;
	o->w[o->n] = w;
	o->h[o->n] = h;
	o->n++;
}

/* one customer's events (ev[0..n), reordered) into profile rows */
static void
prof_customer(ProfOut *o, int64 c, LikeEvent *ev, int n, int cap)
{
	double		sum;
	int			m = like_profile_events(ev, n, cap, &sum);

	for (int i = 0; i < m; i++)
		prof_out_add(o, c, ev[i].product_id, (float4) (ev[i].w / sum),
					 like_profile_hash(c, ev[i].product_id));
}

/*
 * shop._like_profile_rows(cs bigint[], OUT c bigint[], OUT p bigint[],
 *						   OUT w real[], OUT h bigint[])
 */
Datum
shop_like_profile_rows(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	Oid			nsp;
	Relation	ord,
				line,
				view,
				ord_idx = NULL,
				line_idx = NULL,
				view_idx = NULL;
	ShopOrderCols ocols;		/* shop."order"'s columns */
	AttrNumber	l_order,
				l_product,
				v_cust,
				v_product,
				v_at;
	bool		ok;
	int64	   *cs;
	int			ncs;
	Datum	   *elems;
	bool	   *nulls;
	Snapshot	snap = GetActiveSnapshot();
	IndexScanDesc oscan,
				lscan,
				vscan;
	TupleTableSlot *oslot,
			   *lslot,
			   *vslot;
	pg_uuid_t  *orders;
	TimestampTz *order_at;
	int			maxorders = 64;
	LikeEvent  *ev;
	int			evcap = 256;
	ProfOut		out;
	int			cap = shop_reco_like_items;
	TupleDesc	tupdesc;
	Datum		vals[4];
	bool		rnulls[4] = {false, false, false, false};
	Datum	   *d;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "shop: _like_profile_rows must return a record");

	nsp = get_namespace_oid("shop", false);
	ord = ShopPlainTable(nsp, "order");
	line = ShopPlainTable(nsp, "order_line");
	view = ShopPlainTable(nsp, "view_event");
	ocols.customer = ShopPlainColumn(ord, "customer_id", INT8OID);
	ocols.id = ShopPlainColumn(ord, "order_id", UUIDOID);
	ocols.status = ShopPlainColumn(ord, "status", TEXTOID);
	ocols.created = ShopPlainColumn(ord, "created_at", TIMESTAMPTZOID);
	l_order = ShopPlainColumn(line, "order_id", UUIDOID);
	l_product = ShopPlainColumn(line, "product_id", INT8OID);
	v_cust = ShopPlainColumn(view, "customer_id", INT8OID);
	v_product = ShopPlainColumn(view, "product_id", INT8OID);
	v_at = ShopPlainColumn(view, "viewed_at", TIMESTAMPTZOID);
	ord_idx = prof_index(ord, "order_customer_idx", ocols.customer, INT8OID);
	line_idx = prof_index(line, "order_line_pkey", l_order, UUIDOID);
	view_idx = prof_index(view, "view_event_pkey", v_cust, INT8OID);
	ok = ord_idx && line_idx && view_idx && ocols.id && ocols.status && ocols.created &&
		l_product && v_product && v_at;
	if (!ok)
	{
		Relation	idx[] = {ord_idx, line_idx, view_idx};
		Relation	tab[] = {ord, line, view};

		for (int i = 0; i < lengthof(idx); i++)
			if (idx[i])
				index_close(idx[i], AccessShareLock);
		for (int i = 0; i < lengthof(tab); i++)
			if (tab[i])
				table_close(tab[i], AccessShareLock);
		PG_RETURN_NULL();
	}

	work = AllocSetContextCreate(caller, "shop like profile rows", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(work);

	/* the customers, sorted and distinct (= ANY (cs): each once) */
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), INT8OID, 8, true, TYPALIGN_DOUBLE,
					  &elems, &nulls, &ncs);
	cs = palloc(sizeof(int64) * Max(ncs, 1));
	{
		int			m = 0;

		for (int i = 0; i < ncs; i++)
			if (!nulls[i])
				cs[m++] = DatumGetInt64(elems[i]);
		ncs = m;
	}
	prof_sort_int64(cs, ncs);
	{
		int			m = 0;

		for (int i = 0; i < ncs; i++)
			if (m == 0 || cs[m - 1] != cs[i])
				cs[m++] = cs[i];
		ncs = m;
	}

	out.cap = 1024;
	out.n = 0;
	out.c = palloc(sizeof(int64) * out.cap);
	out.p = palloc(sizeof(int64) * out.cap);
	out.w = palloc(sizeof(float4) * out.cap);
	out.h = palloc(sizeof(int64) * out.cap);
	orders = palloc(sizeof(pg_uuid_t) * maxorders);
	order_at = palloc(sizeof(TimestampTz) * maxorders);
	ev = palloc(sizeof(LikeEvent) * evcap);

	oslot = table_slot_create(ord, NULL);
	lslot = table_slot_create(line, NULL);
	vslot = table_slot_create(view, NULL);
	oscan = index_beginscan(ord, ord_idx, snap, 1, 0);
	lscan = index_beginscan(line, line_idx, snap, 1, 0);
	vscan = index_beginscan(view, view_idx, snap, 1, 0);
	for (int i = 0; i < ncs; i++)
	{
		int64		c = cs[i];
		int			norders;
		int			nev = 0;

		CHECK_FOR_INTERRUPTS();
		/* the customer's counted orders */
		norders = ShopCountedOrders(oscan, oslot, &ocols, c, NULL, &orders, &order_at, &maxorders);
		/* their lines */
		for (int k = 0; k < norders; k++)
		{
			ShopIndexRescanEq(lscan, UUIDOID, UUIDPGetDatum(&orders[k]));
			while (index_getnext_slot(lscan, ForwardScanDirection, lslot))
			{
				bool		n1;
				Datum		p = slot_getattr(lslot, l_product, &n1);

				if (n1)
					continue;	/* (NOT NULL) */
				prof_add(&ev, &nev, &evcap, DatumGetInt64(p), 1.0, order_at[k]);
			}
		}
		/* the views */
		ShopIndexRescanEq(vscan, INT8OID, Int64GetDatum(c));
		while (index_getnext_slot(vscan, ForwardScanDirection, vslot))
		{
			bool		n1,
						n2,
						n3;
			Datum		vc = slot_getattr(vslot, v_cust, &n1);
			Datum		p = slot_getattr(vslot, v_product, &n2);
			Datum		at = slot_getattr(vslot, v_at, &n3);

			if (n1 || DatumGetInt64(vc) != c || n2 || n3)
				continue;		/* (NOT NULL) */
			prof_add(&ev, &nev, &evcap, DatumGetInt64(p), 0.3, DatumGetTimestampTz(at));
		}
		prof_customer(&out, c, ev, nev, cap);
	}
	index_endscan(oscan);
	index_endscan(lscan);
	index_endscan(vscan);
	ExecDropSingleTupleTableSlot(oslot);
	ExecDropSingleTupleTableSlot(lslot);
	ExecDropSingleTupleTableSlot(vslot);
	index_close(ord_idx, AccessShareLock);
	index_close(line_idx, AccessShareLock);
	index_close(view_idx, AccessShareLock);
	table_close(ord, AccessShareLock);
	table_close(line, AccessShareLock);
	table_close(view, AccessShareLock);

	/* the four arrays, in the caller's context */
	MemoryContextSwitchTo(caller);
	d = palloc(sizeof(Datum) * Max(out.n, 1));
	for (int64 i = 0; i < out.n; i++)
		d[i] = Int64GetDatum(out.c[i]);
	vals[0] = PointerGetDatum(construct_array(d, out.n, INT8OID, 8, true, TYPALIGN_DOUBLE));
	for (int64 i = 0; i < out.n; i++)
		d[i] = Int64GetDatum(out.p[i]);
	vals[1] = PointerGetDatum(construct_array(d, out.n, INT8OID, 8, true, TYPALIGN_DOUBLE));
	for (int64 i = 0; i < out.n; i++)
		d[i] = Float4GetDatum(out.w[i]);
	vals[2] = PointerGetDatum(construct_array(d, out.n, FLOAT4OID, 4, true, TYPALIGN_INT));
	for (int64 i = 0; i < out.n; i++)
		d[i] = Int64GetDatum(out.h[i]);
	vals[3] = PointerGetDatum(construct_array(d, out.n, INT8OID, 8, true, TYPALIGN_DOUBLE));
	pfree(d);
	MemoryContextDelete(work);
	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, vals, rnulls)));
}
