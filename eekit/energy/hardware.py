"""The device's hardware: the storage capacitor and the microcontroller's cost table."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .. import validate

__all__ = ["Capacitor", "MCU", "capacitor_for_energy"]


@dataclass(frozen=True)
class Capacitor:
    """Energy storage: ``E = C V^2 / 2``.

    Defaults are iNAS's (Mendis et al., TECS 2021, ``EMCLab-Sinica/Intermittent-aware-NAS``): C = 5 mF, the MCU
    turns on at 2.99 V and browns out at 2.8 V (2.75 mJ usable per charge), supply regulated at 3.0 V (the
    capacitor's ceiling here). ``leakage_w`` is a constant leakage power (a leakage current at the ~3 V operating
    point; a few uA for a 5 mF supercapacitor); 0 by default.
    """

    capacitance_f: float = 5e-3
    v_on: float = 2.99
    v_off: float = 2.8
    v_max: float = 3.0
    leakage_w: float = 0.0

    def __post_init__(self):
        validate.number("capacitance_f (farads)", self.capacitance_f, 0, low_open=True)
        for name in ("v_on", "v_off", "v_max"):
            validate.number(f"{name} (volts)", getattr(self, name), 0, low_open=True)
        if not self.v_off < self.v_on:
            raise ValueError(f"need 0 < v_off < v_on (the device browns out below the voltage it turns on at), "
                             f"got v_off={self.v_off} V, v_on={self.v_on} V")
        if self.v_max < self.v_on:
            raise ValueError(f"v_max ({self.v_max} V) is below v_on ({self.v_on} V): the device could never turn on; "
                             f"v_max must be >= v_on")
        validate.number("leakage_w (watts)", self.leakage_w, 0)

    def energy(self, volts: float | np.ndarray) -> float | np.ndarray:
        return 0.5 * self.capacitance_f * np.square(volts)

    def voltage(self, joules: float | np.ndarray) -> float | np.ndarray:
        return np.sqrt(2 * np.maximum(joules, 0) / self.capacitance_f)

    @property
    def usable_j(self) -> float:
        """Energy delivered between turn-on and brown-out: one full charge."""
        return float(self.energy(self.v_on) - self.energy(self.v_off))


def capacitor_for_energy(joules: float, like: Capacitor | None = None) -> float:
    """The capacitance (F) whose full charge (``v_on`` to ``v_off`` of ``like``) holds ``joules``."""
    joules = validate.number("joules", joules, 0, low_open=True)
    like = like or Capacitor()
    return 2 * joules / (like.v_on**2 - like.v_off**2)


@dataclass(frozen=True)
class MCU:
    """Energy and time costs of an MSP430FR5994 at 16 MHz, from iNAS's measured microbenchmarks.

    * A MAC runs on the LEA vector unit: 0.527 nJ and 1.5 cycles per element plus 204 nJ and 616 cycles per call,
      amortized over ``vector_length`` elements (a 3x3x8 conv window is 72).
    * Checkpoint: DMA SRAM -> FRAM, 26.8 nJ per word + 193 nJ per transfer; restore: FRAM -> SRAM, 27 nJ per word
      + 200 nJ; both 64 cycles per word + 424 cycles. Activations are 16-bit fixed point (one word each).
    * Reboot: 77.88 uJ and 70 ms (iNAS, measured with an oscilloscope).
    * ``sleep_w``: power drawn while waiting in a low-power mode (0 by default; LPM3 is about 1 uW).
    Weight fetches from FRAM are not modelled separately (they are part of the per-MAC figure).
    """

    clock_hz: float = 16e6
    mac_j: float = 0.527e-9
    mac_cycles: float = 1.5
    call_j: float = 204e-9
    call_cycles: float = 616
    vector_length: int = 64
    fram_write_word_j: float = 26.8e-9
    fram_write_call_j: float = 193e-9
    fram_read_word_j: float = 27e-9
    fram_read_call_j: float = 200e-9
    fram_word_cycles: float = 64
    fram_call_cycles: float = 424
    reboot_j: float = 77.88e-6
    reboot_s: float = 0.070
    sleep_w: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            validate.number(f"MCU.{f.name}", getattr(self, f.name), 0)
        validate.number("MCU.clock_hz", self.clock_hz, 0, low_open=True)
        validate.number("MCU.vector_length", self.vector_length, 1)

    def compute(self, macs: float) -> tuple[float, float]:
        """(energy J, time s) of ``macs`` multiply-accumulates."""
        calls = macs / self.vector_length
        return (macs * self.mac_j + calls * self.call_j,
                (macs * self.mac_cycles + calls * self.call_cycles) / self.clock_hz)

    def checkpoint(self, words: float) -> tuple[float, float]:
        """(energy J, time s) to save ``words`` 16-bit words of state to FRAM."""
        if words <= 0:
            return 0.0, 0.0
        return (words * self.fram_write_word_j + self.fram_write_call_j,
                (words * self.fram_word_cycles + self.fram_call_cycles) / self.clock_hz)

    def restore(self, words: float) -> tuple[float, float]:
        """(energy J, time s) to read ``words`` of checkpointed state back after a reboot."""
        if words <= 0:
            return 0.0, 0.0
        return (words * self.fram_read_word_j + self.fram_read_call_j,
                (words * self.fram_word_cycles + self.fram_call_cycles) / self.clock_hz)
