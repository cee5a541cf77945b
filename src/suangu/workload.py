"""The workload of an order: what the provider's agent runs for the buyer.

One Pydantic spec, read from the API's JSON (``OrderIn.workload``), from YAML job specs
(``OrderSpec.workload``) and by the agent, with errors that name the field::

    workload:
      runtime:
        kind: process                    # or: container
        command: [python3, score.py, inputs/candidates.csv]
        files: {score.py: "import numpy ..."}   # small files written into the work dir
        env: {THREADS: "4"}
      # or: runtime: {kind: container, image: "registry.example/lab/screen:1.2"}
      secret_env: {HF_TOKEN: "hf_..."}     # never logged, answered as "***"
      inputs:
        - object: do_3f1c...               # an exchange data object of the buyer ...
          sha256: 9b7e...
          size: 1048576
          path: inputs/candidates.csv      # where it is staged (default: inputs/<object id>)
        - uri: https://data.example/ref.fa # ... or a URI
          sha256: 0c4d...
          size: 2000000000
      outputs: [out/scores.csv]            # relative to the work dir, no ".."
      checkpoint: false

The inputs' total size sets the order's data volume (``data_gb``: whole GB of 10^9 bytes,
rounded up) for transfer pricing; an order that says another ``data_gb`` is refused.

:func:`parse_image` checks a container image reference against the OCI distribution
grammar (``[registry[:port]/]path[:tag][@digest]``) and names what is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from suangu.core.errors import ValidationError

MAX_INPUTS = 1000
MAX_OUTPUTS = 1000
#: Inline files of a process runtime: at most this many bytes in all.
MAX_FILES_BYTES = 1_000_000
MAX_ENV = 200
GB = 10**9
#: Environment variables the agent sets itself.
RESERVED_ENV_PREFIX = "SUANGU_"
REDACTED = "***"

# -- image references ---------------------------------------------------------------------------

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_RE = re.compile(_DOMAIN)
_TAG_RE = re.compile(_TAG)
_DIGEST_RE = re.compile(_DIGEST)
MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed image reference; ``registry`` is ``docker.io`` when none is given."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_image(text: str) -> ImageRef:
    """The OCI image reference ``text``, or a :class:`ValueError` saying what is wrong."""
    if not text or text != text.strip():
        raise ValueError("is empty or has surrounding spaces")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise ValueError(
                f"digest {digest!r} is not algorithm:hex (e.g. sha256: and 64 hex digits)"
            )
        if digest.startswith("sha256:") and not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
            raise ValueError("a sha256 digest has 64 lowercase hex digits")
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG_RE.fullmatch(tag):
            raise ValueError(f"tag {tag!r} is not 1-128 of letters, digits, '_', '.', '-'")
    if len(rest) > MAX_NAME:
        raise ValueError(f"the name is longer than {MAX_NAME} characters")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN_RE.fullmatch(first):
            raise ValueError(f"registry {first!r} is not a host name with an optional port")
        registry, path = first, remainder
    else:
        registry, path = "docker.io", rest
    if not path or not _PATH_RE.fullmatch(path):
        raise ValueError(
            f"repository {path!r} must be lowercase path components of letters and digits "
            "separated by '/', '.', '_' or '-'"
        )
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return ImageRef(registry, path, tag, digest)


def _image(text: str) -> str:
    parse_image(text)
    return text


# -- paths and names ------------------------------------------------------------------------------


def _relative(text: str) -> str:
    if not text or "\0" in text or len(text) > 255:
        raise ValueError("must be 1-255 characters without NUL")
    p = PurePosixPath(text)
    if p.is_absolute() or text.startswith("~"):
        raise ValueError(f"{text!r} is absolute: give a path relative to the work directory")
    if any(part == ".." for part in p.parts):
        raise ValueError(f"{text!r} leaves the work directory ('..')")
    if str(p) in ("", "."):
        raise ValueError(f"{text!r} names the work directory itself")
    return str(p)


def _env_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", text):
        raise ValueError(f"{text!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    if text.upper().startswith(RESERVED_ENV_PREFIX):
        raise ValueError(f"{text!r}: names starting with SUANGU_ are set by the agent")
    return text


RelPath = Annotated[str, AfterValidator(_relative)]
EnvName = Annotated[str, AfterValidator(_env_name)]
EnvValue = Annotated[str, Field(max_length=32_768)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
ObjectId = Annotated[str, Field(pattern=r"^do_[0-9a-f]{24}$")]
Uri = Annotated[str, Field(pattern=r"^(https?|s3)://[^\s]+$", max_length=2000)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProcessRuntime(_Spec):
    """A command run in the work directory, confined (bubblewrap) on the provider's host."""

    kind: Literal["process"]
    command: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        min_length=1, max_length=1000
    )
    #: Small files written into the work directory before the command runs (path -> text).
    files: dict[RelPath, str] = Field(default_factory=dict, max_length=100)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=MAX_ENV)

    @model_validator(mode="after")
    def _files_fit(self) -> ProcessRuntime:
        total = sum(len(v.encode("utf-8")) for v in self.files.values())
        if total > MAX_FILES_BYTES:
            raise ValueError(
                f"files hold {total} bytes; at most {MAX_FILES_BYTES}: upload larger ones as "
                "data objects and give them as inputs"
            )
        return self


class ContainerRuntime(_Spec):
    """An OCI image run by the provider's container runtime (podman, docker, apptainer)."""

    kind: Literal["container"]
    image: Annotated[str, AfterValidator(_image)]
    #: Overrides the image's command (empty: the image's own).
    command: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=1000
    )
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=MAX_ENV)


class InputSpec(_Spec):
    """One input: an exchange data object of the buyer, or a URI; staged at ``path``."""

    object: ObjectId | None = None
    uri: Uri | None = None
    sha256: Sha256
    size: int = Field(ge=0, le=10**15)
    path: RelPath | None = None

    @model_validator(mode="after")
    def _one_source(self) -> InputSpec:
        if (self.object is None) == (self.uri is None):
            raise ValueError("give exactly one of object (a data object id) or uri")
        return self

    @property
    def staged_at(self) -> str:
        """Where the agent puts it, relative to the work directory."""
        if self.path:
            return self.path
        if self.object:
            return f"inputs/{self.object}"
        name = PurePosixPath((self.uri or "").split("?")[0]).name or "input"
        return f"inputs/{name}"


class WorkloadSpec(_Spec):
    runtime: ProcessRuntime | ContainerRuntime = Field(discriminator="kind")
    inputs: list[InputSpec] = Field(default_factory=list, max_length=MAX_INPUTS)
    outputs: list[RelPath] = Field(default_factory=list, max_length=MAX_OUTPUTS)
    checkpoint: bool = False
    #: Environment values never logged or shown back (sealed at rest with the master key).
    secret_env: dict[EnvName, SecretStr] = Field(default_factory=dict, max_length=MAX_ENV)

    @model_validator(mode="after")
    def _consistent(self) -> WorkloadSpec:
        clash = sorted(set(self.secret_env) & set(self.runtime.env))
        if clash:
            raise ValueError(f"{clash[0]} is in both runtime.env and secret_env: give it once")
        seen: dict[str, int] = {}
        for n, item in enumerate(self.inputs):
            where = item.staged_at
            if where in seen:
                raise ValueError(f"inputs {seen[where]} and {n} are both staged at {where!r}")
            seen[where] = n
        if len(set(self.outputs)) != len(self.outputs):
            raise ValueError("an output path is listed twice")
        return self

    @property
    def input_bytes(self) -> int:
        return sum(i.size for i in self.inputs)

    @property
    def data_gb(self) -> int:
        """The order's data volume: the inputs' bytes in whole GB (10^9), rounded up."""
        return math.ceil(self.input_bytes / GB)

    def redacted(self) -> dict[str, Any]:
        """The spec as JSON with every secret value replaced by ``***``."""
        out = self.model_dump(mode="json", exclude_none=True)
        out["secret_env"] = {k: REDACTED for k in self.secret_env}
        return out

    def secrets(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self.secret_env.items()}


def check_data_gb(spec: WorkloadSpec, given: int | None, field: str) -> int:
    """The order's ``data_gb``: the inputs' size; ``given`` (if the order set one) must agree."""
    want = spec.data_gb
    if given is not None and given != want:
        raise ValidationError(
            f"is {given} GB, but the workload's inputs hold {spec.input_bytes} bytes, which is "
            f"{want} GB (whole GB of 10^9 bytes, rounded up)",
            field=field,
            fix=f"leave data_gb out (the inputs set it) or give {want}",
        )
    return want
