/*-------------------------------------------------------------------------
 *
 * ssvacuum.c
 *	  shop_search VACUUM: bulk delete marks dead documents, cleanup folds
 *	  the pending list into a new segment and merges segments.
 *
 * ambulkdelete visits every document record (segment doc pages and
 * pending items), asks VACUUM whether its heap TID is dead and sets the
 * document's dead flag with generic WAL.  Scans skip dead documents; their
 * postings stay until the next merge.
 *
 * amvacuumcleanup (SsFlushPending) takes the pending-list lock
 * (heavyweight page lock on the metapage block, exclusive; inserters take
 * it shared), writes the live pending documents as a new segment (every
 * page WAL-logged as written), and publishes it in the metapage with
 * generic WAL, emptying the pending list.  When the index would have
 * SS_MERGE_AT segments, all segments and the pending documents are merged
 * into one instead, dropping dead documents and their postings; the
 * collection statistics are recomputed exactly at that point.
 *
 * An insert that finds SS_PENDING_FLUSH documents pending folds them too
 * (never merging, and only if nobody holds the pending-list lock), so a
 * stream of writes without VACUUM cannot make every scan read a long
 * pending list.  Inserts
 * wait while this runs; scans do not (they read the old pages, which are
 * not reused before every snapshot older than the fold is gone: the
 * released pending pages and merged segments go to the metapage's list of
 * free runs with that horizon).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "access/transam.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/memutils.h"

#include "ssearch.h"

#define SS_MERGE_AT 8

IndexBulkDeleteResult *
ssbulkdelete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
			 IndexBulkDeleteCallback callback, void *callback_state)
{
	Relation	index = info->index;
	SsMetaPageData meta;
	BlockNumber blk;

	if (stats == NULL)
		stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));
	SsReadMeta(index, &meta);

	for (uint32 s = 0; s < meta.nsegments; s++)
	{
		SsSegHeader hdr;

		SsReadSegHeader(index, meta.segments[s].header, &hdr);
		for (uint32 p = 0; p < hdr.ndocpages; p++)
		{
			Buffer		buf = ReadBufferExtended(index, MAIN_FORKNUM, hdr.docstart + p,
												 RBM_NORMAL, info->strategy);
			Page		page;
			SsDoc	   *docs;
			int			cnt;
			int			kill[SS_DOCS_PER_PAGE + 1];
			int			nkill = 0;

			vacuum_delay_point();
			LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
			page = BufferGetPage(buf);
			docs = (SsDoc *) SsPageContents(page);
			cnt = SsPageGetOpaque(page)->count;
			for (int i = 0; i < cnt; i++)
			{
				if (docs[i].flags & SS_DOC_DEAD)
					continue;
				if (callback(&docs[i].tid, callback_state))
					kill[nkill++] = i;
				else
					stats->num_index_tuples += 1;
			}
			if (nkill > 0)
			{
				GenericXLogState *xs = GenericXLogStart(index);
				Page		wpage = GenericXLogRegisterBuffer(xs, buf, 0);
				SsDoc	   *wdocs = (SsDoc *) SsPageContents(wpage);

				for (int k = 0; k < nkill; k++)
					wdocs[kill[k]].flags |= SS_DOC_DEAD;
				GenericXLogFinish(xs);
				stats->tuples_removed += nkill;
			}
			UnlockReleaseBuffer(buf);
		}
	}

	/* pending documents */
	blk = meta.pending_head;
	while (blk != InvalidBlockNumber)
	{
		Buffer		buf = ReadBufferExtended(index, MAIN_FORKNUM, blk, RBM_NORMAL, info->strategy);
		Page		page;
		OffsetNumber maxoff;
		OffsetNumber kill[MaxOffsetNumber];
		int			nkill = 0;

		vacuum_delay_point();
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		page = BufferGetPage(buf);
		maxoff = PageGetMaxOffsetNumber(page);
		for (OffsetNumber off = FirstOffsetNumber; off <= maxoff; off++)
		{
			SsPendItem *it = (SsPendItem *) PageGetItem(page, PageGetItemId(page, off));

			if (it->doc.flags & SS_DOC_DEAD)
				continue;
			if (callback(&it->doc.tid, callback_state))
				kill[nkill++] = off;
			else
				stats->num_index_tuples += 1;
		}
		if (nkill > 0)
		{
			GenericXLogState *xs = GenericXLogStart(index);
			Page		wpage = GenericXLogRegisterBuffer(xs, buf, 0);

			for (int k = 0; k < nkill; k++)
			{
				SsPendItem *it = (SsPendItem *) PageGetItem(wpage, PageGetItemId(wpage, kill[k]));

				it->doc.flags |= SS_DOC_DEAD;
			}
			GenericXLogFinish(xs);
			stats->tuples_removed += nkill;
		}
		blk = SsPageGetOpaque(page)->next;
		UnlockReleaseBuffer(buf);
	}
	stats->num_pages = RelationGetNumberOfBlocks(index);
	return stats;
}

/* ---- folding the pending list in ---- */

typedef struct MergeCtx
{
	SsSegBuilder *sb;
	Relation	index;
	int64	   *map;			/* old docid -> new docid, -1 dead */
	uint32		ndocs;
	const char *term;
	int			len;
} MergeCtx;

static void
merge_posting_cb(void *arg, uint32 docid, uint16 tf)
{
	MergeCtx   *mc = (MergeCtx *) arg;

	if (docid < mc->ndocs && mc->map[docid] >= 0)
		SsSegBuilderAddPosting(mc->sb, mc->term, mc->len, (uint32) mc->map[docid], tf);
}

static void
merge_term_cb(void *arg, const SsDictItem *it)
{
	MergeCtx   *mc = (MergeCtx *) arg;
	char		term[SS_MAX_TERM_LEN + 8];

	memcpy(term, it->term, it->len);
	term[it->len] = '\0';
	mc->term = term;
	mc->len = it->len;
	SsReadPostings(mc->index, it->postblk, it->postoff, it->df, merge_posting_cb, mc);
}

typedef struct PendTerms
{
	SsDocData  *d;
} PendTerms;

static void
pend_term_cb(void *arg, const char *term, int len, uint16 tf)
{
	SsDocData  *d = (SsDocData *) arg;

	d->terms[d->nterms].term = pnstrdup(term, len);
	d->terms[d->nterms].len = len;
	d->terms[d->nterms].tf = tf;
	d->nterms++;
}

/* allocation of the new segment's run from the metapage copy */
typedef struct FlushAlloc
{
	SsMetaPageData *meta;
	int			slot;
	uint32		nblocks;
} FlushAlloc;

static BlockNumber
flush_alloc(void *arg, uint32 nblocks)
{
	FlushAlloc *fa = (FlushAlloc *) arg;

	fa->slot = SsFreeFind(fa->meta, nblocks);
	fa->nblocks = nblocks;
	return fa->slot >= 0 ? fa->meta->free[fa->slot].start : InvalidBlockNumber;
}

/*
 * SsFlushPending: fold the pending list into a new segment (or merge
 * everything into one segment, see above).  Returns quietly when there is
 * nothing to do.
 */
void
SsFlushPending(Relation index, bool from_insert)
{
	SsMetaPageData meta;
	SsSegBuilder *sb;
	MemoryContext cxt,
				old;
	bool		merge;
	BlockNumber blk;
	BlockNumber hdrblk = InvalidBlockNumber;
	uint32		nnew;
	double		sumlen[SS_NFIELDS] = {0, 0, 0};
	float4		maxpop = 0;
	Buffer		metabuf;
	GenericXLogState *xs;
	SsMetaPage	m;
	FlushAlloc	fa;
	BlockNumber *pendblks;
	int			npend,
				maxpend;
	FullTransactionId freed;

	if (from_insert)
	{
		/* someone else folding (or inserting) already: leave it to them */
		if (!ConditionalLockPage(index, SS_METAPAGE_BLKNO, ExclusiveLock))
			return;
	}
	else
		LockPage(index, SS_METAPAGE_BLKNO, ExclusiveLock);
	SsReadMeta(index, &meta);
	/* inserts never merge (too slow for a statement); VACUUM does */
	merge = !from_insert && meta.nsegments + 1 >= SS_MERGE_AT;
	if (meta.pending_head == InvalidBlockNumber && !merge)
	{
		UnlockPage(index, SS_METAPAGE_BLKNO, ExclusiveLock);
		return;
	}
	if (from_insert && (meta.npending < SS_PENDING_FLUSH || meta.nsegments + 2 >= SS_MAX_SEGMENTS))
	{
		UnlockPage(index, SS_METAPAGE_BLKNO, ExclusiveLock);
		return;
	}
	cxt = AllocSetContextCreate(CurrentMemoryContext, "shop_search flush", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	sb = SsSegBuilderCreate(cxt);

	if (merge)
	{
		for (uint32 s = 0; s < meta.nsegments; s++)
		{
			SsSegHeader hdr;
			MergeCtx	mc;

			SsReadSegHeader(index, meta.segments[s].header, &hdr);
			mc.sb = sb;
			mc.index = index;
			mc.ndocs = hdr.ndocs;
			mc.map = MemoryContextAllocHuge(cxt, sizeof(int64) * Max(hdr.ndocs, 1));
			for (uint32 d = 0; d < hdr.ndocs; d++)
			{
				SsDoc		doc;

				if (d % SS_DOCS_PER_PAGE == 0)
					CHECK_FOR_INTERRUPTS();
				SsReadDoc(index, &hdr, d, &doc);
				if (doc.flags & SS_DOC_DEAD)
				{
					mc.map[d] = -1;
					continue;
				}
				mc.map[d] = SsSegBuilderAddDoc(sb, &doc);
				for (int f = 0; f < SS_NFIELDS; f++)
					sumlen[f] += doc.len[f];
				maxpop = Max(maxpop, doc.popularity);
			}
			SsDictScanRange(index, &hdr, "", 0, merge_term_cb, &mc, NULL);
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
		maxoff = PageGetMaxOffsetNumber(page);
		for (OffsetNumber off = FirstOffsetNumber; off <= maxoff; off++)
		{
			SsPendItem *it = (SsPendItem *) PageGetItem(page, PageGetItemId(page, off));
			SsDocData	d;

			if (it->doc.flags & SS_DOC_DEAD)
				continue;
			d.doc = it->doc;
			d.nterms = 0;
			d.terms = palloc(sizeof(SsDocTerm) * Max(it->nterms, 1));
			SsPendItemTerms(it, pend_term_cb, &d);
			SsSegBuilderAdd(sb, &d);
			for (int f = 0; f < SS_NFIELDS; f++)
				sumlen[f] += d.doc.len[f];
			maxpop = Max(maxpop, d.doc.popularity);
		}
		blk = SsPageGetOpaque(page)->next;
		UnlockReleaseBuffer(buf);
	}

	nnew = SsSegBuilderNDocs(sb);
	fa.meta = &meta;
	fa.slot = -1;
	if (nnew > 0)
		hdrblk = SsSegBuilderWrite(sb, index, true, flush_alloc, &fa);

	/* the pending pages folded in, to release */
	npend = 0;
	pendblks = palloc(sizeof(BlockNumber) * 64);
	maxpend = 64;
	for (blk = meta.pending_head; blk != InvalidBlockNumber;)
	{
		Buffer		buf = ReadBuffer(index, blk);

		LockBuffer(buf, BUFFER_LOCK_SHARE);
		if (npend >= maxpend)
		{
			maxpend *= 2;
			pendblks = repalloc(pendblks, sizeof(BlockNumber) * maxpend);
		}
		pendblks[npend++] = blk;
		blk = SsPageGetOpaque(BufferGetPage(buf))->next;
		UnlockReleaseBuffer(buf);
	}

	/* publish */
	metabuf = ReadBuffer(index, SS_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	xs = GenericXLogStart(index);
	m = SsPageGetMeta(GenericXLogRegisterBuffer(xs, metabuf, 0));
	freed = ReadNextFullTransactionId();
	if (fa.slot >= 0)
	{
		/* the run the new segment took (found in our copy; unchanged since) */
		Assert(m->free[fa.slot].start == fa.meta->free[fa.slot].start);
		(void) SsFreeTake(m, fa.slot, fa.nblocks);
	}
	for (int i = 0; i < npend; i++)
		SsFreeAdd(m, pendblks[i], 1, freed);
	if (merge)
	{
		for (uint32 k = 0; k < m->nsegments; k++)
		{
			SsSegHeader oh;

			SsReadSegHeader(index, m->segments[k].header, &oh);
			SsFreeAdd(m, m->segments[k].header, SsSegmentBlocks(&oh), freed);
		}
		m->nsegments = 0;
		m->ndocs = nnew;
		for (int f = 0; f < SS_NFIELDS; f++)
			m->sumlen[f] = sumlen[f];
		m->max_popularity = maxpop;
	}
	if (nnew > 0)
	{
		m->segments[m->nsegments].header = hdrblk;
		m->segments[m->nsegments].ndocs = nnew;
		m->nsegments++;
	}
	m->pending_head = InvalidBlockNumber;
	m->pending_tail = InvalidBlockNumber;
	m->npending = 0;
	GenericXLogFinish(xs);
	UnlockReleaseBuffer(metabuf);
	UnlockPage(index, SS_METAPAGE_BLKNO, ExclusiveLock);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

IndexBulkDeleteResult *
ssvacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	Relation	index = info->index;

	if (info->analyze_only)
		return stats;
	SsFlushPending(index, false);
	if (stats == NULL)
	{
		SsMetaPageData meta;

		stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));
		SsReadMeta(index, &meta);
		stats->num_index_tuples = (double) meta.ndocs;
		stats->estimated_count = true;
	}
	stats->num_pages = RelationGetNumberOfBlocks(index);
	return stats;
}
