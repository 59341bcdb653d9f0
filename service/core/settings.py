"""All settings of the service, read from `EXPLAIN_*` environment variables; the only place that reads them."""

import ipaddress
import re
import socket
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from api_schemas.explain import MAX_CLASSES

_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
_API_KEY = re.compile(r"^[\x21-\x7e]{16,256}$")
_INSTANCE_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1); any other name may resolve anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    # hide_input_in_errors: a refused value (a list of API keys with one bad key) never appears in the message.
    model_config = SettingsConfigDict(env_prefix="EXPLAIN_", extra="forbid", hide_input_in_errors=True)

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
    max_queue_per_tenant: int | None = Field(
        default=None,
        ge=1,
        description="Of those queue places, how many one API key's requests may hold (waiting or in a batch); "
        "default half of MAX_QUEUE (rounded up) when keys are on, all of them when keys are off (one tenant).",
    )
    request_timeout_s: float = Field(default=30.0, gt=0)
    cpu_workers: int = Field(default=2, ge=1, le=64, description="Threads for decoding and encoding.")

    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_decoding_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=1024,
        description="Bytes of posted images read and not yet decoded, all requests together; a request that would "
        "pass it is refused (503 `queue_full`, Retry-After) unless it is the only one. A decode takes a few times "
        "its image's size in memory, so this bounds what a burst of large uploads costs.",
    )
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    overlay_max_side: int = Field(default=512, ge=16, le=4096)
    max_classes_per_request: int = Field(default=10, ge=1, le=MAX_CLASSES)
    max_request_cost: int = Field(
        default=4096,
        ge=0,
        description="Per-request bound on the work beyond the shared pass, in forward-pass equivalents (a forward + "
        "backward pass counts 3); 400 above it. The built-in model's costliest default, score_cam or ablation_cam "
        "at its default layer, costs 1280.",
    )
    max_explanations_per_request: int = Field(
        default=64, ge=1, le=4096, description="Explanations (methods x classes) one request may ask for; 400 above."
    )
    max_answer_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=64 * 1024,
        description="Bound on an answer's estimated size (maps, overlays, logits), checked before the work is "
        "queued; 400 `answer_too_large` above it, naming what shrinks it.",
    )
    pass_chunk_size: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Images per chunk of extra passes (long work runs one chunk between two batches); default: "
        "as many as take `PASS_CHUNK_MS` on the device, measured at start-up.",
    )
    pass_chunk_ms: float = Field(
        default=50.0, gt=0, le=10_000, description="Target duration of a chunk of extra passes (when no size is set)."
    )
    max_jobs: int = Field(
        default=256, ge=1, le=100_000, description="Jobs kept in memory (finished ones are forgotten first)."
    )
    max_jobs_per_tenant: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Jobs kept per API key (the key's own finished ones are forgotten first to make room).",
    )
    max_job_bytes: int = Field(
        default=1024 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes of job results kept in memory (a job not ended counts its answer's estimate).",
    )
    max_job_bytes_per_tenant: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Of those, how many one API key's jobs may hold (its own finished ones are forgotten first).",
    )
    job_ttl_s: float = Field(
        default=600.0,
        gt=0,
        description="How long a finished job's answer is kept (expired jobs are swept every few seconds).",
    )
    job_min_keep_s: float = Field(
        default=60.0,
        ge=0,
        description="A finished job is kept at least this long against other keys' new jobs (they are refused "
        "instead), so that its owner can read it.",
    )
    job_timeout_s: float = Field(
        default=3600.0, gt=0, description="Deadline of an explain request sent as a job (Prefer: respond-async)."
    )
    job_store_url: SecretStr | None = Field(
        default=None,
        description="Where jobs live: unset, in this replica's memory; `redis://[:password@]host:port/db` (or "
        "`rediss://`), in Redis, shared by every replica (any replica answers for any job, and a job whose "
        "replica dies is run again by another).",
    )
    job_lease_s: float = Field(
        default=10.0,
        ge=1,
        le=600,
        description="With jobs in Redis: a job whose replica has not renewed its lease for this long is taken "
        "over by another replica (renewed every third of it while the job runs).",
    )
    max_long_tasks: int = Field(
        default=4,
        ge=1,
        le=1024,
        description="Long requests and jobs (work of several chunks) running at once per model; more: 503.",
    )
    max_long_tasks_per_tenant: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Of those, how many one API key may run; default half of MAX_LONG_TASKS (rounded up) when keys "
        "are on, all of them when keys are off (one tenant).",
    )
    evaluation_steps: int = Field(default=16, ge=2, le=256, description="Steps of the deletion/insertion curves.")
    top_classes: int = Field(default=5, ge=1)

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default=[],
        description="Accepted API keys (comma-separated, 16-256 printable ASCII characters each); empty: no keys.",
    )
    allow_anonymous: bool = Field(
        default=False,
        description="Serve without API keys on an address other than loopback (anyone who reaches it may use it).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Browser origins allowed by CORS, e.g. `https://dash.example.com` (comma-separated); empty: none.",
    )
    instance_id: str = Field(
        default_factory=socket.gethostname,
        description="Name of this replica, sent in the `X-Instance` header of every answer (default the host name).",
    )
    shutdown_grace_s: float = Field(
        default=25.0,
        gt=0,
        le=3600,
        description="After SIGTERM: how long in-flight requests may take before the process exits anyway.",
    )

    @field_validator("models", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split_commas(value)

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

    @field_validator("instance_id")
    @classmethod
    def _header_safe_instance(cls, value: str) -> str:
        if not _INSTANCE_ID.match(value):
            raise ValueError("instance id must be 1 to 128 printable ASCII characters without spaces (a header value)")
        return value

    @field_validator("api_keys")
    @classmethod
    def _usable_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for number, key in enumerate(value, start=1):
            if not _API_KEY.match(key.get_secret_value()):
                raise ValueError(f"API key #{number} must be 16 to 256 printable ASCII characters without spaces")
        return value

    @property
    def long_tasks_per_tenant(self) -> int:
        return self._tenant_share(self.max_long_tasks_per_tenant, self.max_long_tasks)

    @property
    def queue_per_tenant(self) -> int:
        return self._tenant_share(self.max_queue_per_tenant, self.max_queue)

    def _tenant_share(self, setting: int | None, total: int) -> int:
        """A tenant's share of `total`: the setting, or half (rounded up) when keys are on, all when off."""
        if setting is not None:
            return min(setting, total)
        return -(-total // 2) if self.api_keys else total

    @field_validator("job_store_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("the job store URL must start with redis://, rediss:// or unix:// (not shown here)")
        return value

    @model_validator(mode="after")
    def _a_job_fits_its_share(self) -> "Settings":
        if self.max_job_bytes_per_tenant < self.max_answer_bytes or self.max_job_bytes < self.max_answer_bytes:
            raise ValueError(
                "MAX_JOB_BYTES and MAX_JOB_BYTES_PER_TENANT must each hold at least one answer (MAX_ANSWER_BYTES)"
            )
        return self

    @model_validator(mode="after")
    def _closed_by_default(self) -> "Settings":
        if not self.api_keys and not self.allow_anonymous and not is_loopback(self.host):
            raise ValueError(
                f"EXPLAIN_HOST={self.host} is not a loopback address and no EXPLAIN_API_KEYS are set: set keys, or "
                "EXPLAIN_ALLOW_ANONYMOUS=true to let anyone who can reach the service use it"
            )
        return self

    @field_validator("cors_origins")
    @classmethod
    def _explicit_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not _ORIGIN.match(origin):
                raise ValueError(
                    f"CORS origin {origin!r} must be scheme://host[:port] with no path, e.g. https://dash.example.com; "
                    "'*' is not accepted: list the origins"
                )
        return value
