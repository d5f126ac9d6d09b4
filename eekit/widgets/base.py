"""What every dashboard of the kit shares (:class:`Dashboard`): one shape, so a new one starts from it."""

from __future__ import annotations

import html
import re
from typing import Any, Callable

import ipywidgets as W

from .style import error_html

__all__ = ["Dashboard"]


class Dashboard:
    """A dashboard: ``widget`` (what the notebook shows), a ``readout`` (HTML carrying the class the browser tests
    find), updates guarded so that a control change never raises inside a callback (:meth:`_guarded`: the error is
    shown in the readout and kept in ``error``), ``set(...)`` to move the controls from Python as a user would, and
    ``summary()``, the readout as one line of text (printed under the dashboard, so static renders show the numbers).
    """

    widget: W.Widget
    readout: W.HTML
    error: str | None = None

    def _make_readout(self) -> W.HTML:
        self.readout = W.HTML()
        self.readout.add_class("eekit-readout")  # found by the browser tests
        return self.readout

    def _guarded(self, what: str, compute: Callable[[], Any], on_error: Callable[[], None] | None = None) -> Any:
        """``compute()``, or ``None`` with the error shown in the readout (``what`` failed) and ``on_error()`` run
        (e.g. clearing figures, so no stale numbers stay under the error)."""
        try:
            result = compute()
        except Exception as err:  # a dashboard must never die on a control change
            self.error = f"{type(err).__name__}: {err}"
            self.readout.value = error_html(what, self.error)
            if on_error is not None:
                on_error()
            return None
        self.error = None
        return result

    def set(self, *args: Any, **controls: Any) -> Any:
        raise NotImplementedError

    def summary(self) -> str:
        """The readout as plain text."""
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", self.readout.value)).split())

    def _ipython_display_(self) -> None:
        from IPython.display import display  # IPython is there whenever a notebook displays this

        display(self.widget)
