"""The naive server the reference texts start from: one forward per request, CPU decode with
PIL, fp32, no batching, no warm-up; FastAPI runs each request's work in its thread pool.

Configured like hearthwatch (same environment variables, same model source), so the model
code is the same and only the serving differs.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image

from hearthwatch.config import load_settings
from hearthwatch.runtime.accel.device import select_device
from hearthwatch.runtime.accel.optimize import OptimizationSettings

settings = load_settings().settings
device = select_device(settings.use_gpu)
plain = OptimizationSettings(
    precision="fp32", channels_last=False, cudnn_benchmark=False, cuda_graphs=False
)
detector = settings.detector.build(device, plain, lambda name, reason: None)
app = FastAPI()


def predict(data: bytes) -> dict[str, object]:
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    with torch.inference_mode():
        found = detector.detect([image])[0]
    keep = found.scores >= settings.detection_confidence_threshold
    return {
        "boxes": found.boxes[keep].tolist(),
        "scores": found.scores[keep].tolist(),
        "classes": found.class_ids[keep].tolist(),
    }


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.post("/detect")
async def detect(request: Request) -> dict[str, object]:
    """A raw image body, or a multipart upload in the field ``image``."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        upload = (await request.form())["image"]
        data = await upload.read()  # type: ignore[union-attr]
    else:
        data = await request.body()
    return await run_in_threadpool(predict, data)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
