"""The shadow model: an onnxruntime session that is refused unless it honours the contract.

Contract (checked when the model is loaded, and on every output):

- one input, named ``image``, float32, shape ``[N, 1, 64, 64]``: the study image from
  `preprocess.preprocess_study` (modality LUT, window, scaled to [0, 1]); ``N`` is the
  batch dimension and must be dynamic (a symbolic or unknown dimension);
- output ``score``, float32, shape ``[N]`` or ``[N, 1]``, each value in [0, 1]: the shadow
  model's probability of the finding;
- output ``embedding``, float32, shape ``[N, D]`` with a fixed ``D >= 1``: the features the
  score was computed from, monitored for drift by `embedding_drift`.

Other outputs are allowed and ignored. A model that does not fit is refused with a
`ModelContractError` naming what is wrong.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from surveillance.shadow.errors import ModelContractError
from surveillance.shadow.preprocess import SIZE

INPUT = "image"
SCORE = "score"
EMBEDDING = "embedding"
_FLOAT = "tensor(float)"


@dataclass(frozen=True)
class Prediction:
    scores: npt.NDArray[np.float32]  # [N]
    embeddings: npt.NDArray[np.float32]  # [N, D]


def _dynamic(dim: object) -> bool:
    return dim is None or isinstance(dim, str)


def _check_contract(session: ort.InferenceSession, where: str) -> int:
    """Raise unless the session honours the contract; return the embedding width D."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT:
        names = [i.name for i in inputs]
        raise ModelContractError(f"model {where} must have one input named 'image', has {names}")
    arg = inputs[0]
    if arg.type != _FLOAT:
        raise ModelContractError(f"model {where} input 'image' must be float32, is {arg.type}")
    shape = list(arg.shape)
    if len(shape) != 4 or not _dynamic(shape[0]) or shape[1:] != [1, SIZE, SIZE]:
        raise ModelContractError(
            f"model {where} input 'image' must be [N, 1, {SIZE}, {SIZE}] with dynamic N, is {shape}"
        )
    outputs = {o.name: o for o in session.get_outputs()}
    for name in (SCORE, EMBEDDING):
        if name not in outputs:
            raise ModelContractError(
                f"model {where} has no output '{name}'; outputs are {sorted(outputs)}"
            )
        if outputs[name].type != _FLOAT:
            raise ModelContractError(
                f"model {where} output '{name}' must be float32, is {outputs[name].type}"
            )
    score_shape = list(outputs[SCORE].shape)
    if not (len(score_shape) == 1 or (len(score_shape) == 2 and score_shape[1] == 1)):
        raise ModelContractError(
            f"model {where} output 'score' must be [N] or [N, 1], is {score_shape}"
        )
    emb_shape = list(outputs[EMBEDDING].shape)
    if len(emb_shape) != 2 or not isinstance(emb_shape[1], int) or emb_shape[1] < 1:
        raise ModelContractError(
            f"model {where} output 'embedding' must be [N, D] with a fixed D, is {emb_shape}"
        )
    return int(emb_shape[1])


class ShadowModel:
    """A loaded, contract-checked shadow model. `predict` is safe to call from one thread."""

    def __init__(self, session: ort.InferenceSession, digest: str, where: str) -> None:
        self._session = session
        self.digest = digest
        self._where = where
        self.embedding_dim = _check_contract(session, where)

    @classmethod
    def from_bytes(
        cls, data: bytes, intra_op_threads: int = 1, where: str = "<bytes>"
    ) -> ShadowModel:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelContractError(
                f"model {where} is not a loadable ONNX model: {first}"
            ) from exc
        return cls(session, hashlib.sha256(data).hexdigest(), where)

    @classmethod
    def load(cls, path: Path, intra_op_threads: int = 1) -> ShadowModel:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelContractError(
                f"cannot read shadow model {path}: {exc.strerror}; set shadow.model_path"
            ) from exc
        return cls.from_bytes(data, intra_op_threads, str(path))

    def predict(self, images: npt.NDArray[np.float32]) -> Prediction:
        if images.ndim != 4 or images.shape[1:] != (1, SIZE, SIZE):
            raise ModelContractError(
                f"images must be [N, 1, {SIZE}, {SIZE}], got {list(images.shape)}"
            )
        n = images.shape[0]
        score, embedding = self._session.run(
            [SCORE, EMBEDDING], {INPUT: np.ascontiguousarray(images, dtype=np.float32)}
        )
        scores = np.asarray(score, dtype=np.float32).reshape(-1)
        embeddings = np.asarray(embedding, dtype=np.float32)
        if scores.shape != (n,) or embeddings.shape != (n, self.embedding_dim):
            raise ModelContractError(
                f"model {self._where} returned score {list(np.shape(score))} and embedding "
                f"{list(embeddings.shape)} for {n} images; expected [{n}] and "
                f"[{n}, {self.embedding_dim}]"
            )
        if not np.all((scores >= 0.0) & (scores <= 1.0)):
            raise ModelContractError(
                f"model {self._where} returned scores outside [0, 1] (or NaN); "
                "the contract needs probabilities"
            )
        return Prediction(scores=scores, embeddings=embeddings)
