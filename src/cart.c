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
#include "utils/uuid.h"

#include "shop.h"

PG_FUNCTION_INFO_V1(shop_cart_expiry);

/* now() + shop.cart_ttl: when a cart touched now expires. */
Datum
ShopCartExpiry(void)
{
	return TimestampTzGetDatum(GetCurrentTransactionStartTimestamp() +
							   (int64) shop_cart_ttl * USECS_PER_SEC);
}

/*
 * The customer_key of a guest's rows (shop._customer_key(NULL, cart_id) in
 * SQL): -1 minus the last 16 bits of the cart id, the bucket a router-made
 * id carries (docs/scale-out.md, "Citus-compatible keys").
 */
int64
ShopGuestKey(const pg_uuid_t *cart_id)
{
	return -1 - (int64) ((cart_id->data[UUID_LEN - 2] << 8) | cart_id->data[UUID_LEN - 1]);
}

/* shop._cart_expiry() -> timestamptz */
Datum
shop_cart_expiry(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(ShopCartExpiry());
}
