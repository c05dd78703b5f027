/*-------------------------------------------------------------------------
 *
 * events.c
 *	  The transactional outbox: shop._emit, and the wake-up of listeners
 *	  once per batch of committed events (docs/operations.md).
 *
 * An event is a row of shop.event written in the transaction that caused
 * it: it exists if and only if that transaction commits.  Consumers read
 * events with the consumer-group calls (shop.event_claim / shop.event_ack,
 * SQL in the update script), which find what committed by the inserting
 * transaction's id (shop.event.tx) and snapshots, never by event_id alone.
 *
 * Listeners are woken on channel shop_events.  In 1.0 every event was
 * also a pg_notify in its own transaction, and PostgreSQL lets one
 * notifying transaction commit at a time (it takes a database-wide lock
 * from pre-commit to the end of commit): with events on every checkout,
 * checkouts committed one after another.  Now, when shop is preloaded, a
 * transaction that emitted only notes it, and at commit sets the latch of
 * its database's events worker (shop_events_main, below), starting the
 * worker when there is none; the worker sends one notification per batch
 * of commits, from its own transaction.  Without preloading there is no
 * worker, and _emit notifies as 1.0 did.
 *
 * Shared memory: one slot per database that has a running (or starting)
 * events worker: its latch, and a counter of wake-ups that lets the
 * worker exit when idle without losing one (events_worker_idle).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_emit);

/* the events worker's entry point, found by name in the library */
PGDLLEXPORT void shop_events_main(Datum main_arg);

int			shop_notify_events = SHOP_NOTIFY_BATCH;

/* on/off as in 1.0 (a boolean then): on is the default, batch */
static const struct config_enum_entry notify_options[] = {
	{"batch", SHOP_NOTIFY_BATCH, false},
	{"each", SHOP_NOTIFY_EACH, false},
	{"off", SHOP_NOTIFY_OFF, false},
	{"on", SHOP_NOTIFY_BATCH, true},
	{"true", SHOP_NOTIFY_BATCH, true},
	{"yes", SHOP_NOTIFY_BATCH, true},
	{"1", SHOP_NOTIFY_BATCH, true},
	{"false", SHOP_NOTIFY_OFF, true},
	{"no", SHOP_NOTIFY_OFF, true},
	{"0", SHOP_NOTIFY_OFF, true},
	{NULL, 0, false}
};

#define EVENT_DBS			32		/* databases with an events worker at a time */
#define EVENT_START_WAIT	10000	/* ms a starting worker is waited for */
#define NOTIFY_MAX_BYTES	7900	/* a NOTIFY payload must stay below 8000 */
#define EVENTS_GATHER_MS	10		/* the worker batches notifications this long */
#define EVENTS_IDLE_MS		2000	/* and exits after this long without a commit */

typedef struct EventSlot
{
	Oid			dboid;			/* InvalidOid: free */
	Latch	   *latch;			/* the worker's, once it runs */
	uint64		wakes;			/* commits that asked for a notification */
	TimestampTz started;		/* when a backend asked for the worker */
} EventSlot;

typedef struct EventShared
{
	slock_t		mutex;
	EventSlot	slot[EVENT_DBS];
} EventShared;

static EventShared *event_shared = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

/* this backend: a transaction in progress emitted an event */
static bool events_pending = false;
static bool callback_registered = false;

static ShopStmt st_event_insert = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.event (topic, payload) VALUES ($1, $2) RETURNING event_id",
	TEXTOID, JSONBOID);
/* the worker: one notification for the batch of events committed since the last */
static ShopStmt st_notify_batch = SHOP_STMT0(SHOP_PLAN_AUTO,
	"SELECT pg_catalog.pg_notify('shop_events', pg_catalog.jsonb_build_object("
	"  'last_event_id', (SELECT max(event_id) FROM shop.event))::text)");

/* ShopEventsDefineGUCs: shop.notify_events; called by _PG_init. */
void
ShopEventsDefineGUCs(void)
{
	DefineCustomEnumVariable("shop.notify_events",
							 "How listeners of channel shop_events are woken.",
							 "batch: one notification per batch of committed events, sent by the "
							 "events worker (as each when shop is not preloaded); each: a pg_notify "
							 "per event in its own transaction, as in 1.0 (notifying transactions "
							 "commit one at a time); off: none.",
							 &shop_notify_events,
							 SHOP_NOTIFY_BATCH,
							 notify_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------
 * Shared memory (preloaded only)
 * ---------------------------------------------------------------------
 */

static void
events_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(EventShared)));
}

static void
events_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	event_shared = ShmemInitStruct("shop events", sizeof(EventShared), &found);
	if (!found)
	{
		memset(event_shared, 0, sizeof(EventShared));
		SpinLockInit(&event_shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* ShopEventsShmemRegister: from _PG_init of the postmaster (shop.c). */
void
ShopEventsShmemRegister(void)
{
#if PG_VERSION_NUM >= 150000
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = events_shmem_request;
#else
	RequestAddinShmemSpace(MAXALIGN(sizeof(EventShared)));
#endif
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = events_shmem_startup;
}

/* the slot of a database, or -1 (mutex held) */
static int
events_slot(Oid dboid)
{
	for (int i = 0; i < EVENT_DBS; i++)
		if (event_shared->slot[i].dboid == dboid)
			return i;
	return -1;
}

/* ---------------------------------------------------------------------
 * The events worker: one per database while events are being emitted
 * ---------------------------------------------------------------------
 */

/*
 * Ask the postmaster for the events worker of dboid (a committing backend
 * does, when there is none).  false when no worker slot is free: events
 * are kept, listeners are then woken by the next commit that finds a slot.
 */
static bool
events_worker_start(Oid dboid)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "shop");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "shop_events_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "shop events for database %u", dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "shop events");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	return RegisterDynamicBackgroundWorker(&worker, NULL);
}

/*
 * The events worker of dboid takes its slot (its latch is what committing
 * backends set).  Returns the wake-up count seen.
 */
static uint64
events_worker_attach(Oid dboid)
{
	uint64		wakes = 0;
	int			i;

	SpinLockAcquire(&event_shared->mutex);
	i = events_slot(dboid);
	if (i < 0)
		i = events_slot(InvalidOid);
	if (i >= 0)
	{
		event_shared->slot[i].dboid = dboid;
		event_shared->slot[i].latch = MyLatch;
		wakes = event_shared->slot[i].wakes;
	}
	SpinLockRelease(&event_shared->mutex);
	return wakes;
}

/* The wake-up count now. */
static uint64
events_worker_wakes(Oid dboid)
{
	uint64		wakes = 0;
	int			i;

	SpinLockAcquire(&event_shared->mutex);
	i = events_slot(dboid);
	if (i >= 0)
		wakes = event_shared->slot[i].wakes;
	SpinLockRelease(&event_shared->mutex);
	return wakes;
}

/*
 * The worker may exit if no commit asked for a notification since it last
 * looked (wakes unchanged): then it frees its slot, under the lock, so the
 * next commit starts a new worker.  Returns true when it may exit.
 */
static bool
events_worker_idle(Oid dboid, uint64 seen)
{
	bool		idle = true;
	int			i;

	SpinLockAcquire(&event_shared->mutex);
	i = events_slot(dboid);
	if (i >= 0)
	{
		if (event_shared->slot[i].wakes != seen)
			idle = false;
		else
		{
			event_shared->slot[i].dboid = InvalidOid;
			event_shared->slot[i].latch = NULL;
		}
	}
	SpinLockRelease(&event_shared->mutex);
	return idle;
}

/*
 * At the worker's exit, on any exit (before_shmem_exit), its slot goes if
 * it is still its own, so that the next commit starts a worker.
 */
static void
events_worker_detach(int code, Datum arg)
{
	SpinLockAcquire(&event_shared->mutex);
	for (int i = 0; i < EVENT_DBS; i++)
		if (event_shared->slot[i].latch == MyLatch)
		{
			event_shared->slot[i].dboid = InvalidOid;
			event_shared->slot[i].latch = NULL;
		}
	SpinLockRelease(&event_shared->mutex);
}

/*
 * One round: in a transaction of its own, one notification naming the
 * newest event.  false when the extension is not (or no longer) there.
 */
static bool
events_round(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "shop events: notify");
	installed = ShopInstalledHere();
	if (installed)
		ShopExec(&st_notify_batch, NULL, NULL, 0);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return installed;
}

/*
 * Events worker main loop: a round, then sleep EVENTS_GATHER_MS (commits
 * arriving meanwhile join the next round), then wait for commits; exit
 * after EVENTS_IDLE_MS without one (so that DROP DATABASE, which waits up
 * to 5 s for other sessions, is not held up), or when the extension is
 * gone.
 */
void
shop_events_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	uint64		seen;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("shop events");
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	/*
	 * A notification need not outlive a crash (its listeners' connections
	 * do not): no waiting for the WAL flush of the round's commit.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	seen = events_worker_attach(dboid);
	before_shmem_exit(events_worker_detach, ObjectIdGetDatum(dboid));

	for (;;)
	{
		if (!events_round())
			break;
		(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, EVENTS_GATHER_MS,
						 PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
		for (;;)
		{
			uint64		now = events_worker_wakes(dboid);
			int			rc;

			if (now != seen)
			{
				seen = now;
				break;
			}
			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						   EVENTS_IDLE_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
			if ((rc & WL_TIMEOUT) && events_worker_idle(dboid, seen))
				proc_exit(0);
		}
	}
	proc_exit(0);
}

/* ---------------------------------------------------------------------
 * Waking the worker at commit
 * ---------------------------------------------------------------------
 */

/*
 * Wake this database's events worker, or start one.  At commit of a
 * transaction that emitted: the events are visible to everyone by then.
 */
static void
events_wake(void)
{
	Latch	   *latch = NULL;
	bool		start = false;
	int			i;
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&event_shared->mutex);
	i = events_slot(MyDatabaseId);
	if (i >= 0)
	{
		EventSlot  *s = &event_shared->slot[i];

		s->wakes++;
		latch = s->latch;
		/* a worker that was asked for and never came: ask again */
		if (latch == NULL &&
			TimestampDifferenceExceeds(s->started, now, EVENT_START_WAIT))
		{
			s->started = now;
			start = true;
		}
	}
	else if ((i = events_slot(InvalidOid)) >= 0)
	{
		EventSlot  *s = &event_shared->slot[i];

		s->dboid = MyDatabaseId;
		s->latch = NULL;
		s->wakes = 1;
		s->started = now;
		start = true;
	}
	SpinLockRelease(&event_shared->mutex);

	if (latch)
		SetLatch(latch);
	if (start && !events_worker_start(MyDatabaseId))
	{
		SpinLockAcquire(&event_shared->mutex);
		if (i >= 0 && event_shared->slot[i].dboid == MyDatabaseId &&
			event_shared->slot[i].latch == NULL)
			event_shared->slot[i].dboid = InvalidOid;
		SpinLockRelease(&event_shared->mutex);
	}
}

static void
events_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (events_pending)
			{
				events_pending = false;
				events_wake();
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			events_pending = false;
			break;
		default:
			break;
	}
}

/* ---------------------------------------------------------------------
 * Emitting
 * ---------------------------------------------------------------------
 */

/*
 * 1.0's notification: one per event, in the emitting transaction; the text
 * of jsonb_build_object('event_id', id, 'topic', topic, 'payload', payload),
 * keys in jsonb's order, without the payload when too large for NOTIFY.
 */
static void
events_notify_now(int64 event_id, const char *topic, Jsonb *payload)
{
	StringInfoData topic_buf;
	char	   *topic_json;
	char	   *note;

	initStringInfo(&topic_buf);
	escape_json(&topic_buf, topic);
	topic_json = topic_buf.data;
	note = psprintf("{\"topic\": %s, \"payload\": %s, \"event_id\": " INT64_FORMAT "}",
								topic_json, JsonbToCString(NULL, &payload->root, VARSIZE(payload)),
								event_id);

	if (strlen(note) >= NOTIFY_MAX_BYTES)
		note = psprintf("{\"topic\": %s, \"event_id\": " INT64_FORMAT ", \"truncated\": true}",
						topic_json, event_id);
	Async_Notify("shop_events", note);
}

/*
 * ShopEmit: append an event to the outbox in the current transaction and
 * see to it that listeners are woken when it commits.  Returns event_id,
 * 0 when a BEFORE trigger on shop.event skipped the row.
 * SPI must be connected.
 */
int64
ShopEmit(const char *topic, Jsonb *payload)
{
	Datum		args[2];
	int64		event_id;

	args[0] = CStringGetTextDatum(topic);
	args[1] = JsonbPGetDatum(payload);
	/*
	 * No row: a BEFORE trigger skipped it (allowed: that event is not
	 * written, orders.md), 0 and no notification.  Row 0 of the empty
	 * result was read here, and the server crashed.
	 */
	if (ShopExec(&st_event_insert, args, NULL, 0) != 1)
		return 0;
	event_id = ShopColInt(0, 1, 0);
	ShopEventWritten(event_id, topic, payload);
	return event_id;
}

/*
 * ShopEventWritten: an event row was just inserted into shop.event by the
 * caller's own statement (checkout writes its events in its one statement,
 * src/orders.c): see to it that listeners are woken, as ShopEmit does.
 */
void
ShopEventWritten(int64 event_id, const char *topic, Jsonb *payload)
{
	if (shop_notify_events == SHOP_NOTIFY_OFF)
		return;
	if (shop_notify_events == SHOP_NOTIFY_EACH || event_shared == NULL)
		events_notify_now(event_id, topic, payload);
	else
	{
		if (!callback_registered)
		{
			RegisterXactCallback(events_xact_callback, NULL);
			callback_registered = true;
		}
		events_pending = true;
	}
}

/*
 * shop._emit(topic text, payload jsonb) -> bigint
 */
Datum
shop_emit(PG_FUNCTION_ARGS)
{
	int64		event_id;

	ShopRequireArg(fcinfo, 0, "topic");
	ShopRequireArg(fcinfo, 1, "payload");
	SPI_connect();
	event_id = ShopEmit(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_JSONB_P(1));
	SPI_finish();
	/* a skipped row: NULL, as 1.0's INSERT ... RETURNING INTO gave */
	if (event_id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(event_id);
}
