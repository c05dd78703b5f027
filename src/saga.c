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

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_saga_check);
PG_FUNCTION_INFO_V1(shop_saga_payment);
PG_FUNCTION_INFO_V1(shop_saga_trusted);
PG_FUNCTION_INFO_V1(shop_saga_sign);
PG_FUNCTION_INFO_V1(shop_saga_signed);
PG_FUNCTION_INFO_V1(shop_saga_order_status);
PG_FUNCTION_INFO_V1(shop_saga_order_stage);

/*
 * shop._saga_check(payment_token text, idempotency_key text,
 *                  shipping_address jsonb) -> void
 *
 * The argument checks of shop.checkout, in its order and with its errors:
 * NULLs (22004), lengths (22001), empty values (22023), card numbers
 * (SH005), an address that is not an object or holds a control character
 * (22023, as checkout on one node: ShopCheckShippingAddress), an
 * unrecognized token.
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
		(void) ShopCheckShippingAddress(PG_GETARG_JSONB_P(2));
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

/* ---------------------------------------------------------------------
 * The order's status on its saga row (saga_order_status, issue 16)
 * ---------------------------------------------------------------------
 */

/* the columns of shop.saga the update reads or writes */
enum
{
	SG_ORDER, SG_KEY, SG_STATUS, SG_NCOLS
};
static const char *const sg_col_names[SG_NCOLS] = {"order_id", "customer_key", "order_status"};
static const Oid sg_col_types[SG_NCOLS] = {UUIDOID, INT8OID, TEXTOID};

/* the statement the C update stands for, run where the C cannot do it */
static ShopStmt st_saga_order_status = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.saga g SET order_status = $1 WHERE g.order_id = $2 AND g.customer_key = $3",
	TEXTOID, UUIDOID, INT8OID);

/* attribute number of column name in desc (0: none) */
static AttrNumber
saga_column(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (!a->attisdropped && strcmp(NameStr(a->attname), name) == 0)
			return a->attnum;
	}
	return 0;
}

/*
 * Whether every UPDATE trigger of rel fires for an update done by
 * ExecSimpleRelationUpdate as for the statement: row triggers do (the card
 * guard, zz_card_guard), statement triggers, INSTEAD OF triggers and
 * transition tables do not, so the statement runs where there is one.
 */
static bool
saga_triggers_plain(Relation rel)
{
	TriggerDesc *td = rel->trigdesc;

	return td == NULL ||
		!(td->trig_update_before_statement || td->trig_update_after_statement ||
		  td->trig_update_instead_row || td->trig_update_old_table || td->trig_update_new_table);
}

/* two text datums (either NULL) are not distinct: IS NOT DISTINCT FROM */
static bool
saga_text_same(Datum a, bool anull, Datum b, bool bnull)
{
	text	   *ta;
	text	   *tb;

	if (anull || bnull)
		return anull && bnull;
	ta = DatumGetTextPP(a);
	tb = DatumGetTextPP(b);
	/* the default collation is deterministic: equal means the same bytes */
	return VARSIZE_ANY_EXHDR(ta) == VARSIZE_ANY_EXHDR(tb) &&
		memcmp(VARDATA_ANY(ta), VARDATA_ANY(tb), VARSIZE_ANY_EXHDR(ta)) == 0;
}

/*
 * The work of st_saga_order_status without the executor's plan: a probe of
 * saga_pkey for (order_id, customer_key), and when the saga is there, its
 * row updated as UPDATE updates it, under a snapshot taken as SPI takes
 * one for a statement.  As the executor's UPDATE: under READ COMMITTED the
 * newest version of the row is locked (what EvalPlanQual does) and judged
 * again (still this saga); under REPEATABLE READ a row changed since the
 * snapshot is 40001, a saga deleted meanwhile is not found.  The row is
 * written with its CHECK constraints checked, its BEFORE and AFTER ROW
 * triggers (the card guard), new index entries where the update is not
 * HOT and the replica identity check of a published table; SELECT on the
 * key and UPDATE of order_status are checked as the executor checks them.
 *
 * Returns false, having done nothing, where the statement must do it: not
 * a plain table, Citus loaded, a rule, a statement trigger or transition
 * table, row security for the user, a privilege missing (the statement
 * raises the error), a saga_pkey that is not a B-tree on (order_id,
 * customer_key).
 */
static bool
saga_order_status_c(Datum order_id, Datum customer_key, Datum status, bool status_null)
{
	Oid			nsp = get_namespace_oid("shop", false);
	Oid			relid = get_relname_relid("saga", nsp);
	Oid			idxid = get_relname_relid("saga_pkey", nsp);
	Relation	rel;
	Relation	idx = NULL;
	TupleDesc	desc;
	AttrNumber	att[SG_NCOLS];
	bool		ok;
	RangeTblEntry *rte = NULL;
	Snapshot	snap;
	CommandId	cid;
	ScanKeyData key[2];
	IndexScanDesc scan;
	TupleTableSlot *scanslot;
	bool		found;

	if (!OidIsValid(relid))
		elog(ERROR, "shop: relation \"shop.saga\" does not exist");
	rel = table_open(relid, RowExclusiveLock);	/* UPDATE's lock */
	desc = RelationGetDescr(rel);
	if (OidIsValid(idxid) && get_rel_relkind(idxid) == RELKIND_INDEX)
		idx = index_open(idxid, AccessShareLock);
	ok = idx != NULL && rel->rd_rel->relkind == RELKIND_RELATION &&
		!rel->rd_rel->relispartition && rel->rd_rules == NULL &&
		saga_triggers_plain(rel) &&
		!(shared_preload_libraries_string != NULL &&
		  strstr(shared_preload_libraries_string, "citus") != NULL) &&
		check_enable_rls(relid, InvalidOid, true) != RLS_ENABLED &&
		idx->rd_index->indrelid == relid &&
		idx->rd_rel->relam == BTREE_AM_OID &&
		idx->rd_index->indnkeyatts == 2 &&
		idx->rd_opcintype[0] == UUIDOID && idx->rd_opcintype[1] == INT8OID &&
		heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL) &&
		heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL);
	for (int c = 0; ok && c < SG_NCOLS; c++)
	{
		att[c] = saga_column(desc, sg_col_names[c]);
		ok = att[c] != 0 && TupleDescAttr(desc, att[c] - 1)->atttypid == sg_col_types[c] &&
			TupleDescAttr(desc, att[c] - 1)->attgenerated == '\0';
	}
	ok = ok && idx->rd_index->indkey.values[0] == att[SG_ORDER] &&
		idx->rd_index->indkey.values[1] == att[SG_KEY];
	if (ok)
	{
		rte = makeNode(RangeTblEntry);
		rte->rtekind = RTE_RELATION;
		rte->relid = relid;
		rte->relkind = rel->rd_rel->relkind;
		rte->rellockmode = RowExclusiveLock;
		rte->requiredPerms = ACL_SELECT | ACL_UPDATE;
		rte->selectedCols = bms_add_member(bms_make_singleton(att[SG_ORDER] -
															  FirstLowInvalidHeapAttributeNumber),
										   att[SG_KEY] - FirstLowInvalidHeapAttributeNumber);
		rte->updatedCols = bms_make_singleton(att[SG_STATUS] - FirstLowInvalidHeapAttributeNumber);
		ok = ExecCheckRTPerms(list_make1(rte), false);
	}
	if (!ok)
	{
		if (idx != NULL)
			index_close(idx, NoLock);
		table_close(rel, NoLock);
		return false;
	}

	ShopCheckWritable("UPDATE");
	/* as SPI starts a statement: the commands before it seen, a new snapshot */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	snap = GetActiveSnapshot();
	cid = GetCurrentCommandId(true);

	/* the probe: most orders (every order of shop.checkout) have no saga */
	scanslot = table_slot_create(rel, NULL);
	ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_UUID_EQ, order_id);
	ScanKeyInit(&key[1], 2, BTEqualStrategyNumber, F_INT8EQ, customer_key);
	scan = index_beginscan(rel, idx, snap, 2, 0);
	index_rescan(scan, key, 2, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, scanslot);
	index_endscan(scan);

	if (found)
	{
		EState	   *estate = CreateExecutorState();
		ResultRelInfo *rri;
		EPQState	epq;
		TupleTableSlot *lockslot;
		TupleTableSlot *newslot;
		bool		isnull;
		Datum		d;

		estate->es_snapshot = snap;
		estate->es_output_cid = cid;
		ExecInitRangeTable(estate, list_make1(rte));
		rri = makeNode(ResultRelInfo);
		InitResultRelInfo(rri, rel, 1, NULL, 0);
		estate->es_opened_result_relations = lappend(estate->es_opened_result_relations, rri);
		ShopPrepareChecks(rri, estate);
		EvalPlanQualInit(&epq, estate, NULL, NIL, -1);
		lockslot = ExecInitExtraTupleSlot(estate, desc, table_slot_callbacks(rel));
		newslot = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
		AfterTriggerBeginQuery();
		ShopOpenIndices(rri, estate, false);

		found = ShopLockForUpdate(rel, &scanslot->tts_tid, snap, lockslot, cid, "a saga");
		/* the newest version is still this saga's (the WHERE judged again) */
		if (found)
		{
			d = slot_getattr(lockslot, att[SG_ORDER], &isnull);
			found = !isnull &&
				memcmp(DatumGetUUIDP(d), DatumGetUUIDP(order_id), sizeof(pg_uuid_t)) == 0;
		}
		if (found)
		{
			d = slot_getattr(lockslot, att[SG_KEY], &isnull);
			found = !isnull && DatumGetInt64(d) == DatumGetInt64(customer_key);
		}
		if (found)
		{
			int			natts = desc->natts;

			slot_getallattrs(lockslot);
			ExecClearTuple(newslot);
			memcpy(newslot->tts_values, lockslot->tts_values, sizeof(Datum) * natts);
			memcpy(newslot->tts_isnull, lockslot->tts_isnull, sizeof(bool) * natts);
			newslot->tts_values[att[SG_STATUS] - 1] = status;
			newslot->tts_isnull[att[SG_STATUS] - 1] = status_null;
			ExecStoreVirtualTuple(newslot);
			ExecMaterializeSlot(newslot);
			ItemPointerSetInvalid(&newslot->tts_tid);
			ExecSimpleRelationUpdate(rri, estate, &epq, lockslot, newslot);
		}
		ExecCloseIndices(rri);
		AfterTriggerEndQuery(estate);
		EvalPlanQualEnd(&epq);
		ExecResetTupleTable(estate->es_tupleTable, false);
		FreeExecutorState(estate);
	}
	ExecDropSingleTupleTableSlot(scanslot);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	PopActiveSnapshot();
	/* the update is seen by the statements that follow in this transaction */
	CommandCounterIncrement();
	return true;
}

/*
 * shop._saga_order_status() -> trigger
 *
 * AFTER UPDATE OF status ON shop."order" FOR EACH ROW (created on customer
 * shards only, by shop._saga_recover_setup): when the order's status
 * changed, its saga row (if the router placed the order) carries the new
 * one in order_status, which saga_recover_idx's predicate reads.  An order
 * without a saga (every order of one node's shop.checkout) costs one probe
 * of saga_pkey.  Where the C update cannot stand for the statement
 * (saga_order_status_c), the statement runs.
 */
Datum
shop_saga_order_status(PG_FUNCTION_ARGS)
{
	TriggerData *td;
	TupleDesc	desc;
	AttrNumber	a_status;
	AttrNumber	a_order;
	AttrNumber	a_key;
	Datum		old_status;
	Datum		new_status;
	Datum		order_id;
	Datum		customer_key;
	bool		old_null;
	bool		new_null;
	bool		order_null;
	bool		key_null;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "shop._saga_order_status: not called as a trigger");
	td = (TriggerData *) fcinfo->context;
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		elog(ERROR, "shop._saga_order_status: must be fired AFTER UPDATE FOR EACH ROW");
	desc = RelationGetDescr(td->tg_relation);
	a_status = saga_column(desc, "status");
	a_order = saga_column(desc, "order_id");
	a_key = saga_column(desc, "customer_key");
	if (a_status == 0 || a_order == 0 || a_key == 0)
		elog(ERROR, "shop._saga_order_status: %s has no status, order_id or customer_key",
			 RelationGetRelationName(td->tg_relation));

	if (TupleDescAttr(desc, a_status - 1)->atttypid != TEXTOID ||
		TupleDescAttr(desc, a_order - 1)->atttypid != UUIDOID ||
		TupleDescAttr(desc, a_key - 1)->atttypid != INT8OID)
		elog(ERROR, "shop._saga_order_status: the types of %s's status, order_id or customer_key changed",
			 RelationGetRelationName(td->tg_relation));

	old_status = heap_getattr(td->tg_trigtuple, a_status, desc, &old_null);
	new_status = heap_getattr(td->tg_newtuple, a_status, desc, &new_null);
	if (saga_text_same(old_status, old_null, new_status, new_null))
		return PointerGetDatum(NULL);
	order_id = heap_getattr(td->tg_newtuple, a_order, desc, &order_null);
	customer_key = heap_getattr(td->tg_newtuple, a_key, desc, &key_null);
	/* WHERE order_id = NULL ... finds nothing */
	if (order_null || key_null)
		return PointerGetDatum(NULL);

	if (!saga_order_status_c(order_id, customer_key, new_status, new_null))
	{
		Datum		args[3];
		char		nulls[3] = {new_null ? 'n' : ' ', ' ', ' '};

		args[0] = new_status;
		args[1] = order_id;
		args[2] = customer_key;
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "shop._saga_order_status: SPI_connect failed");
		ShopExec(&st_saga_order_status, args, nulls, 0);
		SPI_finish();
	}
	return PointerGetDatum(NULL);
}

/*
 * shop._saga_order_stage(order_status text) -> smallint
 *
 * What saga recovery reads of an order's status (saga.order_stage, the
 * generated column saga_recover_idx reads): 1 closed (shipped, delivered,
 * cancelled), 2 returned (returned, refunded), 3 pending, NULL otherwise
 * (paid, fulfilling, ...).  C, not a CASE: a stored generated column's
 * expression is read from its text and compiled by every statement that
 * updates the table (the CASE's cost 100,000 instructions an update, this
 * call's a few thousand).
 */
Datum
shop_saga_order_stage(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(t);
	int			n = VARSIZE_ANY_EXHDR(t);

#define SAGA_IS(word) (n == sizeof(word) - 1 && memcmp(s, word, n) == 0)
	if (SAGA_IS("shipped") || SAGA_IS("delivered") || SAGA_IS("cancelled"))
		PG_RETURN_INT16(1);
	if (SAGA_IS("returned") || SAGA_IS("refunded"))
		PG_RETURN_INT16(2);
	if (SAGA_IS("pending"))
		PG_RETURN_INT16(3);
#undef SAGA_IS
	PG_RETURN_NULL();
}
