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
 *   -> returned    every line is put back with shop.stock_adjust (an order
 *                  the router made: on its products' shards, by the router);
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
 *   1. lock the cart row (concurrent checkouts of one cart queue here) by
 *      the update that pushes its expiry forward (an open, unexpired cart's);
 *   2. claim the idempotency key: INSERT ... ON CONFLICT DO NOTHING into
 *      shop.idempotency.  A second call with the same key blocks on the
 *      first one's uncommitted row; when the first commits it finds the row
 *      and returns its order (or SH003 when its fingerprint of cart, token
 *      and address differs), when the first rolls back it proceeds itself.
 *      Under REPEATABLE READ it gets 40001 instead, which is retryable;
 *   3. take the lines to order out of the cart (saved-for-later lines
 *      stay) and read them with the products' current state and prices
 *      (SH007 empty, SH008 inactive); any error below rolls this back;
 *   4. hold every line at once (ShopReserve, inventory.c; all or nothing,
 *      SH001), until the order ships when the test provider authorizes,
 *      for shop.reservation_ttl otherwise;
 *   5. shipping and tax (shop.shipping_rate, shop.tax_rate), fraud score;
 *   6. authorize: the test provider decides now (a decline raises SH004,
 *      which rolls everything back); a gateway token leaves the order
 *      pending with its holds for shop.reservation_ttl;
 *   7. write the order, its lines (snapshots), payment, first event and
 *      the "order.created" event; with an authorized payment, transition
 *      to paid;
 *   (the cart's expiry was pushed in step 1, its ordered lines left in
 *   step 3).
 * The idempotency row names the order from the start: nobody sees either
 * before the transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/sysattr.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/array.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_checkout);
PG_FUNCTION_INFO_V1(shop_checkout_keyed);
PG_FUNCTION_INFO_V1(shop_order_transition);
PG_FUNCTION_INFO_V1(shop_order_ship);
PG_FUNCTION_INFO_V1(shop_order_review);
PG_FUNCTION_INFO_V1(shop_payment_confirm);
PG_FUNCTION_INFO_V1(shop_payment_fail);
PG_FUNCTION_INFO_V1(shop_shipping_cents);
PG_FUNCTION_INFO_V1(shop_tax_cents);
PG_FUNCTION_INFO_V1(shop_order_attributable);

#define SHOP_MAX_CART_LINES 500

/* recommend.c: checkout logged this order for the co-purchase statistics */
extern void ShopCopurchaseLogged(const pg_uuid_t *order_id);

/*
 * The statements.  Generic plans: each is keyed by a primary or foreign
 * key, so a custom plan is never better (src/spi.h).
 */
/*
 * The cart's lock is the update that pushes its expiry forward (step 1),
 * not a SELECT ... FOR UPDATE and an UPDATE at the end: one tuple lock and
 * one statement less (issue 11).  Only an open, unexpired cart is pushed;
 * the row comes back with the new expiry, which for such a cart lies
 * ahead (shop.cart_ttl is at least 60 s), and with its old one for any
 * other, so "expires_at > now()" still says whether it was live.  An
 * idempotent replay pushes the expiry too (as any call on the cart does).
 */
static ShopStmt st_cart_lock = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.cart"
	"   SET updated_at = CASE WHEN status = 'open' AND expires_at > now() THEN now() ELSE updated_at END,"
	"       expires_at = CASE WHEN status = 'open' AND expires_at > now() THEN $2 ELSE expires_at END"
	" WHERE cart_id = $1"
	" RETURNING customer_id, status, expires_at > now(), merged_into, expires_at",
	UUIDOID, TIMESTAMPTZOID);
/*
 * The writes of a checkout exist twice: with the customer_key of 1.1
 * (docs/scale-out.md, "Citus-compatible keys"; shop.checkout is
 * shop_checkout_keyed there) and without it, for shop.checkout of a 1.0
 * install, whose tables have no such column (shop_checkout).
 */
static ShopStmt st_idem_claim = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.idempotency (scope, key, fingerprint, order_id) VALUES ($1, $2, md5($3), $4)"
	" ON CONFLICT (scope, key) DO NOTHING",
	TEXTOID, TEXTOID, TEXTOID, UUIDOID);
static ShopStmt st_idem_claim_keyed = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.idempotency (scope, key, fingerprint, order_id, customer_key)"
	" VALUES ($1, $2, md5($3), $4, $5)"
	" ON CONFLICT (scope, key, customer_key) DO NOTHING",
	TEXTOID, TEXTOID, TEXTOID, UUIDOID, INT8OID);
static ShopStmt st_idem_get = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT fingerprint = md5($3), order_id FROM shop.idempotency WHERE scope = $1 AND key = $2",
	TEXTOID, TEXTOID, TEXTOID);
/*
 * The lines to order leave the cart as they are read: the cart row is
 * locked, so nobody changes the lines before the order is written, and a
 * checkout that fails (SH001, SH004, SH007, SH008 ...) rolls the delete
 * back with everything else.  One read of the cart's lines instead of a
 * read here and a DELETE in st_place (issue 11).  The product comes as
 * one record per line (NULL: no longer in the catalog), from a subquery
 * of the DELETE's RETURNING list rather than a join of the deleted rows
 * with shop.product, and the rows in no particular order: checkout_lines
 * puts them in product order.
 */
static ShopStmt st_cart_lines = SHOP_STMT(SHOP_PLAN_GENERIC,
	"DELETE FROM shop.cart_item ci WHERE ci.cart_id = $1 AND NOT ci.saved_for_later"
	" RETURNING ci.product_id, ci.qty,"
	"           (SELECT ROW(p.sku, p.title, p.price_cents, p.status) FROM shop.product p"
	"             WHERE p.product_id = ci.product_id)",
	UUIDOID);
/*
 * The fraud rules' inputs as statements: what checkout_history and
 * checkout_token_recent read in C, for a store whose indexes are not as
 * shop made them (checkout_history, below).  The hour's orders counted up
 * to 10, the rule's top tier, as the C walk counts them (a count of all
 * read every order of a busy customer's hour).
 */
static ShopStmt st_history = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT (SELECT count(*) FROM (SELECT FROM shop.\"order\" o"
	"         WHERE o.customer_id = $1 AND o.created_at > now() - interval '1 hour'"
	"         LIMIT 10) r),"
	"       h.n, h.avg"
	"  FROM (SELECT count(*) AS n, coalesce(avg(l.total_cents), 0)::float8 AS avg"
	"          FROM (SELECT o.total_cents FROM shop.\"order\" o"
	"                 WHERE o.customer_id = $1 AND o.was_paid"
	"                 ORDER BY o.created_at DESC LIMIT 50) l) h",
	INT8OID);
static ShopStmt st_token_recent = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT count(*) FROM (SELECT FROM shop.payment p"
	" WHERE p.token = $1 AND p.created_at > now() - interval '1 hour' LIMIT 10) r",
	TEXTOID);

/*
 * Every write of a checkout in one statement.  An order the test provider
 * authorized is inserted as paid (events 1 pending and 2 paid); its holds
 * were taken to last until it ships.  A gateway order stays pending with
 * holds that expire.  The outbox events (order.created, then order.paid)
 * are inserted here too, in that order, rather than by two calls of
 * shop._emit: each call was a function call with its own search_path,
 * SPI connection and executor start (issue 11, CPU per checkout);
 * checkout_place hands the rows to ShopEventWritten, which does the rest
 * of what _emit does.  A paid order is logged for the co-purchase
 * statistics here too (the row order_copurchase_capture would add at
 * commit: the order is new, so no row for it exists yet), and the trigger
 * is told so (ShopCopurchaseLogged), which saves its statement at commit
 * (issue 11: 3% of a checkout).  Without that word, as in a 1.0 install
 * whose trigger is PL/pgSQL, the trigger finds the row and adds none.
 */
#define PLACE_SQL(KC, KV) \
	"WITH o AS (" \
	"  INSERT INTO shop.\"order\" (order_id, customer_id, cart_id, status, currency, subtotal_cents," \
	"         shipping_cents, tax_cents, total_cents, shipping_address, fraud_score, fraud_reasons," \
	"         needs_review, was_paid, idempotency_key, event_count" KC ")" \
	"  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $4 = 'paid', $14," \
	"          CASE WHEN $4 = 'paid' THEN 2 ELSE 1 END" KV "))," \
	" l AS (" \
	"  INSERT INTO shop.order_line (order_id, line_no, product_id, sku, title, unit_price_cents, qty," \
	"         reservation_id" KC ")" \
	"  SELECT $1, generate_series(1, cardinality($16)), unnest($16), unnest($17), unnest($18)," \
	"         unnest($19), unnest($20), unnest($15)" KV ")," \
	" p AS (" \
	"  INSERT INTO shop.payment (order_id, provider, token, card_brand, last4, status, amount_cents," \
	"         fraud_score" KC ")" \
	"  SELECT $1, $21, $22, coalesce(m.brand, $23), coalesce(m.last4, $24), $25, $9, $11" KV \
	"    FROM (SELECT 1) one LEFT JOIN LATERAL" \
	"         (SELECT pm.brand, pm.last4 FROM shop.payment_method pm" \
	"           WHERE pm.customer_id = $2 AND pm.token = $22) m ON true)," \
	" e AS (" \
	"  INSERT INTO shop.order_event (order_id, seq, from_status, to_status, note" KC ")" \
	"  SELECT $1, v.seq, v.f, v.t, v.note" KV \
	"    FROM (VALUES (1, NULL, 'pending', $26), (2, 'pending', 'paid', $27)) v(seq, f, t, note)" \
	"   WHERE v.seq = 1 OR $4 = 'paid')," \
	" d AS (" \
	"  INSERT INTO shop.copurchase_delta (customer_id, order_id, counted)" \
	"  SELECT $2, $1, true WHERE $4 = 'paid')" \
	" INSERT INTO shop.event (topic, payload)" \
	" SELECT v.topic, v.payload" \
	"   FROM (VALUES ('order.created', $28), ('order.paid', $29)) v(topic, payload)" \
	"  WHERE v.topic = 'order.created' OR $4 = 'paid'" \
	" RETURNING event_id, topic"
#define PLACE_TYPES \
	UUIDOID, INT8OID, UUIDOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, JSONBOID, \
		FLOAT4OID, TEXTARRAYOID, BOOLOID, TEXTOID, UUIDARRAYOID, INT8ARRAYOID, TEXTARRAYOID, \
		TEXTARRAYOID, INT8ARRAYOID, INT4ARRAYOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, \
		TEXTOID, TEXTOID, JSONBOID, JSONBOID

static ShopStmt st_place = SHOP_STMT(SHOP_PLAN_GENERIC, PLACE_SQL("", ""), PLACE_TYPES);
/* the same, every row with customer_key $30 */
static ShopStmt st_place_keyed = SHOP_STMT(SHOP_PLAN_GENERIC,
	PLACE_SQL(", customer_key", ", $30"), PLACE_TYPES, INT8OID);

/*
 * An event of a transition.  In 1.1 its customer_key is its order's, which
 * the table's trigger fills in (this runs in 1.0 installs too).
 */
static ShopStmt st_event_ins = SHOP_STMT(SHOP_PLAN_GENERIC,
	"INSERT INTO shop.order_event (order_id, seq, from_status, to_status, note)"
	" VALUES ($1, $2, $3, $4, $5)",
	UUIDOID, INT4OID, TEXTOID, TEXTOID, TEXTOID);

static ShopStmt st_order_lock = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT o.status, o.was_paid, o.needs_review,"
	"       (SELECT count(*) FROM shop.order_line l"
	"         WHERE l.order_id = o.order_id AND l.reservation_id IS NOT NULL),"
	"       o.customer_id, o.total_cents"
	"  FROM shop.\"order\" o WHERE o.order_id = $1 FOR UPDATE OF o",
	UUIDOID);
/* the lines of an order with their holds, in product order */
static ShopStmt st_order_lines = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT product_id, reservation_id, qty FROM shop.order_line"
	" WHERE order_id = $1 ORDER BY product_id, line_no",
	UUIDOID);
/* whether the router made the order (a saga on this customer shard) */
static ShopStmt st_order_saga = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT 1 FROM shop.saga WHERE order_id = $1",
	UUIDOID);
static ShopStmt st_pay_status = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.payment SET status = $2, updated_at = now()"
	" WHERE order_id = $1 AND status = ANY ($3)",
	UUIDOID, TEXTOID, TEXTARRAYOID);
static ShopStmt st_order_upd = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.\"order\" SET status = $2, was_paid = was_paid OR $2 = 'paid',"
	"       carrier = coalesce($3, carrier), tracking_number = coalesce($4, tracking_number),"
	"       shipped_at = CASE WHEN $2 = 'shipped' THEN now() ELSE shipped_at END,"
	"       event_count = greatest(event_count, (SELECT max(e.seq) FROM shop.order_event e"
	"                                            WHERE e.order_id = $1)) + 1,"
	"       updated_at = now()"
	" WHERE order_id = $1 RETURNING event_count",
	UUIDOID, TEXTOID, TEXTOID, TEXTOID);
static ShopStmt st_emit_transition = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT shop._emit('order.' || $4, jsonb_build_object('order_id', $1, 'customer_id', $2,"
	"       'from', $3, 'to', $4, 'note', $5, 'total_cents', $6))",
	UUIDOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID);
static ShopStmt st_review_clear = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.\"order\" SET needs_review = false, updated_at = now(),"
	"       event_count = greatest(event_count, (SELECT max(e.seq) FROM shop.order_event e"
	"                                            WHERE e.order_id = $1)) + 1"
	" WHERE order_id = $1 RETURNING event_count, status, customer_id, total_cents",
	UUIDOID);
static ShopStmt st_emit_review = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT shop._emit('order.review_approved', jsonb_build_object('order_id', $1, 'customer_id', $2,"
	"       'status', $3, 'total_cents', $4))",
	UUIDOID, INT8OID, TEXTOID, INT8OID);
static ShopStmt st_pay_confirm = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.payment SET status = 'captured', provider_ref = $2, updated_at = now()"
	" WHERE order_id = $1 AND status = 'pending' RETURNING provider",
	UUIDOID, TEXTOID);
static ShopStmt st_pay_confirmed = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT 1 FROM shop.payment WHERE order_id = $1 AND status = 'captured' AND provider_ref = $2",
	UUIDOID, TEXTOID);
static ShopStmt st_pay_fail = SHOP_STMT(SHOP_PLAN_GENERIC,
	"UPDATE shop.payment SET status = 'failed', failure_reason = $2, updated_at = now()"
	" WHERE order_id = $1 AND status = 'pending' RETURNING provider",
	UUIDOID, TEXTOID);
static ShopStmt st_pay_failed = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT 1 FROM shop.payment WHERE order_id = $1 AND status = 'failed'",
	UUIDOID);
static ShopStmt st_emit_payfail = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT shop._emit('payment.failed', jsonb_build_object('order_id', $1, 'provider', $2,"
	"       'reason', $3))",
	UUIDOID, TEXTOID, TEXTOID);

/* ---------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------
 */

static char *
uuid_str(Datum u)
{
	return ShopUuidStr(DatumGetUUIDP(u));
}

/* A fresh order id. */
static Datum
new_uuid(void)
{
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

	ShopNewUuid(u);
	return UUIDPGetDatum(u);
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

	ShopExec(&st_order_lock, args, NULL, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_NOT_FOUND),
				 errmsg("order not found"),
				 errdetail("No order has order_id %s.", uuid_str(order_id))));
}

/*
 * The holds of an order's lines (lines without one are left out), in
 * product order; *nreservations counts the distinct reservations.
 */
static ShopHold *
order_holds(Datum order_id, int *n, int *nreservations)
{
	Datum		args[1] = {order_id};
	uint64		nlines = ShopExec(&st_order_lines, args, NULL, 0);
	ShopHold   *holds = palloc(sizeof(ShopHold) * Max(nlines, 1));

	*n = 0;
	*nreservations = 0;
	for (uint64 i = 0; i < nlines; i++)
	{
		bool		isnull;
		Datum		rid = ShopCol(i, 2, &isnull);
		bool		seen = false;

		if (isnull)
			continue;
		holds[*n].product_id = ShopColInt(i, 1, 0);
		holds[*n].qty = (int32) ShopColInt(i, 3, 0);
		memcpy(&holds[*n].reservation_id, DatumGetUUIDP(rid), sizeof(pg_uuid_t));
		for (int j = 0; j < *n && !seen; j++)
			seen = memcmp(&holds[j].reservation_id, &holds[*n].reservation_id, sizeof(pg_uuid_t)) == 0;
		if (!seen)
			(*nreservations)++;
		(*n)++;
	}
	return holds;
}

/* the payments of the order in one of the given states move to status */
static void
order_payments(Datum order_id, const char *status, const char *const *from, int nfrom)
{
	Datum		args[3];

	args[0] = order_id;
	args[1] = CStringGetTextDatum(status);
	args[2] = ShopTextArray(from, nfrom);
	ShopExec(&st_pay_status, args, NULL, 0);
}

/*
 * Every line goes back in stock (a return), one ledger entry per line.
 * An order the router made (it has a shop.saga row, a table of 1.1) has
 * its stock on the products' shards, not here: the router puts its units
 * back there (shop._saga_restock, docs/scale-out.md).
 */
static void
order_restock(Datum order_id)
{
	Datum		args[1] = {order_id};
	uint64		nlines;
	int64	   *pid;
	int32	   *qty;
	char	   *reason;

	if (OidIsValid(get_relname_relid("saga", get_namespace_oid("shop", false))) &&
		ShopExec(&st_order_saga, args, NULL, 1) > 0)
		return;
	nlines = ShopExec(&st_order_lines, args, NULL, 0);
	pid = palloc(sizeof(int64) * Max(nlines, 1));
	qty = palloc(sizeof(int32) * Max(nlines, 1));
	reason = psprintf("return of order %s", uuid_str(order_id));

	for (uint64 i = 0; i < nlines; i++)
	{
		pid[i] = ShopColInt(i, 1, 0);
		qty[i] = (int32) ShopColInt(i, 3, 0);
	}
	for (uint64 i = 0; i < nlines; i++)
		(void) ShopStockAdjust(pid[i], "default", qty[i], reason);
}

/*
 * The side effects of a transition on stock and payments (file header).
 * nholds: the lines with a stock hold, as lock_order counted them.
 */
static void
order_side_effects(Datum order_id, const char *to, int64 nholds)
{
	ShopHold   *holds = NULL;
	int			n = 0;
	int			nres = 0;

	if (nholds > 0 && (strcmp(to, "paid") == 0 || strcmp(to, "cancelled") == 0 ||
					   strcmp(to, "shipped") == 0))
		holds = order_holds(order_id, &n, &nres);

	if (strcmp(to, "paid") == 0)
	{
		/* a paid order keeps its stock until shipped or cancelled */
		if (ShopHoldsKeep(holds, n, DT_NOEND) < nres)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_INSUFFICIENT_STOCK),
					 errmsg("stock holds of the order are gone"),
					 errdetail("The stock holds of order %s expired or were released before payment.",
							   uuid_str(order_id)),
					 errhint("Void or refund the payment at the gateway, and cancel the order.")));
		order_payments(order_id, "captured", (const char *const[]) {"pending", "authorized"}, 2);
	}
	else if (strcmp(to, "cancelled") == 0)
	{
		(void) ShopHoldsRelease(holds, n);
		order_payments(order_id, "voided", (const char *const[]) {"pending", "authorized"}, 2);
	}
	else if (strcmp(to, "shipped") == 0)
	{
		/* the units leave; a hold released or expired meanwhile is 55000 */
		if (ShopHoldsCommit(holds, n) < nres)
			ShopHoldsCheckSettled(holds, n);
	}
	else if (strcmp(to, "returned") == 0)
		order_restock(order_id);
	else if (strcmp(to, "refunded") == 0)
		order_payments(order_id, "refunded", (const char *const[]) {"captured"}, 1);
}

/*
 * The order row moves to its new status, its history gets the event and
 * the outbox "order.<to>".
 */
static void
order_record(Datum order_id, const char *from, const char *to, const char *note,
			 const char *carrier, const char *tracking, Datum customer, bool cust_null,
			 Datum total)
{
	Datum		args[6];
	char		nulls[6];
	int32		seq;

	args[0] = order_id;
	args[1] = CStringGetTextDatum(to);
	args[2] = carrier ? CStringGetTextDatum(carrier) : (Datum) 0;
	args[3] = tracking ? CStringGetTextDatum(tracking) : (Datum) 0;
	memcpy(nulls, "  nn", 4);
	if (carrier)
		nulls[2] = ' ';
	if (tracking)
		nulls[3] = ' ';
	/* no row: a BEFORE trigger skipped the update (it crashed reading row 0) */
	if (ShopExec(&st_order_upd, args, nulls, 1) != 1)
		ShopTriggerChangedRow("order", "the transition", uuid_str(order_id));
	seq = (int32) ShopColInt(0, 1, 0);

	args[0] = order_id;
	args[1] = Int32GetDatum(seq);
	args[2] = CStringGetTextDatum(from);
	args[3] = CStringGetTextDatum(to);
	args[4] = note ? CStringGetTextDatum(note) : (Datum) 0;
	memcpy(nulls, "    n", 5);
	if (note)
		nulls[4] = ' ';
	ShopExec(&st_event_ins, args, nulls, 0);

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
	ShopExec(&st_emit_transition, args, nulls, 0);
}

/*
 * ShopOrderTransition: apply one transition with its side effects, event
 * and outbox message.  SPI must be connected.
 */
void
ShopOrderTransition(Datum order_id, const char *to, const char *note,
					const char *carrier, const char *tracking)
{
	char	   *from;
	bool		was_paid,
				needs_review,
				cust_null,
				isnull;
	Datum		customer,
				total;
	int64		nholds;

	check_status_name(to);
	lock_order(order_id);
	from = ShopColText(0, 1);
	was_paid = ShopColBool(0, 2, false);
	needs_review = ShopColBool(0, 3, false);
	nholds = ShopColInt(0, 4, 0);
	customer = ShopCol(0, 5, &cust_null);
	total = ShopCol(0, 6, &isnull);

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

	order_side_effects(order_id, to, nholds);
	order_record(order_id, from, to, note, carrier, tracking, customer, cust_null, total);
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

	ShopRequireArg(fcinfo, 0, "order_id");
	ShopRequireArg(fcinfo, 1, "to_status");
	to = opt_text_arg(fcinfo, 1, "to_status", 20);
	note = opt_text_arg(fcinfo, 2, "note", 1000);
	SPI_connect();
	ShopOrderTransition(PG_GETARG_DATUM(0), to, note, NULL, NULL);
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

	ShopRequireArg(fcinfo, 0, "order_id");
	ShopRequireArg(fcinfo, 1, "carrier");
	ShopRequireArg(fcinfo, 2, "tracking_number");
	carrier = opt_text_arg(fcinfo, 1, "carrier", 100);
	tracking = opt_text_arg(fcinfo, 2, "tracking_number", 100);
	SPI_connect();
	ShopOrderTransition(PG_GETARG_DATUM(0), "shipped",
						psprintf("shipped with %s, tracking number %s", carrier, tracking),
						carrier, tracking);
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

	ShopRequireArg(fcinfo, 0, "order_id");
	ShopRequireArg(fcinfo, 1, "approve");
	order_id = PG_GETARG_DATUM(0);
	SPI_connect();
	lock_order(order_id);
	status = ShopColText(0, 1);
	if (!DatumGetBool(ShopCol(0, 3, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_INVALID_TRANSITION),
				 errmsg("order is not awaiting fraud review"),
				 errdetail("Order %s is %s and was not flagged, or was reviewed already.",
						   uuid_str(order_id), status)));
	args[0] = order_id;
	if (ShopExec(&st_review_clear, args, NULL, 1) != 1)
		ShopTriggerChangedRow("order", "the review", uuid_str(order_id));
	seq = DatumGetInt32(ShopCol(0, 1, &isnull));
	customer = ShopCol(0, 3, &cust_null);
	total = ShopCol(0, 4, &isnull);
	if (PG_GETARG_BOOL(1))
	{
		args[0] = order_id;
		args[1] = Int32GetDatum(seq);
		args[2] = CStringGetTextDatum(status);
		args[3] = CStringGetTextDatum(status);
		args[4] = CStringGetTextDatum("fraud review: approved");
		ShopExec(&st_event_ins, args, NULL, 0);
		args[0] = order_id;
		args[1] = customer;
		args[2] = CStringGetTextDatum(status);
		args[3] = total;
		memcpy(nulls, "    ", 4);
		if (cust_null)
			nulls[1] = 'n';
		ShopExec(&st_emit_review, args, nulls, 0);
	}
	else
	{
		args[0] = order_id;
		args[1] = Int32GetDatum(seq);
		args[2] = CStringGetTextDatum(status);
		args[3] = CStringGetTextDatum(status);
		args[4] = CStringGetTextDatum("fraud review: rejected");
		ShopExec(&st_event_ins, args, NULL, 0);
		ShopOrderTransition(order_id, "cancelled", "rejected by fraud review", NULL, NULL);
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

	ShopRequireArg(fcinfo, 0, "order_id");
	ShopRequireArg(fcinfo, 1, "provider_ref");
	order_id = PG_GETARG_DATUM(0);
	ref = opt_text_arg(fcinfo, 1, "provider_ref", 200);
	SPI_connect();
	lock_order(order_id);
	status = ShopColText(0, 1);
	args[0] = order_id;
	args[1] = CStringGetTextDatum(ref);
	if (strcmp(status, "pending") != 0)
	{
		ShopExec(&st_pay_confirmed, args, NULL, 1);
		if (SPI_processed == 1)
		{
			SPI_finish();
			PG_RETURN_TEXT_P(cstring_to_text(status));
		}
		invalid_transition(order_id, status, "paid", NULL);
	}
	ShopExec(&st_pay_confirm, args, NULL, 0);
	provider = SPI_processed > 0 ? ShopColText(0, 1) : "the gateway";
	ShopOrderTransition(order_id, "paid", psprintf("payment confirmed by %s", provider),
						NULL, NULL);
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

	ShopRequireArg(fcinfo, 0, "order_id");
	ShopRequireArg(fcinfo, 1, "reason");
	order_id = PG_GETARG_DATUM(0);
	reason = opt_text_arg(fcinfo, 1, "reason", 500);
	SPI_connect();
	lock_order(order_id);
	status = ShopColText(0, 1);
	args[0] = order_id;
	if (strcmp(status, "pending") != 0)
	{
		if (strcmp(status, "cancelled") == 0)
		{
			ShopExec(&st_pay_failed, args, NULL, 1);
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
	ShopExec(&st_pay_fail, args, NULL, 0);
	provider = SPI_processed > 0 ? ShopColText(0, 1) : "gateway";
	ShopOrderTransition(order_id, "cancelled", psprintf("payment failed: %s", reason),
						NULL, NULL);
	args[0] = order_id;
	args[1] = CStringGetTextDatum(provider);
	args[2] = CStringGetTextDatum(reason);
	ShopExec(&st_emit_payfail, args, NULL, 0);
	(void) ShopCheckPaymentFailures();
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text("cancelled"));
}

/*
 * Outbox payloads built here rather than by jsonb_build_object in the
 * statement, which looks up how to convert each argument's type and turns
 * numbers into text and back (about 30,000 instructions an event).  The
 * same jsonb: pushJsonbValue sorts the keys as jsonb does.
 */
static void
jb_key(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
}

static void
jb_text(JsonbParseState **st, const char *key, const char *val)
{
	JsonbValue	v;

	jb_key(st, key);
	if (val == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) val;
		v.val.string.len = strlen(val);
	}
	pushJsonbValue(st, WJB_VALUE, &v);
}

static void
jb_int(JsonbParseState **st, const char *key, int64 val, bool isnull)
{
	JsonbValue	v;

	jb_key(st, key);
	if (isnull)
		v.type = jbvNull;
	else
	{
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(val);
	}
	pushJsonbValue(st, WJB_VALUE, &v);
}

static void
jb_bool(JsonbParseState **st, const char *key, bool val)
{
	JsonbValue	v;

	jb_key(st, key);
	v.type = jbvBool;
	v.val.boolean = val;
	pushJsonbValue(st, WJB_VALUE, &v);
}

static Jsonb *
jb_end(JsonbParseState **st)
{
	return JsonbValueToJsonb(pushJsonbValue(st, WJB_END_OBJECT, NULL));
}

/* ---------------------------------------------------------------------
 * Checkout, step by step (the steps of the file header)
 * ---------------------------------------------------------------------
 */

/* What the caller asked for: the arguments, checked. */
typedef struct CheckoutRequest
{
	Datum		cart_id;
	char	   *cart_str;
	char	   *token;
	char	   *key;
	Jsonb	   *address;		/* NULL: none */
	char	   *address_text;	/* "" when none */
	ShopPayToken pt;
	bool		keyed;			/* 1.1: the rows get customer_key */
} CheckoutRequest;

/* The cart: its customer and the lines to order, in product order. */
typedef struct CheckoutCart
{
	int64		customer;
	bool		guest;			/* anonymous cart: no customer */
	int64		key;			/* customer_key of the order's rows (1.1) */
	int			nlines;
	ShopHold   *holds;			/* product, qty; reservation id once reserved */
	Datum	   *sku;
	Datum	   *title;
	int64	   *price;
	int64		subtotal;
} CheckoutCart;

/* Money and risk. */
typedef struct CheckoutMoney
{
	int64		shipping;
	int64		tax;
	int64		total;
	double		score;
	Datum		reasons;
	bool		review;
} CheckoutMoney;

/* The arguments: card numbers are refused before anything else looks at them. */
static void
checkout_request(FunctionCallInfo fcinfo, CheckoutRequest *req)
{
	ShopRequireArg(fcinfo, 0, "cart_id");
	ShopRequireArg(fcinfo, 1, "payment_token");
	ShopRequireArg(fcinfo, 2, "idempotency_key");
	req->cart_id = PG_GETARG_DATUM(0);
	ShopCheckArgText(PG_GETARG_TEXT_PP(1), "payment_token", 200, false);
	ShopCheckArgText(PG_GETARG_TEXT_PP(2), "idempotency_key", 200, false);
	req->address = NULL;
	req->address_text = "";
	if (!PG_ARGISNULL(3))
	{
		req->address = PG_GETARG_JSONB_P(3);
		req->address_text = ShopCheckShippingAddress(req->address);
	}
	req->token = text_to_cstring(PG_GETARG_TEXT_PP(1));
	req->key = text_to_cstring(PG_GETARG_TEXT_PP(2));
	ShopParsePaymentToken(req->token, &req->pt);
	req->cart_str = uuid_str(req->cart_id);
}

/* the cart row as st_cart_lock returns it */
typedef struct CartLocked
{
	bool		guest;			/* customer_id NULL */
	int64		customer;
	char	   *status;
	bool		live;			/* expires_at > now() after the update */
	bool		merged_null;
	pg_uuid_t	merged;
	TimestampTz expires_at;
} CartLocked;

static int	cart_lock_c(Datum cart_id, Datum expiry, CartLocked *out);
static int	idem_claim_c(const Datum *args, bool keyed);

/*
 * Steps 1 and 2: lock the cart, check that the caller may act for its
 * customer, claim the idempotency key for order_id.  Returns false, with
 * the order in *existing, when the key already names an order made with
 * the same request (SH003 when with another).  Then checks that the cart
 * is open and unexpired.
 */
static bool
checkout_claim(CheckoutRequest *req, CheckoutCart *cart, Datum order_id, pg_uuid_t *existing)
{
	Datum		args[5];
	bool		isnull;
	Datum		c;
	char	   *status;
	bool		live;
	bool		merged_null;
	Datum		merged;
	char	   *expired_at;
	CartLocked	locked;
	int			found;
	int64		claimed;
	bool		by_c = false;

	args[0] = req->cart_id;
	args[1] = ShopCartExpiry();
	found = cart_lock_c(args[0], args[1], &locked);
	if (found < 0)
		found = ShopExec(&st_cart_lock, args, NULL, 1) == 1;
	else
		by_c = true;
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_NOT_FOUND),
				 errmsg("cart not found"),
				 errdetail("No cart has cart_id %s.", req->cart_str)));
	if (by_c)
	{
		cart->guest = locked.guest;
		cart->customer = locked.customer;
		status = locked.status;
		live = locked.live;
		merged_null = locked.merged_null;
		merged = UUIDPGetDatum(&locked.merged);
		/* printed below only for an expired cart's error (issue 11) */
		expired_at = NULL;
	}
	else
	{
		c = ShopCol(0, 1, &cart->guest);
		status = ShopColText(0, 2);
		live = ShopColBool(0, 3, false);
		merged = ShopCol(0, 4, &merged_null);
		expired_at = DatumGetCString(DirectFunctionCall1(timestamptz_out, ShopCol(0, 5, &isnull)));
		cart->customer = cart->guest ? 0 : DatumGetInt64(c);
	}
	ShopAuthorizeCustomer(cart->customer, cart->guest);
	cart->key = cart->guest ? ShopGuestKey(DatumGetUUIDP(req->cart_id)) : cart->customer;

	args[0] = CStringGetTextDatum(cart->guest ? psprintf("k:%s", req->cart_str)
								  : psprintf("c:" INT64_FORMAT, cart->customer));
	args[1] = CStringGetTextDatum(req->key);
	args[2] = CStringGetTextDatum(psprintf("%s|%s|%s", req->cart_str, req->token,
										   req->address_text));
	args[3] = order_id;
	args[4] = Int64GetDatum(cart->key);
	for (int attempt = 0;; attempt++)
	{
		claimed = idem_claim_c(args, req->keyed);
		if (claimed < 0)
			claimed = ShopExec(req->keyed ? &st_idem_claim_keyed : &st_idem_claim, args, NULL, 0);
		if (claimed != 0 || ShopExec(&st_idem_get, args, NULL, 1) == 1)
			break;

		/*
		 * Not claimed and not there.  Once: shop.sweep() deleted the key,
		 * older than shop.idempotency_retention, between the claim and the
		 * read (specs/idempotency_expiry); the key is free, claim it.
		 * Again: a trigger skipped the row or changed its key.
		 */
		if (attempt > 0)
			ShopTriggerChangedRow("idempotency", "checkout", req->key);
	}
	if (claimed == 0)
	{
		if (!ShopColBool(0, 1, false))
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_IDEMPOTENCY_CONFLICT),
					 errmsg("idempotency key reused with a different request"),
					 errdetail("Key \"%s\" was first used with another cart, payment token or shipping address.",
							   req->key),
					 errhint("Use a new idempotency key for a new request.")));
		c = ShopCol(0, 2, &isnull);
		if (isnull)
			elog(ERROR, "idempotency key without an order");
		memcpy(existing, DatumGetUUIDP(c), sizeof(pg_uuid_t));
		return false;
	}

	if (status == NULL || strcmp(status, "open") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_NOT_FOUND),
				 errmsg("cart not found"),
				 merged_null ? errdetail("Cart %s is %s.", req->cart_str, status)
				 : errdetail("Cart %s was merged into cart %s.", req->cart_str, uuid_str(merged))));
	if (!live)
	{
		if (expired_at == NULL)
			expired_at = DatumGetCString(DirectFunctionCall1(timestamptz_out,
															 TimestampTzGetDatum(locked.expires_at)));
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_NOT_FOUND),
				 errmsg("cart not found"),
				 errdetail("Cart %s expired at %s.", req->cart_str, expired_at)));
	}
	return true;
}

/* ---------------------------------------------------------------------
 * Shipping, tax and the fraud rules' inputs, read in C (issue 11)
 *
 * Each of these was a subquery of checkout's money statement: an
 * executor start and end of its own (a Limit, a Sort, an Aggregate, a
 * scan) for a row or two.  Read here with a scan of the table or a walk
 * of the index the subquery's plan used, under a snapshot taken as SPI
 * takes one for a statement.
 * ---------------------------------------------------------------------
 */

/* the attribute number of a column, 0 when there is none */
static AttrNumber
rel_column(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		/* (the first byte first: most columns differ there, issue 11) */
		if (!a->attisdropped && NameStr(a->attname)[0] == name[0] &&
			strcmp(NameStr(a->attname), name) == 0)
			return a->attnum;
	}
	return 0;
}

/* a table of schema shop, locked for reading */
#define shop_table(name) shop_table_lock(name, AccessShareLock)

/* a table of schema shop, locked in mode */
static Relation
shop_table_lock(const char *name, LOCKMODE mode)
{
	Oid			relid = ShopRelid(name, NULL);

	if (!OidIsValid(relid))
		elog(ERROR, "shop: relation \"shop.%s\" does not exist", name);
	return table_open(relid, mode);
}

/*
 * Whether the current user reads rel as a statement of its own would, with
 * the SELECT privilege and without row security (the owner, as checkout
 * runs: SECURITY DEFINER).  Otherwise the statement does the reading.
 */
static bool
plain_read(Relation rel)
{
	return pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), ACL_SELECT) == ACLCHECK_OK &&
		check_enable_rls(RelationGetRelid(rel), InvalidOid, true) != RLS_ENABLED;
}

/* a rate table read by the rules: refused as a SELECT would refuse it */
static void
rate_table_check(Relation rel)
{
	AclResult	aclresult = pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), ACL_SELECT);

	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, RelationGetRelationName(rel));
	if (check_enable_rls(RelationGetRelid(rel), InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("row security on shop.%s is not supported", RelationGetRelationName(rel)),
				 errdetail("The shipping and tax rules read every row of shop.shipping_rate and shop.tax_rate.")));
}

/* address->>key (NULL when the address or the key is missing, or JSON null) */
static text *
address_field(Jsonb *address, const char *key)
{
	LOCAL_FCINFO(f, 2);
	Datum		r;

	if (address == NULL)
		return NULL;
	InitFunctionCallInfoData(*f, NULL, 2, InvalidOid, NULL, NULL);
	f->args[0].value = JsonbPGetDatum(address);
	f->args[0].isnull = false;
	f->args[1].value = CStringGetTextDatum(key);
	f->args[1].isnull = false;
	r = jsonb_object_field_text(f);
	return f->isnull ? NULL : DatumGetTextPP(r);
}

/* upper(address->>'country'), as SQL's upper() makes it; NULL as above */
static text *
address_country(Jsonb *address)
{
	text	   *c = address_field(address, "country");

	if (c == NULL)
		return NULL;
	return DatumGetTextPP(DirectFunctionCall1Coll(upper, DEFAULT_COLLATION_OID, PointerGetDatum(c)));
}

/* a text column of the slot equals t (= under a deterministic collation: bytewise) */
static bool
slot_text_eq(TupleTableSlot *slot, AttrNumber att, text *t, bool *isnull)
{
	Datum		d = slot_getattr(slot, att, isnull);
	text	   *v;

	if (*isnull || t == NULL)
		return false;
	v = DatumGetTextPP(d);
	return VARSIZE_ANY_EXHDR(v) == VARSIZE_ANY_EXHDR(t) &&
		memcmp(VARDATA_ANY(v), VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)) == 0;
}

/*
 * Shipping (docs/orders.md), the one definition of the rule, which
 * checkout and shop._shipping_cents apply: among the rows of
 * shop.shipping_rate for the address's country or for any (country NULL),
 * whose min_subtotal_cents is not above the subtotal, a country's row
 * beats a catch-all one, then the highest min_subtotal_cents wins (unique
 * per country); its cents, 0 when no row matches.  That is
 *     coalesce((SELECT r.cents FROM shop.shipping_rate r
 *                WHERE (r.country IS NULL OR r.country = upper(address->>'country'))
 *                  AND r.min_subtotal_cents <= subtotal
 *                ORDER BY r.country IS NULL, r.min_subtotal_cents DESC LIMIT 1), 0)
 */
static int64
shipping_cents(int64 subtotal, bool subtotal_null, Jsonb *address, Snapshot snap)
{
	Relation	rel;
	TupleDesc	desc;
	AttrNumber	a_country,
				a_min,
				a_cents;
	text	   *country;
	TableScanDesc scan;
	TupleTableSlot *slot;
	bool		found = false;
	bool		best_any = false;
	int64		best_min = 0;
	int64		best_cents = 0;

	if (subtotal_null)
		return 0;				/* min_subtotal_cents <= NULL: no row */
	country = address_country(address);
	rel = shop_table("shipping_rate");
	rate_table_check(rel);
	desc = RelationGetDescr(rel);
	a_country = rel_column(desc, "country");
	a_min = rel_column(desc, "min_subtotal_cents");
	a_cents = rel_column(desc, "cents");
	if (a_country == 0 || a_min == 0 || a_cents == 0)
		elog(ERROR, "shop.shipping_rate lacks a column of the shipping rule");
	scan = table_beginscan(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		bool		any;
		int64		min;
		Datum		d;

		(void) slot_getattr(slot, a_country, &isnull);
		any = isnull;
		if (!any && !slot_text_eq(slot, a_country, country, &isnull))
			continue;
		d = slot_getattr(slot, a_min, &isnull);
		if (isnull || DatumGetInt64(d) > subtotal)
			continue;
		min = DatumGetInt64(d);
		/* ORDER BY country IS NULL, min_subtotal_cents DESC */
		if (found && (any > best_any || (any == best_any && min <= best_min)))
			continue;
		d = slot_getattr(slot, a_cents, &isnull);
		found = true;
		best_any = any;
		best_min = min;
		best_cents = isnull ? 0 : DatumGetInt64(d);	/* coalesce(NULL, 0) */
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	table_close(rel, NoLock);
	return best_cents;
}

/*
 * Tax (docs/orders.md), the one definition of the rule: the row of
 * shop.tax_rate for the address's country and region (address->>'region',
 * else ->>'state'), else for its country (region NULL), else the catch-all
 * (both NULL); round(subtotal * basis_points / 10000), halves away from
 * zero, as numeric arithmetic rounds; 0 when no row matches.  That is
 *     coalesce((SELECT round(subtotal::numeric * r.basis_points / 10000)::bigint
 *                 FROM shop.tax_rate r
 *                WHERE (r.country IS NULL OR r.country = upper(address->>'country'))
 *                  AND (r.region IS NULL
 *                       OR r.region = coalesce(address->>'region', address->>'state'))
 *                ORDER BY r.country IS NULL, r.region IS NULL LIMIT 1), 0)
 * (country and region are unique together, and a region needs a country,
 * so no two rows tie.)  Integer arithmetic while the product fits an
 * int64, numeric's beyond.
 */
static int64
tax_cents(int64 subtotal, bool subtotal_null, Jsonb *address, Snapshot snap)
{
	Relation	rel;
	TupleDesc	desc;
	AttrNumber	a_country,
				a_region,
				a_bp;
	text	   *country;
	text	   *region;
	TableScanDesc scan;
	TupleTableSlot *slot;
	bool		found = false;
	int			best_rank = 0;
	bool		bp_null = true;
	int64		bp = 0;
	int64		x;
	int64		q;

	country = address_country(address);
	region = address_field(address, "region");
	if (region == NULL)
		region = address_field(address, "state");
	rel = shop_table("tax_rate");
	rate_table_check(rel);
	desc = RelationGetDescr(rel);
	a_country = rel_column(desc, "country");
	a_region = rel_column(desc, "region");
	a_bp = rel_column(desc, "basis_points");
	if (a_country == 0 || a_region == 0 || a_bp == 0)
		elog(ERROR, "shop.tax_rate lacks a column of the tax rule");
	scan = table_beginscan(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		bool		cnull;
		bool		rnull;
		int			rank;
		Datum		d;

		(void) slot_getattr(slot, a_country, &cnull);
		if (!cnull && !slot_text_eq(slot, a_country, country, &isnull))
			continue;
		(void) slot_getattr(slot, a_region, &rnull);
		if (!rnull && !slot_text_eq(slot, a_region, region, &isnull))
			continue;
		/* ORDER BY country IS NULL, region IS NULL: the lower rank first */
		rank = (cnull ? 2 : 0) + (rnull ? 1 : 0);
		if (found && rank >= best_rank)
			continue;
		d = slot_getattr(slot, a_bp, &isnull);
		found = true;
		best_rank = rank;
		bp_null = isnull;
		bp = isnull ? 0 : DatumGetInt32(d);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	table_close(rel, NoLock);
	if (!found || bp_null || subtotal_null)
		return 0;				/* coalesce(NULL, 0) */
	if (pg_mul_s64_overflow(subtotal, bp, &x))
	{
		/* past an int64 (a subtotal over 9e14): the numeric arithmetic itself */
		Datum		r = DirectFunctionCall2(numeric_mul, NumericGetDatum(int64_to_numeric(subtotal)),
										  NumericGetDatum(int64_to_numeric(bp)));

		r = DirectFunctionCall2(numeric_div, r, NumericGetDatum(int64_to_numeric(10000)));
		r = DirectFunctionCall2(numeric_round, r, Int32GetDatum(0));
		return DatumGetInt64(DirectFunctionCall1(numeric_int8, r));
	}
	q = x / 10000;
	if (x % 10000 >= 5000)
		q++;
	else if (x % 10000 <= -5000)
		q--;
	return q;
}

/* the attribute numbers and the check that an index is as shop made it */
static bool
index_is(Relation rel, Relation idx, AttrNumber a0, Oid t0, bool desc0,
		 AttrNumber a1, Oid t1, bool desc1)
{
	return idx->rd_index->indrelid == RelationGetRelid(rel) &&
		idx->rd_rel->relam == BTREE_AM_OID &&
		IndexRelationGetNumberOfKeyAttributes(idx) == 2 &&
		a0 != 0 && a1 != 0 &&
		idx->rd_index->indkey.values[0] == a0 && idx->rd_index->indkey.values[1] == a1 &&
		idx->rd_opcintype[0] == t0 && idx->rd_opcintype[1] == t1 &&
		((idx->rd_indoption[0] & INDOPTION_DESC) != 0) == desc0 &&
		((idx->rd_indoption[1] & INDOPTION_DESC) != 0) == desc1 &&
		heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL) &&
		heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL);
}

/* an index of schema shop on rel, locked for reading; NULL when there is none */
static Relation
shop_index(Relation rel, const char *name)
{
	Oid			idxid;
	char		kind;

	if (RelationGetNamespace(rel) == ShopNamespace())
		idxid = ShopRelid(name, &kind);
	else
	{
		idxid = get_relname_relid(name, RelationGetNamespace(rel));
		kind = OidIsValid(idxid) ? get_rel_relkind(idxid) : '\0';
	}
	if (!OidIsValid(idxid) || kind != RELKIND_INDEX)
		return NULL;
	return index_open(idxid, AccessShareLock);
}

/* ---------------------------------------------------------------------
 * Step 1 in C: the cart's lock and expiry push (issue 11)
 * ---------------------------------------------------------------------
 */


/* the columns of shop.cart the update reads or writes */
enum
{
	CART_ID, CART_CUSTOMER, CART_STATUS, CART_MERGED, CART_UPDATED, CART_EXPIRES, CART_NCOLS
};
static const char *const cart_col_names[CART_NCOLS] = {
	"cart_id", "customer_id", "status", "merged_into", "updated_at", "expires_at"
};
static const Oid cart_col_types[CART_NCOLS] = {
	UUIDOID, INT8OID, TEXTOID, UUIDOID, TIMESTAMPTZOID, TIMESTAMPTZOID
};

/*
 * Whether every UPDATE trigger of rel fires for an update done by
 * ExecSimpleRelationUpdate as for the statement: row triggers do (BEFORE
 * ROW: the card guard, zz_card_guard; AFTER ROW: the foreign key of
 * shop.cart_item), statement triggers, INSTEAD OF triggers and transition
 * tables do not, so the statement runs where there is one.
 */
static bool
update_triggers_plain(Relation rel)
{
	TriggerDesc *td = rel->trigdesc;

	return td == NULL ||
		!(td->trig_update_before_statement || td->trig_update_after_statement ||
		  td->trig_update_instead_row || td->trig_update_old_table || td->trig_update_new_table);
}

/* the new version of the cart row locked in old, as st_cart_lock's SET makes it */
static void
cart_lock_new_version(TupleTableSlot *old, TupleTableSlot *ns, const AttrNumber *att,
					  Datum expiry, TimestampTz now)
{
	int			natts = ns->tts_tupleDescriptor->natts;
	bool		isnull;
	Datum		st;
	Datum		exp;
	bool		push;

	slot_getallattrs(old);
	ExecClearTuple(ns);
	memcpy(ns->tts_values, old->tts_values, sizeof(Datum) * natts);
	memcpy(ns->tts_isnull, old->tts_isnull, sizeof(bool) * natts);
	st = old->tts_values[att[CART_STATUS] - 1];
	isnull = old->tts_isnull[att[CART_STATUS] - 1];
	exp = old->tts_values[att[CART_EXPIRES] - 1];
	/* status = 'open' AND expires_at > now(): NULL counts as false in CASE */
	push = !isnull && !old->tts_isnull[att[CART_EXPIRES] - 1] &&
		VARSIZE_ANY_EXHDR(DatumGetPointer(st)) == 4 &&
		memcmp(VARDATA_ANY(DatumGetPointer(st)), "open", 4) == 0 &&
		DatumGetTimestampTz(exp) > now;
	if (push)
	{
		ns->tts_values[att[CART_UPDATED] - 1] = TimestampTzGetDatum(now);
		ns->tts_isnull[att[CART_UPDATED] - 1] = false;
		ns->tts_values[att[CART_EXPIRES] - 1] = expiry;
		ns->tts_isnull[att[CART_EXPIRES] - 1] = false;
	}
	ExecStoreVirtualTuple(ns);
}

/*
 * The work of st_cart_lock without the executor's plan (132,000
 * instructions of a checkout, most of them the plan's start and end and
 * the parsing of the table's CHECK constraints): a walk of cart_pkey for
 * the cart, the row updated as UPDATE updates it, under a snapshot taken
 * as SPI takes one for a statement.  As the executor's UPDATE: the heap
 * update is tried on the version the snapshot sees; when a transaction
 * that committed since changed it, under READ COMMITTED the newest
 * version is locked (what EvalPlanQual does), judged again (still this
 * cart) and the SET computed from it; under REPEATABLE READ that is
 * 40001, and a cart deleted meanwhile is not found.  The row is written
 * with its CHECK constraints checked (ExecConstraints: status and the
 * positive customer_id), new index entries where the update is not HOT,
 * the replica identity check of a published table, and the foreign key's
 * AFTER ROW trigger (cart_item's, skipped when the key did not change, as
 * UPDATE skips it).  SELECT and UPDATE on the columns are checked as the
 * executor checks them.
 *
 * Returns -1, having done nothing, where the statement must do it: not a
 * plain table (or a partition), Citus loaded, a rule, any UPDATE trigger
 * other than a foreign key's, stored generated columns, row security for
 * the user, a privilege missing (the statement raises the error), a
 * cart_pkey not led by cart_id; otherwise 0 (no such cart) or 1.
 */
static int
cart_lock_c(Datum cart_id, Datum expiry, CartLocked *out)
{
	Relation	rel = shop_table_lock("cart", RowExclusiveLock);	/* UPDATE's lock */
	Relation	idx = shop_index(rel, "cart_pkey");
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	att[CART_NCOLS];
	bool		ok;
	RangeTblEntry *rte = NULL;
	EState	   *estate;
	ResultRelInfo *rri;
	EPQState	epq;
	TupleTableSlot *scanslot;
	TupleTableSlot *lockslot;
	TupleTableSlot *newslot;
	Snapshot	snap;
	CommandId	cid;
	ScanKeyData key;
	IndexScanDesc scan;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	bool		found;
	int			result = 0;

	ShopCheckWritable("UPDATE");
	ok = idx != NULL && rel->rd_rel->relkind == RELKIND_RELATION &&
		!rel->rd_rel->relispartition && rel->rd_rules == NULL &&
		update_triggers_plain(rel) &&
		!(desc->constr != NULL && desc->constr->has_generated_stored) &&
		!(shared_preload_libraries_string != NULL &&
		  strstr(shared_preload_libraries_string, "citus") != NULL) &&
		check_enable_rls(RelationGetRelid(rel), InvalidOid, true) != RLS_ENABLED &&
		idx->rd_index->indrelid == RelationGetRelid(rel) &&
		idx->rd_rel->relam == BTREE_AM_OID &&
		idx->rd_opcintype[0] == UUIDOID &&
		heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL) &&
		heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL);
	for (int c = 0; ok && c < CART_NCOLS; c++)
	{
		att[c] = rel_column(desc, cart_col_names[c]);
		ok = att[c] != 0 && TupleDescAttr(desc, att[c] - 1)->atttypid == cart_col_types[c];
	}
	ok = ok && idx->rd_index->indkey.values[0] == att[CART_ID];
	if (ok)
	{
		rte = makeNode(RangeTblEntry);
		rte->rtekind = RTE_RELATION;
		rte->relid = RelationGetRelid(rel);
		rte->relkind = rel->rd_rel->relkind;
		rte->rellockmode = RowExclusiveLock;
		rte->requiredPerms = ACL_SELECT | ACL_UPDATE;
		for (int c = 0; c < CART_NCOLS; c++)
			rte->selectedCols = bms_add_member(rte->selectedCols,
											   att[c] - FirstLowInvalidHeapAttributeNumber);
		rte->updatedCols = bms_add_member(bms_make_singleton(att[CART_UPDATED] -
															 FirstLowInvalidHeapAttributeNumber),
										  att[CART_EXPIRES] - FirstLowInvalidHeapAttributeNumber);
		ok = ExecCheckRTPerms(list_make1(rte), false);
	}
	if (!ok)
	{
		if (idx != NULL)
			index_close(idx, NoLock);
		table_close(rel, NoLock);
		return -1;
	}

	/* as SPI starts a statement: the commands before it seen, a new snapshot */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	snap = GetActiveSnapshot();
	cid = GetCurrentCommandId(true);
	estate = CreateExecutorState();
	estate->es_snapshot = snap;
	estate->es_output_cid = cid;
	ExecInitRangeTable(estate, list_make1(rte));
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	estate->es_opened_result_relations = lappend(estate->es_opened_result_relations, rri);
	ShopPrepareChecks(rri, estate);
	EvalPlanQualInit(&epq, estate, NULL, NIL, -1);
	scanslot = ExecInitExtraTupleSlot(estate, desc, table_slot_callbacks(rel));
	lockslot = ExecInitExtraTupleSlot(estate, desc, table_slot_callbacks(rel));
	newslot = ExecInitExtraTupleSlot(estate, desc, ShopWriteSlotOps(rel));
	AfterTriggerBeginQuery();
	ShopOpenIndices(rri, estate, false);

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, cart_id);
	scan = index_beginscan(rel, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, scanslot);
	index_endscan(scan);
	if (found)
	{
		bool		isnull;
		Datum		d;

		found = ShopLockForUpdate(rel, &scanslot->tts_tid, snap, lockslot, cid, "a cart");
		if (found)
		{
			d = slot_getattr(lockslot, att[CART_ID], &isnull);
			found = !isnull &&
				memcmp(DatumGetUUIDP(d), DatumGetUUIDP(cart_id), sizeof(pg_uuid_t)) == 0;
		}
		if (found)
		{
			cart_lock_new_version(lockslot, newslot, att, expiry, now);
			ExecMaterializeSlot(newslot);
			ItemPointerSetInvalid(&newslot->tts_tid);
			ExecSimpleRelationUpdate(rri, estate, &epq, lockslot, newslot);
			/* a BEFORE trigger that returned NULL: no row, as UPDATE returns none */
			if (ItemPointerIsValid(&newslot->tts_tid))
				result = 1;
		}
	}
	if (result == 1)
	{
		Datum	   *v;
		bool	   *n;

		slot_getallattrs(newslot);
		v = newslot->tts_values;
		n = newslot->tts_isnull;
		out->guest = n[att[CART_CUSTOMER] - 1];
		out->customer = out->guest ? 0 : DatumGetInt64(v[att[CART_CUSTOMER] - 1]);
		out->status = n[att[CART_STATUS] - 1] ? NULL : TextDatumGetCString(v[att[CART_STATUS] - 1]);
		out->merged_null = n[att[CART_MERGED] - 1];
		if (!out->merged_null)
			memcpy(&out->merged, DatumGetUUIDP(v[att[CART_MERGED] - 1]), sizeof(pg_uuid_t));
		out->expires_at = DatumGetTimestampTz(v[att[CART_EXPIRES] - 1]);
		out->live = out->expires_at > now;
	}
	ExecCloseIndices(rri);
	AfterTriggerEndQuery(estate);
	EvalPlanQualEnd(&epq);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	PopActiveSnapshot();
	/* the update is seen by the statements that follow in this transaction */
	CommandCounterIncrement();
	return result;
}

/* ---------------------------------------------------------------------
 * Step 2 in C: the idempotency claim (issue 11)
 * ---------------------------------------------------------------------
 */

enum
{
	IDEM_SCOPE, IDEM_KEY, IDEM_FINGERPRINT, IDEM_ORDER, IDEM_CREATED, IDEM_CUSTOMER_KEY, IDEM_NCOLS
};
static const char *const idem_col_names[IDEM_NCOLS] = {
	"scope", "key", "fingerprint", "order_id", "created_at", "customer_key"
};
static const Oid idem_col_types[IDEM_NCOLS] = {
	TEXTOID, TEXTOID, TEXTOID, UUIDOID, TIMESTAMPTZOID, INT8OID
};

/* the text of a created_at default found to be now(), once per backend */
static char *idem_now_default = NULL;

/* whether the default of column att of rel is now() */
static bool
default_is_now(Relation rel, AttrNumber att)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	const char *bin = NULL;
	Node	   *n;
	bool		is_now;

	if (constr == NULL)
		return false;
	for (int i = 0; i < constr->num_defval; i++)
		if (constr->defval[i].adnum == att)
			bin = constr->defval[i].adbin;
	if (bin == NULL)
		return false;
	if (idem_now_default != NULL && strcmp(idem_now_default, bin) == 0)
		return true;
	n = stringToNode(bin);
	is_now = IsA(n, FuncExpr) && ((FuncExpr *) n)->funcid == F_NOW &&
		((FuncExpr *) n)->args == NIL;
	if (is_now)
		idem_now_default = MemoryContextStrdup(TopMemoryContext, bin);
	return is_now;
}

/*
 * The work of st_idem_claim(_keyed), INSERT ... ON CONFLICT (scope, key
 * [, customer_key]) DO NOTHING, without the executor's plan (80,000
 * instructions of a checkout, most of them the plan's start and end), done
 * as the executor's INSERT does it: the BEFORE ROW triggers (the
 * customer_key trigger and the card guard), the NOT NULL and CHECK
 * constraints (the key's length), then the speculative insertion of ON
 * CONFLICT: the primary key checked for a row with the same key first
 * (ExecCheckIndexConstraints, which waits for a transaction still
 * inserting one: the wait of specs/idempotency), the row inserted under
 * a speculative insertion lock, its index entries, and the insertion
 * confirmed, or undone and started again when another transaction
 * inserted the same key meanwhile; the AFTER ROW triggers.  A row found
 * with the key is "nothing done" (0), and under REPEATABLE READ a row the
 * snapshot does not see is 40001, as ON CONFLICT DO NOTHING raises it.
 * created_at is the transaction's start, as its default now() makes it.
 * The INSERT privilege on the columns given is checked as the executor
 * checks it.
 *
 * Returns -1, having done nothing, where the statement must do it: not a
 * plain table (or a partition), Citus loaded, a rule, an INSERT trigger
 * at statement level or with a transition table, row security for the
 * user, a privilege missing (the statement raises the error), a column
 * shop does not fill or a created_at default other than now(), stored
 * generated columns, a primary key other than (scope, key[,
 * customer_key]) or another unique index (which ON CONFLICT could also
 * take as arbiter).  Otherwise 1 (claimed) or 0 (the key exists, or a
 * BEFORE trigger skipped the row).
 */
static int
idem_claim_c(const Datum *args, bool keyed)
{
	Relation	rel = shop_table_lock("idempotency", RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	TriggerDesc *td = rel->trigdesc;
	AttrNumber	att[IDEM_NCOLS];
	int			ncols = keyed ? IDEM_NCOLS : IDEM_CUSTOMER_KEY;
	int			nlive = 0;
	Oid			pkoid;
	bool		ok;
	RangeTblEntry *rte = NULL;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	TupleTableSlot *tmp;
	int			result = 0;

	ShopCheckWritable("INSERT");
	ok = rel->rd_rel->relkind == RELKIND_RELATION && !rel->rd_rel->relispartition &&
		rel->rd_rules == NULL &&
		!(td != NULL && (td->trig_insert_before_statement || td->trig_insert_after_statement ||
						 td->trig_insert_instead_row || td->trig_insert_new_table)) &&
		!(desc->constr != NULL && desc->constr->has_generated_stored) &&
		!(shared_preload_libraries_string != NULL &&
		  strstr(shared_preload_libraries_string, "citus") != NULL) &&
		check_enable_rls(RelationGetRelid(rel), InvalidOid, true) != RLS_ENABLED &&
		OidIsValid(pkoid = RelationGetPrimaryKeyIndex(rel));
	for (int c = 0; ok && c < ncols; c++)
	{
		att[c] = rel_column(desc, idem_col_names[c]);
		ok = att[c] != 0 && TupleDescAttr(desc, att[c] - 1)->atttypid == idem_col_types[c];
	}
	for (int i = 0; ok && i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped)
			nlive++;
	ok = ok && nlive == ncols && default_is_now(rel, att[IDEM_CREATED]);
	if (ok)
	{
		rte = makeNode(RangeTblEntry);
		rte->rtekind = RTE_RELATION;
		rte->relid = RelationGetRelid(rel);
		rte->relkind = rel->rd_rel->relkind;
		rte->rellockmode = RowExclusiveLock;
		rte->requiredPerms = ACL_INSERT;
		for (int c = 0; c < ncols; c++)
			if (c != IDEM_CREATED)
				rte->insertedCols = bms_add_member(rte->insertedCols,
												   att[c] - FirstLowInvalidHeapAttributeNumber);
		ok = ExecCheckRTPerms(list_make1(rte), false);
	}
	if (!ok)
	{
		table_close(rel, NoLock);
		return -1;
	}

	/* as SPI starts a statement: the commands before it seen, a new snapshot */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	estate = CreateExecutorState();
	estate->es_snapshot = GetActiveSnapshot();
	estate->es_output_cid = GetCurrentCommandId(true);
	ExecInitRangeTable(estate, list_make1(rte));
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	estate->es_opened_result_relations = lappend(estate->es_opened_result_relations, rri);
	slot = ExecInitExtraTupleSlot(estate, desc, ShopWriteSlotOps(rel));
	tmp = ExecInitExtraTupleSlot(estate, desc, table_slot_callbacks(rel));
	AfterTriggerBeginQuery();
	ShopOpenIndices(rri, estate, true);

	/* the primary key on exactly (scope, key[, customer_key]), the only unique index */
	for (int i = 0; ok && i < rri->ri_NumIndices; i++)
	{
		Relation	ix = rri->ri_IndexRelationDescs[i];
		Form_pg_index ind = ix->rd_index;

		if (!ind->indisunique)
			continue;
		ok = RelationGetRelid(ix) == pkoid && ind->indnkeyatts == (keyed ? 3 : 2) &&
			ind->indkey.values[0] == att[IDEM_SCOPE] && ind->indkey.values[1] == att[IDEM_KEY] &&
			(!keyed || ind->indkey.values[2] == att[IDEM_CUSTOMER_KEY]) &&
			heap_attisnull(ix->rd_indextuple, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(ix->rd_indextuple, Anum_pg_index_indexprs, NULL);
	}
	if (ok)
	{
		ok = false;
		for (int i = 0; i < rri->ri_NumIndices; i++)
			if (RelationGetRelid(rri->ri_IndexRelationDescs[i]) == pkoid)
				ok = true;
	}
	if (ok)
	{
		Datum		v[IDEM_NCOLS];

		rri->ri_onConflictArbiterIndexes = list_make1_oid(pkoid);
		ShopPrepareChecks(rri, estate);
		v[IDEM_SCOPE] = args[0];
		v[IDEM_KEY] = args[1];
		v[IDEM_FINGERPRINT] = DirectFunctionCall1(md5_text, args[2]);
		v[IDEM_ORDER] = args[3];
		v[IDEM_CREATED] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		v[IDEM_CUSTOMER_KEY] = args[4];
		ExecClearTuple(slot);
		for (int c = 0; c < ncols; c++)
		{
			slot->tts_values[att[c] - 1] = v[c];
			slot->tts_isnull[att[c] - 1] = false;
		}
		ExecStoreVirtualTuple(slot);
		result = 1;
		if (rri->ri_TrigDesc && rri->ri_TrigDesc->trig_insert_before_row &&
			!ExecBRInsertTriggers(estate, rri, slot))
			result = 0;			/* a BEFORE trigger skipped the row */
		if (result == 1)
		{
			if (desc->constr)
				ExecConstraints(rri, slot, estate);
			for (;;)
			{
				ItemPointerData conflict;
				uint32		token;
				bool		spec_conflict = false;
				List	   *recheck;

				CHECK_FOR_INTERRUPTS();
				if (!ExecCheckIndexConstraints(rri, slot, estate, &conflict,
											   rri->ri_onConflictArbiterIndexes))
				{
					/* the key exists: nothing to do, if the snapshot may know it */
					if (IsolationUsesXactSnapshot())
					{
						bool		isnull;

						if (!table_tuple_fetch_row_version(rel, &conflict, SnapshotAny, tmp))
							elog(ERROR, "shop: the conflicting idempotency row is gone");
						if (!table_tuple_satisfies_snapshot(rel, tmp, estate->es_snapshot) &&
							!TransactionIdIsCurrentTransactionId(
								DatumGetTransactionId(slot_getsysattr(tmp, MinTransactionIdAttributeNumber,
																	  &isnull))))
							ereport(ERROR,
									(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
									 errmsg("could not serialize access due to concurrent update")));
					}
					result = 0;
					break;
				}
				token = SpeculativeInsertionLockAcquire(GetCurrentTransactionId());
				table_tuple_insert_speculative(rel, slot, estate->es_output_cid, 0, NULL, token);
				recheck = ExecInsertIndexTuples(rri, slot, estate, false, true, &spec_conflict,
												rri->ri_onConflictArbiterIndexes);
				table_tuple_complete_speculative(rel, slot, token, !spec_conflict);
				SpeculativeInsertionLockRelease(GetCurrentTransactionId());
				if (!spec_conflict)
				{
					ExecARInsertTriggers(estate, rri, slot, recheck, NULL);
					break;
				}
				list_free(recheck);
			}
		}
	}
	ExecCloseIndices(rri);
	AfterTriggerEndQuery(estate);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	PopActiveSnapshot();
	if (!ok)
		return -1;
	/* the row is seen by the statements that follow in this transaction */
	CommandCounterIncrement();
	return result;
}

#define HISTORY_PAID	50		/* the last 50 paid orders */

/*
 * order_customer_paid_idx as shop made it: (customer_id, created_at DESC)
 * WHERE was_paid, a plain btree
 */
static bool
paid_index_ok(Relation rel, Relation idx, AttrNumber a_customer, AttrNumber a_created,
			  AttrNumber a_paid)
{
	List	   *pred;
	Node	   *v;

	if (idx->rd_index->indrelid != RelationGetRelid(rel) ||
		idx->rd_rel->relam != BTREE_AM_OID ||
		IndexRelationGetNumberOfKeyAttributes(idx) != 2 ||
		a_customer == 0 || a_created == 0 || a_paid == 0 ||
		idx->rd_index->indkey.values[0] != a_customer ||
		idx->rd_index->indkey.values[1] != a_created ||
		idx->rd_opcintype[0] != INT8OID || idx->rd_opcintype[1] != TIMESTAMPTZOID ||
		(idx->rd_indoption[0] & INDOPTION_DESC) != 0 ||
		(idx->rd_indoption[1] & INDOPTION_DESC) == 0 ||
		!heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL) ||
		!idx->rd_index->indisvalid)
		return false;
	pred = RelationGetIndexPredicate(idx);
	if (list_length(pred) != 1)
		return false;
	v = (Node *) linitial(pred);
	return IsA(v, Var) && ((Var *) v)->varattno == a_paid;
}

/* one paid order's total into the history's count and sum (avg(bigint)'s) */
static void
history_add(TupleTableSlot *slot, AttrNumber a_total, int64 *n, int64 *sum, Numeric *bigsum)
{
	bool		isnull;
	Datum		t = slot_getattr(slot, a_total, &isnull);

	if (!isnull)
	{
		int64		v = DatumGetInt64(t);
		int64		s;

		if (*bigsum == NULL && !pg_add_s64_overflow(*sum, v, &s))
			*sum = s;
		else
		{
			if (*bigsum == NULL)
				*bigsum = int64_to_numeric(*sum);
			*bigsum = numeric_add_opt_error(*bigsum, int64_to_numeric(v), NULL);
		}
	}
	(*n)++;						/* count(*) counts a NULL total too */
}

/*
 * The fraud rules' inputs from the customer's own orders, what
 * st_history gives: the orders created in the last hour, and the number
 * and average total_cents of the last 50 paid ones (the average as
 * avg(bigint) computes it: the numeric quotient of the sum by the count,
 * as float8).  A forward walk of order_customer_idx (customer_id,
 * created_at DESC), newest first, counts the hour's orders up to
 * CUSTOMER_RECENT_MAX, the velocity rule's top tier (payments.c), and
 * stops once it has that many or is past the hour: a customer placing
 * hundreds of orders in an hour (a reseller on Black Friday, a bot) no
 * longer costs each of its checkouts a read of every one of them.  The
 * same walk reads the last 50 paid orders, as long as it passes no more
 * than HISTORY_UNPAID_MAX orders never paid (pending, cancelled unpaid)
 * to reach them; past that, the paid orders are the first 50 entries of
 * order_customer_paid_idx (the same key, WHERE was_paid), so that a
 * customer with thousands of unpaid orders costs its checkouts no more
 * than 10 + 50 + 50 + 50 entries (before: the walk read every unpaid order
 * newer than the 50th paid one).  One walk for every other customer: the
 * second index's descent only where it saves reads.  Where that index is
 * not as shop made it, the first walk goes on until it has 50 paid orders
 * too.  Returns false,
 * having read nothing, when order_customer_idx is not there as shop made
 * it: the caller runs st_history then.
 */
#define CUSTOMER_RECENT_MAX	10
#define HISTORY_UNPAID_MAX	50
static bool
checkout_history(int64 customer, Snapshot snap, int64 *recent, int64 *n, double *avg)
{
	Relation	rel = shop_table("order");
	Relation	idx = shop_index(rel, "order_customer_idx");
	Relation	pidx;
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	a_created = rel_column(desc, "created_at");
	AttrNumber	a_paid = rel_column(desc, "was_paid");
	AttrNumber	a_total = rel_column(desc, "total_cents");
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	TimestampTz cutoff = GetCurrentTransactionStartTimestamp() - USECS_PER_HOUR;
	int64		sum = 0;
	Numeric		bigsum = NULL;	/* the sum once it no longer fits an int64 */
	bool		by_paid;
	bool		paid_walk = false;
	int			unpaid = 0;

	if (idx == NULL || !plain_read(rel) ||
		!index_is(rel, idx, rel_column(desc, "customer_id"), INT8OID, false,
				  a_created, TIMESTAMPTZOID, true) ||
		a_paid == 0 || a_total == 0 ||
		TupleDescAttr(desc, a_paid - 1)->atttypid != BOOLOID ||
		TupleDescAttr(desc, a_total - 1)->atttypid != INT8OID)
	{
		if (idx != NULL)
			index_close(idx, NoLock);
		table_close(rel, NoLock);
		return false;
	}
	pidx = shop_index(rel, "order_customer_paid_idx");
	by_paid = pidx != NULL &&
		paid_index_ok(rel, pidx, rel_column(desc, "customer_id"), a_created, a_paid);

	*recent = 0;
	*n = 0;
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(customer));
	scan = index_beginscan(rel, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	slot = table_slot_create(rel, NULL);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		at = slot_getattr(slot, a_created, &isnull);
		bool		past = !isnull && DatumGetTimestampTz(at) <= cutoff;

		if (!isnull && !past && *recent < CUSTOMER_RECENT_MAX)
			(*recent)++;
		if (!paid_walk && *n < HISTORY_PAID)
		{
			Datum		paid = slot_getattr(slot, a_paid, &isnull);

			if (!isnull && DatumGetBool(paid))
				history_add(slot, a_total, n, &sum, &bigsum);
			else if (by_paid && ++unpaid > HISTORY_UNPAID_MAX)
			{
				/* many unpaid orders: the paid ones from their own index */
				paid_walk = true;
				*n = 0;
				sum = 0;
				bigsum = NULL;
			}
		}
		if ((past || *recent >= CUSTOMER_RECENT_MAX) && (paid_walk || *n >= HISTORY_PAID))
			break;
	}
	index_endscan(scan);
	if (paid_walk)
	{
		scan = index_beginscan(rel, pidx, snap, 1, 0);
		index_rescan(scan, &key, 1, NULL, 0);
		while (*n < HISTORY_PAID && index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;
			Datum		paid = slot_getattr(slot, a_paid, &isnull);

			if (!isnull && DatumGetBool(paid))
				history_add(slot, a_total, n, &sum, &bigsum);
		}
		index_endscan(scan);
	}
	ExecDropSingleTupleTableSlot(slot);
	if (pidx != NULL)
		index_close(pidx, NoLock);
	index_close(idx, NoLock);
	table_close(rel, NoLock);

	*avg = 0;
	if (*n > 0)
		*avg = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
												  DirectFunctionCall2(numeric_div,
																	  NumericGetDatum(bigsum ? bigsum : int64_to_numeric(sum)),
																	  NumericGetDatum(int64_to_numeric(*n)))));
	return true;
}

/*
 * The token's payments created in the last hour, what st_token_recent
 * counts, up to TOKEN_RECENT_MAX: a walk of payment_token_idx (token,
 * created_at) from the hour's start.  The walk stops there: the rule's
 * top tier is 10 (payments.c), and a card tried thousands of times in the
 * hour would otherwise cost each of its checkouts a read of every attempt.
 * False, having read nothing, when the index is not as shop made it.
 */
#define TOKEN_RECENT_MAX	10
static bool
checkout_token_recent(const char *token, Snapshot snap, int64 *count)
{
	Relation	rel = shop_table("payment");
	Relation	idx = shop_index(rel, "payment_token_idx");
	TupleDesc	desc = RelationGetDescr(rel);
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	TimestampTz cutoff = GetCurrentTransactionStartTimestamp() - USECS_PER_HOUR;

	if (idx == NULL || !plain_read(rel) ||
		!index_is(rel, idx, rel_column(desc, "token"), TEXTOID, false,
				  rel_column(desc, "created_at"), TIMESTAMPTZOID, false) ||
		!OidIsValid(idx->rd_indcollation[0]) ||
		!get_collation_isdeterministic(idx->rd_indcollation[0]))
	{
		if (idx != NULL)
			index_close(idx, NoLock);
		table_close(rel, NoLock);
		return false;
	}
	*count = 0;
	/* the index's own collation: its order is the descent's */
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   idx->rd_indcollation[0], F_TEXTEQ, CStringGetTextDatum(token));
	ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_TIMESTAMPTZ_GT, TimestampTzGetDatum(cutoff));
	scan = index_beginscan(rel, idx, snap, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	slot = table_slot_create(rel, NULL);
	while (*count < TOKEN_RECENT_MAX && index_getnext_slot(scan, ForwardScanDirection, slot))
		(*count)++;
	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	return true;
}

/* a line taken out of the cart, with its product as the catalog has it now */
typedef struct TakenLine
{
	int64		pid;
	int32		qty;
	bool		found;			/* false: no longer in the catalog */
	char	   *status;
	Datum		sku;
	Datum		title;
	int64		price;
} TakenLine;

static int
taken_line_cmp(const void *a, const void *b)
{
	int64		x = ((const TakenLine *) a)->pid;
	int64		y = ((const TakenLine *) b)->pid;

	return (x > y) - (x < y);
}

/* the lines by the statement (st_cart_lines) */
static uint64
cart_take_lines_sql(Datum cart_id, TakenLine **out)
{
	Datum		args[1] = {cart_id};
	uint64		n = ShopExec(&st_cart_lines, args, NULL, 0);
	TakenLine  *l = palloc0(sizeof(TakenLine) * Max(n, 1));

	for (uint64 r = 0; r < n; r++)
	{
		bool		isnull;
		Datum		prod = ShopCol(r, 3, &isnull);
		HeapTupleHeader ph = isnull ? NULL : DatumGetHeapTupleHeader(prod);

		l[r].pid = ShopColInt(r, 1, 0);
		l[r].qty = (int32) ShopColInt(r, 2, 0);
		l[r].found = ph != NULL;
		if (ph != NULL)
		{
			Datum		st = GetAttributeByNum(ph, 4, &isnull);

			l[r].status = isnull ? NULL : TextDatumGetCString(st);
			l[r].price = DatumGetInt64(GetAttributeByNum(ph, 3, &isnull));
			l[r].sku = SPI_datumTransfer(GetAttributeByNum(ph, 1, &isnull), false, -1);
			l[r].title = SPI_datumTransfer(GetAttributeByNum(ph, 2, &isnull), false, -1);
		}
	}
	*out = l;
	return n;
}

/* one product by product_pkey: sku, title, price_cents, status; false when none */
static bool
product_fetch(Relation rel, Relation idx, Snapshot snap, TupleTableSlot *slot,
			  const AttrNumber *att, TakenLine *l)
{
	ScanKeyData key;
	IndexScanDesc scan;
	bool		found;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(l->pid));
	scan = index_beginscan(rel, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
	{
		bool		isnull;
		Datum		d;

		d = slot_getattr(slot, att[0], &isnull);
		l->sku = isnull ? (Datum) 0 : PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
		d = slot_getattr(slot, att[1], &isnull);
		l->title = isnull ? (Datum) 0 : PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
		d = slot_getattr(slot, att[2], &isnull);
		l->price = isnull ? 0 : DatumGetInt64(d);
		d = slot_getattr(slot, att[3], &isnull);
		l->status = isnull ? NULL : TextDatumGetCString(d);
	}
	index_endscan(scan);
	return found;
}

/*
 * Delete the cart line in slot as DELETE does it: when a transaction that
 * committed after the snapshot changed it, its last version is locked and
 * judged again (still this cart's, not saved for later), and deleted with
 * the values it has then (*pid, *qty); under REPEATABLE READ that is
 * 40001.  False when there is nothing to delete any more.
 */
static bool
cart_line_delete(Relation rel, TupleTableSlot *slot, Snapshot snap, CommandId cid, Datum cart_id,
				 AttrNumber a_cart, AttrNumber a_pid, AttrNumber a_qty, AttrNumber a_saved,
				 int64 *pid, int32 *qty)
{
	ItemPointerData tid = slot->tts_tid;

	ShopCheckWritable("DELETE");
	for (;;)
	{
		TM_FailureData tmfd;
		TM_Result	res;
		bool		isnull;
		Datum		d;

		res = table_tuple_delete(rel, &tid, cid, snap, InvalidSnapshot, true, &tmfd, false);
		if (res == TM_Ok)
			return true;
		if (res == TM_SelfModified || res == TM_Invisible || res == TM_WouldBlock)
			elog(ERROR, "shop: unexpected result %d deleting a cart line", (int) res);
		ShopChangedMeanwhile(res);
		if (res == TM_Deleted)
			return false;
		/* TM_Updated: the last version, locked, as EvalPlanQual finds it */
		res = table_tuple_lock(rel, &tid, snap, slot, cid, LockTupleExclusive, LockWaitBlock,
							   TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
		if (res == TM_Deleted)
			return false;
		if (res != TM_Ok)
			elog(ERROR, "shop: unexpected result %d locking a cart line", (int) res);
		d = slot_getattr(slot, a_cart, &isnull);
		if (isnull || memcmp(DatumGetUUIDP(d), DatumGetUUIDP(cart_id), sizeof(pg_uuid_t)) != 0)
			return false;
		d = slot_getattr(slot, a_saved, &isnull);
		if (isnull || DatumGetBool(d))
			return false;
		*pid = DatumGetInt64(slot_getattr(slot, a_pid, &isnull));
		*qty = DatumGetInt32(slot_getattr(slot, a_qty, &isnull));
		tid = slot->tts_tid;
	}
}

/*
 * The lines to order out of the cart (the work of st_cart_lines) without
 * the executor's plan: a walk of cart_item_pkey (cart_id first) for the
 * cart's lines not saved for later, each deleted as DELETE deletes it
 * (cart_line_delete; the replica identity check of a published table),
 * and its product read by product_pkey.  The cart row is locked (step 1),
 * so every cart call on this cart waits for the checkout anyway.  Returns
 * false, having done nothing, where the statement must do it: a table
 * that is not a plain one, Citus loaded (as src/inventory.c), any DELETE
 * trigger or rule on shop.cart_item (it has none: the statement fires
 * them), an index not as shop made it, a user without the privileges or
 * under row security.
 */
static bool
cart_take_lines_c(Datum cart_id, TakenLine **out, uint64 *nout)
{
	Relation	rel = shop_table_lock("cart_item", RowExclusiveLock);	/* DELETE's lock */
	Relation	idx = shop_index(rel, "cart_item_pkey");
	Relation	prel = NULL;
	Relation	pidx = NULL;
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	a_cart = rel_column(desc, "cart_id");
	AttrNumber	a_pid = rel_column(desc, "product_id");
	AttrNumber	a_qty = rel_column(desc, "qty");
	AttrNumber	a_saved = rel_column(desc, "saved_for_later");
	AttrNumber	patt[4] = {0, 0, 0, 0};
	bool		ok;
	Snapshot	snap;
	CommandId	cid;
	TupleTableSlot *slot;
	TupleTableSlot *pslot;
	ScanKeyData key;
	IndexScanDesc scan;
	TakenLine  *l;
	uint64		n = 0;
	uint64		cap = 8;

	ok = idx != NULL && rel->rd_rel->relkind == RELKIND_RELATION &&
		rel->rd_rules == NULL &&
		!(rel->trigdesc != NULL &&
		  (rel->trigdesc->trig_delete_before_row || rel->trigdesc->trig_delete_after_row ||
		   rel->trigdesc->trig_delete_instead_row || rel->trigdesc->trig_delete_before_statement ||
		   rel->trigdesc->trig_delete_after_statement || rel->trigdesc->trig_delete_old_table)) &&
		!(shared_preload_libraries_string != NULL &&
		  strstr(shared_preload_libraries_string, "citus") != NULL) &&
		idx->rd_index->indrelid == RelationGetRelid(rel) &&
		idx->rd_rel->relam == BTREE_AM_OID &&
		a_cart != 0 && a_pid != 0 && a_qty != 0 && a_saved != 0 &&
		idx->rd_index->indkey.values[0] == a_cart && idx->rd_opcintype[0] == UUIDOID &&
		heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL) &&
		heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL) &&
		TupleDescAttr(desc, a_pid - 1)->atttypid == INT8OID &&
		TupleDescAttr(desc, a_qty - 1)->atttypid == INT4OID &&
		TupleDescAttr(desc, a_saved - 1)->atttypid == BOOLOID &&
		pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), ACL_DELETE) == ACLCHECK_OK &&
		plain_read(rel);
	if (ok)
	{
		TupleDesc	pdesc;

		prel = shop_table("product");
		pidx = shop_index(prel, "product_pkey");
		pdesc = RelationGetDescr(prel);
		patt[0] = rel_column(pdesc, "sku");
		patt[1] = rel_column(pdesc, "title");
		patt[2] = rel_column(pdesc, "price_cents");
		patt[3] = rel_column(pdesc, "status");
		ok = pidx != NULL &&
			pidx->rd_index->indrelid == RelationGetRelid(prel) &&
			pidx->rd_rel->relam == BTREE_AM_OID &&
			pidx->rd_index->indkey.values[0] == rel_column(pdesc, "product_id") &&
			pidx->rd_opcintype[0] == INT8OID &&
			heap_attisnull(pidx->rd_indextuple, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(pidx->rd_indextuple, Anum_pg_index_indexprs, NULL) &&
			patt[0] != 0 && patt[1] != 0 && patt[2] != 0 && patt[3] != 0 &&
			TupleDescAttr(pdesc, patt[0] - 1)->atttypid == TEXTOID &&
			TupleDescAttr(pdesc, patt[1] - 1)->atttypid == TEXTOID &&
			TupleDescAttr(pdesc, patt[2] - 1)->atttypid == INT8OID &&
			TupleDescAttr(pdesc, patt[3] - 1)->atttypid == TEXTOID &&
			plain_read(prel);
	}
	if (!ok)
	{
		if (pidx != NULL)
			index_close(pidx, NoLock);
		if (prel != NULL)
			table_close(prel, NoLock);
		if (idx != NULL)
			index_close(idx, NoLock);
		table_close(rel, NoLock);
		return false;
	}

	CheckCmdReplicaIdentity(rel, CMD_DELETE);
	CommandCounterIncrement();
	snap = RegisterSnapshot(GetTransactionSnapshot());
	cid = GetCurrentCommandId(true);
	slot = table_slot_create(rel, NULL);
	pslot = table_slot_create(prel, NULL);

	l = palloc0(sizeof(TakenLine) * cap);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, cart_id);
	scan = index_beginscan(rel, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d;
		int64		pid;
		int32		qty;

		d = slot_getattr(slot, a_saved, &isnull);
		if (isnull || DatumGetBool(d))
			continue;			/* saved for later: stays */
		pid = DatumGetInt64(slot_getattr(slot, a_pid, &isnull));
		qty = DatumGetInt32(slot_getattr(slot, a_qty, &isnull));
		if (!cart_line_delete(rel, slot, snap, cid, cart_id, a_cart, a_pid,
							  a_qty, a_saved, &pid, &qty))
			continue;			/* gone meanwhile, or no longer to order */
		if (n == cap)
		{
			cap *= 2;
			l = repalloc(l, sizeof(TakenLine) * cap);
			memset(l + n, 0, sizeof(TakenLine) * (cap - n));
		}
		l[n].pid = pid;
		l[n].qty = qty;
		l[n].found = product_fetch(prel, pidx, snap, pslot, patt, &l[n]);
		n++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(pslot);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	index_close(pidx, NoLock);
	table_close(prel, NoLock);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	/* the deletes are seen by the statements that follow in this transaction */
	CommandCounterIncrement();
	*out = l;
	*nout = n;
	return true;
}

/*
 * Step 3: the cart's lines, out of the cart, at today's prices (SH007
 * empty, SH008 a product not active), in product order, the subtotal.
 */
static void
checkout_lines(CheckoutRequest *req, CheckoutCart *cart)
{
	TakenLine  *l;
	uint64		n;

	if (!cart_take_lines_c(req->cart_id, &l, &n))
		n = cart_take_lines_sql(req->cart_id, &l);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_CART_EMPTY),
				 errmsg("cart is empty"),
				 errdetail("Cart %s has no lines to check out.", req->cart_str)));
	cart->nlines = (int) n;
	cart->holds = palloc(sizeof(ShopHold) * n);
	cart->sku = palloc(sizeof(Datum) * n);
	cart->title = palloc(sizeof(Datum) * n);
	cart->price = palloc(sizeof(int64) * n);
	cart->subtotal = 0;
	/* in product order (a cart has a product once) */
	qsort(l, n, sizeof(TakenLine), taken_line_cmp);
	for (uint64 i = 0; i < n; i++)
	{
		int64		line;

		if (!l[i].found || l[i].status == NULL || strcmp(l[i].status, "active") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_PRODUCT_UNAVAILABLE),
					 errmsg("product unavailable"),
					 errdetail("Product " INT64_FORMAT " in cart %s is %s.", l[i].pid, req->cart_str,
							   l[i].found && l[i].status ? l[i].status : "no longer in the catalog"),
					 errhint("Remove it from the cart or save it for later.")));
		cart->price[i] = l[i].price;
		if (pg_mul_s64_overflow(cart->price[i], l[i].qty, &line) ||
			pg_add_s64_overflow(cart->subtotal, line, &cart->subtotal))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("order total out of range")));
		cart->holds[i].product_id = l[i].pid;
		cart->holds[i].qty = l[i].qty;
		cart->sku[i] = l[i].sku;
		cart->title[i] = l[i].title;
	}
}

/*
 * Step 5: shipping and tax by the rules, and the fraud score from the
 * customer's and the token's recent history.  One snapshot for all of it,
 * taken as SPI takes one for a statement.
 */
static void
checkout_price(CheckoutRequest *req, CheckoutCart *cart, CheckoutMoney *money)
{
	Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());
	int64		recent = 0;
	int64		hist_n = 0;
	double		hist_avg = 0;
	int64		token_recent = 0;

	money->shipping = shipping_cents(cart->subtotal, false, req->address, snap);
	money->tax = tax_cents(cart->subtotal, false, req->address, snap);
	/* a guest has no orders of its own to count (customer_id = NULL) */
	if (!cart->guest && !checkout_history(cart->customer, snap, &recent, &hist_n, &hist_avg))
	{
		Datum		args[1] = {Int64GetDatum(cart->customer)};

		ShopExec(&st_history, args, NULL, 1);
		recent = ShopColInt(0, 1, 0);
		hist_n = ShopColInt(0, 2, 0);
		hist_avg = ShopColFloat(0, 3, 0);
	}
	/* a shared test token is not one card: not counted */
	if (!req->pt.shared && !checkout_token_recent(req->token, snap, &token_recent))
	{
		Datum		args[1] = {CStringGetTextDatum(req->token)};

		ShopExec(&st_token_recent, args, NULL, 1);
		token_recent = ShopColInt(0, 1, 0);
	}
	UnregisterSnapshot(snap);
	if (pg_add_s64_overflow(cart->subtotal, money->shipping, &money->total) ||
		pg_add_s64_overflow(money->total, money->tax, &money->total))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("order total out of range")));
	money->score = ShopFraudScore(recent, token_recent, hist_n, hist_avg, &req->pt, money->total,
								  &money->reasons);
	money->review = money->score >= shop_fraud_threshold;
}

/* Step 6: the test provider's decline is SH004, which undoes everything. */
static void
checkout_authorize(CheckoutRequest *req, CheckoutMoney *money)
{
	int64		total = money->total;

	if (req->pt.outcome == SHOP_PAY_DECLINED)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PAYMENT_DECLINED),
				 errmsg("payment declined"),
				 errdetail("The %s provider declined the payment of %lld.%02lld %s for cart %s.",
						   req->pt.provider, (long long) (total / 100), (long long) (total % 100),
						   shop_currency, req->cart_str),
				 errhint("Nothing was kept: no order, no reservation. Ask for another payment method.")));
}

/* ---------------------------------------------------------------------
 * Step 7 in C: st_place's rows without its plan (issue 11)
 * ---------------------------------------------------------------------
 */

/*
 * The tables st_place writes, in the order its statement writes them: the
 * outbox rows (the statement's own INSERT, run first), then its
 * data-modifying WITH queries, which PostgreSQL runs to their end after
 * it, the last one first (ExecPostprocessPlan): the co-purchase log, the
 * history, the payment, the lines, the order.  Rows go in that order here
 * too, so that row triggers fire and constraint errors come in the same
 * order as with the statement.
 */
enum
{
	PT_EVENT, PT_DELTA, PT_HISTORY, PT_PAYMENT, PT_LINE, PT_ORDER, PT_NTABLES
};

#define PLACE_MAXCOLS 17

typedef struct PlaceCol
{
	const char *name;
	Oid			type;
} PlaceCol;

typedef struct PlaceTableDef
{
	const char *table;
	int			ncols;			/* without customer_key */
	bool		keyed;			/* customer_key follows in 1.1 */
	PlaceCol	cols[PLACE_MAXCOLS];
} PlaceTableDef;

static const PlaceTableDef place_defs[PT_NTABLES] = {
	{"event", 2, false, {{"topic", TEXTOID}, {"payload", JSONBOID}}},
	{"copurchase_delta", 3, false,
	 {{"customer_id", INT8OID}, {"order_id", UUIDOID}, {"counted", BOOLOID}}},
	{"order_event", 5, true,
	 {{"order_id", UUIDOID}, {"seq", INT4OID}, {"from_status", TEXTOID}, {"to_status", TEXTOID},
	  {"note", TEXTOID}}},
	{"payment", 8, true,
	 {{"order_id", UUIDOID}, {"provider", TEXTOID}, {"token", TEXTOID}, {"card_brand", TEXTOID},
	  {"last4", TEXTOID}, {"status", TEXTOID}, {"amount_cents", INT8OID}, {"fraud_score", FLOAT4OID}}},
	{"order_line", 8, true,
	 {{"order_id", UUIDOID}, {"line_no", INT4OID}, {"product_id", INT8OID}, {"sku", TEXTOID},
	  {"title", TEXTOID}, {"unit_price_cents", INT8OID}, {"qty", INT4OID}, {"reservation_id", UUIDOID}}},
	{"order", 16, true,
	 {{"order_id", UUIDOID}, {"customer_id", INT8OID}, {"cart_id", UUIDOID}, {"status", TEXTOID},
	  {"currency", TEXTOID}, {"subtotal_cents", INT8OID}, {"shipping_cents", INT8OID},
	  {"tax_cents", INT8OID}, {"total_cents", INT8OID}, {"shipping_address", JSONBOID},
	  {"fraud_score", FLOAT4OID}, {"fraud_reasons", TEXTARRAYOID}, {"needs_review", BOOLOID},
	  {"was_paid", BOOLOID}, {"idempotency_key", TEXTOID}, {"event_count", INT4OID}}},
};

typedef struct PlaceTable
{
	Relation	rel;
	RangeTblEntry *rte;
	int			ncols;
	AttrNumber	att[PLACE_MAXCOLS];
	AttrNumber	event_id;		/* shop.event: the column RETURNING gives */
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	int			ndefs;
	AttrNumber *defatt;			/* the other columns: their defaults */
	ExprState **defexpr;
} PlaceTable;

static bool place_defaults_kept(Oid relid);

/*
 * Whether rows go into table t from C as st_place's INSERT would put them
 * there: a plain table (not a partition) without rules, without INSERT
 * triggers at statement level, INSTEAD OF or with a transition table
 * (row triggers fire here as in the statement), without stored generated
 * columns or columns of a domain type (whose NULL the statement would
 * check), without row security for the user, with the columns shop
 * writes of the types it writes, and the privileges the statement needs
 * (INSERT on those columns; SELECT on shop.event's event_id and topic,
 * which it returns).  Opens and locks the table as the statement would.
 */
static bool
place_table_ok(PlaceTable *t, const PlaceTableDef *def, bool keyed)
{
	Relation	rel = shop_table_lock(def->table, RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	TriggerDesc *td = rel->trigdesc;
	RangeTblEntry *rte;
	bool		ok;

	t->rel = rel;
	t->ncols = def->ncols + (keyed && def->keyed ? 1 : 0);
	ok = rel->rd_rel->relkind == RELKIND_RELATION && !rel->rd_rel->relispartition &&
		rel->rd_rules == NULL &&
		!(td != NULL && (td->trig_insert_before_statement || td->trig_insert_after_statement ||
						 td->trig_insert_instead_row || td->trig_insert_new_table)) &&
		!(desc->constr != NULL && desc->constr->has_generated_stored) &&
		check_enable_rls(RelationGetRelid(rel), InvalidOid, true) != RLS_ENABLED;
	for (int c = 0; ok && c < t->ncols; c++)
	{
		const char *name = c < def->ncols ? def->cols[c].name : "customer_key";
		Oid			type = c < def->ncols ? def->cols[c].type : INT8OID;

		t->att[c] = rel_column(desc, name);
		ok = t->att[c] != 0 && TupleDescAttr(desc, t->att[c] - 1)->atttypid == type;
	}
	/* (checked when the table's defaults were kept: a column's type change drops them) */
	for (int i = 0; ok && !place_defaults_kept(RelationGetRelid(rel)) && i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		ok = a->attisdropped || get_typtype(a->atttypid) != TYPTYPE_DOMAIN;
	}
	t->event_id = 0;
	if (ok && def == &place_defs[PT_EVENT])
		ok = (t->event_id = rel_column(desc, "event_id")) != 0 &&
			TupleDescAttr(desc, t->event_id - 1)->atttypid == INT8OID;
	if (!ok)
		return false;
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT;
	for (int c = 0; c < t->ncols; c++)
		rte->insertedCols = bms_add_member(rte->insertedCols,
										   t->att[c] - FirstLowInvalidHeapAttributeNumber);
	if (t->event_id != 0)
	{
		rte->requiredPerms |= ACL_SELECT;
		rte->selectedCols = bms_add_member(bms_make_singleton(t->event_id - FirstLowInvalidHeapAttributeNumber),
										   t->att[0] - FirstLowInvalidHeapAttributeNumber);
	}
	t->rte = rte;
	return ExecCheckRTPerms(list_make1(rte), false);
}

/*
 * The defaults of the columns shop leaves out, per table of place_defs,
 * kept per backend: build_column_default parsed each default's text
 * (stringToNode) and planned it again in every checkout (about 80,000
 * instructions).  A relcache invalidation of the table (ALTER TABLE ...
 * SET DEFAULT, an identity added or dropped, a column added) drops it.
 */
typedef struct PlaceDefaults
{
	Oid			relid;			/* InvalidOid: not built */
	bool		keyed;
	int			ndefs;
	AttrNumber *att;
	Expr	  **expr;			/* planned, as ExecPrepareExpr plans */
	MemoryContext cxt;
} PlaceDefaults;

static PlaceDefaults place_defaults[PT_NTABLES];
static bool place_defaults_callback = false;

static void
place_defaults_inval(Datum arg, Oid relid)
{
	for (int i = 0; i < PT_NTABLES; i++)
		if (!OidIsValid(relid) || place_defaults[i].relid == relid)
			place_defaults[i].relid = InvalidOid;
}

/* whether the defaults of relid are kept (built when none of its columns was of a domain) */
static bool
place_defaults_kept(Oid relid)
{
	for (int i = 0; i < PT_NTABLES; i++)
		if (place_defaults[i].relid == relid)
			return true;
	return false;
}

static PlaceDefaults *
place_defaults_get(PlaceTable *t, int which, bool keyed)
{
	PlaceDefaults *pd = &place_defaults[which];
	TupleDesc	desc = RelationGetDescr(t->rel);
	MemoryContext old;

	if (pd->relid == RelationGetRelid(t->rel) && pd->keyed == keyed)
		return pd;
	if (!place_defaults_callback)
	{
		CacheRegisterRelcacheCallback(place_defaults_inval, (Datum) 0);
		place_defaults_callback = true;
	}
	if (pd->cxt == NULL)
		pd->cxt = AllocSetContextCreate(CacheMemoryContext, "shop checkout defaults",
										ALLOCSET_SMALL_SIZES);
	pd->relid = InvalidOid;
	MemoryContextReset(pd->cxt);
	old = MemoryContextSwitchTo(pd->cxt);
	pd->ndefs = 0;
	pd->att = palloc(sizeof(AttrNumber) * desc->natts);
	pd->expr = palloc(sizeof(Expr *) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		AttrNumber	attnum = i + 1;
		bool		given = false;
		Node	   *d;

		if (TupleDescAttr(desc, i)->attisdropped)
			continue;
		for (int c = 0; c < t->ncols; c++)
			given = given || t->att[c] == attnum;
		/* as the INSERT's target list gets them: identity, default, or NULL */
		if (given || (d = build_column_default(t->rel, attnum)) == NULL)
			continue;
		pd->att[pd->ndefs] = attnum;
		pd->expr[pd->ndefs] = expression_planner((Expr *) d);
		pd->ndefs++;
	}
	MemoryContextSwitchTo(old);
	pd->keyed = keyed;
	pd->relid = RelationGetRelid(t->rel);
	return pd;
}

/* the result relation of t, its indexes, CHECKs and the defaults of the columns shop leaves out */
static void
place_table_start(PlaceTable *t, int which, bool keyed, EState *estate, Index rti)
{
	TupleDesc	desc = RelationGetDescr(t->rel);
	PlaceDefaults *pd = place_defaults_get(t, which, keyed);
	MemoryContext old;

	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, t->rel, rti, NULL, 0);
	estate->es_opened_result_relations = lappend(estate->es_opened_result_relations, t->rri);
	CheckCmdReplicaIdentity(t->rel, CMD_INSERT);
	ShopOpenIndices(t->rri, estate, false);
	ShopPrepareChecks(t->rri, estate);
	t->slot = ExecInitExtraTupleSlot(estate, desc, ShopWriteSlotOps(t->rel));
	old = MemoryContextSwitchTo(estate->es_query_cxt);
	t->ndefs = pd->ndefs;
	t->defatt = pd->att;
	t->defexpr = palloc(sizeof(ExprState *) * Max(pd->ndefs, 1));
	for (int d = 0; d < pd->ndefs; d++)
		t->defexpr[d] = ExecInitExpr(pd->expr[d], NULL);
	MemoryContextSwitchTo(old);
}

/*
 * One row into t, as the INSERT's ModifyTable puts it there: the defaults
 * evaluated, BEFORE ROW triggers, NOT NULL and CHECK constraints, the heap
 * insert, the index entries (a unique violation raised by the index, as
 * in the statement), AFTER ROW triggers queued.  False when a BEFORE
 * trigger skipped the row; the slot holds the row written otherwise.
 */
static bool
place_row(PlaceTable *t, EState *estate, const Datum *v, const bool *isnull)
{
	TupleTableSlot *slot = t->slot;
	ResultRelInfo *rri = t->rri;
	Relation	rel = t->rel;
	ExprContext *econtext = GetPerTupleExprContext(estate);
	List	   *recheck = NIL;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	for (int c = 0; c < t->ncols; c++)
	{
		slot->tts_values[t->att[c] - 1] = v[c];
		slot->tts_isnull[t->att[c] - 1] = isnull[c];
	}
	for (int d = 0; d < t->ndefs; d++)
		slot->tts_values[t->defatt[d] - 1] =
			ExecEvalExprSwitchContext(t->defexpr[d], econtext, &slot->tts_isnull[t->defatt[d] - 1]);
	ExecStoreVirtualTuple(slot);
	if (rri->ri_TrigDesc && rri->ri_TrigDesc->trig_insert_before_row &&
		!ExecBRInsertTriggers(estate, rri, slot))
		return false;
	if (RelationGetDescr(rel)->constr)
		ExecConstraints(rri, slot, estate);
	table_tuple_insert(rel, slot, estate->es_output_cid, 0, NULL);
	if (rri->ri_NumIndices > 0)
		recheck = ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
	ExecARInsertTriggers(estate, rri, slot, recheck, NULL);
	list_free(recheck);
	return true;
}

/*
 * A row of the order (its history, payment, lines or the order itself)
 * that a BEFORE trigger skipped: the checkout would return an order that
 * is not there or has parts missing.  27000, and the error undoes the
 * whole call.  (A skipped outbox row is allowed: orders.md.)
 */
static void
place_kept(bool kept, PlaceTable *t, Datum order_id)
{
	if (!kept)
		ShopTriggerChangedRow(RelationGetRelationName(t->rel), "checkout",
							  uuid_str(order_id));
}

/*
 * The customer's saved payment method for the token, what st_place's
 * LEFT JOIN LATERAL reads: a look-up of the unique index on
 * shop.payment_method (customer_id, token) under the statement's
 * snapshot.  False, having read nothing, when the index is not as shop
 * made it or the user could not read the table as the statement would.
 */
static bool
place_saved_method(int64 customer, bool guest, const char *token, Snapshot snap,
				   Datum *brand, bool *brand_null, Datum *last4, bool *last4_null)
{
	Relation	rel = shop_table("payment_method");
	Relation	idx = shop_index(rel, "payment_method_customer_id_token_key");
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	a_brand = rel_column(desc, "brand");
	AttrNumber	a_last4 = rel_column(desc, "last4");
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;

	*brand_null = *last4_null = true;
	if (idx == NULL || !plain_read(rel) ||
		!index_is(rel, idx, rel_column(desc, "customer_id"), INT8OID, false,
				  rel_column(desc, "token"), TEXTOID, false) ||
		!idx->rd_index->indisunique || !idx->rd_index->indimmediate ||
		!OidIsValid(idx->rd_indcollation[1]) ||
		!get_collation_isdeterministic(idx->rd_indcollation[1]) ||
		a_brand == 0 || a_last4 == 0 ||
		TupleDescAttr(desc, a_brand - 1)->atttypid != TEXTOID ||
		TupleDescAttr(desc, a_last4 - 1)->atttypid != TEXTOID)
	{
		if (idx != NULL)
			index_close(idx, NoLock);
		table_close(rel, NoLock);
		return false;
	}
	if (!guest)
	{
		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(customer));
		ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
							   idx->rd_indcollation[1], F_TEXTEQ, CStringGetTextDatum(token));
		scan = index_beginscan(rel, idx, snap, 2, 0);
		index_rescan(scan, keys, 2, NULL, 0);
		slot = table_slot_create(rel, NULL);
		if (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			*brand = slot_getattr(slot, a_brand, brand_null);
			*last4 = slot_getattr(slot, a_last4, last4_null);
			/* copied: the slot goes */
			if (!*brand_null)
				*brand = PointerGetDatum(DatumGetTextPCopy(*brand));
			if (!*last4_null)
				*last4 = PointerGetDatum(DatumGetTextPCopy(*last4));
		}
		ExecDropSingleTupleTableSlot(slot);
		index_endscan(scan);
	}
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	return true;
}

/*
 * st_place's rows from C (issue 11: the statement's executor start built
 * six result tables, their indexes, triggers and projections again in
 * every checkout; 43% of a checkout's instructions were the statement).
 * The same rows, in the statement's order, under one snapshot taken as
 * SPI takes a statement's, with one command id, and one trigger query
 * level: AFTER ROW triggers fire at its end as at the statement's end.
 * args are st_place's parameters.  The ids of the outbox rows written go
 * to ev_id[0] (order.created) and ev_id[1] (order.paid), 0 for a row a
 * BEFORE trigger skipped (the statement's RETURNING gives no row for it).
 * Returns false, having written nothing, when one table is not as
 * place_table_ok wants it, Citus is loaded, or the saved payment method
 * cannot be read from its index: the statement runs then.
 */
static bool
checkout_place_c(CheckoutCart *cart, bool keyed, bool paid, const Datum *args,
				 const char *nulls, int64 *ev_id)
{
	PlaceTable	t[PT_NTABLES];
	int			nopen = 0;
	bool		ok;
	List	   *rtable = NIL;
	EState	   *estate;
	Snapshot	snap;
	Datum		brand = (Datum) 0;
	Datum		last4 = (Datum) 0;
	bool		brand_null;
	bool		last4_null;
	Datum		v[PLACE_MAXCOLS + 1];
	bool		n[PLACE_MAXCOLS + 1];
	Datum		order_id = args[0];
	Datum		customer = args[1];
	bool		guest = nulls[1] == 'n';
	Datum		key = args[29];

	ShopCheckWritable("INSERT");
	ok = !(shared_preload_libraries_string != NULL &&
		   strstr(shared_preload_libraries_string, "citus") != NULL);
	for (int i = 0; ok && i < PT_NTABLES; i++)
	{
		ok = place_table_ok(&t[i], &place_defs[i], keyed);
		nopen = i + 1;
		if (ok)
			rtable = lappend(rtable, t[i].rte);
	}
	/* as SPI starts a statement: the commands before it seen, a new snapshot */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	snap = GetActiveSnapshot();
	ok = ok && place_saved_method(DatumGetInt64(customer), guest, TextDatumGetCString(args[21]),
								  snap, &brand, &brand_null, &last4, &last4_null);
	if (!ok)
	{
		for (int i = 0; i < nopen; i++)
			table_close(t[i].rel, NoLock);
		PopActiveSnapshot();
		return false;
	}

	estate = CreateExecutorState();
	estate->es_snapshot = snap;
	estate->es_output_cid = GetCurrentCommandId(true);
	ExecInitRangeTable(estate, rtable);
	AfterTriggerBeginQuery();
	for (int i = 0; i < PT_NTABLES; i++)
		place_table_start(&t[i], i, keyed, estate, i + 1);

#define PUT(c, val, isnull) (v[(c)] = (val), n[(c)] = (isnull))

	/* the outbox: order.created, then order.paid */
	for (int e = 0; e < 2; e++)
	{
		ev_id[e] = 0;
		if (e == 1 && !paid)
			break;
		PUT(0, CStringGetTextDatum(e == 0 ? "order.created" : "order.paid"), false);
		PUT(1, args[27 + e], false);
		if (place_row(&t[PT_EVENT], estate, v, n))
		{
			bool		isnull;
			Datum		id = slot_getattr(t[PT_EVENT].slot, t[PT_EVENT].event_id, &isnull);

			ev_id[e] = isnull ? 0 : DatumGetInt64(id);
		}
	}
	/* the co-purchase log of a paid order */
	if (paid)
	{
		PUT(0, customer, guest);
		PUT(1, order_id, false);
		PUT(2, BoolGetDatum(true), false);
		place_row(&t[PT_DELTA], estate, v, n);
	}
	/* the history: 1 pending, 2 paid */
	for (int seq = 1; seq <= (paid ? 2 : 1); seq++)
	{
		PUT(0, order_id, false);
		PUT(1, Int32GetDatum(seq), false);
		PUT(2, seq == 1 ? (Datum) 0 : CStringGetTextDatum("pending"), seq == 1);
		PUT(3, CStringGetTextDatum(seq == 1 ? "pending" : "paid"), false);
		PUT(4, args[24 + seq], false);
		PUT(5, key, false);
		place_kept(place_row(&t[PT_HISTORY], estate, v, n), &t[PT_HISTORY], order_id);
	}
	/* the payment, with the saved method's brand and last4 first */
	PUT(0, order_id, false);
	PUT(1, args[20], false);
	PUT(2, args[21], false);
	PUT(3, brand_null ? args[22] : brand, brand_null && nulls[22] == 'n');
	PUT(4, last4_null ? args[23] : last4, last4_null && nulls[23] == 'n');
	PUT(5, args[24], false);
	PUT(6, args[8], false);
	PUT(7, args[10], false);
	PUT(8, key, false);
	place_kept(place_row(&t[PT_PAYMENT], estate, v, n), &t[PT_PAYMENT], order_id);
	/* the lines */
	for (int i = 0; i < cart->nlines; i++)
	{
		PUT(0, order_id, false);
		PUT(1, Int32GetDatum(i + 1), false);
		PUT(2, Int64GetDatum(cart->holds[i].product_id), false);
		PUT(3, cart->sku[i], false);
		PUT(4, cart->title[i], false);
		PUT(5, Int64GetDatum(cart->price[i]), false);
		PUT(6, Int32GetDatum(cart->holds[i].qty), false);
		PUT(7, UUIDPGetDatum(&cart->holds[i].reservation_id), false);
		PUT(8, key, false);
		place_kept(place_row(&t[PT_LINE], estate, v, n), &t[PT_LINE], order_id);
	}
	/* the order */
	for (int c = 0; c < 13; c++)
		PUT(c, args[c], nulls[c] == 'n');
	PUT(13, BoolGetDatum(paid), false);
	PUT(14, args[13], false);
	PUT(15, Int32GetDatum(paid ? 2 : 1), false);
	PUT(16, key, false);
	place_kept(place_row(&t[PT_ORDER], estate, v, n), &t[PT_ORDER], order_id);
#undef PUT

	for (int i = 0; i < PT_NTABLES; i++)
		ExecCloseIndices(t[i].rri);
	AfterTriggerEndQuery(estate);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	for (int i = 0; i < PT_NTABLES; i++)
		table_close(t[i].rel, NoLock);
	PopActiveSnapshot();
	/* the rows are seen by the statements that follow in this transaction */
	CommandCounterIncrement();
	return true;
}

/*
 * Step 7: the order, its lines, payment, events and outbox: from C
 * (checkout_place_c), or in one statement (st_place) where a table is not
 * as shop made it.
 */
static void
checkout_place(CheckoutRequest *req, CheckoutCart *cart, CheckoutMoney *money,
			   Datum order_id, bool paid)
{
	Datum		args[30];
	char		nulls[30];
	int64		ev_id[2];
	int			n = cart->nlines;
	const char *order_str = uuid_str(order_id);
	const char *paid_note = psprintf("payment authorized by the %s provider", req->pt.provider);
	JsonbParseState *st = NULL;
	Jsonb	   *created;
	Jsonb	   *paid_payload = NULL;
	int64	   *pid = palloc(sizeof(int64) * n);
	int32	   *qty = palloc(sizeof(int32) * n);
	pg_uuid_t  *rid = palloc(sizeof(pg_uuid_t) * n);

	for (int i = 0; i < n; i++)
	{
		pid[i] = cart->holds[i].product_id;
		qty[i] = cart->holds[i].qty;
		rid[i] = cart->holds[i].reservation_id;
	}
	memset(nulls, ' ', sizeof(nulls));
	args[0] = order_id;
	args[1] = Int64GetDatum(cart->customer);
	nulls[1] = cart->guest ? 'n' : ' ';
	args[2] = req->cart_id;
	args[3] = CStringGetTextDatum(paid ? "paid" : "pending");
	args[4] = CStringGetTextDatum(shop_currency);
	args[5] = Int64GetDatum(cart->subtotal);
	args[6] = Int64GetDatum(money->shipping);
	args[7] = Int64GetDatum(money->tax);
	args[8] = Int64GetDatum(money->total);
	args[9] = req->address ? JsonbPGetDatum(req->address) : (Datum) 0;
	nulls[9] = req->address ? ' ' : 'n';
	args[10] = Float4GetDatum((float4) money->score);
	args[11] = money->reasons;
	args[12] = BoolGetDatum(money->review);
	args[13] = CStringGetTextDatum(req->key);
	args[14] = ShopUuidArray(rid, n);
	args[15] = ShopInt8Array(pid, n);
	args[16] = PointerGetDatum(construct_array(cart->sku, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[17] = PointerGetDatum(construct_array(cart->title, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[18] = ShopInt8Array(cart->price, n);
	args[19] = ShopInt4Array(qty, n);
	args[20] = CStringGetTextDatum(req->pt.provider);
	args[21] = CStringGetTextDatum(req->token);
	args[22] = req->pt.brand ? CStringGetTextDatum(req->pt.brand) : (Datum) 0;
	nulls[22] = req->pt.brand ? ' ' : 'n';
	args[23] = req->pt.last4 ? CStringGetTextDatum(req->pt.last4) : (Datum) 0;
	nulls[23] = req->pt.last4 ? ' ' : 'n';
	args[24] = CStringGetTextDatum(paid ? "captured" : "pending");
	args[25] = CStringGetTextDatum(money->review
								   ? psprintf("order placed; flagged for fraud review (score %.2f)",
											  money->score)
								   : "order placed");
	args[26] = CStringGetTextDatum(paid_note);

	/* the outbox payloads (what shop._emit's callers pass) */
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	jb_text(&st, "order_id", order_str);
	jb_int(&st, "customer_id", cart->customer, cart->guest);
	jb_text(&st, "status", paid ? "paid" : "pending");
	jb_int(&st, "total_cents", money->total, false);
	jb_text(&st, "currency", shop_currency);
	jb_bool(&st, "needs_review", money->review);
	created = jb_end(&st);
	args[27] = JsonbPGetDatum(created);
	args[28] = (Datum) 0;
	nulls[28] = 'n';
	if (paid)
	{
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		jb_text(&st, "order_id", order_str);
		jb_int(&st, "customer_id", cart->customer, cart->guest);
		jb_text(&st, "from", "pending");
		jb_text(&st, "to", "paid");
		jb_text(&st, "note", paid_note);
		jb_int(&st, "total_cents", money->total, false);
		paid_payload = jb_end(&st);
		args[28] = JsonbPGetDatum(paid_payload);
		nulls[28] = ' ';
	}
	args[29] = Int64GetDatum(cart->key);
	if (checkout_place_c(cart, req->keyed, paid, args, nulls, ev_id))
	{
		if (paid)
			ShopCopurchaseLogged(DatumGetUUIDP(order_id));
		/* order.created first: it was inserted first, its id from the sequence is lower */
		if (ev_id[0] != 0)
			ShopEventWritten(ev_id[0], "order.created", created);
		if (ev_id[1] != 0)
			ShopEventWritten(ev_id[1], "order.paid", paid_payload);
		return;
	}
	ShopExec(req->keyed ? &st_place_keyed : &st_place, args, nulls, 0);
	if (paid)
		ShopCopurchaseLogged(DatumGetUUIDP(order_id));

	/*
	 * The rows in event_id order (order.created first: it comes first in
	 * the insert, and the ids come from a sequence).
	 */
	for (int pass = 0; pass < 2; pass++)
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			char	   *topic = ShopColText(i, 2);
			bool		is_created = strcmp(topic, "order.created") == 0;

			if (is_created == (pass == 0))
				ShopEventWritten(ShopColInt(i, 1, 0), topic, is_created ? created : paid_payload);
		}
}

/*
 * shop.checkout(cart_id uuid, payment_token text, idempotency_key text,
 *               shipping_address jsonb DEFAULT NULL) -> uuid
 *
 * The steps of the file header.  The holds are taken (step 4) with their
 * final expiry: until the order ships when the test provider authorizes
 * (the order is placed paid), for shop.reservation_ttl otherwise.
 */
static Datum
checkout_run(FunctionCallInfo fcinfo, bool keyed)
{
	CheckoutRequest req;
	CheckoutCart cart;
	CheckoutMoney money;
	pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));
	Datum		order_id;
	bool		paid;
	TimestampTz expires;

	checkout_request(fcinfo, &req);
	req.keyed = keyed;
	paid = req.pt.outcome == SHOP_PAY_AUTHORIZED;
	order_id = new_uuid();

	SPI_connect();
	if (!checkout_claim(&req, &cart, order_id, result))
	{
		SPI_finish();
		PG_RETURN_UUID_P(result);
	}
	checkout_lines(&req, &cart);
	expires = paid ? DT_NOEND : GetCurrentTransactionStartTimestamp() +
		(int64) shop_reservation_ttl * USECS_PER_SEC;
	ShopReserve(cart.holds, cart.nlines, psprintf("order:%s", uuid_str(order_id)), expires);
	checkout_price(&req, &cart, &money);
	checkout_authorize(&req, &money);
	checkout_place(&req, &cart, &money, order_id, paid);
	SPI_finish();

	memcpy(result, DatumGetUUIDP(order_id), sizeof(pg_uuid_t));
	PG_RETURN_UUID_P(result);
}

/* shop.checkout of 1.1: every row with its customer_key */
Datum
shop_checkout_keyed(PG_FUNCTION_ARGS)
{
	return checkout_run(fcinfo, true);
}

/* shop.checkout of 1.0 (tables without customer_key) */
Datum
shop_checkout(PG_FUNCTION_ARGS)
{
	return checkout_run(fcinfo, false);
}

/* ---------------------------------------------------------------------
 * Shipping and tax as SQL functions (the rules: shipping_cents and
 * tax_cents above), under the calling query's snapshot
 * ---------------------------------------------------------------------
 */

/* shop._shipping_cents(subtotal_cents bigint, address jsonb) -> bigint */
Datum
shop_shipping_cents(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(shipping_cents(PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0), PG_ARGISNULL(0),
								   PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1),
								   GetActiveSnapshot()));
}

/* shop._tax_cents(subtotal_cents bigint, address jsonb) -> bigint */
Datum
shop_tax_cents(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(tax_cents(PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0), PG_ARGISNULL(0),
							  PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1),
							  GetActiveSnapshot()));
}

/* ---------------------------------------------------------------------
 * The WHEN clause of the experiment attribution trigger
 * ---------------------------------------------------------------------
 */

/* shop._experiment_attributing() (src/attribution.c) */
extern Datum shop_experiment_attributing(PG_FUNCTION_ARGS);

/*
 * shop._order_attributable(status text) -> boolean: whether an order
 * written now with this status is one the attribution trigger
 * (order_experiment) must see: an experiment could attribute it
 * (shop._experiment_attributing()) and its lines count as purchases
 * (shop._counted: paid, fulfilling, shipped, delivered).
 *
 * The trigger's WHEN clause, which PostgreSQL compiles again in every
 * statement that writes shop."order": one call of a C function compiles
 * quickly, where "_experiment_attributing() AND _counted(NEW.status)"
 * inlined the SQL function _counted, parsing its body each time, and the
 * list spelt out was a long constant to read back (issue 11).
 */
Datum
shop_order_attributable(PG_FUNCTION_ARGS)
{
	LOCAL_FCINFO(inner, 0);
	char	   *status;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	InitFunctionCallInfoData(*inner, NULL, 0, InvalidOid, NULL, NULL);
	if (!DatumGetBool(shop_experiment_attributing(inner)))
		PG_RETURN_BOOL(false);
	status = text_to_cstring(PG_GETARG_TEXT_PP(0));
	PG_RETURN_BOOL(strcmp(status, "paid") == 0 || strcmp(status, "fulfilling") == 0 ||
				   strcmp(status, "shipped") == 0 || strcmp(status, "delivered") == 0);
}
