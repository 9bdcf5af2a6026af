//! Versioned tenant schema migrations (being written).
