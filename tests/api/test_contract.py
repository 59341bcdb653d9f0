"""The contract tells the truth: schemathesis, driven by the live `/openapi.json`, against a real server process
(the tiny model), with every check it has: status codes, content types, headers and bodies as documented, no
5xx, schema-valid requests accepted and schema-invalid ones refused, optional authentication, the 405 `Allow`
header, and the jobs followed through the 202 answers' links (stateful phase).

The refusals of schema-valid requests that no schema can express (an image part must be a real image; a name
both in the query and in the body; labels, layers and bounds that belong to the model or to the settings) and
the documented 503 overload answer are the only failures dropped: `tests/api/contract_hooks.py` lists them.
Examples are bounded so that the run takes about a minute on two cores.
"""

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.real_server import ROOT, real_server

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 20
SEED = 1


def test_schemathesis_finds_no_failure_against_a_real_server(tmp_path: Path):
    st = Path(sys.executable).with_name("st")
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.api.contract_hooks", "PYTHONPATH": str(ROOT)}
    with real_server({"max_long_tasks": 4}) as server:
        run = subprocess.run(
            [
                str(st),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--workers",  # one: CPython 3.11 can fail compiling hypothesis' generated code in two threads
                "1",
                "--continue-on-failure",
                "--max-response-time",
                "60",
            ],
            cwd=tmp_path,  # schemathesis keeps a cache of crashes in its working directory: start afresh
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
        )
        served = server.log()
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20000:] + "\n--- server log ---\n" + served[-3000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", report)
    assert selected and selected[1] == selected[2], report[-3000:]  # every operation was tested


def test_the_exported_contract_declares_what_schemathesis_relies_on():
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    explain = spec["paths"]["/v1/models/{model}/explain"]["post"]
    form = explain["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["additionalProperties"] is False
    assert all({"type": "null"} not in prop.get("anyOf", []) for prop in form["properties"].values())
    image = explain["requestBody"]["content"]["application/json"]["schema"]["properties"]["image"]
    assert image["contentEncoding"] == "base64" and image["minLength"] == 1
    assert {} in explain["security"]  # keys are off by default
    assert {"202", "400", "401", "404", "413", "415", "422", "500", "503", "504"} <= set(explain["responses"])
    assert "links" in explain["responses"]["202"]
    assert not _pydantic_keywords(spec), "pydantic's ge/le/gt/lt left in a schema (JSON Schema ignores them)"
    text = (ROOT / "openapi.yaml").read_text()
    refs = [line for line in text.splitlines() if "$ref" in line]
    assert refs and all("#/components/schemas/" in line for line in refs)
    assert "#/$defs/" not in text, "a pointer (a $ref or a discriminator's mapping) that does not resolve"


def _pydantic_keywords(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [k for k in ("ge", "le", "gt", "lt") if k in node and isinstance(node[k], int | float)]
        return found + [k for v in node.values() for k in _pydantic_keywords(v)]
    if isinstance(node, list):
        return [k for v in node for k in _pydantic_keywords(v)]
    return []


@pytest.mark.anyio
async def test_json_fields_have_the_json_types_the_contract_declares(serve, noise_png):
    """Form and query values are text, converted as the schema says; a JSON value must already be of the declared
    JSON type (an integer may be written 2.0, as JSON Schema allows)."""
    from tests.tiny_models import tiny_loaded

    image = base64.b64encode(noise_png).decode()
    url = "/v1/models/tiny/explain"
    async with serve({"tiny": tiny_loaded()}) as client:
        accepted = [
            await client.post(url, json={"image": image, **fields})
            for fields in (
                {"top_k": 2},
                {"top_k": 2.0},
                {"alpha": 1, "bbox": True},
                {"class": [1, "class_2"]},
                {"class": 1.0},
                {"class": [1.0, "class_2"]},
            )
        ]
        refused = [
            await client.post(url, json={"image": image, **fields})
            for fields in ({"top_k": True}, {"top_k": "2"}, {"bbox": 0}, {"alpha": "0.5"}, {"method": 3})
        ]
        as_form = await client.post(url, files={"image": noise_png}, data={"top_k": "2", "bbox": "true"})
    assert [r.status_code for r in accepted] == [200] * 6, [r.text for r in accepted]
    assert [(r.status_code, r.json()["error"]["code"]) for r in refused] == [(400, "invalid_parameter")] * 5
    assert "not a JSON integer" in refused[0].json()["error"]["message"]
    assert as_form.status_code == 200


@pytest.mark.anyio
async def test_authentication_is_optional_in_the_contract_only_while_keys_are_off(serve):
    from tests.tiny_models import tiny_loaded

    async with serve({"tiny": tiny_loaded()}) as open_service:
        open_spec = (await open_service.get("/openapi.json")).json()
    async with serve({"tiny": tiny_loaded()}, api_keys=["k" * 16]) as keyed_service:
        keyed_spec = (await keyed_service.get("/openapi.json")).json()
    for path, method in (("/v1/models", "get"), ("/v1/models/{model}/explain", "post"), ("/metrics", "get")):
        assert {} in open_spec["paths"][path][method]["security"]
        assert {} not in keyed_spec["paths"][path][method]["security"]
        assert keyed_spec["paths"][path][method]["security"]  # Bearer or X-API-Key
    assert "security" not in keyed_spec["paths"]["/healthz"]["get"]
