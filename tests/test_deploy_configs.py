"""The multi-node deployment's files (deploy/multi-node) pass Dagster's own config validation: the
instance yaml through Dagster's instance schema and the run launcher's own schema, then loaded as a
real DagsterInstance on the test Postgres; the run config against the real `sweep_k` job; the
workspace through Dagster's workspace schema. A misspelled key in any of them is refused. The
Kubernetes manifests agree with those files (names, ports, image)."""

import copy
import os
from pathlib import Path

import pytest
import yaml

pytest.importorskip("dagster_k8s", reason="dagster-k8s is not installed: pip install -e '.[deploy]' (it is in the dev extra)")

from dagster import validate_run_config  # noqa: E402
from dagster._config import process_config, resolve_to_config_type  # noqa: E402
from dagster._core.errors import DagsterInvalidConfigError  # noqa: E402
from dagster._core.instance.config import dagster_instance_config  # noqa: E402
from dagster._core.workspace.config_schema import ensure_workspace_config  # noqa: E402
from dagster._serdes import ConfigurableClassData, class_from_code_pointer  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "multi-node"
KUBECONFIG = {  # a cluster nobody listens on: the launcher builds its clients without calling the API
    "apiVersion": "v1", "kind": "Config", "current-context": "none",
    "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
    "users": [{"name": "none", "user": {"token": "unused"}}],
    "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
}


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def manifests() -> dict[tuple[str, str], dict]:
    """(kind, name) -> document of every manifest kustomization.yaml lists."""
    found = {}
    for name in load("kustomization.yaml")["resources"]:
        for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def validate_instance(config: dict, tmp_path: Path) -> dict:
    """Dagster's instance validation of `config`, then each configurable class's own schema (the run
    launcher's, the run coordinator's), as the instance does when it builds them."""
    folder = tmp_path / "instance"
    folder.mkdir(exist_ok=True)
    (folder / "dagster.yaml").write_text(yaml.safe_dump(config))
    checked, _ = dagster_instance_config(str(folder))
    for section in ("run_launcher", "run_coordinator"):
        data = ConfigurableClassData(checked[section]["module"], checked[section]["class"], "{}")  # maps dagster.core
        klass = class_from_code_pointer(data.module_name, data.class_name)
        result = process_config(resolve_to_config_type(klass.config_type()), checked[section].get("config") or {})
        if not result.success:
            raise DagsterInvalidConfigError(f"Errors in the {section} config", result.errors, checked[section]["config"])
    return checked


def test_the_instance_yaml_loads_as_a_dagster_instance(tmp_path, dagster_database_url, monkeypatch):
    from dagster import DagsterInstance
    from dagster._core.instance.config import PoolGranularity
    from dagster_k8s import K8sRunLauncher

    config = load("dagster.yaml")
    checked = validate_instance(config, tmp_path)
    assert checked["run_launcher"]["class"] == "K8sRunLauncher"

    # As a run pod loads it, but outside a cluster: the kube config from a file instead of the pod's.
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(KUBECONFIG))
    config["run_launcher"]["config"].update(load_incluster_config=False, kubeconfig_file=str(tmp_path / "kubeconfig"))
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("STUDYLLM_DAGSTER_DATABASE_URL", dagster_database_url)
    instance = DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_launcher, K8sRunLauncher)
        assert instance.run_launcher.job_namespace == "studyllm"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.pool_granularity == PoolGranularity.RUN
        assert concurrency.pool_config.default_pool_limit == 4
        limits = {limit["key"]: limit["limit"] for limit in concurrency.run_queue_config.tag_concurrency_limits}
        assert limits == {"dagster/partition": 1, "dagster/asset_partition_range_start": 1, "dagster/partition/dataset": 8}
        assert instance.get_runs_count() >= 0  # the storage answers from the test Postgres
    finally:
        instance.dispose()


def test_the_run_config_is_valid_for_the_sweep_job():
    from studyllm_pipeline.definitions import defs

    resolved = validate_run_config(defs.resolve_job_def("sweep_k"), load("run_config.yaml"))
    assert resolved["resources"]["embedder"]["config"]["requests_per_minute"] == 600
    assert resolved["ops"]["sweep"]["config"]["n_restarts"] == 3


def test_the_workspace_names_the_code_servers_service():
    workspace = load("workspace.yaml")
    ensure_workspace_config(workspace, str(DEPLOY / "workspace.yaml"))
    server = workspace["load_from"][0]["grpc_server"]
    found = manifests()
    service = found[("Service", server["host"])]
    assert service["spec"]["ports"][0]["port"] == server["port"]
    command = found[("Deployment", server["host"])]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("-p") + 1] == str(server["port"])
    assert command[command.index("--location-name") + 1] == server["location_name"]


def set_key(tree: dict, path: tuple, new_name: str) -> dict:
    """A copy of `tree` with the key at `path` renamed to `new_name` (a misspelling)."""
    tree = copy.deepcopy(tree)
    node = tree
    for part in path[:-1]:
        node = node[part]
    node[new_name] = node.pop(path[-1])
    return tree


@pytest.mark.parametrize(("path", "typo"), [
    (("storage", "postgres", "postgres_url"), "postgres_ur"),
    (("run_launcher", "config", "service_account_name"), "service_acount_name"),
    (("run_launcher", "config", "run_k8s_config", "container_config"), "container_confg"),
    (("run_coordinator", "config", "dequeue_interval_seconds"), "dequeue_interval_second"),
    (("concurrency", "runs", "max_concurrent_runs"), "max_concurent_runs"),
    (("concurrency", "pools", "default_limit"), "defualt_limit"),
    (("run_retries", "max_retries"), "max_retry"),
])
def test_a_misspelled_instance_key_is_refused(tmp_path, path, typo):
    with pytest.raises(DagsterInvalidConfigError):
        validate_instance(set_key(load("dagster.yaml"), path, typo), tmp_path)


@pytest.mark.parametrize(("path", "typo"), [
    (("resources", "embedder", "config", "requests_per_minute"), "requests_per_minut"),
    (("ops", "sweep", "config", "n_restarts"), "n_restart"),
    (("execution", "config", "retries"), "retry"),
])
def test_a_misspelled_run_config_key_is_refused(path, typo):
    from studyllm_pipeline.definitions import defs

    with pytest.raises(DagsterInvalidConfigError):
        validate_run_config(defs.resolve_job_def("sweep_k"), set_key(load("run_config.yaml"), path, typo))


def test_a_misspelled_workspace_key_is_refused():
    with pytest.raises(DagsterInvalidConfigError):
        ensure_workspace_config(set_key(load("workspace.yaml"), ("load_from",), "load_form"), "workspace.yaml")
    bad = load("workspace.yaml")
    bad["load_from"][0]["grpc_server"]["prot"] = bad["load_from"][0]["grpc_server"].pop("port")
    with pytest.raises(DagsterInvalidConfigError):
        ensure_workspace_config(bad, "workspace.yaml")


def test_the_manifests_give_what_the_instance_names():
    """Every ConfigMap, Secret, claim, service account and image the launcher and the Deployments name
    is made by the kustomization (or is the one Secret it says to create), with one image throughout."""
    launcher = load("dagster.yaml")["run_launcher"]["config"]
    kustomization = load("kustomization.yaml")
    found = manifests()
    config_maps = {entry["name"]: entry for entry in kustomization["configMapGenerator"]}
    assert launcher["instance_config_map"] in config_maps
    assert set(config_maps[launcher["instance_config_map"]]["files"]) == {"dagster.yaml", "workspace.yaml"}
    assert set(launcher["env_config_maps"]) <= set(config_maps)
    assert launcher["env_secrets"] == ["studyllm-secrets"] and "studyllm-secrets" in (DEPLOY / "kustomization.yaml").read_text()
    assert ("ServiceAccount", launcher["service_account_name"]) in found
    for volume in launcher["volumes"]:
        assert ("PersistentVolumeClaim", volume["persistent_volume_claim"]["claim_name"]) in found
    settings = dict(item.split("=", 1) for item in config_maps["studyllm-settings"]["literals"])
    assert settings["STUDYLLM_SWEEP_KS_PER_RUN"] == "1" and settings["STUDYLLM_ARTIFACTS_URL"].startswith("s3://")
    images = set()
    for (kind, name), doc in found.items():
        if kind in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                images.add(container["image"])
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                if "DAGSTER_CURRENT_IMAGE" in env:  # the image of the runs is the code server's
                    assert env["DAGSTER_CURRENT_IMAGE"] == container["image"]
    assert len(images) == 1, images
    assert os.path.isfile(DEPLOY / "run_config.yaml")
