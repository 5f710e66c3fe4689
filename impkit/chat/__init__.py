"""ImpChat: an OpenAI-compatible chat server and web page over the releases the registry lists.

* ``catalog``: the registry's records -> the models a client may name (``<release id>:<level>`` or
  ``<preset>:<level>``), each with its files and its figures; never a path a client chooses;
* ``images``: data-URI images checked against the request limits before a pixel is decoded;
* ``engine``: a loaded release (llama.cpp through ``impkit.llamacpp.GGUFSession``, the evaluation
  runner's own path) that answers a chat, token by token, and the pool that loads models lazily and
  unloads the least recently used past the memory budget;
* ``app``: the FastAPI application (``/v1/models``, ``/v1/chat/completions``, the page at ``/``),
  its queue, limits, API key and request log; ``serve`` runs it with uvicorn.
"""

from impkit.chat.errors import ChatError

__all__ = ["ChatError"]
