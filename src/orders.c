/*-------------------------------------------------------------------------
 *
 * orders.c
 *	  Checkout, the order state machine and the payment calls that move
 *	  orders: shop.checkout, shop.order_transition, shop.order_ship,
 *	  shop.order_review, shop.payment_confirm, shop.payment_fail.
 *
 * The state machine (docs/orders.md; nothing else is allowed):
 *
 *     pending ---> paid ---> fulfilling ---> shipped ---> delivered
 *        |           |            |                          |
 *        +-----------+------------+--> cancelled          returned
 *                                         |                  |
 *                                         +--> refunded <----+
 *                          (cancelled -> refunded only if it had been paid)
 *
 * Side effects happen in the transaction of the transition:
 *   -> paid        payments pending/authorized become captured; the stock
 *                  holds of a pending order are made permanent (they must
 *                  still be held, or SH001: the gateway payment has to be
 *                  voided);
 *   -> cancelled   holds are released; uncaptured payments are voided;
 *   -> shipped     holds are committed (stock leaves), carrier and tracking
 *                  are recorded;
 *   -> returned    every line is put back with shop.stock_adjust;
 *   -> refunded    captured payments become refunded;
 *   -> fulfilling  refused while the order waits for fraud review.
 * Each transition bumps order.event_count, appends shop.order_event
 * (seq = event_count) and emits "order.<status>" to the outbox.  The next
 * seq also looks past the events already there, so orders imported with a
 * history of their own (and event_count left at 0) move on safely.
 *
 * Locking: every call starts by locking its order row (SELECT ... FOR
 * UPDATE), so transitions of one order are serialized and each one sees
 * the state the previous one committed (pay against cancel: whoever comes
 * second sees the first one's result and is judged by the table above).
 *
 * Checkout, in one transaction:
 *   1. lock the cart row (concurrent checkouts of one cart queue here);
 *   2. claim the idempotency key: INSERT ... ON CONFLICT DO NOTHING into
 *      shop.idempotency.  A second call with the same key blocks on the
 *      first one's uncommitted row; when the first commits it finds the row
 *      and returns its order (or SH003 when its fingerprint of cart, token
 *      and address differs), when the first rolls back it proceeds itself.
 *      Under REPEATABLE READ it gets 40001 instead, which is retryable;
 *   3. read the cart lines with the products' current state and prices
 *      (SH007 empty, SH008 inactive);
 *   4. reserve every line at once with shop.reserve_many (all or nothing,
 *      SH001);
 *   5. shipping and tax (shop.shipping_rate, shop.tax_rate), fraud score;
 *   6. authorize: the test provider decides now (a decline raises SH004,
 *      which rolls everything back); a gateway token leaves the order
 *      pending with its holds for shop.reservation_ttl;
 *   7. write the order, its lines (snapshots), payment, first event and
 *      the "order.created" event; with an authorized payment, transition
 *      to paid;
 *   8. remove the ordered lines from the cart (saved-for-later lines stay).
 * The idempotency row names the order from the start: nobody sees either
 * before the transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "shop.h"

PG_FUNCTION_INFO_V1(shop_checkout);
PG_FUNCTION_INFO_V1(shop_order_transition);
PG_FUNCTION_INFO_V1(shop_order_ship);
PG_FUNCTION_INFO_V1(shop_order_review);
PG_FUNCTION_INFO_V1(shop_payment_confirm);
PG_FUNCTION_INFO_V1(shop_payment_fail);

#define SHOP_MAX_CART_LINES 500

/*
 * Prepared statements, planned once per backend (SPI_keepplan).
 */
typedef struct ShopStmt
{
	const char *sql;
	int			nargs;
	Oid			types[32];
	SPIPlanPtr	plan;
} ShopStmt;

static int
run(ShopStmt *s, Datum *args, const char *nulls, long count)
{
	int			rc;

	if (s->plan == NULL)
	{
		/*
		 * Generic plans: every statement here is keyed by primary or
		 * foreign keys, so a custom plan is never better, and the plan
		 * cache would otherwise keep re-planning the larger ones (the
		 * checkout CTE) on every call.
		 */
		SPIPlanPtr	p = SPI_prepare_cursor(s->sql, s->nargs, s->types, CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed (%s): %s", SPI_result_code_string(SPI_result), s->sql);
		SPI_keepplan(p);
		s->plan = p;
	}
	rc = SPI_execute_plan(s->plan, args, nulls, false, count);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed (%s): %s", SPI_result_code_string(rc), s->sql);
	return rc;
}

/* column n (1-based) of result row i */
static inline Datum
col(uint64 i, int n, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, n, isnull);
}

static inline char *
col_text(uint64 i, int n)
{
	bool		isnull;
	Datum		d = col(i, n, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static ShopStmt st_cart_lock = {
	"SELECT customer_id, status, expires_at > now(), merged_into, expires_at"
	"  FROM shop.cart WHERE cart_id = $1 FOR UPDATE", 1, {UUIDOID}};
static ShopStmt st_idem_claim = {
	"INSERT INTO shop.idempotency (scope, key, fingerprint, order_id) VALUES ($1, $2, md5($3), $4)"
	" ON CONFLICT (scope, key) DO NOTHING", 4, {TEXTOID, TEXTOID, TEXTOID, UUIDOID}};
static ShopStmt st_idem_get = {
	"SELECT fingerprint = md5($3), order_id FROM shop.idempotency WHERE scope = $1 AND key = $2",
	3, {TEXTOID, TEXTOID, TEXTOID}};
static ShopStmt st_cart_lines = {
	"SELECT ci.product_id, ci.qty, p.sku, p.title, p.price_cents, p.status"
	"  FROM shop.cart_item ci LEFT JOIN shop.product p ON p.product_id = ci.product_id"
	" WHERE ci.cart_id = $1 AND NOT ci.saved_for_later ORDER BY ci.product_id", 1, {UUIDOID}};
static ShopStmt st_reserve = {
	"SELECT shop.reserve_many($1::jsonb, $2, make_interval(secs => $3))",
	3, {TEXTOID, TEXTOID, FLOAT8OID}};
/*
 * Money and risk in one round: shipping and tax (the rules of
 * shop._shipping_cents and shop._tax_cents, written out here because a SQL
 * function called from a saved plan is parsed again on every call), and
 * the inputs of the fraud rules.
 */
static ShopStmt st_money_risk = {
	"SELECT coalesce((SELECT r.cents FROM shop.shipping_rate r"
	"                  WHERE (r.country IS NULL OR r.country = upper($2->>'country'))"
	"                    AND r.min_subtotal_cents <= $1"
	"                  ORDER BY r.country IS NULL, r.min_subtotal_cents DESC LIMIT 1), 0),"
	"       coalesce((SELECT round($1::numeric * r.basis_points / 10000)::bigint FROM shop.tax_rate r"
	"                  WHERE (r.country IS NULL OR r.country = upper($2->>'country'))"
	"                    AND (r.region IS NULL OR r.region = coalesce($2->>'region', $2->>'state'))"
	"                  ORDER BY r.country IS NULL, r.region IS NULL LIMIT 1), 0),"
	"       (SELECT count(*) FROM shop.\"order\" o"
	"         WHERE o.customer_id = $3 AND o.created_at > now() - interval '1 hour'),"
	"       (SELECT count(*) FROM shop.payment p"
	"         WHERE $4 IS NOT NULL AND p.token = $4 AND p.created_at > now() - interval '1 hour'),"
	"       h.n, h.avg"
	"  FROM (SELECT count(*) AS n, coalesce(avg(l.total_cents), 0)::float8 AS avg"
	"          FROM (SELECT o.total_cents FROM shop.\"order\" o"
	"                 WHERE o.customer_id = $3 AND o.was_paid"
	"                 ORDER BY o.created_at DESC LIMIT 50) l) h",
	4, {INT8OID, JSONBOID, INT8OID, TEXTOID}};
/*
 * Every write of a checkout in one statement.  An order the test provider
 * authorized is inserted as paid (events 1 pending and 2 paid) and its holds
 * are made permanent here, on the rows reserve_many just created in this
 * transaction; a gateway order stays pending with holds that expire.
 */
static ShopStmt st_place = {
	"WITH o AS ("
	"  INSERT INTO shop.\"order\" (order_id, customer_id, cart_id, status, currency, subtotal_cents,"
	"         shipping_cents, tax_cents, total_cents, shipping_address, fraud_score, fraud_reasons,"
	"         needs_review, was_paid, idempotency_key, event_count)"
	"  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $4 = 'paid', $14,"
	"          CASE WHEN $4 = 'paid' THEN 2 ELSE 1 END)),"
	" l AS ("
	"  INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty,"
	"         reservation_id)"
	"  SELECT $1, u.n, u.pid, u.sku, u.title, u.price, u.qty, u.rid"
	"    FROM unnest($16::bigint[], $17::text[], $18::text[], $19::bigint[], $20::int[], $15::uuid[])"
	"         WITH ORDINALITY AS u(pid, sku, title, price, qty, rid, n)),"
	" p AS ("
	"  INSERT INTO shop.payment (order_id, provider, token, card_brand, last4, status, amount_cents,"
	"         fraud_score)"
	"  SELECT $1, $21, $22, coalesce(m.brand, $23), coalesce(m.last4, $24), $25, $9, $11"
	"    FROM (SELECT 1) one LEFT JOIN LATERAL"
	"         (SELECT pm.brand, pm.last4 FROM shop.payment_method pm"
	"           WHERE pm.customer_id = $2 AND pm.token = $22) m ON true),"
	" e AS ("
	"  INSERT INTO shop.order_event (order_id, seq, from_status, to_status, note)"
	"  SELECT $1, 1, NULL, 'pending', $26"
	"  UNION ALL SELECT $1, 2, 'pending', 'paid', $27 WHERE $4 = 'paid'),"
	" h AS ("
	"  UPDATE shop.reservation SET expires_at = 'infinity'"
	"   WHERE $4 = 'paid' AND reservation_id = ANY ($15) AND status = 'held'),"
	" ci AS (DELETE FROM shop.cart_item WHERE cart_id = $3 AND NOT saved_for_later),"
	" c AS (UPDATE shop.cart SET updated_at = now(), expires_at = $28 WHERE cart_id = $3)"
	" SELECT shop._emit('order.created', jsonb_build_object('order_id', $1, 'customer_id', $2,"
	"               'status', $4, 'total_cents', $9, 'currency', $5, 'needs_review', $13)),"
	"        CASE WHEN $4 = 'paid' THEN"
	"          shop._emit('order.paid', jsonb_build_object('order_id', $1, 'customer_id', $2,"
	"               'from', 'pending', 'to', 'paid', 'note', $27, 'total_cents', $9)) END",
	28, {UUIDOID, INT8OID, UUIDOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, JSONBOID,
		FLOAT4OID, TEXTARRAYOID, BOOLOID, TEXTOID, UUIDARRAYOID, INT8ARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, INT8ARRAYOID, INT4ARRAYOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, TIMESTAMPTZOID}};

static ShopStmt st_event_ins = {
	"INSERT INTO shop.order_event (order_id, seq, from_status, to_status, note)"
	" VALUES ($1, $2, $3, $4, $5)", 5, {UUIDOID, INT4OID, TEXTOID, TEXTOID, TEXTOID}};

static ShopStmt st_order_lock = {
	"SELECT o.status, o.was_paid, o.needs_review,"
	"       (SELECT count(*) FROM shop.order_line l"
	"         WHERE l.order_id = o.order_id AND l.reservation_id IS NOT NULL),"
	"       o.customer_id, o.total_cents"
	"  FROM shop.\"order\" o WHERE o.order_id = $1 FOR UPDATE OF o", 1, {UUIDOID}};
static ShopStmt st_holds_live = {
	"SELECT count(DISTINCT l.line_no) FROM shop.order_line l"
	"  JOIN shop.reservation r ON r.product_id = l.product_id AND r.reservation_id = l.reservation_id"
	" WHERE l.order_id = $1 AND r.status = 'held'", 1, {UUIDOID}};
static ShopStmt st_holds_extend = {
	"SELECT shop.reservation_extend(l.reservation_id, NULL) FROM shop.order_line l"
	" WHERE l.order_id = $1 AND l.reservation_id IS NOT NULL ORDER BY l.product_id", 1, {UUIDOID}};
static ShopStmt st_release = {
	"SELECT shop.reservation_release(l.reservation_id) FROM shop.order_line l"
	" WHERE l.order_id = $1 AND l.reservation_id IS NOT NULL ORDER BY l.product_id", 1, {UUIDOID}};
static ShopStmt st_commit = {
	"SELECT shop.reservation_commit(l.reservation_id) FROM shop.order_line l"
	" WHERE l.order_id = $1 AND l.reservation_id IS NOT NULL ORDER BY l.product_id", 1, {UUIDOID}};
static ShopStmt st_restock = {
	"SELECT shop.stock_adjust(l.product_id, l.qty, 'return of order ' || $1::text)"
	"  FROM shop.order_line l WHERE l.order_id = $1 ORDER BY l.product_id", 1, {UUIDOID}};
static ShopStmt st_pay_status = {
	"UPDATE shop.payment SET status = $2, updated_at = now()"
	" WHERE order_id = $1 AND status = ANY ($3)", 3, {UUIDOID, TEXTOID, TEXTARRAYOID}};
static ShopStmt st_order_upd = {
	"UPDATE shop.\"order\" SET status = $2, was_paid = was_paid OR $2 = 'paid',"
	"       carrier = coalesce($3, carrier), tracking_number = coalesce($4, tracking_number),"
	"       shipped_at = CASE WHEN $2 = 'shipped' THEN now() ELSE shipped_at END,"
	"       event_count = greatest(event_count, (SELECT max(e.seq) FROM shop.order_event e"
	"                                            WHERE e.order_id = $1)) + 1,"
	"       updated_at = now()"
	" WHERE order_id = $1 RETURNING event_count", 4, {UUIDOID, TEXTOID, TEXTOID, TEXTOID}};
static ShopStmt st_emit_transition = {
	"SELECT shop._emit('order.' || $4, jsonb_build_object('order_id', $1, 'customer_id', $2,"
	"       'from', $3, 'to', $4, 'note', $5, 'total_cents', $6))",
	6, {UUIDOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID}};
static ShopStmt st_review_clear = {
	"UPDATE shop.\"order\" SET needs_review = false, updated_at = now(),"
	"       event_count = greatest(event_count, (SELECT max(e.seq) FROM shop.order_event e"
	"                                            WHERE e.order_id = $1)) + 1"
	" WHERE order_id = $1 RETURNING event_count, status, customer_id, total_cents", 1, {UUIDOID}};
static ShopStmt st_emit_review = {
	"SELECT shop._emit('order.review_approved', jsonb_build_object('order_id', $1, 'customer_id', $2,"
	"       'status', $3, 'total_cents', $4))", 4, {UUIDOID, INT8OID, TEXTOID, INT8OID}};
static ShopStmt st_pay_confirm = {
	"UPDATE shop.payment SET status = 'captured', provider_ref = $2, updated_at = now()"
	" WHERE order_id = $1 AND status = 'pending' RETURNING provider", 2, {UUIDOID, TEXTOID}};
static ShopStmt st_pay_confirmed = {
	"SELECT 1 FROM shop.payment WHERE order_id = $1 AND status = 'captured' AND provider_ref = $2",
	2, {UUIDOID, TEXTOID}};
static ShopStmt st_pay_fail = {
	"UPDATE shop.payment SET status = 'failed', failure_reason = $2, updated_at = now()"
	" WHERE order_id = $1 AND status = 'pending' RETURNING provider", 2, {UUIDOID, TEXTOID}};
static ShopStmt st_pay_failed = {
	"SELECT 1 FROM shop.payment WHERE order_id = $1 AND status = 'failed'", 1, {UUIDOID}};
/* the payment.failures alert of the operations section (docs/operations.md) */
static ShopStmt st_check_failures = {
	"SELECT shop._check_payment_failures()", 0, {InvalidOid}};
static ShopStmt st_emit_payfail = {
	"SELECT shop._emit('payment.failed', jsonb_build_object('order_id', $1, 'provider', $2,"
	"       'reason', $3))", 3, {UUIDOID, TEXTOID, TEXTOID}};

/* ---------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------
 */

static void
require_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument %s must not be null", name)));
}

static char *
uuid_str(Datum u)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, u));
}

/* A fresh version 4 uuid (what gen_random_uuid() makes). */
static Datum
new_uuid(void)
{
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

	if (!pg_strong_random(u->data, UUID_LEN))
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not generate random values")));
	u->data[6] = (u->data[6] & 0x0f) | 0x40;
	u->data[8] = (u->data[8] & 0x3f) | 0x80;
	return UUIDPGetDatum(u);
}

static Datum
text_array(const char *const *items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * (n > 0 ? n : 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* ---------------------------------------------------------------------
 * The state machine
 * ---------------------------------------------------------------------
 */

static const char *const order_states[] = {
	"pending", "paid", "fulfilling", "shipped", "delivered", "returned", "refunded", "cancelled"
};

static const char *
allowed_next(const char *from)
{
	if (strcmp(from, "pending") == 0)
		return "paid, cancelled";
	if (strcmp(from, "paid") == 0)
		return "fulfilling, cancelled";
	if (strcmp(from, "fulfilling") == 0)
		return "shipped, cancelled";
	if (strcmp(from, "shipped") == 0)
		return "delivered";
	if (strcmp(from, "delivered") == 0)
		return "returned";
	if (strcmp(from, "returned") == 0)
		return "refunded";
	if (strcmp(from, "cancelled") == 0)
		return "refunded (if it had been paid)";
	return "none";
}

static bool
transition_allowed(const char *from, const char *to)
{
#define T(a, b) (strcmp(from, a) == 0 && strcmp(to, b) == 0)
	return T("pending", "paid") || T("pending", "cancelled") ||
		T("paid", "fulfilling") || T("paid", "cancelled") ||
		T("fulfilling", "shipped") || T("fulfilling", "cancelled") ||
		T("shipped", "delivered") ||
		T("delivered", "returned") ||
		T("returned", "refunded") ||
		T("cancelled", "refunded");
#undef T
}

static void
check_status_name(const char *to)
{
	for (int i = 0; i < lengthof(order_states); i++)
		if (strcmp(order_states[i], to) == 0)
			return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown order status \"%s\"", to),
			 errdetail("An order status is one of pending, paid, fulfilling, shipped, delivered, returned, refunded, cancelled.")));
}

static void
invalid_transition(Datum order_id, const char *from, const char *to, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_SHOP_INVALID_TRANSITION),
			 errmsg("invalid order transition from %s to %s", from, to),
			 detail ? errdetail("%s", detail)
			 : errdetail("Order %s is %s; it can become: %s.", uuid_str(order_id), from, allowed_next(from))));
}

/* Lock an order row; SH006 when there is none.  Leaves the row in SPI_tuptable. */
static void
lock_order(Datum order_id)
{
	Datum		args[1] = {order_id};

	run(&st_order_lock, args, NULL, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_NOT_FOUND),
				 errmsg("order not found"),
				 errdetail("No order has order_id %s.", uuid_str(order_id))));
}

/*
 * ShopOrderTransition: apply one transition with its side effects, event
 * and outbox message.  SPI must be connected.  holds_fresh: the holds were
 * made by this transaction for good (checkout with an authorized payment),
 * so "paid" need not check or extend them.
 */
void
ShopOrderTransition(Datum order_id, const char *to, const char *note,
					const char *carrier, const char *tracking, bool holds_fresh)
{
	char	   *from;
	bool		was_paid,
				needs_review,
				isnull,
				cust_null;
	Datum		customer,
				total;
	int64		nholds;
	Datum		args[6];
	char		nulls[6];
	int32		seq;

	check_status_name(to);
	lock_order(order_id);
	from = col_text(0, 1);
	was_paid = DatumGetBool(col(0, 2, &isnull));
	needs_review = DatumGetBool(col(0, 3, &isnull));
	nholds = DatumGetInt64(col(0, 4, &isnull));
	customer = col(0, 5, &cust_null);
	total = col(0, 6, &isnull);

	if (!transition_allowed(from, to))
		invalid_transition(order_id, from, to, NULL);
	if (strcmp(to, "fulfilling") == 0 && needs_review)
		invalid_transition(order_id, from, to,
						   psprintf("Order %s awaits fraud review; approve it with shop.order_review first.",
									uuid_str(order_id)));
	if (strcmp(from, "cancelled") == 0 && !was_paid)
		invalid_transition(order_id, from, to,
						   psprintf("Order %s was cancelled before it was paid; there is nothing to refund.",
									uuid_str(order_id)));

	/* side effects */
	args[0] = order_id;
	if (strcmp(to, "paid") == 0)
	{
		if (nholds > 0 && !holds_fresh)
		{
			run(&st_holds_live, args, NULL, 1);
			if (DatumGetInt64(col(0, 1, &isnull)) < nholds)
				ereport(ERROR,
						(errcode(ERRCODE_SHOP_INSUFFICIENT_STOCK),
						 errmsg("stock holds of the order are gone"),
						 errdetail("The stock holds of order %s expired or were released before payment.",
								   uuid_str(order_id)),
						 errhint("Void or refund the payment at the gateway, and cancel the order.")));
		}
		/* a paid order keeps its stock until shipped or cancelled */
		if (nholds > 0)
			run(&st_holds_extend, args, NULL, 0);
		args[0] = order_id;
		args[1] = CStringGetTextDatum("captured");
		args[2] = text_array((const char *const[]) {"pending", "authorized"}, 2);
		run(&st_pay_status, args, NULL, 0);
	}
	else if (strcmp(to, "cancelled") == 0)
	{
		if (nholds > 0)
			run(&st_release, args, NULL, 0);
		args[0] = order_id;
		args[1] = CStringGetTextDatum("voided");
		args[2] = text_array((const char *const[]) {"pending", "authorized"}, 2);
		run(&st_pay_status, args, NULL, 0);
	}
	else if (strcmp(to, "shipped") == 0)
	{
		if (nholds > 0)
			run(&st_commit, args, NULL, 0);
	}
	else if (strcmp(to, "returned") == 0)
	{
		args[0] = order_id;
		run(&st_restock, args, NULL, 0);
	}
	else if (strcmp(to, "refunded") == 0)
	{
		args[0] = order_id;
		args[1] = CStringGetTextDatum("refunded");
		args[2] = text_array((const char *const[]) {"captured"}, 1);
		run(&st_pay_status, args, NULL, 0);
	}

	/* the row, its event, the outbox */
	args[0] = order_id;
	args[1] = CStringGetTextDatum(to);
	args[2] = carrier ? CStringGetTextDatum(carrier) : (Datum) 0;
	args[3] = tracking ? CStringGetTextDatum(tracking) : (Datum) 0;
	memcpy(nulls, "  nn", 4);
	if (carrier)
		nulls[2] = ' ';
	if (tracking)
		nulls[3] = ' ';
	run(&st_order_upd, args, nulls, 1);
	seq = DatumGetInt32(col(0, 1, &isnull));

	args[0] = order_id;
	args[1] = Int32GetDatum(seq);
	args[2] = CStringGetTextDatum(from);
	args[3] = CStringGetTextDatum(to);
	args[4] = note ? CStringGetTextDatum(note) : (Datum) 0;
	memcpy(nulls, "    n", 5);
	if (note)
		nulls[4] = ' ';
	run(&st_event_ins, args, nulls, 0);

	args[0] = order_id;
	args[1] = customer;
	args[2] = CStringGetTextDatum(from);
	args[3] = CStringGetTextDatum(to);
	args[4] = note ? CStringGetTextDatum(note) : (Datum) 0;
	args[5] = total;
	memcpy(nulls, "      ", 6);
	if (cust_null)
		nulls[1] = 'n';
	if (!note)
		nulls[4] = 'n';
	run(&st_emit_transition, args, nulls, 0);
}

/* Optional text argument n, checked; NULL when the argument is NULL. */
static char *
opt_text_arg(FunctionCallInfo fcinfo, int n, const char *what, int max_len)
{
	if (PG_ARGISNULL(n))
		return NULL;
	ShopCheckArgText(PG_GETARG_TEXT_PP(n), what, max_len, false);
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * shop.order_transition(order_id uuid, to_status text, note text) -> text
 */
Datum
shop_order_transition(PG_FUNCTION_ARGS)
{
	char	   *to;
	char	   *note;

	require_arg(fcinfo, 0, "order_id");
	require_arg(fcinfo, 1, "to_status");
	to = opt_text_arg(fcinfo, 1, "to_status", 20);
	note = opt_text_arg(fcinfo, 2, "note", 1000);
	SPI_connect();
	ShopOrderTransition(PG_GETARG_DATUM(0), to, note, NULL, NULL, false);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(to));
}

/*
 * shop.order_ship(order_id uuid, carrier text, tracking_number text) -> text
 */
Datum
shop_order_ship(PG_FUNCTION_ARGS)
{
	char	   *carrier;
	char	   *tracking;

	require_arg(fcinfo, 0, "order_id");
	require_arg(fcinfo, 1, "carrier");
	require_arg(fcinfo, 2, "tracking_number");
	carrier = opt_text_arg(fcinfo, 1, "carrier", 100);
	tracking = opt_text_arg(fcinfo, 2, "tracking_number", 100);
	SPI_connect();
	ShopOrderTransition(PG_GETARG_DATUM(0), "shipped",
						psprintf("shipped with %s, tracking number %s", carrier, tracking),
						carrier, tracking, false);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text("shipped"));
}

/*
 * shop.order_review(order_id uuid, approve boolean) -> text
 * The decision on an order flagged for fraud review.
 */
Datum
shop_order_review(PG_FUNCTION_ARGS)
{
	Datum		order_id;
	bool		isnull,
				cust_null;
	char	   *status;
	Datum		args[5];
	char		nulls[5];
	int32		seq;
	Datum		customer,
				total;

	require_arg(fcinfo, 0, "order_id");
	require_arg(fcinfo, 1, "approve");
	order_id = PG_GETARG_DATUM(0);
	SPI_connect();
	lock_order(order_id);
	status = col_text(0, 1);
	if (!DatumGetBool(col(0, 3, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_INVALID_TRANSITION),
				 errmsg("order is not awaiting fraud review"),
				 errdetail("Order %s is %s and was not flagged, or was reviewed already.",
						   uuid_str(order_id), status)));
	args[0] = order_id;
	run(&st_review_clear, args, NULL, 1);
	seq = DatumGetInt32(col(0, 1, &isnull));
	customer = col(0, 3, &cust_null);
	total = col(0, 4, &isnull);
	if (PG_GETARG_BOOL(1))
	{
		args[0] = order_id;
		args[1] = Int32GetDatum(seq);
		args[2] = CStringGetTextDatum(status);
		args[3] = CStringGetTextDatum(status);
		args[4] = CStringGetTextDatum("fraud review: approved");
		run(&st_event_ins, args, NULL, 0);
		args[0] = order_id;
		args[1] = customer;
		args[2] = CStringGetTextDatum(status);
		args[3] = total;
		memcpy(nulls, "    ", 4);
		if (cust_null)
			nulls[1] = 'n';
		run(&st_emit_review, args, nulls, 0);
	}
	else
	{
		args[0] = order_id;
		args[1] = Int32GetDatum(seq);
		args[2] = CStringGetTextDatum(status);
		args[3] = CStringGetTextDatum(status);
		args[4] = CStringGetTextDatum("fraud review: rejected");
		run(&st_event_ins, args, NULL, 0);
		ShopOrderTransition(order_id, "cancelled", "rejected by fraud review", NULL, NULL, false);
		status = "cancelled";
	}
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(status));
}

/*
 * shop.payment_confirm(order_id uuid, provider_ref text) -> text
 * The gateway captured the payment.  Repeating a confirmation with the
 * same provider_ref (a retried webhook) returns the status unchanged.
 */
Datum
shop_payment_confirm(PG_FUNCTION_ARGS)
{
	Datum		order_id;
	char	   *ref;
	char	   *status;
	char	   *provider;
	Datum		args[2];

	require_arg(fcinfo, 0, "order_id");
	require_arg(fcinfo, 1, "provider_ref");
	order_id = PG_GETARG_DATUM(0);
	ref = opt_text_arg(fcinfo, 1, "provider_ref", 200);
	SPI_connect();
	lock_order(order_id);
	status = col_text(0, 1);
	args[0] = order_id;
	args[1] = CStringGetTextDatum(ref);
	if (strcmp(status, "pending") != 0)
	{
		run(&st_pay_confirmed, args, NULL, 1);
		if (SPI_processed == 1)
		{
			SPI_finish();
			PG_RETURN_TEXT_P(cstring_to_text(status));
		}
		invalid_transition(order_id, status, "paid", NULL);
	}
	run(&st_pay_confirm, args, NULL, 0);
	provider = SPI_processed > 0 ? col_text(0, 1) : "the gateway";
	ShopOrderTransition(order_id, "paid", psprintf("payment confirmed by %s", provider),
						NULL, NULL, false);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text("paid"));
}

/*
 * shop.payment_fail(order_id uuid, reason text) -> text
 * The gateway declined: the pending order is cancelled and its holds
 * released.  The failed payment row stays (the failure-rate metric counts
 * it), payment.failed goes to the outbox, and payment.failures too when
 * the failure rate over shop.payment_failure_window passes
 * shop.payment_failure_threshold.
 */
Datum
shop_payment_fail(PG_FUNCTION_ARGS)
{
	Datum		order_id;
	char	   *reason;
	char	   *status;
	char	   *provider;
	Datum		args[3];

	require_arg(fcinfo, 0, "order_id");
	require_arg(fcinfo, 1, "reason");
	order_id = PG_GETARG_DATUM(0);
	reason = opt_text_arg(fcinfo, 1, "reason", 500);
	SPI_connect();
	lock_order(order_id);
	status = col_text(0, 1);
	args[0] = order_id;
	if (strcmp(status, "pending") != 0)
	{
		if (strcmp(status, "cancelled") == 0)
		{
			run(&st_pay_failed, args, NULL, 1);
			if (SPI_processed == 1)
			{
				SPI_finish();
				PG_RETURN_TEXT_P(cstring_to_text(status));
			}
		}
		invalid_transition(order_id, status, "cancelled",
						   psprintf("Order %s is %s; a payment can fail only while the order is pending.",
									uuid_str(order_id), status));
	}
	args[1] = CStringGetTextDatum(reason);
	run(&st_pay_fail, args, NULL, 0);
	provider = SPI_processed > 0 ? col_text(0, 1) : "gateway";
	ShopOrderTransition(order_id, "cancelled", psprintf("payment failed: %s", reason),
						NULL, NULL, false);
	args[0] = order_id;
	args[1] = CStringGetTextDatum(provider);
	args[2] = CStringGetTextDatum(reason);
	run(&st_emit_payfail, args, NULL, 0);
	run(&st_check_failures, NULL, NULL, 0);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text("cancelled"));
}

/* ---------------------------------------------------------------------
 * Checkout
 * ---------------------------------------------------------------------
 */

/*
 * shop.checkout(cart_id uuid, payment_token text, idempotency_key text,
 *               shipping_address jsonb DEFAULT NULL) -> uuid
 */
Datum
shop_checkout(PG_FUNCTION_ARGS)
{
	Datum		cart_id;
	char	   *token;
	char	   *key;
	Jsonb	   *address = NULL;
	char	   *address_text = "";
	char	   *cart_str;
	ShopPayToken pt;
	MemoryContext callcxt = CurrentMemoryContext;
	pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));
	Datum		args[32];
	char		nulls[32];
	bool		isnull;
	bool		cust_null;
	int64		customer = 0;
	char	   *scope;
	char	   *fingerprint_src;
	uint64		nlines;
	Datum	   *l_pid,
			   *l_sku,
			   *l_title,
			   *l_price,
			   *l_qty;
	int64		subtotal = 0,
				shipping,
				tax,
				total;
	StringInfoData items;
	Datum		holds;
	Datum		reasons;
	bool		paid;
	double		score;
	bool		review;
	Datum		order_id;

	require_arg(fcinfo, 0, "cart_id");
	require_arg(fcinfo, 1, "payment_token");
	require_arg(fcinfo, 2, "idempotency_key");
	cart_id = PG_GETARG_DATUM(0);
	/* card numbers are refused before anything else looks at the values */
	ShopCheckArgText(PG_GETARG_TEXT_PP(1), "payment_token", 200, false);
	ShopCheckArgText(PG_GETARG_TEXT_PP(2), "idempotency_key", 200, false);
	if (!PG_ARGISNULL(3))
	{
		address = PG_GETARG_JSONB_P(3);
		ShopRefuseCardNumberJsonb(address, "shipping_address");
		if (!JB_ROOT_IS_OBJECT(address) || JB_ROOT_IS_SCALAR(address))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("shipping_address must be a jsonb object")));
		address_text = JsonbToCString(NULL, &address->root, VARSIZE(address));
		if (strlen(address_text) > 4000)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("shipping_address is too long"),
					 errdetail("shipping_address has %zu characters as text; at most 4000 are allowed.",
							   strlen(address_text))));
	}
	token = text_to_cstring(PG_GETARG_TEXT_PP(1));
	key = text_to_cstring(PG_GETARG_TEXT_PP(2));
	ShopParsePaymentToken(token, &pt);
	cart_str = uuid_str(cart_id);

	SPI_connect();

	/* 1. the cart */
	args[0] = cart_id;
	run(&st_cart_lock, args, NULL, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_NOT_FOUND),
				 errmsg("cart not found"),
				 errdetail("No cart has cart_id %s.", cart_str)));
	{
		Datum		c = col(0, 1, &cust_null);
		char	   *status = col_text(0, 2);
		bool		live = DatumGetBool(col(0, 3, &isnull));
		Datum		merged = col(0, 4, &isnull);
		bool		merged_null = isnull;
		char	   *expired_at = DatumGetCString(DirectFunctionCall1(timestamptz_out, col(0, 5, &isnull)));

		if (!cust_null)
			customer = DatumGetInt64(c);
		ShopAuthorizeCustomer(customer, cust_null);

		/* 2. the idempotency key */
		scope = cust_null ? psprintf("k:%s", cart_str) : psprintf("c:" INT64_FORMAT, customer);
		fingerprint_src = psprintf("%s|%s|%s", cart_str, token, address_text);
		order_id = new_uuid();
		args[0] = CStringGetTextDatum(scope);
		args[1] = CStringGetTextDatum(key);
		args[2] = CStringGetTextDatum(fingerprint_src);
		args[3] = order_id;
		run(&st_idem_claim, args, NULL, 0);
		if (SPI_processed == 0)
		{
			bool		same;
			Datum		oid;

			run(&st_idem_get, args, NULL, 1);
			if (SPI_processed != 1)
				elog(ERROR, "idempotency row vanished");
			same = DatumGetBool(col(0, 1, &isnull));
			oid = col(0, 2, &isnull);
			if (!same)
				ereport(ERROR,
						(errcode(ERRCODE_SHOP_IDEMPOTENCY_CONFLICT),
						 errmsg("idempotency key reused with a different request"),
						 errdetail("Key \"%s\" was first used with another cart, payment token or shipping address.", key),
						 errhint("Use a new idempotency key for a new request.")));
			if (isnull)
				elog(ERROR, "idempotency key without an order");
			memcpy(result, DatumGetUUIDP(oid), sizeof(pg_uuid_t));
			SPI_finish();
			PG_RETURN_UUID_P(result);
		}

		if (strcmp(status, "open") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_NOT_FOUND),
					 errmsg("cart not found"),
					 merged_null ? errdetail("Cart %s is %s.", cart_str, status)
					 : errdetail("Cart %s was merged into cart %s.", cart_str, uuid_str(merged))));
		if (!live)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_NOT_FOUND),
					 errmsg("cart not found"),
					 errdetail("Cart %s expired at %s.", cart_str, expired_at)));
	}

	/* 3. its lines, at today's prices */
	args[0] = cart_id;
	run(&st_cart_lines, args, NULL, 0);
	nlines = SPI_processed;
	if (nlines == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_CART_EMPTY),
				 errmsg("cart is empty"),
				 errdetail("Cart %s has no lines to check out.", cart_str)));
	l_pid = palloc(sizeof(Datum) * nlines);
	l_sku = palloc(sizeof(Datum) * nlines);
	l_title = palloc(sizeof(Datum) * nlines);
	l_price = palloc(sizeof(Datum) * nlines);
	l_qty = palloc(sizeof(Datum) * nlines);
	initStringInfo(&items);
	appendStringInfoChar(&items, '[');
	for (uint64 i = 0; i < nlines; i++)
	{
		int64		pid = DatumGetInt64(col(i, 1, &isnull));
		int32		qty = DatumGetInt32(col(i, 2, &isnull));
		char	   *pstatus = col_text(i, 6);
		int64		price,
					line;

		if (pstatus == NULL || strcmp(pstatus, "active") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_PRODUCT_UNAVAILABLE),
					 errmsg("product unavailable"),
					 errdetail("Product " INT64_FORMAT " in cart %s is %s.", pid, cart_str,
							   pstatus ? pstatus : "no longer in the catalog"),
					 errhint("Remove it from the cart or save it for later.")));
		price = DatumGetInt64(col(i, 5, &isnull));
		if (pg_mul_s64_overflow(price, qty, &line) || pg_add_s64_overflow(subtotal, line, &subtotal))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("order total out of range")));
		l_pid[i] = Int64GetDatum(pid);
		l_qty[i] = Int32GetDatum(qty);
		l_price[i] = Int64GetDatum(price);
		l_sku[i] = SPI_datumTransfer(col(i, 3, &isnull), false, -1);
		l_title[i] = SPI_datumTransfer(col(i, 4, &isnull), false, -1);
		appendStringInfo(&items, "%s{\"product_id\": " INT64_FORMAT ", \"qty\": %d}",
						 i > 0 ? ", " : "", pid, qty);
	}
	appendStringInfoChar(&items, ']');

	/* 4. stock: every line or none */
	args[0] = CStringGetTextDatum(items.data);
	args[1] = CStringGetTextDatum(psprintf("order:%s", uuid_str(order_id)));	/* the holds' ref */
	args[2] = Float8GetDatum((double) shop_reservation_ttl);
	run(&st_reserve, args, NULL, 1);
	holds = col(0, 1, &isnull);
	if (isnull || ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(holds)),
								 ARR_DIMS(DatumGetArrayTypeP(holds))) != (int) nlines)
		elog(ERROR, "shop.reserve_many did not return one reservation per line");

	/* 5. money and risk */
	args[0] = Int64GetDatum(subtotal);
	args[1] = address ? JsonbPGetDatum(address) : (Datum) 0;
	args[2] = Int64GetDatum(customer);
	args[3] = CStringGetTextDatum(token);
	memcpy(nulls, "    ", 4);
	if (!address)
		nulls[1] = 'n';
	if (cust_null)
		nulls[2] = 'n';
	if (pt.shared)
		nulls[3] = 'n';			/* a shared test token is not one card: not counted */
	run(&st_money_risk, args, nulls, 1);
	shipping = DatumGetInt64(col(0, 1, &isnull));
	tax = DatumGetInt64(col(0, 2, &isnull));
	if (pg_add_s64_overflow(subtotal, shipping, &total) || pg_add_s64_overflow(total, tax, &total))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("order total out of range")));
	score = ShopFraudScore(DatumGetInt64(col(0, 3, &isnull)), DatumGetInt64(col(0, 4, &isnull)),
						   DatumGetInt64(col(0, 5, &isnull)), DatumGetFloat8(col(0, 6, &isnull)),
						   &pt, total, &reasons);
	review = score >= shop_fraud_threshold;

	/* 6. authorize */
	if (pt.outcome == SHOP_PAY_DECLINED)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PAYMENT_DECLINED),
				 errmsg("payment declined"),
				 errdetail("The %s provider declined the payment of %lld.%02lld %s for cart %s.",
						   pt.provider, (long long) (total / 100), (long long) (total % 100),
						   shop_currency, cart_str),
				 errhint("Nothing was kept: no order, no reservation. Ask for another payment method.")));
	paid = pt.outcome == SHOP_PAY_AUTHORIZED;

	/* 7. the order, its lines, payment, events and outbox; 8. the cart and the key */
	memset(nulls, ' ', sizeof(nulls));
	args[0] = order_id;
	args[1] = Int64GetDatum(customer);
	nulls[1] = cust_null ? 'n' : ' ';
	args[2] = cart_id;
	args[3] = CStringGetTextDatum(paid ? "paid" : "pending");
	args[4] = CStringGetTextDatum(shop_currency);
	args[5] = Int64GetDatum(subtotal);
	args[6] = Int64GetDatum(shipping);
	args[7] = Int64GetDatum(tax);
	args[8] = Int64GetDatum(total);
	args[9] = address ? JsonbPGetDatum(address) : (Datum) 0;
	nulls[9] = address ? ' ' : 'n';
	args[10] = Float4GetDatum((float4) score);
	args[11] = reasons;
	args[12] = BoolGetDatum(review);
	args[13] = CStringGetTextDatum(key);
	args[14] = holds;
	args[15] = PointerGetDatum(construct_array(l_pid, nlines, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[16] = PointerGetDatum(construct_array(l_sku, nlines, TEXTOID, -1, false, TYPALIGN_INT));
	args[17] = PointerGetDatum(construct_array(l_title, nlines, TEXTOID, -1, false, TYPALIGN_INT));
	args[18] = PointerGetDatum(construct_array(l_price, nlines, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[19] = PointerGetDatum(construct_array(l_qty, nlines, INT4OID, 4, true, TYPALIGN_INT));
	args[20] = CStringGetTextDatum(pt.provider);
	args[21] = CStringGetTextDatum(token);
	args[22] = pt.brand ? CStringGetTextDatum(pt.brand) : (Datum) 0;
	nulls[22] = pt.brand ? ' ' : 'n';
	args[23] = pt.last4 ? CStringGetTextDatum(pt.last4) : (Datum) 0;
	nulls[23] = pt.last4 ? ' ' : 'n';
	args[24] = CStringGetTextDatum(paid ? "captured" : "pending");
	args[25] = CStringGetTextDatum(review ? psprintf("order placed; flagged for fraud review (score %.2f)", score)
								   : "order placed");
	args[26] = CStringGetTextDatum(psprintf("payment authorized by the %s provider", pt.provider));
	args[27] = ShopCartExpiry();
	run(&st_place, args, nulls, 0);

	memcpy(result, DatumGetUUIDP(order_id), sizeof(pg_uuid_t));
	SPI_finish();
	(void) callcxt;
	PG_RETURN_UUID_P(result);
}
