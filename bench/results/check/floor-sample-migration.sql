BEGIN;
SELECT pg_advisory_xact_lock(-4354960473977031729);
SET LOCAL ROLE "tenant_bench_t00001_635f56f2"; SET LOCAL search_path TO "tenant_bench_t00001_635f56f2";
ALTER TABLE saas_users ADD COLUMN bench_note_2 text;
CREATE INDEX saas_users_bench_note_2_idx ON saas_users (bench_note_2);

INSERT INTO "tenant_bench_t00001_635f56f2".tenantdb_schema_migrations (version, name, checksum, execution_ms) VALUES (20260101000002, 'bench_fleet_2', 'c74a756e7c966c365ec34ef90b2da9184c6c011c80412a7e9d5a769ead8d90c3', 0);
COMMIT;
