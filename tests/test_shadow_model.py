"""Reference model build, DICOM round trip, preprocessing and the model contract."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from sklearn.metrics import roc_auc_score

from surveillance.errors import SurveillanceError
from surveillance.shadow.build_reference_model import build_reference_model, fit_logistic
from surveillance.shadow.dicom_source import FolderDicomSource, slice_from_dataset
from surveillance.shadow.errors import ImageSourceError, ModelContractError
from surveillance.shadow.model import ShadowModel
from surveillance.shadow.preprocess import (
    Slice,
    preprocess_slice,
    preprocess_study,
    resize_area,
    voi_window,
)
from surveillance.shadow.sampler import Reason
from surveillance.shadow.scorer import ShadowFailure, ShadowRequest, ShadowScore, ShadowScorer
from surveillance.shadow.synthetic_studies import synthesize_dataset, write_dataset


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return build_reference_model(seed=0)


@pytest.fixture(scope="module")
def model(model_bytes: bytes) -> ShadowModel:
    return ShadowModel.from_bytes(model_bytes)


def test_build_is_deterministic_and_small(model_bytes: bytes) -> None:
    again = build_reference_model(seed=0)
    other = build_reference_model(seed=1)
    assert again == model_bytes
    assert other != model_bytes  # the seed drives the fitted head
    assert len(model_bytes) < 5 * 1024 * 1024


def test_same_seed_same_outputs(model_bytes: bytes) -> None:
    images = np.random.default_rng(3).uniform(size=(5, 1, 64, 64)).astype(np.float32)
    first = ShadowModel.from_bytes(model_bytes).predict(images)
    second = ShadowModel.from_bytes(build_reference_model(seed=0)).predict(images)
    np.testing.assert_allclose(first.scores, second.scores, atol=1e-6, rtol=0)
    np.testing.assert_allclose(first.embeddings, second.embeddings, atol=1e-6, rtol=0)


def test_held_out_dicom_studies_are_separated(model: ShadowModel, tmp_path: Path) -> None:
    studies = synthesize_dataset(seed=2024, n_studies=200, prevalence=0.3)
    write_dataset(studies, tmp_path)
    source = FolderDicomSource(tmp_path)
    images = np.stack([preprocess_study(source.load(s.accession)) for s in studies])
    scores = model.predict(images.astype(np.float32)).scores
    auc = roc_auc_score([s.positive for s in studies], scores)
    print(f"held-out AUC on 200 DICOM studies (60 positive): {auc:.4f}")
    assert auc >= 0.85


def test_dicom_round_trip_keeps_pixels_and_header(tmp_path: Path) -> None:
    (study,) = synthesize_dataset(seed=5, n_studies=1)
    write_dataset([study], tmp_path)
    read = FolderDicomSource(tmp_path).load(study.accession)
    expected = study.slices()
    assert len(read) == len(expected)
    for got, want in zip(read, expected, strict=True):
        np.testing.assert_array_equal(got.stored, want.stored)
        assert (got.rescale_slope, got.rescale_intercept) == (1.0, -1024.0)
        assert (got.window_center, got.window_width) == (40.0, 80.0)
        assert got.position == want.position
        assert got.monochrome1 is False


def test_multi_valued_window_and_monochrome1_headers_are_read() -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality = "DX"
    ds.Rows, ds.Columns = 2, 2
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.WindowCenter = ["2048", "1000"]
    ds.WindowWidth = ["4096", "500"]
    ds.InstanceNumber = 3
    ds.PixelData = np.array([[0, 1], [2, 3]], dtype=np.uint16).tobytes()
    got = slice_from_dataset(ds)
    assert (got.window_center, got.window_width) == (2048.0, 4096.0)
    assert got.monochrome1 is True
    assert (got.rescale_slope, got.rescale_intercept, got.position) == (1.0, 0.0, 3.0)
    np.testing.assert_array_equal(got.stored, [[0, 1], [2, 3]])


def test_source_looks_up_by_pseudonym_and_reports_missing(tmp_path: Path) -> None:
    (study,) = synthesize_dataset(seed=6, n_studies=1)
    write_dataset([study], tmp_path)

    def pseudonym(raw: str) -> str:
        return hmac.new(b"k", raw.encode(), hashlib.sha256).hexdigest()

    source = FolderDicomSource(tmp_path, key_fn=pseudonym)
    assert len(source.load(pseudonym(study.accession))) == study.hu.shape[0]
    with pytest.raises(ImageSourceError, match="no DICOM study"):
        source.load(study.accession)  # the raw accession is not in a pseudonymized index
    with pytest.raises(ImageSourceError, match="does not exist"):
        FolderDicomSource(tmp_path / "absent")


def test_voi_window_follows_the_dicom_linear_function() -> None:
    # PS3.3 C.11.2.1.2.1 with c=40, w=80: ((x - 39.5) / 79 + 0.5) = x / 79, clipped to [0, 1].
    hu = np.array([-1000.0, 0.0, 1.0, 39.0, 78.0, 79.0, 80.0], dtype=np.float32)
    got = voi_window(hu, 40.0, 80.0)
    expected = np.clip(hu.astype(np.float64) / 79.0, 0.0, 1.0)
    np.testing.assert_allclose(got, expected, atol=1e-7)
    assert got[0] == 0.0 and got[-1] == 1.0
    with pytest.raises(ImageSourceError, match="window width"):
        voi_window(hu, 40.0, 0.5)


def test_resize_is_block_mean_for_integer_factors() -> None:
    image = np.random.default_rng(1).uniform(size=(128, 192)).astype(np.float32)
    got = resize_area(image, 64)
    block = image.astype(np.float64).reshape(64, 2, 64, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(got, block, atol=1e-6)
    constant = np.full((100, 70), 0.25, dtype=np.float32)
    np.testing.assert_allclose(resize_area(constant, 64), 0.25, atol=1e-6)


def test_slice_preprocessing_rescales_windows_and_inverts() -> None:
    stored = np.array([[1024, 1064], [1104, 0]], dtype=np.uint16)  # HU 0, 40, 80, -1024
    item = Slice(stored, "CT", 1.0, -1024.0, 40.0, 80.0)
    got = preprocess_slice(item, size=2)
    expected = np.clip(np.array([[0.0, 40.0], [80.0, -1024.0]]) / 79.0, 0, 1)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    inverted = preprocess_slice(Slice(stored, "CT", 1.0, -1024.0, 40.0, 80.0, True), size=2)
    np.testing.assert_allclose(inverted, 1.0 - expected, atol=1e-6)
    # Two slices: the study image is their pixel-wise maximum.
    other = Slice(np.full((2, 2), 1074, dtype=np.uint16), "CT", 1.0, -1024.0, 40.0, 80.0)
    study = preprocess_study([item, other], size=2)
    np.testing.assert_allclose(study[0], np.maximum(expected, 50.0 / 79.0), atol=1e-6)
    with pytest.raises(ImageSourceError, match="no slices"):
        preprocess_study([])


def test_fit_logistic_matches_statsmodels_without_penalty() -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(11)
    x = rng.normal(size=(400, 3))
    y = (rng.uniform(size=400) < 1 / (1 + np.exp(-(x @ [1.0, -2.0, 0.5] + 0.3)))).astype(float)
    weights, intercept = fit_logistic(x, y, ridge=0.0)
    oracle = sm.Logit(y, sm.add_constant(x)).fit(disp=0).params
    np.testing.assert_allclose([intercept, *weights], oracle, atol=1e-8)


def _model(
    inputs: list[tuple[str, int, list[object]]],
    outputs: list[tuple[str, int, list[object]]],
    nodes: list[object],
) -> bytes:
    graph = helper.make_graph(
        nodes,  # type: ignore[arg-type]
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],  # type: ignore[arg-type]
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],  # type: ignore[arg-type]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


def _heads(src: str, scale: float = 1.0) -> list[object]:
    """score = scale * mean(image) per row, embedding = the row mean, from input `src`."""
    return [
        helper.make_node("ReduceMean", [src], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Constant", [], ["k"], value_float=scale),
        helper.make_node("Mul", ["m", "k"], ["score"]),
        helper.make_node("Constant", [], ["shape"], value_ints=[-1, 1]),
        helper.make_node("Reshape", ["m", "shape"], ["embedding"]),
    ]


def _square_embedding() -> list[object]:
    """An embedding of shape [N, N]: its width changes with the batch."""
    return [
        *_heads("image")[:3],
        helper.make_node("Constant", [], ["ax1"], value_ints=[1]),
        helper.make_node("Constant", [], ["ax0"], value_ints=[0]),
        helper.make_node("Unsqueeze", ["m", "ax1"], ["col"]),
        helper.make_node("Unsqueeze", ["m", "ax0"], ["row"]),
        helper.make_node("MatMul", ["col", "row"], ["embedding"]),
    ]


Arg = tuple[str, int, list[object]]
F: int = TensorProto.FLOAT
GOOD_IN: Arg = ("image", F, ["N", 1, 64, 64])
GOOD_OUT: list[Arg] = [("score", F, ["N"]), ("embedding", F, ["N", 1])]


def test_a_minimal_conforming_model_is_accepted() -> None:
    model = ShadowModel.from_bytes(_model([GOOD_IN], GOOD_OUT, _heads("image")))
    images = np.full((3, 1, 64, 64), 0.5, dtype=np.float32)
    prediction = model.predict(images)
    np.testing.assert_allclose(prediction.scores, [0.5, 0.5, 0.5])
    assert prediction.embeddings.shape == (3, 1)


@pytest.mark.parametrize(
    ("inputs", "outputs", "nodes", "message"),
    [
        ([("pixels", F, ["N", 1, 64, 64])], GOOD_OUT, _heads("pixels"), "one input named 'image'"),
        ([("image", F, ["N", 1, 32, 32])], GOOD_OUT, _heads("image"), r"\[N, 1, 64, 64\]"),
        ([("image", F, [4, 1, 64, 64])], GOOD_OUT, _heads("image"), "dynamic N"),
        (
            [("image", TensorProto.DOUBLE, ["N", 1, 64, 64])],
            GOOD_OUT,
            [helper.make_node("Cast", ["image"], ["as_float"], to=F), *_heads("as_float")],
            "must be float32",
        ),
        ([GOOD_IN], [("score", F, ["N"])], _heads("image")[:3], "no output 'embedding'"),
        (
            [GOOD_IN],
            [("embedding", F, ["N", 1])],
            _heads("image")[3:] + _heads("image")[:1],
            "no output 'score'",
        ),
        (
            [GOOD_IN],
            [("score", F, ["N", 2]), ("embedding", F, ["N", 1])],
            _heads("image"),
            r"\[N\] or \[N, 1\]",
        ),
        (
            [GOOD_IN],
            [("score", F, ["N"]), ("embedding", F, ["N", "N"])],
            _square_embedding(),
            "fixed D",
        ),
    ],
)
def test_mismatched_models_are_refused_with_one_line(
    inputs: list[tuple[str, int, list[object]]],
    outputs: list[tuple[str, int, list[object]]],
    nodes: list[object],
    message: str,
) -> None:
    with pytest.raises(ModelContractError, match=message) as caught:
        ShadowModel.from_bytes(_model(inputs, outputs, nodes))
    assert isinstance(caught.value, SurveillanceError)
    assert "\n" not in str(caught.value)


def test_unreadable_models_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelContractError, match="not a loadable ONNX model") as caught:
        ShadowModel.from_bytes(b"not an onnx file")
    assert "\n" not in str(caught.value)
    with pytest.raises(ModelContractError, match="cannot read shadow model"):
        ShadowModel.load(tmp_path / "missing.onnx")


def test_scores_outside_unit_interval_are_refused_at_run_time() -> None:
    model = ShadowModel.from_bytes(_model([GOOD_IN], GOOD_OUT, _heads("image", scale=3.0)))
    with pytest.raises(ModelContractError, match=r"outside \[0, 1\]"):
        model.predict(np.full((2, 1, 64, 64), 0.5, dtype=np.float32))
    with pytest.raises(ModelContractError, match="images must be"):
        model.predict(np.zeros((2, 64, 64), dtype=np.float32))


def test_scorer_scores_found_studies_and_reports_missing_ones(
    model: ShadowModel, tmp_path: Path
) -> None:
    studies = synthesize_dataset(seed=8, n_studies=3)
    write_dataset(studies, tmp_path)
    requests = [
        ShadowRequest(f"e{i}", "ich-triage", "1.0", "site-a", acc, 0.3, False, Reason.SAMPLED)
        for i, acc in enumerate([studies[0].accession, "MISSING", studies[2].accession])
    ]
    out = ShadowScorer(FolderDicomSource(tmp_path), model, threshold=0.5)(requests)
    assert [type(o) for o in out] == [ShadowScore, ShadowFailure, ShadowScore]
    direct = model.predict(
        np.stack([preprocess_study(studies[i].slices()) for i in (0, 2)]).astype(np.float32)
    )
    found = [o for o in out if isinstance(o, ShadowScore)]
    assert [o.request.ai_event_id for o in found] == ["e0", "e2"]
    np.testing.assert_allclose([o.score for o in found], direct.scores, atol=1e-6)
    assert [o.positive for o in found] == [bool(s >= 0.5) for s in direct.scores]
    assert all(o.model_digest == model.digest for o in found)
