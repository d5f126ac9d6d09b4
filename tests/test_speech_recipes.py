"""The speech-recipe grid (issue 15): shipped cells, the report's keys, and the sign of each paper comparison.

The signs below are what this kit measured (lesson 23 says which match HuBERT-EE and 2309.09546); a retrained grid
that flips one fails here, so the lesson's sentences can never silently go stale.
"""

import json

import numpy as np
import pytest

from eekit import data, speech_recipes as sr, zoo
from eekit.__main__ import main

# Every shipped cell: a missing file is a failure, never a skip. The others are listed by the report as missing.
SHIPPED_CELLS = [f"{r}-{n}" for n in (250, 1000, "all") for r in "ABCED"]  # all 15
# comparison -> {labels: sign of (first recipe's DER - second's)}: -1 the first is better, +1 worse, 0 equal
SIGNS = {
    "joint_vs_two_stage_shallow": {"250": -1, "1000": -1, "all": -1},  # C - D, mean of exits 1-3, clean
    "joint_vs_two_stage_final": {"250": -1, "1000": -1, "all": -1},  # C - D, final exit, clean
    "scratch_multi_vs_single_final": {"250": +1, "1000": -1, "all": -1},  # A - B, final exit, clean
    "ssl_exits_vs_single_final": {"250": -1, "1000": -1, "all": -1},  # C - E, final exit, clean
    "ssl_vs_scratch_250_unseen": {"250": +1},  # best SSL - best scratch, final exit, unseen voices
}
# whether each comparison matches its paper (None: neither model learned, see speech_recipes.claims)
MATCHES = {**{("joint_vs_two_stage_shallow", n): True for n in ("250", "1000", "all")},
           ("joint_vs_two_stage_final", "250"): False, ("joint_vs_two_stage_final", "1000"): True,
           ("joint_vs_two_stage_final", "all"): True,
           **{("scratch_multi_vs_single_final", n): True for n in ("250", "1000", "all")},
           **{("ssl_exits_vs_single_final", n): False for n in ("250", "1000", "all")},
           ("ssl_vs_scratch_250_unseen", "250"): False}


def test_every_trained_cell_left_the_all_blank_plateau():
    """With ~2,000 steps every cell decodes digits (the first grid's 500-step cells mostly output only blanks)."""
    for recipe, labels in sr.trained_cells():
        assert sr.load_cell_card(recipe, labels)["exit_der"]["clean"][-1] < 0.06, (recipe, labels)


REPORT_KEYS = {"recipe", "labels", "test", "exit_der", "final_der", "layers_saved", "ee_der", "criterion",
               "training_seconds"}


@pytest.mark.parametrize("cell", SHIPPED_CELLS)
def test_every_shipped_cell_has_its_card_profiles_and_weights(cell):
    recipe, labels = cell.split("-")
    card = sr.load_cell_card(recipe, labels)
    assert card["cell"] == cell and card["command"] == f"python -m eekit train speech-recipe --recipe {recipe} " \
                                                       f"--labels {card['labels']}"
    for test in sr.TESTS:
        profile = sr.load_cell_profile(recipe, labels, test)  # checksum-verified
        assert profile.num_exits == 6 and profile.kind == "ctc"
        assert card["exit_der"][test] == [round(1 - float(a), 4) for a in profile.exit_accuracy]
    assert len(sr.test_set("unseen_voices")) == 240 and len(sr.test_set("held_out_speaker")) == 300
    if cell in sr.REUSED:
        assert card["reused"] == sr.REUSED[cell][0]
    else:
        data.data_path(f"{sr.OUT_DIR}/{cell}.pt")  # fp16 weights, in SHA256SUMS
        assert card["train_samples"] == (4000 if labels == "all" else int(labels))
        assert [p["epochs"] for p in card["phases"]] == [p.epochs for p in sr.SPEECH_RECIPES[recipe].phases(
            card["labels"])]


def test_ssl_cells_started_from_the_shipped_encoder():
    ssl_cells = [c for c in SHIPPED_CELLS if sr.SPEECH_RECIPES[c[0]].init == "ssl"]
    assert ssl_cells, "no SSL cell shipped"
    shipped = sr.shipped_encoder_fingerprint()
    for cell in ssl_cells:
        card = sr.load_cell_card(*cell.split("-"))
        assert card["ssl_encoder_fingerprint"] == shipped, f"{cell} was fine-tuned from another encoder"
        assert "PROVISIONAL" not in card["init_from"]


def test_reused_cells_are_the_zoo_models():
    a, b = sr.load_cell_card("A", "all"), sr.load_cell_card("B", "all")
    assert a["exit_der"]["clean"] == [round(1 - x, 4) for x in zoo.load_card("speech-fsdd")["exit_accuracy"]]
    assert b["exit_der"]["clean"][-1] == round(1 - zoo.load_card("speech-fsdd-two-stage")["final_accuracy"], 4)


def test_report_json_has_the_issue_keys(capsys):
    assert main(["report", "speech-recipes", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert len(r["cells"]) == len(SHIPPED_CELLS) * len(sr.TESTS) * len(sr.CRITERIA)
    assert {f"{c['recipe']}-{c['labels']}" for c in r["cells"]} == set(SHIPPED_CELLS)
    assert set(r["missing"]) == {sr.cell_name(x, n) for x, n in sr.cells()} - set(SHIPPED_CELLS)
    assert set(r["training_seconds"]) == set(SHIPPED_CELLS)
    for row in r["cells"]:
        assert REPORT_KEYS <= set(row)
        assert row["test"] in sr.TESTS and row["criterion"] in sr.CRITERIA and len(row["exit_der"]) == 6
        assert row["final_der"] == row["exit_der"][-1]
        assert row["ee_der"] <= row["final_der"] + sr.MAX_DROP + 1e-9  # calibrated within 1 point
        assert 0 <= row["layers_saved"] < 1
        if sr.SPEECH_RECIPES[row["recipe"]].single_exit:  # untrained early heads are never reported or used
            assert row["exit_der"][:5] == [None] * 5 and row["layers_saved"] == 0


def test_each_comparison_has_the_measured_sign():
    measured = sr.comparisons()
    assert set(measured) == set(SIGNS)
    for key, by_labels in SIGNS.items():
        assert set(measured[key]) == set(by_labels), key
        for labels, sign in by_labels.items():
            assert np.sign(measured[key][labels]) == sign, (key, labels, measured[key][labels])


def test_the_lessons_verdicts_on_the_papers():
    assert {(r["comparison"], r["labels"]): r["matches"] for r in sr.claims()} == MATCHES


def test_recipes_are_the_issue_table():
    p = {name: r.phases(250) for name, r in sr.SPEECH_RECIPES.items()}
    assert [c.loss_weights for c in p["A"]] == ["uniform"] and sr.SPEECH_RECIPES["A"].init == "scratch"
    assert [c.loss_weights for c in p["B"]] == ["final-only"] and sr.SPEECH_RECIPES["B"].init == "scratch"
    assert [c.loss_weights for c in p["C"]] == ["uniform"] and sr.SPEECH_RECIPES["C"].init == "ssl"
    assert [(c.loss_weights, c.freeze_backbone) for c in p["D"]] == [("final-only", False), ("early-only", True)]
    assert p["D"][0] == p["E"][0]  # D's first stage is E, which is why D reuses E's cell
    assert [c.loss_weights for c in p["E"]] == ["final-only"] and sr.SPEECH_RECIPES["E"].init == "ssl"


def test_bad_input_says_what_is_accepted(tmp_path, capsys):
    with pytest.raises(ValueError, match="known: \\['A', 'B', 'C', 'D', 'E'\\]"):
        sr.cell_name("F", 250)
    with pytest.raises(ValueError, match="250, 1000, 'all'"):
        sr.cell_name("A", 300)
    with pytest.raises(ValueError, match="test set"):
        sr.test_set("noisy")
    with pytest.raises(data.DataFileError, match="is missing"):
        sr.load_cell_card("C", 250, out_dir=tmp_path)
    assert main(["train", "speech-recipe", "--recipe", "C"]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main(["train", "speech-recipe", "--recipe", "A", "--labels", "12"]) == 2


@pytest.mark.slow  # runs a model over the clean test set
def test_a_cell_is_reproduced_from_its_fp16_weights():
    from eekit.evaluate import profile_speech

    cell = next(c for c in SHIPPED_CELLS if c not in sr.REUSED)
    recipe, labels = cell.split("-")
    profile = profile_speech(sr.load_cell_model(recipe, labels), sr.test_set("clean"))
    assert [round(1 - float(a), 4) for a in profile.exit_accuracy] == sr.load_cell_card(recipe, labels)["exit_der"][
        "clean"]


def test_heat_map_follows_its_dropdowns():
    from eekit.widgets.recipes import RecipeGrid

    grid = RecipeGrid()
    clean = grid.set(test="clean", criterion="ctc_entropy").copy()
    assert clean.shape == (len(SHIPPED_CELLS), 7) and grid.rows[0] == "A · 250"
    b = grid.rows.index("B · all")
    assert np.isnan(clean[b, :5]).all() and not np.isnan(clean[b, 5:]).any()  # untrained exits are gaps
    trace = grid.figure.data[0]
    assert trace.z[b][0] is None and list(trace.y) == grid.rows and trace.x[-1] == "early exit"
    unseen = grid.set(test="unseen_voices", criterion="ctc_posterior")
    a = grid.rows.index("A · all")
    assert unseen[a, 5] == pytest.approx(100 * sr.load_cell_card("A", "all")["exit_der"]["unseen_voices"][-1])
    assert not np.allclose(np.nan_to_num(unseen), np.nan_to_num(clean)) and "layers saved" in grid.readout.value


def test_heat_map_refuses_an_unknown_test_set_or_criterion_naming_the_known_ones():
    from eekit.widgets.recipes import RecipeGrid

    with pytest.raises(ValueError, match=r"unknown test 'noisy'; known: \['clean'"):
        RecipeGrid(test="noisy")
    grid = RecipeGrid()
    with pytest.raises(ValueError, match=r"unknown criterion 'max_prob'; known: \['ctc_entropy'"):
        grid.set(criterion="max_prob")
