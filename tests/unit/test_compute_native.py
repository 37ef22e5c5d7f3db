"""The service-only native kernels and the catalogue that lists them (no processes)."""

from __future__ import annotations

import numpy as np
import pytest
from veraltheim.protocol.reasons import Reason
from veraltheim.service.compute.catalogue import Catalogue
from veraltheim.service.compute.errors import ComputeError
from veraltheim.service.compute.native import NATIVE_KERNELS
from veraltheim.wasm import Runtime


def run(name: str, data: bytes, params: dict, check=lambda: None) -> np.ndarray:
    seen = []
    out = NATIVE_KERNELS[name].run(data, params, check, lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1]  # progress ends at done == total
    return np.frombuffer(out)


def test_percentiles_ignore_nan_and_match_numpy():
    rng = np.random.default_rng(5)
    values = rng.standard_normal(600_000)
    values[::7] = np.nan
    out = run("data.percentiles", values.tobytes(), {"steps": 10})
    assert out.tolist() == np.nanpercentile(values, np.linspace(0, 100, 11)).tolist()


def test_fft_magnitude_matches_numpy():
    values = np.sin(np.arange(1024) * 0.3)
    out = run("data.fft_magnitude", values.tobytes(), {"normalize": 1})
    assert out.tolist() == (np.abs(np.fft.rfft(values)) / 1024).tolist()


def test_cancel_is_checked_between_chunks():
    def check():
        raise ComputeError(Reason.CANCELLED, "job cancelled")

    with pytest.raises(ComputeError) as err:
        run("data.percentiles", np.zeros(10).tobytes(), {"steps": 1}, check)
    assert err.value.reason == Reason.CANCELLED


def test_catalogue_lists_both_kinds_and_validates():
    runtime = Runtime()
    cat = Catalogue(runtime)
    assert cat.entries["data.percentiles"]["remote_only"] is True
    assert cat.entries["image.blur"] == {
        **runtime.spec("image.blur").to_dict(),
        "remote_only": False,
    }
    assert cat.validate("data.percentiles", bytes(16), {}) == {"steps": 100}
    assert cat.validate("image.blur", bytes(16), {"width": 2, "height": 2})["radius"] == 2
    for name, data, params, reason in [
        ("nope", b"", {}, Reason.UNKNOWN_KERNEL),
        ("data.percentiles", bytes(7), {}, Reason.BAD_INPUT),
        ("data.percentiles", bytes(8), {"steps": 0}, Reason.BAD_INPUT),
        ("data.percentiles", bytes(8), {"steps": 2.5}, Reason.BAD_INPUT),
        ("data.percentiles", bytes(8), {"bins": 2}, Reason.BAD_INPUT),
        ("image.blur", bytes(15), {"width": 2, "height": 2}, Reason.BAD_INPUT),
        ("image.blur", bytes(16), [], Reason.BAD_INPUT),
    ]:
        with pytest.raises(ComputeError) as err:
            cat.validate(name, data, params)
        assert err.value.reason == reason and err.value.message, (name, params)
