-- Reverts 20250101000007_health_module (reverse order of creation).
DROP TABLE health_records;
DROP TABLE health_patients;
