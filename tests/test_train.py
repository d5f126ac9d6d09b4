"""Training that survives being stopped: a run given a checkpoint file resumes after its last finished epoch and
ends with exactly the weights of a run that was never stopped."""

import math

import pytest
import torch

from eekit import data
from eekit.models.speech import conformer_ctc
from eekit.train import TrainConfig, train

CONFIG = TrainConfig(epochs=3, batch_size=4, lr=2e-3, optimizer="adam", weight_decay=0.0, length_batches=True,
                     clip_norm=5.0, loss_weights="uniform")


def utterances() -> data.Transcripts:
    g = torch.Generator().manual_seed(1)
    waves = [torch.randn(2400 + 160 * i, generator=g) * 0.1 for i in range(12)]
    return data.Transcripts(waves, [str(i % 10) * (1 + i % 3) for i in range(12)], ["s"] * 12)


class Crashing(data.Transcripts):
    """Raises on its ``fail_at``-th item, as a run killed in the middle of an epoch."""

    fail_at = 16  # items: epoch 1 reads 12, so this stops the run inside epoch 2

    def __getitem__(self, i):
        Crashing.fail_at -= 1
        if Crashing.fail_at < 0:
            raise KeyboardInterrupt("the session ended")
        return super().__getitem__(i)


def fresh_model():
    torch.manual_seed(0)
    return conformer_ctc()


def test_a_stopped_run_resumes_to_the_weights_of_an_unstopped_one(tmp_path):
    reference = fresh_model()
    expected = train(reference, utterances(), CONFIG, progress=False)

    checkpoint = tmp_path / "run.pt"
    stopped = Crashing(**utterances().__dict__)
    with pytest.raises(KeyboardInterrupt):
        train(fresh_model(), stopped, CONFIG, progress=False, checkpoint=checkpoint)
    assert len(data.read_torch(checkpoint)["history"]) == 1  # epoch 1 was saved, epoch 2 was lost

    torch.manual_seed(123)  # a new process: the global generator is elsewhere; the checkpoint restores it
    resumed = fresh_model()
    history = train(resumed, utterances(), CONFIG, progress=False, checkpoint=checkpoint)
    assert [h["loss"] for h in history] == [h["loss"] for h in expected]
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name

    again = fresh_model()  # a finished checkpoint: nothing left to train, the trained weights come back
    assert len(train(again, utterances(), CONFIG, progress=False, checkpoint=checkpoint)) == CONFIG.epochs
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), again.state_dict().values()))


def test_a_checkpoint_of_other_settings_is_refused(tmp_path):
    checkpoint = tmp_path / "run.pt"
    train(fresh_model(), utterances(), TrainConfig(**{**CONFIG.__dict__, "epochs": 1}), progress=False,
          checkpoint=checkpoint)
    with pytest.raises(ValueError, match=r"other settings \(epochs differ\)"):
        train(fresh_model(), utterances(), CONFIG, progress=False, checkpoint=checkpoint)



def test_a_checkpoint_saved_before_a_setting_existed_resumes_with_its_default(tmp_path):
    checkpoint = tmp_path / "run.pt"
    one = TrainConfig(**{**CONFIG.__dict__, "epochs": 1})
    train(fresh_model(), utterances(), one, progress=False, checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    del state["config"]["speed_perturb"]  # as a run saved before speed perturbation existed
    torch.save(state, checkpoint)
    assert len(train(fresh_model(), utterances(), one, progress=False, checkpoint=checkpoint)) == 1
    with pytest.raises(ValueError, match=r"\(speed_perturb differ\)"):
        train(fresh_model(), utterances(), TrainConfig(**{**one.__dict__, "speed_perturb": (0.9, 1.1)}),
              progress=False, checkpoint=checkpoint)


@pytest.mark.parametrize("decay", [0.0, 0.5])
def test_adamw_decays_the_weights_apart_from_the_gradient_and_equals_adam_without_decay(decay):
    """AdamW without decay is Adam; with decay it differs from Adam's L2 decay (added to the gradient, then scaled
    by Adam's per-weight step), which is the reason to offer it."""
    def weights(optimizer: str, weight_decay: float) -> torch.Tensor:
        model = fresh_model()
        config = TrainConfig(**{**CONFIG.__dict__, "epochs": 1, "optimizer": optimizer, "weight_decay": weight_decay})
        train(model, utterances(), config, progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    adamw, adam = weights("adamw", decay), weights("adam", decay)
    assert torch.equal(adamw, adam) == (decay == 0.0)


SPEED = TrainConfig(**{**CONFIG.__dict__, "epochs": 1, "speed_perturb": (0.9, 1.0, 1.1)})


def test_speed_perturbation_is_seeded_and_changes_what_the_model_hears():
    runs = []
    for config in (SPEED, SPEED, TrainConfig(**{**SPEED.__dict__, "speed_perturb": ()})):
        model = fresh_model()
        runs.append((train(model, utterances(), config, progress=False)[0]["loss"], model.state_dict()))
    (loss_a, a), (loss_b, b), (loss_plain, plain) = runs
    assert loss_a == loss_b and all(torch.equal(a[k], b[k]) for k in a)  # the same seed, the same speeds drawn
    assert loss_plain != loss_a


def test_speed_perturbed_utterances_are_stretched_by_one_of_the_factors():
    torch.manual_seed(0)
    base = utterances()
    perturbed = base.speed_perturbed((0.9, 1.1))
    lengths = {len(perturbed[5][0]) for _ in range(20)}
    assert lengths == {math.ceil(len(base[5][0]) / 0.9), math.ceil(len(base[5][0]) / 1.1)}
    assert perturbed[5][1] == base[5][1] and perturbed.collate is not None


@pytest.mark.parametrize("bad", [1.1, "0.9,1.1", [], [0.9, 0.2], [float("nan")], [True]])
def test_bad_speed_factors_are_refused_with_what_is_accepted(bad):
    with pytest.raises(ValueError, match=r"speed"):
        TrainConfig(speed_perturb=bad) if bad != [] else utterances().speed_perturbed(bad)


def test_speed_perturbation_needs_utterances():
    images = torch.utils.data.TensorDataset(torch.randn(8, 1, 28, 28), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"speed_perturb=\(0.9, 1.0, 1.1\) needs a data.Transcripts set"):
        train(fresh_model(), images, TrainConfig(**{**SPEED.__dict__, "length_batches": False}), progress=False)
