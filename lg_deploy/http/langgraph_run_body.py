"""The body of the platform's run-creating routes, key by key: honoured, ignored or refused.

RunBody holds the keys lg-deploy honours and those it accepts and ignores because they cannot
change a background run. REFUSED_RUN_KEYS (thread-less) and REFUSED_THREAD_RUN_KEYS are the
tables of the keys that would change what a run does and that lg-deploy does not do yet: only
the values that ask for nothing pass, any other is a 422 `not_supported` naming the key.
Lifting a refusal is deleting its row (and honouring the key).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lg_deploy.http.schemas import WebhookUrl, check_storable, json_number
from lg_deploy.models import StreamMode
from lg_deploy.webhooks.allowlist import URL_PATTERN

NOT_SUPPORTED = "not_supported"
NOTHING = None


class Refusal(NamedTuple):
    """A key lg-deploy does not honour yet: what it asks for, and the values that ask nothing."""

    feature: str
    accepted: Any  # a type; its values are accepted (and ignored)
    accepted_text: str


_NULL_OR_EMPTY = "null or empty values"
_EMPTY_OBJECT = dict[str, Annotated[dict[str, Any], Field(max_length=0)]] | None
REFUSED_RUN_KEYS: dict[str, Refusal] = {
    "checkpoint": Refusal(
        "starting from a checkpoint without a thread", _EMPTY_OBJECT, _NULL_OR_EMPTY
    ),
    "checkpoint_id": Refusal("starting from a checkpoint without a thread", NOTHING, "null"),
    "on_completion": Refusal(
        "keeping the run's thread", Literal["delete"] | None, 'null or "delete"'
    ),
}
REFUSED_THREAD_RUN_KEYS: dict[str, Refusal] = {}
_ON_DISCONNECT = Refusal(
    "cancelling the run when the client disconnects",
    Literal["continue"] | None,
    'null or "continue"',
)


def stored_breakpoints(which: Breakpoints) -> list[str] | None:
    """Breakpoints as stored: a list of node names, ["*"] for every node."""
    return ["*"] if which == "*" else which


class Send(BaseModel):
    """A LangGraph Send in a command's goto: run `node` with `input`."""

    model_config = ConfigDict(extra="forbid")

    node: str = Field(min_length=1, max_length=200)
    input: Any = None


class RunCommand(BaseModel):
    """A LangGraph Command: the value for a pending interrupt, a state update, where to go."""

    model_config = ConfigDict(extra="forbid")

    resume: Any = None
    update: dict[str, Any] | list[tuple[str, Any]] | None = None
    goto: Send | str | list[Send | str] | None = None

    def as_json(self) -> dict[str, Any]:
        """The command as stored: only the keys given."""
        stored: dict[str, Any] = self.model_dump(mode="json", exclude_unset=True)
        return stored

    @model_validator(mode="after")
    def _storable(self) -> RunCommand:
        check_storable(self.as_json())
        return self


Breakpoints = Literal["*"] | list[Annotated[str, Field(min_length=1, max_length=200)]] | None


class RunBody(BaseModel):
    """Keys honoured (assistant_id, input, command, metadata, config, context, breakpoints,
    after_seconds, multitask_strategy, webhook) and keys accepted and ignored; keys the platform
    does not define are ignored too."""

    model_config = ConfigDict(extra="ignore")

    assistant_id: str = Field(min_length=1, max_length=200, description="a graph name or uuid5")
    input: dict[str, Any] | None = None
    command: RunCommand | None = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = Field(
        default=None, description="LangGraph config: configurable, tags, recursion_limit"
    )
    context: dict[str, Any] | None = Field(default=None, description="the graph's runtime context")
    interrupt_before: Breakpoints = None
    interrupt_after: Breakpoints = None
    after_seconds: float | None = Field(default=None, ge=0, le=31_536_000)
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] | None = Field(
        default=None, description="what to do when the thread is busy (thread-less: ignored)"
    )
    if_not_exists: Literal["reject", "create"] | None = Field(
        default=None, description="create a missing thread, or 404 (thread-less: ignored)"
    )
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = Field(default=None, max_length=200)
    # Ignored: lg-deploy saves every step when its checkpointer is on, whatever is asked.
    durability: Literal["sync", "async", "exit"] | None = Field(default=None, description="ignored")
    checkpoint_during: StrictBool | None = Field(default=None, description="ignored")
    stream_mode: StreamMode | list[StreamMode] | None = Field(
        default=None, description='what the run streams, recorded for any reader; ["values"]'
    )
    stream_subgraphs: StrictBool | None = Field(default=None, description="subgraphs' events too")
    stream_resumable: StrictBool | None = Field(
        default=None, description="accepted: every run's stream is resumable (ids always sent)"
    )
    feedback_keys: list[str] | None = Field(default=None, description="ignored")
    # Ignored: no LangSmith tracing; a background run has no client connection to lose (refused
    # on the wait routes, see _ON_DISCONNECT).
    langsmith_tracer: dict[str, Any] | None = Field(default=None, description="ignored")
    strict_resume: StrictBool | None = Field(default=None, description="ignored")
    webhook: WebhookUrl | None = Field(
        default=None,
        max_length=2048,
        description="POST the run here once final, signed, retried (docs/webhooks.md)",
        json_schema_extra={"pattern": URL_PATTERN},
    )
    on_disconnect: Literal["cancel", "continue"] | None = Field(
        default=None, description="stream routes: cancel the run when the client goes"
    )

    @field_validator("after_seconds", mode="before")
    @classmethod
    def _number_only(cls, value: Any) -> Any:
        return json_number(value)

    @field_validator("input", "metadata", "config", "context")
    @classmethod
    def _storable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        checked: dict[str, Any] | None = check_storable(value)
        return checked

    def breakpoints(self, which: Breakpoints) -> list[str] | None:
        """Breakpoints as stored: a list of node names, ["*"] for every node."""
        return stored_breakpoints(which)

    def stream_modes(self) -> list[StreamMode]:
        """The modes recorded: those asked for, ["values"] by default (as the platform)."""
        if self.stream_mode is None:
            return ["values"]
        modes = [self.stream_mode] if isinstance(self.stream_mode, str) else self.stream_mode
        return list(dict.fromkeys(modes)) or ["values"]

    def command_json(self) -> dict[str, Any] | None:
        """The command as stored (only the keys given)."""
        if self.command is None:
            return None
        return self.command.as_json()


def _refusing(refusal: Refusal) -> Any:
    """The field type of a refused key: its accepted values pass, others fail as not_supported."""

    def refuse_others(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(
                NOT_SUPPORTED,
                "not supported by lg-deploy yet ({feature}); it accepts only {accepted}",
                {"feature": refusal.feature, "accepted": refusal.accepted_text},
            ) from None

    described = Field(
        description=f"not supported yet ({refusal.feature}); accepted: {refusal.accepted_text}"
    )
    return Annotated[refusal.accepted, WrapValidator(refuse_others), described]


def _run_model(
    name: str, doc: str, refused: dict[str, Refusal], extra: dict[str, Any] | None = None
) -> type[RunBody]:
    fields: dict[str, Any] = {key: (_refusing(rule), None) for key, rule in refused.items()}
    return create_model(name, __base__=RunBody, __doc__=doc, **fields, **(extra or {}))


# A thread-less run takes no command: a resume needs a thread (400, as the platform answers).
_NO_COMMAND = {
    "command": (
        Annotated[
            RunCommand | None,
            WithJsonSchema({"type": "null", "description": "a resume needs a thread (400)"}),
        ],
        None,
    )
}
RunCreate = _run_model("RunCreate", "Body of POST /runs.", REFUSED_RUN_KEYS, _NO_COMMAND)
REFUSED_WAIT_KEYS: dict[str, Refusal] = {**REFUSED_RUN_KEYS, "on_disconnect": _ON_DISCONNECT}
RunWait = _run_model("RunWait", "Body of POST /runs/wait.", REFUSED_WAIT_KEYS, _NO_COMMAND)
ThreadRunCreate = _run_model(
    "ThreadRunCreate", "Body of POST /threads/{thread_id}/runs.", REFUSED_THREAD_RUN_KEYS
)
RunStream = _run_model("RunStream", "Body of POST /runs/stream.", REFUSED_RUN_KEYS, _NO_COMMAND)
ThreadRunStream = _run_model(
    "ThreadRunStream", "Body of POST /threads/{thread_id}/runs/stream.", REFUSED_THREAD_RUN_KEYS
)
ThreadRunWait = _run_model(
    "ThreadRunWait",
    "Body of POST /threads/{thread_id}/runs/wait.",
    {**REFUSED_THREAD_RUN_KEYS, "on_disconnect": _ON_DISCONNECT},
)
