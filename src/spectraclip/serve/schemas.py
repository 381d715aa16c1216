"""Pydantic models of every request and reply of the search service; their bounds are the service's
limits (k, text length, number of examples, vector length)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_K = 500
MAX_TEXT = 500
MAX_EXAMPLES = 100
MAX_VECTOR = 4096
MAX_ID = 512


class FiltersModel(BaseModel):
    """Applied before ranking: footprint intersects bbox, timestamp within [start, end], column equality."""

    model_config = ConfigDict(extra="forbid")
    bbox: list[float] | None = Field(None, min_length=4, max_length=4,
                                     description="west, south, east, north in degrees (WGS84)")
    start: str | None = Field(None, max_length=40, description="earliest timestamp, ISO 8601 (e.g. 2021-06-01)")
    end: str | None = Field(None, max_length=40, description="latest timestamp (a bare date includes the day)")
    equals: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=20,
                                                        description="metadata column -> required value")


class SearchRequest(BaseModel):
    """One search: any mix of text, positive/negative example ids and a raw vector (at least one positive)."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, max_length=MAX_TEXT, description="free-text query")
    like: list[str] = Field(default_factory=list, max_length=MAX_EXAMPLES, description="positive example ids")
    unlike: list[str] = Field(default_factory=list, max_length=MAX_EXAMPLES, description="negative example ids")
    vector: list[float] | None = Field(None, max_length=MAX_VECTOR, description="a raw query vector")
    k: int = Field(10, ge=1, le=MAX_K, description=f"number of results (1..{MAX_K})")
    unlike_weight: float = Field(0.5, ge=0.0, le=2.0, description="weight of the negatives' mean")
    filters: FiltersModel = Field(default_factory=FiltersModel)
    geometry: bool = Field(False, description="include each hit's footprint as WKT (bbox is always there)")

    @field_validator("like", "unlike")
    @classmethod
    def _ids_bounded(cls, ids: list[str]) -> list[str]:
        for item in ids:
            if not item or len(item) > MAX_ID:
                raise ValueError(f"example ids must be 1..{MAX_ID} characters")
        return ids


class HitModel(BaseModel):
    """One result with what the page shows of it."""

    rank: int
    id: str
    score: float
    timestamp: str | None = None
    lon: float | None = None
    lat: float | None = None
    bbox: list[float] | None = Field(None, description="west, south, east, north of the footprint")
    geometry: str | None = Field(None, description="footprint as WKT (WGS84), when the request asked for it")


class SearchResponse(BaseModel):
    hits: list[HitModel]
    k: int
    candidates: int | None = Field(None, description="items passing the filters (None: no filter)")
    modality: str = Field(description="text or image: which IVF probing the query used")
    index_kind: str
    took_ms: float


class ItemResponse(BaseModel):
    """All metadata of one item (geometry as WKT, timestamp ISO 8601)."""

    id: str
    metadata: dict[str, Any]


class HealthResponse(BaseModel):
    status: str
    items: int
    dim: int
    index_kind: str
    text_queries: bool
    model_fingerprint: str | None = None
    preprocessing_fingerprint: str | None = None


class ErrorResponse(BaseModel):
    """Every 4xx reply: what was wrong, naming the field, id or option."""

    detail: str | list[Any]


__all__ = ["ErrorResponse", "FiltersModel", "HealthResponse", "HitModel", "ItemResponse", "MAX_K", "MAX_TEXT",
           "SearchRequest", "SearchResponse"]
