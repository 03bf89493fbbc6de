"""docker-compose.yml wires the same services and settings as the native launcher."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from generator_service.settings import GeneratorSettings
from retriever_service.settings import RetrieverSettings
from shared import launcher

ROOT = Path(__file__).parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PREFIXES = {"KGRAG_RETRIEVER_": RetrieverSettings, "KGRAG_GENERATOR_": GeneratorSettings}
OTHER_VARS = {"QDRANT_URL", "QDRANT_API_KEY", "KGRAG_METAQA_DIR"}  # RetrieverSettings aliases; shared.qa_data


def test_every_kgrag_variable_is_a_setting():
    for name, service in SERVICES.items():
        if name == "qdrant":  # the Qdrant server's own settings
            continue
        for var in service.get("environment", {}):
            prefix = next((p for p in PREFIXES if var.startswith(p)), None)
            assert prefix or var in OTHER_VARS, f"{name}: {var}"
            if prefix:
                assert var[len(prefix) :].lower() in PREFIXES[prefix].model_fields, f"{name}: {var}"


def test_same_processes_and_ports_as_the_launcher():
    args = launcher._parser().parse_args([])
    assert SERVICES["retriever"]["command"] == ["python", "-m", "retriever_service"]
    assert SERVICES["generator"]["command"] == ["python", "-m", "generator_service"]
    assert SERVICES["retriever"]["environment"]["KGRAG_RETRIEVER_PORT"] == str(args.retriever_port)
    assert SERVICES["generator"]["environment"]["KGRAG_GENERATOR_PORT"] == str(args.generator_port)
    assert (
        SERVICES["generator"]["environment"]["KGRAG_GENERATOR_RETRIEVER_URL"]
        == f"http://retriever:{args.retriever_port}"
    )
    assert RetrieverSettings().port == args.retriever_port and GeneratorSettings().port == args.generator_port


def test_start_order_and_health():
    assert SERVICES["retriever"]["depends_on"]["ingest"]["condition"] == "service_completed_successfully"
    assert SERVICES["retriever"]["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert SERVICES["generator"]["depends_on"]["retriever"]["condition"] == "service_healthy"
    assert "curl" not in " ".join(SERVICES["qdrant"]["healthcheck"]["test"])  # the qdrant image has none
    assert ":" in SERVICES["qdrant"]["image"] and not SERVICES["qdrant"]["image"].endswith(":latest")
    assert SERVICES["distill"]["profiles"] == ["distill"]
    for name in ("qdrant", "retriever", "generator"):
        assert SERVICES[name]["deploy"]["resources"]["limits"]["memory"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
def test_compose_file_is_valid():
    subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], check=True)
