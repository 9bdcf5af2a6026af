//! `crds/` and the Helm chart's CRDs must be exactly what `tenantdb crd` generates from the Rust
//! types. Regenerate with `cargo run -- crd --out-dir crds && cp crds/*.yaml charts/tenantdb/crds/`
//! (or run this test with `TENANTDB_UPDATE_CRDS=1`).

use std::path::Path;

#[test]
fn crds_match_the_rust_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var_os("TENANTDB_UPDATE_CRDS").is_some();
    let mut drift = Vec::new();
    for (file, crd) in tenantdb::crd::all_crds() {
        let want = tenantdb::crd::render_yaml(&crd).expect("render");
        for dir in ["crds", "charts/tenantdb/crds"] {
            let path = root.join(dir).join(file);
            if update {
                std::fs::create_dir_all(root.join(dir)).unwrap();
                std::fs::write(&path, &want).unwrap();
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(have) if have == want => {}
                Ok(_) => drift.push(format!("{} differs from the Rust types", path.display())),
                Err(e) => drift.push(format!("{}: {e}", path.display())),
            }
        }
    }
    assert!(
        drift.is_empty(),
        "CRD drift (run `TENANTDB_UPDATE_CRDS=1 cargo test --test crd_drift`):\n{}",
        drift.join("\n")
    );
}

#[test]
fn every_schema_property_is_documented() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, sub) in props {
                let p = format!("{path}.{name}");
                if sub
                    .get("description")
                    .and_then(|d| d.as_str())
                    .is_none_or(str::is_empty)
                {
                    missing.push(p.clone());
                }
                walk(&p, sub, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for (_, crd) in tenantdb::crd::all_crds() {
        let v = serde_json::to_value(&crd).unwrap();
        for version in v["spec"]["versions"].as_array().unwrap() {
            let schema = &version["schema"]["openAPIV3Schema"];
            for top in ["spec", "status"] {
                walk(top, &schema["properties"][top], &mut missing);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "fields without doc comments (kubectl explain): {missing:?}"
    );
}
