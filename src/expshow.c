/*-------------------------------------------------------------------------
 *
 * expshow.c
 *	  The experiment path of shop.recommend and shop.also_bought in C
 *	  (issue 14, rec10): the unit's variant, and the impression of the list
 *	  shown.
 *
 * shop._experiment_variant(experiment, unit) finds the experiment by name
 * and, when it runs and the unit is given, the variant whose buckets hold
 * the unit's (shop.experiment_bucket's hash, computed here): one prepared
 * statement with a generic plan, where the PL/pgSQL computed the bucket in
 * an expression and ran its SELECT through its plan cache.  Returns
 * (experiment_id, variant, params): experiment_id NULL when no experiment
 * has the name (the caller raises SH006), variant NULL when it is
 * stopped, the unit NULL, or its bucket in no variant.
 *
 * shop._experiment_record(experiment_id, variant, unit, surface, products)
 * writes the impression into the unlogged buffer
 * shop.experiment_impression_recent as the INSERT did (the columns'
 * defaults, BEFORE ROW triggers such as the card guard, CHECK and NOT
 * NULL constraints, the heap and its indexes), without the executor's
 * start and end and the CHECK's expression compiled per statement; then
 * draws random() as the PL/pgSQL did (the same draws in the same order,
 * so setseed() gives the same moves) and now and then moves the buffer
 * (shop._experiment_flush).  The statement does the insert instead when
 * the table is not as shop made it: another kind of relation, triggers
 * other than BEFORE ROW ones, a column of a domain or generated, row
 * security, or no INSERT privilege for the caller.  Returns whether an
 * impression was written (not for an empty list, nor on a hot standby).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_experiment_variant);
PG_FUNCTION_INFO_V1(shop_experiment_record);

static ShopStmt st_variant = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT e.experiment_id, v.variant, v.params"
	"  FROM shop.experiment e"
	"  LEFT JOIN shop.experiment_variant v"
	"         ON v.experiment_id = e.experiment_id AND e.stopped_at IS NULL"
	"        AND $2 >= v.bucket_lo AND $2 < v.bucket_hi"
	" WHERE e.name = $1",
	TEXTOID, INT4OID);

/*
 * shop._experiment_variant(experiment text, unit text, OUT experiment_id
 * integer, OUT variant smallint, OUT params jsonb): see the header.
 */
Datum
shop_experiment_variant(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	Datum		out[3] = {0, 0, 0};
	bool		outnull[3] = {true, true, true};
	HeapTuple	tup;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "shop._experiment_variant: the result type must be a row type");
	desc = BlessTupleDesc(desc);
	if (PG_ARGISNULL(0))
		ShopRequireArg(fcinfo, 0, "experiment");
	args[0] = PG_GETARG_DATUM(0);
	if (PG_ARGISNULL(1))
	{
		args[1] = (Datum) 0;
		nulls[1] = 'n';
	}
	else
	{
		text	   *name = PG_GETARG_TEXT_PP(0);
		text	   *unit = PG_GETARG_TEXT_PP(1);

		args[1] = Int32GetDatum(ShopExperimentBucket(VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name),
													 VARDATA_ANY(unit), VARSIZE_ANY_EXHDR(unit)));
	}
	SPI_connect();
	if (ShopExec(&st_variant, args, nulls, 1) == 1)
	{
		for (int c = 0; c < 3; c++)
			out[c] = ShopColCopy(0, c + 1, &outnull[c]);
	}
	SPI_finish();
	tup = heap_form_tuple(desc, out, outnull);
	PG_RETURN_DATUM(HeapTupleGetDatum(tup));
}

/* the impression, written by the statement (the table not as shop made it) */
static ShopStmt st_record = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.experiment_impression_recent (experiment_id, variant, unit, surface, products)"
	" VALUES ($1, $2, $3, $4, $5)",
	INT4OID, INT2OID, TEXTOID, TEXTOID, INT8ARRAYOID);

/* whether the buffer's first row is over a minute old */
static ShopStmt st_buffer_old = SHOP_STMT0(SHOP_PLAN_GENERIC,
	"SELECT EXISTS (SELECT 1 FROM (SELECT r.shown_at FROM shop.experiment_impression_recent r LIMIT 1) f"
	"                WHERE f.shown_at < clock_timestamp() - interval '1 minute')");

static ShopStmt st_flush = SHOP_STMT0(SHOP_PLAN_GENERIC,
	"SELECT shop._experiment_flush()");

/* the columns the call gives, in the statement's order */
#define REC_NCOLS 5
static const char *const rec_colname[REC_NCOLS] = {"experiment_id", "variant", "unit", "surface", "products"};
static const Oid rec_coltype[REC_NCOLS] = {INT4OID, INT2OID, TEXTOID, TEXTOID, INT8ARRAYOID};

/*
 * The defaults of the other columns (impression_id, shown_at), planned
 * once per backend: a relcache invalidation of the table (a default
 * changed, a column added) drops them.
 */
typedef struct RecDefaults
{
	Oid			relid;			/* InvalidOid: not built */
	AttrNumber	att[REC_NCOLS];
	int			ndefs;
	AttrNumber *defatt;
	Expr	  **defexpr;
	MemoryContext cxt;
} RecDefaults;

static RecDefaults rec_defs;
static bool rec_defs_callback = false;

static void
rec_defs_inval(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || rec_defs.relid == relid)
		rec_defs.relid = InvalidOid;
}

/*
 * Whether the C insert may write rel as the INSERT would: a plain table,
 * only BEFORE ROW triggers, no row security, no generated column, no
 * column of a domain, the five columns of their types, the INSERT
 * privilege.  Builds the kept defaults.
 */
static bool
rec_table_plain(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TriggerDesc *td = rel->trigdesc;
	Oid			relid = RelationGetRelid(rel);
	MemoryContext old;

	if (rel->rd_rel->relkind != RELKIND_RELATION ||
		pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK ||
		check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		return false;
	if (td != NULL &&
		(td->trig_insert_after_row || td->trig_insert_before_statement ||
		 td->trig_insert_after_statement || td->trig_insert_instead_row ||
		 td->trig_insert_new_table))
		return false;
	if (desc->constr && desc->constr->has_generated_stored)
		return false;
	if (rec_defs.relid == relid)
		return true;
	if (!rec_defs_callback)
	{
		CacheRegisterRelcacheCallback(rec_defs_inval, (Datum) 0);
		rec_defs_callback = true;
	}
	if (rec_defs.cxt == NULL)
		rec_defs.cxt = AllocSetContextCreate(CacheMemoryContext, "shop impression defaults",
											 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(rec_defs.cxt);
	for (int c = 0; c < REC_NCOLS; c++)
		rec_defs.att[c] = 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped)
			continue;
		if (get_typtype(a->atttypid) == TYPTYPE_DOMAIN)
			return false;
		for (int c = 0; c < REC_NCOLS; c++)
			if (strcmp(NameStr(a->attname), rec_colname[c]) == 0)
			{
				if (a->atttypid != rec_coltype[c])
					return false;
				rec_defs.att[c] = a->attnum;
			}
	}
	for (int c = 0; c < REC_NCOLS; c++)
		if (rec_defs.att[c] == 0)
			return false;
	old = MemoryContextSwitchTo(rec_defs.cxt);
	rec_defs.ndefs = 0;
	rec_defs.defatt = palloc(sizeof(AttrNumber) * desc->natts);
	rec_defs.defexpr = palloc(sizeof(Expr *) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		AttrNumber	attnum = i + 1;
		bool		given = false;
		Node	   *d;

		if (TupleDescAttr(desc, i)->attisdropped)
			continue;
		for (int c = 0; c < REC_NCOLS; c++)
			given = given || rec_defs.att[c] == attnum;
		/* as the INSERT's target list gets them: identity, default, or NULL */
		if (given || (d = build_column_default(rel, attnum)) == NULL)
			continue;
		rec_defs.defatt[rec_defs.ndefs] = attnum;
		rec_defs.defexpr[rec_defs.ndefs] = expression_planner((Expr *) d);
		rec_defs.ndefs++;
	}
	MemoryContextSwitchTo(old);
	rec_defs.relid = relid;
	return true;
}

/* the row inserted in C: what the INSERT's ModifyTable does for it */
static void
rec_insert(Relation rel, const Datum *v)
{
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	ExprContext *econtext;
	RangeTblEntry *rte;
	List	   *recheck = NIL;
	bool		kept = true;

	/* as SPI starts a statement: the commands before it seen, a new snapshot */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	estate = CreateExecutorState();
	estate->es_snapshot = GetActiveSnapshot();
	estate->es_output_cid = GetCurrentCommandId(true);
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT;
	for (int c = 0; c < REC_NCOLS; c++)
		rte->insertedCols = bms_add_member(rte->insertedCols,
										   rec_defs.att[c] - FirstLowInvalidHeapAttributeNumber);
	ExecInitRangeTable(estate, list_make1(rte));
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	estate->es_opened_result_relations = lappend(estate->es_opened_result_relations, rri);
	ShopOpenIndices(rri, estate, false);
	ShopPrepareChecks(rri, estate);
	slot = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), ShopWriteSlotOps(rel));
	econtext = GetPerTupleExprContext(estate);
	AfterTriggerBeginQuery();

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	for (int c = 0; c < REC_NCOLS; c++)
	{
		slot->tts_values[rec_defs.att[c] - 1] = v[c];
		slot->tts_isnull[rec_defs.att[c] - 1] = false;
	}
	for (int d = 0; d < rec_defs.ndefs; d++)
	{
		ExprState  *es = ExecInitExpr(rec_defs.defexpr[d], NULL);

		slot->tts_values[rec_defs.defatt[d] - 1] =
			ExecEvalExprSwitchContext(es, econtext, &slot->tts_isnull[rec_defs.defatt[d] - 1]);
	}
	ExecStoreVirtualTuple(slot);
	if (rri->ri_TrigDesc && rri->ri_TrigDesc->trig_insert_before_row)
		kept = ExecBRInsertTriggers(estate, rri, slot);
	if (kept)
	{
		if (RelationGetDescr(rel)->constr)
			ExecConstraints(rri, slot, estate);
		table_tuple_insert(rel, slot, estate->es_output_cid, 0, NULL);
		if (rri->ri_NumIndices > 0)
			recheck = ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
		ExecARInsertTriggers(estate, rri, slot, recheck, NULL);
		list_free(recheck);
	}

	ExecCloseIndices(rri);
	AfterTriggerEndQuery(estate);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	PopActiveSnapshot();
	/* the row is seen by the statements that follow in this transaction */
	CommandCounterIncrement();
}

/* SQL's random(): the same generator and seed (setseed) as the PL/pgSQL's draws */
static double
sql_random(void)
{
	return DatumGetFloat8(OidFunctionCall0Coll(F_RANDOM, InvalidOid));
}

/*
 * shop._experiment_record(experiment_id integer, variant smallint, unit
 * text, surface text, products bigint[]) RETURNS boolean: see the header.
 */
Datum
shop_experiment_record(PG_FUNCTION_ARGS)
{
	Datum		v[REC_NCOLS];
	char		nulls[REC_NCOLS];
	bool		anynull = false;
	ArrayType  *products;
	Oid			relid;
	Relation	rel;
	bool		flush = false;

	if (PG_ARGISNULL(4))
		PG_RETURN_BOOL(false);
	products = PG_GETARG_ARRAYTYPE_P(4);
	/* cardinality(ids) > 0 AND NOT pg_is_in_recovery() */
	if (ArrayGetNItems(ARR_NDIM(products), ARR_DIMS(products)) <= 0 || RecoveryInProgress())
		PG_RETURN_BOOL(false);
	for (int c = 0; c < REC_NCOLS; c++)
	{
		v[c] = PG_ARGISNULL(c) ? (Datum) 0 : PG_GETARG_DATUM(c);
		nulls[c] = PG_ARGISNULL(c) ? 'n' : ' ';
		anynull = anynull || PG_ARGISNULL(c);
	}
	v[4] = PointerGetDatum(products);

	/* (a NULL is the statement's: its not-null violation, as before) */
	relid = anynull ? InvalidOid : ShopRelid("experiment_impression_recent", NULL);
	rel = OidIsValid(relid) ? table_open(relid, RowExclusiveLock) : NULL;
	if (rel != NULL && rec_table_plain(rel))
	{
		/* 25006 in a read-only transaction, as the INSERT said it */
		ShopCheckWritable("INSERT");
		rec_insert(rel, v);
		table_close(rel, NoLock);
		SPI_connect();
	}
	else
	{
		if (rel != NULL)
			table_close(rel, NoLock);
		SPI_connect();
		ShopExec(&st_record, v, nulls, 0);
	}
	/*
	 * every 200th list, or one in 20 that finds the buffer's first row
	 * over a minute old, moves the buffer (the PL/pgSQL's nested IFs: the
	 * same draws in the same order)
	 */
	if (sql_random() < 0.005)
		flush = true;
	else if (sql_random() < 0.05)
	{
		ShopExec(&st_buffer_old, NULL, NULL, 1);
		flush = ShopColBool(0, 1, false);
	}
	if (flush)
		ShopExec(&st_flush, NULL, NULL, 0);
	SPI_finish();
	PG_RETURN_BOOL(true);
}
