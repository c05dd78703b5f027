/*-------------------------------------------------------------------------
 *
 * ssearch.h
 *	  Page layout and private declarations of the shop_search index access
 *	  method (prefix "ss").
 *
 * Design.  A shop_search index is a small log-structured inverted index,
 * in the manner of Lucene: a list of immutable *segments* plus an
 * append-only *pending list*.
 *
 *   block 0        metapage: magic, format version, the segment list, the
 *                  pending list head/tail, collection statistics
 *                  (document count, summed field lengths, max popularity)
 *                  used by BM25, the free runs and the count of bulk
 *                  deletes (facets, ssfunc.c).
 *   segment        written once, by CREATE INDEX or by VACUUM folding the
 *                  pending list in; its blocks are contiguous:
 *                    header page   SsSegHeader (where the parts start)
 *                    doc pages     fixed-size SsDoc records, docid = slot
 *                                  number; heap TID, stored filter values,
 *                                  field lengths, a dead flag.  Docids
 *                                  follow popularity, most popular first,
 *                                  so a scan meets the largest boosts
 *                                  first and can stop early (ssscan.c)
 *                    dir pages     one SsDictItem per dict page: its
 *                                  first term (a sparse directory)
 *                    dict pages    SsDictItem per term, sorted bytewise:
 *                                  document frequency and where its
 *                                  postings start
 *                    post pages    the postings of every term as one byte
 *                                  stream: varint (docid delta, tf)
 *                                  records in docid order
 *                    skip pages    SsSkip per block of 128 postings:
 *                                  where it starts, its last docid and
 *                                  its score bound (block-max)
 *                    norm pages    SsNorm per document: field lengths
 *                    gram dir      SsGramEntry per trigram of the exact
 *                                  terms, sorted by trigram: how many
 *                                  terms hold it and where their list is
 *                    gram pages    per trigram, the ordinals (positions
 *                                  in the dictionary) of the exact terms
 *                                  holding it, varint delta coded; typo
 *                                  expansion and suggestions take their
 *                                  candidates from it (sstypo.c)
 *                    fcol pages    SsFacetEntry per document (the facet
 *                                  column: TID, dead flag, category and
 *                                  brand as ordinals of the segment's
 *                                  fdict pages, price and rating
 *                                  buckets), 12 bytes; facets read it
 *                                  instead of the doc pages (ssfunc.c)
 *                    fdict pages   the category ids, then the brand
 *                                  hashes, of those ordinals (int64 each)
 *   pending list   linked pages whose items are whole documents
 *                  (SsDoc + its term list); aminsert appends here with
 *                  generic WAL, so a row is searchable as soon as its
 *                  transaction commits.
 *
 * Terms.  Every word of a field is indexed twice: its folded exact form
 * ("laptops") and, prefixed with SS_STEM_MARK, its Snowball stem
 * ("\001laptop"), so an exact match can outrank a stemmed one.  A term's
 * tf packs the per-field frequencies (title 4 bits, brand 4 bits,
 * description 8 bits) so field weights stay reloptions read at query time.
 *
 * WAL.  Segment pages are written through shared buffers and logged with
 * log_newpage_range (build) or log_newpage_buffer (VACUUM); the metapage
 * and pending pages change through generic WAL.  A crash between writing a
 * segment and switching the metapage leaves only unreferenced blocks.
 * Blocks released by folds and merges are listed in the metapage as free
 * runs (SsFreeRange) and reused, once no older snapshot exists, for new
 * pending pages and new segments, after a recovery-conflict record for hot
 * standbys (SsLogReuse).  The locking protocol is described in
 * ssvacuum.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SSEARCH_H
#define SSEARCH_H

#include "postgres.h"

#include "access/amapi.h"
#include "access/genam.h"
#include "access/itup.h"
#include "access/transam.h"
#include "nodes/pathnodes.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

#define SS_MAGIC			0x53485353	/* "SHSS" */
#define SS_VERSION			11	/* 11: the head noun rules of issue 13,
									 * round 14 and rel15 (the head filter
									 * term and the document's head hash
									 * change; 11 not released between);
									 * 10: titles' length normalisation b =
									 * 0.65 (the impact bounds depend on
									 * it; issue 13, round 12);
									 * 9: the facet column (fcol pages, issue
									 * 12);
									 * 8: the tie-breaks of sorted scans in
									 * the document record (a bigint and an
									 * integer INCLUDE column, issue 12);
									 * 7: attribute terms lead with the key's
									 * hash (attribute facets, issue 12), a
									 * head noun filter term;
									 * 6: no skip entry for one-block terms;
									 * 5: sort values, attribute terms (issue
									 * 12); units, model numbers, head nouns
									 * (issue 13) */
#define SS_METAPAGE_BLKNO	0
#define SS_MAX_SEGMENTS		200
#define SS_PENDING_FLUSH	500		/* an insert folds a pending list this long */
#define SS_PENDING_WAIT		2000	/* ... and waits for the lock to, from this long */

#define SS_STEM_MARK		'\001'
/*
 * Filter terms: every document also indexes its category, its brand and
 * its title's head noun as terms that no query word matches (0xFF never
 * occurs in UTF-8) and that score nothing (tf 0): "\377c<category id>",
 * "\377b<brand hash in hex>" and "\377h<head hash in hex>" (format 7).
 * A selective category or brand filter reads their postings into a
 * bitmap first; ranked scans read those of the intent's head nouns and
 * categories to evaluate the documents those boost first (ssscan.c).
 */
#define SS_FILTER_MARK		'\377'
#define SS_FILTER_TERM_MAX	24
/*
 * Attribute filter terms (a jsonb INCLUDE column, ssbuild.c): one per
 * top-level key = scalar value, "\377a<32-bit key hash><48-bit key and
 * value hash>" in hex (SS_ATTR_TERM_LEN bytes), at most
 * SS_MAX_DOC_ATTRS per document; a document with more also holds the
 * term "\377a*", which every attribute filter lets through (the rows are
 * checked exactly, sssort.c).
 */
#define SS_MAX_DOC_ATTRS	64
#define SS_ATTR_TERM_LEN	22
#define SS_MAX_TERM_LEN		48		/* bytes of a folded word; longer are cut */
#define SS_MAX_DOC_TERMS_BYTES	6000	/* term list of one document */

/*
 * Terms as keys of in-memory hash tables (HASH_STRINGS): zero-padded to
 * SS_TERM_KEY_SIZE, so every table of terms (builder, query expansions)
 * hashes and compares a term the same way.
 */
#define SS_TERM_KEY_SIZE	(SS_MAX_TERM_LEN + 8)

static inline void
SsTermKey(char *key, const char *term, int len)
{
	memset(key, 0, SS_TERM_KEY_SIZE);
	memcpy(key, term, Min(len, SS_TERM_KEY_SIZE - 2));
}
#define SS_NFIELDS			3		/* title, brand, description */
#define SS_BM25_K1			1.2
/*
 * BM25 length normalisation per field: brands are short and even; titles
 * 0.65 (issue 13, round 12: 0.75 let three-word accessory titles outrank
 * the products whose Icecat titles list their specifications)
 */
#define SS_FIELD_B(f)		((f) == 0 ? 0.65 : (f) == 1 ? 0.5 : 0.75)

/* strategies */
#define SS_MATCH_STRATEGY	1		/* doc @@@ query -> bool */
#define SS_RANK_STRATEGY	2		/* doc <=> query -> float4 */
#define SS_NSTRATEGIES		2

/* page types, in SsPageOpaque.flags */
#define SS_PAGE_META		0x01
#define SS_PAGE_SEGHDR		0x02
#define SS_PAGE_DOC			0x04
#define SS_PAGE_DIR			0x08
#define SS_PAGE_DICT		0x10
#define SS_PAGE_POST		0x20
#define SS_PAGE_PENDING		0x40
#define SS_PAGE_SKIP		0x80
#define SS_PAGE_NORM		0x100
#define SS_PAGE_GRAMDIR		0x200
#define SS_PAGE_GRAM		0x400
#define SS_PAGE_FCOL		0x800
#define SS_PAGE_FDICT		0x1000

typedef struct SsPageOpaqueData
{
	BlockNumber next;			/* pending list: next page */
	uint16		flags;
	uint16		count;			/* doc pages: records used */
	uint16		unused;
	uint16		page_id;		/* SS_PAGE_ID, for tools */
} SsPageOpaqueData;
typedef SsPageOpaqueData *SsPageOpaque;

#define SS_PAGE_ID			0xFF8A
#define SsPageGetOpaque(page) ((SsPageOpaque) PageGetSpecialPointer(page))

/*
 * SsCheckPage: is page (block blk) a shop_search page of one of the types
 * in the mask?  Every reader checks before it interprets a page, so a
 * page that is not what the metapage or a header says it is (damage, or a
 * bug letting someone read a released block) raises XX001
 * index_corrupted instead of being read as something it is not.
 */
extern void SsPageTypeError(Relation index, Page page, BlockNumber blk, uint16 types) pg_attribute_noreturn();

static inline void
SsCheckPage(Relation index, Page page, BlockNumber blk, uint16 types)
{
	if (PageIsNew(page) ||
		((PageHeader) page)->pd_special != BLCKSZ - MAXALIGN(sizeof(SsPageOpaqueData)) ||
		SsPageGetOpaque(page)->page_id != SS_PAGE_ID ||
		(SsPageGetOpaque(page)->flags & types) == 0)
		SsPageTypeError(index, page, blk, types);
}
#define SsPageContents(page) ((char *) (page) + MAXALIGN(SizeOfPageHeaderData))
#define SS_PAGE_CAPACITY \
	(BLCKSZ - MAXALIGN(SizeOfPageHeaderData) - MAXALIGN(sizeof(SsPageOpaqueData)))

/* per-document flags */
#define SS_DOC_DEAD			0x01
#define SS_DOC_INSTOCK		0x02
#define SS_DOC_HAS_STOCK	0x04	/* in_stock not null */
#define SS_DOC_HAS_CAT		0x08
#define SS_DOC_HAS_PRICE	0x10
#define SS_DOC_HAS_RATING	0x20
#define SS_DOC_HAS_BRAND	0x40
#define SS_DOC_HAS_CREATED	0x80	/* created_at set (a timestamptz INCLUDE column) */
#define SS_DOC_POP_NAN		0x100	/* popularity was NaN (stored as 0) */
#define SS_DOC_HAS_TIE		0x200	/* tie_id set (a bigint INCLUDE column) */
#define SS_DOC_HAS_COUNT	0x400	/* count set (an integer INCLUDE column) */

/*
 * One document: heap TID, stored values for filters, boosts and sorted
 * scans (sssort.c), lengths.  created_at comes from the index's first
 * timestamptz INCLUDE column, if it has one (microseconds since 2000, as
 * TimestampTz); tie_id from its first bigint INCLUDE column (the last
 * tie-break of every sort, ascending: product_id) and count from its
 * first integer one (the rating sort's second key, descending:
 * rating_count), format 8.
 */
typedef struct SsDoc
{
	int64		category_id;
	int64		price_cents;
	int64		created_at;
	uint32		brand_hash;
	float4		rating;
	float4		popularity;
	uint16		len[SS_NFIELDS];	/* words per field, saturating */
	ItemPointerData tid;
	uint16		flags;
	uint16		head;			/* the title's head noun, SsHeadHash; 0: none */
	float4		logpop;			/* log1p(popularity), for the boost */
	int32		count;			/* see above */
	int64		tie_id;			/* see above */
} SsDoc;

#define SS_DOCS_PER_PAGE	((int) (SS_PAGE_CAPACITY / sizeof(SsDoc)))

typedef struct SsSegmentRef
{
	BlockNumber header;			/* header page of the segment */
	uint32		ndocs;
} SsSegmentRef;

/*
 * A run of blocks no longer used (a folded pending page, a merged
 * segment), reusable once no snapshot older than "freed" exists: scans
 * that read the metapage before the blocks were released run with such a
 * snapshot, so nobody can still be reading them then.
 */
typedef struct SsFreeRange
{
	BlockNumber start;
	uint32		nblocks;
	FullTransactionId freed;
} SsFreeRange;

#define SS_MAX_FREE_RANGES	250

typedef struct SsMetaPageData
{
	uint32		magic;
	uint32		version;
	char		language[32];	/* stemmer language at build */
	uint32		nsegments;
	BlockNumber pending_head;
	BlockNumber pending_tail;
	uint32		npending;		/* documents in the pending list */
	uint64		ndocs;			/* documents ever indexed minus vacuumed */
	double		sumlen[SS_NFIELDS];	/* summed field lengths of those */
	float4		max_popularity;
	SsSegmentRef segments[SS_MAX_SEGMENTS];
	uint32		nfree;
	SsFreeRange free[SS_MAX_FREE_RANGES];	/* sorted by start, see sspage.c */
	uint32		lost_blocks;	/* released blocks dropped from a full free
								 * list (zero in indexes of older builds:
								 * PageInit zeroes the page) */
	uint64		generation;		/* changes of the segment list so far: every
								 * fold or merge adds one and stamps its new
								 * segment with it (SsSegHeader.serial); zero
								 * in indexes of older builds, as above */
	FullTransactionId lost_freed;	/* the latest release point of the blocks
									 * counted in lost_blocks (truncation
									 * waits for it; zero: none, or an older
									 * build) */
	uint64		bulkdeletes;	/* bulk deletes so far that flagged a
								 * document dead, counted as each ends:
								 * facets compare it around their
								 * visibility map reads (ssfunc.c); zero in
								 * indexes of older builds, as above */
} SsMetaPageData;
typedef SsMetaPageData *SsMetaPage;

#define SsPageGetMeta(page) ((SsMetaPage) PageGetContents(page))

typedef struct SsSegHeader
{
	uint32		ndocs;
	uint32		nterms;
	BlockNumber docstart;
	uint32		ndocpages;
	BlockNumber dirstart;
	uint32		ndirpages;
	BlockNumber dictstart;
	uint32		ndictpages;
	BlockNumber poststart;
	uint32		npostpages;
	BlockNumber skipstart;
	uint32		nskippages;
	uint32		nskips;
	BlockNumber normstart;
	uint32		nnormpages;
	float4		refw[SS_NFIELDS];	/* field weights the bounds assume */
	float4		refavg[SS_NFIELDS];	/* average field lengths they assume */
	/* trigram map (all zero in segments of older builds: no map) */
	BlockNumber gramdirstart;
	uint32		ngramdirpages;
	uint32		ngrams;			/* SsGramEntry records */
	BlockNumber gramstart;
	uint32		ngrampages;
	uint32		firstexact;		/* ordinal of the first exact term */
	/*
	 * The metapage generation that published the segment (a build's
	 * first generation for CREATE INDEX's segments; 0 in an older build).
	 * (header block, serial) names a segment for good: a block released
	 * and reused later heads a segment of a higher serial, and a build
	 * starts past every generation the relation file had before (a
	 * TRUNCATE in place builds it again: ssbuild.c, build_generation).
	 */
	uint64		serial;
	/*
	 * The facet column (format 9): nfcolpages pages of SsFacetEntry by
	 * docid from fcolstart, then nfdictpages pages of int64: the
	 * fcolncats category ids, then the fcolnbrands brand hashes, that the
	 * entries' ordinals name.  nfcolpages 0 (a segment with more than
	 * SS_FCOL_MAX_ORD categories or brands): no column, facets read the
	 * document records.
	 */
	BlockNumber fcolstart;
	uint32		nfcolpages;
	uint32		nfdictpages;
	uint32		fcolncats;
	uint32		fcolnbrands;
} SsSegHeader;

/*
 * One document of the facet column.  flags are SS_FC_*: the dead flag is
 * set by bulk delete together with the document record's (one WAL
 * record, ssvacuum.c), the rest never changes.  pr: price bucket + 1 (0:
 * none) | rating bucket (1-4, 0: below 1 or none) << 4, the buckets of
 * shop.search_facets (SsFacetPr).
 */
typedef struct SsFacetEntry
{
	ItemPointerData tid;
	uint8		flags;
	uint8		pr;
	uint16		cat;			/* ordinal of the category (SS_FC_CAT) */
	uint16		brand;			/* ordinal of the brand (SS_FC_BRAND) */
} SsFacetEntry;

#define SS_FC_DEAD			0x01
#define SS_FC_CAT			0x02
#define SS_FC_BRAND			0x04
#define SS_FC_HAS_STOCK		0x08	/* in_stock set ... */
#define SS_FC_INSTOCK		0x10	/* ... and true */
#define SS_FC_PRICE			0x20	/* has a price */
#define SS_FC_RATING		0x40	/* has a rating */

#define SS_FCOL_PER_PAGE	((int) (SS_PAGE_CAPACITY / sizeof(SsFacetEntry)))
#define SS_FDICT_PER_PAGE	((int) (SS_PAGE_CAPACITY / sizeof(int64)))
#define SS_FCOL_MAX_ORD		65535

/* dictionary and directory entry (line pointer item) */
typedef struct SsDictItem
{
	uint32		df;				/* dict: documents; dir: dict block */
	BlockNumber postblk;
	uint32		skip;			/* dict: index of the term's first SsSkip;
								 * dir: ordinal of the dict page's first
								 * term (segments with a trigram map) */
	uint16		postoff;		/* byte offset in the post page contents */
	uint8		len;
	char		term[FLEXIBLE_ARRAY_MEMBER];
} SsDictItem;
#define SS_DICT_ITEM_SIZE(len) (offsetof(SsDictItem, term) + (len))

/*
 * Postings are (docid delta, tf) pairs, each a varint (7 bits a byte, low
 * bits first); a term's first delta is its first docid.  A record never
 * straddles pages: when less than SS_POSTING_MAX bytes are left on a page,
 * the next record starts on the next page (writer and reader apply the
 * same rule).
 */
#define SS_POSTING_MAX 8		/* 5-byte delta + 3-byte tf */

static inline int
SsVarintPut(char *p, uint32 v)
{
	int			n = 0;

	while (v >= 0x80)
	{
		p[n++] = (char) ((v & 0x7F) | 0x80);
		v >>= 7;
	}
	p[n++] = (char) v;
	return n;
}

static inline int
SsVarintGet(const char *p, uint32 *v)
{
	const uint8 *b = (const uint8 *) p;
	uint32		r;

	/* unrolled: postings are mostly 1- and 2-byte varints */
	if (b[0] < 0x80)
	{
		*v = b[0];
		return 1;
	}
	r = b[0] & 0x7F;
	if (b[1] < 0x80)
	{
		*v = r | ((uint32) b[1] << 7);
		return 2;
	}
	r |= (uint32) (b[1] & 0x7F) << 7;
	if (b[2] < 0x80)
	{
		*v = r | ((uint32) b[2] << 14);
		return 3;
	}
	r |= (uint32) (b[2] & 0x7F) << 14;
	if (b[3] < 0x80)
	{
		*v = r | ((uint32) b[3] << 21);
		return 4;
	}
	r |= (uint32) (b[3] & 0x7F) << 21;
	*v = r | ((uint32) (b[4] & 0x7F) << 28);
	return 5;
}

static inline int
SsVarintLen(uint32 v)
{
	return v < (1U << 7) ? 1 : v < (1U << 14) ? 2 : v < (1U << 21) ? 3 : v < (1U << 28) ? 4 : 5;
}

/*
 * Block-max skip entries.  A term's postings are cut into blocks of
 * SS_BLOCK_POSTINGS; one SsSkip per block tells where the block starts in
 * the posting stream (its first delta is from the previous block's
 * lastdoc, as in the stream itself), the docid of its last posting, and
 * the largest weighted, length-normalised frequency (BM25F's tf') of its
 * postings, computed with the field weights and average lengths the
 * segment was written with (SsSegHeader.refw / refavg).  A scan with
 * other weights or averages scales the bound up (ssscan.c), so it stays
 * an upper bound.  A segment's skip entries are fixed size, in term
 * order, on skip pages after its postings.
 */
#define SS_BLOCK_POSTINGS	128

typedef struct SsSkip
{
	uint32		lastdoc;
	BlockNumber postblk;
	uint16		postoff;
	uint16		pad;
	float4		maxt;
} SsSkip;

#define SS_SKIPS_PER_PAGE	((int) (SS_PAGE_CAPACITY / sizeof(SsSkip)))

/*
 * A term of one block (df <= SS_BLOCK_POSTINGS: most terms of a catalog,
 * model numbers above all) has no skip entry (format 6): its dictionary
 * item's skip field holds the bits of the block's maxt, the block starts
 * where the item says, and its last docid is read from the block itself
 * (SsTermSkips).  A skip entry would cost 16 bytes for what the item and
 * the postings already tell.
 */
static inline uint32
SsOneBlockBoundBits(float4 maxt)
{
	union
	{
		float4		f;
		uint32		u;
	}			v;

	v.f = maxt;
	return v.u;
}

static inline float4
SsOneBlockBound(uint32 bits)
{
	union
	{
		float4		f;
		uint32		u;
	}			v;

	v.u = bits;
	return v.f;
}

/*
 * Norms: the field lengths of every document again, 6 bytes each on norm
 * pages, so scoring a posting reads a small dense array instead of the
 * 48-byte document record (which only a document that may enter the
 * result is read for).
 */
typedef struct SsNorm
{
	uint16		len[SS_NFIELDS];
} SsNorm;

#define SS_NORMS_PER_PAGE	((int) (SS_PAGE_CAPACITY / sizeof(SsNorm)))

/*
 * Trigram map.  The trigrams of an exact term are those of its bytes
 * padded with two spaces in front and one behind, as pg_trgm pads a word
 * ("cable" -> "  c", " ca", "cab", "abl", "ble", "le "), each counted
 * once; a trigram is packed as (b0 << 16) | (b1 << 8) | b2.  Folded
 * terms hold no spaces, so padding never collides with a term's bytes.
 * One SsGramEntry per distinct trigram, sorted by key, fixed size on the
 * gram dir pages; its list of term ordinals (increasing, first one as
 * is, then deltas, each a varint) starts at (blk, off) of the gram pages
 * and, like postings, a varint never straddles pages: with fewer than 5
 * bytes left on a page the next one starts on the next page.
 */
#define SS_GRAM_PAD			' '
#define SS_GRAM_VARINT_MAX	5

typedef struct SsGramEntry
{
	uint32		key;
	uint32		n;				/* terms holding the trigram */
	BlockNumber blk;			/* where its ordinal list starts */
	uint16		off;
	uint16		pad;
} SsGramEntry;

#define SS_GRAMS_PER_PAGE	((int) (SS_PAGE_CAPACITY / sizeof(SsGramEntry)))
#define SS_MAX_TERM_GRAMS	(SS_MAX_TERM_LEN + 8 + 1)

/* tf packing */
#define SS_TF_PACK(t, b, d) ((uint16) ((Min(t, 15) << 12) | (Min(b, 15) << 8) | Min(d, 255)))
#define SS_TF_TITLE(tf) (((tf) >> 12) & 0xF)
#define SS_TF_BRAND(tf) (((tf) >> 8) & 0xF)
#define SS_TF_DESC(tf) ((tf) & 0xFF)

/* reloptions */
typedef struct SsOptions
{
	int32		vl_len_;
	int			language_offset;
	double		weight_title;
	double		weight_brand;
	double		weight_description;
} SsOptions;

/* a term of one document while building or inserting */
typedef struct SsDocTerm
{
	char	   *term;			/* NUL-terminated, stems start with mark */
	int			len;
	uint16		tf;
} SsDocTerm;

/* a tokenized document */
typedef struct SsDocData
{
	SsDoc		doc;
	int			nterms;
	SsDocTerm  *terms;
} SsDocData;

/* pending item header; SsPendTerm records follow */
typedef struct SsPendItem
{
	SsDoc		doc;
	uint16		nterms;
	uint16		datalen;		/* bytes of term records that follow */
} SsPendItem;
/* term record: uint8 len, uint16 tf (unaligned), len bytes */

/* ----------------------------------------------------------------
 * The query, parsed from jsonb (ssquery.c)
 * ----------------------------------------------------------------
 */
typedef struct SsQWord
{
	char	   *exact;			/* folded word */
	char	   *stem;			/* with SS_STEM_MARK */
	int			len;			/* characters of exact */
	int			maxtypos;
	bool		first_fixed;	/* two typos of a 7-8 character word ("two_typos"):
								 * only with the first letter right */
	bool		prefix;			/* last word: also matches as a prefix */
	int			slot;
	int			alt;
	float4		weight;			/* 1, or the expansion weight of a word of a
								 * learned expansion ("expansions"): its idf
								 * is scaled by it (issue 13, rel13) */
} SsQWord;

typedef struct SsQAlt
{
	int			first;			/* index of first SsQWord */
	int			nwords;
} SsQAlt;

typedef struct SsQSlot
{
	int			nalts;
	SsQAlt	   *alts;
	bool		optional;		/* stop word in a query of other words */
} SsQSlot;

/* one row or category of the behaviour prior and its weight (0..1) */
typedef struct SsPriorRow
{
	ItemPointerData tid;
	float4		w;
} SsPriorRow;

typedef struct SsPriorCat
{
	int64		category_id;
	float4		w;
} SsPriorCat;

typedef struct SsQuery
{
	int			nslots;
	SsQSlot    *slots;
	int			nwords;
	SsQWord    *words;
	int			nrequired;		/* non-optional slots */
	/* filters */
	int			ncats;
	int64	   *cats;			/* sorted */
	int			nbrands;
	uint32	   *brands;			/* sorted hashes */
	bool		has_price_min, has_price_max, has_rating_min, has_in_stock;
	int64		price_min, price_max;
	float4		rating_min;
	bool		in_stock;
	/* personalization */
	int			nboost_cats;
	int64	   *boost_cats;
	int			nboost_brands;
	uint32	   *boost_brands;
	/* intent (issue 13): the product type asked for, categories meant */
	int			ntypes;
	uint16	   *types;			/* SsHeadHash of the type words, sorted */
	/*
	 * "type_compound": words of the query that make a compound type with
	 * the type word ("mouse" of `gaming mouse pad`): a row of the type
	 * missing one of them gets no type boost, when the index holds
	 * SS_COMPOUND_MIN_HEADS or more products whose head noun it is
	 * (issue 13, round 10)
	 */
	int			ncompound;
	int		   *compound_slot;	/* the slot holding each word */
	uint16	   *compound_head;	/* SsHeadHash of each word's stem */
	/*
	 * "type_narrow": words of the query that narrow the type asked for to
	 * a kind of it ("micro" of `micro sd card`): a row of the type missing
	 * one of them is of the broader type (an SD card) and gets no type
	 * boost, with no count of head nouns (issue 13, rel15)
	 */
	int			nnarrow;
	int		   *narrow_slot;	/* the slot holding each word */
	/*
	 * the slot of the query word that names the type asked for (its stem's
	 * head hash is one of types), -1 for none: a row of the type that
	 * misses only that word still has the type by its head noun ("Lenovo
	 * Tab M8 ... Android" for `android tablet`; issue 13, round 12)
	 */
	int			type_slot;
	int			nintent_cats;
	int64	   *intent_cats;	/* sorted */
	/* the behaviour prior (issue 13): rows and categories, weights 0..1 */
	int			nprior;
	SsPriorRow *prior;			/* sorted by tid */
	float4		prior_max;		/* the largest row weight */
	int			nprior_cats;
	SsPriorCat *prior_cats;		/* sorted by category */
	float4		prior_cat_max;	/* the largest category weight */
	/*
	 * collection statistics given by the caller ("global", a cluster's
	 * sums, issue 16): used in place of the index's own; df per word
	 */
	bool		has_global;
	double		global_docs;
	double		global_sumlen[SS_NFIELDS];
	float4		global_max_popularity;
	double	   *global_df;		/* nwords of them */
	bool		typos;			/* typo tolerance on (default) */
	bool		prefix;			/* last word as prefix (default) */
	bool		match_any;		/* "match": "any": rows need one slot, not all */
	char		language[32];	/* stemming language of the words */
	bool		language_given; /* ... named by the query ("language") */
} SsQuery;

/* the boost's parts (SsBoost, ssquery.c) */
#define SS_BOOST_POPULARITY	0.15f
#define SS_BOOST_RATING		0.05f
#define SS_BOOST_CATEGORY	0.15f
#define SS_BOOST_BRAND		0.15f
/* intent: a product of the type asked for, of a category meant (factors) */
#define SS_BOOST_TYPE		3.0f
/*
 * ... of a row missing one of the query's words (match any): its type says
 * less of what the query asks for ("Xerox Stand" for `ipad stand`, issue
 * 13, round 8); at most SS_BOOST_TYPE (the bounds use that)
 */
#define SS_BOOST_TYPE_PARTIAL	1.25f
/*
 * a word of "type_compound" counts as a type of its own (its absence takes
 * the type boost away) when at least this many products have it as their
 * head noun: "mouse" (99 of the Chorus catalog), "phone" (10), not "sd",
 * "micro", "bluetooth" (0 or 1), which only qualify the type
 */
#define SS_COMPOUND_MIN_HEADS	5
#define SS_BOOST_INTENT_CAT	3.0f
/*
 * the behaviour prior: a row the query's shoppers chose scores up to
 * 1 + SS_BOOST_PRIOR times more, a row of a category they chose up to
 * 1 + SS_BOOST_PRIOR_CAT times more (factors, times the prior's weight)
 */
#define SS_BOOST_PRIOR		1.0f
#define SS_BOOST_PRIOR_CAT	0.5f
/*
 * the default weight of a learned expansion's words ("expansions", issue
 * 13, rel13): their idf is scaled by it, so a row matching the expansion
 * scores that much of what it would if the pair were synonyms;
 * "expansion_weight" sets it
 */
#define SS_EXPANSION_WEIGHT	0.6f
/* the largest boost of any query: 1 and every part (ssscan.c's pruning) */
#define SS_BOOST_MAX		((1.0 + SS_BOOST_POPULARITY + SS_BOOST_RATING + \
							  SS_BOOST_CATEGORY + SS_BOOST_BRAND) * \
							 SS_BOOST_TYPE * SS_BOOST_INTENT_CAT * \
							 (1.0 + SS_BOOST_PRIOR) * (1.0 + SS_BOOST_PRIOR_CAT))

/* distance tiers: missing words (match any), then typos, then score */
#define SS_MISSING_TIER		100000.0
#define SS_TYPO_TIER		10000.0
#define SS_MAX_SCORE		4999.0

/* a match of an index term against a query word */
typedef struct SsTermMatch
{
	int			qword;
	int			typos;
	float4		factor;
} SsTermMatch;

/* ----------------------------------------------------------------
 * Prototypes, by file
 * ----------------------------------------------------------------
 */

/* sshandler.c */
#define SS_TEST_PAUSE_KEY	INT64CONST(1397968979)	/* "SSPS" */
extern void SsTestPause(const char *point);
extern bytea *ssoptions(Datum reloptions, bool validate);
extern const char *SsGetLanguage(Relation index);
extern const char *SsIndexLanguage(Relation index);
extern void SsGetWeights(Relation index, double *w);

/* sstoken.c */
typedef void (*SsTokenCallback) (void *arg, const char *word, int len, int field);
extern int	SsFoldWord(const char *in, int inlen, char *out, int outsize);
extern void SsTokenize(const char *text, int len, int field, SsTokenCallback cb, void *arg);
typedef enum SsTokKind
{
	SS_TOK_WORD,				/* a word of the text (canonical) */
	SS_TOK_EXTRA,				/* documents: a term added beside the words */
	SS_TOK_JOIN,				/* queries: the previous two words joined */
	SS_TOK_JOIN3				/* queries: the previous three words joined */
} SsTokKind;
typedef void (*SsTermCallback) (void *arg, const char *word, int len, int field, SsTokKind kind);
extern void SsAnalyze(const char *text, int len, int field, bool document, SsTermCallback cb, void *arg);
extern int	SsStem(const char *language, const char *word, int len, char *out, int outsize);
extern uint32 SsBrandHash(const char *brand, int len);
extern bool SsIsStopWord(const char *word);
extern void SsDocFromDatum(Datum docdatum, const char *language, SsDocData *out);
extern int	SsCategoryTerm(int64 category_id, char *out);
extern int	SsBrandTerm(uint32 brand_hash, char *out);
extern int	SsHeadTerm(uint16 head, char *out);
extern int	SsTitleHead(const char *language, const char *title, int len, char *out, int outsize);
extern uint16 SsHeadHash(const char *stem, int len);

/* sstypo.c */
extern int	SsDamerauLevenshtein(const char *a, int alen, const char *b, int blen, int max);
extern int	SsMaxTypos(int nchars);
extern bool SsTwoTyposLength(int nchars);
extern bool SsMatchTerm(const SsQWord *w, const char *term, int termlen, bool typos_on,
						int *typos, float4 *factor);
extern int	SsTermGrams(const char *term, int len, uint32 *out);
typedef void (*SsDictCallback) (void *arg, const SsDictItem *item);
extern bool SsTypoCandidates(Relation index, const SsSegHeader *hdr, const SsQWord *w,
							 SsDictCallback cb, void *arg);

/* ssquery.c */
extern SsQuery *SsParseQuery(Jsonb *jb, const char *language);
/* ssquery.c: a jsonb number that a bigint can hold (whole: and has no fraction) */
extern bool SsNumericFitsInt8(Numeric n, bool whole);
extern const char *SsQueryLanguage(Jsonb *jb);
extern bool SsDocPassesFilters(const SsQuery *q, const SsDoc *doc);
extern float4 SsBoost(const SsQuery *q, const SsDoc *doc, float4 inv_log_maxpop, int missing,
					  bool compound_missing, bool type_word_missing);
extern float4 SsMaxBoost(const SsQuery *q);
extern float4 SsBoostBound(const SsQuery *q, float4 logpop, float4 inv_log_maxpop);
extern float4 SsBoostBoundUnmarked(const SsQuery *q, float4 logpop, float4 inv_log_maxpop);
extern bool SsQueryHasMarkedBoost(const SsQuery *q);

/* sspage.c */
extern void SsInitPage(Page page, uint16 flags);
extern Buffer SsReadPage(Relation index, BlockNumber blk, int lockmode, uint16 types,
						 BufferAccessStrategy strategy);
extern void SsFreeAdd(SsMetaPage meta, BlockNumber start, uint32 nblocks, FullTransactionId freed);
extern void SsFreeCoalesce(SsMetaPage meta, bool force);
extern int	SsFreeFind(const SsMetaPage meta, uint32 nblocks);
extern BlockNumber SsFreeTake(SsMetaPage meta, int i, uint32 nblocks);
extern bool SsFreeReusable(const SsMetaPage meta, int i);
extern uint32 SsFreeTruncate(SsMetaPage meta, BlockNumber newend, FullTransactionId *horizon);
extern void SsLogReuse(Relation index, BlockNumber blk, FullTransactionId freed);
extern uint32 SsSegmentBlocks(const SsSegHeader *hdr);
/* sswrite.c: sorts and deduplicates an int64 array, returns the count */
extern uint32 SsInt64Unique(int64 *v, uint32 n);

/* sspage.c: a document's facet column entry */
#define SS_FACET_NPRICE 8
extern const int64 SsFacetPriceLo[SS_FACET_NPRICE];
extern uint8 SsFacetFlags(const SsDoc *doc);
extern uint8 SsFacetPr(const SsDoc *doc);
extern Buffer SsNewBuffer(Relation index);
extern void SsReadMeta(Relation index, SsMetaPageData *meta);
extern void SsReadSegHeader(Relation index, BlockNumber blk, SsSegHeader *hdr);
extern void SsReadDoc(Relation index, const SsSegHeader *hdr, uint32 docid, SsDoc *doc);
extern bool SsDictLookup(Relation index, const SsSegHeader *hdr, const char *term, int len,
						 SsDictItem *out);
extern void SsReadSkips(Relation index, const SsSegHeader *hdr, uint32 first, uint32 n,
						SsSkip *out);
extern void SsTermSkips(Relation index, const SsSegHeader *hdr, uint32 df,
						BlockNumber postblk, uint16 postoff, uint32 skip, SsSkip *out);
extern void SsDictScanRange(Relation index, const SsSegHeader *hdr, const char *from, int fromlen,
							SsDictCallback cb, void *arg, bool (*stop) (void *arg, const SsDictItem *item));
typedef void (*SsPostingCallback) (void *arg, uint32 docid, uint16 tf);
extern void SsReadPostings(Relation index, BlockNumber blk, uint16 off, uint32 n,
						   SsPostingCallback cb, void *arg);
extern uint64 SsCountPostings(Relation index, BlockNumber blk, uint16 off, uint32 n,
							  const uint8 *bits, const int32 *map, uint32 nmap, int32 *first);
extern Size SsPendItemSize(const SsDocData *d);
extern void SsPendItemForm(const SsDocData *d, char *out);
extern void SsPendItemTerms(const SsPendItem *it, void (*cb) (void *arg, const char *term, int len, uint16 tf), void *arg);

/* ssbuild.c */
extern IndexBuildResult *ssbuild(Relation heap, Relation index, struct IndexInfo *indexInfo);
extern void ssbuildempty(Relation index);
extern void SsDocIncludes(Relation index, Datum *values, bool *isnull, SsDocData *d);
extern void SsCheckIncludes(Relation index);
extern int	SsIncludeColumn(Relation index, Oid typid);
extern int	SsAttrTerm(const char *key, int keylen, const JsonbValue *v, char *out);
extern uint32 SsAttrKeyHash(const char *key, int keylen);
extern int	SsAttrOverflowTerm(char *out);
extern bool SsForEachAttr(Jsonb *jb, void (*cb) (void *arg, const char *term, int len), void *arg);
extern bool ssinsert(Relation index, Datum *values, bool *isnull, ItemPointer ht_ctid,
					 Relation heapRel, IndexUniqueCheck checkUnique, bool indexUnchanged,
					 struct IndexInfo *indexInfo);

/* sswrite.c */
typedef struct SsSegBuilder SsSegBuilder;
extern SsSegBuilder *SsSegBuilderCreate(MemoryContext parent);
extern void SsSegBuilderAdd(SsSegBuilder *sb, const SsDocData *d);
extern uint32 SsSegBuilderAddDoc(SsSegBuilder *sb, const SsDoc *doc);
extern void SsSegBuilderAddPosting(SsSegBuilder *sb, const char *term, int len, uint32 docid, uint16 tf);
extern uint32 SsSegBuilderNDocs(SsSegBuilder *sb);
extern Size SsSegBuilderMemory(SsSegBuilder *sb);
typedef BlockNumber (*SsAllocRun) (void *arg, uint32 nblocks);
extern BlockNumber SsSegBuilderWrite(SsSegBuilder *sb, Relation index, bool log_each,
									 SsAllocRun alloc, void *alloc_arg, uint64 serial);
extern void SsSegBuilderFree(SsSegBuilder *sb);

/* ssscan.c */
extern IndexScanDesc ssbeginscan(Relation r, int nkeys, int norderbys);
extern void ssrescan(IndexScanDesc scan, ScanKey scankey, int nscankeys,
					 ScanKey orderbys, int norderbys);
extern bool ssgettuple(IndexScanDesc scan, ScanDirection dir);
extern int64 ssgetbitmap(IndexScanDesc scan, TIDBitmap *tbm);
extern void ssendscan(IndexScanDesc scan);
extern SsDoc *SsCollectMatches(Relation index, Jsonb *query, int *ndocs, uint64 *bulkdeletes);
typedef struct SsMatchSet
{
	SsDoc	   *docs;			/* the matches' document records */
	int			ndocs;
	uint64		bulkdeletes;	/* as SsCollectMatches's */
	int32	   *locseg;			/* per match: its segment, -1: pending */
	uint32	   *locdoc;			/* ... its docid there, or pending item */
	int			nsegs;
	SsSegHeader *segs;
	int			npend;
	SsPendItem **pend;
} SsMatchSet;
extern void SsCollectMatchSet(Relation index, Jsonb *query, SsMatchSet *ms);
/* SsCollectMatchIds: a segment's matches as docids (facets, ssfunc.c) */
typedef bool (*SsSegVisitor) (void *arg, int seg, BlockNumber header, const SsSegHeader *hdr,
							  uint64 bulkdeletes, const SsQuery *q);
/*
 * n of a segment's docids at once, in increasing order, at most
 * SS_IDS_BATCH (a call per match cost about 17 instructions of the
 * visitor's 81 a match: bench/results/2026-12-07-fcol3.md)
 */
typedef void (*SsIdVisitor) (void *arg, const uint32 *docids, uint32 n);
#define SS_IDS_BATCH	256
/*
 * the n an SsIdVisitor gets (docids NULL) after each run of a segment's
 * docids (the scan takes no buffer lock during a run): the visitor lets go
 * of any page lock it holds, as the scan may take others next
 */
#define SS_IDS_PAUSE	0
extern void SsCollectMatchIds(Relation index, Jsonb *query, bool locs, SsSegVisitor seg,
							  SsIdVisitor id, void *arg, SsMatchSet *ms);
/* one (expansion term, query word) pair of a query in an index (SsTermStats) */
typedef struct SsTermStat
{
	char	   *term;
	int			qword;
	int			typos;
	uint32		df;
} SsTermStat;
extern int	SsTermStats(Relation index, Jsonb *query, SsMetaPageData *meta, SsTermStat **out);
typedef void (*SsDocVisitor) (void *arg, const SsDoc *doc);
extern uint64 SsVisitMatches(Relation index, Jsonb *query, SsDocVisitor visit, void *arg);

/*
 * Block bounds of a sorted scan (sssort.c): a segment's docids are cut
 * into blocks of SS_SORT_BLOCK, and the smallest sort key of each block
 * (over all its documents, dead ones too; with a category or brand
 * filter, over the documents passing it) is worked out once per backend,
 * segment, sort kind and filter (segments are immutable; (relation file,
 * header block, serial) names one for good).  While the visitor holds k keys, a block
 * whose smallest key is above the k-th (*bound) cannot hold a row of the
 * first k or a tie of the k-th: its postings are dropped unread and a
 * window of only such blocks is skipped.  key(kind, doc) must be the
 * visitor's own key; blocks_skipped says whether any match may have been
 * left out.
 */
#define SS_SORT_BLOCK		32
#define SS_SORT_NKINDS		5
typedef double (*SsSortKeyFn) (int kind, const SsDoc *doc);
typedef struct SsSortPrune
{
	int			kind;			/* 0 .. SS_SORT_NKINDS - 1 */
	int64		k;				/* how many keys the visitor keeps */
	SsSortKeyFn key;
	const bool *have_bound;		/* the visitor holds k keys ... */
	const double *bound;		/* ... the k-th smallest is this */
	bool		word_bounds;	/* bounds of a common word's own documents too */
	int64		blocks_skipped; /* out */
	int64		windows_skipped;	/* out */
} SsSortPrune;
extern void SsVisitMatchesSorted(Relation index, Jsonb *query, SsDocVisitor visit, void *arg,
								 SsSortPrune *prune);

/*
 * What the backend's last search read (shop.search_last_scan): reset when
 * a page's scan starts (SsLastScanReset: shop._search_rows, shop.search's
 * page, shop._search_sorted), added to by the scan code as it goes.  A
 * diagnostic, and what tests measure reads by: unlike the buffer counts of
 * pg_stat, it does not depend on which pages stayed pinned or cached.
 */
typedef struct SsLastScan
{
	int64		evaluations;	/* index evaluations (a sorted scan may start over) */
	int64		segments;		/* segments evaluated */
	int64		windows;		/* windows of SS_WINDOW docids evaluated */
	int64		blocks;			/* posting blocks decoded */
	int64		postings;		/* postings decoded */
	int64		matches;		/* matches handed to the sorted scan's visitor */
	int64		pending;		/* pending-list documents evaluated */
	int64		heap_rows;		/* table rows fetched (every version tried) */
	int64		blocks_skipped; /* sort blocks ruled out by their bounds */
	int64		windows_skipped;	/* windows with every block ruled out */
	int64		bound_docs;		/* document records read to make sort bounds */
	int64		bound_postings; /* postings read to make a word's sort bounds */
	int64		rows_counted;	/* rows before a deep page counted, not read */
} SsLastScan;
extern SsLastScan ss_last_scan;
extern void SsLastScanReset(void);
extern void SsSetAttrFilter(Jsonb *attrs);

/* a backend cache's size, for shop.search_cache_stats */
typedef struct SsCacheUsage
{
	int64		bytes;			/* as its cap counts them */
	int64		allocated;		/* the memory its context holds */
	int64		entries;
	int64		max_bytes;		/* -1: no cap in bytes */
	int64		max_entries;	/* -1: no cap in entries */
} SsCacheUsage;
extern void SsScanCacheUsage(SsCacheUsage *impact, SsCacheUsage *bounds);
extern void SsCheckQueryLanguage(Relation index, Jsonb *query);

/* ssvacuum.c */
extern IndexBulkDeleteResult *ssbulkdelete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
										   IndexBulkDeleteCallback callback, void *callback_state);
extern IndexBulkDeleteResult *ssvacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats);
extern void SsFlushPending(Relation index, bool from_insert, bool wait);

/* sscost.c */
extern void sscostestimate(PlannerInfo *root, IndexPath *path, double loop_count,
						   Cost *indexStartupCost, Cost *indexTotalCost,
						   Selectivity *indexSelectivity, double *indexCorrelation,
						   double *indexPages);

/* ssfunc.c */
extern Relation SsOpenIndex(Oid indexoid, Relation *heapout);

/* ssvalidate.c */
extern bool ssvalidate(Oid opclassoid);

/* sssort.c: the rows of shop._search_rows, into rsinfo's tuplestore */
struct ReturnSetInfo;
extern void SsSearchRows(Oid indexoid, Datum query, text *sort, int32 k, Jsonb *attrs,
						 struct ReturnSetInfo *rsinfo);
struct TupleTableSlot;
typedef void (*SsRowSink) (void *arg, struct TupleTableSlot *slot, bool ranked, float4 score,
						   int32 typos, int32 missing);
extern void SsSearchRowsTo(Oid indexoid, Datum query, text *sort, int32 k, int32 skip, Jsonb *attrs,
						   SsRowSink sink, void (*restart) (void *arg), void *arg);

#endif							/* SSEARCH_H */
