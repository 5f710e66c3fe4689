"""Per-record facts that the Great Expectations suite judges.

This module only *describes* a record (types, role sequence, tag counts, lengths); every verdict —
what counts as valid and the bounds — lives in the expectation suite (``quality.py``), so each rule
has exactly one place. It runs once per record of a million-record mixture, hence the plain loops.
"""

from __future__ import annotations

from typing import Any

from impkit.data.llava_format import IMAGE_TAG

ROLES = ("human", "gpt")
_TYPE_NAMES = {str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "dict", type(None): "missing"}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value)) or type(value).__name__


def record_features(record: Any) -> dict[str, Any]:
    """Describe one parsed record. Never raises, whatever the JSON value is."""
    if type(record) is not dict:
        return {"record_type": _type_name(record)}
    record_id = record.get("id")
    image = record.get("image")
    convs = record.get("conversations")
    id_type = _type_name(record_id)
    has_image = image is not None
    feats: dict[str, Any] = {
        "record_type": "dict",
        "id_type": id_type,
        "id": record_id if id_type == "str" else (str(record_id) if id_type == "int" else None),
        "image_type": "missing" if image is None else _type_name(image),
        "has_image": has_image,
        "conversations_type": _type_name(convs),
    }
    if type(convs) is not list:
        return feats
    bad_turns = tags_total = prompt_max = answer_max = role_repeats = 0
    answer_min = None
    previous = first_role = role = None
    for i, turn in enumerate(convs):
        value = role = None
        if type(turn) is dict:
            value = turn.get("value")
            role = turn.get("from")
        if type(value) is not str or role not in ROLES:
            bad_turns += 1
            role = role if type(role) is str else None
        elif role == "human":
            if IMAGE_TAG in value:
                tags_total += value.count(IMAGE_TAG)
                value = value.replace(IMAGE_TAG, "")  # a placeholder for image tokens, not prompt text
            n = len(value.strip())
            if n > prompt_max:
                prompt_max = n
        else:
            tags_total += value.count(IMAGE_TAG)
            n = len(value.strip())
            if n > answer_max:
                answer_max = n
            if answer_min is None or n < answer_min:
                answer_min = n
        if i == 0:
            first_role = role
        elif role == previous:
            role_repeats += 1
        previous = role
    first = convs[0].get("value") if convs and type(convs[0]) is dict else None
    feats.update(
        n_turns=len(convs),
        bad_turns=bad_turns,
        first_role=first_role,
        last_role=role if convs else None,
        role_repeats=role_repeats,
        image_tags_total=tags_total,
        image_tags_first_turn=first.count(IMAGE_TAG) if type(first) is str else 0,
        image_tags_wanted=1 if has_image else 0,
        prompt_chars_max=prompt_max,
        answer_chars_min=answer_min,  # None without answers: ``has_exchange`` reports that case
        answer_chars_max=answer_max,
    )
    return feats
