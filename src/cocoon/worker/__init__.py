"""cocoon.worker: serves a model to proxies from inside a TEE."""

from cocoon.worker.config import EngineSettings, WorkerConfig
from cocoon.worker.service import Worker, build_engine

__all__ = ["EngineSettings", "Worker", "WorkerConfig", "build_engine"]
