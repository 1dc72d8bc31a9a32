"""VectorSignal: invariants checked once, immutability without copies, apply/replace."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from specconv.signal import VectorSignal, default_ch_names


def _sig(shape=(3, 50), **kw):
    kw.setdefault("sfreq", 100.0)
    return VectorSignal(np.zeros(shape), **kw)


class TestConstruction:
    def test_defaults_and_derived_facts(self):
        sig = _sig((3, 250), sfreq=125.0)
        assert sig.ch_names == ("ch000", "ch001", "ch002")
        assert sig.n_channels == 3
        assert sig.n_batch is None
        assert sig.spatial_shape == (250,)
        assert sig.duration == 2.0
        assert sig.metadata == {}

    def test_batched_image(self):
        sig = VectorSignal(np.zeros((4, 2, 5, 6)), domain="image", batched=True, spacing=(1.0, 0.5))
        assert (sig.n_batch, sig.n_channels, sig.spatial_shape) == (4, 2, (5, 6))
        assert sig.duration is None
        assert sig.spacing == (1.0, 0.5)

    def test_scalar_spacing_expands(self):
        sig = VectorSignal(np.zeros((1, 4, 4, 4)), domain="image", spacing=2)
        assert sig.spacing == (2.0, 2.0, 2.0)

    def test_default_names_widen(self):
        assert default_ch_names(1001)[-1] == "ch1000"

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"data": [[1.0]]}, TypeError, "numpy.ndarray"),
            ({"data": np.array([["a"]])}, TypeError, "integer, float or complex"),
            ({"domain": "freq"}, ValueError, r"'domain' parameter.*'freq'"),
            ({"data": np.zeros(5)}, ValueError, r"\(C, \*spatial\)"),
            ({"data": np.zeros((2, 3, 4))}, ValueError, r"time-domain signal must have shape"),
            ({"data": np.zeros((0, 4))}, ValueError, "at least one channel"),
            ({"ch_names": ("a",)}, ValueError, "ch_names has 1 names but data has 3 channels"),
            ({"ch_names": "abc"}, TypeError, "sequence of str"),
            ({"ch_names": ("a", "b", "a")}, ValueError, r"unique.*\['a'\]"),
            ({"sfreq": None}, ValueError, "sfreq is required"),
            ({"sfreq": -1.0}, ValueError, "positive finite"),
            ({"sfreq": "100"}, TypeError, "positive real number"),
            ({"spacing": (1.0,)}, ValueError, "carries its sampling in sfreq"),
            ({"batched": 1}, TypeError, "batched must be a bool"),
            ({"metadata": [("a", 1)]}, TypeError, "metadata must be a mapping"),
        ],
    )
    def test_invalid(self, kwargs, error, match):
        args = {"data": np.zeros((3, 10)), "sfreq": 100.0, **kwargs}
        with pytest.raises(error, match=match):
            VectorSignal(**args)

    def test_image_domain_rejects_sfreq_and_bad_spacing(self):
        with pytest.raises(ValueError, match="use spacing instead"):
            VectorSignal(np.zeros((1, 4, 4)), domain="image", sfreq=10.0)
        with pytest.raises(ValueError, match=r"one entry per spatial axis \(2\)"):
            VectorSignal(np.zeros((1, 4, 4)), domain="image", spacing=(1.0, 1.0, 1.0))


class TestImmutability:
    def test_data_is_a_read_only_view_and_caller_array_stays_writable(self):
        x = np.arange(6.0).reshape(2, 3)
        sig = VectorSignal(x, sfreq=1.0)
        assert np.shares_memory(sig.data, x)
        assert not sig.data.flags.writeable
        assert x.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            sig.data[0, 0] = 1.0

    def test_fields_cannot_be_reassigned(self):
        sig = _sig()
        with pytest.raises(dataclasses.FrozenInstanceError):
            sig.sfreq = 1.0

    def test_metadata_is_read_only_copy(self):
        meta = {"format": "wav"}
        sig = _sig(metadata=meta)
        meta["format"] = "changed"
        assert sig.metadata["format"] == "wav"
        with pytest.raises(TypeError):
            sig.metadata["format"] = "x"

    def test_pickle_round_trip_stays_read_only(self):
        sig = _sig(metadata={"format": "npz", "subtype": "PCM_16"}, ch_names=("a", "b", "c"))
        back = pickle.loads(pickle.dumps(sig))
        assert back.ch_names == sig.ch_names
        assert dict(back.metadata) == dict(sig.metadata)
        assert not back.data.flags.writeable
        np.testing.assert_array_equal(back.data, sig.data)


class TestDerivation:
    def test_replace_revalidates_and_shares_data(self):
        sig = _sig()
        renamed = sig.replace(ch_names=("x", "y", "z"))
        assert renamed.ch_names == ("x", "y", "z")
        assert np.shares_memory(renamed.data, sig.data)
        with pytest.raises(ValueError, match="ch_names has 2 names"):
            sig.replace(ch_names=("x", "y"))

    def test_apply_keeps_names_when_channel_count_unchanged(self):
        sig = _sig(ch_names=("a", "b", "c"), metadata={"format": "edf"})
        out = sig.apply(lambda x: x + 1.0)
        assert out.ch_names == ("a", "b", "c")
        assert out.metadata["format"] == "edf"
        np.testing.assert_array_equal(out.data, 1.0)

    def test_apply_generates_names_when_channel_count_changes(self):
        sig = _sig(ch_names=("a", "b", "c"))
        out = sig.apply(lambda x: x[:2])
        assert out.ch_names == ("ch000", "ch001")

    def test_apply_uses_layer_names_then_explicit_names(self):
        class Layer:
            out_ch_names = ("p", "q")

            def __call__(self, x):
                return x[:2]

        sig = _sig()
        assert sig.apply(Layer()).ch_names == ("p", "q")
        assert sig.apply(Layer(), ch_names=("u", "v")).ch_names == ("u", "v")

    def test_apply_batched(self):
        sig = VectorSignal(np.ones((4, 2, 10)), sfreq=10.0, batched=True)
        out = sig.apply(lambda x: x.sum(axis=1, keepdims=True))
        assert out.batched and out.data.shape == (4, 1, 10)

    def test_apply_rank_change_is_an_error(self):
        with pytest.raises(ValueError, match="same number of axes"):
            _sig().apply(lambda x: x[0])

    def test_apply_strided_layer_needs_the_new_sampling(self):
        class Strided:
            stride = 2

            def __call__(self, x):
                return x[:, ::2]

        sig = _sig((2, 100), sfreq=100.0)
        with pytest.raises(ValueError, match=r"stride=2.*pass\s+sfreq="):
            sig.apply(Strided())
        assert sig.apply(Strided(), sfreq=50.0).duration == pytest.approx(1.0)
        # Without a known grid there is nothing to update.
        img = VectorSignal(np.zeros((1, 8, 8)), domain="image")
        assert img.apply(lambda x: x[:, ::2, ::2]).spatial_shape == (4, 4)

    def test_repr_is_short(self):
        sig = _sig((6, 10), metadata={"format": "edf"})
        text = repr(sig)
        assert "shape=(6, 10)" in text and "format='edf'" in text and "..." in text
