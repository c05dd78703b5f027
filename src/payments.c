/*-------------------------------------------------------------------------
 *
 * payments.c
 *	  Payment tokens, the built-in test provider, rule-based fraud scoring
 *	  and saved payment methods.
 *
 * Tokens.  shop never sees a card number: the application tokenizes the
 * card with its provider and passes the token.  Two forms are accepted:
 *
 *   tok_<name>[_<suffix>]   the built-in "test" provider, in the style of a
 *                           gateway's test mode: tok_visa, tok_mastercard,
 *                           tok_amex authorize; tok_chargeDeclined declines
 *                           (SH004, nothing is kept); tok_fraud authorizes
 *                           but the provider's risk check fires, so the order
 *                           waits for review.  A suffix ("tok_visa_alice")
 *                           names one particular card of that kind.
 *   <provider>:<token>      a real gateway (e.g. "stripe:pm_1Nx..."): the
 *                           order waits in pending, holding its stock, while
 *                           the application talks to the gateway outside any
 *                           lock, then calls shop.payment_confirm or
 *                           shop.payment_fail.
 *
 * Fraud score, 0 (clean) to 1, the capped sum of these rules:
 *   customer velocity   orders of the customer in the last hour: >= 5 adds
 *                       0.25, >= 10 adds 0.5
 *   token velocity      payments with the same token in the last hour:
 *                       >= 5 adds 0.25, >= 10 adds 0.5 (not for the shared
 *                       bare test tokens, which stand for a fresh card each)
 *   amount vs history   with at least 3 paid orders: a total above 3x their
 *                       average adds 0.2, above 5x adds 0.4
 *   large first order   no paid order before and total >= 2000.00 adds 0.3
 *   provider risk       tok_fraud: 1
 * An order scoring at or above shop.fraud_threshold waits for review.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_payment_method_add);
PG_FUNCTION_INFO_V1(shop_check_payment_failures);

/*
 * ShopCheckArgText: card-number refusal (SH005), length (22001) and
 * emptiness (22023) of a text argument.
 */
void
ShopCheckArgText(text *t, const char *what, int max_len, bool allow_empty)
{
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	int			nchars;

	ShopRefuseCardNumberText(s, len, what);
	nchars = pg_mbstrlen_with_len(s, len);
	if (nchars > max_len)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long", what),
				 errdetail("%s has %d characters; at most %d are allowed.", what, nchars, max_len)));
	if (!allow_empty && len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
}

/* Does token equal name, or name followed by "_<suffix>"? */
static bool
test_token_is(const char *token, const char *name, bool *shared)
{
	size_t		n = strlen(name);

	if (strncmp(token, name, n) != 0)
		return false;
	if (token[n] == '\0')
	{
		*shared = true;
		return true;
	}
	if (token[n] == '_' && token[n + 1] != '\0')
	{
		*shared = false;
		return true;
	}
	return false;
}

/*
 * ShopParsePaymentToken: classify a token (see the file header); raises
 * 22023 for a token of neither form or an unknown test token.
 */
void
ShopParsePaymentToken(const char *token, ShopPayToken *pt)
{
	const char *colon = strchr(token, ':');
	const char *t = token;

	memset(pt, 0, sizeof(*pt));
	if (colon != NULL)
	{
		size_t		n = colon - token;
		bool		ok = n >= 1 && n < sizeof(pt->provider) && colon[1] != '\0';

		for (size_t i = 0; ok && i < n; i++)
			ok = (token[i] >= 'a' && token[i] <= 'z') ||
				(i > 0 && ((token[i] >= '0' && token[i] <= '9') || token[i] == '_'));
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed payment token"),
					 errdetail("A gateway token is \"<provider>:<token>\" with a lower-case provider name.")));
		memcpy(pt->provider, token, n);
		pt->provider[n] = '\0';
		if (strcmp(pt->provider, "test") != 0)
		{
			pt->outcome = SHOP_PAY_PENDING;
			return;
		}
		t = colon + 1;
	}
	else
		strlcpy(pt->provider, "test", sizeof(pt->provider));

	pt->outcome = SHOP_PAY_AUTHORIZED;
	if (test_token_is(t, "tok_visa", &pt->shared))
	{
		pt->brand = "visa";
		pt->last4 = "4242";
	}
	else if (test_token_is(t, "tok_mastercard", &pt->shared))
	{
		pt->brand = "mastercard";
		pt->last4 = "4444";
	}
	else if (test_token_is(t, "tok_amex", &pt->shared))
	{
		pt->brand = "amex";
		pt->last4 = "8431";
	}
	else if (test_token_is(t, "tok_fraud", &pt->shared))
	{
		pt->brand = "visa";
		pt->last4 = "0019";
		pt->provider_risk = true;
	}
	else if (test_token_is(t, "tok_chargeDeclined", &pt->shared))
	{
		pt->brand = "visa";
		pt->last4 = "0002";
		pt->outcome = SHOP_PAY_DECLINED;
	}
	else if (strncmp(t, "tok_", 4) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown test payment token"),
				 errdetail("The test provider knows tok_visa, tok_mastercard, tok_amex, tok_chargeDeclined and tok_fraud.")));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized payment token"),
				 errdetail("A token is either a test token (tok_visa, ...) or \"<provider>:<token>\" for a real gateway.")));
}

/*
 * ShopFraudScore: the score of the rules above for an order about to be
 * placed, from what the caller counted: the customer's orders and the
 * token's payments in the last hour, the number and average total of the
 * customer's (last 50) paid orders.  *reasons gets a text[] naming the
 * rules that fired.
 */
double
ShopFraudScore(int64 cust_recent, int64 token_recent, int64 hist_n, double hist_avg,
			   const ShopPayToken *pt, int64 total_cents, Datum *reasons)
{
	Datum		rdatums[8];
	int			nreasons = 0;
	double		score = 0.0;

	if (cust_recent >= 10)
		score += 0.5, rdatums[nreasons++] = CStringGetTextDatum("customer_velocity");
	else if (cust_recent >= 5)
		score += 0.25, rdatums[nreasons++] = CStringGetTextDatum("customer_velocity");
	if (token_recent >= 10)
		score += 0.5, rdatums[nreasons++] = CStringGetTextDatum("token_velocity");
	else if (token_recent >= 5)
		score += 0.25, rdatums[nreasons++] = CStringGetTextDatum("token_velocity");
	if (hist_n >= 3 && total_cents > 5 * hist_avg)
		score += 0.4, rdatums[nreasons++] = CStringGetTextDatum("amount_vs_history");
	else if (hist_n >= 3 && total_cents > 3 * hist_avg)
		score += 0.2, rdatums[nreasons++] = CStringGetTextDatum("amount_vs_history");
	if (hist_n == 0 && total_cents >= 200000)
		score += 0.3, rdatums[nreasons++] = CStringGetTextDatum("large_first_order");
	if (pt->provider_risk)
		score = 1.0, rdatums[nreasons++] = CStringGetTextDatum("provider_risk");
	if (score > 1.0)
		score = 1.0;
	*reasons = PointerGetDatum(construct_array(rdatums, nreasons, TEXTOID, -1, false, TYPALIGN_INT));
	return score;
}

static ShopStmt st_method_save = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.payment_method AS m (customer_id, token, brand, last4, exp_month, exp_year)"
	" VALUES ($1, $2, $3, $4, $5, $6)"
	" ON CONFLICT (customer_id, token) DO UPDATE"
	"   SET brand = excluded.brand, last4 = excluded.last4,"
	"       exp_month = excluded.exp_month, exp_year = excluded.exp_year"
	" RETURNING m.payment_method_id",
	INT8OID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID);

/*
 * shop.payment_method_add(customer_id bigint, token text, brand text,
 *                         last4 text, exp_month int, exp_year int) -> uuid
 * Saving the same token again updates it and returns the same id.
 */
Datum
shop_payment_method_add(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"customer_id", "token", "brand", "last4", "exp_month", "exp_year"};
	ShopPayToken pt;
	char	   *token;
	Datum		args[6];
	char		nulls[6];
	Datum		result;
	bool		isnull;

	for (int i = 0; i < 2; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("argument %s must not be null", names[i])));
	/* card numbers first, in every text argument */
	for (int i = 1; i <= 3; i++)
		if (!PG_ARGISNULL(i))
			ShopCheckArgText(PG_GETARG_TEXT_PP(i), names[i], i == 1 ? 200 : 40, i != 1);
	ShopAuthorizeCustomer(PG_GETARG_INT64(0), false);
	token = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ShopParsePaymentToken(token, &pt);
	if (!PG_ARGISNULL(3))
	{
		char	   *l4 = text_to_cstring(PG_GETARG_TEXT_PP(3));

		if (strlen(l4) != 4 || strspn(l4, "0123456789") != 4)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("last4 must be four digits"),
					 errdetail("last4 is \"%s\".", l4)));
	}
	if (!PG_ARGISNULL(4) && (PG_GETARG_INT32(4) < 1 || PG_GETARG_INT32(4) > 12))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("exp_month out of range"),
				 errdetail("exp_month is %d; it must be between 1 and 12.", PG_GETARG_INT32(4))));
	if (!PG_ARGISNULL(5) && (PG_GETARG_INT32(5) < 2000 || PG_GETARG_INT32(5) > 2200))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("exp_year out of range"),
				 errdetail("exp_year is %d; it must be between 2000 and 2200.", PG_GETARG_INT32(5))));
	if (PG_ARGISNULL(4) != PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("exp_month and exp_year go together"),
				 errdetail("Give both or neither.")));
	if (!PG_ARGISNULL(5))
	{
		struct pg_tm tm;
		fsec_t		fsec;

		if (timestamp2tm(GetCurrentTimestamp(), NULL, &tm, &fsec, NULL, NULL) != 0)
			elog(ERROR, "timestamp out of range");
		if (PG_GETARG_INT32(5) < tm.tm_year ||
			(PG_GETARG_INT32(5) == tm.tm_year && PG_GETARG_INT32(4) < tm.tm_mon))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("card expired"),
					 errdetail("The card expired at the end of %02d/%d.", PG_GETARG_INT32(4), PG_GETARG_INT32(5))));
	}

	for (int i = 0; i < 6; i++)
	{
		args[i] = PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	/* the test provider knows the brand and last four of its tokens */
	if (PG_ARGISNULL(2) && pt.brand)
		args[2] = CStringGetTextDatum(pt.brand), nulls[2] = ' ';
	if (PG_ARGISNULL(3) && pt.last4)
		args[3] = CStringGetTextDatum(pt.last4), nulls[3] = ' ';

	SPI_connect();
	if (ShopExec(&st_method_save, args, nulls, 0) != 1)
		elog(ERROR, "could not save payment method");
	result = ShopColCopy(0, 1, &isnull);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* ---------------------------------------------------------------------
 * The payment.failures alert (docs/operations.md)
 * ---------------------------------------------------------------------
 */

/* failed payments created in the window (payment_failed_idx, on updated_at >= created_at) */
static ShopStmt st_failed_recent = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT count(*) FROM shop.payment"
	" WHERE status = 'failed' AND updated_at >= $1 AND created_at >= $1",
	TIMESTAMPTZOID);
/* payments created in the window, counted up to $2 (NULL: all) */
static ShopStmt st_payments_recent = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT count(*) FROM (SELECT FROM shop.payment WHERE created_at >= $1 LIMIT $2) p",
	TIMESTAMPTZOID, INT8OID);
static ShopStmt st_alerted_recent = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT FROM shop.event WHERE topic = 'payment.failures' AND created_at >= $1 LIMIT 1",
	TIMESTAMPTZOID);
static ShopStmt st_emit_failures = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT shop._emit('payment.failures', jsonb_build_object("
	"  'payments', $1, 'failed', $2, 'failure_rate', round($2::numeric / $1, 4),"
	"  'threshold', $3, 'window', make_interval(secs => $4)::text))",
	INT8OID, INT8OID, FLOAT8OID, INT4OID);

/*
 * ShopCheckPaymentFailures: emit payment.failures when, over the last
 * shop.payment_failure_window, at least 5 payments were made and the share
 * that failed exceeds shop.payment_failure_threshold; at most once per
 * window.  Returns true when it emitted.  SPI must be connected.
 *
 * It runs after every failed payment, so it must not count every payment
 * of the window (on Black Friday, hundreds of thousands): it counts the
 * failures, then payments only up to the number at which the share could
 * no longer pass the threshold.
 */
bool
ShopCheckPaymentFailures(void)
{
	TimestampTz since = GetCurrentTransactionStartTimestamp() -
		(int64) shop_payment_failure_window * USECS_PER_SEC;
	double		threshold = shop_payment_failure_threshold;
	Datum		args[4];
	char		nulls[2] = "  ";
	int64		failed;
	int64		payments;
	int64		enough = 0;

	args[0] = TimestampTzGetDatum(since);
	ShopExec(&st_failed_recent, args, NULL, 0);
	failed = ShopColInt(0, 1, 0);
	if (failed == 0)
		return false;
	/* failed / n > threshold only while n < failed / threshold */
	if (threshold > 0 && (double) failed / threshold < (double) PG_INT64_MAX / 2)
		enough = (int64) ceil((double) failed / threshold);
	args[1] = Int64GetDatum(enough);
	if (enough == 0)
		nulls[1] = 'n';
	ShopExec(&st_payments_recent, args, nulls, 0);
	payments = ShopColInt(0, 1, 0);
	if (payments < 5 || (enough > 0 && payments >= enough) ||
		(double) failed / payments <= threshold)
		return false;
	if (ShopExec(&st_alerted_recent, args, NULL, 0) > 0)
		return false;
	args[0] = Int64GetDatum(payments);
	args[1] = Int64GetDatum(failed);
	args[2] = Float8GetDatum(threshold);
	args[3] = Int32GetDatum(shop_payment_failure_window);
	ShopExec(&st_emit_failures, args, NULL, 0);
	return true;
}

/* shop._check_payment_failures() -> boolean */
Datum
shop_check_payment_failures(PG_FUNCTION_ARGS)
{
	bool		emitted;

	SPI_connect();
	emitted = ShopCheckPaymentFailures();
	SPI_finish();
	PG_RETURN_BOOL(emitted);
}
