/*-------------------------------------------------------------------------
 *
 * shop.h
 *	  Shared declarations of the shop extension: error codes, GUC
 *	  variables and the prototypes of helpers used by several subsystems.
 *
 * Prototypes are grouped by the file that defines them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SHOP_H
#define SHOP_H

#include "postgres.h"

#include "fmgr.h"
#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"
#include "common/hashfn.h"

/*
 * The domain error vocabulary (docs/errors.md), class "SH".  Every
 * ereport a user can cause in a shop call uses one of these or a standard
 * SQLSTATE; docs/errors.md lists them all.
 */
#define ERRCODE_SHOP_INSUFFICIENT_STOCK		MAKE_SQLSTATE('S','H','0','0','1')
#define ERRCODE_SHOP_INVALID_TRANSITION		MAKE_SQLSTATE('S','H','0','0','2')
#define ERRCODE_SHOP_IDEMPOTENCY_CONFLICT	MAKE_SQLSTATE('S','H','0','0','3')
#define ERRCODE_SHOP_PAYMENT_DECLINED		MAKE_SQLSTATE('S','H','0','0','4')
#define ERRCODE_SHOP_CARD_NUMBER_REFUSED	MAKE_SQLSTATE('S','H','0','0','5')
#define ERRCODE_SHOP_NOT_FOUND				MAKE_SQLSTATE('S','H','0','0','6')
#define ERRCODE_SHOP_CART_EMPTY				MAKE_SQLSTATE('S','H','0','0','7')
#define ERRCODE_SHOP_PRODUCT_UNAVAILABLE	MAKE_SQLSTATE('S','H','0','0','8')

/* Limits shared by the SQL API (see docs/errors.md). */
#define SHOP_MAX_LIMIT			1000	/* largest lim a list call accepts */
#define SHOP_MAX_OFFSET			100000	/* largest off a list call accepts */
#define SHOP_CARD_MIN_DIGITS	12		/* shortest card number issued (Maestro) */
#define SHOP_CARD_MAX_DIGITS	19

/*
 * The largest cart (lines x units per line, src/cart SQL) and the largest
 * price: a maximal cart at the largest price, plus tax of at most 100%
 * (shop.tax_rate) and shipping of at most the largest price
 * (shop.shipping_rate), stays far inside int64 (docs/catalog.md).
 */
#define SHOP_CART_MAX_LINES		500
#define SHOP_CART_MAX_QTY		10000
#define SHOP_MAX_PRICE_CENTS	INT64CONST(100000000000)	/* 10^11: a billion in major units */
StaticAssertDecl(2 * SHOP_CART_MAX_LINES * SHOP_CART_MAX_QTY * SHOP_MAX_PRICE_CENTS
				 + SHOP_MAX_PRICE_CENTS <= PG_INT64_MAX / 4,
				 "a maximal cart must not come near int64 overflow");

/* shop.c: GUC variables */
extern char *shop_currency;
extern int	shop_cart_ttl;			/* seconds */
extern int	shop_sweep_interval;	/* seconds */
extern int	shop_reservation_ttl;	/* seconds */
extern double shop_fraud_threshold;
extern double shop_payment_failure_threshold;
extern int	shop_payment_failure_window;	/* seconds */
extern int	shop_recent_views_cap;
extern int	shop_max_query_length;
extern bool shop_preloaded;
extern bool shop_search_block_max;
extern int	shop_search_facet_cache;	/* kB */
extern int	shop_search_impact_cache;	/* kB */
extern char *shop_search_test_pause;
extern int	shop_search_log_retention;	/* seconds */
extern int	shop_idempotency_retention;	/* seconds, 0: forever */
extern char *shop_session_secret;

/* shop.c */
extern void _PG_init(void);

/* textutil.c */
#define SHOP_SCAN_PHONE		0x01	/* the value is a phone number field */
#define SHOP_SCAN_CATALOG	0x02	/* catalog text: no list rule (textutil.c) */
extern bool ShopFindCardNumber(const char *s, int len);
extern bool ShopFindCardNumberFlags(const char *s, int len, int flags);
extern int	ShopRedactCardNumbers(char *s, int len);
extern bool ShopJsonbHasCardNumber(Jsonb *jb);
extern void ShopRefuseCardNumberText(const char *s, int len, const char *what);
extern void ShopRefuseCardNumberJsonb(Jsonb *jb, const char *what);
extern struct sb_stemmer *ShopGetStemmer(const char *language);

/* redact.c */
extern void ShopRedactLogInstall(void);

/*
 * inventory.c: the stock holds of checkout and order transitions.  A hold
 * is units of one product under one reservation id; the calls take arrays
 * of them sorted by product_id, without repeats (the lock order), and run
 * inside an SPI connection.  docs/inventory.md has the rules.
 */
typedef struct ShopHold
{
	int64		product_id;
	int32		qty;			/* units (ShopReserve) */
	pg_uuid_t	reservation_id; /* set by ShopReserve, read by the others */
} ShopHold;

extern void ShopReserve(ShopHold *holds, int n, const char *ref, TimestampTz expires_at);
extern int	ShopHoldsRelease(const ShopHold *holds, int n);
extern int	ShopHoldsCommit(const ShopHold *holds, int n);
extern int	ShopHoldsKeep(const ShopHold *holds, int n, TimestampTz expires_at);
extern void ShopHoldsCheckSettled(const ShopHold *holds, int n);
extern int64 ShopStockAdjust(int64 product_id, const char *location, int32 delta,
							 const char *reason);

/* events.c */
typedef enum ShopNotifyMode
{
	SHOP_NOTIFY_OFF,			/* events are only rows of shop.event */
	SHOP_NOTIFY_BATCH,			/* the events worker wakes listeners per batch */
	SHOP_NOTIFY_EACH			/* pg_notify per event in its transaction (1.0) */
} ShopNotifyMode;

extern int	shop_notify_events;
extern void ShopEventsDefineGUCs(void);
extern void ShopEventsShmemRegister(void);

/* searchlog.c */
extern int	shop_search_log_buffer;
extern void ShopSearchLogDefineGUCs(void);
extern void ShopIntentCacheDefineGUCs(void);
extern void ShopSimilarDefineGUCs(void);	/* shop.similar_title_cache (recosimilar.c) */
extern void ShopIntentCacheUsage(int64 *bytes, int64 *allocated, int64 *entries, int64 *max_entries);
extern void ShopSearchLogShmemRegister(void);
extern void ShopSearchLogWrite(text *query, Jsonb *filters, text *sort, int32 results,
							   float4 duration_ms, bool has_customer, int64 customer_id);
extern int64 ShopEmit(const char *topic, Jsonb *payload);
extern void ShopEventWritten(int64 event_id, const char *topic, Jsonb *payload);

/* sweep.c */
extern char *shop_sweep_databases;
extern void ShopSweepRegister(void);

/* cart.c */
extern Datum ShopCartExpiry(void);
extern int64 ShopGuestKey(const pg_uuid_t *cart_id);

/* orders.c */
extern void ShopOrderTransition(Datum order_id, const char *to_status, const char *note,
								const char *carrier, const char *tracking);

/* payments.c */
typedef enum ShopPayOutcome
{
	SHOP_PAY_AUTHORIZED,		/* the test provider authorized the amount */
	SHOP_PAY_DECLINED,			/* the test provider declined */
	SHOP_PAY_PENDING			/* a real gateway: the application confirms later */
} ShopPayOutcome;

typedef struct ShopPayToken
{
	char		provider[64];	/* "test" or the gateway's name */
	ShopPayOutcome outcome;
	const char *brand;			/* card brand the test token stands for, or NULL */
	const char *last4;			/* its last four digits, or NULL */
	bool		provider_risk;	/* tok_fraud: the provider's risk check fired */
	bool		shared;			/* a shared test token, not one card: no token velocity */
} ShopPayToken;

extern void ShopParsePaymentToken(const char *token, ShopPayToken *pt);
extern double ShopFraudScore(int64 cust_recent, int64 token_recent, int64 hist_n,
							 double hist_avg, const ShopPayToken *pt, int64 total_cents,
							 Datum *reasons);
extern void ShopCheckArgText(text *t, const char *what, int max_len, bool allow_empty);
extern bool ShopCheckPaymentFailures(void);

/* security.c */
extern void ShopSessionDefineGUCs(void);
extern bool ShopCallerIsTrusted(void);
extern void ShopAuthorizeCustomer(int64 customer_id, bool isnull);
extern void ShopCheckPlainText(const char *s, int len, const char *what, bool multiline);
extern char *ShopQuoteForDetail(const char *s, int len);
extern char *ShopEchoValue(const char *s, int len, const char *what);
extern void ShopCheckPlainJsonb(Jsonb *jb, const char *what, bool multiline);
extern char *ShopCheckShippingAddress(Jsonb *address);
extern void ShopSagaMac(const char *msg, char *out);

/* recosimilar.c: shop._similar_candidates' list, -1 when the SQL must run */
struct SnapshotData;
extern int	ShopSimilarCandidates(int64 src_id, bool has_cat, int64 src_cat, text *brand,
								  text *src_title, Jsonb *src_attrs, const int64 *exclude,
								  int nexclude, int lim, struct SnapshotData *snap,
								  int64 *ids, float4 *scores);

/* recommend.c (GUC variables defined in shop.c) */
/* one scored neighbour of a product (reco_rank) */
typedef struct RecoScored
{
	int64		other;
	double		count;
	double		score;
} RecoScored;
extern double reco_basket_pair_weight(double w, int k);
extern double reco_scoring_total(double total);
extern int	reco_rank(double s_x, double total, const int64 *others, const double *counts,
					  const double *other_n, int nothers, RecoScored *scratch);

/*
 * A co-purchase rebuild in memory (reco_build_read): the products by
 * dense index with their statistics, the baskets of two or more products
 * as compressed sparse rows and, after reco_build_transpose, each
 * product's baskets.  shop._copurchase_rebuild and shop._rebuild_pairs
 * (recorebuild.c) both compute with it.
 */
typedef struct RecoBuild
{
	struct HTAB *index;			/* product_id -> dense index */
	int64	   *pid;			/* dense index -> product_id */
	double	   *n;
	double	   *s;
	int32		nitems;
	int32		items_cap;
	int64	   *boff;			/* nbaskets + 1 offsets into bitems */
	double	   *bpw;
	int32	   *bitems;
	int64		nbaskets;
	int64		nbitems;
	int64	   *ioff;			/* nitems + 1 offsets into ibaskets */
	int64	   *ibaskets;
	double		total;
	int64		orders;
	int64		lines;
} RecoBuild;
/* one neighbour of a product during a rebuild */
typedef struct RecoNb
{
	int64		pid;
	double		count;
	int32		idx;
} RecoNb;
/* reco_build_neighbours' scratch and result, one slot per product */
typedef struct RecoNeighbours
{
	double	   *acc;
	int32	   *touched;
	RecoNb	   *nbs;
	RecoScored *scratch;		/* for reco_rank */
	int64	   *other_id;
	double	   *other_cnt;
	double	   *other_n;
} RecoNeighbours;
extern void reco_build_read(RecoBuild *rb);
extern void reco_build_transpose(RecoBuild *rb);
extern void reco_build_neighbours_init(const RecoBuild *rb, RecoNeighbours *nb);
extern int	reco_build_neighbours(const RecoBuild *rb, int32 x, RecoNeighbours *nb);
extern char *reco_build_summary(const RecoBuild *rb, int64 npairs, int64 rows);
/*
 * recolike.c: one neighbour of a customers-like-you list; lists rank by the
 * stored (real) score, then neighbour id (like_cmp_entry); like_top keeps
 * the best `top` of e[0..n), sorted; like_round is a similarity as stored
 */
typedef struct LikeEntry
{
	int64		id;
	float4		score;
} LikeEntry;
extern int	like_cmp_entry(const void *a, const void *b);
extern int	like_top(LikeEntry *e, int n, int top);
extern float4 like_round(double s);

/*
 * An event of a customer's history, a product bought or viewed, and the
 * profile made of them (like_profile_events, recolike.c), shared by the
 * rebuild and the refresh.  like_profile_hash is hashint8extended(customer,
 * product), the profile row's sample hash, without the function call.
 */
typedef struct LikeEvent
{
	int64		product_id;
	double		w;
	TimestampTz at;
} LikeEvent;
extern int	like_profile_events(LikeEvent *ev, int n, int cap, double *norm);

static inline int64
like_profile_hash(int64 customer, int64 product)
{
	uint32		lohalf = (uint32) customer;
	uint32		hihalf = (uint32) (customer >> 32);

	lohalf ^= (customer >= 0) ? hihalf : ~hihalf;
	return DatumGetInt64(hash_uint32_extended(lohalf, (uint64) product));
}

/*
 * The customers-like-you lists of the rebuild (recorebuild.c) and of the
 * refresh's in-memory path (recolike.c), from the profile rows sorted by
 * (product, h, customer): each product's first `sample` rows are its
 * sample; a customer's list sums, over the samples the customer is in,
 * its weight times each other member's (in the customer's product order,
 * so both add up in the same order), rounded and cut as stored.  The rows
 * are any struct that starts with LikeProfileRow's fields (stride: its
 * size).
 */
typedef struct LikeProfileRow
{
	int64		p;
	int64		h;
	int64		c;
	float4		w;
	int32		ci;				/* the customer's dense index */
} LikeProfileRow;
typedef struct LikeSamples
{
	int32	   *mci;			/* sample members, sample after sample: dense index */
	float4	   *mw;				/* and weight */
	int32	   *moff;			/* customer c's samples: k in moff[c] .. moff[c + 1] */
	int32	   *kfirst;			/* sample k's first member in mci/mw */
	int32	   *klen;			/* its members */
	float4	   *kw;				/* c's weight in it */
} LikeSamples;

extern void like_samples_index(const void *rows, Size stride, int64 nv, int32 ncust, int sample,
							   LikeSamples *out);
extern void like_samples_free(LikeSamples *ls);
extern int	like_customer_list(const LikeSamples *ls, int32 c, const int64 *cust, double *acc,
							   int32 *touched, LikeEntry *vec, int top);
extern int	shop_reco_neighbours;
extern int	shop_reco_basket_cap;
extern int	shop_reco_buyer_cap;
extern double shop_reco_min_pairs;
extern int	shop_reco_like_neighbours;
extern int	shop_reco_like_items;
extern int	shop_reco_like_sample;
extern int	shop_reco_like_refresh_cap;
extern int	shop_reco_like_slice;
extern int	shop_reco_like_refresh_rows;
extern double shop_reco_weight_item;
extern double shop_reco_weight_like;
extern double shop_reco_weight_content;
extern double shop_reco_weight_popular;
extern int	shop_popularity_half_life;	/* seconds */
extern int	shop_popularity_apply_batch;
extern bool shop_search_intent;
extern bool shop_search_prior;
extern int	shop_search_prior_window;	/* seconds */
extern int	shop_search_prior_half_life;	/* seconds */

/* experiment.c: shop.experiment_bucket's value (name and unit in the server encoding) */
extern int	ShopExperimentBucket(const char *name, int nlen, const char *unit, int ulen);

/* search/ (shop_search access method): prototypes in src/search/ssearch.h */

#endif							/* SHOP_H */
