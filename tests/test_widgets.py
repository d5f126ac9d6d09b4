"""The threshold explorer, driven from Python exactly as its controls are driven in a notebook."""

import numpy as np
import pytest

from eekit.widgets import ThresholdExplorer
from eekit.zoo import load_profile

from helpers import synthetic_profile


@pytest.fixture(scope="module")
def profile():
    return load_profile("cnn-mnist")


def test_default_state_is_drawn_before_anyone_touches_it(profile):
    ex = ThresholdExplorer(profile)
    assert ex.point is not None and ex.criterion == "max_prob" and ex.threshold == pytest.approx(0.9)
    assert len(ex.curve.data[0].x) == 201  # the whole sweep is plotted
    assert "accuracy" in ex.readout.value and "saved" in ex.readout.value
    assert ex.summary().startswith("max_prob @ 0.9: accuracy")
    assert ex.curve.layout.xaxis.title.text == "mean cost per sample (MFLOPs)"


def test_slider_moves_update_marker_histogram_and_readout(profile):
    ex = ThresholdExplorer(profile)
    low = ex.set(threshold=0.3)
    marker_low = ex.curve.data[3].x[0]
    high = ex.set(threshold=0.9999)
    assert high.mean_cost > low.mean_cost
    assert ex.curve.data[3].x[0] == pytest.approx(high.mean_cost) != marker_low
    assert ex.histogram.data[0].y == pytest.approx(tuple(100 * high.exit_fractions))
    assert f"{100 * high.accuracy:.2f}%" in ex.readout.value


def test_switching_criterion_rescales_the_slider(profile):
    ex = ThresholdExplorer(profile)
    ex.set(criterion="patience")
    assert ex.threshold_slider.step == 1 and ex.threshold_slider.max == profile.num_exits - 1
    assert ex.threshold == 2
    ex.set(criterion="oracle")
    assert ex.threshold_slider.disabled and "upper bound" in ex.readout.value
    ex.set(criterion="entropy", threshold=0.1)
    assert ex.point.criterion == "entropy" and ex.curve.data[0].name == "entropy"


def test_every_control_at_its_extremes_and_random_values_keeps_a_consistent_readout():
    prof = synthetic_profile(samples=2000)
    ex = ThresholdExplorer(prof)
    rng = np.random.default_rng(1)
    for name in ex.criterion_dropdown.options:
        ex.set(criterion=name[1])
        s = ex.threshold_slider
        values = [s.min, s.max] + list(rng.uniform(s.min, s.max, 20))
        for v in values:
            ex.set(threshold=float(v))
            p = ex.point
            assert ex.error is None and p is not None
            assert p.threshold == ex.threshold or ex.threshold_slider.disabled  # the oracle ignores it
            assert p.exit_counts.sum() == prof.num_samples
            assert 0 <= p.accuracy <= 1
            assert prof.cost[0] <= p.mean_cost <= prof.cost[-1]
            assert p.savings <= 1 - prof.cost[0] / prof.full_cost + 1e-9


def test_a_failing_evaluation_is_shown_not_raised():
    prof = synthetic_profile(samples=200)
    ex = ThresholdExplorer(prof)
    prof.scores["max_prob"] = prof.scores_for("max_prob")[:100]  # a corrupted cache: half the samples
    ex.set(threshold=0.5)
    assert ex.point is None and "Cannot evaluate" in ex.readout.value
    with pytest.raises(ValueError, match="not among"):
        ThresholdExplorer(prof, criterion="ctc_entropy", criteria=["max_prob"])


def test_gallery_shows_images_that_really_leave_at_the_chosen_exit(profile):
    from eekit import data
    from eekit.widgets import ExitGallery

    test = data.load_mnist("test")
    gallery = ExitGallery(profile, test.images.numpy(), test.classes, threshold=0.99)
    for k in range(profile.num_exits):
        shown = gallery.set(exit=k)
        exits = profile.exit_index("max_prob", gallery.threshold_slider.value)
        assert len(shown) > 0 and (exits[shown] == k).all()
        title = gallery.figure.layout.annotations[0].text
        assert test.classes[profile.labels[shown[0]]] in title
    gallery.set(exit=0, threshold=1.0)  # nobody leaves early at 1.0 if no score reaches it: must not break
    assert "test images leave at" in gallery.readout.value
    with pytest.raises(ValueError, match="the profile's samples"):
        ExitGallery(profile, test.images.numpy()[:10], test.classes)


def test_static_figures_have_titles_and_labelled_axes(profile):
    from eekit.widgets import exits_figure, pareto_figure

    pareto = pareto_figure(profile)
    names = [t.name for t in pareto.data]
    assert names[:4] == ["max_prob", "entropy", "margin", "patience"] and "oracle (upper bound)" in names
    assert pareto.layout.title.text and "MFLOPs" in pareto.layout.xaxis.title.text
    anatomy = exits_figure(profile)
    assert anatomy.layout.yaxis.title.text == "accuracy (%)" and "MFLOPs" in anatomy.layout.yaxis2.title.text


def test_gallery_every_control_at_its_extremes_and_random_values(profile):
    from eekit import data
    from eekit.widgets import ExitGallery

    test = data.load_mnist("test")
    gallery = ExitGallery(profile, test.images.numpy(), test.classes)
    s = gallery.threshold_slider
    rng = np.random.default_rng(2)
    for k in range(profile.num_exits):
        for v in [s.min, s.max] + list(rng.uniform(s.min, s.max, 5)):
            shown = gallery.set(exit=k, threshold=float(v))
            exits = profile.exit_index("max_prob", gallery.threshold_slider.value)
            assert (exits[shown] == k).all() and len(shown) <= gallery.rows * gallery.cols
            count = int(gallery.readout.value.split("<b>")[1].split("</b>")[0])
            assert count == int((exits == k).sum())  # the readout counts what the profile says
