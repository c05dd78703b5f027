/*-------------------------------------------------------------------------
 *
 * cart.c
 *	  C support of the cart (shop--1.0.sql section 4).
 *
 * The cart calls are short PL/pgSQL functions: each is one or two
 * single-row statements on the cart's own rows, where C would buy nothing.
 * What they need from C is the cart lifetime GUC, read here so that it is
 * defined whether or not shop was preloaded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/timestamp.h"

#include "shop.h"

PG_FUNCTION_INFO_V1(shop_cart_expiry);

/* now() + shop.cart_ttl: when a cart touched now expires. */
Datum
ShopCartExpiry(void)
{
	return TimestampTzGetDatum(GetCurrentTransactionStartTimestamp() +
							   (int64) shop_cart_ttl * USECS_PER_SEC);
}

/* shop._cart_expiry() -> timestamptz */
Datum
shop_cart_expiry(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(ShopCartExpiry());
}
