/*-------------------------------------------------------------------------
 *
 * shop.c
 *	  Module entry point of the shop extension: PG_MODULE_MAGIC, _PG_init
 *	  and the shop.* configuration parameters.
 *
 * shop works whether or not it is in shared_preload_libraries.  Loaded at
 * server start it may also register background workers (the sweeper) and
 * the events workers' shared memory; loaded on first use by a backend it
 * only defines its GUCs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "shop.h"

PG_MODULE_MAGIC;

char	   *shop_currency = NULL;
int			shop_cart_ttl = 30 * 24 * 3600;
int			shop_sweep_interval = 60;
int			shop_reservation_ttl = 15 * 60;
double		shop_fraud_threshold = 0.75;
double		shop_payment_failure_threshold = 0.5;
int			shop_payment_failure_window = 15 * 60;
int			shop_recent_views_cap = 50;
static int	shop_vocab_min_products = 5;	/* read by SQL: shop._guc */
int			shop_max_query_length = 256;
bool		shop_preloaded = false;
bool		shop_search_block_max = true;
int			shop_search_facet_cache = 256 * 1024;	/* kB per backend; 0: off */
int			shop_search_impact_cache = 32 * 1024;	/* kB per backend; 0: no lists */
static char *shop_search_global = NULL;	/* read by SQL: current_setting */
char	   *shop_search_test_pause = NULL;
int			shop_reco_neighbours = 20;
int			shop_reco_basket_cap = 50;
int			shop_reco_buyer_cap = 20;
double		shop_reco_min_pairs = 2.0;
int			shop_reco_like_neighbours = 20;
int			shop_reco_like_items = 50;
int			shop_reco_like_sample = 200;
int			shop_reco_like_refresh_cap = 10000;
int			shop_reco_like_slice = 2000;
int			shop_reco_like_refresh_rows = 4000000;
double		shop_reco_weight_item = 1.0;
double		shop_reco_weight_like = 0.5;
double		shop_reco_weight_content = 0.0;
double		shop_reco_weight_popular = 1.0;
int			shop_popularity_half_life = 7 * 24 * 3600;
int			shop_popularity_apply_batch = 1000;
bool		shop_search_intent = true;
bool		shop_search_prior = true;
int			shop_search_prior_window = 3600;
int			shop_search_prior_half_life = 30 * 24 * 3600;
int			shop_search_log_retention = 30 * 24 * 3600;
int			shop_idempotency_retention = 30 * 24 * 3600;
char	   *shop_session_secret = NULL;

/*
 * check hook for shop.currency: an ISO 4217 code, three upper-case letters.
 */
static bool
check_currency(char **newval, void **extra, GucSource source)
{
	const char *c = *newval;

	if (c == NULL || strlen(c) != 3 ||
		c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' ||
		c[2] < 'A' || c[2] > 'Z')
	{
		GUC_check_errdetail("shop.currency must be a three-letter ISO 4217 code such as USD.");
		return false;
	}
	return true;
}

void
_PG_init(void)
{
	shop_preloaded = process_shared_preload_libraries_in_progress;

	DefineCustomStringVariable("shop.currency",
							   "Store currency (ISO 4217 code) of every price.",
							   "Money is stored as bigint minor units of this currency.",
							   &shop_currency,
							   "USD",
							   PGC_SUSET, 0,
							   check_currency, NULL, NULL);

	DefineCustomIntVariable("shop.cart_ttl",
							"Inactivity after which a cart expires.",
							NULL,
							&shop_cart_ttl,
							30 * 24 * 3600, 60, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.sweep_interval",
							"Time between two runs of shop.sweep() by the background worker.",
							"Only used when shop is in shared_preload_libraries.",
							&shop_sweep_interval,
							60, 1, 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.reservation_ttl",
							"How long a checkout holds stock for a pending payment.",
							NULL,
							&shop_reservation_ttl,
							15 * 60, 10, 7 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomRealVariable("shop.fraud_threshold",
							 "Fraud score at or above which an order waits for review.",
							 "Scores run from 0 (clean) to 1 (certainly fraud).",
							 &shop_fraud_threshold,
							 0.75, 0.0, 1.0,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("shop.payment_failure_threshold",
							 "Share of failed payments over the window that raises a payment.failures alert.",
							 NULL,
							 &shop_payment_failure_threshold,
							 0.5, 0.0, 1.0,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("shop.payment_failure_window",
							"Window over which the payment failure rate is measured.",
							NULL,
							&shop_payment_failure_window,
							15 * 60, 60, 7 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.recent_views_cap",
							"How many product views are kept per customer.",
							NULL,
							&shop_recent_views_cap,
							50, 1, 10000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.vocab_min_products",
							"In how many products an abbreviation and its words must appear together to be learned.",
							"Read by shop.refresh_search_vocab() (docs/search.md).",
							&shop_vocab_min_products,
							5, 2, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.max_query_length",
							"Longest search query, in characters, that shop.search accepts.",
							NULL,
							&shop_max_query_length,
							256, 1, 10000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	/* recommendations (recommend.c, docs/recommendations.md) */
	DefineCustomIntVariable("shop.reco_neighbours",
							"How many co-purchase neighbours are kept per product.",
							NULL,
							&shop_reco_neighbours,
							20, 1, 1000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.reco_basket_cap",
							"Basket size above which the pairs of a basket are damped.",
							"A product gets at most this many minus one units of pair weight from one basket.",
							&shop_reco_basket_cap,
							50, 2, 1000000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.reco_buyer_cap",
							"Counted orders per customer at full weight.",
							"A customer with more orders has them share this many units of weight.",
							&shop_reco_buyer_cap,
							20, 1, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomRealVariable("shop.reco_min_pairs",
							 "Smallest (weighted) co-purchase count a neighbour needs to be listed.",
							 NULL,
							 &shop_reco_min_pairs,
							 2.0, 0.0, 1e9,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	/* customers like you and the blend of shop.recommend (issue 14) */
	DefineCustomIntVariable("shop.reco_like_neighbours",
							"How many similar customers are kept per customer.",
							NULL,
							&shop_reco_like_neighbours,
							20, 1, 1000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.reco_like_items",
							"How many of a customer's latest products make their profile.",
							NULL,
							&shop_reco_like_items,
							50, 1, 1000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.reco_like_sample",
							"How many of a product's customers are sampled to find similar customers.",
							"The customers with the smallest hash of (customer, product): a fixed sample of a popular product's buyers.",
							&shop_reco_like_sample,
							200, 1, 100000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.reco_like_refresh_cap",
							"Customers whose profile one refresh recomputes at most.",
							"The others stay queued for the next refresh.",
							&shop_reco_like_refresh_cap,
							10000, 1, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.reco_like_slice",
							"Changed customers whose profiles a refresh recomputes at a time.",
							"Their lists are computed in one call while the similarities gathered stay within one slice's worst case.",
							&shop_reco_like_slice,
							2000, 1, 100000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.reco_like_refresh_rows",
							"Profile rows up to which a refresh computes the customers-like-you lists in memory.",
							"With at most this many rows in shop.customer_item, a refresh holds them all and computes the lists that can move whole; past it (or at 0) it takes slices and patches lists.",
							&shop_reco_like_refresh_rows,
							4000000, 0, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomRealVariable("shop.reco_weight_item",
							 "Weight of the item-to-item source in shop.recommend.",
							 NULL,
							 &shop_reco_weight_item,
							 1.0, 0.0, 1000.0,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("shop.reco_weight_like",
							 "Weight of the customers-like-you source in shop.recommend.",
							 NULL,
							 &shop_reco_weight_like,
							 0.5, 0.0, 1000.0,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("shop.reco_weight_content",
							 "Weight of the content source (neighbours of thinly bought products) in shop.recommend.",
							 "0, off, by default: not measurable on the UCI log, and its similar_products call is most of the blend's cost.",
							 &shop_reco_weight_content,
							 0.0, 0.0, 1000.0,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("shop.reco_weight_popular",
							 "Weight of popularity in shop.recommend.",
							 NULL,
							 &shop_reco_weight_popular,
							 1.0, 0.0, 1000.0,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("shop.popularity_apply_batch",
							"Products whose new popularity one transaction writes into shop.product.",
							"The refresh writes one batch, the sweeper the rest, a batch per transaction.",
							&shop_popularity_apply_batch,
							1000, 1, 1000000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.popularity_half_life",
							"Half-life of purchases and views in product popularity and trending.",
							NULL,
							&shop_popularity_half_life,
							7 * 24 * 3600, 3600, 3650 * 24 * 3600,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("shop.session_secret",
							   "Server secret that signs storefront session tokens.",
							   "At least 32 characters; only superusers can set or read it (docs/security.md).",
							   &shop_session_secret,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	/* shop.session and shop.session_scope (security.c), after the secret */
	ShopSessionDefineGUCs();

	DefineCustomStringVariable("shop.sweep_databases",
							   "Databases the sweeper visits: '*' for every database that accepts connections, or a comma-separated list.",
							   "Databases without the shop extension are skipped.  Only used when shop is in shared_preload_libraries.",
							   &shop_sweep_databases,
							   "*",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	/* shop.notify_events (events.c) */
	ShopEventsDefineGUCs();

	DefineCustomBoolVariable("shop.search_block_max",
							 "Let ranked shop_search scans skip what cannot reach the top rows.",
							 "Block-max pruning; results are the same either way. Off is for "
							 "checking exactly that and for measuring what pruning saves.",
							 &shop_search_block_max,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("shop.search_facet_cache",
							"Memory each backend may keep of the facet values of shop_search segments.",
							"shop.search_facets counts from this copy instead of reading every match's "
							"document record (docs/search.md); 0 turns it off.",
							&shop_search_facet_cache,
							256 * 1024, 0, 64 * 1024 * 1024,
							PGC_USERSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.search_impact_cache",
							"Memory each backend may keep of the impact lists of frequent search terms.",
							"Ranked scans read a frequent term's list instead of all its postings "
							"(docs/search.md); a term that does not fit goes without one (the same "
							"results); 0 keeps none.",
							&shop_search_impact_cache,
							32 * 1024, 0, 64 * 1024 * 1024,
							PGC_USERSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("shop.search_intent",
							 "Let shop.search rank the product type and category a query names first.",
							 "A ranked page then costs a second, 40-row scan (docs/search.md, intent).",
							 &shop_search_intent,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("shop.search_prior",
							 "Let shop.search rank the products and categories shoppers chose after the same query higher.",
							 "A bounded boost from shop.search_prior (docs/search.md, the behaviour prior).",
							 &shop_search_prior,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("shop.search_prior_window",
							"How long after a search a view, cart add or order of the same customer counts for its query.",
							NULL,
							&shop_search_prior_window,
							3600, 60, 7 * 24 * 3600,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("shop.search_prior_half_life",
							"Half-life of the behaviour prior's evidence.",
							NULL,
							&shop_search_prior_half_life,
							30 * 24 * 3600, 3600, 3650 * 24 * 3600,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("shop.search_test_pause",
							   "Pause point of the shop_search code where this backend waits (tests only).",
							   "Names a point (src/search/sshandler.c); a backend reaching it waits for "
							   "pg_advisory_lock(1397968979) held by another session.",
							   &shop_search_test_pause,
							   "",
							   PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	/*
	 * Superuser-only (hostile4): every search of the backend merges it into
	 * its index query, so a storefront that SET it for its session replaced
	 * the query of every later client of a pooled connection ('{"q": ...}').
	 * shop's router steps set it for one call, as the extension's owner
	 * (SECURITY DEFINER), after shop._search_global_check.
	 */
	DefineCustomStringVariable("shop.search_global",
							   "A cluster's search statistics for this transaction's searches (shop_router sets it).",
							   "A jsonb object that shop._search_query merges into the index query: the "
							   "cluster's no_typos and two_typos words and its collection statistics "
							   "(\"global\"); empty on one node (docs/scale-out.md).",
							   &shop_search_global,
							   "",
							   PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("shop.search_log_retention",
							"How long shop.sweep() keeps rows of shop.search_log.",
							NULL,
							&shop_search_log_retention,
							30 * 24 * 3600, 3600, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	/*
	 * Superuser-only, as the sweep's other retentions: shop.sweep() runs as
	 * the extension's owner and deletes what this lets go (issue 11).
	 */
	DefineCustomIntVariable("shop.idempotency_retention",
							"How long shop.sweep() keeps checkout idempotency keys.",
							"A retry with a key older than this places a new order; 0 keeps "
							"keys forever (docs/orders.md, Idempotency).",
							&shop_idempotency_retention,
							30 * 24 * 3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	/* card numbers out of the server log (redact.c); docs/security.md */
	ShopRedactLogInstall();

	/* shop.search_intent_cache (intentcache.c) */
	ShopIntentCacheDefineGUCs();

	/* shop.similar_title_cache (recosimilar.c) */
	ShopSimilarDefineGUCs();

	/*
	 * Only when loaded at server start: the sweeper (sweep.c) and the
	 * shared memory of the events workers (events.c) and of the search log
	 * (searchlog.c)
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		ShopSweepRegister();
		ShopEventsShmemRegister();
		/* shop.search_log_buffer sizes it: a server-start setting */
		ShopSearchLogDefineGUCs();
		ShopSearchLogShmemRegister();
	}

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("shop");
#else
	EmitWarningsOnPlaceholders("shop");
#endif
}

/*
 * shop._guc(name): current_setting(name), read through this library.
 *
 * SQL and PL/pgSQL functions of shop read shop.* settings with it, not with
 * current_setting: calling it loads the library, whose _PG_init defines the
 * parameters, so a session whose first shop call is such a function sees
 * the defaults instead of "unrecognized configuration parameter" when shop
 * is not preloaded (issue 14).  The same privilege check as
 * current_setting applies.
 */
PG_FUNCTION_INFO_V1(shop_guc);

Datum
shop_guc(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *value = GetConfigOptionByName(name, NULL, false);

	PG_RETURN_TEXT_P(cstring_to_text(value));
}

/*
 * shop._xact_wrote(x xid): is x this transaction or one of its
 * subtransactions that is in progress or committed into it?  Then a row
 * version whose xmin is x was written by this transaction.  The product
 * deactivation trigger counts a transaction once with it (card6), where
 * it trusted a setting that any role could SET.
 */
PG_FUNCTION_INFO_V1(shop_xact_wrote);

Datum
shop_xact_wrote(PG_FUNCTION_ARGS)
{
	TransactionId xid = DatumGetTransactionId(PG_GETARG_DATUM(0));

	PG_RETURN_BOOL(TransactionIdIsCurrentTransactionId(xid));
}

/*
 * shop._echo_value(value text, what text) -> text: ShopEchoValue
 * (textutil.c) for PL/pgSQL, with what checked first (hostile7).  what is
 * the name of the argument the value was given as, and ShopEchoValue
 * writes it as it is into SH005's detail; the storefront may call this
 * function (its invoker callers, shop.browse and
 * shop._search_global_check, need it), so what was any text: an escape
 * sequence or a megabyte went into the error and the server log.  Now
 * what is a name, 1 to 63 of a-z, 0-9 and _, else 22023 (the name not
 * shown).
 */
PG_FUNCTION_INFO_V1(shop_echo_value_named);

Datum
shop_echo_value_named(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	text	   *w = PG_GETARG_TEXT_PP(1);
	const char *p = VARDATA_ANY(w);
	int			n = VARSIZE_ANY_EXHDR(w);
	bool		ok = n >= 1 && n < NAMEDATALEN;

	for (int i = 0; ok && i < n; i++)
		ok = (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("malformed argument name"),
				 errdetail("what must be the name of an argument: 1 to %d of a-z, 0-9 and _.",
						   NAMEDATALEN - 1)));
	PG_RETURN_TEXT_P(cstring_to_text(ShopEchoValue(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
												   text_to_cstring(w))));
}
