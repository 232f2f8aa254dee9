"""The ImageNet class names and our label maps, checked by name; grouped scores on a hand-made
tensor; and EfficientNet-Lite0's architecture (keys, shapes, TF padding) without its weights."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch
import torch.nn.functional as F

from hearthwatch.runtime.enrichment.efficientnet_lite import efficientnet_lite0
from hearthwatch.runtime.enrichment.imagenet_classes import (
    IMAGENET_CLASSES,
    PET_GROUPS,
    VEHICLE_GROUPS,
    grouped_scores,
)

MAPS = {"VEHICLE_GROUPS": VEHICLE_GROUPS, "PET_GROUPS": PET_GROUPS}


def index(name: str) -> int:
    assert IMAGENET_CLASSES.count(name) == 1, name
    return IMAGENET_CLASSES.index(name)


def test_names() -> None:
    assert len(IMAGENET_CLASSES) == 1000
    assert IMAGENET_CLASSES[0] == "tench"
    assert IMAGENET_CLASSES[999] == "toilet tissue"


@pytest.mark.parametrize("groups", MAPS.values(), ids=MAPS.keys())
def test_maps_in_range_and_disjoint(groups: Mapping[str, tuple[int, ...]]) -> None:
    seen: list[int] = []
    for label, indices in groups.items():
        assert indices, label
        assert all(0 <= i < 1000 for i in indices), label
        seen += indices
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("car", "sports car"),
        ("car", "beach wagon"),
        ("taxi", "cab"),
        ("suv", "jeep"),
        ("pickup_truck", "pickup"),
        ("van", "minivan"),
        ("van", "moving van"),
        ("police", "police van"),
        ("ambulance", "ambulance"),
        ("fire_truck", "fire engine"),
        ("truck", "garbage truck"),
        ("truck", "trailer truck"),
        ("bus", "school bus"),
        ("motorcycle", "moped"),
        ("motorcycle", "motor scooter"),
        ("bicycle", "mountain bike"),
        ("rv", "recreational vehicle"),
        ("golf_cart", "golfcart"),
        ("snowplow", "snowplow"),
    ],
)
def test_vehicle_types_by_name(label: str, name: str) -> None:
    assert index(name) in VEHICLE_GROUPS[label]


@pytest.mark.parametrize("name", ["grille", "car wheel", "car mirror", "tank", "streetcar"])
def test_not_a_vehicle_type(name: str) -> None:
    assert all(index(name) not in indices for indices in VEHICLE_GROUPS.values())


def test_pet_classes_by_name() -> None:
    cat, dog = PET_GROUPS["cat"], PET_GROUPS["dog"]
    assert [IMAGENET_CLASSES[i] for i in cat] == [
        "tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat",
    ]  # fmt: skip
    assert IMAGENET_CLASSES[min(dog)] == "Chihuahua"
    assert IMAGENET_CLASSES[max(dog)] == "Mexican hairless"
    assert sorted(dog) == list(range(min(dog), max(dog) + 1))
    for wild in (
        "sea lion",
        "timber wolf",
        "red fox",
        "coyote",
        "dingo",
        "hyena",
        "cougar",
        "lynx",
    ):
        assert index(wild) not in cat + dog, wild
    for breed in ("golden retriever", "German shepherd", "pug", "Pomeranian", "standard poodle"):
        assert index(breed) in dog, breed


def test_grouped_scores() -> None:
    probabilities = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.25, 0.25]])
    groups = {"a": (0, 2), "b": (3,), "none": ()}
    expected = torch.tensor([[0.4, 0.4, 0.0], [0.75, 0.25, 0.0]])
    torch.testing.assert_close(grouped_scores(probabilities, groups), expected)
    torch.testing.assert_close(grouped_scores(probabilities[0], groups), expected[0])


def test_grouped_scores_on_imagenet_maps() -> None:
    probabilities = torch.rand(3, 1000).softmax(-1)
    scores = grouped_scores(probabilities, PET_GROUPS)
    assert scores.shape == (3, 2)
    torch.testing.assert_close(scores[:, 1], probabilities[:, 151:269].sum(-1))


def test_efficientnet_lite0_architecture() -> None:
    model = efficientnet_lite0().eval()
    state = model.state_dict()
    assert len(state) == 296
    shapes = {
        "_conv_stem.weight": (32, 3, 3, 3),
        "_bn0.running_var": (32,),
        "_blocks.0._depthwise_conv.weight": (32, 1, 3, 3),
        "_blocks.0._project_conv.weight": (16, 32, 1, 1),
        "_blocks.1._expand_conv.weight": (96, 16, 1, 1),
        "_blocks.3._depthwise_conv.weight": (144, 1, 5, 5),
        "_blocks.15._project_conv.weight": (320, 1152, 1, 1),
        "_conv_head.weight": (1280, 320, 1, 1),
        "_bn1.weight": (1280,),
        "_fc.weight": (1000, 1280),
        "_fc.bias": (1000,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert "_blocks.0._expand_conv.weight" not in state  # block 0 does not expand
    assert sum(k.startswith("_blocks.") and k.endswith("_project_conv.weight") for k in state) == 16
    with torch.no_grad():
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 1000)
        assert model(torch.randn(1, 3, 161, 190)).shape == (1, 1000)
    assert efficientnet_lite0(num_classes=7).state_dict()["_fc.weight"].shape == (7, 1280)


def test_strided_convolutions_pad_like_tensorflow() -> None:
    """TF's "same" puts the odd padding row and column at the bottom and right."""
    stem = efficientnet_lite0()._conv_stem
    x = torch.randn(1, 3, 8, 7)
    with torch.no_grad():
        expected = F.conv2d(F.pad(x, [1, 1, 0, 1]), stem.weight, stride=2)
        torch.testing.assert_close(stem(x), expected)
