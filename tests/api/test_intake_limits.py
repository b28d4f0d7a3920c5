"""Bodies are bounded while they stream, before any work: the total cap (chunked or not), the
JSON/urlencoded cap, per-file and per-part caps, unused parts dropped, the stall limit, the
admin token checked before an admin body is read, and text that cannot be encoded again
refused at the door. Each of these was a way to exhaust memory or reach a 500 (issue 7).

Memory under full-size attacks is measured in tests/test_attacks.py and bench/attacks.py; here
the caps are small and the checks are about behaviour: the status, the field named, and that
the server stopped reading (it answered and closed before the client could send it all).
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Running

from ideohub.api.dialects import ENDPOINTS
from ideohub.api.dialects.fields import Fields, UploadedFile
from ideohub.domain.operations import Operation

from .test_endpoints import MINIMAL, NESTED, PNG, TOP_LEVEL, File, assert_problem, json_body, multipart, req, serve

from ideohub.domain.operations import Family as _Family, Operation as _Operation

# the legacy and 3.0 families; 4.0 and /v2 are tested in tests/families
OLD_FAMILIES = [o for o in _Operation if o.family in (_Family.LEGACY, _Family.V3)]

Op = Operation
MB = 1024 * 1024
SPEC = Path(__import__("ideohub").__file__).parent / "spec" / "ideogram-openapi.json"

LIMITS = dict(max_body_bytes=4 * MB, max_text_body_bytes=64 * 1024, max_upload_bytes=1 * MB, max_parts=16,
              max_small_body_bytes=8 * 1024, body_timeout_s=1.0, admin_token="admin-secret")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """No engines: a request that passes intake answers 503 (engine unavailable)."""
    with serve(tmp_path_factory.mktemp("intake"), **LIMITS) as running:
        yield running


# ---------------------------------------------------------------- a client that keeps sending


def push(srv: Running, path: str, headers: dict[str, str], chunks: Iterator[bytes], chunked: bool = True,
         budget_s: float = 30.0) -> tuple[int, int | None, bytes]:
    """Send a request whose body keeps coming; stop when the server answers or closes.
    Returns (body bytes sent, status or None, response bytes)."""
    host, port = srv.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else "\r\n"
    sent, response = 0, b""
    deadline = time.monotonic() + budget_s
    try:
        sock.sendall(head.encode())
        for chunk in chunks:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable or time.monotonic() > deadline:
                break
            frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
            sock.sendall(frame)
            sent += len(chunk)
    except OSError:
        pass  # the server closed while we were still sending: it stopped reading
    try:
        sock.settimeout(10)
        while True:
            data = sock.recv(65536)
            if not data:
                break
            response += data
            if b"\r\n\r\n" in response and _complete(response):
                break
    except OSError:
        pass  # what arrived before the reset is kept
    finally:
        sock.close()
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None
    return sent, status, response


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def endless(chunk: bytes = b"x" * 65536, limit: int = 400 * MB) -> Iterator[bytes]:
    sent = 0
    while sent < limit:
        yield chunk
        sent += len(chunk)


def problem_of(response: bytes) -> dict:
    return json.loads(response.partition(b"\r\n\r\n")[2])


# ---------------------------------------------------------------- the fields each endpoint reads


def test_declared_fields_are_the_official_schemas_properties():
    spec = json.loads(SPEC.read_text())
    schemas = spec["components"]["schemas"]
    for op, endpoint in ENDPOINTS.items():
        for content in spec["paths"][endpoint.path]["post"]["requestBody"]["content"].values():
            props = schemas[content["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]
            files = {k for k, p in props.items()
                     if p.get("format") == "binary" or p.get("items", {}).get("format") == "binary"}
            assert set(endpoint.file_fields) == files, op
            assert set(endpoint.text_fields) == set(props) - files, op


@pytest.mark.parametrize("op", OLD_FAMILIES, ids=[o.value for o in OLD_FAMILIES])
def test_parsers_read_only_declared_fields(op):
    """Anything a parser reads must be kept by the streaming intake, or it would be dropped."""
    endpoint = ENDPOINTS[op]
    fields = Fields()
    minimal = MINIMAL[op]
    if op in NESTED:
        top = {k: v for k, v in minimal.items() if k in TOP_LEVEL}
        top["image_request"] = json.dumps({k: v for k, v in minimal.items() if k not in TOP_LEVEL})
        minimal = top
    for name, value in minimal.items():
        if isinstance(value, File):
            fields.files.setdefault(name, []).append(UploadedFile(value.data, value.filename, value.content_type))
        else:
            fields.values.setdefault(name, []).append(value)
    endpoint.parse(fields)
    top_level = {name.split(".")[0] for name in fields.read}
    assert top_level <= endpoint.text_fields | endpoint.file_fields, top_level - (endpoint.text_fields | endpoint.file_fields)


# ---------------------------------------------------------------- caps while streaming


def test_chunked_json_over_the_text_cap_is_413_and_not_read_to_its_end(server):
    sent, status, response = push(server, "/v1/ideogram-v3/generate",
                                  {"Api-Key": server.key, "Content-Type": "application/json"},
                                  endless(b" " * 65536))
    assert status == 413, response[:300]
    assert problem_of(response)["detail"].startswith("body: ")
    assert b"connection: close" in response.lower()
    assert sent < 100 * MB  # it stopped reading long before the client ran out


def test_chunked_multipart_over_the_total_cap_is_413(server):
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"junk\"; filename=\"a.bin\"\r\n\r\n").encode()
    chunks = iter([head, *endless(limit=200 * MB)])
    sent, status, response = push(server, "/v1/ideogram-v3/remix",
                                  {"Api-Key": server.key, "Content-Type": f"multipart/form-data; boundary={boundary}"},
                                  chunks)
    assert status == 413, response[:300]
    assert sent < 100 * MB


def test_declared_length_over_the_cap_is_refused_before_reading(server):
    sent, status, response = push(server, "/v1/ideogram-v3/remix",
                                  {"Api-Key": server.key, "Content-Type": "multipart/form-data; boundary=x",
                                   "Content-Length": str(2 * 1024 * MB)}, endless(), chunked=False)
    assert status == 413 and sent < 100 * MB


def test_unauthenticated_image_request_is_refused_before_its_body_is_read(server):
    sent, status, response = push(server, "/upscale", {"Content-Type": "multipart/form-data; boundary=x"},
                                  endless(limit=3 * MB))
    assert status == 403  # the spec's status for /upscale
    assert b"connection: close" in response.lower()


@pytest.mark.parametrize("token", [None, "wrong"])
def test_admin_body_is_never_read_without_the_token(server, token):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    sent, status, response = push(server, "/admin/accounts", headers, endless())
    assert status == 401 and sent < 100 * MB
    assert b"connection: close" in response.lower()


def test_admin_disabled_is_404_before_reading(tmp_path):
    with serve(tmp_path, **{**LIMITS, "admin_token": None}) as srv:
        sent, status, _ = push(srv, "/admin/accounts", {"Content-Type": "application/json"}, endless())
        assert status == 404 and sent < 100 * MB


def test_admin_with_the_token_has_a_small_body_cap(server):
    headers = {"Content-Type": "application/json", "Authorization": "Bearer admin-secret"}
    sent, status, response = push(server, "/admin/accounts", headers, endless(b" " * 4096))
    assert status == 413, response[:300]
    ok = server.client.post("/admin/accounts", json={"name": "acme"}, headers={"Authorization": "Bearer admin-secret"})
    assert ok.status_code == 201


def test_any_other_route_takes_a_small_body_only(server):
    sent, status, _ = push(server, "/healthz", {}, endless(b"x" * 4096))
    assert status == 413


def test_a_stalled_body_is_408(server):
    def slow() -> Iterator[bytes]:
        yield b'{"prompt": '
        time.sleep(3)  # longer than body_timeout_s (1 s): the real stall under test
        yield b'"x"}'

    _sent, status, response = push(server, "/v1/ideogram-v3/generate",
                                   {"Api-Key": server.key, "Content-Type": "application/json"}, slow())
    assert status == 408, response[:300]


def test_a_file_part_over_its_cap_is_413_naming_it(server):
    r = req(Op.V3_REMIX, image=File(b"\x89PNG\r\n\x1a\n" + b"0" * (MB + 10))).send(server)
    assert_problem(r, 413, "image", "1 MB")


def test_unused_parts_are_dropped_while_streaming(server):
    """A 3 MB part the endpoint does not read (over the 1 MB file cap) is skipped, not refused or kept."""
    parts = [("unused_blob", File(b"z" * (3 * MB), "blob.bin", "application/octet-stream")),
             ("image", File(PNG)), ("prompt", "a lighthouse")]
    r = multipart(Op.V3_REMIX, parts).send(server)
    assert r.status_code == 503, r.text  # it passed intake; there is no engine here


def test_too_many_parts_is_413(server):
    parts = [("image", File(PNG)), ("prompt", "x")] + [("style_codes", "AAFF5733")] * 20
    assert_problem(multipart(Op.V3_REMIX, parts).send(server), 413, "body", "at most 16 parts")


def test_urlencoded_over_the_cap_is_413(server):
    body = b"prompt=" + b"a" * (200 * 1024)
    r = server.post("/v1/ideogram-v3/generate", content=body,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(r, 413, "body")


def test_urlencoded_small_is_read(server):
    r = server.post("/v1/ideogram-v3/generate", content=b"prompt=a+cat&rendering_speed=TURBO&junk=1",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 503, r.text


# ---------------------------------------------------------------- text the server could not encode again


SURROGATE_JSON = b'{"prompt": "a \\ud800 cat"}'


@pytest.mark.parametrize("content,ctype,field", [
    (SURROGATE_JSON, "application/json", "body"),
    (b'{"image_request": {"prompt": "x\\udfff"}}', "application/json", "body"),
])
def test_unpaired_surrogates_in_json_are_400(server, content, ctype, field):
    path = "/v1/ideogram-v3/generate" if b"image_request" not in content else "/generate"
    r = server.post(path, content=content, headers={"Content-Type": ctype})
    assert_problem(r, 400, field, "surrogate")


def test_unpaired_surrogate_in_a_json_string_part_names_the_field(server):
    parts = [("image_file", File(PNG)), ("image_request", b'{"prompt": "\\ud800", "detail": 50}')]
    r = multipart(Op.UPSCALE, parts).send(server)
    assert_problem(r, 400, "image_request", "surrogate")


def test_encoded_surrogate_bytes_in_a_part_are_400(server):
    parts = [("prompt", b"a \xed\xa0\x80 cat")]
    assert_problem(multipart(Op.V3_GENERATE, parts).send(server), 400, "prompt", "UTF-8")


@pytest.mark.parametrize("text,rule", [("a\x00b", "control characters"), ("a" * 10_001, "at most 10000 characters")])
def test_text_rules(server, text, rule):
    assert_problem(req(Op.V3_GENERATE, prompt=text).send(server), 400, "prompt", rule)
    assert_problem(req(Op.GENERATE, prompt=text).send(server), 400, "image_request.prompt", rule)
    assert_problem(req(Op.EDIT, model="V_2", prompt="ok", magic_prompt_option=text).send(server), 400,
                   "magic_prompt_option", rule)


def test_a_prompt_of_exactly_the_limit_is_accepted(server):
    assert req(Op.V3_GENERATE, prompt="a" * 10_000).send(server).status_code == 503


@pytest.mark.parametrize("as_json", [True, False])
def test_numbers_with_thousands_of_digits_are_400_naming_the_field(server, as_json):
    huge = "9" * 5000
    if as_json:
        r = server.post("/v1/ideogram-v3/generate", content=f'{{"prompt": "x", "seed": {huge}}}'.encode(),
                        headers={"Content-Type": "application/json"})
    else:
        r = req(Op.V3_GENERATE, seed=huge).send(server)
    assert_problem(r, 400, "seed", "at most 40 characters")
    r = server.post("/generate", content=f'{{"image_request": {{"prompt": "x", "num_images": {huge}}}}}'.encode(),
                    headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "image_request.num_images")


def test_a_huge_number_in_an_unread_field_is_ignored_like_any_unknown_field(server):
    r = server.post("/v1/ideogram-v3/generate", content=f'{{"prompt": "x", "whatever": {"9" * 5000}}}'.encode(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 503, r.text


@pytest.mark.parametrize("content", [b'{"prompt": "x", "seed": NaN}', b"[" * 30_000 + b"]" * 30_000,
                                     b'{"prompt": "x", "seed": 1e999}'])
def test_json_that_is_not_json_is_400(server, content):
    r = server.post("/v1/ideogram-v3/generate", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith(("body: ", "seed: "))


def test_json_without_engines_still_passes_unknown_fields(server):
    r = json_body(Op.V3_GENERATE, {"prompt": "x", "extra": {"deep": [1, 2, 3]}}).send(server)
    assert r.status_code == 503
