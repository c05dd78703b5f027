/*
 * recowrite.c: the refresh's score updates written to the heap directly
 *
 * A refresh rewrites many rows whose scores moved (every row of
 * shop.copurchase when the scoring total moved: 382,000 at 100,000
 * products; the rows of the customers-like-you lists that moved).  They
 * were written by one UPDATE ... FROM unnest(tids, ...) per batch: a TID
 * scan per row under a nested loop, about 2.5 us of executor work around
 * each heap_update.  Here the same rows are updated by heap_update on the
 * ctid read with them, the key columns checked on the stored version, and
 * index entries added only when the update is not HOT (as the executor
 * does).  A row not found at its ctid, or not matching its key, is left to
 * the caller, which writes it by key through SPI as before.
 *
 * Used only on plain tables without triggers, row level security, CHECK
 * constraints, generated columns, expression, partial or exclusion
 * indexes, or deferred uniqueness (ShopTidWriterOpen returns NULL
 * otherwise, and the caller keeps the SPI path): shop.copurchase and
 * shop.customer_neighbour have a primary key and nothing else.
 *
 * The refresh's customers-like-you part also deletes and inserts through
 * it (ShopTidWriterDelete, ShopTidWriterInsert): the lists' dropped and
 * new rows, and the changed customers' profiles in shop.customer_item
 * (a weight that moved is an update there: not HOT, since
 * customer_item_sample_idx includes the weight, so every index gets the
 * new version's entry).  A delete leaves the index entries to VACUUM, as
 * a DELETE does; an insert adds one to every index, unique ones checked.
 * A writer takes one snapshot for its fetches (it took one per row).
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "storage/bufmgr.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "recowrite.h"

struct ShopTidWriter
{
	Relation	rel;
	int			nidx;
	Relation   *idx;
	IndexInfo **info;
	AttrNumber	key1,
				key2,
				cola,
				colb,
				extra;			/* int8 column only inserts write */
	bool		insertable;		/* every column is one of the above */
	TupleTableSlot *slot;
	Snapshot	snap;			/* what heap_fetch reads with, taken once */
	Datum	   *values;
	bool	   *nulls;
	bool	   *repl;
	/* one index whose entries are added at the close, sorted (DeferIndex) */
	int			defer;			/* its place in idx, or -1 */
	int			(*defer_cmp) (const void *, const void *);
	ShopTidPending *pend;
	int64		npend,
				pendcap;
};

static AttrNumber
tid_writer_att(Relation rel, const char *name, Oid type)
{
	AttrNumber	a = get_attnum(RelationGetRelid(rel), name);

	if (a == InvalidAttrNumber || a <= 0 ||
		TupleDescAttr(RelationGetDescr(rel), a - 1)->atttypid != type)
		return InvalidAttrNumber;
	return a;
}

/*
 * A writer for shop.<relname>: int8 key columns key1, key2; float4 value
 * columns cola (may be NULL: not written) and colb.  NULL when the table
 * is not one this path can write.
 */
ShopTidWriter *
ShopTidWriterOpen(const char *relname, const char *key1, const char *key2,
				  const char *cola, const char *colb)
{
	return ShopTidWriterOpenInsert(relname, key1, key2, cola, colb, NULL);
}

/*
 * The same, able to insert rows too (ShopTidWriterInsert) when the named
 * columns, with the int8 column extra (may be NULL), are every column of
 * the table and it has no CHECK constraint or generated column (NULL
 * otherwise).
 */
ShopTidWriter *
ShopTidWriterOpenInsert(const char *relname, const char *key1, const char *key2,
						const char *cola, const char *colb, const char *extra)
{
	Oid			nsp = get_namespace_oid("shop", false);
	Oid			relid = get_relname_relid(relname, nsp);
	Relation	rel;
	ShopTidWriter *w;
	List	   *idxs;
	ListCell   *lc;
	int			natts;

	if (!OidIsValid(relid))
		return NULL;
	rel = table_open(relid, RowExclusiveLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->trigdesc != NULL ||
		rel->rd_rel->relrowsecurity ||
		(RelationGetDescr(rel)->constr != NULL &&
		 (RelationGetDescr(rel)->constr->num_check > 0 ||
		  RelationGetDescr(rel)->constr->has_generated_stored)))
	{
		table_close(rel, RowExclusiveLock);
		return NULL;
	}
	w = palloc0(sizeof(ShopTidWriter));
	w->rel = rel;
	w->key1 = tid_writer_att(rel, key1, INT8OID);
	w->key2 = tid_writer_att(rel, key2, INT8OID);
	w->cola = cola ? tid_writer_att(rel, cola, FLOAT4OID) : InvalidAttrNumber;
	w->colb = tid_writer_att(rel, colb, FLOAT4OID);
	w->extra = extra ? tid_writer_att(rel, extra, INT8OID) : InvalidAttrNumber;
	if (w->key1 == InvalidAttrNumber || w->key2 == InvalidAttrNumber ||
		(cola && w->cola == InvalidAttrNumber) || w->colb == InvalidAttrNumber ||
		(extra && w->extra == InvalidAttrNumber))
	{
		table_close(rel, RowExclusiveLock);
		pfree(w);
		return NULL;
	}
	idxs = RelationGetIndexList(rel);
	w->idx = palloc(sizeof(Relation) * Max(list_length(idxs), 1));
	w->info = palloc(sizeof(IndexInfo *) * Max(list_length(idxs), 1));
	foreach(lc, idxs)
	{
		Relation	ir = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *ii = BuildIndexInfo(ir);

		w->idx[w->nidx] = ir;
		w->info[w->nidx] = ii;
		w->nidx++;
		if (ii->ii_Expressions != NIL || ii->ii_Predicate != NIL ||
			ii->ii_ExclusionOps != NULL || !ir->rd_index->indimmediate)
		{
			ShopTidWriterClose(w);
			return NULL;
		}
	}
	list_free(idxs);
	natts = RelationGetDescr(rel)->natts;
	w->slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
	w->values = palloc0(sizeof(Datum) * natts);
	w->nulls = palloc0(sizeof(bool) * natts);
	w->repl = palloc0(sizeof(bool) * natts);
	{
		/* inserts: every live column named (nothing left to a default) */
		int			named = 3 + (cola != NULL) + (extra != NULL);
		int			live = 0;

		for (int i = 0; i < natts; i++)
		{
			if (TupleDescAttr(RelationGetDescr(rel), i)->attisdropped)
				w->nulls[i] = true;
			else
				live++;
		}
		w->insertable = (live == named);
	}
	w->repl[w->colb - 1] = true;
	if (w->cola != InvalidAttrNumber)
		w->repl[w->cola - 1] = true;
	w->defer = -1;

	/*
	 * One snapshot for every fetch of the writer (it was taken per row: a
	 * GetSnapshotData each).  The rows it writes were read under the
	 * refresh lock before it was opened, and nothing else writes these
	 * tables, so a later snapshot would find the same versions; a row not
	 * found is left to the caller's statement by key anyway.
	 */
	w->snap = RegisterSnapshot(GetLatestSnapshot());
	return w;
}

/* whether ShopTidWriterInsert can write the table's rows */
bool
ShopTidWriterCanInsert(const ShopTidWriter *w)
{
	return w->insertable;
}

/*
 * The entries of the index indexname (of the writer's table) are added at
 * ShopTidWriterClose instead of with each row, in the order of cmp over
 * ShopTidPending (the row's key columns and extra), so that they go into
 * the index in its key order: a refresh's profile rows are written by
 * customer, and their entries in the sample index, keyed by product, went
 * each to another leaf page.  The index holds the same entries either way.
 * Only for an index that is not unique (its entries are not checked
 * against each other); false (nothing deferred) otherwise, or when the
 * writer cannot rebuild a row from those columns (ShopTidWriterCanInsert).
 */
bool
ShopTidWriterDeferIndex(ShopTidWriter *w, const char *indexname,
						int (*cmp) (const void *, const void *))
{
	if (!w->insertable)
		return false;
	for (int i = 0; i < w->nidx; i++)
		if (strcmp(RelationGetRelationName(w->idx[i]), indexname) == 0 &&
			!w->idx[i]->rd_index->indisunique)
		{
			w->defer = i;
			w->defer_cmp = cmp;
			return true;
		}
	return false;
}

/* the deferred index's entries, sorted, added (ShopTidWriterDeferIndex) */
static void
tid_writer_flush_deferred(ShopTidWriter *w)
{
	TupleDesc	desc = RelationGetDescr(w->rel);
	Relation	ir;
	IndexInfo  *ii;
	Datum		iv[INDEX_MAX_KEYS];
	bool		in[INDEX_MAX_KEYS];

	if (w->defer < 0 || w->npend == 0)
		return;
	ir = w->idx[w->defer];
	ii = w->info[w->defer];
	qsort(w->pend, w->npend, sizeof(ShopTidPending), w->defer_cmp);
	for (int64 i = 0; i < w->npend; i++)
	{
		ShopTidPending *e = &w->pend[i];
		HeapTuple	nt;

		if ((i & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
		w->values[w->key1 - 1] = Int64GetDatum(e->k1);
		w->values[w->key2 - 1] = Int64GetDatum(e->k2);
		if (w->cola != InvalidAttrNumber)
			w->values[w->cola - 1] = Float4GetDatum(e->a);
		w->values[w->colb - 1] = Float4GetDatum(e->b);
		if (w->extra != InvalidAttrNumber)
			w->values[w->extra - 1] = Int64GetDatum(e->x);
		nt = heap_form_tuple(desc, w->values, w->nulls);
		nt->t_self = e->tid;
		ExecStoreHeapTuple(nt, w->slot, false);
		FormIndexDatum(ii, w->slot, NULL, iv, in);
		index_insert(ir, iv, in, &e->tid, w->rel, UNIQUE_CHECK_NO, e->unchanged, ii);
		ExecClearTuple(w->slot);
		heap_freetuple(nt);
	}
	w->npend = 0;
}

void
ShopTidWriterClose(ShopTidWriter *w)
{
	tid_writer_flush_deferred(w);
	if (w->pend)
		pfree(w->pend);
	for (int i = 0; i < w->nidx; i++)
		index_close(w->idx[i], RowExclusiveLock);
	if (w->slot)
		ExecDropSingleTupleTableSlot(w->slot);
	if (w->snap)
		UnregisterSnapshot(w->snap);
	table_close(w->rel, RowExclusiveLock);
	/* (the SPI statements after this see the rows written) */
	CommandCounterIncrement();
}

/*
 * The row at tid, when it is visible and its keys are k1, k2 (pinned in
 * *buf); false (nothing pinned) otherwise.
 */
static bool
tid_writer_fetch(ShopTidWriter *w, ItemPointer tid, int64 k1, int64 k2,
				 HeapTuple old, Buffer *buf)
{
	bool		isnull;
	bool		ok;
	Datum		d;

	if (!ItemPointerIsValid(tid))
		return false;
	old->t_self = *tid;
	if (!heap_fetch(w->rel, w->snap, old, buf, false))
		return false;
	d = heap_getattr(old, w->key1, RelationGetDescr(w->rel), &isnull);
	ok = !isnull && DatumGetInt64(d) == k1;
	if (ok)
	{
		d = heap_getattr(old, w->key2, RelationGetDescr(w->rel), &isnull);
		ok = !isnull && DatumGetInt64(d) == k2;
	}
	if (!ok)
	{
		ReleaseBuffer(*buf);
		return false;
	}
	return true;
}

/* a new version's (or a new row's) entries in every index */
static void
tid_writer_index(ShopTidWriter *w, HeapTuple nt, bool unchanged)
{
	Datum		iv[INDEX_MAX_KEYS];
	bool		in[INDEX_MAX_KEYS];

	if (w->defer >= 0)
	{
		/* the deferred index's entry: the row's columns, for the close */
		TupleDesc	desc = RelationGetDescr(w->rel);
		ShopTidPending *e;
		bool		isnull;

		if (w->npend == w->pendcap)
		{
			w->pendcap = w->pendcap ? w->pendcap * 2 : 1024;
			w->pend = w->pend ? repalloc_huge(w->pend, sizeof(ShopTidPending) * w->pendcap)
				: palloc(sizeof(ShopTidPending) * w->pendcap);
		}
		e = &w->pend[w->npend++];
		e->tid = nt->t_self;
		e->k1 = DatumGetInt64(heap_getattr(nt, w->key1, desc, &isnull));
		e->k2 = DatumGetInt64(heap_getattr(nt, w->key2, desc, &isnull));
		e->a = w->cola != InvalidAttrNumber ?
			DatumGetFloat4(heap_getattr(nt, w->cola, desc, &isnull)) : 0;
		e->b = DatumGetFloat4(heap_getattr(nt, w->colb, desc, &isnull));
		e->x = w->extra != InvalidAttrNumber ?
			DatumGetInt64(heap_getattr(nt, w->extra, desc, &isnull)) : 0;
		e->unchanged = unchanged;
	}
	ExecStoreHeapTuple(nt, w->slot, false);
	for (int i = 0; i < w->nidx; i++)
	{
		if (i == w->defer)
			continue;
		FormIndexDatum(w->info[i], w->slot, NULL, iv, in);
		index_insert(w->idx[i], iv, in, &nt->t_self, w->rel,
					 w->idx[i]->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 unchanged, w->info[i]);
	}
	ExecClearTuple(w->slot);
}

/*
 * Delete the row at tid whose keys are k1, k2 (its index entries stay
 * for VACUUM, as a DELETE leaves them).  False when there is no such row
 * there; nothing is written then.
 */
bool
ShopTidWriterDelete(ShopTidWriter *w, ItemPointer tid, int64 k1, int64 k2)
{
	HeapTupleData old;
	Buffer		buf;
	TM_Result	r;
	TM_FailureData tmfd;

	if (!tid_writer_fetch(w, tid, k1, k2, &old, &buf))
		return false;
	ReleaseBuffer(buf);
	r = heap_delete(w->rel, tid, GetCurrentCommandId(true), InvalidSnapshot,
					true, &tmfd, false);
	return r == TM_Ok;
}

/*
 * Insert a row: the key columns k1, k2, cola = a (when the writer has
 * one), colb = b, and the int8 column extra (ShopTidWriterOpenInsert)
 * = x; its entries in every index, unique ones checked (a duplicate key
 * raises the error an INSERT would).
 */
void
ShopTidWriterInsert(ShopTidWriter *w, int64 k1, int64 k2, float4 a, float4 b, int64 x)
{
	TupleDesc	desc = RelationGetDescr(w->rel);
	HeapTuple	nt;

	if (!w->insertable)
		elog(ERROR, "shop: table %s cannot take rows from this writer", RelationGetRelationName(w->rel));
	w->values[w->key1 - 1] = Int64GetDatum(k1);
	w->values[w->key2 - 1] = Int64GetDatum(k2);
	if (w->cola != InvalidAttrNumber)
		w->values[w->cola - 1] = Float4GetDatum(a);
	w->values[w->colb - 1] = Float4GetDatum(b);
	if (w->extra != InvalidAttrNumber)
		w->values[w->extra - 1] = Int64GetDatum(x);
	nt = heap_form_tuple(desc, w->values, w->nulls);
	heap_insert(w->rel, nt, GetCurrentCommandId(true), 0, NULL);
	tid_writer_index(w, nt, false);
	heap_freetuple(nt);
}

/*
 * Update the row at tid whose keys are k1, k2: cola = a (when the writer
 * has one), colb = b.  False when there is no such row there (left for
 * the caller to write by key); nothing is written then.
 */
bool
ShopTidWriterUpdate(ShopTidWriter *w, ItemPointer tid, int64 k1, int64 k2, float4 a, float4 b)
{
	HeapTupleData old;
	Buffer		buf;
	HeapTuple	nt;
	TM_Result	r;
	TM_FailureData tmfd;
	LockTupleMode lockmode;

	if (!tid_writer_fetch(w, tid, k1, k2, &old, &buf))
		return false;
	if (w->cola != InvalidAttrNumber)
		w->values[w->cola - 1] = Float4GetDatum(a);
	w->values[w->colb - 1] = Float4GetDatum(b);
	nt = heap_modify_tuple(&old, RelationGetDescr(w->rel), w->values, w->nulls, w->repl);
	ReleaseBuffer(buf);

	r = heap_update(w->rel, tid, nt, GetCurrentCommandId(true), InvalidSnapshot,
					true, &tmfd, &lockmode);
	if (r != TM_Ok)
	{
		/* moved or gone since it was read (the refresh lock makes this
		 * unexpected): the caller's statement by key finds it */
		heap_freetuple(nt);
		return false;
	}
	if (!HeapTupleIsHeapOnly(nt))
		tid_writer_index(w, nt, true);
	heap_freetuple(nt);
	return true;
}
