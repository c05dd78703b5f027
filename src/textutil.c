/*-------------------------------------------------------------------------
 *
 * textutil.c
 *	  Text helpers shared by every subsystem: the card-number guard and the
 *	  Snowball stemmer cache, with their SQL entry points.
 *
 * Card-number guard.  shop never stores a primary account number.  Any
 * argument or jsonb string of a shop call that holds a run of 13 to 19
 * digits (single spaces or dashes between digits ignored) passing the Luhn
 * check is refused with SQLSTATE SH005.  The message never repeats the
 * number and the failing statement is hidden from the server log
 * (errhidestmt), since the statement text would contain it.
 *
 * Windows: inside a run of digit groups ("1234 4242 4242 4242 4242") every
 * span of whole groups is tried, so a card written after another number is
 * still caught.  One exception keeps product barcodes usable: a bare
 * 13- or 14-digit string with a valid GTIN check digit (an EAN-13 or GTIN-14
 * as printed under every barcode) is taken for a barcode.  Card schemes
 * issue 15- to 19-digit numbers today, and no 13- or 14-digit test card is
 * also a valid GTIN (docs/payments.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libstemmer.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "shop.h"

PG_FUNCTION_INFO_V1(shop_card_number_check);
PG_FUNCTION_INFO_V1(shop_contains_card_number);
PG_FUNCTION_INFO_V1(shop_stem);

static bool
luhn_valid(const char *d, int n)
{
	int			sum = 0;

	for (int i = 0; i < n; i++)
	{
		int			v = d[n - 1 - i] - '0';

		if (i % 2 == 1)
		{
			v *= 2;
			if (v > 9)
				v -= 9;
		}
		sum += v;
	}
	return sum % 10 == 0;
}

/* GTIN (EAN/UPC) check digit: weights 3,1,3,... from the right, skipping it. */
static bool
gtin_valid(const char *d, int n)
{
	int			sum = 0;

	for (int i = 1; i < n; i++)
		sum += (d[n - 1 - i] - '0') * ((i % 2 == 1) ? 3 : 1);
	return (10 - sum % 10) % 10 == d[n - 1] - '0';
}

/*
 * Test one run of digit groups.  digits holds the run's digits, starts[g]
 * the index in digits where group g begins (starts[ngroups] = ndigits).
 * lead_alpha / trail_alpha: the run is glued to a letter before / after it.
 *
 * A window of several groups is a card only as a card is printed: groups of
 * at most 6 digits (4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3), not glued to letters.
 * That keeps identifiers out: in a uuid ("07c37119-7506-4185-9d6f-...") the
 * digits between the hex letters and dashes could otherwise add up to a
 * Luhn-valid run.  One unbroken run of 13-19 digits is always checked.
 */
static bool
run_has_card(const char *digits, const int *starts, int ngroups,
			 bool lead_alpha, bool trail_alpha)
{
	for (int first = 0; first < ngroups; first++)
	{
		for (int last = first; last < ngroups; last++)
		{
			int			off = starts[first];
			int			n = starts[last + 1] - off;

			if (last > first &&
				(starts[first + 1] - starts[first] > 6 || starts[last + 1] - starts[last] > 6))
				break;
			if (n > SHOP_CARD_MAX_DIGITS)
				break;
			if (n < SHOP_CARD_MIN_DIGITS)
				continue;
			if (last > first &&
				((first == 0 && lead_alpha) || (last == ngroups - 1 && trail_alpha)))
				continue;
			if (!luhn_valid(digits + off, n))
				continue;
			/* a bare barcode: one group of 13 or 14 digits, GTIN-valid */
			if (first == last && (n == 13 || n == 14) && gtin_valid(digits + off, n))
				continue;
			return true;
		}
	}
	return false;
}

static inline bool
is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/*
 * ShopFindCardNumber: does s[0..len) contain something that looks like a
 * card number?  Pure function, no allocation beyond the stack.
 */
bool
ShopFindCardNumber(const char *s, int len)
{
	char		digits[64];
	int			starts[65];
	int			ndigits = 0;
	int			ngroups = 0;
	bool		lead_alpha = false;
	int			i = 0;

	while (i < len)
	{
		if (s[i] >= '0' && s[i] <= '9')
		{
			if (ndigits == 0)
				lead_alpha = i > 0 && is_alpha(s[i - 1]);
			if (ndigits < (int) sizeof(digits))
			{
				if (ngroups == 0 || (i > 0 && !(s[i - 1] >= '0' && s[i - 1] <= '9')))
					starts[ngroups++] = ndigits;
				digits[ndigits++] = s[i];
			}
			i++;
			continue;
		}
		/* a single separator between two digits continues the run */
		if ((s[i] == ' ' || s[i] == '-') && ndigits > 0 &&
			i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '9' &&
			i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
		{
			i++;
			continue;
		}
		/* end of run */
		if (ndigits >= SHOP_CARD_MIN_DIGITS)
		{
			starts[ngroups] = ndigits;
			if (run_has_card(digits, starts, ngroups, lead_alpha, is_alpha(s[i])))
				return true;
		}
		ndigits = 0;
		ngroups = 0;
		i++;
	}
	if (ndigits >= SHOP_CARD_MIN_DIGITS)
	{
		starts[ngroups] = ndigits;
		if (run_has_card(digits, starts, ngroups, lead_alpha, false))
			return true;
	}
	return false;
}

/*
 * ShopRefuseCardNumberText: raise SH005 if s holds a card number.  "what"
 * names the argument or field for the detail; the number itself is never
 * printed, and the statement is kept out of the server log.
 */
void
ShopRefuseCardNumberText(const char *s, int len, const char *what)
{
	if (s != NULL && ShopFindCardNumber(s, len))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_CARD_NUMBER_REFUSED),
				 errmsg("card number refused"),
				 errdetail("The value of %s looks like a payment card number; shop never stores card numbers.", what),
				 errhint("Tokenize the card with your payment provider and pass the token instead."),
				 errhidestmt(true)));
}

/*
 * ShopRefuseCardNumberJsonb: the same for every key and string (and
 * numeric) scalar anywhere inside a jsonb value.
 */
void
ShopRefuseCardNumberJsonb(Jsonb *jb, const char *what)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (jb == NULL)
		return;
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok != WJB_KEY && tok != WJB_VALUE && tok != WJB_ELEM)
			continue;
		if (v.type == jbvString)
			ShopRefuseCardNumberText(v.val.string.val, v.val.string.len, what);
		else if (v.type == jbvNumeric)
		{
			char	   *num = DatumGetCString(DirectFunctionCall1(numeric_out,
																  NumericGetDatum(v.val.numeric)));

			ShopRefuseCardNumberText(num, strlen(num), what);
			pfree(num);
		}
	}
}

/*
 * shop._card_number_check(value text, what text) -> void
 * shop._card_number_check(value jsonb, what text) -> void (via the jsonb
 * variant below).  Used by the SQL-language parts of the API.
 */
Datum
shop_card_number_check(PG_FUNCTION_ARGS)
{
	const char *what = PG_ARGISNULL(1) ? "an argument" : text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	if (get_fn_expr_argtype(fcinfo->flinfo, 0) == JSONBOID)
		ShopRefuseCardNumberJsonb(PG_GETARG_JSONB_P(0), what);
	else
	{
		text	   *t = PG_GETARG_TEXT_PP(0);

		ShopRefuseCardNumberText(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), what);
	}
	PG_RETURN_VOID();
}

/* shop.contains_card_number(value text) -> boolean, for applications. */
Datum
shop_contains_card_number(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_BOOL(ShopFindCardNumber(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)));
}

/*
 * Stemmer cache: one sb_stemmer per language for the life of the backend
 * (libstemmer allocates with malloc; the handles are never freed).
 */
#define MAX_STEMMERS 32
static struct
{
	char		language[32];
	struct sb_stemmer *stemmer;
}			stemmers[MAX_STEMMERS];
static int	nstemmers = 0;

struct sb_stemmer *
ShopGetStemmer(const char *language)
{
	struct sb_stemmer *st;

	for (int i = 0; i < nstemmers; i++)
		if (strcmp(stemmers[i].language, language) == 0)
			return stemmers[i].stemmer;
	if (strlen(language) >= sizeof(stemmers[0].language))
		st = NULL;
	else
		st = sb_stemmer_new(language, "UTF_8");
	if (st == NULL)
	{
		const char **l = sb_stemmer_list();
		StringInfoData buf;

		initStringInfo(&buf);
		for (; *l; l++)
			appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", *l);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown stemming language \"%s\"", language),
				 errdetail("Known languages: %s.", buf.data)));
	}
	if (nstemmers >= MAX_STEMMERS)
		elog(ERROR, "too many stemming languages in use");
	strlcpy(stemmers[nstemmers].language, language, sizeof(stemmers[0].language));
	stemmers[nstemmers].stemmer = st;
	nstemmers++;
	return st;
}

/*
 * shop.stem(word text, language text DEFAULT 'english') -> text
 * The Snowball stem of one lower-cased word.
 */
Datum
shop_stem(PG_FUNCTION_ARGS)
{
	text	   *word = PG_GETARG_TEXT_PP(0);
	char	   *lang = text_to_cstring(PG_GETARG_TEXT_PP(1));
	struct sb_stemmer *st = ShopGetStemmer(lang);
	char	   *lower;
	const sb_symbol *res;

	lower = str_tolower(VARDATA_ANY(word), VARSIZE_ANY_EXHDR(word), DEFAULT_COLLATION_OID);
	res = sb_stemmer_stem(st, (const sb_symbol *) lower, strlen(lower));
	if (res == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	PG_RETURN_TEXT_P(cstring_to_text_with_len((const char *) res, sb_stemmer_length(st)));
}
