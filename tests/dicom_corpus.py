"""A mixed stream of DICOM objects as a site's PACS routing would send it, with its truth.

Studies come from the simulator (real tools, scanners, protocols): per study one image
(10% with pixel data carrying `PIXEL_MARK`, the rest header-only) and one TID 1500 SR with
all its AI results. SRs are restamped from a few highdicom-built templates per tool set
(building each with highdicom costs tens of ms); the expected result of each SR is the
template's AI output on the study's header and the study image's scanner/acquisition.
Bad objects: an unsupported SOP class (ultrasound, with pixel data), a corrupt data set,
an SR whose algorithm no tool maps. Everything is shuffled, some good ones resent, and
every object written to a file under `work` (the SCU sends files as they are, without
re-encoding: pydicom must not encode one Dataset in two sender threads at once).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian

from surveillance.clinical.baselines import load_registry
from surveillance.contracts import Acquisition, AIResult, Scanner
from surveillance.interop.dicom_write import image_of, instance_uid_of, restamp, sr_of
from surveillance.simulate import simulate
from tests import dicom_samples as S

PIXEL_MARK = b"PIXELMARK-7f3a19"
ULTRASOUND = "1.2.840.10008.5.1.4.1.1.6.1"
TEMPLATES_PER_TOOLSET = 4


@dataclass(frozen=True)
class Expected:
    tool_id: str
    software_version: str
    ai_result: float
    result_indicator: bool
    scanner: Scanner
    acquisition: Acquisition
    site: str


@dataclass
class Item:
    kind: str  # "image", "sr", "unsupported", "corrupt", "unmapped"
    dataset: Dataset | None
    sender: str
    path: Path | None = None
    #: Expected C-STORE status.
    status: int = 0x0000


@dataclass
class Corpus:
    items: list[Item]
    #: (accession, tool) -> what must come out on ai.results.
    expected: dict[tuple[str, str], Expected] = field(default_factory=dict)
    bad: int = 0
    resent: int = 0


def _template_value(result: AIResult) -> tuple[float, bool]:
    mapping = load_registry()[result.tool_id].dicom
    assert mapping is not None
    if mapping.score is None:
        return (1.0 if result.result_indicator else 0.0), result.result_indicator
    indicator = (result.result_indicator if mapping.call is not None
                 else result.ai_result >= result.operating_threshold)
    return result.ai_result, indicator


def build(n_studies: int, sites: dict[str, str], work: Path, bad: int = 0, resent: int = 0,
          seed: int = 5) -> Corpus:
    """`n_studies` images and SRs, `bad` bad objects (a third of each kind), `resent`
    good objects sent a second time."""
    registry = load_registry()
    events, _ = simulate(days=n_studies // 150 + 2, seed=seed)
    by_study: dict[str, list[AIResult]] = defaultdict(list)
    for e in events:
        if e.valid and e.topic == "ai.results":
            r = AIResult.model_validate_json(e.value)
            if r.event_id not in {x.event_id for x in by_study[r.study_instance_uid]}:
                by_study[r.study_instance_uid].append(r)
    studies = list(by_study.values())[: n_studies + 40]
    assert len(studies) >= n_studies + 40, "simulate more days"
    templates: dict[tuple[str, ...], list[tuple[Dataset, list[AIResult]]]] = defaultdict(list)
    for results in studies[n_studies:] + studies[:n_studies]:
        key = tuple(r.tool_id for r in results)
        if len(templates[key]) < TEMPLATES_PER_TOOLSET:
            templates[key].append((sr_of(results, registry), results))
    rng = random.Random(seed)
    senders = sorted(sites)
    corpus = Corpus(items=[])
    for i, results in enumerate(studies[:n_studies]):
        sender = senders[i % len(senders)]
        first = results[0]
        pixels = PIXEL_MARK * 8 if rng.random() < 0.1 else None
        corpus.items.append(Item("image", image_of(first, pixel_data=pixels), sender))
        template, t_results = rng.choice(templates[tuple(r.tool_id for r in results)])
        sr = restamp(template, first, instance_uid_of(first.study_instance_uid, "sr"))
        corpus.items.append(Item("sr", sr, sender))
        for result, t in zip(results, t_results, strict=True):
            score, indicator = _template_value(t)
            corpus.expected[(first.accession_number, result.tool_id)] = Expected(
                result.tool_id, t.software_version, score, indicator, first.scanner,
                first.acquisition, sites[sender])
    good = list(corpus.items)
    for j in range(bad):
        corpus.items.append(_bad(j % 3, j, studies[j], senders[0], work))
    corpus.bad = bad
    resends = rng.sample(good, resent)
    corpus.resent = len(resends)
    rng.shuffle(corpus.items)
    for item in resends:
        # A resend comes after the original: the sender retries what it already sent.
        at = corpus.items.index(item)
        corpus.items.insert(rng.randint(at + 1, len(corpus.items)), item)
    for n, item in enumerate(corpus.items):
        if item.path is None:
            assert item.dataset is not None
            item.path = work / f"object-{n}.dcm"
            item.dataset.save_as(item.path, enforce_file_format=True)
    return corpus


def _bad(kind: int, j: int, results: list[AIResult], sender: str, work: Path) -> Item:
    first = results[0]
    if kind == 0:
        ds = image_of(first, pixel_data=PIXEL_MARK * 8)
        ds.SOPClassUID = ULTRASOUND
        ds.SOPInstanceUID = f"{instance_uid_of(first.study_instance_uid, 'us')}.{j}"
        ds.file_meta.MediaStorageSOPClassUID = ULTRASOUND
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        return Item("unsupported", ds, sender, status=0x0122)
    if kind == 1:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = f"{instance_uid_of(first.study_instance_uid, 'x')}.{j}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        # A truncated element: a tag, VR "LO", a length of 400 and 3 bytes of value.
        path = work / f"corrupt-{j}.dcm"
        path.write_bytes(buf.getvalue() + b"\x08\x00\x70\x00LO\x90\x01abc")
        return Item("corrupt", None, sender, path=path, status=0xC000)
    uid = f"{instance_uid_of(first.study_instance_uid, 'acme')}.{j}"
    sr = S.report(
        [S.group(("Acme Bleed", "1.0"), S.ICH, (Code("P", "99ACME", "p"), 0.5, S.UNITLESS))],
        sop_instance_uid=uid,
        evidence_ds=S.evidence(study_uid=first.study_instance_uid, series_uid=uid + ".1",
                               AccessionNumber=first.accession_number),
    )
    return Item("unmapped", sr, sender, status=0xC001)
