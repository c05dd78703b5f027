/*-------------------------------------------------------------------------
 *
 * security.c
 *	  Who may act for which customer: signed storefront sessions and the
 *	  authorization check of every customer-facing call.
 *
 * The model (docs/security.md).  The customer-facing calls are SECURITY
 * DEFINER and executable only by two roles the extension creates:
 *
 *   shop_admin       back-office tools: trusted, may act for any customer
 *                    and run the admin calls (transitions, payments, review);
 *   shop_storefront  the customer-facing application: may act only for the
 *                    customer of its verified session.
 *
 * A storefront session proves its customer with a token minted by
 * shop.session_token(customer_id, ttl) (an admin call, run by the login
 * service) and presented once to shop.session_begin(token):
 *
 *     v1.<customer_id>.<expires_unix>.<hex HMAC-SHA256 of "v1.<id>.<exp>">
 *
 * keyed with shop.session_secret, a superuser-only GUC that an ordinary
 * role can neither set nor read.  The verified customer lives in a static
 * variable of this backend, not in a GUC, so "SET" cannot forge it.
 *
 * A caller is trusted when its outer role (current_user outside every
 * SECURITY DEFINER function, i.e. after SET ROLE) is a superuser or has
 * the privileges of shop_admin.  Anything else that got EXECUTE (a member
 * of shop_storefront) is restricted: it may touch an anonymous cart or a
 * guest order by its id (a random uuid, the same capability a cart cookie
 * is), and customer-owned rows only of its session's customer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "common/hmac.h"
#include "common/sha2.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "shop.h"

PG_FUNCTION_INFO_V1(shop_session_token);
PG_FUNCTION_INFO_V1(shop_session_begin);
PG_FUNCTION_INFO_V1(shop_session_end);
PG_FUNCTION_INFO_V1(shop_current_customer);
PG_FUNCTION_INFO_V1(shop_authorize);

#define SHOP_MIN_SECRET_LEN 32

static bool session_valid = false;
static int64 session_customer = 0;

/* The secret, or an error when it is not configured. */
static const char *
session_secret(void)
{
	if (shop_session_secret == NULL || strlen(shop_session_secret) < SHOP_MIN_SECRET_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shop.session_secret is not set"),
				 errdetail("Storefront sessions need a server secret of at least %d characters.",
						   SHOP_MIN_SECRET_LEN),
				 errhint("A superuser sets it with ALTER SYSTEM SET shop.session_secret = '...' and reloads.")));
	return shop_session_secret;
}

/* Hex HMAC-SHA256 of msg under the secret into out (65 bytes). */
static void
session_mac(const char *msg, char *out)
{
	const char *key = session_secret();
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL ||
		pg_hmac_init(ctx, (const uint8 *) key, strlen(key)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) msg, strlen(msg)) < 0 ||
		pg_hmac_final(ctx, mac, sizeof(mac)) < 0)
	{
		pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC-SHA256");
	}
	pg_hmac_free(ctx);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static int64
now_unix(void)
{
	return (int64) time(NULL);
}

/*
 * shop.session_token(customer_id bigint, ttl interval) -> text
 */
Datum
shop_session_token(PG_FUNCTION_ARGS)
{
	int64		customer;
	Interval   *ttl;
	int64		secs;
	char		msg[96];
	char		mac[2 * PG_SHA256_DIGEST_LENGTH + 1];

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("argument customer_id must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("argument ttl must not be null")));
	customer = PG_GETARG_INT64(0);
	ttl = PG_GETARG_INTERVAL_P(1);
	secs = ttl->time / USECS_PER_SEC + (int64) ttl->day * SECS_PER_DAY +
		(int64) ttl->month * 30 * SECS_PER_DAY;
	if (secs < 1 || secs > 366 * SECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("session ttl out of range"),
				 errdetail("ttl must be between 1 second and 366 days.")));
	snprintf(msg, sizeof(msg), "v1." INT64_FORMAT "." INT64_FORMAT, customer, now_unix() + secs);
	session_mac(msg, mac);
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%s.%s", msg, mac)));
}

static void
invalid_token(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("invalid session token"),
			 errdetail("%s", why),
			 errhidestmt(true)));
}

/*
 * shop.session_begin(token text) -> bigint
 * Verifies the token; on success this backend acts as its customer.  A
 * failed attempt also forgets any earlier session.
 */
Datum
shop_session_begin(PG_FUNCTION_ARGS)
{
	char	   *tok;
	char	   *p;
	char	   *dot;
	int64		customer;
	int64		expires;
	char		mac[2 * PG_SHA256_DIGEST_LENGTH + 1];
	int			diff = 0;

	session_valid = false;
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("argument token must not be null")));
	tok = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strlen(tok) > 200 || strncmp(tok, "v1.", 3) != 0)
		invalid_token("The token is not a shop session token.");
	/* the signed part ends at the last dot */
	dot = strrchr(tok, '.');
	if (dot == NULL || dot - tok < 7 || strlen(dot + 1) != 2 * PG_SHA256_DIGEST_LENGTH)
		invalid_token("The token is not a shop session token.");
	*dot = '\0';
	session_mac(tok, mac);
	for (int i = 0; i < 2 * PG_SHA256_DIGEST_LENGTH; i++)
		diff |= mac[i] ^ dot[1 + i];
	if (diff != 0)
		invalid_token("The token's signature does not match.");
	p = tok + 3;
	errno = 0;
	customer = strtoll(p, &p, 10);
	if (errno != 0 || *p != '.')
		invalid_token("The token is not a shop session token.");
	expires = strtoll(p + 1, &p, 10);
	if (errno != 0 || *p != '\0')
		invalid_token("The token is not a shop session token.");
	if (expires <= now_unix())
		invalid_token("The token has expired.");
	session_customer = customer;
	session_valid = true;
	PG_RETURN_INT64(customer);
}

Datum
shop_session_end(PG_FUNCTION_ARGS)
{
	session_valid = false;
	PG_RETURN_VOID();
}

Datum
shop_current_customer(PG_FUNCTION_ARGS)
{
	if (!session_valid)
		PG_RETURN_NULL();
	PG_RETURN_INT64(session_customer);
}

/*
 * ShopCallerIsTrusted: is the role outside every SECURITY DEFINER call a
 * superuser or (a member with the privileges of) shop_admin?
 */
bool
ShopCallerIsTrusted(void)
{
	Oid			outer = GetOuterUserId();
	Oid			admin;

	if (superuser_arg(outer))
		return true;
	admin = get_role_oid("shop_admin", true);
	return OidIsValid(admin) && has_privs_of_role(outer, admin);
}

/*
 * ShopAuthorizeCustomer: raise 42501 unless the caller may act for this
 * customer.  isnull: the row is anonymous (a guest cart or order), which
 * anyone holding its id may use.
 */
void
ShopAuthorizeCustomer(int64 customer_id, bool isnull)
{
	if (isnull || ShopCallerIsTrusted())
		return;
	if (!session_valid)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for customer " INT64_FORMAT, customer_id),
				 errdetail("This role may act only for the customer of a verified session."),
				 errhint("Call shop.session_begin(token) first.")));
	if (session_customer != customer_id)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for customer " INT64_FORMAT, customer_id),
				 errdetail("The session acts for customer " INT64_FORMAT ".", session_customer)));
}

/* shop._authorize(customer_id bigint) -> void */
Datum
shop_authorize(PG_FUNCTION_ARGS)
{
	ShopAuthorizeCustomer(PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0), PG_ARGISNULL(0));
	PG_RETURN_VOID();
}
