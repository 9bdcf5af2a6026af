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
