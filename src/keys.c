/*-------------------------------------------------------------------------
 *
 * keys.c
 *	  shop._customer_key_trg(): the customer_key of a row written without
 *	  one (docs/scale-out.md, "Citus-compatible keys").
 *
 * Every primary key of the customer-partitioned tables of the checkout
 * (cart, cart_item, "order", order_line, order_event, payment,
 * idempotency, saga) holds customer_key, NOT NULL: the customer's id, or
 * for a guest's rows -1 minus the last 16 bits of the cart id.  Checkout
 * and the saga steps write it with each row.  This BEFORE INSERT trigger
 * fills it in for everything else (carts and their lines, the events of
 * transitions, rows a user inserts or copies):
 *
 *	  cart, saga       from customer_id and cart_id
 *	  "order"          from customer_id and cart_id (order_id without a cart)
 *	  idempotency      from the scope: 'c:<customer_id>' or 'k:<cart_id>'
 *	  cart_item        its cart's (23503 when there is no such cart)
 *	  order_line, order_event, payment   its order's
 *
 * It is C, without a WHEN clause, because it runs for every row checkout
 * writes: a row that has its key costs a function call and a null test,
 * where a WHEN clause was compiled again in every statement that writes the
 * table (bench/checkout_callgrind.sh; docs/orders.md, "Cost of a
 * checkout").
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/uuid.h"

#include "shop.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(shop_customer_key_trg);

static ShopStmt st_cart_key = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT customer_key FROM shop.cart WHERE cart_id = $1",
	UUIDOID);
static ShopStmt st_order_key = SHOP_STMT(SHOP_PLAN_GENERIC,
	"SELECT customer_key FROM shop.\"order\" WHERE order_id = $1",
	UUIDOID);

/* the attribute number of a column, searched from the last (where the key is) */
static int
column(TupleDesc desc, const char *name)
{
	for (int i = desc->natts - 1; i >= 0; i--)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (!a->attisdropped && strcmp(NameStr(a->attname), name) == 0)
			return i + 1;
	}
	elog(ERROR, "column \"%s\" not found", name);
	return 0;					/* keep the compiler quiet */
}

/* a uuid column's guest key; *isnull when the column is NULL */
static int64
guest_key(HeapTuple tuple, TupleDesc desc, const char *name, bool *isnull)
{
	Datum		d = heap_getattr(tuple, column(desc, name), desc, isnull);

	return *isnull ? 0 : ShopGuestKey(DatumGetUUIDP(d));
}

/* the key of the row a uuid column names (a cart, an order); *found */
static int64
parent_key(ShopStmt *st, HeapTuple tuple, TupleDesc desc, const char *name, bool *found)
{
	bool		isnull;
	Datum		args[1];
	int64		key = 0;

	args[0] = heap_getattr(tuple, column(desc, name), desc, &isnull);
	*found = false;
	if (isnull)
		return 0;
	SPI_connect();
	if (ShopExec(st, args, NULL, 1) == 1)
	{
		key = ShopColInt(0, 1, 0);
		*found = true;
	}
	SPI_finish();
	return key;
}

Datum
shop_customer_key_trg(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	const char *table;
	int			keycol;
	int64		key = 0;
	bool		isnull;
	bool		known = true;
	Datum		value;
	bool		null = false;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || !TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		elog(ERROR, "shop._customer_key_trg must be a BEFORE INSERT FOR EACH ROW trigger");
	tuple = trigdata->tg_trigtuple;
	desc = RelationGetDescr(trigdata->tg_relation);
	keycol = column(desc, "customer_key");
	if (!heap_attisnull(tuple, keycol, desc))
		return PointerGetDatum(tuple);

	table = RelationGetRelationName(trigdata->tg_relation);
	if (strcmp(table, "cart") == 0 || strcmp(table, "saga") == 0 || strcmp(table, "order") == 0)
	{
		Datum		c = heap_getattr(tuple, column(desc, "customer_id"), desc, &isnull);

		if (!isnull)
			key = DatumGetInt64(c);
		else
		{
			key = guest_key(tuple, desc, "cart_id", &isnull);
			if (isnull && strcmp(table, "order") == 0)
				key = guest_key(tuple, desc, "order_id", &isnull);
			known = !isnull;
		}
	}
	else if (strcmp(table, "idempotency") == 0)
	{
		Datum		s = heap_getattr(tuple, column(desc, "scope"), desc, &isnull);
		char	   *scope = isnull ? "" : TextDatumGetCString(s);

		if (strncmp(scope, "c:", 2) == 0)
			key = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(scope + 2)));
		else if (strncmp(scope, "k:", 2) == 0)
			key = ShopGuestKey(DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(scope + 2))));
		else
			known = false;
	}
	else if (strcmp(table, "cart_item") == 0)
	{
		key = parent_key(&st_cart_key, tuple, desc, "cart_id", &known);
		if (!known)
		{
			Datum		id = heap_getattr(tuple, column(desc, "cart_id"), desc, &isnull);

			ereport(ERROR,
					(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
					 errmsg("cart not found"),
					 isnull ? 0 : errdetail("No cart has cart_id %s.",
											DatumGetCString(DirectFunctionCall1(uuid_out, id)))));
		}
	}
	else
		key = parent_key(&st_order_key, tuple, desc, "order_id", &known);

	/* unknown: the NOT NULL constraint refuses the row */
	value = Int64GetDatum(key);
	null = !known;
	return PointerGetDatum(heap_modify_tuple_by_cols(tuple, desc, 1, &keycol, &value, &null));
}
