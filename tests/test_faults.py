"""Bit flips in stored parameters (rramlib.device.faults): golden values, reversibility, remedies, determinism."""
import math

import pytest
import torch

from rramlib.core.errors import RramlibError
from rramlib.device.faults import (
    FORMATS, Fault, Remedy, bit_field, flip_bits, injected, remedy_cost_bits, sensitivity, stored_value,
)


_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _bits(x: torch.Tensor) -> torch.Tensor:
    return x.detach().contiguous().view(torch.int32) if x.dtype == torch.float32 else x.view(torch.int16)


def _same(a: list[dict], b: list[dict]) -> bool:
    """Records equal, NaN equal to NaN."""
    return [{k: repr(v) for k, v in r.items()} for r in a] == [{k: repr(v) for k, v in r.items()} for r in b]


def test_fp32_golden_values():
    one = torch.tensor([1.0])  # 0x3F800000: bit 30 is 0, bits 23-29 are 1
    assert one.view(torch.int32).item() == 0x3F800000
    assert flip_bits(one, 0, 30, "fp32").item() == math.inf  # 0x7F800000
    assert flip_bits(one, 0, 31, "fp32").item() == -1.0
    assert flip_bits(one, 0, 23, "fp32").item() == 0.5  # 0x3F000000: exponent 126
    assert flip_bits(one, 0, 22, "fp32").item() == 1.5
    assert flip_bits(one, 0, 0, "fp32").item() == 1.0 + 2.0**-23
    two = torch.tensor([2.0])  # 0x40000000: bit 30 set -> cleared gives 0x00000000
    assert flip_bits(two, 0, 30, "fp32").item() == 0.0


def test_fp16_bf16_int8_golden_values():
    one = torch.tensor([1.0])  # fp16 0x3C00, bf16 0x3F80
    assert flip_bits(one, 0, 14, "fp16").item() == math.inf
    assert flip_bits(one, 0, 15, "fp16").item() == -1.0
    assert flip_bits(one, 0, 10, "fp16").item() == 0.5
    assert flip_bits(one, 0, 9, "fp16").item() == 1.5
    assert flip_bits(one, 0, 14, "bf16").item() == math.inf
    assert flip_bits(one, 0, 6, "bf16").item() == 1.5
    x = torch.tensor([1.0, -0.5, 0.25])  # scale 1/127; codes 127, -64, 32
    s = 1 / 127
    assert flip_bits(x, 0, 0, "int8")[0].item() == pytest.approx(126 * s)
    assert flip_bits(x, 1, 7, "int8")[1].item() == pytest.approx(64 * s)  # 0xC0 -> 0x40
    assert flip_bits(x, 2, 6, "int8")[2].item() == pytest.approx(96 * s)
    assert flip_bits(x, 2, 7, "int8")[2].item() == pytest.approx(-96 * s)  # 0x20 -> 0xA0 = -96
    assert torch.equal(flip_bits(x, 2, 7, "int8")[:2], x[:2])  # other entries untouched


def test_bit_fields():
    assert [bit_field("fp32", b) for b in (31, 30, 23, 22, 0)] == ["sign", "exponent", "exponent", "mantissa",
                                                                    "mantissa"]
    assert [bit_field("fp16", b) for b in (15, 14, 10, 9)] == ["sign", "exponent", "exponent", "mantissa"]
    assert [bit_field("bf16", b) for b in (15, 7, 6)] == ["sign", "exponent", "mantissa"]
    assert [bit_field("int8", b) for b in (7, 6, 0)] == ["sign", "value", "value"]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_double_flip_is_identity(fmt):
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        x = stored_value(torch.randn(50, generator=gen) * 3, fmt)
        scale = float(x.abs().max()) / 127
        idx = torch.randint(50, (10,), generator=gen)
        bit = torch.randint(FORMATS[fmt], (10,), generator=gen)
        once = flip_bits(x, idx, bit, fmt, scale=scale)
        twice = flip_bits(once, idx, bit, fmt, scale=scale)
        if fmt == "int8":
            assert torch.allclose(twice, x, rtol=0, atol=1e-6)
        elif fmt == "fp32":
            assert torch.equal(_bits(twice), _bits(x))
        else:
            # carried in the format's own dtype: exact; carried in fp32: exact unless the flip made a
            # signalling NaN, whose payload widening to fp32 does not keep
            native = x.to(_DTYPES[fmt])
            assert torch.equal(_bits(flip_bits(flip_bits(native, idx, bit, fmt), idx, bit, fmt)), _bits(native))
            ok = ~torch.isnan(once)
            assert torch.equal(_bits(twice)[ok], _bits(x)[ok])
        # the same pair twice in one call flips nothing
        assert torch.equal(_bits(flip_bits(x, torch.cat([idx, idx]), torch.cat([bit, bit]), fmt, scale=scale)),
                           _bits(x))


def test_flip_changes_exactly_one_bit_fp32():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(100, generator=gen)
    for b in range(32):
        y = flip_bits(x, 7, b)
        diff = (_bits(x) ^ _bits(y))
        assert int((diff != 0).sum()) == 1 and (diff[7].item() & 0xFFFFFFFF) == (1 << b)
    assert torch.equal(x, x.clone())  # input not modified


def test_injected_restores_bit_exactly_even_on_exception():
    gen = torch.Generator().manual_seed(2)
    params = [torch.nn.Parameter(torch.randn(4, 5, generator=gen)), torch.randn(7, generator=gen)]
    before = [p.detach().clone() for p in params]
    with injected(params, [Fault(0, 3, 30), (1, 2, 31)]) as now:
        assert now[1][2].item() == -before[1][2].item()
        assert not torch.equal(params[0], before[0])
    for p, b in zip(params, before):
        assert torch.equal(_bits(p.detach()), _bits(b))
    with pytest.raises(ZeroDivisionError):
        with injected(params, [(0, 0, 30), (0, 0, 12), (1, 6, 0)]):
            1 / 0
    for p, b in zip(params, before):
        assert torch.equal(_bits(p.detach()), _bits(b))


def test_protect_bits_corrects_exactly_the_protected_flips():
    x = torch.tensor([0.3, -1.2, 0.7, 0.05])
    remedy = Remedy(protect_bits=(30, 31))
    for b in range(32):
        with injected([x.clone()], [(0, 1, b)], remedy=remedy) as now:
            changed = not torch.equal(_bits(now[0]), _bits(x))
        assert changed == (b not in (30, 31)), b
    # two flips, one protected: only the other one stays
    with injected([x.clone()], [(0, 0, 30), (0, 2, 5)], remedy=remedy) as now:
        assert now[0][0] == x[0] and now[0][2] == flip_bits(x, 2, 5)[2]


def test_range_check_zeroes_exactly_the_out_of_range_values():
    x = torch.tensor([0.3, -1.2, 0.7, 0.05])  # trained range [-1.2, 0.7]
    for b in range(32):
        flipped = flip_bits(x, 0, b)[0].item()
        with injected([x.clone()], [(0, 0, b)], remedy=Remedy(range_check="zero")) as now:
            inside = -1.2 <= flipped <= 0.7 if math.isfinite(flipped) else False
            assert now[0][0].item() == (pytest.approx(flipped) if inside else 0.0), b
            assert torch.equal(now[0][1:], x[1:])
        with injected([x.clone()], [(0, 0, b)], remedy=Remedy(range_check="clamp")) as now:
            assert -1.2 <= now[0][0].item() <= 0.7 or math.isclose(now[0][0].item(), 0.7, rel_tol=1e-6)


def test_remedy_cost_bits():
    cost = remedy_cost_bits([100, 28], "fp32", Remedy(protect_bits=(30,), range_check="zero"))
    assert cost["protect_bits"] == 2.0
    assert cost["range_check"] == pytest.approx(2 * 32 * 2 / 128)
    assert cost["total"] == pytest.approx(3.0)
    assert remedy_cost_bits([10], "fp16")["total"] == 0.0


def _toy():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(3, 8, generator=gen)
    b = torch.zeros(3)
    x = torch.randn(64, 8, generator=gen)
    y = (x @ w.T + b).argmax(1)

    def evaluate():
        return float(((x @ w.T + b).argmax(1) == y).float().mean())

    return evaluate, {"w": w, "b": b}


def test_sensitivity_is_deterministic_and_complete():
    evaluate, params = _toy()
    before = {k: v.clone() for k, v in params.items()}
    rec = sensitivity(evaluate, params, "fp32", n_params=4, bits=None, seed=5,
                      remedies={"none": Remedy(), "range": Remedy(range_check="zero")})
    assert len(rec) == 4 * 32 * 2
    assert _same(rec, sensitivity(evaluate, params, "fp32", n_params=4, bits=None, seed=5,
                                  remedies={"none": Remedy(), "range": Remedy(range_check="zero")}))
    assert {r["field"] for r in rec} == {"sign", "exponent", "mantissa"}
    assert all(r["drop"] == pytest.approx(1.0 - r["accuracy"]) for r in rec)
    assert max(r["drop"] for r in rec if r["remedy"] == "none") > 0  # some flip hurts
    assert len({(r["group"], r["index"]) for r in rec}) == 4
    for k in params:
        assert torch.equal(params[k], before[k])
    assert sensitivity(evaluate, params, n_params=0, seed=0) == []
    picks = {seed: {(r["group"], r["index"]) for r in sensitivity(evaluate, params, n_params=3, bits=[30],
                                                                      seed=seed)} for seed in range(4)}
    assert len({frozenset(p) for p in picks.values()}) > 1  # the seed picks the entries


def _enter(context):
    with context:
        pass


BAD_INPUT = {
    "unknown format": lambda x, ev, ps: flip_bits(x, 0, 0, "fp64"),
    "bit past fp32": lambda x, ev, ps: flip_bits(x, 0, 32, "fp32"),
    "bit past int8": lambda x, ev, ps: flip_bits(x, 0, 8, "int8"),
    "index past the tensor": lambda x, ev, ps: flip_bits(x, 5, 0, "fp32"),
    "bit field past fp16": lambda x, ev, ps: bit_field("fp16", 16),
    "non-integer bit": lambda x, ev, ps: flip_bits(x, 0, 1.5, "fp32"),
    "negative n_params": lambda x, ev, ps: sensitivity(ev, ps, n_params=-1, seed=0),
    "unknown sensitivity format": lambda x, ev, ps: sensitivity(ev, ps, "int4", n_params=1, seed=0),
    "sensitivity bit past fp32": lambda x, ev, ps: sensitivity(ev, ps, n_params=1, bits=[40], seed=0),
    "negative seed": lambda x, ev, ps: sensitivity(ev, ps, n_params=1, seed=-1),
    "unknown range check": lambda x, ev, ps: Remedy(range_check="wrap"),
    "protected bit past fp16": lambda x, ev, ps: _enter(injected([x], [(0, 0, 1)], "fp16", Remedy(protect_bits=(20,)))),
    "fault in a missing tensor": lambda x, ev, ps: _enter(injected([x], [(1, 0, 1)])),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_raises(case):
    evaluate, params = _toy()
    with pytest.raises(RramlibError):
        BAD_INPUT[case](torch.ones(3), evaluate, params)


def test_parameters_that_require_grad_work_without_warnings():
    import warnings

    evaluate, params = _toy()
    params = {k: torch.nn.Parameter(v) for k, v in params.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = sensitivity(evaluate, params, n_params=2, bits=[0, 30, 31], seed=0,
                          remedies={"none": Remedy(), "both": Remedy(protect_bits=(30,), range_check="clamp")})
    assert len(rec) == 2 * 3 * 2
