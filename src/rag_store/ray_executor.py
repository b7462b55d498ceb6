"""The Ray embedding executor (var `embedding_executor: ray`).

The build's own process stays the driver: it cuts the pending chunks into the same
length-sorted batches as the local executor and keeps the in-flight checkpoint. Ray actors,
each holding the model once, embed the batches. Every batch that comes back is committed to
the checkpoint at once (the `save` callback), so a killed build loses only the batches still
on the workers, and the rest of the pipeline does not know Ray was there.

A worker that dies (its process killed, its node lost) is replaced by a new actor and the
batches it held go back to the queue; a worker that keeps dying (a model missing on its
node, say) ends the build with the cause after MAX_REPLACEMENTS per worker slot.

`ray_address` '' starts a Ray instance on this machine for the build and stops it after;
'auto' or 'host:port' joins a running cluster (`ray start --head`), whose nodes need
rag-store and the model installed as here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from rag_store.embedder_info import EmbedderInfo

# Batches queued on each worker beyond the one it runs, so it never waits for the driver.
QUEUED_PER_WORKER = 1
# Replacement actors per worker slot before the build gives up.
MAX_REPLACEMENTS = 3
# How often the driver says it is still waiting for a first result (model loads, slow nodes).
WAITING_REPORT_SECONDS = 60.0


class RayExecutorError(RuntimeError):
    """The Ray executor cannot go on; the message names the cause and the remedy."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayExecutorError(
            "embedding_executor: ray needs the ray package, which `make setup` installs "
            "(pip install ray==2.60.0)"
        ) from None
    return ray


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _connect(ray, address: str) -> bool:
    """Join the cluster at `address` or start a local instance; True when this call
    started Ray in this process (and must shut it down)."""
    if ray.is_initialized():
        return False
    settings = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address:
            ray.init(address=address, **settings)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **settings)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise RayExecutorError(
            f"could not reach {where}: {_first_line(str(exc))}; start a cluster with "
            "`ray start --head` and set ray_address to its address (or '' for a local one)"
        ) from None
    return True


def _auth_token_available() -> bool:
    """Whether Ray would find an authentication token (its env vars or ~/.ray/auth_token)."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return True
    return (Path.home() / ".ray" / "auth_token").is_file()


class Embedder:
    """The work of one Ray actor: the model, loaded once, embedding batch after batch."""

    def __init__(self, model_ref: str, device: str, texts: int, threads: int):
        from rag_store.embedder_info import embedder_info
        from rag_store.embedding import load_model

        self.model_ref = model_ref
        self.info = embedder_info(model_ref)
        self.encoder = None
        if self.info.backend == "sentence-transformers":
            # `texts` is the whole job's size, so the worker picks the engine the local
            # executor would: the same batches then give the same vectors.
            self.encoder = load_model(model_ref, texts, device)
            if self.encoder.device == "cpu":
                self.encoder.set_threads(threads)

    def where(self) -> tuple[str, int, str]:
        return socket.gethostname(), os.getpid(), getattr(self.encoder, "device", "cpu")

    def embed(self, texts: list[str]):
        from rag_store.embedding_job import embed_batch_or_errors

        return embed_batch_or_errors(texts, self.info, self.model_ref, self.encoder)


def _lost_worker_errors(ray) -> tuple[type[BaseException], ...]:
    names = ("RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError")
    return tuple(
        error for name in names if (error := getattr(ray.exceptions, name, None)) is not None
    )


def embed(
    texts: Sequence[str],
    batches: list[list[int]],
    info: EmbedderInfo,
    config,
    save: Callable,
    log: Callable[[str], None],
) -> None:
    """Embed `batches` (positions in `texts`) on Ray; `save(batch, vectors, errors)` is
    called in the driver for each batch as it arrives, in arrival order."""
    if not batches:
        return
    if config.ray_address and "RAY_AUTH_MODE" not in os.environ and _auth_token_available():
        # `ray start` turns token authentication on when this user has a token; a driver
        # joining by address does not, and is refused. Join the way the cluster runs (Ray
        # reads the mode when it is imported, so this comes first).
        os.environ["RAY_AUTH_MODE"] = "token"
    ray = _import_ray()
    started_here = _connect(ray, config.ray_address)
    pool = None
    try:
        pool = _WorkerPool(ray, info, config, sum(len(batch) for batch in batches), len(batches))
        log(
            f"chunk_embeddings: {len(batches)} batch(es) on {pool.size} Ray worker(s) "
            f"({config.ray_address or 'a local Ray instance'}, {pool.resources})"
        )
        _run(ray, pool, texts, batches, save, log)
    finally:
        if pool is not None:
            pool.close()
        if started_here:
            ray.shutdown()


class _WorkerPool:
    """Worker slots, each holding one live actor and the batches queued on it."""

    def __init__(self, ray, info: EmbedderInfo, config, texts: int, batches: int):
        self.ray, self.config, self.texts = ray, config, texts
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if config.device == "cuda" and not gpus:
            raise RayExecutorError(
                "embedding_device=cuda but the Ray cluster has no GPU; add a GPU node or set "
                "embedding_device: auto"
            )
        on_gpus = info.backend == "sentence-transformers" and (
            config.device == "cuda" or (config.device == "auto" and gpus > 0)
        )
        available = max(1, gpus if on_gpus else int(resources.get("CPU", 1)))
        # No more actors than the cluster can place: an actor waiting for a CPU would hold
        # its queued batches forever.
        self.size = max(1, min(config.ray_workers or available, available, batches))
        self.resources = "1 GPU each" if on_gpus else "1 CPU each"
        self.actor_class = ray.remote(
            num_cpus=1,
            num_gpus=1 if on_gpus else 0,
            max_restarts=0,
            max_task_retries=0,
            runtime_env={"env_vars": _worker_environment()},
        )(Embedder)
        self.actors = [self._start() for _ in range(self.size)]
        self.generation = [0] * self.size
        self.queued = [0] * self.size
        self.replacements = 0

    def _start(self):
        return self.actor_class.remote(self.config.model_ref, self.config.device, self.texts, 1)

    def replace(self, slot: int, cause: BaseException) -> None:
        self.replacements += 1
        if self.replacements > MAX_REPLACEMENTS * self.size:
            raise RayExecutorError(
                f"Ray workers keep failing ({self.replacements - 1} replaced); the last one: "
                f"{_first_line(str(cause))}"
            )
        self.ray.kill(self.actors[slot], no_restart=True)
        self.actors[slot] = self._start()
        self.generation[slot] += 1
        self.queued[slot] = 0

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):  # already gone: nothing to stop
                self.ray.kill(actor, no_restart=True)


def _worker_environment() -> dict[str, str]:
    """What the workers need of the driver's environment: no hub, the same engine choice."""
    from rag_store.embedding import RUNTIME_ENV

    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if os.environ.get(RUNTIME_ENV):
        env[RUNTIME_ENV] = os.environ[RUNTIME_ENV]
    return env


def _run(ray, pool: _WorkerPool, texts, batches, save, log) -> None:
    waiting = deque(range(len(batches)))
    running: dict = {}  # object ref -> (slot, generation, batch index)

    def submit(slot: int) -> None:
        while waiting and pool.queued[slot] <= QUEUED_PER_WORKER:
            index = waiting.popleft()
            ref = pool.actors[slot].embed.remote([texts[i] for i in batches[index]])
            running[ref] = (slot, pool.generation[slot], index)
            pool.queued[slot] += 1

    lost = _lost_worker_errors(ray)
    for slot in range(pool.size):
        submit(slot)
    last_result = time.monotonic()
    while running:
        ready, _ = ray.wait(list(running), num_returns=1, timeout=WAITING_REPORT_SECONDS)
        if not ready:
            log(
                f"chunk_embeddings: waiting for Ray workers "
                f"({time.monotonic() - last_result:.0f}s without a result)"
            )
            continue
        slot, generation, index = running.pop(ready[0])
        current = generation == pool.generation[slot]
        if current:
            pool.queued[slot] -= 1
        try:
            vectors, errors = ray.get(ready[0])
        except lost as exc:
            waiting.appendleft(index)
            if current:
                log(
                    f"chunk_embeddings: Ray worker {slot} lost ({_first_line(str(exc))[:200]}); "
                    "its batches go to a new worker"
                )
                pool.replace(slot, exc)
            for other in range(pool.size):
                submit(other)
            continue
        except ray.exceptions.RayTaskError as exc:
            raise RayExecutorError(f"a Ray worker failed: {_first_line(str(exc))}") from None
        last_result = time.monotonic()
        save(batches[index], vectors, errors)
        if current:
            submit(slot)
    if waiting:  # every batch is either saved or still queued: never silently dropped
        raise RayExecutorError(f"{len(waiting)} batch(es) were left unembedded")
