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
 *   - 1 typo is allowed from 5 characters, 2 from 9;
 *   - a typo on the first letter counts as two, since people rarely get
 *     the first letter wrong;
 *   - a typo is an insertion, deletion, substitution or transposition of
 *     adjacent letters (the optimal-string-alignment distance).
 * Ranking puts fewer typos first (ssscan.c), so an exact match always
 * beats a 1-typo match, which beats a 2-typo match.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

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
			d++;
		if (d <= w->maxtypos)
		{
			*typos = d;
			*factor = 1.0f;
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
