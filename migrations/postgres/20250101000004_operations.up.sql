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
