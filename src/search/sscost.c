/*-------------------------------------------------------------------------
 *
 * sscost.c
 *	  shop_search cost estimation.
 *
 * A scan evaluates the whole query when it starts (dictionary lookups,
 * posting lists, scoring) and then hands out rows, so nearly all of its
 * cost is startup cost.  We take genericcostestimate's page and tuple
 * estimates and move them to startup; the per-row cost left is that of
 * returning a TID.  For an ORDER BY scan the alternative is a sequential
 * scan calling the (costly, tokenizing) operator function on every row
 * plus a sort, which the operator functions' COST makes visible.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "optimizer/optimizer.h"
#include "utils/selfuncs.h"

#include "ssearch.h"

void
sscostestimate(PlannerInfo *root, IndexPath *path, double loop_count,
			   Cost *indexStartupCost, Cost *indexTotalCost,
			   Selectivity *indexSelectivity, double *indexCorrelation,
			   double *indexPages)
{
	GenericCosts costs;

	MemSet(&costs, 0, sizeof(costs));
	genericcostestimate(root, path, loop_count, &costs);

	/* everything but handing out the rows happens at startup */
	*indexStartupCost = costs.indexTotalCost - costs.numIndexTuples * cpu_tuple_cost * 0.1;
	if (*indexStartupCost < 0)
		*indexStartupCost = 0;
	*indexTotalCost = costs.indexTotalCost;
	*indexSelectivity = costs.indexSelectivity;
	*indexCorrelation = 0;
	*indexPages = costs.numIndexPages;

	/*
	 * Without a match condition or an ordering the scan lists every
	 * document (the planner offers such a scan for a partial index whose
	 * predicate the query implies): always worse than reading the table.
	 */
	if (path->indexclauses == NIL && path->indexorderbys == NIL)
	{
		*indexStartupCost += 1.0e10;
		*indexTotalCost += 1.0e10;
	}
}
