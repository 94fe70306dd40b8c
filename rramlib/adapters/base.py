"""Shared machinery of the adapters: layer wrappers, target selection, named per-level parameter sets.

The layout follows peft's tuners (Mangrulkar et al., https://github.com/huggingface/peft): each adapted
``nn.Linear``/``nn.Conv2d`` is replaced in the model by an :class:`AdapterWrapper` that keeps the original
module as ``base_layer`` and adds a digital correction path; the trainable tensors live in
``nn.ParameterDict`` objects keyed by a set name, here one set per drift level ("level0", ...).

Unlike peft, the adapter tensors are owned by a separate *controller* module (:class:`AdapterController`),
not by the model: ``model.parameters()`` keeps returning the (frozen) base parameters only, the controller's
``state_dict()`` holds only adapter tensors, and the controller can be saved, moved (``controller.to(...)``)
and trained on its own. The wrapper always reads the *current* ``base_layer.weight``, so a drift model
that overwrites ``weight.data`` in place between evaluations is seen immediately.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import re
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RramlibError

__all__ = ["AdapterController", "AdapterWrapper", "find_targets", "derive_seed"]

_SUPPORTED = (nn.Linear, nn.Conv2d)
_LEVEL_NAME = re.compile(r"^[A-Za-z0-9_\-:+]+$")


# ----------------------------------------------------------------------------------------- validators
def check_rank(rank: object) -> int:
    """A rank: a positive Python int (bools rejected)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise RramlibError(f"rank must be a positive integer, got {rank!r}")
    return rank


def check_seed(seed: object) -> int:
    """A seed for ``torch.Generator.manual_seed``: an int in [0, 2**64)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise RramlibError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    return seed


def check_finite(name: str, value: object) -> float:
    """A finite real number (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise RramlibError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_level_name(name: object) -> str:
    """Level names become ``nn.ParameterDict`` keys: letters, digits and ``_-:+`` only."""
    if not isinstance(name, str) or not _LEVEL_NAME.match(name) or hasattr(nn.ParameterDict(), name):
        raise RramlibError(
            f"invalid level name {name!r}: use a non-empty string of letters, digits and '_-:+' "
            "that is not an nn.Module attribute name"
        )
    return name


def normalise_levels(levels: object) -> list[str]:
    """``levels`` as a non-empty list of unique valid names (a single string is one level)."""
    if isinstance(levels, str):
        levels = (levels,)
    if not isinstance(levels, Iterable):
        raise RramlibError(f"levels must be a sequence of names, got {levels!r}")
    names = [check_level_name(n) for n in levels]
    if not names:
        raise RramlibError("levels must contain at least one name")
    if len(set(names)) != len(names):
        raise RramlibError(f"duplicate level names in {names!r}")
    return names


def derive_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` with SHA-256 (stable across runs, unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# ----------------------------------------------------------------------------------------- targets
def find_targets(model: nn.Module, targets: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    """Resolve ``targets`` to ``(qualified name, module)`` pairs, in model order.

    ``None`` selects every ``nn.Linear`` and ``nn.Conv2d`` (except the projection inside
    ``nn.MultiheadAttention``, which does not call its ``forward``); a list names modules explicitly.
    """
    if not isinstance(model, nn.Module):
        raise RramlibError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, mod in model.named_modules():
        if isinstance(mod, AdapterWrapper):
            raise RramlibError(
                f"model already carries adapters (at {name or '<root>'!r}); call remove() on their controller first"
            )
    modules = dict(model.named_modules())
    if targets is None:
        skip: set[str] = set()
        for name, mod in modules.items():
            if isinstance(mod, nn.MultiheadAttention):
                skip.update(f"{name}.{child}" if name else child for child, _ in mod.named_modules() if child)
        found = [(n, m) for n, m in modules.items() if isinstance(m, _SUPPORTED) and n not in skip]
        if not found:
            raise RramlibError("the model has no nn.Linear or nn.Conv2d layer to adapt")
    else:
        if isinstance(targets, str) or not isinstance(targets, Iterable):
            raise RramlibError(f"targets must be None or a list of module names, got {targets!r}")
        targets = list(targets)
        if not targets:
            raise RramlibError("targets is an empty list; pass None to adapt every Linear/Conv2d layer")
        if len(set(targets)) != len(targets):
            raise RramlibError(f"duplicate names in targets {targets!r}")
        order = {n: i for i, n in enumerate(modules)}
        found = []
        for name in targets:
            if not isinstance(name, str) or name not in modules:
                raise RramlibError(f"target {name!r} is not a module of the model")
            mod = modules[name]
            if not isinstance(mod, _SUPPORTED):
                raise RramlibError(f"target {name!r} is a {type(mod).__name__}; only Linear and Conv2d can be adapted")
            found.append((name, mod))
        found.sort(key=lambda nm: order[nm[0]])
    for name, _ in found:
        if name == "":
            raise RramlibError("the model itself is a single layer; wrap it in nn.Sequential to adapt it")
    return found


def _layer_key(name: str) -> str:
    # '-' is not valid in Python identifiers, so this map from qualified names is one-to-one
    return name.replace(".", "-")


# ----------------------------------------------------------------------------------------- wrapper
class AdapterWrapper(nn.Module):
    """Stands in for one adapted layer: ``base_layer(x)`` plus the controller's correction path.

    ``base_layer`` is the original module object (never a copy), so in-place changes of its weight
    are used by the next forward. Unknown attributes (``weight``, ``in_features`` ...) are looked up on
    ``base_layer``.
    """

    def __init__(self, base_layer: nn.Module, controller: "AdapterController", index: int, name: str):
        super().__init__()
        self.base_layer = base_layer
        # plain attributes: the controller must not become a submodule of the model
        self.__dict__["_controller"] = controller
        self.__dict__["_index"] = index
        self.__dict__["_target_name"] = name

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self._modules["base_layer"], name)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = self.base_layer(x, *args, **kwargs)
        ctrl = self._controller
        if ctrl.merged or not ctrl.enabled:
            return out
        return ctrl._adapt(self._index, x, out)

    def extra_repr(self) -> str:
        return f"adapter={type(self._controller).__name__}, target={self._target_name!r}"


# ----------------------------------------------------------------------------------------- controller
class AdapterController(nn.Module):
    """Owns the adapter tensors of all wrapped layers and the named per-level parameter sets.

    Subclasses create their per-level tensors in ``nn.ParameterDict`` objects keyed by level name
    (:meth:`_init_level`) and implement the correction path (:meth:`_adapt`), the weight update used by
    :meth:`merge` (:meth:`_merged_weight`) and the per-position MAC count (:meth:`_macs_per_position`).
    Every ``nn.ParameterDict`` inside the controller is treated as per-level storage.
    """

    method = "adapter"

    def __init__(self, model: nn.Module, targets: Sequence[str] | None, levels: Iterable[str]):
        super().__init__()
        names = normalise_levels(levels)
        found = find_targets(model, targets)
        self.target_names: list[str] = [n for n, _ in found]
        self.layer_keys: list[str] = [_layer_key(n) for n in self.target_names]
        self.__dict__["_base_layers"] = [m for _, m in found]
        self.__dict__["_root"] = model
        self._levels: list[str] = []
        self._active: str | None = None
        self._enabled = True
        self._merged_backup: list[torch.Tensor] | None = None
        self._wrappers: list[AdapterWrapper] = []
        self._parents: list[tuple[nn.Module, str]] = []
        self._saved_grad_flags: list[tuple[nn.Parameter, bool]] = []
        self._attached = False
        self._pending_levels = names

    # -- called by subclasses at the end of their __init__, once their dicts exist
    def _attach(self) -> None:
        for name in self._pending_levels:
            self.add_level(name)
        del self._pending_levels
        self._active = self._levels[0]
        model = self._root
        self._saved_grad_flags = [(p, p.requires_grad) for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        for i, (name, base) in enumerate(zip(self.target_names, self._base_layers)):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            wrapper = AdapterWrapper(base, self, i, name)
            setattr(parent, attr, wrapper)
            self._parents.append((parent, attr))
            self._wrappers.append(wrapper)
        self._attached = True

    # ------------------------------------------------------------------ levels
    @property
    def levels(self) -> list[str]:
        """Names of the parameter sets, in the order they were added."""
        return list(self._levels)

    @property
    def active_level(self) -> str:
        """Name of the set the wrappers use now."""
        return self._active

    def set_level(self, name: str) -> None:
        """Make ``name`` the active set."""
        self._check_level(name)
        if self.merged:
            raise RramlibError("adapters are merged into the base weights; call unmerge() before set_level()")
        self._active = name

    def _check_level(self, name: object) -> str:
        if not isinstance(name, str) or name not in self._levels:
            raise RramlibError(f"unknown level {name!r}; known levels: {', '.join(self._levels)}")
        return name

    def add_level(self, name: str, init_from: str | None = None) -> None:
        """Create a new parameter set, freshly initialised or copied from the set ``init_from``."""
        check_level_name(name)
        if name in self._levels:
            raise RramlibError(f"level {name!r} exists already")
        if init_from is not None:
            self._check_level(init_from)
        self._init_level(name)
        self._levels.append(name)
        if init_from is not None:
            self.load_level_state_dict(name, self.level_state_dict(init_from))

    def remove_level(self, name: str) -> None:
        """Delete a parameter set (not the active one)."""
        self._check_level(name)
        if name == self._active:
            raise RramlibError(f"level {name!r} is active; set another level before removing it")
        for _, pdict in self._level_dicts():
            del pdict[name]
        self._levels.remove(name)

    def _level_dicts(self) -> Iterator[tuple[str, nn.ParameterDict]]:
        for prefix, mod in self.named_modules():
            if isinstance(mod, nn.ParameterDict):
                yield prefix, mod

    def level_parameters(self, name: str) -> list[nn.Parameter]:
        """The trainable tensors of one level (what an optimiser for that level should get)."""
        self._check_level(name)
        return [pdict[name] for _, pdict in self._level_dicts()]

    def level_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """Detached copies of one level's tensors, keyed without the level name (so sets are interchangeable)."""
        self._check_level(name)
        return {prefix: pdict[name].detach().clone() for prefix, pdict in self._level_dicts()}

    def load_level_state_dict(self, name: str, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` (from :meth:`level_state_dict`) into the level ``name``, checking keys and shapes."""
        self._check_level(name)
        if not isinstance(state, dict):
            raise RramlibError(f"level state must be a dict, got {type(state).__name__}")
        dicts = dict(self._level_dicts())
        if set(state) != set(dicts):
            missing, unexpected = sorted(set(dicts) - set(state)), sorted(set(state) - set(dicts))
            raise RramlibError(f"level state does not fit this adapter: missing {missing}, unexpected {unexpected}")
        with torch.no_grad():
            for prefix, pdict in dicts.items():
                target, value = pdict[name], state[prefix]
                if not isinstance(value, torch.Tensor) or value.shape != target.shape:
                    got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise RramlibError(f"level state entry {prefix!r}: expected shape {tuple(target.shape)}, got {got}")
                target.copy_(value)

    # ------------------------------------------------------------------ storage and compute
    def values_per_level(self) -> int:
        """Number of values one level stores (sum of its tensors' sizes)."""
        return sum(p.numel() for p in self.level_parameters(self._levels[0]))

    def shared_values(self) -> int:
        """Values shared by all levels that must be stored (regenerable tensors count 0)."""
        return 0

    def shared_seed_bytes(self) -> int:
        """Bytes of seed needed to regenerate the shared tensors (0 when there are none)."""
        return 0

    def extra_macs(self, example_input) -> int:
        """Multiply-accumulates the adapter paths add for ONE input sample.

        Runs the model once on ``example_input`` (tensor, tuple of positional inputs or dict of keyword
        inputs; any batch size) in eval mode without gradients, with forward hooks on the wrappers to
        read spatial sizes; training flags are restored afterwards (BN statistics are not touched).
        """
        return self._count_macs(example_input)[0]

    def target_macs(self, example_input) -> int:
        """Multiply-accumulates of the adapted base layers themselves for one input sample (for ratios)."""
        return self._count_macs(example_input)[1]

    def _count_macs(self, example_input) -> tuple[int, int]:
        self._check_attached()
        calls: list[list[tuple[torch.Size, torch.Size]]] = [[] for _ in self._wrappers]

        def hook(index):
            def record(module, inputs, output):
                calls[index].append((inputs[0].shape, output.shape))
            return record

        handles = [w.register_forward_hook(hook(i)) for i, w in enumerate(self._wrappers)]
        modes = [(m, m.training) for m in self._root.modules()]
        self._root.eval()
        try:
            with torch.no_grad():
                if isinstance(example_input, dict):
                    self._root(**example_input)
                elif isinstance(example_input, tuple):
                    self._root(*example_input)
                else:
                    self._root(example_input)
        finally:
            for h in handles:
                h.remove()
            for m, flag in modes:
                m.training = flag
        extra = base = 0
        for i, records in enumerate(calls):
            layer = self._base_layers[i]
            for in_shape, out_shape in records:
                if isinstance(layer, nn.Conv2d):
                    positions = out_shape[-1] * out_shape[-2]
                    kh, kw = layer.kernel_size
                    per_pos = layer.out_channels * (layer.in_channels // layer.groups) * kh * kw
                else:
                    positions = math.prod(in_shape[1:-1]) if len(in_shape) > 1 else 1
                    per_pos = layer.in_features * layer.out_features
                extra += positions * self._macs_per_position(i)
                base += positions * per_pos
        return int(extra), int(base)

    # ------------------------------------------------------------------ enable / merge / remove
    @property
    def enabled(self) -> bool:
        """Whether the wrappers add the correction path (False: plain base layers)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if not value and self.merged:
            raise RramlibError("adapters are merged into the base weights; call unmerge() before disabling them")
        self._enabled = bool(value)

    @contextlib.contextmanager
    def disabled(self):
        """Context manager that bypasses the adapters inside the ``with`` block."""
        previous = self._enabled
        self.enabled = False
        try:
            yield self
        finally:
            self._enabled = previous

    @property
    def merged(self) -> bool:
        """Whether the active level is folded into the base weights (see :meth:`merge`)."""
        return self._merged_backup is not None

    def merge(self) -> None:
        """Fold the active level into the base layers' weights (in place; the wrappers then add nothing).

        Meant for export/inspection: :meth:`unmerge` restores the exact weights saved at merge time, so a
        drift model must not overwrite the weights while merged.
        """
        self._check_attached()
        if self.merged:
            raise RramlibError("adapters are merged already")
        if not self._enabled:
            raise RramlibError("adapters are disabled; enable them before merge()")
        new_weights = [self._merged_weight(i) for i in range(len(self._base_layers))]  # may raise: nothing changed yet
        backup = []
        with torch.no_grad():
            for layer, new in zip(self._base_layers, new_weights):
                backup.append(layer.weight.detach().clone())
                layer.weight.copy_(new)
        self._merged_backup = backup

    def unmerge(self) -> None:
        """Restore the base weights saved by :meth:`merge`."""
        if not self.merged:
            raise RramlibError("adapters are not merged")
        with torch.no_grad():
            for layer, weight in zip(self._base_layers, self._merged_backup):
                layer.weight.copy_(weight)
        self._merged_backup = None

    def remove(self) -> None:
        """Put the original modules back into the model and restore their ``requires_grad`` flags."""
        if not self._attached:
            return
        if self.merged:
            self.unmerge()
        for (parent, attr), base in zip(self._parents, self._base_layers):
            setattr(parent, attr, base)
        for p, flag in self._saved_grad_flags:
            p.requires_grad_(flag)
        self._saved_grad_flags = []
        self._attached = False

    def _check_attached(self) -> None:
        if not self._attached:
            raise RramlibError("the adapters were removed from the model")

    @property
    def wrappers(self) -> list[AdapterWrapper]:
        """The wrapper modules now standing in the model, in target order."""
        return list(self._wrappers)

    def base_layer(self, index_or_name: int | str) -> nn.Module:
        """The original layer (by target index or qualified name)."""
        if isinstance(index_or_name, str):
            if index_or_name not in self.target_names:
                raise RramlibError(f"{index_or_name!r} is not an adapted layer")
            index_or_name = self.target_names.index(index_or_name)
        return self._base_layers[index_or_name]

    def forward(self, *args, **kwargs):
        raise RramlibError(
            f"{type(self).__name__} holds adapter parameters only; call the model, whose adapted layers use it"
        )

    def extra_repr(self) -> str:
        return (f"layers={len(self.target_names)}, levels={self._levels}, active={self._active!r}, "
                f"enabled={self._enabled}, merged={self.merged}")

    # ------------------------------------------------------------------ subclass hooks
    def _init_level(self, name: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _adapt(self, index: int, x: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _merged_weight(self, index: int) -> torch.Tensor:  # pragma: no cover
        raise RramlibError(f"{type(self).__name__} cannot be merged")

    def _macs_per_position(self, index: int) -> int:  # pragma: no cover
        raise NotImplementedError


# ----------------------------------------------------------------------------------------- helpers
def layer_dims(layer: nn.Module) -> tuple[int, int]:
    """(in, out): features of a Linear, channels of a Conv2d."""
    if isinstance(layer, nn.Conv2d):
        return layer.in_channels, layer.out_channels
    return layer.in_features, layer.out_features


def kaiming_uniform_(tensor: torch.Tensor, generator: torch.Generator, a: float = 0.0) -> torch.Tensor:
    """``nn.init.kaiming_uniform_`` (fan_in, leaky_relu gain with slope ``a``) drawing from ``generator``.

    Bound ``sqrt(3) * gain / sqrt(fan_in)``; written out because ``generator=`` in ``nn.init`` needs torch>=2.2.
    """
    fan_in = tensor.shape[1] * (math.prod(tensor.shape[2:]) if tensor.dim() > 2 else 1)
    gain = math.sqrt(2.0 / (1 + a**2))
    std = gain / math.sqrt(fan_in)
    bound = math.sqrt(3.0) * std
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def check_plain_conv(name: str, layer: nn.Module, method: str) -> None:
    """LoRA/DoRA convolutions need groups == 1 and zero padding."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise RramlibError(f"{method} cannot adapt {name!r}: grouped convolutions (groups={layer.groups}) "
                               "are not supported")
        if layer.padding_mode != "zeros":
            raise RramlibError(f"{method} cannot adapt {name!r}: padding_mode {layer.padding_mode!r} "
                               "is not supported (zeros only)")


def conv_like(layer: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Convolve ``x`` with ``weight`` using ``layer``'s stride, padding and dilation (groups 1, no bias)."""
    return F.conv2d(x, weight, None, layer.stride, layer.padding, layer.dilation)
