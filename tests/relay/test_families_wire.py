"""4.0 and /v2 on the wire: each request encoded as its official schema says (a JSON body where
the path takes JSON and nothing is uploaded, else multipart with JSON parts for objects, repeated
parts for arrays of scalars, a part per item for arrays of objects the spec's ``encoding`` names),
account fields only to channels that allow them, never ``async``/``webhook_url``/``dry_run``;
every upstream answer validated (images, acknowledgements, generations, JSON prompts); and the
channel rules (which operations each kind serves, resold models, paths per style)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import png_bytes
from ideohub import spec
from ideohub.domain.errors import InvalidRequest
from ideohub.domain.operations import (
    ACCOUNT_FIELDS,
    DescribeResult,
    Family,
    JsonResult,
    Operation,
    SpecRequest,
)
from ideohub.domain.sizes import Size
from ideohub.engines.relay.channels import LEGACY_V3_OPERATIONS, Channel, channel_from_options
from ideohub.engines.relay.wire import (
    ASPECT_RATIOS_V4,
    MAX_JSON_ELEMENTS,
    MAX_JSON_TEXT_CHARS,
    Acknowledged,
    MalformedResponse,
    encode_request,
    parse_answer,
    parse_generation,
    parse_json_prompt,
    required_account_field,
    to_wire,
)
from ideohub.media.decode import ImageLimits, read_image
from ideohub.sim.intake import json_instance, multipart_instance, parse_multipart
from ideohub.sim.schema import endpoints

LIMITS = ImageLimits()
V2_GEN4 = Operation("v2-generate-ideogram-4")
V2_GEN3 = Operation("v2-generate-ideogram-3")
V2_GEN3_CUSTOM = Operation("v2-generate-ideogram-3-custom-model")
V2_REMOVE_BG = Operation("v2-remove-background-ideogram-1")
V2_REPLACE_BG = Operation("v2-replace-background-ideogram-3")
V2_DESCRIBE3 = Operation("v2-describe-ideogram-3")
V2_DESCRIBE4 = Operation("v2-describe-ideogram-4")
V2_NANO = Operation("v2-generate-nano-banana-2")


def img(name: str, w: int = 32, h: int = 24, filename: str | None = None):
    return read_image(name, png_bytes(w, h), LIMITS, filename=filename or f"{name}.png")


def spec_request(op: Operation, params: dict[str, Any], images: tuple = (), num_images: int = 1,
                 seed: int | None = None) -> SpecRequest:
    return SpecRequest(op=op, params=params, images=images, num_images=num_images, seed=seed)


def decoded(request: SpecRequest, account_fields: bool = True) -> tuple[str, Any]:
    """("json", body) or ("multipart", parts) as the upstream receives it."""
    body = encode_request(request, account_fields)
    if body.content_type == "application/json":
        return "json", json.loads(body.content)
    assert body.content_type.startswith("multipart/form-data; boundary=")
    return "multipart", parse_multipart(body.content, body.content_type)


def accepted_by_the_official_schema(request: SpecRequest, account_fields: bool = True) -> dict[str, Any]:
    """The instance the official request schema sees (the sim's own reading), validated."""
    endpoint = endpoints()[request.op]
    body = encode_request(request, account_fields)
    media = body.content_type.split(";")[0]
    schema = endpoint.bodies[media]
    if media == "application/json":
        instance = json_instance(schema, json.loads(body.content))
    else:
        instance, _files = multipart_instance(schema, parse_multipart(body.content, body.content_type), strict=True)
    errors = sorted(schema.validator.iter_errors(instance), key=str)
    assert not errors, [e.message for e in errors]
    return instance


def by_name(parts) -> dict[str, list]:  # type: ignore[no-untyped-def]
    out: dict[str, list] = {}
    for p in parts:
        out.setdefault(p.name, []).append(p)
    return out


# ---------------------------------------------------------------- JSON or multipart, per the schema


def test_v4_generate_without_files_is_a_json_body_with_the_seed_and_nothing_of_ours():
    request = spec_request(Operation.V4_GENERATE, {
        "text_prompt": "a lighthouse", "rendering_speed": "TURBO", "resolution": "1024x1024",
        "async": True, "webhook_url": "https://hook.example/x", "dry_run": True,  # never forwarded
    }, seed=42)
    kind, body = decoded(request)
    assert kind == "json"
    assert body == {"text_prompt": "a lighthouse", "rendering_speed": "TURBO", "resolution": "1024x1024", "seed": 42}
    assert accepted_by_the_official_schema(request)["seed"] == 42


def test_v4_generate_json_prompt_stays_an_object_in_json():
    prompt = {"high_level_description": "a cat", "compositional_deconstruction": {
        "background": "a sofa", "elements": [{"type": "text", "text": "HELLO", "desc": "sign", "bbox": [0, 0, 10, 10]}]}}
    request = spec_request(Operation.V4_GENERATE, {"json_prompt": prompt})
    kind, body = decoded(request)
    assert kind == "json" and body["json_prompt"] == prompt
    accepted_by_the_official_schema(request)


def test_v4_remix_is_multipart_with_typed_text_parts():
    request = spec_request(Operation.V4_REMIX, {"text_prompt": "make it snow", "image_weight": 70,
                                                "rendering_speed": "QUALITY", "enable_copyright_detection": False},
                           images=(("image", img("image", filename="in.png")),), seed=5)
    kind, parts = decoded(request)
    assert kind == "multipart"
    named = by_name(parts)
    assert named["image"][0].filename == "in.png" and named["image"][0].content_type == "image/png"
    assert bytes(named["image_weight"][0].data) == b"70" and named["image_weight"][0].filename is None
    assert bytes(named["enable_copyright_detection"][0].data) == b"false"
    assert "seed" not in named  # 4.0 remix has no seed field: the one admission fixed stays ours
    instance = accepted_by_the_official_schema(request)
    assert instance["image_weight"] == 70 and instance["enable_copyright_detection"] is False


def test_v4_describe_booleans_are_true_and_false():
    request = spec_request(Operation.V4_DESCRIBE, {"include_bbox": True, "include_tags": False},
                           images=(("image_file", img("image_file")),))
    kind, parts = decoded(request)
    named = by_name(parts)
    assert kind == "multipart" and "seed" not in named  # 4.0 describe has no seed
    assert bytes(named["include_bbox"][0].data) == b"true" and bytes(named["include_tags"][0].data) == b"false"
    accepted_by_the_official_schema(request)


def test_magic_prompt_is_json_only():
    request = spec_request(Operation.V4_MAGIC_PROMPT, {"text_prompt": "a cat", "aspect_ratio": "AUTO"}, seed=3)
    assert decoded(request) == ("json", {"text_prompt": "a cat", "aspect_ratio": "AUTO"})  # no seed field there
    with_file = spec_request(Operation.V4_MAGIC_PROMPT, {"text_prompt": "a cat"}, images=(("image", img("image")),))
    with pytest.raises(InvalidRequest, match="image"):
        to_wire(with_file)


def test_v2_generate_ideogram_3_multipart_objects_arrays_and_files():
    palette = {"members": [{"color_hex": "#ff0000", "color_weight": 0.5}]}
    refs = [{"asset_id": "a" * 22, "asset_type": "UPLOAD"}, {"asset_id": "b" * 22, "asset_type": "ASSET"}]
    params = {"prompt": "a poster", "color_palette": palette, "style_codes": ["AAFF5733", "12345678"],
              "style_reference_asset_identifiers": refs, "num_images": 2, "private": True}
    as_json = spec_request(V2_GEN3, params, num_images=2)
    kind, body = decoded(as_json)
    assert kind == "json" and body["style_codes"] == ["AAFF5733", "12345678"] and body["private"] is True

    with_files = spec_request(V2_GEN3, params, images=(("style_reference_images", img("s1")),
                                                       ("style_reference_images", img("s2"))), num_images=2)
    kind, parts = decoded(with_files)
    assert kind == "multipart"
    named = by_name(parts)
    assert [p.filename for p in named["style_reference_images"]] == ["s1.png", "s2.png"]
    assert named["color_palette"][0].content_type == "application/json"
    assert json.loads(bytes(named["color_palette"][0].data)) == palette
    assert [bytes(p.data) for p in named["style_codes"]] == [b"AAFF5733", b"12345678"]  # repeated text parts
    # an array of objects whose encoding names a content type: one JSON part per item
    assert [json.loads(bytes(p.data)) for p in named["style_reference_asset_identifiers"]] == refs
    assert all(p.content_type == "application/json" for p in named["style_reference_asset_identifiers"])
    assert bytes(named["private"][0].data) == b"true"


def test_array_of_objects_without_an_encoding_is_one_json_part():
    request = spec_request(V2_GEN3, {"prompt": "x", "extra": [{"a": 1}, {"b": 2}]},
                           images=(("style_reference_images", img("s1")),))
    _kind, parts = decoded(request)
    extra = by_name(parts)["extra"]
    assert len(extra) == 1 and json.loads(bytes(extra[0].data)) == [{"a": 1}, {"b": 2}]


def test_v2_remove_background_is_multipart_and_has_no_seed():
    request = spec_request(V2_REMOVE_BG, {"private": True}, images=(("image", img("image")),), seed=9)
    kind, parts = decoded(request)
    named = by_name(parts)
    assert kind == "multipart" and set(named) == {"image", "private"}
    accepted_by_the_official_schema(request)


@pytest.mark.parametrize("private", [True, False])
def test_private_is_forwarded_as_sent(private):
    request = spec_request(V2_GEN4, {"prompt": "a cat", "private": private})
    assert decoded(request)[1]["private"] is private


# ---------------------------------------------------------------- account fields


def test_account_fields_are_dropped_unless_the_channel_allows_them():
    params = {"prompt": "a cat", "target_collection_id": "coll_0123456789abcdefghij", "private": True}
    request = spec_request(V2_GEN4, params)
    assert decoded(request, account_fields=True)[1]["target_collection_id"] == "coll_0123456789abcdefghij"
    dropped = decoded(request, account_fields=False)[1]
    assert "target_collection_id" not in dropped and dropped["prompt"] == "a cat" and dropped["private"] is True
    accepted_by_the_official_schema(request, account_fields=False)

    v4 = spec_request(Operation.V4_GENERATE, {"text_prompt": "a cat", "custom_model_uri": "model/m/version/1",
                                              "magic_prompt_system_prompt_config_id": "cfg_1"})
    assert set(decoded(v4, account_fields=False)[1]) == {"text_prompt"}
    assert {"custom_model_uri", "magic_prompt_system_prompt_config_id"} <= set(decoded(v4)[1])
    remix = spec_request(Operation.V2_REMIX_IDEOGRAM_4, {"prompt": "p", "target_collection_id": "c"},
                         images=(("image", img("image")),))
    assert "target_collection_id" not in by_name(decoded(remix, account_fields=False)[1])
    assert "target_collection_id" in by_name(decoded(remix)[1])
    assert ACCOUNT_FIELDS == {"target_collection_id", "custom_model_uri", "magic_prompt_system_prompt_config_id"}


def test_a_required_account_field_is_named():
    custom = spec_request(V2_GEN3_CUSTOM, {"prompt": "p", "custom_model_uri": "model/m/version/1"})
    assert required_account_field(custom) == "custom_model_uri"
    assert required_account_field(spec_request(V2_GEN4, {"prompt": "p", "target_collection_id": "c"})) is None


# ---------------------------------------------------------------- text that cannot be encoded


def test_unencodable_text_is_the_callers_400_naming_the_field():
    with pytest.raises(InvalidRequest, match="text_prompt"):
        encode_request(spec_request(Operation.V4_GENERATE, {"text_prompt": "bad \ud800"}))
    with pytest.raises(InvalidRequest, match="text_prompt"):
        encode_request(spec_request(Operation.V4_REMIX, {"text_prompt": "bad \ud800"},
                                    images=(("image", img("image")),)))
    with pytest.raises(InvalidRequest, match=r"json_prompt\.high_level_description"):
        encode_request(spec_request(Operation.V4_REMIX, {"json_prompt": {"high_level_description": "\udfff"}},
                                    images=(("image", img("image")),)))


# ---------------------------------------------------------------- channels: families, paths


def test_relay_channels_without_operations_keep_legacy_and_3_0_only():
    relay = Channel(name="r", kind="relay", base_url="http://r", key="k")
    assert relay.operations == LEGACY_V3_OPERATIONS
    assert LEGACY_V3_OPERATIONS == {o for o in Operation if o.family in (Family.LEGACY, Family.V3)}
    assert relay.declares(Operation.V3_GENERATE) and not relay.declares(Operation.V4_GENERATE)
    assert not relay.declares(V2_GEN4)
    assert relay.public()["operations"] == sorted(o.value for o in LEGACY_V3_OPERATIONS)
    opted_in = channel_from_options({"name": "r", "base_url": "http://r", "key": "k",
                                     "operations": "v4-generate,v2-generate-ideogram-4"})
    assert opted_in.declares(Operation.V4_GENERATE) and not opted_in.declares(Operation.V3_GENERATE)


def test_the_migration_writes_the_same_list():
    import importlib.util
    from pathlib import Path

    import ideohub.store

    path = Path(ideohub.store.__file__).parent / "migrations" / "versions" / "0008_channel_families.py"
    module_spec = importlib.util.spec_from_file_location("m0008", path)
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    assert module.LEGACY_V3_OPERATIONS == sorted(o.value for o in LEGACY_V3_OPERATIONS)


def test_ideogram_channels_serve_every_family_but_resold_models_only_when_listed():
    official = Channel(name="o", kind="ideogram", key="k")
    assert official.operations is None and official.public()["operations"] is None
    for op in Operation:
        assert official.declares(op) is (not op.resold), op
    assert V2_NANO.resold and not V2_GEN4.resold
    listed = Channel(name="o", kind="ideogram", key="k", operations=frozenset({V2_NANO, V2_GEN4}))
    assert listed.declares(V2_NANO) and listed.serves(V2_NANO, None) and not listed.declares(Operation.GENERATE)
    relay = Channel(name="r", kind="relay", base_url="http://r", key="k", operations=frozenset({V2_NANO}))
    assert relay.serves(V2_NANO, None)


def test_account_fields_option():
    assert Channel(name="r", kind="relay", base_url="http://r", key="k").account_fields is False
    on = channel_from_options({"name": "r", "base_url": "http://r", "key": "k", "account_fields": True})
    assert on.account_fields is True and on.public()["account_fields"] is True
    with pytest.raises(ValueError, match="account_fields must be true or false"):
        channel_from_options({"name": "r", "base_url": "http://r", "key": "k", "account_fields": "yes"})


@pytest.mark.parametrize("path_style,op,expected", [
    ("official", Operation.V4_GENERATE, "http://u/v1/ideogram-v4/generate"),
    ("official", Operation.V45_GENERATE, "http://u/v1/ideogram-v45/generate"),
    ("official", V2_GEN4, "http://u/v2/image/generate/ideogram-4"),
    ("ideogram", Operation.V4_MAGIC_PROMPT, "http://u/ideogram/v1/ideogram-v4/magic-prompt"),
    ("ideogram", V2_REMOVE_BG, "http://u/ideogram/v2/image/remove-background/ideogram-1"),
    ("ideogram-v1", Operation.V4_REMIX, "http://u/ideogram/v1/ideogram-v4/remix"),
    ("ideogram-v1", V2_GEN4, "http://u/ideogram/v2/image/generate/ideogram-4"),
    ("ideogram-v1", Operation.V3_GENERATE, "http://u/ideogram/v1/ideogram-v3/generate"),
    ("ideogram-v1", Operation.UPSCALE, "http://u/ideogram/v1/upscale"),
])
def test_paths_of_the_new_families(path_style, op, expected):
    ch = Channel(name="c", kind="relay", base_url="http://u/", key="k", path_style=path_style)
    assert ch.url_for(op) == expected
    prefix = "" if path_style == "official" else "/ideogram"
    assert ch.generation_url("abc_-1") == f"http://u{prefix}/v2/generations/abc_-1"


def test_official_channel_paths():
    ch = Channel(name="o", kind="ideogram", key="k")
    assert ch.url_for(V2_GEN4) == "https://api.ideogram.ai/v2/image/generate/ideogram-4"
    assert ch.generation_url("x") == "https://api.ideogram.ai/v2/generations/x"


# ---------------------------------------------------------------- answers: images


def item(**extra: Any) -> dict[str, Any]:
    return {"is_image_safe": True, "url": "https://cdn.test/1.png", "prompt": "p", "resolution": "1024x1024",
            "seed": 7, **extra}


def test_v4_image_answers_are_read_as_before():
    request = spec_request(Operation.V4_GENERATE, {"text_prompt": "p"})
    images = parse_answer(request, {"created": "2026-01-01T00:00:00Z", "data": [item(resolution="2048x2048")]})
    assert images[0].resolution == Size(2048, 2048) and images[0].seed == 7  # type: ignore[index]
    for bad in ({"data": [item(), item()]}, {"data": [item(resolution="huge")]}, {"data": []}, {"data": "x"},
                {"data": [item(seed=-1)]}, {"data": [item(url="javascript:alert(1)")]}, [], "x"):
        with pytest.raises(MalformedResponse):
            parse_answer(request, bad)


def test_v2_image_answers():
    request = spec_request(V2_GEN4, {"prompt": "p"}, num_images=2)
    images = parse_answer(request, {"generation_id": "gen_1", "seed": 12, "data": [item(), item(seed=13)]})
    assert [i.seed for i in images] == [7, 13] and images[0].url == "https://cdn.test/1.png"  # type: ignore[union-attr]
    no_seed = parse_answer(request, {"generation_id": "g", "seed": 12, "data": [{"is_image_safe": True,
                                                                                  "url": "https://cdn.test/a.png"}]})
    assert no_seed[0].seed == 12 and no_seed[0].prompt == "" and no_seed[0].resolution is None  # type: ignore[index]
    for bad in ({"generation_id": "g", "data": [item()] * 3},  # more than asked for
                {"generation_id": "not/an/id", "data": [item()]},
                {"generation_id": "x" * 65, "data": [item()]},
                {"seed": "1", "data": [item()]},
                {"data": [item(object_type="video.generation")]},
                {"data": [{"is_image_safe": True}]},  # safe without a link
                {"created": "2026"}):  # neither data nor generation_id
        with pytest.raises(MalformedResponse):
            parse_answer(request, bad)


def test_remove_background_items_take_their_size_from_the_image_or_the_input():
    upload = img("image", 40, 30)
    request = spec_request(V2_REMOVE_BG, {"private": True}, images=(("image", upload),))
    (safe,) = parse_answer(request, {"generation_id": "zm6IqQd4RPGnwA8gQYEL5Q",
                                     "data": [{"is_image_safe": True, "url": "https://cdn.test/fg.png"}]})
    assert (safe.resolution, safe.prompt, safe.seed) == (None, "", 0)  # the size comes from the download
    (unsafe,) = parse_answer(request, {"data": [{"is_image_safe": False, "url": None}]})
    assert unsafe.resolution == Size(40, 30) and unsafe.url is None
    without_input = spec_request(V2_GEN4, {"prompt": "p"})
    with pytest.raises(MalformedResponse, match="neither a resolution nor an image"):
        parse_answer(without_input, {"data": [{"is_image_safe": False}]})


def test_an_acknowledgement_is_polled_and_its_id_checked():
    request = spec_request(V2_REPLACE_BG, {"prompt": "a beach"}, images=(("image", img("image")),))
    assert parse_answer(request, {"generation_id": "xtdZiqPwRxqY1Y7NExFmzB"}) == Acknowledged("xtdZiqPwRxqY1Y7NExFmzB")
    for bad in ({"generation_id": "../v1/keys"}, {"generation_id": ""}, {"generation_id": 5}, {}):
        with pytest.raises(MalformedResponse):
            parse_answer(request, bad)


def test_polled_generations():
    assert parse_generation({"generation_id": "g", "status": "pending", "created": "x"}, "g", 1).status == "pending"
    done = parse_generation({"generation_id": "g", "status": "completed", "created": "x", "response_type": "url",
                             "data": [item(object_type="image.generation")]}, "g", 1)
    assert done.status == "completed" and done.images[0].resolution == Size(1024, 1024)  # type: ignore[index]
    failed = parse_generation({"generation_id": "g", "status": "failed", "failure_reason": "content_policy_violation"},
                              "g", 1)
    assert (failed.status, failed.failure_reason) == ("failed", "content_policy_violation")
    for bad in ({"generation_id": "other", "status": "pending"}, {"generation_id": "g", "status": "done"},
                {"generation_id": "g", "status": "completed"}, {"generation_id": "g", "status": "completed",
                                                                "data": [item(), item()]}, ["x"]):
        with pytest.raises(MalformedResponse):
            parse_generation(bad, "g", 1)


# ---------------------------------------------------------------- answers: JSON documents


def json_prompt(**extra: Any) -> dict[str, Any]:
    return {
        "high_level_description": "A ginger cat on a chair.",
        "style_description": {"aesthetics": "warm", "lighting": "soft", "color_palette": ["#FFD700", "#00aaFF"],
                              "mood": "dropped"},
        "compositional_deconstruction": {"background": "a room", "elements": [
            {"type": "obj", "desc": "cat", "bbox": [0, 0, 1000, 1000], "color_palette": ["#000000"], "text": "x"},
            {"type": "text", "text": "HELLO", "desc": "sign", "size": 3},
        ], "extra": 1},
        "tags": ["cat", "chair"],
        "unknown": {"deep": True},
        **extra,
    }


def test_magic_prompt_answer():
    request = spec_request(Operation.V4_MAGIC_PROMPT, {"text_prompt": "a cat"})
    result = parse_answer(request, {"json_prompt": json_prompt(), "aspect_ratio": "16x9"})
    assert isinstance(result, JsonResult) and result.body["aspect_ratio"] == "16x9"
    jp = result.body["json_prompt"]
    assert set(jp) == {"high_level_description", "style_description", "compositional_deconstruction", "tags"}
    assert jp["style_description"] == {"aesthetics": "warm", "lighting": "soft", "color_palette": ["#FFD700", "#00aaFF"]}
    assert jp["compositional_deconstruction"] == {"background": "a room", "elements": [
        {"type": "obj", "desc": "cat", "bbox": [0, 0, 1000, 1000], "color_palette": ["#000000"]},
        {"type": "text", "text": "HELLO", "desc": "sign"}]}
    for bad in ({"json_prompt": json_prompt(), "aspect_ratio": "AUTO-ish"}, {"json_prompt": json_prompt()},
                {"aspect_ratio": "1x1"}):
        with pytest.raises(MalformedResponse):
            parse_answer(request, bad)


def test_aspect_ratios_are_the_specs():
    _name, doc = spec.newest_with("/v1/ideogram-v4/magic-prompt")  # type: ignore[misc]
    assert tuple(doc["components"]["schemas"]["AspectRatioV4"]["enum"]) == ASPECT_RATIOS_V4


def element(**fields: Any) -> dict[str, Any]:
    return {"high_level_description": "d", "compositional_deconstruction": {"background": "b", "elements": [fields]}}


BAD_PROMPTS = [
    ("not an object", []),
    ("no description", {"compositional_deconstruction": {"background": "b", "elements": []}}),
    ("description not a string", {"high_level_description": 5, "compositional_deconstruction": {
        "background": "b", "elements": []}}),
    ("no deconstruction", {"high_level_description": "d"}),
    ("no background", {"high_level_description": "d", "compositional_deconstruction": {"elements": []}}),
    ("elements not a list", {"high_level_description": "d", "compositional_deconstruction": {
        "background": "b", "elements": {}}}),
    ("unknown element type", element(type="svg", desc="x")),
    ("text element without text", element(type="text", desc="x")),
    ("element without desc", element(type="obj")),
    ("bbox of 3", element(type="obj", desc="x", bbox=[1, 2, 3])),
    ("bbox out of range", element(type="obj", desc="x", bbox=[0, 0, 1001, 5])),
    ("bbox of floats", element(type="obj", desc="x", bbox=[0.5, 0, 1, 5])),
    ("bbox of booleans", element(type="obj", desc="x", bbox=[True, 0, 1, 5])),
    ("short colour", element(type="obj", desc="x", color_palette=["#FFF"])),
    ("colour name", element(type="obj", desc="x", color_palette=["red"])),
    ("style not an object", {**element(type="obj", desc="x"), "style_description": "warm"}),
    ("style text not a string", {**element(type="obj", desc="x"), "style_description": {"lighting": 3}}),
    ("tags not strings", {**element(type="obj", desc="x"), "tags": [1]}),
    ("too many elements", {"high_level_description": "d", "compositional_deconstruction": {
        "background": "b", "elements": [{"type": "obj", "desc": "x"}] * (MAX_JSON_ELEMENTS + 1)}}),
]


@pytest.mark.parametrize("why,value", BAD_PROMPTS, ids=[b[0] for b in BAD_PROMPTS])
def test_malformed_json_prompts_are_malformed_answers(why, value):
    with pytest.raises(MalformedResponse):
        parse_json_prompt(value)


def test_json_prompt_strings_are_printable_and_capped_and_nulls_dropped():
    value = element(type="text", text="A\x00B\nC", desc="d" * (MAX_JSON_TEXT_CHARS + 50), bbox=None)
    value["tags"] = None
    out = parse_json_prompt(value)
    el = out["compositional_deconstruction"]["elements"][0]
    assert el["text"] == "A?B C" and len(el["desc"]) == MAX_JSON_TEXT_CHARS and "bbox" not in el
    assert "tags" not in out


def test_describe_answers():
    v4 = spec_request(Operation.V4_DESCRIBE, {}, images=(("image_file", img("image_file")),))
    result = parse_answer(v4, {"json_prompt": json_prompt(), "created": "ignored"})
    assert isinstance(result, JsonResult) and set(result.body) == {"json_prompt"}
    with pytest.raises(MalformedResponse):
        parse_answer(v4, {"descriptions": [{"text": "x"}]})

    d4 = spec_request(V2_DESCRIBE4, {}, images=(("image", img("image")),))
    body = parse_answer(d4, {"created": "2026-10-07T00:00:00Z", "description_id": "d_1", "json_prompt": json_prompt()})
    assert set(body.body) == {"created", "description_id", "json_prompt"}  # type: ignore[union-attr]
    d3 = spec_request(V2_DESCRIBE3, {}, images=(("image", img("image")),))
    body = parse_answer(d3, {"created": "2026-10-07T00:00:00Z", "description_id": "bad id!",
                             "descriptions": [{"text": "a\x07cat"}], "other": 1})
    assert body.body == {"created": "2026-10-07T00:00:00Z", "descriptions": [{"text": "a?cat"}]}  # type: ignore[union-attr]
    with pytest.raises(MalformedResponse):
        parse_answer(d3, {"descriptions": []})
    legacy = parse_answer(spec_request(Operation.DESCRIBE, {}), {"descriptions": [{"text": "x"}]})  # type: ignore[arg-type]
    assert legacy == DescribeResult(["x"])
