/*-------------------------------------------------------------------------
 *
 * ssfunc.c
 *	  SQL-callable functions around a shop_search index: a ranked scan
 *	  returning the index's own scores, and index statistics.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/relation.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/visibilitymap.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "shop.h"
#include "ssearch.h"

PG_FUNCTION_INFO_V1(shop_search_scan);
PG_FUNCTION_INFO_V1(shop_search_index_info);

/*
 * SsOpenIndex: open the shop_search index indexoid and its table for a
 * function that reads the index directly (not through an index scan the
 * executor runs), both with AccessShareLock; the caller closes them.
 * Refuses, before reading anything:
 *   - an OID that names no relation: 42P01 (a regclass argument given as
 *     a number is not checked by the cast);
 *   - anything but a shop_search index: 42809;
 *   - a caller without SELECT on the table: 42501 (the index holds the
 *     table's words and values);
 *   - a table whose row level security applies to the caller: 42501.
 *     The index sees every row and cannot apply policies; queries with
 *     the @@@ and <=> operators can, the executor adds the policies.
 * The privilege checks use the current user, so a SECURITY DEFINER
 * wrapper passes its owner's rights on: shop's public entry points are
 * SECURITY INVOKER for that reason.
 */
Relation
SsOpenIndex(Oid indexoid, Relation *heapout)
{
	Relation	index = try_relation_open(indexoid, AccessShareLock);
	Relation	heap;
	AclResult	aclres;

	if (index == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", indexoid)));
	if (index->rd_rel->relkind != RELKIND_INDEX || index->rd_indam == NULL ||
		index->rd_indam->amgettuple != ssgettuple)
	{
		char	   *name = pstrdup(RelationGetRelationName(index));

		relation_close(index, AccessShareLock);
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a shop_search index", name)));
	}
	heap = table_open(index->rd_index->indrelid, AccessShareLock);
	aclres = pg_class_aclcheck(RelationGetRelid(heap), GetUserId(), ACL_SELECT);
	if (aclres != ACLCHECK_OK)
		aclcheck_error(aclres, OBJECT_TABLE, RelationGetRelationName(heap));
	if (check_enable_rls(RelationGetRelid(heap), InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("row level security of table \"%s\" applies to you",
						RelationGetRelationName(heap)),
				 errdetail("Functions reading index \"%s\" directly would show rows the table's policies hide.",
						   RelationGetRelationName(index)),
				 errhint("Query the table with the @@@ and <=> operators: the policies apply to them.")));
	*heapout = heap;
	return index;
}

/*
 * shop.search_scan(index regclass, query jsonb, lim int)
 *   -> TABLE(ctid tid, score real, typos int, missing int)
 * The lim best rows visible to the current snapshot, best first, with the
 * index's own score (boosted BM25F), typo count and, with "match": "any",
 * the number of query words (slots) the row lacks.  Join back to the
 * table on ctid.
 */
Datum
shop_search_scan(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			indexoid = PG_GETARG_OID(0);
	Datum		query = PG_GETARG_DATUM(1);
	int32		lim = PG_GETARG_INT32(2);
	Relation	index,
				heap;
	IndexScanDesc scan;
	ScanKeyData key,
				orderby;
	FmgrInfo	dummy;
	TupleTableSlot *slot;
	int			n = 0;

	if (lim < 1 || lim > SHOP_MAX_LIMIT + SHOP_MAX_OFFSET)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("limit out of range"),
				 errdetail("lim is %d; it must be between 1 and %d.", lim,
						   SHOP_MAX_LIMIT + SHOP_MAX_OFFSET)));
	InitMaterializedSRF(fcinfo, 0);
	index = SsOpenIndex(indexoid, &heap);
	SsCheckQueryLanguage(index, DatumGetJsonbP(query));

	memset(&dummy, 0, sizeof(dummy));
	dummy.fn_oid = InvalidOid;
	ScanKeyEntryInitializeWithInfo(&key, 0, 1, SS_MATCH_STRATEGY, JSONBOID,
								   InvalidOid, &dummy, query);
	ScanKeyEntryInitializeWithInfo(&orderby, 0, 1, SS_RANK_STRATEGY, JSONBOID,
								   InvalidOid, &dummy, query);
	slot = table_slot_create(heap, NULL);
	scan = index_beginscan(heap, index, GetActiveSnapshot(), 1, 1);
	index_rescan(scan, &key, 1, &orderby, 1);
	while (n < lim && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		float4		dist = DatumGetFloat4(scan->xs_orderbyvals[0]);
		double		tiers = ceil(dist / SS_TYPO_TIER);	/* score < SS_MAX_SCORE */
		int			missing = (int) floor(tiers * SS_TYPO_TIER / SS_MISSING_TIER);
		int			typos = (int) tiers - missing * (int) (SS_MISSING_TIER / SS_TYPO_TIER);
		Datum		v[4];
		bool		nulls[4] = {false, false, false, false};
		ItemPointer tid = palloc(sizeof(ItemPointerData));

		*tid = slot->tts_tid;
		v[0] = PointerGetDatum(tid);
		v[1] = Float4GetDatum((float4) (tiers * SS_TYPO_TIER - dist));
		v[2] = Int32GetDatum(typos);
		v[3] = Int32GetDatum(missing);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
		n++;
		CHECK_FOR_INTERRUPTS();
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(heap, AccessShareLock);
	index_close(index, AccessShareLock);
	return (Datum) 0;
}

/*
 * shop.search_index_info(index regclass) -> jsonb: format version,
 * language, segments (documents each), pending documents, total blocks,
 * free blocks and runs, and released blocks lost to a full free list.
 */
Datum
shop_search_index_info(PG_FUNCTION_ARGS)
{
	Relation	heap;
	Relation	index = SsOpenIndex(PG_GETARG_OID(0), &heap);
	SsMetaPageData meta;
	StringInfoData buf;
	uint64		freeblocks = 0;

	SsReadMeta(index, &meta);
	for (uint32 i = 0; i < meta.nfree; i++)
		freeblocks += meta.free[i].nblocks;
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"version\": %u, \"language\": \"%s\", \"documents\": " UINT64_FORMAT
					 ", \"pending\": %u, \"blocks\": %u, \"free_blocks\": " UINT64_FORMAT
					 ", \"free_runs\": %u, \"lost_blocks\": %u, \"segments\": [",
					 meta.version, meta.language, meta.ndocs, meta.npending,
					 RelationGetNumberOfBlocks(index), freeblocks, meta.nfree,
					 meta.lost_blocks);
	for (uint32 i = 0; i < meta.nsegments; i++)
		appendStringInfo(&buf, "%s%u", i ? ", " : "", meta.segments[i].ndocs);
	appendStringInfoString(&buf, "]}");
	table_close(heap, AccessShareLock);
	index_close(index, AccessShareLock);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * shop.search_doc(title, brand, description, category_id, price_cents,
 * rating, in_stock, popularity) -> shop.search_doc: the indexed value.
 * A C function rather than a ROW() in SQL so that CREATE INDEX calls no
 * SQL-function machinery per row.
 */
PG_FUNCTION_INFO_V1(shop_search_doc_make);

Datum
shop_search_doc_make(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		v[8];
	bool		nulls[8];
	HeapTuple	tup;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "shop.search_doc must return a composite type");
	desc = BlessTupleDesc(desc);
	for (int i = 0; i < 8; i++)
	{
		nulls[i] = PG_NARGS() <= i || PG_ARGISNULL(i);
		v[i] = nulls[i] ? (Datum) 0 : PG_GETARG_DATUM(i);
	}
	tup = heap_form_tuple(desc, v, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tup));
}

/* ---- spelling suggestions ---- */

typedef struct Suggest
{
	SsQWord		w;
	char		best[SS_MAX_TERM_LEN + 8];
	int			besttypos;
	uint32		bestdf;
} Suggest;

static void
suggest_cb(void *arg, const SsDictItem *it)
{
	Suggest    *sg = (Suggest *) arg;
	int			typos;
	float4		factor;

	if (abs((int) it->len - sg->w.len) > sg->w.maxtypos)
		return;
	if (!SsMatchTerm(&sg->w, it->term, it->len, true, &typos, &factor) || typos == 0)
		return;
	if (sg->besttypos < 0 || typos < sg->besttypos ||
		(typos == sg->besttypos && it->df > sg->bestdf))
	{
		memcpy(sg->best, it->term, it->len);
		sg->best[it->len] = '\0';
		sg->besttypos = typos;
		sg->bestdf = it->df;
	}
}

static bool
suggest_first_byte_stop(void *arg, const SsDictItem *it)
{
	return it->len == 0 || it->term[0] != ((Suggest *) arg)->w.exact[0];
}

typedef struct PendFind
{
	const char *word;
	int			len;
	bool		found;
} PendFind;

static void
pend_find_cb(void *arg, const char *term, int len, uint16 tf)
{
	PendFind   *pf = (PendFind *) arg;

	if (len == pf->len && memcmp(term, pf->word, len) == 0)
		pf->found = true;
}

/*
 * shop._search_suggest_word(index regclass, word text) -> text: NULL when
 * the folded word is in the index's vocabulary (or has no close term),
 * else the closest vocabulary term (fewest typos, then most documents).
 */
PG_FUNCTION_INFO_V1(shop_search_suggest_word);

Datum
shop_search_suggest_word(PG_FUNCTION_ARGS)
{
	Relation	heap;
	Relation	index = SsOpenIndex(PG_GETARG_OID(0), &heap);
	text	   *t = PG_GETARG_TEXT_PP(1);
	char		word[SS_MAX_TERM_LEN + 8];
	int			len = SsFoldWord(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), word, sizeof(word));
	SsMetaPageData meta;
	Suggest		sg;
	BlockNumber blk;

	table_close(heap, NoLock);	/* locked until the transaction ends */
	if (len == 0 || strchr(word, ' ') != NULL)
	{
		index_close(index, AccessShareLock);
		PG_RETURN_NULL();
	}
	SsReadMeta(index, &meta);
	for (uint32 s = 0; s < meta.nsegments; s++)
	{
		SsSegHeader hdr;
		SsDictItem	it;

		SsReadSegHeader(index, meta.segments[s].header, &hdr);
		if (SsDictLookup(index, &hdr, word, len, &it))
		{
			index_close(index, AccessShareLock);
			PG_RETURN_NULL();
		}
	}
	/* known in a pending document? */
	blk = meta.pending_head;
	while (blk != InvalidBlockNumber)
	{
		Buffer		buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_PENDING, NULL);
		Page		page;
		PendFind	pf = {word, len, false};

		page = BufferGetPage(buf);
		for (OffsetNumber off = FirstOffsetNumber; off <= PageGetMaxOffsetNumber(page) && !pf.found; off++)
		{
			SsPendItem *it = (SsPendItem *) PageGetItem(page, PageGetItemId(page, off));

			if (!(it->doc.flags & SS_DOC_DEAD))
				SsPendItemTerms(it, pend_find_cb, &pf);
		}
		blk = SsPageGetOpaque(page)->next;
		UnlockReleaseBuffer(buf);
		if (pf.found)
		{
			index_close(index, AccessShareLock);
			PG_RETURN_NULL();
		}
	}
	memset(&sg, 0, sizeof(sg));
	sg.w.exact = word;
	sg.w.len = len;
	sg.w.maxtypos = SsMaxTypos(pg_mbstrlen_with_len(word, len));
	sg.besttypos = -1;
	for (int round = 0; round < 2 && sg.w.maxtypos > 0 && sg.besttypos < 0; round++)
	{
		char		from[1] = {SS_STEM_MARK + 1};

		/*
		 * nothing within one typo of a 7 or 8 character word: two, the
		 * first letter right, as the search does ("two_typos")
		 */
		if (round == 1)
		{
			if (sg.w.maxtypos != 1 || !SsTwoTyposLength(pg_mbstrlen_with_len(word, len)))
				break;
			sg.w.maxtypos = 2;
			sg.w.first_fixed = true;
		}
		for (uint32 s = 0; s < meta.nsegments; s++)
		{
			SsSegHeader hdr;

			/* candidates from the trigram map, in dictionary order as a scan */
			SsReadSegHeader(index, meta.segments[s].header, &hdr);
			if (!SsTypoCandidates(index, &hdr, &sg.w, suggest_cb, &sg))
			{
				if (sg.w.first_fixed)
					SsDictScanRange(index, &hdr, word, 1, suggest_cb, &sg, suggest_first_byte_stop);
				else
					SsDictScanRange(index, &hdr, from, 1, suggest_cb, &sg, NULL);
			}
		}
	}
	index_close(index, AccessShareLock);
	if (sg.besttypos < 0)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(sg.best));
}

/* ---- the words an index knows ---- */

typedef struct KnownScan
{
	SsQuery    *q;
	bool	   *known;
	bool	   *pending;		/* known from a pending document */
} KnownScan;

/* the first dictionary term at or after a word: does it begin with it? */
typedef struct FirstTerm
{
	const SsQWord *w;
	bool		seen;
	bool		begins;
} FirstTerm;

static bool
first_term_stop(void *arg, const SsDictItem *it)
{
	return ((FirstTerm *) arg)->seen;
}

static void
first_term_cb(void *arg, const SsDictItem *it)
{
	FirstTerm  *ft = (FirstTerm *) arg;

	ft->seen = true;
	ft->begins = it->len >= ft->w->len && memcmp(it->term, ft->w->exact, ft->w->len) == 0;
}

static void
known_pend_cb(void *arg, const char *term, int len, uint16 tf)
{
	KnownScan  *ks = (KnownScan *) arg;

	for (int i = 0; i < ks->q->nwords; i++)
	{
		int			typos;
		float4		factor;

		if (!ks->pending[i] && SsMatchTerm(&ks->q->words[i], term, len, false, &typos, &factor))
			ks->known[i] = ks->pending[i] = true;
	}
}

/* is a term within one typo of the word (near_words)? */
typedef struct NearScan
{
	const SsQWord *w;
	bool		found;
	uint32		mindf;			/* a term of at least this many documents */
} NearScan;

static void
near_cb(void *arg, const SsDictItem *it)
{
	NearScan   *ns = (NearScan *) arg;
	int			typos;
	float4		factor;

	if (!ns->found && it->df >= ns->mindf &&
		SsMatchTerm(ns->w, it->term, it->len, true, &typos, &factor) && typos == 1)
		ns->found = true;
}

static bool
near_stop(void *arg, const SsDictItem *it)
{
	NearScan   *ns = (NearScan *) arg;

	return ns->found || it->len == 0 || it->term[0] != ns->w->exact[0];
}

static void
near_pend_cb(void *arg, const char *term, int len, uint16 tf)
{
	NearScan   *ns = (NearScan *) arg;
	int			typos;
	float4		factor;

	if (!ns->found && ns->mindf <= 1 && len > 0 && term[0] != SS_STEM_MARK &&
		SsMatchTerm(ns->w, term, len, true, &typos, &factor) && typos == 1)
		ns->found = true;
}

/*
 * near_word: does the index hold a term within one typo of w (a word of
 * one typo's budget), the first letter right, in at least mindf documents
 * of a segment (mindf 0 or 1: any term, pending documents included)?  The
 * unknown words of 7 and 8 characters without one get two typos
 * ("two_typos"); a word the index holds in one or two documents with one
 * that many times more frequent is taken for a misspelling (known_words).
 */
static bool
near_word(Relation index, const SsMetaPageData *meta, const SsQWord *w, uint32 mindf)
{
	SsQWord		one = *w;
	NearScan	ns = {&one, false, mindf};

	one.prefix = false;
	one.maxtypos = 1;
	one.first_fixed = false;
	for (uint32 s = 0; s < meta->nsegments && !ns.found; s++)
	{
		SsSegHeader hdr;

		SsReadSegHeader(index, meta->segments[s].header, &hdr);
		if (!SsTypoCandidates(index, &hdr, &one, near_cb, &ns))
			SsDictScanRange(index, &hdr, one.exact, 1, near_cb, &ns, near_stop);
	}
	for (BlockNumber blk = meta->pending_head; blk != InvalidBlockNumber && !ns.found;)
	{
		Buffer		buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_PENDING, NULL);
		Page		page = BufferGetPage(buf);

		for (OffsetNumber off = FirstOffsetNumber; off <= PageGetMaxOffsetNumber(page); off++)
		{
			SsPendItem *it = (SsPendItem *) PageGetItem(page, PageGetItemId(page, off));

			if (!(it->doc.flags & SS_DOC_DEAD))
				SsPendItemTerms(it, near_pend_cb, &ns);
		}
		blk = SsPageGetOpaque(page)->next;
		UnlockReleaseBuffer(buf);
	}
	return ns.found;
}

/*
 * A word the vocabulary holds in at most SS_RARE_DF documents, while a term
 * one typo from it (the first letter right) is in SS_RARE_RATIO times as
 * many, is taken for a misspelling the catalog has too ("yelow" in one
 * description, "yellow" in 873 products): it keeps its typos, so that the
 * query finds the products that spell it right, after the ones that
 * spell it as the query does.  A rare word without such a neighbour (a
 * model number; "cable" and "table" in a small catalog) stays known.
 */
#define SS_RARE_DF		2
#define SS_RARE_RATIO	25

/*
 * The words of q the index knows: the word itself, its stem or the exact
 * term spelled like its stem is in some segment's dictionary, a term
 * begins with it (a prefix word), or a live pending document holds a term
 * matching it without typos; but not a rare word with a far more frequent
 * neighbour (above).
 */
static void
known_words(Relation index, const SsMetaPageData *meta, SsQuery *q, bool *known)
{
	bool	   *pending = palloc0(sizeof(bool) * Max(q->nwords, 1));
	bool	   *byprefix = palloc0(sizeof(bool) * Max(q->nwords, 1));
	uint32	   *df = palloc0(sizeof(uint32) * Max(q->nwords, 1));
	KnownScan	ks = {q, known, pending};

	for (uint32 s = 0; s < meta->nsegments; s++)
	{
		SsSegHeader hdr;

		SsReadSegHeader(index, meta->segments[s].header, &hdr);
		for (int i = 0; i < q->nwords; i++)
		{
			SsQWord    *w = &q->words[i];
			int			stemlen = strlen(w->stem);
			SsDictItem	it;
			uint32		most = 0;
			bool		found = false;

			if (byprefix[i])
				continue;
			/* the most documents of the three spellings, summed over segments */
			if (SsDictLookup(index, &hdr, w->exact, w->len, &it))
			{
				found = true;
				most = Max(most, it.df);
			}
			if (SsDictLookup(index, &hdr, w->stem, stemlen, &it))
			{
				found = true;
				most = Max(most, it.df);
			}
			if (SsDictLookup(index, &hdr, w->stem + 1, stemlen - 1, &it))
			{
				found = true;
				most = Max(most, it.df);
			}
			if (found)
			{
				known[i] = true;
				df[i] += most;
			}
			else if (w->prefix && !known[i])
			{
				/* the first term at or after the word: does it begin with it? */
				FirstTerm	ft = {w, false, false};

				SsDictScanRange(index, &hdr, w->exact, w->len, first_term_cb, &ft, first_term_stop);
				known[i] = byprefix[i] = ft.begins;
			}
		}
	}
	for (BlockNumber blk = meta->pending_head; blk != InvalidBlockNumber;)
	{
		Buffer		buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_PENDING, NULL);
		Page		page = BufferGetPage(buf);

		for (OffsetNumber off = FirstOffsetNumber; off <= PageGetMaxOffsetNumber(page); off++)
		{
			SsPendItem *it = (SsPendItem *) PageGetItem(page, PageGetItemId(page, off));

			if (!(it->doc.flags & SS_DOC_DEAD))
				SsPendItemTerms(it, known_pend_cb, &ks);
		}
		blk = SsPageGetOpaque(page)->next;
		UnlockReleaseBuffer(buf);
	}
	/* rare words with a far more frequent neighbour keep their typos */
	for (int i = 0; i < q->nwords; i++)
		if (known[i] && !pending[i] && !byprefix[i] && df[i] > 0 && df[i] <= SS_RARE_DF &&
			q->words[i].maxtypos >= 1 && q->typos &&
			near_word(index, meta, &q->words[i], df[i] * SS_RARE_RATIO))
			known[i] = false;
}

/*
 * shop._search_no_typos(index regclass, query jsonb) -> jsonb: the query
 * with the words the index knows (exactly, by stem, or as a prefix) added
 * to its "no_typos" list, and the unknown words of 7 or 8 characters that
 * have no term within one typo to its "two_typos" list ("logitek" finds
 * "logitech", while "moniter" keeps its one typo).  shop's API asks this so that a correctly
 * spelled word is not widened to its neighbours ("cable" does not find
 * "table") while a word the catalog does not know still finds its
 * corrections; the rule itself (ssquery.c) depends on nothing but the
 * query and the row.
 */
PG_FUNCTION_INFO_V1(shop_search_no_typos);

/*
 * A router's call (shop_router, issue 16) sets shop.search_global for its
 * transaction: the cluster's no_typos and two_typos words, its statistics
 * ("global") and the intent's rows, which replace what this shard's
 * vocabulary says.  Empty (one node): the query as it is.
 */
static Datum
with_cluster_words(Datum query)
{
	const char *g = GetConfigOption("shop.search_global", true, false);

	if (g == NULL || g[0] == '\0')
		return query;
	return DirectFunctionCall2(jsonb_concat, query,
							   DirectFunctionCall1(jsonb_in, CStringGetDatum(g)));
}

Datum
shop_search_no_typos(PG_FUNCTION_ARGS)
{
	Relation	heap;
	Relation	index = SsOpenIndex(PG_GETARG_OID(0), &heap);
	Jsonb	   *query = PG_GETARG_JSONB_P(1);
	SsMetaPageData meta;
	SsQuery    *q;
	bool	   *known;
	bool	   *wide;
	int			nwide = 0;
	StringInfoData buf;
	Jsonb	   *add;
	Jsonb	   *base = query;
	JsonbValue *old;
	int			n = 0;

	table_close(heap, NoLock);	/* locked until the transaction ends */
	SsReadMeta(index, &meta);
	if (SsQueryLanguage(query) != NULL &&
		strcmp(SsQueryLanguage(query), meta.language) != 0)
	{
		/* words in another language: the vocabulary says nothing of them */
		index_close(index, AccessShareLock);
		PG_RETURN_DATUM(with_cluster_words(JsonbPGetDatum(query)));
	}
	q = SsParseQuery(query, meta.language);
	known = palloc0(sizeof(bool) * Max(q->nwords, 1));
	known_words(index, &meta, q, known);
	wide = palloc0(sizeof(bool) * Max(q->nwords, 1));
	for (int i = 0; i < q->nwords; i++)
		if (!known[i] && q->words[i].maxtypos == 1 && q->typos &&
			SsTwoTyposLength(pg_mbstrlen_with_len(q->words[i].exact, q->words[i].len)))
			wide[i] = !near_word(index, &meta, &q->words[i], 0);
	index_close(index, AccessShareLock);

	/* the query as an object, its no_typos list extended */
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	if (JB_ROOT_IS_SCALAR(query))
	{
		JsonbValue	sv;

		/* a bare string is {"q": string} */
		JsonbExtractScalar(&query->root, &sv);
		appendStringInfoString(&buf, "\"q\": ");
		escape_json(&buf, pnstrdup(sv.val.string.val, sv.val.string.len));
		appendStringInfoString(&buf, ", ");
		base = NULL;
	}
	appendStringInfoString(&buf, "\"no_typos\": [");
	if (base && (old = getKeyJsonValueFromContainer(&query->root, "no_typos", 8, NULL)) != NULL)
	{
		/* keep the words listed already */
		if (old->type == jbvString)
		{
			escape_json(&buf, pnstrdup(old->val.string.val, old->val.string.len));
			n++;
		}
		else if (old->type == jbvBinary)
		{
			JsonbIterator *it = JsonbIteratorInit(old->val.binary.data);
			JsonbValue	e;
			JsonbIteratorToken tok;

			while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
				if (tok == WJB_ELEM && e.type == jbvString)
				{
					if (n++ > 0)
						appendStringInfoString(&buf, ", ");
					escape_json(&buf, pnstrdup(e.val.string.val, e.val.string.len));
				}
		}
	}
	for (int i = 0; i < q->nwords; i++)
		if (known[i])
		{
			if (n++ > 0)
				appendStringInfoString(&buf, ", ");
			escape_json(&buf, q->words[i].exact);
		}
	appendStringInfoChar(&buf, ']');
	for (int i = 0; i < q->nwords; i++)
		if (wide[i])
		{
			appendStringInfoString(&buf, nwide++ == 0 ? ", \"two_typos\": [" : ", ");
			escape_json(&buf, q->words[i].exact);
		}
	if (nwide > 0)
		appendStringInfoChar(&buf, ']');
	appendStringInfoChar(&buf, '}');
	add = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
	if (base == NULL)
		PG_RETURN_DATUM(with_cluster_words(JsonbPGetDatum(add)));
	PG_RETURN_DATUM(with_cluster_words(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(base),
														   JsonbPGetDatum(add))));
}

/*
 * shop._search_term_stats(index regclass, query jsonb) -> jsonb: what a
 * cluster's DFS phase sums over its shards (issue 16, shop_router): the
 * index's document count, summed field lengths and largest popularity,
 * the query's words in order, and every (term, word) pair the words
 * expand to here with its typo count and document frequency:
 * {"docs": n, "lengths": [t, b, d], "max_popularity": x,
 *  "words": [word, ...], "terms": [[word number, term, typos, df], ...]}.
 * The sums go back to each shard as the query's "global" key.
 */
PG_FUNCTION_INFO_V1(shop_search_term_stats);

Datum
shop_search_term_stats(PG_FUNCTION_ARGS)
{
	Relation	heap;
	Relation	index = SsOpenIndex(PG_GETARG_OID(0), &heap);
	Jsonb	   *query = PG_GETARG_JSONB_P(1);
	SsMetaPageData meta;
	SsQuery    *q;
	SsTermStat *st;
	int			n;
	StringInfoData buf;

	table_close(heap, NoLock);	/* locked until the transaction ends */
	n = SsTermStats(index, query, &meta, &st);
	q = SsParseQuery(query, SsQueryLanguage(query) ? SsQueryLanguage(query) : meta.language);
	index_close(index, AccessShareLock);

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"docs\": " UINT64_FORMAT ", \"lengths\": [", meta.ndocs);
	for (int f = 0; f < SS_NFIELDS; f++)
		appendStringInfo(&buf, "%s%.17g", f ? ", " : "", meta.sumlen[f]);
	appendStringInfo(&buf, "], \"max_popularity\": %.9g, \"words\": [", meta.max_popularity);
	for (int i = 0; i < q->nwords; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, q->words[i].exact);
	}
	appendStringInfoString(&buf, "], \"terms\": [");
	for (int i = 0; i < n; i++)
	{
		appendStringInfo(&buf, "%s[%d, ", i ? ", " : "", st[i].qword);
		escape_json(&buf, st[i].term);
		appendStringInfo(&buf, ", %d, %u]", st[i].typos, st[i].df);
	}
	appendStringInfoString(&buf, "]}");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* shop._search_fold(value text) -> text: folded words joined by spaces. */
PG_FUNCTION_INFO_V1(shop_search_fold);

Datum
shop_search_fold(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	int			cap = VARSIZE_ANY_EXHDR(t) * 3 + 8;
	char	   *buf = palloc(cap);
	int			n = SsFoldWord(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), buf, cap);

	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf, n));
}

/* ---- facets from stored values ---- */


typedef struct FacetKey
{
	int64		key;			/* hash key */
	int64		n;
	ItemPointerData sample;
	/* attribute facets: values by their term's hash, keys by the key's */
	uint32		keyh;			/* a value's key */
	int32		doc;			/* a match holding it (index in the docs) */
	int64		nvalues;		/* a key's distinct values */
} FacetKey;

/*
 * A small open-addressing table of facet values (categories, brand
 * hashes): counting is the inner loop of facets over large match sets,
 * where dynahash's generic hashing and comparison cost more than the rest.
 */
typedef struct FacetTable
{
	uint32		cap;			/* a power of two */
	uint32		used;
	bool	   *full;
	FacetKey   *e;
} FacetTable;

static void
ft_init(FacetTable *t, uint32 cap)
{
	t->cap = cap;
	t->used = 0;
	t->full = palloc0(sizeof(bool) * cap);
	t->e = palloc(sizeof(FacetKey) * cap);
}

static FacetKey *
ft_enter(FacetTable *t, int64 key, bool *found)
{
	uint32		i;

	if ((t->used + 1) * 2 > t->cap)
	{
		FacetTable	old = *t;

		ft_init(t, old.cap * 2);
		for (uint32 k = 0; k < old.cap; k++)
			if (old.full[k])
			{
				bool		f;

				*ft_enter(t, old.e[k].key, &f) = old.e[k];
			}
		pfree(old.full);
		pfree(old.e);
	}
	i = (uint32) (((uint64) key * UINT64CONST(0x9E3779B97F4A7C15)) >> 32) & (t->cap - 1);
	while (t->full[i])
	{
		if (t->e[i].key == key)
		{
			*found = true;
			return &t->e[i];
		}
		i = (i + 1) & (t->cap - 1);
	}
	t->full[i] = true;
	t->used++;
	t->e[i].key = key;
	*found = false;
	return &t->e[i];
}

/* the entry of key, NULL if t has none (t unchanged) */
static FacetKey *
ft_find(const FacetTable *t, int64 key)
{
	uint32		i = (uint32) (((uint64) key * UINT64CONST(0x9E3779B97F4A7C15)) >> 32) & (t->cap - 1);

	while (t->full[i])
	{
		if (t->e[i].key == key)
			return &t->e[i];
		i = (i + 1) & (t->cap - 1);
	}
	return NULL;
}

/*
 * A row of a facet count: kind, key, sample, n; the attribute facets'
 * call has three more columns (attr_key, attr_value, nvalues), NULL here
 */
static void
facet_put(Tuplestorestate *ts, TupleDesc desc, const char *kind, int64 key,
		  ItemPointer sample, int64 n)
{
	Datum		v[7] = {0};
	bool		nulls[7] = {false, false, sample == NULL, false, true, true, true};

	v[0] = CStringGetTextDatum(kind);
	v[1] = Int64GetDatum(key);
	if (sample)
	{
		ItemPointer t = palloc(sizeof(ItemPointerData));

		*t = *sample;
		v[2] = PointerGetDatum(t);
	}
	else
		v[2] = (Datum) 0;
	v[3] = Int64GetDatum(n);
	tuplestore_putvalues(ts, desc, v, nulls);
}

/*
 * shop._search_facet_counts(index regclass, query jsonb)
 *   -> TABLE(kind text, key bigint, sample tid, n bigint)
 * Exact facet counts of the rows matching query that are visible to the
 * current snapshot, from the values the index stores: kind 'total';
 * 'category' (key category_id); 'brand' (key the brand hash, sample the
 * TID of one row carrying it, to read its name); 'price' (key the bucket
 * number 0-7 of shop.search_facets); 'rating' (key 1-4: rating >= key).
 * A row is counted without reading it when the visibility map says its
 * page is all-visible (as index-only scans do), else it is fetched and
 * checked.
 *
 * The visibility map speaks of the heap as it is now, the documents are
 * copies taken earlier.  Between the two, VACUUM may flag a copied
 * document dead (its row was deleted before our snapshot), free its line
 * pointer and mark the page all-visible: the copy would then count as a
 * visible row, and on a hot standby, which replays a whole VACUUM at once,
 * as dozens of them.  So the metapage's count of bulk deletes is read
 * before the copies are taken and again after the visibility map was
 * asked (R6 in ssvacuum.c); if it moved, every document the map vouched
 * for is fetched after all.  (nbtree's index-only scans get the same
 * guarantee by keeping a pin on the leaf page, which VACUUM must wait
 * for; a facet count holds documents from every page of the index.)
 */
PG_FUNCTION_INFO_V1(shop_search_facet_counts);

/* the visibility of a collected document's row */
#define FACET_INVISIBLE		0
#define FACET_FETCHED		1	/* read, visible */
#define FACET_ALL_VISIBLE	2	/* page all-visible by the visibility map */

/* is the row of tid visible to snap?  A heap fetch; *here: its visible version */
static bool
facet_fetch(IndexFetchTableData *fetch, TupleTableSlot *slot, Snapshot snap,
			ItemPointer tid, ItemPointer here)
{
	bool		call_again = false,
				all_dead = false;
	ItemPointerData t = *tid;
	bool		visible;

	visible = table_index_fetch_tuple(fetch, &t, snap, slot, &call_again, &all_dead);
	if (visible && here)
		*here = slot->tts_tid;
	ExecClearTuple(slot);
	return visible;
}

/*
 * What the counts need of a match: 24 bytes instead of its 72-byte
 * document record, so that the passes over a large match set (visibility,
 * counting) read a third of the memory, and the scan hands the records
 * over without copying them whole.
 */
typedef struct FacetDoc
{
	ItemPointerData tid;
	uint8		price;			/* price bucket + 1; 0: no price */
	uint8		rating;			/* buckets 1..rating count it (rating >= r) */
	uint32		brand_hash;
	uint8		flags;			/* FD_* */
	int64		category_id;
} FacetDoc;

#define FD_CAT		0x01
#define FD_BRAND	0x02

typedef struct FacetDocs
{
	FacetDoc   *docs;
	int			n;
	int			max;
} FacetDocs;

/* SsDocVisitor: a match's FacetDoc */
static void
facet_doc_visit(void *arg, const SsDoc *doc)
{
	FacetDocs  *fd = (FacetDocs *) arg;
	FacetDoc   *d;

	if (fd->n >= fd->max)
	{
		fd->max = Max(4096, fd->max * 2);
		fd->docs = fd->docs ? repalloc_huge(fd->docs, sizeof(FacetDoc) * fd->max)
			: palloc_extended(sizeof(FacetDoc) * fd->max, MCXT_ALLOC_HUGE);
	}
	d = &fd->docs[fd->n++];
	d->tid = doc->tid;
	d->flags = 0;
	d->price = 0;
	d->rating = 0;
	d->brand_hash = 0;
	d->category_id = 0;
	if (doc->flags & SS_DOC_HAS_CAT)
	{
		d->flags |= FD_CAT;
		d->category_id = doc->category_id;
	}
	if (doc->flags & SS_DOC_HAS_BRAND)
	{
		d->flags |= FD_BRAND;
		d->brand_hash = doc->brand_hash;
	}
	if (doc->flags & SS_DOC_HAS_PRICE)
	{
		for (int b = SS_FACET_NPRICE - 1; b >= 0; b--)
			if (doc->price_cents >= SsFacetPriceLo[b])
			{
				d->price = (uint8) (b + 1);
				break;
			}
	}
	if (doc->flags & SS_DOC_HAS_RATING)
		for (int r = 1; r <= 4; r++)
			if (doc->rating >= r)
				d->rating = (uint8) r;
}

/* ---- the facet column: facet values per segment, kept per backend ---- */

/*
 * Counting facets of a common word reads every match's 72-byte document
 * record, a cache miss per match (bench/results/2026-12-06-sort5.md).
 * Segments are immutable but for their dead flags, so each backend keeps,
 * per segment it counted, what the counts need of each document in 16
 * bytes: its heap TID, its dead flag and its values as small numbers
 * (category and brand as ordinals of dictionaries of this cache, price
 * and rating as their buckets).  The scan then hands over docids
 * (SsCollectMatchIds) and never reads a record of such a segment.
 *
 * Dead flags change: bulk deletes set them.  A segment's column is
 * stamped with the metapage's count of bulk deletes read before its
 * records were, and used only by a scan that read the same count (R6 in
 * ssvacuum.c: a bulk delete adds one when it ends, before VACUUM frees
 * the heap line pointers of the documents it flagged).  A flag the column
 * lacks is then one that a bulk delete still running set: its row is dead
 * in the heap and stays so (the line pointer is not freed, the page is
 * not all-visible) until that bulk delete ends, which moves the count;
 * the visibility check does not count it, as with a record read now.
 * Another count: the column is read again.  (header block, serial) names
 * a segment for good, the relation file the index.
 *
 * shop.search_facet_cache caps the memory (0: off); a segment that
 * does not fit is counted from its records, as are pending documents.
 */
typedef struct FacetCol		/* begins as SsFacetEntry does (facet_id_visit) */
{
	ItemPointerData tid;
	uint8		flags;			/* FC_* */
	uint8		pr;				/* price bucket + 1 (0: none) | rating bucket << 4 */
	uint32		cat;			/* ordinal in facet_cache.cats (FC_CAT) */
	uint32		brand;			/* ordinal in facet_cache.brands (FC_BRAND) */
} FacetCol;

StaticAssertDecl(offsetof(FacetCol, flags) == offsetof(SsFacetEntry, flags) &&
				 offsetof(FacetCol, pr) == offsetof(SsFacetEntry, pr) &&
				 offsetof(FacetCol, pr) == 7,
				 "FacetCol must begin as SsFacetEntry does");

/* the flags of the index's facet column (SsFacetEntry) */
#define FC_DEAD		SS_FC_DEAD
#define FC_CAT		SS_FC_CAT
#define FC_BRAND	SS_FC_BRAND
#define FC_HAS_STOCK	SS_FC_HAS_STOCK	/* in_stock set ... */
#define FC_INSTOCK	SS_FC_INSTOCK		/* ... and true */
#define FC_PRICE	SS_FC_PRICE		/* has a price (FacetSeg.price) */
#define FC_RATING	SS_FC_RATING	/* has a rating (FacetSeg.rating) */

typedef struct FacetSeg
{
	BlockNumber header;
	uint64		serial;
	uint32		ndocs;
	bool		valid;			/* col is complete for stamp */
	uint64		stamp;			/* bulk deletes counted before col was read */
	uint64		used;			/* facet_cache.clock of its last use */
	FacetCol   *col;			/* NULL for a shared column */
	Size		cbytes;			/* of col, or of the ordinal maps */
	/*
	 * shared: the segment has a facet column in the index (fcol pages,
	 * format 9), read through shared buffers by each call; the backend
	 * keeps only the maps from the ordinals of its fdict pages to those of
	 * facet_cache's dictionaries
	 */
	bool		shared;
	uint32	   *catord;
	uint32	   *brandord;
	uint32		ncatord;
	uint32		nbrandord;
	bool		ident;			/* both maps are i -> i (facet_seg_shared) */
	Buffer	   *recent;			/* per column page: the buffer it was in */
	/*
	 * attribute facets: each document's attribute terms, as ordinals of
	 * facet_cache.attrs (FACET_ATTR_OVER first for a document holding the
	 * overflow term), aval[aoff[d] .. aoff[d + 1]); NULL until first used
	 */
	uint32	   *aoff;
	uint32	   *aval;
	Size		abytes;
	/*
	 * price and rating filters: each document's exact price and rating
	 * (the column keeps their facet buckets only); NULL until first used
	 */
	int64	   *price;
	float4	   *rating;
} FacetSeg;

#define FACET_VALUE_BYTES	(sizeof(int64) + sizeof(float4))

#define FACET_ATTR_OVER		PG_UINT32_MAX

#define FACET_CACHE_SEGS	(2 * SS_MAX_SEGMENTS)

static struct
{
	MemoryContext cxt;
	Oid			indexid;
	RelFileNode node;
	uint64		clock;			/* calls so far */
	uint64		nfiltered;		/* ... with a category, brand, price or rating filter */
	Size		bytes;			/* of the columns */
	int			nsegs;
	FacetSeg	segs[FACET_CACHE_SEGS];
	/* dictionaries: value -> ordinal (FacetKey.n), ordinal -> value */
	FacetTable	catmap,
				brandmap;
	int64	   *cats;
	uint32	   *brands;
	uint32		ncats,
				maxcats,
				nbrands,
				maxbrands;
	/* attribute terms: 48-bit hash -> ordinal, ordinal -> key and term hash */
	FacetTable	attrmap;
	uint32	   *attr_keyh;
	uint64	   *attr_vh;
	uint32		nattrs,
				maxattrs;
}			facet_cache;

static void
facet_cache_reset(Relation index)
{
	MemoryContext old;

	if (facet_cache.cxt == NULL)
		facet_cache.cxt = AllocSetContextCreate(TopMemoryContext, "shop search facet cache",
												ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(facet_cache.cxt);
	facet_cache.indexid = InvalidOid;	/* until the dictionaries exist */
	facet_cache.bytes = 0;
	facet_cache.nsegs = 0;
	facet_cache.nfiltered = 0;
	old = MemoryContextSwitchTo(facet_cache.cxt);
	ft_init(&facet_cache.catmap, 256);
	ft_init(&facet_cache.brandmap, 256);
	facet_cache.maxcats = facet_cache.maxbrands = 256;
	facet_cache.cats = palloc(sizeof(int64) * facet_cache.maxcats);
	facet_cache.brands = palloc(sizeof(uint32) * facet_cache.maxbrands);
	facet_cache.ncats = facet_cache.nbrands = 0;
	ft_init(&facet_cache.attrmap, 1024);
	facet_cache.maxattrs = 1024;
	facet_cache.attr_keyh = palloc(sizeof(uint32) * facet_cache.maxattrs);
	facet_cache.attr_vh = palloc(sizeof(uint64) * facet_cache.maxattrs);
	facet_cache.nattrs = 0;
	MemoryContextSwitchTo(old);
	facet_cache.indexid = RelationGetRelid(index);
	facet_cache.node = index->rd_node;
}

/* the ordinal of category id c, of brand hash h */
static uint32
facet_cat_ord(int64 c)
{
	MemoryContext old = MemoryContextSwitchTo(facet_cache.cxt);
	bool		found;
	FacetKey   *fk = ft_enter(&facet_cache.catmap, c, &found);

	if (!found)
	{
		if (facet_cache.ncats >= facet_cache.maxcats)
		{
			/* the size only once the array has it (an error leaves both as they were) */
			facet_cache.cats = repalloc_huge(facet_cache.cats,
											 sizeof(int64) * facet_cache.maxcats * 2);
			facet_cache.maxcats *= 2;
		}
		fk->n = facet_cache.ncats;
		facet_cache.cats[facet_cache.ncats++] = c;
	}
	MemoryContextSwitchTo(old);
	return (uint32) fk->n;
}

static uint32
facet_brand_ord(uint32 h)
{
	MemoryContext old = MemoryContextSwitchTo(facet_cache.cxt);
	bool		found;
	FacetKey   *fk = ft_enter(&facet_cache.brandmap, (int64) h, &found);

	if (!found)
	{
		if (facet_cache.nbrands >= facet_cache.maxbrands)
		{
			facet_cache.brands = repalloc_huge(facet_cache.brands,
											   sizeof(uint32) * facet_cache.maxbrands * 2);
			facet_cache.maxbrands *= 2;
		}
		fk->n = facet_cache.nbrands;
		facet_cache.brands[facet_cache.nbrands++] = h;
	}
	MemoryContextSwitchTo(old);
	return (uint32) fk->n;
}

/* a document's column entry */
static void
facet_col_fill(FacetCol *c, const SsDoc *doc)
{
	c->tid = doc->tid;
	c->flags = SsFacetFlags(doc);
	c->pr = SsFacetPr(doc);
	c->cat = (doc->flags & SS_DOC_HAS_CAT) ? facet_cat_ord(doc->category_id) : 0;
	c->brand = (doc->flags & SS_DOC_HAS_BRAND) ? facet_brand_ord(doc->brand_hash) : 0;
}

/*
 * read segment e's column from its document records (hdr its header);
 * with price (and rating) not NULL, the documents' exact prices and
 * ratings in the same pass (facet_seg_values)
 */
static void
facet_seg_read(Relation index, FacetSeg *e, const SsSegHeader *hdr, int64 *price, float4 *rating)
{
	uint32		ndocs = hdr->ndocs;

	/* a document no page holds (a damaged index) counts as dead */
	for (uint32 d = 0; d < ndocs; d++)
		e->col[d].flags = FC_DEAD;
	if (price)
	{
		memset(price, 0, sizeof(int64) * Max(ndocs, 1));
		memset(rating, 0, sizeof(float4) * Max(ndocs, 1));
	}
	for (uint32 p = 0; p < hdr->ndocpages; p++)
	{
		Buffer		buf = SsReadPage(index, hdr->docstart + p, BUFFER_LOCK_SHARE, SS_PAGE_DOC, NULL);
		Page		page = BufferGetPage(buf);
		const SsDoc *docs = (const SsDoc *) SsPageContents(page);
		int			cnt = SsPageGetOpaque(page)->count;
		uint32		first = p * SS_DOCS_PER_PAGE;

		if (cnt > SS_DOCS_PER_PAGE)
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("index \"%s\" has a document page with %d documents at block %u",
							RelationGetRelationName(index), cnt, hdr->docstart + p),
					 errdetail("A document page holds at most %d.", SS_DOCS_PER_PAGE),
					 errhint("REINDEX the index.")));
		for (int i = 0; i < cnt && first + i < ndocs; i++)
			facet_col_fill(&e->col[first + i], &docs[i]);
		if (price)
			for (int i = 0; i < cnt && first + i < ndocs; i++)
			{
				price[first + i] = docs[i].price_cents;
				rating[first + i] = docs[i].rating;
			}
		UnlockReleaseBuffer(buf);
		if ((p & 63) == 63)
			CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Room for need more bytes (and a segment): the copies least recently used
 * go first, never one of this call (its matches point into them).  False
 * if there is none.
 */
static bool
facet_cache_room(Size need)
{
	Size		cap = (Size) shop_search_facet_cache * 1024;

	while (facet_cache.nsegs > 0 &&
		   (facet_cache.nsegs >= FACET_CACHE_SEGS || facet_cache.bytes + need > cap))
	{
		int			victim = -1;
		FacetSeg   *v;

		for (int i = 0; i < facet_cache.nsegs; i++)
			if (facet_cache.segs[i].used < facet_cache.clock &&
				(victim < 0 || facet_cache.segs[i].used < facet_cache.segs[victim].used))
				victim = i;
		if (victim < 0)
			break;
		v = &facet_cache.segs[victim];
		facet_cache.bytes -= v->cbytes + v->abytes;
		if (v->col)
			pfree(v->col);
		if (v->catord)
			pfree(v->catord);
		if (v->brandord)
			pfree(v->brandord);
		if (v->recent)
			pfree(v->recent);
		if (v->aoff)
			pfree(v->aoff);
		if (v->aval)
			pfree(v->aval);
		if (v->price)
		{
			facet_cache.bytes -= FACET_VALUE_BYTES * (Size) Max(v->ndocs, 1);
			pfree(v->price);
			pfree(v->rating);
		}
		*v = facet_cache.segs[--facet_cache.nsegs];
	}
	return facet_cache.nsegs < FACET_CACHE_SEGS && facet_cache.bytes + need <= cap;
}

static FacetSeg *facet_seg_find(BlockNumber header, const SsSegHeader *hdr);

/*
 * The column of segment (header, hdr) for a scan that read bulkdeletes,
 * read now if needed; NULL if it does not fit in shop.search_facet_cache.
 * With values (a price or rating filter), a column read now reads the
 * segment's exact prices and ratings too if it has none and they fit.
 * Without create, NULL for a segment that has no column yet.
 */
static const FacetCol *
facet_seg_column(Relation index, BlockNumber header, const SsSegHeader *hdr, uint64 bulkdeletes,
				 bool values, bool create)
{
	FacetSeg   *e = NULL;
	Size		need = sizeof(FacetCol) * (Size) Max(hdr->ndocs, 1);

	for (int i = 0; i < facet_cache.nsegs; i++)
		if (facet_cache.segs[i].header == header && facet_cache.segs[i].serial == hdr->serial &&
			facet_cache.segs[i].ndocs == hdr->ndocs)
		{
			e = &facet_cache.segs[i];
			break;
		}
	if (e == NULL)
	{
		if (!create || !facet_cache_room(need))
			return NULL;
		e = &facet_cache.segs[facet_cache.nsegs++];
		e->header = header;
		e->serial = hdr->serial;
		e->ndocs = hdr->ndocs;
		e->valid = false;
		e->aoff = NULL;
		e->aval = NULL;
		e->abytes = 0;
		e->price = NULL;
		e->rating = NULL;
		e->shared = false;
		e->catord = e->brandord = NULL;
		e->col = MemoryContextAllocHuge(facet_cache.cxt, need);
		e->cbytes = need;
		facet_cache.bytes += need;
	}
	e->used = facet_cache.clock;
	if (!e->valid || e->stamp != bulkdeletes)
	{
		int64	   *price = NULL;
		float4	   *rating = NULL;
		Size		nv = Max(hdr->ndocs, 1);

		if (values && e->price == NULL)
		{
			if (facet_cache_room(FACET_VALUE_BYTES * nv))
			{
				price = MemoryContextAllocHuge(facet_cache.cxt, sizeof(int64) * nv);
				rating = MemoryContextAllocHuge(facet_cache.cxt, sizeof(float4) * nv);
			}
			/* room may have moved the entry */
			e = facet_seg_find(header, hdr);
			Assert(e != NULL);
		}
		e->valid = false;
		facet_seg_read(index, e, hdr, price, rating);
		e->stamp = bulkdeletes;
		e->valid = true;
		if (price)
		{
			/* the arrays are the entry's only once complete */
			e->price = price;
			e->rating = rating;
			facet_cache.bytes += FACET_VALUE_BYTES * nv;
		}
	}
	return e->col;
}

/*
 * The entry of segment (header, hdr), whose facet column is in the index
 * (hdr->nfcolpages > 0): its pages are read by each call through shared
 * buffers, with the dead flags bulk delete keeps there, so nothing of it
 * goes stale; the backend keeps only the maps from the ordinals of its
 * fdict pages to facet_cache's, read once (they never change).  NULL if
 * the maps do not fit in shop.search_facet_cache.
 */
static FacetSeg *
facet_seg_shared(Relation index, BlockNumber header, const SsSegHeader *hdr)
{
	FacetSeg   *e = facet_seg_find(header, hdr);
	uint32		nc = hdr->fcolncats,
				nb = hdr->fcolnbrands;
	Size		need = sizeof(uint32) * (Size) (Max(nc, 1) + Max(nb, 1)) +
		sizeof(Buffer) * (Size) hdr->nfcolpages;
	uint32	   *catord,
			   *brandord;
	Buffer	   *recent;

	if (e != NULL)
	{
		e->used = facet_cache.clock;
		return e->shared ? e : NULL;
	}
	if ((uint64) nc + nb > (uint64) hdr->nfdictpages * SS_FDICT_PER_PAGE)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has a segment at block %u whose facet dictionary is too short",
						RelationGetRelationName(index), header),
				 errhint("REINDEX the index.")));
	if (!facet_cache_room(need))
		return NULL;
	catord = MemoryContextAllocZero(facet_cache.cxt, sizeof(uint32) * Max(nc, 1));
	brandord = MemoryContextAllocZero(facet_cache.cxt, sizeof(uint32) * Max(nb, 1));
	/* InvalidBuffer is 0 */
	recent = MemoryContextAllocZero(facet_cache.cxt, sizeof(Buffer) * hdr->nfcolpages);
	for (uint32 p = 0; p < hdr->nfdictpages; p++)
	{
		Buffer		buf = SsReadPage(index, hdr->fcolstart + hdr->nfcolpages + p, BUFFER_LOCK_SHARE,
									 SS_PAGE_FDICT, NULL);
		const int64 *v = (const int64 *) SsPageContents(BufferGetPage(buf));
		uint32		first = p * SS_FDICT_PER_PAGE;
		uint32		cnt = Min((uint32) SS_FDICT_PER_PAGE, nc + nb - first);

		for (uint32 k = 0; k < cnt; k++)
		{
			if (first + k < nc)
				catord[first + k] = facet_cat_ord(v[k]);
			else
				brandord[first + k - nc] = facet_brand_ord((uint32) v[k]);
		}
		UnlockReleaseBuffer(buf);
	}
	/* the dictionaries' growth cannot have moved entries: take the slot now */
	if (facet_cache.nsegs >= FACET_CACHE_SEGS)
		return NULL;
	e = &facet_cache.segs[facet_cache.nsegs++];
	memset(e, 0, sizeof(*e));
	e->header = header;
	e->serial = hdr->serial;
	e->ndocs = hdr->ndocs;
	e->valid = true;
	e->used = facet_cache.clock;
	e->shared = true;
	e->catord = catord;
	e->brandord = brandord;
	e->recent = recent;
	e->ncatord = Max(nc, 1);
	e->nbrandord = Max(nb, 1);
	/*
	 * The first segment a backend reads numbers its categories and brands
	 * as its dictionary does (both sorted, the backend's empty): then a
	 * match's numbers are the backend's, and no map is read per match
	 */
	e->ident = true;
	for (uint32 k = 0; k < e->ncatord; k++)
		e->ident &= catord[k] == k;
	for (uint32 k = 0; k < e->nbrandord; k++)
		e->ident &= brandord[k] == k;
	e->cbytes = need;
	facet_cache.bytes += need;
	return e;
}

/* a call's matches, as column entries, and where each is */
typedef struct FacetVisit
{
	FacetCol   *m;
	int32	   *locseg;			/* with locations: segment number */
	uint32	   *locdoc;			/* ... and docid */
	int			n;
	int			max;
	bool		locs;
	int32		seg;			/* the current segment ... */
	const FacetCol *col;		/* ... its column */
	uint32		ndocs;
	Relation	index;
	uint8		need_mask;		/* the query's in_stock filter: flags & need_mask */
	uint8		need_flags;		/* ... must be need_flags (0, 0: none) */
	/* the query's category, brand, price and rating filters (facet_passes) */
	bool		filt;
	bool		filt_counted;	/* facet_cache.nfiltered counts this call */
	const SsQuery *q;
	bool	   *catok;			/* per category ordinal: allowed */
	bool	   *brandok;		/* per brand ordinal: allowed */
	const int64 *price;			/* the current segment's prices ... */
	const float4 *rating;		/* ... and ratings (exact) */
	bool		exact;			/* the filters need exact prices or ratings */
	bool		pbuckets;		/* the price filter is whole buckets: ... */
	uint8		pbmin;			/* ... a match passes with a price bucket + 1 */
	uint8		pbmax;			/* ... (FacetCol.pr & 0x0F) in pbmin..pbmax */
	/* the current segment's shared column (facet_seg_shared) */
	bool		shared;
	BlockNumber fcolstart;
	uint32		nfcolpages;
	const uint32 *catord;
	const uint32 *brandord;
	uint32		ncatord;
	uint32		nbrandord;
	bool		ident;
	Buffer	   *recent;
	Buffer		cbuf;			/* the column page share-locked now, or none */
	const SsFacetEntry *centry; /* ... its entries, in the buffer */
	uint32		cfirst;			/* ... the docid of centry[0] */
	uint32		ccount;			/* ... and their count (0: none locked) */
	bool		cached[SS_MAX_SEGMENTS];	/* per segment: its matches came as docids */
	BlockNumber header[SS_MAX_SEGMENTS];	/* ... and its header block */
	/* an attribute filter (the scan keeps the documents holding its terms) */
	bool		attrf;
	uint8	   *over;			/* the current segment's documents holding the
								 * overflow term (NULL: none) */
	int32	   *chk;			/* the matches (m) whose row decides the filter */
	int			nchk;
	int			maxchk;
} FacetVisit;

/*
 * The match arrays are kept from call to call (the largest match set so
 * far, 24 bytes a match): fresh memory of that size is page faults and
 * copies on every call, about a fifth of a count of a common word.
 */
static struct
{
	FacetCol   *m;
	int32	   *locseg;
	uint32	   *locdoc;
	int			max;
}			facet_scratch;

static void
facet_visit_grow(FacetVisit *fv)
{
	int			max = Max(65536, facet_scratch.max * 2);

	if (facet_scratch.m == NULL)
	{
		facet_scratch.m = MemoryContextAllocHuge(TopMemoryContext, sizeof(FacetCol) * max);
		facet_scratch.locseg = MemoryContextAllocHuge(TopMemoryContext, sizeof(int32) * max);
		facet_scratch.locdoc = MemoryContextAllocHuge(TopMemoryContext, sizeof(uint32) * max);
	}
	else
	{
		/* one at a time, each kept at once: an error leaves no dangling pointer */
		facet_scratch.m = repalloc_huge(facet_scratch.m, sizeof(FacetCol) * max);
		facet_scratch.locseg = repalloc_huge(facet_scratch.locseg, sizeof(int32) * max);
		facet_scratch.locdoc = repalloc_huge(facet_scratch.locdoc, sizeof(uint32) * max);
	}
	facet_scratch.max = max;
	fv->m = facet_scratch.m;
	fv->locseg = facet_scratch.locseg;
	fv->locdoc = facet_scratch.locdoc;
	fv->max = max;
}

static inline int
facet_visit_add(FacetVisit *fv)
{
	if (fv->n >= fv->max)
		facet_visit_grow(fv);
	return fv->n++;
}

/*
 * The exact prices and ratings of segment (header, hdr), whose column is
 * read, for price and rating filters: read from its records the first
 * time (a document record's values never change).  False if they do not
 * fit in shop.search_facet_cache.
 */
static bool
facet_seg_values(Relation index, BlockNumber header, const SsSegHeader *hdr)
{
	FacetSeg   *e = facet_seg_find(header, hdr);
	Size		n = Max(hdr->ndocs, 1);
	int64	   *price;
	float4	   *rating;

	if (e == NULL)
		return false;
	if (e->price != NULL)
		return true;
	if (!facet_cache_room(FACET_VALUE_BYTES * n))
		return false;
	price = MemoryContextAllocHuge(facet_cache.cxt, sizeof(int64) * n);
	rating = MemoryContextAllocHuge(facet_cache.cxt, sizeof(float4) * n);
	memset(price, 0, sizeof(int64) * n);
	memset(rating, 0, sizeof(float4) * n);
	for (uint32 p = 0; p < hdr->ndocpages; p++)
	{
		Buffer		buf = SsReadPage(index, hdr->docstart + p, BUFFER_LOCK_SHARE, SS_PAGE_DOC, NULL);
		Page		page = BufferGetPage(buf);
		const SsDoc *docs = (const SsDoc *) SsPageContents(page);
		int			cnt = Min(SsPageGetOpaque(page)->count, SS_DOCS_PER_PAGE);
		uint32		first = p * SS_DOCS_PER_PAGE;

		/* (a page with too many documents failed facet_seg_read) */
		for (int i = 0; i < cnt && first + i < hdr->ndocs; i++)
		{
			price[first + i] = docs[i].price_cents;
			rating[first + i] = docs[i].rating;
		}
		UnlockReleaseBuffer(buf);
		if ((p & 63) == 63)
			CHECK_FOR_INTERRUPTS();
	}
	/* room may have moved the entry; the arrays are its only once complete */
	e = facet_seg_find(header, hdr);
	Assert(e != NULL);
	e->price = price;
	e->rating = rating;
	facet_cache.bytes += FACET_VALUE_BYTES * n;
	return true;
}

/*
 * The query's category, brand, price and rating filters for the matches
 * of segment (header, hdr), whose column is read: the categories and
 * brands allowed as ordinals of the dictionaries (which that read
 * completed for the segment's documents), the segment's exact prices and
 * ratings.  False if these do not fit (the segment is counted from its
 * records).
 */
static bool
facet_filter_prepare(FacetVisit *fv, BlockNumber header, const SsSegHeader *hdr)
{
	const SsQuery *q = fv->q;

	fv->price = NULL;
	fv->rating = NULL;
	if (fv->exact)
	{
		FacetSeg   *e;

		if (!facet_seg_values(fv->index, header, hdr))
			return false;
		e = facet_seg_find(header, hdr);
		fv->price = e->price;
		fv->rating = e->rating;
	}
	if (fv->catok)
		pfree(fv->catok);
	fv->catok = NULL;
	if (q->ncats >= 0)
	{
		fv->catok = palloc0(sizeof(bool) * Max(facet_cache.ncats, 1));
		for (int i = 0; i < q->ncats; i++)
		{
			FacetKey   *fk = ft_find(&facet_cache.catmap, q->cats[i]);

			if (fk)
				fv->catok[fk->n] = true;
		}
	}
	if (fv->brandok)
		pfree(fv->brandok);
	fv->brandok = NULL;
	if (q->nbrands >= 0)
	{
		fv->brandok = palloc0(sizeof(bool) * Max(facet_cache.nbrands, 1));
		for (int i = 0; i < q->nbrands; i++)
		{
			FacetKey   *fk = ft_find(&facet_cache.brandmap, (int64) q->brands[i]);

			if (fk)
				fv->brandok[fk->n] = true;
		}
	}
	return true;
}

/*
 * Is the query's price filter a run of whole facet buckets (price_min the
 * low end of a bucket or none, price_max the high end of one or none, as
 * a click on the price facet sends)?  Then the bucket in the column
 * decides it, and no exact price is read: *bmin..*bmax are the allowed
 * values of FacetCol.pr & 0x0F (bucket + 1; 0 is a price below every
 * bucket, which passes only without a price_min).
 */
static bool
facet_price_buckets(const SsQuery *q, uint8 *bmin, uint8 *bmax)
{
	*bmin = 0;
	*bmax = SS_FACET_NPRICE;
	if (q->has_price_min)
	{
		int			b = 0;

		while (b < (int) SS_FACET_NPRICE && SsFacetPriceLo[b] != q->price_min)
			b++;
		if (b == (int) SS_FACET_NPRICE)
			return false;
		*bmin = (uint8) (b + 1);
	}
	if (q->has_price_max)
	{
		int			b = 1;

		/* bucket b - 1 ends one cent below bucket b's low end */
		while (b < (int) SS_FACET_NPRICE && SsFacetPriceLo[b] - 1 != q->price_max)
			b++;
		if (b == (int) SS_FACET_NPRICE)
			return false;
		*bmax = (uint8) b;
	}
	return true;
}

/*
 * does column entry c (docid d) pass the query's filters?  (SsDocPassesFilters)
 * Without a branch per match on its values: a price or rating filter
 * drops about every other match of a common word in no order a branch
 * predictor learns (the per-call tests of which filters are set are
 * predicted).  A document without a price has 0 in fv->price, without a
 * category or brand ordinal 0: reading them is safe, FC_* decides.  A
 * NaN rating passes rating_min, as in SsDocPassesFilters.
 */
static inline bool
facet_passes(const FacetVisit *fv, const FacetCol *c, uint32 d)
{
	const SsQuery *q = fv->q;
	bool		ok = true;

	if (fv->catok)
		ok &= ((c->flags & FC_CAT) != 0) & fv->catok[c->cat];
	if (fv->brandok)
		ok &= ((c->flags & FC_BRAND) != 0) & fv->brandok[c->brand];
	if (fv->pbuckets)
		ok &= ((c->flags & FC_PRICE) != 0) & ((c->pr & 0x0F) >= fv->pbmin) &
			((c->pr & 0x0F) <= fv->pbmax);
	else
	{
		if (q->has_price_min)
			ok &= ((c->flags & FC_PRICE) != 0) & (fv->price[d] >= q->price_min);
		if (q->has_price_max)
			ok &= ((c->flags & FC_PRICE) != 0) & (fv->price[d] <= q->price_max);
	}
	if (q->has_rating_min)
		ok &= ((c->flags & FC_RATING) != 0) & !(fv->rating[d] < q->rating_min);
	return ok;
}

/* a document of the current segment holding the attribute overflow term */
static void
facet_over_cb(void *arg, uint32 docid, uint16 tf)
{
	FacetVisit *fv = (FacetVisit *) arg;

	if (docid < fv->ndocs)
		fv->over[docid >> 3] |= 1 << (docid & 7);
}

/* SsSegVisitor: take the segment's matches as docids if its column fits */
static bool
facet_seg_visit(void *arg, int seg, BlockNumber header, const SsSegHeader *hdr,
				uint64 bulkdeletes, const SsQuery *q)
{
	FacetVisit *fv = (FacetVisit *) arg;

	/* the stored-value filters the scan leaves to the visitor: every one */
	fv->need_mask = q->has_in_stock ? FC_HAS_STOCK | FC_INSTOCK : 0;
	fv->need_flags = q->has_in_stock ? FC_HAS_STOCK | (q->in_stock ? FC_INSTOCK : 0) : 0;
	fv->q = q;
	fv->filt = q->ncats >= 0 || q->nbrands >= 0 || q->has_price_min || q->has_price_max ||
		q->has_rating_min;
	fv->pbuckets = (q->has_price_min || q->has_price_max) &&
		facet_price_buckets(q, &fv->pbmin, &fv->pbmax);
	fv->exact = q->has_rating_min || ((q->has_price_min || q->has_price_max) && !fv->pbuckets);

	/*
	 * The first count with a category, brand, price or rating filter of a
	 * connection (of an index) uses the column of a segment that has one
	 * (that an unfiltered count read) but does not read a new one: that
	 * would cost about twice what the records of its matches cost (a
	 * selective filter's far more); its matches are read from their
	 * records instead.  The next filtered counts read it.
	 */
	if (fv->filt && !fv->filt_counted)
	{
		fv->filt_counted = true;
		facet_cache.nfiltered++;
	}
	fv->col = NULL;
	fv->shared = false;
	if (hdr->nfcolpages > 0 && hdr->nfcolpages >= (hdr->ndocs + SS_FCOL_PER_PAGE - 1) / SS_FCOL_PER_PAGE &&
		shop_search_facet_cache > 0)
	{
		/* the index's column: nothing to read now, every filter at once */
		FacetSeg   *e = facet_seg_shared(fv->index, header, hdr);

		if (e != NULL)
		{
			fv->shared = true;
			fv->fcolstart = hdr->fcolstart;
			fv->nfcolpages = hdr->nfcolpages;
			fv->catord = e->catord;
			fv->brandord = e->brandord;
			fv->recent = e->recent;
			fv->ncatord = e->ncatord;
			fv->nbrandord = e->nbrandord;
			fv->ident = e->ident;
			Assert(!BufferIsValid(fv->cbuf));
			fv->cfirst = 0;
			fv->ccount = 0;
		}
	}
	else
		fv->col = facet_seg_column(fv->index, header, hdr, bulkdeletes,
								   fv->exact,
								   !fv->filt || facet_cache.nfiltered > 1);
	if ((fv->col != NULL || fv->shared) && fv->filt && !facet_filter_prepare(fv, header, hdr))
	{
		fv->col = NULL;
		fv->shared = false;
	}
	fv->ndocs = hdr->ndocs;
	fv->seg = seg;
	if (fv->over)
		pfree(fv->over);
	fv->over = NULL;
	if (fv->attrf && (fv->col != NULL || fv->shared))
	{
		/*
		 * The scan hands over the documents holding every term of the
		 * attribute filter or the overflow term (a product with more
		 * attributes than it indexes: attr_filter_bitmap); the latter's
		 * rows decide (facet_counts_col_guts)
		 */
		char		over[SS_FILTER_TERM_MAX];
		int			olen = SsAttrOverflowTerm(over);
		SsDictItem	item;

		if (SsDictLookup(fv->index, hdr, over, olen, &item) && item.df > 0)
		{
			fv->over = palloc0((hdr->ndocs + 7) / 8 + 1);
			SsReadPostings(fv->index, item.postblk, item.postoff, item.df, facet_over_cb, fv);
		}
	}
	if (seg >= 0 && seg < SS_MAX_SEGMENTS)
	{
		fv->cached[seg] = fv->col != NULL || fv->shared;
		fv->header[seg] = header;
	}
	return fv->col != NULL || fv->shared;
}

/* let go of the column page facet_col_page locked, if any */
static inline void
facet_col_release(FacetVisit *fv)
{
	if (BufferIsValid(fv->cbuf))
	{
		UnlockReleaseBuffer(fv->cbuf);
		fv->cbuf = InvalidBuffer;
	}
	fv->ccount = 0;
}

/*
 * Column page cp of the current segment, share-locked, its entries read
 * in place (a page past the column's end, or a damaged one, holds none:
 * its matches count as dead; shop.search_verify reports such a column).
 * The page stays locked while the scan hands over the matches it holds,
 * until the next page, SS_IDS_PAUSE or the end of the count: no copy of
 * the page (a fifth of a warm count at 100,000 products went to copying
 * each page with a match whole).
 *
 * Lock order.  Bulk delete locks a document page, then (in the same WAL
 * record) the one or two column pages of its documents; a scan that held
 * a column page while waiting for a document page could wait for it
 * forever (buffer locks know no deadlocks).  Here no other lock is ever
 * taken while a column page is locked: the previous page is let go before
 * the next is pinned and locked, and the scan hands over docids only from
 * memory (collect_ids_segment's bitmap, eval_window's candidates, with no
 * document record read for such a segment) and sends SS_IDS_PAUSE at the
 * end of each run, before it takes any other lock.  So a facet count
 * holding a column page never waits for anything; bulk delete waits for
 * the run to end, at most one page's matches.  Nor does it hold a lock
 * across CHECK_FOR_INTERRUPTS (none in a run).  An error releases the
 * lock and the pin as every buffer lock (transaction abort).
 */
static void
facet_col_page(FacetVisit *fv, uint32 cp)
{
	Buffer		buf;
	Page		page;

	facet_col_release(fv);
	fv->cfirst = cp * SS_FCOL_PER_PAGE;
	if (cp >= fv->nfcolpages)
		return;
	/*
	 * the buffer the page was in last time, if it still is (no lookup in
	 * the buffer table: a twentieth of a warm count's time went there)
	 */
	buf = fv->recent[cp];
	if (!BufferIsValid(buf) ||
		!ReadRecentBuffer(fv->index->rd_node, MAIN_FORKNUM, fv->fcolstart + cp, buf))
	{
		buf = ReadBufferExtended(fv->index, MAIN_FORKNUM, fv->fcolstart + cp, RBM_NORMAL, NULL);
		fv->recent[cp] = buf;
	}
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	fv->cbuf = buf;
	page = BufferGetPage(buf);
	SsCheckPage(fv->index, page, fv->fcolstart + cp, SS_PAGE_FCOL);
	fv->centry = (const SsFacetEntry *) SsPageContents(page);
	fv->ccount = Min(SsPageGetOpaque(page)->count, SS_FCOL_PER_PAGE);
}

/*
 * The matches docids[0 .. n) of the current segment, which has a shared
 * column (ident: its dictionary numbers are the backend's).  Each entry is
 * stored in the next place whether it passes or not, and counts only if
 * it does: no branch on its flags or values (facet_passes).  The page's
 * bounds and the clamps are kept in locals across the batch.
 */
static pg_attribute_always_inline void
facet_ids_shared(FacetVisit *fv, const uint32 *docids, uint32 n, bool ident)
{
	FacetCol   *const m = fv->m;
	FacetCol   *c = m + fv->n;
	const uint32 ndocs = fv->ndocs;
	const SsFacetEntry *centry = fv->centry;
	uint32		cfirst = fv->cfirst;
	uint32		ccount = fv->ccount;
	const uint32 catmax = fv->ncatord - 1;
	const uint32 brandmax = fv->nbrandord - 1;
	const uint32 *const catord = fv->catord;
	const uint32 *const brandord = fv->brandord;
	const uint8 need_mask = fv->need_mask;
	const uint8 need_flags = fv->need_flags;
	const bool	filt = fv->filt;
	const bool	locs = fv->locs;

	for (uint32 j = 0; j < n; j++)
	{
		uint32		d = docids[j];
		uint32		k = d - cfirst;
		const SsFacetEntry *e;
		uint8		flags;
		bool		ok;

		if (k >= ccount)
		{
			/* matches come in docid order: a page is read once per segment */
			if (d >= ndocs)
				continue;
			facet_col_page(fv, d / SS_FCOL_PER_PAGE);
			centry = fv->centry;
			cfirst = fv->cfirst;
			ccount = fv->ccount;
			k = d - cfirst;
			if (k >= ccount)
				continue;
		}
		e = &centry[k];
		/* tid, flags and pr: the same 8 bytes in both */
		memcpy(c, e, 8);
		flags = e->flags;
		if (ident)
		{
			c->cat = Min((uint32) e->cat, catmax);
			c->brand = Min((uint32) e->brand, brandmax);
		}
		else
		{
			c->cat = catord[Min((uint32) e->cat, catmax)];
			c->brand = brandord[Min((uint32) e->brand, brandmax)];
		}
		ok = ((flags & FC_DEAD) == 0) & ((flags & need_mask) == need_flags);
		if (filt)
			ok &= facet_passes(fv, c, d);
		if (locs)
		{
			fv->locseg[c - m] = fv->seg;
			fv->locdoc[c - m] = d;
		}
		c += ok;
	}
	fv->n = (int) (c - m);
}

/*
 * The matches docids[0 .. n) of the current segment, in docid order, with
 * room for every one.  Each entry is stored in the next place whether it
 * passes or not, and counts only if it does.
 */
static void
facet_ids_batch(FacetVisit *fv, const uint32 *docids, uint32 n)
{
	if (fv->shared)
	{
		if (fv->ident)
			facet_ids_shared(fv, docids, n, true);
		else
			facet_ids_shared(fv, docids, n, false);
		return;
	}
	for (uint32 j = 0; j < n; j++)
	{
		uint32		d = docids[j];
		FacetCol   *c = &fv->m[fv->n];
		bool		ok;

		if (d >= fv->ndocs)
			continue;
		*c = fv->col[d];
		ok = ((c->flags & FC_DEAD) == 0) & ((c->flags & fv->need_mask) == fv->need_flags);
		if (fv->filt)
			ok &= facet_passes(fv, c, d);
		if (fv->locs)
		{
			fv->locseg[fv->n] = fv->seg;
			fv->locdoc[fv->n] = d;
		}
		fv->n += ok;
	}
}

/*
 * facet_ids_batch with an attribute filter in a segment having documents
 * with the overflow term: such a match is stored alone, and if it passes
 * the stored-value filters, its place is kept for a check of its row.
 */
static void
facet_ids_over(FacetVisit *fv, const uint32 *docids, uint32 n)
{
	uint32		from = 0;

	for (uint32 j = 0; j < n; j++)
	{
		uint32		d = docids[j];
		int			before;

		if (d >= fv->ndocs || !(fv->over[d >> 3] & (1 << (d & 7))))
			continue;
		if (j > from)
			facet_ids_batch(fv, docids + from, j - from);
		before = fv->n;
		facet_ids_batch(fv, &d, 1);
		if (fv->n > before)
		{
			if (fv->nchk >= fv->maxchk)
			{
				fv->maxchk = Max(64, fv->maxchk * 2);
				fv->chk = fv->chk ? repalloc_huge(fv->chk, sizeof(int32) * fv->maxchk)
					: palloc_extended(sizeof(int32) * fv->maxchk, MCXT_ALLOC_HUGE);
			}
			fv->chk[fv->nchk++] = before;
		}
		from = j + 1;
	}
	if (n > from)
		facet_ids_batch(fv, docids + from, n - from);
}

/*
 * SsIdVisitor: the matches docids[0 .. n) of the current segment, in
 * docid order (n SS_IDS_PAUSE: the end of a run).
 */
static void
facet_id_visit(void *arg, const uint32 *docids, uint32 n)
{
	FacetVisit *fv = (FacetVisit *) arg;

	if (n == SS_IDS_PAUSE)
	{
		/* the scan may take another lock next */
		facet_col_release(fv);
		return;
	}
	/* room for every one */
	while ((int64) fv->n + n > fv->max)
		facet_visit_grow(fv);
	if (fv->over)
		facet_ids_over(fv, docids, n);
	else
		facet_ids_batch(fv, docids, n);
}

static void attr_facets(ReturnSetInfo *rsinfo, Relation index, SsMatchSet *ms,
						const ItemPointerData *tids, const uint8 *state, FacetSeg *const *csr,
						IndexFetchTableData *fetch, TupleTableSlot *slot, Snapshot snap,
						AttrNumber att, int nkeys, int nvals);
static bool facet_seg_attrs(Relation index, BlockNumber header, const SsSegHeader *hdr);
static Jsonb *row_attrs(IndexFetchTableData *fetch, TupleTableSlot *slot, Snapshot snap,
						ItemPointer tid, AttrNumber att);

/* the scan's matches into fv, keeping only those holding the terms of attrs (NULL: all) */
static void
facet_collect_ids(Relation index, Jsonb *query, Jsonb *attrs, FacetVisit *fv, SsMatchSet *ms)
{
	SsSetAttrFilter(attrs);
	PG_TRY();
	{
		SsCollectMatchIds(index, query, fv->locs, facet_seg_visit, facet_id_visit, fv, ms);
	}
	PG_FINALLY();
	{
		SsSetAttrFilter(NULL);
	}
	PG_END_TRY();
}

/*
 * The facet counts of query from the facet column, with nkeys > 0 the
 * attribute facets too (facet_counts; the same rows).  With attrs (a jsonb
 * object of key = scalar value pairs, not empty), only the matches whose
 * row's attributes contain it count: the scan keeps the documents holding
 * the filter's terms (SsSetAttrFilter), and the rows of those that hold
 * the overflow term or were read from their records (pending documents,
 * segments whose column does not fit) are read and checked.
 */
static void
facet_counts_col_guts(ReturnSetInfo *rsinfo, Relation index, Relation heap, Jsonb *query,
					  Jsonb *attrs, AttrNumber att, int nkeys, int nvals)
{
	FacetVisit	fv;
	SsMatchSet	ms;
	int64		price[SS_FACET_NPRICE] = {0};
	int64		rating[5] = {0};
	int64		total = 0;
	int64	   *catn,
			   *brandn;
	ItemPointerData *sample;
	Buffer		vmbuf = InvalidBuffer;
	IndexFetchTableData *fetch;
	TupleTableSlot *slot;
	Snapshot	snap = GetActiveSnapshot();
	BlockNumber nheap,
				hb;
	uint8	   *vmknown,
			   *vmall,
			   *state;
	SsMetaPageData meta;
	uint32		ncats,
				nbrands;
	bool		recount;
	uint8	   *rowcheck = NULL;	/* per match: its row decides the attribute filter */
	int			nids;

	if (facet_cache.cxt == NULL || facet_cache.indexid != RelationGetRelid(index) ||
		!RelFileNodeEquals(facet_cache.node, index->rd_node))
		facet_cache_reset(index);
	facet_cache.clock++;
	memset(&fv, 0, sizeof(fv));
	fv.index = index;
	fv.locs = nkeys > 0;
	fv.m = facet_scratch.m;
	fv.locseg = facet_scratch.locseg;
	fv.locdoc = facet_scratch.locdoc;
	fv.max = facet_scratch.max;
	fv.cbuf = InvalidBuffer;
	fv.attrf = attrs != NULL;
	facet_collect_ids(index, query, attrs, &fv, &ms);
	Assert(!BufferIsValid(fv.cbuf));
	facet_col_release(&fv);
	nids = fv.n;
	/* the matches read from their records: pending, or not in the cache */
	for (int k = 0; k < ms.ndocs; k++)
	{
		int			i = facet_visit_add(&fv);

		facet_col_fill(&fv.m[i], &ms.docs[k]);
		if (fv.locs)
		{
			fv.locseg[i] = ms.locseg[k];
			fv.locdoc[i] = ms.locdoc[k];
		}
	}
	if (attrs)
	{
		rowcheck = palloc0(Max(fv.n, 1));
		for (int k = 0; k < fv.nchk; k++)
			rowcheck[fv.chk[k]] = 1;
		for (int i = nids; i < fv.n; i++)
			rowcheck[i] = 1;
	}
	SsTestPause("facets-collected");

	nheap = RelationGetNumberOfBlocks(heap);
	vmknown = palloc0(nheap / 8 + 1);
	vmall = palloc0(nheap / 8 + 1);
	state = palloc(Max(fv.n, 1));
	fetch = table_index_fetch_begin(heap);
	slot = table_slot_create(heap, NULL);
	ncats = facet_cache.ncats;
	nbrands = facet_cache.nbrands;
	catn = palloc0(sizeof(int64) * Max(ncats, 1));
	brandn = palloc0(sizeof(int64) * Max(nbrands, 1));
	sample = palloc(sizeof(ItemPointerData) * Max(nbrands, 1));

	/*
	 * One pass: which matches' rows are visible (by the visibility map, or
	 * read), and their counts; the dictionaries' ordinals index the counts
	 */
	for (int pass = 0;; pass++)
	{
		for (int i = 0; i < fv.n; i++)
		{
			const FacetCol *c = &fv.m[i];

			if ((i & 1023) == 0)
				CHECK_FOR_INTERRUPTS();
			if (pass == 0 && rowcheck && rowcheck[i])
			{
				/* the row decides: attributes @> attrs, on its visible version */
				Jsonb	   *jb = row_attrs(fetch, slot, snap, (ItemPointer) &c->tid, att);

				state[i] = jb != NULL &&
					DatumGetBool(DirectFunctionCall2(jsonb_contains, JsonbPGetDatum(jb),
													 JsonbPGetDatum(attrs))) ?
					FACET_FETCHED : FACET_INVISIBLE;
			}
			else if (pass == 0)
			{
				hb = ItemPointerGetBlockNumber(&c->tid);
				if (hb < nheap && !(vmknown[hb >> 3] & (1 << (hb & 7))))
				{
					vmknown[hb >> 3] |= 1 << (hb & 7);
					if (VM_ALL_VISIBLE(heap, hb, &vmbuf))
						vmall[hb >> 3] |= 1 << (hb & 7);
				}
				if (hb < nheap && (vmall[hb >> 3] & (1 << (hb & 7))))
					state[i] = FACET_ALL_VISIBLE;
				else
					state[i] = facet_fetch(fetch, slot, snap, (ItemPointer) &c->tid, NULL) ?
						FACET_FETCHED : FACET_INVISIBLE;
			}
			else if (state[i] == FACET_ALL_VISIBLE)
				state[i] = facet_fetch(fetch, slot, snap, (ItemPointer) &c->tid, NULL) ?
					FACET_FETCHED : FACET_INVISIBLE;
			if (state[i] == FACET_INVISIBLE)
				continue;
			total++;
			if (c->flags & FC_CAT)
				catn[c->cat]++;
			if (c->flags & FC_BRAND)
			{
				if (brandn[c->brand]++ == 0)
				{
					/* a sample row to read the brand's name from: its visible version */
					sample[c->brand] = c->tid;
					(void) facet_fetch(fetch, slot, snap, &sample[c->brand], &sample[c->brand]);
				}
			}
			if (c->pr & 0x0F)
				price[(c->pr & 0x0F) - 1]++;
			rating[c->pr >> 4]++;
		}
		if (pass > 0)
			break;
		if (BufferIsValid(vmbuf))
			ReleaseBuffer(vmbuf);
		/*
		 * Did a bulk delete end since the count was read?  (facet_counts.)
		 * Then every row the map vouched for is read, and the counts start
		 * over.
		 */
		pg_memory_barrier();
		SsReadMeta(index, &meta);
		recount = meta.bulkdeletes != ms.bulkdeletes;
		if (!recount)
			break;
		total = 0;
		memset(price, 0, sizeof(price));
		memset(rating, 0, sizeof(rating));
		memset(catn, 0, sizeof(int64) * Max(ncats, 1));
		memset(brandn, 0, sizeof(int64) * Max(nbrands, 1));
	}
	/* rating buckets are cumulative (rating >= r) */
	for (int r = 3; r >= 1; r--)
		rating[r] += rating[r + 1];

	if (nkeys > 0)
	{
		SsMatchSet	all = ms;
		ItemPointerData *tids = palloc_extended(sizeof(ItemPointerData) * Max(fv.n, 1),
												MCXT_ALLOC_HUGE);
		FacetSeg  **csr = palloc0(sizeof(FacetSeg *) * Max(ms.nsegs, 1));

		for (int i = 0; i < fv.n; i++)
			tids[i] = fv.m[i].tid;
		all.docs = NULL;
		all.ndocs = fv.n;
		all.locseg = fv.locseg;
		all.locdoc = fv.locdoc;
		/* the attribute lists of the cached segments (reading them may move entries) */
		for (int sg = 0; sg < ms.nsegs && sg < SS_MAX_SEGMENTS; sg++)
			if (fv.cached[sg])
				(void) facet_seg_attrs(index, fv.header[sg], &ms.segs[sg]);
		for (int sg = 0; sg < ms.nsegs && sg < SS_MAX_SEGMENTS; sg++)
			if (fv.cached[sg])
			{
				FacetSeg   *e = facet_seg_find(fv.header[sg], &ms.segs[sg]);

				if (e && e->aoff)
					csr[sg] = e;
			}
		attr_facets(rsinfo, index, &all, tids, state, csr, fetch, slot, snap, att, nkeys, nvals);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_index_fetch_end(fetch);

	facet_put(rsinfo->setResult, rsinfo->setDesc, "total", 0, NULL, total);
	for (uint32 k = 0; k < ncats; k++)
		if (catn[k] > 0)
			facet_put(rsinfo->setResult, rsinfo->setDesc, "category", facet_cache.cats[k], NULL,
					  catn[k]);
	for (uint32 k = 0; k < nbrands; k++)
		if (brandn[k] > 0)
			facet_put(rsinfo->setResult, rsinfo->setDesc, "brand", (int64) facet_cache.brands[k],
					  &sample[k], brandn[k]);
	for (int b = 0; b < (int) SS_FACET_NPRICE; b++)
		if (price[b] > 0)
			facet_put(rsinfo->setResult, rsinfo->setDesc, "price", b, NULL, price[b]);
	for (int r = 1; r <= 4; r++)
		if (rating[r] > 0)
			facet_put(rsinfo->setResult, rsinfo->setDesc, "rating", r, NULL, rating[r]);
}

/*
 * facet_counts_col, dropping the whole cache on an error (a cancel while a
 * segment is read, or out of memory halfway through a dictionary's
 * growth): the next call starts from an empty cache, never from a half
 * changed one.
 */
static void
facet_counts_col(ReturnSetInfo *rsinfo, Relation index, Relation heap, Jsonb *query,
				 Jsonb *attrs, AttrNumber att, int nkeys, int nvals)
{
	PG_TRY();
	{
		facet_counts_col_guts(rsinfo, index, heap, query, attrs, att, nkeys, nvals);
	}
	PG_CATCH();
	{
		facet_cache.indexid = InvalidOid;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* ---- attribute facets ---- */

/*
 * Attribute facets count, for each top-level key = scalar value of the
 * matches' attributes, the visible matches holding it, without reading
 * their rows: the dictionary of every segment keeps one term per key =
 * value (SsAttrTerm), the key's hash first, and the postings of each
 * such term are intersected with the matches of that segment.  A
 * pending document's terms are in its item.  A document with more
 * attributes than it indexes (the overflow term) is counted from its row.
 * Values are named from a row holding them, for the listed ones only.
 */
typedef struct AttrWalk
{
	Relation	index;
	FacetTable *vals;			/* by the term's 48-bit hash */
	uint8	   *bits;			/* this segment's docids of visible matches */
	int32	   *map;			/* ... docid -> match (where bits has one) */
	uint32		nmap;
	int64		n;				/* the current term's matches */
	int32		first;			/* ... the first of them */
	int32	   *over;			/* matches holding the overflow term */
	int			nover;
} AttrWalk;

static bool
attr_term_parse(const char *term, int len, uint32 *keyh, uint64 *vh)
{
	uint64		a = 0,
				b = 0;

	if (len != SS_ATTR_TERM_LEN || term[0] != SS_FILTER_MARK || term[1] != 'a')
		return false;
	for (int i = 2; i < len; i++)
	{
		int			c = (unsigned char) term[i],
					d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else
			return false;
		if (i < 10)
			a = a * 16 + d;
		else
			b = b * 16 + d;
	}
	*keyh = (uint32) a;
	*vh = b;
	return true;
}

static bool
attr_term_is_overflow(const char *term, int len)
{
	char		over[SS_FILTER_TERM_MAX];
	int			olen = SsAttrOverflowTerm(over);

	return len == olen && memcmp(term, over, len) == 0;
}

static void
attr_count(FacetTable *vals, uint32 keyh, uint64 vh, int64 n, int32 doc)
{
	FacetKey   *fk;
	bool		found;

	if (n == 0)
		return;
	fk = ft_enter(vals, (int64) vh, &found);
	if (!found)
	{
		fk->n = 0;
		fk->keyh = keyh;
		fk->doc = doc;
	}
	fk->n += n;
}

/* a match holding the overflow term leaves the walk, for its row */
static void
attr_over_cb(void *arg, uint32 docid, uint16 tf)
{
	AttrWalk   *w = (AttrWalk *) arg;

	if (docid < w->nmap && (w->bits[docid >> 3] & (1 << (docid & 7))))
	{
		w->over[w->nover++] = w->map[docid];
		w->bits[docid >> 3] &= ~(1 << (docid & 7));
	}
}

static bool
attr_dict_stop(void *arg, const SsDictItem *item)
{
	return item->len < 2 || item->term[0] != SS_FILTER_MARK || item->term[1] != 'a';
}

static void
attr_dict_cb(void *arg, const SsDictItem *item)
{
	AttrWalk   *w = (AttrWalk *) arg;
	uint32		keyh;
	uint64		vh;

	if (!attr_term_parse(item->term, item->len, &keyh, &vh))
		return;
	w->n = (int64) SsCountPostings(w->index, item->postblk, item->postoff, item->df,
								   w->bits, w->map, w->nmap, &w->first);
	attr_count(w->vals, keyh, vh, w->n, w->first);
}

/*
 * Attribute lists of the facet column: each document's attribute terms as
 * ordinals, read once per segment (every attribute term's postings, as
 * attr_facets' walk does on each call); then a count only reads the lists
 * of its visible matches, not the postings of every document.
 */
static FacetSeg *
facet_seg_find(BlockNumber header, const SsSegHeader *hdr)
{
	for (int i = 0; i < facet_cache.nsegs; i++)
		if (facet_cache.segs[i].header == header && facet_cache.segs[i].serial == hdr->serial &&
			facet_cache.segs[i].ndocs == hdr->ndocs)
			return &facet_cache.segs[i];
	return NULL;
}

static uint32
facet_attr_ord(uint32 keyh, uint64 vh)
{
	MemoryContext old = MemoryContextSwitchTo(facet_cache.cxt);
	bool		found;
	FacetKey   *fk = ft_enter(&facet_cache.attrmap, (int64) vh, &found);

	if (!found)
	{
		if (facet_cache.nattrs >= facet_cache.maxattrs)
		{
			facet_cache.attr_keyh = repalloc_huge(facet_cache.attr_keyh,
												  sizeof(uint32) * facet_cache.maxattrs * 2);
			facet_cache.attr_vh = repalloc_huge(facet_cache.attr_vh,
												sizeof(uint64) * facet_cache.maxattrs * 2);
			facet_cache.maxattrs *= 2;
		}
		fk->n = facet_cache.nattrs;
		facet_cache.attr_keyh[facet_cache.nattrs] = keyh;
		facet_cache.attr_vh[facet_cache.nattrs++] = vh;
	}
	MemoryContextSwitchTo(old);
	return (uint32) fk->n;
}

typedef struct AttrBuild
{
	Relation	index;
	uint32		ndocs;
	uint32		cur;			/* the ordinal of the term being read */
	uint32	   *doc;			/* (docid, ordinal) pairs, in reading order */
	uint32	   *ord;
	Size		n;
	Size		max;
} AttrBuild;

static void
attr_build_post_cb(void *arg, uint32 docid, uint16 tf)
{
	AttrBuild  *ab = (AttrBuild *) arg;

	if (docid >= ab->ndocs)
		return;
	if (ab->n >= ab->max)
	{
		ab->max *= 2;
		ab->doc = repalloc_huge(ab->doc, sizeof(uint32) * ab->max);
		ab->ord = repalloc_huge(ab->ord, sizeof(uint32) * ab->max);
	}
	ab->doc[ab->n] = docid;
	ab->ord[ab->n++] = ab->cur;
}

static void
attr_build_dict_cb(void *arg, const SsDictItem *item)
{
	AttrBuild  *ab = (AttrBuild *) arg;
	uint32		keyh;
	uint64		vh;

	if (!attr_term_parse(item->term, item->len, &keyh, &vh))
		return;
	ab->cur = facet_attr_ord(keyh, vh);
	SsReadPostings(ab->index, item->postblk, item->postoff, item->df, attr_build_post_cb, ab);
}

/*
 * The attribute lists of the cached segment (header, hdr), read now if
 * needed; false if they do not fit.  May move facet_cache.segs entries.
 */
static bool
facet_seg_attrs(Relation index, BlockNumber header, const SsSegHeader *hdr)
{
	FacetSeg   *e = facet_seg_find(header, hdr);
	AttrBuild	ab;
	SsDictItem *item;
	char		over[SS_FILTER_TERM_MAX];
	int			olen = SsAttrOverflowTerm(over);
	char		from[2] = {SS_FILTER_MARK, 'a'};
	uint32	   *aoff,
			   *aval,
			   *pos;
	Size		bytes;

	if (e == NULL)
		return false;
	if (e->aoff)
		return true;
	memset(&ab, 0, sizeof(ab));
	ab.index = index;
	ab.ndocs = hdr->ndocs;
	ab.max = 4096;
	ab.doc = palloc(sizeof(uint32) * ab.max);
	ab.ord = palloc(sizeof(uint32) * ab.max);
	item = palloc(SS_DICT_ITEM_SIZE(SS_MAX_TERM_LEN + 8));
	/* the overflow term first: it leads a document's list */
	ab.cur = FACET_ATTR_OVER;
	if (SsDictLookup(index, hdr, over, olen, item))
		SsReadPostings(index, item->postblk, item->postoff, item->df, attr_build_post_cb, &ab);
	SsDictScanRange(index, hdr, from, 2, attr_build_dict_cb, &ab, attr_dict_stop);
	pfree(item);

	bytes = sizeof(uint32) * ((Size) hdr->ndocs + 1 + Max(ab.n, 1));
	if (!facet_cache_room(bytes))
		return false;
	e = facet_seg_find(header, hdr);
	if (e == NULL)
		return false;
	/* a counting sort of the pairs by docid, keeping their order */
	aoff = MemoryContextAllocHuge(facet_cache.cxt, sizeof(uint32) * ((Size) hdr->ndocs + 1));
	memset(aoff, 0, sizeof(uint32) * ((Size) hdr->ndocs + 1));
	aval = MemoryContextAllocHuge(facet_cache.cxt, sizeof(uint32) * Max(ab.n, 1));
	for (Size k = 0; k < ab.n; k++)
		aoff[ab.doc[k] + 1]++;
	for (uint32 d = 0; d < hdr->ndocs; d++)
		aoff[d + 1] += aoff[d];
	pos = palloc_extended(sizeof(uint32) * Max(hdr->ndocs, 1), MCXT_ALLOC_HUGE);
	memcpy(pos, aoff, sizeof(uint32) * hdr->ndocs);
	for (Size k = 0; k < ab.n; k++)
		aval[pos[ab.doc[k]]++] = ab.ord[k];
	pfree(pos);
	pfree(ab.doc);
	pfree(ab.ord);
	e->aoff = aoff;
	e->aval = aval;
	e->abytes = bytes;
	facet_cache.bytes += bytes;
	return true;
}

/* a pending document's attribute terms */
typedef struct PendAttrTerms
{
	int			n;
	bool		over;
	uint32		keyh[SS_MAX_DOC_ATTRS + 1];
	uint64		vh[SS_MAX_DOC_ATTRS + 1];
} PendAttrTerms;

static void
pend_attr_terms_cb(void *arg, const char *term, int len, uint16 tf)
{
	PendAttrTerms *pt = (PendAttrTerms *) arg;

	if (attr_term_is_overflow(term, len))
		pt->over = true;
	else if (pt->n <= SS_MAX_DOC_ATTRS &&
			 attr_term_parse(term, len, &pt->keyh[pt->n], &pt->vh[pt->n]))
		pt->n++;
}

/* the attributes of the visible version of tid's row, NULL if none */
static Jsonb *
row_attrs(IndexFetchTableData *fetch, TupleTableSlot *slot, Snapshot snap,
		  ItemPointer tid, AttrNumber att)
{
	bool		call_again = false,
				all_dead = false;
	ItemPointerData t = *tid;
	Jsonb	   *res = NULL;

	if (table_index_fetch_tuple(fetch, &t, snap, slot, &call_again, &all_dead))
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, att, &isnull);

		if (!isnull)
			res = DatumGetJsonbPCopy(d);
	}
	ExecClearTuple(slot);
	return res;
}

typedef struct AttrRowCount
{
	FacetTable *vals;
	int32		doc;
} AttrRowCount;

static void
attr_row_cb(void *arg, const char *term, int len)
{
	AttrRowCount *rc = (AttrRowCount *) arg;
	uint32		keyh;
	uint64		vh;

	if (attr_term_parse(term, len, &keyh, &vh))
		attr_count(rc->vals, keyh, vh, 1, rc->doc);
}

/*
 * Name an attribute from a row holding it: the key whose hash is keyh
 * (any_value) or the key = value pair of term (keyh, vh).
 */
static bool
attr_name(Jsonb *jb, uint32 keyh, uint64 vh, bool any_value, char **key, Jsonb **value)
{
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	char		want[SS_FILTER_TERM_MAX];

	if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
		return false;
	snprintf(want, sizeof(want), "%ca%08x%012llx", SS_FILTER_MARK, keyh, (unsigned long long) vh);
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char		term[SS_FILTER_TERM_MAX];
		bool		hit;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		if (any_value)
			hit = SsAttrKeyHash(k.val.string.val, k.val.string.len) == keyh;
		else
			hit = SsAttrTerm(k.val.string.val, k.val.string.len, &v, term) == SS_ATTR_TERM_LEN &&
				memcmp(term, want, SS_ATTR_TERM_LEN) == 0;
		if (hit)
		{
			*key = pnstrdup(k.val.string.val, k.val.string.len);
			if (value)
				*value = JsonbValueToJsonb(&v);
			return true;
		}
	}
	return false;
}

typedef struct AttrKeyOut
{
	uint32		keyh;
	char	   *name;
	int64		n;
	int64		nvalues;
	int32		doc;
} AttrKeyOut;

static int
attr_key_cmp(const void *a, const void *b)
{
	const AttrKeyOut *x = (const AttrKeyOut *) a;
	const AttrKeyOut *y = (const AttrKeyOut *) b;

	if (x->n != y->n)
		return x->n > y->n ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* values by key, then count (descending), then hash: a key's top values first */
static int
attr_val_cmp(const void *a, const void *b)
{
	const FacetKey *x = (const FacetKey *) a;
	const FacetKey *y = (const FacetKey *) b;

	if (x->keyh != y->keyh)
		return x->keyh < y->keyh ? -1 : 1;
	if (x->n != y->n)
		return x->n > y->n ? -1 : 1;
	return x->key < y->key ? -1 : x->key > y->key ? 1 : 0;
}

static void
attr_put(Tuplestorestate *ts, TupleDesc desc, const char *kind, uint32 keyh, int64 n,
		 const char *name, Jsonb *value, int64 nvalues)
{
	Datum		v[7];
	bool		nulls[7] = {false, false, true, false, name == NULL, value == NULL, nvalues < 0};

	v[0] = CStringGetTextDatum(kind);
	v[1] = Int64GetDatum((int64) keyh);
	v[2] = (Datum) 0;
	v[3] = Int64GetDatum(n);
	v[4] = name ? CStringGetTextDatum(name) : (Datum) 0;
	v[5] = value ? JsonbPGetDatum(value) : (Datum) 0;
	v[6] = Int64GetDatum(nvalues);
	tuplestore_putvalues(ts, desc, v, nulls);
}

/* attr_facets' docid -> match maps, all segments' at once (never shrinks) */
static int32 *attr_map = NULL;
static Size attr_map_cap = 0;

/* at most this many values of one key are named (the ties of its last listed value) */
#define ATTR_MAX_NAMED	1000

static void
attr_facets(ReturnSetInfo *rsinfo, Relation index, SsMatchSet *ms, const ItemPointerData *tids,
			const uint8 *state, FacetSeg *const *csr, IndexFetchTableData *fetch,
			TupleTableSlot *slot, Snapshot snap, AttrNumber att, int nkeys, int nvals)
{
	FacetTable	vals,
				keys;
	AttrWalk	w;
	AttrKeyOut *ko;
	FacetKey   *va;
	int			nko = 0,
				nva = 0;
	int32	  **maps;
	uint8	  **bits;
	Size		need = 1;

	ft_init(&vals, 1024);
	memset(&w, 0, sizeof(w));
	w.index = index;
	w.vals = &vals;
	w.over = palloc(sizeof(int32) * Max(ms->ndocs, 1));

	/*
	 * segments: the postings of every attribute term against the visible
	 * matches, mapped from docid to match by one pass over the matches
	 */
	maps = palloc0(sizeof(int32 *) * Max(ms->nsegs, 1));
	bits = palloc0(sizeof(uint8 *) * Max(ms->nsegs, 1));
	for (int sg = 0; sg < ms->nsegs; sg++)
		need += ms->segs[sg].ndocs;
	if (need > attr_map_cap)
	{
		/* kept: a million-document map would be page faults on every call */
		if (attr_map)
			pfree(attr_map);
		attr_map = NULL;
		attr_map_cap = 0;
		attr_map = MemoryContextAllocHuge(TopMemoryContext, sizeof(int32) * need);
		attr_map_cap = need;
	}
	for (int i = 0; i < ms->ndocs; i++)
	{
		int32		sg = ms->locseg[i];

		if (sg < 0 || sg >= ms->nsegs || state[i] == FACET_INVISIBLE ||
			ms->locdoc[i] >= ms->segs[sg].ndocs || (csr && csr[sg]))
			continue;
		if (maps[sg] == NULL)
		{
			Size		at = 0;

			for (int k = 0; k < sg; k++)
				at += ms->segs[k].ndocs;
			maps[sg] = attr_map + at;
			bits[sg] = palloc0(ms->segs[sg].ndocs / 8 + 1);
		}
		maps[sg][ms->locdoc[i]] = i;
		bits[sg][ms->locdoc[i] >> 3] |= 1 << (ms->locdoc[i] & 7);
	}
	/* segments with attribute lists: the lists of their visible matches */
	if (csr)
	{
		uint32		na = facet_cache.nattrs;
		int64	   *acnt = palloc0(sizeof(int64) * Max(na, 1));
		int32	   *afirst = palloc(sizeof(int32) * Max(na, 1));

		for (int i = 0; i < ms->ndocs; i++)
		{
			int32		sg = ms->locseg[i];
			const FacetSeg *e;
			uint32		d,
						lo,
						hi;

			if (sg < 0 || sg >= ms->nsegs || csr[sg] == NULL || state[i] == FACET_INVISIBLE)
				continue;
			e = csr[sg];
			d = ms->locdoc[i];
			if (d >= e->ndocs)
				continue;
			lo = e->aoff[d];
			hi = e->aoff[d + 1];
			if (lo < hi && e->aval[lo] == FACET_ATTR_OVER)
			{
				w.over[w.nover++] = i;	/* counted from its row, below */
				continue;
			}
			for (uint32 k = lo; k < hi; k++)
			{
				uint32		o = e->aval[k];

				if (o < na && acnt[o]++ == 0)
					afirst[o] = i;
			}
		}
		for (uint32 o = 0; o < na; o++)
			if (acnt[o] > 0)
				attr_count(&vals, facet_cache.attr_keyh[o], facet_cache.attr_vh[o], acnt[o],
						   afirst[o]);
		pfree(acnt);
		pfree(afirst);
	}
	for (int sg = 0; sg < ms->nsegs; sg++)
	{
		SsSegHeader *hdr = &ms->segs[sg];
		SsDictItem *item;
		char		over[SS_FILTER_TERM_MAX];
		int			olen = SsAttrOverflowTerm(over);
		char		from[2] = {SS_FILTER_MARK, 'a'};

		if (maps[sg] == NULL)
			continue;
		w.nmap = hdr->ndocs;
		w.map = maps[sg];
		w.bits = bits[sg];
		item = palloc(SS_DICT_ITEM_SIZE(SS_MAX_TERM_LEN + 8));
		if (SsDictLookup(index, hdr, over, olen, item))
			SsReadPostings(index, item->postblk, item->postoff, item->df, attr_over_cb, &w);
		SsDictScanRange(index, hdr, from, 2, attr_dict_cb, &w, attr_dict_stop);
		pfree(bits[sg]);
		pfree(item);
		CHECK_FOR_INTERRUPTS();
	}
	/* pending documents: their items' terms */
	for (int i = 0; i < ms->ndocs; i++)
	{
		PendAttrTerms pt;

		if (ms->locseg[i] >= 0 || state[i] == FACET_INVISIBLE)
			continue;
		pt.n = 0;
		pt.over = false;
		SsPendItemTerms(ms->pend[ms->locdoc[i]], pend_attr_terms_cb, &pt);
		if (pt.over)
			w.over[w.nover++] = i;
		else
			for (int t = 0; t < pt.n; t++)
				attr_count(&vals, pt.keyh[t], pt.vh[t], 1, i);
	}
	/* documents with more attributes than they index: from their rows */
	for (int o = 0; o < w.nover; o++)
	{
		AttrRowCount rc;
		Jsonb	   *jb = row_attrs(fetch, slot, snap, (ItemPointer) &tids[w.over[o]], att);

		rc.vals = &vals;
		rc.doc = w.over[o];
		if (jb)
			(void) SsForEachAttr(jb, attr_row_cb, &rc);
	}

	/* keys: counts (a document has one value per key), named from a row */
	ft_init(&keys, 64);
	va = palloc(sizeof(FacetKey) * Max(vals.used, 1));
	for (uint32 k = 0; k < vals.cap; k++)
		if (vals.full[k])
		{
			FacetKey   *fk;
			bool		found;

			va[nva++] = vals.e[k];
			fk = ft_enter(&keys, (int64) vals.e[k].keyh, &found);
			if (!found)
			{
				fk->n = 0;
				fk->nvalues = 0;
				fk->keyh = vals.e[k].keyh;
				fk->doc = vals.e[k].doc;
			}
			fk->n += vals.e[k].n;
			fk->nvalues++;
		}
	ko = palloc(sizeof(AttrKeyOut) * Max(keys.used, 1));
	for (uint32 k = 0; k < keys.cap; k++)
		if (keys.full[k])
		{
			AttrKeyOut *o = &ko[nko];
			Jsonb	   *jb = row_attrs(fetch, slot, snap, (ItemPointer) &tids[keys.e[k].doc], att);

			o->keyh = keys.e[k].keyh;
			o->n = keys.e[k].n;
			o->nvalues = keys.e[k].nvalues;
			o->doc = keys.e[k].doc;
			if (attr_name(jb, o->keyh, 0, true, &o->name, NULL))
				nko++;
			else
				elog(DEBUG1, "shop_search: attribute key %08x not found in its sample row", o->keyh);
		}
	qsort(ko, nko, sizeof(AttrKeyOut), attr_key_cmp);
	qsort(va, nva, sizeof(FacetKey), attr_val_cmp);
	attr_put(rsinfo->setResult, rsinfo->setDesc, "attr_keys", 0, nko, NULL, NULL, -1);

	/* the top keys, each with its top values and every value tying with the last */
	for (int k = 0; k < Min(nkeys, nko); k++)
	{
		AttrKeyOut *o = &ko[k];
		int			lo = 0,
					hi = nva;
		int64		least;

		attr_put(rsinfo->setResult, rsinfo->setDesc, "attr_key", o->keyh, o->n, o->name, NULL,
				 o->nvalues);
		/* the key's values: a run of va */
		while (lo < hi)
		{
			int			mid = (lo + hi) / 2;

			if (va[mid].keyh < o->keyh)
				lo = mid + 1;
			else
				hi = mid;
		}
		least = lo + nvals - 1 < nva && va[lo + nvals - 1].keyh == o->keyh ? va[lo + nvals - 1].n : 0;
		for (int v = lo, named = 0; v < nva && va[v].keyh == o->keyh && va[v].n >= least &&
			 named < ATTR_MAX_NAMED; v++)
		{
			Jsonb	   *jb = row_attrs(fetch, slot, snap, (ItemPointer) &tids[va[v].doc], att);
			char	   *name;
			Jsonb	   *value;

			if (attr_name(jb, o->keyh, (uint64) va[v].key, false, &name, &value))
			{
				attr_put(rsinfo->setResult, rsinfo->setDesc, "attr", o->keyh, va[v].n, name, value, -1);
				named++;
			}
			else
				elog(DEBUG1, "shop_search: attribute value %012llx not found in its sample row",
					 (unsigned long long) va[v].key);
			if ((v & 255) == 0)
				CHECK_FOR_INTERRUPTS();
		}
	}
}

/* the matches of query whose attribute terms are those of attrs (NULL: all) */
static void
collect_match_set(Relation index, Jsonb *query, Jsonb *attrs, SsMatchSet *ms)
{
	SsSetAttrFilter(attrs);
	PG_TRY();
	{
		SsCollectMatchSet(index, query, ms);
	}
	PG_FINALLY();
	{
		SsSetAttrFilter(NULL);
	}
	PG_END_TRY();
}

/*
 * The facet counts of query; with nkeys > 0 also the attribute facets:
 * the nkeys keys held by most matches, each with its nvals values held by
 * most (and the values tying with the last); with attrs (a jsonb object,
 * not empty), only the matches whose row's attributes contain it count
 * (every such row is read and checked).
 */
static void
facet_counts(FunctionCallInfo fcinfo, Jsonb *query, Jsonb *attrs, int nkeys, int nvals)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation	index,
				heap;
	SsMatchSet	ms;
	FacetDocs	fd;
	FacetDoc   *docs;
	int			ndocs;
	FacetTable	cats,
				brands;
	int64		price[SS_FACET_NPRICE] = {0};
	int64		rating[5] = {0};
	int64		total = 0;
	Buffer		vmbuf = InvalidBuffer;
	IndexFetchTableData *fetch;
	TupleTableSlot *slot;
	Snapshot	snap = GetActiveSnapshot();
	FacetKey   *fk;
	BlockNumber nheap,
				hb;
	uint8	   *vmknown,
			   *vmall;
	uint8	   *state;
	uint64		bulkdeletes;
	SsMetaPageData meta;
	AttrNumber	att = InvalidAttrNumber;
	bool		check_rows = attrs != NULL && JB_ROOT_COUNT(attrs) > 0;

	InitMaterializedSRF(fcinfo, 0);
	index = SsOpenIndex(PG_GETARG_OID(0), &heap);
	SsCheckQueryLanguage(index, query);
	if (check_rows || nkeys > 0)
	{
		int			c = SsIncludeColumn(index, JSONBOID);

		if (c < 0 || index->rd_index->indkey.values[c] == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("index \"%s\" has no attributes", RelationGetRelationName(index)),
					 errdetail("Attribute filters and facets need a jsonb column in the index's INCLUDE list.")));
		att = index->rd_index->indkey.values[c];
	}
	/*
	 * From the facet column; with an attribute filter whose every value is
	 * a scalar (a key = value term of the index), the scan applies it by
	 * its terms' postings.  A nested value (an array, an object) has no
	 * term: every row holding the filter's other terms is read.
	 */
	if (shop_search_facet_cache > 0 && (!check_rows || SsForEachAttr(attrs, NULL, NULL)))
	{
		facet_counts_col(rsinfo, index, heap, query, check_rows ? attrs : NULL, att, nkeys,
						 nvals);
		table_close(heap, AccessShareLock);
		index_close(index, AccessShareLock);
		return;
	}
	if (nkeys > 0 || check_rows)
	{
		collect_match_set(index, query, check_rows ? attrs : NULL, &ms);
		memset(&fd, 0, sizeof(fd));
		fd.max = Max(ms.ndocs, 1);
		fd.docs = palloc_extended(sizeof(FacetDoc) * fd.max, MCXT_ALLOC_HUGE);
		for (int i = 0; i < ms.ndocs; i++)
			facet_doc_visit(&fd, &ms.docs[i]);
		bulkdeletes = ms.bulkdeletes;
	}
	else
	{
		/* only what the counts need, not whole document records */
		memset(&fd, 0, sizeof(fd));
		bulkdeletes = SsVisitMatches(index, query, facet_doc_visit, &fd);
	}
	docs = fd.docs;
	ndocs = fd.n;
	SsTestPause("facets-collected");
	nheap = RelationGetNumberOfBlocks(heap);
	vmknown = palloc0(nheap / 8 + 1);
	vmall = palloc0(nheap / 8 + 1);
	state = palloc(Max(ndocs, 1));

	ft_init(&cats, 128);
	ft_init(&brands, 256);

	fetch = table_index_fetch_begin(heap);
	slot = table_slot_create(heap, NULL);

	/* which documents' rows are visible: by the visibility map, or read */
	for (int i = 0; i < ndocs; i++)
	{
		if ((i & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
		if (check_rows)
		{
			/* an attribute filter: the row decides (attributes @> attrs) */
			Jsonb	   *jb = row_attrs(fetch, slot, snap, &docs[i].tid, att);

			state[i] = jb != NULL &&
				DatumGetBool(DirectFunctionCall2(jsonb_contains, JsonbPGetDatum(jb),
												 JsonbPGetDatum(attrs))) ?
				FACET_FETCHED : FACET_INVISIBLE;
			continue;
		}
		hb = ItemPointerGetBlockNumber(&docs[i].tid);
		/* the visibility map, asked once per heap block */
		if (hb < nheap && !(vmknown[hb >> 3] & (1 << (hb & 7))))
		{
			vmknown[hb >> 3] |= 1 << (hb & 7);
			if (VM_ALL_VISIBLE(heap, hb, &vmbuf))
				vmall[hb >> 3] |= 1 << (hb & 7);
		}
		if (hb < nheap && (vmall[hb >> 3] & (1 << (hb & 7))))
			state[i] = FACET_ALL_VISIBLE;
		else
			state[i] = facet_fetch(fetch, slot, snap, &docs[i].tid, NULL) ?
				FACET_FETCHED : FACET_INVISIBLE;
	}
	if (BufferIsValid(vmbuf))
		ReleaseBuffer(vmbuf);
	/*
	 * Did a bulk delete end since the copies were taken?  (The map was read
	 * without a lock; the barrier keeps those reads before this one.)
	 */
	pg_memory_barrier();
	SsReadMeta(index, &meta);
	if (meta.bulkdeletes != bulkdeletes)
		for (int i = 0; i < ndocs; i++)
		{
			if ((i & 1023) == 0)
				CHECK_FOR_INTERRUPTS();
			if (state[i] == FACET_ALL_VISIBLE)
				state[i] = facet_fetch(fetch, slot, snap, &docs[i].tid, NULL) ?
					FACET_FETCHED : FACET_INVISIBLE;
		}

	for (int i = 0; i < ndocs; i++)
	{
		FacetDoc   *d = &docs[i];

		if (state[i] == FACET_INVISIBLE)
			continue;
		total++;
		if (d->flags & FD_CAT)
		{
			bool		found;

			fk = ft_enter(&cats, d->category_id, &found);
			if (!found)
				fk->n = 0;
			fk->n++;
		}
		if (d->flags & FD_BRAND)
		{
			int64		h = (int64) d->brand_hash;
			bool		found;

			fk = ft_enter(&brands, h, &found);
			if (!found)
			{
				/* a sample row to read the brand's name from: its visible version */
				fk->n = 0;
				fk->sample = d->tid;
				(void) facet_fetch(fetch, slot, snap, &d->tid, &fk->sample);
			}
			fk->n++;
		}
		if (d->price > 0)
			price[d->price - 1]++;
		for (int r = 1; r <= d->rating; r++)
			rating[r]++;
	}
	if (nkeys > 0)
	{
		ItemPointerData *tids = palloc_extended(sizeof(ItemPointerData) * Max(ms.ndocs, 1),
												MCXT_ALLOC_HUGE);

		for (int i = 0; i < ms.ndocs; i++)
			tids[i] = ms.docs[i].tid;
		attr_facets(rsinfo, index, &ms, tids, state, NULL, fetch, slot, snap, att, nkeys, nvals);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_index_fetch_end(fetch);

	facet_put(rsinfo->setResult, rsinfo->setDesc, "total", 0, NULL, total);
	for (uint32 k = 0; k < cats.cap; k++)
		if (cats.full[k])
			facet_put(rsinfo->setResult, rsinfo->setDesc, "category", cats.e[k].key, NULL,
					  cats.e[k].n);
	for (uint32 k = 0; k < brands.cap; k++)
		if (brands.full[k])
			facet_put(rsinfo->setResult, rsinfo->setDesc, "brand", brands.e[k].key,
					  &brands.e[k].sample, brands.e[k].n);
	for (int b = 0; b < (int) SS_FACET_NPRICE; b++)
		if (price[b] > 0)
			facet_put(rsinfo->setResult, rsinfo->setDesc, "price", b, NULL, price[b]);
	for (int r = 1; r <= 4; r++)
		if (rating[r] > 0)
			facet_put(rsinfo->setResult, rsinfo->setDesc, "rating", r, NULL, rating[r]);
	table_close(heap, AccessShareLock);
	index_close(index, AccessShareLock);
}

Datum
shop_search_facet_counts(PG_FUNCTION_ARGS)
{
	facet_counts(fcinfo, PG_GETARG_JSONB_P(1), NULL, 0, 0);
	return (Datum) 0;
}

/*
 * shop._search_facet_counts(index regclass, query jsonb, attrs jsonb,
 *                           attr_keys int, attr_values int)
 *   -> TABLE(kind text, key bigint, sample tid, n bigint,
 *            attr_key text, attr_value jsonb, nvalues bigint)
 * The rows of the two-argument call, counting only matches whose
 * attributes contain attrs, and the attribute facets: 'attr_keys' (n:
 * how many keys the matches hold), then for each of the attr_keys keys
 * held by most matches (ties by key, bytewise) an 'attr_key' row (key:
 * its hash, n: matches holding it, nvalues: its distinct values) and its
 * 'attr' rows (n, attr_value): its attr_values values held by most, and
 * every value tying with the last of them (at most 1000 named).  Only
 * scalar values count; arrays and objects are not facet values.
 */
PG_FUNCTION_INFO_V1(shop_search_facet_counts_attrs);

Datum
shop_search_facet_counts_attrs(PG_FUNCTION_ARGS)
{
	Jsonb	   *attrs = PG_GETARG_JSONB_P(2);
	int32		nkeys = PG_GETARG_INT32(3);
	int32		nvals = PG_GETARG_INT32(4);

	if (!JB_ROOT_IS_OBJECT(attrs))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("malformed search filter"),
				 errdetail("attributes must be a jsonb object.")));
	if (nkeys < 0 || nkeys > 100 || nvals < 1 || nvals > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("attribute facet size out of range"),
				 errdetail("%d keys of %d values each were asked for; keys must be between 0 and 100, values between 1 and 1000.",
						   nkeys, nvals)));
	facet_counts(fcinfo, PG_GETARG_JSONB_P(1), attrs, nkeys, nvals);
	return (Datum) 0;
}

/*
 * shop.search_cache_stats() RETURNS TABLE(cache text, bytes bigint,
 * allocated bigint, entries bigint, max_bytes bigint, max_entries bigint):
 * the calling backend's caches of search indexes (docs/search.md,
 * "Memory"): the facet column, the impact lists, the sort-key bounds and
 * the query intents; bytes as each cap counts them, allocated the memory
 * their context holds (NULL caps: none of that kind).  Sizes only: no
 * words, queries or values.
 */
PG_FUNCTION_INFO_V1(shop_search_cache_stats);
Datum
shop_search_cache_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SsCacheUsage u[4];
	const char *names[4] = {"facet_column", "impact_lists", "sort_bounds", "intent"};

	InitMaterializedSRF(fcinfo, 0);
	u[0].bytes = facet_cache.bytes;
	u[0].allocated = facet_cache.cxt ? MemoryContextMemAllocated(facet_cache.cxt, true) : 0;
	u[0].entries = facet_cache.nsegs;
	u[0].max_bytes = (int64) shop_search_facet_cache * 1024;
	u[0].max_entries = FACET_CACHE_SEGS;
	SsScanCacheUsage(&u[1], &u[2]);
	ShopIntentCacheUsage(&u[3].bytes, &u[3].allocated, &u[3].entries, &u[3].max_entries);
	u[3].max_bytes = -1;
	for (int i = 0; i < 4; i++)
	{
		Datum		values[6];
		bool		nulls[6] = {false};

		values[0] = CStringGetTextDatum(names[i]);
		values[1] = Int64GetDatum(u[i].bytes);
		values[2] = Int64GetDatum(u[i].allocated);
		values[3] = Int64GetDatum(u[i].entries);
		values[4] = Int64GetDatum(u[i].max_bytes);
		nulls[4] = u[i].max_bytes < 0;
		values[5] = Int64GetDatum(u[i].max_entries);
		nulls[5] = u[i].max_entries < 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
