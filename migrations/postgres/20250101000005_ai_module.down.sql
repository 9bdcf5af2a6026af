-- Reverts 20250101000005_ai_module (reverse order of creation).
DROP TABLE ai_knowledge_bases;
DROP TABLE ai_messages;
DROP TABLE ai_conversations;
DROP TABLE ai_agents;
DROP TABLE ai_platforms;
