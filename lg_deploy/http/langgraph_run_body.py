"""The body of the platform's run-creating routes, key by key: honoured, ignored or refused.

RunBody holds the keys lg-deploy honours and those it accepts and ignores because they cannot
change a thread-less background run. REFUSED_RUN_KEYS is the one table of the keys that would
change what a run does and that lg-deploy does not do yet: only the values that ask for nothing
pass, any other is a 422 `not_supported` naming the key. Lifting a refusal is deleting its row
(and honouring the key).
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
    WrapValidator,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from lg_deploy.http.schemas import check_storable, json_number

NOT_SUPPORTED = "not_supported"
_NO_ITEMS = Field(max_length=0)
NOTHING = None
EMPTY_LIST = Annotated[list[Any], _NO_ITEMS] | None
# An object of empty values: {"configurable": {}} asks for nothing either.
EMPTY_OBJECT = dict[str, Annotated[dict[str, Any], _NO_ITEMS] | EMPTY_LIST] | None


class Refusal(NamedTuple):
    """A key lg-deploy does not honour yet: what it asks for, and the values that ask nothing."""

    feature: str
    accepted: Any  # a type; its values are accepted (and ignored)
    accepted_text: str


_NULL_OR_EMPTY = "null or empty values"
REFUSED_RUN_KEYS: dict[str, Refusal] = {
    "config": Refusal("per-run config", EMPTY_OBJECT, _NULL_OR_EMPTY),
    "context": Refusal("per-run context", EMPTY_OBJECT, _NULL_OR_EMPTY),
    "command": Refusal("commands (resume, update, goto)", EMPTY_OBJECT, _NULL_OR_EMPTY),
    "interrupt_before": Refusal("breakpoints", EMPTY_LIST, "null or []"),
    "interrupt_after": Refusal("breakpoints", EMPTY_LIST, "null or []"),
    "webhook": Refusal("completion webhooks", NOTHING, "null"),
    "checkpoint": Refusal("starting from a checkpoint", EMPTY_OBJECT, _NULL_OR_EMPTY),
    "checkpoint_id": Refusal("starting from a checkpoint", NOTHING, "null"),
    "on_completion": Refusal(
        "keeping the run's thread", Literal["delete"] | None, 'null or "delete"'
    ),
}
REFUSED_WAIT_KEYS: dict[str, Refusal] = {
    **REFUSED_RUN_KEYS,
    "on_disconnect": Refusal(
        "cancelling the run when the client disconnects",
        Literal["continue"] | None,
        'null or "continue"',
    ),
}


class RunBody(BaseModel):
    """Keys honoured (assistant_id, input, metadata, after_seconds) and keys accepted and
    ignored; keys the platform does not define are ignored too."""

    model_config = ConfigDict(extra="ignore")

    assistant_id: str = Field(min_length=1, max_length=200, description="a graph name or uuid5")
    input: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    after_seconds: float | None = Field(default=None, ge=0, le=31_536_000)
    # Ignored: a thread-less run is alone on its thread, so no strategy or thread rule applies.
    multitask_strategy: str | None = Field(default=None, description="ignored; echoed back")
    if_not_exists: Literal["reject", "create"] | None = Field(default=None, description="ignored")
    # Ignored: lg-deploy saves every step when its checkpointer is on, whatever is asked.
    durability: Literal["sync", "async", "exit"] | None = Field(default=None, description="ignored")
    checkpoint_during: StrictBool | None = Field(default=None, description="ignored")
    # Ignored: no stream of this run can be read (streaming routes are not supported yet).
    stream_mode: str | list[str] | None = Field(default=None, description="ignored")
    stream_subgraphs: StrictBool | None = Field(default=None, description="ignored")
    stream_resumable: StrictBool | None = Field(default=None, description="ignored")
    feedback_keys: list[str] | None = Field(default=None, description="ignored")
    # Ignored: no LangSmith tracing; no resume (command is refused); a background run has no
    # client connection to lose (refused on /runs/wait, see REFUSED_WAIT_KEYS).
    langsmith_tracer: dict[str, Any] | None = Field(default=None, description="ignored")
    strict_resume: StrictBool | None = Field(default=None, description="ignored")
    on_disconnect: Literal["cancel", "continue"] | None = Field(default=None, description="ignored")

    @field_validator("after_seconds", mode="before")
    @classmethod
    def _number_only(cls, value: Any) -> Any:
        return json_number(value)

    @field_validator("input", "metadata")
    @classmethod
    def _storable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        checked: dict[str, Any] | None = check_storable(value)
        return checked


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


def _run_model(name: str, doc: str, refused: dict[str, Refusal]) -> type[RunBody]:
    fields: dict[str, Any] = {key: (_refusing(rule), None) for key, rule in refused.items()}
    return create_model(name, __base__=RunBody, __doc__=doc, **fields)


RunCreate = _run_model("RunCreate", "Body of POST /runs.", REFUSED_RUN_KEYS)
RunWait = _run_model("RunWait", "Body of POST /runs/wait.", REFUSED_WAIT_KEYS)
