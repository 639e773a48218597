"""Convert a MediaPipe BlazeFace .tflite file to ONNX with tflite2onnx.

Runs inside the conversion virtualenv. Usage:
    python tflite_to_onnx.py IN.tflite OUT.onnx

tflite2onnx turns the model's fp16 weights (FLOAT16 constants behind TFLite
DEQUANTIZE ops) into float32 initializers and removes the DEQUANTIZE ops; it
also moves the graph to NCHW, so the ONNX input is [1,3,H,W].
After conversion this script:
  * renames the two graph outputs to `regressors` [1,A,16] and
    `classificators` [1,A,1] (the full-range model calls them
    reshaped_regressor_face_4 / reshaped_classifier_face_4);
  * canonicalises the file (initializers and value_info sorted by name),
    because tflite2onnx emits them in an order that depends on Python's
    hash seed, which would make the bytes differ from run to run;
  * checks: no (De)QuantizeLinear / Cast ops, every floating tensor float32,
    onnx.checker passes.
"""

import os
import sys
import tempfile

import onnx
from onnx import TensorProto

OUTPUT_NAMES = ("regressors", "classificators")


def main(src, dst):
    import tflite2onnx

    with tempfile.TemporaryDirectory() as td:
        raw = os.path.join(td, "raw.onnx")
        tflite2onnx.convert(src, raw)
        model = onnx.load(raw)
    g = model.graph

    # Rename outputs: regressor (last dim 16) first, classifier (last dim 1) second.
    outs = list(g.output)
    if len(outs) != 2:
        raise SystemExit("expected 2 outputs, got %d" % len(outs))
    lastdim = lambda v: v.type.tensor_type.shape.dim[-1].dim_value
    outs.sort(key=lambda v: -lastdim(v))
    if [lastdim(v) for v in outs] != [16, 1]:
        raise SystemExit("unexpected output shapes")
    rename = {v.name: new for v, new in zip(outs, OUTPUT_NAMES)}
    for n in g.node:
        for i, x in enumerate(n.output):
            if x in rename:
                n.output[i] = rename[x]
        for i, x in enumerate(n.input):
            if x in rename:
                n.input[i] = rename[x]
    for v in g.output:
        v.name = rename[v.name]
    out_sorted = sorted(g.output, key=lambda v: OUTPUT_NAMES.index(v.name))
    del g.output[:]
    g.output.extend(out_sorted)

    # Canonical order.
    inits = sorted(g.initializer, key=lambda t: t.name)
    del g.initializer[:]
    g.initializer.extend(inits)
    vi = sorted((v for v in g.value_info if v.name not in rename), key=lambda v: v.name)
    del g.value_info[:]
    g.value_info.extend(vi)

    bad_ops = [n.op_type for n in g.node if n.op_type in ("DequantizeLinear", "QuantizeLinear", "Cast")]
    if bad_ops:
        raise SystemExit("quantisation ops left in graph: %r" % sorted(set(bad_ops)))
    for t in g.initializer:
        if t.data_type not in (TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32):
            raise SystemExit("initializer %s has data type %d" % (t.name, t.data_type))
    for v in list(g.input) + list(g.output) + list(g.value_info):
        if v.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise SystemExit("tensor %s is not float32" % v.name)
    onnx.checker.check_model(model, full_check=True)
    with open(dst, "wb") as fh:
        fh.write(model.SerializeToString())


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: tflite_to_onnx.py IN.tflite OUT.onnx")
    main(sys.argv[1], sys.argv[2])
