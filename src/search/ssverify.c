/*-------------------------------------------------------------------------
 *
 * ssverify.c
 *	  shop.search_verify: check a shop_search index against its table,
 *	  in the spirit of amcheck's heapallindexed.
 *
 * Every row visible to a fresh snapshot must have exactly one live index
 * document, under the root TID of its HOT chain, whose stored values
 * (category, price, brand hash, rating, stock, popularity, field lengths)
 * equal what the index expression gives now.  Every live index document
 * must point at a used heap line pointer.  Documents of rows that are
 * dead but not yet vacuumed are not reported: VACUUM removes them.
 *
 * Problems come back as rows (kind, ctid, detail):
 *   missing    a visible row has no index document
 *   duplicate  two live documents carry the same TID
 *   mismatch   the stored values differ from the row's
 *   extra      a document points at an unused or nonexistent line pointer
 *   corrupt    a page or header is not what the format says, or a
 *              segment's derived structures disagree with its postings:
 *              documents out of popularity order, norms that are not the
 *              documents' lengths, postings out of order, a skip entry
 *              whose position, last docid or score bound is wrong (the
 *              pruning of ranked scans trusts all of these), a filter
 *              term that misses or misplaces a document, a facet column
 *              entry that is not its document's
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "shop.h"
#include "ssearch.h"

PG_FUNCTION_INFO_V1(shop_search_verify);

typedef struct VEntry
{
	ItemPointerData tid;
	SsDoc		doc;
	bool		seen;
} VEntry;

typedef struct VState
{
	VEntry	   *e;
	int			n;
	int			max;
	Tuplestorestate *ts;
	TupleDesc	desc;
	const char *language;
	MemoryContext tmp;
	int64		problems;
} VState;

static void
report(VState *vs, const char *kind, ItemPointer tid, const char *detail)
{
	Datum		v[3];
	bool		nulls[3] = {false, false, false};

	v[0] = CStringGetTextDatum(kind);
	if (tid)
	{
		ItemPointer t = palloc(sizeof(ItemPointerData));

		*t = *tid;
		v[1] = PointerGetDatum(t);
	}
	else
		nulls[1] = true;
	v[2] = CStringGetTextDatum(detail);
	tuplestore_putvalues(vs->ts, vs->desc, v, nulls);
	vs->problems++;
}

/* ---- one segment's derived structures ---- */

#define SEG_REPORT_MAX 20		/* corrupt reports per segment */

typedef struct PostList
{
	uint32	   *docs;
	uint16	   *tfs;
	uint32		n;
	uint32		max;
} PostList;

static void
postlist_cb(void *arg, uint32 docid, uint16 tf)
{
	PostList   *pl = (PostList *) arg;

	if (pl->n >= pl->max)
	{
		pl->max = Max(256, pl->max * 2);
		pl->docs = pl->docs ? repalloc_huge(pl->docs, sizeof(uint32) * pl->max)
			: palloc(sizeof(uint32) * pl->max);
		pl->tfs = pl->tfs ? repalloc_huge(pl->tfs, sizeof(uint16) * pl->max)
			: palloc(sizeof(uint16) * pl->max);
	}
	pl->docs[pl->n] = docid;
	pl->tfs[pl->n] = tf;
	pl->n++;
}

typedef struct SegCheck
{
	VState	   *vs;
	Relation	index;
	SsSegHeader *hdr;
	uint32		seg;
	SsDoc	   *docs;
	SsNorm	   *norms;
	bool	   *catseen;
	bool	   *brandseen;
	bool	   *headseen;
	int			reports;
	PostList	pl;
	PostList	bl;
} SegCheck;

static void
seg_report(SegCheck *sc, const char *detail)
{
	if (sc->reports++ < SEG_REPORT_MAX)
		report(sc->vs, "corrupt", NULL, psprintf("segment %u: %s", sc->seg, detail));
}

/* the weighted tf' of a posting under the segment's reference weights */
static double
ref_t(const SsSegHeader *hdr, uint16 tf, const uint16 *len)
{
	int			tfs[SS_NFIELDS] = {SS_TF_TITLE(tf), SS_TF_BRAND(tf), SS_TF_DESC(tf)};
	double		t = 0;

	for (int f = 0; f < SS_NFIELDS; f++)
		if (tfs[f] > 0)
			t += hdr->refw[f] * tfs[f] /
				(1.0 - SS_FIELD_B(f) + SS_FIELD_B(f) * len[f] / hdr->refavg[f]);
	return t;
}

static void
term_check_cb(void *arg, const SsDictItem *it)
{
	SegCheck   *sc = (SegCheck *) arg;
	const SsSegHeader *hdr = sc->hdr;
	char		term[SS_MAX_TERM_LEN + 8];
	uint32		nblocks = (it->df + SS_BLOCK_POSTINGS - 1) / SS_BLOCK_POSTINGS;
	SsSkip	   *skips;

	CHECK_FOR_INTERRUPTS();
	memcpy(term, it->term, it->len);
	term[it->len] = '\0';
	sc->pl.n = 0;
	SsReadPostings(sc->index, it->postblk, it->postoff, it->df, postlist_cb, &sc->pl);
	for (uint32 k = 0; k < sc->pl.n; k++)
		if (sc->pl.docs[k] >= hdr->ndocs || (k > 0 && sc->pl.docs[k] <= sc->pl.docs[k - 1]))
		{
			seg_report(sc, psprintf("postings of term \"%s\" out of order or range", term));
			return;
		}

	/*
	 * filter terms: each document under its own category and brand
	 * (attribute terms are not checked here: the rows are checked exactly
	 * where they filter, sssort.c)
	 */
	if (it->len > 1 && term[0] == SS_FILTER_MARK && term[1] != 'a')
	{
		char		want[SS_FILTER_TERM_MAX];

		for (uint32 k = 0; k < sc->pl.n; k++)
		{
			const SsDoc *d = &sc->docs[sc->pl.docs[k]];
			bool		ok;

			if (term[1] == 'c')
				ok = (d->flags & SS_DOC_HAS_CAT) &&
					SsCategoryTerm(d->category_id, want) == it->len &&
					memcmp(want, term, it->len) == 0;
			else if (term[1] == 'h')
				ok = d->head != 0 &&
					SsHeadTerm(d->head, want) == it->len &&
					memcmp(want, term, it->len) == 0;
			else
				ok = (d->flags & SS_DOC_HAS_BRAND) &&
					SsBrandTerm(d->brand_hash, want) == it->len &&
					memcmp(want, term, it->len) == 0;
			if (!ok)
			{
				seg_report(sc, psprintf("filter term of document %u is not its own", sc->pl.docs[k]));
				return;
			}
			if (term[1] == 'c')
				sc->catseen[sc->pl.docs[k]] = true;
			else if (term[1] == 'h')
				sc->headseen[sc->pl.docs[k]] = true;
			else
				sc->brandseen[sc->pl.docs[k]] = true;
		}
	}

	/* skip entries: position, last docid, bound */
	if (nblocks > 1 && (uint64) it->skip + nblocks > hdr->nskips)
	{
		seg_report(sc, psprintf("skip entries of term \"%s\" out of range", term));
		return;
	}
	skips = palloc(sizeof(SsSkip) * Max(nblocks, 1));
	SsTermSkips(sc->index, hdr, it->df, it->postblk, it->postoff, it->skip, skips);
	for (uint32 b = 0; b < nblocks; b++)
	{
		uint32		first = b * SS_BLOCK_POSTINGS;
		uint32		cnt = Min((uint32) SS_BLOCK_POSTINGS, it->df - first);
		uint32		prev = b == 0 ? 0 : skips[b - 1].lastdoc;
		double		maxt = 0;

		if (skips[b].lastdoc != sc->pl.docs[first + cnt - 1])
		{
			seg_report(sc, psprintf("skip entry %u of term \"%s\": wrong last docid", b, term));
			break;
		}
		sc->bl.n = 0;
		SsReadPostings(sc->index, skips[b].postblk, skips[b].postoff, cnt, postlist_cb, &sc->bl);
		for (uint32 k = 0; k < cnt; k++)
			if (sc->bl.docs[k] + prev != sc->pl.docs[first + k] || sc->bl.tfs[k] != sc->pl.tfs[first + k])
			{
				seg_report(sc, psprintf("skip entry %u of term \"%s\": wrong position", b, term));
				pfree(skips);
				return;
			}
		for (uint32 k = 0; k < cnt; k++)
			maxt = Max(maxt, ref_t(hdr, sc->pl.tfs[first + k], sc->norms[sc->pl.docs[first + k]].len));
		if (maxt > skips[b].maxt * (1 + 1e-5) + 1e-6)
		{
			seg_report(sc, psprintf("skip entry %u of term \"%s\": score bound %g below a posting's %g",
									b, term, skips[b].maxt, maxt));
			break;
		}
	}
	pfree(skips);
}

/*
 * The facet column (fcol and fdict pages) against the document records
 * sc->docs: every entry's TID, flags (the dead flag too), buckets and
 * the category and brand its ordinals name.
 */
static void
verify_fcol(SegCheck *sc)
{
	Relation	index = sc->index;
	const SsSegHeader *hdr = sc->hdr;
	uint32		nc = hdr->fcolncats,
				nb = hdr->fcolnbrands;
	int64	   *vals;
	int			bad = 0;

	if (hdr->nfcolpages == 0 && hdr->ndocs == 0)
		return;					/* no documents: no column */
	if (hdr->nfcolpages == 0)
	{
		/* no column: only for a segment of too many categories or brands */
		int64	   *c = palloc_extended(sizeof(int64) * Max(hdr->ndocs, 1), MCXT_ALLOC_HUGE);
		int64	   *b = palloc_extended(sizeof(int64) * Max(hdr->ndocs, 1), MCXT_ALLOC_HUGE);
		uint32		n1 = 0,
					n2 = 0;

		for (uint32 d = 0; d < hdr->ndocs; d++)
		{
			if (sc->docs[d].flags & SS_DOC_HAS_CAT)
				c[n1++] = sc->docs[d].category_id;
			if (sc->docs[d].flags & SS_DOC_HAS_BRAND)
				b[n2++] = sc->docs[d].brand_hash;
		}
		if (hdr->nfdictpages != 0 ||
			(SsInt64Unique(c, n1) <= SS_FCOL_MAX_ORD && SsInt64Unique(b, n2) <= SS_FCOL_MAX_ORD))
			seg_report(sc, "facet column missing");
		pfree(c);
		pfree(b);
		return;
	}
	if ((uint64) hdr->fcolstart + hdr->nfcolpages + hdr->nfdictpages > RelationGetNumberOfBlocks(index) ||
		hdr->nfcolpages != (hdr->ndocs + SS_FCOL_PER_PAGE - 1) / SS_FCOL_PER_PAGE ||
		(uint64) nc + nb > (uint64) hdr->nfdictpages * SS_FDICT_PER_PAGE ||
		nc > SS_FCOL_MAX_ORD || nb > SS_FCOL_MAX_ORD)
	{
		seg_report(sc, "facet column pages out of range");
		return;
	}
	vals = palloc(sizeof(int64) * Max(nc + nb, 1));
	for (uint32 p = 0; p < hdr->nfdictpages; p++)
	{
		Buffer		buf = SsReadPage(index, hdr->fcolstart + hdr->nfcolpages + p, BUFFER_LOCK_SHARE,
									 SS_PAGE_FDICT, NULL);
		uint32		first = p * SS_FDICT_PER_PAGE;
		uint32		cnt = Min((uint32) SS_FDICT_PER_PAGE, nc + nb - first);

		memcpy(&vals[first], SsPageContents(BufferGetPage(buf)), sizeof(int64) * cnt);
		UnlockReleaseBuffer(buf);
	}
	for (uint32 i = 1; i < nc + nb; i++)
		if (i != nc && vals[i] <= vals[i - 1])
		{
			seg_report(sc, psprintf("facet dictionary value %u out of order", i));
			break;
		}
	for (uint32 p = 0; p < hdr->nfcolpages && bad < 3; p++)
	{
		Buffer		buf = SsReadPage(index, hdr->fcolstart + p, BUFFER_LOCK_SHARE, SS_PAGE_FCOL, NULL);
		Page		page = BufferGetPage(buf);
		const SsFacetEntry *e = (const SsFacetEntry *) SsPageContents(page);
		uint32		first = p * SS_FCOL_PER_PAGE;
		uint32		cnt = Min((uint32) SS_FCOL_PER_PAGE, hdr->ndocs - first);

		if (SsPageGetOpaque(page)->count != cnt)
		{
			seg_report(sc, psprintf("facet column page %u holds %u entries, not %u",
									p, SsPageGetOpaque(page)->count, cnt));
			bad++;
			UnlockReleaseBuffer(buf);
			continue;
		}
		for (uint32 k = 0; k < cnt && bad < 3; k++)
		{
			const SsDoc *doc = &sc->docs[first + k];
			bool		ok;

			uint8		f = SsFacetFlags(doc);

			/*
			 * Bulk delete sets both dead flags in one WAL record, and the
			 * record was read first: a dead entry of a live record is a
			 * bulk delete that ran since, if the record is dead now
			 */
			if ((e[k].flags & SS_FC_DEAD) && !(f & SS_FC_DEAD))
			{
				SsDoc		now;

				SsReadDoc(index, hdr, first + k, &now);
				if (now.flags & SS_DOC_DEAD)
					f |= SS_FC_DEAD;
			}
			ok = ItemPointerEquals((ItemPointer) &e[k].tid, (ItemPointer) &doc->tid) &&
				e[k].flags == f && e[k].pr == SsFacetPr(doc);
			if (ok && (doc->flags & SS_DOC_HAS_CAT))
				ok = e[k].cat < nc && vals[e[k].cat] == doc->category_id;
			if (ok && (doc->flags & SS_DOC_HAS_BRAND))
				ok = e[k].brand < nb && vals[nc + e[k].brand] == (int64) doc->brand_hash;
			if (!ok)
			{
				seg_report(sc, psprintf("facet column entry of document %u differs from its record",
										first + k));
				bad++;
			}
		}
		UnlockReleaseBuffer(buf);
	}
	pfree(vals);
}

static void
verify_segment(VState *vs, Relation index, SsSegHeader *hdr, uint32 seg)
{
	SegCheck	sc;

	memset(&sc, 0, sizeof(sc));
	sc.vs = vs;
	sc.index = index;
	sc.hdr = hdr;
	sc.seg = seg;
	if (hdr->normstart + hdr->nnormpages > RelationGetNumberOfBlocks(index) ||
		hdr->nnormpages != (hdr->ndocs + SS_NORMS_PER_PAGE - 1) / SS_NORMS_PER_PAGE)
	{
		seg_report(&sc, "norm pages out of range");
		return;
	}
	sc.docs = palloc_extended(sizeof(SsDoc) * Max(hdr->ndocs, 1), MCXT_ALLOC_HUGE);
	sc.norms = palloc_extended(sizeof(SsNorm) * Max(hdr->ndocs, 1), MCXT_ALLOC_HUGE);
	sc.catseen = palloc_extended(Max(hdr->ndocs, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	sc.brandseen = palloc_extended(Max(hdr->ndocs, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	sc.headseen = palloc_extended(Max(hdr->ndocs, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (uint32 p = 0; p < hdr->nnormpages; p++)
	{
		Buffer		buf = SsReadPage(index, hdr->normstart + p, BUFFER_LOCK_SHARE, SS_PAGE_NORM, NULL);
		uint32		first = p * SS_NORMS_PER_PAGE;
		uint32		cnt = Min((uint32) SS_NORMS_PER_PAGE, hdr->ndocs - first);

		memcpy(&sc.norms[first], SsPageContents(BufferGetPage(buf)), sizeof(SsNorm) * cnt);
		UnlockReleaseBuffer(buf);
	}
	for (uint32 d = 0; d < hdr->ndocs; d++)
	{
		SsReadDoc(index, hdr, d, &sc.docs[d]);
		if (d > 0 && sc.docs[d].logpop > sc.docs[d - 1].logpop)
			seg_report(&sc, psprintf("document %u is more popular than the one before it", d));
		if (memcmp(sc.docs[d].len, sc.norms[d].len, sizeof(sc.norms[d].len)) != 0)
			seg_report(&sc, psprintf("norms of document %u differ from its lengths", d));
	}
	verify_fcol(&sc);
	SsDictScanRange(index, hdr, "", 0, term_check_cb, &sc, NULL);
	for (uint32 d = 0; d < hdr->ndocs; d++)
		if (((sc.docs[d].flags & SS_DOC_HAS_CAT) && !sc.catseen[d]) ||
			((sc.docs[d].flags & SS_DOC_HAS_BRAND) && !sc.brandseen[d]) ||
			(sc.docs[d].head != 0 && !sc.headseen[d]))
			seg_report(&sc, psprintf("document %u is missing from its filter terms", d));
	if (sc.reports > SEG_REPORT_MAX)
		report(vs, "corrupt", NULL, psprintf("segment %u: %d more problems", seg, sc.reports - SEG_REPORT_MAX));
	pfree(sc.docs);
	pfree(sc.norms);
	pfree(sc.catseen);
	pfree(sc.brandseen);
	pfree(sc.headseen);
}


static void
add_entry(VState *vs, const SsDoc *doc)
{
	if (vs->n >= vs->max)
	{
		vs->max *= 2;
		vs->e = repalloc_huge(vs->e, sizeof(VEntry) * vs->max);
	}
	vs->e[vs->n].tid = doc->tid;
	vs->e[vs->n].doc = *doc;
	vs->e[vs->n].seen = false;
	vs->n++;
}

static int
ventry_cmp(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) &((const VEntry *) a)->tid,
							  (ItemPointer) &((const VEntry *) b)->tid);
}

/* the same stored float: equal, or both NaN (NaN == NaN is false in C) */
static inline bool
float4_same(float4 a, float4 b)
{
	return a == b || (isnan(a) && isnan(b));
}

static bool
docs_equal(const SsDoc *a, const SsDoc *b)
{
	uint16		mask = (uint16) ~SS_DOC_DEAD;

	return (a->flags & mask) == (b->flags & mask) &&
		a->category_id == b->category_id &&
		a->created_at == b->created_at &&
		a->tie_id == b->tie_id &&
		a->count == b->count &&
		a->price_cents == b->price_cents &&
		a->brand_hash == b->brand_hash &&
		float4_same(a->rating, b->rating) &&
		float4_same(a->popularity, b->popularity) &&
		float4_same(a->logpop, b->logpop) &&
		memcmp(a->len, b->len, sizeof(a->len)) == 0;
}

static void
verify_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
				bool tupleIsAlive, void *state)
{
	VState	   *vs = (VState *) state;
	VEntry		key;
	VEntry	   *hit;
	MemoryContext old;

	if (isnull[0])
		return;
	key.tid = *tid;
	hit = bsearch(&key, vs->e, vs->n, sizeof(VEntry), ventry_cmp);
	if (hit == NULL)
	{
		report(vs, "missing", tid, "row has no index document");
		return;
	}
	hit->seen = true;
	old = MemoryContextSwitchTo(vs->tmp);
	{
		SsDocData	d;

		SsDocFromDatum(values[0], vs->language, &d);
		SsDocIncludes(index, values, isnull, &d);
		if (!docs_equal(&d.doc, &hit->doc))
		{
			MemoryContextSwitchTo(old);
			report(vs, "mismatch", tid, "stored values differ from the row");
			old = MemoryContextSwitchTo(vs->tmp);
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(vs->tmp);
}

/*
 * shop.search_verify(index regclass) -> TABLE(kind text, ctid tid, detail text):
 * no rows when the index agrees with its table.
 */
Datum
shop_search_verify(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			indexoid = PG_GETARG_OID(0);
	Relation	index,
				heap;
	SsMetaPageData meta;
	VState		vs;
	IndexInfo  *ii;
	BlockNumber blk;
	BlockNumber nheap;

	InitMaterializedSRF(fcinfo, 0);
	memset(&vs, 0, sizeof(vs));
	vs.ts = rsinfo->setResult;
	vs.desc = rsinfo->setDesc;
	vs.max = 1024;
	vs.e = palloc(sizeof(VEntry) * vs.max);
	vs.tmp = AllocSetContextCreate(CurrentMemoryContext, "shop_search verify", ALLOCSET_DEFAULT_SIZES);

	index = SsOpenIndex(indexoid, &heap);
	vs.language = SsIndexLanguage(index);
	SsReadMeta(index, &meta);

	/* every live document of the index */
	for (uint32 s = 0; s < meta.nsegments; s++)
	{
		SsSegHeader hdr;

		SsReadSegHeader(index, meta.segments[s].header, &hdr);
		if (hdr.ndocs != meta.segments[s].ndocs ||
			hdr.docstart + hdr.ndocpages > RelationGetNumberOfBlocks(index))
		{
			report(&vs, "corrupt", NULL, psprintf("segment %u header disagrees with the metapage", s));
			continue;
		}
		verify_segment(&vs, index, &hdr, s);
		for (uint32 d = 0; d < hdr.ndocs; d++)
		{
			SsDoc		doc;

			SsReadDoc(index, &hdr, d, &doc);
			if (!(doc.flags & SS_DOC_DEAD))
				add_entry(&vs, &doc);
		}
	}
	blk = meta.pending_head;
	while (blk != InvalidBlockNumber)
	{
		Buffer		buf = ReadBuffer(index, blk);
		Page		page;
		OffsetNumber maxoff;

		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		if (!(SsPageGetOpaque(page)->flags & SS_PAGE_PENDING))
		{
			UnlockReleaseBuffer(buf);
			report(&vs, "corrupt", NULL, psprintf("block %u in the pending list is not a pending page", blk));
			break;
		}
		maxoff = PageGetMaxOffsetNumber(page);
		for (OffsetNumber off = FirstOffsetNumber; off <= maxoff; off++)
		{
			SsPendItem *it = (SsPendItem *) PageGetItem(page, PageGetItemId(page, off));

			if (!(it->doc.flags & SS_DOC_DEAD))
				add_entry(&vs, &it->doc);
		}
		blk = SsPageGetOpaque(page)->next;
		UnlockReleaseBuffer(buf);
	}
	if (vs.n > 1)
		qsort(vs.e, vs.n, sizeof(VEntry), ventry_cmp);
	for (int i = 1; i < vs.n; i++)
		if (ItemPointerEquals(&vs.e[i].tid, &vs.e[i - 1].tid))
			report(&vs, "duplicate", &vs.e[i].tid, "two live documents for one row");

	/* every row visible now, by its HOT chain root */
	ii = BuildIndexInfo(index);
	ii->ii_Concurrent = true;	/* MVCC snapshot: rows visible now */
	table_index_build_scan(heap, index, ii, false, false, verify_callback, &vs, NULL);

	/* documents no visible row claimed: fine if the row is merely dead */
	nheap = RelationGetNumberOfBlocks(heap);
	for (int i = 0; i < vs.n; i++)
	{
		BlockNumber hb;
		OffsetNumber ho;
		Buffer		buf;
		Page		page;
		bool		bad;

		if (vs.e[i].seen)
			continue;
		hb = ItemPointerGetBlockNumber(&vs.e[i].tid);
		ho = ItemPointerGetOffsetNumber(&vs.e[i].tid);
		if (hb >= nheap)
		{
			report(&vs, "extra", &vs.e[i].tid, "document points past the end of the table");
			continue;
		}
		buf = ReadBuffer(heap, hb);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		bad = ho > PageGetMaxOffsetNumber(page) || !ItemIdIsUsed(PageGetItemId(page, ho));
		UnlockReleaseBuffer(buf);
		if (bad)
			report(&vs, "extra", &vs.e[i].tid, "document points at an unused line pointer");
	}
	table_close(heap, AccessShareLock);
	index_close(index, AccessShareLock);
	MemoryContextDelete(vs.tmp);
	return (Datum) 0;
}
