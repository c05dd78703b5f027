/*-------------------------------------------------------------------------
 *
 * relread.c
 *	  Plain reads of shop's own tables for the C paths of recommendations
 *	  (recoblend.c, recosimilar.c, recoprofile.c).
 *
 * Each of those paths reads shop's tables through their indexes instead of
 * running SQL, and falls back to the SQL it replaces when a table or index
 * is not as shop made it or cannot be read plainly (no SELECT privilege,
 * row level security on, a column retyped, an index dropped or rebuilt
 * differently).  These helpers answer those questions once, for all of
 * them: a table, a column of a given type, a btree index with given key
 * columns, and the comparisons the SQL made on the rows read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/table.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/timestamp.h"

#include "relread.h"
#include "shop.h"

/*
 * A table of schema nsp named name, opened with AccessShareLock when the
 * current user may read it plainly (SELECT, no row level security);
 * NULL otherwise (nothing left open).
 */
Relation
ShopPlainTable(Oid nsp, const char *name)
{
	Oid			relid = get_relname_relid(name, nsp);
	Relation	rel;

	if (!OidIsValid(relid) || get_rel_relkind(relid) != RELKIND_RELATION)
		return NULL;
	rel = table_open(relid, AccessShareLock);
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK ||
		check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
	{
		table_close(rel, AccessShareLock);
		return NULL;
	}
	return rel;
}

/* the attribute number of rel's column name when it has type type; 0 otherwise */
AttrNumber
ShopPlainColumn(Relation rel, const char *name, Oid type)
{
	TupleDesc	desc;

	if (rel == NULL)
		return 0;
	desc = RelationGetDescr(rel);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (!a->attisdropped && strcmp(NameStr(a->attname), name) == 0)
			return a->atttypid == type ? a->attnum : 0;
	}
	return 0;
}

/*
 * The valid btree index of rel named name whose first nkeys key columns
 * are cols (of types types, descending where desc), with no expression,
 * partial exactly when partial, and text keys under the default collation
 * (the bytewise equality the readers compare with); opened with
 * AccessShareLock, NULL otherwise.
 */
Relation
ShopPlainIndex(Relation rel, const char *name, int nkeys, const AttrNumber *cols,
			   const Oid *types, const bool *desc, bool partial)
{
	Oid			idxid;
	Relation	idx;
	bool		ok;

	if (rel == NULL)
		return NULL;
	idxid = get_relname_relid(name, RelationGetNamespace(rel));
	if (!OidIsValid(idxid) || get_rel_relkind(idxid) != RELKIND_INDEX)
		return NULL;
	idx = index_open(idxid, AccessShareLock);
	ok = idx->rd_index->indrelid == RelationGetRelid(rel) &&
		idx->rd_rel->relam == BTREE_AM_OID &&
		idx->rd_index->indisvalid &&
		IndexRelationGetNumberOfKeyAttributes(idx) >= nkeys &&
		heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL) &&
		heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL) != partial;
	for (int i = 0; ok && i < nkeys; i++)
	{
		ok = cols[i] != 0 && idx->rd_index->indkey.values[i] == cols[i] &&
			idx->rd_opcintype[i] == types[i] &&
			((idx->rd_indoption[i] & INDOPTION_DESC) != 0) == desc[i];
		if (ok && types[i] == TEXTOID)
			ok = idx->rd_indcollation[i] == DEFAULT_COLLATION_OID &&
				TupleDescAttr(RelationGetDescr(rel), cols[i] - 1)->attcollation == DEFAULT_COLLATION_OID;
	}
	if (!ok)
	{
		index_close(idx, AccessShareLock);
		return NULL;
	}
	return idx;
}

/*
 * scan (begun on its index) again with its first key column equal to v, of
 * type int8 or uuid.  Readers keep one scan per index for all the lists
 * they read through it: beginning a btree scan allocates its position
 * arrays (about 27 kB, a malloc of their own) and ending it frees them.
 */
void
ShopIndexRescanEq(IndexScanDesc scan, Oid type, Datum v)
{
	ScanKeyData key;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, type == UUIDOID ? F_UUID_EQ : F_INT8EQ, v);
	index_rescan(scan, &key, 1, NULL, 0);
}

/*
 * The slot's text column att equals the len bytes s: the = of a column
 * under the default, deterministic collation.  NULL equals nothing.
 */
bool
ShopSlotTextEq(TupleTableSlot *slot, AttrNumber att, const char *s, int len)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	text	   *t;
	bool		eq;

	if (isnull)
		return false;
	t = DatumGetTextPP(d);
	eq = VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), s, len) == 0;
	if ((Pointer) t != DatumGetPointer(d))
		pfree(t);
	return eq;
}

/* shop._counted(status) of the slot's column att: paid, fulfilling, shipped, delivered */
bool
ShopSlotCounted(TupleTableSlot *slot, AttrNumber att)
{
	return ShopSlotTextEq(slot, att, "paid", 4) ||
		ShopSlotTextEq(slot, att, "fulfilling", 10) ||
		ShopSlotTextEq(slot, att, "shipped", 7) ||
		ShopSlotTextEq(slot, att, "delivered", 9);
}

/*
 * A customer's counted orders (shop._counted(status)), as the SQL reads
 * them: scan, begun on an index of shop."order" whose first key column is
 * customer_id, is rescanned for customer; each row of that customer whose
 * status counts, with its order_id and created_at (NOT NULL columns,
 * skipped when NULL), and created before *before when before is not NULL,
 * is appended to (*ids, *at), arrays of *max entries grown by doubling.
 * Returns how many there are.  The recommendation blend and the refresh's
 * profiles read a customer's purchases through it.
 */
int
ShopCountedOrders(IndexScanDesc scan, TupleTableSlot *slot, const ShopOrderCols *cols,
				  int64 customer, const TimestampTz *before,
				  pg_uuid_t **ids, TimestampTz **at, int *max)
{
	int			n = 0;

	ShopIndexRescanEq(scan, INT8OID, Int64GetDatum(customer));
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		n1,
					n2,
					n3;
		Datum		c = slot_getattr(slot, cols->customer, &n1);
		Datum		id = slot_getattr(slot, cols->id, &n2);
		Datum		created = slot_getattr(slot, cols->created, &n3);

		if (n1 || DatumGetInt64(c) != customer || n2 || n3 ||
			!ShopSlotCounted(slot, cols->status))
			continue;
		if (before != NULL && !(DatumGetTimestampTz(created) < *before))
			continue;
		if (n == *max)
		{
			*max *= 2;
			*ids = repalloc(*ids, sizeof(pg_uuid_t) * *max);
			*at = repalloc(*at, sizeof(TimestampTz) * *max);
		}
		memcpy(&(*ids)[n], DatumGetUUIDP(id), sizeof(pg_uuid_t));
		(*at)[n++] = DatumGetTimestampTz(created);
	}
	return n;
}
