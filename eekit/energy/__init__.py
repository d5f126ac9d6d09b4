"""A batteryless device running an early-exit network on harvested energy (FreeML's setting, in miniature).

The device is a harvester charging a capacitor that powers an MSP430FR5994-class microcontroller:

* **Harvester** - a :class:`eekit.data.PowerTrace` (real RF or solar traces, or :func:`synthetic_trace`): power in
  watts, held constant for ``dt_s`` seconds per sample. A trace shorter than the simulation repeats.
* **Storage** - a :class:`Capacitor` with ``E = C V^2 / 2``. The device turns on at ``v_on`` and browns out at
  ``v_off``; charge above ``v_max`` is wasted (overflow), and optional leakage drains it.
* **Compute** - an :class:`MCU` cost table: energy and time per multiply-accumulate, per word written to / read
  from FRAM (checkpoints), and per reboot.
* **Workload** - a :class:`Workload`: per-stage and per-head MACs of a real trained early-exit model, the size of
  the activations to checkpoint, and the model's measured exits and correctness on its test split.

Four policies (:data:`POLICIES`) decide how each inference runs:

* ``full`` - every stage and the final head; progress checkpointed to FRAM after each stage, so a power failure
  only loses the stage in flight (then: recharge to ``v_on``, reboot, restore, redo the stage);
* ``threshold`` - the same, with a head after every stage and a confidence criterion to stop early;
* ``energy_aware`` - pick the deepest exit the stored energy can pay for now, run it in one go (no checkpoints);
  if not even the first exit is affordable, sleep until the capacitor reaches ``v_on``;
* ``anytime`` - FreeML: run stage after stage while the stored energy still pays for the next stage *and* its
  answer; answer with the (shared) head at the depth reached. Never starts what it cannot finish.

The modules: :mod:`~eekit.energy.hardware` (capacitor, MCU), :mod:`~eekit.energy.workload` (what a model costs),
:mod:`~eekit.energy.traces` (synthetic harvesters), :mod:`~eekit.energy.simulator` (the event-driven simulation,
one step function per policy, every loop bounded). Defaults and their sources are on each dataclass. All energies
are in joules, times in seconds, power in watts.
"""

from .hardware import MCU, Capacitor, capacitor_for_energy
from .simulator import POLICIES, SimResult, simulate
from .traces import synthetic_trace
from .workload import Workload, load_workload

__all__ = ["Capacitor", "MCU", "Workload", "SimResult", "POLICIES", "simulate", "synthetic_trace",
           "load_workload", "capacitor_for_energy"]
