/*-------------------------------------------------------------------------
 *
 * redact.c
 *	  Card numbers out of the server log: an emit_log_hook that masks them
 *	  in every line the server writes, and shop.redact_card_numbers().
 *
 * What the server writes for one report (PostgreSQL 15, elog.c,
 * send_message_to_server_log, and write_csvlog / write_jsonlog for the
 * other log_destination formats; syslog gets the same text):
 *
 *   message          errmsg; also "statement: ..." of log_statement,
 *                    "duration: ... statement: ..." of
 *                    log_min_duration_statement, "execute <name>: ..." of
 *                    the extended protocol, auto_explain's plans;
 *   DETAIL           detail_log when set, else detail: bind parameters
 *                    ("parameters: $1 = '...'"), the queries of the other
 *                    sessions in a deadlock report;
 *   HINT, QUERY      hint; internalquery (a PL/pgSQL or SQL function
 *                    statement);
 *   CONTEXT          context (the input line of COPY, "SQL statement
 *                    ...", parameters of a failed bind);
 *   STATEMENT        debug_query_string, the client's statement, when the
 *                    level passes log_min_error_statement and the report
 *                    did not set hide_stmt.
 *
 * EmitErrorReport calls emit_log_hook before any of it is written (and
 * before the same report goes to the client), so the hook masks card
 * numbers in all of those fields:
 *
 *   - Fields of the report are strings the error system allocated and owns;
 *     ShopRedactCardNumbers masks them in place, replacing each digit by a
 *     mask of the same byte length, so nothing is allocated or resized.
 *   - debug_query_string is not ours: it points into the protocol buffer
 *     or the plan cache, and other code (pg_stat_statements, the plan
 *     cache) reads it.  When it holds a card number, the hook copies it
 *     into MessageContext, masks the copy and points debug_query_string at
 *     it.  PostgreSQL clears debug_query_string at the end of every client
 *     message (and right after reporting an error) before MessageContext
 *     is reset, so the copy outlives every use; later reports of the same
 *     statement find it already masked.  Where there is no MessageContext
 *     (background workers, the postmaster) or the copy cannot be made (out
 *     of memory, inside a critical section), the hook sets hide_stmt: the
 *     statement is left out rather than written.
 *
 * The hook never throws and allocates at most one copy of the statement
 * (MCXT_ALLOC_NO_OOM).  elog.c only documents turning off
 * output_to_server as a supported change to the report; masking the
 * strings in place and the statement swap rely on the fields being read
 * after the hook, which they are in PostgreSQL 13 to 17.
 *
 * Not covered: the log_line_prefix (%a application_name, %u, %d are the
 * client's to choose), messages written before shop is loaded in a
 * process (without shared_preload_libraries: the first statement of each
 * session, and every process that never calls shop), and hooks of
 * libraries loaded after shop, which run before this one.
 * docs/security.md says what that means in production.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/memutils.h"

#include "shop.h"

PG_FUNCTION_INFO_V1(shop_redact_card_numbers);

static emit_log_hook_type prev_emit_log_hook = NULL;
static bool redact_installed = false;

static inline void
redact_field(char *s)
{
	if (s != NULL)
		ShopRedactCardNumbers(s, strlen(s));
}

/*
 * The statement of the report, when it would be printed and holds a card
 * number: replaced by a masked copy, or hidden.
 */
static void
redact_statement(ErrorData *edata)
{
	const char *stmt = debug_query_string;
	size_t		len;
	char	   *copy = NULL;

	if (stmt == NULL || edata->hide_stmt)
		return;
	len = strlen(stmt);
	if (len > INT_MAX - 1 || !ShopFindCardNumber(stmt, (int) len))
		return;
	if (MessageContext != NULL && CritSectionCount == 0)
		copy = MemoryContextAllocExtended(MessageContext, len + 1,
										  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (copy == NULL)
	{
		edata->hide_stmt = true;
		return;
	}
	memcpy(copy, stmt, len + 1);
	ShopRedactCardNumbers(copy, (int) len);
	debug_query_string = copy;
}

/*
 * emit_log_hook: mask card numbers in every field of the report, then
 * hand it to the hook that was installed before shop's.
 */
static void
shop_emit_log_hook(ErrorData *edata)
{
	if (edata->output_to_server)
	{
		redact_field(edata->message);
		redact_field(edata->detail);
		redact_field(edata->detail_log);
		redact_field(edata->hint);
		redact_field(edata->context);
		redact_field(edata->internalquery);
		redact_statement(edata);
	}
	if (prev_emit_log_hook)
		(*prev_emit_log_hook) (edata);
}

/*
 * ShopRedactLogInstall: install the hook, once per process (_PG_init).
 * Preloaded, the postmaster installs it and every process inherits it;
 * otherwise each backend installs it when it loads shop.
 */
void
ShopRedactLogInstall(void)
{
	if (redact_installed)
		return;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = shop_emit_log_hook;
	redact_installed = true;
}

/*
 * shop.redact_card_numbers(value text) -> text
 * The value with every card number masked as in the server log: each digit
 * of the run that holds the card becomes '*' (or a mask of the same width),
 * the last four digits of the card stay.
 */
Datum
shop_redact_card_numbers(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_P_COPY(0);

	ShopRedactCardNumbers(VARDATA(t), VARSIZE(t) - VARHDRSZ);
	PG_RETURN_TEXT_P(t);
}
