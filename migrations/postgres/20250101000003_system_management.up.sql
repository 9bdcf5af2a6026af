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
