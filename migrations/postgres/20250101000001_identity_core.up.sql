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
