//! Placement of a tenant on a server (pure): among the Ready, uncordoned servers the tenant's
//! placement allows, with room in every capacity dimension, the least utilised (the highest of its
//! ratios tenants/maxTenants, storage/maxStorage, connections/maxConnections); ties broken by the
//! number of tenants (so servers without limits fill evenly), then by name.
//! No room anywhere: the reason each candidate was refused.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::crd::ServerChoice;

/// What placement knows of one server.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Server name.
    pub name: String,
    /// The server's labels.
    pub labels: BTreeMap<String, String>,
    /// Whether its last probe succeeded.
    pub ready: bool,
    /// Why it is not Ready (the probe's message).
    pub not_ready_reason: Option<String>,
    /// No new tenants.
    pub cordoned: bool,
    /// Why, when it is not the DatabaseServer's `cordoned` (or drain).
    pub cordon_reason: Option<String>,
    /// Whether this is the operator's default server (the one for Tenants without placement).
    pub default: bool,
    /// Capacity limits (`None`: unlimited).
    pub max_tenants: Option<i64>,
    /// Storage limit in bytes.
    pub max_storage: Option<i64>,
    /// Connection limit.
    pub max_connections: Option<i64>,
    /// Tenants placed (or being placed) on it.
    pub tenants: i64,
    /// Storage those tenants use.
    pub storage_bytes: i64,
    /// Connections those tenants reserve.
    pub connections: i64,
}

/// What the tenant to place needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Need {
    /// Its connection limit (`None`: unlimited).
    pub connections: Option<i64>,
}

/// Why no server was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    /// `(server, reason)` for every server considered, in name order.
    pub refused: Vec<(String, String)>,
}

impl std::fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.refused.is_empty() {
            return write!(f, "no database server matches the placement");
        }
        write!(f, "no database server has room: ")?;
        for (i, (name, why)) in self.refused.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{name}: {why}")?;
        }
        Ok(())
    }
}

/// Whether `placement` allows the server `c` (by name, by selector; none = the default server,
/// or any server when there is no default).
pub fn allows(placement: Option<&ServerChoice>, c: &Candidate, have_default: bool) -> bool {
    match placement {
        Some(ServerChoice {
            server: Some(name), ..
        }) => &c.name == name,
        Some(ServerChoice {
            selector: Some(sel),
            ..
        }) => selector_matches(sel, &c.labels),
        _ => c.default || !have_default,
    }
}

/// Chooses a server for a tenant among `candidates`.
pub fn choose<'a>(
    placement: Option<&ServerChoice>,
    need: Need,
    candidates: &'a [Candidate],
) -> Result<&'a Candidate, Unschedulable> {
    let have_default = candidates.iter().any(|c| c.default);
    let mut refused = Vec::new();
    let mut best: Option<(f64, &Candidate)> = None;
    let mut sorted: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| allows(placement, c, have_default))
        .collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for c in sorted {
        match refusal(c, need) {
            Some(why) => refused.push((c.name.clone(), why)),
            None => {
                let u = utilisation(c);
                // (Candidates come in name order: the first of equals stays.)
                if best.is_none_or(|(b, bc)| u < b || (u == b && c.tenants < bc.tenants)) {
                    best = Some((u, c));
                }
            }
        }
    }
    best.map(|(_, c)| c).ok_or(Unschedulable { refused })
}

/// Why `c` cannot take the tenant, if it cannot.
fn refusal(c: &Candidate, need: Need) -> Option<String> {
    if !c.ready {
        return Some(format!(
            "not ready ({})",
            c.not_ready_reason.as_deref().unwrap_or("not probed yet")
        ));
    }
    if c.cordoned {
        return Some(c.cordon_reason.clone().unwrap_or_else(|| "cordoned".into()));
    }
    if let Some(max) = c.max_tenants
        && c.tenants >= max
    {
        return Some(format!("maxTenants reached ({}/{max})", c.tenants));
    }
    if let Some(max) = c.max_storage
        && c.storage_bytes >= max
    {
        return Some(format!(
            "maxStorage reached ({}/{max} bytes)",
            c.storage_bytes
        ));
    }
    if let Some(max) = c.max_connections {
        match need.connections {
            None => {
                return Some(
                    "the tenant has no quotas.maxConnections and the server limits connections"
                        .into(),
                );
            }
            Some(n) if c.connections + n > max => {
                return Some(format!(
                    "maxConnections would be exceeded ({} reserved + {n} > {max})",
                    c.connections
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// The highest of the server's capacity ratios (0 when it has no limits).
pub fn utilisation(c: &Candidate) -> f64 {
    let ratio = |used: i64, max: Option<i64>| match max {
        Some(0) => f64::INFINITY,
        Some(m) => used as f64 / m as f64,
        None => 0.0,
    };
    ratio(c.tenants, c.max_tenants)
        .max(ratio(c.storage_bytes, c.max_storage))
        .max(ratio(c.connections, c.max_connections))
}

/// Whether `labels` match a Kubernetes label selector (`matchLabels` and `matchExpressions` with
/// `In`, `NotIn`, `Exists`, `DoesNotExist`; an unknown operator matches nothing). An empty selector
/// matches everything, as in Kubernetes.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &sel.match_labels
        && ml.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    for e in sel.match_expressions.iter().flatten() {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        let ok = match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn server(name: &str, tenants: i64, max: Option<i64>) -> Candidate {
        Candidate {
            name: name.into(),
            labels: [("tier".to_string(), "standard".to_string())].into(),
            ready: true,
            not_ready_reason: None,
            cordoned: false,
            cordon_reason: None,
            default: false,
            max_tenants: max,
            max_storage: None,
            max_connections: None,
            tenants,
            storage_bytes: 0,
            connections: 0,
        }
    }

    fn by_selector(k: &str, v: &str) -> ServerChoice {
        ServerChoice {
            server: None,
            selector: Some(LabelSelector {
                match_labels: Some([(k.to_string(), v.to_string())].into()),
                match_expressions: None,
            }),
        }
    }

    #[test]
    fn least_utilised_wins_and_ties_break_by_tenants_then_name() {
        let cs = vec![
            server("c", 5, Some(10)),
            server("b", 2, Some(10)),
            server("a", 4, Some(20)),
        ];
        let p = by_selector("tier", "standard");
        // a: 0.2, b: 0.2, c: 0.5 → b (fewer tenants among equals).
        assert_eq!(choose(Some(&p), Need::default(), &cs).unwrap().name, "b");
        let cs = vec![
            server("c", 5, Some(10)),
            server("b", 4, Some(20)),
            server("a", 4, Some(20)),
        ];
        // a and b equal in both: a (name order).
        assert_eq!(choose(Some(&p), Need::default(), &cs).unwrap().name, "a");
        let cs = vec![server("b", 1, Some(10)), server("a", 4, Some(20))];
        assert_eq!(choose(Some(&p), Need::default(), &cs).unwrap().name, "b");
    }

    #[test]
    fn servers_without_limits_fill_evenly() {
        let p = by_selector("tier", "standard");
        let mut cs = vec![
            server("a", 0, None),
            server("b", 0, None),
            server("c", 0, None),
        ];
        for _ in 0..30 {
            let name = choose(Some(&p), Need::default(), &cs).unwrap().name.clone();
            cs.iter_mut().find(|c| c.name == name).unwrap().tenants += 1;
        }
        assert!(cs.iter().all(|c| c.tenants == 10), "{cs:?}");
    }

    #[test]
    fn every_dimension_counts() {
        let mut a = server("a", 0, None);
        a.max_storage = Some(100);
        a.storage_bytes = 90;
        let mut b = server("b", 5, Some(10));
        b.max_connections = Some(100);
        b.connections = 20;
        let p = by_selector("tier", "standard");
        let need = Need {
            connections: Some(10),
        };
        // a: 0.9 storage; b: max(0.5, 0.2) = 0.5.
        assert_eq!(
            choose(Some(&p), need, &[a.clone(), b.clone()])
                .unwrap()
                .name,
            "b"
        );
        // Connections: b has 20 + 90 > 100.
        let big = Need {
            connections: Some(90),
        };
        assert_eq!(
            choose(Some(&p), big, &[a.clone(), b.clone()]).unwrap().name,
            "a"
        );
        // A tenant without a connection limit does not fit a server that limits connections.
        let err = choose(Some(&p), Need::default(), &[b.clone()]).unwrap_err();
        assert!(
            err.refused[0].1.contains("no quotas.maxConnections"),
            "{err}"
        );
        // Full storage.
        a.storage_bytes = 100;
        let err = choose(Some(&p), need, &[a]).unwrap_err();
        assert!(err.refused[0].1.contains("maxStorage reached"), "{err}");
    }

    #[test]
    fn refusals_name_every_candidate() {
        let mut down = server("down", 0, None);
        down.ready = false;
        down.not_ready_reason = Some("connection refused".into());
        let mut cordoned = server("cordoned", 0, None);
        cordoned.cordoned = true;
        let full = server("full", 10, Some(10));
        let other = Candidate {
            labels: [("tier".to_string(), "gold".to_string())].into(),
            ..server("gold", 0, None)
        };
        let p = by_selector("tier", "standard");
        let err = choose(Some(&p), Need::default(), &[full, down, cordoned, other]).unwrap_err();
        assert_eq!(
            err.refused,
            vec![
                ("cordoned".to_string(), "cordoned".to_string()),
                (
                    "down".to_string(),
                    "not ready (connection refused)".to_string()
                ),
                ("full".to_string(), "maxTenants reached (10/10)".to_string()),
            ]
        );
        assert!(err.to_string().contains("full: maxTenants reached"));
    }

    #[test]
    fn by_name_by_default_and_zero_capacity() {
        let mut d = server("default", 0, None);
        d.default = true;
        let a = server("a", 0, None);
        let cs = vec![a.clone(), d.clone()];
        assert_eq!(choose(None, Need::default(), &cs).unwrap().name, "default");
        // Without a default server, any server.
        assert_eq!(
            choose(None, Need::default(), std::slice::from_ref(&a))
                .unwrap()
                .name,
            "a"
        );
        let named = ServerChoice {
            server: Some("a".into()),
            selector: None,
        };
        assert_eq!(
            choose(Some(&named), Need::default(), &cs).unwrap().name,
            "a"
        );
        let missing = ServerChoice {
            server: Some("zz".into()),
            selector: None,
        };
        let err = choose(Some(&missing), Need::default(), &cs).unwrap_err();
        assert!(err.refused.is_empty());
        assert!(err.to_string().contains("no database server matches"));
        let zero = server("z", 0, Some(0));
        assert!(choose(None, Need::default(), &[zero]).is_err());
    }

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> = [
            ("region".to_string(), "eu".to_string()),
            ("tier".to_string(), "gold".to_string()),
        ]
        .into();
        let expr = |key: &str, op: &str, values: &[&str]| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|s| s.to_string()).collect()),
            }]),
        };
        assert!(selector_matches(&LabelSelector::default(), &labels));
        assert!(selector_matches(
            &expr("region", "In", &["eu", "us"]),
            &labels
        ));
        assert!(!selector_matches(&expr("region", "In", &["us"]), &labels));
        assert!(selector_matches(&expr("region", "NotIn", &["us"]), &labels));
        assert!(!selector_matches(
            &expr("tier", "NotIn", &["gold"]),
            &labels
        ));
        assert!(selector_matches(&expr("tier", "Exists", &[]), &labels));
        assert!(!selector_matches(&expr("zone", "Exists", &[]), &labels));
        assert!(selector_matches(
            &expr("zone", "DoesNotExist", &[]),
            &labels
        ));
        assert!(!selector_matches(&expr("tier", "Bogus", &[]), &labels));
        let ml = LabelSelector {
            match_labels: Some([("tier".to_string(), "silver".to_string())].into()),
            match_expressions: None,
        };
        assert!(!selector_matches(&ml, &labels));
    }
}
