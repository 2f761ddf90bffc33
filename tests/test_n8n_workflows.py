"""docs/n8n/*.json: importable N8n workflow JSON whose HTTP Request nodes call routes the API really has."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from api import Settings, create_app

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / "docs" / "n8n").glob("*.json"))
HTTP = "n8n-nodes-base.httpRequest"
SCHEDULE = "n8n-nodes-base.scheduleTrigger"
CRON = re.compile(r"^[0-9*/,-]+ [0-9*/,-]+ [0-9*/,-]+ [0-9*/,-]+ [0-9*/,-]+$")
EXPR = re.compile(r"\{\{.*?\}\}")
ID = re.compile(r"^[A-Za-z0-9]{1,36}$")


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("openapi")
    app = create_app(Settings(_env_file=None, proxy_api_key="x", models_dir=tmp, state_db=tmp / "s.db"))
    return app.openapi()


def api_path(url: str) -> str:
    """`={{ $('Config').first().json.api_url }}/api/jobs/{{ $json.job_id }}` -> `/api/jobs/{}`."""
    assert url.startswith("="), f"url {url!r} should be an expression built on the configured base URL"
    i = url.find("/api/")
    assert i >= 0, f"no /api/ path in {url!r}"
    prefix = url[1:i]
    assert prefix.startswith("{{") and prefix.endswith("}}") and "api_url" in prefix, (
        f"the base URL of {url!r} should come from the Config node ({prefix!r})")
    path = url[i:].split("?", 1)[0]
    return EXPR.sub("{}", path)


def route_for(openapi: dict, path: str) -> tuple[str, dict] | None:
    for template, ops in openapi["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        concrete = path.replace("{}", "X")
        if re.match(pattern, concrete) and path.count("{}") == template.count("{"):
            return template, ops
    return None


def http_nodes(wf: dict) -> list[dict]:
    """HTTP Request nodes that call the API (a report node posts elsewhere, see below)."""
    return [n for n in wf["nodes"] if n["type"] == HTTP and not is_report(n)]


def is_report(node: dict) -> bool:
    return node["type"] == HTTP and node["parameters"]["url"].startswith("={{ $('Config').first().json.report_url }}")


def test_there_are_workflows():
    names = {p.name for p in WORKFLOWS}
    assert {"download-webhook-activate.json", "download-poll-activate.json", "cleanup-unused-models.json"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_valid_workflow_json(path):
    wf = load(path)
    assert isinstance(wf.get("id"), str) and ID.match(wf["id"]), "import:workflow needs an id"
    assert isinstance(wf.get("name"), str) and wf["name"].strip()
    assert isinstance(wf["nodes"], list) and wf["nodes"]
    assert isinstance(wf["connections"], dict)
    assert wf.get("settings", {}).get("executionOrder") == "v1"
    names = [n["name"] for n in wf["nodes"]]
    assert len(names) == len(set(names)), "node names must be unique"
    ids = [n["id"] for n in wf["nodes"]]
    assert len(ids) == len(set(ids)), "node ids must be unique"
    for n in wf["nodes"]:
        assert {"parameters", "id", "name", "type", "typeVersion", "position"} <= set(n), n.get("name")
        assert n["type"].startswith("n8n-nodes-base."), n["type"]
        assert isinstance(n["parameters"], dict)
        assert isinstance(n["position"], list) and len(n["position"]) == 2
    triggers = [n for n in wf["nodes"] if n["type"] == "n8n-nodes-base.manualTrigger"]
    assert len(triggers) == 1, "one Manual Trigger to start from"
    ids_of_wf = {load(p)["id"] for p in WORKFLOWS}
    assert len(ids_of_wf) == len(WORKFLOWS), "workflow ids must differ between files"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_connections_reference_existing_nodes(path):
    wf = load(path)
    names = {n["name"] for n in wf["nodes"]}
    reached = set()
    for source, outputs in wf["connections"].items():
        assert source in names, f"connection from unknown node {source!r}"
        for kind, lists in outputs.items():
            assert kind == "main"
            for targets in lists:
                for t in targets:
                    assert t["node"] in names, f"{source} -> unknown node {t['node']!r}"
                    assert t["type"] == "main" and isinstance(t["index"], int)
                    reached.add(t["node"])
    triggers = {n["name"] for n in wf["nodes"] if n["type"] in ("n8n-nodes-base.manualTrigger", SCHEDULE)}
    assert names - reached == triggers, f"nodes nothing leads to: {names - reached - triggers}"
    # every expression $('Node') refers to a node of this workflow
    for ref in re.findall(r"\$\('([^']+)'\)", json.dumps(wf)):
        assert ref in names, f"expression refers to unknown node {ref!r}"


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_templates_are_expressions(path):
    """N8n evaluates {{ }} only in values that start with '='; otherwise they are literal text."""
    for n in load(path)["nodes"]:
        for s in _strings(n["parameters"]):
            if "{{" in s:
                assert s.startswith("="), f"{n['name']}: {s!r} is not an expression (prefix '=')"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_http_nodes_call_real_routes(path, openapi):
    wf = load(path)
    nodes = http_nodes(wf)
    assert nodes, "no HTTP Request node"
    for n in nodes:
        p = n["parameters"]
        assert n["typeVersion"] == 4.2, n["name"]
        method = p.get("method", "GET").lower()
        path_ = api_path(p["url"])
        found = route_for(openapi, path_)
        assert found, f"{n['name']}: {path_} is not a route of the API"
        template, ops = found
        assert method in ops, f"{n['name']}: {method.upper()} {template} not allowed (has {sorted(ops)})"
        accepted = {q["name"] for q in ops[method].get("parameters", []) if q["in"] == "query"}
        for q in p.get("queryParameters", {}).get("parameters", []) if p.get("sendQuery") else []:
            assert q["name"] in accepted, f"{n['name']}: {method.upper()} {template} has no query parameter {q['name']}"
        if template == "/api/active-model" and method == "put" or template == "/api/download-model":
            assert "model_id" in {q["name"] for q in p["queryParameters"]["parameters"]}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_http_nodes_authenticate_and_retry(path):
    for n in http_nodes(load(path)):
        p = n["parameters"]
        assert p["authentication"] == "genericCredentialType" and p["genericAuthType"] == "httpHeaderAuth", n["name"]
        assert set(n["credentials"]) == {"httpHeaderAuth"} and n["credentials"]["httpHeaderAuth"]["name"]
        assert n.get("retryOnFail") is True and n.get("maxTries", 3) >= 2, n["name"]


def test_status_branching_uses_never_error():
    """Nodes whose status code is branched on keep running on 4xx/5xx and return the full response."""
    for path in WORKFLOWS:
        wf = load(path)
        for n in http_nodes(wf):
            if n["parameters"]["method"] in ("POST", "PUT", "DELETE"):
                resp = n["parameters"]["options"]["response"]["response"]
                assert resp == {"fullResponse": True, "neverError": True}, (path.name, n["name"])


def test_webhook_workflow_waits_on_resume_url():
    wf = load(ROOT / "docs/n8n/download-webhook-activate.json")
    by_name = {n["name"]: n for n in wf["nodes"]}
    queue = by_name["Queue download"]["parameters"]["queryParameters"]["parameters"]
    assert {"name": "callback_url", "value": "={{ $execution.resumeUrl }}"} in queue
    waits = [n for n in wf["nodes"] if n["type"] == "n8n-nodes-base.wait"]
    assert waits and all(w["parameters"]["resume"] == "webhook" and w["parameters"]["httpMethod"] == "POST"
                         and w.get("webhookId") for w in waits)
    # download -> wait -> ... -> PUT /api/active-model
    order, seen, todo = [], set(), ["Start"]
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        for targets in wf["connections"].get(name, {}).get("main", []):
            todo += [t["node"] for t in targets]
    assert order.index("Queue download") < order.index("Wait for download webhook") < order.index("Activate model")
    assert by_name["Activate model"]["parameters"]["method"] == "PUT"


def test_polling_workflow_loops():
    wf = load(ROOT / "docs/n8n/download-poll-activate.json")
    conns = wf["connections"]
    nxt = {s: [t["node"] for ts in o["main"] for t in ts] for s, o in conns.items()}
    assert "Download: wait" in nxt["Download: still running?"], "the IF leads back to the Wait node"
    assert nxt["Download: wait"] == ["Download: get job"]
    types = {n["name"]: n["type"] for n in wf["nodes"]}
    assert types["Download: wait"] == "n8n-nodes-base.wait" and types["Download: complete?"] == "n8n-nodes-base.if"


def test_cleanup_workflow_lists_filters_deletes():
    wf = load(ROOT / "docs/n8n/cleanup-unused-models.json")
    by_name = {n["name"]: n for n in wf["nodes"]}
    assert by_name["List models"]["parameters"]["method"] == "GET"
    assert by_name["Delete model"]["parameters"]["method"] == "DELETE"
    text = json.dumps(by_name["Unused for N days"]["parameters"])
    assert "$json.active" in text and "$json.last_modified" in text and "keep_days" in text


def test_fit_check_workflow_dry_runs_before_it_downloads():
    wf = load(ROOT / "docs/n8n/fit-check-then-download.json")
    by_name = {n["name"]: n for n in wf["nodes"]}
    dry = {q["name"]: q["value"] for q in by_name["Dry run"]["parameters"]["queryParameters"]["parameters"]}
    assert dry["dry_run"] == "true" and "model_id" in dry and "include" in dry
    queue = {q["name"] for q in by_name["Queue download"]["parameters"]["queryParameters"]["parameters"]}
    assert "dry_run" not in queue
    nxt = {s: [[t["node"] for t in ts] for ts in o["main"]] for s, o in wf["connections"].items()}
    assert nxt["Dry run"] == [["Fits GPU and disk?"]]
    assert nxt["Fits GPU and disk?"] == [["Queue download"], ["Does not fit"]]
    test = json.dumps(by_name["Fits GPU and disk?"]["parameters"])
    assert "$json.body.fit.verdict" in test and "$json.body.disk.verdict" in test
    assert by_name["Does not fit"]["type"] == "n8n-nodes-base.stopAndError"


def test_office_hours_workflow_lowers_the_limit_by_schedule():
    wf = load(ROOT / "docs/n8n/office-hours-bandwidth.json")
    by_name = {n["name"]: n for n in wf["nodes"]}
    crons = [i["expression"] for n in wf["nodes"] if n["type"] == SCHEDULE
             for i in n["parameters"]["rule"]["interval"] if i["field"] == "cronExpression"]
    assert sorted(crons) == ["0 19 * * 1-5", "0 8 * * 1-5"] and all(CRON.match(c) for c in crons)
    put = by_name["Set bandwidth limit"]["parameters"]
    assert put["method"] == "PUT" and api_path(put["url"]) == "/api/limits"
    assert put["queryParameters"]["parameters"] == [{"name": "bandwidth_bps", "value": "={{ $json.bandwidth }}"}]
    pick = json.dumps(by_name["Pick the limit"]["parameters"])
    assert "$now.hour" in pick and "$now.weekday" in pick and "office_limit" in pick and "night_limit" in pick
    nxt = {s: [t["node"] for ts in o["main"] for t in ts] for s, o in wf["connections"].items()}
    assert nxt["Office hours begin"] == nxt["Office hours end"] == nxt["Start"] == ["Config"]
    assert nxt["Applied?"] == ["Limit applied", "Limit refused"]


def test_fleet_switch_workflow_posts_the_per_node_result_without_the_api_key():
    wf = load(ROOT / "docs/n8n/fleet-switch-report.json")
    by_name = {n["name"]: n for n in wf["nodes"]}
    switch = by_name["Fleet switch"]["parameters"]
    assert switch["method"] == "PUT" and api_path(switch["url"]) == "/api/fleet/active-model"
    reports = [n for n in wf["nodes"] if is_report(n)]
    assert len(reports) == 1 and "credentials" not in reports[0] and "authentication" not in reports[0]["parameters"]
    body = reports[0]["parameters"]["jsonBody"]
    assert all(k in body for k in ("rolled_back", "reason", "nodes", "$json.result.tasks"))
    nxt = {s: [t["node"] for ts in o["main"] for t in ts] for s, o in wf["connections"].items()}
    assert nxt["Switch: final?"] == [reports[0]["name"], "Switch: wait"]
