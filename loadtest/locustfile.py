"""Realistic traffic for the explain service, for locust (`make loadtest`, or `locust -f loadtest/locustfile.py`).

The mix, by weight: the default request (Grad-CAM of the top class) most of the time; a dashboard's request
(three methods x top-3 classes, WebP overlays); /predict; a job (a Grad-CAM sent with `Prefer: respond-async`,
its events followed to the end: "job: submit", "job: events", and "job: done" for the time from the submit to
the result); and a few bad inputs (bytes that are not an image, an unknown method), whose expected 4xx count as
successes of their own kind. Images are JPEGs of 640x480 and
1920x1080 made from scikit-image's photographs (no download), sent as raw `image/jpeg` bodies or multipart.

Every answer's status is counted by request name; `loadtest/plots.py` draws them with locust's CSV history.
Environment: LOADTEST_MODEL (default efficientnet_lite0), LOADTEST_OUT (default loadtest/out).
"""

import csv
import io
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

from locust import HttpUser, between, events, task
from PIL import Image
from skimage import data

MODEL = os.environ.get("LOADTEST_MODEL", "efficientnet_lite0")
OUT = Path(os.environ.get("LOADTEST_OUT", Path(__file__).parent / "out"))
EXPLAIN = f"/v1/models/{MODEL}/explain"
PREDICT = f"/v1/models/{MODEL}/predict"
STATUSES: Counter[tuple[str, int]] = Counter()


def jpeg(photo, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


PHOTOS = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
IMAGES = [jpeg(photo, size) for photo in PHOTOS for size in ((640, 480), (1920, 1080))]


@events.request.add_listener
def count_status(name: str, response, exception, **kwargs) -> None:
    status = getattr(response, "status_code", 0) if exception is None or response is not None else 0
    STATUSES[(name, status or 0)] += 1


@events.quitting.add_listener
def write_statuses(environment, **kwargs) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "statuses.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["name", "status", "count"])
        for (name, status), count in sorted(STATUSES.items()):
            writer.writerow([name, status, count])


class DashboardUser(HttpUser):
    """A client of the service: a few seconds between requests, as a person in a review tool or a service
    explaining what it just predicted."""

    wait_time = between(0.5, 2.0)

    def image(self) -> bytes:
        return random.choice(IMAGES)

    @task(12)
    def grad_cam(self) -> None:
        self.client.post(EXPLAIN, data=self.image(), headers={"content-type": "image/jpeg"},
                         name="explain grad_cam")

    @task(3)
    def three_methods_top3(self) -> None:
        self.client.post(
            EXPLAIN,
            params={"method": "cam,grad_cam,grad_cam_pp", "top_k": "3", "overlay_format": "webp"},
            files={"image": ("photo.jpg", self.image(), "image/jpeg")},
            name="explain 3 methods x top-3",
        )

    @task(4)
    def predict(self) -> None:
        self.client.post(PREDICT, data=self.image(), headers={"content-type": "image/jpeg"}, name="predict")

    @task(2)
    def job(self) -> None:
        started = time.perf_counter()
        submitted = self.client.post(
            EXPLAIN,
            data=self.image(),
            headers={"content-type": "image/jpeg", "prefer": "respond-async"},
            name="job: submit",
        )
        if submitted.status_code != 202:
            return
        final = None
        with self.client.get(
            submitted.headers["location"] + "/events", stream=True, name="job: events", catch_response=True
        ) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line and line.startswith("event: ") and line[7:] in ("succeeded", "failed", "cancelled"):
                    final = line[7:]
                elif final and line and line.startswith("data: "):
                    json.loads(line[6:])  # the whole job, result included
                    break
            if final == "succeeded":
                stream.success()
            else:
                stream.failure(f"the job ended {final}")
        self.environment.events.request.fire(
            request_type="JOB",
            name="job: done",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=None if final == "succeeded" else RuntimeError(f"the job ended {final}"),
            context={},
            response=None,
        )

    @task(1)
    def bad_input(self) -> None:
        if random.random() < 0.5:
            request = {"data": os.urandom(2048), "headers": {"content-type": "image/jpeg"}, "name": "bad: not an image"}
            expected = 415
        else:
            request = {"data": self.image(), "headers": {"content-type": "image/jpeg"}, "name": "bad: unknown method",
                       "params": {"method": "no_such_method"}}
            expected = 400
        with self.client.post(EXPLAIN, catch_response=True, **request) as response:
            if response.status_code == expected and response.json()["error"]["code"]:
                response.success()
            else:
                response.failure(f"expected {expected} in the error body, got {response.status_code}")
