/*-------------------------------------------------------------------------
 *
 * sstypo.c
 *	  shop_search typo tolerance: bounded Damerau-Levenshtein distance and
 *	  the rule deciding whether an index term matches a query word (exact,
 *	  stem, prefix, or within the allowed number of typos).
 *
 * The rules follow what product search engines do:
 *   - words under 5 characters must match exactly (or as a prefix when
 *     they are the last word of the query);
 *   - 1 typo is allowed from 5 characters, 2 from 9; a query may allow
 *     2 in words of 7 and 8 characters ("two_typos": shop's API does when
 *     the vocabulary has nothing within one typo), the first letter
 *     right;
 *   - a typo on the first letter counts as two, since people rarely get
 *     the first letter wrong;
 *   - a typo is an insertion, deletion, substitution or transposition of
 *     adjacent letters (the optimal-string-alignment distance).
 * Ranking puts fewer typos first (ssscan.c), so an exact match always
 * beats a 1-typo match, which beats a 2-typo match.  Among the terms one
 * typo from a word, one reached by a substitution of keys that are not
 * neighbours on a QWERTY keyboard scores less (SS_FAR_KEY_FACTOR) than a
 * letter left out, doubled, swapped or hit on a neighbouring key, the
 * typos people make ("glosy" is "glossy" before "gloss").
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/bufmgr.h"

#include "ssearch.h"

/*
 * SsDamerauLevenshtein: optimal string alignment distance between a and
 * b, or max + 1 as soon as it is known to exceed max.  Works on bytes;
 * folded text is ASCII for Latin scripts.
 */
int
SsDamerauLevenshtein(const char *a, int alen, const char *b, int blen, int max)
{
	int			rows[3][SS_MAX_TERM_LEN + 2];
	int		   *prev2 = rows[0],
			   *prev = rows[1],
			   *cur = rows[2];

	if (abs(alen - blen) > max)
		return max + 1;
	if (alen > SS_MAX_TERM_LEN)
		alen = SS_MAX_TERM_LEN;
	if (blen > SS_MAX_TERM_LEN)
		blen = SS_MAX_TERM_LEN;
	for (int j = 0; j <= blen; j++)
		prev[j] = j;
	for (int i = 1; i <= alen; i++)
	{
		int			rowmin;
		int		   *tmp;

		cur[0] = i;
		rowmin = i;
		for (int j = 1; j <= blen; j++)
		{
			int			cost = (a[i - 1] == b[j - 1]) ? 0 : 1;
			int			v = prev[j - 1] + cost;

			if (prev[j] + 1 < v)
				v = prev[j] + 1;
			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
				prev2[j - 2] + 1 < v)
				v = prev2[j - 2] + 1;
			cur[j] = v;
			if (v < rowmin)
				rowmin = v;
		}
		if (rowmin > max)
			return max + 1;
		tmp = prev2;
		prev2 = prev;
		prev = cur;
		cur = tmp;
	}
	return prev[blen] > max ? max + 1 : prev[blen];
}

/* SsMaxTypos: typos allowed for a query word of nchars characters. */
int
SsMaxTypos(int nchars)
{
	if (nchars >= 9)
		return 2;
	if (nchars >= 5)
		return 1;
	return 0;
}

/* the score factor of a term one substitution of distant keys from the word */
#define SS_FAR_KEY_FACTOR	0.8f

/* a letter's column on a QWERTY keyboard, in half keys; its row */
static bool
key_place(char c, int *row, int *col)
{
	static const char *const rows[3] = {"qwertyuiop", "asdfghjkl", "zxcvbnm"};

	for (int r = 0; r < 3; r++)
	{
		const char *p = strchr(rows[r], c);

		if (c != '\0' && p != NULL)
		{
			*row = r;
			*col = 2 * (int) (p - rows[r]) + r;	/* each row half a key right */
			return true;
		}
	}
	return false;
}

/*
 * far_substitution: is b (as long as a, one typo from it) a with one
 * letter replaced by a letter whose key is not next to it (not a
 * transposition)?  Digits and other characters are not judged.
 */
static bool
far_substitution(const char *a, const char *b, int len)
{
	int			i = 0;
	int			r1,
				c1,
				r2,
				c2;

	while (i < len && a[i] == b[i])
		i++;
	if (i >= len || (i + 1 < len && a[i] == b[i + 1] && a[i + 1] == b[i]))
		return false;
	if (!key_place(a[i], &r1, &c1) || !key_place(b[i], &r2, &c2))
		return false;
	return abs(r1 - r2) > 1 || abs(c1 - c2) > 2 || (r1 == r2 && abs(c1 - c2) != 2);
}

/* SsTwoTyposLength: may a word of nchars characters get two typos by "two_typos"? */
bool
SsTwoTyposLength(int nchars)
{
	return nchars >= 7 && nchars < 9;
}

/*
 * SsMatchTerm: does index term (an exact form, or a stem starting with
 * SS_STEM_MARK) match query word w?  On a match sets *typos (the ranking
 * tier) and *factor (a multiplier of the term's BM25 contribution: 1 for
 * the exact word, less for a stem-only, prefix or typo match).
 */
bool
SsMatchTerm(const SsQWord *w, const char *term, int termlen, bool typos_on,
			int *typos, float4 *factor)
{
	int			d;

	if (termlen > 0 && term[0] == SS_FILTER_MARK)
		return false;			/* filter terms match no word */
	if (termlen > 0 && term[0] == SS_STEM_MARK)
	{
		if (w->stem != NULL && termlen == (int) strlen(w->stem) &&
			memcmp(term, w->stem, termlen) == 0)
		{
			*typos = 0;
			*factor = 0.9f;
			return true;
		}
		return false;
	}
	if (termlen == w->len && memcmp(term, w->exact, termlen) == 0)
	{
		*typos = 0;
		*factor = 1.0f;
		return true;
	}
	/* the exact term spelled like the word's stem ("laptops" -> "laptop") */
	if (w->stem != NULL && termlen == (int) strlen(w->stem) - 1 &&
		memcmp(term, w->stem + 1, termlen) == 0)
	{
		*typos = 0;
		*factor = 0.9f;
		return true;
	}
	if (w->prefix && termlen > w->len && memcmp(term, w->exact, w->len) == 0)
	{
		*typos = 0;
		*factor = 0.8f;
		return true;
	}
	if (!typos_on || w->maxtypos == 0)
		return false;
	d = SsDamerauLevenshtein(w->exact, w->len, term, termlen, w->maxtypos);
	if (d >= 1 && d <= w->maxtypos)
	{
		if (term[0] != w->exact[0])
			d = w->first_fixed ? w->maxtypos + 1 : d + 1;
		if (d <= w->maxtypos)
		{
			*typos = d;
			*factor = (d == 1 && termlen == w->len && far_substitution(w->exact, term, termlen)) ?
				SS_FAR_KEY_FACTOR : 1.0f;
			return true;
		}
	}
	/* typo'd prefix of the last word: "macbok" finds "macbook" early */
	if (w->prefix && termlen > w->len && term[0] == w->exact[0])
	{
		int			best = 2;

		for (int l = w->len - 1; l <= w->len + 1; l++)
		{
			if (l < 1 || l >= termlen)
				continue;
			d = SsDamerauLevenshtein(w->exact, w->len, term, l, 1);
			if (d < best)
				best = d;
		}
		if (best == 1)
		{
			*typos = 1;
			*factor = 0.7f;
			return true;
		}
	}
	return false;
}

/* ----------------------------------------------------------------
 * Trigram map (layout in ssearch.h, written by SsSegBuilderWrite)
 * ----------------------------------------------------------------
 */

static int
uint32_cmp(const void *a, const void *b)
{
	uint32		x = *(const uint32 *) a;
	uint32		y = *(const uint32 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * SsTermGrams: the distinct trigrams of term, padded with two spaces in
 * front and one behind, sorted; returns their number (at most
 * SS_MAX_TERM_GRAMS).
 */
int
SsTermGrams(const char *term, int len, uint32 *out)
{
	uint8		buf[SS_MAX_TERM_LEN + 8 + 3];
	int			n = 0,
				k = 0;

	len = Min(len, SS_MAX_TERM_LEN + 8);
	buf[0] = buf[1] = SS_GRAM_PAD;
	memcpy(buf + 2, term, len);
	buf[len + 2] = SS_GRAM_PAD;
	for (int i = 0; i + 2 < len + 3; i++)
		out[n++] = ((uint32) buf[i] << 16) | ((uint32) buf[i + 1] << 8) | buf[i + 2];
	if (n > 1)
		qsort(out, n, sizeof(uint32), uint32_cmp);
	for (int i = 0; i < n; i++)
		if (k == 0 || out[i] != out[k - 1])
			out[k++] = out[i];
	return k;
}

/* the gram dir entry of key, or false */
static bool
gram_lookup(Relation index, const SsSegHeader *hdr, uint32 key, SsGramEntry *out)
{
	uint32		lo = 0,
				hi = hdr->ngramdirpages;
	BlockNumber blk;
	Buffer		buf;
	SsGramEntry *e;
	int			cnt;
	int			l,
				h;
	bool		found = false;

	/* the last page whose first key is <= key */
	while (hi - lo > 1)
	{
		uint32		mid = lo + (hi - lo) / 2;
		uint32		first;

		buf = SsReadPage(index, hdr->gramdirstart + mid, BUFFER_LOCK_SHARE, SS_PAGE_GRAMDIR, NULL);
		first = ((SsGramEntry *) SsPageContents(BufferGetPage(buf)))->key;
		UnlockReleaseBuffer(buf);
		if (first <= key)
			lo = mid;
		else
			hi = mid;
	}
	if (hdr->ngramdirpages == 0)
		return false;
	blk = hdr->gramdirstart + lo;
	buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_GRAMDIR, NULL);
	e = (SsGramEntry *) SsPageContents(BufferGetPage(buf));
	cnt = SsPageGetOpaque(BufferGetPage(buf))->count;
	l = 0;
	h = cnt - 1;
	while (l <= h)
	{
		int			mid = l + (h - l) / 2;

		if (e[mid].key == key)
		{
			*out = e[mid];
			found = true;
			break;
		}
		if (e[mid].key < key)
			l = mid + 1;
		else
			h = mid - 1;
	}
	UnlockReleaseBuffer(buf);
	return found;
}

/*
 * Decode the ordinal list of e, calling add for those in [lo, hi); the
 * list is increasing, so decoding stops at hi.
 */
static void
gram_read(Relation index, const SsGramEntry *e, uint32 lo, uint32 hi,
		  uint8 *counts, uint8 bound, uint32 **cands, int *ncands, int *maxcands)
{
	BlockNumber blk = e->blk;
	uint32		off = e->off;
	uint32		ord = 0;
	uint32		i = 0;

	while (i < e->n)
	{
		Buffer		buf = SsReadPage(index, blk, BUFFER_LOCK_SHARE, SS_PAGE_GRAM, NULL);
		const char *p;
		bool		done = false;

		p = SsPageContents(BufferGetPage(buf));
		while (i < e->n && SS_PAGE_CAPACITY - off >= SS_GRAM_VARINT_MAX)
		{
			uint32		v;

			off += SsVarintGet(p + off, &v);
			ord = i == 0 ? v : ord + v;
			i++;
			if (ord >= hi)
			{
				done = true;
				break;
			}
			if (ord >= lo && ++counts[ord - lo] == bound)
			{
				if (*ncands >= *maxcands)
				{
					*maxcands *= 2;
					*cands = repalloc_huge(*cands, sizeof(uint32) * *maxcands);
				}
				(*cands)[(*ncands)++] = ord;
			}
		}
		UnlockReleaseBuffer(buf);
		if (done)
			break;
		blk++;
		off = 0;
	}
}

/*
 * SsTypoCandidates: call cb, in dictionary order, for every exact term of
 * the segment that could match w with typos under SsMatchTerm, using the
 * segment's trigram map; the callback must still check the match (it
 * gets a superset).  Returns false without calling cb when the segment
 * has no map (older builds) or the map cannot narrow the search for this
 * word; the caller then scans the dictionary as before.
 *
 * The bound.  Turning w into a term t by one edit changes at most 3 of
 * w's padded trigrams (substitution, deletion; an insertion 2), and a
 * transposition of adjacent letters at most 4, so with at most k typos t
 * still holds |grams(w)| - 4k of w's distinct trigrams (an occurrence
 * lost to an edit can only make its trigram missing if all its
 * occurrences are lost, so counting distinct trigrams keeps the bound).
 * A typo'd prefix match (the last word: a prefix of t within one typo of
 * w) keeps |grams(w)| - 1 - 4: the prefix's final trigram ("el ") is not
 * one of t's.  With one typo allowed the first letter must be right, so
 * every candidate holds "  c" (c the first letter): that list is exactly
 * the dictionary range of the letter, which bounds the others, and the
 * remaining trigrams must supply the rest of the count; the same for two
 * typos with the first letter right (first_fixed), where the bound is
 * often nothing (a 7-letter word has 8 trigrams, two edits may touch
 * them all): the caller then scans the letter's range.
 */
bool
SsTypoCandidates(Relation index, const SsSegHeader *hdr, const SsQWord *w,
				 SsDictCallback cb, void *arg)
{
	uint32		grams[SS_MAX_TERM_GRAMS];
	int			ngrams;
	int			k = w->maxtypos;
	int			bound;
	uint32		lo,
				hi;
	uint32		firstkey = 0;
	uint8	   *counts;
	uint32	   *cands;
	int			ncands = 0,
				maxcands = 256;
	uint32	   *firstord;
	uint32		ndict = hdr->ndictpages;

	if (hdr->gramdirstart == 0 || k <= 0 || w->len == 0)
		return false;
	ngrams = SsTermGrams(w->exact, w->len, grams);
	bound = ngrams - 4 * k;
	if (w->prefix)
		bound = Min(bound, ngrams - 1 - 4);
	lo = hdr->firstexact;
	hi = hdr->nterms;
	if (k == 1 || w->first_fixed)
	{
		SsGramEntry e;

		firstkey = ((uint32) SS_GRAM_PAD << 16) | ((uint32) SS_GRAM_PAD << 8) |
			(uint8) w->exact[0];
		if (!gram_lookup(index, hdr, firstkey, &e))
			return true;		/* no term starts with the letter */
		/* the letter's terms are contiguous: the list's first ordinal on */
		{
			Buffer		buf = SsReadPage(index, e.blk, BUFFER_LOCK_SHARE, SS_PAGE_GRAM, NULL);
			uint32		v;

			SsVarintGet(SsPageContents(BufferGetPage(buf)) + e.off, &v);
			UnlockReleaseBuffer(buf);
			lo = v;
			hi = v + e.n;
		}
		bound--;
	}
	if (bound <= 0 || bound > 255)
		return false;
	if (hi <= lo)
		return true;

	counts = palloc_extended(hi - lo, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	cands = palloc(sizeof(uint32) * maxcands);
	for (int g = 0; g < ngrams; g++)
	{
		SsGramEntry e;

		if (grams[g] == firstkey)
			continue;
		if (gram_lookup(index, hdr, grams[g], &e))
			gram_read(index, &e, lo, hi, counts, (uint8) bound, &cands, &ncands, &maxcands);
		CHECK_FOR_INTERRUPTS();
	}
	pfree(counts);
	if (ncands == 0)
	{
		pfree(cands);
		return true;
	}
	if (ncands > 1)
		qsort(cands, ncands, sizeof(uint32), uint32_cmp);

	/* each dict page's first ordinal, from the directory */
	firstord = palloc(sizeof(uint32) * (ndict + 1));
	{
		uint32		n = 0;

		for (uint32 p = 0; p < hdr->ndirpages; p++)
		{
			Buffer		buf = SsReadPage(index, hdr->dirstart + p, BUFFER_LOCK_SHARE, SS_PAGE_DIR, NULL);
			Page		page;

			page = BufferGetPage(buf);
			for (OffsetNumber off = FirstOffsetNumber;
				 off <= PageGetMaxOffsetNumber(page) && n < ndict; off++)
				firstord[n++] = ((SsDictItem *) PageGetItem(page, PageGetItemId(page, off)))->skip;
			UnlockReleaseBuffer(buf);
		}
		if (n != ndict)
			elog(ERROR, "shop_search: directory of %u items for %u dictionary pages", n, ndict);
		firstord[ndict] = hdr->nterms;
	}

	/* read the candidates page by page, calling cb outside the lock */
	{
		char	   *items = palloc(BLCKSZ);
		uint32		page = 0;
		int			c = 0;

		while (c < ncands)
		{
			Buffer		buf;
			Page		pg;
			char	   *p = items;
			int			first = c;

			while (page + 1 < ndict && firstord[page + 1] <= cands[c])
				page++;
			buf = SsReadPage(index, hdr->dictstart + page, BUFFER_LOCK_SHARE, SS_PAGE_DICT, NULL);
			pg = BufferGetPage(buf);
			for (; c < ncands && cands[c] < firstord[page + 1]; c++)
			{
				OffsetNumber off = FirstOffsetNumber + (cands[c] - firstord[page]);
				SsDictItem *it;

				if (cands[c] < firstord[page] || off > PageGetMaxOffsetNumber(pg))
					elog(ERROR, "shop_search: term ordinal %u not on dictionary page %u",
						 cands[c], page);
				it = (SsDictItem *) PageGetItem(pg, PageGetItemId(pg, off));
				memcpy(p, it, SS_DICT_ITEM_SIZE(it->len));
				p += MAXALIGN(SS_DICT_ITEM_SIZE(it->len));
			}
			UnlockReleaseBuffer(buf);
			p = items;
			for (int i = first; i < c; i++)
			{
				SsDictItem *it = (SsDictItem *) p;

				cb(arg, it);
				p += MAXALIGN(SS_DICT_ITEM_SIZE(it->len));
			}
		}
		pfree(items);
	}
	pfree(firstord);
	pfree(cands);
	return true;
}
