/*-------------------------------------------------------------------------
 *
 * intentcache.c
 *	  A per-backend cache of shop.search's query intent.
 *
 * shop._search_intent (issue 13) reads the 40 best matches of a query to
 * learn what type of product it asks for: a second index scan, plus 40
 * heap rows, per search.  Measured at 100,000 bench products it was half
 * of a ranked search's time.  Its answer depends only on the query object
 * and on the catalog, and storefront traffic repeats its head queries
 * constantly, so each backend keeps the answers it worked out, keyed by
 * the query object's text, for shop.search_intent_cache seconds (default
 * 60; 0 turns the cache off).  A catalog change reaches the intent of a
 * cached query within that time: the intent only boosts the ranking, it
 * never decides which rows match.
 *
 * At most INTENT_CACHE_MAX entries are kept; when the cache is full it is
 * emptied and starts again (cheaper than an LRU list and, with head
 * queries refilling it at once, about as good).  Memory: the query texts
 * and answers, a few hundred bytes each.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "shop.h"

#define INTENT_CACHE_MAX	2048
#define INTENT_KEY_MAX		512		/* longer query objects are not cached */

typedef struct IntentEntry
{
	char		key[INTENT_KEY_MAX];	/* hash key: the query object's text */
	TimestampTz at;				/* when the answer was worked out */
	Jsonb	   *answer;			/* in intent_cxt */
} IntentEntry;

int			shop_search_intent_cache = 60;

static HTAB *intent_cache = NULL;
static MemoryContext intent_cxt = NULL;

PG_FUNCTION_INFO_V1(shop_search_intent_cache_get);
PG_FUNCTION_INFO_V1(shop_search_intent_cache_put);

/* (re)create an empty cache */
static void
intent_cache_reset(void)
{
	HASHCTL		ctl;

	if (intent_cxt == NULL)
		intent_cxt = AllocSetContextCreate(TopMemoryContext, "shop search intent cache",
										   ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(intent_cxt);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = INTENT_KEY_MAX;
	ctl.entrysize = sizeof(IntentEntry);
	ctl.hcxt = intent_cxt;
	intent_cache = hash_create("shop search intent cache", 256, &ctl,
							   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/* the key of q, or NULL when q is too long to cache */
static char *
intent_key(Jsonb *q)
{
	char	   *s = JsonbToCString(NULL, &q->root, VARSIZE(q));

	return strlen(s) < INTENT_KEY_MAX ? s : NULL;
}

/*
 * shop._search_intent_cache_get(q jsonb) -> jsonb: the answer kept for q
 * if it is younger than shop.search_intent_cache seconds, else NULL.
 */
Datum
shop_search_intent_cache_get(PG_FUNCTION_ARGS)
{
	char	   *key;
	IntentEntry *e;

	if (shop_search_intent_cache <= 0 || intent_cache == NULL)
		PG_RETURN_NULL();
	key = intent_key(PG_GETARG_JSONB_P(0));
	if (key == NULL)
		PG_RETURN_NULL();
	e = hash_search(intent_cache, key, HASH_FIND, NULL);
	if (e == NULL ||
		TimestampDifferenceExceeds(e->at, GetCurrentTimestamp(), shop_search_intent_cache * 1000))
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(e->answer);
}

/*
 * shop._search_intent_cache_put(q jsonb, answer jsonb) -> void: keep
 * answer as q's intent.
 */
Datum
shop_search_intent_cache_put(PG_FUNCTION_ARGS)
{
	char	   *key;
	Jsonb	   *answer;
	IntentEntry *e;
	bool		found;

	if (shop_search_intent_cache <= 0 || PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_VOID();
	key = intent_key(PG_GETARG_JSONB_P(0));
	if (key == NULL)
		PG_RETURN_VOID();
	answer = PG_GETARG_JSONB_P(1);
	if (intent_cache == NULL || hash_get_num_entries(intent_cache) >= INTENT_CACHE_MAX)
		intent_cache_reset();
	e = hash_search(intent_cache, key, HASH_ENTER, &found);
	if (found)
		pfree(e->answer);
	e->answer = MemoryContextAlloc(intent_cxt, VARSIZE(answer));
	memcpy(e->answer, answer, VARSIZE(answer));
	e->at = GetCurrentTimestamp();
	PG_RETURN_VOID();
}

/* ShopIntentCacheDefineGUCs: shop.search_intent_cache; called by _PG_init. */
void
ShopIntentCacheDefineGUCs(void)
{
	DefineCustomIntVariable("shop.search_intent_cache",
							"Seconds a backend reuses the intent it worked out for a search query.",
							"0 works it out on every search.",
							&shop_search_intent_cache,
							60, 0, 86400,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/*
 * ShopIntentCacheUsage: this backend's intent cache, for
 * shop.search_cache_stats (ssfunc.c): the entries' bytes, the memory its
 * context holds, the entries and the most it keeps.
 */
void
ShopIntentCacheUsage(int64 *bytes, int64 *allocated, int64 *entries, int64 *max_entries)
{
	HASH_SEQ_STATUS st;
	IntentEntry *e;

	*bytes = 0;
	*entries = 0;
	*allocated = intent_cxt ? (int64) MemoryContextMemAllocated(intent_cxt, true) : 0;
	*max_entries = INTENT_CACHE_MAX;
	if (intent_cache == NULL)
		return;
	hash_seq_init(&st, intent_cache);
	while ((e = hash_seq_search(&st)) != NULL)
	{
		(*entries)++;
		*bytes += sizeof(IntentEntry) + (e->answer ? VARSIZE(e->answer) : 0);
	}
}
