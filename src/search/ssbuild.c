/*-------------------------------------------------------------------------
 *
 * ssbuild.c
 *	  shop_search index build and insert.
 *
 * CREATE INDEX tokenizes every row into an in-memory segment builder (a
 * hash of term -> posting list, sswrite.c); when the builder passes
 * maintenance_work_mem it is written out as a segment and a new one
 * starts, so a build never needs more memory than that.  Pages are written
 * through shared buffers and WAL-logged at the end with log_newpage_range.
 *
 * aminsert appends the tokenized row to the pending list under the
 * metapage's exclusive lock, with generic WAL (the tail page and the
 * metapage, or a fresh page linked behind the tail).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "access/tableam.h"
#include "access/xloginsert.h"
#include "catalog/index.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/smgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "shop.h"
#include "ssearch.h"

/* ---- metapage ---- */

/*
 * The generation a new build starts from (issue 12, hostile7).  The
 * backend caches of a segment's data (impact lists, window popularity,
 * sort keys, facet counts) name it by (relation file, header block,
 * serial), which must then name one segment for good.  A build started
 * every index at generation 0, and TRUNCATE of a table created or
 * truncated earlier in the same transaction truncates its index in place
 * (same relation file) and builds it again: the folds of the new
 * documents wrote segments of the same header blocks and serials as the
 * ones before, and a backend that had searched the earlier ones ranked
 * the new ones with their data (rows missing from a ranked page).  A
 * build starts past every generation an earlier build of this backend
 * can have reached (2^30 folds), and past the clock's microseconds so
 * that the value says nothing of how many builds there were; only this
 * backend can rebuild a relation file in place (it is its transaction's).
 */
static uint64
build_generation(void)
{
	static uint64 last = 0;
	uint64		g = (uint64) Max(GetCurrentTimestamp(), 0);

	if (g < last + (UINT64CONST(1) << 30))
		g = last + (UINT64CONST(1) << 30);
	last = g;
	return g;
}

static void
init_meta(Page page, Relation index)
{
	SsMetaPage meta;

	SsInitPage(page, SS_PAGE_META);
	meta = SsPageGetMeta(page);
	memset(meta, 0, sizeof(SsMetaPageData));
	meta->magic = SS_MAGIC;
	meta->version = SS_VERSION;
	strlcpy(meta->language, SsGetLanguage(index), sizeof(meta->language));
	meta->pending_head = InvalidBlockNumber;
	meta->pending_tail = InvalidBlockNumber;
	meta->generation = build_generation();
	((PageHeader) page)->pd_lower = ((char *) meta + sizeof(SsMetaPageData)) - (char *) page;
}

/* ---- INCLUDE columns ---- */

/*
 * An index may INCLUDE columns after its shop.search_doc: the first
 * timestamptz one is the document's created_at, kept in the document
 * record for sorted scans (sssort.c, sort "newest"); the first bigint one
 * is the last tie-break of every sorted scan (ascending, NULLs last:
 * shop.product's product_id) and the first integer one the rating sort's
 * second key (descending, NULLs first: rating_count), both kept in the
 * document record so that a sorted scan orders ties without the table;
 * the first jsonb one holds the document's attributes, indexed as filter
 * terms (below).  Other types are refused when the index is built.
 */
void
SsCheckIncludes(Relation index)
{
	TupleDesc	desc = RelationGetDescr(index);

	for (int i = IndexRelationGetNumberOfKeyAttributes(index); i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->atttypid != TIMESTAMPTZOID && att->atttypid != JSONBOID &&
			att->atttypid != INT8OID && att->atttypid != INT4OID)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("shop_search cannot include column \"%s\" of type %s",
							NameStr(att->attname), format_type_be(att->atttypid)),
					 errdetail("A shop_search index includes only a timestamptz column (the creation time \"newest\" sorts by), a bigint and an integer column (the tie-breaks of sorted scans) and a jsonb column (attributes to filter on)."),
					 errhint("Leave the column out of INCLUDE.")));
	}
}

/* SsIncludeColumn: the position (0-based) of the first INCLUDE column of type typid, or -1 */
int
SsIncludeColumn(Relation index, Oid typid)
{
	TupleDesc	desc = RelationGetDescr(index);

	for (int i = IndexRelationGetNumberOfKeyAttributes(index); i < desc->natts; i++)
		if (TupleDescAttr(desc, i)->atttypid == typid)
			return i;
	return -1;
}

/* the 32-bit hash of an attribute's key that leads its terms */
uint32
SsAttrKeyHash(const char *key, int keylen)
{
	return (uint32) hash_bytes_extended((const unsigned char *) key, keylen, 0);
}

/*
 * SsAttrTerm: the filter term of one attribute, key = scalar value:
 * "\377a", 8 hex digits of a 32-bit hash of the key, then 12 hex digits
 * of a 48-bit hash of the key and the value as jsonb containment compares
 * it (strings by their bytes, numbers by value: 1.0 = 1, booleans, null).
 * The key's hash comes first so that the dictionary keeps the terms of
 * one key together and attribute facets group values by key without
 * reading a row (ssfunc.c).  Nested values (arrays, objects) have no
 * term.  Returns the length, 0 for a value that has none.
 */
int
SsAttrTerm(const char *key, int keylen, const JsonbValue *v, char *out)
{
	StringInfoData buf;
	uint64		h;
	uint32		kh;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, key, keylen);
	appendStringInfoChar(&buf, '\0');
	switch (v->type)
	{
		case jbvString:
			appendStringInfoChar(&buf, 's');
			appendBinaryStringInfo(&buf, v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			appendStringInfoChar(&buf, 'n');
			appendStringInfoString(&buf, numeric_normalize(v->val.numeric));
			break;
		case jbvBool:
			appendStringInfoString(&buf, v->val.boolean ? "bt" : "bf");
			break;
		case jbvNull:
			appendStringInfoChar(&buf, 'z');
			break;
		default:
			pfree(buf.data);
			return 0;
	}
	h = hash_bytes_extended((const unsigned char *) buf.data, buf.len, 0);
	kh = SsAttrKeyHash(key, keylen);
	pfree(buf.data);
	return snprintf(out, SS_FILTER_TERM_MAX, "%ca%08x%012llx", SS_FILTER_MARK, kh,
					(unsigned long long) (h & UINT64CONST(0xFFFFFFFFFFFF)));
}

/* the term of a document with more attributes than it indexes */
int
SsAttrOverflowTerm(char *out)
{
	return snprintf(out, SS_FILTER_TERM_MAX, "%ca*", SS_FILTER_MARK);
}

/*
 * SsForEachAttr: call cb for each top-level key = scalar value pair of a
 * jsonb object, with its filter term; returns false if jb is not an
 * object or a value has no term (nested).
 */
bool
SsForEachAttr(Jsonb *jb, void (*cb) (void *arg, const char *term, int len), void *arg)
{
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	bool		all = true;

	if (!JB_ROOT_IS_OBJECT(jb))
		return false;
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char		term[SS_FILTER_TERM_MAX];
		int			len;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		len = SsAttrTerm(k.val.string.val, k.val.string.len, &v, term);
		if (len == 0)
			all = false;
		else if (cb)
			cb(arg, term, len);
	}
	return all;
}

typedef struct AttrCollect
{
	SsDocData  *d;
	int			n;
	bool		overflow;
} AttrCollect;

static void
attr_collect_cb(void *arg, const char *term, int len)
{
	AttrCollect *ac = (AttrCollect *) arg;
	SsDocData  *d = ac->d;

	if (ac->n >= SS_MAX_DOC_ATTRS)
	{
		ac->overflow = true;
		return;
	}
	d->terms[d->nterms].term = pnstrdup(term, len);
	d->terms[d->nterms].len = len;
	d->terms[d->nterms].tf = 0;
	d->nterms++;
	ac->n++;
}

/* SsDocIncludes: the values of the INCLUDE columns into the document */
void
SsDocIncludes(Relation index, Datum *values, bool *isnull, SsDocData *d)
{
	int			c = SsIncludeColumn(index, TIMESTAMPTZOID);
	int			a = SsIncludeColumn(index, JSONBOID);
	int			t = SsIncludeColumn(index, INT8OID);
	int			n = SsIncludeColumn(index, INT4OID);

	if (c >= 0 && !isnull[c])
	{
		d->doc.created_at = DatumGetTimestampTz(values[c]);
		d->doc.flags |= SS_DOC_HAS_CREATED;
	}
	if (t >= 0 && !isnull[t])
	{
		d->doc.tie_id = DatumGetInt64(values[t]);
		d->doc.flags |= SS_DOC_HAS_TIE;
	}
	if (n >= 0 && !isnull[n])
	{
		d->doc.count = DatumGetInt32(values[n]);
		d->doc.flags |= SS_DOC_HAS_COUNT;
	}
	if (a >= 0 && !isnull[a])
	{
		AttrCollect ac;

		d->terms = repalloc(d->terms, sizeof(SsDocTerm) * (d->nterms + SS_MAX_DOC_ATTRS + 1));
		ac.d = d;
		ac.n = 0;
		ac.overflow = false;
		(void) SsForEachAttr(DatumGetJsonbP(values[a]), attr_collect_cb, &ac);
		if (ac.overflow)
		{
			char		term[SS_FILTER_TERM_MAX];
			int			len = SsAttrOverflowTerm(term);

			d->terms[d->nterms].term = pnstrdup(term, len);
			d->terms[d->nterms].len = len;
			d->terms[d->nterms].tf = 0;
			d->nterms++;
		}
	}
}

/* ---- build ---- */

typedef struct BuildState
{
	SsSegBuilder *sb;
	MemoryContext tmpcxt;
	const char *language;
	double		indtuples;
	Size		maxmem;
	Relation	index;
	SsMetaPageData meta;		/* accumulates the segment list */
} BuildState;

static void
flush_builder(BuildState *bs)
{
	BlockNumber hdr;

	if (SsSegBuilderNDocs(bs->sb) == 0)
		return;
	if (bs->meta.nsegments >= SS_MAX_SEGMENTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("shop_search index would need more than %d segments", SS_MAX_SEGMENTS),
				 errhint("Raise maintenance_work_mem.")));
	hdr = SsSegBuilderWrite(bs->sb, bs->index, false, NULL, NULL, bs->meta.generation);
	bs->meta.segments[bs->meta.nsegments].header = hdr;
	bs->meta.segments[bs->meta.nsegments].ndocs = SsSegBuilderNDocs(bs->sb);
	bs->meta.nsegments++;
	SsSegBuilderFree(bs->sb);
	bs->sb = SsSegBuilderCreate(CurrentMemoryContext);
}

static void
build_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
			   bool tupleIsAlive, void *state)
{
	BuildState *bs = (BuildState *) state;
	MemoryContext old;
	SsDocData	d;

	if (isnull[0])
		return;
	old = MemoryContextSwitchTo(bs->tmpcxt);
	SsDocFromDatum(values[0], bs->language, &d);
	SsDocIncludes(index, values, isnull, &d);
	d.doc.tid = *tid;
	MemoryContextSwitchTo(old);
	SsSegBuilderAdd(bs->sb, &d);
	for (int f = 0; f < SS_NFIELDS; f++)
		bs->meta.sumlen[f] += d.doc.len[f];
	if (d.doc.popularity > bs->meta.max_popularity)
		bs->meta.max_popularity = d.doc.popularity;
	bs->meta.ndocs++;
	bs->indtuples += 1;
	MemoryContextReset(bs->tmpcxt);
	if (SsSegBuilderMemory(bs->sb) > bs->maxmem)
		flush_builder(bs);
}

IndexBuildResult *
ssbuild(Relation heap, Relation index, IndexInfo *indexInfo)
{
	IndexBuildResult *result;
	BuildState	bs;
	double		reltuples;
	Buffer		metabuf;
	Page		metapage;

	if (RelationGetNumberOfBlocks(index) != 0)
		elog(ERROR, "index \"%s\" already contains data", RelationGetRelationName(index));
	SsCheckIncludes(index);

	/* the metapage first, so segments start at block 1 */
	metabuf = SsNewBuffer(index);
	Assert(BufferGetBlockNumber(metabuf) == SS_METAPAGE_BLKNO);
	metapage = BufferGetPage(metabuf);
	init_meta(metapage, index);
	MarkBufferDirty(metabuf);
	UnlockReleaseBuffer(metabuf);

	memset(&bs, 0, sizeof(bs));
	bs.index = index;
	bs.language = SsGetLanguage(index);
	ShopGetStemmer(bs.language);
	bs.tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "shop_search build tuple",
									  ALLOCSET_DEFAULT_SIZES);
	bs.sb = SsSegBuilderCreate(CurrentMemoryContext);
	bs.maxmem = (Size) maintenance_work_mem * 1024;
	memcpy(&bs.meta, SsPageGetMeta(metapage), sizeof(SsMetaPageData));

	reltuples = table_index_build_scan(heap, index, indexInfo, true, true,
									   build_callback, &bs, NULL);
	flush_builder(&bs);
	SsSegBuilderFree(bs.sb);

	/* publish the segments */
	metabuf = ReadBuffer(index, SS_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	memcpy(SsPageGetMeta(BufferGetPage(metabuf)), &bs.meta, sizeof(SsMetaPageData));
	MarkBufferDirty(metabuf);
	UnlockReleaseBuffer(metabuf);

	if (RelationNeedsWAL(index))
		log_newpage_range(index, MAIN_FORKNUM, 0, RelationGetNumberOfBlocks(index), true);

	MemoryContextDelete(bs.tmpcxt);
	result = palloc(sizeof(IndexBuildResult));
	result->heap_tuples = reltuples;
	result->index_tuples = bs.indtuples;
	return result;
}

/* ssbuildempty: the metapage of an unlogged index's init fork. */
void
ssbuildempty(Relation index)
{
	Page		page = (Page) palloc(BLCKSZ);

	init_meta(page, index);
	PageSetChecksumInplace(page, SS_METAPAGE_BLKNO);
	smgrwrite(RelationGetSmgr(index), INIT_FORKNUM, SS_METAPAGE_BLKNO, (char *) page, true);
#if PG_VERSION_NUM >= 160000
	log_newpage(&(RelationGetSmgr(index))->smgr_rlocator.locator, INIT_FORKNUM,
				SS_METAPAGE_BLKNO, page, true);
#else
	log_newpage(&(RelationGetSmgr(index))->smgr_rnode.node, INIT_FORKNUM,
				SS_METAPAGE_BLKNO, page, true);
#endif
	smgrimmedsync(RelationGetSmgr(index), INIT_FORKNUM);
}

/* ---- insert ---- */

bool
ssinsert(Relation index, Datum *values, bool *isnull, ItemPointer ht_ctid,
		 Relation heapRel, IndexUniqueCheck checkUnique, bool indexUnchanged,
		 IndexInfo *indexInfo)
{
	MemoryContext tmp = AllocSetContextCreate(CurrentMemoryContext, "shop_search insert",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(tmp);
	SsDocData	d;
	Size		sz;
	char	   *item;
	Buffer		metabuf,
				tailbuf = InvalidBuffer,
				newbuf = InvalidBuffer;
	SsMetaPage	meta;
	GenericXLogState *xs;
	Page		metapage,
				tailpage = NULL,
				newpage;
	uint32		npending;
	int			freeslot = -1;

	if (isnull[0])
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(tmp);
		return false;
	}
	SsDocFromDatum(values[0], SsIndexLanguage(index), &d);
	SsDocIncludes(index, values, isnull, &d);
	d.doc.tid = *ht_ctid;
	sz = SsPendItemSize(&d);
	item = palloc0(sz);		/* no stray bytes in the padding (page, WAL) */
	SsPendItemForm(&d, item);

	/* the pending list lock: shared by inserters, exclusive for VACUUM */
	LockPage(index, SS_METAPAGE_BLKNO, ShareLock);
	metabuf = ReadBuffer(index, SS_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	meta = SsPageGetMeta(BufferGetPage(metabuf));
	if (meta->pending_tail != InvalidBlockNumber)
		tailbuf = SsReadPage(index, meta->pending_tail, BUFFER_LOCK_EXCLUSIVE, SS_PAGE_PENDING, NULL);
	if (!BufferIsValid(tailbuf) || PageGetFreeSpace(BufferGetPage(tailbuf)) < MAXALIGN(sz))
	{
		/* a new page behind the tail: a released block if one is safe */
		freeslot = SsFreeFind(meta, 1);
		if (freeslot >= 0)
		{
			/* a standby's queries that may read it go first (sspage.c) */
			SsLogReuse(index, meta->free[freeslot].start, meta->free[freeslot].freed);
			newbuf = ReadBufferExtended(index, MAIN_FORKNUM, meta->free[freeslot].start,
										RBM_ZERO_AND_LOCK, NULL);
		}
		else
			newbuf = SsNewBuffer(index);
	}

	xs = GenericXLogStart(index);
	metapage = GenericXLogRegisterBuffer(xs, metabuf, 0);
	meta = SsPageGetMeta(metapage);
	if (BufferIsValid(tailbuf))
		tailpage = GenericXLogRegisterBuffer(xs, tailbuf, 0);
	if (BufferIsValid(newbuf))
	{
		newpage = GenericXLogRegisterBuffer(xs, newbuf, GENERIC_XLOG_FULL_IMAGE);
		SsInitPage(newpage, SS_PAGE_PENDING);
		if (freeslot >= 0)
			(void) SsFreeTake(meta, freeslot, 1);
		if (tailpage)
			SsPageGetOpaque(tailpage)->next = BufferGetBlockNumber(newbuf);
		else
			meta->pending_head = BufferGetBlockNumber(newbuf);
		meta->pending_tail = BufferGetBlockNumber(newbuf);
	}
	else
		newpage = tailpage;
	if (PageAddItem(newpage, (Item) item, sz, InvalidOffsetNumber, false, false) == InvalidOffsetNumber)
		elog(ERROR, "shop_search: pending item of %zu bytes does not fit a page", sz);
	meta->npending++;
	meta->ndocs++;
	for (int f = 0; f < SS_NFIELDS; f++)
		meta->sumlen[f] += d.doc.len[f];
	if (d.doc.popularity > meta->max_popularity)
		meta->max_popularity = d.doc.popularity;
	npending = meta->npending;
	GenericXLogFinish(xs);

	if (BufferIsValid(newbuf))
		UnlockReleaseBuffer(newbuf);
	if (BufferIsValid(tailbuf))
		UnlockReleaseBuffer(tailbuf);
	UnlockReleaseBuffer(metabuf);
	UnlockPage(index, SS_METAPAGE_BLKNO, ShareLock);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);
	if (npending >= SS_PENDING_FLUSH)
		SsFlushPending(index, true, npending >= SS_PENDING_WAIT);
	return false;
}
