/*-------------------------------------------------------------------------
 *
 * saga.c
 *	  The parts of a checkout through the router (docs/scale-out.md,
 *	  "Checkout as a saga") that need shop's C: the checks of a checkout's
 *	  request and the payment's authorization and fraud score, made with
 *	  the same code as shop.checkout (src/orders.c, src/payments.c).
 *
 * Through the router a checkout is a saga of steps, each its own
 * transaction on one shard; the steps themselves are SQL (the section
 * "Scale-out: saga steps (issue 16)" of shop--1.0--1.1.sql).  These two
 * functions let those steps refuse what shop.checkout refuses and charge
 * what it charges, without a second copy of the rules.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_saga_check);
PG_FUNCTION_INFO_V1(shop_saga_payment);
PG_FUNCTION_INFO_V1(shop_saga_trusted);
PG_FUNCTION_INFO_V1(shop_saga_sign);
PG_FUNCTION_INFO_V1(shop_saga_signed);

/*
 * shop._saga_check(payment_token text, idempotency_key text,
 *                  shipping_address jsonb) -> void
 *
 * The argument checks of shop.checkout, in its order and with its errors:
 * NULLs (22004), lengths (22001), empty values (22023), card numbers
 * (SH005), an address that is not an object, an unrecognized token.
 */
Datum
shop_saga_check(PG_FUNCTION_ARGS)
{
	ShopPayToken pt;

	ShopRequireArg(fcinfo, 0, "payment_token");
	ShopRequireArg(fcinfo, 1, "idempotency_key");
	ShopCheckArgText(PG_GETARG_TEXT_PP(0), "payment_token", 200, false);
	ShopCheckArgText(PG_GETARG_TEXT_PP(1), "idempotency_key", 200, false);
	if (!PG_ARGISNULL(2))
	{
		Jsonb	   *address = PG_GETARG_JSONB_P(2);
		char	   *address_text;

		ShopRefuseCardNumberJsonb(address, "shipping_address");
		if (!JB_ROOT_IS_OBJECT(address) || JB_ROOT_IS_SCALAR(address))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("shipping_address must be a jsonb object")));
		address_text = JsonbToCString(NULL, &address->root, VARSIZE(address));
		if (strlen(address_text) > 4000)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("shipping_address is too long"),
					 errdetail("shipping_address has %zu characters as text; at most 4000 are allowed.",
							   strlen(address_text))));
	}
	ShopParsePaymentToken(text_to_cstring(PG_GETARG_TEXT_PP(0)), &pt);
	PG_RETURN_VOID();
}

/*
 * shop._saga_payment(payment_token text, total_cents bigint,
 *                    customer_recent bigint, token_recent bigint,
 *                    paid_count bigint, paid_avg float8)
 *   -> (provider text, outcome text, brand text, last4 text,
 *       fraud_score real, fraud_reasons text[], needs_review boolean)
 *
 * What the payment provider says of the token (outcome: authorized,
 * declined or pending) and the fraud score of an order of total_cents,
 * from the history the caller counted as shop.checkout counts it.  The
 * shared test tokens stand for a fresh card each: their token_recent is
 * not counted, as in shop.checkout.  No SPI, no lock: a pure function of
 * its arguments and shop.fraud_threshold.
 */
Datum
shop_saga_payment(PG_FUNCTION_ARGS)
{
	ShopPayToken pt;
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};
	Datum		reasons;
	double		score;
	const char *outcome;

	for (int i = 0; i < 6; i++)
		if (PG_ARGISNULL(i))
			elog(ERROR, "shop._saga_payment: argument %d is null", i + 1);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "shop._saga_payment must return a record");
	tupdesc = BlessTupleDesc(tupdesc);

	ShopParsePaymentToken(text_to_cstring(PG_GETARG_TEXT_PP(0)), &pt);
	score = ShopFraudScore(PG_GETARG_INT64(2), pt.shared ? 0 : PG_GETARG_INT64(3),
						   PG_GETARG_INT64(4), PG_GETARG_FLOAT8(5), &pt, PG_GETARG_INT64(1),
						   &reasons);
	outcome = pt.outcome == SHOP_PAY_AUTHORIZED ? "authorized"
		: pt.outcome == SHOP_PAY_DECLINED ? "declined" : "pending";

	values[0] = CStringGetTextDatum(pt.provider);
	values[1] = CStringGetTextDatum(outcome);
	if (pt.brand)
		values[2] = CStringGetTextDatum(pt.brand);
	else
		nulls[2] = true;
	if (pt.last4)
		values[3] = CStringGetTextDatum(pt.last4);
	else
		nulls[3] = true;
	values[4] = Float4GetDatum((float4) score);
	values[5] = reasons;
	values[6] = BoolGetDatum(score >= shop_fraud_threshold);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * shop._saga_trusted() -> boolean
 *
 * Whether the caller is trusted as shop._authorize trusts (a superuser or
 * a member of shop_admin; the role outside any SECURITY DEFINER call):
 * the saga steps that touch any customer's order check it.
 */
Datum
shop_saga_trusted(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ShopCallerIsTrusted());
}

/*
 * shop._saga_sign(msg text) -> text
 *
 * The signature of a fact one shard tells another through the router (a
 * saga was begun for these lines, these lines are held at these prices, the
 * order is paid, ...): hex HMAC-SHA256 under shop.session_secret, which
 * every shard of a cluster shares (it verifies the storefront's session
 * tokens too).  The storefront passes these facts along through the router,
 * and cannot make them up (docs/security.md, "Through the router").
 */
Datum
shop_saga_sign(PG_FUNCTION_ARGS)
{
	char		mac[2 * 32 + 1];

	ShopSagaMac(text_to_cstring(PG_GETARG_TEXT_PP(0)), mac);
	PG_RETURN_TEXT_P(cstring_to_text(mac));
}

/*
 * shop._saga_signed(msg text, sig text) -> boolean
 *
 * Whether sig is msg's signature (compared in constant time); false for a
 * NULL sig.
 */
Datum
shop_saga_signed(PG_FUNCTION_ARGS)
{
	char		mac[2 * 32 + 1];
	char	   *given;
	int			diff = 0;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	ShopSagaMac(text_to_cstring(PG_GETARG_TEXT_PP(0)), mac);
	given = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (strlen(given) != 2 * 32)
		PG_RETURN_BOOL(false);
	for (int i = 0; i < 2 * 32; i++)
		diff |= mac[i] ^ given[i];
	PG_RETURN_BOOL(diff == 0);
}
