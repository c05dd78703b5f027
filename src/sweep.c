/*-------------------------------------------------------------------------
 *
 * sweep.c
 *	  The sweeper: a background worker that runs shop.sweep() every
 *	  shop.sweep_interval in every database that has the extension.
 *
 * Registered only when shop is in shared_preload_libraries.  Two kinds of
 * process:
 *
 *	 - the launcher (one, static, restarted by the postmaster if it dies)
 *	   connects to no database, only to the shared catalogs.  Every
 *	   shop.sweep_interval it lists the databases named by
 *	   shop.sweep_databases ('*': every database that accepts connections,
 *	   templates excluded) and, one database at a time, starts a sweep
 *	   worker and waits for it to finish;
 *	 - a sweep worker (dynamic, never restarted) connects to one database,
 *	   does nothing when the extension is not installed there, and
 *	   otherwise runs shop.sweep() in one transaction and exits.
 *
 * A database can only be entered once per process, hence a worker per
 * database rather than one process looping over them.  An error in a
 * database (a bug, a lock timeout, a dropped database) ends that worker
 * with the error in the server log; the launcher goes on with the next
 * database and the next round.  SIGHUP re-reads the configuration
 * (interval, database list); SIGTERM stops the launcher at once.
 *
 * Without preloading nothing here runs and the DBA schedules
 * shop.sweep() (docs/operations.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/varlena.h"

#include "shop.h"
#include "spi.h"

PGDLLEXPORT void shop_sweep_launcher_main(Datum main_arg);
PGDLLEXPORT void shop_sweep_db_main(Datum main_arg);
static void sweep_apply_popularity(const char *dbname);

char	   *shop_sweep_databases = NULL;

/* the sweep, and whether it did anything (a count that is not 0) */
static ShopStmt st_sweep = SHOP_STMT0(SHOP_PLAN_AUTO,
	"SELECT r::text,"
	"       EXISTS (SELECT 1 FROM pg_catalog.jsonb_each(r) e"
	"                WHERE e.value::text NOT IN ('0', 'null'))"
	"  FROM shop.sweep() r");

/*
 * Register the launcher.  Called from _PG_init while the postmaster loads
 * shared_preload_libraries.
 */
void
ShopSweepRegister(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "shop");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "shop_sweep_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "shop sweeper launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "shop sweeper");
	RegisterBackgroundWorker(&worker);
}

/*
 * The databases to sweep, as a list of palloc'd names in the current memory
 * context.  '*' reads pg_database (allowed connections, no templates).
 */
static List *
sweep_database_list(void)
{
	List	   *result = NIL;
	MemoryContext outer = CurrentMemoryContext;

	if (shop_sweep_databases == NULL || strcmp(shop_sweep_databases, "*") == 0)
	{
		Relation	rel;
		TableScanDesc scan;
		HeapTuple	tup;

		StartTransactionCommand();
		(void) GetTransactionSnapshot();
		rel = table_open(DatabaseRelationId, AccessShareLock);
		scan = table_beginscan_catalog(rel, 0, NULL);
		while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		{
			Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
			MemoryContext old;

			if (!db->datallowconn || db->datistemplate)
				continue;
			old = MemoryContextSwitchTo(outer);
			result = lappend(result, pstrdup(NameStr(db->datname)));
			MemoryContextSwitchTo(old);
		}
		table_endscan(scan);
		table_close(rel, AccessShareLock);
		CommitTransactionCommand();
	}
	else
	{
		char	   *copy = pstrdup(shop_sweep_databases);
		List	   *names;
		ListCell   *lc;

		if (!SplitIdentifierString(copy, ',', &names))
		{
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("shop.sweep_databases is not a valid list of database names"),
					 errdetail("The value is \"%s\".", shop_sweep_databases)));
			return NIL;
		}
		foreach(lc, names)
			result = lappend(result, pstrdup((char *) lfirst(lc)));
	}
	return result;
}

/* Start a sweep worker for one database and wait until it has finished. */
static void
sweep_one_database(const char *dbname)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "shop");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "shop_sweep_db_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "shop sweeper for %s", dbname);
	snprintf(worker.bgw_type, BGW_MAXLEN, "shop sweeper");
	strlcpy(worker.bgw_extra, dbname, BGW_EXTRALEN);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("shop sweeper: no background worker slot free for database \"%s\"", dbname),
				 errhint("Raise max_worker_processes.")));
		return;
	}
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
		return;
	(void) WaitForBackgroundWorkerShutdown(handle);
	pfree(handle);
}

/*
 * Launcher: sleep shop.sweep_interval, sweep every database, repeat.
 */
void
shop_sweep_launcher_main(Datum main_arg)
{
	MemoryContext round_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* shared catalogs only */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("shop sweeper launcher");

	round_cxt = AllocSetContextCreate(TopMemoryContext, "shop sweeper round",
									  ALLOCSET_DEFAULT_SIZES);
	ereport(LOG,
			(errmsg("shop sweeper started: every %d s in %s", shop_sweep_interval,
					(shop_sweep_databases == NULL || strcmp(shop_sweep_databases, "*") == 0)
					? "every database with shop" : shop_sweep_databases)));

	/*
	 * The first round comes one interval after start.  The latch is also set
	 * by things other than the timeout (the sweep workers' start and exit
	 * notifications, SIGHUP), so sleep until a deadline rather than for one
	 * WaitLatch: otherwise a round would start right after the previous one.
	 */
	for (;;)
	{
		List	   *dbs;
		ListCell   *lc;
		MemoryContext old;
		TimestampTz next_round;

		next_round = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												 (int64) shop_sweep_interval * 1000);
		for (;;)
		{
			long		wait_ms;

			wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_round);
			if (wait_ms <= 0)
				break;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending)
			{
				int			old_interval = shop_sweep_interval;

				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
				/* a changed interval counts from the last round */
				next_round = TimestampTzPlusMilliseconds(next_round,
														 ((int64) shop_sweep_interval - old_interval) * 1000);
			}
		}

		old = MemoryContextSwitchTo(round_cxt);
		dbs = sweep_database_list();
		foreach(lc, dbs)
		{
			CHECK_FOR_INTERRUPTS();
			sweep_one_database((const char *) lfirst(lc));
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(round_cxt);
	}
}

/*
 * Sweep worker: run shop.sweep() in one database, log what it did, exit.
 */
void
shop_sweep_db_main(Datum main_arg)
{
	char		dbname[BGW_EXTRALEN];

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, BGW_EXTRALEN);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	pgstat_report_appname("shop sweeper");

	/*
	 * the sweep waits for no shopper's stock row or cart (SKIP LOCKED,
	 * NOWAIT); a bound on any other wait all the same
	 */
	SetConfigOption("lock_timeout", "10s", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "5min", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "SELECT shop.sweep()");

	if (ShopInstalledHere() && ShopExec(&st_sweep, NULL, NULL, 0) == 1)
	{
		char	   *result = ShopColText(0, 1);

		ereport(ShopColBool(0, 2, false) ? LOG : DEBUG1,
				(errmsg("shop sweep in database \"%s\": %s", dbname, result)));
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	sweep_apply_popularity(dbname);

	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}

/*
 * After the sweep: write the popularity values the refresh queued into
 * shop.product, one batch per transaction (so no product row stays locked
 * longer than one batch), until the queue is empty or POP_APPLY_BUDGET_MS
 * have passed; the next round goes on.  Skipped where shop is 1.0.
 *
 * Paced: after each batch the worker rests as long as the batch took (at
 * most POP_APPLY_REST_MAX_MS), so that it writes at most half the time.
 * A product row's popularity is in two of its indexes (the search index's
 * document and product_popularity_idx), so each write is a new row
 * version with its index entries, and a batch of 1000 is a burst of WAL
 * that every committing checkout's flush waits behind (with
 * synchronous_commit on, checkouts already spend most of their waits on
 * WALWrite).  A guard: bench/checkout_sweep.sh saw no difference either
 * way for 9 batches of 1000 (bench/results/2026-12-06-checkout-sweep.md).
 */
#define POP_APPLY_BUDGET_MS 30000
#define POP_APPLY_REST_MAX_MS 1000

static ShopStmt st_pop_exists = SHOP_STMT0(SHOP_PLAN_AUTO,
	"SELECT pg_catalog.to_regprocedure('shop._popularity_apply(integer)') IS NOT NULL");
static ShopStmt st_pop_apply = SHOP_STMT0(SHOP_PLAN_AUTO,
	"SELECT shop._popularity_apply(NULL)");

static void
sweep_apply_popularity(const char *dbname)
{
	TimestampTz start = GetCurrentTimestamp();
	int64		total = 0;
	int			batches = 0;

	for (;;)
	{
		bool		more = false;
		TimestampTz batch_start;
		long		took_ms;

		CHECK_FOR_INTERRUPTS();
		/* a batch loop of its own: stop when the server is gone */
		if (!PostmasterIsAlive())
			proc_exit(1);
		batch_start = GetCurrentTimestamp();
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "SELECT shop._popularity_apply(NULL)");
		if (ShopInstalledHere() &&
			ShopExec(&st_pop_exists, NULL, NULL, 0) == 1 && ShopColBool(0, 1, false) &&
			ShopExec(&st_pop_apply, NULL, NULL, 0) == 1)
		{
			int64		taken = ShopColInt(0, 1, 0);

			total += taken;
			batches++;
			more = taken > 0 && taken >= shop_popularity_apply_batch;
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		if (!more ||
			TimestampDifferenceExceeds(start, GetCurrentTimestamp(), POP_APPLY_BUDGET_MS))
			break;
		/* rest as long as the batch took */
		took_ms = TimestampDifferenceMilliseconds(batch_start, GetCurrentTimestamp());
		if (took_ms > 0)
		{
			pgstat_report_activity(STATE_IDLE, NULL);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(took_ms, POP_APPLY_REST_MAX_MS), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	if (total > 0)
		ereport(LOG,
				(errmsg("shop sweep in database \"%s\": wrote the popularity of %lld products in %d batches",
						dbname, (long long) total, batches)));
}
