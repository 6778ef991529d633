"""What can be checked of the docker-compose deployment without a Docker engine (none runs here):
files it mounts exist, the worker's settings parse, Prometheus accepts its configuration, and the
Grafana provisioning and dashboard agree on the datasource."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from streams.settings import Settings

COMPOSE = yaml.safe_load(Path("docker-compose.yml").read_text())


def test_every_bind_mount_and_build_context_exists():
    services = COMPOSE["services"]
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert Path(source).exists(), f"{name} mounts missing {source}"
    assert Path("Dockerfile").is_file()
    assert {"kafka", "milvus", "etcd", "minio", "prometheus", "grafana", "worker", "replay"} <= set(services)


def test_worker_settings_parse_and_name_the_compose_services():
    env = {k: str(v) for k, v in COMPOSE["services"]["worker"]["environment"].items()}
    s = Settings.from_env(env)
    assert not s.embedded and not s.tansu  # Apache Kafka: none of the Tansu workarounds
    assert s.kafka_bootstrap.split(":")[0] in COMPOSE["services"]
    assert s.milvus_uri.split("//")[1].split(":")[0] in COMPOSE["services"]
    assert s.web_host == "0.0.0.0"  # Prometheus scrapes each replica from the compose network
    # Each replica advertises its own address (its container's host name), not the wildcard: replicas
    # proxy a user's requests to the owner of the user's partition there.
    assert s.advertised_host not in ("0.0.0.0", "::", "") and s.advertised_host == socket.gethostname()


def test_prometheus_config_is_valid_and_scrapes_the_worker_port():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: `make test` installs Debian's prometheus package")
    r = subprocess.run([promtool, "check", "config", "ops/prometheus/prometheus.yml"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    [job] = yaml.safe_load(Path("ops/prometheus/prometheus.yml").read_text())["scrape_configs"]
    assert job["dns_sd_configs"][0]["names"] == ["worker"] and job["dns_sd_configs"][0]["port"] == Settings().web_port


def test_dashboard_panels_use_the_provisioned_datasource():
    [ds] = yaml.safe_load(Path("ops/grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    dashboard = json.loads(Path("ops/grafana/dashboards/interest-updater.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
