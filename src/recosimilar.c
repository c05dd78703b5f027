/*-------------------------------------------------------------------------
 *
 * recosimilar.c
 *	  The per-candidate terms of the content score (shop._similar_candidates,
 *	  which similar_products, the fill of also_bought and the router's
 *	  shard step share): the trigram similarity of a candidate's title to
 *	  the source's, and the share of the source's attributes the candidate
 *	  has with equal values.
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

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "shop.h"

PG_FUNCTION_INFO_V1(shop_title_similarity_to);
PG_FUNCTION_INFO_V1(shop_attr_overlap);

/* pg_trgm's trigram set: a varlena; only pg_trgm looks inside */
typedef struct varlena SimTrgm;
typedef SimTrgm *(*SimGenerateFn) (char *str, int slen);
typedef float4 (*SimCountFn) (SimTrgm *trg1, SimTrgm *trg2, bool inexact);

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
		if (cv != NULL)
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
		PG_RETURN_NULL();
	/* float48div((float4) same, (float8) total), as the SQL was */
	PG_RETURN_FLOAT8((float8) (float4) same / (float8) total);
}
