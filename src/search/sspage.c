/*-------------------------------------------------------------------------
 *
 * sspage.c
 *	  shop_search page access: page initialisation, the metapage, segment
 *	  headers, documents, dictionary lookups and range scans, posting
 *	  streams, and the encoding of pending-list items.
 *
 * Readers pin and share-lock one page at a time and copy out what they
 * need; segment pages never change after their segment is published
 * except for the dead flag of documents (set by VACUUM under an exclusive
 * lock), so no reader holds two locks at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/nbtxlog.h"
#include "access/xlog.h"
#include "access/xloginsert.h"
#include "lib/stringinfo.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "ssearch.h"

/* SsInitPage: an empty shop_search page of the given type. */
void
SsInitPage(Page page, uint16 flags)
{
	SsPageOpaque op;

	PageInit(page, BLCKSZ, sizeof(SsPageOpaqueData));
	op = SsPageGetOpaque(page);
	op->next = InvalidBlockNumber;
	op->flags = flags;
	op->count = 0;
	op->page_id = SS_PAGE_ID;
}

/* the names of the page types in mask, for errors */
static char *
page_type_names(uint16 types)
{
	static const char *const names[] = {
		"metapage", "segment header", "document", "directory", "dictionary",
		"posting", "pending", "skip", "norm", "trigram directory", "trigram"
	};
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < (int) lengthof(names); i++)
		if (types & (1 << i))
			appendStringInfo(&buf, "%s%s", buf.len ? " or " : "", names[i]);
	if (buf.len == 0)
		appendStringInfoString(&buf, "no known type");
	return buf.data;
}

/*
 * SsPageTypeError: the error of SsCheckPage (ssearch.h): block blk of
 * index is not a shop_search page of one of the types in the mask.
 */
void
SsPageTypeError(Relation index, Page page, BlockNumber blk, uint16 types)
{
	bool		ours = !PageIsNew(page) &&
		((PageHeader) page)->pd_special == BLCKSZ - MAXALIGN(sizeof(SsPageOpaqueData)) &&
		SsPageGetOpaque(page)->page_id == SS_PAGE_ID;

	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("index \"%s\" has an unexpected page at block %u",
					RelationGetRelationName(index), blk),
			 errdetail("A %s page was expected; the block holds %s.", page_type_names(types),
					   PageIsNew(page) ? "an empty page" :
					   ours ? psprintf("a %s page", page_type_names(SsPageGetOpaque(page)->flags)) :
					   "no shop_search page"),
			 errhint("REINDEX the index.")));
}

/*
 * SsReadPage: block blk of index, pinned and locked in lockmode
 * (BUFFER_LOCK_SHARE or _EXCLUSIVE), checked to be one of the page types
 * in the mask.  The caller releases it with UnlockReleaseBuffer.
 */
Buffer
SsReadPage(Relation index, BlockNumber blk, int lockmode, uint16 types,
		   BufferAccessStrategy strategy)
{
	Buffer		buf = ReadBufferExtended(index, MAIN_FORKNUM, blk, RBM_NORMAL, strategy);

	LockBuffer(buf, lockmode);
	SsCheckPage(index, BufferGetPage(buf), blk, types);
	return buf;
}

/*
 * Free runs.  The metapage lists runs of released blocks sorted by start,
 * never overlapping, each with the release point after which no snapshot
 * can still read it.  Adjacent runs are joined when that delays no reuse
 * (SsFreeCoalesce), so a run released now does not hold back the older,
 * reusable run next to it; a list left by an older build (unsorted) is
 * sorted on first change (free_normalize).  The
 * caller of the functions below that change the list holds the metapage
 * exclusively, inside generic WAL, and the pending-list lock (see
 * ssvacuum.c), so no one else allocates meanwhile.
 */

/* index of the first run starting at or after blk (nfree if none) */
static uint32
free_search(const SsMetaPage meta, BlockNumber blk)
{
	uint32		lo = 0,
				hi = meta->nfree;

	while (lo < hi)
	{
		uint32		mid = lo + (hi - lo) / 2;

		if (meta->free[mid].start < blk)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* remove run i, keeping the order */
static void
free_remove(SsMetaPage meta, uint32 i)
{
	Assert(i < meta->nfree);
	memmove(&meta->free[i], &meta->free[i + 1],
			sizeof(SsFreeRange) * (meta->nfree - i - 1));
	meta->nfree--;
}

/*
 * One pass over the sorted list joining each run into the one before it
 * when they overlap (which only a bug could make) or, with adjacent, when
 * they touch and may be joined: runs of one release, runs both reusable
 * already, or any with force.  A joined run keeps the later release point.
 */
static void
free_join(SsMetaPage meta, bool adjacent, bool force)
{
	uint32		n = 0;

	for (uint32 i = 0; i < meta->nfree; i++)
	{
		SsFreeRange *p = n > 0 ? &meta->free[n - 1] : NULL;
		SsFreeRange *r = &meta->free[i];
		bool		join = false;

		if (p && p->start + p->nblocks > r->start)
			join = true;
		else if (p && adjacent && p->start + p->nblocks == r->start)
			join = force || FullTransactionIdEquals(p->freed, r->freed) ||
				(GlobalVisCheckRemovableFullXid(NULL, p->freed) &&
				 GlobalVisCheckRemovableFullXid(NULL, r->freed));
		if (join)
		{
			BlockNumber end = Max(p->start + p->nblocks, r->start + r->nblocks);

			p->nblocks = end - p->start;
			if (FullTransactionIdFollows(r->freed, p->freed))
				p->freed = r->freed;
		}
		else
			meta->free[n++] = *r;
	}
	meta->nfree = n;
}

/*
 * Sort the list if it is not sorted already (an index written by a build
 * that kept it unordered); overlapping runs become one.
 */
static void
free_normalize(SsMetaPage meta)
{
	bool		ok = true;

	for (uint32 i = 1; i < meta->nfree && ok; i++)
		ok = meta->free[i - 1].start + meta->free[i - 1].nblocks <= meta->free[i].start;
	if (ok)
		return;
	for (uint32 i = 1; i < meta->nfree; i++)
	{
		SsFreeRange r = meta->free[i];
		uint32		j = i;

		for (; j > 0 && meta->free[j - 1].start > r.start; j--)
			meta->free[j] = meta->free[j - 1];
		meta->free[j] = r;
	}
	free_join(meta, false, false);
}

/*
 * SsFreeCoalesce: merge adjacent runs that can be merged without
 * delaying any reuse: runs of one release, and runs reusable already
 * (the merged run keeps the later release point, which is then reusable
 * too).  With force, merge every adjacent pair, taking the later release
 * point: no block is lost, some are reused later than they could be.
 */
void
SsFreeCoalesce(SsMetaPage meta, bool force)
{
	free_normalize(meta);
	free_join(meta, true, force);
}

/* remember the latest release point of blocks lost to a full list */
static void
lost_freed_note(SsMetaPage meta, FullTransactionId freed)
{
	if (!FullTransactionIdIsValid(meta->lost_freed) ||
		FullTransactionIdFollows(freed, meta->lost_freed))
		meta->lost_freed = freed;
}

/*
 * SsFreeAdd: record a run of released blocks in the metapage.  It joins
 * an adjacent run released at the same point; other neighbours are joined
 * later by SsFreeCoalesce, once both are reusable, so that a fresh release
 * never holds back the reuse of older blocks next to it.  When the list is
 * full, adjacent runs are merged (reusable ones first, then any, taking
 * the later release point); if it is still full the smallest run (possibly
 * this one) is dropped and its blocks are counted in lost_blocks: they
 * stay allocated to the index, unreferenced, until a REINDEX or a
 * truncation at the end of the relation takes them.
 */
void
SsFreeAdd(SsMetaPage meta, BlockNumber start, uint32 nblocks, FullTransactionId freed)
{
	uint32		i;
	bool		join_prev,
				join_next;

	if (nblocks == 0)
		return;
	free_normalize(meta);
	i = free_search(meta, start);
	/* never overlap: a block released twice would be handed out twice */
	if ((i > 0 && meta->free[i - 1].start + meta->free[i - 1].nblocks > start) ||
		(i < meta->nfree && start + nblocks > meta->free[i].start))
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("shop_search: blocks %u..%u released twice", start, start + nblocks - 1),
				 errhint("REINDEX the index.")));

	join_prev = i > 0 && meta->free[i - 1].start + meta->free[i - 1].nblocks == start &&
		FullTransactionIdEquals(meta->free[i - 1].freed, freed);
	join_next = i < meta->nfree && start + nblocks == meta->free[i].start &&
		FullTransactionIdEquals(meta->free[i].freed, freed);
	if (join_prev)
	{
		meta->free[i - 1].nblocks += nblocks;
		if (join_next)
		{
			meta->free[i - 1].nblocks += meta->free[i].nblocks;
			free_remove(meta, i);
		}
		return;
	}
	if (join_next)
	{
		meta->free[i].start = start;
		meta->free[i].nblocks += nblocks;
		return;
	}

	if (meta->nfree >= SS_MAX_FREE_RANGES)
	{
		/* full: merge neighbours, and only then forget the smallest run */
		SsFreeCoalesce(meta, false);
		if (meta->nfree >= SS_MAX_FREE_RANGES)
			SsFreeCoalesce(meta, true);
		if (meta->nfree >= SS_MAX_FREE_RANGES)
		{
			uint32		smallest = 0;

			for (uint32 k = 1; k < meta->nfree; k++)
				if (meta->free[k].nblocks < meta->free[smallest].nblocks)
					smallest = k;
			if (nblocks <= meta->free[smallest].nblocks)
			{
				meta->lost_blocks += nblocks;
				lost_freed_note(meta, freed);
				return;
			}
			meta->lost_blocks += meta->free[smallest].nblocks;
			lost_freed_note(meta, meta->free[smallest].freed);
			free_remove(meta, smallest);
		}
		/* the list changed: add the run afresh (it may join a neighbour now) */
		SsFreeAdd(meta, start, nblocks, freed);
		return;
	}
	memmove(&meta->free[i + 1], &meta->free[i], sizeof(SsFreeRange) * (meta->nfree - i));
	meta->free[i].start = start;
	meta->free[i].nblocks = nblocks;
	meta->free[i].freed = freed;
	meta->nfree++;
}

/* SsFreeReusable: may run i be handed out (no snapshot older than it)? */
bool
SsFreeReusable(const SsMetaPage meta, int i)
{
	return GlobalVisCheckRemovableFullXid(NULL, meta->free[i].freed);
}

/*
 * SsFreeFind: a reusable free run of at least nblocks, or -1: the lowest
 * such run (first fit).  Allocations thus drift towards the start of the
 * relation and free runs gather at its end, where VACUUM truncates them.
 * (Best fit was tried: it kept filling the run just released at the end,
 * which is usually the tightest, and the relation never shrank.)
 */
int
SsFreeFind(const SsMetaPage meta, uint32 nblocks)
{
	for (uint32 i = 0; i < meta->nfree; i++)
	{
		if (meta->free[i].nblocks >= nblocks && SsFreeReusable(meta, i))
			return i;
	}
	return -1;
}

/* SsFreeTake: take nblocks from the start of free run i. */
BlockNumber
SsFreeTake(SsMetaPage meta, int i, uint32 nblocks)
{
	SsFreeRange *r = &meta->free[i];
	BlockNumber start = r->start;

	Assert(r->nblocks >= nblocks);
	r->start += nblocks;
	r->nblocks -= nblocks;
	if (r->nblocks == 0)
		free_remove(meta, i);
	return start;
}

/*
 * SsFreeTruncate: drop from the list every block at or past newend (which
 * must all be free and reusable: the caller checked) and return how many
 * blocks that was; *horizon (if not NULL) becomes the latest release
 * point among them (invalid when none).
 */
uint32
SsFreeTruncate(SsMetaPage meta, BlockNumber newend, FullTransactionId *horizon)
{
	uint32		dropped = 0;

	if (horizon)
		*horizon = InvalidFullTransactionId;
	free_normalize(meta);
	while (meta->nfree > 0)
	{
		SsFreeRange *r = &meta->free[meta->nfree - 1];

		if (r->start + r->nblocks <= newend)
			break;
		if (horizon && (!FullTransactionIdIsValid(*horizon) ||
						FullTransactionIdFollows(r->freed, *horizon)))
			*horizon = r->freed;
		if (r->start >= newend)
		{
			dropped += r->nblocks;
			meta->nfree--;
		}
		else
		{
			dropped += r->start + r->nblocks - newend;
			r->nblocks = newend - r->start;
			break;
		}
	}
	return dropped;
}

/*
 * SsLogReuse: before released blocks are written again (blk, the first of
 * them, reused for a new pending page or segment) or truncated away,
 * make a hot standby cancel the queries that may still read them.
 *
 * On the primary a block released at "freed" is reused only when no
 * snapshot has an xmin at or before it (SsFreeReusable).  A standby's
 * snapshots do not hold back the primary unless hot_standby_feedback is
 * on, so without it a standby query that read the metapage before the
 * release could read the block after the reuse was replayed.  Generic
 * WAL raises no recovery conflict, and a custom resource manager would
 * make every standby need shop preloaded to replay at all; instead we log
 * the record nbtree logs when it recycles a page, XLOG_BTREE_REUSE_PAGE,
 * whose redo does nothing but ResolveRecoveryConflictWithSnapshot on its
 * horizon for its relation: it cancels (after max_standby_streaming_delay)
 * the standby queries whose xmin is at or before "freed", the very test
 * the primary applies, and touches no page.  With hot_standby_feedback the
 * primary does not reuse before such queries end, so none is cancelled.
 * Nothing is logged without WAL or below wal_level replica.
 */
void
SsLogReuse(Relation index, BlockNumber blk, FullTransactionId freed)
{
	xl_btree_reuse_page xlrec;

	if (!RelationNeedsWAL(index) || !XLogStandbyInfoActive() ||
		!FullTransactionIdIsValid(freed))
		return;
	memset(&xlrec, 0, sizeof(xlrec));
#if PG_VERSION_NUM >= 160000
	xlrec.locator = index->rd_locator;
	xlrec.block = blk;
	xlrec.snapshotConflictHorizon = freed;
	xlrec.isCatalogRel = false;
#elif PG_VERSION_NUM >= 140000
	xlrec.node = index->rd_node;
	xlrec.block = blk;
	xlrec.latestRemovedFullXid = freed;
#else
	xlrec.node = index->rd_node;
	xlrec.block = blk;
	xlrec.latestRemovedXid = XidFromFullTransactionId(freed);
#endif
	XLogBeginInsert();
	XLogRegisterData((char *) &xlrec, SizeOfBtreeReusePage);
	XLogInsert(RM_BTREE_ID, XLOG_BTREE_REUSE_PAGE);
}

/* SsSegmentBlocks: how many blocks a segment spans, header included. */
uint32
SsSegmentBlocks(const SsSegHeader *hdr)
{
	return 1 + hdr->ndocpages + hdr->ndirpages + hdr->ndictpages + hdr->npostpages +
		hdr->nskippages + hdr->nnormpages + hdr->ngramdirpages + hdr->ngrampages +
		hdr->nfcolpages + hdr->nfdictpages;
}

/*
 * SsNewBuffer: a new block at the end of the index, pinned and
 * exclusively locked, for a caller that found no reusable free run
 * (SsFreeFind), or building the index.  Inserts hold the pending-list
 * lock, so a truncation (ssvacuum.c) cannot run meanwhile.
 */
Buffer
SsNewBuffer(Relation index)
{
	Buffer		buf;
	bool		needLock = !RELATION_IS_LOCAL(index);

	if (needLock)
		LockRelationForExtension(index, ExclusiveLock);
	buf = ReadBuffer(index, P_NEW);
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	if (needLock)
		UnlockRelationForExtension(index, ExclusiveLock);
	return buf;
}

/* SsReadMeta: a copy of the metapage; errors out on a foreign page. */
void
SsReadMeta(Relation index, SsMetaPageData *meta)
{
	Buffer		buf = ReadBuffer(index, SS_METAPAGE_BLKNO);
	Page		page;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	memcpy(meta, SsPageGetMeta(page), sizeof(SsMetaPageData));
	if (meta->magic == SS_MAGIC)
		SsCheckPage(index, page, SS_METAPAGE_BLKNO, SS_PAGE_META);
	UnlockReleaseBuffer(buf);
	if (meta->magic != SS_MAGIC)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" is not a shop_search index", RelationGetRelationName(index))));
	if (meta->version != SS_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has format version %u, this shop understands %u",
						RelationGetRelationName(index), meta->version, SS_VERSION),
				 errhint("REINDEX the index.")));
}

/* SsReadSegHeader: a copy of the header of the segment starting at blk. */
void
SsReadSegHeader(Relation index, BlockNumber blk, SsSegHeader *hdr)
{
	Buffer		buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_SEGHDR, NULL);

	memcpy(hdr, SsPageContents(BufferGetPage(buf)), sizeof(SsSegHeader));
	UnlockReleaseBuffer(buf);
}

/* SsReadDoc: a copy of document docid of a segment. */
void
SsReadDoc(Relation index, const SsSegHeader *hdr, uint32 docid, SsDoc *doc)
{
	Buffer		buf = SsReadPage(index, hdr->docstart + docid / SS_DOCS_PER_PAGE,
								 BUFFER_LOCK_SHARE, SS_PAGE_DOC, NULL);

	memcpy(doc, (SsDoc *) SsPageContents(BufferGetPage(buf)) + docid % SS_DOCS_PER_PAGE,
		   sizeof(SsDoc));
	UnlockReleaseBuffer(buf);
}

static int
term_cmp(const char *a, int alen, const char *b, int blen)
{
	int			c = memcmp(a, b, Min(alen, blen));

	if (c != 0)
		return c;
	return alen - blen;
}

static SsDictItem *
page_item(Page page, OffsetNumber off)
{
	return (SsDictItem *) PageGetItem(page, PageGetItemId(page, off));
}

/* Last item <= term on a sorted page, or InvalidOffsetNumber. */
static OffsetNumber
page_floor(Page page, const char *term, int len)
{
	OffsetNumber lo = FirstOffsetNumber,
				hi = PageGetMaxOffsetNumber(page),
				res = InvalidOffsetNumber;

	while (lo <= hi)
	{
		OffsetNumber mid = lo + (hi - lo) / 2;
		SsDictItem *it = page_item(page, mid);

		if (term_cmp(it->term, it->len, term, len) <= 0)
		{
			res = mid;
			lo = mid + 1;
		}
		else
			hi = mid - 1;
	}
	return res;
}

/* The dict block that would hold term (the directory's floor entry). */
static BlockNumber
dict_block_for(Relation index, const SsSegHeader *hdr, const char *term, int len)
{
	BlockNumber res = hdr->ndictpages > 0 ? hdr->dictstart : InvalidBlockNumber;

	for (uint32 i = 0; i < hdr->ndirpages; i++)
	{
		Buffer		buf = SsReadPage(index, hdr->dirstart + i, BUFFER_LOCK_SHARE, SS_PAGE_DIR, NULL);
		Page		page;
		OffsetNumber off;
		bool		stop = false;

		page = BufferGetPage(buf);
		off = page_floor(page, term, len);
		if (off != InvalidOffsetNumber)
		{
			res = page_item(page, off)->df;
			if (off < PageGetMaxOffsetNumber(page))
				stop = true;
		}
		else
			stop = true;
		UnlockReleaseBuffer(buf);
		if (stop)
			break;
	}
	return res;
}

/*
 * SsDictLookup: find term in a segment's dictionary; on success copies its
 * entry's fixed part (document frequency, where its postings and skip
 * entries start) into *out.
 */
bool
SsDictLookup(Relation index, const SsSegHeader *hdr, const char *term, int len,
			 SsDictItem *out)
{
	BlockNumber blk = dict_block_for(index, hdr, term, len);
	Buffer		buf;
	Page		page;
	OffsetNumber off;
	bool		found = false;

	if (blk == InvalidBlockNumber)
		return false;
	buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_DICT, NULL);
	page = BufferGetPage(buf);
	off = page_floor(page, term, len);
	if (off != InvalidOffsetNumber)
	{
		SsDictItem *it = page_item(page, off);

		if (term_cmp(it->term, it->len, term, len) == 0)
		{
			memcpy(out, it, offsetof(SsDictItem, term));
			found = true;
		}
	}
	UnlockReleaseBuffer(buf);
	return found;
}

/*
 * SsDictScanRange: call cb for every dictionary entry >= from, in order,
 * until stop returns true or the dictionary ends.  Items are copied before
 * the callback runs, so callbacks may read other pages.
 */
void
SsDictScanRange(Relation index, const SsSegHeader *hdr, const char *from, int fromlen,
				SsDictCallback cb, void *arg, bool (*stop) (void *arg, const SsDictItem *item))
{
	BlockNumber blk = dict_block_for(index, hdr, from, fromlen);
	char		copy[MAXALIGN(SS_DICT_ITEM_SIZE(SS_MAX_TERM_LEN + 8))];

	if (blk == InvalidBlockNumber)
		return;
	for (; blk < hdr->dictstart + hdr->ndictpages; blk++)
	{
		Buffer		buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_DICT, NULL);
		Page		page;
		OffsetNumber maxoff;
		int			nitems = 0;
		char	   *items;
		bool		done = false;

		page = BufferGetPage(buf);
		maxoff = PageGetMaxOffsetNumber(page);
		items = palloc(BLCKSZ);
		{
			char	   *p = items;

			for (OffsetNumber off = FirstOffsetNumber; off <= maxoff; off++)
			{
				SsDictItem *it = page_item(page, off);

				if (term_cmp(it->term, it->len, from, fromlen) < 0)
					continue;
				memcpy(p, it, SS_DICT_ITEM_SIZE(it->len));
				p += MAXALIGN(SS_DICT_ITEM_SIZE(it->len));
				nitems++;
			}
		}
		UnlockReleaseBuffer(buf);
		{
			char	   *p = items;

			for (int i = 0; i < nitems && !done; i++)
			{
				SsDictItem *it = (SsDictItem *) p;

				memcpy(copy, it, SS_DICT_ITEM_SIZE(it->len));
				if (stop && stop(arg, (SsDictItem *) copy))
					done = true;
				else
					cb(arg, (SsDictItem *) copy);
				p += MAXALIGN(SS_DICT_ITEM_SIZE(it->len));
			}
		}
		pfree(items);
		if (done)
			break;
	}
}

/*
 * SsReadPostings: call cb for the n postings starting at (blk, off),
 * decoding the varint (docid delta, tf) records; records never straddle
 * pages (see SS_POSTING_MAX).
 */
void
SsReadPostings(Relation index, BlockNumber blk, uint16 off, uint32 n,
			   SsPostingCallback cb, void *arg)
{
	uint32		docid = 0;
	char		local[SS_PAGE_CAPACITY];

	while (n > 0)
	{
		Buffer		buf;
		uint32		pos = off;

		if (off >= SS_PAGE_CAPACITY)
			elog(ERROR, "shop_search: posting offset %u out of range", off);
		buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_POST, NULL);
		memcpy(local + off, SsPageContents(BufferGetPage(buf)) + off, SS_PAGE_CAPACITY - off);
		UnlockReleaseBuffer(buf);
		while (n > 0 && SS_PAGE_CAPACITY - pos >= SS_POSTING_MAX)
		{
			uint32		delta,
						tf;

			pos += SsVarintGet(local + pos, &delta);
			pos += SsVarintGet(local + pos, &tf);
			docid += delta;
			cb(arg, docid, (uint16) tf);
			n--;
		}
		blk++;
		off = 0;
	}
}

/*
 * SsCountPostings: of the n postings starting at (blk, off), how many have
 * a docid whose bit is set in bits (nmap bits); *first is the map entry of
 * the first of them (only the entries of set bits are read: a bitmap of a
 * million documents stays in the CPU's cache, their map does not).  The postings are decoded in place,
 * under the page's share lock (a segment's pages never change), without
 * a call per posting: attribute facets count every attribute term of the
 * index this way (ssfunc.c).
 */
uint64
SsCountPostings(Relation index, BlockNumber blk, uint16 off, uint32 n,
				const uint8 *bits, const int32 *map, uint32 nmap, int32 *first)
{
	uint32		docid = 0;
	uint64		cnt = 0;

	while (n > 0)
	{
		Buffer		buf;
		const char *page;
		uint32		pos = off;

		if (off >= SS_PAGE_CAPACITY)
			elog(ERROR, "shop_search: posting offset %u out of range", off);
		buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_POST, NULL);
		page = SsPageContents(BufferGetPage(buf));
		while (n > 0 && SS_PAGE_CAPACITY - pos >= SS_POSTING_MAX)
		{
			uint32		delta,
						tf;

			pos += SsVarintGet(page + pos, &delta);
			pos += SsVarintGet(page + pos, &tf);
			docid += delta;
			if (docid < nmap && (bits[docid >> 3] & (1 << (docid & 7))) && cnt++ == 0)
				*first = map[docid];
			n--;
		}
		UnlockReleaseBuffer(buf);
		blk++;
		off = 0;
	}
	return cnt;
}

/* SsReadSkips: copy n skip entries of a segment, from index first on. */
void
SsReadSkips(Relation index, const SsSegHeader *hdr, uint32 first, uint32 n, SsSkip *out)
{
	while (n > 0)
	{
		uint32		page = first / SS_SKIPS_PER_PAGE;
		uint32		slot = first % SS_SKIPS_PER_PAGE;
		uint32		cnt = Min(n, (uint32) SS_SKIPS_PER_PAGE - slot);
		Buffer		buf;

		if (page >= hdr->nskippages)
			elog(ERROR, "shop_search: skip entry %u out of range", first);
		buf = SsReadPage(index, hdr->skipstart + page, BUFFER_LOCK_SHARE, SS_PAGE_SKIP, NULL);
		memcpy(out, (SsSkip *) SsPageContents(BufferGetPage(buf)) + slot, sizeof(SsSkip) * cnt);
		UnlockReleaseBuffer(buf);
		out += cnt;
		first += cnt;
		n -= cnt;
	}
}

static void
last_docid_cb(void *arg, uint32 docid, uint16 tf)
{
	*(uint32 *) arg = docid;
}

/*
 * SsTermSkips: the skip entries of a term of df postings starting at
 * (postblk, postoff) whose dictionary item's skip field is skip: read
 * from the skip pages, or for a one-block term made from the item (its
 * bound) and its postings (their last docid).
 */
void
SsTermSkips(Relation index, const SsSegHeader *hdr, uint32 df,
			BlockNumber postblk, uint16 postoff, uint32 skip, SsSkip *out)
{
	uint32		nblocks = (df + SS_BLOCK_POSTINGS - 1) / SS_BLOCK_POSTINGS;

	if (nblocks > 1)
	{
		if ((uint64) skip + nblocks > hdr->nskips)
			elog(ERROR, "shop_search: skip entries of a term out of range");
		SsReadSkips(index, hdr, skip, nblocks, out);
		return;
	}
	out->lastdoc = 0;
	SsReadPostings(index, postblk, postoff, df, last_docid_cb, &out->lastdoc);
	out->postblk = postblk;
	out->postoff = postoff;
	out->pad = 0;
	out->maxt = SsOneBlockBound(skip);
}

/* ---- pending items ---- */

Size
SsPendItemSize(const SsDocData *d)
{
	Size		sz = sizeof(SsPendItem);

	for (int i = 0; i < d->nterms; i++)
		sz += 3 + d->terms[i].len;
	return sz;
}

void
SsPendItemForm(const SsDocData *d, char *out)
{
	SsPendItem *it = (SsPendItem *) out;
	char	   *p = out + sizeof(SsPendItem);

	memcpy(&it->doc, &d->doc, sizeof(SsDoc));
	it->nterms = d->nterms;
	for (int i = 0; i < d->nterms; i++)
	{
		uint8		len = d->terms[i].len;

		*p++ = (char) len;
		memcpy(p, &d->terms[i].tf, 2);
		p += 2;
		memcpy(p, d->terms[i].term, len);
		p += len;
	}
	it->datalen = p - (out + sizeof(SsPendItem));
}

void
SsPendItemTerms(const SsPendItem *it, void (*cb) (void *arg, const char *term, int len, uint16 tf),
				void *arg)
{
	const char *p = (const char *) it + sizeof(SsPendItem);

	for (int i = 0; i < it->nterms; i++)
	{
		uint8		len = (uint8) *p++;
		uint16		tf;

		memcpy(&tf, p, 2);
		p += 2;
		cb(arg, p, len, tf);
		p += len;
	}
}

/* ---- the facet column's entries ---- */

/* the lower ends of the price facet's buckets, in cents */
const int64 SsFacetPriceLo[SS_FACET_NPRICE] = {0, 1000, 2500, 5000, 10000, 25000, 50000, 100000};

/*
 * a document's facet flags (SS_FC_*, the FC_* of the backend's column) and
 * its price and rating buckets (SsFacetEntry.pr): what the facet column
 * pages hold (written by sswrite.c, checked by ssverify.c) and what
 * shop.search_facets counts (ssfunc.c)
 */
uint8
SsFacetFlags(const SsDoc *doc)
{
	uint8		f = (doc->flags & SS_DOC_DEAD) ? SS_FC_DEAD : 0;

	if (doc->flags & SS_DOC_HAS_STOCK)
		f |= SS_FC_HAS_STOCK | ((doc->flags & SS_DOC_INSTOCK) ? SS_FC_INSTOCK : 0);
	if (doc->flags & SS_DOC_HAS_CAT)
		f |= SS_FC_CAT;
	if (doc->flags & SS_DOC_HAS_BRAND)
		f |= SS_FC_BRAND;
	if (doc->flags & SS_DOC_HAS_PRICE)
		f |= SS_FC_PRICE;
	if (doc->flags & SS_DOC_HAS_RATING)
		f |= SS_FC_RATING;
	return f;
}

uint8
SsFacetPr(const SsDoc *doc)
{
	uint8		pr = 0;

	if (doc->flags & SS_DOC_HAS_PRICE)
		for (int b = SS_FACET_NPRICE - 1; b >= 0; b--)
			if (doc->price_cents >= SsFacetPriceLo[b])
			{
				pr = (uint8) (b + 1);
				break;
			}
	if (doc->flags & SS_DOC_HAS_RATING)
		for (int r = 4; r >= 1; r--)
			if (doc->rating >= r)
			{
				pr |= (uint8) (r << 4);
				break;
			}
	return pr;
}
