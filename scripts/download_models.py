"""Fetch real detector weights on a connected machine, for use offline afterwards.

    python scripts/download_models.py torchvision fasterrcnn_resnet50_fpn_v2 models/frcnn.pth
    python scripts/download_models.py rtdetr PekingU/rtdetr_v2_r50vd models/rtdetr_v2_r50vd

Then point the config at the file or directory (``detector.weights`` / ``detector.path``).
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


def rtdetr_directory(repo_id: str, target: Path) -> None:
    import transformers

    model = transformers.AutoModelForObjectDetection.from_pretrained(repo_id)
    model.save_pretrained(target)
    print(f"saved {repo_id} to {target}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["torchvision", "rtdetr"])
    parser.add_argument("name", help="torchvision architecture or Hugging Face repository id")
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    if args.kind == "torchvision":
        torchvision_weights(args.name, args.target)
    else:
        rtdetr_directory(args.name, args.target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
