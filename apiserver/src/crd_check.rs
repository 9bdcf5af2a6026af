//! What kube-apiserver checks when a CustomResourceDefinition is created or updated: a structural
//! schema, CEL rules that compile (with `oldSelf` only where old values can be correlated) and
//! whose estimated cost fits the budget (`kube-cel`'s estimator), and defaults that are valid
//! against their schema (no unknown fields, no `null` for non-nullable, rules pass).

use serde_json::Value;

use crate::cel;
use crate::error::FieldError;
use crate::validation;

/// Per-rule budget (`PerCallLimit`, the budget kube-cel estimates against).
const RULE_BUDGET: f64 = 1_000_000.0;
/// `StaticEstimatedCRDCostLimit`: all rules of a CRD together.
const CRD_BUDGET: f64 = 100_000_000.0;

const VALUE_VALIDATION_FORBIDDEN: &[&str] = &[
    "type",
    "default",
    "nullable",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
    "description",
];

struct Walk {
    errs: Vec<FieldError>,
    total_cost: f64,
}

fn flag(s: &Value, k: &str) -> bool {
    s.get(k).and_then(Value::as_bool) == Some(true)
}

/// Check every version's `openAPIV3Schema` of a CRD object.
pub fn check(crd: &Value) -> Vec<FieldError> {
    let mut w = Walk {
        errs: Vec::new(),
        total_cost: 0.0,
    };
    for (i, v) in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let base = format!("spec.versions[{i}].schema.openAPIV3Schema");
        let Some(schema) = v.pointer("/schema/openAPIV3Schema") else {
            continue;
        };
        match schema.get("type").and_then(Value::as_str) {
            None => w.errs.push(FieldError {
                reason: "FieldValueRequired",
                field: format!("{base}.type"),
                value: None,
                detail: "must not be empty at the root".into(),
            }),
            Some("object") => {}
            Some(other) => w.errs.push(FieldError::invalid(
                &format!("{base}.type"),
                &Value::String(other.into()),
                "must be object at the root",
            )),
        }
        if let Some(meta) = schema.pointer("/properties/metadata") {
            let allowed = meta
                .as_object()
                .map(|m| {
                    m.iter().all(|(k, x)| match k.as_str() {
                        "type" => x == "object",
                        "properties" => x
                            .as_object()
                            .is_some_and(|p| p.keys().all(|n| n == "name" || n == "generateName")),
                        _ => false,
                    })
                })
                .unwrap_or(false);
            if !allowed {
                w.errs.push(FieldError::forbidden(
                    &format!("{base}.properties[metadata]"),
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ));
            }
        }
        w.node(schema, &base, true, true, false);
    }
    if w.total_cost > CRD_BUDGET {
        w.errs.push(FieldError::forbidden(
            "spec.validation.openAPIV3Schema",
            format!(
                "total CRD cost exceeds budget by factor of {:.1}x (try simplifying the rule(s), or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)",
                w.total_cost / CRD_BUDGET
            ),
        ));
    }
    w.errs
}

impl Walk {
    /// `correlatable`: old values can be found for this node (not below an atomic list's items).
    fn node(
        &mut self,
        s: &Value,
        path: &str,
        root: bool,
        correlatable: bool,
        in_value_validation: bool,
    ) {
        let Some(m) = s.as_object() else {
            return;
        };
        if m.contains_key("$ref") {
            self.errs.push(FieldError::forbidden(
                &format!("{path}.$ref"),
                "$ref is not supported",
            ));
        }
        let int_or_string = flag(s, "x-kubernetes-int-or-string");
        let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
        let ty = s.get("type").and_then(Value::as_str);
        if !root && !in_value_validation && ty.is_none() && !int_or_string && !preserve {
            self.errs.push(FieldError {
                reason: "FieldValueRequired",
                field: format!("{path}.type"),
                value: None,
                detail: "must not be empty for specified object fields".into(),
            });
        }
        if s.get("properties").is_some()
            && s.get("additionalProperties")
                .is_some_and(|a| a.is_object() || a == true)
        {
            self.errs.push(FieldError::forbidden(
                &format!("{path}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if s.get("additionalProperties") == Some(&Value::Bool(false)) {
            self.errs.push(FieldError::forbidden(
                &format!("{path}.additionalProperties"),
                "additionalProperties cannot be set to false",
            ));
        }
        if flag(s, "uniqueItems") {
            self.errs.push(FieldError::forbidden(
                &format!("{path}.uniqueItems"),
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            ));
        }
        let list_type = s.get("x-kubernetes-list-type").and_then(Value::as_str);
        let keys: Vec<&str> = s
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if s.get("x-kubernetes-list-map-keys").is_some() && list_type != Some("map") {
            self.errs.push(FieldError::forbidden(
                &format!("{path}.x-kubernetes-list-map-keys"),
                "can only be set if x-kubernetes-list-type is map",
            ));
        }
        if list_type == Some("map") {
            if keys.is_empty() {
                self.errs.push(FieldError {
                    reason: "FieldValueRequired",
                    field: format!("{path}.x-kubernetes-list-map-keys"),
                    value: None,
                    detail: "must not be empty if x-kubernetes-list-type is map".into(),
                });
            }
            let items = s.get("items");
            if items.and_then(|i| i.get("type")).and_then(Value::as_str) != Some("object") {
                self.errs.push(FieldError::invalid(
                    &format!("{path}.items.type"),
                    items.and_then(|i| i.get("type")).unwrap_or(&Value::Null),
                    "must be object if parent array's x-kubernetes-list-type is map",
                ));
            }
            let required: Vec<&str> = items
                .and_then(|i| i.get("required"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (j, k) in keys.iter().enumerate() {
                let prop = items.and_then(|i| i.pointer(&format!("/properties/{k}")));
                match prop {
                    None => self.errs.push(FieldError::invalid(
                        &format!("{path}.x-kubernetes-list-map-keys[{j}]"),
                        &Value::String(k.to_string()),
                        "entries must all be names of item properties",
                    )),
                    Some(p) => {
                        if matches!(
                            p.get("type").and_then(Value::as_str),
                            Some("object" | "array")
                        ) {
                            self.errs.push(FieldError::invalid(
                                &format!("{path}.x-kubernetes-list-map-keys[{j}]"),
                                &Value::String(k.to_string()),
                                "must be a scalar property",
                            ));
                        }
                        if !required.contains(k) && p.get("default").is_none() {
                            self.errs.push(FieldError::invalid(
                                &format!("{path}.items.properties[{k}]"),
                                &Value::String(k.to_string()),
                                "must be required or have a default value as a key of an x-kubernetes-list-type=map list",
                            ));
                        }
                    }
                }
            }
        }
        if list_type == Some("set")
            && let Some(items) = s.get("items")
            && matches!(
                items.get("type").and_then(Value::as_str),
                Some("object" | "array")
            )
            && items.get("x-kubernetes-map-type").and_then(Value::as_str) != Some("atomic")
            && items.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("atomic")
        {
            self.errs.push(FieldError::invalid(
                &format!("{path}.items"),
                &Value::String(
                    items
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                ),
                "must be atomic as item of a list with x-kubernetes-list-type=set",
            ));
        }
        if let Some(d) = s.get("default") {
            self.default(d, s, path);
        }
        self.rules(s, path, correlatable);
        if let Some(Value::Object(props)) = s.get("properties") {
            for (k, p) in props {
                self.node(
                    p,
                    &format!("{path}.properties[{k}]"),
                    false,
                    correlatable,
                    in_value_validation,
                );
            }
        }
        if let Some(a) = s.get("additionalProperties").filter(|a| a.is_object()) {
            self.node(
                a,
                &format!("{path}.additionalProperties"),
                false,
                correlatable,
                in_value_validation,
            );
        }
        if let Some(items) = s.get("items") {
            let keyed = matches!(list_type, Some("map" | "set"));
            self.node(
                items,
                &format!("{path}.items"),
                false,
                correlatable && keyed,
                in_value_validation,
            );
        }
        for k in ["allOf", "anyOf", "oneOf"] {
            for (j, b) in s
                .get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                self.value_validation(b, &format!("{path}.{k}[{j}]"), int_or_string);
            }
        }
        if let Some(not) = s.get("not") {
            self.value_validation(not, &format!("{path}.not"), false);
        }
    }

    /// Branches of allOf/anyOf/oneOf/not only restrict values: no structure in them (except the
    /// `type: integer` / `type: string` branches of an int-or-string field).
    fn value_validation(&mut self, s: &Value, path: &str, int_or_string: bool) {
        let Some(m) = s.as_object() else {
            return;
        };
        for k in VALUE_VALIDATION_FORBIDDEN {
            let allowed = *k == "type"
                && int_or_string
                && matches!(
                    s.get("type").and_then(Value::as_str),
                    Some("integer" | "string")
                );
            if m.contains_key(*k) && !allowed {
                self.errs.push(FieldError::forbidden(
                    &format!("{path}.{k}"),
                    "must be empty to be structural",
                ));
            }
        }
        if let Some(Value::Object(props)) = s.get("properties") {
            for (k, p) in props {
                self.value_validation(p, &format!("{path}.properties[{k}]"), false);
            }
        }
        if let Some(items) = s.get("items") {
            self.value_validation(items, &format!("{path}.items"), false);
        }
    }

    fn default(&mut self, d: &Value, s: &Value, path: &str) {
        let field = format!("{path}.default");
        if d.is_null() {
            if !flag(s, "nullable") {
                self.errs.push(FieldError::invalid(
                    &field,
                    d,
                    "must not be null for a non-nullable field",
                ));
            }
            return;
        }
        let mut v = d.clone();
        let mut pruned = Vec::new();
        validation::prune_value(&mut v, s, &mut pruned);
        if !pruned.is_empty() {
            self.errs.push(FieldError::invalid(
                &field,
                d,
                format!("must not have unknown fields: {}", pruned.join(", ")),
            ));
        }
        for e in validation::validate_value(&v, s) {
            let inner = if e.field.is_empty() {
                field.clone()
            } else {
                format!("{field}.{}", e.field)
            };
            self.errs.push(FieldError { field: inner, ..e });
        }
        for e in cel::validate_cel(&v, s, None) {
            self.errs.push(FieldError {
                field: field.clone(),
                ..e
            });
        }
    }

    fn rules(&mut self, s: &Value, path: &str, correlatable: bool) {
        let Some(rules) = s.get("x-kubernetes-validations").and_then(Value::as_array) else {
            return;
        };
        let node = cel::node_only(s);
        let compiled = kube_cel::compile_schema(&node);
        for (j, r) in rules.iter().enumerate() {
            let field = format!("{path}.x-kubernetes-validations[{j}]");
            let rule = r.get("rule").and_then(Value::as_str).unwrap_or("");
            if rule.trim().is_empty() {
                self.errs
                    .push(FieldError::required(&format!("{field}.rule")));
                continue;
            }
            if let Some(reason) = r.get("reason").and_then(Value::as_str)
                && !matches!(
                    reason,
                    "FieldValueInvalid"
                        | "FieldValueForbidden"
                        | "FieldValueRequired"
                        | "FieldValueDuplicate"
                )
            {
                self.errs.push(FieldError::not_supported(
                    &format!("{field}.reason"),
                    &Value::String(reason.into()),
                    &[
                        "FieldValueDuplicate",
                        "FieldValueForbidden",
                        "FieldValueInvalid",
                        "FieldValueRequired",
                    ]
                    .map(|x| Value::String(x.into())),
                ));
            }
            if cel::uses_old_self(rule) && !correlatable {
                self.errs.push(FieldError::invalid(
                    &format!("{field}.rule"),
                    &Value::String(rule.into()),
                    format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {path}"),
                ));
            }
        }
        for e in compiled.compilation_errors() {
            let text = e.to_string();
            let j = rules
                .iter()
                .position(|r| {
                    r.get("rule")
                        .and_then(Value::as_str)
                        .is_some_and(|x| text.contains(x))
                })
                .unwrap_or(0);
            self.errs.push(FieldError::invalid(
                &format!("{path}.x-kubernetes-validations[{j}].rule"),
                &rules[j],
                format!("compilation failed: {text}"),
            ));
        }
        for (j, r) in rules.iter().enumerate() {
            let rule = r.get("rule").and_then(Value::as_str).unwrap_or("");
            for w in kube_cel::estimate_rule_cost(rule, &compiled) {
                if w.kind != kube_cel::WarningKind::CostExceeded {
                    continue;
                }
                let cost: f64 = w
                    .message
                    .split_whitespace()
                    .nth(2)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(RULE_BUDGET * 1.1);
                self.total_cost += cost;
                self.errs.push(FieldError::forbidden(
                    &format!("{path}.x-kubernetes-validations[{j}].rule"),
                    format!(
                        "estimated rule cost exceeds budget by factor of {:.1}x (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)",
                        cost / RULE_BUDGET
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(schema: Value) -> Value {
        json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}]}})
    }

    fn render(e: &[FieldError]) -> Vec<String> {
        e.iter().map(FieldError::render).collect()
    }

    const P: &str = "spec.versions[0].schema.openAPIV3Schema";

    #[test]
    fn structural_schemas() {
        assert!(check(&crd(json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"a": {"type": "string"}, "b": {"x-kubernetes-int-or-string": true},
                           "c": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}))).is_empty());
        let e = render(&check(&crd(json!({"type": "object", "properties": {
            "spec": {"properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}},
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            "list": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
            "keys": {"type": "array", "x-kubernetes-list-map-keys": ["k"], "items": {"type": "string"}},
            "any": {"type": "string", "anyOf": [{"type": "string"}]}}}))));
        for want in [
            format!(
                "{P}.properties[spec].type: Required value: must not be empty for specified object fields"
            ),
            format!(
                "{P}.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
            ),
            format!(
                "{P}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
            ),
            format!(
                "{P}.properties[list].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            ),
            format!(
                "{P}.properties[keys].x-kubernetes-list-map-keys: Forbidden: can only be set if x-kubernetes-list-type is map"
            ),
            format!("{P}.properties[any].anyOf[0].type: Forbidden: must be empty to be structural"),
        ] {
            assert!(e.contains(&want), "missing {want:?} in {e:#?}");
        }
    }

    #[test]
    fn cel_rules_and_defaults() {
        let e = render(&check(&crd(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.a ==="}],
            "properties": {
                "a": {"type": "string", "default": 5},
                "b": {"type": "string", "enum": ["x"], "default": "y"},
                "c": {"type": "object", "properties": {"d": {"type": "string"}}, "default": {"d": "ok", "e": 1}},
                "tags": {"type": "array", "items": {"type": "string",
                    "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}},
                "all": {"type": "array", "items": {"type": "string"},
                    "x-kubernetes-validations": [{"rule": "self.all(x, self.all(y, x.contains(y)))"}]}}}}}),
        )));
        let has = |s: &str| e.iter().any(|x| x.contains(s));
        assert!(
            has(&format!(
                "{P}.properties[spec].x-kubernetes-validations[0].rule: Invalid value"
            )) && has("compilation failed"),
            "{e:#?}"
        );
        assert!(
            has(&format!(
                "{P}.properties[spec].properties[a].default: Invalid value: 5: "
            )),
            "{e:#?}"
        );
        assert!(
            has(&format!(
                "{P}.properties[spec].properties[b].default: Unsupported value: \"y\""
            )),
            "{e:#?}"
        );
        assert!(has("must not have unknown fields: e"), "{e:#?}");
        assert!(
            has("oldSelf cannot be used on the uncorrelatable portion of the schema"),
            "{e:#?}"
        );
        assert!(
            has("estimated rule cost exceeds budget by factor of"),
            "{e:#?}"
        );
    }
}
