"""Jobs of the one-vs-all protocol: (dataset, method, normal class, seed), and their slices."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Job:
    dataset: str  # the dataset's display name (for npz: the file's stem)
    method: str
    normal_class: int
    class_name: str
    seed: int
    preset: str

    @property
    def key(self) -> str:
        """File-system-safe identity of the job; its record lives under this name."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.class_name)[:60]
        return f"class-{self.normal_class:04d}-{safe}__seed-{self.seed}"

    def to_dict(self) -> dict:
        return asdict(self)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (0 ≤ i < n, zero-based like SLURM_ARRAY_TASK_ID) → (i, n)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ConfigError(f"--shard expects i/n (e.g. 0/4), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need 0 <= i < n")
    return i, n


def shard(jobs: list[Job], i: int, n: int) -> list[Job]:
    """The i-th of n interleaved slices: every job is in exactly one slice."""
    return jobs[i::n]


def parse_classes(text: str | None, class_names: list[str]) -> list[int]:
    """``None``/``all`` → every class; else comma-separated indices, ranges ``a-b`` or names."""
    n = len(class_names)
    if text is None or text.strip().lower() == "all":
        return list(range(n))
    out: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        if re.fullmatch(r"\d+-\d+", part):
            a, b = map(int, part.split("-"))
            idx = list(range(a, b + 1))
        elif part.isdigit():
            idx = [int(part)]
        elif part in class_names:
            idx = [class_names.index(part)]
        else:
            raise ConfigError(f"unknown class {part!r}; classes are 0..{n - 1} or names such as "
                              f"{', '.join(class_names[:5])}")
        for c in idx:
            if not 0 <= c < n:
                raise ConfigError(f"class index {c} out of range 0..{n - 1}")
            if c not in out:
                out.append(c)
    if not out:
        raise ConfigError("no classes selected")
    return out


def parse_seeds(text: str | None) -> list[int]:
    if text is None:
        return [0]
    out: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if re.fullmatch(r"\d+-\d+", part):
            a, b = map(int, part.split("-"))
            out += list(range(a, b + 1))
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ConfigError(f"--seeds expects integers or ranges like 0-4, got {part!r}")
    return list(dict.fromkeys(out))  # a seed named twice is one job, not two
