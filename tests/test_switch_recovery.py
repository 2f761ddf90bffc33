"""A switch cut short by the API's death leaves `<name>-backup-<id12>`: the next start restores it
(issue 8, item 15), against the real Docker engine."""
from __future__ import annotations

import uuid

import pytest

from . import docker_support as ds


@pytest.fixture
def run(engine):
    run_id = uuid.uuid4().hex[:10]
    yield run_id
    ds.remove_test_containers(run_id)


def _crash_mid_switch(engine, name: str, run_id: str, *, with_new: bool, env: dict | None = None) -> str:
    """The state a switch leaves when the process dies after renaming the old container (and,
    with_new, after creating the new one): returns the old container's id."""
    old = ds.run_test_container(name, model="org/old", port=ds.free_port(), run_id=run_id, env=env)
    ds.wait_healthy(name)
    old.stop(timeout=5)
    engine.api.rename(old.id, f"{name}-backup-{old.id[:12]}")
    if with_new:
        ds.run_test_container(name, model="org/new", port=ds.free_port(), run_id=run_id)
    return old.id


@pytest.mark.parametrize("with_new", [True, False])
def test_start_up_restores_the_backup_of_an_interrupted_switch(engine, run, api_factory, tmp_path, with_new):
    name = ds.unique_name("llmbox-recover")
    old_id = _crash_mid_switch(engine, name, run, with_new=with_new)
    env_file = tmp_path / "recover.env"
    env_file.write_text("# box\nDEFAULT_MODEL=org/new\nOTHER=1\n")   # the switch had rewritten it

    api_factory(docker_host=None, inference_container=name, env_file=env_file)

    info = engine.api.inspect_container(name)
    assert info["Id"] == old_id, "the container under the name is the one from before the switch"
    ds.wait_healthy(name)
    names = [c.name for c in engine.containers.list(all=True, filters={"label": f"llmbox.test.run={run}"})]
    assert names == [name], names
    assert env_file.read_text() == "# box\nDEFAULT_MODEL=org/old\nOTHER=1\n"


def test_start_up_leaves_unrelated_containers_alone(engine, run, api_factory, tmp_path):
    name = ds.unique_name("llmbox-recover")
    other = ds.run_test_container(f"{name}x-backup-0123456789ab", model="org/x", port=ds.free_port(), run_id=run)
    env_file = tmp_path / "recover.env"
    env_file.write_text("DEFAULT_MODEL=org/keep\n")
    api_factory(docker_host=None, inference_container=name, env_file=env_file)
    assert engine.api.inspect_container(other.id)["Name"] == f"/{name}x-backup-0123456789ab"
    assert env_file.read_text() == "DEFAULT_MODEL=org/keep\n"


def test_start_up_puts_the_variant_back_with_the_model(engine, run, api_factory, tmp_path):
    """The old container served a GGUF variant; the dead switch had written a plain repo."""
    name = ds.unique_name("llmbox-recover")
    _crash_mid_switch(engine, name, run, with_new=False, env={"DEFAULT_MODEL_VARIANT": "Q4_K_M"})
    env_file = tmp_path / "recover.env"
    env_file.write_text("DEFAULT_MODEL=org/new\nDEFAULT_MODEL_VARIANT=\n")
    api_factory(docker_host=None, inference_container=name, env_file=env_file)
    assert env_file.read_text() == "DEFAULT_MODEL=org/old\nDEFAULT_MODEL_VARIANT=Q4_K_M\n"
