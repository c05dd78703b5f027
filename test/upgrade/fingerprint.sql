-- fingerprint.sql: one line per object of the shop extension with
-- everything a user can observe of it: definitions, privileges, comments,
-- columns, constraints, indexes, triggers, policies, dump configuration.
-- test/upgrade diffs this between an updated 1.0 install and a fresh one.
WITH ext AS (SELECT oid, extconfig, extcondition FROM pg_extension WHERE extname = 'shop'),
member AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
),
rel AS (
    SELECT c.oid FROM member m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
)
SELECT line FROM (
    -- every member object, described, with its comment
    SELECT pg_describe_object(m.classid, m.objid, 0) || ' | comment: ' ||
           coalesce(obj_description(m.objid, (SELECT relname FROM pg_class WHERE oid = m.classid)::name), '-') AS line
      FROM member m
    UNION ALL
    -- functions: the whole definition (volatility, strictness, security,
    -- search_path, parallel safety, body) and privileges
    SELECT 'function ' || p.oid::regprocedure || E'\n' || pg_get_functiondef(p.oid) ||
           ' | acl: ' || coalesce(p.proacl::text, 'default')
      FROM member m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
     WHERE p.prokind IN ('f', 'p', 'w')
    UNION ALL
    SELECT 'aggregate ' || p.oid::regprocedure || ' | acl: ' || coalesce(p.proacl::text, 'default')
      FROM member m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
     WHERE p.prokind = 'a'
    UNION ALL
    -- relations: kind, options, RLS, privileges, view definitions
    SELECT format('relation %s kind %s options %s rls %s/%s acl %s%s', c.oid::regclass, c.relkind,
                  c.reloptions, c.relrowsecurity, c.relforcerowsecurity, coalesce(c.relacl::text, 'default'),
                  CASE WHEN c.relkind IN ('v', 'm') THEN E'\n' || pg_get_viewdef(c.oid) ELSE '' END)
      FROM rel JOIN pg_class c ON c.oid = rel.oid
    UNION ALL
    SELECT format('column %s.%s %s notnull %s default %s identity %s generated %s acl %s comment %s',
                  a.attrelid::regclass, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
                  coalesce(a.attacl::text, 'default'), coalesce(col_description(a.attrelid, a.attnum), '-'))
      FROM rel JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    UNION ALL
    SELECT format('constraint %s on %s: %s', co.conname, co.conrelid::regclass, pg_get_constraintdef(co.oid))
      FROM rel JOIN pg_constraint co ON co.conrelid = rel.oid
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
      FROM rel JOIN pg_index i ON i.indrelid = rel.oid
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
      FROM rel JOIN pg_trigger t ON t.tgrelid = rel.oid AND NOT t.tgisinternal
    UNION ALL
    SELECT format('policy %s on %s for %s to %s using %s check %s', po.polname, po.polrelid::regclass,
                  po.polcmd, po.polroles::regrole[], pg_get_expr(po.polqual, po.polrelid),
                  pg_get_expr(po.polwithcheck, po.polrelid))
      FROM rel JOIN pg_policy po ON po.polrelid = rel.oid
    UNION ALL
    SELECT format('dumped %s where %s', cfg.t::regclass, cfg.cond)
      FROM ext, unnest(ext.extconfig, ext.extcondition) cfg(t, cond)
    UNION ALL
    SELECT format('schema shop owner-acl %s', n.nspacl) FROM pg_namespace n WHERE n.nspname = 'shop'
    UNION ALL
    SELECT format('type %s acl %s', t.oid::regtype, coalesce(t.typacl::text, 'default'))
      FROM member m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
) s
ORDER BY line;
