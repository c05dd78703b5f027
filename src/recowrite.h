/*
 * recowrite.h: the refresh's row writes straight to the heap (by ctid)
 * (recowrite.c)
 */
#ifndef SHOP_RECOWRITE_H
#define SHOP_RECOWRITE_H

#include "storage/itemptr.h"

typedef struct ShopTidWriter ShopTidWriter;

/* a row whose entry in a deferred index is added at the close */
typedef struct ShopTidPending
{
	ItemPointerData tid;
	bool		unchanged;		/* a new version of an updated row */
	float4		a,
				b;
	int64		k1,
				k2,
				x;
} ShopTidPending;

extern ShopTidWriter *ShopTidWriterOpen(const char *relname, const char *key1, const char *key2,
										const char *cola, const char *colb);
extern ShopTidWriter *ShopTidWriterOpenInsert(const char *relname, const char *key1,
											  const char *key2, const char *cola,
											  const char *colb, const char *extra);
extern bool ShopTidWriterCanInsert(const ShopTidWriter *w);
extern bool ShopTidWriterDelete(ShopTidWriter *w, ItemPointer tid, int64 k1, int64 k2);
extern void ShopTidWriterInsert(ShopTidWriter *w, int64 k1, int64 k2, float4 a, float4 b,
								int64 x);
extern bool ShopTidWriterUpdate(ShopTidWriter *w, ItemPointer tid, int64 k1, int64 k2,
								float4 a, float4 b);
extern bool ShopTidWriterDeferIndex(ShopTidWriter *w, const char *indexname,
									int (*cmp) (const void *, const void *));
extern void ShopTidWriterClose(ShopTidWriter *w);

#endif
