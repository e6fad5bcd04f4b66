"""The protos' comments are the contract, and the conformance kit checks what they say.

Every check of the kit quotes the duty it enforces (``scatter.conformance.LEAF_CHECKS``,
``MERGE_CHECKS``); here each quote must occur in the comment of the service it
checks, read from the .proto by protoc itself (source info: the comments attached
to the service and its rpcs, not anywhere in the file). A FAIL is for a MUST and a
WARN for a SHOULD, so the quote of a check that can fail says MUST. The readable
guide, ``docs/any-language.md``, lists the same checks for the same roles.
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from protos.generate import PROTO_ROOT
from scatter.conformance import LEAF_CHECKS, MERGE_CHECKS, Check

DOCS = PROTO_ROOT.parent / "docs" / "any-language.md"
ROLES = {
    "leaf": ("scatter_gather/v1/leaf.proto", "Leaf", LEAF_CHECKS),
    "merge": ("scatter_gather/v1/merge.proto", "Merge", MERGE_CHECKS),
}


def _flat(text: str) -> str:
    return " ".join(text.split())


def service_comment(proto: str, service: str, tmp: Path) -> str:
    """The comments of ``service`` and of its rpcs in ``proto``, whitespace collapsed."""
    out = tmp / "descriptors.pb"
    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", "--include_source_info", f"--descriptor_set_out={out}", proto]
    assert protoc.main(args) == 0, f"protoc failed on {proto}"
    file = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    index = [s.name for s in file.service].index(service)
    prefix = [descriptor_pb2.FileDescriptorProto.SERVICE_FIELD_NUMBER, index]  # the service, then its methods
    texts = [
        " ".join([loc.leading_comments, loc.trailing_comments, *loc.leading_detached_comments])
        for loc in file.source_code_info.location
        if list(loc.path[:2]) == prefix
    ]
    return _flat(" ".join(texts))


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_check_quotes_a_duty_of_its_service_comment(role: str, tmp_path: Path) -> None:
    proto, service, checks = ROLES[role]
    comment = service_comment(proto, service, tmp_path)
    missing = [f"{c.id}: {c.duty!r}" for c in checks if _flat(c.duty) not in comment]
    assert not missing, f"duties the kit enforces but {proto} ({service}) does not state: {missing}"
    assert "The comments of this service are its normative contract" in comment


@pytest.mark.parametrize("role", sorted(ROLES))
def test_a_check_fails_only_for_a_must(role: str) -> None:
    _, _, checks = ROLES[role]
    assert len({c.id for c in checks}) == len(checks), "check ids are unique within a role"
    for check in checks:
        assert check.duty.startswith(("MUST ", "SHOULD ")), check
    # Only reflection is a SHOULD today; every other check can fail.
    assert [c.id for c in checks if not c.can_fail] == ["reflection"]


def test_the_quote_is_searched_in_the_service_comment_only(tmp_path: Path) -> None:
    """The check above can fail: a duty of the leaf is not one of the merge, a made-up one is nowhere."""
    merge_comment = service_comment(*ROLES["merge"][:2], tmp_path)
    wrong_shard = next(c for c in LEAF_CHECKS if c.id == "wrong-shard")
    assert _flat(wrong_shard.duty) not in merge_comment
    assert _flat(Check("x", "MUST answer in French").duty) not in merge_comment
    # Text of the file outside the service's comments (a message's) does not count.
    leaf_comment = service_comment(*ROLES["leaf"][:2], tmp_path)
    assert "One attempt at one shard of one request" in (PROTO_ROOT / ROLES["leaf"][0]).read_text()
    assert "One attempt at one shard of one request" not in leaf_comment


def _documented_checks() -> dict[str, list[str]]:
    """role -> the check ids of the table in docs/any-language.md ("| `id` | x | x | ... |")."""
    text = DOCS.read_text()
    table = text[text.index("### The checks") :]
    found: dict[str, list[str]] = {"leaf": [], "merge": []}
    for match in re.finditer(r"^\| `([a-z-]+)` \|([^|]*)\|([^|]*)\|", table, flags=re.M):
        for role, cell in zip(("leaf", "merge"), match.groups()[1:], strict=True):
            if cell.strip() == "x":
                found[role].append(match[1])
    return found


@pytest.mark.parametrize("role", sorted(ROLES))
def test_the_guide_lists_the_same_checks(role: str) -> None:
    _, _, checks = ROLES[role]
    assert sorted(_documented_checks()[role]) == sorted(c.id for c in checks)
