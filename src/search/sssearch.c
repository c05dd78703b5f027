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
 *	 1. SearchPrepare (also SQL-callable as shop._search_prepare) checks
 *		the arguments, authorizes the customer and builds the index query
 *		(filters, synonyms, personalization, intent, prior) in C, with the
 *		rules, messages and SQLSTATEs of the PL/pgSQL _search_prepare and
 *		_search_query it replaced (thr3), calling PL/pgSQL only for
 *		synonyms, personalization, an intent not in the backend's cache
 *		and a prior table with rows;
 *	 2. the index call of shop._search_rows (SsSearchRowsTo, sssort.c)
 *		gives its rows one by one, and the page is cut here: active rows only,
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

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "storage/bufmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/syscache.h"
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

/*
 * What shop.search keeps per backend: the OIDs it calls and reads (the
 * relations through ShopRelid).  A call used to look shop._search_prepare
 * up by name and the index by name for every new FmgrInfo (every statement
 * of a client that does not prepare), and the index's table and row type
 * on every call.  Any change to pg_proc or pg_class (a function or
 * relation created, replaced, dropped or renamed, or only a relation's
 * statistics updated) drops the entries; PostgreSQL delivers those
 * changes at the start of each transaction and when a lock is taken.
 */
typedef struct SearchOids
{
	bool		valid;
	Oid			index;			/* shop.product_search_idx */
	Oid			rowtype;		/* the row type of its table (shop.product) */
	Oid			synonym;		/* shop.synonym */
	Oid			vocab;			/* shop.search_vocab */
	Oid			prior_rel;		/* shop.search_prior */
	Oid			query_fn;		/* shop._search_query(text, jsonb, bigint) */
	Oid			intent_fn;		/* shop._search_intent_work(jsonb) */
	Oid			prior_fn;		/* shop._search_prior(text, jsonb) */
	Oid			descendants_fn; /* shop.category_descendants(bigint) */
} SearchOids;

static SearchOids search_oids;
static bool search_oids_callback = false;
static uint64 search_oids_invals = 0;	/* invalidations seen */

static void
search_oids_inval(Datum arg, int cacheid, uint32 hashvalue)
{
	search_oids.valid = false;
	search_oids_invals++;
}

static Oid
shop_func(const char *name, int nargs, const Oid *args)
{
	return LookupFuncName(list_make2(makeString("shop"), makeString(pstrdup(name))),
						  nargs, args, false);
}

static Oid
shop_rel(const char *name)
{
	Oid			relid = ShopRelid(name, NULL);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"shop.%s\" does not exist", name)));
	return relid;
}

static SearchOids *
get_search_oids(void)
{
	if (!search_oids_callback)
	{
		CacheRegisterSyscacheCallback(PROCOID, search_oids_inval, (Datum) 0);
		CacheRegisterSyscacheCallback(RELOID, search_oids_inval, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, search_oids_inval, (Datum) 0);
		search_oids_callback = true;
	}
	if (!search_oids.valid)
	{
		SearchOids	o;
		Oid			q_args[3] = {TEXTOID, JSONBOID, INT8OID};
		Oid			j_args[1] = {JSONBOID};
		Oid			p_args[2] = {TEXTOID, JSONBOID};
		Oid			d_args[1] = {INT8OID};

		/*
		 * valid only if no invalidation came during the lookups below (a
		 * lock taken): else this call uses them and the next looks again.
		 * An error in a lookup leaves the entries invalid.
		 */
		uint64		invals = search_oids_invals;

		o.index = shop_rel("product_search_idx");
		o.rowtype = get_rel_type_id(IndexGetRelation(o.index, false));
		o.synonym = shop_rel("synonym");
		o.vocab = shop_rel("search_vocab");
		o.prior_rel = shop_rel("search_prior");
		o.query_fn = shop_func("_search_query", 3, q_args);
		o.intent_fn = shop_func("_search_intent_work", 1, j_args);
		o.prior_fn = shop_func("_search_prior", 2, p_args);
		o.descendants_fn = shop_func("category_descendants", 1, d_args);
		o.valid = (search_oids_invals == invals);
		search_oids = o;
	}
	return &search_oids;
}

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
 * The page under way: the rows of the index call come one by one (sink),
 * each read in its heap buffer; the active ones make the page, in the
 * index's order (relevance: OFFSET off LIMIT lim as they come) or kept and
 * ordered by the sort's columns and product_id.  The rows used to go
 * through a tuplestore of whole-row composites first (a copy of each
 * row, another of the tuple, a fetch and a deform: about 20,000
 * instructions for a page of 20).
 */
typedef struct PageCut
{
	ReturnSetInfo *rsinfo;
	PageSort	ps;
	int32		lim;
	int32		off;
	TupleDesc	desc;			/* the heap's, at the first row */
	AttrNumber	att[PC_N];
	PageRow    *all;			/* a sort's rows */
	int			nall;
	int			cap;
	int			active;			/* active rows seen (relevance) */
	int			skipped;		/* a sort's rows before the page, not read */
	int			put;			/* rows put into rsinfo */
} PageCut;

static void
page_columns(PageCut *pg, TupleDesc desc)
{
	pg->desc = desc;
	for (int i = 0; i < PC_N; i++)
	{
		pg->att[i] = InvalidAttrNumber;
		for (int a = 0; a < desc->natts; a++)
		{
			Form_pg_attribute fa = TupleDescAttr(desc, a);

			if (!fa->attisdropped && strcmp(NameStr(fa->attname), pc_names[i]) == 0)
			{
				pg->att[i] = a + 1;
				break;
			}
		}
		if (pg->att[i] == InvalidAttrNumber)
			elog(ERROR, "shop.product has no column \"%s\"", pc_names[i]);
	}
}

/*
 * the page's columns of a row (values, nulls: the whole row's); a value
 * stored out of line is read in, as the whole-row copy did: the page
 * holds no TOAST pointer into shop.product
 */
static bool
page_row(PageCut *pg, Datum *values, bool *nulls, PageRow *r)
{
	for (int i = 0; i < PC_N; i++)
	{
		int			a = pg->att[i] - 1;
		Datum		v = values[a];

		r->n[i] = nulls[a];
		if (!nulls[a] && TupleDescAttr(pg->desc, a)->attlen == -1 &&
			VARATT_IS_EXTERNAL(DatumGetPointer(v)))
			v = PointerGetDatum(detoast_attr((struct varlena *) DatumGetPointer(v)));
		r->v[i] = v;
	}
	/* WHERE p.status = 'active' */
	if (r->n[PC_STATUS])
		return false;
	{
		text	   *st = DatumGetTextPP(r->v[PC_STATUS]);

		return VARSIZE_ANY_EXHDR(st) == 6 && memcmp(VARDATA_ANY(st), "active", 6) == 0;
	}
}

static void
page_sink(void *arg, TupleTableSlot *slot, bool ranked, float4 score, int32 typos, int32 missing)
{
	PageCut	   *pg = (PageCut *) arg;
	PageRow		r;

	if (slot == NULL)
	{
		/* an active row of a sort before the page (SsSearchRowsTo's skip) */
		Assert(pg->ps != PS_RELEVANCE);
		pg->skipped++;
		return;
	}
	if (pg->desc == NULL)
		page_columns(pg, slot->tts_tupleDescriptor);
	r.score = Float4GetDatum(score);
	r.score_null = !ranked;
	r.typos = Int32GetDatum(typos);
	r.typos_null = !ranked;
	r.missing = Int32GetDatum(ranked ? missing : 0);
	if (pg->ps == PS_RELEVANCE)
	{
		/* ORDER BY ord OFFSET off LIMIT lim: in the index's order */
		if (pg->put >= pg->lim)
			return;
		slot_getallattrs(slot);
		if (!page_row(pg, slot->tts_values, slot->tts_isnull, &r))
			return;
		if (pg->active++ >= pg->off)
		{
			/* (the values in the buffer are copied by the put) */
			put_row(pg->rsinfo, &r, true);
			pg->put++;
		}
		return;
	}
	/* a sort's row is kept: a copy of the tuple, its values in the copy */
	{
		HeapTuple	tup = ExecCopySlotHeapTuple(slot);
		Datum	   *values = palloc(pg->desc->natts * sizeof(Datum));
		bool	   *nulls = palloc(pg->desc->natts * sizeof(bool));

		bool		active;

		heap_deform_tuple(tup, pg->desc, values, nulls);
		active = page_row(pg, values, nulls, &r);
		pfree(values);
		pfree(nulls);
		if (!active)
		{
			heap_freetuple(tup);
			return;
		}
	}
	if (pg->nall == pg->cap)
	{
		pg->cap = pg->cap ? pg->cap * 2 : 64;
		pg->all = pg->all ? repalloc(pg->all, pg->cap * sizeof(PageRow))
			: palloc(pg->cap * sizeof(PageRow));
	}
	pg->all[pg->nall++] = r;
}

/* a sorted scan that starts again: the rows given so far are forgotten */
static void
page_restart(void *arg)
{
	PageCut	   *pg = (PageCut *) arg;

	pg->nall = 0;
	pg->active = 0;
	pg->skipped = 0;
	pg->put = 0;
}

/* a sort's page: the kept rows ordered, OFFSET off LIMIT lim */
static void
page_finish(PageCut *pg)
{
	if (pg->ps == PS_RELEVANCE || pg->nall == 0)
		return;
	page_sort = pg->ps;
	qsort(pg->all, pg->nall, sizeof(PageRow), page_row_cmp);
	for (int i = Max(pg->off - pg->skipped, 0); i < pg->nall && pg->put < pg->lim; i++, pg->put++)
		put_row(pg->rsinfo, &pg->all[i], false);
}

/* a constant jsonb, parsed once per backend */
static Jsonb *empty_object = NULL;
static Jsonb *match_any = NULL;

static Jsonb *
const_jsonb(Jsonb **slot, const char *text)
{
	if (*slot == NULL)
	{
		Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		Jsonb	   *copy = MemoryContextAlloc(TopMemoryContext, VARSIZE(jb));

		memcpy(copy, jb, VARSIZE(jb));
		*slot = copy;
	}
	return *slot;
}

/* ---- the index query (shop._search_prepare) ---- */

extern Datum shop_search_no_typos(PG_FUNCTION_ARGS);
extern Datum shop_search_intent_cache_get(PG_FUNCTION_ARGS);
extern Datum shop_search_intent_cache_put(PG_FUNCTION_ARGS);

/* the table rel has pages (shop._search_rel_has_pages) */
static bool
rel_has_pages(Oid relid)
{
	Relation	rel;
	bool		has;

	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid))));
	rel = table_open(relid, AccessShareLock);
	has = RelationGetNumberOfBlocks(rel) > 0;
	table_close(rel, AccessShareLock);
	return has;
}

/* jsonb_typeof of a value */
static const char *
value_type(JsonbValue *v)
{
	if (v->type == jbvBinary && JsonContainerIsScalar(v->val.binary.data))
	{
		JsonbValue	sv;
		Jsonb	   *jb = JsonbValueToJsonb(v);

		JsonbExtractScalar(&jb->root, &sv);
		return JsonbTypeName(&sv);
	}
	return JsonbTypeName(v);
}

/* jsonb_typeof of a jsonb datum */
static const char *
jsonb_type(Jsonb *jb)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(jb))
	{
		JsonbExtractScalar(&jb->root, &v);
		return JsonbTypeName(&v);
	}
	return JB_ROOT_IS_OBJECT(jb) ? "object" : "array";
}

/* a value as format('%s', v) prints it (jsonb_out) */
static char *
value_text(JsonbValue *v)
{
	Jsonb	   *jb = JsonbValueToJsonb(v);

	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

static void
malformed_filter(const char *fmt, const char *a, const char *b)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("malformed search filter"),
			 b ? errdetail(fmt, a, b) : errdetail(fmt, a)));
}

static void
push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
}

/* brand: a string, or a non-empty array of strings */
static bool
brand_ok(JsonbValue *v)
{
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;
	int			n = 0;

	if (v->type == jbvString)
		return true;
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data) ||
		JsonContainerIsScalar(v->val.binary.data))
		return false;
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (e.type != jbvString)
			return false;
		n++;
	}
	return n > 0;
}

/*
 * The filters of shop._search_query, into the object under construction
 * (st): the checks, messages and SQLSTATEs of the PL/pgSQL loop, key by
 * key in jsonb_each's order.
 */
static void
push_filters(JsonbParseState **st, Jsonb *filters, SearchOids *o)
{
	JsonbIterator *it = JsonbIteratorInit(&filters->root);
	JsonbValue	kv,
				v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &kv, true)) != WJB_DONE)
	{
		char	   *k;

		if (tok != WJB_KEY)
			continue;
		k = pnstrdup(kv.val.string.val, kv.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		if (strcmp(k, "category_id") == 0)
		{
			char	   *vt;
			Datum		cats;
			ArrayType  *arr;
			int64		id;

			if (v.type != jbvNumeric)
				malformed_filter("category_id must be a number, not %s.", value_text(&v), NULL);
			vt = value_text(&v);
			if (!SsNumericFitsInt8(v.val.numeric, true))
				malformed_filter("category_id must be a whole number, not %s.", vt, NULL);
			/* (v #>> '{}')::bigint */
			id = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(vt)));
			cats = OidFunctionCall1(o->descendants_fn, Int64GetDatum(id));
			arr = DatumGetArrayTypeP(cats);
			if (ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr)) == 0)
				ereport(ERROR,
						(errcode(MAKE_SQLSTATE('S', 'H', '0', '0', '6')),
						 errmsg("category not found"),
						 errdetail("No category has category_id %s.", vt)));
			push_key(st, "category_ids");
			{
				Datum	   *ids;
				bool	   *nulls;
				int			n;

				deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
								  &ids, &nulls, &n);
				pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
				for (int i = 0; i < n; i++)
				{
					JsonbValue	e;

					if (nulls[i])
						e.type = jbvNull;
					else
					{
						e.type = jbvNumeric;
						e.val.numeric = int64_to_numeric(DatumGetInt64(ids[i]));
					}
					pushJsonbValue(st, WJB_ELEM, &e);
				}
				pushJsonbValue(st, WJB_END_ARRAY, NULL);
			}
		}
		else if (strcmp(k, "brand") == 0)
		{
			if (!brand_ok(&v))
				malformed_filter("brand must be a string or a non-empty array of strings, not %s.",
								 value_text(&v), NULL);
			push_key(st, "brands");
			pushJsonbValue(st, WJB_VALUE, &v);
		}
		else if (strcmp(k, "price_min") == 0 || strcmp(k, "price_max") == 0 ||
				 strcmp(k, "rating_min") == 0)
		{
			if (v.type != jbvNumeric)
				malformed_filter("%s must be a number, not %s.", k, value_text(&v));
			push_key(st, k);
			pushJsonbValue(st, WJB_VALUE, &v);
		}
		else if (strcmp(k, "in_stock") == 0)
		{
			if (v.type != jbvBool)
				malformed_filter("in_stock must be true or false, not %s.", value_text(&v), NULL);
			push_key(st, "in_stock");
			pushJsonbValue(st, WJB_VALUE, &v);
		}
		else if (strcmp(k, "attributes") == 0)
		{
			if (strcmp(value_type(&v), "object") != 0)
				malformed_filter("attributes must be a jsonb object, not %s.", value_text(&v), NULL);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown search filter"),
					 errdetail("Filter \"%s\" is not one of category_id, brand, price_min, price_max, rating_min, in_stock, attributes.",
							   k)));
	}
}

static void
null_argument(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("argument %s must not be null", name)));
}

/*
 * refuse_folded_card: SH005 when the query, folded as the search log
 * stores it (shop.search_log.query_folded, shop._search_fold: what is not
 * a letter or a digit becomes a space), holds a card number, although the
 * query as given does not ('4111_1111_1111_1111'): the guard on the log
 * would refuse the record at the flush, which would fail with it
 * (sql/hostile_search_log_fold).  A query of fewer than 12 bytes has no
 * 12 digits to fold into a card.
 */
static void
refuse_folded_card(text *query)
{
	int			len = VARSIZE_ANY_EXHDR(query);
	int			cap;
	char	   *buf;
	int			n;

	if (len < 12)
		return;
	cap = len * 3 + 8;
	buf = palloc(cap);
	n = SsFoldWord(VARDATA_ANY(query), len, buf, cap);
	ShopRefuseCardNumberText(buf, n, "query");
	pfree(buf);
}

/* call a function of two arguments (the second may be NULL) through fmgr */
static Datum
call_fn(Oid fn, int nargs, Datum a0, Datum a1, bool a1null, Datum a2, bool a2null, bool *isnull)
{
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fc, 3);
	Datum		r;

	fmgr_info(fn, &flinfo);
	InitFunctionCallInfoData(*fc, &flinfo, nargs, InvalidOid, NULL, NULL);
	fc->args[0].value = a0;
	fc->args[0].isnull = false;
	fc->args[1].value = a1;
	fc->args[1].isnull = a1null;
	fc->args[2].value = a2;
	fc->args[2].isnull = a2null;
	r = FunctionCallInvoke(fc);
	*isnull = fc->isnull;
	return r;
}

/*
 * SearchPrepare: the work of shop._search_prepare and the shop._search_query
 * it called, in C (issue 12: the PL/pgSQL functions, each with its
 * search_path switch, and their statements cost about 0.3 M instructions
 * of a 2.2 M search).  The checks, in the same order, with the same
 * messages and SQLSTATEs; the query object built as _search_query built
 * it.  With a customer (personalization), synonyms (shop.synonym has
 * pages) or a learned vocabulary (shop.search_vocab has pages), the object
 * is shop._search_query's, called after the checks
 * here.  For relevance, the intent (the backend's cache, else
 * shop._search_intent_work) and the behaviour prior (shop._search_prior,
 * while shop.search_prior has pages), as shop._search_intent and
 * _search_prepare did.  Returns the index query.
 */
static Datum
SearchPrepare(FunctionCallInfo fcinfo)
{
	SearchOids *o = get_search_oids();
	text	   *query;
	Jsonb	   *filters;
	char	   *sort;
	bool		ranked;
	bool		has_customer = !PG_ARGISNULL(5);
	Datum		q;
	bool		isnull;

	/* shop._search_prepare's checks */
	if (PG_ARGISNULL(2))
		null_argument("sort");
	if (PG_ARGISNULL(3) || PG_GETARG_INT32(3) < 1 || PG_GETARG_INT32(3) > SHOP_MAX_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("limit out of range"),
				 errdetail("lim is %s; it must be between 1 and %d.",
						   PG_ARGISNULL(3) ? "NULL" : psprintf("%d", PG_GETARG_INT32(3)),
						   SHOP_MAX_LIMIT)));
	if (PG_ARGISNULL(4) || PG_GETARG_INT32(4) < 0 || PG_GETARG_INT32(4) > SHOP_MAX_OFFSET)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offset out of range"),
				 errdetail("off is %s; it must be between 0 and %d.",
						   PG_ARGISNULL(4) ? "NULL" : psprintf("%d", PG_GETARG_INT32(4)),
						   SHOP_MAX_OFFSET)));
	if (has_customer)
		ShopAuthorizeCustomer(PG_GETARG_INT64(5), false);
	sort = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (strcmp(sort, "relevance") != 0 && strcmp(sort, "price_asc") != 0 &&
		strcmp(sort, "price_desc") != 0 && strcmp(sort, "rating") != 0 &&
		strcmp(sort, "newest") != 0 && strcmp(sort, "popularity") != 0)
	{
		char	   *shown = ShopEchoValue(sort, strlen(sort), "sort");

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown sort"),
				 errdetail("sort is %s; it must be one of relevance, price_asc, price_desc, rating, newest, popularity.",
						   shown)));
	}
	ranked = strcmp(sort, "relevance") == 0;

	/* shop._search_query's checks */
	if (PG_ARGISNULL(0))
		null_argument("query");
	if (PG_ARGISNULL(1))
		null_argument("filters");
	query = PG_GETARG_TEXT_PP(0);
	filters = PG_GETARG_JSONB_P(1);
	{
		int			len = pg_mbstrlen_with_len(VARDATA_ANY(query), VARSIZE_ANY_EXHDR(query));

		if (len > shop_max_query_length)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("%s is too long", "query"),
					 errdetail("%s has %d characters; at most %d are allowed.", "query", len,
							   shop_max_query_length)));
	}
	ShopRefuseCardNumberText(VARDATA_ANY(query), VARSIZE_ANY_EXHDR(query), "query");
	refuse_folded_card(query);
	if (!JB_ROOT_IS_OBJECT(filters) || JB_ROOT_IS_SCALAR(filters))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("malformed search filters"),
				 errdetail("filters must be a jsonb object, not a %s.", jsonb_type(filters))));

	if (has_customer || rel_has_pages(o->synonym) || rel_has_pages(o->vocab))
	{
		/*
		 * personalization, synonyms or a learned vocabulary
		 * (shop._search_vocab's expansions): shop._search_query's object
		 */
		q = call_fn(o->query_fn, 3, PointerGetDatum(query), JsonbPGetDatum(filters), false,
					PG_GETARG_DATUM(5), !has_customer, &isnull);
		if (isnull)
			elog(ERROR, "shop._search_query returned NULL");
	}
	else
	{
		JsonbParseState *st = NULL;
		JsonbValue	qv;
		JsonbValue *res;

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		push_key(&st, "q");
		qv.type = jbvString;
		qv.val.string.val = VARDATA_ANY(query);
		qv.val.string.len = VARSIZE_ANY_EXHDR(query);
		pushJsonbValue(&st, WJB_VALUE, &qv);
		if (JB_ROOT_COUNT(filters) > 0)
		{
			ShopRefuseCardNumberJsonb(filters, "filters");
			push_filters(&st, filters, o);
		}
		res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
		/* the words the catalog knows get no typo tolerance (issue 9) */
		q = DirectFunctionCall2(shop_search_no_typos, ObjectIdGetDatum(o->index),
								JsonbPGetDatum(JsonbValueToJsonb(res)));
	}

	if (ranked && shop_search_intent)
	{
		/* shop._search_intent: the backend's answer, else worked out */
		LOCAL_FCINFO(fc, 2);
		Datum		res;

		InitFunctionCallInfoData(*fc, NULL, 1, InvalidOid, NULL, NULL);
		fc->args[0].value = q;
		fc->args[0].isnull = false;
		res = shop_search_intent_cache_get(fc);
		if (fc->isnull)
		{
			bool		resnull;

			res = call_fn(o->intent_fn, 1, q, (Datum) 0, true, (Datum) 0, true, &resnull);
			InitFunctionCallInfoData(*fc, NULL, 2, InvalidOid, NULL, NULL);
			fc->args[0].value = q;
			fc->args[0].isnull = false;
			fc->args[1].value = res;
			fc->args[1].isnull = resnull;
			(void) shop_search_intent_cache_put(fc);
			if (resnull)
				elog(ERROR, "shop._search_intent_work returned NULL");
		}
		q = res;
	}
	if (ranked && shop_search_prior && rel_has_pages(o->prior_rel))
	{
		q = call_fn(o->prior_fn, 2, PointerGetDatum(query), q, false, (Datum) 0, true, &isnull);
		if (isnull)
			elog(ERROR, "shop._search_prior returned NULL");
	}
	return q;
}

/*
 * shop._search_prepare(query text, filters jsonb, sort text, lim int,
 * off int, customer_id bigint) -> jsonb: shop.search's checks and
 * authorization, and the index query (SearchPrepare).
 */
PG_FUNCTION_INFO_V1(shop_search_prepare);

Datum
shop_search_prepare(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(SearchPrepare(fcinfo));
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
	SearchOids *o;
	Datum		q;
	Jsonb	   *filters;
	Jsonb	   *attrs;
	char	   *sort;
	int32		lim,
				off;
	PageSort	ps;
	PageCut		page;
	int			nres;

	/* the checks, the authorization and the index query */
	q = SearchPrepare(fcinfo);
	o = get_search_oids();
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
		attrs = v ? JsonbValueToJsonb(v) : const_jsonb(&empty_object, "{}");
	}
	/* the rows ranked with every word first, then rows missing words */
	if (ps == PS_RELEVANCE)
		q = DirectFunctionCall2(jsonb_concat, q,
								JsonbPGetDatum(const_jsonb(&match_any, "{\"match\": \"any\"}")));

	InitMaterializedSRF(fcinfo, 0);

	/* the index call, its rows into the page as they come */
	memset(&page, 0, sizeof(page));
	page.rsinfo = rsinfo;
	page.ps = ps;
	page.lim = lim;
	page.off = off;
	SsSearchRowsTo(o->index, q, PG_GETARG_TEXT_PP(2), (int32) (lim + off), off, attrs,
				   page_sink, page_restart, &page);
	page_finish(&page);
	nres = page.put;

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
