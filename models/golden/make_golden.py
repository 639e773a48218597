"""Make models/golden/facenet_golden.json: FaceNet embeddings of fixed crops,
computed with the ORIGINAL Keras model (TensorFlow), for the Rust tests.

Not part of setup. It documents how the golden file was made; rerun it in a
throwaway virtualenv, e.g.

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu h5py pillow numpy onnxruntime
    python3 models/prepare.py                       # fills the cache
    /tmp/tfvenv/bin/python models/golden/make_golden.py [--cache DIR]

Loading the Keras 2.1.2 model in current TensorFlow/Keras: every Lambda
layer of the saved config (the residual "ScaleSum", whose marshalled Python
bytecode cannot be loaded) is replaced by a registered layer computing
inputs[0] + inputs[1] * scale with the `scale` from the Lambda's
`arguments`; then Model.from_config and load_weights(by_name=True). The
script checks that every weight array of the file was loaded unchanged.

Crop procedure (decoder-independent for the "exact" crops, which come from
the data set's one real PNG file):
  1. decode the file to 8-bit RGB (the PNG is RGBA with alpha 255
     everywhere: drop alpha);
  2. take the square rect x..x+size-1, y..y+size-1 (integer pixels, inside
     the image);
  3. resample to 160x160 by an integer factor k:
       mode "replicate" (size*k == 160): out[r][c] = rect[r // k][c // k];
       mode "box"       (size == 160*k): out[r][c] = (sum of the k*k block of
                        u8 values, an exact integer) / (k*k) in float32
                        (k == 1 is a plain 160x160 crop);
  4. per-image standardisation over all N = 76800 values (RGB, HWC order),
     in float64: mean = sum/N, std = sqrt(sum((v-mean)^2)/N) (population),
     x = (v - mean) / max(std, 1/sqrt(N)), rounded to float32;
  5. input tensor [1,160,160,3] NHWC.
The "decoder_dependent" crops come from JPEG files of the other persons; for
them `rect_rgb_sha256` is the SHA-256 of the rect's RGB8 bytes (row-major,
RGB) as decoded here (Pillow / libjpeg-turbo): compare strictly only when
your decoder gives the same bytes.
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from PIL import Image, features

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "facenet_golden.json")
sys.path.insert(0, os.path.dirname(HERE))
import prepare  # noqa: E402  (stdlib-only helpers: cache dir, sources)

PNG = "train/ben_afflek/httpwwwrumenewscomwpcontentuploadsbenafflekxpng.jpg"
# (id, path relative to data/faces5, x, y, size, mode, k, exact)
CROPS = [
    ("png_face_x2", PNG, 53, 8, 80, "replicate", 2, True),
    ("png_face_x4", PNG, 73, 28, 40, "replicate", 4, True),
    ("png_face_x5", PNG, 77, 32, 32, "replicate", 5, True),
    ("png_upper_body_x1", PNG, 13, 0, 160, "box", 1, True),
    ("jpeg_elton_john", "val/elton_john/httpcdnlyricssongonlyricsnetwpcontentuploadsEltonJohnDiscographyCDreleasesjpg.jpg",
     72, 71, 160, "box", 1, False),
    ("jpeg_jerry_seinfeld", "val/jerry_seinfeld/httpaurorasblogcomwpcontentuploadsjerryseinfeldpublicityshotjpg.jpg",
     0, 9, 160, "box", 1, False),
    ("jpeg_madonna", "val/madonna/httpcdncdnjustjaredcomwpcontentuploadsheadlinesmadonnatalksparisattackstearsjpg.jpg",
     66, 30, 160, "box", 1, False),
    ("jpeg_mindy_kaling", "val/mindy_kaling/httpcdnpastemagazinecomwwwarticlesmindyprojectjpg.jpg",
     76, 8, 160, "box", 1, False),
]


def decode_rgb8(data):
    im = Image.open(io.BytesIO(data))
    fmt = im.format
    if im.mode == "RGBA":
        a = np.asarray(im)
        if a[..., 3].min() != 255:
            raise SystemExit("alpha is not opaque")
        return a[..., :3].copy(), fmt
    return np.asarray(im.convert("RGB")), fmt


def crop160(rgb, x, y, size, mode, k):
    h, w, _ = rgb.shape
    if x < 0 or y < 0 or x + size > w or y + size > h:
        raise SystemExit("rect outside image")
    rect = rgb[y:y + size, x:x + size]
    if mode == "replicate":
        assert size * k == 160
        out = np.repeat(np.repeat(rect, k, axis=0), k, axis=1).astype(np.float32)
    elif mode == "box":
        assert size == 160 * k
        s = rect.astype(np.int64).reshape(160, k, 160, k, 3).sum(axis=(1, 3))
        out = s.astype(np.float32) / np.float32(k * k)
    else:
        raise SystemExit(mode)
    return rect, out


def standardise(v):
    d = v.astype(np.float64)
    n = d.size
    mean = d.sum() / n
    std = np.sqrt(((d - mean) ** 2).sum() / n)
    adj = max(std, 1.0 / np.sqrt(n))
    return ((d - mean) / adj).astype(np.float32), mean, std


def load_keras(h5_path):
    import h5py
    import keras

    @keras.saving.register_keras_serializable(package="facegate")
    class ScaleSum(keras.layers.Layer):
        def __init__(self, scale=1.0, **kw):
            super().__init__(**kw)
            self.scale = float(scale)

        def call(self, inputs):
            return inputs[0] + inputs[1] * self.scale

        def get_config(self):
            c = super().get_config()
            c["scale"] = self.scale
            return c

    with h5py.File(h5_path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        for l in cfg["config"]["layers"]:
            if l["class_name"] == "Lambda":
                l["class_name"] = "ScaleSum"
                l["config"] = {"name": l["config"]["name"], "trainable": False,
                               "scale": l["config"]["arguments"]["scale"]}
        model = keras.Model.from_config(cfg["config"], custom_objects={"ScaleSum": ScaleSum})
        model.load_weights(h5_path, by_name=True)
        mw = f["model_weights"]
        checked = 0
        for layer in model.layers:
            if layer.name not in mw:
                continue
            g = mw[layer.name]
            names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
            ws = layer.get_weights()
            if len(ws) != len(names):
                raise SystemExit("weights of %s not loaded" % layer.name)
            for w, n in zip(ws, names):
                if not np.array_equal(w, g[n][()]):
                    raise SystemExit("weight %s differs" % n)
                checked += 1
    return model, checked, keras.__version__


def f9(v):
    return [float("%.9g" % x) for x in v]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=None)
    args = ap.parse_args()
    cache = os.path.abspath(os.path.expanduser(args.cache or prepare.default_cache()))
    sources = prepare.load_sources()
    spec = sources["models"]["facenet.onnx"]
    pkg = sources["packages"][spec["package"]]
    archive = os.path.join(cache, "downloads", pkg["file"])
    if prepare.sha256_file(archive) != pkg["sha256"]:
        raise SystemExit("run python3 models/prepare.py first")
    import tempfile
    with tempfile.TemporaryDirectory() as td:
        h5 = os.path.join(td, "facenet_keras.h5")
        with tarfile.open(archive) as t, open(h5, "wb") as f:
            f.write(t.extractfile(spec["member"]).read())
        model, nweights, kver = load_keras(h5)
    import tensorflow as tf

    data_root = os.path.join(cache, "data", "faces5")
    entries, batch = [], []
    for cid, rel, x, y, size, mode, k, exact in CROPS:
        data = open(os.path.join(data_root, rel), "rb").read()
        rgb, fmt = decode_rgb8(data)
        if exact and fmt != "PNG":
            raise SystemExit("%s is not a PNG" % rel)
        rect, c = crop160(rgb, x, y, size, mode, k)
        inp, mean, std = standardise(c)
        batch.append(inp)
        entries.append({
            "id": cid,
            "path": rel,
            "file_sha256": hashlib.sha256(data).hexdigest(),
            "format": fmt,
            "exact": exact,
            "image_size": {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])},
            "rect": {"x": x, "y": y, "size": size},
            "resample": {"mode": mode, "factor": k},
            "rect_rgb_sha256": hashlib.sha256(np.ascontiguousarray(rect).tobytes()).hexdigest(),
            "crop_mean": float(mean),
            "crop_std": float(std),
        })
    x = np.stack(batch)
    raw = np.concatenate([model([x[i:i + 1]], training=False).numpy() for i in range(len(x))])
    for e, r in zip(entries, raw.astype(np.float64)):
        e["embedding_raw"] = f9(r)
        e["embedding_l2"] = f9(r / np.linalg.norm(r))

    check = None
    onnx_path = os.path.join(cache, "models", "facenet.onnx")
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None and os.path.exists(onnx_path):
        s = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        dr = dn = 0.0
        for i in range(len(x)):
            o = s.run(["embedding"], {"input": x[i:i + 1]})[0][0].astype(np.float64)
            g = np.array(entries[i]["embedding_raw"])
            dr = max(dr, float(np.abs(o - g).max()))
            dn = max(dn, float(np.abs(o / np.linalg.norm(o) - g / np.linalg.norm(g)).max()))
        check = {"onnx_sha256": prepare.sha256_file(onnx_path), "onnxruntime": ort.__version__,
                 "max_abs_diff_raw": dr, "max_abs_diff_l2": dn}
        print("onnxruntime check:", check)

    doc = {
        "description": "FaceNet (facenet_keras.h5, InceptionResNetV1) golden embeddings from the original "
                       "Keras model; see models/golden/make_golden.py for the exact crop procedure.",
        "data_root": "<cache>/data/faces5",
        "procedure": {
            "decode": "8-bit RGB; the PNG is RGBA with alpha 255 everywhere (alpha dropped)",
            "rect": "pixels x..x+size-1, y..y+size-1",
            "resample_replicate": "size*factor == 160: out[r][c] = rect[r / factor][c / factor] (integer division)",
            "resample_box": "size == 160*factor: out = (exact integer sum of the factor x factor block) / (factor*factor) in float32",
            "standardise": "float64 over all 76800 values: mean = sum/N; std = sqrt(sum((v-mean)^2)/N); "
                           "x = (v-mean)/max(std, 1/sqrt(N)); cast to float32",
            "tensor": "input [1,160,160,3] NHWC float32, RGB",
            "l2": "embedding_l2 = embedding_raw / ||embedding_raw||_2 (float64)",
            "exact_crops": "from the PNG file: reproducible bit-for-bit in any PNG decoder",
            "decoder_dependent_crops": "from JPEG files: compare strictly only if your decoded rect has rect_rgb_sha256",
        },
        "tolerance": {"embedding_l2_max_abs": 1e-5},
        "generated_with": {"tensorflow": tf.__version__, "keras": kver, "numpy": np.__version__,
                           "pillow": Image.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"),
                           "keras_weight_arrays_checked": nweights},
        "onnx_check": check,
        "crops": entries,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
