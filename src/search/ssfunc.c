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

		if (!ks->known[i] && SsMatchTerm(&ks->q->words[i], term, len, false, &typos, &factor))
			ks->known[i] = true;
	}
}

/* is a term within one typo of the word (near_words)? */
typedef struct NearScan
{
	const SsQWord *w;
	bool		found;
} NearScan;

static void
near_cb(void *arg, const SsDictItem *it)
{
	NearScan   *ns = (NearScan *) arg;
	int			typos;
	float4		factor;

	if (!ns->found && SsMatchTerm(ns->w, it->term, it->len, true, &typos, &factor) && typos == 1)
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

	if (!ns->found && len > 0 && term[0] != SS_STEM_MARK &&
		SsMatchTerm(ns->w, term, len, true, &typos, &factor) && typos == 1)
		ns->found = true;
}

/*
 * near_word: does the index hold a term within one typo of w (a word of
 * one typo's budget), the first letter right?  The unknown words of 7 and
 * 8 characters without one get two typos ("two_typos").
 */
static bool
near_word(Relation index, const SsMetaPageData *meta, const SsQWord *w)
{
	SsQWord		one = *w;
	NearScan	ns = {&one, false};

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
 * The words of q the index knows: the word itself, its stem or the exact
 * term spelled like its stem is in some segment's dictionary, a term
 * begins with it (a prefix word), or a live pending document holds a term
 * matching it without typos.
 */
static void
known_words(Relation index, const SsMetaPageData *meta, SsQuery *q, bool *known)
{
	KnownScan	ks = {q, known};

	for (uint32 s = 0; s < meta->nsegments; s++)
	{
		SsSegHeader hdr;

		SsReadSegHeader(index, meta->segments[s].header, &hdr);
		for (int i = 0; i < q->nwords; i++)
		{
			SsQWord    *w = &q->words[i];
			int			stemlen = strlen(w->stem);
			SsDictItem	it;

			if (known[i])
				continue;
			if (SsDictLookup(index, &hdr, w->exact, w->len, &it) ||
				SsDictLookup(index, &hdr, w->stem, stemlen, &it) ||
				SsDictLookup(index, &hdr, w->stem + 1, stemlen - 1, &it))
				known[i] = true;
			else if (w->prefix)
			{
				/* the first term at or after the word: does it begin with it? */
				FirstTerm	ft = {w, false, false};

				SsDictScanRange(index, &hdr, w->exact, w->len, first_term_cb, &ft, first_term_stop);
				known[i] = ft.begins;
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
			wide[i] = !near_word(index, &meta, &q->words[i]);
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

static const int64 facet_price_lo[] = {0, 1000, 2500, 5000, 10000, 25000, 50000, 100000};
#define FACET_NPRICE lengthof(facet_price_lo)

typedef struct FacetKey
{
	int64		key;			/* hash key */
	int64		n;
	ItemPointerData sample;
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

static void
facet_put(Tuplestorestate *ts, TupleDesc desc, const char *kind, int64 key,
		  ItemPointer sample, int64 n)
{
	Datum		v[4];
	bool		nulls[4] = {false, false, sample == NULL, false};

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

Datum
shop_search_facet_counts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation	index,
				heap;
	SsDoc	   *docs;
	int			ndocs;
	FacetTable	cats,
				brands;
	int64		price[FACET_NPRICE] = {0};
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

	InitMaterializedSRF(fcinfo, 0);
	index = SsOpenIndex(PG_GETARG_OID(0), &heap);
	SsCheckQueryLanguage(index, PG_GETARG_JSONB_P(1));
	docs = SsCollectMatches(index, PG_GETARG_JSONB_P(1), &ndocs, &bulkdeletes);
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
		SsDoc	   *d = &docs[i];

		if (state[i] == FACET_INVISIBLE)
			continue;
		total++;
		if (d->flags & SS_DOC_HAS_CAT)
		{
			bool		found;

			fk = ft_enter(&cats, d->category_id, &found);
			if (!found)
				fk->n = 0;
			fk->n++;
		}
		if (d->flags & SS_DOC_HAS_BRAND)
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
		if (d->flags & SS_DOC_HAS_PRICE)
		{
			for (int b = FACET_NPRICE - 1; b >= 0; b--)
				if (d->price_cents >= facet_price_lo[b])
				{
					price[b]++;
					break;
				}
		}
		if (d->flags & SS_DOC_HAS_RATING)
			for (int r = 1; r <= 4; r++)
				if (d->rating >= r)
					rating[r]++;
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
	for (int b = 0; b < (int) FACET_NPRICE; b++)
		if (price[b] > 0)
			facet_put(rsinfo->setResult, rsinfo->setDesc, "price", b, NULL, price[b]);
	for (int r = 1; r <= 4; r++)
		if (rating[r] > 0)
			facet_put(rsinfo->setResult, rsinfo->setDesc, "rating", r, NULL, rating[r]);
	table_close(heap, AccessShareLock);
	index_close(index, AccessShareLock);
	return (Datum) 0;
}
