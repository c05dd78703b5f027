/*-------------------------------------------------------------------------
 *
 * sshandler.c
 *	  shop_search access method handler and reloptions.
 *
 * Reloptions (CREATE INDEX ... USING shop_search (...) WITH (...)):
 *   language            Snowball stemmer language, default 'english'
 *   weight_title        BM25F weight of the title field, default 3
 *   weight_brand        ... of the brand field, default 2
 *   weight_description  ... of the description field, default 1
 * Weights are read at query time, so ALTER INDEX ... SET changes ranking
 * without a rebuild; language is fixed at build (stems are stored): the
 * build writes it into the metapage, and inserts and queries stem with
 * that one, so a changed reloption takes effect at the next REINDEX.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/reloptions.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/rel.h"

#include "shop.h"
#include "ssearch.h"

PG_FUNCTION_INFO_V1(shop_search_handler);

static relopt_kind ss_relopt_kind;
static bool ss_relopts_ready = false;
static relopt_parse_elt ss_relopt_tab[4];

static void
validate_language(const char *value)
{
	if (value != NULL)
		ShopGetStemmer(value);
}

static void
ss_init_reloptions(void)
{
	if (ss_relopts_ready)
		return;
	ss_relopt_kind = add_reloption_kind();
	add_string_reloption(ss_relopt_kind, "language",
						 "Snowball stemmer language of the index",
						 "english", validate_language, AccessExclusiveLock);
	add_real_reloption(ss_relopt_kind, "weight_title", "BM25F weight of the title field",
					   3.0, 0.0, 100.0, ShareUpdateExclusiveLock);
	add_real_reloption(ss_relopt_kind, "weight_brand", "BM25F weight of the brand field",
					   2.0, 0.0, 100.0, ShareUpdateExclusiveLock);
	add_real_reloption(ss_relopt_kind, "weight_description", "BM25F weight of the description field",
					   1.0, 0.0, 100.0, ShareUpdateExclusiveLock);
	ss_relopt_tab[0].optname = "language";
	ss_relopt_tab[0].opttype = RELOPT_TYPE_STRING;
	ss_relopt_tab[0].offset = offsetof(SsOptions, language_offset);
	ss_relopt_tab[1].optname = "weight_title";
	ss_relopt_tab[1].opttype = RELOPT_TYPE_REAL;
	ss_relopt_tab[1].offset = offsetof(SsOptions, weight_title);
	ss_relopt_tab[2].optname = "weight_brand";
	ss_relopt_tab[2].opttype = RELOPT_TYPE_REAL;
	ss_relopt_tab[2].offset = offsetof(SsOptions, weight_brand);
	ss_relopt_tab[3].optname = "weight_description";
	ss_relopt_tab[3].opttype = RELOPT_TYPE_REAL;
	ss_relopt_tab[3].offset = offsetof(SsOptions, weight_description);
	ss_relopts_ready = true;
}

bytea *
ssoptions(Datum reloptions, bool validate)
{
	ss_init_reloptions();
	return (bytea *) build_reloptions(reloptions, validate, ss_relopt_kind,
									  sizeof(SsOptions), ss_relopt_tab, lengthof(ss_relopt_tab));
}

/*
 * SsGetLanguage: the stemmer language of the index's reloptions, which a
 * build (CREATE INDEX, REINDEX) writes into the metapage.  Everything
 * else stems with the metapage's language (SsIndexLanguage): changing the
 * reloption with ALTER INDEX takes effect at the next REINDEX, as BRIN's
 * pages_per_range does.
 */
const char *
SsGetLanguage(Relation index)
{
	SsOptions  *opts = (SsOptions *) index->rd_options;

	if (opts == NULL || opts->language_offset == 0)
		return "english";
	return (const char *) opts + opts->language_offset;
}

/*
 * SsIndexLanguage: the language the index was built with (its metapage),
 * which inserts stem with as queries do.  Cached in the relcache entry
 * (rd_amcache): a build gives the index a new relfilenode, which
 * invalidates the entry.  Returns a palloc'd copy.
 */
const char *
SsIndexLanguage(Relation index)
{
	if (index->rd_amcache == NULL)
	{
		SsMetaPageData meta;

		SsReadMeta(index, &meta);
		meta.language[sizeof(meta.language) - 1] = '\0';
		index->rd_amcache = MemoryContextStrdup(index->rd_indexcxt, meta.language);
	}
	/* a copy: an invalidation while the caller works would free the cache */
	return pstrdup((const char *) index->rd_amcache);
}

/* SsGetWeights: the three field weights into w[]. */
void
SsGetWeights(Relation index, double *w)
{
	SsOptions  *opts = (SsOptions *) index->rd_options;

	w[0] = opts ? opts->weight_title : 3.0;
	w[1] = opts ? opts->weight_brand : 2.0;
	w[2] = opts ? opts->weight_description : 1.0;
}

/*
 * SsTestPause: a pause point for tests of concurrency (PostgreSQL 15 has
 * no injection points).  When shop.search_test_pause (superuser only)
 * names this point, the backend waits for a share lock on the advisory
 * lock SS_TEST_PAUSE_KEY, which a controlling session holds with
 * pg_advisory_lock(1397968979): isolation specs see the backend as
 * blocked by that session, run other steps meanwhile, then release it
 * with pg_advisory_unlock.  Callers hold no buffer lock and no
 * shop_search heavyweight lock here.  The points:
 *
 *   bulkdelete-page  ambulkdelete, after each document page it processed
 *   scan-meta        an index scan, after it read the metapage and before
 *                    it reads anything the metapage points to
 *   facets-collected shop._search_facet_counts, after it copied the
 *                    matching documents and before it asks the visibility
 *                    map about their heap blocks
 */
void
SsTestPause(const char *point)
{
	LOCKTAG		tag;

	if (shop_search_test_pause == NULL || strcmp(shop_search_test_pause, point) != 0)
		return;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (SS_TEST_PAUSE_KEY >> 32),
						 (uint32) SS_TEST_PAUSE_KEY, 1);
	(void) LockAcquire(&tag, ShareLock, false, false);
	LockRelease(&tag, ShareLock, false);
}

/*
 * shop_search_handler: the IndexAmRoutine.  Single column, no ordering of
 * the column itself, ordering by the <=> operator, optional keys (an
 * ORDER BY without WHERE still uses the index), no NULL searches.
 */
Datum
shop_search_handler(PG_FUNCTION_ARGS)
{
	IndexAmRoutine *amroutine = makeNode(IndexAmRoutine);

	ss_init_reloptions();
	amroutine->amstrategies = SS_NSTRATEGIES;
	amroutine->amsupport = 0;
	amroutine->amoptsprocnum = 0;
	amroutine->amcanorder = false;
	amroutine->amcanorderbyop = true;
	amroutine->amcanbackward = false;
	amroutine->amcanunique = false;
	amroutine->amcanmulticol = false;
	amroutine->amoptionalkey = true;
	amroutine->amsearcharray = false;
	amroutine->amsearchnulls = false;
	amroutine->amstorage = false;
	amroutine->amclusterable = false;
	amroutine->ampredlocks = false;
	amroutine->amcanparallel = false;
	amroutine->amcaninclude = true;
	amroutine->amusemaintenanceworkmem = true;
#if PG_VERSION_NUM >= 160000
	amroutine->amsummarizing = false;
#endif
	amroutine->amparallelvacuumoptions = VACUUM_OPTION_PARALLEL_BULKDEL;
	amroutine->amkeytype = InvalidOid;

	amroutine->ambuild = ssbuild;
	amroutine->ambuildempty = ssbuildempty;
	amroutine->aminsert = ssinsert;
	amroutine->ambulkdelete = ssbulkdelete;
	amroutine->amvacuumcleanup = ssvacuumcleanup;
	amroutine->amcanreturn = NULL;
	amroutine->amcostestimate = sscostestimate;
	amroutine->amoptions = ssoptions;
	amroutine->amproperty = NULL;
	amroutine->ambuildphasename = NULL;
	amroutine->amvalidate = ssvalidate;
	amroutine->amadjustmembers = NULL;
	amroutine->ambeginscan = ssbeginscan;
	amroutine->amrescan = ssrescan;
	amroutine->amgettuple = ssgettuple;
	amroutine->amgetbitmap = ssgetbitmap;
	amroutine->amendscan = ssendscan;
	amroutine->ammarkpos = NULL;
	amroutine->amrestrpos = NULL;
	amroutine->amestimateparallelscan = NULL;
	amroutine->aminitparallelscan = NULL;
	amroutine->amparallelrescan = NULL;

	PG_RETURN_POINTER(amroutine);
}
