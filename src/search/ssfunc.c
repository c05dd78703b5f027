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
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "shop.h"
#include "ssearch.h"

PG_FUNCTION_INFO_V1(shop_search_scan);
PG_FUNCTION_INFO_V1(shop_search_index_info);

/* Open a shop_search index for reading; errors if it is anything else. */
static Relation
open_ss_index(Oid indexoid)
{
	Relation	index = index_open(indexoid, AccessShareLock);

	if (index->rd_indam == NULL || index->rd_indam->amgettuple != ssgettuple)
	{
		char	   *name = pstrdup(RelationGetRelationName(index));

		index_close(index, AccessShareLock);
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a shop_search index", name)));
	}
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
	AclResult	aclres;

	if (lim < 1 || lim > SHOP_MAX_LIMIT + SHOP_MAX_OFFSET)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("limit out of range"),
				 errdetail("lim is %d; it must be between 1 and %d.", lim,
						   SHOP_MAX_LIMIT + SHOP_MAX_OFFSET)));
	InitMaterializedSRF(fcinfo, 0);
	index = open_ss_index(indexoid);
	heap = table_open(index->rd_index->indrelid, AccessShareLock);
	aclres = pg_class_aclcheck(RelationGetRelid(heap), GetUserId(), ACL_SELECT);
	if (aclres != ACLCHECK_OK)
		aclcheck_error(aclres, OBJECT_TABLE, RelationGetRelationName(heap));

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
 * language, segments (documents each), pending documents, total blocks.
 */
Datum
shop_search_index_info(PG_FUNCTION_ARGS)
{
	Relation	index = open_ss_index(PG_GETARG_OID(0));
	SsMetaPageData meta;
	StringInfoData buf;

	SsReadMeta(index, &meta);
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"version\": %u, \"language\": \"%s\", \"documents\": " UINT64_FORMAT
					 ", \"pending\": %u, \"blocks\": %u, \"segments\": [",
					 meta.version, meta.language, meta.ndocs, meta.npending,
					 RelationGetNumberOfBlocks(index));
	for (uint32 i = 0; i < meta.nsegments; i++)
		appendStringInfo(&buf, "%s%u", i ? ", " : "", meta.segments[i].ndocs);
	appendStringInfoString(&buf, "]}");
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
	Relation	index = open_ss_index(PG_GETARG_OID(0));
	text	   *t = PG_GETARG_TEXT_PP(1);
	char		word[SS_MAX_TERM_LEN + 8];
	int			len = SsFoldWord(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), word, sizeof(word));
	SsMetaPageData meta;
	Suggest		sg;
	BlockNumber blk;

	if (len == 0 || strchr(word, ' ') != NULL)
	{
		index_close(index, AccessShareLock);
		PG_RETURN_NULL();
	}
	SsReadMeta(index, &meta);
	for (uint32 s = 0; s < meta.nsegments; s++)
	{
		SsSegHeader hdr;
		uint32		df;
		BlockNumber pb;
		uint16		po;

		SsReadSegHeader(index, meta.segments[s].header, &hdr);
		if (SsDictLookup(index, &hdr, word, len, &df, &pb, &po))
		{
			index_close(index, AccessShareLock);
			PG_RETURN_NULL();
		}
	}
	/* known in a pending document? */
	blk = meta.pending_head;
	while (blk != InvalidBlockNumber)
	{
		Buffer		buf = ReadBuffer(index, blk);
		Page		page;
		PendFind	pf = {word, len, false};

		LockBuffer(buf, BUFFER_LOCK_SHARE);
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
	if (sg.w.maxtypos > 0)
	{
		char		from[1] = {SS_STEM_MARK + 1};

		for (uint32 s = 0; s < meta.nsegments; s++)
		{
			SsSegHeader hdr;

			SsReadSegHeader(index, meta.segments[s].header, &hdr);
			SsDictScanRange(index, &hdr, from, 1, suggest_cb, &sg, NULL);
		}
	}
	index_close(index, AccessShareLock);
	if (sg.besttypos < 0)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(sg.best));
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
