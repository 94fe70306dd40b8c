"""Single-event upsets (SEUs) in the digital parameters that compensate drift.

An SEU flips one stored bit of an SRAM word. The compensation state of every method (VeRA+ vectors,
BN sets, LoRA/DoRA adapters) sits in SRAM, so a flip there changes the corrected network. The idea of
measuring the accuracy drop per bit position and per layer, and of guarding the few bits that matter
with cheap remedies, follows Yan et al. 2019, "When Single Event Upset Meets Deep Neural Networks:
Observations, Explorations, and Remedies". Their exact definitions
(fault model, remedies, cost accounting) are not available to us; everything below is ours:

* Formats and bit numbering (bit 0 = least significant): ``fp32`` (31 sign, 23-30 exponent,
  0-22 mantissa), ``fp16`` (15 sign, 10-14 exponent, 0-9 mantissa), ``bf16`` (15 sign, 7-14
  exponent, 0-6 mantissa), ``int8`` (symmetric per-tensor quantisation, scale = max|x| / 127, codes
  in two's complement: bit 7 is the "sign" bit, bits 0-6 are "value" bits). For fp16/bf16/int8 the
  flipped entry is the stored (rounded / quantised) value with the bit flipped; the other entries are
  returned unchanged (carried in fp32, a flip that makes a signalling NaN loses its payload, so
  flipping back is exact only for other values). The int8 scale is a separate stored value and is
  never flipped here.
* Fault model: one flip at a time (:func:`sensitivity`), exhaustive over bit positions, for a seeded
  sample of parameter entries.
* Remedies (:class:`Remedy`): ``protect_bits`` keeps two extra copies of the chosen bit positions of
  every parameter and takes the majority vote on read (triple modular redundancy of those bits:
  a single flip of a protected bit is corrected, flips of other bits are untouched; cost 2 bits per
  protected bit and parameter). ``range_check`` stores each tensor's trained minimum and maximum
  (2 values per tensor, recorded before any fault) and zeroes (or clamps) every value read outside
  [min, max] or not finite.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from rramlib.core.errors import RramlibError, check_choice, check_type
from rramlib.core.seeding import check_root_seed, generator

__all__ = [
    "FORMATS", "Fault", "Remedy", "bit_field", "flip_bits", "injected", "remedy_cost_bits", "sensitivity",
    "int8_scale", "stored_value",
]

#: bits per value of each format
FORMATS = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8}
# (lowest exponent bit, sign bit) of the floating-point formats
_FLOAT_LAYOUT = {"fp32": (23, 31), "fp16": (10, 15), "bf16": (7, 15)}
_FLOAT_DTYPE = {"fp32": (torch.float32, torch.int32), "fp16": (torch.float16, torch.int16),
                "bf16": (torch.bfloat16, torch.int16)}


def _check_fmt(fmt: object) -> str:
    return check_choice("format", fmt, FORMATS)


def _check_bit(fmt: str, bit: object) -> int:
    if isinstance(bit, bool) or not isinstance(bit, int):
        raise RramlibError(f"bit must be an int, got {type(bit).__name__} {bit!r}")
    if not 0 <= bit < FORMATS[fmt]:
        raise RramlibError(f"bit {bit} out of range for {fmt} (0 ... {FORMATS[fmt] - 1})")
    return bit


def bit_field(fmt: str, bit: int) -> str:
    """The field holding ``bit``: "sign", "exponent" or "mantissa" (floats); "sign" or "value" (int8)."""
    fmt = _check_fmt(fmt)
    bit = _check_bit(fmt, bit)
    if fmt == "int8":
        return "sign" if bit == 7 else "value"
    low_exp, sign = _FLOAT_LAYOUT[fmt]
    return "sign" if bit == sign else "exponent" if bit >= low_exp else "mantissa"


def int8_scale(t: torch.Tensor) -> float:
    """Scale of the symmetric per-tensor int8 quantisation: max|x| / 127 (1.0 for an all-zero tensor)."""
    m = float(t.detach().abs().max()) if t.numel() else 0.0
    if not math.isfinite(m):
        raise RramlibError("int8 quantisation of a tensor with inf/NaN")
    return m / 127 if m > 0 else 1.0


def stored_value(t: torch.Tensor, fmt: str, scale: float | None = None) -> torch.Tensor:
    """The values as stored in ``fmt`` (rounded or quantised), in ``t``'s dtype."""
    fmt = _check_fmt(fmt)
    if fmt == "int8":
        scale = int8_scale(t) if scale is None else scale
        return (torch.round(t.detach() / scale).clamp(-127, 127) * scale).to(t.dtype)
    return t.detach().to(_FLOAT_DTYPE[fmt][0]).to(t.dtype)


def _wrap(u: torch.Tensor, nbits: int) -> torch.Tensor:
    """Unsigned ``nbits`` words (int64) as two's complement signed values."""
    half = 1 << (nbits - 1)
    return torch.where(u >= half, u - (1 << nbits), u)


def flip_bits(t: torch.Tensor, index: torch.Tensor | Sequence[int] | int, bit: int | torch.Tensor | Sequence[int],
              fmt: str = "fp32", *, scale: float | None = None) -> torch.Tensor:
    """A copy of ``t`` with bit ``bit`` of the stored word of each flat ``index`` flipped.

    ``index`` (flat positions into ``t``) and ``bit`` broadcast against each other; a pair given twice
    flips twice (no change). For ``int8``, ``scale`` is the stored quantisation scale (default: computed
    from ``t``; give it explicitly to undo a flip exactly, because a flip may change max|x|).
    """
    fmt = _check_fmt(fmt)
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise RramlibError("flip_bits needs a floating-point tensor")
    nbits = FORMATS[fmt]
    index, bit = torch.as_tensor(index), torch.as_tensor(bit)
    for v in (index, bit):
        if v.numel() and (v.is_floating_point() or v.dtype == torch.bool):
            raise RramlibError("index and bit must be integers")
    index, bit = index.long().reshape(-1), bit.long().reshape(-1)
    index, bit = torch.broadcast_tensors(index, bit)
    n = t.numel()
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
        raise RramlibError(f"index out of range for a tensor of {n} values")
    if bit.numel() and (int(bit.min()) < 0 or int(bit.max()) >= nbits):
        raise RramlibError(f"bit out of range for {fmt} (0 ... {nbits - 1})")
    out = t.detach().clone()
    if not index.numel():
        return out
    # keep the (index, bit) pairs that occur an odd number of times; their masks OR = XOR per index
    pairs, counts = torch.unique(index * nbits + bit, return_counts=True)
    pairs = pairs[counts % 2 == 1]
    idx, b = pairs // nbits, pairs % nbits
    positions, inverse = torch.unique(idx, return_inverse=True)
    masks = torch.zeros(len(positions), dtype=torch.long).index_add_(0, inverse, torch.ones_like(b) << b)
    flat = out.reshape(-1)
    values = flat[positions]
    if fmt == "int8":
        scale = int8_scale(t) if scale is None else float(scale)
        codes = torch.round(values.double() / scale).clamp(-127, 127).long()
        new = _wrap((codes & 0xFF) ^ masks, 8).double() * scale
    else:
        float_dtype, int_dtype = _FLOAT_DTYPE[fmt]
        words = values.to(float_dtype).view(int_dtype).long() & ((1 << nbits) - 1)
        new = _wrap(words ^ masks, nbits).to(int_dtype).view(float_dtype)
    flat[positions] = new.to(t.dtype)
    return out


@dataclass(frozen=True)
class Fault:
    """One bit flip: entry ``index`` (flat) of tensor number ``tensor`` in the list given to :func:`injected`."""

    tensor: int
    index: int
    bit: int


@dataclass(frozen=True)
class Remedy:
    """What guards the stored parameters (see the module docstring). The default guards nothing."""

    protect_bits: tuple[int, ...] = ()
    range_check: str | None = None  # None, "zero" or "clamp"

    def __post_init__(self):
        check_type("protect_bits", self.protect_bits, tuple)
        for b in self.protect_bits:
            if isinstance(b, bool) or not isinstance(b, int) or b < 0:
                raise RramlibError(f"protect_bits must be bit positions >= 0, got {self.protect_bits!r}")
        if self.range_check is not None:
            check_choice("range_check", self.range_check, ("zero", "clamp"))

    def check(self, fmt: str) -> Remedy:
        for b in self.protect_bits:
            _check_bit(fmt, b)
        return self

    @property
    def label(self) -> str:
        parts = []
        if self.protect_bits:
            parts.append("protect bit" + ("s " if len(self.protect_bits) > 1 else " ")
                         + ",".join(map(str, self.protect_bits)))
        if self.range_check:
            parts.append(f"range check ({self.range_check})")
        return " + ".join(parts) or "none"


def remedy_cost_bits(sizes: Iterable[int], fmt: str = "fp32", remedy: Remedy | None = None) -> dict[str, float]:
    """Extra SRAM bits per parameter of each part of ``remedy`` for tensors of ``sizes`` values.

    ``protect_bits``: 2 bits per protected bit and parameter (two extra copies). ``range_check``: two
    stored values (min, max) of the format per tensor, spread over the tensor's values. Returns
    ``{"protect_bits": ..., "range_check": ..., "total": ...}``.
    """
    fmt = _check_fmt(fmt)
    remedy = (remedy or Remedy()).check(fmt)
    sizes = [int(s) for s in sizes]
    if any(s < 1 for s in sizes) or not sizes:
        raise RramlibError("sizes must be a non-empty list of positive tensor sizes")
    total = sum(sizes)
    protect = 2.0 * len(remedy.protect_bits)
    ranged = (2.0 * FORMATS[fmt] * len(sizes) / total) if remedy.range_check else 0.0
    return {"protect_bits": protect, "range_check": ranged, "total": protect + ranged}


def _apply_remedy(faulty: torch.Tensor, original: torch.Tensor, faults: list[tuple[int, int]], fmt: str,
                  remedy: Remedy, bounds: tuple[float, float] | None, scale: float | None) -> torch.Tensor:
    if remedy.protect_bits:
        protected = set(remedy.protect_bits)
        kept = [(i, b) for i, b in faults if b not in protected]
        faulty = (flip_bits(original, [i for i, _ in kept], [b for _, b in kept], fmt, scale=scale)
                  if len(kept) != len(faults) else faulty)
    if remedy.range_check and bounds is not None:
        lo, hi = bounds
        bad = ~((faulty >= lo) & (faulty <= hi))
        if bool(bad.any()):
            faulty = faulty.clone()
            if remedy.range_check == "zero":
                faulty[bad] = 0.0
            else:
                clamped = torch.nan_to_num(faulty, nan=0.0).clamp(lo, hi)
                faulty[bad] = clamped[bad]
    return faulty


def _as_faults(faults) -> list[Fault]:
    out = []
    for f in faults:
        if not isinstance(f, Fault):
            if len(f) != 3:
                raise RramlibError(f"a fault is (tensor, index, bit), got {f!r}")
            f = Fault(*(int(v) for v in f))
        out.append(f)
    return out


@contextlib.contextmanager
def injected(params: Sequence[torch.Tensor], faults, fmt: str = "fp32", remedy: Remedy | None = None,
             bounds: Sequence[tuple[float, float]] | None = None):
    """Apply ``faults`` (:class:`Fault` or ``(tensor, index, bit)``) to ``params`` in place; restore exactly on exit.

    The original tensors are saved and copied back afterwards, also when the body raises, so the
    parameters come back bit for bit. ``remedy`` is applied when the faulty values are read, as the
    hardware would; ``bounds`` gives each tensor's trained (min, max) for the range check (default:
    taken from the tensors before the faults are applied). Yields the list of tensors after faults
    and remedy.
    """
    fmt = _check_fmt(fmt)
    params = list(params)
    remedy = (remedy or Remedy()).check(fmt)
    faults = _as_faults(faults)
    by_tensor: dict[int, list[tuple[int, int]]] = {}
    for f in faults:
        if not 0 <= f.tensor < len(params):
            raise RramlibError(f"fault names tensor {f.tensor} but {len(params)} tensors were given")
        _check_bit(fmt, f.bit)
        by_tensor.setdefault(f.tensor, []).append((f.index, f.bit))
    saved = {i: params[i].detach().clone() for i in by_tensor}
    try:
        with torch.no_grad():
            for i, pairs in by_tensor.items():
                original = saved[i]
                scale = int8_scale(original) if fmt == "int8" else None
                faulty = flip_bits(original, [p for p, _ in pairs], [b for _, b in pairs], fmt, scale=scale)
                rng = (bounds[i] if bounds is not None else
                       (float(original.min()), float(original.max())) if remedy.range_check else None)
                faulty = _apply_remedy(faulty, original, pairs, fmt, remedy, rng, scale)
                params[i].detach().copy_(faulty)
        yield params
    finally:
        with torch.no_grad():
            for i, original in saved.items():
                params[i].detach().copy_(original)


def sensitivity(evaluate: Callable[[], float], params: dict[str, torch.Tensor], fmt: str = "fp32", *,
                n_params: int, bits: Sequence[int] | None = None, seed: int,
                remedies: dict[str, Remedy] | None = None, baseline: float | None = None) -> list[dict]:
    """Accuracy after single bit flips, one at a time: every bit of ``bits`` (default: all of the format)
    of ``n_params`` entries drawn without replacement from all entries of ``params``, from the stream
    ``(seed, "fault_sites", *group names)`` (:mod:`rramlib.core.seeding`: other groups, other sites).

    ``evaluate()`` returns the accuracy of the network that reads ``params``. Returns tidy records
    (group, index, bit, field, value, flipped, remedy, accuracy, drop), one per flip and remedy
    (``remedies`` maps a label to a :class:`Remedy`; default ``{"none": Remedy()}``); ``drop`` =
    baseline - accuracy, with the baseline measured once without faults. ``evaluate`` must be
    deterministic: a flip whose remedied parameters equal the originals bit for bit scores the baseline,
    and one that leaves the same stored value as an earlier flip of that entry scores the same, without
    being evaluated again.
    """
    fmt = _check_fmt(fmt)
    check_type("n_params", n_params, int)
    if n_params < 0:
        raise RramlibError(f"n_params must be >= 0, got {n_params}")
    check_root_seed(seed)
    bits = list(range(FORMATS[fmt])) if bits is None else [_check_bit(fmt, b) for b in bits]
    remedies = {"none": Remedy()} if remedies is None else dict(remedies)
    for r in remedies.values():
        check_type("remedy", r, Remedy).check(fmt)
    if not params:
        raise RramlibError("no parameters given")
    names = list(params)
    tensors = [params[n] for n in names]
    sizes = torch.tensor([t.numel() for t in tensors])
    offsets = torch.cumsum(sizes, 0) - sizes
    total = int(sizes.sum())
    gen = generator(seed, "fault_sites", *names)
    picks = torch.randperm(total, generator=gen)[:min(n_params, total)].sort().values
    bounds = [(float(t.detach().min()), float(t.detach().max())) for t in tensors]
    base = float(evaluate()) if baseline is None else float(baseline)
    records = []
    for flat in picks.tolist():
        ti = int(torch.searchsorted(offsets, torch.tensor(flat), right=True)) - 1
        index = flat - int(offsets[ti])
        value = float(tensors[ti].detach().reshape(-1)[index])
        seen: dict[bytes, float] = {}  # accuracy by the stored bits of this entry (remedies often agree)
        for b in bits:
            for label, remedy in remedies.items():
                with injected(tensors, [Fault(ti, index, b)], fmt, remedy, bounds) as now:
                    # only the flipped entry can differ (the range check sees no other value outside its range)
                    entry = now[ti].detach().reshape(-1)[index]
                    flipped = float(entry)
                    key = entry.reshape(1).view(torch.uint8).numpy().tobytes()
                    if _bit_equal(entry, value):
                        acc = base
                    elif key in seen:
                        acc = seen[key]
                    else:
                        acc = seen[key] = float(evaluate())
                records.append({"group": names[ti], "index": index, "bit": b, "field": bit_field(fmt, b),
                                "value": value, "flipped": flipped, "remedy": label, "accuracy": acc,
                                "drop": base - acc})
    return records


def _bit_equal(x: torch.Tensor, value: float) -> bool:
    """Whether tensor element ``x`` equals ``value`` bit for bit (NaN-safe, sign of zero included)."""
    y = torch.tensor(value, dtype=x.dtype)
    return bool(torch.equal(x.detach().reshape(1).view(torch.uint8), y.reshape(1).view(torch.uint8)))
