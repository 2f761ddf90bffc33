"""Start-up recovery of a switch the API did not live to finish.

A switch renames the running inference container to `<name>-backup-<id12>` before it creates the
new one (docs/containers.md). If the process dies before the end, that backup is left behind and
the switch job is marked failed (`interrupted`) on restart. What the operator used to do by hand
(`docker rm -f <name>; docker rename <name>-backup-… <name>; docker start <name>`), the service
does at start-up, and it puts DEFAULT_MODEL (with DEFAULT_MODEL_VARIANT and INFERENCE_ARGS) in the
.env file back to what the restored container runs, so the box is as it was before the switch, as
after any failed switch.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import docker.errors

from . import envfile
from .containers import ContainerManager

log = logging.getLogger(__name__)
_BACKUP = re.compile(r"(?P<name>.+)-backup-(?P<id>[0-9a-f]{12})")


def _env_value(container: dict, key: str) -> str | None:
    for item in (container.get("Config") or {}).get("Env") or []:
        k, _, v = item.partition("=")
        if k == key:
            return v
    return None


def _backups(api, name: str) -> list[dict]:
    """Containers named exactly `<name>-backup-<first 12 of their own id>`, newest first."""
    found = []
    for c in api.containers(all=True, filters={"name": f"{name}-backup-"}):
        for n in c.get("Names") or []:
            m = _BACKUP.fullmatch(n.lstrip("/"))
            if m and m["name"] == name and c["Id"].startswith(m["id"]):
                found.append({**c, "BackupName": n.lstrip("/")})
    return sorted(found, key=lambda c: c.get("Created") or 0, reverse=True)


def _restore(api, name: str, backup: dict) -> None:
    try:
        current = api.inspect_container(name)
    except docker.errors.NotFound:
        current = None
    if current is not None and current["Id"] != backup["Id"]:
        api.remove_container(current["Id"], v=True, force=True)   # the half-made new container
    api.rename(backup["Id"], name)
    api.start(backup["Id"])


def recover_interrupted_switches(containers: ContainerManager, env_path: Path) -> list[dict]:
    """Restore every managed container a dead switch left as a backup. Never raises."""
    if not containers.available():
        return []
    recovered = []
    for name in containers.managed_names:
        try:
            backups = _backups(containers.api, name)
            if not backups:
                continue
            backup = backups[0]
            _restore(containers.api, name, backup)
            model = _env_value(containers.api.inspect_container(backup["Id"]), envfile.DEFAULT_KEY)
            record = {"name": name, "container_id": backup["Id"], "backup_name": backup["BackupName"],
                      "model_id": model, "older_backups": [b["BackupName"] for b in backups[1:]]}
            log.warning("container %s: restored %s left by an interrupted switch", name, backup["BackupName"])
            if model and envfile.read_value(env_path) != model:
                # The model, its variant and its serve arguments go back together, as after any failed switch.
                values = {envfile.DEFAULT_KEY: model}
                restored = containers.api.inspect_container(backup["Id"])
                for key in (envfile.ARGS_KEY, envfile.VARIANT_KEY):
                    value = _env_value(restored, key)
                    if value or envfile.read_value(env_path, key) is not None:
                        values[key] = value or ""
                envfile.set_values(env_path, values)
                log.warning("%s: %s set back to %s, the model %s runs", env_path, envfile.DEFAULT_KEY, model, name)
            recovered.append(record)
        except Exception:  # noqa: BLE001 - start-up goes on; the backup is still there for a person
            log.exception("container %s: could not recover the backup of an interrupted switch", name)
    return recovered
