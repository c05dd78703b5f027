/*-------------------------------------------------------------------------
 *
 * attribution.c
 *	  shop._experiment_attributing(): whether an order written now could
 *	  be attributed to an experiment's impression at all.  The WHEN clause
 *	  of the deferred trigger order_experiment on shop."order" asks it, so
 *	  that while no experiment is running (nor stopped recently enough for
 *	  its impressions to be inside their attribution window) an order
 *	  queues no trigger event and runs no PL/pgSQL at commit: about 8% of
 *	  the instructions of a 3-line checkout (issue 11).
 *
 * The rule.  shop._experiment_order_trg attributes a line to an impression
 * shown within the experiment's attribution_window before the purchase.
 * Impressions are written only while the experiment runs (stopped_at IS
 * NULL as the writing transaction saw it), so an impression of a stopped
 * experiment is at most a transaction's length younger than stopped_at.
 * An order at time t can therefore be attributed only if some experiment
 * is running, or has
 *
 *	  stopped_at + attribution_window + ATTRIBUTION_SLACK > t
 *
 * (the slack, one hour, covers impressions written by transactions that
 * began before the stop).  The answer depends on shop.experiment alone: it
 * is worked out once per backend as the time until which it is true
 * ("live until": infinity while one runs, -infinity when there is no
 * experiment) and kept until shop.experiment changes.  A statement trigger
 * on shop.experiment (shop._experiment_changed_trg) sends a relcache
 * invalidation of the table with the writing transaction's commit; every
 * backend drops its answer when it processes it, before its next
 * statement's locks.  Between two invalidations a call costs a comparison
 * of two timestamps.
 *
 * The table is read directly (heap scan, latest snapshot), not through
 * SPI: the WHEN clause runs with the privileges of whoever writes the
 * order, who need not be able to read shop.experiment, and a scan needs no
 * plan.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "datatype/timestamp.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "shop.h"

PG_FUNCTION_INFO_V1(shop_experiment_attributing);
PG_FUNCTION_INFO_V1(shop_experiment_changed_trg);

/* impressions written by transactions that began before the stop */
#define ATTRIBUTION_SLACK	((int64) 3600 * USECS_PER_SEC)

static bool live_valid = false;
static TimestampTz live_until;
static Oid	experiment_relid = InvalidOid;
static bool callback_registered = false;

static void
attribution_inval(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == experiment_relid)
		live_valid = false;
}

/* The time until which an order can be attributed, from shop.experiment. */
static TimestampTz
compute_live_until(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	stopped_att = get_attnum(relid, "stopped_at");
	AttrNumber	window_att = get_attnum(relid, "attribution_window");
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	TimestampTz until = DT_NOBEGIN;

	if (stopped_att == InvalidAttrNumber || window_att == InvalidAttrNumber ||
		TupleDescAttr(desc, stopped_att - 1)->atttypid != TIMESTAMPTZOID ||
		TupleDescAttr(desc, window_att - 1)->atttypid != INTERVALOID)
		elog(ERROR, "shop.experiment lacks stopped_at timestamptz or attribution_window interval");

	slot = table_slot_create(rel, NULL);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while (until != DT_NOEND && table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		stopped_null,
					window_null;
		Datum		stopped = slot_getattr(slot, stopped_att, &stopped_null);
		Datum		window = slot_getattr(slot, window_att, &window_null);
		TimestampTz t;

		if (stopped_null || window_null)
		{
			until = DT_NOEND;	/* running: every order may be attributed */
			break;
		}
		t = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval, stopped, window));
		if (!TIMESTAMP_NOT_FINITE(t))
			t = t > DT_NOEND - 1 - ATTRIBUTION_SLACK ? DT_NOEND : t + ATTRIBUTION_SLACK;
		if (t > until)
			until = t;
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return until;
}

/*
 * shop._experiment_attributing() -> boolean: could an order written now be
 * attributed to an impression (file header)?  STABLE, no arguments.
 */
Datum
shop_experiment_attributing(PG_FUNCTION_ARGS)
{
	if (!live_valid)
	{
		Oid			nsp = get_namespace_oid("shop", false);
		Oid			relid = get_relname_relid("experiment", nsp);

		if (!callback_registered)
		{
			CacheRegisterRelcacheCallback(attribution_inval, (Datum) 0);
			callback_registered = true;
		}
		experiment_relid = relid;
		if (!OidIsValid(relid))
			PG_RETURN_BOOL(false);	/* no table: nothing to attribute; not kept */
		live_until = compute_live_until(relid);
		live_valid = true;
	}
	PG_RETURN_BOOL(GetCurrentTransactionStartTimestamp() < live_until);
}

/*
 * shop._experiment_changed_trg(): AFTER INSERT OR UPDATE OR DELETE OR
 * TRUNCATE ... FOR EACH STATEMENT on shop.experiment.  Every backend drops
 * its answer of shop._experiment_attributing when this transaction commits
 * (the invalidation goes out with the commit; this backend's own is
 * applied at the end of the command).
 */
Datum
shop_experiment_changed_trg(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "shop._experiment_changed_trg: not called as a trigger");
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
