"""The operator's keys (edge/operator.py): sample ids from a barcode scanner, captures, sessions, review."""
from __future__ import annotations

from edge.operator import Action, OperatorState


def typed(state: OperatorState, text: str, end: str = "enter") -> Action | None:
    for c in text:
        state.key(("char", c))
    return state.key((end,))


def test_a_scanned_sample_id_then_space_captures_with_it():
    s = OperatorState()
    assert typed(s, "S-2024.117") is None, "Enter after typing sets the id, it does not capture"
    assert s.sample_id == "S-2024.117" and s.session_id and not s.typed
    a = s.key(("space",))
    assert a == Action("capture", "S-2024.117", s.session_id, None)
    assert s.key(("enter",)) == a, "Enter with nothing typed (a foot pedal) captures too"


def test_a_new_sample_starts_a_new_session_the_same_one_does_not():
    s = OperatorState()
    typed(s, "A1")
    first = s.session_id
    typed(s, "A1")
    assert s.session_id == first
    typed(s, "B2")
    assert s.session_id != first and s.sample_id == "B2"


def test_an_invalid_id_is_refused_with_a_message_and_changes_nothing():
    s = OperatorState()
    typed(s, "A1")
    typed(s, "../etc")
    assert s.sample_id == "A1" and "refused" in s.message and "'../etc'" in s.message
    s.key(("char", "x"))
    assert s.message is None, "typing again clears the message"


def test_esc_clears_the_typing_then_the_sample():
    s = OperatorState()
    typed(s, "A1")
    for c in "B2":
        s.key(("char", c))
    s.key(("esc",))
    assert s.typed == "" and s.sample_id == "A1"
    s.key(("esc",))
    assert s.sample_id is None and s.session_id is None
    assert s.key(("space",)).sample_id is None
    s.key(("char", "Q"))
    s.key(("backspace",))
    assert s.typed == ""


def test_a_scanned_badge_sets_the_operator():
    s = OperatorState(operator_id="cfg-op")
    typed(s, "OP:tech-7")
    assert s.operator_id == "tech-7" and s.sample_id is None and "operator tech-7" in s.message
    typed(s, "A1")
    assert s.key(("space",)).operator_id == "tech-7"


def test_review_steps_through_the_last_captures_and_flags_a_retake():
    s = OperatorState()
    for seq in (1, 2, 3):
        s.captured(seq)
    assert s.key(("delete",)) is None, "nothing reviewed: Delete does nothing"
    s.key(("left",))
    assert s.reviewed == 3
    s.key(("left",))
    s.key(("left",))
    s.key(("left",))
    assert s.reviewed == 1, "stops at the oldest kept"
    assert s.key(("delete",)) == Action("flag", seq=1) and "#1 flagged" in s.message
    s.key(("right",))
    s.key(("right",))
    assert s.reviewed == 3
    s.key(("right",))
    assert s.review is None, "right past the newest: live again"
    s.key(("left",))
    s.key(("esc",))
    assert s.review is None


def test_a_runaway_scanner_cannot_grow_the_buffer():
    s = OperatorState()
    for _ in range(1000):
        s.key(("char", "9"))
    assert len(s.typed) == 80
    typed(s, "")
    assert "refused" in s.message
