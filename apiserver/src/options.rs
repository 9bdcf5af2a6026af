//! Validation of write options (`PatchOptions`/`CreateOptions`/`UpdateOptions` query parameters),
//! as kube-apiserver's `ValidatePatchOptions` and `ValidateFieldManager` do it. A leaf: used by
//! the write path for every patch, independent of how the patch is then applied.

use serde_json::json;

use crate::error::{ApiError, FieldError, Target};
use crate::store::{PatchKind, WriteOpts};

/// `ValidatePatchOptions`: `force` only for apply, `fieldManager` required for apply, at most
/// 128 printable characters.
pub(crate) fn validate_patch_options(kind: PatchKind, opts: &WriteOpts) -> Result<(), ApiError> {
    let mut errs = Vec::new();
    if kind != PatchKind::Apply {
        if opts.force.is_some() {
            errs.push(FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            ));
        }
    } else if opts.field_manager.as_deref().is_none_or(str::is_empty) {
        errs.push(FieldError {
            reason: "FieldValueRequired",
            field: "fieldManager".into(),
            value: None,
            detail: "is required for apply patch".into(),
        });
    }
    errs.extend(validate_field_manager(opts));
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "PatchOptions.meta.k8s.io",
            "",
            &Target::default(),
            &errs,
        ))
    }
}

/// `ValidateFieldManager`.
pub(crate) fn validate_field_manager(opts: &WriteOpts) -> Vec<FieldError> {
    let fm = opts.field_manager.as_deref().unwrap_or("");
    let mut errs = Vec::new();
    if fm.len() > 128 {
        errs.push(FieldError::too_long("fieldManager", 128));
    }
    for (i, c) in fm.chars().enumerate() {
        if c.is_control() {
            errs.push(FieldError::invalid(
                "fieldManager",
                &json!(fm),
                format!("invalid character U+{:04X} (at position {i})", c as u32),
            ));
        }
    }
    errs
}
