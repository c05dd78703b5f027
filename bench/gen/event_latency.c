/*
 * event_latency.c: how long after its commit a listener of shop_events is
 * woken (bench/workloads/events.sh).
 *
 *   event_latency SECONDS INTERVAL_MS
 *
 * Connects twice with the usual PG* environment.  The listener thread
 * LISTENs on shop_events and notes, for each notification, when it arrived
 * and the "last_event_id" (batch mode) or "event_id" (each mode) it names.
 * The main thread, every INTERVAL_MS for SECONDS, emits one event in a
 * transaction of its own (SELECT shop._emit(...)) and notes when COMMIT
 * returned.  An event's wake-up latency is the arrival of the first
 * notification naming it or a later event, minus its commit.  Prints one
 * line: "events N woken M p50_ms X p95_ms Y p99_ms Z max_ms W".
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include <libpq-fe.h>

#define MAX_EVENTS 100000
#define MAX_NOTES 1000000

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static long long ev_id[MAX_EVENTS];
static double ev_commit[MAX_EVENTS];
static int nev;

static long long note_id[MAX_NOTES];
static double note_at[MAX_NOTES];
static volatile int nnote;
static volatile int stop;

static void
die(PGconn *c, const char *what)
{
	fprintf(stderr, "event_latency: %s: %s", what, c ? PQerrorMessage(c) : "\n");
	exit(1);
}

/* the id a notification names: "last_event_id" or else "event_id" */
static long long
note_event(const char *payload)
{
	const char *p = strstr(payload, "\"last_event_id\":");

	if (p == NULL)
		p = strstr(payload, "\"event_id\":");
	if (p == NULL)
		return -1;
	p = strchr(p, ':') + 1;
	return atoll(p);
}

static void *
listener(void *arg)
{
	PGconn	   *c = (PGconn *) arg;
	int			sock = PQsocket(c);

	while (!stop)
	{
		fd_set		in;
		struct timeval tv = {0, 100000};
		PGnotify   *n;

		FD_ZERO(&in);
		FD_SET(sock, &in);
		if (select(sock + 1, &in, NULL, NULL, &tv) < 0 && errno != EINTR)
			die(NULL, "select failed");
		if (!PQconsumeInput(c))
			die(c, "listener lost its connection");
		while ((n = PQnotifies(c)) != NULL)
		{
			double		at = now_ms();

			if (nnote < MAX_NOTES)
			{
				note_id[nnote] = note_event(n->extra);
				note_at[nnote] = at;
				nnote++;
			}
			PQfreemem(n);
		}
	}
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	double		secs = argc > 1 ? atof(argv[1]) : 10;
	double		interval = argc > 2 ? atof(argv[2]) : 5;
	PGconn	   *lc = PQconnectdb("");
	PGconn	   *ec = PQconnectdb("");
	PGresult   *r;
	pthread_t	th;
	double		end;
	double	   *lat;
	int			nlat = 0;
	int			k = 0;

	if (PQstatus(lc) != CONNECTION_OK)
		die(lc, "connect");
	if (PQstatus(ec) != CONNECTION_OK)
		die(ec, "connect");
	r = PQexec(lc, "LISTEN shop_events");
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die(lc, "LISTEN");
	PQclear(r);
	pthread_create(&th, NULL, listener, lc);

	end = now_ms() + secs * 1000;
	while (now_ms() < end && nev < MAX_EVENTS)
	{
		double		t0 = now_ms();

		r = PQexec(ec, "SELECT shop._emit('bench.latency', '{}')");
		if (PQresultStatus(r) != PGRES_TUPLES_OK)
			die(ec, "emit");
		ev_id[nev] = atoll(PQgetvalue(r, 0, 0));
		PQclear(r);
		ev_commit[nev] = now_ms();
		nev++;
		while (now_ms() < t0 + interval)
		{
			struct timespec ts = {0, 200000};

			nanosleep(&ts, NULL);
		}
	}
	/* the last notifications */
	{
		struct timespec ts = {1, 0};

		nanosleep(&ts, NULL);
	}
	stop = 1;
	pthread_join(th, NULL);

	/* events in order of id and notifications in order of arrival: merge */
	lat = malloc(sizeof(double) * (nev > 0 ? nev : 1));
	for (int i = 0; i < nev; i++)
	{
		while (k < nnote && (note_id[k] < ev_id[i] || note_at[k] < ev_commit[i] - 1000))
			k++;
		if (k == nnote)
			break;
		lat[nlat++] = note_at[k] - ev_commit[i] < 0 ? 0 : note_at[k] - ev_commit[i];
	}
	qsort(lat, nlat, sizeof(double), cmp_double);
#define PCT(p) (nlat ? lat[(int) ((p) * (nlat - 1) + 0.5)] : -1)
	printf("events %d woken %d p50_ms %.2f p95_ms %.2f p99_ms %.2f max_ms %.2f\n",
		   nev, nlat, PCT(0.5), PCT(0.95), PCT(0.99), nlat ? lat[nlat - 1] : -1.0);
	PQfinish(lc);
	PQfinish(ec);
	return 0;
}
