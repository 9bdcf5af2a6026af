//! API group names the emulator treats specially (a leaf: the registry, the schemas and the write
//! path all name them).

/// `apiextensions.k8s.io` (CustomResourceDefinitions).
pub const CRD_GROUP: &str = "apiextensions.k8s.io";
/// `rbac.authorization.k8s.io` (Roles, ClusterRoles and their bindings).
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
