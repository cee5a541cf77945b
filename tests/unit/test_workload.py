"""The workload spec: image references, paths, inputs and the data volume they set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError as PydanticValidationError

from suangu.core.errors import ValidationError
from suangu.workload import ImageRef, WorkloadSpec, check_data_gb, parse_image

SHA = "ab" * 32


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("ubuntu", ImageRef("docker.io", "library/ubuntu", None, None)),
        ("ubuntu:24.04", ImageRef("docker.io", "library/ubuntu", "24.04", None)),
        ("lab/screen:1.2", ImageRef("docker.io", "lab/screen", "1.2", None)),
        (
            "registry.example:5000/lab/screen-v2:latest",
            ImageRef("registry.example:5000", "lab/screen-v2", "latest", None),
        ),
        ("localhost/x", ImageRef("localhost", "x", None, None)),
        (
            f"ghcr.io/org/img@sha256:{'a' * 64}",
            ImageRef("ghcr.io", "org/img", None, f"sha256:{'a' * 64}"),
        ),
        (
            f"quay.io/a/b_c.d__e:v1@sha256:{'0' * 64}",
            ImageRef("quay.io", "a/b_c.d__e", "v1", f"sha256:{'0' * 64}"),
        ),
    ],
)
def test_image_references_that_parse(text: str, want: ImageRef) -> None:
    assert parse_image(text) == want


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("Ubuntu", "lowercase"),
        ("lab//screen", "lowercase path components"),
        ("lab/screen:", "tag"),
        ("lab/screen:bad tag", "tag"),
        ("lab/screen@sha256:abc", "digest"),
        (f"lab/screen@sha256:{'A' * 64}", "64 lowercase"),
        ("-bad/x", "repository"),
        ("registry.example:port/x", "registry"),
        ("a" * 300, "longer than"),
    ],
)
def test_image_references_that_do_not(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_image(text)


def spec(**kw: object) -> WorkloadSpec:
    base: dict[str, object] = {"runtime": {"kind": "process", "command": ["true"]}}
    base.update(kw)
    return WorkloadSpec.model_validate(base)


def test_paths_stay_inside_the_work_directory() -> None:
    assert spec(outputs=["out/a.csv", "./b"]).outputs == ["out/a.csv", "b"]
    for bad in ("../x", "out/../../x", "/etc/passwd", ".", "~/x"):
        with pytest.raises(PydanticValidationError) as err:
            spec(outputs=[bad])
        assert err.value.errors()[0]["loc"] == ("outputs", 0)
    with pytest.raises(PydanticValidationError, match="leaves the work directory"):
        spec(runtime={"kind": "process", "command": ["x"], "files": {"../evil.py": ""}})


def test_inputs_secrets_and_the_data_volume() -> None:
    w = spec(
        inputs=[
            {"object": "do_" + "1" * 24, "sha256": SHA, "size": 1_500_000_000},
            {"uri": "https://data.example/ref.fa?x=1", "sha256": SHA, "size": 10},
        ],
        secret_env={"TOKEN": "s3cr3t"},
    )
    assert [i.staged_at for i in w.inputs] == [f"inputs/do_{'1' * 24}", "inputs/ref.fa"]
    assert w.input_bytes == 1_500_000_010 and w.data_gb == 2
    assert "s3cr3t" not in repr(w) and "s3cr3t" not in str(w.redacted())
    assert w.redacted()["secret_env"] == {"TOKEN": "***"}
    assert w.secrets() == {"TOKEN": "s3cr3t"}
    assert check_data_gb(w, None, "body.data_gb") == 2
    assert check_data_gb(w, 2, "body.data_gb") == 2
    with pytest.raises(ValidationError, match="1500000010 bytes") as err:
        check_data_gb(w, 1, "body.data_gb")
    assert err.value.field == "body.data_gb"
    assert spec().data_gb == 0


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"inputs": [{"sha256": SHA, "size": 1}]}, "exactly one of object"),
        ({"inputs": [{"object": "x", "sha256": SHA, "size": 1}]}, "pattern"),
        ({"inputs": [{"uri": "ftp://x/y", "sha256": SHA, "size": 1}]}, "pattern"),
        ({"inputs": [{"uri": "https://x/y", "sha256": "zz", "size": 1}]}, "pattern"),
        ({"inputs": [{"uri": "https://x/y", "sha256": SHA, "size": -1}]}, "greater"),
        (
            {
                "inputs": [
                    {"uri": "https://x/a", "sha256": SHA, "size": 1},
                    {"uri": "https://y/a", "sha256": SHA, "size": 1},
                ]
            },
            "both staged",
        ),
        ({"secret_env": {"SUANGU_X": "v"}}, "set by the agent"),
        ({"secret_env": {"1BAD": "v"}}, "not an environment variable"),
        ({"runtime": {"kind": "process", "command": []}}, "at least 1"),
        ({"runtime": {"kind": "vm", "command": ["x"]}}, "tag"),
        ({"runtime": {"kind": "container", "image": "Not Valid"}}, "image|lowercase"),
        ({"outputs": ["a", "a"]}, "twice"),
        ({"checkpoint": "maybe"}, "boolean"),
        ({"bogus": 1}, "Extra inputs"),
    ],
)
def test_bad_workloads_are_refused(kw: dict[str, object], says: str) -> None:
    with pytest.raises(PydanticValidationError, match=says):
        spec(**kw)


def test_env_in_both_places_is_refused() -> None:
    with pytest.raises(PydanticValidationError, match=r"both runtime\.env and secret_env"):
        spec(
            runtime={"kind": "process", "command": ["x"], "env": {"K": "1"}},
            secret_env={"K": "2"},
        )


def test_the_example_job_spec_validates() -> None:
    from pathlib import Path

    import yaml

    from suangu.sim.scenario import OrderSpec

    path = Path(__file__).resolve().parents[2] / "examples" / "job-with-workload.yaml"
    order = OrderSpec.model_validate(yaml.safe_load(path.read_text()))
    assert order.workload is not None and order.workload.runtime.kind == "process"
    assert order.workload.outputs == ["out/scores.csv"] and order.workload.data_gb == 1
