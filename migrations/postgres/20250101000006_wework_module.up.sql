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
