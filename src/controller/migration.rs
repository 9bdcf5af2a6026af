//! TenantMigration controller (placeholder created by the lead so the crate compiles; replaced by the real implementation).
