"""Settings of shadow re-scoring: one small pydantic model.

The service settings can nest it as `shadow: ShadowSettings`, read from the environment as
`SURVEILLANCE_SHADOW__MODEL_PATH=/models/ich-shadow.onnx`,
`SURVEILLANCE_SHADOW__SAMPLE_FRACTION=0.05`, and so on.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ShadowSettings(BaseModel):
    """Where the shadow model and images are, how much to re-score and how hard to try."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: Path = Field(description="ONNX file honouring the contract in shadow/model.py")
    image_folder: Path = Field(description="folder of DICOM files, searched recursively")
    sample_fraction: float = Field(
        default=0.05, ge=0.0, le=1.0, description="share of ai.results re-scored at random"
    )
    sample_salt: str = Field(
        default="shadow-sample-v1",
        min_length=1,
        description="changes which results fall in the sample; keep it fixed to stay idempotent",
    )
    queue_size: int = Field(default=256, ge=1, le=1_000_000, description="pending studies")
    priority_queue_size: int = Field(
        default=256, ge=1, le=1_000_000, description="pending discordant studies"
    )
    batch_size: int = Field(default=16, ge=1, le=1024)
    shadow_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="shadow score at or above which it calls positive"
    )
    intra_op_threads: int = Field(default=1, ge=1, le=64, description="onnxruntime threads")
