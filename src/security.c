/*-------------------------------------------------------------------------
 *
 * security.c
 *	  Who may act for which customer: signed storefront sessions, the
 *	  authorization check of every customer-facing call, and the checks of
 *	  the inputs a storefront or a catalog feed can smuggle something in
 *	  with (control characters, customer ids, prices).
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
 * service):
 *
 *     v1.<customer_id>.<expires_unix>.<hex HMAC-SHA256 of "v1.<id>.<exp>">
 *
 * keyed with shop.session_secret, a superuser-only GUC that an ordinary
 * role can neither set nor read.
 *
 * Where the session's customer lives.  In the GUC shop.session, whose value
 * is the token itself.  Its check hook verifies the signature and expiry, so
 * SET can only ever install a genuine token, and hands the verified
 * customer to the assign hook as the GUC's "extra".  Being an ordinary
 * setting, it follows PostgreSQL's rules for session state, which is what
 * connection poolers rely on:
 *
 *   SET / shop.session_begin(token)   for the rest of the session, until
 *                                     RESET, RESET ALL or DISCARD ALL (what
 *                                     PgBouncer runs between two clients in
 *                                     session pooling);
 *   SET LOCAL / set_config(.., true)  until the end of the transaction (the
 *                                     only state that is safe in
 *                                     transaction pooling);
 *   a rolled back SET                 undone with its transaction.
 *
 * On top of that, a session is void when
 *   - it expired (checked on every use, against the transaction's start),
 *   - shop.session_secret changed since it was verified (rotation revokes
 *     sessions already begun, not only new ones),
 *   - shop.session_end() or a failed shop.session_begin() came after it:
 *     both forget every session verified so far, in a way that no rollback
 *     can undo (a counter outside the GUC machinery), or
 *   - shop.session_scope is 'transaction' (a superuser setting, typically
 *     ALTER ROLE ... SET for the login role behind a transaction pooler)
 *     and it was verified in an earlier transaction: then even a plain SET
 *     or a session_begin outside a transaction block lasts one transaction.
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

#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/resowner.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "shop.h"

PG_FUNCTION_INFO_V1(shop_session_token);
PG_FUNCTION_INFO_V1(shop_session_begin);
PG_FUNCTION_INFO_V1(shop_session_end);
PG_FUNCTION_INFO_V1(shop_current_customer);
PG_FUNCTION_INFO_V1(shop_authorize);
PG_FUNCTION_INFO_V1(shop_customer_refusal);
PG_FUNCTION_INFO_V1(shop_session_refusal);
PG_FUNCTION_INFO_V1(shop_session_use);
PG_FUNCTION_INFO_V1(shop_plain_text);
PG_FUNCTION_INFO_V1(shop_check_plain_text);
PG_FUNCTION_INFO_V1(shop_check_price);

#define SHOP_MIN_SECRET_LEN 32

/* A verified session: the "extra" of a non-empty shop.session value. */
typedef struct ShopSession
{
	int64		customer;
	int64		expires;		/* unix seconds */
	uint64		serial;			/* 1, 2, ... in order of verification */
	uint64		secret_hash;	/* of the shop.session_secret that verified it */
	LocalTransactionId lxid;	/* the transaction that verified it */
} ShopSession;

typedef enum ShopSessionScope
{
	SHOP_SCOPE_SESSION,
	SHOP_SCOPE_TRANSACTION
} ShopSessionScope;

static const struct config_enum_entry session_scope_options[] = {
	{"session", SHOP_SCOPE_SESSION, false},
	{"transaction", SHOP_SCOPE_TRANSACTION, false},
	{NULL, 0, false}
};

static char *session_token_guc = NULL;	/* shop.session (the token, or '') */
static int	session_scope = SHOP_SCOPE_SESSION; /* shop.session_scope */
static const ShopSession *session_current = NULL;	/* its extra */
static uint64 session_serial = 0;	/* serials handed out so far */
static uint64 session_void_upto = 0;	/* sessions up to this serial are void */

/* Why a token was refused, for the error's detail and SQLSTATE. */
typedef struct ShopTokenVerdict
{
	int			sqlstate;
	const char *why;
	int64		customer;
	int64		expires;
} ShopTokenVerdict;

static int64
now_unix(void)
{
	return (int64) time(NULL);
}

/* Hash of the current secret (0 when unset): a session remembers it. */
static uint64
secret_hash(void)
{
	if (shop_session_secret == NULL || shop_session_secret[0] == '\0')
		return 0;
	return hash_bytes_extended((const unsigned char *) shop_session_secret,
							   strlen(shop_session_secret), 0);
}

static bool
secret_configured(void)
{
	return shop_session_secret != NULL && strlen(shop_session_secret) >= SHOP_MIN_SECRET_LEN;
}

/* The secret, or an error when it is not configured. */
static const char *
session_secret(void)
{
	if (!secret_configured())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shop.session_secret is not set"),
				 errdetail("Storefront sessions need a server secret of at least %d characters.",
						   SHOP_MIN_SECRET_LEN),
				 errhint("A superuser sets it with ALTER SYSTEM SET shop.session_secret = '...' and reloads.")));
	return shop_session_secret;
}

/*
 * Hex HMAC-SHA256 of msg under key into out (65 bytes); false when the
 * HMAC could not be computed (out of memory).  Never throws: the GUC check
 * hook uses it.
 */
static bool
session_mac(const char *key, const char *msg, char *out)
{
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL ||
		pg_hmac_init(ctx, (const uint8 *) key, strlen(key)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) msg, strlen(msg)) < 0 ||
		pg_hmac_final(ctx, mac, sizeof(mac)) < 0)
	{
		pg_hmac_free(ctx);
		return false;
	}
	pg_hmac_free(ctx);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
	return true;
}

/*
 * Split a token into its signed part (copied into signed_part, NUL
 * terminated), customer, expiry and hex signature; false when it does not
 * have the shape of a token.
 */
static bool
token_parse(const char *token, char *signed_part, size_t size, int64 *customer,
			int64 *expires, const char **mac)
{
	const char *dot;
	char	   *p;

	if (strlen(token) > 200 || strncmp(token, "v1.", 3) != 0)
		return false;
	/* the signed part ends at the last dot */
	dot = strrchr(token, '.');
	if (dot == NULL || dot - token < 7 || dot - token >= size ||
		strlen(dot + 1) != 2 * PG_SHA256_DIGEST_LENGTH)
		return false;
	memcpy(signed_part, token, dot - token);
	signed_part[dot - token] = '\0';
	*mac = dot + 1;
	p = signed_part + 3;
	errno = 0;
	*customer = strtoll(p, &p, 10);
	if (errno != 0 || *p != '.' || *customer <= 0)
		return false;
	*expires = strtoll(p + 1, &p, 10);
	if (errno != 0 || *p != '\0')
		return false;
	return true;
}

/*
 * Verify a token: shape, signature (constant time), expiry.  Fills v and
 * returns true when it is genuine and live; otherwise v->sqlstate and v->why
 * say why not.  Throws only when out of memory; needs a resource owner (the
 * HMAC is OpenSSL's).
 */
static bool
token_verify(const char *token, ShopTokenVerdict *v)
{
	char		signed_part[256];
	const char *given;
	char		mac[2 * PG_SHA256_DIGEST_LENGTH + 1];
	int			diff = 0;

	v->sqlstate = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
	v->why = "The token is not a shop session token.";
	if (!secret_configured())
	{
		v->sqlstate = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		v->why = "shop.session_secret is not set.";
		return false;
	}
	if (!token_parse(token, signed_part, sizeof(signed_part), &v->customer, &v->expires, &given))
		return false;
	if (!session_mac(shop_session_secret, signed_part, mac))
	{
		v->sqlstate = ERRCODE_OUT_OF_MEMORY;
		v->why = "The token's signature could not be computed.";
		return false;
	}
	for (int i = 0; i < 2 * PG_SHA256_DIGEST_LENGTH; i++)
		diff |= mac[i] ^ given[i];
	if (diff != 0)
	{
		v->why = "The token's signature does not match.";
		return false;
	}
	if (v->expires <= now_unix())
	{
		v->why = "The token has expired.";
		return false;
	}
	return true;
}

/*
 * ShopSagaMac: the hex HMAC-SHA256 (out: 65 bytes) of "saga." followed by
 * msg, under shop.session_secret (55000 when it is not set).  The router's
 * saga steps sign what one shard tells another with it (src/saga.c); the
 * prefix keeps such a signature from ever being a session token's, whose
 * signed part starts with "v1.".
 */
void
ShopSagaMac(const char *msg, char *out)
{
	char	   *full = psprintf("saga.%s", msg);

	if (!session_mac(session_secret(), full, out))
		elog(ERROR, "could not compute HMAC-SHA256");
	pfree(full);
}

/* Forget every session verified so far (no rollback brings them back). */
static void
session_forget_all(void)
{
	session_void_upto = session_serial;
}

/*
 * check hook of shop.session: an empty value, or a genuine live token whose
 * verified customer becomes the value's extra.  A refused token also
 * forgets every earlier session, as a failed session_begin does.
 */
static bool
check_session(char **newval, void **extra, GucSource source)
{
	ShopTokenVerdict v;
	ShopSession *s;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (InitializingParallelWorker)
	{
		/*
		 * A parallel worker restoring its leader's settings: the leader
		 * verified the value (and the secret may not be restored yet).
		 */
		char		signed_part[256];
		const char *mac;

		if (!token_parse(*newval, signed_part, sizeof(signed_part), &v.customer, &v.expires, &mac))
			return false;
	}
	else if (CurrentResourceOwner == NULL)
	{
		/* no transaction (e.g. a library loaded at connection start) */
		GUC_check_errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
		GUC_check_errmsg("shop.session can be set only in a transaction");
		GUC_check_errhint("Use SET, set_config() or shop.session_begin() once connected.");
		return false;
	}
	else if (!token_verify(*newval, &v))
	{
		session_forget_all();
		GUC_check_errcode(v.sqlstate);
		GUC_check_errmsg("invalid session token");
		GUC_check_errdetail("%s", v.why);
		return false;
	}
	/* a GUC's extra is malloc'd: the GUC machinery frees it */
#if PG_VERSION_NUM >= 160000
	s = (ShopSession *) guc_malloc(LOG, sizeof(ShopSession));
#else
	s = (ShopSession *) malloc(sizeof(ShopSession));
#endif
	if (s == NULL)
		return false;
	s->customer = v.customer;
	s->expires = v.expires;
	s->serial = ++session_serial;
	s->secret_hash = secret_hash();
	s->lxid = MyProc != NULL ? MyProc->lxid : InvalidLocalTransactionId;
	*extra = s;
	return true;
}

static void
assign_session(const char *newval, void *extra)
{
	session_current = (const ShopSession *) extra;
}

static bool session_customer(int64 *customer, const char **why);

/*
 * SHOW shop.session: "customer N" while the session acts for customer N,
 * else empty; never the token itself.
 */
static const char *
show_session(void)
{
	static char buf[64];
	int64		customer;
	const char *why;

	if (session_current == NULL || !IsTransactionState() || !session_customer(&customer, &why))
		return "";
	snprintf(buf, sizeof(buf), "customer " INT64_FORMAT, customer);
	return buf;
}

/*
 * ShopSessionDefineGUCs: shop.session and shop.session_scope; called by
 * _PG_init after shop.session_secret is defined (the check hook needs it
 * when a value set before the library was loaded is applied).
 */
void
ShopSessionDefineGUCs(void)
{
	DefineCustomStringVariable("shop.session",
							   "Session token of the storefront customer this session or transaction acts for.",
							   "Set with SET LOCAL (one transaction) or SET / shop.session_begin() "
							   "(the session); only a genuine, unexpired token is accepted (docs/security.md).",
							   &session_token_guc,
							   "",
							   PGC_USERSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   check_session, assign_session, show_session);

	DefineCustomEnumVariable("shop.session_scope",
							 "How long a storefront session lasts: session, or transaction.",
							 "transaction holds every session, however it was begun, to the "
							 "transaction that began it: set it for the login role of a storefront "
							 "behind a transaction pooler (docs/security.md).",
							 &session_scope,
							 SHOP_SCOPE_SESSION,
							 session_scope_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
}

/*
 * The customer of the live session, or false with *why saying why there
 * is none.
 */
static bool
session_customer(int64 *customer, const char **why)
{
	const ShopSession *s = session_current;

	*why = "This role may act only for the customer of a verified session.";
	if (s == NULL || s->serial <= session_void_upto)
		return false;
	if (s->expires <= (int64) timestamptz_to_time_t(GetCurrentTransactionStartTimestamp()))
	{
		*why = "The session's token has expired.";
		return false;
	}
	if (s->secret_hash != secret_hash())
	{
		*why = "shop.session_secret changed since the session began.";
		return false;
	}
	if (session_scope == SHOP_SCOPE_TRANSACTION &&
		(MyProc == NULL || s->lxid != MyProc->lxid))
	{
		*why = "The session was begun in an earlier transaction, and shop.session_scope is transaction.";
		return false;
	}
	*customer = s->customer;
	return true;
}

/* 22023 unless customer_id is a valid customer id (positive). */
static void
check_customer_id(int64 customer_id)
{
	if (customer_id <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("customer_id must be positive"),
				 errdetail("customer_id is " INT64_FORMAT ".", customer_id)));
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
	check_customer_id(customer);
	ttl = PG_GETARG_INTERVAL_P(1);
	secs = ttl->time / USECS_PER_SEC + (int64) ttl->day * SECS_PER_DAY +
		(int64) ttl->month * 30 * SECS_PER_DAY;
	if (secs < 1 || secs > 366 * SECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("session ttl out of range"),
				 errdetail("ttl must be between 1 second and 366 days.")));
	snprintf(msg, sizeof(msg), "v1." INT64_FORMAT "." INT64_FORMAT, customer, now_unix() + secs);
	if (!session_mac(session_secret(), msg, mac))
		elog(ERROR, "could not compute HMAC-SHA256");
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%s.%s", msg, mac)));
}

/*
 * shop.session_begin(token text) -> bigint
 * Verifies the token; on success the session (or, with shop.session_scope =
 * transaction, the transaction) acts as its customer: it sets shop.session.
 * A failed attempt forgets every earlier session, whatever happens to the
 * transaction.
 */
Datum
shop_session_begin(PG_FUNCTION_ARGS)
{
	char	   *tok;
	ShopTokenVerdict v;

	session_forget_all();
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("argument token must not be null")));
	tok = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!token_verify(tok, &v))
	{
		if (v.sqlstate == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
			(void) session_secret();	/* raises the full error */
		ereport(ERROR,
				(errcode(v.sqlstate),
				 errmsg("invalid session token"),
				 errdetail("%s", v.why),
				 errhidestmt(true)));
	}
	(void) set_config_option("shop.session", tok, PGC_USERSET, PGC_S_SESSION,
							 session_scope == SHOP_SCOPE_TRANSACTION ? GUC_ACTION_LOCAL : GUC_ACTION_SET,
							 true, ERROR, false);
	PG_RETURN_INT64(v.customer);
}

/*
 * shop._session_refusal(token text) -> text[]
 * What shop.session_begin(token) would raise, as {SQLSTATE, message,
 * detail, hint} (hint NULL), or NULL for a genuine live token; changes no
 * session and raises nothing but the unset secret's error (55000, as
 * session_begin raises it).  The router asks it before it verifies a
 * token on a shard (issue 16: a shard's error costs PL/Proxy's
 * connection).
 */
Datum
shop_session_refusal(PG_FUNCTION_ARGS)
{
	ShopTokenVerdict v;
	Datum		elems[4];
	bool		nulls[4] = {false, false, false, true};
	int			dims[1] = {4};
	int			lbs[1] = {1};

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("argument token must not be null")));
	if (token_verify(text_to_cstring(PG_GETARG_TEXT_PP(0)), &v))
		PG_RETURN_NULL();
	if (v.sqlstate == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
		(void) session_secret();	/* raises the full error */
	elems[0] = CStringGetTextDatum(unpack_sql_state(v.sqlstate));
	elems[1] = CStringGetTextDatum("invalid session token");
	elems[2] = CStringGetTextDatum(v.why);
	elems[3] = (Datum) 0;
	PG_RETURN_ARRAYTYPE_P(construct_md_array(elems, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
}

/* shop.session_end(): forget the session's customer. */
Datum
shop_session_end(PG_FUNCTION_ARGS)
{
	session_forget_all();
	(void) set_config_option("shop.session", "", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SET, true, ERROR, false);
	PG_RETURN_VOID();
}

Datum
shop_current_customer(PG_FUNCTION_ARGS)
{
	int64		customer;
	const char *why;

	if (!session_customer(&customer, &why))
		PG_RETURN_NULL();
	PG_RETURN_INT64(customer);
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
 * customer_refusal: what ShopAuthorizeCustomer raises for customer_id
 * (its SQLSTATE, message, detail and hint; hint may be NULL), or false
 * when the caller may act for the customer.  Raises nothing itself.
 */
static bool
customer_refusal(int64 customer_id, int *sqlstate, char **msg, char **detail, char **hint)
{
	int64		session;
	const char *why;

	*hint = NULL;
	if (customer_id <= 0)
	{
		/* check_customer_id's error */
		*sqlstate = ERRCODE_INVALID_PARAMETER_VALUE;
		*msg = pstrdup("customer_id must be positive");
		*detail = psprintf("customer_id is " INT64_FORMAT ".", customer_id);
		return true;
	}
	if (ShopCallerIsTrusted())
		return false;
	*sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
	*msg = psprintf("permission denied for customer " INT64_FORMAT, customer_id);
	if (!session_customer(&session, &why))
	{
		*detail = pstrdup(why);
		*hint = pstrdup("Call shop.session_begin(token), or SET LOCAL shop.session = token, first.");
		return true;
	}
	if (session != customer_id)
	{
		*detail = psprintf("The session acts for customer " INT64_FORMAT ".", session);
		return true;
	}
	return false;
}

/*
 * ShopAuthorizeCustomer: raise 22023 for a customer id that cannot be one
 * (<= 0), then 42501 unless the caller may act for this customer.  isnull:
 * the row is anonymous (a guest cart or order), which anyone holding its id
 * may use.
 */
void
ShopAuthorizeCustomer(int64 customer_id, bool isnull)
{
	int			sqlstate;
	char	   *msg;
	char	   *detail;
	char	   *hint;

	if (isnull)
		return;
	if (!customer_refusal(customer_id, &sqlstate, &msg, &detail, &hint))
		return;
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg_internal("%s", msg),
			 errdetail_internal("%s", detail),
			 hint ? errhint("%s", hint) : 0));
}

/* shop._authorize(customer_id bigint) -> void */
Datum
shop_authorize(PG_FUNCTION_ARGS)
{
	ShopAuthorizeCustomer(PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0), PG_ARGISNULL(0));
	PG_RETURN_VOID();
}

/*
 * shop._customer_refusal(customer_id bigint) -> text[]
 * What shop._authorize(customer_id) would raise, as {SQLSTATE, message,
 * detail, hint} (hint NULL when absent), or NULL when it would raise
 * nothing: a shard's answer the router raises (issue 16: an error on the
 * shard costs PL/Proxy's connections), without a subtransaction.
 */
Datum
shop_customer_refusal(PG_FUNCTION_ARGS)
{
	int			sqlstate;
	char	   *msg;
	char	   *detail;
	char	   *hint;
	Datum		elems[4];
	bool		nulls[4] = {false, false, false, false};
	int			dims[1] = {4};
	int			lbs[1] = {1};

	if (PG_ARGISNULL(0) ||
		!customer_refusal(PG_GETARG_INT64(0), &sqlstate, &msg, &detail, &hint))
		PG_RETURN_NULL();
	elems[0] = CStringGetTextDatum(unpack_sql_state(sqlstate));
	elems[1] = CStringGetTextDatum(msg);
	elems[2] = CStringGetTextDatum(detail);
	if (hint)
		elems[3] = CStringGetTextDatum(hint);
	else
	{
		elems[3] = (Datum) 0;
		nulls[3] = true;
	}
	PG_RETURN_ARRAYTYPE_P(construct_md_array(elems, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * shop._session_use(token text) -> text[]
 * A routed statement's session (issue 16, ha7): sets shop.session to the
 * token for the current transaction, as set_config('shop.session', token,
 * true) does, and returns NULL; a token the setting would refuse (28000:
 * forged, malformed, expired) is returned as {SQLSTATE, message, detail,
 * hint} (hint NULL), what SET shop.session = token raises on one node,
 * and nothing is set.  NULL or '' is no session.  Raises only the unset
 * secret's error (55000).  The router raises the answer: a shard's error
 * would cost PL/Proxy's connection.
 */
Datum
shop_session_use(PG_FUNCTION_ARGS)
{
	char	   *tok = PG_ARGISNULL(0) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(0));
	ShopTokenVerdict v;
	Datum		elems[4];
	bool		nulls[4] = {false, false, false, true};
	int			dims[1] = {4};
	int			lbs[1] = {1};

	if (tok[0] != '\0' && !token_verify(tok, &v))
	{
		if (v.sqlstate == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
			(void) session_secret();	/* raises the full error */
		elems[0] = CStringGetTextDatum(unpack_sql_state(v.sqlstate));
		elems[1] = CStringGetTextDatum("invalid session token");
		elems[2] = CStringGetTextDatum(v.why);
		elems[3] = (Datum) 0;
		PG_RETURN_ARRAYTYPE_P(construct_md_array(elems, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	}
	(void) set_config_option("shop.session", tok, superuser() ? PGC_SUSET : PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	PG_RETURN_NULL();
}

/* ---------------------------------------------------------------------
 * Inputs: plain text and prices
 *
 * Text a shop shows to people and writes to logs (titles, SKUs, brands,
 * category names, descriptions, reviews) must not carry control
 * characters: an ESC starts an ANSI escape sequence that recolours or
 * rewrites a terminal or log viewer, a CR overwrites what was printed, C1
 * controls (U+0080-U+009F, CSI among them) do the same on some terminals.
 * One-line text refuses every C0 control (U+0000-U+001F), DEL and every C1
 * control; multi-line text also allows tab, line feed, and carriage return
 * when a line feed follows it (CRLF, what browsers send from a textarea).
 * C1 controls are recognised in UTF-8 databases only: in the single-byte
 * encodings their bytes are printable characters (WIN1252's euro sign).
 * ---------------------------------------------------------------------
 */

/*
 * Byte offset of the first forbidden character of s[0..len), or -1; *cp
 * gets its code point.
 */
static int
find_control(const char *s, int len, bool multiline, pg_wchar *cp)
{
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;

	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7f)
		{
			if (multiline &&
				(c == '\t' || c == '\n' || (c == '\r' && i + 1 < len && s[i + 1] == '\n')))
				continue;
			*cp = c;
			return i;
		}
		if (utf8 && c == 0xc2 && i + 1 < len &&
			(unsigned char) s[i + 1] >= 0x80 && (unsigned char) s[i + 1] <= 0x9f)
		{
			*cp = (unsigned char) s[i + 1];
			return i;
		}
	}
	return -1;
}

/*
 * ShopCheckPlainText: 22023 when s[0..len) holds a control character
 * (one-line text) or one other than tab and line breaks (multiline); what
 * names the value.
 */
void
ShopCheckPlainText(const char *s, int len, const char *what, bool multiline)
{
	pg_wchar	cp;
	int			at = find_control(s, len, multiline, &cp);
	char	   *quoted;

	if (at < 0)
		return;
	quoted = ShopQuoteForDetail(s, len);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s contains a control character", what),
			 quoted ? errdetail("%s has U+%04X at character %d: %s.", what, (unsigned) cp,
								pg_mbstrlen_with_len(s, at) + 1, quoted)
			 : errdetail("%s has U+%04X at character %d.", what, (unsigned) cp,
						 pg_mbstrlen_with_len(s, at) + 1),
			 multiline ?
			 errhint("Text may hold tabs and line breaks, but no other control characters or escape sequences.")
			 : errhint("Titles, SKUs, brands and names are one line of printable text: no tabs, line breaks, control characters or escape sequences.")));
}

/* shop._plain_text(value text, multiline boolean) -> boolean (no error) */
Datum
shop_plain_text(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	pg_wchar	cp;

	PG_RETURN_BOOL(find_control(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), PG_GETARG_BOOL(1), &cp) < 0);
}

/*
 * shop._check_plain_text(value text, what text, multiline boolean) -> boolean
 * true, or 22023 naming the value: the CHECK constraints of the text
 * columns, so that the API and plain INSERT/UPDATE/COPY refuse alike.
 */
Datum
shop_check_plain_text(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	bool		multiline = PG_GETARG_BOOL(2);
	pg_wchar	cp;

	/* (the common case costs one pass over the bytes, nothing else) */
	if (find_control(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), multiline, &cp) >= 0)
		ShopCheckPlainText(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
						   text_to_cstring(PG_GETARG_TEXT_PP(1)), multiline);
	PG_RETURN_BOOL(true);
}

/*
 * ShopCheckShippingAddress: a checkout's shipping_address, the same on one
 * node (shop.checkout) and through the router (shop._saga_check): no card
 * number (SH005), a jsonb object (22023), no control character or escape
 * sequence in a key or string other than tab, line feed and CRLF (22023,
 * hostile4), at most 4000 characters as text (22001).  Returns that text.
 */
char *
ShopCheckShippingAddress(Jsonb *address)
{
	char	   *text;

	ShopRefuseCardNumberJsonb(address, "shipping_address");
	if (!JB_ROOT_IS_OBJECT(address) || JB_ROOT_IS_SCALAR(address))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shipping_address must be a jsonb object")));
	ShopCheckPlainJsonb(address, "shipping_address", true);
	text = JsonbToCString(NULL, &address->root, VARSIZE(address));
	if (strlen(text) > 4000)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("shipping_address is too long"),
				 errdetail("shipping_address has %zu characters as text; at most 4000 are allowed.",
						   strlen(text))));
	return text;
}

/*
 * ShopCheckPlainJsonb: 22023 (ShopCheckPlainText) at the first key or
 * string value of jb, at any depth, that holds a control character; what
 * names the value.  For jsonb the storefront writes and others print: an
 * order's shipping_address (hostile4, ShopCheckShippingAddress).
 */
void
ShopCheckPlainJsonb(Jsonb *jb, const char *what, bool multiline)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	pg_wchar	cp;

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if ((tok == WJB_KEY || tok == WJB_VALUE || tok == WJB_ELEM) && v.type == jbvString &&
			find_control(v.val.string.val, v.val.string.len, multiline, &cp) >= 0)
			ShopCheckPlainText(v.val.string.val, v.val.string.len, what, multiline);
	}
}

/*
 * shop._check_price(price_cents bigint) -> boolean
 * true, or 22023 when the price is outside 0..SHOP_MAX_PRICE_CENTS, the
 * bound that keeps every cart total in int64 (shop.h, docs/catalog.md).
 */
Datum
shop_check_price(PG_FUNCTION_ARGS)
{
	int64		price = PG_GETARG_INT64(0);

	if (price < 0 || price > SHOP_MAX_PRICE_CENTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("price out of range"),
				 errdetail("price_cents is " INT64_FORMAT "; it must be between 0 and " INT64_FORMAT ".",
						   price, SHOP_MAX_PRICE_CENTS),
				 errhint("The bound keeps the total of any cart (500 lines of 10000 units) in range.")));
	PG_RETURN_BOOL(true);
}
