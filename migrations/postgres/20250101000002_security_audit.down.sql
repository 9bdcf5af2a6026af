-- Reverts 20250101000002_security_audit (reverse order of creation).
-- Dropping a partitioned table also drops its partitions (DEFAULT and monthly ones created by
-- partition maintenance).
DROP TABLE saas_login_attempts;
DROP TABLE saas_unified_audit_logs;
DROP TABLE saas_user_sessions;
DROP TABLE saas_api_keys;
