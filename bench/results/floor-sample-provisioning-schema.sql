BEGIN;
CREATE ROLE "tenant_bench_t00001_635f56f2" LOGIN PASSWORD 'SCRAM-SHA-256$4096:qnyJ5YwevrtuT/2Ujejicg==$pNpuh87FgFnR4j6ZddO8Z+dfWWvVaUb+SzdoNHF1HT4=:yqZCvf1l4GARFpWuiXZUgaA7zvirsq2ifsNGc6zzxWA=' NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT -1;
COMMENT ON ROLE "tenant_bench_t00001_635f56f2" IS 'tenantdb.io/owner=bench/t00001';
COMMIT;
BEGIN;
SELECT pg_advisory_xact_lock(7464627001);
GRANT "tenantdb_shared_connect" TO "tenant_bench_t00001_635f56f2";
COMMIT;
BEGIN;
CREATE SCHEMA "tenant_bench_t00001_635f56f2" AUTHORIZATION "tenant_bench_t00001_635f56f2";
COMMENT ON SCHEMA "tenant_bench_t00001_635f56f2" IS 'tenantdb.io/owner=bench/t00001';
COMMIT;
BEGIN;
ALTER ROLE "tenant_bench_t00001_635f56f2" IN DATABASE "tenantdb_shared" SET search_path TO "tenant_bench_t00001_635f56f2";
COMMIT;
BEGIN;
SELECT pg_advisory_xact_lock(-4354960473977031729);
SET LOCAL ROLE "tenant_bench_t00001_635f56f2"; SET LOCAL search_path TO "tenant_bench_t00001_635f56f2";
CREATE TABLE IF NOT EXISTS "tenant_bench_t00001_635f56f2".tenantdb_schema_migrations (version bigint PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), execution_ms bigint NOT NULL);
-- Layer 1: 核心身份层 (IDENTITY_CORE)
-- saas_tenants, saas_users, saas_roles, saas_permissions, saas_user_roles, saas_role_permissions
-- plus the shared updated_at trigger function used by every later migration.
--
-- Conventions (see migrations/README.md): no schema qualification, no extensions, CHECK constraints
-- instead of enum types, constraint/index names prefixed with the table name.

-- 共享触发器函数: 模拟 MySQL 的 ON UPDATE CURRENT_TIMESTAMP
-- (MySQL semantics: bump updated_at when the row changes, unless the UPDATE sets updated_at itself.)
CREATE FUNCTION tenantdb_set_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at AND NEW IS DISTINCT FROM OLD THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION tenantdb_set_updated_at() IS '更新时间触发器 (BEFORE UPDATE: sets updated_at = now() like MySQL ON UPDATE CURRENT_TIMESTAMP)';

-- ---------------------------------------------------------------------------------------------
-- 租户表 (tenants). The tenant's own id is the tenant key; every other table carries tenant_id.
CREATE TABLE saas_tenants (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_code         varchar(50)  NOT NULL,
    tenant_name         varchar(200) NOT NULL,
    tenant_type         varchar(20)  NOT NULL DEFAULT 'enterprise',
    status              varchar(20)  NOT NULL DEFAULT 'pending',
    plan_code           varchar(50)  NOT NULL DEFAULT 'free',
    domain              varchar(255),
    contact_name        varchar(100),
    contact_email       varchar(255),
    contact_phone       varchar(20),
    logo_url            varchar(500),
    config              jsonb        NOT NULL DEFAULT '{}'::jsonb,
    activated_at        timestamptz,
    expires_at          timestamptz,
    -- standard audit fields
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    -- standard soft delete fields
    deleted_at          timestamptz,
    deleted_by          varchar(36),
    -- standard version control fields
    data_version        integer      NOT NULL DEFAULT 1,
    last_modified_hash  varchar(64),
    CONSTRAINT saas_tenants_pkey PRIMARY KEY (id),
    CONSTRAINT chk_saas_tenants_tenant_type CHECK (tenant_type IN ('enterprise', 'team', 'personal', 'trial')),
    CONSTRAINT chk_saas_tenants_status CHECK (status IN ('pending', 'active', 'suspended', 'expired', 'closed')),
    CONSTRAINT chk_saas_tenants_data_version CHECK (data_version >= 1)
);

CREATE UNIQUE INDEX uk_saas_tenants_tenant_code ON saas_tenants (tenant_code) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX uk_saas_tenants_domain ON saas_tenants (domain) WHERE deleted_at IS NULL AND domain IS NOT NULL;
CREATE INDEX idx_saas_tenants_status ON saas_tenants (status, created_at);
CREATE INDEX idx_saas_tenants_expires_at ON saas_tenants (expires_at) WHERE expires_at IS NOT NULL;

CREATE TRIGGER trg_saas_tenants_updated_at BEFORE UPDATE ON saas_tenants
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_tenants IS '租户表 (tenants)';
COMMENT ON COLUMN saas_tenants.id IS '租户ID (tenant id, UUID string)';
COMMENT ON COLUMN saas_tenants.tenant_code IS '租户编码 (unique slug among non-deleted tenants)';
COMMENT ON COLUMN saas_tenants.tenant_name IS '租户名称 (display name)';
COMMENT ON COLUMN saas_tenants.tenant_type IS '租户类型 (enterprise/team/personal/trial)';
COMMENT ON COLUMN saas_tenants.status IS '租户状态 (pending/active/suspended/expired/closed)';
COMMENT ON COLUMN saas_tenants.plan_code IS '订阅套餐编码 (subscription plan; limits live in saas_tenant_quotas)';
COMMENT ON COLUMN saas_tenants.domain IS '自定义域名 (custom domain)';
COMMENT ON COLUMN saas_tenants.contact_name IS '联系人 (contact person)';
COMMENT ON COLUMN saas_tenants.contact_email IS '联系邮箱 (contact e-mail)';
COMMENT ON COLUMN saas_tenants.contact_phone IS '联系电话 (contact phone)';
COMMENT ON COLUMN saas_tenants.logo_url IS '租户Logo (logo URL)';
COMMENT ON COLUMN saas_tenants.config IS '租户配置 (merged tenant/integration/webhook/security config, seed §5.1)';
COMMENT ON COLUMN saas_tenants.activated_at IS '激活时间 (activation time)';
COMMENT ON COLUMN saas_tenants.expires_at IS '到期时间 (subscription expiry)';
COMMENT ON COLUMN saas_tenants.created_at IS '创建时间';
COMMENT ON COLUMN saas_tenants.updated_at IS '更新时间';
COMMENT ON COLUMN saas_tenants.created_by IS '创建人ID';
COMMENT ON COLUMN saas_tenants.updated_by IS '更新人ID';
COMMENT ON COLUMN saas_tenants.deleted_at IS '删除时间 (soft delete)';
COMMENT ON COLUMN saas_tenants.deleted_by IS '删除人ID';
COMMENT ON COLUMN saas_tenants.data_version IS '数据版本 (optimistic locking counter)';
COMMENT ON COLUMN saas_tenants.last_modified_hash IS '数据摘要 (hex digest of the last write, optimistic locking)';

-- ---------------------------------------------------------------------------------------------
-- 用户表 (users)
CREATE TABLE saas_users (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    username            varchar(50)  NOT NULL,
    email               varchar(255),
    phone               varchar(20),
    password_hash       varchar(255),
    display_name        varchar(100),
    avatar_url          varchar(500),
    status              varchar(30)  NOT NULL DEFAULT 'pending_activation',
    status_flags        jsonb        NOT NULL DEFAULT '{}'::jsonb,
    last_login_at       timestamptz,
    last_login_ip       varchar(45),
    failed_login_count  integer      NOT NULL DEFAULT 0,
    locked_until        timestamptz,
    password_changed_at timestamptz,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    deleted_at          timestamptz,
    deleted_by          varchar(36),
    data_version        integer      NOT NULL DEFAULT 1,
    last_modified_hash  varchar(64),
    CONSTRAINT saas_users_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_users_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT chk_saas_users_status CHECK (status IN ('active', 'inactive', 'locked', 'pending_activation')),
    CONSTRAINT chk_saas_users_failed_login_count CHECK (failed_login_count >= 0),
    CONSTRAINT chk_saas_users_data_version CHECK (data_version >= 1)
);

CREATE UNIQUE INDEX uk_saas_users_username ON saas_users (tenant_id, username) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX uk_saas_users_email ON saas_users (tenant_id, email) WHERE deleted_at IS NULL AND email IS NOT NULL;
CREATE UNIQUE INDEX uk_saas_users_phone ON saas_users (tenant_id, phone) WHERE deleted_at IS NULL AND phone IS NOT NULL;
CREATE INDEX idx_saas_users_tenant_status ON saas_users (tenant_id, status, created_at);

CREATE TRIGGER trg_saas_users_updated_at BEFORE UPDATE ON saas_users
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_users IS '用户表 (users)';
COMMENT ON COLUMN saas_users.id IS '用户ID';
COMMENT ON COLUMN saas_users.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_users.username IS '用户名 (unique per tenant among non-deleted users)';
COMMENT ON COLUMN saas_users.email IS '邮箱';
COMMENT ON COLUMN saas_users.phone IS '手机号';
COMMENT ON COLUMN saas_users.password_hash IS '密码哈希 (NULL for SSO-only users)';
COMMENT ON COLUMN saas_users.display_name IS '显示名称';
COMMENT ON COLUMN saas_users.avatar_url IS '头像URL';
COMMENT ON COLUMN saas_users.status IS '用户状态 (active/inactive/locked/pending_activation; deletion is soft delete)';
COMMENT ON COLUMN saas_users.status_flags IS '状态标记 {email_verified, phone_verified, is_tenant_admin, ...} (seed §5.1: flags merged into JSON)';
COMMENT ON COLUMN saas_users.last_login_at IS '最后登录时间';
COMMENT ON COLUMN saas_users.last_login_ip IS '最后登录IP';
COMMENT ON COLUMN saas_users.failed_login_count IS '连续登录失败次数';
COMMENT ON COLUMN saas_users.locked_until IS '锁定截止时间';
COMMENT ON COLUMN saas_users.password_changed_at IS '密码修改时间';
COMMENT ON COLUMN saas_users.created_at IS '创建时间';
COMMENT ON COLUMN saas_users.updated_at IS '更新时间';
COMMENT ON COLUMN saas_users.created_by IS '创建人ID';
COMMENT ON COLUMN saas_users.updated_by IS '更新人ID';
COMMENT ON COLUMN saas_users.deleted_at IS '删除时间';
COMMENT ON COLUMN saas_users.deleted_by IS '删除人ID';
COMMENT ON COLUMN saas_users.data_version IS '数据版本';
COMMENT ON COLUMN saas_users.last_modified_hash IS '数据摘要';

-- ---------------------------------------------------------------------------------------------
-- 角色表 (roles)
CREATE TABLE saas_roles (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    role_code           varchar(50)  NOT NULL,
    role_name           varchar(100) NOT NULL,
    description         text,
    role_type           varchar(20)  NOT NULL DEFAULT 'custom',
    is_default          boolean      NOT NULL DEFAULT false,
    status              varchar(20)  NOT NULL DEFAULT 'active',
    sort_order          integer      NOT NULL DEFAULT 0,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    deleted_at          timestamptz,
    deleted_by          varchar(36),
    data_version        integer      NOT NULL DEFAULT 1,
    last_modified_hash  varchar(64),
    CONSTRAINT saas_roles_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_roles_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT chk_saas_roles_role_type CHECK (role_type IN ('system', 'custom')),
    CONSTRAINT chk_saas_roles_status CHECK (status IN ('active', 'inactive')),
    CONSTRAINT chk_saas_roles_data_version CHECK (data_version >= 1)
);

CREATE UNIQUE INDEX uk_saas_roles_role_code ON saas_roles (tenant_id, role_code) WHERE deleted_at IS NULL;
CREATE INDEX idx_saas_roles_tenant_status ON saas_roles (tenant_id, status, sort_order);

CREATE TRIGGER trg_saas_roles_updated_at BEFORE UPDATE ON saas_roles
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_roles IS '角色表 (roles)';
COMMENT ON COLUMN saas_roles.id IS '角色ID';
COMMENT ON COLUMN saas_roles.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_roles.role_code IS '角色编码 (unique per tenant among non-deleted roles)';
COMMENT ON COLUMN saas_roles.role_name IS '角色名称';
COMMENT ON COLUMN saas_roles.description IS '角色描述';
COMMENT ON COLUMN saas_roles.role_type IS '角色类型 (system: built-in, not editable; custom)';
COMMENT ON COLUMN saas_roles.is_default IS '是否默认角色 (granted to new users)';
COMMENT ON COLUMN saas_roles.status IS '角色状态';
COMMENT ON COLUMN saas_roles.sort_order IS '排序';
COMMENT ON COLUMN saas_roles.created_at IS '创建时间';
COMMENT ON COLUMN saas_roles.updated_at IS '更新时间';
COMMENT ON COLUMN saas_roles.created_by IS '创建人ID';
COMMENT ON COLUMN saas_roles.updated_by IS '更新人ID';
COMMENT ON COLUMN saas_roles.deleted_at IS '删除时间';
COMMENT ON COLUMN saas_roles.deleted_by IS '删除人ID';
COMMENT ON COLUMN saas_roles.data_version IS '数据版本';
COMMENT ON COLUMN saas_roles.last_modified_hash IS '数据摘要';

-- ---------------------------------------------------------------------------------------------
-- 权限表 (permissions): the tenant's permission catalogue (seeded at provisioning), a tree.
CREATE TABLE saas_permissions (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    parent_id           varchar(36),
    permission_code     varchar(100) NOT NULL,
    permission_name     varchar(100) NOT NULL,
    description         text,
    permission_type     varchar(20)  NOT NULL DEFAULT 'api',
    module              varchar(50),
    resource_path       varchar(255),
    http_method         varchar(10),
    status              varchar(20)  NOT NULL DEFAULT 'active',
    sort_order          integer      NOT NULL DEFAULT 0,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    CONSTRAINT saas_permissions_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_permissions_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_saas_permissions_parent_id FOREIGN KEY (parent_id) REFERENCES saas_permissions (id) ON DELETE SET NULL,
    CONSTRAINT chk_saas_permissions_permission_type CHECK (permission_type IN ('menu', 'button', 'api', 'data')),
    CONSTRAINT chk_saas_permissions_http_method CHECK (http_method IS NULL OR http_method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE', '*')),
    CONSTRAINT chk_saas_permissions_status CHECK (status IN ('active', 'inactive'))
);

CREATE UNIQUE INDEX uk_saas_permissions_permission_code ON saas_permissions (tenant_id, permission_code);
CREATE INDEX idx_saas_permissions_tenant_module ON saas_permissions (tenant_id, module);
CREATE INDEX idx_saas_permissions_parent_id ON saas_permissions (parent_id);

CREATE TRIGGER trg_saas_permissions_updated_at BEFORE UPDATE ON saas_permissions
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_permissions IS '权限表 (permissions)';
COMMENT ON COLUMN saas_permissions.id IS '权限ID';
COMMENT ON COLUMN saas_permissions.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_permissions.parent_id IS '父权限ID (permission tree)';
COMMENT ON COLUMN saas_permissions.permission_code IS '权限编码 (e.g. ai:agent:create; unique per tenant)';
COMMENT ON COLUMN saas_permissions.permission_name IS '权限名称';
COMMENT ON COLUMN saas_permissions.description IS '权限描述';
COMMENT ON COLUMN saas_permissions.permission_type IS '权限类型 (menu/button/api/data)';
COMMENT ON COLUMN saas_permissions.module IS '所属模块 (wework/ai/health/system)';
COMMENT ON COLUMN saas_permissions.resource_path IS '资源路径 (route or API path)';
COMMENT ON COLUMN saas_permissions.http_method IS 'HTTP方法 (for api permissions)';
COMMENT ON COLUMN saas_permissions.status IS '权限状态';
COMMENT ON COLUMN saas_permissions.sort_order IS '排序';
COMMENT ON COLUMN saas_permissions.created_at IS '创建时间';
COMMENT ON COLUMN saas_permissions.updated_at IS '更新时间';
COMMENT ON COLUMN saas_permissions.created_by IS '创建人ID';
COMMENT ON COLUMN saas_permissions.updated_by IS '更新人ID';

-- ---------------------------------------------------------------------------------------------
-- 用户角色关联表 (user ↔ role). Link rows are inserted and deleted, never updated: no updated_at.
CREATE TABLE saas_user_roles (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    user_id             varchar(36)  NOT NULL,
    role_id             varchar(36)  NOT NULL,
    expires_at          timestamptz,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    CONSTRAINT saas_user_roles_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_user_roles_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_saas_user_roles_user_id FOREIGN KEY (user_id) REFERENCES saas_users (id) ON DELETE CASCADE,
    CONSTRAINT fk_saas_user_roles_role_id FOREIGN KEY (role_id) REFERENCES saas_roles (id) ON DELETE CASCADE,
    CONSTRAINT uk_saas_user_roles_user_role UNIQUE (user_id, role_id)
);

CREATE INDEX idx_saas_user_roles_role_id ON saas_user_roles (role_id);
CREATE INDEX idx_saas_user_roles_tenant_user ON saas_user_roles (tenant_id, user_id);

COMMENT ON TABLE saas_user_roles IS '用户角色关联表 (user-role assignments)';
COMMENT ON COLUMN saas_user_roles.id IS '关联ID';
COMMENT ON COLUMN saas_user_roles.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_user_roles.user_id IS '用户ID';
COMMENT ON COLUMN saas_user_roles.role_id IS '角色ID';
COMMENT ON COLUMN saas_user_roles.expires_at IS '授权到期时间 (NULL = permanent)';
COMMENT ON COLUMN saas_user_roles.created_at IS '授权时间 (granted at)';
COMMENT ON COLUMN saas_user_roles.created_by IS '授权人ID (granted by)';

-- ---------------------------------------------------------------------------------------------
-- 角色权限关联表 (role ↔ permission), with the data scope of the grant (seed §8.2 数据权限).
CREATE TABLE saas_role_permissions (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    role_id             varchar(36)  NOT NULL,
    permission_id       varchar(36)  NOT NULL,
    data_scope          varchar(20)  NOT NULL DEFAULT 'tenant',
    data_scope_rules    jsonb,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    CONSTRAINT saas_role_permissions_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_role_permissions_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_saas_role_permissions_role_id FOREIGN KEY (role_id) REFERENCES saas_roles (id) ON DELETE CASCADE,
    CONSTRAINT fk_saas_role_permissions_permission_id FOREIGN KEY (permission_id) REFERENCES saas_permissions (id) ON DELETE CASCADE,
    CONSTRAINT uk_saas_role_permissions_role_permission UNIQUE (role_id, permission_id),
    CONSTRAINT chk_saas_role_permissions_data_scope CHECK (data_scope IN ('all', 'tenant', 'department', 'self', 'custom'))
);

CREATE INDEX idx_saas_role_permissions_permission_id ON saas_role_permissions (permission_id);
CREATE INDEX idx_saas_role_permissions_tenant_role ON saas_role_permissions (tenant_id, role_id);

COMMENT ON TABLE saas_role_permissions IS '角色权限关联表 (role-permission grants)';
COMMENT ON COLUMN saas_role_permissions.id IS '关联ID';
COMMENT ON COLUMN saas_role_permissions.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_role_permissions.role_id IS '角色ID';
COMMENT ON COLUMN saas_role_permissions.permission_id IS '权限ID';
COMMENT ON COLUMN saas_role_permissions.data_scope IS '数据权限范围 (all/tenant/department/self/custom)';
COMMENT ON COLUMN saas_role_permissions.data_scope_rules IS '自定义数据权限规则 (for data_scope = custom)';
COMMENT ON COLUMN saas_role_permissions.created_at IS '授权时间';
COMMENT ON COLUMN saas_role_permissions.created_by IS '授权人ID';

INSERT INTO "tenant_bench_t00001_635f56f2".tenantdb_schema_migrations (version, name, checksum, execution_ms) VALUES (20250101000001, 'identity_core', '177fcbfdd7ed9616de3fb62b3d3457e7137dc778a197d87bbfd0ef0f849c2cd7', 0);
-- Layer 2: 安全审计层 (SECURITY_AUDIT)
-- saas_api_keys, saas_user_sessions, saas_unified_audit_logs (partitioned by month), saas_login_attempts

-- ---------------------------------------------------------------------------------------------
-- API密钥表 (API keys). Only a hash of the secret is stored.
CREATE TABLE saas_api_keys (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    user_id             varchar(36),
    key_name            varchar(100) NOT NULL,
    key_prefix          varchar(16)  NOT NULL,
    key_hash            varchar(128) NOT NULL,
    scopes              jsonb        NOT NULL DEFAULT '[]'::jsonb,
    config              jsonb        NOT NULL DEFAULT '{}'::jsonb,
    status              varchar(20)  NOT NULL DEFAULT 'active',
    expires_at          timestamptz,
    last_used_at        timestamptz,
    last_used_ip        varchar(45),
    usage_count         bigint       NOT NULL DEFAULT 0,
    revoked_at          timestamptz,
    revoked_by          varchar(36),
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    CONSTRAINT saas_api_keys_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_api_keys_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_saas_api_keys_user_id FOREIGN KEY (user_id) REFERENCES saas_users (id) ON DELETE CASCADE,
    CONSTRAINT uk_saas_api_keys_key_hash UNIQUE (key_hash),
    CONSTRAINT chk_saas_api_keys_status CHECK (status IN ('active', 'disabled', 'revoked', 'expired')),
    CONSTRAINT chk_saas_api_keys_usage_count CHECK (usage_count >= 0)
);

CREATE INDEX idx_saas_api_keys_tenant_status ON saas_api_keys (tenant_id, status, created_at);
CREATE INDEX idx_saas_api_keys_user_id ON saas_api_keys (user_id);
CREATE INDEX idx_saas_api_keys_expires_at ON saas_api_keys (expires_at) WHERE expires_at IS NOT NULL;

CREATE TRIGGER trg_saas_api_keys_updated_at BEFORE UPDATE ON saas_api_keys
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_api_keys IS 'API密钥管理表 (API keys)';
COMMENT ON COLUMN saas_api_keys.id IS '密钥ID';
COMMENT ON COLUMN saas_api_keys.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_api_keys.user_id IS '所属用户ID (NULL = tenant-level service key)';
COMMENT ON COLUMN saas_api_keys.key_name IS '密钥名称';
COMMENT ON COLUMN saas_api_keys.key_prefix IS '密钥前缀 (shown to users to identify the key)';
COMMENT ON COLUMN saas_api_keys.key_hash IS '密钥哈希 (hash of the secret; the secret itself is never stored)';
COMMENT ON COLUMN saas_api_keys.scopes IS '授权范围 (permission codes granted to the key)';
COMMENT ON COLUMN saas_api_keys.config IS '密钥配置 {rate_limits, allowed_ips, ...} (seed §5.1: merged config JSON)';
COMMENT ON COLUMN saas_api_keys.status IS '密钥状态 (active/disabled/revoked/expired)';
COMMENT ON COLUMN saas_api_keys.expires_at IS '过期时间';
COMMENT ON COLUMN saas_api_keys.last_used_at IS '最后使用时间';
COMMENT ON COLUMN saas_api_keys.last_used_ip IS '最后使用IP';
COMMENT ON COLUMN saas_api_keys.usage_count IS '使用次数';
COMMENT ON COLUMN saas_api_keys.revoked_at IS '吊销时间';
COMMENT ON COLUMN saas_api_keys.revoked_by IS '吊销人ID (logical reference)';
COMMENT ON COLUMN saas_api_keys.created_at IS '创建时间';
COMMENT ON COLUMN saas_api_keys.updated_at IS '更新时间';
COMMENT ON COLUMN saas_api_keys.created_by IS '创建人ID';
COMMENT ON COLUMN saas_api_keys.updated_by IS '更新人ID';

-- ---------------------------------------------------------------------------------------------
-- 会话管理表 (user sessions). Tokens are stored hashed.
CREATE TABLE saas_user_sessions (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    user_id             varchar(36)  NOT NULL,
    session_token_hash  varchar(128) NOT NULL,
    refresh_token_hash  varchar(128),
    login_type          varchar(20)  NOT NULL DEFAULT 'password',
    ip_address          varchar(45),
    user_agent          text,
    device_info         jsonb,
    status              varchar(20)  NOT NULL DEFAULT 'active',
    last_activity_at    timestamptz  NOT NULL DEFAULT now(),
    expires_at          timestamptz  NOT NULL,
    revoked_at          timestamptz,
    revoke_reason       varchar(100),
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT saas_user_sessions_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_user_sessions_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_saas_user_sessions_user_id FOREIGN KEY (user_id) REFERENCES saas_users (id) ON DELETE CASCADE,
    CONSTRAINT uk_saas_user_sessions_session_token_hash UNIQUE (session_token_hash),
    CONSTRAINT uk_saas_user_sessions_refresh_token_hash UNIQUE (refresh_token_hash),
    CONSTRAINT chk_saas_user_sessions_login_type CHECK (login_type IN ('password', 'sms', 'email', 'oauth', 'sso', 'qr_code')),
    CONSTRAINT chk_saas_user_sessions_status CHECK (status IN ('active', 'expired', 'revoked', 'logged_out'))
);

CREATE INDEX idx_saas_user_sessions_tenant_user ON saas_user_sessions (tenant_id, user_id, status);
CREATE INDEX idx_saas_user_sessions_expires_at ON saas_user_sessions (expires_at);

CREATE TRIGGER trg_saas_user_sessions_updated_at BEFORE UPDATE ON saas_user_sessions
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_user_sessions IS '会话管理表 (user sessions)';
COMMENT ON COLUMN saas_user_sessions.id IS '会话ID';
COMMENT ON COLUMN saas_user_sessions.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_user_sessions.user_id IS '用户ID';
COMMENT ON COLUMN saas_user_sessions.session_token_hash IS '会话令牌哈希';
COMMENT ON COLUMN saas_user_sessions.refresh_token_hash IS '刷新令牌哈希';
COMMENT ON COLUMN saas_user_sessions.login_type IS '登录方式';
COMMENT ON COLUMN saas_user_sessions.ip_address IS 'IP地址';
COMMENT ON COLUMN saas_user_sessions.user_agent IS '用户代理';
COMMENT ON COLUMN saas_user_sessions.device_info IS '设备信息';
COMMENT ON COLUMN saas_user_sessions.status IS '会话状态 (active/expired/revoked/logged_out)';
COMMENT ON COLUMN saas_user_sessions.last_activity_at IS '最后活动时间';
COMMENT ON COLUMN saas_user_sessions.expires_at IS '过期时间';
COMMENT ON COLUMN saas_user_sessions.revoked_at IS '注销/吊销时间';
COMMENT ON COLUMN saas_user_sessions.revoke_reason IS '吊销原因';
COMMENT ON COLUMN saas_user_sessions.created_at IS '创建时间 (login time)';
COMMENT ON COLUMN saas_user_sessions.updated_at IS '更新时间';

-- ---------------------------------------------------------------------------------------------
-- 统一审计日志表 (seed §2.2), RANGE-partitioned by month on created_at. Monthly partitions are
-- created by the operator's partition maintenance, not here; rows outside them land in the DEFAULT
-- partition. operator_id / session_id / target_id are logical references (seed §6.1): audit
-- history must outlive the users and objects it mentions.
CREATE TABLE saas_unified_audit_logs (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    log_type            varchar(20)  NOT NULL,
    module              varchar(50)  NOT NULL,
    sub_module          varchar(50),
    operator_id         varchar(36),
    operator_type       varchar(20)  NOT NULL DEFAULT 'user',
    session_id          varchar(36),
    action              varchar(20)  NOT NULL,
    target_type         varchar(50),
    target_id           varchar(36),
    target_name         varchar(200),
    change_data         jsonb,
    status              varchar(20)  NOT NULL DEFAULT 'success',
    error_info          jsonb,
    execution_time_ms   integer,
    ip_address          varchar(45),
    user_agent          text,
    request_info        jsonb,
    business_context    jsonb,
    tags                jsonb,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    is_archived         boolean      NOT NULL DEFAULT false,
    archived_at         timestamptz,
    CONSTRAINT saas_unified_audit_logs_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT fk_saas_unified_audit_logs_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT chk_saas_unified_audit_logs_log_type CHECK (log_type IN ('operation', 'security', 'business', 'system')),
    CONSTRAINT chk_saas_unified_audit_logs_operator_type CHECK (operator_type IN ('user', 'system', 'api', 'scheduled')),
    CONSTRAINT chk_saas_unified_audit_logs_action CHECK (action IN ('create', 'read', 'update', 'delete', 'login', 'logout', 'status_change', 'config', 'alert')),
    CONSTRAINT chk_saas_unified_audit_logs_status CHECK (status IN ('success', 'failure', 'partial')),
    CONSTRAINT chk_saas_unified_audit_logs_execution_time_ms CHECK (execution_time_ms IS NULL OR execution_time_ms >= 0)
) PARTITION BY RANGE (created_at);

CREATE TABLE saas_unified_audit_logs_default PARTITION OF saas_unified_audit_logs DEFAULT;

CREATE INDEX idx_saas_unified_audit_logs_tenant_module ON saas_unified_audit_logs (tenant_id, module);
CREATE INDEX idx_saas_unified_audit_logs_operator ON saas_unified_audit_logs (operator_id, created_at);
CREATE INDEX idx_saas_unified_audit_logs_target ON saas_unified_audit_logs (target_type, target_id);
CREATE INDEX idx_saas_unified_audit_logs_log_type ON saas_unified_audit_logs (log_type, created_at);
CREATE INDEX idx_saas_unified_audit_logs_action ON saas_unified_audit_logs (action, created_at);
CREATE INDEX idx_saas_unified_audit_logs_time_range ON saas_unified_audit_logs (created_at, tenant_id);

COMMENT ON TABLE saas_unified_audit_logs IS '统一审计日志表 (unified audit log; monthly RANGE partitions on created_at)';
COMMENT ON TABLE saas_unified_audit_logs_default IS '统一审计日志表默认分区 (default partition: rows outside the monthly partitions)';
COMMENT ON COLUMN saas_unified_audit_logs.id IS '日志ID';
COMMENT ON COLUMN saas_unified_audit_logs.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_unified_audit_logs.log_type IS '日志类型 (operation/security/business/system)';
COMMENT ON COLUMN saas_unified_audit_logs.module IS '业务模块 (wework/ai/health/system)';
COMMENT ON COLUMN saas_unified_audit_logs.sub_module IS '子模块';
COMMENT ON COLUMN saas_unified_audit_logs.operator_id IS '操作者ID (logical reference, no FK)';
COMMENT ON COLUMN saas_unified_audit_logs.operator_type IS '操作者类型 (user/system/api/scheduled)';
COMMENT ON COLUMN saas_unified_audit_logs.session_id IS '会话ID (logical reference)';
COMMENT ON COLUMN saas_unified_audit_logs.action IS '操作类型';
COMMENT ON COLUMN saas_unified_audit_logs.target_type IS '目标类型 (account/agent/patient等)';
COMMENT ON COLUMN saas_unified_audit_logs.target_id IS '目标ID (logical reference, no FK)';
COMMENT ON COLUMN saas_unified_audit_logs.target_name IS '目标名称';
COMMENT ON COLUMN saas_unified_audit_logs.change_data IS '变更数据 {old_values, new_values, extra_info}';
COMMENT ON COLUMN saas_unified_audit_logs.status IS '执行状态 (success/failure/partial)';
COMMENT ON COLUMN saas_unified_audit_logs.error_info IS '错误信息';
COMMENT ON COLUMN saas_unified_audit_logs.execution_time_ms IS '执行时间(毫秒)';
COMMENT ON COLUMN saas_unified_audit_logs.ip_address IS 'IP地址';
COMMENT ON COLUMN saas_unified_audit_logs.user_agent IS '用户代理';
COMMENT ON COLUMN saas_unified_audit_logs.request_info IS '请求信息';
COMMENT ON COLUMN saas_unified_audit_logs.business_context IS '业务上下文 (可存储模块特定信息)';
COMMENT ON COLUMN saas_unified_audit_logs.tags IS '标签 (便于查询和分类)';
COMMENT ON COLUMN saas_unified_audit_logs.created_at IS '创建时间 (partition key)';
COMMENT ON COLUMN saas_unified_audit_logs.is_archived IS '是否已归档';
COMMENT ON COLUMN saas_unified_audit_logs.archived_at IS '归档时间';

-- ---------------------------------------------------------------------------------------------
-- 登录尝试记录表 (login attempts): one row per attempt, successful or not; feeds brute-force
-- protection (by identifier and by IP). user_id is logical: attempts for unknown users have none.
CREATE TABLE saas_login_attempts (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    user_id             varchar(36),
    login_identifier    varchar(255) NOT NULL,
    login_type          varchar(20)  NOT NULL DEFAULT 'password',
    result              varchar(20)  NOT NULL,
    failure_reason      varchar(100),
    ip_address          varchar(45),
    user_agent          text,
    device_fingerprint  varchar(128),
    geo_location        jsonb,
    risk_score          integer,
    session_id          varchar(36),
    created_at          timestamptz  NOT NULL DEFAULT now(),
    is_archived         boolean      NOT NULL DEFAULT false,
    archived_at         timestamptz,
    CONSTRAINT saas_login_attempts_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_login_attempts_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT chk_saas_login_attempts_login_type CHECK (login_type IN ('password', 'sms', 'email', 'oauth', 'sso', 'api_key', 'qr_code')),
    CONSTRAINT chk_saas_login_attempts_result CHECK (result IN ('success', 'failure', 'blocked', 'locked')),
    CONSTRAINT chk_saas_login_attempts_risk_score CHECK (risk_score IS NULL OR risk_score BETWEEN 0 AND 100)
);

CREATE INDEX idx_saas_login_attempts_identifier ON saas_login_attempts (tenant_id, login_identifier, created_at);
CREATE INDEX idx_saas_login_attempts_ip ON saas_login_attempts (ip_address, created_at);
CREATE INDEX idx_saas_login_attempts_user ON saas_login_attempts (user_id, created_at);
CREATE INDEX idx_saas_login_attempts_time_range ON saas_login_attempts (created_at, tenant_id);

COMMENT ON TABLE saas_login_attempts IS '登录尝试记录表 (login attempts)';
COMMENT ON COLUMN saas_login_attempts.id IS '记录ID';
COMMENT ON COLUMN saas_login_attempts.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_login_attempts.user_id IS '用户ID (logical reference; NULL when the identifier matched no user)';
COMMENT ON COLUMN saas_login_attempts.login_identifier IS '登录标识 (username/email/phone as entered)';
COMMENT ON COLUMN saas_login_attempts.login_type IS '登录方式';
COMMENT ON COLUMN saas_login_attempts.result IS '登录结果 (success/failure/blocked/locked)';
COMMENT ON COLUMN saas_login_attempts.failure_reason IS '失败原因';
COMMENT ON COLUMN saas_login_attempts.ip_address IS 'IP地址';
COMMENT ON COLUMN saas_login_attempts.user_agent IS '用户代理';
COMMENT ON COLUMN saas_login_attempts.device_fingerprint IS '设备指纹';
COMMENT ON COLUMN saas_login_attempts.geo_location IS '地理位置';
COMMENT ON COLUMN saas_login_attempts.risk_score IS '风险评分 (0-100)';
COMMENT ON COLUMN saas_login_attempts.session_id IS '会话ID (logical reference; set on success)';
COMMENT ON COLUMN saas_login_attempts.created_at IS '尝试时间';
COMMENT ON COLUMN saas_login_attempts.is_archived IS '是否已归档';
COMMENT ON COLUMN saas_login_attempts.archived_at IS '归档时间';

INSERT INTO "tenant_bench_t00001_635f56f2".tenantdb_schema_migrations (version, name, checksum, execution_ms) VALUES (20250101000002, 'security_audit', 'a0d08e52f110e7cba003fa150ab0f66a2bd2510523c1b358deed47d2034afe2d', 0);
-- Layer 3: 系统管理层 (SYSTEM_MANAGEMENT)
-- saas_unified_configs, saas_tenant_quotas, saas_usage_statistics (partitioned by month),
-- saas_files, saas_notifications

-- ---------------------------------------------------------------------------------------------
-- 统一配置管理表 (seed §2.3). tenant_id is NULL for global rows (the only nullable tenant_id in the
-- schema); user_id is NULL for non-user rows. MySQL cannot express the seed's conditional unique
-- keys; PostgreSQL partial unique indexes can.
CREATE TABLE saas_unified_configs (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36),
    user_id             varchar(36),
    config_scope        varchar(20)  NOT NULL,
    config_category     varchar(50)  NOT NULL,
    module              varchar(50),
    config_key          varchar(100) NOT NULL,
    config_name         varchar(100),
    config_description  text,
    config_value        jsonb        NOT NULL,
    config_type         varchar(20)  NOT NULL DEFAULT 'string',
    default_value       jsonb,
    is_required         boolean      NOT NULL DEFAULT false,
    is_encrypted        boolean      NOT NULL DEFAULT false,
    is_public           boolean      NOT NULL DEFAULT false,
    is_readonly         boolean      NOT NULL DEFAULT false,
    validation_rules    jsonb,
    version             integer      NOT NULL DEFAULT 1,
    parent_config_id    varchar(36),
    status              varchar(20)  NOT NULL DEFAULT 'active',
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    CONSTRAINT saas_unified_configs_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_unified_configs_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_saas_unified_configs_user_id FOREIGN KEY (user_id) REFERENCES saas_users (id) ON DELETE CASCADE,
    CONSTRAINT fk_saas_unified_configs_parent_config_id FOREIGN KEY (parent_config_id) REFERENCES saas_unified_configs (id) ON DELETE SET NULL,
    CONSTRAINT chk_saas_unified_configs_config_scope CHECK (config_scope IN ('global', 'tenant', 'user', 'module')),
    CONSTRAINT chk_saas_unified_configs_config_type CHECK (config_type IN ('string', 'number', 'boolean', 'json', 'array', 'encrypted')),
    CONSTRAINT chk_saas_unified_configs_status CHECK (status IN ('active', 'inactive', 'deprecated')),
    CONSTRAINT chk_saas_unified_configs_version CHECK (version >= 1),
    -- a user-level row always belongs to a tenant (keeps the three unique indexes below sound)
    CONSTRAINT chk_saas_unified_configs_user_tenant CHECK (user_id IS NULL OR tenant_id IS NOT NULL),
    -- the scope agrees with which ids are set
    CONSTRAINT chk_saas_unified_configs_scope_ids CHECK (
        (config_scope = 'global' AND tenant_id IS NULL AND user_id IS NULL)
        OR (config_scope = 'tenant' AND tenant_id IS NOT NULL AND user_id IS NULL)
        OR (config_scope = 'user' AND tenant_id IS NOT NULL AND user_id IS NOT NULL)
        OR (config_scope = 'module' AND user_id IS NULL)
    )
);

-- uk_global_config / uk_tenant_config / uk_user_config of the seed
CREATE UNIQUE INDEX uk_saas_unified_configs_global ON saas_unified_configs (config_key)
    WHERE tenant_id IS NULL AND user_id IS NULL;
CREATE UNIQUE INDEX uk_saas_unified_configs_tenant ON saas_unified_configs (tenant_id, config_key)
    WHERE user_id IS NULL;
CREATE UNIQUE INDEX uk_saas_unified_configs_user ON saas_unified_configs (tenant_id, user_id, config_key);
CREATE INDEX idx_saas_unified_configs_scope_category ON saas_unified_configs (config_scope, config_category);
CREATE INDEX idx_saas_unified_configs_tenant_module ON saas_unified_configs (tenant_id, module);
CREATE INDEX idx_saas_unified_configs_config_key ON saas_unified_configs (config_key);
CREATE INDEX idx_saas_unified_configs_status ON saas_unified_configs (status);
CREATE INDEX idx_saas_unified_configs_parent_config ON saas_unified_configs (parent_config_id);
CREATE INDEX idx_saas_unified_configs_user_id ON saas_unified_configs (user_id) WHERE user_id IS NOT NULL;

CREATE TRIGGER trg_saas_unified_configs_updated_at BEFORE UPDATE ON saas_unified_configs
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_unified_configs IS '统一配置管理表 (unified configuration: global → tenant → user inheritance)';
COMMENT ON COLUMN saas_unified_configs.id IS '配置ID';
COMMENT ON COLUMN saas_unified_configs.tenant_id IS '租户ID - NULL表示全局配置 (NULL = global row)';
COMMENT ON COLUMN saas_unified_configs.user_id IS '用户ID - NULL表示非用户级配置';
COMMENT ON COLUMN saas_unified_configs.config_scope IS '配置作用域 (global/tenant/user/module)';
COMMENT ON COLUMN saas_unified_configs.config_category IS '配置分类 (system/business/ui/integration)';
COMMENT ON COLUMN saas_unified_configs.module IS '所属模块 (wework/ai/health等)';
COMMENT ON COLUMN saas_unified_configs.config_key IS '配置键';
COMMENT ON COLUMN saas_unified_configs.config_name IS '配置名称';
COMMENT ON COLUMN saas_unified_configs.config_description IS '配置描述';
COMMENT ON COLUMN saas_unified_configs.config_value IS '配置值';
COMMENT ON COLUMN saas_unified_configs.config_type IS '值类型';
COMMENT ON COLUMN saas_unified_configs.default_value IS '默认值';
COMMENT ON COLUMN saas_unified_configs.is_required IS '是否必需';
COMMENT ON COLUMN saas_unified_configs.is_encrypted IS '是否加密存储';
COMMENT ON COLUMN saas_unified_configs.is_public IS '是否前端可访问';
COMMENT ON COLUMN saas_unified_configs.is_readonly IS '是否只读';
COMMENT ON COLUMN saas_unified_configs.validation_rules IS '验证规则 {min, max, pattern, options}';
COMMENT ON COLUMN saas_unified_configs.version IS '配置版本';
COMMENT ON COLUMN saas_unified_configs.parent_config_id IS '父配置ID (支持配置继承)';
COMMENT ON COLUMN saas_unified_configs.status IS '配置状态';
COMMENT ON COLUMN saas_unified_configs.created_at IS '创建时间';
COMMENT ON COLUMN saas_unified_configs.updated_at IS '更新时间';
COMMENT ON COLUMN saas_unified_configs.created_by IS '创建人ID';
COMMENT ON COLUMN saas_unified_configs.updated_by IS '更新人ID';

-- ---------------------------------------------------------------------------------------------
-- 租户配额表 (tenant quotas): one row per tenant and quota type; usage can never exceed the quota
-- (seed §6.2 chk_quota_limit).
CREATE TABLE saas_tenant_quotas (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    quota_type          varchar(50)  NOT NULL,
    quota_name          varchar(100),
    max_quota           bigint       NOT NULL,
    current_usage       bigint       NOT NULL DEFAULT 0,
    unit                varchar(20)  NOT NULL DEFAULT 'count',
    warning_threshold   integer      NOT NULL DEFAULT 80,
    reset_period        varchar(20)  NOT NULL DEFAULT 'none',
    last_reset_at       timestamptz,
    next_reset_at       timestamptz,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    data_version        integer      NOT NULL DEFAULT 1,
    last_modified_hash  varchar(64),
    CONSTRAINT saas_tenant_quotas_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_tenant_quotas_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT uk_saas_tenant_quotas_tenant_quota_type UNIQUE (tenant_id, quota_type),
    CONSTRAINT chk_saas_tenant_quotas_max_quota CHECK (max_quota >= 0),
    CONSTRAINT chk_saas_tenant_quotas_current_usage CHECK (current_usage >= 0),
    CONSTRAINT chk_saas_tenant_quotas_quota_limit CHECK (current_usage <= max_quota),
    CONSTRAINT chk_saas_tenant_quotas_warning_threshold CHECK (warning_threshold BETWEEN 0 AND 100),
    CONSTRAINT chk_saas_tenant_quotas_reset_period CHECK (reset_period IN ('none', 'daily', 'monthly', 'yearly')),
    CONSTRAINT chk_saas_tenant_quotas_data_version CHECK (data_version >= 1)
);

CREATE INDEX idx_saas_tenant_quotas_next_reset ON saas_tenant_quotas (next_reset_at) WHERE next_reset_at IS NOT NULL;

CREATE TRIGGER trg_saas_tenant_quotas_updated_at BEFORE UPDATE ON saas_tenant_quotas
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_tenant_quotas IS '租户配额表 (tenant quotas)';
COMMENT ON COLUMN saas_tenant_quotas.id IS '配额ID';
COMMENT ON COLUMN saas_tenant_quotas.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_tenant_quotas.quota_type IS '配额类型 (users/storage_bytes/ai_agents/wework_accounts/api_calls/ai_tokens...)';
COMMENT ON COLUMN saas_tenant_quotas.quota_name IS '配额名称';
COMMENT ON COLUMN saas_tenant_quotas.max_quota IS '最大配额';
COMMENT ON COLUMN saas_tenant_quotas.current_usage IS '当前用量 (CHECK current_usage <= max_quota)';
COMMENT ON COLUMN saas_tenant_quotas.unit IS '计量单位';
COMMENT ON COLUMN saas_tenant_quotas.warning_threshold IS '预警阈值(百分比)';
COMMENT ON COLUMN saas_tenant_quotas.reset_period IS '重置周期 (none/daily/monthly/yearly)';
COMMENT ON COLUMN saas_tenant_quotas.last_reset_at IS '上次重置时间';
COMMENT ON COLUMN saas_tenant_quotas.next_reset_at IS '下次重置时间';
COMMENT ON COLUMN saas_tenant_quotas.created_at IS '创建时间';
COMMENT ON COLUMN saas_tenant_quotas.updated_at IS '更新时间';
COMMENT ON COLUMN saas_tenant_quotas.created_by IS '创建人ID';
COMMENT ON COLUMN saas_tenant_quotas.updated_by IS '更新人ID';
COMMENT ON COLUMN saas_tenant_quotas.data_version IS '数据版本 (optimistic locking of usage counters)';
COMMENT ON COLUMN saas_tenant_quotas.last_modified_hash IS '数据摘要';

-- ---------------------------------------------------------------------------------------------
-- 使用统计表 (usage statistics): daily aggregates per tenant, metric, module and (optionally) user,
-- upserted during the day. RANGE-partitioned by month on usage_date.
CREATE TABLE saas_usage_statistics (
    id                  varchar(36)   NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)   NOT NULL,
    usage_date          date          NOT NULL,
    metric_type         varchar(50)   NOT NULL,
    module              varchar(50),
    user_id             varchar(36),
    usage_count         bigint        NOT NULL DEFAULT 0,
    usage_amount        numeric(20,4) NOT NULL DEFAULT 0,
    unit                varchar(20),
    details             jsonb,
    created_at          timestamptz   NOT NULL DEFAULT now(),
    updated_at          timestamptz   NOT NULL DEFAULT now(),
    is_archived         boolean       NOT NULL DEFAULT false,
    archived_at         timestamptz,
    CONSTRAINT saas_usage_statistics_pkey PRIMARY KEY (id, usage_date),
    CONSTRAINT fk_saas_usage_statistics_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT chk_saas_usage_statistics_usage_count CHECK (usage_count >= 0),
    CONSTRAINT chk_saas_usage_statistics_usage_amount CHECK (usage_amount >= 0)
) PARTITION BY RANGE (usage_date);

CREATE TABLE saas_usage_statistics_default PARTITION OF saas_usage_statistics DEFAULT;

-- the upsert key; NULLS NOT DISTINCT so that tenant totals (module/user_id NULL) are unique too
CREATE UNIQUE INDEX uk_saas_usage_statistics_daily ON saas_usage_statistics
    (tenant_id, usage_date, metric_type, module, user_id) NULLS NOT DISTINCT;
CREATE INDEX idx_saas_usage_statistics_metric ON saas_usage_statistics (tenant_id, metric_type, usage_date);
CREATE INDEX idx_saas_usage_statistics_user ON saas_usage_statistics (user_id, usage_date) WHERE user_id IS NOT NULL;

CREATE TRIGGER trg_saas_usage_statistics_updated_at BEFORE UPDATE ON saas_usage_statistics
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_usage_statistics IS '使用统计表 (daily usage statistics; monthly RANGE partitions on usage_date)';
COMMENT ON TABLE saas_usage_statistics_default IS '使用统计表默认分区 (default partition)';
COMMENT ON COLUMN saas_usage_statistics.id IS '统计ID';
COMMENT ON COLUMN saas_usage_statistics.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_usage_statistics.usage_date IS '统计日期 (partition key)';
COMMENT ON COLUMN saas_usage_statistics.metric_type IS '指标类型 (api_calls/storage_bytes/ai_tokens/messages_sent/active_users...)';
COMMENT ON COLUMN saas_usage_statistics.module IS '业务模块 (NULL = all modules)';
COMMENT ON COLUMN saas_usage_statistics.user_id IS '用户ID (logical reference; NULL = tenant total)';
COMMENT ON COLUMN saas_usage_statistics.usage_count IS '使用次数';
COMMENT ON COLUMN saas_usage_statistics.usage_amount IS '使用量 (tokens, bytes, cost...)';
COMMENT ON COLUMN saas_usage_statistics.unit IS '计量单位';
COMMENT ON COLUMN saas_usage_statistics.details IS '明细数据';
COMMENT ON COLUMN saas_usage_statistics.created_at IS '创建时间';
COMMENT ON COLUMN saas_usage_statistics.updated_at IS '更新时间';
COMMENT ON COLUMN saas_usage_statistics.is_archived IS '是否已归档';
COMMENT ON COLUMN saas_usage_statistics.archived_at IS '归档时间';

-- ---------------------------------------------------------------------------------------------
-- 文件管理表 (files): metadata of objects in external storage. The owning business object is a
-- polymorphic logical reference (module, biz_type, biz_id); the uploader is created_by.
CREATE TABLE saas_files (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    file_name           varchar(255) NOT NULL,
    file_ext            varchar(20),
    mime_type           varchar(100),
    file_size           bigint       NOT NULL DEFAULT 0,
    checksum_sha256     varchar(64),
    storage_provider    varchar(20)  NOT NULL DEFAULT 's3',
    bucket              varchar(100),
    storage_key         varchar(500) NOT NULL,
    access_level        varchar(20)  NOT NULL DEFAULT 'private',
    module              varchar(50),
    biz_type            varchar(50),
    biz_id              varchar(36),
    status              varchar(20)  NOT NULL DEFAULT 'active',
    metadata            jsonb,
    expires_at          timestamptz,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    deleted_at          timestamptz,
    deleted_by          varchar(36),
    data_version        integer      NOT NULL DEFAULT 1,
    last_modified_hash  varchar(64),
    CONSTRAINT saas_files_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_files_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT chk_saas_files_file_size CHECK (file_size >= 0),
    CONSTRAINT chk_saas_files_storage_provider CHECK (storage_provider IN ('local', 's3', 'oss', 'cos', 'minio')),
    CONSTRAINT chk_saas_files_access_level CHECK (access_level IN ('private', 'tenant', 'public')),
    CONSTRAINT chk_saas_files_status CHECK (status IN ('uploading', 'active', 'failed', 'quarantined')),
    CONSTRAINT chk_saas_files_data_version CHECK (data_version >= 1)
);

CREATE INDEX idx_saas_files_tenant_status ON saas_files (tenant_id, status, created_at);
CREATE INDEX idx_saas_files_biz ON saas_files (tenant_id, module, biz_type, biz_id);
CREATE INDEX idx_saas_files_checksum ON saas_files (tenant_id, checksum_sha256) WHERE checksum_sha256 IS NOT NULL;
CREATE INDEX idx_saas_files_storage_key ON saas_files (storage_key);

CREATE TRIGGER trg_saas_files_updated_at BEFORE UPDATE ON saas_files
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_files IS '文件管理表 (file metadata)';
COMMENT ON COLUMN saas_files.id IS '文件ID';
COMMENT ON COLUMN saas_files.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_files.file_name IS '原始文件名';
COMMENT ON COLUMN saas_files.file_ext IS '文件扩展名';
COMMENT ON COLUMN saas_files.mime_type IS 'MIME类型';
COMMENT ON COLUMN saas_files.file_size IS '文件大小(字节)';
COMMENT ON COLUMN saas_files.checksum_sha256 IS '文件SHA-256摘要 (dedupe and integrity)';
COMMENT ON COLUMN saas_files.storage_provider IS '存储提供方 (local/s3/oss/cos/minio)';
COMMENT ON COLUMN saas_files.bucket IS '存储桶';
COMMENT ON COLUMN saas_files.storage_key IS '存储路径/对象键';
COMMENT ON COLUMN saas_files.access_level IS '访问级别 (private/tenant/public)';
COMMENT ON COLUMN saas_files.module IS '所属模块';
COMMENT ON COLUMN saas_files.biz_type IS '业务对象类型 (logical owner)';
COMMENT ON COLUMN saas_files.biz_id IS '业务对象ID (logical reference)';
COMMENT ON COLUMN saas_files.status IS '文件状态 (uploading/active/failed/quarantined)';
COMMENT ON COLUMN saas_files.metadata IS '文件元数据 (dimensions, duration, ...)';
COMMENT ON COLUMN saas_files.expires_at IS '过期时间 (temporary files)';
COMMENT ON COLUMN saas_files.created_at IS '创建时间';
COMMENT ON COLUMN saas_files.updated_at IS '更新时间';
COMMENT ON COLUMN saas_files.created_by IS '创建人ID (uploader)';
COMMENT ON COLUMN saas_files.updated_by IS '更新人ID';
COMMENT ON COLUMN saas_files.deleted_at IS '删除时间';
COMMENT ON COLUMN saas_files.deleted_by IS '删除人ID';
COMMENT ON COLUMN saas_files.data_version IS '数据版本';
COMMENT ON COLUMN saas_files.last_modified_hash IS '数据摘要';

-- ---------------------------------------------------------------------------------------------
-- 通知管理表 (notifications): one row per recipient user and channel (fan-out on write).
CREATE TABLE saas_notifications (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    user_id             varchar(36)  NOT NULL,
    notification_type   varchar(20)  NOT NULL DEFAULT 'system',
    channel             varchar(20)  NOT NULL DEFAULT 'in_app',
    priority            varchar(20)  NOT NULL DEFAULT 'normal',
    title               varchar(200) NOT NULL,
    content             text         NOT NULL,
    payload             jsonb,
    source_module       varchar(50),
    source_type         varchar(50),
    source_id           varchar(36),
    status              varchar(20)  NOT NULL DEFAULT 'pending',
    retry_count         integer      NOT NULL DEFAULT 0,
    error_message       text,
    sent_at             timestamptz,
    read_at             timestamptz,
    expires_at          timestamptz,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    is_archived         boolean      NOT NULL DEFAULT false,
    archived_at         timestamptz,
    CONSTRAINT saas_notifications_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_notifications_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_saas_notifications_user_id FOREIGN KEY (user_id) REFERENCES saas_users (id) ON DELETE CASCADE,
    CONSTRAINT chk_saas_notifications_notification_type CHECK (notification_type IN ('system', 'alert', 'business', 'security', 'announcement')),
    CONSTRAINT chk_saas_notifications_channel CHECK (channel IN ('in_app', 'email', 'sms', 'wework', 'webhook')),
    CONSTRAINT chk_saas_notifications_priority CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    CONSTRAINT chk_saas_notifications_status CHECK (status IN ('pending', 'sent', 'delivered', 'read', 'failed')),
    CONSTRAINT chk_saas_notifications_retry_count CHECK (retry_count >= 0)
);

CREATE INDEX idx_saas_notifications_tenant_user ON saas_notifications (tenant_id, user_id, status, created_at);
CREATE INDEX idx_saas_notifications_unread ON saas_notifications (user_id, created_at) WHERE read_at IS NULL;
CREATE INDEX idx_saas_notifications_dispatch ON saas_notifications (status, created_at) WHERE status IN ('pending', 'failed');
CREATE INDEX idx_saas_notifications_source ON saas_notifications (source_type, source_id);

CREATE TRIGGER trg_saas_notifications_updated_at BEFORE UPDATE ON saas_notifications
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_notifications IS '通知管理表 (notifications)';
COMMENT ON COLUMN saas_notifications.id IS '通知ID';
COMMENT ON COLUMN saas_notifications.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_notifications.user_id IS '接收用户ID (recipient)';
COMMENT ON COLUMN saas_notifications.notification_type IS '通知类型 (system/alert/business/security/announcement)';
COMMENT ON COLUMN saas_notifications.channel IS '通知渠道 (in_app/email/sms/wework/webhook)';
COMMENT ON COLUMN saas_notifications.priority IS '优先级';
COMMENT ON COLUMN saas_notifications.title IS '通知标题';
COMMENT ON COLUMN saas_notifications.content IS '通知内容';
COMMENT ON COLUMN saas_notifications.payload IS '附加数据 (links, template variables)';
COMMENT ON COLUMN saas_notifications.source_module IS '来源模块';
COMMENT ON COLUMN saas_notifications.source_type IS '来源对象类型 (e.g. alert)';
COMMENT ON COLUMN saas_notifications.source_id IS '来源对象ID (logical reference)';
COMMENT ON COLUMN saas_notifications.status IS '发送状态 (pending/sent/delivered/read/failed)';
COMMENT ON COLUMN saas_notifications.retry_count IS '重试次数';
COMMENT ON COLUMN saas_notifications.error_message IS '失败原因';
COMMENT ON COLUMN saas_notifications.sent_at IS '发送时间';
COMMENT ON COLUMN saas_notifications.read_at IS '阅读时间';
COMMENT ON COLUMN saas_notifications.expires_at IS '过期时间';
COMMENT ON COLUMN saas_notifications.created_at IS '创建时间';
COMMENT ON COLUMN saas_notifications.updated_at IS '更新时间';
COMMENT ON COLUMN saas_notifications.created_by IS '创建人ID';
COMMENT ON COLUMN saas_notifications.is_archived IS '是否已归档';
COMMENT ON COLUMN saas_notifications.archived_at IS '归档时间';

INSERT INTO "tenant_bench_t00001_635f56f2".tenantdb_schema_migrations (version, name, checksum, execution_ms) VALUES (20250101000003, 'system_management', '682952e859bc512f00226c2daf60e5be7272d94eb074d4af470aa8223dcc143c', 0);
-- Layer 4: 监控运维层 (OPERATIONS)
-- saas_unified_alerts (partitioned by month), saas_monitor_rules, saas_system_metrics, saas_health_checks

-- ---------------------------------------------------------------------------------------------
-- 统一告警管理表 (seed §2.4), RANGE-partitioned by month on created_at. Alerts are workflow
-- objects (acknowledge/resolve), so the seed's foreign keys are kept as real constraints.
CREATE TABLE saas_unified_alerts (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    source_type         varchar(20)  NOT NULL,
    source_module       varchar(50)  NOT NULL,
    source_id           varchar(36),
    source_name         varchar(200),
    alert_code          varchar(50)  NOT NULL,
    alert_title         varchar(200) NOT NULL,
    alert_message       text         NOT NULL,
    alert_level         varchar(20)  NOT NULL,
    alert_category      varchar(30)  NOT NULL,
    alert_data          jsonb,
    trigger_condition   jsonb,
    threshold_info      jsonb,
    status              varchar(20)  NOT NULL DEFAULT 'open',
    first_occurred_at   timestamptz  NOT NULL DEFAULT now(),
    last_occurred_at    timestamptz  NOT NULL DEFAULT now(),
    occurrence_count    integer      NOT NULL DEFAULT 1,
    acknowledged_by     varchar(36),
    acknowledged_at     timestamptz,
    resolved_by         varchar(36),
    resolved_at         timestamptz,
    resolution_info     jsonb,
    notification_status jsonb,
    escalation_level    integer      NOT NULL DEFAULT 0,
    business_impact     varchar(20)  NOT NULL DEFAULT 'low',
    tags                jsonb,
    related_alerts      jsonb,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    is_archived         boolean      NOT NULL DEFAULT false,
    archived_at         timestamptz,
    CONSTRAINT saas_unified_alerts_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT fk_saas_unified_alerts_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_saas_unified_alerts_acknowledged_by FOREIGN KEY (acknowledged_by) REFERENCES saas_users (id) ON DELETE SET NULL,
    CONSTRAINT fk_saas_unified_alerts_resolved_by FOREIGN KEY (resolved_by) REFERENCES saas_users (id) ON DELETE SET NULL,
    CONSTRAINT chk_saas_unified_alerts_source_type CHECK (source_type IN ('system', 'business', 'monitor', 'security')),
    CONSTRAINT chk_saas_unified_alerts_alert_level CHECK (alert_level IN ('info', 'warning', 'error', 'critical')),
    CONSTRAINT chk_saas_unified_alerts_alert_category CHECK (alert_category IN (
        'heartbeat_timeout', 'api_failure', 'status_anomaly', 'login_failed',
        'auto_recovery_failed', 'retry_limit_reached', 'quota_exceeded',
        'response_time_high', 'message_send_failed', 'resource_low',
        'network_error', 'database_error', 'cache_error', 'security_threat',
        'business_exception', 'custom')),
    CONSTRAINT chk_saas_unified_alerts_status CHECK (status IN ('open', 'acknowledged', 'resolved', 'suppressed', 'expired')),
    CONSTRAINT chk_saas_unified_alerts_business_impact CHECK (business_impact IN ('none', 'low', 'medium', 'high', 'critical')),
    CONSTRAINT chk_saas_unified_alerts_occurrence_count CHECK (occurrence_count >= 1),
    CONSTRAINT chk_saas_unified_alerts_escalation_level CHECK (escalation_level >= 0)
) PARTITION BY RANGE (created_at);

CREATE TABLE saas_unified_alerts_default PARTITION OF saas_unified_alerts DEFAULT;

CREATE INDEX idx_saas_unified_alerts_tenant_level ON saas_unified_alerts (tenant_id, alert_level);
CREATE INDEX idx_saas_unified_alerts_source ON saas_unified_alerts (source_type, source_module, source_id);
CREATE INDEX idx_saas_unified_alerts_status_time ON saas_unified_alerts (status, created_at);
CREATE INDEX idx_saas_unified_alerts_alert_code ON saas_unified_alerts (alert_code, created_at);
CREATE INDEX idx_saas_unified_alerts_occurrence_time ON saas_unified_alerts (last_occurred_at);
CREATE INDEX idx_saas_unified_alerts_resolved_time ON saas_unified_alerts (resolved_at);
CREATE INDEX idx_saas_unified_alerts_tenant_status ON saas_unified_alerts (tenant_id, status, created_at);

CREATE TRIGGER trg_saas_unified_alerts_updated_at BEFORE UPDATE ON saas_unified_alerts
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_unified_alerts IS '统一告警管理表 (unified alerts; monthly RANGE partitions on created_at)';
COMMENT ON TABLE saas_unified_alerts_default IS '统一告警管理表默认分区 (default partition)';
COMMENT ON COLUMN saas_unified_alerts.id IS '告警ID';
COMMENT ON COLUMN saas_unified_alerts.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_unified_alerts.source_type IS '告警来源类型';
COMMENT ON COLUMN saas_unified_alerts.source_module IS '来源模块 (wework/ai/health/system)';
COMMENT ON COLUMN saas_unified_alerts.source_id IS '来源对象ID (account_id/agent_id等; logical reference)';
COMMENT ON COLUMN saas_unified_alerts.source_name IS '来源对象名称';
COMMENT ON COLUMN saas_unified_alerts.alert_code IS '告警编码 (用于去重和规则匹配)';
COMMENT ON COLUMN saas_unified_alerts.alert_title IS '告警标题';
COMMENT ON COLUMN saas_unified_alerts.alert_message IS '告警消息';
COMMENT ON COLUMN saas_unified_alerts.alert_level IS '告警级别';
COMMENT ON COLUMN saas_unified_alerts.alert_category IS '告警分类';
COMMENT ON COLUMN saas_unified_alerts.alert_data IS '告警详细数据';
COMMENT ON COLUMN saas_unified_alerts.trigger_condition IS '触发条件';
COMMENT ON COLUMN saas_unified_alerts.threshold_info IS '阈值信息';
COMMENT ON COLUMN saas_unified_alerts.status IS '告警状态';
COMMENT ON COLUMN saas_unified_alerts.first_occurred_at IS '首次发生时间';
COMMENT ON COLUMN saas_unified_alerts.last_occurred_at IS '最后发生时间';
COMMENT ON COLUMN saas_unified_alerts.occurrence_count IS '发生次数';
COMMENT ON COLUMN saas_unified_alerts.acknowledged_by IS '确认人ID';
COMMENT ON COLUMN saas_unified_alerts.acknowledged_at IS '确认时间';
COMMENT ON COLUMN saas_unified_alerts.resolved_by IS '解决人ID';
COMMENT ON COLUMN saas_unified_alerts.resolved_at IS '解决时间';
COMMENT ON COLUMN saas_unified_alerts.resolution_info IS '解决信息 {action, description, auto_resolved}';
COMMENT ON COLUMN saas_unified_alerts.notification_status IS '通知发送状态';
COMMENT ON COLUMN saas_unified_alerts.escalation_level IS '升级级别';
COMMENT ON COLUMN saas_unified_alerts.business_impact IS '业务影响';
COMMENT ON COLUMN saas_unified_alerts.tags IS '标签';
COMMENT ON COLUMN saas_unified_alerts.related_alerts IS '关联告警ID列表';
COMMENT ON COLUMN saas_unified_alerts.created_at IS '创建时间 (partition key)';
COMMENT ON COLUMN saas_unified_alerts.updated_at IS '更新时间';
COMMENT ON COLUMN saas_unified_alerts.is_archived IS '是否已归档';
COMMENT ON COLUMN saas_unified_alerts.archived_at IS '归档时间';

-- ---------------------------------------------------------------------------------------------
-- 监控规则表 (monitor rules): the rule engine's definitions (seed §8.1 告警规则引擎). A firing rule
-- raises/updates a saas_unified_alerts row whose alert_code = rule_code.
CREATE TABLE saas_monitor_rules (
    id                      varchar(36)   NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id               varchar(36)   NOT NULL,
    rule_code               varchar(50)   NOT NULL,
    rule_name               varchar(100)  NOT NULL,
    description             text,
    source_type             varchar(20)   NOT NULL DEFAULT 'monitor',
    source_module           varchar(50)   NOT NULL,
    metric_name             varchar(100)  NOT NULL,
    condition_operator      varchar(10)   NOT NULL DEFAULT 'gt',
    threshold_value         numeric(20,4),
    condition_expression    jsonb,
    duration_seconds        integer       NOT NULL DEFAULT 0,
    evaluation_interval_seconds integer   NOT NULL DEFAULT 60,
    alert_level             varchar(20)   NOT NULL DEFAULT 'warning',
    alert_category          varchar(30)   NOT NULL DEFAULT 'custom',
    notification_channels   jsonb         NOT NULL DEFAULT '[]'::jsonb,
    notify_targets          jsonb,
    suppress_seconds        integer       NOT NULL DEFAULT 300,
    auto_resolve            boolean       NOT NULL DEFAULT true,
    is_enabled              boolean       NOT NULL DEFAULT true,
    last_evaluated_at       timestamptz,
    last_triggered_at       timestamptz,
    created_at              timestamptz   NOT NULL DEFAULT now(),
    updated_at              timestamptz   NOT NULL DEFAULT now(),
    created_by              varchar(36),
    updated_by              varchar(36),
    deleted_at              timestamptz,
    deleted_by              varchar(36),
    data_version            integer       NOT NULL DEFAULT 1,
    last_modified_hash      varchar(64),
    CONSTRAINT saas_monitor_rules_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_monitor_rules_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT chk_saas_monitor_rules_source_type CHECK (source_type IN ('system', 'business', 'monitor', 'security')),
    CONSTRAINT chk_saas_monitor_rules_condition_operator CHECK (condition_operator IN ('gt', 'gte', 'lt', 'lte', 'eq', 'neq', 'expr')),
    CONSTRAINT chk_saas_monitor_rules_alert_level CHECK (alert_level IN ('info', 'warning', 'error', 'critical')),
    CONSTRAINT chk_saas_monitor_rules_alert_category CHECK (alert_category IN (
        'heartbeat_timeout', 'api_failure', 'status_anomaly', 'login_failed',
        'auto_recovery_failed', 'retry_limit_reached', 'quota_exceeded',
        'response_time_high', 'message_send_failed', 'resource_low',
        'network_error', 'database_error', 'cache_error', 'security_threat',
        'business_exception', 'custom')),
    CONSTRAINT chk_saas_monitor_rules_duration_seconds CHECK (duration_seconds >= 0),
    CONSTRAINT chk_saas_monitor_rules_evaluation_interval_seconds CHECK (evaluation_interval_seconds > 0),
    CONSTRAINT chk_saas_monitor_rules_suppress_seconds CHECK (suppress_seconds >= 0),
    CONSTRAINT chk_saas_monitor_rules_threshold CHECK (condition_operator = 'expr' OR threshold_value IS NOT NULL),
    CONSTRAINT chk_saas_monitor_rules_data_version CHECK (data_version >= 1)
);

CREATE UNIQUE INDEX uk_saas_monitor_rules_rule_code ON saas_monitor_rules (tenant_id, rule_code) WHERE deleted_at IS NULL;
CREATE INDEX idx_saas_monitor_rules_tenant_enabled ON saas_monitor_rules (tenant_id, is_enabled);
CREATE INDEX idx_saas_monitor_rules_metric_name ON saas_monitor_rules (metric_name);

CREATE TRIGGER trg_saas_monitor_rules_updated_at BEFORE UPDATE ON saas_monitor_rules
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE saas_monitor_rules IS '监控规则表 (monitor / alert rules)';
COMMENT ON COLUMN saas_monitor_rules.id IS '规则ID';
COMMENT ON COLUMN saas_monitor_rules.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_monitor_rules.rule_code IS '规则编码 (= alert_code of the alerts it raises)';
COMMENT ON COLUMN saas_monitor_rules.rule_name IS '规则名称';
COMMENT ON COLUMN saas_monitor_rules.description IS '规则描述';
COMMENT ON COLUMN saas_monitor_rules.source_type IS '告警来源类型';
COMMENT ON COLUMN saas_monitor_rules.source_module IS '来源模块';
COMMENT ON COLUMN saas_monitor_rules.metric_name IS '监控指标 (saas_system_metrics.metric_name)';
COMMENT ON COLUMN saas_monitor_rules.condition_operator IS '比较运算符 (gt/gte/lt/lte/eq/neq, expr = condition_expression)';
COMMENT ON COLUMN saas_monitor_rules.threshold_value IS '阈值';
COMMENT ON COLUMN saas_monitor_rules.condition_expression IS '复杂条件表达式';
COMMENT ON COLUMN saas_monitor_rules.duration_seconds IS '持续时间(秒): condition must hold this long';
COMMENT ON COLUMN saas_monitor_rules.evaluation_interval_seconds IS '评估间隔(秒)';
COMMENT ON COLUMN saas_monitor_rules.alert_level IS '告警级别';
COMMENT ON COLUMN saas_monitor_rules.alert_category IS '告警分类';
COMMENT ON COLUMN saas_monitor_rules.notification_channels IS '通知渠道';
COMMENT ON COLUMN saas_monitor_rules.notify_targets IS '通知对象 (user ids, roles, webhooks)';
COMMENT ON COLUMN saas_monitor_rules.suppress_seconds IS '抑制窗口(秒): dedupe repeated firing';
COMMENT ON COLUMN saas_monitor_rules.auto_resolve IS '是否自动恢复';
COMMENT ON COLUMN saas_monitor_rules.is_enabled IS '是否启用';
COMMENT ON COLUMN saas_monitor_rules.last_evaluated_at IS '最后评估时间';
COMMENT ON COLUMN saas_monitor_rules.last_triggered_at IS '最后触发时间';
COMMENT ON COLUMN saas_monitor_rules.created_at IS '创建时间';
COMMENT ON COLUMN saas_monitor_rules.updated_at IS '更新时间';
COMMENT ON COLUMN saas_monitor_rules.created_by IS '创建人ID';
COMMENT ON COLUMN saas_monitor_rules.updated_by IS '更新人ID';
COMMENT ON COLUMN saas_monitor_rules.deleted_at IS '删除时间';
COMMENT ON COLUMN saas_monitor_rules.deleted_by IS '删除人ID';
COMMENT ON COLUMN saas_monitor_rules.data_version IS '数据版本';
COMMENT ON COLUMN saas_monitor_rules.last_modified_hash IS '数据摘要';

-- ---------------------------------------------------------------------------------------------
-- 系统指标表 (system metrics): append-only samples of the tenant's resources (seed §8.2 监控指标).
CREATE TABLE saas_system_metrics (
    id                  varchar(36)      NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)      NOT NULL,
    metric_name         varchar(100)     NOT NULL,
    metric_type         varchar(20)      NOT NULL DEFAULT 'gauge',
    source_module       varchar(50),
    source_id           varchar(36),
    instance            varchar(100),
    metric_value        double precision NOT NULL,
    unit                varchar(20),
    labels              jsonb            NOT NULL DEFAULT '{}'::jsonb,
    collected_at        timestamptz      NOT NULL DEFAULT now(),
    created_at          timestamptz      NOT NULL DEFAULT now(),
    is_archived         boolean          NOT NULL DEFAULT false,
    archived_at         timestamptz,
    CONSTRAINT saas_system_metrics_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_system_metrics_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT chk_saas_system_metrics_metric_type CHECK (metric_type IN ('gauge', 'counter', 'histogram', 'summary'))
);

CREATE INDEX idx_saas_system_metrics_tenant_metric ON saas_system_metrics (tenant_id, metric_name, collected_at);
CREATE INDEX idx_saas_system_metrics_source ON saas_system_metrics (source_module, source_id, collected_at);
CREATE INDEX idx_saas_system_metrics_collected_at ON saas_system_metrics (collected_at);

COMMENT ON TABLE saas_system_metrics IS '系统指标表 (metric samples)';
COMMENT ON COLUMN saas_system_metrics.id IS '指标记录ID';
COMMENT ON COLUMN saas_system_metrics.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_system_metrics.metric_name IS '指标名称';
COMMENT ON COLUMN saas_system_metrics.metric_type IS '指标类型 (gauge/counter/histogram/summary)';
COMMENT ON COLUMN saas_system_metrics.source_module IS '来源模块';
COMMENT ON COLUMN saas_system_metrics.source_id IS '来源对象ID (logical reference)';
COMMENT ON COLUMN saas_system_metrics.instance IS '实例 (host/pod)';
COMMENT ON COLUMN saas_system_metrics.metric_value IS '指标值';
COMMENT ON COLUMN saas_system_metrics.unit IS '单位';
COMMENT ON COLUMN saas_system_metrics.labels IS '标签';
COMMENT ON COLUMN saas_system_metrics.collected_at IS '采集时间';
COMMENT ON COLUMN saas_system_metrics.created_at IS '创建时间';
COMMENT ON COLUMN saas_system_metrics.is_archived IS '是否已归档';
COMMENT ON COLUMN saas_system_metrics.archived_at IS '归档时间';

-- ---------------------------------------------------------------------------------------------
-- 健康检查表 (health checks): one row per check execution (history; targets are logical refs).
CREATE TABLE saas_health_checks (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    check_name          varchar(100) NOT NULL,
    check_type          varchar(20)  NOT NULL,
    target_type         varchar(50),
    target_id           varchar(36),
    endpoint            varchar(500),
    status              varchar(20)  NOT NULL,
    health_score        integer,
    response_time_ms    integer,
    details             jsonb,
    error_message       text,
    checked_at          timestamptz  NOT NULL DEFAULT now(),
    created_at          timestamptz  NOT NULL DEFAULT now(),
    is_archived         boolean      NOT NULL DEFAULT false,
    archived_at         timestamptz,
    CONSTRAINT saas_health_checks_pkey PRIMARY KEY (id),
    CONSTRAINT fk_saas_health_checks_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT chk_saas_health_checks_check_type CHECK (check_type IN ('database', 'cache', 'api', 'storage', 'queue', 'wework_account', 'ai_platform', 'custom')),
    CONSTRAINT chk_saas_health_checks_status CHECK (status IN ('healthy', 'degraded', 'unhealthy', 'unknown')),
    CONSTRAINT chk_saas_health_checks_health_score CHECK (health_score IS NULL OR health_score BETWEEN 0 AND 100),
    CONSTRAINT chk_saas_health_checks_response_time_ms CHECK (response_time_ms IS NULL OR response_time_ms >= 0)
);

CREATE INDEX idx_saas_health_checks_tenant_type ON saas_health_checks (tenant_id, check_type, checked_at);
CREATE INDEX idx_saas_health_checks_target ON saas_health_checks (target_type, target_id, checked_at);
CREATE INDEX idx_saas_health_checks_status ON saas_health_checks (status, checked_at);

COMMENT ON TABLE saas_health_checks IS '健康检查表 (health check results)';
COMMENT ON COLUMN saas_health_checks.id IS '检查记录ID';
COMMENT ON COLUMN saas_health_checks.tenant_id IS '租户ID';
COMMENT ON COLUMN saas_health_checks.check_name IS '检查名称';
COMMENT ON COLUMN saas_health_checks.check_type IS '检查类型 (database/cache/api/storage/queue/wework_account/ai_platform/custom)';
COMMENT ON COLUMN saas_health_checks.target_type IS '检查对象类型';
COMMENT ON COLUMN saas_health_checks.target_id IS '检查对象ID (logical reference)';
COMMENT ON COLUMN saas_health_checks.endpoint IS '检查端点';
COMMENT ON COLUMN saas_health_checks.status IS '健康状态 (healthy/degraded/unhealthy/unknown)';
COMMENT ON COLUMN saas_health_checks.health_score IS '健康度评分 (0-100)';
COMMENT ON COLUMN saas_health_checks.response_time_ms IS '响应时间(毫秒)';
COMMENT ON COLUMN saas_health_checks.details IS '检查详情';
COMMENT ON COLUMN saas_health_checks.error_message IS '错误信息';
COMMENT ON COLUMN saas_health_checks.checked_at IS '检查时间';
COMMENT ON COLUMN saas_health_checks.created_at IS '创建时间';
COMMENT ON COLUMN saas_health_checks.is_archived IS '是否已归档';
COMMENT ON COLUMN saas_health_checks.archived_at IS '归档时间';

INSERT INTO "tenant_bench_t00001_635f56f2".tenantdb_schema_migrations (version, name, checksum, execution_ms) VALUES (20250101000004, 'operations', '08e164b5980a1e78a19186566e968ae5958ccb0efbb4b14e8ce364f83c3f2d5c', 0);
-- Layer 5: 业务模块层 (BUSINESS_MODULES) — AI智能体模块
-- ai_platforms, ai_agents, ai_conversations, ai_messages, ai_knowledge_bases

-- ---------------------------------------------------------------------------------------------
-- AI平台表 (AI platforms): the model providers / agent platforms a tenant has connected.
CREATE TABLE ai_platforms (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    platform_name       varchar(100) NOT NULL,
    platform_type       varchar(30)  NOT NULL,
    api_base_url        varchar(500),
    credentials         jsonb        NOT NULL DEFAULT '{}'::jsonb,
    models              jsonb        NOT NULL DEFAULT '[]'::jsonb,
    default_model       varchar(100),
    config              jsonb        NOT NULL DEFAULT '{}'::jsonb,
    priority            integer      NOT NULL DEFAULT 0,
    status              varchar(20)  NOT NULL DEFAULT 'active',
    health_score        integer      NOT NULL DEFAULT 100,
    last_checked_at     timestamptz,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    deleted_at          timestamptz,
    deleted_by          varchar(36),
    data_version        integer      NOT NULL DEFAULT 1,
    last_modified_hash  varchar(64),
    CONSTRAINT ai_platforms_pkey PRIMARY KEY (id),
    CONSTRAINT fk_ai_platforms_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT chk_ai_platforms_platform_type CHECK (platform_type IN (
        'openai', 'azure_openai', 'anthropic', 'qwen', 'wenxin', 'zhipu', 'deepseek',
        'dify', 'coze', 'fastgpt', 'custom')),
    CONSTRAINT chk_ai_platforms_status CHECK (status IN ('active', 'inactive', 'error')),
    CONSTRAINT chk_ai_platforms_health_score CHECK (health_score BETWEEN 0 AND 100),
    CONSTRAINT chk_ai_platforms_data_version CHECK (data_version >= 1)
);

CREATE UNIQUE INDEX uk_ai_platforms_platform_name ON ai_platforms (tenant_id, platform_name) WHERE deleted_at IS NULL;
CREATE INDEX idx_ai_platforms_tenant_status ON ai_platforms (tenant_id, status, priority);

CREATE TRIGGER trg_ai_platforms_updated_at BEFORE UPDATE ON ai_platforms
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE ai_platforms IS 'AI平台表 (connected AI platforms / model providers)';
COMMENT ON COLUMN ai_platforms.id IS '平台ID';
COMMENT ON COLUMN ai_platforms.tenant_id IS '租户ID';
COMMENT ON COLUMN ai_platforms.platform_name IS '平台名称 (unique per tenant among non-deleted rows)';
COMMENT ON COLUMN ai_platforms.platform_type IS '平台类型';
COMMENT ON COLUMN ai_platforms.api_base_url IS 'API地址';
COMMENT ON COLUMN ai_platforms.credentials IS '认证信息 (values encrypted by the application)';
COMMENT ON COLUMN ai_platforms.models IS '可用模型列表';
COMMENT ON COLUMN ai_platforms.default_model IS '默认模型';
COMMENT ON COLUMN ai_platforms.config IS '平台配置 (timeouts, rate limits, proxy...)';
COMMENT ON COLUMN ai_platforms.priority IS '路由优先级';
COMMENT ON COLUMN ai_platforms.status IS '平台状态 (active/inactive/error)';
COMMENT ON COLUMN ai_platforms.health_score IS '健康度评分 (0-100)';
COMMENT ON COLUMN ai_platforms.last_checked_at IS '最后检查时间';
COMMENT ON COLUMN ai_platforms.created_at IS '创建时间';
COMMENT ON COLUMN ai_platforms.updated_at IS '更新时间';
COMMENT ON COLUMN ai_platforms.created_by IS '创建人ID';
COMMENT ON COLUMN ai_platforms.updated_by IS '更新人ID';
COMMENT ON COLUMN ai_platforms.deleted_at IS '删除时间';
COMMENT ON COLUMN ai_platforms.deleted_by IS '删除人ID';
COMMENT ON COLUMN ai_platforms.data_version IS '数据版本';
COMMENT ON COLUMN ai_platforms.last_modified_hash IS '数据摘要';

-- ---------------------------------------------------------------------------------------------
-- AI智能体表 (seed §3.1) + standard field sets + the platform the agent runs on.
CREATE TABLE ai_agents (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    platform_id         varchar(36),
    agent_name          varchar(100) NOT NULL,
    agent_type          varchar(20)  NOT NULL DEFAULT 'chatbot',
    description         text,
    config              jsonb        NOT NULL,
    status              varchar(20)  NOT NULL DEFAULT 'draft',
    version             varchar(20)  NOT NULL DEFAULT '1.0.0',
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36)  NOT NULL,
    updated_by          varchar(36),
    deleted_at          timestamptz,
    deleted_by          varchar(36),
    data_version        integer      NOT NULL DEFAULT 1,
    last_modified_hash  varchar(64),
    CONSTRAINT ai_agents_pkey PRIMARY KEY (id),
    CONSTRAINT fk_ai_agents_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_ai_agents_created_by FOREIGN KEY (created_by) REFERENCES saas_users (id) ON DELETE RESTRICT,
    CONSTRAINT fk_ai_agents_platform_id FOREIGN KEY (platform_id) REFERENCES ai_platforms (id) ON DELETE SET NULL,
    CONSTRAINT chk_ai_agents_agent_type CHECK (agent_type IN ('chatbot', 'workflow', 'plugin')),
    CONSTRAINT chk_ai_agents_status CHECK (status IN ('draft', 'active', 'inactive', 'archived')),
    CONSTRAINT chk_ai_agents_data_version CHECK (data_version >= 1)
);

CREATE INDEX idx_ai_agents_tenant_status ON ai_agents (tenant_id, status);
CREATE INDEX idx_ai_agents_agent_type ON ai_agents (agent_type);
CREATE INDEX idx_ai_agents_created_by ON ai_agents (created_by);
CREATE INDEX idx_ai_agents_platform_id ON ai_agents (platform_id);

CREATE TRIGGER trg_ai_agents_updated_at BEFORE UPDATE ON ai_agents
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE ai_agents IS 'AI智能体表 (AI agents)';
COMMENT ON COLUMN ai_agents.id IS '智能体ID';
COMMENT ON COLUMN ai_agents.tenant_id IS '租户ID';
COMMENT ON COLUMN ai_agents.platform_id IS '所属AI平台ID (NULL = platform chosen by config/routing)';
COMMENT ON COLUMN ai_agents.agent_name IS '智能体名称';
COMMENT ON COLUMN ai_agents.agent_type IS '类型 (chatbot/workflow/plugin)';
COMMENT ON COLUMN ai_agents.description IS '描述';
COMMENT ON COLUMN ai_agents.config IS '智能体配置 (prompt, model, tools, knowledge_base_ids...)';
COMMENT ON COLUMN ai_agents.status IS '状态 (draft/active/inactive/archived)';
COMMENT ON COLUMN ai_agents.version IS '版本号 (agent release version, not the row version)';
COMMENT ON COLUMN ai_agents.created_at IS '创建时间';
COMMENT ON COLUMN ai_agents.updated_at IS '更新时间';
COMMENT ON COLUMN ai_agents.created_by IS '创建者ID';
COMMENT ON COLUMN ai_agents.updated_by IS '更新人ID';
COMMENT ON COLUMN ai_agents.deleted_at IS '删除时间';
COMMENT ON COLUMN ai_agents.deleted_by IS '删除人ID';
COMMENT ON COLUMN ai_agents.data_version IS '数据版本';
COMMENT ON COLUMN ai_agents.last_modified_hash IS '数据摘要';

-- ---------------------------------------------------------------------------------------------
-- AI会话表 (conversations with an agent). The participant is a platform user (user_id) or an
-- external end user (external_user_id, e.g. a WeWork customer).
CREATE TABLE ai_conversations (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    agent_id            varchar(36)  NOT NULL,
    user_id             varchar(36),
    external_user_id    varchar(100),
    channel             varchar(20)  NOT NULL DEFAULT 'web',
    title               varchar(200),
    status              varchar(20)  NOT NULL DEFAULT 'active',
    message_count       integer      NOT NULL DEFAULT 0,
    total_tokens        bigint       NOT NULL DEFAULT 0,
    context             jsonb,
    metadata            jsonb,
    started_at          timestamptz  NOT NULL DEFAULT now(),
    last_message_at     timestamptz,
    ended_at            timestamptz,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    is_archived         boolean      NOT NULL DEFAULT false,
    archived_at         timestamptz,
    CONSTRAINT ai_conversations_pkey PRIMARY KEY (id),
    CONSTRAINT fk_ai_conversations_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_ai_conversations_agent_id FOREIGN KEY (agent_id) REFERENCES ai_agents (id) ON DELETE CASCADE,
    CONSTRAINT fk_ai_conversations_user_id FOREIGN KEY (user_id) REFERENCES saas_users (id) ON DELETE SET NULL,
    CONSTRAINT chk_ai_conversations_channel CHECK (channel IN ('web', 'api', 'app', 'wework', 'wechat', 'internal')),
    CONSTRAINT chk_ai_conversations_status CHECK (status IN ('active', 'ended', 'archived')),
    CONSTRAINT chk_ai_conversations_message_count CHECK (message_count >= 0),
    CONSTRAINT chk_ai_conversations_total_tokens CHECK (total_tokens >= 0)
);

CREATE INDEX idx_ai_conversations_tenant_agent ON ai_conversations (tenant_id, agent_id, created_at);
CREATE INDEX idx_ai_conversations_tenant_status ON ai_conversations (tenant_id, status, created_at);
CREATE INDEX idx_ai_conversations_agent_id ON ai_conversations (agent_id);
CREATE INDEX idx_ai_conversations_user ON ai_conversations (user_id, last_message_at) WHERE user_id IS NOT NULL;
CREATE INDEX idx_ai_conversations_external_user ON ai_conversations (tenant_id, external_user_id) WHERE external_user_id IS NOT NULL;

CREATE TRIGGER trg_ai_conversations_updated_at BEFORE UPDATE ON ai_conversations
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE ai_conversations IS 'AI会话表 (agent conversations)';
COMMENT ON COLUMN ai_conversations.id IS '会话ID';
COMMENT ON COLUMN ai_conversations.tenant_id IS '租户ID';
COMMENT ON COLUMN ai_conversations.agent_id IS '智能体ID';
COMMENT ON COLUMN ai_conversations.user_id IS '平台用户ID (NULL for external users)';
COMMENT ON COLUMN ai_conversations.external_user_id IS '外部用户标识 (e.g. WeWork external contact id)';
COMMENT ON COLUMN ai_conversations.channel IS '接入渠道 (web/api/app/wework/wechat/internal)';
COMMENT ON COLUMN ai_conversations.title IS '会话标题';
COMMENT ON COLUMN ai_conversations.status IS '会话状态 (active/ended/archived)';
COMMENT ON COLUMN ai_conversations.message_count IS '消息数';
COMMENT ON COLUMN ai_conversations.total_tokens IS '累计Token数';
COMMENT ON COLUMN ai_conversations.context IS '会话上下文/记忆';
COMMENT ON COLUMN ai_conversations.metadata IS '扩展信息';
COMMENT ON COLUMN ai_conversations.started_at IS '开始时间';
COMMENT ON COLUMN ai_conversations.last_message_at IS '最后消息时间';
COMMENT ON COLUMN ai_conversations.ended_at IS '结束时间';
COMMENT ON COLUMN ai_conversations.created_at IS '创建时间';
COMMENT ON COLUMN ai_conversations.updated_at IS '更新时间';
COMMENT ON COLUMN ai_conversations.is_archived IS '是否已归档';
COMMENT ON COLUMN ai_conversations.archived_at IS '归档时间';

-- ---------------------------------------------------------------------------------------------
-- AI消息表 (messages of a conversation).
CREATE TABLE ai_messages (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    conversation_id     varchar(36)  NOT NULL,
    role                varchar(20)  NOT NULL,
    content_type        varchar(20)  NOT NULL DEFAULT 'text',
    content             text,
    attachments         jsonb,
    model               varchar(100),
    platform_id         varchar(36),
    prompt_tokens       integer      NOT NULL DEFAULT 0,
    completion_tokens   integer      NOT NULL DEFAULT 0,
    latency_ms          integer,
    status              varchar(20)  NOT NULL DEFAULT 'completed',
    error_info          jsonb,
    feedback            varchar(10),
    metadata            jsonb,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    is_archived         boolean      NOT NULL DEFAULT false,
    archived_at         timestamptz,
    CONSTRAINT ai_messages_pkey PRIMARY KEY (id),
    CONSTRAINT fk_ai_messages_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_ai_messages_conversation_id FOREIGN KEY (conversation_id) REFERENCES ai_conversations (id) ON DELETE CASCADE,
    CONSTRAINT chk_ai_messages_role CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    CONSTRAINT chk_ai_messages_content_type CHECK (content_type IN ('text', 'image', 'file', 'audio', 'card', 'tool_call', 'tool_result')),
    CONSTRAINT chk_ai_messages_status CHECK (status IN ('pending', 'streaming', 'completed', 'failed')),
    CONSTRAINT chk_ai_messages_feedback CHECK (feedback IS NULL OR feedback IN ('like', 'dislike')),
    CONSTRAINT chk_ai_messages_tokens CHECK (prompt_tokens >= 0 AND completion_tokens >= 0),
    CONSTRAINT chk_ai_messages_latency_ms CHECK (latency_ms IS NULL OR latency_ms >= 0)
);

CREATE INDEX idx_ai_messages_conversation ON ai_messages (conversation_id, created_at);
CREATE INDEX idx_ai_messages_tenant_time ON ai_messages (tenant_id, created_at);

CREATE TRIGGER trg_ai_messages_updated_at BEFORE UPDATE ON ai_messages
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE ai_messages IS 'AI消息表 (conversation messages)';
COMMENT ON COLUMN ai_messages.id IS '消息ID';
COMMENT ON COLUMN ai_messages.tenant_id IS '租户ID';
COMMENT ON COLUMN ai_messages.conversation_id IS '会话ID';
COMMENT ON COLUMN ai_messages.role IS '消息角色 (system/user/assistant/tool)';
COMMENT ON COLUMN ai_messages.content_type IS '内容类型';
COMMENT ON COLUMN ai_messages.content IS '消息内容';
COMMENT ON COLUMN ai_messages.attachments IS '附件 (saas_files ids, logical)';
COMMENT ON COLUMN ai_messages.model IS '使用的模型';
COMMENT ON COLUMN ai_messages.platform_id IS 'AI平台ID (logical reference: history outlives platform config)';
COMMENT ON COLUMN ai_messages.prompt_tokens IS '输入Token数';
COMMENT ON COLUMN ai_messages.completion_tokens IS '输出Token数';
COMMENT ON COLUMN ai_messages.latency_ms IS '响应耗时(毫秒)';
COMMENT ON COLUMN ai_messages.status IS '消息状态 (pending/streaming/completed/failed)';
COMMENT ON COLUMN ai_messages.error_info IS '错误信息';
COMMENT ON COLUMN ai_messages.feedback IS '用户反馈 (like/dislike)';
COMMENT ON COLUMN ai_messages.metadata IS '扩展信息 (tool calls, citations...)';
COMMENT ON COLUMN ai_messages.created_at IS '创建时间';
COMMENT ON COLUMN ai_messages.updated_at IS '更新时间';
COMMENT ON COLUMN ai_messages.is_archived IS '是否已归档';
COMMENT ON COLUMN ai_messages.archived_at IS '归档时间';

-- ---------------------------------------------------------------------------------------------
-- AI知识库表 (knowledge bases). Agents reference knowledge bases from ai_agents.config
-- (knowledge_base_ids): the seed names no link table.
CREATE TABLE ai_knowledge_bases (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    platform_id         varchar(36),
    kb_name             varchar(100) NOT NULL,
    kb_type             varchar(20)  NOT NULL DEFAULT 'document',
    description         text,
    external_kb_id      varchar(100),
    embedding_model     varchar(100),
    chunk_config        jsonb,
    config              jsonb        NOT NULL DEFAULT '{}'::jsonb,
    document_count      integer      NOT NULL DEFAULT 0,
    total_size_bytes    bigint       NOT NULL DEFAULT 0,
    status              varchar(20)  NOT NULL DEFAULT 'active',
    last_synced_at      timestamptz,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    deleted_at          timestamptz,
    deleted_by          varchar(36),
    data_version        integer      NOT NULL DEFAULT 1,
    last_modified_hash  varchar(64),
    CONSTRAINT ai_knowledge_bases_pkey PRIMARY KEY (id),
    CONSTRAINT fk_ai_knowledge_bases_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_ai_knowledge_bases_platform_id FOREIGN KEY (platform_id) REFERENCES ai_platforms (id) ON DELETE SET NULL,
    CONSTRAINT chk_ai_knowledge_bases_kb_type CHECK (kb_type IN ('document', 'faq', 'website', 'database', 'custom')),
    CONSTRAINT chk_ai_knowledge_bases_status CHECK (status IN ('creating', 'active', 'syncing', 'error', 'disabled')),
    CONSTRAINT chk_ai_knowledge_bases_document_count CHECK (document_count >= 0),
    CONSTRAINT chk_ai_knowledge_bases_total_size_bytes CHECK (total_size_bytes >= 0),
    CONSTRAINT chk_ai_knowledge_bases_data_version CHECK (data_version >= 1)
);

CREATE UNIQUE INDEX uk_ai_knowledge_bases_kb_name ON ai_knowledge_bases (tenant_id, kb_name) WHERE deleted_at IS NULL;
CREATE INDEX idx_ai_knowledge_bases_tenant_status ON ai_knowledge_bases (tenant_id, status);
CREATE INDEX idx_ai_knowledge_bases_platform_id ON ai_knowledge_bases (platform_id);

CREATE TRIGGER trg_ai_knowledge_bases_updated_at BEFORE UPDATE ON ai_knowledge_bases
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE ai_knowledge_bases IS 'AI知识库表 (knowledge bases)';
COMMENT ON COLUMN ai_knowledge_bases.id IS '知识库ID';
COMMENT ON COLUMN ai_knowledge_bases.tenant_id IS '租户ID';
COMMENT ON COLUMN ai_knowledge_bases.platform_id IS '托管平台ID (where the index lives; NULL = local)';
COMMENT ON COLUMN ai_knowledge_bases.kb_name IS '知识库名称';
COMMENT ON COLUMN ai_knowledge_bases.kb_type IS '知识库类型 (document/faq/website/database/custom)';
COMMENT ON COLUMN ai_knowledge_bases.description IS '描述';
COMMENT ON COLUMN ai_knowledge_bases.external_kb_id IS '平台侧知识库ID';
COMMENT ON COLUMN ai_knowledge_bases.embedding_model IS '向量化模型';
COMMENT ON COLUMN ai_knowledge_bases.chunk_config IS '分片配置';
COMMENT ON COLUMN ai_knowledge_bases.config IS '知识库配置 (retrieval settings)';
COMMENT ON COLUMN ai_knowledge_bases.document_count IS '文档数';
COMMENT ON COLUMN ai_knowledge_bases.total_size_bytes IS '总大小(字节)';
COMMENT ON COLUMN ai_knowledge_bases.status IS '状态 (creating/active/syncing/error/disabled)';
COMMENT ON COLUMN ai_knowledge_bases.last_synced_at IS '最后同步时间';
COMMENT ON COLUMN ai_knowledge_bases.created_at IS '创建时间';
COMMENT ON COLUMN ai_knowledge_bases.updated_at IS '更新时间';
COMMENT ON COLUMN ai_knowledge_bases.created_by IS '创建人ID';
COMMENT ON COLUMN ai_knowledge_bases.updated_by IS '更新人ID';
COMMENT ON COLUMN ai_knowledge_bases.deleted_at IS '删除时间';
COMMENT ON COLUMN ai_knowledge_bases.deleted_by IS '删除人ID';
COMMENT ON COLUMN ai_knowledge_bases.data_version IS '数据版本';
COMMENT ON COLUMN ai_knowledge_bases.last_modified_hash IS '数据摘要';

INSERT INTO "tenant_bench_t00001_635f56f2".tenantdb_schema_migrations (version, name, checksum, execution_ms) VALUES (20250101000005, 'ai_module', 'a9a1d9ed2eb04c247d6c13c4afe079c1fc43aa4d1b1d1a64bef697b8f5b0634c', 0);
-- Layer 5: 业务模块层 (BUSINESS_MODULES) — 企微平台模块
-- wework_accounts, wework_conversations, wework_messages

-- ---------------------------------------------------------------------------------------------
-- 企微账号表 (seed §3.1) + standard field sets. The seed's idx_wework_guid is covered by the
-- unique index and is not repeated (seed §7.1: remove redundant indexes).
CREATE TABLE wework_accounts (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    account_name        varchar(100) NOT NULL,
    wework_guid         varchar(100),
    phone               varchar(20),
    status              varchar(20)  NOT NULL DEFAULT 'CREATED',
    status_changed_at   timestamptz,
    config              jsonb,
    health_score        integer      NOT NULL DEFAULT 100,
    last_login_time     timestamptz,
    last_heartbeat_time timestamptz,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    deleted_at          timestamptz,
    deleted_by          varchar(36),
    data_version        integer      NOT NULL DEFAULT 1,
    last_modified_hash  varchar(64),
    CONSTRAINT wework_accounts_pkey PRIMARY KEY (id),
    CONSTRAINT fk_wework_accounts_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT chk_wework_accounts_status CHECK (status IN (
        'CREATED', 'INITIALIZING', 'WAITING_QR', 'WAITING_CONFIRM',
        'VERIFYING', 'ONLINE', 'OFFLINE', 'ERROR', 'RECOVERING')),
    CONSTRAINT chk_wework_accounts_health_score CHECK (health_score BETWEEN 0 AND 100),
    CONSTRAINT chk_wework_accounts_data_version CHECK (data_version >= 1)
);

CREATE UNIQUE INDEX uk_wework_accounts_wework_guid ON wework_accounts (wework_guid) WHERE deleted_at IS NULL;
CREATE INDEX idx_wework_accounts_tenant_status ON wework_accounts (tenant_id, status);
CREATE INDEX idx_wework_accounts_health_score ON wework_accounts (health_score);
CREATE INDEX idx_wework_accounts_heartbeat ON wework_accounts (last_heartbeat_time);

CREATE TRIGGER trg_wework_accounts_updated_at BEFORE UPDATE ON wework_accounts
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE wework_accounts IS '企微账号表 (WeWork accounts)';
COMMENT ON COLUMN wework_accounts.id IS '账号ID';
COMMENT ON COLUMN wework_accounts.tenant_id IS '租户ID';
COMMENT ON COLUMN wework_accounts.account_name IS '账号名称';
COMMENT ON COLUMN wework_accounts.wework_guid IS '企微GUID (unique among non-deleted accounts)';
COMMENT ON COLUMN wework_accounts.phone IS '绑定手机号';
COMMENT ON COLUMN wework_accounts.status IS '账号状态 (9 states: CREATED … RECOVERING)';
COMMENT ON COLUMN wework_accounts.status_changed_at IS '状态变更时间';
COMMENT ON COLUMN wework_accounts.config IS '账号配置';
COMMENT ON COLUMN wework_accounts.health_score IS '健康度评分 (0-100)';
COMMENT ON COLUMN wework_accounts.last_login_time IS '最后登录时间';
COMMENT ON COLUMN wework_accounts.last_heartbeat_time IS '最后心跳时间';
COMMENT ON COLUMN wework_accounts.created_at IS '创建时间';
COMMENT ON COLUMN wework_accounts.updated_at IS '更新时间';
COMMENT ON COLUMN wework_accounts.created_by IS '创建人ID';
COMMENT ON COLUMN wework_accounts.updated_by IS '更新人ID';
COMMENT ON COLUMN wework_accounts.deleted_at IS '删除时间';
COMMENT ON COLUMN wework_accounts.deleted_by IS '删除人ID';
COMMENT ON COLUMN wework_accounts.data_version IS '数据版本';
COMMENT ON COLUMN wework_accounts.last_modified_hash IS '数据摘要';

-- ---------------------------------------------------------------------------------------------
-- 企微会话表 (conversations of an account: a single chat or a group chat). An AI agent can be
-- bound to a conversation for auto-replies.
CREATE TABLE wework_conversations (
    id                        varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id                 varchar(36)  NOT NULL,
    account_id                varchar(36)  NOT NULL,
    external_conversation_id  varchar(100) NOT NULL,
    conversation_type         varchar(20)  NOT NULL DEFAULT 'single',
    conversation_name         varchar(200),
    peer_id                   varchar(100),
    peer_type                 varchar(20),
    avatar_url                varchar(500),
    member_count              integer      NOT NULL DEFAULT 0,
    agent_id                  varchar(36),
    auto_reply_enabled        boolean      NOT NULL DEFAULT false,
    status                    varchar(20)  NOT NULL DEFAULT 'active',
    unread_count              integer      NOT NULL DEFAULT 0,
    message_count             integer      NOT NULL DEFAULT 0,
    last_message_at           timestamptz,
    last_message_preview      varchar(500),
    created_at                timestamptz  NOT NULL DEFAULT now(),
    updated_at                timestamptz  NOT NULL DEFAULT now(),
    is_archived               boolean      NOT NULL DEFAULT false,
    archived_at               timestamptz,
    CONSTRAINT wework_conversations_pkey PRIMARY KEY (id),
    CONSTRAINT fk_wework_conversations_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_wework_conversations_account_id FOREIGN KEY (account_id) REFERENCES wework_accounts (id) ON DELETE CASCADE,
    CONSTRAINT fk_wework_conversations_agent_id FOREIGN KEY (agent_id) REFERENCES ai_agents (id) ON DELETE SET NULL,
    CONSTRAINT uk_wework_conversations_external UNIQUE (account_id, external_conversation_id),
    CONSTRAINT chk_wework_conversations_conversation_type CHECK (conversation_type IN ('single', 'group')),
    CONSTRAINT chk_wework_conversations_peer_type CHECK (peer_type IS NULL OR peer_type IN ('internal', 'external')),
    CONSTRAINT chk_wework_conversations_status CHECK (status IN ('active', 'muted', 'archived', 'closed')),
    CONSTRAINT chk_wework_conversations_counts CHECK (member_count >= 0 AND unread_count >= 0 AND message_count >= 0)
);

CREATE INDEX idx_wework_conversations_tenant_account ON wework_conversations (tenant_id, account_id, last_message_at);
CREATE INDEX idx_wework_conversations_agent_id ON wework_conversations (agent_id) WHERE agent_id IS NOT NULL;
CREATE INDEX idx_wework_conversations_tenant_status ON wework_conversations (tenant_id, status, created_at);

CREATE TRIGGER trg_wework_conversations_updated_at BEFORE UPDATE ON wework_conversations
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE wework_conversations IS '企微会话表 (WeWork conversations)';
COMMENT ON COLUMN wework_conversations.id IS '会话ID';
COMMENT ON COLUMN wework_conversations.tenant_id IS '租户ID';
COMMENT ON COLUMN wework_conversations.account_id IS '企微账号ID';
COMMENT ON COLUMN wework_conversations.external_conversation_id IS '企微侧会话ID (chat/room id; unique per account)';
COMMENT ON COLUMN wework_conversations.conversation_type IS '会话类型 (single 私聊 / group 群聊)';
COMMENT ON COLUMN wework_conversations.conversation_name IS '会话名称 (contact or group name)';
COMMENT ON COLUMN wework_conversations.peer_id IS '对方ID (single chats)';
COMMENT ON COLUMN wework_conversations.peer_type IS '对方类型 (internal 内部成员 / external 外部联系人)';
COMMENT ON COLUMN wework_conversations.avatar_url IS '头像URL';
COMMENT ON COLUMN wework_conversations.member_count IS '成员数 (group chats)';
COMMENT ON COLUMN wework_conversations.agent_id IS '绑定的AI智能体ID (auto-reply)';
COMMENT ON COLUMN wework_conversations.auto_reply_enabled IS '是否开启自动回复';
COMMENT ON COLUMN wework_conversations.status IS '会话状态 (active/muted/archived/closed)';
COMMENT ON COLUMN wework_conversations.unread_count IS '未读消息数';
COMMENT ON COLUMN wework_conversations.message_count IS '消息总数';
COMMENT ON COLUMN wework_conversations.last_message_at IS '最后消息时间';
COMMENT ON COLUMN wework_conversations.last_message_preview IS '最后消息预览';
COMMENT ON COLUMN wework_conversations.created_at IS '创建时间';
COMMENT ON COLUMN wework_conversations.updated_at IS '更新时间';
COMMENT ON COLUMN wework_conversations.is_archived IS '是否已归档';
COMMENT ON COLUMN wework_conversations.archived_at IS '归档时间';

-- ---------------------------------------------------------------------------------------------
-- 企微消息表 (messages sent/received by an account in a conversation).
CREATE TABLE wework_messages (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    account_id          varchar(36)  NOT NULL,
    conversation_id     varchar(36)  NOT NULL,
    external_msg_id     varchar(100),
    direction           varchar(10)  NOT NULL,
    sender_id           varchar(100),
    sender_name         varchar(200),
    message_type        varchar(20)  NOT NULL DEFAULT 'text',
    content             text,
    media               jsonb,
    status              varchar(20)  NOT NULL DEFAULT 'pending',
    ai_message_id       varchar(36),
    retry_count         integer      NOT NULL DEFAULT 0,
    error_info          jsonb,
    sent_at             timestamptz,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    is_archived         boolean      NOT NULL DEFAULT false,
    archived_at         timestamptz,
    CONSTRAINT wework_messages_pkey PRIMARY KEY (id),
    CONSTRAINT fk_wework_messages_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_wework_messages_account_id FOREIGN KEY (account_id) REFERENCES wework_accounts (id) ON DELETE CASCADE,
    CONSTRAINT fk_wework_messages_conversation_id FOREIGN KEY (conversation_id) REFERENCES wework_conversations (id) ON DELETE CASCADE,
    CONSTRAINT uk_wework_messages_external_msg_id UNIQUE (account_id, external_msg_id),
    CONSTRAINT chk_wework_messages_direction CHECK (direction IN ('inbound', 'outbound')),
    CONSTRAINT chk_wework_messages_message_type CHECK (message_type IN (
        'text', 'image', 'voice', 'video', 'file', 'link', 'miniprogram', 'card', 'location', 'system')),
    CONSTRAINT chk_wework_messages_status CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'read', 'failed', 'recalled', 'received')),
    CONSTRAINT chk_wework_messages_retry_count CHECK (retry_count >= 0)
);

CREATE INDEX idx_wework_messages_conversation ON wework_messages (conversation_id, created_at);
CREATE INDEX idx_wework_messages_tenant_account ON wework_messages (tenant_id, account_id, created_at);
CREATE INDEX idx_wework_messages_outbox ON wework_messages (account_id, created_at) WHERE status IN ('pending', 'sending', 'failed');

CREATE TRIGGER trg_wework_messages_updated_at BEFORE UPDATE ON wework_messages
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE wework_messages IS '企微消息表 (WeWork messages)';
COMMENT ON COLUMN wework_messages.id IS '消息ID';
COMMENT ON COLUMN wework_messages.tenant_id IS '租户ID';
COMMENT ON COLUMN wework_messages.account_id IS '企微账号ID';
COMMENT ON COLUMN wework_messages.conversation_id IS '会话ID';
COMMENT ON COLUMN wework_messages.external_msg_id IS '企微消息ID (dedupe; unique per account)';
COMMENT ON COLUMN wework_messages.direction IS '消息方向 (inbound 接收 / outbound 发送)';
COMMENT ON COLUMN wework_messages.sender_id IS '发送者ID';
COMMENT ON COLUMN wework_messages.sender_name IS '发送者名称';
COMMENT ON COLUMN wework_messages.message_type IS '消息类型';
COMMENT ON COLUMN wework_messages.content IS '消息内容';
COMMENT ON COLUMN wework_messages.media IS '媒体信息 {url, file_id, size, duration}';
COMMENT ON COLUMN wework_messages.status IS '消息状态';
COMMENT ON COLUMN wework_messages.ai_message_id IS '关联AI消息ID (logical reference, when the reply was generated by an agent)';
COMMENT ON COLUMN wework_messages.retry_count IS '重试次数';
COMMENT ON COLUMN wework_messages.error_info IS '错误信息';
COMMENT ON COLUMN wework_messages.sent_at IS '发送/接收时间 (time on the WeWork side)';
COMMENT ON COLUMN wework_messages.created_at IS '创建时间';
COMMENT ON COLUMN wework_messages.updated_at IS '更新时间';
COMMENT ON COLUMN wework_messages.is_archived IS '是否已归档';
COMMENT ON COLUMN wework_messages.archived_at IS '归档时间';

INSERT INTO "tenant_bench_t00001_635f56f2".tenantdb_schema_migrations (version, name, checksum, execution_ms) VALUES (20250101000006, 'wework_module', 'bb4d5aaa21514b101ee4932a30546f1c7d3681ca87e1d6659d448d37a5b96c7d', 0);
-- Layer 5: 业务模块层 (BUSINESS_MODULES) — 健康管理模块
-- health_patients, health_records

-- ---------------------------------------------------------------------------------------------
-- 健康档案-患者表 (patients). Identity numbers are stored encrypted (by the application) plus a
-- hash for exact-match lookup.
CREATE TABLE health_patients (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    patient_no          varchar(50)  NOT NULL,
    name                varchar(100) NOT NULL,
    gender              varchar(10)  NOT NULL DEFAULT 'unknown',
    birth_date          date,
    id_number_encrypted text,
    id_number_hash      varchar(64),
    phone               varchar(20),
    email               varchar(255),
    address             varchar(500),
    blood_type          varchar(10),
    allergies           jsonb        NOT NULL DEFAULT '[]'::jsonb,
    medical_history     jsonb,
    emergency_contact   jsonb,
    tags                jsonb,
    external_contact_id varchar(100),
    manager_id          varchar(36),
    status              varchar(20)  NOT NULL DEFAULT 'active',
    health_score        integer,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    deleted_at          timestamptz,
    deleted_by          varchar(36),
    data_version        integer      NOT NULL DEFAULT 1,
    last_modified_hash  varchar(64),
    CONSTRAINT health_patients_pkey PRIMARY KEY (id),
    CONSTRAINT fk_health_patients_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_health_patients_manager_id FOREIGN KEY (manager_id) REFERENCES saas_users (id) ON DELETE SET NULL,
    CONSTRAINT chk_health_patients_gender CHECK (gender IN ('male', 'female', 'other', 'unknown')),
    CONSTRAINT chk_health_patients_status CHECK (status IN ('active', 'inactive', 'discharged', 'deceased')),
    CONSTRAINT chk_health_patients_health_score CHECK (health_score BETWEEN 0 AND 100),
    CONSTRAINT chk_health_patients_data_version CHECK (data_version >= 1)
);

CREATE UNIQUE INDEX uk_health_patients_patient_no ON health_patients (tenant_id, patient_no) WHERE deleted_at IS NULL;
CREATE INDEX idx_health_patients_tenant_status ON health_patients (tenant_id, status, created_at);
CREATE INDEX idx_health_patients_phone ON health_patients (tenant_id, phone) WHERE phone IS NOT NULL;
CREATE INDEX idx_health_patients_id_number_hash ON health_patients (tenant_id, id_number_hash) WHERE id_number_hash IS NOT NULL;
CREATE INDEX idx_health_patients_manager_id ON health_patients (manager_id);

CREATE TRIGGER trg_health_patients_updated_at BEFORE UPDATE ON health_patients
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE health_patients IS '健康管理-患者表 (patients)';
COMMENT ON COLUMN health_patients.id IS '患者ID';
COMMENT ON COLUMN health_patients.tenant_id IS '租户ID';
COMMENT ON COLUMN health_patients.patient_no IS '患者编号 (unique per tenant among non-deleted rows)';
COMMENT ON COLUMN health_patients.name IS '姓名';
COMMENT ON COLUMN health_patients.gender IS '性别 (male/female/other/unknown)';
COMMENT ON COLUMN health_patients.birth_date IS '出生日期';
COMMENT ON COLUMN health_patients.id_number_encrypted IS '证件号(加密) (ciphertext from the application)';
COMMENT ON COLUMN health_patients.id_number_hash IS '证件号哈希 (exact-match lookup)';
COMMENT ON COLUMN health_patients.phone IS '手机号';
COMMENT ON COLUMN health_patients.email IS '邮箱';
COMMENT ON COLUMN health_patients.address IS '地址';
COMMENT ON COLUMN health_patients.blood_type IS '血型';
COMMENT ON COLUMN health_patients.allergies IS '过敏史';
COMMENT ON COLUMN health_patients.medical_history IS '既往病史';
COMMENT ON COLUMN health_patients.emergency_contact IS '紧急联系人';
COMMENT ON COLUMN health_patients.tags IS '标签';
COMMENT ON COLUMN health_patients.external_contact_id IS '企微外部联系人ID (links the patient to WeWork conversations)';
COMMENT ON COLUMN health_patients.manager_id IS '健康管理师/责任医生ID';
COMMENT ON COLUMN health_patients.status IS '状态 (active/inactive/discharged/deceased)';
COMMENT ON COLUMN health_patients.health_score IS '健康评分 (0-100)';
COMMENT ON COLUMN health_patients.created_at IS '创建时间';
COMMENT ON COLUMN health_patients.updated_at IS '更新时间';
COMMENT ON COLUMN health_patients.created_by IS '创建人ID';
COMMENT ON COLUMN health_patients.updated_by IS '更新人ID';
COMMENT ON COLUMN health_patients.deleted_at IS '删除时间';
COMMENT ON COLUMN health_patients.deleted_by IS '删除人ID';
COMMENT ON COLUMN health_patients.data_version IS '数据版本';
COMMENT ON COLUMN health_patients.last_modified_hash IS '数据摘要';

-- ---------------------------------------------------------------------------------------------
-- 健康记录表 (health records of a patient): vital signs, checkups, diagnoses, follow-ups...
CREATE TABLE health_records (
    id                  varchar(36)  NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id           varchar(36)  NOT NULL,
    patient_id          varchar(36)  NOT NULL,
    record_type         varchar(20)  NOT NULL,
    recorded_at         timestamptz  NOT NULL DEFAULT now(),
    title               varchar(200),
    summary             text,
    record_data         jsonb        NOT NULL DEFAULT '{}'::jsonb,
    attachments         jsonb,
    source              varchar(20)  NOT NULL DEFAULT 'manual',
    health_score        integer,
    status              varchar(20)  NOT NULL DEFAULT 'confirmed',
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    created_by          varchar(36),
    updated_by          varchar(36),
    deleted_at          timestamptz,
    deleted_by          varchar(36),
    data_version        integer      NOT NULL DEFAULT 1,
    last_modified_hash  varchar(64),
    is_archived         boolean      NOT NULL DEFAULT false,
    archived_at         timestamptz,
    CONSTRAINT health_records_pkey PRIMARY KEY (id),
    CONSTRAINT fk_health_records_tenant_id FOREIGN KEY (tenant_id) REFERENCES saas_tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_health_records_patient_id FOREIGN KEY (patient_id) REFERENCES health_patients (id) ON DELETE CASCADE,
    CONSTRAINT chk_health_records_record_type CHECK (record_type IN (
        'vital_signs', 'checkup', 'diagnosis', 'prescription', 'lab_result', 'follow_up', 'consultation', 'note')),
    CONSTRAINT chk_health_records_source CHECK (source IN ('manual', 'device', 'import', 'wework', 'ai')),
    CONSTRAINT chk_health_records_health_score CHECK (health_score BETWEEN 0 AND 100),
    CONSTRAINT chk_health_records_status CHECK (status IN ('draft', 'confirmed', 'amended', 'voided')),
    CONSTRAINT chk_health_records_data_version CHECK (data_version >= 1)
);

CREATE INDEX idx_health_records_patient ON health_records (tenant_id, patient_id, recorded_at);
CREATE INDEX idx_health_records_patient_id ON health_records (patient_id);
CREATE INDEX idx_health_records_type ON health_records (tenant_id, record_type, recorded_at);

CREATE TRIGGER trg_health_records_updated_at BEFORE UPDATE ON health_records
    FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at();

COMMENT ON TABLE health_records IS '健康记录表 (health records)';
COMMENT ON COLUMN health_records.id IS '记录ID';
COMMENT ON COLUMN health_records.tenant_id IS '租户ID';
COMMENT ON COLUMN health_records.patient_id IS '患者ID';
COMMENT ON COLUMN health_records.record_type IS '记录类型';
COMMENT ON COLUMN health_records.recorded_at IS '记录时间 (when measured / examined)';
COMMENT ON COLUMN health_records.title IS '标题';
COMMENT ON COLUMN health_records.summary IS '摘要';
COMMENT ON COLUMN health_records.record_data IS '记录数据 (structured measurements)';
COMMENT ON COLUMN health_records.attachments IS '附件 (saas_files ids, logical)';
COMMENT ON COLUMN health_records.source IS '数据来源 (manual/device/import/wework/ai)';
COMMENT ON COLUMN health_records.health_score IS '健康评分 (0-100)';
COMMENT ON COLUMN health_records.status IS '记录状态 (draft/confirmed/amended/voided)';
COMMENT ON COLUMN health_records.created_at IS '创建时间';
COMMENT ON COLUMN health_records.updated_at IS '更新时间';
COMMENT ON COLUMN health_records.created_by IS '创建人ID (author)';
COMMENT ON COLUMN health_records.updated_by IS '更新人ID';
COMMENT ON COLUMN health_records.deleted_at IS '删除时间';
COMMENT ON COLUMN health_records.deleted_by IS '删除人ID';
COMMENT ON COLUMN health_records.data_version IS '数据版本';
COMMENT ON COLUMN health_records.last_modified_hash IS '数据摘要';
COMMENT ON COLUMN health_records.is_archived IS '是否已归档';
COMMENT ON COLUMN health_records.archived_at IS '归档时间';

INSERT INTO "tenant_bench_t00001_635f56f2".tenantdb_schema_migrations (version, name, checksum, execution_ms) VALUES (20250101000007, 'health_module', '840cce5acab8ca328e7de6a5dbc157b63ad09632aac1c01100e67621b23d138c', 0);
COMMIT;
BEGIN;
SELECT pg_advisory_xact_lock(1952735856, hashtext('tenant_bench_t00001_635f56f2'));
SET LOCAL ROLE "tenant_bench_t00001_635f56f2"; SET LOCAL search_path TO "tenant_bench_t00001_635f56f2";
CREATE TABLE IF NOT EXISTS "saas_unified_audit_logs_p202612" PARTITION OF "saas_unified_audit_logs" FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00');
CREATE TABLE IF NOT EXISTS "saas_unified_audit_logs_p202701" PARTITION OF "saas_unified_audit_logs" FOR VALUES FROM ('2027-01-01 00:00:00+00') TO ('2027-02-01 00:00:00+00');
CREATE TABLE IF NOT EXISTS "saas_unified_audit_logs_p202702" PARTITION OF "saas_unified_audit_logs" FOR VALUES FROM ('2027-02-01 00:00:00+00') TO ('2027-03-01 00:00:00+00');
CREATE TABLE IF NOT EXISTS "saas_unified_alerts_p202612" PARTITION OF "saas_unified_alerts" FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00');
CREATE TABLE IF NOT EXISTS "saas_unified_alerts_p202701" PARTITION OF "saas_unified_alerts" FOR VALUES FROM ('2027-01-01 00:00:00+00') TO ('2027-02-01 00:00:00+00');
CREATE TABLE IF NOT EXISTS "saas_unified_alerts_p202702" PARTITION OF "saas_unified_alerts" FOR VALUES FROM ('2027-02-01 00:00:00+00') TO ('2027-03-01 00:00:00+00');
CREATE TABLE IF NOT EXISTS "saas_usage_statistics_p202612" PARTITION OF "saas_usage_statistics" FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');
CREATE TABLE IF NOT EXISTS "saas_usage_statistics_p202701" PARTITION OF "saas_usage_statistics" FOR VALUES FROM ('2027-01-01') TO ('2027-02-01');
CREATE TABLE IF NOT EXISTS "saas_usage_statistics_p202702" PARTITION OF "saas_usage_statistics" FOR VALUES FROM ('2027-02-01') TO ('2027-03-01');
COMMIT;
