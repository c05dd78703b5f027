/*-------------------------------------------------------------------------
 *
 * ssquery.c
 *	  shop_search queries: parsing the jsonb query the operators take,
 *	  per-document filters and the bounded business boost, and the
 *	  operator functions used when no index scan evaluates them.
 *
 * A query is a jsonb object (or a bare jsonb string, taken as "q"):
 *
 *   q                text, the user's words (required)
 *   synonyms         [[phrase, phrase, ...], ...] equivalence groups; a
 *                    group whose phrase occurs in q turns that phrase into
 *                    one slot any phrase of the group satisfies
 *   expansions       [[phrase, phrase, ...], ...] learned, one-way groups
 *                    (shop's API: shop.search_vocab, issue 13): when the
 *                    first phrase occurs in q (and no synonym group holds
 *                    its words), the others also satisfy its slot, their
 *                    words without typos and with their idf scaled by
 *                    expansion_weight
 *   expansion_weight number in (0, 1], default SS_EXPANSION_WEIGHT
 *   category_ids     [bigint, ...] documents whose category is one of these
 *   brands           [text, ...] or text, compared folded ("L'Oréal" =
 *                    "l oreal")
 *   price_min, price_max   bigint, inclusive
 *   rating_min       number
 *   in_stock         boolean
 *   boost_categories [bigint, ...], boost_brands [text, ...]:
 *                    personalization, a bounded score boost
 *   type_words       [text, ...] or text: the product type asked for
 *                    (shop's API: the query's last word and its
 *                    synonyms); documents whose title's head noun is
 *                    one of them (by stem) score SS_BOOST_TYPE times more
 *   intent_categories [bigint, ...]: categories the query means (shop's
 *                    API: when no type word is a head noun of its best
 *                    matches, their category of the highest median
 *                    price); their documents score SS_BOOST_INTENT_CAT
 *                    times more
 *   prior            [[tid text, weight], ...]: the behaviour prior's
 *                    rows (shop's API: the products shoppers chose after
 *                    this query, shop._search_prior); weight 0..1, the
 *                    row scores 1 + SS_BOOST_PRIOR * weight times more
 *   prior_categories [[bigint, weight], ...]: the prior's categories;
 *                    their rows score 1 + SS_BOOST_PRIOR_CAT * weight
 *                    times more
 *   typos            boolean, default true
 *   no_typos         [text, ...] or text: words of q (folded) that get no
 *                    typo tolerance (shop's API lists the words the
 *                    index's vocabulary knows, _search_no_typos)
 *   two_typos        [text, ...] or text: words of q of 7 or 8 characters
 *                    that get two typos instead of one, the first letter
 *                    right (shop's API lists the unknown words with no
 *                    vocabulary term within one typo)
 *   prefix           boolean, default true: the last word also matches as
 *                    a prefix (unless q ends with a space)
 *   match            "all" (default) or "any"
 *   language         text: the Snowball language of the words; by default
 *                    the index's, and english without an index
 *   global           {"docs": n, "lengths": [title, brand, description],
 *                    "max_popularity": x, "df": [per word]}: collection
 *                    statistics to score with instead of the index's own
 *                    (a cluster's sums, shop_router's DFS phase, issue 16):
 *                    the document count, the summed field lengths, the
 *                    largest popularity and each word's document
 *                    frequency, in the order of the query's words
 *                    (shop._search_term_stats lists them)
 *
 * Every word of q is required (AND); English function words are dropped
 * unless q has nothing else; q's words are read with units and model
 * numbers (SsAnalyze), and a word joinable with a neighbour ("xps 13")
 * is also satisfied by the join ("xps13", exactly).  Any other key
 * raises 22023.
 *
 * What matches (the same rule for an index scan and for the operator
 * functions, docs/search.md "Match rules"): a document matches when it
 * passes the filters and every slot (with "match": "any", one) has an
 * alternative whose every word matches one of the document's terms by
 * SsMatchTerm (sstypo.c): the word itself, its stem, the exact term
 * spelled like its stem, any longer term it begins (the last word, with
 * prefix on), or, with typos on and the word not in no_typos, any term
 * within its typo budget.  Nothing here depends on which other terms
 * exist: the index expands each word into exactly the terms this rule
 * accepts (ssscan.c), so both paths agree row for row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"

#include "shop.h"
#include "ssearch.h"

#define SS_MAX_QUERY_WORDS 16

PG_FUNCTION_INFO_V1(shop_search_match);
PG_FUNCTION_INFO_V1(shop_search_distance);

static void
bad_query(const char *msg, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s", msg),
			 detail ? errdetail("%s", detail) : 0));
}

static JsonbValue *
get_key(Jsonb *jb, const char *key)
{
	return getKeyJsonValueFromContainer(&jb->root, key, strlen(key), NULL);
}

/*
 * Whether n is within bigint's range (rounded as numeric_int8 rounds it),
 * and when whole is asked, has no fractional part: a filter's number out
 * of range is a malformed filter (22023), not numeric_int8's 22003.
 */
bool
SsNumericFitsInt8(Numeric n, bool whole)
{
	Datum		d = NumericGetDatum(n);
	Datum		r = DirectFunctionCall2(numeric_round, d, Int32GetDatum(0));

	if (whole &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, d,
										  DirectFunctionCall2(numeric_trunc, d, Int32GetDatum(0)))) != 0)
		return false;
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, r,
											 NumericGetDatum(int64_to_numeric(PG_INT64_MIN)))) >= 0 &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, r,
										  NumericGetDatum(int64_to_numeric(PG_INT64_MAX)))) <= 0;
}

static int64
jbv_int8(JsonbValue *v, const char *key)
{
	if (v->type != jbvNumeric)
		bad_query("malformed search filter", psprintf("%s must be a number.", key));
	if (!SsNumericFitsInt8(v->val.numeric, false))
		bad_query("malformed search filter",
				  psprintf("%s must be between %lld and %lld.", key,
						   (long long) PG_INT64_MIN, (long long) PG_INT64_MAX));
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
}

static double
jbv_float(JsonbValue *v, const char *key)
{
	if (v->type != jbvNumeric)
		bad_query("malformed search filter", psprintf("%s must be a number.", key));
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
}

/* Elements of a jsonb array value (or the scalar itself) into a list. */
static List *
jbv_elems(JsonbValue *v)
{
	List	   *res = NIL;

	if (v->type == jbvBinary)
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (tok == WJB_ELEM)
			{
				JsonbValue *c = palloc(sizeof(JsonbValue));

				*c = e;
				res = lappend(res, c);
			}
			else if (tok == WJB_KEY)
				return NIL;		/* an object: caller complains */
		}
		return res;
	}
	return list_make1(v);
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a,
				y = *(const int64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

static int
cmp_uint32(const void *a, const void *b)
{
	uint32		x = *(const uint32 *) a,
				y = *(const uint32 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

static int64 *
parse_ids(JsonbValue *v, const char *key, int *n)
{
	List	   *l = jbv_elems(v);
	int64	   *ids;
	int			i = 0;
	ListCell   *lc;

	if (l == NIL && v->type == jbvBinary && !JsonContainerIsArray(v->val.binary.data))
		bad_query("malformed search filter", psprintf("%s must be a number or an array of numbers.", key));
	ids = palloc(sizeof(int64) * Max(list_length(l), 1));
	foreach(lc, l)
		ids[i++] = jbv_int8((JsonbValue *) lfirst(lc), key);
	qsort(ids, i, sizeof(int64), cmp_int64);
	*n = i;
	return ids;
}

static uint32 *
parse_brands(JsonbValue *v, const char *key, int *n)
{
	List	   *l = jbv_elems(v);
	uint32	   *h;
	int			i = 0;
	ListCell   *lc;

	if (l == NIL && v->type == jbvBinary && !JsonContainerIsArray(v->val.binary.data))
		bad_query("malformed search filter", psprintf("%s must be a string or an array of strings.", key));
	h = palloc(sizeof(uint32) * Max(list_length(l), 1));
	foreach(lc, l)
	{
		JsonbValue *e = (JsonbValue *) lfirst(lc);

		if (e->type != jbvString)
			bad_query("malformed search filter", psprintf("%s must be a string or an array of strings.", key));
		h[i++] = SsBrandHash(e->val.string.val, e->val.string.len);
	}
	qsort(h, i, sizeof(uint32), cmp_uint32);
	*n = i;
	return h;
}

static bool
jbv_bool(JsonbValue *v, const char *key)
{
	if (v->type != jbvBool)
		bad_query("malformed search filter", psprintf("%s must be true or false.", key));
	return v->val.boolean;
}

/* ---- words ---- */

typedef struct WordList
{
	char	   *w[SS_MAX_QUERY_WORDS * 4];
	int			n;
	int			max;
	/* query_words: join[i], words i - 1 and i joined (SS_TOK_JOIN), or NULL */
	char	   *join[SS_MAX_QUERY_WORDS * 4];
	/* ... and join3[i], words i - 2 to i joined (SS_TOK_JOIN3), or NULL */
	char	   *join3[SS_MAX_QUERY_WORDS * 4];
} WordList;

static void
word_list_cb(void *arg, const char *word, int len, int field)
{
	WordList   *wl = (WordList *) arg;

	if (wl->n < wl->max)
		wl->w[wl->n++] = pnstrdup(word, len);
}

/* the words of q, canonical (sstoken.c), and the joins of neighbours */
static void
query_word_cb(void *arg, const char *word, int len, int field, SsTokKind kind)
{
	WordList   *wl = (WordList *) arg;

	if (kind == SS_TOK_JOIN)
	{
		if (wl->n >= 2 && wl->n <= wl->max)
			wl->join[wl->n - 1] = pnstrdup(word, len);
		return;
	}
	if (kind == SS_TOK_JOIN3)
	{
		if (wl->n >= 3 && wl->n <= wl->max)
			wl->join3[wl->n - 1] = pnstrdup(word, len);
		return;
	}
	if (wl->n < wl->max)
	{
		wl->join[wl->n] = NULL;
		wl->join3[wl->n] = NULL;
		wl->w[wl->n++] = pnstrdup(word, len);
	}
	else
		wl->n = wl->max + 1;	/* full: later joins are dropped */
}

/* word_list_cb for SsAnalyze: the words alone */
static void
query_plain_cb(void *arg, const char *word, int len, int field, SsTokKind kind)
{
	if (kind == SS_TOK_WORD)
		word_list_cb(arg, word, len, field);
}

static void
fill_word(SsQWord *qw, const char *word, const char *language, bool prefix)
{
	char		stem[SS_MAX_TERM_LEN + 8];
	int			slen;

	qw->exact = pstrdup(word);
	qw->len = strlen(word);
	slen = SsStem(language, word, qw->len, stem, sizeof(stem));
	qw->stem = pnstrdup(stem, slen);
	qw->maxtypos = SsMaxTypos(pg_mbstrlen_with_len(word, qw->len));
	qw->prefix = prefix;
	qw->weight = 1.0f;
}

/* query_check_keys: every key of the query object is one SsParseQuery knows. */
static void
query_check_keys(Jsonb *jb)
{
	static const char *const known[] = {
		"q", "synonyms", "category_ids", "brands", "price_min", "price_max",
		"rating_min", "in_stock", "boost_categories", "boost_brands", "typos",
		"prefix", "match", "language", "no_typos", "two_typos", "type_words",
		"intent_categories", "prior", "prior_categories", "global", "type_compound",
		"type_narrow", "expansions", "expansion_weight", NULL
	};
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbValue	kv;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &kv, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			bool		ok = false;
			char	   *k = pnstrdup(kv.val.string.val, kv.val.string.len);

			for (int i = 0; known[i]; i++)
				if (strcmp(known[i], k) == 0)
					ok = true;
			if (!ok)
				bad_query("unknown search query key",
						  psprintf("Key %s is not one of q, synonyms, expansions, expansion_weight, category_ids, brands, price_min, price_max, rating_min, in_stock, boost_categories, boost_brands, type_words, type_compound, type_narrow, intent_categories, prior, prior_categories, typos, no_typos, two_typos, prefix, match, language, global.",
								   ShopEchoValue(k, strlen(k), "query")));
		}
	}
}

static int
cmp_prior_row(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) &((const SsPriorRow *) a)->tid,
							  (ItemPointer) &((const SsPriorRow *) b)->tid);
}

static int
cmp_prior_cat(const void *a, const void *b)
{
	int64		x = ((const SsPriorCat *) a)->category_id,
				y = ((const SsPriorCat *) b)->category_id;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * parse_prior_pair: one [key, weight] element of "prior" or
 * "prior_categories": the key's value into *k, the weight (0..1) returned
 */
static float4
parse_prior_pair(JsonbValue *e, const char *key, JsonbValue **k)
{
	List	   *pair = (e->type == jbvBinary && JsonContainerIsArray(e->val.binary.data)) ?
		jbv_elems(e) : NIL;
	double		w;

	if (list_length(pair) != 2)
		bad_query("malformed search filter",
				  psprintf("Each element of %s must be a two-element array: the key and a weight.", key));
	*k = (JsonbValue *) linitial(pair);
	w = jbv_float((JsonbValue *) lsecond(pair), key);
	if (!(w >= 0 && w <= 1))
		bad_query("malformed search filter",
				  psprintf("The weights of %s must be between 0 and 1.", key));
	return (float4) w;
}

/*
 * query_parse_prior: "prior" ([[tid, weight], ...]) and
 * "prior_categories" ([[category id, weight], ...]), sorted for bsearch
 */
static void
query_parse_prior(Jsonb *jb, SsQuery *q)
{
	JsonbValue *v;
	List	   *l;
	ListCell   *lc;

	if ((v = get_key(jb, "prior")) != NULL && v->type != jbvNull)
	{
		if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
			bad_query("malformed search filter", "prior must be an array of [tid, weight] pairs.");
		l = jbv_elems(v);
		q->prior = palloc(sizeof(SsPriorRow) * Max(list_length(l), 1));
		foreach(lc, l)
		{
			JsonbValue *k;
			float4		w = parse_prior_pair((JsonbValue *) lfirst(lc), "prior", &k);
			SsPriorRow *r = &q->prior[q->nprior];
			char	   *t;
			unsigned int blk,
						off;
			int			used = -1;

			if (k->type != jbvString)
				bad_query("malformed search filter", "The tids of prior must be strings such as \"(0,1)\".");
			t = pnstrdup(k->val.string.val, k->val.string.len);
			if (sscanf(t, "(%u,%u)%n", &blk, &off, &used) != 2 || used != (int) strlen(t) ||
				off > PG_UINT16_MAX)
				bad_query("malformed search filter", "The tids of prior must be strings such as \"(0,1)\".");
			ItemPointerSet(&r->tid, (BlockNumber) blk, (OffsetNumber) off);
			r->w = w;
			q->prior_max = Max(q->prior_max, w);
			q->nprior++;
		}
		qsort(q->prior, q->nprior, sizeof(SsPriorRow), cmp_prior_row);
	}
	if ((v = get_key(jb, "prior_categories")) != NULL && v->type != jbvNull)
	{
		if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
			bad_query("malformed search filter", "prior_categories must be an array of [category id, weight] pairs.");
		l = jbv_elems(v);
		q->prior_cats = palloc(sizeof(SsPriorCat) * Max(list_length(l), 1));
		foreach(lc, l)
		{
			JsonbValue *k;
			float4		w = parse_prior_pair((JsonbValue *) lfirst(lc), "prior_categories", &k);
			SsPriorCat *c = &q->prior_cats[q->nprior_cats];

			c->category_id = jbv_int8(k, "prior_categories");
			c->w = w;
			q->prior_cat_max = Max(q->prior_cat_max, w);
			q->nprior_cats++;
		}
		qsort(q->prior_cats, q->nprior_cats, sizeof(SsPriorCat), cmp_prior_cat);
	}
}

/*
 * query_parse_global: "global", the collection statistics to score with
 * (checked against the words once they are known, in SsParseQuery)
 */
static List *
query_parse_global(Jsonb *jb, SsQuery *q)
{
	JsonbValue *v = get_key(jb, "global");
	JsonbValue *f;
	JsonbContainer *c;
	List	   *l;
	ListCell   *lc;
	int			i = 0;

	if (v == NULL || v->type == jbvNull)
		return NIL;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		bad_query("malformed search query", "global must be an object with docs, lengths, max_popularity and df.");
	c = v->val.binary.data;
	q->has_global = true;
	if ((f = getKeyJsonValueFromContainer(c, "docs", 4, NULL)) == NULL)
		bad_query("malformed search query", "global needs docs, the number of documents.");
	q->global_docs = (double) jbv_int8(f, "global docs");
	if ((f = getKeyJsonValueFromContainer(c, "max_popularity", 14, NULL)) != NULL)
		q->global_max_popularity = (float4) jbv_float(f, "global max_popularity");
	if ((f = getKeyJsonValueFromContainer(c, "lengths", 7, NULL)) == NULL ||
		f->type != jbvBinary || !JsonContainerIsArray(f->val.binary.data) ||
		list_length(l = jbv_elems(f)) != SS_NFIELDS)
		bad_query("malformed search query", "global lengths must be an array of the summed title, brand and description lengths.");
	foreach(lc, l)
		q->global_sumlen[i++] = jbv_float((JsonbValue *) lfirst(lc), "global lengths");
	if (q->global_docs < 0)
		bad_query("malformed search query", "global docs must not be negative.");
	if ((f = getKeyJsonValueFromContainer(c, "df", 2, NULL)) == NULL ||
		f->type != jbvBinary || !JsonContainerIsArray(f->val.binary.data))
		bad_query("malformed search query", "global df must be an array of document frequencies, one per query word.");
	return jbv_elems(f);
}

/* query_parse_filters: the filters and the boost lists of the query object. */
static void
query_parse_filters(Jsonb *jb, SsQuery *q)
{
	JsonbValue *v;

	if ((v = get_key(jb, "category_ids")) != NULL && v->type != jbvNull)
		q->cats = parse_ids(v, "category_ids", &q->ncats);
	if ((v = get_key(jb, "brands")) != NULL && v->type != jbvNull)
		q->brands = parse_brands(v, "brands", &q->nbrands);
	if ((v = get_key(jb, "price_min")) != NULL && v->type != jbvNull)
		q->has_price_min = true, q->price_min = jbv_int8(v, "price_min");
	if ((v = get_key(jb, "price_max")) != NULL && v->type != jbvNull)
		q->has_price_max = true, q->price_max = jbv_int8(v, "price_max");
	if ((v = get_key(jb, "rating_min")) != NULL && v->type != jbvNull)
		q->has_rating_min = true, q->rating_min = (float4) jbv_float(v, "rating_min");
	if ((v = get_key(jb, "in_stock")) != NULL && v->type != jbvNull)
		q->has_in_stock = true, q->in_stock = jbv_bool(v, "in_stock");
	if ((v = get_key(jb, "boost_categories")) != NULL && v->type != jbvNull)
		q->boost_cats = parse_ids(v, "boost_categories", &q->nboost_cats);
	if ((v = get_key(jb, "boost_brands")) != NULL && v->type != jbvNull)
		q->boost_brands = parse_brands(v, "boost_brands", &q->nboost_brands);
	if ((v = get_key(jb, "intent_categories")) != NULL && v->type != jbvNull)
		q->intent_cats = parse_ids(v, "intent_categories", &q->nintent_cats);
	query_parse_prior(jb, q);
}

static int
cmp_uint16(const void *a, const void *b)
{
	uint16		x = *(const uint16 *) a,
				y = *(const uint16 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* query_parse_types: the type words, as the head hashes of their stems */
static void
query_parse_types(SsQuery *q, const WordList *types)
{
	if (types->n == 0)
		return;
	q->types = palloc(sizeof(uint16) * types->n);
	for (int i = 0; i < types->n; i++)
	{
		char		stem[SS_MAX_TERM_LEN + 8];
		int			slen = SsStem(q->language, types->w[i], strlen(types->w[i]), stem, sizeof(stem));

		q->types[q->ntypes++] = SsHeadHash(stem + 1, slen - 1);
	}
	qsort(q->types, q->ntypes, sizeof(uint16), cmp_uint16);
}

/*
 * query_parse_compound: the slots of the words of "type_compound" (a word
 * the query does not have is ignored) and the head hashes of their stems
 */
static void
query_parse_compound(SsQuery *q, const WordList *words)
{
	if (words->n == 0 || q->nwords == 0)
		return;
	q->compound_slot = palloc(sizeof(int) * words->n);
	q->compound_head = palloc(sizeof(uint16) * words->n);
	for (int k = 0; k < words->n; k++)
		for (int i = 0; i < q->nwords; i++)
			if (strcmp(q->words[i].exact, words->w[k]) == 0)
			{
				const char *stem = q->words[i].stem;

				q->compound_slot[q->ncompound] = q->words[i].slot;
				q->compound_head[q->ncompound++] = SsHeadHash(stem + 1, strlen(stem) - 1);
				break;
			}
}

/*
 * query_parse_narrow: the slots of the words of "type_narrow" (a word the
 * query does not have is ignored)
 */
static void
query_parse_narrow(SsQuery *q, const WordList *words)
{
	if (words->n == 0 || q->nwords == 0)
		return;
	q->narrow_slot = palloc(sizeof(int) * words->n);
	for (int k = 0; k < words->n; k++)
		for (int i = 0; i < q->nwords; i++)
			if (strcmp(q->words[i].exact, words->w[k]) == 0)
			{
				q->narrow_slot[q->nnarrow++] = q->words[i].slot;
				break;
			}
}

/*
 * query_type_slot: the slot of the query word whose stem is a type asked
 * for (the last such word), -1 for none
 */
static void
query_type_slot(SsQuery *q)
{
	q->type_slot = -1;
	for (int i = 0; i < q->nwords && q->ntypes > 0; i++)
	{
		const char *stem = q->words[i].stem;
		uint16		h = SsHeadHash(stem + 1, strlen(stem) - 1);

		if (bsearch(&h, q->types, q->ntypes, sizeof(uint16), cmp_uint16))
			q->type_slot = q->words[i].slot;
	}
}

/*
 * query_parse_options: typos, prefix, language, no_typos and two_typos
 * (their words into notypo and twotypo) and match.
 */
static void
query_parse_word_list(Jsonb *jb, const char *key, WordList *out)
{
	JsonbValue *v;

	if ((v = get_key(jb, key)) != NULL && v->type != jbvNull)
	{
		List	   *l = jbv_elems(v);
		ListCell   *lc;

		if (l == NIL && v->type == jbvBinary && !JsonContainerIsArray(v->val.binary.data))
			bad_query("malformed search query", psprintf("%s must be a string or an array of strings.", key));
		foreach(lc, l)
		{
			JsonbValue *e = (JsonbValue *) lfirst(lc);

			if (e->type != jbvString)
				bad_query("malformed search query", psprintf("%s must be a string or an array of strings.", key));
			SsAnalyze(e->val.string.val, e->val.string.len, 0, false, query_plain_cb, out);
		}
	}
}

static void
query_parse_options(Jsonb *jb, SsQuery *q, WordList *notypo, WordList *twotypo)
{
	JsonbValue *v;

	if ((v = get_key(jb, "typos")) != NULL)
		q->typos = jbv_bool(v, "typos");
	if ((v = get_key(jb, "prefix")) != NULL)
		q->prefix = jbv_bool(v, "prefix");
	if ((v = get_key(jb, "language")) != NULL && v->type != jbvNull)
	{
		char	   *lang;

		if (v->type != jbvString || v->val.string.len >= (int) sizeof(q->language))
			bad_query("malformed search query", "language must be the name of a Snowball stemmer.");
		lang = pnstrdup(v->val.string.val, v->val.string.len);
		ShopGetStemmer(lang);	/* 22023 for an unknown one */
		strlcpy(q->language, lang, sizeof(q->language));
		q->language_given = true;
	}
	query_parse_word_list(jb, "no_typos", notypo);
	query_parse_word_list(jb, "two_typos", twotypo);
	if ((v = get_key(jb, "match")) != NULL)
	{
		if (v->type == jbvString && v->val.string.len == 3 &&
			memcmp(v->val.string.val, "any", 3) == 0)
			q->match_any = true;
		else if (!(v->type == jbvString && v->val.string.len == 3 &&
				   memcmp(v->val.string.val, "all", 3) == 0))
			bad_query("malformed search query", "match must be \"all\" or \"any\".");
	}
}

/*
 * query_parse_synonyms: the groups of key ("synonyms" or "expansions") as
 * a List of List of WordList * (the tokenized phrases); groups of fewer
 * than two phrases are dropped.
 */
static List *
query_parse_synonyms(Jsonb *jb, const char *key)
{
	JsonbValue *v;
	List	   *groups = NIL;
	List	   *gl;
	ListCell   *lc;

	if ((v = get_key(jb, key)) == NULL || v->type == jbvNull)
		return NIL;
	gl = jbv_elems(v);
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		bad_query("malformed search query", psprintf("%s must be an array of arrays of strings.", key));
	foreach(lc, gl)
	{
		JsonbValue *g = (JsonbValue *) lfirst(lc);
		List	   *pl;
		List	   *group = NIL;
		ListCell   *pc;

		if (g->type != jbvBinary || !JsonContainerIsArray(g->val.binary.data))
			bad_query("malformed search query", psprintf("%s must be an array of arrays of strings.", key));
		pl = jbv_elems(g);
		foreach(pc, pl)
		{
			JsonbValue *p = (JsonbValue *) lfirst(pc);
			WordList   *wl = palloc0(sizeof(WordList));

			if (p->type != jbvString)
				bad_query("malformed search query", psprintf("%s must be an array of arrays of strings.", key));
			wl->max = 8;
			SsAnalyze(p->val.string.val, p->val.string.len, 0, false, query_plain_cb, wl);
			if (wl->n > 0)
				group = lappend(group, wl);
		}
		if (list_length(group) > 1)
			groups = lappend(groups, group);
	}
	return groups;
}

/*
 * query_check_text: q within shop.max_query_length (22001) and not a card
 * number.
 */
static void
query_check_text(const char *qtext, int qlen)
{
	if (qlen > shop_max_query_length * 4 ||
		pg_mbstrlen_with_len(qtext, qlen) > shop_max_query_length)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("search query is too long"),
				 errdetail("The query has %d characters; shop.max_query_length is %d.",
						   pg_mbstrlen_with_len(qtext, qlen), shop_max_query_length)));
	ShopRefuseCardNumberText(qtext, qlen, "query");
}

/*
 * query_words: the words of q, function words dropped unless that leaves
 * nothing, at most SS_MAX_QUERY_WORDS.
 */
static void
query_words(const char *qtext, int qlen, WordList *words)
{
	int			kept = 0;

	memset(words, 0, sizeof(*words));
	words->max = SS_MAX_QUERY_WORDS * 4;
	SsAnalyze(qtext, qlen, 0, false, query_word_cb, words);
	if (words->n > words->max)
		words->n = words->max;
	for (int i = 0; i < words->n; i++)
		if (!SsIsStopWord(words->w[i]))
			kept++;
	if (kept > 0)
	{
		int			j = 0;

		for (int i = 0; i < words->n; i++)
			if (!SsIsStopWord(words->w[i]))
			{
				/* a join's words are never function words: all stay */
				words->join[j] = (i > 0 && !SsIsStopWord(words->w[i - 1]) && j > 0) ?
					words->join[i] : NULL;
				words->join3[j] = (i > 1 && !SsIsStopWord(words->w[i - 1]) &&
								   !SsIsStopWord(words->w[i - 2]) && j > 1) ?
					words->join3[i] : NULL;
				words->w[j++] = words->w[i];
			}
		words->n = j;
	}
	if (words->n > SS_MAX_QUERY_WORDS)
		words->n = SS_MAX_QUERY_WORDS;
}

/*
 * query_find_spans: the synonym phrases found in the query's words.  For
 * each word, span_of is its group's index (-1: none) and span_start the
 * first word of its span.  The first phrase of a group found in the query
 * wins, and is moved to the front of its group.  Groups from nsyn on are
 * expansions: only their first phrase is looked for.
 */
static void
query_find_spans(List *groups, int nsyn, const WordList *words, int *span_of, int *span_start)
{
	int			nw = words->n;
	ListCell   *gc;
	int			gi = 0;

	for (int i = 0; i < nw; i++)
		span_of[i] = -1;
	foreach(gc, groups)
	{
		List	   *group = (List *) lfirst(gc);
		ListCell   *pc;

		foreach(pc, group)
		{
			WordList   *p = (WordList *) lfirst(pc);
			bool		found = false;

			for (int s = 0; s + p->n <= nw && !found; s++)
			{
				bool		m = true;

				for (int k = 0; k < p->n && m; k++)
					m = span_of[s + k] == -1 && strcmp(words->w[s + k], p->w[k]) == 0;
				if (m)
				{
					for (int k = 0; k < p->n; k++)
					{
						span_of[s + k] = gi;
						span_start[s + k] = s;
					}
					found = true;
					/* remember which phrase matched: move it first */
					if (pc != list_head(group))
					{
						group = list_delete_ptr(group, p);
						group = lcons(p, group);
						lfirst(gc) = group;
					}
				}
			}
			if (found || gi >= nsyn)
				break;
		}
		gi++;
	}
}

/*
 * query_build_slots: q's slots in query order, one per plain word (the last
 * one a prefix when lastprefix; its joins with its neighbours are
 * alternatives) and one per synonym span, whose alternatives are its
 * group's phrases.
 */
static void
query_build_slots(SsQuery *q, const WordList *words, List *groups, int nsyn, float4 expansion_weight,
				  const int *span_of, const int *span_start, bool lastprefix)
{
	int			nw = words->n;
	int			nslots = 0;

	q->slots = palloc0(sizeof(SsQSlot) * Max(nw, 1));
	q->words = palloc0(sizeof(SsQWord) * (6 * nw + 64));	/* 6: alternatives of a slot */
	for (int i = 0; i < nw; i++)
	{
		SsQSlot    *slot;

		if (span_of[i] >= 0 && span_start[i] != i)
			continue;			/* inside a synonym span already emitted */
		slot = &q->slots[nslots];
		if (span_of[i] < 0)
		{
			/*
			 * the word, or a join holding it ("c-exv21": "c" or "cexv21",
			 * "exv21" or "cexv21"; "cexv21" read as c, exv and 21: each or
			 * "cexv21"), which matches exactly; every word keeps its slot,
			 * so a row with one of them still misses only the others.
			 * ends[a] is the last word alternative a holds.
			 */
			const char *alts[6];
			int			ends[6];
			int			nalts = 0;

			alts[nalts] = words->w[i];
			ends[nalts++] = i;
			for (int k = i; k <= i + 1 && k < nw; k++)
				if (words->join[k] != NULL && span_of[k - 1] < 0 && span_of[k] < 0)
				{
					alts[nalts] = words->join[k];
					ends[nalts++] = k;
				}
			for (int k = i; k <= i + 2 && k < nw; k++)
				if (k >= 2 && words->join3[k] != NULL && span_of[k - 2] < 0 &&
					span_of[k - 1] < 0 && span_of[k] < 0)
				{
					alts[nalts] = words->join3[k];
					ends[nalts++] = k;
				}
			slot->nalts = nalts;
			slot->alts = palloc0(sizeof(SsQAlt) * nalts);
			for (int a = 0; a < nalts; a++)
			{
				bool		lastjoin = a > 0 && ends[a] == nw - 1;

				slot->alts[a].first = q->nwords;
				slot->alts[a].nwords = 1;
				fill_word(&q->words[q->nwords], alts[a], q->language,
						  lastprefix && (a == 0 ? i == nw - 1 : lastjoin));
				if (a > 0)
					q->words[q->nwords].maxtypos = 0;
				q->words[q->nwords].slot = nslots;
				q->words[q->nwords].alt = a;
				q->nwords++;
			}
		}
		else
		{
			List	   *group = (List *) list_nth(groups, span_of[i]);
			ListCell   *pc;
			int			a = 0;

			slot->alts = palloc0(sizeof(SsQAlt) * list_length(group));
			foreach(pc, group)
			{
				WordList   *p = (WordList *) lfirst(pc);

				if (q->nwords + p->n > 6 * nw + 64)
					break;
				slot->alts[a].first = q->nwords;
				slot->alts[a].nwords = p->n;
				for (int k = 0; k < p->n; k++)
				{
					fill_word(&q->words[q->nwords], p->w[k], q->language, false);
					if (span_of[i] >= nsyn && a > 0)
					{
						/*
						 * a learned expansion: exactly, and each word weighed
						 * less, so that the phrase scores expansion_weight
						 * of what it would as a synonym (a phrase of rare
						 * words may still outscore the word typed, as a
						 * synonym's does: "solid state drive" for "ssd")
						 */
						q->words[q->nwords].maxtypos = 0;
						q->words[q->nwords].weight = expansion_weight;
					}
					q->words[q->nwords].slot = nslots;
					q->words[q->nwords].alt = a;
					q->nwords++;
				}
				a++;
			}
			slot->nalts = a;
		}
		nslots++;
	}
	q->nslots = nslots;
	q->nrequired = nslots;
}

/*
 * SsParseQuery: the jsonb query as an SsQuery, allocated in the current
 * memory context.  Raises 22023 for anything malformed.
 */
SsQuery *
SsParseQuery(Jsonb *jb, const char *language)
{
	SsQuery    *q = palloc0(sizeof(SsQuery));
	JsonbValue *v;
	const char *qtext = NULL;
	int			qlen = 0;
	WordList	words;
	int			span_of[SS_MAX_QUERY_WORDS];	/* group index per word, -1 none */
	int			span_start[SS_MAX_QUERY_WORDS];
	List	   *groups = NIL;	/* List of List of WordList* */
	bool		lastprefix;
	WordList	notypo;
	WordList	twotypo;
	WordList	types;
	WordList	compound;
	WordList	narrow;
	List	   *global_df = NIL;
	int			nsyn = 0;		/* groups from nsyn on are expansions */
	float4		expansion_weight = SS_EXPANSION_WEIGHT;

	q->typos = true;
	q->prefix = true;
	q->ncats = -1;				/* -1: no such filter */
	q->nbrands = -1;
	strlcpy(q->language, language, sizeof(q->language));
	memset(&notypo, 0, sizeof(notypo));
	notypo.max = SS_MAX_QUERY_WORDS * 4;
	memset(&twotypo, 0, sizeof(twotypo));
	twotypo.max = SS_MAX_QUERY_WORDS * 4;
	memset(&types, 0, sizeof(types));
	types.max = SS_MAX_QUERY_WORDS * 4;
	memset(&compound, 0, sizeof(compound));
	compound.max = SS_MAX_QUERY_WORDS * 4;
	memset(&narrow, 0, sizeof(narrow));
	narrow.max = SS_MAX_QUERY_WORDS * 4;

	/* a jsonb string is q alone; an object names q and the rest */
	if (JB_ROOT_IS_SCALAR(jb))
	{
		JsonbValue	sv;

		if (!JsonbExtractScalar(&jb->root, &sv) || sv.type != jbvString)
			bad_query("malformed search query", "A query is a jsonb object with a \"q\" string, or a jsonb string.");
		qtext = sv.val.string.val;
		qlen = sv.val.string.len;
	}
	else if (JB_ROOT_IS_OBJECT(jb))
	{
		query_check_keys(jb);
		v = get_key(jb, "q");
		if (v == NULL || v->type != jbvString)
			bad_query("malformed search query", "The query object needs a \"q\" string.");
		qtext = v->val.string.val;
		qlen = v->val.string.len;
		query_parse_filters(jb, q);
		query_parse_options(jb, q, &notypo, &twotypo);
		query_parse_word_list(jb, "type_words", &types);
		query_parse_word_list(jb, "type_compound", &compound);
		query_parse_word_list(jb, "type_narrow", &narrow);
		groups = query_parse_synonyms(jb, "synonyms");
		nsyn = list_length(groups);
		groups = list_concat(groups, query_parse_synonyms(jb, "expansions"));
		if ((v = get_key(jb, "expansion_weight")) != NULL && v->type != jbvNull)
		{
			expansion_weight = jbv_float(v, "expansion_weight");
			if (!(expansion_weight > 0 && expansion_weight <= 1))
				bad_query("malformed search query", "expansion_weight must be a number in (0, 1].");
		}
		global_df = query_parse_global(jb, q);
	}
	else
		bad_query("malformed search query", "A query is a jsonb object with a \"q\" string, or a jsonb string.");
	query_check_text(qtext, qlen);
	query_parse_types(q, &types);	/* in the query's language */

	/* the words, synonym spans among them, then the slots */
	query_words(qtext, qlen, &words);
	lastprefix = q->prefix && qlen > 0 && words.n > 0 &&
		!(qtext[qlen - 1] == ' ' || qtext[qlen - 1] == '\t');
	query_find_spans(groups, nsyn, &words, span_of, span_start);
	query_build_slots(q, &words, groups, nsyn, expansion_weight, span_of, span_start, lastprefix);
	query_parse_compound(q, &compound);
	query_parse_narrow(q, &narrow);
	query_type_slot(q);

	/*
	 * words listed in two_typos (of 7 or 8 characters) get two typos with
	 * the first letter right; words listed in no_typos none
	 */
	for (int i = 0; i < q->nwords; i++)
		for (int k = 0; k < twotypo.n; k++)
			if (q->words[i].maxtypos == 1 && strcmp(q->words[i].exact, twotypo.w[k]) == 0 &&
				SsTwoTyposLength(pg_mbstrlen_with_len(q->words[i].exact, q->words[i].len)))
			{
				q->words[i].maxtypos = 2;
				q->words[i].first_fixed = true;
			}
	for (int i = 0; i < q->nwords; i++)
		for (int k = 0; k < notypo.n; k++)
			if (strcmp(q->words[i].exact, notypo.w[k]) == 0)
			{
				q->words[i].maxtypos = 0;
				q->words[i].first_fixed = false;
			}
	if (q->has_global)
	{
		ListCell   *lc;
		int			i = 0;

		if (list_length(global_df) != q->nwords)
			bad_query("malformed search query",
					  psprintf("global df has %d document frequencies; the query has %d words.",
							   list_length(global_df), q->nwords));
		q->global_df = palloc(sizeof(double) * Max(q->nwords, 1));
		foreach(lc, global_df)
		{
			q->global_df[i] = jbv_float((JsonbValue *) lfirst(lc), "global df");
			if (q->global_df[i] < 0)
				bad_query("malformed search query", "global df must not be negative.");
			i++;
		}
	}
	return q;
}

/*
 * SsQueryLanguage: the language a query names ("language"), NULL when it
 * names none (or is not an object); not validated here.
 */
const char *
SsQueryLanguage(Jsonb *jb)
{
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(jb))
		return NULL;
	v = get_key(jb, "language");
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* SsDocPassesFilters: the filters of q against a document's stored values. */
bool
SsDocPassesFilters(const SsQuery *q, const SsDoc *doc)
{
	if (q->ncats >= 0)
	{
		if (!(doc->flags & SS_DOC_HAS_CAT) ||
			bsearch(&doc->category_id, q->cats, q->ncats, sizeof(int64), cmp_int64) == NULL)
			return false;
	}
	if (q->nbrands >= 0)
	{
		if (!(doc->flags & SS_DOC_HAS_BRAND) ||
			bsearch(&doc->brand_hash, q->brands, q->nbrands, sizeof(uint32), cmp_uint32) == NULL)
			return false;
	}
	if (q->has_price_min && (!(doc->flags & SS_DOC_HAS_PRICE) || doc->price_cents < q->price_min))
		return false;
	if (q->has_price_max && (!(doc->flags & SS_DOC_HAS_PRICE) || doc->price_cents > q->price_max))
		return false;
	if (q->has_rating_min && (!(doc->flags & SS_DOC_HAS_RATING) || doc->rating < q->rating_min))
		return false;
	if (q->has_in_stock)
	{
		bool		s = (doc->flags & SS_DOC_INSTOCK) != 0;

		if (!(doc->flags & SS_DOC_HAS_STOCK) || s != q->in_stock)
			return false;
	}
	return true;
}

/*
 * The boost.  SsBoost is the business and personal multiplier of a
 * document's text score, between 1 and SS_BOOST_MAX: the intent factors
 * (SS_BOOST_TYPE for a document of the type asked for, by its title's
 * head noun; SS_BOOST_INTENT_CAT for one of the categories meant), the
 * behaviour prior's factors (1 + SS_BOOST_PRIOR * w for a row of "prior"
 * of weight w, 1 + SS_BOOST_PRIOR_CAT * w for a category of
 * "prior_categories", issue 13) times the sum of 1 and: popularity (log-scaled
 * against the most popular document: inv_log_maxpop is 1 / log1p(max
 * popularity), 0 for none) up to SS_BOOST_POPULARITY, rating up to
 * SS_BOOST_RATING, a preferred category SS_BOOST_CATEGORY and a preferred
 * brand SS_BOOST_BRAND.  Bounded, so text relevance decides.  A NaN
 * rating counts as the highest, as PostgreSQL orders NaN above every
 * number (and as the rating_min filter treats it).
 *
 * SsBoostBound is the largest boost of any document whose logpop is at
 * most logpop; ranked scans prune with it (ssscan.c: documents are
 * numbered most popular first), so it must stay an upper bound of
 * SsBoost: both are written from the same constants, here.
 */
static float4
boost_bound(const SsQuery *q, float4 logpop, float4 inv_log_maxpop, bool marked)
{
	float4		b = 1.0f + SS_BOOST_RATING;

	if (inv_log_maxpop > 0)
		b += SS_BOOST_POPULARITY * Min(1.0f, logpop * inv_log_maxpop);
	if (q->nboost_cats > 0)
		b += SS_BOOST_CATEGORY;
	if (q->nboost_brands > 0)
		b += SS_BOOST_BRAND;
	if (q->ntypes > 0 && marked)
		b *= SS_BOOST_TYPE;
	if (q->nintent_cats > 0 && marked)
		b *= SS_BOOST_INTENT_CAT;
	if (q->nprior > 0)
		b *= 1.0f + SS_BOOST_PRIOR * q->prior_max;
	if (q->nprior_cats > 0 && marked)
		b *= 1.0f + SS_BOOST_PRIOR_CAT * q->prior_cat_max;
	return b;
}

float4
SsBoostBound(const SsQuery *q, float4 logpop, float4 inv_log_maxpop)
{
	return boost_bound(q, logpop, inv_log_maxpop, true);
}

/*
 * The boost factors a filter term marks: the intent's head nouns ("\377h")
 * and categories and the prior's categories ("\377c").  Ranked scans
 * evaluate the documents holding one of those terms first and the rest
 * after, with SsBoostBoundUnmarked, the bound of a document holding none:
 * every factor but those (ssscan.c).
 */
bool
SsQueryHasMarkedBoost(const SsQuery *q)
{
	return q->ntypes > 0 || q->nintent_cats > 0 || q->nprior_cats > 0;
}

float4
SsBoostBoundUnmarked(const SsQuery *q, float4 logpop, float4 inv_log_maxpop)
{
	return boost_bound(q, logpop, inv_log_maxpop, false);
}

/* SsMaxBoost: the largest multiplier SsBoost can give under q. */
float4
SsMaxBoost(const SsQuery *q)
{
	return SsBoostBound(q, 1.0f, 1.0f);
}

float4
SsBoost(const SsQuery *q, const SsDoc *doc, float4 inv_log_maxpop, int missing,
		bool compound_missing, bool type_word_missing)
{
	float4		b = 1.0f;

	if (inv_log_maxpop > 0)
		b += SS_BOOST_POPULARITY * Min(1.0f, doc->logpop * inv_log_maxpop);
	if (doc->flags & SS_DOC_HAS_RATING)
		b += SS_BOOST_RATING * (isnan(doc->rating) ? 1.0f :
								Min(1.0f, Max(0.0f, doc->rating / 5.0f)));
	if (q->nboost_cats > 0 && (doc->flags & SS_DOC_HAS_CAT) &&
		bsearch(&doc->category_id, q->boost_cats, q->nboost_cats, sizeof(int64), cmp_int64))
		b += SS_BOOST_CATEGORY;
	if (q->nboost_brands > 0 && (doc->flags & SS_DOC_HAS_BRAND) &&
		bsearch(&doc->brand_hash, q->boost_brands, q->nboost_brands, sizeof(uint32), cmp_uint32))
		b += SS_BOOST_BRAND;
	/*
	 * intent (issue 13): the product type asked for (less for a row
	 * missing a word of the query, nothing for one missing the word of a
	 * compound type, compound_missing: a "Cooler Master notebook cooling
	 * pad" is no pad of `gaming mouse pad`), a category meant; a row
	 * whose only missing word is the type word itself, type_word_missing,
	 * is of the type by its head noun all the same ("Lenovo Tab M8 ...
	 * Android" for `android tablet`): the whole factor
	 */
	if (q->ntypes > 0 && doc->head != 0 && !compound_missing &&
		bsearch(&doc->head, q->types, q->ntypes, sizeof(uint16), cmp_uint16))
		b *= missing > 0 && !(missing == 1 && type_word_missing) ? SS_BOOST_TYPE_PARTIAL : SS_BOOST_TYPE;
	if (q->nintent_cats > 0 && (doc->flags & SS_DOC_HAS_CAT) &&
		bsearch(&doc->category_id, q->intent_cats, q->nintent_cats, sizeof(int64), cmp_int64))
		b *= SS_BOOST_INTENT_CAT;
	/* the behaviour prior (issue 13): rows and categories chosen */
	if (q->nprior > 0)
	{
		SsPriorRow	key;
		SsPriorRow *r;

		key.tid = doc->tid;
		r = bsearch(&key, q->prior, q->nprior, sizeof(SsPriorRow), cmp_prior_row);
		if (r)
			b *= 1.0f + SS_BOOST_PRIOR * r->w;
	}
	if (q->nprior_cats > 0 && (doc->flags & SS_DOC_HAS_CAT))
	{
		SsPriorCat	key;
		SsPriorCat *c;

		key.category_id = doc->category_id;
		c = bsearch(&key, q->prior_cats, q->nprior_cats, sizeof(SsPriorCat), cmp_prior_cat);
		if (c)
			b *= 1.0f + SS_BOOST_PRIOR_CAT * c->w;
	}
	return b;
}

/* ---- operator functions (sequential scans, rechecks) ---- */

/*
 * Evaluate q against one tokenized document without an index: each slot
 * needs one alternative whose words all match some term of the document.
 * Returns false when it does not match; else *score (a rough score: field
 * weights times match factor, without collection statistics) and *typos.
 */
static bool
doc_matches(const SsQuery *q, const SsDocData *d, double *score, int *typos, int *missing)
{
	static const double w[SS_NFIELDS] = {3.0, 2.0, 1.0};
	bool		type_missing = false;

	*score = 0;
	*typos = 0;
	*missing = 0;
	if (!SsDocPassesFilters(q, &d->doc))
		return false;
	if (q->nslots == 0)
		return false;
	for (int s = 0; s < q->nslots; s++)
	{
		const SsQSlot *slot = &q->slots[s];
		double		best = -1;
		int			besttypos = 0;

		for (int a = 0; a < slot->nalts; a++)
		{
			const SsQAlt *alt = &slot->alts[a];
			double		asum = 0;
			int			atypos = 0;
			bool		all = true;

			for (int k = 0; k < alt->nwords && all; k++)
			{
				const SsQWord *qw = &q->words[alt->first + k];
				double		wbest = -1;
				int			wtypos = 99;

				for (int t = 0; t < d->nterms; t++)
				{
					int			ty;
					float4		f;

					if (SsMatchTerm(qw, d->terms[t].term, d->terms[t].len, q->typos, &ty, &f))
					{
						uint16		tf = d->terms[t].tf;
						double		sc = f * (w[0] * SS_TF_TITLE(tf) + w[1] * SS_TF_BRAND(tf) +
											  w[2] * Min(SS_TF_DESC(tf), 3));

						if (ty < wtypos || (ty == wtypos && sc > wbest))
						{
							wtypos = ty;
							wbest = sc;
						}
					}
				}
				if (wbest < 0)
					all = false;
				else
				{
					asum += wbest;
					atypos += wtypos;
				}
			}
			if (all && (best < 0 || atypos < besttypos || (atypos == besttypos && asum > best)))
			{
				best = asum;
				besttypos = atypos;
			}
		}
		if (best < 0)
		{
			if (!q->match_any)
				return false;
			(*missing)++;
			if (s == q->type_slot)
				type_missing = true;
			continue;
		}
		*score += best;
		*typos += besttypos;
	}
	if (*missing == q->nslots)
		return false;
	/*
	 * without an index there is no count of head nouns to tell a compound
	 * type ("type_compound") from a qualifier: its rule is not applied
	 */
	*score *= SsBoost(q, &d->doc, 0, *missing, false, type_missing);
	return true;
}

static bool
eval_on_doc(FunctionCallInfo fcinfo, double *score, int *typos, int *missing)
{
	Datum		doc = PG_GETARG_DATUM(0);
	Jsonb	   *jb = PG_GETARG_JSONB_P(1);
	SsQuery    *q = SsParseQuery(jb, "english");
	SsDocData	d;

	SsDocFromDatum(doc, q->language, &d);
	return doc_matches(q, &d, score, typos, missing);
}

/*
 * shop.search_match(doc shop.search_doc, query jsonb) -> bool, the @@@
 * operator: does the document match the query (words and filters)?
 * Without an index the stemming language is the query's, english by
 * default.
 */
Datum
shop_search_match(PG_FUNCTION_ARGS)
{
	double		score;
	int			typos;
	int			missing;

	PG_RETURN_BOOL(eval_on_doc(fcinfo, &score, &typos, &missing));
}

/*
 * shop.search_distance(doc, query) -> real, the <=> operator: smaller is
 * better.  An index scan returns its own BM25 distance; this fallback
 * (sequential scans) uses the same tiers (typos first) with a rough score
 * and +Infinity for documents that do not match.
 */
Datum
shop_search_distance(PG_FUNCTION_ARGS)
{
	double		score;
	int			typos;
	int			missing;

	if (!eval_on_doc(fcinfo, &score, &typos, &missing))
		PG_RETURN_FLOAT4(get_float4_infinity());
	PG_RETURN_FLOAT4((float4) (missing * SS_MISSING_TIER + Min(typos, 9) * SS_TYPO_TIER -
							   Min(score, SS_MAX_SCORE)));
}
