"""Out of scope is said: inputs unlike the training inputs (already sharp, other colours) are warned about."""
from __future__ import annotations

import numpy as np

from edge.imageio import read_rgb8
from edge.scope import Scope, summarise
from edge.simulator import DEFAULT_PHONE, degrade
from tests.helpers import SAMPLES


def training_like():
    """Phone images of the shipped slides through the default phone, several seeds: the 'training inputs'."""
    refs = [read_rgb8(p) for p in sorted((SAMPLES / "reference").glob("*.jpg"))]
    return refs, [degrade(r, DEFAULT_PHONE, seed=s)[0] for r in refs for s in range(4)]


def test_phone_images_are_in_scope_benchtop_images_and_other_colours_are_not():
    refs, phones = training_like()
    scope = Scope(summarise(phones[::2]))
    for img in phones[1::2]:                       # unseen phone images of the same kind
        assert scope.check(img) == [], scope.check(img)
    # the H&E reference is sharper than anything the phone made (the BCCD blood references are soft JPEGs,
    # no sharper than their phone images: they are not flagged, and need not be)
    he = scope.check(refs[-1])
    assert any("already sharp" in w for w in he), he
    green = np.zeros((300, 400, 3), np.uint8)
    green[..., 1] = 180                              # not a stained slide
    why = scope.check(green)
    assert any("colours unlike the training set" in w for w in why), why
    assert scope.check(refs[0], detail=False) == [] or all("colours" in w for w in scope.check(refs[0], detail=False))


def test_each_kind_is_warned_once():
    refs, phones = training_like()
    scope = Scope(summarise(phones))
    first = scope.first_time(scope.check(refs[-1]))
    assert first and scope.first_time(scope.check(refs[-1][::-1].copy())) == []


def test_a_card_without_statistics_warns_about_nothing():
    assert Scope.from_card({}) is None
    assert Scope.from_card({"input_stats": {"detail_p99": "x"}}) is None
