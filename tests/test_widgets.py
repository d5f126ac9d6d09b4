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


# ------------------------------------------------------------------ what the browser draws on first render
@pytest.fixture
def sent(monkeypatch):
    """The trace data of every restyle/update message the figures send to the browser, from construction on."""
    from plotly.basewidget import BaseFigureWidget

    messages = []
    for name in ("_send_restyle_msg", "_send_update_msg"):
        original = getattr(BaseFigureWidget, name)

        def record(self, restyle_data, *args, _original=original, **kwargs):
            messages.append(restyle_data)
            return _original(self, restyle_data, *args, **kwargs)

        monkeypatch.setattr(BaseFigureWidget, name, record)
    return messages


def assert_browser_sees_the_figure(fig, sent):
    """No message leaves a property as plotly's "unchanged" placeholder (the browser takes it as unset: a marker
    drops to y = 0, a figure renders empty), and the state a new browser view draws from is the figure itself."""
    from plotly.basedatatypes import Undefined

    for data in sent:
        for name, values in data.items():
            assert not any(v is Undefined for v in values), f"placeholder sent for {name!r}"
            # a kernel sends arrays as binary buffers, and refuses a strided view ("Buffer 0 is not contiguous")
            assert all(v.flags.c_contiguous for v in values if isinstance(v, np.ndarray)), f"{name!r} strided"
    assert len(fig._widget_data) == len(fig.data)
    for drawn, trace in zip(fig._widget_data, fig.data):
        for axis in ("x", "y", "z"):
            if axis in trace and trace[axis] is not None:
                np.testing.assert_array_equal(np.asarray(drawn.get(axis)), np.asarray(trace[axis]), err_msg=axis)
    assert fig._widget_layout.get("title", {}).get("text") == fig.layout.title.text


def test_marker_is_drawn_where_the_readout_says_when_the_start_point_ties_the_full_model(sent):
    """Lesson 20's start: the card's threshold loses no accuracy, so the marker's y stays at the full model's
    value while its x moves; the browser must still draw it at the readout's accuracy, not at 0."""
    from eekit.zoo import load_card

    ex = ThresholdExplorer(load_profile("speech-fsdd"), criterion="ctc_entropy",
                           threshold=load_card("speech-fsdd")["early_exit"]["threshold"],
                           criteria=["ctc_entropy", "ctc_posterior", "ctc_batch_entropy"])
    assert ex.point.accuracy == ex.profile.final_accuracy and ex.point.mean_cost < ex.profile.full_cost
    for fig in (ex.curve, ex.histogram):
        assert_browser_sees_the_figure(fig, sent)
    assert ex.curve._widget_data[3]["y"][0] == pytest.approx(100 * ex.point.accuracy)
    assert f"{100 * ex.point.accuracy:.2f}%" in ex.readout.value
    ex.set(criterion="ctc_posterior")
    ex.set(criterion="ctc_entropy")
    assert_browser_sees_the_figure(ex.curve, sent)


def test_every_dashboard_figure_reaches_the_browser_complete(profile, sent):
    from eekit import data
    from eekit.widgets import EnergyDashboard, ExitGallery
    from eekit.widgets.energy import HARVESTERS

    ex = ThresholdExplorer(profile, threshold=1.0)  # nobody leaves early: x and y both stay at the full model
    test = data.load_mnist("test")
    gallery = ExitGallery(profile, test.images.numpy(), test.classes)
    gallery.set(exit=1)
    energy = EnergyDashboard()
    energy.set(harvester=next(h for h in HARVESTERS if h.startswith("solar")))  # a long timeline, thinned
    for fig in (ex.curve, ex.histogram, gallery.figure, energy.timeline, energy.histogram, energy.policies):
        assert_browser_sees_the_figure(fig, sent)


def test_ssl_and_compression_dashboards_reach_the_browser_complete(sent):
    """Lessons 22 and 31: first render and a moved control send every value (no "unchanged" placeholder)."""
    from eekit.compress import load_compressed_card
    from eekit.widgets import FitExplorer
    from eekit.widgets.ssl import ExitSignalExplorer, UnitExitExplorer

    units = UnitExitExplorer()
    units.set(snr_db=0)  # moves the marker, the curves stay: the batch that sent placeholders
    signal = ExitSignalExplorer()
    signal.set(placement="silence_only")
    fit = FitExplorer(load_compressed_card("cnn-mnist-shared"), target_kb=32)
    fit.update(1)  # no step fits: only the compressed bars change
    fit.update(32)
    for fig in (units.histogram, units.curve, signal.histogram, fit.accuracy, fit.memory):
        assert_browser_sees_the_figure(fig, sent)
    assert fit.memory.layout.yaxis.title.text  # every visible axis is titled


def test_snr_slider_runs_like_the_x_axis_noisiest_left_clean_right():
    from eekit.widgets.speech import move_noise_controls, noise_controls

    for levels in ([None, 20, 15, 10, 5, 0], [0, 5, None, 20]):
        dropdown, slider = noise_controls(levels)
        labels = [label for label, _ in slider.options]
        assert labels[-1] == "clean" and levels[slider.value] is None  # starts clean, at the right end
        snrs = [levels[i] for _, i in slider.options[:-1]]
        assert snrs == sorted(snrs) and labels[0] == f"{min(snrs)} dB"
        move_noise_controls(dropdown, slider, levels, "white_noise", 5)
        assert levels[slider.value] == 5


def test_every_dashboard_is_a_dashboard():
    """One shape for all of them (eekit.widgets.base.Dashboard): readout, guarded update, set(), summary()."""
    import eekit.widgets as widgets
    from eekit.widgets.base import Dashboard

    dashboards = [widgets.ThresholdExplorer, widgets.ExitGallery, widgets.EnergyDashboard, widgets.NoiseExplorer,
                  widgets.FitExplorer, widgets.RecipeGrid, widgets.UnitExitExplorer, widgets.ExitSignalExplorer]
    for cls in dashboards:
        assert issubclass(cls, Dashboard) and cls.set is not Dashboard.set, cls.__name__
