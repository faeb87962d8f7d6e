"""What the API shows of a dataset."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SplitInfo(BaseModel):
    samples: int
    x_shape: list[int] = Field(description="One sample's shape (no batch dimension).")
    x_dtype: str
    y_shape: list[int]
    y_dtype: str


class DatasetOut(BaseModel):
    id: str
    filename: str
    size_bytes: int
    sha256: str
    created_at: str
    metadata: dict[str, str] = Field(
        default_factory=dict, description="labels, set as `?metadata[key]=value` at upload"
    )
    splits: dict[str, SplitInfo] = Field(description="train, and val/test when present.")


class DatasetList(BaseModel):
    items: list[DatasetOut]
    next_after: str | None = None
