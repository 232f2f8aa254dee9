"""The 1000 ImageNet-1k class names and reviewed maps from our labels to ImageNet class indices.

Contract: :data:`IMAGENET_CLASSES` is indexed like any ImageNet-1k classifier's output (taken
from torchvision's weight metadata; no download). :data:`VEHICLE_GROUPS` and :data:`PET_GROUPS`
map each of our labels to a tuple of those indices; within a map no index is in two labels, and
ImageNet classes that are only vehicle parts (grille, car wheel, car mirror) are in no label.
:func:`grouped_scores` sums each label's probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torchvision.models import ResNet50_Weights

IMAGENET_CLASSES: tuple[str, ...] = tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])

VEHICLE_GROUPS: Mapping[str, tuple[int, ...]] = {
    "car": (
        436,  # beach wagon
        511,  # convertible
        627,  # limousine
        661,  # Model T
        751,  # racer
        817,  # sports car
    ),
    "taxi": (468,),  # cab
    "suv": (609,),  # jeep
    "pickup_truck": (717,),  # pickup
    "van": (
        656,  # minivan
        675,  # moving van
    ),
    "police": (734,),  # police van
    "ambulance": (407,),  # ambulance
    "fire_truck": (555,),  # fire engine
    "truck": (
        569,  # garbage truck
        864,  # tow truck
        867,  # trailer truck
    ),
    "bus": (
        654,  # minibus
        779,  # school bus
        874,  # trolleybus
    ),
    "motorcycle": (
        665,  # moped
        670,  # motor scooter
    ),
    "bicycle": (
        444,  # bicycle-built-for-two
        671,  # mountain bike
        870,  # tricycle
    ),
    "rv": (757,),  # recreational vehicle
    "golf_cart": (575,),  # golfcart
    "go_kart": (573,),  # go-kart
    "tractor": (866,),  # tractor
    "snowplow": (803,),  # snowplow
    "snowmobile": (802,),  # snowmobile
}

PET_GROUPS: Mapping[str, tuple[int, ...]] = {
    "cat": tuple(range(281, 286)),  # tabby … Egyptian cat (286 cougar onwards are wild cats)
    "dog": tuple(range(151, 269)),  # Chihuahua … Mexican hairless (269 timber wolf onwards)
}


def grouped_scores(
    probabilities: torch.Tensor, groups: Mapping[str, Sequence[int]]
) -> torch.Tensor:
    """Sum each group's class probabilities: ``(..., classes)`` → ``(..., len(groups))``, the
    columns in ``groups``' order, on ``probabilities``' device and dtype."""
    membership = probabilities.new_zeros((probabilities.shape[-1], len(groups)))
    for column, indices in enumerate(groups.values()):
        membership[list(indices), column] = 1
    return probabilities @ membership
