/*-------------------------------------------------------------------------
 *
 * recolike.c
 *	  Customers like you: the neighbour lists of shop.customer_neighbour,
 *	  computed whole or patched (shop._like_lists), the sets of one
 *	  slice of a refresh (shop._like_slice), and a refresh's lists in
 *	  memory (shop._like_refresh_lists).
 *
 * A customer's profile (shop.customer_item) is at most
 * shop.reco_like_items products with weights; a product's sample is the
 * shop.reco_like_sample customers holding it with the smallest
 * (h, customer_id).  The similarity of two customers a and b is
 *
 *	  sim(a, b) = sum over the products p whose sample holds both of
 *				  w_a(p) * w_b(p)
 *
 * rounded to 1e-9 (so that sums taken in another order compare equal) and
 * stored as a real.  They are *candidates* for each other when that sum
 * has a term.  A list is the shop.reco_like_neighbours best candidates,
 * ranked by the stored real value, then neighbour id: the ranking depends
 * on the stored values only, which is what lets a refresh patch a list
 * with the values it has.
 *
 * Whole lists.  For each customer c: the samples of c's products (index
 * ranges of (product_id, h, customer_id), at most shop.reco_like_sample
 * entries each), and for every product whose sample holds c, the product
 * of the weights added to each other sampled customer's sum.  Customers
 * are taken in chunks whose products number at most LIKE_CHUNK_PRODUCTS,
 * so the samples held at once stay bounded whatever the batch.
 *
 * Patched lists (the refresh).  When the profiles of some customers
 * changed, the similarities that moved are those of pairs holding one of
 * them, or one of the customers that entered or left a sample because of
 * them: the refresh passes both sets as `full` (docs/recommendations.md,
 * "Incremental refresh").  Every other pair keeps its similarity: neither
 * customer's weights moved, and no sample they share changed for them.
 * So the lists of `full` are computed whole, and each such computation
 * also yields sim(c, a) = sim(a, c) for every candidate a of c.  Any other
 * customer a whose list can move (the `others` the refresh names, and
 * every candidate of a customer of `full`) gets its list patched: its
 * stored list minus the customers of `full`, plus the new similarities to
 * them, ranked.  Customers not in the stored list all ranked below its
 * last entry and kept their similarity; so when the stored list was full
 * and at least shop.reco_like_neighbours of the patched entries still rank
 * at or above that last entry, the patched top is the list a whole
 * computation would give.  Otherwise (a full list lost entries) the list
 * is computed whole.  Lists that come out equal to the stored ones are not
 * written, and of the others only the rows that moved.
 *
 * The refresh takes the changed customers in slices (shop.reco_like_slice)
 * and asks shop._like_slice, per slice, which customers entered or left a
 * sample and whose lists can move; it then calls shop._like_lists once
 * for the slices gathered, while the similarities it would gather stay
 * within one slice's worst case.
 *
 * In memory (shop._like_refresh_lists).  When shop.customer_item holds at
 * most shop.reco_like_refresh_rows rows, the refresh skips the slices and
 * the patches: every profile row is read once, and the lists of every
 * customer of a sample (before or after) that holds a changed customer
 * are computed whole, as the rebuild's shop._rebuild_like_lists computes
 * every list (src/recorebuild.c: the idea, not its code), and only the
 * rows that moved are written.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/bufmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "shop.h"
#include "spi.h"
#include "recowrite.h"

PG_FUNCTION_INFO_V1(shop_like_lists);
PG_FUNCTION_INFO_V1(shop_like_slice);
PG_FUNCTION_INFO_V1(shop_like_samples_after);
PG_FUNCTION_INFO_V1(shop_like_samples);

/* products whose samples one chunk of whole computations holds */
#define LIKE_CHUNK_PRODUCTS 20000
/* rows per statement that writes list rows */
#define LIKE_WRITE_BATCH	20000

static ShopStmt st_like_profiles = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT customer_id, product_id FROM shop.customer_item"
	" WHERE customer_id = ANY ($1) ORDER BY customer_id, product_id", INT8ARRAYOID);
static ShopStmt st_like_samples = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT i.pid, s.customer_id, s.weight FROM unnest($1::bigint[]) i(pid)"
	" CROSS JOIN LATERAL (SELECT c.customer_id, c.weight FROM shop.customer_item c"
	"                      WHERE c.product_id = i.pid ORDER BY c.h, c.customer_id LIMIT $2) s",
	INT8ARRAYOID, INT4OID);
static ShopStmt st_like_old = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT customer_id, neighbour_id, score FROM shop.customer_neighbour"
	" WHERE customer_id = ANY ($1)", INT8ARRAYOID);
static ShopStmt st_like_delete = SHOP_STMT(SHOP_PLAN_GENERIC,
	"DELETE FROM shop.customer_neighbour t USING unnest($1::bigint[], $2::bigint[]) u(c, n)"
	" WHERE t.customer_id = u.c AND t.neighbour_id = u.n", INT8ARRAYOID, INT8ARRAYOID);
static ShopStmt st_like_update = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.customer_neighbour t SET score = u.s"
	" FROM unnest($1::bigint[], $2::bigint[], $3::real[]) u(c, n, s)"
	" WHERE t.customer_id = u.c AND t.neighbour_id = u.n",
	INT8ARRAYOID, INT8ARRAYOID, FLOAT4ARRAYOID);
static ShopStmt st_like_insert = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.customer_neighbour (customer_id, neighbour_id, score)"
	" SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::real[])",
	INT8ARRAYOID, INT8ARRAYOID, FLOAT4ARRAYOID);


/*
 * The refresh's writes (shop._like_refresh_lists): rows addressed by the
 * ctid read with them, a TID scan each instead of a primary key lookup;
 * the key is checked too, and a batch that does not find all its rows
 * (none should: the refresh lock is held) runs again by key.
 */
static ShopStmt st_like_old_tid = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT customer_id, neighbour_id, score, ctid FROM shop.customer_neighbour"
	" WHERE customer_id = ANY ($1)", INT8ARRAYOID);
static ShopStmt st_like_delete_tid = SHOP_STMT(SHOP_PLAN_GENERIC,
	"DELETE FROM shop.customer_neighbour t USING unnest($1::tid[], $2::bigint[], $3::bigint[]) u(t, c, n)"
	" WHERE t.ctid = u.t AND t.customer_id = u.c AND t.neighbour_id = u.n",
	TIDARRAYOID, INT8ARRAYOID, INT8ARRAYOID);
static ShopStmt st_like_update_tid = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.customer_neighbour t SET score = u.s"
	" FROM unnest($1::tid[], $2::bigint[], $3::bigint[], $4::real[]) u(t, c, n, s)"
	" WHERE t.ctid = u.t AND t.customer_id = u.c AND t.neighbour_id = u.n",
	TIDARRAYOID, INT8ARRAYOID, INT8ARRAYOID, FLOAT4ARRAYOID);

/* a list (or the entries gathered for one), by customer */
typedef struct LikeList
{
	int64		customer_id;	/* hash key */
	int			n;
	int			cap;
	LikeEntry  *e;
	bool		has_new;		/* new list computed (LikeCtx.lists) */
} LikeList;

/* a product's sample: customer indexes (into LikeChunk.ids) and weights */
typedef struct LikeSample
{
	int64		product_id;		/* hash key */
	int			n;
	int			cap;
	int32	   *cust;
	float8	   *w;
} LikeSample;

typedef struct LikeCustIdx
{
	int64		customer_id;	/* hash key */
	int32		idx;
} LikeCustIdx;

typedef struct LikeCtx
{
	MemoryContext cxt;			/* everything below lives here */
	int			sample;			/* shop.reco_like_sample */
	int			top;			/* shop.reco_like_neighbours */
	bool		patch;			/* gather the entries of other lists */
	HTAB	   *full;			/* LikeList: the customers computed whole */
	HTAB	   *gather;			/* LikeList: entries for patched lists */
	HTAB	   *lists;			/* LikeList: new lists (e) by customer */
	long		n_whole;
	long		n_patched;
	/* the samples read so far in this call (see like_chunk) */
	MemoryContext scxt;			/* NULL: none kept */
	HTAB	   *samples;		/* LikeSample by product */
	HTAB	   *cidx;			/* LikeCustIdx by customer */
	int64	   *cust;			/* dense index -> customer id */
	bool	   *infull;			/* dense index -> in full (patching skips) */
	LikeList  **gptr;			/* dense index -> its entry of gather, once made */
	int			ncust;
	int			custcap;
	long		sample_rows;	/* rows kept now */
	long		sample_rows_read;	/* rows read in the call */
	long		sample_resets;	/* times the kept samples were dropped */
	long		sample_scans;	/* samples read by a scan (like_preload) */
} LikeCtx;

int
like_cmp_entry(const void *a, const void *b)
{
	const LikeEntry *x = a;
	const LikeEntry *y = b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return 0;
}

static int
like_cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* by neighbour id (the rows of two versions of a list, compared) */
static int
like_cmp_entry_id(const void *a, const void *b)
{
	const LikeEntry *x = a;
	const LikeEntry *y = b;

	return x->id < y->id ? -1 : (x->id > y->id ? 1 : 0);
}

/* rows of shop.customer_neighbour to delete, update or insert */
typedef struct LikeRows
{
	int			n;
	int			cap;
	int64	   *c;
	int64	   *nb;
	float4	   *s;
} LikeRows;

static void
like_row(LikeRows *r, int64 c, int64 nb, float4 s)
{
	if (r->n == r->cap)
	{
		r->cap = r->cap ? r->cap * 2 : 1024;
		r->c = r->c ? repalloc(r->c, sizeof(int64) * r->cap) : palloc(sizeof(int64) * r->cap);
		r->nb = r->nb ? repalloc(r->nb, sizeof(int64) * r->cap) : palloc(sizeof(int64) * r->cap);
		r->s = r->s ? repalloc(r->s, sizeof(float4) * r->cap) : palloc(sizeof(float4) * r->cap);
	}
	r->c[r->n] = c;
	r->nb[r->n] = nb;
	r->s[r->n] = s;
	r->n++;
}

/* runs st over the rows, LIKE_WRITE_BATCH at a time; returns the rows */
static long
like_flush(ShopStmt *st, LikeRows *r, bool with_score)
{
	Datum		args[3];

	for (int i = 0; i < r->n; i += LIKE_WRITE_BATCH)
	{
		int			len = Min(LIKE_WRITE_BATCH, r->n - i);

		args[0] = ShopInt8Array(r->c + i, len);
		args[1] = ShopInt8Array(r->nb + i, len);
		if (with_score)
			args[2] = ShopFloat4Array(r->s + i, len);
		ShopExec(st, args, NULL, 0);
	}
	return r->n;
}

static void
like_push(LikeList *l, int64 id, float4 score)
{
	if (l->n == l->cap)
	{
		l->cap = l->cap ? l->cap * 2 : 8;
		l->e = l->e ? repalloc(l->e, sizeof(LikeEntry) * l->cap)
			: palloc(sizeof(LikeEntry) * l->cap);
	}
	l->e[l->n].id = id;
	l->e[l->n].score = score;
	l->n++;
}

static HTAB *
like_hash(const char *name, Size entry, MemoryContext cxt)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = entry;
	ctl.hcxt = cxt;
	return hash_create(name, 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static LikeList *
like_list(HTAB *h, int64 id)
{
	bool		found;
	LikeList   *l = hash_search(h, &id, HASH_ENTER, &found);

	if (!found)
	{
		l->n = l->cap = 0;
		l->e = NULL;
		l->has_new = false;
	}
	return l;
}

/* sim rounded to 1e-9, as stored (also the rebuild's, recorebuild.c) */
float4
like_round(double s)
{
	return (float4) (rint(s * 1e9) / 1e9);
}

/* shop.h: the sample index of sorted profile rows */
#define LIKE_ROW(rows, stride, i) \
	((const LikeProfileRow *) ((const char *) (rows) + (Size) (i) * (stride)))

/*
 * The samples of rows[0..nv) (sorted by product, h, customer: each
 * product's first `sample` rows are its sample), packed as the lists read
 * them: the members of all samples in two arrays (8 bytes a member, only
 * the sampled rows), and each customer's samples, in product order, by
 * first member, length and the customer's weight in it.  (The refresh's
 * lists read a member's dense index and weight from its 40-byte row
 * before, strided through the product's rows, and ranked every candidate
 * through qsort's comparator: 13% of a refresh after 10,000 orders at
 * 100,000 products.)  The rebuild's lists (recorebuild.c) and the
 * refresh's in-memory path both use this and like_customer_list, so the
 * two compute a customer's list with one piece of code.
 */
void
like_samples_index(const void *rows, Size stride, int64 nv, int32 ncust, int sample,
				   LikeSamples *out)
{
	int64		nmem = 0;
	int32		nm = 0;
	int32	   *fill;

	/* the members, and how many samples each customer is in */
	out->mci = palloc(sizeof(int32) * Max(nv, 1));
	out->mw = palloc(sizeof(float4) * Max(nv, 1));
	out->moff = palloc0(sizeof(int32) * (ncust + 1));
	for (int64 i = 0; i < nv;)
	{
		int64		j = i + 1;
		int64		len;

		while (j < nv && LIKE_ROW(rows, stride, j)->p == LIKE_ROW(rows, stride, i)->p)
			j++;
		len = Min(j - i, sample);
		for (int64 m = i; m < i + len; m++)
		{
			const LikeProfileRow *r = LIKE_ROW(rows, stride, m);

			out->mci[nmem] = r->ci;
			out->mw[nmem] = r->w;
			out->moff[r->ci + 1]++;
			nmem++;
		}
		i = j;
	}
	for (int32 c = 0; c < ncust; c++)
		out->moff[c + 1] += out->moff[c];
	/* each customer's samples, in product order (the samples' order) */
	out->kfirst = palloc(sizeof(int32) * Max(nmem, 1));
	out->klen = palloc(sizeof(int32) * Max(nmem, 1));
	out->kw = palloc(sizeof(float4) * Max(nmem, 1));
	fill = palloc(sizeof(int32) * Max(ncust, 1));
	memcpy(fill, out->moff, sizeof(int32) * Max(ncust, 1));
	for (int64 i = 0; i < nv;)
	{
		int64		j = i + 1;
		int32		len;

		while (j < nv && LIKE_ROW(rows, stride, j)->p == LIKE_ROW(rows, stride, i)->p)
			j++;
		len = (int32) Min(j - i, sample);
		for (int32 m = 0; m < len; m++)
		{
			int32		k = fill[out->mci[nm + m]]++;

			out->kfirst[k] = nm;
			out->klen[k] = len;
			out->kw[k] = out->mw[nm + m];
		}
		nm += len;
		i = j;
	}
	pfree(fill);
}

void
like_samples_free(LikeSamples *ls)
{
	pfree(ls->mci);
	pfree(ls->mw);
	pfree(ls->moff);
	pfree(ls->kfirst);
	pfree(ls->klen);
	pfree(ls->kw);
}

/* a ranks above b in a list: higher score, then lower id (like_cmp_entry < 0) */
static inline bool
like_above(const LikeEntry *a, const LikeEntry *b)
{
	return a->score > b->score || (a->score == b->score && a->id < b->id);
}

#define ST_SORT like_sort_entry_id
#define ST_ELEMENT_TYPE LikeEntry
#define ST_COMPARE(a, b) ((a)->id < (b)->id ? -1 : ((a)->id > (b)->id ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * like_customer_list: customer c's list into vec (the best `top`, in
 * neighbour id order: the order the refresh compares stored and new rows
 * in); returns its length.  The sums are added as before (per neighbour:
 * c's samples in product order, each sample's members in its order, c's
 * weight times the member's), so the scores are the same to the bit; the
 * best `top` are kept by a bounded heap whose root is the worst kept
 * entry, the comparison inlined (like_top's entries, without its sort
 * by rank).  acc (zeroed, ncust) and touched (ncust) are scratch; acc is
 * left zeroed.
 */
int
like_customer_list(const LikeSamples *ls, int32 c, const int64 *cust, double *acc,
				   int32 *touched, LikeEntry *vec, int top)
{
	int			ntouched = 0;
	int			k = 0;
	const int32 *mci = ls->mci;
	const float4 *mw = ls->mw;

	for (int32 s = ls->moff[c]; s < ls->moff[c + 1]; s++)
	{
		double		wc = (double) ls->kw[s];
		int32		end = ls->kfirst[s] + ls->klen[s];

		for (int32 m = ls->kfirst[s]; m < end; m++)
		{
			int32		o = mci[m];

			if (o == c)
				continue;
			if (acc[o] == 0)
				touched[ntouched++] = o;
			acc[o] += wc * (double) mw[m];
		}
	}

	/*
	 * ranked by dense index: the indexes are in customer id order, so ties
	 * break as by id; only the kept entries look up their id
	 */
	for (int i = 0; i < ntouched; i++)
	{
		LikeEntry	x;
		int			j;

		x.id = touched[i];
		x.score = like_round(acc[touched[i]]);
		acc[touched[i]] = 0;
		if (k == top)
		{
			if (!like_above(&x, &vec[0]))
				continue;		/* ranks below the worst kept */
			/* replace the root and sift it down */
			j = 0;
			for (;;)
			{
				int			l = 2 * j + 1,
							w = j;
				const LikeEntry *pw = &x;

				if (l < k && like_above(pw, &vec[l]))
				{
					w = l;
					pw = &vec[l];
				}
				if (l + 1 < k && like_above(pw, &vec[l + 1]))
					w = l + 1;
				if (w == j)
					break;
				vec[j] = vec[w];
				j = w;
			}
			vec[j] = x;
			continue;
		}
		/* heap not full yet: sift up (vec[0..k) is the heap) */
		j = k++;
		while (j > 0 && like_above(&vec[(j - 1) / 2], &x))
		{
			vec[j] = vec[(j - 1) / 2];
			j = (j - 1) / 2;
		}
		vec[j] = x;
	}
	if (k > 1)
		like_sort_entry_id(vec, k);
	for (int i = 0; i < k; i++)
		vec[i].id = cust[vec[i].id];
	return k;
}

/*
 * like_top: the best `top` of e[0..n) (like_cmp_entry order), sorted, in
 * e[0..result).  A bounded heap whose root is the worst kept entry: n log
 * top comparisons instead of sorting every candidate (a customer of a
 * dense shop has hundreds of candidates for a list of 20).
 */
int
like_top(LikeEntry *e, int n, int top)
{
	int			k = 0;

	if (n <= top)
	{
		qsort(e, n, sizeof(LikeEntry), like_cmp_entry);
		return n;
	}
	for (int i = 0; i < n; i++)
	{
		LikeEntry	x = e[i];
		int			j;

		if (k == top)
		{
			if (like_cmp_entry(&x, &e[0]) >= 0)
				continue;		/* ranks below the worst kept */
			/* replace the root and sift it down */
			j = 0;
			for (;;)
			{
				int			l = 2 * j + 1,
							w = j;
				LikeEntry  *pw = &x;

				if (l < k && like_cmp_entry(&e[l], pw) > 0)
				{
					w = l;
					pw = &e[l];
				}
				if (l + 1 < k && like_cmp_entry(&e[l + 1], pw) > 0)
					w = l + 1;
				if (w == j)
					break;
				e[j] = e[w];
				j = w;
			}
			e[j] = x;
			continue;
		}
		/* heap not full yet: sift up (e[0..k) is the heap, i >= k) */
		j = k++;
		while (j > 0 && like_cmp_entry(&e[(j - 1) / 2], &x) < 0)
		{
			e[j] = e[(j - 1) / 2];
			j = (j - 1) / 2;
		}
		e[j] = x;
	}
	qsort(e, k, sizeof(LikeEntry), like_cmp_entry);
	return k;
}

/*
 * like_store: keep `n` entries (sorted) as the new list of `id`, cut to the
 * list length.
 */
static void
like_store(LikeCtx *cx, int64 id, LikeEntry *e, int n)
{
	LikeList   *l = like_list(cx->lists, id);

	n = Min(n, cx->top);
	l->e = palloc(sizeof(LikeEntry) * Max(n, 1));
	if (n > 0)
		memcpy(l->e, e, sizeof(LikeEntry) * n);
	l->n = l->cap = n;
	l->has_new = true;
}

/*
 * like_samples_reset: forget the samples kept (and start an empty set).
 */
static void
like_samples_reset(LikeCtx *cx)
{
	if (cx->scxt != NULL)
	{
		MemoryContextDelete(cx->scxt);
		cx->sample_resets++;
	}
	cx->scxt = AllocSetContextCreate(cx->cxt, "shop like samples", ALLOCSET_DEFAULT_SIZES);
	cx->samples = like_hash("shop like samples", sizeof(LikeSample), cx->scxt);
	cx->cidx = like_hash("shop like customers", sizeof(LikeCustIdx), cx->scxt);
	cx->custcap = 1024;
	cx->cust = MemoryContextAlloc(cx->scxt, sizeof(int64) * cx->custcap);
	cx->infull = MemoryContextAlloc(cx->scxt, sizeof(bool) * cx->custcap);
	cx->gptr = MemoryContextAlloc(cx->scxt, sizeof(LikeList *) * cx->custcap);
	cx->ncust = 0;
	cx->sample_rows = 0;
}

/*
 * like_sample_add: customer c (weight w) as the next member of sample s
 * (in cx->scxt, the caller's current context).
 */
static void
like_sample_add(LikeCtx *cx, LikeSample *s, int64 c, double w)
{
	bool		found;
	LikeCustIdx *ci = hash_search(cx->cidx, &c, HASH_ENTER, &found);

	if (!found)
	{
		if (cx->ncust == cx->custcap)
		{
			cx->custcap *= 2;
			cx->cust = repalloc(cx->cust, sizeof(int64) * cx->custcap);
			cx->infull = repalloc(cx->infull, sizeof(bool) * cx->custcap);
			cx->gptr = repalloc(cx->gptr, sizeof(LikeList *) * cx->custcap);
		}
		ci->idx = cx->ncust;
		cx->infull[ci->idx] = hash_search(cx->full, &c, HASH_FIND, NULL) != NULL;
		cx->gptr[ci->idx] = NULL;
		cx->cust[cx->ncust++] = c;
	}
	if (s->n == s->cap)
	{
		s->cap = s->cap ? s->cap * 2 : 16;
		s->cust = s->cust ? repalloc(s->cust, sizeof(int32) * s->cap) : palloc(sizeof(int32) * s->cap);
		s->w = s->w ? repalloc(s->w, sizeof(float8) * s->cap) : palloc(sizeof(float8) * s->cap);
	}
	s->cust[s->n] = ci->idx;
	s->w[s->n] = w;
	s->n++;
}

/* a row of shop.customer_item read by the scan of like_preload */
typedef struct LikeItemRow
{
	int64		p;
	int64		h;
	int64		c;
	float4		w;
} LikeItemRow;

/* a sample's order: product, then (h, customer_id) */
#define ST_SORT like_sort_items
#define ST_ELEMENT_TYPE LikeItemRow
#define ST_COMPARE(a, b) ((a)->p != (b)->p ? ((a)->p < (b)->p ? -1 : 1) : \
						  (a)->h != (b)->h ? ((a)->h < (b)->h ? -1 : 1) : \
						  (a)->c < (b)->c ? -1 : ((a)->c > (b)->c ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * like_preload: the samples of the products pids[0..n) not kept yet, read
 * by one sequential scan of shop.customer_item instead of one index range
 * per product, when that is cheaper and fits what may be kept.
 *
 * A refresh of 10,000 orders at 100,000 products needs the samples of
 * nearly every product (733,000 of the table's 777,000 rows, read through
 * 90,000 index ranges and their heap pages: a quarter of the refresh's
 * CPU).  The scan is taken when the products to read number at least
 * 1/LIKE_SCAN_RATIO of the table's rows (an index range with its heap
 * fetches costs about what that many rows of a sequential scan do) and
 * the whole table is within the rows the call may keep (LIKE_CHUNK_PRODUCTS
 * samples of shop.reco_like_sample), so memory stays within the bound of
 * like_chunk; a large store's refresh, which touches a small share of its
 * products, keeps the index ranges.  The samples are the same: the rows of
 * each product ordered by (h, customer_id), the first
 * shop.reco_like_sample of them, as the index query returns.
 */
#define LIKE_SCAN_RATIO 64

/*
 * like_scan: the rows of shop.customer_item whose product is in want, by
 * one sequential scan, sorted by (product_id, h, customer_id), in *nv;
 * NULL (nothing read) when the statements should read them instead: the
 * table has more than `limit` rows, the wanted products number less than
 * 1/LIKE_SCAN_RATIO of its rows, or the current user may not read it
 * plainly (the statements then apply its privileges and row security).
 */
static LikeItemRow *
like_scan(HTAB *want, long limit, long *nv_out)
{
	Oid			relid;
	Relation	rel;
	double		rows;
	long		nwant = hash_get_num_entries(want);
	TupleDesc	desc;
	AttrNumber	a_p,
				a_c,
				a_w,
				a_h;
	Snapshot	snap;
	TableScanDesc scan;
	TupleTableSlot *slot;
	LikeItemRow *v;
	long		nv = 0,
				cap;

	*nv_out = 0;
	if (nwant == 0)
		return NULL;
	relid = get_relname_relid("customer_item", get_namespace_oid("shop", false));
	if (!OidIsValid(relid) ||
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK ||
		check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		return NULL;
	rel = table_open(relid, AccessShareLock);
	/* rows now: the pages times the tuple density of the last ANALYZE */
	rows = rel->rd_rel->reltuples;
	if (rel->rd_rel->relpages > 0 && rows >= 0)
		rows = rows / rel->rd_rel->relpages * RelationGetNumberOfBlocks(rel);
	else
		rows = (double) RelationGetNumberOfBlocks(rel) * (BLCKSZ / 48);
	if (rows > limit || (double) nwant * LIKE_SCAN_RATIO < rows)
	{
		table_close(rel, AccessShareLock);
		return NULL;
	}

	desc = RelationGetDescr(rel);
	a_p = a_c = a_w = a_h = 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped)
			continue;
		if (strcmp(NameStr(a->attname), "product_id") == 0)
			a_p = a->attnum;
		else if (strcmp(NameStr(a->attname), "customer_id") == 0)
			a_c = a->attnum;
		else if (strcmp(NameStr(a->attname), "weight") == 0)
			a_w = a->attnum;
		else if (strcmp(NameStr(a->attname), "h") == 0)
			a_h = a->attnum;
	}
	if (a_p == 0 || a_c == 0 || a_w == 0 || a_h == 0)
		elog(ERROR, "shop.customer_item lacks a column of the profile");

	cap = 1024;
	v = palloc(sizeof(LikeItemRow) * cap);
	snap = RegisterSnapshot(GetTransactionSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		n1,
					n2,
					n3,
					n4;
		int64		p = DatumGetInt64(slot_getattr(slot, a_p, &n1));

		if (n1 || hash_search(want, &p, HASH_FIND, NULL) == NULL)
			continue;
		if (nv == cap)
		{
			cap *= 2;
			v = repalloc_huge(v, sizeof(LikeItemRow) * cap);
		}
		v[nv].p = p;
		v[nv].c = DatumGetInt64(slot_getattr(slot, a_c, &n2));
		v[nv].w = DatumGetFloat4(slot_getattr(slot, a_w, &n3));
		v[nv].h = DatumGetInt64(slot_getattr(slot, a_h, &n4));
		if (n2 || n3 || n4)
			continue;			/* not null in the table */
		nv++;
		if ((nv & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	like_sort_items(v, nv);
	*nv_out = nv;
	return v;
}

static void
like_preload(LikeCtx *cx, const int64 *pids, int n)
{
	long		limit = (long) LIKE_CHUNK_PRODUCTS * cx->sample;
	HTAB	   *want;
	MemoryContext old;
	LikeItemRow *v;
	long		nv;

	/* the products not kept yet */
	want = like_hash("shop like wanted", sizeof(int64), CurrentMemoryContext);
	for (int i = 0; i < n; i++)
		if (cx->scxt == NULL || hash_search(cx->samples, &pids[i], HASH_FIND, NULL) == NULL)
			(void) hash_search(want, &pids[i], HASH_ENTER, NULL);
	v = like_scan(want, limit, &nv);
	if (v == NULL)
	{
		hash_destroy(want);
		return;
	}

	/* kept with the rest, as like_chunk keeps what it reads */
	if (cx->scxt == NULL || cx->sample_rows + nv > limit)
		like_samples_reset(cx);
	old = MemoryContextSwitchTo(cx->scxt);
	{
		HASH_SEQ_STATUS seq;
		int64	   *wp;

		hash_seq_init(&seq, want);
		while ((wp = hash_seq_search(&seq)) != NULL)
		{
			bool		found;
			LikeSample *s = hash_search(cx->samples, wp, HASH_ENTER, &found);

			if (!found)
			{
				s->n = s->cap = 0;
				s->cust = NULL;
				s->w = NULL;
			}
		}
	}
	for (long i = 0; i < nv;)
	{
		long		j = i;
		LikeSample *s = hash_search(cx->samples, &v[i].p, HASH_FIND, NULL);

		while (j < nv && v[j].p == v[i].p)
		{
			if (j - i < cx->sample)
			{
				like_sample_add(cx, s, v[j].c, (double) v[j].w);
				cx->sample_rows++;
				cx->sample_rows_read++;
			}
			j++;
		}
		i = j;
	}
	MemoryContextSwitchTo(old);
	cx->sample_scans++;
	pfree(v);
	hash_destroy(want);
}

/*
 * like_chunk: whole lists of the customers ids[0..n) (sorted, distinct),
 * whose profile products are pids[poff[i]..poff[i+1]).  With cx->patch,
 * every candidate a outside cx->full also gets (c, sim) gathered.
 *
 * The samples a chunk reads are kept for the next chunks of the call (the
 * lists computed whole share most of their products: the changed
 * customers', then the lists that must be redone), up to the rows one
 * chunk can read (LIKE_CHUNK_PRODUCTS samples of shop.reco_like_sample);
 * past that they are dropped and read again as needed, so memory stays
 * within twice what one chunk held before.
 */
static void
like_chunk(LikeCtx *cx, const int64 *ids, int n, const int64 *pids, const int *poff)
{
	MemoryContext work = AllocSetContextCreate(CurrentMemoryContext, "shop like chunk",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(work);
	int64	   *prods;
	int			nprods = 0;
	double	   *acc;
	int32	   *touched;
	LikeEntry  *vec;
	uint64		nrows;
	Datum		args[2];
	int			i;

	if (cx->scxt == NULL || cx->sample_rows > (long) LIKE_CHUNK_PRODUCTS * cx->sample)
		like_samples_reset(cx);

	/* the distinct products of the chunk not read yet */
	prods = palloc(sizeof(int64) * Max(poff[n] - poff[0], 1));
	MemoryContextSwitchTo(cx->scxt);
	for (i = 0; i < n; i++)
		for (int j = poff[i]; j < poff[i + 1]; j++)
		{
			bool		found;
			LikeSample *s = hash_search(cx->samples, &pids[j], HASH_ENTER, &found);

			if (!found)
			{
				s->n = s->cap = 0;
				s->cust = NULL;
				s->w = NULL;
				prods[nprods++] = pids[j];
			}
		}

	/* their samples */
	if (nprods > 0)
	{
		MemoryContextSwitchTo(old);
		args[0] = ShopInt8Array(prods, nprods);
		args[1] = Int32GetDatum(cx->sample);
		nrows = ShopExec(&st_like_samples, args, NULL, 0);
		MemoryContextSwitchTo(cx->scxt);
		for (uint64 r = 0; r < nrows; r++)
		{
			int64		pid = ShopColInt(r, 1, 0);
			int64		c = ShopColInt(r, 2, 0);
			double		w = ShopColFloat(r, 3, 0);
			LikeSample *s = hash_search(cx->samples, &pid, HASH_FIND, NULL);

			if (s == NULL)
				elog(ERROR, "sample of an unknown product " INT64_FORMAT, pid);
			like_sample_add(cx, s, c, w);
		}
		cx->sample_rows += nrows;
		cx->sample_rows_read += nrows;
		SPI_freetuptable(SPI_tuptable);
	}
	MemoryContextSwitchTo(work);

	acc = palloc0(sizeof(double) * Max(cx->ncust, 1));
	touched = palloc(sizeof(int32) * Max(cx->ncust, 1));
	vec = palloc(sizeof(LikeEntry) * Max(cx->ncust, 1));

	for (i = 0; i < n; i++)
	{
		int64		c = ids[i];
		LikeCustIdx *ci = hash_search(cx->cidx, &c, HASH_FIND, NULL);
		int			ntouched = 0;

		CHECK_FOR_INTERRUPTS();
		if (ci != NULL)
		{
			for (int j = poff[i]; j < poff[i + 1]; j++)
			{
				LikeSample *s = hash_search(cx->samples, &pids[j], HASH_FIND, NULL);
				double		wc = -1;

				for (int m = 0; m < s->n; m++)
					if (s->cust[m] == ci->idx)
					{
						wc = s->w[m];
						break;
					}
				if (wc < 0)
					continue;	/* c is not in this product's sample */
				for (int m = 0; m < s->n; m++)
				{
					int32		b = s->cust[m];

					if (b == ci->idx)
						continue;
					if (acc[b] == 0)
						touched[ntouched++] = b;
					acc[b] += wc * s->w[m];
				}
			}
		}
		for (int m = 0; m < ntouched; m++)
		{
			int32		b = touched[m];

			vec[m].id = cx->cust[b];
			vec[m].score = like_round(acc[b]);
			acc[b] = 0;
			if (cx->patch && !cx->infull[b])
			{
				/*
				 * one hash lookup per candidate per call, not per entry
				 * (dynahash entries do not move)
				 */
				MemoryContextSwitchTo(cx->cxt);
				if (cx->gptr[b] == NULL)
					cx->gptr[b] = like_list(cx->gather, vec[m].id);
				like_push(cx->gptr[b], c, vec[m].score);
				MemoryContextSwitchTo(work);
			}
		}
		ntouched = like_top(vec, ntouched, cx->top);
		MemoryContextSwitchTo(cx->cxt);
		like_store(cx, c, vec, ntouched);
		MemoryContextSwitchTo(work);
		cx->n_whole++;
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(work);
}

/*
 * like_whole: whole lists of the customers ids[0..n) (sorted, distinct), in
 * chunks of at most LIKE_CHUNK_PRODUCTS profile products.
 */
static void
like_whole(LikeCtx *cx, const int64 *ids, int n)
{
	int64	   *pids;
	int		   *poff;
	int64	   *pc;
	uint64		nrows;
	Datum		args[1];
	int			i,
				start;

	if (n == 0)
		return;
	args[0] = ShopInt8Array(ids, n);
	nrows = ShopExec(&st_like_profiles, args, NULL, 0);
	pids = palloc(sizeof(int64) * Max(nrows, 1));
	pc = palloc(sizeof(int64) * Max(nrows, 1));
	for (uint64 r = 0; r < nrows; r++)
	{
		pc[r] = ShopColInt(r, 1, 0);
		pids[r] = ShopColInt(r, 2, 0);
	}
	SPI_freetuptable(SPI_tuptable);
	/* rows are in customer order, as ids: poff[i] is where ids[i]'s start */
	poff = palloc(sizeof(int) * (n + 1));
	{
		uint64		r = 0;

		for (i = 0; i < n; i++)
		{
			while (r < nrows && pc[r] < ids[i])
				r++;
			poff[i] = (int) r;
			while (r < nrows && pc[r] == ids[i])
				r++;
		}
		poff[n] = (int) r;
	}
	/* many samples to read: one scan of the table (like_preload) */
	like_preload(cx, pids, (int) nrows);
	/*
	 * rows hold only the ids' rows, in order: ids[i]'s end at poff[i + 1].
	 * A chunk takes customers while their distinct products number less
	 * than LIKE_CHUNK_PRODUCTS (in a dense shop, everyone in one chunk).
	 */
	start = 0;
	while (start < n)
	{
		HTAB	   *seen = like_hash("shop like chunk products", sizeof(int64), CurrentMemoryContext);
		int			end = start;

		while (end < n && (end == start || hash_get_num_entries(seen) < LIKE_CHUNK_PRODUCTS))
		{
			for (int j = poff[end]; j < poff[end + 1]; j++)
				(void) hash_search(seen, &pids[j], HASH_ENTER, NULL);
			end++;
		}
		hash_destroy(seen);
		like_chunk(cx, ids + start, end - start, pids, poff + start);
		start = end;
	}
	pfree(pids);
	pfree(pc);
	pfree(poff);
}

/* ids of an int8[] argument, sorted and distinct; NULL elements skipped */
static int64 *
like_ids(ArrayType *a, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	int			ne,
				k = 0;
	int64	   *ids;

	deconstruct_array(a, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &ne);
	ids = palloc(sizeof(int64) * Max(ne, 1));
	for (int i = 0; i < ne; i++)
		if (!nulls[i])
			ids[k++] = DatumGetInt64(elems[i]);
	qsort(ids, k, sizeof(int64), like_cmp_int64);
	if (k > 1)
	{
		int			m = 1;

		for (int i = 1; i < k; i++)
			if (ids[i] != ids[m - 1])
				ids[m++] = ids[i];
		k = m;
	}
	*n = k;
	return ids;
}

/*
 * shop._like_lists(full bigint[], others bigint[]) -> jsonb
 *
 * Computes the lists of `full` whole and, unless `others` is NULL, patches
 * the lists of `others` and of every candidate of `full` (see the top of
 * the file); writes the lists that differ from the stored ones.  Returns
 * {"customers_scored": lists of `full` computed whole, "customers_patched":
 * lists patched, "customers_redone": lists that could not be patched and
 * were computed whole, "customers_changed": lists written,
 * "neighbour_rows_written", "sample_rows_read": sample rows read,
 * "samples_reset": times the samples kept were dropped (see like_chunk)}.
 * The caller holds the recommendations lock and has written the new profiles.
 */
Datum
shop_like_lists(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	LikeCtx		cx;
	int64	   *full;
	int			nfull;
	int64	   *others = NULL;
	int			nothers = 0;
	int64	   *aff;
	int			naff = 0;
	int64	   *redo;
	int			nredo = 0;
	HTAB	   *oldl;
	HASH_SEQ_STATUS seq;
	LikeList   *l;
	uint64		nrows;
	Datum		args[3];
	int64	   *changed;
	int			nchanged = 0;
	long		nwritten = 0;
	JsonbParseState *state = NULL;
	JsonbValue *res;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("argument full must not be null")));

	memset(&cx, 0, sizeof(cx));
	cx.cxt = AllocSetContextCreate(caller, "shop like lists", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cx.cxt);
	cx.sample = shop_reco_like_sample;
	cx.top = shop_reco_like_neighbours;
	cx.patch = !PG_ARGISNULL(1);
	cx.full = like_hash("shop like full", sizeof(LikeList), cx.cxt);
	cx.gather = like_hash("shop like gathered", sizeof(LikeList), cx.cxt);
	cx.lists = like_hash("shop like new lists", sizeof(LikeList), cx.cxt);
	full = like_ids(PG_GETARG_ARRAYTYPE_P(0), &nfull);
	for (int i = 0; i < nfull; i++)
		like_list(cx.full, full[i]);
	if (cx.patch)
		others = like_ids(PG_GETARG_ARRAYTYPE_P(1), &nothers);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	like_whole(&cx, full, nfull);

	/* the lists to patch: others and every gathered candidate, not in full */
	aff = palloc(sizeof(int64) * (nothers + hash_get_num_entries(cx.gather) + 1));
	for (int i = 0; i < nothers; i++)
		if (hash_search(cx.full, &others[i], HASH_FIND, NULL) == NULL)
			aff[naff++] = others[i];
	hash_seq_init(&seq, cx.gather);
	while ((l = hash_seq_search(&seq)) != NULL)
		aff[naff++] = l->customer_id;
	qsort(aff, naff, sizeof(int64), like_cmp_int64);
	if (naff > 1)
	{
		int			m = 1;

		for (int i = 1; i < naff; i++)
			if (aff[i] != aff[m - 1])
				aff[m++] = aff[i];
		naff = m;
	}

	/* the stored lists of full and aff */
	oldl = like_hash("shop like old lists", sizeof(LikeList), cx.cxt);
	{
		int64	   *all = palloc(sizeof(int64) * (nfull + naff + 1));

		memcpy(all, full, sizeof(int64) * nfull);
		memcpy(all + nfull, aff, sizeof(int64) * naff);
		if (nfull + naff > 0)
		{
			args[0] = ShopInt8Array(all, nfull + naff);
			nrows = ShopExec(&st_like_old, args, NULL, 0);
			for (uint64 r = 0; r < nrows; r++)
			{
				l = like_list(oldl, ShopColInt(r, 1, 0));
				like_push(l, ShopColInt(r, 2, 0), (float4) ShopColFloat(r, 3, 0));
			}
			SPI_freetuptable(SPI_tuptable);
			/*
			 * ranked here, list by list: an ORDER BY made the executor
			 * sort a million rows (an incremental sort per customer)
			 */
			hash_seq_init(&seq, oldl);
			while ((l = hash_seq_search(&seq)) != NULL)
				qsort(l->e, l->n, sizeof(LikeEntry), like_cmp_entry);
		}
		pfree(all);
	}

	/* patch */
	redo = palloc(sizeof(int64) * (naff + 1));
	for (int i = 0; i < naff; i++)
	{
		int64		a = aff[i];
		LikeList   *o = hash_search(oldl, &a, HASH_FIND, NULL);
		LikeList   *g = hash_search(cx.gather, &a, HASH_FIND, NULL);
		LikeList	k = {0};

		CHECK_FOR_INTERRUPTS();
		if (o != NULL)
			for (int m = 0; m < o->n; m++)
				if (hash_search(cx.full, &o->e[m].id, HASH_FIND, NULL) == NULL)
					like_push(&k, o->e[m].id, o->e[m].score);
		if (g != NULL)
			for (int m = 0; m < g->n; m++)
				like_push(&k, g->e[m].id, g->e[m].score);
		qsort(k.e, k.n, sizeof(LikeEntry), like_cmp_entry);
		if (o != NULL && o->n >= cx.top)
		{
			/* unknown candidates rank below the stored list's last entry */
			LikeEntry  *last = &o->e[o->n - 1];
			int			known = 0;

			for (int m = 0; m < k.n; m++)
				if (like_cmp_entry(&k.e[m], last) <= 0)
					known++;
			if (known < cx.top)
			{
				redo[nredo++] = a;
				if (k.e)
					pfree(k.e);
				continue;
			}
		}
		like_store(&cx, a, k.e, k.n);
		cx.n_patched++;
		if (k.e)
			pfree(k.e);
	}
	/* lists that lost entries from a full list: whole */
	cx.patch = false;
	like_whole(&cx, redo, nredo);
	cx.n_whole -= nredo;

	/* write the lists that moved */
	changed = palloc(sizeof(int64) * (hash_get_num_entries(cx.lists) + 1));
	hash_seq_init(&seq, cx.lists);
	while ((l = hash_seq_search(&seq)) != NULL)
	{
		LikeList   *o = hash_search(oldl, &l->customer_id, HASH_FIND, NULL);
		int			on = o ? o->n : 0;
		bool		same = (on == l->n);

		for (int m = 0; same && m < l->n; m++)
			same = (o->e[m].id == l->e[m].id && o->e[m].score == l->e[m].score);
		if (!same)
			changed[nchanged++] = l->customer_id;
	}
	if (nchanged > 0)
	{
		LikeRows	del = {0},
					upd = {0},
					ins = {0};

		/*
		 * Entry by entry: a list that moved usually moved in a few entries
		 * (the changed customers' similarities), so only those rows are
		 * written; a moved score is an update of one row (HOT: the score is
		 * in no index).
		 */
		qsort(changed, nchanged, sizeof(int64), like_cmp_int64);
		for (int i = 0; i < nchanged; i++)
		{
			LikeList   *o = hash_search(oldl, &changed[i], HASH_FIND, NULL);
			LikeEntry  *oe = NULL,
					   *ne;
			int			on = o ? o->n : 0,
						a = 0,
						b = 0;

			l = hash_search(cx.lists, &changed[i], HASH_FIND, NULL);
			/* both sides by neighbour id */
			if (on > 0)
			{
				oe = palloc(sizeof(LikeEntry) * on);
				memcpy(oe, o->e, sizeof(LikeEntry) * on);
				qsort(oe, on, sizeof(LikeEntry), like_cmp_entry_id);
			}
			ne = palloc(sizeof(LikeEntry) * Max(l->n, 1));
			if (l->n > 0)
				memcpy(ne, l->e, sizeof(LikeEntry) * l->n);
			qsort(ne, l->n, sizeof(LikeEntry), like_cmp_entry_id);
			while (a < on || b < l->n)
			{
				if (b >= l->n || (a < on && oe[a].id < ne[b].id))
				{
					like_row(&del, changed[i], oe[a].id, 0);
					a++;
				}
				else if (a >= on || ne[b].id < oe[a].id)
				{
					like_row(&ins, changed[i], ne[b].id, ne[b].score);
					b++;
				}
				else
				{
					if (oe[a].score != ne[b].score)
						like_row(&upd, changed[i], ne[b].id, ne[b].score);
					a++;
					b++;
				}
			}
			if (oe)
				pfree(oe);
			pfree(ne);
		}
		nwritten = like_flush(&st_like_delete, &del, false) +
			like_flush(&st_like_update, &upd, true) +
			like_flush(&st_like_insert, &ins, true);
	}
	SPI_finish();

	MemoryContextSwitchTo(caller);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	{
		const char *keys[] = {"customers_scored", "customers_patched", "customers_redone",
			"customers_changed", "neighbour_rows_written", "sample_rows_read", "samples_reset",
		"sample_scans"};
		long		vals[] = {cx.n_whole, cx.n_patched, nredo, nchanged, nwritten,
		cx.sample_rows_read, cx.sample_resets, cx.sample_scans};

		for (int i = 0; i < lengthof(keys); i++)
		{
			JsonbValue	k,
						v;

			k.type = jbvString;
			k.val.string.val = (char *) keys[i];
			k.val.string.len = strlen(keys[i]);
			pushJsonbValue(&state, WJB_KEY, &k);
			v.type = jbvNumeric;
			v.val.numeric = int64_to_numeric(vals[i]);
			pushJsonbValue(&state, WJB_VALUE, &v);
		}
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	MemoryContextDelete(cx.cxt);
	PG_RETURN_POINTER(JsonbValueToJsonb(res));
}

/* a (product, customer) sample row */
typedef struct LikePair
{
	int64		p;
	int64		c;
} LikePair;

static int
like_cmp_pair(const void *a, const void *b)
{
	const LikePair *x = a;
	const LikePair *y = b;

	if (x->p != y->p)
		return x->p < y->p ? -1 : 1;
	return x->c < y->c ? -1 : (x->c > y->c ? 1 : 0);
}

/* sorts specialised for the pairs and the ids (no call per comparison) */
#define ST_SORT like_sort_pairs
#define ST_ELEMENT_TYPE LikePair
#define ST_COMPARE(a, b) like_cmp_pair(a, b)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

#define ST_SORT like_sort_int64
#define ST_ELEMENT_TYPE int64
#define ST_COMPARE(a, b) (*(a) < *(b) ? -1 : (*(a) > *(b) ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/* the rows (p[i], c[i]) sorted by product, then customer */
static LikePair *
like_pairs(const int64 *p, const int64 *c, int n)
{
	LikePair   *v = palloc(sizeof(LikePair) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		v[i].p = p[i];
		v[i].c = c[i];
	}
	like_sort_pairs(v, n);
	return v;
}

/* whether c is in the sorted set cs[0..n) */
static inline bool
like_in(const int64 *cs, int n, int64 c)
{
	int			lo = 0,
				hi = n;

	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (cs[mid] < c)
			lo = mid + 1;
		else if (cs[mid] > c)
			hi = mid;
		else
			return true;
	}
	return false;
}

/* the elements of an int8[] (what: its name in the error on a null) */
static int64 *
like_int8s(ArrayType *a, int *n, const char *what)
{
	Datum	   *elems;
	bool	   *nulls;
	int			ne;
	int64	   *v;

	deconstruct_array(a, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &ne);
	v = palloc(sizeof(int64) * Max(ne, 1));
	for (int i = 0; i < ne; i++)
	{
		if (nulls[i])
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("%s must not hold nulls", what)));
		v[i] = DatumGetInt64(elems[i]);
	}
	*n = ne;
	return v;
}

/* the distinct values of v[0..n), sorted, as an int8[] */
static Datum
like_set_array(int64 *v, int n)
{
	int			m = 0;

	like_sort_int64(v, n);
	for (int i = 0; i < n; i++)
		if (m == 0 || v[i] != v[m - 1])
			v[m++] = v[i];
	return ShopInt8Array(v, m);
}

/*
 * shop._like_slice(cs, old_pids, old_cids, new_pids, new_cids,
 *					OUT flipped bigint[], OUT lists bigint[], OUT est bigint)
 *
 * For one slice of changed customers cs and the samples (product,
 * customer) of their products before and after their profiles were
 * written: the customers outside cs who entered or left a sample
 * (flipped), every customer of a sample (before or after) that holds one
 * of cs (lists: whose list can move), and the number of similarities a
 * whole computation of cs gathers for patching, at most (est: per product,
 * its new sample's size times the customers of cs in it).  What the SQL of
 * shop._like_refresh computed with set operations over the sample rows:
 * both versions sorted by (product, customer) and walked together, product
 * by product, cs sorted for membership (no hash table: a slice's samples
 * are hundreds of thousands of rows).
 */
Datum
shop_like_slice(PG_FUNCTION_ARGS)
{
	int			ncs,
				nop,
				noc,
				nnp,
				nnc;
	int64	   *cs,
			   *op,
			   *oc,
			   *np,
			   *nc;
	LikePair   *ov,
			   *nv;
	int64	   *flipped,
			   *lists;
	int			nflipped = 0,
				nlists = 0;
	int64		est = 0;
	int			a = 0,
				b = 0;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	for (int i = 0; i < 5; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("argument %d must not be null", i + 1)));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	cs = like_int8s(PG_GETARG_ARRAYTYPE_P(0), &ncs, "sample arrays");
	op = like_int8s(PG_GETARG_ARRAYTYPE_P(1), &nop, "sample arrays");
	oc = like_int8s(PG_GETARG_ARRAYTYPE_P(2), &noc, "sample arrays");
	np = like_int8s(PG_GETARG_ARRAYTYPE_P(3), &nnp, "sample arrays");
	nc = like_int8s(PG_GETARG_ARRAYTYPE_P(4), &nnc, "sample arrays");
	if (nop != noc || nnp != nnc)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("sample arrays differ in length")));
	like_sort_int64(cs, ncs);
	ov = like_pairs(op, oc, nop);
	nv = like_pairs(np, nc, nnp);
	pfree(op);
	pfree(oc);
	pfree(np);
	pfree(nc);

	flipped = palloc(sizeof(int64) * (nop + nnp + 1));
	lists = palloc(sizeof(int64) * (nop + nnp + 1));
	/* product by product: rows ov[a..ae) and nv[b..be) */
	while (a < nop || b < nnp)
	{
		int64		p;
		int			ae = a,
					be = b;
		bool		hit = false;
		int64		n_slice = 0;
		int			i,
					j;

		CHECK_FOR_INTERRUPTS();
		if (b >= nnp || (a < nop && ov[a].p < nv[b].p))
			p = ov[a].p;
		else
			p = nv[b].p;
		while (ae < nop && ov[ae].p == p)
		{
			if (like_in(cs, ncs, ov[ae].c))
				hit = true;
			ae++;
		}
		while (be < nnp && nv[be].p == p)
		{
			if (like_in(cs, ncs, nv[be].c))
			{
				hit = true;
				n_slice++;
			}
			be++;
		}
		est += (int64) (be - b) * n_slice;
		/* both sorted by customer: rows in one version only flipped */
		i = a;
		j = b;
		while (i < ae || j < be)
		{
			int64		c;

			if (j >= be || (i < ae && ov[i].c < nv[j].c))
			{
				c = ov[i++].c;
				if (!like_in(cs, ncs, c))
					flipped[nflipped++] = c;
			}
			else if (i >= ae || nv[j].c < ov[i].c)
			{
				c = nv[j++].c;
				if (!like_in(cs, ncs, c))
					flipped[nflipped++] = c;
			}
			else
			{
				c = ov[i].c;
				i++;
				j++;
			}
			if (hit)
				lists[nlists++] = c;
		}
		a = ae;
		b = be;
	}

	values[0] = like_set_array(flipped, nflipped);
	values[1] = like_set_array(lists, nlists);
	values[2] = Int64GetDatum(est);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* a sample row of one product, before or after a slice's profiles moved */
typedef struct LikeSRow
{
	int64		p;
	int64		h;
	int64		c;
	bool		old;			/* from the sample before (else a new row) */
} LikeSRow;

static inline int
like_cmp_srow(const LikeSRow *x, const LikeSRow *y)
{
	if (x->p != y->p)
		return x->p < y->p ? -1 : 1;
	if (x->h != y->h)
		return x->h < y->h ? -1 : 1;
	if (x->c != y->c)
		return x->c < y->c ? -1 : 1;
	/* the new row of a customer first, then its old one */
	return (int) x->old - (int) y->old;
}

#define ST_SORT like_sort_srows
#define ST_ELEMENT_TYPE LikeSRow
#define ST_COMPARE(a, b) like_cmp_srow(a, b)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * shop._like_samples_after(cs, old_pids, old_cids, new_c, new_p, new_h, k,
 *							OUT pids bigint[], OUT cids bigint[],
 *							OUT reread bigint[])
 *
 * The samples after a slice's profiles were rewritten, derived from the
 * samples before (old_pids, old_cids: what shop._like_samples read for the
 * slice's products) and the slice's new profile rows (new_c, new_p, new_h)
 * instead of read again through the index.  Per product: the old sample
 * minus the rows of customers of cs, plus the new rows, by (h, customer),
 * the first k.  That is the sample a read gives unless the old sample was
 * full (k rows: customers past it exist, unseen) and lost a customer of
 * cs: then the first unseen customer may enter, so the product is named
 * in reread, for the caller to read (and it is left out of pids/cids).  A
 * customer's h depends on (customer, product) only, so a customer of cs
 * who still holds the product keeps their place.
 */
Datum
shop_like_samples_after(PG_FUNCTION_ARGS)
{
	int			ncs,
				nop,
				noc,
				nnc,
				nnp,
				nnh;
	int64	   *cs,
			   *op,
			   *oc,
			   *nc,
			   *np,
			   *nh;
	int			k;
	LikeSRow   *v;
	int			nv = 0;
	int64	   *outp,
			   *outc,
			   *reread;
	int			nout = 0,
				nreread = 0;
	int			a = 0;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	for (int i = 0; i < 7; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("argument %d must not be null", i + 1)));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	cs = like_int8s(PG_GETARG_ARRAYTYPE_P(0), &ncs, "sample arrays");
	op = like_int8s(PG_GETARG_ARRAYTYPE_P(1), &nop, "sample arrays");
	oc = like_int8s(PG_GETARG_ARRAYTYPE_P(2), &noc, "sample arrays");
	nc = like_int8s(PG_GETARG_ARRAYTYPE_P(3), &nnc, "sample arrays");
	np = like_int8s(PG_GETARG_ARRAYTYPE_P(4), &nnp, "sample arrays");
	nh = like_int8s(PG_GETARG_ARRAYTYPE_P(5), &nnh, "sample arrays");
	k = PG_GETARG_INT32(6);
	if (nop != noc || nnc != nnp || nnc != nnh)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("sample arrays differ in length")));
	if (k < 1)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("sample size must be at least 1")));
	like_sort_int64(cs, ncs);

	v = palloc(sizeof(LikeSRow) * ((Size) nop + nnc + 1));
	for (int i = 0; i < nop; i++)
	{
		v[nv].p = op[i];
		v[nv].c = oc[i];
		v[nv].h = DatumGetInt64(DirectFunctionCall2(hashint8extended,
													Int64GetDatum(oc[i]),
													Int64GetDatum(op[i])));
		v[nv].old = true;
		nv++;
	}
	for (int i = 0; i < nnc; i++)
	{
		v[nv].p = np[i];
		v[nv].c = nc[i];
		v[nv].h = nh[i];
		v[nv].old = false;
		nv++;
	}
	pfree(op);
	pfree(oc);
	pfree(np);
	pfree(nc);
	pfree(nh);
	like_sort_srows(v, nv);

	outp = palloc(sizeof(int64) * (nv + 1));
	outc = palloc(sizeof(int64) * (nv + 1));
	reread = palloc(sizeof(int64) * (nv + 1));
	/* product by product: rows v[a..e) */
	while (a < nv)
	{
		int64		p = v[a].p;
		int			e = a,
					nold = 0,
					start = nout;
		bool		lost = false;

		CHECK_FOR_INTERRUPTS();
		while (e < nv && v[e].p == p)
		{
			if (v[e].old)
				nold++;
			e++;
		}
		for (int i = a; i < e; i++)
		{
			if (v[i].old && like_in(cs, ncs, v[i].c))
			{
				/* kept when the new row of the same customer precedes it */
				if (!(i > a && !v[i - 1].old && v[i - 1].c == v[i].c))
					lost = true;
				continue;
			}
			if (nout - start < k)
			{
				outp[nout] = p;
				outc[nout] = v[i].c;
				nout++;
			}
		}
		if (lost && nold >= k)
		{
			nout = start;
			reread[nreread++] = p;
		}
		a = e;
	}

	values[0] = ShopInt8Array(outp, nout);
	values[1] = ShopInt8Array(outc, nout);
	values[2] = ShopInt8Array(reread, nreread);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* where a product's rows start in a sorted LikeItemRow array */
typedef struct LikeRange
{
	int64		p;				/* hash key */
	long		start;
	long		n;
} LikeRange;

/*
 * shop._like_samples(ps bigint[], OUT pids bigint[], OUT cids bigint[])
 *
 * The samples of the products ps, as (product, customer) pairs: per
 * element of ps in its order, the first shop.reco_like_sample customers
 * holding it by (h, customer_id); NULL arrays when there is none.  The
 * refresh reads the samples of each slice's products before writing its
 * profiles; a slice of thousands of customers needs the samples of most
 * products of a small, dense shop, which one scan of shop.customer_item
 * reads for less than an index range per product (like_scan decides, as
 * for shop._like_lists).  Otherwise the statement of the SQL function this
 * replaces reads them.
 */
Datum
shop_like_samples(PG_FUNCTION_ARGS)
{
	int			k = shop_reco_like_sample;
	int			nps;
	int64	   *ps;
	HTAB	   *want;
	LikeItemRow *v;
	long		nv;
	int64	   *outp = NULL,
			   *outc = NULL;
	long		nout = 0,
				cap = 0;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	ps = like_int8s(PG_GETARG_ARRAYTYPE_P(0), &nps, "product ids");
	want = like_hash("shop like wanted", sizeof(int64), CurrentMemoryContext);
	for (int i = 0; i < nps; i++)
		(void) hash_search(want, &ps[i], HASH_ENTER, NULL);
	v = like_scan(want, (long) LIKE_CHUNK_PRODUCTS * k, &nv);
	if (v != NULL)
	{
		HTAB	   *ranges = like_hash("shop like ranges", sizeof(LikeRange), CurrentMemoryContext);

		for (long i = 0; i < nv;)
		{
			long		j = i;
			LikeRange  *r = hash_search(ranges, &v[i].p, HASH_ENTER, NULL);

			while (j < nv && v[j].p == v[i].p)
				j++;
			r->start = i;
			r->n = Min(j - i, (long) k);
			i = j;
		}
		/* per element of ps (a product named twice is listed twice) */
		for (int i = 0; i < nps; i++)
		{
			LikeRange  *r = hash_search(ranges, &ps[i], HASH_FIND, NULL);

			if (r != NULL)
				cap += r->n;
		}
		outp = palloc(sizeof(int64) * Max(cap, 1));
		outc = palloc(sizeof(int64) * Max(cap, 1));
		for (int i = 0; i < nps; i++)
		{
			LikeRange  *r = hash_search(ranges, &ps[i], HASH_FIND, NULL);

			if (r == NULL)
				continue;
			for (long m = 0; m < r->n; m++)
			{
				outp[nout] = ps[i];
				outc[nout] = v[r->start + m].c;
				nout++;
			}
		}
	}
	else if (nps > 0)
	{
		Datum		args[2];
		uint64		nrows;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		args[0] = ShopInt8Array(ps, nps);
		args[1] = Int32GetDatum(k);
		nrows = ShopExec(&st_like_samples, args, NULL, 0);
		outp = SPI_palloc(sizeof(int64) * Max(nrows, 1));
		outc = SPI_palloc(sizeof(int64) * Max(nrows, 1));
		for (uint64 r = 0; r < nrows; r++)
		{
			outp[r] = ShopColInt(r, 1, 0);
			outc[r] = ShopColInt(r, 2, 0);
		}
		nout = (long) nrows;
		SPI_freetuptable(SPI_tuptable);
		SPI_finish();
	}
	if (nout == 0)
		nulls[0] = nulls[1] = true;
	else
	{
		values[0] = ShopInt8Array(outp, (int) nout);
		values[1] = ShopInt8Array(outc, (int) nout);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* ---------------------------------------------------------------------
 * shop._like_refresh_lists(cs bigint[], new_c bigint[], new_p bigint[],
 *							new_w real[], new_h bigint[]) -> jsonb
 *
 * The refresh of a shop whose profiles fit in memory (at most
 * shop.reco_like_refresh_rows rows of shop.customer_item; NULL, having
 * written nothing, otherwise: the caller then takes the slices and
 * shop._like_lists).  cs are the customers whose profiles the refresh
 * recomputed, new_* their new profile rows; shop.customer_item still holds
 * the old ones (the caller writes the new ones after this call).
 *
 * The idea is the rebuild's shop._rebuild_like_lists (src/recorebuild.c),
 * applied to the customers whose list can move:
 *	 - one scan of shop.customer_item; the rows of cs tagged old, their new
 *	   rows added tagged new; all sorted by (product_id, h, customer_id);
 *	 - per product, its sample before (the first shop.reco_like_sample
 *	   rows not tagged new) and after (not tagged old): when either holds a
 *	   customer of cs, every customer of both can see a similarity move
 *	   (a weight of cs, or a sample that changed for them); no other
 *	   similarity moves (docs/recommendations.md, "Incremental refresh");
 *	 - the lists of those customers and of cs computed whole from the new
 *	   rows, the sums added in the rebuild's order (a customer's samples
 *	   in product id order), rounded by like_round and cut to the best
 *	   shop.reco_like_neighbours (like_customer_list, in id order):
 *	   the lists a rebuild writes, to the bit;
 *	 - their stored lists read back, and of the lists that differ only the
 *	   rows that moved written (as shop._like_lists writes), deletes and
 *	   updates addressed by the ctid read with the rows (the score
 *	   updates by heap_update on that ctid, recowrite.c, unless the table
 *	   has a trigger).
 * (Writing the profiles here too, only the rows that moved, by ctid, did
 * not pay: a weight moves in 110,000 of 133,000 rows at 100,000 products,
 * and with full pages those updates are not HOT: 6.8-7.2 s of backend
 * CPU against 6.4-6.6 s for the caller's DELETE and INSERT.)
 * Every sample is read once, from memory; no list is patched.
 * Memory: about 60 bytes per profile row and 10 per customer, plus the
 * lists of the customers computed (read and new).
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(shop_like_refresh_lists);

typedef struct LikeMemRow
{
	int64		p;
	int64		h;
	int64		c;
	float4		w;
	int32		ci;				/* the customer's dense index */
	int32		tag;			/* 0 kept, 1 a changed customer's old row, 2 new */
} LikeMemRow;
StaticAssertDecl(offsetof(LikeMemRow, p) == offsetof(LikeProfileRow, p) &&
				 offsetof(LikeMemRow, h) == offsetof(LikeProfileRow, h) &&
				 offsetof(LikeMemRow, c) == offsetof(LikeProfileRow, c) &&
				 offsetof(LikeMemRow, w) == offsetof(LikeProfileRow, w) &&
				 offsetof(LikeMemRow, ci) == offsetof(LikeProfileRow, ci),
				 "LikeMemRow starts with LikeProfileRow's fields (shop.h)");

#define ST_SORT like_sort_memrows
#define ST_ELEMENT_TYPE LikeMemRow
#define ST_COMPARE(a, b) ((a)->p != (b)->p ? ((a)->p < (b)->p ? -1 : 1) : \
						  (a)->h != (b)->h ? ((a)->h < (b)->h ? -1 : 1) : \
						  (a)->c != (b)->c ? ((a)->c < (b)->c ? -1 : 1) : \
						  ((a)->tag < (b)->tag ? -1 : ((a)->tag > (b)->tag ? 1 : 0)))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/* the elements of a real[] (what: its name in the error on a null) */
static float4 *
like_float4s(ArrayType *a, int *n, const char *what)
{
	Datum	   *elems;
	bool	   *nulls;
	int			ne;
	float4	   *v;

	deconstruct_array(a, FLOAT4OID, 4, true, TYPALIGN_INT, &elems, &nulls, &ne);
	v = palloc(sizeof(float4) * Max(ne, 1));
	for (int i = 0; i < ne; i++)
	{
		if (nulls[i])
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("%s must not hold nulls", what)));
		v[i] = DatumGetFloat4(elems[i]);
	}
	*n = ne;
	return v;
}

/* a stored row of a list, with where it is */
typedef struct LikeOldRow
{
	int64		c;
	int64		nb;
	float4		s;
	ItemPointerData tid;
} LikeOldRow;

#define ST_SORT like_sort_oldrows
#define ST_ELEMENT_TYPE LikeOldRow
#define ST_COMPARE(a, b) ((a)->c != (b)->c ? ((a)->c < (b)->c ? -1 : 1) : \
						  (a)->nb < (b)->nb ? -1 : ((a)->nb > (b)->nb ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/* rows of shop.customer_neighbour to delete or update, with their ctid */
typedef struct LikeTidRows
{
	LikeRows	r;
	ItemPointerData *tid;
} LikeTidRows;

static void
like_tidrow(LikeTidRows *t, const ItemPointerData *tid, int64 c, int64 nb, float4 s)
{
	int			cap = t->r.cap;

	like_row(&t->r, c, nb, s);
	if (t->r.cap != cap)
		t->tid = t->tid ? repalloc(t->tid, sizeof(ItemPointerData) * t->r.cap)
			: palloc(sizeof(ItemPointerData) * t->r.cap);
	t->tid[t->r.n - 1] = *tid;
}

/*
 * runs st (by ctid and key) over the rows, LIKE_WRITE_BATCH at a time; a
 * batch that did not find every row runs again through by_key (by key
 * only: deleting or setting a score twice leaves the same row)
 */
static long
like_flush_tid(ShopStmt *st, ShopStmt *by_key, LikeTidRows *t, bool with_score)
{
	Datum		args[4];
	long		n = t->r.n;
	ShopTidWriter *tw;

	/*
	 * score updates and deletes: heap_update or heap_delete on each row's
	 * ctid (recowrite.c); the rows not found there, packed to the front, go
	 * to the statements below
	 */
	if (t->r.n > 0 &&
		(tw = ShopTidWriterOpen("customer_neighbour", "customer_id", "neighbour_id", NULL, "score")) != NULL)
	{
		int			left = 0;

		for (int i = 0; i < t->r.n; i++)
		{
			if ((i & 1023) == 0)
				CHECK_FOR_INTERRUPTS();
			if (with_score ? ShopTidWriterUpdate(tw, &t->tid[i], t->r.c[i], t->r.nb[i], 0, t->r.s[i])
				: ShopTidWriterDelete(tw, &t->tid[i], t->r.c[i], t->r.nb[i]))
				continue;
			t->tid[left] = t->tid[i];
			t->r.c[left] = t->r.c[i];
			t->r.nb[left] = t->r.nb[i];
			t->r.s[left] = t->r.s[i];
			left++;
		}
		ShopTidWriterClose(tw);
		t->r.n = left;
	}

	for (int i = 0; i < t->r.n; i += LIKE_WRITE_BATCH)
	{
		int			len = Min(LIKE_WRITE_BATCH, t->r.n - i);
		Datum	   *tids = palloc(sizeof(Datum) * len);

		for (int k = 0; k < len; k++)
			tids[k] = PointerGetDatum(&t->tid[i + k]);
		args[0] = PointerGetDatum(construct_array(tids, len, TIDOID, sizeof(ItemPointerData),
												  false, TYPALIGN_SHORT));
		args[1] = ShopInt8Array(t->r.c + i, len);
		args[2] = ShopInt8Array(t->r.nb + i, len);
		if (with_score)
			args[3] = ShopFloat4Array(t->r.s + i, len);
		if (ShopExec(st, args, NULL, 0) != (uint64) len)
			ShopExec(by_key, args + 1, NULL, 0);
		pfree(tids);
	}
	return n;
}

/* a changed customer's stored profile row, with where it is */
typedef struct LikeOldProf
{
	int64		c;
	int64		p;
	int64		h;
	float4		w;
	ItemPointerData tid;
} LikeOldProf;

#define ST_SORT like_sort_oldprof
#define ST_ELEMENT_TYPE LikeOldProf
#define ST_COMPARE(a, b) ((a)->c != (b)->c ? ((a)->c < (b)->c ? -1 : 1) : \
						  (a)->p < (b)->p ? -1 : ((a)->p > (b)->p ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/* a new profile row (of the arguments), for the merge with the stored ones */
typedef struct LikeNewProf
{
	int64		c;
	int64		p;
	int64		h;
	float4		w;
} LikeNewProf;

#define ST_SORT like_sort_newprof
#define ST_ELEMENT_TYPE LikeNewProf
#define ST_COMPARE(a, b) ((a)->c != (b)->c ? ((a)->c < (b)->c ? -1 : 1) : \
						  (a)->p < (b)->p ? -1 : ((a)->p > (b)->p ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * The stored rows of the lists aid[0..naid) (sorted), by one sequential
 * scan of shop.customer_neighbour, when they are a large share of the
 * table (a refresh of 10,000 orders at 100,000 products recomputes 50,700
 * of 51,000 lists: their 1,000,000 rows were read through the primary key,
 * 7% of the refresh's CPU); NULL (nothing read) when an index range per
 * list is cheaper, or when the table is not one to read plainly (row
 * level security: the statement applies it).
 */
static LikeOldRow *
like_old_rows_scan(const int64 *aid, int32 naid, int top, int64 *nold_out)
{
	Relation	rel;
	double		rows;
	Snapshot	snap;
	TableScanDesc scan;
	TupleTableSlot *slot;
	LikeOldRow *old;
	int64		n = 0,
				cap;

	rel = table_openrv(makeRangeVar("shop", "customer_neighbour", -1), AccessShareLock);
	rows = rel->rd_rel->reltuples;
	if (rows < 0)
		rows = (double) RelationGetNumberOfBlocks(rel) * 200;
	if ((double) naid * top * 4 < rows || RelationGetDescr(rel)->natts != 3 ||
		check_enable_rls(RelationGetRelid(rel), InvalidOid, true) == RLS_ENABLED)
	{
		table_close(rel, AccessShareLock);
		return NULL;
	}
	cap = Max((int64) naid * top, 1024);
	old = palloc(sizeof(LikeOldRow) * cap);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		n1,
					n2,
					n3;
		int64		c = DatumGetInt64(slot_getattr(slot, 1, &n1));

		if (n1 || !like_in(aid, naid, c))
			continue;
		if (n == cap)
		{
			cap *= 2;
			old = repalloc_huge(old, sizeof(LikeOldRow) * cap);
		}
		old[n].c = c;
		old[n].nb = DatumGetInt64(slot_getattr(slot, 2, &n2));
		old[n].s = DatumGetFloat4(slot_getattr(slot, 3, &n3));
		old[n].tid = slot->tts_tid;
		if (n2 || n3)
			continue;			/* (not null in the table) */
		n++;
		if ((n & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	*nold_out = n;
	return old;
}

static ShopStmt st_like_profile_delete = SHOP_STMT(SHOP_PLAN_GENERIC,
	"DELETE FROM shop.customer_item c WHERE c.customer_id = ANY ($1)", INT8ARRAYOID);
static ShopStmt st_like_profile_insert = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.customer_item (customer_id, product_id, weight, h)"
	" SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::real[], $4::bigint[])",
	INT8ARRAYOID, INT8ARRAYOID, FLOAT4ARRAYOID, INT8ARRAYOID);

/*
 * The new profiles written over the stored ones: a row whose weight is
 * the same stays, one whose weight moved is updated, the others deleted
 * or inserted, straight to the heap (recowrite.c).  Before, the caller
 * deleted every row of the changed customers and inserted their new
 * ones: 133,000 rows each way per refresh of 10,000 orders at 100,000
 * products, two statements and their index scans.  A customer one of
 * whose rows was not found where it was read (none should be: the
 * refresh lock is held) is written again by the two statements.  -1 when
 * the table cannot take these writes (a trigger, row level security, a
 * CHECK constraint ...): the caller's statements write every row then.
 */
/* (product_id, h, customer_id): customer_item_sample_idx's order */
static int
like_cmp_pending_sample(const void *a, const void *b)
{
	const ShopTidPending *x = a;
	const ShopTidPending *y = b;

	if (x->k2 != y->k2)
		return x->k2 < y->k2 ? -1 : 1;
	if (x->x != y->x)
		return x->x < y->x ? -1 : 1;
	if (x->k1 != y->k1)
		return x->k1 < y->k1 ? -1 : 1;
	return 0;
}

static long
like_write_profiles(LikeOldProf *op, int64 nop, LikeNewProf *np, int nnp)
{
	ShopTidWriter *tw;
	int64	   *redo = NULL;
	int			nredo = 0;
	long		written = 0;
	int64		o = 0;
	int			b = 0;

	tw = ShopTidWriterOpenInsert("customer_item", "customer_id", "product_id", NULL, "weight", "h");
	if (tw == NULL)
		return -1;
	if (!ShopTidWriterCanInsert(tw))
	{
		ShopTidWriterClose(tw);
		return -1;
	}
	/* the sample index's entries added at the close, in its key order */
	(void) ShopTidWriterDeferIndex(tw, "customer_item_sample_idx", like_cmp_pending_sample);
	like_sort_oldprof(op, nop);
	like_sort_newprof(np, nnp);
	redo = palloc(sizeof(int64) * Max(nop + nnp, 1));
	while (o < nop || b < nnp)
	{
		int			cmp;
		int64		c;
		bool		ok = true;

		if (o >= nop)
			cmp = 1;
		else if (b >= nnp)
			cmp = -1;
		else
			cmp = op[o].c != np[b].c ? (op[o].c < np[b].c ? -1 : 1)
				: op[o].p != np[b].p ? (op[o].p < np[b].p ? -1 : 1) : 0;
		if (cmp < 0)
		{
			c = op[o].c;
			ok = ShopTidWriterDelete(tw, &op[o].tid, op[o].c, op[o].p);
			written++;
			o++;
		}
		else if (cmp > 0)
		{
			c = np[b].c;
			if (nredo == 0 || redo[nredo - 1] != c)
				ShopTidWriterInsert(tw, np[b].c, np[b].p, 0, np[b].w, np[b].h);
			written++;
			b++;
		}
		else
		{
			c = op[o].c;
			if (op[o].w != np[b].w || op[o].h != np[b].h)
			{
				if (op[o].h == np[b].h)
					ok = ShopTidWriterUpdate(tw, &op[o].tid, c, op[o].p, 0, np[b].w);
				else
					ok = false;
				written++;
			}
			o++;
			b++;
		}
		if (!ok && (nredo == 0 || redo[nredo - 1] != c))
			redo[nredo++] = c;
		if ((written & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	ShopTidWriterClose(tw);
	if (nredo > 0)
	{
		Datum		args[4];
		int			m = 0;
		int64	   *rc = palloc(sizeof(int64) * Max(nnp, 1));
		int64	   *rp = palloc(sizeof(int64) * Max(nnp, 1));
		int64	   *rh = palloc(sizeof(int64) * Max(nnp, 1));
		float4	   *rw = palloc(sizeof(float4) * Max(nnp, 1));

		for (int i = 0; i < nnp; i++)
			if (like_in(redo, nredo, np[i].c))
			{
				rc[m] = np[i].c;
				rp[m] = np[i].p;
				rw[m] = np[i].w;
				rh[m] = np[i].h;
				m++;
			}
		args[0] = ShopInt8Array(redo, nredo);
		ShopExec(&st_like_profile_delete, args, NULL, 0);
		args[0] = ShopInt8Array(rc, m);
		args[1] = ShopInt8Array(rp, m);
		args[2] = ShopFloat4Array(rw, m);
		args[3] = ShopInt8Array(rh, m);
		ShopExec(&st_like_profile_insert, args, NULL, 0);
	}
	return written;
}

/*
 * The new rows of the lists, inserted straight to the heap with their
 * index entries (recowrite.c: an INSERT ... SELECT FROM unnest(...) per
 * batch before); through the statement when the table cannot take them.
 */
static long
like_flush_new(LikeRows *r)
{
	ShopTidWriter *tw;

	if (r->n == 0)
		return 0;
	tw = ShopTidWriterOpenInsert("customer_neighbour", "customer_id", "neighbour_id", NULL, "score", NULL);
	if (tw == NULL || !ShopTidWriterCanInsert(tw))
	{
		if (tw)
			ShopTidWriterClose(tw);
		return like_flush(&st_like_insert, r, true);
	}
	for (int i = 0; i < r->n; i++)
	{
		if ((i & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
		ShopTidWriterInsert(tw, r->c[i], r->nb[i], 0, r->s[i], 0);
	}
	ShopTidWriterClose(tw);
	return r->n;
}

Datum
shop_like_refresh_lists(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	int			sample = shop_reco_like_sample;
	int			top = shop_reco_like_neighbours;
	int64		limit = shop_reco_like_refresh_rows;
	int64	   *cs;
	int			ncs;
	int64	   *nc,
			   *np,
			   *nh;
	float4	   *nw;
	int			nnc,
				nnp,
				nnh,
				nnw;
	Relation	rel;
	Snapshot	snap;
	TableScanDesc scan;
	TupleTableSlot *slot;
	LikeMemRow *v;
	int64		nv = 0,
				cap = 1024;
	bool		over = false;
	int64	   *cust;
	int32		ncust = 0;
	bool	   *inA;
	int64	   *aid;			/* the lists to compute: sorted ids */
	int32		naid = 0;
	LikeSamples ls;
	double	   *acc;
	int32	   *touched;
	LikeEntry  *vec;
	HTAB	   *newl;
	LikeList   *l;
	uint64		nrows;
	Datum		args[1];
	LikeOldRow *old = NULL;
	int64		nold = 0;
	int32		nchanged = 0;
	long		nwritten = 0;
	LikeTidRows del = {0},
				upd = {0};
	LikeRows	ins = {0};
	LikeOldProf *op;
	int64		nop = 0,
				opcap = 1024;
	LikeNewProf *newp;
	long		nprof;
	JsonbParseState *state = NULL;
	JsonbValue *res;

	for (int i = 0; i < 5; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("arguments of shop._like_refresh_lists must not be null")));
	if (limit <= 0)
		PG_RETURN_NULL();

	work = AllocSetContextCreate(caller, "shop like refresh", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(work);
	cs = like_ids(PG_GETARG_ARRAYTYPE_P(0), &ncs);
	nc = like_int8s(PG_GETARG_ARRAYTYPE_P(1), &nnc, "new_c");
	np = like_int8s(PG_GETARG_ARRAYTYPE_P(2), &nnp, "new_p");
	nw = like_float4s(PG_GETARG_ARRAYTYPE_P(3), &nnw, "new_w");
	nh = like_int8s(PG_GETARG_ARRAYTYPE_P(4), &nnh, "new_h");
	if (nnp != nnc || nnw != nnc || nnh != nnc)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("new_c, new_p, new_w and new_h must have the same length")));
	for (int i = 0; i < nnc; i++)
		if (!like_in(cs, ncs, nc[i]))
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("new profile rows must be of the customers cs")));

	/* the rows: the table's, then the new ones */
	rel = table_openrv(makeRangeVar("shop", "customer_item", -1), AccessShareLock);
	if (RelationGetDescr(rel)->natts != 4)
		elog(ERROR, "shop: table customer_item does not have 4 columns");
	if (rel->rd_rel->reltuples > limit)
	{
		table_close(rel, AccessShareLock);
		MemoryContextSwitchTo(caller);
		MemoryContextDelete(work);
		PG_RETURN_NULL();
	}
	v = palloc(sizeof(LikeMemRow) * cap);
	op = palloc(sizeof(LikeOldProf) * opcap);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		n1,
					n2,
					n3,
					n4;

		if (nv >= limit)
		{
			over = true;
			break;
		}
		if (nv == cap)
		{
			cap *= 2;
			v = repalloc_huge(v, sizeof(LikeMemRow) * cap);
		}
		v[nv].c = DatumGetInt64(slot_getattr(slot, 1, &n1));
		v[nv].p = DatumGetInt64(slot_getattr(slot, 2, &n2));
		v[nv].w = DatumGetFloat4(slot_getattr(slot, 3, &n3));
		v[nv].h = DatumGetInt64(slot_getattr(slot, 4, &n4));
		if (n1 || n2 || n3 || n4)
			continue;			/* not null in the table */
		v[nv].tag = like_in(cs, ncs, v[nv].c) ? 1 : 0;
		if (v[nv].tag == 1)
		{
			/* a changed customer's row: where it is, for the writes */
			if (nop == opcap)
			{
				opcap *= 2;
				op = repalloc_huge(op, sizeof(LikeOldProf) * opcap);
			}
			op[nop].c = v[nv].c;
			op[nop].p = v[nv].p;
			op[nop].h = v[nv].h;
			op[nop].w = v[nv].w;
			op[nop].tid = slot->tts_tid;
			nop++;
		}
		nv++;
		if ((nv & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	if (over || nv + nnc > limit)
	{
		MemoryContextSwitchTo(caller);
		MemoryContextDelete(work);
		PG_RETURN_NULL();
	}
	if (nv + nnc > cap)
		v = repalloc_huge(v, sizeof(LikeMemRow) * (nv + nnc));
	for (int i = 0; i < nnc; i++)
	{
		v[nv].c = nc[i];
		v[nv].p = np[i];
		v[nv].w = nw[i];
		v[nv].h = nh[i];
		v[nv].tag = 2;
		nv++;
	}

	/* the customers, by dense index in id order */
	cust = palloc(sizeof(int64) * Max(nv, 1));
	for (int64 i = 0; i < nv; i++)
		cust[i] = v[i].c;
	like_sort_int64(cust, nv);
	for (int64 i = 0; i < nv; i++)
		if (ncust == 0 || cust[ncust - 1] != cust[i])
			cust[ncust++] = cust[i];
	for (int64 i = 0; i < nv; i++)
	{
		int32		lo = 0,
					hi = ncust - 1;

		while (lo < hi)
		{
			int32		mid = lo + (hi - lo) / 2;

			if (cust[mid] < v[i].c)
				lo = mid + 1;
			else
				hi = mid;
		}
		v[i].ci = lo;
	}
	like_sort_memrows(v, nv);

	/*
	 * The customers whose list can move: cs, and every customer of a
	 * sample, before or after, that holds one of cs before or after.
	 */
	inA = palloc0(sizeof(bool) * Max(ncust, 1));
	for (int64 i = 0; i < nv;)
	{
		int64		j = i;
		int			nold = 0,
					nnew = 0;
		bool		hit = false;
		int64		end;

		while (j < nv && v[j].p == v[i].p)
			j++;
		end = i;
		for (int64 m = i; m < j && (nold < sample || nnew < sample); m++)
		{
			bool		in_old = (v[m].tag != 2 && nold < sample);
			bool		in_new = (v[m].tag != 1 && nnew < sample);

			if (v[m].tag != 2)
				nold++;
			if (v[m].tag != 1)
				nnew++;
			if ((in_old || in_new) && v[m].tag != 0)
				hit = true;
			end = m + 1;
		}
		if (hit)
		{
			nold = nnew = 0;
			for (int64 m = i; m < end; m++)
			{
				bool		in_old = (v[m].tag != 2 && nold < sample);
				bool		in_new = (v[m].tag != 1 && nnew < sample);

				if (v[m].tag != 2)
					nold++;
				if (v[m].tag != 1)
					nnew++;
				if (in_old || in_new)
					inA[v[m].ci] = true;
			}
		}
		i = j;
	}
	/* the ids: those marked, and cs (a customer whose rows all went) */
	aid = palloc(sizeof(int64) * (ncust + ncs + 1));
	for (int32 c = 0; c < ncust; c++)
		if (inA[c])
			aid[naid++] = cust[c];
	for (int i = 0; i < ncs; i++)
		aid[naid++] = cs[i];
	like_sort_int64(aid, naid);
	{
		int32		m = 0;

		for (int32 i = 0; i < naid; i++)
			if (m == 0 || aid[m - 1] != aid[i])
				aid[m++] = aid[i];
		naid = m;
	}
	for (int32 c = 0; c < ncust; c++)
		if (!inA[c] && like_in(cs, ncs, cust[c]))
			inA[c] = true;

	/* the new rows only, in the same order */
	{
		int64		m = 0;

		for (int64 i = 0; i < nv; i++)
			if (v[i].tag != 1)
				v[m++] = v[i];
		nv = m;
	}

	/* the samples and each customer's samples, as the rebuild has them */
	like_samples_index(v, sizeof(LikeMemRow), nv, ncust, sample, &ls);
	pfree(v);					/* (the samples hold what the lists read) */

	/* the lists of the marked customers, whole (the rebuild's sums) */
	newl = like_hash("shop like refresh new lists", sizeof(LikeList), work);
	acc = palloc0(sizeof(double) * Max(ncust, 1));
	touched = palloc(sizeof(int32) * Max(ncust, 1));
	vec = palloc(sizeof(LikeEntry) * Max(ncust, 1));
	for (int32 c = 0; c < ncust; c++)
	{
		int			n;

		if (!inA[c])
			continue;
		n = like_customer_list(&ls, c, cust, acc, touched, vec, top);
		if (n > 0)
		{
			/* (in neighbour id order, as the comparison below reads it) */
			l = like_list(newl, cust[c]);
			for (int m = 0; m < n; m++)
				like_push(l, vec[m].id, vec[m].score);
		}
		if ((c & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	pfree(acc);
	pfree(touched);
	pfree(vec);
	like_samples_free(&ls);

	/* the stored rows of those lists, by customer and neighbour */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (naid > 0 && (old = like_old_rows_scan(aid, naid, top, &nold)) != NULL)
		like_sort_oldrows(old, nold);
	else if (naid > 0)
	{
		args[0] = ShopInt8Array(aid, naid);
		nrows = ShopExec(&st_like_old_tid, args, NULL, 0);
		old = palloc(sizeof(LikeOldRow) * Max(nrows, 1));
		for (uint64 r = 0; r < nrows; r++)
		{
			bool		isnull;

			old[r].c = ShopColInt(r, 1, 0);
			old[r].nb = ShopColInt(r, 2, 0);
			old[r].s = (float4) ShopColFloat(r, 3, 0);
			old[r].tid = *(ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[r],
															SPI_tuptable->tupdesc, 4, &isnull));
		}
		nold = (int64) nrows;
		SPI_freetuptable(SPI_tuptable);
		like_sort_oldrows(old, nold);
	}

	/*
	 * The rows that moved, list by list in id order: both versions by
	 * neighbour id (a list is its set of (neighbour, score): both are
	 * ranked the same way from it)
	 */
	for (int32 i = 0, o = 0; i < naid; i++)
	{
		LikeList   *nl = hash_search(newl, &aid[i], HASH_FIND, NULL);
		int			nn = nl ? nl->n : 0,
					b = 0;
		bool		moved = false;

		while (o < nold && old[o].c < aid[i])
			o++;				/* (not in aid: cannot happen) */
		while ((o < nold && old[o].c == aid[i]) || b < nn)
		{
			bool		has_old = (o < nold && old[o].c == aid[i]);

			if (b >= nn || (has_old && old[o].nb < nl->e[b].id))
			{
				like_tidrow(&del, &old[o].tid, aid[i], old[o].nb, 0);
				moved = true;
				o++;
			}
			else if (!has_old || nl->e[b].id < old[o].nb)
			{
				like_row(&ins, aid[i], nl->e[b].id, nl->e[b].score);
				moved = true;
				b++;
			}
			else
			{
				if (old[o].s != nl->e[b].score)
				{
					like_tidrow(&upd, &old[o].tid, aid[i], nl->e[b].id, nl->e[b].score);
					moved = true;
				}
				o++;
				b++;
			}
		}
		if (moved)
			nchanged++;
		if ((i & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	nwritten = like_flush_tid(&st_like_delete_tid, &st_like_delete, &del, false) +
		like_flush_tid(&st_like_update_tid, &st_like_update, &upd, true) +
		like_flush_new(&ins);

	/* the new profiles (cs's rows), over the stored ones */
	newp = palloc(sizeof(LikeNewProf) * Max(nnc, 1));
	for (int i = 0; i < nnc; i++)
	{
		newp[i].c = nc[i];
		newp[i].p = np[i];
		newp[i].w = nw[i];
		newp[i].h = nh[i];
	}
	nprof = like_write_profiles(op, nop, newp, nnc);
	SPI_finish();

	MemoryContextSwitchTo(caller);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	{
		const char *keys[] = {"customers_scored", "customers_patched", "customers_redone",
		"customers_changed", "neighbour_rows_written", "profile_rows", "profile_rows_written"};
		long		vals[] = {naid, 0, 0, nchanged, nwritten, (long) nv, nprof};

		for (int i = 0; i < lengthof(keys); i++)
		{
			JsonbValue	k,
						val;

			if (vals[i] < 0)
				continue;		/* profile_rows_written: the caller writes them */

			k.type = jbvString;
			k.val.string.val = (char *) keys[i];
			k.val.string.len = strlen(keys[i]);
			pushJsonbValue(&state, WJB_KEY, &k);
			val.type = jbvNumeric;
			val.val.numeric = int64_to_numeric(vals[i]);
			pushJsonbValue(&state, WJB_VALUE, &val);
		}
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	MemoryContextDelete(work);
	PG_RETURN_POINTER(JsonbValueToJsonb(res));
}

/*
 * One customer's profile (customers like you) from the events of its
 * history, for the rebuild (recorebuild.c) and the refresh (recoprofile.c)
 * alike, so that both write the same rows: the events ev[0..n-1] of one
 * customer (reordered in place) become one per product, with its largest
 * weight and latest time; the latest cap of them (then by product id, the
 * SQL's row_number() order) are kept, in product id order, and *norm is
 * the Euclidean norm of their weights, which each stored weight is divided
 * by.  Returns how many are kept.
 */
#define ST_SORT like_sort_events_product
#define ST_ELEMENT_TYPE LikeEvent
#define ST_COMPARE(a, b) ((a)->product_id < (b)->product_id ? -1 : ((a)->product_id > (b)->product_id ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/* latest first, then by product id */
#define ST_SORT like_sort_events_recent
#define ST_ELEMENT_TYPE LikeEvent
#define ST_COMPARE(a, b) ((a)->at != (b)->at ? ((a)->at > (b)->at ? -1 : 1) : \
						  (a)->product_id < (b)->product_id ? -1 : ((a)->product_id > (b)->product_id ? 1 : 0))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

int
like_profile_events(LikeEvent *ev, int n, int cap, double *norm)
{
	int			m = 0;
	double		sum;

	if (n == 0 || cap <= 0)
		return 0;
	like_sort_events_product(ev, n);
	for (int i = 0; i < n; i++)
	{
		if (m > 0 && ev[m - 1].product_id == ev[i].product_id)
		{
			if (ev[i].w > ev[m - 1].w)
				ev[m - 1].w = ev[i].w;
			if (ev[i].at > ev[m - 1].at)
				ev[m - 1].at = ev[i].at;
		}
		else
			ev[m++] = ev[i];
	}
	like_sort_events_recent(ev, m);
	if (m > cap)
		m = cap;
	sum = ev[0].w * ev[0].w;
	for (int i = 1; i < m; i++)
		sum += ev[i].w * ev[i].w;
	*norm = sqrt(sum);
	if (m > 1)
		like_sort_events_product(ev, m);
	return m;
}
