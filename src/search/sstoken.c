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
 * SsTokenize: call cb for every folded word of text[0..len).  Words longer
 * than SS_MAX_TERM_LEN bytes are cut at a character boundary.
 */
void
SsTokenize(const char *text, int len, int field, SsTokenCallback cb, void *arg)
{
	const unsigned char *s = (const unsigned char *) text;
	char		word[SS_MAX_TERM_LEN + 8];
	int			wlen = 0;
	int			i = 0;

	while (i < len)
	{
		uint32		cp;
		int			n = utf8_decode(s + i, len - i, &cp);

		i += n;
		if (is_word_char(cp))
		{
			char		buf[8];
			int			m = fold_char(cp, buf);

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
			cb(arg, word, wlen, field);
			wlen = 0;
		}
	}
	if (wlen > 0)
	{
		word[wlen] = '\0';
		cb(arg, word, wlen, field);
	}
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
doc_word_cb(void *arg, const char *word, int len, int field)
{
	DocCollect *dc = (DocCollect *) arg;
	char		stem[SS_MAX_TERM_LEN + 8];
	int			slen;

	dc->nwords[field]++;
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

			SsTokenize(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), f, doc_word_cb, &dc);
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
	/* filter terms, outside the budget */
	out->terms = repalloc(out->terms, sizeof(SsDocTerm) * (nterms + 2));
	for (int k = 0; k < 2; k++)
	{
		bool		cat = k == 0;
		char	   *t;

		if (!(out->doc.flags & (cat ? SS_DOC_HAS_CAT : SS_DOC_HAS_BRAND)))
			continue;
		t = palloc(SS_FILTER_TERM_MAX);
		out->terms[nterms].term = t;
		out->terms[nterms].len = cat ? SsCategoryTerm(out->doc.category_id, t)
			: SsBrandTerm(out->doc.brand_hash, t);
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
