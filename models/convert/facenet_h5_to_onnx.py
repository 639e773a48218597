"""Convert the Keras 2.1 FaceNet (InceptionResNetV1) .h5 file to ONNX.

Runs inside the conversion virtualenv (h5py + numpy + onnx; no TensorFlow).
Usage: python facenet_h5_to_onnx.py IN.h5 OUT.onnx

What it does:
  * parses the `model_config` JSON attribute of the HDF5 file (the Keras
    functional graph) and reads each layer's weights from the
    `model_weights/<layer name>/...` groups (by layer name);
  * folds every BatchNormalization (center=True, scale=False, no gamma) into
    the preceding bias-free Conv2D, and the final BatchNormalization after
    the Dense "Bottleneck" into the Gemm;
  * folds each residual Lambda "ScaleSum" (inputs[0] + inputs[1] * scale)
    into its second input's Conv2D (kernel and bias times scale), leaving an
    Add; checked that this conv has no other consumer;
  * drops Dropout (inference), maps Activation(relu) to Relu, MaxPooling2D
    (valid) to MaxPool, Concatenate(axis=3) to Concat(axis=1),
    GlobalAveragePooling2D to GlobalAveragePool + Flatten.

The graph computes in NCHW; the ONNX input `input` is NHWC [1,160,160,3]
float32 and is transposed to NCHW by the first node. The output `embedding`
is [1,128] float32, raw (not L2-normalised).

All folding is done in float64 with element-wise operations only (no
reductions), then rounded to float32, so the output is bit-for-bit
reproducible on any IEEE-754 machine.
"""

import json
import sys

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 8
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"


def main(src, dst):
    f = h5py.File(src, "r")
    cfg = json.loads(f.attrs["model_config"])
    if cfg["class_name"] != "Model":
        raise SystemExit("unexpected model class %r" % cfg["class_name"])
    layers = cfg["config"]["layers"]
    by_name = {l["name"]: l for l in layers}
    mw = f["model_weights"]

    def weights(name):
        g = mw[name]
        out = {}
        for wn in g.attrs["weight_names"]:
            wn = wn.decode() if isinstance(wn, bytes) else wn
            short = wn.split("/")[-1].split(":")[0]
            out[short] = np.asarray(g[wn], dtype=np.float64)
        return out

    def inputs_of(l):
        nodes = l["inbound_nodes"]
        if len(nodes) != 1:
            raise SystemExit("layer %s is shared (%d nodes)" % (l["name"], len(nodes)))
        for ib in nodes[0]:
            if ib[1] != 0 or ib[2] != 0:
                raise SystemExit("layer %s: unexpected inbound %r" % (l["name"], ib))
        return [ib[0] for ib in nodes[0]]

    consumers = {}
    for l in layers:
        if l["class_name"] == "InputLayer":
            continue
        for i in inputs_of(l):
            consumers.setdefault(i, []).append(l["name"])

    # Per-layer (kernel, bias) of Conv2D / Dense layers after folding, float64.
    params = {}
    for l in layers:
        k = l["class_name"]
        c = l["config"]
        if k in ("Conv2D", "Dense"):
            if c["activation"] != "linear":
                raise SystemExit("%s: fused activation %s" % (l["name"], c["activation"]))
            w = weights(l["name"])
            kern = w["kernel"]
            bias = w["bias"] if c["use_bias"] else np.zeros(kern.shape[-1], np.float64)
            if k == "Conv2D" and tuple(c["dilation_rate"]) != (1, 1):
                raise SystemExit("%s: dilation" % l["name"])
            params[l["name"]] = [kern, bias]

    # BatchNorm folding: y = (x - mean) / sqrt(var + eps) * gamma + beta.
    alias = {}  # keras layer name -> name of the layer whose output it equals
    for l in layers:
        if l["class_name"] != "BatchNormalization":
            continue
        c = l["config"]
        (prev,) = inputs_of(l)
        pl = by_name[prev]
        if pl["class_name"] not in ("Conv2D", "Dense") or consumers[prev] != [l["name"]]:
            raise SystemExit("%s: cannot fold into %s" % (l["name"], prev))
        if c["axis"] not in (-1, 3):
            raise SystemExit("%s: axis %r" % (l["name"], c["axis"]))
        w = weights(l["name"])
        inv = 1.0 / np.sqrt(w["moving_variance"] + float(c["epsilon"]))
        gamma = w["gamma"] if c["scale"] else np.ones_like(inv)
        beta = w["beta"] if c["center"] else np.zeros_like(inv)
        mult = gamma * inv
        kern, bias = params[prev]
        params[prev] = [kern * mult, (bias - w["moving_mean"]) * mult + beta]
        alias[l["name"]] = prev

    # Residual scale folding.
    for l in layers:
        if l["class_name"] != "Lambda":
            continue
        if not l["name"].endswith("ScaleSum"):
            raise SystemExit("unknown Lambda %s" % l["name"])
        scale = float(l["config"]["arguments"]["scale"])
        a, b = inputs_of(l)
        if by_name[b]["class_name"] != "Conv2D" or consumers[b] != [l["name"]] or b in alias.values():
            raise SystemExit("%s: cannot fold scale into %s" % (l["name"], b))
        if scale != 1.0:
            kern, bias = params[b]
            params[b] = [kern * scale, bias * scale]

    def resolve(n):
        while n in alias:
            n = alias[n]
        return n

    nodes = []
    inits = []

    def add_init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr.astype(np.float32)), name))

    first = layers[0]
    if first["class_name"] != "InputLayer":
        raise SystemExit("first layer is not the input")
    shape = first["config"]["batch_input_shape"]
    if shape[1:] != [160, 160, 3]:
        raise SystemExit("unexpected input shape %r" % shape)
    nodes.append(helper.make_node("Transpose", [INPUT_NAME], [first["name"]], name="input_to_nchw", perm=[0, 3, 1, 2]))

    out_layer = cfg["config"]["output_layers"][0][0]
    final = resolve(out_layer)
    for l in layers[1:]:
        k = l["class_name"]
        c = l["config"]
        name = l["name"]
        if k == "BatchNormalization":
            continue
        ins = [resolve(i) for i in inputs_of(l)]
        out = OUTPUT_NAME if name == final else name
        if k == "Conv2D":
            kern, bias = params[name]
            kh, kw = c["kernel_size"]
            sh, sw = c["strides"]
            if c["padding"] == "same":
                if (sh, sw) != (1, 1) or kh % 2 == 0 or kw % 2 == 0:
                    raise SystemExit("%s: asymmetric same padding" % name)
                pads = [(kh - 1) // 2, (kw - 1) // 2, (kh - 1) // 2, (kw - 1) // 2]
            elif c["padding"] == "valid":
                pads = [0, 0, 0, 0]
            else:
                raise SystemExit("%s: padding %s" % (name, c["padding"]))
            add_init(name + "/W", kern.transpose(3, 2, 0, 1))  # HWIO -> OIHW
            add_init(name + "/B", bias)
            nodes.append(helper.make_node("Conv", [ins[0], name + "/W", name + "/B"], [out], name=name,
                                          kernel_shape=[kh, kw], strides=[sh, sw], pads=pads,
                                          dilations=[1, 1], group=1))
        elif k == "Activation":
            if c["activation"] != "relu":
                raise SystemExit("%s: activation %s" % (name, c["activation"]))
            nodes.append(helper.make_node("Relu", ins, [out], name=name))
        elif k == "MaxPooling2D":
            if c["padding"] != "valid":
                raise SystemExit("%s: padding %s" % (name, c["padding"]))
            nodes.append(helper.make_node("MaxPool", ins, [out], name=name, kernel_shape=list(c["pool_size"]),
                                          strides=list(c["strides"]), pads=[0, 0, 0, 0]))
        elif k == "Concatenate":
            if c["axis"] not in (-1, 3):
                raise SystemExit("%s: axis %r" % (name, c["axis"]))
            nodes.append(helper.make_node("Concat", ins, [out], name=name, axis=1))
        elif k == "Lambda":
            nodes.append(helper.make_node("Add", ins, [out], name=name))
        elif k == "GlobalAveragePooling2D":
            nodes.append(helper.make_node("GlobalAveragePool", ins, [name + "/pooled"], name=name))
            nodes.append(helper.make_node("Flatten", [name + "/pooled"], [out], name=name + "/flatten", axis=1))
        elif k == "Dropout":
            nodes.append(helper.make_node("Identity", ins, [out], name=name))
        elif k == "Dense":
            kern, bias = params[name]
            add_init(name + "/W", kern)  # [in, out]
            add_init(name + "/B", bias)
            nodes.append(helper.make_node("Gemm", [ins[0], name + "/W", name + "/B"], [out], name=name,
                                          alpha=1.0, beta=1.0, transA=0, transB=0))
        else:
            raise SystemExit("unsupported layer %s (%s)" % (name, k))

    # Drop Identity nodes (Dropout) by rewiring.
    ident = {n.output[0]: n.input[0] for n in nodes if n.op_type == "Identity"}
    if OUTPUT_NAME in ident:
        raise SystemExit("output is an Identity")
    nodes = [n for n in nodes if n.op_type != "Identity"]
    for n in nodes:
        for i, x in enumerate(n.input):
            while x in ident:
                x = ident[x]
            n.input[i] = x

    graph = helper.make_graph(
        nodes, "facenet_inception_resnet_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 160, 160, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 128])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="facegate-models", producer_version="1",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = ("FaceNet InceptionResNetV1 (Keras facenet_keras.h5), BatchNorm and residual "
                        "scales folded. input: NHWC [1,160,160,3] float32 RGB, per-image standardised; "
                        "output: raw 128-d embedding.")
    onnx.checker.check_model(model, full_check=True)
    with open(dst, "wb") as fh:
        fh.write(model.SerializeToString())


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: facenet_h5_to_onnx.py IN.h5 OUT.onnx")
    main(sys.argv[1], sys.argv[2])
