"""/v2 asset identifiers that name our own results: ``{"asset_id": …, "asset_type": "RESPONSE"}``.

Every image this server delivers on /v2 (and in ``GenerationResponse``) carries an ``asset_id``:
the id of its stored file. A later request may name it instead of uploading the image again
(``image_asset_identifier``, ``mask_asset_identifier``, ``style_reference_asset_identifiers``);
it is read back from storage here, checked like any upload, and joins the request as the file
field it stands for — so engines and relays only ever see image bytes (an upstream knows nothing
of our assets). Another account's asset, an expired one and an unknown one are the same 404;
asset types other than RESPONSE (Ideogram's own collections and uploads) are a 400.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..domain import spec_rules
from ..domain.errors import InvalidRequest, NotFound
from ..domain.operations import ImageInput, SpecRequest
from ..media.decode import ImageLimits, read_image
from ..media.storage import Storage
from ..store.ledger import DEFAULT_ACCOUNT
from ..store.models import ApiKey
from ..store.repository import Repository, utcnow

# identifier field → the file field it stands for
ASSET_FIELDS = {"image_asset_identifier": "image", "image_asset_identifiers": "images", "mask_asset_identifier": "mask",
                "style_reference_asset_identifiers": "style_reference_images",
                "character_reference_asset_identifiers": "character_reference_images"}
MAX_ASSETS = 10


async def resolve_assets(request: SpecRequest, repo: Repository, storage: Storage, key: ApiKey,
                         limits: ImageLimits) -> SpecRequest:
    named = [name for name in ASSET_FIELDS if name in request.params]
    if not named:
        return request
    account = key.account_id or DEFAULT_ACCOUNT
    params = dict(request.params)
    images = list(request.images)
    for name in named:
        value = params.pop(name)
        identifiers = value if isinstance(value, list) else [value]
        if len(identifiers) > MAX_ASSETS:
            raise InvalidRequest(name, f"may name at most {MAX_ASSETS} assets")
        for i, identifier in enumerate(identifiers):
            where = f"{name}[{i}]" if isinstance(value, list) else name
            images.append((ASSET_FIELDS[name], await _read(identifier, where, repo, storage, account, limits)))
    resolved = replace(request, params=params, images=tuple(images))
    image = resolved.image("image")
    if image is not None and "image_weight" in params and isinstance(params.get("resolution"), str):
        spec_rules.check_same_aspect(params["resolution"], image)  # the rule the dialect could not judge yet
    return resolved


async def _read(identifier: Any, where: str, repo: Repository, storage: Storage, account: str,
                limits: ImageLimits) -> ImageInput:
    if not isinstance(identifier, dict) or not isinstance(identifier.get("asset_id"), str):
        raise InvalidRequest(f"{where}.asset_id", "is required and must be a string")
    if identifier.get("asset_type") != "RESPONSE":
        raise InvalidRequest(f"{where}.asset_type", "only RESPONSE assets (images this server produced) can be "
                                                    "referenced here; upload other images as files")
    asset_id = identifier["asset_id"]
    row = await repo.get_asset(asset_id, account, utcnow()) if len(asset_id) <= 40 else None
    data = await storage.get(row.storage_key) if row is not None else None
    if row is None or data is None:
        raise NotFound(f"{where}.asset_id: no such asset (unknown, expired, or not this account's)")
    return read_image(where, data, limits, f"{asset_id}.{row.storage_key.rsplit('.', 1)[-1]}")
