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
