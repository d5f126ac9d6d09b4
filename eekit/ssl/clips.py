"""The unlabelled clips DAISY's exits are measured and calibrated on: Speech Commands test speakers, never heard in
pretraining, split into a held-out set (profiles, noise grid) and a disjoint calibration set."""

from __future__ import annotations

from .. import data

__all__ = ["held_out_clips", "calibration_clips", "HELD_OUT_CLIPS"]

HELD_OUT_CLIPS = 320  # Speech Commands test-speaker clips for the unit profiles and the noise grid (20 batches of 16)


def calibration_clips():
    """Clean unlabelled speech to set DAISY's one threshold on: 320 evenly spaced clips of the Speech Commands test
    speakers (unseen in pretraining, like the speech the exits will meet) among those *not* in :func:`held_out_clips`.
    No label is read. (Clips of the pretraining speakers are surer of their units than unseen voices: a threshold
    set on them saved 27 % of the layers there but 13 % on unseen speakers.)"""
    test = data.load_speech_commands("test")
    held = set(data.evenly_spaced(len(test), HELD_OUT_CLIPS).tolist())
    rest = [i for i in range(len(test)) if i not in held]
    return test.select([rest[j] for j in data.evenly_spaced(len(rest), HELD_OUT_CLIPS)])


def held_out_clips():
    """320 evenly spaced clips of the Speech Commands *test* speakers (never heard in pretraining)."""
    return data.load_speech_commands("test").subset(HELD_OUT_CLIPS)
