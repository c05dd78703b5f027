/*-------------------------------------------------------------------------
 *
 * relread.h
 *	  Plain reads of shop's own tables for the C paths of recommendations
 *	  (relread.c): a table, a column, a btree index as shop made them, or
 *	  NULL / 0 so that the caller runs the SQL it replaces.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SHOP_RELREAD_H
#define SHOP_RELREAD_H

#include "access/genam.h"
#include "executor/tuptable.h"
#include "utils/relcache.h"
#include "utils/uuid.h"

/* the columns of shop."order" a customer's counted orders are read from */
typedef struct ShopOrderCols
{
	AttrNumber	customer;
	AttrNumber	id;
	AttrNumber	status;
	AttrNumber	created;
} ShopOrderCols;

extern Relation ShopPlainTable(Oid nsp, const char *name);
extern AttrNumber ShopPlainColumn(Relation rel, const char *name, Oid type);
extern Relation ShopPlainIndex(Relation rel, const char *name, int nkeys, const AttrNumber *cols,
							   const Oid *types, const bool *desc, bool partial);
extern void ShopIndexRescanEq(IndexScanDesc scan, Oid type, Datum v);
extern bool ShopSlotTextEq(TupleTableSlot *slot, AttrNumber att, const char *s, int len);
extern bool ShopSlotCounted(TupleTableSlot *slot, AttrNumber att);
extern int	ShopCountedOrders(IndexScanDesc scan, TupleTableSlot *slot, const ShopOrderCols *cols,
							  int64 customer, const TimestampTz *before,
							  pg_uuid_t **ids, TimestampTz **at, int *max);

#endif							/* SHOP_RELREAD_H */
