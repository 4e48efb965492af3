"""The floor: the least code that answers a raw-PNG prediction on the service's stack, to measure the service against.

    python bench/floor_app.py CHECKPOINT.h5 --port 8100 [--height 28 --width 28]

One FastAPI route on uvicorn (uvloop, httptools), Pillow to decode, the network through one `tf.function`,
the call made on the event loop: no key, no database, no rate limit, no thread. Whatever the service spends
above this figure, on the same machine in the same run, is its own (bench/predict_load.py prints the ratio).
"""

from __future__ import annotations

import argparse
import io
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import uvicorn
from fastapi import FastAPI, Request
from PIL import Image


def floor_app(checkpoint: str, height: int, width: int) -> FastAPI:
    network = keras.models.load_model(checkpoint, compile=False)
    call = tf.function(lambda x: network(x, training=False), input_signature=[tf.TensorSpec((None, height, width))])
    call(tf.zeros((1, height, width)))  # traced before the first request, as the service warms its networks
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        image = Image.open(io.BytesIO(await request.body())).convert("L").resize((width, height))
        outputs = np.asarray(call(tf.constant(np.asarray(image, dtype="float32")[np.newaxis])))[0]
        return {"class_index": int(outputs.argmax()), "outputs": outputs.tolist()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--height", type=int, default=28)
    parser.add_argument("--width", type=int, default=28)
    args = parser.parse_args()
    app = floor_app(args.checkpoint, args.height, args.width)
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning")


if __name__ == "__main__":
    main()
