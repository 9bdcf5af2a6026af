-- Reverts 20250101000006_wework_module (reverse order of creation).
DROP TABLE wework_messages;
DROP TABLE wework_conversations;
DROP TABLE wework_accounts;
