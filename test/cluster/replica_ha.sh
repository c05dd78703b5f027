# replica_ha.sh (sourced by run.sh after replica.sh, whose reads, ro, rw
# and standby_caught_up it uses): the read route's fallbacks
# (docs/scale-out.md, "Read replicas", "A standby down" and "A standby
# behind"). A hot standby of shard cluster A again, and the server
# shop_cluster_ha whose p0 and p2 name two hosts, the standby first, with
# target_session_attrs=prefer-standby, and connection_lifetime 4 s.
#   - the standby killed (immediate) between two calls of a session: the
#     14 storefront reads of replica.sh answer as the primaries do, served by
#     the primary, and so do new sessions; a write goes on; a call made at
#     once after the kill on a connection used just before may fail once
#     (PL/Proxy's connection error), the next one answers; the standby
#     started again serves new sessions at once and the old session once
#     its connections are older than connection_lifetime;
#   - shop_router.read_max_lag: the standby's replay paused and a product
#     renamed on the primary: the router reads the new title (from the
#     primary) once the lag is over the setting, the old one without the
#     setting; a check kept for shop_router.read_lag_check keeps its route;
#     the replay resumed, the standby serves again;
#   - per partition and shared (shop_cluster_pp: p0 and p2 on the standby,
#     p1 and p3 on a read node that never lags): the replay paused, only
#     p0 and p2 read their primary; new sessions take the database's last
#     check (shop_router.read_state) and make none;
#   - the standby stopped with SIGSTOP: a call needing a new connection to
#     it ends at the router's statement_timeout (57014).
echo "== the read route's fallbacks: a standby down, a standby behind ($(date +%T))"
AS="$BASE/shards_a_standby"
trap 'cluster_stop "$AS" immediate; shop_cluster_down immediate' EXIT
shop_standby_up "$A" "$PA" "$AS"
PAS=$STANDBY_PORT
two_hosts() { echo "host=$AS,$A port=$PAS,$PA dbname=s$1 target_session_attrs=prefer-standby"; }
q "$R" "$PR" router <<SQL
CREATE SERVER shop_cluster_ha FOREIGN DATA WRAPPER plproxy
    OPTIONS (p0 '$(two_hosts 0)', p1 '${PART[1]}', p2 '$(two_hosts 2)', p3 '${PART[3]}',
             connection_lifetime '4');
CREATE USER MAPPING FOR PUBLIC SERVER shop_cluster_ha;
GRANT USAGE ON FOREIGN SERVER shop_cluster_ha TO shop_storefront, shop_admin;
-- test scaffolding: which node serves the read route's partitions p0 and
-- p2 (t: a standby), through the same cluster function as the read calls
CREATE FUNCTION public.route_standby(p int) RETURNS boolean LANGUAGE plproxy AS \$\$
    CLUSTER shop_router._read_cluster();
    RUN ON p;
    SELECT pg_is_in_recovery();
\$\$;
CREATE FUNCTION public.route() RETURNS text LANGUAGE sql AS \$\$
    SELECT 'route ' || public.route_standby(0) || ' ' || public.route_standby(2)
\$\$;
SQL
standby_caught_up
ha() { PGOPTIONS="-c client_min_messages=warning -c shop_router.read_cluster=shop_cluster_ha ${HA_OPTIONS:-}" q "$R" "$PR" router -At -U "$@"; }
stop_standby="\\! bash -c '. \"$TOP/scripts/pgenv.sh\"; cluster_stop \"$AS\" immediate'"
start_standby="\\! bash -c '. \"$TOP/scripts/pgenv.sh\"; cluster_start \"$AS\"'"

# A standby down: killed between two calls of a session, more than
# PL/Proxy's 2 s idle check after the connections' last use
ref=$(echo "$reads" | rw web)
got=$(ha web 2>"$BASE/ha.err" <<SQL
SELECT public.route();
$reads
$stop_standby
SELECT pg_sleep(2.2) \g /dev/null
$reads
SELECT public.route();
SQL
)
[ "$(echo "$got" | head -1)" = "route true true" ] ||
    { echo "FAIL: shop_cluster_ha did not start on the standby: $(echo "$got" | head -1)"; exit 1; }
[ "$(echo "$got" | sed -n 2,15p)" = "$ref" ] && [ "$(echo "$got" | sed -n 16,29p)" = "$ref" ] ||
    { echo "FAIL: the reads with the standby killed between two calls differ from the primaries':"
      diff <(echo "$ref") <(echo "$got" | sed -n 16,29p); cat "$BASE/ha.err"; exit 1; }
[ "$(echo "$got" | tail -1)" = "route false false" ] ||
    { echo "FAIL: with the standby down, p0 and p2 are not served by the primary: $(echo "$got" | tail -1)"; exit 1; }
echo "ok: the standby killed between two calls of a session: the 14 storefront reads answer as the primaries', served by the primary (p0 and p2)"
# new sessions, and a write, with the standby down
pid=$(rw backoffice -c "SELECT p FROM generate_series(41, 80) p WHERE hashint8(p) & 3 IN (0, 2) LIMIT 1")
title="Standby down $pid, renamed"
rw backoffice -c "SELECT shop.product_upsert('FX-$pid', '$title', 1234)" >/dev/null
got=$(printf '%s\n%s\n%s\n' "SELECT public.route();" "$reads" "SELECT shop.product_get($pid) ->> 'title';" | ha web)
ref=$(echo "$reads" | rw web)
[ "$(echo "$got" | head -1)" = "route false false" ] && [ "$(echo "$got" | sed -n 2,15p)" = "$ref" ] &&
    [ "$(echo "$got" | tail -1)" = "$title" ] ||
    { echo "FAIL: a new session with the standby down: $(echo "$got" | head -1), the write: $(echo "$got" | tail -1)"; exit 1; }
echo "ok: with the standby down, a new session's reads answer as the primaries' and a product_upsert through the router is read back at once"
# the standby back: new sessions at once, an open session once its
# connections are older than connection_lifetime (4 s)
got=$(ha web <<SQL
SELECT public.route();
$start_standby
SELECT pg_sleep(4.2) \g /dev/null
SELECT public.route();
SQL
)
standby_caught_up
[ "$(echo "$got" | tr '\n' ' ')" = "route false false route true true " ] ||
    { echo "FAIL: an open session did not return to the standby after connection_lifetime: $got"; exit 1; }
[ "$(echo "SELECT public.route();" | ha web)" = "route true true" ] ||
    { echo "FAIL: a new session with the standby back is not served by it"; exit 1; }
echo "ok: the standby back: new sessions are served by it, an open session once its connections are older than connection_lifetime"
# the standby killed just after a call: the next call on those connections
# may fail once (PL/Proxy's connection error), the one after answers from
# the primary
got=$(ha web -v ON_ERROR_STOP=0 2>"$BASE/ha.err" <<SQL
SELECT public.route();
$stop_standby
SELECT public.route();
SELECT public.route();
SELECT public.route();
SQL
)
[ "$(echo "$got" | head -1)" = "route true true" ] && [ "$(echo "$got" | tail -1)" = "route false false" ] ||
    { echo "FAIL: the calls after the standby was killed just after a call: $got"; cat "$BASE/ha.err"; exit 1; }
grep -q ERROR "$BASE/ha.err" && ! grep ERROR "$BASE/ha.err" | grep -qv "server closed the connection" &&
    echo "ok: the standby killed just after a call: the next calls failed once per connection with PL/Proxy's connection error ($(grep -c ERROR "$BASE/ha.err") errors), then answered from the primary" ||
    { grep -q ERROR "$BASE/ha.err" && { echo "FAIL: an error that is not the lost connection's:"; cat "$BASE/ha.err"; exit 1; }
      echo "ok: the standby killed just after a call: the next calls answered from the primary"; }
cluster_start "$AS"
standby_caught_up

# A standby behind: shop_router.read_max_lag. p0's product renamed on the
# primary while the standby's replay is paused.
pid=$(rw backoffice -c "SELECT p FROM generate_series(81, 120) p WHERE hashint8(p) & 3 = 0 LIMIT 1")
old=$(rw web -c "SELECT shop.product_get($pid) ->> 'title'")
new="Standby behind $pid, renamed by $$"
pause="\\! \"$PGBIN/psql\" -X -q -h \"$AS\" -p $PAS -U postgres -d postgres -c 'SELECT pg_wal_replay_pause()' -o /dev/null"
resume="\\! \"$PGBIN/psql\" -X -q -h \"$AS\" -p $PAS -U postgres -d postgres -c 'SELECT pg_wal_replay_resume()' -o /dev/null"
rename="\\! \"$PGBIN/psql\" -X -q -h \"$R\" -p $PR -U backoffice -d router -c \"SELECT shop.product_upsert('FX-$pid', '$new', 1234)\" -o /dev/null"
# the session checks at its first call (the standby is fine) and keeps that
# for read_lag_check (an hour), so it still reads the standby after the
# rename; checked at each call (read_lag_check = 0), the primary
got=$(HA_OPTIONS="-c shop_router.read_max_lag=1s -c shop_router.read_lag_check=1h" ha web <<SQL
SELECT public.route(), shop.product_get($pid) ->> 'title';
$pause
$rename
SELECT pg_sleep(1.2) \g /dev/null
SELECT public.route(), shop.product_get($pid) ->> 'title';
SET shop_router.read_lag_check = '0';
SELECT public.route(), shop.product_get($pid) ->> 'title';
SET shop_router.read_max_lag = '';
SELECT public.route(), shop.product_get($pid) ->> 'title';
$resume
SQL
)
[ "$got" = "route true true|$old
route true true|$old
route false false|$new
route true true|$old" ] || { echo "FAIL: read_max_lag with the replay paused and a rename on the primary:"; echo "$got"; exit 1; }
echo "ok: read_max_lag = 1s: the standby's replay paused, a product renamed on the primary: checked again, the router reads the new title from the primary (the check kept for read_lag_check = 1h read the standby's old one, as does the route without the setting)"
standby_caught_up
# (checked again: the shared check of the paused replay is younger than the
# default read_lag_check, 5 s)
got=$(HA_OPTIONS="-c shop_router.read_max_lag=1s -c shop_router.read_lag_check=0" ha web -c "SELECT public.route(), shop.product_get($pid) ->> 'title'")
[ "$got" = "route true true|$new" ] || { echo "FAIL: the replay resumed, read_max_lag = 1s: $got"; exit 1; }
echo "ok: the replay resumed, read_max_lag = 1s: the standby serves again, with the new title"
got=$(HA_OPTIONS="-c shop_router.read_max_lag=soon" ha web -c "\\set VERBOSITY sqlstate" -c "SELECT shop.stock_available(1)" 2>&1 || true)
[ "$got" = "ERROR:  22023" ] || { echo "FAIL: read_max_lag = soon: $got"; exit 1; }
echo "ok: read_max_lag that is not an interval: 22023"

# Per partition, and shared (issue 16): a server shop_cluster_pp whose p0
# and p2 name the standby and p1 and p3 cluster B's primaries under another
# connection string (application_name=ro: a read node that never lags).
# The replay paused: only p0 and p2 read their primaries, p1 and p3 stay
# on their read node (before: every partition on shop_cluster); the check
# is shared: three new sessions with read_lag_check = 1h take the last
# check of the database and make none of their own.
q "$R" "$PR" router <<SQL
CREATE SERVER shop_cluster_pp FOREIGN DATA WRAPPER plproxy
    OPTIONS (p0 'host=$AS port=$PAS dbname=s0', p1 '${PART[1]} application_name=ro',
             p2 'host=$AS port=$PAS dbname=s2', p3 '${PART[3]} application_name=ro');
CREATE USER MAPPING FOR PUBLIC SERVER shop_cluster_pp;
GRANT USAGE ON FOREIGN SERVER shop_cluster_pp TO shop_storefront, shop_admin;
CREATE FUNCTION public.route_node(p int) RETURNS text LANGUAGE plproxy AS \$\$
    CLUSTER shop_router._read_cluster();
    RUN ON p;
    SELECT CASE WHEN pg_is_in_recovery() THEN 'standby'
                WHEN current_setting('application_name') = 'ro' THEN 'ro' ELSE 'primary' END;
\$\$;
CREATE FUNCTION public.route4() RETURNS text LANGUAGE sql AS \$\$
    SELECT concat_ws(' ', public.route_node(0), public.route_node(1), public.route_node(2), public.route_node(3))
\$\$;
SQL
pp() { PGOPTIONS="-c client_min_messages=warning -c shop_router.read_cluster=shop_cluster_pp -c shop_router.read_max_lag=1s ${PP_OPTIONS:-}" q "$R" "$PR" router -At -U web "$@"; }
checks() { q "$R" "$PR" router -At -c "SELECT coalesce(sum(checks), 0) FROM shop_router.read_state WHERE cluster = 'shop_cluster_pp'"; }
pid=$(rw backoffice -c "SELECT p FROM generate_series(121, 160) p WHERE hashint8(p) & 3 = 0 LIMIT 1")
new="Partition behind $pid, renamed by $$"
rename="\\! \"$PGBIN/psql\" -X -q -h \"$R\" -p $PR -U backoffice -d router -c \"SELECT shop.product_upsert('FX-$pid', '$new', 1234)\" -o /dev/null"
got=$(PP_OPTIONS="-c shop_router.read_lag_check=0" pp <<SQL
SELECT public.route4();
$pause
$rename
SELECT pg_sleep(1.2) \g /dev/null
SELECT public.route4(), shop.product_get($pid) ->> 'title';
SQL
)
[ "$got" = "standby ro standby ro
primary ro primary ro|$new" ] || { echo "FAIL: read_max_lag per partition, p0 and p2's standby paused:"; echo "$got"; exit 1; }
echo "ok: read_max_lag per partition: the standby of p0 and p2 paused, their reads go to the primary (new title) and p1 and p3 stay on their read node"
c0=$(checks)
for _ in 1 2 3; do
    got=$(PP_OPTIONS="-c shop_router.read_lag_check=1h" pp -c "SELECT public.route4()")
    [ "$got" = "primary ro primary ro" ] || { echo "FAIL: a new session with the shared check: $got"; exit 1; }
done
[ "$(checks)" = "$c0" ] || { echo "FAIL: new sessions checked again ($c0 -> $(checks) checks) instead of sharing the last"; exit 1; }
echo "ok: the check is shared: 3 new sessions took the router database's last check ($c0 checks so far) and made none"
# the steps the storefront may call make and record only a read
# cluster's routes
got=$(q "$R" "$PR" router -U web -At -v ON_ERROR_STOP=0 -c "\\set VERBOSITY sqlstate" \
      -c "SELECT shop_router._read_server('shop_cluster_pp', '{7}')" \
      -c "SELECT shop_router._read_state_put('shop_cluster_pp', '1s', 'shop_cluster_ha', '{}', now())" \
      -c "SELECT route FROM shop_router.read_state WHERE cluster = 'shop_cluster_pp' AND max_lag = '1s'" 2>&1 || true)
[ "$got" = "ERROR:  22023

shop_cluster_pp_lag_5" ] || { echo "FAIL: a storefront naming another partition or route: $got"; exit 1; }
echo "ok: a storefront cannot make a route of partitions its read cluster does not have (22023) nor record another server as a route"
psql_standby() { "$PGBIN/psql" -X -q -h "$AS" -p $PAS -U postgres -d postgres "$@"; }
psql_standby -c 'SELECT pg_wal_replay_resume()' -o /dev/null
standby_caught_up
got=$(PP_OPTIONS="-c shop_router.read_lag_check=0" pp -c "SELECT public.route4(), shop.product_get($pid) ->> 'title'")
[ "$got" = "standby ro standby ro|$new" ] || { echo "FAIL: the replay resumed, per partition: $got"; exit 1; }
echo "ok: the replay resumed: p0 and p2 read the standby again"

# A standby that does not answer (issue 16): every process of the standby
# stopped (SIGSTOP), so the kernel accepts connections to it and nothing
# answers. PL/Proxy connects without a time limit (libpq's connect_timeout
# does not apply to its asynchronous connect: a p0 with connect_timeout=2
# waited the whole statement_timeout, docs/scale-out.md): a new session's
# call ends at the router's statement_timeout (57014, 3 s here) instead of
# waiting for ever, and the session's next call, on p1 and p3 only,
# answers (PL/Proxy dropped the unfinished connections). After SIGCONT
# new sessions read the standby again.
standby_signal() {   # STOP or CONT, the postmaster and its children
    local pm
    pm=$(head -1 "$AS/data/postmaster.pid")
    # shellcheck disable=SC2046
    kill -"$1" "$pm" $(ps -o pid= --ppid "$pm")
}
trap 'standby_signal CONT || true; cluster_stop "$AS" immediate; shop_cluster_down immediate' EXIT
standby_signal STOP
got=$(PGOPTIONS="-c shop_router.read_cluster=shop_cluster_pp -c statement_timeout=3s" q "$R" "$PR" router -At -U web \
      -v ON_ERROR_STOP=0 -c "\\set VERBOSITY sqlstate" -c "SELECT public.route4()" \
      -c "SELECT public.route_node(1) || ' ' || public.route_node(3)" 2>&1 || true)
standby_signal CONT
trap 'cluster_stop "$AS" immediate; shop_cluster_down immediate' EXIT
[ "$got" = "ERROR:  57014
ro ro" ] || { echo "FAIL: a new connection to the stopped standby (SIGSTOP), statement_timeout = 3s: $got"; exit 1; }
echo "ok: the standby stopped (SIGSTOP): a call needing a new connection to it ends at the router's statement_timeout (57014), the session's next call on p1 and p3 answers"
standby_caught_up
got=$(PP_OPTIONS="-c shop_router.read_lag_check=0" pp -c "SELECT public.route4()")
[ "$got" = "standby ro standby ro" ] || { echo "FAIL: the standby continued (SIGCONT): $got"; exit 1; }
echo "ok: the standby continued (SIGCONT): p0 and p2 read it again"
q "$R" "$PR" router -c "DROP FUNCTION public.route(), public.route_standby(int), public.route4(), public.route_node(int)"
cluster_stop "$AS" immediate
trap 'shop_cluster_down immediate' EXIT
