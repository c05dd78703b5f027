/*-------------------------------------------------------------------------
 *
 * searchlog.c
 *	  The search log without a table insert per search.
 *
 * shop.search used to INSERT a row into shop.search_log on every call, so
 * a read wrote WAL and a heap tuple and an index entry.  When shop is in
 * shared_preload_libraries, a search now copies its record into a ring of
 * shop.search_log_buffer entries in shared memory (one lightweight lock
 * held for a copy of a fixed-size slot); the records reach shop.search_log in batches:
 *
 *   - the sweeper flushes its database's records on every round
 *     (shop.sweep() calls shop._search_log_flush());
 *   - a search that finds half of the ring in use flushes its database's
 *     records itself, one multi-row INSERT, so a busy shop never waits for
 *     the sweeper and the ring rarely overflows.
 *
 * A full ring overwrites its oldest record and counts it as dropped.
 * Records still in the ring are lost when the server stops or crashes:
 * at most half a ring, or a sweep interval's worth (docs/search.md).
 * Without the preload (or with shop.search_log_buffer = 0),
 * shop._search_log_add returns NULL and the search inserts its row itself,
 * as before.
 *
 * Records are per database: each slot carries its database's OID, and a
 * flush takes only the records of the database it runs in, oldest first.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "shop.h"
#include "spi.h"

#define SL_QUERY_BYTES		1024	/* shop.max_query_length is in characters */
#define SL_FILTERS_BYTES	512
#define SL_SORT_BYTES		16

typedef struct SearchLogSlot
{
	Oid			dboid;			/* InvalidOid: free or taken */
	Oid			logrel;			/* shop.search_log of the install that logged it */
	uint64		seq;			/* order of arrival */
	TimestampTz logged_at;
	int64		customer_id;
	bool		has_customer;
	bool		filters_cut;	/* filters did not fit: stored as NULL */
	int32		results;
	float4		duration_ms;
	char		sort[SL_SORT_BYTES];
	char		filters[SL_FILTERS_BYTES];
	char		query[SL_QUERY_BYTES];
} SearchLogSlot;

typedef struct SearchLogShared
{
	LWLock	   *lock;			/* the ring and its counters */
	uint64		next_seq;		/* records ever added */
	uint64		in_use;			/* slots holding a record not yet taken */
	uint64		dropped;		/* records overwritten before a flush */
	uint64		flushed;		/* records taken by flushes */
	int			nslots;
	SearchLogSlot slots[FLEXIBLE_ARRAY_MEMBER];
} SearchLogShared;

int			shop_search_log_buffer = 4096;

static SearchLogShared *search_log = NULL;
static shmem_request_hook_type prev_shmem_request = NULL;
static shmem_startup_hook_type prev_shmem_startup = NULL;

static Size
search_log_size(void)
{
	return add_size(offsetof(SearchLogShared, slots),
					mul_size(sizeof(SearchLogSlot), Max(shop_search_log_buffer, 0)));
}

static void
search_log_shmem_request(void)
{
	if (prev_shmem_request)
		prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(search_log_size()));
	RequestNamedLWLockTranche("shop search log", 1);
}

static void
search_log_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup)
		prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	search_log = ShmemInitStruct("shop search log", search_log_size(), &found);
	if (!found)
	{
		memset(search_log, 0, search_log_size());
		search_log->lock = &(GetNamedLWLockTranche("shop search log"))->lock;
		search_log->nslots = Max(shop_search_log_buffer, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* ShopSearchLogDefineGUCs: shop.search_log_buffer; called by _PG_init. */
void
ShopSearchLogDefineGUCs(void)
{
	DefineCustomIntVariable("shop.search_log_buffer",
							"Search log records kept in shared memory before they are written to shop.search_log.",
							"0 writes a row per search, as without the preload.",
							&shop_search_log_buffer,
							4096, 0, 1000000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
}

/* ShopSearchLogShmemRegister: from _PG_init of the postmaster (shop.c). */
void
ShopSearchLogShmemRegister(void)
{
	prev_shmem_request = shmem_request_hook;
	shmem_request_hook = search_log_shmem_request;
	prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = search_log_shmem_startup;
}

/* copy at most cap - 1 bytes of src, cut on a character boundary */
static void
copy_clipped(char *dst, const char *src, int len, int cap)
{
	int			n = len < cap ? len : pg_mbcliplen(src, len, cap - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/*
 * search_log_add: a record into the ring (there is one); returns whether
 * half of the ring is in use (the caller should flush).  filters NULL: "{}".
 */
static int
search_log_add(Oid logrel, text *query, Jsonb *filters_jb, text *sort, int32 results,
			   float4 duration_ms, bool has_customer, int64 customer_id)
{
	SearchLogSlot rec;
	SearchLogSlot *slot;
	char	   *filters = NULL;
	bool		due;

	/* the record, built outside the lock */
	memset(&rec, 0, offsetof(SearchLogSlot, query) + 1);
	rec.logrel = logrel;
	copy_clipped(rec.query, VARDATA_ANY(query), VARSIZE_ANY_EXHDR(query), SL_QUERY_BYTES);
	if (filters_jb != NULL)
	{
		filters = JsonbToCString(NULL, &filters_jb->root, VARSIZE(filters_jb));
		if (strlen(filters) < SL_FILTERS_BYTES)
			strcpy(rec.filters, filters);
		else
			rec.filters_cut = true;
	}
	else
		strcpy(rec.filters, "{}");
	copy_clipped(rec.sort, VARDATA_ANY(sort), VARSIZE_ANY_EXHDR(sort), SL_SORT_BYTES);
	rec.results = results;
	rec.duration_ms = duration_ms;
	rec.has_customer = has_customer;
	rec.customer_id = has_customer ? customer_id : 0;
	rec.logged_at = GetCurrentTransactionStartTimestamp();
	rec.dboid = MyDatabaseId;

	LWLockAcquire(search_log->lock, LW_EXCLUSIVE);
	rec.seq = search_log->next_seq++;
	slot = &search_log->slots[rec.seq % search_log->nslots];
	if (OidIsValid(slot->dboid))
		search_log->dropped++;
	else
		search_log->in_use++;
	memcpy(slot, &rec, offsetof(SearchLogSlot, query) + strlen(rec.query) + 1);
	due = search_log->in_use * 2 >= (uint64) search_log->nslots;
	LWLockRelease(search_log->lock);

	if (filters)
		pfree(filters);
	return due ? 1 : 0;
}

/*
 * shop._search_log_add(log, query, filters, sort, results, duration_ms,
 * customer_id) returns boolean (log: the OID of shop.search_log, so that
 * records of an install dropped since are never written into a new one): NULL when there is no ring (the caller
 * inserts the row itself), else whether half of the ring is in use (the
 * caller should flush).
 */
PG_FUNCTION_INFO_V1(shop_search_log_add);
Datum
shop_search_log_add(PG_FUNCTION_ARGS)
{
	int			due;

	if (search_log == NULL || search_log->nslots == 0)
		PG_RETURN_NULL();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(3) || PG_ARGISNULL(4) || PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("search log record needs query, sort, results and duration")));
	due = search_log_add(PG_GETARG_OID(0), PG_GETARG_TEXT_PP(1),
						 PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2),
						 PG_GETARG_TEXT_PP(3), PG_GETARG_INT32(4), PG_GETARG_FLOAT4(5),
						 !PG_ARGISNULL(6), PG_ARGISNULL(6) ? 0 : PG_GETARG_INT64(6));
	PG_RETURN_BOOL(due > 0);
}

/*
 * ShopSearchLogWrite: what shop._search_log_write does, for shop.search's
 * C (src/search/sssearch.c): nothing on a standby; the record into the
 * ring when there is one (also in a read-only transaction: a later flush
 * by a writer writes it out), flushing the ring when half of it is in
 * use; without a ring a row of shop.search_log.  Called in shop.search's
 * SECURITY DEFINER context.
 */
void
ShopSearchLogWrite(text *query, Jsonb *filters, text *sort, int32 results,
				   float4 duration_ms, bool has_customer, int64 customer_id)
{
	static ShopStmt st_insert = SHOP_STMT(SHOP_PLAN_GENERIC,
										  "INSERT INTO shop.search_log (query, query_folded, filters, sort, results, duration_ms, customer_id) "
										  "VALUES ($1, shop._search_fold($1), $2, $3, $4, $5, $6)",
										  TEXTOID, JSONBOID, TEXTOID, INT4OID, FLOAT4OID, INT8OID);
	static ShopStmt st_flush = SHOP_STMT0(SHOP_PLAN_GENERIC, "SELECT shop._search_log_flush()");
	int			due = -1;

	if (RecoveryInProgress())
		return;
	if (search_log != NULL && search_log->nslots > 0)
		due = search_log_add(ShopRelid("search_log", NULL), query, filters, sort, results,
							 duration_ms, has_customer, customer_id);
	if (XactReadOnly || due == 0)
		return;
	SPI_connect();
	if (due < 0)
	{
		Datum		args[6];
		char		nulls[6] = {' ', ' ', ' ', ' ', ' ', has_customer ? ' ' : 'n'};

		args[0] = PointerGetDatum(query);
		args[1] = PointerGetDatum(filters);
		args[2] = PointerGetDatum(sort);
		args[3] = Int32GetDatum(results);
		args[4] = Float4GetDatum(duration_ms);
		args[5] = Int64GetDatum(customer_id);
		ShopExec(&st_insert, args, nulls, 0);
	}
	else
		ShopExec(&st_flush, NULL, NULL, 0);
	SPI_finish();
}

/*
 * shop._search_log_take(log regclass, lim int, keep boolean) returns the
 * records of this database and install still in the ring, oldest first, at most lim (all when NULL),
 * and frees their slots unless keep (the monitors count them): (logged_at,
 * query, filters, sort, results, duration_ms, customer_id).  The caller inserts them; if its transaction aborts they
 * are lost (the documented loss window).
 */
PG_FUNCTION_INFO_V1(shop_search_log_take);
Datum
shop_search_log_take(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			logrel = PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0);
	int64		lim = PG_ARGISNULL(1) ? PG_INT64_MAX : PG_GETARG_INT32(1);
	bool		keep = !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);
	SearchLogSlot *copy;
	int			ncopy = 0;
	int			first;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (search_log == NULL || search_log->nslots == 0 || lim <= 0)
		PG_RETURN_VOID();

	LWLockAcquire(search_log->lock, keep ? LW_SHARED : LW_EXCLUSIVE);
	/*
	 * room for what can be there: the records waiting (every database's)
	 * bound this database's, so a flush of a few records or a monitor's
	 * count does not allocate the whole ring
	 */
	copy = palloc(sizeof(SearchLogSlot) * Max(Min((int64) search_log->in_use, lim), 1));
	/* oldest slot first: the one the next record would overwrite */
	first = (int) (search_log->next_seq % search_log->nslots);
	for (i = 0; i < search_log->nslots && ncopy < lim; i++)
	{
		SearchLogSlot *slot = &search_log->slots[(first + i) % search_log->nslots];

		if (slot->dboid != MyDatabaseId)
			continue;
		if (slot->logrel != logrel)
		{
			/* logged by an install of shop since dropped: discard */
			if (!keep)
			{
				slot->dboid = InvalidOid;
				search_log->in_use--;
				search_log->dropped++;
			}
			continue;
		}
		memcpy(&copy[ncopy++], slot, sizeof(SearchLogSlot));
		if (!keep)
		{
			slot->dboid = InvalidOid;
			search_log->in_use--;
		}
	}
	if (!keep)
		search_log->flushed += ncopy;
	LWLockRelease(search_log->lock);

	for (i = 0; i < ncopy; i++)
	{
		SearchLogSlot *r = &copy[i];
		Datum		values[7];
		bool		nulls[7] = {false, false, false, false, false, false, false};

		values[0] = TimestampTzGetDatum(r->logged_at);
		values[1] = CStringGetTextDatum(r->query);
		if (r->filters_cut)
			nulls[2] = true;
		else
			values[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(r->filters));
		values[3] = CStringGetTextDatum(r->sort);
		values[4] = Int32GetDatum(r->results);
		values[5] = Float4GetDatum(r->duration_ms);
		values[6] = Int64GetDatum(r->customer_id);
		nulls[6] = !r->has_customer;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pfree(copy);
	PG_RETURN_VOID();
}

/*
 * shop._search_log_stats() returns (capacity, buffered, dropped, flushed):
 * the ring's size, records waiting (every database), records overwritten
 * and records taken since the server started; NULLs without the ring.
 */
PG_FUNCTION_INFO_V1(shop_search_log_stats);
Datum
shop_search_log_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (search_log == NULL)
	{
		nulls[0] = nulls[1] = nulls[2] = nulls[3] = true;
	}
	else
	{
		LWLockAcquire(search_log->lock, LW_EXCLUSIVE);
		values[0] = Int64GetDatum(search_log->nslots);
		values[1] = Int64GetDatum((int64) search_log->in_use);
		values[2] = Int64GetDatum((int64) search_log->dropped);
		values[3] = Int64GetDatum((int64) search_log->flushed);
		LWLockRelease(search_log->lock);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
