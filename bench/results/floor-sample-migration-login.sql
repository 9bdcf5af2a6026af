\connect tenantdb_shared tenant_bench_t00001_635f56f2
BEGIN;
SELECT pg_advisory_xact_lock(-4354960473977031729);
SET LOCAL search_path TO "tenant_bench_t00001_635f56f2";
ALTER TABLE saas_users ADD COLUMN bench_note_3 text;
CREATE INDEX saas_users_bench_note_3_idx ON saas_users (bench_note_3);

INSERT INTO "tenant_bench_t00001_635f56f2".tenantdb_schema_migrations (version, name, checksum, execution_ms) VALUES (20260101000003, 'bench_fleet_3', '3720964274b8eea7b4700b1c5b6eea48d43435bd41a472bce365807c52336539', 0);
COMMIT;
