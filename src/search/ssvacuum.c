/*-------------------------------------------------------------------------
 *
 * ssvacuum.c
 *	  shop_search VACUUM: bulk delete marks dead documents, cleanup folds
 *	  the pending list into a new segment, merges segments and truncates
 *	  the free end of the relation.  The locking protocol of the whole
 *	  access method is described here.
 *
 * ambulkdelete visits every document record (segment doc pages and
 * pending items), asks VACUUM whether its heap TID is dead and sets the
 * document's dead flag with generic WAL; if it flagged any, it adds one to
 * the metapage's count of bulk deletes as it ends (R6 below).  Scans skip
 * dead documents; their postings stay until the next merge.
 *
 * amvacuumcleanup (SsFlushPending) takes the pending-list lock
 * exclusively, writes the live pending documents as a new segment (every
 * page WAL-logged as written), and publishes it in the metapage with
 * generic WAL, emptying the pending list.  When the index would have
 * SS_MERGE_AT segments, all segments and the pending documents are merged
 * into one instead, dropping dead documents and their postings; the
 * collection statistics are recomputed exactly at that point.  VACUUM
 * also merges when that moves the segments into the lower half of the
 * relation (compaction_pays).  Last, truncate_tail cuts the relation
 * past the last block still in use.
 *
 * An insert that finds SS_PENDING_FLUSH documents pending folds them too
 * (only if nobody holds the pending-list lock; from SS_PENDING_WAIT on it
 * waits for the lock), so a stream of writes without VACUUM cannot make
 * every scan read a long pending list.
 *
 * Every fold is tiered: the pending documents are merged with the last
 * segments while the next one back holds at most twice what is merged so
 * far (a binary counter: about log2(N / 500) segments, each document
 * rewritten about as many times), so a stream of small writes leaves a
 * few segments, not hundreds; a fold run by an insert merges at most
 * SS_INSERT_MERGE_MAX documents, so no statement pays for a large merge.
 *
 * Locking protocol
 * ----------------
 * Locks:
 *   - the pending-list lock: a heavyweight page lock on the metapage block
 *     (LockPage(index, 0)).  Share: an insert appending to the pending
 *     list (and taking a free block for a new pending page); bulk delete
 *     while it works on one document page, and on the pending list.
 *     Exclusive: a fold or merge (SsFlushPending), truncation
 *     (truncate_tail).
 *   - buffer locks, one at a time, except an insert (metapage, then the
 *     pending tail, then a new page) and a fold's publication (metapage).
 *   - no lock at all for scans: they hold a registered MVCC snapshot.
 *
 * Rules:
 *   R1. Blocks are released (become free runs) only by a fold or merge:
 *       one generic-WAL change of the metapage, under the exclusive
 *       pending-list lock, removes every reference to them and records
 *       the release point "freed" (the next transaction id).  The same
 *       change adds one to the metapage's generation and publishes the
 *       new segment stamped with it (SsSegHeader.serial), so a segment is
 *       named for good by (header block, serial).
 *   R2. A released block is written again (reused for a new pending page
 *       or segment, or truncated away) only when no snapshot older than
 *       "freed" exists (GlobalVisCheckRemovableFullXid), under the
 *       pending-list lock (share for an insert's pending page, exclusive
 *       otherwise), and after a WAL record that makes a hot standby cancel
 *       its queries old enough to read it (see "Hot standby" below).
 *   R3. A reader uses only blocks reachable from a metapage it read, and
 *       only while one of these holds: it holds the pending-list lock
 *       (any mode) since it read that metapage (nothing it reaches can be
 *       released, R1); or it took its MVCC snapshot before reading that
 *       metapage (nothing it reaches can be reused or truncated before it
 *       ends, R2).  Inserts, folds, merges, truncation and bulk delete are
 *       of the first kind; index scans (ordered and bitmap), facets,
 *       suggestions and shop.search_verify of the second.
 *   R4. Every reader checks a page's type before interpreting it
 *       (SsCheckPage): a violation of R1-R3 or damage raises XX001, it is
 *       never read as something else.
 *   R5. Dead flags are set only under the share pending-list lock plus an
 *       exclusive buffer lock, and folds copy documents (with their dead
 *       flags) only under the exclusive pending-list lock: a flag is set
 *       either before a fold copies the document (the copy has it) or on
 *       a document of a segment still listed (R1), never on a copy that
 *       was already taken.
 *   R6. A bulk delete that flagged any document adds one to the
 *       metapage's "bulkdeletes" when it ends, before VACUUM frees the
 *       heap line pointers of those documents and marks their pages
 *       all-visible.  A reader holding copies of documents taken after it
 *       read the count (facets, ssfunc.c) that finds the count unchanged
 *       after its visibility-map reads knows that no copy it holds was of
 *       a row VACUUM removed meanwhile.  A copy carries the dead flag of
 *       the moment it was taken: without R6, a page VACUUM marked
 *       all-visible after flagging a copied document would let the copy
 *       be counted as a visible row.
 *
 * Bulk delete must see every document indexed before it started, also
 * those that a concurrent fold moves into a new segment, and must never
 * read a released block.  It does not hold the pending-list lock for its
 * whole run (folds would then wait for a VACUUM that may sleep for
 * minutes under cost-based delay, and every scan would read the growing
 * pending list meanwhile).  Instead it works segment by segment, by
 * identity: under the share lock it reads the metapage and picks a listed
 * segment whose (header block, serial) it has not finished, and processes
 * its document pages one at a time, releasing the lock between pages
 * (there it sleeps for vacuum_delay_point).  After re-taking the lock it
 * checks the metapage generation: unchanged, the segment is still listed;
 * changed, it looks the segment up, and if a fold merged it away, it
 * leaves it unfinished: its documents, with the flags set so far (R5),
 * now live in a newer segment, which it has not finished either and will
 * pick.  When every listed segment is finished it processes the pending
 * list, still under the lock it picked with, so no fold runs in between.
 * A fold adds at most one segment per SS_PENDING_FLUSH inserts, so the
 * extra work is bounded by what the folds themselves rewrote.  Documents
 * of a revisited segment are handed to the callback again: VACUUM's
 * callback is a lookup, and REINDEX CONCURRENTLY's validate_index (which
 * collects every TID through ambulkdelete) skips duplicates.
 * num_index_tuples counts the live documents of the segments and pending
 * list listed at the end.
 *
 * Interleavings:
 *   - insert and bulk delete: both take the share lock; the insert holds
 *     the metapage and the tail's buffer lock, bulk delete one pending or
 *     document page: no order conflict.  Pages appended meanwhile are
 *     visited or not: their rows are newer than VACUUM's dead TIDs.
 *   - insert-triggered fold and bulk delete: serialized page by page by
 *     the lock (above).
 *   - cleanup (folds, merges, truncation) and bulk delete: the same VACUUM,
 *     one after the other; two VACUUMs (or VACUUM and REINDEX
 *     CONCURRENTLY) of one table exclude each other by their table locks.
 *   - scans and folds, merges, reuse, truncation: R2 and R3 (the snapshot);
 *     an ordered scan re-reads the metapage for every batch, under the
 *     same snapshot.
 *   - scans and bulk delete: a document is flagged or not when a scan
 *     reads it; a TID it returns is fetched under its MVCC snapshot, which
 *     cannot see a row later put into the same heap slot.
 *
 * Hot standby.  A standby replays the primary's releases, reuses and
 * truncations, but its queries' snapshots do not hold back the primary's
 * horizon unless hot_standby_feedback is on, so R2 alone would let a
 * standby query that read the metapage before a release read the block
 * after its reuse is replayed.  Every reuse and truncation is therefore
 * preceded by a conflict record carrying the release point (SsLogReuse,
 * sspage.c; nbtree's XLOG_BTREE_REUSE_PAGE, whose redo only resolves the
 * conflict): replaying it cancels, after max_standby_streaming_delay, the
 * standby queries whose xmin is at or before the release point, the same
 * test R2 applies on the primary.  With hot_standby_feedback on nobody
 * is cancelled: the primary waits for those queries instead.
 * t/005_search_standby.pl checks both with a standby search stopped after its
 * metapage read while the primary reuses what it points to.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "access/transam.h"
#include "access/xlog.h"
#include "catalog/storage.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/memutils.h"

#include "ssearch.h"

#define SS_MERGE_AT 8
#define SS_INSERT_MERGE_MAX 50000

/* dead documents of a segment (VACUUM reads its doc pages anyway) */
static uint64
segment_dead(Relation index, const SsSegmentRef *ref)
{
	SsSegHeader hdr;
	uint64		dead = 0;

	SsReadSegHeader(index, ref->header, &hdr);
	for (uint32 p = 0; p < hdr.ndocpages; p++)
	{
		Buffer		buf = SsReadPage(index, hdr.docstart + p, BUFFER_LOCK_SHARE, SS_PAGE_DOC, NULL);
		Page		page;
		SsDoc	   *docs;
		uint16		n;

		page = BufferGetPage(buf);
		docs = (SsDoc *) SsPageContents(page);
		n = SsPageGetOpaque(page)->count;
		for (uint16 i = 0; i < n; i++)
			if (docs[i].flags & SS_DOC_DEAD)
				dead++;
		UnlockReleaseBuffer(buf);
	}
	return dead;
}

/*
 * Should VACUUM merge everything to drop dead documents?  Tiered folds
 * seldom rewrite the large old segments, so their dead documents would
 * stay; when a fifth of all segment documents are dead, merge.
 */
static bool
dead_share_high(Relation index, const SsMetaPageData *meta)
{
	uint64		all = 0,
				dead = 0;

	for (uint32 i = 0; i < meta->nsegments; i++)
	{
		all += meta->segments[i].ndocs;
		dead += segment_dead(index, &meta->segments[i]);
	}
	return all > 0 && dead * 5 >= all;
}

/*
 * The first of the trailing segments a fold merges with the pending
 * documents (nsegments: none), see the file header.
 */
static uint32
tier_first(const SsMetaPageData *meta, bool from_insert)
{
	uint64		acc = meta->npending;
	uint32		first = meta->nsegments;

	while (first > 0 && meta->segments[first - 1].ndocs <= 2 * acc &&
		   (!from_insert || acc + meta->segments[first - 1].ndocs <= SS_INSERT_MERGE_MAX))
	{
		first--;
		acc += meta->segments[first].ndocs;
	}
	return first;
}

/* ---- bulk delete ---- */

/* a segment bulk delete finished, by identity, and its live documents */
typedef struct SegDone
{
	BlockNumber header;
	uint64		serial;
	double		live;
} SegDone;

typedef struct BulkState
{
	Relation	index;
	BufferAccessStrategy strategy;
	IndexBulkDeleteResult *stats;
	IndexBulkDeleteCallback callback;
	void	   *callback_state;
	SegDone    *done;
	int			ndone;
	int			maxdone;
} BulkState;

static SegDone *
seg_done(BulkState *bs, BlockNumber header, uint64 serial)
{
	for (int i = 0; i < bs->ndone; i++)
		if (bs->done[i].header == header && bs->done[i].serial == serial)
			return &bs->done[i];
	return NULL;
}

/* the metapage generation (caller holds the pending-list lock) */
static uint64
meta_generation(Relation index)
{
	Buffer		buf = SsReadPage(index, SS_METAPAGE_BLKNO, BUFFER_LOCK_SHARE, SS_PAGE_META, NULL);
	uint64		gen = SsPageGetMeta(BufferGetPage(buf))->generation;

	UnlockReleaseBuffer(buf);
	return gen;
}

/* does meta (read under the pending-list lock) list segment (header, serial)? */
static bool
segment_listed(Relation index, const SsMetaPageData *meta, BlockNumber header, uint64 serial)
{
	for (uint32 s = 0; s < meta->nsegments; s++)
	{
		SsSegHeader hdr;

		if (meta->segments[s].header != header)
			continue;
		SsReadSegHeader(index, header, &hdr);
		return hdr.serial == serial;
	}
	return false;
}

/*
 * Flag the dead documents of document page p of segment hdr, and their
 * entries in the segment's facet column in the same WAL record (a
 * document page's documents lie on at most two column pages, locked
 * after it, in block order); returns how many live ones it holds.  The
 * caller holds the pending-list lock (share) and has just checked that
 * the page's segment is listed.
 */
static double
bulkdelete_doc_page(BulkState *bs, const SsSegHeader *hdr, uint32 p)
{
	BlockNumber blk = hdr->docstart + p;
	Buffer		buf = SsReadPage(bs->index, blk, BUFFER_LOCK_EXCLUSIVE, SS_PAGE_DOC, bs->strategy);
	Page		page = BufferGetPage(buf);
	SsDoc	   *docs = (SsDoc *) SsPageContents(page);
	int			cnt = SsPageGetOpaque(page)->count;
	uint16		kill[SS_DOCS_PER_PAGE];
	int			nkill = 0;
	double		live = 0;

	if (cnt > SS_DOCS_PER_PAGE)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has a document page with %d documents at block %u",
						RelationGetRelationName(bs->index), cnt, blk),
				 errdetail("A document page holds at most %d.", SS_DOCS_PER_PAGE),
				 errhint("REINDEX the index.")));
	for (int i = 0; i < cnt; i++)
	{
		if (docs[i].flags & SS_DOC_DEAD)
			continue;
		if (bs->callback(&docs[i].tid, bs->callback_state))
			kill[nkill++] = (uint16) i;
		else
			live += 1;
	}
	if (nkill > 0)
	{
		GenericXLogState *xs = GenericXLogStart(bs->index);
		Page		wpage = GenericXLogRegisterBuffer(xs, buf, 0);
		SsDoc	   *wdocs = (SsDoc *) SsPageContents(wpage);
		uint32		first = p * SS_DOCS_PER_PAGE;
		uint32		cp0 = first / SS_FCOL_PER_PAGE;
		Buffer		cbuf[2] = {InvalidBuffer, InvalidBuffer};
		Page		cpage[2] = {NULL, NULL};

		for (int k = 0; k < nkill; k++)
			wdocs[kill[k]].flags |= SS_DOC_DEAD;
		if (hdr->nfcolpages > 0)
			for (int k = 0; k < nkill; k++)
			{
				uint32		d = first + kill[k];
				uint32		cp = d / SS_FCOL_PER_PAGE;
				int			j = cp - cp0;
				SsFacetEntry *e;

				if (cp >= hdr->nfcolpages || j < 0 || j > 1)
					continue;	/* (a damaged header: shop.search_verify) */
				if (cpage[j] == NULL)
				{
					cbuf[j] = SsReadPage(bs->index, hdr->fcolstart + cp, BUFFER_LOCK_EXCLUSIVE,
										 SS_PAGE_FCOL, bs->strategy);
					cpage[j] = GenericXLogRegisterBuffer(xs, cbuf[j], 0);
				}
				if (d % SS_FCOL_PER_PAGE < SsPageGetOpaque(cpage[j])->count)
				{
					e = (SsFacetEntry *) SsPageContents(cpage[j]) + d % SS_FCOL_PER_PAGE;
					e->flags |= SS_FC_DEAD;
				}
			}
		GenericXLogFinish(xs);
		bs->stats->tuples_removed += nkill;
		for (int j = 0; j < 2; j++)
			if (BufferIsValid(cbuf[j]))
				UnlockReleaseBuffer(cbuf[j]);
	}
	UnlockReleaseBuffer(buf);
	return live;
}

/*
 * Flag the dead documents of the pending list starting at head; returns
 * how many live ones it holds.  The caller holds the pending-list lock
 * throughout, so no fold takes the list away meanwhile.
 */
static double
bulkdelete_pending(BulkState *bs, BlockNumber head)
{
	BlockNumber blk = head;
	double		live = 0;

	while (blk != InvalidBlockNumber)
	{
		Buffer		buf = SsReadPage(bs->index, blk, BUFFER_LOCK_EXCLUSIVE, SS_PAGE_PENDING,
									 bs->strategy);
		Page		page = BufferGetPage(buf);
		OffsetNumber maxoff = PageGetMaxOffsetNumber(page);
		OffsetNumber kill[MaxOffsetNumber];
		int			nkill = 0;

		for (OffsetNumber off = FirstOffsetNumber; off <= maxoff; off++)
		{
			ItemId		iid = PageGetItemId(page, off);
			SsPendItem *it;

			if (!ItemIdHasStorage(iid) || ItemIdGetLength(iid) < sizeof(SsPendItem))
				ereport(ERROR,
						(errcode(ERRCODE_INDEX_CORRUPTED),
						 errmsg("index \"%s\" has a malformed pending item at block %u, offset %u",
								RelationGetRelationName(bs->index), blk, off),
						 errhint("REINDEX the index.")));
			it = (SsPendItem *) PageGetItem(page, iid);
			if (it->doc.flags & SS_DOC_DEAD)
				continue;
			if (bs->callback(&it->doc.tid, bs->callback_state))
				kill[nkill++] = off;
			else
				live += 1;
		}
		if (nkill > 0)
		{
			GenericXLogState *xs = GenericXLogStart(bs->index);
			Page		wpage = GenericXLogRegisterBuffer(xs, buf, 0);

			for (int k = 0; k < nkill; k++)
			{
				SsPendItem *it = (SsPendItem *) PageGetItem(wpage, PageGetItemId(wpage, kill[k]));

				it->doc.flags |= SS_DOC_DEAD;
			}
			GenericXLogFinish(xs);
			bs->stats->tuples_removed += nkill;
		}
		blk = SsPageGetOpaque(page)->next;
		UnlockReleaseBuffer(buf);
		vacuum_delay_point();
	}
	return live;
}

static SsMetaPage meta_for_write(GenericXLogState *xs, Buffer metabuf);

/*
 * count_bulkdelete: add one to the metapage's count of bulk deletes, once
 * this one has flagged every document it was going to (rule R6 of the
 * file header).  VACUUM frees the heap line pointers of those documents
 * only after ambulkdelete returns, so the count (and on a standby, its
 * WAL record) is always ahead of them.
 */
static void
count_bulkdelete(Relation index)
{
	Buffer		metabuf = ReadBuffer(index, SS_METAPAGE_BLKNO);
	GenericXLogState *xs;
	SsMetaPage	m;

	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	xs = GenericXLogStart(index);
	m = meta_for_write(xs, metabuf);
	m->bulkdeletes++;
	GenericXLogFinish(xs);
	UnlockReleaseBuffer(metabuf);
}

/*
 * ssbulkdelete: flag the documents whose heap TIDs callback names, segment
 * by segment and then the pending list, as the file header describes
 * ("Locking protocol"): every document indexed before the call is offered
 * to callback at least once, also when a concurrent fold moves it.
 */
IndexBulkDeleteResult *
ssbulkdelete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
			 IndexBulkDeleteCallback callback, void *callback_state)
{
	Relation	index = info->index;
	BulkState	bs;
	double		removed_before;

	if (stats == NULL)
		stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));
	removed_before = stats->tuples_removed;
	memset(&bs, 0, sizeof(bs));
	bs.index = index;
	bs.strategy = info->strategy;
	bs.stats = stats;
	bs.callback = callback;
	bs.callback_state = callback_state;
	bs.maxdone = 16;
	bs.done = palloc(sizeof(SegDone) * bs.maxdone);

	for (;;)
	{
		SsMetaPageData meta;
		SsSegHeader hdr;
		int			target = -1;
		BlockNumber header;
		uint64		serial;
		uint64		gen;
		double		live = 0;
		bool		gone = false;

		CHECK_FOR_INTERRUPTS();
		LockPage(index, SS_METAPAGE_BLKNO, ShareLock);
		SsReadMeta(index, &meta);
		for (uint32 s = 0; s < meta.nsegments && target < 0; s++)
		{
			SsReadSegHeader(index, meta.segments[s].header, &hdr);
			if (seg_done(&bs, meta.segments[s].header, hdr.serial) == NULL)
				target = (int) s;
		}
		if (target < 0)
		{
			/* every listed segment done: the pending list, without letting go */
			live = bulkdelete_pending(&bs, meta.pending_head);
			for (uint32 s = 0; s < meta.nsegments; s++)
			{
				SsReadSegHeader(index, meta.segments[s].header, &hdr);
				live += seg_done(&bs, meta.segments[s].header, hdr.serial)->live;
			}
			UnlockPage(index, SS_METAPAGE_BLKNO, ShareLock);
			stats->num_index_tuples = live;
			stats->estimated_count = false;
			break;
		}

		/* the target's document pages, the lock let go between two pages */
		header = meta.segments[target].header;
		serial = hdr.serial;
		gen = meta.generation;
		for (uint32 p = 0; p < hdr.ndocpages; p++)
		{
			live += bulkdelete_doc_page(&bs, &hdr, p);
			UnlockPage(index, SS_METAPAGE_BLKNO, ShareLock);
			vacuum_delay_point();
			SsTestPause("bulkdelete-page");
			LockPage(index, SS_METAPAGE_BLKNO, ShareLock);
			if (meta_generation(index) != gen)
			{
				/* a fold ran: is the target still listed? */
				SsReadMeta(index, &meta);
				gen = meta.generation;
				if (!segment_listed(index, &meta, header, serial))
				{
					gone = true;	/* merged away: its newer segment is next */
					break;
				}
			}
		}
		if (!gone)
		{
			if (bs.ndone >= bs.maxdone)
			{
				bs.maxdone *= 2;
				bs.done = repalloc(bs.done, sizeof(SegDone) * bs.maxdone);
			}
			bs.done[bs.ndone].header = header;
			bs.done[bs.ndone].serial = serial;
			bs.done[bs.ndone].live = live;
			bs.ndone++;
		}
		UnlockPage(index, SS_METAPAGE_BLKNO, ShareLock);
	}
	pfree(bs.done);
	if (stats->tuples_removed > removed_before)
		count_bulkdelete(index);
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

/*
 * The metapage registered for generic WAL.  pd_lower is moved past the
 * whole SsMetaPageData first: an index built before lost_blocks was added
 * has it in the page's hole, which generic WAL does not log.
 */
static SsMetaPage
meta_for_write(GenericXLogState *xs, Buffer metabuf)
{
	Page		page = GenericXLogRegisterBuffer(xs, metabuf, 0);
	SsMetaPage	m = SsPageGetMeta(page);
	uint16		lower = ((char *) m + sizeof(SsMetaPageData)) - (char *) page;

	if (((PageHeader) page)->pd_lower < lower)
		((PageHeader) page)->pd_lower = lower;
	return m;
}

/* allocation of the new segment's run from the metapage copy */
typedef struct FlushAlloc
{
	Relation	index;
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
	if (fa->slot < 0)
		return InvalidBlockNumber;
	/* a standby's queries that may read the run go first (sspage.c) */
	SsLogReuse(fa->index, fa->meta->free[fa->slot].start, fa->meta->free[fa->slot].freed);
	return fa->meta->free[fa->slot].start;
}

/*
 * compaction_pays: would merging now let the relation shrink to half?
 * True when the segments lie in the upper half of the relation and all of
 * them (with room to spare: the merge adds the pending documents and its
 * output is not known yet) fit in a reusable free run in the lower half.
 * The merge then writes there (SsFreeFind takes the lowest fitting run),
 * the old segments become free runs at the end, and a later VACUUM
 * truncates them.  Without this a merge that had to go to the end of the
 * relation (the runs below held the segments being merged) would stay
 * there until the next regular merge, and a table that shrank would keep
 * its size for two merge cycles.
 */
static bool
compaction_pays(Relation index, const SsMetaPageData *meta)
{
	BlockNumber nblocks = RelationGetNumberOfBlocks(index);
	BlockNumber top = 0;
	uint32		live = 0;
	int			i;

	if (meta->nsegments == 0 || nblocks < 16)
		return false;
	for (uint32 s = 0; s < meta->nsegments; s++)
	{
		SsSegHeader hdr;
		uint32		n;

		SsReadSegHeader(index, meta->segments[s].header, &hdr);
		n = SsSegmentBlocks(&hdr);
		live += n;
		top = Max(top, meta->segments[s].header + n);
	}
	live += live / 4 + 4 + meta->npending / SS_DOCS_PER_PAGE;
	if (top <= nblocks / 2)
		return false;			/* the end is free already: truncation's job */
	i = SsFreeFind((SsMetaPage) meta, live);
	return i >= 0 && meta->free[i].start + live <= nblocks / 2;
}

/*
 * SsFlushPending: fold the pending list into a new segment (or merge
 * everything into one segment, see above).  Returns quietly when there is
 * nothing to do.
 */
void
SsFlushPending(Relation index, bool from_insert, bool wait)
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
	uint32		first;

	if (from_insert && !wait)
	{
		/* someone else folding (or inserting) already: leave it to them */
		if (!ConditionalLockPage(index, SS_METAPAGE_BLKNO, ExclusiveLock))
			return;
	}
	else
		LockPage(index, SS_METAPAGE_BLKNO, ExclusiveLock);
	SsReadMeta(index, &meta);

	/*
	 * Join free runs that became reusable, in our copy: the new segment's
	 * run is chosen from it, and the metapage gets its list at publication
	 * (nobody else changes the list while we hold the pending-list lock).
	 */
	SsFreeCoalesce(&meta, false);
	/* inserts never merge (too slow for a statement); VACUUM does */
	merge = !from_insert &&
		(meta.nsegments + 1 >= SS_MERGE_AT || compaction_pays(index, &meta) ||
		 dead_share_high(index, &meta));
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

	/* segments merged: all, or the trailing ones of the tier */
	first = merge ? 0 : tier_first(&meta, from_insert);
	{
		for (uint32 s = first; s < meta.nsegments; s++)
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
		Buffer		buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_PENDING, NULL);
		Page		page;
		OffsetNumber maxoff;

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
	fa.index = index;
	fa.meta = &meta;
	fa.slot = -1;
	if (nnew > 0)
		hdrblk = SsSegBuilderWrite(sb, index, true, flush_alloc, &fa, meta.generation + 1);

	/* the pending pages folded in, to release */
	npend = 0;
	pendblks = palloc(sizeof(BlockNumber) * 64);
	maxpend = 64;
	for (blk = meta.pending_head; blk != InvalidBlockNumber;)
	{
		Buffer		buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_PENDING, NULL);

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
	m = meta_for_write(xs, metabuf);
	freed = ReadNextFullTransactionId();
	m->nfree = meta.nfree;
	memcpy(m->free, meta.free, sizeof(SsFreeRange) * meta.nfree);
	if (fa.slot >= 0)
	{
		/* the run the new segment took (found in our copy; unchanged since) */
		Assert(m->free[fa.slot].start == fa.meta->free[fa.slot].start);
		(void) SsFreeTake(m, fa.slot, fa.nblocks);
	}
	for (int i = 0; i < npend; i++)
		SsFreeAdd(m, pendblks[i], 1, freed);
	for (uint32 k = first; k < m->nsegments; k++)
	{
		SsSegHeader oh;

		SsReadSegHeader(index, m->segments[k].header, &oh);
		SsFreeAdd(m, m->segments[k].header, SsSegmentBlocks(&oh), freed);
	}
	if (first == 0)
	{
		/* everything merged: exact statistics (dead documents are gone) */
		m->ndocs = nnew;
		for (int f = 0; f < SS_NFIELDS; f++)
			m->sumlen[f] = sumlen[f];
		m->max_popularity = maxpop;
	}
	m->nsegments = first;
	if (nnew > 0)
	{
		m->segments[m->nsegments].header = hdrblk;
		m->segments[m->nsegments].ndocs = nnew;
		m->nsegments++;
	}
	m->pending_head = InvalidBlockNumber;
	m->pending_tail = InvalidBlockNumber;
	m->npending = 0;
	m->generation = meta.generation + 1;	/* the new segment's serial */
	GenericXLogFinish(xs);
	UnlockReleaseBuffer(metabuf);
	UnlockPage(index, SS_METAPAGE_BLKNO, ExclusiveLock);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* ---- giving the end of the relation back ---- */

/*
 * truncate_tail: shorten the index past the last block still in use.
 * Returns the number of blocks removed.
 *
 * The blocks cut off are free runs that are reusable (released before
 * every snapshot now alive, see SsFreeFind) and blocks referenced by
 * nothing at all (left by a crash between writing a segment and
 * publishing it).  The new end is one past the highest block anything
 * else can reach: the metapage, every segment, every pending page and
 * every free run not yet reusable.
 *
 * Why no scan can read a removed block.  A reader reaches blocks only
 * through a metapage it read.  Every released block was released by a
 * metapage change made at "freed", after which no metapage reaches it;
 * a scan that read an older metapage took its snapshot before that, so
 * its xmin is not after "freed", and while it runs the block is not
 * reusable (GlobalVisCheckRemovableFullXid), hence not cut off here.
 * Scans in this sense are everything that reads segments or pending
 * pages: index scans and shop.search_verify run under a registered MVCC
 * snapshot; inserts read only the pending tail, folds only what the
 * metapage lists, and both hold the pending-list lock, as does every
 * path that allocates or extends (ssinsert, folds, SsNewBuffer callers).
 * We hold that lock exclusively from computing the new end until the
 * file is cut, so nobody hands out a block past it or extends the
 * relation meanwhile.  (The same argument is what makes reuse safe.  On
 * a hot standby, the conflict record SsLogReuse writes first cancels the
 * queries old enough to read what is cut, as for reuse.)  Blocks dropped
 * from a full free list (lost_blocks) are unreferenced too, but recent:
 * nothing unreferenced is cut until their release point is old enough.
 *
 * Order, for crash safety: the metapage loses the runs first (generic
 * WAL, flushed), then RelationTruncate logs and cuts the file.  A crash
 * between them leaves unlisted blocks at the end, which the next
 * truncation takes as unreferenced; never a listed free run past the end
 * of the file.
 */
static BlockNumber
truncate_tail(Relation index)
{
	SsMetaPageData meta;
	BlockNumber nblocks,
				end = SS_METAPAGE_BLKNO + 1,
				blk;
	Buffer		metabuf;
	GenericXLogState *xs;
	SsMetaPage	m;
	XLogRecPtr	lsn;
	FullTransactionId horizon;

	LockPage(index, SS_METAPAGE_BLKNO, ExclusiveLock);
	nblocks = RelationGetNumberOfBlocks(index);
	SsReadMeta(index, &meta);
	SsFreeCoalesce(&meta, false);

	for (uint32 s = 0; s < meta.nsegments; s++)
	{
		SsSegHeader hdr;

		SsReadSegHeader(index, meta.segments[s].header, &hdr);
		end = Max(end, meta.segments[s].header + SsSegmentBlocks(&hdr));
	}
	for (blk = meta.pending_head; blk != InvalidBlockNumber;)
	{
		Buffer		buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_PENDING, NULL);

		end = Max(end, blk + 1);
		blk = SsPageGetOpaque(BufferGetPage(buf))->next;
		UnlockReleaseBuffer(buf);
	}
	for (uint32 i = 0; i < meta.nfree; i++)
	{
		if (!SsFreeReusable(&meta, i))
			end = Max(end, meta.free[i].start + meta.free[i].nblocks);
	}
	/*
	 * Blocks lost to a full free list are unreferenced like a crash's
	 * leftovers, but were released recently: cut nothing unreferenced while
	 * a snapshot may still read them.
	 */
	if (FullTransactionIdIsValid(meta.lost_freed) &&
		!GlobalVisCheckRemovableFullXid(NULL, meta.lost_freed))
		end = nblocks;
	if (end >= nblocks)
	{
		UnlockPage(index, SS_METAPAGE_BLKNO, ExclusiveLock);
		return 0;
	}

	metabuf = ReadBuffer(index, SS_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	xs = GenericXLogStart(index);
	m = meta_for_write(xs, metabuf);
	m->nfree = meta.nfree;
	memcpy(m->free, meta.free, sizeof(SsFreeRange) * meta.nfree);
	(void) SsFreeTruncate(m, end, &horizon);
	if (FullTransactionIdIsValid(meta.lost_freed) &&
		(!FullTransactionIdIsValid(horizon) || FullTransactionIdFollows(meta.lost_freed, horizon)))
		horizon = meta.lost_freed;
	/* a standby's queries that may read the blocks go first (sspage.c) */
	SsLogReuse(index, end, horizon);
	lsn = GenericXLogFinish(xs);
	UnlockReleaseBuffer(metabuf);
	if (RelationNeedsWAL(index))
		XLogFlush(lsn);

	RelationTruncate(index, end);
	UnlockPage(index, SS_METAPAGE_BLKNO, ExclusiveLock);
	return nblocks - end;
}

IndexBulkDeleteResult *
ssvacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	Relation	index = info->index;
	BlockNumber truncated;
	SsMetaPageData meta;

	if (info->analyze_only)
		return stats;
	SsFlushPending(index, false, true);
	truncated = truncate_tail(index);
	SsReadMeta(index, &meta);
	if (stats == NULL)
	{
		stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));
		stats->num_index_tuples = (double) meta.ndocs;
		stats->estimated_count = true;
	}
	stats->num_pages = RelationGetNumberOfBlocks(index);
	/* free blocks, as "deleted"; those reusable now, as "free" */
	stats->pages_deleted = stats->pages_free = 0;
	for (uint32 i = 0; i < meta.nfree; i++)
	{
		stats->pages_deleted += meta.free[i].nblocks;
		if (SsFreeReusable(&meta, i))
			stats->pages_free += meta.free[i].nblocks;
	}
	if (truncated > 0)
		ereport(info->message_level,
				(errmsg("index \"%s\": truncated %u to %u pages",
						RelationGetRelationName(index), stats->num_pages + truncated,
						stats->num_pages)));
	return stats;
}
