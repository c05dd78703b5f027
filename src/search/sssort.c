/*-------------------------------------------------------------------------
 *
 * sssort.c
 *	  Sorted scans of a shop_search index: the first k matches of a query
 *	  by price, rating, creation time or popularity, chosen from the values
 *	  the index stores per document, not from the table.
 *
 * shop.search's sorts order rows by a column and then by tie-breaks
 * (rating_count for the rating sort, then product_id), which the index
 * stores when it includes an integer and a bigint column (format 8; the
 * catalog's index does).  A sorted scan does not produce the final order
 * itself: it finds the candidates, the k first matches by a *key*
 * computed from the stored values plus every match whose key ties with
 * the k-th, and the caller sorts those few rows by the exact SQL order.
 * The key only has to be monotone with that order (a row ordered before
 * another never has a larger key); equal keys for rows SQL orders apart
 * (an index without the tie-break columns, numeric ratings rounded to
 * real) only add ties, which the candidates include.  With the tie id
 * stored, live rows never tie, so k rows are read, not the hundreds that
 * share a common price or a 5.00 rating.  So the first k rows of the exact order are
 * always among the candidates: at least k visible candidates have a key
 * at most the k-th one's, and every row ordered among the first k has a
 * key no larger.
 *
 * The scan visits the match set of a bitmap scan (SsVisitMatchesSorted)
 * and keeps a bounded buffer: matches whose key is larger than the k-th
 * smallest seen so far (kept at every match by a heap of k keys) are
 * dropped as they come; when the buffer fills, it is sorted and cut
 * after the k-th key and its ties.  The k-th key also lets the scan skip
 * blocks of documents whose smallest key is above it, unread (block
 * bounds, ssscan.c: sort_window), so most matches are never visited.
 * Then the candidates are read from the table in key order, visibility
 * and all (table_index_fetch_tuple, which follows HOT chains and gives
 * the visible version's TID), until k visible rows and
 * the ties of the k-th are out.  If invisible rows (dead, or not yet
 * visible to the snapshot) left fewer than k while the buffer had dropped
 * matches, the scan runs again keeping that many more.
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
#include "catalog/pg_operator_d.h"
#include "nodes/primnodes.h"
#include "utils/lsyscache.h"
#include "executor/tuptable.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "shop.h"
#include "ssearch.h"

PG_FUNCTION_INFO_V1(shop_search_sorted);

typedef enum SortKind
{
	SORT_PRICE_ASC,
	SORT_PRICE_DESC,
	SORT_RATING,
	SORT_NEWEST,
	SORT_POPULARITY
} SortKind;

/*
 * A document's place in a sort, smaller first: k1 the sort's value as a
 * double (what block bounds and the caller's sort_key see), k2 and k3
 * its exact order and the stored tie-breaks (see sort_key).
 */
typedef struct SortKey
{
	double		k1;
	int64		k2;
	int64		k3;
} SortKey;

typedef struct SortCand
{
	SortKey		key;
	ItemPointerData tid;
} SortCand;

typedef struct SsSortState
{
	SortKind	kind;
	int64		k;				/* keep the first k and their ties */
	SortCand   *c;
	int64		n;
	int64		cap;
	bool		have_bound;
	SortKey		bound;			/* the k-th smallest key so far */
	double		bound1;			/* its prune_of, for the block bounds */
	bool		dropped;		/* some match was left out */
	int64		seen;			/* matches visited */
	SortKey    *kh;				/* max-heap of the k smallest keys seen */
	int64		nkh;
} SsSortState;

/*
 * The first key of a document: smaller is earlier, monotone with
 * shop.search's ORDER BY (ASC puts NULLs last, DESC first; PostgreSQL
 * orders NaN above every number).
 */
static inline double
sort_key1(SortKind kind, const SsDoc *d)
{
	switch (kind)
	{
		case SORT_PRICE_ASC:
			return (d->flags & SS_DOC_HAS_PRICE) ? (double) d->price_cents : HUGE_VAL;
		case SORT_PRICE_DESC:
			return (d->flags & SS_DOC_HAS_PRICE) ? -(double) d->price_cents : -HUGE_VAL;
		case SORT_RATING:
			/* rating_avg DESC NULLS LAST */
			if (!(d->flags & SS_DOC_HAS_RATING))
				return HUGE_VAL;
			return isnan(d->rating) ? -HUGE_VAL : -(double) d->rating;
		case SORT_NEWEST:
			return (d->flags & SS_DOC_HAS_CREATED) ? -(double) d->created_at : -HUGE_VAL;
		case SORT_POPULARITY:
			/* NULL popularity is stored as 0 */
			return (d->flags & SS_DOC_POP_NAN) ? -HUGE_VAL : -(double) d->popularity;
	}
	return 0;
}

/*
 * The whole key of a document, in shop.search's ORDER BY: k1, then k2
 * (the exact bigint value where k1 rounds it: price, creation time; the
 * rating sort's count descending, NULLs first), then k3 (the tie id
 * ascending, NULLs last).  An index without the tie id's (or the
 * count's) INCLUDE column stores none: k3 (k2) is 0 for every document,
 * so the key only ties more often (the caller orders ties).  Where k1
 * ties, k2 follows the value exactly (~x orders bigints in reverse
 * without overflow), so the whole key is monotone with the SQL order,
 * not only k1.
 */
static inline SortKey
sort_key(SortKind kind, const SsDoc *d)
{
	SortKey		key;

	key.k1 = sort_key1(kind, d);
	key.k2 = 0;
	switch (kind)
	{
		case SORT_PRICE_ASC:
			if (d->flags & SS_DOC_HAS_PRICE)
				key.k2 = d->price_cents;
			break;
		case SORT_PRICE_DESC:
			if (d->flags & SS_DOC_HAS_PRICE)
				key.k2 = ~d->price_cents;
			break;
		case SORT_RATING:
			/* rating_count DESC (NULLS FIRST) */
			key.k2 = (d->flags & SS_DOC_HAS_COUNT) ? ~(int64) d->count : PG_INT64_MIN;
			break;
		case SORT_NEWEST:
			if (d->flags & SS_DOC_HAS_CREATED)
				key.k2 = ~d->created_at;
			break;
		case SORT_POPULARITY:
			break;
	}
	/* product_id ASC (NULLS LAST) */
	key.k3 = (d->flags & SS_DOC_HAS_TIE) ? d->tie_id : PG_INT64_MAX;
	return key;
}

static inline int
key_cmp(const SortKey *x, const SortKey *y)
{
	if (x->k1 != y->k1)
		return x->k1 < y->k1 ? -1 : 1;
	if (x->k2 != y->k2)
		return x->k2 < y->k2 ? -1 : 1;
	if (x->k3 != y->k3)
		return x->k3 < y->k3 ? -1 : 1;
	return 0;
}

static inline double prune_of(SortKind kind, const SortKey *key);

static int
cand_cmp(const void *a, const void *b)
{
	const SortCand *x = (const SortCand *) a;
	const SortCand *y = (const SortCand *) b;
	int			c = key_cmp(&x->key, &y->key);

	if (c != 0)
		return c;
	return ItemPointerCompare((ItemPointer) &x->tid, (ItemPointer) &y->tid);
}

/*
 * Keep the first k of the buffer and the ties of the k-th; grow it when
 * that leaves it more than half full (many ties).  The k-th key is the
 * heap's (kheap_add: the k smallest keys seen, every one of them in the
 * buffer too), so this is one pass over the buffer, not a sort (sorting
 * 4,040 candidates at each cut was a third of a deep page's
 * instructions, srt2); the caller sorts what is left once.
 */
static void
cut_buffer(SsSortState *st)
{
	int64		keep = 0;

	if (st->n <= st->k)
		return;
	if (!st->have_bound)
	{
		/* (not reached: the buffer holds 2k or more, the heap k) */
		qsort(st->c, st->n, sizeof(SortCand), cand_cmp);
		st->bound = st->c[st->k - 1].key;
		st->bound1 = prune_of(st->kind, &st->bound);
		st->have_bound = true;
	}
	for (int64 i = 0; i < st->n; i++)
		if (key_cmp(&st->c[i].key, &st->bound) <= 0)
			st->c[keep++] = st->c[i];
	if (keep < st->n)
		st->dropped = true;
	st->n = keep;
	if (st->n > st->cap / 2)
	{
		st->cap *= 2;
		st->c = repalloc_huge(st->c, sizeof(SortCand) * st->cap);
	}
}

/*
 * The value block bounds are kept in (ssscan.c, sort_mins): a double
 * monotone with the key (a smaller key never has a larger value), so
 * that a block whose smallest value is above the k-th key's cannot hold
 * a row of the first k.  k1 for most sorts.  The rating sort packs its
 * count below the rating: about 1% of a catalog is rated 5.00, so k1
 * alone would leave every block holding one of them to be read.  The
 * rating (a real, k1 = -rating or an infinity, exact as a float4) becomes
 * its 32 order-preserving bits, times 2^21, plus 0 for a NULL count
 * (NULLs first) or 2^20 - count for a count in [0, 2^20) (more first;
 * counts past that share one value, negative ones another): under 2^53,
 * so the double holds it exactly.  The price sorts pack the tie id below
 * the price the same way (the 20th cheapest price of a common word ties
 * with hundreds of products, each in a block of its own): a price in
 * [0, 2^32) cents (ascending: the price, descending: 2^32 - 1 - price)
 * times 2^21, plus the tie id / 8 up to 2^21 - 1 (ids past 2^24 share one
 * value); a price outside that range gets one value below or above every
 * other, NULL (k1 infinite) its infinity.
 */
#define PACK_LOW_BITS	21
#define PACK_PRICE_MAX	((INT64CONST(1) << (53 - PACK_LOW_BITS)) - 1)	/* exclusive */
#define PACK_TIE_SHIFT	3

static inline double
prune_of(SortKind kind, const SortKey *key)
{
	float4		f;
	uint32		u;
	int64		c;

	if (kind == SORT_PRICE_ASC || kind == SORT_PRICE_DESC)
	{
		int64		price;
		int64		hi;
		int64		q;

		if (isinf(key->k1))
			return key->k1;		/* NULL price */
		price = kind == SORT_PRICE_ASC ? key->k2 : ~key->k2;
		if (price < 0)
			return kind == SORT_PRICE_ASC ? -1.0 : (double) (INT64CONST(1) << 53);
		if (price >= PACK_PRICE_MAX)
			return kind == SORT_PRICE_ASC ? (double) (INT64CONST(1) << 53) : -1.0;
		hi = kind == SORT_PRICE_ASC ? price : PACK_PRICE_MAX - 1 - price;
		q = Min(Max(key->k3, 0) >> PACK_TIE_SHIFT, (INT64CONST(1) << PACK_LOW_BITS) - 1);
		return (double) (hi * (INT64CONST(1) << PACK_LOW_BITS) + q);
	}
	if (kind != SORT_RATING)
		return key->k1;
	f = (float4) key->k1;
	if (f == 0)
		f = 0;					/* -0 and 0 are one rating */
	memcpy(&u, &f, sizeof(u));
	u = (u & 0x80000000) ? ~u : (u | 0x80000000);
	if (key->k2 == PG_INT64_MIN)
		c = 0;
	else
	{
		int64		count = ~key->k2;

		c = (INT64CONST(1) << 20) - Min(Max(count, 0), (INT64CONST(1) << 20) - 1);
	}
	return (double) u * (double) (INT64CONST(1) << 21) + (double) c;
}

/* SsSortKeyFn */
static double
prune_key(int kind, const SsDoc *doc)
{
	SortKey		key = sort_key((SortKind) kind, doc);

	return prune_of((SortKind) kind, &key);
}

/*
 * Keep st->bound the k-th smallest key seen so far at every match (not
 * only at each cut of the buffer), so the scan's block bounds
 * (SsSortPrune) skip from the first k matches on: a max-heap of the k
 * smallest keys.
 */
static void
kheap_add(SsSortState *st, const SortKey *key)
{
	int64		i;

	if (st->nkh < st->k)
	{
		i = st->nkh++;
		while (i > 0 && key_cmp(&st->kh[(i - 1) / 2], key) < 0)
		{
			st->kh[i] = st->kh[(i - 1) / 2];
			i = (i - 1) / 2;
		}
		st->kh[i] = *key;
	}
	else if (key_cmp(key, &st->kh[0]) < 0)
	{
		i = 0;
		for (;;)
		{
			int64		c = 2 * i + 1;

			if (c >= st->nkh)
				break;
			if (c + 1 < st->nkh && key_cmp(&st->kh[c + 1], &st->kh[c]) > 0)
				c++;
			if (key_cmp(&st->kh[c], key) <= 0)
				break;
			st->kh[i] = st->kh[c];
			i = c;
		}
		st->kh[i] = *key;
	}
	else
		return;
	if (st->nkh == st->k && (!st->have_bound || key_cmp(&st->kh[0], &st->bound) < 0))
	{
		st->bound = st->kh[0];
		st->bound1 = prune_of(st->kind, &st->bound);
		st->have_bound = true;
	}
}

static void
sort_visit(void *arg, const SsDoc *doc)
{
	SsSortState  *st = (SsSortState *) arg;
	SortKey		key = sort_key(st->kind, doc);

	st->seen++;
	if (st->have_bound && key_cmp(&key, &st->bound) > 0)
	{
		st->dropped = true;
		return;
	}
	kheap_add(st, &key);
	if (st->n >= st->cap)
	{
		cut_buffer(st);
		if (st->have_bound && key_cmp(&key, &st->bound) > 0)
		{
			st->dropped = true;
			return;
		}
	}
	st->c[st->n].key = key;
	st->c[st->n].tid = doc->tid;
	st->n++;
}

static SortKind
parse_sort(text *t)
{
	char	   *s = text_to_cstring(t);

	if (strcmp(s, "price_asc") == 0)
		return SORT_PRICE_ASC;
	if (strcmp(s, "price_desc") == 0)
		return SORT_PRICE_DESC;
	if (strcmp(s, "rating") == 0)
		return SORT_RATING;
	if (strcmp(s, "newest") == 0)
		return SORT_NEWEST;
	if (strcmp(s, "popularity") == 0)
		return SORT_POPULARITY;
	{
		char	   *shown = ShopEchoValue(s, strlen(s), "sort");

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown sort"),
				 errdetail("sort is %s; a sorted scan takes price_asc, price_desc, rating, newest or popularity.", shown)));
	}
	return SORT_PRICE_ASC;		/* keep compiler quiet */
}

/*
 * what to do with each visible candidate, in key order; slot NULL: a row
 * before the page, counted without being read (sorted_scan's skip)
 */
typedef void (*SortEmit) (void *arg, TupleTableSlot *slot, double key);

/*
 * An attribute filter checked on the rows: attrs (a jsonb object) must be
 * contained in the row's column att, as "attributes @> attrs".  The index
 * narrows the matches by attribute filter terms first (SsSetAttrFilter),
 * which may let a few more through (hash collisions, documents with more
 * attributes than it indexes, nested values): this makes it exact.
 */
typedef struct RowCheck
{
	Jsonb	   *attrs;
	AttrNumber	att;
} RowCheck;

static bool
row_ok(const RowCheck *rc, TupleTableSlot *slot)
{
	bool		isnull;
	Datum		v;

	if (rc == NULL)
		return true;
	v = slot_getattr(slot, rc->att, &isnull);
	return !isnull &&
		DatumGetBool(DirectFunctionCall2(jsonb_contains, v, JsonbPGetDatum(rc->attrs)));
}

/*
 * SsVisitMatches with the attribute filter of rc, if any, skipping blocks
 * by their bounds on the sort key (prune NULL: every match is visited)
 */
static void
visit_matches(Relation index, Jsonb *query, const RowCheck *rc, SsDocVisitor visit, void *arg,
			  SsSortPrune *prune)
{
	SsSetAttrFilter(rc ? rc->attrs : NULL);
	PG_TRY();
	{
		if (prune)
			SsVisitMatchesSorted(index, query, visit, arg, prune);
		else
			SsVisitMatches(index, query, visit, arg);
	}
	PG_FINALLY();
	{
		SsSetAttrFilter(NULL);
	}
	PG_END_TRY();
}

/*
 * The first k visible matches of query in index by kind, and the ties of
 * the k-th, handed to emit in key order; restart is called before the
 * scan starts over (see the top of the file).
 *
 * skip: the caller drops the first skip rows (a deep page's offset), and
 * every row the index points to is one it keeps (the index's predicate is
 * its filter, no row check).  Then a first run of candidates is counted,
 * not read (emit gets a NULL slot), while each is on a heap page the
 * visibility map says all-visible (the row the index points to is then
 * visible to every snapshot, and still the version indexed: a HOT update
 * changes no indexed column, nor a column of the predicate; as for an
 * index-only scan), falls before the skip-th visible row, and has a key
 * smaller than the next candidate's (so it comes before every row read
 * after it in the exact order too).  The first candidate that is not such
 * is read, and so is every one after it.
 */
static void
sorted_scan(Relation index, Relation heap, Jsonb *query, SortKind kind, int32 k, int32 skip,
			const RowCheck *rc, SortEmit emit, void (*restart) (void *arg), void *arg)
{
	Buffer		vmbuf = InvalidBuffer;

	IndexFetchTableData *fetch = table_index_fetch_begin(heap);
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	Snapshot	snap = GetActiveSnapshot();
	SsSortState st;
	int64		want = k;

	for (;;)
	{
		int64		visible = 0,
					invisible = 0;
		int64		i;
		bool		skipping = skip > 0 && rc == NULL;
		SortKey		kth = {0, 0, 0};
		SsSortPrune pr;

		memset(&st, 0, sizeof(st));
		st.kind = kind;
		st.k = want;
		st.cap = Max(2 * want, 1024);
		st.c = palloc_extended(sizeof(SortCand) * st.cap, MCXT_ALLOC_HUGE);
		st.kh = palloc_extended(sizeof(SortKey) * want, MCXT_ALLOC_HUGE);
		memset(&pr, 0, sizeof(pr));
		pr.kind = (int) kind;
		pr.k = want;
		pr.key = prune_key;
		pr.have_bound = &st.have_bound;
		pr.bound = &st.bound1;

		/*
		 * docids are numbered most popular first, so the bounds over all
		 * documents already rule out nearly every block for popularity
		 */
		pr.word_bounds = kind != SORT_POPULARITY;
		visit_matches(index, query, rc, sort_visit, &st,
					  shop_search_block_max ? &pr : NULL);
		if (pr.blocks_skipped > 0)
			st.dropped = true;	/* matches in them may have been left out */
		if (st.dropped)
			cut_buffer(&st);	/* the loop below stops at the k-th key then */
		qsort(st.c, st.n, sizeof(SortCand), cand_cmp);

		/* the candidates in key order, as far as k visible rows and ties */
		for (i = 0; i < st.n; i++)
		{
			bool		call_again = false,
						all_dead = false;
			ItemPointerData t = st.c[i].tid;

			if (visible >= k && key_cmp(&st.c[i].key, &kth) > 0)
				break;

			/*
			 * Past the k-th key of the index's matches, the candidates are
			 * only those kept before the bound fell to it: a match with a
			 * smaller key than this one may have been dropped since (or
			 * skipped with its block).  So when invisible rows leave fewer
			 * than k here, the scan runs again rather than go on.
			 */
			if (st.dropped && st.have_bound && key_cmp(&st.c[i].key, &st.bound) > 0)
				break;
			if ((i & 255) == 0)
				CHECK_FOR_INTERRUPTS();
			if (skipping)
			{
				if (visible < skip && i + 1 < st.n &&
					key_cmp(&st.c[i].key, &st.c[i + 1].key) < 0 &&
					VM_ALL_VISIBLE(heap, ItemPointerGetBlockNumber(&t), &vmbuf))
				{
					ss_last_scan.rows_counted++;
					emit(arg, NULL, st.c[i].key.k1);
					if (++visible == k)
						kth = st.c[i].key;
					continue;
				}
				skipping = false;
			}
			ss_last_scan.heap_rows++;
			if (table_index_fetch_tuple(fetch, &t, snap, slot, &call_again, &all_dead) &&
				row_ok(rc, slot))
			{
				emit(arg, slot, st.c[i].key.k1);
				if (++visible == k)
					kth = st.c[i].key;
			}
			else
				invisible++;
			ExecClearTuple(slot);
		}
		elog(DEBUG1, "shop_search sorted scan: " INT64_FORMAT " matches, " INT64_FORMAT
			 " candidates kept, " INT64_FORMAT " read, " INT64_FORMAT " invisible, "
			 INT64_FORMAT " blocks and " INT64_FORMAT " windows skipped",
			 st.seen, st.n, Min(i, st.n), invisible, pr.blocks_skipped, pr.windows_skipped);
		if (visible >= k || !st.dropped)
			break;

		/*
		 * Invisible rows (or rows failing rc) took places of the first k
		 * and the buffer left
		 * matches out: again, keeping as many more (the rows handed out
		 * so far come first again, so the output starts over).
		 */
		restart(arg);
		want += Max(invisible, 1);
		pfree(st.c);
		pfree(st.kh);
	}
	if (BufferIsValid(vmbuf))
		ReleaseBuffer(vmbuf);
	ExecDropSingleTupleTableSlot(slot);
	table_index_fetch_end(fetch);
}

static void
tid_emit(void *arg, TupleTableSlot *slot, double key)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) arg;
	ItemPointer here = palloc(sizeof(ItemPointerData));
	Datum		v[2];
	bool		nulls[2] = {false, false};

	*here = slot->tts_tid;
	v[0] = PointerGetDatum(here);
	v[1] = Float8GetDatum(key);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
}

static void
output_restart(void *arg)
{
	tuplestore_clear(((ReturnSetInfo *) arg)->setResult);
}

static void
check_k(int32 k)
{
	if (k < 1 || k > SHOP_MAX_LIMIT + SHOP_MAX_OFFSET)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("limit out of range"),
				 errdetail("k is %d; it must be between 1 and %d.", k,
						   SHOP_MAX_LIMIT + SHOP_MAX_OFFSET)));
}

/*
 * shop._search_sorted(index regclass, query jsonb, sort text, k int)
 *   -> TABLE(ctid tid, sort_key float8)
 * The TIDs (of the visible versions) of the first k rows matching query
 * (every word; the filters of the query) in the order of sort, and of
 * every row whose sort value ties with the k-th, in that order: the rows
 * among which the first k of the exact order (with the caller's further
 * tie-breaks) are; sort_key is the key they were chosen by (smaller
 * first, see sort_key).  Sorting by "newest" needs a timestamptz INCLUDE
 * column; without one every row ties.
 */
Datum
shop_search_sorted(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Jsonb	   *query = PG_GETARG_JSONB_P(1);
	SortKind	kind = parse_sort(PG_GETARG_TEXT_PP(2));
	int32		k = PG_GETARG_INT32(3);
	Relation	index,
				heap;

	check_k(k);
	InitMaterializedSRF(fcinfo, 0);
	SsLastScanReset();
	index = SsOpenIndex(PG_GETARG_OID(0), &heap);
	SsCheckQueryLanguage(index, query);
	sorted_scan(index, heap, query, kind, k, 0, NULL, tid_emit, output_restart, rsinfo);
	table_close(heap, AccessShareLock);
	index_close(index, AccessShareLock);
	return (Datum) 0;
}

/* ---- whole rows ---- */

/*
 * Where the rows go: a sink called with each row's slot (the heap row in
 * its buffer, valid until the next row), its score, typos and missing
 * words (ranked; a sorted scan's rows have none), and a restart that
 * forgets the rows given so far (a sorted scan that starts again).
 */
typedef struct RowSink
{
	SsRowSink	sink;
	void		(*restart) (void *arg);
	void	   *arg;
} RowSink;

static void
sink_emit(void *arg, TupleTableSlot *slot, double key)
{
	RowSink    *rs = (RowSink *) arg;

	rs->sink(rs->arg, slot, false, 0, 0, 0);	/* NULL: counted, not read */
}

/*
 * Is the index's predicate exactly "status = 'active'" on a text column
 * named status (the catalog's index)?  Then every row it points to is
 * active, what shop.search's page keeps.
 */
static bool
pred_is_active(Relation index, Relation heap)
{
	List	   *pred = RelationGetIndexPredicate(index);
	OpExpr	   *op;
	Var		   *var;
	Const	   *c;
	char	   *name;
	text	   *val;

	if (list_length(pred) != 1 || !IsA(linitial(pred), OpExpr))
		return false;
	op = (OpExpr *) linitial(pred);
	if (op->opno != TextEqualOperator || list_length(op->args) != 2 ||
		!IsA(linitial(op->args), Var) || !IsA(lsecond(op->args), Const))
		return false;
	var = (Var *) linitial(op->args);
	c = (Const *) lsecond(op->args);
	if (c->constisnull || c->consttype != TEXTOID || var->varattno <= 0)
		return false;
	name = get_attname(RelationGetRelid(heap), var->varattno, true);
	if (name == NULL || strcmp(name, "status") != 0)
		return false;
	val = DatumGetTextPP(c->constvalue);
	return VARSIZE_ANY_EXHDR(val) == 6 && memcmp(VARDATA_ANY(val), "active", 6) == 0;
}

static void
sink_restart(void *arg)
{
	RowSink    *rs = (RowSink *) arg;

	rs->restart(rs->arg);
}

/* shop._search_rows's sink: (row, score, typos, missing) into a tuplestore */
static void
tuplestore_sink(void *arg, TupleTableSlot *slot, bool ranked, float4 score, int32 typos,
				int32 missing)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) arg;
	Datum		v[4];
	bool		nulls[4] = {false, !ranked, !ranked, false};

	v[0] = ExecFetchSlotHeapTupleDatum(slot);
	v[1] = ranked ? Float4GetDatum(score) : (Datum) 0;
	v[2] = ranked ? Int32GetDatum(typos) : (Datum) 0;
	v[3] = Int32GetDatum(ranked ? missing : 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
}

/* the k best rows for relevance passing rc, as shop.search_scan ranks them */
static void
relevance_scan_inner(Relation index, Relation heap, Datum query, int32 k, const RowCheck *rc,
					 const RowSink *rs)
{
	IndexScanDesc scan;
	ScanKeyData skey,
				orderby;
	FmgrInfo	dummy;
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	int			n = 0;

	memset(&dummy, 0, sizeof(dummy));
	dummy.fn_oid = InvalidOid;
	ScanKeyEntryInitializeWithInfo(&skey, 0, 1, SS_MATCH_STRATEGY, JSONBOID,
								   InvalidOid, &dummy, query);
	ScanKeyEntryInitializeWithInfo(&orderby, 0, 1, SS_RANK_STRATEGY, JSONBOID,
								   InvalidOid, &dummy, query);
	scan = index_beginscan(heap, index, GetActiveSnapshot(), 1, 1);
	index_rescan(scan, &skey, 1, &orderby, 1);
	while (n < k && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		float4		dist;
		double		tiers;
		int			missing;
		int			typos;

		ss_last_scan.heap_rows++;
		dist = DatumGetFloat4(scan->xs_orderbyvals[0]);
		tiers = ceil(dist / SS_TYPO_TIER);	/* score < SS_MAX_SCORE */
		missing = (int) floor(tiers * SS_TYPO_TIER / SS_MISSING_TIER);
		typos = (int) tiers - missing * (int) (SS_MISSING_TIER / SS_TYPO_TIER);
		CHECK_FOR_INTERRUPTS();
		if (!row_ok(rc, slot))
			continue;
		rs->sink(rs->arg, slot, true, (float4) (tiers * SS_TYPO_TIER - dist), typos, missing);
		n++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
}

/* relevance_scan_inner with the attribute filter of rc, if any */
static void
relevance_scan(Relation index, Relation heap, Datum query, int32 k, const RowCheck *rc,
			   const RowSink *rs)
{
	SsSetAttrFilter(rc ? rc->attrs : NULL);
	PG_TRY();
	{
		relevance_scan_inner(index, heap, query, k, rc, rs);
	}
	PG_FINALLY();
	{
		SsSetAttrFilter(NULL);
	}
	PG_END_TRY();
}

/*
 * shop._search_rows(index regclass, query jsonb, sort text, k int, attrs jsonb)
 *   -> TABLE(row <the table's row type>, score real, typos int, missing int)
 * What shop.search needs of the index in one call, the rows themselves
 * read once each: with sort 'relevance', the k best rows as
 * shop.search_scan ranks them, with their score, typos and missing words;
 * with another sort, the rows _search_sorted chooses (score and typos
 * NULL, missing 0), for the caller to order exactly.  Only rows whose
 * attributes (the index's jsonb INCLUDE column) contain attrs count, as
 * "attributes @> attrs": the index filters on attribute terms, the rows
 * are checked.  The SQL declaration names the table's row type; an index
 * on another table is refused.
 */
PG_FUNCTION_INFO_V1(shop_search_rows);

Datum
shop_search_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	check_k(PG_GETARG_INT32(3));
	if (!JB_ROOT_IS_OBJECT(PG_GETARG_JSONB_P(4)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("malformed search filter"),
				 errdetail("attributes must be a jsonb object.")));
	InitMaterializedSRF(fcinfo, 0);
	SsSearchRows(PG_GETARG_OID(0), PG_GETARG_DATUM(1), PG_GETARG_TEXT_PP(2), PG_GETARG_INT32(3),
				 PG_GETARG_JSONB_P(4), rsinfo);
	return (Datum) 0;
}

/*
 * search_rows: the work of shop._search_rows, each row to rs.  rowtype,
 * if valid, is the row type the caller returns: the index's table must
 * have it.  attrs is a jsonb object.
 */
static void
search_rows(Oid indexoid, Datum query, text *sorttext, int32 k, int32 skip, Jsonb *attrs,
			Oid rowtype, const RowSink *rs)
{
	char	   *sort = text_to_cstring(sorttext);
	Relation	index,
				heap;
	RowCheck	rcd;
	RowCheck   *rc = NULL;

	check_k(k);
	SsLastScanReset();
	index = SsOpenIndex(indexoid, &heap);
	if (OidIsValid(rowtype) && rowtype != heap->rd_rel->reltype)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("index \"%s\" is not on the table whose rows this function returns",
						RelationGetRelationName(index))));
	SsCheckQueryLanguage(index, DatumGetJsonbP(query));
	if (JB_ROOT_COUNT(attrs) > 0)
	{
		int			c = SsIncludeColumn(index, JSONBOID);

		if (c < 0 || index->rd_index->indkey.values[c] == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("index \"%s\" has no attributes", RelationGetRelationName(index)),
					 errdetail("An attributes filter needs a jsonb column in the index's INCLUDE list.")));
		rcd.attrs = attrs;
		rcd.att = index->rd_index->indkey.values[c];
		rc = &rcd;
	}
	if (skip > 0 && (rc != NULL || !pred_is_active(index, heap)))
		skip = 0;
	if (strcmp(sort, "relevance") != 0)
		sorted_scan(index, heap, DatumGetJsonbP(query), parse_sort(sorttext), k, skip,
					rc, sink_emit, sink_restart, (void *) rs);
	else
		relevance_scan(index, heap, query, k, rc, rs);
	table_close(heap, AccessShareLock);
	index_close(index, AccessShareLock);
}

/*
 * SsSearchRows: the work of shop._search_rows, into rsinfo's setResult
 * (setDesc: the table's row type, float4, int4, int4).  attrs is a jsonb
 * object.
 */
void
SsSearchRows(Oid indexoid, Datum query, text *sorttext, int32 k, Jsonb *attrs,
			 ReturnSetInfo *rsinfo)
{
	RowSink		rs;

	rs.sink = tuplestore_sink;
	rs.restart = output_restart;
	rs.arg = rsinfo;
	search_rows(indexoid, query, sorttext, k, 0, attrs,
				TupleDescAttr(rsinfo->setDesc, 0)->atttypid, &rs);
}

/*
 * SsSearchRowsTo: the same rows, each given to sink with its slot (the
 * heap row, valid until the next call) instead of copied into a
 * tuplestore; restart forgets the rows given so far.  shop.search cuts
 * its page this way (sssearch.c).  skip: the caller drops the first skip
 * active rows of a sort other than relevance; with an index whose
 * predicate is status = 'active' and no attribute filter, some of them
 * may come as a NULL slot, counted but not read (sorted_scan).
 */
void
SsSearchRowsTo(Oid indexoid, Datum query, text *sorttext, int32 k, int32 skip, Jsonb *attrs,
			   SsRowSink sink, void (*restart) (void *arg), void *arg)
{
	RowSink		rs;

	rs.sink = sink;
	rs.restart = restart;
	rs.arg = arg;
	search_rows(indexoid, query, sorttext, k, skip, attrs, InvalidOid, &rs);
}

/*
 * shop.search_last_scan() -> one row: what the calling backend's last
 * search page read (SsLastScan, ssearch.h); zeros before any
 */
PG_FUNCTION_INFO_V1(shop_search_last_scan);

Datum
shop_search_last_scan(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		v[13];
	bool		nulls[13];
	const SsLastScan *ls = &ss_last_scan;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	v[0] = Int64GetDatum(ls->evaluations);
	v[1] = Int64GetDatum(ls->segments);
	v[2] = Int64GetDatum(ls->pending);
	v[3] = Int64GetDatum(ls->windows);
	v[4] = Int64GetDatum(ls->blocks);
	v[5] = Int64GetDatum(ls->postings);
	v[6] = Int64GetDatum(ls->matches);
	v[7] = Int64GetDatum(ls->heap_rows);
	v[8] = Int64GetDatum(ls->blocks_skipped);
	v[9] = Int64GetDatum(ls->windows_skipped);
	v[10] = Int64GetDatum(ls->bound_docs);
	v[11] = Int64GetDatum(ls->bound_postings);
	v[12] = Int64GetDatum(ls->rows_counted);
	memset(nulls, 0, sizeof(nulls));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), v, nulls)));
}
