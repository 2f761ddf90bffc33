"""All configuration in one pydantic-settings class.

Environment variables win over the .env file (pydantic-settings' default order), so a
container's `environment:` overrides what an operator left in `.env`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    proxy_api_key: SecretStr = SecretStr("")
    hf_token: SecretStr | None = None
    hf_endpoint: str = "https://huggingface.co"
    models_dir: Path = Path("./models")
    env_file: Path = Path(".env")
    default_model: str = ""
    inference_container: str = "vllm"
    managed_containers: str = ""  # comma separated; empty means just INFERENCE_CONTAINER
    api_host: str = "127.0.0.1"
    api_port: int = 8787
    state_db: Path = Path("./state/state.db")
    max_concurrent_downloads: int = Field(2, ge=1, le=16)
    max_queue_length: int = Field(32, ge=1)
    download_connections: int = Field(8, ge=1, le=32)
    max_total_connections: int = Field(16, ge=1, le=256)
    transfer_process: bool = True   # run the byte transfers in a child process (api/download/remote.py)
    part_size_mb: int = Field(64, ge=1)
    stall_timeout: float = Field(30.0, gt=0)
    connect_timeout: float = Field(15.0, gt=0)
    max_retries: int = Field(8, ge=0)
    retry_backoff_max: float = Field(30.0, gt=0)
    disk_reserve_mb: int = Field(1024, ge=0)
    hub_submit_timeout: float = Field(10.0, gt=0)
    hub_submit_workers: int = Field(4, ge=1, le=64)
    job_retention_days: float = Field(30.0, ge=0)
    max_concurrent_verifies: int = Field(2, ge=1, le=16)
    rate_limit: str = "120/minute"
    rate_limit_enabled: bool = True
    trusted_proxies: str = ""  # comma separated addresses/CIDRs whose X-Forwarded-For is believed
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    docker_host: str | None = None
    inference_health_url: str | None = None
    inference_models_url: str | None = None
    # A cold 30-70B load takes 5-15 minutes: as long as the compose healthcheck's start period allows.
    switch_timeout: float = Field(900.0, gt=0)
    inference_api_key: SecretStr | None = None   # vLLM's --api-key: the switch's /v1/models probe sends it
    served_model_alias: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")
    serve_profiles_file: Path = Path("./serve-profiles.yaml")
    switch_propose_profile: bool = True   # a model without a profile gets one from the fit planner
    webhook_secret: SecretStr | None = None
    webhook_allowed_hosts: str = ""
    webhook_max_attempts: int = Field(5, ge=1, le=20)
    webhook_backoff_max: float = Field(30.0, gt=0)
    log_level: str = "info"
    bandwidth_limit: str = ""  # e.g. 40MB/s; empty or 0: unlimited (PUT /api/limits changes it at run time)
    # Swarm mode (docs/fleet.md): the API on a manager node drives a fleet through Swarm.
    orchestrator: Literal["container", "swarm"] = "container"
    inference_service: str = "llmbox_vllm"
    fleet_image: str = "llm-box-admin-api:latest"      # runs the node CLI on every node
    fleet_models_path: str = "/srv/llmbox/models"      # each node's models folder (Swarm templates allowed)
    fleet_job_timeout: float = Field(6 * 3600.0, gt=0)
    fleet_nodes_ttl: float = Field(30.0, ge=0)
    fleet_node_retries: int = Field(2, ge=0, le=10)     # new runs of a node's failed fetch (fleet/retry.py)
    fleet_retry_backoff: float = Field(10.0, ge=0)      # seconds before the first; doubles for each next
    # Inspection, fit planner, catalog (docs/choosing-a-variant.md)
    gpu_memory_gb: float | None = Field(None, gt=0)        # GiB; unset: NVML, then nvidia-smi in the container
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)  # vLLM's --gpu-memory-utilization
    fit_overhead_mb: int = Field(1024, ge=0)                # CUDA context, activations, CUDA graphs
    kv_cache_dtype: str = Field("auto", pattern=r"^(auto|fp8|fp8_e4m3|fp8_e5m2|fp16|bfloat16)$")
    catalog_file: Path | None = None                        # unset: the catalog shipped in api/inspect
    hub_timeout: float = Field(10.0, gt=0)                  # one metadata call (inspect, update check)

    @field_validator("hf_endpoint")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, v: str) -> str:
        from .request_guard import parse_networks
        parse_networks(v)
        return v

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, v: str) -> str:
        from .callback_policy import CallbackPolicy
        CallbackPolicy(v)   # a bad entry stops the start, not the first webhook
        return v
    @field_validator("bandwidth_limit")
    @classmethod
    def _rate(cls, v: str) -> str:
        from .download.bandwidth import parse_rate
        parse_rate(v)  # ValueError: the settings refuse it at start
        return v.strip()

    @property
    def bandwidth_limit_bps(self) -> int:
        from .download.bandwidth import parse_rate
        return parse_rate(self.bandwidth_limit)

    @classmethod
    def from_environment(cls) -> "Settings":
        """Environment first, then the .env file named by ENV_FILE (default ./.env)."""
        return cls(_env_file=os.environ.get("ENV_FILE", ".env"))

    @property
    def hf_cache(self) -> Path:
        return self.models_dir / "hub"

    @property
    def managed_container_names(self) -> list[str]:
        names = [n.strip() for n in self.managed_containers.split(",") if n.strip()]
        return names or [self.inference_container]

    def token(self) -> str | None:
        if self.hf_token is None:
            return None
        return self.hf_token.get_secret_value() or None
