from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ..deps import ContainersDep
from .schemas import ERRORS, Container

router = APIRouter(prefix="/api/containers", tags=["containers"])
Name = Annotated[str, Path(max_length=128, description="a name from MANAGED_CONTAINERS")]


@router.get("", summary="The managed containers", response_model=list[Container], responses=ERRORS)
def list_containers(containers: ContainersDep) -> list[dict]:
    return containers.list()


@router.post("/{name}/restart", summary="Restart a managed container", response_model=Container,
             responses=ERRORS)
def restart(containers: ContainersDep, name: Name) -> dict:
    return containers.restart(name)


@router.post("/{name}/start", summary="Start a managed container", response_model=Container, responses=ERRORS)
def start(containers: ContainersDep, name: Name) -> dict:
    return containers.start(name)


@router.post("/{name}/stop", summary="Stop a managed container", response_model=Container, responses=ERRORS)
def stop(containers: ContainersDep, name: Name) -> dict:
    return containers.stop(name)


@router.get("/{name}/logs", summary="The last lines of a managed container's log", responses=ERRORS)
def logs(containers: ContainersDep, name: Name, tail: Annotated[int, Query(ge=1, le=10000)] = 200) -> dict:
    return {"name": name, "lines": containers.logs(name, tail)}
