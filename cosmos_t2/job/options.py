"""How a job runs, as a command line says it: the one settings object and the one builder of `RunOptions`.

`infer` (and the server, which runs what `infer` parsed), the workflow (which runs `infer`), `bench --e2e`,
`bench`'s step and `validate --estimate` each fill a `RunSettings` and read the device, the `Acceleration`
and the memory options from it here, so a setting means one thing everywhere: what `bench` times is what a
job gets, and `validate --estimate` plans the network `infer` would run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmos_t2.job.run import RunOptions
from cosmos_t2.model.device import resolve_device
from cosmos_t2.runtime.acceleration import Acceleration, resolve_acceleration


@dataclass(frozen=True)
class RunSettings:
    """The command line's settings of how the network runs (not what the job makes: that is the spec)."""

    device: str | None = None  # None: CUDA when present, else the CPU
    compile: bool | None = None  # None: on for CUDA, off for the CPU
    compile_mode: str | None = None
    attn_backend: str = "auto"
    compile_cache: Path | None = None  # None: `default_compile_cache_dir()`
    use_compile_cache: bool = True
    deterministic: bool | None = None  # None: the project's default on CUDA (CPU: always)
    offload: str = "auto"  # auto | none | model | blocks (runtime.memory)
    memory_cap_gib: float | None = None

    def resolved_device(self) -> str:
        """The device's name; a given one is checked (a server checks what its client only parsed)."""
        if self.device is not None:
            resolve_device(self.device)
            return self.device
        return resolve_device(None).type

    def acceleration(self, device: str | None = None) -> Acceleration:
        """The optimisations a job on `device` (default: `resolved_device()`) runs with."""
        return resolve_acceleration(
            device or self.resolved_device(),
            compile=self.compile,
            compile_mode=self.compile_mode,
            attn_backend=self.attn_backend,
            compile_cache=self.compile_cache,
            use_compile_cache=self.use_compile_cache,
            deterministic=self.deterministic,
        )


def build_run_options(settings: RunSettings, *, out_dir: Path | None, **job: Any) -> RunOptions:
    """The `RunOptions` of `settings`, with `job`'s other `RunOptions` fields (model folder, pool, events...).

    `out_dir` may be None until a spec names one (the caller fills it in before any job runs)."""
    device = settings.resolved_device()
    return RunOptions(
        out_dir=out_dir,  # type: ignore[arg-type]  # see the docstring
        device=device,
        acceleration=settings.acceleration(device),
        offload=settings.offload,
        memory_cap_gib=settings.memory_cap_gib,
        **job,
    )
