/*-------------------------------------------------------------------------
 *
 * sssearch.c
 *	  shop.search as a C set-returning function (issue 12, throughput).
 *
 * shop.search was a PL/pgSQL function: its checks and the index query were
 * built by PL/pgSQL, the rows came through a RETURN QUERY (an executor run
 * with a subquery, WITH ORDINALITY and a sort) around shop._search_rows,
 * and the log record through a PERFORM of another PL/pgSQL function.  On a
 * warm query of one common word that was about a quarter of its 2.5 M
 * instructions (bench/results/2026-12-07-thr1.md).  Now:
 *
 *	 1. shop._search_prepare (PL/pgSQL, unchanged rules) checks the
 *		arguments, authorizes the customer and returns the index query
 *		(filters, synonyms, personalization, intent, prior), called here
 *		through fmgr, not an executor run;
 *	 2. the index call of shop._search_rows (SsSearchRows, sssort.c) fills
 *		a tuplestore, and the page is cut from it here: active rows only,
 *		for relevance in the index's order, for a sort ordered by the
 *		sort's columns and product_id (what the ORDER BY did), then
 *		OFFSET off LIMIT lim;
 *	 3. the log record goes to the ring (ShopSearchLogWrite, searchlog.c).
 *
 * The rows and errors are those of the PL/pgSQL version.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "storage/bufmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

#include "shop.h"
#include "spi.h"
#include "ssearch.h"

/* the columns of shop.product the page reads */
enum
{
	PC_PRODUCT_ID,
	PC_TITLE,
	PC_BRAND,
	PC_PRICE_CENTS,
	PC_RATING_AVG,
	PC_CATEGORY_ID,
	PC_IN_STOCK,
	PC_IMAGES,
	PC_STATUS,
	PC_RATING_COUNT,
	PC_CREATED_AT,
	PC_POPULARITY,
	PC_N
};

static const char *const pc_names[PC_N] = {
	"product_id", "title", "brand", "price_cents", "rating_avg", "category_id",
	"in_stock", "images", "status", "rating_count", "created_at", "popularity"
};

/* a row of the page before it is cut: the product's columns and the scan's */
typedef struct PageRow
{
	Datum		v[PC_N];
	bool		n[PC_N];
	Datum		score;
	bool		score_null;
	Datum		typos;
	bool		typos_null;
	Datum		missing;
} PageRow;

/* what shop.search keeps across calls of one FmgrInfo */
typedef struct SearchCache
{
	FmgrInfo	prepare;		/* shop._search_prepare */
	Oid			index;			/* shop.product_search_idx */
} SearchCache;

typedef enum PageSort
{
	PS_RELEVANCE,
	PS_PRICE_ASC,
	PS_PRICE_DESC,
	PS_RATING,
	PS_NEWEST,
	PS_POPULARITY
} PageSort;

static PageSort page_sort;		/* the sort of the qsort under way */

static SearchCache *
search_cache(FunctionCallInfo fcinfo)
{
	SearchCache *c = (SearchCache *) fcinfo->flinfo->fn_extra;

	if (c == NULL)
	{
		Oid			args[6] = {TEXTOID, JSONBOID, TEXTOID, INT4OID, INT4OID, INT8OID};
		Oid			fn;

		fn = LookupFuncName(list_make2(makeString("shop"), makeString("_search_prepare")),
							6, args, false);
		c = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(SearchCache));
		fmgr_info_cxt(fn, &c->prepare, fcinfo->flinfo->fn_mcxt);
		c->index = get_relname_relid("product_search_idx", ShopNamespace());
		if (!OidIsValid(c->index))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation \"shop.product_search_idx\" does not exist")));
		fcinfo->flinfo->fn_extra = c;
	}
	return c;
}

static int
cmp_int64(Datum a, Datum b)
{
	int64		x = DatumGetInt64(a),
				y = DatumGetInt64(b);

	return x < y ? -1 : x > y ? 1 : 0;
}

/* the ORDER BY of the PL/pgSQL version, for the sort of page_sort */
static int
page_row_cmp(const void *pa, const void *pb)
{
	const PageRow *a = (const PageRow *) pa;
	const PageRow *b = (const PageRow *) pb;
	int			c = 0;

	switch (page_sort)
	{
		case PS_PRICE_ASC:
			c = cmp_int64(a->v[PC_PRICE_CENTS], b->v[PC_PRICE_CENTS]);
			break;
		case PS_PRICE_DESC:
			c = -cmp_int64(a->v[PC_PRICE_CENTS], b->v[PC_PRICE_CENTS]);
			break;
		case PS_RATING:
			/* rating_avg DESC NULLS LAST, rating_count DESC */
			if (a->n[PC_RATING_AVG] != b->n[PC_RATING_AVG])
				return a->n[PC_RATING_AVG] ? 1 : -1;
			if (!a->n[PC_RATING_AVG])
				c = -DatumGetInt32(DirectFunctionCall2(numeric_cmp, a->v[PC_RATING_AVG],
													   b->v[PC_RATING_AVG]));
			if (c == 0)
			{
				int32		x = DatumGetInt32(a->v[PC_RATING_COUNT]),
							y = DatumGetInt32(b->v[PC_RATING_COUNT]);

				c = x > y ? -1 : x < y ? 1 : 0;
			}
			break;
		case PS_NEWEST:
			c = -cmp_int64(a->v[PC_CREATED_AT], b->v[PC_CREATED_AT]);
			break;
		case PS_POPULARITY:
			c = -float4_cmp_internal(DatumGetFloat4(a->v[PC_POPULARITY]),
									 DatumGetFloat4(b->v[PC_POPULARITY]));
			break;
		case PS_RELEVANCE:
			break;
	}
	if (c != 0)
		return c;
	return cmp_int64(a->v[PC_PRODUCT_ID], b->v[PC_PRODUCT_ID]);
}

static PageSort
page_sort_of(const char *sort)
{
	if (strcmp(sort, "price_asc") == 0)
		return PS_PRICE_ASC;
	if (strcmp(sort, "price_desc") == 0)
		return PS_PRICE_DESC;
	if (strcmp(sort, "rating") == 0)
		return PS_RATING;
	if (strcmp(sort, "newest") == 0)
		return PS_NEWEST;
	if (strcmp(sort, "popularity") == 0)
		return PS_POPULARITY;
	return PS_RELEVANCE;
}

/* images[1], as the subscript reads it (NULL for an empty array) */
static Datum
first_image(Datum images, bool *isnull)
{
	int			idx = 1;

	return array_get_element(images, 1, &idx, -1, -1, false, TYPALIGN_INT, isnull);
}

static void
put_row(ReturnSetInfo *rsinfo, const PageRow *r, bool ranked)
{
	Datum		v[11];
	bool		n[11];

	v[0] = r->v[PC_PRODUCT_ID];
	n[0] = r->n[PC_PRODUCT_ID];
	v[1] = r->score;
	n[1] = !ranked || r->score_null;
	v[2] = r->v[PC_TITLE];
	n[2] = r->n[PC_TITLE];
	v[3] = r->v[PC_BRAND];
	n[3] = r->n[PC_BRAND];
	v[4] = r->v[PC_PRICE_CENTS];
	n[4] = r->n[PC_PRICE_CENTS];
	v[5] = r->v[PC_RATING_AVG];
	n[5] = r->n[PC_RATING_AVG];
	v[6] = r->v[PC_CATEGORY_ID];
	n[6] = r->n[PC_CATEGORY_ID];
	v[7] = r->v[PC_IN_STOCK];
	n[7] = r->n[PC_IN_STOCK];
	if (r->n[PC_IMAGES])
	{
		v[8] = (Datum) 0;
		n[8] = true;
	}
	else
		v[8] = first_image(r->v[PC_IMAGES], &n[8]);
	v[9] = r->typos;
	n[9] = !ranked || r->typos_null;
	v[10] = ranked ? r->missing : Int32GetDatum(0);
	n[10] = false;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
}

/*
 * The page: from the rows of the index call (rows: (product, score, typos,
 * missing)), the active ones, ordered, OFFSET off LIMIT lim, into rsinfo.
 * Returns the number of rows put.
 */
static int
cut_page(Tuplestorestate *rows, TupleDesc rowsdesc, PageSort ps, int32 lim, int32 off,
		 ReturnSetInfo *rsinfo)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(rowsdesc, &TTSOpsMinimalTuple);
	TupleDesc	pdesc = NULL;
	AttrNumber	att[PC_N];
	PageRow    *all = NULL;
	Datum	   *pv = NULL;
	bool	   *pn = NULL;
	int			nall = 0,
				cap = 0,
				active = 0,
				put = 0;

	tuplestore_rescan(rows);
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		bool		isnull;
		HeapTupleHeader th = DatumGetHeapTupleHeader(slot_getattr(slot, 1, &isnull));
		HeapTupleData tup;
		PageRow		r;
		int			i;

		if (pdesc == NULL)
		{
			pdesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th),
										   HeapTupleHeaderGetTypMod(th));
			for (i = 0; i < PC_N; i++)
			{
				int			a;

				att[i] = InvalidAttrNumber;
				for (a = 0; a < pdesc->natts; a++)
				{
					Form_pg_attribute fa = TupleDescAttr(pdesc, a);

					if (!fa->attisdropped && strcmp(NameStr(fa->attname), pc_names[i]) == 0)
					{
						att[i] = a + 1;
						break;
					}
				}
				if (att[i] == InvalidAttrNumber)
					elog(ERROR, "shop.product has no column \"%s\"", pc_names[i]);
			}
			pv = palloc(pdesc->natts * sizeof(Datum));
			pn = palloc(pdesc->natts * sizeof(bool));
		}
		tup.t_len = HeapTupleHeaderGetDatumLength(th);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = InvalidOid;
		tup.t_data = th;
		/* one pass over the row (heap_getattr per column walks it again) */
		heap_deform_tuple(&tup, pdesc, pv, pn);
		for (i = 0; i < PC_N; i++)
		{
			r.v[i] = pv[att[i] - 1];
			r.n[i] = pn[att[i] - 1];
		}
		/* WHERE p.status = 'active' */
		if (r.n[PC_STATUS])
			continue;
		{
			text	   *st = DatumGetTextPP(r.v[PC_STATUS]);

			if (VARSIZE_ANY_EXHDR(st) != 6 || memcmp(VARDATA_ANY(st), "active", 6) != 0)
				continue;
		}
		r.score = slot_getattr(slot, 2, &r.score_null);
		r.typos = slot_getattr(slot, 3, &r.typos_null);
		r.missing = slot_getattr(slot, 4, &isnull);
		if (ps == PS_RELEVANCE)
		{
			/* ORDER BY ord OFFSET off LIMIT lim: in the index's order */
			if (active++ >= off)
			{
				put_row(rsinfo, &r, true);
				if (++put >= lim)
					break;
			}
			continue;
		}
		/* the value of the slot goes with the next fetch: keep the tuple */
		if (nall == cap)
		{
			cap = cap ? cap * 2 : 64;
			all = all ? repalloc(all, cap * sizeof(PageRow)) : palloc(cap * sizeof(PageRow));
		}
		{
			HeapTupleHeader copy = (HeapTupleHeader) palloc(tup.t_len);

			memcpy(copy, th, tup.t_len);
			tup.t_data = copy;
			heap_deform_tuple(&tup, pdesc, pv, pn);
			for (i = 0; i < PC_N; i++)
			{
				r.v[i] = pv[att[i] - 1];
				r.n[i] = pn[att[i] - 1];
			}
		}
		all[nall++] = r;
	}
	if (ps != PS_RELEVANCE && nall > 0)
	{
		int			i;

		page_sort = ps;
		qsort(all, nall, sizeof(PageRow), page_row_cmp);
		for (i = off; i < nall && put < lim; i++, put++)
			put_row(rsinfo, &all[i], false);
	}
	if (pdesc)
		ReleaseTupleDesc(pdesc);
	ExecDropSingleTupleTableSlot(slot);
	return put;
}

/*
 * shop.search(query text, filters jsonb, sort text, lim int, off int,
 * customer_id bigint) -> TABLE(product_id, score, title, brand,
 * price_cents, rating_avg, category_id, in_stock, image, typos,
 * missing_words): docs/search.md.  Declared SECURITY DEFINER with
 * search_path pinned, as the PL/pgSQL version was.
 */
PG_FUNCTION_INFO_V1(shop_search);

Datum
shop_search(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz t0 = GetCurrentTimestamp();
	SearchCache *cache = search_cache(fcinfo);
	LOCAL_FCINFO(pf, 6);
	Datum		q;
	Jsonb	   *filters;
	Jsonb	   *attrs;
	char	   *sort;
	int32		lim,
				off;
	PageSort	ps;
	TupleDesc	rowsdesc;
	Tuplestorestate *rows;
	ReturnSetInfo inner;
	int			nres;
	int			i;

	/* the checks, the authorization and the index query */
	InitFunctionCallInfoData(*pf, &cache->prepare, 6, PG_GET_COLLATION(), NULL, NULL);
	for (i = 0; i < 6; i++)
	{
		pf->args[i].value = PG_GETARG_DATUM(i);
		pf->args[i].isnull = PG_ARGISNULL(i);
	}
	q = FunctionCallInvoke(pf);
	if (pf->isnull)
		elog(ERROR, "shop._search_prepare returned NULL");
	/* _search_prepare refused NULL query, filters, sort, lim and off */
	filters = PG_GETARG_JSONB_P(1);
	sort = text_to_cstring(PG_GETARG_TEXT_PP(2));
	lim = PG_GETARG_INT32(3);
	off = PG_GETARG_INT32(4);
	ps = page_sort_of(sort);

	/* attrs := coalesce(filters -> 'attributes', '{}') */
	{
		JsonbValue	key;
		JsonbValue *v;

		key.type = jbvString;
		key.val.string.val = "attributes";
		key.val.string.len = strlen("attributes");
		v = findJsonbValueFromContainer(&filters->root, JB_FOBJECT, &key);
		attrs = v ? JsonbValueToJsonb(v) : DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	}
	/* the rows ranked with every word first, then rows missing words */
	if (ps == PS_RELEVANCE)
		q = DirectFunctionCall2(jsonb_concat, q,
								DirectFunctionCall1(jsonb_in, CStringGetDatum("{\"match\": \"any\"}")));

	InitMaterializedSRF(fcinfo, 0);

	/* the index call, into a tuplestore of its own */
	rowsdesc = CreateTemplateTupleDesc(4);
	TupleDescInitEntry(rowsdesc, 1, "p", get_rel_type_id(IndexGetRelation(cache->index, false)), -1, 0);
	TupleDescInitEntry(rowsdesc, 2, "score", FLOAT4OID, -1, 0);
	TupleDescInitEntry(rowsdesc, 3, "typos", INT4OID, -1, 0);
	TupleDescInitEntry(rowsdesc, 4, "missing", INT4OID, -1, 0);
	rows = tuplestore_begin_heap(false, false, work_mem);
	memset(&inner, 0, sizeof(inner));
	inner.type = T_ReturnSetInfo;
	inner.econtext = rsinfo->econtext;
	inner.expectedDesc = rowsdesc;
	inner.allowedModes = SFRM_Materialize;
	inner.returnMode = SFRM_Materialize;
	inner.setResult = rows;
	inner.setDesc = rowsdesc;
	SsSearchRows(cache->index, q, PG_GETARG_TEXT_PP(2), (int32) (lim + off), attrs, &inner);

	nres = cut_page(rows, rowsdesc, ps, lim, off, rsinfo);
	tuplestore_end(rows);

	/* the log record (the ring, or a row without one) */
	ShopSearchLogWrite(PG_GETARG_TEXT_PP(0), filters, PG_GETARG_TEXT_PP(2), nres,
					   (float4) ((double) (GetCurrentTimestamp() - t0) / 1000.0),
					   !PG_ARGISNULL(5), PG_ARGISNULL(5) ? 0 : PG_GETARG_INT64(5));
	return (Datum) 0;
}

/*
 * shop._search_rel_has_pages(rel regclass) -> boolean: false when the
 * table has no pages, so no row in any state; shop._search_prepare skips
 * the behaviour prior's lookups while shop.search_prior has none (a new
 * shop, or one that never refreshed its prior).  A row inserted since, by
 * any transaction, is on a page: the answer needs no invalidation.  The
 * caller needs SELECT on the table.
 */
PG_FUNCTION_INFO_V1(shop_search_rel_has_pages);

Datum
shop_search_rel_has_pages(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel;
	bool		has;

	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid))));
	rel = table_open(relid, AccessShareLock);
	has = RelationGetNumberOfBlocks(rel) > 0;
	table_close(rel, AccessShareLock);
	PG_RETURN_BOOL(has);
}
