"""The Dockerfile, without a Docker engine: its instructions are read and checked, and the
build step it runs (scripts/build-release.sh) is run here.

The real run of scripts/build-release.sh uses BUILD_PROFILE=dev, a debug build into a temporary
OUT_DIR that shares <repo>/target with `cargo build`: after the test command's own
`cargo build --locked` it is a no-op compile, so the script's logic (profile, target dir, output
copy, --version smoke test) is exercised in seconds. It runs when target/debug/portcullis exists
(a debug tree is there to reuse), or always with BUILD_RELEASE_TEST=1, and never with
BUILD_RELEASE_TEST=0. The release profile itself is what `docker build` runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from chartlib import CHART_DIR, CLIENT_SECRET, COOKIE_SECRET, MINIMAL, NAMESPACE, RELEASE, ROOT, helm

DOCKERFILE = ROOT / "Dockerfile"
SCRIPT = ROOT / "scripts" / "build-release.sh"
PORTS = {4180, 4181, 4182}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def args() -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest)


def image_of(stage: list[tuple[str, str]]) -> str:
    ref = stage[0][1].split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: args()[m[1]], ref)


def test_two_stages_pinned_builder_distroless_runtime():
    builder, runtime = stages()
    assert re.fullmatch(r"rust:\d+\.\d+(\.\d+)?-slim-bookworm", image_of(builder)), image_of(builder)
    assert builder[0][1].split()[-1] == "builder"
    assert image_of(runtime) == "gcr.io/distroless/cc-debian12:nonroot"


def test_builder_toolchain_satisfies_rust_version():
    (builder, _) = stages()
    docker_rust = tuple(int(x) for x in re.match(r"rust:(\d+)\.(\d+)", image_of(builder)).groups())
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    needed = tuple(int(x) for x in cargo["package"]["rust-version"].split(".")[:2])
    assert docker_rust >= needed


def test_builder_runs_the_shared_build_script():
    builder, runtime = stages()
    runs = [rest for word, rest in builder if word == "RUN"]
    assert len(runs) == 1 and re.search(r"(^|\s)scripts/build-release\.sh /out$", runs[0]), runs
    copies = [rest for word, rest in runtime if word == "COPY"]
    assert any("--from=builder" in c and c.split()[-2:] == ["/out/portcullis", "/usr/local/bin/portcullis"]
               for c in copies), copies


def test_runtime_is_non_root_and_exposes_the_three_ports():
    _, runtime = stages()
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] in {"65532", "nonroot"}
    exposed = {int(p.split("/")[0]) for word, rest in runtime if word == "EXPOSE" for p in rest.split()}
    assert exposed == PORTS
    entry = [json.loads(rest) for word, rest in runtime if word == "ENTRYPOINT"]
    cmd = [json.loads(rest) for word, rest in runtime if word == "CMD"]
    assert entry == [["/usr/local/bin/portcullis"]]
    assert cmd == [["serve", "--config", "/etc/portcullis/portcullis.toml"]]


def test_image_matches_the_chart():
    """The chart's pod runs what the image provides: uid, ports, config path, args."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532 == values["securityContext"]["runAsUser"]
    assert set(values["ports"].values()) == PORTS
    with helm.Chart.load(str(CHART_DIR)) as chart:
        files = chart.render(MINIMAL, name=RELEASE, namespace=NAMESPACE)
    deployment = yaml.safe_load(next(v for k, v in files.items() if k.endswith("deployment.yaml")))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    _, runtime = stages()
    cmd = next(json.loads(rest) for word, rest in runtime if word == "CMD")
    assert container["args"] == cmd
    chart_meta = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    assert chart_meta["appVersion"] == version
    labels = " ".join(rest for word, rest in runtime if word == "LABEL")
    assert f'org.opencontainers.image.version="{version}"' in labels


def test_no_secrets_baked_in():
    for word, rest in instructions():
        if word in {"ENV", "ARG", "LABEL"}:
            assert not re.search(r"(?i)secret|password|token|private|credential", rest), (word, rest)
        if word in {"ADD"}:
            pytest.fail(f"ADD fetches or unpacks implicitly; use COPY: {rest}")
    for s in (CLIENT_SECRET, COOKIE_SECRET):
        assert s not in DOCKERFILE.read_text()


def test_dockerignore_keeps_the_context_small():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for needed in [".git", ".venv", "dist"]:
        assert needed in ignored, needed
    assert {"target", "**/target"} & ignored and {"node_modules", "**/node_modules"} & ignored
    # What the build needs must stay in the context.
    for kept in ["src", "Cargo.toml", "Cargo.lock", "templates", "scripts"]:
        assert kept not in ignored and f"{kept}/" not in ignored


def test_build_script_is_valid_bash_and_builds_locked_release():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    assert os.access(SCRIPT, os.X_OK)
    text = SCRIPT.read_text()
    assert 'release) profile_args=(--release)' in text
    assert re.search(r'"\$CARGO" build "\$\{profile_args\[@\]\}" --locked "\$\{feature_args\[@\]\}" --bin portcullis', text)
    # The image exports traces when configured: built with the otlp feature unless told not to.
    assert 'FEATURES="${FEATURES-otlp}"' in text
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG FEATURES=otlp" in dockerfile and 'FEATURES="${FEATURES}" scripts/build-release.sh' in dockerfile


def _should_build() -> str | None:
    """None to run the real script, else the reason to skip."""
    flag = os.environ.get("BUILD_RELEASE_TEST", "")
    if flag == "0":
        return "BUILD_RELEASE_TEST=0"
    if not shutil.which("cargo"):
        return "no cargo"
    if flag != "1" and not (ROOT / "target" / "debug" / "portcullis").is_file():
        return "no debug build to reuse (cargo build first, or BUILD_RELEASE_TEST=1)"
    return None


def test_build_script_produces_a_working_binary(tmp_path):
    reason = _should_build()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_")}
    # relative: from the repo root; no features, so `cargo build`'s artifacts are reused
    env.update(BUILD_PROFILE="dev", CARGO_TARGET_DIR="target", FEATURES="")
    result = subprocess.run([str(SCRIPT), str(out)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    binary = out / "portcullis"
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert "cargo build --profile dev --locked --bin portcullis" in result.stdout
    assert f"target dir {ROOT / 'target'}" in result.stdout
    assert not list(out.glob(".portcullis.tmp"))
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("portcullis ")
    # The copied binary accepts the chart's rendered configuration, as the image would.
    with helm.Chart.load(str(CHART_DIR)) as chart:
        files = chart.render(MINIMAL, name=RELEASE, namespace=NAMESPACE)
    configmap = yaml.safe_load(next(v for k, v in files.items() if k.endswith("configmap.yaml")))
    config = tmp_path / "portcullis.toml"
    config.write_text(configmap["data"]["portcullis.toml"])
    check = subprocess.run(
        [str(binary), "check-config", "--config", str(config)],
        env={"PATH": "/usr/bin:/bin", "PORTCULLIS_OIDC__CLIENT_SECRET": CLIENT_SECRET,
             "PORTCULLIS_COOKIE__SECRET": COOKIE_SECRET},
        capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def test_build_script_rejects_extra_arguments(tmp_path):
    result = subprocess.run([str(SCRIPT), str(tmp_path / "a"), "b"], capture_output=True, text=True)
    assert result.returncode != 0 and "usage" in result.stderr
