"""The HTTP service, with a real HTTP client against uvicorn on loopback (a free port)."""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import BY_NAME, FEATURES
from features.patient import EXAMPLE_PATIENT
from ml.serving import app as serve
from ml.serving import contrast
from ml.serving.inputs import ScoringInputError, parse_patients
from ml.serving.results import RISK_GROUPS
from ml.tracking import mlflow_io as tracking

CONTRAST_B = 8
"""Bootstrap refits of the both-arms differences (xgb_cox has no delta method): few, for speed."""


def patient(**changes):
    return {**EXAMPLE_PATIENT, **changes}


@pytest.fixture(scope="module")
def scorer(fitted_scorer):
    return fitted_scorer("xgb_cox")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, scorer):
    """The survival pyfunc saved to a directory: the service loads it like any model URI."""
    root = tmp_path_factory.mktemp("served")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlruns/mlflow.db")
        return tracking.save_survival_model(scorer, root / "model")


@pytest.fixture(scope="module")
def server(model_dir):
    app = serve.create_app(model_dir, max_body_bytes=200_000, contrast_bootstrap=CONTRAST_B)
    with serve.BackgroundServer(app) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.mark.slow
def test_health_names_the_configured_model(client, model_dir):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["uri"] == model_dir
    assert body["model"] == "xgb_cox" and len(body["cutoffs"]) == 2


@pytest.mark.slow
def test_one_patient_matches_the_in_process_scorer(client, scorer):
    resp = client.post("/score", json=patient())
    assert resp.status_code == 200
    got = resp.json()["results"][0]
    want = scorer.score(patient()).iloc[0]
    assert got["risk_group"] == want["risk_group"]
    assert got["risk_score"] == pytest.approx(want["risk_score"], rel=1e-9)
    assert got["survival"]["surv_12m"] == pytest.approx(want["surv_12m"], rel=1e-9)
    assert got["median_pfs"] == want["median_pfs"]
    assert got["top_up"][0]["feature"] in want["top_up"]
    assert "curve" not in got or got["curve"] is None


def test_many_patients_and_curves(client):
    batch = {"patients": [patient(id=f"p{i}", age=40 + i) for i in range(30)]}
    resp = client.post("/score", params={"curve": "true"}, json=batch)
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert [r["id"] for r in results] == [f"p{i}" for i in range(30)]
    serve.ScoreResponse.model_validate(resp.json())  # the documented response shape
    curve = results[0]["curve"]
    assert curve["months"][0] == 0 and curve["survival"][0] == 1.0
    assert all(a >= b for a, b in zip(curve["survival"], curve["survival"][1:], strict=False))


@pytest.mark.slow
def test_concurrent_clients_get_consistent_answers(server):
    limits = httpx.Limits(max_connections=20)
    with httpx.Client(base_url=server.url, timeout=30, limits=limits) as shared:
        def call(i):
            return shared.post("/score", json=patient(id=f"c{i}", age=50 + i % 5)).json()["results"][0]

        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(call, range(40)))
    by_age = {}
    for i, r in enumerate(results):
        by_age.setdefault(50 + i % 5, set()).add(round(r["risk_score"], 12))
    assert all(len(scores) == 1 for scores in by_age.values())


@pytest.mark.parametrize(("body", "field", "words"), [
    (patient(pdl1="high"), "pdl1", "'<1%', '1-49%', '>=50%' or 'not tested'"),
    ({k: v for k, v in EXAMPLE_PATIENT.items() if k != "treatment"}, "treatment", "field required"),
    (patient(age="old"), "age", "valid number"),
    (patient(age=300), "age", "less than or equal to 110"),
    (patient(pfs1_months=-3), "pfs1_months", "greater than 0"),
    (patient(ecog=[1]), "ecog", "valid integer"),
    (patient(model_uri="/tmp/evil"), "model_uri", "unknown field"),
    ({"patients": [patient(), patient(sex=1)]}, "patients[1].sex", "'female' or 'male'"),
    ({"patients": []}, "patients", "at least 1 item"),
    ({"patients": [{}] * (serve.MAX_PATIENTS + 1)}, "patients", "at most 1000"),
    ([patient()], "body", "one patient object"),
])
@pytest.mark.slow
def test_bad_input_is_422_naming_the_field(client, body, field, words):
    resp = client.post("/score", json=body)
    assert resp.status_code == 422, resp.text
    err = resp.json()
    assert err["errors"][0]["field"] == field
    assert words in err["errors"][0]["message"]
    assert err["message"].startswith(f"{field}: ")


def test_same_message_as_the_cli(client):
    """The CLI prints `<file>: <message>`; the message is the service's."""
    with pytest.raises(ScoringInputError) as err:
        parse_patients(patient(age=300))
    assert client.post("/score", json=patient(age=300)).json()["message"] == str(err.value)


def test_invalid_json_and_wrong_content_type(client):
    resp = client.post("/score", content=b'{"age": ', headers={"content-type": "application/json"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "body"
    assert "invalid JSON" in resp.json()["message"]
    resp = client.post("/score", content=b"age=60", headers={"content-type": "text/plain"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "body"


def test_oversized_body_is_413(client):
    big = {"patients": [patient(id="x" * 60)] * 900}
    assert len(json.dumps(big)) > 200_000
    resp = client.post("/score", json=big)
    assert resp.status_code == 413
    assert resp.json()["errors"][0]["field"] == "body" and "200000 bytes" in resp.json()["message"]


def test_oversized_chunked_body_is_413(client):
    def chunks():
        for _ in range(50):
            yield b" " * 10_000

    resp = client.post("/score", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413 and resp.json()["errors"][0]["field"] == "body"


def test_other_routes_answer_cleanly(client):
    assert client.get("/nowhere").status_code == 404
    assert client.get("/score").status_code == 405
    assert client.post("/score", params={"curve": "perhaps"}, json=patient()).status_code == 422


def test_openapi_documents_the_contract(client):
    spec = client.get("/openapi.json").json()
    props = spec["components"]["schemas"]["PatientIn"]["properties"]
    assert set(props) == {"id", *FEATURES}
    sex = json.dumps(props["sex"])
    assert all(label in sex for label in BY_NAME["sex"].levels)
    assert props["pfs1_months"]["title"] == "First-line PFS"  # the contract's label
    assert "/score" in spec["paths"] and "413" in spec["paths"]["/score"]["post"]["responses"]


def test_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text.replace('"http://www.w3.org/2000/svg"', "")
    assert "https://" not in page.text and "<script src" not in page.text
    assert '"name": "prior_response"' in page.text


def test_page_form_follows_the_contract(client):
    page = client.get("/").text
    fields = json.loads(page.split("const FIELDS = ", 1)[1].split(";\n", 1)[0])
    assert [f["name"] for f in fields] == list(FEATURES)
    by_name = {f["name"]: f for f in fields}
    assert (by_name["age"]["min"], by_name["age"]["max"], by_name["age"]["unit"]) == (18, 110, "years")
    assert by_name["pfs1_months"]["interval"] == "(0, 600]"
    assert by_name["ecog"]["options"] == ["0", "1", "2"] and by_name["ecog"]["numeric"]
    assert by_name["pdl1"]["options"] == ["<1%", "1-49%", ">=50%", "not tested"]
    assert by_name["treatment"]["required"] and not by_name["pdl1"]["required"]
    assert by_name["prior_response"]["label"] == "Best response to first-line immunotherapy"
    as_sent = {f["name"]: float(f["default"]) if f["kind"] == "number" or f["numeric"] else f["default"]
               for f in fields}
    assert client.post("/score", json=as_sent).status_code == 200  # the form's defaults are a valid patient


def test_a_model_location_cannot_come_from_a_request(client, model_dir):
    resp = client.post("/score", params={"model": "/etc"}, json=patient())
    assert resp.status_code == 200
    assert client.get("/health").json()["uri"] == model_dir
    with pytest.raises(ValueError, match="cannot load a model"):
        serve.create_app("/nonexistent/model")


def test_both_arms_differences_equal_the_in_process_scorer(client, scorer):
    rows = [patient(id="a"), patient(id="b", age=75, prior_response="PD", treatment="CIA")]
    resp = client.post("/score", params={"both_arms": "true", "curve": "true"}, json={"patients": rows})
    assert resp.status_code == 200, resp.text
    serve.ScoreResponse.model_validate(resp.json())
    got = resp.json()["both_arms"]
    want = contrast.both_arms(scorer, parse_patients(rows), CONTRAST_B).records()
    assert [g["id"] for g in got] == ["a", "b"]
    for g, w in zip(got, want, strict=True):
        assert set(g["arms"]) == {"CI", "CIA"} and "not a randomised comparison" in g["caveat"]
        for key in ("surv_12m", "median_pfs_months"):
            for part in ("estimate", "low", "high"):
                want_part = w["difference"][key][part]
                assert g["difference"][key][part] == pytest.approx(want_part, rel=1e-9, abs=1e-12)
        assert g["difference"]["surv_12m"]["low"] <= g["difference"]["surv_12m"]["estimate"]
        assert g["difference"]["surv_12m"]["estimate"] <= g["difference"]["surv_12m"]["high"]
        s = g["arms"]["CIA"]["survival"]["surv_12m"] - g["arms"]["CI"]["survival"]["surv_12m"]
        assert g["difference"]["surv_12m"]["estimate"] == pytest.approx(s, abs=1e-6)
        assert f"B = {CONTRAST_B}" in g["difference"]["median_method"]
        assert g["arms"]["CI"]["curve"]["low"] is not None
    plain = client.post("/score", json=patient()).json()
    assert "both_arms" not in plain


def test_health_carries_the_model_card(client):
    card = client.get("/health").json()["model_card"]
    assert card["family"] == "xgb_cox" and card["n"] == 300 and card["events"] > 0
    assert card["trained_on"] == "not recorded" and not card["simulated"]  # saved without a card
    assert "not a randomised comparison" in card["limits"] and card["intended_use"]


def test_docs_load_their_scripts_from_the_app(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), asset  # nothing from a CDN
        resp = client.get(asset)
        assert resp.status_code == 200 and len(resp.content) > 500, asset
    assert "SwaggerUIBundle" in client.get(next(a for a in assets if a.endswith(".js"))).text


def _keys(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _keys(v)
    elif isinstance(node, list):
        for v in node:
            yield from _keys(v)


def test_openapi_bounds_use_json_schema_keywords(client):
    spec = client.get("/openapi.json").json()
    props = spec["components"]["schemas"]["PatientIn"]["properties"]
    age = props["age"]["anyOf"][0]
    assert (age["minimum"], age["maximum"]) == (18, 110)
    pfs1 = props["pfs1_months"]["anyOf"][0]
    assert (pfs1["exclusiveMinimum"], pfs1["maximum"]) == (0, 600)
    assert not {"ge", "le", "gt", "lt"} & set(_keys(spec))


def test_each_request_is_logged(client, caplog):
    with caplog.at_level(logging.INFO, logger="rechallenge.access"):
        client.post("/score", json=patient(age=300))
        client.get("/health")
    lines = [r.getMessage() for r in caplog.records if r.name == "rechallenge.access"]
    assert any(re.search(r"POST /score 422 [0-9.]+ ms$", line) for line in lines), lines
    assert any(re.search(r"GET /health 200 [0-9.]+ ms$", line) for line in lines), lines


# ------------------------------------------------------------------ property: never a 500

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_value = st.one_of(_json, st.sampled_from(["male", "CIA", "PD", "<1%", "yes", "", "1"]),
                   st.floats(-1e3, 1e3), st.integers(-5, 200))


@st.composite
def _payloads(draw):
    kind = draw(st.sampled_from(["patient", "batch", "raw"]))
    if kind == "raw":
        return draw(_json)
    body = dict(EXAMPLE_PATIENT)
    for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=4, unique=True)):
        if draw(st.booleans()):
            body[key] = draw(_value)
        else:
            del body[key]
    if draw(st.booleans()):
        body[draw(st.text(min_size=1, max_size=6))] = draw(_value)
    return {"patients": [body, dict(EXAMPLE_PATIENT)]} if kind == "batch" else body


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_payloads())
def test_random_payloads_never_give_a_500(client, payload):
    resp = client.post("/score", content=json.dumps(payload), headers={"content-type": "application/json"})
    assert resp.status_code in (200, 422), resp.text
    body = resp.json()
    if resp.status_code == 422:
        assert body["errors"] and all(e["field"] for e in body["errors"])
    else:
        assert body["results"][0]["risk_group"] in RISK_GROUPS


@pytest.mark.slow
def test_serve_logs_each_request_and_stops_cleanly(model_dir, tmp_path):
    """`rechallenge serve`: one access-log line per request on stderr; Ctrl-C ends with a clean message."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    command = [sys.executable, "-m", "ml.cli", "serve", "--model", str(model_dir), "--port", str(port),
               "--ci-bootstrap", "0"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.3)
        httpx.post(f"http://127.0.0.1:{port}/score", json=patient(age=300), timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "model card" in out and "shut down cleanly" in " ".join(out.split())
    assert re.search(r"GET /health 200 [0-9.]+ ms", err) and re.search(r"POST /score 422 [0-9.]+ ms", err)
    assert "Traceback" not in err
