#![expect(clippy::print_stderr, reason = "a build tool reports its progress on stderr")]
//! FaceGate's build steps, run as `cargo xtask <task>`.
//!
//! `site` builds the browser bundle and lays out the site directory that the
//! server serves. It replaces cargo-leptos for builds: it uses only tools
//! installed from the package registries (wasm-bindgen-cli at the exact
//! version the project pins, and optionally binaryen's wasm-opt from npm) and
//! never downloads anything itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const OUTPUT_NAME: &str = "facegate";
const CHECK_IN_OUTPUT_NAME: &str = "facegate-checkin";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

const USAGE: &str = "\
usage: cargo xtask site [--release] [--out DIR]

  site       build the WASM bundle and lay out the site directory
  --release  optimise the bundle for size (profile wasm-release, then wasm-opt)
  --out DIR  where to lay out the site (default: target/site)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let Some((task, rest)) = args.split_first() else {
        return Err(USAGE.to_owned());
    };
    match task.as_str() {
        "site" => {
            let options = SiteOptions::parse(rest)?;
            build_site(&options)
        }
        "-h" | "--help" | "help" => {
            eprintln!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown task {other:?}\n{USAGE}")),
    }
}

struct SiteOptions {
    release: bool,
    out: PathBuf,
}

impl SiteOptions {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = SiteOptions { release: false, out: workspace_root().join("target/site") };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--release" => options.release = true,
                "--out" => {
                    let dir = args.next().ok_or("--out needs a folder")?;
                    options.out = PathBuf::from(dir);
                }
                other => return Err(format!("unknown option {other:?}\n{USAGE}")),
            }
        }
        Ok(options)
    }
}

fn workspace_root() -> PathBuf {
    // xtask's manifest sits one folder below the workspace root. `cargo run` says
    // where it is now; the path compiled in is stale once the checkout has moved
    // and cargo reuses a build of xtask made elsewhere.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// One browser bundle: a build of the `frontend` crate.
struct Bundle {
    /// File name stem of its JS glue and WASM (and, for the main bundle, the CSS).
    name: &'static str,
    /// Extra cargo arguments that choose its pages.
    cargo_args: &'static [&'static str],
    /// The file that tells the server (and Leptos's hydration script) its hashes.
    hash_file: &'static str,
}

/// Every page, and the check-in page alone: the one a phone opens first
/// hydrates with a bundle of little more than half the size.
const BUNDLES: [Bundle; 2] = [
    Bundle { name: OUTPUT_NAME, cargo_args: &[], hash_file: "hash.txt" },
    Bundle {
        name: CHECK_IN_OUTPUT_NAME,
        cargo_args: &["--no-default-features"],
        hash_file: "hash-checkin.txt",
    },
];

fn build_site(options: &SiteOptions) -> Result<(), String> {
    let root = workspace_root();
    let profile = if options.release { "wasm-release" } else { "dev" };
    let profile_dir = if options.release { "wasm-release" } else { "debug" };
    let out_dir = root.join("target").join(WASM_TARGET).join(profile_dir);

    // Both builds write frontend.wasm: each is copied aside before the next.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut wasm_files = Vec::new();
    for bundle in &BUNDLES {
        run_tool(
            Command::new(&cargo)
                .current_dir(&root)
                .args(["build", "--package", "frontend", "--lib", "--target", WASM_TARGET])
                .args(["--profile", profile])
                .args(bundle.cargo_args),
        )?;
        let built = out_dir.join("frontend.wasm");
        let kept = out_dir.join(format!("{}.wasm", bundle.name));
        fs::copy(&built, &kept).map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
        wasm_files.push(kept);
    }

    // wasm-opt takes half a minute: skip the rest when nothing it reads changed.
    let inputs = format!("{profile} {:016x}", inputs_hash(&root, &wasm_files)?);
    let stamp = options.out.join(".inputs");
    if fs::read_to_string(&stamp).is_ok_and(|previous| previous == inputs) {
        eprintln!("xtask: site in {} is up to date", options.out.display());
        return Ok(());
    }

    let staging = options.out.with_extension("staging");
    remove_dir(&staging)?;
    let pkg = staging.join("pkg");
    fs::create_dir_all(&pkg).map_err(|e| format!("cannot create {}: {e}", pkg.display()))?;
    copy_dir(&root.join("public"), &staging)?;

    let mut precache = Vec::new();
    let mut sizes = Vec::new();
    for (bundle, wasm) in BUNDLES.iter().zip(&wasm_files) {
        run_tool(
            Command::new(find_tool("wasm-bindgen").ok_or(
                "wasm-bindgen is not installed: run `cargo install wasm-bindgen-cli --version 0.2.130`",
            )?)
            .args(["--target", "web", "--no-typescript", "--out-name", bundle.name, "--out-dir"])
            .arg(&pkg)
            .arg(wasm),
        )?;
        let bindgen_wasm = pkg.join(format!("{}_bg.wasm", bundle.name));
        if options.release {
            optimise_wasm(&bindgen_wasm)?;
        }
        let mut files = vec![
            ("js", format!("{}.js", bundle.name)),
            ("wasm", format!("{}_bg.wasm", bundle.name)),
        ];
        if bundle.name == OUTPUT_NAME {
            let css = bundle_css(&root.join("style"))?;
            fs::write(pkg.join(format!("{OUTPUT_NAME}.css")), css)
                .map_err(|e| format!("cannot write the stylesheet: {e}"))?;
            files.push(("css", format!("{OUTPUT_NAME}.css")));
        }
        let mut hash_txt = String::new();
        for (kind, file) in files {
            let path = pkg.join(&file);
            let bytes =
                fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let hash = format!("{:016x}", fnv1a(&bytes));
            let hashed = format!("{}.{hash}.{kind}", bundle.name);
            fs::rename(&path, pkg.join(&hashed))
                .map_err(|e| format!("cannot rename {}: {e}", path.display()))?;
            if kind == "wasm" {
                sizes.push(format!("{} {} KiB", bundle.name, bytes.len() / 1024));
            }
            precache.push(format!("/pkg/{hashed}"));
            hash_txt.push_str(&format!("{kind}: {hash}\n"));
        }
        fs::write(staging.join(bundle.hash_file), hash_txt)
            .map_err(|e| format!("cannot write {}: {e}", bundle.hash_file))?;
    }
    write_service_worker(&staging, &precache)?;
    fs::write(staging.join(".inputs"), &inputs)
        .map_err(|e| format!("cannot write the build stamp: {e}"))?;

    // Swap the finished site in, so a running server never sees a half-built one.
    remove_dir(&options.out)?;
    fs::rename(&staging, &options.out)
        .map_err(|e| format!("cannot move the site to {}: {e}", options.out.display()))?;
    eprintln!("xtask: site laid out in {} (WASM: {})", options.out.display(), sizes.join(", "));
    Ok(())
}

/// A hash of everything the site is made from: the compiled WASM and the
/// files under `public/` and `style/`.
fn inputs_hash(root: &Path, wasm: &[PathBuf]) -> Result<u64, String> {
    let mut files = wasm.to_vec();
    for dir in ["public", "style"] {
        collect_files(&root.join(dir), &mut files)?;
    }
    files.sort();
    let mut all = Vec::new();
    for file in files {
        all.extend_from_slice(file.to_string_lossy().as_bytes());
        all.extend(fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?);
    }
    Ok(fnv1a(&all))
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    for entry in fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?.path();
        if path.is_dir() {
            collect_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// Fills the service worker's build id and precache list (the hashed bundles).
fn write_service_worker(site: &Path, bundles: &[String]) -> Result<(), String> {
    let path = site.join("sw.js");
    let template =
        fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let quoted: Vec<String> = bundles.iter().map(|file| format!("\"{file}\"")).collect();
    let build = format!("{:016x}", fnv1a(quoted.concat().as_bytes()));
    let worker = template
        .replace("__FACEGATE_BUILD__", &build)
        .replace("__FACEGATE_BUNDLES__", &format!("[{}]", quoted.join(", ")));
    fs::write(&path, worker).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Runs binaryen's wasm-opt when it is installed (the npm package `binaryen`,
/// set up by the project's setup script); the bundle works without it, only larger.
fn optimise_wasm(wasm: &Path) -> Result<(), String> {
    let Some(wasm_opt) = find_tool("wasm-opt") else {
        eprintln!("xtask: wasm-opt not found; the bundle is not size-optimised");
        return Ok(());
    };
    let optimised = wasm.with_extension("opt.wasm");
    run_tool(
        Command::new(wasm_opt)
            .args(["-Oz", "--enable-bulk-memory", "--enable-nontrapping-float-to-int"])
            .args(["--enable-sign-ext", "--enable-mutable-globals", "--enable-reference-types"])
            .arg(wasm)
            .arg("-o")
            .arg(&optimised),
    )?;
    fs::rename(&optimised, wasm).map_err(|e| format!("cannot replace {}: {e}", wasm.display()))
}

/// Looks for a tool on PATH, then in the end-to-end tests' npm folder.
fn find_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(name)).collect::<Vec<_>>()
    });
    let npm = workspace_root().join("end2end/node_modules/.bin").join(name);
    on_path.chain(std::iter::once(npm)).find(|candidate| candidate.is_file())
}

fn run_tool(command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{command:?} failed ({status})")) }
}

fn bundle_css(dir: &Path) -> Result<String, String> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "css"))
        .collect();
    files.sort();
    let mut css = String::new();
    for file in files {
        let text = fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        css.push_str(&text);
        css.push('\n');
    }
    Ok(css)
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    for entry in fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))? {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)
                .map_err(|e| format!("cannot copy {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<(), String> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", dir.display())),
    }
}

/// 64-bit FNV-1a: a stable content hash for cache-busting file names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
