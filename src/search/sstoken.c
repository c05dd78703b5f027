/*-------------------------------------------------------------------------
 *
 * sstoken.c
 *	  shop_search tokenizer: case and accent folding, word splitting,
 *	  Snowball stems, and the conversion of a shop.search_doc value into
 *	  the term list of one document.
 *
 * Folding.  Text is read as UTF-8.  ASCII letters are lower-cased; the
 * Latin-1 Supplement and Latin Extended-A letters (U+00C0-U+017F) fold to
 * their unaccented ASCII base ("Müller" -> "muller", "ß" -> "ss",
 * "Æ" -> "ae"); Greek and Cyrillic capitals are lower-cased; other letters
 * are kept as they are.  Words are maximal runs of letters and digits;
 * everything else (punctuation, symbols, spaces) separates them, so
 * "i7-8700K" gives "i7" and "8700k".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "libstemmer.h"
#include "access/htup_details.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "shop.h"
#include "ssearch.h"

PG_FUNCTION_INFO_V1(shop_search_tokens);

/* Fold table for U+00C0..U+017F; NULL means "not a letter" (× and ÷). */
static const char *const latin_fold[192] = {
	/* C0 */ "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
	/* D0 */ "d", "n", "o", "o", "o", "o", "o", NULL, "o", "u", "u", "u", "u", "y", "th", "ss",
	/* E0 */ "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
	/* F0 */ "d", "n", "o", "o", "o", "o", "o", NULL, "o", "u", "u", "u", "u", "y", "th", "y",
	/* 100 */ "a", "a", "a", "a", "a", "a", "c", "c", "c", "c", "c", "c", "c", "c", "d", "d",
	/* 110 */ "d", "d", "e", "e", "e", "e", "e", "e", "e", "e", "e", "e", "g", "g", "g", "g",
	/* 120 */ "g", "g", "g", "g", "h", "h", "h", "h", "i", "i", "i", "i", "i", "i", "i", "i",
	/* 130 */ "i", "i", "ij", "ij", "j", "j", "k", "k", "k", "l", "l", "l", "l", "l", "l", "l",
	/* 140 */ "l", "l", "l", "n", "n", "n", "n", "n", "n", "n", "n", "n", "o", "o", "o", "o",
	/* 150 */ "o", "o", "oe", "oe", "r", "r", "r", "r", "r", "r", "s", "s", "s", "s", "s", "s",
	/* 160 */ "s", "s", "t", "t", "t", "t", "t", "t", "u", "u", "u", "u", "u", "u", "u", "u",
	/* 170 */ "u", "u", "u", "u", "w", "w", "y", "y", "y", "z", "z", "z", "z", "z", "z", "s",
};

/* Decode one UTF-8 character; returns its byte length (1 on bad input). */
static int
utf8_decode(const unsigned char *s, int len, uint32 *cp)
{
	if (s[0] < 0x80)
	{
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xE0) == 0xC0 && len >= 2)
	{
		*cp = ((s[0] & 0x1F) << 6) | (s[1] & 0x3F);
		return 2;
	}
	if ((s[0] & 0xF0) == 0xE0 && len >= 3)
	{
		*cp = ((s[0] & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
		return 3;
	}
	if ((s[0] & 0xF8) == 0xF0 && len >= 4)
	{
		*cp = ((s[0] & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
		return 4;
	}
	*cp = 0xFFFD;
	return 1;
}

static int
utf8_encode(uint32 cp, char *out)
{
	if (cp < 0x80)
	{
		out[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		out[0] = (char) (0xC0 | (cp >> 6));
		out[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		out[0] = (char) (0xE0 | (cp >> 12));
		out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char) (0xF0 | (cp >> 18));
	out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

/* Is this code point part of a word? */
static bool
is_word_char(uint32 cp)
{
	if (cp < 0x80)
		return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9');
	if (cp < 0xC0)
		return false;			/* Latin-1 punctuation and symbols */
	if (cp == 0xD7 || cp == 0xF7)
		return false;
	if (cp >= 0x2000 && cp <= 0x2BFF)
		return false;			/* punctuation, symbols, arrows, shapes */
	if (cp >= 0x3000 && cp <= 0x303F)
		return false;
	if (cp >= 0xFE00 && cp <= 0xFE6F)
		return false;
	if (cp >= 0xFF00 && cp <= 0xFF0F)
		return false;
	if (cp == 0xFFFD || (cp >= 0x1F000 && cp <= 0x1FAFF))
		return false;			/* replacement char, emoji */
	return true;
}

/* Append the folded form of cp to out; returns bytes written (<= 4). */
static int
fold_char(uint32 cp, char *out)
{
	if (cp < 0x80)
	{
		out[0] = (cp >= 'A' && cp <= 'Z') ? (char) (cp + 32) : (char) cp;
		return 1;
	}
	if (cp >= 0xC0 && cp <= 0x17F)
	{
		const char *f = latin_fold[cp - 0xC0];
		int			n = strlen(f);

		memcpy(out, f, n);
		return n;
	}
	if (cp >= 0x391 && cp <= 0x3A9)
		cp += 0x20;				/* Greek capitals */
	else if (cp >= 0x410 && cp <= 0x42F)
		cp += 0x20;				/* Cyrillic capitals */
	else if (cp >= 0x400 && cp <= 0x40F)
		cp += 0x50;
	return utf8_encode(cp, out);
}

/*
 * tokenize_words: call cb for every folded word of text[0..len), with the
 * byte range [start, end) of the word in text.  Words longer than
 * SS_MAX_TERM_LEN bytes are cut at a character boundary.
 */
typedef void (*RawWordCallback) (void *arg, const char *word, int len, int start, int end);

static void
tokenize_words(const char *text, int len, RawWordCallback cb, void *arg)
{
	const unsigned char *s = (const unsigned char *) text;
	char		word[SS_MAX_TERM_LEN + 8];
	int			wlen = 0;
	int			wstart = 0;
	int			i = 0;

	while (i < len)
	{
		uint32		cp;
		int			at = i;
		int			n = utf8_decode(s + i, len - i, &cp);

		i += n;
		if (is_word_char(cp))
		{
			char		buf[8];
			int			m = fold_char(cp, buf);

			if (wlen == 0)
				wstart = at;
			if (wlen + m <= SS_MAX_TERM_LEN)
			{
				memcpy(word + wlen, buf, m);
				wlen += m;
			}
			continue;
		}
		if (wlen > 0)
		{
			word[wlen] = '\0';
			cb(arg, word, wlen, wstart, at);
			wlen = 0;
		}
	}
	if (wlen > 0)
	{
		word[wlen] = '\0';
		cb(arg, word, wlen, wstart, len);
	}
}

typedef struct PlainTok
{
	SsTokenCallback cb;
	void	   *arg;
	int			field;
} PlainTok;

static void
plain_tok_cb(void *arg, const char *word, int len, int start, int end)
{
	PlainTok   *pt = (PlainTok *) arg;

	pt->cb(pt->arg, word, len, pt->field);
}

/*
 * SsTokenize: call cb for every folded word of text[0..len), as written
 * (no unit or model number analysis: folding of brands, synonyms and
 * suggestions).  Words longer than SS_MAX_TERM_LEN bytes are cut at a
 * character boundary.
 */
void
SsTokenize(const char *text, int len, int field, SsTokenCallback cb, void *arg)
{
	PlainTok	pt = {cb, arg, field};

	tokenize_words(text, len, plain_tok_cb, &pt);
}

/* ----------------------------------------------------------------
 * Units and model numbers (SsAnalyze)
 *
 * Documents and queries go through the same analysis, so that the ways
 * of writing a size or a model number find each other:
 *
 *   - a unit written after a number takes one canonical name, joined to
 *     the number or not: "27in", "27 inches", "27-inch" and 27" (a
 *     double quote, two single quotes or U+2033 right after the digits)
 *     all give the words "27" and "inch"; "1 terabyte" gives "1" "tb";
 *     a word like "27in" becomes "27inch" (number and canonical unit);
 *   - a word mixing letters and digits ("xps13", "16gb", "27inch") adds,
 *     in documents, its parts ("xps" "13") as terms beside it;
 *   - two neighbouring words, separated by spaces, '-', '/' or '_' only,
 *     one holding a digit and the other of at most 4 letters, neither a
 *     function word, are joined: a query offers the joined term as an
 *     alternative of each of the two words (SS_TOK_JOIN, ssquery.c); a
 *     document adds it ("C-EXV21" adds "cexv21", "UTP RJ45" "utprj45")
 *     unless the two words are a run of letters and a run of digits
 *     ("XPS 13", "HP-926", "27 inch"), which the query side finds by
 *     splitting instead (next item): model numbers written that way are
 *     most of a catalog's distinct terms, and the index was half again
 *     as large with them (format 5);
 *   - in a query, a word made of one run of letters and one run of
 *     digits ("xps13", "27inch", "hp926"), neither a function word, is
 *     read as its two runs, with the word itself joining them
 *     (SS_TOK_JOIN), as if typed "xps 13"; a word before it that it
 *     would join ("c" before "exv21", "dell" before "xps13") gives the
 *     three-word join (SS_TOK_JOIN3: "cexv21"), so that the text a
 *     document wrote as one word is still found;
 *   - in documents, a length in centimetres within 0.05 inch of a whole
 *     number of inches from 1 to 200 adds the canonical inch term
 *     ("68.6 cm" adds "27inch"; 60.5 cm, 23.8 inches, adds nothing).
 *
 * Added terms (SS_TOK_EXTRA) come from the title and the brand only (a
 * description's sizes and codes would grow the index by half for little:
 * its words are still read with canonical units); they are indexed
 * beside the words, counted as the description's (the lowest weight, so
 * that they find a product without outranking the words its title
 * writes), and do not count in any field's length.
 * ----------------------------------------------------------------
 */

typedef struct SsUnit
{
	const char *alias;
	const char *canon;
	bool		alone;			/* also as a separate word after a number */
} SsUnit;

static const SsUnit units[] = {
	{"in", "inch", false}, {"inch", "inch", true}, {"inches", "inch", true},
	{"tb", "tb", true}, {"terabyte", "tb", true}, {"terabytes", "tb", true},
	{"gb", "gb", true}, {"gigabyte", "gb", true}, {"gigabytes", "gb", true},
	{"mb", "mb", true}, {"megabyte", "mb", true}, {"megabytes", "mb", true},
	{"ghz", "ghz", true}, {"mhz", "mhz", true}, {"hz", "hz", true},
	{"mah", "mah", true}, {"w", "w", true}, {"watt", "w", true}, {"watts", "w", true},
	{"mm", "mm", true}, {"cm", "cm", true}, {"kg", "kg", true},
	{"mp", "mp", true}, {"megapixel", "mp", true}, {"megapixels", "mp", true},
	{NULL, NULL, false}
};

static const char *
unit_canon(const char *w, int len, bool alone)
{
	for (int i = 0; units[i].alias; i++)
		if ((int) strlen(units[i].alias) == len && memcmp(units[i].alias, w, len) == 0)
			return (alone && !units[i].alone) ? NULL : units[i].canon;
	return NULL;
}

static bool
all_digits(const char *w, int len)
{
	for (int i = 0; i < len; i++)
		if (w[i] < '0' || w[i] > '9')
			return false;
	return len > 0;
}

static bool
has_digit(const char *w, int len)
{
	for (int i = 0; i < len; i++)
		if (w[i] >= '0' && w[i] <= '9')
			return true;
	return false;
}

static bool
is_digit_byte(char c)
{
	return c >= '0' && c <= '9';
}

static bool
all_letters(const char *w, int len)
{
	for (int i = 0; i < len; i++)
		if (is_digit_byte(w[i]))
			return false;
	return len > 0;
}

/*
 * may words a and b, neighbours in a text, be joined into one term?  One
 * of them holds a digit, the other is a short name of letters (a model
 * line "xps", "c", "rtx" before it; a unit "inch", "tb" after it).
 */
static bool
joinable(const char *a, int alen, const char *b, int blen)
{
	if (alen + blen > SS_MAX_TERM_LEN)
		return false;
	if (!((all_letters(a, alen) && alen <= 4 && has_digit(b, blen)) ||
		  (all_letters(b, blen) && blen <= 4 && has_digit(a, alen))))
		return false;
	return !SsIsStopWord(a) && !SsIsStopWord(b);
}

/* is text[from, to) a separator that keeps two words one name? */
static bool
join_separator(const char *text, int from, int to)
{
	if (to - from > 3)
		return false;
	for (int i = from; i < to; i++)
		if (text[i] != ' ' && text[i] != '-' && text[i] != '/' && text[i] != '_')
			return false;
	return true;
}

/* does an inch mark start at text[at]: ", '' or U+2033? */
static bool
inch_mark(const char *text, int len, int at)
{
	if (at >= len)
		return false;
	if (text[at] == '"')
		return true;
	if (at + 1 < len && text[at] == '\'' && text[at + 1] == '\'')
		return true;
	return at + 2 < len && (uint8) text[at] == 0xE2 && (uint8) text[at + 1] == 0x80 &&
		(uint8) text[at + 2] == 0xB3;
}

typedef struct Analyzer
{
	const char *text;
	int			textlen;
	int			field;
	bool		document;
	SsTermCallback cb;
	void	   *arg;
	/* the previous word, canonical */
	char		prev[SS_MAX_TERM_LEN + 8];
	int			prevlen;
	int			prevend;		/* its end in text, -1: none or not joinable */
	/* the last number read (a decimal "68.6" spans two words) */
	double		num;
	int			numend;			/* its end in text, -1: none */
	bool		prevfrac;		/* the previous word is a decimal's fraction */
} Analyzer;

static void
emit(Analyzer *an, const char *w, int len, SsTokKind kind)
{
	if (kind == SS_TOK_EXTRA && !an->document)
		return;
	an->cb(an->arg, w, len, an->field, kind);
}

/* a length in cm: the inch term when it is a whole number of inches */
static void
emit_cm_inches(Analyzer *an, double cm)
{
	double		in = cm / 2.54;
	double		r = rint(in);
	char		buf[32];

	if (!an->document || r < 1 || r > 200 || fabs(in - r) > 0.05)
		return;
	snprintf(buf, sizeof(buf), "%dinch", (int) r);
	emit(an, buf, strlen(buf), SS_TOK_EXTRA);
}

/*
 * two_runs: is w one run of letters and one run of digits (either
 * first)?  *split is where the second run starts.
 */
static bool
two_runs(const char *w, int len, int *split)
{
	int			i = 1;

	if (len < 2)
		return false;
	while (i < len && is_digit_byte(w[i]) == is_digit_byte(w[0]))
		i++;
	if (i == len)
		return false;
	*split = i;
	while (i < len && is_digit_byte(w[i]) == is_digit_byte(w[*split]))
		i++;
	return i == len;
}

/* is the pair a run of letters and a run of digits, either first? */
static bool
runs_pair(const char *a, int alen, const char *b, int blen)
{
	return (all_letters(a, alen) && all_digits(b, blen)) ||
		(all_digits(a, alen) && all_letters(b, blen));
}

/*
 * analyze_query_split: a query word of two runs (two_runs): its runs as
 * words, the word as their join, and with a previous word it would join,
 * the three-word join.  False (nothing emitted) when w is not such a word
 * or a run is a function word ("a4": "a").
 */
static bool
analyze_query_split(Analyzer *an, const char *w, int len, int start)
{
	char		a[SS_MAX_TERM_LEN + 8];
	char		b[SS_MAX_TERM_LEN + 8];
	int			split;
	bool		prevjoin;

	if (an->document || !two_runs(w, len, &split))
		return false;
	memcpy(a, w, split);
	a[split] = '\0';
	memcpy(b, w + split, len - split);
	b[len - split] = '\0';
	if (SsIsStopWord(a) || SsIsStopWord(b))
		return false;
	prevjoin = an->prevend >= 0 && !an->prevfrac &&
		join_separator(an->text, an->prevend, start) &&
		joinable(an->prev, an->prevlen, w, len);
	emit(an, a, split, SS_TOK_WORD);
	emit(an, b, len - split, SS_TOK_WORD);
	emit(an, w, len, SS_TOK_JOIN);
	if (prevjoin)
	{
		char		j[2 * SS_MAX_TERM_LEN + 8];

		memcpy(j, an->prev, an->prevlen);
		memcpy(j + an->prevlen, w, len);
		emit(an, j, an->prevlen + len, SS_TOK_JOIN3);
	}
	an->prevend = -1;			/* a split word joins nothing after it */
	return true;
}

/* a canonical word: emit it, its parts, its join with the previous word */
static void
analyze_word(Analyzer *an, const char *w, int len, int start, int end)
{
	if (analyze_query_split(an, w, len, start))
		return;
	/* parts of a word mixing letters and digits, for documents */
	if (an->document && has_digit(w, len) && !all_digits(w, len))
	{
		int			i = 0;

		while (i < len)
		{
			int			j = i;
			bool		d = is_digit_byte(w[i]);

			while (j < len && is_digit_byte(w[j]) == d)
				j++;
			emit(an, w + i, j - i, SS_TOK_EXTRA);
			i = j;
		}
	}
	emit(an, w, len, SS_TOK_WORD);
	if (an->prevend >= 0 && !an->prevfrac &&
		join_separator(an->text, an->prevend, start) &&
		joinable(an->prev, an->prevlen, w, len) &&
		!(an->document && runs_pair(an->prev, an->prevlen, w, len)))
	{
		char		j[2 * SS_MAX_TERM_LEN + 8];

		memcpy(j, an->prev, an->prevlen);
		memcpy(j + an->prevlen, w, len);
		j[an->prevlen + len] = '\0';
		emit(an, j, an->prevlen + len, an->document ? SS_TOK_EXTRA : SS_TOK_JOIN);
	}
	memcpy(an->prev, w, len);
	an->prev[len] = '\0';
	an->prevlen = len;
	an->prevend = end;
}

static void
analyze_cb(void *arg, const char *word, int len, int start, int end)
{
	Analyzer   *an = (Analyzer *) arg;
	char		w[SS_MAX_TERM_LEN + 16];
	int			wlen = len;
	const char *canon;
	bool		after_number = an->numend >= 0 && join_separator(an->text, an->numend, start);
	bool		frac = false;

	memcpy(w, word, len);
	w[len] = '\0';

	if (all_digits(w, len))
	{
		double		v = strtod(w, NULL);

		/* "68.6": the fraction of the number just read */
		if (an->numend >= 0 && start == an->numend + 1 &&
			(an->text[an->numend] == '.' || an->text[an->numend] == ',') &&
			!an->prevfrac && len <= 6)
		{
			v = an->num + v / pow(10, len);
			frac = true;
		}
		analyze_word(an, w, len, start, end);
		an->prevfrac = frac;
		an->num = v;
		an->numend = end;
		/* 27": the number and the word "inch" */
		if (inch_mark(an->text, an->textlen, end))
		{
			analyze_word(an, "inch", 4, end, end);
			an->numend = -1;
			an->prevfrac = false;
		}
		return;
	}

	/* a unit alone after a number: its canonical name */
	if (after_number && (canon = unit_canon(w, len, true)) != NULL)
	{
		wlen = strlen(canon);
		memcpy(w, canon, wlen + 1);
		if (strcmp(canon, "cm") == 0)
			emit_cm_inches(an, an->num);
	}
	else if (is_digit_byte(w[0]))
	{
		/* digits then letters: "27in", "16gb", "68.6cm" (the "6cm") */
		int			d = 0;

		while (d < len && is_digit_byte(w[d]))
			d++;
		if ((canon = unit_canon(w + d, len - d, false)) != NULL &&
			d + strlen(canon) <= SS_MAX_TERM_LEN)
		{
			double		v = strtod(w, NULL);

			if (an->numend >= 0 && start == an->numend + 1 &&
				(an->text[an->numend] == '.' || an->text[an->numend] == ',') && d <= 6)
				v = an->num + v / pow(10, d);
			strcpy(w + d, canon);
			wlen = d + strlen(canon);
			if (strcmp(canon, "cm") == 0)
				emit_cm_inches(an, v);
		}
	}
	an->numend = -1;
	analyze_word(an, w, wlen, start, end);
	an->prevfrac = false;
}

/*
 * SsAnalyze: the words of text[0..len) for the index, with units and
 * model numbers (above): cb gets every word (SS_TOK_WORD), and for a
 * document the terms added beside them (SS_TOK_EXTRA), for a query the
 * joins of neighbouring words (SS_TOK_JOIN, right after the second one).
 */
void
SsAnalyze(const char *text, int len, int field, bool document, SsTermCallback cb, void *arg)
{
	Analyzer	an;

	memset(&an, 0, sizeof(an));
	an.text = text;
	an.textlen = len;
	an.field = field;
	an.document = document;
	an.cb = cb;
	an.arg = arg;
	an.prevend = -1;
	an.numend = -1;
	tokenize_words(text, len, analyze_cb, &an);
}

typedef struct FoldOne
{
	char	   *out;
	int			outsize;
	int			len;
} FoldOne;

static void
fold_one_cb(void *arg, const char *word, int len, int field)
{
	FoldOne    *f = (FoldOne *) arg;

	if (f->len > 0 && f->len + 1 < f->outsize)
		f->out[f->len++] = ' ';
	if (f->len + len < f->outsize)
	{
		memcpy(f->out + f->len, word, len);
		f->len += len;
	}
	f->out[f->len] = '\0';
}

/* SsFoldWord: the folded words of in, joined by single spaces. */
int
SsFoldWord(const char *in, int inlen, char *out, int outsize)
{
	FoldOne		f = {out, outsize, 0};

	out[0] = '\0';
	SsTokenize(in, inlen, 0, fold_one_cb, &f);
	return f.len;
}

/*
 * SsStem: Snowball stem of a folded word, prefixed with SS_STEM_MARK, into
 * out (NUL-terminated); returns its length.
 */
int
SsStem(const char *language, const char *word, int len, char *out, int outsize)
{
	struct sb_stemmer *st = ShopGetStemmer(language);
	const sb_symbol *res;
	int			n;

	res = sb_stemmer_stem(st, (const sb_symbol *) word, len);
	if (res == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	n = sb_stemmer_length(st);
	if (n + 2 > outsize)
		n = outsize - 2;
	out[0] = SS_STEM_MARK;
	memcpy(out + 1, res, n);
	out[n + 1] = '\0';
	return n + 1;
}

/* SsBrandHash: hash of a brand's folded words; equal for "L'Oréal", "l oreal". */
uint32
SsBrandHash(const char *brand, int len)
{
	char		buf[512];
	int			n = SsFoldWord(brand, len, buf, sizeof(buf));

	return hash_bytes((const unsigned char *) buf, n);
}

static const char *const stop_words[] = {
	"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into",
	"is", "it", "of", "on", "or", "the", "to", "with", "without", NULL
};

/* SsIsStopWord: English function words that a query may omit. */
bool
SsIsStopWord(const char *word)
{
	for (int i = 0; stop_words[i]; i++)
		if (strcmp(stop_words[i], word) == 0)
			return true;
	return false;
}

/* ----------------------------------------------------------------
 * The head noun of a title (issue 13: what a product is)
 *
 * Product titles name the product type before the specifications, after
 * the brand and the line: "Lenovo ThinkPad T14s Notebook Black 35.6 cm
 * (14") ...", "Kensington MicroSaver DS Laptop Lock", "Targus privacy
 * filter for 27" monitors".  The title's name ends at a colour word, a
 * function word ("for", "with") or punctuation other than a hyphen inside
 * a word ('(' ',' ';' ':' '|' '+', a dash or a slash after a space), once
 * it has a word; inside it, a size (a number with a unit or an inch mark:
 * "90W", "35.6 cm", 55") separates runs of words.  The head is the last
 * word of three or more letters (not a model number) of the name's first
 * run that has one, or of a later run of two words of letters, or of a
 * later run when the first had only one (the brand): "notebook", "lock",
 * "filter", "adapter" in "Lenovo ThinkPad 90W AC Adapter (EU1)",
 * "television" in "Samsung 55" QLED Television", "processor" in "Intel
 * Pentium 530 processor 3 GHz Box 1 MB L2".  An accessory names the
 * product it fits before its own type, or after "for", so its head is its
 * own type.  Stemmed like the words, so "notebooks" = "notebook".
 *
 * Round 11: a slash between spaces joining two words of letters names
 * alternatives and the name goes on ("Laptop / Notebook Power Cord Lead
 * Cable" is a cable); a roman numeral in capitals is never the head, and a
 * later run with one as a word of its own ("Serial ATA III") does not
 * replace a type named in lower case in a name that mixes cases
 * ("internal solid state drive 2.5" 960 GB Serial ATA III" is a drive);
 * a capitalized model suffix (Lite, Pro, ...) right after a model number
 * is no head ("Galaxy Tab S6 Lite"); "Tab", capitalized, is a tablet.
 *
 * Round 14 (the heads of the Chorus titles counted): a type named in lower
 * case in a name that mixes cases stays the head past any later run with
 * no word in lower case ("USB flash drive 64 GB USB Type-A 2.0" is a
 * drive); the word after a dimension or an ordinal is a unit ("600 x 600
 * DPI", "9th gen"); a word joined to a number by a hyphen ("3-Pin",
 * "250-sheet") is no head; the brand alone is no head once anything
 * follows it ("Canon EP-A Original Black").
 * ----------------------------------------------------------------
 */

static const char *const colours[] = {
	"black", "white", "silver", "grey", "gray", "blue", "red", "green", "yellow", "pink",
	"purple", "orange", "brown", "gold", "beige", "transparent", "cyan", "magenta", "bronze",
	"metallic", "graphite", "multicolour", "multicolor", "navy", "turquoise", "violet",
	"anthracite", "charcoal", NULL
};

/*
 * words of a consumable's properties that Icecat writes where the type
 * would be: "Canon Cartridge CLI-8 YLO Original yellow" is a cartridge
 */
static const char *const properties[] = {"original", "compatible", NULL};

/*
 * where a charger or adapter takes its power: a property when it follows
 * the type ("Samsung Car Charger Auto Black", "... power adapter/inverter
 * Indoor Black"), a part of the name when a word of the name follows it
 * ("HP Auto Power Adapter", "Philips Indoor Headphones")
 */
static const char *const power_sources[] = {"auto", "indoor", "outdoor", NULL};

static bool
is_colour(const char *w)
{
	for (int i = 0; colours[i]; i++)
		if (strcmp(colours[i], w) == 0)
			return true;
	for (int i = 0; properties[i]; i++)
		if (strcmp(properties[i], w) == 0)
			return true;
	return false;
}

/* ASCII only: a head must not depend on the database's locale */
#define HEAD_UPPER(c)	((c) >= 'A' && (c) <= 'Z')
#define HEAD_ALPHA(c)	(HEAD_UPPER(c) || ((c) >= 'a' && (c) <= 'z'))
#define HEAD_DIGIT(c)	((c) >= '0' && (c) <= '9')

/* is text[from, to) " - " (a dash between spaces)? */
static bool
to_dash_gap(const char *text, int from, int to)
{
	return to - from == 3 && text[from] == ' ' && text[from + 1] == '-' && text[from + 2] == ' ';
}

/*
 * does the title go on after text[end] with a colour, a number or nothing
 * (its end or punctuation)?  Not when a word of letters that is no colour
 * follows.
 */
static bool
ends_before_colour(const char *text, int textlen, int end)
{
	int			i = end;
	int			j;
	char		w[16];

	while (i < textlen && text[i] == ' ')
		i++;
	if (i >= textlen || !HEAD_ALPHA(text[i]))
		return true;
	for (j = i; j < textlen && HEAD_ALPHA(text[j]); j++)
		;
	if (j - i >= (int) sizeof(w))
		return false;
	for (int k = i; k < j; k++)
		w[k - i] = pg_ascii_tolower((unsigned char) text[k]);
	w[j - i] = '\0';
	return is_colour(w);
}

/*
 * prepositions that, in lower case inside a name, make it a phrase saying
 * how the product is fitted ("bolt through desk"), not what it is
 */
static const char *const fitting_words[] = {"through", "over", "under", NULL};

static bool
is_fitting_word(const char *w)
{
	for (int i = 0; fitting_words[i]; i++)
		if (strcmp(fitting_words[i], w) == 0)
			return true;
	return false;
}

/*
 * is text[from, to) a dash between spaces, and the word text[start, end)
 * one in lower case that ends the title or comes before a number?
 */
static bool
dash_then_last_word(const char *text, int textlen, int from, int start, int end)
{
	int			i = end;

	if (!to_dash_gap(text, from, start))
		return false;
	if (!(text[start] >= 'a' && text[start] <= 'z'))
		return false;
	while (i < textlen && text[i] == ' ')
		i++;
	return i >= textlen || HEAD_DIGIT(text[i]);
}

static bool
is_power_source(const char *w)
{
	for (int i = 0; power_sources[i]; i++)
		if (strcmp(power_sources[i], w) == 0)
			return true;
	return false;
}

typedef struct HeadScan
{
	const char *text;
	int			textlen;
	int			prevend;		/* end of the previous word, -1 none */
	bool		prevnum;		/* the previous word is a number */
	bool		done;
	char		last[SS_MAX_TERM_LEN + 8];	/* the run's last word of letters */
	int			lastlen;
	char		lower[SS_MAX_TERM_LEN + 8];	/* ... written in lower case */
	int			lowerlen;
	bool		prevletters;	/* the previous word is a word of letters ... */
	bool		prevlower;		/* ... written in lower case */
	int			nwords;			/* the run's words of letters, any length */
	int			nlower;			/* ... of them in lower case */
	bool		runversion;		/* the run has a roman numeral ("ATA III") */
	int			runcands;		/* the run's words that may be its head ... */
	int			allcands;		/* ... and the title's so far */
	int			ntokens;		/* the title's words so far, of any kind */
	bool		lastfirst;		/* last is the title's first word */
	char		head[SS_MAX_TERM_LEN + 8];	/* the head so far */
	int			headlen;
	int			headwords;		/* words of letters of its run */
	bool		headfirst;		/* the head is the title's first word alone */
	bool		fitting;		/* the run has a fitting word in lower case */
	bool		headlower;		/* the head is a word in lower case of a run
								 * that mixes cases */
	bool		alt;			/* the word is an alternative ("Laptop /
								 * Notebook") */
	bool		prevmodel;		/* the previous word is a model number */
	bool		headcap;		/* the head is not written in lower case */
	bool		prevx;			/* the previous word is the "x" of "1280 x" */
	bool		prevmeasure;	/* the previous word is the second number of
								 * "1280 x 800" or an ordinal ("9th") */
} HeadScan;

/*
 * does text[from, to) end a run?  2: and the title's name (punctuation),
 * 1: only the run (an inch mark), 0: no
 */
static int
run_break(const char *text, int from, int to)
{
	int			r = 0;

	for (int i = from; i < to; i++)
	{
		char		c = text[i];

		if (c == '(' || c == ')' || c == ',' || c == ';' || c == ':' || c == '|' ||
			c == '+' || c == '[')
			return 2;
		if ((c == '-' || c == '/') && i > from && text[i - 1] == ' ')
			return 2;			/* a dash or slash between spaces */
		if ((uint8) c == 0xE2 && i + 1 < to && (uint8) text[i + 1] == 0x80 &&
			!inch_mark(text, to, i))
			return 2;			/* dashes, quotes, bullets (U+2010..U+203F) */
		if (c == '"' || inch_mark(text, to, i))
			r = 1;
	}
	return r;
}

/* a run ends; a hard end (2) ends the name, once it has a word */
static void
head_end_run(HeadScan *hs, int hard)
{
	/* a later run names the type if it has two words, or the first one */
	if (hs->lastlen > 0 && (hs->nwords >= 2 || hs->headwords <= 1) &&
		!(hs->headlower && hs->lowerlen == 0))
	{
		/*
		 * A run written in mixed case names its type with its last word in
		 * lower case: "Varta High Energy AA Single-use battery Alkaline" is
		 * a battery, "Logitech MX1000 mouse RF Wireless Laser" a mouse
		 * (catalogs such as Icecat write the type, then its properties
		 * capitalized); a run with no word in lower case, or all of it in
		 * lower case, by its last word.
		 */
		if (hs->lowerlen > 0)
		{
			memcpy(hs->head, hs->lower, hs->lowerlen + 1);
			hs->headlen = hs->lowerlen;
			hs->headlower = hs->nlower < hs->nwords;
			hs->headcap = false;
		}
		else
		{
			memcpy(hs->head, hs->last, hs->lastlen + 1);
			hs->headlen = hs->lastlen;
			hs->headlower = false;
			hs->headcap = true;
		}
		hs->headwords = hs->nwords;
		hs->headfirst = hs->runcands == 1 && hs->lastfirst;
	}
	hs->lastlen = 0;
	hs->lowerlen = 0;
	hs->nwords = 0;
	hs->nlower = 0;
	hs->runversion = false;
	hs->runcands = 0;
	hs->fitting = false;

	/*
	 * the title's first word alone is its brand ("Xerox Magenta Standard
	 * Capacity Toner Cartridge", "StarTech.com 1 ft Cat5e Blue ... Patch
	 * Cable"): the name goes on
	 */
	if (hard == 2 && hs->headlen > 0 && !hs->headfirst)
		hs->done = true;
}

/* is text[0, len) a roman numeral in capitals ("III" of "Serial ATA III")? */
static bool
is_roman_numeral(const char *text, int len)
{
	for (int i = 0; i < len; i++)
		if (text[i] != 'I' && text[i] != 'V' && text[i] != 'X')
			return false;
	return len > 0;
}

/*
 * words that, capitalized after a model number, name a variant of the
 * model, not a type: "Galaxy Tab S6 Lite", "Galaxy S10 Lite"
 */
static const char *const model_suffixes[] = {"lite", "pro", "plus", "max", "mini", "ultra", NULL};

static bool
is_model_suffix(const char *w)
{
	for (int i = 0; model_suffixes[i]; i++)
		if (strcmp(model_suffixes[i], w) == 0)
			return true;
	return false;
}

/*
 * is text[0, len) written in capitals only ("UHD" of "Micro SDXC Card CL10
 * UHD")?  After a model number, in a run that has a word that may be its
 * head (the brand included: "APC 35ft Cat5e UTP, ... networking cable"),
 * such a word is a property (a speed class, a standard), not the type
 * (issue 13, rel15)
 */
static bool
text_all_upper(const char *text, int len)
{
	for (int i = 0; i < len; i++)
		if (!HEAD_UPPER(text[i]))
			return false;
	return len > 0;
}

/*
 * types that product lines write short, capitalized, as the line's name:
 * "Samsung Galaxy Tab S5e", "Lenovo Tab M8" are tablets
 */
static const char *const type_abbrevs[][2] = {{"tab", "tablet"}, {NULL, NULL}};

/* is text[from, to) " / " (a slash between spaces)? */
static bool
slash_alternative(const char *text, int from, int to)
{
	return to - from == 3 && text[from] == ' ' && text[from + 1] == '/' && text[from + 2] == ' ';
}

static void
head_cb(void *arg, const char *word, int len, int start, int end)
{
	HeadScan   *hs = (HeadScan *) arg;
	int			digits = (int) strspn(word, "0123456789");
	int			br;

	if (hs->done)
		return;
	/*
	 * a name that says how the product is fitted ("bolt through desk")
	 * goes on past a dash to the one word in lower case that names the
	 * product ("Dataflex Viewmaster bolt through desk - mount 963" is a
	 * mount; "Viewmate computer holder - desk 322" stays a holder)
	 */
	hs->alt = false;
	if (hs->fitting && hs->prevend >= 0 &&
		dash_then_last_word(hs->text, hs->textlen, hs->prevend, start, end))
		hs->ntokens++;
	/*
	 * "Tripp Lite Laptop / Notebook Power Cord Lead Cable": a slash between
	 * two words of letters names alternatives, the name goes on
	 */
	else if (hs->ntokens > 0 && hs->prevend >= 0 && hs->prevletters &&
			 all_letters(word, len) &&
			 slash_alternative(hs->text, hs->prevend, start))
	{
		hs->ntokens++;
		hs->alt = true;
	}
	else if (hs->ntokens++ > 0 && hs->prevend >= 0 && (br = run_break(hs->text, hs->prevend, start)) > 0)
	{
		head_end_run(hs, br);
		if (hs->done)
			return;
	}
	if (strcmp(word, "and") == 0)
		;						/* "ThinkPad and 65W AC Adapter": goes on */
	else if (SsIsStopWord(word) || is_colour(word))
		head_end_run(hs, 2);	/* "for", "with", "black" */
	else if (is_fitting_word(word) && hs->runcands > 0 &&
			 hs->text[start] >= 'a' && hs->text[start] <= 'z' &&
			 !(hs->prevlower && hs->prevletters) &&
			 !(start > 0 && hs->text[start - 1] != ' '))
		head_end_run(hs, 2);	/* the "over" of "Video Extender over Cat 5" */
	else if (hs->runcands > 0 && !(hs->runcands == 1 && hs->lastfirst) &&
			 is_power_source(word) && start > 0 && hs->text[start - 1] == ' ' &&
			 (end >= hs->textlen || hs->text[end] == ' ') &&
			 ends_before_colour(hs->text, hs->textlen, end))
		head_end_run(hs, 2);	/* the "Auto" of "Car Charger Auto Black" */
	else if (hs->prevnum && unit_canon(word, len, true) != NULL)
		head_end_run(hs, 1);	/* the "cm" of "35.6 cm" */
	else if (digits > 0 && unit_canon(word + digits, len - digits, false) != NULL)
		head_end_run(hs, 1);	/* "16gb", "90w" */
	else if (all_letters(word, len) && hs->prevmeasure)
		head_end_run(hs, 1);	/* "1280 x 800 pixels", "9th gen" */
	else if (all_letters(word, len))
	{
		bool		joined = start > 0 && hs->prevend == start - 1 && hs->prevletters;
		bool		counted = start > 0 && hs->prevend == start - 1 && hs->prevnum &&
			hs->text[start - 1] == '-';
		bool		lower;

		/* a word after a hyphen is written as the word before it: "Head-band" */
		if (joined && hs->text[start - 1] == '-')
			lower = hs->prevlower;
		else
			lower = hs->text[start] >= 'a' && hs->text[start] <= 'z';
		/* the "com" of "StarTech.com" is part of the word before it */
		if (joined && hs->text[start - 1] == '.')
		{
			hs->prevend = end;
			return;
		}

		/*
		 * "AC Adapter": two words, the head of three letters or more; of
		 * "adapter/inverter", the first; never a preposition ("Video
		 * Extender over Cat 5" is an extender)
		 */
		if (len >= 3 && !(joined && hs->text[start - 1] == '/') && !is_fitting_word(word) &&
			!hs->alt && !counted && !is_roman_numeral(hs->text + start, end - start) &&
			!(hs->prevmodel && !lower && is_model_suffix(word)) &&
			!(hs->prevmodel && hs->runcands > 0 && text_all_upper(hs->text + start, end - start) &&
			  hs->text[start - 1] == ' '))
		{
			memcpy(hs->last, word, len);
			hs->last[len] = '\0';
			hs->lastlen = len;
			hs->lastfirst = hs->ntokens == 1;
			hs->runcands++;
			hs->allcands++;
			if (lower)
			{
				memcpy(hs->lower, word, len);
				hs->lower[len] = '\0';
				hs->lowerlen = len;
			}
		}
		if (lower && hs->prevlower && hs->prevletters && is_fitting_word(word))
			hs->fitting = true;
		hs->nwords++;
		if (lower)
			hs->nlower++;
		if (end - start >= 2 && is_roman_numeral(hs->text + start, end - start) &&
			start > 0 && hs->text[start - 1] == ' ')
			hs->runversion = true;
		hs->prevmodel = false;
		hs->prevx = len == 1 && word[0] == 'x' && hs->prevnum;
		hs->prevmeasure = false;
		hs->prevnum = false;
		hs->prevletters = true;
		hs->prevlower = lower;
		hs->prevend = end;
		return;
	}
	hs->prevmeasure = (hs->prevx && all_digits(word, len)) ||
		(digits > 0 && len - digits == 2 &&
		 (strcmp(word + digits, "st") == 0 || strcmp(word + digits, "nd") == 0 ||
		  strcmp(word + digits, "rd") == 0 || strcmp(word + digits, "th") == 0));
	hs->prevx = false;
	hs->prevnum = all_digits(word, len);
	hs->prevmodel = digits < len && strpbrk(word, "0123456789") != NULL;
	hs->prevletters = false;
	hs->prevlower = false;
	hs->prevend = end;
}

/*
 * a title that ends with a colour and then a word in capitals of three
 * letters or more names its type there, after the properties: "Buffalo
 * TeraStation ES 4TB Ethernet LAN Desktop Black NAS" is a NAS (the
 * Desktop is its form factor); its length, 0 when it does not
 */
static int
colour_acronym_tail(const char *text, int len, char *out, int outsize)
{
	int			e = len;
	int			b;
	int			pe;
	int			pb;
	char		w[16];

	while (e > 0 && text[e - 1] == ' ')
		e--;
	for (b = e; b > 0 && HEAD_UPPER(text[b - 1]); b--)
		;
	if (e - b < 3 || e - b >= outsize || b == 0 || text[b - 1] != ' ')
		return 0;
	for (pe = b; pe > 0 && text[pe - 1] == ' '; pe--)
		;
	for (pb = pe; pb > 0 && HEAD_ALPHA(text[pb - 1]); pb--)
		;
	if (pe - pb < 3 || pe - pb >= (int) sizeof(w) || (pb > 0 && text[pb - 1] != ' '))
		return 0;
	for (int k = pb; k < pe; k++)
		w[k - pb] = pg_ascii_tolower((unsigned char) text[k]);
	w[pe - pb] = '\0';
	if (!is_colour(w) || strcmp(w, "original") == 0 || strcmp(w, "compatible") == 0)
		return 0;
	for (int k = b; k < e; k++)
		out[k - b] = pg_ascii_tolower((unsigned char) text[k]);
	out[e - b] = '\0';
	return e - b;
}

/*
 * SsTitleHead: the stem (without SS_STEM_MARK) of the head noun of a
 * title, into out; its length, 0 when the title has none.
 */
int
SsTitleHead(const char *language, const char *title, int len, char *out, int outsize)
{
	HeadScan	hs;
	const char *w;
	int			wlen;
	char		stem[SS_MAX_TERM_LEN + 8];
	char		acronym[16];
	int			slen;

	memset(&hs, 0, sizeof(hs));
	hs.text = title;
	hs.textlen = len;
	hs.prevend = -1;
	tokenize_words(title, len, head_cb, &hs);
	if (!hs.done)
		head_end_run(&hs, 2);
	out[0] = '\0';
	if ((wlen = colour_acronym_tail(title, len, acronym, sizeof(acronym))) > 0)
		w = acronym;
	else
	{
		w = hs.head;
		wlen = hs.headlen;
		/*
		 * a title whose only name is its first word, the brand, followed by
		 * other words or a model number ("Sony QGD170ME"): no type
		 */
		if (wlen == 0 || (hs.headfirst && (hs.allcands > 1 || hs.ntokens > 1)))
			return 0;
		for (int i = 0; hs.headcap && type_abbrevs[i][0]; i++)
			if (strcmp(type_abbrevs[i][0], w) == 0)
			{
				w = type_abbrevs[i][1];
				wlen = strlen(w);
				break;
			}
	}
	slen = SsStem(language, w, wlen, stem, sizeof(stem)) - 1;
	slen = Min(slen, outsize - 1);
	memcpy(out, stem + 1, slen);
	out[slen] = '\0';
	return slen;
}

/* SsHeadHash: the 16-bit hash of a head stem stored per document (never 0) */
uint16
SsHeadHash(const char *stem, int len)
{
	uint32		h = hash_bytes((const unsigned char *) stem, len);
	uint16		r = (uint16) (h ^ (h >> 16));

	return r == 0 ? 1 : r;
}

/* ---- documents ---- */

typedef struct Occ
{
	char	   *term;
	int			len;
	int			field;
} Occ;

typedef struct DocCollect
{
	const char *language;
	Occ		   *occ;
	int			nocc;
	int			maxocc;
	int			nwords[SS_NFIELDS];
} DocCollect;

static void
add_occ(DocCollect *dc, const char *term, int len, int field)
{
	if (dc->nocc >= dc->maxocc)
	{
		dc->maxocc *= 2;
		dc->occ = repalloc(dc->occ, sizeof(Occ) * dc->maxocc);
	}
	dc->occ[dc->nocc].term = pnstrdup(term, len);
	dc->occ[dc->nocc].len = len;
	dc->occ[dc->nocc].field = field;
	dc->nocc++;
}

static void
doc_word_cb(void *arg, const char *word, int len, int field, SsTokKind kind)
{
	DocCollect *dc = (DocCollect *) arg;
	char		stem[SS_MAX_TERM_LEN + 8];
	int			slen;

	if (kind == SS_TOK_WORD)
		dc->nwords[field]++;
	else if (field == 2)
		return;					/* only titles and brands add terms */
	else
		field = 2;				/* added terms weigh as the description's */
	add_occ(dc, word, len, field);
	slen = SsStem(dc->language, word, len, stem, sizeof(stem));
	/* a stem equal to the word is found through the word's exact term */
	if (slen - 1 != len || memcmp(stem + 1, word, len) != 0)
		add_occ(dc, stem, slen, field);
}

static int
occ_cmp(const void *a, const void *b)
{
	const Occ  *x = (const Occ *) a;
	const Occ  *y = (const Occ *) b;
	int			c = memcmp(x->term, y->term, Min(x->len, y->len));

	if (c != 0)
		return c;
	return x->len - y->len;
}

/* Bytes one term takes in a pending item and in the term budget. */
#define TERM_RECORD_SIZE(len) (3 + (len))

/*
 * SsDocFromDatum: tokenize a shop.search_doc composite into out (allocated
 * in the current memory context): stored values, field lengths and the
 * sorted, deduplicated term list with packed per-field frequencies.  When
 * the term list is over SS_MAX_DOC_TERMS_BYTES, terms found only in the
 * description are dropped from the end of the sorted list until it fits;
 * build and insert apply the same rule, so an index is always the same
 * whatever path a row took into it.
 */
void
SsDocFromDatum(Datum docdatum, const char *language, SsDocData *out)
{
	HeapTupleHeader th = DatumGetHeapTupleHeader(docdatum);
	Oid			typid = HeapTupleHeaderGetTypeId(th);
	int32		typmod = HeapTupleHeaderGetTypMod(th);
	TupleDesc	tupdesc = lookup_rowtype_tupdesc(typid, typmod);
	HeapTupleData tup;
	Datum		values[8];
	bool		nulls[8];
	DocCollect	dc;
	int			nterms = 0;
	Size		bytes = 0;

	if (tupdesc->natts != 8)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("shop_search documents must be shop.search_doc values")));
	tup.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tup.t_self);
	tup.t_tableOid = InvalidOid;
	tup.t_data = th;
	heap_deform_tuple(&tup, tupdesc, values, nulls);
	ReleaseTupleDesc(tupdesc);

	memset(out, 0, sizeof(*out));
	memset(&dc, 0, sizeof(dc));
	dc.language = language;
	dc.maxocc = 64;
	dc.occ = palloc(sizeof(Occ) * dc.maxocc);

	for (int f = 0; f < SS_NFIELDS; f++)
	{
		if (!nulls[f])
		{
			text	   *t = DatumGetTextPP(values[f]);

			SsAnalyze(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), f, true, doc_word_cb, &dc);
			if (f == 0)
			{
				char		head[SS_MAX_TERM_LEN + 8];
				int			hlen = SsTitleHead(language, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
											   head, sizeof(head));

				if (hlen > 0)
					out->doc.head = SsHeadHash(head, hlen);
			}
			if (f == 1)
			{
				out->doc.brand_hash = SsBrandHash(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				out->doc.flags |= SS_DOC_HAS_BRAND;
			}
		}
		out->doc.len[f] = (uint16) Min(dc.nwords[f], PG_UINT16_MAX);
	}
	if (!nulls[3])
	{
		out->doc.category_id = DatumGetInt64(values[3]);
		out->doc.flags |= SS_DOC_HAS_CAT;
	}
	if (!nulls[4])
	{
		out->doc.price_cents = DatumGetInt64(values[4]);
		out->doc.flags |= SS_DOC_HAS_PRICE;
	}
	if (!nulls[5])
	{
		out->doc.rating = DatumGetFloat4(values[5]);
		out->doc.flags |= SS_DOC_HAS_RATING;
	}
	if (!nulls[6])
	{
		out->doc.flags |= SS_DOC_HAS_STOCK;
		if (DatumGetBool(values[6]))
			out->doc.flags |= SS_DOC_INSTOCK;
	}
	if (!nulls[7])
	{
		out->doc.popularity = Max(DatumGetFloat4(values[7]), 0);
		/* stored as 0 for the boost; sorted scans order it first (sssort.c) */
		if (isnan(DatumGetFloat4(values[7])))
			out->doc.flags |= SS_DOC_POP_NAN;
	}
	out->doc.logpop = log1pf(out->doc.popularity);

	/* sort occurrences, merge equal terms into per-field counts */
	if (dc.nocc > 1)
		qsort(dc.occ, dc.nocc, sizeof(Occ), occ_cmp);
	out->terms = palloc(sizeof(SsDocTerm) * Max(dc.nocc, 1));
	for (int i = 0; i < dc.nocc;)
	{
		int			cnt[SS_NFIELDS] = {0, 0, 0};
		int			j = i;

		while (j < dc.nocc && occ_cmp(&dc.occ[i], &dc.occ[j]) == 0)
			cnt[dc.occ[j++].field]++;
		out->terms[nterms].term = dc.occ[i].term;
		out->terms[nterms].len = dc.occ[i].len;
		out->terms[nterms].tf = SS_TF_PACK(cnt[0], cnt[1], cnt[2]);
		bytes += TERM_RECORD_SIZE(dc.occ[i].len);
		nterms++;
		i = j;
	}
	/* enforce the per-document budget */
	for (int i = nterms - 1; i >= 0 && bytes > SS_MAX_DOC_TERMS_BYTES; i--)
	{
		uint16		tf = out->terms[i].tf;

		if (SS_TF_TITLE(tf) == 0 && SS_TF_BRAND(tf) == 0)
		{
			bytes -= TERM_RECORD_SIZE(out->terms[i].len);
			memmove(&out->terms[i], &out->terms[i + 1], sizeof(SsDocTerm) * (nterms - i - 1));
			nterms--;
		}
	}
	while (bytes > SS_MAX_DOC_TERMS_BYTES && nterms > 0)
	{
		nterms--;
		bytes -= TERM_RECORD_SIZE(out->terms[nterms].len);
	}
	/* filter terms, outside the budget: category, brand, head noun */
	out->terms = repalloc(out->terms, sizeof(SsDocTerm) * (nterms + 3));
	for (int k = 0; k < 3; k++)
	{
		char	   *t;

		if ((k == 0 && !(out->doc.flags & SS_DOC_HAS_CAT)) ||
			(k == 1 && !(out->doc.flags & SS_DOC_HAS_BRAND)) ||
			(k == 2 && out->doc.head == 0))
			continue;
		t = palloc(SS_FILTER_TERM_MAX);
		out->terms[nterms].term = t;
		out->terms[nterms].len = k == 0 ? SsCategoryTerm(out->doc.category_id, t)
			: k == 1 ? SsBrandTerm(out->doc.brand_hash, t)
			: SsHeadTerm(out->doc.head, t);
		out->terms[nterms].tf = 0;
		nterms++;
	}
	out->nterms = nterms;
	pfree(dc.occ);
}

/* SsCategoryTerm: the filter term of a category (see ssearch.h); its length */
int
SsCategoryTerm(int64 category_id, char *out)
{
	return snprintf(out, SS_FILTER_TERM_MAX, "%cc" INT64_FORMAT, SS_FILTER_MARK, category_id);
}

/* SsBrandTerm: the filter term of a brand hash; its length */
int
SsBrandTerm(uint32 brand_hash, char *out)
{
	return snprintf(out, SS_FILTER_TERM_MAX, "%cb%08x", SS_FILTER_MARK, brand_hash);
}

/* SsHeadTerm: the filter term of a title's head noun (SsHeadHash); its length */
int
SsHeadTerm(uint16 head, char *out)
{
	return snprintf(out, SS_FILTER_TERM_MAX, "%ch%04x", SS_FILTER_MARK, head);
}

/*
 * shop.search_head(title text, language text) -> text: the head noun of a
 * title as the index stores it (stemmed; NULL when it has none).
 */
PG_FUNCTION_INFO_V1(shop_search_head);

Datum
shop_search_head(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	char	   *lang = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char		head[SS_MAX_TERM_LEN + 8];
	int			n;

	ShopGetStemmer(lang);		/* complain early about a bad language */
	n = SsTitleHead(lang, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), head, sizeof(head));
	if (n == 0)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text_with_len(head, n));
}

/* ---- SQL: shop.search_tokens(text, language) ---- */

typedef struct TokList
{
	const char *language;
	Tuplestorestate *ts;
	TupleDesc	desc;
	int			pos;
} TokList;

static void
tok_list_cb(void *arg, const char *word, int len, int field)
{
	TokList    *tl = (TokList *) arg;
	char		stem[SS_MAX_TERM_LEN + 8];
	int			slen = SsStem(tl->language, word, len, stem, sizeof(stem));
	Datum		v[3];
	bool		n[3] = {false, false, false};

	v[0] = Int32GetDatum(++tl->pos);
	v[1] = PointerGetDatum(cstring_to_text_with_len(word, len));
	v[2] = PointerGetDatum(cstring_to_text_with_len(stem + 1, slen - 1));
	tuplestore_putvalues(tl->ts, tl->desc, v, n);
}

/*
 * shop.search_tokens(query text, language text) -> TABLE(pos, word, stem):
 * how the index sees a text, for debugging queries.
 */
Datum
shop_search_tokens(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *t = PG_GETARG_TEXT_PP(0);
	char	   *lang = text_to_cstring(PG_GETARG_TEXT_PP(1));
	TokList		tl;

	InitMaterializedSRF(fcinfo, 0);
	ShopGetStemmer(lang);		/* complain early about a bad language */
	tl.language = lang;
	tl.ts = rsinfo->setResult;
	tl.desc = rsinfo->setDesc;
	tl.pos = 0;
	SsTokenize(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), 0, tok_list_cb, &tl);
	return (Datum) 0;
}
