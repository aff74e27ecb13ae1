"""Factors of variation (FoV): a hierarchical space of named, dot-keyed leaves.

An env declares e.g. ``VariationSpace({"agent": {"color": RGB((255, 0, 0)), "scale": Box(20, 60, default=40)}})``
and reads ``values["agent.color"]``. ``resolve(["agent"])`` expands a parent key to its leaves and ``"all"`` to
every leaf; unknown keys and out-of-range values raise ``ValueError`` naming what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


class Box:
    """A continuous (or integer) leaf: values in [low, high] with a fixed shape."""

    def __init__(self, low, high, shape=(), default=None, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.low = np.broadcast_to(np.asarray(low, dtype=np.float64), shape).copy()
        self.high = np.broadcast_to(np.asarray(high, dtype=np.float64), shape).copy()
        self.shape = tuple(shape)
        if np.any(self.low > self.high):
            raise ValueError(f"Box low {self.low} exceeds high {self.high}")
        mid = (self.low + self.high) / 2 if default is None else default
        self.default = self.validate(mid, "<default>")

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        if np.issubdtype(self.dtype, np.integer):
            value = rng.integers(self.low.astype(np.int64), self.high.astype(np.int64) + 1, size=self.shape)
        else:
            value = rng.uniform(self.low, self.high, size=self.shape)
        return np.asarray(value, dtype=self.dtype)

    def validate(self, value, key: str) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != self.shape:
            try:
                arr = np.broadcast_to(arr, self.shape)
            except ValueError:
                raise ValueError(f"variation {key!r}: expected shape {self.shape}, got {np.shape(value)}") from None
        # a float32 leaf's own values (e.g. read back from a dataset) may round just past a bound: allowed
        tol = 1e-9 + (np.finfo(self.dtype).eps * np.maximum(np.abs(self.low), np.abs(self.high))
                      if np.issubdtype(self.dtype, np.floating) else 0.0)
        if not np.all(np.isfinite(arr)) or np.any(arr < self.low - tol) or np.any(arr > self.high + tol):
            raise ValueError(
                f"variation {key!r}: value {np.asarray(value).tolist()} is outside the allowed range "
                f"[{self.low.tolist()}, {self.high.tolist()}]"
            )
        if np.issubdtype(self.dtype, np.integer) and np.any(arr != np.round(arr)):
            raise ValueError(f"variation {key!r}: value {np.asarray(value).tolist()} must be whole numbers "
                             f"(an integer leaf in [{self.low.tolist()}, {self.high.tolist()}])")
        return np.asarray(np.round(arr) if np.issubdtype(self.dtype, np.integer) else arr, dtype=self.dtype).copy()

    def describe(self) -> str:
        return f"Box[{self.low.tolist()}, {self.high.tolist()}]"


class RGB(Box):
    """An RGB color leaf: 3 uint8 channels."""

    def __init__(self, default=(0, 0, 0)):
        super().__init__(0, 255, shape=(3,), default=default, dtype=np.uint8)


class Discrete(Box):
    """One of ``n`` choices, optionally named (e.g. shapes); the value is the integer index."""

    def __init__(self, n: int, default: int = 0, names: Iterable[str] | None = None):
        self.n = int(n)
        self.names = tuple(names) if names is not None else None
        if self.names is not None and len(self.names) != self.n:
            raise ValueError(f"Discrete: {len(self.names)} names for n={n}")
        super().__init__(0, n - 1, shape=(), default=default, dtype=np.int64)

    def validate(self, value, key: str) -> np.ndarray:
        if self.names is not None and isinstance(value, str):
            if value not in self.names:
                raise ValueError(f"variation {key!r}: {value!r} is not one of {list(self.names)}")
            value = self.names.index(value)
        if np.asarray(value, dtype=np.float64).ndim == 0 and float(value) != int(float(value)):
            raise ValueError(f"variation {key!r}: {value!r} is not an integer in [0, {self.n - 1}]")
        return super().validate(value, key)

    def describe(self) -> str:
        return f"Discrete({self.n}{', ' + str(list(self.names)) if self.names else ''})"


Leaf = Box


class VariationSpace:
    """A tree of leaves addressed by dot keys (``"agent.color"``)."""

    def __init__(self, tree: Mapping):
        self.leaves: dict[str, Box] = {}
        self._flatten(tree, "")

    def _flatten(self, tree: Mapping, prefix: str) -> None:
        for name, node in tree.items():
            key = f"{prefix}{name}"
            if isinstance(node, Box):
                self.leaves[key] = node
            elif isinstance(node, Mapping):
                self._flatten(node, key + ".")
            else:
                raise TypeError(f"variation space node {key!r} must be a Box or a dict, got {type(node).__name__}")

    def keys(self) -> list[str]:
        return list(self.leaves)

    def __getitem__(self, key: str) -> Box:
        return self.leaves[key]

    def __contains__(self, key: str) -> bool:
        return key in self.leaves

    def resolve(self, keys: Iterable[str] | str | None) -> list[str]:
        """Leaf keys named by ``keys``: leaves, parents (their whole subtree) or ``'all'``; in space order."""
        if keys is None:
            return []
        if isinstance(keys, str):
            keys = [keys]
        wanted: set[str] = set()
        for key in keys:
            if key == "all":
                wanted.update(self.leaves)
                continue
            sub = [k for k in self.leaves if k == key or k.startswith(key + ".")]
            if not sub:
                raise ValueError(f"unknown variation key {key!r}; valid keys: 'all', {self.valid_keys()}")
            wanted.update(sub)
        return [k for k in self.leaves if k in wanted]

    def valid_keys(self) -> list[str]:
        parents = sorted({k.rsplit(".", i)[0] for k in self.leaves for i in range(1, k.count(".") + 1)})
        return parents + self.keys()

    def defaults(self) -> dict[str, np.ndarray]:
        return {k: leaf.default.copy() for k, leaf in self.leaves.items()}

    def sample(self, keys, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {k: self.leaves[k].sample(rng) for k in self.resolve(keys)}

    def validate(self, values: Mapping) -> dict[str, np.ndarray]:
        out = {}
        for key, value in values.items():
            if key not in self.leaves:
                raise ValueError(f"unknown variation key {key!r}; valid keys: {self.keys()}")
            out[key] = self.leaves[key].validate(value, key)
        return out

    def sampled_keys(self, default_keys, options: Mapping | None) -> list[str]:
        """The leaves one episode samples: the env's default variations plus the requested ``options['variation']``
        (a key, a list of keys or 'all'), resolved; ``options['variation_values']`` then fixes some of them."""
        requested = (options or {}).get("variation") or []
        if not isinstance(requested, (str, list, tuple)):
            raise ValueError(f"options['variation'] names the keys to sample (a key, a list of keys or 'all'), got "
                             f"{type(requested).__name__} {requested!r}; give fixed values in "
                             "options['variation_values']")
        return self.resolve(list(default_keys) + list([requested] if isinstance(requested, str) else requested))

    def values_for_episode(self, default_keys, options: Mapping | None, rng: np.random.Generator):
        """The values in force for one episode: defaults, then the env's default variations plus the requested
        ``options['variation']`` sampled (additive, never replacing), then ``options['variation_values']``."""
        options = options or {}
        values = self.defaults()
        values.update(self.sample(self.sampled_keys(default_keys, options), rng))
        values.update(self.validate(options.get("variation_values") or {}))
        return values

    def describe(self) -> dict[str, str]:
        return {k: leaf.describe() for k, leaf in self.leaves.items()}
