/*-------------------------------------------------------------------------
 *
 * recosimilar.c
 *	  The content neighbours of a product and also_bought's list: the
 *	  per-candidate terms of the content score (the trigram similarity of
 *	  a candidate's title to the source's, and the share of the source's
 *	  attributes the candidate has with equal values), the candidates
 *	  themselves (shop._similar_candidates, which similar_products, the
 *	  fill of also_bought and the router's shard step share), and
 *	  shop._also_bought_list (the co-purchase rows, the fill, its cache).
 *	  The last two are below the terms, each with its own comment.
 *
 * Both give exactly what the SQL they replace gave, so the lists do not
 * move:
 *
 *	  shop._title_similarity_to(title, src) = pg_trgm's similarity(title, src)
 *
 * is pg_trgm's own computation (its generate_trgm and cnt_sml, which
 * similarity() calls, looked up in its library), except that the source's
 * trigrams are made once per call site and source title instead of once
 * per candidate: similarity() made both sides' every time, and the source
 * is the same for the 200 candidates of a call.  Where the library does
 * not export them, similarity() itself is called.
 *
 *	  shop._attr_overlap(attrs, src)
 *		= count of the keys k of src with attrs -> k = src -> k (jsonb
 *		  equality) divided by the number of keys of src, NULL when src
 *		  has none
 *
 * is the pair of subqueries of 1.0 (jsonb_each and jsonb_object_keys of
 * the source, per candidate) in one pass.  It is a double precision
 * computed as theirs was: count(*)::real / count(*) resolves to
 * float48div, the real widened and divided in double.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "relread.h"
#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_title_similarity_to);
PG_FUNCTION_INFO_V1(shop_attr_overlap);

/* pg_trgm's trigram set: a varlena; only pg_trgm looks inside */
typedef struct varlena SimTrgm;
typedef SimTrgm *(*SimGenerateFn) (char *str, int slen);
typedef float4 (*SimCountFn) (SimTrgm *trg1, SimTrgm *trg2, bool inexact);

static bool sim_attr_overlap(Jsonb *attrs, Jsonb *src, double *res);

static bool sim_looked_up = false;
static SimGenerateFn sim_generate = NULL;
static SimCountFn sim_count = NULL;

/* the source's trigrams, kept in fn_extra for the call site */
typedef struct SimSource
{
	int			len;			/* bytes of the source title */
	char	   *title;			/* its bytes */
	SimTrgm    *trg;			/* its trigrams */
} SimSource;

/*
 * sim_lookup: pg_trgm's generate_trgm and cnt_sml, from its library (the
 * one similarity() runs in).  Both stay NULL when it does not export them.
 */
static void
sim_lookup(void)
{
	if (sim_looked_up)
		return;
	sim_generate = (SimGenerateFn)
		load_external_function("$libdir/pg_trgm", "generate_trgm", false, NULL);
	sim_count = (SimCountFn)
		load_external_function("$libdir/pg_trgm", "cnt_sml", false, NULL);
	if (sim_generate == NULL || sim_count == NULL)
		sim_generate = NULL, sim_count = NULL;
	sim_looked_up = true;
}

/*
 * The trigram sets of product titles, kept per backend (issue 14, rec8).
 *
 * A thin product's fill scores about 120 of its up to 200 candidates, and
 * making a title's trigrams (pg_trgm's generate_trgm: lower-casing through
 * wide characters, splitting into words, a sort) was two thirds of a
 * first also_bought's instructions.  The candidates are the first 100 of
 * a category and of a brand by popularity, so the same few thousand
 * products come back call after call: their sets are kept here, keyed by
 * product id, each with the title bytes it was made from.  An entry is
 * used only when the title read now is byte for byte that title (a
 * renamed product's set is made again), so no invalidation is needed and
 * the sets are those generate_trgm makes: the scores do not move.  The
 * locale that generate_trgm depends on is the database's, fixed for a
 * backend.
 *
 * At most shop.similar_title_cache entries (0: none kept); when a call
 * finds it full, every entry is dropped first (a call adds at most 201).
 * About 100 bytes plus 3 per trigram an entry.
 */
int			shop_similar_title_cache = 20000;

typedef struct SimTrgmEntry
{
	int64		pid;			/* hash key */
	int			len;			/* bytes of the title */
	char	   *title;			/* the title the set was made from */
	SimTrgm    *trg;			/* its trigrams */
} SimTrgmEntry;

static MemoryContext sim_trgm_cxt = NULL;
static HTAB *sim_trgm_hash = NULL;

void
ShopSimilarDefineGUCs(void)
{
	DefineCustomIntVariable("shop.similar_title_cache",
							"Products whose title trigrams a backend keeps for the similar-products scoring.",
							"0 keeps none (every title's trigrams are made on every call).",
							&shop_similar_title_cache,
							20000, 0, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
}

/*
 * At the start of a call: the cache, emptied when full or switched off.
 * Pointers into it stay valid until the next call's start.
 */
static void
sim_trgm_cache_begin(void)
{
	if (sim_trgm_hash != NULL &&
		(shop_similar_title_cache <= 0 ||
		 hash_get_num_entries(sim_trgm_hash) >= shop_similar_title_cache))
	{
		MemoryContextReset(sim_trgm_cxt);
		sim_trgm_hash = NULL;
	}
	if (sim_trgm_hash == NULL && shop_similar_title_cache > 0)
	{
		HASHCTL		ctl;

		if (sim_trgm_cxt == NULL)
			sim_trgm_cxt = AllocSetContextCreate(TopMemoryContext, "shop title trigrams",
												 ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(SimTrgmEntry);
		ctl.hcxt = sim_trgm_cxt;
		sim_trgm_hash = hash_create("shop title trigrams", 1024, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
}

/* the cached set of pid's title when it was made from these bytes; NULL if not */
static SimTrgm *
sim_trgm_cached(int64 pid, const char *title, int len)
{
	SimTrgmEntry *e;

	if (sim_trgm_hash == NULL)
		return NULL;
	e = hash_search(sim_trgm_hash, &pid, HASH_FIND, NULL);
	if (e != NULL && e->len == len && memcmp(e->title, title, len) == 0)
		return e->trg;
	return NULL;
}

/*
 * The trigrams of pid's title (bytes title, len): the cached set, else
 * made by generate_trgm (sim_generate must be set) and kept.  The result
 * lives until the next call's start (in the cache) or in the current
 * memory context when nothing is kept.
 */
static SimTrgm *
sim_title_trgm(int64 pid, const char *title, int len)
{
	SimTrgm    *trg = sim_trgm_cached(pid, title, len);
	SimTrgm    *made;
	SimTrgmEntry *e;
	bool		found;
	char	   *t;

	if (trg != NULL)
		return trg;
	made = sim_generate((char *) title, len);
	if (sim_trgm_hash == NULL)
		return made;
	/* copies of exactly its size in the cache's context, then the entry */
	trg = MemoryContextAlloc(sim_trgm_cxt, VARSIZE(made));
	memcpy(trg, made, VARSIZE(made));
	pfree(made);
	t = MemoryContextAlloc(sim_trgm_cxt, Max(len, 1));
	memcpy(t, title, len);
	e = hash_search(sim_trgm_hash, &pid, HASH_ENTER, &found);
	if (found)
	{
		/* the title changed: the old set goes */
		pfree(e->title);
		pfree(e->trg);
	}
	e->len = len;
	e->title = t;
	e->trg = trg;
	return trg;
}

/*
 * shop._title_similarity_to(title text, src text) -> real
 *
 * pg_trgm's similarity(title, src), with src's trigrams made once per call
 * site while src stays the same.
 */
Datum
shop_title_similarity_to(PG_FUNCTION_ARGS)
{
	text	   *title = PG_GETARG_TEXT_PP(0);
	text	   *src = PG_GETARG_TEXT_PP(1);
	SimSource  *s = (SimSource *) fcinfo->flinfo->fn_extra;
	int			slen = VARSIZE_ANY_EXHDR(src);
	SimTrgm    *trg;
	float4		res;

	sim_lookup();
	if (sim_generate == NULL)
	{
		/* similarity() itself, found through pg_trgm's library */
		static PGFunction sim_fn = NULL;

		if (sim_fn == NULL)
			sim_fn = load_external_function("$libdir/pg_trgm", "similarity", true, NULL);
		return DirectFunctionCall2(sim_fn, PointerGetDatum(title), PointerGetDatum(src));
	}
	if (s == NULL || s->len != slen || memcmp(s->title, VARDATA_ANY(src), slen) != 0)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (s == NULL)
			s = (SimSource *) palloc0(sizeof(SimSource));
		else
		{
			pfree(s->title);
			pfree(s->trg);
		}
		s->len = slen;
		s->title = palloc(Max(slen, 1));
		memcpy(s->title, VARDATA_ANY(src), slen);
		s->trg = sim_generate(s->title, slen);
		fcinfo->flinfo->fn_extra = s;
		MemoryContextSwitchTo(old);
	}
	trg = sim_generate(VARDATA_ANY(title), VARSIZE_ANY_EXHDR(title));
	res = sim_count(trg, s->trg, false);
	pfree(trg);
	PG_FREE_IF_COPY(title, 0);
	PG_FREE_IF_COPY(src, 1);
	PG_RETURN_FLOAT4(res);
}

/*
 * shop._attr_overlap(attrs jsonb, src jsonb) -> double precision
 *
 * The share of src's keys whose value attrs has too (jsonb equality, as
 * attrs -> k = src -> k), NULL when src has no key.  src must be an object
 * (the error jsonb_each gave); attrs that is not one has no key.
 */
Datum
shop_attr_overlap(PG_FUNCTION_ARGS)
{
	Jsonb	   *attrs = PG_GETARG_JSONB_P(0);
	Jsonb	   *src = PG_GETARG_JSONB_P(1);
	double		res;

	if (!sim_attr_overlap(attrs, src, &res))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(res);
}

static inline bool
sim_jsonb_scalar(const JsonbValue *v)
{
	return v->type == jbvNull || v->type == jbvString || v->type == jbvNumeric ||
		v->type == jbvBool;
}

/*
 * Whether two scalar values are equal as jsonb equality finds them (a
 * scalar of another type is unequal; strings under the database's
 * collation, which is deterministic, so equal bytes; numerics by
 * numeric_cmp), without building a jsonb of each.
 */
static bool
sim_scalars_equal(const JsonbValue *a, const JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
													 PointerGetDatum(a->val.numeric),
													 PointerGetDatum(b->val.numeric))) == 0;
		default:
			return false;
	}
}

/*
 * The overlap of shop._attr_overlap into *res; false for its NULL (src has
 * no key).
 */
static bool
sim_attr_overlap(Jsonb *attrs, Jsonb *src, double *res)
{
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	int			total = 0,
				same = 0;
	bool		attrs_obj = JB_ROOT_IS_OBJECT(attrs);

	if (!JB_ROOT_IS_OBJECT(src))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot call %s on a non-object", "jsonb_each")));
	it = JsonbIteratorInit(&src->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue *cv;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		total++;
		if (!attrs_obj)
			continue;
		cv = getKeyJsonValueFromContainer(&attrs->root, k.val.string.val, k.val.string.len, NULL);
		if (cv != NULL && sim_jsonb_scalar(cv) && sim_jsonb_scalar(&v))
		{
			/* two scalars: compared as compareJsonbContainers compares them */
			if (sim_scalars_equal(cv, &v))
				same++;
		}
		else if (cv != NULL)
		{
			Jsonb	   *a = JsonbValueToJsonb(cv);
			Jsonb	   *b = JsonbValueToJsonb(&v);

			if (compareJsonbContainers(&a->root, &b->root) == 0)
				same++;
			pfree(a);
			pfree(b);
		}
	}
	if (total == 0)
		return false;
	/* float48div((float4) same, (float8) total), as the SQL was */
	*res = (float8) (float4) same / (float8) total;
	return true;
}

/*
 * shop._similar_candidates(src_id bigint, src_category bigint, src_brand
 * text, src_title text, src_attributes jsonb, exclude bigint[], lim int)
 * RETURNS SETOF shop.scored_product
 *
 * The content neighbours of a product (similar_products, the fill of a
 * thin also_bought, the router's shard step), in C (issue 14, reco13):
 * the list the SQL body (shop._similar_candidates_sql) gives, read from
 * the same indexes under the caller's snapshot.  That body's cost at
 * 1,000,000 products was the executor around its reads (a union, a
 * window, two TID scans, sorts: about 60 plan nodes started per call) more
 * than the reads themselves.
 *
 *	 lists	 the first 100 active products of the source's category
 *			 (product_category_idx: popularity descending, then id) and of
 *			 its brand (product_brand_idx, partial on active), the source
 *			 left out; a product on both counted once;
 *	 bound	 0.4 * same category + 0.2 * same brand + 0.4 + 0.001 *
 *			 popularity, in double precision as the SQL computes it;
 *			 the products of exclude left out;
 *	 first	 the 2 * lim of highest bound (then id) scored, their row read
 *			 again by its ctid as the SQL's TID scan does;
 *	 rest	 the others whose bound * 1.000001 + 0.000001 reaches the lim-th
 *			 best score of the first (all when they are fewer than lim);
 *	 list	 the lim best scores, then id.
 *
 * The score is the SQL's expression with its types: the category and
 * brand terms are numeric (0, 0.2, 0.4 or 0.6, exact), the rest double
 * precision, rounded to real at the end:
 *
 *	 (numeric) + 0.3 * (float8) title similarity + 0.1 * coalesce(overlap, 0)
 *	 + 0.001 * (float8) popularity
 *
 * The SQL body runs instead for arguments the C does not take (a NULL
 * source id, title, exclude array or one with a NULL, lim outside 1 to
 * 100,000, attributes that are not an object) and when shop.product or its
 * indexes are not as shop made them or cannot be read plainly (privileges,
 * row security): the lists are the same either way.
 */
PG_FUNCTION_INFO_V1(shop_similar_candidates);

#define SIM_LIST 100			/* products read from each list */

typedef struct SimCand
{
	int64		pid;
	SimTrgm    *trg;			/* its title's cached trigrams, or NULL */
	text	   *title;			/* else a copy of its title; NULL when NULL */
	Jsonb	   *attrs;			/* a copy of its attributes (when the source has some) */
	bool		same_cat;
	bool		same_brand;
	float4		pop;
	double		bound;
	float4		s;
} SimCand;

/* the relations read, opened for one call; ok false when not as expected */
typedef struct SimRels
{
	bool		ok;
	Relation	prod,
				cat_idx,
				brand_idx;
	AttrNumber	p_id,
				p_category,
				p_brand,
				p_title,
				p_attributes,
				p_status,
				p_popularity;
} SimRels;

static void
sim_rels_open(SimRels *r)
{
	static const bool desc[] = {false, true, false};

	memset(r, 0, sizeof(*r));
	r->prod = ShopPlainTable(get_namespace_oid("shop", false), "product");
	if (r->prod == NULL)
		return;
	r->p_id = ShopPlainColumn(r->prod, "product_id", INT8OID);
	r->p_category = ShopPlainColumn(r->prod, "category_id", INT8OID);
	r->p_brand = ShopPlainColumn(r->prod, "brand", TEXTOID);
	r->p_title = ShopPlainColumn(r->prod, "title", TEXTOID);
	r->p_attributes = ShopPlainColumn(r->prod, "attributes", JSONBOID);
	r->p_status = ShopPlainColumn(r->prod, "status", TEXTOID);
	r->p_popularity = ShopPlainColumn(r->prod, "popularity", FLOAT4OID);
	if (!(r->p_id && r->p_category && r->p_brand && r->p_title && r->p_attributes &&
		  r->p_status && r->p_popularity))
		return;
	{
		AttrNumber	c[3] = {r->p_category, r->p_popularity, r->p_id};
		Oid			t[3] = {INT8OID, FLOAT4OID, INT8OID};

		r->cat_idx = ShopPlainIndex(r->prod, "product_category_idx", 3, c, t, desc, false);
	}
	{
		AttrNumber	c[3] = {r->p_brand, r->p_popularity, r->p_id};
		Oid			t[3] = {TEXTOID, FLOAT4OID, INT8OID};

		/* partial on status = 'active' (checked again on every row read) */
		r->brand_idx = ShopPlainIndex(r->prod, "product_brand_idx", 3, c, t, desc, true);
	}
	r->ok = r->cat_idx != NULL && r->brand_idx != NULL;
}

static void
sim_rels_close(SimRels *r)
{
	if (r->cat_idx)
		index_close(r->cat_idx, NoLock);
	if (r->brand_idx)
		index_close(r->brand_idx, NoLock);
	if (r->prod)
		table_close(r->prod, NoLock);
}

/*
 * The orders the candidates are sorted in, on pointers with the
 * comparison inlined (sort_template.h): each is a total order on distinct
 * ids, so the result is the one qsort gave.
 */

/* by bound: highest first, then id */
static inline int
sim_cmp_bound(const SimCand *x, const SimCand *y)
{
	if (float8_gt(x->bound, y->bound))
		return -1;
	if (float8_lt(x->bound, y->bound))
		return 1;
	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* by score: highest first (float4 order, as SQL's), then id */
static inline int
sim_cmp_score(const SimCand *x, const SimCand *y)
{
	if (float4_gt(x->s, y->s))
		return -1;
	if (float4_lt(x->s, y->s))
		return 1;
	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* a pointer type of its own: the template declares several per line */
typedef SimCand *SimCandP;

#define ST_SORT sim_sort_pid
#define ST_ELEMENT_TYPE SimCandP
#define ST_COMPARE(a, b) (((*(a))->pid > (*(b))->pid) - ((*(a))->pid < (*(b))->pid))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

#define ST_SORT sim_sort_bound
#define ST_ELEMENT_TYPE SimCandP
#define ST_COMPARE(a, b) sim_cmp_bound(*(a), *(b))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

#define ST_SORT sim_sort_score
#define ST_ELEMENT_TYPE SimCandP
#define ST_COMPARE(a, b) sim_cmp_score(*(a), *(b))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * Read one list (an index scan with its first column equal to key) into
 * c[*n...]: its first SIM_LIST active products other than the source,
 * with what scoring them needs (their title's cached trigrams or the
 * title, their attributes when want_attrs), read from the row the index
 * led to.  (The SQL read them again by ctid, in a TID scan under the same
 * snapshot: the same row version, so the same values.)
 */
static void
sim_read_list(SimRels *r, Relation idx, Snapshot snap, ScanKey key, int64 src_id,
			  bool has_cat, int64 src_cat, const char *brand, int brand_len,
			  bool want_attrs, SimCand *c, int *n, TupleTableSlot *slot)
{
	IndexScanDesc scan = index_beginscan(r->prod, idx, snap, 1, 0);
	int			got = 0;

	index_rescan(scan, key, 1, NULL, 0);
	while (got < SIM_LIST && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d;
		SimCand    *x;

		if (!ShopSlotTextEq(slot, r->p_status, "active", 6))
			continue;
		d = slot_getattr(slot, r->p_id, &isnull);
		if (isnull || DatumGetInt64(d) == src_id)
			continue;
		x = &c[(*n)++];
		got++;
		x->pid = DatumGetInt64(d);
		x->trg = NULL;
		x->title = NULL;
		x->attrs = NULL;
		d = slot_getattr(slot, r->p_title, &isnull);
		if (!isnull)
		{
			text	   *t = DatumGetTextPP(d);

			if (sim_generate != NULL)
				x->trg = sim_trgm_cached(x->pid, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			if (x->trg == NULL)
				x->title = (t == (text *) DatumGetPointer(d)) ? DatumGetTextPCopy(d) : t;
		}
		if (want_attrs)
		{
			d = slot_getattr(slot, r->p_attributes, &isnull);
			if (!isnull)
				x->attrs = DatumGetJsonbPCopy(d);
		}
		d = slot_getattr(slot, r->p_category, &isnull);
		/* IS NOT DISTINCT FROM */
		x->same_cat = isnull ? !has_cat : (has_cat && DatumGetInt64(d) == src_cat);
		if (brand == NULL)
		{
			(void) slot_getattr(slot, r->p_brand, &isnull);
			x->same_brand = isnull;
		}
		else
			x->same_brand = ShopSlotTextEq(slot, r->p_brand, brand, brand_len);
		d = slot_getattr(slot, r->p_popularity, &isnull);
		x->pop = isnull ? 0 : DatumGetFloat4(d);
		if (isnull)
		{
			/* a NULL popularity (not NOT NULL any more): leave it to SQL */
			(*n)--;
			got--;
			r->ok = false;
			break;
		}
	}
	index_endscan(scan);
}

/* numeric 0.4 * same category + 0.2 * same brand, as a double */
static double
sim_numeric_part(const SimCand *c)
{
	return c->same_cat ? (c->same_brand ? 0.6 : 0.4) : (c->same_brand ? 0.2 : 0.0);
}

/* the score of c; false when its title is NULL */
static bool
sim_score(SimCand *c, text *src_title, SimTrgm *src_trg, Jsonb *src_attrs)
{
	text	   *title = c->title;
	float4		sim;
	double		overlap = 0;
	double		s;

	if (c->trg == NULL && title == NULL)
		return false;			/* NOT NULL in shop; the SQL would rank NULL first */
	if (src_trg != NULL)
	{
		SimTrgm    *trg = c->trg;

		if (trg == NULL)
			trg = sim_title_trgm(c->pid, VARDATA_ANY(title), VARSIZE_ANY_EXHDR(title));
		sim = sim_count(trg, src_trg, false);
	}
	else
	{
		static PGFunction sim_fn = NULL;

		if (sim_fn == NULL)
			sim_fn = load_external_function("$libdir/pg_trgm", "similarity", true, NULL);
		sim = DatumGetFloat4(DirectFunctionCall2(sim_fn, PointerGetDatum(title),
												 PointerGetDatum(src_title)));
	}
	if (src_attrs != NULL && c->attrs != NULL)
	{
		if (!sim_attr_overlap(c->attrs, src_attrs, &overlap))
			overlap = 0;
	}
	/* numeric + float84mul + float8mul + float84mul, left to right */
	s = sim_numeric_part(c);
	s = s + 0.3 * (double) sim;
	s = s + 0.1 * overlap;
	s = s + 0.001 * (double) c->pop;
	c->s = (float4) s;		/* ::real (dtof; no overflow at these sizes) */
	return true;
}

/*
 * ShopSimilarCandidates: the list of shop._similar_candidates into ids and
 * scores (room for lim each), read under snap.  Returns its length, or -1
 * when shop.product or its indexes are not as the C expects (the caller
 * then runs the SQL).  The arguments must be those the C takes (see
 * above): a title, lim in 1..100,000, attributes NULL or an object.
 */
int
ShopSimilarCandidates(int64 src_id, bool has_cat, int64 src_cat, text *brand_t,
					  text *src_title, Jsonb *src_attrs, const int64 *ex, int nex,
					  int lim, Snapshot snap, int64 *ids, float4 *scores)
{
	SimRels		r;
	MemoryContext work;
	MemoryContext old;
	int			result = -1;

	work = AllocSetContextCreate(CurrentMemoryContext, "shop similar", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(work);
	sim_rels_open(&r);
	if (r.ok)
	{
		const char *brand = brand_t ? VARDATA_ANY(brand_t) : NULL;
		int			brand_len = brand_t ? VARSIZE_ANY_EXHDR(brand_t) : 0;
		SimCand    *c;
		SimCand   **v;
		SimCand   **top;
		int			n = 0,
					m = 0,
					nfirst,
					ntop = 0;
		TupleTableSlot *slot;
		SimTrgm    *src_trg = NULL;
		float4		cut = 0;
		bool		has_cut = false;

		c = palloc(sizeof(SimCand) * 2 * SIM_LIST);
		slot = table_slot_create(r.prod, NULL);
		sim_lookup();
		if (sim_generate != NULL)
			sim_trgm_cache_begin();
		if (has_cat)
		{
			ScanKeyData key;

			ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(src_cat));
			sim_read_list(&r, r.cat_idx, snap, &key, src_id, has_cat, src_cat,
						  brand, brand_len, src_attrs != NULL, c, &n, slot);
		}
		if (brand_t != NULL && r.ok)
		{
			ScanKeyData key;

			ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
								   r.brand_idx->rd_indcollation[0], F_TEXTEQ,
								   PointerGetDatum(brand_t));
			sim_read_list(&r, r.brand_idx, snap, &key, src_id, has_cat, src_cat,
						  brand, brand_len, src_attrs != NULL, c, &n, slot);
		}
		if (r.ok)
		{
			/* one row per product (the UNION), then exclude's left out */
			v = palloc(sizeof(SimCand *) * (n + 1));
			for (int i = 0; i < n; i++)
				v[i] = &c[i];
			sim_sort_pid(v, n);
			for (int i = 0; i < n; i++)
			{
				bool		drop = m > 0 && v[m - 1]->pid == v[i]->pid;

				for (int j = 0; !drop && j < nex; j++)
					drop = ex[j] == v[i]->pid;
				if (!drop)
					v[m++] = v[i];
			}
			for (int i = 0; i < m; i++)
				v[i]->bound = 0.4 * (double) v[i]->same_cat + 0.2 * (double) v[i]->same_brand
					+ 0.4 + 0.001 * (double) v[i]->pop;
			sim_sort_bound(v, m);

			if (sim_generate != NULL)
				src_trg = sim_title_trgm(src_id, VARDATA_ANY(src_title), VARSIZE_ANY_EXHDR(src_title));
			top = palloc(sizeof(SimCand *) * (m + 1));
			/* first: the 2 * lim of highest bound */
			nfirst = Min(m, 2 * lim);
			for (int i = 0; i < nfirst; i++)
				if (sim_score(v[i], src_title, src_trg, src_attrs))
					top[ntop++] = v[i];
			sim_sort_score(top, ntop);
			if (ntop >= lim)
			{
				cut = top[lim - 1]->s;
				has_cut = true;
			}
			/* rest: those whose bound reaches the cut */
			for (int i = nfirst; i < m; i++)
				if (!has_cut || v[i]->bound * 1.000001 + 0.000001 >= (double) cut)
					if (sim_score(v[i], src_title, src_trg, src_attrs))
						top[ntop++] = v[i];
			sim_sort_score(top, ntop);
			result = Min(ntop, lim);
			for (int i = 0; i < result; i++)
			{
				ids[i] = top[i]->pid;
				scores[i] = top[i]->s;
			}
		}
		ExecDropSingleTupleTableSlot(slot);
	}
	sim_rels_close(&r);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(work);
	return result;
}

/*
 * The rows of the last SPI statement, two columns (product_id, score), into
 * the call's tuplestore: the SQL fallbacks' answer, as they gave it.
 */
static void
put_spi_pairs(ReturnSetInfo *rsinfo)
{
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		v[2];
		bool		nl[2];

		v[0] = ShopCol(i, 1, &nl[0]);
		v[1] = ShopCol(i, 2, &nl[1]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nl);
	}
}

/* the SQL body, for what the C does not take */
static ShopStmt st_similar_sql = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT s.product_id, s.score FROM shop._similar_candidates_sql($1, $2, $3, $4, $5, $6, $7) s",
	INT8OID, INT8OID, TEXTOID, TEXTOID, JSONBOID, INT8ARRAYOID, INT4OID);

Datum
shop_similar_candidates(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		c_ok;
	int			n = -1;

	InitMaterializedSRF(fcinfo, 0);

	/* the arguments the C takes */
	c_ok = !PG_ARGISNULL(0) && !PG_ARGISNULL(3) && !PG_ARGISNULL(5) && !PG_ARGISNULL(6) &&
		PG_GETARG_INT32(6) >= 1 && PG_GETARG_INT32(6) <= 100000;
	if (c_ok && !PG_ARGISNULL(4))
		c_ok = JB_ROOT_IS_OBJECT(PG_GETARG_JSONB_P(4));
	if (c_ok)
		c_ok = !array_contains_nulls(PG_GETARG_ARRAYTYPE_P(5));
	if (c_ok)
	{
		int			lim = PG_GETARG_INT32(6);
		Datum	   *exd = NULL;
		int			nex = 0;
		int64	   *ex;
		int64	   *ids = palloc(sizeof(int64) * lim);
		float4	   *scores = palloc(sizeof(float4) * lim);

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(5), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &exd, NULL, &nex);
		ex = palloc(sizeof(int64) * (nex + 1));
		for (int i = 0; i < nex; i++)
			ex[i] = DatumGetInt64(exd[i]);
		n = ShopSimilarCandidates(PG_GETARG_INT64(0), !PG_ARGISNULL(1),
								  PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1),
								  PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2),
								  PG_GETARG_TEXT_PP(3),
								  PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4),
								  ex, nex, lim, GetActiveSnapshot(), ids, scores);
		for (int i = 0; i < n; i++)
		{
			Datum		v[2] = {Int64GetDatum(ids[i]), Float4GetDatum(scores[i])};
			bool		nl[2] = {false, false};

			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nl);
		}
	}
	if (n < 0)
	{
		Datum		args[7];
		char		nulls[7];

		for (int i = 0; i < 7; i++)
		{
			args[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
			nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
		}
		SPI_connect();
		ShopExecRead(&st_similar_sql, args, nulls);
		put_spi_pairs(rsinfo);
		SPI_finish();
	}
	return (Datum) 0;
}

/*
 * shop._also_bought_list(product_id bigint, lim int) RETURNS SETOF
 * shop.scored_product: also_bought's default list, in C (issue 14, reco13).
 *
 * The list the PL/pgSQL body (shop._also_bought_list_sql) gives, with its
 * statements' snapshots: each step below reads under a snapshot of its
 * own, taken when it starts, as each statement of a VOLATILE function
 * does (so the fill is read after the deactivation counter stored with it:
 * see recommend's cache).
 *
 *	 list	 the product's co-purchase rows (copurchase_pkey) with score > 0
 *			 whose product is active (product_pkey), by score descending
 *			 then id, the first lim; the product must exist (SH006 when it
 *			 does not, once the list is short);
 *	 fill	 when the list is short and the product has a category or a
 *			 brand: served from shop.also_bought_cache while the generation
 *			 and deactivation counter are those read now, otherwise
 *			 ShopSimilarCandidates (every listed product excluded, lim - n
 *			 of them) scaled below the list (score * least(1, last listed
 *			 score) * 0.999, with the SQL's types) and stored there.
 *
 * The PL/pgSQL body runs instead when the tables or indexes are not as
 * shop made them.
 */
PG_FUNCTION_INFO_V1(shop_also_bought_list);

typedef struct AbRow
{
	int64		other;
	float4		score;
} AbRow;

static int
ab_cmp_row(const void *a, const void *b)
{
	const AbRow *x = a;
	const AbRow *y = b;

	if (float4_gt(x->score, y->score))
		return -1;
	if (float4_lt(x->score, y->score))
		return 1;
	return (x->other > y->other) - (x->other < y->other);
}

static ShopStmt st_ab_sql = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT a.product_id, a.score FROM shop._also_bought_list_sql($1, $2) a",
	INT8OID, INT4OID);

/* the cache's key read now, and the entry it keys when there is one */
static ShopStmt st_ab_probe = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT s.last_value, coalesce(d.n, 0), f.ids, f.scores"
	"  FROM shop.recommend_cache_gen s"
	"  LEFT JOIN shop.product_deactivation d ON true"
	"  LEFT JOIN shop.also_bought_cache f"
	"         ON f.product_id = $1 AND f.gen = s.last_value AND f.deact = coalesce(d.n, 0)"
	"        AND f.lim = $2 AND f.listed = $3",
	INT8OID, INT4OID, INT4OID);

static ShopStmt st_ab_store = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.also_bought_cache AS f (product_id, gen, deact, lim, listed, ids, scores)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7)"
	" ON CONFLICT ON CONSTRAINT also_bought_cache_pkey DO UPDATE"
	"    SET gen = excluded.gen, deact = excluded.deact, lim = excluded.lim, listed = excluded.listed,"
	"        ids = excluded.ids, scores = excluded.scores",
	INT8OID, INT8OID, INT8OID, INT4OID, INT4OID, INT8ARRAYOID, FLOAT4ARRAYOID);

/* the fill through SQL, for a product the C does not take */
static ShopStmt st_ab_fill_sql = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT s.product_id, s.score FROM shop._similar_candidates($1, $2, $3, $4, $5, $6, $7) s",
	INT8OID, INT8OID, TEXTOID, TEXTOID, JSONBOID, INT8ARRAYOID, INT4OID);

static void
ab_put(ReturnSetInfo *rsinfo, int64 pid, float4 score)
{
	Datum		v[2] = {Int64GetDatum(pid), Float4GetDatum(score)};
	bool		nl[2] = {false, false};

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nl);
}

Datum
shop_also_bought_list(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		pid;
	int32		lim;
	Oid			nsp;
	Relation	prod = NULL,
				prod_idx = NULL,
				cop = NULL,
				cop_idx = NULL;
	AttrNumber	p_id = 0,
				p_status = 0,
				p_category = 0,
				p_brand = 0,
				p_title = 0,
				p_attributes = 0,
				c_other = 0,
				c_score = 0;
	static const bool asc1[] = {false};
	bool		ok;
	AbRow	   *rows = NULL;
	int			nrows = 0,
				maxrows = 32;
	int			n = 0;
	bool		found = false;
	bool		has_cat = false;
	int64		src_cat = 0;
	text	   *brand = NULL;
	text	   *title = NULL;
	Jsonb	   *attrs = NULL;
	int64	   *listed;
	float4		last_score = 0;
	TupleTableSlot *slot;
	IndexScanDesc scan;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument product_id must not be null")));
	if (PG_ARGISNULL(1) || PG_GETARG_INT32(1) < 1 || PG_GETARG_INT32(1) > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("limit out of range"),
				 PG_ARGISNULL(1) ? errdetail("lim is NULL; it must be between 1 and 1000.") :
				 errdetail("lim is %d; it must be between 1 and 1000.", PG_GETARG_INT32(1))));
	pid = PG_GETARG_INT64(0);
	lim = PG_GETARG_INT32(1);
	InitMaterializedSRF(fcinfo, 0);

	/* the relations, as shop made them and plainly readable */
	nsp = get_namespace_oid("shop", false);
	prod = ShopPlainTable(nsp, "product");
	cop = ShopPlainTable(nsp, "copurchase");
	ok = prod != NULL && cop != NULL;
	if (ok)
	{
		AttrNumber	c[1];
		Oid			t[1] = {INT8OID};

		p_id = ShopPlainColumn(prod, "product_id", INT8OID);
		p_status = ShopPlainColumn(prod, "status", TEXTOID);
		p_category = ShopPlainColumn(prod, "category_id", INT8OID);
		p_brand = ShopPlainColumn(prod, "brand", TEXTOID);
		p_title = ShopPlainColumn(prod, "title", TEXTOID);
		p_attributes = ShopPlainColumn(prod, "attributes", JSONBOID);
		c_other = ShopPlainColumn(cop, "other_id", INT8OID);
		c_score = ShopPlainColumn(cop, "score", FLOAT4OID);
		c[0] = p_id;
		prod_idx = ShopPlainIndex(prod, "product_pkey", 1, c, t, asc1, false);
		c[0] = ShopPlainColumn(cop, "product_id", INT8OID);
		cop_idx = ShopPlainIndex(cop, "copurchase_pkey", 1, c, t, asc1, false);
		ok = p_id && p_status && p_category && p_brand && p_title && p_attributes &&
			c_other && c_score && prod_idx && cop_idx;
	}
	if (!ok)
	{
		if (prod_idx)
			index_close(prod_idx, AccessShareLock);
		if (cop_idx)
			index_close(cop_idx, AccessShareLock);
		if (prod)
			table_close(prod, AccessShareLock);
		if (cop)
			table_close(cop, AccessShareLock);
		SPI_connect();
		{
			Datum		args[2] = {Int64GetDatum(pid), Int32GetDatum(lim)};

			ShopExec(&st_ab_sql, args, NULL, 0);
		}
		put_spi_pairs(rsinfo);
		SPI_finish();
		return (Datum) 0;
	}

	/* the list, and the product itself, under a snapshot of its own */
	PushActiveSnapshot(GetTransactionSnapshot());
	slot = table_slot_create(prod, NULL);
	scan = index_beginscan(prod, prod_idx, GetActiveSnapshot(), 1, 0);
	{
		ScanKeyData key;

		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(pid));
		index_rescan(scan, &key, 1, NULL, 0);
	}
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d;

		found = true;
		d = slot_getattr(slot, p_category, &isnull);
		has_cat = !isnull;
		src_cat = isnull ? 0 : DatumGetInt64(d);
		d = slot_getattr(slot, p_brand, &isnull);
		brand = isnull ? NULL : DatumGetTextPCopy(d);
		d = slot_getattr(slot, p_title, &isnull);
		title = isnull ? NULL : DatumGetTextPCopy(d);
		d = slot_getattr(slot, p_attributes, &isnull);
		attrs = isnull ? NULL : DatumGetJsonbPCopy(d);
	}
	if (found)
	{
		TupleTableSlot *cslot = table_slot_create(cop, NULL);
		IndexScanDesc cscan = index_beginscan(cop, cop_idx, GetActiveSnapshot(), 1, 0);
		ScanKeyData key;

		rows = palloc(sizeof(AbRow) * maxrows);
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(pid));
		index_rescan(cscan, &key, 1, NULL, 0);
		while (index_getnext_slot(cscan, ForwardScanDirection, cslot))
		{
			bool		n1,
						n2;
			Datum		o = slot_getattr(cslot, c_other, &n1);
			Datum		s = slot_getattr(cslot, c_score, &n2);

			if (n1 || n2 || !float4_gt(DatumGetFloat4(s), 0))
				continue;
			if (nrows == maxrows)
			{
				maxrows *= 2;
				rows = repalloc(rows, sizeof(AbRow) * maxrows);
			}
			rows[nrows].other = DatumGetInt64(o);
			rows[nrows++].score = DatumGetFloat4(s);
		}
		index_endscan(cscan);
		ExecDropSingleTupleTableSlot(cslot);
		qsort(rows, nrows, sizeof(AbRow), ab_cmp_row);
	}
	/* the active ones, best first: the first lim listed */
	listed = palloc(sizeof(int64) * (nrows + 1));
	for (int i = 0; i < nrows && n < lim; i++)
	{
		ScanKeyData key;
		bool		active = false;

		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(rows[i].other));
		index_rescan(scan, &key, 1, NULL, 0);
		if (index_getnext_slot(scan, ForwardScanDirection, slot))
			active = ShopSlotTextEq(slot, p_status, "active", 6);
		if (!active)
			continue;
		ab_put(rsinfo, rows[i].other, rows[i].score);
		/* min(score) of the listed (all of them when the list is short) */
		if (n == 0 || float4_lt(rows[i].score, last_score))
			last_score = rows[i].score;
		listed[n++] = rows[i].other;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	PopActiveSnapshot();
	index_close(prod_idx, NoLock);
	index_close(cop_idx, NoLock);
	table_close(prod, NoLock);
	table_close(cop, NoLock);

	if (n >= lim)
		return (Datum) 0;
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_NOT_FOUND),
				 errmsg("product not found"),
				 errdetail("No product has product_id " INT64_FORMAT ".", pid)));
	if (!has_cat && brand == NULL)
		return (Datum) 0;

	/* the fill: the cache's entry for this key, else computed and stored */
	{
		bool		recovery = RecoveryInProgress();
		int64		gen = 0,
					deact = 0;
		int64	   *fids = NULL;
		float4	   *fsc = NULL;
		int			nf = -1;
		int			want = lim - n;
		float4		m;

		SPI_connect();
		if (!recovery)
		{
			Datum		args[3] = {Int64GetDatum(pid), Int32GetDatum(lim), Int32GetDatum(n)};
			bool		isnull;

			ShopExec(&st_ab_probe, args, NULL, 0);
			if (SPI_processed == 1)
			{
				gen = ShopColInt(0, 1, 0);
				deact = ShopColInt(0, 2, 0);
				{
					Datum		a = ShopCol(0, 3, &isnull);

					if (!isnull)
					{
						Datum	   *ed;
						int			ne;
						Datum		b = ShopCol(0, 4, &isnull);
						Datum	   *sd;
						int			ns;

						deconstruct_array(DatumGetArrayTypeP(a), INT8OID, 8, FLOAT8PASSBYVAL,
										  TYPALIGN_DOUBLE, &ed, NULL, &ne);
						deconstruct_array(DatumGetArrayTypeP(b), FLOAT4OID, 4, true,
										  TYPALIGN_INT, &sd, NULL, &ns);
						nf = Min(ne, ns);
						fids = palloc(sizeof(int64) * (nf + 1));
						fsc = palloc(sizeof(float4) * (nf + 1));
						for (int i = 0; i < nf; i++)
						{
							fids[i] = DatumGetInt64(ed[i]);
							fsc[i] = DatumGetFloat4(sd[i]);
						}
					}
				}
			}
		}
		if (nf < 0)
		{
			/* least(1.0, coalesce(last listed score, 1.0)) in real */
			m = (n > 0 && float4_lt(last_score, 1.0f)) ? last_score : 1.0f;
			fids = palloc(sizeof(int64) * want);
			fsc = palloc(sizeof(float4) * want);
			if (title != NULL && (attrs == NULL || JB_ROOT_IS_OBJECT(attrs)))
			{
				PushActiveSnapshot(GetTransactionSnapshot());
				nf = ShopSimilarCandidates(pid, has_cat, src_cat, brand, title, attrs,
										   listed, n, want, GetActiveSnapshot(), fids, fsc);
				PopActiveSnapshot();
			}
			if (nf < 0)
			{
				Datum		args[7];
				char		nulls[7] = {' ', has_cat ? ' ' : 'n', brand ? ' ' : 'n',
				title ? ' ' : 'n', attrs ? ' ' : 'n', ' ', ' '};

				args[0] = Int64GetDatum(pid);
				args[1] = Int64GetDatum(src_cat);
				args[2] = PointerGetDatum(brand);
				args[3] = PointerGetDatum(title);
				args[4] = PointerGetDatum(attrs);
				args[5] = ShopInt8Array(listed, n);
				args[6] = Int32GetDatum(want);
				ShopExec(&st_ab_fill_sql, args, nulls, 0);
				nf = 0;
				for (uint64 i = 0; i < SPI_processed && nf < want; i++)
				{
					bool		n1,
								n2;
					Datum		p = ShopCol(i, 1, &n1);
					Datum		s = ShopCol(i, 2, &n2);

					if (n1 || n2)
						continue;	/* not from shop's own function */
					fids[nf] = DatumGetInt64(p);
					fsc[nf++] = DatumGetFloat4(s);
				}
			}
			/* (s.score * least(...))::real * 0.999 in double, then ::real */
			for (int i = 0; i < nf; i++)
				fsc[i] = DatumGetFloat4(DirectFunctionCall1(dtof,
															Float8GetDatum(float8_mul((float8) float4_mul(fsc[i], m), 0.999))));
			if (!recovery && !XactReadOnly)
			{
				Datum		args[7];

				args[0] = Int64GetDatum(pid);
				args[1] = Int64GetDatum(gen);
				args[2] = Int64GetDatum(deact);
				args[3] = Int32GetDatum(lim);
				args[4] = Int32GetDatum(n);
				args[5] = ShopInt8Array(fids, nf);
				args[6] = ShopFloat4Array(fsc, nf);
				ShopExec(&st_ab_store, args, NULL, 0);
			}
		}
		for (int i = 0; i < nf; i++)
			ab_put(rsinfo, fids[i], fsc[i]);
		SPI_finish();
	}
	return (Datum) 0;
}
