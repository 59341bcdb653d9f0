"""All settings of the service, read from `EXPLAIN_*` environment variables; the only place that reads them."""

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXPLAIN_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"

    models: Annotated[list[str], NoDecode] = Field(
        default=["efficientnet_lite0"], description="Models loaded warm at start-up (comma-separated)."
    )
    model_store_dir: Path | None = Field(default=None, description="Extra manifests (see model_store).")
    device: str = Field(default="auto", description="`auto` (CUDA when available, else CPU), `cpu`, `cuda:N`.")

    max_batch_size: int = Field(default=16, ge=1, le=1024)
    max_batch_delay_ms: float = Field(default=5.0, ge=0, le=1000)
    max_queue: int = Field(default=64, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0)
    cpu_workers: int = Field(default=2, ge=1, le=64, description="Threads for decoding and encoding.")

    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    overlay_max_side: int = Field(default=512, ge=16, le=4096)
    max_classes_per_request: int = Field(default=10, ge=1)
    max_extra_passes: int = Field(
        default=512, ge=0, description="Per-request bound on forward passes beyond the shared ones (400 above it)."
    )
    pass_chunk_size: int = Field(default=32, ge=1, le=1024, description="Images per extra batched pass.")
    evaluation_steps: int = Field(default=16, ge=2, le=256, description="Steps of the deletion/insertion curves.")
    top_classes: int = Field(default=5, ge=1)

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("models")
    @classmethod
    def _at_least_one_model(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one model to load")
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value != "auto" and not (value == "cpu" or value == "cuda" or value.startswith("cuda:")):
            raise ValueError("device must be auto, cpu, cuda or cuda:N")
        return value
