"""The operator at the kiosk: what their keys mean, from a keyboard, a barcode scanner or a foot pedal.

One state machine for every key source (the preview window under X, evdev keyboards on a headless
kiosk), fed translated keys: ("char", c), ("enter",), ("space",), ("esc",), ("backspace",),
("left",), ("right",), ("delete",).

- Typed characters then Enter (what a USB barcode scanner sends) set the current sample id, or, with
  the operator prefix (a scanned badge, "OP:" by default), the operator id; an invalid id is refused
  with a message for the screen and nothing changes. A new sample id starts a new session.
- Space captures with the current sample id; so does Enter with nothing typed (a foot pedal).
- Esc clears what is being typed, else the current sample id (the session ends).
- Left / Right step through the last captures (review); Delete flags the reviewed one "retake" (it is
  recorded, never deleted); Esc, or Right past the newest, goes back to the live picture.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from edge.storage import StorageError, check_sample_id

OPERATOR_PREFIX = "OP:"
MAX_TYPED = 80           # a stuck key or a runaway scanner cannot grow the buffer without end


@dataclass
class Action:
    """What the daemon does for a key: capture (with the session), flag a capture, or nothing."""

    kind: str                       # "capture" | "flag"
    sample_id: str | None = None
    session_id: str | None = None
    operator_id: str | None = None
    seq: int | None = None          # flag: the capture's sequence number


@dataclass
class OperatorState:
    operator_prefix: str = OPERATOR_PREFIX
    operator_id: str | None = None
    sample_id: str | None = None
    session_id: str | None = None
    typed: str = ""
    message: str | None = None              # for the screen: an id refused, a capture flagged
    review: int | None = None               # index into `recent` (0 = newest) while reviewing
    recent: list[int] = field(default_factory=list)   # sequence numbers of the last captures, newest first

    def key(self, key: tuple) -> Action | None:
        kind = key[0]
        if kind == "char":
            if len(self.typed) < MAX_TYPED:
                self.typed += key[1]
            self.message = None
            return None
        if kind == "backspace":
            self.typed = self.typed[:-1]
            return None
        if kind == "esc":
            if self.typed:
                self.typed = ""
            elif self.review is not None:
                self.review = None
            else:
                self.sample_id = self.session_id = None
            self.message = None
            return None
        if kind == "enter" and self.typed:
            self._entered(self.typed.strip())
            self.typed = ""
            return None
        if kind in ("space", "enter"):
            self.review = None
            return Action("capture", self.sample_id, self.session_id, self.operator_id)
        if kind in ("left", "right") and self.recent:
            if kind == "left":
                self.review = 0 if self.review is None else min(self.review + 1, len(self.recent) - 1)
            elif self.review is not None:
                self.review = None if self.review == 0 else self.review - 1
            return None
        if kind == "delete" and self.review is not None:
            seq = self.recent[self.review]
            self.message = f"capture #{seq} flagged: retake"
            return Action("flag", seq=seq)
        return None

    def _entered(self, text: str) -> None:
        operator = text.startswith(self.operator_prefix) if self.operator_prefix else False
        value = text[len(self.operator_prefix):] if operator else text
        try:
            valid = check_sample_id(value)
        except StorageError as e:
            self.message = f"{'operator' if operator else 'sample'} id {text[:24]!r} refused: {e}"
            return
        if valid is None:
            return
        if operator:
            self.operator_id = valid
            self.message = f"operator {valid}"
        elif valid != self.sample_id:
            self.sample_id, self.session_id = valid, uuid.uuid4().hex[:12]
            self.message = None

    def captured(self, seq: int, keep: int = 10) -> None:
        """A capture was saved: it is the newest one to review."""
        self.recent = ([seq] + [s for s in self.recent if s != seq])[:keep]

    def describe(self) -> dict:
        """For `phonescope status`."""
        return {"sample_id": self.sample_id, "session_id": self.session_id, "operator_id": self.operator_id,
                "typing": self.typed, "reviewing": self.reviewed, "message": self.message}

    @property
    def reviewed(self) -> int | None:
        return self.recent[self.review] if self.review is not None else None
