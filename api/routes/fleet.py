"""Fleet routes (ORCHESTRATOR=swarm): the nodes, and downloads, switches and deletes on all of them."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from ..deps import CallbackPolicyDep, FleetDep
from ..validation import validate_revision
from ._params import CallbackQ, Fields, FlagQ, ModelIdQ, RevisionQ
from .schemas import ERRORS, DownloadBody, Job, ModelBody

router = APIRouter(prefix="/api/fleet", tags=["fleet"])


@router.get("/nodes", summary="Swarm nodes, where the inference service runs, each node's cached models",
            responses=ERRORS)
def nodes(fleet: FleetDep,
          refresh: Annotated[bool | None, Query(description="list the nodes' caches now, not from the cache")]
          = None) -> dict:
    return fleet.nodes(bool(refresh))


@router.post("/download-model", summary="Download a model on every node (202 with a fleet job)",
             status_code=202, response_model=Job, responses={200: {"model": Job, "description": "The running job"},
                                                             **ERRORS})
def download(fleet: FleetDep, policy: CallbackPolicyDep, model_id: ModelIdQ = None, revision: RevisionQ = None,
             callback_url: CallbackQ = None, body: Annotated[DownloadBody | None, Body()] = None) -> JSONResponse:
    f = Fields(body)
    job, created = fleet.request_download(f.model_id(model_id), validate_revision(f.text("revision", revision)),
                                          f.callback_url(callback_url, policy))
    return JSONResponse(job, status_code=202 if created else 200)


@router.put("/active-model", summary="Rolling switch of the inference service (202 with a fleet job)",
            status_code=202, response_model=Job, responses=ERRORS)
def switch(fleet: FleetDep, policy: CallbackPolicyDep, model_id: ModelIdQ = None, callback_url: CallbackQ = None,
           body: Annotated[ModelBody | None, Body()] = None) -> dict:
    f = Fields(body)
    return fleet.request_switch(f.model_id(model_id), f.callback_url(callback_url, policy))


@router.delete("/delete-model", summary="Delete a model on every node (refuses the service's model)",
               status_code=202, response_model=Job, responses=ERRORS)
def delete(fleet: FleetDep, policy: CallbackPolicyDep, model_id: ModelIdQ = None, force: FlagQ = None,
           callback_url: CallbackQ = None, body: Annotated[ModelBody | None, Body()] = None) -> dict:
    f = Fields(body)
    return fleet.request_delete(f.model_id(model_id), f.flag("force", force, False),
                                f.callback_url(callback_url, policy))
