-- Reverts 20250101000003_system_management (reverse order of creation).
DROP TABLE saas_notifications;
DROP TABLE saas_files;
DROP TABLE saas_usage_statistics;
DROP TABLE saas_tenant_quotas;
DROP TABLE saas_unified_configs;
