"""The `chat` section: ImpChat, the server over the registry's releases (``impkit.chat``)."""

from __future__ import annotations

from dataclasses import dataclass

from impkit.config.loading import AtLeastOne, ConfigError, Count, Rate

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")  # what Pillow decodes without extra plugins


@dataclass(frozen=True)
class ChatLimits:
    """What one request may carry; anything beyond gets a 4xx naming the limit."""

    max_request_mb: Rate  # the whole JSON body (images travel inside it as base64 data URIs)
    max_image_mb: Rate  # one decoded image file
    max_image_pixels: AtLeastOne  # width x height, checked before the pixels are decoded
    max_images: AtLeastOne  # per conversation
    image_formats: tuple[str, ...]
    max_messages: AtLeastOne
    max_tokens: AtLeastOne  # the largest max_tokens a request may ask for
    default_max_tokens: AtLeastOne  # when a request gives none

    def __post_init__(self) -> None:
        unknown = sorted(set(self.image_formats) - set(IMAGE_FORMATS))
        if unknown or not self.image_formats:
            raise ConfigError(f"chat.limits.image_formats: {unknown or 'empty'}; known: {', '.join(IMAGE_FORMATS)}")
        if self.default_max_tokens > self.max_tokens:
            raise ConfigError(
                f"chat.limits.default_max_tokens ({self.default_max_tokens}) exceeds max_tokens ({self.max_tokens})"
            )


@dataclass(frozen=True)
class ChatConfig:
    host: str  # 127.0.0.1: this machine only
    port: AtLeastOne
    slots: AtLeastOne  # answers generated at once (each on its own loaded model)
    queue: Count  # requests that may wait for a slot; one more gets 429 with Retry-After
    memory_budget_mb: Rate  # loaded models' files; past it the least recently used idle model is unloaded
    request_timeout_s: Rate  # waiting + reading + generating; past it the request ends (504, or 503 while queued)
    retry_after_s: AtLeastOne  # the Retry-After of a 429/503
    n_ctx: AtLeastOne  # context of each loaded model, prompt and answer together
    threads: AtLeastOne | None  # llama.cpp threads per model; null: every core
    api_key_env: str  # the environment variable whose value, when set, every API call must send as Bearer
    limits: ChatLimits

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("chat.host must not be empty")
