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


def test_a_type_with_few_training_inputs_keeps_its_own_colours():
    """Many blood smears and a few H&E fields: one Gaussian over all of them sits on the blood smears and
    calls the H&E fields the model was trained on out of scope; per type, the nearest type counts."""
    refs, _ = training_like()
    blood = refs[:3]                                 # the shipped slides: three blood smears, then H&E
    he = refs[-1]
    phones = [degrade(r, DEFAULT_PHONE, seed=s)[0] for r in blood for s in range(12)]
    he_phones = [degrade(he, DEFAULT_PHONE, seed=0)[0]]   # the shipped model: 263 blood smears, 1 H&E field
    unseen_he = degrade(he, DEFAULT_PHONE, seed=99)[0]
    pooled = Scope(summarise(phones + he_phones))
    assert any("colours" in w for w in pooled.check(unseen_he, detail=False))
    typed = Scope(summarise(phones + he_phones, ["blood"] * len(phones) + ["tissue"] * len(he_phones)))
    assert typed.check(unseen_he, detail=False) == []
    assert typed.check(degrade(blood[0], DEFAULT_PHONE, seed=99)[0], detail=False) == []
    green = np.zeros((300, 400, 3), np.uint8)
    green[..., 1] = 180
    assert any("colours" in w for w in typed.check(green, detail=False))
