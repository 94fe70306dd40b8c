"""VeRA+: vector-based random-matrix adaptation with one vector set per drift level.

VeRA (Kopiczko et al., "VeRA: Vector-based Random Matrix Adaptation", ICLR 2024) adds to a frozen layer
``y = W x + Λ_b B Λ_d A x`` where ``A`` (r × in) and ``B`` (out × r) are frozen random matrices shared by all
layers and only the diagonal scalings ``λ_d`` (length r) and ``λ_b`` (length out) are trained. VeRA+ (the
2026 drift-compensation study this package accompanies) keeps ``W = W(t)`` on RRAM, trains one (λ_b, λ_d) set
per drift level, uses 1×1 kernels for convolutions and optionally shares the vectors across layers.

Conventions fixed here (ours where the study's text is unavailable):

* ``A`` and ``B`` are drawn once from a CPU ``torch.Generator`` seeded with ``seed``, ``A`` first then ``B``,
  Kaiming-uniform with bound ``sqrt(6 / fan_in)`` exactly as peft's VeRA (``peft.tuners.vera.model``), with
  shapes (r, in_max) and (out_max, r); layer ℓ uses ``A[:, :in_ℓ]`` and ``B[:out_ℓ, :]``. With
  ``sharing="layer"`` on Linear layers the forward is bit-identical to peft's VeRA with one named adapter per
  drift level, all sharing one ``projection_prng_key``.
* Conv2d: ``A`` acts as a 1×1 convolution C_in→r with the main convolution's stride (no padding), ``B`` as a
  1×1 convolution r→C_out; if the branch's output size differs from the main convolution's, a
  :class:`~rramlib.core.errors.RramlibError` names the layer.
* ``λ_b`` starts at 0 (the adapted model equals the base model exactly), ``λ_d`` at ``d_init``.
* ``sharing="cross"``: one ``λ_b`` of length out_max (layer ℓ uses ``λ_b[:out_ℓ]``) and one ``λ_d`` per adapter.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rramlib.core.config import Config
from rramlib.core.errors import RramlibError, check_finite, check_int, check_seed
from rramlib.methods.adapters.base import AdapterController, centre_tap, conv1x1_like, kaiming_uniform_, layer_dims

__all__ = ["VeraPlus", "VeraPlusConfig", "add_vera_plus", "vera_projections"]


@dataclass(frozen=True)
class VeraPlusConfig(Config):
    """VeRA+ hyper-parameters: rank r of the shared projections, vector sharing (``"layer"`` or ``"cross"``),
    the seed that regenerates A and B (peft's ``projection_prng_key``) and the initial value of λ_d."""

    owner: ClassVar[str] = "vera_plus"
    rank: int = field(default=16, metadata={"help": "rank r of the shared frozen projections A and B"})
    sharing: str = field(default="layer", metadata={
        "help": "vector sharing: layer (one λ_b, λ_d pair per layer) or cross (one pair shared by all layers)",
        "choices": ("layer", "cross")})
    projection_seed: int = field(default=0, metadata={
        "help": "seed that regenerates A and B (peft's projection_prng_key)"})
    d_init: float = field(default=0.1, metadata={"help": "initial value of every entry of λ_d"})

    def _validate(self) -> None:
        check_int(f"{self.owner}.rank", self.rank, 1)
        check_seed(f"{self.owner}.projection_seed", self.projection_seed)
        check_finite(f"{self.owner}.d_init", self.d_init)


def vera_projections(rank: int, in_max: int, out_max: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared frozen projections ``A`` (rank × in_max) and ``B`` (out_max × rank), float32 on CPU.

    One generator seeded with ``seed``; ``A`` is drawn first, then ``B``; Kaiming-uniform with gain √2 and
    fan_in = number of columns (peft's VeRA ``_kaiming_init``), so the same seed gives peft's matrices.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    a = kaiming_uniform_(torch.empty((rank, in_max), dtype=torch.float32), gen)
    b = kaiming_uniform_(torch.empty((out_max, rank), dtype=torch.float32), gen)
    return a, b


class VeraPlus(AdapterController):
    """Controller of VeRA+ adapters (see the module docstring); build it with :func:`add_vera_plus`.

    Tensors: buffers ``vera_A``, ``vera_B`` (regenerated from the seed, not saved in ``state_dict``); per adapter
    ``lambda_b`` / ``lambda_d`` — with ``sharing="layer"`` in ``nn.ModuleDict`` keyed by layer (dots of the
    qualified name replaced by ``-``), each an ``nn.ParameterDict`` keyed by adapter; with ``sharing="cross"``
    one ``nn.ParameterDict`` keyed by adapter each.
    """

    method = "vera_plus"

    def __init__(self, model: nn.Module, config: VeraPlusConfig | None = None, *,
                 targets: Sequence[str] | None = None, adapter_names: Sequence[str] = ("level0",)):
        config = VeraPlusConfig.resolve(config, {})
        super().__init__(model, targets, adapter_names)
        self.config = config
        self.rank, self.sharing, self.seed, self.d_init = (config.rank, config.sharing, config.projection_seed,
                                                           float(config.d_init))
        dims = [layer_dims(m) for m in self._base_layers]
        self.in_max = max(d[0] for d in dims)
        self.out_max = max(d[1] for d in dims)
        a, b = vera_projections(self.rank, self.in_max, self.out_max, self.seed)
        # drawn on the CPU (device-independent values), then placed like the base weights (as peft does)
        first = self._base_layers[0].weight
        dtype = first.dtype if first.is_floating_point() else torch.float32
        a, b = a.to(device=first.device, dtype=dtype), b.to(device=first.device, dtype=dtype)
        self.register_buffer("vera_A", a, persistent=False)
        self.register_buffer("vera_B", b, persistent=False)
        # saved, so that loading a state_dict made with another seed is refused
        signed = self.seed - 2**64 if self.seed >= 2**63 else self.seed
        self.register_buffer("projection_seed", torch.tensor(signed, dtype=torch.int64))
        if self.sharing == "layer":
            self.lambda_b = nn.ModuleDict({k: nn.ParameterDict() for k in self.layer_keys})
            self.lambda_d = nn.ModuleDict({k: nn.ParameterDict() for k in self.layer_keys})
        else:
            self.lambda_b = nn.ParameterDict()
            self.lambda_d = nn.ParameterDict()
        self._attach()

    # ------------------------------------------------------------------ named adapters
    def _init_adapter(self, name: str) -> None:
        device, dtype = self.vera_A.device, self.vera_A.dtype
        def d_vector():
            return nn.Parameter(torch.full((self.rank,), self.d_init, device=device, dtype=dtype))

        if self.sharing == "layer":
            for key, layer in zip(self.layer_keys, self._base_layers):
                out = layer_dims(layer)[1]
                self.lambda_b[key][name] = nn.Parameter(torch.zeros(out, device=device, dtype=dtype))
                self.lambda_d[key][name] = d_vector()
        else:
            self.lambda_b[name] = nn.Parameter(torch.zeros(self.out_max, device=device, dtype=dtype))
            self.lambda_d[name] = d_vector()

    def _lambdas(self, index: int, adapter: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.sharing == "layer":
            key = self.layer_keys[index]
            return self.lambda_b[key][adapter], self.lambda_d[key][adapter]
        out = layer_dims(self._base_layers[index])[1]
        return self.lambda_b[adapter][:out], self.lambda_d[adapter]

    # ------------------------------------------------------------------ forward
    def _adapt(self, index: int, x: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        layer = self._base_layers[index]
        lambda_b, lambda_d = self._lambdas(index, self._active)
        if isinstance(layer, nn.Conv2d):
            c_in, c_out = layer.in_channels, layer.out_channels
            a = self.vera_A[:, :c_in].reshape(self.rank, c_in, 1, 1)
            b = self.vera_B[:c_out, :].reshape(c_out, self.rank, 1, 1)
            z = conv1x1_like(layer, x, a, base_out, f"VeRA+ layer {self.target_names[index]!r}")
            z = lambda_d.view(-1, 1, 1) * z
            return base_out + lambda_b.view(-1, 1, 1) * F.conv2d(z, b)
        # same operations in the same order as peft's VeRA Linear.forward (bit-identical results)
        in_f, out_f = layer.in_features, layer.out_features
        sliced_a = self.vera_A[:, :in_f]
        sliced_b = self.vera_B[:out_f, :]
        return base_out + lambda_b * F.linear(lambda_d * F.linear(x, sliced_a), sliced_b)

    def delta_weight(self, index: int, adapter: str | None = None) -> torch.Tensor:
        """ΔW = (λ_b ⊙ B) (λ_d ⊙ A) of one layer, shape (out, in) (for a conv: the 1×1 kernel as a matrix)."""
        adapter = self._check_adapter(self._active if adapter is None else adapter)
        c_in, c_out = layer_dims(self._base_layers[index])
        lambda_b, lambda_d = self._lambdas(index, adapter)
        return (lambda_b.unsqueeze(-1) * self.vera_B[:c_out, :]) @ (lambda_d.unsqueeze(-1) * self.vera_A[:, :c_in])

    def _merged_weight(self, index: int) -> torch.Tensor:
        layer = self._base_layers[index]
        delta = self.delta_weight(index).detach()
        weight = layer.weight.detach()
        if isinstance(layer, nn.Linear):
            return weight + delta
        return weight + centre_tap(layer, delta, f"VeRA+ layer {self.target_names[index]!r}")

    # ------------------------------------------------------------------ storage and compute
    def shared_values(self) -> int:
        """0: A and B are regenerable from the seed; their values are counted apart (:meth:`projection_values`)."""
        return 0

    def shared_seed_bytes(self) -> int:
        """8 bytes: the 64-bit seed that regenerates A and B."""
        return 8

    def projection_values(self) -> int:
        """Values of A (r × max fan-in) and B (max fan-out × r): what SRAM holds if the projections sit there
        (stored, or regenerated at power-up), or what is drawn again at every inference if they are regenerated
        (:data:`rramlib.methods.overhead.PROJECTION_READINGS`)."""
        return self.rank * self.in_max + self.out_max * self.rank

    def _macs_per_position(self, index: int) -> int:
        # A x (r*in), λ_d ⊙ (r), B z (out*r), λ_b ⊙ (out); the final addition is not a MAC
        c_in, c_out = layer_dims(self._base_layers[index])
        return self.rank * c_in + self.rank + c_out * self.rank + c_out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        key = "projection_seed"
        if key in state_dict and int(state_dict[key]) != int(self.projection_seed):
            raise RramlibError(f"state_dict was made with projection seed {int(state_dict[key])}, "
                               f"this adapter uses {int(self.projection_seed)}")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return (f"rank={self.rank}, sharing={self.sharing!r}, seed={self.seed}, in_max={self.in_max}, "
                f"out_max={self.out_max}, " + super().extra_repr())


def add_vera_plus(model: nn.Module, config: VeraPlusConfig | None = None, *, targets: Sequence[str] | None = None,
                  adapter_names: Sequence[str] = ("level0",), **fields) -> VeraPlus:
    """Wrap the target layers of ``model`` (in place) with VeRA+ adapters and return their controller.

    ``config`` or its fields as keywords (``rank=8``); ``targets``: None for every Linear/Conv2d, or a list of
    qualified module names. All model parameters are frozen (``remove()`` restores their flags); train
    ``controller.adapter_parameters(name)``.
    """
    return VeraPlus(model, VeraPlusConfig.resolve(config, fields), targets=targets, adapter_names=adapter_names)
