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
