/*-------------------------------------------------------------------------
 *
 * session.c
 *	  shop_router.so: the router's storefront session (docs/scale-out.md,
 *	  "The storefront's session reaches the shards with each call").
 *
 * The router keeps the storefront's token in its setting shop.session and
 * passes it to the shards, which verify it; the router has no secret and
 * verifies nothing.  What it must do itself is what one node's
 * session_forget_all does (src/security.c): a refused or NULL
 * shop.session_begin(token) and shop.session_end() forget every session
 * begun before them, in a way no rollback undoes.  A PL/pgSQL function
 * cannot: the refusal's error rolls back everything it did, so until sec5
 * the session begun before a refused token stayed (a pooled connection
 * serving visitor B after visitor A acted for A after B's forged token).
 *
 * So this library defines shop.session on the router, as shop.so does on a
 * node, with hooks that verify nothing: each value set (SET, SET LOCAL,
 * set_config, session_begin) gets a serial, 1, 2, ... as its GUC "extra",
 * and shop_router._session_forget() voids every serial handed out so far
 * (a backend-local counter, outside the GUC machinery and so outside every
 * transaction).  A value the GUC machinery restores (a rolled back SET,
 * the end of a SET LOCAL's transaction, ROLLBACK TO SAVEPOINT, a function's
 * SET clause) comes back with its old extra, forgotten if it was; a value
 * set again, even the same token, is a new serial and acts.  RESET and
 * DISCARD ALL return to '' (no session).  shop_router._session() and SHOW
 * shop.session answer '' for a forgotten value.
 *
 * It needs nothing of shop's: no tables, no secret.  On a server that
 * preloads shop (a router database next to shards), shop.so has defined
 * shop.session itself, verifying tokens with the secret and showing
 * "customer N" rather than the token: the router cannot carry such a
 * session, so a call that would (a non-empty setting) raises 55000, and
 * calls without a session work as before.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdlib.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(shop_router_session);
PG_FUNCTION_INFO_V1(shop_router_session_forget);

void		_PG_init(void);

static char *router_session_guc = NULL; /* shop.session: the token, or '' */
static const uint64 *router_session_current = NULL;	/* its extra: its serial */
static uint64 router_session_serial = 0;	/* serials handed out so far */
static uint64 router_session_void_upto = 0;	/* serials up to this are void */
static bool router_session_ours = false;	/* shop.session defined here */

/* a non-empty value gets the next serial (nothing is verified here) */
static bool
check_router_session(char **newval, void **extra, GucSource source)
{
	uint64	   *serial;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	/* a GUC's extra is malloc'd: the GUC machinery frees it */
	serial = (uint64 *) malloc(sizeof(uint64));
	if (serial == NULL)
		return false;
	*serial = ++router_session_serial;
	*extra = serial;
	return true;
}

static void
assign_router_session(const char *newval, void *extra)
{
	router_session_current = (const uint64 *) extra;
}

/* the live token, or NULL: none set, or forgotten */
static const char *
router_session_live(void)
{
	if (router_session_guc == NULL || router_session_guc[0] == '\0' ||
		router_session_current == NULL ||
		*router_session_current <= router_session_void_upto)
		return NULL;
	return router_session_guc;
}

/* SHOW shop.session: the token while it acts, else empty */
static const char *
show_router_session(void)
{
	const char *tok = router_session_live();

	return tok != NULL ? tok : "";
}

void
_PG_init(void)
{
	int			flags = GetConfigOptionFlags("shop.session", true);

	/*
	 * shop.so loaded in this backend (shared_preload_libraries of a server
	 * that also holds shops) has defined it: leave it alone (the router's
	 * calls then refuse to carry a session, below).
	 */
	if (flags != 0 && (flags & GUC_CUSTOM_PLACEHOLDER) == 0)
		return;
	DefineCustomStringVariable("shop.session",
							   "Session token of the storefront customer, passed to the shards with each call.",
							   "Set with SET LOCAL (one transaction) or SET / shop.session_begin() (the session); "
							   "the shards verify it (docs/scale-out.md).",
							   &router_session_guc,
							   "",
							   PGC_USERSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   check_router_session, assign_router_session, show_router_session);
	router_session_ours = true;
}

/*
 * shop_router._session() -> text: the token of the live session, '' when
 * none is set or it was forgotten.
 */
Datum
shop_router_session(PG_FUNCTION_ARGS)
{
	const char *tok;

	if (!router_session_ours)
	{
		/* shop.so's setting: its raw value, not what SHOW says */
		tok = GetConfigOption("shop.session", true, false);
		if (tok != NULL && tok[0] != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the router cannot carry a session on a server that loads shop"),
					 errdetail("shop.session is the shop library's setting in this server."),
					 errhint("Put the router's database on a server without shop in shared_preload_libraries.")));
		PG_RETURN_TEXT_P(cstring_to_text(""));
	}
	tok = router_session_live();
	PG_RETURN_TEXT_P(cstring_to_text(tok != NULL ? tok : ""));
}

/*
 * shop_router._session_forget(): forget every session set so far, whatever
 * happens to the transaction (one node's session_forget_all).  On a server
 * that loads shop there is nothing to forget: no call carries a session.
 */
Datum
shop_router_session_forget(PG_FUNCTION_ARGS)
{
	router_session_void_upto = router_session_serial;
	PG_RETURN_VOID();
}
