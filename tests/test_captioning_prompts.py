"""Prompt building and reply parsing/validation, incl. rejecting invented place names."""

from __future__ import annotations

import json

import pytest

from spectraclip.captioning.prompts import (
    InvalidReply,
    build_context,
    build_messages,
    get_prompt,
    invented_names,
    parse_reply,
)

T = get_prompt("qa3-v1")
TAGS = [
    {"overture_type": "water", "class": "lake", "subtype": "lake", "name": "Lago Verde", "flags": ["is_intermittent"],
     "geometry_kind": "polygon", "cover_fraction": 0.07, "position": "south-west"},
    {"overture_type": "segment", "class": "primary", "subtype": "road", "name": "Route 7", "geometry_kind": "line",
     "length_m": 1400.0, "position": "west"},
    {"overture_type": "place", "class": "village", "name": "Testville", "geometry_kind": "point", "position": "centre"},
]
GOOD = """Q1: What is the main land cover?
A1: Mostly cropland with scattered trees.
**Q2:** Is there water?
**A2:** Yes, a small lake in the south-west,
which may dry out.
Q3: Any settlements?
A3: A village near the centre, Testville.
CAPTION: Cropland surrounds the village of Testville, with the intermittent Lago Verde in the south-west and Route 7
crossing the west."""


def test_context_lists_tags_flags_and_allowed_names():
    ctx = build_context(TAGS, T, extent_m=2240)
    assert ctx.allowed_names == ["Lago Verde", "Route 7", "Testville"]
    assert 'water: lake, intermittent, 7% of the image, south-west, named "Lago Verde"' in ctx.user
    assert "1.4 km long" in ctx.user and "2.2 km × 2.2 km" in ctx.user
    assert 'Place names you may use: "Lago Verde", "Route 7", "Testville".' in ctx.user
    msgs = build_messages(ctx, "data:image/png;base64,AAAA")
    assert msgs[1]["content"][1]["image_url"]["url"].startswith("data:image/png")
    empty = build_context([], T)
    assert "Place names you may use: none." in empty.user and empty.allowed_names == []


def test_max_tags_limits_shown_tags_and_names():
    many = [dict(TAGS[0], name=f"Lake {i}") for i in range(30)]
    ctx = build_context(many, T)
    assert len(ctx.tags_used) == T.max_tags and len(ctx.allowed_names) == T.max_tags


def test_parse_valid_reply_with_markdown_and_continuation_lines():
    r = parse_reply(GOOD, T, ["Lago Verde", "Route 7", "Testville"])
    assert len(r.qa) == 3 and r.qa[1]["a"] == "Yes, a small lake in the south-west, which may dry out."
    assert r.caption.startswith("Cropland surrounds") and r.caption.endswith("crossing the west.")


def test_parse_json_reply():
    body = {"qa": [{"q": f"q{i}?", "a": f"answer {i}"} for i in range(3)],
            "caption": "A green agricultural landscape with small fields and a lake."}
    text = "```json\n" + json.dumps(body) + "\n```"
    r = parse_reply(text, T, [])
    assert [p["a"] for p in r.qa] == ["answer 0", "answer 1", "answer 2"]


@pytest.mark.parametrize("text, reason", [
    ("", "empty reply"),
    ("Just a nice picture of fields and a lake, nothing more to say here.", "0 complete"),
    (GOOD.replace("A3: A village near the centre, Testville.\n", ""), "2 complete"),
    (GOOD.split("CAPTION:")[0], "no CAPTION"),
    (GOOD.split("CAPTION:")[0] + "CAPTION: Fields.", "too short"),
    (GOOD.split("CAPTION:")[0] + "CAPTION: " + "field " * 90, "too long"),
    (GOOD.replace("with the intermittent", "near Lake Springfield and the intermittent"), "Lake Springfield"),
    (GOOD.replace("A village near the centre", "A village near Munich"), "Munich"),
])
def test_invalid_replies_are_rejected_with_reason(text, reason):
    with pytest.raises(InvalidReply, match=reason):
        parse_reply(text, T, ["Lago Verde", "Route 7", "Testville"])


def test_names_not_given_are_invented_even_if_elsewhere_valid():
    # "Lago Verde" is fine when given, invented when the prompt listed no names
    assert invented_names("A lake, Lago Verde, lies south.", ["Lago Verde"]) == []
    assert invented_names("A lake, Lago Verde, lies south.", []) == ["Lago Verde"]
    assert invented_names("The Sentinel-2 image shows NDVI highs. Forest dominates.", []) == []


def test_unknown_prompt_version():
    with pytest.raises(KeyError, match="qa3-v1"):
        get_prompt("v0")
