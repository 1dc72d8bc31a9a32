"""LayerTransformer: scikit-learn's estimator checks, epochs.filter as oracle, pipelines."""

from __future__ import annotations

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
mne = pytest.importorskip("mne")

from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from specconv import datasets
from specconv.apps.eeg import filter_bank
from specconv.kernels import fir_layer, pointwise
from specconv.sklearn import LayerTransformer

from ._tolerances import assert_close

BANDS = [(None, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0)]
SMOOTH = np.array([[[0.25, 0.5, 0.25]]])


# sklearn's checks feed 2-D X (n_samples, n_features): one channel per sample, which a
# one-channel layer takes. Every check applies and passes (check_array_api_input skips itself
# unless SCIPY_ARRAY_API is set): no exclusions.
@parametrize_with_checks(
    [
        LayerTransformer(fir_layer(SMOOTH, mode="same", delay=1)),
        LayerTransformer(fir_layer(SMOOTH.astype(np.float32), mode="same", delay=1), pad=None),
        LayerTransformer(fir_layer(SMOOTH, mode="causal"), pad="reflect_limited"),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def epochs():
    """2-s epochs of the bundled 32-channel EDF; label: the epoch holds a blink."""
    raw = mne.io.read_raw(datasets.path("eeg-edf"), preload=True, verbose=False)
    events = mne.make_fixed_length_events(raw, duration=2.0)
    epochs = mne.Epochs(
        raw,
        events,
        tmin=0.0,
        tmax=2.0 - 1 / 256,
        baseline=None,
        preload=True,
        reject_by_annotation=False,
        verbose=False,
    )
    onsets = raw.annotations.onset - raw.first_time
    ends = onsets + raw.annotations.duration
    starts = (epochs.events[:, 0] - raw.first_samp) / raw.info["sfreq"]
    y = np.array([np.any((onsets < s + 2.0) & (ends > s)) for s in starts], dtype=int)
    return epochs, y


def test_transform_equals_epochs_filter(epochs):
    epo, _ = epochs
    X = epo.get_data()
    bank = filter_bank(epo.info["sfreq"], BANDS, X.shape[1])
    t = LayerTransformer(bank, ch_names=epo.ch_names, bands=BANDS).fit(X)
    Xt = t.transform(X)
    assert Xt.shape == (X.shape[0], 4 * X.shape[1], X.shape[2])
    for b, (lo, hi) in enumerate(BANDS):
        ref = epo.copy().filter(lo, hi, verbose=False).get_data()  # pad="edge", its default
        assert_close(Xt[:, b::4], ref)
    names = t.get_feature_names_out()
    assert names[:4].tolist() == ["Fp1-lp4Hz", "Fp1-4-8Hz", "Fp1-8-13Hz", "Fp1-13-30Hz"]
    assert len(names) == Xt.shape[1]


def test_fit_estimates_nothing_and_transform_needs_no_fit(epochs):
    X = epochs[0].get_data()
    t = LayerTransformer(filter_bank(256.0, BANDS[2:], X.shape[1]))
    before = t.transform(X)
    assert np.array_equal(clone(t).fit(X[:3], [0, 1, 0]).transform(X), before)


def test_feature_names_rules():
    X = np.random.default_rng(0).standard_normal((4, 3, 64))
    mix = pointwise(np.ones((2, 3)))
    assert LayerTransformer(mix).fit(X).get_feature_names_out().tolist() == [
        "layertransformer0",
        "layertransformer1",
    ]
    named = LayerTransformer(mix, names=["sum", "sum2"]).fit(X)
    assert named.get_feature_names_out().tolist() == ["sum", "sum2"]
    depth = LayerTransformer(fir_layer(np.ones((6, 1, 3)) / 3, mode="same", delay=1, groups=3))
    assert depth.fit(X).get_feature_names_out(["a", "b", "c"]).tolist() == [
        "a-0",
        "a-1",
        "b-0",
        "b-1",
        "c-0",
        "c-1",
    ]
    with pytest.raises(ValueError, match="input_features has 2 names, expected 3"):
        depth.get_feature_names_out(["a", "b"])


def test_set_output_applies_to_2d_outputs():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(
        np.random.default_rng(1).standard_normal((5, 16)), columns=[f"t{i}" for i in range(16)]
    )
    t = LayerTransformer(fir_layer(SMOOTH, mode="same", delay=1)).set_output(transform="pandas")
    out = t.fit_transform(X)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(X.columns)
    assert_close(out.to_numpy(), LayerTransformer(t.layer).fit_transform(X.to_numpy()))


def test_errors_name_the_shapes():
    bank = LayerTransformer(filter_bank(256.0, BANDS, 3))
    with pytest.raises(ValueError, match=r"X has 4 channels .* but the layer takes 3"):
        bank.fit(np.zeros((2, 4, 512)))
    with pytest.raises(ValueError, match="one channel per sample, but the layer takes 3"):
        bank.fit(np.zeros((2, 512)))
    with pytest.raises(TypeError, match="layer must be a SpectralConv"):
        LayerTransformer("bank").fit(np.zeros((2, 3, 8)))


def test_pipeline_log_variance_cross_validated(epochs):
    epo, y = epochs
    assert 5 <= y.sum() <= len(y) - 5  # both classes present
    X = epo.get_data()
    bank = filter_bank(epo.info["sfreq"], BANDS, X.shape[1])
    pipe = make_pipeline(
        LayerTransformer(bank, ch_names=epo.ch_names, bands=BANDS),
        FunctionTransformer(lambda Z: np.log(np.var(Z, axis=-1))),
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    )
    scores = cross_val_score(pipe, X, y, cv=StratifiedKFold(3, shuffle=True, random_state=0))
    assert scores.mean() >= 0.8  # blinks are large and slow: near 1 (chance 0.5-0.6)


def test_pipeline_with_mne_csp_and_vectorizer(epochs):
    from mne.decoding import CSP, Vectorizer

    epo, y = epochs
    picks = mne.pick_channels(epo.ch_names, ["Fp1", "Fp2", "F3", "F4", "O1", "O2"])
    X = epo.get_data()[:, picks]
    bank = filter_bank(epo.info["sfreq"], BANDS[:2], len(picks))
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    csp = make_pipeline(
        LayerTransformer(bank),
        CSP(n_components=4, reg="ledoit_wolf", log=True),
        LogisticRegression(),
    )
    with mne.utils.use_log_level("error"):
        assert cross_val_score(csp, X, y, cv=cv).mean() >= 0.8
    flat = make_pipeline(LayerTransformer(bank), Vectorizer()).fit_transform(X, y)
    assert np.array_equal(flat, LayerTransformer(bank).transform(X).reshape(len(X), -1))
