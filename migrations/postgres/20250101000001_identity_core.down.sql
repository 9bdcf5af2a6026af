-- Reverts 20250101000001_identity_core (reverse order of creation).
DROP TABLE saas_role_permissions;
DROP TABLE saas_user_roles;
DROP TABLE saas_permissions;
DROP TABLE saas_roles;
DROP TABLE saas_users;
DROP TABLE saas_tenants;
DROP FUNCTION tenantdb_set_updated_at();
