/* shop--1.0--1.1.sql: update shop from 1.0 to 1.1.
 *
 * 1.1 has no install script of its own: CREATE EXTENSION shop runs
 * shop--1.0.sql and then this file, so a fresh install and an update of a
 * 1.0 install run the very same statements and end with the same objects
 * (test/upgrade checks that, object by object). shop--1.0.sql never
 * changes again; everything new or changed since 1.0 goes here, in the
 * subsystem sections below, and docs/upgrading.md says what each release
 * changed for users.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION shop UPDATE TO '1.1'" to load this file. \quit

-- Search (issues 9, 10) ------------------------------------------------------
-- The index-level functions check in C that the caller may read the indexed
-- table (SELECT, and no row level security hiding rows: 42501) and name a
-- missing relation (42P01).  The two internal ones, which the public entry
-- points (shop.search_facets, shop.did_you_mean) call with the caller's
-- rights, are not for PUBLIC: the storefront and the admin role keep them.
REVOKE EXECUTE ON FUNCTION shop._search_suggest_word(regclass, text),
    shop._search_facet_counts(regclass, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop._search_suggest_word(regclass, text),
    shop._search_facet_counts(regclass, jsonb) TO shop_storefront, shop_admin;
