"""Build the reference shadow model from scratch: seeded, reproducible, no training framework.

The network is a fixed feature extractor with a fitted logistic head, written directly as an
ONNX graph with `onnx.helper` (opset 17, well under 1 MB):

1. intensity bands: the windowed image and three soft band-pass copies of it (tent functions
   made of ReLUs, peaks at 0.45 = brain, 0.72 and 0.88 = hyperdense blood). Saturated pixels
   (bone, calcification) fall outside every band, which is how blood is told from bone;
2. a grouped 9 x 9 convolution: per band, a Gaussian blur and a centre-surround
   difference of Gaussians (a blob detector), then ReLU;
3. global max and global average pooling -> the 16-wide ``embedding``;
4. standardisation, one linear layer and a sigmoid -> ``score``.

Only step 4 is fitted: a ridge-penalised logistic regression, by Newton's method in numpy,
on embeddings of `synthetic_studies` studies drawn with `seed`. The same seed gives the same
ONNX bytes (onnxruntime runs single-threaded so reductions keep their order).

Usage: ``python -m surveillance.shadow.build_reference_model --out model.onnx --seed 0``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from surveillance.shadow.model import EMBEDDING, INPUT, SCORE
from surveillance.shadow.preprocess import SIZE, preprocess_study
from surveillance.shadow.synthetic_studies import synthesize_dataset

OPSET = 17
BANDS = ((0.45, 0.12), (0.72, 0.1), (0.88, 0.08))  # (peak, half-width), windowed units
KERNEL = 9
SIGMA_CENTER = 1.5
SIGMA_SURROUND = 3.5
N_TRAIN = 600
RIDGE = 1e-2

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def _gaussian(sigma: float) -> F64:
    r = np.arange(KERNEL) - KERNEL // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    out: F64 = g / g.sum()
    return out


def _conv_weights() -> F32:
    """[8, 1, 9, 9]: per input channel, a Gaussian blur then a difference of Gaussians."""
    blur = _gaussian(SIGMA_CENTER)
    dog = blur - _gaussian(SIGMA_SURROUND)
    channels = len(BANDS) + 1
    return np.stack([k for _ in range(channels) for k in (blur, dog)])[:, None].astype(np.float32)


def _const(name: str, value: npt.NDArray[np.generic]) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], name=name, value=numpy_helper.from_array(value, name)
    )


def _feature_nodes() -> list[onnx.NodeProto]:
    nodes: list[onnx.NodeProto] = []
    band_names = [INPUT]
    for i, (peak, half) in enumerate(BANDS):
        # tent(x) = (relu(x - p + h) - 2 relu(x - p) + relu(x - p - h)) / h
        parts = []
        for j, shift in enumerate((peak - half, peak, peak + half)):
            c, d, r = f"b{i}_c{j}", f"b{i}_d{j}", f"b{i}_r{j}"
            nodes += [
                _const(c, np.array(shift, np.float32)),
                helper.make_node("Sub", [INPUT, c], [d], name=d),
                helper.make_node("Relu", [d], [r], name=r),
            ]
            parts.append(r)
        two, inv = f"b{i}_two", f"b{i}_inv"
        nodes += [
            _const(two, np.array(2.0, np.float32)),
            _const(inv, np.array(1.0 / half, np.float32)),
            helper.make_node("Mul", [parts[1], two], [f"b{i}_m"], name=f"b{i}_m"),
            helper.make_node("Sub", [parts[0], f"b{i}_m"], [f"b{i}_s"], name=f"b{i}_s"),
            helper.make_node("Add", [f"b{i}_s", parts[2]], [f"b{i}_t"], name=f"b{i}_t"),
            helper.make_node("Mul", [f"b{i}_t", inv], [f"band{i}"], name=f"band{i}"),
        ]
        band_names.append(f"band{i}")
    nodes += [
        helper.make_node("Concat", band_names, ["bands"], name="bands", axis=1),
        _const("conv_w", _conv_weights()),
        helper.make_node(
            "Conv",
            ["bands", "conv_w"],
            ["conv"],
            name="conv",
            group=len(band_names),
            pads=[KERNEL // 2] * 4,
        ),
        helper.make_node("Relu", ["conv"], ["act"], name="act"),
        helper.make_node("GlobalMaxPool", ["act"], ["gmax"], name="gmax"),
        helper.make_node("GlobalAveragePool", ["act"], ["gavg"], name="gavg"),
        helper.make_node("Concat", ["gmax", "gavg"], ["pooled"], name="pooled", axis=1),
        helper.make_node("Flatten", ["pooled"], [EMBEDDING], name=EMBEDDING, axis=1),
    ]
    return nodes


def _embedding_dim() -> int:
    return 2 * 2 * (len(BANDS) + 1)


def _model(nodes: list[onnx.NodeProto], outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "shadow_reference",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        outputs,
    )
    model = helper.make_model(
        graph,
        producer_name="surveillance.shadow.build_reference_model",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _embedding_output() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["N", _embedding_dim()])


def _embeddings(images: F32) -> F64:
    """Run the feature extractor alone, exactly as the final model will."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    blob: bytes = _model(_feature_nodes(), [_embedding_output()]).SerializeToString()
    session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    (out,) = session.run([EMBEDDING], {INPUT: images})
    return np.asarray(out, dtype=np.float64)


def fit_logistic(x: F64, y: F64, ridge: float = RIDGE, iterations: int = 50) -> tuple[F64, float]:
    """Ridge-penalised logistic regression by Newton's method (intercept not penalised)."""
    design = np.hstack([np.ones((len(x), 1)), x])
    beta = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], ridge)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        gradient = design.T @ (p - y) + penalty * beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta[1:], float(beta[0])


def build_reference_model(seed: int = 0, n_train: int = N_TRAIN) -> bytes:
    """The serialized ONNX model; deterministic in `seed`."""
    studies = synthesize_dataset(seed, n_train, prevalence=0.5)
    images = np.stack([preprocess_study(s.slices()) for s in studies]).astype(np.float32)
    labels = np.array([s.positive for s in studies], dtype=np.float64)
    features = _embeddings(images)
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale == 0.0] = 1.0  # a constant feature carries no information; keep it finite
    weights, intercept = fit_logistic((features - mean) / scale, labels)

    nodes = [
        *_feature_nodes(),
        _const("mu", mean.astype(np.float32)[None, :]),
        _const("sd", scale.astype(np.float32)[None, :]),
        _const("w", weights.astype(np.float32)[:, None]),
        _const("b", np.array([intercept], np.float32)),
        _const("flat", np.array([-1], np.int64)),
        helper.make_node("Sub", [EMBEDDING, "mu"], ["centred"], name="centred"),
        helper.make_node("Div", ["centred", "sd"], ["z"], name="z"),
        helper.make_node("Gemm", ["z", "w", "b"], ["logit"], name="logit"),
        helper.make_node("Sigmoid", ["logit"], ["prob"], name="prob"),
        helper.make_node("Reshape", ["prob", "flat"], [SCORE], name=SCORE),
    ]
    outputs = [helper.make_tensor_value_info(SCORE, TensorProto.FLOAT, ["N"]), _embedding_output()]
    data: bytes = _model(nodes, outputs).SerializeToString()
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = build_reference_model(args.seed)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes, seed {args.seed})")


if __name__ == "__main__":
    main()
