"""Drift from a table of measured statistics: mean shift and spread per conductance level and time.

The study drew its drift from one week of measurements on the authors' own 1T1R devices;
those data are private. This preset takes any such table as a CSV file
with the header ``time_s,g_uS,mean_shift_uS,std_uS`` (one row per time and conductance
level, the same levels at every time). The default table is built from public data: the
NeuRRAM 1T1R statistics of W. Wan et al., "A compute-in-memory chip based on resistive
random-access memory", Nature 608, 504-512 (2022), as fitted with 4th-order polynomials in
aihwkit's ``ReRamWan2022NoiseModel`` (``src/aihwkit/inference/noise/reram.py``): zero mean,
spread sigma(g_hat) in µS with ``g_hat = g_target / g_max`` fitted at ``g_max = 40 µS`` (sigma
scales with ``g_max / 40``), at 1 s, 1 day and 2 days after programming. The table is
shipped as ``neurram_wan2022.csv`` (= ``neurram_table()``).
"""
from __future__ import annotations

import bisect
import csv
import hashlib
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from rramlib.core.errors import RramlibError, check_type
from rramlib.core.times import DAY
from rramlib.device.drift.base import DriftModel, _number

__all__ = ["DriftTable", "Measured", "neurram_table", "NEURRAM_COEFFS", "NEURRAM_G_REF", "NEURRAM_CSV",
           "TABLE_COLUMNS"]

#: the CSV header, in this order
TABLE_COLUMNS = ("time_s", "g_uS", "mean_shift_uS", "std_uS")

#: NeuRRAM (Wan et al. 2022) spread polynomials as fitted in aihwkit: time (s) -> (c0, c1, c2, c3, c4),
#: sigma = sum_i c_i g_hat^i in µS at g_max = 40 µS
NEURRAM_COEFFS: dict[float, tuple[float, ...]] = {
    1.0: (0.348, 16.030, -43.853, 45.393, -16.815),
    DAY: (0.701, 22.086, -50.773, 47.095, -16.458),
    2 * DAY: (0.782, 20.274, -43.507, 37.062, -11.934),
}
#: g_max (µS) at which the NeuRRAM polynomials were fitted
NEURRAM_G_REF = 40.0
#: the shipped default table
NEURRAM_CSV = Path(__file__).with_name("neurram_wan2022.csv")


class DriftTable:
    """Drift statistics on a rectangular grid: ``times`` (s) x ``g`` (µS).

    ``mean_shift[k, j]`` and ``std[k, j]`` (µS) are the mean and standard deviation of
    ``G - g_target`` at ``times[k]`` for devices programmed to ``g[j]``.

    Reading the table at ``(g, t)`` (:meth:`interpolate`):

    * linear in g between grid levels; outside ``[g[0], g[-1]]`` the edge level is used;
    * linear in ln t between table times; for ``0 < t < times[0]`` the first time's row is
      used (the table says nothing earlier; our choice); beyond ``times[-1]`` the line through
      the last two times (in ln t) is extended, with the spread clamped at >= 0 on the grid
      (a table with a single time is constant in t);
    * ``t = 0`` is not read from the table: the preset returns the target conductance there.
    """

    def __init__(self, times: Sequence[float] | Tensor, g: Sequence[float] | Tensor,
                 mean_shift: Sequence[Sequence[float]] | Tensor, std: Sequence[Sequence[float]] | Tensor,
                 *, source: str = "<drift table>") -> None:
        self.source = source
        try:
            self.times, self.g, self.mean_shift, self.std = (
                torch.as_tensor(v, dtype=torch.float64).clone() for v in (times, g, mean_shift, std))
        except (TypeError, ValueError, RuntimeError) as err:
            raise RramlibError(f"{source}: times, g, mean_shift and std must be numbers on a grid ({err})") from None
        n_t, n_g = self.times.numel(), self.g.numel()
        if self.times.dim() != 1 or n_t < 1:
            raise RramlibError(f"{source}: a drift table needs at least one time")
        if self.g.dim() != 1 or n_g < 2:
            raise RramlibError(f"{source}: a drift table needs at least two conductance points per time")
        for name, values in (("mean_shift", self.mean_shift), ("std", self.std)):
            if tuple(values.shape) != (n_t, n_g):
                raise RramlibError(f"{source}: {name} must have shape (times, g) = ({n_t}, {n_g}), "
                                   f"got {tuple(values.shape)}")
        for name, values in (("times", self.times), ("g", self.g), ("mean_shift", self.mean_shift),
                             ("std", self.std)):
            if not bool(torch.isfinite(values).all()):
                raise RramlibError(f"{source}: {name} contains NaN or infinity")
        if bool((self.times <= 0).any()) or bool((self.times.diff() <= 0).any()):
            raise RramlibError(f"{source}: times must be > 0 and strictly increasing")
        if bool((self.g < 0).any()) or bool((self.g.diff() <= 0).any()):
            raise RramlibError(f"{source}: conductances must be >= 0 and strictly increasing")
        if bool((self.std < 0).any()):
            raise RramlibError(f"{source}: std must be >= 0")
        self._log_times = [math.log(v) for v in self.times.tolist()]

    # ------------------------------------------------------------------ reading
    def time_weights(self, t: float) -> tuple[int, float]:
        """``(k, a)`` such that the row at ``t > 0`` is ``(1 - a) row[k] + a row[k + 1]`` (a > 1: extrapolation)."""
        n_t = len(self._log_times)
        if n_t == 1 or t <= self.times[0].item():
            return 0, 0.0
        log_t = math.log(t)
        k = min(bisect.bisect_right(self._log_times, log_t) - 1, n_t - 2)
        lo, hi = self._log_times[k], self._log_times[k + 1]
        return k, (log_t - lo) / (hi - lo)

    def rows_at(self, t: float) -> tuple[Tensor, Tensor]:
        """Mean shift and spread (float64, one value per grid level) at ``t > 0`` seconds."""
        k, a = self.time_weights(t)
        if a == 0.0:
            return self.mean_shift[k].clone(), self.std[k].clone()
        mean = (1 - a) * self.mean_shift[k] + a * self.mean_shift[k + 1]
        std = ((1 - a) * self.std[k] + a * self.std[k + 1]).clamp(min=0.0)
        return mean, std

    def grid_position(self, g: Tensor) -> tuple[Tensor, Tensor]:
        """For conductances ``g``: the grid interval ``i`` (int64) and the fraction ``f`` in [0, 1] within it."""
        grid = self.g.to(g.device)
        gc = g.to(torch.float64).clamp(grid[0].item(), grid[-1].item())
        i = (torch.searchsorted(grid, gc, right=True) - 1).clamp(0, grid.numel() - 2)
        f = ((gc - grid[i]) / (grid[i + 1] - grid[i])).clamp(0.0, 1.0)
        return i, f

    def interpolate(self, g: Tensor | float, t: float) -> tuple[Tensor, Tensor]:
        """Mean shift and spread (float64) at conductances ``g`` (µS) and time ``t > 0`` (s)."""
        g = torch.as_tensor(g, dtype=torch.float64)
        mean_row, std_row = self.rows_at(t)
        i, f = self.grid_position(g)
        return torch.lerp(mean_row[i], mean_row[i + 1], f), torch.lerp(std_row[i], std_row[i + 1], f)

    # ------------------------------------------------------------------ files
    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> DriftTable:
        """Load and check a table; any problem raises :class:`RramlibError` naming the file and line."""
        return cls._from_text(_read_text(path), str(path))

    @classmethod
    def _from_text(cls, text: str, source: str) -> DriftTable:
        reader = csv.reader(io.StringIO(text))
        header, header_line = None, 0
        cells: dict[tuple[float, float], tuple[float, float, int]] = {}
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if header is None:
                header, header_line = _parse_header(row, source, line), line
                continue
            if len(row) != len(TABLE_COLUMNS):
                raise RramlibError(f"{source}: line {line}: expected {len(TABLE_COLUMNS)} cells "
                                   f"({','.join(TABLE_COLUMNS)}), got {len(row)}")
            values = {name: _parse_number(row[col], name, source, line) for name, col in header.items()}
            t, g = values["time_s"], values["g_uS"]
            if t <= 0:
                raise RramlibError(f"{source}: line {line}: time_s must be > 0 s, got {t!r}")
            if g < 0:
                raise RramlibError(f"{source}: line {line}: g_uS must be >= 0 µS, got {g!r}")
            if values["std_uS"] < 0:
                raise RramlibError(f"{source}: line {line}: std_uS must be >= 0, got {values['std_uS']!r}")
            if (t, g) in cells:
                raise RramlibError(f"{source}: line {line}: time_s={t!r}, g_uS={g!r} repeats line "
                                   f"{cells[(t, g)][2]}")
            cells[(t, g)] = (values["mean_shift_uS"], values["std_uS"], line)
        if header is None:
            raise RramlibError(f"{source}: line 1: empty file; expected the header {','.join(TABLE_COLUMNS)}")
        if not cells:
            raise RramlibError(f"{source}: line {header_line}: no data rows after the header; a table needs "
                               "at least one time with two conductance points")
        # group by time, check that every time has the same conductance points
        by_time: dict[float, dict[float, int]] = {}
        for (t, g), (_, _, line) in cells.items():
            by_time.setdefault(t, {})[g] = line
        times = sorted(by_time)
        first_line = {t: min(by_time[t].values()) for t in times}
        for t in times:
            if len(by_time[t]) < 2:
                raise RramlibError(f"{source}: line {first_line[t]}: time_s={t!r} has {len(by_time[t])} "
                                   "conductance point; at least 2 are needed per time")
        ref_t = min(times, key=lambda t: first_line[t])
        ref = by_time[ref_t]
        for t in times:
            extra = sorted(set(by_time[t]) - set(ref))
            missing = sorted(set(ref) - set(by_time[t]))
            if extra:
                raise RramlibError(f"{source}: line {by_time[t][extra[0]]}: grid not rectangular: g_uS={extra[0]!r} "
                                   f"at time_s={t!r} is absent at time_s={ref_t!r} (line {first_line[ref_t]})")
            if missing:
                raise RramlibError(f"{source}: line {first_line[t]}: grid not rectangular: time_s={t!r} lacks "
                                   f"g_uS={missing[0]!r} (present at time_s={ref_t!r}, line {ref[missing[0]]})")
        g_grid = sorted(ref)
        mean = [[cells[(t, g)][0] for g in g_grid] for t in times]
        std = [[cells[(t, g)][1] for g in g_grid] for t in times]
        return cls(times, g_grid, mean, std, source=source)

    def to_csv_text(self) -> str:
        """The table as CSV text (rows by time then g; floats written so that they read back exactly)."""
        lines = [",".join(TABLE_COLUMNS)]
        for k, t in enumerate(self.times.tolist()):
            for j, g in enumerate(self.g.tolist()):
                lines.append(",".join(repr(float(v)) for v in (t, g, self.mean_shift[k, j].item(),
                                                                 self.std[k, j].item())))
        return "\n".join(lines) + "\n"

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the table to ``path`` (see :meth:`to_csv_text`); returns the path."""
        path = Path(path)
        path.write_text(self.to_csv_text(), encoding="utf-8")
        return path

    def sha256(self) -> str:
        """Content hash of the table (of its canonical CSV text), for cache keys."""
        return hashlib.sha256(self.to_csv_text().encode("utf-8")).hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DriftTable):
            return NotImplemented
        return all(torch.equal(a, b) for a, b in ((self.times, other.times), (self.g, other.g),
                                                  (self.mean_shift, other.mean_shift), (self.std, other.std)))

    __hash__ = None  # mutable tensors inside

    def __repr__(self) -> str:
        return (f"DriftTable(source={self.source!r}, times={self.times.tolist()}, "
                f"g=[{self.g[0].item():g} .. {self.g[-1].item():g}] ({self.g.numel()} points))")


def neurram_table(g_max: float = NEURRAM_G_REF, n_points: int = 41) -> DriftTable:
    """The default table: NeuRRAM spread polynomials (Wan et al. 2022, aihwkit fit) on ``n_points`` levels.

    Levels ``g = g_max * k / (n_points - 1)``, ``k = 0 .. n_points - 1``; mean shift 0;
    ``std = (sum_i c_i g_hat^i) * g_max / 40`` with ``g_hat = k / (n_points - 1)``; times 1 s,
    1 day and 2 days.
    """
    g_max = _number("g_max", g_max)
    if not (math.isfinite(g_max) and g_max > 0):
        raise RramlibError(f"g_max must be a finite number > 0, got {g_max!r}")
    check_type("n_points", n_points, int)
    if n_points < 2:
        raise RramlibError(f"n_points must be >= 2, got {n_points}")
    g_hat = [k / (n_points - 1) for k in range(n_points)]
    g = [g_max * k / (n_points - 1) for k in range(n_points)]
    times = sorted(NEURRAM_COEFFS)
    std = [[neurram_sigma(x, t, g_max) for x in g_hat] for t in times]
    mean = [[0.0] * n_points for _ in times]
    return DriftTable(times, g, mean, std, source=f"neurram_table(g_max={g_max!r}, n_points={n_points})")


def neurram_sigma(g_hat: float, t: float, g_max: float = NEURRAM_G_REF) -> float:
    """NeuRRAM spread (µS) at relative conductance ``g_hat`` and table time ``t`` (1 s, 1 day or 2 days)."""
    coeffs = NEURRAM_COEFFS[t]
    return sum(c * g_hat**i for i, c in enumerate(coeffs)) * (g_max / NEURRAM_G_REF)


class Measured(DriftModel):
    """Drift from a measured table (default: NeuRRAM 1T1R, Wan et al., Nature 2022, aihwkit's fit).

    ``G(t) = clamp(g_target + d * (mean_shift(g_target, t) + std(g_target, t) * z), g_min, g_max)``
    with ``d = drift_scale`` and one standard normal ``z`` per device drawn at programming (so a
    device keeps its rank in the distribution over time), read from the table as described in
    :class:`DriftTable` (linear in g and in ln t; first row for ``0 < t < first time``;
    extrapolation in ln t beyond the last time, spread clamped >= 0). ``t = 0`` gives
    ``g_target``: the table's first time already contains the programming spread.

    Parameters: ``table`` -- a CSV path, or None for the NeuRRAM table built for this
    ``g_max`` (at the default 40 µS it equals the shipped ``neurram_wan2022.csv``);
    ``table_sha256`` -- optional: if given, the loaded table must have this content hash
    (:meth:`DriftTable.sha256`, as reported by :meth:`params`), so a configuration cannot
    silently pick up an edited file; ``drift_scale``; ``g_min = 0``, ``g_max = 40`` µS (the
    NeuRRAM fit's reference). Default mapping: differential pair.
    """

    name: ClassVar[str] = "measured"
    default_mapping: ClassVar[str] = "differential"
    state_keys: ClassVar[tuple[str, ...]] = ("g_prog", "z", "g_idx", "g_frac")

    def __init__(self, *, table: str | os.PathLike | None = None, table_sha256: str | None = None,
                 drift_scale: float = 1.0, g_min: float = 0.0, g_max: float = NEURRAM_G_REF) -> None:
        super().__init__(g_min=g_min, g_max=g_max, drift_scale=drift_scale)
        if table is None:
            self.table_path = None
            self.table = neurram_table(g_max=self.g_max)
        else:
            if not isinstance(table, (str, os.PathLike)):
                raise RramlibError(f"table must be a path to a CSV file or None, got {type(table).__name__}")
            self.table_path = os.fspath(table)
            self.table = DriftTable.from_csv(self.table_path)
        self.table_sha256 = self.table.sha256()
        if table_sha256 is not None:
            check_type("table_sha256", table_sha256, str)
            if table_sha256 != self.table_sha256:
                raise RramlibError(f"drift table {self.table.source} has content hash {self.table_sha256}, "
                                   f"expected {table_sha256} (the file changed?)")
        self._rows_cache: dict[tuple[float, str], tuple[Tensor, ...]] = {}
        self._zero_mean = not bool(self.table.mean_shift.any())  # decided once, not on every read

    def params(self) -> dict:
        return {"table": self.table_path, "table_sha256": self.table_sha256, **self._base_params()}

    def _program(self, g_target: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        # draw order: z
        z = self._normal(generator, g_target)
        i, f = self.table.grid_position(g_target)
        return {"g_prog": g_target.clone(), "z": z, "g_idx": i.to(torch.float32), "g_frac": f.to(torch.float32)}

    def _rows(self, t: float, device: torch.device) -> tuple[Tensor, ...]:
        """(mean at the lower level, mean slope, std at the lower level, std slope) per grid interval, float32."""
        key = (t, str(device))
        rows = self._rows_cache.get(key)
        if rows is None:
            mean, std = (r.to(device=device, dtype=torch.float32) for r in self.table.rows_at(t))
            rows = (mean[:-1].contiguous(), mean.diff(), std[:-1].contiguous(), std.diff())
            if len(self._rows_cache) > 256:
                self._rows_cache.clear()
            self._rows_cache[key] = rows
        return rows

    def _at(self, state: dict[str, Tensor], t: float) -> Tensor:
        g_target, f = state["g_prog"], state["g_frac"]
        mean_lo, mean_slope, std_lo, std_slope = self._rows(t, g_target.device)
        i = state["g_idx"].reshape(-1).int()
        shape = f.shape

        def pick(row: Tensor) -> Tensor:
            return row.index_select(0, i).reshape(shape)

        # linear in g within the grid interval i: lower value + f * (upper - lower)
        std = torch.addcmul(pick(std_lo), f, pick(std_slope))
        if not self._zero_mean:
            shift = torch.addcmul(pick(mean_lo), f, pick(mean_slope)).addcmul_(std, state["z"])
        else:  # zero-mean tables (the NeuRRAM default): skip the mean's gathers
            shift = std.mul_(state["z"])
        return torch.add(g_target, shift, alpha=self.drift_scale).clamp_(self.g_min, self.g_max)


# ---------------------------------------------------------------------- parsing helpers
def _read_text(path: str | os.PathLike) -> str:
    p = Path(path)
    if not p.exists():
        raise RramlibError(f"drift table file not found: {os.fspath(path)}")
    if not p.is_file():
        raise RramlibError(f"drift table {os.fspath(path)} is not a file")
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise RramlibError(f"{os.fspath(path)}: line 1: not UTF-8 text ({err.reason})") from None
    except OSError as err:
        raise RramlibError(f"cannot read drift table {os.fspath(path)}: {err.strerror}") from None


def _parse_header(row: list[str], source: str, line: int) -> dict[str, int]:
    names = [cell.strip() for cell in row]
    expected = ",".join(TABLE_COLUMNS)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RramlibError(f"{source}: line {line}: repeated column(s) {', '.join(duplicates)}; expected {expected}")
    missing = [n for n in TABLE_COLUMNS if n not in names]
    extra = [n for n in names if n not in TABLE_COLUMNS]
    if missing or extra:
        parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected column(s) {', '.join(repr(n) for n in extra)}"] if extra else [])
        raise RramlibError(f"{source}: line {line}: {'; '.join(parts)}; expected the header {expected}")
    return {name: names.index(name) for name in TABLE_COLUMNS}


def _parse_number(cell: str, column: str, source: str, line: int) -> float:
    try:
        value = float(cell.strip())
    except ValueError:
        raise RramlibError(f"{source}: line {line}: {column}: cannot read {cell.strip()!r} as a number") from None
    if not math.isfinite(value):
        raise RramlibError(f"{source}: line {line}: {column}: {cell.strip()!r} is not a finite number")
    return value
