/*-------------------------------------------------------------------------
 *
 * sswrite.c
 *	  shop_search segment writer: the in-memory segment builder and the
 *	  code that writes it out as a segment.
 *
 * A segment builder is a hash of term -> posting list plus the documents'
 * field lengths.  CREATE INDEX (ssbuild.c) fills one from the heap and
 * VACUUM (ssvacuum.c) from the pending list or from segments it merges;
 * both then call SsSegBuilderWrite, which lays the terms, postings, skip
 * blocks, documents, norms, trigram map and facet column out in pages (the layout is
 * in ssearch.h).  This file calls neither of its users.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xloginsert.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "shop.h"
#include "ssearch.h"

typedef struct SsPosting
{
	uint32		docid;
	uint16		tf;
} SsPosting;

typedef struct TermAcc
{
	char		term[SS_TERM_KEY_SIZE];	/* hash key */
	int			len;
	uint32		n;
	uint32		max;
	SsPosting  *postings;
} TermAcc;

struct SsSegBuilder
{
	MemoryContext cxt;
	HTAB	   *terms;
	SsDoc	   *docs;
	uint32		ndocs;
	uint32		maxdocs;
	Size		mem;
};

SsSegBuilder *
SsSegBuilderCreate(MemoryContext parent)
{
	SsSegBuilder *sb = MemoryContextAllocZero(parent, sizeof(SsSegBuilder));
	HASHCTL		ctl;

	sb->cxt = AllocSetContextCreate(parent, "shop_search segment builder", ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = SS_TERM_KEY_SIZE;
	ctl.entrysize = sizeof(TermAcc);
	ctl.hcxt = sb->cxt;
	sb->terms = hash_create("shop_search terms", 4096, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	sb->maxdocs = 1024;
	sb->docs = MemoryContextAlloc(sb->cxt, sizeof(SsDoc) * sb->maxdocs);
	return sb;
}

void
SsSegBuilderFree(SsSegBuilder *sb)
{
	MemoryContextDelete(sb->cxt);
	pfree(sb);
}

uint32
SsSegBuilderNDocs(SsSegBuilder *sb)
{
	return sb->ndocs;
}

Size
SsSegBuilderMemory(SsSegBuilder *sb)
{
	return sb->mem + hash_get_num_entries(sb->terms) * (sizeof(TermAcc) + 16);
}

/* SsSegBuilderAdd: append one tokenized document; its docid is the count. */
void
SsSegBuilderAdd(SsSegBuilder *sb, const SsDocData *d)
{
	uint32		docid = SsSegBuilderAddDoc(sb, &d->doc);

	for (int i = 0; i < d->nterms; i++)
		SsSegBuilderAddPosting(sb, d->terms[i].term, d->terms[i].len, docid, d->terms[i].tf);
}

/* SsSegBuilderAddDoc: append a document without terms; returns its docid. */
uint32
SsSegBuilderAddDoc(SsSegBuilder *sb, const SsDoc *doc)
{
	if (sb->ndocs >= sb->maxdocs)
	{
		sb->maxdocs *= 2;
		sb->docs = repalloc_huge(sb->docs, sizeof(SsDoc) * sb->maxdocs);
	}
	sb->docs[sb->ndocs] = *doc;
	sb->mem += sizeof(SsDoc);
	return sb->ndocs++;
}

/*
 * SsSegBuilderAddPosting: append one posting of term; docids of a term
 * must arrive in increasing order (segment merges add segment by segment).
 */
void
SsSegBuilderAddPosting(SsSegBuilder *sb, const char *term, int len, uint32 docid, uint16 tf)
{
	char		key[SS_TERM_KEY_SIZE];
	bool		found;
	TermAcc    *acc;

	SsTermKey(key, term, len);
	acc = hash_search(sb->terms, key, HASH_ENTER, &found);
	if (!found)
	{
		acc->len = len;
		acc->n = 0;
		acc->max = 4;
		acc->postings = MemoryContextAlloc(sb->cxt, sizeof(SsPosting) * acc->max);
		sb->mem += sizeof(SsPosting) * acc->max;
	}
	else if (acc->n >= acc->max)
	{
		sb->mem += sizeof(SsPosting) * acc->max;
		acc->max *= 2;
		acc->postings = repalloc_huge(acc->postings, sizeof(SsPosting) * acc->max);
	}
	acc->postings[acc->n].docid = docid;
	acc->postings[acc->n].tf = tf;
	acc->n++;
}

static int
termacc_cmp(const void *a, const void *b)
{
	const TermAcc *x = *(TermAcc *const *) a;
	const TermAcc *y = *(TermAcc *const *) b;

	return strcmp(x->term, y->term);
}

static int
posting_cmp(const void *a, const void *b)
{
	uint32		x = ((const SsPosting *) a)->docid;
	uint32		y = ((const SsPosting *) b)->docid;

	return x < y ? -1 : x > y ? 1 : 0;
}

static int
rank_cmp(const void *a, const void *b, void *arg)
{
	const SsDoc *docs = (const SsDoc *) arg;
	uint32		x = *(const uint32 *) a;
	uint32		y = *(const uint32 *) b;

	if (docs[x].logpop != docs[y].logpop)
		return docs[x].logpop > docs[y].logpop ? -1 : 1;
	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * Renumber the builder's documents most popular first (ties keep their
 * order, so heap order survives among equals) and remap every posting
 * list, re-sorting the lists whose order changed.  Scans rely on this
 * order: the boost of the documents still ahead only falls.
 */
static void
order_by_popularity(SsSegBuilder *sb, TermAcc **terms, uint32 nterms)
{
	uint32		n = sb->ndocs;
	uint32	   *order;
	uint32	   *newid;
	SsDoc	   *docs;
	bool		identity = true;

	if (n < 2)
		return;
	order = palloc_extended(sizeof(uint32) * n, MCXT_ALLOC_HUGE);
	for (uint32 i = 0; i < n; i++)
		order[i] = i;
	qsort_arg(order, n, sizeof(uint32), rank_cmp, sb->docs);
	for (uint32 i = 0; i < n && identity; i++)
		identity = order[i] == i;
	if (identity)
	{
		pfree(order);
		return;
	}
	newid = palloc_extended(sizeof(uint32) * n, MCXT_ALLOC_HUGE);
	docs = MemoryContextAllocHuge(sb->cxt, sizeof(SsDoc) * sb->maxdocs);
	for (uint32 i = 0; i < n; i++)
	{
		newid[order[i]] = i;
		docs[i] = sb->docs[order[i]];
	}
	pfree(sb->docs);
	sb->docs = docs;
	for (uint32 t = 0; t < nterms; t++)
	{
		SsPosting  *p = terms[t]->postings;
		bool		sorted = true;

		for (uint32 k = 0; k < terms[t]->n; k++)
		{
			p[k].docid = newid[p[k].docid];
			if (k > 0 && p[k].docid < p[k - 1].docid)
				sorted = false;
		}
		if (!sorted)
			qsort(p, terms[t]->n, sizeof(SsPosting), posting_cmp);
		CHECK_FOR_INTERRUPTS();
	}
	pfree(order);
	pfree(newid);
}

/*
 * The bound of one block: the largest weighted, length-normalised
 * frequency of its postings under the reference weights and averages.
 */
static void
skip_fill(SsSkip *sk, const SsSegBuilder *sb, const SsSegHeader *hdr,
		  const SsPosting *p, uint32 n)
{
	float4		maxt = 0;

	for (uint32 k = 0; k < n; k++)
	{
		const SsDoc *d = &sb->docs[p[k].docid];
		int			tfs[SS_NFIELDS] = {SS_TF_TITLE(p[k].tf), SS_TF_BRAND(p[k].tf), SS_TF_DESC(p[k].tf)};
		double		t = 0;

		for (int f = 0; f < SS_NFIELDS; f++)
			if (tfs[f] > 0)
				t += hdr->refw[f] * tfs[f] /
					(1.0 - SS_FIELD_B(f) + SS_FIELD_B(f) * d->len[f] / hdr->refavg[f]);
		maxt = Max(maxt, (float4) t);
	}
	sk->lastdoc = p[n - 1].docid;
	sk->pad = 0;
	sk->maxt = maxt;
}

/* Writer state: the next block to fill, in order. */
typedef struct SegWriter
{
	Relation	index;
	bool		log_each;		/* log_newpage_buffer per page (VACUUM) */
	BlockNumber next;			/* expected block number of the next page */
	bool		reuse;			/* next is in a free run, not past the end */
	Buffer		buf;
	Page		page;
} SegWriter;

static void
writer_finish_page(SegWriter *w)
{
	START_CRIT_SECTION();
	MarkBufferDirty(w->buf);
	if (w->log_each && RelationNeedsWAL(w->index))
		log_newpage_buffer(w->buf, true);
	END_CRIT_SECTION();
	UnlockReleaseBuffer(w->buf);
	w->buf = InvalidBuffer;
	w->next++;
}

/* Lay out items of sizes into pages; returns page count, first index per page. */
static uint32
layout_items(TermAcc **terms, uint32 n, uint32 **firsts)
{
	Size		avail = SS_PAGE_CAPACITY;
	uint32		npages = 0;
	uint32	   *f = palloc(sizeof(uint32) * (n + 1));

	for (uint32 i = 0; i < n; i++)
	{
		Size		need = MAXALIGN(SS_DICT_ITEM_SIZE(terms[i]->len)) + sizeof(ItemIdData);

		if (npages == 0 || need > avail)
		{
			f[npages++] = i;
			avail = SS_PAGE_CAPACITY;
		}
		avail -= need;
	}
	*firsts = f;
	return npages;
}

/*
 * The trigram map of a segment's exact terms, built in memory before the
 * segment is placed: a hash of trigram -> (number of terms, encoded size,
 * last ordinal) counts the lists in one pass over the sorted terms, a
 * second pass writes each list's varints into its place in one buffer,
 * and gram_layout cuts the lists into pages.
 */
typedef struct GramMap
{
	uint32		mask;			/* hash: slots - 1 */
	uint32		nused;
	uint32	   *keys;			/* 0 = empty (no trigram packs to 0) */
	uint32	   *n;
	uint32	   *bytes;
	uint32	   *last;
	uint64	   *pos;			/* write position in data */
	uint32	   *order;			/* used slots by key */
	char	   *data;
	uint64		ndata;
	BlockNumber *blk;			/* per slot, relative to the first gram page */
	uint16	   *off;
	uint32		ngrampages;
	uint32		ndirpages;
	uint32		firstexact;
} GramMap;

static inline uint32
gram_hash(uint32 key)
{
	key ^= key >> 15;
	key *= 0x2c1b3c6dU;
	key ^= key >> 12;
	key *= 0x297a2d39U;
	key ^= key >> 15;
	return key;
}

static uint32
gram_slot(GramMap *gm, uint32 key)
{
	uint32		h = gram_hash(key) & gm->mask;

	while (gm->keys[h] != 0 && gm->keys[h] != key)
		h = (h + 1) & gm->mask;
	return h;
}

static void
gram_grow(GramMap *gm)
{
	uint32		oldsize = gm->mask + 1;
	uint32	   *oldkeys = gm->keys,
			   *oldn = gm->n,
			   *oldbytes = gm->bytes,
			   *oldlast = gm->last;

	gm->mask = oldsize * 2 - 1;
	gm->keys = palloc0(sizeof(uint32) * (gm->mask + 1));
	gm->n = palloc0(sizeof(uint32) * (gm->mask + 1));
	gm->bytes = palloc0(sizeof(uint32) * (gm->mask + 1));
	gm->last = palloc0(sizeof(uint32) * (gm->mask + 1));
	for (uint32 i = 0; i < oldsize; i++)
	{
		uint32		h;

		if (oldkeys[i] == 0)
			continue;
		h = gram_slot(gm, oldkeys[i]);
		gm->keys[h] = oldkeys[i];
		gm->n[h] = oldn[i];
		gm->bytes[h] = oldbytes[i];
		gm->last[h] = oldlast[i];
	}
	pfree(oldkeys);
	pfree(oldn);
	pfree(oldbytes);
	pfree(oldlast);
}

static GramMap *gram_sort_map;

static int
gram_order_cmp(const void *a, const void *b)
{
	uint32		x = gram_sort_map->keys[*(const uint32 *) a];
	uint32		y = gram_sort_map->keys[*(const uint32 *) b];

	return x < y ? -1 : x > y ? 1 : 0;
}

static void
gram_build(GramMap *gm, TermAcc **terms, uint32 nterms)
{
	uint32		grams[SS_MAX_TERM_GRAMS];
	uint64		total = 0;
	uint32		k = 0;

	memset(gm, 0, sizeof(GramMap));
	gm->mask = 4096 - 1;
	gm->keys = palloc0(sizeof(uint32) * 4096);
	gm->n = palloc0(sizeof(uint32) * 4096);
	gm->bytes = palloc0(sizeof(uint32) * 4096);
	gm->last = palloc0(sizeof(uint32) * 4096);
	gm->firstexact = nterms;

	/* pass 1: count, and size the delta-coded lists */
	for (uint32 t = 0; t < nterms; t++)
	{
		int			ng;

		if (terms[t]->len == 0 || terms[t]->term[0] == SS_STEM_MARK ||
			terms[t]->term[0] == SS_FILTER_MARK)
			continue;
		gm->firstexact = Min(gm->firstexact, t);
		ng = SsTermGrams(terms[t]->term, terms[t]->len, grams);
		for (int g = 0; g < ng; g++)
		{
			uint32		h = gram_slot(gm, grams[g]);

			if (gm->keys[h] == 0)
			{
				gm->keys[h] = grams[g];
				if (++gm->nused * 2 > gm->mask + 1)
				{
					gram_grow(gm);
					h = gram_slot(gm, grams[g]);
				}
			}
			gm->bytes[h] += SsVarintLen(gm->n[h] == 0 ? t : t - gm->last[h]);
			gm->last[h] = t;
			gm->n[h]++;
		}
		if ((t & 4095) == 0)
			CHECK_FOR_INTERRUPTS();
	}

	/* lists in key order, one after another in data */
	gm->order = palloc(sizeof(uint32) * Max(gm->nused, 1));
	for (uint32 h = 0; h <= gm->mask; h++)
		if (gm->keys[h] != 0)
			gm->order[k++] = h;
	gram_sort_map = gm;
	qsort(gm->order, gm->nused, sizeof(uint32), gram_order_cmp);
	gram_sort_map = NULL;
	gm->pos = palloc_extended(sizeof(uint64) * (gm->mask + 1), MCXT_ALLOC_HUGE);
	for (k = 0; k < gm->nused; k++)
	{
		gm->pos[gm->order[k]] = total;
		total += gm->bytes[gm->order[k]];
	}
	gm->ndata = total;
	gm->data = palloc_extended(Max(total, 1), MCXT_ALLOC_HUGE);

	/* pass 2: the varints */
	for (uint32 h = 0; h <= gm->mask; h++)
		gm->last[h] = UINT32_MAX;	/* no ordinal yet */
	for (uint32 t = gm->firstexact; t < nterms; t++)
	{
		int			ng;

		if (terms[t]->len == 0 || terms[t]->term[0] == SS_STEM_MARK ||
			terms[t]->term[0] == SS_FILTER_MARK)
			continue;
		ng = SsTermGrams(terms[t]->term, terms[t]->len, grams);
		for (int g = 0; g < ng; g++)
		{
			uint32		h = gram_slot(gm, grams[g]);

			gm->pos[h] += SsVarintPut(gm->data + gm->pos[h],
									  gm->last[h] == UINT32_MAX ? t : t - gm->last[h]);
			gm->last[h] = t;
		}
		if ((t & 4095) == 0)
			CHECK_FOR_INTERRUPTS();
	}
}

/* bytes of the varint at p */
static inline int
varint_size(const char *p)
{
	int			n = 1;

	while ((p[n - 1] & 0x80) && n < SS_GRAM_VARINT_MAX)
		n++;
	return n;
}

/*
 * Cut the lists into gram pages, in key order, a varint never straddling
 * a page (SS_GRAM_VARINT_MAX), and note where each list starts; the
 * writer, seg_write_gram_lists, walks the same way.
 */
static void
gram_layout(GramMap *gm)
{
	uint32		blk = 0,
				off = 0;

	gm->blk = palloc_extended(sizeof(BlockNumber) * (gm->mask + 1), MCXT_ALLOC_HUGE);
	gm->off = palloc_extended(sizeof(uint16) * (gm->mask + 1), MCXT_ALLOC_HUGE);
	for (uint32 k = 0; k < gm->nused; k++)
	{
		uint32		h = gm->order[k];
		const char *p = gm->data + (gm->pos[h] - gm->bytes[h]);
		const char *end = p + gm->bytes[h];

		if (SS_PAGE_CAPACITY - off < SS_GRAM_VARINT_MAX)
		{
			blk++;
			off = 0;
		}
		gm->blk[h] = blk;
		gm->off[h] = off;
		while (p < end)
		{
			int			n = varint_size(p);

			if (SS_PAGE_CAPACITY - off < SS_GRAM_VARINT_MAX)
			{
				blk++;
				off = 0;
			}
			off += n;
			p += n;
		}
	}
	gm->ngrampages = gm->nused == 0 ? 0 : blk + 1;
	gm->ndirpages = (gm->nused + SS_GRAMS_PER_PAGE - 1) / SS_GRAMS_PER_PAGE;
}

static void
gram_free(GramMap *gm)
{
	pfree(gm->keys);
	pfree(gm->n);
	pfree(gm->bytes);
	pfree(gm->last);
	pfree(gm->pos);
	pfree(gm->order);
	pfree(gm->data);
	pfree(gm->blk);
	pfree(gm->off);
}

/*
 * Segment layout: where every term, posting, skip entry and trigram list
 * goes, worked out before the first page is written (SsSegBuilderWrite).
 * Posting blocks are relative to the first posting page until the segment
 * is placed.
 */
typedef struct SegLayout
{
	TermAcc   **terms;			/* dictionary order */
	uint32		nterms;
	BlockNumber *postblk;		/* per term: its first posting page */
	uint16	   *postoff;		/* per term: its offset in that page */
	uint32	   *skipidx;		/* per term: its first skip entry, or for a
								 * one-block term the bits of its bound */
	SsSkip	   *skips;
	uint32		nskips;
	uint32	   *dictfirst;		/* per dictionary page: its first term */
	uint32	   *dirfirst;		/* per directory page: its first dict page */
	uint32		ndocpages;
	uint32		ndirpages;
	uint32		ndictpages;
	uint32		npostpages;
	uint32		nskippages;
	uint32		nnormpages;
	GramMap		gm;
	/* the facet column: distinct categories and brands, sorted */
	int64	   *fcats;
	int64	   *fbrands;
	uint32		nfcats;
	uint32		nfbrands;
	uint32		nfcolpages;		/* 0: no column (too many values) */
	uint32		nfdictpages;
} SegLayout;

/*
 * seg_reference: the field weights and average field lengths the skip
 * entries' score bounds are computed with, into hdr.
 */
static void
seg_reference(SsSegBuilder *sb, Relation index, SsSegHeader *hdr)
{
	double		w[SS_NFIELDS];
	double		sum[SS_NFIELDS] = {0};

	SsGetWeights(index, w);
	for (uint32 d = 0; d < sb->ndocs; d++)
		for (int f = 0; f < SS_NFIELDS; f++)
			sum[f] += sb->docs[d].len[f];
	for (int f = 0; f < SS_NFIELDS; f++)
	{
		hdr->refw[f] = (float4) w[f];
		hdr->refavg[f] = (float4) (sb->ndocs > 0 ? Max(sum[f] / sb->ndocs, 0.5) : 1.0);
	}
}

/* seg_order_terms: the builder's terms, sorted, in dictionary order. */
static void
seg_order_terms(SsSegBuilder *sb, SegLayout *L)
{
	HASH_SEQ_STATUS st;
	TermAcc    *acc;
	uint32		i = 0;

	L->nterms = hash_get_num_entries(sb->terms);
	L->terms = palloc(sizeof(TermAcc *) * Max(L->nterms, 1));
	hash_seq_init(&st, sb->terms);
	while ((acc = hash_seq_search(&st)) != NULL)
		L->terms[i++] = acc;
	if (L->nterms > 1)
		qsort(L->terms, L->nterms, sizeof(TermAcc *), termacc_cmp);
	order_by_popularity(sb, L->terms, L->nterms);
}

/*
 * seg_layout_postings: each term's posting position, relative to the
 * first posting page, and its skip entries with their bounds (against
 * hdr's reference weights).  seg_write_postings walks the same way.
 */
static void
seg_layout_postings(SsSegBuilder *sb, const SsSegHeader *hdr, SegLayout *L)
{
	TermAcc   **terms = L->terms;
	uint32		nterms = L->nterms;
	uint32		blk = 0;
	uint32		off = 0;

	L->postblk = palloc(sizeof(BlockNumber) * Max(nterms, 1));
	L->postoff = palloc(sizeof(uint16) * Max(nterms, 1));
	L->skipidx = palloc(sizeof(uint32) * Max(nterms, 1));
	L->nskips = 0;
	for (uint32 i = 0; i < nterms; i++)
	{
		L->skipidx[i] = L->nskips;
		if (terms[i]->n > SS_BLOCK_POSTINGS)	/* one block: no entry */
			L->nskips += (terms[i]->n + SS_BLOCK_POSTINGS - 1) / SS_BLOCK_POSTINGS;
	}
	L->skips = palloc_extended(sizeof(SsSkip) * Max(L->nskips, 1), MCXT_ALLOC_HUGE);
	L->nskippages = (L->nskips + SS_SKIPS_PER_PAGE - 1) / SS_SKIPS_PER_PAGE;

	for (uint32 i = 0; i < nterms; i++)
	{
		uint32		prev = 0;

		if (SS_PAGE_CAPACITY - off < SS_POSTING_MAX)
		{
			blk++;
			off = 0;
		}
		L->postblk[i] = blk;
		L->postoff[i] = off;
		for (uint32 k = 0; k < terms[i]->n; k++)
		{
			if (SS_PAGE_CAPACITY - off < SS_POSTING_MAX)
			{
				blk++;
				off = 0;
			}
			if (k % SS_BLOCK_POSTINGS == 0 && terms[i]->n > SS_BLOCK_POSTINGS)
			{
				SsSkip	   *sk = &L->skips[L->skipidx[i] + k / SS_BLOCK_POSTINGS];

				sk->postblk = blk;	/* relative until the segment is placed */
				sk->postoff = off;
				skip_fill(sk, sb, hdr, &terms[i]->postings[k],
						  Min((uint32) SS_BLOCK_POSTINGS, terms[i]->n - k));
			}
			else if (k == 0)
			{
				SsSkip		one;

				skip_fill(&one, sb, hdr, terms[i]->postings, terms[i]->n);
				L->skipidx[i] = SsOneBlockBoundBits(one.maxt);
			}
			off += SsVarintLen(terms[i]->postings[k].docid - prev) +
				SsVarintLen(terms[i]->postings[k].tf);
			prev = terms[i]->postings[k].docid;
		}
	}
	L->npostpages = (nterms == 0) ? 0 : blk + 1;
}

static int
int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/*
 * sort and deduplicate v[0..n), returning the distinct count (the facet
 * dictionaries here; search_verify counts with it too)
 */
uint32
SsInt64Unique(int64 *v, uint32 n)
{
	uint32		k = 0;

	if (n > 1)
		qsort(v, n, sizeof(int64), int64_cmp);
	for (uint32 i = 0; i < n; i++)
		if (k == 0 || v[k - 1] != v[i])
			v[k++] = v[i];
	return k;
}

/* the ordinal of x in the sorted distinct v[0..n), which holds it */
static uint16
int64_ord(const int64 *v, uint32 n, int64 x)
{
	uint32		lo = 0,
				hi = n;

	while (hi - lo > 1)
	{
		uint32		mid = (lo + hi) / 2;

		if (v[mid] <= x)
			lo = mid;
		else
			hi = mid;
	}
	return (uint16) lo;
}

/*
 * fcol_layout: the facet column's dictionaries (the segment's distinct
 * categories and brands, sorted) and page counts; none if either has
 * more than SS_FCOL_MAX_ORD values (the entries' ordinals are 16 bits).
 */
static void
fcol_layout(SsSegBuilder *sb, SegLayout *L)
{
	uint32		nc = 0,
				nb = 0;

	L->fcats = palloc_extended(sizeof(int64) * Max(sb->ndocs, 1), MCXT_ALLOC_HUGE);
	L->fbrands = palloc_extended(sizeof(int64) * Max(sb->ndocs, 1), MCXT_ALLOC_HUGE);
	for (uint32 d = 0; d < sb->ndocs; d++)
	{
		if (sb->docs[d].flags & SS_DOC_HAS_CAT)
			L->fcats[nc++] = sb->docs[d].category_id;
		if (sb->docs[d].flags & SS_DOC_HAS_BRAND)
			L->fbrands[nb++] = (int64) sb->docs[d].brand_hash;
	}
	L->nfcats = SsInt64Unique(L->fcats, nc);
	L->nfbrands = SsInt64Unique(L->fbrands, nb);
	if (L->nfcats > SS_FCOL_MAX_ORD || L->nfbrands > SS_FCOL_MAX_ORD)
	{
		L->nfcats = L->nfbrands = 0;
		L->nfcolpages = L->nfdictpages = 0;
		return;
	}
	L->nfcolpages = (sb->ndocs + SS_FCOL_PER_PAGE - 1) / SS_FCOL_PER_PAGE;
	L->nfdictpages = (L->nfcats + L->nfbrands + SS_FDICT_PER_PAGE - 1) / SS_FDICT_PER_PAGE;
}

/*
 * seg_layout_pages: the dictionary and directory pages, the document and
 * norm page counts, and the trigram map.
 */
static void
seg_layout_pages(SsSegBuilder *sb, SegLayout *L)
{
	TermAcc   **dirterms;

	L->ndictpages = layout_items(L->terms, L->nterms, &L->dictfirst);
	/* directory: one item per dict page carrying its first term */
	dirterms = palloc(sizeof(TermAcc *) * Max(L->ndictpages, 1));
	for (uint32 i = 0; i < L->ndictpages; i++)
		dirterms[i] = L->terms[L->dictfirst[i]];
	L->ndirpages = layout_items(dirterms, L->ndictpages, &L->dirfirst);
	pfree(dirterms);
	L->ndocpages = (sb->ndocs + SS_DOCS_PER_PAGE - 1) / SS_DOCS_PER_PAGE;
	L->nnormpages = (sb->ndocs + SS_NORMS_PER_PAGE - 1) / SS_NORMS_PER_PAGE;
	gram_build(&L->gm, L->terms, L->nterms);
	gram_layout(&L->gm);
	fcol_layout(sb, L);
}

/*
 * seg_place: the segment's header block, into w->next.  A free run of
 * released blocks if the caller has one (alloc), else the end of the
 * relation, holding the extension lock for the whole write so the
 * segment's blocks are contiguous even while backends append pending
 * pages; the caller releases it when w->reuse is false.
 */
static void
seg_place(SegWriter *w, const SegLayout *L, SsAllocRun alloc, void *alloc_arg,
		  bool needLock)
{
	w->next = InvalidBlockNumber;
	if (alloc)
		w->next = alloc(alloc_arg, 1 + L->ndocpages + L->ndirpages + L->ndictpages +
						L->npostpages + L->nskippages + L->nnormpages +
						L->gm.ndirpages + L->gm.ngrampages +
						L->nfcolpages + L->nfdictpages);
	w->reuse = w->next != InvalidBlockNumber;
	if (!w->reuse)
	{
		if (needLock)
			LockRelationForExtension(w->index, ExclusiveLock);
		w->next = RelationGetNumberOfBlocks(w->index);
	}
}

/* seg_fill_header: counts and absolute start blocks, the header at hdrblk. */
static void
seg_fill_header(SsSegHeader *hdr, const SegLayout *L, uint32 ndocs, uint64 serial,
				BlockNumber hdrblk)
{
	hdr->ndocs = ndocs;
	hdr->nterms = L->nterms;
	hdr->serial = serial;
	hdr->docstart = hdrblk + 1;
	hdr->ndocpages = L->ndocpages;
	hdr->dirstart = hdr->docstart + L->ndocpages;
	hdr->ndirpages = L->ndirpages;
	hdr->dictstart = hdr->dirstart + L->ndirpages;
	hdr->ndictpages = L->ndictpages;
	hdr->poststart = hdr->dictstart + L->ndictpages;
	hdr->npostpages = L->npostpages;
	hdr->skipstart = hdr->poststart + L->npostpages;
	hdr->nskippages = L->nskippages;
	hdr->nskips = L->nskips;
	hdr->normstart = hdr->skipstart + L->nskippages;
	hdr->nnormpages = L->nnormpages;
	hdr->gramdirstart = hdr->normstart + L->nnormpages;
	hdr->ngramdirpages = L->gm.ndirpages;
	hdr->ngrams = L->gm.nused;
	hdr->gramstart = hdr->gramdirstart + L->gm.ndirpages;
	hdr->ngrampages = L->gm.ngrampages;
	hdr->firstexact = L->gm.firstexact;
	hdr->fcolstart = hdr->gramstart + L->gm.ngrampages;
	hdr->nfcolpages = L->nfcolpages;
	hdr->nfdictpages = L->nfdictpages;
	hdr->fcolncats = L->nfcats;
	hdr->fcolnbrands = L->nfbrands;
}

/*
 * writer_new_page: block w->next, locked and initialised as a page of
 * type.  At the end of the relation the extension lock is already held,
 * so this extends with P_NEW itself (SsNewBuffer would retake the lock).
 */
static void
writer_new_page(SegWriter *w, uint16 type)
{
	if (w->reuse)
		w->buf = ReadBufferExtended(w->index, MAIN_FORKNUM, w->next, RBM_ZERO_AND_LOCK, NULL);
	else
	{
		w->buf = ReadBuffer(w->index, P_NEW);
		LockBuffer(w->buf, BUFFER_LOCK_EXCLUSIVE);
	}
	if (BufferGetBlockNumber(w->buf) != w->next)
		elog(ERROR, "shop_search: segment blocks not contiguous");
	w->page = BufferGetPage(w->buf);
	SsInitPage(w->page, type);
}

/* seg_write_header: the segment header page. */
static void
seg_write_header(SegWriter *w, const SsSegHeader *hdr)
{
	writer_new_page(w, SS_PAGE_SEGHDR);
	memcpy(SsPageContents(w->page), hdr, sizeof(*hdr));
	((PageHeader) w->page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + sizeof(*hdr);
	writer_finish_page(w);
}

/* seg_write_docs: the document pages, SsDoc by docid. */
static void
seg_write_docs(SegWriter *w, SsSegBuilder *sb, const SegLayout *L)
{
	for (uint32 p = 0; p < L->ndocpages; p++)
	{
		uint32		first = p * SS_DOCS_PER_PAGE;
		uint32		cnt = Min((uint32) SS_DOCS_PER_PAGE, sb->ndocs - first);

		writer_new_page(w, SS_PAGE_DOC);
		memcpy(SsPageContents(w->page), &sb->docs[first], sizeof(SsDoc) * cnt);
		SsPageGetOpaque(w->page)->count = cnt;
		((PageHeader) w->page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + sizeof(SsDoc) * cnt;
		writer_finish_page(w);
	}
}

/*
 * seg_write_dict: the directory pages (one item per dictionary page: its
 * first term and block), then the dictionary pages (one item per term:
 * its document frequency and where its postings and skips are).
 */
static void
seg_write_dict(SegWriter *w, const SegLayout *L, const SsSegHeader *hdr)
{
	TermAcc   **terms = L->terms;

	for (int pass = 0; pass < 2; pass++)
	{
		uint32		npages = pass == 0 ? L->ndirpages : L->ndictpages;
		uint32	   *firsts = pass == 0 ? L->dirfirst : L->dictfirst;
		uint32		nitems = pass == 0 ? L->ndictpages : L->nterms;

		for (uint32 p = 0; p < npages; p++)
		{
			uint32		end = (p + 1 < npages) ? firsts[p + 1] : nitems;

			writer_new_page(w, pass == 0 ? SS_PAGE_DIR : SS_PAGE_DICT);
			for (uint32 k = firsts[p]; k < end; k++)
			{
				uint32		t = pass == 0 ? L->dictfirst[k] : k;
				char		itembuf[MAXALIGN(SS_DICT_ITEM_SIZE(SS_MAX_TERM_LEN + 8))];
				SsDictItem *it = (SsDictItem *) itembuf;

				if (pass == 0)
				{
					it->df = hdr->dictstart + k;
					it->postblk = InvalidBlockNumber;
					it->skip = t;	/* the dict page's first ordinal */
					it->postoff = 0;
				}
				else
				{
					it->df = terms[t]->n;
					it->postblk = hdr->poststart + L->postblk[t];
					it->skip = L->skipidx[t];
					it->postoff = L->postoff[t];
				}
				it->len = terms[t]->len;
				memcpy(it->term, terms[t]->term, it->len);
				if (PageAddItem(w->page, (Item) it, SS_DICT_ITEM_SIZE(it->len),
								InvalidOffsetNumber, false, false) == InvalidOffsetNumber)
					elog(ERROR, "shop_search: dictionary page overflow");
			}
			writer_finish_page(w);
		}
	}
}

/* writer_next_post_page: a full posting page is done; start the next. */
static void
writer_next_post_page(SegWriter *w)
{
	((PageHeader) w->page)->pd_lower = SS_PAGE_CAPACITY + MAXALIGN(SizeOfPageHeaderData);
	writer_finish_page(w);
	writer_new_page(w, SS_PAGE_POST);
}

/*
 * seg_write_postings: every term's postings as varint (docid delta, tf)
 * pairs, page breaks exactly where seg_layout_postings put them.
 */
static void
seg_write_postings(SegWriter *w, const SegLayout *L)
{
	TermAcc   **terms = L->terms;
	uint32		curblk = 0;
	uint32		off = 0;

	if (L->npostpages == 0)
		return;
	writer_new_page(w, SS_PAGE_POST);
	for (uint32 i = 0; i < L->nterms; i++)
	{
		uint32		prev;

		if (L->postblk[i] != curblk)
		{
			writer_next_post_page(w);
			curblk++;
			off = 0;
		}
		prev = 0;
		if (off != L->postoff[i])
			elog(ERROR, "shop_search: posting layout mismatch");
		for (uint32 k = 0; k < terms[i]->n; k++)
		{
			char	   *dst;

			if (SS_PAGE_CAPACITY - off < SS_POSTING_MAX)
			{
				writer_next_post_page(w);
				curblk++;
				off = 0;
			}
			dst = SsPageContents(w->page);
			off += SsVarintPut(dst + off, terms[i]->postings[k].docid - prev);
			off += SsVarintPut(dst + off, terms[i]->postings[k].tf);
			prev = terms[i]->postings[k].docid;
		}
	}
	((PageHeader) w->page)->pd_lower = SS_PAGE_CAPACITY + MAXALIGN(SizeOfPageHeaderData);
	writer_finish_page(w);
	if (curblk + 1 != L->npostpages)
		elog(ERROR, "shop_search: posting layout mismatch");
}

/* seg_write_skips: the skip entries, their posting blocks made absolute. */
static void
seg_write_skips(SegWriter *w, const SegLayout *L, const SsSegHeader *hdr)
{
	for (uint32 p = 0; p < L->nskippages; p++)
	{
		uint32		first = p * SS_SKIPS_PER_PAGE;
		uint32		cnt = Min((uint32) SS_SKIPS_PER_PAGE, L->nskips - first);
		SsSkip	   *dst;

		writer_new_page(w, SS_PAGE_SKIP);
		dst = (SsSkip *) SsPageContents(w->page);
		for (uint32 k = 0; k < cnt; k++)
		{
			dst[k] = L->skips[first + k];
			dst[k].postblk += hdr->poststart;
		}
		SsPageGetOpaque(w->page)->count = cnt;
		((PageHeader) w->page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + sizeof(SsSkip) * cnt;
		writer_finish_page(w);
	}
}

/* seg_write_norms: the norm pages, each document's field lengths. */
static void
seg_write_norms(SegWriter *w, SsSegBuilder *sb, const SegLayout *L)
{
	for (uint32 p = 0; p < L->nnormpages; p++)
	{
		uint32		first = p * SS_NORMS_PER_PAGE;
		uint32		cnt = Min((uint32) SS_NORMS_PER_PAGE, sb->ndocs - first);
		SsNorm	   *dst;

		writer_new_page(w, SS_PAGE_NORM);
		dst = (SsNorm *) SsPageContents(w->page);
		for (uint32 k = 0; k < cnt; k++)
			memcpy(dst[k].len, sb->docs[first + k].len, sizeof(dst[k].len));
		SsPageGetOpaque(w->page)->count = cnt;
		((PageHeader) w->page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + sizeof(SsNorm) * cnt;
		writer_finish_page(w);
	}
}

/*
 * seg_write_fcol: the facet column, SsFacetEntry by docid, then its
 * dictionary pages (the categories, then the brands, as int64).
 */
static void
seg_write_fcol(SegWriter *w, SsSegBuilder *sb, const SegLayout *L)
{
	uint32		nvals = L->nfcats + L->nfbrands;

	for (uint32 p = 0; p < L->nfcolpages; p++)
	{
		uint32		first = p * SS_FCOL_PER_PAGE;
		uint32		cnt = Min((uint32) SS_FCOL_PER_PAGE, sb->ndocs - first);
		SsFacetEntry *dst;

		writer_new_page(w, SS_PAGE_FCOL);
		dst = (SsFacetEntry *) SsPageContents(w->page);
		for (uint32 k = 0; k < cnt; k++)
		{
			const SsDoc *doc = &sb->docs[first + k];

			dst[k].tid = doc->tid;
			dst[k].flags = SsFacetFlags(doc);
			dst[k].pr = SsFacetPr(doc);
			dst[k].cat = (doc->flags & SS_DOC_HAS_CAT) ?
				int64_ord(L->fcats, L->nfcats, doc->category_id) : 0;
			dst[k].brand = (doc->flags & SS_DOC_HAS_BRAND) ?
				int64_ord(L->fbrands, L->nfbrands, (int64) doc->brand_hash) : 0;
		}
		SsPageGetOpaque(w->page)->count = cnt;
		((PageHeader) w->page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + sizeof(SsFacetEntry) * cnt;
		writer_finish_page(w);
	}
	for (uint32 p = 0; p < L->nfdictpages; p++)
	{
		uint32		first = p * SS_FDICT_PER_PAGE;
		uint32		cnt = Min((uint32) SS_FDICT_PER_PAGE, nvals - first);
		int64	   *dst;

		writer_new_page(w, SS_PAGE_FDICT);
		dst = (int64 *) SsPageContents(w->page);
		for (uint32 k = 0; k < cnt; k++)
			dst[k] = first + k < L->nfcats ? L->fcats[first + k] :
				L->fbrands[first + k - L->nfcats];
		SsPageGetOpaque(w->page)->count = cnt;
		((PageHeader) w->page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + sizeof(int64) * cnt;
		writer_finish_page(w);
	}
}

/* seg_write_gram_dir: the trigram map's entries, in key order. */
static void
seg_write_gram_dir(SegWriter *w, const GramMap *gm, const SsSegHeader *hdr)
{
	for (uint32 p = 0; p < gm->ndirpages; p++)
	{
		uint32		first = p * SS_GRAMS_PER_PAGE;
		uint32		cnt = Min((uint32) SS_GRAMS_PER_PAGE, gm->nused - first);
		SsGramEntry *dst;

		writer_new_page(w, SS_PAGE_GRAMDIR);
		dst = (SsGramEntry *) SsPageContents(w->page);
		for (uint32 k = 0; k < cnt; k++)
		{
			uint32		h = gm->order[first + k];

			dst[k].key = gm->keys[h];
			dst[k].n = gm->n[h];
			dst[k].blk = hdr->gramstart + gm->blk[h];
			dst[k].off = gm->off[h];
			dst[k].pad = 0;
		}
		SsPageGetOpaque(w->page)->count = cnt;
		((PageHeader) w->page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + sizeof(SsGramEntry) * cnt;
		writer_finish_page(w);
	}
}

/*
 * seg_write_gram_lists: each trigram's list of term ordinals (varints),
 * where gram_layout put it.
 */
static void
seg_write_gram_lists(SegWriter *w, const GramMap *gm)
{
	uint32		curblk = 0;
	uint32		off = 0;

	if (gm->ngrampages == 0)
		return;
	writer_new_page(w, SS_PAGE_GRAM);
	for (uint32 k = 0; k < gm->nused; k++)
	{
		uint32		h = gm->order[k];
		const char *p = gm->data + (gm->pos[h] - gm->bytes[h]);
		const char *end = p + gm->bytes[h];
		bool		first = true;

		while (first || p < end)
		{
			int			n = p < end ? varint_size(p) : 0;

			if (SS_PAGE_CAPACITY - off < SS_GRAM_VARINT_MAX)
			{
				((PageHeader) w->page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + off;
				writer_finish_page(w);
				curblk++;
				writer_new_page(w, SS_PAGE_GRAM);
				off = 0;
			}
			if (first && (curblk != gm->blk[h] || off != gm->off[h]))
				elog(ERROR, "shop_search: trigram layout mismatch");
			first = false;
			memcpy(SsPageContents(w->page) + off, p, n);
			off += n;
			p += n;
		}
	}
	((PageHeader) w->page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + off;
	writer_finish_page(w);
	if (curblk + 1 != gm->ngrampages)
		elog(ERROR, "shop_search: trigram layout mismatch");
}

/*
 * SsSegBuilderWrite: write the builder's documents and terms as a new
 * segment at the end of the index; returns its header block.  The caller
 * publishes it in the metapage.  With log_each every page is WAL-logged
 * as it is written (VACUUM); otherwise the caller logs the whole range
 * (CREATE INDEX).  serial goes into the header (SsSegHeader.serial).
 *
 * The whole layout is computed first, so the segment's size is known
 * before a block is taken; then the pages are written in block order.
 */
BlockNumber
SsSegBuilderWrite(SsSegBuilder *sb, Relation index, bool log_each,
				  SsAllocRun alloc, void *alloc_arg, uint64 serial)
{
	SegLayout	L;
	SsSegHeader hdr;
	SegWriter	w;
	bool		needLock = !RELATION_IS_LOCAL(index);

	memset(&hdr, 0, sizeof(hdr));
	seg_reference(sb, index, &hdr);
	seg_order_terms(sb, &L);
	seg_layout_postings(sb, &hdr, &L);
	seg_layout_pages(sb, &L);

	w.index = index;
	w.log_each = log_each;
	w.buf = InvalidBuffer;
	w.page = NULL;
	seg_place(&w, &L, alloc, alloc_arg, needLock);
	seg_fill_header(&hdr, &L, sb->ndocs, serial, w.next);

	seg_write_header(&w, &hdr);
	seg_write_docs(&w, sb, &L);
	seg_write_dict(&w, &L, &hdr);
	seg_write_postings(&w, &L);
	seg_write_skips(&w, &L, &hdr);
	seg_write_norms(&w, sb, &L);
	seg_write_gram_dir(&w, &L.gm, &hdr);
	seg_write_gram_lists(&w, &L.gm);
	seg_write_fcol(&w, sb, &L);

	if (needLock && !w.reuse)
		UnlockRelationForExtension(index, ExclusiveLock);
	pfree(L.terms);
	pfree(L.postblk);
	pfree(L.postoff);
	pfree(L.skipidx);
	pfree(L.skips);
	gram_free(&L.gm);
	pfree(L.fcats);
	pfree(L.fbrands);
	return hdr.docstart - 1;
}
