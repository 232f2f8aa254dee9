"""Fetch real model weights on a connected machine, for use offline afterwards.

Detectors:

    python scripts/download_models.py torchvision fasterrcnn_resnet50_fpn_v2 models/frcnn.pth
    python scripts/download_models.py rtdetr PekingU/rtdetr_v2_r50vd models/rtdetr_v2_r50vd

then point the config at the file or directory (``detector.weights`` / ``detector.path``).

Enrichment models (the built-in models.yml reads them from MODELS_DIR, default ./models):

    python scripts/download_models.py pose usyd-community/vitpose-base-simple \
        models/enrichment/vitpose-base-simple
    python scripts/download_models.py depth depth-anything/Depth-Anything-V2-Small-hf \
        models/enrichment/depth-anything-v2-small
    python scripts/download_models.py classifier <a cat/dog image classifier on the Hub> \
        models/enrichment/pet-classifier

The threat, vehicle, clothing and re-ID plugins load a state dict trained for the torchvision
architecture named in models.yml (``torch.save(model.state_dict(), path)``): no such weights
are published in that form, so they come from your own training.
The server itself never downloads anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torchvision


def torchvision_weights(architecture: str, target: Path) -> None:
    weights = torchvision.models.get_model_weights(architecture).DEFAULT  # type: ignore[attr-defined]
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(weights.get_state_dict(progress=True), target)
    print(f"saved {architecture} ({weights}) to {target}")


def hf_directory(kind: str, repo_id: str, target: Path) -> None:
    import transformers

    model_class = {
        "rtdetr": transformers.AutoModelForObjectDetection,
        "pose": transformers.VitPoseForPoseEstimation,
        "depth": transformers.AutoModelForDepthEstimation,
        "classifier": transformers.AutoModelForImageClassification,
    }[kind]
    model = model_class.from_pretrained(repo_id)
    model.save_pretrained(target)
    print(f"saved {repo_id} to {target}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["torchvision", "rtdetr", "pose", "depth", "classifier"])
    parser.add_argument("name", help="torchvision architecture or Hugging Face repository id")
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    if args.kind == "torchvision":
        torchvision_weights(args.name, args.target)
    else:
        hf_directory(args.kind, args.name, args.target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
