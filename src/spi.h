/*-------------------------------------------------------------------------
 *
 * spi.h
 *	  The one way shop's C runs SQL: prepared statements kept for the life
 *	  of the backend, each with an explicit plan mode (src/spi.c).
 *
 * A statement is a static ShopStmt, written where it is used:
 *
 *	   static ShopStmt st_cart_lock = SHOP_STMT(SHOP_PLAN_GENERIC,
 *		   "SELECT status FROM shop.cart WHERE cart_id = $1 FOR UPDATE", UUIDOID);
 *	   ...
 *	   ShopExec(&st_cart_lock, args, NULL, 0);
 *	   status = ShopColText(0, 1);
 *
 * Callers are inside SPI_connect()/SPI_finish(); results are read from
 * SPI_tuptable with the ShopCol* helpers.  A statement never runs itself
 * recursively (through a function it calls): its plan may be replaced at
 * the start of a run.  docs/hacking.md says which mode to pick and why.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SHOP_SPI_H
#define SHOP_SPI_H

#include "postgres.h"

#include "access/tableam.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/uuid.h"

/*
 * How a statement is planned.
 *
 * GENERIC: one plan, made at the first call and reused (no planning per
 *	 call).  For statements whose best plan does not depend on the values:
 *	 lookups by a key, writes of given rows.  spi.c re-plans such a
 *	 statement when the tables it reads have grown fourfold since it was
 *	 planned (see ShopExec), so a plan made on the empty tables of a new
 *	 shop does not outlive them.
 * CUSTOM: planned for the values of every call.  For statements whose plan
 *	 depends on the values (how many, how selective) and whose run time
 *	 dwarfs planning.
 * AUTO: PostgreSQL's plan cache chooses (custom plans first, then the
 *	 generic one when it is not costlier).
 */
typedef enum ShopPlanMode
{
	SHOP_PLAN_GENERIC,
	SHOP_PLAN_CUSTOM,
	SHOP_PLAN_AUTO
} ShopPlanMode;

#define SHOP_STMT_MAX_ARGS 32

typedef struct ShopStmt
{
	const char *sql;
	ShopPlanMode mode;
	int			nargs;
	Oid			argtypes[SHOP_STMT_MAX_ARGS];
	/* kept by spi.c */
	SPIPlanPtr	plan;
	double		planned_blocks; /* size of the tables read, when planned */
	uint32		calls;			/* since planned */
	Oid		   *relids;			/* the tables read (TopMemoryContext) */
	int			nrelids;
} ShopStmt;

/* a statement with arguments of the given types, and one without */
#define SHOP_STMT(mode, sql, ...) \
	{(sql), (mode), lengthof(((Oid[]) {__VA_ARGS__})), {__VA_ARGS__}, NULL, 0, 0, NULL, 0}
#define SHOP_STMT0(mode, sql) \
	{(sql), (mode), 0, {InvalidOid}, NULL, 0, 0, NULL, 0}

/* spi.c: statements */
extern uint64 ShopExec(ShopStmt *s, const Datum *args, const char *nulls, long limit);
extern uint64 ShopExecRead(ShopStmt *s, const Datum *args, const char *nulls);
extern bool ShopExecOrUndo(ShopStmt *s, const Datum *args, const char *nulls, uint64 need);
extern Portal ShopOpenCursor(ShopStmt *s, const Datum *args, const char *nulls, bool read_only);
extern void ShopDirect(const char *sql, int expected);
extern bool ShopInstalledHere(void);

/* spi.c: the result of the last statement (row 0-based, column 1-based) */
extern Datum ShopCol(uint64 row, int col, bool *isnull);
extern int64 ShopColInt(uint64 row, int col, int64 ifnull);
extern double ShopColFloat(uint64 row, int col, double ifnull);
extern bool ShopColBool(uint64 row, int col, bool ifnull);
extern char *ShopColText(uint64 row, int col);
extern Datum ShopColCopy(uint64 row, int col, bool *isnull);

/* spi.c: arrays for statement arguments */
extern Datum ShopInt8Array(const int64 *v, int n);
extern Datum ShopInt4Array(const int32 *v, int n);
extern Datum ShopFloat4Array(const float4 *v, int n);
extern Datum ShopFloat8Array(const double *v, int n);
extern Datum ShopTextArray(const char *const *v, int n);
extern Datum ShopUuidArray(const pg_uuid_t *v, int n);

/* spi.c: ids and arguments */
extern void ShopNewUuid(pg_uuid_t *u);
extern void ShopNewUuids(pg_uuid_t *u, int n);
extern void ShopNewRandomUuids(pg_uuid_t *u, int n);
extern char *ShopUuidStr(const pg_uuid_t *u);
extern void ShopRequireArg(FunctionCallInfo fcinfo, int n, const char *name);

/* spi.c: a table's CHECK constraints for shop's C writes, planned once per backend */
struct ResultRelInfo;
struct EState;
extern void ShopPrepareChecks(struct ResultRelInfo *rri, struct EState *estate);
/* spi.c: ExecOpenIndices, with IndexInfos, partial-index predicates and trigger WHEN clauses kept per backend */
extern void ShopOpenIndices(struct ResultRelInfo *rri, struct EState *estate, bool speculative);

/* spi.c: refuse a C write where the executor would (read-only transaction, standby) */
extern void ShopCheckWritable(const char *command);

/* spi.c: 27000 for a row of shop's own table that a user's trigger skipped or changed */
extern void ShopTriggerChangedRow(const char *table, const char *call, const char *what) pg_attribute_noreturn();

/* spi.c: a row changed by a transaction that committed meanwhile (40001 under snapshot isolation) */
extern void ShopChangedMeanwhile(TM_Result res);
/* spi.c: lock a row as UPDATE does for its BEFORE ROW triggers; false: deleted meanwhile */
extern bool ShopLockForUpdate(Relation rel, ItemPointer tid, Snapshot snap,
							  TupleTableSlot *lockslot, CommandId cid, const char *what);

/* spi.c: relation shop.<name>'s OID and relkind, and schema shop's, kept per backend */
extern Oid ShopRelid(const char *name, char *relkind);
extern Oid ShopNamespace(void);

/* the slot kind for a row shop's C writes into rel (spi.c) */
struct TupleTableSlotOps;
struct RelationData;
extern const struct TupleTableSlotOps *ShopWriteSlotOps(struct RelationData *rel);

#endif							/* SHOP_SPI_H */
