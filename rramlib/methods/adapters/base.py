"""Shared machinery of the adapters: layer wrappers, target selection, named parameter sets ("adapters").

The layout follows peft's tuners (Mangrulkar et al., https://github.com/huggingface/peft): each adapted
``nn.Linear``/``nn.Conv2d`` is replaced in the model by an :class:`AdapterWrapper` that keeps the original
module as ``base_layer`` and adds a digital correction path; the trainable tensors live in
``nn.ParameterDict`` objects keyed by the name of a *named adapter* (peft's term: one parameter set of the
adapter; the compensation methods keep one named adapter per drift level, "level0", ...).

Unlike peft, the adapter tensors are owned by a separate *controller* module (:class:`AdapterController`),
not by the model: ``model.parameters()`` keeps returning the (frozen) base parameters only, the controller's
``state_dict()`` holds only adapter tensors, and the controller can be saved, moved (``controller.to(...)``)
and trained on its own. The wrapper always reads the *current* ``base_layer.weight``, so a drift model
that overwrites ``weight.data`` in place between evaluations is seen immediately.
"""
from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rramlib.core.errors import RramlibError
from rramlib.core.torchutil import eval_mode

__all__ = ["AdapterController", "AdapterWrapper", "find_targets"]

_SUPPORTED = (nn.Linear, nn.Conv2d)
_ADAPTER_NAME = re.compile(r"^[A-Za-z0-9_\-:+]+$")


# ----------------------------------------------------------------------------------------- validators
def check_adapter_name(name: object) -> str:
    """Adapter names become ``nn.ParameterDict`` keys: letters, digits and ``_-:+`` only."""
    if not isinstance(name, str) or not _ADAPTER_NAME.match(name) or hasattr(nn.ParameterDict(), name):
        raise RramlibError(
            f"invalid adapter name {name!r}: use a non-empty string of letters, digits and '_-:+' "
            "that is not an nn.Module attribute name"
        )
    return name


def normalise_adapter_names(names: object) -> list[str]:
    """``names`` as a non-empty list of unique valid adapter names (a single string is one name)."""
    if isinstance(names, str):
        names = (names,)
    if not isinstance(names, Iterable):
        raise RramlibError(f"adapter_names must be a sequence of names, got {names!r}")
    names = [check_adapter_name(n) for n in names]
    if not names:
        raise RramlibError("adapter_names must contain at least one name")
    if len(set(names)) != len(names):
        raise RramlibError(f"duplicate adapter names in {names!r}")
    return names


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
    """Owns the adapter tensors of all wrapped layers, as named parameter sets ("adapters", as in peft).

    Subclasses create each named adapter's tensors in ``nn.ParameterDict`` objects keyed by adapter name
    (:meth:`_init_adapter`) and implement the correction path (:meth:`_adapt`), the weight update used by
    :meth:`merge` (:meth:`_merged_weight`) and the per-position MAC count (:meth:`_macs_per_position`).
    Every ``nn.ParameterDict`` inside the controller is treated as per-adapter storage.
    """

    method = "adapter"

    def __init__(self, model: nn.Module, targets: Sequence[str] | None, adapter_names: Iterable[str]):
        super().__init__()
        names = normalise_adapter_names(adapter_names)
        found = find_targets(model, targets)
        self.target_names: list[str] = [n for n, _ in found]
        self.layer_keys: list[str] = [_layer_key(n) for n in self.target_names]
        self.__dict__["_base_layers"] = [m for _, m in found]
        self.__dict__["_root"] = model
        self._adapter_names: list[str] = []
        self._active: str | None = None
        self._enabled = True
        self._merged_backup: list[torch.Tensor] | None = None
        self._wrappers: list[AdapterWrapper] = []
        self._parents: list[tuple[nn.Module, str]] = []
        self._saved_grad_flags: list[tuple[nn.Parameter, bool]] = []
        self._attached = False
        self._pending_adapters = names

    # -- called by subclasses at the end of their __init__, once their dicts exist
    def _attach(self) -> None:
        for name in self._pending_adapters:
            self.add_adapter(name)
        del self._pending_adapters
        self._active = self._adapter_names[0]
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

    # ------------------------------------------------------------------ named adapters
    @property
    def adapter_names(self) -> list[str]:
        """Names of the parameter sets, in the order they were added."""
        return list(self._adapter_names)

    @property
    def active_adapter(self) -> str:
        """Name of the set the wrappers use now."""
        return self._active

    def set_adapter(self, name: str) -> None:
        """Make ``name`` the active set."""
        self._check_adapter(name)
        if self.merged:
            raise RramlibError("adapters are merged into the base weights; call unmerge() before set_adapter()")
        self._active = name

    def _check_adapter(self, name: object) -> str:
        if not isinstance(name, str) or name not in self._adapter_names:
            raise RramlibError(f"unknown adapter {name!r}; known adapters: {', '.join(self._adapter_names)}")
        return name

    def add_adapter(self, name: str, init_from: str | None = None) -> None:
        """Create a new parameter set, freshly initialised or copied from the set ``init_from``."""
        check_adapter_name(name)
        if name in self._adapter_names:
            raise RramlibError(f"adapter {name!r} exists already")
        if init_from is not None:
            self._check_adapter(init_from)
        self._init_adapter(name)
        self._adapter_names.append(name)
        if init_from is not None:
            self.load_adapter_state_dict(name, self.adapter_state_dict(init_from))

    def delete_adapter(self, name: str) -> None:
        """Delete a parameter set (not the active one)."""
        self._check_adapter(name)
        if name == self._active:
            raise RramlibError(f"adapter {name!r} is active; set another adapter before deleting it")
        for _, pdict in self._adapter_dicts():
            del pdict[name]
        self._adapter_names.remove(name)

    def _adapter_dicts(self) -> Iterator[tuple[str, nn.ParameterDict]]:
        for prefix, mod in self.named_modules():
            if isinstance(mod, nn.ParameterDict):
                yield prefix, mod

    def adapter_parameters(self, name: str) -> list[nn.Parameter]:
        """The trainable tensors of one named adapter (what an optimiser for it should get)."""
        self._check_adapter(name)
        return [pdict[name] for _, pdict in self._adapter_dicts()]

    def adapter_tensors(self, name: str) -> dict[str, torch.Tensor]:
        """The live tensors of one named adapter (not copies), keyed ``"<layer>.<tensor>"`` (``"<tensor>"``
        for a tensor shared across layers): the digital values the adapted network reads when ``name`` is
        active."""
        self._check_adapter(name)
        layer_of = dict(zip(self.layer_keys, self.target_names))
        out = {}
        for prefix, pdict in self._adapter_dicts():
            kind, _, key = prefix.partition(".")
            out[f"{layer_of[key]}.{kind}" if key else kind] = pdict[name]
        return out

    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """Detached copies of one adapter's tensors, keyed without its name (so sets are interchangeable)."""
        self._check_adapter(name)
        return {prefix: pdict[name].detach().clone() for prefix, pdict in self._adapter_dicts()}

    def load_adapter_state_dict(self, name: str, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` (from :meth:`adapter_state_dict`) into the adapter ``name``, checking keys and shapes."""
        self._check_adapter(name)
        if not isinstance(state, dict):
            raise RramlibError(f"adapter state must be a dict, got {type(state).__name__}")
        dicts = dict(self._adapter_dicts())
        if set(state) != set(dicts):
            missing, unexpected = sorted(set(dicts) - set(state)), sorted(set(state) - set(dicts))
            raise RramlibError(f"adapter state does not fit this controller: missing {missing}, "
                               f"unexpected {unexpected}")
        with torch.no_grad():
            for prefix, pdict in dicts.items():
                target, value = pdict[name], state[prefix]
                if not isinstance(value, torch.Tensor) or value.shape != target.shape:
                    got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise RramlibError(f"adapter state entry {prefix!r}: expected shape {tuple(target.shape)}, "
                                       f"got {got}")
                target.copy_(value)

    # ------------------------------------------------------------------ storage and compute
    def values_per_adapter(self) -> int:
        """Number of values one named adapter stores (sum of its tensors' sizes)."""
        return sum(p.numel() for p in self.adapter_parameters(self._adapter_names[0]))

    def shared_values(self) -> int:
        """Values shared by all named adapters that must be stored (regenerable tensors count 0)."""
        return 0

    def shared_seed_bytes(self) -> int:
        """Bytes of seed needed to regenerate the shared tensors (0 when there are none)."""
        return 0

    def extra_macs(self, example_input) -> int:
        """Multiply-accumulates the adapter paths add for ONE input sample.

        Runs the model once on ``example_input`` (tensor, tuple of positional inputs or dict of keyword
        inputs; any batch size) in eval mode without gradients, with forward hooks on the wrappers to
        read how many positions each layer is applied at (a convolution's output pixels; for a Linear layer every
        position of its input's middle dimensions, e.g. each token of a ``(batch, tokens, features)`` sequence);
        training flags are restored afterwards (BN statistics are not touched).
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
        try:
            with torch.no_grad(), eval_mode(self._root):
                if isinstance(example_input, dict):
                    self._root(**example_input)
                elif isinstance(example_input, tuple):
                    self._root(*example_input)
                else:
                    self._root(example_input)
        finally:
            for h in handles:
                h.remove()
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
        """Whether the active adapter is folded into the base weights (see :meth:`merge`)."""
        return self._merged_backup is not None

    def merge(self) -> None:
        """Fold the active adapter into the base layers' weights (in place; the wrappers then add nothing).

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
        return (f"layers={len(self.target_names)}, adapter_names={self._adapter_names}, active={self._active!r}, "
                f"enabled={self._enabled}, merged={self.merged}")

    # ------------------------------------------------------------------ subclass hooks
    def _init_adapter(self, name: str) -> None:  # pragma: no cover - abstract
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


def conv1x1_like(layer: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, base_out: torch.Tensor,
                 where: str) -> torch.Tensor:
    """Apply the 1×1 kernel ``weight`` with ``layer``'s stride (no padding): the branch VeRA+ uses.

    Raises naming ``where`` when the branch's spatial size differs from the convolution's output.
    """
    z = F.conv2d(x, weight, None, layer.stride)
    if z.shape[-2:] != base_out.shape[-2:]:
        raise RramlibError(f"1x1 branch of {where} gives spatial size {tuple(z.shape[-2:])} but the convolution "
                           f"gives {tuple(base_out.shape[-2:])} (kernel/padding do not keep the size); "
                           "do not target this layer")
    return z


def centre_tap(layer: nn.Conv2d, delta: torch.Tensor, where: str) -> torch.Tensor:
    """The (out, in) matrix ``delta`` of a 1×1 branch as a kernel of ``layer``'s shape (zero but the centre).

    A 1×1 convolution with the layer's stride samples the input at the centre tap of an odd k×k kernel
    whose padding is dilation·(k−1)/2; only there can the branch be folded into the kernel.
    """
    kernel, pad, dil = layer.kernel_size, layer.padding, layer.dilation
    ok = (layer.groups == 1 and layer.padding_mode == "zeros" and not isinstance(pad, str)
          and all(k % 2 == 1 and p == d * (k - 1) // 2 for k, p, d in zip(kernel, pad, dil)))
    if not ok:
        raise RramlibError(f"cannot merge the 1x1 branch of {where}: needs an odd kernel, "
                           "padding = dilation*(kernel-1)/2, groups=1 and zero padding")
    out = torch.zeros_like(layer.weight, dtype=delta.dtype)
    out[:, :, kernel[0] // 2, kernel[1] // 2] = delta
    return out


def conv_like(layer: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Convolve ``x`` with ``weight`` using ``layer``'s stride, padding and dilation (groups 1, no bias)."""
    return F.conv2d(x, weight, None, layer.stride, layer.padding, layer.dilation)
