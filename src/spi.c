/*-------------------------------------------------------------------------
 *
 * spi.c
 *	  Prepared statements of shop's C code (ShopStmt, src/spi.h), the
 *	  helpers that read their results and build their array arguments, the
 *	  ids and argument checks every subsystem shares, and the background
 *	  workers' check that shop is installed in their database.
 *
 * A ShopStmt is prepared at its first use in a backend, with the cursor
 * option of its plan mode, and kept (SPI_keepplan) for the life of the
 * backend; PostgreSQL's plan cache re-plans it when a table it uses is
 * altered or ANALYZEd.
 *
 * What the plan cache does not do is notice that a table grew.  A plan
 * made while the store was empty (a new shop, a fresh test database, the
 * first checkout after CREATE EXTENSION) was costed for empty tables: a
 * scan of a partial index or of the whole table is as cheap as any index
 * lookup then, and it stays the plan while autovacuum has not yet
 * analyzed the tables, however many rows arrive (issue 11: every checkout
 * read every held reservation).  So ShopExec keeps, with each plan, the
 * size in blocks of the tables it reads when it was made, and makes a new
 * plan when they have grown fourfold.  The planner sizes a table from its
 * current length on disk even without statistics, so the new plan fits.
 * The check costs a file-size lookup per table (and its lock, which the
 * statement takes next anyway): on every call while those tables are small
 * (under 1,024 blocks, 8 MB), then every 64th call.  It cannot settle for
 * tables that stay small: a bulk load between two calls must be seen by
 * the next call (sql/growth).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "rewrite/prs2lock.h"
#include "rewrite/rewriteManip.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/inval.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/hsearch.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/resowner.h"

#include "spi.h"
#include "shop.h"

#define STMT_SMALL_BLOCKS	1024	/* below this, check the size on every call */
#define STMT_CHECK_EVERY	64		/* above, every 64th call */
#define STMT_GROWTH			4.0		/* re-plan when the tables grew fourfold */
#define STMT_MIN_BLOCKS		8.0		/* ... counting a smaller table as this big */

/*
 * The tables (and matviews) a new plan reads, kept with the statement so
 * that a check does not look up every relation's kind again.
 */
static void
stmt_note_relids(ShopStmt *s, SPIPlanPtr plan)
{
	int			n = 0;
	ListCell   *lc;

	if (s->relids != NULL)
		pfree(s->relids);
	s->relids = NULL;
	s->nrelids = 0;
	foreach(lc, SPI_plan_get_plan_sources(plan))
		n += list_length(((CachedPlanSource *) lfirst(lc))->relationOids);
	if (n == 0)
		return;
	s->relids = MemoryContextAlloc(TopMemoryContext, sizeof(Oid) * n);
	foreach(lc, SPI_plan_get_plan_sources(plan))
	{
		CachedPlanSource *ps = (CachedPlanSource *) lfirst(lc);
		ListCell   *rc;

		foreach(rc, ps->relationOids)
		{
			Oid			relid = lfirst_oid(rc);
			char		kind = get_rel_relkind(relid);

			if (kind == RELKIND_RELATION || kind == RELKIND_MATVIEW)
				s->relids[s->nrelids++] = relid;
		}
	}
}

/*
 * Total size in blocks of the tables the statement reads.  Each one is
 * locked as the statement is about to lock it anyway (the executor's own
 * lock is then found in the backend's lock table).  One dropped since is
 * skipped, and the list is taken again from the plan, so that a table
 * made again under the same name is counted once the plan cache has
 * re-analyzed the statement (at its next run), as when the list was read
 * from the plan at every check.
 */
static double
stmt_blocks(ShopStmt *s)
{
	double		blocks = 0;
	bool		gone = false;

	for (int i = 0; i < s->nrelids; i++)
	{
		Relation	rel;

		LockRelationOid(s->relids[i], AccessShareLock);
		rel = RelationIdGetRelation(s->relids[i]);
		if (rel == NULL)
		{
			UnlockRelationOid(s->relids[i], AccessShareLock);
			gone = true;
			continue;
		}
		blocks += RelationGetNumberOfBlocks(rel);
		RelationClose(rel);
	}
	if (gone)
		stmt_note_relids(s, s->plan);
	return blocks;
}

static SPIPlanPtr
stmt_plan(ShopStmt *s)
{
	if (s->plan != NULL && s->mode != SHOP_PLAN_CUSTOM &&
		(s->planned_blocks < STMT_SMALL_BLOCKS || ++s->calls % STMT_CHECK_EVERY == 0))
	{
		double		now = stmt_blocks(s);

		if (now > STMT_GROWTH * Max(s->planned_blocks, STMT_MIN_BLOCKS))
		{
			SPI_freeplan(s->plan);
			s->plan = NULL;
		}
	}
	if (s->plan == NULL)
	{
		int			opts = s->mode == SHOP_PLAN_GENERIC ? CURSOR_OPT_GENERIC_PLAN
			: s->mode == SHOP_PLAN_CUSTOM ? CURSOR_OPT_CUSTOM_PLAN : 0;
		SPIPlanPtr	p = SPI_prepare_cursor(s->sql, s->nargs, s->argtypes, opts);

		if (p == NULL)
			elog(ERROR, "shop: could not prepare (%s): %s",
				 SPI_result_code_string(SPI_result), s->sql);
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "shop: could not keep the plan of: %s", s->sql);
		s->plan = p;
		if (s->mode != SHOP_PLAN_CUSTOM)
		{
			stmt_note_relids(s, p);
			s->planned_blocks = stmt_blocks(s);
		}
		else
			s->planned_blocks = 0;
		s->calls = 0;
	}
	return s->plan;
}

static uint64
stmt_run(ShopStmt *s, const Datum *args, const char *nulls, bool read_only, long limit)
{
	int			rc = SPI_execute_plan(stmt_plan(s), (Datum *) args, nulls, read_only, limit);

	if (rc < 0)
		elog(ERROR, "shop: statement failed (%s): %s", SPI_result_code_string(rc), s->sql);
	return SPI_processed;
}

/*
 * ShopExec: run a statement; returns the number of rows it returned or
 * changed (SPI_processed), at most limit rows (0: all).  nulls as in SPI
 * (' ' or 'n' per argument), NULL for none.  Every statement sees the
 * writes of the statements before it in the transaction.
 */
uint64
ShopExec(ShopStmt *s, const Datum *args, const char *nulls, long limit)
{
	return stmt_run(s, args, nulls, false, limit);
}

/*
 * ShopExecRead: a read in a STABLE entry point (SPI read-only mode: the
 * snapshot of the calling query, no writes).
 */
uint64
ShopExecRead(ShopStmt *s, const Datum *args, const char *nulls)
{
	return stmt_run(s, args, nulls, true, 0);
}

/*
 * ShopExecOrUndo: run a statement in a subtransaction that is kept when
 * the statement returned or changed at least `need` rows and rolled back
 * when it did not (or raised, in which case the error is re-thrown).  Used
 * for attempts that may leave row locks behind when they fail
 * (inventory.c: the lock order).  The result stays readable after a kept
 * attempt.
 */
bool
ShopExecOrUndo(ShopStmt *s, const Datum *args, const char *nulls, uint64 need)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool kept = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		if (ShopExec(s, args, nulls, 0) >= Max(need, 1))
		{
			kept = true;
			ReleaseCurrentSubTransaction();
		}
		else
			RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		ReThrowError(edata);
	}
	PG_END_TRY();
	return kept;
}

/* ShopOpenCursor: a portal over a statement's rows, for SPI_cursor_fetch. */
Portal
ShopOpenCursor(ShopStmt *s, const Datum *args, const char *nulls, bool read_only)
{
	Portal		p = SPI_cursor_open(NULL, stmt_plan(s), (Datum *) args, nulls, read_only);

	if (p == NULL)
		elog(ERROR, "shop: could not open a cursor for: %s", s->sql);
	return p;
}

/*
 * ShopDirect: a one-off statement without arguments (DDL-like: TRUNCATE,
 * a full DELETE); elog when SPI does not return the expected code.
 */
void
ShopDirect(const char *sql, int expected)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expected)
		elog(ERROR, "shop: statement failed (%s): %s", SPI_result_code_string(rc), sql);
}

static ShopStmt st_installed = SHOP_STMT0(SHOP_PLAN_AUTO,
	"SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'shop'");

/*
 * ShopInstalledHere: whether the shop extension is installed in the
 * current database.  For the background workers (sweep.c, events.c),
 * which connect to databases that may not have it, or no longer.  Inside
 * SPI_connect(), with a snapshot.
 */
bool
ShopInstalledHere(void)
{
	return ShopExec(&st_installed, NULL, NULL, 0) > 0;
}

/* ---------------------------------------------------------------------
 * Reading results
 * ---------------------------------------------------------------------
 */

/*
 * A column of row `row` of the last SPI result.  Every caller reads rows its
 * statement must have returned (an INSERT ... RETURNING, an upsert); a
 * BEFORE trigger or a rule on the table can make that statement return
 * nothing, and reading row 0 of an empty result would read freed memory.
 * So a missing row is an error here (27000, as ShopTriggerChangedRow), not
 * a crash, whichever caller forgot to check.
 */
Datum
ShopCol(uint64 row, int col, bool *isnull)
{
	if (unlikely(SPI_tuptable == NULL || row >= SPI_tuptable->numvals))
		ereport(ERROR,
				(errcode(ERRCODE_TRIGGERED_DATA_CHANGE_VIOLATION),
				 errmsg("a statement of shop returned no row %llu: a trigger or rule on one of shop's tables skipped it",
						(unsigned long long) row),
				 errhint("A BEFORE trigger on shop's tables must return the row (NEW) it was given, with its keys unchanged.")));
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/* an integer column of any width */
int64
ShopColInt(uint64 row, int col, int64 ifnull)
{
	bool		isnull;
	Datum		d = ShopCol(row, col, &isnull);

	if (isnull)
		return ifnull;
	switch (SPI_gettypeid(SPI_tuptable->tupdesc, col))
	{
		case INT8OID:
			return DatumGetInt64(d);
		case INT2OID:
			return DatumGetInt16(d);
		case INT4OID:
			return DatumGetInt32(d);
		default:
			elog(ERROR, "shop: column %d is not an integer", col);
	}
	return 0;					/* keep the compiler quiet */
}

double
ShopColFloat(uint64 row, int col, double ifnull)
{
	bool		isnull;
	Datum		d = ShopCol(row, col, &isnull);

	if (isnull)
		return ifnull;
	return SPI_gettypeid(SPI_tuptable->tupdesc, col) == FLOAT4OID
		? (double) DatumGetFloat4(d) : DatumGetFloat8(d);
}

bool
ShopColBool(uint64 row, int col, bool ifnull)
{
	bool		isnull;
	Datum		d = ShopCol(row, col, &isnull);

	return isnull ? ifnull : DatumGetBool(d);
}

/* a text column as a palloc'd C string, NULL for NULL */
char *
ShopColText(uint64 row, int col)
{
	bool		isnull;
	Datum		d = ShopCol(row, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* a pass-by-reference column copied out of SPI's memory (survives SPI_finish) */
Datum
ShopColCopy(uint64 row, int col, bool *isnull)
{
	Datum		d = ShopCol(row, col, isnull);
	int16		typlen;
	bool		typbyval;

	if (*isnull)
		return (Datum) 0;
	get_typlenbyval(SPI_gettypeid(SPI_tuptable->tupdesc, col), &typlen, &typbyval);
	return SPI_datumTransfer(d, typbyval, typlen);
}

/* ---------------------------------------------------------------------
 * Array arguments (in the current memory context)
 * ---------------------------------------------------------------------
 */

/*
 * The array of the n datums d, of a built-in element type.  How the type
 * is stored (length, by value, alignment) comes from pg_type through the
 * syscache, so no builder below spells it out; a new builder fills its
 * datums and names its element type, nothing more.
 */
static Datum
array_of(Datum *d, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_array(d, n, elemtype, typlen, typbyval, typalign));
}

Datum
ShopInt8Array(const int64 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return array_of(d, n, INT8OID);
}

Datum
ShopInt4Array(const int32 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(v[i]);
	return array_of(d, n, INT4OID);
}

Datum
ShopFloat4Array(const float4 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Float4GetDatum(v[i]);
	return array_of(d, n, FLOAT4OID);
}

Datum
ShopFloat8Array(const double *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Float8GetDatum(v[i]);
	return array_of(d, n, FLOAT8OID);
}

Datum
ShopTextArray(const char *const *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(v[i]);
	return array_of(d, n, TEXTOID);
}

Datum
ShopUuidArray(const pg_uuid_t *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = UUIDPGetDatum(&v[i]);
	return array_of(d, n, UUIDOID);
}

/* ---------------------------------------------------------------------
 * Ids and arguments
 * ---------------------------------------------------------------------
 */

/*
 * Ids.  The uuids shop makes itself (order, and through the column
 * defaults cart and payment ids; not holds: ShopNewRandomUuids) are time-ordered, in the layout of
 * RFC 9562's version 7: the first 48 bits are the Unix time in
 * milliseconds, then the version (7), 12 random bits, the variant (10) and
 * 62 random bits: 74 random bits in all.
 *
 * Why not version 4: a random key lands on a random leaf of every b-tree
 * that leads with it (the order's key, its lines, events and payment, the
 * reservation id), so the leaves a store touches grow with the store and
 * each one takes a full-page image in the WAL the first time it is touched
 * after a checkpoint.  A time-ordered id goes to the newest leaves, as a
 * sequence would (to those of its window, below), and still cannot be
 * guessed: cart and order ids are what a guest holds to reach its cart and
 * order (docs/security.md), and 74 random bits per window leave no
 * practical guess.  The creation time becomes readable from the id, to
 * the window (it is in the row anyway).
 *
 * The window: the time field holds the milliseconds rounded down to a
 * multiple of 2^16 (65.5 s), so ids are ordered by window and random
 * within one.  With exact milliseconds every concurrent checkout inserted
 * into the same right-most leaf of each of those b-trees, and with 16
 * clients on 2 cores the backends queued on that page's content lock
 * (LWLock BufferContent: 11% of the sampled waits against 3-5% with v4
 * ids, bench/results/2026-12-06-ckout4-where.md).  Within a window the
 * insertions spread over the leaves the window has filled so far (about a
 * minute of orders: a few hundred leaves at 2,000 orders/s, a bounded set
 * that stays in shared buffers), and older leaves are never touched again.
 *
 * The router's ids (shop_router._uuid_for: the customer's bucket in the
 * last 16 bits) are made by the router and passed in; nothing here makes
 * or reads them.
 */
#ifndef SHOP_ID_WINDOW_BITS
#define SHOP_ID_WINDOW_BITS 16
#endif

/*
 * The random bits of ids come from a per-backend pool of the strong random
 * source's output, drawn SHOP_ID_POOL bytes (64 ids) at a time: each call
 * of pg_strong_random costs as much as the executor start of a small
 * statement whatever it draws, and a checkout makes its ids in four calls.
 * The bytes are the same source's (the pool only draws them earlier), each
 * is handed out once and wiped from the pool as it is, and a pool is never
 * shared: it is empty in a new backend and refilled when the process is
 * not the one that filled it.
 */
#define SHOP_ID_POOL	1024

static unsigned char id_pool[SHOP_ID_POOL];
static size_t id_pool_left = 0;
static int	id_pool_pid = 0;

static void
id_random(void *dst, size_t n)
{
	unsigned char *out = dst;

	if (id_pool_pid != MyProcPid)
	{
		id_pool_left = 0;
		id_pool_pid = MyProcPid;
	}
	while (n > 0)
	{
		size_t		take;

		if (id_pool_left == 0)
		{
			if (!pg_strong_random(id_pool, SHOP_ID_POOL))
				ereport(ERROR,
						(errcode(ERRCODE_INTERNAL_ERROR),
						 errmsg("could not generate random values")));
			id_pool_left = SHOP_ID_POOL;
		}
		take = Min(n, id_pool_left);
		memcpy(out, id_pool + SHOP_ID_POOL - id_pool_left, take);
		explicit_bzero(id_pool + SHOP_ID_POOL - id_pool_left, take);
		id_pool_left -= take;
		out += take;
		n -= take;
	}
}

void
ShopNewUuid(pg_uuid_t *u)
{
	ShopNewUuids(u, 1);
}

/*
 * n fresh ids, their random bits from the pool of the strong random source
 * (id_random).
 */
void
ShopNewUuids(pg_uuid_t *u, int n)
{
	uint64		ms;

	StaticAssertStmt(sizeof(pg_uuid_t) == UUID_LEN, "pg_uuid_t is not UUID_LEN bytes");
	if (n <= 0)
		return;
	id_random(u, (size_t) n * UUID_LEN);
	/*
	 * Unix milliseconds (TimestampTz counts microseconds from 2000-01-01),
	 * rounded down to the window (RFC 9562, 6.1, lets an implementation
	 * coarsen the timestamp)
	 */
	ms = (uint64) (GetCurrentTimestamp() / 1000 +
				   (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000);
	ms &= ~((UINT64CONST(1) << SHOP_ID_WINDOW_BITS) - 1);
	for (int i = 0; i < n; i++)
	{
		for (int b = 0; b < 6; b++)
			u[i].data[b] = (unsigned char) (ms >> (8 * (5 - b)));
		u[i].data[6] = (u[i].data[6] & 0x0f) | 0x70;	/* version 7 */
		u[i].data[8] = (u[i].data[8] & 0x3f) | 0x80;	/* RFC 9562 variant */
	}
}

/*
 * n fresh version 4 ids (122 random bits): the reservation ids of holds.
 * Holds stay random: every hold of one hot product goes into that
 * product's range of reservation_pkey (product_id, reservation_id, part),
 * and with time-ordered ids all 64 clients of bench/workloads/reserve_hot
 * inserted into the newest leaves of that one range.  A same-hour pair at
 * 64 clients gave 2,468 holds/s (p99 79 ms) with time-ordered ids against
 * 3,026 (p99 63 ms) with random ones, while the WAL of a checkout did not
 * show the time-ordered ids' gain at bench size (docs/orders.md).
 */
void
ShopNewRandomUuids(pg_uuid_t *u, int n)
{
	if (n <= 0)
		return;
	id_random(u, (size_t) n * UUID_LEN);
	for (int i = 0; i < n; i++)
	{
		u[i].data[6] = (u[i].data[6] & 0x0f) | 0x40;	/* version 4 */
		u[i].data[8] = (u[i].data[8] & 0x3f) | 0x80;	/* RFC 9562 variant */
	}
}

/*
 * shop._new_id() -> uuid: a fresh time-ordered id, the default of
 * shop.cart.cart_id, shop."order".order_id and shop.payment.payment_id.
 */
PG_FUNCTION_INFO_V1(shop_new_id);
Datum
shop_new_id(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

	ShopNewUuid(u);
	PG_RETURN_UUID_P(u);
}

char *
ShopUuidStr(const pg_uuid_t *u)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(u)));
}

/* 22004 when argument n (named name) is NULL */
void
ShopRequireArg(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument %s must not be null", name)));
}

/*
 * ShopPrepareChecks: the CHECK constraints of a table written by shop's C
 * (ExecSimpleRelationUpdate, ExecSimpleRelationInsert, place_row) compiled
 * for its executor state from a per-backend copy of their planned trees.
 * PostgreSQL parses each CHECK's stored text (stringToNode) and plans it
 * (expression_planner: constants folded, SQL functions inlined) again for
 * every statement that writes the table (ExecRelCheck): about 10,000
 * instructions to parse and 5,000 to plan per constraint and statement.
 * The planned trees are kept per table (a few: the ones shop writes this
 * way); each statement only compiles them (ExecInitExpr), and
 * ExecConstraints evaluates them on every row written: the constraints
 * are enforced exactly as before.  A table's copy is dropped by any
 * relcache invalidation of the table (ALTER TABLE ... ADD or DROP
 * CONSTRAINT sends one; the relcache reloads the texts on the same
 * message), all of them by one of every relation, and by any change to
 * pg_proc (a function a CHECK calls, perhaps inlined into the planned
 * tree, replaced).  The caller has opened and locked the table, which
 * delivers the pending invalidations first.
 * Nothing is done when the relcache has not loaded them all
 * (ExecConstraints raises its own error then) or when rri already has them.
 */
#define SHOP_CHECK_RELS 8

typedef struct ShopCheckCache
{
	Oid			relid;
	int			n;
	Node	  **node;			/* planned (expression_planner) */
	MemoryContext cxt;
} ShopCheckCache;

static ShopCheckCache shop_checks[SHOP_CHECK_RELS];
static int	shop_checks_next = 0;

/*
 * The predicates of the partial indexes of the tables shop's C writes,
 * planned once per backend.  ExecInsertIndexTuples (and
 * ExecCheckIndexConstraints) plan an index's predicate again in every
 * statement (ExecPrepareQual: expression_planner on the relcache's
 * predicate, then ExecInitQual): about 18,700 instructions per checkout
 * for its six partial indexes.  ShopOpenIndices opens the indexes as
 * ExecOpenIndices does and gives each partial one its predicate compiled
 * (ExecInitQual) from the kept planned tree, which ExecInsertIndexTuples
 * then uses as it would its own.  An index's entry is dropped by a
 * relcache invalidation of the index or its table, all of them by one of
 * every relation (InvalidOid: a cache reset) and by any change to pg_proc.
 */
#define SHOP_PREDS 32

typedef struct ShopPredEntry
{
	Oid			indexid;		/* the index, or the trigger of a WHEN clause */
	Oid			relid;			/* the index's (trigger's) table */
	List	   *qual;			/* planned, implicit AND, in shop_pred_cxt */
} ShopPredEntry;

static ShopPredEntry shop_preds[SHOP_PREDS];
static int	shop_npreds = 0;
static MemoryContext shop_pred_cxt = NULL;
static bool shop_expr_callbacks = false;

/*
 * Kept trees are never freed while a statement may still use them: the
 * compiled CHECKs and predicates (ExecInitExpr's steps) point into them
 * (by-reference constants), and an invalidation can be delivered in the
 * middle of a statement (any lock taken, also by the catalog reads of
 * planning).  A dropped version's context is moved under
 * shop_expr_retired and deleted at the end of the transaction.
 * shop_expr_gen counts the invalidations: a tree planned while one came
 * is used by its statement, not kept.
 */
static MemoryContext shop_expr_retired = NULL;
static uint64 shop_expr_gen = 0;

/* the kept IndexInfos (ShopOpenIndices, below), per table */
#define SHOP_II_RELS 32

typedef struct ShopIIRel
{
	Oid			relid;			/* the table */
	int			n;				/* its indexes kept, in index list order */
	int			cap;
	Oid		   *indexid;		/* in shop_ii_cxt */
	IndexInfo **ii;
} ShopIIRel;

static ShopIIRel shop_ii_rels[SHOP_II_RELS];
static int	shop_ii_nrels = 0;
static MemoryContext shop_ii_cxt = NULL;
static void shop_ii_reset(void);
static bool shop_ii_holds(Oid indexid);

static void
shop_expr_retire(MemoryContext cxt)
{
	if (cxt == NULL)
		return;
	if (shop_expr_retired == NULL)
		shop_expr_retired = AllocSetContextCreate(CacheMemoryContext, "shop retired expressions",
												  ALLOCSET_SMALL_SIZES);
	MemoryContextSetParent(cxt, shop_expr_retired);
}

static void
shop_expr_xact(XactEvent event, void *arg)
{
	if (shop_expr_retired != NULL &&
		(event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		 event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_COMMIT ||
		 event == XACT_EVENT_PARALLEL_ABORT))
		MemoryContextDeleteChildren(shop_expr_retired);
}

static void
shop_preds_reset(void)
{
	shop_npreds = 0;
	shop_expr_retire(shop_pred_cxt);
	shop_pred_cxt = NULL;
}

static void
shop_expr_relcache_inval(Datum arg, Oid relid)
{
	shop_expr_gen++;
	for (int i = 0; i < SHOP_CHECK_RELS; i++)
		if (!OidIsValid(relid) || shop_checks[i].relid == relid)
			shop_checks[i].relid = InvalidOid;
	for (int i = 0; i < shop_npreds; i++)
		if (!OidIsValid(relid) || shop_preds[i].indexid == relid ||
			shop_preds[i].relid == relid)
		{
			shop_preds_reset();
			break;
		}
	if (shop_ii_nrels > 0 && (!OidIsValid(relid) || shop_ii_holds(relid)))
		shop_ii_reset();
}

/*
 * The trigger functions' FmgrInfos (shop_trigger_fns, below), looked up
 * once per backend; any change to pg_proc drops them.
 */
#define SHOP_TRIG_FNS 32
typedef struct ShopTrigFn
{
	Oid			foid;
	FmgrInfo	finfo;			/* fn_mcxt CacheMemoryContext, fn_extra NULL */
} ShopTrigFn;
static ShopTrigFn shop_trig_fns[SHOP_TRIG_FNS];
static int	shop_ntrig_fns = 0;

static void
shop_expr_proc_inval(Datum arg, int cacheid, uint32 hashvalue)
{
	shop_expr_gen++;
	shop_ntrig_fns = 0;
	for (int i = 0; i < SHOP_CHECK_RELS; i++)
		shop_checks[i].relid = InvalidOid;
	shop_preds_reset();
}

static void
shop_expr_callbacks_register(void)
{
	if (shop_expr_callbacks)
		return;
	CacheRegisterRelcacheCallback(shop_expr_relcache_inval, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, shop_expr_proc_inval, (Datum) 0);
	RegisterXactCallback(shop_expr_xact, NULL);
	shop_expr_callbacks = true;
}

void
ShopPrepareChecks(ResultRelInfo *rri, EState *estate)
{
	Relation	rel = rri->ri_RelationDesc;
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	int			n = constr ? constr->num_check : 0;
	ShopCheckCache *c = NULL;
	Node	  **use;
	MemoryContext old;

	if (n == 0 || n != rel->rd_rel->relchecks || rri->ri_ConstraintExprs != NULL)
		return;
	shop_expr_callbacks_register();
	for (int i = 0; i < SHOP_CHECK_RELS; i++)
		if (shop_checks[i].relid == RelationGetRelid(rel))
			c = &shop_checks[i];
	if (c != NULL && c->n == n)
		use = c->node;
	else
	{
		uint64		gen = shop_expr_gen;
		MemoryContext cxt = AllocSetContextCreate(CacheMemoryContext, "shop checks",
												  ALLOCSET_SMALL_SIZES);

		old = MemoryContextSwitchTo(cxt);
		use = palloc(sizeof(Node *) * n);
		for (int i = 0; i < n; i++)
			use[i] = (Node *) expression_planner((Expr *) stringToNode(constr->check[i].ccbin));
		MemoryContextSwitchTo(old);
		if (c == NULL)
		{
			c = &shop_checks[shop_checks_next];
			shop_checks_next = (shop_checks_next + 1) % SHOP_CHECK_RELS;
		}
		/* the version it replaces may be in use by this statement */
		c->relid = InvalidOid;
		shop_expr_retire(c->cxt);
		c->cxt = cxt;
		c->node = use;
		c->n = n;
		if (gen == shop_expr_gen)
			c->relid = RelationGetRelid(rel);
	}
	/* what ExecRelCheck builds on its first row, in the same context */
	old = MemoryContextSwitchTo(estate->es_query_cxt);
	rri->ri_ConstraintExprs = palloc(sizeof(ExprState *) * n);
	for (int i = 0; i < n; i++)
		rri->ri_ConstraintExprs[i] = ExecInitExpr((Expr *) use[i], NULL);
	MemoryContextSwitchTo(old);
}

/*
 * A partial index's predicate for ExecInsertIndexTuples, compiled on its
 * first evaluation: an update that PostgreSQL makes HOT inserts no index
 * entry and never evaluates it (a saga's transition).  The stub holds the
 * planned tree (expr); its evaluation compiles the predicate in the
 * stub's context (the statement's) once, then runs it.
 */
static Datum
shop_pred_eval(ExprState *stub, ExprContext *econtext, bool *isnull)
{
	ExprState  *real = (ExprState *) stub->evalfunc_private;

	if (real == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(stub));

		real = ExecInitQual((List *) stub->expr, NULL);
		MemoryContextSwitchTo(old);
		stub->evalfunc_private = real;
	}
	return ExecEvalExpr(real, econtext, isnull);
}

/*
 * A planned qual as ExecPrepareQual would compile it on its first use, in
 * the statement's context: a stub that compiles it when first evaluated
 * (shop_pred_eval).
 */
static ExprState *
shop_qual_stub(List *qual, EState *estate)
{
	ExprState  *stub = MemoryContextAllocZero(estate->es_query_cxt, sizeof(ExprState));

	stub->type = T_ExprState;
	stub->flags = EEO_FLAG_IS_QUAL;
	stub->expr = (Expr *) qual;
	stub->evalfunc = shop_pred_eval;
	return stub;
}

/*
 * The WHEN clauses of a table's triggers, planned once per backend and
 * kept with the index predicates (shop_preds, by the trigger's OID, with
 * its table's).  TriggerEnabled reads a WHEN clause's stored text
 * (stringToNode), points its OLD and NEW at the trigger's tuples and plans
 * it (ExecPrepareQual) again in every statement that fires the trigger:
 * about 10,000 instructions of a checkout, for the attribution trigger
 * order_experiment on shop."order" (issue 11).  Here each statement gets
 * the kept tree, compiled on first use as TriggerEnabled compiles it, in
 * the slot it looks in (ri_TrigWhenExprs): the clause is evaluated when
 * and as PostgreSQL evaluates it.  CREATE, DROP, ENABLE and DISABLE
 * TRIGGER send a relcache invalidation of the table, which drops its
 * entries; a change to pg_proc drops them all (an inlined function).
 */
static void
shop_trigger_whens(ResultRelInfo *rri, EState *estate)
{
	TriggerDesc *td = rri->ri_TrigDesc;

	if (td == NULL || rri->ri_TrigWhenExprs == NULL)
		return;
	for (int i = 0; i < td->numtriggers; i++)
	{
		Trigger    *trig = &td->triggers[i];
		List	   *qual = NIL;
		bool		found = false;

		if (trig->tgqual == NULL || rri->ri_TrigWhenExprs[i] != NULL)
			continue;
		for (int k = 0; !found && k < shop_npreds; k++)
			if (shop_preds[k].indexid == trig->tgoid)
			{
				qual = shop_preds[k].qual;
				found = true;
			}
		if (!found)
		{
			uint64		gen = shop_expr_gen;
			MemoryContext old;
			Node	   *tgqual;

			if (shop_pred_cxt == NULL)
				shop_pred_cxt = AllocSetContextCreate(CacheMemoryContext, "shop index predicates",
													  ALLOCSET_SMALL_SIZES);
			old = MemoryContextSwitchTo(shop_npreds < SHOP_PREDS ? shop_pred_cxt : estate->es_query_cxt);
			/* as TriggerEnabled prepares it */
			tgqual = stringToNode(trig->tgqual);
			ChangeVarNodes(tgqual, PRS2_OLD_VARNO, INNER_VAR, 0);
			ChangeVarNodes(tgqual, PRS2_NEW_VARNO, OUTER_VAR, 0);
			tgqual = (Node *) make_ands_implicit((Expr *) tgqual);
			qual = (List *) expression_planner((Expr *) tgqual);
			MemoryContextSwitchTo(old);
			if (gen == shop_expr_gen && shop_npreds < SHOP_PREDS)
			{
				shop_preds[shop_npreds].indexid = trig->tgoid;
				shop_preds[shop_npreds].relid = RelationGetRelid(rri->ri_RelationDesc);
				shop_preds[shop_npreds].qual = qual;
				shop_npreds++;
			}
		}
		if (qual != NIL)
			rri->ri_TrigWhenExprs[i] = shop_qual_stub(qual, estate);
	}
}

/*
 * The FmgrInfo of each enabled row trigger's function, copied into the
 * ResultRelInfo from one looked up once per backend.  ExecCallTriggerFunc
 * looks the function up (fmgr_info: pg_proc, and for a C function its
 * library's symbol) the first time a trigger fires for a ResultRelInfo,
 * and shop's writers make one per statement: 15 lookups per checkout,
 * about 8,000 instructions (issue 11).  A filled entry (fn_oid set) is
 * what ExecCallTriggerFunc leaves after its own lookup; fn_extra starts
 * NULL and fn_mcxt is the statement's context, as there, so a PL
 * function's handler finds its compiled function as it does for a new
 * ResultRelInfo.  A lookup that an invalidation overtook is used by this
 * statement only.  (Every enabled row trigger of the table is filled, also
 * one the statement's event does not fire: a lookup, never a call.)
 */
static void
shop_trigger_fns(ResultRelInfo *rri, EState *estate)
{
	TriggerDesc *td = rri->ri_TrigDesc;

	if (td == NULL || rri->ri_TrigFunctions == NULL)
		return;
	for (int i = 0; i < td->numtriggers; i++)
	{
		Trigger    *trig = &td->triggers[i];
		FmgrInfo   *dst = &rri->ri_TrigFunctions[i];
		bool		found = false;

		if (OidIsValid(dst->fn_oid) || trig->tgenabled == TRIGGER_DISABLED ||
			!TRIGGER_FOR_ROW(trig->tgtype))
			continue;
		for (int k = 0; !found && k < shop_ntrig_fns; k++)
			if (shop_trig_fns[k].foid == trig->tgfoid)
			{
				fmgr_info_copy(dst, &shop_trig_fns[k].finfo, estate->es_query_cxt);
				found = true;
			}
		if (!found && shop_ntrig_fns < SHOP_TRIG_FNS)
		{
			uint64		gen = shop_expr_gen;
			FmgrInfo	f;

			fmgr_info_cxt(trig->tgfoid, &f, CacheMemoryContext);
			if (gen == shop_expr_gen && shop_ntrig_fns < SHOP_TRIG_FNS)
			{
				shop_trig_fns[shop_ntrig_fns].foid = trig->tgfoid;
				shop_trig_fns[shop_ntrig_fns].finfo = f;
				shop_ntrig_fns++;
			}
			fmgr_info_copy(dst, &f, estate->es_query_cxt);
		}
	}
}

/*
 * The IndexInfo of each index of the tables shop's C writes, built once
 * per backend.  ExecOpenIndices builds it again for every index in every
 * statement (BuildIndexInfo: the relcache's expressions and predicate
 * copied, the opclass options looked up; BuildSpeculativeIndexInfo's
 * operator lookups for an ON CONFLICT insert): about 19,000 instructions
 * of a checkout's 25 index opens.  Everything in it comes from the index's
 * own relcache entry (pg_index, its expressions and predicate, its
 * attributes' options), so a relcache invalidation of the index drops the
 * copy, as does one of every relation; the table's index list is read
 * from the relcache in every statement, as ExecOpenIndices reads it.
 * Each statement gets its own shallow copy with the fields the executor
 * fills in (the compiled expressions and predicate, the "unchanged" hint,
 * the access method's cache) cleared; the kept trees it points to are
 * retired, never freed, while a statement may use them (above).
 */
static void
shop_ii_reset(void)
{
	shop_ii_nrels = 0;
	shop_expr_retire(shop_ii_cxt);
	shop_ii_cxt = NULL;
}

/* is an IndexInfo of index indexid kept? */
static bool
shop_ii_holds(Oid indexid)
{
	for (int r = 0; r < shop_ii_nrels; r++)
		for (int k = 0; k < shop_ii_rels[r].n; k++)
			if (shop_ii_rels[r].indexid[k] == indexid)
				return true;
	return false;
}

/* the kept IndexInfos of table relid, NULL when none are kept */
static ShopIIRel *
shop_ii_rel(Oid relid)
{
	for (int r = 0; r < shop_ii_nrels; r++)
		if (shop_ii_rels[r].relid == relid)
			return &shop_ii_rels[r];
	return NULL;
}

/*
 * indexDesc, the pos'th index of table relid's index list, opened and
 * locked: its IndexInfo for this statement.  *rel is the table's kept
 * entry (NULL until one is made).  The kept ones are found by the index's
 * position in the table's list, which is the same in every statement
 * (the relcache keeps it sorted by OID), and checked by OID; a hash lookup
 * per index cost about 4,300 instructions a checkout (issue 11).  ii: where
 * to put the statement's copy.
 */
static IndexInfo *
shop_index_info(Relation indexDesc, Oid relid, int pos, ShopIIRel **rel, bool speculative,
				IndexInfo *ii)
{
	Oid			indexid = RelationGetRelid(indexDesc);
	ShopIIRel  *r = *rel;
	IndexInfo  *kept = NULL;

	if (r != NULL)
	{
		if (pos < r->n && r->indexid[pos] == indexid)
			kept = r->ii[pos];
		else
			for (int k = 0; k < r->n && kept == NULL; k++)
				if (r->indexid[k] == indexid)
					kept = r->ii[k];
	}
	if (kept == NULL)
	{
		uint64		gen = shop_expr_gen;
		MemoryContext old;

		if (shop_ii_cxt == NULL)
			shop_ii_cxt = AllocSetContextCreate(CacheMemoryContext, "shop index infos",
												ALLOCSET_DEFAULT_SIZES);
		old = MemoryContextSwitchTo(shop_ii_cxt);
		kept = BuildIndexInfo(indexDesc);
		/* (ExecCheckIndexConstraints reads it only for an ON CONFLICT insert) */
		if (kept->ii_Unique)
			BuildSpeculativeIndexInfo(indexDesc, kept);
		/* (an invalidation meanwhile retired the context: used once, not kept) */
		if (gen == shop_expr_gen && shop_ii_cxt != NULL)
		{
			/* (the opens may have delivered a reset: look again) */
			r = shop_ii_rel(relid);
			if (r == NULL && shop_ii_nrels < SHOP_II_RELS)
			{
				r = &shop_ii_rels[shop_ii_nrels++];
				r->relid = relid;
				r->n = 0;
				r->cap = 8;
				r->indexid = palloc(sizeof(Oid) * r->cap);
				r->ii = palloc(sizeof(IndexInfo *) * r->cap);
			}
			if (r != NULL)
			{
				if (r->n == r->cap)
				{
					r->cap *= 2;
					r->indexid = repalloc(r->indexid, sizeof(Oid) * r->cap);
					r->ii = repalloc(r->ii, sizeof(IndexInfo *) * r->cap);
				}
				r->indexid[r->n] = indexid;
				r->ii[r->n] = kept;
				r->n++;
			}
			*rel = r;
		}
		MemoryContextSwitchTo(old);
	}
	memcpy(ii, kept, sizeof(IndexInfo));
	ii->ii_ExpressionsState = NIL;
	ii->ii_PredicateState = NULL;
	ii->ii_CheckedUnchanged = false;
	ii->ii_IndexUnchanged = false;
	ii->ii_AmCache = NULL;
	ii->ii_Context = CurrentMemoryContext;
	if (!speculative)
	{
		/* as BuildIndexInfo leaves them */
		ii->ii_UniqueOps = NULL;
		ii->ii_UniqueProcs = NULL;
		ii->ii_UniqueStrats = NULL;
	}
	return ii;
}

/*
 * ShopOpenIndices: what ExecOpenIndices(rri, speculative) does, with the
 * IndexInfos kept per backend (above); then the predicate of each partial
 * index set up from its kept planned tree, and the WHEN clauses of the
 * table's triggers (shop_trigger_whens).
 */
void
ShopOpenIndices(ResultRelInfo *rri, EState *estate, bool speculative)
{
	Relation	rel = rri->ri_RelationDesc;

	shop_expr_callbacks_register();
	rri->ri_NumIndices = 0;
	if (RelationGetForm(rel)->relhasindex)
	{
		List	   *indexoids = RelationGetIndexList(rel);
		int			len = list_length(indexoids);
		int			n = 0;
		ListCell   *lc;
		Oid			relid = RelationGetRelid(rel);
		ShopIIRel  *kept = shop_ii_rel(relid);

		if (len > 0)
		{
			/* (the statement's copies in one allocation, not one each) */
			IndexInfo  *copies = palloc(len * sizeof(IndexInfo));

			rri->ri_IndexRelationDescs = palloc(len * sizeof(Relation));
			rri->ri_IndexRelationInfo = palloc(len * sizeof(IndexInfo *));
			rri->ri_NumIndices = len;
			foreach(lc, indexoids)
			{
				Relation	indexDesc = index_open(lfirst_oid(lc), RowExclusiveLock);

				rri->ri_IndexRelationDescs[n] = indexDesc;
				/* (an invalidation delivered by the open drops the entry) */
				if (shop_ii_nrels == 0)
					kept = NULL;
				rri->ri_IndexRelationInfo[n] = shop_index_info(indexDesc, relid, n, &kept, speculative,
																&copies[n]);
				n++;
			}
		}
		list_free(indexoids);
	}
	shop_trigger_whens(rri, estate);
	shop_trigger_fns(rri, estate);
	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		IndexInfo  *ii = rri->ri_IndexRelationInfo[i];
		Oid			indexid = RelationGetRelid(rri->ri_IndexRelationDescs[i]);
		List	   *qual = NIL;
		MemoryContext old;
		bool		found = false;

		if (ii == NULL || ii->ii_Predicate == NIL || ii->ii_PredicateState != NULL)
			continue;
		for (int k = 0; !found && k < shop_npreds; k++)
			if (shop_preds[k].indexid == indexid)
			{
				qual = shop_preds[k].qual;
				found = true;
			}
		if (!found)
		{
			uint64		gen = shop_expr_gen;

			if (shop_pred_cxt == NULL)
				shop_pred_cxt = AllocSetContextCreate(CacheMemoryContext, "shop index predicates",
													  ALLOCSET_SMALL_SIZES);
			/* (past SHOP_PREDS indexes, planned for this statement only) */
			old = MemoryContextSwitchTo(shop_npreds < SHOP_PREDS ? shop_pred_cxt : estate->es_query_cxt);
			qual = (List *) expression_planner((Expr *) copyObject(ii->ii_Predicate));
			MemoryContextSwitchTo(old);
			/* (an invalidation meanwhile retired the context: used once, not kept) */
			if (gen == shop_expr_gen && shop_npreds < SHOP_PREDS)
			{
				shop_preds[shop_npreds].indexid = indexid;
				shop_preds[shop_npreds].relid = RelationGetRelid(rri->ri_RelationDesc);
				shop_preds[shop_npreds].qual = qual;
				shop_npreds++;
			}
		}

		/*
		 * what ExecPrepareQual would build on the first row, in the same
		 * context, when it is first evaluated (ExecQual runs evalfunc)
		 */
		if (qual == NIL)
			continue;			/* (no predicate left: ExecPrepareQual's NULL) */
		ii->ii_PredicateState = shop_qual_stub(qual, estate);
	}
}

/*
 * ShopWriteSlotOps: the slot kind for a row that shop's C writes into rel
 * (an insert, or an update's new version) from values it sets itself.  A
 * virtual slot, which PostgreSQL's own INSERT and UPDATE use, has no
 * tuple: each BEFORE ROW trigger call forms one from the values
 * (ExecFetchSlotHeapTuple copies the values out, then forms a copy), and
 * the heap insert or update forms it again.  In a heap tuple slot the row
 * is formed once, in the slot, and the triggers and the heap share it;
 * what is written is the same tuple.  For a table of another access
 * method, the virtual slot, which every method takes.
 */
const TupleTableSlotOps *
ShopWriteSlotOps(Relation rel)
{
	return table_slot_callbacks(rel) == &TTSOpsBufferHeapTuple ? &TTSOpsHeapTuple : &TTSOpsVirtual;
}

/*
 * ShopRelid: the OID of relation shop.<name> (InvalidOid when there is
 * none) and its relkind, kept per backend.  A checkout looked its tables
 * and indexes up by name about fifteen times (the schema's name, then the
 * relation's, each a catalog cache search: about 25,000 instructions per
 * checkout).  Any change to pg_class or pg_namespace (a relation created,
 * dropped, renamed, moved, or only its statistics updated) drops every
 * entry, so the next call looks it up again; PostgreSQL delivers those
 * changes at the start of each transaction and when a lock is taken, as
 * for the name lookups it replaces.  The relation still has to be opened
 * and locked by the caller.
 */
#define SHOP_RELIDS 48

typedef struct ShopRelidEntry
{
	char		name[NAMEDATALEN];
	Oid			relid;
	char		relkind;
} ShopRelidEntry;

static ShopRelidEntry shop_relids[SHOP_RELIDS];
static int	shop_nrelids = 0;
static Oid	shop_nsp = InvalidOid;
static bool shop_relids_callback = false;

static void
shop_relids_inval(Datum arg, int cacheid, uint32 hashvalue)
{
	shop_nrelids = 0;
	shop_nsp = InvalidOid;
}

Oid
ShopRelid(const char *name, char *relkind)
{
	Oid			relid;
	char		kind;

	if (!shop_relids_callback)
	{
		CacheRegisterSyscacheCallback(RELOID, shop_relids_inval, (Datum) 0);
		CacheRegisterSyscacheCallback(RELNAMENSP, shop_relids_inval, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, shop_relids_inval, (Datum) 0);
		shop_relids_callback = true;
	}
	for (int i = 0; i < shop_nrelids; i++)
		if (shop_relids[i].name[0] == name[0] && strcmp(shop_relids[i].name, name) == 0)
		{
			if (relkind)
				*relkind = shop_relids[i].relkind;
			return shop_relids[i].relid;
		}
	if (!OidIsValid(shop_nsp))
		shop_nsp = get_namespace_oid("shop", false);
	relid = get_relname_relid(name, shop_nsp);
	kind = OidIsValid(relid) ? get_rel_relkind(relid) : '\0';
	/* (a lookup above may have run the callback: the entries count from 0 then) */
	if (shop_nrelids < SHOP_RELIDS && strlen(name) < NAMEDATALEN && OidIsValid(shop_nsp))
	{
		strlcpy(shop_relids[shop_nrelids].name, name, NAMEDATALEN);
		shop_relids[shop_nrelids].relid = relid;
		shop_relids[shop_nrelids].relkind = kind;
		shop_nrelids++;
	}
	if (relkind)
		*relkind = kind;
	return relid;
}

/* ShopNamespace: the OID of schema shop, kept with ShopRelid's entries */
Oid
ShopNamespace(void)
{
	if (!OidIsValid(shop_nsp))
		(void) ShopRelid("order", NULL);
	return shop_nsp;
}

/*
 * ShopTriggerChangedRow: a row that a call of shop writes into one of its
 * own tables (the idempotency key, the order, its lines, payment and
 * history, a hold's stock update and reservation row) was skipped by a
 * BEFORE trigger that returned NULL, or changed so that shop cannot find
 * it again.  The call would leave half an order or leaked reserved units
 * behind: it stops with 27000 (triggered_data_change_violation,
 * errors.md) and its error undoes everything it wrote.  what names the
 * row (an order id, a key, a product id).
 */
void
ShopTriggerChangedRow(const char *table, const char *call, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_TRIGGERED_DATA_CHANGE_VIOLATION),
			 errmsg("a trigger on shop.%s skipped or changed a row of %s", table, call),
			 errdetail("The row of shop.%s for %s was not written as %s wrote it; nothing of the call is kept.",
					   table, what, call),
			 errhint("A BEFORE trigger on shop's tables must return the row (NEW) it was given, with its keys unchanged.")));
}

/*
 * ShopChangedMeanwhile: the row shop's C was about to lock or change was
 * updated (TM_Updated) or deleted (TM_Deleted) by a transaction that
 * committed after this statement's snapshot.  Under REPEATABLE READ and
 * SERIALIZABLE that is the serialization failure the executor raises;
 * under READ COMMITTED it returns, and the caller follows the newest
 * version or passes the row over, as EvalPlanQual would.
 */
void
ShopChangedMeanwhile(TM_Result res)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent %s",
						res == TM_Deleted ? "delete" : "update")));
}

/*
 * ShopLockForUpdate: lock the row at tid as UPDATE locks it for its BEFORE
 * ROW triggers (GetTupleForTrigger; a DBA's trigger, the card guard's):
 * under READ COMMITTED the newest version when a committed transaction
 * changed it meanwhile, in lockslot.  Returns false when it was deleted
 * meanwhile; the caller checks that the newest version still matches what
 * it looked for (its WHERE, judged again).  what names the row in the
 * message of a result that cannot happen.
 */
bool
ShopLockForUpdate(Relation rel, ItemPointer tid, Snapshot snap,
				  TupleTableSlot *lockslot, CommandId cid, const char *what)
{
	TM_FailureData tmfd;
	TM_Result	res;

	res = table_tuple_lock(rel, tid, snap, lockslot, cid,
						   LockTupleNoKeyExclusive, LockWaitBlock,
						   IsolationUsesXactSnapshot() ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
						   &tmfd);
	switch (res)
	{
		case TM_Ok:
			return true;
		case TM_Updated:
		case TM_Deleted:
			ShopChangedMeanwhile(res);
			return false;		/* deleted meanwhile */
		default:
			elog(ERROR, "shop: unexpected result %d locking %s", (int) res, what);
	}
	return false;				/* keep the compiler quiet */
}

/*
 * ShopCheckWritable: shop's C writes (a hold's stock update and its
 * reservation rows, the cart's lock, the idempotency claim, the cart's
 * lines deleted) go around the executor's statement, and with it around
 * the check it makes before touching a row: a write in a read-only
 * transaction (BEGIN READ ONLY, default_transaction_read_only, every
 * transaction of a hot standby) is refused with 25006 and the words the
 * statement would have used.  Call it before the first lock or write.
 */
void
ShopCheckWritable(const char *command)
{
	PreventCommandIfReadOnly(command);
	PreventCommandIfParallelMode(command);
}
