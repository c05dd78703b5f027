/*-------------------------------------------------------------------------
 *
 * ssvalidate.c
 *	  shop_search operator class validation (amvalidate).
 *
 * An opclass of shop_search has no support functions and two operators:
 * strategy 1, a boolean match operator (doc @@@ query), and strategy 2, an
 * ordering operator (doc <=> query) returning float4 and sorting with a
 * btree opfamily.  Both take the opclass's input type on the left.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/amvalidate.h"
#include "access/htup_details.h"
#include "catalog/pg_amop.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "ssearch.h"

bool
ssvalidate(Oid opclassoid)
{
	bool		result = true;
	HeapTuple	classtup;
	Form_pg_opclass classform;
	Oid			opfamilyoid,
				opcintype;
	char	   *opclassname;
	CatCList   *oprlist;
	bool		seen[SS_NSTRATEGIES + 1] = {false, false, false};

	classtup = SearchSysCache1(CLAOID, ObjectIdGetDatum(opclassoid));
	if (!HeapTupleIsValid(classtup))
		elog(ERROR, "cache lookup failed for operator class %u", opclassoid);
	classform = (Form_pg_opclass) GETSTRUCT(classtup);
	opfamilyoid = classform->opcfamily;
	opcintype = classform->opcintype;
	opclassname = NameStr(classform->opcname);

	oprlist = SearchSysCacheList1(AMOPSTRATEGY, ObjectIdGetDatum(opfamilyoid));
	for (int i = 0; i < oprlist->n_members; i++)
	{
		HeapTuple	oprtup = &oprlist->members[i]->tuple;
		Form_pg_amop oprform = (Form_pg_amop) GETSTRUCT(oprtup);
		bool		ok;

		if (oprform->amopstrategy < 1 || oprform->amopstrategy > SS_NSTRATEGIES)
		{
			ereport(INFO,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("shop_search opfamily of \"%s\" contains operator %s with invalid strategy number %d",
							opclassname, format_operator(oprform->amopopr),
							oprform->amopstrategy)));
			result = false;
			continue;
		}
		seen[oprform->amopstrategy] = true;
		if (oprform->amopstrategy == SS_MATCH_STRATEGY)
			ok = oprform->amoppurpose == AMOP_SEARCH &&
				check_amop_signature(oprform->amopopr, BOOLOID,
									 oprform->amoplefttype, oprform->amoprighttype);
		else
			ok = oprform->amoppurpose == AMOP_ORDER &&
				check_amop_signature(oprform->amopopr, FLOAT4OID,
									 oprform->amoplefttype, oprform->amoprighttype);
		if (!ok || oprform->amoplefttype != opcintype)
		{
			ereport(INFO,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("shop_search opfamily of \"%s\" contains operator %s with wrong signature",
							opclassname, format_operator(oprform->amopopr))));
			result = false;
		}
	}
	ReleaseCatCacheList(oprlist);
	for (int s = 1; s <= SS_NSTRATEGIES; s++)
	{
		if (!seen[s])
		{
			ereport(INFO,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("shop_search operator class \"%s\" is missing strategy %d",
							opclassname, s)));
			result = false;
		}
	}
	ReleaseSysCache(classtup);
	return result;
}
