/*-------------------------------------------------------------------------
 *
 * experiment.c
 *	  The assignment hash of shop.experiment_bucket, and the distributions
 *	  behind shop.experiment_report: two-sided p-values and quantiles of
 *	  the standard normal and of Student's t.
 *
 * The bucket of a unit in an experiment is the first four bytes of
 * SHA-256 of '<experiment>:<unit>' (UTF-8), big-endian, unsigned, modulo
 * 10,000 (docs/recommendations.md, "Experiments"): the SQL
 *
 *	  ('x' || left(encode(sha256(convert_to(name || ':' || unit, 'UTF8')), 'hex'), 8))::bit(32)::bigint % 10000
 *
 * gives the same number; this is C because it runs in every list shown in
 * an experiment, and a SQL function that cannot be inlined costs some
 * 70 microseconds a call.
 *
 * PostgreSQL 15 has no erf() at SQL level, so the report's tests (a
 * two-proportion z-test for click-through and conversion, Welch's t-test
 * for revenue per impression; docs/recommendations.md, "Experiments") get
 * their tails here.  Student's t with df degrees of freedom has the
 * two-sided tail
 *
 *	  P(|T| >= t) = I_x(df / 2, 1 / 2),  x = df / (df + t^2)
 *
 * where I is the regularized incomplete beta function, evaluated with its
 * continued fraction (modified Lentz) after the usual symmetry swap so the
 * fraction converges fast.  Quantiles are found by bisection on the tail,
 * which is monotone: 200 halvings of [0, 1e6] are far below double
 * precision and cost microseconds.  df NULL or infinite means the normal.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "shop.h"

PG_FUNCTION_INFO_V1(shop_experiment_bucket);
PG_FUNCTION_INFO_V1(shop_stat_tail);
PG_FUNCTION_INFO_V1(shop_stat_quantile);

/*
 * shop.experiment_bucket(experiment text, unit text) -> int: the unit's
 * bucket, 0..9999 (STRICT).
 */
/*
 * The bucket of the unit (ulen bytes) in the experiment name (nlen bytes),
 * both in the server encoding: shop.experiment_bucket's value.
 */
int
ShopExperimentBucket(const char *name, int nlen, const char *unit, int ulen)
{
	char	   *key = palloc(nlen + ulen + 2);
	char	   *utf8;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	pg_cryptohash_ctx *ctx;
	uint32		first;

	memcpy(key, name, nlen);
	key[nlen] = ':';
	memcpy(key + nlen + 1, unit, ulen);
	key[nlen + ulen + 1] = '\0';
	/* the same bytes whatever the server encoding */
	utf8 = pg_server_to_any(key, nlen + ulen + 1, PG_UTF8);

	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) utf8, strlen(utf8)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
	{
		pg_cryptohash_free(ctx);
		elog(ERROR, "could not compute a SHA-256 digest");
	}
	pg_cryptohash_free(ctx);
	first = ((uint32) digest[0] << 24) | ((uint32) digest[1] << 16) |
		((uint32) digest[2] << 8) | (uint32) digest[3];
	return (int) (first % 10000);
}

Datum
shop_experiment_bucket(PG_FUNCTION_ARGS)
{
	text	   *name = PG_GETARG_TEXT_PP(0);
	text	   *unit = PG_GETARG_TEXT_PP(1);

	PG_RETURN_INT32(ShopExperimentBucket(VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name),
										 VARDATA_ANY(unit), VARSIZE_ANY_EXHDR(unit)));
}

/* continued fraction of the incomplete beta function (x < (a+1)/(a+b+2)) */
static double
ExpBetaFraction(double a, double b, double x)
{
	const double tiny = 1e-300;
	double		c = 1.0;
	double		d = 1.0 - (a + b) * x / (a + 1.0);
	double		h;
	int			m;

	if (fabs(d) < tiny)
		d = tiny;
	d = 1.0 / d;
	h = d;
	for (m = 1; m <= 500; m++)
	{
		int			m2 = 2 * m;
		double		num;
		double		delta;

		/* even step */
		num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
		d = 1.0 + num * d;
		if (fabs(d) < tiny)
			d = tiny;
		c = 1.0 + num / c;
		if (fabs(c) < tiny)
			c = tiny;
		d = 1.0 / d;
		h *= d * c;
		/* odd step */
		num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
		d = 1.0 + num * d;
		if (fabs(d) < tiny)
			d = tiny;
		c = 1.0 + num / c;
		if (fabs(c) < tiny)
			c = tiny;
		d = 1.0 / d;
		delta = d * c;
		h *= delta;
		if (fabs(delta - 1.0) < 1e-15)
			break;
	}
	return h;
}

/* regularized incomplete beta I_x(a, b), 0 <= x <= 1 */
static double
ExpIncompleteBeta(double a, double b, double x)
{
	double		front;

	if (x <= 0.0)
		return 0.0;
	if (x >= 1.0)
		return 1.0;
	front = exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x));
	if (x < (a + 1.0) / (a + b + 2.0))
		return front * ExpBetaFraction(a, b, x) / a;
	return 1.0 - front * ExpBetaFraction(b, a, 1.0 - x) / b;
}

/* P(|T| >= t) for Student's t with df degrees of freedom (df <= 0: normal) */
static double
ExpTwoSidedTail(double t, double df)
{
	t = fabs(t);
	if (df <= 0.0 || isinf(df) || df > 1e7)
		return erfc(t / sqrt(2.0));
	return ExpIncompleteBeta(df / 2.0, 0.5, df / (df + t * t));
}

static double
ExpDegrees(FunctionCallInfo fcinfo, int argno)
{
	double		df;

	if (PG_ARGISNULL(argno))
		return 0.0;
	df = PG_GETARG_FLOAT8(argno);
	if (isnan(df) || df <= 0.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("degrees of freedom out of range"),
				 errdetail("df is %g; it must be positive, infinite or NULL (the normal).", df)));
	return df;
}

/*
 * shop._stat_tail(t float8, df float8) -> float8: the two-sided p-value of
 * statistic t, P(|T| >= |t|), under Student's t with df degrees of freedom,
 * or under the standard normal when df is NULL or infinite.
 */
Datum
shop_stat_tail(PG_FUNCTION_ARGS)
{
	double		t;
	double		df;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	t = PG_GETARG_FLOAT8(0);
	df = ExpDegrees(fcinfo, 1);
	if (isnan(t))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(ExpTwoSidedTail(t, df));
}

/*
 * shop._stat_quantile(alpha float8, df float8) -> float8: the critical value
 * q >= 0 with P(|T| >= q) = alpha (so +-q bound a 1 - alpha interval);
 * df as in shop._stat_tail.
 */
Datum
shop_stat_quantile(PG_FUNCTION_ARGS)
{
	double		alpha;
	double		df;
	double		lo = 0.0;
	double		hi = 1e6;
	int			i;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	alpha = PG_GETARG_FLOAT8(0);
	df = ExpDegrees(fcinfo, 1);
	if (!(alpha > 0.0 && alpha < 1.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("alpha out of range"),
				 errdetail("alpha is %g; it must be above 0 and below 1.", alpha)));
	for (i = 0; i < 200; i++)
	{
		double		mid = 0.5 * (lo + hi);

		if (ExpTwoSidedTail(mid, df) > alpha)
			lo = mid;
		else
			hi = mid;
	}
	PG_RETURN_FLOAT8(0.5 * (lo + hi));
}
