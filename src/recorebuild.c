/*-------------------------------------------------------------------------
 *
 * recorebuild.c
 *	  Bulk writes of shop.rebuild_recommendations: the tables a rebuild
 *	  empties and fills whole.
 *
 * A rebuild truncates shop.copurchase_order and shop.customer_item and
 * writes every row again (docs/recommendations.md, "Performance").  Rows
 * written by INSERT ... SELECT go into the heap and, one at a time, into
 * every index of the table; shop.customer_item's sample index is keyed by
 * product, so its 780,000 rows of a 100,000-product history went into it
 * in random order (5 s of a 16 s rebuild).  Here the rows go into the heap
 * only, in batches (table_multi_insert, as COPY does), and the indexes are
 * then built from the heap by one sort each (reindex_relation, as REINDEX
 * does): the rows and the indexes are those the INSERT made.
 *
 * That is safe only on a table no one else can read until the rebuild
 * commits: the loaders require that the table was emptied (TRUNCATE) in
 * the current transaction, which also holds its ACCESS EXCLUSIVE lock.
 * Each table's NOT NULL and CHECK constraints are evaluated per row, as an
 * INSERT would; unique indexes are checked by the index build; tables
 * with triggers are refused (none of these has one).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/uuid.h"

#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_rebuild_orders);
PG_FUNCTION_INFO_V1(shop_rebuild_customer_items);

/* rows per table_multi_insert call */
#define RB_BATCH	1000
/* rows per cursor fetch */
#define RB_FETCH	10000

/* a table being filled */
typedef struct RbBulk
{
	Relation	rel;
	BulkInsertState bis;
	CommandId	cid;
	TupleTableSlot *slots[RB_BATCH];
	int			n;				/* slots filled */
	int64		rows;			/* rows written */
	EState	   *estate;			/* for the CHECK constraints */
	int			nchecks;
	ExprState **checks;
} RbBulk;

/*
 * Open shop.<name>, of natts columns, to be filled.  The table must have been truncated (or
 * created) in this transaction: its new relfilenode is not yet visible to
 * anyone else, and TRUNCATE's ACCESS EXCLUSIVE lock is held until commit.
 */
static void
rb_begin(RbBulk *b, const char *name, int natts)
{
	TupleConstr *constr;

	memset(b, 0, sizeof(*b));
	b->rel = table_openrv(makeRangeVar("shop", (char *) name, -1), RowExclusiveLock);
	if (!CheckRelationLockedByMe(b->rel, AccessExclusiveLock, true) ||
		(b->rel->rd_createSubid == InvalidSubTransactionId &&
		 b->rel->rd_firstRelfilenodeSubid == InvalidSubTransactionId))
		elog(ERROR, "shop: table %s must be truncated in this transaction before a bulk fill", name);
	if (RelationGetDescr(b->rel)->natts != natts)
		elog(ERROR, "shop: table %s does not have %d columns", name, natts);
	if (b->rel->trigdesc != NULL)
		elog(ERROR, "shop: table %s has triggers: no bulk fill", name);
	b->bis = GetBulkInsertState();
	b->cid = GetCurrentCommandId(true);
	for (int i = 0; i < RB_BATCH; i++)
		b->slots[i] = table_slot_create(b->rel, NULL);
	b->estate = CreateExecutorState();
	constr = RelationGetDescr(b->rel)->constr;
	if (constr != NULL && constr->num_check > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(b->estate->es_query_cxt);

		b->nchecks = constr->num_check;
		b->checks = palloc(sizeof(ExprState *) * b->nchecks);
		for (int i = 0; i < b->nchecks; i++)
			b->checks[i] = ExecPrepareExpr((Expr *) stringToNode(constr->check[i].ccbin), b->estate);
		MemoryContextSwitchTo(old);
	}
}

static void
rb_flush(RbBulk *b)
{
	if (b->n > 0)
	{
		table_multi_insert(b->rel, b->slots, b->n, b->cid, 0, b->bis);
		b->rows += b->n;
		b->n = 0;
	}
}

/* the next empty slot: fill tts_values/tts_isnull, then rb_store */
static TupleTableSlot *
rb_slot(RbBulk *b)
{
	TupleTableSlot *slot = b->slots[b->n];

	ExecClearTuple(slot);
	return slot;
}

/*
 * The filled slot becomes a row of the batch: its NOT NULL and CHECK
 * constraints are checked as an INSERT checks them.  By-reference values
 * must stay valid until the batch is written (rb_flush, rb_end).
 */
static void
rb_store(RbBulk *b)
{
	TupleTableSlot *slot = b->slots[b->n];
	TupleDesc	desc = RelationGetDescr(b->rel);

	ExecStoreVirtualTuple(slot);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attnotnull && !att->attisdropped && slot->tts_isnull[i])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("null value in column \"%s\" of relation \"%s\" violates not-null constraint",
							NameStr(att->attname), RelationGetRelationName(b->rel))));
	}
	if (b->nchecks > 0)
	{
		ExprContext *econtext = GetPerTupleExprContext(b->estate);

		econtext->ecxt_scantuple = slot;
		for (int i = 0; i < b->nchecks; i++)
			if (!ExecCheck(b->checks[i], econtext))
				ereport(ERROR,
						(errcode(ERRCODE_CHECK_VIOLATION),
						 errmsg("new row for relation \"%s\" violates check constraint \"%s\"",
								RelationGetRelationName(b->rel),
								desc->constr->check[i].ccname)));
		ResetPerTupleExprContext(b->estate);
	}
	if (++b->n == RB_BATCH)
		rb_flush(b);
}

/*
 * Write the last batch, close the table and build its indexes from the
 * heap (unique ones checked).  Returns the rows written.
 */
static int64
rb_end(RbBulk *b)
{
	Oid			relid = RelationGetRelid(b->rel);
	ReindexParams params = {0};

	rb_flush(b);
	for (int i = 0; i < RB_BATCH; i++)
		ExecDropSingleTupleTableSlot(b->slots[i]);
	FreeBulkInsertState(b->bis);
	table_finish_bulk_insert(b->rel, 0);
	FreeExecutorState(b->estate);
	table_close(b->rel, NoLock);
	CommandCounterIncrement();
	reindex_relation(relid, REINDEX_REL_CHECK_CONSTRAINTS, &params);
	CommandCounterIncrement();
	return b->rows;
}

/* ---------------------------------------------------------------------
 * shop._rebuild_orders(buyer_cap float8) -> bigint
 * ---------------------------------------------------------------------
 */

static ShopStmt st_counted_orders = SHOP_STMT0(SHOP_PLAN_GENERIC,
	"SELECT o.order_id, o.customer_id FROM shop.\"order\" o WHERE shop._counted(o.status)");

typedef struct RbOrder
{
	pg_uuid_t	order_id;
	int64		customer_id;	/* 0: a guest order */
	int32		cust;			/* index into the customers' counts, -1 */
} RbOrder;

typedef struct RbCustomer
{
	int64		customer_id;	/* hash key */
	int32		idx;
} RbCustomer;

static int
rb_cmp_order(const void *a, const void *b)
{
	return memcmp(((const RbOrder *) a)->order_id.data, ((const RbOrder *) b)->order_id.data,
				  UUID_LEN);
}

/*
 * Fills shop.copurchase_order (truncated by the caller) with every counted
 * order: its customer and its weight, 1 for a guest order, else
 * least(1, buyer_cap / the customer's counted orders) in double precision,
 * the value the SQL of 1.0 computed.  Rows in order id order, as that SQL
 * wrote them: the co-purchase rebuild reads the baskets in this order and
 * adds their weights up in it.
 */
Datum
shop_rebuild_orders(PG_FUNCTION_ARGS)
{
	double		buyer_cap = PG_GETARG_FLOAT8(0);
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	HASHCTL		ctl;
	HTAB	   *customers;
	int64	   *counts;
	int32		ncust = 0;
	int32		cust_cap = 65536;
	RbOrder    *orders;
	int64		norders = 0;
	int64		orders_cap = 65536;
	Portal		portal;
	RbBulk		b;
	int64		rows;

	work = AllocSetContextCreate(CurrentMemoryContext, "shop rebuild orders", ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "shop: SPI_connect failed");
	MemoryContextSwitchTo(work);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(RbCustomer);
	ctl.hcxt = work;
	customers = hash_create("shop rebuild customers", 65536, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	counts = palloc_extended(sizeof(int64) * cust_cap, MCXT_ALLOC_HUGE);
	orders = palloc_extended(sizeof(RbOrder) * orders_cap, MCXT_ALLOC_HUGE);

	portal = ShopOpenCursor(&st_counted_orders, NULL, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, RB_FETCH);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			RbOrder    *o;
			Datum		c;

			if (norders == orders_cap)
			{
				orders_cap *= 2;
				orders = repalloc_huge(orders, sizeof(RbOrder) * orders_cap);
			}
			o = &orders[norders++];
			memcpy(&o->order_id, DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)), sizeof(pg_uuid_t));
			c = SPI_getbinval(tup, desc, 2, &isnull);
			o->cust = -1;
			o->customer_id = 0;
			if (!isnull)
			{
				bool		found;
				RbCustomer *e;

				o->customer_id = DatumGetInt64(c);
				e = hash_search(customers, &o->customer_id, HASH_ENTER, &found);
				if (!found)
				{
					if (ncust == cust_cap)
					{
						cust_cap *= 2;
						counts = repalloc_huge(counts, sizeof(int64) * cust_cap);
					}
					e->idx = ncust;
					counts[ncust++] = 0;
				}
				o->cust = e->idx;
				counts[e->idx]++;
			}
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);

	if (norders > 1)
		qsort(orders, norders, sizeof(RbOrder), rb_cmp_order);

	rb_begin(&b, "copurchase_order", 3);
	for (int64 i = 0; i < norders; i++)
	{
		TupleTableSlot *slot = rb_slot(&b);
		RbOrder    *o = &orders[i];

		slot->tts_values[0] = UUIDPGetDatum(&o->order_id);
		slot->tts_isnull[0] = false;
		slot->tts_values[1] = Int64GetDatum(o->customer_id);
		slot->tts_isnull[1] = (o->cust < 0);
		/* least(1.0, buyer_cap / count(*) OVER (PARTITION BY customer_id)) */
		if (o->cust < 0)
			slot->tts_values[2] = Float8GetDatum(1.0);
		else
		{
			double		w = buyer_cap / (double) counts[o->cust];

			slot->tts_values[2] = Float8GetDatum(w < 1.0 ? w : 1.0);
		}
		slot->tts_isnull[2] = false;
		rb_store(&b);
		if ((i & 65535) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	rows = rb_end(&b);

	MemoryContextSwitchTo(caller);
	SPI_finish();
	MemoryContextDelete(work);
	PG_RETURN_INT64(rows);
}

/* ---------------------------------------------------------------------
 * shop._rebuild_customer_items() -> bigint
 * ---------------------------------------------------------------------
 */

static ShopStmt st_all_profiles = SHOP_STMT0(SHOP_PLAN_GENERIC,
	"SELECT p.customer_id, p.product_id, p.weight, p.h FROM shop._like_profile(NULL) p");

/*
 * Fills shop.customer_item (truncated by the caller) with every
 * customer's profile, the rows of shop._like_profile(NULL).
 */
Datum
shop_rebuild_customer_items(PG_FUNCTION_ARGS)
{
	Portal		portal;
	RbBulk		b;
	int64		rows;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "shop: SPI_connect failed");
	rb_begin(&b, "customer_item", 4);
	portal = ShopOpenCursor(&st_all_profiles, NULL, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, RB_FETCH);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			TupleTableSlot *slot = rb_slot(&b);

			for (int c = 0; c < 4; c++)
				slot->tts_values[c] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
													c + 1, &slot->tts_isnull[c]);
			rb_store(&b);
		}
		/* the values are the fetched rows' (all by value here, but still) */
		rb_flush(&b);
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	rows = rb_end(&b);
	SPI_finish();
	PG_RETURN_INT64(rows);
}
