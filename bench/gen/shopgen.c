/*
 * shopgen.c: the synthetic catalog generator of `make bench`.
 *
 * Reads the statistical model bench/model/icecat_model.tsv (see
 * bench/make_model.sh for its format) and writes COPY text on stdout:
 *
 *   shopgen MODEL categories
 *       "model_id <TAB> parent_model_id <TAB> name" per category, parents
 *       first (run.sh turns them into shop.category_add calls)
 *   shopgen MODEL products --scale N [--seed S] [--part I --parts K] --catmap FILE
 *       rows for COPY shop.product (product_id, sku, title, description,
 *       brand, category_id, price_cents, attributes, images, status,
 *       rating_sum, rating_count, popularity, in_stock, created_at);
 *       FILE maps model category ids to shop.category ids
 *   shopgen MODEL stock --scale N [--seed S] [--part I --parts K]
 *       rows for COPY shop.stock (product_id, location, bucket, on_hand,
 *       reserved), consistent with the in_stock flag of "products"
 *
 * Deterministic: every value of product P is drawn from a random stream
 * seeded by (seed, P), so the catalog does not depend on how it is split
 * into parts and a product's stock agrees with its in_stock flag.
 *
 * Vocabulary: besides the model's words, 60% of titles carry a product-line
 * name (a new word spelled with the model's letter trigrams) drawn from
 * max(1000, N/20) lines with a Zipf (s = 1) distribution, so the number of
 * distinct words grows with the catalog as in a real one.
 *
 * Model strings are cleaned by make_model.sh (no tab, newline, backslash or
 * double quote), so they go into COPY text and JSON strings unescaped.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXCAT 256

typedef struct Weighted
{
	int			n;
	int			cap;
	char	  **str;
	double	   *cum;			/* cumulative weight */
	double	   *pos;			/* mean relative position (words) */
	int		   *ival;			/* integer value (title lengths) */
} Weighted;

typedef struct Attr
{
	char	   *name;
	double		coverage;
	Weighted	values;
} Attr;

typedef struct Category
{
	int			id;
	int			parent;
	char	   *name;
	double		products;
	double		lp_mean;
	double		lp_sd;
	long		db_id;			/* shop.category id, from --catmap */
	Weighted	brands;
	Weighted	twords;
	Weighted	dwords;
	Weighted	tlen;
	int			nattrs;
	Attr		attrs[8];
} Category;

static Category cats[MAXCAT];
static int	ncats;
static Weighted leaves;			/* ival = index into cats */
static Weighted colors;

/*
 * Letter trigrams: next letter after a two-letter context.  Symbols: 0 is
 * the word boundary ('^' before, '$' after), 1..26 are a..z.
 */
static Weighted trigram[27][27];
static long line_pool = 1000;	/* product-line names in the catalog */

static void
die(const char *msg, const char *arg)
{
	fprintf(stderr, "shopgen: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
	exit(1);
}

static char *
xstrdup(const char *s)
{
	char	   *r = strdup(s);

	if (!r)
		die("out of memory", NULL);
	return r;
}

static void
wadd(Weighted *w, const char *s, double weight, double pos, int ival)
{
	if (w->n == w->cap)
	{
		w->cap = w->cap ? w->cap * 2 : 16;
		w->str = realloc(w->str, w->cap * sizeof(char *));
		w->cum = realloc(w->cum, w->cap * sizeof(double));
		w->pos = realloc(w->pos, w->cap * sizeof(double));
		w->ival = realloc(w->ival, w->cap * sizeof(int));
		if (!w->str || !w->cum || !w->pos || !w->ival)
			die("out of memory", NULL);
	}
	w->str[w->n] = s ? xstrdup(s) : NULL;
	w->cum[w->n] = (w->n ? w->cum[w->n - 1] : 0) + weight;
	w->pos[w->n] = pos;
	w->ival[w->n] = ival;
	w->n++;
}

/* --- random numbers: splitmix64 seeding, xoshiro256** stream --- */

typedef struct Rng
{
	uint64_t	s[4];
} Rng;

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t	z = (*x += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static void
rng_seed(Rng *r, uint64_t seed, uint64_t product, uint64_t stream)
{
	uint64_t	x = seed * 0x2545F4914F6CDD1DULL ^ product * 0x9E3779B97F4A7C15ULL ^ stream << 56;

	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t
rng_next(Rng *r)
{
	uint64_t   *s = r->s;
	uint64_t	result = rotl(s[1] * 5, 7) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* uniform in [0, 1) */
static double
rng_u(Rng *r)
{
	return (rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static double
rng_normal(Rng *r)
{
	double		u1 = rng_u(r),
				u2 = rng_u(r);

	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static int
wpick(const Weighted *w, Rng *r)
{
	double		x;
	int			lo = 0,
				hi;

	if (w->n == 0)
		return -1;
	x = rng_u(r) * w->cum[w->n - 1];
	hi = w->n - 1;
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (w->cum[mid] > x)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* --- model --- */

static Category *
cat_by_id(int id)
{
	for (int i = 0; i < ncats; i++)
		if (cats[i].id == id)
			return &cats[i];
	return NULL;
}

/* Split line on tabs in place (empty fields kept); returns field count. */
static int
split_tabs(char *line, char **f, int maxf)
{
	int			n = 0;

	f[n++] = line;
	for (char *p = line; *p && n < maxf; p++)
		if (*p == '\t')
		{
			*p = '\0';
			f[n++] = p + 1;
		}
	return n;
}

static void
load_model(const char *path)
{
	FILE	   *fp = fopen(path, "r");
	char		line[4096];
	char	   *f[8];

	if (!fp)
		die("cannot open model", path);
	while (fgets(line, sizeof(line), fp))
	{
		int			nf;
		Category   *c;

		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		nf = split_tabs(line, f, 8);
		if (strcmp(f[0], "category") == 0 && nf >= 7)
		{
			if (ncats == MAXCAT)
				die("too many categories in model", path);
			c = &cats[ncats++];
			c->id = atoi(f[1]);
			c->parent = atoi(f[2]);
			c->name = xstrdup(f[3]);
			c->products = atof(f[4]);
			c->lp_mean = atof(f[5]);
			c->lp_sd = atof(f[6]);
			if (c->products > 0)
				wadd(&leaves, NULL, c->products, 0, ncats - 1);
			continue;
		}
		if (strcmp(f[0], "color") == 0 && nf >= 3)
		{
			wadd(&colors, f[1], atof(f[2]), 0, 0);
			continue;
		}
		if (strcmp(f[0], "chr") == 0 && nf >= 4 && strlen(f[1]) == 2 && strlen(f[2]) == 1)
		{
			int			a = f[1][0] == '^' ? 0 : f[1][0] - 'a' + 1;
			int			b = f[1][1] == '^' ? 0 : f[1][1] - 'a' + 1;
			int			n = f[2][0] == '$' ? 0 : f[2][0] - 'a' + 1;

			if (a >= 0 && a <= 26 && b >= 0 && b <= 26 && n >= 0 && n <= 26)
				wadd(&trigram[a][b], NULL, atof(f[3]), 0, n);
			continue;
		}
		if (nf < 4 || (c = cat_by_id(atoi(f[1]))) == NULL)
			continue;
		if (strcmp(f[0], "brand") == 0)
			wadd(&c->brands, f[2], atof(f[3]), 0, 0);
		else if (strcmp(f[0], "tword") == 0 && nf >= 5)
			wadd(&c->twords, f[2], atof(f[3]), atof(f[4]), 0);
		else if (strcmp(f[0], "dword") == 0 && nf >= 5)
			wadd(&c->dwords, f[2], atof(f[3]), atof(f[4]), 0);
		else if (strcmp(f[0], "tlen") == 0)
			wadd(&c->tlen, NULL, atof(f[3]), 0, atoi(f[2]));
		else if (strcmp(f[0], "attr") == 0 && nf >= 6)
		{
			Attr	   *a = NULL;

			for (int i = 0; i < c->nattrs; i++)
				if (strcmp(c->attrs[i].name, f[2]) == 0)
					a = &c->attrs[i];
			if (!a)
			{
				if (c->nattrs == 8)
					continue;
				a = &c->attrs[c->nattrs++];
				a->name = xstrdup(f[2]);
				a->coverage = atof(f[3]);
			}
			wadd(&a->values, f[4], atof(f[5]), 0, 0);
		}
	}
	fclose(fp);
	if (leaves.n == 0)
		die("model has no leaf categories", path);
}

static void
load_catmap(const char *path)
{
	FILE	   *fp = fopen(path, "r");
	char		line[256];

	if (!fp)
		die("cannot open category map", path);
	while (fgets(line, sizeof(line), fp))
	{
		int			mid;
		long		dbid;
		Category   *c;

		if (sscanf(line, "%d %ld", &mid, &dbid) == 2 && (c = cat_by_id(mid)) != NULL)
			c->db_id = dbid;
	}
	fclose(fp);
	for (int i = 0; i < leaves.n; i++)
		if (cats[leaves.ival[i]].db_id == 0)
			die("category map lacks a leaf category", cats[leaves.ival[i]].name);
}

/* --- products --- */

typedef struct Pick
{
	const char *word;
	double		pos;
} Pick;

static int
pick_cmp(const void *a, const void *b)
{
	double		d = ((const Pick *) a)->pos - ((const Pick *) b)->pos;

	return d < 0 ? -1 : d > 0;
}

/* Draw n distinct words of w, in their usual order, into buf. */
static char *
words(char *buf, size_t size, const Weighted *w, int n, Rng *r)
{
	Pick		p[32];
	int			k = 0;
	size_t		len = 0;

	if (n > 32)
		n = 32;
	for (int tries = 0; k < n && tries < n * 4 && w->n > 0; tries++)
	{
		int			i = wpick(w, r);
		int			dup = 0;

		for (int j = 0; j < k; j++)
			if (p[j].word == w->str[i])
				dup = 1;
		if (dup)
			continue;
		p[k].word = w->str[i];
		p[k].pos = w->pos[i] + 0.15 * (rng_u(r) - 0.5);
		k++;
	}
	qsort(p, k, sizeof(Pick), pick_cmp);
	buf[0] = '\0';
	for (int j = 0; j < k; j++)
	{
		int			m = snprintf(buf + len, size - len, "%s%s", j ? " " : "", p[j].word);

		if (m < 0 || (size_t) m >= size - len)
			break;
		len += m;
	}
	return buf;
}

/*
 * The name of product line "line": a new word spelled with the catalog's
 * letter trigrams, capitalised ("Vostrax"), the same for every product of
 * the line.  Empty when the model has no trigrams.
 */
static void
line_name(char *buf, size_t size, uint64_t seed, long line)
{
	Rng			r;

	rng_seed(&r, seed, line, 3);
	buf[0] = '\0';
	for (int attempt = 0; attempt < 20; attempt++)
	{
		int			a = 0,
					b = 0,
					len = 0;

		while ((size_t) len < size - 1 && len < 12)
		{
			Weighted   *w = &trigram[a][b];
			int			n;

			if (w->n == 0)
				break;
			n = w->ival[wpick(w, &r)];
			if (n == 0)
				break;
			buf[len++] = 'a' + n - 1;
			a = b;
			b = n;
		}
		buf[len] = '\0';
		if (len >= 4 && len <= 10)
		{
			buf[0] -= 'a' - 'A';
			return;
		}
	}
	buf[0] = '\0';
}

static int
stock_on_hand(uint64_t seed, long id)
{
	Rng			r;
	double		u;

	rng_seed(&r, seed, id, 2);
	if (rng_u(&r) < 0.02)
		return 0;				/* 2% out of stock */
	u = rng_u(&r);
	return 5 + (int) (995 * u * u);
}

static void
gen_product(long id, uint64_t seed, time_t base)
{
	Rng			r;
	Category   *c;
	const char *brand;
	char		title[1024],
				d1[1024],
				d2[1024],
				attrs[1024],
				model[32],
				line[32],
				sku[8],
				created[64];
	int			nt,
				bi;
	double		price,
				pop,
				u;
	long		cents,
				rcount = 0,
				rsum = 0;
	const char *status;
	size_t		alen;
	struct tm	tm;
	time_t		t;

	rng_seed(&r, seed, id, 1);
	c = &cats[leaves.ival[wpick(&leaves, &r)]];
	bi = wpick(&c->brands, &r);
	brand = bi >= 0 ? c->brands.str[bi] : "Generic";

	/* model token: two letters and a number, e.g. "KX-4821" */
	snprintf(model, sizeof(model), "%c%c-%d",
			 'A' + (int) (rng_u(&r) * 26), 'A' + (int) (rng_u(&r) * 26),
			 100 + (int) (rng_u(&r) * 9900));
	/* a product line for 60% of products: Zipf over the catalog's lines */
	line[0] = '\0';
	if (rng_u(&r) < 0.6)
	{
		long		k = (long) pow((double) line_pool + 1.0, rng_u(&r));

		line_name(line, sizeof(line), seed, k);
	}
	nt = c->tlen.n ? c->tlen.ival[wpick(&c->tlen, &r)] : 5;
	if (nt < 3)
		nt = 3;
	if (nt > 9)
		nt = 9;
	words(title, sizeof(title), &c->twords, nt, &r);
	words(d1, sizeof(d1), &c->dwords, 6 + (int) (rng_u(&r) * 9), &r);
	words(d2, sizeof(d2), &c->dwords, 4 + (int) (rng_u(&r) * 7), &r);
	if (d1[0] >= 'a' && d1[0] <= 'z')
		d1[0] -= 'a' - 'A';
	if (d2[0] >= 'a' && d2[0] <= 'z')
		d2[0] -= 'a' - 'A';

	price = exp(c->lp_mean + c->lp_sd * rng_normal(&r));
	if (price < 0.99)
		price = 0.99;
	if (price > 99999)
		price = 99999;
	cents = (long) price * 100 + 99;
	if (price < 1.0)
		cents = 99;

	/* popularity: Pareto (alpha 1.16, the 80/20 rule), mostly small */
	u = 1.0 - rng_u(&r);
	pop = pow(1.0 / u, 1.0 / 1.16) - 1.0;
	if (pop > 1e6)
		pop = 1e6;

	/* ratings: more popular products have more of them */
	if (rng_u(&r) < 0.25 + 0.6 * (1.0 - 1.0 / (1.0 + pop)))
	{
		double		q = 3.0 + 1.0 * (rng_u(&r) + rng_u(&r));	/* 3..5 */

		rcount = 1 + (long) (sqrt(pop) * 4.0 * rng_u(&r));
		if (rcount > 20000)
			rcount = 20000;
		rsum = lround(q * rcount);
		if (rsum < rcount)
			rsum = rcount;
		if (rsum > 5 * rcount)
			rsum = 5 * rcount;
	}

	/* attributes: colour, then the leaf's common attributes */
	alen = 0;
	attrs[alen++] = '{';
	if (colors.n)
	{
		int			ci = wpick(&colors, &r);

		if (colors.str[ci][0])
			alen += snprintf(attrs + alen, sizeof(attrs) - alen, "\"color\": \"%s\"", colors.str[ci]);
	}
	for (int i = 0; i < c->nattrs && alen < sizeof(attrs) - 200; i++)
	{
		Attr	   *a = &c->attrs[i];

		if (rng_u(&r) < a->coverage)
			alen += snprintf(attrs + alen, sizeof(attrs) - alen, "%s\"%s\": \"%s\"",
							 alen > 1 ? ", " : "", a->name, a->values.str[wpick(&a->values, &r)]);
	}
	attrs[alen++] = '}';
	attrs[alen] = '\0';

	u = rng_u(&r);
	status = u < 0.96 ? "active" : u < 0.99 ? "draft" : "archived";

	t = base - (time_t) (rng_u(&r) * 3 * 365 * 86400);
	gmtime_r(&t, &tm);
	strftime(created, sizeof(created), "%Y-%m-%d %H:%M:%S+00", &tm);

	/* sku: three letters of the brand, a check letter, the id */
	{
		int			k = 0;

		for (const char *b = brand; *b && k < 3; b++)
			if ((*b >= 'A' && *b <= 'Z') || (*b >= 'a' && *b <= 'z') || (*b >= '0' && *b <= '9'))
				sku[k++] = (*b >= 'a' && *b <= 'z') ? *b - ('a' - 'A') : *b;
		while (k < 3)
			sku[k++] = 'X';
		sku[k] = '\0';
	}

	printf("%ld\t%s%c-%07ld\t%s %s%s%s %s\t%s. %s.\t%s\t%ld\t%ld\t%s\t{https://cdn.example.com/shop/p/%ld-1.jpg}\t%s\t%ld\t%ld\t%.2f\t%s\t%s\n",
		   id, sku, 'A' + (int) (id % 26), id,
		   brand, model, line[0] ? " " : "", line, title, d1, d2, brand, c->db_id, cents, attrs, id,
		   status, rsum, rcount, pop,
		   stock_on_hand(seed, id) > 0 ? "t" : "f", created);
}

int
main(int argc, char **argv)
{
	const char *model,
			   *mode,
			   *catmap = NULL;
	long		scale = 0;
	uint64_t	seed = 42;
	int			part = 0,
				parts = 1;
	static char obuf[1 << 20];

	if (argc < 3)
		die("usage: shopgen MODEL categories|products|stock [--scale N] [--seed S] [--part I --parts K] [--catmap FILE]", NULL);
	model = argv[1];
	mode = argv[2];
	for (int i = 3; i < argc; i++)
	{
		if (i + 1 >= argc)
			die("option needs a value", argv[i]);
		if (strcmp(argv[i], "--scale") == 0)
			scale = atol(argv[++i]);
		else if (strcmp(argv[i], "--seed") == 0)
			seed = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--part") == 0)
			part = atoi(argv[++i]);
		else if (strcmp(argv[i], "--parts") == 0)
			parts = atoi(argv[++i]);
		else if (strcmp(argv[i], "--catmap") == 0)
			catmap = argv[++i];
		else
			die("unknown option", argv[i]);
	}
	if (parts < 1 || part < 0 || part >= parts)
		die("bad --part/--parts", NULL);
	setvbuf(stdout, obuf, _IOFBF, sizeof(obuf));
	load_model(model);

	if (strcmp(mode, "categories") == 0)
	{
		for (int i = 0; i < ncats; i++)
			printf("%d\t%d\t%s\n", cats[i].id, cats[i].parent, cats[i].name);
	}
	else if (strcmp(mode, "products") == 0 || strcmp(mode, "stock") == 0)
	{
		long		first = scale * part / parts + 1,
					last = scale * (part + 1) / parts;
		/* fixed base date, so the catalog does not depend on the day */
		time_t		base = 1767225600;	/* 2026-01-01 00:00:00 UTC */

		if (scale < 1)
			die("--scale must be positive", NULL);
		if (scale / 20 > line_pool)
			line_pool = scale / 20;
		if (mode[0] == 'p')
		{
			if (!catmap)
				die("products needs --catmap", NULL);
			load_catmap(catmap);
			for (long id = first; id <= last; id++)
				gen_product(id, seed, base);
		}
		else
			for (long id = first; id <= last; id++)
				printf("%ld\tdefault\t0\t%d\t0\n", id, stock_on_hand(seed, id));
	}
	else
		die("unknown mode", mode);
	if (fflush(stdout) != 0)
		die("write error", NULL);
	return 0;
}
