/*-------------------------------------------------------------------------
 *
 * recorebuild.c
 *	  The tables shop.rebuild_recommendations empties and fills whole,
 *	  computed and written in bulk: shop.copurchase_order
 *	  (shop._rebuild_orders), the co-purchase statistics, pair rows and
 *	  lists (shop._rebuild_pairs) and the customers' profiles
 *	  (shop._rebuild_customer_items) and their customers-like-you lists
 *	  (shop._rebuild_like_lists); and the sums behind every product's
 *	  popularity (shop._rebuild_popularity_sums).
 *
 * A rebuild truncates these tables and writes every row again
 * (docs/recommendations.md, "Performance").  Rows
 * written by INSERT ... SELECT go into the heap and, one at a time, into
 * every index of the table; shop.customer_item's sample index is keyed by
 * product, so its 780,000 rows of a 100,000-product history went into it
 * in random order (5 s of a 16 s rebuild).  Here the rows go into the heap
 * only, and the indexes are then built from the heap by one sort each
 * (reindex_relation, as REINDEX does): the rows and the indexes are those
 * the INSERT made.  The heap's pages are filled in memory as
 * heap_multi_insert fills them and written to the end of the file,
 * WAL-logged whole, and the file synced before the index builds, as an
 * index build writes its own pages (rb_page_add, rb_page_out): no page is
 * extended zeroed through shared buffers and written again when the
 * bulk-write ring evicts it.  Where logical decoding reads the table
 * (wal_level = logical), batches of table_multi_insert, as COPY does.
 *
 * That is safe only on a table no one else can read until the rebuild
 * commits: the loaders require that the table was emptied (TRUNCATE) in
 * the current transaction, which also holds its ACCESS EXCLUSIVE lock.
 * Each table's NOT NULL and CHECK constraints are evaluated per row, as an
 * INSERT would; unique indexes are checked by the index build; tables
 * with triggers are refused (none of these has one).
 *
 * The inputs (orders, order lines, views, the folded orders, the
 * profiles) are read by scans of their tables with the calling
 * statement's snapshot, as a statement of the function would see them,
 * without the executor and the cursor a statement costs per row.  The
 * orders and their lines are read once, by shop._rebuild_orders, and
 * kept for the later steps of the same statement (RbHistory); the
 * profiles likewise for the lists (RbProfiles).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/heapam.h"
#include "access/heaptoast.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xloginsert.h"
#include "catalog/index.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "storage/lmgr.h"
#include "storage/predicate.h"
#include "storage/proc.h"
#include "storage/smgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_rebuild_orders);
PG_FUNCTION_INFO_V1(shop_rebuild_customer_items);
PG_FUNCTION_INFO_V1(shop_rebuild_pairs);

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
	MemoryContext batchcxt;		/* by-reference values of a batch, reset when written */
	/* pages written directly (rb_page_add), not through shared buffers */
	bool		direct;
	char	   *page;			/* the page being filled */
	BlockNumber blkno;			/* its block number */
	int			ntup;			/* rows on it */
	Size		save_free;		/* the fillfactor's free space */
	TransactionId xid;
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
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shop.%s must be truncated in this transaction before it is filled in bulk", name),
				 errhint("Call shop.rebuild_recommendations().")));
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
	b->batchcxt = AllocSetContextCreate(CurrentMemoryContext, "shop bulk batch", ALLOCSET_DEFAULT_SIZES);

	/*
	 * The heap's pages are filled here and written to the relation's file
	 * (WAL-logged whole, as an index build writes its pages), not extended
	 * one zeroed page at a time through shared buffers and written again
	 * when the bulk-write ring evicts them.  Not where logical decoding
	 * reads the table's inserts (it needs heap_multi_insert's records).
	 */
	b->direct = !(XLogLogicalInfoActive() && RelationIsLogicallyLogged(b->rel)) &&
		b->rel->rd_rel->relkind == RELKIND_RELATION;
	if (b->direct)
	{
		/* as heap_multi_insert: a serializable reader of the table conflicts */
		CheckForSerializableConflictIn(b->rel, NULL, InvalidBlockNumber);
		b->page = palloc(BLCKSZ);
		PageInit((Page) b->page, BLCKSZ, 0);
		b->blkno = RelationGetNumberOfBlocks(b->rel);
		b->ntup = 0;
		b->save_free = RelationGetTargetPageFreeSpace(b->rel, HEAP_DEFAULT_FILLFACTOR);
		b->xid = GetCurrentTransactionId();
	}
}

/*
 * The page being filled goes out: WAL-logged whole (when the relation
 * needs WAL), then written at the end of the file.  rb_end syncs the file
 * before the indexes are built (a checkpoint between the WAL record and
 * the write would not know of the write, as for an index build).
 */
static void
rb_page_out(RbBulk *b)
{
	if (b->ntup == 0)
		return;
	if (RelationNeedsWAL(b->rel))
		log_newpage(&b->rel->rd_node, MAIN_FORKNUM, b->blkno, (Page) b->page, true);
	PageSetChecksumInplace((Page) b->page, b->blkno);
	smgrextend(RelationGetSmgr(b->rel), MAIN_FORKNUM, b->blkno, b->page, true);
	b->blkno++;
	b->ntup = 0;
	PageInit((Page) b->page, BLCKSZ, 0);
}

/*
 * One row onto the page being filled, as heap_multi_insert places it: the
 * header of an insert of this command, toasted when too long, a new page
 * when the row would take the fillfactor's free space (an empty page
 * takes any row).  Pages come out as heap_multi_insert's would.
 */
static void
rb_page_add(RbBulk *b, TupleTableSlot *slot)
{
	HeapTuple	tup = heap_form_tuple(RelationGetDescr(b->rel), slot->tts_values, slot->tts_isnull);
	Page		page = (Page) b->page;
	OffsetNumber off;
	HeapTupleHeader item;

	tup->t_data->t_infomask &= ~HEAP_XACT_MASK;
	tup->t_data->t_infomask2 &= ~HEAP2_XACT_MASK;
	tup->t_data->t_infomask |= HEAP_XMAX_INVALID;
	HeapTupleHeaderSetXmin(tup->t_data, b->xid);
	HeapTupleHeaderSetCmin(tup->t_data, b->cid);
	HeapTupleHeaderSetXmax(tup->t_data, 0);
	tup->t_tableOid = RelationGetRelid(b->rel);
	if (HeapTupleHasExternal(tup) || tup->t_len > TOAST_TUPLE_THRESHOLD)
		tup = heap_toast_insert_or_update(b->rel, tup, NULL, 0);
	if (tup->t_len > MaxHeapTupleSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("row is too big: size %zu, maximum size %zu",
						(size_t) tup->t_len, (size_t) MaxHeapTupleSize)));
	if (b->ntup > 0 && PageGetHeapFreeSpace(page) < MAXALIGN(tup->t_len) + b->save_free)
		rb_page_out(b);
	off = PageAddItem(page, (Item) tup->t_data, tup->t_len, InvalidOffsetNumber, false, true);
	if (off == InvalidOffsetNumber)
		elog(ERROR, "shop: failed to add a row to a page of %s", RelationGetRelationName(b->rel));
	ItemPointerSet(&tup->t_self, b->blkno, off);
	item = (HeapTupleHeader) PageGetItem(page, PageGetItemId(page, off));
	item->t_ctid = tup->t_self;
	b->ntup++;
}

static void
rb_flush(RbBulk *b)
{
	if (b->n > 0)
	{
		if (b->direct)
		{
			MemoryContext old = MemoryContextSwitchTo(b->batchcxt);

			for (int i = 0; i < b->n; i++)
				rb_page_add(b, b->slots[i]);
			MemoryContextSwitchTo(old);
			pgstat_count_heap_insert(b->rel, b->n);
		}
		else
			table_multi_insert(b->rel, b->slots, b->n, b->cid, 0, b->bis);
		b->rows += b->n;
		b->n = 0;
	}
	MemoryContextReset(b->batchcxt);
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
 * must stay valid until the batch is written (rb_flush, rb_end): made in
 * b->batchcxt, they are freed then.
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
	if (b->direct)
	{
		rb_page_out(b);
		if (RelationNeedsWAL(b->rel))
			smgrimmedsync(RelationGetSmgr(b->rel), MAIN_FORKNUM);
		pfree(b->page);
	}
	for (int i = 0; i < RB_BATCH; i++)
		ExecDropSingleTupleTableSlot(b->slots[i]);
	FreeBulkInsertState(b->bis);
	table_finish_bulk_insert(b->rel, 0);
	FreeExecutorState(b->estate);
	MemoryContextDelete(b->batchcxt);
	table_close(b->rel, NoLock);
	CommandCounterIncrement();
	reindex_relation(relid, REINDEX_REL_CHECK_CONSTRAINTS, &params);
	CommandCounterIncrement();
	return b->rows;
}

/* attribute number of a column of rel, or an error */
static AttrNumber
rb_attnum(Relation rel, const char *name)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	elog(ERROR, "shop: table %s has no column %s", RelationGetRelationName(rel), name);
	return InvalidAttrNumber;	/* keep the compiler quiet */
}

/*
 * A scan of a table of schema shop with a snapshot, reading some of its
 * columns by name: rb_scan_start (rb_scan_open: the table, its columns;
 * rb_scan_begin: the snapshot), then while (rb_scan_next(&s)) column i
 * of the row is rb_scan_col(&s, i, &isnull) (rb_scan_next_line: the next
 * order line's order and product), then rb_scan_close.  Each step is
 * the table AM call it names and a column is read by slot_getattr, as
 * the loops read them before: no call through a pointer per row, and a
 * row's columns deformed only as far as the loop reads them.
 */
#define RB_SCAN_COLS 4

typedef struct RbScan
{
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	AttrNumber	att[RB_SCAN_COLS];
} RbScan;

/* open shop.<table> (AccessShareLock); cols: up to 4 names, NULL-ended */
static void
rb_scan_open(RbScan *s, const char *table, const char *const *cols)
{
	int			n = 0;

	s->rel = table_openrv(makeRangeVar("shop", (char *) table, -1), AccessShareLock);
	s->scan = NULL;
	s->slot = NULL;
	for (; cols[n] != NULL; n++)
	{
		Assert(n < RB_SCAN_COLS);
		s->att[n] = rb_attnum(s->rel, cols[n]);
	}
}

static void
rb_scan_begin(RbScan *s, Snapshot snap)
{
	s->scan = table_beginscan(s->rel, snap, 0, NULL);
	s->slot = table_slot_create(s->rel, NULL);
}

/* rb_scan_open and rb_scan_begin */
static void
rb_scan_start(RbScan *s, const char *table, Snapshot snap, const char *const *cols)
{
	rb_scan_open(s, table, cols);
	rb_scan_begin(s, snap);
}

static inline bool
rb_scan_next(RbScan *s)
{
	return table_scan_getnextslot(s->scan, ForwardScanDirection, s->slot);
}

static inline Datum
rb_scan_col(RbScan *s, int i, bool *isnull)
{
	return slot_getattr(s->slot, s->att[i], isnull);
}

/*
 * the next line of shop.order_line with an order and a product (both NOT
 * NULL in the table) of a scan started with the columns order_id,
 * product_id; false past the last
 */
static inline bool
rb_scan_next_line(RbScan *s, Datum *order_id, int64 *product_id)
{
	while (rb_scan_next(s))
	{
		bool		n1,
					n2;
		Datum		id = rb_scan_col(s, 0, &n1);
		Datum		p = rb_scan_col(s, 1, &n2);

		if (n1 || n2)
			continue;
		*order_id = id;
		*product_id = DatumGetInt64(p);
		return true;
	}
	return false;
}

static void
rb_scan_close(RbScan *s)
{
	if (s->slot != NULL)
		ExecDropSingleTupleTableSlot(s->slot);
	if (s->scan != NULL)
		table_endscan(s->scan);
	table_close(s->rel, AccessShareLock);
}

/*
 * shop._counted(status) of an order, the SQL function called once per
 * distinct status (a handful: the CHECK of shop."order".status) and
 * remembered
 */
typedef struct RbCounted
{
	FmgrInfo	fn;
	int			n;
	text	   *status[16];
	bool		counted[16];
} RbCounted;

static void
rb_counted_init(RbCounted *rc)
{
	Oid			argtypes[1] = {TEXTOID};
	Oid			fn = LookupFuncName(list_make2(makeString("shop"), makeString("_counted")), 1, argtypes, false);

	fmgr_info(fn, &rc->fn);
	rc->n = 0;
}

static bool
rb_counted(RbCounted *rc, Datum status)
{
	text	   *t = DatumGetTextPP(status);
	int			len = VARSIZE_ANY_EXHDR(t);
	bool		c;

	for (int i = 0; i < rc->n; i++)
		if (VARSIZE_ANY_EXHDR(rc->status[i]) == len &&
			memcmp(VARDATA_ANY(rc->status[i]), VARDATA_ANY(t), len) == 0)
			return rc->counted[i];
	c = DatumGetBool(FunctionCall1Coll(&rc->fn, InvalidOid, PointerGetDatum(t)));
	if (rc->n < lengthof(rc->status))
	{
		rc->status[rc->n] = DatumGetTextPCopy(PointerGetDatum(t));
		rc->counted[rc->n++] = c;
	}
	return c;
}

/* ---------------------------------------------------------------------
 * shop._rebuild_orders(buyer_cap float8) -> bigint
 * ---------------------------------------------------------------------
 */

typedef struct RbOrder
{
	pg_uuid_t	order_id;
	int64		customer_id;	/* 0: a guest order */
	TimestampTz at;			/* created_at */
	double		weight;			/* shop.copurchase_order.weight */
	int32		cust;			/* index into the customers' counts, -1 */
	int32		seq;			/* its place among all orders in heap order */
} RbOrder;

/*
 * The statement of a top-level transaction and subtransaction that kept
 * data for later steps of the same statement (RbHistory, RbProfiles)
 */
typedef struct RbStatement
{
	LocalTransactionId lxid;
	SubTransactionId subid;
	TimestampTz stmt_start;
} RbStatement;

static inline void
rb_statement_mark(RbStatement *st)
{
	st->lxid = MyProc->lxid;
	st->subid = GetCurrentSubTransactionId();
	st->stmt_start = GetCurrentStatementStartTimestamp();
}

static inline bool
rb_statement_same(const RbStatement *st)
{
	return st->lxid == MyProc->lxid &&
		st->subid == GetCurrentSubTransactionId() &&
		st->stmt_start == GetCurrentStatementStartTimestamp();
}

/*
 * The history a rebuild reads once.  shop._rebuild_orders scans
 * shop."order" and shop.order_line and keeps what the later steps of the
 * same shop.rebuild_recommendations() call need: the counted orders by
 * id (the rows of shop.copurchase_order, basket b the b-th) and every
 * line of them, in the heap order of shop.order_line, as (order index,
 * product index), the products by first appearance.  shop._rebuild_pairs
 * takes its baskets from it (reco_build_read read shop.copurchase_order
 * and every order line through cursors), shop._rebuild_popularity_sums
 * its line events (in the rebuild the folded orders are the counted
 * ones) and shop._rebuild_customer_items its bought events, each of
 * which scanned shop."order" and shop.order_line again and probed an
 * order hash per line.  Every step adds its sums up in the order its own
 * scans did (the lines' heap order), so the tables are the same to the
 * bit.  The history lives in the transaction's memory and is used only
 * within the same top-level statement, transaction and subtransaction
 * (rb_hist_get); shop._rebuild_customer_items, the last step reading it,
 * frees it.  Memory: about 48 bytes per counted order, 8 per line and 8
 * per product (40 more per order and product while the lines are read),
 * on top of each step's own.
 */
typedef struct RbHistory
{
	MemoryContext cxt;			/* child of TopTransactionContext */
	MemoryContextCallback cb;
	RbStatement made;			/* the statement that made it */
	RbOrder    *orders;			/* counted orders, by id */
	int64		norders;
	int32	   *line_order;		/* index into orders */
	int32	   *line_item;		/* index into pid */
	int64		nlines;
	int64	   *pid;			/* product ids by first appearance */
	int32		nitems;
} RbHistory;

static RbHistory *rb_hist = NULL;

static void
rb_hist_forget(void *arg)
{
	if (rb_hist == arg)
		rb_hist = NULL;
}

/* the history of this statement, or NULL: the caller scans the tables */
static RbHistory *
rb_hist_get(void)
{
	if (rb_hist != NULL && rb_statement_same(&rb_hist->made))
		return rb_hist;
	return NULL;
}

static void
rb_hist_drop(void)
{
	if (rb_hist != NULL)
		MemoryContextDelete(rb_hist->cxt);	/* rb_hist_forget: NULL */
}

typedef struct RbOrderIdx
{
	pg_uuid_t	order_id;		/* hash key */
	int32		idx;
} RbOrderIdx;

/* every order in the heap order of shop."order", while the lines are read */
typedef struct RbSeq
{
	pg_uuid_t	order_id;
	int32		oi;				/* index into the counted orders, -1 */
} RbSeq;

typedef struct RbItemIdx
{
	int64		pid;			/* hash key */
	int32		idx;
} RbItemIdx;

/*
 * Dense indexes of bigint ids (products, customers) by first appearance:
 * ids from 0 up to a bound that grows with the ids seen (a serial's ids
 * are dense) are looked up in an array, the others in a hash.  A million
 * dynahash probes of a 100,000-entry table were most of the one read of
 * the lines.
 */
typedef struct RbIdMap
{
	int32	   *direct;			/* id -> index + 1, 0: not seen */
	int64		dcap;
	HTAB	   *hash;			/* ids past the array */
	int64		nhash;
	int32		n;				/* indexes given */
} RbIdMap;

#define RB_IDMAP_DIRECT(m) Max((int64) 1 << 20, (int64) 8 * ((m)->n + 1))

static void
rb_idmap_init(RbIdMap *m)
{
	HASHCTL		ctl;

	memset(m, 0, sizeof(*m));
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(RbItemIdx);
	ctl.hcxt = CurrentMemoryContext;
	m->hash = hash_create("shop rebuild ids", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* the index of id; *added when it is new (the next index, m->n - 1) */
static int32
rb_idmap(RbIdMap *m, int64 id, bool *added)
{
	bool		found;
	RbItemIdx  *e;

	if (id >= 0 && id >= m->dcap && id < RB_IDMAP_DIRECT(m))
	{
		int64		ncap = Max(Max(m->dcap * 2, id + 1), 65536);

		ncap = Min(ncap, RB_IDMAP_DIRECT(m));
		if (m->direct == NULL)
			m->direct = palloc_extended(sizeof(int32) * ncap, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		else
		{
			m->direct = repalloc_huge(m->direct, sizeof(int32) * ncap);
			memset(m->direct + m->dcap, 0, sizeof(int32) * (ncap - m->dcap));
		}
		m->dcap = ncap;
	}
	if (id >= 0 && id < m->dcap)
	{
		int32		v = m->direct[id];

		if (v > 0)
		{
			*added = false;
			return v - 1;
		}
		/* an id put in the hash before the array reached it */
		if (m->nhash > 0)
		{
			e = hash_search(m->hash, &id, HASH_FIND, NULL);
			if (e != NULL)
			{
				*added = false;
				return e->idx;
			}
		}
		m->direct[id] = m->n + 1;
		*added = true;
		return m->n++;
	}
	e = hash_search(m->hash, &id, HASH_ENTER, &found);
	if (!found)
	{
		e->idx = m->n++;
		m->nhash++;
	}
	*added = !found;
	return e->idx;
}

static int
rb_cmp_order(const void *a, const void *b)
{
	return memcmp(((const RbOrder *) a)->order_id.data, ((const RbOrder *) b)->order_id.data,
				  UUID_LEN);
}

/*
 * Fills shop.copurchase_order (truncated by the caller) with every counted
 * order (one scan of shop."order", shop._counted called once per status):
 * its customer and its weight, 1 for a guest order, else least(1,
 * buyer_cap / the customer's counted orders) in double precision, the
 * value the SQL of 1.0 computed.  Rows in order id order, as that SQL
 * wrote them: the co-purchase rebuild reads the baskets in this order and
 * adds their weights up in it.  Then reads every order line once and
 * keeps the history (RbHistory) for the rebuild's later steps.
 */
Datum
shop_rebuild_orders(PG_FUNCTION_ARGS)
{
	double		buyer_cap = PG_GETARG_FLOAT8(0);
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	MemoryContext hcxt;
	RbHistory  *h;
	HASHCTL		ctl;
	RbIdMap		customers;
	HTAB	   *byid = NULL;
	RbIdMap		items;
	int64	   *counts;
	int32		ncust = 0;
	int32		cust_cap = 65536;
	RbOrder    *orders;
	int64		norders = 0;
	int64		orders_cap = 65536;
	int64		lines_cap = 262144;
	int32		items_cap = 65536;
	RbCounted	rc;
	Snapshot	snap = GetActiveSnapshot();
	RbScan		sc;
	RbBulk		b;
	int64		rows;
	RbSeq	   *seqs;
	int64		nseq = 0;
	int64		seq_cap = 65536;
	int64		cur = -1;
	Datum		line_order;
	int64		pid;

	rb_hist_drop();
	hcxt = AllocSetContextCreate(TopTransactionContext, "shop rebuild history", ALLOCSET_DEFAULT_SIZES);
	h = MemoryContextAllocZero(hcxt, sizeof(RbHistory));
	h->cxt = hcxt;
	h->cb.func = rb_hist_forget;
	h->cb.arg = h;
	MemoryContextRegisterResetCallback(hcxt, &h->cb);

	work = AllocSetContextCreate(CurrentMemoryContext, "shop rebuild orders", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(work);

	rb_idmap_init(&customers);
	counts = palloc_extended(sizeof(int64) * cust_cap, MCXT_ALLOC_HUGE);
	seqs = palloc_extended(sizeof(RbSeq) * seq_cap, MCXT_ALLOC_HUGE);
	orders = MemoryContextAllocExtended(hcxt, sizeof(RbOrder) * orders_cap, MCXT_ALLOC_HUGE);

	rb_counted_init(&rc);
	rb_scan_start(&sc, "order", snap, (const char *const[]) {"order_id", "customer_id", "created_at", "status", NULL});
	while (rb_scan_next(&sc))
	{
		bool		isnull;
		RbOrder    *o;
		Datum		c;
		Datum		id = rb_scan_col(&sc, 0, &isnull);
		Datum		st;
		Datum		at;

		if (isnull)
			continue;			/* the primary key */
		if (nseq == seq_cap)
		{
			seq_cap *= 2;
			seqs = repalloc_huge(seqs, sizeof(RbSeq) * seq_cap);
		}
		memcpy(&seqs[nseq].order_id, DatumGetUUIDP(id), sizeof(pg_uuid_t));
		seqs[nseq++].oi = -1;
		/* shop._counted(NULL) is false */
		st = rb_scan_col(&sc, 3, &isnull);
		if (isnull || !rb_counted(&rc, st))
			continue;
		if (norders == orders_cap)
		{
			orders_cap *= 2;
			orders = repalloc_huge(orders, sizeof(RbOrder) * orders_cap);
		}
		o = &orders[norders++];
		o->seq = (int32) (nseq - 1);
		memcpy(&o->order_id, DatumGetUUIDP(id), sizeof(pg_uuid_t));
		at = rb_scan_col(&sc, 2, &isnull);
		o->at = isnull ? 0 : DatumGetTimestampTz(at);	/* NOT NULL in the table */
		c = rb_scan_col(&sc, 1, &isnull);
		o->cust = -1;
		o->customer_id = 0;
		if (!isnull)
		{
			bool		added;
			int32		ci;

			o->customer_id = DatumGetInt64(c);
			ci = rb_idmap(&customers, o->customer_id, &added);
			if (added)
			{
				if (ncust == cust_cap)
				{
					cust_cap *= 2;
					counts = repalloc_huge(counts, sizeof(int64) * cust_cap);
				}
				counts[ncust++] = 0;
			}
			o->cust = ci;
			counts[ci]++;
		}
		if ((norders & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	rb_scan_close(&sc);

	if (norders > 1)
		qsort(orders, norders, sizeof(RbOrder), rb_cmp_order);
	for (int64 i = 0; i < norders; i++)
	{
		RbOrder    *o = &orders[i];

		/* least(1.0, buyer_cap / count(*) OVER (PARTITION BY customer_id)) */
		if (o->cust < 0)
			o->weight = 1.0;
		else
		{
			double		w = buyer_cap / (double) counts[o->cust];

			o->weight = (w < 1.0 ? w : 1.0);
		}
	}

	rb_begin(&b, "copurchase_order", 3);
	for (int64 i = 0; i < norders; i++)
	{
		TupleTableSlot *slot = rb_slot(&b);
		RbOrder    *o = &orders[i];

		slot->tts_values[0] = UUIDPGetDatum(&o->order_id);
		slot->tts_isnull[0] = false;
		slot->tts_values[1] = Int64GetDatum(o->customer_id);
		slot->tts_isnull[1] = (o->cust < 0);
		slot->tts_values[2] = Float8GetDatum(o->weight);
		slot->tts_isnull[2] = false;
		rb_store(&b);
		if ((i & 65535) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	rows = rb_end(&b);

	/*
	 * every line of a counted order: (order, product), in heap order.  The
	 * lines of one order are mostly together, and the orders' lines mostly
	 * follow one another as the orders do: the next order in the heap
	 * order of shop."order" is tried first, a hash of every order by id
	 * (built at the first miss) otherwise.
	 */
	for (int64 i = 0; i < norders; i++)
		seqs[orders[i].seq].oi = (int32) i;
	rb_idmap_init(&items);
	h->line_order = MemoryContextAllocExtended(hcxt, sizeof(int32) * lines_cap, MCXT_ALLOC_HUGE);
	h->line_item = MemoryContextAllocExtended(hcxt, sizeof(int32) * lines_cap, MCXT_ALLOC_HUGE);
	h->pid = MemoryContextAllocExtended(hcxt, sizeof(int64) * items_cap, MCXT_ALLOC_HUGE);
	rb_scan_start(&sc, "order_line", snap, (const char *const[]) {"order_id", "product_id", NULL});
	while (rb_scan_next_line(&sc, &line_order, &pid))
	{
		bool		added;
		int32		oi;
		int32		ii;

		if (cur >= 0 && memcmp(&seqs[cur].order_id, DatumGetUUIDP(line_order), sizeof(pg_uuid_t)) == 0)
			oi = seqs[cur].oi;	/* the order of the line before */
		else if (cur + 1 < nseq &&
				 memcmp(&seqs[cur + 1].order_id, DatumGetUUIDP(line_order), sizeof(pg_uuid_t)) == 0)
			oi = seqs[++cur].oi;	/* the next order */
		else
		{
			RbOrderIdx *e;

			if (byid == NULL)
			{
				memset(&ctl, 0, sizeof(ctl));
				ctl.keysize = sizeof(pg_uuid_t);
				ctl.entrysize = sizeof(RbOrderIdx);
				ctl.hcxt = work;
				byid = hash_create("shop rebuild orders by id", Max(nseq, 1024), &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
				for (int64 i = 0; i < nseq; i++)
				{
					e = hash_search(byid, &seqs[i].order_id, HASH_ENTER, NULL);
					e->idx = (int32) i;
				}
			}
			e = hash_search(byid, DatumGetUUIDP(line_order), HASH_FIND, NULL);
			if (e == NULL)
				continue;		/* no such order */
			cur = e->idx;
			oi = seqs[cur].oi;
		}
		if (oi < 0)
			continue;
		if (h->nlines == lines_cap)
		{
			lines_cap *= 2;
			h->line_order = repalloc_huge(h->line_order, sizeof(int32) * lines_cap);
			h->line_item = repalloc_huge(h->line_item, sizeof(int32) * lines_cap);
		}
		ii = rb_idmap(&items, pid, &added);
		if (added)
		{
			if (h->nitems == items_cap)
			{
				items_cap *= 2;
				h->pid = repalloc_huge(h->pid, sizeof(int64) * items_cap);
			}
			h->pid[h->nitems++] = pid;
		}
		h->line_order[h->nlines] = oi;
		h->line_item[h->nlines] = ii;
		h->nlines++;
		if ((h->nlines & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	rb_scan_close(&sc);

	h->orders = orders;
	h->norders = norders;
	rb_statement_mark(&h->made);
	rb_hist = h;

	MemoryContextSwitchTo(caller);
	MemoryContextDelete(work);
	PG_RETURN_INT64(rows);
}

/* ---------------------------------------------------------------------
 * shop._rebuild_customer_items() -> bigint
 *
 * Every customer's profile, the rows shop._like_profile(NULL) returns,
 * computed here from the events sorted by customer: that SQL grouped all
 * events by (customer, product) in one hash, sorted the groups by
 * customer and recency and ran two window functions over them (2.1 s of
 * CPU for 1 million order lines, and 1.1 s more to hand its rows over).
 * One customer's events at a time:
 *	 - per product, w = the largest event weight (bought 1, viewed 0.3)
 *	   and at = its latest event;
 *	 - the shop.reco_like_items latest products (at descending, then
 *	   product id), the row_number() <= cap of the SQL;
 *	 - weight = (w / sqrt(sum of w * w over them))::real, the sum added up
 *	   in that order, as the window sum was; h = hashint8extended(customer,
 *	   product).
 * ---------------------------------------------------------------------
 */

/* an event of a customer's history (shop.h: the refresh reads the same) */
typedef LikeEvent RbEvent;

/*
 * The profile rows shop._rebuild_customer_items wrote, in (customer,
 * product) order, kept for shop._rebuild_like_lists in the same statement
 * (as RbHistory is): it then neither scans shop.customer_item again nor
 * sorts its customers.
 */
typedef struct RbProfiles
{
	MemoryContext cxt;			/* child of TopTransactionContext */
	MemoryContextCallback cb;
	RbStatement made;			/* the statement that made it */
	LikeProfileRow *rows;
	int64		n;
	int64		cap;
} RbProfiles;

static RbProfiles *rb_prof = NULL;

static void
rb_prof_forget(void *arg)
{
	if (rb_prof == arg)
		rb_prof = NULL;
}

/* one customer's events (ev[0..n-1], reordered) into profile rows */
static void
rb_profile(RbBulk *b, int64 customer, RbEvent *ev, int n, RbProfiles *out)
{
	double		sum;
	int			m = like_profile_events(ev, n, shop_reco_like_items, &sum);

	/* written in key order: the primary key's build finds them sorted */
	for (int i = 0; i < m; i++)
	{
		TupleTableSlot *slot = rb_slot(b);
		float4		w = (float4) (ev[i].w / sum);
		Datum		h = Int64GetDatum(like_profile_hash(customer, ev[i].product_id));

		slot->tts_values[0] = Int64GetDatum(customer);
		slot->tts_values[1] = Int64GetDatum(ev[i].product_id);
		slot->tts_values[2] = Float4GetDatum(w);
		slot->tts_values[3] = h;
		memset(slot->tts_isnull, 0, sizeof(bool) * 4);
		rb_store(b);
		if (out != NULL)
		{
			if (out->n == out->cap)
			{
				out->cap *= 2;
				out->rows = repalloc_huge(out->rows, sizeof(LikeProfileRow) * out->cap);
			}
			out->rows[out->n].c = customer;
			out->rows[out->n].p = ev[i].product_id;
			out->rows[out->n].w = w;
			out->rows[out->n].h = DatumGetInt64(h);
			out->n++;
		}
	}
}

typedef struct RbCustOrder
{
	pg_uuid_t	order_id;		/* hash key */
	int64		customer_id;
	TimestampTz at;
} RbCustOrder;

typedef struct RbCustEvent
{
	int64		customer_id;
	int64		product_id;
	double		w;
	TimestampTz at;
} RbCustEvent;

#define ST_SORT rb_sort_cust_events
#define ST_ELEMENT_TYPE RbCustEvent
#define ST_COMPARE(a, b) ((a)->customer_id < (b)->customer_id ? -1 : ((a)->customer_id > (b)->customer_id ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

static void
rb_add_cust_event(RbCustEvent **ev, int64 *nev, int64 *cap, int64 c, int64 p, double w, TimestampTz at)
{
	if (*nev == *cap)
	{
		*cap *= 2;
		*ev = repalloc_huge(*ev, sizeof(RbCustEvent) * *cap);
	}
	(*ev)[*nev].customer_id = c;
	(*ev)[*nev].product_id = p;
	(*ev)[*nev].w = w;
	(*ev)[*nev].at = at;
	(*nev)++;
}

/*
 * Fills shop.customer_item (truncated by the caller) with every
 * customer's profile.  The events, what the SQL of shop._like_profile
 * reads: a line of a counted order of a customer (w 1, the order's
 * created_at) and a view (w 0.3, viewed_at), read by scans of
 * shop."order" (shop._counted, once per status), shop.order_line and
 * shop.view_event with the statement's snapshot, then sorted by customer
 * (a statement with ORDER BY, read through a cursor, cost twice as much).
 * A customer's rows do not depend on the order of its events.  Memory:
 * 32 bytes per event and 40 per counted order of a customer.  Returns
 * the customers with a profile (count(DISTINCT customer_id) of the
 * table, which the rebuild's summary reports).
 */
Datum
shop_rebuild_customer_items(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	RbBulk		b;
	int64		customers = 0;
	int64		before;
	RbEvent    *one;
	int			one_cap = 1024;
	RbCustEvent *ev;
	int64		nev = 0,
				ev_cap = 262144;
	RbHistory  *h = rb_hist_get();
	RbProfiles *prof;
	HASHCTL		ctl;
	HTAB	   *orders;
	RbCounted	rc;
	Snapshot	snap = GetActiveSnapshot();
	RbScan		sc;
	Datum		line_order;
	int64		line_product;

	work = AllocSetContextCreate(CurrentMemoryContext, "shop rebuild profiles", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(work);
	/* the lines of the history at once (each doubling copies them all) */
	if (h != NULL && h->nlines > ev_cap)
		ev_cap = h->nlines;
	ev = palloc_extended(sizeof(RbCustEvent) * ev_cap, MCXT_ALLOC_HUGE);

	if (h != NULL)
	{
		/* the lines of counted orders of customers, from the history */
		for (int64 i = 0; i < h->nlines; i++)
		{
			RbOrder    *o = &h->orders[h->line_order[i]];

			if (o->cust < 0)
				continue;		/* a guest order */
			rb_add_cust_event(&ev, &nev, &ev_cap, o->customer_id, h->pid[h->line_item[i]], 1.0, o->at);
		}
		rb_hist_drop();
	}
	else
	{
		/* the counted orders of customers */
		rb_counted_init(&rc);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(pg_uuid_t);
		ctl.entrysize = sizeof(RbCustOrder);
		ctl.hcxt = work;
		orders = hash_create("shop rebuild profile orders", 65536, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		rb_scan_start(&sc, "order", snap, (const char *const[]) {"order_id", "customer_id", "created_at", "status", NULL});
		while (rb_scan_next(&sc))
		{
			bool		n1,
						n2,
						n3,
						n4;
			Datum		id = rb_scan_col(&sc, 0, &n1);
			Datum		c = rb_scan_col(&sc, 1, &n2);
			Datum		at = rb_scan_col(&sc, 2, &n3);
			Datum		st = rb_scan_col(&sc, 3, &n4);
			RbCustOrder *o;

			/* shop._counted(NULL) is false */
			if (n1 || n2 || n4 || !rb_counted(&rc, st))
				continue;
			o = hash_search(orders, DatumGetUUIDP(id), HASH_ENTER, NULL);
			o->customer_id = DatumGetInt64(c);
			o->at = n3 ? 0 : DatumGetTimestampTz(at);	/* NOT NULL in the table */
		}
		rb_scan_close(&sc);

		/* their lines */
		rb_scan_start(&sc, "order_line", snap, (const char *const[]) {"order_id", "product_id", NULL});
		while (rb_scan_next_line(&sc, &line_order, &line_product))
		{
			RbCustOrder *o = hash_search(orders, DatumGetUUIDP(line_order), HASH_FIND, NULL);

			if (o == NULL)
				continue;
			rb_add_cust_event(&ev, &nev, &ev_cap, o->customer_id, line_product, 1.0, o->at);
			if ((nev & 0xFFFF) == 0)
				CHECK_FOR_INTERRUPTS();
		}
		rb_scan_close(&sc);
		hash_destroy(orders);
	}

	/* the views */
	rb_scan_start(&sc, "view_event", snap, (const char *const[]) {"customer_id", "product_id", "viewed_at", NULL});
	while (rb_scan_next(&sc))
	{
		bool		n1,
					n2,
					n3;
		Datum		c = rb_scan_col(&sc, 0, &n1);
		Datum		p = rb_scan_col(&sc, 1, &n2);
		Datum		at = rb_scan_col(&sc, 2, &n3);

		if (n1 || n2 || n3)
			continue;			/* NOT NULL in the table */
		rb_add_cust_event(&ev, &nev, &ev_cap, DatumGetInt64(c), DatumGetInt64(p), 0.3,
						  DatumGetTimestampTz(at));
		if ((nev & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	rb_scan_close(&sc);

	if (nev > 1)
		rb_sort_cust_events(ev, nev);

	MemoryContextSwitchTo(caller);
	rb_begin(&b, "customer_item", 4);
	MemoryContextSwitchTo(work);
	if (rb_prof != NULL)
		MemoryContextDelete(rb_prof->cxt);	/* rb_prof_forget: NULL */
	{
		MemoryContext pcxt = AllocSetContextCreate(TopTransactionContext, "shop rebuild profiles kept",
												   ALLOCSET_DEFAULT_SIZES);

		prof = MemoryContextAllocZero(pcxt, sizeof(RbProfiles));
		prof->cxt = pcxt;
		prof->cb.func = rb_prof_forget;
		prof->cb.arg = prof;
		MemoryContextRegisterResetCallback(pcxt, &prof->cb);
		/* no more rows than events: no doubling (the rest is freed below) */
		prof->cap = Max(nev, 1);
		prof->rows = MemoryContextAllocExtended(pcxt, sizeof(LikeProfileRow) * prof->cap, MCXT_ALLOC_HUGE);
	}
	one = palloc(sizeof(RbEvent) * one_cap);
	for (int64 i = 0; i < nev;)
	{
		int64		c = ev[i].customer_id;
		int			n = 0;

		for (; i < nev && ev[i].customer_id == c; i++)
		{
			if (n == one_cap)
			{
				one_cap *= 2;
				one = repalloc_huge(one, sizeof(RbEvent) * one_cap);
			}
			one[n].product_id = ev[i].product_id;
			one[n].w = ev[i].w;
			one[n].at = ev[i].at;
			n++;
		}
		before = b.rows + b.n;
		rb_profile(&b, c, one, n, prof);
		if (b.rows + b.n > before)
			customers++;
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextSwitchTo(caller);
	rb_end(&b);
	MemoryContextDelete(work);
	if (prof->n < prof->cap)
	{
		prof->cap = Max(prof->n, 1);
		prof->rows = repalloc_huge(prof->rows, sizeof(LikeProfileRow) * prof->cap);
	}
	rb_statement_mark(&prof->made);
	rb_prof = prof;
	PG_RETURN_INT64(customers);
}

/* ---------------------------------------------------------------------
 * shop._rebuild_pairs() -> jsonb
 *
 * The co-purchase statistics and lists of every folded order, what
 * shop._copurchase_rebuild (src/recommend.c) computes, written in bulk.
 * The computation is that one's own functions (reco_build_read,
 * reco_build_transpose, reco_build_neighbours, reco_rank), so every
 * double is added up in the same order and the tables come out equal to
 * the bit; only the writing differs:
 *	 1. the folded orders (shop.copurchase_order) in order id order, and
 *		every order line, grouped into baskets by a counting sort by order;
 *		a basket's distinct products add w_b to n_x, pw_b * (k_b - 1) to
 *		s_x and w_b * k_b to the total, basket by basket in that order;
 *	 2. the transpose: the baskets of each product, in basket order;
 *	 3. per product x, its pair counts N_xy added up over its baskets in a
 *		dense accumulator, its pair row (neighbours by product id), and its
 *		list scored by reco_rank against the scoring total, top
 *		shop.reco_neighbours kept.
 * Memory: about 16 bytes per order line, 40 per product and 8 per folded
 * order, plus one product's neighbours at a time; the rows go out in
 * batches of RB_BATCH.  (Counting pairs in a hash of (x, y) keys from one
 * walk of the baskets needs 24+ bytes per distinct pair, 1.3 million of
 * them here, and adds each pair's weights up in the same basket order:
 * the per-product accumulator needs neither the hash nor a sort.)
 * ---------------------------------------------------------------------
 */

/*
 * Each product's pair row and list, written to the truncated tables with
 * the item statistics.
 */
static void
rb_pairs_write(RecoBuild *rp, int64 *pairs_out, int64 *rows_out)
{
	RecoNeighbours nb;
	double		scoring_total = reco_scoring_total(rp->total);
	int			top = shop_reco_neighbours;
	int64		pairs = 0;
	RbBulk		items;
	RbBulk		pairrows;
	RbBulk		lists;

	reco_build_neighbours_init(rp, &nb);
	ShopDirect("TRUNCATE shop.copurchase, shop.copurchase_pair, shop.copurchase_item",
			   SPI_OK_UTILITY);
	rb_begin(&items, "copurchase_item", 3);
	for (int32 x = 0; x < rp->nitems; x++)
	{
		TupleTableSlot *slot = rb_slot(&items);

		slot->tts_values[0] = Int64GetDatum(rp->pid[x]);
		slot->tts_values[1] = Float8GetDatum(rp->n[x]);
		slot->tts_values[2] = Float8GetDatum(rp->s[x]);
		memset(slot->tts_isnull, 0, sizeof(bool) * 3);
		rb_store(&items);
	}
	rb_end(&items);

	rb_begin(&pairrows, "copurchase_pair", 3);
	rb_begin(&lists, "copurchase", 4);
	for (int32 x = 0; x < rp->nitems; x++)
	{
		int			nt = reco_build_neighbours(rp, x, &nb);
		int			m;
		TupleTableSlot *slot;
		MemoryContext old;

		if (nt == 0)
			continue;
		pairs += nt;

		/* the pair row: every neighbour, by product id */
		slot = rb_slot(&pairrows);
		old = MemoryContextSwitchTo(pairrows.batchcxt);
		slot->tts_values[0] = Int64GetDatum(rp->pid[x]);
		slot->tts_values[1] = ShopInt8Array(nb.other_id, nt);
		slot->tts_values[2] = ShopFloat8Array(nb.other_cnt, nt);
		MemoryContextSwitchTo(old);
		memset(slot->tts_isnull, 0, sizeof(bool) * 3);
		rb_store(&pairrows);

		/* the list: the best top, as reco_score_product keeps them */
		m = reco_rank(rp->s[x], scoring_total, nb.other_id, nb.other_cnt, nb.other_n, nt,
					  nb.scratch);
		for (int i = 0; i < m && i < top; i++)
		{
			slot = rb_slot(&lists);
			slot->tts_values[0] = Int64GetDatum(rp->pid[x]);
			slot->tts_values[1] = Int64GetDatum(nb.scratch[i].other);
			slot->tts_values[2] = Float4GetDatum((float4) nb.scratch[i].count);
			slot->tts_values[3] = Float4GetDatum((float4) nb.scratch[i].score);
			memset(slot->tts_isnull, 0, sizeof(bool) * 4);
			rb_store(&lists);
		}
		if ((x & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	rb_end(&pairrows);
	*rows_out = rb_end(&lists);
	*pairs_out = pairs;
}

static int
rb_cmp_int32(const void *a, const void *b)
{
	int32		x = *(const int32 *) a;
	int32		y = *(const int32 *) b;

	return (x > y) - (x < y);
}

/*
 * reco_build_read's step 1 from the history: the folded orders are the
 * counted orders _rebuild_orders wrote, basket b the b-th by id; the
 * products by first appearance among their lines in heap order, as
 * reco_build_read's cursor met them.  Each basket's products are sorted
 * and made distinct, and its statistics added up, as there.
 */
static void
rb_pairs_read_hist(RecoBuild *rb, const RbHistory *h)
{
	int64		nfolded = h->norders;
	int64		nlines = h->nlines;
	int64	   *start;
	int32	   *sorted;
	int64	   *pos;

	rb->items_cap = Max(h->nitems, 1);
	rb->nitems = h->nitems;
	rb->pid = palloc_extended(sizeof(int64) * rb->items_cap, MCXT_ALLOC_HUGE);
	memcpy(rb->pid, h->pid, sizeof(int64) * h->nitems);
	rb->n = palloc_extended(sizeof(double) * rb->items_cap, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	rb->s = palloc_extended(sizeof(double) * rb->items_cap, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	rb->lines = nlines;

	/* counting sort of the lines by basket */
	start = palloc_extended(sizeof(int64) * (nfolded + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	sorted = palloc_extended(sizeof(int32) * Max(nlines, 1), MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < nlines; i++)
		start[h->line_order[i] + 1]++;
	for (int64 o = 0; o < nfolded; o++)
		start[o + 1] += start[o];
	pos = palloc_extended(sizeof(int64) * (nfolded + 1), MCXT_ALLOC_HUGE);
	memcpy(pos, start, sizeof(int64) * (nfolded + 1));
	for (int64 i = 0; i < nlines; i++)
		sorted[pos[h->line_order[i]]++] = h->line_item[i];
	pfree(pos);

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
		double		w = h->orders[o].weight;
		double		pw;

		if (k == 0)
			continue;
		if (k > 1)
			qsort(b, k, sizeof(int32), rb_cmp_int32);
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
}

/*
 * shop._rebuild_pairs() -> jsonb
 *
 * Recomputes shop.copurchase_item, shop.copurchase_pair and
 * shop.copurchase from the orders in shop.copurchase_order, as
 * shop._copurchase_rebuild() does and with its summary; the three tables
 * are truncated and filled in bulk.
 */
Datum
shop_rebuild_pairs(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	RecoBuild	rp;
	RbHistory  *h;
	int64		pairs;
	int64		rows;
	char	   *summary;
	Jsonb	   *result;

	work = AllocSetContextCreate(CurrentMemoryContext, "shop co-purchase rebuild", ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "shop: SPI_connect failed");
	MemoryContextSwitchTo(work);
	memset(&rp, 0, sizeof(rp));
	h = rb_hist_get();
	if (h != NULL)
		rb_pairs_read_hist(&rp, h);
	else
		reco_build_read(&rp);
	reco_build_transpose(&rp);
	rb_pairs_write(&rp, &pairs, &rows);
	summary = reco_build_summary(&rp, pairs, rows);
	MemoryContextSwitchTo(caller);
	result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(summary)));
	SPI_finish();
	MemoryContextDelete(work);
	PG_RETURN_JSONB_P(result);
}

/* ---------------------------------------------------------------------
 * shop._rebuild_like_lists() -> bigint
 *
 * Every customers-like-you list (shop.customer_neighbour, truncated in
 * this transaction), computed from shop.customer_item read by one scan
 * and held in memory, written in bulk; NULL, having written nothing, when
 * the profile rows are more than one call of shop._like_lists may hold
 * (LIKE_REBUILD_ROWS): the caller then computes the lists in batches with
 * shop._like_lists.  The lists are the ones shop._like_lists computes
 * whole, to the bit (src/recolike.c, docs/recommendations.md "Customers
 * like you"):
 *	 - the rows sorted by (product_id, h, customer_id): a product's sample
 *	   is its first shop.reco_like_sample rows;
 *	 - per customer c, in customer id order, the samples holding c in
 *	   product id order (the order of c's profile rows there), and for each
 *	   the product of c's weight and every other member's added to that
 *	   member's sum, in double precision, as like_chunk adds them;
 *	 - the sums rounded (like_round), the best shop.reco_like_neighbours
 *	   kept (like_top).
 * That is what a batch of shop._like_lists did, without its statements:
 * the profiles of 50,000 customers (= ANY), their samples (a scan with a
 * hash probe per row), a customer hash probe per sample row, the stored
 * lists read back, and 1 million rows inserted one statement of 20,000 at
 * a time into the primary key.
 * Memory: at most 60 bytes per profile row (the row, its customer id and
 * sample bookkeeping, its place in its customer's samples) and 36 per
 * customer.
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(shop_rebuild_like_lists);

/* the rows the in-memory path holds at most: 20,000 full samples */
#define LIKE_REBUILD_ROWS(sample) ((int64) 20000 * (sample))

typedef LikeProfileRow RbItem;	/* shop.h */

#define ST_SORT rb_sort_items
#define ST_ELEMENT_TYPE RbItem
#define ST_COMPARE(a, b) ((a)->p != (b)->p ? ((a)->p < (b)->p ? -1 : 1) : \
						  (a)->h != (b)->h ? ((a)->h < (b)->h ? -1 : 1) : \
						  (a)->c < (b)->c ? -1 : ((a)->c > (b)->c ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

#define ST_SORT rb_sort_int64
#define ST_ELEMENT_TYPE int64
#define ST_COMPARE(a, b) (*(a) < *(b) ? -1 : (*(a) > *(b) ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/* the profiles kept by this statement's _rebuild_customer_items, or NULL */
static RbProfiles *
rb_prof_get(void)
{
	if (rb_prof != NULL && rb_statement_same(&rb_prof->made))
		return rb_prof;
	return NULL;
}

Datum
shop_rebuild_like_lists(PG_FUNCTION_ARGS)
{
	MemoryContext work = AllocSetContextCreate(CurrentMemoryContext, "shop like rebuild",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(work);
	int			sample = shop_reco_like_sample;
	int			top = shop_reco_like_neighbours;
	int64		limit = LIKE_REBUILD_ROWS(sample);
	RbScan		sc;
	Snapshot	snap;
	RbItem	   *v;
	int64		nv = 0,
				cap = 1024;
	int64	   *cust;
	int32		ncust = 0;
	LikeSamples ls;
	double	   *acc;
	int32	   *touched;
	LikeEntry  *vec;
	RbBulk		b;
	int64		rows;
	RbProfiles *prof = rb_prof_get();

	if (prof != NULL)
	{
		/* the rows _rebuild_customer_items just wrote, by customer */
		if (prof->n > limit)
		{
			MemoryContextDelete(prof->cxt);
			MemoryContextSwitchTo(old);
			MemoryContextDelete(work);
			PG_RETURN_NULL();	/* past the bound: the batched path */
		}
		v = prof->rows;
		nv = prof->n;
		cust = palloc(sizeof(int64) * Max(nv, 1));
		for (int64 i = 0; i < nv; i++)
		{
			if (ncust == 0 || cust[ncust - 1] != v[i].c)
				cust[ncust++] = v[i].c;
			v[i].ci = ncust - 1;
		}
	}
	else
	{
		/* its columns by number: (customer_id, product_id, weight, h) */
		rb_scan_open(&sc, "customer_item", (const char *const[]) {NULL});
		if (RelationGetDescr(sc.rel)->natts != 4)
			elog(ERROR, "shop: table customer_item does not have 4 columns");
		if (sc.rel->rd_rel->reltuples > limit)
		{
			rb_scan_close(&sc);
			MemoryContextSwitchTo(old);
			MemoryContextDelete(work);
			PG_RETURN_NULL();
		}
		v = palloc(sizeof(RbItem) * cap);
		snap = RegisterSnapshot(GetLatestSnapshot());
		rb_scan_begin(&sc, snap);
		while (rb_scan_next(&sc))
		{
			bool		n1,
						n2,
						n3,
						n4;

			if (nv == limit)
				break;
			if (nv == cap)
			{
				cap *= 2;
				v = repalloc_huge(v, sizeof(RbItem) * cap);
			}
			v[nv].c = DatumGetInt64(slot_getattr(sc.slot, 1, &n1));
			v[nv].p = DatumGetInt64(slot_getattr(sc.slot, 2, &n2));
			v[nv].w = DatumGetFloat4(slot_getattr(sc.slot, 3, &n3));
			v[nv].h = DatumGetInt64(slot_getattr(sc.slot, 4, &n4));
			if (n1 || n2 || n3 || n4)
				continue;			/* not null in the table */
			nv++;
			if ((nv & 0xFFFF) == 0)
				CHECK_FOR_INTERRUPTS();
		}
		{
			bool		more = (nv == limit && rb_scan_next(&sc));

			rb_scan_close(&sc);
			UnregisterSnapshot(snap);
			if (more)
			{
				/* past the bound: the batched path */
				MemoryContextSwitchTo(old);
				MemoryContextDelete(work);
				PG_RETURN_NULL();
			}
		}

		/* the customers, by dense index in id order */
		cust = palloc(sizeof(int64) * Max(nv, 1));
		for (int64 i = 0; i < nv; i++)
			cust[i] = v[i].c;
		rb_sort_int64(cust, nv);
		for (int64 i = 0; i < nv; i++)
			if (ncust == 0 || cust[ncust - 1] != cust[i])
				cust[ncust++] = cust[i];
		for (int64 i = 0; i < nv; i++)
		{
			int32		lo = 0,
						hi = ncust - 1;

			while (lo < hi)
			{
				int32		mid = lo + (hi - lo) / 2;

				if (cust[mid] < v[i].c)
					lo = mid + 1;
				else
					hi = mid;
			}
			v[i].ci = lo;
		}
	}

	/* the samples: each product's first `sample` rows by (h, customer_id) */
	rb_sort_items(v, nv);
	like_samples_index(v, sizeof(RbItem), nv, ncust, sample, &ls);

	/* the lists */
	acc = palloc0(sizeof(double) * Max(ncust, 1));
	touched = palloc(sizeof(int32) * Max(ncust, 1));
	vec = palloc(sizeof(LikeEntry) * Max(ncust, 1));
	rb_begin(&b, "customer_neighbour", 3);
	for (int32 c = 0; c < ncust; c++)
	{
		/* in neighbour id order: the primary key's build finds them sorted */
		int			n = like_customer_list(&ls, c, cust, acc, touched, vec, top);

		for (int m = 0; m < n; m++)
		{
			TupleTableSlot *row = rb_slot(&b);

			row->tts_values[0] = Int64GetDatum(cust[c]);
			row->tts_values[1] = Int64GetDatum(vec[m].id);
			row->tts_values[2] = Float4GetDatum(vec[m].score);
			memset(row->tts_isnull, 0, sizeof(bool) * 3);
			rb_store(&b);
		}
		if ((c & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	rows = rb_end(&b);
	if (prof != NULL)
		MemoryContextDelete(prof->cxt);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(work);
	PG_RETURN_INT64(rows);
}

/* ---------------------------------------------------------------------
 * shop._rebuild_popularity_sums(t_ref timestamptz, span interval,
 *     ep timestamptz, half_life float8)
 *   -> SETOF (product_id bigint, pop real, mass float8, ref_at timestamptz)
 *
 * The rows shop._popularity_refresh() (every product) aggregates in its
 * CTE "norm", for shop._rebuild_popularity: per product, over its events
 * (a line of an order that counts or is folded into
 * shop.copurchase_order, a view) later than t_ref - span:
 *	 pop  = (S / (S + 10))::real, S the sum of wt * exp(-ln(2) * age / half_life),
 *			age the seconds from ref_at back to the event, wt 1 for a line of
 *			a counted order, 0 for one of an order only folded, 0.2 for a view;
 *	 mass = the sum of mw * exp(ln(2) * (at - ep) / half_life), mw 1 for a line
 *			of a folded order, 0 otherwise, 0.2 for a view;
 * ref_at = greatest(t_ref, the latest event with wt > 0), the same in
 * every row; products whose events all have wt = 0 are left out (HAVING
 * sum(wt) > 0).  Each term is computed as the SQL computes it (the age
 * in seconds is the exact microseconds / 10^6 rounded to a double, as
 * extract(epoch ...)::float8 is); only the order in which a product's
 * terms are added up may differ (the SQL's is the hash join's), so a sum
 * may differ from the SQL's in its last bits.  The SQL joined every order
 * line with its order and the folded orders by hashes and computed each
 * term through numeric intervals (about 1 s of a 100,000-product
 * rebuild); here: the orders later than t_ref - span (shop._counted
 * called once per status) into a hash, the folded orders, every order
 * line and view, all by scans of the tables with the statement's
 * snapshot.
 * Memory: about 40 bytes per order in the window, 8 per line event and
 * 40 per product.
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(shop_rebuild_popularity_sums);

typedef struct RbPopOrder
{
	pg_uuid_t	order_id;		/* hash key */
	TimestampTz at;
	bool		counted;
	bool		folded;
} RbPopOrder;

typedef struct RbPopItem
{
	int64		pid;			/* hash key */
	int32		idx;
} RbPopItem;

typedef struct RbPopEvent
{
	int32		item;
	int32		kind;			/* 0 line of a folded-only order, 1 counted, 2 counted and folded, 3 view */
	TimestampTz at;
} RbPopEvent;

static int32
rb_pop_item(HTAB *items, int64 pid, int32 *nitems)
{
	bool		found;
	RbPopItem  *e = hash_search(items, &pid, HASH_ENTER, &found);

	if (!found)
		e->idx = (*nitems)++;
	return e->idx;
}

Datum
shop_rebuild_popularity_sums(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	TimestampTz t_ref,
				lo,
				ref_at,
				lo2,
				ep;
	Datum		span;
	double		half_life;
	double		ln2 = log(2.0);
	HASHCTL		ctl;
	HTAB	   *orders;
	HTAB	   *items;
	int32		nitems = 0;
	RbPopEvent *ev;
	int64		nev = 0,
				ev_cap = 262144;
	int64	   *pid;
	double	   *s;
	double	   *mass;
	bool	   *has_wt;
	RbCounted	rc;
	Snapshot	snap;
	RbScan		sc;
	Datum		line_order;
	int64		line_product;
	HASH_SEQ_STATUS hs;
	RbPopItem  *it;
	RbHistory  *h = rb_hist_get();

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		return (Datum) 0;		/* no events (t_ref NULL): no rows */
	t_ref = PG_GETARG_TIMESTAMPTZ(0);
	span = PG_GETARG_DATUM(1);
	ep = PG_GETARG_TIMESTAMPTZ(2);
	half_life = PG_GETARG_FLOAT8(3);
	lo = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval, TimestampTzGetDatum(t_ref), span));

	work = AllocSetContextCreate(CurrentMemoryContext, "shop rebuild popularity", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(work);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(RbPopItem);
	ctl.hcxt = work;
	items = hash_create("shop rebuild popularity products", 65536, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ev = palloc_extended(sizeof(RbPopEvent) * ev_cap, MCXT_ALLOC_HUGE);

	snap = GetActiveSnapshot();
	if (h != NULL)
	{
		/*
		 * The lines of the history's orders in the window: in the rebuild
		 * every counted order is folded (kind 2) and no other is
		 */
		int32	   *map = palloc_extended(sizeof(int32) * Max(h->nitems, 1), MCXT_ALLOC_HUGE);

		memset(map, -1, sizeof(int32) * Max(h->nitems, 1));
		for (int64 i = 0; i < h->nlines; i++)
		{
			RbOrder    *o = &h->orders[h->line_order[i]];
			int32		li = h->line_item[i];

			if (o->at <= lo)
				continue;
			if (nev == ev_cap)
			{
				ev_cap *= 2;
				ev = repalloc_huge(ev, sizeof(RbPopEvent) * ev_cap);
			}
			if (map[li] < 0)
				map[li] = rb_pop_item(items, h->pid[li], &nitems);
			ev[nev].item = map[li];
			ev[nev].kind = 2;
			ev[nev].at = o->at;
			nev++;
		}
		pfree(map);
	}
	else
	{
		/* the orders of the window */
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(pg_uuid_t);
		ctl.entrysize = sizeof(RbPopOrder);
		ctl.hcxt = work;
		orders = hash_create("shop rebuild popularity orders", 65536, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		rb_counted_init(&rc);
		rb_scan_start(&sc, "order", snap, (const char *const[]) {"order_id", "created_at", "status", NULL});
		while (rb_scan_next(&sc))
		{
			bool		n1,
						n2,
						n3;
			Datum		id = rb_scan_col(&sc, 0, &n1);
			Datum		at = rb_scan_col(&sc, 1, &n2);
			Datum		st = rb_scan_col(&sc, 2, &n3);
			RbPopOrder *o;

			if (n1 || n2 || DatumGetTimestampTz(at) <= lo)
				continue;
			o = hash_search(orders, DatumGetUUIDP(id), HASH_ENTER, NULL);
			o->at = DatumGetTimestampTz(at);
			o->counted = !n3 && rb_counted(&rc, st);
			o->folded = false;
		}
		rb_scan_close(&sc);

		/* the folded orders */
		rb_scan_start(&sc, "copurchase_order", snap, (const char *const[]) {"order_id", NULL});
		while (rb_scan_next(&sc))
		{
			bool		isnull;
			Datum		d = rb_scan_col(&sc, 0, &isnull);
			RbPopOrder *o;

			if (isnull)
				continue;
			o = hash_search(orders, DatumGetUUIDP(d), HASH_FIND, NULL);
			if (o != NULL)
				o->folded = true;
		}
		rb_scan_close(&sc);

		/* every line of an order that counts or is folded */
		rb_scan_start(&sc, "order_line", snap, (const char *const[]) {"order_id", "product_id", NULL});
		while (rb_scan_next_line(&sc, &line_order, &line_product))
		{
			RbPopOrder *o = hash_search(orders, DatumGetUUIDP(line_order), HASH_FIND, NULL);

			if (o == NULL || !(o->counted || o->folded))
				continue;
			if (nev == ev_cap)
			{
				ev_cap *= 2;
				ev = repalloc_huge(ev, sizeof(RbPopEvent) * ev_cap);
			}
			ev[nev].item = rb_pop_item(items, line_product, &nitems);
			ev[nev].kind = o->counted ? (o->folded ? 2 : 1) : 0;
			ev[nev].at = o->at;
			nev++;
			if ((nev & 0xFFFF) == 0)
				CHECK_FOR_INTERRUPTS();
		}
		rb_scan_close(&sc);
		hash_destroy(orders);
	}

	/* every view of the window */
	rb_scan_start(&sc, "view_event", snap, (const char *const[]) {"product_id", "viewed_at", NULL});
	while (rb_scan_next(&sc))
	{
		bool		n1,
					n2;
		Datum		p = rb_scan_col(&sc, 0, &n1);
		Datum		at = rb_scan_col(&sc, 1, &n2);

		if (n1 || n2 || DatumGetTimestampTz(at) <= lo)
			continue;
		if (nev == ev_cap)
		{
			ev_cap *= 2;
			ev = repalloc_huge(ev, sizeof(RbPopEvent) * ev_cap);
		}
		ev[nev].item = rb_pop_item(items, DatumGetInt64(p), &nitems);
		ev[nev].kind = 3;
		ev[nev].at = DatumGetTimestampTz(at);
		nev++;
		if ((nev & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	rb_scan_close(&sc);

	/* ref_at: greatest(t_ref, the latest event with wt > 0) */
	ref_at = t_ref;
	for (int64 i = 0; i < nev; i++)
		if (ev[i].kind != 0 && ev[i].at > ref_at)
			ref_at = ev[i].at;
	lo2 = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval, TimestampTzGetDatum(ref_at), span));

	pid = palloc_extended(sizeof(int64) * Max(nitems, 1), MCXT_ALLOC_HUGE);
	s = palloc_extended(sizeof(double) * Max(nitems, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	mass = palloc_extended(sizeof(double) * Max(nitems, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	has_wt = palloc_extended(sizeof(bool) * Max(nitems, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	hash_seq_init(&hs, items);
	while ((it = hash_seq_search(&hs)) != NULL)
		pid[it->idx] = it->pid;

	/*
	 * The terms, as the SQL computes them: wt * exp(-ln(2) * age /
	 * half_life) and mw * exp(ln(2) * (at - ep) / half_life), the seconds
	 * of an age the exact microseconds / 10^6 rounded to a double.
	 */
	for (int64 i = 0; i < nev; i++)
	{
		RbPopEvent *e = &ev[i];
		double		wt,
					mw;

		if (e->at <= lo2)
			continue;
		switch (e->kind)
		{
			case 0:
				wt = 0.0;
				mw = 1.0;
				break;
			case 1:
				wt = 1.0;
				mw = 0.0;
				break;
			case 2:
				wt = 1.0;
				mw = 1.0;
				break;
			default:
				wt = 0.2;
				mw = 0.2;
				break;
		}
		if (wt > 0)
			has_wt[e->item] = true;
		s[e->item] += wt * exp(-ln2 * ((double) (ref_at - e->at) / 1000000.0) / half_life);
		mass[e->item] += mw * exp(ln2 * ((double) (e->at - ep) / 1000000.0) / half_life);
		if ((i & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}

	MemoryContextSwitchTo(caller);
	for (int32 x = 0; x < nitems; x++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		if (!has_wt[x])
			continue;
		values[0] = Int64GetDatum(pid[x]);
		values[1] = Float4GetDatum((float4) (s[x] / (s[x] + 10)));
		values[2] = Float8GetDatum(mass[x]);
		values[3] = TimestampTzGetDatum(ref_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	MemoryContextDelete(work);
	return (Datum) 0;
}
