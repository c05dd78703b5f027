/*-------------------------------------------------------------------------
 *
 * textutil.c
 *	  Text helpers shared by every subsystem: the card-number detector, the
 *	  guard trigger that keeps card numbers out of every stored text column,
 *	  and the Snowball stemmer cache, with their SQL entry points.
 *
 * Card-number detector.  shop never stores a primary account number (PAN)
 * and never lets one reach the server log (docs/security.md).  One scanner
 * answers "does this text hold a card number?" for the argument checks of
 * the API, the guard trigger on every shop table and the log redaction of
 * redact.c (which also uses it to mask what it finds, in place).
 *
 * What is a card number.  A span of 12 to 19 digits that
 *   - starts with an issuer identification number (IIN) of a card brand and
 *     has a length that brand issues (card_brands[] below: Visa 4 / 13, 16,
 *     19; Mastercard 51-55, 2221-2720 / 16; Amex 34, 37 / 15; ...), and
 *   - passes the Luhn check,
 * written either unbroken ("4111111111111111") or in groups as cards are
 * printed and typed: a first group of 4 to 6 digits, middle groups of 3 to
 * 6, a last group of 1 to 6 (4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3, ...), or
 * digit by digit ("4 1 1 1 1 ...").
 *
 * What counts as a digit and as a separator.  Normalisation is done here,
 * NFKC-like but only for what matters, without any library:
 *   digits      ASCII, full-width (U+FF10..), every Unicode decimal digit
 *               block (Arabic-Indic, Devanagari, ..., mathematical), and the
 *               super/subscript and circled digits NFKC maps to digits;
 *   separators  between two groups, one to three of: space, tab, newline,
 *               CR, dash, dot, NBSP and the other Unicode spaces, the
 *               Unicode hyphens and dashes, minus sign, full-width space,
 *               hyphen and full stop, and the HTML entities &nbsp; &#160;
 *               and similar;
 *   ignorable   zero-width and invisible characters (ZWSP, ZWJ, ZWNJ, word
 *               joiner, BOM, soft hyphen, bidi controls, variation
 *               selectors, combining marks such as the keycap U+20E3) are
 *               skipped wherever they are, also inside a group;
 *   escapes     a backslash escape that stands for one of the above
 *               (\u200B, \uFF14, \t, \x34, U&'\0034' ...) counts as that
 *               character, so that statement text in the server log that
 *               spells a card with escapes is still masked.
 * Other punctuation between groups ("4111/1111/1111/1111") is found only
 * by the list rule (list_scan, below), in one narrow shape, and not in
 * catalog text (SHOP_SCAN_CATALOG).
 * Letters around the digits do not matter: "a4111 1111 1111 1111b" is a
 * card.  The Unicode forms are recognised in UTF-8 databases; in other
 * encodings only ASCII digits and separators are.
 *
 * What is not a card although it may pass the checks above.  Legitimate
 * digit runs must go through, or catalog loads break:
 *   - runs of short groups (sizes "36 37 38 39 40 41 42 43 44 45 46",
 *     ISBN "978-1-4028-9462-6", dates, IP addresses, versions): no window
 *     of whole groups has the shape of a card;
 *   - a bare 12-, 13- or 14-digit number with a valid GS1 check digit: a
 *     UPC-A, EAN-13 or GTIN-14 barcode (cards of those lengths are rare;
 *     16-digit cards are never exempted);
 *   - digits after a decimal point ("0.30000000000000004"): no window
 *     starts right after a single '.';
 *   - phone numbers: E.164 numbers have at most 15 digits, so a window of
 *     at most 15 digits is taken for a phone number when the run follows a
 *     '+', when a word such as "tel", "phone", "fax", "mobile", "cell" or
 *     "imei" precedes it closely, or when it is the value of a jsonb key
 *     naming a phone (SHOP_SCAN_PHONE);
 *   - hexadecimal identifiers: a canonical uuid (also one whose first
 *     group has no digit, found from a later group), or a word of 24 or
 *     more hex digits with a letter (object ids, md5, sha1, ...), is
 *     skipped whole.
 * Numbers of 20 digits or more in one unbroken run are never cards.
 *
 * Cost.  No allocation.  A value with fewer than 12 bytes that could be a
 * digit (ASCII digits, backslashes, UTF-8 lead bytes) is done with in one
 * tight pass; in the others, bytes that cannot start a run are skipped in
 * a tight loop, the characters of runs are classified through a 128-entry
 * table (ASCII) or an 8 kB bitmap of the BMP, and windows are tried only
 * when a group ends and the run holds 12 digits.  docs/security.md has the
 * measurements.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libstemmer.h"
#include "access/htup_details.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/arrayaccess.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/formatting.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"

#include "shop.h"

PG_FUNCTION_INFO_V1(shop_card_number_check);
PG_FUNCTION_INFO_V1(shop_contains_card_number);
PG_FUNCTION_INFO_V1(shop_contains_card_number_any);
PG_FUNCTION_INFO_V1(shop_card_guard);
PG_FUNCTION_INFO_V1(shop_card_guard_reads);
PG_FUNCTION_INFO_V1(shop_stem);

/* ----------------------------------------------------------------------
 * Card brands
 * ----------------------------------------------------------------------
 */

#define LEN(n)			(1u << (n))
#define LEN_RANGE(a, b)	((LEN((b) + 1) - 1) & ~(LEN(a) - 1))

typedef struct CardBrand
{
	int			lo;				/* IIN range, as a number of ndig digits */
	int			hi;
	int			ndig;
	uint32		lengths;		/* bit n set: n-digit numbers are issued */
} CardBrand;

/*
 * IIN ranges and lengths as the brands publish them (and as collected in
 * ISO/IEC 7812 registries).  Overlaps are harmless: a number is a card when
 * any entry matches.  UATP (1, 15 digits) is left out on purpose: it is no
 * PCI brand, and 15-digit numbers starting with 1 are everywhere.
 */
static const CardBrand card_brands[] = {
	{4, 4, 1, LEN(13) | LEN(16) | LEN(19)},	/* Visa (incl. Electron) */
	{51, 55, 2, LEN(16)},		/* Mastercard */
	{2221, 2720, 4, LEN(16)},	/* Mastercard 2-series */
	{34, 34, 2, LEN(15)},		/* American Express */
	{37, 37, 2, LEN(15)},
	{6011, 6011, 4, LEN_RANGE(16, 19)},	/* Discover */
	{644, 649, 3, LEN_RANGE(16, 19)},
	{65, 65, 2, LEN_RANGE(16, 19)},	/* Discover, RuPay, Troy */
	{622126, 622925, 6, LEN_RANGE(16, 19)},	/* Discover (co-branded) */
	{3528, 3589, 4, LEN_RANGE(16, 19)},	/* JCB */
	{3088, 3094, 4, LEN_RANGE(16, 19)},	/* JCB, older ranges */
	{3096, 3102, 4, LEN_RANGE(16, 19)},
	{3112, 3120, 4, LEN_RANGE(16, 19)},
	{3158, 3159, 4, LEN_RANGE(16, 19)},
	{3337, 3349, 4, LEN_RANGE(16, 19)},
	{300, 305, 3, LEN_RANGE(14, 19)},	/* Diners Club */
	{3095, 3095, 4, LEN_RANGE(14, 19)},
	{36, 36, 2, LEN_RANGE(14, 19)},
	{38, 39, 2, LEN_RANGE(14, 19)},
	{62, 62, 2, LEN_RANGE(16, 19)},	/* UnionPay */
	{81, 81, 2, LEN_RANGE(16, 19)},	/* UnionPay, RuPay */
	{82, 82, 2, LEN(16)},		/* RuPay */
	{50, 50, 2, LEN_RANGE(12, 19)},	/* Maestro, Dankort 5019, Verve 506 */
	{56, 69, 2, LEN_RANGE(12, 19)},	/* Maestro */
	{2200, 2204, 4, LEN_RANGE(16, 19)},	/* Mir */
	{9792, 9792, 4, LEN(16)},	/* Troy */
	{8600, 8600, 4, LEN(16)},	/* UzCard */
	{9860, 9860, 4, LEN(16)},	/* Humo */
};

/* d[0..n) are digit values, 12 <= n <= 19 */
static bool
card_brand_match(const uint8 *d, int n)
{
	int			p6 = d[0] * 100000 + d[1] * 10000 + d[2] * 1000 + d[3] * 100 + d[4] * 10 + d[5];
	static const int div[7] = {0, 100000, 10000, 1000, 100, 10, 1};

	for (int i = 0; i < lengthof(card_brands); i++)
	{
		const CardBrand *b = &card_brands[i];
		int			p = p6 / div[b->ndig];

		if (p >= b->lo && p <= b->hi && (b->lengths & LEN(n)))
			return true;
	}
	return false;
}

static bool
luhn_valid(const uint8 *d, int n)
{
	int			sum = 0;

	for (int i = 0; i < n; i++)
	{
		int			v = d[n - 1 - i];

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

/* GS1 (UPC, EAN, GTIN) check digit: weights 3,1,3,... from the right. */
static bool
gs1_valid(const uint8 *d, int n)
{
	int			sum = 0;

	for (int i = 1; i < n; i++)
		sum += d[n - 1 - i] * ((i % 2 == 1) ? 3 : 1);
	return (10 - sum % 10) % 10 == d[n - 1];
}

/* ----------------------------------------------------------------------
 * Character classes
 * ----------------------------------------------------------------------
 */

typedef enum CharClass
{
	CC_OTHER = 0,				/* ends a run of digits */
	CC_DIGIT,					/* a decimal digit; value in *val */
	CC_SEP,						/* may stand between two groups */
	CC_DOT,						/* a separator that is a full stop */
	CC_IGNORE					/* invisible: skipped everywhere */
} CharClass;

static uint8 ascii_class[128];

/*
 * Bytes that can matter outside a run of digits: ASCII digits, the
 * backslash of an escape, and (in UTF-8) every lead byte of a multi-byte
 * character.  Everything else is skipped without a look.
 */
static uint8 may_start_run[256];

/* BMP code points that are not CC_OTHER, one bit each (8 kB) */
static uint8 bmp_interesting[65536 / 8];
static bool tables_ready = false;

static CharClass unicode_class(int32 cp, int *val);

static void
init_tables(void)
{
	for (int c = '0'; c <= '9'; c++)
		ascii_class[c] = CC_DIGIT;
	ascii_class[' '] = ascii_class['\t'] = ascii_class['\n'] = CC_SEP;
	ascii_class['\r'] = ascii_class['\v'] = ascii_class['\f'] = CC_SEP;
	ascii_class['-'] = CC_SEP;
	ascii_class['.'] = CC_DOT;

	for (int c = '0'; c <= '9'; c++)
		may_start_run[c] = 1;
	may_start_run['\\'] = 1;
	for (int c = 0xC2; c <= 0xF4; c++)
		may_start_run[c] = 1;

	for (int32 cp = 0x80; cp < 0x10000; cp++)
	{
		int			val;

		if (unicode_class(cp, &val) != CC_OTHER)
			bmp_interesting[cp >> 3] |= (uint8) (1 << (cp & 7));
	}
	tables_ready = true;
}

static inline bool
is_ascii_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool
is_ascii_letter(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool
is_ascii_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * Code points of the digit zero of every Unicode block of ten contiguous
 * decimal digits (general category Nd), ASCII excepted.  Sorted.
 */
static const int32 unicode_zeros[] = {
	0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6,
	0x0C66, 0x0CE6, 0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090,
	0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40,
	0x1C50, 0x2080, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
	0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0,
	0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50,
	0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2,
	0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0
};

/* digit value of a non-ASCII code point, or -1 */
static int
unicode_digit(int32 cp)
{
	int			lo = 0,
				hi = lengthof(unicode_zeros) - 1;

	/* superscripts (NFKC maps them to digits); subscripts are a block */
	switch (cp)
	{
		case 0x2070:
			return 0;
		case 0x00B9:
			return 1;
		case 0x00B2:
			return 2;
		case 0x00B3:
			return 3;
		case 0x24EA:			/* circled digit zero */
			return 0;
	}
	if (cp >= 0x2074 && cp <= 0x2079)
		return cp - 0x2070;
	if (cp >= 0x2460 && cp <= 0x2468)	/* circled digits one to nine */
		return cp - 0x2460 + 1;

	if (cp < unicode_zeros[0])
		return -1;
	while (lo < hi)
	{
		int			mid = (lo + hi + 1) / 2;

		if (unicode_zeros[mid] <= cp)
			lo = mid;
		else
			hi = mid - 1;
	}
	return (cp - unicode_zeros[lo] < 10) ? cp - unicode_zeros[lo] : -1;
}

static CharClass
unicode_class(int32 cp, int *val)
{
	int			d;

	switch (cp)
	{
		case 0x00A0:			/* no-break space */
		case 0x1680:			/* ogham space mark */
		case 0x2027:			/* hyphenation point */
		case 0x2028:			/* line separator */
		case 0x2029:			/* paragraph separator */
		case 0x202F:			/* narrow no-break space */
		case 0x205F:			/* medium mathematical space */
		case 0x2212:			/* minus sign */
		case 0x3000:			/* ideographic (full-width) space */
		case 0x301C:			/* wave dash */
		case 0x30FB:			/* katakana middle dot */
		case 0x30FC:			/* katakana-hiragana prolonged sound mark */
		case 0xFE58:			/* small em dash */
		case 0xFE63:			/* small hyphen-minus */
		case 0xFF0D:			/* full-width hyphen-minus */
		case 0xFF5E:			/* full-width tilde */
		case 0xFF65:			/* half-width katakana middle dot */
		case 0xFF70:			/* half-width prolonged sound mark */
		case 0x00B7:			/* middle dot */
			return CC_SEP;
		case 0x2024:			/* one dot leader */
		case 0xFF0E:			/* full-width full stop */
			return CC_DOT;
		case 0x00AD:			/* soft hyphen */
		case 0x061C:			/* arabic letter mark */
		case 0x180E:			/* mongolian vowel separator */
		case 0xFEFF:			/* zero-width no-break space (BOM) */
			return CC_IGNORE;
	}
	if ((cp >= 0x2000 && cp <= 0x200A) ||	/* en quad .. hair space */
		(cp >= 0x2010 && cp <= 0x2015))	/* hyphen .. horizontal bar */
		return CC_SEP;
	if ((cp >= 0x200B && cp <= 0x200F) ||	/* ZWSP, ZWNJ, ZWJ, LRM, RLM */
		(cp >= 0x202A && cp <= 0x202E) ||	/* bidi embeddings */
		(cp >= 0x2060 && cp <= 0x206F) ||	/* word joiner, invisible ops */
		(cp >= 0x0300 && cp <= 0x036F) ||	/* combining diacritics */
		(cp >= 0x20D0 && cp <= 0x20FF) ||	/* combining marks for symbols */
		(cp >= 0xFE00 && cp <= 0xFE0F) ||	/* variation selectors */
		(cp >= 0xE0000 && cp <= 0xE01EF))	/* tags, variation sel. supp. */
		return CC_IGNORE;
	d = unicode_digit(cp);
	if (d >= 0)
	{
		*val = d;
		return CC_DIGIT;
	}
	return CC_OTHER;
}

/* HTML entities that stand for a space or for nothing between digits */
static const struct
{
	const char *name;
	uint8		len;
	uint8		cls;
}			html_entities[] = {
	{"&nbsp;", 6, CC_SEP},
	{"&#160;", 6, CC_SEP},
	{"&#xa0;", 6, CC_SEP},
	{"&#32;", 5, CC_SEP},
	{"&#x20;", 6, CC_SEP},
	{"&ensp;", 6, CC_SEP},
	{"&emsp;", 6, CC_SEP},
	{"&thinsp;", 8, CC_SEP},
	{"&shy;", 5, CC_IGNORE},
	{"&#173;", 6, CC_IGNORE},
	{"&#xad;", 6, CC_IGNORE},
	{"&#8203;", 7, CC_IGNORE},
	{"&#x200b;", 8, CC_IGNORE},
	{"&zwj;", 5, CC_IGNORE},
	{"&zwnj;", 6, CC_IGNORE},
};

static inline int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * A backslash escape at s[i], as statement text and JSON write characters:
 * \uXXXX and \UXXXXXXXX (E'' strings, JSON), \XXXX and \+XXXXXX (U&''
 * strings), \xHH and \ooo (E'' strings), \t \n \r \f \v.  The escape
 * stands for the character it denotes, so that a statement that spells a
 * card's digits or separators with escapes is still seen (and masked) in
 * the server log.  Anything else is a lone backslash (CC_OTHER).
 */
static CharClass
escape_class(const unsigned char *s, int i, int len, int *clen, int *val)
{
	int			n = len - i;	/* bytes available, backslash included */
	int32		cp = -1;
	int			elen = 0;
	CharClass	cls;

	if (n >= 2)
	{
		switch (s[i + 1])
		{
			case 't':
			case 'n':
			case 'r':
			case 'f':
			case 'v':
				*clen = 2;
				return CC_SEP;
			case 'u':
			case 'U':
			case '+':
			case 'x':
				{
					int			want = s[i + 1] == 'u' ? 4 : s[i + 1] == 'U' ? 8 : s[i + 1] == '+' ? 6 : 2;
					int			k;

					cp = 0;
					for (k = 0; k < want && i + 2 + k < len; k++)
					{
						int			h = hex_value(s[i + 2 + k]);

						if (h < 0)
							break;
						cp = (cp << 4) | h;
					}
					/* \x takes one or two hex digits, the others all of theirs */
					if (k == want || (s[i + 1] == 'x' && k >= 1))
						elen = 2 + k;
					break;
				}
			default:
				if (n >= 5 && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0 &&
					hex_value(s[i + 3]) >= 0 && hex_value(s[i + 4]) >= 0)
				{
					cp = (hex_value(s[i + 1]) << 12) | (hex_value(s[i + 2]) << 8) |
						(hex_value(s[i + 3]) << 4) | hex_value(s[i + 4]);
					elen = 5;
				}
				else if (s[i + 1] >= '0' && s[i + 1] <= '7')
				{
					int			k;

					cp = 0;
					for (k = 0; k < 3 && i + 1 + k < len && s[i + 1 + k] >= '0' && s[i + 1 + k] <= '7'; k++)
						cp = (cp << 3) | (s[i + 1 + k] - '0');
					elen = 1 + k;
				}
				break;
		}
	}
	if (elen == 0 || cp < 0 || cp > 0x10FFFF)
		return CC_OTHER;
	if (cp < 0x80)
		cls = (CharClass) ascii_class[cp];
	else
		cls = unicode_class(cp, val);
	/*
	 * Only an escape that stands for a digit, separator or invisible
	 * character counts as one; otherwise the backslash alone is an ordinary
	 * character and what follows it is read as written ("C:\4111 ...").
	 */
	if (cls == CC_OTHER)
		return CC_OTHER;
	if (cls == CC_DIGIT && cp < 0x80)
		*val = cp - '0';
	*clen = elen;
	return cls;
}

/*
 * Class of the character at s[i] (i < len); its length in bytes goes to
 * *clen and a digit's value to *val.  Never reads past len.
 */
static inline CharClass
char_class(const unsigned char *s, int i, int len, bool utf8, int *clen, int *val)
{
	unsigned char c = s[i];
	int32		cp;
	int			n;

	*clen = 1;
	if (c < 0x80)
	{
		CharClass	cls = (CharClass) ascii_class[c];

		if (cls == CC_DIGIT)
			*val = c - '0';
		else if (c == '\\')
			return escape_class(s, i, len, clen, val);
		else if (c == '&')
		{
			for (int k = 0; k < lengthof(html_entities); k++)
			{
				int			el = html_entities[k].len;

				if (i + el <= len && pg_strncasecmp((const char *) s + i, html_entities[k].name, el) == 0)
				{
					*clen = el;
					return (CharClass) html_entities[k].cls;
				}
			}
		}
		return cls;
	}
	if (!utf8)
		return CC_OTHER;
	/* decode one UTF-8 sequence; anything malformed is one CC_OTHER byte */
	if (c >= 0xC2 && c <= 0xDF)
	{
		n = 2;
		cp = c & 0x1F;
	}
	else if (c >= 0xE0 && c <= 0xEF)
	{
		n = 3;
		cp = c & 0x0F;
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		n = 4;
		cp = c & 0x07;
	}
	else
		return CC_OTHER;
	if (i + n > len)
		return CC_OTHER;
	for (int k = 1; k < n; k++)
	{
		if ((s[i + k] & 0xC0) != 0x80)
			return CC_OTHER;
		cp = (cp << 6) | (s[i + k] & 0x3F);
	}
	*clen = n;
	if (cp < 0x10000 && !(bmp_interesting[cp >> 3] & (1 << (cp & 7))))
		return CC_OTHER;
	return unicode_class(cp, val);
}

/* ----------------------------------------------------------------------
 * The scanner
 * ----------------------------------------------------------------------
 */

#define CARD_MIN		SHOP_CARD_MIN_DIGITS	/* shortest card (Maestro) */
#define CARD_MAX		SHOP_CARD_MAX_DIGITS	/* longest card */
#define PHONE_MAX		15		/* longest E.164 phone number */
#define MAX_SEPS		3		/* separator characters between two groups */
#define SCAN_DIGITS		48
#define SCAN_GROUPS		24
#define SCAN_KEEP		32

typedef struct CardScan
{
	unsigned char *s;			/* written only when redacting */
	int			len;
	int			flags;
	bool		utf8;
	bool		redact;			/* mask every card found, keep going */
	int			found;			/* cards found so far */

	/* the run of digit groups being read */
	bool		in_run;
	int			run_start;		/* byte offset of its first digit */
	int			run_end;		/* byte offset after its last digit */
	bool		run_plus;		/* directly preceded by '+' */
	int			nsep;			/* separator characters since the last digit */
	bool		sep_dot;		/* and they are a single full stop */
	bool		tainted;		/* a card was found in this run */
	int			mask_from;		/* byte offset of the first card's first digit */
	int			nkeep;			/* digits left unmasked: last four of each card */
	int			keep[SCAN_KEEP];

	/*
	 * The recent groups of the run: those that may still start a window of
	 * at most CARD_MAX digits.  Digits are stored contiguously, group by
	 * group; the last group is the open one.
	 */
	int			nd;
	uint8		dval[SCAN_DIGITS];
	int			dpos[SCAN_DIGITS];	/* byte offset of each digit */
	int			ng;
	int			gfirst[SCAN_GROUPS];	/* index of the group's first digit */
	int			glen[SCAN_GROUPS];	/* digits in the group (may exceed
									 * CARD_MAX: then not all stored) */
	bool		gdot[SCAN_GROUPS];	/* preceded by a single full stop */
	bool		grunfirst[SCAN_GROUPS];	/* the first group of the run */

	/*
	 * Where the list rule (list_scan) starts: the first run in which a group
	 * of four digits or more ends at a list separator followed by an ASCII
	 * digit; -1: none, and no list-shaped card either.
	 */
	int			list_from;
} CardScan;

static inline bool list_sep_char(unsigned char c);

static const char *const phone_words[] = {
	"tel", "phone", "fax", "mobile", "cell", "imei", "whatsapp", "sms"
};

/* Does a phone word start at a word boundary in the 24 bytes before pos? */
static bool
phone_word_before(const CardScan *cs, int pos)
{
	int			from = Max(0, pos - 24);

	for (int w = 0; w < lengthof(phone_words); w++)
	{
		int			wl = strlen(phone_words[w]);

		for (int p = from; p + wl <= pos; p++)
		{
			if ((cs->s[p] | 0x20) == phone_words[w][0] &&
				(p == 0 || !is_ascii_letter(cs->s[p - 1])) &&
				pg_strncasecmp((const char *) cs->s + p, phone_words[w], wl) == 0)
				return true;
		}
	}
	return false;
}

/*
 * Is the window of groups f..l shaped as cards are written?  Unbroken; or
 * a first group of 4 to 6 digits, middle groups of 3 to 6, a last group of
 * 1 to 6; or spaced out digit by digit ("4 1 1 1 ...", which is also what
 * search folding makes of a number typed with a zero-width space after
 * every digit).
 */
static bool
window_shape(const CardScan *cs, int f, int l)
{
	bool		single = true;

	if (f == l)
		return true;
	for (int g = f; g <= l && single; g++)
		single = (cs->glen[g] == 1);
	if (single)
		return true;
	if (cs->glen[f] < 4 || cs->glen[f] > 6 || cs->glen[l] > 6)
		return false;
	for (int g = f + 1; g < l; g++)
		if (cs->glen[g] < 3 || cs->glen[g] > 6)
			return false;
	return true;
}

/*
 * The open group has ended: try every window of whole groups that ends
 * with it.  Returns true when a card is found and the scan should stop.
 */
static bool
close_group(CardScan *cs)
{
	int			l = cs->ng - 1;
	int			end;

	if (l < 0)
		return false;
	if (cs->glen[l] > CARD_MAX)
	{
		/* no window can contain this group: forget everything so far */
		cs->ng = cs->nd = 0;
		return false;
	}
	end = cs->gfirst[l] + cs->glen[l];
	if (end < CARD_MIN)
		return false;			/* too few digits in the run so far */
	for (int f = l; f >= 0; f--)
	{
		int			n = end - cs->gfirst[f];
		const uint8 *d = cs->dval + cs->gfirst[f];

		if (n > CARD_MAX)
			break;
		/* cheapest tests first: no brand's number starts with 0, 1 or 7 */
		if (n < CARD_MIN || cs->gdot[f] || d[0] <= 1 || d[0] == 7 ||
			!window_shape(cs, f, l))
			continue;
		if (!luhn_valid(d, n) || !card_brand_match(d, n))
			continue;
		/* a bare barcode: UPC-A, EAN-13, GTIN-14 */
		if (f == l && n <= 14 && gs1_valid(d, n))
			continue;
		/* a phone number */
		if (n <= PHONE_MAX &&
			((cs->flags & SHOP_SCAN_PHONE) ||
			 (cs->run_plus && cs->grunfirst[f]) ||
			 phone_word_before(cs, cs->run_start)))
			continue;

		cs->found++;
		if (!cs->redact)
			return true;
		if (!cs->tainted)
			cs->mask_from = cs->dpos[cs->gfirst[f]];
		cs->tainted = true;
		for (int k = end - 4; k < end; k++)
			if (cs->nkeep < SCAN_KEEP)
				cs->keep[cs->nkeep++] = cs->dpos[k];
		/* later windows start after this card */
		cs->ng = cs->nd = 0;
		return false;
	}
	return false;
}

/* Start a new group; first drop groups that can no longer start a window. */
static void
open_group(CardScan *cs, bool runfirst, bool dot)
{
	int			drop = 0;

	while (drop < cs->ng && cs->nd - cs->gfirst[drop] >= CARD_MAX)
		drop++;
	if (drop > 0)
	{
		int			off = (drop < cs->ng) ? cs->gfirst[drop] : cs->nd;

		memmove(cs->dval, cs->dval + off, cs->nd - off);
		memmove(cs->dpos, cs->dpos + off, (cs->nd - off) * sizeof(int));
		cs->nd -= off;
		cs->ng -= drop;
		for (int g = 0; g < cs->ng; g++)
		{
			cs->gfirst[g] = cs->gfirst[g + drop] - off;
			cs->glen[g] = cs->glen[g + drop];
			cs->gdot[g] = cs->gdot[g + drop];
			cs->grunfirst[g] = cs->grunfirst[g + drop];
		}
	}
	Assert(cs->ng < SCAN_GROUPS);
	cs->gfirst[cs->ng] = cs->nd;
	cs->glen[cs->ng] = 0;
	cs->gdot[cs->ng] = dot;
	cs->grunfirst[cs->ng] = runfirst;
	cs->ng++;
}

/*
 * Replace a digit of clen bytes by a mask of the same byte length: '*' for
 * an ASCII digit, a character of as many bytes for a UTF-8 one, as many
 * '*' as the escape has characters for a backslash escape.
 */
static void
mask_digit(unsigned char *p, int clen)
{
	if (p[0] == '\\')
	{
		memset(p, '*', clen);
		return;
	}
	switch (clen)
	{
		case 1:
			p[0] = '*';
			break;
		case 2:					/* U+00D7 multiplication sign */
			p[0] = 0xC3;
			p[1] = 0x97;
			break;
		case 3:					/* U+FF0A full-width asterisk */
			p[0] = 0xEF;
			p[1] = 0xBC;
			p[2] = 0x8A;
			break;
		default:				/* U+1F512 lock */
			p[0] = 0xF0;
			p[1] = 0x9F;
			p[2] = 0x94;
			p[3] = 0x92;
			break;
	}
}

/*
 * The run has ended.  When a card was found in it, mask every digit from
 * the first card's first digit to the end of the run (what follows a card
 * in the same run may be the rest of a longer one, or its CVC), but the
 * last four of each card.  Digits before the first card (an order number)
 * stay.  The character count stays the same (error positions stay right)
 * and so does the byte length.
 */
static bool
end_run(CardScan *cs)
{
	if (!cs->in_run)
		return false;
	cs->in_run = false;
	if (close_group(cs))
		return true;
	if (cs->tainted)
	{
		int			i = cs->mask_from;

		while (i < cs->run_end)
		{
			int			clen,
						val;

			if (char_class(cs->s, i, cs->len, cs->utf8, &clen, &val) == CC_DIGIT)
			{
				bool		keep = false;

				for (int k = 0; k < cs->nkeep && !keep; k++)
					keep = (cs->keep[k] == i);
				if (!keep)
					mask_digit(cs->s + i, clen);
			}
			i += clen;
		}
	}
	return false;
}

/*
 * A word of ASCII letters and digits starts at s[i]: if it is a uuid or a
 * long hexadecimal string, return its length (to be skipped), else 0.
 */
static int
hex_word_length(const unsigned char *s, int i, int len)
{
	int			j;
	bool		letter = false;

	if (i + 36 <= len && s[i + 8] == '-' && s[i + 13] == '-' &&
		s[i + 18] == '-' && s[i + 23] == '-' &&
		(i + 36 == len || !is_ascii_alnum(s[i + 36])))
	{
		for (j = 0; j < 36; j++)
			if (j != 8 && j != 13 && j != 18 && j != 23 && !is_ascii_hex(s[i + j]))
				break;
		if (j == 36)
			return 36;
	}
	for (j = i; j < len && is_ascii_hex(s[j]); j++)
		letter |= (s[j] > '9');
	if (j - i >= 24 && letter && (j == len || !is_ascii_alnum(s[j])))
		return j - i;
	return 0;
}

/*
 * The word at s[ws] follows a '-': is it a later group of a uuid?  (A
 * uuid whose first group has no digit is not seen from its start.)
 * Returns where the uuid starts, or -1.
 */
static int
uuid_around(const unsigned char *s, int ws, int len)
{
	static const int group_start[] = {9, 14, 19, 24};

	if (ws == 0 || s[ws - 1] != '-')
		return -1;
	for (int k = 0; k < lengthof(group_start); k++)
	{
		int			p = ws - group_start[k];

		if (p < 0)
			break;
		if ((p == 0 || !is_ascii_alnum(s[p - 1])) && hex_word_length(s, p, len) == 36)
			return p;
	}
	return -1;
}

/*
 * Scan cs->s[0..len).  Returns true when a card was found (and, unless
 * redacting, stops there).
 *
 * Outside a run of digits only a digit can start one, so bytes that cannot
 * begin a digit are skipped in a tight loop.  Uuids and long hex words are
 * recognised lazily: only when a sequence of ASCII digits starts is its
 * word (the letters and digits around it) looked at, once per word.
 */
static bool
card_scan(CardScan *cs)
{
	const unsigned char *s = cs->s;
	int			len = cs->len;
	int			i = 0;
	int			word_start = -1;	/* the last word found not hex-like */
	int			word_known = -1;	/* ... and known to extend up to here */

	if (unlikely(!tables_ready))
		init_tables();
	cs->in_run = false;
	cs->found = 0;
	cs->list_from = -1;

	while (i < len)
	{
		unsigned char c = s[i];
		int			clen,
					val = 0;
		CharClass	cls;

		if (!cs->in_run)
		{
			/* the tight loop most bytes go through */
			while (!may_start_run[c])
			{
				if (++i >= len)
					goto done;
				c = s[i];
			}
			if (c >= 0x80 && !cs->utf8)
			{
				i++;
				continue;
			}
		}

		/* a sequence of ASCII digits starts: is it inside a hex word? */
		if (c >= '0' && c <= '9' && (i == 0 || !(s[i - 1] >= '0' && s[i - 1] <= '9')))
		{
			int			ws = i;

			while (ws > 0 && is_ascii_alnum(s[ws - 1]))
			{
				if (ws - 1 == word_known)
				{
					ws = word_start;
					break;
				}
				ws--;
			}
			if (ws != word_start)
			{
				int			skip = hex_word_length(s, ws, len);
				int			u;

				if (skip == 0 && (u = uuid_around(s, ws, len)) >= 0)
					skip = u + 36 - ws;

				if (skip > 0 && ws + skip > i)
				{
					if (end_run(cs))
						return true;
					i = ws + skip;
					continue;
				}
				word_start = ws;
			}
			word_known = i;
		}

		if (c < 0x80 && c != '&' && c != '\\')
		{
			cls = (CharClass) ascii_class[c];
			val = c - '0';
			clen = 1;
		}
		else
			cls = char_class(s, i, len, cs->utf8, &clen, &val);
		switch (cls)
		{
			case CC_DIGIT:
				if (!cs->in_run)
				{
					cs->in_run = true;
					cs->run_start = i;
					cs->run_plus = (i > 0 && s[i - 1] == '+');
					cs->tainted = false;
					cs->nkeep = 0;
					cs->ng = cs->nd = 0;
					open_group(cs, true, false);
				}
				else if (cs->nsep > 0)
				{
					if (close_group(cs))
						return true;
					open_group(cs, false, cs->sep_dot);
				}
				cs->nsep = 0;
				if (++cs->glen[cs->ng - 1] <= CARD_MAX)
				{
					cs->dval[cs->nd] = (uint8) val;
					cs->dpos[cs->nd] = i;
					cs->nd++;
				}
				cs->run_end = i + clen;
				break;
			case CC_SEP:
			case CC_DOT:
				if (cs->in_run)
				{
					if (cs->nsep < MAX_SEPS)
					{
						cs->nsep++;
						cs->sep_dot = (cs->nsep == 1 && cls == CC_DOT);
					}
					else if (end_run(cs))
						return true;
				}
				break;
			case CC_IGNORE:
				break;
			case CC_OTHER:
				if (cs->in_run)
				{
					/* a hint for the list rule: digits, '/', a digit */
					if (cs->list_from < 0 && cs->nsep == 0 && cs->ng > 0 &&
						cs->glen[cs->ng - 1] >= 4 && list_sep_char(c) &&
						i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '9')
						cs->list_from = cs->run_start;
					if (end_run(cs))
						return true;
				}
				break;
		}
		i += clen;
	}
done:
	if (end_run(cs))
		return true;
	return cs->found > 0;
}

/*
 * The list rule: a card typed with another separator.  Between two groups
 * today's windows take only spaces, dashes and dots (and their Unicode
 * forms), because other punctuation between digit groups is what model
 * lists are made of ("NP-6030/6031/6022/6025", "2481, 2491, 2581, 2591"):
 * the real Icecat catalog has Luhn-valid card shapes among them (card6,
 * withdrawn).  A card typed with slashes, underscores, commas, plus signs,
 * bars, colons ... is still seen, but only in a narrow shape:
 *   - ASCII digits in groups of exactly a card's printed grouping:
 *     4-4-4-4, 4-6-5, 4-6-4, or 4-4-4-4 and a last group of 1 to 3;
 *   - one and the same ASCII punctuation character between every two
 *     groups, nothing else: not '-' or '.', which the windows take, nor a
 *     backslash (a Windows path "C:\Users\4111\1111...", and the escapes
 *     of statement text);
 *   - the groups are the whole list: the character before the first group
 *     is no letter or digit, nor a '-' or '.' after a letter or digit (a
 *     model's prefix: "NP-6030/..."), nor the separator after an item that
 *     holds a digit ("1012/1018/1020/1022/3015"); the same after the last
 *     group (no letter or digit, no separator before an item that holds a
 *     digit, no '-' or '.' before a digit);
 *   - a brand's IIN and length, and the Luhn check.
 * It is applied everywhere but to catalog text (SHOP_SCAN_CATALOG: the
 * guard's 'catalog' columns), where the real catalog's model lists have
 * this shape too ("WorkCentre 5735/5740/5745/5755").  ASCII only, one
 * pass from where card_scan saw the first hint of a list (a group of four
 * digits or more ended by such a character before a digit), no
 * allocation; only on values that may hold a card, in which the windows
 * found none.
 */
static inline bool
list_sep_char(unsigned char c)
{
	return (c >= 0x21 && c <= 0x2F && c != '-' && c != '.') ||
		(c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60 && c != '\\') ||
		(c >= 0x7B && c <= 0x7E);
}

static inline bool
ascii_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* does the item of letters and digits at s[i] (walking by step) hold a digit? */
static bool
list_item_has_digit(const unsigned char *s, int len, int i, int step)
{
	for (; i >= 0 && i < len && is_ascii_alnum(s[i]); i += step)
		if (ascii_digit(s[i]))
			return true;
	return false;
}

static bool
list_scan(CardScan *cs)
{
	unsigned char *s = cs->s;
	int			len = cs->len;
	int			i = cs->list_from;

	cs->found = 0;
	while (i < len)
	{
		int			start,
					glen[6],
					ng = 0,
					j,
					n = 0;
		unsigned char sep = 0;
		uint8		d[CARD_MAX];
		bool		shape;

		if (!ascii_digit(s[i]))
		{
			i++;
			continue;
		}
		start = i;
		/* the groups: digits, then the same separator before each next one */
		j = i;
		for (;;)
		{
			int			g = j;

			while (j < len && ascii_digit(s[j]))
				j++;
			if (ng == lengthof(glen))
			{
				ng++;			/* too many groups: no card */
				break;
			}
			glen[ng++] = j - g;
			if (j + 1 < len && ascii_digit(s[j + 1]) &&
				(sep == 0 ? list_sep_char(s[j]) : s[j] == sep))
			{
				sep = s[j];
				j++;
				continue;
			}
			break;
		}
		/* next candidate: after this run of digits */
		i = start;
		while (i < len && ascii_digit(s[i]))
			i++;
		if (ng < 3 || ng > 5 || glen[0] != 4)
			continue;
		shape = (ng == 3 && glen[1] == 6 && (glen[2] == 5 || glen[2] == 4)) ||
			(ng >= 4 && glen[1] == 4 && glen[2] == 4 && glen[3] == 4 &&
			 (ng == 4 || glen[4] <= 3));
		if (!shape)
			continue;
		/* the groups are the whole list */
		if (start > 0)
		{
			unsigned char p = s[start - 1];

			if (is_ascii_alnum(p))
				continue;
			if ((p == '-' || p == '.') && start > 1 && is_ascii_alnum(s[start - 2]))
				continue;
			if (p == sep && list_item_has_digit(s, len, start - 2, -1))
				continue;
		}
		if (j < len)
		{
			unsigned char q = s[j];

			if (is_ascii_alnum(q))
				continue;
			if ((q == '-' || q == '.') && j + 1 < len && ascii_digit(s[j + 1]))
				continue;
			if (q == sep && list_item_has_digit(s, len, j + 1, 1))
				continue;
		}
		for (int k = start; k < j; k++)
			if (ascii_digit(s[k]))
				d[n++] = (uint8) (s[k] - '0');
		if (!luhn_valid(d, n) || !card_brand_match(d, n))
			continue;
		cs->found++;
		if (!cs->redact)
			return true;
		/* mask every digit but the last four */
		for (int k = start, seen = 0; k < j; k++)
			if (ascii_digit(s[k]) && seen++ < n - 4)
				s[k] = '*';
		i = j;
	}
	return cs->found > 0;
}

/*
 * Could s[0..len) hold 12 digits at all?  Every digit the scanner reads is
 * an ASCII digit, one backslash escape or one multi-byte character, so
 * counting those bytes bounds the digits from above.  Most catalog text
 * has fewer and is done with here, in one tight pass.
 *
 * Eight bytes at a time (issue 11): in each word, the bytes that are an
 * ASCII digit, a backslash, or a byte with its two high bits set (every
 * UTF-8 lead byte, and 0xC0, 0xC1, 0xF5-0xFF, which no valid text has: an
 * overcount, so still a bound) are marked 0x80 exactly (no borrow crosses
 * a byte: each test works on the low seven bits) and counted with one
 * multiply.  The tail goes through the table.  About a third of the
 * instructions of the byte loop.
 */
#define SWAR_ONES	UINT64CONST(0x0101010101010101)
#define SWAR_LOW7	(SWAR_ONES * 0x7F)
#define SWAR_HIGH	(SWAR_ONES * 0x80)

static inline bool
may_hold_card(const unsigned char *s, int len)
{
	int			n = 0;
	int			i = 0;

	if (len < CARD_MIN)
		return false;
	if (unlikely(!tables_ready))
		init_tables();
	for (; i + 8 <= len; i += 8)
	{
		uint64		w,
					low,
					digit,
					lead,
					bs,
					x;

		memcpy(&w, s + i, sizeof(w));
		low = w & SWAR_LOW7;
		/* 0x2F < byte < 0x3A, high bit clear (bit-twiddling "hasbetween") */
		digit = ((SWAR_ONES * (127 + 0x3A) - low) & ~w &
				 (low + SWAR_ONES * (127 - 0x2F))) & SWAR_HIGH;
		/* 0b11xxxxxx */
		lead = w & (w << 1) & SWAR_HIGH;
		/* == '\\' */
		x = w ^ (SWAR_ONES * '\\');
		bs = ~(((x & SWAR_LOW7) + SWAR_LOW7) | x | SWAR_LOW7);
		n += (int) ((((digit | lead | bs) >> 7) * SWAR_ONES) >> 56);
		if (n >= CARD_MIN)
			return true;
	}
	for (; i < len; i++)
	{
		n += may_start_run[s[i]];
		if (n >= CARD_MIN)
			return true;
	}
	return false;
}

/* ASCII hexadecimal digits, for is_skipped_id */
static const bool hex_table[256] = {
	['0'] = 1,['1'] = 1,['2'] = 1,['3'] = 1,['4'] = 1,
	['5'] = 1,['6'] = 1,['7'] = 1,['8'] = 1,['9'] = 1,
	['a'] = 1,['b'] = 1,['c'] = 1,['d'] = 1,['e'] = 1,['f'] = 1,
	['A'] = 1,['B'] = 1,['C'] = 1,['D'] = 1,['E'] = 1,['F'] = 1,
};

/*
 * Is s[0..len) an id the scanner would skip whole?  Two shapes:
 * - a uuid as uuid_out writes it (8-4-4-4-12 hex digits) at the end,
 *   after a prefix of bytes that can start no run (no digit, backslash or
 *   UTF-8 lead byte) whose last is not a letter ("order:<uuid>", a
 *   reservation's ref): the scanner's tight loop passes the prefix, and
 *   hex_word_length or uuid_around skips the uuid from whichever digit of
 *   it the scan meets first;
 * - one hexadecimal word of 24 or more characters with a letter (a
 *   fingerprint, a hash): hex_word_length skips it from its first digit.
 * Checking the shape costs a tenth of getting there through the scan's
 * setup and word checks (about 600 instructions a value; four values of
 * every checkout, issue 11).
 */
static inline bool
is_skipped_id(const unsigned char *s, int len)
{
	if (len >= 36)
	{
		const unsigned char *u = s + len - 36;
		int			j;

		if (u[8] == '-' && u[13] == '-' && u[18] == '-' && u[23] == '-' &&
			(u == s || !is_ascii_alnum(u[-1])))
		{
			for (j = 0; j < 36; j++)
				if (!hex_table[u[j]] && j != 8 && j != 13 && j != 18 && j != 23)
					break;
			if (j == 36)
			{
				for (j = 0; j < len - 36; j++)
					if (may_start_run[s[j]])
						break;
				if (j == len - 36)
					return true;
			}
		}
	}
	if (len >= 24 && hex_table[s[0]])
	{
		bool		letter = false;

		for (int j = 0; j < len; j++)
		{
			if (!hex_table[s[j]])
				return false;
			letter |= (s[j] > '9');
		}
		return letter;
	}
	return false;
}

/*
 * ShopFindCardNumberFlags: does s[0..len) hold a card number?  flags:
 * SHOP_SCAN_PHONE when the value is a phone field.  Pure; no allocation.
 */
bool
ShopFindCardNumberFlags(const char *s, int len, int flags)
{
	CardScan	cs;

	if (!may_hold_card((const unsigned char *) s, len) ||
		is_skipped_id((const unsigned char *) s, len))
		return false;
	cs.s = (unsigned char *) s; /* not written: redact is false */
	cs.len = len;
	cs.flags = flags;
	cs.utf8 = (GetDatabaseEncoding() == PG_UTF8);
	cs.redact = false;
	if (card_scan(&cs))
		return true;
	return !(flags & SHOP_SCAN_CATALOG) && cs.list_from >= 0 && list_scan(&cs);
}

bool
ShopFindCardNumber(const char *s, int len)
{
	return ShopFindCardNumberFlags(s, len, 0);
}

/*
 * ShopRedactCardNumbers: mask, in place, every digit of every run of
 * digits in s[0..len) that holds a card number, but the last four digits
 * of each card.  Byte and character lengths do not change.  Returns the
 * number of cards masked.  No allocation, never throws: the log hook
 * (redact.c) calls it.
 */
int
ShopRedactCardNumbers(char *s, int len)
{
	CardScan	cs;

	if (!may_hold_card((const unsigned char *) s, len))
		return 0;
	cs.s = (unsigned char *) s;
	cs.len = len;
	cs.flags = 0;
	cs.utf8 = (GetDatabaseEncoding() == PG_UTF8);
	cs.redact = true;
	card_scan(&cs);
	{
		int			found = cs.found;

		/* the log: every list-shaped card too */
		if (cs.list_from >= 0)
			return found + (list_scan(&cs) ? cs.found : 0);
		return found;
	}
}

/* ----------------------------------------------------------------------
 * jsonb, arrays, rows
 * ----------------------------------------------------------------------
 */

/* Does a jsonb key name a phone number ("phone", "tel", "mobile", ...)? */
static bool
phone_key(const char *k, int len)
{
	char		buf[32];

	if (len <= 0 || len >= (int) sizeof(buf))
		return false;
	for (int i = 0; i < len; i++)
		buf[i] = pg_ascii_tolower((unsigned char) k[i]);
	buf[len] = '\0';
	return strncmp(buf, "tel", 3) == 0 || strncmp(buf, "cell", 4) == 0 ||
		strstr(buf, "phone") != NULL || strstr(buf, "mobile") != NULL ||
		strstr(buf, "fax") != NULL || strstr(buf, "imei") != NULL;
}

/*
 * A jsonb number: only one whose integer part can have 12 digits is
 * printed and scanned.  The weight (power of 10000 of the first stored
 * digit) is read from the on-disk numeric header (numeric.c: short and long
 * formats); numbers below 10^8 are skipped without printing them.
 */
static bool
numeric_has_card(Numeric num, int flags)
{
	const char *p = VARDATA_ANY(num);
	uint16		header;
	int			weight;
	char	   *str;
	bool		found;

	if (VARSIZE_ANY_EXHDR(num) < sizeof(uint16))
		return false;
	memcpy(&header, p, sizeof(uint16));
	if ((header & 0xC000) == 0xC000)	/* NaN, infinity */
		return false;
	if (header & 0x8000)		/* short format: 6-bit weight with sign bit */
		weight = ((header & 0x0040) ? ~0x003F : 0) | (header & 0x003F);
	else if (VARSIZE_ANY_EXHDR(num) >= 2 * sizeof(int16))
	{
		int16		w;

		memcpy(&w, p + sizeof(uint16), sizeof(int16));
		weight = w;
	}
	else
		return false;
	if (weight < 2)
		return false;
	str = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));
	found = ShopFindCardNumberFlags(str, strlen(str), flags);
	pfree(str);
	return found;
}

/* offset of child i's data in a jsonb container (jsonb_util.c's rule) */
static uint32
jsonb_child_offset(const JsonbContainer *jc, int i)
{
	uint32		off = 0;

	for (int k = i - 1; k >= 0; k--)
	{
		off += JBE_OFFLENFLD(jc->children[k]);
		if (JBE_HAS_OFF(jc->children[k]))
			break;
	}
	return off;
}

/*
 * What of one column the guard does not read: ids shop itself writes (a
 * customer id is a bigint the application chose, and may spell a card
 * number; see guard_plan).  key: top-level keys of a jsonb object whose
 * number values are not read; idprefix: a text value that is this prefix
 * and a decimal integer, nothing else, is not read.
 */
typedef struct GuardKeys
{
	int			nkeys;
	char	  **key;
	int		   *len;
	char	   *idprefix;		/* NULL: none */
	int			flags;			/* SHOP_SCAN_CATALOG: catalog text */
} GuardKeys;

/* is the text value idprefix followed by a decimal integer? */
static bool
guard_is_id(const GuardKeys *skip, Datum value)
{
	text	   *t;
	const char *p;
	size_t		len,
				plen,
				digits = 0;
	bool		is_id;

	if (skip == NULL || skip->idprefix == NULL)
		return false;
	t = DatumGetTextPP(value);
	p = VARDATA_ANY(t);
	len = VARSIZE_ANY_EXHDR(t);
	plen = strlen(skip->idprefix);
	is_id = len > plen && memcmp(p, skip->idprefix, plen) == 0;
	if (is_id)
	{
		p += plen;
		len -= plen;
		if (*p == '-')
		{
			p++;
			len--;
		}
		while (digits < len && p[digits] >= '0' && p[digits] <= '9')
			digits++;
		is_id = digits > 0 && digits == len && digits <= 19;
	}
	if ((Pointer) t != DatumGetPointer(value))
		pfree(t);
	return is_id;
}

static bool jsonb_container_has_card(const JsonbContainer *jc, int flags,
									 const GuardKeys *skip);

static bool
guard_key_skipped(const GuardKeys *skip, const char *key, uint32 len)
{
	for (int i = 0; skip != NULL && i < skip->nkeys; i++)
		if (skip->len[i] == (int) len && memcmp(skip->key[i], key, len) == 0)
			return true;
	return false;
}

/* one scalar or container stored at base + [off, end) under entry e */
static bool
jsonb_entry_has_card(JEntry e, const char *base, uint32 off, uint32 end, int flags)
{
	if (JBE_ISSTRING(e))
		return ShopFindCardNumberFlags(base + off, end - off, flags);
	if (JBE_ISNUMERIC(e))
		return numeric_has_card((Numeric) (base + INTALIGN(off)), flags);
	if (JBE_ISCONTAINER(e))
		return jsonb_container_has_card((const JsonbContainer *) (base + INTALIGN(off)), flags, NULL);
	return false;				/* true, false, null */
}

/*
 * Walk a jsonb container in its binary form (no JsonbIterator, no
 * allocation but for big numbers): every key, string and number at any
 * depth.  A value under a phone-like key is scanned with SHOP_SCAN_PHONE.
 * skip (top level only, NULL below): keys whose number value is not read.
 */
static bool
jsonb_container_has_card(const JsonbContainer *jc, int flags, const GuardKeys *skip)
{
	uint32		count = JsonContainerSize(jc);
	const char *base;

	check_stack_depth();
	if (JsonContainerIsObject(jc))
	{
		uint32		koff = 0,
					voff;

		base = (const char *) &jc->children[count * 2];
		voff = jsonb_child_offset(jc, count);
		for (uint32 i = 0; i < count; i++)
		{
			JEntry		ke = jc->children[i];
			JEntry		ve = jc->children[count + i];
			uint32		kend = JBE_HAS_OFF(ke) ? JBE_OFFLENFLD(ke) : koff + JBE_OFFLENFLD(ke);
			uint32		vend = JBE_HAS_OFF(ve) ? JBE_OFFLENFLD(ve) : voff + JBE_OFFLENFLD(ve);
			int			vflags = flags;

			if (ShopFindCardNumberFlags(base + koff, kend - koff, flags & SHOP_SCAN_CATALOG))
				return true;
			if (JBE_ISNUMERIC(ve) && guard_key_skipped(skip, base + koff, kend - koff))
			{
				/* an id shop wrote as a number: not read */
			}
			/* a string that cannot hold 12 digits: nothing to read */
			else if (!(JBE_ISSTRING(ve) &&
				  !may_hold_card((const unsigned char *) base + voff, vend - voff)))
			{
				/*
				 * The phone context is asked for only when the value holds a
				 * card without it: SHOP_SCAN_PHONE only ever drops windows
				 * the scan would otherwise take, so a value with no card
				 * without it has none with it (issue 11: the key's compares
				 * cost more than most values' scans).
				 */
				if (jsonb_entry_has_card(ve, base, voff, vend, vflags))
				{
					if ((vflags & SHOP_SCAN_PHONE) || !phone_key(base + koff, kend - koff))
						return true;
					vflags |= SHOP_SCAN_PHONE;
					if (jsonb_entry_has_card(ve, base, voff, vend, vflags))
						return true;
				}
			}
			koff = kend;
			voff = vend;
		}
	}
	else
	{
		uint32		off = 0;

		base = (const char *) &jc->children[count];
		for (uint32 i = 0; i < count; i++)
		{
			JEntry		e = jc->children[i];
			uint32		end = JBE_HAS_OFF(e) ? JBE_OFFLENFLD(e) : off + JBE_OFFLENFLD(e);

			if (jsonb_entry_has_card(e, base, off, end, flags))
				return true;
			off = end;
		}
	}
	return false;
}

bool
ShopJsonbHasCardNumber(Jsonb *jb)
{
	return jb != NULL && jsonb_container_has_card(&jb->root, 0, NULL);
}

/*
 * The kinds of column the guard reads, and how.  Domains count as their
 * base type.
 */
typedef enum GuardKind
{
	GK_NONE = 0,
	GK_TEXT,					/* text, varchar, char(n), json, xml, citext... */
	GK_NAME,					/* name: fixed-length C string */
	GK_JSONB,
	GK_ARRAY					/* an array of one of the above */
} GuardKind;

static GuardKind
guard_kind_of_base(Oid base)
{
	char		category;
	bool		preferred;

	if (base == JSONBOID)
		return GK_JSONB;
	if (base == NAMEOID)
		return GK_NAME;
	if (base == JSONOID || base == XMLOID)
		return GK_TEXT;
	get_type_category_preferred(base, &category, &preferred);
	if (category == TYPCATEGORY_STRING && get_typlen(base) == -1)
		return GK_TEXT;
	return GK_NONE;
}

/* kind of a column type; *elem the (base) element type of an array */
static GuardKind
guard_kind(Oid type, Oid *elem)
{
	Oid			base = getBaseType(type);
	Oid			et = get_element_type(base);

	*elem = InvalidOid;
	if (OidIsValid(et))
	{
		GuardKind	k = guard_kind_of_base(getBaseType(et));

		if (k == GK_NONE)
			return GK_NONE;
		*elem = getBaseType(et);
		return GK_ARRAY;
	}
	return guard_kind_of_base(base);
}

/* how to read the elements of an array column */
typedef struct GuardElem
{
	GuardKind	kind;			/* GK_NONE when not an array */
	int16		len;
	bool		byval;
	char		align;
} GuardElem;

static void
guard_elem_init(GuardElem *ge, Oid elem)
{
	ge->kind = GK_NONE;
	if (!OidIsValid(elem))
		return;
	ge->kind = guard_kind_of_base(elem);
	get_typlenbyvalalign(elem, &ge->len, &ge->byval, &ge->align);
}

static bool
value_has_card(GuardKind kind, Datum value, const GuardElem *ge, const GuardKeys *skip, int flags)
{
	switch (kind)
	{
		case GK_TEXT:
			{
				text	   *t = DatumGetTextPP(value);
				bool		found = ShopFindCardNumberFlags(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), flags);

				if ((Pointer) t != DatumGetPointer(value))
					pfree(t);
				return found;
			}
		case GK_NAME:
			{
				Name		n = DatumGetName(value);

				return ShopFindCardNumberFlags(NameStr(*n), strnlen(NameStr(*n), NAMEDATALEN), flags);
			}
		case GK_JSONB:
			{
				Jsonb	   *jb = DatumGetJsonbP(value);
				bool		found = jsonb_container_has_card(&jb->root, flags, skip);

				if ((Pointer) jb != DatumGetPointer(value))
					pfree(jb);
				return found;
			}
		case GK_ARRAY:
			{
				AnyArrayType *arr = DatumGetAnyArrayP(value);
				int			nitems;
				array_iter	it;
				bool		found = false;

				nitems = ArrayGetNItems(AARR_NDIM(arr), AARR_DIMS(arr));
				array_iter_setup(&it, arr);
				for (int i = 0; i < nitems && !found; i++)
				{
					bool		isnull;
					Datum		d = array_iter_next(&it, &isnull, i, ge->len, ge->byval, ge->align);

					if (!isnull)
						found = value_has_card(ge->kind, d, NULL, NULL, flags);
				}
				return found;
			}
		case GK_NONE:
			break;
	}
	return false;
}

/* ----------------------------------------------------------------------
 * Refusing card numbers (SH005)
 * ----------------------------------------------------------------------
 */

static void
refuse_card_number(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_SHOP_CARD_NUMBER_REFUSED),
			 errmsg("card number refused"),
			 errdetail("The value of %s looks like a payment card number; shop never stores card numbers.", what),
			 errhint("Tokenize the card with your payment provider and pass the token instead."),
			 errhidestmt(true)));
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
		refuse_card_number(what);
}

/*
 * ShopRefuseCardNumberJsonb: the same for every key and string (and
 * number) anywhere inside a jsonb value.
 */
void
ShopRefuseCardNumberJsonb(Jsonb *jb, const char *what)
{
	if (ShopJsonbHasCardNumber(jb))
		refuse_card_number(what);
}

/*
 * shop._card_number_check(value text, what text) -> void
 * shop._card_number_check(value jsonb, what text) -> void
 * shop._card_number_check(value text, what text, catalog boolean) -> void
 * Used by the SQL-language parts of the API; with catalog true the value is
 * read as catalog text (SHOP_SCAN_CATALOG: no list rule).
 */
Datum
shop_card_number_check(PG_FUNCTION_ARGS)
{
	const char *what = PG_ARGISNULL(1) ? "an argument" : text_to_cstring(PG_GETARG_TEXT_PP(1));

	int			flags = (PG_NARGS() > 2 && !PG_ARGISNULL(2) && PG_GETARG_BOOL(2)) ?
		SHOP_SCAN_CATALOG : 0;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	if (get_fn_expr_argtype(fcinfo->flinfo, 0) == JSONBOID)
	{
		if (jsonb_container_has_card(&PG_GETARG_JSONB_P(0)->root, flags, NULL))
			refuse_card_number(what);
	}
	else
	{
		text	   *t = PG_GETARG_TEXT_PP(0);

		if (ShopFindCardNumberFlags(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), flags))
			refuse_card_number(what);
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
 * shop.contains_card_number(value jsonb) -> boolean
 * shop.contains_card_number(value text[]) -> boolean
 * shop._holds_card_number(value anyelement) -> boolean
 * Whatever the guard trigger would find in a column of the argument's
 * type; NULL for a type the guard does not read.
 */
Datum
shop_contains_card_number_any(PG_FUNCTION_ARGS)
{
	struct
	{
		GuardKind	kind;
		GuardElem	elem;
	}		   *cache = fcinfo->flinfo->fn_extra;

	if (cache == NULL)
	{
		Oid			type = get_fn_expr_argtype(fcinfo->flinfo, 0);
		Oid			elem;

		if (!OidIsValid(type))
			elog(ERROR, "could not determine the argument type");
		cache = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(*cache));
		cache->kind = guard_kind(type, &elem);
		guard_elem_init(&cache->elem, elem);
		fcinfo->flinfo->fn_extra = cache;
	}
	if (cache->kind == GK_NONE)
		PG_RETURN_NULL();
	PG_RETURN_BOOL(value_has_card(cache->kind, PG_GETARG_DATUM(0), &cache->elem, NULL,
								  (PG_NARGS() > 1 && PG_GETARG_BOOL(1)) ? SHOP_SCAN_CATALOG : 0));
}

/* shop._card_guard_reads(type regtype) -> boolean */
Datum
shop_card_guard_reads(PG_FUNCTION_ARGS)
{
	Oid			elem;

	PG_RETURN_BOOL(guard_kind(PG_GETARG_OID(0), &elem) != GK_NONE);
}

/* ----------------------------------------------------------------------
 * The guard trigger
 * ----------------------------------------------------------------------
 */

/*
 * What the guard reads of one table.  Working it out asks the type cache
 * about every column (a few catalog cache lookups each), which cost more
 * than the scan of the row itself: for a checkout, which writes eleven
 * rows of nine guarded tables in five statements, 3% of its CPU (issue
 * 11).  So a plan is kept for the life of the backend, one per trigger, and
 * reused while the table's columns keep their types: it is checked
 * against the row type at the first row of each statement (the column
 * types are all a plan depends on: whether a type is text-like, an array
 * or a domain over one never changes), then held in fn_extra for the
 * statement's other rows.
 *
 * The trigger's arguments name what shop itself builds from ids and the
 * guard does not read: 'column=prefix#' (a text value that is the prefix
 * and a decimal integer, nothing else: the idempotency scope 'c:<customer
 * id>' is 'scope=c:#'), or 'column.key' (a number under that top-level key
 * of a jsonb column, e.g. an event payload's customer_id).  A customer
 * id is a bigint the application chose; one that happens to spell a card
 * number (4111111111111111) is an id, not a card, wherever shop copies it.
 */
typedef struct GuardPlan
{
	Oid			tgoid;
	Oid			relid;
	int			natts;
	Oid		   *atttypid;		/* of every column, InvalidOid if dropped */
	int			ncols;
	AttrNumber	maxattnum;		/* the last column read */
	AttrNumber *attnum;
	GuardKind  *kind;
	GuardElem  *elem;
	GuardKeys  *skip;			/* per column read: jsonb keys not read */
} GuardPlan;

typedef struct GuardPlanEntry
{
	Oid			tgoid;			/* hash key: the trigger */
	GuardPlan  *plan;
} GuardPlanEntry;

static HTAB *guard_plans = NULL;

/*
 * The plans last used, by trigger OID modulo GUARD_RECENT: what the first
 * row of each statement looks in before the hash (nine statements of a
 * checkout, issue 11).  An entry is a plan of guard_plans; one freed is
 * cleared here first.
 */
#define GUARD_RECENT 32
static GuardPlan *guard_recent[GUARD_RECENT];

/* does plan still describe the columns of desc? */
static bool
guard_plan_fits(const GuardPlan *plan, TupleDesc desc)
{
	if (plan->natts != desc->natts)
		return false;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (plan->atttypid[i] != (att->attisdropped ? InvalidOid : att->atttypid))
			return false;
	}
	return true;
}

static void
guard_plan_free(GuardPlan *plan)
{
	if (guard_recent[plan->tgoid % GUARD_RECENT] == plan)
		guard_recent[plan->tgoid % GUARD_RECENT] = NULL;
	for (int c = 0; c < plan->ncols; c++)
	{
		for (int k = 0; k < plan->skip[c].nkeys; k++)
			pfree(plan->skip[c].key[k]);
		if (plan->skip[c].nkeys > 0)
		{
			pfree(plan->skip[c].key);
			pfree(plan->skip[c].len);
		}
		if (plan->skip[c].idprefix != NULL)
			pfree(plan->skip[c].idprefix);
	}
	pfree(plan->atttypid);
	pfree(plan->attnum);
	pfree(plan->kind);
	pfree(plan->elem);
	pfree(plan->skip);
	pfree(plan);
}

/*
 * What the trigger's arguments exempt of column att, of kind k (see
 * guard_plan), added to *skip in TopMemoryContext; used[i] is set for each
 * argument that names this column in a form that fits its type.
 */
static void
guard_exempt(const Trigger *tg, Form_pg_attribute att, GuardKind k, GuardKeys *skip, bool *used)
{
	const char *name = NameStr(att->attname);
	size_t		nlen = strlen(name);
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	for (int i = 0; i < tg->tgnargs; i++)
	{
		const char *a = tg->tgargs[i];
		size_t		alen = strlen(a);

		/* catalog text, the whole table's or one column's: no list rule */
		if (strcmp(a, "catalog") == 0)
		{
			skip->flags |= SHOP_SCAN_CATALOG;
			used[i] = true;
			continue;
		}
		if (strncmp(a, name, nlen) != 0)
			continue;
		if (strcmp(a + nlen, ":catalog") == 0)
		{
			skip->flags |= SHOP_SCAN_CATALOG;
			used[i] = true;
		}
		else if (a[nlen] == '.' && a[nlen + 1] != '\0' && getBaseType(att->atttypid) == JSONBOID)
		{
			if (skip->nkeys == 0)
			{
				skip->key = palloc(sizeof(char *) * tg->tgnargs);
				skip->len = palloc(sizeof(int) * tg->tgnargs);
			}
			skip->key[skip->nkeys] = pstrdup(a + nlen + 1);
			skip->len[skip->nkeys] = (int) strlen(a + nlen + 1);
			skip->nkeys++;
			used[i] = true;
		}
		else if (a[nlen] == '=' && a[alen - 1] == '#' && k == GK_TEXT)
		{
			skip->idprefix = pnstrdup(a + nlen + 1, alen - nlen - 2);
			used[i] = true;
		}
	}
	MemoryContextSwitchTo(old);
}

static GuardPlan *
guard_plan(FmgrInfo *flinfo, const Trigger *tg, Relation rel)
{
	GuardPlan  *plan = (GuardPlan *) flinfo->fn_extra;
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			tgoid = tg->tgoid;
	GuardPlanEntry *entry;
	bool		found;
	MemoryContext old;
	bool	   *used;

	/* the rest of a statement: the plan its first row found */
	if (plan != NULL && plan->tgoid == tgoid && plan->natts == desc->natts)
		return plan;
	plan = guard_recent[tgoid % GUARD_RECENT];
	if (plan != NULL && plan->tgoid == tgoid && guard_plan_fits(plan, desc))
	{
		flinfo->fn_extra = plan;
		return plan;
	}

	if (guard_plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(GuardPlanEntry);
		guard_plans = hash_create("shop card guard plans", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	entry = hash_search(guard_plans, &tgoid, HASH_ENTER, &found);
	if (!found)
		entry->plan = NULL;
	if (entry->plan != NULL && guard_plan_fits(entry->plan, desc))
	{
		flinfo->fn_extra = entry->plan;
		guard_recent[tgoid % GUARD_RECENT] = entry->plan;
		return entry->plan;
	}
	if (entry->plan != NULL)
	{
		guard_plan_free(entry->plan);
		entry->plan = NULL;
	}

	old = MemoryContextSwitchTo(TopMemoryContext);
	plan = palloc0(sizeof(GuardPlan));
	plan->tgoid = tgoid;
	plan->relid = RelationGetRelid(rel);
	plan->natts = desc->natts;
	plan->atttypid = palloc(sizeof(Oid) * Max(desc->natts, 1));
	plan->attnum = palloc(sizeof(AttrNumber) * Max(desc->natts, 1));
	plan->kind = palloc(sizeof(GuardKind) * Max(desc->natts, 1));
	plan->elem = palloc(sizeof(GuardElem) * Max(desc->natts, 1));
	plan->skip = palloc0(sizeof(GuardKeys) * Max(desc->natts, 1));
	MemoryContextSwitchTo(old);
	used = palloc0(sizeof(bool) * Max(tg->tgnargs, 1));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			elem;
		GuardKind	k;

		plan->atttypid[i] = att->attisdropped ? InvalidOid : att->atttypid;
		if (att->attisdropped)
			continue;
		k = guard_kind(att->atttypid, &elem);
		if (k == GK_NONE)
			continue;
		guard_exempt(tg, att, k, &plan->skip[plan->ncols], used);
		plan->attnum[plan->ncols] = att->attnum;
		plan->maxattnum = att->attnum;
		plan->kind[plan->ncols] = k;
		guard_elem_init(&plan->elem[plan->ncols], elem);
		plan->ncols++;
	}
	/* every argument must name a column the guard reads, in its form */
	for (int i = 0; i < tg->tgnargs; i++)
		if (!used[i])
		{
			guard_plan_free(plan);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("card guard trigger %s on %s has argument \"%s\", which is none of \"<jsonb column>.<key>\", \"<text column>=<prefix>#\", \"<column>:catalog\" for a column of the table, \"catalog\"",
							tg->tgname, RelationGetRelationName(rel), tg->tgargs[i])));
		}
	pfree(used);
	entry->plan = plan;
	flinfo->fn_extra = plan;
	guard_recent[tgoid % GUARD_RECENT] = plan;
	return plan;
}

/*
 * shop._card_guard() -> trigger, BEFORE INSERT OR UPDATE FOR EACH ROW on
 * every shop table with a text-like column (shop--1.0--1.1.sql creates it
 * from the catalog; sql/cards.sql fails when a column is not covered).
 *
 * Reads every text, varchar, char, name, json, jsonb, xml column (domains
 * over them, arrays of them) of the row about to be stored and raises
 * SH005 naming the column when one holds a card number.  On UPDATE a
 * column whose stored bytes did not change is not read again (an unchanged
 * toasted value is compared by its toast pointer, never detoasted), so
 * updating the price of a product costs a few compares.  The row is
 * returned unchanged.
 */
Datum
shop_card_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	TupleTableSlot *newslot;
	TupleTableSlot *oldslot = NULL;
	GuardPlan  *plan;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		elog(ERROR, "shop._card_guard must be a BEFORE INSERT OR UPDATE FOR EACH ROW trigger");

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	plan = guard_plan(fcinfo->flinfo, trigdata->tg_trigger, rel);
	if (plan->ncols == 0)
		return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
							   trigdata->tg_newtuple : trigdata->tg_trigtuple);

	/*
	 * Read the columns from the slots: the executor has usually deformed
	 * the new row already (COPY builds it from values), so this costs
	 * nothing more.
	 */
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		newslot = trigdata->tg_newslot;
		oldslot = trigdata->tg_trigslot;
		slot_getsomeattrs(oldslot, plan->maxattnum);
	}
	else
		newslot = trigdata->tg_trigslot;
	slot_getsomeattrs(newslot, plan->maxattnum);

	for (int c = 0; c < plan->ncols; c++)
	{
		int			a = plan->attnum[c] - 1;
		Datum		value = newslot->tts_values[a];

		if (newslot->tts_isnull[a])
			continue;
		if (oldslot != NULL && !oldslot->tts_isnull[a])
		{
			Form_pg_attribute att = TupleDescAttr(desc, a);

			if (datumIsEqual(oldslot->tts_values[a], value, att->attbyval, att->attlen))
				continue;
		}
		/*
		 * A text value of fewer than 12 bytes (inline, not compressed)
		 * cannot hold 12 digits: not read (most of a checkout's: statuses,
		 * currencies, tokens).
		 */
		if (plan->kind[c] == GK_TEXT)
		{
			Pointer		p = DatumGetPointer(value);

			if (VARATT_IS_SHORT(p) ? VARSIZE_SHORT(p) - VARHDRSZ_SHORT < CARD_MIN :
				(!VARATT_IS_EXTENDED(p) && VARSIZE(p) - VARHDRSZ < CARD_MIN))
				continue;
		}
		if (guard_is_id(&plan->skip[c], value))
			continue;
		if (value_has_card(plan->kind[c], value, &plan->elem[c], &plan->skip[c], plan->skip[c].flags))
		{
			char	   *what = psprintf("column %s of %s.%s",
										NameStr(TupleDescAttr(desc, a)->attname),
										get_namespace_name(RelationGetNamespace(rel)),
										RelationGetRelationName(rel));

			ereport(ERROR,
					(errcode(ERRCODE_SHOP_CARD_NUMBER_REFUSED),
					 errmsg("card number refused"),
					 errdetail("The value of %s looks like a payment card number; shop never stores card numbers.", what),
					 errhint("Tokenize the card with your payment provider and store the token instead."),
					 errtablecol(rel, a + 1),
					 errhidestmt(true)));
		}
	}
	return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
						   trigdata->tg_newtuple : trigdata->tg_trigtuple);
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

		char	   *shown = ShopEchoValue(language, strlen(language), "language");

		initStringInfo(&buf);
		for (; *l; l++)
			appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", *l);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown stemming language %s", shown),
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

/*
 * The value for an error detail: its first 60 characters, control
 * characters written as \xNN or \u00NN, in double quotes; or nothing when
 * it holds a card number (never echoed, docs/errors.md).
 */
char *
ShopQuoteForDetail(const char *s, int len)
{
	StringInfoData buf;
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	int			i = 0;

	if (ShopFindCardNumber(s, len))
		return NULL;
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '"');
	for (int chars = 0; i < len && chars < 60; chars++)
	{
		unsigned char c = (unsigned char) s[i];
		int			l;

		if (c < 0x20 || c == 0x7f)
		{
			appendStringInfo(&buf, "\\x%02X", c);
			i++;
		}
		else if (utf8 && c == 0xc2 && i + 1 < len &&
				 (unsigned char) s[i + 1] >= 0x80 && (unsigned char) s[i + 1] <= 0x9f)
		{
			appendStringInfo(&buf, "\\u%04X", (unsigned char) s[i + 1]);
			i += 2;
		}
		else
		{
			l = pg_mblen_with_len(s + i, len - i);
			appendBinaryStringInfo(&buf, s + i, l);
			i += l;
		}
	}
	appendStringInfoString(&buf, i < len ? "\"..." : "\"");
	return buf.data;
}

/*
 * ShopEchoValue: s[0..len) as an error may show it, in double quotes (its
 * first 60 characters, control characters as \xNN or \u00NN), for the
 * errors that name a value they refuse ("unknown sort", a search query's
 * unknown key, an unknown stemming language).  A value holding a card
 * number is never echoed: SH005 naming what instead, as for any argument
 * (hostile5, sql/hostile_echo_values).  Call it before ereport, not
 * inside one.
 */
char *
ShopEchoValue(const char *s, int len, const char *what)
{
	char	   *quoted = ShopQuoteForDetail(s, len);

	if (quoted == NULL)
	{
		ShopRefuseCardNumberText(s, len, what);
		quoted = pstrdup("\"\"");
	}
	return quoted;
}

/* shop._echo_value(value text, what text) -> text: ShopEchoValue for PL/pgSQL */
PG_FUNCTION_INFO_V1(shop_echo_value);
Datum
shop_echo_value(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	char	   *what = text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_TEXT_P(cstring_to_text(ShopEchoValue(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), what)));
}
