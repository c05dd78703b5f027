/*-------------------------------------------------------------------------
 *
 * ssverify.c
 *	  shop.search_verify: check a shop_search index against its table,
 *	  in the spirit of amcheck's heapallindexed.
 *
 * Every row visible to a fresh snapshot must have exactly one live index
 * document, under the root TID of its HOT chain, whose stored values
 * (category, price, brand hash, rating, stock, popularity, field lengths)
 * equal what the index expression gives now.  Every live index document
 * must point at a used heap line pointer.  Documents of rows that are
 * dead but not yet vacuumed are not reported: VACUUM removes them.
 *
 * Problems come back as rows (kind, ctid, detail):
 *   missing    a visible row has no index document
 *   duplicate  two live documents carry the same TID
 *   mismatch   the stored values differ from the row's
 *   extra      a document points at an unused or nonexistent line pointer
 *   corrupt    a page or header is not what the format says
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "shop.h"
#include "ssearch.h"

PG_FUNCTION_INFO_V1(shop_search_verify);

typedef struct VEntry
{
	ItemPointerData tid;
	SsDoc		doc;
	bool		seen;
} VEntry;

typedef struct VState
{
	VEntry	   *e;
	int			n;
	int			max;
	Tuplestorestate *ts;
	TupleDesc	desc;
	const char *language;
	MemoryContext tmp;
	int64		problems;
} VState;

static void
report(VState *vs, const char *kind, ItemPointer tid, const char *detail)
{
	Datum		v[3];
	bool		nulls[3] = {false, false, false};

	v[0] = CStringGetTextDatum(kind);
	if (tid)
	{
		ItemPointer t = palloc(sizeof(ItemPointerData));

		*t = *tid;
		v[1] = PointerGetDatum(t);
	}
	else
		nulls[1] = true;
	v[2] = CStringGetTextDatum(detail);
	tuplestore_putvalues(vs->ts, vs->desc, v, nulls);
	vs->problems++;
}

static void
add_entry(VState *vs, const SsDoc *doc)
{
	if (vs->n >= vs->max)
	{
		vs->max *= 2;
		vs->e = repalloc_huge(vs->e, sizeof(VEntry) * vs->max);
	}
	vs->e[vs->n].tid = doc->tid;
	vs->e[vs->n].doc = *doc;
	vs->e[vs->n].seen = false;
	vs->n++;
}

static int
ventry_cmp(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) &((const VEntry *) a)->tid,
							  (ItemPointer) &((const VEntry *) b)->tid);
}

static bool
docs_equal(const SsDoc *a, const SsDoc *b)
{
	uint8		mask = (uint8) ~SS_DOC_DEAD;

	return (a->flags & mask) == (b->flags & mask) &&
		a->category_id == b->category_id &&
		a->price_cents == b->price_cents &&
		a->brand_hash == b->brand_hash &&
		a->rating == b->rating &&
		a->popularity == b->popularity &&
		a->logpop == b->logpop &&
		memcmp(a->len, b->len, sizeof(a->len)) == 0;
}

static void
verify_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
				bool tupleIsAlive, void *state)
{
	VState	   *vs = (VState *) state;
	VEntry		key;
	VEntry	   *hit;
	MemoryContext old;

	if (isnull[0])
		return;
	key.tid = *tid;
	hit = bsearch(&key, vs->e, vs->n, sizeof(VEntry), ventry_cmp);
	if (hit == NULL)
	{
		report(vs, "missing", tid, "row has no index document");
		return;
	}
	hit->seen = true;
	old = MemoryContextSwitchTo(vs->tmp);
	{
		SsDocData	d;

		SsDocFromDatum(values[0], vs->language, &d);
		if (!docs_equal(&d.doc, &hit->doc))
		{
			MemoryContextSwitchTo(old);
			report(vs, "mismatch", tid, "stored values differ from the row");
			old = MemoryContextSwitchTo(vs->tmp);
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(vs->tmp);
}

/*
 * shop.search_verify(index regclass) -> TABLE(kind text, ctid tid, detail text):
 * no rows when the index agrees with its table.
 */
Datum
shop_search_verify(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			indexoid = PG_GETARG_OID(0);
	Relation	index,
				heap;
	SsMetaPageData meta;
	VState		vs;
	IndexInfo  *ii;
	BlockNumber blk;
	BlockNumber nheap;

	InitMaterializedSRF(fcinfo, 0);
	memset(&vs, 0, sizeof(vs));
	vs.ts = rsinfo->setResult;
	vs.desc = rsinfo->setDesc;
	vs.max = 1024;
	vs.e = palloc(sizeof(VEntry) * vs.max);
	vs.tmp = AllocSetContextCreate(CurrentMemoryContext, "shop_search verify", ALLOCSET_DEFAULT_SIZES);

	index = index_open(indexoid, AccessShareLock);
	if (index->rd_indam == NULL || index->rd_indam->amgettuple != ssgettuple)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a shop_search index", RelationGetRelationName(index))));
	heap = table_open(index->rd_index->indrelid, AccessShareLock);
	vs.language = SsGetLanguage(index);
	SsReadMeta(index, &meta);

	/* every live document of the index */
	for (uint32 s = 0; s < meta.nsegments; s++)
	{
		SsSegHeader hdr;

		SsReadSegHeader(index, meta.segments[s].header, &hdr);
		if (hdr.ndocs != meta.segments[s].ndocs ||
			hdr.docstart + hdr.ndocpages > RelationGetNumberOfBlocks(index))
		{
			report(&vs, "corrupt", NULL, psprintf("segment %u header disagrees with the metapage", s));
			continue;
		}
		for (uint32 d = 0; d < hdr.ndocs; d++)
		{
			SsDoc		doc;

			SsReadDoc(index, &hdr, d, &doc);
			if (!(doc.flags & SS_DOC_DEAD))
				add_entry(&vs, &doc);
		}
	}
	blk = meta.pending_head;
	while (blk != InvalidBlockNumber)
	{
		Buffer		buf = ReadBuffer(index, blk);
		Page		page;
		OffsetNumber maxoff;

		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		if (!(SsPageGetOpaque(page)->flags & SS_PAGE_PENDING))
		{
			UnlockReleaseBuffer(buf);
			report(&vs, "corrupt", NULL, psprintf("block %u in the pending list is not a pending page", blk));
			break;
		}
		maxoff = PageGetMaxOffsetNumber(page);
		for (OffsetNumber off = FirstOffsetNumber; off <= maxoff; off++)
		{
			SsPendItem *it = (SsPendItem *) PageGetItem(page, PageGetItemId(page, off));

			if (!(it->doc.flags & SS_DOC_DEAD))
				add_entry(&vs, &it->doc);
		}
		blk = SsPageGetOpaque(page)->next;
		UnlockReleaseBuffer(buf);
	}
	if (vs.n > 1)
		qsort(vs.e, vs.n, sizeof(VEntry), ventry_cmp);
	for (int i = 1; i < vs.n; i++)
		if (ItemPointerEquals(&vs.e[i].tid, &vs.e[i - 1].tid))
			report(&vs, "duplicate", &vs.e[i].tid, "two live documents for one row");

	/* every row visible now, by its HOT chain root */
	ii = BuildIndexInfo(index);
	ii->ii_Concurrent = true;	/* MVCC snapshot: rows visible now */
	table_index_build_scan(heap, index, ii, false, false, verify_callback, &vs, NULL);

	/* documents no visible row claimed: fine if the row is merely dead */
	nheap = RelationGetNumberOfBlocks(heap);
	for (int i = 0; i < vs.n; i++)
	{
		BlockNumber hb;
		OffsetNumber ho;
		Buffer		buf;
		Page		page;
		bool		bad;

		if (vs.e[i].seen)
			continue;
		hb = ItemPointerGetBlockNumber(&vs.e[i].tid);
		ho = ItemPointerGetOffsetNumber(&vs.e[i].tid);
		if (hb >= nheap)
		{
			report(&vs, "extra", &vs.e[i].tid, "document points past the end of the table");
			continue;
		}
		buf = ReadBuffer(heap, hb);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		bad = ho > PageGetMaxOffsetNumber(page) || !ItemIdIsUsed(PageGetItemId(page, ho));
		UnlockReleaseBuffer(buf);
		if (bad)
			report(&vs, "extra", &vs.e[i].tid, "document points at an unused line pointer");
	}
	table_close(heap, AccessShareLock);
	index_close(index, AccessShareLock);
	MemoryContextDelete(vs.tmp);
	return (Datum) 0;
}
