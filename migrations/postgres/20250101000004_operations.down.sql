-- Reverts 20250101000004_operations (reverse order of creation).
DROP TABLE saas_health_checks;
DROP TABLE saas_system_metrics;
DROP TABLE saas_monitor_rules;
DROP TABLE saas_unified_alerts;
