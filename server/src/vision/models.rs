//! Finding, checking and loading the ONNX model files.
//!
//! The files are prepared once by `python3 models/prepare.py` into the cache
//! directory (see [`super::models_dir`]). Each is checked against the SHA-256
//! recorded in the repository's `models/sources.json`, compiled into the
//! binary, before tract sees it: a missing, partial or different file is
//! refused with a message that names it and says what to run.

use std::path::Path;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

/// Lets each model run spread its matrix products over `threads` threads
/// (tract's multithreaded executor); 1, tract's default, keeps every run on
/// its caller's thread. It applies to the whole process, from the next run
/// on. `facegate bench` measures both.
pub fn set_inference_threads(threads: usize) {
    use tract_linalg::multithread::{Executor, set_default_executor};
    let executor = if threads > 1 {
        Executor::multithread_with_name(threads, "inference")
    } else {
        Executor::SingleThread
    };
    set_default_executor(executor);
}

/// The number of cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// The command that (re)creates the models directory.
pub const PREPARE_COMMAND: &str = "python3 models/prepare.py";

/// The record of every model file's expected SHA-256, kept in the repository.
const SOURCES_JSON: &str = include_str!("../../../models/sources.json");

/// The expected SHA-256 (lower-case hex) of the model file named `file_name`
/// (e.g. `facenet.onnx`), as recorded in `models/sources.json`.
pub fn expected_sha256(file_name: &str) -> anyhow::Result<String> {
    let sources: serde_json::Value =
        serde_json::from_str(SOURCES_JSON).context("models/sources.json is not valid JSON")?;
    find_sha256(&sources, file_name)
        .with_context(|| format!("models/sources.json records no SHA-256 for {file_name}"))
}

/// Looks through the record for an object that names `file_name` (as a key,
/// or in a `file`/`name`/`output`/`path` field) and carries a `sha256`.
fn find_sha256(value: &serde_json::Value, file_name: &str) -> Option<String> {
    use serde_json::Value;
    let names = |v: &Value| {
        ["file", "name", "output", "path", "filename"].iter().any(|k| {
            v.get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| Path::new(s).file_name().is_some_and(|n| n == file_name))
        })
    };
    let sha = |v: &Value| v.get("sha256").and_then(Value::as_str).map(str::to_ascii_lowercase);
    match value {
        Value::Object(map) => {
            if let Some(entry) = map.get(file_name) {
                if let Some(s) = entry.as_str().filter(|s| s.len() == 64) {
                    return Some(s.to_ascii_lowercase());
                }
                if let Some(s) = sha(entry) {
                    return Some(s);
                }
            }
            if names(value)
                && let Some(s) = sha(value)
            {
                return Some(s);
            }
            map.values().find_map(|v| find_sha256(v, file_name))
        }
        Value::Array(items) => items.iter().find_map(|v| find_sha256(v, file_name)),
        _ => None,
    }
}

/// Reads `file_name` from `dir` after checking that it exists and has the
/// recorded SHA-256.
pub fn read_verified(dir: &Path, file_name: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(file_name);
    if !path.is_file() {
        bail!(
            "model file {} is missing; run `{PREPARE_COMMAND}` to fetch and convert the models \
             (or set FACEGATE_CACHE_DIR to where they are)",
            path.display()
        );
    }
    let expected = expected_sha256(file_name)?;
    let bytes = std::fs::read(&path)
        .with_context(|| format!("cannot read model file {}", path.display()))?;
    let actual: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if actual != expected {
        bail!(
            "model file {} has SHA-256 {actual}, expected {expected} (partial download or a \
             different version); run `{PREPARE_COMMAND}` to recreate it",
            path.display()
        );
    }
    Ok(bytes)
}

/// Loads a verified ONNX file as a tract inference model (not yet typed).
pub fn load_onnx(dir: &Path, file_name: &str) -> anyhow::Result<InferenceModel> {
    load_onnx_with(dir, file_name, |_| ())
}

/// [`load_onnx`], letting `edit` rewrite the ONNX graph first (after the
/// checksum, which is of the file as prepared).
pub fn load_onnx_with(
    dir: &Path,
    file_name: &str,
    edit: impl FnOnce(&mut tract_onnx::pb::ModelProto),
) -> anyhow::Result<InferenceModel> {
    let bytes = read_verified(dir, file_name)?;
    let onnx = tract_onnx::onnx();
    let mut proto = onnx
        .proto_model_for_read(&mut bytes.as_slice())
        .with_context(|| format!("{file_name} is not a readable ONNX file"))?;
    edit(&mut proto);
    onnx.model_for_proto_model(&proto).with_context(|| format!("tract cannot load {file_name}"))
}

/// An optimised plan, runnable from many threads at once.
pub type Plan = Arc<TypedRunnableModel>;

/// Fixes the model's first input to `shape` (f32), optimises it and makes it
/// runnable.
pub fn plan_for_shape(model: &InferenceModel, shape: &[usize]) -> anyhow::Result<Plan> {
    let plan = model
        .clone()
        .with_input_fact(0, f32::fact(shape).into())?
        .into_optimized()?
        .into_runnable()?;
    Ok(plan)
}

/// Copies an output tensor's values out as `f32`.
pub fn output_f32(value: &TValue) -> anyhow::Result<Vec<f32>> {
    let view = value.to_plain_array_view::<f32>()?;
    Ok(view.iter().copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_found_in_the_common_record_shapes() {
        let h = "a".repeat(64);
        let by_key: serde_json::Value = serde_json::json!({ "facenet.onnx": h });
        let nested = serde_json::json!({ "models": { "facenet.onnx": { "sha256": h } } });
        let listed = serde_json::json!({ "models": [ { "file": "x.onnx", "sha256": "b" },
                                                      { "file": "facenet.onnx", "sha256": h } ] });
        for v in [by_key, nested, listed] {
            assert_eq!(find_sha256(&v, "facenet.onnx").as_deref(), Some(h.as_str()), "{v}");
        }
    }

    #[test]
    fn a_missing_model_names_the_file_and_the_command() {
        let err = read_verified(Path::new("/nonexistent-facegate"), "facenet.onnx").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("facenet.onnx") && msg.contains(PREPARE_COMMAND), "{msg}");
    }

    #[test]
    fn a_model_with_the_wrong_checksum_is_refused() {
        let dir = std::env::temp_dir().join(format!("facegate-models-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("facenet.onnx"), b"half a download").unwrap();
        let err = read_verified(&dir, "facenet.onnx").unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("SHA-256") && err.contains(PREPARE_COMMAND), "{err}");
    }
}
