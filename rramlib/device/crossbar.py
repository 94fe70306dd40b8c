"""The crossbar periphery: tiles, DAC, ADC and output noise between the conductances and a layer's output.

Without this module an RRAM layer computes the exact product ``W(t) x`` of its drifted weights. A real
in-memory-computing inference also passes every matrix-vector product through the periphery; this module
models it the way aihwkit's analog tile forward does (``IOParameters``, ``rpu_forward_backward_pass.cpp``
and ``simulator/tiles/array.py`` of https://github.com/IBM/aihwkit, read at commit 4545f11):

1. **tiles** -- a layer's weight matrix (out x in; ``in = C·kh·kw`` for a convolution, unfolded by
   im2col (:func:`patches`), each kernel patch being one input vector) is split into
   ``ceil(in/max_input_size) x ceil(out/max_output_size)`` near-equal tiles (aihwkit's ``get_split_sizes``;
   a convolution keeps the ``kh·kw`` elements of a channel on one tile); the partial sums of the input
   tiles are added digitally;
2. **noise management** (per tile and input vector): ``abs_max`` divides the vector by ``α = max|x|``
   (and an all-zero vector gives an exact zero output, as in aihwkit);
3. **DAC**: ``x_q = clip(round(x/α / δ_in)·δ_in, ±inp_bound)`` with step ``δ_in = inp_res·2·inp_bound``;
4. **analog product** with the normalised weights ``W(t)/w_max`` (``w_max`` from the mapping: the
   conductance span is the full-scale weight; aihwkit's ``weight_scaling_omega = 1``), optionally minus
   aihwkit's IR-drop term (``applyIrDrop``);
5. **output noise**: ``+ σ_j·ε`` with ``ε ~ N(0, 1)`` drawn at every read from the chip's read generator, and
   ``σ_j = |out_noise·(1 + out_noise_std·z_j)|`` (aihwkit's systematic output-to-output variation), plus an
   optional fixed per-column offset ``out_offset_std·z'_j`` (ours); ``z``, ``z'`` are drawn at programming;
6. **ADC**: ``y_q = clip(round(y/δ_out)·δ_out, ±out_bound)`` with ``δ_out = out_res·2·out_bound``;
   ``iterative`` bound management repeats a saturated read with the input halved (aihwkit's loop, stopping
   once the reduction exceeds ``max_bm_factor`` or ``max_bm_res/δ_in``);
7. the digital side multiplies by ``α`` (and the bound-management reduction) and by ``w_max``, adds the
   input tiles' partial sums and the (digital) bias.

All analog quantities are in normalised units: a full-scale weight (``w_max``) times a full-scale input
(``inp_bound``) gives 1; ``out_bound = 12`` therefore means twelve such products. Resolutions follow
aihwkit: ``res <= 0`` is off, ``0 < res <= 1`` is a step as a fraction of the range ``2·bound``, ``res > 1``
a number of steps; :func:`resolution` gives aihwkit's ``1/(2**bits - 2)``.

The only per-read randomness is the output noise; it comes from one generator per chip that
:class:`~rramlib.device.analog.AnalogModel` reseeds at every ``at(t)`` from (chip, t), so a chip read at a time
gives the same draw whatever was read before. Gradients pass the roundings straight through.
Biases, BatchNorm and every compensation path stay digital and exact.

Cost: a convolution's im2col repeats every activation ``kh·kw`` times and every input vector is scaled and
rounded, every output gets a noise draw and the ADC; on a small CNN this is several times the cost of a
plain (oneDNN) convolution. ``benchmarks/drift_sweep.py`` measures it against plain inference.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rramlib.core.errors import RramlibError, check_choice, check_int, check_positive

__all__ = ["Crossbar", "CROSSBARS", "make_crossbar", "resolution", "step_size", "quantise",
           "split_sizes", "analog_matmul", "patches", "kernel_rows", "CrossbarLayer", "Periphery"]

NOISE_MANAGEMENT = ("none", "abs_max")
BOUND_MANAGEMENT = ("none", "iterative")


def resolution(bits: int) -> float:
    """aihwkit's converter resolution for ``bits`` bits: ``1/(2**bits - 2)`` of the range (bits >= 2)."""
    check_int("converter bits", bits, minimum=2)
    return 1.0 / (2**bits - 2)


def step_size(res: float, bound: float) -> float:
    """Converter step in normalised units: 0 (off) for ``res <= 0``, else ``res·2·bound`` (``1/res`` if res > 1)."""
    if res <= 0:
        return 0.0
    return (1.0 / res if res > 1 else res) * 2.0 * bound


def quantise(v: Tensor, step: float, bound: float = 0.0, *, inplace: bool = False) -> Tensor:
    """A converter: ``clip(round(v/step)·step, ±bound)``; ``step = 0`` skips the rounding, ``bound = 0`` the clipping.

    Rounds half to even (aihwkit's ``rintf``); the gradient passes the rounding straight through (clipped
    values get none). ``inplace`` overwrites ``v`` when it needs no gradient.
    """
    inplace = inplace and not v.requires_grad
    if step > 0:
        if step != 1.0:
            v = v / step
        if v.requires_grad:
            v = v + (torch.round(v) - v).detach()
        else:
            v = v.round_() if inplace or step != 1.0 else torch.round(v)
        if step != 1.0:
            v = v.mul_(step) if not v.requires_grad else v * step
        inplace = True
    if bound > 0:
        v = v.clamp_(-bound, bound) if inplace and not v.requires_grad else v.clamp(-bound, bound)
    return v


def split_sizes(size: int, max_size: int, group: int = 1) -> list[int]:
    """Tile sizes along one dimension, in elements: aihwkit's near-equal split, ``group`` elements kept together.

    ``max_size <= 0`` means one tile. A convolution passes ``group = kh·kw`` (aihwkit ``conv_mapped.py``).
    """
    if max_size <= 0:
        return [size]
    if group > max_size:
        raise RramlibError(f"a tile of {max_size} inputs cannot hold one {group}-element convolution kernel")
    units, per_tile = size // group, max_size // group
    n = -(-units // per_tile)
    base, extra = divmod(units, n)
    return [(base + (i < extra)) * group for i in range(n)]


@dataclass(frozen=True)
class Crossbar:
    """The periphery of every crossbar tile (defaults: all off, the exact product). Units: see the module doc.

    Parameters
    ----------
    max_input_size, max_output_size : rows (inputs) and columns (outputs) of one tile; 0 = unlimited.
    noise_management : ``"none"`` or ``"abs_max"`` (each input vector divided by its max|x| per tile).
    inp_res, inp_bound : DAC resolution (aihwkit convention) and input range ±inp_bound; 0 = off.
    out_res, out_bound : ADC resolution and output range ±out_bound; 0 = off.
    out_noise : standard deviation of the Gaussian output noise drawn at every read (normalised units).
    out_noise_std : systematic column-to-column variation of ``out_noise`` (fraction; fixed at programming).
    out_offset_std : standard deviation of a fixed per-column output offset (drawn at programming; ours).
    bound_management : ``"none"`` or ``"iterative"`` (repeat a saturated read with half the input).
    max_bm_factor, max_bm_res : stop bound management beyond this reduction, or beyond ``max_bm_res/δ_in``.
    ir_drop : scale of aihwkit's IR-drop approximation (0 = off); ``ir_drop_g_ratio`` is its wire to device
        conductance ratio (aihwkit default ``1/0.35/5e-6``).
    """

    max_input_size: int = 0
    max_output_size: int = 0
    noise_management: str = "none"
    inp_res: float = 0.0
    inp_bound: float = 0.0
    out_res: float = 0.0
    out_bound: float = 0.0
    out_noise: float = 0.0
    out_noise_std: float = 0.0
    out_offset_std: float = 0.0
    bound_management: str = "none"
    max_bm_factor: int = 1000
    max_bm_res: float = 0.25
    ir_drop: float = 0.0
    ir_drop_g_ratio: float = 1.0 / 0.35 / 5e-6

    def __post_init__(self) -> None:
        for name in ("max_input_size", "max_output_size"):
            check_int(f"crossbar {name}", getattr(self, name), minimum=0)
        check_int("crossbar max_bm_factor", self.max_bm_factor, minimum=1)
        check_choice("crossbar noise_management", self.noise_management, NOISE_MANAGEMENT)
        check_choice("crossbar bound_management", self.bound_management, BOUND_MANAGEMENT)
        for f in dataclasses.fields(self):
            if f.type == "float":
                value = check_positive(f"crossbar {f.name}", getattr(self, f.name), allow_zero=True)
                object.__setattr__(self, f.name, value)
        check_positive("crossbar ir_drop_g_ratio", self.ir_drop_g_ratio)
        check_positive("crossbar max_bm_res", self.max_bm_res)
        if self.inp_res > 0 and self.inp_bound == 0:
            raise RramlibError("crossbar inp_res needs an input range: set inp_bound > 0")
        if self.out_res > 0 and self.out_bound == 0:
            raise RramlibError("crossbar out_res needs an output range: set out_bound > 0")
        if self.bound_management == "iterative" and self.out_bound == 0:
            raise RramlibError("crossbar bound_management 'iterative' needs out_bound > 0")

    @property
    def is_ideal(self) -> bool:
        """True when every setting is off: the layer then keeps its exact forward (nothing is installed)."""
        return self == Crossbar()

    @property
    def inp_step(self) -> float:
        return step_size(self.inp_res, self.inp_bound)

    @property
    def out_step(self) -> float:
        return step_size(self.out_res, self.out_bound)

    @property
    def systematic(self) -> bool:
        """Whether programming draws per-column parts (noise strength variation or offsets)."""
        return self.out_noise_std > 0 or self.out_offset_std > 0

    def params(self) -> dict:
        """All settings as a plain dict (part of cache keys)."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> Crossbar:
        """A copy with some settings changed (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise RramlibError(f"unknown crossbar setting(s) {sorted(unknown)}; known: {sorted(self.params())}")
        return dataclasses.replace(self, **changes)


#: ``ideal``: the exact product (today's numbers). ``aihwkit``: aihwkit's inference forward defaults
#: (``IOParameters``: 7-bit DAC ``inp_res = 1/(2**7-2)``, ``inp_bound = 1``, abs-max noise management, 9-bit
#: ADC ``out_res = 1/(2**9-2)``, ``out_bound = 12``, ``out_noise = 0.06``, iterative bound management with
#: ``max_bm_factor = 1000``, ``max_bm_res = 0.25``, no IR drop) and tile size 512 x 512
#: (``MappingParameter.max_input_size = max_output_size = 512``, aihwkit ``simulator/parameters/mapping.py``).
CROSSBARS: dict[str, Crossbar] = {
    "ideal": Crossbar(),
    "aihwkit": Crossbar(max_input_size=512, max_output_size=512, noise_management="abs_max",
                        inp_res=resolution(7), inp_bound=1.0, out_res=resolution(9), out_bound=12.0,
                        out_noise=0.06, bound_management="iterative"),
}


def make_crossbar(crossbar: Crossbar | str = "ideal", **changes) -> Crossbar:
    """A preset by name (or a :class:`Crossbar` as it is), with ``changes`` applied."""
    if isinstance(crossbar, str):
        crossbar = CROSSBARS[check_choice("crossbar", crossbar, CROSSBARS)]
    elif not isinstance(crossbar, Crossbar):
        raise RramlibError(f"crossbar must be a preset name or a Crossbar, got {type(crossbar).__name__}")
    return crossbar.replace(**changes) if changes else crossbar


# ----------------------------------------------------------------------------------------- the product
# The product is computed in converter steps: DAC codes (inputs in units of δ_in) times the weights scaled by
# δ_in/δ_out give the analog sum in ADC steps, where noise, rounding and clipping are one operation each.
# In-place operations are used when no gradient is needed (sweeps); training takes the same path out of place.

def _op(v: Tensor, name: str, *args) -> Tensor:
    """``v.name_(*args)`` in place when ``v`` needs no gradient, else ``v.name(*args)``."""
    return getattr(v, name + "_")(*args) if not v.requires_grad else getattr(v, name)(*args)


def _dac(x: Tensor, inv_scale: Tensor, xb: Crossbar, clip: bool, overwrite: bool = False) -> Tensor:
    """DAC codes ``clip(round(x·inv_scale), ±inp_bound/δ_in)`` (``inv_scale = 1/(α·reduction·δ_in)``);
    ``overwrite``: compute them in ``x`` itself (a temporary the caller owns, needing no gradient)."""
    bound = xb.inp_bound / (xb.inp_step or 1.0) if clip else 0.0
    x = x.mul_(inv_scale) if overwrite and not x.requires_grad else x * inv_scale
    return quantise(x, 1.0 if xb.inp_step > 0 else 0.0, bound, inplace=True)


def _ir_drop(xq: Tensor, w: Tensor, xb: Crossbar) -> Tensor:
    """aihwkit's ``applyIrDrop`` term ``ir_drop·c(a_i)·Σ_j w_ij x_j (1 - (1 - j/n)^2)`` in normalised units."""
    n = xq.shape[1]
    a = (xq.abs() @ w.abs().T) * (n / xb.ir_drop_g_ratio)
    c = a * (a * (0.05 * a - 0.2) + 0.5)
    p = 1 - torch.arange(n, dtype=xq.dtype, device=xq.device) / n
    return xb.ir_drop * c * ((xq * (1 - p * p)) @ w.T)


def _read(codes: Tensor, w: Tensor, xb: Crossbar, out_sizes: list[int], noise: Tensor | None,
          offset: Tensor | None, reads: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
    """One read of one input tile, in ADC steps: product, IR drop, noise, ADC. Returns (z, saturated per tile)."""
    in_unit, out_unit = xb.inp_step or 1.0, xb.out_step or 1.0
    z = codes @ (w * (in_unit / out_unit)).T
    if xb.ir_drop > 0:
        z = z - _ir_drop(codes * in_unit, w, xb) / out_unit
    if noise is not None:
        eps = torch.randn(z.shape, generator=reads, dtype=z.dtype).to(z.device)
        z = _op(z, "addcmul", eps, noise)
    if offset is not None:
        z = _op(z, "add", offset / out_unit)
    z = quantise(z, 1.0 if xb.out_step > 0 else 0.0, inplace=True)
    saturated = None
    if xb.out_bound > 0:
        bound = xb.out_bound / out_unit
        zd = z.detach()
        if xb.bound_management == "iterative" and (float(zd.amax()) > bound or float(zd.amin()) < -bound):
            peaks = [part.abs().amax(dim=1) for part in zd.split(out_sizes, dim=1)]
            saturated = torch.stack(peaks, dim=1) > bound
        z = quantise(z, 0.0, bound, inplace=True)
    return z, saturated


def analog_matmul(x: Tensor, w: Tensor, xb: Crossbar, *, in_sizes: list[int] | None = None,
                  sigma: Tensor | None = None, offset: Tensor | None = None, reads: torch.Generator | None = None,
                  gain: Tensor | None = None, overwrite: bool = False) -> Tensor:
    """``x @ w.T`` through tiles and periphery: ``x`` (B, in) inputs, ``w`` (out, in) normalised weights.

    ``in_sizes``: the input tiles (consecutive columns; default ``split_sizes(in, xb.max_input_size)``);
    ``sigma`` (input tiles, out): per-read noise strength per column (default: ``xb.out_noise`` everywhere);
    ``offset`` (input tiles, out): fixed per-column offsets; ``reads``: the generator of the output noise;
    ``gain`` (0-dim or (out,)): digital factor on the outputs (the weights' ``w_max``); ``overwrite``: ``x`` is a
    temporary of the caller's (im2col patches) that may be overwritten, which saves a copy of it.
    Returns (B, out) in the units of ``x`` times ``w`` (times ``gain``).
    """
    in_sizes = in_sizes or split_sizes(w.shape[1], xb.max_input_size)
    out_sizes = split_sizes(w.shape[0], xb.max_output_size)
    in_unit, out_unit = xb.inp_step or 1.0, xb.out_step or 1.0
    abs_max = xb.noise_management == "abs_max"
    clip = xb.inp_bound > 0 and not (abs_max and xb.inp_bound >= 1)  # abs-max inputs never exceed 1
    limit = min(xb.max_bm_factor, xb.max_bm_res / xb.inp_step if xb.inp_step > 0 else math.inf)
    row_gain = out_unit if gain is None or gain.dim() else gain * out_unit  # a scalar gain costs no extra pass
    total = None
    for i, (xs, ws) in enumerate(zip(x.split(in_sizes, dim=1), w.split(in_sizes, dim=1))):
        noise = None
        if sigma is not None:
            noise = sigma[i] / out_unit
        elif xb.out_noise > 0:
            noise = torch.tensor(xb.out_noise / out_unit, dtype=x.dtype, device=x.device)
        tile_offset = None if offset is None else offset[i]
        if abs_max:  # noise management: α = max|x| per vector; an all-zero vector reads as exact zeros
            xd = xs.detach()  # max|x| from the max and the min: |x| would be a copy as large as the input
            alpha = torch.maximum(xd.amax(dim=1, keepdim=True), xd.amin(dim=1, keepdim=True).neg_())
            out_scale = alpha * row_gain
            alpha = alpha.masked_fill(alpha == 0, 1.0)
        else:
            alpha = torch.ones_like(xs[:, :1])
            out_scale = alpha * row_gain
        redo_needs_x = xb.bound_management == "iterative" and xb.out_bound > 0
        codes = _dac(xs, 1.0 / (alpha * in_unit), xb, clip, overwrite=overwrite and not redo_needs_x)
        z, saturated = _read(codes, ws, xb, out_sizes, noise, tile_offset, reads)
        y = _op(z, "mul", out_scale)
        reduction = 1.0
        while saturated is not None and reduction <= limit and bool(saturated.any()):
            reduction *= 2.0  # aihwkit's iterative bound management: read the saturated vectors again, input halved
            rows = saturated.any(dim=1).nonzero().squeeze(1)
            z_new, sat_new = _read(_dac(xs[rows], 1.0 / (alpha[rows] * reduction * in_unit), xb, clip), ws, xb,
                                   out_sizes, noise, tile_offset, reads)
            redo = saturated[rows].repeat_interleave(torch.tensor(out_sizes, device=y.device), dim=1)
            y = y.index_put((rows,), torch.where(redo, z_new * (out_scale[rows] * reduction), y[rows]))
            saturated = None if sat_new is None else torch.zeros_like(saturated).index_put(
                (rows,), sat_new & saturated[rows])
        total = y if total is None else _op(total, "add", y)  # input tiles' partial sums, added digitally
    return total if gain is None or not gain.dim() else _op(total, "mul", gain)


def patches(x: Tensor, kernel_size, stride, padding, dilation, channels: list[int] | None = None) -> Tensor:
    """im2col of ``x`` (N, C, H, W): (N, H', W', C·kh·kw), each row one kernel patch.

    Channels-last order: within each channel group of ``channels`` (default: all channels, one group),
    the kernel positions ``(kh, kw)`` and inside them the channels; the groups follow each other, so an input
    tile of whole channels is a run of consecutive columns (:func:`kernel_rows` orders the weights alike).
    Built from strided views (``Tensor.unfold``) and one copy; with a channels-last input (as the crossbar's
    own convolutions return) the copy moves runs of contiguous channels, much faster on CPU than ``F.unfold``.
    """
    x = x.permute(0, 2, 3, 1)  # N, H, W, C
    if any(padding):  # zero padding by hand: F.pad on a permuted tensor is many times slower on CPU
        n, h, w, c = x.shape
        padded = x.new_zeros(n, h + 2 * padding[0], w + 2 * padding[1], c)
        padded[:, padding[0]:padding[0] + h, padding[1]:padding[1] + w] = x
        x = padded
    for dim, (k, s, d) in enumerate(zip(kernel_size, stride, dilation), start=1):
        x = x.unfold(dim, d * (k - 1) + 1, s)
        if d > 1:
            x = x[..., ::d]
    x = x.permute(0, 1, 2, 4, 5, 3)  # N, H', W', kh, kw, C
    n, h_out, w_out = x.shape[:3]
    if channels is None or len(channels) == 1:
        return x.reshape(n, h_out, w_out, -1)
    return torch.cat([g.reshape(n, h_out, w_out, -1) for g in x.split(channels, dim=-1)], dim=-1)


def kernel_rows(weight: Tensor, channels: list[int] | None = None) -> Tensor:
    """A convolution weight (O, C, kh, kw) as (O, C·kh·kw) in the column order of :func:`patches`."""
    w = weight.permute(0, 2, 3, 1)  # O, kh, kw, C
    if channels is None or len(channels) == 1:
        return w.reshape(w.shape[0], -1)
    return torch.cat([g.reshape(w.shape[0], -1) for g in w.split(channels, dim=-1)], dim=1)


# ----------------------------------------------------------------------------------------- layers and chips
class CrossbarLayer:
    """Stands in for one RRAM layer's ``forward``: the same layer object, its product through the periphery.

    ``w_max`` (0-dim or per output channel) converts between weights and normalised conductances; the
    weight is read from ``module.weight`` at every call, so drift written into it (and ``functional_call``
    substitutions) are seen. Install with :meth:`install`, undo with :meth:`remove`.
    """

    def __init__(self, module: nn.Module, crossbar: Crossbar, periphery: Periphery):
        if isinstance(module, nn.Conv2d):
            if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise RramlibError("the crossbar model supports convolutions with groups=1 and numeric zero "
                                   f"padding only, got groups={module.groups}, padding={module.padding!r}, "
                                   f"padding_mode={module.padding_mode!r}")
            self.group = module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, nn.Linear):
            self.group = 1
        else:
            raise RramlibError(f"the crossbar model handles Conv2d and Linear layers, got {type(module).__name__}")
        self.module = module
        self.crossbar = crossbar
        self.periphery = periphery
        out_features, in_features = module.weight.shape[0], module.weight[0].numel()
        self.n_tiles = len(split_sizes(in_features, crossbar.max_input_size, self.group))
        self.shape = (self.n_tiles, out_features)
        self.w_max: Tensor = torch.ones(())
        self.sigma: Tensor | None = None
        self.offset: Tensor | None = None

    def install(self) -> None:
        self.module.forward = self

    def remove(self) -> None:
        self.module.__dict__.pop("forward", None)

    def program(self, w_max: Tensor, generator: torch.Generator) -> None:
        """Keep the layer's ``w_max``; draw the per-column systematic parts (noise strength, offsets)."""
        xb = self.crossbar
        self.w_max = w_max.reshape(-1) if w_max.dim() else w_max
        dtype, device = self.module.weight.dtype, self.module.weight.device
        self.sigma = self.offset = None
        if xb.out_noise_std > 0:
            z = torch.randn(self.shape, generator=generator, dtype=dtype)
            self.sigma = (xb.out_noise * (1 + xb.out_noise_std * z)).abs().to(device)
        if xb.out_offset_std > 0:
            self.offset = (xb.out_offset_std * torch.randn(self.shape, generator=generator, dtype=dtype)).to(device)

    def to(self, device) -> None:
        self.w_max = self.w_max.to(device)
        self.sigma = None if self.sigma is None else self.sigma.to(device)
        self.offset = None if self.offset is None else self.offset.to(device)

    def _matmul(self, rows: Tensor, w: Tensor, in_sizes: list[int] | None = None, owned: bool = False) -> Tensor:
        w_max = self.w_max.to(w.device)
        w_col = w_max.unsqueeze(1) if w_max.dim() else w_max
        return analog_matmul(rows, w / w_col, self.crossbar, in_sizes=in_sizes, sigma=self.sigma,
                             offset=self.offset, reads=self.periphery.reads, gain=w_max, overwrite=owned)

    def __call__(self, x: Tensor) -> Tensor:
        m = self.module
        if isinstance(m, nn.Linear):
            y = self._matmul(x.reshape(-1, x.shape[-1]), m.weight).reshape(*x.shape[:-1], m.out_features)
            return y if m.bias is None else y + m.bias
        batched = x.dim() == 4
        x = x if batched else x.unsqueeze(0)
        in_sizes = split_sizes(m.weight[0].numel(), self.crossbar.max_input_size, self.group)
        channels = [size // self.group for size in in_sizes]  # input tiles hold whole channels (aihwkit)
        rows = patches(x, m.kernel_size, m.stride, m.padding, m.dilation, channels)  # (N, H', W', C·kh·kw)
        n, h_out, w_out, _ = rows.shape
        rows = rows.reshape(n * h_out * w_out, -1)
        y = self._matmul(rows, kernel_rows(m.weight, channels), in_sizes, owned=rows.data_ptr() != x.data_ptr())
        y = y.reshape(n, h_out, w_out, -1).permute(0, 3, 1, 2)  # a view in channels-last layout, no copy
        if m.bias is not None:
            y = y + m.bias.view(1, -1, 1, 1)
        return y if batched else y.squeeze(0)

    def __deepcopy__(self, memo):
        # a copied model gets its own layer objects bound to the copied module and periphery
        new = copy.copy(self)
        memo[id(self)] = new
        new.module = copy.deepcopy(self.module, memo)
        new.periphery = copy.deepcopy(self.periphery, memo)
        return new


class Periphery:
    """The periphery of one chip: a :class:`CrossbarLayer` per RRAM layer and the per-read noise generator."""

    def __init__(self, crossbar: Crossbar, modules: list[nn.Module]):
        self.crossbar = crossbar
        self.reads = torch.Generator()
        self.layers = [CrossbarLayer(m, crossbar, self) for m in modules]  # validates every layer first
        for layer in self.layers:
            layer.install()

    def program(self, w_maxes: list[Tensor], generator: torch.Generator) -> None:
        """Take each layer's ``w_max`` and draw the systematic parts from ``generator`` (at programming)."""
        for layer, w_max in zip(self.layers, w_maxes):
            layer.program(w_max, generator)

    def reseed(self, seed: int) -> None:
        """Restart the per-read noise stream (the same seed gives the same draws)."""
        self.reads.manual_seed(seed)

    def to(self, device) -> None:
        for layer in self.layers:
            layer.to(device)

    def remove(self) -> None:
        for layer in self.layers:
            layer.remove()

    def __deepcopy__(self, memo):
        new = copy.copy(self)
        memo[id(self)] = new
        new.reads = torch.Generator()
        new.reads.set_state(self.reads.get_state())
        new.layers = [copy.deepcopy(layer, memo) for layer in self.layers]
        return new

