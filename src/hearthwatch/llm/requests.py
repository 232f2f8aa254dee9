"""The request bodies of ``/v1/chat/completions`` and ``/v1/completions`` as typed models: the
OpenAI fields with their types and ranges, plus the llama.cpp sampling extras clients use.
Everything the engine would fail on is refused here with a 400 naming the field; unknown
top-level fields pass through to the engine. Values are validated strictly (no string to
number coercion), as JSON has them. Pure data; safe from any thread."""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

__all__ = ["ChatRequest", "CompletionRequest", "ValidationError", "error_summary"]


class _WithoutNulls(BaseModel):
    """Dumps leave out fields set to null (the engine refuses a null where it wants a
    string), except those named in ``_keep_null``."""

    _keep_null: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _drop_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {k: v for k, v in dumped.items() if v is not None or k in self._keep_null}


class _Part(_WithoutNulls):
    """A nested object: strict types, fields the engine does not know are dropped."""

    model_config = ConfigDict(strict=True, extra="ignore")


def _only_one(value: int | None) -> int | None:
    if value is not None and value != 1:
        raise ValueError("only n=1 is supported")
    return value


Probability = Annotated[float, Field(ge=0, le=1)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
PositiveInt = Annotated[int, Field(ge=1)]
TokenId = Annotated[int, Field(ge=0)]
Stop = str | Annotated[list[str], Field(max_length=4)]
OneChoice = Annotated[int | None, AfterValidator(_only_one)]


class TextPart(_Part):
    """The only content part a text model takes."""

    type: Literal["text"]
    text: str


def _json_object_text(text: str) -> str:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError('must be a JSON object as text, e.g. \'{"door": "front"}\'') from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object as text")
    return text


class FunctionCall(_Part):
    name: str = Field(min_length=1)
    arguments: Annotated[str, AfterValidator(_json_object_text)] = Field(
        description="The arguments as a JSON object's text."
    )


class ToolCall(_Part):
    id: str
    type: Literal["function"]  # required: the engine refuses a call without it
    function: FunctionCall


class Message(_Part):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    _keep_null: ClassVar[frozenset[str]] = frozenset({"content"})  # beside tool_calls

    @model_validator(mode="after")
    def _has_content(self) -> Message:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(
                "'content' is required, except on an assistant message with tool_calls"
            )
        return self


class FunctionDefinition(_Part):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="A JSON Schema object.")
    strict: bool | None = None


class FunctionTool(_Part):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Part):
    name: str = Field(min_length=1)


class NamedToolChoice(_Part):
    type: Literal["function"]
    function: NamedFunction


class TextFormat(_Part):
    type: Literal["text"]


class JsonObjectFormat(_Part):
    type: Literal["json_object"]
    schema_: dict[str, Any] | None = Field(
        None, alias="schema", description="llama.cpp: constrain the object to this JSON Schema."
    )


class JsonSchema(_Part):
    name: str = Field(min_length=1)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class JsonSchemaFormat(_Part):
    type: Literal["json_schema"]
    json_schema: JsonSchema


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]


class StreamOptions(_Part):
    include_usage: bool = False


class _Sampling(_WithoutNulls):
    """What both routes take; unknown fields are kept and passed to the engine."""

    model_config = ConfigDict(strict=True, extra="allow")

    model: str | None = Field(None, description="The served model id, or 'default'.")
    max_tokens: PositiveInt | None = Field(None, description="Capped by the hardware profile.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: Probability | None = None
    stop: Stop | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = Field(
        None, description="Token id (as a string) to a bias from -100 to 100."
    )
    n: OneChoice = Field(None, description="Only 1 is supported.")
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None
    ignore_eos: bool | None = Field(None, description="llama.cpp: keep generating past EOS.")
    top_k: int | None = Field(None, ge=0, description="llama.cpp: 0 disables top-k.")
    min_p: Probability | None = Field(None, description="llama.cpp: min-p sampling.")
    repeat_penalty: float | None = Field(None, ge=0, le=10, description="llama.cpp.")


class ChatRequest(_Sampling):
    """The body of ``POST /v1/chat/completions``."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: PositiveInt | None = Field(
        None, description="Takes precedence over max_tokens; capped by the hardware profile."
    )
    response_format: ResponseFormat | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)


class CompletionRequest(_Sampling):
    """The body of ``POST /v1/completions``."""

    prompt: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1)]
    )
    suffix: str | None = None
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=5)


def error_summary(exc: ValidationError) -> str:
    """One line naming each field that is wrong and why."""
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "invalid request: " + "; ".join(dict.fromkeys(parts))
