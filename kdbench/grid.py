"""Expand a run configuration into cells: method × task × domain × fraction × seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kdbench.api import KDBenchError
from kdbench.registry import UnknownNameError, did_you_mean

if TYPE_CHECKING:
    from kdbench.config import RunConfig
    from kdbench.registry import Registry


@dataclass(frozen=True, order=True)
class Cell:
    task: str
    fraction: float
    seed: int
    domain: str
    method: str

    @property
    def key(self) -> str:
        """File-system safe, unique name of the cell."""
        method = self.method.replace(":", "-")
        return f"{self.task}__{self.domain}__{method}__f{self.fraction:g}__s{self.seed}"

    def describe(self) -> str:
        return f"{self.method} · {self.task}/{self.domain} · f={self.fraction:g} · seed {self.seed}"


def task_domains(config: RunConfig, registry: Registry) -> dict[str, tuple[str, ...]]:
    """Selected domains of each selected task; every name given must belong to some task."""
    tasks = {name: registry.tasks.get(name) for name in config.tasks}
    if config.domains is None:
        return {name: cls.domains for name, cls in tasks.items()}
    known = [d for cls in tasks.values() for d in cls.domains]
    for d in config.domains:
        if d not in known:
            raise UnknownNameError(did_you_mean("domain", d, known))
    out = {name: tuple(d for d in cls.domains if d in config.domains) for name, cls in tasks.items()}
    empty = [name for name, doms in out.items() if not doms]
    if empty:
        raise KDBenchError(f"--domains selects no domain of task {empty[0]!r} "
                           f"(its domains: {', '.join(tasks[empty[0]].domains)})")
    return out


#: the most cells one run may list; a larger grid is refused before it is expanded
MAX_CELLS = 100_000


def grid_size(config: RunConfig, selected: dict[str, tuple[str, ...]]) -> int:
    """Number of cells, computed without listing them (``--seeds 10**18`` must not exhaust memory)."""
    per_seed = sum(len(d) for d in selected.values()) * len(config.methods) * len(config.fractions)
    return per_seed * config.seeds


def expand(config: RunConfig, registry: Registry) -> list[Cell]:
    """All cells, method innermost: cells that share a teacher and a subset run back to back."""
    for m in config.methods:
        registry.methods.get(m)
    selected = task_domains(config, registry)
    size = grid_size(config, selected)
    if size > MAX_CELLS:
        raise KDBenchError(f"the grid has {size:,} cells (methods × domains × fractions × seeds), more than "
                           f"{MAX_CELLS:,}; split it into several runs or lower --seeds")
    cells = []
    for task, domains in selected.items():
        for fraction in config.fractions:
            for seed in range(config.seeds):
                for domain in domains:
                    for method in config.methods:
                        cells.append(Cell(task, fraction, seed, domain, method))
    return cells
