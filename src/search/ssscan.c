/*-------------------------------------------------------------------------
 *
 * ssscan.c
 *	  shop_search index scans: query evaluation (term expansion, BM25F
 *	  scoring, filters, boost), ordered scans handing out rows best first in
 *	  growing batches, and bitmap scans.
 *
 * Evaluation, per query:
 *   1. Expansion.  Each query word is looked up in every segment's
 *      dictionary as itself and as its stem; the last word also collects
 *      every completion (a dictionary range); words with a typo budget
 *      collect every dictionary term within it (candidates from the
 *      trigram map, sstypo.c).  Pending documents contribute the terms
 *      they hold.  Every expansion term knows which query words it
 *      matches (SsMatchTerm), with how many typos and which score factor.
 *      The expansion of a word is exactly the set of terms the match rule
 *      of ssquery.c accepts, nothing capped, nothing depending on which
 *      other terms exist: an index scan matches the rows the operator
 *      functions match.
 *   2. Scoring, segment by segment, SS_WINDOW docids at a time and term at
 *      a time inside a window: a posting's BM25F contribution is
 *      idf(term) * tf'(k1+1)/(tf'+k1), tf' the field-weighted,
 *      length-normalised frequency (lengths from the norm pages).  A word
 *      keeps its best expansion per document (fewest typos, then highest
 *      score); a slot (a word, or a synonym group of phrases) keeps its
 *      best alternative; a document must satisfy every slot (AND).
 *   3. Pruning, for ranked scans holding k rows (block-max): documents
 *      are numbered most popular first, so the first document of a window
 *      bounds its boost; each block of 128 postings has a skip entry with
 *      its largest tf'.  A window whose combined bound cannot beat the
 *      k-th row is skipped unread; in AND mode words go rarest first (per
 *      window, by the postings still worth reading), later words look only
 *      at surviving candidates (a bitmap), blocks and postings that cannot
 *      reach the k-th row with the other words at their bounds are
 *      dropped.  A frequent term's blocks all hold some high score, so
 *      for it the scan keeps an impact list (its highest-scoring postings
 *      by level, see impact_get) and reads only the levels a window
 *      needs; in AND mode the first word scores only documents the second
 *      can bring enough to (member_bits).  shop.search_block_max = off
 *      evaluates everything; the rows and scores are the same
 *      (sql/search_topk.sql, sql/search_topk_impact.sql).
 *   4. Filters (category, brand, price, rating, stock) are checked on the
 *      stored values of each matching document (a selective category or
 *      brand filter first turns its filter terms' postings into a docid
 *      bitmap), then the bounded boost (popularity, rating,
 *      personalization) multiplies the text score.
 *   5. Order: fewer typos first, then higher score, then the smaller tie
 *      id (the index's first bigint INCLUDE column: the catalog's
 *      product_id), then the heap TID (res_cmp).  The distance handed to
 *      the executor is typos * 10000 - score (score is capped at 4999).
 *      Every bound of step 3 skips a document only if its best possible
 *      distance is strictly above the k-th's (with margins for float
 *      rounding), so a document tying the k-th is always scored: the tie
 *      order decides which ties enter, never what is read.
 *
 * PostgreSQL does not tell an index the LIMIT, so an ordered scan keeps
 * only the best SS_FIRST_BATCH rows (a bounded heap; a document whose
 * score could not enter it even with the largest boost is not even
 * boosted) and returns them sorted.  When they are used up it evaluates
 * again for a batch four times larger, keeping only rows ordered after the
 * last one handed out, with the collection statistics (and which words
 * needed typo expansion) frozen at the first evaluation: every row keeps
 * its distance, so nothing is repeated or lost even while rows are added.
 * A batch holds at most what work_mem holds (batch_cap); plain index scans
 * without ORDER BY use the same batches.  Bitmap scans put every match
 * into the executor's bitmap as they find it (no scores), which work_mem
 * bounds by going lossy.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/relscan.h"
#include "miscadmin.h"
#include "nodes/tidbitmap.h"
#include "port/pg_bitutils.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "shop.h"
#include "ssearch.h"

#define SS_FIRST_BATCH			64
/*
 * Posting pages an evaluation keeps pinned (not locked) between block
 * decodes, by block number modulo this: a term's consecutive blocks mostly
 * share a page, and a block decode looked its page up in the buffer table
 * again each time.
 */
#define SS_POST_PINS			16
#define SS_NORM_TABLE			256

/*
 * Window size of document-at-a-time evaluation: a segment is scored
 * SS_WINDOW docids at a time, term at a time within the window, and a
 * window whose block bounds cannot beat the current top k is skipped
 * without decoding a posting.
 */
#define SS_WINDOW				2048

/*
 * SsCollectMatches asks the next SsEvaluate to collect documents;
 * SsVisitMatches, to hand each to visit_next instead (sorted scans)
 */
static bool collect_next = false;
static bool locs_next = false;	/* SsCollectMatchSet: with locations */
/* SsTermStats: the next SsEvaluate stops once the words' statistics are known */
static bool stats_next = false;
static SsDocVisitor visit_next = NULL;
static void *visit_next_arg = NULL;
static SsSortPrune *prune_next = NULL;	/* SsVisitMatchesSorted */
static SsSegVisitor seg_next = NULL;	/* SsCollectMatchIds */
static SsIdVisitor id_next = NULL;
static void *ids_next_arg = NULL;

/*
 * The attribute filter of the evaluations to come (SsSetAttrFilter): the
 * filter terms every matching document must hold (or the overflow term),
 * in TopMemoryContext; none: attr_nterms 0.
 */
typedef struct AttrTerm
{
	char		term[SS_FILTER_TERM_MAX];
	int			len;
} AttrTerm;
static int	attr_nterms = 0;
static AttrTerm *attr_terms = NULL;

/* where SsEvaluate keeps frozen statistics (the scan's long-lived context) */
static MemoryContext frozen_cxt = NULL;

/* work counters of a ranked scan, reported at DEBUG1 by eval_segment */
static struct
{
	uint64		decoded;		/* postings decoded */
	uint64		offered;		/* postings that reached posting_cb's scoring */
	uint64		cands;			/* candidates examined after the last slot */
	uint64		docs;			/* document records read for them */
} ss_work;

/*
 * A sorted scan visits a segment's blocks in phases of growing bounds
 * (sort_prune_init): first the few blocks holding the smallest keys, as
 * many as k matches would fill, then eight times as many, and so on,
 * until the visitor holds k keys; then every other block whose bound is
 * at most the k-th key, in one last phase.
 */
#define SS_SORT_MAX_PHASES		12
#define SS_SORT_PHASE_GROWTH	8
#define SS_SORT_DENSE_K			256	/* from this k on, the first phase by density */

/* the backend's last search (ssearch.h) */
SsLastScan	ss_last_scan;

void
SsLastScanReset(void)
{
	memset(&ss_last_scan, 0, sizeof(ss_last_scan));
}

/*
 * A result: its distance, then the document's tie id (the index's first
 * bigint INCLUDE column, the catalog's product_id; PG_INT64_MAX for a
 * document without one) and its heap TID order rows of equal distance
 * (res_cmp), so that ties keep their order when VACUUM or an update moves
 * a row, and a cluster's router orders them as one node does.
 */
typedef struct SsResult
{
	float4		dist;
	ItemPointerData tid;
	int64		tie;
} SsResult;

/*
 * Collection statistics an ordered scan fixes at its first evaluation, so
 * that re-evaluating for a larger batch gives every row the same distance
 * even if rows were added meanwhile, and resuming after the last row
 * handed out neither repeats nor skips one.
 */
typedef struct SsFrozen
{
	bool		set;
	uint64		ndocs;
	double		sumlen[SS_NFIELDS];
	float4		max_popularity;
	int			nwords;
	double	   *widf;
} SsFrozen;

typedef struct Exp
{
	char		term[SS_TERM_KEY_SIZE];	/* hash key */
	int			len;
	uint32		df;				/* over all segments and pending */
	int			nm;
	SsTermMatch *m;				/* the query words it matches */
	struct SegState *lastseg;	/* the last segment it was added to */
} Exp;

/*
 * One expansion term in one segment, with a cursor over its postings: the
 * skip entries (read on first use), the score bound of each block, and
 * the one block decoded last.
 */
typedef struct SegExp
{
	Exp		   *e;
	uint32		df;
	BlockNumber postblk;		/* where the postings start */
	uint16		postoff;
	uint32		skip;			/* its dictionary item's skip field */
	uint32		nblocks;
	SsSkip	   *skips;			/* NULL until loaded */
	uint32		b;				/* first block not wholly before the window */
	int32		decoded;		/* block held in docs/tfs, -1 none */
	uint32		ndec;
	uint32	   *docs;
	uint16	   *tfs;
	struct ImpactList *imp;		/* its impact list (impact_get), or NULL */
	bool		imp_tried;
	uint32		ipos;			/* impact_seek's last answer */
} SegExp;

typedef struct NormCache NormCache;

typedef struct SegState
{
	SsSegHeader hdr;
	/* bounds of the current window (window_possible) */
	float4	   *slot_ub;		/* per slot */
	float4		win_ub;			/* their sum */
	float4		need_score;		/* text score a document must beat, -inf: none */
	uint64		candbits[SS_WINDOW / 64];	/* AND mode: the window's candidates */
	bool		use_candbits;
	uint8	   *allowed;		/* selective filter: bitmap of passing docids */
	uint32	   *wincnt;			/* its documents per window */
	bool		simple;			/* every slot is one word (block pruning) */
	NormCache  *nc;				/* during eval_segment */
	float4		scale;			/* of skip bounds, see bound_scale */
	int			nexp;
	int			maxexp;
	SegExp	   *exps;
	struct WordCursors *wc;		/* per query word, during eval_segment */
	struct WinBound *wb;		/* per query word and window, see window_bounds */
	uint32		nwin;
	float4	   *winpop;			/* per window: its first document's logpop ... */
	bool	   *winpop_known;	/* ... once read (window_possible) */
	struct WinPopEntry *wpc;	/* the backend's copy of those, if any ... */
	uint64		wpc_id;			/* ... while its entry still has this id */
	/* sorted scans (SsVisitMatchesSorted): see sort_window */
	const double *sortmins;		/* per SS_SORT_BLOCK docids: smallest key */
	uint8	   *catbits;		/* the category or brand filter's bitmap, if any */
	uint8	   *filterbits;		/* the filter's allowed / wincnt, if any */
	uint32	   *filtercnt;
	uint8	   *sortbits;		/* ... and the blocks that can still enter */
	uint32	   *sortcnt;
	double		sortcuts[SS_SORT_MAX_PHASES];	/* phase i: bounds up to this */
	int			nsortcuts;		/* the last is the largest bound */
	double		sortlo;			/* this phase: bounds above this ... */
	double		sorthi;			/* ... and at most this */
	bool		sortfirst;		/* (the first phase: no lower end) */
	double	   *sortwinlo;		/* per window: its blocks' smallest bound ... */
	double	   *sortwinhi;		/* ... and largest (a phase skips windows by them) */
	bool		ids;			/* collecting docids, not records (facets) */
} SegState;

#define SS_PASS_FULL	1
#define SS_PASS_PARTIAL	2

typedef struct PendDoc
{
	SsPendItem *item;
	BlockNumber blk;
	OffsetNumber off;
} PendDoc;

typedef struct Eval
{
	Relation	index;
	SsQuery    *q;
	SsMetaPageData meta;
	double		w[SS_NFIELDS];
	double		avglen[SS_NFIELDS];
	double		wnorm[SS_NFIELDS][SS_NORM_TABLE];	/* field_norm of short fields */
	float4		inv_log_maxpop;
	HTAB	   *exps;
	SegState   *segs;
	int			npend;
	PendDoc    *pend;
	bool		want_all;		/* also return non-matching docs, +inf */
	bool		unmarked;		/* evaluating one class of marked boosts ... */
	float4		class_factor;	/* ... whose factors multiply to this */
	/*
	 * "match": "any", ranked with pruning (and_first): a segment is
	 * evaluated in two passes, the documents having every word first
	 * (SS_PASS_FULL, AND mode), then, only if those leave room in the top
	 * k, the documents missing a word (SS_PASS_PARTIAL); 0: one pass
	 */
	int			pass;
	/*
	 * "type_compound" (match any): bit s for a slot holding a word of a
	 * compound type that SS_COMPOUND_MIN_HEADS or more documents have as
	 * their head noun (compound_init); a row of the type asked for missing
	 * such a slot gets no type boost
	 */
	uint32		compound_slots;
	bool		filtered;		/* the query has stored-value filters */
	int			topk;			/* keep only the best topk (0: all) */
	bool		have_after;		/* keep only results ordered after "after" */
	SsResult	after;
	SsFrozen   *frozen;			/* statistics shared by re-evaluations */
	double	   *widf;			/* per query word: idf of all its expansions */
	/* bitmap scans: every match's TID goes here, not to res (topk 0 only) */
	TIDBitmap  *tbm;
	int64		ntbm;
	/* facets: every match's document is copied here too (topk 0 only) */
	int			nattr;			/* attribute filter terms (SsSetAttrFilter) */
	AttrTerm   *attr;
	bool		collect;
	SsDocVisitor visit;			/* ... or handed to this one by one */
	void	   *visit_arg;
	SsSortPrune *prune;			/* ... skipping blocks by sort key bounds */
	SsSegVisitor visit_seg;		/* ... the docids of the segments this */
	SsIdVisitor visit_id;		/* one takes go to this one instead */
	void	   *ids_arg;		/* (SsCollectMatchIds) */
	SsDoc	   *docs;
	int			ndocs;
	int			maxdocs;
	bool		want_locs;		/* ... and where each is (SsCollectMatchSet) */
	int32	   *locseg;			/* segment number, -1: pending */
	uint32	   *locdoc;			/* docid in the segment, or pending item */
	/* output */
	SsResult   *res;
	int			nres;
	int			maxres;
	/* posting pages kept pinned between block decodes (post_page_lock) */
	BlockNumber postpin_blk[SS_POST_PINS];
	Buffer		postpin_buf[SS_POST_PINS];
} Eval;

/* a match: seg the segment's number (-1: the pending document docid) */
static void
collect_doc(Eval *ev, const SsDoc *doc, int32 seg, uint32 docid)
{
	if (ev->visit)
	{
		ss_last_scan.matches++;
		ev->visit(ev->visit_arg, doc);
		return;
	}
	if (ev->ndocs >= ev->maxdocs)
	{
		ev->maxdocs = Max(256, ev->maxdocs * 2);
		ev->docs = ev->docs ? repalloc_huge(ev->docs, sizeof(SsDoc) * ev->maxdocs)
			: palloc(sizeof(SsDoc) * ev->maxdocs);
		if (ev->want_locs)
		{
			ev->locseg = ev->locseg ? repalloc_huge(ev->locseg, sizeof(int32) * ev->maxdocs)
				: palloc(sizeof(int32) * ev->maxdocs);
			ev->locdoc = ev->locdoc ? repalloc_huge(ev->locdoc, sizeof(uint32) * ev->maxdocs)
				: palloc(sizeof(uint32) * ev->maxdocs);
		}
	}
	if (ev->want_locs)
	{
		ev->locseg[ev->ndocs] = seg;
		ev->locdoc[ev->ndocs] = docid;
	}
	ev->docs[ev->ndocs++] = *doc;
}

/* ---- accumulators ---- */

typedef struct Acc
{
	double	   *score;			/* double: a sum of a few float4 word
								 * scores is exact, so its float4 does not
								 * depend on the order the slots are added
								 * in (by bound in a window, by slot in
								 * the pending list, eval_pending) */
	uint8	   *typ1;			/* typos + 1; 0 = unset */
	uint8	   *cnt;
	uint32	   *touched;
	uint32		ntouched;
	uint32		maxtouched;
} Acc;

/*
 * Per-document accumulator arrays are kept between queries (in
 * TopMemoryContext, grown to the largest segment seen), because allocating
 * and zeroing a few bytes per document of a million-document segment on
 * every query costs more than scoring a rare word.  Users reset exactly
 * the entries they touched; scratch.dirty catches an evaluation that ended
 * in an error, after which the arrays are dropped and come back zeroed.
 * The two for multi-word alternatives (synonym phrases) are allocated
 * only when a query has one.
 */
#define SS_NSCRATCH 4
static struct
{
	uint32		cap;
	double	   *score[SS_NSCRATCH];
	uint8	   *typ1[SS_NSCRATCH];
	uint8	   *cnt[SS_NSCRATCH];
	bool		dirty;
}			scratch;

static void
scratch_reserve(uint32 n, int nslots)
{
	if (n > scratch.cap || scratch.dirty)
	{
		/* grow (or clear after an error): drop everything, allocate lazily */
		for (int i = 0; i < SS_NSCRATCH; i++)
		{
			if (scratch.score[i])
			{
				pfree(scratch.score[i]);
				pfree(scratch.typ1[i]);
				pfree(scratch.cnt[i]);
			}
			scratch.score[i] = NULL;
			scratch.typ1[i] = NULL;
			scratch.cnt[i] = NULL;
		}
		scratch.cap = Max(n, scratch.cap);
		scratch.dirty = false;
	}
	for (int i = 0; i < nslots; i++)
	{
		if (scratch.score[i])
			continue;
		scratch.score[i] = MemoryContextAllocHuge(TopMemoryContext, sizeof(double) * scratch.cap);
		scratch.typ1[i] = MemoryContextAllocExtended(TopMemoryContext, scratch.cap,
													 MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		scratch.cnt[i] = MemoryContextAllocExtended(TopMemoryContext, scratch.cap,
													MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	}
}

static void
acc_init(Acc *a, int slot, bool withcnt)
{
	a->score = scratch.score[slot];
	a->typ1 = scratch.typ1[slot];
	a->cnt = withcnt ? scratch.cnt[slot] : NULL;
	a->maxtouched = 256;
	a->touched = palloc(sizeof(uint32) * a->maxtouched);
	a->ntouched = 0;
}

static inline void
acc_touch(Acc *a, uint32 d)
{
	if (a->ntouched >= a->maxtouched)
	{
		a->maxtouched *= 2;
		a->touched = repalloc_huge(a->touched, sizeof(uint32) * a->maxtouched);
	}
	a->touched[a->ntouched++] = d;
}

/* keep the better of (score, typos) per document */
static inline void
acc_offer(Acc *a, uint32 d, double s, int typos)
{
	uint8		t1 = (uint8) Min(typos + 1, 250);

	if (a->typ1[d] == 0)
	{
		a->typ1[d] = t1;
		a->score[d] = s;
		acc_touch(a, d);
	}
	else if (t1 < a->typ1[d] || (t1 == a->typ1[d] && s > a->score[d]))
	{
		a->typ1[d] = t1;
		a->score[d] = s;
	}
}

/* add (score, typos) and count per document */
static inline void
acc_add(Acc *a, uint32 d, double s, int typos)
{
	if (a->typ1[d] == 0)
	{
		a->typ1[d] = 1;
		a->score[d] = 0;
		a->cnt[d] = 0;
		acc_touch(a, d);
	}
	a->score[d] += s;
	a->typ1[d] = (uint8) Min(a->typ1[d] + typos, 250);
	a->cnt[d]++;
}

static void
acc_reset(Acc *a)
{
	for (uint32 i = 0; i < a->ntouched; i++)
		a->typ1[a->touched[i]] = 0;
	a->ntouched = 0;
}

/* ---- expansion ---- */

static Exp *
exp_get(Eval *ev, const char *term, int len, bool *isnew)
{
	char		key[SS_TERM_KEY_SIZE];
	Exp		   *e;
	bool		found;

	SsTermKey(key, term, len);
	e = hash_search(ev->exps, key, HASH_ENTER, &found);
	if (!found)
	{
		e->len = len;
		e->df = 0;
		e->nm = 0;
		e->m = NULL;
		e->lastseg = NULL;
		for (int i = 0; i < ev->q->nwords; i++)
		{
			int			typos;
			float4		factor;

			if (SsMatchTerm(&ev->q->words[i], e->term, len, ev->q->typos, &typos, &factor))
			{
				if (e->m == NULL)
					e->m = palloc(sizeof(SsTermMatch) * ev->q->nwords);
				e->m[e->nm].qword = i;
				e->m[e->nm].typos = typos;
				e->m[e->nm].factor = factor;
				e->nm++;
			}
		}
	}
	*isnew = !found;
	return e;
}

static void
seg_add_exp(Eval *ev, SegState *s, const char *term, int len, const SsDictItem *it)
{
	bool		isnew;
	Exp		   *e = exp_get(ev, term, len, &isnew);

	if (e->nm == 0 || e->lastseg == s)
		return;					/* no match, or found twice (exact and prefix) */
	e->lastseg = s;
	if (s->nexp >= s->maxexp)
	{
		s->maxexp *= 2;
		s->exps = repalloc(s->exps, sizeof(SegExp) * s->maxexp);
	}
	memset(&s->exps[s->nexp], 0, sizeof(SegExp));
	s->exps[s->nexp].e = e;
	s->exps[s->nexp].df = it->df;
	s->exps[s->nexp].postblk = it->postblk;
	s->exps[s->nexp].postoff = it->postoff;
	s->exps[s->nexp].skip = it->skip;
	s->exps[s->nexp].nblocks = (it->df + SS_BLOCK_POSTINGS - 1) / SS_BLOCK_POSTINGS;
	s->exps[s->nexp].decoded = -1;
	s->nexp++;
	e->df += it->df;
}

typedef struct RangeScan
{
	Eval	   *ev;
	SegState   *seg;
	const SsQWord *w;			/* prefix scan: the word */
	int			scanned;
} RangeScan;

static bool
prefix_stop(void *arg, const SsDictItem *it)
{
	RangeScan  *rs = (RangeScan *) arg;

	rs->scanned++;
	return it->len < rs->w->len || memcmp(it->term, rs->w->exact, rs->w->len) != 0;
}

static void
prefix_cb(void *arg, const SsDictItem *it)
{
	RangeScan  *rs = (RangeScan *) arg;

	seg_add_exp(rs->ev, rs->seg, it->term, it->len, it);
}

/*
 * Typo candidates of one query word in one segment: every exact term
 * within its typo budget, from the trigram map (sstypo.c) or, for
 * segments without one, a dictionary range.  All of them are expansions
 * of the word: the match rule has no cap.
 */
typedef struct TypoScan
{
	Eval	   *ev;
	SegState   *seg;
	const SsQWord *w;
} TypoScan;

static void
typo_cb(void *arg, const SsDictItem *it)
{
	TypoScan   *ts = (TypoScan *) arg;
	const SsQWord *w = ts->w;
	int			typos;
	float4		factor;

	if (!w->prefix && abs((int) it->len - w->len) > w->maxtypos)
		return;
	if (SsMatchTerm(w, it->term, it->len, true, &typos, &factor) && typos > 0)
		seg_add_exp(ts->ev, ts->seg, it->term, it->len, it);
}

/* stop a typo scan once terms no longer start with the word's first byte */
static bool
first_byte_stop(void *arg, const SsDictItem *it)
{
	TypoScan   *ts = (TypoScan *) arg;

	return it->len == 0 || it->term[0] != ts->w->exact[0];
}

/* Exact, stem and prefix expansions of every query word in one segment. */
static void
expand_segment(Eval *ev, SegState *s)
{
	SsQuery    *q = ev->q;

	for (int i = 0; i < q->nwords; i++)
	{
		SsQWord    *w = &q->words[i];
		SsDictItem	it;
		int			stemlen = strlen(w->stem);

		if (SsDictLookup(ev->index, &s->hdr, w->exact, w->len, &it))
			seg_add_exp(ev, s, w->exact, w->len, &it);
		if (SsDictLookup(ev->index, &s->hdr, w->stem, stemlen, &it))
			seg_add_exp(ev, s, w->stem, stemlen, &it);
		if ((stemlen - 1 != w->len || memcmp(w->stem + 1, w->exact, w->len) != 0) &&
			SsDictLookup(ev->index, &s->hdr, w->stem + 1, stemlen - 1, &it))
			seg_add_exp(ev, s, w->stem + 1, stemlen - 1, &it);
		if (w->prefix)
		{
			/* every completion: the dictionary range of terms it begins */
			RangeScan	rs;

			memset(&rs, 0, sizeof(rs));
			rs.ev = ev;
			rs.seg = s;
			rs.w = w;
			SsDictScanRange(ev->index, &s->hdr, w->exact, w->len, prefix_cb, &rs, prefix_stop);
		}
	}
}

/*
 * Typo expansions of word i in one segment.  The candidates come from the
 * segment's trigram map; a segment written before the map existed, or a
 * word too short for trigrams to narrow anything (SsTypoCandidates),
 * reads a dictionary range instead: with one typo allowed the first
 * letter must be right (a first-letter typo counts as two), so only the
 * range of that letter, as with two for a 7-8 character word
 * ("two_typos", first_fixed); with two, the whole exact-term range.
 */
static void
expand_typos(Eval *ev, SegState *s, int i)
{
	SsQWord    *w = &ev->q->words[i];
	TypoScan	ts;

	ts.ev = ev;
	ts.seg = s;
	ts.w = w;
	if (!SsTypoCandidates(ev->index, &s->hdr, w, typo_cb, &ts))
	{
		if (w->maxtypos >= 2 && !w->first_fixed)
		{
			char		from[1] = {SS_STEM_MARK + 1};

			SsDictScanRange(ev->index, &s->hdr, from, 1, typo_cb, &ts, NULL);
		}
		else
			SsDictScanRange(ev->index, &s->hdr, w->exact, 1, typo_cb, &ts, first_byte_stop);
	}
}

/* pending documents: which terms match, and their document frequency */
static void
pend_term_df_cb(void *arg, const char *term, int len, uint16 tf)
{
	Eval	   *ev = (Eval *) arg;
	bool		isnew;
	Exp		   *e;
	bool		any = false;

	/* cheap pre-check before touching the hash */
	for (int i = 0; i < ev->q->nwords && !any; i++)
	{
		int			typos;
		float4		factor;

		any = SsMatchTerm(&ev->q->words[i], term, len, ev->q->typos, &typos, &factor);
	}
	if (!any)
		return;
	e = exp_get(ev, term, len, &isnew);
	e->df++;
}

static void
load_pending(Eval *ev)
{
	BlockNumber blk = ev->meta.pending_head;
	int			max = 64;

	ev->pend = palloc(sizeof(PendDoc) * max);
	ev->npend = 0;
	while (blk != InvalidBlockNumber)
	{
		Buffer		buf = SsReadPage(ev->index, blk, BUFFER_LOCK_SHARE, SS_PAGE_PENDING, NULL);
		Page		page;
		OffsetNumber maxoff;

		CHECK_FOR_INTERRUPTS();
		page = BufferGetPage(buf);
		maxoff = PageGetMaxOffsetNumber(page);
		for (OffsetNumber off = FirstOffsetNumber; off <= maxoff; off++)
		{
			ItemId		iid = PageGetItemId(page, off);
			SsPendItem *it = (SsPendItem *) PageGetItem(page, iid);

			if (it->doc.flags & SS_DOC_DEAD)
				continue;
			if (ev->npend >= max)
			{
				max *= 2;
				ev->pend = repalloc_huge(ev->pend, sizeof(PendDoc) * max);
			}
			ev->pend[ev->npend].item = palloc(ItemIdGetLength(iid));
			memcpy(ev->pend[ev->npend].item, it, ItemIdGetLength(iid));
			ev->pend[ev->npend].blk = blk;
			ev->pend[ev->npend].off = off;
			ev->npend++;
		}
		blk = SsPageGetOpaque(page)->next;
		UnlockReleaseBuffer(buf);
	}
}

/*
 * compound_init: ev->compound_slots, the slots of the query's
 * "type_compound" words (match any) that are a type of their own: the head
 * noun of SS_COMPOUND_MIN_HEADS or more documents (the postings of their
 * head filter term in every segment, dead ones too, and the pending
 * documents).  "mouse" of `gaming mouse pad` is (a row missing it is no
 * mouse pad), "sd" of `micro sd card` is not (a card missing it may still
 * be the card meant).  Reads one dictionary entry per segment and word.
 */
static void
compound_init(Eval *ev)
{
	SsQuery    *q = ev->q;

	ev->compound_slots = 0;
	if (!q->match_any || q->ntypes == 0)
		return;
	for (int k = 0; k < q->ncompound; k++)
	{
		char		term[SS_FILTER_TERM_MAX];
		int			len = SsHeadTerm(q->compound_head[k], term);
		uint64		n = 0;

		for (uint32 i = 0; i < ev->meta.nsegments && n < SS_COMPOUND_MIN_HEADS; i++)
		{
			SsDictItem	item;

			if (SsDictLookup(ev->index, &ev->segs[i].hdr, term, len, &item))
				n += item.df;
		}
		for (int p = 0; p < ev->npend && n < SS_COMPOUND_MIN_HEADS; p++)
			if (ev->pend[p].item->doc.head == q->compound_head[k])
				n++;
		if (n >= SS_COMPOUND_MIN_HEADS)
			ev->compound_slots |= ((uint32) 1) << q->compound_slot[k];
	}
	/* "type_narrow": a kind of the type, whatever the head counts */
	for (int k = 0; k < q->nnarrow; k++)
		ev->compound_slots |= ((uint32) 1) << q->narrow_slot[k];
}

/* ---- scoring ---- */

/* weight / length norm of a field of len words (tabulated for short ones) */
static inline double
field_norm(const Eval *ev, int f, uint16 len)
{
	if (len < SS_NORM_TABLE)
		return ev->wnorm[f][len];
	return ev->w[f] / (1.0 - SS_FIELD_B(f) + SS_FIELD_B(f) * len / ev->avglen[f]);
}

static void
fill_norm_tables(Eval *ev)
{
	for (int f = 0; f < SS_NFIELDS; f++)
		for (int len = 0; len < SS_NORM_TABLE; len++)
			ev->wnorm[f][len] = ev->w[f] / (1.0 - SS_FIELD_B(f) + SS_FIELD_B(f) * len / ev->avglen[f]);
}

/*
 * BM25F: t, the field-weighted and length-normalised frequency, saturated
 * as t (k1 + 1) / (t + k1), times idf and the match factor.
 */
static inline double
bm25_t(const Eval *ev, uint16 tf, const uint16 *len)
{
	double		t = 0;
	int			tt = SS_TF_TITLE(tf),
				tb = SS_TF_BRAND(tf),
				td = SS_TF_DESC(tf);

	if (tt)
		t += tt * field_norm(ev, 0, len[0]);
	if (tb)
		t += tb * field_norm(ev, 1, len[1]);
	if (td)
		t += td * field_norm(ev, 2, len[2]);
	return t;
}

static inline float4
bm25(const Eval *ev, double idf, uint16 tf, const uint16 *len, float4 factor)
{
	double		t = bm25_t(ev, tf, len);

	return (float4) (factor * idf * (SS_BM25_K1 + 1) * t / (t + SS_BM25_K1));
}

static inline int res_cmp(const SsResult *a, const SsResult *b);
static int	res_qsort_cmp(const void *a, const void *b);

/* sift the heap entry at i down (max-heap by res_cmp: worst at the root) */
static void
heap_sift_down(SsResult *h, int n, int i)
{
	for (;;)
	{
		int			l = 2 * i + 1,
					r = l + 1,
					m = i;
		SsResult	t;

		if (l < n && res_cmp(&h[l], &h[m]) > 0)
			m = l;
		if (r < n && res_cmp(&h[r], &h[m]) > 0)
			m = r;
		if (m == i)
			return;
		t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

/*
 * Would a result of distance dist (or more) be kept?  False when the
 * top-k heap is full and its worst entry is already better.
 */
static inline bool
result_possible(const Eval *ev, float4 dist)
{
	return ev->topk == 0 || ev->nres < ev->topk || dist <= ev->res[0].dist;
}

/*
 * add_result: keep a result.  Unbounded (topk 0) it is appended; bounded,
 * ev->res is a max-heap of the best topk.  Results ordered at or before
 * ev->after (already handed out by an earlier evaluation) are dropped.
 */
static void
add_result(Eval *ev, const SsDoc *doc, float4 dist)
{
	ItemPointer tid = (ItemPointer) &doc->tid;
	SsResult	r;

	if (ev->tbm)
	{
		/*
		 * A bitmap scan: straight into the bitmap, which work_mem bounds.
		 * With want_all (a query the index cannot evaluate) every row goes
		 * in, for the executor to recheck.
		 */
		if (!isinf(dist) || ev->want_all)
		{
			tbm_add_tuples(ev->tbm, tid, 1, ev->want_all);
			ev->ntbm++;
		}
		return;
	}
	r.tid = *tid;
	r.dist = dist;
	r.tie = (doc->flags & SS_DOC_HAS_TIE) ? doc->tie_id : PG_INT64_MAX;
	if (ev->have_after && res_cmp(&r, &ev->after) <= 0)
		return;
	if (ev->topk > 0)
	{
		if (ev->nres < ev->topk)
		{
			int			i = ev->nres++;

			/* sift up */
			ev->res[i] = r;
			while (i > 0)
			{
				int			parent = (i - 1) / 2;
				SsResult	t;

				if (res_cmp(&ev->res[i], &ev->res[parent]) <= 0)
					break;
				t = ev->res[i];
				ev->res[i] = ev->res[parent];
				ev->res[parent] = t;
				i = parent;
			}
		}
		else if (res_cmp(&r, &ev->res[0]) < 0)
		{
			ev->res[0] = r;
			heap_sift_down(ev->res, ev->nres, 0);
		}
		return;
	}
	if (ev->nres >= ev->maxres)
	{
		ev->maxres *= 2;
		ev->res = repalloc_huge(ev->res, sizeof(SsResult) * ev->maxres);
	}
	ev->res[ev->nres++] = r;
}

static float4
final_dist(const Eval *ev, const SsDoc *doc, float4 score, int typos, int missing,
		   bool compound_missing, bool type_word_missing)
{
	double		s = score * SsBoost(ev->q, doc, ev->inv_log_maxpop, missing, compound_missing,
									type_word_missing);

	return (float4) (missing * SS_MISSING_TIER + Min(typos, 9) * SS_TYPO_TIER -
					 Min(s, SS_MAX_SCORE));
}

/*
 * A cursor over one segment's document pages: the current page stays
 * pinned and share-locked, and documents are read in place (nothing is
 * copied).  Postings arrive in docid order, so a term's documents are read
 * page after page.  Holding this lock while reading posting pages is safe:
 * VACUUM locks one doc page at a time and nothing locks a doc page then
 * waits for a posting page.  Released with doc_release before anything
 * that may wait (interrupt checks, other segments).
 */
typedef struct PageCache
{
	Relation	index;
	BlockNumber start;			/* first block of the area */
	uint16		type;			/* its page type */
	Buffer		buf;
	uint32		page;
	char	   *contents;
} PageCache;

typedef PageCache DocCache;		/* over doc pages */
/*
 * Over norm pages: a few of them at once (by page number modulo
 * SS_NORM_SLOTS), since each expansion of a word walks the window's
 * norms from its start again: a window of SS_WINDOW docids spans two or
 * three norm pages, and one slot looked a page up in the buffer table
 * again at every change.
 */
#define SS_NORM_SLOTS 4
struct NormCache
{
	PageCache	pc[SS_NORM_SLOTS];
};

static inline void
page_cache_init(PageCache *pc, Relation index, BlockNumber start, uint16 type)
{
	pc->index = index;
	pc->start = start;
	pc->type = type;
	pc->buf = InvalidBuffer;
	pc->page = 0;
	pc->contents = NULL;
}

/* the contents of page p of the area, pinned and share-locked */
static inline char *
page_cache_get(PageCache *pc, uint32 p)
{
	if (p != pc->page || !BufferIsValid(pc->buf))
	{
		if (BufferIsValid(pc->buf))
			UnlockReleaseBuffer(pc->buf);
		pc->buf = InvalidBuffer;	/* released, in case the next read fails */
		pc->buf = SsReadPage(pc->index, pc->start + p, BUFFER_LOCK_SHARE, pc->type, NULL);
		pc->contents = SsPageContents(BufferGetPage(pc->buf));
		pc->page = p;
	}
	return pc->contents;
}

static void
page_cache_release(PageCache *pc)
{
	if (BufferIsValid(pc->buf))
		UnlockReleaseBuffer(pc->buf);
	pc->buf = InvalidBuffer;
}

static inline const SsDoc *
doc_get(DocCache *dc, uint32 docid)
{
	return (const SsDoc *) page_cache_get(dc, docid / SS_DOCS_PER_PAGE) + docid % SS_DOCS_PER_PAGE;
}

static inline void
doc_release(DocCache *dc)
{
	page_cache_release(dc);
}

static inline const SsNorm *
norm_get(NormCache *nc, uint32 docid)
{
	uint32		p = docid / SS_NORMS_PER_PAGE;

	return (const SsNorm *) page_cache_get(&nc->pc[p % SS_NORM_SLOTS], p) +
		docid % SS_NORMS_PER_PAGE;
}

/* where docid's norms are if its page is held now, else NULL (for prefetching) */
static inline const SsNorm *
norm_peek(const NormCache *nc, uint32 docid)
{
	uint32		p = docid / SS_NORMS_PER_PAGE;
	const PageCache *pc = &nc->pc[p % SS_NORM_SLOTS];

	if (pc->page != p || !BufferIsValid(pc->buf))
		return NULL;
	return (const SsNorm *) pc->contents + docid % SS_NORMS_PER_PAGE;
}

static void
norm_cache_init(NormCache *nc, Relation index, BlockNumber start)
{
	for (int i = 0; i < SS_NORM_SLOTS; i++)
		page_cache_init(&nc->pc[i], index, start, SS_PAGE_NORM);
}

static void
norm_cache_release(NormCache *nc)
{
	for (int i = 0; i < SS_NORM_SLOTS; i++)
		page_cache_release(&nc->pc[i]);
}

typedef struct PostCtx
{
	Eval	   *ev;
	DocCache   *dc;
	NormCache  *nc;
	Acc		   *target;
	double		idf;
	float4		factor;
	double		c;				/* factor * idf * (k1 + 1), the saturation's numerator */
	int			typos;
	uint32		ndocs;
	bool		filtered;		/* the query has stored-value filters */
	bool		matchonly;		/* facets and bitmaps: the match set, no score */
	const Acc  *need;			/* if set: only documents with needcnt slots there */
	uint8		needcnt;
	float4		minscore;		/* postings scoring less cannot reach the top k */
	double		tmin;			/* the same as a bound on tf' (no division) */
	const uint8 *allowed;		/* see SegState */
} PostCtx;

/*
 * Inlined into its two loops (cursor_scan, impact_scan): a call per
 * posting cost a fifth of the function's instructions in saving and
 * restoring registers.
 */
static pg_attribute_always_inline void
posting_cb(const PostCtx *pc, uint32 docid, uint16 tf)
{
	const SsDoc *doc;
	double		t;
	float4		score;

	if (docid >= pc->ndocs)
		return;
	if (pc->need && (pc->need->typ1[docid] == 0 || pc->need->cnt[docid] != pc->needcnt))
		return;
	if (pc->allowed && !(pc->allowed[docid >> 3] & (1 << (docid & 7))))
		return;
	ss_work.offered++;
	if (pc->matchonly)
	{
		/* facets and bitmaps need the match set, not scores */
		acc_offer(pc->target, docid, 0, pc->typos);
		return;
	}
	if (!pc->filtered)
	{
		/* dead documents are dropped when they reach the result */
		t = bm25_t(pc->ev, tf, norm_get(pc->nc, docid)->len);
	}
	else
	{
		doc = doc_get(pc->dc, docid);
		/* filters and dead documents before scoring */
		if ((doc->flags & SS_DOC_DEAD) || !SsDocPassesFilters(pc->ev->q, doc))
			return;
		t = bm25_t(pc->ev, tf, doc->len);
	}
	/* too low to matter: known before the saturation's division */
	if (t < pc->tmin)
		return;
	/* the same double operations, in the same order, as bm25() */
	score = (float4) (pc->c * t / (t + SS_BM25_K1));
	if (score >= pc->minscore)
		acc_offer(pc->target, docid, score, pc->typos);
}

/* ---- posting cursors and block-max bounds ---- */

/* the smallest docid block b of se can hold */
static inline uint32
block_first(const SegExp *se, uint32 b)
{
	return b == 0 ? 0 : se->skips[b - 1].lastdoc + 1;
}

/*
 * How much larger than a skip entry's maxt the weighted tf' of a posting
 * can be under this scan's weights and averages: maxt was computed with
 * the segment's reference weights and averages.  A weight raised by x
 * raises a term by at most x; a larger average length divides by a
 * smaller norm, by at most the ratio of the averages.  Infinity when a
 * field weighted now was not weighted then (no bound: nothing is skipped).
 */
static float4
bound_scale(const Eval *ev, const SsSegHeader *hdr)
{
	double		wmax = 0,
				amax = 1;

	for (int f = 0; f < SS_NFIELDS; f++)
	{
		if (ev->w[f] <= 0)
			continue;
		if (hdr->refw[f] <= 0 || hdr->refavg[f] <= 0)
			return get_float4_infinity();
		wmax = Max(wmax, ev->w[f] / hdr->refw[f]);
		amax = Max(amax, ev->avglen[f] / hdr->refavg[f]);
	}
	return (float4) (wmax * amax * 1.001);	/* float rounding stays on the safe side */
}

static void cursor_decode(Eval *ev, SegExp *se, uint32 b);

/*
 * Load se's skip entries (where each block starts, its bound).  A term of
 * one block has none (format 6): its bound is in its dictionary item, and
 * its last docid is read by decoding the block now, which then stays
 * decoded for the cursor.
 */
static void
cursor_load(Eval *ev, SegState *s, SegExp *se)
{
	if (se->skips != NULL)
		return;
	se->skips = palloc(sizeof(SsSkip) * Max(se->nblocks, 1));
	se->docs = palloc(sizeof(uint32) * SS_BLOCK_POSTINGS);
	se->tfs = palloc(sizeof(uint16) * SS_BLOCK_POSTINGS);
	if (se->nblocks == 1)
	{
		se->skips[0].postblk = se->postblk;
		se->skips[0].postoff = se->postoff;
		se->skips[0].pad = 0;
		se->skips[0].maxt = SsOneBlockBound(se->skip);
		cursor_decode(ev, se, 0);
		se->skips[0].lastdoc = se->docs[se->ndec - 1];
	}
	else
		SsTermSkips(ev->index, &s->hdr, se->df, se->postblk, se->postoff, se->skip, se->skips);
}

/* move se's cursor to the first block that may hold a docid >= lo */
static inline void
cursor_seek(SegExp *se, uint32 lo)
{
	while (se->b < se->nblocks && se->skips[se->b].lastdoc < lo)
		se->b++;
}

/*
 * Posting page blk, pinned and share-locked; the caller unlocks it with
 * LockBuffer(buf, BUFFER_LOCK_UNLOCK) and leaves the pin to the cache.
 * The page is checked under every lock, as SsReadPage does.  Only pins are
 * kept between calls, never a lock, so what may wait meanwhile (interrupt
 * checks, other pages' locks) waits as before; post_pins_release drops
 * them at the end of each segment (an error releases them with the
 * resource owner, and Eval with them).
 */
static inline Buffer
post_page_lock(Eval *ev, BlockNumber blk)
{
	int			i = blk % SS_POST_PINS;
	Buffer		buf = ev->postpin_buf[i];

	if (BufferIsValid(buf) && ev->postpin_blk[i] == blk)
	{
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		SsCheckPage(ev->index, BufferGetPage(buf), blk, SS_PAGE_POST);
		return buf;
	}
	if (BufferIsValid(buf))
	{
		ev->postpin_buf[i] = InvalidBuffer;
		ReleaseBuffer(buf);
	}
	buf = SsReadPage(ev->index, blk, BUFFER_LOCK_SHARE, SS_PAGE_POST, NULL);
	ev->postpin_buf[i] = buf;
	ev->postpin_blk[i] = blk;
	return buf;
}

static void
post_pins_release(Eval *ev)
{
	for (int i = 0; i < SS_POST_PINS; i++)
	{
		if (BufferIsValid(ev->postpin_buf[i]))
			ReleaseBuffer(ev->postpin_buf[i]);
		ev->postpin_buf[i] = InvalidBuffer;
	}
}

/* decode block b of se into se->docs / se->tfs */
static void
cursor_decode(Eval *ev, SegExp *se, uint32 b)
{
	const SsSkip *sk = &se->skips[b];
	uint32		n = Min((uint32) SS_BLOCK_POSTINGS, se->df - b * SS_BLOCK_POSTINGS);
	uint32		docid = b == 0 ? 0 : se->skips[b - 1].lastdoc;
	BlockNumber blk = sk->postblk;
	uint32		pos = sk->postoff;
	uint32		k = 0;

	if (b == 0)
	{
		blk = se->postblk;
		pos = se->postoff;
	}
	while (k < n)
	{
		Buffer		buf = post_page_lock(ev, blk);
		const char *page;
		uint32	   *docs = se->docs;
		uint16	   *tfs = se->tfs;

		page = SsPageContents(BufferGetPage(buf));
		while (k < n && SS_PAGE_CAPACITY - pos >= SS_POSTING_MAX)
		{
			/*
			 * as many postings as surely fit before the page's end (a
			 * posting takes at most SS_POSTING_MAX bytes) without the
			 * check per posting
			 */
			uint32		sure = Min(n - k, (SS_PAGE_CAPACITY - pos) / SS_POSTING_MAX);
			uint32		end = k + sure;

			for (; k < end; k++)
			{
				const uint8 *p = (const uint8 *) page + pos;
				uint32		delta,
							tf;

				/*
				 * The usual shapes at once: a 1-byte delta, then a tf of
				 * 1 or 2 bytes (a title occurrence alone is 2); the
				 * SS_POSTING_MAX bytes left make reading 3 safe.
				 */
				if (p[0] < 0x80 && p[1] < 0x80)
				{
					delta = p[0];
					tf = p[1];
					pos += 2;
				}
				else if (p[0] < 0x80 && p[2] < 0x80)
				{
					delta = p[0];
					tf = (p[1] & 0x7F) | ((uint32) p[2] << 7);
					pos += 3;
				}
				else
				{
					pos += SsVarintGet(page + pos, &delta);
					pos += SsVarintGet(page + pos, &tf);
				}
				docid += delta;
				docs[k] = docid;
				tfs[k] = (uint16) tf;
			}
		}
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		blk++;
		pos = 0;
	}
	se->ndec = n;
	se->decoded = (int32) b;
	ss_work.decoded += n;
	ss_last_scan.blocks++;
	ss_last_scan.postings += n;

}

static inline float4 score_bound(float4 tub, double idf, float4 factor);
static double nth_smallest(double *v, uint32 n, uint32 m);

/* is a candidate bit set for a docid in [a, b] (window-relative, clipped)? */
static inline bool
cand_in_range(const uint64 *bits, int64 a, int64 b)
{
	a = Max(a, 0);
	b = Min(b, SS_WINDOW - 1);
	while (a <= b)
	{
		uint64		w = bits[a >> 6] >> (a & 63);
		int64		span = 64 - (a & 63);

		if (b - a + 1 < span)
			w &= (UINT64CONST(1) << (b - a + 1)) - 1;
		if (w)
			return true;
		a += span;
	}
	return false;
}

/* is any bit of docids a .. b (inclusive) set in bits? */
static inline bool
bits_in_range(const uint8 *bits, uint32 a, uint32 b)
{
	if (a > b)
		return false;
	for (uint32 i = a >> 3; i <= (b >> 3); i++)
		if (bits[i])
			return true;		/* byte granularity: may say yes early, never no wrongly */
	return false;
}

/*
 * score (posting_cb) every posting of se with lo <= docid < hi, skipping blocks
 * whose score bound (with idf and factor) is below minb
 */
static void
cursor_scan(Eval *ev, SegState *s, SegExp *se, uint32 lo, uint32 hi, float4 minb,
			double idf, float4 factor, PostCtx *pc)
{
	cursor_seek(se, lo);
	for (uint32 b = se->b; b < se->nblocks && block_first(se, b) < hi; b++)
	{
		if (minb > 0 && score_bound(se->skips[b].maxt * s->scale, idf, factor) < minb)
			continue;
		/* AND mode, a later word: no candidate in the block's range */
		if (s->use_candbits &&
			!cand_in_range(s->candbits, (int64) block_first(se, b) - lo, (int64) se->skips[b].lastdoc - lo))
			continue;
		/* a sorted scan: every document of the block's range skipped */
		if (s->sortmins && s->allowed == s->sortbits &&
			!bits_in_range(s->sortbits, Max(block_first(se, b), lo), Min(se->skips[b].lastdoc, hi - 1)))
			continue;
		if (se->decoded != (int32) b)
			cursor_decode(ev, se, b);
		{
			/*
			 * A local copy of the context and of the loop's bounds: the
			 * accumulators' byte stores may alias anything reached
			 * through a pointer, so the fields were read again for
			 * every posting.
			 */
			const PostCtx lpc = *pc;
			const uint32 *docs = se->docs;
			const uint16 *tfs = se->tfs;
			uint32		ndec = se->ndec;
			uint32		j = 0;

			while (j < ndec && docs[j] < lo)
				j++;			/* docids ascend: those before the window */
			if (s->use_candbits)
			{
				const uint64 *cb = s->candbits;

				for (; j < ndec; j++)
				{
					uint32		d = docs[j];

					if (d >= hi)
						return;
					if (cb[(d - lo) >> 6] & (UINT64CONST(1) << ((d - lo) & 63)))
						posting_cb(&lpc, d, tfs[j]);
				}
			}
			else
			{
				for (; j < ndec; j++)
				{
					uint32		d = docs[j];

					if (d >= hi)
						return;
					posting_cb(&lpc, d, tfs[j]);
				}
			}
		}
	}
}

static inline float4
score_bound(float4 tub, double idf, float4 factor)
{
	return (float4) (factor * idf * tub * (SS_BM25_K1 + 1) / (tub + SS_BM25_K1));
}

/*
 * Impact lists.  Every posting block of a frequent word holds some
 * document that scores near the word's best (a short title naming it), so
 * the skip entries' bounds rule nothing out, while the top k of two
 * frequent words needs documents scoring high on both: at 1,000,000
 * products `black cable` decoded 727,000 postings and scored 307,000 for
 * 64 rows.  So a term of many postings gets, the first time a ranked scan
 * needs a posting score above some bound from it, a list of its highest
 * postings: the half whose t' under the segment's reference weights and
 * averages (the skip entries' measure) is highest, in docid order, each
 * with its level: 0 for the top sixteenth, 1 for the top eighth, 2 for
 * the top quarter, 3 for the top half, and per level the largest t' of
 * the postings below it (cut).  When a window needs more from the term
 * than a level's cut can give (scaled by bound_scale, as the skip
 * entries are), score_word reads the list's entries of that level and
 * above instead of the blocks: every posting it leaves out would have
 * been dropped by posting_cb's minimum score, so the rows and scores are
 * the same.  Kept for the backend's life (a segment never changes but for
 * dead flags, checked at scoring as before), named by the relation file,
 * the segment's header block and serial and where the term's postings
 * start: 7 bytes per listed posting, 1.5 MB for `black` at 1,000,000
 * products.  A list holds at most SS_IMPACT_LIST_BYTES (fewer levels
 * for a larger term: at 12,000,000 products the top eighth or sixteenth
 * only), the cache at most SS_IMPACT_ENTRIES lists or SS_IMPACT_BYTES
 * (shop.search_impact_cache; a lower setting drops the lists no running
 * scan uses, least recently used first, until they fit).  A full cache makes room only by dropping lists unused for
 * SS_IMPACT_STALE uses of others (those of an index rebuilt since, of a
 * merged segment, of words no longer asked for); otherwise the term goes
 * without a list: a workload of more frequent terms than the cache holds
 * would otherwise work lists out again and again, each a pass over the
 * term's postings.
 */
#define SS_IMPACT_MIN_DF	8192	/* 64 blocks */
#define SS_IMPACT_LEVELS	4		/* the top 1/16, 1/8, 1/4, 1/2 */
#define SS_IMPACT_ENTRIES	512
/* the cache's cap, shop.search_impact_cache (32 MB by default) */
#define SS_IMPACT_BYTES		((Size) shop_search_impact_cache * 1024)
/* a list's: 4 MB, or the whole cache when that is smaller */
#define SS_IMPACT_LIST_BYTES Min((Size) 4 * 1024 * 1024, SS_IMPACT_BYTES)
#define SS_IMPACT_STALE		100000
#define SS_IMPACT_ENTRY_BYTES (sizeof(uint32) + sizeof(uint16) + 1)

typedef struct ImpactList
{
	RelFileNode node;
	BlockNumber hdrblk;
	uint64		serial;
	BlockNumber postblk;
	uint16		postoff;
	uint32		n;
	uint32	   *docs;
	uint16	   *tfs;
	uint8	   *lvl;			/* the smallest level listing it */
	int			nlev;			/* levels kept: 0 .. nlev - 1 */
	float4		cut[SS_IMPACT_LEVELS];	/* t' of a posting below a level: at most this */
	uint64		used;			/* impact_clock when last used */
} ImpactList;

static MemoryContext impact_cxt = NULL;
static ImpactList *impact_cache[SS_IMPACT_ENTRIES];
static int	impact_n = 0;
static Size impact_bytes = 0;
static uint64 impact_clock = 0;
static uint64 impact_scan_clock = 0;	/* the clock when this scan began */

static Size
impact_entry_bytes(const ImpactList *il)
{
	return sizeof(ImpactList) + SS_IMPACT_ENTRY_BYTES * (Size) il->n;
}

/*
 * Room for an entry of bytes, dropping stale lists (or, while the cache
 * holds more than shop.search_impact_cache since it was lowered, any
 * list this scan does not use, least recently used first); false if there
 * is none.
 */
static bool
impact_make_room(Size bytes)
{
	while (impact_n >= SS_IMPACT_ENTRIES || impact_bytes + bytes > SS_IMPACT_BYTES)
	{
		int			victim = -1;
		bool		over = impact_bytes > SS_IMPACT_BYTES;

		for (int i = 0; i < impact_n; i++)
			if (impact_cache[i]->used < impact_scan_clock &&
				(over || impact_cache[i]->used + SS_IMPACT_STALE < impact_clock) &&
				(victim < 0 || impact_cache[i]->used < impact_cache[victim]->used))
				victim = i;
		if (victim < 0)
			return false;
		impact_bytes -= impact_entry_bytes(impact_cache[victim]);
		pfree(impact_cache[victim]->docs);
		pfree(impact_cache[victim]->tfs);
		pfree(impact_cache[victim]->lvl);
		pfree(impact_cache[victim]);
		impact_cache[victim] = impact_cache[--impact_n];
	}
	return true;
}

/* t' of a posting under the segment's reference weights and averages (sswrite.c) */
static inline double
impact_t(const SsSegHeader *hdr, uint16 tf, const uint16 *len)
{
	int			tfs[SS_NFIELDS] = {SS_TF_TITLE(tf), SS_TF_BRAND(tf), SS_TF_DESC(tf)};
	double		t = 0;

	for (int f = 0; f < SS_NFIELDS; f++)
		if (tfs[f] > 0)
			t += hdr->refw[f] * tfs[f] /
				(1.0 - SS_FIELD_B(f) + SS_FIELD_B(f) * len[f] / hdr->refavg[f]);
	return t;
}

/* se's impact list (worked out now if need be), or NULL */
static ImpactList *
impact_get(Eval *ev, SegState *s, SegExp *se)
{
	BlockNumber hdrblk = ev->meta.segments[s - ev->segs].header;
	ImpactList *il;
	double	   *t;
	uint32	   *alldocs;
	uint16	   *alltfs;
	double		cut[SS_IMPACT_LEVELS];
	uint32		n = 0;
	int			nlev = SS_IMPACT_LEVELS;
	NormCache	nc;
	MemoryContext old;

	if (se->imp_tried)
		return se->imp;
	se->imp_tried = true;
	/* shop.search_impact_cache was lowered: drop lists until it holds */
	if (impact_bytes > SS_IMPACT_BYTES)
		(void) impact_make_room(0);
	if (se->df < SS_IMPACT_MIN_DF || !shop_search_block_max || SS_IMPACT_BYTES == 0)
		return NULL;
	for (int i = 0; i < impact_n; i++)
	{
		il = impact_cache[i];
		if (il->postblk == se->postblk && il->postoff == se->postoff && il->hdrblk == hdrblk &&
			il->serial == s->hdr.serial && RelFileNodeEquals(il->node, ev->index->rd_node))
		{
			il->used = ++impact_clock;
			se->imp = il;
			return il;
		}
	}

	/* the levels a list of at most SS_IMPACT_LIST_BYTES holds, and room for it */
	while (nlev > 0 && SS_IMPACT_ENTRY_BYTES * (Size) (se->df >> (SS_IMPACT_LEVELS - nlev + 1)) >
		   SS_IMPACT_LIST_BYTES)
		nlev--;
	if (nlev == 0)
		return NULL;
	if (impact_cxt == NULL)
		impact_cxt = AllocSetContextCreate(TopMemoryContext, "shop_search impact lists",
										   ALLOCSET_DEFAULT_SIZES);
	if (!impact_make_room(sizeof(ImpactList) +
						  SS_IMPACT_ENTRY_BYTES * (Size) (se->df >> (SS_IMPACT_LEVELS - nlev + 1))))
		return NULL;

	/* one pass over the term's postings and their norms */
	cursor_load(ev, s, se);
	t = palloc_extended(sizeof(double) * se->df, MCXT_ALLOC_HUGE);
	alldocs = palloc_extended(sizeof(uint32) * se->df, MCXT_ALLOC_HUGE);
	alltfs = palloc_extended(sizeof(uint16) * se->df, MCXT_ALLOC_HUGE);
	norm_cache_init(&nc, ev->index, s->hdr.normstart);
	for (uint32 b = 0; b < se->nblocks; b++)
	{
		cursor_decode(ev, se, b);
		for (uint32 j = 0; j < se->ndec; j++, n++)
		{
			alldocs[n] = se->docs[j];
			alltfs[n] = se->tfs[j];
			t[n] = se->docs[j] < s->hdr.ndocs ?
				impact_t(&s->hdr, se->tfs[j], norm_get(&nc, se->docs[j])->len) : 0;
		}
		if (b % 64 == 63)
			CHECK_FOR_INTERRUPTS();
	}
	se->decoded = -1;
	norm_cache_release(&nc);
	Assert(n == se->df);
	{
		/*
		 * The cuts from a sample of at most 65,536 postings: any cut is
		 * right (the unlisted postings are those at most the cut, whatever
		 * it is), the sample only makes the levels' sizes approximate.
		 */
		uint32		stride = Max(n / 65536, 1);
		uint32		m = n / stride;
		double	   *sample = palloc(sizeof(double) * m);

		for (uint32 i = 0; i < m; i++)
			sample[i] = t[i * stride];
		/* from the half down: each selection leaves the larger ones above it */
		for (int l = nlev - 1; l >= 0; l--)
			cut[l] = nth_smallest(sample, m, m - (m >> (SS_IMPACT_LEVELS - l)));
		pfree(sample);
	}
	/* listed: t' above the cut; the others are at most the cut */
	{
		uint32		nhigh = 0;
		uint32	   *docs;
		uint16	   *tfs;
		uint8	   *lvl;
		Size		bytes;
		const double last = cut[nlev - 1];

		for (uint32 i = 0; i < n; i++)
			if (t[i] > last)
				nhigh++;
		docs = palloc_extended(sizeof(uint32) * Max(nhigh, 1), MCXT_ALLOC_HUGE);
		tfs = palloc_extended(sizeof(uint16) * Max(nhigh, 1), MCXT_ALLOC_HUGE);
		lvl = palloc_extended(Max(nhigh, 1), MCXT_ALLOC_HUGE);
		nhigh = 0;
		for (uint32 i = 0; i < n; i++)
			if (t[i] > last)
			{
				int			l = 0;

				while (!(t[i] > cut[l]))
					l++;
				docs[nhigh] = alldocs[i];
				tfs[nhigh] = alltfs[i];
				lvl[nhigh] = (uint8) l;
				nhigh++;
			}
		pfree(t);
		pfree(alldocs);
		pfree(alltfs);
		bytes = sizeof(ImpactList) + SS_IMPACT_ENTRY_BYTES * (Size) nhigh;
		if (!impact_make_room(bytes))
		{
			pfree(docs);
			pfree(tfs);
			pfree(lvl);
			return NULL;
		}
		old = MemoryContextSwitchTo(impact_cxt);
		il = palloc0(sizeof(ImpactList));
		il->docs = palloc_extended(sizeof(uint32) * Max(nhigh, 1), MCXT_ALLOC_HUGE);
		il->tfs = palloc_extended(sizeof(uint16) * Max(nhigh, 1), MCXT_ALLOC_HUGE);
		il->lvl = palloc_extended(Max(nhigh, 1), MCXT_ALLOC_HUGE);
		MemoryContextSwitchTo(old);
		memcpy(il->docs, docs, sizeof(uint32) * nhigh);
		memcpy(il->tfs, tfs, sizeof(uint16) * nhigh);
		memcpy(il->lvl, lvl, nhigh);
		pfree(docs);
		pfree(tfs);
		pfree(lvl);
		il->n = nhigh;
		il->node = ev->index->rd_node;
		il->hdrblk = hdrblk;
		il->serial = s->hdr.serial;
		il->postblk = se->postblk;
		il->postoff = se->postoff;
		/* rounded up, so a float below it is no smaller than the exact cut */
		il->nlev = nlev;
		for (int l = 0; l < nlev; l++)
			il->cut[l] = nextafterf((float4) cut[l], get_float4_infinity());
		il->used = ++impact_clock;
		impact_cache[impact_n++] = il;
		impact_bytes += bytes;
	}
	elog(DEBUG1, "shop_search: impact list of a term of %u postings: %u listed in %d levels, the last t' above %.3f",
		 se->df, il->n, nlev, cut[nlev - 1]);
	se->imp = il;
	return il;
}

/* the first of docs[l .. n - 1] at or after docid lo (n if none): galloping from l */
static inline uint32
impact_gallop(const uint32 *docs, uint32 l, uint32 n, uint32 lo)
{
	uint32		step = 1,
				r;

	while (l + step < n && docs[l + step] < lo)
	{
		l += step;
		step *= 2;
	}
	r = Min(l + step, n);
	while (l < r)
	{
		uint32		m = (l + r) / 2;

		if (docs[m] < lo)
			l = m + 1;
		else
			r = m;
	}
	return l;
}

/*
 * The first entry of se's impact list at or after docid lo.  Windows come
 * in increasing order (but for a new pass, which starts over), so it
 * gallops on from the last answer.
 */
static inline uint32
impact_seek(SegExp *se, uint32 lo)
{
	const ImpactList *il = se->imp;
	uint32		l = se->ipos;

	if (l > il->n || (l > 0 && il->docs[l - 1] >= lo))
		l = 0;					/* back: a new pass */
	se->ipos = impact_gallop(il->docs, l, il->n, lo);
	return se->ipos;
}

/*
 * The first level of se's impact list below which no posting can reach
 * score minb (with idf and factor); -1 if none (or no list).
 */
static inline int
impact_level(const SegState *s, const SegExp *se, float4 minb, double idf, float4 factor)
{
	if (se->imp == NULL || minb <= 0 || !isfinite(s->scale))
		return -1;
	for (int l = 0; l < se->imp->nlev; l++)
	{
		/* a thousandth of room against the float rounding of scores */
		if (score_bound(se->imp->cut[l] * s->scale, idf, factor) * 1.001f < minb)
			return l;
	}
	return -1;
}

/* posting_cb on every posting of se in [lo, hi) listed at level lev or above */
static void
impact_scan(Eval *ev, SegState *s, SegExp *se, int lev, uint32 lo, uint32 hi, PostCtx *pc)
{
	const ImpactList *il = se->imp;
	bool		prefetch = !pc->filtered && !ev->collect && !ev->tbm;
	const PostCtx lpc = *pc;	/* see cursor_scan */
	const uint32 *docs = il->docs;
	uint32		n = il->n;
	bool		use_cb = s->use_candbits;
	const uint64 *cb = s->candbits;

	for (uint32 i = impact_seek(se, lo); i < n && docs[i] < hi; i++)
	{
		uint32		d = docs[i];

		if (prefetch && i + 8 < n)
		{
			/* a listed posting's norms are seldom in the CPU cache yet */
			const SsNorm *next = norm_peek(lpc.nc, docs[i + 8]);

			if (next)
				__builtin_prefetch(next);
		}
		if (il->lvl[i] > lev)
			continue;

		/* AND mode, a later word: not a candidate */
		if (use_cb && !(cb[(d - lo) >> 6] & (UINT64CONST(1) << ((d - lo) & 63))))
			continue;
		posting_cb(&lpc, d, il->tfs[i]);
	}
}

/*
 * Word cursors.  A word may have thousands of expansions (every completion
 * of a short prefix), most of them rare terms with a few postings; the
 * per-window work must not touch each of them in every window.  So per
 * query word a min-heap holds its expansions keyed by a lower bound of
 * their next posting at or after the window start (exp_next: the first
 * docid of the block holding it, or, for a sparse block spanning several
 * windows, the exact posting from the decoded block), and each window
 * works only on the expansions whose key falls inside it (the active
 * list).  Windows are visited in increasing order; after a window its
 * active expansions go back into the heap keyed from its end.
 */
typedef struct ExpRef
{
	int			exp;			/* index in SegState.exps */
	int			match;			/* index in its Exp's matches */
	uint32		key;			/* lower bound of its next posting */
} ExpRef;

typedef struct WordCursors
{
	int			nheap;
	ExpRef	   *heap;
	int			nact;
	ExpRef	   *act;
	uint32		hi;				/* end of the window act belongs to */
} WordCursors;

/* a lower bound of the first posting of se at or after lo (UINT32_MAX: none) */
static uint32
exp_next(Eval *ev, SegState *s, SegExp *se, uint32 lo)
{
	uint32		first;

	cursor_load(ev, s, se);
	cursor_seek(se, lo);
	if (se->b >= se->nblocks)
		return UINT32_MAX;
	first = Max(block_first(se, se->b), lo);
	if (se->skips[se->b].lastdoc - first > 2 * SS_WINDOW)
	{
		/* a sparse block: its next posting itself */
		uint32		l = 0,
					r;

		if (se->decoded != (int32) se->b)
			cursor_decode(ev, se, se->b);
		r = se->ndec;
		while (l < r)
		{
			uint32		m = (l + r) / 2;

			if (se->docs[m] < lo)
				l = m + 1;
			else
				r = m;
		}
		if (l < se->ndec)
			first = se->docs[l];
	}
	return first;
}

static void
heap_push(WordCursors *wc, ExpRef r)
{
	int			i = wc->nheap++;

	while (i > 0 && wc->heap[(i - 1) / 2].key > r.key)
	{
		wc->heap[i] = wc->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	wc->heap[i] = r;
}

static ExpRef
heap_pop(WordCursors *wc)
{
	ExpRef		top = wc->heap[0];
	ExpRef		last = wc->heap[--wc->nheap];
	int			i = 0;

	for (;;)
	{
		int			c = 2 * i + 1;

		if (c >= wc->nheap)
			break;
		if (c + 1 < wc->nheap && wc->heap[c + 1].key < wc->heap[c].key)
			c++;
		if (wc->heap[c].key >= last.key)
			break;
		wc->heap[i] = wc->heap[c];
		i = c;
	}
	if (wc->nheap > 0)
		wc->heap[i] = last;
	return top;
}

/* every word's cursors, for eval_segment; keys start at 0 (refreshed at once) */
static void
word_cursors_init(Eval *ev, SegState *s)
{
	int			nw = ev->q->nwords;
	int		   *count = palloc0(sizeof(int) * Max(nw, 1));

	s->wc = palloc0(sizeof(WordCursors) * Max(nw, 1));
	for (int i = 0; i < s->nexp; i++)
		for (int k = 0; k < s->exps[i].e->nm; k++)
			count[s->exps[i].e->m[k].qword]++;
	for (int w = 0; w < nw; w++)
	{
		s->wc[w].heap = palloc(sizeof(ExpRef) * Max(count[w], 1));
		s->wc[w].act = palloc(sizeof(ExpRef) * Max(count[w], 1));
	}
	for (int i = 0; i < s->nexp; i++)
		for (int k = 0; k < s->exps[i].e->nm; k++)
		{
			ExpRef		r = {i, k, 0};

			heap_push(&s->wc[s->exps[i].e->m[k].qword], r);
		}
	pfree(count);
}

/*
 * Make each word's active list that of window [lo, hi): the previous
 * window's expansions go back into the heap, and those whose next posting
 * may fall inside [lo, hi) come out.
 */
static void
word_cursors_window(Eval *ev, SegState *s, uint32 lo, uint32 hi)
{
	for (int w = 0; w < ev->q->nwords; w++)
	{
		WordCursors *wc = &s->wc[w];

		for (int a = 0; a < wc->nact; a++)
		{
			wc->act[a].key = exp_next(ev, s, &s->exps[wc->act[a].exp], lo);
			if (wc->act[a].key != UINT32_MAX)
				heap_push(wc, wc->act[a]);
		}
		wc->nact = 0;
		/* keys from before lo: windows skipped since; look again from lo */
		while (wc->nheap > 0 && wc->heap[0].key < lo)
		{
			ExpRef		r = heap_pop(wc);

			r.key = exp_next(ev, s, &s->exps[r.exp], lo);
			if (r.key != UINT32_MAX)
				heap_push(wc, r);
		}
		while (wc->nheap > 0 && wc->heap[0].key < hi)
			wc->act[wc->nact++] = heap_pop(wc);
		wc->hi = hi;
	}
}

typedef struct WordBound
{
	Eval	   *ev;
	SegState   *s;
	int			qi;
	uint32		lo,
				hi;
	bool		any;
	float4		ub;
	int			mintypos;
	float4		minb;			/* window_cost: blocks below are not read */
	double		cost;
} WordBound;

/*
 * What each word can bring to the documents of each window, computed once
 * per segment from the skip entries of its expansions: whether any of its
 * posting blocks overlaps the window (a sparse block, a rare term's,
 * spanning many windows, counts only where it really has a posting: it is
 * decoded), the largest score bound of those blocks and the fewest typos.
 * One pass over the blocks instead of one over the expansions per window:
 * a short prefix has thousands of completions.
 */
typedef struct WinBound
{
	float4		ub;
	int			mintypos;
	bool		any;
} WinBound;

static inline void
win_mark(SegState *s, int qi, uint32 win, float4 ub, int typos)
{
	WinBound   *w = &s->wb[(uint32) qi * s->nwin + win];

	w->any = true;
	w->ub = Max(w->ub, ub);
	w->mintypos = Min(w->mintypos, typos);
}

static void
window_bounds(Eval *ev, SegState *s)
{
	uint32		nw = (uint32) Max(ev->q->nwords, 1);

	s->nwin = (s->hdr.ndocs + SS_WINDOW - 1) / SS_WINDOW;
	s->wb = palloc_extended(sizeof(WinBound) * nw * Max(s->nwin, 1), MCXT_ALLOC_HUGE);
	for (uint32 i = 0; i < nw * Max(s->nwin, 1); i++)
	{
		s->wb[i].ub = 0;
		s->wb[i].mintypos = INT_MAX;
		s->wb[i].any = false;
	}
	for (int i = 0; i < s->nexp; i++)
	{
		SegExp	   *se = &s->exps[i];

		cursor_load(ev, s, se);
		for (uint32 b = 0; b < se->nblocks; b++)
		{
			uint32		first = block_first(se, b);
			uint32		last = se->skips[b].lastdoc;
			bool		sparse = last - first > 2 * SS_WINDOW;

			if (sparse && se->decoded != (int32) b)
				cursor_decode(ev, se, b);
			for (int k = 0; k < se->e->nm; k++)
			{
				const SsTermMatch *m = &se->e->m[k];
				float4		ub = score_bound(se->skips[b].maxt * s->scale, ev->widf[m->qword], m->factor);

				if (sparse)
				{
					for (uint32 j = 0; j < se->ndec; j++)
						if (se->docs[j] < s->hdr.ndocs)
							win_mark(s, m->qword, se->docs[j] / SS_WINDOW, ub, m->typos);
				}
				else
					for (uint32 w = first / SS_WINDOW; w <= Min(last, s->hdr.ndocs - 1) / SS_WINDOW; w++)
						win_mark(s, m->qword, w, ub, m->typos);
			}
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * What word qi can bring to a document in [lo, hi): false when none of its
 * expansions has a posting block overlapping the window, else the
 * largest score and the fewest typos of those blocks.
 */
static bool
word_bound(Eval *ev, SegState *s, int qi, uint32 lo, uint32 hi, float4 *ub, int *mintypos)
{
	const WinBound *w = &s->wb[(uint32) qi * s->nwin + lo / SS_WINDOW];

	*ub = w->ub;
	*mintypos = w->mintypos;
	return w->any;
}

static void
window_cost_visit(void *arg, SegExp *se, const SsTermMatch *m, uint32 b)
{
	WordBound  *wb = (WordBound *) arg;
	uint32		first = block_first(se, b);
	double		span = (double) se->skips[b].lastdoc - first + 1;
	double		inwin = Min(se->skips[b].lastdoc + 1, wb->hi) - (double) Max(first, wb->lo);

	if (score_bound(se->skips[b].maxt * wb->s->scale, wb->ev->widf[wb->qi], m->factor) < wb->minb)
		return;
	/* the block's postings, in proportion to its overlap */
	wb->cost += Min(SS_BLOCK_POSTINGS, se->df - b * SS_BLOCK_POSTINGS) * Max(inwin, 0) / span;
}

/*
 * Postings of word qi (one word per slot) in blocks of [lo, hi) that block
 * pruning would read: the work of making it the window's first word.
 */
static double
window_cost(Eval *ev, SegState *s, int qi, uint32 lo, uint32 hi)
{
	WordBound	wb = {ev, s, qi, lo, hi, false, 0, INT_MAX, 0, 0};

	WordCursors *wc = &s->wc[qi];

	wb.minb = s->need_score - (s->win_ub - s->slot_ub[ev->q->words[qi].slot]);
	for (int a = 0; a < wc->nact; a++)
	{
		SegExp	   *se = &s->exps[wc->act[a].exp];
		const SsTermMatch *m = &se->e->m[wc->act[a].match];
		int			lev;

		if (wb.minb > 0)
			impact_get(ev, s, se);
		lev = impact_level(s, se, wb.minb, ev->widf[qi], m->factor);
		if (lev >= 0)
		{
			/* score_word reads its impact list: level lev holds 2^lev / 8 of it */
			uint32		first = impact_seek(se, lo);
			uint32		end = impact_gallop(se->imp->docs, first, se->imp->n, hi);

			wb.cost += (double) (end - first) * (1 << lev) / (1 << (se->imp->nlev - 1));
			continue;
		}
		cursor_load(ev, s, se);
		cursor_seek(se, lo);
		for (uint32 b = se->b; b < se->nblocks && block_first(se, b) < hi; b++)
			window_cost_visit(&wb, se, m, b);
	}
	return wb.cost;
}

/*
 * The windows' first logpop per segment, kept for the backend's life
 * (issue 12, thr4): window_possible read it from the window's first doc
 * page once per window and scan, a buffer table lookup for every window
 * of every segment a ranked query entered (about 490 at 1,000,000
 * products), for a value that never changes: a segment's documents are
 * written once (only their dead flags change), as for the impact lists.
 * Named as those are, by the relation file, the segment's header block
 * and serial (and its docstart and size); at most SS_WINPOP_ENTRIES
 * segments, the least recently used one reused for another.  A scan
 * remembers its entry's id and uses the entry only while the id is the
 * same, so an entry reused for another segment during a scan (another
 * scan of the same backend in between) is not read by the first one,
 * which then reads its pages as before.
 */
#define SS_WINPOP_ENTRIES	64

typedef struct WinPopEntry
{
	uint64		id;				/* 0: free */
	uint64		used;
	RelFileNode node;
	BlockNumber hdrblk;
	uint64		serial;
	BlockNumber docstart;
	uint32		ndocs;
	uint32		nwin;
	float4	   *pop;
	bool	   *known;
} WinPopEntry;

static WinPopEntry winpop_cache[SS_WINPOP_ENTRIES];
static uint64 winpop_ids = 0;
static MemoryContext winpop_cxt = NULL;

static WinPopEntry *
winpop_entry(Eval *ev, SegState *s)
{
	BlockNumber hdrblk = ev->meta.segments[s - ev->segs].header;
	WinPopEntry *victim = NULL;
	WinPopEntry *e;

	for (int i = 0; i < SS_WINPOP_ENTRIES; i++)
	{
		e = &winpop_cache[i];
		if (e->id != 0 && e->hdrblk == hdrblk && e->serial == s->hdr.serial &&
			e->docstart == s->hdr.docstart && e->ndocs == s->hdr.ndocs && e->nwin == s->nwin &&
			RelFileNodeEquals(e->node, ev->index->rd_node))
		{
			e->used = ++winpop_ids;
			return e;
		}
		if (victim == NULL || e->id == 0 || (victim->id != 0 && e->used < victim->used))
			victim = e;
	}
	if (winpop_cxt == NULL)
		winpop_cxt = AllocSetContextCreate(TopMemoryContext, "shop_search window popularity",
										   ALLOCSET_SMALL_SIZES);
	e = victim;
	e->id = 0;					/* invalid until filled in */
	if (e->pop)
		pfree(e->pop);
	if (e->known)
		pfree(e->known);
	e->pop = NULL;
	e->known = NULL;
	e->pop = MemoryContextAlloc(winpop_cxt, sizeof(float4) * Max(s->nwin, 1));
	e->known = MemoryContextAllocZero(winpop_cxt, sizeof(bool) * Max(s->nwin, 1));
	e->node = ev->index->rd_node;
	e->hdrblk = hdrblk;
	e->serial = s->hdr.serial;
	e->docstart = s->hdr.docstart;
	e->ndocs = s->hdr.ndocs;
	e->nwin = s->nwin;
	e->used = ++winpop_ids;
	e->id = ++winpop_ids;
	return e;
}

/*
 * Can any document of [lo, hi) enter the result?  Combines the block
 * bounds the way scoring combines scores (a slot takes its best
 * alternative, an alternative sums its words) and the largest boost a
 * document of the window can get.  *boostub is set for the candidate test.
 */
static bool
window_possible(Eval *ev, SegState *s, DocCache *dc, uint32 lo, uint32 hi, float4 *boostub)
{
	SsQuery    *q = ev->q;
	float4		ub = 0;
	int			typos = 0;
	int			missing = 0;
	uint32		w = lo / SS_WINDOW;
	float4		logpop;

	if (!ev->want_all && s->allowed && s->wincnt[w] == 0)
		return false;			/* no document of the window passes the filter */
	/* the popularity of the window's first document, read once per segment */
	if (s->winpop == NULL)
	{
		s->winpop = palloc(sizeof(float4) * Max(s->nwin, 1));
		s->winpop_known = palloc0(sizeof(bool) * Max(s->nwin, 1));
		s->wpc = winpop_entry(ev, s);
		s->wpc_id = s->wpc->id;
	}
	if (!s->winpop_known[w])
	{
		WinPopEntry *e = s->wpc;

		if (e && e->id == s->wpc_id && e->known[w])
			s->winpop[w] = e->pop[w];
		else
		{
			s->winpop[w] = doc_get(dc, lo)->logpop;
			if (e && e->id == s->wpc_id)
			{
				e->pop[w] = s->winpop[w];
				e->known[w] = true;
			}
		}
		s->winpop_known[w] = true;
	}
	logpop = s->winpop[w];
	/* most popular first: no document of the window has a larger boost */
	*boostub = (ev->unmarked ?
				SsBoostBoundUnmarked(q, logpop, ev->inv_log_maxpop) * ev->class_factor :
				SsBoostBound(q, logpop, ev->inv_log_maxpop)) * 1.0001f;
	if (!shop_search_block_max)
		*boostub = SsMaxBoost(q);
	s->need_score = -1;
	s->win_ub = 0;
	if (ev->want_all)
		return true;
	if (s->allowed && s->wincnt[lo / SS_WINDOW] == 0)
		return false;			/* no document of the window passes the filter */
	for (int si = 0; si < q->nslots; si++)
	{
		SsQSlot    *sl = &q->slots[si];
		bool		slot_ok = false;
		float4		slot_ub = 0;
		int			slot_typos = INT_MAX;

		for (int a = 0; a < sl->nalts; a++)
		{
			SsQAlt	   *al = &sl->alts[a];
			bool		alt_ok = true;
			float4		alt_ub = 0;
			int			alt_typos = 0;

			for (int k = 0; k < al->nwords && alt_ok; k++)
			{
				float4		wub;
				int			wt;

				alt_ok = word_bound(ev, s, al->first + k, lo, hi, &wub, &wt);
				alt_ub += wub;
				alt_typos += alt_ok ? wt : 0;
			}
			if (!alt_ok)
				continue;
			slot_ok = true;
			slot_ub = Max(slot_ub, alt_ub);
			slot_typos = Min(slot_typos, alt_typos);
		}
		s->slot_ub[si] = slot_ok ? slot_ub : 0;
		if (!slot_ok)
		{
			if (!q->match_any)
				return false;
			missing++;
			continue;
		}
		ub += slot_ub;
		typos += slot_typos;
	}
	if (missing == q->nslots)
		return false;
	if (missing > 0 && ev->pass == SS_PASS_FULL)
		return false;			/* no document of the window has every word */
	s->win_ub = ub;
	if (ev->topk == 0 || ev->nres < ev->topk || !shop_search_block_max)
		return true;
	if (missing == 0 && typos < 9 && !ev->want_all)
	{
		/* the text score a document needs: dist = typos * tier - score */
		double		need = (typos * SS_TYPO_TIER - ev->res[0].dist) / *boostub;

		if (need < SS_MAX_SCORE / SS_BOOST_MAX)
			s->need_score = (float4) (need * 0.9999);
	}
	return (float4) (missing * SS_MISSING_TIER + Min(typos, 9) * SS_TYPO_TIER -
					 Min(ub * *boostub, SS_MAX_SCORE)) <= ev->res[0].dist;
}

/*
 * The documents of [lo, hi) that word qi can bring minb or more, as bits
 * of s->candbits: those of the entries of each expansion's impact list
 * down to the level minb needs, and, for an expansion without a usable
 * list, the postings of its blocks whose bound reaches minb.  AND mode
 * with a slot per word: the first word need only score these documents,
 * since a document the later word cannot give minb (the top k's need
 * with the other words at their window bounds) cannot enter the top k,
 * and reading a list is cheaper than scoring (each score reads the
 * document's norms).
 */
static void
member_bits(Eval *ev, SegState *s, int qi, uint32 lo, uint32 hi, float4 minb)
{
	WordCursors *wc = &s->wc[qi];

	memset(s->candbits, 0, sizeof(s->candbits));
	for (int a = 0; a < wc->nact; a++)
	{
		SegExp	   *se = &s->exps[wc->act[a].exp];
		const SsTermMatch *m = &se->e->m[wc->act[a].match];
		double		idf = ev->widf[qi];
		int			lev;

		if (minb <= 0)
		{
			/* no bound: every document holding the word */
			cursor_load(ev, s, se);
			cursor_seek(se, lo);
			for (uint32 b = se->b; b < se->nblocks && block_first(se, b) < hi; b++)
			{
				if (se->decoded != (int32) b)
					cursor_decode(ev, se, b);
				for (uint32 j = 0; j < se->ndec; j++)
				{
					uint32		d = se->docs[j];

					if (d >= lo && d < hi)
						s->candbits[(d - lo) >> 6] |= UINT64CONST(1) << ((d - lo) & 63);
				}
			}
			continue;
		}
		if (minb >= m->factor * idf * (SS_BM25_K1 + 1))
			continue;			/* no posting of this expansion reaches minb */
		impact_get(ev, s, se);
		lev = impact_level(s, se, minb, idf, m->factor);
		if (lev >= 0)
		{
			const ImpactList *il = se->imp;

			for (uint32 i = impact_seek(se, lo); i < il->n && il->docs[i] < hi; i++)
				if (il->lvl[i] <= lev)
					s->candbits[(il->docs[i] - lo) >> 6] |= UINT64CONST(1) << ((il->docs[i] - lo) & 63);
			continue;
		}
		cursor_load(ev, s, se);
		cursor_seek(se, lo);
		for (uint32 b = se->b; b < se->nblocks && block_first(se, b) < hi; b++)
		{
			if (score_bound(se->skips[b].maxt * s->scale, idf, m->factor) < minb)
				continue;
			if (se->decoded != (int32) b)
				cursor_decode(ev, se, b);
			for (uint32 j = 0; j < se->ndec; j++)
			{
				uint32		d = se->docs[j];

				if (d >= lo && d < hi)
					s->candbits[(d - lo) >> 6] |= UINT64CONST(1) << ((d - lo) & 63);
			}
		}
	}
}

/* Offer every posting in [lo, hi) of every expansion of word qi into target. */
static void
score_word(Eval *ev, SegState *s, DocCache *dc, int qi, Acc *target, uint32 lo, uint32 hi,
		   const Acc *need, int needcnt, bool prune)
{
	float4		minb = 0;

	/*
	 * Block pruning (AND mode, one word per slot): a block of this word
	 * is worth reading only if its bound, with the other slots at their
	 * window bounds, can beat the top k.
	 */
	if (prune && s->simple && s->need_score > 0)
		minb = s->need_score - (s->win_ub - s->slot_ub[ev->q->words[qi].slot]);
	for (int a = 0; a < s->wc[qi].nact; a++)
	{
		SegExp	   *se = &s->exps[s->wc[qi].act[a].exp];

		{
			int			k = s->wc[qi].act[a].match;
			PostCtx		pc;
			int			lev;

			pc.ev = ev;
			pc.dc = dc;
			pc.nc = s->nc;
			pc.target = target;
			pc.idf = ev->widf[qi];
			pc.factor = se->e->m[k].factor;
			pc.typos = se->e->m[k].typos;
			pc.ndocs = s->hdr.ndocs;
			pc.c = pc.factor * pc.idf * (SS_BM25_K1 + 1);
			pc.filtered = ev->filtered;
			pc.matchonly = !ev->filtered && (ev->collect || ev->tbm);
			pc.need = need;
			pc.needcnt = (uint8) needcnt;
			pc.minscore = minb;
			pc.tmin = 0;
			if (minb > 0)
			{
				/* score >= minb exactly when t >= minb k1 / (C - minb) */
				double		c = pc.factor * pc.idf * (SS_BM25_K1 + 1);

				if (minb >= c)
					continue;	/* no posting of this expansion can reach it */
				pc.tmin = minb * SS_BM25_K1 / (c - minb) * 0.99999;
			}
			pc.allowed = s->allowed;
			if (minb > 0)
				impact_get(ev, s, se);
			lev = impact_level(s, se, minb, pc.idf, pc.factor);
			if (lev >= 0)
				impact_scan(ev, s, se, lev, lo, hi, &pc);	/* the rest scores below minb */
			else
			{
				cursor_load(ev, s, se);
				cursor_scan(ev, s, se, lo, hi, minb, pc.idf, pc.factor, &pc);
			}
		}
	}
}

/*
 * "match": "any" with the top k full, some of its rows missing a word:
 * can a document of [lo, hi) missing a word still enter it?  Such a
 * document scores at most the window's bound without its smallest slot
 * bound, and its distance is at least a missing word's tier less that
 * times the window's largest boost (as result_possible reckons it, with
 * room for the float rounding of the bounds).  When that cannot beat the
 * worst row held (ties included), only documents having every word can
 * enter from this window, and it is evaluated in AND mode: the rows are
 * those of the OR evaluation, whose extra candidates would all have been
 * turned away (issue 12, bw1: `canon cable`, whose rows having both words
 * are few, scored every posting of both words until k of them were
 * found, though one word alone could no longer beat the rows held).
 */
/*
 * Is the top k full of rows having every word (whose distance no row
 * missing one can reach)?
 */
static inline bool
full_rows_fill(const Eval *ev)
{
	return ev->topk > 0 && ev->nres >= ev->topk &&
		ev->res[0].dist < SS_MISSING_TIER - SS_MAX_SCORE;
}

static bool
partial_rows_out(const Eval *ev, const SegState *s, float4 boostub)
{
	const SsQuery *q = ev->q;
	float4		minslot;
	double		pub;

	if (!q->match_any || q->nslots < 2 || ev->topk == 0 || ev->nres < ev->topk ||
		ev->want_all || ev->collect || ev->tbm || s->ids || !shop_search_block_max ||
		s->win_ub <= 0)
		return false;
	minslot = s->slot_ub[0];
	for (int si = 1; si < q->nslots; si++)
		minslot = Min(minslot, s->slot_ub[si]);
	pub = ((double) s->win_ub - minslot) * 1.001;
	return (float4) (SS_MISSING_TIER - Min(pub * boostub, SS_MAX_SCORE)) > ev->res[0].dist;
}

typedef struct SegAccs
{
	Acc			total,
				slot,
				alt,
				word;
	bool		multi;
	int		   *order;			/* slots, rarest first */
	int		   *window_order;	/* this window's order (eval_window) */
	/* the window's documents matching every slot of ev->compound_slots */
	uint64		comphit[SS_WINDOW / 64];
	uint64		compslot[SS_WINDOW / 64];
	/* ... matching the type word's slot (q->type_slot) */
	uint64		typehit[SS_WINDOW / 64];
} SegAccs;

static void
eval_window(Eval *ev, SegState *s, DocCache *dc, SegAccs *sa, uint32 lo, uint32 hi, float4 boostub)
{
	SsQuery    *q = ev->q;
	uint32	   *cand = NULL;
	uint32		ncand = 0;
	uint32		ids[SS_IDS_BATCH];	/* docids for visit_id (s->ids) */
	uint32		nids = 0;

	/*
	 * AND mode: a document needs every slot, so slots after the first
	 * (rarest) only score documents every earlier slot matched.  That is
	 * the rule without "match": "any", and also with it once the top k
	 * is full of documents that miss no word.
	 */
	bool		and_mode = ev->pass == SS_PASS_FULL || !q->match_any ||
		full_rows_fill(ev) || partial_rows_out(ev, s, boostub);
	/* ranked, with pruning: the first word scores only documents of the second */
	bool		member_all = and_mode && s->simple && q->nslots > 1 && shop_search_block_max &&
		ev->topk > 0 && !ev->want_all && !ev->collect && !ev->tbm && !s->ids;

	int		   *order = sa->order;

	/*
	 * Which compound-type slots a document misses, in a bitmap of the
	 * window: only rows missing a slot care, and in AND mode none of those
	 * can enter the result
	 */
	bool		track_compound = ev->compound_slots != 0 && !and_mode;
	bool		compound_first = true;
	/* ... and whether it misses the type word, likewise */
	bool		track_type = q->type_slot >= 0 && q->ntypes > 0 && !and_mode;

	Assert(hi - lo <= SS_WINDOW);	/* the bitmaps cover one window */
	if (track_type)
		memset(sa->typehit, 0, sizeof(sa->typehit));

	/*
	 * With pruning on, the first word is the one with the fewest postings
	 * in blocks that can still reach the top k here (the others then only
	 * look at its survivors): the window's own cost, not the list lengths.
	 */
	if (and_mode && s->simple && s->need_score > 0 && q->nslots > 1)
	{
		double		best = -1;
		int			first = 0;

		for (int si = 0; si < q->nslots; si++)
		{
			double		cost = window_cost(ev, s, q->slots[si].alts[0].first, lo, hi);

			if (best < 0 || cost < best)
			{
				best = cost;
				first = si;
			}
		}
		order = sa->window_order;
		order[0] = first;
		for (int k = 0, j = 1; k < q->nslots; k++)
			if (sa->order[k] != first)
				order[j++] = sa->order[k];
	}

	for (int oi = 0; oi < q->nslots && (oi == 0 || ncand > 0 || !and_mode); oi++)
	{
		SsQSlot    *sl = &q->slots[order[oi]];
		const Acc  *need = (and_mode && oi > 0) ? &sa->total : NULL;

		/* the documents still in the running, as bits: blocks without one are not read */
		s->use_candbits = need != NULL;
		if (oi == 0 && and_mode && s->simple && s->need_score > 0 && q->nslots > 1 &&
			shop_search_block_max)
		{
			/* the first word scores only what the second can bring enough to */
			int			next = order[1];
			float4		minb = s->need_score - (s->win_ub - s->slot_ub[next]);

			if (minb > 0)
			{
				member_bits(ev, s, q->slots[next].alts[0].first, lo, hi, minb);
				s->use_candbits = true;
			}
		}
		if (oi == 0 && !s->use_candbits && member_all)
		{
			/*
			 * No bound to ask of the second word (the top k not full of
			 * rows having every word, or the window's bounds leave it
			 * nothing to bring): the first word still scores only the
			 * documents holding the second.  The others miss a word, and
			 * AND mode drops them at the end; scoring them read their
			 * norms for nothing (issue 12, bw1).
			 */
			member_bits(ev, s, q->slots[order[1]].alts[0].first, lo, hi, 0);
			s->use_candbits = true;
		}
		if (need)
		{
			memset(s->candbits, 0, sizeof(s->candbits));
			for (uint32 t = 0; t < sa->total.ntouched; t++)
			{
				uint32		d = sa->total.touched[t];

				if (sa->total.cnt[d] == oi)
					s->candbits[(d - lo) >> 6] |= UINT64CONST(1) << ((d - lo) & 63);
			}
		}

		for (int a = 0; a < sl->nalts; a++)
		{
			SsQAlt	   *al = &sl->alts[a];

			if (al->nwords == 1)
			{
				score_word(ev, s, dc, al->first, &sa->slot, lo, hi, need, oi, and_mode);
				continue;
			}
			for (int k = 0; k < al->nwords; k++)
			{
				score_word(ev, s, dc, al->first + k, &sa->word, lo, hi, need, oi, false);
				for (uint32 t = 0; t < sa->word.ntouched; t++)
				{
					uint32		d = sa->word.touched[t];

					acc_add(&sa->alt, d, sa->word.score[d], sa->word.typ1[d] - 1);
				}
				acc_reset(&sa->word);
			}
			for (uint32 t = 0; t < sa->alt.ntouched; t++)
			{
				uint32		d = sa->alt.touched[t];

				if (sa->alt.cnt[d] == al->nwords)
					acc_offer(&sa->slot, d, sa->alt.score[d], sa->alt.typ1[d] - 1);
			}
			acc_reset(&sa->alt);
		}
		/* fold the slot into the totals */
		for (uint32 t = 0; t < sa->slot.ntouched; t++)
		{
			uint32		d = sa->slot.touched[t];

			if (oi == 0 || !and_mode || (sa->total.typ1[d] != 0 && sa->total.cnt[d] == oi))
				acc_add(&sa->total, d, sa->slot.score[d], sa->slot.typ1[d] - 1);
		}
		if (track_compound && (ev->compound_slots & (((uint32) 1) << order[oi])))
		{
			uint64	   *bits = compound_first ? sa->comphit : sa->compslot;

			memset(bits, 0, sizeof(sa->comphit));
			for (uint32 t = 0; t < sa->slot.ntouched; t++)
			{
				uint32		d = sa->slot.touched[t] - lo;

				bits[d >> 6] |= UINT64CONST(1) << (d & 63);
			}
			if (!compound_first)
				for (int w = 0; w < SS_WINDOW / 64; w++)
					sa->comphit[w] &= sa->compslot[w];
			compound_first = false;
		}
		if (track_type && order[oi] == q->type_slot)
		{
			memset(sa->typehit, 0, sizeof(sa->typehit));
			for (uint32 t = 0; t < sa->slot.ntouched; t++)
			{
				uint32		d = sa->slot.touched[t] - lo;

				sa->typehit[d >> 6] |= UINT64CONST(1) << (d & 63);
			}
		}
		acc_reset(&sa->slot);
		if (oi == 0)
		{
			cand = sa->total.touched;
			ncand = sa->total.ntouched;
		}
	}

	s->use_candbits = false;
	if (q->match_any)
	{
		cand = sa->total.touched;
		ncand = sa->total.ntouched;
	}

	/*
	 * Collecting (facets, sorted scans): the candidates in docid order.
	 * They come in the order their first posting was seen, one expansion
	 * term after another, so a word of many terms would read each document
	 * page of the window again for every term (a buffer lookup per match
	 * at worst); in docid order each page is read once.  The same set, so
	 * the accumulator's reset is unchanged.
	 */
	if (ev->collect && ncand > 1 && hi - lo <= SS_WINDOW)
	{
		uint64		bits[SS_WINDOW / 64];
		bool		inside = true;

		memset(bits, 0, sizeof(bits));
		for (uint32 t = 0; t < ncand && inside; t++)
		{
			uint32		d = cand[t];

			if (d < lo || d >= hi)
				inside = false;
			else
				bits[(d - lo) >> 6] |= UINT64CONST(1) << ((d - lo) & 63);
		}
		if (inside)
		{
			uint32		k = 0;

			for (uint32 w = 0; w < SS_WINDOW / 64; w++)
				for (uint64 b = bits[w]; b != 0; b &= b - 1)
					cand[k++] = lo + w * 64 + pg_rightmost_one_pos64(b);
			Assert(k == ncand);
		}
	}

	/* documents matching every slot (any: one): filters, boost, distance */
	for (uint32 t = 0; t < ncand; t++)
	{
		uint32		d = cand[t];
		const SsDoc *doc;
		Acc		   *total = &sa->total;

		if (total->cnt[d] != q->nslots && !(q->match_any && total->cnt[d] > 0))
			continue;
		/* two passes: each document is offered in one of them only */
		if (ev->pass == SS_PASS_FULL ? total->cnt[d] != q->nslots :
			ev->pass == SS_PASS_PARTIAL && total->cnt[d] == q->nslots)
			continue;
		ss_work.cands++;
		/* even the largest boost would not make the top k: skip unread */
		if (!result_possible(ev, (float4) ((q->nslots - total->cnt[d]) * SS_MISSING_TIER +
										   Min(total->typ1[d] - 1, 9) * SS_TYPO_TIER -
										   Min(total->score[d] * boostub, SS_MAX_SCORE))))
			continue;
		if (s->ids)
		{
			/* the visitor keeps the dead flags (no stored-value filter here) */
			ids[nids++] = d;
			if (nids == SS_IDS_BATCH)
			{
				ev->visit_id(ev->ids_arg, ids, nids);
				nids = 0;
			}
			continue;
		}
		doc = doc_get(dc, d);
		ss_work.docs++;
		if (ev->collect && t + 4 < ncand &&
			cand[t + 4] / SS_DOCS_PER_PAGE == d / SS_DOCS_PER_PAGE)
		{
			/* a record a few matches on, on this page: start loading it */
			const char *next = (const char *) (doc + (cand[t + 4] - d));

			__builtin_prefetch(next);
			__builtin_prefetch(next + sizeof(SsDoc) - 1);
		}
		if ((doc->flags & SS_DOC_DEAD) || !SsDocPassesFilters(q, doc))
		{
			total->cnt[d] = 0;
			continue;
		}
		if (ev->collect)
		{
			collect_doc(ev, doc, (int32) (s - ev->segs), d);
			continue;
		}
		add_result(ev, doc,
				   final_dist(ev, doc, total->score[d], total->typ1[d] - 1,
							  q->nslots - total->cnt[d],
							  track_compound && total->cnt[d] != q->nslots &&
							  !(sa->comphit[(d - lo) >> 6] & (UINT64CONST(1) << ((d - lo) & 63))),
							  track_type && total->cnt[d] != q->nslots &&
							  !(sa->typehit[(d - lo) >> 6] & (UINT64CONST(1) << ((d - lo) & 63)))));
	}
	if (s->ids)
	{
		if (nids > 0)
			ev->visit_id(ev->ids_arg, ids, nids);
		ev->visit_id(ev->ids_arg, NULL, SS_IDS_PAUSE);
	}
	if (ev->want_all)
	{
		for (uint32 d = lo; d < hi; d++)
		{
			const SsDoc *doc;

			if (sa->total.typ1[d] != 0 &&
				(sa->total.cnt[d] == q->nslots || (q->match_any && sa->total.cnt[d] > 0)))
				continue;
			if (!result_possible(ev, get_float4_infinity()))
				continue;
			doc = doc_get(dc, d);
			if (!(doc->flags & SS_DOC_DEAD))
				add_result(ev, doc, get_float4_infinity());
		}
	}
	acc_reset(&sa->total);
}

typedef struct BitmapFill
{
	uint8	   *bits;
	uint32	   *wincnt;
	uint32		ndocs;
} BitmapFill;

static void
bitmap_fill_cb(void *arg, uint32 docid, uint16 tf)
{
	BitmapFill *bf = (BitmapFill *) arg;

	if (docid >= bf->ndocs || (bf->bits[docid >> 3] & (1 << (docid & 7))))
		return;
	bf->bits[docid >> 3] |= 1 << (docid & 7);
	bf->wincnt[docid / SS_WINDOW]++;
}

/*
 * An attribute filter: the documents holding every attribute term (or the
 * overflow term of a document with more attributes than it indexes), one
 * bitmap per term ANDed together, and with the category or brand bitmap
 * if there is one.  Unlike that one it is always built: the attributes
 * are not stored values the scan could check otherwise.
 */
static void
attr_filter_bitmap(Eval *ev, SegState *s)
{
	uint32		n = s->hdr.ndocs;
	uint32		nbytes = (n + 7) / 8;
	uint8	   *acc = NULL;
	BitmapFill	bf;
	SsDictItem	item;
	char		over[SS_FILTER_TERM_MAX];
	int			overlen = SsAttrOverflowTerm(over);
	bool		have_over;
	SsDictItem	overitem;

	have_over = SsDictLookup(ev->index, &s->hdr, over, overlen, &overitem);
	bf.ndocs = n;
	bf.wincnt = palloc0(sizeof(uint32) * ((n + SS_WINDOW - 1) / SS_WINDOW));
	for (int i = 0; i < ev->nattr; i++)
	{
		bf.bits = palloc0(nbytes);
		if (SsDictLookup(ev->index, &s->hdr, ev->attr[i].term, ev->attr[i].len, &item))
			SsReadPostings(ev->index, item.postblk, item.postoff, item.df, bitmap_fill_cb, &bf);
		if (have_over)
			SsReadPostings(ev->index, overitem.postblk, overitem.postoff, overitem.df,
						   bitmap_fill_cb, &bf);
		if (acc == NULL)
			acc = bf.bits;
		else
		{
			for (uint32 b = 0; b < nbytes; b++)
				acc[b] &= bf.bits[b];
			pfree(bf.bits);
		}
	}
	if (s->allowed)
		for (uint32 b = 0; b < nbytes; b++)
			acc[b] &= s->allowed[b];
	/* documents per window, of what passes both */
	memset(bf.wincnt, 0, sizeof(uint32) * ((n + SS_WINDOW - 1) / SS_WINDOW));
	for (uint32 d = 0; d < n; d++)
		if (acc[d >> 3] & (1 << (d & 7)))
			bf.wincnt[d / SS_WINDOW]++;
	s->allowed = acc;
	s->wincnt = bf.wincnt;
}

/*
 * A selective category or brand filter: the documents passing it, from
 * the postings of its filter terms, as a bitmap (and a count per window),
 * so postings of other documents are dropped before their document is
 * read and windows without one are skipped.  The stored values are still
 * checked for documents in the bitmap (other filters, dead documents).
 * Not built when the filter keeps more than a quarter of the segment.
 */
static void
build_filter_bitmap(Eval *ev, SegState *s)
{
	SsQuery    *q = ev->q;
	uint32		n = s->hdr.ndocs;
	bool		use_cats = q->ncats >= 0;
	int			nterms = use_cats ? q->ncats : q->nbrands;
	SsDictItem *items;
	bool	   *found;
	uint64		total = 0;
	BitmapFill	bf;

	s->allowed = NULL;
	s->wincnt = NULL;
	s->catbits = NULL;
	if ((q->ncats >= 0 || q->nbrands >= 0) && shop_search_block_max)
	{
		if (q->ncats >= 0 && q->nbrands >= 0 && q->nbrands < q->ncats)
		{
			use_cats = false;
			nterms = q->nbrands;
		}
		items = palloc(sizeof(SsDictItem) * Max(nterms, 1));
		found = palloc0(sizeof(bool) * Max(nterms, 1));
		for (int i = 0; i < nterms; i++)
		{
			char		term[SS_FILTER_TERM_MAX];
			int			len = use_cats ? SsCategoryTerm(q->cats[i], term) : SsBrandTerm(q->brands[i], term);

			found[i] = SsDictLookup(ev->index, &s->hdr, term, len, &items[i]);
			if (found[i])
				total += items[i].df;
		}
		if (total <= n / 4)
		{
			bf.bits = palloc0((n + 7) / 8);
			bf.wincnt = palloc0(sizeof(uint32) * ((n + SS_WINDOW - 1) / SS_WINDOW));
			bf.ndocs = n;
			for (int i = 0; i < nterms; i++)
				if (found[i])
					SsReadPostings(ev->index, items[i].postblk, items[i].postoff, items[i].df,
								   bitmap_fill_cb, &bf);
			s->allowed = bf.bits;
			s->wincnt = bf.wincnt;
			s->catbits = bf.bits;
		}
	}
	if (ev->nattr > 0)
		attr_filter_bitmap(ev, s);
}

/*
 * Ranked scans with marked boost factors (SsQueryHasMarkedBoost: the
 * intent's head nouns and categories, the prior's categories) evaluate a
 * segment in phases, one per class of documents: those that each mix of
 * the marked factors may raise (from the postings of the factors' filter
 * terms), the class with the largest product of factors first, each with
 * that product in its bounds, the documents no marked factor raises last.
 * The intent alone multiplies a score by up to 9; with that factor in the
 * bound of every window, block-max pruning would skip almost nothing,
 * while the first classes usually fill the top k with scores the rest
 * cannot reach.
 */
#define SS_NMARKS	3			/* head noun, intent category, prior category */

/* the documents a marked factor (0: head noun, 1: intent category, 2: prior category) may raise */
static uint8 *
mark_bitmap(Eval *ev, SegState *s, int mark)
{
	SsQuery    *q = ev->q;
	uint32		n = s->hdr.ndocs;
	BitmapFill	bf;
	SsDictItem	item;
	char		term[SS_FILTER_TERM_MAX];
	int			nterms = mark == 0 ? q->ntypes : mark == 1 ? q->nintent_cats : q->nprior_cats;

	if (nterms == 0)
		return NULL;
	bf.ndocs = n;
	bf.bits = palloc0((n + 7) / 8);
	bf.wincnt = palloc0(sizeof(uint32) * ((n + SS_WINDOW - 1) / SS_WINDOW));
	for (int i = 0; i < nterms; i++)
	{
		int			len = mark == 0 ? SsHeadTerm(q->types[i], term)
			: mark == 1 ? SsCategoryTerm(q->intent_cats[i], term)
			: SsCategoryTerm(q->prior_cats[i].category_id, term);

		if (SsDictLookup(ev->index, &s->hdr, term, len, &item))
			SsReadPostings(ev->index, item.postblk, item.postoff, item.df, bitmap_fill_cb, &bf);
	}
	pfree(bf.wincnt);
	return bf.bits;
}

/* the largest factor of each marked boost (SsBoost's, ssquery.c) */
static float4
mark_factor(const SsQuery *q, int mark)
{
	return mark == 0 ? SS_BOOST_TYPE : mark == 1 ? SS_BOOST_INTENT_CAT
		: 1.0f + SS_BOOST_PRIOR_CAT * q->prior_cat_max;
}

/*
 * The documents of class cls (bit i set: raised by mark i, clear: not)
 * that pass filter (NULL: all) become s->allowed, with their count per
 * window; returns how many there are.
 */
static uint64
class_bitmap(SegState *s, const uint8 *filter, uint8 *const *marks, int cls)
{
	uint32		n = s->hdr.ndocs;
	uint32		nbytes = (n + 7) / 8;
	uint32		nwin = (n + SS_WINDOW - 1) / SS_WINDOW;
	uint8	   *bits = palloc(nbytes);
	uint64		total = 0;

	uint32		b = 0;

	/* eight bytes at a time, then the rest */
	for (; b + 8 <= nbytes; b += 8)
	{
		uint64		v = ~UINT64CONST(0);

		if (filter)
			memcpy(&v, filter + b, 8);
		for (int m = 0; m < SS_NMARKS; m++)
		{
			uint64		mb = 0;

			if (marks[m])
				memcpy(&mb, marks[m] + b, 8);
			v &= (cls & (1 << m)) ? mb : ~mb;
		}
		memcpy(bits + b, &v, 8);
	}
	for (; b < nbytes; b++)
	{
		uint8		v = filter ? filter[b] : 0xff;

		for (int m = 0; m < SS_NMARKS; m++)
		{
			uint8		mb = marks[m] ? marks[m][b] : 0;

			v &= (cls & (1 << m)) ? mb : (uint8) ~mb;
		}
		bits[b] = v;
	}
	if (n % 8 != 0)
		bits[nbytes - 1] &= (uint8) ((1 << (n % 8)) - 1);
	s->allowed = bits;
	s->wincnt = palloc(sizeof(uint32) * Max(nwin, 1));
	for (uint32 w = 0; w < nwin; w++)
	{
		uint32		lo = w * (SS_WINDOW / 8);
		uint32		hi = Min(nbytes, (w + 1) * (SS_WINDOW / 8));

		s->wincnt[w] = (uint32) pg_popcount((const char *) bits + lo, hi - lo);
		total += s->wincnt[w];
	}
	return total;
}

/* ---- sorted scans: block bounds on the sort key ---- */

/*
 * The smallest sort key of every SS_SORT_BLOCK docids of a segment, for
 * one sort kind, worked out from its document pages the first time a
 * sorted scan of that kind needs it and kept for the backend's life (a
 * segment never changes but for dead flags, and a dead document's key
 * only makes a bound lower).  Kept as doubles (a key may pack a second
 * sort column below the first, sssort.c: the rating sort's count), 8
 * bytes per 32 documents, with a sorted copy for the first phase's cut:
 * 6 MB per kind at 12,000,000 products.  Entries are named by the
 * relation file, the
 * segment's header block and its serial (a reused block heads a segment
 * of a higher serial; a rebuilt index has a new file); when the cache
 * would hold too much (256 entries or 64 MB), the filters' and the
 * words' entries (below) are dropped, least recently used first, and if
 * that is not enough, all.
 *
 * A query with a category or brand filter gets bounds of its own: the
 * smallest key of each block over the documents passing that filter
 * only (+infinity for a block holding none), an entry named by the
 * filter's ids too.  A block's bound over all its documents is the
 * catalog's cheapest product there, while a category's cheapest matches
 * are usually dearer, so with the whole block's bound the k-th key of
 * the filtered matches lies above the bounds of most blocks and few are
 * skipped (issue 12: 15,000 to 26,000 matches visited for 20 rows at
 * 1,000,000 products).  Such an entry costs a pass over the filter's
 * documents (those of its bitmap when it has one) the first time a
 * backend sorts by that kind with that filter.
 */
typedef struct SortMins
{
	RelFileNode node;
	BlockNumber hdrblk;
	uint64		serial;
	uint32		ndocs;
	int			kind;
	int			ncats;			/* the category filter (-1: none) ... */
	int64	   *cats;
	int			nbrands;		/* ... and the brand filter (-1: none) */
	uint32	   *brands;
	bool		term;			/* one word's bounds (below) ... */
	int			nterms;			/* ... named by where its terms' postings */
	uint64	   *terms;			/* start, ascending */
	double	   *mins;
	double	   *sorted;			/* the same, ascending (NULL for a term's) */
	uint64		used;			/* sort_cache_clock when last used */
} SortMins;

#define SS_SORT_CACHE_ENTRIES	256
#define SS_SORT_CACHE_BYTES		(64 * 1024 * 1024)

static MemoryContext sort_cache_cxt = NULL;
static SortMins sort_cache[SS_SORT_CACHE_ENTRIES];
static int	sort_cache_n = 0;
static Size sort_cache_bytes = 0;
static uint64 sort_cache_clock = 0;	/* SortMins.used */

/* the size of entry e, as sort_cache_bytes counts it */
static Size
sort_entry_bytes(const SortMins *e)
{
	Size		nblk = (e->ndocs + SS_SORT_BLOCK - 1) / SS_SORT_BLOCK;

	return (e->sorted ? 2 : 1) * sizeof(double) * nblk + sizeof(int64) * Max(e->ncats, 0) +
		sizeof(uint32) * Max(e->nbrands, 0) + sizeof(uint64) * e->nterms;
}

/*
 * Room for an entry of bytes: the filters' and words' entries go first,
 * the least recently used first (a storefront may sort by many
 * categories and words, each an entry per segment and kind, while the
 * bounds over all documents serve every query), then everything.
 */
static void
sort_cache_make_room(Size bytes)
{
	while (sort_cache_n >= SS_SORT_CACHE_ENTRIES || sort_cache_bytes + bytes > SS_SORT_CACHE_BYTES)
	{
		int			victim = -1;
		SortMins   *e;

		for (int i = 0; i < sort_cache_n; i++)
			if ((sort_cache[i].ncats >= 0 || sort_cache[i].nbrands >= 0 || sort_cache[i].term) &&
				(victim < 0 || sort_cache[i].used < sort_cache[victim].used))
				victim = i;
		if (victim < 0)
		{
			MemoryContextReset(sort_cache_cxt);
			sort_cache_n = 0;
			sort_cache_bytes = 0;
			return;
		}
		e = &sort_cache[victim];
		sort_cache_bytes -= sort_entry_bytes(e);
		pfree(e->mins);
		if (e->sorted)
			pfree(e->sorted);
		if (e->terms)
			pfree(e->terms);
		if (e->cats)
			pfree(e->cats);
		if (e->brands)
			pfree(e->brands);
		sort_cache[victim] = sort_cache[--sort_cache_n];
	}
}

static int
double_cmp(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* does entry e hold the bounds of this filter (ncats, nbrands -1: none)? */
static bool
sort_filter_equal(const SortMins *e, const SsQuery *q)
{
	if (e->term || e->ncats != q->ncats || e->nbrands != q->nbrands)
		return false;
	if (q->ncats > 0 && memcmp(e->cats, q->cats, sizeof(int64) * q->ncats) != 0)
		return false;
	if (q->nbrands > 0 && memcmp(e->brands, q->brands, sizeof(uint32) * q->nbrands) != 0)
		return false;
	return true;
}

static const double *
sort_mins(Eval *ev, SegState *s, const double **sorted)
{
	SsSortPrune *pr = ev->prune;
	SsQuery    *q = ev->q;
	uint32		n = s->hdr.ndocs;
	uint32		nblk = (n + SS_SORT_BLOCK - 1) / SS_SORT_BLOCK;
	BlockNumber hdrblk = s->hdr.docstart - 1;
	SortMins   *e;
	double	   *mins;
	DocCache	dc;
	SsQuery		fq;				/* the category and brand filters of q alone */
	bool		filtered = q->ncats >= 0 || q->nbrands >= 0;
	Size		fbytes;

	for (int i = 0; i < sort_cache_n; i++)
		if (RelFileNodeEquals(sort_cache[i].node, ev->index->rd_node) &&
			sort_cache[i].hdrblk == hdrblk && sort_cache[i].serial == s->hdr.serial &&
			sort_cache[i].ndocs == n && sort_cache[i].kind == pr->kind &&
			sort_filter_equal(&sort_cache[i], q))
		{
			sort_cache[i].used = ++sort_cache_clock;
			*sorted = sort_cache[i].sorted;
			return sort_cache[i].mins;
		}

	memset(&fq, 0, sizeof(fq));
	fq.ncats = q->ncats;
	fq.cats = q->cats;
	fq.nbrands = q->nbrands;
	fq.brands = q->brands;

	/* the smallest keys, of the documents passing the filter if any */
	mins = palloc_extended(sizeof(double) * Max(nblk, 1), MCXT_ALLOC_HUGE);
	for (uint32 b = 0; b < nblk; b++)
		mins[b] = get_float8_infinity();
	page_cache_init(&dc, ev->index, s->hdr.docstart, SS_PAGE_DOC);
	PG_TRY();
	{
		for (uint32 d = 0; d < n; d++)
		{
			const SsDoc *doc;
			double		key;

			if ((d & 65535) == 65535)
			{
				doc_release(&dc);
				CHECK_FOR_INTERRUPTS();
			}
			if (s->catbits && !(s->catbits[d >> 3] & (1 << (d & 7))))
				continue;
			doc = doc_get(&dc, d);
			ss_last_scan.bound_docs++;
			if (filtered && !SsDocPassesFilters(&fq, doc))
				continue;
			key = pr->key(pr->kind, doc);
			if (key < mins[d / SS_SORT_BLOCK])
				mins[d / SS_SORT_BLOCK] = key;
		}
	}
	PG_CATCH();
	{
		doc_release(&dc);
		PG_RE_THROW();
	}
	PG_END_TRY();
	doc_release(&dc);

	if (sort_cache_cxt == NULL)
		sort_cache_cxt = AllocSetContextCreate(TopMemoryContext, "shop_search sort bounds",
											   ALLOCSET_DEFAULT_SIZES);
	fbytes = 0;
	if (q->ncats > 0)
		fbytes += sizeof(int64) * q->ncats;
	if (q->nbrands > 0)
		fbytes += sizeof(uint32) * q->nbrands;
	sort_cache_make_room(2 * sizeof(double) * nblk + fbytes);
	e = &sort_cache[sort_cache_n];
	e->node = ev->index->rd_node;
	e->hdrblk = hdrblk;
	e->serial = s->hdr.serial;
	e->ndocs = n;
	e->kind = pr->kind;
	e->term = false;
	e->nterms = 0;				/* a slot may have held a word's entry */
	e->terms = NULL;
	e->used = ++sort_cache_clock;
	e->ncats = q->ncats;
	e->cats = NULL;
	if (q->ncats > 0)
	{
		e->cats = MemoryContextAlloc(sort_cache_cxt, sizeof(int64) * q->ncats);
		memcpy(e->cats, q->cats, sizeof(int64) * q->ncats);
	}
	e->nbrands = q->nbrands;
	e->brands = NULL;
	if (q->nbrands > 0)
	{
		e->brands = MemoryContextAlloc(sort_cache_cxt, sizeof(uint32) * q->nbrands);
		memcpy(e->brands, q->brands, sizeof(uint32) * q->nbrands);
	}
	e->mins = MemoryContextAllocHuge(sort_cache_cxt, sizeof(double) * Max(nblk, 1));
	memcpy(e->mins, mins, sizeof(double) * nblk);
	pfree(mins);
	e->sorted = MemoryContextAllocHuge(sort_cache_cxt, sizeof(double) * Max(nblk, 1));
	memcpy(e->sorted, e->mins, sizeof(double) * nblk);
	qsort(e->sorted, nblk, sizeof(double), double_cmp);
	sort_cache_n++;
	sort_cache_bytes += 2 * sizeof(double) * nblk + fbytes;
	*sorted = e->sorted;
	return e->mins;
}

/*
 * Bounds of one word's own documents.  A block's bound over all its
 * documents (or all of a filter's) is the catalog's cheapest product
 * there; a word whose matches are dear (`toner` by price_asc) or cheap
 * (by price_desc) has its k-th key above the bounds of nearly every
 * block, so a page visited most of its matches (85,477 of `toner`'s at
 * 1,000,000 products).  So a word of many postings gets bounds of its
 * own: the smallest key of each block over the documents holding one of
 * its terms (exact, stems, completions, typo variants: every term the
 * match rule accepts for it; +infinity for a block without any), from one
 * pass over their postings the first time a backend sorts by that kind
 * with that word, kept in the same cache as the others, named by where
 * the terms' postings start (a segment never changes but for dead
 * flags).  A document matching the query holds a term of each of its
 * words (AND mode), so the largest of the words' bounds and the filter's
 * is a bound on the block's matches.
 */
#define SS_SORT_WORD_MIN_DF		1024	/* a word with fewer postings: no bounds */
#define SS_SORT_WORD_MAX_TERMS	256		/* ... or with more terms */

typedef struct WordMinsFill
{
	SsSortPrune *pr;
	DocCache   *dc;
	double	   *mins;
	uint32		ndocs;
	uint32		seen;
} WordMinsFill;

static void
word_mins_cb(void *arg, uint32 docid, uint16 tf)
{
	WordMinsFill *wf = (WordMinsFill *) arg;
	double		key;

	ss_last_scan.bound_postings++;
	if (docid >= wf->ndocs)
		return;
	if ((++wf->seen & 65535) == 0)
	{
		doc_release(wf->dc);
		CHECK_FOR_INTERRUPTS();
	}
	key = wf->pr->key(wf->pr->kind, doc_get(wf->dc, docid));
	if (key < wf->mins[docid / SS_SORT_BLOCK])
		wf->mins[docid / SS_SORT_BLOCK] = key;
}

static int
uint64_cmp(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* the bounds of the documents holding one of terms (the word's SegExps) */
static const double *
word_mins(Eval *ev, SegState *s, SegExp **terms, int nterms)
{
	SsSortPrune *pr = ev->prune;
	uint32		n = s->hdr.ndocs;
	uint32		nblk = (n + SS_SORT_BLOCK - 1) / SS_SORT_BLOCK;
	BlockNumber hdrblk = s->hdr.docstart - 1;
	SortMins   *e;
	double	   *mins;
	uint64	   *names = palloc(sizeof(uint64) * nterms);
	DocCache	dc;
	WordMinsFill fill;

	for (int i = 0; i < nterms; i++)
		names[i] = ((uint64) terms[i]->postblk << 16) | terms[i]->postoff;
	qsort(names, nterms, sizeof(uint64), uint64_cmp);
	for (int i = 0; i < sort_cache_n; i++)
		if (sort_cache[i].term && RelFileNodeEquals(sort_cache[i].node, ev->index->rd_node) &&
			sort_cache[i].hdrblk == hdrblk && sort_cache[i].serial == s->hdr.serial &&
			sort_cache[i].ndocs == n && sort_cache[i].kind == pr->kind &&
			sort_cache[i].nterms == nterms &&
			memcmp(sort_cache[i].terms, names, sizeof(uint64) * nterms) == 0)
		{
			sort_cache[i].used = ++sort_cache_clock;
			pfree(names);
			return sort_cache[i].mins;
		}

	mins = palloc_extended(sizeof(double) * Max(nblk, 1), MCXT_ALLOC_HUGE);
	for (uint32 b = 0; b < nblk; b++)
		mins[b] = get_float8_infinity();
	page_cache_init(&dc, ev->index, s->hdr.docstart, SS_PAGE_DOC);
	fill.pr = pr;
	fill.dc = &dc;
	fill.mins = mins;
	fill.ndocs = n;
	fill.seen = 0;
	PG_TRY();
	{
		for (int i = 0; i < nterms; i++)
			SsReadPostings(ev->index, terms[i]->postblk, terms[i]->postoff, terms[i]->df,
						   word_mins_cb, &fill);
	}
	PG_CATCH();
	{
		doc_release(&dc);
		PG_RE_THROW();
	}
	PG_END_TRY();
	doc_release(&dc);

	if (sort_cache_cxt == NULL)
		sort_cache_cxt = AllocSetContextCreate(TopMemoryContext, "shop_search sort bounds",
											   ALLOCSET_DEFAULT_SIZES);
	sort_cache_make_room(sizeof(double) * nblk + sizeof(uint64) * nterms);
	e = &sort_cache[sort_cache_n];
	memset(e, 0, sizeof(SortMins));
	e->node = ev->index->rd_node;
	e->hdrblk = hdrblk;
	e->serial = s->hdr.serial;
	e->ndocs = n;
	e->kind = pr->kind;
	e->ncats = -1;
	e->nbrands = -1;
	e->term = true;
	e->used = ++sort_cache_clock;
	e->nterms = nterms;
	e->terms = MemoryContextAlloc(sort_cache_cxt, sizeof(uint64) * nterms);
	memcpy(e->terms, names, sizeof(uint64) * nterms);
	pfree(names);
	e->mins = MemoryContextAllocHuge(sort_cache_cxt, sizeof(double) * Max(nblk, 1));
	memcpy(e->mins, mins, sizeof(double) * nblk);
	pfree(mins);
	e->sorted = NULL;
	sort_cache_n++;
	sort_cache_bytes += sizeof(double) * nblk + sizeof(uint64) * nterms;
	return e->mins;
}

/* the m-th smallest (1-based) of v[0 .. n - 1], which it reorders */
static double
nth_smallest(double *v, uint32 n, uint32 m)
{
	int64		lo = 0,
				hi = (int64) n - 1,
				want = (int64) m - 1;

	while (lo < hi)
	{
		double		pivot = v[lo + (hi - lo) / 2];
		int64		i = lo,
					j = hi;

		do
		{
			while (v[i] < pivot)
				i++;
			while (pivot < v[j])
				j--;
			if (i <= j)
			{
				double		t = v[i];

				v[i++] = v[j];
				v[j--] = t;
			}
		} while (i <= j);
		if (want <= j)
			hi = j;
		else if (want >= i)
			lo = i;
		else
			break;
	}
	return v[want];
}

/*
 * The block bounds of segment s for this query: the filter's (or all
 * documents'), raised by the bounds of each word of many postings
 * (word_mins).  NULL when no word has such bounds (then the filter's
 * serve as they are).
 */
static double *
sort_word_mins(Eval *ev, SegState *s, const double *base)
{
	SsQuery    *q = ev->q;
	uint32		nblk = (s->hdr.ndocs + SS_SORT_BLOCK - 1) / SS_SORT_BLOCK;
	double	   *comb = NULL;
	SegExp	  **terms;

	if (!ev->prune->word_bounds || q->match_any || nblk == 0)
		return NULL;
	terms = palloc(sizeof(SegExp *) * Max(s->nexp, 1));
	for (int si = 0; si < q->nslots; si++)
	{
		int			qi;
		int			nterms = 0;
		uint64		df = 0;
		const double *w;

		if (q->slots[si].nalts != 1 || q->slots[si].alts[0].nwords != 1)
			continue;
		qi = q->slots[si].alts[0].first;
		for (int i = 0; i < s->nexp; i++)
			for (int k = 0; k < s->exps[i].e->nm; k++)
				if (s->exps[i].e->m[k].qword == qi)
				{
					terms[nterms++] = &s->exps[i];
					df += s->exps[i].df;
					break;
				}
		if (nterms == 0 || nterms > SS_SORT_WORD_MAX_TERMS || df < SS_SORT_WORD_MIN_DF)
			continue;
		/*
		 * base is a cache entry too: copied before the first fetch, which
		 * may evict it; each word's entry is used at once for the same
		 * reason
		 */
		if (comb == NULL)
		{
			comb = palloc_extended(sizeof(double) * nblk, MCXT_ALLOC_HUGE);
			memcpy(comb, base, sizeof(double) * nblk);
		}
		w = word_mins(ev, s, terms, nterms);
		for (uint32 b = 0; b < nblk; b++)
			comb[b] = Max(comb[b], w[b]);
		elog(DEBUG1, "shop_search sorted scan: word %d's own block bounds (%d terms, " UINT64_FORMAT " postings)",
			 qi, nterms, df);
	}
	pfree(terms);
	return comb;
}

/*
 * The m-th smallest of a segment's block bounds: from sorted (ascending)
 * if given, else from sel (any order; nth_smallest reorders it)
 */
static double
sort_cut(const double *sorted, double *sel, uint32 nblk, int64 m)
{
	m = Min(Max(m, 1), (int64) nblk);
	return sorted ? sorted[m - 1] : nth_smallest(sel, nblk, (uint32) m);
}

/*
 * a sorted scan of segment s: its block bounds, the phases' cuts (the
 * top of this file: the first as many blocks as k matches fill, plus
 * one, then SS_SORT_PHASE_GROWTH times more each), and room for the
 * bitmaps
 */
static void
sort_prune_init(Eval *ev, SegState *s)
{
	uint32		n = s->hdr.ndocs;
	uint32		nblk = (n + SS_SORT_BLOCK - 1) / SS_SORT_BLOCK;
	const double *sorted;
	int64		m1 = (ev->prune->k + SS_SORT_BLOCK - 1) / SS_SORT_BLOCK + 1;
	double	   *comb;
	double	   *sel = NULL;

	s->sortmins = sort_mins(ev, s, &sorted);
	/* s->sortmins and sorted may be gone after, if it made entries */
	comb = sort_word_mins(ev, s, s->sortmins);
	if (comb)
	{
		sel = palloc_extended(sizeof(double) * nblk, MCXT_ALLOC_HUGE);
		memcpy(sel, comb, sizeof(double) * nblk);
		sorted = NULL;
		s->sortmins = comb;
	}
	/* per window, the range of its blocks' bounds */
	{
		uint32		nw = (n + SS_WINDOW - 1) / SS_WINDOW;
		uint32		per = SS_WINDOW / SS_SORT_BLOCK;

		s->sortwinlo = palloc(sizeof(double) * nw);
		s->sortwinhi = palloc(sizeof(double) * nw);
		for (uint32 w = 0; w < nw; w++)
		{
			double		lo = get_float8_infinity(),
						hi = -get_float8_infinity();

			for (uint32 b = w * per; b < Min((w + 1) * per, nblk); b++)
			{
				lo = Min(lo, s->sortmins[b]);
				hi = Max(hi, s->sortmins[b]);
			}
			s->sortwinlo[w] = lo;
			s->sortwinhi[w] = hi;
		}
	}
	/*
	 * A first phase of k / 32 + 1 blocks fills k only if every document
	 * matches: with the rarest word in a fraction d of the segment, twice
	 * k / (32 d) blocks (a phase too small for k repeats the posting
	 * blocks it decoded in the next: page 101 of a word in 43% of the
	 * catalog decoded 666 posting blocks of the word's 342, srt2).  Deep
	 * pages only: for a first page the smallest phase is cheaper (each
	 * block it adds may be a window more to evaluate: 4 blocks instead of
	 * 2 cost a first page of `black` 13% more instructions)
	 */
	if (ev->prune->k >= SS_SORT_DENSE_K)
	{
		double		dens = 1.0;

		for (int si = 0; si < ev->q->nslots; si++)
		{
			uint64		df = 0;

			for (int i = 0; i < s->nexp; i++)
				for (int j = 0; j < s->exps[i].e->nm; j++)
					if (ev->q->words[s->exps[i].e->m[j].qword].slot == si)
					{
						df += s->exps[i].df;
						break;
					}
			dens = Min(dens, (double) df / Max(n, 1));
		}
		if (dens <= 0)
			m1 = nblk;
		else
			m1 = Max(m1, (int64) Min((double) nblk, ceil(2.0 * ev->prune->k / (SS_SORT_BLOCK * dens))) + 1);
	}
	s->nsortcuts = 0;
	for (int64 m = m1; m < nblk && s->nsortcuts < SS_SORT_MAX_PHASES - 1; m *= SS_SORT_PHASE_GROWTH)
		s->sortcuts[s->nsortcuts++] = sort_cut(sorted, sel, nblk, m);
	s->sortcuts[s->nsortcuts++] = sort_cut(sorted, sel, nblk, nblk);	/* the largest */
	if (sel)
		pfree(sel);
	s->filterbits = s->allowed;
	s->filtercnt = s->wincnt;
	s->sortbits = palloc((n + 7) / 8);
	s->sortcnt = palloc0(sizeof(uint32) * ((n + SS_WINDOW - 1) / SS_WINDOW));
}

/*
 * Before window [lo, hi) of a sorted scan: the documents of the blocks
 * of this phase (1: those whose smallest key is at most s->sortcut, 2:
 * the others) whose smallest key is at most the k-th key the visitor
 * holds (any, while it holds fewer than k) may enter, through s->allowed
 * with the filter's bits, so the other blocks' postings are dropped
 * before a document is read and a window without any is skipped
 * (window_possible).
 */
static void
sort_window(Eval *ev, SegState *s, uint32 lo, uint32 hi)
{
	SsSortPrune *pr = ev->prune;
	uint32		w = lo / SS_WINDOW;
	uint32		nbytes = (s->hdr.ndocs + 7) / 8;
	uint32		open = 0;
	uint32		nblk = 0;
	bool		have_bound;
	double		bound;

	s->allowed = s->filterbits;
	s->wincnt = s->filtercnt;
	if (s->filtercnt && s->filtercnt[w] == 0)
		return;
	have_bound = *pr->have_bound;
	bound = *pr->bound;
	for (uint32 b = lo / SS_SORT_BLOCK; b * SS_SORT_BLOCK < hi; b++)
	{
		uint32		from = b * (SS_SORT_BLOCK / 8);
		uint32		len = Min((uint32) (SS_SORT_BLOCK / 8), nbytes - from);
		double		min = s->sortmins[b];
		bool		mine = min <= s->sorthi && (s->sortfirst || min > s->sortlo);

		nblk++;
		if (mine && (!have_bound || min <= bound))
		{
			open++;
			if (s->filterbits)
				memcpy(s->sortbits + from, s->filterbits + from, len);
			else
				memset(s->sortbits + from, 0xFF, len);
		}
		else
		{
			if (mine)
			{
				pr->blocks_skipped++;
				ss_last_scan.blocks_skipped++;
			}
			memset(s->sortbits + from, 0, len);
		}
	}
	if (open == nblk)
		return;					/* nothing to skip here */
	if (open == 0)
	{
		pr->windows_skipped++;
		ss_last_scan.windows_skipped++;
	}
	s->sortcnt[w] = open;
	s->allowed = s->sortbits;
	s->wincnt = s->sortcnt;
}

/* evaluate the windows of a segment in order; returns how many were read */
static uint32
eval_windows(Eval *ev, SegState *s, DocCache *dc, NormCache *nc, SegAccs *sa)
{
	uint32		n = s->hdr.ndocs;
	uint32		nwin = 0;

	word_cursors_init(ev, s);
	for (uint32 lo = 0; lo < n; lo += SS_WINDOW)
	{
		uint32		hi = Min(n, lo + SS_WINDOW);
		float4		boostub;

		if (s->sortmins)
		{
			uint32		w = lo / SS_WINDOW;

			/*
			 * no block of this phase here (all in earlier phases, or all
			 * above the phase's cut): not even looked at; all above the
			 * k-th key: skipped whole
			 */
			if ((!s->sortfirst && s->sortwinhi[w] <= s->sortlo) || s->sortwinlo[w] > s->sorthi)
				continue;
			if (*ev->prune->have_bound && s->sortwinlo[w] > *ev->prune->bound)
			{
				ev->prune->blocks_skipped++;
				ev->prune->windows_skipped++;
				ss_last_scan.windows_skipped++;
				continue;
			}
			sort_window(ev, s, lo, hi);
		}
		if (window_possible(ev, s, dc, lo, hi, &boostub) &&
			!(ev->pass == SS_PASS_PARTIAL && (full_rows_fill(ev) ||
											  partial_rows_out(ev, s, boostub))))
		{
			word_cursors_window(ev, s, lo, hi);
			nwin++;
			ss_last_scan.windows++;
			eval_window(ev, s, dc, sa, lo, hi, boostub);
		}
		if ((lo / SS_WINDOW) % 16 == 15)
		{
			doc_release(dc);
			norm_cache_release(nc);
			CHECK_FOR_INTERRUPTS();
		}
	}
	return nwin;
}

/*
 * The documents of the segment holding a posting of one of word qi's
 * expansion terms, or-ed into bits (a bitmap of the segment's docids).
 */
static void
word_ids_bits(Eval *ev, SegState *s, int qi, uint64 *bits)
{
	uint32		n = s->hdr.ndocs;

	for (int i = 0; i < s->nexp; i++)
	{
		SegExp	   *se = &s->exps[i];
		bool		mine = false;

		for (int k = 0; k < se->e->nm; k++)
			if (se->e->m[k].qword == qi)
				mine = true;
		if (!mine || se->df == 0)
			continue;
		cursor_load(ev, s, se);
		for (uint32 b = 0; b < se->nblocks; b++)
		{
			if (se->decoded != (int32) b)
				cursor_decode(ev, se, b);
			for (uint32 j = 0; j < se->ndec; j++)
			{
				uint32		d = se->docs[j];

				if (d < n)
					bits[d >> 6] |= UINT64CONST(1) << (d & 63);
			}
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Facets (SsCollectMatchIds): a segment's matches are what eval_window
 * keeps when it collects, without scores: a document holding, for every
 * slot (with "match": "any", for at least one), one of its alternatives,
 * that is every word of the alternative (a synonym phrase's words, in any
 * order and place, as eval_window and eval_pending match them), that is
 * a posting of one of the word's expansion terms.  Each word's postings
 * are decoded into a bitmap of the segment's docids; a phrase's words'
 * bitmaps are intersected, a slot's alternatives' or-ed, the slots
 * intersected (or-ed for "match": "any"); the filter bitmaps of
 * build_filter_bitmap (a selective category's or brand's postings, the
 * attribute filter's terms) are applied, and the docids handed to the
 * visitor in order, which checks every stored-value filter on its column;
 * no accumulator, no window, no document record.
 */
static void
collect_ids_segment(Eval *ev, SegState *s)
{
	SsQuery    *q = ev->q;
	uint32		n = s->hdr.ndocs;
	uint32		nw = (n + 63) / 64;
	Size		bytes = sizeof(uint64) * Max(nw, 1);
	uint64	   *all = palloc_extended(bytes, MCXT_ALLOC_HUGE);
	uint64	   *cur = palloc_extended(bytes, MCXT_ALLOC_HUGE);
	uint64	   *alt = NULL;		/* a phrase's words so far */
	uint64	   *word = NULL;	/* a phrase's next word */
	const uint8 *allowed;
	uint32		ids[SS_IDS_BATCH];	/* docids for visit_id */
	uint32		nids = 0;

	/*
	 * a selective category or brand filter, the attribute filter: their
	 * postings' bitmap (the visitor checks the stored-value filters again
	 * on its copy of the values)
	 */
	build_filter_bitmap(ev, s);
	allowed = s->allowed;
	for (int si = 0; si < q->nslots; si++)
	{
		SsQSlot    *sl = &q->slots[si];
		uint64	   *bits = si == 0 ? all : cur;

		memset(bits, 0, bytes);
		for (int a = 0; a < sl->nalts; a++)
		{
			SsQAlt	   *al = &sl->alts[a];

			if (al->nwords == 1)
			{
				word_ids_bits(ev, s, al->first, bits);
				continue;
			}
			if (alt == NULL)
			{
				alt = palloc_extended(bytes, MCXT_ALLOC_HUGE);
				word = palloc_extended(bytes, MCXT_ALLOC_HUGE);
			}
			memset(alt, 0, bytes);
			word_ids_bits(ev, s, al->first, alt);
			for (int k = 1; k < al->nwords; k++)
			{
				memset(word, 0, bytes);
				word_ids_bits(ev, s, al->first + k, word);
				for (uint32 w = 0; w < nw; w++)
					alt[w] &= word[w];
			}
			for (uint32 w = 0; w < nw; w++)
				bits[w] |= alt[w];
		}
		if (si == 0)
			continue;
		if (q->match_any)
			for (uint32 w = 0; w < nw; w++)
				all[w] |= cur[w];
		else
			for (uint32 w = 0; w < nw; w++)
				all[w] &= cur[w];
	}
	for (uint32 w = 0; w < nw; w++)
		for (uint64 b = all[w]; b != 0; b &= b - 1)
		{
			uint32		d = w * 64 + pg_rightmost_one_pos64(b);

			ids[nids] = d;
			nids += allowed == NULL || (allowed[d >> 3] & (1 << (d & 7)));
			if (nids == SS_IDS_BATCH)
			{
				ev->visit_id(ev->ids_arg, ids, nids);
				nids = 0;
			}
		}
	if (nids > 0)
		ev->visit_id(ev->ids_arg, ids, nids);
	ev->visit_id(ev->ids_arg, NULL, SS_IDS_PAUSE);
	pfree(all);
	pfree(cur);
	if (alt)
	{
		pfree(alt);
		pfree(word);
	}
}

static void
eval_segment(Eval *ev, SegState *s)
{
	SsQuery    *q = ev->q;
	uint32		n = s->hdr.ndocs;
	DocCache	dc;
	NormCache	nc;
	SegAccs		sa;
	uint32		nwin = 0;

	if (n == 0)
		return;
	memset(&ss_work, 0, sizeof(ss_work));
	ss_last_scan.segments++;
	/*
	 * facets: the visitor may take this segment's matches as docids, as
	 * bitmaps of the words' postings (collect_ids_segment), with any
	 * filter: the stored-value filters (category, brand, price, rating,
	 * in_stock) the visitor applies to its own copy of the values, the
	 * attribute filter is a bitmap of its terms' postings (the visitor
	 * reads the rows of documents holding the overflow term)
	 */
	if (ev->visit_seg && !ev->prune && !ev->want_all && q->nslots > 0)
	{
		s->ids = ev->visit_seg(ev->ids_arg, (int) (s - ev->segs),
							   ev->meta.segments[s - ev->segs].header, &s->hdr,
							   ev->meta.bulkdeletes, q);
		if (s->ids)
		{
			collect_ids_segment(ev, s);
			post_pins_release(ev);
			return;
		}
	}
	s->scale = bound_scale(ev, &s->hdr);
	build_filter_bitmap(ev, s);
	if (ev->prune)
		sort_prune_init(ev, s);
	s->slot_ub = palloc0(sizeof(float4) * Max(q->nslots, 1));
	s->simple = true;
	for (int i = 0; i < q->nslots; i++)
		if (q->slots[i].nalts != 1 || q->slots[i].alts[0].nwords != 1)
			s->simple = false;
	page_cache_init(&dc, ev->index, s->hdr.docstart, SS_PAGE_DOC);
	norm_cache_init(&nc, ev->index, s->hdr.normstart);
	s->nc = &nc;

	memset(&sa, 0, sizeof(sa));
	for (int i = 0; i < q->nslots; i++)
		for (int a = 0; a < q->slots[i].nalts; a++)
			if (q->slots[i].alts[a].nwords > 1)
				sa.multi = true;
	/* slot order: fewest postings first */
	sa.order = palloc(sizeof(int) * Max(q->nslots, 1));
	sa.window_order = palloc(sizeof(int) * Max(q->nslots, 1));
	{
		double	   *cost = palloc0(sizeof(double) * Max(q->nslots, 1));

		for (int si = 0; si < q->nslots; si++)
		{
			sa.order[si] = si;
			for (int i = 0; i < s->nexp; i++)
				for (int k = 0; k < s->exps[i].e->nm; k++)
					if (q->words[s->exps[i].e->m[k].qword].slot == si)
						cost[si] += s->exps[i].df;
		}
		for (int i = 1; i < q->nslots; i++)
			for (int j = i; j > 0 && cost[sa.order[j]] < cost[sa.order[j - 1]]; j--)
			{
				int			t = sa.order[j];

				sa.order[j] = sa.order[j - 1];
				sa.order[j - 1] = t;
			}
		pfree(cost);
	}
	scratch_reserve(n, sa.multi ? 4 : 2);
	scratch.dirty = true;
	acc_init(&sa.total, 0, true);
	acc_init(&sa.slot, 1, false);
	if (sa.multi)
	{
		acc_init(&sa.alt, 2, true);
		acc_init(&sa.word, 3, false);
	}

	window_bounds(ev, s);
	/*
	 * "match": "any", ranked: the documents having every word first, in
	 * AND mode (the rarest word's survivors only), since a row missing a
	 * word ranks after every row that has them all; the others in a second
	 * pass, only if the first left the top k short of such rows, and only
	 * from windows where one could still enter.  Each document is offered
	 * once, in one pass, and the top k keeps the best by distance, tie and
	 * tid whatever the order: the rows are those of one OR pass (issue 12,
	 * bw2: `canon cable` scored every posting of both words in OR mode
	 * until k rows having both were held).
	 */
	ev->pass = (q->match_any && q->nslots > 1 && ev->topk > 0 && !ev->want_all &&
				!ev->collect && !ev->tbm && !s->ids && !ev->prune &&
				shop_search_block_max) ? SS_PASS_FULL : 0;
	if (ev->topk > 0 && !ev->want_all && shop_search_block_max && SsQueryHasMarkedBoost(q))
	{
		/* one phase per class of marked factors, the largest product first */
		uint8	   *filter = s->allowed;
		uint8	   *marks[SS_NMARKS];
		int			order[1 << SS_NMARKS];
		float4		factor[1 << SS_NMARKS];

		for (int m = 0; m < SS_NMARKS; m++)
			marks[m] = mark_bitmap(ev, s, m);
		for (int c = 0; c < (1 << SS_NMARKS); c++)
		{
			order[c] = c;
			factor[c] = 1.0f;
			for (int m = 0; m < SS_NMARKS; m++)
				if (c & (1 << m))
					factor[c] *= mark_factor(q, m);
		}
		for (int i = 1; i < (1 << SS_NMARKS); i++)
			for (int j = i; j > 0 && factor[order[j]] > factor[order[j - 1]]; j--)
			{
				int			t = order[j];

				order[j] = order[j - 1];
				order[j - 1] = t;
			}
		ev->unmarked = true;
		for (;;)
		{
			for (int i = 0; i < (1 << SS_NMARKS); i++)
			{
				int			c = order[i];
				bool		possible = true;

				for (int m = 0; m < SS_NMARKS; m++)
					if ((c & (1 << m)) && marks[m] == NULL)
						possible = false;
				if (!possible || class_bitmap(s, filter, marks, c) == 0)
					continue;
				ev->class_factor = factor[c];
				for (int k = 0; k < s->nexp; k++)
					s->exps[k].b = 0;	/* the cursors start over */
				nwin += eval_windows(ev, s, &dc, &nc, &sa);
			}
			if (ev->pass != SS_PASS_FULL || full_rows_fill(ev))
				break;
			ev->pass = SS_PASS_PARTIAL;
		}
		ev->unmarked = false;
	}
	else if (s->sortmins)
	{
		/*
		 * A sorted scan: first the blocks holding the segment's smallest
		 * keys (as many as k matches fill), so the k-th key held falls at
		 * once; then more, in phases of growing cuts, until the visitor
		 * holds k keys; then the other blocks in one phase, most of which
		 * that key rules out.
		 */
		SsSortPrune *pr = ev->prune;

		for (int i = 0; i < s->nsortcuts; i++)
		{
			double		hi = s->sortcuts[i];

			if (i > 0)
			{
				if (hi <= s->sorthi)
					continue;	/* no bound between the two cuts */
				if (*pr->have_bound && *pr->bound <= s->sorthi)
				{
					/* the k-th key rules out every other block */
					pr->blocks_skipped++;
					ss_last_scan.blocks_skipped++;
					break;
				}
				if (*pr->have_bound)
				{
					/* the bound prunes now: the rest in one phase */
					hi = s->sortcuts[s->nsortcuts - 1];
					i = s->nsortcuts - 1;
				}
				for (int k = 0; k < s->nexp; k++)
					s->exps[k].b = 0;	/* the cursors start over */
				s->sortlo = s->sorthi;
			}
			s->sortfirst = i == 0;
			s->sorthi = hi;
			nwin += eval_windows(ev, s, &dc, &nc, &sa);
		}
	}
	else
	{
		for (;;)
		{
			nwin += eval_windows(ev, s, &dc, &nc, &sa);
			if (ev->pass != SS_PASS_FULL || full_rows_fill(ev))
				break;
			ev->pass = SS_PASS_PARTIAL;
			for (int k = 0; k < s->nexp; k++)
				s->exps[k].b = 0;	/* the cursors start over */
		}
	}
	ev->pass = 0;
	doc_release(&dc);
	norm_cache_release(&nc);
	post_pins_release(ev);
	s->nc = NULL;
	scratch.dirty = false;
	elog(DEBUG1, "shop_search: %u of %u windows of a segment of %u documents evaluated "
		 "(postings decoded " UINT64_FORMAT ", scored " UINT64_FORMAT ", candidates "
		 UINT64_FORMAT ", records read " UINT64_FORMAT ")",
		 nwin, (n + SS_WINDOW - 1) / SS_WINDOW, n, ss_work.decoded, ss_work.offered,
		 ss_work.cands, ss_work.docs);
}

typedef struct PendScore
{
	Eval	   *ev;
	const SsDoc *doc;
	float4	   *wscore;			/* per query word best */
	int		   *wtypos;
} PendScore;

static void
pend_score_cb(void *arg, const char *term, int len, uint16 tf)
{
	PendScore  *ps = (PendScore *) arg;
	char		key[SS_TERM_KEY_SIZE];
	Exp		   *e;

	SsTermKey(key, term, len);
	e = hash_search(ps->ev->exps, key, HASH_FIND, NULL);
	if (e == NULL)
		return;
	for (int k = 0; k < e->nm; k++)
	{
		int			qi = e->m[k].qword;
		float4		s = bm25(ps->ev, ps->ev->widf[qi], tf, ps->doc->len, e->m[k].factor);
		int			ty = e->m[k].typos;

		if (ps->wtypos[qi] < 0 || ty < ps->wtypos[qi] ||
			(ty == ps->wtypos[qi] && s > ps->wscore[qi]))
		{
			ps->wtypos[qi] = ty;
			ps->wscore[qi] = s;
		}
	}
}

typedef struct PendAttrs
{
	Eval	   *ev;
	bool	   *held;
	bool		over;
} PendAttrs;

static void
pend_attr_cb(void *arg, const char *term, int len, uint16 tf)
{
	PendAttrs  *pa = (PendAttrs *) arg;
	char		over[SS_FILTER_TERM_MAX];

	if (len < 2 || term[0] != SS_FILTER_MARK || term[1] != 'a')
		return;
	if (len == SsAttrOverflowTerm(over) && memcmp(term, over, len) == 0)
		pa->over = true;
	for (int i = 0; i < pa->ev->nattr; i++)
		if (len == pa->ev->attr[i].len && memcmp(term, pa->ev->attr[i].term, len) == 0)
			pa->held[i] = true;
}

/* does a pending document pass the attribute filter (see attr_filter_bitmap)? */
static bool
pend_attrs_ok(Eval *ev, SsPendItem *it)
{
	PendAttrs	pa;
	bool		ok = true;

	if (ev->nattr == 0)
		return true;
	pa.ev = ev;
	pa.held = palloc0(sizeof(bool) * ev->nattr);
	pa.over = false;
	SsPendItemTerms(it, pend_attr_cb, &pa);
	for (int i = 0; i < ev->nattr && !pa.over; i++)
		ok = ok && pa.held[i];
	pfree(pa.held);
	return ok || pa.over;
}

static void
eval_pending(Eval *ev)
{
	SsQuery    *q = ev->q;
	PendScore	ps;

	ps.ev = ev;
	ps.wscore = palloc(sizeof(float4) * Max(q->nwords, 1));
	ps.wtypos = palloc(sizeof(int) * Max(q->nwords, 1));
	ss_last_scan.pending += ev->npend;
	for (int p = 0; p < ev->npend; p++)
	{
		SsPendItem *it = ev->pend[p].item;
		double		total = 0;	/* exact, as Acc's sums */
		int			ttypos = 0;
		int			missing = 0;
		bool		compound_missing = false;
		bool		type_word_missing = false;
		bool		ok = q->nslots > 0;

		for (int i = 0; i < q->nwords; i++)
			ps.wtypos[i] = -1;
		ps.doc = &it->doc;
		SsPendItemTerms(it, pend_score_cb, &ps);
		for (int si = 0; si < q->nslots && ok; si++)
		{
			SsQSlot    *sl = &q->slots[si];
			double		best = -1;
			int			btypos = 0;

			for (int a = 0; a < sl->nalts; a++)
			{
				SsQAlt	   *al = &sl->alts[a];
				double		sum = 0;
				int			ty = 0;
				bool		all = true;

				for (int k = 0; k < al->nwords && all; k++)
				{
					int			qi = al->first + k;

					if (ps.wtypos[qi] < 0)
						all = false;
					else
					{
						sum += ps.wscore[qi];
						ty += ps.wtypos[qi];
					}
				}
				if (all && (best < 0 || ty < btypos || (ty == btypos && sum > best)))
				{
					best = sum;
					btypos = ty;
				}
			}
			if (best < 0)
			{
				if (q->match_any)
					missing++;
				else
					ok = false;
				if (ev->compound_slots & (((uint32) 1) << si))
					compound_missing = true;
				if (si == q->type_slot)
					type_word_missing = true;
			}
			else
			{
				total += best;
				ttypos += btypos;
			}
		}
		if (missing == q->nslots)
			ok = false;
		ok = ok && SsDocPassesFilters(q, &it->doc) && pend_attrs_ok(ev, it);
		if (ok && ev->collect)
			collect_doc(ev, &it->doc, -1, (uint32) p);
		else if (ok)
			add_result(ev, &it->doc, final_dist(ev, &it->doc, total, ttypos, missing,
											 compound_missing, type_word_missing));
		else if (ev->want_all)
			add_result(ev, &it->doc, get_float4_infinity());
	}
}

/*
 * SsEvaluate: every document of the index matching q (or, with want_all,
 * every live document, non-matching ones at +Infinity) with its distance,
 * allocated in the current memory context; with topk, the best topk; with
 * tbm (and topk 0), the TIDs of the matches go into tbm instead, unscored.
 */
static Eval *
SsEvaluate(Relation index, Jsonb *query, bool want_all, int topk,
		   const SsResult *after, SsFrozen *frozen, TIDBitmap *tbm)
{
	Eval	   *ev = palloc0(sizeof(Eval));
	HASHCTL		ctl;

	ss_last_scan.evaluations++;

	impact_scan_clock = impact_clock + 1;	/* the lists this scan uses stay */
	ev->index = index;
	ev->want_all = want_all;
	ev->topk = topk;
	ev->collect = collect_next && topk == 0 && !want_all;
	ev->want_locs = ev->collect && locs_next;
	ev->nattr = attr_nterms;
	ev->attr = attr_terms;
	if (ev->collect)
	{
		ev->visit = visit_next;
		ev->visit_arg = visit_next_arg;
		ev->prune = visit_next ? prune_next : NULL;
		ev->visit_seg = seg_next;
		ev->visit_id = id_next;
		ev->ids_arg = ids_next_arg;
	}
	ev->tbm = topk == 0 && !ev->collect ? tbm : NULL;
	ev->frozen = frozen;
	if (after)
	{
		ev->have_after = true;
		ev->after = *after;
	}
	SsReadMeta(index, &ev->meta);
	SsTestPause("scan-meta");
	if (frozen && frozen->set)
	{
		ev->meta.ndocs = frozen->ndocs;
		memcpy(ev->meta.sumlen, frozen->sumlen, sizeof(frozen->sumlen));
		ev->meta.max_popularity = frozen->max_popularity;
	}
	if (query)
		ev->q = SsParseQuery(query, ev->meta.language);
	else
	{
		/* no query at all (a keyless scan): nothing matches, want_all lists all */
		ev->q = palloc0(sizeof(SsQuery));
		ev->q->ncats = -1;
		ev->q->nbrands = -1;
	}
	if (ev->q->has_global)
	{
		/* a cluster's statistics (issue 16): score as one index of all */
		ev->meta.ndocs = (uint64) ev->q->global_docs;
		memcpy(ev->meta.sumlen, ev->q->global_sumlen, sizeof(ev->meta.sumlen));
		ev->meta.max_popularity = ev->q->global_max_popularity;
	}
	ev->filtered = ev->q->ncats >= 0 || ev->q->nbrands >= 0 || ev->q->has_price_min ||
		ev->q->has_price_max || ev->q->has_rating_min || ev->q->has_in_stock;
	ev->inv_log_maxpop = ev->meta.max_popularity > 0 ? 1.0f / log1pf(ev->meta.max_popularity) : 0;
	SsGetWeights(index, ev->w);
	for (int f = 0; f < SS_NFIELDS; f++)
		ev->avglen[f] = ev->meta.ndocs > 0 ? Max(ev->meta.sumlen[f] / ev->meta.ndocs, 0.5) : 1.0;
	fill_norm_tables(ev);
	ev->maxres = topk > 0 ? topk : 256;
	ev->res = palloc(sizeof(SsResult) * ev->maxres);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = SS_TERM_KEY_SIZE;
	ctl.entrysize = sizeof(Exp);
	ctl.hcxt = CurrentMemoryContext;
	ev->exps = hash_create("shop_search expansions", 256, &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	/*
	 * Expansion: every term the match rule accepts for a word, in every
	 * segment (typo variants for every word with a typo budget: the query
	 * says which words have none, "typos" and "no_typos"), then the terms
	 * of the pending documents.
	 */
	ev->segs = palloc0(sizeof(SegState) * Max(ev->meta.nsegments, 1));
	for (uint32 i = 0; i < ev->meta.nsegments; i++)
	{
		SegState   *s = &ev->segs[i];

		SsReadSegHeader(index, ev->meta.segments[i].header, &s->hdr);
		s->maxexp = 16;
		s->exps = palloc(sizeof(SegExp) * s->maxexp);
		if (ev->q->nslots > 0)
		{
			expand_segment(ev, s);
			if (ev->q->typos)
				for (int w = 0; w < ev->q->nwords; w++)
					if (ev->q->words[w].maxtypos > 0)
						expand_typos(ev, s, w);
		}
	}
	load_pending(ev);
	compound_init(ev);
	if (ev->q->nslots > 0)
		for (int p = 0; p < ev->npend; p++)
			SsPendItemTerms(ev->pend[p].item, pend_term_df_cb, ev);

	/*
	 * idf per query word, from the largest document frequency among its
	 * expansions (exact form, stems, completions overlap too much to add
	 * up): they share one idf, so a rare completion never outscores the
	 * exact word it completes; the match factor orders them.  Typo variants
	 * count only for a word that has no other expansion, so the idf of a
	 * word the index knows does not come from a more frequent neighbour.
	 */
	{
		HASH_SEQ_STATUS st;
		Exp		   *e;
		double		N = (double) ev->meta.ndocs;
		double	   *wdf = palloc0(sizeof(double) * Max(ev->q->nwords, 1));
		double	   *wdf_typo = palloc0(sizeof(double) * Max(ev->q->nwords, 1));

		ev->widf = palloc0(sizeof(double) * Max(ev->q->nwords, 1));
		hash_seq_init(&st, ev->exps);
		while ((e = hash_seq_search(&st)) != NULL)
			for (int k = 0; k < e->nm; k++)
			{
				double	   *d = e->m[k].typos > 0 ? wdf_typo : wdf;

				d[e->m[k].qword] = Max(d[e->m[k].qword], e->df);
			}
		for (int i = 0; i < ev->q->nwords; i++)
		{
			double		df = Min(ev->q->has_global ? ev->q->global_df[i] :
								 wdf[i] > 0 ? wdf[i] : wdf_typo[i], Max(N, 1.0));
			double		n = Max(N, df);

			ev->widf[i] = log(1.0 + (n - df + 0.5) / (df + 0.5));
		}
		if (frozen && frozen->set && frozen->nwords == ev->q->nwords)
			memcpy(ev->widf, frozen->widf, sizeof(double) * ev->q->nwords);
		else if (frozen)
		{
			frozen->set = true;
			frozen->ndocs = ev->meta.ndocs;
			memcpy(frozen->sumlen, ev->meta.sumlen, sizeof(frozen->sumlen));
			frozen->max_popularity = ev->meta.max_popularity;
			frozen->nwords = ev->q->nwords;
			frozen->widf = MemoryContextAlloc(frozen_cxt, sizeof(double) * Max(ev->q->nwords, 1));
			memcpy(frozen->widf, ev->widf, sizeof(double) * ev->q->nwords);
		}
		/* a learned expansion's words count for less (issue 13, rel13) */
		for (int i = 0; i < ev->q->nwords; i++)
			ev->widf[i] *= ev->q->words[i].weight;
	}
	if (stats_next)
		return ev;				/* SsTermStats: the expansions are all it needs */
	if (ev->collect && !ev->visit && !ev->visit_seg)
	{
		/* facets: room for every possible match at once, not by doubling */
		uint64		most = 0;
		HASH_SEQ_STATUS st;
		Exp		   *e;

		hash_seq_init(&st, ev->exps);
		while ((e = hash_seq_search(&st)) != NULL)
			most += e->df;
		/* an upper bound (word lists overlap); beyond 1M, doubling takes over */
		most = Min(most, ev->meta.ndocs + ev->npend);
		ev->maxdocs = (int) Min(Max(most, 256), 1 << 20);
		ev->docs = palloc_extended(sizeof(SsDoc) * ev->maxdocs, MCXT_ALLOC_HUGE);
		if (ev->want_locs)
		{
			ev->locseg = palloc_extended(sizeof(int32) * ev->maxdocs, MCXT_ALLOC_HUGE);
			ev->locdoc = palloc_extended(sizeof(uint32) * ev->maxdocs, MCXT_ALLOC_HUGE);
		}
	}
	for (uint32 i = 0; i < ev->meta.nsegments; i++)
		eval_segment(ev, &ev->segs[i]);
	eval_pending(ev);
	/* best first */
	if (ev->nres > 1)
		qsort(ev->res, ev->nres, sizeof(SsResult), res_qsort_cmp);
	return ev;
}

/*
 * SsCollectMatches: a copy of the document record of every match of query
 * in index (the same matching as a bitmap scan, "match" as given), for
 * facet counting; allocated in the current memory context.  The caller
 * checks heap visibility.  *bulkdeletes is the metapage's count of bulk
 * deletes as read before any document was: a caller trusting the
 * visibility map compares it with a later read (ssfunc.c).
 */
SsDoc *
SsCollectMatches(Relation index, Jsonb *query, int *ndocs, uint64 *bulkdeletes)
{
	Eval	   *volatile ev = NULL;

	collect_next = true;
	PG_TRY();
	{
		ev = SsEvaluate(index, query, false, 0, NULL, NULL, NULL);
	}
	PG_FINALLY();
	{
		collect_next = false;
	}
	PG_END_TRY();
	*ndocs = ev->ndocs;
	*bulkdeletes = ev->meta.bulkdeletes;
	return ev->docs;
}

/*
 * SsCollectMatchSet: SsCollectMatches, and where each match is: its
 * segment and docid there, or its pending item (locseg -1, locdoc the
 * item's number), with the segment headers and pending items the
 * evaluation read.  The blocks of those segments stay as they were for
 * as long as the caller's snapshot lives (blocks freed by a merge are
 * reused only once no older snapshot exists), so their dictionaries and
 * postings can be read afterwards (attribute facets, ssfunc.c).
 */
void
SsCollectMatchSet(Relation index, Jsonb *query, SsMatchSet *ms)
{
	Eval	   *volatile ev = NULL;

	collect_next = true;
	locs_next = true;
	PG_TRY();
	{
		ev = SsEvaluate(index, query, false, 0, NULL, NULL, NULL);
	}
	PG_FINALLY();
	{
		collect_next = false;
		locs_next = false;
	}
	PG_END_TRY();
	ms->docs = ev->docs;
	ms->ndocs = ev->ndocs;
	ms->bulkdeletes = ev->meta.bulkdeletes;
	ms->locseg = ev->locseg;
	ms->locdoc = ev->locdoc;
	ms->nsegs = (int) ev->meta.nsegments;
	ms->segs = palloc(sizeof(SsSegHeader) * Max(ms->nsegs, 1));
	for (int i = 0; i < ms->nsegs; i++)
		ms->segs[i] = ev->segs[i].hdr;
	ms->npend = ev->npend;
	ms->pend = palloc(sizeof(SsPendItem *) * Max(ev->npend, 1));
	for (int p = 0; p < ev->npend; p++)
		ms->pend[p] = ev->pend[p].item;
}

/*
 * SsTermStats: the statistics a cluster's DFS phase sums over its shards
 * (issue 16), from this index: the metapage's document count, summed
 * field lengths and largest popularity into *meta, and one SsTermStat per
 * (expansion term, query word) pair of query, the typo and prefix
 * expansions included, in no particular order; returns how many.  The
 * scan computes a word's idf from the largest document frequency among
 * its expansions without typos, or among its typo expansions when it has
 * none: SsEvaluate with "global" takes that per-word number.
 */
int
SsTermStats(Relation index, Jsonb *query, SsMetaPageData *meta, SsTermStat **out)
{
	Eval	   *volatile ev = NULL;
	HASH_SEQ_STATUS st;
	Exp		   *e;
	int			n;
	int			max;

	stats_next = true;
	PG_TRY();
	{
		ev = SsEvaluate(index, query, false, 0, NULL, NULL, NULL);
	}
	PG_FINALLY();
	{
		stats_next = false;
	}
	PG_END_TRY();
	*meta = ev->meta;
	n = 0;
	max = 16;
	*out = palloc(sizeof(SsTermStat) * max);
	hash_seq_init(&st, ev->exps);
	while ((e = hash_seq_search(&st)) != NULL)
		for (int k = 0; k < e->nm; k++)
		{
			if (n == max)
			{
				max *= 2;
				*out = repalloc(*out, sizeof(SsTermStat) * max);
			}
			(*out)[n].term = pnstrdup(e->term, e->len);
			(*out)[n].qword = e->m[k].qword;
			(*out)[n].typos = e->m[k].typos;
			(*out)[n].df = e->df;
			n++;
		}
	return n;
}

/*
 * SsVisitMatches: hand the document record of every match of query to
 * visit, in no particular order, without copying them (sorted scans,
 * sssort.c; facet counts, ssfunc.c).  The caller checks heap visibility.
 * Returns the metapage's count of bulk deletes as read before any
 * document was (see SsCollectMatches).
 */
uint64
SsVisitMatches(Relation index, Jsonb *query, SsDocVisitor visit, void *arg)
{
	Eval	   *volatile ev = NULL;

	collect_next = true;
	visit_next = visit;
	visit_next_arg = arg;
	PG_TRY();
	{
		ev = SsEvaluate(index, query, false, 0, NULL, NULL, NULL);
	}
	PG_FINALLY();
	{
		collect_next = false;
		visit_next = NULL;
		visit_next_arg = NULL;
	}
	PG_END_TRY();
	return ev->meta.bulkdeletes;
}

/*
 * SsCollectMatchIds: SsCollectMatchSet (with locs false: without the
 * matches' locations), except that before each segment seg is asked (with
 * the segment's number, header block and header, and the metapage's count
 * of bulk deletes as read before any document was) whether it takes that
 * segment's matches as docids: then id gets the docid of every match
 * there, dead documents included (the caller knows their dead flags), and
 * no document record of the segment is read nor collected into ms (the
 * words' postings as bitmaps: collect_ids_segment).  Any query but a
 * keyless one: the visitor applies the stored-value filters (given the
 * query); a selective category or brand filter and the attribute filter
 * (SsSetAttrFilter: the documents holding its terms, or the overflow
 * term) are applied before.  After each run of a segment's docids
 * (between which the scan takes no buffer lock) id gets SS_IDS_PAUSE.
 * Facet counts (ssfunc.c).
 */
void
SsCollectMatchIds(Relation index, Jsonb *query, bool locs, SsSegVisitor seg, SsIdVisitor id,
				  void *arg, SsMatchSet *ms)
{
	seg_next = seg;
	id_next = id;
	ids_next_arg = arg;
	PG_TRY();
	{
		if (locs)
			SsCollectMatchSet(index, query, ms);
		else
		{
			memset(ms, 0, sizeof(SsMatchSet));
			ms->docs = SsCollectMatches(index, query, &ms->ndocs, &ms->bulkdeletes);
		}
	}
	PG_FINALLY();
	{
		seg_next = NULL;
		id_next = NULL;
		ids_next_arg = NULL;
	}
	PG_END_TRY();
}

/*
 * SsVisitMatchesSorted: SsVisitMatches for a visitor that keeps the first
 * k matches by a sort key, skipping blocks of documents that cannot enter
 * them (see SsSortPrune in ssearch.h).
 */
void
SsVisitMatchesSorted(Relation index, Jsonb *query, SsDocVisitor visit, void *arg,
					 SsSortPrune *prune)
{
	prune_next = prune;
	PG_TRY();
	{
		SsVisitMatches(index, query, visit, arg);
	}
	PG_FINALLY();
	{
		prune_next = NULL;
	}
	PG_END_TRY();
}

/*
 * SsSetAttrFilter: the evaluations from now on keep only documents holding
 * the attribute filter terms of attrs (a jsonb object of key = scalar
 * pairs; sssort.c checks the rows exactly); NULL clears it.  Its caller
 * clears it again on error too.
 */
static void
attr_add_cb(void *arg, const char *term, int len)
{
	AttrTerm   *t = &attr_terms[attr_nterms++];

	memcpy(t->term, term, len);
	t->len = len;
}

void
SsSetAttrFilter(Jsonb *attrs)
{
	if (attr_terms)
		pfree(attr_terms);
	attr_terms = NULL;
	attr_nterms = 0;
	if (attrs == NULL || JB_ROOT_COUNT(attrs) == 0)
		return;
	attr_terms = MemoryContextAllocZero(TopMemoryContext, sizeof(AttrTerm) * JB_ROOT_COUNT(attrs));
	(void) SsForEachAttr(attrs, attr_add_cb, NULL);
}

/* ---- result ordering ---- */

static inline int
res_cmp(const SsResult *a, const SsResult *b)
{
	if (a->dist < b->dist)
		return -1;
	if (a->dist > b->dist)
		return 1;
	if (a->tie != b->tie)
		return a->tie < b->tie ? -1 : 1;
	return ItemPointerCompare((ItemPointer) &a->tid, (ItemPointer) &b->tid);
}

static int
res_qsort_cmp(const void *a, const void *b)
{
	return res_cmp((const SsResult *) a, (const SsResult *) b);
}

static inline void
res_swap(SsResult *a, SsResult *b)
{
	SsResult	t = *a;

	*a = *b;
	*b = t;
}

/* ---- the scan API ---- */

typedef struct SsScanOpaqueData
{
	MemoryContext cxt;			/* lives until rescan: frozen statistics */
	MemoryContext evalcxt;		/* one evaluation */
	bool		computed;
	bool		exhausted;		/* the last evaluation returned everything */
	int			want;			/* batch size of the next evaluation */
	SsResult   *res;			/* this batch, best first */
	int			nres;
	int			pos;
	bool		have_last;		/* a row was handed out: resume after it */
	SsResult	last;
	SsFrozen	frozen;
	bool		recheck_all;	/* a query in another language: every row,
								 * for the executor to recheck */
} SsScanOpaqueData;
typedef SsScanOpaqueData *SsScanOpaque;

IndexScanDesc
ssbeginscan(Relation r, int nkeys, int norderbys)
{
	IndexScanDesc scan = RelationGetIndexScan(r, nkeys, norderbys);
	SsScanOpaque so = palloc0(sizeof(SsScanOpaqueData));

	so->cxt = AllocSetContextCreate(CurrentMemoryContext, "shop_search scan",
									ALLOCSET_DEFAULT_SIZES);
	so->evalcxt = AllocSetContextCreate(so->cxt, "shop_search evaluation",
										ALLOCSET_DEFAULT_SIZES);
	scan->opaque = so;
	if (norderbys > 0)
	{
		scan->xs_orderbyvals = palloc0(sizeof(Datum) * norderbys);
		scan->xs_orderbynulls = palloc(sizeof(bool) * norderbys);
	}
	return scan;
}

void
ssrescan(IndexScanDesc scan, ScanKey scankey, int nscankeys,
		 ScanKey orderbys, int norderbys)
{
	SsScanOpaque so = (SsScanOpaque) scan->opaque;

	if (scankey && scan->numberOfKeys > 0)
		memmove(scan->keyData, scankey, scan->numberOfKeys * sizeof(ScanKeyData));
	if (orderbys && scan->numberOfOrderBys > 0)
		memmove(scan->orderByData, orderbys, scan->numberOfOrderBys * sizeof(ScanKeyData));
	MemoryContextReset(so->evalcxt);
	MemoryContextReset(so->cxt);
	so->evalcxt = AllocSetContextCreate(so->cxt, "shop_search evaluation",
										ALLOCSET_DEFAULT_SIZES);
	so->computed = false;
	so->exhausted = false;
	so->want = SS_FIRST_BATCH;
	so->res = NULL;
	so->nres = so->pos = 0;
	so->have_last = false;
	memset(&so->frozen, 0, sizeof(so->frozen));
}

static bool
jsonb_equal(Jsonb *a, Jsonb *b)
{
	return VARSIZE(a) == VARSIZE(b) && memcmp(a, b, VARSIZE(a)) == 0;
}

static int
tid_cmp(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) a, (ItemPointer) b);
}

/*
 * Does the query name a language other than the index's?  Its words are
 * then stemmed differently from the index's terms, so the index cannot
 * evaluate it.
 */
static bool
query_foreign(Relation index, Jsonb *query)
{
	const char *lang = SsQueryLanguage(query);

	return lang != NULL && strcmp(lang, SsIndexLanguage(index)) != 0;
}

/*
 * SsCheckQueryLanguage: for the functions that evaluate a query on the
 * index itself (search_scan, facets): 22023 if it names another language.
 */
void
SsCheckQueryLanguage(Relation index, Jsonb *query)
{
	if (query_foreign(index, query))
	{
		const char *language = SsQueryLanguage(query);
		char	   *shown = ShopEchoValue(language, strlen(language), "query");

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query language %s is not the language of index \"%s\"",
						shown, RelationGetRelationName(index)),
				 errdetail("The index stems in %s.", SsIndexLanguage(index)),
				 errhint("Leave \"language\" out of the query, or name the index's.")));
	}
}

/*
 * Evaluate the scan's queries into so->res, best first: the ORDER BY query
 * ranks (or the first match key); every other distinct match key narrows
 * the result.  topk > 0 keeps only that many (ordered scans, in growing
 * batches, resuming after the last row handed out); 0 keeps all.  A NULL
 * query matches nothing.
 */
static void
ss_compute(IndexScanDesc scan, int topk)
{
	SsScanOpaque so = (SsScanOpaque) scan->opaque;
	MemoryContext old;
	Jsonb	   *primary = NULL;
	bool		want_all = false;
	bool		narrowed = false;
	Eval	   *ev;

	MemoryContextReset(so->evalcxt);
	old = MemoryContextSwitchTo(so->evalcxt);
	frozen_cxt = so->cxt;
	so->computed = true;
	so->res = NULL;
	so->nres = 0;
	so->pos = 0;
	so->exhausted = true;
	for (int i = 0; i < scan->numberOfKeys; i++)
		if (scan->keyData[i].sk_flags & SK_ISNULL)
			goto done;
	for (int i = 0; i < scan->numberOfOrderBys; i++)
		if (scan->orderByData[i].sk_flags & SK_ISNULL)
			goto done;
	if (scan->numberOfOrderBys > 0)
		primary = DatumGetJsonbP(scan->orderByData[0].sk_argument);
	else if (scan->numberOfKeys > 0)
		primary = DatumGetJsonbP(scan->keyData[0].sk_argument);
	/* no keys at all (the planner may scan a partial index so): every row */
	want_all = scan->numberOfKeys == 0;
	for (int i = 0; i < scan->numberOfKeys; i++)
		if (!jsonb_equal(DatumGetJsonbP(scan->keyData[i].sk_argument), primary))
			narrowed = true;
	if (narrowed)
		topk = 0;				/* narrowing could empty a bounded batch */
	/*
	 * A query stemmed in another language than the index's cannot be
	 * answered from its terms: hand out every row and let the executor
	 * recheck the operators (as a sequential scan would evaluate them).
	 */
	so->recheck_all = false;
	for (int i = 0; i < scan->numberOfKeys; i++)
		so->recheck_all |= query_foreign(scan->indexRelation, DatumGetJsonbP(scan->keyData[i].sk_argument));
	for (int i = 0; i < scan->numberOfOrderBys; i++)
		so->recheck_all |= query_foreign(scan->indexRelation, DatumGetJsonbP(scan->orderByData[i].sk_argument));
	if (so->recheck_all)
	{
		primary = NULL;
		want_all = true;
		narrowed = false;
	}
	ev = SsEvaluate(scan->indexRelation, primary, want_all, topk,
					so->have_last ? &so->last : NULL, &so->frozen, NULL);
	so->res = ev->res;
	so->nres = ev->nres;
	so->exhausted = topk == 0 || ev->nres < topk;

	for (int i = 0; i < scan->numberOfKeys && narrowed; i++)
	{
		Jsonb	   *kq = DatumGetJsonbP(scan->keyData[i].sk_argument);
		Eval	   *kev;
		ItemPointerData *tids;
		int			j = 0;

		if (jsonb_equal(kq, primary))
			continue;
		kev = SsEvaluate(scan->indexRelation, kq, false, 0, NULL, NULL, NULL);
		tids = palloc(sizeof(ItemPointerData) * Max(kev->nres, 1));
		for (int k = 0; k < kev->nres; k++)
			tids[k] = kev->res[k].tid;
		qsort(tids, kev->nres, sizeof(ItemPointerData), tid_cmp);
		for (int k = 0; k < so->nres; k++)
			if (bsearch(&so->res[k].tid, tids, kev->nres, sizeof(ItemPointerData), tid_cmp))
				so->res[j++] = so->res[k];
		so->nres = j;
	}
done:
	frozen_cxt = NULL;
	MemoryContextSwitchTo(old);
}

/*
 * The largest batch an evaluation of amgettuple keeps: as many results as
 * work_mem holds (at least the first batch).  A scan going deeper than
 * that evaluates again per batch rather than holding more.
 */
static int
batch_cap(void)
{
	Size		n = (Size) work_mem * 1024 / sizeof(SsResult);

	return (int) Max((Size) SS_FIRST_BATCH, Min(n, (Size) (PG_INT32_MAX / 4)));
}

/*
 * ssgettuple: ordered and plain index scans hand out rows from batches
 * (best first, see the file header): SS_FIRST_BATCH, then four times
 * larger, up to batch_cap().
 */
bool
ssgettuple(IndexScanDesc scan, ScanDirection dir)
{
	SsScanOpaque so = (SsScanOpaque) scan->opaque;

	if (!so->computed)
		ss_compute(scan, so->want);
	while (so->pos >= so->nres)
	{
		/* batch used up: evaluate again for a larger one, after the last row */
		if (so->exhausted)
			return false;
		so->want = Min(so->want, batch_cap() / 4) * 4;
		so->want = Max(so->want, SS_FIRST_BATCH);
		ss_compute(scan, so->want);
	}
	scan->xs_heaptid = so->res[so->pos].tid;
	scan->xs_recheck = so->recheck_all;
	if (scan->numberOfOrderBys > 0)
	{
		/* rechecked: -Infinity, a lower bound the executor reorders by */
		scan->xs_recheckorderby = so->recheck_all;
		scan->xs_orderbyvals[0] = Float4GetDatum(so->recheck_all ? -get_float4_infinity() :
												 so->res[so->pos].dist);
		scan->xs_orderbynulls[0] = false;
	}
	so->last = so->res[so->pos];
	so->have_last = true;
	so->pos++;
	return true;
}

/*
 * ssgetbitmap: every match into tbm as the evaluation finds it, so memory
 * is what the bitmap takes (work_mem, lossy pages beyond), not a list of
 * matches.  Several distinct queries in one scan (rare) are evaluated
 * into bitmaps of their own and intersected.  Returns the matches of the
 * first query.
 */
int64
ssgetbitmap(IndexScanDesc scan, TIDBitmap *tbm)
{
	SsScanOpaque so = (SsScanOpaque) scan->opaque;
	MemoryContext old;
	TIDBitmap  *acc = NULL;
	int64		n = 0;

	/* a NULL query matches nothing, nor does a scan without a query */
	for (int i = 0; i < scan->numberOfKeys; i++)
		if (scan->keyData[i].sk_flags & SK_ISNULL)
			return 0;
	if (scan->numberOfKeys == 0)
		return 0;

	MemoryContextReset(so->evalcxt);
	old = MemoryContextSwitchTo(so->evalcxt);
	for (int i = 0; i < scan->numberOfKeys; i++)
		if (query_foreign(scan->indexRelation, DatumGetJsonbP(scan->keyData[i].sk_argument)))
		{
			/* another language: every row, rechecked (see ss_compute) */
			n = SsEvaluate(scan->indexRelation, NULL, true, 0, NULL, NULL, tbm)->ntbm;
			MemoryContextSwitchTo(old);
			MemoryContextReset(so->evalcxt);
			return n;
		}
	for (int i = 0; i < scan->numberOfKeys; i++)
	{
		Jsonb	   *kq = DatumGetJsonbP(scan->keyData[i].sk_argument);
		bool		seen = false;
		bool		only = true;
		TIDBitmap  *t;
		Eval	   *ev;

		for (int j = 0; j < scan->numberOfKeys && (only || !seen); j++)
		{
			bool		same = jsonb_equal(DatumGetJsonbP(scan->keyData[j].sk_argument), kq);

			if (j < i && same)
				seen = true;
			if (!same)
				only = false;
		}
		if (seen)
			continue;			/* the same query again */
		if (only)
		{
			/* one distinct query: straight into the executor's bitmap */
			n = SsEvaluate(scan->indexRelation, kq, false, 0, NULL, NULL, tbm)->ntbm;
			break;
		}
		t = tbm_create((long) work_mem * 1024L, NULL);
		ev = SsEvaluate(scan->indexRelation, kq, false, 0, NULL, NULL, t);
		if (acc == NULL)
		{
			acc = t;
			n = ev->ntbm;
		}
		else
		{
			tbm_intersect(acc, t);
			tbm_free(t);
		}
	}
	if (acc)
	{
		tbm_union(tbm, acc);
		tbm_free(acc);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(so->evalcxt);
	return n;
}

void
ssendscan(IndexScanDesc scan)
{
	SsScanOpaque so = (SsScanOpaque) scan->opaque;

	MemoryContextDelete(so->cxt);
	pfree(so);
}

/*
 * SsScanCacheUsage: this backend's impact lists and sort-key bounds, for
 * shop.search_cache_stats (ssfunc.c): bytes as the caps count them, the
 * memory their contexts hold, the entries and the caps.
 */
void
SsScanCacheUsage(SsCacheUsage *impact, SsCacheUsage *bounds)
{
	impact->bytes = impact_bytes;
	impact->allocated = impact_cxt ? MemoryContextMemAllocated(impact_cxt, true) : 0;
	impact->entries = impact_n;
	impact->max_bytes = SS_IMPACT_BYTES;
	impact->max_entries = SS_IMPACT_ENTRIES;
	bounds->bytes = sort_cache_bytes;
	bounds->allocated = sort_cache_cxt ? MemoryContextMemAllocated(sort_cache_cxt, true) : 0;
	bounds->entries = sort_cache_n;
	bounds->max_bytes = SS_SORT_CACHE_BYTES;
	bounds->max_entries = SS_SORT_CACHE_ENTRIES;
}
