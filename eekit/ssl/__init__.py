"""Self-supervised speech: the kit's HuBERT in miniature and DAISY's label-free exits, bottom to top.

* :mod:`~eekit.ssl.units` - frames and k-means units (the pretraining targets);
* :mod:`~eekit.ssl.clips` - the unlabelled held-out and calibration clips;
* :mod:`~eekit.ssl.pretraining` - masked unit prediction, the encoder's files (:func:`load_encoder`);
* :mod:`~eekit.ssl.daisy` - DAISY's exit heads, the unit profiles, the noise slices;
* :mod:`~eekit.ssl.probes` - the four downstream tasks read from the frozen layers;
* :mod:`~eekit.ssl.adaptivity` - the controls of the label-free exit (what its signal tracks);
* :mod:`~eekit.ssl.shipped` - on top: the ``ssl-hubert`` recipe, its report and thresholds.
"""

from .clips import HELD_OUT_CLIPS, calibration_clips, held_out_clips
from .pretraining import (NAME, RANDOM_NAME, PretrainConfig, UnitClips, build_encoder, load_encoder, load_ssl_profile,
                       masked_unit_accuracy, pretrain, pretraining_corpus, resume_files)
from .shipped import output_files, report, run_recipe, thresholds

__all__ = ["PretrainConfig", "UnitClips", "pretraining_corpus", "pretrain", "masked_unit_accuracy", "build_encoder",
           "run_recipe", "output_files", "resume_files", "held_out_clips", "calibration_clips", "load_encoder",
           "load_ssl_profile", "report", "thresholds", "NAME", "RANDOM_NAME", "HELD_OUT_CLIPS"]
