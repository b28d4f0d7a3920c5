"""Delivery: every image gets a safety verdict (the engine's — an upstream's or the local
classifier's — or, when it brought none, the classifier's here), safe images are stored under
``<generation_id>-<n>`` and signed. Nothing is recorded here: the image rows are written by
settlement, in its transaction; ``discard`` deletes the files if a later step fails (and a
crashed run's files are found by the generation's prefix)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from ..domain.errors import UpstreamFailed
from ..domain.operations import ImageResult
from ..media.signing import UrlSigner
from ..media.storage import Storage
from ..store.models import StoredImage
from ..store.repository import utcnow
from .job import DeliveredImage, Job

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


@dataclass
class Delivered:
    images: list[DeliveredImage]
    rows: list[StoredImage]  # to record at settlement

    @property
    def count(self) -> int:
        return sum(1 for i in self.images if i.url is not None)


class Delivery:
    def __init__(self, storage: Storage, signer: UrlSigner, classifier=None) -> None:  # type: ignore[no-untyped-def]
        self.storage = storage
        self.signer = signer
        self.classifier = classifier  # a SafetyClassifier, for images no engine judged; None: safety off

    async def deliver(self, job: Job, result: ImageResult) -> Delivered:
        if not result.images:
            raise UpstreamFailed("the engine returned no images")  # never a 200 with empty data
        rows: list[StoredImage] = []
        images: list[DeliveredImage] = []
        now = utcnow()
        try:
            for n, output in enumerate(result.images):
                if output.is_image_safe is None and output.data is not None:
                    output.is_image_safe = await self._judge(output.data)
                if not output.is_image_safe or output.data is None:
                    images.append(DeliveredImage(output, None))
                    continue
                image_id = f"{job.output_prefix}{n}"
                key = f"{image_id}.{EXTENSIONS.get(output.media_type, 'png')}"
                url, exp = self.signer.sign(key)
                size = output.upscaled_resolution or output.resolution
                await self.storage.put(key, output.data)
                rows.append(StoredImage(
                    id=image_id, request_id=job.request_id, storage_key=key, media_type=output.media_type,
                    width=size.width, height=size.height, bytes=len(output.data), etag=image_id,
                    created_at=now, expires_at=datetime.fromtimestamp(exp, UTC)))
                images.append(DeliveredImage(output, url, image_id))
        except BaseException:
            await self.discard(rows)
            raise
        return Delivered(images, rows)

    async def _judge(self, data: bytes) -> bool:
        if self.classifier is None:
            return True
        def judge() -> bool:
            import io

            import numpy as np
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                return bool(self.classifier.is_safe(np.asarray(im.convert("RGB"))))

        return await anyio.to_thread.run_sync(judge)

    async def discard(self, rows: list[StoredImage]) -> None:
        for row in rows:
            await self.storage.delete(row.storage_key)
